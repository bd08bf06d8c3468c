/* wip/nam_ssd.c - staged update of nam.h's >>kernel-ssd section: replace that section
   (from its ">>kernel-ssd" marker to the end of nam_conv1d) with everything below this comment. */
/* >>kernel-ssd ------------------------------------------------------------------------ */
/* Mamba-2 SSD chunked scan (nam_ssd), single-token decode (nam_ssd_step) and the causal
   depthwise conv1d of the Mamba block (nam_conv1d).

   NAM_BACKEND_CPU_REF is the sequential recurrence, in double, per (b, h, p):
       state[n] = exp(dt*A) * state[n] + dt * B[n] * x;  y = sum_n C[n] * state[n] + D * x.
   NAM_BACKEND_CPU (and AUTO) is the chunked SSD algorithm (Mamba-2, ssd_minimal), per
   chunk of Q tokens, with cum[i] the inclusive cumulative sum of dt*A inside the chunk
   (accumulated in double):
       Y     = diag(exp(cum)) * C * S^T  +  W * X,     W[i][j] = (C_i . B_j) exp(cum_i - cum_j) dt_j  (j <= i)
       S^T'  = exp(cum_last) * S^T  +  B^T * diag(dt_j exp(cum_last - cum_j)) * X
   Every exponent is a difference of cumulative sums inside one chunk taken in the causal
   direction, so it is <= 0 whenever A*dt <= 0: very negative A*dt underflows to 0, never
   overflows. When every A*dt of a chunk is <= 0, W's exponentials left of a 6-row panel
   are factored as exp(cum_i - cum_i0) exp(cum_i0 - cum_j) (both exponents still <= 0).
   Phase 1 (parallel over (b, g, chunk)) applies dt_bias / softplus / the dt limits and
   packs C, B^T and G = C B^T of each group once for all the group's heads. Phase 2
   (parallel over ranges of (b, h)) walks the chunks in order and, per chunk, every head of
   its range, so a chunk's packed panels stay in cache across heads; the range's states
   S^T (n x p) live in the workspace. Both matmuls run on one 6x16 register-tile kernel
   over packed panels (AVX2+FMA where the CPU has it, chosen at run time; portable C
   otherwise or under NAM_NO_SIMD). When out is f32 with unit step over p, p % 16 == 0 and
   there is no z, tiles are stored straight into out and D (h) rides on W's diagonal;
   otherwise rows go through a buffer (+ D x, * silu(z), dtype conversion). A NaN or inf in
   x can also reach up to 5 earlier outputs of its chunk and column (0 * NaN inside the
   masked intra-chunk matmul, as in Mamba's Triton kernels); later outputs are exact. */

#if !defined(NAM_NO_SIMD) && (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define NAM__SSD_X86 1
#include <immintrin.h>
#define NAM__SSD_AVX2 __attribute__((target("avx2,fma")))
#else
#define NAM__SSD_X86 0
#endif
#ifdef __cplusplus
#define NAM__SSD_RESTRICT __restrict
#else
#define NAM__SSD_RESTRICT restrict
#endif

#define NAM__SSD_MR 6             /* register tile: 6 rows x 16 columns */
#define NAM__SSD_NR 16
#define NAM__SSD_MAX_NUMEL (INT64_C(1) << 40)
#define NAM__SSD_MAX_DIM (INT64_C(1) << 24)   /* p, n, g, h: sizes of one head or group */

#if defined(__GNUC__) || defined(__clang__)
#define NAM__SSD_PREFETCH(addr, rw) __builtin_prefetch((addr), (rw), 2)
#else
#define NAM__SSD_PREFETCH(addr, rw) ((void)(addr))
#endif

NAM__UNUSED static int64_t nam__ssd_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }
NAM__UNUSED static int64_t nam__ssd_min(int64_t a, int64_t b) { return a < b ? a : b; }

NAM__UNUSED static int nam__ssd_have_avx2(void) {
#if NAM__SSD_X86
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

/* ---- register-tile kernel ------------------------------------------------------------
   t[6x16] = ((cin ? cs * cin : 0) + A1 B1) * diag(rs) + A2 B2; rows r < m of t are stored
   to c (row stride ldc). cin (same row stride as c) may equal c.
   A panels: 6 floats per k (a[k*6 + r]). B operands: rows of 16 floats, row k at b[k*ldb].
   rs (6 row scales) applies to the A1 B1 part only and may be NULL. */
typedef struct nam__ssd_tile {
    int64_t k1, ldb1, k2, ldb2, ldc;
    const float *a1, *b1, *rs, *a2, *b2, *cin;
    float cs;
    float *c;
    int m;
} nam__ssd_tile;

NAM__UNUSED static void nam__ssd_kern_c(const nam__ssd_tile *t) {
    const float *NAM__SSD_RESTRICT a1 = t->a1, *NAM__SSD_RESTRICT b1 = t->b1, *NAM__SSD_RESTRICT a2 = t->a2, *NAM__SSD_RESTRICT b2 = t->b2;
    float acc[NAM__SSD_MR][NAM__SSD_NR];
    int64_t k;
    int r, j;
    for (r = 0; r < NAM__SSD_MR; r++)
        for (j = 0; j < NAM__SSD_NR; j++) acc[r][j] = t->cin ? t->cs * t->cin[r * t->ldc + j] : 0.0f;
    for (k = 0; k < t->k1; k++)
        for (r = 0; r < NAM__SSD_MR; r++) {
            float a = a1[k * NAM__SSD_MR + r];
            const float *b = b1 + k * t->ldb1;
            for (j = 0; j < NAM__SSD_NR; j++) acc[r][j] += a * b[j];
        }
    if (t->rs && t->k1 > 0)
        for (r = 0; r < NAM__SSD_MR; r++)
            for (j = 0; j < NAM__SSD_NR; j++) acc[r][j] *= t->rs[r];
    for (k = 0; k < t->k2; k++)
        for (r = 0; r < NAM__SSD_MR; r++) {
            float a = a2[k * NAM__SSD_MR + r];
            const float *b = b2 + k * t->ldb2;
            for (j = 0; j < NAM__SSD_NR; j++) acc[r][j] += a * b[j];
        }
    for (r = 0; r < t->m; r++)
        for (j = 0; j < NAM__SSD_NR; j++) t->c[r * t->ldc + j] = acc[r][j];
}

/* W panel (6 rows i0.., K2 columns), a[j*6 + r] = G[i][j] exp(cum_i - cum_j) dt_j for j <= i
   (0 above the diagonal and in rows r >= m), plus dfold on the diagonal. */
NAM__UNUSED static void nam__ssd_wpanel_c(int64_t i0, int m, int64_t K2, const double *cum, const float *G, int64_t ldg,
                                          const float *dtc, float dfold, int mono, float *NAM__SSD_RESTRICT P) {
    int64_t j;
    int r;
    (void)mono;
    for (j = 0; j < K2; j++)
        for (r = 0; r < NAM__SSD_MR; r++) {
            int64_t i = i0 + r;
            float v = 0.0f;
            if (r < m && j <= i) v = G[i * ldg + j] * expf(NAM__CAST(float, cum[i] - cum[j])) * dtc[j] + (j == i ? dfold : 0.0f);
            P[j * NAM__SSD_MR + r] = v;
        }
}

NAM__UNUSED static void nam__ssd_exp_c(int64_t n, const float *x, float *y) {
    int64_t i;
    for (i = 0; i < n; i++) y[i] = expf(x[i]);
}
NAM__UNUSED static void nam__ssd_silu_mul_c(int64_t n, const float *z, float *y) {
    int64_t i;
    for (i = 0; i < n; i++) y[i] *= nam__silu(z[i]);
}
/* xp[c] = src[c] and xw[c] = wj * src[c] for c < p; both zero for p <= c < p16 */
NAM__UNUSED static void nam__ssd_pack_row_c(int64_t p, int64_t p16, const float *NAM__SSD_RESTRICT src, float wj,
                                            float *NAM__SSD_RESTRICT xp, float *NAM__SSD_RESTRICT xw) {
    int64_t c;
    for (c = 0; c < p; c++) { xp[c] = src[c]; xw[c] = wj * src[c]; }
    for (; c < p16; c++) xp[c] = xw[c] = 0.0f;
}
/* out[c] = y[c] + D[c] * x[c] */
NAM__UNUSED static void nam__ssd_axpy_c(int64_t n, const float *NAM__SSD_RESTRICT y, const float *NAM__SSD_RESTRICT D,
                                        const float *NAM__SSD_RESTRICT x, float *NAM__SSD_RESTRICT out) {
    int64_t c;
    for (c = 0; c < n; c++) out[c] = y[c] + D[c] * x[c];
}

/* out[k] = dt'(raw[k] + bias[k]) for k < n (see nam__ssd_dt) */
NAM__UNUSED static void nam__ssd_dt_row_c(int64_t n, const float *raw, const float *bias, int softplus, int limit, float lo, float hi, float *out) {
    int64_t k;
    for (k = 0; k < n; k++) {
        float v = raw[k] + bias[k];
        if (softplus) v = nam__softplus(v);
        if (limit) v = v < lo ? lo : v > hi ? hi : v;
        out[k] = v;
    }
}

#if NAM__SSD_X86
#if defined(__GNUC__) || defined(__clang__)
#define NAM__SSD_INLINE __attribute__((always_inline)) inline
#else
#define NAM__SSD_INLINE inline
#endif
#define NAM__SSD_FMA_ROW(r, a, bv0, bv1)                   \
    do {                                                   \
        __m256 av_ = _mm256_broadcast_ss(a);               \
        c##r##0 = _mm256_fmadd_ps(av_, bv0, c##r##0);      \
        c##r##1 = _mm256_fmadd_ps(av_, bv1, c##r##1);      \
    } while (0)
#define NAM__SSD_KSTEP(ap, bp)                                                  \
    do {                                                                        \
        __m256 b0_ = _mm256_loadu_ps(bp), b1_ = _mm256_loadu_ps((bp) + 8);      \
        NAM__SSD_FMA_ROW(0, (ap) + 0, b0_, b1_);                                \
        NAM__SSD_FMA_ROW(1, (ap) + 1, b0_, b1_);                                \
        NAM__SSD_FMA_ROW(2, (ap) + 2, b0_, b1_);                                \
        NAM__SSD_FMA_ROW(3, (ap) + 3, b0_, b1_);                                \
        NAM__SSD_FMA_ROW(4, (ap) + 4, b0_, b1_);                                \
        NAM__SSD_FMA_ROW(5, (ap) + 5, b0_, b1_);                                \
    } while (0)
#define NAM__SSD_KLOOP(K, A, Bp, LDB)                                                         \
    do {                                                                                      \
        const float *ap_ = (A), *bp_ = (Bp);                                                  \
        int64_t k_;                                                                           \
        for (k_ = 0; k_ + 1 < (K); k_ += 2, ap_ += 2 * NAM__SSD_MR, bp_ += 2 * (LDB)) {       \
            NAM__SSD_KSTEP(ap_, bp_);                                                         \
            NAM__SSD_KSTEP(ap_ + NAM__SSD_MR, bp_ + (LDB));                                   \
        }                                                                                     \
        if (k_ < (K)) NAM__SSD_KSTEP(ap_, bp_);                                               \
    } while (0)
NAM__SSD_AVX2 NAM__UNUSED static void nam__ssd_kern_avx2(const nam__ssd_tile *t) {
    __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    const float *cin = t->cin;
    float *c = t->c;
    int64_t ldc = t->ldc;
    if (cin) {
        __m256 s = _mm256_set1_ps(t->cs);
        c00 = _mm256_mul_ps(s, _mm256_loadu_ps(cin + 0 * ldc)); c01 = _mm256_mul_ps(s, _mm256_loadu_ps(cin + 0 * ldc + 8));
        c10 = _mm256_mul_ps(s, _mm256_loadu_ps(cin + 1 * ldc)); c11 = _mm256_mul_ps(s, _mm256_loadu_ps(cin + 1 * ldc + 8));
        c20 = _mm256_mul_ps(s, _mm256_loadu_ps(cin + 2 * ldc)); c21 = _mm256_mul_ps(s, _mm256_loadu_ps(cin + 2 * ldc + 8));
        c30 = _mm256_mul_ps(s, _mm256_loadu_ps(cin + 3 * ldc)); c31 = _mm256_mul_ps(s, _mm256_loadu_ps(cin + 3 * ldc + 8));
        c40 = _mm256_mul_ps(s, _mm256_loadu_ps(cin + 4 * ldc)); c41 = _mm256_mul_ps(s, _mm256_loadu_ps(cin + 4 * ldc + 8));
        c50 = _mm256_mul_ps(s, _mm256_loadu_ps(cin + 5 * ldc)); c51 = _mm256_mul_ps(s, _mm256_loadu_ps(cin + 5 * ldc + 8));
    } else {
        c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
    }
    NAM__SSD_KLOOP(t->k1, t->a1, t->b1, t->ldb1);
    if (t->rs && t->k1 > 0) {
        const float *rs = t->rs;
        __m256 s;
        s = _mm256_broadcast_ss(rs + 0); c00 = _mm256_mul_ps(c00, s); c01 = _mm256_mul_ps(c01, s);
        s = _mm256_broadcast_ss(rs + 1); c10 = _mm256_mul_ps(c10, s); c11 = _mm256_mul_ps(c11, s);
        s = _mm256_broadcast_ss(rs + 2); c20 = _mm256_mul_ps(c20, s); c21 = _mm256_mul_ps(c21, s);
        s = _mm256_broadcast_ss(rs + 3); c30 = _mm256_mul_ps(c30, s); c31 = _mm256_mul_ps(c31, s);
        s = _mm256_broadcast_ss(rs + 4); c40 = _mm256_mul_ps(c40, s); c41 = _mm256_mul_ps(c41, s);
        s = _mm256_broadcast_ss(rs + 5); c50 = _mm256_mul_ps(c50, s); c51 = _mm256_mul_ps(c51, s);
    }
    NAM__SSD_KLOOP(t->k2, t->a2, t->b2, t->ldb2);
    _mm256_storeu_ps(c + 0 * ldc, c00); _mm256_storeu_ps(c + 0 * ldc + 8, c01);
    if (t->m > 1) { _mm256_storeu_ps(c + 1 * ldc, c10); _mm256_storeu_ps(c + 1 * ldc + 8, c11); }
    if (t->m > 2) { _mm256_storeu_ps(c + 2 * ldc, c20); _mm256_storeu_ps(c + 2 * ldc + 8, c21); }
    if (t->m > 3) { _mm256_storeu_ps(c + 3 * ldc, c30); _mm256_storeu_ps(c + 3 * ldc + 8, c31); }
    if (t->m > 4) { _mm256_storeu_ps(c + 4 * ldc, c40); _mm256_storeu_ps(c + 4 * ldc + 8, c41); }
    if (t->m > 5) { _mm256_storeu_ps(c + 5 * ldc, c50); _mm256_storeu_ps(c + 5 * ldc + 8, c51); }
}

/* 8-lane e^x (Cephes-style: 2^round(x log2 e) times a degree-6 polynomial; ~2 ulp).
   NaN propagates, x > 88.72 gives inf, x < -87.33 gives exactly 0. */
NAM__SSD_AVX2 NAM__UNUSED static NAM__SSD_INLINE __m256 nam__ssd_exp8(__m256 x) {
    const __m256 hi = _mm256_set1_ps(88.3762626647949f), lo = _mm256_set1_ps(-87.3365478515625f);
    __m256 xc = _mm256_min_ps(hi, _mm256_max_ps(lo, x));          /* operand order keeps NaN */
    __m256 fx = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), xc);
    __m256 pl, y, big;
    __m256i e;
    r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
    pl = _mm256_set1_ps(1.9875691500e-4f);
    pl = _mm256_fmadd_ps(pl, r, _mm256_set1_ps(1.3981999507e-3f));
    pl = _mm256_fmadd_ps(pl, r, _mm256_set1_ps(8.3334519073e-3f));
    pl = _mm256_fmadd_ps(pl, r, _mm256_set1_ps(4.1665795894e-2f));
    pl = _mm256_fmadd_ps(pl, r, _mm256_set1_ps(1.6666665459e-1f));
    pl = _mm256_fmadd_ps(pl, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(_mm256_mul_ps(pl, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
    y = _mm256_andnot_ps(_mm256_cmp_ps(x, lo, _CMP_LT_OQ), y);     /* underflow -> 0 */
    big = _mm256_cmp_ps(x, _mm256_set1_ps(88.72283935546875f), _CMP_GT_OQ);
    return _mm256_blendv_ps(y, _mm256_set1_ps(HUGE_VALF), big);
}

/* 8-lane natural log of positive normal floats (Cephes logf: mantissa in [sqrt(1/2), sqrt(2)),
   degree-8 polynomial; ~1 ulp). Used on [1, 2] only (softplus). */
NAM__SSD_AVX2 NAM__UNUSED static NAM__SSD_INLINE __m256 nam__ssd_log8(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256i xi = _mm256_castps_si256(x);
    __m256 e = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(xi, 23), _mm256_set1_epi32(126)));
    __m256 m = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(xi, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x3f000000)));
    __m256 small = _mm256_cmp_ps(m, _mm256_set1_ps(0.707106781186547524f), _CMP_LT_OQ), z, y;
    e = _mm256_sub_ps(e, _mm256_and_ps(one, small));
    m = _mm256_add_ps(_mm256_sub_ps(m, one), _mm256_and_ps(m, small));     /* 2m - 1 or m - 1 */
    z = _mm256_mul_ps(m, m);
    y = _mm256_set1_ps(7.0376836292e-2f);
    y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-1.1514610310e-1f));
    y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(1.1676998740e-1f));
    y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-1.2420140846e-1f));
    y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(1.4249322787e-1f));
    y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-1.6668057665e-1f));
    y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(2.0000714765e-1f));
    y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-2.4999993993e-1f));
    y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(3.3333331174e-1f));
    y = _mm256_mul_ps(_mm256_mul_ps(y, m), z);
    y = _mm256_fmadd_ps(e, _mm256_set1_ps(-2.12194440e-4f), y);
    y = _mm256_fnmadd_ps(z, _mm256_set1_ps(0.5f), y);
    return _mm256_fmadd_ps(e, _mm256_set1_ps(0.693359375f), _mm256_add_ps(m, y));
}

/* dt' rows: softplus(v) = max(v, 0) + log1p(exp(-|v|)) (v for v > 20, as nam__softplus), with
   log1p(u) = log(1 + u) * u / ((1 + u) - 1) so tiny u keep their digits; NaN stays NaN. */
NAM__SSD_AVX2 NAM__UNUSED static void nam__ssd_dt_row_avx2(int64_t n, const float *raw, const float *bias, int softplus, int limit, float lo, float hi, float *out) {
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps(), l8 = _mm256_set1_ps(lo), h8 = _mm256_set1_ps(hi);
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    int64_t k;
    for (k = 0; k + 8 <= n; k += 8) {
        __m256 v = _mm256_add_ps(_mm256_loadu_ps(raw + k), _mm256_loadu_ps(bias + k));
        if (softplus) {
            __m256 u = nam__ssd_exp8(_mm256_sub_ps(zero, _mm256_and_ps(v, absmask))), w = _mm256_add_ps(one, u);
            __m256 lp = _mm256_mul_ps(nam__ssd_log8(w), _mm256_div_ps(u, _mm256_sub_ps(w, one)));
            __m256 sp;
            lp = _mm256_blendv_ps(lp, u, _mm256_cmp_ps(w, one, _CMP_EQ_OQ));
            sp = _mm256_add_ps(_mm256_max_ps(zero, v), lp);                  /* max(0, NaN) = NaN */
            v = _mm256_blendv_ps(sp, v, _mm256_cmp_ps(v, _mm256_set1_ps(20.0f), _CMP_GT_OQ));
        }
        if (limit) {
            v = _mm256_blendv_ps(v, l8, _mm256_cmp_ps(v, l8, _CMP_LT_OQ));
            v = _mm256_blendv_ps(v, h8, _mm256_cmp_ps(v, h8, _CMP_GT_OQ));
        }
        _mm256_storeu_ps(out + k, v);
    }
    nam__ssd_dt_row_c(n - k, raw + k, bias + k, softplus, limit, lo, hi, out + k);
}

NAM__SSD_AVX2 NAM__UNUSED static void nam__ssd_exp_avx2(int64_t n, const float *x, float *y) {
    int64_t i;
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, nam__ssd_exp8(_mm256_loadu_ps(x + i)));
    for (; i < n; i++) y[i] = expf(x[i]);
}

/* The W panel of nam__ssd_wpanel_c, 8 columns at a time: six 8-lane rows, then an 8x8
   transpose whose columns are stored 6 floats apart (each store's 2 spare lanes are
   overwritten by the next; P needs 8 floats of slack past column K2 rounded up to 8).
   cum, dtc and the G rows must be readable up to K2 rounded up to 8. */
NAM__SSD_AVX2 NAM__UNUSED static void nam__ssd_wpanel_avx2(int64_t i0, int m, int64_t K2, const double *cum, const float *G, int64_t ldg,
                                                           const float *dtc, float dfold, int mono, float *P) {
    const __m256 iota = _mm256_set_ps(7, 6, 5, 4, 3, 2, 1, 0), zero = _mm256_setzero_ps(), dv = _mm256_set1_ps(dfold);
    float u[8];
    int64_t j0;
    int r;
    /* mono (every A*dt of the chunk <= 0): exp(cum_i - cum_j) = exp(cum_i - cum_i0) exp(cum_i0 - cum_j),
       both exponents <= 0, for the column blocks left of row i0 (one exp per column, not per element) */
    if (mono)
        for (r = 0; r < 8; r++) u[r] = r < m ? expf(NAM__CAST(float, cum[i0 + r] - cum[i0])) : 0.0f;
    for (j0 = 0; j0 < K2; j0 += 8) {
        __m256 row[8], t0, t1, t2, t3, t4, t5, t6, t7, s0, s1, s2, s3, s4, s5, s6, s7;
        __m256 jv = _mm256_add_ps(_mm256_set1_ps(NAM__CAST(float, j0)), iota), dt8 = _mm256_loadu_ps(dtc + j0);
        __m256d cj0 = _mm256_loadu_pd(cum + j0), cj1 = _mm256_loadu_pd(cum + j0 + 4);
        if (mono && j0 + 8 <= i0 + 1) {
            __m256d ci = _mm256_set1_pd(cum[i0]);
            __m128 lo4 = _mm256_cvtpd_ps(_mm256_sub_pd(ci, cj0)), hi4 = _mm256_cvtpd_ps(_mm256_sub_pd(ci, cj1));
            __m256 vd = _mm256_mul_ps(nam__ssd_exp8(_mm256_insertf128_ps(_mm256_castps128_ps256(lo4), hi4, 1)), dt8);
            for (r = 0; r < NAM__SSD_MR; r++)
                row[r] = _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(G + (i0 + r) * ldg + j0), vd), _mm256_broadcast_ss(u + r));
        } else for (r = 0; r < NAM__SSD_MR; r++) {
            int64_t i = i0 + r;
            if (r < m && j0 <= i) {
                __m256d ci = _mm256_set1_pd(cum[i]);
                __m128 lo4 = _mm256_cvtpd_ps(_mm256_sub_pd(ci, cj0)), hi4 = _mm256_cvtpd_ps(_mm256_sub_pd(ci, cj1));
                __m256 v = nam__ssd_exp8(_mm256_insertf128_ps(_mm256_castps128_ps256(lo4), hi4, 1));
                __m256 iv = _mm256_set1_ps(NAM__CAST(float, i));
                v = _mm256_mul_ps(_mm256_mul_ps(v, _mm256_loadu_ps(G + i * ldg + j0)), dt8);
                v = _mm256_blendv_ps(v, zero, _mm256_cmp_ps(jv, iv, _CMP_GT_OQ));
                row[r] = _mm256_add_ps(v, _mm256_and_ps(dv, _mm256_cmp_ps(jv, iv, _CMP_EQ_OQ)));
            } else {
                row[r] = zero;
            }
        }
        row[6] = row[7] = zero;
        t0 = _mm256_unpacklo_ps(row[0], row[1]); t1 = _mm256_unpackhi_ps(row[0], row[1]);
        t2 = _mm256_unpacklo_ps(row[2], row[3]); t3 = _mm256_unpackhi_ps(row[2], row[3]);
        t4 = _mm256_unpacklo_ps(row[4], row[5]); t5 = _mm256_unpackhi_ps(row[4], row[5]);
        t6 = _mm256_unpacklo_ps(row[6], row[7]); t7 = _mm256_unpackhi_ps(row[6], row[7]);
        s0 = _mm256_shuffle_ps(t0, t2, 0x44); s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
        s2 = _mm256_shuffle_ps(t1, t3, 0x44); s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
        s4 = _mm256_shuffle_ps(t4, t6, 0x44); s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
        s6 = _mm256_shuffle_ps(t5, t7, 0x44); s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
        _mm256_storeu_ps(P + (j0 + 0) * NAM__SSD_MR, _mm256_permute2f128_ps(s0, s4, 0x20));
        _mm256_storeu_ps(P + (j0 + 1) * NAM__SSD_MR, _mm256_permute2f128_ps(s1, s5, 0x20));
        _mm256_storeu_ps(P + (j0 + 2) * NAM__SSD_MR, _mm256_permute2f128_ps(s2, s6, 0x20));
        _mm256_storeu_ps(P + (j0 + 3) * NAM__SSD_MR, _mm256_permute2f128_ps(s3, s7, 0x20));
        _mm256_storeu_ps(P + (j0 + 4) * NAM__SSD_MR, _mm256_permute2f128_ps(s0, s4, 0x31));
        _mm256_storeu_ps(P + (j0 + 5) * NAM__SSD_MR, _mm256_permute2f128_ps(s1, s5, 0x31));
        _mm256_storeu_ps(P + (j0 + 6) * NAM__SSD_MR, _mm256_permute2f128_ps(s2, s6, 0x31));
        _mm256_storeu_ps(P + (j0 + 7) * NAM__SSD_MR, _mm256_permute2f128_ps(s3, s7, 0x31));
    }
}

/* y[i] *= silu(z[i]) */
NAM__SSD_AVX2 NAM__UNUSED static void nam__ssd_silu_mul_avx2(int64_t n, const float *z, float *y) {
    int64_t i;
    const __m256 one = _mm256_set1_ps(1.0f);
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 zv = _mm256_loadu_ps(z + i);
        __m256 s = _mm256_div_ps(zv, _mm256_add_ps(one, nam__ssd_exp8(_mm256_sub_ps(_mm256_setzero_ps(), zv))));
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), s));
    }
    for (; i < n; i++) y[i] *= nam__silu(z[i]);
}

NAM__SSD_AVX2 NAM__UNUSED static void nam__ssd_pack_row_avx2(int64_t p, int64_t p16, const float *src, float wj, float *xp, float *xw) {
    __m256 w8 = _mm256_set1_ps(wj);
    int64_t c;
    for (c = 0; c + 8 <= p; c += 8) {
        __m256 v = _mm256_loadu_ps(src + c);
        _mm256_storeu_ps(xp + c, v);
        _mm256_storeu_ps(xw + c, _mm256_mul_ps(w8, v));
    }
    for (; c < p; c++) { xp[c] = src[c]; xw[c] = wj * src[c]; }
    for (; c < p16; c++) xp[c] = xw[c] = 0.0f;
}

NAM__SSD_AVX2 NAM__UNUSED static void nam__ssd_axpy_avx2(int64_t n, const float *y, const float *D, const float *x, float *out) {
    int64_t c;
    for (c = 0; c + 8 <= n; c += 8)
        _mm256_storeu_ps(out + c, _mm256_fmadd_ps(_mm256_loadu_ps(D + c), _mm256_loadu_ps(x + c), _mm256_loadu_ps(y + c)));
    for (; c < n; c++) out[c] = y[c] + D[c] * x[c];
}
#endif /* NAM__SSD_X86 */

/* The vector primitives of the fast path: AVX2+FMA or portable C, chosen once per call. */
typedef struct nam__ssd_ops {
    void (*kern)(const nam__ssd_tile *);
    void (*wpanel)(int64_t, int, int64_t, const double *, const float *, int64_t, const float *, float, int, float *);
    void (*vexp)(int64_t, const float *, float *);
    void (*silu_mul)(int64_t, const float *, float *);
    void (*pack_row)(int64_t, int64_t, const float *, float, float *, float *);
    void (*axpy)(int64_t, const float *, const float *, const float *, float *);
    void (*dt_row)(int64_t, const float *, const float *, int, int, float, float, float *);
} nam__ssd_ops;

NAM__UNUSED static void nam__ssd_pick_ops(nam__ssd_ops *o) {
    o->kern = nam__ssd_kern_c; o->wpanel = nam__ssd_wpanel_c; o->vexp = nam__ssd_exp_c;
    o->silu_mul = nam__ssd_silu_mul_c; o->pack_row = nam__ssd_pack_row_c; o->axpy = nam__ssd_axpy_c; o->dt_row = nam__ssd_dt_row_c;
#if NAM__SSD_X86
    if (nam__ssd_have_avx2()) {
        o->kern = nam__ssd_kern_avx2; o->wpanel = nam__ssd_wpanel_avx2; o->vexp = nam__ssd_exp_avx2;
        o->silu_mul = nam__ssd_silu_mul_avx2; o->pack_row = nam__ssd_pack_row_avx2; o->axpy = nam__ssd_axpy_avx2; o->dt_row = nam__ssd_dt_row_avx2;
    }
#endif
}


/* ---- small helpers ------------------------------------------------------------------ */
/* dt' = dt + bias (already added); softplus when asked; clamp to [lo, hi] when a limit is set. NaN stays NaN. */
NAM__UNUSED static double nam__ssd_dt_d(double v, int softplus, int limit, double lo, double hi) {
    if (softplus) v = v <= 20.0 ? log1p(exp(v)) : v;
    if (limit) v = v < lo ? lo : v > hi ? hi : v;
    return v;
}

/* `count` floats of t from element `off`, element step `es`: a pointer into t's data when
   it is f32 with unit step, else converted into tmp. */
NAM__UNUSED static const float *nam__ssd_row(const nam_tensor *t, int64_t off, int64_t es, int64_t count, float *tmp) {
    int64_t i;
    if (t->dtype == NAM_F32 && es == 1) return NAM__CAST(const float *, t->data) + off;
    for (i = 0; i < count; i++) tmp[i] = nam__load(t->data, t->dtype, off + i * es);
    return tmp;
}
NAM__UNUSED static void nam__ssd_row_store(nam_tensor *t, int64_t off, int64_t es, int64_t count, const float *src) {
    int64_t i;
    if (t->dtype == NAM_F32 && es == 1) {
        float *dst = NAM__CAST(float *, t->data) + off;
        if (dst != src) memcpy(dst, src, sizeof(float) * NAM__CAST(size_t, count));
        return;
    }
    for (i = 0; i < count; i++) nam__store(t->data, t->dtype, off + i * es, src[i]);
}

NAM__UNUSED static nam_status nam__ssd_f32(const nam_tensor *t, const char *field, nam_error *err) {
    if (t->data && t->dtype != NAM_F32)
        return nam__err(err, NAM_ERR_INVALID_ARG, "%s: dtype %s, expected f32", field, nam_dtype_name(t->dtype));
    return NAM_OK;
}

NAM__UNUSED static nam_status nam__ssd_numel(const nam_tensor *t, const char *field, nam_error *err) {
    int64_t n = 1;
    int i;
    if (!t->data) return NAM_OK;
    for (i = 0; i < t->ndim; i++) {
        if (t->shape[i] > NAM__SSD_MAX_NUMEL / n)
            return nam__err(err, NAM_ERR_LIMIT, "%s has more than 2^40 elements", field);
        n *= t->shape[i];
    }
    return NAM_OK;
}

/* dims (b, l, h, p, g, n) and the options shared by nam_ssd and its workspace query. */
typedef struct nam__ssd_dims {
    int64_t b, l, h, p, g, n;
    int Q;
    nam_backend be;
} nam__ssd_dims;

#define NAM__SSD_TRY(call)                  \
    do {                                    \
        nam_status st_ = (call);            \
        if (st_ != NAM_OK) return st_;      \
    } while (0)

NAM__UNUSED static nam_status nam__ssd_check_dt_opts(int softplus, float dt_min, float dt_max, nam_error *err) {
    (void)softplus;
    if (dt_min != dt_min || dt_max != dt_max) return nam__err(err, NAM_ERR_INVALID_ARG, "dt_min / dt_max is NaN");
    if (dt_min == HUGE_VALF || dt_min == -HUGE_VALF) return nam__err(err, NAM_ERR_RANGE, "dt_min = %g is not finite", NAM__CAST(double, dt_min));
    if (dt_max != 0.0f && dt_max < dt_min)
        return nam__err(err, NAM_ERR_RANGE, "dt_max = %g is below dt_min = %g (dt_max 0 means no upper limit)",
                        NAM__CAST(double, dt_max), NAM__CAST(double, dt_min));
    return NAM_OK;
}

/* D: (h) or (h, p). */
NAM__UNUSED static nam_status nam__ssd_check_D(const nam_tensor *D, int64_t h, int64_t p, const char *hfrom, const char *pfrom, nam_error *err) {
    if (!D->data) return NAM_OK;
    if (D->ndim == 1) {
        NAM__SSD_TRY(nam__tensor_basic(D, "D", 1, "h", 1, err));
        return nam__tensor_dim(D, "D", 0, "h", h, hfrom, err);
    }
    if (D->ndim == 2) {
        NAM__SSD_TRY(nam__tensor_basic(D, "D", 2, "h,p", 1, err));
        NAM__SSD_TRY(nam__tensor_dim(D, "D", 0, "h", h, hfrom, err));
        return nam__tensor_dim(D, "D", 1, "p", p, pfrom, err);
    }
    NAM__SSD_TRY(nam__tensor_basic(D, "D", D->ndim, "h", 1, err));   /* device / dtype first */
    return nam__err(err, NAM_ERR_INVALID_ARG, "D: %d dimensions, expected 1 (h) or 2 (h,p)", D->ndim);
}

NAM__UNUSED static nam_status nam__ssd_validate(const nam_ssd_desc *d, nam__ssd_dims *o, nam_error *err) {
    int64_t b, l, h, p, g, n;
    if (!d) return nam__err(err, NAM_ERR_INVALID_ARG, "desc is NULL");
    NAM__SSD_TRY(nam_query_backend(d->backend, d->x.device, &o->be, err));
    NAM__SSD_TRY(nam__tensor_basic(&d->x, "x", 4, "b,l,h,p", 0, err));
    NAM__SSD_TRY(nam__ssd_numel(&d->x, "x", err));
    b = d->x.shape[0]; l = d->x.shape[1]; h = d->x.shape[2]; p = d->x.shape[3];
    if (h > NAM__SSD_MAX_DIM || p > NAM__SSD_MAX_DIM)
        return nam__err(err, NAM_ERR_LIMIT, "x: h = %lld, p = %lld; each must be at most 2^24", NAM__CAST(long long, h), NAM__CAST(long long, p));
    NAM__SSD_TRY(nam__tensor_basic(&d->dt, "dt", 3, "b,l,h", 0, err));
    NAM__SSD_TRY(nam__tensor_dim(&d->dt, "dt", 0, "b", b, "x.shape[0]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->dt, "dt", 1, "l", l, "x.shape[1]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->dt, "dt", 2, "h", h, "x.shape[2]", err));
    NAM__SSD_TRY(nam__tensor_basic(&d->A, "A", 1, "h", 0, err));
    NAM__SSD_TRY(nam__ssd_f32(&d->A, "A", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->A, "A", 0, "h", h, "x.shape[2]", err));
    NAM__SSD_TRY(nam__tensor_basic(&d->B, "B", 4, "b,l,g,n", 0, err));
    NAM__SSD_TRY(nam__ssd_numel(&d->B, "B", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->B, "B", 0, "b", b, "x.shape[0]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->B, "B", 1, "l", l, "x.shape[1]", err));
    g = d->B.shape[2]; n = d->B.shape[3];
    if (h % g != 0)
        return nam__err(err, NAM_ERR_INVALID_ARG, "B.shape[2] (g) = %lld does not divide x.shape[2] (h) = %lld",
                        NAM__CAST(long long, g), NAM__CAST(long long, h));
    if (n > NAM__SSD_MAX_DIM)
        return nam__err(err, NAM_ERR_LIMIT, "B.shape[3] (n) = %lld is above 2^24", NAM__CAST(long long, n));
    NAM__SSD_TRY(nam__tensor_basic(&d->C, "C", 4, "b,l,g,n", 0, err));
    NAM__SSD_TRY(nam__tensor_dim(&d->C, "C", 0, "b", b, "x.shape[0]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->C, "C", 1, "l", l, "x.shape[1]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->C, "C", 2, "g", g, "B.shape[2]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->C, "C", 3, "n", n, "B.shape[3]", err));
    NAM__SSD_TRY(nam__ssd_check_D(&d->D, h, p, "x.shape[2]", "x.shape[3]", err));
    NAM__SSD_TRY(nam__tensor_basic(&d->z, "z", 4, "b,l,h,p", 1, err));
    if (d->z.data) {
        NAM__SSD_TRY(nam__tensor_dim(&d->z, "z", 0, "b", b, "x.shape[0]", err));
        NAM__SSD_TRY(nam__tensor_dim(&d->z, "z", 1, "l", l, "x.shape[1]", err));
        NAM__SSD_TRY(nam__tensor_dim(&d->z, "z", 2, "h", h, "x.shape[2]", err));
        NAM__SSD_TRY(nam__tensor_dim(&d->z, "z", 3, "p", p, "x.shape[3]", err));
    }
    NAM__SSD_TRY(nam__tensor_basic(&d->dt_bias, "dt_bias", 1, "h", 1, err));
    if (d->dt_bias.data) NAM__SSD_TRY(nam__tensor_dim(&d->dt_bias, "dt_bias", 0, "h", h, "x.shape[2]", err));
    NAM__SSD_TRY(nam__tensor_basic(&d->initial_states, "initial_states", 4, "b,h,p,n", 1, err));
    if (d->initial_states.data) {
        NAM__SSD_TRY(nam__ssd_f32(&d->initial_states, "initial_states", err));
        NAM__SSD_TRY(nam__tensor_dim(&d->initial_states, "initial_states", 0, "b", b, "x.shape[0]", err));
        NAM__SSD_TRY(nam__tensor_dim(&d->initial_states, "initial_states", 1, "h", h, "x.shape[2]", err));
        NAM__SSD_TRY(nam__tensor_dim(&d->initial_states, "initial_states", 2, "p", p, "x.shape[3]", err));
        NAM__SSD_TRY(nam__tensor_dim(&d->initial_states, "initial_states", 3, "n", n, "B.shape[3]", err));
    }
    NAM__SSD_TRY(nam__tensor_basic(&d->out, "out", 4, "b,l,h,p", 0, err));
    NAM__SSD_TRY(nam__tensor_dim(&d->out, "out", 0, "b", b, "x.shape[0]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->out, "out", 1, "l", l, "x.shape[1]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->out, "out", 2, "h", h, "x.shape[2]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->out, "out", 3, "p", p, "x.shape[3]", err));
    NAM__SSD_TRY(nam__tensor_basic(&d->final_states, "final_states", 4, "b,h,p,n", 1, err));
    if (d->final_states.data) {
        NAM__SSD_TRY(nam__ssd_f32(&d->final_states, "final_states", err));
        NAM__SSD_TRY(nam__tensor_dim(&d->final_states, "final_states", 0, "b", b, "x.shape[0]", err));
        NAM__SSD_TRY(nam__tensor_dim(&d->final_states, "final_states", 1, "h", h, "x.shape[2]", err));
        NAM__SSD_TRY(nam__tensor_dim(&d->final_states, "final_states", 2, "p", p, "x.shape[3]", err));
        NAM__SSD_TRY(nam__tensor_dim(&d->final_states, "final_states", 3, "n", n, "B.shape[3]", err));
        NAM__SSD_TRY(nam__ssd_numel(&d->final_states, "final_states", err));
    }
    if (d->chunk_size < 0 || d->chunk_size > 4096)
        return nam__err(err, NAM_ERR_RANGE, "chunk_size = %d is out of range (1..4096; 0 means 64)", d->chunk_size);
    NAM__SSD_TRY(nam__ssd_check_dt_opts(d->dt_softplus, d->dt_min, d->dt_max, err));
    o->b = b; o->l = l; o->h = h; o->p = p; o->g = g; o->n = n;
    o->Q = d->chunk_size ? d->chunk_size : 64;
    return NAM_OK;
}

/* ---- workspace layout of the fast path ----------------------------------------------- */
typedef struct nam__ssd_layout {
    int64_t Q, Q6, Q16, Qv, n6, p16, nck;
    int64_t cp_sz, btp_sz, g_sz;        /* floats per (b, g, chunk) */
    size_t off_dt, off_A, off_bias, off_D, off_B, off_C, off_cp, off_btp, off_g, off_slab;
    size_t slab_bytes, total;
    /* offsets inside one thread's slab */
    size_t s_xp, s_xw, s_wp, s_s, s_y, s_cum, s_e, s_w, s_dtc, s_tmp, s_row, s_zrow, s_orow, s_bn;
    int slabs;
} nam__ssd_layout;

NAM__UNUSED static size_t nam__ssd_f(int64_t nfloats) { return nam__ws_need(sizeof(float) * NAM__CAST(size_t, nfloats)); }

/* copy_b / copy_c: B / C are not contiguous f32, so phase 1 reads f32 copies in the workspace. */
NAM__UNUSED static void nam__ssd_plan(const nam__ssd_dims *dm, int threads, int copy_b, int copy_c, nam__ssd_layout *L) {
    int64_t b = dm->b, l = dm->l, h = dm->h, p = dm->p, g = dm->g, n = dm->n, tasks;
    size_t o = 0, s = 0;
    L->Q = dm->Q;
    L->Q6 = nam__ssd_up(L->Q, NAM__SSD_MR);
    L->Q16 = nam__ssd_up(L->Q, NAM__SSD_NR);
    L->Qv = (L->Q6 > L->Q16 ? L->Q6 : L->Q16) + 8;
    L->n6 = nam__ssd_up(n, NAM__SSD_MR);
    L->p16 = nam__ssd_up(p, NAM__SSD_NR);
    L->nck = (l + L->Q - 1) / L->Q;
    L->cp_sz = L->Q6 * n;
    L->btp_sz = L->n6 * L->Q;
    L->g_sz = L->Q6 * L->Q16;
    L->off_dt = o; o += nam__ssd_f(b * l * h);
    L->off_A = o; o += nam__ssd_f(h);
    L->off_bias = o; o += nam__ssd_f(h);
    L->off_D = o; o += nam__ssd_f(h * p);
    L->off_B = o; o += copy_b ? nam__ssd_f(b * l * g * n) : 0;
    L->off_C = o; o += copy_c ? nam__ssd_f(b * l * g * n) : 0;
    L->off_cp = o; o += nam__ssd_f(b * g * L->nck * L->cp_sz);
    L->off_btp = o; o += nam__ssd_f(b * g * L->nck * L->btp_sz);
    L->off_g = o; o += nam__ssd_f(b * g * L->nck * L->g_sz);
    L->off_slab = o;
    L->s_xp = s; s += nam__ssd_f(L->Q * L->p16);
    L->s_xw = s; s += nam__ssd_f(L->Q * L->p16);
    L->s_wp = s; s += nam__ssd_f(L->Q6 * L->Q + 64);          /* + slack of the W panel stores */
    tasks = (b * h + (threads < b * h ? threads : b * h) - 1) / (threads < b * h ? threads : b * h);
    L->s_s = s; s += nam__ssd_f(tasks * L->n6 * L->p16);       /* the states of a thread's (b, h) range */
    L->s_y = s; s += nam__ssd_f(L->Q6 * L->p16);
    L->s_cum = s; s += nam__ssd_f(2 * L->Qv);                 /* doubles */
    L->s_e = s; s += nam__ssd_f(L->Qv);
    L->s_w = s; s += nam__ssd_f(L->Qv);
    L->s_dtc = s; s += nam__ssd_f(L->Qv);
    L->s_tmp = s; s += nam__ssd_f(L->Qv);
    L->s_row = s; s += nam__ssd_f(L->p16);
    L->s_zrow = s; s += nam__ssd_f(L->p16);
    L->s_orow = s; s += nam__ssd_f(L->p16);
    L->s_bn = s; s += nam__ssd_f(L->Q16 * n);
    L->slab_bytes = s;
    tasks = b * h > b * g * L->nck ? b * h : b * g * L->nck;
    L->slabs = threads < tasks ? threads : NAM__CAST(int, tasks);
    if (L->slabs < 1) L->slabs = 1;
    L->total = o + NAM__CAST(size_t, L->slabs) * s;
}

NAM__DEF nam_status nam_ssd_workspace_size(const nam_ssd_desc *d, size_t *bytes, nam_error *err) {
    nam__ssd_dims dm;
    nam__ssd_layout L;
    nam_status st;
    memset(&dm, 0, sizeof dm);
    if (!bytes) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_ssd_workspace_size: bytes is NULL");
    *bytes = 0;
    st = nam__ssd_validate(d, &dm, err);
    if (st != NAM_OK) { nam__err_prefix(err, "nam_ssd_workspace_size: "); return st; }
    if (dm.be == NAM_BACKEND_CPU_REF) *bytes = nam__ws_need(sizeof(double) * NAM__CAST(size_t, dm.n));
    else {
        nam__ssd_plan(&dm, nam__resolve_threads(d->threads), !nam__tensor_is_contig_f32(&d->B), !nam__tensor_is_contig_f32(&d->C), &L);
        *bytes = L.total;
    }
    if (err) nam__err_reset(err);
    return NAM_OK;
}


/* ---- reference: the sequential recurrence in double ---------------------------------- */
static void nam__ssd_ref(nam_ssd_desc *d, const nam__ssd_dims *dm, double *st) {
    int64_t xs[4], dts[4], As[4], Bs[4], Cs[4], Ds[4], zs[4], bs[4], is[4], os[4], fs[4];
    int64_t bi, hi, pi, t, k, hpg = dm->h / dm->g;
    int limit = d->dt_min != 0.0f || d->dt_max != 0.0f;
    double lo = d->dt_min, hi_lim = d->dt_max > 0.0f ? NAM__CAST(double, d->dt_max) : HUGE_VAL;
    nam__tensor_strides(&d->x, xs); nam__tensor_strides(&d->dt, dts); nam__tensor_strides(&d->A, As);
    nam__tensor_strides(&d->B, Bs); nam__tensor_strides(&d->C, Cs); nam__tensor_strides(&d->D, Ds);
    nam__tensor_strides(&d->z, zs); nam__tensor_strides(&d->dt_bias, bs); nam__tensor_strides(&d->initial_states, is);
    nam__tensor_strides(&d->out, os); nam__tensor_strides(&d->final_states, fs);
    for (bi = 0; bi < dm->b; bi++)
        for (hi = 0; hi < dm->h; hi++) {
            int64_t gi = hi / hpg;
            double A = nam__load(d->A.data, d->A.dtype, hi * As[0]);
            double bias = d->dt_bias.data ? nam__load(d->dt_bias.data, d->dt_bias.dtype, hi * bs[0]) : 0.0;
            for (pi = 0; pi < dm->p; pi++) {
                double Dv = 0.0;
                if (d->D.data) Dv = nam__load(d->D.data, d->D.dtype, hi * Ds[0] + (d->D.ndim == 2 ? pi * Ds[1] : 0));
                for (k = 0; k < dm->n; k++)
                    st[k] = d->initial_states.data ? NAM__CAST(const float *, d->initial_states.data)[bi * is[0] + hi * is[1] + pi * is[2] + k * is[3]] : 0.0;
                for (t = 0; t < dm->l; t++) {
                    double dtv = nam__load(d->dt.data, d->dt.dtype, bi * dts[0] + t * dts[1] + hi * dts[2]) + bias;
                    double xv = nam__load(d->x.data, d->x.dtype, bi * xs[0] + t * xs[1] + hi * xs[2] + pi * xs[3]);
                    double dA, y = 0.0;
                    int64_t bo = bi * Bs[0] + t * Bs[1] + gi * Bs[2], co = bi * Cs[0] + t * Cs[1] + gi * Cs[2];
                    dtv = nam__ssd_dt_d(dtv, d->dt_softplus, limit, lo, hi_lim);
                    dA = exp(dtv * A);
                    for (k = 0; k < dm->n; k++) {
                        st[k] = dA * st[k] + dtv * nam__load(d->B.data, d->B.dtype, bo + k * Bs[3]) * xv;
                        y += nam__load(d->C.data, d->C.dtype, co + k * Cs[3]) * st[k];
                    }
                    y += Dv * xv;
                    if (d->z.data) {
                        double zv = nam__load(d->z.data, d->z.dtype, bi * zs[0] + t * zs[1] + hi * zs[2] + pi * zs[3]);
                        y *= zv / (1.0 + exp(-zv));
                    }
                    nam__store(d->out.data, d->out.dtype, bi * os[0] + t * os[1] + hi * os[2] + pi * os[3], NAM__CAST(float, y));
                }
                if (d->final_states.data)
                    for (k = 0; k < dm->n; k++)
                        NAM__CAST(float *, d->final_states.data)[bi * fs[0] + hi * fs[1] + pi * fs[2] + k * fs[3]] = NAM__CAST(float, st[k]);
            }
        }
}

/* ---- fast path ------------------------------------------------------------------------ */
typedef struct nam__ssd_ctx {
    nam_ssd_desc *d;
    nam__ssd_dims dm;
    nam__ssd_layout L;
    nam__ssd_ops ops;
    char *ws;
    int64_t xs[4], zs[4], os[4], is[4], fs[4];
    int limit;
    int odirect;   /* out f32 with unit step in p, p % 16 == 0, no z, D absent or (h): tiles go straight into out */
    float lo, hi;
    const float *Bc, *Cc;   /* B, C as contiguous f32 (b, l, g, n): the tensors, or copies in the workspace */
} nam__ssd_ctx;

#define NAM__SSD_PTR(c, off) NAM__CAST(float *, NAM__CAST(void *, (c)->ws + (off)))

/* Phase 1: pack C (6-row panels, K = n), B^T (6-row panels over n, K = tokens) and
   G = C B^T (causal tiles) of one (b, g, chunk). */
static void nam__ssd_phase1(void *vctx, int64_t begin, int64_t end, int thread) {
    nam__ssd_ctx *c = NAM__CAST(nam__ssd_ctx *, vctx);
    const nam__ssd_layout *L = &c->L;
    int64_t n = c->dm.n, g = c->dm.g, l = c->dm.l, Q = L->Q, task;
    char *slab = c->ws + L->off_slab + NAM__CAST(size_t, thread) * L->slab_bytes;
    float *Bn = NAM__CAST(float *, NAM__CAST(void *, slab + L->s_bn));
    const float *Bc = c->Bc, *Cc = c->Cc;
    for (task = begin; task < end; task++) {
        int64_t ck = task % L->nck, bg = task / L->nck, bi = bg / g, gi = bg % g;
        int64_t c0 = ck * Q, Qc = nam__ssd_min(Q, l - c0), i, k, r, j, ib, jb;
        float *Cp = NAM__SSD_PTR(c, L->off_cp) + (bg * L->nck + ck) * L->cp_sz;
        float *Btp = NAM__SSD_PTR(c, L->off_btp) + (bg * L->nck + ck) * L->btp_sz;
        float *G = NAM__SSD_PTR(c, L->off_g) + (bg * L->nck + ck) * L->g_sz;
        const float *Brow = Bc + ((bi * l + c0) * g + gi) * n, *Crow = Cc + ((bi * l + c0) * g + gi) * n;
        int64_t rs = g * n;   /* row stride between tokens */
        nam__ssd_tile t;
        if (gi == 0)   /* dt' of the chunk's tokens, all heads, in place */
            for (i = 0; i < Qc; i++) {
                float *row = NAM__SSD_PTR(c, L->off_dt) + (bi * l + c0 + i) * c->dm.h;
                c->ops.dt_row(c->dm.h, row, NAM__SSD_PTR(c, L->off_bias), c->d->dt_softplus, c->limit, c->lo, c->hi, row);
            }
        /* Cp[ib][k][r] = C[c0 + 6 ib + r][k] */
        for (ib = 0; ib * NAM__SSD_MR < Qc; ib++) {
            float *P = Cp + ib * NAM__SSD_MR * n;
            for (r = 0; r < NAM__SSD_MR; r++) {
                i = ib * NAM__SSD_MR + r;
                if (i < Qc) { const float *src = Crow + i * rs; for (k = 0; k < n; k++) P[k * NAM__SSD_MR + r] = src[k]; }
                else for (k = 0; k < n; k++) P[k * NAM__SSD_MR + r] = 0.0f;
            }
        }
        /* Btp[nb][j][r] = B[c0 + j][6 nb + r] */
        for (j = 0; j < Qc; j++) {
            const float *src = Brow + j * rs;
            for (k = 0; k < L->n6; k += NAM__SSD_MR) {
                float *P = Btp + k * Q + j * NAM__SSD_MR;
                for (r = 0; r < NAM__SSD_MR; r++) P[r] = k + r < n ? src[k + r] : 0.0f;
            }
        }
        /* Bn[jb][k][cc] = B[c0 + 16 jb + cc][k] */
        for (jb = 0; jb * NAM__SSD_NR < Qc; jb++) {
            float *P = Bn + jb * NAM__SSD_NR * n;
            for (r = 0; r < NAM__SSD_NR; r++) {
                j = jb * NAM__SSD_NR + r;
                if (j < Qc) { const float *src = Brow + j * rs; for (k = 0; k < n; k++) P[k * NAM__SSD_NR + r] = src[k]; }
                else for (k = 0; k < n; k++) P[k * NAM__SSD_NR + r] = 0.0f;
            }
        }
        /* G (Q6 x Q16, row-major): the tiles on and below the diagonal; the rest stays 0 */
        memset(G, 0, sizeof(float) * NAM__CAST(size_t, L->g_sz));
        memset(&t, 0, sizeof t);
        t.k1 = n; t.ldb1 = NAM__SSD_NR; t.ldc = L->Q16; t.m = NAM__SSD_MR;
        for (ib = 0; ib * NAM__SSD_MR < Qc; ib++) {
            int64_t i0 = ib * NAM__SSD_MR;
            for (jb = 0; jb * NAM__SSD_NR < Qc && jb * NAM__SSD_NR <= i0 + NAM__SSD_MR - 1; jb++) {
                t.a1 = Cp + i0 * n;
                t.b1 = Bn + jb * NAM__SSD_NR * n;
                t.c = G + i0 * L->Q16 + jb * NAM__SSD_NR;
                c->ops.kern(&t);
            }
        }
    }
}

/* Software prefetch of rows of `bytes` bytes, `stride` bytes apart (one head's x rows are
   h*p elements apart, a stride the hardware prefetchers do not follow), a few cache lines
   per step so that the misses overlap the kernel instead of queueing all at once. */
typedef struct nam__ssd_pf { const char *base; int64_t stride, rows, bytes, r, o; } nam__ssd_pf;
static void nam__ssd_pf_step(nam__ssd_pf *f, int lines) {
    for (; lines > 0 && f->r < f->rows; lines--) {
        NAM__SSD_PREFETCH(f->base + f->r * f->stride + f->o, 0);
        f->o += 64;
        if (f->o >= f->bytes) { f->o = 0; f->r++; }
    }
}

/* Phase 2: a range of (b, h); chunk by chunk, every head of the range per chunk, so that a
   chunk's packed C, B^T and G stay in cache across heads and consecutive heads read
   neighbouring x. The range's states S^T live side by side in the slab. */
static void nam__ssd_phase2(void *vctx, int64_t begin, int64_t end, int thread) {
    nam__ssd_ctx *c = NAM__CAST(nam__ssd_ctx *, vctx);
    nam_ssd_desc *d = c->d;
    const nam__ssd_layout *L = &c->L;
    const nam__ssd_ops *ops = &c->ops;
    int64_t l = c->dm.l, h = c->dm.h, p = c->dm.p, g = c->dm.g, n = c->dm.n, Q = L->Q, p16 = L->p16, n6 = L->n6;
    int64_t hpg = h / g, task;
    char *slab = c->ws + L->off_slab + NAM__CAST(size_t, thread) * L->slab_bytes;
#define NAM__SSD_SLAB(off) NAM__CAST(float *, NAM__CAST(void *, slab + (off)))
    float *Xp = NAM__SSD_SLAB(L->s_xp), *Xw = NAM__SSD_SLAB(L->s_xw), *Wp = NAM__SSD_SLAB(L->s_wp);
    float *S = NAM__SSD_SLAB(L->s_s), *Y = NAM__SSD_SLAB(L->s_y);
    float *e = NAM__SSD_SLAB(L->s_e), *w = NAM__SSD_SLAB(L->s_w), *dtc = NAM__SSD_SLAB(L->s_dtc);
    float *tmp = NAM__SSD_SLAB(L->s_tmp), *xrow = NAM__SSD_SLAB(L->s_row), *zrow = NAM__SSD_SLAB(L->s_zrow);
    float *orow = NAM__SSD_SLAB(L->s_orow);
    double *cum = NAM__CAST(double *, NAM__CAST(void *, slab + L->s_cum));
#undef NAM__SSD_SLAB
    const float *dtp = NAM__SSD_PTR(c, L->off_dt), *Af = NAM__SSD_PTR(c, L->off_A), *Dall = NAM__SSD_PTR(c, L->off_D);
    int has_z = d->z.data != NULL, has_final = d->final_states.data != NULL;
    int fold_D = c->odirect && d->D.data != NULL;   /* D (h): added to W's diagonal */
    nam__ssd_tile t;
    nam__ssd_pf pf;
    int64_t ck, ssz = n6 * p16;
    float *S0 = S;
    /* S^T (n6 x p16) in 16-column panels: S[pb][k][cc] = state[p = 16 pb + cc][n = k] */
    memset(S0, 0, sizeof(float) * NAM__CAST(size_t, (end - begin) * ssz));
    if (d->initial_states.data)
        for (task = begin; task < end; task++) {
            const float *is = NAM__CAST(const float *, d->initial_states.data);
            int64_t bi = task / h, hi = task % h, i, k;
            S = S0 + (task - begin) * ssz;
            for (i = 0; i < p; i++)
                for (k = 0; k < n; k++)
                    S[(i / NAM__SSD_NR) * n6 * NAM__SSD_NR + k * NAM__SSD_NR + i % NAM__SSD_NR] =
                        is[bi * c->is[0] + hi * c->is[1] + i * c->is[2] + k * c->is[3]];
        }
    memset(cum, 0, sizeof(double) * NAM__CAST(size_t, L->Qv));
    memset(dtc, 0, sizeof(float) * NAM__CAST(size_t, L->Qv));
    memset(e, 0, sizeof(float) * NAM__CAST(size_t, L->Qv));
    for (ck = 0; ck < L->nck; ck++)
        for (task = begin; task < end; task++) {
            int64_t bi = task / h, hi = task % h, gi = hi / hpg, bg = bi * g + gi, i, j, k, pb, ib;
            const float *Dv = Dall + hi * p;
            float A = Af[hi], dfold = fold_D ? Dv[0] : 0.0f;
            int have_state = d->initial_states.data != NULL || ck > 0;
            int64_t c0 = ck * Q, Qc = nam__ssd_min(Q, l - c0);
            const float *Cp = NAM__SSD_PTR(c, L->off_cp) + (bg * L->nck + ck) * L->cp_sz;
            const float *Btp = NAM__SSD_PTR(c, L->off_btp) + (bg * L->nck + ck) * L->btp_sz;
            const float *G = NAM__SSD_PTR(c, L->off_g) + (bg * L->nck + ck) * L->g_sz;
            int need_state = ck + 1 < L->nck || has_final, mono = 1;
            double acc = 0.0, last;
            float gamma;
            /* dt', cumulative log-decay inside the chunk (double), decays */
            for (j = 0; j < Qc; j++) {
                dtc[j] = dtp[(bi * l + c0 + j) * h + hi];
                acc += NAM__CAST(double, dtc[j]) * A;
                cum[j] = acc;
                if (!(NAM__CAST(double, dtc[j]) * A <= 0.0)) mono = 0;
            }
            for (j = Qc; j < L->Qv; j++) { dtc[j] = 0.0f; cum[j] = 0.0; }
            last = cum[Qc - 1];
            gamma = NAM__CAST(float, exp(last));
            for (j = 0; j < Qc; j++) tmp[j] = NAM__CAST(float, cum[j]);
            ops->vexp(Qc, tmp, e);
            for (j = Qc; j < L->Qv; j++) e[j] = 0.0f;
            for (j = 0; j < Qc; j++) tmp[j] = NAM__CAST(float, last - cum[j]);
            ops->vexp(Qc, tmp, w);
            for (j = 0; j < Qc; j++) w[j] *= dtc[j];
            S = S0 + (task - begin) * ssz;
            memset(&pf, 0, sizeof pf);
            if (task + 1 < end || ck + 1 < L->nck) {   /* the next x rows this thread reads, spread over the tiles */
                int64_t es = d->x.dtype == NAM_F32 ? 4 : 2, nt = task + 1 < end ? task + 1 : begin, nc0 = task + 1 < end ? c0 : c0 + Q;
                pf.base = NAM__CAST(const char *, d->x.data) + ((nt / h) * c->xs[0] + nc0 * c->xs[1] + (nt % h) * c->xs[2]) * es;
                pf.stride = c->xs[1] * es;
                pf.rows = nam__ssd_min(Q, l - nc0);
                pf.bytes = ((p - 1) * c->xs[3] + 1) * es;
            }
            /* X and diag(dt_j exp(cum_last - cum_j)) X, packed (Qc x p16, zero padded). Packing
               matters: in place, the rows are h*p floats apart and share one L1 set. */
            for (j = 0; j < Qc; j++) {
                const float *xr = nam__ssd_row(&d->x, bi * c->xs[0] + (c0 + j) * c->xs[1] + hi * c->xs[2], c->xs[3], p, xrow);
                ops->pack_row(p, p16, xr, w[j], Xp + j * p16, Xw + j * p16);
            }
            /* W in 6-row panels: Wp[ib][j][r], K = min(Qc, ib + 6) */
            for (ib = 0; ib < Qc; ib += NAM__SSD_MR)
                ops->wpanel(ib, NAM__CAST(int, nam__ssd_min(NAM__SSD_MR, Qc - ib)), nam__ssd_min(Qc, ib + NAM__SSD_MR), cum, G,
                            L->Q16, dtc, dfold, mono, Wp + ib * Q);
            /* Y = diag(e) C S^T + W X, into out or into Y */
            memset(&t, 0, sizeof t);
            t.k1 = have_state ? n : 0;
            t.ldb1 = NAM__SSD_NR;
            t.ldb2 = p16;
            for (pb = 0; pb < p16; pb += NAM__SSD_NR)
                for (ib = 0; ib < Qc; ib += NAM__SSD_MR) {
                    t.a1 = Cp + ib * n; t.b1 = S + pb * n6; t.rs = e + ib;
                    t.k2 = nam__ssd_min(Qc, ib + NAM__SSD_MR); t.a2 = Wp + ib * Q; t.b2 = Xp + pb;
                    if (c->odirect) {
                        t.c = NAM__CAST(float *, d->out.data) + bi * c->os[0] + (c0 + ib) * c->os[1] + hi * c->os[2] + pb;
                        t.ldc = c->os[1];
                        t.m = NAM__CAST(int, nam__ssd_min(NAM__SSD_MR, Qc - ib));
                    } else {
                        t.c = Y + ib * p16 + pb;
                        t.ldc = p16;
                        t.m = NAM__SSD_MR;
                    }
                    ops->kern(&t);
                    nam__ssd_pf_step(&pf, 4);
                }
            /* y += D x; y *= silu(z); store */
            if (!c->odirect)
                for (i = 0; i < Qc; i++) {
                    ops->axpy(p, Y + i * p16, Dv, Xp + i * p16, orow);
                    if (has_z) {
                        const float *zr = nam__ssd_row(&d->z, bi * c->zs[0] + (c0 + i) * c->zs[1] + hi * c->zs[2], c->zs[3], p, zrow);
                        ops->silu_mul(p, zr, orow);
                    }
                    nam__ssd_row_store(&d->out, bi * c->os[0] + (c0 + i) * c->os[1] + hi * c->os[2], c->os[3], p, orow);
                }
            /* S^T = gamma S^T + B^T diag(w) X */
            if (need_state) {
                memset(&t, 0, sizeof t);
                t.k1 = Qc; t.ldb1 = p16; t.cs = gamma; t.ldc = NAM__SSD_NR; t.m = NAM__SSD_MR;
                for (pb = 0; pb < p16; pb += NAM__SSD_NR)
                    for (k = 0; k < n6; k += NAM__SSD_MR) {
                        t.a1 = Btp + k * Q; t.b1 = Xw + pb;
                        t.c = S + pb * n6 + k * NAM__SSD_NR;
                        t.cin = t.c;
                        ops->kern(&t);
                        nam__ssd_pf_step(&pf, 2);
                    }
            }
        }
    if (has_final)
        for (task = begin; task < end; task++) {
            float *fsd = NAM__CAST(float *, d->final_states.data);
            int64_t bi = task / h, hi = task % h, i, k;
            S = S0 + (task - begin) * ssz;
            for (i = 0; i < p; i++)
                for (k = 0; k < n; k++)
                    fsd[bi * c->fs[0] + hi * c->fs[1] + i * c->fs[2] + k * c->fs[3]] =
                        S[(i / NAM__SSD_NR) * n6 * NAM__SSD_NR + k * NAM__SSD_NR + i % NAM__SSD_NR];
        }
}

NAM__DEF nam_status nam_ssd(nam_ssd_desc *d, void *workspace, size_t workspace_bytes, nam_error *err) {
    nam__ssd_ctx c;
    nam_status st;
    int threads;
    int64_t i, j, h, p;
    if (d) d->ran = NAM_BACKEND_AUTO;
    memset(&c, 0, sizeof c);
    st = nam__ssd_validate(d, &c.dm, err);
    if (st != NAM_OK) { nam__err_prefix(err, "nam_ssd: "); return st; }
    if (c.dm.be == NAM_BACKEND_CPU_REF) {
        size_t need = nam__ws_need(sizeof(double) * NAM__CAST(size_t, c.dm.n));
        NAM__SSD_TRY(nam__ws_check(workspace, workspace_bytes, need, "nam_ssd", err));
        nam__ssd_ref(d, &c.dm, NAM__CAST(double *, workspace));
        d->ran = NAM_BACKEND_CPU_REF;
        if (err) nam__err_reset(err);
        return NAM_OK;
    }
    threads = nam__resolve_threads(d->threads);
    nam__ssd_plan(&c.dm, threads, !nam__tensor_is_contig_f32(&d->B), !nam__tensor_is_contig_f32(&d->C), &c.L);
    NAM__SSD_TRY(nam__ws_check(workspace, workspace_bytes, c.L.total, "nam_ssd", err));
    c.d = d;
    c.ws = NAM__CAST(char *, workspace);
    h = c.dm.h; p = c.dm.p;
    nam__tensor_strides(&d->x, c.xs); nam__tensor_strides(&d->z, c.zs); nam__tensor_strides(&d->out, c.os);
    nam__tensor_strides(&d->initial_states, c.is); nam__tensor_strides(&d->final_states, c.fs);
    c.limit = d->dt_min != 0.0f || d->dt_max != 0.0f;
    c.lo = d->dt_min;
    c.hi = d->dt_max > 0.0f ? d->dt_max : HUGE_VALF;
    nam__ssd_pick_ops(&c.ops);
    c.odirect = d->out.dtype == NAM_F32 && c.os[3] == 1 && p % NAM__SSD_NR == 0 && !d->z.data && (!d->D.data || d->D.ndim == 1);
    /* contiguous f32 copies of the small inputs */
    nam__pack_f32(&d->dt, NAM__SSD_PTR(&c, c.L.off_dt));
    nam__pack_f32(&d->A, NAM__SSD_PTR(&c, c.L.off_A));
    if (d->dt_bias.data) nam__pack_f32(&d->dt_bias, NAM__SSD_PTR(&c, c.L.off_bias));
    else memset(NAM__SSD_PTR(&c, c.L.off_bias), 0, sizeof(float) * NAM__CAST(size_t, h));
    {
        float *Dv = NAM__SSD_PTR(&c, c.L.off_D);
        if (!d->D.data) memset(Dv, 0, sizeof(float) * NAM__CAST(size_t, h * p));
        else if (d->D.ndim == 2) nam__pack_f32(&d->D, Dv);
        else {
            nam__pack_f32(&d->D, Dv + h * (p - 1));          /* (h) at the end, then spread */
            for (i = 0; i < h; i++) {
                float v = Dv[h * (p - 1) + i];
                for (j = 0; j < p; j++) Dv[i * p + j] = v;
            }
        }
    }
    if (nam__tensor_is_contig_f32(&d->B)) c.Bc = NAM__CAST(const float *, d->B.data);
    else { nam__pack_f32(&d->B, NAM__SSD_PTR(&c, c.L.off_B)); c.Bc = NAM__SSD_PTR(&c, c.L.off_B); }
    if (nam__tensor_is_contig_f32(&d->C)) c.Cc = NAM__CAST(const float *, d->C.data);
    else { nam__pack_f32(&d->C, NAM__SSD_PTR(&c, c.L.off_C)); c.Cc = NAM__SSD_PTR(&c, c.L.off_C); }
    nam__parallel_for(c.dm.b * c.dm.g * c.L.nck, c.L.slabs, nam__ssd_phase1, &c);
    nam__parallel_for(c.dm.b * h, c.L.slabs, nam__ssd_phase2, &c);
    d->ran = NAM_BACKEND_CPU;
    if (err) nam__err_reset(err);
    return NAM_OK;
}


/* ---- single-token decode ---------------------------------------------------------------- */
static nam_status nam__ssd_step_validate(const nam_ssd_step_desc *d, nam_backend *be, int64_t dims[5], nam_error *err) {
    int64_t b, h, p, g, n;
    if (!d) return nam__err(err, NAM_ERR_INVALID_ARG, "desc is NULL");
    NAM__SSD_TRY(nam_query_backend(d->backend, d->x.device, be, err));
    NAM__SSD_TRY(nam__tensor_basic(&d->x, "x", 3, "b,h,p", 0, err));
    NAM__SSD_TRY(nam__ssd_numel(&d->x, "x", err));
    b = d->x.shape[0]; h = d->x.shape[1]; p = d->x.shape[2];
    NAM__SSD_TRY(nam__tensor_basic(&d->dt, "dt", 2, "b,h", 0, err));
    NAM__SSD_TRY(nam__tensor_dim(&d->dt, "dt", 0, "b", b, "x.shape[0]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->dt, "dt", 1, "h", h, "x.shape[1]", err));
    NAM__SSD_TRY(nam__tensor_basic(&d->A, "A", 1, "h", 0, err));
    NAM__SSD_TRY(nam__ssd_f32(&d->A, "A", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->A, "A", 0, "h", h, "x.shape[1]", err));
    NAM__SSD_TRY(nam__tensor_basic(&d->B, "B", 3, "b,g,n", 0, err));
    NAM__SSD_TRY(nam__tensor_dim(&d->B, "B", 0, "b", b, "x.shape[0]", err));
    g = d->B.shape[1]; n = d->B.shape[2];
    if (h % g != 0)
        return nam__err(err, NAM_ERR_INVALID_ARG, "B.shape[1] (g) = %lld does not divide x.shape[1] (h) = %lld",
                        NAM__CAST(long long, g), NAM__CAST(long long, h));
    NAM__SSD_TRY(nam__tensor_basic(&d->C, "C", 3, "b,g,n", 0, err));
    NAM__SSD_TRY(nam__tensor_dim(&d->C, "C", 0, "b", b, "x.shape[0]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->C, "C", 1, "g", g, "B.shape[1]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->C, "C", 2, "n", n, "B.shape[2]", err));
    NAM__SSD_TRY(nam__ssd_check_D(&d->D, h, p, "x.shape[1]", "x.shape[2]", err));
    NAM__SSD_TRY(nam__tensor_basic(&d->z, "z", 3, "b,h,p", 1, err));
    if (d->z.data) {
        NAM__SSD_TRY(nam__tensor_dim(&d->z, "z", 0, "b", b, "x.shape[0]", err));
        NAM__SSD_TRY(nam__tensor_dim(&d->z, "z", 1, "h", h, "x.shape[1]", err));
        NAM__SSD_TRY(nam__tensor_dim(&d->z, "z", 2, "p", p, "x.shape[2]", err));
    }
    NAM__SSD_TRY(nam__tensor_basic(&d->dt_bias, "dt_bias", 1, "h", 1, err));
    if (d->dt_bias.data) NAM__SSD_TRY(nam__tensor_dim(&d->dt_bias, "dt_bias", 0, "h", h, "x.shape[1]", err));
    NAM__SSD_TRY(nam__tensor_basic(&d->state, "state", 4, "b,h,p,n", 0, err));
    NAM__SSD_TRY(nam__ssd_f32(&d->state, "state", err));
    NAM__SSD_TRY(nam__ssd_numel(&d->state, "state", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->state, "state", 0, "b", b, "x.shape[0]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->state, "state", 1, "h", h, "x.shape[1]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->state, "state", 2, "p", p, "x.shape[2]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->state, "state", 3, "n", n, "B.shape[2]", err));
    NAM__SSD_TRY(nam__tensor_basic(&d->out, "out", 3, "b,h,p", 0, err));
    NAM__SSD_TRY(nam__tensor_dim(&d->out, "out", 0, "b", b, "x.shape[0]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->out, "out", 1, "h", h, "x.shape[1]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->out, "out", 2, "p", p, "x.shape[2]", err));
    NAM__SSD_TRY(nam__ssd_check_dt_opts(d->dt_softplus, d->dt_min, d->dt_max, err));
    dims[0] = b; dims[1] = h; dims[2] = p; dims[3] = g; dims[4] = n;
    return NAM_OK;
}

/* One token: state = exp(dt A) state + dt B x (f32 storage, double arithmetic), y = C.state + D x. */
NAM__DEF nam_status nam_ssd_step(nam_ssd_step_desc *d, nam_error *err) {
    int64_t dims[5] = {0, 0, 0, 0, 0}, xs[4], dts[4], As[4], Bs[4], Cs[4], Ds[4], zs[4], bs[4], ss[4], os[4];
    int64_t b, h, p, g, n, hpg, bi, hi, pi, k;
    nam_backend be = NAM_BACKEND_AUTO;
    nam_status st;
    int limit;
    double lo, hi_lim;
    if (d) d->ran = NAM_BACKEND_AUTO;
    st = nam__ssd_step_validate(d, &be, dims, err);
    if (st != NAM_OK) { nam__err_prefix(err, "nam_ssd_step: "); return st; }
    b = dims[0]; h = dims[1]; p = dims[2]; g = dims[3]; n = dims[4]; hpg = h / g;
    limit = d->dt_min != 0.0f || d->dt_max != 0.0f;
    lo = d->dt_min;
    hi_lim = d->dt_max > 0.0f ? NAM__CAST(double, d->dt_max) : HUGE_VAL;
    nam__tensor_strides(&d->x, xs); nam__tensor_strides(&d->dt, dts); nam__tensor_strides(&d->A, As);
    nam__tensor_strides(&d->B, Bs); nam__tensor_strides(&d->C, Cs); nam__tensor_strides(&d->D, Ds);
    nam__tensor_strides(&d->z, zs); nam__tensor_strides(&d->dt_bias, bs); nam__tensor_strides(&d->state, ss);
    nam__tensor_strides(&d->out, os);
    for (bi = 0; bi < b; bi++)
        for (hi = 0; hi < h; hi++) {
            int64_t gi = hi / hpg, bo = bi * Bs[0] + gi * Bs[1], co = bi * Cs[0] + gi * Cs[1];
            double A = NAM__CAST(const float *, d->A.data)[hi * As[0]];
            double dtv = nam__load(d->dt.data, d->dt.dtype, bi * dts[0] + hi * dts[1]), dA;
            if (d->dt_bias.data) dtv += nam__load(d->dt_bias.data, d->dt_bias.dtype, hi * bs[0]);
            dtv = nam__ssd_dt_d(dtv, d->dt_softplus, limit, lo, hi_lim);
            dA = exp(dtv * A);
            for (pi = 0; pi < p; pi++) {
                float *s = NAM__CAST(float *, d->state.data) + bi * ss[0] + hi * ss[1] + pi * ss[2];
                double xv = nam__load(d->x.data, d->x.dtype, bi * xs[0] + hi * xs[1] + pi * xs[2]), y = 0.0;
                for (k = 0; k < n; k++) {
                    double sv = dA * s[k * ss[3]] + dtv * nam__load(d->B.data, d->B.dtype, bo + k * Bs[2]) * xv;
                    s[k * ss[3]] = NAM__CAST(float, sv);
                    y += nam__load(d->C.data, d->C.dtype, co + k * Cs[2]) * sv;
                }
                if (d->D.data) y += nam__load(d->D.data, d->D.dtype, hi * Ds[0] + (d->D.ndim == 2 ? pi * Ds[1] : 0)) * xv;
                if (d->z.data) {
                    double zv = nam__load(d->z.data, d->z.dtype, bi * zs[0] + hi * zs[1] + pi * zs[2]);
                    y *= zv / (1.0 + exp(-zv));
                }
                nam__store(d->out.data, d->out.dtype, bi * os[0] + hi * os[1] + pi * os[2], NAM__CAST(float, y));
            }
        }
    d->ran = be;
    if (err) nam__err_reset(err);
    return NAM_OK;
}

/* ---- causal depthwise conv1d -------------------------------------------------------------- */
typedef struct nam__ssd_conv_ctx {
    nam_conv1d_desc *d;
    int64_t b, l, ch, w;
    int64_t xs[4], ws[4], bs[4], ss[4], os[4];
} nam__ssd_conv_ctx;

/* Channels [begin, end): out[b, t, c] = bias[c] + sum_k weight[c, k] * in[t - (w - 1) + k],
   where in[s < 0] is conv_state[b, c, w - 1 + s]; then conv_state <- the last w - 1 inputs. */
static void nam__ssd_conv_range(void *vctx, int64_t begin, int64_t end, int thread) {
    nam__ssd_conv_ctx *c = NAM__CAST(nam__ssd_conv_ctx *, vctx);
    nam_conv1d_desc *d = c->d;
    int64_t bi, t, ci, k, w = c->w, l = c->l;
    float *state = NAM__CAST(float *, d->conv_state.data);
    (void)thread;
    for (bi = 0; bi < c->b; bi++) {
        for (t = 0; t < l; t++)
            for (ci = begin; ci < end; ci++) {
                double acc = d->bias.data ? nam__load(d->bias.data, d->bias.dtype, ci * c->bs[0]) : 0.0;
                for (k = 0; k < w; k++) {
                    int64_t s = t - (w - 1) + k;
                    double v;
                    if (s >= 0) v = nam__load(d->x.data, d->x.dtype, bi * c->xs[0] + s * c->xs[1] + ci * c->xs[2]);
                    else if (state) v = state[bi * c->ss[0] + ci * c->ss[1] + (w - 1 + s) * c->ss[2]];
                    else v = 0.0;
                    acc += nam__load(d->weight.data, d->weight.dtype, ci * c->ws[0] + k * c->ws[1]) * v;
                }
                if (d->silu) acc = acc / (1.0 + exp(-acc));
                nam__store(d->out.data, d->out.dtype, bi * c->os[0] + t * c->os[1] + ci * c->os[2], NAM__CAST(float, acc));
            }
        if (state)   /* new[k] = [old state, x][l + k]; increasing k never reads a slot already rewritten */
            for (ci = begin; ci < end; ci++)
                for (k = 0; k < w - 1; k++) {
                    int64_t s = l + k - (w - 1);
                    float *dst = state + bi * c->ss[0] + ci * c->ss[1] + k * c->ss[2];
                    *dst = s >= 0 ? nam__load(d->x.data, d->x.dtype, bi * c->xs[0] + s * c->xs[1] + ci * c->xs[2])
                                  : state[bi * c->ss[0] + ci * c->ss[1] + (w - 1 + s) * c->ss[2]];
                }
    }
}

NAM__DEF nam_status nam_conv1d(nam_conv1d_desc *d, nam_error *err) {
    nam__ssd_conv_ctx c;
    nam_backend be = NAM_BACKEND_AUTO;
    nam_status st = NAM_OK;
    if (d) d->ran = NAM_BACKEND_AUTO;
    memset(&c, 0, sizeof c);
    do {
        if (!d) { st = nam__err(err, NAM_ERR_INVALID_ARG, "desc is NULL"); break; }
        if ((st = nam_query_backend(d->backend, d->x.device, &be, err)) != NAM_OK) break;
        if ((st = nam__tensor_basic(&d->x, "x", 3, "b,l,c", 0, err)) != NAM_OK) break;
        if ((st = nam__ssd_numel(&d->x, "x", err)) != NAM_OK) break;
        c.b = d->x.shape[0]; c.l = d->x.shape[1]; c.ch = d->x.shape[2];
        if ((st = nam__tensor_basic(&d->weight, "weight", 2, "c,w", 0, err)) != NAM_OK) break;
        if ((st = nam__tensor_dim(&d->weight, "weight", 0, "c", c.ch, "x.shape[2]", err)) != NAM_OK) break;
        c.w = d->weight.shape[1];
        if (c.w > 4096) { st = nam__err(err, NAM_ERR_RANGE, "weight.shape[1] (w) = %lld is above 4096", NAM__CAST(long long, c.w)); break; }
        if ((st = nam__tensor_basic(&d->bias, "bias", 1, "c", 1, err)) != NAM_OK) break;
        if (d->bias.data && (st = nam__tensor_dim(&d->bias, "bias", 0, "c", c.ch, "x.shape[2]", err)) != NAM_OK) break;
        if (d->conv_state.data && c.w == 1) {
            st = nam__err(err, NAM_ERR_INVALID_ARG, "conv_state: weight.shape[1] (w) = 1 has no state (w - 1 = 0); pass no conv_state");
            break;
        }
        if ((st = nam__tensor_basic(&d->conv_state, "conv_state", 3, "b,c,w-1", 1, err)) != NAM_OK) break;
        if (d->conv_state.data) {
            if ((st = nam__ssd_f32(&d->conv_state, "conv_state", err)) != NAM_OK) break;
            if ((st = nam__tensor_dim(&d->conv_state, "conv_state", 0, "b", c.b, "x.shape[0]", err)) != NAM_OK) break;
            if ((st = nam__tensor_dim(&d->conv_state, "conv_state", 1, "c", c.ch, "x.shape[2]", err)) != NAM_OK) break;
            if ((st = nam__tensor_dim(&d->conv_state, "conv_state", 2, "w-1", c.w - 1, "weight.shape[1] - 1", err)) != NAM_OK) break;
        }
        if ((st = nam__tensor_basic(&d->out, "out", 3, "b,l,c", 0, err)) != NAM_OK) break;
        if ((st = nam__tensor_dim(&d->out, "out", 0, "b", c.b, "x.shape[0]", err)) != NAM_OK) break;
        if ((st = nam__tensor_dim(&d->out, "out", 1, "l", c.l, "x.shape[1]", err)) != NAM_OK) break;
        if ((st = nam__tensor_dim(&d->out, "out", 2, "c", c.ch, "x.shape[2]", err)) != NAM_OK) break;
        if (d->out.data == d->x.data && c.w > 1) {
            st = nam__err(err, NAM_ERR_INVALID_ARG, "out: shares its data with x; the convolution reads x after writing out");
            break;
        }
    } while (0);
    if (st != NAM_OK) { nam__err_prefix(err, "nam_conv1d: "); return st; }
    c.d = d;
    nam__tensor_strides(&d->x, c.xs); nam__tensor_strides(&d->weight, c.ws); nam__tensor_strides(&d->bias, c.bs);
    nam__tensor_strides(&d->conv_state, c.ss); nam__tensor_strides(&d->out, c.os);
    nam__parallel_for(c.ch, be == NAM_BACKEND_CPU_REF ? 1 : nam__resolve_threads(d->threads), nam__ssd_conv_range, &c);
    d->ran = be;
    if (err) nam__err_reset(err);
    return NAM_OK;
}

