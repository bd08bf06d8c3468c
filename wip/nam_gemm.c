/* >>gemm ------------------------------------------------------------------------------- */
/* Single-precision GEMM for the CPU kernels (MoE expert FFN, attention tiles).

     C[i,j] = beta*C[i,j] + sum_p A[i,p] * op(B)[p,j]     row-major, i < m, j < n, p < k
     transB = 0: op(B)[p,j] = B[p*ldb + j]      transB = 1: op(B)[p,j] = B[j*ldb + p]
     beta is 0 or 1; beta = 0 overwrites C without reading it (C may hold NaN garbage); the
     blocked path treats any nonzero beta as 1. m, n, k >= 1 (else nothing happens);
     lda >= k, ldb >= (transB ? k : n), ldc >= n, all in floats.

   pack is caller scratch of nam__sgemm_pack_floats(m, n, k) floats, 64-byte aligned (for
   speed; any float-aligned buffer gives the same results, all vector accesses are unaligned).
   nam__sgemm is single-threaded; callers parallelise over independent blocks.

   Structure (the Goto/BLIS loop nest): for each NC-wide column block of op(B) and each
   KC-deep slice of k, op(B) is packed into NR-wide row-interleaved panels (transB = 0: the
   whole block up front, in row order; transB = 1: each panel just before its first use, via
   8 x 8 register transposes); for each MC-tall row block of A, A is packed into MR-tall
   column-interleaved panels, and the next A block is software-prefetched while this one
   computes; a register-blocked MR x NR micro-kernel then runs over every tile of the block.
   Blocks are split evenly (no thin leftover block). Packing pads edge panels with zeros;
   the write-back of edge tiles is clipped, and tiles of fewer than 6 rows run a kernel
   that computes only those rows. The AVX2+FMA code (6x16 micro-kernel, 12 ymm
   accumulators, and the packing) is compiled with a target attribute and chosen at run
   time with __builtin_cpu_supports; otherwise portable code runs (GNU vector extensions
   where available, else plain C). With NAM_CBLAS defined, nam__sgemm calls cblas_sgemm
   instead (link a CBLAS, e.g. -lopenblas; pack is then unused). */
#define NAM__GEMM_MR 6
#define NAM__GEMM_NR 16
#define NAM__GEMM_KC 256   /* B micro-panel 256 x 16 floats = 16 KiB (L1) */
#define NAM__GEMM_MC 144   /* multiple of MR: A block 144 x 256 floats = 144 KiB (L2) */
#define NAM__GEMM_NC 3072  /* multiple of NR: B block 256 x 3072 floats = 3 MiB (L3) */

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define NAM__GEMM_X86 1
#include <immintrin.h>
#endif
#if defined(__GNUC__) || defined(__clang__)
#define NAM__GEMM_PREFETCH(p) __builtin_prefetch((p), 0, 2)
#else
#define NAM__GEMM_PREFETCH(p) ((void)(p))
#endif
#ifdef NAM_CBLAS
#include <cblas.h>
#endif

NAM__UNUSED static size_t nam__gemm_round_up(size_t x, size_t r) { return (x + r - 1) / r * r; }

/* Floats of the packed A block, rounded to 16 (64 bytes) so the B block after it stays aligned. */
NAM__UNUSED static size_t nam__gemm_a_floats(int m, int k) {
    size_t mc = nam__gemm_round_up(NAM__CAST(size_t, m), NAM__GEMM_MR), kc = NAM__CAST(size_t, k);
    if (mc > NAM__GEMM_MC) mc = NAM__GEMM_MC;
    if (kc > NAM__GEMM_KC) kc = NAM__GEMM_KC;
    return nam__gemm_round_up(mc * kc, 16);
}

/* Floats of pack scratch nam__sgemm needs for these sizes (at most (144 + 3072) * 256 =
   823,296 floats, 3.1 MiB; 0 when a size is < 1). */
NAM__UNUSED static size_t nam__sgemm_pack_floats(int m, int n, int k) {
    size_t nc, kc;
    if (m < 1 || n < 1 || k < 1) return 0;
    nc = nam__gemm_round_up(NAM__CAST(size_t, n), NAM__GEMM_NR);
    kc = NAM__CAST(size_t, k);
    if (nc > NAM__GEMM_NC) nc = NAM__GEMM_NC;
    if (kc > NAM__GEMM_KC) kc = NAM__GEMM_KC;
    return nam__gemm_a_floats(m, k) + nc * kc;
}

/* Block length for splitting len into ceil(len / cap) near-equal blocks, rounded up to a
   multiple of r (cap is a multiple of r), so that no block is a thin leftover. */
NAM__UNUSED static int nam__gemm_block(int len, int cap, int r) {
    int64_t nb = (NAM__CAST(int64_t, len) + cap - 1) / cap, b = (len + nb - 1) / nb;
    b = (b + r - 1) / r * r;
    return b < cap ? NAM__CAST(int, b) : cap;
}

/* Software prefetch of a rows x cols region (rows ld floats apart), spread over `steps`
   calls of nam__gemm_pf_step: the packing of the next A block reads short row segments far
   apart, which the hardware prefetcher does not see coming, so they are fetched while the
   current block computes. (Prefetching the next B block the same way measured slower.) */
typedef struct nam__gemm_pf {
    const char *base;
    int64_t stride, row_off;
    int rows, bytes, lines, r, q, per_step;
} nam__gemm_pf;

NAM__UNUSED static void nam__gemm_pf_init(nam__gemm_pf *pf, const float *base, int64_t ld, int rows, int cols, int64_t steps) {
    int64_t total;
    pf->base = NAM__CAST(const char *, NAM__CAST(const void *, base));
    pf->stride = ld * NAM__CAST(int64_t, sizeof(float));
    pf->row_off = 0;
    pf->rows = rows;
    pf->bytes = cols * NAM__CAST(int, sizeof(float));
    pf->lines = pf->bytes / 64 + 1;      /* + 1: the row may straddle one more line */
    pf->r = pf->q = 0;
    total = NAM__CAST(int64_t, rows) * pf->lines;
    if (steps < 1) steps = 1;
    pf->per_step = NAM__CAST(int, (total + steps - 1) / steps);
}

NAM__UNUSED static void nam__gemm_pf_step(nam__gemm_pf *pf) {
    int c;
    for (c = pf->per_step; c > 0 && pf->r < pf->rows; c--) {
        int off = pf->q * 64 < pf->bytes ? pf->q * 64 : pf->bytes - 1;
        NAM__GEMM_PREFETCH(pf->base + pf->row_off + off);
        if (++pf->q == pf->lines) {
            pf->q = 0;
            pf->r++;
            pf->row_off += pf->stride;
        }
    }
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

/* Pack panels [j0, j1) (j0 a multiple of NR) of op(B)[p, j] = B[j*ldb + p] (transB = 1),
   p < kc, j < nc, in the layout of nam__gemm_pack_bn, 16 x 16 blocks at a time so each
   line of B read is used up in one visit. */
NAM__UNUSED static void nam__gemm_pack_bt_ref(int kc, int nc, int j0, int j1, const float *B, int64_t ldb, float *dst) {
    int j, p, p0;
    for (; j0 < j1; j0 += NAM__GEMM_NR) {
        int cols = nc - j0 < NAM__GEMM_NR ? nc - j0 : NAM__GEMM_NR;
        float *d = dst + NAM__CAST(size_t, j0) * NAM__CAST(size_t, kc);
        for (p0 = 0; p0 < kc; p0 += 16) {
            int p1 = kc - p0 < 16 ? kc : p0 + 16;
            for (j = 0; j < cols; j++) {
                const float *src = B + NAM__CAST(int64_t, j0 + j) * ldb;
                for (p = p0; p < p1; p++) d[p * NAM__GEMM_NR + j] = src[p];
            }
            for (; j < NAM__GEMM_NR; j++)
                for (p = p0; p < p1; p++) d[p * NAM__GEMM_NR + j] = 0.0f;
        }
    }
}

/* Pack op(B)[p, j] = B[p*ldb + j] (transB = 0), p < kc, j < nc, into NR-wide panels: panel
   s holds, for p = 0..kc-1, op(B)[p, s*NR + 0..NR-1] contiguously; columns past nc are 0.
   It copies 8 rows of B at a time: 8 sequential read streams and 512 contiguous bytes
   written per panel (a panel-at-a-time walk down 256 rows of a wide B thrashes one L1 set
   and the TLB). */
NAM__UNUSED static void nam__gemm_pack_bn(int kc, int nc, const float *B, int64_t ldb, float *dst) {
    int j0, j, p, p0;
    for (p0 = 0; p0 < kc; p0 += 8) {
        int p1 = kc - p0 < 8 ? kc : p0 + 8;
        for (j0 = 0; j0 < nc; j0 += NAM__GEMM_NR) {
            int cols = nc - j0 < NAM__GEMM_NR ? nc - j0 : NAM__GEMM_NR;
            float *d = dst + NAM__CAST(size_t, j0) * NAM__CAST(size_t, kc);
            for (p = p0; p < p1; p++) {
                const float *src = B + NAM__CAST(int64_t, p) * ldb + j0;
                if (cols == NAM__GEMM_NR) memcpy(d + p * NAM__GEMM_NR, src, NAM__GEMM_NR * sizeof(float));
                else {
                    for (j = 0; j < cols; j++) d[p * NAM__GEMM_NR + j] = src[j];
                    for (; j < NAM__GEMM_NR; j++) d[p * NAM__GEMM_NR + j] = 0.0f;
                }
            }
        }
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

/* Portable micro-kernel: C tile (mr x nr of MR x NR) (+)= a-panel * b-panel over kc. With
   GCC or clang it is written with 4-wide vector extensions (SSE2 on x86, NEON on ARM), one
   6 x 8 half of the tile at a time so the 12 accumulators stay in registers; otherwise (or
   with NAM__GEMM_NO_VECTOR_EXT defined, which the tests use to cover it) in plain C. */
#if (defined(__GNUC__) || defined(__clang__)) && !defined(NAM__GEMM_NO_VECTOR_EXT)
typedef float nam__gemm_v4 __attribute__((vector_size(16)));
NAM__UNUSED static void nam__gemm_micro_ref(int kc, const float *a, const float *b, float *C, int64_t ldc, int mr, int nr, int accumulate) {
    float t[NAM__GEMM_MR * NAM__GEMM_NR];
    int h, i, p;
    for (h = 0; h < NAM__GEMM_NR; h += 8) {
        nam__gemm_v4 acc[NAM__GEMM_MR][2];
        memset(acc, 0, sizeof acc);
        for (p = 0; p < kc; p++) {
            const float *ap = a + p * NAM__GEMM_MR;
            nam__gemm_v4 b0, b1;
            memcpy(&b0, b + p * NAM__GEMM_NR + h, sizeof b0);
            memcpy(&b1, b + p * NAM__GEMM_NR + h + 4, sizeof b1);
            for (i = 0; i < NAM__GEMM_MR; i++) {
                nam__gemm_v4 av = {ap[i], ap[i], ap[i], ap[i]};
                acc[i][0] += av * b0;
                acc[i][1] += av * b1;
            }
        }
        for (i = 0; i < NAM__GEMM_MR; i++) memcpy(t + i * NAM__GEMM_NR + h, acc[i], sizeof acc[i]);
    }
    nam__gemm_store_tile(t, C, ldc, mr, nr, accumulate);
}
#else
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
#endif

#ifdef NAM__GEMM_X86
/* AVX2 version of nam__gemm_pack_bt_ref: full panels go through 8 x 8 register transposes. */
__attribute__((target("avx2,fma")))
NAM__UNUSED static void nam__gemm_pack_bt_avx2(int kc, int nc, int j0, int j1, const float *B, int64_t ldb, float *dst) {
    int h, p0, full = nc / NAM__GEMM_NR * NAM__GEMM_NR;
    if (full > j1) full = j1;
    for (; j0 < full; j0 += NAM__GEMM_NR) {
        float *d = dst + NAM__CAST(size_t, j0) * NAM__CAST(size_t, kc);
        /* 16 k at a time (a whole cache line of each of the 16 rows) so no line is fetched twice */
        for (p0 = 0; p0 + 8 <= kc; p0 += 16) {
            for (h = 0; h < 2; h++) {
                int q;
                for (q = p0; q <= p0 + 8 && q + 8 <= kc; q += 8) {
                    const float *s = B + NAM__CAST(int64_t, j0 + 8 * h) * ldb + q;
                    __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + ldb), r2 = _mm256_loadu_ps(s + 2 * ldb);
                    __m256 r3 = _mm256_loadu_ps(s + 3 * ldb), r4 = _mm256_loadu_ps(s + 4 * ldb), r5 = _mm256_loadu_ps(s + 5 * ldb);
                    __m256 r6 = _mm256_loadu_ps(s + 6 * ldb), r7 = _mm256_loadu_ps(s + 7 * ldb);
                    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
                    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
                    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
                    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
                    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
                    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
                    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
                    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
                    float *o = d + q * NAM__GEMM_NR + 8 * h;
                    _mm256_storeu_ps(o + 0 * NAM__GEMM_NR, _mm256_permute2f128_ps(u0, u4, 0x20));
                    _mm256_storeu_ps(o + 1 * NAM__GEMM_NR, _mm256_permute2f128_ps(u1, u5, 0x20));
                    _mm256_storeu_ps(o + 2 * NAM__GEMM_NR, _mm256_permute2f128_ps(u2, u6, 0x20));
                    _mm256_storeu_ps(o + 3 * NAM__GEMM_NR, _mm256_permute2f128_ps(u3, u7, 0x20));
                    _mm256_storeu_ps(o + 4 * NAM__GEMM_NR, _mm256_permute2f128_ps(u0, u4, 0x31));
                    _mm256_storeu_ps(o + 5 * NAM__GEMM_NR, _mm256_permute2f128_ps(u1, u5, 0x31));
                    _mm256_storeu_ps(o + 6 * NAM__GEMM_NR, _mm256_permute2f128_ps(u2, u6, 0x31));
                    _mm256_storeu_ps(o + 7 * NAM__GEMM_NR, _mm256_permute2f128_ps(u3, u7, 0x31));
                }
            }
        }
        p0 = kc / 8 * 8;
        if (p0 < kc) {          /* k tail (< 8) */
            int j, p;
            for (j = 0; j < NAM__GEMM_NR; j++) {
                const float *s = B + NAM__CAST(int64_t, j0 + j) * ldb;
                for (p = p0; p < kc; p++) d[p * NAM__GEMM_NR + j] = s[p];
            }
        }
    }
    if (j0 < j1) nam__gemm_pack_bt_ref(kc, nc, j0, j1, B, ldb, dst);
}

/* AVX2 version of nam__gemm_pack_a: full 6-row panels go through 8 x 8 register transposes
   (rows 6 and 7 zero) and store 6 floats per k. */
__attribute__((target("avx2,fma")))
NAM__UNUSED static void nam__gemm_pack_a_avx2(int mc, int kc, const float *A, int64_t lda, float *dst) {
    int i0, p0, full = mc / NAM__GEMM_MR * NAM__GEMM_MR;
    __m256 z = _mm256_setzero_ps();
    for (i0 = 0; i0 < full; i0 += NAM__GEMM_MR) {
        const float *s = A + NAM__CAST(int64_t, i0) * lda;
        for (p0 = 0; p0 + 8 <= kc; p0 += 8) {
            __m256 r0 = _mm256_loadu_ps(s + p0), r1 = _mm256_loadu_ps(s + lda + p0), r2 = _mm256_loadu_ps(s + 2 * lda + p0);
            __m256 r3 = _mm256_loadu_ps(s + 3 * lda + p0), r4 = _mm256_loadu_ps(s + 4 * lda + p0), r5 = _mm256_loadu_ps(s + 5 * lda + p0);
            __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
            __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
            __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
            __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
            __m256 u4 = _mm256_shuffle_ps(t4, z, 0x44), u5 = _mm256_shuffle_ps(t4, z, 0xee);
            __m256 u6 = _mm256_shuffle_ps(t5, z, 0x44), u7 = _mm256_shuffle_ps(t5, z, 0xee);
            __m256 v[8];
            int q;
            float *d = dst + NAM__CAST(size_t, p0) * NAM__GEMM_MR;
            v[0] = _mm256_permute2f128_ps(u0, u4, 0x20); v[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
            v[2] = _mm256_permute2f128_ps(u2, u6, 0x20); v[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
            v[4] = _mm256_permute2f128_ps(u0, u4, 0x31); v[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
            v[6] = _mm256_permute2f128_ps(u2, u6, 0x31); v[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
            for (q = 0; q < 8; q++) {          /* k = p0 + q: A[i0 + 0..5, k] */
                _mm_storeu_ps(d + q * NAM__GEMM_MR, _mm256_castps256_ps128(v[q]));
                _mm_storel_pi(NAM__CAST(__m64 *, NAM__CAST(void *, d + q * NAM__GEMM_MR + 4)), _mm256_extractf128_ps(v[q], 1));
            }
        }
        for (; p0 < kc; p0++) {                /* k tail (< 8) */
            int i;
            for (i = 0; i < NAM__GEMM_MR; i++) dst[p0 * NAM__GEMM_MR + i] = s[NAM__CAST(int64_t, i) * lda + p0];
        }
        dst += NAM__CAST(size_t, kc) * NAM__GEMM_MR;
    }
    if (full < mc) nam__gemm_pack_a(mc - full, kc, A + NAM__CAST(int64_t, full) * lda, lda, dst);
}

/* AVX2+FMA micro-kernel, 6 x 16: per p, two 8-wide loads of the b panel, six broadcasts of
   the a panel, twelve FMAs into ymm accumulators; p unrolled by 4. Full tiles store straight
   into C (prefetched first); edge tiles go through a small buffer. */
__attribute__((target("avx2,fma")))
NAM__UNUSED static void nam__gemm_micro_avx2(int kc, const float *a, const float *b, float *C, int64_t ldc, int mr, int nr, int accumulate) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    __m256 b0, b1, av;
    int p, i;
    for (i = 0; i < mr; i++) {
        _mm_prefetch(NAM__CAST(const char *, NAM__CAST(const void *, C + i * ldc)), _MM_HINT_T0);
        _mm_prefetch(NAM__CAST(const char *, NAM__CAST(const void *, C + i * ldc + nr - 1)), _MM_HINT_T0);
    }
#define NAM__GEMM_STEP(o)                                                                                      \
    b0 = _mm256_loadu_ps(b + (o) * NAM__GEMM_NR);                                                               \
    b1 = _mm256_loadu_ps(b + (o) * NAM__GEMM_NR + 8);                                                           \
    av = _mm256_broadcast_ss(a + (o) * NAM__GEMM_MR + 0); c00 = _mm256_fmadd_ps(av, b0, c00); c01 = _mm256_fmadd_ps(av, b1, c01); \
    av = _mm256_broadcast_ss(a + (o) * NAM__GEMM_MR + 1); c10 = _mm256_fmadd_ps(av, b0, c10); c11 = _mm256_fmadd_ps(av, b1, c11); \
    av = _mm256_broadcast_ss(a + (o) * NAM__GEMM_MR + 2); c20 = _mm256_fmadd_ps(av, b0, c20); c21 = _mm256_fmadd_ps(av, b1, c21); \
    av = _mm256_broadcast_ss(a + (o) * NAM__GEMM_MR + 3); c30 = _mm256_fmadd_ps(av, b0, c30); c31 = _mm256_fmadd_ps(av, b1, c31); \
    av = _mm256_broadcast_ss(a + (o) * NAM__GEMM_MR + 4); c40 = _mm256_fmadd_ps(av, b0, c40); c41 = _mm256_fmadd_ps(av, b1, c41); \
    av = _mm256_broadcast_ss(a + (o) * NAM__GEMM_MR + 5); c50 = _mm256_fmadd_ps(av, b0, c50); c51 = _mm256_fmadd_ps(av, b1, c51);
    for (p = 0; p + 4 <= kc; p += 4) {
        NAM__GEMM_STEP(0) NAM__GEMM_STEP(1) NAM__GEMM_STEP(2) NAM__GEMM_STEP(3)
        a += 4 * NAM__GEMM_MR;
        b += 4 * NAM__GEMM_NR;
    }
    for (; p < kc; p++) {
        NAM__GEMM_STEP(0)
        a += NAM__GEMM_MR;
        b += NAM__GEMM_NR;
    }
#undef NAM__GEMM_STEP
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

/* The same for edge tiles of mr < 6 rows: only those rows are computed (R below is a
   literal, so the dead rows fold away), and the result goes through a small buffer. */
__attribute__((target("avx2,fma")))
NAM__UNUSED static void nam__gemm_micro_avx2_rows(int kc, const float *a, const float *b, float *C, int64_t ldc, int mr, int nr, int accumulate) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 b0, b1, av;
    int p, i;
    for (i = 0; i < mr; i++) {
        _mm_prefetch(NAM__CAST(const char *, NAM__CAST(const void *, C + i * ldc)), _MM_HINT_T0);
        _mm_prefetch(NAM__CAST(const char *, NAM__CAST(const void *, C + i * ldc + nr - 1)), _MM_HINT_T0);
    }
#define NAM__GEMM_ROW(o, R, r, cr0, cr1)                                                          \
    if ((R) > (r)) {                                                                              \
        av = _mm256_broadcast_ss(a + (o) * NAM__GEMM_MR + (r));                                   \
        cr0 = _mm256_fmadd_ps(av, b0, cr0);                                                       \
        cr1 = _mm256_fmadd_ps(av, b1, cr1);                                                       \
    }
#define NAM__GEMM_STEP(o, R)                                                                      \
    b0 = _mm256_loadu_ps(b + (o) * NAM__GEMM_NR);                                                 \
    b1 = _mm256_loadu_ps(b + (o) * NAM__GEMM_NR + 8);                                             \
    NAM__GEMM_ROW(o, R, 0, c00, c01) NAM__GEMM_ROW(o, R, 1, c10, c11) NAM__GEMM_ROW(o, R, 2, c20, c21) \
    NAM__GEMM_ROW(o, R, 3, c30, c31) NAM__GEMM_ROW(o, R, 4, c40, c41)
#define NAM__GEMM_KLOOP(R)                                                                        \
    for (p = 0; p + 4 <= kc; p += 4) {                                                            \
        NAM__GEMM_STEP(0, R) NAM__GEMM_STEP(1, R) NAM__GEMM_STEP(2, R) NAM__GEMM_STEP(3, R)       \
        a += 4 * NAM__GEMM_MR;                                                                    \
        b += 4 * NAM__GEMM_NR;                                                                    \
    }                                                                                             \
    for (; p < kc; p++) {                                                                         \
        NAM__GEMM_STEP(0, R)                                                                      \
        a += NAM__GEMM_MR;                                                                        \
        b += NAM__GEMM_NR;                                                                        \
    }
    switch (mr) {
    case 1: NAM__GEMM_KLOOP(1) break;
    case 2: NAM__GEMM_KLOOP(2) break;
    case 3: NAM__GEMM_KLOOP(3) break;
    case 4: NAM__GEMM_KLOOP(4) break;
    default: NAM__GEMM_KLOOP(5) break;
    }
#undef NAM__GEMM_KLOOP
#undef NAM__GEMM_STEP
#undef NAM__GEMM_ROW
    {
        float t[(NAM__GEMM_MR - 1) * NAM__GEMM_NR];
        _mm256_storeu_ps(t + 0 * 16, c00); _mm256_storeu_ps(t + 0 * 16 + 8, c01);
        _mm256_storeu_ps(t + 1 * 16, c10); _mm256_storeu_ps(t + 1 * 16 + 8, c11);
        _mm256_storeu_ps(t + 2 * 16, c20); _mm256_storeu_ps(t + 2 * 16 + 8, c21);
        _mm256_storeu_ps(t + 3 * 16, c30); _mm256_storeu_ps(t + 3 * 16 + 8, c31);
        _mm256_storeu_ps(t + 4 * 16, c40); _mm256_storeu_ps(t + 4 * 16 + 8, c41);
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

/* The blocked GEMM with an explicit choice of code (simd: 1 = AVX2+FMA packing and micro-
   kernel, only valid when nam__gemm_have_avx2(); 0 = portable). nam__sgemm picks simd from
   the CPU; tests call this for both paths. */
NAM__UNUSED static void nam__gemm_blocked(int m, int n, int k, const float *A, int64_t lda, const float *B, int64_t ldb, int transB,
                                          float beta, float *C, int64_t ldc, float *pack, int simd) {
    float *pa = pack, *pb = pack + nam__gemm_a_floats(m, k);
    int mcb = nam__gemm_block(m, NAM__GEMM_MC, NAM__GEMM_MR), kcb = nam__gemm_block(k, NAM__GEMM_KC, 8);
    int ncb = nam__gemm_block(n, NAM__GEMM_NC, NAM__GEMM_NR);
    int jc, pc, ic, jr, ir;
    nam__gemm_pf pfa;
#ifndef NAM__GEMM_X86
    (void)simd;
#endif
    for (jc = 0; jc < n; jc += ncb) {
        int nc = n - jc < ncb ? n - jc : ncb;
        for (pc = 0; pc < k; pc += kcb) {
            int kc = k - pc < kcb ? k - pc : kcb;
            int accumulate = pc > 0 || beta != 0.0f;
            int64_t col_tiles = (nc + NAM__GEMM_NR - 1) / NAM__GEMM_NR;
            /* transB = 1 packs each B panel just before its first use (the ic == 0 pass
               below), while it is hot; transB = 0 packs the block up front (row order). */
            if (!transB) nam__gemm_pack_bn(kc, nc, B + NAM__CAST(int64_t, pc) * ldb + jc, ldb, pb);
            for (ic = 0; ic < m; ic += mcb) {
                int mc = m - ic < mcb ? m - ic : mcb;
                /* the next A block: rows below this one, else the top rows of the next k slice */
                int in = ic + mc, pan = pc, kan = kc;
                if (in >= m) { in = 0; pan = pc + kc < k ? pc + kc : 0; kan = k - pan < kcb ? k - pan : kcb; }
                if (ic + mc < m || pc + kc < k || jc + nc < n)
                    nam__gemm_pf_init(&pfa, A + NAM__CAST(int64_t, in) * lda + pan, lda, m - in < mcb ? m - in : mcb, kan,
                                      NAM__CAST(int64_t, (mc + NAM__GEMM_MR - 1) / NAM__GEMM_MR) * col_tiles);
                else nam__gemm_pf_init(&pfa, A, lda, 0, 1, 1);
#ifdef NAM__GEMM_X86
                if (simd) nam__gemm_pack_a_avx2(mc, kc, A + NAM__CAST(int64_t, ic) * lda + pc, lda, pa);
                else
#endif
                    nam__gemm_pack_a(mc, kc, A + NAM__CAST(int64_t, ic) * lda + pc, lda, pa);
                for (jr = 0; jr < nc; jr += NAM__GEMM_NR) {
                    int nr = nc - jr < NAM__GEMM_NR ? nc - jr : NAM__GEMM_NR;
                    const float *bp = pb + NAM__CAST(size_t, jr) * NAM__CAST(size_t, kc);
                    if (transB && ic == 0) {
                        const float *bsrc = B + NAM__CAST(int64_t, jc) * ldb + pc;
#ifdef NAM__GEMM_X86
                        if (simd) nam__gemm_pack_bt_avx2(kc, nc, jr, jr + nr, bsrc, ldb, pb);
                        else
#endif
                            nam__gemm_pack_bt_ref(kc, nc, jr, jr + nr, bsrc, ldb, pb);
                    }
                    for (ir = 0; ir < mc; ir += NAM__GEMM_MR) {
                        int mr = mc - ir < NAM__GEMM_MR ? mc - ir : NAM__GEMM_MR;
                        const float *ap = pa + NAM__CAST(size_t, ir) * NAM__CAST(size_t, kc);
                        float *cp = C + NAM__CAST(int64_t, ic + ir) * ldc + jc + jr;
                        nam__gemm_pf_step(&pfa);
#ifdef NAM__GEMM_X86
                        if (simd && mr == NAM__GEMM_MR) nam__gemm_micro_avx2(kc, ap, bp, cp, ldc, mr, nr, accumulate);
                        else if (simd) nam__gemm_micro_avx2_rows(kc, ap, bp, cp, ldc, mr, nr, accumulate);
                        else
#endif
                            nam__gemm_micro_ref(kc, ap, bp, cp, ldc, mr, nr, accumulate);
                    }
                }
            }
        }
    }
}

/* C = beta*C + A * op(B), see the top of this section. Single-threaded, no allocation. */
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
