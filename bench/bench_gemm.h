/* bench/bench_gemm.h - nam__sgemm (nam.h >>kernel-gemm), the GEMM under the MoE expert FFN and
   attention, one thread (it is single-threaded by contract; callers split the work).

   Shapes (m x n x k, transB): the MoE expert products 512x768x2048 and 32x768x2048 (T1, the
   W[F,H] layout), attention tiles 2048x2048x128 (T1, Q K^T) and 128x2048x2048 /
   2048x128x2048 (T0, P V); A, B ~ U[-1, 1].  FLOPs = 2*m*n*k.  Bytes = 4*(m*k + n*k + m*n) (A, B read once,
   C written once; beta = 0).  peak_pct is against the one-thread FMA peak (the measured
   peak / --threads).  Rows: backend "cpu" = nam__sgemm (AVX2+FMA when the CPU has it),
   "cpu-port" = the same blocked loop with the portable micro-kernel, and with NAM_CBLAS
   "cblas" = nam__sgemm calling cblas_sgemm (set OPENBLAS_NUM_THREADS=1).
   Validation before timing: rows 0, 1, m/2 and m-1 of C against a double-precision loop,
   |diff| <= 1e-4 * sum_p |A||B| (the bound tests/test_gemm.c uses). */
#ifndef NAM_BENCH_GEMM_H
#define NAM_BENCH_GEMM_H

#define BENCH_GEMM_INPUTS "gemm A, B ~ U[-1,1]"

typedef struct bench_gemm_ctx { int m, n, k, transB, path; float *A, *B, *C, *pack; } bench_gemm_ctx;

static int bench_gemm_run(void *ctx) {
    bench_gemm_ctx *c = (bench_gemm_ctx *)ctx;
    int64_t ldb = c->transB ? c->k : c->n;
    if (c->path) nam__sgemm(c->m, c->n, c->k, c->A, c->k, c->B, ldb, c->transB, 0.0f, c->C, c->n, c->pack);
    else nam__gemm_blocked(c->m, c->n, c->k, c->A, c->k, c->B, ldb, c->transB, 0.0f, c->C, c->n, c->pack, 0);
    return 0;
}

static int bench_gemm_check(const bench_gemm_ctx *c) {
    int rows[4], r, j, p;
    rows[0] = 0; rows[1] = c->m > 1 ? 1 : 0; rows[2] = c->m / 2; rows[3] = c->m - 1;
    for (r = 0; r < 4; r++)
        for (j = 0; j < c->n; j++) {
            const float *a = c->A + (size_t)rows[r] * (size_t)c->k;
            double ref = 0, mag = 0, d;
            for (p = 0; p < c->k; p++) {
                double b = c->transB ? c->B[(size_t)j * (size_t)c->k + (size_t)p] : c->B[(size_t)p * (size_t)c->n + (size_t)j];
                ref += (double)a[p] * b;
                mag += fabs((double)a[p] * b);
            }
            d = fabs((double)c->C[(size_t)rows[r] * (size_t)c->n + (size_t)j] - ref);
            if (!(d <= 1e-4 * mag)) {
                fprintf(stderr, "nam-bench: gemm %dx%dx%d: C[%d,%d] = %g, reference %g\n", c->m, c->n, c->k, rows[r], j,
                        (double)c->C[(size_t)rows[r] * (size_t)c->n + (size_t)j], ref);
                return 1;
            }
        }
    return 0;
}

static int bench_gemm(bench_opts *o) {
    static const int shapes[][4] = {{512, 768, 2048, 1}, {32, 768, 2048, 1}, {2048, 2048, 128, 1}, {128, 2048, 2048, 0}, {2048, 128, 2048, 0}};
    bench_opts one = *o;
    unsigned seed = 7;
    int s, path, rc = 0;
    one.peak_gflops = o->peak_gflops / (o->threads > 0 ? o->threads : 1);
    for (s = 0; s < (int)(sizeof shapes / sizeof shapes[0]) && !rc; s++) {
        bench_gemm_ctx c;
        char shape[96];
        double t;
        c.m = shapes[s][0]; c.n = shapes[s][1]; c.k = shapes[s][2]; c.transB = shapes[s][3];
        if (o->quick) { c.m = c.m > 256 ? 256 : c.m; c.n = c.n > 256 ? 256 : c.n; c.k = c.k > 256 ? 256 : c.k; }
        c.A = (float *)bench_alloc(sizeof(float) * (size_t)c.m * (size_t)c.k);
        c.B = (float *)bench_alloc(sizeof(float) * (size_t)c.n * (size_t)c.k);
        c.C = (float *)bench_alloc(sizeof(float) * (size_t)c.m * (size_t)c.n);
        c.pack = (float *)bench_alloc(sizeof(float) * nam__sgemm_pack_floats(c.m, c.n, c.k));
        if (!c.A || !c.B || !c.C || !c.pack) { fprintf(stderr, "nam-bench: gemm: out of memory\n"); rc = 1; }
        if (!rc) {
            bench_fill(c.A, (size_t)c.m * (size_t)c.k, &seed, -1.0f, 1.0f);
            bench_fill(c.B, (size_t)c.n * (size_t)c.k, &seed, -1.0f, 1.0f);
            snprintf(shape, sizeof shape, "{\"m\":%d,\"n\":%d,\"k\":%d,\"transB\":%d}", c.m, c.n, c.k, c.transB);
        }
        for (path = 1; path >= 0 && !rc; path--) {
            c.path = path;
            bench_gemm_run(&c);
            if (bench_gemm_check(&c)) { rc = 1; break; }
            t = bench_median(bench_gemm_run, &c, o->reps);
            bench_row(&one, "gemm", shape,
#ifdef NAM_CBLAS
                      path ? "cblas" : "cpu-port",
#else
                      path ? "cpu" : "cpu-port",
#endif
                      1, t, 2.0 * c.m * c.n * c.k, 4.0 * ((double)c.m * c.k + (double)c.n * c.k + (double)c.m * c.n), 'c');
        }
        free(c.A); free(c.B); free(c.C); free(c.pack);
    }
    o->rows = one.rows;
    return rc;
}

#endif
