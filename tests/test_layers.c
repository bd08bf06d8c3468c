/* tests/test_layers.c - the layer ops around the blocks (nam.h >>kernel-layers): nam_rmsnorm,
   nam_rope, nam_embedding, nam_swiglu, nam_cross_entropy (each against its definition in
   double, written here).

   Oracles:
     - a double reference written here from the definition, per row and group:
         g = x (or x * z / (1 + exp(-z)) when gated), out = g / sqrt(mean_group(g^2) + eps) * w,
       on the same storage-rounded inputs;
     - a case computed by hand (n = 2, known numbers), both backends;
     - rope: the rotation written here from its definition in double, per element; a hand case
       (theta = 1 rad); a sequence at once == one position at a time with pos_offset;
     - tests/xcheck_layers.py: torch float64 from the same equations (build/test_layers --dump).
   Tolerances, with scale = max |reference|:
     cpu-ref (double inside, one rounding to the storage type): |got - ref| <= 1.01 u |ref|, u the
       unit roundoff of the storage type (2^-24 f32, 2^-11 f16, 2^-8 bf16), plus 2^-25 absolute
       for f16 (half the spacing of its subnormals, below 2^-14).
     cpu (fp32 arithmetic): |got - ref| <= 8 * 2^-24 * |ref| + 2^-24 * scale in f32 (a handful of
       fp32 roundings per element: silu's expf and divide, the product, the scale; the sum of
       squares is in double); bf16/f16 storage: 1.01 u |ref| + 8 * 2^-24 * scale.
   Output (tests/test.h): one line per check; last line "test_layers: N passed, M failed". */
#define NAM_IMPLEMENTATION
#include "test.h"

typedef struct rn_case {
    const char *name;
    int64_t t, n, group_size;
    int gated, weighted, threads;
    float eps;
    nam_dtype dt;
    int strided;   /* x and out with a row stride of n + 3 */
    float amp;     /* x ~ amp U(-1, 1) */
} rn_case;

/* the double reference on storage-rounded inputs (xf, zf, wf as f32 values) */
static void rn_ref(const rn_case *c, const float *xf, const float *zf, const float *wf, double *ref) {
    int64_t r, g0, j, gs = c->group_size ? c->group_size : c->n;
    double eps = c->eps != 0.0f ? (double)c->eps : 1e-5;
    for (r = 0; r < c->t; r++)
        for (g0 = 0; g0 < c->n; g0 += gs) {
            double ss = 0.0, inv;
            for (j = g0; j < g0 + gs; j++) {
                double g = xf[r * c->n + j];
                if (zf) g *= (double)zf[r * c->n + j] / (1.0 + exp(-(double)zf[r * c->n + j]));
                ref[r * c->n + j] = g;
                ss += g * g;
            }
            inv = 1.0 / sqrt(ss / (double)gs + eps);
            for (j = g0; j < g0 + gs; j++) ref[r * c->n + j] *= inv * (wf ? (double)wf[j] : 1.0);
        }
}

static double ulp_rel(nam_dtype dt) { return dt == NAM_BF16 ? ldexp(1.0, -8) : dt == NAM_F16 ? ldexp(1.0, -11) : ldexp(1.0, -24); }
/* the absolute part of one rounding: f16 below 2^-14 is subnormal, spaced 2^-24 apart */
static double sub_abs(nam_dtype dt) { return dt == NAM_F16 ? ldexp(1.0, -25) : 0.0; }

typedef struct rn_bufs {
    void *x, *z, *w, *out;
    float *xf, *zf, *wf;
    int64_t ld;
    nam_rmsnorm_desc d;
} rn_bufs;

static void rn_make(const rn_case *c, rn_bufs *b) {
    int64_t i, j;
    memset(b, 0, sizeof *b);
    b->ld = c->n + (c->strided ? 3 : 0);
    b->x = test_alloc((size_t)(c->t * b->ld) * test_esize(c->dt));
    b->out = test_alloc((size_t)(c->t * b->ld) * test_esize(c->dt));
    b->xf = (float *)test_alloc(sizeof(float) * (size_t)(c->t * c->n));
    for (i = 0; i < c->t; i++)
        for (j = 0; j < c->n; j++) {
            float v = test_round(c->dt, c->amp * test_rand());
            b->xf[i * c->n + j] = v;
            nam__store(b->x, c->dt, i * b->ld + j, v);
        }
    b->d.x = test_tensor(b->x, c->dt, 2, c->t, c->n, 0, 0);
    b->d.out = test_tensor(b->out, c->dt, 2, c->t, c->n, 0, 0);
    if (c->strided) { b->d.x.stride[0] = b->ld; b->d.x.stride[1] = 1; b->d.out.stride[0] = b->ld; b->d.out.stride[1] = 1; }
    if (c->gated) {
        b->zf = (float *)test_alloc(sizeof(float) * (size_t)(c->t * c->n));
        b->z = test_alloc((size_t)(c->t * c->n) * test_esize(c->dt));
        for (i = 0; i < c->t * c->n; i++) { b->zf[i] = test_round(c->dt, 4.0f * test_rand()); nam__store(b->z, c->dt, i, b->zf[i]); }
        b->d.z = test_tensor(b->z, c->dt, 2, c->t, c->n, 0, 0);
    }
    if (c->weighted) {
        b->wf = (float *)test_alloc(sizeof(float) * (size_t)c->n);
        b->w = test_alloc((size_t)c->n * test_esize(c->dt));
        for (i = 0; i < c->n; i++) { b->wf[i] = test_round(c->dt, 1.0f + 0.5f * test_rand()); nam__store(b->w, c->dt, i, b->wf[i]); }
        b->d.weight = test_tensor(b->w, c->dt, 1, c->n, 0, 0, 0);
    }
    b->d.group_size = c->group_size;
    b->d.eps = c->eps;
}

static void rn_free(rn_bufs *b) { free(b->x); free(b->z); free(b->w); free(b->out); free(b->xf); free(b->zf); free(b->wf); }

static nam_status rn_run(nam_rmsnorm_desc *d, nam_backend be, int threads, nam_error *e) {
    d->backend = be;
    d->threads = threads;
    return nam_rmsnorm(d, e);
}

/* both backends against the double reference, element by element */
static void rn_check(const rn_case *c) {
    rn_bufs b;
    double *ref, scale = 0.0;
    int64_t i, j;
    int be;
    rn_make(c, &b);
    ref = (double *)test_alloc(sizeof(double) * (size_t)(c->t * c->n));
    rn_ref(c, b.xf, b.zf, b.wf, ref);
    for (i = 0; i < c->t * c->n; i++) scale = fmax(scale, fabs(ref[i]));
    for (be = NAM_BACKEND_CPU_REF; be <= NAM_BACKEND_CPU; be++) {
        nam_error e;
        nam_status st;
        char desc[256];
        double worst = 0.0, u = ulp_rel(c->dt);
        int64_t at = 0;
        snprintf(desc, sizeof desc, "rmsnorm %s [%s]", c->name, nam_backend_name((nam_backend)be));
        memset(b.out, 0xff, (size_t)(c->t * b.ld) * test_esize(c->dt));   /* NaN: every element must be written */
        st = rn_run(&b.d, (nam_backend)be, c->threads, &e);
        if (!test_ran(desc, "rmsnorm", st, &e, b.d.ran, (nam_backend)be)) continue;
        for (i = 0; i < c->t; i++)
            for (j = 0; j < c->n; j++) {
                double r = ref[i * c->n + j], got = nam__load(b.out, c->dt, i * b.ld + j), tol;
                if (be == NAM_BACKEND_CPU_REF) tol = 1.01 * u * fabs(r) + sub_abs(c->dt);
                else tol = c->dt == NAM_F32 ? 8.0 * u * fabs(r) + u * scale : 1.01 * u * fabs(r) + ldexp(1.0, -24) * 8.0 * scale + sub_abs(c->dt);
                if (!(fabs(got - r) <= tol * (1.0 + 1e-12) + 1e-300)) {
                    double q = fabs(got - r) / (tol + 1e-300);
                    if (!(q <= worst)) { worst = q; at = i * c->n + j; }
                }
            }
        if (worst == 0.0) test_ok("%s: every element within its bound", desc);
        else test__fail_why(desc, "element %lld (row %lld) is %.3g x its bound (got %.9g, ref %.9g)", (long long)at, (long long)(at / c->n), worst,
                            (double)nam__load(b.out, c->dt, (at / c->n) * b.ld + at % c->n), ref[at]);
        if (c->strided) {   /* the gap between rows is not written */
            int kept = 1;
            for (i = 0; i < c->t && kept; i++)
                for (j = c->n; j < b.ld; j++) {
                    float v = nam__load(b.out, c->dt, i * b.ld + j);
                    if (v == v) kept = 0;
                }
            test_check(kept, test_fmt("%s: the row gaps of a strided out are left alone", desc), "a gap element was written");
        }
    }
    free(ref);
    rn_free(&b);
}

/* n = 2 by hand: x = (3, 4), mean square 12.5, eps 0.5 -> rms sqrt(13) */
static void rn_by_hand(void) {
    float x[2] = {3.0f, 4.0f}, w[2] = {2.0f, -1.0f}, out[2];
    int be;
    for (be = NAM_BACKEND_CPU_REF; be <= NAM_BACKEND_CPU; be++) {
        nam_rmsnorm_desc d;
        nam_error e;
        double want0 = 3.0 / sqrt(13.0) * 2.0, want1 = -4.0 / sqrt(13.0);
        memset(&d, 0, sizeof d);
        d.x = test_tensor(x, NAM_F32, 2, 1, 2, 0, 0);
        d.weight = test_tensor(w, NAM_F32, 1, 2, 0, 0, 0);
        d.out = test_tensor(out, NAM_F32, 2, 1, 2, 0, 0);
        d.eps = 0.5f;
        d.backend = (nam_backend)be;
        CHECK(nam_rmsnorm(&d, &e) == NAM_OK && fabs(out[0] - want0) <= 2e-7 * fabs(want0) && fabs(out[1] - want1) <= 2e-7 * fabs(want1),
              test_fmt("rmsnorm by hand: x (3, 4), w (2, -1), eps 0.5 -> (6, -4) / sqrt(13) [%s]", nam_backend_name((nam_backend)be)),
              "got (%.9g, %.9g), want (%.9g, %.9g): %s", (double)out[0], (double)out[1], want0, want1, e.message);
    }
}

/* in place (out = x) equals out of place */
static void rn_in_place(void) {
    rn_case c = {"in place", 5, 48, 16, 1, 1, 2, 0.0f, NAM_F32, 0, 2.0f};
    rn_bufs b;
    nam_error e;
    float *sep;
    int64_t i, n = c.t * c.n;
    int same = 1;
    rn_make(&c, &b);
    rn_run(&b.d, NAM_BACKEND_CPU, 2, &e);
    sep = (float *)test_alloc(sizeof(float) * (size_t)n);
    memcpy(sep, b.out, sizeof(float) * (size_t)n);
    b.d.out = b.d.x;
    CHECK(rn_run(&b.d, NAM_BACKEND_CPU, 2, &e) == NAM_OK, "rmsnorm: out = x (in place) runs", "%s", e.message);
    for (i = 0; i < n; i++) same &= ((float *)b.x)[i] == sep[i];
    test_check(same, "rmsnorm: in place (out = x) gives the out-of-place result bit for bit", "a value differs");
    free(sep);
    rn_free(&b);
}

/* threads: 1, 3 and 64 threads give the same bits (rows are independent) */
static void rn_threads(void) {
    rn_case c = {"threads", 37, 40, 8, 1, 1, 1, 1e-6f, NAM_F32, 0, 1.0f};
    rn_bufs b;
    nam_error e;
    float *one;
    int64_t n = c.t * c.n;
    int th[2] = {3, 64}, k;
    rn_make(&c, &b);
    rn_run(&b.d, NAM_BACKEND_CPU, 1, &e);
    one = (float *)test_alloc(sizeof(float) * (size_t)n);
    memcpy(one, b.out, sizeof(float) * (size_t)n);
    for (k = 0; k < 2; k++) {
        memset(b.out, 0, sizeof(float) * (size_t)n);
        CHECK(rn_run(&b.d, NAM_BACKEND_CPU, th[k], &e) == NAM_OK && !memcmp(one, b.out, sizeof(float) * (size_t)n),
              test_fmt("rmsnorm: %d threads give the 1-thread bits (37 rows)", th[k]), "differs or failed: %s", e.message);
    }
    free(one);
    rn_free(&b);
}

static void rn_bad(void) {
    float x[12], z[12], w[6], out[12], o2[6];
    nam_rmsnorm_desc base, d;
    nam_error e;
    memset(x, 0, sizeof x); memset(z, 0, sizeof z); memset(w, 0, sizeof w);
    memset(&base, 0, sizeof base);
    base.x = test_tensor(x, NAM_F32, 2, 2, 6, 0, 0);
    base.z = test_tensor(z, NAM_F32, 2, 2, 6, 0, 0);
    base.weight = test_tensor(w, NAM_F32, 1, 6, 0, 0, 0);
    base.out = test_tensor(out, NAM_F32, 2, 2, 6, 0, 0);
    base.backend = NAM_BACKEND_CPU;
    d = base; test_expect("rmsnorm bad: NULL desc", nam_rmsnorm(NULL, &e), &e, NAM_ERR_INVALID_ARG, "desc is NULL");
    d = base; d.x.data = NULL; test_expect("rmsnorm bad: no x", nam_rmsnorm(&d, &e), &e, NAM_ERR_INVALID_ARG, "x: data is NULL");
    d = base; d.x.ndim = 3; d.x.shape[2] = 1; test_expect("rmsnorm bad: x 3-d", nam_rmsnorm(&d, &e), &e, NAM_ERR_INVALID_ARG, "x: 3 dimensions, expected 2");
    d = base; d.z.shape[1] = 3; test_expect("rmsnorm bad: z n", nam_rmsnorm(&d, &e), &e, NAM_ERR_INVALID_ARG, "z.shape[1] (n) = 3, but x.shape[1] = 6");
    d = base; d.z.shape[0] = 1; test_expect("rmsnorm bad: z t", nam_rmsnorm(&d, &e), &e, NAM_ERR_INVALID_ARG, "z.shape[0] (t) = 1, but x.shape[0] = 2");
    d = base; d.weight.shape[0] = 5; test_expect("rmsnorm bad: weight n", nam_rmsnorm(&d, &e), &e, NAM_ERR_INVALID_ARG, "weight.shape[0] (n) = 5");
    d = base; d.out = test_tensor(o2, NAM_F32, 2, 1, 6, 0, 0); test_expect("rmsnorm bad: out t", nam_rmsnorm(&d, &e), &e, NAM_ERR_INVALID_ARG, "out.shape[0] (t) = 1");
    d = base; d.group_size = 4; test_expect("rmsnorm bad: group 4 of n 6", nam_rmsnorm(&d, &e), &e, NAM_ERR_INVALID_ARG, "group_size = 4 does not divide n = x.shape[1] = 6");
    d = base; d.group_size = -2; test_expect("rmsnorm bad: negative group", nam_rmsnorm(&d, &e), &e, NAM_ERR_INVALID_ARG, "group_size = -2");
    d = base; d.group_size = 12; test_expect("rmsnorm bad: group above n", nam_rmsnorm(&d, &e), &e, NAM_ERR_INVALID_ARG, "group_size = 12");
    d = base; d.eps = -1e-6f; test_expect("rmsnorm bad: negative eps", nam_rmsnorm(&d, &e), &e, NAM_ERR_INVALID_ARG, "eps = -1e-06 is not a finite value >= 0");
    d = base; d.eps = NAN; test_expect("rmsnorm bad: NaN eps", nam_rmsnorm(&d, &e), &e, NAM_ERR_INVALID_ARG, "is not a finite value >= 0");
    d = base; d.eps = INFINITY; test_expect("rmsnorm bad: infinite eps", nam_rmsnorm(&d, &e), &e, NAM_ERR_INVALID_ARG, "eps = inf");
    d = base; d.x.dtype = NAM_I32; test_expect("rmsnorm bad: x i32", nam_rmsnorm(&d, &e), &e, NAM_ERR_INVALID_ARG, "x: dtype i32 is not a float storage type");
#ifdef NAM_CUDA
    d = base; d.backend = NAM_BACKEND_CUDA; test_expect("rmsnorm bad: CUDA backend for CPU tensors", nam_rmsnorm(&d, &e), &e, NAM_ERR_INVALID_ARG, "nam_rmsnorm: backend cuda needs CUDA tensors");
#else
    d = base; d.backend = NAM_BACKEND_CUDA; test_expect("rmsnorm bad: CUDA backend, not built", nam_rmsnorm(&d, &e), &e, NAM_ERR_NOT_IMPLEMENTED, "nam_rmsnorm: the CUDA backend is not built");
#endif
    d = base; d.backend = (nam_backend)77; test_expect("rmsnorm bad: backend 77", nam_rmsnorm(&d, &e), &e, NAM_ERR_INVALID_ARG, "backend 77 is not a nam_backend");
    d = base; d.weight.device = NAM_DEVICE_CUDA;
#ifdef NAM_CUDA
    test_expect("rmsnorm bad: weight on another device", nam_rmsnorm(&d, &e), &e, NAM_ERR_INVALID_ARG, "weight is a CUDA tensor, but x is a CPU tensor");
#else
    test_expect("rmsnorm bad: a CUDA tensor without NAM_CUDA", nam_rmsnorm(&d, &e), &e, NAM_ERR_NOT_IMPLEMENTED, "weight is a CUDA tensor, but the CUDA backend is not built");
#endif
}

static const rn_case cases[] = {
    {"plain f32 t7 n64", 7, 64, 0, 0, 1, 2, 0.0f, NAM_F32, 0, 1.0f},
    {"no weight, n1", 5, 1, 0, 0, 0, 1, 0.0f, NAM_F32, 0, 1.0f},
    {"gated, 4 groups of 16", 9, 64, 16, 1, 1, 3, 0.0f, NAM_F32, 0, 2.0f},
    {"gated, groups of 1 (each element alone)", 3, 10, 1, 1, 1, 2, 1e-3f, NAM_F32, 0, 1.0f},
    {"NAM56R M-block norm: n 512 in 8 groups, gated", 6, 512, 64, 1, 1, 2, 0.0f, NAM_F32, 0, 1.0f},
    {"tiny inputs (eps dominates)", 4, 32, 0, 0, 1, 1, 1e-5f, NAM_F32, 0, 1e-4f},
    {"large inputs (1e15)", 4, 32, 8, 1, 1, 1, 0.0f, NAM_F32, 0, 1e15f},
    {"bf16 storage, gated, groups 32", 8, 96, 32, 1, 1, 2, 0.0f, NAM_BF16, 0, 3.0f},
    {"f16 storage", 8, 80, 0, 0, 1, 2, 0.0f, NAM_F16, 0, 3.0f},
    {"strided rows (x, out row stride n + 3)", 6, 24, 12, 1, 1, 2, 0.0f, NAM_F32, 1, 1.0f},
    {"many rows, 5 threads", 301, 33, 11, 1, 1, 5, 0.0f, NAM_F32, 0, 1.0f},
};


/* ---- RoPE ------------------------------------------------------------------------------ */
typedef struct rp_case {
    const char *name;
    int64_t b, s, h, d, rot_dim, pos_offset;
    double base;
    int interleaved, threads;
    nam_dtype dt;
    int in_place;
} rp_case;

/* the double reference from the definition: pair (a, b) of feature i rotates by
   theta = p * base^(-2i / rot) */
static void rp_ref(const rp_case *c, const float *x, double *ref) {
    int64_t bi, t, hh, i, rot = c->rot_dim ? c->rot_dim : c->d;
    double base = c->base != 0.0 ? c->base : 10000.0;
    for (bi = 0; bi < c->b; bi++)
        for (t = 0; t < c->s; t++)
            for (hh = 0; hh < c->h; hh++) {
                const float *xr = x + ((bi * c->s + t) * c->h + hh) * c->d;
                double *rr = ref + ((bi * c->s + t) * c->h + hh) * c->d;
                for (i = 0; i < c->d; i++) rr[i] = xr[i];
                for (i = 0; i < rot / 2; i++) {
                    double th = (double)(c->pos_offset + t) * pow(base, -2.0 * (double)i / (double)rot);
                    int64_t ia = c->interleaved ? 2 * i : i, ib = c->interleaved ? 2 * i + 1 : i + rot / 2;
                    rr[ia] = xr[ia] * cos(th) - xr[ib] * sin(th);
                    rr[ib] = xr[ib] * cos(th) + xr[ia] * sin(th);
                }
            }
}

static void rp_check(const rp_case *c) {
    int64_t n = c->b * c->s * c->h * c->d, i;
    float *xf = (float *)test_alloc(sizeof(float) * (size_t)n);
    void *x = test_alloc((size_t)n * test_esize(c->dt)), *out = test_alloc((size_t)n * test_esize(c->dt));
    double *ref = (double *)test_alloc(sizeof(double) * (size_t)n), scale = 0.0;
    int be;
    for (i = 0; i < n; i++) { xf[i] = test_round(c->dt, test_rand()); nam__store(x, c->dt, i, xf[i]); }
    rp_ref(c, xf, ref);
    for (i = 0; i < n; i++) scale = fmax(scale, fabs(ref[i]));
    for (be = NAM_BACKEND_CPU_REF; be <= NAM_BACKEND_CPU; be++) {
        nam_rope_desc d;
        nam_error e;
        nam_status st;
        char desc[256];
        double worst = 0.0, u = ulp_rel(c->dt);
        int64_t at = 0;
        void *o = c->in_place ? x : out;
        if (c->in_place) for (i = 0; i < n; i++) nam__store(x, c->dt, i, xf[i]);
        else memset(out, 0xff, (size_t)n * test_esize(c->dt));
        memset(&d, 0, sizeof d);
        d.x = test_tensor(x, c->dt, 4, c->b, c->s, c->h, c->d);
        d.out = test_tensor(o, c->dt, 4, c->b, c->s, c->h, c->d);
        d.rot_dim = c->rot_dim; d.pos_offset = c->pos_offset; d.base = c->base; d.interleaved = c->interleaved;
        d.backend = (nam_backend)be; d.threads = c->threads;
        snprintf(desc, sizeof desc, "rope %s [%s]", c->name, nam_backend_name((nam_backend)be));
        st = nam_rope(&d, &e);
        if (!test_ran(desc, "rope", st, &e, d.ran, (nam_backend)be)) continue;
        for (i = 0; i < n; i++) {
            /* cpu-ref: one rounding (angles, cos and sin in double on both sides: 1e-15 * p);
               cpu: cos and sin rounded to fp32, two products and a sum (4 u) */
            double got = nam__load(o, c->dt, i), tol = be == NAM_BACKEND_CPU_REF ? 1.01 * u * fabs(ref[i]) + 1e-13 * scale + sub_abs(c->dt)
                                                       : 1.01 * u * fabs(ref[i]) + 4.0 * ldexp(1.0, -24) * scale + sub_abs(c->dt);
            if (!(fabs(got - ref[i]) <= tol)) {
                double q = fabs(got - ref[i]) / tol;
                if (!(q <= worst)) { worst = q; at = i; }
            }
        }
        if (worst == 0.0) test_ok("%s: every element within its bound", desc);
        else test__fail_why(desc, "element %lld is %.3g x its bound (got %.9g, ref %.9g)", (long long)at, worst, (double)nam__load(o, c->dt, at), ref[at]);
    }
    free(xf); free(x); free(out); free(ref);
}

/* d = 2 by hand: x = (1, 0) at position 1, base 10000 -> theta = 1 rad -> (cos 1, sin 1) */
static void rp_by_hand(void) {
    float x[4] = {9.0f, 9.0f, 1.0f, 0.0f}, out[4];
    nam_rope_desc d;
    nam_error e;
    memset(&d, 0, sizeof d);
    d.x = test_tensor(x, NAM_F32, 4, 1, 2, 1, 2);
    d.out = test_tensor(out, NAM_F32, 4, 1, 2, 1, 2);
    d.backend = NAM_BACKEND_CPU;
    CHECK(nam_rope(&d, &e) == NAM_OK && out[0] == 9.0f && out[1] == 9.0f && fabs(out[2] - cos(1.0)) <= 1e-7 && fabs(out[3] - sin(1.0)) <= 1e-7,
          "rope by hand: position 0 unchanged, (1, 0) at position 1 -> (cos 1, sin 1)", "got (%g, %g), (%.9g, %.9g): %s", (double)out[0], (double)out[1],
          (double)out[2], (double)out[3], e.message);
}

/* a sequence at once equals one position at a time with pos_offset (decode), bit for bit */
static void rp_decode(void) {
    enum { S = 9, H = 3, D = 16 };
    float x[S * H * D], all[S * H * D], one[S * H * D];
    int64_t t, i;
    int ok = 1;
    nam_rope_desc d;
    nam_error e;
    for (i = 0; i < S * H * D; i++) x[i] = test_rand();
    memset(&d, 0, sizeof d);
    d.x = test_tensor(x, NAM_F32, 4, 1, S, H, D);
    d.out = test_tensor(all, NAM_F32, 4, 1, S, H, D);
    d.pos_offset = 100;
    ok &= nam_rope(&d, &e) == NAM_OK;
    for (t = 0; t < S; t++) {
        d.x = test_tensor(x + t * H * D, NAM_F32, 4, 1, 1, H, D);
        d.out = test_tensor(one + t * H * D, NAM_F32, 4, 1, 1, H, D);
        d.pos_offset = 100 + t;
        ok &= nam_rope(&d, &e) == NAM_OK;
    }
    test_check(ok && !memcmp(all, one, sizeof all), "rope: 9 positions at once (offset 100) == one at a time with pos_offset 100 + t, bit for bit",
               ok ? "a value differs" : e.message);
}

static void rp_bad(void) {
    float x[2 * 3 * 2 * 8], out[2 * 3 * 2 * 8];
    nam_rope_desc base, d;
    nam_error e;
    memset(x, 0, sizeof x);
    memset(&base, 0, sizeof base);
    base.x = test_tensor(x, NAM_F32, 4, 2, 3, 2, 8);
    base.out = test_tensor(out, NAM_F32, 4, 2, 3, 2, 8);
    test_expect("rope bad: NULL desc", nam_rope(NULL, &e), &e, NAM_ERR_INVALID_ARG, "nam_rope: desc is NULL");
    d = base; d.out.data = NULL; test_expect("rope bad: no out", nam_rope(&d, &e), &e, NAM_ERR_INVALID_ARG, "out: data is NULL");
    d = base; d.x.ndim = 3; test_expect("rope bad: x 3-d", nam_rope(&d, &e), &e, NAM_ERR_INVALID_ARG, "x: 3 dimensions, expected 4 (b,s,h,d)");
    d = base; d.out.shape[2] = 1; test_expect("rope bad: out h", nam_rope(&d, &e), &e, NAM_ERR_INVALID_ARG, "out.shape[2] (h) = 1, but x.shape[2] = 2");
    d = base; d.rot_dim = 5; test_expect("rope bad: odd rot_dim", nam_rope(&d, &e), &e, NAM_ERR_INVALID_ARG, "rot_dim = 5 must be even and at most d = x.shape[3] = 8");
    d = base; d.rot_dim = 10; test_expect("rope bad: rot_dim above d", nam_rope(&d, &e), &e, NAM_ERR_INVALID_ARG, "rot_dim = 10");
    d = base; d.rot_dim = -2; test_expect("rope bad: negative rot_dim", nam_rope(&d, &e), &e, NAM_ERR_INVALID_ARG, "rot_dim = -2");
    d = base; d.x.shape[3] = 7; d.out.shape[3] = 7; test_expect("rope bad: odd d with rot_dim 0", nam_rope(&d, &e), &e, NAM_ERR_INVALID_ARG, "(0 = d, then d must be even)");
    d = base; d.pos_offset = -1; test_expect("rope bad: negative pos_offset", nam_rope(&d, &e), &e, NAM_ERR_RANGE, "pos_offset = -1 is out of range");
    d = base; d.base = 1.0; test_expect("rope bad: base 1", nam_rope(&d, &e), &e, NAM_ERR_INVALID_ARG, "base = 1 must be a finite value above 1");
    d = base; d.base = -5.0; test_expect("rope bad: negative base", nam_rope(&d, &e), &e, NAM_ERR_INVALID_ARG, "base = -5");
    d = base; d.base = NAN; test_expect("rope bad: NaN base", nam_rope(&d, &e), &e, NAM_ERR_INVALID_ARG, "base = nan");
    d = base; d.interleaved = 2; test_expect("rope bad: interleaved 2", nam_rope(&d, &e), &e, NAM_ERR_INVALID_ARG, "interleaved = 2 is not 0 or 1");
    d = base; d.out = d.x; d.out.stride[0] = 48; d.out.stride[1] = 16; d.out.stride[2] = 8; d.out.stride[3] = 1; d.out.shape[0] = 2;
    d.out.stride[1] = 17; test_expect("rope bad: in place with other strides", nam_rope(&d, &e), &e, NAM_ERR_INVALID_ARG, "out: shares its data with x but not its strides");
}

static const rp_case rp_cases[] = {
    {"rotate-half b2 s7 h3 d64", 2, 7, 3, 64, 0, 0, 0.0, 0, 2, NAM_F32, 0},
    {"partial rot_dim 32 of d 64 (the rest passes)", 1, 5, 2, 64, 32, 0, 0.0, 0, 1, NAM_F32, 0},
    {"interleaved (GPT-J pairs), base 500000", 1, 6, 2, 32, 0, 0, 500000.0, 1, 2, NAM_F32, 0},
    {"decode position 4095 (pos_offset), d 128", 3, 1, 4, 128, 0, 4095, 0.0, 0, 2, NAM_F32, 0},
    {"long sequence s 300, 3 threads", 1, 300, 2, 16, 0, 7, 0.0, 0, 3, NAM_F32, 0},
    {"bf16 storage", 1, 9, 4, 64, 0, 3, 0.0, 0, 2, NAM_BF16, 0},
    {"f16 storage, partial rot_dim 16 of 24", 1, 9, 2, 24, 16, 0, 0.0, 1, 2, NAM_F16, 0},
    {"in place (out = x), partial rot_dim 8 of 12", 2, 4, 3, 12, 8, 2, 0.0, 0, 2, NAM_F32, 1},
};


/* ---- embedding, SwiGLU product, cross-entropy ------------------------------------------ */
static void emb_checks(void) {
    enum { V = 11, N = 6, T = 9 };
    float table[V * N], out[T * N], twide[T * 2 * N];
    int32_t ids[T] = {3, 0, 10, 3, 7, 7, 1, 9, 2};
    int64_t i, j;
    int be, ok;
    nam_embedding_desc d;
    nam_error e;
    for (i = 0; i < V * N; i++) table[i] = test_rand();
    for (be = NAM_BACKEND_CPU_REF; be <= NAM_BACKEND_CPU; be++) {
        memset(&d, 0, sizeof d);
        memset(twide, 0xff, sizeof twide);
        d.ids = test_tensor(ids, NAM_I32, 1, T, 0, 0, 0);
        d.table = test_tensor(table, NAM_F32, 2, V, N, 0, 0);
        d.out = test_tensor(twide, NAM_F32, 2, T, N, 0, 0);
        d.out.stride[0] = 2 * N; d.out.stride[1] = 1;   /* rows 2N apart: the gaps stay NaN */
        d.backend = (nam_backend)be; d.threads = 3;
        ok = nam_embedding(&d, &e) == NAM_OK && d.ran == (nam_backend)be;
        for (i = 0; ok && i < T; i++)
            for (j = 0; j < N; j++) ok &= twide[i * 2 * N + j] == table[ids[i] * N + j] && twide[i * 2 * N + N + j] != twide[i * 2 * N + N + j];
        test_check(ok, test_fmt("embedding: 9 ids (repeats, first and last row) gathered exactly into a strided out [%s]", nam_backend_name((nam_backend)be)), e.message);
    }
    memset(&d, 0, sizeof d);
    d.ids = test_tensor(ids, NAM_I32, 1, T, 0, 0, 0);
    d.table = test_tensor(table, NAM_F32, 2, V, N, 0, 0);
    d.out = test_tensor(out, NAM_F32, 2, T, N, 0, 0);
    memset(out, 0, sizeof out);
    ids[5] = 11;
    test_expect("embedding bad: id = vocab", nam_embedding(&d, &e), &e, NAM_ERR_RANGE, "nam_embedding: ids[5] = 11 is outside 0..10 (table.shape[0] rows)");
    ok = 1;
    for (i = 0; i < T * N; i++) ok &= out[i] == 0.0f;
    test_check(ok, "embedding bad: nothing written when an id is out of range", "out was written");
    ids[5] = -1;
    test_expect("embedding bad: negative id", nam_embedding(&d, &e), &e, NAM_ERR_RANGE, "ids[5] = -1 is outside 0..10");
    ids[5] = 7;
    d.ids.dtype = NAM_F32; test_expect("embedding bad: ids f32", nam_embedding(&d, &e), &e, NAM_ERR_INVALID_ARG, "ids: dtype f32, expected i32");
    d.ids.dtype = NAM_I32; d.out.shape[1] = 5; test_expect("embedding bad: out n", nam_embedding(&d, &e), &e, NAM_ERR_INVALID_ARG, "out.shape[1] (n) = 5, but table.shape[1] = 6");
    d.out.shape[1] = 6; d.out.shape[0] = 8; test_expect("embedding bad: out t", nam_embedding(&d, &e), &e, NAM_ERR_INVALID_ARG, "out.shape[0] (t) = 8, but ids.shape[0] = 9");
    test_expect("embedding bad: NULL desc", nam_embedding(NULL, &e), &e, NAM_ERR_INVALID_ARG, "nam_embedding: desc is NULL");
}

static void swiglu_checks(void) {
    enum { T = 13, F = 40 };
    static const nam_dtype dts[3] = {NAM_F32, NAM_BF16, NAM_F16};
    int k, be;
    for (k = 0; k < 3; k++) {
        nam_dtype dt = dts[k];
        float gf[T * F], uf[T * F];
        void *g = test_alloc(T * F * 4), *u = test_alloc(T * F * 4), *o = test_alloc(T * F * 4);
        int64_t i;
        for (i = 0; i < T * F; i++) { gf[i] = test_round(dt, 8.0f * test_rand()); uf[i] = test_round(dt, 2.0f * test_rand()); nam__store(g, dt, i, gf[i]); nam__store(u, dt, i, uf[i]); }
        for (be = NAM_BACKEND_CPU_REF; be <= NAM_BACKEND_CPU; be++) {
            nam_swiglu_desc d;
            nam_error e;
            double worst = 0.0, u_ = ulp_rel(dt);
            int ok;
            memset(&d, 0, sizeof d);
            d.gate = test_tensor(g, dt, 2, T, F, 0, 0); d.up = test_tensor(u, dt, 2, T, F, 0, 0); d.out = test_tensor(o, dt, 2, T, F, 0, 0);
            d.backend = (nam_backend)be; d.threads = 4;
            ok = nam_swiglu(&d, &e) == NAM_OK && d.ran == (nam_backend)be;
            for (i = 0; ok && i < T * F; i++) {
                double want = (double)gf[i] / (1.0 + exp(-(double)gf[i])) * uf[i], got = nam__load(o, dt, i);
                /* cpu-ref: one rounding; cpu: expf, divide and product in fp32 (4 * 2^-24) then the storage rounding */
                double tol = (be == NAM_BACKEND_CPU_REF ? 1.01 * u_ : 1.01 * u_ + 4.0 * ldexp(1.0, -24)) * fabs(want) + sub_abs(dt) + 1e-300;
                worst = fmax(worst, fabs(got - want) / tol);
            }
            CHECK(ok && worst <= 1.0, test_fmt("swiglu: silu(gate) * up, gate in [-8, 8], %s [%s]", nam_dtype_name(dt), nam_backend_name((nam_backend)be)),
                  "worst %.3g of its bound: %s", worst, e.message);
        }
        free(g); free(u); free(o);
    }
    {
        float g[6] = {-1, 0, 1, 2, 3, 30}, u[6] = {1, 1, 1, 1, 1, 1}, want[6];
        nam_swiglu_desc d;
        nam_error e;
        int i, ok;
        for (i = 0; i < 6; i++) want[i] = nam__silu(g[i]);
        memset(&d, 0, sizeof d);
        d.gate = test_tensor(g, NAM_F32, 2, 2, 3, 0, 0); d.up = test_tensor(u, NAM_F32, 2, 2, 3, 0, 0); d.out = d.up;
        ok = nam_swiglu(&d, &e) == NAM_OK;
        for (i = 0; i < 6; i++) ok &= u[i] == want[i];
        test_check(ok, "swiglu: in place (out = up) with up = 1 gives silu(gate)", e.message);
        d.up.shape[1] = 4; test_expect("swiglu bad: up f", nam_swiglu(&d, &e), &e, NAM_ERR_INVALID_ARG, "up.shape[1] (f) = 4, but gate.shape[1] = 3");
        d.up.shape[1] = 3; d.out.shape[0] = 1; test_expect("swiglu bad: out t", nam_swiglu(&d, &e), &e, NAM_ERR_INVALID_ARG, "out.shape[0] (t) = 1, but gate.shape[0] = 2");
        test_expect("swiglu bad: NULL desc", nam_swiglu(NULL, &e), &e, NAM_ERR_INVALID_ARG, "nam_swiglu: desc is NULL");
    }
}

static void xent_checks(void) {
    enum { T = 10, V = 37 };
    float logits[T * V], losses[T];
    int32_t tg[T] = {0, 36, 5, -100, 17, 17, -1, 2, 30, 9};
    double want[T], mean = 0.0;
    int64_t i, j, cnt = 0;
    int be, ok;
    nam_cross_entropy_desc d;
    nam_error e;
    for (i = 0; i < T * V; i++) logits[i] = 6.0f * test_rand();
    for (j = 0; j < V; j++) logits[2 * V + j] = 1e4f * (float)(j % 3) - 3e4f;   /* large logits: only a max shift survives */
    for (i = 0; i < T; i++) {   /* the definition: -log softmax(logits)[target], summed directly in double */
        double m = -HUGE_VAL, sum = 0.0;
        want[i] = 0.0;
        if (tg[i] < 0) continue;
        for (j = 0; j < V; j++) m = fmax(m, logits[i * V + j]);
        for (j = 0; j < V; j++) sum += exp((double)logits[i * V + j] - m);
        want[i] = -(logits[i * V + tg[i]] - m - log(sum));
        mean += want[i];
        cnt++;
    }
    mean /= (double)cnt;
    for (be = NAM_BACKEND_CPU_REF; be <= NAM_BACKEND_CPU; be++) {
        double worst = 0.0;
        memset(&d, 0, sizeof d);
        d.logits = test_tensor(logits, NAM_F32, 2, T, V, 0, 0);
        d.targets = test_tensor(tg, NAM_I32, 1, T, 0, 0, 0);
        d.losses = test_tensor(losses, NAM_F32, 1, T, 0, 0, 0);
        d.backend = (nam_backend)be; d.threads = 3;
        ok = nam_cross_entropy(&d, &e) == NAM_OK && d.ran == (nam_backend)be && d.counted == cnt;
        /* fp32 exp (cpu) is within 2 * 2^-24 relative per term; the loss rounds once to f32 */
        for (i = 0; ok && i < T; i++) worst = fmax(worst, fabs(losses[i] - want[i]) / (1.01 * ldexp(1.0, -24) * fabs(want[i]) + 4.0 * ldexp(1.0, -24) + 1e-300));
        CHECK(ok && worst <= 1.0 && fabs(d.loss_mean - mean) <= 1e-6 * fabs(mean) && losses[3] == 0.0f && losses[6] == 0.0f,
              test_fmt("cross_entropy: 10 tokens, V 37, two ignored (-100, -1), one row at +-3e4 [%s]", nam_backend_name((nam_backend)be)),
              "worst %.3g of the bound, mean %.9g vs %.9g, counted %lld: %s", worst, d.loss_mean, mean, (long long)d.counted, e.message);
    }
    memset(&d, 0, sizeof d);
    d.logits = test_tensor(logits, NAM_F32, 2, T, V, 0, 0);
    d.targets = test_tensor(tg, NAM_I32, 1, T, 0, 0, 0);
    ok = nam_cross_entropy(&d, &e) == NAM_OK && fabs(d.loss_mean - mean) <= 1e-6 * fabs(mean);
    test_check(ok, "cross_entropy: the mean without a losses tensor", e.message);
    tg[4] = 37;
    test_expect("cross_entropy bad: target = V", nam_cross_entropy(&d, &e), &e, NAM_ERR_RANGE, "nam_cross_entropy: targets[4] = 37 is outside 0..36");
    tg[4] = 17;
    d.losses = test_tensor(losses, NAM_F32, 1, T - 1, 0, 0, 0);
    test_expect("cross_entropy bad: losses t", nam_cross_entropy(&d, &e), &e, NAM_ERR_INVALID_ARG, "losses.shape[0] (t) = 9, but logits.shape[0] = 10");
    d.losses = test_tensor(losses, NAM_BF16, 1, T, 0, 0, 0);
    test_expect("cross_entropy bad: losses bf16", nam_cross_entropy(&d, &e), &e, NAM_ERR_INVALID_ARG, "losses: dtype bf16, expected f32");
    d.losses.data = NULL; d.targets.shape[0] = 4;
    test_expect("cross_entropy bad: targets t", nam_cross_entropy(&d, &e), &e, NAM_ERR_INVALID_ARG, "targets.shape[0] (t) = 4, but logits.shape[0] = 10");
    {
        int32_t none[2] = {-100, -100};
        memset(&d, 0, sizeof d);
        d.logits = test_tensor(logits, NAM_F32, 2, 2, V, 0, 0);
        d.targets = test_tensor(none, NAM_I32, 1, 2, 0, 0, 0);
        test_check(nam_cross_entropy(&d, &e) == NAM_OK && d.counted == 0 && d.loss_mean == 0.0, "cross_entropy: every target ignored -> counted 0, mean 0", e.message);
    }
}

static int dump_all(const char *dir) {
    FILE *man = test_manifest(dir, "# test_layers --dump: raw little-endian f32 files <case>_<tensor>.f32 (nam_rmsnorm: x, z, weight, out; nam_rope: x, out)");
    size_t k;
    int ok = man != NULL;
    for (k = 0; ok && k < 4; k++) {
        static const size_t pick[4] = {0, 2, 4, 7};
        const rn_case *c = &cases[pick[k]];
        rn_bufs b;
        nam_error e;
        char name[16];
        rn_make(c, &b);
        snprintf(name, sizeof name, "r%u", (unsigned)k);
        if (c->strided || rn_run(&b.d, NAM_BACKEND_CPU, c->threads, &e) != NAM_OK) { rn_free(&b); ok = 0; break; }
        fprintf(man, "case %s op=rmsnorm t=%lld n=%lld group_size=%lld eps=%.9g gated=%d weighted=%d storage=%s\n", name, (long long)c->t, (long long)c->n,
                (long long)c->group_size, (double)c->eps, c->gated, c->weighted, nam_dtype_name(c->dt));
        {
            const test_field f[] = {{"x", &b.d.x}, {"z", &b.d.z}, {"weight", &b.d.weight}, {"out", &b.d.out}};
            ok = test_dump_fields(dir, name, f, sizeof f / sizeof f[0]);
        }
        rn_free(&b);
    }
    for (k = 0; ok && k < 2; k++) {   /* rope: r4 rotate-half at a decode offset, r5 interleaved partial */
        static const rp_case rc[2] = {{"", 2, 5, 3, 64, 0, 4000, 0.0, 0, 2, NAM_F32, 0}, {"", 1, 7, 2, 48, 32, 3, 500000.0, 1, 2, NAM_F32, 0}};
        const rp_case *c = &rc[k];
        int64_t n = c->b * c->s * c->h * c->d, i;
        float *x = (float *)test_alloc(sizeof(float) * (size_t)n), *out = (float *)test_alloc(sizeof(float) * (size_t)n);
        nam_rope_desc d;
        nam_error e;
        char name[16];
        for (i = 0; i < n; i++) x[i] = test_rand();
        memset(&d, 0, sizeof d);
        d.x = test_tensor(x, NAM_F32, 4, c->b, c->s, c->h, c->d);
        d.out = test_tensor(out, NAM_F32, 4, c->b, c->s, c->h, c->d);
        d.rot_dim = c->rot_dim; d.pos_offset = c->pos_offset; d.base = c->base; d.interleaved = c->interleaved;
        snprintf(name, sizeof name, "r%u", (unsigned)(4 + k));
        ok = nam_rope(&d, &e) == NAM_OK;
        if (ok) {
            const test_field f[] = {{"x", &d.x}, {"out", &d.out}};
            fprintf(man, "case %s op=rope b=%lld s=%lld h=%lld d=%lld rot_dim=%lld pos_offset=%lld base=%.17g interleaved=%d storage=f32\n", name,
                    (long long)c->b, (long long)c->s, (long long)c->h, (long long)c->d, (long long)c->rot_dim, (long long)c->pos_offset, c->base,
                    c->interleaved);
            ok = test_dump_fields(dir, name, f, sizeof f / sizeof f[0]);
        }
        free(x); free(out);
    }
    if (man) fclose(man);
    return ok;
}

int main(int argc, char **argv) {
    size_t k;
    if (argc == 3 && !strcmp(argv[1], "--dump")) {
        if (!dump_all(argv[2])) return 1;
        printf("test_layers: wrote 6 cases to %s\n", argv[2]);
        return 0;
    }
    rn_by_hand();
    for (k = 0; k < sizeof cases / sizeof cases[0]; k++) rn_check(&cases[k]);
    rn_in_place();
    rn_threads();
    rn_bad();
    rp_by_hand();
    for (k = 0; k < sizeof rp_cases / sizeof rp_cases[0]; k++) rp_check(&rp_cases[k]);
    rp_decode();
    rp_bad();
    emb_checks();
    swiglu_checks();
    xent_checks();
    return test_done("test_layers");
}
