/* tests/test_ssd.c - nam_ssd (chunked SSD scan), nam_ssd_step and nam_conv1d (nam.h >>kernel-ssd).

   Oracles:
     - nam_ssd NAM_BACKEND_CPU (chunked, f32, AVX2 where present) against NAM_BACKEND_CPU_REF
       (the sequential recurrence accumulated in double), same stored inputs;
     - a tiny case computed by hand (l = 2, all sizes 1), both backends;
     - a chain of nam_ssd_step calls against one nam_ssd over the whole sequence;
     - nam_conv1d against a direct double loop written here, and conv_state chaining.
   Tolerances, with scale = max |reference| over the compared tensor:
     f32 storage:  |got - ref| <= 1e-5 * scale + 1e-4 * |ref|
     f16 storage:  |got - ref| <= 1e-3 * scale + 2e-3 * |ref|   (outputs rounded to 11 bits)
     bf16 storage: |got - ref| <= 8e-3 * scale + 1.6e-2 * |ref|  (outputs rounded to 8 bits: 2 ulp)
   (both backends read the same rounded inputs, so only the output rounding and the f32
   vs double arithmetic differ.)
   Output (tests/test.h): one line per check, "ok <desc>", "FAIL <desc>: <why>" or "skip <desc>: <reason>";
   last line "test_ssd: N passed, M failed"; exit status 1 on any failure.
   --dump DIR writes three SSD cases and one conv1d case (inputs and nam's outputs) as raw
   little-endian f32 files plus DIR/manifest.txt, for tests/xcheck_ssd.py.

   gcc -std=c99 -O2 -Wall -Wextra -Werror -pedantic -I/usr/include/stb tests/test_ssd.c -o build/test_ssd -lstb -lm -lpthread */
#define NAM_IMPLEMENTATION
#include "test.h"

TEST_DEFINE_RUN(run_ssd, nam_ssd_desc, nam_ssd_workspace_size, nam_ssd)

/* ---- one SSD case: inputs, descs for both backends ------------------------------------ */
typedef struct ssd_case {
    int b, l, h, p, g, n, chunk, threads;
    int D;                 /* 0 none, 1 (h), 2 (h, p) */
    int z, bias, softplus, init, final_states;
    float dt_min, dt_max;
    float a_lo, a_hi;      /* A = -U(a_lo, a_hi) */
    float dt_lo, dt_hi;    /* raw dt ~ U(dt_lo, dt_hi) (with softplus: U(-4, 0.5) unless dt_dist says otherwise) */
    int dt_dist;           /* 0 as above; 1 raw dt ~ U(dt_lo, dt_hi) with softplus too; 2 log-uniform in [dt_lo, dt_hi] */
    nam_dtype dtype;       /* storage of x, dt, B, C, D, z, dt_bias, out */
    int strided;           /* x with element step 2 in p; out stored (b, h, l, p) */
} ssd_case;

static ssd_case base_case(void) {
    ssd_case c;
    memset(&c, 0, sizeof c);
    c.b = 1; c.l = 64; c.h = 2; c.p = 4; c.g = 1; c.n = 8; c.chunk = 16; c.threads = 2;
    c.a_lo = 0.5f; c.a_hi = 4.0f; c.dt_lo = 0.01f; c.dt_hi = 0.2f;
    c.dtype = NAM_F32;
    return c;
}

typedef struct ssd_bufs {
    void *x, *dt, *A, *B, *C, *D, *z, *bias, *init, *out, *fin;
    nam_ssd_desc d;
} ssd_bufs;

static void ssd_make(const ssd_case *c, ssd_bufs *s) {
    int64_t b = c->b, l = c->l, h = c->h, p = c->p, g = c->g, n = c->n;
    nam_dtype t = c->dtype;
    memset(s, 0, sizeof *s);
    s->x = test_rand_buf(b * l * h * p * (c->strided ? 2 : 1), t, -1, 1);
    if (c->dt_dist == 2) {
        int64_t i;
        s->dt = test_alloc(NAM__CAST(size_t, b * l * h) * test_esize(t));
        for (i = 0; i < b * l * h; i++) nam__store(s->dt, t, i, expf(test_urand(logf(c->dt_lo), logf(c->dt_hi))));
    } else {
        s->dt = c->softplus && !c->dt_dist ? test_rand_buf(b * l * h, t, -4.0f, 0.5f) : test_rand_buf(b * l * h, t, c->dt_lo, c->dt_hi);
    }
    s->A = test_rand_buf(h, NAM_F32, c->a_lo, c->a_hi);
    {
        int64_t i;
        for (i = 0; i < h; i++) NAM__CAST(float *, s->A)[i] = -NAM__CAST(float *, s->A)[i];
    }
    s->B = test_rand_buf(b * l * g * n, t, -1, 1);
    s->C = test_rand_buf(b * l * g * n, t, -1, 1);
    s->out = test_alloc(NAM__CAST(size_t, b * l * h * p) * test_esize(t));
    s->d.x = test_tensor(s->x, t, 4, b, l, h, p);
    if (c->strided) {
        s->d.x.stride[0] = l * h * p * 2; s->d.x.stride[1] = h * p * 2; s->d.x.stride[2] = p * 2; s->d.x.stride[3] = 2;
    }
    s->d.dt = test_tensor(s->dt, t, 3, b, l, h, 0);
    s->d.A = test_tensor(s->A, NAM_F32, 1, h, 0, 0, 0);
    s->d.B = test_tensor(s->B, t, 4, b, l, g, n);
    s->d.C = test_tensor(s->C, t, 4, b, l, g, n);
    if (c->D == 1) { s->D = test_rand_buf(h, t, -1, 1); s->d.D = test_tensor(s->D, t, 1, h, 0, 0, 0); }
    if (c->D == 2) { s->D = test_rand_buf(h * p, t, -1, 1); s->d.D = test_tensor(s->D, t, 2, h, p, 0, 0); }
    if (c->z) { s->z = test_rand_buf(b * l * h * p, t, -2, 2); s->d.z = test_tensor(s->z, t, 4, b, l, h, p); }
    if (c->bias) { s->bias = test_rand_buf(h, t, -1.0f, 0.5f); s->d.dt_bias = test_tensor(s->bias, t, 1, h, 0, 0, 0); }
    if (c->init) { s->init = test_rand_buf(b * h * p * n, NAM_F32, -1, 1); s->d.initial_states = test_tensor(s->init, NAM_F32, 4, b, h, p, n); }
    if (c->final_states) { s->fin = test_alloc(sizeof(float) * NAM__CAST(size_t, b * h * p * n)); s->d.final_states = test_tensor(s->fin, NAM_F32, 4, b, h, p, n); }
    s->d.out = test_tensor(s->out, t, 4, b, l, h, p);
    if (c->strided) {
        s->d.out.stride[0] = h * l * p; s->d.out.stride[1] = p; s->d.out.stride[2] = l * p; s->d.out.stride[3] = 1;
    }
    s->d.dt_softplus = c->softplus;
    s->d.dt_min = c->dt_min;
    s->d.dt_max = c->dt_max;
    s->d.chunk_size = c->chunk;
}

static void ssd_free(ssd_bufs *s) {
    free(s->x); free(s->dt); free(s->A); free(s->B); free(s->C); free(s->D); free(s->z);
    free(s->bias); free(s->init); free(s->out); free(s->fin);
}

static void tol_for(nam_dtype t, double *atol, double *rtol) {
    if (t == NAM_BF16) { *atol = 8e-3; *rtol = 1.6e-2; }
    else if (t == NAM_F16) { *atol = 1e-3; *rtol = 2e-3; }
    else { *atol = 1e-5; *rtol = 1e-4; }
}

/* Chunked (CPU) vs sequential (CPU_REF) on one case: out and, when asked, final states. */
static void ssd_vs_ref(const char *name, const ssd_case *c) {
    ssd_bufs s;
    nam_error e;
    nam_status st;
    float *ref = NULL, *fref = NULL;
    char desc[256];
    double atol, rtol;
    int64_t nfin = NAM__CAST(int64_t, c->b) * c->h * c->p * c->n;
    ssd_make(c, &s);
    tol_for(c->dtype, &atol, &rtol);
    snprintf(desc, sizeof desc, "ssd chunked == sequential: %s", name);
    st = run_ssd(&s.d, NAM_BACKEND_CPU_REF, 1, &e);
    if (!test_ran(desc, "reference", st, &e, s.d.ran, NAM_BACKEND_CPU_REF)) { ssd_free(&s); return; }
    ref = test_to_f32(&s.d.out);
    if (c->final_states) { fref = NAM__CAST(float *, test_alloc(sizeof(float) * NAM__CAST(size_t, nfin))); memcpy(fref, s.fin, sizeof(float) * NAM__CAST(size_t, nfin)); memset(s.fin, 0, sizeof(float) * NAM__CAST(size_t, nfin)); }
    memset(s.out, 0, NAM__CAST(size_t, NAM__CAST(int64_t, c->b) * c->l * c->h * c->p) * test_esize(c->dtype));
    st = run_ssd(&s.d, NAM_BACKEND_AUTO, c->threads, &e);
    if (test_ran(desc, "fast", st, &e, s.d.ran, NAM_BACKEND_CPU))
        test_check_out(desc, &s.d.out, ref, c->final_states ? NAM__CAST(float *, s.fin) : NULL, fref, nfin, "final_states", atol, rtol);
    free(ref); free(fref);
    ssd_free(&s);
}

static void test_ssd_shapes(void) {
    ssd_case c;
    c = base_case(); ssd_vs_ref("base b1 l64 h2 p4 n8 chunk16", &c);
    c = base_case(); c.l = 1; ssd_vs_ref("l = 1", &c);
    c = base_case(); c.l = 37; ssd_vs_ref("l 37 not a multiple of chunk 16", &c);
    c = base_case(); c.h = 1; ssd_vs_ref("h = 1", &c);
    c = base_case(); c.h = 6; c.g = 3; ssd_vs_ref("g = 3 (h 6)", &c);
    c = base_case(); c.h = 4; c.g = 4; ssd_vs_ref("g = h = 4", &c);
    c = base_case(); c.p = 1; ssd_vs_ref("p = 1", &c);
    c = base_case(); c.n = 1; ssd_vs_ref("n = 1", &c);
    c = base_case(); c.l = 10; c.chunk = 64; ssd_vs_ref("chunk 64 > l 10", &c);
    c = base_case(); c.chunk = 1; c.l = 9; ssd_vs_ref("chunk 1", &c);
    c = base_case(); c.chunk = 7; c.l = 50; ssd_vs_ref("chunk 7", &c);
    c = base_case(); c.chunk = 0; c.l = 150; ssd_vs_ref("chunk 0 (default 64), l 150", &c);
    c = base_case(); c.init = 1; ssd_vs_ref("initial states", &c);
    c = base_case(); c.final_states = 1; c.l = 45; ssd_vs_ref("final states", &c);
    c = base_case(); c.final_states = 1; c.l = 1; ssd_vs_ref("final states, l = 1", &c);
    c = base_case(); c.init = 1; c.final_states = 1; c.l = 5; c.chunk = 64; ssd_vs_ref("initial + final states, one partial chunk", &c);
    c = base_case(); c.D = 1; ssd_vs_ref("D (h)", &c);
    c = base_case(); c.D = 2; ssd_vs_ref("D (h,p)", &c);
    c = base_case(); c.z = 1; ssd_vs_ref("z gate", &c);
    c = base_case(); c.bias = 1; c.softplus = 1; ssd_vs_ref("dt_bias + softplus", &c);
    c = base_case(); c.softplus = 1; ssd_vs_ref("softplus without bias", &c);
    c = base_case(); c.dt_min = 0.05f; c.dt_max = 0.1f; ssd_vs_ref("dt limits [0.05, 0.1]", &c);
    c = base_case(); c.dt_min = 0.15f; ssd_vs_ref("dt_min 0.15 only", &c);
    c = base_case(); c.dt_max = 0.03f; c.dt_lo = -0.1f; ssd_vs_ref("dt_max 0.03 only (lower limit 0 clamps negative dt)", &c);
    c = base_case(); c.bias = 1; c.softplus = 1; c.dt_min = 0.001f; c.dt_max = 0.1f; ssd_vs_ref("bias + softplus + limits", &c);
    c = base_case(); c.b = 2; c.l = 100; c.h = 4; c.g = 2; c.p = 20; c.n = 13; c.chunk = 32; c.D = 2; c.z = 1; c.bias = 1;
    c.softplus = 1; c.init = 1; c.final_states = 1; c.threads = 3;
    ssd_vs_ref("all options: b2 l100 h4 g2 p20 n13 chunk32, 3 threads", &c);
    c.dtype = NAM_BF16; ssd_vs_ref("all options, bf16 storage", &c);
    c.dtype = NAM_F16; ssd_vs_ref("all options, f16 storage", &c);
    c.dtype = NAM_F32; c.strided = 1; ssd_vs_ref("all options, strided x (step 2) and permuted out (b,h,l,p)", &c);
    c.dtype = NAM_BF16; ssd_vs_ref("all options, bf16, strided x and permuted out", &c);
    c = base_case(); c.l = 300; c.h = 3; c.p = 64; c.n = 128; c.chunk = 64; c.D = 1; c.z = 1; c.final_states = 1;
    ssd_vs_ref("Mamba-2 head size: l300 h3 p64 n128 chunk64", &c);
    c = base_case(); c.l = 256; c.h = 2; c.p = 33; c.n = 70; c.chunk = 256; c.final_states = 1; c.init = 1;
    ssd_vs_ref("chunk 256, p33 n70", &c);
    c = base_case(); c.l = 70; c.chunk = 4096; ssd_vs_ref("chunk 4096", &c);
    c = base_case(); c.b = 3; c.h = 5; c.threads = 4; c.l = 33; ssd_vs_ref("b3 h5, 4 threads", &c);
    c = base_case(); c.a_lo = 0.0f; c.a_hi = 0.0f; c.final_states = 1; ssd_vs_ref("A = 0 (no decay)", &c);
    /* p a multiple of 16 without z: output tiles are stored straight into out, D (h) rides on W's diagonal */
    c = base_case(); c.l = 150; c.h = 3; c.p = 64; c.n = 32; c.chunk = 64; c.D = 1; c.bias = 1; c.softplus = 1;
    ssd_vs_ref("direct store: p64, D (h) folded, l150 chunk64", &c);
    c.D = 2; ssd_vs_ref("p64, D (h,p) (epilogue path)", &c);
    c.D = 0; c.init = 1; c.final_states = 1; ssd_vs_ref("direct store: p64, no D, initial + final states", &c);
    c = base_case(); c.b = 2; c.l = 45; c.h = 4; c.g = 2; c.p = 16; c.n = 20; c.chunk = 16; c.D = 1; c.strided = 1; c.threads = 3;
    ssd_vs_ref("direct store into permuted out (b,h,l,p), p16, strided x", &c);
    c.dtype = NAM_BF16; ssd_vs_ref("p16, bf16 storage (converted rows)", &c);
    c = base_case(); c.dt_lo = -0.3f; c.dt_hi = 0.1f; c.l = 80; c.p = 16; c.D = 1; c.final_states = 1; c.a_lo = 0.5f; c.a_hi = 1.0f;
    ssd_vs_ref("negative dt without softplus (A*dt > 0 in places: unfactored exps)", &c);
    c = base_case(); c.l = 1000; c.h = 2; c.p = 32; c.n = 24; c.chunk = 48; c.D = 1; c.final_states = 1; c.bias = 1; c.softplus = 1;
    ssd_vs_ref("l1000 chunk48 (21 chunks), p32", &c);
    c = base_case(); c.b = 2; c.l = 70; c.h = 6; c.g = 3; c.p = 48; c.n = 16; c.chunk = 32; c.threads = 4; c.init = 1; c.final_states = 1;
    ssd_vs_ref("b2 h6 g3 p48, 4 threads: thread ranges cross batches", &c);
}

/* Decays in the fp32 subnormal band. With A from U[-8,-1] and dt = softplus(U[-3,0]) (nam-bench's
   worst case) a chunk of 64 tokens sums A*dt to about -150, so the intra-chunk exponents
   cum_i - cum_j, and the products built from exp(cum) factors, sweep through -87.3..-103.3 where
   an fp32 value is subnormal; nam flushes those to 0 (see nam.h >>kernels). The result must still
   meet the ordinary tolerances against the double recurrence, whose exps of -90 are normal
   doubles. The first check confirms, from the test's own inputs, that the band is reached. */
static int64_t band_pairs(const ssd_case *c, const ssd_bufs *s) {
    int64_t bi, hi, t0, i, j, n = 0, Q = c->chunk ? c->chunk : 64;
    double *cum = NAM__CAST(double *, test_alloc(sizeof(double) * NAM__CAST(size_t, Q)));
    for (bi = 0; bi < c->b; bi++)
        for (hi = 0; hi < c->h; hi++)
            for (t0 = 0; t0 < c->l; t0 += Q) {
                double a = NAM__CAST(const float *, s->A)[hi], acc = 0.0;
                int64_t q = c->l - t0 < Q ? c->l - t0 : Q;
                for (i = 0; i < q; i++) {
                    double dt = nam__load(s->dt, c->dtype, (bi * c->l + t0 + i) * c->h + hi);
                    if (c->softplus) dt = dt <= 20.0 ? log1p(exp(dt)) : dt;
                    acc += dt * a;
                    cum[i] = acc;
                }
                for (i = 0; i < q; i++)
                    for (j = 0; j <= i; j++)
                        if (cum[i] - cum[j] < -87.34 && cum[i] - cum[j] > -103.28) n++;
            }
    free(cum);
    return n;
}

static void test_ssd_subnormal_band(void) {
    ssd_case c = base_case();
    ssd_bufs s;
    char why[160], desc[200];
    int64_t n;
    c.l = 512; c.h = 8; c.p = 64; c.n = 64; c.chunk = 64; c.softplus = 1; c.dt_dist = 1; c.dt_lo = -3.0f; c.dt_hi = 0.0f;
    c.a_lo = 1.0f; c.a_hi = 8.0f; c.D = 1;
    ssd_make(&c, &s);
    n = band_pairs(&c, &s);
    snprintf(why, sizeof why, "only %lld intra-chunk decay exponents in the band", NAM__CAST(long long, n));
    snprintf(desc, sizeof desc, "ssd worst case (A U[-8,-1], softplus(U[-3,0]) dt) reaches the fp32 subnormal band of exp: %lld (i, j) pairs", NAM__CAST(long long, n));
    test_check(n >= 20, desc, why);
    ssd_free(&s);
    ssd_vs_ref("subnormal band: worst case, l512 h8 p64 n64 chunk64, direct store, D (h)", &c);
    c.init = 1; c.final_states = 1; c.threads = 3;
    ssd_vs_ref("subnormal band: worst case, initial + final states, 3 threads", &c);
    c.z = 1; c.D = 2; c.bias = 1;
    ssd_vs_ref("subnormal band: worst case, z, D (h,p), dt_bias (row-buffer path)", &c);
    c.dtype = NAM_BF16;
    ssd_vs_ref("subnormal band: worst case, bf16 storage", &c);
    c.dtype = NAM_F32; c.chunk = 256; c.z = 0; c.D = 1; c.bias = 0;
    ssd_vs_ref("subnormal band: worst case, chunk 256", &c);
    c = base_case();
    c.l = 512; c.h = 4; c.p = 64; c.n = 64; c.chunk = 64; c.dt_dist = 2; c.dt_lo = 1e-3f; c.dt_hi = 0.1f;
    c.a_lo = 1.0f; c.a_hi = 16.0f; c.D = 1; c.final_states = 1;
    ssd_vs_ref("Mamba-2-like: A = -U[1,16], dt log-uniform [1e-3, 0.1], l512 p64 n64", &c);
}

/* The fast path is deterministic: 1 thread and 3 threads give identical bits. */
static void test_ssd_threads(void) {
    ssd_case c = base_case();
    ssd_bufs s;
    nam_error e;
    float *o1, *o3;
    int ok;
    c.b = 2; c.l = 90; c.h = 3; c.p = 17; c.n = 10; c.chunk = 16; c.z = 1; c.D = 1; c.init = 1; c.final_states = 1;
    ssd_make(&c, &s);
    ok = run_ssd(&s.d, NAM_BACKEND_CPU, 1, &e) == NAM_OK;
    o1 = test_to_f32(&s.d.out);
    ok = ok && run_ssd(&s.d, NAM_BACKEND_CPU, 3, &e) == NAM_OK;
    o3 = test_to_f32(&s.d.out);
    ok = ok && memcmp(o1, o3, sizeof(float) * NAM__CAST(size_t, nam_tensor_numel(&s.d.out))) == 0;
    test_check(ok, "ssd fast path: 1 thread and 3 threads give identical bits", "outputs differ or a call failed");
    free(o1); free(o3);
    ssd_free(&s);
}

/* l = 2, b = h = p = n = g = 1, A = -1, dt = (0.5, 1), x = (1, 2), B = (1, 0.5), C = (2, 1), D = 0.5:
     t0: state = 0.5*1*1 = 0.5;                         y0 = 2*0.5 + 0.5*1 = 1.5
     t1: state = e^-1 * 0.5 + 1*0.5*2 = 1 + e^-1/2;     y1 = 1*state + 0.5*2 = 2 + e^-1/2
   with z = (1, -2): y *= z / (1 + e^-z). */
static void test_ssd_hand(void) {
    float x[2] = {1, 2}, dt[2] = {0.5f, 1.0f}, A[1] = {-1}, B[2] = {1, 0.5f}, C[2] = {2, 1}, D[1] = {0.5f}, z[2] = {1, -2};
    float out[2], fin[1];
    double s1 = 1.0 + exp(-1.0) / 2, want[2], wantz[2];
    int be, chunk, withz;
    want[0] = 1.5; want[1] = 2.0 + exp(-1.0) / 2;
    wantz[0] = want[0] * (1.0 / (1.0 + exp(-1.0)));
    wantz[1] = want[1] * (-2.0 / (1.0 + exp(2.0)));
    for (withz = 0; withz < 2; withz++)
        for (be = 1; be <= 2; be++)
            for (chunk = 1; chunk <= 2; chunk++) {
                nam_ssd_desc d;
                nam_error e;
                char desc[160], why[1024];
                const double *w = withz ? wantz : want;
                int ok;
                memset(&d, 0, sizeof d);
                d.x = test_tensor(x, NAM_F32, 4, 1, 2, 1, 1);
                d.dt = test_tensor(dt, NAM_F32, 3, 1, 2, 1, 0);
                d.A = test_tensor(A, NAM_F32, 1, 1, 0, 0, 0);
                d.B = test_tensor(B, NAM_F32, 4, 1, 2, 1, 1);
                d.C = test_tensor(C, NAM_F32, 4, 1, 2, 1, 1);
                d.D = test_tensor(D, NAM_F32, 1, 1, 0, 0, 0);
                if (withz) d.z = test_tensor(z, NAM_F32, 4, 1, 2, 1, 1);
                d.out = test_tensor(out, NAM_F32, 4, 1, 2, 1, 1);
                d.final_states = test_tensor(fin, NAM_F32, 4, 1, 1, 1, 1);
                d.chunk_size = chunk;
                out[0] = out[1] = fin[0] = -99;
                ok = run_ssd(&d, NAM__CAST(nam_backend, be), 1, &e) == NAM_OK;
                ok = ok && fabs(out[0] - w[0]) < 1e-6 && fabs(out[1] - w[1]) < 1e-6 && fabs(fin[0] - s1) < 1e-6;
                snprintf(desc, sizeof desc, "ssd by hand (l 2, sizes 1)%s: %s, chunk %d", withz ? " with z" : "", nam_backend_name(NAM__CAST(nam_backend, be)), chunk);
                snprintf(why, sizeof why, "y = (%.8f, %.8f), want (%.8f, %.8f); final %.8f, want %.8f (%.300s)", out[0], out[1], w[0], w[1], fin[0], s1, e.message);
                test_check(ok, desc, why);
            }
}

/* nam_ssd_step over t = 0..l-1 (views into the full tensors) == nam_ssd over the sequence. */
static void test_ssd_step_chain(nam_dtype dtype) {
    ssd_case c = base_case();
    ssd_bufs s;
    nam_error e;
    int64_t b, l, h, p, g, n, t;
    float *state, *full, *steps;
    void *out_steps;
    char why[1024], desc[128];
    int ok = 1;
    double atol, rtol;
    c.b = 2; c.l = 20; c.h = 4; c.g = 2; c.p = 5; c.n = 7; c.chunk = 8; c.D = 2; c.z = 1; c.bias = 1; c.softplus = 1;
    c.init = 1; c.final_states = 1; c.dt_max = 0.5f; c.dtype = dtype;
    b = c.b; l = c.l; h = c.h; p = c.p; g = c.g; n = c.n;
    tol_for(dtype, &atol, &rtol);
    ssd_make(&c, &s);
    if (run_ssd(&s.d, NAM_BACKEND_CPU, 2, &e) != NAM_OK) { test_check(0, "ssd_step chain", e.message); ssd_free(&s); return; }
    full = test_to_f32(&s.d.out);
    state = NAM__CAST(float *, test_alloc(sizeof(float) * NAM__CAST(size_t, b * h * p * n)));
    memcpy(state, s.init, sizeof(float) * NAM__CAST(size_t, b * h * p * n));
    out_steps = test_alloc(NAM__CAST(size_t, b * l * h * p) * test_esize(dtype));
    for (t = 0; t < l && ok; t++) {
        nam_ssd_step_desc sd;
        size_t es = test_esize(dtype);
        memset(&sd, 0, sizeof sd);
        sd.x = test_tensor(NAM__CAST(char *, s.x) + t * h * p * es, dtype, 3, b, h, p, 0);
        sd.x.stride[0] = l * h * p; sd.x.stride[1] = p; sd.x.stride[2] = 1;
        sd.dt = test_tensor(NAM__CAST(char *, s.dt) + t * h * es, dtype, 2, b, h, 0, 0);
        sd.dt.stride[0] = l * h; sd.dt.stride[1] = 1;
        sd.A = s.d.A;
        sd.B = test_tensor(NAM__CAST(char *, s.B) + t * g * n * es, dtype, 3, b, g, n, 0);
        sd.B.stride[0] = l * g * n; sd.B.stride[1] = n; sd.B.stride[2] = 1;
        sd.C = test_tensor(NAM__CAST(char *, s.C) + t * g * n * es, dtype, 3, b, g, n, 0);
        sd.C.stride[0] = l * g * n; sd.C.stride[1] = n; sd.C.stride[2] = 1;
        sd.D = s.d.D;
        sd.z = test_tensor(NAM__CAST(char *, s.z) + t * h * p * es, dtype, 3, b, h, p, 0);
        sd.z.stride[0] = l * h * p; sd.z.stride[1] = p; sd.z.stride[2] = 1;
        sd.dt_bias = s.d.dt_bias;
        sd.state = test_tensor(state, NAM_F32, 4, b, h, p, n);
        sd.out = test_tensor(NAM__CAST(char *, out_steps) + t * h * p * es, dtype, 3, b, h, p, 0);
        sd.out.stride[0] = l * h * p; sd.out.stride[1] = p; sd.out.stride[2] = 1;
        sd.dt_softplus = 1;
        sd.dt_max = 0.5f;
        sd.backend = NAM_BACKEND_AUTO;
        if (nam_ssd_step(&sd, &e) != NAM_OK || sd.ran != NAM_BACKEND_CPU) { ok = 0; snprintf(why, sizeof why, "step %lld: %.300s", NAM__CAST(long long, t), e.message); }
    }
    if (ok) {
        nam_tensor ot = test_tensor(out_steps, dtype, 4, b, l, h, p);
        steps = test_to_f32(&ot);
        ok = test_allclose(steps, full, b * l * h * p, atol, rtol, why, sizeof why);
        if (ok) ok = test_allclose(state, NAM__CAST(float *, s.fin), b * h * p * n, 1e-5, 1e-4, why, sizeof why);
        free(steps);
    }
    snprintf(desc, sizeof desc, "ssd_step chain of 20 == ssd over the sequence (%s; out and state)", nam_dtype_name(dtype));
    test_check(ok, desc, why);
    free(full); free(state); free(out_steps);
    ssd_free(&s);
}

/* Very negative A*dt (A = -1e30, dt up to 1e10: A*dt = -1e40, beyond f32): finite, equal to the reference. */
static void test_ssd_extreme_p(int p) {
    ssd_case c = base_case();
    ssd_bufs s;
    nam_error e;
    float *ref, *got;
    int64_t i, nout;
    int ok, finite = 1;
    char why[512];
    char desc[128];
    c.h = 3; c.l = 40; c.chunk = 16; c.final_states = 1; c.D = 1; c.p = p;
    ssd_make(&c, &s);
    NAM__CAST(float *, s.A)[0] = -1e30f;
    NAM__CAST(float *, s.A)[1] = -1e4f;
    NAM__CAST(float *, s.A)[2] = -50.0f;
    for (i = 0; i < c.l * c.h; i += 7) NAM__CAST(float *, s.dt)[i] = 1e10f;
    ok = run_ssd(&s.d, NAM_BACKEND_CPU_REF, 1, &e) == NAM_OK;
    ref = test_to_f32(&s.d.out);
    ok = ok && run_ssd(&s.d, NAM_BACKEND_CPU, 2, &e) == NAM_OK;
    got = test_to_f32(&s.d.out);
    nout = nam_tensor_numel(&s.d.out);
    for (i = 0; i < nout; i++) if (!(got[i] == got[i]) || fabsf(got[i]) > 1e30f) finite = 0;
    for (i = 0; i < c.h * c.p * c.n; i++) if (!(NAM__CAST(float *, s.fin)[i] == NAM__CAST(float *, s.fin)[i])) finite = 0;
    snprintf(why, sizeof why, "a call failed or the output is not finite");
    snprintf(desc, sizeof desc, "ssd very negative A*dt (-1e40, -1e4 per step), p %d: no NaN or inf", p);
    test_check(ok && finite, desc, why);
    snprintf(desc, sizeof desc, "ssd very negative A*dt, p %d: chunked == sequential", p);
    test_check(ok && test_allclose(got, ref, nout, 1e-5, 1e-4, why, sizeof why), desc, why);
    free(ref); free(got);
    ssd_free(&s);
}

/* NaN in x at (t0, head 1, p 2): no crash; out[t >= t0, head 1, p 2] is NaN in both backends;
   every other head stays finite. (The chunked path may also turn up to 5 earlier outputs of
   the same chunk and column NaN: 0 * NaN inside the masked intra-chunk matmul, as Mamba's
   Triton kernels do.) */
static void test_ssd_nan_case(int p, int z) {
    ssd_case c = base_case();
    ssd_bufs s;
    nam_error e;
    int be, t0 = 21;
    c.h = 3; c.l = 50; c.chunk = 16; c.z = z; c.D = 1; c.p = p;
    ssd_make(&c, &s);
    NAM__CAST(float *, s.x)[(t0 * c.h + 1) * c.p + 2] = NAN;
    for (be = 1; be <= 2; be++) {
        int ok = run_ssd(&s.d, NAM__CAST(nam_backend, be), 2, &e) == NAM_OK, t, hh, pp;
        const float *o = NAM__CAST(const float *, s.out);
        char desc[128];
        for (t = 0; t < c.l && ok; t++)
            for (hh = 0; hh < c.h; hh++)
                for (pp = 0; pp < c.p; pp++) {
                    float v = o[(t * c.h + hh) * c.p + pp];
                    if (hh == 1 && pp == 2 && t >= t0 && v == v) ok = 0;
                    if (hh != 1 && v != v) ok = 0;
                    if (hh == 1 && pp != 2 && v != v) ok = 0;
                    if (hh == 1 && pp == 2 && t < t0 - 5 && v != v) ok = 0;
                }
        snprintf(desc, sizeof desc, "ssd NaN in x propagates to later outputs of its (head, p) only (%s, p %d%s)", nam_backend_name(NAM__CAST(nam_backend, be)), p, z ? ", z" : "");
        test_check(ok, desc, "NaN missing where expected or present elsewhere");
    }
    ssd_free(&s);
}

/* ---- bad input ------------------------------------------------------------------------ */
typedef struct bad_ctx { ssd_case c; ssd_bufs s; } bad_ctx;


static nam_status try_ssd(nam_ssd_desc *d, nam_error *e) {
    size_t ws = 0;
    void *w;
    nam_status st;
    if (nam_ssd_workspace_size(d, &ws, e) != NAM_OK) {   /* the query must say the same */
        nam_error e2;
        nam_status st2;
        w = test_alloc(1 << 20);
        st2 = nam_ssd(d, w, 1 << 20, &e2);
        free(w);
        if (st2 != e->code) return NAM_STATUS_COUNT;
        *e = e2;
        return st2;
    }
    w = test_alloc(ws);
    st = nam_ssd(d, w, ws, e);
    free(w);
    return st;
}

static void test_ssd_bad(void) {
    ssd_case c = base_case();
    ssd_bufs s;
    nam_ssd_desc d;
    nam_error e;
    nam_status st;
    size_t ws;
    void *w;
    float h16[8];
    c.h = 4; c.g = 2; c.D = 1; c.init = 1; c.final_states = 1;
    ssd_make(&c, &s);

    d = s.d; d.x.ndim = 3; st = try_ssd(&d, &e); test_expect("ssd bad: x with 3 dims", st, &e, NAM_ERR_INVALID_ARG, "x: 3 dimensions, expected 4 (b,l,h,p)");
    d = s.d; d.A.shape[0] = 3; st = try_ssd(&d, &e); test_expect("ssd bad: A.shape[0] != h", st, &e, NAM_ERR_INVALID_ARG, "A.shape[0] (h) = 3, but x.shape[2] = 4");
    d = s.d; d.dt.shape[1] = 63; st = try_ssd(&d, &e); test_expect("ssd bad: dt.shape[1] != l", st, &e, NAM_ERR_INVALID_ARG, "dt.shape[1] (l) = 63, but x.shape[1] = 64");
    d = s.d; d.B.shape[2] = 3; d.C.shape[2] = 3; st = try_ssd(&d, &e); test_expect("ssd bad: g = 3 does not divide h = 4", st, &e, NAM_ERR_INVALID_ARG, "B.shape[2] (g) = 3 does not divide x.shape[2] (h) = 4");
    d = s.d; d.C.shape[3] = 9; st = try_ssd(&d, &e); test_expect("ssd bad: C.shape[3] != B.shape[3]", st, &e, NAM_ERR_INVALID_ARG, "C.shape[3] (n) = 9, but B.shape[3] = 8");
    d = s.d; d.x.data = NULL; st = try_ssd(&d, &e); test_expect("ssd bad: x data NULL", st, &e, NAM_ERR_INVALID_ARG, "x: data is NULL");
    d = s.d; d.out.data = NULL; st = try_ssd(&d, &e); test_expect("ssd bad: out data NULL", st, &e, NAM_ERR_INVALID_ARG, "out: data is NULL");
    d = s.d; d.x.shape[1] = 0; st = try_ssd(&d, &e); test_expect("ssd bad: x.shape[1] = 0", st, &e, NAM_ERR_RANGE, "x.shape[1] = 0");
    d = s.d; d.B.shape[3] = 0; st = try_ssd(&d, &e); test_expect("ssd bad: n = 0", st, &e, NAM_ERR_RANGE, "B.shape[3] = 0");
    d = s.d; d.D.ndim = 3; d.D.shape[1] = 1; d.D.shape[2] = 1; st = try_ssd(&d, &e); test_expect("ssd bad: D with 3 dims", st, &e, NAM_ERR_INVALID_ARG, "D: 3 dimensions, expected 1 (h) or 2 (h,p)");
    d = s.d; d.D.ndim = 2; d.D.shape[1] = 5; st = try_ssd(&d, &e); test_expect("ssd bad: D (h,p) with p 5", st, &e, NAM_ERR_INVALID_ARG, "D.shape[1] (p) = 5, but x.shape[3] = 4");
    d = s.d; d.z = d.x; d.z.shape[3] = 3; st = try_ssd(&d, &e); test_expect("ssd bad: z.shape[3] != p", st, &e, NAM_ERR_INVALID_ARG, "z.shape[3] (p) = 3");
    d = s.d; d.dt_bias = d.A; d.dt_bias.shape[0] = 2; st = try_ssd(&d, &e); test_expect("ssd bad: dt_bias (2) vs h 4", st, &e, NAM_ERR_INVALID_ARG, "dt_bias.shape[0] (h) = 2");
    d = s.d; d.initial_states.dtype = NAM_BF16; st = try_ssd(&d, &e); test_expect("ssd bad: initial_states bf16", st, &e, NAM_ERR_INVALID_ARG, "initial_states: dtype bf16, expected f32");
    d = s.d; d.final_states.shape[3] = 7; st = try_ssd(&d, &e); test_expect("ssd bad: final_states n 7", st, &e, NAM_ERR_INVALID_ARG, "final_states.shape[3] (n) = 7, but B.shape[3] = 8");
    d = s.d; d.initial_states.shape[1] = 2; st = try_ssd(&d, &e); test_expect("ssd bad: initial_states h 2", st, &e, NAM_ERR_INVALID_ARG, "initial_states.shape[1] (h) = 2, but x.shape[2] = 4");
    d = s.d; d.A.dtype = NAM_F16; d.A.data = h16; st = try_ssd(&d, &e); test_expect("ssd bad: A f16", st, &e, NAM_ERR_INVALID_ARG, "A: dtype f16, expected f32");
    d = s.d; d.out.shape[3] = 5; st = try_ssd(&d, &e); test_expect("ssd bad: out p 5", st, &e, NAM_ERR_INVALID_ARG, "out.shape[3] (p) = 5, but x.shape[3] = 4");
    d = s.d; d.B.dtype = NAM_I32; st = try_ssd(&d, &e); test_expect("ssd bad: B i32", st, &e, NAM_ERR_INVALID_ARG, "B: dtype i32 is not a float storage type");
    d = s.d; d.chunk_size = -1; st = try_ssd(&d, &e); test_expect("ssd bad: chunk_size -1", st, &e, NAM_ERR_RANGE, "chunk_size = -1 is out of range (1..4096");
    d = s.d; d.chunk_size = 4097; st = try_ssd(&d, &e); test_expect("ssd bad: chunk_size 4097", st, &e, NAM_ERR_RANGE, "chunk_size = 4097");
    d = s.d; d.dt_min = 0.5f; d.dt_max = 0.1f; st = try_ssd(&d, &e); test_expect("ssd bad: dt_max < dt_min", st, &e, NAM_ERR_RANGE, "dt_max = 0.1 is below dt_min = 0.5");
    d = s.d; d.dt_min = NAN; st = try_ssd(&d, &e); test_expect("ssd bad: dt_min NaN", st, &e, NAM_ERR_INVALID_ARG, "NaN");
    d = s.d; d.backend = NAM__CAST(nam_backend, 9); st = try_ssd(&d, &e); test_expect("ssd bad: backend 9", st, &e, NAM_ERR_INVALID_ARG, "backend 9");
    d = s.d; d.x.device = NAM_DEVICE_CUDA; st = try_ssd(&d, &e); test_expect("ssd bad: CUDA x -> not implemented", st, &e, NAM_ERR_NOT_IMPLEMENTED, "CUDA backend is not built");
    d = s.d; d.B.device = NAM_DEVICE_CUDA; st = try_ssd(&d, &e); test_expect("ssd bad: CUDA B -> not implemented", st, &e, NAM_ERR_NOT_IMPLEMENTED, "B is a CUDA tensor");
    d = s.d; d.backend = NAM_BACKEND_CUDA; st = try_ssd(&d, &e); test_expect("ssd bad: backend CUDA -> not implemented", st, &e, NAM_ERR_NOT_IMPLEMENTED, "CUDA");
    d = s.d; d.x.shape[0] = INT64_C(1) << 20; d.x.shape[1] = INT64_C(1) << 20; d.x.shape[2] = 4; d.x.shape[3] = 1 << 12;
    st = try_ssd(&d, &e); test_expect("ssd bad: x with 2^52 elements", st, &e, NAM_ERR_LIMIT, "x has more than 2^40 elements");
    /* workspace */
    d = s.d;
    d.backend = NAM_BACKEND_CPU;
    st = nam_ssd_workspace_size(&d, &ws, &e);
    test_check(st == NAM_OK && ws > 0, "ssd workspace_size > 0 for the fast path", e.message);
    w = test_alloc(ws + 64);
    st = nam_ssd(&d, w, ws - 64, &e); test_expect("ssd bad: workspace 64 bytes too small", st, &e, NAM_ERR_INVALID_ARG, "too small");
    test_check(d.ran == NAM_BACKEND_AUTO, "ssd: ran is AUTO (nothing ran) after an error", nam_backend_name(d.ran));
    st = nam_ssd(&d, NULL, 0, &e); test_expect("ssd bad: NULL workspace", st, &e, NAM_ERR_INVALID_ARG, "workspace is NULL");
    st = nam_ssd(&d, NAM__CAST(char *, w) + 4, ws, &e); test_expect("ssd bad: misaligned workspace", st, &e, NAM_ERR_INVALID_ARG, "64-byte aligned");
    st = nam_ssd(&d, w, ws, &e);
    test_check(st == NAM_OK && d.ran == NAM_BACKEND_CPU, "ssd: exact workspace works, ran = cpu", e.message);
    free(w);
    {   /* issue 9: the desc reports the chunk length that ran (cpu: 0 -> 64, a request as given;
           cpu-ref: 0, no chunks; 0 after an error) and chunk_size itself is left as given */
        static const int req[4] = {0, 16, 100, 0}, want[4] = {64, 16, 100, 0};
        static const nam_backend be[4] = {NAM_BACKEND_CPU, NAM_BACKEND_AUTO, NAM_BACKEND_CPU, NAM_BACKEND_CPU_REF};
        int i;
        for (i = 0; i < 5; i++) {
            nam_ssd_desc u = s.d;
            size_t need = 0;
            void *uw;
            u.backend = be[i % 4]; u.chunk_size = i < 4 ? req[i] : -1; u.chunk_size_used = -7;
            st = nam_ssd_workspace_size(&u, &need, &e);
            uw = test_alloc(need + 64);
            if (st == NAM_OK || i == 4) st = nam_ssd(&u, uw, need, &e);
            CHECK(i < 4 ? st == NAM_OK && u.chunk_size_used == want[i] && u.chunk_size == req[i] : st == NAM_ERR_RANGE && u.chunk_size_used == 0,
                  test_fmt("ssd: chunk_size %d on %s reports chunk_size_used %d", u.chunk_size, nam_backend_name(be[i % 4]), i < 4 ? want[i] : 0),
                  "%s, chunk_size_used = %d, chunk_size = %d: %.300s", nam_status_str(st), u.chunk_size_used, u.chunk_size, e.message);
            free(uw);
        }
    }
    st = nam_ssd_workspace_size(&d, NULL, &e); test_expect("ssd bad: workspace_size bytes NULL", st, &e, NAM_ERR_INVALID_ARG, "bytes is NULL");
    st = nam_ssd(NULL, NULL, 0, &e); test_expect("ssd bad: desc NULL", st, &e, NAM_ERR_INVALID_ARG, "desc is NULL");
    d.backend = NAM_BACKEND_CPU_REF;
    st = nam_ssd_workspace_size(&d, &ws, &e);
    test_check(st == NAM_OK && ws >= sizeof(double) * 8, "ssd workspace_size for cpu-ref: n doubles", e.message);
    st = nam_ssd(&d, NULL, 0, NULL);
    test_check(st == NAM_ERR_INVALID_ARG, "ssd bad: cpu-ref without workspace, err NULL", nam_status_str(st));
    ssd_free(&s);
}

static void test_step_bad(void) {
    float buf[4096];
    nam_ssd_step_desc d, b;
    nam_error e;
    nam_status st;
    memset(buf, 0, sizeof buf);
    memset(&b, 0, sizeof b);
    b.x = test_tensor(buf, NAM_F32, 3, 2, 4, 3, 0);
    b.dt = test_tensor(buf, NAM_F32, 2, 2, 4, 0, 0);
    b.A = test_tensor(buf, NAM_F32, 1, 4, 0, 0, 0);
    b.B = test_tensor(buf, NAM_F32, 3, 2, 2, 5, 0);
    b.C = test_tensor(buf, NAM_F32, 3, 2, 2, 5, 0);
    b.state = test_tensor(buf + 100, NAM_F32, 4, 2, 4, 3, 5);
    b.out = test_tensor(buf + 1000, NAM_F32, 3, 2, 4, 3, 0);
    d = b; st = nam_ssd_step(&d, &e);
    test_check(st == NAM_OK && d.ran == NAM_BACKEND_CPU, "ssd_step: valid zero inputs run", e.message);
    d = b; d.state.dtype = NAM_F16; st = nam_ssd_step(&d, &e); test_expect("ssd_step bad: state f16", st, &e, NAM_ERR_INVALID_ARG, "state: dtype f16, expected f32");
    d = b; d.state.shape[3] = 4; st = nam_ssd_step(&d, &e); test_expect("ssd_step bad: state n 4", st, &e, NAM_ERR_INVALID_ARG, "state.shape[3] (n) = 4, but B.shape[2] = 5");
    d = b; d.B.shape[1] = 3; st = nam_ssd_step(&d, &e); test_expect("ssd_step bad: g 3 vs h 4", st, &e, NAM_ERR_INVALID_ARG, "does not divide");
    d = b; d.x.ndim = 4; st = nam_ssd_step(&d, &e); test_expect("ssd_step bad: x 4 dims", st, &e, NAM_ERR_INVALID_ARG, "x: 4 dimensions, expected 3 (b,h,p)");
    d = b; d.state.data = NULL; st = nam_ssd_step(&d, &e); test_expect("ssd_step bad: state NULL", st, &e, NAM_ERR_INVALID_ARG, "state: data is NULL");
    d = b; d.x.device = NAM_DEVICE_CUDA; st = nam_ssd_step(&d, &e); test_expect("ssd_step bad: CUDA", st, &e, NAM_ERR_NOT_IMPLEMENTED, "CUDA");
    d = b; d.backend = NAM_BACKEND_CPU_REF; st = nam_ssd_step(&d, &e);
    test_check(st == NAM_OK && d.ran == NAM_BACKEND_CPU_REF, "ssd_step: ran = cpu-ref when asked", e.message);
}

/* ---- conv1d ------------------------------------------------------------------------------ */
/* direct: out[b,t,c] = bias[c] + sum_k w[c,k] * in(t - (w-1) + k), in(s < 0) = state[b, c, w - 1 + s] */
static void conv_direct(int b, int l, int ch, int w, const float *x, const float *wt, const float *bias, const float *state, int silu, float *out) {
    int bi, t, c, k;
    for (bi = 0; bi < b; bi++)
        for (t = 0; t < l; t++)
            for (c = 0; c < ch; c++) {
                double acc = bias ? bias[c] : 0.0;
                for (k = 0; k < w; k++) {
                    int s = t - (w - 1) + k;
                    double v = s >= 0 ? x[(bi * l + s) * ch + c] : state ? state[(bi * ch + c) * (w - 1) + (w - 1 + s)] : 0.0;
                    acc += wt[c * w + k] * v;
                }
                if (silu) acc = acc / (1.0 + exp(-acc));
                out[(bi * l + t) * ch + c] = NAM__CAST(float, acc);
            }
}

static nam_status conv_run(int b, int l, int ch, int w, float *x, float *wt, float *bias, float *state, int silu, float *out, nam_backend be, int threads, nam_error *e) {
    nam_conv1d_desc d;
    memset(&d, 0, sizeof d);
    d.x = test_tensor(x, NAM_F32, 3, b, l, ch, 0);
    d.weight = test_tensor(wt, NAM_F32, 2, ch, w, 0, 0);
    if (bias) d.bias = test_tensor(bias, NAM_F32, 1, ch, 0, 0, 0);
    if (state) d.conv_state = test_tensor(state, NAM_F32, 3, b, ch, w - 1, 0);
    d.out = test_tensor(out, NAM_F32, 3, b, l, ch, 0);
    d.silu = silu;
    d.backend = be;
    d.threads = threads;
    return nam_conv1d(&d, e);
}

static void test_conv(void) {
    enum { Bn = 2, L = 13, CH = 5, W = 4 };
    float x[Bn * L * CH], wt[CH * W], bias[CH], st0[Bn * CH * (W - 1)], st[Bn * CH * (W - 1)], st2[Bn * CH * (W - 1)];
    float ref[Bn * L * CH], out[Bn * L * CH], out2[Bn * L * CH], xs[Bn * L * CH], os[Bn * L * CH];
    nam_error e;
    char why[512];
    int i, silu, be, split, bi, t, c, k, ok;
    for (i = 0; i < Bn * L * CH; i++) x[i] = test_urand(-1, 1);
    for (i = 0; i < CH * W; i++) wt[i] = test_urand(-1, 1);
    for (i = 0; i < CH; i++) bias[i] = test_urand(-0.5f, 0.5f);
    for (i = 0; i < Bn * CH * (W - 1); i++) st0[i] = test_urand(-1, 1);
    for (silu = 0; silu < 2; silu++)
        for (be = 1; be <= 2; be++) {
            char desc[160];
            memcpy(st, st0, sizeof st);
            conv_direct(Bn, L, CH, W, x, wt, bias, st0, silu, ref);
            ok = conv_run(Bn, L, CH, W, x, wt, bias, st, silu, out, NAM__CAST(nam_backend, be), 2, &e) == NAM_OK;
            ok = ok && test_allclose(out, ref, Bn * L * CH, 1e-6, 1e-5, why, sizeof why);
            for (bi = 0; bi < Bn && ok; bi++)   /* state = last 3 inputs */
                for (c = 0; c < CH; c++)
                    for (k = 0; k < W - 1; k++)
                        if (st[(bi * CH + c) * (W - 1) + k] != x[(bi * L + L - (W - 1) + k) * CH + c]) { ok = 0; snprintf(why, sizeof why, "conv_state not the last inputs"); }
            snprintf(desc, sizeof desc, "conv1d == direct loop with bias and conv_state%s (%s)", silu ? " + SiLU" : "", nam_backend_name(NAM__CAST(nam_backend, be)));
            test_check(ok, desc, why);
        }
    /* no state == zero history; no bias */
    conv_direct(Bn, L, CH, W, x, wt, NULL, NULL, 1, ref);
    ok = conv_run(Bn, L, CH, W, x, wt, NULL, NULL, 1, out, NAM_BACKEND_AUTO, 1, &e) == NAM_OK && test_allclose(out, ref, Bn * L * CH, 1e-6, 1e-5, why, sizeof why);
    test_check(ok, "conv1d without conv_state or bias == zero history", why);
    /* chaining: full sequence == split at every point (including 1 and 2 < w - 1) */
    for (split = 1; split < L; split++) {
        char desc[128];
        float xa[Bn * 12 * CH], xb[Bn * 12 * CH], oa[Bn * 12 * CH], ob[Bn * 12 * CH];
        int la = split, lb = L - split;
        memcpy(st, st0, sizeof st);
        memcpy(st2, st0, sizeof st2);
        ok = conv_run(Bn, L, CH, W, x, wt, bias, st, 1, out, NAM_BACKEND_CPU, 2, &e) == NAM_OK;
        for (bi = 0; bi < Bn; bi++) {
            memcpy(xa + bi * la * CH, x + bi * L * CH, sizeof(float) * la * CH);
            memcpy(xb + bi * lb * CH, x + (bi * L + la) * CH, sizeof(float) * lb * CH);
        }
        ok = ok && conv_run(Bn, la, CH, W, xa, wt, bias, st2, 1, oa, NAM_BACKEND_CPU, 2, &e) == NAM_OK;
        ok = ok && conv_run(Bn, lb, CH, W, xb, wt, bias, st2, 1, ob, NAM_BACKEND_CPU, 2, &e) == NAM_OK;
        for (bi = 0; bi < Bn; bi++) {
            memcpy(out2 + bi * L * CH, oa + bi * la * CH, sizeof(float) * la * CH);
            memcpy(out2 + (bi * L + la) * CH, ob + bi * lb * CH, sizeof(float) * lb * CH);
        }
        ok = ok && memcmp(out, out2, sizeof out) == 0 && memcmp(st, st2, sizeof st) == 0;
        snprintf(desc, sizeof desc, "conv1d chaining: l 13 == %d + %d with conv_state (outputs and state)", la, lb);
        test_check(ok, desc, "outputs or state differ");
    }
    /* decode: 13 calls with l = 1 */
    memcpy(st, st0, sizeof st);
    memcpy(st2, st0, sizeof st2);
    ok = conv_run(Bn, L, CH, W, x, wt, bias, st, 0, out, NAM_BACKEND_CPU, 1, &e) == NAM_OK;
    for (t = 0; t < L && ok; t++) {
        float x1[Bn * CH], o1[Bn * CH];
        for (bi = 0; bi < Bn; bi++) memcpy(x1 + bi * CH, x + (bi * L + t) * CH, sizeof(float) * CH);
        ok = conv_run(Bn, 1, CH, W, x1, wt, bias, st2, 0, o1, NAM_BACKEND_CPU, 1, &e) == NAM_OK;
        for (bi = 0; bi < Bn; bi++) memcpy(out2 + (bi * L + t) * CH, o1 + bi * CH, sizeof(float) * CH);
    }
    test_check(ok && memcmp(out, out2, sizeof out) == 0 && memcmp(st, st2, sizeof st) == 0, "conv1d decode: 13 calls with l = 1 == one call", "differ");
    /* w = 1: pointwise scale */
    conv_direct(Bn, L, CH, 1, x, wt, bias, NULL, 0, ref);
    {
        float w1[CH];
        for (c = 0; c < CH; c++) w1[c] = wt[c];
        conv_direct(Bn, L, CH, 1, x, w1, bias, NULL, 0, ref);
        ok = conv_run(Bn, L, CH, 1, x, w1, bias, NULL, 0, out, NAM_BACKEND_CPU, 2, &e) == NAM_OK && test_allclose(out, ref, Bn * L * CH, 1e-6, 1e-5, why, sizeof why);
        test_check(ok, "conv1d width 1", why);
    }
    /* strided x: a (b, l, c) view with element step 2 over c, bf16 out */
    {
        float xbig[Bn * L * CH * 2];
        uint16_t ob16[Bn * L * CH];
        nam_conv1d_desc d;
        memset(&d, 0, sizeof d);
        for (i = 0; i < Bn * L * CH; i++) { xbig[2 * i] = x[i]; xbig[2 * i + 1] = 1e9f; }
        conv_direct(Bn, L, CH, W, x, wt, bias, NULL, 1, ref);
        d.x = test_tensor(xbig, NAM_F32, 3, Bn, L, CH, 0);
        d.x.stride[0] = L * CH * 2; d.x.stride[1] = CH * 2; d.x.stride[2] = 2;
        d.weight = test_tensor(wt, NAM_F32, 2, CH, W, 0, 0);
        d.bias = test_tensor(bias, NAM_F32, 1, CH, 0, 0, 0);
        d.out = test_tensor(ob16, NAM_BF16, 3, Bn, L, CH, 0);
        d.silu = 1;
        ok = nam_conv1d(&d, &e) == NAM_OK;
        for (i = 0; i < Bn * L * CH; i++) os[i] = nam__bf16_to_f32(ob16[i]);
        ok = ok && test_allclose(os, ref, Bn * L * CH, 8e-3, 1.6e-2, why, sizeof why);
        test_check(ok, "conv1d strided x (step 2), bf16 out", why);
        (void)xs;
    }
    /* bad input */
    {
        nam_conv1d_desc d, b0;
        nam_status s;
        memset(&b0, 0, sizeof b0);
        b0.x = test_tensor(x, NAM_F32, 3, Bn, L, CH, 0);
        b0.weight = test_tensor(wt, NAM_F32, 2, CH, W, 0, 0);
        b0.conv_state = test_tensor(st, NAM_F32, 3, Bn, CH, W - 1, 0);
        b0.out = test_tensor(out, NAM_F32, 3, Bn, L, CH, 0);
        d = b0; d.weight.shape[0] = 4; s = nam_conv1d(&d, &e); test_expect("conv1d bad: weight c 4 vs x c 5", s, &e, NAM_ERR_INVALID_ARG, "weight.shape[0] (c) = 4, but x.shape[2] = 5");
        d = b0; d.conv_state.shape[2] = 4; s = nam_conv1d(&d, &e); test_expect("conv1d bad: conv_state w-1 = 4", s, &e, NAM_ERR_INVALID_ARG, "conv_state.shape[2] (w-1) = 4, but weight.shape[1] - 1 = 3");
        d = b0; d.conv_state.dtype = NAM_BF16; s = nam_conv1d(&d, &e); test_expect("conv1d bad: conv_state bf16", s, &e, NAM_ERR_INVALID_ARG, "conv_state: dtype bf16, expected f32");
        d = b0; d.weight.shape[1] = 1; s = nam_conv1d(&d, &e); test_expect("conv1d bad: width 1 with conv_state", s, &e, NAM_ERR_INVALID_ARG, "has no state");
        d = b0; d.out.data = x; s = nam_conv1d(&d, &e); test_expect("conv1d bad: out aliases x", s, &e, NAM_ERR_INVALID_ARG, "shares its data with x");
        d = b0; d.x.shape[1] = 0; s = nam_conv1d(&d, &e); test_expect("conv1d bad: l = 0", s, &e, NAM_ERR_RANGE, "x.shape[1] = 0");
        d = b0; d.weight.data = NULL; s = nam_conv1d(&d, &e); test_expect("conv1d bad: weight NULL", s, &e, NAM_ERR_INVALID_ARG, "weight: data is NULL");
        d = b0; d.x.device = NAM_DEVICE_CUDA; s = nam_conv1d(&d, &e); test_expect("conv1d bad: CUDA x", s, &e, NAM_ERR_NOT_IMPLEMENTED, "CUDA");
        d = b0; d.bias = test_tensor(bias, NAM_F32, 1, 3, 0, 0, 0); s = nam_conv1d(&d, &e); test_expect("conv1d bad: bias (3)", s, &e, NAM_ERR_INVALID_ARG, "bias.shape[0] (c) = 3");
        s = nam_conv1d(NULL, &e); test_expect("conv1d bad: desc NULL", s, &e, NAM_ERR_INVALID_ARG, "desc is NULL");
    }
}

/* ---- --dump DIR --------------------------------------------------------------------------- */
static int dump_ssd(const char *dir, FILE *man, const char *name, ssd_case *c) {
    ssd_bufs s;
    nam_error e;
    int ok;
    ssd_make(c, &s);
    if (run_ssd(&s.d, NAM_BACKEND_CPU, 2, &e) != NAM_OK) { fprintf(stderr, "test_ssd: %s\n", e.message); ssd_free(&s); return 0; }
    fprintf(man, "case %s kind=ssd b=%d l=%d h=%d p=%d g=%d n=%d chunk=%d softplus=%d dt_min=%.9g dt_max=%.9g D=%d z=%d bias=%d init=%d final=%d\n",
            name, c->b, c->l, c->h, c->p, c->g, c->n, c->chunk, c->softplus, NAM__CAST(double, c->dt_min), NAM__CAST(double, c->dt_max),
            c->D, c->z, c->bias, c->init, c->final_states);
    {
        const test_field f[] = {{"x", &s.d.x}, {"dt", &s.d.dt}, {"A", &s.d.A}, {"B", &s.d.B}, {"C", &s.d.C}, {"out", &s.d.out}, {"D", &s.d.D},
                                {"z", &s.d.z}, {"dt_bias", &s.d.dt_bias}, {"initial_states", &s.d.initial_states}, {"final_states", &s.d.final_states}};
        ok = test_dump_fields(dir, name, f, sizeof f / sizeof f[0]);
    }
    ssd_free(&s);
    return ok;
}

static int dump_all(const char *dir) {
    FILE *man = test_manifest(dir, "# test_ssd --dump: raw little-endian f32 files <case>_<tensor>.f32, shapes from the keys (nam_ssd / nam_conv1d docs)");
    ssd_case c;
    int ok;
    if (!man) return 0;
    c = base_case(); c.l = 100; c.h = 4; c.p = 8; c.g = 2; c.n = 16; c.chunk = 32; c.D = 1; c.z = 1; c.bias = 1; c.softplus = 1;
    c.init = 1; c.final_states = 1;
    ok = dump_ssd(dir, man, "ssd0", &c);
    c = base_case(); c.b = 2; c.l = 64; c.h = 2; c.p = 16; c.g = 1; c.n = 32; c.chunk = 16; c.D = 1; c.dt_min = 0.02f; c.dt_max = 0.15f;
    c.final_states = 1;
    ok = ok && dump_ssd(dir, man, "ssd1", &c);
    c = base_case(); c.b = 1; c.l = 200; c.h = 3; c.p = 64; c.g = 1; c.n = 128; c.chunk = 64; c.D = 2; c.z = 1; c.bias = 1; c.softplus = 1;
    ok = ok && dump_ssd(dir, man, "ssd2", &c);
    if (ok) {   /* conv1d: b 2, l 20, c 12, w 4, bias, SiLU, conv_state (written before and after) */
        enum { Bn = 2, L = 20, CH = 12, W = 4 };
        float *x = NAM__CAST(float *, test_rand_buf(Bn * L * CH, NAM_F32, -1, 1)), *wt = NAM__CAST(float *, test_rand_buf(CH * W, NAM_F32, -1, 1));
        float *bias = NAM__CAST(float *, test_rand_buf(CH, NAM_F32, -1, 1)), *st = NAM__CAST(float *, test_rand_buf(Bn * CH * (W - 1), NAM_F32, -1, 1));
        float out[Bn * L * CH];
        nam_tensor t;
        nam_error e;
        fprintf(man, "case conv0 kind=conv1d b=%d l=%d c=%d w=%d bias=1 silu=1 state=1\n", Bn, L, CH, W);
        t = test_tensor(x, NAM_F32, 3, Bn, L, CH, 0); ok = test_dump(dir, "conv0", "x", &t);
        t = test_tensor(wt, NAM_F32, 2, CH, W, 0, 0); ok = ok && test_dump(dir, "conv0", "weight", &t);
        t = test_tensor(bias, NAM_F32, 1, CH, 0, 0, 0); ok = ok && test_dump(dir, "conv0", "bias", &t);
        t = test_tensor(st, NAM_F32, 3, Bn, CH, W - 1, 0); ok = ok && test_dump(dir, "conv0", "state_in", &t);
        ok = ok && conv_run(Bn, L, CH, W, x, wt, bias, st, 1, out, NAM_BACKEND_CPU, 2, &e) == NAM_OK;
        t = test_tensor(out, NAM_F32, 3, Bn, L, CH, 0); ok = ok && test_dump(dir, "conv0", "out", &t);
        t = test_tensor(st, NAM_F32, 3, Bn, CH, W - 1, 0); ok = ok && test_dump(dir, "conv0", "state_out", &t);
        free(x); free(wt); free(bias); free(st);
    }
    if (fclose(man) != 0) ok = 0;
    return ok;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--dump")) {
        if (!dump_all(argv[2])) return 1;
        printf("test_ssd: wrote 3 ssd cases and 1 conv1d case to %s\n", argv[2]);
        return 0;
    }
    if (argc != 1) { fprintf(stderr, "usage: test_ssd [--dump DIR]\n"); return 2; }
    printf("# simd path: %s\n", nam__cpu_avx2_fma() ? "AVX2+FMA" : "portable C");
    test_ssd_hand();
    test_ssd_shapes();
    test_ssd_subnormal_band();
    test_ssd_threads();
    test_ssd_step_chain(NAM_F32);
    test_ssd_step_chain(NAM_BF16);
    test_ssd_extreme_p(4);
    test_ssd_extreme_p(16);
    test_ssd_nan_case(4, 1);
    test_ssd_nan_case(16, 0);
    test_ssd_bad();
    test_step_bad();
    test_conv();
    return test_done("test_ssd");
}
