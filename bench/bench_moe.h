/* bench/bench_moe.h - one MoE layer (route, dispatch, permute, expert FFN, combine), fast CPU path.

   Shape: 512 tokens (--quick: 64), 128 experts (--quick: 16), top-8, hidden 2048, expert
   ffn 768, SwiGLU, f32 storage, softmax router on random logits (T, E), no capacity limit.
   Inputs: logits ~ U[-2, 2], tokens ~ U[-1, 1], w1, w3 ~ U[-0.02, 0.02], w2 ~ U[-0.03, 0.03].
   Weights w1, w3 (E, 768, 2048) and w2 (E, 2048, 768): 2.4 GB for 128 experts.
   FLOPs (the expert GEMMs, 2 flops per multiply-add; routing, the activation and the
   weighted combine are < 0.01% and not counted):
       2 * (T * k) * (3 * H * F)                     (T*k rows through 3 H x F products)
   Bytes: the weights read once plus the activations each kernel reads or writes once:
       4 * (3 * E * F * H)  +  4 * (T H + 2 T k H + 2 T k H + T H)
       (weights; tokens read, permuted written/read, expert output written/read, out written)
   Second row "moe-permute": nam_moe_permute + nam_moe_combine (weighted) alone, kind 'm':
       bytes = 2 * (2 * T * k * H * 4)   (each op reads and writes T k H f32 values)
       flops = 2 * T * k * H             (the combine's multiply-adds)
   Validation before timing: the fast layer's expert outputs for experts {0, 1} and
   {E-2, E-1} against NAM_BACKEND_CPU_REF (fp64 loops) run on views holding just those
   experts' rows and weights, at |diff| <= 1e-4 * max|ref|; the combined output of tokens
   0..3 against a loop over their slots at 1e-5 * max|ref|. */
#ifndef NAM_BENCH_MOE_H
#define NAM_BENCH_MOE_H

#define BENCH_MOE_INPUTS "moe logits ~ U[-2,2], tokens ~ U[-1,1], w1, w3 ~ U[-0.02,0.02], w2 ~ U[-0.03,0.03]"

typedef struct bench_moe_ctx {
    int T, E, k, H, F, threads;
    float *logits, *x, *w1, *w3, *w2, *wt, *perm, *eo, *y;
    int32_t *idx, *counts, *offsets, *rows;
    nam_moe_route_desc route;
    nam_moe_dispatch_desc plan;
    nam_moe_ffn_desc ffn;
    nam_tensor tx, tp, te, tw, ty;
    void *ws;
    size_t ws_bytes;
} bench_moe_ctx;

static int bench_moe_fail(const char *what, const nam_error *e) {
    fprintf(stderr, "nam-bench: moe: %s: %s\n", what, e->message);
    return 1;
}

/* The whole layer. */
static int bench_moe_layer(void *ctx) {
    bench_moe_ctx *c = (bench_moe_ctx *)ctx;
    nam_error e;
    if (nam_moe_route(&c->route, &e) != NAM_OK) return bench_moe_fail("route", &e);
    if (nam_moe_dispatch(&c->plan, &e) != NAM_OK) return bench_moe_fail("dispatch", &e);
    if (nam_moe_permute(&c->tx, &c->plan, &c->tp, &e) != NAM_OK) return bench_moe_fail("permute", &e);
    if (nam_moe_ffn(&c->ffn, c->ws, c->ws_bytes, &e) != NAM_OK) return bench_moe_fail("ffn", &e);
    if (nam_moe_combine(&c->te, &c->plan, &c->tw, &c->ty, &e) != NAM_OK) return bench_moe_fail("combine", &e);
    return 0;
}

static int bench_moe_movement(void *ctx) {
    bench_moe_ctx *c = (bench_moe_ctx *)ctx;
    nam_error e;
    if (nam_moe_permute(&c->tx, &c->plan, &c->tp, &e) != NAM_OK) return bench_moe_fail("permute", &e);
    if (nam_moe_combine(&c->te, &c->plan, &c->tw, &c->ty, &e) != NAM_OK) return bench_moe_fail("combine", &e);
    return 0;
}

/* Experts [e0, e0 + ne) through CPU_REF on views of their rows and weights. */
static int bench_moe_check_experts(const bench_moe_ctx *c, int e0, int ne) {
    nam_moe_ffn_desc r = c->ffn;
    nam_moe_dispatch_desc sub;
    nam_error err;
    int32_t off[9];
    int64_t r0 = c->offsets[e0], n = c->offsets[e0 + ne] - r0, fh = (int64_t)c->F * c->H, i;
    size_t need = 0;
    float *ref;
    void *ws;
    double mx = 0;
    int j, bad;
    if (ne > 8) return 1;
    if (n == 0) return 0;
    memset(&sub, 0, sizeof sub);
    for (j = 0; j <= ne; j++) off[j] = c->offsets[e0 + j] - (int32_t)r0;
    sub.num_experts = ne;
    sub.offsets = nam_tensor_make(off, NAM_I32, 1, NULL);
    sub.offsets.shape[0] = ne + 1;
    sub.num_rows = (int)n;
    r.plan = &sub;
    r.backend = NAM_BACKEND_CPU_REF;
    r.in.data = c->perm + r0 * c->H;
    r.in.shape[0] = n;
    r.out = r.in;
    r.w1.data = c->w1 + e0 * fh;
    r.w3.data = c->w3 + e0 * fh;
    r.w2.data = c->w2 + e0 * fh;
    r.w1.shape[0] = r.w3.shape[0] = r.w2.shape[0] = ne;
    ref = (float *)bench_alloc(sizeof(float) * (size_t)(n * c->H));
    r.out.data = ref;
    if (!ref || nam_moe_ffn_workspace_size(&r, &need, &err) != NAM_OK || !(ws = bench_alloc(need))) {
        free(ref);
        fprintf(stderr, "nam-bench: moe reference: %s\n", ref ? err.message : "out of memory");
        return 1;
    }
    if (nam_moe_ffn(&r, ws, need, &err) != NAM_OK) { free(ref); free(ws); return bench_moe_fail("ffn reference", &err); }
    for (i = 0; i < n * c->H; i++) mx = fabs(ref[i]) > mx ? fabs(ref[i]) : mx;
    bad = bench_validate("moe ffn vs cpu-ref", c->eo + r0 * c->H, ref, (size_t)(n * c->H), (float)(1e-4 * mx), 0.0f);
    free(ref);
    free(ws);
    return bad;
}

static int bench_moe_check_combine(const bench_moe_ctx *c) {
    float ref[4 * 2048];
    int t, s, j, h, H = c->H;
    double mx = 0;
    if (H > 2048) return 0;
    for (t = 0; t < 4; t++)
        for (h = 0; h < H; h++) {
            double acc = 0;
            for (j = 0; j < c->plan.num_rows; j++)
                if (c->rows[j] / c->k == t) {
                    s = c->rows[j] % c->k;
                    acc += (double)c->wt[t * c->k + s] * c->eo[(int64_t)j * H + h];
                }
            ref[t * H + h] = (float)acc;
            mx = fabs(acc) > mx ? fabs(acc) : mx;
        }
    return bench_validate("moe combine vs loop", c->y, ref, (size_t)(4 * H), (float)(1e-5 * mx), 0.0f);
}

static int bench_moe(bench_opts *o) {
    bench_moe_ctx c;
    nam_error e;
    nam_status st;
    unsigned seed = 12345u;
    int64_t R, fh;
    double t, flops, bytes;
    char shape[256];
    int rc = 1;
    memset(&c, 0, sizeof c);
    c.T = o->quick ? 64 : 512;
    c.E = o->quick ? 16 : 128;
    c.k = 8;
    c.H = 2048;
    c.F = 768;
    c.threads = o->threads;
    R = (int64_t)c.T * c.k;
    fh = (int64_t)c.F * c.H;
    c.logits = (float *)bench_alloc(sizeof(float) * (size_t)(c.T * c.E));
    c.x = (float *)bench_alloc(sizeof(float) * (size_t)(c.T * c.H));
    c.w1 = (float *)bench_alloc(sizeof(float) * (size_t)(c.E * fh));
    c.w3 = (float *)bench_alloc(sizeof(float) * (size_t)(c.E * fh));
    c.w2 = (float *)bench_alloc(sizeof(float) * (size_t)(c.E * fh));
    c.wt = (float *)bench_alloc(sizeof(float) * (size_t)R);
    c.perm = (float *)bench_alloc(sizeof(float) * (size_t)(R * c.H));
    c.eo = (float *)bench_alloc(sizeof(float) * (size_t)(R * c.H));
    c.y = (float *)bench_alloc(sizeof(float) * (size_t)(c.T * c.H));
    c.idx = (int32_t *)bench_alloc(sizeof(int32_t) * (size_t)R);
    c.counts = (int32_t *)bench_alloc(sizeof(int32_t) * (size_t)c.E);
    c.offsets = (int32_t *)bench_alloc(sizeof(int32_t) * (size_t)(c.E + 1));
    c.rows = (int32_t *)bench_alloc(sizeof(int32_t) * (size_t)R);
    if (!c.logits || !c.x || !c.w1 || !c.w3 || !c.w2 || !c.wt || !c.perm || !c.eo || !c.y || !c.idx || !c.counts || !c.offsets || !c.rows) {
        fprintf(stderr, "nam-bench: moe: out of memory\n");
        goto done;
    }
    bench_fill(c.logits, (size_t)(c.T * c.E), &seed, -2.0f, 2.0f);
    bench_fill(c.x, (size_t)(c.T * c.H), &seed, -1.0f, 1.0f);
    bench_fill(c.w1, (size_t)(c.E * fh), &seed, -0.02f, 0.02f);
    bench_fill(c.w3, (size_t)(c.E * fh), &seed, -0.02f, 0.02f);
    bench_fill(c.w2, (size_t)(c.E * fh), &seed, -0.03f, 0.03f);

    c.route.logits = nam_tensor_make(c.logits, NAM_F32, 2, NULL);
    c.route.logits.shape[0] = c.T; c.route.logits.shape[1] = c.E;
    c.route.topk_idx = nam_tensor_make(c.idx, NAM_I32, 2, NULL);
    c.route.topk_idx.shape[0] = c.T; c.route.topk_idx.shape[1] = c.k;
    c.route.topk_weight = nam_tensor_make(c.wt, NAM_F32, 2, NULL);
    c.route.topk_weight.shape[0] = c.T; c.route.topk_weight.shape[1] = c.k;
    c.route.topk = c.k;
    c.plan.topk_idx = c.route.topk_idx;
    c.plan.num_experts = c.E;
    c.plan.counts = nam_tensor_make(c.counts, NAM_I32, 1, NULL); c.plan.counts.shape[0] = c.E;
    c.plan.offsets = nam_tensor_make(c.offsets, NAM_I32, 1, NULL); c.plan.offsets.shape[0] = c.E + 1;
    c.plan.rows = nam_tensor_make(c.rows, NAM_I32, 1, NULL); c.plan.rows.shape[0] = R;
    c.tx = nam_tensor_make(c.x, NAM_F32, 2, NULL); c.tx.shape[0] = c.T; c.tx.shape[1] = c.H;
    c.tp = nam_tensor_make(c.perm, NAM_F32, 2, NULL); c.tp.shape[0] = R; c.tp.shape[1] = c.H;
    c.te = c.tp; c.te.data = c.eo;
    c.tw = c.route.topk_weight;
    c.ty = c.tx; c.ty.data = c.y;
    c.ffn.in = c.tp;
    c.ffn.out = c.te;
    c.ffn.w1 = nam_tensor_make(c.w1, NAM_F32, 3, NULL);
    c.ffn.w1.shape[0] = c.E; c.ffn.w1.shape[1] = c.F; c.ffn.w1.shape[2] = c.H;
    c.ffn.w3 = c.ffn.w1; c.ffn.w3.data = c.w3;
    c.ffn.w2 = c.ffn.w1; c.ffn.w2.data = c.w2; c.ffn.w2.shape[1] = c.H; c.ffn.w2.shape[2] = c.F;
    c.ffn.plan = &c.plan;
    c.ffn.act = NAM_MOE_SWIGLU;
    c.ffn.backend = NAM_BACKEND_CPU;
    c.ffn.threads = o->threads;

    st = nam_moe_route(&c.route, &e);
    if (st != NAM_OK) { bench_moe_fail("route", &e); goto done; }
    if (nam_moe_ffn_workspace_size(&c.ffn, &c.ws_bytes, &e) != NAM_OK) { bench_moe_fail("workspace", &e); goto done; }
    if (!(c.ws = bench_alloc(c.ws_bytes))) { fprintf(stderr, "nam-bench: moe: out of memory (workspace)\n"); goto done; }
    /* validate one full layer first */
    if (bench_moe_layer(&c)) goto done;
    if (bench_moe_check_experts(&c, 0, 2) || bench_moe_check_experts(&c, c.E - 2, 2) || bench_moe_check_combine(&c)) goto done;

    t = bench_median(bench_moe_layer, &c, o->reps);
    if (t < 0) goto done;
    flops = 2.0 * (double)R * 3.0 * (double)c.H * (double)c.F;
    bytes = 4.0 * (3.0 * (double)c.E * (double)fh) + 4.0 * ((double)c.T * c.H * 2 + 4.0 * (double)R * c.H);
    snprintf(shape, sizeof shape, "{\"tokens\":%d,\"experts\":%d,\"topk\":%d,\"hidden\":%d,\"ffn\":%d,\"act\":\"swiglu\"}", c.T, c.E, c.k, c.H, c.F);
    bench_row(o, "moe", shape, "cpu", o->threads, t, flops, bytes, 'c');

    t = bench_median(bench_moe_movement, &c, o->reps);
    if (t < 0) goto done;
    snprintf(shape, sizeof shape, "{\"tokens\":%d,\"experts\":%d,\"topk\":%d,\"hidden\":%d,\"op\":\"permute+combine\"}", c.T, c.E, c.k, c.H);
    bench_row(o, "moe-perm", shape, "cpu", 1, t, 2.0 * (double)R * c.H, 2.0 * (2.0 * (double)R * c.H * 4.0), 'm');
    rc = 0;
done:
    free(c.logits); free(c.x); free(c.w1); free(c.w3); free(c.w2); free(c.wt); free(c.perm); free(c.eo); free(c.y);
    free(c.idx); free(c.counts); free(c.offsets); free(c.rows); free(c.ws);
    return rc;
}

#endif
