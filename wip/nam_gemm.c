/* >>gemm ------------------------------------------------------------------------------- */
/* Single-precision GEMM for the CPU kernels (MoE expert FFN, attention tiles).

     C[i,j] = beta*C[i,j] + sum_p A[i,p] * op(B)[p,j]     row-major, i < m, j < n, p < k
     transB = 0: op(B)[p,j] = B[p*ldb + j]      transB = 1: op(B)[p,j] = B[j*ldb + p]
     beta is 0 or 1; beta = 0 overwrites C without reading it (C may hold NaN garbage).

   pack is caller scratch of nam__sgemm_pack_floats(m, n, k) floats, 64-byte aligned.
   nam__sgemm is single-threaded; callers parallelise over independent blocks.

   Structure (the Goto/BLIS loop nest): for each NC-wide column block of op(B) and each
   KC-deep slice of k, op(B) is packed into NR-wide row-interleaved panels; for each MC-tall
   row block of A, A is packed into MR-tall column-interleaved panels; a register-blocked
   MR x NR micro-kernel then runs over every (MR, NR) tile of the block. Packing pads edge
   panels with zeros, so the micro-kernel always computes a full tile and only the
   write-back is clipped. The AVX2+FMA micro-kernel (6x16, 12 ymm accumulators) is compiled
   with a target attribute and chosen at run time; otherwise a portable one runs.
   With NAM_CBLAS defined, nam__sgemm calls cblas_sgemm instead (link a CBLAS). */
#define NAM__GEMM_MR 6
#define NAM__GEMM_NR 16
#define NAM__GEMM_KC 256
#define NAM__GEMM_MC 120   /* multiple of MR: A block 120 x 256 floats = 120 KiB (L2) */
#define NAM__GEMM_NC 3072  /* multiple of NR: B block 256 x 3072 floats = 3 MiB (L3) */

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define NAM__GEMM_X86 1
#include <immintrin.h>
#endif
#ifdef NAM_CBLAS
#include <cblas.h>
#endif

NAM__UNUSED static size_t nam__gemm_round_up(size_t x, size_t r) { return (x + r - 1) / r * r; }

NAM__UNUSED static size_t nam__sgemm_pack_floats(int m, int n, int k) {
    size_t mc, nc, kc;
    if (m < 1 || n < 1 || k < 1) return 0;
    mc = nam__gemm_round_up(NAM__CAST(size_t, m), NAM__GEMM_MR);
    nc = nam__gemm_round_up(NAM__CAST(size_t, n), NAM__GEMM_NR);
    kc = NAM__CAST(size_t, k);
    if (mc > NAM__GEMM_MC) mc = NAM__GEMM_MC;
    if (nc > NAM__GEMM_NC) nc = NAM__GEMM_NC;
    if (kc > NAM__GEMM_KC) kc = NAM__GEMM_KC;
    /* the A block first, rounded to 16 floats (64 bytes) so the B block stays aligned */
    return nam__gemm_round_up(mc * kc, 16) + nc * kc;
}

/* Pack rows [0, mc) x cols [0, kc) of A (row stride lda) into MR-tall panels:
   panel r holds, for p = 0..kc-1, A[r*MR + 0..MR-1, p] contiguously; rows past mc are 0. */
NAM__UNUSED static void nam__gemm_pack_a(int mc, int kc, const float *A, int64_t lda, float *dst) {
    int i0, i, p;
    for (i0 = 0; i0 < mc; i0 += NAM__GEMM_MR) {
        int rows = mc - i0 < NAM__GEMM_MR ? mc - i0 : NAM__GEMM_MR;
        for (i = 0; i < rows; i++) {
            const float *src = A + NAM__CAST(int64_t, i0 + i) * lda;
            for (p = 0; p < kc; p++) dst[p * NAM__GEMM_MR + i] = src[p];
        }
        for (; i < NAM__GEMM_MR; i++)
            for (p = 0; p < kc; p++) dst[p * NAM__GEMM_MR + i] = 0.0f;
        dst += NAM__CAST(size_t, kc) * NAM__GEMM_MR;
    }
}

/* Pack op(B)[0..kc-1, 0..nc-1] into NR-wide panels: panel s holds, for p = 0..kc-1,
   op(B)[p, s*NR + 0..NR-1] contiguously; columns past nc are 0. */
NAM__UNUSED static void nam__gemm_pack_b(int kc, int nc, const float *B, int64_t ldb, int transB, float *dst) {
    int j0, j, p;
    for (j0 = 0; j0 < nc; j0 += NAM__GEMM_NR) {
        int cols = nc - j0 < NAM__GEMM_NR ? nc - j0 : NAM__GEMM_NR;
        if (transB) {           /* op(B)[p, j] = B[j*ldb + p]: read rows of B, scatter by NR */
            for (j = 0; j < cols; j++) {
                const float *src = B + NAM__CAST(int64_t, j0 + j) * ldb;
                for (p = 0; p < kc; p++) dst[p * NAM__GEMM_NR + j] = src[p];
            }
            for (; j < NAM__GEMM_NR; j++)
                for (p = 0; p < kc; p++) dst[p * NAM__GEMM_NR + j] = 0.0f;
        } else if (cols == NAM__GEMM_NR) {
            for (p = 0; p < kc; p++) {
                const float *src = B + NAM__CAST(int64_t, p) * ldb + j0;
                float *d = dst + p * NAM__GEMM_NR;
                for (j = 0; j < NAM__GEMM_NR; j++) d[j] = src[j];
            }
        } else {
            for (p = 0; p < kc; p++) {
                const float *src = B + NAM__CAST(int64_t, p) * ldb + j0;
                float *d = dst + p * NAM__GEMM_NR;
                for (j = 0; j < cols; j++) d[j] = src[j];
                for (; j < NAM__GEMM_NR; j++) d[j] = 0.0f;
            }
        }
        dst += NAM__CAST(size_t, kc) * NAM__GEMM_NR;
    }
}

/* Write an MR x NR tile t (row stride NR) into C, clipped to mr x nr; add when accumulate. */
NAM__UNUSED static void nam__gemm_store_tile(const float *t, float *C, int64_t ldc, int mr, int nr, int accumulate) {
    int i, j;
    for (i = 0; i < mr; i++) {
        float *c = C + NAM__CAST(int64_t, i) * ldc;
        const float *s = t + i * NAM__GEMM_NR;
        if (accumulate) for (j = 0; j < nr; j++) c[j] += s[j];
        else for (j = 0; j < nr; j++) c[j] = s[j];
    }
}

/* Portable micro-kernel: C tile (mr x nr of MR x NR) (+)= a-panel * b-panel over kc. */
NAM__UNUSED static void nam__gemm_micro_ref(int kc, const float *a, const float *b, float *C, int64_t ldc, int mr, int nr, int accumulate) {
    float acc[NAM__GEMM_MR * NAM__GEMM_NR];
    int i, j, p;
    for (i = 0; i < NAM__GEMM_MR * NAM__GEMM_NR; i++) acc[i] = 0.0f;
    for (p = 0; p < kc; p++) {
        const float *bp = b + p * NAM__GEMM_NR, *ap = a + p * NAM__GEMM_MR;
        for (i = 0; i < NAM__GEMM_MR; i++) {
            float ai = ap[i];
            float *row = acc + i * NAM__GEMM_NR;
            for (j = 0; j < NAM__GEMM_NR; j++) row[j] += ai * bp[j];
        }
    }
    nam__gemm_store_tile(acc, C, ldc, mr, nr, accumulate);
}

#ifdef NAM__GEMM_X86
/* AVX2+FMA micro-kernel, 6 x 16: per p, two 8-wide loads of the b panel, six broadcasts of
   the a panel, twelve FMAs into ymm accumulators. Full tiles store straight into C. */
__attribute__((target("avx2,fma")))
NAM__UNUSED static void nam__gemm_micro_avx2(int kc, const float *a, const float *b, float *C, int64_t ldc, int mr, int nr, int accumulate) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    __m256 b0, b1, av;
    int p;
    for (p = 0; p < kc; p++) {
        b0 = _mm256_load_ps(b);
        b1 = _mm256_load_ps(b + 8);
        av = _mm256_broadcast_ss(a + 0); c00 = _mm256_fmadd_ps(av, b0, c00); c01 = _mm256_fmadd_ps(av, b1, c01);
        av = _mm256_broadcast_ss(a + 1); c10 = _mm256_fmadd_ps(av, b0, c10); c11 = _mm256_fmadd_ps(av, b1, c11);
        av = _mm256_broadcast_ss(a + 2); c20 = _mm256_fmadd_ps(av, b0, c20); c21 = _mm256_fmadd_ps(av, b1, c21);
        av = _mm256_broadcast_ss(a + 3); c30 = _mm256_fmadd_ps(av, b0, c30); c31 = _mm256_fmadd_ps(av, b1, c31);
        av = _mm256_broadcast_ss(a + 4); c40 = _mm256_fmadd_ps(av, b0, c40); c41 = _mm256_fmadd_ps(av, b1, c41);
        av = _mm256_broadcast_ss(a + 5); c50 = _mm256_fmadd_ps(av, b0, c50); c51 = _mm256_fmadd_ps(av, b1, c51);
        a += NAM__GEMM_MR;
        b += NAM__GEMM_NR;
    }
    if (mr == NAM__GEMM_MR && nr == NAM__GEMM_NR) {
        float *r0 = C, *r1 = r0 + ldc, *r2 = r1 + ldc, *r3 = r2 + ldc, *r4 = r3 + ldc, *r5 = r4 + ldc;
        if (accumulate) {
            c00 = _mm256_add_ps(c00, _mm256_loadu_ps(r0)); c01 = _mm256_add_ps(c01, _mm256_loadu_ps(r0 + 8));
            c10 = _mm256_add_ps(c10, _mm256_loadu_ps(r1)); c11 = _mm256_add_ps(c11, _mm256_loadu_ps(r1 + 8));
            c20 = _mm256_add_ps(c20, _mm256_loadu_ps(r2)); c21 = _mm256_add_ps(c21, _mm256_loadu_ps(r2 + 8));
            c30 = _mm256_add_ps(c30, _mm256_loadu_ps(r3)); c31 = _mm256_add_ps(c31, _mm256_loadu_ps(r3 + 8));
            c40 = _mm256_add_ps(c40, _mm256_loadu_ps(r4)); c41 = _mm256_add_ps(c41, _mm256_loadu_ps(r4 + 8));
            c50 = _mm256_add_ps(c50, _mm256_loadu_ps(r5)); c51 = _mm256_add_ps(c51, _mm256_loadu_ps(r5 + 8));
        }
        _mm256_storeu_ps(r0, c00); _mm256_storeu_ps(r0 + 8, c01);
        _mm256_storeu_ps(r1, c10); _mm256_storeu_ps(r1 + 8, c11);
        _mm256_storeu_ps(r2, c20); _mm256_storeu_ps(r2 + 8, c21);
        _mm256_storeu_ps(r3, c30); _mm256_storeu_ps(r3 + 8, c31);
        _mm256_storeu_ps(r4, c40); _mm256_storeu_ps(r4 + 8, c41);
        _mm256_storeu_ps(r5, c50); _mm256_storeu_ps(r5 + 8, c51);
    } else {
        float t[NAM__GEMM_MR * NAM__GEMM_NR];
        _mm256_storeu_ps(t + 0 * 16, c00); _mm256_storeu_ps(t + 0 * 16 + 8, c01);
        _mm256_storeu_ps(t + 1 * 16, c10); _mm256_storeu_ps(t + 1 * 16 + 8, c11);
        _mm256_storeu_ps(t + 2 * 16, c20); _mm256_storeu_ps(t + 2 * 16 + 8, c21);
        _mm256_storeu_ps(t + 3 * 16, c30); _mm256_storeu_ps(t + 3 * 16 + 8, c31);
        _mm256_storeu_ps(t + 4 * 16, c40); _mm256_storeu_ps(t + 4 * 16 + 8, c41);
        _mm256_storeu_ps(t + 5 * 16, c50); _mm256_storeu_ps(t + 5 * 16 + 8, c51);
        nam__gemm_store_tile(t, C, ldc, mr, nr, accumulate);
    }
}
#endif

/* 1 when the AVX2+FMA micro-kernel can run on this CPU. */
NAM__UNUSED static int nam__gemm_have_avx2(void) {
#ifdef NAM__GEMM_X86
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

/* The blocked GEMM with an explicit micro-kernel choice (simd: 1 = AVX2+FMA when built for
   x86, 0 = portable). nam__sgemm picks simd from the CPU; tests call this for both paths. */
NAM__UNUSED static void nam__gemm_blocked(int m, int n, int k, const float *A, int64_t lda, const float *B, int64_t ldb, int transB,
                                          float beta, float *C, int64_t ldc, float *pack, int simd) {
    float *pa = pack;
    float *pb;
    int jc, pc, ic, jr, ir;
    {
        size_t mc = nam__gemm_round_up(NAM__CAST(size_t, m), NAM__GEMM_MR), kc = NAM__CAST(size_t, k);
        if (mc > NAM__GEMM_MC) mc = NAM__GEMM_MC;
        if (kc > NAM__GEMM_KC) kc = NAM__GEMM_KC;
        pb = pack + nam__gemm_round_up(mc * kc, 16);
    }
#ifndef NAM__GEMM_X86
    (void)simd;
#endif
    for (jc = 0; jc < n; jc += NAM__GEMM_NC) {
        int nc = n - jc < NAM__GEMM_NC ? n - jc : NAM__GEMM_NC;
        for (pc = 0; pc < k; pc += NAM__GEMM_KC) {
            int kc = k - pc < NAM__GEMM_KC ? k - pc : NAM__GEMM_KC;
            int accumulate = pc > 0 || beta != 0.0f;
            const float *bsrc = transB ? B + NAM__CAST(int64_t, jc) * ldb + pc : B + NAM__CAST(int64_t, pc) * ldb + jc;
            nam__gemm_pack_b(kc, nc, bsrc, ldb, transB, pb);
            for (ic = 0; ic < m; ic += NAM__GEMM_MC) {
                int mc = m - ic < NAM__GEMM_MC ? m - ic : NAM__GEMM_MC;
                nam__gemm_pack_a(mc, kc, A + NAM__CAST(int64_t, ic) * lda + pc, lda, pa);
                for (jr = 0; jr < nc; jr += NAM__GEMM_NR) {
                    int nr = nc - jr < NAM__GEMM_NR ? nc - jr : NAM__GEMM_NR;
                    const float *bp = pb + NAM__CAST(size_t, jr) * NAM__CAST(size_t, kc);
                    for (ir = 0; ir < mc; ir += NAM__GEMM_MR) {
                        int mr = mc - ir < NAM__GEMM_MR ? mc - ir : NAM__GEMM_MR;
                        const float *ap = pa + NAM__CAST(size_t, ir) * NAM__CAST(size_t, kc);
                        float *cp = C + NAM__CAST(int64_t, ic + ir) * ldc + jc + jr;
#ifdef NAM__GEMM_X86
                        if (simd) nam__gemm_micro_avx2(kc, ap, bp, cp, ldc, mr, nr, accumulate);
                        else
#endif
                            nam__gemm_micro_ref(kc, ap, bp, cp, ldc, mr, nr, accumulate);
                    }
                }
            }
        }
    }
}

NAM__UNUSED static void nam__sgemm(int m, int n, int k, const float *A, int64_t lda, const float *B, int64_t ldb, int transB,
                                   float beta, float *C, int64_t ldc, float *pack) {
    if (m < 1 || n < 1 || k < 1) return;
#ifdef NAM_CBLAS
    (void)pack;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, transB ? CblasTrans : CblasNoTrans, m, n, k, 1.0f, A, NAM__CAST(int, lda), B,
                NAM__CAST(int, ldb), beta, C, NAM__CAST(int, ldc));
#else
    nam__gemm_blocked(m, n, k, A, lda, B, ldb, transB, beta, C, ldc, pack, nam__gemm_have_avx2());
#endif
}
