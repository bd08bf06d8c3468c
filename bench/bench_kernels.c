/* bench/bench_kernels.c - nam-bench: the CPU kernel benchmarks.

   usage: nam-bench [--threads N] [--reps N] [--quick] [--json] [--ftz-ab] [--only gemm|ssd|attention|moe|m2rnn]

   First it measures this machine's peaks in the same run:
     - FMA throughput: 12 independent 8-wide FMA chains per thread (AVX2/FMA when the CPU
       has them, else a scalar loop), flops = iterations * 12 * 8 * 2, with N threads;
     - memory bandwidth: memcpy of a 256 MiB buffer split over N threads,
       bytes = 2 * size (read + write), median of 5.
   The header also names the CPU (/proc/cpuinfo: model name, family, model), whether nam's
   kernels flush subnormals (nam.h >>kernels) and the MXCSR this process started with (a
   flush-to-zero LD_PRELOAD shows there), and every bench's input distributions
   (BENCH_<KERNEL>_INPUTS; SSD has rows for two decay distributions, see bench_ssd.h).
   Then each kernel bench (bench/bench_<kernel>.h) validates against the reference path
   and prints rows: median time, GFLOP/s and GB/s (formulas in each bench), and the percent
   of the matching peak. --json prints the same rows as one JSON array (the first object,
   "peak", also carries "cpu", "mxcsr" and "flush"). */
#define _POSIX_C_SOURCE 200809L
#define NAM_IMPLEMENTATION
#include "../nam.h"
#include "bench_common.h"

/* kernel benches (each a static int bench_<kernel>(bench_opts *)) */
#include "bench_gemm.h"
#include "bench_ssd.h"
#include "bench_attention.h"
#include "bench_moe.h"
#include "bench_m2rnn.h"

/* "model name (family F model M)" from /proc/cpuinfo, or "unknown CPU". */
static void cpu_model(char *out, size_t n) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512], name[256] = "", fam[32] = "", mod[32] = "";
    snprintf(out, n, "unknown CPU");
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        char *v = strchr(line, ':');
        size_t len;
        if (!v) continue;
        v++;
        while (*v == ' ' || *v == '\t') v++;
        len = strlen(v);
        while (len && (v[len - 1] == '\n' || v[len - 1] == ' ')) v[--len] = 0;
        if (!name[0] && !strncmp(line, "model name", 10)) snprintf(name, sizeof name, "%s", v);
        else if (!fam[0] && !strncmp(line, "cpu family", 10)) snprintf(fam, sizeof fam, "%s", v);
        else if (!mod[0] && !strncmp(line, "model\t", 6)) snprintf(mod, sizeof mod, "%s", v);
        if (!strncmp(line, "\n", 1) && name[0]) break;   /* first processor only */
    }
    fclose(f);
    if (name[0] && fam[0]) snprintf(out, n, "%s (family %s model %s)", name, fam, mod[0] ? mod : "?");
    else if (name[0]) snprintf(out, n, "%s", name);
}

typedef struct peak_ctx { long iters; double sink[256]; size_t bytes; char *src, *dst; } peak_ctx;

#if NAM__X86_SIMD   /* nam.h's CPU-feature layer: the same build and run-time choice as the kernels */
NAM__TARGET_AVX2 static double fma_chains_avx2(long iters) {
    __m256 a0 = _mm256_set1_ps(1.0f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    float out[8];
    long i;
    for (i = 0; i < iters; i++) {
        a0 = _mm256_fmadd_ps(a0, m, c); a1 = _mm256_fmadd_ps(a1, m, c); a2 = _mm256_fmadd_ps(a2, m, c);
        a3 = _mm256_fmadd_ps(a3, m, c); a4 = _mm256_fmadd_ps(a4, m, c); a5 = _mm256_fmadd_ps(a5, m, c);
        a6 = _mm256_fmadd_ps(a6, m, c); a7 = _mm256_fmadd_ps(a7, m, c); a8 = _mm256_fmadd_ps(a8, m, c);
        a9 = _mm256_fmadd_ps(a9, m, c); a10 = _mm256_fmadd_ps(a10, m, c); a11 = _mm256_fmadd_ps(a11, m, c);
    }
    a0 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)), _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    a0 = _mm256_add_ps(a0, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    _mm256_storeu_ps(out, a0);
    return (double)out[0] + out[7];
}
#endif

static double fma_chains_scalar(long iters) {
    float a[96];
    long i;
    int j;
    for (j = 0; j < 96; j++) a[j] = 1.0f;
    for (i = 0; i < iters; i++)
        for (j = 0; j < 96; j++) a[j] = a[j] * 0.999999f + 1e-7f;
    return (double)a[0] + a[95];
}

static void peak_fma_task(void *ctx, int64_t begin, int64_t end, int thread) {
    peak_ctx *p = (peak_ctx *)ctx;
    (void)begin; (void)end;
#if NAM__X86_SIMD
    if (nam__cpu_avx2_fma()) { p->sink[thread] = fma_chains_avx2(p->iters); return; }
#endif
    p->sink[thread] = fma_chains_scalar(p->iters);
}

static void peak_copy_task(void *ctx, int64_t begin, int64_t end, int thread) {
    peak_ctx *p = (peak_ctx *)ctx;
    (void)thread;
    memcpy(p->dst + begin, p->src + begin, (size_t)(end - begin));
}

typedef struct peak_run { peak_ctx *p; int threads; int kind; } peak_run;
static int peak_once(void *ctx) {
    peak_run *r = (peak_run *)ctx;
    if (r->kind == 0) nam__parallel_for(r->threads, r->threads, peak_fma_task, r->p);
    else nam__parallel_for((int64_t)r->p->bytes, r->threads, peak_copy_task, r->p);
    return 0;
}

static void measure_peaks(bench_opts *o) {
    peak_ctx p;
    peak_run r;
    double t;
    int ab = bench_ftz_ab;
    bench_ftz_ab = 0;   /* the peak loops are not kernels under test */
    memset(&p, 0, sizeof p);
    r.p = &p;
    r.threads = o->threads;
    r.kind = 0;
    p.iters = o->quick ? 2000000 : 20000000;
    t = bench_median(peak_once, &r, o->quick ? 1 : 5);
    o->peak_gflops = (double)p.iters * 12 * 8 * 2 * o->threads / t / 1e9;
    if (!nam__cpu_avx2_fma()) o->peak_gflops = (double)p.iters * 96 * 2 * o->threads / t / 1e9;
    p.bytes = (size_t)(o->quick ? 32 : 256) << 20;
    p.src = (char *)bench_alloc(p.bytes);
    p.dst = (char *)bench_alloc(p.bytes);
    o->peak_gbps = 0;
    if (p.src && p.dst) {
        memset(p.src, 1, p.bytes);
        memset(p.dst, 2, p.bytes);
        r.kind = 1;
        t = bench_median(peak_once, &r, o->quick ? 1 : 5);
        o->peak_gbps = 2.0 * (double)p.bytes / t / 1e9;
    }
    free(p.src);
    free(p.dst);
    bench_ftz_ab = ab;
}

int main(int argc, char **argv) {
    bench_opts o;
    const char *only = NULL;
    int i, rc = 0;
    unsigned csr = 0;
    char cpu[400];
    const char *flush;
    memset(&o, 0, sizeof o);
    o.threads = nam_query_cpu_count();
    o.reps = 9;
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) o.quick = 1;
        else if (!strcmp(argv[i], "--json")) o.json = 1;
        else if (!strcmp(argv[i], "--ftz-ab")) bench_ftz_ab = 1;
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) o.threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) o.reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else {
            fprintf(stderr, "usage: nam-bench [--threads N] [--reps N] [--quick] [--json] [--ftz-ab] [--only gemm|ssd|attention|moe|m2rnn]\n");
            return 2;
        }
    }
    if (o.threads < 1 || o.threads > 256 || o.reps < 1 || o.reps > 1000) {
        fprintf(stderr, "nam-bench: --threads must be 1..256 and --reps 1..1000\n");
        return 2;
    }
    if (o.quick) o.reps = 1;
#if NAM__X86_SIMD
    csr = _mm_getcsr();
#endif
    cpu_model(cpu, sizeof cpu);
#if defined(NAM_KEEP_SUBNORMALS) || !((defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__aarch64__)))
    flush = "no (IEEE subnormals: NAM_KEEP_SUBNORMALS or no FTZ control here)";
#else
    flush = "yes (FTZ/DAZ inside every kernel call, caller's register restored)";
#endif
    measure_peaks(&o);
    if (o.json) printf("[\n {\"kernel\": \"peak\", \"shape\": {}, \"backend\": \"%s\", \"threads\": %d, \"median_ms\": 0, \"gflops\": %.2f, \"gbps\": %.2f, \"peak_pct\": 100.0, \"peak_of\": \"self\", \"cpu\": \"%s\", \"mxcsr\": \"0x%04X\", \"flush\": %s}",
                       nam__cpu_avx2_fma() ? "fma-avx2" : "fma-scalar", o.threads, o.peak_gflops, o.peak_gbps, cpu, csr, flush[0] == 'y' ? "true" : "false");
    else {
        printf("nam-bench %s: %d thread(s); measured peaks: %.1f GFLOP/s (%s FMA loop), %.1f GB/s (memcpy, read+write)\n",
               NAM_VERSION_STRING, o.threads, o.peak_gflops, nam__cpu_avx2_fma() ? "AVX2" : "scalar", o.peak_gbps);
        printf("cpu: %s, %d online\n", cpu, nam_query_cpu_count());
        printf("fp: kernels flush subnormals: %s; MXCSR at process start 0x%04X\n", flush, csr);
        printf("inputs: %s\n        %s\n        %s\n        %s\n", BENCH_GEMM_INPUTS, BENCH_SSD_INPUTS, BENCH_ATTENTION_INPUTS, BENCH_MOE_INPUTS);
    }
    o.rows = 1;
    if (!rc && (!only || !strcmp(only, "gemm"))) rc = bench_gemm(&o);
    if (!rc && (!only || !strcmp(only, "ssd"))) rc = bench_ssd(&o);
    if (!rc && (!only || !strcmp(only, "attention"))) rc = bench_attention(&o);
    if (!rc && (!only || !strcmp(only, "moe"))) rc = bench_moe(&o);
    if (!rc && (!only || !strcmp(only, "m2rnn"))) rc = bench_m2rnn(&o);
    if (o.json) printf("\n]\n");
    if (rc) fprintf(stderr, "nam-bench: a kernel benchmark failed validation or could not run\n");
    return rc ? 1 : 0;
}
