/* test_gemm.c - nam__sgemm (wip/nam_gemm.c) against a plain triple loop in double precision.

   Tolerance, per element: |C - ref| <= 1e-4 * (sum_p |A[i,p]| * |op(B)[p,j]| + beta*|C0[i,j]|) + 1e-30.
   Every shape runs through nam__sgemm (AVX2+FMA micro-kernel where the CPU has it, or cblas_sgemm
   under NAM_CBLAS) and through the blocked loop with the portable micro-kernel (build with
   -DNAM_NO_SIMD to cover its plain-C form instead of the GNU vector one).
   Output (tests/test.h): one line per check, "ok <desc>" or "FAIL <desc>: <why>"; last line
   "test_gemm: N passed, M failed"; exit status 1 on any failure. One "# gemm ..." timing line
   (median of 5 calls after a warm-up, CLOCK_MONOTONIC, flops = 2*m*n*k) and one "#" line naming
   the micro-kernel nam__sgemm used; neither is a check.

   gcc -std=c99 -O2 -Wall -Wextra -Werror -pedantic -I/usr/include/stb tests/test_gemm.c -o build/test_gemm -lstb -lm -lpthread */
#define NAM_IMPLEMENTATION
#include "test.h"

#include <time.h>

static int g_pack_skew;            /* floats by which the pack buffer is moved off 64-byte alignment */

/* One case: m x n x k, transB, beta, extra leading-dimension padding, path (1: nam__sgemm,
   0: portable micro-kernel). beta = 0 starts C as NaN. */
static void run_case(int m, int n, int k, int transB, int beta, int pad, int path) {
    int64_t lda = k + pad, ldb = (transB ? k : n) + pad, ldc = n + pad;
    int64_t brows = transB ? n : k;
    float *A = NAM__CAST(float *, malloc(sizeof(float) * NAM__CAST(size_t, m * lda)));
    float *B = NAM__CAST(float *, malloc(sizeof(float) * NAM__CAST(size_t, brows * ldb)));
    float *C = NAM__CAST(float *, malloc(sizeof(float) * NAM__CAST(size_t, m * ldc)));
    float *C0 = NAM__CAST(float *, malloc(sizeof(float) * NAM__CAST(size_t, m * ldc)));
    size_t packn = nam__sgemm_pack_floats(m, n, k);
    float *pack_mem = NAM__CAST(float *, test_alloc(sizeof(float) * (packn + 16))), *pack = pack_mem ? pack_mem + g_pack_skew : NULL;
    char desc[160], why[256];
    int64_t i, j, p, bad = 0;
    double worst = 0.0;
    snprintf(desc, sizeof desc, "%s %dx%dx%d transB=%d beta=%d ld+%d%s", path ? "sgemm" : "sgemm-portable", m, n, k, transB, beta, pad,
             g_pack_skew ? " pack-misaligned" : "");
    why[0] = 0;
    if (!A || !B || !C || !C0 || !pack) { test_check(0, desc, "out of memory"); goto done; }
    for (i = 0; i < m * lda; i++) A[i] = test_rand();
    for (i = 0; i < brows * ldb; i++) B[i] = test_rand();
    for (i = 0; i < m * ldc; i++) C0[i] = beta ? test_rand() : NAN;
    /* padding columns of C get a sentinel that must survive */
    for (i = 0; i < m; i++) for (j = n; j < ldc; j++) C0[i * ldc + j] = 12345.0f;
    memcpy(C, C0, sizeof(float) * NAM__CAST(size_t, m * ldc));
    if (path) nam__sgemm(m, n, k, A, lda, B, ldb, transB, beta ? 1.0f : 0.0f, C, ldc, pack);
    else nam__gemm_blocked(m, n, k, A, lda, B, ldb, transB, beta ? 1.0f : 0.0f, C, ldc, pack, 0);
    for (i = 0; i < m; i++) {
        for (j = 0; j < ldc; j++) {
            double ref = 0.0, mag = 0.0, err;
            float got = C[i * ldc + j];
            if (j >= n) {
                if (got != 12345.0f && !bad++) snprintf(why, sizeof why, "padding C[%lld,%lld] overwritten", NAM__CAST(long long, i), NAM__CAST(long long, j));
                continue;
            }
            for (p = 0; p < k; p++) {
                double a = A[i * lda + p], b = transB ? B[j * ldb + p] : B[p * ldb + j];
                ref += a * b;
                mag += fabs(a * b);
            }
            if (beta) { ref += C0[i * ldc + j]; mag += fabs(NAM__CAST(double, C0[i * ldc + j])); }
            err = fabs(NAM__CAST(double, got) - ref);
            if (!(err <= 1e-4 * mag + 1e-30)) {        /* also catches NaN */
                if (!bad++)
                    snprintf(why, sizeof why, "C[%lld,%lld] = %.9g, reference %.9g (|err| %.3g > 1e-4 * %.3g)", NAM__CAST(long long, i),
                             NAM__CAST(long long, j), NAM__CAST(double, got), ref, err, mag);
            } else if (mag > 0 && err / mag > worst) worst = err / mag;
        }
    }
    if (bad) {
        size_t l = strlen(why);
        snprintf(why + l, sizeof why - l, " (%lld bad elements)", NAM__CAST(long long, bad));
    }
    test_check(bad == 0, desc, why);
done:
    free(A); free(B); free(C); free(C0); free(pack_mem);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return NAM__CAST(double, ts.tv_sec) + 1e-9 * NAM__CAST(double, ts.tv_nsec);
}

static int cmp_double(const void *a, const void *b) {
    double x = *NAM__CAST(const double *, a), y = *NAM__CAST(const double *, b);
    return x < y ? -1 : x > y;
}

static void time_gemm(int m, int n, int k, int transB) {
    float *A = NAM__CAST(float *, test_alloc(sizeof(float) * NAM__CAST(size_t, m) * NAM__CAST(size_t, k)));
    float *B = NAM__CAST(float *, test_alloc(sizeof(float) * NAM__CAST(size_t, n) * NAM__CAST(size_t, k)));
    float *C = NAM__CAST(float *, test_alloc(sizeof(float) * NAM__CAST(size_t, m) * NAM__CAST(size_t, n)));
    float *pack = NAM__CAST(float *, test_alloc(sizeof(float) * nam__sgemm_pack_floats(m, n, k)));
    double t[5];
    int r;
    size_t i;
    if (!A || !B || !C || !pack) { printf("# gemm timing skipped: out of memory\n"); goto done; }
    for (i = 0; i < NAM__CAST(size_t, m) * NAM__CAST(size_t, k); i++) A[i] = test_rand();
    for (i = 0; i < NAM__CAST(size_t, n) * NAM__CAST(size_t, k); i++) B[i] = test_rand();
    nam__sgemm(m, n, k, A, k, B, transB ? k : n, transB, 0.0f, C, n, pack);   /* warm-up */
    for (r = 0; r < 5; r++) {
        double t0 = now_s();
        nam__sgemm(m, n, k, A, k, B, transB ? k : n, transB, 0.0f, C, n, pack);
        t[r] = now_s() - t0;
    }
    qsort(t, 5, sizeof t[0], cmp_double);
    printf("# gemm %dx%dx%d (transB=%d): %.1f GFLOP/s single thread\n", m, n, k, transB, 2.0 * m * n * k / t[2] * 1e-9);
done:
    free(A); free(B); free(C); free(pack);
}

int main(void) {
    static const int shapes[][3] = {
        {1, 1, 1}, {1, 1, 7}, {2, 3, 1}, {7, 13, 5}, {5, 7, 13}, {13, 5, 7}, {6, 16, 1}, {6, 16, 256},
        {1, 37, 300}, {1, 129, 64}, {1, 3100, 17}, {41, 1, 29}, {200, 1, 3}, {6, 17, 257}, {7, 16, 256},
        {64, 64, 64}, {121, 33, 513}, {100, 300, 257}, {130, 3075, 20}, {3, 3089, 5},
    };
    int s, transB, beta, pad, path;
    for (path = 1; path >= 0; path--)
        for (s = 0; s < NAM__CAST(int, sizeof shapes / sizeof shapes[0]); s++)
            for (transB = 0; transB < 2; transB++)
                for (beta = 0; beta < 2; beta++)
                    for (pad = 0; pad < 2; pad++) run_case(shapes[s][0], shapes[s][1], shapes[s][2], transB, beta, pad ? 3 : 0, path);
    run_case(512, 768, 2048, 1, 0, 0, 1);
    run_case(512, 768, 2048, 0, 1, 5, 1);
    g_pack_skew = 1;                  /* the contract asks for 64-byte alignment; float alignment must still work */
    run_case(100, 300, 257, 1, 1, 0, 1);
    run_case(100, 300, 257, 0, 0, 1, 1);
    g_pack_skew = 0;
    printf("# nam__sgemm micro-kernel: %s\n",
#ifdef NAM_CBLAS
           "cblas_sgemm (NAM_CBLAS)"
#else
           nam__cpu_avx2_fma() ? "AVX2+FMA 6x16" : "portable 6x16"
#endif
    );
    time_gemm(512, 768, 2048, 1);
    return test_done("test_gemm");
}
