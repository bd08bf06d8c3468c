/* bench/bench_ssd.h - Mamba-2 SSD chunked scan (nam_ssd), fast CPU path vs the reference.

   Shapes: h 48, p 64, n 128, g 1, batch 1, l 512 and 4096 (--quick: l 512), f32, chunk 64.
   Inputs (BENCH_SSD_INPUTS, printed in nam-bench's header): x, B, C ~ U[-1, 1], and two
   distributions of the decay, each its own rows ("dist" in the shape):
     worst   A ~ U[-8, -1], raw dt ~ U[-3, 0] through dt_softplus. A chunk's A*dt sums to
             about -150, so the intra-chunk decays and their products sweep the fp32
             subnormal band (the case where Intel CPUs without flush-to-zero slow down 4-5x);
     mamba2  A = -U[1, 16] (Mamba-2's A_init_range), dt log-uniform in [1e-3, 0.1] (its
             dt_min/dt_max init), passed as dt directly (dt_softplus off).
   FLOPs are those of the recurrence, the usual figure of merit for a scan:
       5 * b * l * h * p * n   (state update: 1 mul + 1 fma; output: 1 fma; per element)
   (the chunked algorithm performs a similar count in matmul form; we do not count it separately).
   Bytes: x, out (b l h p), dt (b l h), B, C (b l g n), 4 bytes each, read or written once.
   Validation before timing: fast vs NAM_BACKEND_CPU_REF (sequential recurrence in double) at
   max |diff| <= 2e-5 * max(1, max |ref|) on l 512, for each distribution. */
#ifndef NAM_BENCH_SSD_H
#define NAM_BENCH_SSD_H

#define BENCH_SSD_INPUTS "ssd x, B, C ~ U[-1,1]; dist worst: A ~ U[-8,-1], dt = softplus(U[-3,0]); dist mamba2: A = -U[1,16], dt log-uniform in [1e-3, 0.1] (no softplus)"

typedef struct bench_ssd_ctx { nam_ssd_desc d; void *ws; size_t need; } bench_ssd_ctx;

static int bench_ssd_once(void *ctx) {
    bench_ssd_ctx *c = (bench_ssd_ctx *)ctx;
    nam_error e;
    if (nam_ssd(&c->d, c->ws, c->need, &e) != NAM_OK) { fprintf(stderr, "nam-bench: ssd: %s\n", e.message); return 1; }
    return 0;
}

/* dist 0 "worst", 1 "mamba2" (see the top of this file) */
static const char *const bench_ssd_dist[2] = {"worst", "mamba2"};

static int bench_ssd_run(bench_opts *o, int l, int dist, int with_ref) {
    const int b = 1, h = 48, p = 64, n = 128, g = 1;
    size_t nx = (size_t)b * l * h * p, nb = (size_t)b * l * g * n;
    float *x = (float *)bench_alloc(4 * nx), *dt = (float *)bench_alloc(4 * (size_t)b * l * h), *A = (float *)bench_alloc(4 * h),
          *B = (float *)bench_alloc(4 * nb), *C = (float *)bench_alloc(4 * nb), *y = (float *)bench_alloc(4 * nx), *yr = (float *)bench_alloc(4 * nx);
    int64_t sx[4] = {b, l, h, p}, sdt[3] = {b, l, h}, sa[1] = {h}, sb[4] = {b, l, g, n};
    bench_ssd_ctx c;
    unsigned seed = 7;
    nam_error e;
    char shape[200];
    double t, flops = 5.0 * b * l * h * p * n, bytes = 4.0 * (2 * nx + (size_t)b * l * h + 2 * nb);
    int rc = 1, i;
    memset(&c, 0, sizeof c);
    if (!x || !dt || !A || !B || !C || !y || !yr) goto done;
    bench_fill(x, nx, &seed, -1, 1);
    if (dist == 0) {
        bench_fill(dt, (size_t)b * l * h, &seed, -3, 0);
        bench_fill(A, h, &seed, -8, -1);
    } else {
        size_t k;
        bench_fill(dt, (size_t)b * l * h, &seed, logf(1e-3f), logf(0.1f));
        for (k = 0; k < (size_t)b * l * h; k++) dt[k] = expf(dt[k]);
        bench_fill(A, h, &seed, -16, -1);
    }
    bench_fill(B, nb, &seed, -1, 1); bench_fill(C, nb, &seed, -1, 1);
    c.d.x = nam_tensor_make(x, NAM_F32, 4, sx); c.d.dt = nam_tensor_make(dt, NAM_F32, 3, sdt); c.d.A = nam_tensor_make(A, NAM_F32, 1, sa);
    c.d.B = nam_tensor_make(B, NAM_F32, 4, sb); c.d.C = nam_tensor_make(C, NAM_F32, 4, sb); c.d.out = nam_tensor_make(y, NAM_F32, 4, sx);
    c.d.dt_softplus = dist == 0; c.d.chunk_size = 64; c.d.threads = o->threads; c.d.backend = NAM_BACKEND_CPU;
    if (nam_ssd_workspace_size(&c.d, &c.need, &e) != NAM_OK) { fprintf(stderr, "nam-bench: ssd: %s\n", e.message); goto done; }
    c.ws = bench_alloc(c.need);
    if (!c.ws || bench_ssd_once(&c)) goto done;
    if (with_ref) {
        bench_ssd_ctx r = c;
        size_t need;
        double scale = 1;
        r.d.backend = NAM_BACKEND_CPU_REF;
        r.d.out = nam_tensor_make(yr, NAM_F32, 4, sx);
        if (nam_ssd_workspace_size(&r.d, &need, &e) != NAM_OK) goto done;
        r.need = need;
        r.ws = bench_alloc(need);
        t = bench_median(bench_ssd_once, &r, 1);
        for (i = 0; i < (int)nx; i++) if (yr[i] > scale || -yr[i] > scale) scale = yr[i] > 0 ? yr[i] : -yr[i];
        if (t < 0 || bench_validate("ssd fast vs reference", y, yr, nx, (float)(2e-5 * scale), 0)) { free(r.ws); goto done; }
        snprintf(shape, sizeof shape, "{\"b\":%d,\"l\":%d,\"h\":%d,\"p\":%d,\"n\":%d,\"g\":%d,\"dist\":\"%s\"}", b, l, h, p, n, g, bench_ssd_dist[dist]);
        bench_row(o, "ssd", shape, "cpu-ref", 1, t, flops, bytes, 'c');
        free(r.ws);
    }
    t = bench_median(bench_ssd_once, &c, o->reps);
    if (t < 0) goto done;
    snprintf(shape, sizeof shape, "{\"b\":%d,\"l\":%d,\"h\":%d,\"p\":%d,\"n\":%d,\"g\":%d,\"dist\":\"%s\"}", b, l, h, p, n, g, bench_ssd_dist[dist]);
    bench_row(o, "ssd", shape, "cpu", o->threads, t, flops, bytes, 'c');
    rc = 0;
done:
    free(x); free(dt); free(A); free(B); free(C); free(y); free(yr); free(c.ws);
    return rc;
}

static int bench_ssd(bench_opts *o) {
    int dist;
    for (dist = 0; dist < 2; dist++) {
        if (bench_ssd_run(o, 512, dist, 1)) return 1;
        if (!o->quick && bench_ssd_run(o, 4096, dist, 0)) return 1;
    }
    return 0;
}
#endif
