/* tests/test_cuda_attention.c - nam_attention on CUDA tensors (nam_cuda.cuh, >>cuda-attention)
   against nam.h's CPU paths on the same storage-rounded inputs.

   Acceptance (FlashAttention's rule, tests/test_flash_attn.py), per case:
       max |gpu - ref| <= 2 * max |naive_lp - ref| + eps
   ref       nam_attention on the host tensors with an f32 `out`: NAM_BACKEND_CPU_REF (exact
             two-pass softmax in double) by default, NAM_BACKEND_CPU (fp32 flash tiling) with
             --big;
   naive_lp  the naive low-precision computation done here in plain C: scores in fp32
             (fp32 dot products of the bf16/f16 inputs, times scale), a max-subtracted fp32
             softmax, the normalised probabilities P rounded to the storage dtype before P V,
             P V accumulated in fp32, the output rounded to the storage dtype;
   eps       1e-4 for bf16, 1e-5 for f16 (|out| is at most about 1 here; the rounding step of
             the output dtype near 1 is 2^-8 for bf16, 2^-11 for f16).
   Also: rows with no visible key (bottom-right causal, sq > sk) must be exactly 0 (out
   starts as garbage), every output must be finite, d->ran must say CUDA.
   Error paths: f32 tensors, mixed dtypes, a CPU tensor among CUDA ones, head dims the
   kernel does not take (256, 40), strided and misaligned tensors, a CPU backend asked for
   CUDA tensors.

   Default shapes are small (the emulator runs them in seconds): head dims 32, 64, 96, 128,
   both dtypes, non-causal and both causal alignments, GQA (hq 4 with hk 4, 2, 1), sq < sk
   and sq > sk, ragged lengths (1, 17, 33, 47, 65, 130), b 1 and 2, scales 0 (1/sqrt(d)), 0.3
   and -0.2, peaky softmax (|q| up to 4). With the emulator's 4 SMs, (sq, b, hq) pick both
   CTA shapes: 128 query rows / 8 warps when b * hq * ceil(sq / 128) >= 8, else 64 / 4.

   Usage: test_cuda_attention          the default cases
          test_cuda_attention --big    also sq = sk = 1024, d 128, hq 16 against NAM_BACKEND_CPU,
                                       then timings (real GPUs only; 4k/8k shapes) */
#if !defined(_POSIX_C_SOURCE) && !defined(__cplusplus)
#define _POSIX_C_SOURCE 200809L /* clock_gettime, posix_memalign */
#endif
#define NAM_IMPLEMENTATION
#include "cuda_test.h"

#include <time.h>

typedef struct acase {
    nam_dtype dt;
    int b, sq, sk, hq, hk, d;
    int causal;
    nam_causal_align align;
    float scale;
    float qmag; /* q values uniform in [-qmag, qmag) */
} acase;

#define GUARD 4096 /* bytes of guard zone on either side of out */

/* keys query row i sees: [0, nvis) */
static int64_t nvis(const acase *c, int64_t i) {
    int64_t n;
    if (!c->causal) return c->sk;
    n = i + 1 + (c->align == NAM_CAUSAL_BOTTOM_RIGHT ? c->sk - c->sq : 0);
    return n < 0 ? 0 : n > c->sk ? c->sk : n;
}

/* The naive low-precision reference described at the top. */
static void naive_lp(const acase *c, const float *q, const float *k, const float *v, float *out) {
    int64_t bi, h, i, j, e, d = c->d, group = c->hq / c->hk;
    float scale = c->scale != 0.0f ? c->scale : 1.0f / sqrtf((float)d);
    float *s = (float *)malloc((size_t)c->sk * sizeof(float)), *acc = (float *)malloc((size_t)d * sizeof(float));
    for (bi = 0; bi < c->b; bi++)
        for (i = 0; i < c->sq; i++)
            for (h = 0; h < c->hq; h++) {
                const float *qr = q + ((bi * c->sq + i) * c->hq + h) * d;
                float *orow = out + ((bi * c->sq + i) * c->hq + h) * d;
                int64_t kvh = h / group, nv = nvis(c, i);
                float m = -INFINITY, l = 0.0f;
                for (e = 0; e < d; e++) acc[e] = 0.0f;
                for (j = 0; j < nv; j++) {
                    const float *kr = k + ((bi * c->sk + j) * c->hk + kvh) * d;
                    float dot = 0.0f;
                    for (e = 0; e < d; e++) dot += qr[e] * kr[e];
                    s[j] = dot * scale;
                    if (s[j] > m) m = s[j];
                }
                for (j = 0; j < nv; j++) {
                    s[j] = expf(s[j] - m);
                    l += s[j];
                }
                for (j = 0; j < nv; j++) {
                    const float *vr = v + ((bi * c->sk + j) * c->hk + kvh) * d;
                    float pj = test_round(c->dt, s[j] / l);
                    for (e = 0; e < d; e++) acc[e] += pj * vr[e];
                }
                for (e = 0; e < d; e++) orow[e] = test_round(c->dt, acc[e]);
            }
    free(s);
    free(acc);
}

static const char *align_name(const acase *c) {
    if (!c->causal) return "full";
    return c->align == NAM_CAUSAL_TOP_LEFT ? "causal-tl" : "causal-br";
}

static void case_name(const acase *c, char *buf, size_t n) {
    snprintf(buf, n, "attention %s d%d b%d sq%d sk%d hq%d hk%d %s scale %g |q| %g", nam_dtype_name(c->dt), c->d, c->b, c->sq, c->sk, c->hq, c->hk,
             align_name(c), (double)c->scale, (double)c->qmag);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One case: GPU vs ref vs naive_lp. ref_be: NAM_BACKEND_CPU_REF or NAM_BACKEND_CPU. */
static void run_case(const acase *c, nam_backend ref_be) {
    int64_t qsh[4] = {c->b, c->sq, c->hq, c->d}, ksh[4] = {c->b, c->sk, c->hk, c->d};
    int64_t n = (int64_t)c->b * c->sq * c->hq * c->d, i, r, e;
    ct_pair q, k, v, o;
    nam_attention_desc d;
    nam_error err;
    nam_status st;
    size_t wsb = 1;
    char name[256], desc[512];
    float *ref = NULL, *naive = NULL, *gpu = NULL, *qf = NULL, *kf = NULL, *vf = NULL;
    const void *gpu_raw = NULL;
    void *ws = NULL;
    double err_gpu = 0.0, err_naive = 0.0, eps = c->dt == NAM_BF16 ? 1e-4 : 1e-5, maxref = 0.0;
    int64_t nonfinite = 0, nonzero_masked = 0, masked_rows = 0, guard_hits = 0;
    unsigned char *guarded = NULL;
    void *gdev = NULL;

    case_name(c, name, sizeof name);
    if (!ct_alloc(&q, c->dt, 4, qsh, c->qmag, 0.0f)) return;
    if (!ct_alloc(&k, c->dt, 4, ksh, 1.0f, 0.0f)) return;
    if (!ct_alloc(&v, c->dt, 4, ksh, 1.0f, 0.0f)) return;
    if (!ct_alloc(&o, c->dt, 4, qsh, 1.0f, 7.0f)) return; /* garbage: rows with no key must be overwritten */
    /* out sits between two guard zones of GUARD bytes that must stay untouched */
    guarded = (unsigned char *)malloc(o.bytes + 2 * GUARD);
    memset(guarded, 0x5a, GUARD);
    memcpy(guarded + GUARD, o.h.data, o.bytes);
    memset(guarded + GUARD + o.bytes, 0x5a, GUARD);
    if (nam_cuda_malloc(&gdev, o.bytes + 2 * GUARD, &err) != NAM_OK ||
        nam_cuda_memcpy(gdev, guarded, o.bytes + 2 * GUARD, NAM_CUDA_H2D, NULL, &err) != NAM_OK) {
        test_fail("%s: %s", "device allocation", err.message);
        goto done;
    }

    memset(&d, 0, sizeof d);
    d.q = q.d;
    d.k = k.d;
    d.v = v.d;
    d.out = nam_tensor_cuda((char *)gdev + GUARD, c->dt, 4, qsh);
    d.causal = c->causal;
    d.align = c->align;
    d.scale = c->scale;
    st = nam_attention_workspace_size(&d, &wsb, &err);
    if (st != NAM_OK || wsb != 0) {
        snprintf(desc, sizeof desc, "%s: workspace size", name);
        test_fail("%s: %s", desc, st != NAM_OK ? err.message : "nonzero workspace");
        goto done;
    }
    st = nam_attention(&d, NULL, 0, &err);
    if (st != NAM_OK || d.ran != NAM_BACKEND_CUDA) {
        snprintf(desc, sizeof desc, "%s: run", name);
        test_fail("%s: %s", desc, st != NAM_OK ? err.message : "ran is not NAM_BACKEND_CUDA");
        goto done;
    }
    if (nam_cuda_sync(NULL, &err) != NAM_OK || nam_cuda_memcpy(guarded, gdev, o.bytes + 2 * GUARD, NAM_CUDA_D2H, NULL, &err) != NAM_OK) {
        test_fail("%s: %s", "download", err.message);
        goto done;
    }
    gpu_raw = guarded + GUARD;
    for (i = 0; i < GUARD; i++)
        if (guarded[i] != 0x5a || guarded[GUARD + o.bytes + i] != 0x5a) guard_hits++;

    /* reference on the host tensors, f32 out */
    ref = (float *)malloc((size_t)n * sizeof(float));
    {
        nam_attention_desc h;
        memset(&h, 0, sizeof h);
        h.q = q.h;
        h.k = k.h;
        h.v = v.h;
        h.out = nam_tensor_make(ref, NAM_F32, 4, qsh);
        h.causal = c->causal;
        h.align = c->align;
        h.scale = c->scale;
        h.backend = ref_be;
        if (nam_attention_workspace_size(&h, &wsb, &err) != NAM_OK || posix_memalign(&ws, 64, wsb ? wsb : 64) != 0 ||
            nam_attention(&h, ws, wsb, &err) != NAM_OK) {
            snprintf(desc, sizeof desc, "%s: CPU reference", name);
            test_fail("%s: %s", desc, err.message);
            goto done;
        }
    }
    qf = test_to_f32(&q.h);
    kf = test_to_f32(&k.h);
    vf = test_to_f32(&v.h);
    naive = (float *)malloc((size_t)n * sizeof(float));
    naive_lp(c, qf, kf, vf, naive);
    gpu = (float *)malloc((size_t)n * sizeof(float));
    for (i = 0; i < n; i++) gpu[i] = nam__load(gpu_raw, c->dt, i);

    for (i = 0; i < n; i++) {
        double dg = fabs((double)gpu[i] - ref[i]), dn = fabs((double)naive[i] - ref[i]);
        if (!(gpu[i] - gpu[i] == 0.0f)) nonfinite++;
        if (!(dg <= err_gpu)) err_gpu = dg; /* NaN propagates */
        if (dn > err_naive) err_naive = dn;
        if (fabs(ref[i]) > maxref) maxref = fabs(ref[i]);
    }
    for (r = 0; r < (int64_t)c->b * c->sq; r++)
        if (nvis(c, r % c->sq) == 0) {
            masked_rows++;
            for (e = 0; e < (int64_t)c->hq * c->d; e++)
                if (gpu[r * c->hq * c->d + e] != 0.0f) nonzero_masked++;
        }
    snprintf(desc, sizeof desc, "%s: max err %.3g, limit 2 * naive %.3g + %.0e (max |ref| %.3g)%s", name, err_gpu, err_naive, eps, maxref,
             masked_rows ? ", rows without keys are 0" : "");
    CHECK(nonfinite == 0 && nonzero_masked == 0 && guard_hits == 0 && err_gpu <= 2.0 * err_naive + eps, desc,
             "max err %.4g, naive err %.4g, limit %.4g, %lld non-finite outputs, %lld nonzero values in %lld rows that see no key, %lld bytes written "
             "outside out",
             err_gpu, err_naive, 2.0 * err_naive + eps, (long long)nonfinite, (long long)nonzero_masked, (long long)masked_rows, (long long)guard_hits);

done:
    free(ref);
    free(naive);
    free(gpu);
    free(guarded);
    if (gdev) nam_cuda_free(gdev, &err);
    free(qf);
    free(kf);
    free(vf);
    free(ws);
    ct_free(&q);
    ct_free(&k);
    ct_free(&v);
    ct_free(&o);
}

/* ---- error paths ------------------------------------------------------------------------- */

static void test_errors(void) {
    int64_t sh[4] = {1, 5, 2, 64}, sh256[4] = {1, 5, 2, 256}, sh40[4] = {1, 5, 2, 40}, big[4] = {1, 5, 4, 64};
    ct_pair q, k, v, o, qf32, kf32, vf32, of32, kh16, q256, k256, o256, q40, k40, o40, qbig;
    nam_attention_desc d, base;
    nam_error e;
    size_t wsb = 7;

    if (!ct_alloc(&q, NAM_BF16, 4, sh, 1, 0) || !ct_alloc(&k, NAM_BF16, 4, sh, 1, 0) || !ct_alloc(&v, NAM_BF16, 4, sh, 1, 0) ||
        !ct_alloc(&o, NAM_BF16, 4, sh, 1, 0) || !ct_alloc(&qf32, NAM_F32, 4, sh, 1, 0) || !ct_alloc(&kf32, NAM_F32, 4, sh, 1, 0) ||
        !ct_alloc(&vf32, NAM_F32, 4, sh, 1, 0) || !ct_alloc(&of32, NAM_F32, 4, sh, 1, 0) || !ct_alloc(&kh16, NAM_F16, 4, sh, 1, 0) ||
        !ct_alloc(&q256, NAM_BF16, 4, sh256, 1, 0) || !ct_alloc(&k256, NAM_BF16, 4, sh256, 1, 0) || !ct_alloc(&o256, NAM_BF16, 4, sh256, 1, 0) ||
        !ct_alloc(&q40, NAM_BF16, 4, sh40, 1, 0) || !ct_alloc(&k40, NAM_BF16, 4, sh40, 1, 0) || !ct_alloc(&o40, NAM_BF16, 4, sh40, 1, 0) ||
        !ct_alloc(&qbig, NAM_BF16, 4, big, 1, 0))
        return;
    memset(&base, 0, sizeof base);
    base.q = q.d;
    base.k = k.d;
    base.v = v.d;
    base.out = o.d;
    base.causal = 1;

    d = base;
    test_expect("attention errors: the base call runs", nam_attention(&d, NULL, 0, &e), &e, NAM_OK, NULL);

    d = base;
    d.q = qf32.d, d.k = kf32.d, d.v = vf32.d, d.out = of32.d;
    test_expect("attention errors: f32 tensors -> NOT_IMPLEMENTED naming q", nam_attention(&d, NULL, 0, &e), &e, NAM_ERR_NOT_IMPLEMENTED, "q has dtype f32");
    test_expect("attention errors: workspace size of f32 tensors -> NOT_IMPLEMENTED", nam_attention_workspace_size(&d, &wsb, &e), &e, NAM_ERR_NOT_IMPLEMENTED, "q has dtype f32");
    d = base;
    d.out = of32.d;
    test_expect("attention errors: f32 out -> NOT_IMPLEMENTED naming out", nam_attention(&d, NULL, 0, &e), &e, NAM_ERR_NOT_IMPLEMENTED, "out has dtype f32");
    d = base;
    d.k = kh16.d;
    test_expect("attention errors: mixed bf16/f16 -> NOT_IMPLEMENTED naming k", nam_attention(&d, NULL, 0, &e), &e, NAM_ERR_NOT_IMPLEMENTED, "k has dtype f16 but q has bf16");

    d = base;
    d.k = k.h; /* a CPU tensor among CUDA ones: nam.h refuses */
    test_expect("attention errors: CPU k with CUDA q -> INVALID_ARG", nam_attention(&d, NULL, 0, &e), &e, NAM_ERR_INVALID_ARG, "k is a CPU tensor");
    d = base;
    d.q = q.h;
    test_expect("attention errors: CPU q with CUDA k -> INVALID_ARG", nam_attention(&d, NULL, 0, &e), &e, NAM_ERR_INVALID_ARG, "k is a CUDA tensor");
    d = base;
    d.backend = NAM_BACKEND_CPU_REF;
    test_expect("attention errors: backend cpu_ref with CUDA tensors -> INVALID_ARG", nam_attention(&d, NULL, 0, &e), &e, NAM_ERR_INVALID_ARG, "cannot run on CUDA tensors");

    d = base;
    d.q = q256.d, d.k = k256.d, d.v = k256.d, d.out = o256.d;
    test_expect("attention errors: head dim 256 -> NOT_IMPLEMENTED naming d", nam_attention(&d, NULL, 0, &e), &e, NAM_ERR_NOT_IMPLEMENTED, "(d) = 256");
    test_expect("attention errors: workspace size, head dim 256 -> NOT_IMPLEMENTED", nam_attention_workspace_size(&d, &wsb, &e), &e, NAM_ERR_NOT_IMPLEMENTED, "(d) = 256");
    d = base;
    d.q = q40.d, d.k = k40.d, d.v = k40.d, d.out = o40.d;
    test_expect("attention errors: head dim 40 -> NOT_IMPLEMENTED naming d", nam_attention(&d, NULL, 0, &e), &e, NAM_ERR_NOT_IMPLEMENTED, "(d) = 40");

    /* q as a strided view: heads 0..1 of a (1, 5, 4, 64) tensor */
    d = base;
    d.q = qbig.d;
    d.q.shape[2] = 2;
    d.q.stride[0] = 5 * 4 * 64, d.q.stride[1] = 4 * 64, d.q.stride[2] = 64, d.q.stride[3] = 1;
    test_expect("attention errors: strided q -> NOT_IMPLEMENTED naming the stride", nam_attention(&d, NULL, 0, &e), &e, NAM_ERR_NOT_IMPLEMENTED, "q.stride[1]");
    /* misaligned data: v starts 4 elements (8 bytes) into a buffer */
    d = base;
    d.v = qbig.d;
    d.v.shape[2] = 2;
    d.v.data = (char *)qbig.d.data + 8;
    test_expect("attention errors: misaligned v -> NOT_IMPLEMENTED naming v", nam_attention(&d, NULL, 0, &e), &e, NAM_ERR_NOT_IMPLEMENTED, "v.data");

    d = base;
    wsb = 7;
    CHECK(nam_attention_workspace_size(&d, &wsb, &e) == NAM_OK && wsb == 0, "attention errors: workspace size is 0", "message \"%s\", %zu bytes", e.message, wsb);

    ct_free(&q), ct_free(&k), ct_free(&v), ct_free(&o), ct_free(&qf32), ct_free(&kf32), ct_free(&vf32), ct_free(&of32), ct_free(&kh16);
    ct_free(&q256), ct_free(&k256), ct_free(&o256), ct_free(&q40), ct_free(&k40), ct_free(&o40), ct_free(&qbig);
}

/* ---- timings (--big, real GPUs) ------------------------------------------------------------ */
static void bench(nam_dtype dt, int b, int s, int h, int dd, int causal) {
    int64_t sh[4] = {b, s, h, dd};
    ct_pair q, k, v, o;
    nam_attention_desc d;
    nam_error e;
    double t0, t1, flops;
    int it, reps = 20;
    if (!ct_alloc(&q, dt, 4, sh, 1, 0) || !ct_alloc(&k, dt, 4, sh, 1, 0) || !ct_alloc(&v, dt, 4, sh, 1, 0) || !ct_alloc(&o, dt, 4, sh, 1, 0)) return;
    memset(&d, 0, sizeof d);
    d.q = q.d, d.k = k.d, d.v = v.d, d.out = o.d, d.causal = causal;
    for (it = 0; it < 3; it++)
        if (nam_attention(&d, NULL, 0, &e) != NAM_OK) break;
    nam_cuda_sync(NULL, &e);
    t0 = now_s();
    for (it = 0; it < reps; it++)
        if (nam_attention(&d, NULL, 0, &e) != NAM_OK) break;
    if (nam_cuda_sync(NULL, &e) != NAM_OK || it < reps) {
        test_fail("%s: %s", "attention bench", e.message);
    } else {
        t1 = now_s();
        flops = 4.0 * b * (double)s * s * h * dd * (causal ? 0.5 : 1.0);
        printf("# bench attention %s d%d b%d s%d h%d %s: %.3f ms, %.1f TFLOP/s (4 b s^2 h d%s)\n", nam_dtype_name(dt), dd, b, s, h,
               causal ? "causal" : "full", 1e3 * (t1 - t0) / reps, flops * reps / (t1 - t0) * 1e-12, causal ? " / 2" : "");
    }
    ct_free(&q), ct_free(&k), ct_free(&v), ct_free(&o);
}

int main(int argc, char **argv) {
    static const acase cases[] = {
        /* dt        b  sq   sk   hq hk  d    causal align                   scale  |q| */
        {NAM_BF16, 2, 65, 65, 4, 2, 64, 0, NAM_CAUSAL_BOTTOM_RIGHT, 0.0f, 1.0f},
        {NAM_F16, 2, 130, 130, 4, 4, 64, 1, NAM_CAUSAL_BOTTOM_RIGHT, 0.0f, 1.0f},
        {NAM_BF16, 2, 17, 130, 4, 1, 128, 1, NAM_CAUSAL_BOTTOM_RIGHT, 0.0f, 1.0f},
        {NAM_F16, 1, 130, 17, 2, 1, 128, 1, NAM_CAUSAL_BOTTOM_RIGHT, 0.0f, 1.0f}, /* rows 0..112 see no key */
        {NAM_BF16, 2, 130, 65, 4, 2, 128, 1, NAM_CAUSAL_TOP_LEFT, 0.0f, 1.0f},
        {NAM_F16, 2, 65, 130, 4, 2, 128, 1, NAM_CAUSAL_TOP_LEFT, 0.0f, 1.0f},
        {NAM_BF16, 1, 1, 130, 4, 1, 128, 1, NAM_CAUSAL_BOTTOM_RIGHT, 0.0f, 1.0f}, /* decode */
        {NAM_F16, 1, 65, 1, 2, 2, 64, 0, NAM_CAUSAL_BOTTOM_RIGHT, 0.0f, 1.0f},
        {NAM_BF16, 1, 65, 130, 2, 1, 64, 1, NAM_CAUSAL_BOTTOM_RIGHT, -0.2f, 1.0f},
        {NAM_F16, 2, 130, 65, 4, 2, 64, 1, NAM_CAUSAL_BOTTOM_RIGHT, 0.3f, 4.0f}, /* sq > sk: rows 0..64 see no key */
        {NAM_BF16, 1, 130, 130, 2, 2, 128, 1, NAM_CAUSAL_BOTTOM_RIGHT, 0.0f, 3.0f},
        {NAM_F16, 1, 130, 130, 1, 1, 128, 0, NAM_CAUSAL_BOTTOM_RIGHT, 0.0f, 3.0f},
        {NAM_BF16, 1, 33, 47, 2, 1, 32, 1, NAM_CAUSAL_BOTTOM_RIGHT, 0.0f, 1.0f},
        {NAM_F16, 1, 47, 33, 2, 2, 96, 0, NAM_CAUSAL_BOTTOM_RIGHT, 0.0f, 1.0f},
        {NAM_BF16, 1, 1, 1, 1, 1, 128, 1, NAM_CAUSAL_BOTTOM_RIGHT, 0.0f, 1.0f},
    };
    static const acase big[] = {
        {NAM_BF16, 1, 1024, 1024, 16, 16, 128, 1, NAM_CAUSAL_BOTTOM_RIGHT, 0.0f, 1.0f},
        {NAM_F16, 1, 1024, 1024, 16, 4, 128, 0, NAM_CAUSAL_BOTTOM_RIGHT, 0.0f, 1.0f},
        {NAM_BF16, 2, 1024, 1000, 16, 2, 128, 1, NAM_CAUSAL_TOP_LEFT, 0.0f, 1.0f},
        {NAM_F16, 2, 1000, 1024, 16, 8, 64, 1, NAM_CAUSAL_BOTTOM_RIGHT, 0.0f, 1.0f},
    };
    int i, want_big = argc > 1 && strcmp(argv[1], "--big") == 0;
    double t0;
    if (!ct_init("attention (CUDA)")) return 0;
    t0 = now_s();
    test_errors();
    for (i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) run_case(&cases[i], NAM_BACKEND_CPU_REF);
    printf("# default cases: %.1f s\n", now_s() - t0);
    if (want_big) {
        if (nam_cuda_emulated()) {
            test_skip("attention --big: the emulator is too slow for these shapes");
        } else {
            for (i = 0; i < (int)(sizeof big / sizeof big[0]); i++) run_case(&big[i], NAM_BACKEND_CPU);
            /* FlashAttention's benchmark shapes: 16k tokens, hidden 2048 */
            bench(NAM_BF16, 4, 4096, 16, 128, 1);
            bench(NAM_BF16, 4, 4096, 16, 128, 0);
            bench(NAM_BF16, 2, 8192, 16, 128, 1);
            bench(NAM_F16, 4, 4096, 16, 128, 1);
            bench(NAM_BF16, 4, 4096, 32, 64, 1);
            bench(NAM_BF16, 16, 1024, 16, 128, 1);
        }
    }
    return test_done("test_cuda_attention");
}
