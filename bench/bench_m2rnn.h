/* bench/bench_m2rnn.h - the M2RNN scan (nam_m2rnn), fast CPU path vs the reference.

   Shapes: NAM56R's R block, K 64, V 16, one shared q/k head (nq = nk = 1), H value heads
   (= nv = nw = nf): H 51 (hidden 4096) and H 44 (hidden 3584), l 4096, b 1 and 2, f32
   storage, D and dt_bias given (--quick: b 1, l 256, H 51 only).
   FLOPs per token and head, as the issue counts them:
       2*K*V*V  (S W)  +  2*K*V  (k v^T added)  +  2*K*V  (read-out S^T q)  +  3*K*V  (blend f S + (1 - f) S~)
     = 2*K*V*V + 7*K*V = 39936 at K 64, V 16 (the K*V tanh and the per-token gate are not counted).
   Bytes: q, k (b l K), v and out (b l H V), a (b l H), 4 bytes each, read or written once.
   Validation before timing: fast vs NAM_BACKEND_CPU_REF (double) at l 96, H 51, b 1:
   max |diff| <= 4e-6 * max(1, max |ref|). The cpu-ref row times that validation shape. */
#ifndef NAM_BENCH_M2RNN_H
#define NAM_BENCH_M2RNN_H

typedef struct bench_m2rnn_ctx { nam_m2rnn_desc d; void *ws; size_t need; } bench_m2rnn_ctx;

static int bench_m2rnn_once(void *ctx) {
    bench_m2rnn_ctx *c = (bench_m2rnn_ctx *)ctx;
    nam_error e;
    if (nam_m2rnn(&c->d, c->ws, c->need, &e) != NAM_OK) { fprintf(stderr, "nam-bench: m2rnn: %s\n", e.message); return 1; }
    return 0;
}

/* with_ref: validate against the reference first (and print its row) */
static int bench_m2rnn_run(bench_opts *o, int b, int l, int H, int with_ref) {
    const int K = 64, V = 16;
    size_t nq = (size_t)b * l * K, nv = (size_t)b * l * H * V, na = (size_t)b * l * H;
    float *q = (float *)bench_alloc(4 * nq), *k = (float *)bench_alloc(4 * nq), *v = (float *)bench_alloc(4 * nv), *a = (float *)bench_alloc(4 * na);
    float *W = (float *)bench_alloc(4 * (size_t)H * V * V), *Al = (float *)bench_alloc(4 * (size_t)H), *bias = (float *)bench_alloc(4 * (size_t)H);
    float *D = (float *)bench_alloc(4 * (size_t)H * V), *y = (float *)bench_alloc(4 * nv), *yr = (float *)bench_alloc(4 * nv);
    int64_t sq[4] = {b, l, 1, K}, sv[4] = {b, l, H, V}, sa[3] = {b, l, H}, sw[3] = {H, V, V}, sh[1] = {H}, sd[2] = {H, V};
    bench_m2rnn_ctx c;
    unsigned seed = 11;
    nam_error e;
    char shape[160];
    double t, flops = (2.0 * K * V * V + 7.0 * K * V) * b * l * H, bytes = 4.0 * (2 * nq + 2 * nv + na);
    int rc = 1, i, j;
    memset(&c, 0, sizeof c);
    if (!q || !k || !v || !a || !W || !Al || !bias || !D || !y || !yr) goto done;
    bench_fill(q, nq, &seed, -1, 1); bench_fill(k, nq, &seed, -1, 1); bench_fill(v, nv, &seed, -1, 1); bench_fill(a, na, &seed, -2, 2);
    bench_fill(W, (size_t)H * V * V, &seed, -0.1f, 0.1f);
    for (i = 0; i < H; i++)
        for (j = 0; j < V; j++) W[((size_t)i * V + j) * V + j] += 1.0f;   /* W = I + noise, as initialised */
    bench_fill(Al, H, &seed, 0, 2.7f); bench_fill(bias, H, &seed, -6, -2); bench_fill(D, (size_t)H * V, &seed, 0.5f, 1.5f);
    c.d.q = nam_tensor_make(q, NAM_F32, 4, sq); c.d.k = nam_tensor_make(k, NAM_F32, 4, sq); c.d.v = nam_tensor_make(v, NAM_F32, 4, sv);
    c.d.a = nam_tensor_make(a, NAM_F32, 3, sa); c.d.W = nam_tensor_make(W, NAM_F32, 3, sw); c.d.A_log = nam_tensor_make(Al, NAM_F32, 1, sh);
    c.d.dt_bias = nam_tensor_make(bias, NAM_F32, 1, sh); c.d.D = nam_tensor_make(D, NAM_F32, 2, sd); c.d.out = nam_tensor_make(y, NAM_F32, 4, sv);
    c.d.threads = o->threads; c.d.backend = NAM_BACKEND_CPU;
    if (nam_m2rnn_workspace_size(&c.d, &c.need, &e) != NAM_OK) { fprintf(stderr, "nam-bench: m2rnn: %s\n", e.message); goto done; }
    c.ws = bench_alloc(c.need);
    if (!c.ws || bench_m2rnn_once(&c)) goto done;
    snprintf(shape, sizeof shape, "{\"b\":%d,\"l\":%d,\"H\":%d,\"K\":%d,\"V\":%d,\"nq\":1,\"nk\":1}", b, l, H, K, V);
    if (with_ref) {
        bench_m2rnn_ctx r = c;
        double scale = 1;
        r.d.backend = NAM_BACKEND_CPU_REF;
        r.d.out = nam_tensor_make(yr, NAM_F32, 4, sv);
        if (nam_m2rnn_workspace_size(&r.d, &r.need, &e) != NAM_OK) goto done;
        r.ws = bench_alloc(r.need);
        t = r.ws ? bench_median(bench_m2rnn_once, &r, 1) : -1;
        free(r.ws);
        for (i = 0; i < (int)nv; i++) if (yr[i] > scale || -yr[i] > scale) scale = yr[i] > 0 ? yr[i] : -yr[i];
        if (t < 0 || bench_validate("m2rnn fast vs reference", y, yr, nv, (float)(4e-6 * scale), 0)) goto done;
        bench_row(o, "m2rnn", shape, "cpu-ref", 1, t, flops, bytes, 'c');
    }
    t = bench_median(bench_m2rnn_once, &c, o->reps);
    if (t < 0) goto done;
    bench_row(o, "m2rnn", shape, "cpu", o->threads, t, flops, bytes, 'c');
    rc = 0;
done:
    free(q); free(k); free(v); free(a); free(W); free(Al); free(bias); free(D); free(y); free(yr); free(c.ws);
    return rc;
}

static int bench_m2rnn(bench_opts *o) {
    if (bench_m2rnn_run(o, 1, 96, 51, 1)) return 1;
    if (o->quick) return bench_m2rnn_run(o, 1, 256, 51, 0);
    if (bench_m2rnn_run(o, 1, 4096, 51, 0)) return 1;
    if (bench_m2rnn_run(o, 2, 4096, 51, 0)) return 1;
    return bench_m2rnn_run(o, 2, 4096, 44, 0);
}
#endif
