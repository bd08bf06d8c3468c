/* >>moe -------------------------------------------------------------------------------- */
/* MoE: router, dispatch plan, permute, grouped expert FFN, combine (Megatron semantics:
   topk_routing_with_score_function, permute/unpermute with a routing map, "position"
   capacity dropping).

   Router     one pass per token: selection score per expert, insertion into a sorted
              top-k list held in the output row (ties keep the lower expert index), then
              the weights. Softmax and sigmoid are computed in double from max-shifted
              logits, so 1e30 or -1e30 logits give no overflow and no NaN.
   Dispatch   counting sort: histogram, capacity clip, exclusive prefix sum (offsets),
              then one ordered pass that places (t, slot) in its expert's segment, so
              every segment lists its rows in ascending token order (stable).
   Combine    per token, in slot order: the row of (t, slot) is found by binary search in
              its expert's segment (segments are sorted), so no inverse map is needed; the
              first contribution is assigned, not added to 0, which makes permute followed
              by an unweighted k = 1 combine the exact identity (even for -0.0).
   Expert FFN NAM_BACKEND_CPU_REF: plain loops, fp64 accumulation, any dtype and stride.
              NAM_BACKEND_CPU: work items are (expert, tile of up to NAM__MOE_MT rows),
              taken from a shared cursor by `threads` workers (nam__parallel_for), each
              with its own workspace slice. Two inner paths:
              - AVX2+FMA (chosen at run time): the weights are streamed in place, never
                packed. The tile's rows are transposed into 16-row panels xT[p][16]; a
                6 x 16 register tile (12 ymm accumulators) computes 6 weight rows against
                16 rows per step of p: out^T = W * x^T. With ~32 rows per expert (T*k/E)
                each weight element is used only ~32 times, so packing the weights (what
                a GEMM does) would cost as much as the arithmetic; reading them in place
                keeps the layer compute-bound. The first product writes h^T panels
                directly (activation fused), which are the second product's input panels.
                Each kernel call prefetches (to L2) its share of the next weight block, so
                DRAM is read at a steady rate instead of stalling the block's first use.
                A tile's last 1..NAM__MOE_DOT_MAX rows run a dot-product kernel
                (vectorised along the reduction, two rows at a time) instead of a 16-row
                panel that would mostly compute zeros.
              - otherwise nam__sgemm (>>gemm) with transB = 1 on row tiles.
              f32 weights with unit inner stride are used in place. Other weights (bf16,
              f16, strided) are never converted all at once (128 experts x 3 x 768 x 2048
              in f32 would be 2.4 GB): the streaming path converts one 6-row block just
              before its use (it stays in L1, so bf16 weights cost about what f32 ones
              do, at half the DRAM bytes); the sgemm path converts one expert at a time
              into the worker's workspace (3 F H floats). */
#define NAM__MOE_MT 64         /* rows per FFN work item (a multiple of 16) */
#define NAM__MOE_DOT_MAX 6     /* tile tails of up to this many rows run the dot-product kernel */
#define NAM__MOE_MAX_EXPERTS (1 << 20)

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define NAM__MOE_X86 1   /* AVX2+FMA kernels (target attributes, chosen at run time); nam.h includes immintrin.h */
#endif

/* ---- small helpers ------------------------------------------------------------------- */
NAM__UNUSED static int nam__moe_finite(double v) { return v == v && v - v == 0.0; }

/* A float tensor whose last axis has unit stride and dtype f32: usable in place. */
NAM__UNUSED static int nam__moe_rows_f32(const nam_tensor *t) {
    int64_t st[NAM_MAX_DIMS];
    nam__tensor_strides(t, st);
    return t->dtype == NAM_F32 && (st[t->ndim - 1] == 1 || t->shape[t->ndim - 1] == 1);
}

/* The resolved view of a dispatch plan, as permute, combine and the FFN read it. */
typedef struct nam__moe_plan {
    int64_t T, k, E, nrows;
    const int32_t *idx, *off, *rows;   /* topk_idx (T, k), offsets (E + 1), rows (T * k) */
    int64_t si[NAM_MAX_DIMS], so[NAM_MAX_DIMS], sr[NAM_MAX_DIMS];
} nam__moe_plan;

NAM__UNUSED static int64_t nam__moe_off(const nam__moe_plan *p, int64_t e) { return p->off[e * p->so[0]]; }
NAM__UNUSED static int64_t nam__moe_row(const nam__moe_plan *p, int64_t j) { return p->rows[j * p->sr[0]]; }
NAM__UNUSED static int64_t nam__moe_idx(const nam__moe_plan *p, int64_t t, int64_t s) { return p->idx[t * p->si[0] + s * p->si[1]]; }

/* Check a plan for a consumer. need: 0 offsets only (FFN), 1 also topk_idx and rows
   (permute, combine), with every kept row checked against topk_idx and its segment order. */
NAM__UNUSED static nam_status nam__moe_plan_check(const nam_moe_dispatch_desc *d, const char *fn, int need, nam__moe_plan *p, nam_error *err) {
    nam_status s;
    int64_t e, j, prev, v;
    memset(p, 0, sizeof *p);
    if (!d) return nam__err(err, NAM_ERR_INVALID_ARG, "%s: plan is NULL (fill it with nam_moe_dispatch)", fn);
    if (d->num_experts < 1 || d->num_experts > NAM__MOE_MAX_EXPERTS)
        return nam__err(err, NAM_ERR_RANGE, "%s: plan.num_experts = %d is out of range (1..%d)", fn, d->num_experts, NAM__MOE_MAX_EXPERTS);
    p->E = d->num_experts;
    if ((s = nam__tensor_i32(&d->offsets, "plan.offsets", 1, "E+1", err))) return s;
    if ((s = nam__tensor_dim(&d->offsets, "plan.offsets", 0, "E+1", p->E + 1, "plan.num_experts + 1", err))) return s;
    p->off = NAM__CAST(const int32_t *, d->offsets.data);
    nam__tensor_strides(&d->offsets, p->so);
    if (need) {
        if ((s = nam__tensor_i32(&d->topk_idx, "plan.topk_idx", 2, "T,k", err))) return s;
        p->T = d->topk_idx.shape[0];
        p->k = d->topk_idx.shape[1];
        if (p->T > INT32_MAX / p->k)
            return nam__err(err, NAM_ERR_LIMIT, "%s: plan.topk_idx has T * k > %d entries", fn, INT32_MAX);
        if ((s = nam__tensor_i32(&d->rows, "plan.rows", 1, "T*k", err))) return s;
        if ((s = nam__tensor_dim(&d->rows, "plan.rows", 0, "T*k", p->T * p->k, "plan.topk_idx T * k", err))) return s;
        p->idx = NAM__CAST(const int32_t *, d->topk_idx.data);
        p->rows = NAM__CAST(const int32_t *, d->rows.data);
        nam__tensor_strides(&d->topk_idx, p->si);
        nam__tensor_strides(&d->rows, p->sr);
    }
    if (nam__moe_off(p, 0) != 0) return nam__err(err, NAM_ERR_INVALID_ARG, "%s: plan.offsets[0] = %lld, expected 0", fn, NAM__CAST(long long, nam__moe_off(p, 0)));
    for (e = 0; e < p->E; e++)
        if (nam__moe_off(p, e + 1) < nam__moe_off(p, e))
            return nam__err(err, NAM_ERR_INVALID_ARG, "%s: plan.offsets decreases at expert %lld (%lld after %lld)", fn, NAM__CAST(long long, e),
                            NAM__CAST(long long, nam__moe_off(p, e + 1)), NAM__CAST(long long, nam__moe_off(p, e)));
    p->nrows = nam__moe_off(p, p->E);
    if (d->num_rows != p->nrows)
        return nam__err(err, NAM_ERR_INVALID_ARG, "%s: plan.num_rows = %d, but plan.offsets[E] = %lld", fn, d->num_rows, NAM__CAST(long long, p->nrows));
    if (!need) return NAM_OK;
    if (p->nrows > p->T * p->k)
        return nam__err(err, NAM_ERR_INVALID_ARG, "%s: plan.offsets[E] = %lld exceeds T * k = %lld", fn, NAM__CAST(long long, p->nrows), NAM__CAST(long long, p->T * p->k));
    for (e = 0; e < p->E; e++) {
        prev = -1;
        for (j = nam__moe_off(p, e); j < nam__moe_off(p, e + 1); j++) {
            v = nam__moe_row(p, j);
            if (v <= prev || v >= p->T * p->k || nam__moe_idx(p, v / p->k, v % p->k) != e)
                return nam__err(err, NAM_ERR_INVALID_ARG, "%s: plan.rows[%lld] = %lld does not belong to expert %lld's ascending segment "
                                "(was the plan made by nam_moe_dispatch from this topk_idx?)", fn, NAM__CAST(long long, j), NAM__CAST(long long, v), NAM__CAST(long long, e));
            prev = v;
        }
    }
    return NAM_OK;
}

/* ---- router -------------------------------------------------------------------------- */
NAM__DEF nam_status nam_moe_route(nam_moe_route_desc *d, nam_error *err) {
    int64_t T, E, t, e, sl[NAM_MAX_DIMS], sb[NAM_MAX_DIMS], si[NAM_MAX_DIMS], sw[NAM_MAX_DIMS];
    int64_t k, n, pos, j;
    int32_t *idx;
    float *w, scale;
    nam_backend ran;
    nam_status s;
    if (!d) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_moe_route: desc is NULL");
    if ((s = nam__tensor_basic(&d->logits, "logits", 2, "T,E", 0, err))) return s;
    if ((s = nam_query_backend(d->backend, d->logits.device, &ran, err))) return s;
    T = d->logits.shape[0];
    E = d->logits.shape[1];
    k = d->topk;
    if (d->topk < 1 || k > E)
        return nam__err(err, NAM_ERR_RANGE, "topk = %d is out of range: it must be 1..E, and E = logits.shape[1] = %lld", d->topk, NAM__CAST(long long, E));
    if (d->score != NAM_MOE_SOFTMAX && d->score != NAM_MOE_SIGMOID)
        return nam__err(err, NAM_ERR_INVALID_ARG, "score = %d is not a nam_moe_score (softmax 0, sigmoid 1)", NAM__CAST(int, d->score));
    if (d->pre_softmax && d->score != NAM_MOE_SOFTMAX)
        return nam__err(err, NAM_ERR_INVALID_ARG, "pre_softmax = %d applies to the softmax score only (score is sigmoid)", d->pre_softmax);
    if (d->expert_bias.data) {
        if (d->score != NAM_MOE_SIGMOID)
            return nam__err(err, NAM_ERR_INVALID_ARG, "expert_bias is given, but it is used with the sigmoid score only (aux-loss-free routing)");
        if ((s = nam__tensor_basic(&d->expert_bias, "expert_bias", 1, "E", 1, err))) return s;
        if ((s = nam__tensor_dim(&d->expert_bias, "expert_bias", 0, "E", E, "logits.shape[1]", err))) return s;
        nam__tensor_strides(&d->expert_bias, sb);
        for (e = 0; e < E; e++)
            if (!nam__moe_finite(nam__load(d->expert_bias.data, d->expert_bias.dtype, e * sb[0])))
                return nam__err(err, NAM_ERR_RANGE, "expert_bias[%lld] = %g is not finite", NAM__CAST(long long, e),
                                NAM__CAST(double, nam__load(d->expert_bias.data, d->expert_bias.dtype, e * sb[0])));
    }
    if ((s = nam__tensor_i32(&d->topk_idx, "topk_idx", 2, "T,k", err))) return s;
    if ((s = nam__tensor_dim(&d->topk_idx, "topk_idx", 0, "T", T, "logits.shape[0]", err))) return s;
    if ((s = nam__tensor_dim(&d->topk_idx, "topk_idx", 1, "k", k, "topk", err))) return s;
    if ((s = nam__tensor_basic(&d->topk_weight, "topk_weight", 2, "T,k", 0, err))) return s;
    if (d->topk_weight.dtype != NAM_F32) return nam__err(err, NAM_ERR_INVALID_ARG, "topk_weight: dtype %s, expected f32", nam_dtype_name(d->topk_weight.dtype));
    if ((s = nam__tensor_dim(&d->topk_weight, "topk_weight", 0, "T", T, "logits.shape[0]", err))) return s;
    if ((s = nam__tensor_dim(&d->topk_weight, "topk_weight", 1, "k", k, "topk", err))) return s;
    if (!nam__moe_finite(d->scaling_factor)) return nam__err(err, NAM_ERR_RANGE, "scaling_factor = %g is not finite", NAM__CAST(double, d->scaling_factor));
    scale = d->scaling_factor == 0.0f ? 1.0f : d->scaling_factor;
    nam__tensor_strides(&d->logits, sl);
    nam__tensor_strides(&d->topk_idx, si);
    nam__tensor_strides(&d->topk_weight, sw);
    idx = NAM__CAST(int32_t *, d->topk_idx.data);
    w = NAM__CAST(float *, d->topk_weight.data);
    d->ran = ran;

    for (t = 0; t < T; t++) {
        int32_t *ir = idx + t * si[0];
        float *wr = w + t * sw[0];
        double mx = 0.0, sum = 0.0;
        const void *L = d->logits.data;
        nam_dtype ldt = d->logits.dtype;
        for (e = 0; e < E; e++) {
            double v = nam__load(L, ldt, t * sl[0] + e * sl[1]);
            if (!nam__moe_finite(v))
                return nam__err(err, NAM_ERR_RANGE, "logits[%lld, %lld] = %g is not finite", NAM__CAST(long long, t), NAM__CAST(long long, e), v);
            if (e == 0 || v > mx) mx = v;
        }
        if (d->score == NAM_MOE_SOFTMAX && d->pre_softmax)
            for (e = 0; e < E; e++) sum += exp(NAM__CAST(double, nam__load(L, ldt, t * sl[0] + e * sl[1])) - mx);
        /* selection: a sorted top-k list in the output row (values in wr, ids in ir) */
        n = 0;
        for (e = 0; e < E; e++) {
            double l = nam__load(L, ldt, t * sl[0] + e * sl[1]);
            float v;
            if (d->score == NAM_MOE_SIGMOID) {
                v = NAM__CAST(float, 1.0 / (1.0 + exp(-l)));
                if (d->expert_bias.data) v += nam__load(d->expert_bias.data, d->expert_bias.dtype, e * sb[0]);
            } else if (d->pre_softmax) v = NAM__CAST(float, exp(l - mx) / sum);
            else v = NAM__CAST(float, l);
            if (n == k && !(v > wr[(k - 1) * sw[1]])) continue;   /* ties: the lower index stays */
            pos = n < k ? n++ : k - 1;
            while (pos > 0 && v > wr[(pos - 1) * sw[1]]) {
                wr[pos * sw[1]] = wr[(pos - 1) * sw[1]];
                ir[pos * si[1]] = ir[(pos - 1) * si[1]];
                pos--;
            }
            wr[pos * sw[1]] = v;
            ir[pos * si[1]] = NAM__CAST(int32_t, e);
        }
        /* weights */
        if (d->score == NAM_MOE_SOFTMAX && !d->pre_softmax) {
            double top = wr[0], z = 0.0;
            for (j = 0; j < k; j++) z += exp(NAM__CAST(double, wr[j * sw[1]]) - top);
            for (j = 0; j < k; j++) wr[j * sw[1]] = NAM__CAST(float, exp(NAM__CAST(double, wr[j * sw[1]]) - top) / z);
        } else if (d->score == NAM_MOE_SIGMOID) {
            double z = 0.0;
            for (j = 0; j < k; j++) {
                double l = nam__load(L, ldt, t * sl[0] + NAM__CAST(int64_t, ir[j * si[1]]) * sl[1]);
                wr[j * sw[1]] = NAM__CAST(float, 1.0 / (1.0 + exp(-l)));   /* un-biased score */
                z += wr[j * sw[1]];
            }
            if (k > 1)
                for (j = 0; j < k; j++) wr[j * sw[1]] = NAM__CAST(float, wr[j * sw[1]] / (z + 1e-20));
        }
        if (scale != 1.0f)
            for (j = 0; j < k; j++) wr[j * sw[1]] *= scale;
    }
    return NAM_OK;
}

/* ---- dispatch ------------------------------------------------------------------------ */
NAM__DEF nam_status nam_moe_dispatch(nam_moe_dispatch_desc *d, nam_error *err) {
    int64_t T, k, E, t, s2, e, cap, kept, si[NAM_MAX_DIMS], sc[NAM_MAX_DIMS], so[NAM_MAX_DIMS], sr[NAM_MAX_DIMS];
    int32_t *cnt, *off, *rows;
    const int32_t *idx;
    int64_t dropped = 0;
    nam_status s;
    if (!d) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_moe_dispatch: desc is NULL");
    d->num_rows = 0;
    d->num_dropped = 0;
    if ((s = nam__tensor_i32(&d->topk_idx, "topk_idx", 2, "T,k", err))) return s;
    T = d->topk_idx.shape[0];
    k = d->topk_idx.shape[1];
    if (T > INT32_MAX / k) return nam__err(err, NAM_ERR_LIMIT, "topk_idx has T * k = %lld entries; rows are i32, so at most %d", NAM__CAST(long long, T * k), INT32_MAX);
    if (d->num_experts < 1 || d->num_experts > NAM__MOE_MAX_EXPERTS)
        return nam__err(err, NAM_ERR_RANGE, "num_experts = %d is out of range (1..%d)", d->num_experts, NAM__MOE_MAX_EXPERTS);
    E = d->num_experts;
    if (!nam__moe_finite(d->capacity_factor) || d->capacity_factor < 0.0f)
        return nam__err(err, NAM_ERR_RANGE, "capacity_factor = %g must be finite and >= 0 (0: no capacity limit)", NAM__CAST(double, d->capacity_factor));
    if ((s = nam__tensor_i32(&d->counts, "counts", 1, "E", err))) return s;
    if ((s = nam__tensor_dim(&d->counts, "counts", 0, "E", E, "num_experts", err))) return s;
    if ((s = nam__tensor_i32(&d->offsets, "offsets", 1, "E+1", err))) return s;
    if ((s = nam__tensor_dim(&d->offsets, "offsets", 0, "E+1", E + 1, "num_experts + 1", err))) return s;
    if ((s = nam__tensor_i32(&d->rows, "rows", 1, "T*k", err))) return s;
    if ((s = nam__tensor_dim(&d->rows, "rows", 0, "T*k", T * k, "topk_idx T * k", err))) return s;
    nam__tensor_strides(&d->topk_idx, si);
    nam__tensor_strides(&d->counts, sc);
    nam__tensor_strides(&d->offsets, so);
    nam__tensor_strides(&d->rows, sr);
    idx = NAM__CAST(const int32_t *, d->topk_idx.data);
    cnt = NAM__CAST(int32_t *, d->counts.data);
    off = NAM__CAST(int32_t *, d->offsets.data);
    rows = NAM__CAST(int32_t *, d->rows.data);
    cap = T * k;
    if (d->capacity_factor > 0.0f) {
        double c = ceil(NAM__CAST(double, T * k) / NAM__CAST(double, E) * NAM__CAST(double, d->capacity_factor));
        if (c < NAM__CAST(double, cap)) cap = NAM__CAST(int64_t, c);
    }
    /* histogram (and expert ids checked) */
    for (e = 0; e < E; e++) cnt[e * sc[0]] = 0;
    for (t = 0; t < T; t++)
        for (s2 = 0; s2 < k; s2++) {
            int32_t v = idx[t * si[0] + s2 * si[1]];
            if (v < 0 || v >= E)
                return nam__err(err, NAM_ERR_RANGE, "topk_idx[%lld, %lld] = %d is not an expert id (0..%lld): token %lld, slot %lld",
                                NAM__CAST(long long, t), NAM__CAST(long long, s2), v, NAM__CAST(long long, E - 1), NAM__CAST(long long, t), NAM__CAST(long long, s2));
            cnt[v * sc[0]]++;
        }
    /* capacity, exclusive prefix sum */
    off[0] = 0;
    for (e = 0; e < E; e++) {
        kept = cnt[e * sc[0]] < cap ? cnt[e * sc[0]] : cap;
        dropped += cnt[e * sc[0]] - kept;
        off[(e + 1) * so[0]] = NAM__CAST(int32_t, off[e * so[0]] + kept);
        cnt[e * sc[0]] = 0;                       /* now the placement cursor */
    }
    /* placement in (token, slot) order: stable within each expert */
    for (t = 0; t < T; t++)
        for (s2 = 0; s2 < k; s2++) {
            int32_t v = idx[t * si[0] + s2 * si[1]];
            int64_t c = cnt[v * sc[0]];
            if (off[v * so[0]] + c < off[(v + 1) * so[0]]) {
                rows[(off[v * so[0]] + c) * sr[0]] = NAM__CAST(int32_t, t * k + s2);
                cnt[v * sc[0]] = NAM__CAST(int32_t, c + 1);
            }
        }
    for (t = off[E * so[0]]; t < T * k; t++) rows[t * sr[0]] = -1;
    d->num_rows = off[E * so[0]];
    d->num_dropped = NAM__CAST(int, dropped);
    return NAM_OK;
}

/* ---- permute / combine --------------------------------------------------------------- */
NAM__DEF nam_status nam_moe_permute(const nam_tensor *tokens, const nam_moe_dispatch_desc *plan, nam_tensor *permuted, nam_error *err) {
    nam__moe_plan p;
    nam_status s;
    int64_t H, j, h, st[NAM_MAX_DIMS], sp[NAM_MAX_DIMS];
    if (!tokens || !permuted) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_moe_permute: %s is NULL", tokens ? "permuted" : "tokens");
    if ((s = nam__moe_plan_check(plan, "nam_moe_permute", 1, &p, err))) return s;
    if ((s = nam__tensor_basic(tokens, "tokens", 2, "T,H", 0, err))) return s;
    if ((s = nam__tensor_dim(tokens, "tokens", 0, "T", p.T, "plan.topk_idx.shape[0]", err))) return s;
    H = tokens->shape[1];
    if ((s = nam__tensor_basic(permuted, "permuted", 2, "rows,H", 0, err))) return s;
    if ((s = nam__tensor_dim(permuted, "permuted", 1, "H", H, "tokens.shape[1]", err))) return s;
    if (permuted->shape[0] < p.nrows)
        return nam__err(err, NAM_ERR_INVALID_ARG, "permuted.shape[0] (rows) = %lld, but the plan keeps %lld rows", NAM__CAST(long long, permuted->shape[0]), NAM__CAST(long long, p.nrows));
    nam__tensor_strides(tokens, st);
    nam__tensor_strides(permuted, sp);
    for (j = 0; j < p.nrows; j++) {
        int64_t t = nam__moe_row(&p, j) / p.k;
        if (tokens->dtype == permuted->dtype && st[1] == 1 && sp[1] == 1) {
            size_t es = tokens->dtype == NAM_F32 ? 4 : 2;
            memcpy(NAM__CAST(char *, permuted->data) + NAM__CAST(size_t, j * sp[0]) * es,
                   NAM__CAST(const char *, tokens->data) + NAM__CAST(size_t, t * st[0]) * es, NAM__CAST(size_t, H) * es);
        } else
            for (h = 0; h < H; h++) nam__store(permuted->data, permuted->dtype, j * sp[0] + h * sp[1], nam__load(tokens->data, tokens->dtype, t * st[0] + h * st[1]));
    }
    return NAM_OK;
}

/* The permuted row of (t, slot) in expert e's (sorted) segment, or -1 when it was dropped. */
NAM__UNUSED static int64_t nam__moe_find(const nam__moe_plan *p, int64_t e, int64_t key) {
    int64_t lo = nam__moe_off(p, e), hi = nam__moe_off(p, e + 1);
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2, v = nam__moe_row(p, mid);
        if (v == key) return mid;
        if (v < key) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

#define NAM__MOE_CHUNK 256
NAM__DEF nam_status nam_moe_combine(const nam_tensor *expert_out, const nam_moe_dispatch_desc *plan, const nam_tensor *topk_weight,
                                    nam_tensor *out, nam_error *err) {
    nam__moe_plan p;
    nam_status s;
    int64_t H, t, slot, h, h0, se[NAM_MAX_DIMS], sw[NAM_MAX_DIMS], so[NAM_MAX_DIMS];
    const nam_tensor *W = topk_weight && topk_weight->data ? topk_weight : NULL;
    int fast;
    float acc[NAM__MOE_CHUNK];
    if (!expert_out || !out) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_moe_combine: %s is NULL", expert_out ? "out" : "expert_out");
    if ((s = nam__moe_plan_check(plan, "nam_moe_combine", 1, &p, err))) return s;
    if ((s = nam__tensor_basic(expert_out, "expert_out", 2, "rows,H", 0, err))) return s;
    H = expert_out->shape[1];
    if (expert_out->shape[0] < p.nrows)
        return nam__err(err, NAM_ERR_INVALID_ARG, "expert_out.shape[0] (rows) = %lld, but the plan keeps %lld rows", NAM__CAST(long long, expert_out->shape[0]), NAM__CAST(long long, p.nrows));
    if (W) {
        if ((s = nam__tensor_basic(W, "topk_weight", 2, "T,k", 0, err))) return s;
        if ((s = nam__tensor_dim(W, "topk_weight", 0, "T", p.T, "plan.topk_idx.shape[0]", err))) return s;
        if ((s = nam__tensor_dim(W, "topk_weight", 1, "k", p.k, "plan.topk_idx.shape[1]", err))) return s;
        nam__tensor_strides(W, sw);
    }
    if ((s = nam__tensor_basic(out, "out", 2, "T,H", 0, err))) return s;
    if ((s = nam__tensor_dim(out, "out", 0, "T", p.T, "plan.topk_idx.shape[0]", err))) return s;
    if ((s = nam__tensor_dim(out, "out", 1, "H", H, "expert_out.shape[1]", err))) return s;
    nam__tensor_strides(expert_out, se);
    nam__tensor_strides(out, so);
    fast = nam__moe_rows_f32(expert_out) && nam__moe_rows_f32(out);
    for (t = 0; t < p.T; t++) {
        int64_t js[64], *jl = js, nk = 0;
        float ws[64];
        /* the kept slots of token t, in slot order (k > 64: looked up per column chunk) */
        if (p.k <= 64) {
            for (slot = 0; slot < p.k; slot++) {
                int64_t e = nam__moe_idx(&p, t, slot), j;
                if (e < 0 || e >= p.E) return nam__err(err, NAM_ERR_RANGE, "plan.topk_idx[%lld, %lld] = %lld is not an expert id (0..%lld)",
                                                        NAM__CAST(long long, t), NAM__CAST(long long, slot), NAM__CAST(long long, e), NAM__CAST(long long, p.E - 1));
                j = nam__moe_find(&p, e, t * p.k + slot);
                if (j < 0) continue;
                jl[nk] = j;
                ws[nk++] = W ? nam__load(W->data, W->dtype, t * sw[0] + slot * sw[1]) : 1.0f;
            }
        }
        if (fast && p.k <= 64) {
            float *o = NAM__CAST(float *, out->data) + t * so[0];
            int64_t q;
            if (nk == 0) for (h = 0; h < H; h++) o[h] = 0.0f;
            for (q = 0; q < nk; q++) {
                const float *x = NAM__CAST(const float *, expert_out->data) + jl[q] * se[0];
                float wq = ws[q];
                if (q == 0 && !W) for (h = 0; h < H; h++) o[h] = x[h];
                else if (q == 0) for (h = 0; h < H; h++) o[h] = wq * x[h];
                else if (!W) for (h = 0; h < H; h++) o[h] += x[h];
                else for (h = 0; h < H; h++) o[h] += wq * x[h];
            }
            continue;
        }
        for (h0 = 0; h0 < H; h0 += NAM__MOE_CHUNK) {
            int64_t hn = H - h0 < NAM__MOE_CHUNK ? H - h0 : NAM__MOE_CHUNK, got = 0;
            for (slot = 0; slot < p.k; slot++) {
                int64_t j;
                float wq;
                if (p.k <= 64) {
                    if (slot >= nk) break;
                    j = jl[slot];
                    wq = ws[slot];
                } else {
                    int64_t e = nam__moe_idx(&p, t, slot);
                    if (e < 0 || e >= p.E) return nam__err(err, NAM_ERR_RANGE, "plan.topk_idx[%lld, %lld] = %lld is not an expert id (0..%lld)",
                                                            NAM__CAST(long long, t), NAM__CAST(long long, slot), NAM__CAST(long long, e), NAM__CAST(long long, p.E - 1));
                    j = nam__moe_find(&p, e, t * p.k + slot);
                    if (j < 0) continue;
                    wq = W ? nam__load(W->data, W->dtype, t * sw[0] + slot * sw[1]) : 1.0f;
                }
                for (h = 0; h < hn; h++) {
                    float x = nam__load(expert_out->data, expert_out->dtype, j * se[0] + (h0 + h) * se[1]);
                    if (W) x *= wq;
                    if (got) acc[h] += x;
                    else acc[h] = x;
                }
                got = 1;
            }
            for (h = 0; h < hn; h++) nam__store(out->data, out->dtype, t * so[0] + (h0 + h) * so[1], got ? acc[h] : 0.0f);
        }
    }
    return NAM_OK;
}

/* ---- expert FFN ---------------------------------------------------------------------- */
typedef struct nam__moe_ffn_info {
    int64_t E, F, H, R;              /* experts, ffn, hidden, rows of in/out */
    int swiglu, threads;
    nam_backend ran;
    int conv[3];                     /* w1, w3, w2 converted per expert into workspace */
    int conv_out;                    /* out written through an f32 tile buffer */
    size_t thread_bytes, bytes;      /* per worker, total */
} nam__moe_ffn_info;

NAM__UNUSED static size_t nam__moe_fl(int64_t n) { return nam__ws_need(sizeof(float) * NAM__CAST(size_t, n)); }

NAM__UNUSED static nam_status nam__moe_ffn_check(const nam_moe_ffn_desc *d, nam__moe_ffn_info *fi, nam_error *err) {
    nam_status s;
    int64_t mt;
    memset(fi, 0, sizeof *fi);
    if (!d) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_moe_ffn: desc is NULL");
    if (d->act != NAM_MOE_SWIGLU && d->act != NAM_MOE_SQUARED_RELU)
        return nam__err(err, NAM_ERR_INVALID_ARG, "act = %d is not a nam_moe_act (swiglu 0, squared relu 1)", NAM__CAST(int, d->act));
    fi->swiglu = d->act == NAM_MOE_SWIGLU;
    if ((s = nam__tensor_basic(&d->in, "in", 2, "rows,H", 0, err))) return s;
    if ((s = nam_query_backend(d->backend, d->in.device, &fi->ran, err))) return s;
    fi->R = d->in.shape[0];
    fi->H = d->in.shape[1];
    if ((s = nam__tensor_basic(&d->w1, "w1", 3, "E,F,H", 0, err))) return s;
    fi->E = d->w1.shape[0];
    fi->F = d->w1.shape[1];
    if ((s = nam__tensor_dim(&d->w1, "w1", 2, "H", fi->H, "in.shape[1]", err))) return s;
    if (fi->swiglu) {
        if ((s = nam__tensor_basic(&d->w3, "w3", 3, "E,F,H", 0, err))) return s;
        if ((s = nam__tensor_dim(&d->w3, "w3", 0, "E", fi->E, "w1.shape[0]", err))) return s;
        if ((s = nam__tensor_dim(&d->w3, "w3", 1, "F", fi->F, "w1.shape[1]", err))) return s;
        if ((s = nam__tensor_dim(&d->w3, "w3", 2, "H", fi->H, "in.shape[1]", err))) return s;
    }
    if ((s = nam__tensor_basic(&d->w2, "w2", 3, "E,H,F", 0, err))) return s;
    if ((s = nam__tensor_dim(&d->w2, "w2", 0, "E", fi->E, "w1.shape[0]", err))) return s;
    if ((s = nam__tensor_dim(&d->w2, "w2", 1, "H", fi->H, "in.shape[1]", err))) return s;
    if ((s = nam__tensor_dim(&d->w2, "w2", 2, "F", fi->F, "w1.shape[1]", err))) return s;
    if ((s = nam__tensor_basic(&d->out, "out", 2, "rows,H", 0, err))) return s;
    if ((s = nam__tensor_dim(&d->out, "out", 0, "rows", fi->R, "in.shape[0]", err))) return s;
    if ((s = nam__tensor_dim(&d->out, "out", 1, "H", fi->H, "in.shape[1]", err))) return s;
    if (fi->E > NAM__MOE_MAX_EXPERTS || fi->F > NAM_MAX_DIM || fi->H > NAM_MAX_DIM || fi->R > INT32_MAX)
        return nam__err(err, NAM_ERR_LIMIT, "nam_moe_ffn: E = %lld, F = %lld, H = %lld or rows = %lld exceeds nam's limits", NAM__CAST(long long, fi->E),
                        NAM__CAST(long long, fi->F), NAM__CAST(long long, fi->H), NAM__CAST(long long, fi->R));
    if (fi->ran == NAM_BACKEND_CPU_REF) {
        fi->threads = 1;
        fi->thread_bytes = nam__ws_need(sizeof(double) * NAM__CAST(size_t, fi->F));
        fi->bytes = fi->thread_bytes;
        return NAM_OK;
    }
    fi->threads = nam__resolve_threads(d->threads);
    fi->conv[0] = !nam__moe_rows_f32(&d->w1);
    fi->conv[1] = fi->swiglu && !nam__moe_rows_f32(&d->w3);
    fi->conv[2] = !nam__moe_rows_f32(&d->w2);
    fi->conv_out = !nam__moe_rows_f32(&d->out);
    mt = NAM__MOE_MT;
    /* per worker: x tile (transposed panels or sgemm rows), hidden (and the W3 product),
       an f32 out tile when out needs converting, converted weights, sgemm packing */
    fi->thread_bytes = nam__moe_fl(mt * fi->H) + nam__moe_fl(mt * fi->F) * (fi->swiglu ? 2u : 1u);
    if (fi->conv_out) fi->thread_bytes += nam__moe_fl(mt * fi->H);
    fi->thread_bytes += nam__moe_fl(16 * fi->H) + nam__moe_fl(16 * fi->F);   /* the tail's x and h rows */
    fi->thread_bytes += nam__moe_fl(18 * (fi->F > fi->H ? fi->F : fi->H));   /* 3 converted 6-row weight blocks */
    if (fi->conv[0]) fi->thread_bytes += nam__moe_fl(fi->F * fi->H);
    if (fi->conv[1]) fi->thread_bytes += nam__moe_fl(fi->F * fi->H);
    if (fi->conv[2]) fi->thread_bytes += nam__moe_fl(fi->F * fi->H);
    {
        size_t p1 = nam__sgemm_pack_floats(NAM__MOE_MT, NAM__CAST(int, fi->F), NAM__CAST(int, fi->H));
        size_t p2 = nam__sgemm_pack_floats(NAM__MOE_MT, NAM__CAST(int, fi->H), NAM__CAST(int, fi->F));
        fi->thread_bytes += nam__ws_need(sizeof(float) * (p1 > p2 ? p1 : p2));
    }
    fi->bytes = fi->thread_bytes * NAM__CAST(size_t, fi->threads);
    return NAM_OK;
}

NAM__DEF nam_status nam_moe_ffn_workspace_size(const nam_moe_ffn_desc *d, size_t *bytes, nam_error *err) {
    nam__moe_ffn_info fi;
    nam_status s;
    if (!bytes) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_moe_ffn_workspace_size: bytes is NULL");
    *bytes = 0;
    if ((s = nam__moe_ffn_check(d, &fi, err))) return s;
    *bytes = fi.bytes;
    return NAM_OK;
}

/* Reference: every kept row, fp64 sums, any dtype and stride. */
NAM__UNUSED static void nam__moe_ffn_ref(const nam_moe_ffn_desc *d, const nam__moe_ffn_info *fi, const nam__moe_plan *p, double *hid) {
    int64_t sx[NAM_MAX_DIMS], s1[NAM_MAX_DIMS], s3[NAM_MAX_DIMS], s2[NAM_MAX_DIMS], so[NAM_MAX_DIMS], e, j, f, h, q;
    nam__tensor_strides(&d->in, sx);
    nam__tensor_strides(&d->w1, s1);
    nam__tensor_strides(&d->w3, s3);
    nam__tensor_strides(&d->w2, s2);
    nam__tensor_strides(&d->out, so);
    for (e = 0; e < fi->E; e++)
        for (j = nam__moe_off(p, e); j < nam__moe_off(p, e + 1); j++) {
            for (f = 0; f < fi->F; f++) {
                double g = 0.0, u = 0.0;
                for (q = 0; q < fi->H; q++) {
                    double x = nam__load(d->in.data, d->in.dtype, j * sx[0] + q * sx[1]);
                    g += x * nam__load(d->w1.data, d->w1.dtype, e * s1[0] + f * s1[1] + q * s1[2]);
                    if (fi->swiglu) u += x * nam__load(d->w3.data, d->w3.dtype, e * s3[0] + f * s3[1] + q * s3[2]);
                }
                if (fi->swiglu) hid[f] = g / (1.0 + exp(-g)) * u;
                else hid[f] = g > 0.0 ? g * g : 0.0;
            }
            for (h = 0; h < fi->H; h++) {
                double o = 0.0;
                for (f = 0; f < fi->F; f++) o += hid[f] * nam__load(d->w2.data, d->w2.dtype, e * s2[0] + h * s2[1] + f * s2[2]);
                nam__store(d->out.data, d->out.dtype, j * so[0] + h * so[1], NAM__CAST(float, o));
            }
        }
}

/* Expert e of weight t (rows x cols after the expert axis) as f32 rows: in place, or
   converted into buf. Returns the row pointer base; *ld gets the row stride. */
NAM__UNUSED static const float *nam__moe_weight(const nam_tensor *t, int conv, int64_t e, float *buf, int64_t *ld) {
    int64_t st[NAM_MAX_DIMS], r, c, rows = t->shape[1], cols = t->shape[2];
    nam__tensor_strides(t, st);
    if (!conv) {
        *ld = st[1];
        return NAM__CAST(const float *, t->data) + e * st[0];
    }
    for (r = 0; r < rows; r++) {
        float *dst = buf + r * cols;
        int64_t base = e * st[0] + r * st[1];
        if (t->dtype == NAM_BF16 && st[2] == 1) {
            const uint16_t *src = NAM__CAST(const uint16_t *, t->data) + base;
            for (c = 0; c < cols; c++) {
                uint32_t u = NAM__CAST(uint32_t, src[c]) << 16;
                memcpy(dst + c, &u, 4);
            }
        } else
            for (c = 0; c < cols; c++) dst[c] = nam__load(t->data, t->dtype, base + c * st[2]);
    }
    *ld = cols;
    return buf;
}

/* One expert's slice of a weight tensor, (rows, cols) after the expert axis, any dtype and
   strides: the streaming kernels read it one block of rows at a time. */
typedef struct nam__moe_wsrc {
    const char *data;                 /* the expert's first element */
    nam_dtype dt;
    int64_t ld, st;                   /* row and column strides, in elements */
    int64_t es;                       /* element size in bytes */
    int direct;                       /* f32 with unit column stride: blocks are read in place */
} nam__moe_wsrc;

NAM__UNUSED static void nam__moe_wsrc_init(nam__moe_wsrc *w, const nam_tensor *t, int64_t e) {
    int64_t st[NAM_MAX_DIMS];
    nam__tensor_strides(t, st);
    w->dt = t->dtype;
    w->es = t->dtype == NAM_F32 ? 4 : 2;
    w->data = NAM__CAST(const char *, t->data) + e * st[0] * w->es;
    w->ld = st[1];
    w->st = st[2];
    w->direct = t->dtype == NAM_F32 && (st[2] == 1 || t->shape[2] == 1);
}

#ifdef NAM__MOE_X86
__attribute__((target("avx2")))
NAM__UNUSED static void nam__moe_bf16_row_avx2(const uint16_t *src, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i v = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(NAM__CAST(const __m128i *, NAM__CAST(const void *, src + i)))), 16);
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(v));
    }
    for (; i < n; i++) dst[i] = nam__bf16_to_f32(src[i]);
}
#endif

/* Rows [r0, r0 + rows) x cols [0, K) of w as f32 rows: in place, or converted into buf
   (rows x K). *ld gets the row stride. */
NAM__UNUSED static const float *nam__moe_wblock(const nam__moe_wsrc *w, int64_t r0, int rows, int64_t K, float *buf, int64_t *ld) {
    int64_t r, q;
    if (w->direct) {
        *ld = w->ld;
        return NAM__CAST(const float *, NAM__CAST(const void *, w->data)) + r0 * w->ld;
    }
    for (r = 0; r < rows; r++) {
        const char *row = w->data + (r0 + r) * w->ld * w->es;
        float *dst = buf + r * K;
#ifdef NAM__MOE_X86
        if (w->dt == NAM_BF16 && w->st == 1) { nam__moe_bf16_row_avx2(NAM__CAST(const uint16_t *, NAM__CAST(const void *, row)), dst, K); continue; }
#endif
        for (q = 0; q < K; q++) dst[q] = nam__load(row, w->dt, q * w->st);
    }
    *ld = K;
    return buf;
}

/* Prefetch source of rows [r0, r0 + 6) from column c0 (NULL past the last row or when the
   columns are not contiguous); *ld_bytes gets the row stride in bytes. */
NAM__UNUSED static const char *nam__moe_wnext(const nam__moe_wsrc *w, int64_t r0, int64_t nrows, int64_t c0, int64_t *ld_bytes) {
    *ld_bytes = w->ld * w->es;
    if (r0 >= nrows || w->st != 1) return NULL;
    return w->data + (r0 * w->ld + c0) * w->es;
}

typedef struct nam__moe_ffn_ctx {
    const nam_moe_ffn_desc *d;
    const nam__moe_ffn_info *fi;
    const nam__moe_plan *p;
    char *ws;
    int simd;                         /* 1: AVX2+FMA streaming kernels, 0: nam__sgemm */
    pthread_mutex_t lock;
    int64_t next_e, next_r;           /* the shared work cursor: expert, first row in it */
} nam__moe_ffn_ctx;

/* Next work item (expert, first row within the expert, rows), or 0 when none is left. */
NAM__UNUSED static int nam__moe_grab(nam__moe_ffn_ctx *c, int64_t *e, int64_t *r0, int64_t *mt) {
    int got = 0;
    pthread_mutex_lock(&c->lock);
    while (c->next_e < c->fi->E) {
        int64_t n = nam__moe_off(c->p, c->next_e + 1) - nam__moe_off(c->p, c->next_e);
        if (c->next_r < n) {
            *e = c->next_e;
            *r0 = c->next_r;
            *mt = n - c->next_r < NAM__MOE_MT ? n - c->next_r : NAM__MOE_MT;
            c->next_r += NAM__MOE_MT;
            got = 1;
            break;
        }
        c->next_e++;
        c->next_r = 0;
    }
    pthread_mutex_unlock(&c->lock);
    return got;
}

#ifdef NAM__MOE_X86
/* tile[i*16 + t] = sum_p w[i][p] * xT[p*16 + t] for i < 6 weight rows (rows < 6: the last
   valid row is repeated, its results ignored), t < 16; xT 64-byte aligned.
   While it runs it prefetches (into L2) pf_rows rows x pf_bytes bytes at pf (row stride
   pf_ld bytes): the part of the next weight block the caller assigns to this call. A weight block
   is used once per 16-row panel; spreading the fetch of the next block over all those uses
   keeps the DRAM traffic steady instead of stalling the first use (pf NULL: none). */
__attribute__((target("avx2,fma")))
NAM__UNUSED static void nam__moe_tile_avx2(int64_t K, const float *w, int64_t ldw, int rows, const float *xT, float *tile,
                                           const char *pf, int64_t pf_ld, int pf_rows, int64_t pf_bytes) {
    const float *w0 = w, *w1 = w + (rows > 1 ? 1 : 0) * ldw, *w2 = w + (rows > 2 ? 2 : rows - 1) * ldw;
    const float *w3 = w + (rows > 3 ? 3 : rows - 1) * ldw, *w4 = w + (rows > 4 ? 4 : rows - 1) * ldw, *w5 = w + (rows > 5 ? 5 : rows - 1) * ldw;
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00, x0, x1, a;
    int64_t p, p0, pe, lines = pf ? pf_bytes / 64 + 1 : 0, total = lines * pf_rows, per, done = 0, pr = 0, pl = 0, q;
    per = total ? (total + (K + 15) / 16 - 1) / ((K + 15) / 16) : 0;
    for (p0 = 0; p0 < K; p0 += 16) {
        pe = p0 + 16 < K ? p0 + 16 : K;
        for (q = 0; q < per && done < total; q++, done++) {
            _mm_prefetch(pf + pr * pf_ld + pl * 64, _MM_HINT_T1);
            if (++pr == pf_rows) { pr = 0; pl++; }
        }
        for (p = p0; p < pe; p++) {
            x0 = _mm256_load_ps(xT);
            x1 = _mm256_load_ps(xT + 8);
            xT += 16;
            a = _mm256_broadcast_ss(w0 + p); c00 = _mm256_fmadd_ps(a, x0, c00); c01 = _mm256_fmadd_ps(a, x1, c01);
            a = _mm256_broadcast_ss(w1 + p); c10 = _mm256_fmadd_ps(a, x0, c10); c11 = _mm256_fmadd_ps(a, x1, c11);
            a = _mm256_broadcast_ss(w2 + p); c20 = _mm256_fmadd_ps(a, x0, c20); c21 = _mm256_fmadd_ps(a, x1, c21);
            a = _mm256_broadcast_ss(w3 + p); c30 = _mm256_fmadd_ps(a, x0, c30); c31 = _mm256_fmadd_ps(a, x1, c31);
            a = _mm256_broadcast_ss(w4 + p); c40 = _mm256_fmadd_ps(a, x0, c40); c41 = _mm256_fmadd_ps(a, x1, c41);
            a = _mm256_broadcast_ss(w5 + p); c50 = _mm256_fmadd_ps(a, x0, c50); c51 = _mm256_fmadd_ps(a, x1, c51);
        }
    }
    _mm256_storeu_ps(tile + 0, c00); _mm256_storeu_ps(tile + 8, c01);
    _mm256_storeu_ps(tile + 16, c10); _mm256_storeu_ps(tile + 24, c11);
    _mm256_storeu_ps(tile + 32, c20); _mm256_storeu_ps(tile + 40, c21);
    _mm256_storeu_ps(tile + 48, c30); _mm256_storeu_ps(tile + 56, c31);
    _mm256_storeu_ps(tile + 64, c40); _mm256_storeu_ps(tile + 72, c41);
    _mm256_storeu_ps(tile + 80, c50); _mm256_storeu_ps(tile + 88, c51);
}

/* res[t*6 + i] = sum_p w[i][p] * x[t][p] for i < 6 weight rows (as above) and t < nt (1 or
   2) rows of x (row stride ldx), vectorised along p, so rows need no padding: the kernel for
   the last few rows of a tile (a 16-row panel holding them would mostly compute zeros).
   Prefetches its share of the next weight block like nam__moe_tile_avx2. */
#define NAM__MOE_HS4(A, B, C, D, dst)                                                          \
    do {                                                                                       \
        __m256 s_ = _mm256_hadd_ps(_mm256_hadd_ps(A, B), _mm256_hadd_ps(C, D));                \
        _mm_storeu_ps(dst, _mm_add_ps(_mm256_castps256_ps128(s_), _mm256_extractf128_ps(s_, 1))); \
    } while (0)
__attribute__((target("avx2,fma")))
NAM__UNUSED static void nam__moe_dot_avx2(int64_t K, const float *w, int64_t ldw, int rows, const float *x, int64_t ldx, int nt, float *res,
                                          const char *pf, int64_t pf_ld, int pf_rows, int64_t pf_bytes) {
    const float *w0 = w, *w1 = w + (rows > 1 ? 1 : 0) * ldw, *w2 = w + (rows > 2 ? 2 : rows - 1) * ldw;
    const float *w3 = w + (rows > 3 ? 3 : rows - 1) * ldw, *w4 = w + (rows > 4 ? 4 : rows - 1) * ldw, *w5 = w + (rows > 5 ? 5 : rows - 1) * ldw;
    const float *x0 = x, *x1 = x + (nt > 1 ? ldx : 0);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0, b4 = a0, b5 = a0, u, v, q;
    int64_t p = 0, K16 = K & ~NAM__CAST(int64_t, 15), lines = pf ? pf_bytes / 64 + 1 : 0, total = lines * pf_rows, per, done = 0, pr = 0, pl = 0, m, i;
    float tmp[12];
    per = total ? (total + K / 128) / (K / 128 + 1) : 0;
    for (; p < K16; p += 16) {
        if ((p & 127) == 0)
            for (m = 0; m < per && done < total; m++, done++) {
                _mm_prefetch(pf + pr * pf_ld + pl * 64, _MM_HINT_T1);
                if (++pr == pf_rows) { pr = 0; pl++; }
            }
        if (nt > 1) {           /* rows (a: x0, b: x1), 8 p at a time, twice */
            u = _mm256_loadu_ps(x0 + p); v = _mm256_loadu_ps(x1 + p);
            q = _mm256_loadu_ps(w0 + p); a0 = _mm256_fmadd_ps(q, u, a0); b0 = _mm256_fmadd_ps(q, v, b0);
            q = _mm256_loadu_ps(w1 + p); a1 = _mm256_fmadd_ps(q, u, a1); b1 = _mm256_fmadd_ps(q, v, b1);
            q = _mm256_loadu_ps(w2 + p); a2 = _mm256_fmadd_ps(q, u, a2); b2 = _mm256_fmadd_ps(q, v, b2);
            q = _mm256_loadu_ps(w3 + p); a3 = _mm256_fmadd_ps(q, u, a3); b3 = _mm256_fmadd_ps(q, v, b3);
            q = _mm256_loadu_ps(w4 + p); a4 = _mm256_fmadd_ps(q, u, a4); b4 = _mm256_fmadd_ps(q, v, b4);
            q = _mm256_loadu_ps(w5 + p); a5 = _mm256_fmadd_ps(q, u, a5); b5 = _mm256_fmadd_ps(q, v, b5);
            u = _mm256_loadu_ps(x0 + p + 8); v = _mm256_loadu_ps(x1 + p + 8);
            q = _mm256_loadu_ps(w0 + p + 8); a0 = _mm256_fmadd_ps(q, u, a0); b0 = _mm256_fmadd_ps(q, v, b0);
            q = _mm256_loadu_ps(w1 + p + 8); a1 = _mm256_fmadd_ps(q, u, a1); b1 = _mm256_fmadd_ps(q, v, b1);
            q = _mm256_loadu_ps(w2 + p + 8); a2 = _mm256_fmadd_ps(q, u, a2); b2 = _mm256_fmadd_ps(q, v, b2);
            q = _mm256_loadu_ps(w3 + p + 8); a3 = _mm256_fmadd_ps(q, u, a3); b3 = _mm256_fmadd_ps(q, v, b3);
            q = _mm256_loadu_ps(w4 + p + 8); a4 = _mm256_fmadd_ps(q, u, a4); b4 = _mm256_fmadd_ps(q, v, b4);
            q = _mm256_loadu_ps(w5 + p + 8); a5 = _mm256_fmadd_ps(q, u, a5); b5 = _mm256_fmadd_ps(q, v, b5);
        } else {                /* one row: a takes p..p+7, b takes p+8..p+15 (two chains) */
            u = _mm256_loadu_ps(x0 + p); v = _mm256_loadu_ps(x0 + p + 8);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + p), u, a0); b0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + p + 8), v, b0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + p), u, a1); b1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + p + 8), v, b1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + p), u, a2); b2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + p + 8), v, b2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + p), u, a3); b3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + p + 8), v, b3);
            a4 = _mm256_fmadd_ps(_mm256_loadu_ps(w4 + p), u, a4); b4 = _mm256_fmadd_ps(_mm256_loadu_ps(w4 + p + 8), v, b4);
            a5 = _mm256_fmadd_ps(_mm256_loadu_ps(w5 + p), u, a5); b5 = _mm256_fmadd_ps(_mm256_loadu_ps(w5 + p + 8), v, b5);
        }
    }
    if (nt > 1) {
        NAM__MOE_HS4(a0, a1, a2, a3, res);
        NAM__MOE_HS4(a4, a5, b0, b1, res + 4);
        NAM__MOE_HS4(b2, b3, b4, b5, res + 8);
    } else {
        NAM__MOE_HS4(_mm256_add_ps(a0, b0), _mm256_add_ps(a1, b1), _mm256_add_ps(a2, b2), _mm256_add_ps(a3, b3), res);
        NAM__MOE_HS4(_mm256_add_ps(a4, b4), _mm256_add_ps(a5, b5), a0, a0, tmp);
        res[4] = tmp[0];
        res[5] = tmp[1];
    }
    for (; p < K; p++)          /* K % 16 leftovers */
        for (m = 0; m < nt; m++) {
            float xv = (m ? x1 : x0)[p];
            const float *wr[6];
            wr[0] = w0; wr[1] = w1; wr[2] = w2; wr[3] = w3; wr[4] = w4; wr[5] = w5;
            for (i = 0; i < 6; i++) res[m * 6 + i] += wr[i][p] * xv;
        }
}
#undef NAM__MOE_HS4
#endif

NAM__UNUSED static int nam__moe_have_avx2(void) {
#ifdef NAM__MOE_X86
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

/* One work item with the streaming kernels: rows [r0, r0 + mt) of `in` (absolute). Full
   16-row panels run nam__moe_tile_avx2; a tail of up to NAM__MOE_DOT_MAX rows runs
   nam__moe_dot_avx2 two rows at a time (a longer tail is one zero-padded panel). xT, hT:
   the panels (MT H and MT F floats); xr, hr: the tail's rows (16 H and 16 F floats). */
NAM__UNUSED static void nam__moe_item_avx2(nam__moe_ffn_ctx *c, int64_t r0, int64_t mt, const nam__moe_wsrc *s1, const nam__moe_wsrc *s3,
                                           const nam__moe_wsrc *s2, float *xT, float *hT, float *xr, float *hr, float *wb, float *obuf) {
#ifdef NAM__MOE_X86
    const nam_moe_ffn_desc *d = c->d;
    int64_t F = c->fi->F, H = c->fi->H, KM = F > H ? F : H, np = mt / 16, nd, users, sx[NAM_MAX_DIMS], so[NAM_MAX_DIMS], pn, t, t0, q, f, h, i, ldx, ldo, us;
    int64_t l1 = 0, l3 = 0, l2 = 0, b1 = 0, b3 = 0, b2 = 0;
    const float *w1, *w3 = NULL, *w2;
    int in_f32;
    float g[96], u[96];
    const float *xt;
    float *o;
    nam__tensor_strides(&d->in, sx);
    nam__tensor_strides(&d->out, so);
    in_f32 = d->in.dtype == NAM_F32 && sx[1] == 1;
    if (mt - np * 16 > NAM__MOE_DOT_MAX) np++;
    nd = mt - np * 16 > 0 ? mt - np * 16 : 0;
    users = np + (nd + 1) / 2;         /* kernel calls per weight block: the prefetch is split over them */
    /* x^T panels: xT[pn][q][t] = in[r0 + pn*16 + t][q], zero past mt */
    for (pn = 0; pn < np; pn++) {
        float *dst = xT + pn * 16 * H;
        for (t = 0; t < 16; t++) {
            int64_t r = pn * 16 + t;
            if (r >= mt) { for (q = 0; q < H; q++) dst[q * 16 + t] = 0.0f; continue; }
            if (in_f32) {
                const float *src = NAM__CAST(const float *, d->in.data) + (r0 + r) * sx[0];
                for (q = 0; q < H; q++) dst[q * 16 + t] = src[q];
            } else
                for (q = 0; q < H; q++) dst[q * 16 + t] = nam__load(d->in.data, d->in.dtype, (r0 + r) * sx[0] + q * sx[1]);
        }
    }
    /* the tail's rows, in place or converted */
    if (in_f32) { xt = NAM__CAST(const float *, d->in.data) + (r0 + np * 16) * sx[0]; ldx = sx[0]; }
    else {
        for (t = 0; t < nd; t++)
            for (q = 0; q < H; q++) xr[t * H + q] = nam__load(d->in.data, d->in.dtype, (r0 + np * 16 + t) * sx[0] + q * sx[1]);
        xt = xr;
        ldx = H;
    }
    /* hidden: hT[pn][f][t] (panels), hr[t][f] (tail) = act(x W1^T, x W3^T) */
    for (f = 0; f < F; f += 6) {
        int rows = F - f < 6 ? NAM__CAST(int, F - f) : 6, nr = F - f - 6 < 6 ? NAM__CAST(int, F - f - 6) : 6;
        w1 = nam__moe_wblock(s1, f, rows, H, wb, &l1);
        if (c->fi->swiglu) w3 = nam__moe_wblock(s3, f, rows, H, wb + 6 * KM, &l3);
        for (us = 0; us < users; us++) {
            int64_t c0 = H * us / users, nc = H * (us + 1) / users - c0;
            const char *p1 = nam__moe_wnext(s1, f + 6, F, c0, &b1), *p3 = c->fi->swiglu ? nam__moe_wnext(s3, f + 6, F, c0, &b3) : NULL;
            if (us < np) {
                float *dst = hT + us * 16 * F + f * 16;
                nam__moe_tile_avx2(H, w1, l1, rows, xT + us * 16 * H, g, p1, b1, nr, nc * s1->es);
                if (c->fi->swiglu) {
                    nam__moe_tile_avx2(H, w3, l3, rows, xT + us * 16 * H, u, p3, b3, nr, nc * s3->es);
                    for (i = 0; i < rows * 16; i++) dst[i] = nam__silu(g[i]) * u[i];
                } else
                    for (i = 0; i < rows * 16; i++) dst[i] = g[i] > 0.0f ? g[i] * g[i] : 0.0f;
            } else {
                int nt = nd - 2 * (us - np) > 1 ? 2 : 1;
                t0 = 2 * (us - np);
                nam__moe_dot_avx2(H, w1, l1, rows, xt + t0 * ldx, ldx, nt, g, p1, b1, nr, nc * s1->es);
                if (c->fi->swiglu) nam__moe_dot_avx2(H, w3, l3, rows, xt + t0 * ldx, ldx, nt, u, p3, b3, nr, nc * s3->es);
                for (t = 0; t < nt; t++)
                    for (i = 0; i < rows; i++) {
                        float gv = g[t * 6 + i];
                        hr[(t0 + t) * F + f + i] = c->fi->swiglu ? nam__silu(gv) * u[t * 6 + i] : gv > 0.0f ? gv * gv : 0.0f;
                    }
            }
        }
    }
    /* out rows = (W2 h^T)^T for the panels, h W2^T for the tail */
    if (obuf) { o = obuf; ldo = H; }
    else { o = NAM__CAST(float *, d->out.data) + r0 * so[0]; ldo = so[0]; }
    for (h = 0; h < H; h += 6) {
        int rows = H - h < 6 ? NAM__CAST(int, H - h) : 6, nr = H - h - 6 < 6 ? NAM__CAST(int, H - h - 6) : 6;
        w2 = nam__moe_wblock(s2, h, rows, F, wb + 12 * KM, &l2);
        for (us = 0; us < users; us++) {
            int64_t c0 = F * us / users, nc = F * (us + 1) / users - c0;
            const char *p2 = nam__moe_wnext(s2, h + 6, H, c0, &b2);
            if (us < np) {
                int64_t nt = mt - us * 16 < 16 ? mt - us * 16 : 16;
                nam__moe_tile_avx2(F, w2, l2, rows, hT + us * 16 * F, g, p2, b2, nr, nc * s2->es);
                for (t = 0; t < nt; t++) {
                    float *orow = o + (us * 16 + t) * ldo + h;
                    for (i = 0; i < rows; i++) orow[i] = g[i * 16 + t];
                }
            } else {
                int nt = nd - 2 * (us - np) > 1 ? 2 : 1;
                t0 = 2 * (us - np);
                nam__moe_dot_avx2(F, w2, l2, rows, hr + t0 * F, F, nt, g, p2, b2, nr, nc * s2->es);
                for (t = 0; t < nt; t++) {
                    float *orow = o + (np * 16 + t0 + t) * ldo + h;
                    for (i = 0; i < rows; i++) orow[i] = g[t * 6 + i];
                }
            }
        }
    }
#else
    (void)c; (void)r0; (void)mt; (void)s1; (void)s3; (void)s2; (void)xT; (void)hT; (void)xr; (void)hr; (void)wb; (void)obuf;
#endif
}

/* One work item with nam__sgemm (NT products on row tiles). */
NAM__UNUSED static void nam__moe_item_sgemm(nam__moe_ffn_ctx *c, int64_t r0, int64_t mt, const float *w1, int64_t l1, const float *w3, int64_t l3,
                                            const float *w2, int64_t l2, float *xbuf, float *g, float *u, float *obuf, float *pack) {
    const nam_moe_ffn_desc *d = c->d;
    int64_t F = c->fi->F, H = c->fi->H, sx[NAM_MAX_DIMS], so[NAM_MAX_DIMS], r, q, lda, ldo;
    const float *x;
    float *o;
    nam__tensor_strides(&d->in, sx);
    nam__tensor_strides(&d->out, so);
    if (nam__moe_rows_f32(&d->in)) { x = NAM__CAST(const float *, d->in.data) + r0 * sx[0]; lda = sx[0]; }
    else {
        for (r = 0; r < mt; r++)
            for (q = 0; q < H; q++) xbuf[r * H + q] = nam__load(d->in.data, d->in.dtype, (r0 + r) * sx[0] + q * sx[1]);
        x = xbuf;
        lda = H;
    }
    nam__sgemm(NAM__CAST(int, mt), NAM__CAST(int, F), NAM__CAST(int, H), x, lda, w1, l1, 1, 0.0f, g, F, pack);
    if (c->fi->swiglu) {
        nam__sgemm(NAM__CAST(int, mt), NAM__CAST(int, F), NAM__CAST(int, H), x, lda, w3, l3, 1, 0.0f, u, F, pack);
        for (q = 0; q < mt * F; q++) g[q] = nam__silu(g[q]) * u[q];
    } else
        for (q = 0; q < mt * F; q++) g[q] = g[q] > 0.0f ? g[q] * g[q] : 0.0f;
    if (obuf) { o = obuf; ldo = H; }
    else { o = NAM__CAST(float *, d->out.data) + r0 * so[0]; ldo = so[0]; }
    nam__sgemm(NAM__CAST(int, mt), NAM__CAST(int, H), NAM__CAST(int, F), g, F, w2, l2, 1, 0.0f, o, ldo, pack);
}

NAM__UNUSED static void nam__moe_ffn_worker(void *ctx, int64_t begin, int64_t end, int thread) {
    nam__moe_ffn_ctx *c = NAM__CAST(nam__moe_ffn_ctx *, ctx);
    const nam__moe_ffn_info *fi = c->fi;
    const nam_moe_ffn_desc *d = c->d;
    char *cur = c->ws + fi->thread_bytes * NAM__CAST(size_t, thread);
    int64_t F = fi->F, H = fi->H, mt = NAM__MOE_MT, e, r0, n, cached = -1, l1 = 0, l3 = 0, l2 = 0, so[NAM_MAX_DIMS], r, q;
    float *xbuf, *g, *u = NULL, *obuf = NULL, *xr, *hr, *wb, *cw1 = NULL, *cw3 = NULL, *cw2 = NULL, *pack;
    nam__moe_wsrc s1, s3, s2;
    const float *w1 = NULL, *w3 = NULL, *w2 = NULL;
    (void)begin; (void)end;
    xbuf = NAM__CAST(float *, nam__ws_take(&cur, sizeof(float) * NAM__CAST(size_t, mt * H)));
    g = NAM__CAST(float *, nam__ws_take(&cur, sizeof(float) * NAM__CAST(size_t, mt * F)));
    if (fi->swiglu) u = NAM__CAST(float *, nam__ws_take(&cur, sizeof(float) * NAM__CAST(size_t, mt * F)));
    if (fi->conv_out) obuf = NAM__CAST(float *, nam__ws_take(&cur, sizeof(float) * NAM__CAST(size_t, mt * H)));
    xr = NAM__CAST(float *, nam__ws_take(&cur, sizeof(float) * NAM__CAST(size_t, 16 * H)));
    hr = NAM__CAST(float *, nam__ws_take(&cur, sizeof(float) * NAM__CAST(size_t, 16 * F)));
    wb = NAM__CAST(float *, nam__ws_take(&cur, sizeof(float) * NAM__CAST(size_t, 18 * (F > H ? F : H))));
    if (fi->conv[0]) cw1 = NAM__CAST(float *, nam__ws_take(&cur, sizeof(float) * NAM__CAST(size_t, F * H)));
    if (fi->conv[1]) cw3 = NAM__CAST(float *, nam__ws_take(&cur, sizeof(float) * NAM__CAST(size_t, F * H)));
    if (fi->conv[2]) cw2 = NAM__CAST(float *, nam__ws_take(&cur, sizeof(float) * NAM__CAST(size_t, F * H)));
    pack = NAM__CAST(float *, NAM__CAST(void *, cur));
    nam__tensor_strides(&d->out, so);
    while (nam__moe_grab(c, &e, &r0, &n)) {
        int64_t row0 = nam__moe_off(c->p, e) + r0;
        if (c->simd) {                /* weights read (or converted) one block of rows at a time */
            nam__moe_wsrc_init(&s1, &d->w1, e);
            if (fi->swiglu) nam__moe_wsrc_init(&s3, &d->w3, e);
            nam__moe_wsrc_init(&s2, &d->w2, e);
            nam__moe_item_avx2(c, row0, n, &s1, fi->swiglu ? &s3 : NULL, &s2, xbuf, g, xr, hr, wb, obuf);
        } else {                      /* nam__sgemm needs f32 rows: whole experts converted */
            if (e != cached) {
                w1 = nam__moe_weight(&d->w1, fi->conv[0], e, cw1, &l1);
                if (fi->swiglu) w3 = nam__moe_weight(&d->w3, fi->conv[1], e, cw3, &l3);
                w2 = nam__moe_weight(&d->w2, fi->conv[2], e, cw2, &l2);
                cached = e;
            }
            nam__moe_item_sgemm(c, row0, n, w1, l1, w3, l3, w2, l2, xbuf, g, u, obuf, pack);
        }
        if (obuf)
            for (r = 0; r < n; r++)
                for (q = 0; q < H; q++) nam__store(d->out.data, d->out.dtype, (row0 + r) * so[0] + q * so[1], obuf[r * H + q]);
    }
}

/* kernel: 0 the best for this CPU, 1 nam__sgemm, 2 the AVX2 streaming kernels (tests). */
NAM__UNUSED static nam_status nam__moe_ffn_run(nam_moe_ffn_desc *d, void *workspace, size_t workspace_bytes, int kernel, nam_error *err) {
    nam__moe_ffn_info fi;
    nam__moe_plan p;
    nam__moe_ffn_ctx c;
    nam_status s;
    int64_t e, items = 0;
    int threads;
    if ((s = nam__moe_ffn_check(d, &fi, err))) return s;
    if ((s = nam__moe_plan_check(d->plan, "nam_moe_ffn", 0, &p, err))) return s;
    if (p.E != fi.E) return nam__err(err, NAM_ERR_INVALID_ARG, "plan.num_experts = %lld, but w1.shape[0] (E) = %lld", NAM__CAST(long long, p.E), NAM__CAST(long long, fi.E));
    if (p.nrows > fi.R)
        return nam__err(err, NAM_ERR_INVALID_ARG, "in.shape[0] (rows) = %lld, but the plan keeps %lld rows", NAM__CAST(long long, fi.R), NAM__CAST(long long, p.nrows));
    if ((s = nam__ws_check(workspace, workspace_bytes, fi.bytes, "nam_moe_ffn", err))) return s;
    d->ran = fi.ran;
    if (fi.ran == NAM_BACKEND_CPU_REF) {
        nam__moe_ffn_ref(d, &fi, &p, NAM__CAST(double *, workspace));
        return NAM_OK;
    }
    for (e = 0; e < fi.E; e++) items += (nam__moe_off(&p, e + 1) - nam__moe_off(&p, e) + NAM__MOE_MT - 1) / NAM__MOE_MT;
    if (items == 0) return NAM_OK;
    memset(&c, 0, sizeof c);
    c.d = d;
    c.fi = &fi;
    c.p = &p;
    c.ws = NAM__CAST(char *, workspace);
    c.simd = kernel == 2 || (kernel == 0 && nam__moe_have_avx2());
    if (c.simd && !nam__moe_have_avx2()) return nam__err(err, NAM_ERR_UNSUPPORTED, "nam_moe_ffn: the AVX2+FMA kernels need a CPU with AVX2 and FMA");
    if (pthread_mutex_init(&c.lock, NULL) != 0) return nam__err(err, NAM_ERR_NOMEM, "nam_moe_ffn: pthread_mutex_init failed");
    threads = fi.threads < items ? fi.threads : NAM__CAST(int, items);
    nam__parallel_for(threads, threads, nam__moe_ffn_worker, &c);
    pthread_mutex_destroy(&c.lock);
    return NAM_OK;
}

NAM__DEF nam_status nam_moe_ffn(nam_moe_ffn_desc *d, void *workspace, size_t workspace_bytes, nam_error *err) {
    return nam__moe_ffn_run(d, workspace, workspace_bytes, 0, err);
}
