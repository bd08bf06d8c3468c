/* test_moe.c - the MoE kernels (nam.h (>>kernel-moe)): router, dispatch plan, permute, combine and
   the grouped expert FFN, against plain references written here, plus bad-input errors.

   References and tolerances:
   - router: an independent per-token loop (fp64 scores, repeated arg-max selection with
     ties to the lower index). Indices must match exactly; weights within 1e-6 absolute.
   - dispatch: a per-expert scan of topk_idx in token order (Megatron's routing_map.T
     order), capacity ceil(T*k/E*cf) keeping the first rows in token order. Exact.
   - permute -> unweighted combine with k = 1: bit-exact identity (memcmp, -0.0 included).
   - weighted combine: a loop over (t, slot) in fp64; max abs err <= 1e-6 * scale.
   - FFN: the fast path (NAM_BACKEND_CPU: AVX2 streaming kernels and the nam__sgemm path,
     1..3 threads) against NAM_BACKEND_CPU_REF (fp64 loops):
       f32:  max |fast - ref| <= 1e-4 * scale,  scale = max |ref| over the output;
       bf16 storage (in, weights, out): max |fast - ref| <= 1/64 * scale (out is rounded
       to bf16 by both: at most one bf16 ulp, 2^-8 relative, apart, plus f32 vs fp64 sums).
     The reference itself is checked once against a dense per-token loop written here.
   Output: "ok <desc>" / "FAIL <desc>: <why>" / "skip <desc>: <reason>", then
   "test_moe: N passed, M failed"; exit status 1 on any failure.
   --dump DIR writes a few routed MoE layers (raw little-endian f32/i32 files and
   DIR/manifest.txt) for tests/xcheck_moe.py.

   gcc -std=c99 -O2 -Wall -Wextra -Werror -pedantic -I/usr/include/stb tests/test_moe.c -o build/test_moe -lstb -lm -lpthread */
#define NAM_IMPLEMENTATION
#include "test.h"

static float *falloc(int64_t n) { return NAM__CAST(float *, test_alloc(sizeof(float) * NAM__CAST(size_t, n))); }
static int32_t *ialloc(int64_t n) { return NAM__CAST(int32_t *, test_alloc(sizeof(int32_t) * NAM__CAST(size_t, n))); }

static nam_tensor T1(void *p, nam_dtype dt, int64_t a) { int64_t s[1]; s[0] = a; return nam_tensor_make(p, dt, 1, s); }
static nam_tensor T2(void *p, nam_dtype dt, int64_t a, int64_t b) { int64_t s[2]; s[0] = a; s[1] = b; return nam_tensor_make(p, dt, 2, s); }
static nam_tensor T3(void *p, nam_dtype dt, int64_t a, int64_t b, int64_t c) { int64_t s[3]; s[0] = a; s[1] = b; s[2] = c; return nam_tensor_make(p, dt, 3, s); }

/* Expect status `code` and (when needle) a message containing it. */

/* ---- router reference ---------------------------------------------------------------- */
static void ref_route(const float *logits, const float *bias, int T, int E, int k, int score, int pre, float scaling, int32_t *idx, float *w) {
    double *sc = NAM__CAST(double *, malloc(sizeof(double) * NAM__CAST(size_t, E))), *sel = NAM__CAST(double *, malloc(sizeof(double) * NAM__CAST(size_t, E)));
    char *used = NAM__CAST(char *, malloc(NAM__CAST(size_t, E)));
    int t, e, j;
    for (t = 0; t < T; t++) {
        const float *l = logits + NAM__CAST(size_t, t) * NAM__CAST(size_t, E);
        double mx = l[0], z = 0.0;
        for (e = 1; e < E; e++) if (l[e] > mx) mx = l[e];
        for (e = 0; e < E; e++) {
            if (score == 1) { sc[e] = (float)(1.0 / (1.0 + exp(-(double)l[e]))); sel[e] = (float)((float)sc[e] + (bias ? bias[e] : 0.0f)); }
            else if (pre) { z += exp(l[e] - mx); }
            else sc[e] = sel[e] = l[e];
        }
        if (score == 0 && pre) for (e = 0; e < E; e++) sc[e] = sel[e] = (float)(exp(l[e] - mx) / z);
        memset(used, 0, NAM__CAST(size_t, E));
        for (j = 0; j < k; j++) {
            int best = -1;
            for (e = 0; e < E; e++) if (!used[e] && (best < 0 || sel[e] > sel[best])) best = e;
            used[best] = 1;
            idx[t * k + j] = best;
        }
        if (score == 0 && !pre) {
            double top = sc[idx[t * k]], s = 0.0;
            for (j = 0; j < k; j++) s += exp(sc[idx[t * k + j]] - top);
            for (j = 0; j < k; j++) w[t * k + j] = (float)(exp(sc[idx[t * k + j]] - top) / s);
        } else if (score == 0) {
            for (j = 0; j < k; j++) w[t * k + j] = (float)sc[idx[t * k + j]];
        } else {
            double s = 0.0;
            for (j = 0; j < k; j++) s += sc[idx[t * k + j]];
            for (j = 0; j < k; j++) w[t * k + j] = (float)(k > 1 ? sc[idx[t * k + j]] / (s + 1e-20) : sc[idx[t * k + j]]);
        }
        for (j = 0; j < k; j++) w[t * k + j] *= scaling == 0.0f ? 1.0f : scaling;
    }
    free(sc); free(sel); free(used);
}

static nam_status run_route(float *logits, float *bias, int T, int E, int k, int score, int pre, float scaling, int32_t *idx, float *w, nam_error *e) {
    nam_moe_route_desc d;
    memset(&d, 0, sizeof d);
    d.logits = T2(logits, NAM_F32, T, E);
    if (bias) d.expert_bias = T1(bias, NAM_F32, E);
    d.topk_idx = T2(idx, NAM_I32, T, k);
    d.topk_weight = T2(w, NAM_F32, T, k);
    d.topk = k;
    d.score = score ? NAM_MOE_SIGMOID : NAM_MOE_SOFTMAX;
    d.pre_softmax = pre;
    d.scaling_factor = scaling;
    return nam_moe_route(&d, e);
}

static void route_case(const char *name, float *logits, float *bias, int T, int E, int k, int score, int pre, float scaling) {
    int32_t *idx = ialloc(T * k), *ri = ialloc(T * k);
    float *w = falloc(T * k), *rw = falloc(T * k);
    nam_error e;
    nam_status st = run_route(logits, bias, T, E, k, score, pre, scaling, idx, w, &e);
    int i, bad = -1, nan = 0;
    double worst = 0.0;
    char desc[200];
    ref_route(logits, bias, T, E, k, score, pre, scaling, ri, rw);
    for (i = 0; i < T * k; i++) {
        double d = fabs((double)w[i] - rw[i]);
        if (w[i] != w[i]) nan = 1;
        if (idx[i] != ri[i] && bad < 0) bad = i;
        if (d > worst) worst = d;
    }
    snprintf(desc, sizeof desc, "route %s (T=%d E=%d k=%d): indices exact, weights within 1e-6, no NaN", name, T, E, k);
    CHECK(st == NAM_OK && bad < 0 && worst <= 1e-6 && !nan, desc, "status %s '%s', first index mismatch %d (%d vs %d), max weight err %g, nan %d",
          nam_status_str(st), e.message, bad, bad >= 0 ? idx[bad] : 0, bad >= 0 ? ri[bad] : 0, worst, nan);
    free(idx); free(ri); free(w); free(rw);
}

static void test_route(void) {
    int T = 37, E = 16, i, t, j;
    float *lg = falloc(T * E), *bias = falloc(E), *big = falloc(8 * 6);
    int32_t idx[64];
    float w[64];
    nam_error e;
    nam_status st;
    for (i = 0; i < T * E; i++) lg[i] = 3.0f * test_rand();
    for (i = 0; i < E; i++) bias[i] = 0.5f * test_rand();
    route_case("softmax", lg, NULL, T, E, 4, 0, 0, 0.0f);
    route_case("pre-softmax", lg, NULL, T, E, 4, 0, 1, 0.0f);
    route_case("sigmoid", lg, NULL, T, E, 4, 1, 0, 0.0f);
    route_case("sigmoid + expert_bias", lg, bias, T, E, 4, 1, 0, 0.0f);
    route_case("sigmoid k=1 (no renormalisation)", lg, bias, T, E, 1, 1, 0, 0.0f);
    route_case("softmax scaling_factor 2.5", lg, NULL, T, E, 3, 0, 0, 2.5f);
    route_case("sigmoid scaling_factor 2.5", lg, bias, T, E, 3, 1, 0, 2.5f);
    route_case("softmax top-k == E", lg, NULL, T, E, E, 0, 0, 0.0f);
    route_case("pre-softmax top-k == E", lg, NULL, T, E, E, 0, 1, 0.0f);
    route_case("sigmoid top-k == E", lg, NULL, T, E, E, 1, 0, 0.0f);
    route_case("E=1 k=1", lg, NULL, T, 1, 1, 0, 0, 0.0f);
    /* huge and very negative logits: no overflow, no NaN */
    for (i = 0; i < 8 * 6; i++) big[i] = (i % 3 == 0) ? 1e30f : (i % 3 == 1) ? -1e30f : 1e29f * test_rand();
    big[5] = 3.0e38f;
    big[6] = -3.0e38f;
    route_case("softmax huge logits (+-1e30, 3e38)", big, NULL, 8, 6, 3, 0, 0, 0.0f);
    route_case("pre-softmax huge logits", big, NULL, 8, 6, 3, 0, 1, 0.0f);
    route_case("sigmoid huge logits", big, NULL, 8, 6, 3, 1, 0, 0.0f);
    for (i = 0; i < 8 * 6; i++) big[i] = -1e30f;
    route_case("softmax all logits -1e30", big, NULL, 8, 6, 2, 0, 0, 0.0f);
    route_case("sigmoid all logits -1e30 (sum 0 + 1e-20)", big, NULL, 8, 6, 2, 1, 0, 0.0f);
    /* ties: equal logits pick the lower index, in order */
    memset(big, 0, sizeof(float) * 48);
    st = run_route(big, NULL, 8, 6, 4, 0, 0, 0.0f, idx, w, &e);
    for (t = 0, i = 1; t < 8; t++)
        for (j = 0; j < 4; j++) if (idx[t * 4 + j] != j || fabsf(w[t * 4 + j] - 0.25f) > 1e-7f) i = 0;
    CHECK(st == NAM_OK && i, "route ties pick the lower expert index (all-equal logits -> 0,1,2,3, weights 1/4)", "status %s, idx row0 %d %d %d %d",
          nam_status_str(st), idx[0], idx[1], idx[2], idx[3]);
    /* bf16 logits and a strided (column-padded) weight output */
    {
        uint16_t lb[4 * 5];
        float lf[4 * 5], wpad[4 * 8];
        int32_t ipad[4 * 8], ri[4 * 2];
        float rw[4 * 2];
        nam_moe_route_desc d;
        int okk = 1;
        for (i = 0; i < 20; i++) { lb[i] = nam__f32_to_bf16(2.0f * test_rand()); lf[i] = nam__bf16_to_f32(lb[i]); }
        memset(&d, 0, sizeof d);
        d.logits = T2(lb, NAM_BF16, 4, 5);
        d.topk_idx = T2(ipad, NAM_I32, 4, 2);
        d.topk_idx.stride[0] = 8; d.topk_idx.stride[1] = 3;
        d.topk_weight = T2(wpad, NAM_F32, 4, 2);
        d.topk_weight.stride[0] = 8; d.topk_weight.stride[1] = 3;
        d.topk = 2;
        d.backend = NAM_BACKEND_CPU_REF;
        st = nam_moe_route(&d, &e);
        ref_route(lf, NULL, 4, 5, 2, 0, 0, 0.0f, ri, rw);
        for (t = 0; t < 4; t++) for (j = 0; j < 2; j++) if (ipad[t * 8 + j * 3] != ri[t * 2 + j] || fabsf(wpad[t * 8 + j * 3] - rw[t * 2 + j]) > 1e-6f) okk = 0;
        CHECK(st == NAM_OK && okk && d.ran == NAM_BACKEND_CPU_REF, "route bf16 logits, strided topk_idx/topk_weight, backend cpu-ref reported",
              "status %s '%s', ok %d, ran %s", nam_status_str(st), e.message, okk, nam_backend_name(d.ran));
    }
    /* errors */
    {
        nam_moe_route_desc d, b;
        memset(&b, 0, sizeof b);
        b.logits = T2(lg, NAM_F32, T, E);
        b.topk_idx = T2(ialloc(T * (E + 1)), NAM_I32, T, 4);
        b.topk_weight = T2(falloc(T * (E + 1)), NAM_F32, T, 4);
        b.topk = 4;
        d = b; d.topk = E + 1; d.topk_idx.shape[1] = E + 1; d.topk_weight.shape[1] = E + 1;
        test_expect("route error: topk > E names topk and E", nam_moe_route(&d, &e), &e, NAM_ERR_RANGE, "topk = 17 is out of range: it must be 1..E, and E = logits.shape[1] = 16");
        d = b; d.topk = 0;
        test_expect("route error: topk = 0", nam_moe_route(&d, &e), &e, NAM_ERR_RANGE, "topk = 0");
        d = b; d.topk_idx.dtype = NAM_F32;
        test_expect("route error: topk_idx not i32", nam_moe_route(&d, &e), &e, NAM_ERR_INVALID_ARG, "topk_idx: dtype f32, expected i32");
        d = b; d.topk_weight.dtype = NAM_BF16;
        test_expect("route error: topk_weight not f32", nam_moe_route(&d, &e), &e, NAM_ERR_INVALID_ARG, "topk_weight: dtype bf16, expected f32");
        d = b; d.topk_idx.shape[0] = T + 1;
        test_expect("route error: topk_idx rows != T", nam_moe_route(&d, &e), &e, NAM_ERR_INVALID_ARG, "topk_idx.shape[0] (T) = 38, but logits.shape[0] = 37");
        d = b; d.topk_weight.shape[1] = 3;
        test_expect("route error: topk_weight columns != topk", nam_moe_route(&d, &e), &e, NAM_ERR_INVALID_ARG, "topk_weight.shape[1] (k) = 3, but topk = 4");
        d = b; d.logits.data = NULL;
        test_expect("route error: NULL logits", nam_moe_route(&d, &e), &e, NAM_ERR_INVALID_ARG, "logits: data is NULL");
        d = b; d.logits.shape[1] = 0;
        test_expect("route error: zero E", nam_moe_route(&d, &e), &e, NAM_ERR_RANGE, "logits.shape[1] = 0");
        d = b; d.logits.ndim = 3;
        test_expect("route error: logits 3-D", nam_moe_route(&d, &e), &e, NAM_ERR_INVALID_ARG, "logits: 3 dimensions, expected 2");
        d = b; d.logits.device = NAM_DEVICE_CUDA;
        test_expect("route error: CUDA logits -> NOT_IMPLEMENTED", nam_moe_route(&d, &e), &e, NAM_ERR_NOT_IMPLEMENTED, "CUDA");
        d = b; d.backend = NAM_BACKEND_CUDA;
        test_expect("route error: CUDA backend -> NOT_IMPLEMENTED", nam_moe_route(&d, &e), &e, NAM_ERR_NOT_IMPLEMENTED, "CUDA");
        d = b; d.expert_bias = T1(bias, NAM_F32, E);
        test_expect("route error: expert_bias with softmax", nam_moe_route(&d, &e), &e, NAM_ERR_INVALID_ARG, "sigmoid score only");
        d = b; d.score = NAM_MOE_SIGMOID; d.expert_bias = T1(bias, NAM_F32, E - 1);
        test_expect("route error: expert_bias shape", nam_moe_route(&d, &e), &e, NAM_ERR_INVALID_ARG, "expert_bias.shape[0] (E) = 15");
        d = b; d.score = NAM_MOE_SIGMOID; d.pre_softmax = 1;
        test_expect("route error: pre_softmax with sigmoid", nam_moe_route(&d, &e), &e, NAM_ERR_INVALID_ARG, "pre_softmax");
        d = b; d.score = NAM__CAST(nam_moe_score, 7);
        test_expect("route error: bad score enum", nam_moe_route(&d, &e), &e, NAM_ERR_INVALID_ARG, "score = 7");
        d = b; d.scaling_factor = NAM__CAST(float, HUGE_VAL);
        test_expect("route error: infinite scaling_factor", nam_moe_route(&d, &e), &e, NAM_ERR_RANGE, "scaling_factor");
        lg[3 * E + 5] = NAM__CAST(float, nan(""));
        d = b;
        test_expect("route error: NaN logit named by token and expert", nam_moe_route(&d, &e), &e, NAM_ERR_RANGE, "logits[3, 5] = nan is not finite");
        lg[3 * E + 5] = 0.0f;
        test_expect("route error: NULL desc", nam_moe_route(NULL, &e), &e, NAM_ERR_INVALID_ARG, "desc is NULL");
        free(b.topk_idx.data); free(b.topk_weight.data);
    }
    free(lg); free(bias); free(big);
}

/* ---- dispatch ------------------------------------------------------------------------ */
typedef struct plan_buf { int32_t *counts, *offsets, *rows; nam_moe_dispatch_desc d; } plan_buf;

static nam_status make_plan(plan_buf *p, int32_t *idx, int T, int k, int E, float cf, nam_error *e) {
    memset(p, 0, sizeof *p);
    p->counts = ialloc(E);
    p->offsets = ialloc(E + 1);
    p->rows = ialloc(NAM__CAST(int64_t, T) * k);
    p->d.topk_idx = T2(idx, NAM_I32, T, k);
    p->d.num_experts = E;
    p->d.capacity_factor = cf;
    p->d.counts = T1(p->counts, NAM_I32, E);
    p->d.offsets = T1(p->offsets, NAM_I32, E + 1);
    p->d.rows = T1(p->rows, NAM_I32, NAM__CAST(int64_t, T) * k);
    return nam_moe_dispatch(&p->d, e);
}
static void free_plan(plan_buf *p) { free(p->counts); free(p->offsets); free(p->rows); }

/* Megatron order: expert-major, ascending token within an expert; capacity keeps the first. */
static int check_plan(const plan_buf *p, const int32_t *idx, int T, int k, int E, float cf, char *why, size_t wn) {
    int e, t, s, j = 0, dropped = 0;
    int64_t cap = NAM__CAST(int64_t, T) * k;
    if (cf > 0) { double c = ceil((double)T * k / E * cf); if (c < (double)cap) cap = (int64_t)c; }
    for (e = 0; e < E; e++) {
        int n = 0;
        if (p->offsets[e] != j) { snprintf(why, wn, "offsets[%d] = %d, want %d", e, p->offsets[e], j); return 0; }
        for (t = 0; t < T; t++)
            for (s = 0; s < k; s++)
                if (idx[t * k + s] == e) {
                    if (n < cap) {
                        if (p->rows[j] != t * k + s) { snprintf(why, wn, "rows[%d] = %d, want %d", j, p->rows[j], t * k + s); return 0; }
                        j++;
                    } else dropped++;
                    n++;
                }
        if (p->counts[e] != p->offsets[e + 1] - p->offsets[e] || p->counts[e] != (n < cap ? n : cap)) {
            snprintf(why, wn, "counts[%d] = %d, want %d", e, p->counts[e], (int)(n < cap ? n : cap));
            return 0;
        }
    }
    if (p->offsets[E] != j || p->d.num_rows != j || p->d.num_dropped != dropped) {
        snprintf(why, wn, "offsets[E] %d num_rows %d num_dropped %d, want %d %d %d", p->offsets[E], p->d.num_rows, p->d.num_dropped, j, j, dropped);
        return 0;
    }
    for (; j < T * k; j++) if (p->rows[j] != -1) { snprintf(why, wn, "rows[%d] = %d past the kept rows, want -1", j, p->rows[j]); return 0; }
    return 1;
}

static void dispatch_case(const char *name, int32_t *idx, int T, int k, int E, float cf) {
    plan_buf p;
    nam_error e;
    char why[256] = "", desc[200];
    nam_status st = make_plan(&p, idx, T, k, E, cf, &e);
    int ok = st == NAM_OK && check_plan(&p, idx, T, k, E, cf, why, sizeof why);
    snprintf(desc, sizeof desc, "dispatch %s (T=%d k=%d E=%d cf=%g): counts, offsets, stable rows, drops", name, T, k, E, (double)cf);
    CHECK(ok, desc, "status %s '%s' %s", nam_status_str(st), e.message, why);
    free_plan(&p);
}

static void test_dispatch(void) {
    int T = 53, k = 3, E = 9, t, s, i;
    int32_t *idx = ialloc(T * k);
    plan_buf p;
    nam_error e;
    nam_status st;
    float *lg = falloc(T * E), *w = falloc(T * k);
    for (i = 0; i < T * E; i++) lg[i] = test_rand();
    for (i = 0; i < T; i++) lg[i * E + 4] = -5.0f;   /* expert 4 is never chosen */
    run_route(lg, NULL, T, E, k, 0, 0, 0.0f, idx, w, &e);
    dispatch_case("routed, expert 4 receives no tokens", idx, T, k, E, 0.0f);
    st = make_plan(&p, idx, T, k, E, 0.0f, &e);
    CHECK(st == NAM_OK && p.counts[4] == 0 && p.offsets[4] == p.offsets[5], "dispatch: the expert with no tokens has count 0 and an empty segment",
          "count %d", p.counts[4]);
    free_plan(&p);
    dispatch_case("routed, capacity factor 1.0 (drops)", idx, T, k, E, 1.0f);
    dispatch_case("routed, capacity factor 0.5", idx, T, k, E, 0.5f);
    dispatch_case("routed, capacity factor 10 (no drops)", idx, T, k, E, 10.0f);
    for (t = 0; t < T; t++) for (s = 0; s < k; s++) idx[t * k + s] = NAM__CAST(int32_t, (s + 2) % E);
    dispatch_case("every token to the same experts", idx, T, k, E, 0.0f);
    for (t = 0; t < T * k; t++) idx[t] = test_randi(E);   /* duplicates within a token allowed */
    dispatch_case("random ids with repeats inside a token", idx, T, k, E, 0.0f);
    dispatch_case("random ids, capacity 1.3", idx, T, k, E, 1.3f);
    {   /* exact counts: T=10, k=2, E=4, cf=1 -> capacity ceil(20/4) = 5; expert 0 gets 10
           (5 dropped), expert 1 gets 6 (1 dropped), expert 2 gets 4, expert 3 none */
        int32_t id2[20];
        for (t = 0; t < 10; t++) { id2[t * 2] = 0; id2[t * 2 + 1] = t < 6 ? 1 : 2; }
        id2[19] = 2; id2[17] = 2;
        st = make_plan(&p, id2, 10, 2, 4, 1.0f, &e);
        CHECK(st == NAM_OK && p.counts[0] == 5 && p.counts[1] == 5 && p.counts[2] == 4 && p.counts[3] == 0 && p.d.num_dropped == 6 && p.d.num_rows == 14 &&
                  p.rows[0] == 0 && p.rows[4] == 8 && p.rows[5] == 1 && p.rows[9] == 9,
              "dispatch capacity: exact kept and dropped counts (cap 5: 5+5+4+0 kept, 6 dropped)",
              "status %s counts %d %d %d %d dropped %d rows %d (row0 %d row4 %d row5 %d)", nam_status_str(st), p.counts[0], p.counts[1], p.counts[2], p.counts[3],
              p.d.num_dropped, p.d.num_rows, p.rows[0], p.rows[4], p.rows[5]);
        {   /* issue 9: the desc reports the capacity that was applied (T * k without a factor) */
            int cap1 = p.d.capacity, cap0;
            free_plan(&p);
            st = make_plan(&p, id2, 10, 2, 4, 0.0f, &e);
            cap0 = p.d.capacity;
            CHECK(cap1 == 5 && st == NAM_OK && cap0 == 20, "dispatch reports the capacity applied: 5 with cf 1, T * k = 20 without a factor",
                  "capacity %d and %d: %s", cap1, cap0, e.message);
        }
        free_plan(&p);
        for (t = 0; t < 20; t++) id2[t] = 3;
        st = make_plan(&p, id2, 20, 1, 4, 0.0f, &e);
        CHECK(st == NAM_OK && p.counts[3] == 20 && p.offsets[3] == 0 && p.rows[0] == 0 && p.rows[19] == 19, "dispatch: all tokens to one expert (stable order 0..19)",
              "status %s", nam_status_str(st));
        free_plan(&p);
    }
    /* errors */
    idx[7 * k + 2] = E;
    st = make_plan(&p, idx, T, k, E, 0.0f, &e);
    test_expect("dispatch error: expert id == E names token, slot and value", st, &e, NAM_ERR_RANGE, "topk_idx[7, 2] = 9 is not an expert id (0..8): token 7, slot 2");
    free_plan(&p);
    idx[7 * k + 2] = -1;
    st = make_plan(&p, idx, T, k, E, 0.0f, &e);
    test_expect("dispatch error: negative expert id", st, &e, NAM_ERR_RANGE, "topk_idx[7, 2] = -1");
    free_plan(&p);
    idx[7 * k + 2] = 0;
    st = make_plan(&p, idx, T, k, E, -1.0f, &e);
    test_expect("dispatch error: negative capacity factor", st, &e, NAM_ERR_RANGE, "capacity_factor = -1");
    free_plan(&p);
    st = make_plan(&p, idx, T, k, 0, 0.0f, &e);
    test_expect("dispatch error: num_experts 0", st, &e, NAM_ERR_RANGE, "num_experts = 0");
    free_plan(&p);
    make_plan(&p, idx, T, k, E, 0.0f, &e);
    p.d.rows.shape[0] = T * k - 1;
    test_expect("dispatch error: rows shorter than T*k", nam_moe_dispatch(&p.d, &e), &e, NAM_ERR_INVALID_ARG, "rows.shape[0] (T*k) = 158, but topk_idx T * k = 159");
    p.d.rows.shape[0] = T * k;
    p.d.counts.shape[0] = E + 1;
    test_expect("dispatch error: counts shape", nam_moe_dispatch(&p.d, &e), &e, NAM_ERR_INVALID_ARG, "counts.shape[0] (E) = 10, but num_experts = 9");
    p.d.counts.shape[0] = E;
    p.d.offsets.dtype = NAM_F32;
    test_expect("dispatch error: offsets not i32", nam_moe_dispatch(&p.d, &e), &e, NAM_ERR_INVALID_ARG, "offsets: dtype f32, expected i32");
    p.d.offsets.dtype = NAM_I32;
    p.d.topk_idx.data = NULL;
    test_expect("dispatch error: NULL topk_idx", nam_moe_dispatch(&p.d, &e), &e, NAM_ERR_INVALID_ARG, "topk_idx: data is NULL");
    p.d.topk_idx.data = idx;
    p.d.topk_idx.shape[0] = 0;
    test_expect("dispatch error: zero tokens", nam_moe_dispatch(&p.d, &e), &e, NAM_ERR_RANGE, "topk_idx.shape[0] = 0");
    p.d.topk_idx.shape[0] = T;
    p.d.topk_idx.device = NAM_DEVICE_CUDA;
    test_expect("dispatch error: CUDA topk_idx -> NOT_IMPLEMENTED", nam_moe_dispatch(&p.d, &e), &e, NAM_ERR_NOT_IMPLEMENTED, "CUDA");
    test_expect("dispatch error: NULL desc", nam_moe_dispatch(NULL, &e), &e, NAM_ERR_INVALID_ARG, "desc is NULL");
    free_plan(&p);
    free(idx); free(lg); free(w);
}

/* ---- permute / combine --------------------------------------------------------------- */
static void test_permute_combine(void) {
    int T = 41, H = 37, E = 7, k, t, h, i;
    int32_t *idx = ialloc(T * 70);
    float *x = falloc(T * H), *perm = falloc(T * 70 * H), *y = falloc(T * H), *wt = falloc(T * 70), *lg = falloc(T * 80);
    plan_buf p;
    nam_error e;
    nam_status st;
    nam_tensor tx = T2(x, NAM_F32, T, H), tp, ty = T2(y, NAM_F32, T, H), tw;
    for (i = 0; i < T * H; i++) x[i] = test_rand();
    x[0] = -0.0f; x[1] = 1e-40f; x[2] = -1e-42f; x[3] = 3.0e38f;
    /* k = 1: permute then unweighted combine is the identity, bit for bit */
    for (t = 0; t < T; t++) idx[t] = test_randi(E);
    make_plan(&p, idx, T, 1, E, 0.0f, &e);
    tp = T2(perm, NAM_F32, T, H);
    st = nam_moe_permute(&tx, &p.d, &tp, &e);
    for (i = 0; i < T * H; i++) y[i] = 12345.0f;
    if (st == NAM_OK) st = nam_moe_combine(&tp, &p.d, NULL, &ty, &e);
    CHECK(st == NAM_OK && !memcmp(x, y, sizeof(float) * NAM__CAST(size_t, T * H)), "permute -> combine (k=1, no weights) is the bit-exact identity (-0.0, denormals, 3e38)",
          "status %s '%s'", nam_status_str(st), e.message);
    {   /* permuted rows are the tokens in plan order */
        int ok = 1;
        for (i = 0; i < p.d.num_rows; i++) if (memcmp(perm + i * H, x + (p.rows[i]) * H, sizeof(float) * NAM__CAST(size_t, H))) ok = 0;
        CHECK(ok, "permute gathers tokens[rows[j] / k] into row j", "mismatch");
    }
    free_plan(&p);
    /* weighted combine with drops (k=3, capacity 0.6) vs a loop; strided bf16 variants */
    for (k = 3; k <= 70; k += 67) {
        int Ek = k == 3 ? E : 80, bad = 0;
        double worst = 0.0, scale = 0.0;
        char desc[160];
        for (i = 0; i < T * Ek; i++) lg[i] = test_rand();
        run_route(lg, NULL, T, Ek, k, 0, 0, 0.0f, idx, wt, &e);
        make_plan(&p, idx, T, k, Ek, k == 3 ? 0.6f : 0.0f, &e);
        tp = T2(perm, NAM_F32, NAM__CAST(int64_t, T) * k, H);
        for (i = 0; i < T * k * H; i++) perm[i] = test_rand();
        tw = T2(wt, NAM_F32, T, k);
        st = nam_moe_combine(&tp, &p.d, &tw, &ty, &e);
        for (t = 0; t < T; t++)
            for (h = 0; h < H; h++) {
                double r = 0.0;
                for (i = 0; i < p.d.num_rows; i++)
                    if (p.rows[i] / k == t) r += (double)wt[p.rows[i]] * perm[i * H + h];
                if (fabs(r) > scale) scale = fabs(r);
                if (fabs(r - y[t * H + h]) > worst) worst = fabs(r - y[t * H + h]);
            }
        snprintf(desc, sizeof desc, "weighted combine k=%d (%d dropped) vs loop: max err <= 1e-6 * scale", k, p.d.num_dropped);
        CHECK(st == NAM_OK && worst <= 1e-6 * scale && (k != 3 || p.d.num_dropped > 0), desc, "status %s '%s' err %g scale %g dropped %d", nam_status_str(st), e.message, worst, scale, p.d.num_dropped);
        if (k == 3) {
            /* the same through the generic path: bf16 expert_out, strided f32 out */
            uint16_t *pb = NAM__CAST(uint16_t *, test_alloc(2 * NAM__CAST(size_t, T * k * H)));
            float *ys = falloc(T * 2 * H);
            nam_tensor tb = T2(pb, NAM_BF16, NAM__CAST(int64_t, T) * k, H), tys = T2(ys, NAM_F32, T, H);
            tys.stride[0] = 2 * H; tys.stride[1] = 2;
            for (i = 0; i < T * k * H; i++) { pb[i] = nam__f32_to_bf16(perm[i]); perm[i] = nam__bf16_to_f32(pb[i]); }
            st = nam_moe_combine(&tp, &p.d, &tw, &ty, &e);
            if (st == NAM_OK) st = nam_moe_combine(&tb, &p.d, &tw, &tys, &e);
            for (t = 0; t < T * H && st == NAM_OK; t++) if (ys[(t / H) * 2 * H + (t % H) * 2] != y[t]) bad++;
            CHECK(st == NAM_OK && bad == 0, "combine generic path (bf16 expert_out, strided out) equals the f32 path exactly", "status %s, %d mismatches", nam_status_str(st), bad);
            free(pb); free(ys);
        }
        free_plan(&p);
    }
    /* token with every slot dropped -> zeros; permute to bf16 */
    {
        int32_t id2[6] = {0, 0, 0, 0, 0, 0};
        float xx[6 * 3], yy[6 * 3], pp[6 * 3];
        uint16_t pb[6 * 3];
        nam_tensor a = T2(xx, NAM_F32, 6, 3), b = T2(pp, NAM_F32, 6, 3), c = T2(yy, NAM_F32, 6, 3), bb = T2(pb, NAM_BF16, 6, 3);
        int ok = 1;
        for (i = 0; i < 18; i++) { xx[i] = 1.0f + (float)i; yy[i] = -7.0f; }
        make_plan(&p, id2, 6, 1, 2, 1.0f, &e);   /* capacity ceil(6/2) = 3: tokens 3..5 dropped */
        st = nam_moe_permute(&a, &p.d, &b, &e);
        if (st == NAM_OK) st = nam_moe_combine(&b, &p.d, NULL, &c, &e);
        for (i = 0; i < 18; i++) if (yy[i] != (i < 9 ? xx[i] : 0.0f)) ok = 0;
        CHECK(st == NAM_OK && ok && p.d.num_dropped == 3, "combine: dropped tokens give zeros, kept tokens pass through", "status %s dropped %d", nam_status_str(st), p.d.num_dropped);
        st = nam_moe_permute(&a, &p.d, &bb, &e);
        ok = 1;
        for (i = 0; i < 9; i++) if (nam__bf16_to_f32(pb[i]) != xx[i]) ok = 0;
        CHECK(st == NAM_OK && ok, "permute f32 tokens into bf16 rows", "status %s", nam_status_str(st));
        /* errors */
        b.shape[0] = 2;
        test_expect("permute error: permuted rows < kept rows", nam_moe_permute(&a, &p.d, &b, &e), &e, NAM_ERR_INVALID_ARG, "permuted.shape[0] (rows) = 2, but the plan keeps 3 rows");
        b.shape[0] = 6;
        b.shape[1] = 4;
        test_expect("permute error: H mismatch", nam_moe_permute(&a, &p.d, &b, &e), &e, NAM_ERR_INVALID_ARG, "permuted.shape[1] (H) = 4, but tokens.shape[1] = 3");
        b.shape[1] = 3;
        a.shape[0] = 5;
        test_expect("permute error: tokens != T", nam_moe_permute(&a, &p.d, &b, &e), &e, NAM_ERR_INVALID_ARG, "tokens.shape[0] (T) = 5");
        a.shape[0] = 6;
        test_expect("permute error: NULL tokens", nam_moe_permute(NULL, &p.d, &b, &e), &e, NAM_ERR_INVALID_ARG, "tokens is NULL");
        test_expect("permute error: NULL plan", nam_moe_permute(&a, NULL, &b, &e), &e, NAM_ERR_INVALID_ARG, "plan is NULL");
        c.shape[0] = 7;
        test_expect("combine error: out rows != T", nam_moe_combine(&b, &p.d, NULL, &c, &e), &e, NAM_ERR_INVALID_ARG, "out.shape[0] (T) = 7");
        c.shape[0] = 6;
        c.device = NAM_DEVICE_CUDA;
        test_expect("combine error: CUDA out -> NOT_IMPLEMENTED", nam_moe_combine(&b, &p.d, NULL, &c, &e), &e, NAM_ERR_NOT_IMPLEMENTED, "CUDA");
        c.device = NAM_DEVICE_CPU;
        p.rows[1] = 0;   /* expert 0's segment must ascend */
        test_expect("combine error: a tampered plan (rows out of order) is refused", nam_moe_combine(&b, &p.d, NULL, &c, &e), &e, NAM_ERR_INVALID_ARG, "plan.rows[1] = 0");
        p.rows[1] = 1;
        p.d.num_rows = 4;
        test_expect("combine error: plan.num_rows != offsets[E]", nam_moe_combine(&b, &p.d, NULL, &c, &e), &e, NAM_ERR_INVALID_ARG, "plan.num_rows = 4, but plan.offsets[E] = 3");
        p.d.num_rows = 3;
        free_plan(&p);
    }
    free(idx); free(x); free(perm); free(y); free(wt); free(lg);
}

/* ---- FFN ----------------------------------------------------------------------------- */
typedef struct ffn_case {
    int T, E, k, H, F, act;
    nam_dtype dt;          /* storage of in, weights and out */
    int one_expert;        /* route every token to expert 0 (tiles of 64 rows) */
    int empty;             /* experts >= E/2 receive nothing */
} ffn_case;

static void fill_store(void *p, nam_dtype dt, int64_t n, float scale) {
    int64_t i;
    for (i = 0; i < n; i++) nam__store(p, dt, i, scale * test_rand());
}

static size_t dsize(nam_dtype dt) { return dt == NAM_F32 ? 4 : 2; }

/* Runs the FFN with backend/kernel/threads; returns status. */
static nam_status ffn_run(nam_moe_ffn_desc *d, nam_backend be, int kernel, int threads, nam_error *e) {
    size_t need = 0;
    void *ws;
    nam_status st;
    d->backend = be;
    d->threads = threads;
    st = nam_moe_ffn_workspace_size(d, &need, e);
    if (st) return st;
    ws = need ? test_alloc(need) : NULL;
    st = nam__moe_ffn_run(d, ws, need, kernel, e);
    free(ws);
    return st;
}

static void ffn_case_run(const ffn_case *c) {
    int T = c->T, E = c->E, k = c->k, H = c->H, F = c->F, i, t, s, kern, thr;
    int32_t *idx = ialloc(T * k);
    plan_buf p;
    nam_error e;
    nam_status st;
    int64_t R = NAM__CAST(int64_t, T) * k;
    void *x = test_alloc(dsize(c->dt) * NAM__CAST(size_t, R * H)), *w1 = test_alloc(dsize(c->dt) * NAM__CAST(size_t, E) * F * H);
    void *w3 = test_alloc(dsize(c->dt) * NAM__CAST(size_t, E) * F * H), *w2 = test_alloc(dsize(c->dt) * NAM__CAST(size_t, E) * F * H);
    void *ref = test_alloc(dsize(c->dt) * NAM__CAST(size_t, R * H)), *out = test_alloc(dsize(c->dt) * NAM__CAST(size_t, R * H));
    nam_moe_ffn_desc d;
    double scale = 0.0, tol = c->dt == NAM_F32 ? 1e-4 : 1.0 / 64.0;
    char desc[256];
    for (t = 0; t < T; t++)
        for (s = 0; s < k; s++) {
            int ee = (t * 7 + s * 3 + t / 3) % E;
            if (c->empty) ee = ee % ((E + 1) / 2);
            if (c->one_expert) ee = s == 0 ? 0 : (s % E);
            idx[t * k + s] = ee;
        }
    make_plan(&p, idx, T, k, E, 0.0f, &e);
    fill_store(x, c->dt, R * H, 1.0f);
    fill_store(w1, c->dt, NAM__CAST(int64_t, E) * F * H, 1.0f / sqrtf((float)H));
    fill_store(w3, c->dt, NAM__CAST(int64_t, E) * F * H, 1.0f / sqrtf((float)H));
    fill_store(w2, c->dt, NAM__CAST(int64_t, E) * F * H, 1.0f / sqrtf((float)F));
    memset(&d, 0, sizeof d);
    d.in = T2(x, c->dt, R, H);
    d.w1 = T3(w1, c->dt, E, F, H);
    if (c->act == 0) d.w3 = T3(w3, c->dt, E, F, H);
    d.w2 = T3(w2, c->dt, E, H, F);
    d.out = T2(ref, c->dt, R, H);
    d.plan = &p.d;
    d.act = c->act ? NAM_MOE_SQUARED_RELU : NAM_MOE_SWIGLU;
    st = ffn_run(&d, NAM_BACKEND_CPU_REF, 0, 1, &e);
    if (st != NAM_OK || d.ran != NAM_BACKEND_CPU_REF) {
        snprintf(desc, sizeof desc, "ffn reference T=%d E=%d k=%d H=%d F=%d", T, E, k, H, F);
        CHECK(0, desc, "status %s '%s'", nam_status_str(st), e.message);
        goto done;
    }
    for (i = 0; i < p.d.num_rows * H; i++) { double v = fabs(nam__load(ref, c->dt, i)); if (v > scale) scale = v; }
    for (kern = 1; kern <= 2; kern++) {
        if (kern == 2 && !nam__cpu_avx2_fma()) {
            test_skip("ffn avx2 kernels: this CPU has no AVX2+FMA");
            continue;
        }
        for (thr = 1; thr <= 3; thr++) {
            double worst = 0.0;
            int nan = 0;
            memset(out, 0, dsize(c->dt) * NAM__CAST(size_t, R * H));
            d.out = T2(out, c->dt, R, H);
            st = ffn_run(&d, kern == 2 && thr == 2 ? NAM_BACKEND_AUTO : NAM_BACKEND_CPU, kern, thr, &e);
            for (i = 0; i < p.d.num_rows * H; i++) {
                double v = nam__load(out, c->dt, i), r = nam__load(ref, c->dt, i);
                if (v != v) nan = 1;
                if (fabs(v - r) > worst) worst = fabs(v - r);
            }
            snprintf(desc, sizeof desc, "ffn %s %s %s T=%d E=%d k=%d H=%d F=%d%s%s, %d thread(s): max err <= %g * scale", kern == 2 ? "avx2" : "sgemm",
                     c->act ? "squared-relu" : "swiglu", nam_dtype_name(c->dt), T, E, k, H, F, c->one_expert ? " (one expert, 64-row tiles)" : "",
                     c->empty ? " (empty experts)" : "", thr, tol);
            CHECK(st == NAM_OK && !nan && worst <= tol * scale && d.ran == NAM_BACKEND_CPU, desc, "status %s '%s', max err %g, scale %g, nan %d, ran %s",
                  nam_status_str(st), e.message, worst, scale, nan, nam_backend_name(d.ran));
            d.out = T2(ref, c->dt, R, H);
        }
    }
done:
    free_plan(&p);
    free(idx); free(x); free(w1); free(w3); free(w2); free(ref); free(out);
}

/* The whole layer (route, dispatch, permute, ffn, combine) against a dense per-token loop
   written here: out[t] = sum_s w[t,s] * FFN_{idx[t,s]}(x[t]), fp64. Checks the reference. */
static void test_layer_dense(int act, int backend) {
    int T = 13, E = 5, k = 2, H = 24, F = 10, t, s, f, h, q, i;
    float *x = falloc(T * H), *w1 = falloc(E * F * H), *w3 = falloc(E * F * H), *w2 = falloc(E * F * H), *lg = falloc(T * E);
    float *wt = falloc(T * k), *perm = falloc(T * k * H), *eo = falloc(T * k * H), *y = falloc(T * H);
    int32_t *idx = ialloc(T * k);
    double worst = 0.0, scale = 0.0, hid[16];
    plan_buf p;
    nam_error e;
    nam_status st;
    nam_moe_ffn_desc d;
    nam_tensor tx = T2(x, NAM_F32, T, H), tp = T2(perm, NAM_F32, T * k, H), te = T2(eo, NAM_F32, T * k, H), tw = T2(wt, NAM_F32, T, k), ty = T2(y, NAM_F32, T, H);
    void *ws;
    size_t need = 0;
    char desc[160];
    for (i = 0; i < T * H; i++) x[i] = test_rand();
    for (i = 0; i < E * F * H; i++) { w1[i] = 0.3f * test_rand(); w3[i] = 0.3f * test_rand(); w2[i] = 0.3f * test_rand(); }
    for (i = 0; i < T * E; i++) lg[i] = test_rand();
    st = run_route(lg, NULL, T, E, k, 1, 0, 0.0f, idx, wt, &e);
    if (!st) st = make_plan(&p, idx, T, k, E, 0.0f, &e);
    if (!st) st = nam_moe_permute(&tx, &p.d, &tp, &e);
    memset(&d, 0, sizeof d);
    d.in = tp; d.out = te; d.plan = &p.d; d.act = act ? NAM_MOE_SQUARED_RELU : NAM_MOE_SWIGLU;
    d.w1 = T3(w1, NAM_F32, E, F, H); d.w3 = T3(w3, NAM_F32, E, F, H); d.w2 = T3(w2, NAM_F32, E, H, F);
    d.backend = NAM__CAST(nam_backend, backend);
    if (!st) st = nam_moe_ffn_workspace_size(&d, &need, &e);
    ws = test_alloc(need);
    if (!st) st = nam_moe_ffn(&d, ws, need, &e);
    if (!st) st = nam_moe_combine(&te, &p.d, &tw, &ty, &e);
    for (t = 0; t < T; t++)
        for (h = 0; h < H; h++) {
            double o = 0.0;
            for (s = 0; s < k; s++) {
                int ee = idx[t * k + s];
                double v = 0.0;
                for (f = 0; f < F; f++) {
                    double g = 0.0, u = 0.0;
                    for (q = 0; q < H; q++) { g += (double)x[t * H + q] * w1[(ee * F + f) * H + q]; u += (double)x[t * H + q] * w3[(ee * F + f) * H + q]; }
                    hid[f] = act ? (g > 0 ? g * g : 0.0) : g / (1.0 + exp(-g)) * u;
                }
                for (f = 0; f < F; f++) v += hid[f] * w2[(ee * H + h) * F + f];
                o += wt[t * k + s] * v;
            }
            if (fabs(o) > scale) scale = fabs(o);
            if (fabs(o - y[t * H + h]) > worst) worst = fabs(o - y[t * H + h]);
        }
    snprintf(desc, sizeof desc, "layer route->dispatch->permute->ffn(%s, %s)->combine vs a dense per-token loop: max err <= 1e-5 * scale",
             act ? "squared-relu" : "swiglu", nam_backend_name(NAM__CAST(nam_backend, backend)));
    CHECK(st == NAM_OK && worst <= 1e-5 * scale, desc, "status %s '%s' err %g scale %g", nam_status_str(st), e.message, worst, scale);
    free_plan(&p);
    free(x); free(w1); free(w3); free(w2); free(lg); free(wt); free(perm); free(eo); free(y); free(idx); free(ws);
}

static void test_ffn_strided(void) {
    /* f32 weights with padded rows (used in place with their row stride), transposed-view
       w2 (converted), strided in and bf16 out: fast vs reference */
    int T = 21, E = 3, k = 2, H = 19, F = 11, i, kern;
    int32_t *idx = ialloc(T * k);
    plan_buf p;
    nam_error e;
    nam_status st;
    int64_t R = T * k;
    float *x = falloc(R * H * 2), *w1 = falloc(E * F * (H + 5)), *w3 = falloc(E * F * (H + 5)), *w2t = falloc(E * F * H);
    uint16_t *ref = NAM__CAST(uint16_t *, test_alloc(2 * NAM__CAST(size_t, R * H))), *out = NAM__CAST(uint16_t *, test_alloc(2 * NAM__CAST(size_t, R * H)));
    nam_moe_ffn_desc d;
    for (i = 0; i < T * k; i++) idx[i] = test_randi(E);
    make_plan(&p, idx, T, k, E, 0.0f, &e);
    for (i = 0; i < R * H * 2; i++) x[i] = test_rand();
    for (i = 0; i < E * F * (H + 5); i++) { w1[i] = 0.3f * test_rand(); w3[i] = 0.3f * test_rand(); }
    for (i = 0; i < E * F * H; i++) w2t[i] = 0.3f * test_rand();
    memset(&d, 0, sizeof d);
    d.in = T2(x, NAM_F32, R, H); d.in.stride[0] = 2 * H; d.in.stride[1] = 2;
    d.w1 = T3(w1, NAM_F32, E, F, H); d.w1.stride[0] = F * (H + 5); d.w1.stride[1] = H + 5; d.w1.stride[2] = 1;
    d.w3 = d.w1; d.w3.data = w3;
    d.w2 = T3(w2t, NAM_F32, E, H, F); d.w2.stride[0] = F * H; d.w2.stride[1] = 1; d.w2.stride[2] = H;   /* stored (E, F, H) */
    d.out = T2(ref, NAM_BF16, R, H);
    d.plan = &p.d;
    st = ffn_run(&d, NAM_BACKEND_CPU_REF, 0, 1, &e);
    for (kern = 1; kern <= 2; kern++) {
        double worst = 0.0, scale = 0.0;
        if (kern == 2 && !nam__cpu_avx2_fma()) continue;
        d.out.data = out;
        if (!st) st = ffn_run(&d, NAM_BACKEND_CPU, kern, 2, &e);
        d.out.data = ref;
        for (i = 0; i < p.d.num_rows * H; i++) {
            double r = nam__bf16_to_f32(ref[i]), v = nam__bf16_to_f32(out[i]);
            if (fabs(r) > scale) scale = fabs(r);
            if (fabs(r - v) > worst) worst = fabs(r - v);
        }
        CHECK(st == NAM_OK && worst <= scale / 64.0,
              kern == 1 ? "ffn sgemm: strided in, padded-row weights in place, transposed w2, bf16 out: max err <= 1/64 * scale"
                        : "ffn avx2: strided in, padded-row weights in place, transposed w2, bf16 out: max err <= 1/64 * scale",
              "status %s '%s' err %g scale %g", nam_status_str(st), e.message, worst, scale);
    }
    free_plan(&p);
    free(idx); free(x); free(w1); free(w3); free(w2t); free(ref); free(out);
}

/* Hand-made offsets: every tail length (dot-product tails of 1..6 rows, padded panels, and
   a second 64-row tile) for both activations, with H and F not multiples of 16 or 6. */
static void test_ffn_tails(void) {
    static const int cnt[] = {1, 2, 3, 4, 5, 6, 7, 9, 15, 16, 17, 18, 22, 23, 31, 33, 38, 64, 70, 0, 134};
    int E = NAM__CAST(int, sizeof cnt / sizeof cnt[0]), H = 43, F = 29, e, act, kern, i;
    int32_t off[32];
    int64_t R;
    float *x, *w1, *w3, *w2, *ref, *out;
    nam_moe_dispatch_desc p;
    nam_moe_ffn_desc d;
    nam_error err;
    nam_status st;
    off[0] = 0;
    for (e = 0; e < E; e++) off[e + 1] = off[e] + cnt[e];
    R = off[E];
    x = falloc(R * H); ref = falloc(R * H); out = falloc(R * H);
    w1 = falloc(E * F * H); w3 = falloc(E * F * H); w2 = falloc(E * F * H);
    for (i = 0; i < R * H; i++) x[i] = test_rand();
    for (i = 0; i < E * F * H; i++) { w1[i] = 0.2f * test_rand(); w3[i] = 0.2f * test_rand(); w2[i] = 0.2f * test_rand(); }
    memset(&p, 0, sizeof p);
    p.num_experts = E;
    p.offsets = T1(off, NAM_I32, E + 1);
    p.num_rows = NAM__CAST(int, R);
    memset(&d, 0, sizeof d);
    d.in = T2(x, NAM_F32, R, H);
    d.w1 = T3(w1, NAM_F32, E, F, H); d.w3 = T3(w3, NAM_F32, E, F, H); d.w2 = T3(w2, NAM_F32, E, H, F);
    d.plan = &p;
    for (act = 0; act < 2; act++) {
        d.act = act ? NAM_MOE_SQUARED_RELU : NAM_MOE_SWIGLU;
        d.out = T2(ref, NAM_F32, R, H);
        st = ffn_run(&d, NAM_BACKEND_CPU_REF, 0, 1, &err);
        for (kern = 1; kern <= 2; kern++) {
            double worst = 0.0, scale = 0.0;
            char desc[200];
            if (kern == 2 && !nam__cpu_avx2_fma()) continue;
            for (i = 0; i < R * H; i++) out[i] = NAM__CAST(float, nan(""));
            d.out = T2(out, NAM_F32, R, H);
            if (st == NAM_OK) st = ffn_run(&d, NAM_BACKEND_CPU, kern, 2, &err);
            for (i = 0; i < R * H; i++) {
                if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
                if (!(fabs(ref[i] - out[i]) <= worst)) worst = fabs(ref[i] - out[i]);
            }
            snprintf(desc, sizeof desc, "ffn %s %s: rows per expert 0..134 (every tail length, 64-row tiles), H=43 F=29: max err <= 1e-4 * scale",
                     kern == 2 ? "avx2" : "sgemm", act ? "squared-relu" : "swiglu");
            CHECK(st == NAM_OK && worst <= 1e-4 * scale, desc, "status %s '%s' err %g scale %g", nam_status_str(st), err.message, worst, scale);
        }
    }
    {   /* bf16 weights, f32 activations: both paths read the same bf16 values -> f32 tolerance */
        uint16_t *b1 = NAM__CAST(uint16_t *, test_alloc(2 * NAM__CAST(size_t, E * F * H))), *b3 = NAM__CAST(uint16_t *, test_alloc(2 * NAM__CAST(size_t, E * F * H)));
        uint16_t *b2 = NAM__CAST(uint16_t *, test_alloc(2 * NAM__CAST(size_t, E * F * H)));
        for (i = 0; i < E * F * H; i++) { b1[i] = nam__f32_to_bf16(w1[i]); b3[i] = nam__f32_to_bf16(w3[i]); b2[i] = nam__f32_to_bf16(w2[i]); }
        d.w1.data = b1; d.w3.data = b3; d.w2.data = b2;
        d.w1.dtype = d.w3.dtype = d.w2.dtype = NAM_BF16;
        d.act = NAM_MOE_SWIGLU;
        d.out = T2(ref, NAM_F32, R, H);
        st = ffn_run(&d, NAM_BACKEND_CPU_REF, 0, 1, &err);
        for (kern = 1; kern <= 2; kern++) {
            double worst = 0.0, scale = 0.0;
            if (kern == 2 && !nam__cpu_avx2_fma()) continue;
            d.out = T2(out, NAM_F32, R, H);
            if (st == NAM_OK) st = ffn_run(&d, NAM_BACKEND_CPU, kern, 2, &err);
            for (i = 0; i < R * H; i++) {
                if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
                if (!(fabs(ref[i] - out[i]) <= worst)) worst = fabs(ref[i] - out[i]);
            }
            CHECK(st == NAM_OK && worst <= 1e-4 * scale,
                  kern == 2 ? "ffn avx2 swiglu, bf16 weights (converted per 6-row block), f32 in/out, every tail length: max err <= 1e-4 * scale"
                            : "ffn sgemm swiglu, bf16 weights (converted per expert), f32 in/out, every tail length: max err <= 1e-4 * scale",
                  "status %s '%s' err %g scale %g", nam_status_str(st), err.message, worst, scale);
        }
        free(b1); free(b3); free(b2);
    }
    free(x); free(ref); free(out); free(w1); free(w3); free(w2);
}

static void test_ffn_errors(void) {
    int T = 6, E = 3, k = 2, H = 8, F = 4;
    int32_t idx[12] = {0, 1, 1, 2, 0, 2, 0, 1, 1, 2, 0, 2};
    float x[12 * 8], y[12 * 8], w1[3 * 4 * 8], w3[3 * 4 * 8], w2[3 * 4 * 8];
    plan_buf p;
    nam_moe_ffn_desc b, d;
    nam_error e;
    size_t need = 0;
    void *ws;
    nam_status st;
    memset(x, 0, sizeof x); memset(w1, 0, sizeof w1); memset(w3, 0, sizeof w3); memset(w2, 0, sizeof w2);
    make_plan(&p, idx, T, k, E, 0.0f, &e);
    memset(&b, 0, sizeof b);
    b.in = T2(x, NAM_F32, T * k, H); b.out = T2(y, NAM_F32, T * k, H);
    b.w1 = T3(w1, NAM_F32, E, F, H); b.w3 = T3(w3, NAM_F32, E, F, H); b.w2 = T3(w2, NAM_F32, E, H, F);
    b.plan = &p.d;
    b.threads = 2;
    st = nam_moe_ffn_workspace_size(&b, &need, &e);
    ws = test_alloc(need + 64);
    CHECK(st == NAM_OK && need > 0, "ffn workspace_size ok for a valid desc", "status %s '%s'", nam_status_str(st), e.message);
    test_expect("ffn error: workspace one byte short", nam_moe_ffn(&b, ws, need - 1, &e), &e, NAM_ERR_INVALID_ARG, "is too small");
    test_expect("ffn error: NULL workspace", nam_moe_ffn(&b, NULL, 0, &e), &e, NAM_ERR_INVALID_ARG, "workspace is NULL");
    test_expect("ffn error: misaligned workspace", nam_moe_ffn(&b, NAM__CAST(char *, ws) + 4, need, &e), &e, NAM_ERR_INVALID_ARG, "64-byte aligned");
    d = b; d.plan = NULL;
    test_expect("ffn error: NULL plan", nam_moe_ffn(&d, ws, need, &e), &e, NAM_ERR_INVALID_ARG, "plan is NULL");
    d = b; d.w2 = T3(w2, NAM_F32, E, F, H);
    test_expect("ffn error: w2 (E,F,H) instead of (E,H,F)", nam_moe_ffn(&d, ws, need, &e), &e, NAM_ERR_INVALID_ARG, "w2.shape[1] (H) = 4, but in.shape[1] = 8");
    d = b; d.w3.data = NULL;
    test_expect("ffn error: SwiGLU without w3", nam_moe_ffn(&d, ws, need, &e), &e, NAM_ERR_INVALID_ARG, "w3: data is NULL");
    d = b; d.w3.data = NULL; d.act = NAM_MOE_SQUARED_RELU;
    st = nam_moe_ffn(&d, ws, need, &e);
    CHECK(st == NAM_OK, "ffn squared ReLU needs no w3", "status %s '%s'", nam_status_str(st), e.message);
    d = b; d.act = NAM__CAST(nam_moe_act, 5);
    test_expect("ffn error: bad act enum", nam_moe_ffn(&d, ws, need, &e), &e, NAM_ERR_INVALID_ARG, "act = 5");
    d = b; d.in.shape[0] = 11; d.out.shape[0] = 11;
    test_expect("ffn error: in has fewer rows than the plan keeps", nam_moe_ffn(&d, ws, need, &e), &e, NAM_ERR_INVALID_ARG, "in.shape[0] (rows) = 11, but the plan keeps 12 rows");
    d = b; d.out.shape[0] = 11;
    test_expect("ffn error: out rows != in rows", nam_moe_ffn(&d, ws, need, &e), &e, NAM_ERR_INVALID_ARG, "out.shape[0] (rows) = 11, but in.shape[0] = 12");
    d = b; d.w1.shape[0] = 2; d.w3.shape[0] = 2; d.w2.shape[0] = 2;
    test_expect("ffn error: plan experts != w1 experts", nam_moe_ffn(&d, ws, need, &e), &e, NAM_ERR_INVALID_ARG, "plan.num_experts = 3, but w1.shape[0] (E) = 2");
    d = b; d.w1.shape[1] = 0;
    test_expect("ffn error: zero F", nam_moe_ffn(&d, ws, need, &e), &e, NAM_ERR_RANGE, "w1.shape[1] = 0");
    d = b; d.w1.dtype = NAM_I32;
    test_expect("ffn error: i32 weights", nam_moe_ffn(&d, ws, need, &e), &e, NAM_ERR_INVALID_ARG, "w1: dtype i32 is not a float storage type");
    d = b; d.in.device = NAM_DEVICE_CUDA;
    test_expect("ffn error: CUDA in -> NOT_IMPLEMENTED", nam_moe_ffn(&d, ws, need, &e), &e, NAM_ERR_NOT_IMPLEMENTED, "CUDA");
    d = b; d.w2.device = NAM_DEVICE_CUDA;
    test_expect("ffn error: CUDA w2 -> NOT_IMPLEMENTED", nam_moe_ffn(&d, ws, need, &e), &e, NAM_ERR_NOT_IMPLEMENTED, "CUDA");
    d = b; d.backend = NAM_BACKEND_CUDA;
    test_expect("ffn error: CUDA backend -> NOT_IMPLEMENTED", nam_moe_ffn_workspace_size(&d, &need, &e), &e, NAM_ERR_NOT_IMPLEMENTED, "CUDA");
    test_expect("ffn error: NULL desc", nam_moe_ffn(NULL, ws, need, &e), &e, NAM_ERR_INVALID_ARG, "desc is NULL");
    test_expect("ffn error: NULL bytes", nam_moe_ffn_workspace_size(&b, NULL, &e), &e, NAM_ERR_INVALID_ARG, "bytes is NULL");
    p.offsets[2] = 1;
    test_expect("ffn error: decreasing plan offsets", nam_moe_ffn(&b, ws, need, &e), &e, NAM_ERR_INVALID_ARG, "plan.offsets decreases at expert 1");
    free_plan(&p);
    free(ws);
}

/* ---- --dump for tests/xcheck_moe.py --------------------------------------------------- */
static int write_raw(const char *dir, const char *name, const char *file, const void *p, size_t bytes) {
    char fn[512];
    snprintf(fn, sizeof fn, "%s.%s", name, file);
    return !test_write_file(dir, fn, p, bytes);
}

static int dump_case(const char *dir, FILE *man, const char *name, int T, int E, int k, int H, int F, int score, int pre, float scaling, int act, float cf, int bias) {
    float *lg = falloc(T * E), *b = falloc(E), *x = falloc(T * H), *w1 = falloc(E * F * H), *w3 = falloc(E * F * H), *w2 = falloc(E * F * H);
    float *wt = falloc(T * k), *perm = falloc(T * k * H), *eo = falloc(T * k * H), *y = falloc(T * H);
    int32_t *idx = ialloc(T * k);
    plan_buf p;
    nam_error e;
    nam_status st;
    nam_moe_route_desc r;
    nam_moe_ffn_desc d;
    nam_tensor tx = T2(x, NAM_F32, T, H), tp = T2(perm, NAM_F32, T * k, H), te = T2(eo, NAM_F32, T * k, H), tw = T2(wt, NAM_F32, T, k), ty = T2(y, NAM_F32, T, H);
    size_t need = 0;
    void *ws = NULL;
    int i, bad = 0;
    for (i = 0; i < T * E; i++) lg[i] = 2.0f * test_rand();
    for (i = 0; i < E; i++) b[i] = 0.3f * test_rand();
    for (i = 0; i < T * H; i++) x[i] = test_rand();
    for (i = 0; i < E * F * H; i++) { w1[i] = test_rand() / sqrtf((float)H); w3[i] = test_rand() / sqrtf((float)H); w2[i] = test_rand() / sqrtf((float)F); }
    memset(&r, 0, sizeof r);
    r.logits = T2(lg, NAM_F32, T, E);
    if (bias) r.expert_bias = T1(b, NAM_F32, E);
    r.topk_idx = T2(idx, NAM_I32, T, k);
    r.topk_weight = tw;
    r.topk = k;
    r.score = score ? NAM_MOE_SIGMOID : NAM_MOE_SOFTMAX;
    r.pre_softmax = pre;
    r.scaling_factor = scaling;
    st = nam_moe_route(&r, &e);
    if (!st) st = make_plan(&p, idx, T, k, E, cf, &e);
    if (!st) st = nam_moe_permute(&tx, &p.d, &tp, &e);
    memset(&d, 0, sizeof d);
    d.in = tp; d.out = te; d.plan = &p.d; d.act = act ? NAM_MOE_SQUARED_RELU : NAM_MOE_SWIGLU;
    d.w1 = T3(w1, NAM_F32, E, F, H); d.w3 = T3(w3, NAM_F32, E, F, H); d.w2 = T3(w2, NAM_F32, E, H, F);
    if (!st) st = nam_moe_ffn_workspace_size(&d, &need, &e);
    if (!st) { ws = test_alloc(need); st = nam_moe_ffn(&d, ws, need, &e); }
    if (!st) st = nam_moe_combine(&te, &p.d, &tw, &ty, &e);
    if (st) { fprintf(stderr, "test_moe --dump %s: %s: %s\n", name, nam_status_str(st), e.message); return 1; }
    fprintf(man, "case %s T=%d E=%d k=%d H=%d F=%d score=%s pre_softmax=%d scaling=%.9g act=%s capacity_factor=%.9g bias=%d num_rows=%d num_dropped=%d\n",
            name, T, E, k, H, F, score ? "sigmoid" : "softmax", pre, (double)scaling, act ? "squared_relu" : "swiglu", (double)cf, bias, p.d.num_rows, p.d.num_dropped);
    bad |= write_raw(dir, name, "logits.f32", lg, sizeof(float) * NAM__CAST(size_t, T * E));
    bad |= write_raw(dir, name, "bias.f32", b, sizeof(float) * NAM__CAST(size_t, E));
    bad |= write_raw(dir, name, "tokens.f32", x, sizeof(float) * NAM__CAST(size_t, T * H));
    bad |= write_raw(dir, name, "w1.f32", w1, sizeof(float) * NAM__CAST(size_t, E * F * H));
    bad |= write_raw(dir, name, "w3.f32", w3, sizeof(float) * NAM__CAST(size_t, E * F * H));
    bad |= write_raw(dir, name, "w2.f32", w2, sizeof(float) * NAM__CAST(size_t, E * F * H));
    bad |= write_raw(dir, name, "topk_idx.i32", idx, sizeof(int32_t) * NAM__CAST(size_t, T * k));
    bad |= write_raw(dir, name, "topk_weight.f32", wt, sizeof(float) * NAM__CAST(size_t, T * k));
    bad |= write_raw(dir, name, "counts.i32", p.counts, sizeof(int32_t) * NAM__CAST(size_t, E));
    bad |= write_raw(dir, name, "offsets.i32", p.offsets, sizeof(int32_t) * NAM__CAST(size_t, E + 1));
    bad |= write_raw(dir, name, "rows.i32", p.rows, sizeof(int32_t) * NAM__CAST(size_t, p.d.num_rows));
    bad |= write_raw(dir, name, "permuted.f32", perm, sizeof(float) * NAM__CAST(size_t, p.d.num_rows * H));
    bad |= write_raw(dir, name, "ffn_out.f32", eo, sizeof(float) * NAM__CAST(size_t, p.d.num_rows * H));
    bad |= write_raw(dir, name, "out.f32", y, sizeof(float) * NAM__CAST(size_t, T * H));
    if (bad) fprintf(stderr, "test_moe --dump %s: cannot write files in %s\n", name, dir);
    free_plan(&p);
    free(lg); free(b); free(x); free(w1); free(w3); free(w2); free(wt); free(perm); free(eo); free(y); free(idx); free(ws);
    return bad;
}

static int dump(const char *dir) {
    char path[1024];
    FILE *man;
    int bad = 0;
    snprintf(path, sizeof path, "%s/manifest.txt", dir);
    man = fopen(path, "w");
    if (!man) { fprintf(stderr, "test_moe --dump: cannot write %s\n", path); return 1; }
    fprintf(man, "# test_moe --dump: raw little-endian files NAME.FIELD.{f32,i32}; shapes: logits (T,E) bias (E) tokens (T,H)\n"
                 "# w1 w3 (E,F,H) w2 (E,H,F) topk_idx topk_weight (T,k) counts (E) offsets (E+1) rows (num_rows)\n"
                 "# permuted ffn_out (num_rows,H) out (T,H)\n");
    bad |= dump_case(dir, man, "softmax_swiglu", 24, 8, 2, 32, 16, 0, 0, 0.0f, 0, 0.0f, 0);
    bad |= dump_case(dir, man, "sigmoid_bias_relu2_capacity", 19, 6, 3, 24, 20, 1, 0, 2.0f, 1, 1.0f, 1);
    bad |= dump_case(dir, man, "presoftmax_topk_all", 16, 4, 4, 40, 12, 0, 1, 0.0f, 0, 0.0f, 0);
    bad |= dump_case(dir, man, "softmax_capacity_bigger", 70, 12, 4, 48, 36, 0, 0, 1.0f, 0, 0.8f, 0);
    if (fclose(man) != 0) bad = 1;
    return bad;
}

int main(int argc, char **argv) {
    static const ffn_case cases[] = {
        /* T  E  k   H   F  act dtype     one empty */
        {1, 1, 1, 16, 8, 0, NAM_F32, 0, 0},
        {1, 1, 1, 16, 8, 1, NAM_F32, 0, 0},
        {37, 5, 2, 40, 24, 0, NAM_F32, 0, 1},
        {37, 5, 2, 40, 24, 1, NAM_F32, 0, 1},
        {50, 8, 2, 33, 7, 0, NAM_F32, 0, 0},
        {150, 4, 1, 64, 48, 0, NAM_F32, 1, 0},
        {150, 4, 2, 48, 30, 1, NAM_F32, 1, 0},
        {40, 6, 3, 96, 70, 0, NAM_F32, 0, 0},
        {30, 4, 2, 40, 24, 0, NAM_BF16, 0, 0},
        {30, 4, 2, 40, 24, 1, NAM_BF16, 0, 1},
        {20, 3, 2, 24, 12, 0, NAM_F16, 0, 0},
    };
    size_t i;
    test_seed(UINT64_C(0x2545f4914f6cdd1d)); /* this test's stream since before tests/test.h */
    if (argc == 3 && !strcmp(argv[1], "--dump")) return dump(argv[2]);
    if (argc != 1) { fprintf(stderr, "usage: test_moe [--dump DIR]\n"); return 2; }
    test_route();
    test_dispatch();
    test_permute_combine();
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) ffn_case_run(&cases[i]);
    test_ffn_strided();
    test_ffn_tails();
    test_layer_dense(0, NAM_BACKEND_CPU_REF);
    test_layer_dense(1, NAM_BACKEND_CPU_REF);
    test_layer_dense(0, NAM_BACKEND_AUTO);
    test_layer_dense(1, NAM_BACKEND_AUTO);
    test_ffn_errors();
    return test_done("test_moe");
}
