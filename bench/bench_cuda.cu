/* bench/bench_cuda.cu - nam-bench-cuda: the GPU kernel benchmarks, through nam.h's public
   API (CUDA tensors, desc.stream), beside cuBLAS where a cuBLAS equivalent exists.

   usage: nam-bench-cuda [--quick] [--json] [--reps N] [--warmup N] [--chunk N] [--only NAME]
     NAME: attention, ssd, conv1d, moe, m2rnn, or one MoE row: moe-route, moe-dispatch,
           moe-permute, moe-combine, moe-ffn
     --quick   smoke run: 5 reps, 1 warm-up, small shapes, smaller peak measurements
     --json    one JSON array, one object per row (the CPU bench's fields plus min_ms,
               p90_ms, reps, tflops, status, device)
     --chunk N SSD chunk_size for every SSD row (default: 0, nam's default for CUDA, 256;
               plus one row at 256, Mamba-2's default); rows show the chunk that ran
               (nam_ssd_desc.chunk_size_used)

   Build (CUDA C++; the nam.h implementation is compiled as C into its own object):
       nvcc -std=c++17 -O2 -I. -I/usr/include/stb -c bench/bench_cuda.cu -o bench_cuda.o
       nvcc -std=c++17 -O3 -I. -c nam_cuda.cu -o nam_cuda.o -gencode arch=compute_90a,code=sm_90a ...
       gcc -std=c99 -O2 -x c -DNAM_CUDA -DNAM_IMPLEMENTATION -I. -I/usr/include/stb -c nam.h -o nam_impl.o
       nvcc bench_cuda.o nam_cuda.o nam_impl.o -o nam-bench-cuda -lcublas -lcudart -lstb -lm -lpthread
   Without a usable device (any error from cudaGetDeviceCount, or no device) it prints one
   line in the test protocol of tests/run.sh, "skip nam-bench-cuda: no CUDA device (<error
   text>)", and exits 0: the smoke run counts it as a skip, not a pass.
   Emulator build (tests/cuda_emu.h; checks this program's logic on tiny shapes, no speed,
   no cuBLAS rows, no peaks):
       g++ -std=c++17 -x c++ -DNAM_CUDA_EMULATE -include tests/cuda_emu.h -I. -I/usr/include/stb \
           -c bench/bench_cuda.cu -o bench_emu.o   (link with an emulator nam_cuda object)

   Method (the CPU bench's conventions, bench/bench_common.h, on the GPU):
     - every row is validated first against nam.h's CPU path (NAM_BACKEND_CPU_REF or CPU)
       on the same inputs, with the tolerance stated at the row's bench below; a mismatch
       prints the row as "invalid" and the exit status becomes 1;
     - then `warmup` untimed runs (3; --quick 1) and `reps` timed runs (30; --quick 5),
       each between a cudaEvent pair on the bench's stream; before each timed run (outside
       the pair) a cudaMemsetAsync over 2x the L2 size evicts the L2;
     - median, min and p90 of the reps; TFLOP/s = flops / median, GB/s = bytes / median;
     - % of the peak measured in the same run: HBM = cudaMemcpyAsync device-to-device of
       1 GiB (read + write bytes / median), tensor = cublasGemmEx bf16 8192^3 with
       CUBLAS_COMPUTE_32F (2 n^3 / median), FP32 FMA = bx_fma_peak_kernel (8 independent
       fmaf chains per thread, 1024 iterations, 4 CTAs of 256 threads per SM: 2 flops
       per fmaf), all timed the same way;
     - a call that returns NAM_ERR_NOT_IMPLEMENTED prints "not implemented" and the run
       goes on; any other error prints "error" and the exit status becomes 1.
   All tensors are bf16 (router logits/weights and A, D, dt_bias: f32), contiguous. */
#define NAM_CUDA 1
#include "../nam.h"
#include "../nam_cuda.cuh"

#ifndef NAM_CUDA_EMULATE
#include <cuda_runtime.h>
#include <cublas_v2.h>
#endif

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <algorithm>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#if !defined(NAM_CUDA_EMULATE) && defined(CUBLAS_VERSION) && CUBLAS_VERSION >= 120500
#define BX_GROUPED_GEMM 1 /* cublasGemmGroupedBatchedEx: cuBLAS 12.5+ */
#endif

/* ---- events and streams (host clock in the emulator) ---------------------------------- */
#ifdef NAM_CUDA_EMULATE
struct bx_event_s { double t; };
typedef bx_event_s *bx_event;
static double bx_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static cudaError_t bx_event_create(bx_event *e) { *e = new bx_event_s(); (*e)->t = 0; return cudaSuccess; }
static void bx_event_destroy(bx_event e) { delete e; }
static cudaError_t bx_event_record(bx_event e, cudaStream_t) { e->t = bx_now(); return cudaSuccess; }
static cudaError_t bx_event_ms(bx_event a, bx_event b, float *ms) { *ms = (float)((b->t - a->t) * 1e3); return cudaSuccess; }
static cudaError_t bx_stream_create(cudaStream_t *s) { *s = nullptr; return cudaSuccess; }
static void bx_stream_destroy(cudaStream_t) {}
#else
typedef cudaEvent_t bx_event;
static cudaError_t bx_event_create(bx_event *e) { return cudaEventCreate(e); }
static void bx_event_destroy(bx_event e) { cudaEventDestroy(e); }
static cudaError_t bx_event_record(bx_event e, cudaStream_t s) { return cudaEventRecord(e, s); }
static cudaError_t bx_event_ms(bx_event a, bx_event b, float *ms) {
    cudaError_t r = cudaEventSynchronize(b);
    return r != cudaSuccess ? r : cudaEventElapsedTime(ms, a, b);
}
/* a blocking stream: it waits for the legacy default stream's work, such as the tail of a
   pageable cudaMemcpy upload */
static cudaError_t bx_stream_create(cudaStream_t *s) { return cudaStreamCreate(s); }
static void bx_stream_destroy(cudaStream_t s) { cudaStreamDestroy(s); }
#endif

/* ---- the run's state ------------------------------------------------------------------ */
struct bx_ctx {
    int quick, json, reps, warmup, chunk, emulate;
    const char *only;
    int rows, failed;
    double peak_tflops, peak_gbps; /* 0: not measured */
    double peak_fma_tflops;        /* FP32 FMA (SIMT) peak; 0: not measured */
    char device[512];
    cudaStream_t stream;
    void *flush;
    size_t flush_bytes;
    bx_event ev0, ev1;
#ifndef NAM_CUDA_EMULATE
    cublasHandle_t blas;
#endif
};

struct bx_time { double med, min, p90; int n; };

enum { BX_OK = 0, BX_NOTIMPL = 1, BX_ERROR = 2, BX_INVALID = 3, BX_SKIP = 4 };
typedef std::function<int(std::string &)> bx_fn; /* BX_OK / BX_NOTIMPL / BX_ERROR (why set) */

static std::string bx_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static std::string bx_fmt(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return std::string(buf);
}

static int bx_cuda(cudaError_t r, const char *what, std::string &why) {
    if (r == cudaSuccess) return BX_OK;
    why = bx_fmt("%s: %s (%s)", what, cudaGetErrorString(r), cudaGetErrorName(r));
    return BX_ERROR;
}

/* a nam call's result as a row outcome */
static int bx_nam(nam_status st, const nam_error &e, std::string &why) {
    if (st == NAM_OK) return BX_OK;
    why = e.message;
    return st == NAM_ERR_NOT_IMPLEMENTED ? BX_NOTIMPL : BX_ERROR;
}
/* bx_ran_cuda: bx_nam of a finished kernel call (st) that must also have run on the GPU
   (ran, read after the call, is NAM_BACKEND_CUDA) */
static int bx_ran_cuda(nam_status st, const nam_error &e, nam_backend ran, const char *fn, std::string &why) {
    int r = bx_nam(st, e, why);
    if (!r && ran != NAM_BACKEND_CUDA) { why = bx_fmt("%s ran %s, not cuda", fn, nam_backend_name(ran)); r = BX_ERROR; }
    return r;
}

#ifndef NAM_CUDA_EMULATE
static int bx_blas(cublasStatus_t r, const char *what, std::string &why) {
    if (r == CUBLAS_STATUS_SUCCESS) return BX_OK;
    why = bx_fmt("%s: %s (%s)", what, cublasGetStatusString(r), cublasGetStatusName(r));
    return r == CUBLAS_STATUS_NOT_SUPPORTED ? BX_NOTIMPL : BX_ERROR;
}
#endif

/* ---- memory ------------------------------------------------------------------------------ */
struct bx_dev { /* device buffer, freed at scope exit */
    void *p = nullptr;
    size_t bytes = 0;
    bx_dev() = default;
    bx_dev(const bx_dev &) = delete;
    bx_dev &operator=(const bx_dev &) = delete;
    ~bx_dev() { if (p) cudaFree(p); }
};
struct bx_host { /* 64-byte aligned host buffer (nam's CPU workspaces need 64) */
    void *p = nullptr;
    bx_host() = default;
    bx_host(const bx_host &) = delete;
    bx_host &operator=(const bx_host &) = delete;
    ~bx_host() { free(p); }
    int alloc(size_t bytes) {
        free(p);
        p = nullptr;
        return posix_memalign(&p, 64, bytes ? (bytes + 63) / 64 * 64 : 64) == 0 ? BX_OK : BX_ERROR;
    }
};

static int bx_alloc(bx_dev &d, size_t bytes, const char *what, std::string &why) {
    if (d.p) cudaFree(d.p);
    d.p = nullptr;
    d.bytes = bytes;
    if (bx_cuda(cudaMalloc(&d.p, bytes ? bytes : 256), what, why)) {
        d.p = nullptr;
        why += bx_fmt(" (cudaMalloc of %zu bytes)", bytes);
        return BX_ERROR;
    }
    return BX_OK;
}
static int bx_upload(bx_dev &d, const void *host, size_t bytes, const char *what, std::string &why) {
    if (bx_alloc(d, bytes, what, why)) return BX_ERROR;
    return bx_cuda(cudaMemcpy(d.p, host, bytes, cudaMemcpyHostToDevice), what, why);
}
static int bx_download(bx_ctx &c, void *host, const void *dev, size_t bytes, std::string &why) {
    if (bx_cuda(cudaStreamSynchronize(c.stream), "cudaStreamSynchronize", why)) return BX_ERROR;
    return bx_cuda(cudaMemcpy(host, dev, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy (device to host)", why);
}

/* ---- data: bf16 bit patterns on the host, deterministic uniform values ------------------- */
static uint16_t bx_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static float bx_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
struct bx_rng {
    uint32_t s;
    explicit bx_rng(uint32_t seed) : s(seed * 2654435761u + 12345u) {}
    uint32_t next(void) { s = s * 1664525u + 1013904223u; return s; }
    float uni(float lo, float hi) { return lo + (hi - lo) * (float)((next() >> 8) * (1.0 / 16777216.0)); }
};
static void bx_fill_bf16(std::vector<uint16_t> &v, size_t n, uint32_t seed, float lo, float hi) {
    bx_rng r(seed);
    v.resize(n);
    for (size_t i = 0; i < n; i++) v[i] = bx_bf16(r.uni(lo, hi));
}
static void bx_fill_f32(std::vector<float> &v, size_t n, uint32_t seed, float lo, float hi) {
    bx_rng r(seed);
    v.resize(n);
    for (size_t i = 0; i < n; i++) v[i] = r.uni(lo, hi);
}

/* got (bf16 bits) against ref (f32): |got - ref| <= atol_max * max|ref| + rtol * |ref|
   for every element, else why names the first bad element. */
static int bx_close(const char *what, const uint16_t *got, const float *ref, size_t n, double atol_max, double rtol, std::string &why) {
    double mx = 0, worst = 0;
    size_t i, bad = n;
    for (i = 0; i < n; i++) mx = fabs((double)ref[i]) > mx ? fabs((double)ref[i]) : mx;
    for (i = 0; i < n; i++) {
        double g = bx_f32(got[i]), d = fabs(g - (double)ref[i]), tol = atol_max * mx + rtol * fabs((double)ref[i]);
        if (!(d <= tol)) {
            if (bad == n) bad = i;
            if (!(d <= worst)) worst = d;
        }
    }
    if (bad == n) return BX_OK;
    why = bx_fmt("%s: element %zu is %g, CPU reference %g (max |ref| %g; tolerance %g * max|ref| + %g * |ref|; worst |diff| %g)", what, bad,
                 (double)bx_f32(got[bad]), (double)ref[bad], mx, atol_max, rtol, worst);
    return BX_INVALID;
}

/* ---- rows -------------------------------------------------------------------------------- */
static std::string bx_json_str(const std::string &s) {
    std::string o = "\"";
    for (char ch : s) {
        unsigned char u = (unsigned char)ch;
        if (ch == '"' || ch == '\\') { o += '\\'; o += ch; }
        else if (u < 0x20) o += bx_fmt("\\u%04x", u);
        else o += ch;
    }
    return o + "\"";
}

/* --only NAME: a row runs when NAME is its kernel or the kernel's group ("moe" for
   "moe-ffn"); a group runs when NAME is the group or one of its kernels */
static int bx_prefix(const char *a, const char *b) { /* a is b, or b followed by '-' */
    size_t n = strlen(b);
    return !strncmp(a, b, n) && (a[n] == 0 || a[n] == '-');
}
static int bx_want(const bx_ctx &c, const char *kernel) { return !c.only || bx_prefix(kernel, c.only); }
static int bx_want_group(const bx_ctx &c, const char *group) { return !c.only || bx_prefix(c.only, group); }

static void bx_json_begin_row(bx_ctx &c) {
    printf("%s\n ", c.rows ? "," : "");
    c.rows++;
}

/* One result row. rc BX_OK prints the timing; other codes print the status and `why`.
   kind 't': % of the tensor peak (TFLOP/s), 'm': % of the HBM peak (GB/s), 'f': % of
   the FP32 FMA peak (TFLOP/s). */
static void bx_row(bx_ctx &c, const char *kernel, const std::string &shape, const char *backend, int rc, const std::string &why, const bx_time *t,
                   double flops, double bytes, char kind, const std::string &extra_json = "", const std::string &extra_text = "") {
    static const char *const names[] = {"ok", "not implemented", "error", "invalid", "skipped"};
    const char *status = names[rc];
    if (rc == BX_ERROR || rc == BX_INVALID) c.failed = 1;
    if (rc != BX_OK) {
        if (c.json) {
            bx_json_begin_row(c);
            printf("{\"kernel\": \"%s\", \"shape\": %s, \"backend\": \"%s\", \"device\": %s, \"status\": \"%s\", \"message\": %s, \"median_ms\": null, "
                   "\"min_ms\": null, \"p90_ms\": null, \"reps\": 0, \"tflops\": null, \"gbps\": null, \"peak_pct\": null, \"peak_of\": \"%s\"}",
                   kernel, shape.c_str(), backend, bx_json_str(c.device).c_str(), status, bx_json_str(why).c_str(), kind == 'm' ? "hbm" : kind == 'f' ? "fp32-fma" : "tensor");
        } else {
            printf("%-13s %-64s %-15s %s%s%s\n", kernel, shape.c_str(), backend, status, why.empty() ? "" : ": ", why.c_str());
        }
        fflush(stdout);
        return;
    }
    {
        double tf = flops > 0 ? flops / t->med / 1e12 : 0, gb = bytes > 0 ? bytes / t->med / 1e9 : 0;
        double peak = kind == 'm' ? c.peak_gbps : kind == 'f' ? c.peak_fma_tflops : c.peak_tflops, val = kind == 'm' ? gb : tf, pct = peak > 0 ? 100.0 * val / peak : -1;
        const char *pk = kind == 'm' ? "HBM" : kind == 'f' ? "FP32 FMA" : "tensor";
        char tfs[32], gbs[32], pcts[48];
        if (c.json) {
            bx_json_begin_row(c);
            if (flops > 0) snprintf(tfs, sizeof tfs, "%.2f", tf);
            else snprintf(tfs, sizeof tfs, "null");
            if (bytes > 0) snprintf(gbs, sizeof gbs, "%.2f", gb);
            else snprintf(gbs, sizeof gbs, "null");
            if (pct >= 0) snprintf(pcts, sizeof pcts, "%.1f", pct);
            else snprintf(pcts, sizeof pcts, "null");
            printf("{\"kernel\": \"%s\", \"shape\": %s, \"backend\": \"%s\", \"device\": %s, \"status\": \"ok\", \"median_ms\": %.4f, \"min_ms\": %.4f, "
                   "\"p90_ms\": %.4f, \"reps\": %d, \"tflops\": %s, \"gbps\": %s, \"peak_pct\": %s, \"peak_of\": \"%s\"%s}",
                   kernel, shape.c_str(), backend, bx_json_str(c.device).c_str(), t->med * 1e3, t->min * 1e3, t->p90 * 1e3, t->n, tfs, gbs, pcts,
                   kind == 'm' ? "hbm" : kind == 'f' ? "fp32-fma" : "tensor", extra_json.c_str());
        } else {
            if (flops > 0) snprintf(tfs, sizeof tfs, "%8.1f", tf);
            else snprintf(tfs, sizeof tfs, "%8s", "-");
            if (bytes > 0) snprintf(gbs, sizeof gbs, "%8.1f", gb);
            else snprintf(gbs, sizeof gbs, "%8s", "-");
            if (pct >= 0) snprintf(pcts, sizeof pcts, "%5.1f%% of %s", pct, pk);
            else snprintf(pcts, sizeof pcts, "    - (no %s peak)", pk);
            printf("%-13s %-64s %-15s %9.3f ms [%8.3f .. %8.3f]  %s TFLOP/s  %s GB/s  %s%s\n", kernel, shape.c_str(), backend, t->med * 1e3,
                   t->min * 1e3, t->p90 * 1e3, tfs, gbs, pcts, extra_text.c_str());
        }
        fflush(stdout);
    }
}

/* ---- timing ------------------------------------------------------------------------------ */
/* Run op once, check it (and the stream), validate, then warm up and time c.reps runs.
   Returns BX_OK with *t filled, or the outcome that stopped it (why set). */
static int bx_measure(bx_ctx &c, const bx_fn &op, const bx_fn &validate, bx_time *t, std::string &why) {
    std::vector<double> ms;
    int rc, i;
    if (bx_cuda(cudaDeviceSynchronize(), "before the first run (uploads)", why)) return BX_ERROR;
    if ((rc = op(why))) return rc;
    if (bx_cuda(cudaStreamSynchronize(c.stream), "after the first run", why)) return BX_ERROR;
    if (validate && (rc = validate(why))) return rc == BX_ERROR ? BX_ERROR : BX_INVALID;
    for (i = 0; i < c.warmup; i++)
        if ((rc = op(why))) return rc;
    for (i = 0; i < c.reps; i++) {
        float e = 0;
        if (c.flush && bx_cuda(cudaMemsetAsync(c.flush, (i & 1) ? 0x5a : 0xa5, c.flush_bytes, c.stream), "L2 flush (cudaMemsetAsync)", why)) return BX_ERROR;
        if (bx_cuda(bx_event_record(c.ev0, c.stream), "cudaEventRecord", why)) return BX_ERROR;
        if ((rc = op(why))) return rc;
        if (bx_cuda(bx_event_record(c.ev1, c.stream), "cudaEventRecord", why)) return BX_ERROR;
        if (bx_cuda(bx_event_ms(c.ev0, c.ev1, &e), "cudaEventElapsedTime", why)) return BX_ERROR;
        ms.push_back((double)e * 1e-3);
    }
    if (bx_cuda(cudaStreamSynchronize(c.stream), "after the timed runs", why)) return BX_ERROR;
    std::sort(ms.begin(), ms.end());
    t->n = (int)ms.size();
    t->min = ms[0];
    t->med = t->n % 2 ? ms[t->n / 2] : 0.5 * (ms[t->n / 2 - 1] + ms[t->n / 2]);
    t->p90 = ms[(size_t)ceil(0.9 * t->n) - 1];
    return BX_OK;
}

/* measure and print one row; returns the outcome (t filled on BX_OK) */
static int bx_bench(bx_ctx &c, const char *kernel, const std::string &shape, const char *backend, const bx_fn &op, const bx_fn &validate,
                    double flops, double bytes, char kind, bx_time *t_out = nullptr) {
    bx_time t;
    std::string why;
    int rc = bx_measure(c, op, validate, &t, why);
    bx_row(c, kernel, shape, backend, rc, why, &t, flops, bytes, kind);
    if (t_out && rc == BX_OK) *t_out = t;
    return rc;
}

/* ==== peaks ================================================================================ */
#ifndef NAM_CUDA_EMULATE
/* FP32 FMA throughput: 8 independent fmaf chains per thread (enough to cover the FMA
   latency at 4 CTAs of 256 threads per SM), 1024 iterations; the result is stored so that
   nothing is optimised away. */
static __global__ void __launch_bounds__(256) bx_fma_peak_kernel(float *out, float m, float a) {
    float x0 = threadIdx.x, x1 = x0 + 1, x2 = x0 + 2, x3 = x0 + 3, x4 = x0 + 4, x5 = x0 + 5, x6 = x0 + 6, x7 = x0 + 7;
    for (int i = 0; i < 1024; i++) {
        x0 = fmaf(x0, m, a); x1 = fmaf(x1, m, a); x2 = fmaf(x2, m, a); x3 = fmaf(x3, m, a);
        x4 = fmaf(x4, m, a); x5 = fmaf(x5, m, a); x6 = fmaf(x6, m, a); x7 = fmaf(x7, m, a);
    }
    out[blockIdx.x * blockDim.x + threadIdx.x] = x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7;
}
#endif

/* HBM: cudaMemcpyAsync device to device of 1 GiB (--quick 256 MiB); GB/s = 2 * bytes / t.
   Tensor: cublasGemmEx C = A^T B, bf16 in and out, fp32 compute, n = 8192 (--quick 4096)
   on uniform [-1, 1) data; TFLOP/s = 2 n^3 / t. */
static void bx_peaks(bx_ctx &c) {
    std::string why, shape;
    bx_time t;
    int rc;
    {
        size_t bytes = (size_t)(c.quick ? 256 : 1024) << 20;
        bx_dev a, b;
        shape = bx_fmt("{\"op\":\"memcpy-d2d\",\"bytes\":%zu}", bytes);
        rc = bx_alloc(a, bytes, "peak buffer", why);
        if (!rc) rc = bx_alloc(b, bytes, "peak buffer", why);
        if (!rc) rc = bx_cuda(cudaMemset(a.p, 1, bytes), "cudaMemset", why);
        if (!rc) {
            bx_fn op = [&](std::string &w) -> int { return bx_cuda(cudaMemcpyAsync(b.p, a.p, bytes, cudaMemcpyDeviceToDevice, c.stream), "cudaMemcpyAsync", w); };
            rc = bx_measure(c, op, nullptr, &t, why);
        }
        if (!rc) c.peak_gbps = 2.0 * (double)bytes / t.med / 1e9;
        if (c.json) bx_row(c, "peak", shape, "cuda-memcpy", rc, why, &t, 0, 2.0 * (double)bytes, 'm');
        else if (rc) fprintf(stderr, "nam-bench-cuda: HBM peak not measured: %s\n", why.c_str());
    }
#ifndef NAM_CUDA_EMULATE
    {
        const int n = c.quick ? 4096 : 8192;
        size_t nn = (size_t)n * n;
        std::vector<uint16_t> h;
        bx_dev A, B, C;
        const float one = 1.0f, zero = 0.0f;
        shape = bx_fmt("{\"op\":\"gemm\",\"m\":%d,\"n\":%d,\"k\":%d,\"dtype\":\"bf16\",\"compute\":\"fp32\"}", n, n, n);
        bx_fill_bf16(h, nn, 1, -1.0f, 1.0f);
        rc = bx_upload(A, h.data(), nn * 2, "peak GEMM A", why);
        bx_fill_bf16(h, nn, 2, -1.0f, 1.0f);
        if (!rc) rc = bx_upload(B, h.data(), nn * 2, "peak GEMM B", why);
        if (!rc) rc = bx_alloc(C, nn * 2, "peak GEMM C", why);
        if (!rc) {
            bx_fn op = [&](std::string &w) -> int {
                return bx_blas(cublasGemmEx(c.blas, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &one, A.p, CUDA_R_16BF, n, B.p, CUDA_R_16BF, n, &zero, C.p,
                                            CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                               "cublasGemmEx", w);
            };
            rc = bx_measure(c, op, nullptr, &t, why);
        }
        if (!rc) c.peak_tflops = 2.0 * (double)n * n * n / t.med / 1e12;
        if (c.json) bx_row(c, "peak", shape, "cublas", rc, why, &t, 2.0 * (double)n * n * n, 0, 't');
        else if (rc) fprintf(stderr, "nam-bench-cuda: tensor peak not measured: %s\n", why.c_str());
    }
    {
        int dev = 0, sms = 0;
        bx_dev o;
        unsigned blocks;
        double flops;
        cudaGetDevice(&dev);
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
        blocks = (unsigned)(sms > 0 ? sms : 132) * 4 * (c.quick ? 4 : 16);
        flops = 2.0 * 8 * 1024 * 256.0 * blocks;
        shape = bx_fmt("{\"op\":\"fmaf\",\"blocks\":%u,\"threads\":256,\"chains\":8,\"iterations\":1024}", blocks);
        rc = bx_alloc(o, (size_t)blocks * 256 * 4, "FMA peak output", why);
        if (!rc) {
            bx_fn op = [&](std::string &w) -> int {
                bx_fma_peak_kernel<<<blocks, 256, 0, c.stream>>>((float *)o.p, 0.999999f, 1e-7f);
                return bx_cuda(cudaGetLastError(), "launch of bx_fma_peak_kernel", w);
            };
            rc = bx_measure(c, op, nullptr, &t, why);
        }
        if (!rc) c.peak_fma_tflops = flops / t.med / 1e12;
        if (c.json) bx_row(c, "peak", shape, "cuda-fmaf", rc, why, &t, flops, 0, 'f');
        else if (rc) fprintf(stderr, "nam-bench-cuda: FP32 FMA peak not measured: %s\n", why.c_str());
    }
#endif
}

/* ==== attention ============================================================================ */
/* q (b, s, hq, d), k, v (b, s, hk, d), out (b, s, hq, d), bf16, causal (bottom-right; with
   sq == sk the same as top-left), scale 1/sqrt(d).
   FLOPs (FlashAttention's benchmark convention): 4 * b * s * s * hq * d, halved when causal.
   Bytes: q, k, v, out once: 2 * (2 b s hq d + 2 b s hk d).
   Validation: query rows [0, 4), [s/2, s/2 + 4), [s - 4, s) of batches 0 and b-1, every
   head, against NAM_BACKEND_CPU_REF (fp64 softmax) on views of those rows (with bottom-
   right alignment rows [i0, i0 + n) over keys [0, i0 + n) are the same rows), from the same
   bf16 inputs: |gpu - ref| <= 4e-3 * max|ref| + 1e-2 |ref| (bf16 output rounding is
   2^-9 |ref|; rounding P to bf16 for the PV product adds errors of random sign, about
   2^-9 |v| / sqrt(keys), far below it). */
struct bx_attn_shape { int b, s, hq, hk, d, causal; };

static void bx_attention_one(bx_ctx &c, const bx_attn_shape &a) {
    const int64_t b = a.b, s = a.s, hq = a.hq, hk = a.hk, hd = a.d;
    const size_t nq = (size_t)(b * s * hq * hd), nk = (size_t)(b * s * hk * hd);
    int64_t shq[4] = {b, s, hq, hd}, shk[4] = {b, s, hk, hd};
    std::string shape = bx_fmt("{\"b\":%d,\"s\":%d,\"hq\":%d,\"hk\":%d,\"d\":%d,\"causal\":%s,\"dtype\":\"bf16\"}", a.b, a.s, a.hq, a.hk, a.d,
                               a.causal ? "true" : "false");
    std::vector<uint16_t> q, k, v;
    bx_dev dq, dk, dv, dout, ws;
    nam_attention_desc d;
    nam_error e;
    size_t ws_bytes = 0;
    std::string why;
    double flops = 4.0 * (double)b * (double)s * (double)s * (double)hq * (double)hd / (a.causal ? 2.0 : 1.0);
    double bytes = 2.0 * (double)(2 * nq + 2 * nk);
    int rc;
    bx_fill_bf16(q, nq, 11, -1.0f, 1.0f);
    bx_fill_bf16(k, nk, 12, -1.0f, 1.0f);
    bx_fill_bf16(v, nk, 13, -1.0f, 1.0f);
    rc = bx_upload(dq, q.data(), nq * 2, "q", why);
    if (!rc) rc = bx_upload(dk, k.data(), nk * 2, "k", why);
    if (!rc) rc = bx_upload(dv, v.data(), nk * 2, "v", why);
    if (!rc) rc = bx_alloc(dout, nq * 2, "out", why);
    memset(&d, 0, sizeof d);
    d.q = nam_tensor_cuda(dq.p, NAM_BF16, 4, shq);
    d.k = nam_tensor_cuda(dk.p, NAM_BF16, 4, shk);
    d.v = nam_tensor_cuda(dv.p, NAM_BF16, 4, shk);
    d.out = nam_tensor_cuda(dout.p, NAM_BF16, 4, shq);
    d.causal = a.causal;
    d.align = NAM_CAUSAL_BOTTOM_RIGHT;
    d.stream = c.stream;
    if (!rc) rc = bx_nam(nam_attention_workspace_size(&d, &ws_bytes, &e), e, why);
    if (!rc && ws_bytes) rc = bx_alloc(ws, ws_bytes, "attention workspace", why);
    if (rc) { bx_row(c, "attention", shape, "cuda", rc, why, nullptr, flops, bytes, 't'); return; }

    bx_fn op = [&](std::string &w) -> int {
        nam_error err;
        nam_status st = nam_attention(&d, ws.p, ws_bytes, &err);
        return bx_ran_cuda(st, err, d.ran, "nam_attention", w);
    };
    bx_fn validate = [&](std::string &w) -> int {
        std::vector<uint16_t> out(nq);
        const int64_t n = s < 4 ? s : 4, row = hq * hd;
        int64_t starts[3] = {0, s / 2, s - n};
        int64_t batches[2] = {0, b - 1};
        std::vector<float> ref((size_t)(n * row));
        if (bx_download(c, out.data(), dout.p, nq * 2, w)) return BX_ERROR;
        for (int bi = 0; bi < (b > 1 ? 2 : 1); bi++)
            for (int si = 0; si < 3; si++) {
                int64_t i0 = starts[si] + n > s ? s - n : starts[si], sk = a.causal ? i0 + n : s, bb = batches[bi];
                int64_t rq[4] = {1, n, hq, hd}, rk[4] = {1, sk, hk, hd};
                nam_attention_desc r;
                nam_error err;
                size_t need = 0;
                bx_host rws;
                memset(&r, 0, sizeof r);
                r.q = nam_tensor_make(q.data() + (size_t)((bb * s + i0) * row), NAM_BF16, 4, rq);
                r.k = nam_tensor_make(k.data() + (size_t)(bb * s * hk * hd), NAM_BF16, 4, rk);
                r.v = nam_tensor_make(v.data() + (size_t)(bb * s * hk * hd), NAM_BF16, 4, rk);
                r.out = nam_tensor_make(ref.data(), NAM_F32, 4, rq);
                r.causal = a.causal;
                r.align = NAM_CAUSAL_BOTTOM_RIGHT;
                r.backend = NAM_BACKEND_CPU_REF;
                if (nam_attention_workspace_size(&r, &need, &err) != NAM_OK || rws.alloc(need) ||
                    nam_attention(&r, rws.p, need, &err) != NAM_OK) {
                    w = bx_fmt("CPU reference: %s", err.message);
                    return BX_ERROR;
                }
                std::string what = bx_fmt("batch %lld rows %lld..%lld", (long long)bb, (long long)i0, (long long)(i0 + n - 1));
                if (bx_close(what.c_str(), out.data() + (size_t)((bb * s + i0) * row), ref.data(), ref.size(), 4e-3, 1e-2, w)) return BX_INVALID;
            }
        return BX_OK;
    };
    bx_bench(c, "attention", shape, "cuda", op, validate, flops, bytes, 't');
}

static void bx_attention(bx_ctx &c) {
    /* the CPU bench's shape, then FlashAttention's hd128 sweep at hidden 2048 (16 heads of
       128) with batch x seqlen = 16k tokens, GQA off and 4:1 */
    static const bx_attn_shape full[] = {{1, 2048, 32, 8, 128, 1},  {16, 1024, 16, 16, 128, 1}, {8, 2048, 16, 16, 128, 1}, {4, 4096, 16, 16, 128, 1},
                                         {2, 8192, 16, 16, 128, 1}, {1, 16384, 16, 16, 128, 1}, {4, 4096, 16, 4, 128, 1},  {1, 16384, 16, 4, 128, 1}};
    static const bx_attn_shape quick[] = {{2, 1024, 16, 16, 128, 1}, {1, 1024, 16, 4, 128, 1}};
    static const bx_attn_shape emu[] = {{1, 72, 2, 1, 128, 1}, {2, 40, 2, 2, 64, 0}};
    const bx_attn_shape *list = c.emulate ? emu : c.quick ? quick : full;
    size_t n = c.emulate ? sizeof emu / sizeof emu[0] : c.quick ? sizeof quick / sizeof quick[0] : sizeof full / sizeof full[0];
    for (size_t i = 0; i < n; i++) bx_attention_one(c, list[i]);
}

/* ==== kernel rows (SSD, conv1d, M2RNN): inputs uploaded, bf16 out, validated on the CPU == */
/* One input of a scan row: host values (bf16 bits or f32; an empty vector: absent), the
   device copy, the shape. bx_in::on(host) is the tensor on either side. */
struct bx_in {
    const char *name;
    nam_dtype dt;
    const void *host;
    size_t bytes;
    int ndim;
    int64_t shape[4];
    bx_dev dev;
    bx_in(const char *nm, const std::vector<uint16_t> &v, std::initializer_list<int64_t> s) : bx_in(nm, NAM_BF16, v.data(), v.size() * 2, s) {}
    bx_in(const char *nm, const std::vector<float> &v, std::initializer_list<int64_t> s) : bx_in(nm, NAM_F32, v.data(), v.size() * 4, s) {}
    bx_in(const char *nm, nam_dtype t, const void *h, size_t b, std::initializer_list<int64_t> s) : name(nm), dt(t), host(h), bytes(b), ndim((int)s.size()), shape{0, 0, 0, 0} {
        int i = 0;
        for (int64_t x : s) shape[i++] = x;
    }
    nam_tensor on(int host_side) const {
        return host_side ? nam_tensor_make(const_cast<void *>(host), dt, ndim, shape) : nam_tensor_cuda(dev.p, dt, ndim, shape);
    }
};

/* A desc field and the input bound to it (not bound when the input is absent). */
template <class Desc> struct bx_bind {
    nam_tensor Desc::*field;
    bx_in *in;
};

/* The calls of one kernel: nam_X_workspace_size and nam_X. */
template <class Desc> struct bx_scan_api {
    const char *name; /* "nam_ssd" */
    nam_status (*workspace_size)(const Desc *, size_t *, nam_error *);
    nam_status (*run)(Desc *, void *, size_t, nam_error *);
};

/* bx_scan_row: uploads the bound inputs, allocates out (bf16, out_shape), binds the device
   desc (binds, then scalars(d); out and stream set here), queries and allocates the
   workspace, then bx_bench with a validation of the whole output against NAM_BACKEND_CPU on
   the host values (out as f32): |gpu - ref| <= atol * max|ref| + rtol |ref|. With label set,
   one call runs first and the row's shape is label(desc) (a desc that reports what ran,
   e.g. the SSD chunk). */
template <class Desc>
static void bx_scan_row(bx_ctx &c, const char *kernel, const std::string &shape, const bx_scan_api<Desc> &api, std::initializer_list<bx_bind<Desc>> binds,
                        std::initializer_list<int64_t> out_shape, const std::function<void(Desc &)> &scalars, double atol, double rtol,
                        double flops, double bytes, char peak, const std::function<std::string(const Desc &)> &label = nullptr) {
    bx_in out("out", NAM_BF16, nullptr, 0, out_shape);
    std::string row = shape;
    size_t nout = 1, ws_bytes = 0;
    bx_dev ws;
    Desc d;
    nam_error e;
    std::string why;
    int rc = 0;
    auto bind = [&](Desc &t, int host) {
        memset(&t, 0, sizeof t);
        for (const bx_bind<Desc> &bd : binds)
            if (bd.in->bytes) t.*bd.field = bd.in->on(host);
        if (scalars) scalars(t);
    };
    for (int64_t x : out_shape) nout *= (size_t)x;
    for (const bx_bind<Desc> &bd : binds)
        if (!rc && bd.in->bytes) rc = bx_upload(bd.in->dev, bd.in->host, bd.in->bytes, bd.in->name, why);
    if (!rc) rc = bx_alloc(out.dev, nout * 2, "out", why);
    bind(d, 0);
    d.out = out.on(0);
    d.stream = c.stream;
    if (!rc) rc = bx_nam(api.workspace_size(&d, &ws_bytes, &e), e, why);
    if (!rc && ws_bytes) rc = bx_alloc(ws, ws_bytes, bx_fmt("%s workspace", kernel).c_str(), why);
    if (!rc && label) {
        rc = bx_nam(api.run(&d, ws.p, ws_bytes, &e), e, why);
        if (!rc) row = label(d);
    }
    if (rc) { bx_row(c, kernel, row, "cuda", rc, why, nullptr, flops, bytes, peak); return; }

    bx_fn op = [&](std::string &w) -> int {
        nam_error err;
        nam_status st = api.run(&d, ws.p, ws_bytes, &err);
        return bx_ran_cuda(st, err, d.ran, api.name, w);
    };
    bx_fn validate = [&](std::string &w) -> int {
        std::vector<uint16_t> got(nout);
        std::vector<float> ref(nout);
        Desc r;
        nam_error err;
        size_t need = 0;
        bx_host rws;
        if (bx_download(c, got.data(), out.dev.p, nout * 2, w)) return BX_ERROR;
        bind(r, 1);
        r.out = nam_tensor_make(ref.data(), NAM_F32, out.ndim, out.shape);
        r.backend = NAM_BACKEND_CPU;
        if (api.workspace_size(&r, &need, &err) != NAM_OK || rws.alloc(need) || api.run(&r, rws.p, need, &err) != NAM_OK) {
            w = bx_fmt("CPU reference: %s", err.message);
            return BX_ERROR;
        }
        return bx_close("out", got.data(), ref.data(), nout, atol, rtol, w);
    };
    bx_bench(c, kernel, row, "cuda", op, validate, flops, bytes, peak);
}

/* ==== SSD ================================================================================== */
/* nam_ssd: x (b, l, h, p), dt (b, l, h), B, C (b, l, g, n), z optional, out (b, l, h, p) bf16;
   A, D, dt_bias (h) f32; dt_softplus on; chunk_size as printed.
   Bytes: x, dt, B, C, (z), out read or written once:
       2 * (2 b l h p + b l h + 2 b l g n (+ b l h p with z))
   FLOPs: the recurrence's 5 b l h p n (the CPU bench's figure; the chunked algorithm does
   a similar count in matmul form) - printed for reference; the % is of the HBM peak.
   Validation: the whole output against NAM_BACKEND_CPU (fp32 math, same bf16 inputs):
   |gpu - ref| <= 2e-2 * max|ref| + 2e-2 |ref| (Mamba's own bf16 tests allow 5e-2 + 3e-2). */
struct bx_ssd_shape { int b, l, h, p, n, g, z, chunk; };

static void bx_ssd_one(bx_ctx &c, const bx_ssd_shape &a) {
    const int64_t b = a.b, l = a.l, h = a.h, p = a.p, n = a.n, g = a.g;
    const size_t nx = (size_t)(b * l * h * p), ndt = (size_t)(b * l * h), nb = (size_t)(b * l * g * n);
    auto label = [&](int chunk) {
        return bx_fmt("{\"b\":%d,\"l\":%d,\"h\":%d,\"p\":%d,\"n\":%d,\"g\":%d,\"z\":%s,\"chunk\":%d,\"dtype\":\"bf16\"}", a.b, a.l, a.h, a.p, a.n, a.g,
                      a.z ? "true" : "false", chunk);
    };
    std::string shape = label(a.chunk);   /* the request; the row shows the chunk that ran */
    std::vector<uint16_t> x, dt, B, C, z;
    std::vector<float> A, D, bias;
    double bytes = 2.0 * (double)(2 * nx + ndt + 2 * nb + (a.z ? nx : 0)), flops = 5.0 * (double)nx * (double)n;
    bx_fill_bf16(x, nx, 21, -1.0f, 1.0f);
    bx_fill_bf16(dt, ndt, 22, -3.0f, 0.0f);
    bx_fill_bf16(B, nb, 23, -1.0f, 1.0f);
    bx_fill_bf16(C, nb, 24, -1.0f, 1.0f);
    if (a.z) bx_fill_bf16(z, nx, 25, -1.0f, 1.0f);
    bx_fill_f32(A, (size_t)h, 26, -8.0f, -1.0f);
    bx_fill_f32(D, (size_t)h, 27, 0.0f, 1.0f);
    bx_fill_f32(bias, (size_t)h, 28, -1.0f, 0.5f);
    bx_in X("x", x, {b, l, h, p}), DT("dt", dt, {b, l, h}), IB("B", B, {b, l, g, n}), IC("C", C, {b, l, g, n}), Z("z", z, {b, l, h, p});
    bx_in IA("A", A, {h}), ID("D", D, {h}), BIAS("dt_bias", bias, {h});
    typedef nam_ssd_desc S;
    const bx_scan_api<S> api = {"nam_ssd", nam_ssd_workspace_size, nam_ssd};
    bx_scan_row<S>(c, "ssd", shape, api, {{&S::x, &X}, {&S::dt, &DT}, {&S::A, &IA}, {&S::B, &IB}, {&S::C, &IC}, {&S::D, &ID}, {&S::dt_bias, &BIAS}, {&S::z, &Z}},
                   {b, l, h, p}, [&](S &s) { s.dt_softplus = 1; s.chunk_size = a.chunk; }, 2e-2, 2e-2, flops, bytes, 'm',
                   [&](const S &s) { return label(s.chunk_size_used); });
}

static void bx_ssd(bx_ctx &c) {
    /* the CPU bench's shapes (h 48), then hidden 2048 (h 32 of p 64, n 128) at 4k and 16k
       tokens, g 1 and 8, with z, and at Mamba-2's chunk 256 */
    static const bx_ssd_shape full[] = {{1, 512, 48, 64, 128, 1, 0, 0},   {1, 4096, 48, 64, 128, 1, 0, 0},  {1, 4096, 32, 64, 128, 1, 0, 0},
                                        {4, 4096, 32, 64, 128, 1, 0, 0},  {1, 16384, 32, 64, 128, 1, 0, 0}, {4, 4096, 32, 64, 128, 8, 0, 0},
                                        {4, 4096, 32, 64, 128, 1, 1, 0},  {4, 4096, 32, 64, 128, 1, 0, 256}};
    static const bx_ssd_shape quick[] = {{1, 1024, 32, 64, 128, 1, 0, 0}, {2, 1024, 32, 64, 128, 8, 1, 0}};
    static const bx_ssd_shape emu[] = {{1, 80, 2, 64, 128, 1, 0, 0}, {2, 40, 4, 64, 64, 2, 1, 0}};
    const bx_ssd_shape *list = c.emulate ? emu : c.quick ? quick : full;
    size_t n = c.emulate ? sizeof emu / sizeof emu[0] : c.quick ? sizeof quick / sizeof quick[0] : sizeof full / sizeof full[0];
    for (size_t i = 0; i < n; i++) {
        bx_ssd_shape s = list[i];
        if (c.chunk >= 0) {
            if (s.chunk) continue; /* --chunk N: one chunk size for every row */
            s.chunk = c.chunk;
        }
        bx_ssd_one(c, s);
    }
}

/* ==== conv1d =============================================================================== */
/* nam_conv1d: x (b, l, c), weight (c, w), bias (c), out (b, l, c), bf16, SiLU on.
   Bytes: x read and out written once, weight and bias once: 2 * (2 b l c + c w + c).
   Validation: the whole output against NAM_BACKEND_CPU (fp32):
   |gpu - ref| <= 1e-3 * max|ref| + 8e-3 |ref| (bf16 output rounding is 2^-9 |ref|). */
struct bx_conv_shape { int b, l, c, w; };

/* nam_conv1d takes no workspace: its calls in bx_scan_api's form */
static nam_status bx_conv1d_ws(const nam_conv1d_desc *, size_t *bytes, nam_error *) {
    *bytes = 0;
    return NAM_OK;
}
static nam_status bx_conv1d_run(nam_conv1d_desc *d, void *, size_t, nam_error *e) { return nam_conv1d(d, e); }

static void bx_conv1d_one(bx_ctx &c, const bx_conv_shape &a) {
    const int64_t b = a.b, l = a.l, ch = a.c, w = a.w;
    const size_t nx = (size_t)(b * l * ch);
    std::string shape = bx_fmt("{\"b\":%d,\"l\":%d,\"c\":%d,\"w\":%d,\"silu\":true,\"dtype\":\"bf16\"}", a.b, a.l, a.c, a.w);
    std::vector<uint16_t> x, wt, bias;
    double bytes = 2.0 * (double)(2 * nx + (size_t)(ch * w) + (size_t)ch);
    bx_fill_bf16(x, nx, 31, -1.0f, 1.0f);
    bx_fill_bf16(wt, (size_t)(ch * w), 32, -0.5f, 0.5f);
    bx_fill_bf16(bias, (size_t)ch, 33, -0.2f, 0.2f);
    bx_in X("x", x, {b, l, ch}), WT("weight", wt, {ch, w}), BIAS("bias", bias, {ch});
    typedef nam_conv1d_desc V;
    const bx_scan_api<V> api = {"nam_conv1d", bx_conv1d_ws, bx_conv1d_run};
    bx_scan_row<V>(c, "conv1d", shape, api, {{&V::x, &X}, {&V::weight, &WT}, {&V::bias, &BIAS}}, {b, l, ch}, [](V &s) { s.silu = 1; }, 1e-3, 8e-3, 0, bytes, 'm');
}

static void bx_conv1d(bx_ctx &c) {
    /* Mamba-2 at hidden 2048: channels 4096 + 2 g n = 4096 + 256, width 4, 16k tokens */
    static const bx_conv_shape full[] = {{4, 4096, 4352, 4}, {1, 16384, 4352, 4}};
    static const bx_conv_shape quick[] = {{1, 2048, 4352, 4}};
    static const bx_conv_shape emu[] = {{2, 40, 300, 4}};
    const bx_conv_shape *list = c.emulate ? emu : c.quick ? quick : full;
    size_t n = c.emulate ? sizeof emu / sizeof emu[0] : c.quick ? sizeof quick / sizeof quick[0] : sizeof full / sizeof full[0];
    for (size_t i = 0; i < n; i++) bx_conv1d_one(c, list[i]);
}

/* ==== M2RNN ================================================================================ */
/* nam_m2rnn: NAM56R's R block, K 64, V 16, one shared q/k head, H value heads (= W, gate
   heads); q, k, v, out bf16; a, W, A_log, dt_bias, D f32.
   FLOPs per token and head (the CPU bench's count): 2 K V V + 7 K V = 39936; % of the FP32
   FMA peak (the kernel is fp32 SIMT; the tanh and the gate are not counted).
   Bytes: q, k (b l K), v, out (b l H V) in bf16, a (b l H) f32.
   Validation: the whole output against NAM_BACKEND_CPU (fp32, same inputs):
   |gpu - ref| <= 1e-2 * max|ref| + 1.6e-2 |ref| (bf16 output rounding is 2^-9 |ref|). */
struct bx_m2rnn_shape { int b, l, H; };

static void bx_m2rnn_one(bx_ctx &c, const bx_m2rnn_shape &a) {
    const int64_t b = a.b, l = a.l, H = a.H, K = 64, V = 16;
    const size_t nq = (size_t)(b * l * K), nv = (size_t)(b * l * H * V), na = (size_t)(b * l * H);
    std::string shape = bx_fmt("{\"b\":%d,\"l\":%d,\"H\":%d,\"K\":64,\"V\":16,\"nq\":1,\"nk\":1,\"dtype\":\"bf16\"}", a.b, a.l, a.H);
    std::vector<uint16_t> q, k, v;
    std::vector<float> af, W, Al, bias, D;
    double flops = (2.0 * K * V * V + 7.0 * K * V) * (double)(b * l * H), bytes = 2.0 * (double)(2 * nq + 2 * nv) + 4.0 * (double)na;
    bx_fill_bf16(q, nq, 41, -1.0f, 1.0f);
    bx_fill_bf16(k, nq, 42, -1.0f, 1.0f);
    bx_fill_bf16(v, nv, 43, -1.0f, 1.0f);
    bx_fill_f32(af, na, 44, -2.0f, 2.0f);
    bx_fill_f32(W, (size_t)(H * V * V), 45, -0.1f, 0.1f);
    for (int64_t h = 0; h < H; h++)
        for (int64_t j = 0; j < V; j++) W[(size_t)((h * V + j) * V + j)] += 1.0f;
    bx_fill_f32(Al, (size_t)H, 46, 0.0f, 2.7f);
    bx_fill_f32(bias, (size_t)H, 47, -6.0f, -2.0f);
    bx_fill_f32(D, (size_t)(H * V), 48, 0.5f, 1.5f);
    bx_in IQ("q", q, {b, l, 1, K}), IK("k", k, {b, l, 1, K}), IV("v", v, {b, l, H, V}), IA("a", af, {b, l, H}), IW("W", W, {H, V, V});
    bx_in IAl("A_log", Al, {H}), BIAS("dt_bias", bias, {H}), ID("D", D, {H, V});
    typedef nam_m2rnn_desc M;
    const bx_scan_api<M> api = {"nam_m2rnn", nam_m2rnn_workspace_size, nam_m2rnn};
    bx_scan_row<M>(c, "m2rnn", shape, api, {{&M::q, &IQ}, {&M::k, &IK}, {&M::v, &IV}, {&M::a, &IA}, {&M::W, &IW}, {&M::A_log, &IAl}, {&M::dt_bias, &BIAS}, {&M::D, &ID}},
                   {b, l, H, V}, nullptr, 1e-2, 1.6e-2, flops, bytes, 'f');
}

static void bx_m2rnn(bx_ctx &c) {
    /* NAM56R: H 51 (hidden 4096) and H 44 (hidden 3584), l 4096, b 2 (and b 1) */
    static const bx_m2rnn_shape full[] = {{2, 4096, 51}, {2, 4096, 44}, {1, 4096, 51}};
    static const bx_m2rnn_shape quick[] = {{1, 1024, 51}};
    static const bx_m2rnn_shape emu[] = {{1, 40, 3}};
    const bx_m2rnn_shape *list = c.emulate ? emu : c.quick ? quick : full;
    size_t n = c.emulate ? sizeof emu / sizeof emu[0] : c.quick ? sizeof quick / sizeof quick[0] : sizeof full / sizeof full[0];
    for (size_t i = 0; i < n; i++) bx_m2rnn_one(c, list[i]);
}

/* ==== MoE ================================================================================== */
/* T tokens, E experts, top-k (NAM56R: 64 experts, top-6), R = T k rows (no capacity limit).
   Router logits: per token a shuffled set of E distinct levels in [-2, 2) (spacing 4/E, so
   no two candidate scores are near a tie and the top-k is exact); expert_bias (E) in
   {0, 2.5e-4, 5e-4, 7.5e-4}.
   Each stage runs on canonical inputs computed by nam.h's CPU path and uploaded (its plan,
   permuted tokens, expert outputs), so every row stands alone whatever else is implemented.
   moe-route:    sigmoid + expert_bias (NAM56R) and softmax; bytes 4 (T E + 2 T k) (+ 4 E).
                 Validation: topk_idx exact, topk_weight |diff| <= 1e-5, vs the CPU path.
   moe-dispatch: bytes 4 (2 T k + 2 E + 1) (topk_idx read, rows, counts, offsets written);
                 includes the host sync nam_moe_dispatch does to read num_rows back.
                 Validation: counts, offsets, rows, num_rows exact.
   moe-permute:  bytes 2 (2 R H) + 4 R (each permuted row read from tokens and written once,
                 plus the row indices). Validation: bit-exact.
   moe-combine:  weighted: bytes 2 (R H + T H) + 8 T k (expert rows read once, out written
                 once, weights and row indices read once). Validation vs NAM_BACKEND_CPU:
                 |gpu - ref| <= 1e-3 * max|ref| + 8e-3 |ref|.
   moe-ffn:      grouped expert FFN, FLOPs 2 R H F (3 SwiGLU, 2 squared ReLU); % of the
                 tensor peak, and side by side:
                 cublas-dense   one cublasGemmEx of equal work, [R x H] x [H x 3F] (2F for
                                squared ReLU), bf16 out, fp32 compute;
                 cublas-grouped cublasGemmGroupedBatchedEx with the per-expert problems:
                                one call for in W1_e^T (and in W3_e^T), one for h W2_e^T
                                (the activation between them is not run: cuBLAS gets it free).
                 "% of cuBLAS" = cuBLAS time / nam time (same FLOPs).
                 Validation: 32 first and 32 last rows of experts 0, E/2 and E-1 against
                 NAM_BACKEND_CPU (fp32 math, fp32 h): |gpu - ref| <= 1e-2 * max|ref| + 1e-2 |ref|. */
struct bx_moe {
    int T, E, k;
    int64_t R;
    std::vector<float> logits, bias;
    std::vector<int32_t> idx, counts, offsets, rows; /* canonical (CPU, sigmoid route) */
    std::vector<float> wt;
    int num_rows;
    bx_dev d_logits, d_bias, d_idx, d_wt, d_counts, d_offsets, d_rows;
    nam_moe_dispatch_desc plan; /* canonical device plan */
};

/* bx_moe_plan: the dispatch desc of m's canonical plan, over the host vectors (host 1) or
   their device copies */
static nam_moe_dispatch_desc bx_moe_plan(bx_moe &m, int host) {
    int64_t sk[2] = {m.T, m.k}, se[1] = {m.E}, se1[1] = {m.E + 1}, sr[1] = {m.R};
    auto t = [&](std::vector<int32_t> &v, const bx_dev &d, int nd, const int64_t *sh) {
        return host ? nam_tensor_make(v.data(), NAM_I32, nd, sh) : nam_tensor_cuda(d.p, NAM_I32, nd, sh);
    };
    nam_moe_dispatch_desc p;
    memset(&p, 0, sizeof p);
    p.topk_idx = t(m.idx, m.d_idx, 2, sk);
    p.num_experts = m.E;
    p.counts = t(m.counts, m.d_counts, 1, se);
    p.offsets = t(m.offsets, m.d_offsets, 1, se1);
    p.rows = t(m.rows, m.d_rows, 1, sr);
    p.num_rows = m.num_rows;
    return p;
}

static std::string bx_moe_shape(const bx_moe &m, const char *more) {
    return bx_fmt("{\"tokens\":%d,\"experts\":%d,\"topk\":%d%s}", m.T, m.E, m.k, more);
}

static int bx_moe_setup(bx_ctx &c, bx_moe &m, std::string &why) {
    nam_moe_route_desc r;
    nam_moe_dispatch_desc p;
    nam_error e;
    int64_t sl[2] = {m.T, m.E}, sk[2] = {m.T, m.k}, se[1] = {m.E}, se1[1] = {m.E + 1}, sr[1] = {m.R};
    bx_rng rng(41);
    m.logits.resize((size_t)m.T * m.E);
    for (int t = 0; t < m.T; t++) {
        float *row = &m.logits[(size_t)t * m.E];
        for (int j = 0; j < m.E; j++) row[j] = -2.0f + 4.0f * (float)j / (float)m.E;
        for (int j = m.E - 1; j > 0; j--) std::swap(row[j], row[rng.next() % (uint32_t)(j + 1)]);
    }
    m.bias.resize((size_t)m.E);
    for (int j = 0; j < m.E; j++) m.bias[(size_t)j] = 2.5e-4f * (float)(j % 4);
    m.idx.resize((size_t)m.R);
    m.wt.resize((size_t)m.R);
    m.counts.resize((size_t)m.E);
    m.offsets.resize((size_t)m.E + 1);
    m.rows.resize((size_t)m.R);
    memset(&r, 0, sizeof r);
    r.logits = nam_tensor_make(m.logits.data(), NAM_F32, 2, sl);
    r.expert_bias = nam_tensor_make(m.bias.data(), NAM_F32, 1, se);
    r.topk_idx = nam_tensor_make(m.idx.data(), NAM_I32, 2, sk);
    r.topk_weight = nam_tensor_make(m.wt.data(), NAM_F32, 2, sk);
    r.topk = m.k;
    r.score = NAM_MOE_SIGMOID;
    r.backend = NAM_BACKEND_CPU;
    if (nam_moe_route(&r, &e) != NAM_OK) { why = bx_fmt("CPU route: %s", e.message); return BX_ERROR; }
    memset(&p, 0, sizeof p);
    p.topk_idx = r.topk_idx;
    p.num_experts = m.E;
    p.counts = nam_tensor_make(m.counts.data(), NAM_I32, 1, se);
    p.offsets = nam_tensor_make(m.offsets.data(), NAM_I32, 1, se1);
    p.rows = nam_tensor_make(m.rows.data(), NAM_I32, 1, sr);
    if (nam_moe_dispatch(&p, &e) != NAM_OK) { why = bx_fmt("CPU dispatch: %s", e.message); return BX_ERROR; }
    m.num_rows = p.num_rows;
    if (bx_upload(m.d_logits, m.logits.data(), m.logits.size() * 4, "logits", why) || bx_upload(m.d_bias, m.bias.data(), m.bias.size() * 4, "expert_bias", why) ||
        bx_upload(m.d_idx, m.idx.data(), m.idx.size() * 4, "topk_idx", why) || bx_upload(m.d_wt, m.wt.data(), m.wt.size() * 4, "topk_weight", why) ||
        bx_upload(m.d_counts, m.counts.data(), m.counts.size() * 4, "counts", why) ||
        bx_upload(m.d_offsets, m.offsets.data(), m.offsets.size() * 4, "offsets", why) || bx_upload(m.d_rows, m.rows.data(), m.rows.size() * 4, "rows", why))
        return BX_ERROR;
    m.plan = bx_moe_plan(m, 0);
    m.plan.stream = c.stream;
    return BX_OK;
}

static void bx_moe_route(bx_ctx &c, bx_moe &m, int sigmoid) {
    int64_t sl[2] = {m.T, m.E}, sk[2] = {m.T, m.k}, se[1] = {m.E};
    std::string shape = bx_moe_shape(m, sigmoid ? ",\"score\":\"sigmoid\",\"expert_bias\":true" : ",\"score\":\"softmax\"");
    std::vector<int32_t> ridx((size_t)m.R);
    std::vector<float> rwt((size_t)m.R);
    bx_dev didx, dwt;
    nam_moe_route_desc d, r;
    nam_error e;
    std::string why;
    double bytes = 4.0 * ((double)m.T * m.E + 2.0 * (double)m.R + (sigmoid ? m.E : 0));
    int rc;
    memset(&r, 0, sizeof r);
    r.logits = nam_tensor_make(m.logits.data(), NAM_F32, 2, sl);
    if (sigmoid) r.expert_bias = nam_tensor_make(m.bias.data(), NAM_F32, 1, se);
    r.topk_idx = nam_tensor_make(ridx.data(), NAM_I32, 2, sk);
    r.topk_weight = nam_tensor_make(rwt.data(), NAM_F32, 2, sk);
    r.topk = m.k;
    r.score = sigmoid ? NAM_MOE_SIGMOID : NAM_MOE_SOFTMAX;
    r.backend = NAM_BACKEND_CPU;
    rc = bx_nam(nam_moe_route(&r, &e), e, why);
    if (rc) why = "CPU reference: " + why;
    if (!rc) rc = bx_alloc(didx, (size_t)m.R * 4, "topk_idx", why);
    if (!rc) rc = bx_alloc(dwt, (size_t)m.R * 4, "topk_weight", why);
    if (rc) { bx_row(c, "moe-route", shape, "cuda", rc == BX_NOTIMPL ? BX_ERROR : rc, why, nullptr, 0, bytes, 'm'); return; }
    d = r;
    d.logits = nam_tensor_cuda(m.d_logits.p, NAM_F32, 2, sl);
    if (sigmoid) d.expert_bias = nam_tensor_cuda(m.d_bias.p, NAM_F32, 1, se);
    d.topk_idx = nam_tensor_cuda(didx.p, NAM_I32, 2, sk);
    d.topk_weight = nam_tensor_cuda(dwt.p, NAM_F32, 2, sk);
    d.backend = NAM_BACKEND_AUTO;
    d.stream = c.stream;
    bx_fn op = [&](std::string &w) -> int {
        nam_error err;
        nam_status st = nam_moe_route(&d, &err);
        return bx_ran_cuda(st, err, d.ran, "nam_moe_route", w);
    };
    bx_fn validate = [&](std::string &w) -> int {
        std::vector<int32_t> gi((size_t)m.R);
        std::vector<float> gw((size_t)m.R);
        if (bx_download(c, gi.data(), didx.p, gi.size() * 4, w) || bx_download(c, gw.data(), dwt.p, gw.size() * 4, w)) return BX_ERROR;
        for (size_t i = 0; i < gi.size(); i++) {
            if (gi[i] != ridx[i]) {
                w = bx_fmt("topk_idx[%zu, %zu] = %d, CPU %d", i / (size_t)m.k, i % (size_t)m.k, gi[i], ridx[i]);
                return BX_INVALID;
            }
            if (!(fabs((double)gw[i] - (double)rwt[i]) <= 1e-5)) {
                w = bx_fmt("topk_weight[%zu, %zu] = %.8g, CPU %.8g (tolerance 1e-5)", i / (size_t)m.k, i % (size_t)m.k, (double)gw[i], (double)rwt[i]);
                return BX_INVALID;
            }
        }
        return BX_OK;
    };
    bx_bench(c, "moe-route", shape, "cuda", op, validate, 0, bytes, 'm');
}

static void bx_moe_dispatch(bx_ctx &c, bx_moe &m) {
    int64_t sk[2] = {m.T, m.k}, se[1] = {m.E}, se1[1] = {m.E + 1}, sr[1] = {m.R};
    std::string shape = bx_moe_shape(m, "");
    bx_dev dc, dof, drw, dws;
    nam_moe_dispatch_desc d;
    std::string why;
    double bytes = 4.0 * (2.0 * (double)m.R + 2.0 * m.E + 1.0);
    int rc = bx_alloc(dc, (size_t)m.E * 4, "counts", why);
    if (!rc) rc = bx_alloc(dof, (size_t)(m.E + 1) * 4, "offsets", why);
    if (!rc) rc = bx_alloc(drw, (size_t)m.R * 4, "rows", why);
    if (rc) { bx_row(c, "moe-dispatch", shape, "cuda", rc, why, nullptr, 0, bytes, 'm'); return; }
    memset(&d, 0, sizeof d);
    d.topk_idx = nam_tensor_cuda(m.d_idx.p, NAM_I32, 2, sk);
    d.num_experts = m.E;
    d.counts = nam_tensor_cuda(dc.p, NAM_I32, 1, se);
    d.offsets = nam_tensor_cuda(dof.p, NAM_I32, 1, se1);
    d.rows = nam_tensor_cuda(drw.p, NAM_I32, 1, sr);
    d.stream = c.stream;
    {
        nam_error err;
        size_t wsb = 0;
        if (nam_moe_dispatch_workspace_size(&d, &wsb, &err) != NAM_OK) {
            bx_row(c, "moe-dispatch", shape, "cuda", BX_ERROR, bx_fmt("workspace query: %s", err.message), nullptr, 0, bytes, 'm');
            return;
        }
        if (wsb && (rc = bx_alloc(dws, wsb, "dispatch workspace", why))) { bx_row(c, "moe-dispatch", shape, "cuda", rc, why, nullptr, 0, bytes, 'm'); return; }
        d.workspace = dws.p;
        d.workspace_bytes = wsb;
    }
    bx_fn op = [&](std::string &w) -> int {
        nam_error err;
        return bx_nam(nam_moe_dispatch(&d, &err), err, w);
    };
    bx_fn validate = [&](std::string &w) -> int {
        std::vector<int32_t> gc((size_t)m.E), go((size_t)m.E + 1), gr((size_t)m.R);
        if (d.num_rows != m.num_rows || d.num_dropped != 0) {
            w = bx_fmt("num_rows = %d, num_dropped = %d; CPU %d, 0", d.num_rows, d.num_dropped, m.num_rows);
            return BX_INVALID;
        }
        if (bx_download(c, gc.data(), dc.p, gc.size() * 4, w) || bx_download(c, go.data(), dof.p, go.size() * 4, w) ||
            bx_download(c, gr.data(), drw.p, gr.size() * 4, w))
            return BX_ERROR;
        for (int e = 0; e < m.E; e++)
            if (gc[(size_t)e] != m.counts[(size_t)e]) { w = bx_fmt("counts[%d] = %d, CPU %d", e, gc[(size_t)e], m.counts[(size_t)e]); return BX_INVALID; }
        for (int e = 0; e <= m.E; e++)
            if (go[(size_t)e] != m.offsets[(size_t)e]) { w = bx_fmt("offsets[%d] = %d, CPU %d", e, go[(size_t)e], m.offsets[(size_t)e]); return BX_INVALID; }
        for (int j = 0; j < m.num_rows; j++)
            if (gr[(size_t)j] != m.rows[(size_t)j]) { w = bx_fmt("rows[%d] = %d, CPU %d", j, gr[(size_t)j], m.rows[(size_t)j]); return BX_INVALID; }
        return BX_OK;
    };
    bx_bench(c, "moe-dispatch", shape, "cuda", op, validate, 0, bytes, 'm');
}

/* per hidden size: tokens, the canonical permuted tokens (CPU permute) and expert outputs */
struct bx_moe_h {
    int H;
    std::vector<uint16_t> tokens, perm;
    bx_dev d_tokens, d_perm;
};

static int bx_moe_h_setup(bx_moe &m, bx_moe_h &mh, std::string &why) {
    const int64_t H = mh.H;
    int64_t st[2] = {m.T, H}, sp[2] = {m.R, H};
    nam_moe_dispatch_desc p;
    nam_tensor tt, tp;
    nam_error e;
    bx_fill_bf16(mh.tokens, (size_t)(m.T * H), 51, -1.0f, 1.0f);
    mh.perm.resize((size_t)(m.R * H));
    p = bx_moe_plan(m, 1);
    tt = nam_tensor_make(mh.tokens.data(), NAM_BF16, 2, st);
    tp = nam_tensor_make(mh.perm.data(), NAM_BF16, 2, sp);
    if (nam_moe_permute(&tt, &p, &tp, &e) != NAM_OK) { why = bx_fmt("CPU permute: %s", e.message); return BX_ERROR; }
    if (bx_upload(mh.d_tokens, mh.tokens.data(), mh.tokens.size() * 2, "tokens", why) || bx_upload(mh.d_perm, mh.perm.data(), mh.perm.size() * 2, "permuted", why))
        return BX_ERROR;
    return BX_OK;
}

static void bx_moe_permute(bx_ctx &c, bx_moe &m, bx_moe_h &mh) {
    const int64_t H = mh.H;
    int64_t st[2] = {m.T, H}, sp[2] = {m.R, H};
    std::string shape = bx_moe_shape(m, bx_fmt(",\"hidden\":%d,\"dtype\":\"bf16\"", mh.H).c_str());
    bx_dev dout;
    nam_tensor tt, tp;
    std::string why;
    double bytes = 2.0 * (2.0 * (double)m.R * (double)H) + 4.0 * (double)m.R;
    if (bx_alloc(dout, (size_t)(m.R * H) * 2, "permuted", why)) { bx_row(c, "moe-permute", shape, "cuda", BX_ERROR, why, nullptr, 0, bytes, 'm'); return; }
    tt = nam_tensor_cuda(mh.d_tokens.p, NAM_BF16, 2, st);
    tp = nam_tensor_cuda(dout.p, NAM_BF16, 2, sp);
    bx_fn op = [&](std::string &w) -> int {
        nam_error err;
        return bx_nam(nam_moe_permute(&tt, &m.plan, &tp, &err), err, w);
    };
    bx_fn validate = [&](std::string &w) -> int {
        std::vector<uint16_t> got((size_t)(m.R * H));
        if (bx_download(c, got.data(), dout.p, got.size() * 2, w)) return BX_ERROR;
        for (size_t i = 0; i < (size_t)m.num_rows * (size_t)H; i++)
            if (got[i] != mh.perm[i]) {
                w = bx_fmt("permuted[%zu, %zu] = %g, CPU %g (must be bit-exact)", i / (size_t)H, i % (size_t)H, (double)bx_f32(got[i]), (double)bx_f32(mh.perm[i]));
                return BX_INVALID;
            }
        return BX_OK;
    };
    bx_bench(c, "moe-permute", shape, "cuda", op, validate, 0, bytes, 'm');
}

static void bx_moe_combine(bx_ctx &c, bx_moe &m, bx_moe_h &mh) {
    const int64_t H = mh.H;
    int64_t sy[2] = {m.T, H}, sp[2] = {m.R, H}, sk[2] = {m.T, m.k};
    std::string shape = bx_moe_shape(m, bx_fmt(",\"hidden\":%d,\"weighted\":true,\"dtype\":\"bf16\"", mh.H).c_str());
    std::vector<uint16_t> eo;
    bx_dev deo, dy;
    nam_tensor te, tw, ty;
    std::string why;
    double bytes = 2.0 * ((double)m.R * (double)H + (double)m.T * (double)H) + 8.0 * (double)m.R;
    int rc;
    bx_fill_bf16(eo, (size_t)(m.R * H), 61, -1.0f, 1.0f);
    rc = bx_upload(deo, eo.data(), eo.size() * 2, "expert_out", why);
    if (!rc) rc = bx_alloc(dy, (size_t)(m.T * H) * 2, "out", why);
    if (rc) { bx_row(c, "moe-combine", shape, "cuda", rc, why, nullptr, 0, bytes, 'm'); return; }
    te = nam_tensor_cuda(deo.p, NAM_BF16, 2, sp);
    tw = nam_tensor_cuda(m.d_wt.p, NAM_F32, 2, sk);
    ty = nam_tensor_cuda(dy.p, NAM_BF16, 2, sy);
    bx_fn op = [&](std::string &w) -> int {
        nam_error err;
        return bx_nam(nam_moe_combine(&te, &m.plan, &tw, &ty, &err), err, w);
    };
    bx_fn validate = [&](std::string &w) -> int {
        std::vector<uint16_t> got((size_t)(m.T * H));
        std::vector<float> ref((size_t)(m.T * H));
        nam_moe_dispatch_desc p;
        nam_tensor re, rw, ry;
        nam_error err;
        if (bx_download(c, got.data(), dy.p, got.size() * 2, w)) return BX_ERROR;
        p = bx_moe_plan(m, 1);
        re = nam_tensor_make(eo.data(), NAM_BF16, 2, sp);
        rw = nam_tensor_make(m.wt.data(), NAM_F32, 2, sk);
        ry = nam_tensor_make(ref.data(), NAM_F32, 2, sy);
        if (nam_moe_combine(&re, &p, &rw, &ry, &err) != NAM_OK) { w = bx_fmt("CPU reference: %s", err.message); return BX_ERROR; }
        return bx_close("out", got.data(), ref.data(), ref.size(), 1e-3, 8e-3, w);
    };
    bx_bench(c, "moe-combine", shape, "cuda", op, validate, 0, bytes, 'm');
}

/* grouped expert FFN, nam and cuBLAS */
static void bx_moe_ffn(bx_ctx &c, bx_moe &m, bx_moe_h &mh, int F, nam_moe_act act) {
    const int64_t H = mh.H, E = m.E, R = m.R;
    const int swiglu = act == NAM_MOE_SWIGLU, nmat = swiglu ? 3 : 2;
    int64_t sp[2] = {R, H}, sw1[3] = {E, F, H}, sw2[3] = {E, H, F};
    std::string shape = bx_moe_shape(m, bx_fmt(",\"hidden\":%d,\"ffn\":%d,\"act\":\"%s\",\"dtype\":\"bf16\"", mh.H, F, swiglu ? "swiglu" : "squared_relu").c_str());
    std::vector<uint16_t> w1, w3, w2;
    bx_dev dw1, dw3, dw2, deo, ws;
    nam_moe_ffn_desc d;
    nam_error e;
    size_t ws_bytes = 0, fh = (size_t)F * (size_t)H;
    std::string why;
    double flops = 2.0 * (double)R * (double)H * (double)F * nmat;
    double t_dense = 0, t_grouped = 0;
    int rc;
    bx_fill_bf16(w1, (size_t)E * fh, 71, -0.02f, 0.02f);
    if (swiglu) bx_fill_bf16(w3, (size_t)E * fh, 72, -0.02f, 0.02f);
    bx_fill_bf16(w2, (size_t)E * fh, 73, -0.03f, 0.03f);
    rc = bx_upload(dw1, w1.data(), w1.size() * 2, "w1", why);
    if (!rc && swiglu) rc = bx_upload(dw3, w3.data(), w3.size() * 2, "w3", why);
    if (!rc) rc = bx_upload(dw2, w2.data(), w2.size() * 2, "w2", why);
    if (!rc) rc = bx_alloc(deo, (size_t)(R * H) * 2, "expert_out", why);
    if (rc) { bx_row(c, "moe-ffn", shape, "cuda", rc, why, nullptr, flops, 0, 't'); return; }

#ifndef NAM_CUDA_EMULATE
    { /* (a) cuBLAS, one dense GEMM of equal work: [R x H] x [H x nmat F] */
        const int Nd = nmat * F;
        const float one = 1.0f, zero = 0.0f;
        bx_dev dwd, dc;
        std::vector<uint16_t> wd;
        bx_time t;
        bx_fill_bf16(wd, (size_t)Nd * (size_t)H, 74, -0.02f, 0.02f);
        rc = bx_upload(dwd, wd.data(), wd.size() * 2, "dense weights", why);
        if (!rc) rc = bx_alloc(dc, (size_t)R * (size_t)Nd * 2, "dense out", why);
        if (rc) bx_row(c, "moe-ffn", shape, "cublas-dense", rc, why, nullptr, flops, 0, 't');
        else {
            bx_fn op = [&](std::string &w) -> int {
                return bx_blas(cublasGemmEx(c.blas, CUBLAS_OP_T, CUBLAS_OP_N, Nd, (int)R, (int)H, &one, dwd.p, CUDA_R_16BF, (int)H, mh.d_perm.p, CUDA_R_16BF,
                                            (int)H, &zero, dc.p, CUDA_R_16BF, Nd, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                               "cublasGemmEx", w);
            };
            if (bx_bench(c, "moe-ffn", shape, "cublas-dense", op, nullptr, flops, 0, 't', &t) == BX_OK) t_dense = t.med;
        }
    }
#ifdef BX_GROUPED_GEMM
    { /* (b) cuBLAS grouped: per expert e with n_e > 0 rows: [n_e x H] x W1_e^T (and W3_e^T)
         as one group of 1 (2) problems, then [n_e x F] x W2_e^T */
        std::vector<cublasOperation_t> ta, tb;
        std::vector<int> mm1, nn1, kk1, lda1, ldb1, ldc1, gs1, mm2, kk2, lda2, ldb2, ldc2, gs2;
        std::vector<float> alpha, beta;
        std::vector<const void *> pa1, pb1, pa2, pb2;
        std::vector<void *> pc1, pc2;
        bx_dev dh1, dh3, dout2, dpa1, dpb1, dpc1, dpa2, dpb2, dpc2;
        bx_time t;
        const char *base_in = (const char *)mh.d_perm.p;
        rc = bx_alloc(dh1, (size_t)R * (size_t)F * 2, "grouped h1", why);
        if (!rc && swiglu) rc = bx_alloc(dh3, (size_t)R * (size_t)F * 2, "grouped h3", why);
        if (!rc) rc = bx_alloc(dout2, (size_t)(R * H) * 2, "grouped out", why);
        for (int64_t x = 0; !rc && x < E; x++) {
            int ne = m.offsets[(size_t)x + 1] - m.offsets[(size_t)x];
            size_t off = (size_t)m.offsets[(size_t)x];
            if (ne == 0) continue;
            ta.push_back(CUBLAS_OP_T);
            tb.push_back(CUBLAS_OP_N);
            alpha.push_back(1.0f);
            beta.push_back(0.0f);
            mm1.push_back(F); nn1.push_back(ne); kk1.push_back((int)H); lda1.push_back((int)H); ldb1.push_back((int)H); ldc1.push_back(F);
            gs1.push_back(swiglu ? 2 : 1);
            pa1.push_back((const char *)dw1.p + (size_t)x * fh * 2);
            pb1.push_back(base_in + off * (size_t)H * 2);
            pc1.push_back((char *)dh1.p + off * (size_t)F * 2);
            if (swiglu) {
                pa1.push_back((const char *)dw3.p + (size_t)x * fh * 2);
                pb1.push_back(base_in + off * (size_t)H * 2);
                pc1.push_back((char *)dh3.p + off * (size_t)F * 2);
            }
            mm2.push_back((int)H); kk2.push_back(F); lda2.push_back(F); ldb2.push_back(F); ldc2.push_back((int)H);
            gs2.push_back(1);
            pa2.push_back((const char *)dw2.p + (size_t)x * fh * 2);
            pb2.push_back((const char *)dh1.p + off * (size_t)F * 2);
            pc2.push_back((char *)dout2.p + off * (size_t)H * 2);
        }
        if (!rc) rc = bx_upload(dpa1, pa1.data(), pa1.size() * sizeof(void *), "pointer array", why);
        if (!rc) rc = bx_upload(dpb1, pb1.data(), pb1.size() * sizeof(void *), "pointer array", why);
        if (!rc) rc = bx_upload(dpc1, pc1.data(), pc1.size() * sizeof(void *), "pointer array", why);
        if (!rc) rc = bx_upload(dpa2, pa2.data(), pa2.size() * sizeof(void *), "pointer array", why);
        if (!rc) rc = bx_upload(dpb2, pb2.data(), pb2.size() * sizeof(void *), "pointer array", why);
        if (!rc) rc = bx_upload(dpc2, pc2.data(), pc2.size() * sizeof(void *), "pointer array", why);
        if (rc) bx_row(c, "moe-ffn", shape, "cublas-grouped", rc, why, nullptr, flops, 0, 't');
        else {
            const int groups = (int)gs1.size();
            bx_fn op = [&](std::string &w) -> int {
                int x = bx_blas(cublasGemmGroupedBatchedEx(c.blas, ta.data(), tb.data(), mm1.data(), nn1.data(), kk1.data(), alpha.data(),
                                                           (const void *const *)dpa1.p, CUDA_R_16BF, lda1.data(), (const void *const *)dpb1.p, CUDA_R_16BF,
                                                           ldb1.data(), beta.data(), (void *const *)dpc1.p, CUDA_R_16BF, ldc1.data(), groups, gs1.data(),
                                                           CUBLAS_COMPUTE_32F),
                                "cublasGemmGroupedBatchedEx (W1/W3)", w);
                if (x) return x;
                return bx_blas(cublasGemmGroupedBatchedEx(c.blas, ta.data(), tb.data(), mm2.data(), nn1.data(), kk2.data(), alpha.data(),
                                                          (const void *const *)dpa2.p, CUDA_R_16BF, lda2.data(), (const void *const *)dpb2.p, CUDA_R_16BF,
                                                          ldb2.data(), beta.data(), (void *const *)dpc2.p, CUDA_R_16BF, ldc2.data(), groups, gs2.data(),
                                                          CUBLAS_COMPUTE_32F),
                               "cublasGemmGroupedBatchedEx (W2)", w);
            };
            if (bx_bench(c, "moe-ffn", shape, "cublas-grouped", op, nullptr, flops, 0, 't', &t) == BX_OK) t_grouped = t.med;
        }
    }
#else
    bx_row(c, "moe-ffn", shape, "cublas-grouped", BX_SKIP, "cublasGemmGroupedBatchedEx needs cuBLAS 12.5 or newer", nullptr, flops, 0, 't');
#endif
#endif

    memset(&d, 0, sizeof d);
    d.in = nam_tensor_cuda(mh.d_perm.p, NAM_BF16, 2, sp);
    d.out = nam_tensor_cuda(deo.p, NAM_BF16, 2, sp);
    d.w1 = nam_tensor_cuda(dw1.p, NAM_BF16, 3, sw1);
    if (swiglu) d.w3 = nam_tensor_cuda(dw3.p, NAM_BF16, 3, sw1);
    d.w2 = nam_tensor_cuda(dw2.p, NAM_BF16, 3, sw2);
    d.plan = &m.plan;
    d.act = act;
    d.stream = c.stream;
    rc = bx_nam(nam_moe_ffn_workspace_size(&d, &ws_bytes, &e), e, why);
    if (!rc && ws_bytes) rc = bx_alloc(ws, ws_bytes, "ffn workspace", why);
    if (rc) { bx_row(c, "moe-ffn", shape, "cuda", rc, why, nullptr, flops, 0, 't'); return; }
    bx_fn op = [&](std::string &w) -> int {
        nam_error err;
        nam_status st = nam_moe_ffn(&d, ws.p, ws_bytes, &err);
        return bx_ran_cuda(st, err, d.ran, "nam_moe_ffn", w);
    };
    bx_fn validate = [&](std::string &w) -> int {
        const int64_t experts[3] = {0, E / 2, E - 1};
        for (int xi = 0; xi < 3; xi++) {
            const int64_t ex = experts[xi], o0 = m.offsets[(size_t)ex], ne = m.offsets[(size_t)ex + 1] - o0, nv = ne < 32 ? ne : 32;
            for (int part = 0; part < 2 && nv > 0; part++) {
                const int64_t r0 = part ? o0 + ne - nv : o0;
                int32_t off[2] = {0, (int32_t)nv};
                int64_t s1[1] = {2}, si[2] = {nv, H}, s1w[3] = {1, F, H}, s2w[3] = {1, H, F};
                nam_moe_dispatch_desc sub;
                nam_moe_ffn_desc r;
                nam_error err;
                size_t need = 0;
                bx_host rws;
                std::vector<uint16_t> got((size_t)(nv * H));
                std::vector<float> ref((size_t)(nv * H));
                if (bx_download(c, got.data(), (const char *)deo.p + (size_t)(r0 * H) * 2, got.size() * 2, w)) return BX_ERROR;
                memset(&sub, 0, sizeof sub);
                sub.num_experts = 1;
                sub.offsets = nam_tensor_make(off, NAM_I32, 1, s1);
                sub.num_rows = (int)nv;
                memset(&r, 0, sizeof r);
                r.in = nam_tensor_make(mh.perm.data() + (size_t)(r0 * H), NAM_BF16, 2, si);
                r.out = nam_tensor_make(ref.data(), NAM_F32, 2, si);
                r.w1 = nam_tensor_make(w1.data() + (size_t)ex * fh, NAM_BF16, 3, s1w);
                if (swiglu) r.w3 = nam_tensor_make(w3.data() + (size_t)ex * fh, NAM_BF16, 3, s1w);
                r.w2 = nam_tensor_make(w2.data() + (size_t)ex * fh, NAM_BF16, 3, s2w);
                r.plan = &sub;
                r.act = act;
                r.backend = NAM_BACKEND_CPU;
                if (nam_moe_ffn_workspace_size(&r, &need, &err) != NAM_OK || rws.alloc(need) || nam_moe_ffn(&r, rws.p, need, &err) != NAM_OK) {
                    w = bx_fmt("CPU reference: %s", err.message);
                    return BX_ERROR;
                }
                std::string what = bx_fmt("expert %lld rows %lld..%lld", (long long)ex, (long long)r0, (long long)(r0 + nv - 1));
                if (bx_close(what.c_str(), got.data(), ref.data(), ref.size(), 1e-2, 1e-2, w)) return BX_INVALID;
            }
        }
        return BX_OK;
    };
    {
        bx_time t;
        std::string w;
        rc = bx_measure(c, op, validate, &t, w);
        std::string xj, xt;
        if (rc == BX_OK) {
            if (t_dense > 0) {
                xj += bx_fmt(", \"vs_cublas_dense_pct\": %.1f", 100.0 * t_dense / t.med);
                xt += bx_fmt("  = %.1f%% of cuBLAS dense", 100.0 * t_dense / t.med);
            }
            if (t_grouped > 0) {
                xj += bx_fmt(", \"vs_cublas_grouped_pct\": %.1f", 100.0 * t_grouped / t.med);
                xt += bx_fmt("%s%.1f%% of cuBLAS grouped", xt.empty() ? "  = " : ", ", 100.0 * t_grouped / t.med);
            }
        }
        bx_row(c, "moe-ffn", shape, "cuda", rc, w, &t, flops, 0, 't', xj, xt);
    }
}

static void bx_moe_bench(bx_ctx &c) {
    struct ffn_cfg { int H, F; nam_moe_act act; };
    static const ffn_cfg full_ffn[] = {{2048, 1024, NAM_MOE_SWIGLU}, {2048, 1024, NAM_MOE_SQUARED_RELU}, {4096, 1408, NAM_MOE_SWIGLU}};
    static const ffn_cfg quick_ffn[] = {{2048, 1024, NAM_MOE_SWIGLU}};
    static const ffn_cfg emu_ffn[] = {{64, 32, NAM_MOE_SWIGLU}, {64, 32, NAM_MOE_SQUARED_RELU}};
    static const int full_h[] = {2048, 4096}, quick_h[] = {2048}, emu_h[] = {64};
    const ffn_cfg *ffn = c.emulate ? emu_ffn : c.quick ? quick_ffn : full_ffn;
    const int *hs = c.emulate ? emu_h : c.quick ? quick_h : full_h;
    size_t nffn = c.emulate ? 2 : c.quick ? 1 : 3, nh = c.emulate ? 1 : c.quick ? 1 : 2;
    bx_moe m;
    std::string why;
    m.T = c.emulate ? 24 : c.quick ? 2048 : 16384;
    m.E = c.emulate ? 8 : 64;
    m.k = c.emulate ? 2 : 6;
    m.R = (int64_t)m.T * m.k;
    if (bx_moe_setup(c, m, why)) { bx_row(c, "moe", bx_moe_shape(m, ""), "cuda", BX_ERROR, why, nullptr, 0, 0, 'm'); return; }
    if (bx_want(c, "moe-route")) { bx_moe_route(c, m, 1); bx_moe_route(c, m, 0); }
    if (bx_want(c, "moe-dispatch")) bx_moe_dispatch(c, m);
    for (size_t hi = 0; hi < nh; hi++) {
        bx_moe_h mh;
        int need_ffn = 0;
        mh.H = hs[hi];
        for (size_t f = 0; f < nffn; f++) need_ffn |= ffn[f].H == mh.H;
        if (!bx_want(c, "moe-permute") && !bx_want(c, "moe-combine") && !(need_ffn && bx_want(c, "moe-ffn"))) continue;
        if (bx_moe_h_setup(m, mh, why)) {
            bx_row(c, "moe", bx_moe_shape(m, bx_fmt(",\"hidden\":%d", mh.H).c_str()), "cuda", BX_ERROR, why, nullptr, 0, 0, 'm');
            continue;
        }
        if (bx_want(c, "moe-permute")) bx_moe_permute(c, m, mh);
        if (bx_want(c, "moe-combine")) bx_moe_combine(c, m, mh);
        if (bx_want(c, "moe-ffn"))
            for (size_t f = 0; f < nffn; f++)
                if (ffn[f].H == mh.H) bx_moe_ffn(c, m, mh, ffn[f].F, ffn[f].act);
    }
}

/* ==== main ================================================================================= */
static void bx_usage(FILE *f) {
    fprintf(f, "usage: nam-bench-cuda [--quick] [--json] [--reps N] [--warmup N] [--chunk N] [--only NAME]\n"
               "  NAME: attention, ssd, conv1d, moe, m2rnn, moe-route, moe-dispatch, moe-permute, moe-combine, moe-ffn\n");
}

static void bx_legend(const bx_ctx &c) {
    printf("# timing: median [min .. p90] of %d reps after %d warm-up(s); each rep between a cudaEvent pair on one stream, the L2 flushed\n"
           "#   before it by a cudaMemsetAsync of %.0f MiB (outside the pair); every row validated against nam.h's CPU path first\n"
           "# formulas (bf16 = 2 bytes; R = tokens * topk):\n"
           "#   attention     FLOPs 4 b s s hq d (/2 causal); bytes 2 (q + k + v + out); %% of tensor peak\n"
           "#   ssd           bytes 2 (x + dt + B + C (+ z) + out); FLOPs 5 b l h p n (recurrence, for reference); %% of HBM peak\n"
           "#   conv1d        bytes 2 (x + out + weight + bias); %% of HBM peak\n"
           "#   m2rnn         FLOPs (2 K V V + 7 K V) b l H (K 64, V 16); bytes 2 (q + k + v + out) + 4 a; %% of FP32 FMA peak\n"
           "#   moe-route     bytes 4 (T E + 2 T k (+ E bias)); moe-dispatch bytes 4 (2 T k + 2 E + 1), includes its host sync\n"
           "#   moe-permute   bytes 2 (2 R H) + 4 R; moe-combine bytes 2 (R H + T H) + 8 R; %% of HBM peak\n"
           "#   moe-ffn       FLOPs 2 R H F (3 SwiGLU, 2 squared ReLU); %% of tensor peak; cublas-dense = one GEMM of equal work,\n"
           "#                 cublas-grouped = cublasGemmGroupedBatchedEx on the same per-expert problems (no activation)\n",
           c.reps, c.warmup, (double)c.flush_bytes / 1048576.0);
    printf("%-13s %-64s %-15s %12s %23s %18s %15s  %s\n", "kernel", "shape", "backend", "median ms", "[min .. p90] ms", "TFLOP/s", "GB/s", "% of peak");
}

int main(int argc, char **argv) {
    bx_ctx c;
    int i, ndev = 0;
    cudaError_t rc;
    std::string why;
    memset(&c, 0, sizeof c);
    c.reps = 30;
    c.warmup = 3;
    c.chunk = -1;
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) c.quick = 1;
        else if (!strcmp(argv[i], "--json")) c.json = 1;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) c.reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) c.warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--chunk") && i + 1 < argc) c.chunk = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) c.only = argv[++i];
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { bx_usage(stdout); return 0; }
        else { bx_usage(stderr); return 2; }
    }
    if (c.quick) {
        int explicit_reps = 0;
        for (i = 1; i < argc; i++) explicit_reps |= !strcmp(argv[i], "--reps");
        if (!explicit_reps) c.reps = 5;
        c.warmup = c.warmup > 1 ? 1 : c.warmup;
    }
    if (c.reps < 1 || c.reps > 1000 || c.warmup < 0 || c.warmup > 100 || c.chunk < -1 || c.chunk > 4096) {
        fprintf(stderr, "nam-bench-cuda: --reps must be 1..1000, --warmup 0..100, --chunk 0..4096\n");
        return 2;
    }
    if (c.only && strcmp(c.only, "attention") && strcmp(c.only, "ssd") && strcmp(c.only, "conv1d") && strcmp(c.only, "m2rnn") && strcmp(c.only, "moe") && strcmp(c.only, "moe-route") &&
        strcmp(c.only, "moe-dispatch") && strcmp(c.only, "moe-permute") && strcmp(c.only, "moe-combine") && strcmp(c.only, "moe-ffn")) {
        fprintf(stderr, "nam-bench-cuda: unknown --only '%s'\n", c.only);
        bx_usage(stderr);
        return 2;
    }

    rc = cudaGetDeviceCount(&ndev);
    if (rc != cudaSuccess || ndev < 1) {
        printf("skip nam-bench-cuda: no CUDA device (%s)\n", rc != cudaSuccess ? cudaGetErrorString(rc) : "cudaGetDeviceCount reports 0 devices");
        return 0;
    }
#ifdef NAM_CUDA_EMULATE
    c.emulate = 1;
    c.quick = 1;
    c.reps = 1;
    c.warmup = 0;
    snprintf(c.device, sizeof c.device, "CUDA emulator (tests/cuda_emu.h)");
    if (!c.json) printf("nam-bench-cuda %s on the CUDA emulator (tests/cuda_emu.h): logic only, tiny shapes, no peaks, no cuBLAS, times mean nothing\n", NAM_VERSION_STRING);
    c.flush_bytes = 1 << 20;
#else
    {
        cudaDeviceProp prop;
        int dev = 0, sm = 0, clk = 0, mclk = 0, bus = 0, l2 = 0, drv = 0, rt = 0, blasv = 0;
        if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&prop, dev) != cudaSuccess) {
            printf("skip nam-bench-cuda: no CUDA device (cudaGetDeviceProperties failed)\n");
            return 0;
        }
        cudaDeviceGetAttribute(&sm, cudaDevAttrMultiProcessorCount, dev);
        cudaDeviceGetAttribute(&clk, cudaDevAttrClockRate, dev);
        cudaDeviceGetAttribute(&mclk, cudaDevAttrMemoryClockRate, dev);
        cudaDeviceGetAttribute(&bus, cudaDevAttrGlobalMemoryBusWidth, dev);
        cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev);
        cudaDriverGetVersion(&drv);
        cudaRuntimeGetVersion(&rt);
        snprintf(c.device, sizeof c.device, "%.255s", prop.name);
        if (cublasCreate(&c.blas) != CUBLAS_STATUS_SUCCESS) {
            fprintf(stderr, "nam-bench-cuda: cublasCreate failed\n");
            return 1;
        }
        cublasGetVersion(c.blas, &blasv);
        c.flush_bytes = (size_t)(l2 > 0 ? l2 : 64 << 20) * 2;
        if (!c.json) {
            printf("nam-bench-cuda %s: %s (sm_%d%d), %d SMs, SM clock %d MHz, memory clock %d MHz x %d-bit bus (theoretical %.0f GB/s), %.1f GiB, "
                   "L2 %.1f MiB; driver %d.%d, runtime %d.%d, cuBLAS %d\n",
                   NAM_VERSION_STRING, prop.name, prop.major, prop.minor, sm, clk / 1000, mclk / 1000, bus, 2.0 * mclk * 1e3 * bus / 8 / 1e9,
                   (double)prop.totalGlobalMem / 1073741824.0, l2 / 1048576.0, drv / 1000, (drv % 1000) / 10, rt / 1000, (rt % 1000) / 10, blasv);
        } else {
            /* the device's details ride in the JSON peak rows' "device" string */
            snprintf(c.device, sizeof c.device, "%.255s, %d SMs, %d MHz, %.1f GiB, L2 %.1f MiB, driver %d.%d, runtime %d.%d", prop.name, sm, clk / 1000,
                     (double)prop.totalGlobalMem / 1073741824.0, l2 / 1048576.0, drv / 1000, (drv % 1000) / 10, rt / 1000, (rt % 1000) / 10);
        }
    }
#endif
    if (bx_cuda(bx_stream_create(&c.stream), "cudaStreamCreate", why) || bx_cuda(bx_event_create(&c.ev0), "cudaEventCreate", why) ||
        bx_cuda(bx_event_create(&c.ev1), "cudaEventCreate", why) || bx_cuda(cudaMalloc(&c.flush, c.flush_bytes), "L2 flush buffer", why)) {
        fprintf(stderr, "nam-bench-cuda: %s\n", why.c_str());
        return 1;
    }
#ifndef NAM_CUDA_EMULATE
    if (cublasSetStream(c.blas, c.stream) != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "nam-bench-cuda: cublasSetStream failed\n");
        return 1;
    }
#endif
    if (c.json) printf("[");
    if (!c.emulate) bx_peaks(c);
    if (!c.json) {
        if (!c.emulate)
            printf("measured peaks: %.1f GB/s HBM (cudaMemcpyAsync device to device of %d MiB, read + write bytes), %.1f TFLOP/s tensor "
                   "(cublasGemmEx bf16 %d^3, fp32 compute), %.1f TFLOP/s FP32 FMA (fmaf chains)\n",
                   c.peak_gbps, c.quick ? 256 : 1024, c.peak_tflops, c.quick ? 4096 : 8192, c.peak_fma_tflops);
        bx_legend(c);
    }
    if (bx_want_group(c, "attention")) bx_attention(c);
    if (bx_want_group(c, "ssd")) bx_ssd(c);
    if (bx_want_group(c, "conv1d")) bx_conv1d(c);
    if (bx_want_group(c, "moe")) bx_moe_bench(c);
    if (bx_want_group(c, "m2rnn")) bx_m2rnn(c);
    if (c.json) printf("\n]\n");
    cudaFree(c.flush);
    bx_event_destroy(c.ev0);
    bx_event_destroy(c.ev1);
    bx_stream_destroy(c.stream);
#ifndef NAM_CUDA_EMULATE
    cublasDestroy(c.blas);
#endif
    if (c.failed) fprintf(stderr, "nam-bench-cuda: a row failed validation or hit an error\n");
    return c.failed ? 1 : 0;
}
