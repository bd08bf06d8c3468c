/* tests/test_cuda_ssd.c - nam_ssd, nam_ssd_step and nam_conv1d on CUDA tensors
   (nam_cuda.cuh >>cuda-ssd) against nam.h's CPU reference on the same stored inputs.

   Oracle: NAM_BACKEND_CPU_REF (the sequential recurrence in double; conv1d's direct loop).
   Both sides read the same rounded inputs. Tolerance: max |gpu - ref| <= tol * max |ref|
   over the compared tensor (scale-relative, as ggml and FlashAttention compare), with
     f32  tol 1e-4: fp32 arithmetic vs double over sums of <= a few hundred terms;
     f16  tol 5e-3: the output is rounded to 11 bits (2^-11 = 4.9e-4 relative) and the
          kernels feed the tensor cores f16 operands: x * w_j for the chunk states, the
          scores C B^T * decay and the entering state S_in (each rounded once, 2^-11), fp32
          accumulation; a few roundings of 5e-4 each stay well inside 5e-3;
     bf16 tol 2e-2: the same with 8-bit mantissas (2^-8 = 3.9e-3 per rounding).
   final_states are f32 but built from the rounded operands: tol 1e-4 (f32), 3e-3 (f16),
   1.5e-2 (bf16).
   Runs on the GPU when there is one (real nvcc build) and on tests/cuda_emu.h otherwise
   (the emulator build); without either it prints one skip line. */
#define NAM_IMPLEMENTATION
#include "cuda_test.h"

static double tol_out(nam_dtype t) { return t == NAM_F32 ? 1e-4 : t == NAM_F16 ? 5e-3 : 2e-2; }
static double tol_state(nam_dtype t) { return t == NAM_F32 ? 1e-4 : t == NAM_F16 ? 3e-3 : 1.5e-2; }


/* ---- nam_ssd ---------------------------------------------------------------------------- */
typedef struct ssd_case {
    const char *name;
    nam_dtype xt, dtt;
    int64_t b, l, h, p, g, n;
    int chunk;
    int D;        /* 0 none, 1 (h), 2 (h, p) */
    int z, bias, softplus, init, fin, inplace;
    float dt_min, dt_max;
    float a_lo, a_hi;
} ssd_case;

static void run_ssd(const ssd_case *c) {
    ct_pair x, dt, A, B, C, D, z, bias, init, out, fin;
    int64_t sx[4], sdt[3], sh[1], sbc[4], sD[2], sst[4];
    nam_ssd_desc hd, dd;
    nam_error e;
    size_t hws = 0, dws = 0, dws2 = 0;
    void *hwsp = NULL, *dwsp = NULL;
    char desc[256];
    int ok = 1;
    memset(&x, 0, sizeof x); memset(&dt, 0, sizeof dt); memset(&A, 0, sizeof A); memset(&B, 0, sizeof B); memset(&C, 0, sizeof C);
    memset(&D, 0, sizeof D); memset(&z, 0, sizeof z); memset(&bias, 0, sizeof bias); memset(&init, 0, sizeof init);
    memset(&out, 0, sizeof out); memset(&fin, 0, sizeof fin);
    sx[0] = c->b; sx[1] = c->l; sx[2] = c->h; sx[3] = c->p;
    sdt[0] = c->b; sdt[1] = c->l; sdt[2] = c->h;
    sh[0] = c->h;
    sbc[0] = c->b; sbc[1] = c->l; sbc[2] = c->g; sbc[3] = c->n;
    sD[0] = c->h; sD[1] = c->p;
    sst[0] = c->b; sst[1] = c->h; sst[2] = c->p; sst[3] = c->n;
    ok &= ct_alloc(&x, c->xt, 4, sx, 1.0f, 0.0f);
    if (c->softplus) ok &= ct_alloc(&dt, c->dtt, 3, sdt, 1.5f, -2.5f);   /* softplus(-4..-1) = 0.018..0.31 */
    else ok &= ct_alloc(&dt, c->dtt, 3, sdt, 0.1f, 0.11f);              /* 0.01..0.21 */
    ok &= ct_alloc(&A, NAM_F32, 1, sh, 0.5f * (c->a_hi - c->a_lo), 0.5f * (c->a_hi + c->a_lo));
    ok &= ct_alloc(&B, c->xt, 4, sbc, 1.0f, 0.0f);
    ok &= ct_alloc(&C, c->xt, 4, sbc, 1.0f, 0.0f);
    if (c->D == 1) ok &= ct_alloc(&D, NAM_F32, 1, sh, 1.0f, 0.0f);
    if (c->D == 2) ok &= ct_alloc(&D, NAM_BF16, 2, sD, 1.0f, 0.0f);
    if (c->z) ok &= ct_alloc(&z, c->xt, 4, sx, 2.0f, 0.0f);
    if (c->bias) ok &= c->softplus ? ct_alloc(&bias, NAM_F32, 1, sh, 0.5f, 0.0f) : ct_alloc(&bias, NAM_F16, 1, sh, 0.02f, 0.02f);
    if (c->init) ok &= ct_alloc(&init, NAM_F32, 4, sst, 1.0f, 0.0f);
    ok &= ct_alloc(&out, c->xt, 4, sx, 1.0f, 0.0f);
    if (c->fin) ok &= ct_alloc(&fin, NAM_F32, 4, sst, 1.0f, 0.0f);
    if (!ok) return;
    memset(&hd, 0, sizeof hd);
    hd.x = x.h; hd.dt = dt.h; hd.A = A.h; hd.B = B.h; hd.C = C.h; hd.D = D.h; hd.z = z.h; hd.dt_bias = bias.h;
    hd.initial_states = init.h; hd.out = out.h; hd.final_states = fin.h;
    hd.dt_softplus = c->softplus; hd.dt_min = c->dt_min; hd.dt_max = c->dt_max; hd.chunk_size = c->chunk;
    hd.backend = NAM_BACKEND_CPU_REF;
    dd = hd;
    dd.backend = NAM_BACKEND_AUTO;
    dd.x = x.d; dd.dt = dt.d; dd.A = A.d; dd.B = B.d; dd.C = C.d; dd.D = D.d; dd.z = z.d; dd.dt_bias = bias.d;
    dd.initial_states = init.d; dd.out = out.d; dd.final_states = fin.d;
    if (c->inplace) dd.out = x.d;   /* out aliases x on the device; the reference writes its own out */
    snprintf(desc, sizeof desc, "ssd %s %s b%lld l%lld h%lld p%lld g%lld n%lld chunk%d", c->name, nam_dtype_name(c->xt), (long long)c->b, (long long)c->l,
             (long long)c->h, (long long)c->p, (long long)c->g, (long long)c->n, c->chunk);
    if (nam_ssd_workspace_size(&hd, &hws, &e) != NAM_OK) { test_fail("%s: %s", desc, e.message); goto done; }
    hwsp = malloc(hws + 64);   /* nam.h wants a 64-byte aligned workspace */
    if (nam_ssd(&hd, (void *)(((uintptr_t)hwsp + 63) & ~(uintptr_t)63), hws, &e) != NAM_OK) { test_fail("%s: %s", desc, e.message); goto done; }
    if (nam_ssd_workspace_size(&dd, &dws, &e) != NAM_OK || nam_ssd_workspace_size(&dd, &dws2, &e) != NAM_OK) { test_fail("%s: %s", desc, e.message); goto done; }
    if (dws != dws2) { test_fail("%s: %s", desc, "workspace size differs between two queries of one desc"); goto done; }
    if (nam_cuda_malloc(&dwsp, dws, &e) != NAM_OK) { test_fail("%s: %s", desc, e.message); goto done; }
    if (nam_ssd(&dd, dwsp, dws, &e) != NAM_OK) { test_fail("%s: %s", desc, e.message); goto done; }
    if (dd.ran != NAM_BACKEND_CUDA) { test_fail("%s: %s", desc, "desc.ran is not NAM_BACKEND_CUDA"); goto done; }
    {   /* issue 9: the desc reports the chunk that ran: cuda 0 -> 256, a request rounded up to 64,
           128 or 256, at most l rounded up to 64; cpu-ref 0 (no chunks); chunk_size left as given */
        int q = c->chunk == 0 ? 256 : c->chunk <= 64 ? 64 : c->chunk <= 128 ? 128 : 256, lq = c->l < 256 ? (int)((c->l + 63) / 64 * 64) : 256;
        CHECK(dd.chunk_size_used == (q < lq ? q : lq) && dd.chunk_size == c->chunk && hd.chunk_size_used == 0, test_fmt("%s: chunk_size_used", desc),
              "cuda chunk_size_used = %d (want %d), chunk_size = %d, cpu-ref chunk_size_used = %d", dd.chunk_size_used, q < lq ? q : lq, dd.chunk_size,
              hd.chunk_size_used);
    }
    {
        char d2[300];
        snprintf(d2, sizeof d2, "%s: out", desc);
        if (c->inplace) {   /* the result is in x's device buffer */
            ct_pair t = x;
            ct_cmp_pair(d2, &t, out.h.data, tol_out(c->xt));
        } else ct_cmp_pair(d2, &out, out.h.data, tol_out(c->xt));
        if (c->fin) {
            snprintf(d2, sizeof d2, "%s: final_states", desc);
            ct_cmp_pair(d2, &fin, fin.h.data, tol_state(c->xt));
        }
    }
done:
    free(hwsp);
    if (dwsp) nam_cuda_free(dwsp, &e);
    ct_free(&x); ct_free(&dt); ct_free(&A); ct_free(&B); ct_free(&C);
    if (D.bytes) ct_free(&D);
    if (z.bytes) ct_free(&z);
    if (bias.bytes) ct_free(&bias);
    if (init.bytes) ct_free(&init);
    ct_free(&out);
    if (fin.bytes) ct_free(&fin);
}

static void test_ssd(void) {
    static const nam_dtype types[3] = {NAM_F32, NAM_BF16, NAM_F16};
    int i;
    for (i = 0; i < 3; i++) {
        nam_dtype t = types[i];
        /* everything on, g = h / 2, ragged l over several chunks of 64 */
        ssd_case a = {"all-options", t, t, 2, 37, 4, 8, 2, 16, 16, 1, 1, 1, 1, 1, 1, 0, 0.0f, 0.0f, -1.5f, -0.5f};
        /* D (h, p), no z, one group, l = 130 over 3 chunks of 64, slow decay */
        ssd_case b = {"Dhp-3chunks", t, t, 1, 130, 2, 12, 1, 24, 16, 2, 0, 0, 0, 1, 1, 0, 0.0f, 0.0f, -0.05f, -0.01f};
        /* one token */
        ssd_case c = {"l1", t, t, 2, 1, 2, 8, 1, 16, 0, 1, 1, 1, 1, 1, 1, 0, 0.0f, 0.0f, -1.0f, -0.5f};
        /* default chunk: one chunk of 192 with 3 row tiles, dt limits, out aliasing x */
        ssd_case d = {"default-chunk-limits-inplace", t, t, 1, 150, 2, 8, 2, 16, 0, 1, 1, 1, 1, 0, 1, 1, 0.05f, 0.25f, -0.2f, -0.1f};
        run_ssd(&a);
        run_ssd(&b);
        run_ssd(&c);
        run_ssd(&d);
    }
    {
        /* p and n over two 64-wide tiles with ragged ends, chunk 128 (2 row tiles), 3 chunks */
        ssd_case e = {"tiles", NAM_BF16, NAM_BF16, 1, 300, 2, 70, 1, 72, 100, 1, 1, 0, 1, 1, 1, 0, 0.0f, 0.0f, -0.3f, -0.05f};
        /* dt in another dtype than x, dt_min only */
        ssd_case f = {"dt-bf16", NAM_F32, NAM_BF16, 2, 70, 4, 8, 4, 8, 64, 1, 0, 1, 0, 0, 1, 0, 0.03f, 0.0f, -1.0f, -0.2f};
        ssd_case g = {"tiles", NAM_F32, NAM_F32, 1, 70, 1, 66, 1, 65, 0, 2, 1, 1, 1, 1, 1, 0, 0.0f, 0.0f, -0.3f, -0.05f};
        /* f16: odd p (element stores), n % 8 != 0 (element loads, n padded to 32), 2 chunks */
        ssd_case hh = {"odd-p-n20", NAM_F16, NAM_F32, 2, 70, 2, 5, 1, 20, 64, 2, 1, 1, 1, 1, 1, 0, 0.0f, 0.0f, -0.5f, -0.1f};
        /* bf16 with n > 256: the fp32 SIMT kernels */
        ssd_case ii = {"n260-simt", NAM_BF16, NAM_BF16, 1, 20, 1, 8, 1, 260, 0, 1, 1, 1, 1, 1, 1, 0, 0.0f, 0.0f, -0.5f, -0.1f};
        run_ssd(&e);
        run_ssd(&f);
        run_ssd(&g);
        /* l = 260, default chunk: Q = 256 (4 row tiles) plus a 4-token chunk */
        ssd_case jj = {"q256", NAM_BF16, NAM_BF16, 1, 260, 2, 16, 1, 32, 0, 1, 1, 1, 1, 1, 1, 0, 0.0f, 0.0f, -0.1f, -0.02f};
        ssd_case kk = {"q256", NAM_F32, NAM_F32, 1, 260, 1, 8, 1, 16, 0, 0, 0, 0, 1, 1, 1, 0, 0.0f, 0.0f, -0.1f, -0.02f};
        run_ssd(&hh);
        run_ssd(&ii);
        run_ssd(&jj);
        run_ssd(&kk);
    }
}

/* ---- nam_ssd_step ---------------------------------------------------------------------- */
static void test_step(nam_dtype t, int with_opts) {
    ct_pair x, dt, A, B, C, D, z, bias, st, out;
    int64_t sx[3] = {2, 4, 6}, sdt[2] = {2, 4}, sh[1] = {4}, sbc[3] = {2, 2, 40}, sD[2] = {4, 6}, sst[4] = {2, 4, 6, 40};
    nam_ssd_step_desc hd, dd;
    nam_error e;
    char desc[128];
    int ok = 1;
    memset(&D, 0, sizeof D); memset(&z, 0, sizeof z); memset(&bias, 0, sizeof bias);
    ok &= ct_alloc(&x, t, 3, sx, 1.0f, 0.0f);
    ok &= ct_alloc(&dt, t, 2, sdt, 1.5f, -2.0f);
    ok &= ct_alloc(&A, NAM_F32, 1, sh, 0.5f, -1.0f);
    ok &= ct_alloc(&B, t, 3, sbc, 1.0f, 0.0f);
    ok &= ct_alloc(&C, t, 3, sbc, 1.0f, 0.0f);
    if (with_opts) {
        ok &= ct_alloc(&D, NAM_F32, 2, sD, 1.0f, 0.0f);
        ok &= ct_alloc(&z, t, 3, sx, 2.0f, 0.0f);
        ok &= ct_alloc(&bias, NAM_F32, 1, sh, 0.5f, 0.0f);
    } else ok &= ct_alloc(&D, NAM_F16, 1, sh, 1.0f, 0.0f);
    ok &= ct_alloc(&st, NAM_F32, 4, sst, 1.0f, 0.0f);
    ok &= ct_alloc(&out, t, 3, sx, 1.0f, 0.0f);
    if (!ok) return;
    memset(&hd, 0, sizeof hd);
    hd.x = x.h; hd.dt = dt.h; hd.A = A.h; hd.B = B.h; hd.C = C.h; hd.D = D.h; hd.z = z.h; hd.dt_bias = bias.h; hd.state = st.h; hd.out = out.h;
    hd.dt_softplus = 1;
    if (!with_opts) { hd.dt_min = 0.1f; hd.dt_max = 0.2f; }
    hd.backend = NAM_BACKEND_CPU_REF;
    dd = hd;
    dd.backend = NAM_BACKEND_AUTO;
    dd.x = x.d; dd.dt = dt.d; dd.A = A.d; dd.B = B.d; dd.C = C.d; dd.D = D.d; dd.z = z.d; dd.dt_bias = bias.d; dd.state = st.d; dd.out = out.d;
    snprintf(desc, sizeof desc, "ssd_step %s %s", nam_dtype_name(t), with_opts ? "D(h,p) z dt_bias" : "D(h) dt limits");
    if (nam_ssd_step(&hd, &e) != NAM_OK) test_fail("%s: %s", desc, e.message);
    else if (nam_ssd_step(&dd, &e) != NAM_OK) test_fail("%s: %s", desc, e.message);
    else if (dd.ran != NAM_BACKEND_CUDA) test_fail("%s: %s", desc, "desc.ran is not NAM_BACKEND_CUDA");
    else {
        char d2[160];
        snprintf(d2, sizeof d2, "%s: out", desc);
        ct_cmp_pair(d2, &out, out.h.data, tol_out(t));
        snprintf(d2, sizeof d2, "%s: state", desc);
        ct_cmp_pair(d2, &st, st.h.data, 1e-5);
    }
    ct_free(&x); ct_free(&dt); ct_free(&A); ct_free(&B); ct_free(&C);
    if (D.bytes) ct_free(&D);
    if (z.bytes) ct_free(&z);
    if (bias.bytes) ct_free(&bias);
    ct_free(&st); ct_free(&out);
}

/* ---- nam_conv1d ------------------------------------------------------------------------ */
static void test_conv(nam_dtype t, int64_t b, int64_t l, int64_t ch, int64_t w, int with_bias, int with_state, int silu) {
    ct_pair x, wt, bias, st, out;
    int64_t sx[3], sw[2], sb[1], ss[3];
    nam_conv1d_desc hd, dd;
    nam_error e;
    char desc[160];
    int ok = 1;
    sx[0] = b; sx[1] = l; sx[2] = ch;
    sw[0] = ch; sw[1] = w;
    sb[0] = ch;
    ss[0] = b; ss[1] = ch; ss[2] = w - 1;
    memset(&bias, 0, sizeof bias); memset(&st, 0, sizeof st);
    ok &= ct_alloc(&x, t, 3, sx, 1.0f, 0.0f);
    ok &= ct_alloc(&wt, t == NAM_F32 ? NAM_F32 : NAM_BF16, 2, sw, 0.5f, 0.0f);
    if (with_bias) ok &= ct_alloc(&bias, NAM_F32, 1, sb, 0.5f, 0.0f);
    if (with_state) ok &= ct_alloc(&st, NAM_F32, 3, ss, 1.0f, 0.0f);
    ok &= ct_alloc(&out, t, 3, sx, 1.0f, 0.0f);
    if (!ok) return;
    memset(&hd, 0, sizeof hd);
    hd.x = x.h; hd.weight = wt.h; hd.bias = bias.h; hd.conv_state = st.h; hd.out = out.h; hd.silu = silu;
    hd.backend = NAM_BACKEND_CPU_REF;
    dd = hd;
    dd.backend = NAM_BACKEND_AUTO;
    dd.x = x.d; dd.weight = wt.d; dd.bias = bias.d; dd.conv_state = st.d; dd.out = out.d;
    snprintf(desc, sizeof desc, "conv1d %s b%lld l%lld c%lld w%lld%s%s%s", nam_dtype_name(t), (long long)b, (long long)l, (long long)ch, (long long)w,
             with_bias ? " bias" : "", with_state ? " state" : "", silu ? " silu" : "");
    if (nam_conv1d(&hd, &e) != NAM_OK) test_fail("%s: %s", desc, e.message);
    else if (nam_conv1d(&dd, &e) != NAM_OK) test_fail("%s: %s", desc, e.message);
    else if (dd.ran != NAM_BACKEND_CUDA) test_fail("%s: %s", desc, "desc.ran is not NAM_BACKEND_CUDA");
    else {
        char d2[200];
        snprintf(d2, sizeof d2, "%s: out", desc);
        ct_cmp_pair(d2, &out, out.h.data, t == NAM_F32 ? 1e-5 : t == NAM_F16 ? 1.5e-3 : 1e-2);
        if (with_state) {
            snprintf(d2, sizeof d2, "%s: conv_state", desc);
            ct_cmp_pair(d2, &st, st.h.data, 0.0);   /* copies of stored inputs: exact */
        }
    }
    ct_free(&x); ct_free(&wt);
    if (bias.bytes) ct_free(&bias);
    if (st.bytes) ct_free(&st);
    ct_free(&out);
}

/* ---- error paths -------------------------------------------------------------------------- */

static void test_errors(void) {
    ct_pair x, dt, A, B, C, out, Bh, xs;
    int64_t sx[4] = {1, 8, 2, 4}, sdt[3] = {1, 8, 2}, sh[1] = {2}, sbc[4] = {1, 8, 1, 8};
    nam_ssd_desc d;
    nam_error e;
    size_t ws = 0;
    void *wsp = NULL;
    nam_status st;
    int ok = 1;
    ok &= ct_alloc(&x, NAM_F32, 4, sx, 1.0f, 0.0f);
    ok &= ct_alloc(&dt, NAM_F32, 3, sdt, 0.1f, 0.11f);
    ok &= ct_alloc(&A, NAM_F32, 1, sh, 0.1f, -0.5f);
    ok &= ct_alloc(&B, NAM_F32, 4, sbc, 1.0f, 0.0f);
    ok &= ct_alloc(&C, NAM_F32, 4, sbc, 1.0f, 0.0f);
    ok &= ct_alloc(&out, NAM_F32, 4, sx, 1.0f, 0.0f);
    ok &= ct_alloc(&Bh, NAM_BF16, 4, sbc, 1.0f, 0.0f);
    ok &= ct_alloc(&xs, NAM_F32, 4, sx, 1.0f, 0.0f);
    if (!ok) return;
    memset(&d, 0, sizeof d);
    d.x = x.d; d.dt = dt.d; d.A = A.d; d.B = B.d; d.C = C.d; d.out = out.d;
    if (nam_ssd_workspace_size(&d, &ws, &e) != NAM_OK || nam_cuda_malloc(&wsp, ws, &e) != NAM_OK) { test_fail("%s: %s", "ssd errors: setup", e.message); return; }
    {   /* a CPU tensor mixed in */
        nam_ssd_desc t = d;
        t.C = C.h;
        st = nam_ssd(&t, wsp, ws, &e);
        test_expect("ssd error: C is a CPU tensor among CUDA tensors", st, &e, NAM_ERR_INVALID_ARG, "C is a CPU tensor");
    }
    {   /* B in another storage dtype than x */
        nam_ssd_desc t = d;
        t.B = Bh.d;
        st = nam_ssd(&t, wsp, ws, &e);
        test_expect("ssd error: B bf16 with x f32 is not implemented", st, &e, NAM_ERR_NOT_IMPLEMENTED, "B has dtype bf16");
    }
    {   /* a strided x (h and p swapped) */
        nam_ssd_desc t = d;
        t.x = xs.d;
        t.x.stride[0] = 64; t.x.stride[1] = 8; t.x.stride[2] = 1; t.x.stride[3] = 2;
        st = nam_ssd(&t, wsp, ws, &e);
        test_expect("ssd error: strided x is not implemented", st, &e, NAM_ERR_NOT_IMPLEMENTED, "x.stride[3]");
    }
    {   /* too small a workspace */
        st = nam_ssd(&d, wsp, ws - 1, &e);
        test_expect("ssd error: workspace one byte short", st, &e, NAM_ERR_INVALID_ARG, "workspace_bytes");
        st = nam_ssd(&d, NULL, 0, &e);
        test_expect("ssd error: NULL workspace", st, &e, NAM_ERR_INVALID_ARG, "workspace is NULL");
    }
    {   /* ssd_step: C in another dtype; a CPU state */
        nam_ssd_step_desc s;
        ct_pair sx3, sdt2, sb3, sbh3, sst, so;
        int64_t a3[3] = {1, 2, 4}, a2[2] = {1, 2}, b3[3] = {1, 1, 8}, s4[4] = {1, 2, 4, 8};
        ok = ct_alloc(&sx3, NAM_F16, 3, a3, 1.0f, 0.0f) & ct_alloc(&sdt2, NAM_F16, 2, a2, 0.1f, 0.11f) & ct_alloc(&sb3, NAM_F16, 3, b3, 1.0f, 0.0f) &
             ct_alloc(&sbh3, NAM_BF16, 3, b3, 1.0f, 0.0f) & ct_alloc(&sst, NAM_F32, 4, s4, 1.0f, 0.0f) & ct_alloc(&so, NAM_F16, 3, a3, 1.0f, 0.0f);
        if (ok) {
            memset(&s, 0, sizeof s);
            s.x = sx3.d; s.dt = sdt2.d; s.A = A.d; s.B = sb3.d; s.C = sbh3.d; s.state = sst.d; s.out = so.d;
            st = nam_ssd_step(&s, &e);
            test_expect("ssd_step error: C bf16 with x f16 is not implemented", st, &e, NAM_ERR_NOT_IMPLEMENTED, "C has dtype bf16");
            s.C = sb3.d;
            s.state = sst.h;
            st = nam_ssd_step(&s, &e);
            test_expect("ssd_step error: state is a CPU tensor", st, &e, NAM_ERR_INVALID_ARG, "state is a CPU tensor");
            ct_free(&sx3); ct_free(&sdt2); ct_free(&sb3); ct_free(&sbh3); ct_free(&sst); ct_free(&so);
        }
    }
    {   /* conv1d: out in another dtype than x; a CPU weight */
        nam_conv1d_desc c;
        ct_pair cx, cw, co;
        int64_t s3[3] = {1, 4, 8}, s2[2] = {8, 4};
        ok = ct_alloc(&cx, NAM_BF16, 3, s3, 1.0f, 0.0f) & ct_alloc(&cw, NAM_F32, 2, s2, 1.0f, 0.0f) & ct_alloc(&co, NAM_F32, 3, s3, 1.0f, 0.0f);
        if (ok) {
            memset(&c, 0, sizeof c);
            c.x = cx.d; c.weight = cw.d; c.out = co.d;
            st = nam_conv1d(&c, &e);
            test_expect("conv1d error: out f32 with x bf16 is not implemented", st, &e, NAM_ERR_NOT_IMPLEMENTED, "out has dtype f32");
            c.weight = cw.h;
            st = nam_conv1d(&c, &e);
            test_expect("conv1d error: weight is a CPU tensor", st, &e, NAM_ERR_INVALID_ARG, "weight is a CPU tensor");
            ct_free(&cx); ct_free(&cw); ct_free(&co);
        }
    }
    nam_cuda_free(wsp, &e);
    ct_free(&x); ct_free(&dt); ct_free(&A); ct_free(&B); ct_free(&C); ct_free(&out); ct_free(&Bh); ct_free(&xs);
}

int main(void) {
    static const nam_dtype types[3] = {NAM_F32, NAM_BF16, NAM_F16};
    int i;
    if (!ct_init("test_cuda_ssd")) return 0;
    test_ssd();
    for (i = 0; i < 3; i++) {
        test_step(types[i], 1);
        test_step(types[i], 0);
        test_conv(types[i], 2, 70, 130, 4, 1, 1, 1);
        test_conv(types[i], 2, 3, 130, 4, 0, 1, 0);   /* l < w - 1: the new state keeps old slots */
    }
    test_conv(NAM_F32, 2, 70, 33, 1, 1, 0, 1);
    test_conv(NAM_BF16, 1, 9, 40, 1, 0, 0, 0);
    test_conv(NAM_F32, 2, 70, 33, 6, 1, 1, 1);        /* generic w */
    test_conv(NAM_F16, 1, 1, 200, 3, 1, 1, 1);        /* decode: l = 1 */
    test_errors();
    return test_done("test_cuda_ssd");
}
