/* bench/bench_attention.h - causal GQA attention forward, fast CPU path.

   Shape: b 1, s 2048 (--quick: 256), 32 query heads, 8 kv heads, head dim 128, causal,
   f32 storage, q (b, s, 32, 128), k/v (b, s, 8, 128) contiguous; q, k, v ~ U[-1, 1].
   FLOPs (FlashAttention's benchmark convention, benchmarks/benchmark_flash_attention.py):
       4 * b * s^2 * hq * d / 2       (QK^T and PV, 2 flops per multiply-add, halved for
                                       causal; exp/max/rescale work is not counted, nor are
                                       the masked halves of the diagonal tiles)
   Bytes: q, k, v and out read or written once: 4 * (2 b s hq d + 2 b s hk d).
   Validation before timing: query rows [0, 4), [s/2, s/2 + 4) and [s - 4, s) of every head
   against NAM_BACKEND_CPU_REF (exact double softmax) run on views of just those rows (with
   bottom-right alignment, rows [i0, i0 + n) over keys [0, i0 + n) are the same rows), at
   |diff| <= 2e-5 + 1e-4 |ref|. Any error, NOT_IMPLEMENTED included, fails the bench. */
#ifndef NAM_BENCH_ATTENTION_H
#define NAM_BENCH_ATTENTION_H

#define BENCH_ATTENTION_INPUTS "attention q, k, v ~ U[-1,1]"

typedef struct bench_attn_ctx {
    nam_attention_desc d;
    void *ws;
    size_t ws_bytes;
} bench_attn_ctx;

static int bench_attn_once(void *ctx) {
    bench_attn_ctx *c = (bench_attn_ctx *)ctx;
    nam_error err;
    if (nam_attention(&c->d, c->ws, c->ws_bytes, &err) != NAM_OK) {
        fprintf(stderr, "nam-bench: attention: %s\n", err.message);
        return 1;
    }
    return 0;
}

/* rows [i0, i0 + n) of every head through CPU_REF, compared with the fast output */
static int bench_attn_check_rows(const bench_attn_ctx *c, int64_t i0, int64_t n, float *ref) {
    nam_attention_desc r = c->d;
    nam_error err;
    size_t need = 0, row = (size_t)(c->d.q.shape[2] * c->d.q.shape[3]);
    void *ws;
    int bad;
    r.backend = NAM_BACKEND_CPU_REF;
    r.q.data = (float *)c->d.q.data + (size_t)i0 * row;
    r.q.shape[1] = n;
    r.k.shape[1] = r.v.shape[1] = i0 + n;
    r.out = r.q;
    r.out.data = ref;
    if (nam_attention_workspace_size(&r, &need, &err) != NAM_OK || !(ws = bench_alloc(need))) {
        fprintf(stderr, "nam-bench: attention reference: %s\n", need ? "out of memory" : err.message);
        return 1;
    }
    if (nam_attention(&r, ws, need, &err) != NAM_OK) {
        fprintf(stderr, "nam-bench: attention reference: %s\n", err.message);
        free(ws);
        return 1;
    }
    free(ws);
    bad = bench_validate("attention (fast vs cpu-ref)", (const float *)c->d.out.data + (size_t)i0 * row, ref, (size_t)n * row, 2e-5f, 1e-4f);
    return bad;
}

static int bench_attention(bench_opts *o) {
    const int64_t b = 1, s = o->quick ? 256 : 2048, hq = 32, hk = 8, hd = 128;
    int64_t shq[4], shk[4];
    size_t nq = (size_t)(b * s * hq * hd), nk = (size_t)(b * s * hk * hd);
    float *q = (float *)bench_alloc(nq * 4), *k = (float *)bench_alloc(nk * 4), *v = (float *)bench_alloc(nk * 4);
    float *out = (float *)bench_alloc(nq * 4), *ref = (float *)bench_alloc((size_t)(4 * hq * hd) * 4);
    bench_attn_ctx c;
    nam_error err;
    unsigned seed = 7u;
    double med, flops, bytes;
    char shape[160];
    int rc = 1;
    memset(&c, 0, sizeof c);
    if (!q || !k || !v || !out || !ref) { fprintf(stderr, "nam-bench: attention: out of memory\n"); goto done; }
    bench_fill(q, nq, &seed, -1.0f, 1.0f);
    bench_fill(k, nk, &seed, -1.0f, 1.0f);
    bench_fill(v, nk, &seed, -1.0f, 1.0f);
    shq[0] = b; shq[1] = s; shq[2] = hq; shq[3] = hd;
    shk[0] = b; shk[1] = s; shk[2] = hk; shk[3] = hd;
    c.d.q = nam_tensor_make(q, NAM_F32, 4, shq);
    c.d.k = nam_tensor_make(k, NAM_F32, 4, shk);
    c.d.v = nam_tensor_make(v, NAM_F32, 4, shk);
    c.d.out = nam_tensor_make(out, NAM_F32, 4, shq);
    c.d.causal = 1;
    c.d.align = NAM_CAUSAL_BOTTOM_RIGHT;
    c.d.backend = NAM_BACKEND_CPU;
    c.d.threads = o->threads;
    if (nam_attention_workspace_size(&c.d, &c.ws_bytes, &err) != NAM_OK) {
        fprintf(stderr, "nam-bench: attention: %s\n", err.message);
        goto done;
    }
    if (!(c.ws = bench_alloc(c.ws_bytes))) { fprintf(stderr, "nam-bench: attention: out of memory\n"); goto done; }
    if (bench_attn_once(&c)) goto done;
    if (c.d.ran != NAM_BACKEND_CPU) { fprintf(stderr, "nam-bench: attention ran %s, not cpu\n", nam_backend_name(c.d.ran)); goto done; }
    if (bench_attn_check_rows(&c, 0, 4, ref) || bench_attn_check_rows(&c, s / 2, 4, ref) || bench_attn_check_rows(&c, s - 4, 4, ref)) goto done;
    med = bench_median(bench_attn_once, &c, o->reps);
    if (med < 0) goto done;
    flops = 4.0 * (double)b * (double)s * (double)s * (double)hq * (double)hd / 2.0;
    bytes = 4.0 * (double)(2 * nq + 2 * nk);
    snprintf(shape, sizeof shape, "{\"b\":%d,\"s\":%d,\"hq\":%d,\"hk\":%d,\"d\":%d,\"causal\":true}", (int)b, (int)s, (int)hq, (int)hk, (int)hd);
    bench_row(o, "attention", shape, "cpu", o->threads, med, flops, bytes, 'c');
    rc = 0;
done:
    free(q); free(k); free(v); free(out); free(ref); free(c.ws);
    return rc;
}

#endif
