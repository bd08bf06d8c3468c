/* >>attention ------------------------------------------------------------------------- */
/* nam_attention: softmax(q k^T * scale + causal mask) v, q (b, sq, hq, d), k/v (b, sk, hk, d).

   NAM_BACKEND_CPU_REF: for every (batch, q head, query row) an exact two-pass softmax in
   double over the visible keys (max pass, then exp/sum/accumulate). Workspace: sk + d
   doubles. Single-threaded.

   NAM_BACKEND_CPU (AUTO): FlashAttention-2 tiling. One work item is one tile of R <= 96
   query rows that share a kv head: Gt query heads of one GQA group (Gt = the largest
   divisor of hq/hk that is <= 96) times Bq = 96 / Gt consecutive positions, laid out
   position-major (row r = position r / Gt, head r % Gt), so every K/V tile read serves all
   of them and decode (sq = 1) still fills the tile with the group's heads. Per item:
     Qt (d x R, pre-multiplied by scale * log2 e) is packed once;
     for each key tile of Bc = 96 keys up to the last key any row of the item can see
     (fully masked tiles are never visited):
       S^T = K_tile Qt                      (6 x 16 register-blocked FMA kernel; K read in
                                             place when f32 with unit stride along d and
                                             d % 8 == 0, else converted to f32 rows)
       mask (only tiles that cross the causal diagonal)
       online softmax per row in base 2: m' = max(m, max_j S), alpha = 2^(m - m'),
       P = 2^(S - m'), l = alpha l + sum_j P (vectorised over the rows)
       O = alpha O + P V_tile               (6 x 16 kernel over V copied into 16-column
                                             panels; keys a row cannot see are never
                                             multiplied in, so a NaN in a masked value row
                                             does not leak into it)
     out = O / l; a row with no visible key gets zeros.
   While one kernel loop runs, the rows the next step reads (this tile's V, the next tile's
   K, the next item's Q) are prefetched. Items are (batch, kv head, head subgroup, query
   tile) with the query tiles interleaved first/last/second/second-to-last..., so any run
   of consecutive items carries about equal causal work; threads claim chunks of items
   (about 1/16 of their share) from an atomic counter, or without GCC/Clang atomics run
   the contiguous ranges nam__parallel_for hands them.
   Workspace per thread, no sq x sk buffer: (2 R dp + Bc R + Bc dp + 14 dp + 5 R) floats,
   plus Bc dp floats when K is converted (dp = d rounded up to 8 <= 256): at most 340 KiB
   per thread (436 KiB converting K), about half that at d = 128. nam__sgemm is not used: on
   hot 96 x 96 x 128 tiles it runs 5-10% slower than these kernels (it packs both operands
   on every call), it cannot fold the rescale by alpha into the product, and P V needs a
   different key range per 6-row block to keep masked keys out.
   The x86-64 build uses AVX2/FMA/F16C kernels (chosen at run time, GCC/Clang); other
   builds and CPUs, and NAM__ATTN_NO_SIMD builds, run the same tiling with plain C loops. */

#ifndef NAM__ATTN_BR
#define NAM__ATTN_BR 96   /* query rows per tile: a multiple of 48 keeps both kernels full */
#endif
#ifndef NAM__ATTN_BC
#define NAM__ATTN_BC 96   /* keys per tile, a multiple of 6 */
#endif
#define NAM__ATTN_MAX_D 256

#ifndef NAM__ATTN_PREFETCH
#if defined(__GNUC__) || defined(__clang__)
#define NAM__ATTN_PREFETCH(p) __builtin_prefetch(p)
#else
#define NAM__ATTN_PREFETCH(p) ((void)(p))
#endif
#endif
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && !defined(__CUDACC__) && !defined(NAM__ATTN_NO_SIMD)
#define NAM__ATTN_X86 1
#include <immintrin.h>
#include <cpuid.h>
#define NAM__ATTN_TARGET __attribute__((target("avx2,fma,f16c")))
#else
#define NAM__ATTN_X86 0
#endif

typedef struct nam__attn_ctx {
    const nam_attention_desc *d;
    int64_t b, sq, sk, hq, hk, hd, dp;       /* hd: head dim; dp: hd rounded up to 8 */
    int64_t qs[NAM_MAX_DIMS], ks[NAM_MAX_DIMS], vs[NAM_MAX_DIMS], os[NAM_MAX_DIMS];
    int64_t off;                             /* causal: key j visible to row i iff j <= i + off */
    int causal, kdirect, simd;
    float scale2;                            /* scale * log2(e) */
    int64_t group, gt, nsub, bq, rmax, rp, nqt, items;
    int64_t next, chunk;                     /* dynamic schedule: next unclaimed item, claim size */
    char *ws;
    size_t per_thread;
} nam__attn_ctx;

static int64_t nam__attn_round(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* ---- per-thread workspace layout ---------------------------------------------------- */
typedef struct nam__attn_bufs {
    float *qt, *st, *o, *m, *l, *alpha, *ktail, *tmp, *kt, *vt;
    int64_t *vis;
} nam__attn_bufs;

/* Carves the buffers out of one thread's workspace; with base == NULL only sizes it. */
static size_t nam__attn_carve(const nam__attn_ctx *c, char *base, nam__attn_bufs *bf) {
    size_t rp = NAM__CAST(size_t, c->rp), dp = NAM__CAST(size_t, c->dp), bc = NAM__ATTN_BC, fl = sizeof(float);
    size_t sizes[10], total = 0;
    void *ptr[10];
    int i;
    sizes[0] = fl * dp * rp;                  /* qt: Q^T of the tile, scaled */
    sizes[1] = fl * bc * rp;                  /* st: S^T, then P^T */
    sizes[2] = fl * rp * dp;                  /* o: unnormalised output rows */
    sizes[3] = sizes[4] = sizes[5] = fl * rp; /* m, l, alpha */
    sizes[6] = sizeof(int64_t) * rp;          /* vis: keys each row sees */
    sizes[7] = fl * (6 + 8) * dp;             /* ktail (6 rows), tmp (8 rows) */
    sizes[8] = c->kdirect ? 0 : fl * bc * dp; /* kt: K tile converted to f32 rows */
    sizes[9] = fl * bc * dp;                  /* vt: V tile as 16-wide column panels */
    for (i = 0; i < 10; i++) {
        ptr[i] = base ? NAM__CAST(void *, base + total) : NULL;
        total += nam__ws_need(sizes[i]);
    }
    if (bf) {
        bf->qt = NAM__CAST(float *, ptr[0]);
        bf->st = NAM__CAST(float *, ptr[1]);
        bf->o = NAM__CAST(float *, ptr[2]);
        bf->m = NAM__CAST(float *, ptr[3]);
        bf->l = NAM__CAST(float *, ptr[4]);
        bf->alpha = NAM__CAST(float *, ptr[5]);
        bf->vis = NAM__CAST(int64_t *, ptr[6]);
        bf->ktail = NAM__CAST(float *, ptr[7]);
        bf->tmp = bf->ktail + 6 * dp;
        bf->kt = c->kdirect ? NULL : NAM__CAST(float *, ptr[8]);
        bf->vt = NAM__CAST(float *, ptr[9]);
    }
    return total;
}

/* ---- validation ----------------------------------------------------------------------- */
static nam_status nam__attn_numel(const nam_tensor *t, const char *field, nam_error *err) {
    int64_t n = 1, lim = INT64_C(1) << 48;
    int i;
    for (i = 0; i < t->ndim; i++) {
        if (t->shape[i] > lim / n)
            return nam__err(err, NAM_ERR_LIMIT, "%s: more than 2^48 elements", field);
        n *= t->shape[i];
    }
    return NAM_OK;
}

static nam_status nam__attn_check(const nam_attention_desc *d, nam_backend *ran, nam_error *err) {
    nam_status st;
    int64_t hq, hk, hd;
    if (!d) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_attention: desc is NULL");
    if ((st = nam__tensor_basic(&d->q, "q", 4, "b,sq,hq,d", 0, err)) != NAM_OK) return st;
    if ((st = nam__tensor_basic(&d->k, "k", 4, "b,sk,hk,d", 0, err)) != NAM_OK) return st;
    if ((st = nam__tensor_basic(&d->v, "v", 4, "b,sk,hk,d", 0, err)) != NAM_OK) return st;
    if ((st = nam__tensor_basic(&d->out, "out", 4, "b,sq,hq,d", 0, err)) != NAM_OK) return st;
    if ((st = nam__attn_numel(&d->q, "q", err)) != NAM_OK) return st;
    if ((st = nam__attn_numel(&d->k, "k", err)) != NAM_OK) return st;
    hq = d->q.shape[2];
    hk = d->k.shape[2];
    hd = d->q.shape[3];
    if ((st = nam__tensor_dim(&d->k, "k", 0, "b", d->q.shape[0], "q.shape[0]", err)) != NAM_OK) return st;
    if ((st = nam__tensor_dim(&d->k, "k", 3, "d", hd, "q.shape[3]", err)) != NAM_OK) return st;
    if ((st = nam__tensor_dim(&d->v, "v", 0, "b", d->q.shape[0], "q.shape[0]", err)) != NAM_OK) return st;
    if ((st = nam__tensor_dim(&d->v, "v", 1, "sk", d->k.shape[1], "k.shape[1]", err)) != NAM_OK) return st;
    if ((st = nam__tensor_dim(&d->v, "v", 2, "hk", hk, "k.shape[2]", err)) != NAM_OK) return st;
    if ((st = nam__tensor_dim(&d->v, "v", 3, "d", hd, "q.shape[3]", err)) != NAM_OK) return st;
    if ((st = nam__tensor_dim(&d->out, "out", 0, "b", d->q.shape[0], "q.shape[0]", err)) != NAM_OK) return st;
    if ((st = nam__tensor_dim(&d->out, "out", 1, "sq", d->q.shape[1], "q.shape[1]", err)) != NAM_OK) return st;
    if ((st = nam__tensor_dim(&d->out, "out", 2, "hq", hq, "q.shape[2]", err)) != NAM_OK) return st;
    if ((st = nam__tensor_dim(&d->out, "out", 3, "d", hd, "q.shape[3]", err)) != NAM_OK) return st;
    if (hq % hk != 0)
        return nam__err(err, NAM_ERR_INVALID_ARG, "q.shape[2] (hq) = %lld is not a multiple of k.shape[2] (hk) = %lld (GQA needs hq %% hk == 0)",
                        NAM__CAST(long long, hq), NAM__CAST(long long, hk));
    if (hd > NAM__ATTN_MAX_D)
        return nam__err(err, NAM_ERR_RANGE, "q.shape[3] (d) = %lld exceeds the largest supported head dim %d", NAM__CAST(long long, hd), NAM__ATTN_MAX_D);
    if (d->causal && d->align != NAM_CAUSAL_BOTTOM_RIGHT && d->align != NAM_CAUSAL_TOP_LEFT)
        return nam__err(err, NAM_ERR_INVALID_ARG, "align = %d is not a nam_causal_align (0 bottom-right, 1 top-left)", NAM__CAST(int, d->align));
    if (d->scale - d->scale != 0.0f)
        return nam__err(err, NAM_ERR_INVALID_ARG, "scale = %g is not finite (0 means 1/sqrt(d))", NAM__CAST(double, d->scale));
    return nam_query_backend(d->backend, NAM_DEVICE_CPU, ran, err);
}

static int nam__attn_have_simd(void) {
#if NAM__ATTN_X86
    unsigned a, b, cx, dx;   /* F16C: CPUID.1:ECX bit 29 (not every compiler's __builtin_cpu_supports knows it) */
    if (!__get_cpuid(1, &a, &b, &cx, &dx) || !((cx >> 29) & 1u)) return 0;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

static void nam__attn_setup(const nam_attention_desc *d, nam__attn_ctx *c) {
    int64_t g;
    memset(c, 0, sizeof *c);
    c->d = d;
    c->b = d->q.shape[0];
    c->sq = d->q.shape[1];
    c->hq = d->q.shape[2];
    c->sk = d->k.shape[1];
    c->hk = d->k.shape[2];
    c->hd = d->q.shape[3];
    c->dp = nam__attn_round(c->hd, 8);
    nam__tensor_strides(&d->q, c->qs);
    nam__tensor_strides(&d->k, c->ks);
    nam__tensor_strides(&d->v, c->vs);
    nam__tensor_strides(&d->out, c->os);
    c->causal = d->causal != 0;
    c->off = c->causal && d->align == NAM_CAUSAL_BOTTOM_RIGHT ? c->sk - c->sq : 0;
    c->scale2 = NAM__CAST(float, (d->scale != 0.0f ? NAM__CAST(double, d->scale) : 1.0 / sqrt(NAM__CAST(double, c->hd))) * 1.4426950408889634);
    c->kdirect = d->k.dtype == NAM_F32 && c->ks[3] == 1 && c->hd % 8 == 0;
    c->group = c->hq / c->hk;
    for (g = c->group < NAM__ATTN_BR ? c->group : NAM__ATTN_BR; g > 1; g--)
        if (c->group % g == 0) break;
    c->gt = g;
    c->nsub = c->group / g;
    c->bq = NAM__ATTN_BR / g;
    if (c->bq > c->sq) c->bq = c->sq;
    c->rmax = c->bq * c->gt;
    c->rp = nam__attn_round(nam__attn_round(c->rmax, 6), 16);
    c->nqt = (c->sq + c->bq - 1) / c->bq;
    c->items = c->b * c->hk * c->nsub * c->nqt;
    c->per_thread = nam__attn_carve(c, NULL, NULL);
    c->simd = nam__attn_have_simd();
}

/* ---- AVX2 kernels ----------------------------------------------------------------------- */
#if NAM__ATTN_X86
/* 2^x for x <= 0 (or NaN): 0 below -126, NaN stays NaN. Cephes exp2f polynomial on [-0.5, 0.5]. */
NAM__ATTN_TARGET static __m256 nam__attn_exp2_avx2(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-126.0f), hi = _mm256_set1_ps(126.0f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ), n, f, p;
    __m256i e;
    x = _mm256_max_ps(lo, x);   /* NaN in the second operand passes through */
    x = _mm256_min_ps(hi, x);
    n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    f = _mm256_sub_ps(x, n);
    p = _mm256_set1_ps(1.535336188319500e-4f);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.339887440266574e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.618437357674640e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.550332471162809e-2f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.402264791363012e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.931472028550421e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    p = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    return _mm256_andnot_ps(under, p);
}

/* st[r][0..16) for 6 key rows r: sum_c k[r][c] * qt[c][0..16). */
NAM__ATTN_TARGET static void nam__attn_qk_6x16(const float *k, int64_t ldk, const float *qt, int64_t ldq, int64_t dp, float *st, int64_t lds) {
    const float *k0 = k, *k1 = k + ldk, *k2 = k + 2 * ldk, *k3 = k + 3 * ldk, *k4 = k + 4 * ldk, *k5 = k + 5 * ldk;
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00;
    __m256 a30 = a00, a31 = a00, a40 = a00, a41 = a00, a50 = a00, a51 = a00;
    int64_t c;
    for (c = 0; c < dp; c++) {
        const float *q = qt + c * ldq;
        __m256 q0 = _mm256_load_ps(q), q1 = _mm256_load_ps(q + 8), x;
        x = _mm256_broadcast_ss(k0 + c); a00 = _mm256_fmadd_ps(x, q0, a00); a01 = _mm256_fmadd_ps(x, q1, a01);
        x = _mm256_broadcast_ss(k1 + c); a10 = _mm256_fmadd_ps(x, q0, a10); a11 = _mm256_fmadd_ps(x, q1, a11);
        x = _mm256_broadcast_ss(k2 + c); a20 = _mm256_fmadd_ps(x, q0, a20); a21 = _mm256_fmadd_ps(x, q1, a21);
        x = _mm256_broadcast_ss(k3 + c); a30 = _mm256_fmadd_ps(x, q0, a30); a31 = _mm256_fmadd_ps(x, q1, a31);
        x = _mm256_broadcast_ss(k4 + c); a40 = _mm256_fmadd_ps(x, q0, a40); a41 = _mm256_fmadd_ps(x, q1, a41);
        x = _mm256_broadcast_ss(k5 + c); a50 = _mm256_fmadd_ps(x, q0, a50); a51 = _mm256_fmadd_ps(x, q1, a51);
    }
    _mm256_store_ps(st, a00); _mm256_store_ps(st + 8, a01); st += lds;
    _mm256_store_ps(st, a10); _mm256_store_ps(st + 8, a11); st += lds;
    _mm256_store_ps(st, a20); _mm256_store_ps(st + 8, a21); st += lds;
    _mm256_store_ps(st, a30); _mm256_store_ps(st + 8, a31); st += lds;
    _mm256_store_ps(st, a40); _mm256_store_ps(st + 8, a41); st += lds;
    _mm256_store_ps(st, a50); _mm256_store_ps(st + 8, a51);
}

/* o[r][0..8w) = alpha[r] o[r] + sum_{j < jn} pt[j][r] v[j][0..8w) for 6 rows r, w = 1 or 2. */
NAM__ATTN_TARGET static void nam__attn_pv_6x16(const float *pt, int64_t ldp, const float *v, int64_t ldv, int64_t jn,
                                               const float *alpha, float *o, int64_t ldo) {
    __m256 x, o00, o01, o10, o11, o20, o21, o30, o31, o40, o41, o50, o51;
    int64_t j;
    x = _mm256_broadcast_ss(alpha + 0); o00 = _mm256_mul_ps(x, _mm256_load_ps(o)); o01 = _mm256_mul_ps(x, _mm256_load_ps(o + 8));
    x = _mm256_broadcast_ss(alpha + 1); o10 = _mm256_mul_ps(x, _mm256_load_ps(o + ldo)); o11 = _mm256_mul_ps(x, _mm256_load_ps(o + ldo + 8));
    x = _mm256_broadcast_ss(alpha + 2); o20 = _mm256_mul_ps(x, _mm256_load_ps(o + 2 * ldo)); o21 = _mm256_mul_ps(x, _mm256_load_ps(o + 2 * ldo + 8));
    x = _mm256_broadcast_ss(alpha + 3); o30 = _mm256_mul_ps(x, _mm256_load_ps(o + 3 * ldo)); o31 = _mm256_mul_ps(x, _mm256_load_ps(o + 3 * ldo + 8));
    x = _mm256_broadcast_ss(alpha + 4); o40 = _mm256_mul_ps(x, _mm256_load_ps(o + 4 * ldo)); o41 = _mm256_mul_ps(x, _mm256_load_ps(o + 4 * ldo + 8));
    x = _mm256_broadcast_ss(alpha + 5); o50 = _mm256_mul_ps(x, _mm256_load_ps(o + 5 * ldo)); o51 = _mm256_mul_ps(x, _mm256_load_ps(o + 5 * ldo + 8));
    for (j = 0; j < jn; j++) {
        const float *p = pt + j * ldp, *vr = v + j * ldv;
        __m256 v0 = _mm256_loadu_ps(vr), v1 = _mm256_loadu_ps(vr + 8);
        x = _mm256_broadcast_ss(p + 0); o00 = _mm256_fmadd_ps(x, v0, o00); o01 = _mm256_fmadd_ps(x, v1, o01);
        x = _mm256_broadcast_ss(p + 1); o10 = _mm256_fmadd_ps(x, v0, o10); o11 = _mm256_fmadd_ps(x, v1, o11);
        x = _mm256_broadcast_ss(p + 2); o20 = _mm256_fmadd_ps(x, v0, o20); o21 = _mm256_fmadd_ps(x, v1, o21);
        x = _mm256_broadcast_ss(p + 3); o30 = _mm256_fmadd_ps(x, v0, o30); o31 = _mm256_fmadd_ps(x, v1, o31);
        x = _mm256_broadcast_ss(p + 4); o40 = _mm256_fmadd_ps(x, v0, o40); o41 = _mm256_fmadd_ps(x, v1, o41);
        x = _mm256_broadcast_ss(p + 5); o50 = _mm256_fmadd_ps(x, v0, o50); o51 = _mm256_fmadd_ps(x, v1, o51);
    }
    _mm256_store_ps(o, o00); _mm256_store_ps(o + 8, o01); o += ldo;
    _mm256_store_ps(o, o10); _mm256_store_ps(o + 8, o11); o += ldo;
    _mm256_store_ps(o, o20); _mm256_store_ps(o + 8, o21); o += ldo;
    _mm256_store_ps(o, o30); _mm256_store_ps(o + 8, o31); o += ldo;
    _mm256_store_ps(o, o40); _mm256_store_ps(o + 8, o41); o += ldo;
    _mm256_store_ps(o, o50); _mm256_store_ps(o + 8, o51);
}

NAM__ATTN_TARGET static void nam__attn_pv_6x8(const float *pt, int64_t ldp, const float *v, int64_t ldv, int64_t jn,
                                              const float *alpha, float *o, int64_t ldo) {
    __m256 x, o0, o1, o2, o3, o4, o5;
    int64_t j;
    o0 = _mm256_mul_ps(_mm256_broadcast_ss(alpha + 0), _mm256_load_ps(o));
    o1 = _mm256_mul_ps(_mm256_broadcast_ss(alpha + 1), _mm256_load_ps(o + ldo));
    o2 = _mm256_mul_ps(_mm256_broadcast_ss(alpha + 2), _mm256_load_ps(o + 2 * ldo));
    o3 = _mm256_mul_ps(_mm256_broadcast_ss(alpha + 3), _mm256_load_ps(o + 3 * ldo));
    o4 = _mm256_mul_ps(_mm256_broadcast_ss(alpha + 4), _mm256_load_ps(o + 4 * ldo));
    o5 = _mm256_mul_ps(_mm256_broadcast_ss(alpha + 5), _mm256_load_ps(o + 5 * ldo));
    for (j = 0; j < jn; j++) {
        const float *p = pt + j * ldp;
        __m256 v0 = _mm256_loadu_ps(v + j * ldv);
        x = _mm256_broadcast_ss(p + 0); o0 = _mm256_fmadd_ps(x, v0, o0);
        x = _mm256_broadcast_ss(p + 1); o1 = _mm256_fmadd_ps(x, v0, o1);
        x = _mm256_broadcast_ss(p + 2); o2 = _mm256_fmadd_ps(x, v0, o2);
        x = _mm256_broadcast_ss(p + 3); o3 = _mm256_fmadd_ps(x, v0, o3);
        x = _mm256_broadcast_ss(p + 4); o4 = _mm256_fmadd_ps(x, v0, o4);
        x = _mm256_broadcast_ss(p + 5); o5 = _mm256_fmadd_ps(x, v0, o5);
    }
    _mm256_store_ps(o, o0); _mm256_store_ps(o + ldo, o1); _mm256_store_ps(o + 2 * ldo, o2);
    _mm256_store_ps(o + 3 * ldo, o3); _mm256_store_ps(o + 4 * ldo, o4); _mm256_store_ps(o + 5 * ldo, o5);
}

/* Online softmax over the key rows j < jn of st (rows x rp, in place -> P), all rp lanes. */
NAM__ATTN_TARGET static void nam__attn_softmax_avx2(float *st, int64_t lds, int64_t jn, int64_t rp, float *m, float *l, float *alpha) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY), zero = _mm256_setzero_ps();
    int64_t r, j;
    for (r = 0; r < rp; r += 16) {
        __m256 mo0 = _mm256_load_ps(m + r), mo1 = _mm256_load_ps(m + r + 8), mx0 = mo0, mx1 = mo1, mu0, mu1, s0, s1;
        __m256 sum0 = zero, sum1 = zero, al0, al1;
        for (j = 0; j < jn; j++) {
            mx0 = _mm256_max_ps(mx0, _mm256_load_ps(st + j * lds + r));
            mx1 = _mm256_max_ps(mx1, _mm256_load_ps(st + j * lds + r + 8));
        }
        mu0 = _mm256_blendv_ps(mx0, zero, _mm256_cmp_ps(mx0, ninf, _CMP_EQ_OQ));   /* nothing seen yet: subtract 0 */
        mu1 = _mm256_blendv_ps(mx1, zero, _mm256_cmp_ps(mx1, ninf, _CMP_EQ_OQ));
        al0 = nam__attn_exp2_avx2(_mm256_sub_ps(mo0, mu0));
        al1 = nam__attn_exp2_avx2(_mm256_sub_ps(mo1, mu1));
        for (j = 0; j < jn; j++) {
            float *p = st + j * lds + r;
            s0 = nam__attn_exp2_avx2(_mm256_sub_ps(_mm256_load_ps(p), mu0));
            s1 = nam__attn_exp2_avx2(_mm256_sub_ps(_mm256_load_ps(p + 8), mu1));
            _mm256_store_ps(p, s0);
            _mm256_store_ps(p + 8, s1);
            sum0 = _mm256_add_ps(sum0, s0);
            sum1 = _mm256_add_ps(sum1, s1);
        }
        _mm256_store_ps(l + r, _mm256_fmadd_ps(_mm256_load_ps(l + r), al0, sum0));
        _mm256_store_ps(l + r + 8, _mm256_fmadd_ps(_mm256_load_ps(l + r + 8), al1, sum1));
        _mm256_store_ps(m + r, mx0);
        _mm256_store_ps(m + r + 8, mx1);
        _mm256_store_ps(alpha + r, al0);
        _mm256_store_ps(alpha + r + 8, al1);
    }
}

/* n contiguous elements of dtype dt at src -> f32 (f16 via F16C, bf16 by shifting). */
NAM__ATTN_TARGET static void nam__attn_cvt_avx2(const void *src, nam_dtype dt, int64_t n, float *dst) {
    int64_t i = 0;
    const uint16_t *h = NAM__CAST(const uint16_t *, src);
    if (dt == NAM_F16)
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(NAM__CAST(const __m128i *, NAM__CAST(const void *, h + i)))));
    else if (dt == NAM_BF16)
        for (; i + 8 <= n; i += 8) {
            __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(NAM__CAST(const __m128i *, NAM__CAST(const void *, h + i))));
            _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
        }
    for (; i < n; i++) dst[i] = nam__load(src, dt, i);
}

/* qt[e * ldq + x] = src[x][e] * scale for 8 rows x, e < dp (dp % 8 == 0): 8 x 8 transposes. */
NAM__ATTN_TARGET static void nam__attn_qpack8_avx2(const float *const *src, int64_t dp, float scale, float *qt, int64_t ldq) {
    const __m256 sc = _mm256_set1_ps(scale);
    int64_t e;
    for (e = 0; e < dp; e += 8) {
        __m256 r0 = _mm256_loadu_ps(src[0] + e), r1 = _mm256_loadu_ps(src[1] + e), r2 = _mm256_loadu_ps(src[2] + e), r3 = _mm256_loadu_ps(src[3] + e);
        __m256 r4 = _mm256_loadu_ps(src[4] + e), r5 = _mm256_loadu_ps(src[5] + e), r6 = _mm256_loadu_ps(src[6] + e), r7 = _mm256_loadu_ps(src[7] + e);
        __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
        __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5), t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
        __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE), u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
        __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE), u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
        float *q = qt + e * ldq;
        _mm256_store_ps(q + 0 * ldq, _mm256_mul_ps(sc, _mm256_permute2f128_ps(u0, u4, 0x20)));
        _mm256_store_ps(q + 1 * ldq, _mm256_mul_ps(sc, _mm256_permute2f128_ps(u1, u5, 0x20)));
        _mm256_store_ps(q + 2 * ldq, _mm256_mul_ps(sc, _mm256_permute2f128_ps(u2, u6, 0x20)));
        _mm256_store_ps(q + 3 * ldq, _mm256_mul_ps(sc, _mm256_permute2f128_ps(u3, u7, 0x20)));
        _mm256_store_ps(q + 4 * ldq, _mm256_mul_ps(sc, _mm256_permute2f128_ps(u0, u4, 0x31)));
        _mm256_store_ps(q + 5 * ldq, _mm256_mul_ps(sc, _mm256_permute2f128_ps(u1, u5, 0x31)));
        _mm256_store_ps(q + 6 * ldq, _mm256_mul_ps(sc, _mm256_permute2f128_ps(u2, u6, 0x31)));
        _mm256_store_ps(q + 7 * ldq, _mm256_mul_ps(sc, _mm256_permute2f128_ps(u3, u7, 0x31)));
    }
}
#endif /* NAM__ATTN_X86 */

/* ---- portable kernels (same contracts as the AVX2 ones) -------------------------------- */
static void nam__attn_qk_c(const float *k, int64_t ldk, int64_t nk, const float *qt, int64_t ldq, int64_t dp, int64_t rp, float *st, int64_t lds) {
    int64_t j, r, c;
    for (j = 0; j < nk; j++) {
        float *s = st + j * lds;
        for (r = 0; r < rp; r++) s[r] = 0.0f;
        for (c = 0; c < dp; c++) {
            float kc = k[j * ldk + c];
            const float *q = qt + c * ldq;
            for (r = 0; r < rp; r++) s[r] += kc * q[r];
        }
    }
}

static void nam__attn_softmax_c(float *st, int64_t lds, int64_t jn, int64_t rp, float *m, float *l, float *alpha) {
    int64_t r, j;
    for (r = 0; r < rp; r++) {
        float mx = m[r], mu, sum = 0.0f;
        for (j = 0; j < jn; j++) {
            float s = st[j * lds + r];
            if (s > mx || s != s) mx = s;
        }
        mu = mx == -INFINITY ? 0.0f : mx;
        alpha[r] = exp2f(m[r] - mu);
        for (j = 0; j < jn; j++) {
            float p = exp2f(st[j * lds + r] - mu);
            st[j * lds + r] = p;
            sum += p;
        }
        l[r] = l[r] * alpha[r] + sum;
        m[r] = mx;
    }
}

/* ---- one work item ------------------------------------------------------------------------ */
static const void *nam__attn_ptr(const void *base, nam_dtype dt, int64_t off) {
    return NAM__CAST(const void *, NAM__CAST(const char *, base) + off * (dt == NAM_F32 ? 4 : 2));
}

/* Element `off` of t as the start of an f32 row of hd values: in place when t is f32 with
   unit stride along d and hd % 8 == 0, else converted into tmp (zero padded to dp). */
static const float *nam__attn_row(const nam__attn_ctx *c, const nam_tensor *t, int64_t est, int64_t off, float *tmp) {
    int64_t e;
    if (t->dtype == NAM_F32 && est == 1) {
        if (c->hd == c->dp) return NAM__CAST(const float *, t->data) + off;
        memcpy(tmp, NAM__CAST(const float *, t->data) + off, sizeof(float) * NAM__CAST(size_t, c->hd));
    } else
#if NAM__ATTN_X86
    if (c->simd && est == 1) nam__attn_cvt_avx2(nam__attn_ptr(t->data, t->dtype, off), t->dtype, c->hd, tmp);
    else
#endif
        for (e = 0; e < c->hd; e++) tmp[e] = nam__load(t->data, t->dtype, off + e * est);
    for (e = c->hd; e < c->dp; e++) tmp[e] = 0.0f;
    return tmp;
}

/* V rows j0..j0+n of one (batch, kv head) into column panels: panel p (16 columns, the last
   one 8 when dp % 16 == 8) holds row j at vt + p * 16 * BC + j * width. */
static void nam__attn_pack_v(const nam__attn_ctx *c, int64_t base, int64_t j0, int64_t n, float *vt, float *tmp) {
    int64_t j, p;
    for (j = 0; j < n; j++) {
        const float *src = nam__attn_row(c, &c->d->v, c->vs[3], base + (j0 + j) * c->vs[1], tmp);
        for (p = 0; p * 16 + 16 <= c->dp; p++) memcpy(vt + p * 16 * NAM__ATTN_BC + j * 16, src + p * 16, 16 * sizeof(float));
        if (p * 16 < c->dp) memcpy(vt + p * 16 * NAM__ATTN_BC + j * 8, src + p * 16, 8 * sizeof(float));
    }
}

/* Where one work item's rows live. */
typedef struct nam__attn_geom {
    int64_t bi, kvh, h0, i0, rows, kbase, vbase, kend;
} nam__attn_geom;

static void nam__attn_geometry(const nam__attn_ctx *c, int64_t item, nam__attn_geom *g) {
    int64_t t = item % c->nqt, rest = item / c->nqt, sub, qt, nb, last;
    sub = rest % c->nsub;
    rest /= c->nsub;
    g->kvh = rest % c->hk;
    g->bi = rest / c->hk;
    qt = (t & 1) ? c->nqt - 1 - t / 2 : t / 2;      /* interleave cheap and expensive causal tiles */
    g->h0 = g->kvh * c->group + sub * c->gt;
    g->i0 = qt * c->bq;
    nb = c->sq - g->i0 < c->bq ? c->sq - g->i0 : c->bq;
    g->rows = nb * c->gt;
    g->kbase = g->bi * c->ks[0] + g->kvh * c->ks[2];
    g->vbase = g->bi * c->vs[0] + g->kvh * c->vs[2];
    g->kend = c->sk;
    if (c->causal) {
        last = g->i0 + nb - 1 + c->off + 1;
        g->kend = last < 0 ? 0 : last > c->sk ? c->sk : last;
    }
}

/* Rows to prefetch while a kernel loop runs, spread over its calls: row x of a job starts
   at element base + (x / per) * s1 + (x % per) * s2 of t (unit stride along d only). */
typedef struct nam__attn_pf {
    const nam_tensor *t;
    int64_t base, s1, s2, per, n;
} nam__attn_pf;
typedef struct nam__attn_pfs {
    nam__attn_pf job[2];
    int cur;
    int64_t x, done, total, calls;
} nam__attn_pfs;

/* Adds a job (at most two per loop); est is t's stride along d (no prefetch unless 1). */
static void nam__attn_pf_job(nam__attn_pfs *s, const nam_tensor *t, int64_t est, int64_t base, int64_t s1, int64_t s2, int64_t per, int64_t n) {
    nam__attn_pf *j = &s->job[s->job[0].n > 0 ? 1 : 0];
    j->t = t;
    j->base = base;
    j->s1 = s1;
    j->s2 = s2;
    j->per = per;
    j->n = est == 1 && n > 0 ? n : 0;
    s->total += j->n;
}

static void nam__attn_pf_step(const nam__attn_ctx *c, nam__attn_pfs *s, int64_t call) {
    while (s->done < s->total && s->done * s->calls < call * s->total) {
        const nam__attn_pf *j;
        const char *p;
        int64_t b, bytes;
        while (s->x >= s->job[s->cur].n) { s->x = 0; s->cur++; }
        j = &s->job[s->cur];
        p = NAM__CAST(const char *, nam__attn_ptr(j->t->data, j->t->dtype, j->base + (s->x / j->per) * j->s1 + (s->x % j->per) * j->s2));
        bytes = c->hd * (j->t->dtype == NAM_F32 ? 4 : 2);
        for (b = 0; b < bytes; b += 64) NAM__ATTN_PREFETCH(p + b);
        s->x++;
        s->done++;
    }
}

static void nam__attn_pf_init(nam__attn_pfs *s, int64_t calls) {
    memset(s, 0, sizeof *s);
    s->calls = calls > 0 ? calls : 1;
}

/* o[0..dp) += sum_{j in [j1, j2)} pt[j * ldp] * V[j] over the panels (scalar). */
static void nam__attn_pv_row_c(const float *pt, int64_t ldp, const float *vt, int64_t dp, int64_t j1, int64_t j2, float *o) {
    int64_t j, p, e;
    for (p = 0; p * 16 < dp; p++) {
        int64_t w = dp - p * 16 < 16 ? 8 : 16;
        const float *panel = vt + p * 16 * NAM__ATTN_BC;
        float *op = o + p * 16;
        for (j = j1; j < j2; j++) {
            float pj = pt[j * ldp];
            const float *vr = panel + j * w;
            for (e = 0; e < w; e++) op[e] += pj * vr[e];
        }
    }
}

static void nam__attn_item(const nam__attn_ctx *c, int64_t item, const nam__attn_bufs *bf) {
    const nam_attention_desc *d = c->d;
    nam__attn_geom g, gn;
    int64_t bi, h0, i0, rows, rp, r, e, j0, kend, dp = c->dp, hd = c->hd, kbase, vbase;
    float *qtb = bf->qt, *st = bf->st, *o = bf->o;
    nam__attn_geometry(c, item, &g);
    bi = g.bi;
    h0 = g.h0;
    i0 = g.i0;
    rows = g.rows;
    kbase = g.kbase;
    vbase = g.vbase;
    rp = nam__attn_round(nam__attn_round(rows, 6), 16);
    if (item + 1 < c->items) nam__attn_geometry(c, item + 1, &gn);
    else gn.rows = gn.kend = 0;

    /* visible keys per row (monotone in r; padding rows copy the last row) */
    for (r = 0; r < rp; r++) {
        int64_t pos = i0 + (r < rows ? r : rows - 1) / c->gt, n = c->sk;
        if (c->causal) {
            n = pos + c->off + 1;
            n = n < 0 ? 0 : n > c->sk ? c->sk : n;
        }
        bf->vis[r] = n;
        bf->m[r] = -INFINITY;
        bf->l[r] = 0.0f;
    }
    kend = bf->vis[rows - 1];   /* == g.kend */

    /* Qt (dp x rp), scaled into base-2 logits; zero padding. 8 rows at a time, so each
       cache line of Qt is written in one visit. */
    memset(qtb, 0, sizeof(float) * NAM__CAST(size_t, dp * rp));
    for (r = 0; r < rows; r += 8) {
        const float *src[8];
        int64_t n = rows - r < 8 ? rows - r : 8, x;
        for (x = 0; x < n; x++)
            src[x] = nam__attn_row(c, &d->q, c->qs[3], bi * c->qs[0] + (i0 + (r + x) / c->gt) * c->qs[1] + (h0 + (r + x) % c->gt) * c->qs[2], bf->tmp + x * dp);
#if NAM__ATTN_X86
        if (c->simd && n == 8) { nam__attn_qpack8_avx2(src, dp, c->scale2, qtb + r, rp); continue; }
#endif
        for (e = 0; e < hd; e++)
            for (x = 0; x < n; x++) qtb[e * rp + r + x] = src[x][e] * c->scale2;
    }
    memset(o, 0, sizeof(float) * NAM__CAST(size_t, rp * dp));

    for (j0 = 0; j0 < kend; j0 += NAM__ATTN_BC) {
        int64_t jn = kend - j0 < NAM__ATTN_BC ? kend - j0 : NAM__ATTN_BC, ldk, j, rb, call = 0;
        const float *kt;
        nam__attn_pfs pfs;
        if (c->kdirect) {
            kt = NAM__CAST(const float *, d->k.data) + kbase + j0 * c->ks[1];
            ldk = c->ks[1];
        } else {
            for (j = 0; j < jn; j++) {
                const float *src = nam__attn_row(c, &d->k, c->ks[3], kbase + (j0 + j) * c->ks[1], bf->kt + j * dp);
                if (src != bf->kt + j * dp) memcpy(bf->kt + j * dp, src, sizeof(float) * NAM__CAST(size_t, dp));
            }
            kt = bf->kt;
            ldk = dp;
        }

        /* S^T = K Qt, prefetching this tile's V rows meanwhile */
        nam__attn_pf_init(&pfs, rp / 16 * (jn / 6));
        nam__attn_pf_job(&pfs, &d->v, c->vs[3], vbase + j0 * c->vs[1], c->vs[1], 0, 1, jn);
#if NAM__ATTN_X86
        if (c->simd) {
            for (rb = 0; rb < rp; rb += 16) {
                for (j = 0; j + 6 <= jn; j += 6) {
                    nam__attn_qk_6x16(kt + j * ldk, ldk, qtb + rb, rp, dp, st + j * rp + rb, rp);
                    nam__attn_pf_step(c, &pfs, ++call);
                }
                if (j < jn) {
                    int64_t n = jn - j;
                    for (e = 0; e < 6; e++) {
                        if (e < n) memcpy(bf->ktail + e * dp, kt + (j + e) * ldk, sizeof(float) * NAM__CAST(size_t, dp));
                        else memset(bf->ktail + e * dp, 0, sizeof(float) * NAM__CAST(size_t, dp));
                    }
                    nam__attn_qk_6x16(bf->ktail, dp, qtb + rb, rp, dp, st + j * rp + rb, rp);
                }
            }
        } else
#endif
        {
            nam__attn_qk_c(kt, ldk, jn, qtb, rp, dp, rp, st, rp);
            nam__attn_pf_step(c, &pfs, pfs.calls);
        }
        nam__attn_pack_v(c, vbase, j0, jn, bf->vt, bf->tmp);

        /* causal mask on tiles that cross the diagonal: row r sees keys < vis[r] */
        if (c->causal && j0 + jn > bf->vis[0])
            for (j = 0; j < jn; j++)
                for (r = 0; r < rp && bf->vis[r] <= j0 + j; r++) st[j * rp + r] = -INFINITY;

#if NAM__ATTN_X86
        if (c->simd) nam__attn_softmax_avx2(st, rp, jn, rp, bf->m, bf->l, bf->alpha);
        else
#endif
            nam__attn_softmax_c(st, rp, jn, rp, bf->m, bf->l, bf->alpha);

        /* O = alpha O + P V: keys every row of a 6-row block sees in the kernel, the rest row
           by row. Meanwhile prefetch what comes next: the next tile's K rows, or after the
           last tile the next item's Q rows and first K tile. */
        nam__attn_pf_init(&pfs, (rows + 5) / 6);
        if (j0 + NAM__ATTN_BC < kend)
            nam__attn_pf_job(&pfs, &d->k, c->ks[3], kbase + (j0 + NAM__ATTN_BC) * c->ks[1], c->ks[1], 0, 1, kend - j0 - NAM__ATTN_BC < NAM__ATTN_BC ? kend - j0 - NAM__ATTN_BC : NAM__ATTN_BC);
        else if (gn.rows > 0) {
            nam__attn_pf_job(&pfs, &d->q, c->qs[3], gn.bi * c->qs[0] + gn.i0 * c->qs[1] + gn.h0 * c->qs[2], c->qs[1], c->qs[2], c->gt, gn.rows);
            nam__attn_pf_job(&pfs, &d->k, c->ks[3], gn.kbase, c->ks[1], 0, 1, gn.kend < NAM__ATTN_BC ? gn.kend : NAM__ATTN_BC);
        }
        call = 0;
        for (rb = 0; rb < rows; rb += 6) {
            int64_t jc = bf->vis[rb] - j0, rr;
            jc = jc < 0 ? 0 : jc > jn ? jn : jc;
#if NAM__ATTN_X86
            if (c->simd) {
                int64_t p;
                for (p = 0; p * 16 < dp; p++) {
                    const float *panel = bf->vt + p * 16 * NAM__ATTN_BC;
                    if (dp - p * 16 >= 16) nam__attn_pv_6x16(st + rb, rp, panel, 16, jc, bf->alpha + rb, o + rb * dp + p * 16, dp);
                    else nam__attn_pv_6x8(st + rb, rp, panel, 8, jc, bf->alpha + rb, o + rb * dp + p * 16, dp);
                }
            } else
#endif
            {
                for (rr = rb; rr < rb + 6; rr++) {
                    float a = bf->alpha[rr], *orow = o + rr * dp;
                    for (e = 0; e < dp; e++) orow[e] *= a;
                    nam__attn_pv_row_c(st + rr, rp, bf->vt, dp, 0, jc, orow);
                }
            }
            for (rr = rb; rr < rb + 6 && rr < rows; rr++) {
                int64_t je = bf->vis[rr] - j0;
                je = je > jn ? jn : je;
                if (je > jc) nam__attn_pv_row_c(st + rr, rp, bf->vt, dp, jc, je, o + rr * dp);
            }
            nam__attn_pf_step(c, &pfs, ++call);
        }
    }

    /* out = O / l; rows that see no key are 0 */
    for (r = 0; r < rows; r++) {
        int64_t row = bi * c->os[0] + (i0 + r / c->gt) * c->os[1] + (h0 + r % c->gt) * c->os[2];
        float inv = bf->vis[r] > 0 ? 1.0f / bf->l[r] : 0.0f, *orow = o + r * dp;
        if (bf->vis[r] == 0)
            for (e = 0; e < hd; e++) nam__store(d->out.data, d->out.dtype, row + e * c->os[3], 0.0f);
        else if (d->out.dtype == NAM_F32 && c->os[3] == 1) {
            float *dst = NAM__CAST(float *, d->out.data) + row;
            for (e = 0; e < hd; e++) dst[e] = orow[e] * inv;
        } else
            for (e = 0; e < hd; e++) nam__store(d->out.data, d->out.dtype, row + e * c->os[3], orow[e] * inv);
    }
}

/* One thread. With GCC/Clang atomics the threads claim chunks of consecutive items from a
   shared counter (a core slowed by other work does not hold the others up); otherwise each
   thread runs the contiguous range nam__parallel_for gives it. Every item writes only its
   own output rows, so the result does not depend on the schedule. */
static void nam__attn_task(void *ctx, int64_t begin, int64_t end, int thread) {
    nam__attn_ctx *c = NAM__CAST(nam__attn_ctx *, ctx);
    nam__attn_bufs bf;
    int64_t it;
    nam__attn_carve(c, c->ws + NAM__CAST(size_t, thread) * c->per_thread, &bf);
#if defined(__GNUC__) || defined(__clang__)
    (void)begin;
    (void)end;
    for (;;) {
        int64_t stop;
        it = __atomic_fetch_add(&c->next, c->chunk, __ATOMIC_RELAXED);
        if (it >= c->items) break;
        stop = it + c->chunk < c->items ? it + c->chunk : c->items;
        for (; it < stop; it++) nam__attn_item(c, it, &bf);
    }
#else
    for (it = begin; it < end; it++) nam__attn_item(c, it, &bf);
#endif
}

/* ---- reference ------------------------------------------------------------------------------ */
static void nam__attn_ref(const nam_attention_desc *d, char *ws) {
    int64_t qs[NAM_MAX_DIMS], ks[NAM_MAX_DIMS], vs[NAM_MAX_DIMS], os[NAM_MAX_DIMS];
    int64_t b = d->q.shape[0], sq = d->q.shape[1], hq = d->q.shape[2], hd = d->q.shape[3];
    int64_t sk = d->k.shape[1], hk = d->k.shape[2], group = hq / hk, off, bi, h, i, j, e;
    double scale = d->scale != 0.0f ? NAM__CAST(double, d->scale) : 1.0 / sqrt(NAM__CAST(double, hd));
    char *cur = ws;
    double *s = NAM__CAST(double *, nam__ws_take(&cur, sizeof(double) * NAM__CAST(size_t, sk)));
    double *acc = NAM__CAST(double *, nam__ws_take(&cur, sizeof(double) * NAM__CAST(size_t, hd)));
    nam__tensor_strides(&d->q, qs);
    nam__tensor_strides(&d->k, ks);
    nam__tensor_strides(&d->v, vs);
    nam__tensor_strides(&d->out, os);
    off = d->causal && d->align == NAM_CAUSAL_BOTTOM_RIGHT ? sk - sq : 0;
    for (bi = 0; bi < b; bi++)
        for (h = 0; h < hq; h++)
            for (i = 0; i < sq; i++) {
                int64_t kvh = h / group, nv = sk, qrow = bi * qs[0] + i * qs[1] + h * qs[2], orow = bi * os[0] + i * os[1] + h * os[2];
                double m = -INFINITY, l = 0.0;
                if (d->causal) {
                    nv = i + off + 1;
                    nv = nv < 0 ? 0 : nv > sk ? sk : nv;
                }
                if (nv == 0) {
                    for (e = 0; e < hd; e++) nam__store(d->out.data, d->out.dtype, orow + e * os[3], 0.0f);
                    continue;
                }
                for (j = 0; j < nv; j++) {
                    int64_t krow = bi * ks[0] + j * ks[1] + kvh * ks[2];
                    double dot = 0.0;
                    for (e = 0; e < hd; e++)
                        dot += NAM__CAST(double, nam__load(d->q.data, d->q.dtype, qrow + e * qs[3])) * NAM__CAST(double, nam__load(d->k.data, d->k.dtype, krow + e * ks[3]));
                    s[j] = dot * scale;
                    if (s[j] > m) m = s[j];
                }
                for (e = 0; e < hd; e++) acc[e] = 0.0;
                for (j = 0; j < nv; j++) {
                    int64_t vrow = bi * vs[0] + j * vs[1] + kvh * vs[2];
                    double p = exp(s[j] - m);
                    l += p;
                    for (e = 0; e < hd; e++) acc[e] += p * NAM__CAST(double, nam__load(d->v.data, d->v.dtype, vrow + e * vs[3]));
                }
                for (e = 0; e < hd; e++) nam__store(d->out.data, d->out.dtype, orow + e * os[3], NAM__CAST(float, acc[e] / l));
            }
}

/* ---- public ---------------------------------------------------------------------------------- */
static size_t nam__attn_ws_bytes(const nam_attention_desc *d, nam_backend be, nam__attn_ctx *c) {
    int64_t threads;
    if (be == NAM_BACKEND_CPU_REF)
        return nam__ws_need(sizeof(double) * NAM__CAST(size_t, d->k.shape[1])) + nam__ws_need(sizeof(double) * NAM__CAST(size_t, d->q.shape[3]));
    nam__attn_setup(d, c);
    threads = nam__resolve_threads(d->threads);
    if (threads > c->items) threads = c->items;
    return NAM__CAST(size_t, threads) * c->per_thread;
}

NAM__DEF nam_status nam_attention_workspace_size(const nam_attention_desc *d, size_t *bytes, nam_error *err) {
    nam_backend be;
    nam_status st;
    nam__attn_ctx c;
    if (!bytes) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_attention_workspace_size: bytes is NULL");
    *bytes = 0;
    if ((st = nam__attn_check(d, &be, err)) != NAM_OK) return st;
    *bytes = nam__attn_ws_bytes(d, be, &c);
    return NAM_OK;
}

NAM__DEF nam_status nam_attention(nam_attention_desc *d, void *workspace, size_t workspace_bytes, nam_error *err) {
    nam_backend be;
    nam_status st;
    nam__attn_ctx c;
    size_t need;
    int threads;
    if ((st = nam__attn_check(d, &be, err)) != NAM_OK) return st;
    need = nam__attn_ws_bytes(d, be, &c);
    if ((st = nam__ws_check(workspace, workspace_bytes, need, "nam_attention", err)) != NAM_OK) return st;
    d->ran = be;
    if (be == NAM_BACKEND_CPU_REF) {
        nam__attn_ref(d, NAM__CAST(char *, workspace));
        return NAM_OK;
    }
    c.ws = NAM__CAST(char *, workspace);
    threads = nam__resolve_threads(d->threads);
    if (threads > c.items) threads = NAM__CAST(int, c.items);
    c.next = 0;
    c.chunk = c.items / (16 * NAM__CAST(int64_t, threads));
    if (c.chunk < 1) c.chunk = 1;
#if defined(__GNUC__) || defined(__clang__)
    nam__parallel_for(threads, threads, nam__attn_task, &c);
#else
    nam__parallel_for(c.items, threads, nam__attn_task, &c);
#endif
    return NAM_OK;
}
