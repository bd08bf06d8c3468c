/* test_cuda_moe.c - the CUDA MoE kernels (nam_cuda.cuh >>cuda-moe) against nam.h's CPU path
   on the same inputs.

   References and tolerances (CPU = nam.h's CPU code, same inputs):
   - route: indices exact (bf16 logits give many ties: the lower expert id must win);
     weights within 1e-6 * max(1, |scaling|) absolute (the GPU computes the softmax /
     sigmoid in double like the CPU; only the order of the double sums differs).
   - dispatch: counts, offsets, rows bit-exact, num_rows and num_dropped equal; bad expert
     ids: NAM_ERR_RANGE with the CPU's message (the first bad (t, slot)).
   - permute: bit-exact (memcmp of the kept rows), every vector width and a converting copy.
   - combine: bit-exact (the GPU adds in slot order without FMA contraction, like the CPU).
   - FFN: NAM_BACKEND_CPU_REF (fp64 sums, fp32 h, out rounded once) vs the GPU (fp32 sums,
     h rounded to the storage dtype, out rounded once):
       max |gpu - ref| <= 4 u * scale, scale = max |ref| over the kept rows, u the unit
       roundoff of the storage dtype (bf16 2^-8, f16 2^-11): one rounding of out on each
       side (<= u |v| each), plus h's rounding (relative u per element, errors of random
       sign summed over F, a fraction of u * scale) and fp32 vs fp64 sums (~1e-6).
   Error paths: f32 / mixed-dtype FFN -> NAM_ERR_NOT_IMPLEMENTED naming the field; a CPU
   tensor mixed in -> NAM_ERR_INVALID_ARG; a strided tensor -> NAM_ERR_NOT_IMPLEMENTED; a
   small workspace -> NAM_ERR_INVALID_ARG.
   Output: "ok <desc>" / "FAIL <desc>: <why>" / "skip ..."; exit status 1 on any failure. */
#define NAM_IMPLEMENTATION
#include "cuda_test.h"

/* device copy of host bytes (NULL and a FAIL line on errors) */
static void *dev_dup(const void *h, size_t bytes) {
    nam_error e;
    void *d = NULL;
    if (nam_cuda_malloc(&d, bytes ? bytes : 4, &e) != NAM_OK || (h && nam_cuda_memcpy(d, h, bytes, NAM_CUDA_H2D, NULL, &e) != NAM_OK)) {
        test_fail("%s: %s", "device allocation", e.message);
        return NULL;
    }
    if (!h) nam_cuda_memset(d, 0xff, bytes, NULL, &e);
    return d;
}
static int dev_down(void *h, const void *d, size_t bytes) {
    nam_error e;
    if (nam_cuda_sync(NULL, &e) != NAM_OK || nam_cuda_memcpy(h, d, bytes, NAM_CUDA_D2H, NULL, &e) != NAM_OK) {
        test_fail("%s: %s", "download", e.message);
        return 0;
    }
    return 1;
}
static void dev_free(void *d) {
    nam_error e;
    nam_cuda_free(d, &e);
}
static nam_tensor H1(void *p, nam_dtype dt, int64_t a) { return nam_tensor_make(p, dt, 1, &a); }
static nam_tensor H2(void *p, nam_dtype dt, int64_t a, int64_t b) { int64_t s[2]; s[0] = a; s[1] = b; return nam_tensor_make(p, dt, 2, s); }
static nam_tensor H3(void *p, nam_dtype dt, int64_t a, int64_t b, int64_t c) { int64_t s[3]; s[0] = a; s[1] = b; s[2] = c; return nam_tensor_make(p, dt, 3, s); }
static nam_tensor C1(void *p, nam_dtype dt, int64_t a) { return nam_tensor_cuda(p, dt, 1, &a); }
static nam_tensor C2(void *p, nam_dtype dt, int64_t a, int64_t b) { int64_t s[2]; s[0] = a; s[1] = b; return nam_tensor_cuda(p, dt, 2, s); }
static nam_tensor C3(void *p, nam_dtype dt, int64_t a, int64_t b, int64_t c) { int64_t s[3]; s[0] = a; s[1] = b; s[2] = c; return nam_tensor_cuda(p, dt, 3, s); }

/* host buffer of n values of dt: scale * rand + shift, rounded to dt */
static void *rnd_buf(nam_dtype dt, int64_t n, float scale, float shift) {
    void *p = test_alloc((size_t)n * test_esize(dt));
    int64_t i;
    for (i = 0; i < n; i++) nam__store(p, dt, i, scale * test_rand() + shift);
    return p;
}

/* ==== route ==================================================================================== */
typedef struct route_case {
    int T, E, k;
    nam_moe_score score;
    int pre_softmax, bias;
    float scaling;
    nam_dtype ldt;
    int ties;   /* 1: every logit of token 0 equal; 2: logits from a few values only */
} route_case;

static void test_route_case(const route_case *c) {
    const char *mode = c->score == NAM_MOE_SIGMOID ? (c->bias ? "sigmoid+bias" : "sigmoid") : (c->pre_softmax ? "pre_softmax" : "softmax");
    void *lh = rnd_buf(c->ldt, (int64_t)c->T * c->E, 4.0f, 0.0f), *bh = NULL;
    int32_t *ih = (int32_t *)test_alloc(sizeof(int32_t) * (size_t)c->T * (size_t)c->k), *ig = (int32_t *)test_alloc(sizeof(int32_t) * (size_t)c->T * (size_t)c->k);
    float *wh = (float *)test_alloc(sizeof(float) * (size_t)c->T * (size_t)c->k), *wg = (float *)test_alloc(sizeof(float) * (size_t)c->T * (size_t)c->k);
    void *ld, *bd = NULL, *id, *wd;
    nam_moe_route_desc r;
    nam_error e;
    nam_status s;
    int64_t i, n = (int64_t)c->T * c->k;
    double md = 0.0;
    int bad_idx = -1;
    const char *desc = test_fmt("route %s T=%d E=%d k=%d %s scaling=%g%s", mode, c->T, c->E, c->k, nam_dtype_name(c->ldt), (double)c->scaling,
                         c->ties == 1 ? " (equal logits)" : c->ties == 2 ? " (few distinct logits)" : "");
    char name[256];
    snprintf(name, sizeof name, "%s", desc);
    if (c->ties == 1)
        for (i = 0; i < c->E; i++) nam__store(lh, c->ldt, i, 0.75f);
    if (c->ties == 2)
        for (i = 0; i < (int64_t)c->T * c->E; i++) nam__store(lh, c->ldt, i, 0.5f * (float)test_randi(4));
    if (c->bias) bh = rnd_buf(NAM_F32, c->E, 0.05f, 0.0f);
    memset(&r, 0, sizeof r);
    r.logits = H2(lh, c->ldt, c->T, c->E);
    if (bh) r.expert_bias = H1(bh, NAM_F32, c->E);
    r.topk_idx = H2(ih, NAM_I32, c->T, c->k);
    r.topk_weight = H2(wh, NAM_F32, c->T, c->k);
    r.topk = c->k;
    r.score = c->score;
    r.pre_softmax = c->pre_softmax;
    r.scaling_factor = c->scaling;
    if ((s = nam_moe_route(&r, &e)) != NAM_OK) { test_fail("%s: %s", name, e.message); goto out; }
    ld = dev_dup(lh, (size_t)c->T * (size_t)c->E * test_esize(c->ldt));
    if (bh) bd = dev_dup(bh, sizeof(float) * (size_t)c->E);
    id = dev_dup(NULL, sizeof(int32_t) * (size_t)n);
    wd = dev_dup(NULL, sizeof(float) * (size_t)n);
    r.logits = C2(ld, c->ldt, c->T, c->E);
    if (bd) r.expert_bias = C1(bd, NAM_F32, c->E);
    r.topk_idx = C2(id, NAM_I32, c->T, c->k);
    r.topk_weight = C2(wd, NAM_F32, c->T, c->k);
    s = nam_moe_route(&r, &e);
    if (s != NAM_OK) test_fail("%s: %s", name, e.message);
    else if (dev_down(ig, id, sizeof(int32_t) * (size_t)n) && dev_down(wg, wd, sizeof(float) * (size_t)n)) {
        for (i = 0; i < n; i++) {
            double d = fabs((double)wg[i] - (double)wh[i]);
            if (ig[i] != ih[i] && bad_idx < 0) bad_idx = (int)i;
            if (!(d <= md)) md = d != d ? INFINITY : d;
        }
        if (r.ran != NAM_BACKEND_CUDA) test_fail("%s: %s", name, "ran is not NAM_BACKEND_CUDA");
        else if (bad_idx >= 0)
            test_fail("%s: %s", name, test_fmt("topk_idx[%d, %d] = %d, CPU %d", bad_idx / c->k, bad_idx % c->k, ig[bad_idx], ih[bad_idx]));
        else CHECK(md <= 1e-6 * (fabs((double)c->scaling) > 1.0 ? fabs((double)c->scaling) : 1.0), name, "max |weight - CPU| = %g", md);
    }
    dev_free(ld);
    dev_free(bd);
    dev_free(id);
    dev_free(wd);
out:
    free(lh);
    free(bh);
    free(ih);
    free(ig);
    free(wh);
    free(wg);
}

static void test_route(void) {
    static const route_case cases[] = {
        {37, 8, 1, NAM_MOE_SOFTMAX, 1, 0, 0.0f, NAM_F32, 0},
        {37, 8, 2, NAM_MOE_SOFTMAX, 0, 0, 0.0f, NAM_F32, 0},
        {37, 8, 8, NAM_MOE_SOFTMAX, 0, 0, 0.0f, NAM_BF16, 0},
        {21, 33, 4, NAM_MOE_SOFTMAX, 1, 0, 2.5f, NAM_F16, 0},
        {21, 64, 6, NAM_MOE_SIGMOID, 0, 1, 0.0f, NAM_F32, 0},
        {21, 64, 1, NAM_MOE_SIGMOID, 0, 0, 0.0f, NAM_BF16, 0},
        {13, 130, 8, NAM_MOE_SIGMOID, 0, 1, 2.5f, NAM_BF16, 0},
        {13, 130, 8, NAM_MOE_SOFTMAX, 0, 0, 0.0f, NAM_BF16, 2},
        {13, 130, 5, NAM_MOE_SOFTMAX, 1, 0, 1.0f, NAM_F32, 0},
        {9, 130, 7, NAM_MOE_SIGMOID, 0, 0, 0.0f, NAM_F16, 2},
        {6, 40, 40, NAM_MOE_SIGMOID, 0, 1, 0.0f, NAM_F32, 0},   /* k = E > 32: several slots per lane */
        {5, 40, 40, NAM_MOE_SOFTMAX, 0, 0, 0.0f, NAM_F32, 1},
        {7, 1000, 8, NAM_MOE_SOFTMAX, 1, 0, 0.0f, NAM_BF16, 2},
        {5, 1100, 4, NAM_MOE_SOFTMAX, 0, 0, 0.0f, NAM_F32, 0},   /* E > 1024: streaming path */
        {5, 1100, 3, NAM_MOE_SOFTMAX, 1, 0, 0.0f, NAM_BF16, 2},
        {5, 1100, 6, NAM_MOE_SIGMOID, 0, 1, 1.5f, NAM_F32, 1},
        {1, 8, 8, NAM_MOE_SOFTMAX, 1, 0, 0.0f, NAM_F32, 1},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) test_route_case(&cases[i]);
}

/* ==== dispatch ================================================================================== */
typedef struct plan_pair {
    nam_moe_dispatch_desc cpu, gpu;
    int32_t *idx_h, *cnt_h, *off_h, *rows_h;
    void *idx_d, *cnt_d, *off_d, *rows_d, *ws_d;
    int T, k, E;
} plan_pair;

/* topk_idx: skew 0 uniform, 1 skewed (expert 0 popular, some experts empty), 2 distinct
   experts per token (k <= E) */
static int32_t *make_idx(int T, int k, int E, int skew) {
    int32_t *p = (int32_t *)test_alloc(sizeof(int32_t) * (size_t)T * (size_t)k);
    int t, s;
    for (t = 0; t < T; t++)
        for (s = 0; s < k; s++) {
            int v = test_randi(E);
            if (skew == 1) v = test_randi(3) == 0 ? 0 : test_randi(E) / 2 * 2 % E;
            if (skew == 2) {
                int q, again = 1;
                while (again) {
                    again = 0;
                    for (q = 0; q < s; q++)
                        if (p[t * k + q] == v) { again = 1; v = (v + 1) % E; break; }
                }
            }
            p[t * k + s] = v;
        }
    return p;
}

/* Dispatch idx on both sides; returns 1 when both succeeded (else FAILs / statuses set). */
static int plan_make(plan_pair *pp, int T, int k, int E, float cf, int32_t *idx, nam_status *scpu, nam_status *sgpu, nam_error *ecpu, nam_error *egpu) {
    memset(pp, 0, sizeof *pp);
    pp->T = T;
    pp->k = k;
    pp->E = E;
    pp->idx_h = idx;
    pp->cnt_h = (int32_t *)test_alloc(sizeof(int32_t) * (size_t)E);
    pp->off_h = (int32_t *)test_alloc(sizeof(int32_t) * ((size_t)E + 1));
    pp->rows_h = (int32_t *)test_alloc(sizeof(int32_t) * (size_t)T * (size_t)k);
    pp->idx_d = dev_dup(idx, sizeof(int32_t) * (size_t)T * (size_t)k);
    pp->cnt_d = dev_dup(NULL, sizeof(int32_t) * (size_t)E);
    pp->off_d = dev_dup(NULL, sizeof(int32_t) * ((size_t)E + 1));
    pp->rows_d = dev_dup(NULL, sizeof(int32_t) * (size_t)T * (size_t)k);
    pp->cpu.topk_idx = H2(idx, NAM_I32, T, k);
    pp->cpu.num_experts = E;
    pp->cpu.capacity_factor = cf;
    pp->cpu.counts = H1(pp->cnt_h, NAM_I32, E);
    pp->cpu.offsets = H1(pp->off_h, NAM_I32, E + 1);
    pp->cpu.rows = H1(pp->rows_h, NAM_I32, (int64_t)T * k);
    pp->gpu = pp->cpu;
    pp->gpu.topk_idx = C2(pp->idx_d, NAM_I32, T, k);
    pp->gpu.counts = C1(pp->cnt_d, NAM_I32, E);
    pp->gpu.offsets = C1(pp->off_d, NAM_I32, E + 1);
    pp->gpu.rows = C1(pp->rows_d, NAM_I32, (int64_t)T * k);
    {
        size_t wsb = 0;
        if ((*sgpu = nam_moe_dispatch_workspace_size(&pp->gpu, &wsb, egpu)) != NAM_OK) return 0;
        pp->ws_d = wsb ? dev_dup(NULL, wsb) : NULL;
        pp->gpu.workspace = pp->ws_d;
        pp->gpu.workspace_bytes = wsb;
    }
    *scpu = nam_moe_dispatch(&pp->cpu, ecpu);
    *sgpu = nam_moe_dispatch(&pp->gpu, egpu);
    return *scpu == NAM_OK && *sgpu == NAM_OK;
}
static void plan_free(plan_pair *pp) {
    free(pp->idx_h);
    free(pp->cnt_h);
    free(pp->off_h);
    free(pp->rows_h);
    dev_free(pp->idx_d);
    dev_free(pp->cnt_d);
    dev_free(pp->off_d);
    dev_free(pp->rows_d);
    dev_free(pp->ws_d);
    memset(pp, 0, sizeof *pp);
}

static void test_dispatch_case(int T, int k, int E, float cf, int skew) {
    plan_pair pp;
    nam_status sc, sg;
    nam_error ec, eg;
    char name[160];
    int32_t *idx = make_idx(T, k, E, skew);
    snprintf(name, sizeof name, "dispatch T=%d k=%d E=%d capacity_factor=%g%s", T, k, E, (double)cf, skew == 1 ? " skewed" : "");
    if (!plan_make(&pp, T, k, E, cf, idx, &sc, &sg, &ec, &eg)) test_fail("%s: %s", name, sc ? ec.message : eg.message);
    else {
        size_t n = (size_t)T * (size_t)k;
        int32_t *c = (int32_t *)test_alloc(sizeof(int32_t) * (size_t)E), *o = (int32_t *)test_alloc(sizeof(int32_t) * ((size_t)E + 1)),
                *r = (int32_t *)test_alloc(sizeof(int32_t) * n);
        if (dev_down(c, pp.cnt_d, sizeof(int32_t) * (size_t)E) && dev_down(o, pp.off_d, sizeof(int32_t) * ((size_t)E + 1)) && dev_down(r, pp.rows_d, sizeof(int32_t) * n)) {
            if (pp.gpu.num_rows != pp.cpu.num_rows || pp.gpu.num_dropped != pp.cpu.num_dropped)
                test_fail("%s: %s", name, test_fmt("num_rows %d num_dropped %d, CPU %d %d", pp.gpu.num_rows, pp.gpu.num_dropped, pp.cpu.num_rows, pp.cpu.num_dropped));
            else if (pp.gpu.capacity != pp.cpu.capacity)
                test_fail("%s: %s", name, test_fmt("capacity %d, CPU %d (issue 9: the desc reports the capacity applied)", pp.gpu.capacity, pp.cpu.capacity));
            else if (memcmp(c, pp.cnt_h, sizeof(int32_t) * (size_t)E)) test_fail("%s: %s", name, "counts differ from the CPU's");
            else if (memcmp(o, pp.off_h, sizeof(int32_t) * ((size_t)E + 1))) test_fail("%s: %s", name, "offsets differ from the CPU's");
            else if (memcmp(r, pp.rows_h, sizeof(int32_t) * n)) {
                size_t j = 0;
                while (r[j] == pp.rows_h[j]) j++;
                test_fail("%s: %s", name, test_fmt("rows[%zu] = %d, CPU %d", j, r[j], pp.rows_h[j]));
            } else test_ok("%s", test_fmt("%s (num_rows %d, dropped %d)", name, pp.cpu.num_rows, pp.cpu.num_dropped));
        }
        free(c);
        free(o);
        free(r);
    }
    plan_free(&pp);
}

static void test_dispatch_bad(int T, int k, int E, int nbad) {
    plan_pair pp;
    nam_status sc, sg;
    nam_error ec, eg;
    char name[160];
    int32_t *idx = make_idx(T, k, E, 0);
    int first = (T / 3) * k + k / 2;
    snprintf(name, sizeof name, "dispatch T=%d k=%d E=%d: %d bad expert id%s, the first at (%d, %d) -> NAM_ERR_RANGE, CPU message", T, k, E, nbad, nbad > 1 ? "s" : "",
             first / k, first % k);
    idx[first] = E;
    if (nbad > 1) idx[T * k - 1] = -1;
    if (nbad > 2) idx[first + 1] = -7;
    plan_make(&pp, T, k, E, 0.0f, idx, &sc, &sg, &ec, &eg);
    if (sc != NAM_ERR_RANGE) test_fail("%s: %s", name, "the CPU did not report NAM_ERR_RANGE");
    else if (sg != NAM_ERR_RANGE) test_fail("%s: %s", name, test_fmt("status %s: %s", nam_status_str(sg), sg ? eg.message : ""));
    else CHECK(strcmp(ec.message, eg.message) == 0, name, "message '%s', CPU '%s'", eg.message, ec.message);
    plan_free(&pp);
}

static void test_dispatch(void) {
    test_dispatch_case(37, 4, 8, 0.0f, 0);      /* one block */
    test_dispatch_case(37, 4, 8, 1.0f, 1);
    test_dispatch_case(64, 2, 16, 0.5f, 0);
    test_dispatch_case(5, 3, 1, 0.0f, 0);       /* E = 1 */
    test_dispatch_case(5, 3, 1, 0.25f, 0);
    test_dispatch_case(512, 4, 130, 1.0f, 1);   /* n = 2048: still one block */
    test_dispatch_case(700, 4, 64, 0.0f, 0);    /* tiles */
    test_dispatch_case(700, 4, 64, 1.25f, 1);
    test_dispatch_case(1111, 6, 8, 0.8f, 0);
    test_dispatch_case(600, 8, 2048, 1.5f, 0);
    test_dispatch_case(300, 8, 5000, 0.0f, 0);  /* E > 2048: radix passes */
    test_dispatch_case(300, 8, 5000, 1.0f, 1);
    test_dispatch_case(50, 4, 3000, 2.0f, 1);   /* radix with one tile */
    test_dispatch_bad(37, 4, 8, 1);
    test_dispatch_bad(37, 4, 8, 3);
    test_dispatch_bad(700, 4, 64, 2);
    test_dispatch_bad(300, 8, 5000, 3);
    {   /* tiled dispatch without its workspace, or with one byte too few */
        plan_pair pp;
        nam_status sc, sg;
        nam_error ec, eg;
        size_t need;
        if (plan_make(&pp, 700, 4, 64, 0.0f, make_idx(700, 4, 64, 0), &sc, &sg, &ec, &eg)) {
            need = pp.gpu.workspace_bytes;
            pp.gpu.workspace = NULL;
            pp.gpu.workspace_bytes = 0;
            sg = nam_moe_dispatch(&pp.gpu, &eg);
            CHECK(need > 0 && sg == NAM_ERR_INVALID_ARG && strstr(eg.message, "workspace is NULL") != NULL,
                     "dispatch T*k=2800 with no workspace -> NAM_ERR_INVALID_ARG", "need %zu, status %s: %s", need, nam_status_str(sg), eg.message);
            pp.gpu.workspace = pp.ws_d;
            pp.gpu.workspace_bytes = need - 1;
            sg = nam_moe_dispatch(&pp.gpu, &eg);
            CHECK(sg == NAM_ERR_INVALID_ARG && strstr(eg.message, "workspace_bytes") != NULL,
                     "dispatch with workspace_bytes one short -> NAM_ERR_INVALID_ARG", "status %s: %s", nam_status_str(sg), eg.message);
        } else
            test_fail("%s: %s", "dispatch workspace checks", sc ? ec.message : eg.message);
        plan_free(&pp);
    }
}

/* ==== permute / combine ========================================================================== */
static void test_permute_case(int T, int k, int E, float cf, int H, nam_dtype tdt, nam_dtype pdt) {
    plan_pair pp;
    nam_status sc, sg;
    nam_error ec, eg;
    char name[200];
    const size_t tb = test_esize(tdt), pb = test_esize(pdt), n = (size_t)T * (size_t)k;
    void *th = rnd_buf(tdt, (int64_t)T * H, 1.0f, 0.0f), *ph = test_alloc(n * (size_t)H * pb), *pg = test_alloc(n * (size_t)H * pb), *td, *pd;
    nam_tensor tt, pt;
    snprintf(name, sizeof name, "permute T=%d k=%d E=%d cf=%g H=%d %s -> %s", T, k, E, (double)cf, H, nam_dtype_name(tdt), nam_dtype_name(pdt));
    if (!plan_make(&pp, T, k, E, cf, make_idx(T, k, E, 2), &sc, &sg, &ec, &eg)) { test_fail("%s: %s", name, sc ? ec.message : eg.message); goto out; }
    td = dev_dup(th, (size_t)T * (size_t)H * tb);
    pd = dev_dup(NULL, n * (size_t)H * pb);
    tt = H2(th, tdt, T, H);
    pt = H2(ph, pdt, (int64_t)n, H);
    if ((sc = nam_moe_permute(&tt, &pp.cpu, &pt, &ec)) != NAM_OK) test_fail("%s: %s", name, ec.message);
    else {
        tt = C2(td, tdt, T, H);
        pt = C2(pd, pdt, (int64_t)n, H);
        if ((sg = nam_moe_permute(&tt, &pp.gpu, &pt, &eg)) != NAM_OK) test_fail("%s: %s", name, eg.message);
        else if (dev_down(pg, pd, n * (size_t)H * pb))
            CHECK(memcmp(pg, ph, (size_t)pp.cpu.num_rows * (size_t)H * pb) == 0, name, "permuted rows differ from the CPU's (%d rows)", pp.cpu.num_rows);
    }
    dev_free(td);
    dev_free(pd);
out:
    plan_free(&pp);
    free(th);
    free(ph);
    free(pg);
}

static void test_combine_case(int T, int k, int E, float cf, int H, nam_dtype xdt, nam_dtype odt, int weighted, nam_dtype wdt) {
    plan_pair pp;
    nam_status sc, sg;
    nam_error ec, eg;
    char name[220];
    const size_t xb = test_esize(xdt), ob = test_esize(odt), n = (size_t)T * (size_t)k;
    void *xh = rnd_buf(xdt, (int64_t)n * H, 1.0f, 0.0f), *wh = weighted ? rnd_buf(wdt, (int64_t)n, 1.0f, 0.0f) : NULL;
    void *oh = test_alloc((size_t)T * (size_t)H * ob), *og = test_alloc((size_t)T * (size_t)H * ob), *xd, *wd = NULL, *od;
    nam_tensor xt, wt, ot;
    snprintf(name, sizeof name, "combine T=%d k=%d E=%d cf=%g H=%d %s -> %s, %s", T, k, E, (double)cf, H, nam_dtype_name(xdt), nam_dtype_name(odt),
             weighted ? (wdt == NAM_F32 ? "f32 weights" : "bf16 weights") : "no weights");
    if (!plan_make(&pp, T, k, E, cf, make_idx(T, k, E, 1), &sc, &sg, &ec, &eg)) { test_fail("%s: %s", name, sc ? ec.message : eg.message); goto out; }
    xd = dev_dup(xh, n * (size_t)H * xb);
    if (wh) wd = dev_dup(wh, n * test_esize(wdt));
    od = dev_dup(NULL, (size_t)T * (size_t)H * ob);
    xt = H2(xh, xdt, (int64_t)n, H);
    wt = H2(wh, wdt, T, k);
    ot = H2(oh, odt, T, H);
    if ((sc = nam_moe_combine(&xt, &pp.cpu, wh ? &wt : NULL, &ot, &ec)) != NAM_OK) test_fail("%s: %s", name, ec.message);
    else {
        xt = C2(xd, xdt, (int64_t)n, H);
        wt = C2(wd, wdt, T, k);
        ot = C2(od, odt, T, H);
        if ((sg = nam_moe_combine(&xt, &pp.gpu, wd ? &wt : NULL, &ot, &eg)) != NAM_OK) test_fail("%s: %s", name, eg.message);
        else if (dev_down(og, od, (size_t)T * (size_t)H * ob)) {
            double m = ct_maxdiff(og, oh, odt, (int64_t)T * H, NULL);
            CHECK(memcmp(og, oh, (size_t)T * (size_t)H * ob) == 0, name, "out differs from the CPU's (max |diff| %g)", m);
        }
    }
    dev_free(xd);
    dev_free(wd);
    dev_free(od);
out:
    plan_free(&pp);
    free(xh);
    free(wh);
    free(oh);
    free(og);
}

/* permute then unweighted combine with k = 1 is the identity */
static void test_permute_identity(void) {
    const int T = 53, H = 40, E = 6;
    plan_pair pp;
    nam_status sc, sg;
    nam_error ec, eg;
    const char *name = "permute -> combine (k = 1, no weights) is the identity (bf16 H=40)";
    void *th = rnd_buf(NAM_BF16, (int64_t)T * H, 1.0f, 0.0f), *back = test_alloc((size_t)T * H * 2), *td, *pd, *bd;
    nam_tensor tt, pt, bt;
    if (!plan_make(&pp, T, 1, E, 0.0f, make_idx(T, 1, E, 0), &sc, &sg, &ec, &eg)) { test_fail("%s: %s", name, sc ? ec.message : eg.message); goto out; }
    td = dev_dup(th, (size_t)T * H * 2);
    pd = dev_dup(NULL, (size_t)T * H * 2);
    bd = dev_dup(NULL, (size_t)T * H * 2);
    tt = C2(td, NAM_BF16, T, H);
    pt = C2(pd, NAM_BF16, T, H);
    bt = C2(bd, NAM_BF16, T, H);
    if ((sg = nam_moe_permute(&tt, &pp.gpu, &pt, &eg)) != NAM_OK || (sg = nam_moe_combine(&pt, &pp.gpu, NULL, &bt, &eg)) != NAM_OK) test_fail("%s: %s", name, eg.message);
    else if (dev_down(back, bd, (size_t)T * H * 2)) CHECK(memcmp(back, th, (size_t)T * H * 2) == 0, name, "tokens changed");
    dev_free(td);
    dev_free(pd);
    dev_free(bd);
out:
    plan_free(&pp);
    free(th);
    free(back);
}

static void test_permute_combine(void) {
    test_permute_case(37, 4, 8, 0.0f, 72, NAM_BF16, NAM_BF16);    /* 16-byte vectors */
    test_permute_case(37, 4, 8, 1.0f, 100, NAM_BF16, NAM_BF16);   /* 8-byte vectors, drops */
    test_permute_case(29, 2, 5, 0.0f, 33, NAM_F32, NAM_F32);      /* 4-byte */
    test_permute_case(29, 2, 5, 0.0f, 3, NAM_F16, NAM_F16);       /* 2-byte */
    test_permute_case(23, 2, 4, 0.75f, 520, NAM_F32, NAM_F32);    /* several vectors per thread */
    test_permute_case(19, 3, 6, 0.0f, 24, NAM_F32, NAM_BF16);     /* converting */
    test_permute_case(300, 8, 64, 1.0f, 16, NAM_BF16, NAM_BF16);  /* tiled plan */
    test_permute_identity();
    test_combine_case(37, 4, 8, 0.0f, 72, NAM_BF16, NAM_BF16, 1, NAM_F32);
    test_combine_case(37, 4, 8, 1.0f, 72, NAM_F32, NAM_F32, 1, NAM_F32);     /* drops */
    test_combine_case(37, 4, 8, 0.5f, 100, NAM_BF16, NAM_F32, 1, NAM_BF16);  /* scalar path, many drops */
    test_combine_case(21, 2, 4, 0.0f, 8, NAM_F16, NAM_F16, 0, NAM_F32);
    test_combine_case(21, 2, 4, 0.0f, 16, NAM_F32, NAM_BF16, 0, NAM_F32);
    test_combine_case(9, 5, 8, 0.0f, 2056, NAM_BF16, NAM_BF16, 1, NAM_F32);  /* H / 8 > 256: column loop */
    test_combine_case(6, 40, 64, 1.0f, 24, NAM_F32, NAM_F32, 1, NAM_F32);    /* k > 32: slot batches */
    test_combine_case(300, 8, 64, 1.0f, 16, NAM_BF16, NAM_F32, 1, NAM_F32);  /* tiled plan */
}

/* ==== expert FFN ================================================================================== */
/* plan2 0: counts per expert 37/0/150/5 (expert 1 empty) -> topk_idx (T, 1);
   plan2 1: k = 2 over experts 0 and 2 only (1 and 3 empty), capacity_factor 0.75 (drops:
   num_rows < in.shape[0] = T * k) */
static void test_ffn_case(int H, int F, nam_dtype dt, nam_moe_act act, int plan2) {
    static const int counts[4] = {37, 0, 150, 5};
    const int E = 4, k = plan2 ? 2 : 1, T = plan2 ? 90 : 37 + 150 + 5, R = T * k;
    const double u = dt == NAM_BF16 ? 1.0 / 256.0 : 1.0 / 2048.0;
    plan_pair pp;
    nam_status sc, sg;
    nam_error ec, eg;
    char name[200];
    int32_t *idx = (int32_t *)test_alloc(sizeof(int32_t) * (size_t)T);
    int t, e, q, nr;
    void *xh = rnd_buf(dt, (int64_t)R * H, 1.0f, 0.0f), *w1h = rnd_buf(dt, (int64_t)E * F * H, 0.25f, 0.0f), *w3h = rnd_buf(dt, (int64_t)E * F * H, 0.25f, 0.0f);
    void *w2h = rnd_buf(dt, (int64_t)E * H * F, 0.25f, 0.0f), *oh = test_alloc((size_t)R * H * 2), *og = test_alloc((size_t)R * H * 2);
    void *xd = NULL, *w1d = NULL, *w3d = NULL, *w2d = NULL, *od = NULL, *ws = NULL, *cws = NULL;
    nam_moe_ffn_desc f;
    size_t wsb = 0, cwsb = 0;
    snprintf(name, sizeof name, "ffn %s %s E=4 %s H=%d F=%d", act == NAM_MOE_SWIGLU ? "swiglu" : "squared_relu", nam_dtype_name(dt),
             plan2 ? "k=2 cf=0.75 (2 empty experts, drops)" : "counts 37/0/150/5", H, F);
    if (plan2) {
        free(idx);
        idx = make_idx(T, k, E, 1);
    } else {
        for (t = 0, e = 0; e < E; e++)
            for (q = 0; q < counts[e]; q++) idx[t++] = e;
        for (t = T - 1; t > 0; t--) {   /* shuffle the tokens */
            int j = test_randi(t + 1), v = idx[t];
            idx[t] = idx[j];
            idx[j] = v;
        }
    }
    if (!plan_make(&pp, T, k, E, plan2 ? 0.75f : 0.0f, idx, &sc, &sg, &ec, &eg)) { test_fail("%s: %s", name, sc ? ec.message : eg.message); goto out; }
    nr = pp.cpu.num_rows;
    memset(&f, 0, sizeof f);
    f.in = H2(xh, dt, R, H);
    f.w1 = H3(w1h, dt, E, F, H);
    f.w3 = H3(w3h, dt, E, F, H);
    f.w2 = H3(w2h, dt, E, H, F);
    f.out = H2(oh, dt, R, H);
    f.plan = &pp.cpu;
    f.act = act;
    f.backend = NAM_BACKEND_CPU_REF;
    if ((sc = nam_moe_ffn_workspace_size(&f, &cwsb, &ec)) != NAM_OK) { test_fail("%s: %s", name, ec.message); goto out; }
    cws = test_alloc(cwsb + 64);   /* the CPU wants 64-byte aligned workspace */
    if ((sc = nam_moe_ffn(&f, (char *)cws + (64 - (uintptr_t)cws % 64) % 64, cwsb, &ec)) != NAM_OK) { test_fail("%s: %s", name, ec.message); goto out; }
    xd = dev_dup(xh, (size_t)R * H * 2);
    w1d = dev_dup(w1h, (size_t)E * F * H * 2);
    w3d = dev_dup(w3h, (size_t)E * F * H * 2);
    w2d = dev_dup(w2h, (size_t)E * H * F * 2);
    od = dev_dup(NULL, (size_t)R * H * 2);
    f.in = C2(xd, dt, R, H);
    f.w1 = C3(w1d, dt, E, F, H);
    f.w3 = C3(w3d, dt, E, F, H);
    f.w2 = C3(w2d, dt, E, H, F);
    f.out = C2(od, dt, R, H);
    f.plan = &pp.gpu;
    f.backend = NAM_BACKEND_AUTO;
    if ((sg = nam_moe_ffn_workspace_size(&f, &wsb, &eg)) != NAM_OK) { test_fail("%s: %s", name, eg.message); goto out; }
    ws = dev_dup(NULL, wsb);
    if ((sg = nam_moe_ffn(&f, ws, wsb, &eg)) != NAM_OK) test_fail("%s: %s", name, eg.message);
    else if (dev_down(og, od, (size_t)R * H * 2)) {
        double scale, m = ct_maxdiff(og, oh, dt, (int64_t)nr * H, &scale);
        if (f.ran != NAM_BACKEND_CUDA) test_fail("%s: %s", name, "ran is not NAM_BACKEND_CUDA");
        else CHECK(m <= 4.0 * u * scale, test_fmt("%s (max |gpu - ref| = %.3g = %.2f u * scale, scale %.3g)", name, m, m / (u * scale), scale), "max |gpu - ref| = %g > 4 u * scale = %g",
                      m, 4.0 * u * scale);
    }
out:
    plan_free(&pp);
    dev_free(xd);
    dev_free(w1d);
    dev_free(w3d);
    dev_free(w2d);
    dev_free(od);
    dev_free(ws);
    free(cws);
    free(xh);
    free(w1h);
    free(w3h);
    free(w2h);
    free(oh);
    free(og);
}

static void test_ffn(void) {
    test_ffn_case(72, 100, NAM_BF16, NAM_MOE_SWIGLU, 0);        /* GEMM1 cp.async (K = 72), GEMM2 element loads (K = 100) */
    test_ffn_case(72, 100, NAM_F16, NAM_MOE_SQUARED_RELU, 0);
    test_ffn_case(64, 136, NAM_F16, NAM_MOE_SWIGLU, 0);         /* both cp.async, 3 n-tiles of h */
    test_ffn_case(64, 136, NAM_BF16, NAM_MOE_SQUARED_RELU, 0);  /* 2 n-tiles */
    test_ffn_case(130, 8, NAM_BF16, NAM_MOE_SWIGLU, 0);         /* K tail 2, N = 130 > 128 in GEMM2 */
    test_ffn_case(40, 24, NAM_BF16, NAM_MOE_SWIGLU, 1);
    test_ffn_case(40, 24, NAM_F16, NAM_MOE_SQUARED_RELU, 1);
}

/* ==== error paths ================================================================================= */
static void test_errors(void) {
    nam_error e;
    nam_status s;
    const int T = 8, E = 4, k = 2, H = 16, F = 24;
    plan_pair pp;
    nam_status sc, sg;
    nam_error ec, eg;
    void *x32 = dev_dup(NULL, (size_t)T * k * (H + 8) * 4), *w32 = dev_dup(NULL, (size_t)E * F * H * 4), *o32 = dev_dup(NULL, (size_t)T * k * H * 4);
    void *ws = dev_dup(NULL, 1 << 16);
    float hostw[16];
    int32_t hosti[16];
    nam_moe_ffn_desc f;
    nam_moe_route_desc r;
    nam_tensor tt, pt;
    size_t b = 0;
    if (!plan_make(&pp, T, k, E, 0.0f, make_idx(T, k, E, 2), &sc, &sg, &ec, &eg)) { test_fail("%s: %s", "errors: plan", sc ? ec.message : eg.message); goto out; }
    memset(&f, 0, sizeof f);
    f.in = C2(x32, NAM_F32, T * k, H);
    f.w1 = C3(w32, NAM_F32, E, F, H);
    f.w3 = C3(w32, NAM_F32, E, F, H);
    f.w2 = C3(w32, NAM_F32, E, H, F);
    f.out = C2(o32, NAM_F32, T * k, H);
    f.plan = &pp.gpu;
    s = nam_moe_ffn(&f, ws, 1 << 16, &e);
    CHECK(s == NAM_ERR_NOT_IMPLEMENTED && strstr(e.message, "in.dtype = f32"), "ffn f32 on CUDA -> NAM_ERR_NOT_IMPLEMENTED naming in.dtype", "status %s: %s",
             nam_status_str(s), e.message);
    s = nam_moe_ffn_workspace_size(&f, &b, &e);
    CHECK(s == NAM_ERR_NOT_IMPLEMENTED, "ffn_workspace_size f32 on CUDA -> NAM_ERR_NOT_IMPLEMENTED", "status %s: %s", nam_status_str(s), e.message);
    f.in.dtype = f.w1.dtype = f.w3.dtype = f.out.dtype = NAM_BF16;
    f.w2.dtype = NAM_F16;
    s = nam_moe_ffn(&f, ws, 1 << 16, &e);
    CHECK(s == NAM_ERR_NOT_IMPLEMENTED && strstr(e.message, "w2.dtype = f16"), "ffn mixed dtypes -> NAM_ERR_NOT_IMPLEMENTED naming w2", "status %s: %s",
             nam_status_str(s), e.message);
    f.w2.dtype = NAM_BF16;
    s = nam_moe_ffn(&f, ws, 64, &e);
    CHECK(s == NAM_ERR_INVALID_ARG && strstr(e.message, "workspace_bytes"), "ffn small workspace -> NAM_ERR_INVALID_ARG", "status %s: %s", nam_status_str(s), e.message);
    f.w3 = H3(hostw, NAM_BF16, E, F, H);
    s = nam_moe_ffn(&f, ws, 1 << 16, &e);
    CHECK(s == NAM_ERR_INVALID_ARG && strstr(e.message, "w3"), "ffn with a CPU w3 -> NAM_ERR_INVALID_ARG", "status %s: %s", nam_status_str(s), e.message);
    f.w3 = f.w1;
    f.in.stride[0] = H + 8;
    f.in.stride[1] = 1;
    s = nam_moe_ffn(&f, ws, 1 << 16, &e);
    CHECK(s == NAM_ERR_NOT_IMPLEMENTED && strstr(e.message, "in.stride[0]"), "ffn strided in -> NAM_ERR_NOT_IMPLEMENTED", "status %s: %s", nam_status_str(s),
             e.message);

    memset(&r, 0, sizeof r);
    r.logits = C2(x32, NAM_F32, T, E);
    r.topk_idx = C2(o32, NAM_I32, T, 2);
    r.topk_weight = H2(hostw, NAM_F32, T, 2);
    r.topk = 2;
    s = nam_moe_route(&r, &e);
    CHECK(s == NAM_ERR_INVALID_ARG && strstr(e.message, "topk_weight is a CPU tensor"), "route with a CPU topk_weight -> NAM_ERR_INVALID_ARG", "status %s: %s",
             nam_status_str(s), e.message);
    r.topk_weight = C2(w32, NAM_F32, T, 2);
    r.logits.stride[0] = 2 * E;
    r.logits.stride[1] = 2;
    s = nam_moe_route(&r, &e);
    CHECK(s == NAM_ERR_NOT_IMPLEMENTED && strstr(e.message, "logits.stride"), "route with strided logits -> NAM_ERR_NOT_IMPLEMENTED", "status %s: %s",
             nam_status_str(s), e.message);

    tt = H2(hostw, NAM_F32, T, 2);
    pt = C2(o32, NAM_F32, T * k, 2);
    s = nam_moe_permute(&tt, &pp.gpu, &pt, &e);
    CHECK(s == NAM_ERR_INVALID_ARG, "permute with CPU tokens and a CUDA plan -> NAM_ERR_INVALID_ARG", "status %s: %s", nam_status_str(s), e.message);
    tt = C2(x32, NAM_F32, T * k, 2);
    pt = H2(hostw, NAM_F32, T, 2);
    s = nam_moe_combine(&tt, &pp.gpu, NULL, &pt, &e);
    CHECK(s == NAM_ERR_INVALID_ARG, "combine into a CPU out with a CUDA plan -> NAM_ERR_INVALID_ARG", "status %s: %s", nam_status_str(s), e.message);
    pp.gpu.rows = H1(hosti, NAM_I32, T * k);
    s = nam_moe_dispatch(&pp.gpu, &e);
    CHECK(s == NAM_ERR_INVALID_ARG && strstr(e.message, "rows"), "dispatch with CPU rows -> NAM_ERR_INVALID_ARG", "status %s: %s", nam_status_str(s), e.message);
out:
    plan_free(&pp);
    dev_free(x32);
    dev_free(w32);
    dev_free(o32);
    dev_free(ws);
}

int main(void) {
    if (!ct_init("test_cuda_moe")) return 0;
    test_route();
    test_dispatch();
    test_permute_combine();
    test_ffn();
    test_errors();
    return test_done("test_cuda_moe");
}
