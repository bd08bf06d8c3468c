/* bench/bench_common.h - shared harness of the kernel benchmarks (included by
   bench/bench_kernels.c after nam.h; each kernel's bench lives in bench/bench_<kernel>.h).

   A kernel bench validates its result against the reference path first, then times the
   kernel with bench_median and prints one row with bench_row:
     - median of `reps` runs after one warm-up, wall clock (CLOCK_MONOTONIC);
     - GFLOP/s = flops / median / 1e9 and GB/s = bytes / median / 1e9, with the formula
       stated in the bench's own comment;
     - peak_pct against the peak measured in the same run: an FMA-throughput loop for
       compute-bound kernels (kind 'c'), a memcpy loop for memory-bound ones (kind 'm').
   --ftz-ab (x86-64): bench_median times every repetition twice, back to back, once with the
   calling thread's MXCSR as the process has it and once with FTZ|DAZ added (what a
   flush-to-zero LD_PRELOAD does), and the row adds the second median and the ratio. Calls
   alternate, so a busy machine slows both alike; nam's kernels should show a ratio near 1
   (they set their own MXCSR). */
#ifndef NAM_BENCH_COMMON_H
#define NAM_BENCH_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#include <xmmintrin.h>
#define BENCH_HAVE_MXCSR 1
#endif

static int bench_ftz_ab;           /* --ftz-ab (see above) */
static double bench__ftz_med;      /* the FTZ-caller median of the last bench_median, 0 if none */

typedef struct bench_opts {
    int threads;        /* threads for the fast CPU path */
    int quick;          /* smoke run: small reps (and the bench may shrink its shapes) */
    int reps;           /* timed repetitions */
    int json;
    double peak_gflops; /* measured FMA peak with `threads` threads */
    double peak_gbps;   /* measured memcpy bandwidth (read + write bytes) */
    int rows;           /* rows printed so far */
} bench_opts;

static double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int bench__cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median wall time of fn(ctx) over reps runs after one warm-up run. fn returns nonzero
   on failure, which aborts the measurement (returns a negative time). */
static double bench_median(int (*fn)(void *), void *ctx, int reps) {
    double *t = (double *)malloc(sizeof(double) * 2 * (size_t)(reps > 0 ? reps : 1)), med;
    int i, ab = 0;
#ifdef BENCH_HAVE_MXCSR
    unsigned csr = _mm_getcsr();
    ab = bench_ftz_ab;
#endif
    bench__ftz_med = 0;
    if (!t || fn(ctx)) { free(t); return -1.0; }
    for (i = 0; i < reps; i++) {
        double t0 = bench_now();
        if (fn(ctx)) { free(t); return -1.0; }
        t[i] = bench_now() - t0;
#ifdef BENCH_HAVE_MXCSR
        if (ab) {
            int bad;
            _mm_setcsr(csr | 0x8040u);
            t0 = bench_now();
            bad = fn(ctx);
            t[reps + i] = bench_now() - t0;
            _mm_setcsr(csr);
            if (bad) { free(t); return -1.0; }
        }
#endif
    }
    qsort(t, (size_t)reps, sizeof(double), bench__cmp);
    med = t[reps / 2];
    if (ab) {
        qsort(t + reps, (size_t)reps, sizeof(double), bench__cmp);
        bench__ftz_med = t[reps + reps / 2];
    }
    free(t);
    return med;
}

/* One result row. shape_json is a JSON object of the dimensions, e.g. {"h":48,"p":64}.
   kind 'c' compares GFLOP/s with peak_gflops, 'm' compares GB/s with peak_gbps. */
static void bench_row(bench_opts *o, const char *kernel, const char *shape_json, const char *backend, int threads,
                      double median_s, double flops, double bytes, char kind) {
    double gflops = median_s > 0 ? flops / median_s / 1e9 : 0, gbps = median_s > 0 ? bytes / median_s / 1e9 : 0;
    double pct = kind == 'm' ? (o->peak_gbps > 0 ? 100.0 * gbps / o->peak_gbps : 0) : (o->peak_gflops > 0 ? 100.0 * gflops / o->peak_gflops : 0);
    char ab[96] = "";
    if (o->json) {
        if (bench__ftz_med > 0) snprintf(ab, sizeof ab, ", \"median_ms_ftz_caller\": %.4f", bench__ftz_med * 1e3);
        printf("%s\n {\"kernel\": \"%s\", \"shape\": %s, \"backend\": \"%s\", \"threads\": %d, \"median_ms\": %.4f, \"gflops\": %.2f, \"gbps\": %.2f, \"peak_pct\": %.1f, \"peak_of\": \"%s\"%s}",
               o->rows ? "," : "", kernel, shape_json, backend, threads, median_s * 1e3, gflops, gbps, pct, kind == 'm' ? "memcpy" : "fma", ab);
    } else {
        if (bench__ftz_med > 0) snprintf(ab, sizeof ab, "  | FTZ caller %10.3f ms (x%.3f)", bench__ftz_med * 1e3, median_s / bench__ftz_med);
        printf("%-10s %-62s %-8s %2d thr  %10.3f ms  %8.2f GFLOP/s  %8.2f GB/s  %5.1f%% of %s peak%s\n", kernel, shape_json, backend, threads,
               median_s * 1e3, gflops, gbps, pct, kind == 'm' ? "memcpy" : "FMA", ab);
    }
    bench__ftz_med = 0;
    o->rows++;
}

/* Max |a - b| / (atol + rtol |b|) > 1 -> report and return 1. */
static int bench_validate(const char *what, const float *got, const float *ref, size_t n, float atol, float rtol) {
    size_t i;
    for (i = 0; i < n; i++) {
        float d = got[i] - ref[i];
        if (d < 0) d = -d;
        if (!(d <= atol + rtol * (ref[i] < 0 ? -ref[i] : ref[i]))) {
            fprintf(stderr, "nam-bench: %s: validation failed at %lu: got %g, reference %g\n", what, (unsigned long)i, got[i], ref[i]);
            return 1;
        }
    }
    return 0;
}

/* Deterministic uniform floats in [lo, hi). */
static void bench_fill(float *x, size_t n, unsigned *seed, float lo, float hi) {
    size_t i;
    for (i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        x[i] = lo + (hi - lo) * (float)((*seed >> 8) * (1.0 / 16777216.0));
    }
}

/* 64-byte aligned allocation for workspaces and tensors. */
static void *bench_alloc(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    return p;
}

#endif
