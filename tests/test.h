/* tests/test.h - the one harness of nam's C tests (tests/test_*.c, tests/cuda_test.h,
   tests/test_cuda_prims.cu): checks, counters and the summary line, one RNG, one aligned
   allocation, and the comparisons the kernel tests share. Header-only, C99 and C++.

   Use: define NAM_IMPLEMENTATION (and NAM_CUDA, ...) as the test needs, then include this
   header FIRST, before any system header: it defines _POSIX_C_SOURCE (posix_memalign,
   clock_gettime) and then includes nam.h itself.

   Protocol (tests/run.sh): each check prints one line on stdout,
       ok <desc>                 counted in test_passed
       FAIL <desc>: <why>        counted in test_failed
       skip <desc>: <reason>     counted in test_skipped (the runner does not count it)
   with newlines and tabs in the text flattened to blanks, so that a check stays one line.
   "# ..." lines are notes. The program ends with test_done(NAME): the line
   "NAME: N passed, M failed" (", K skipped" added when K > 0) and the exit status.

     CHECK(cond, desc, fmt, ...)   ok desc, or FAIL desc: <fmt formatted>; the reason's
                                   arguments are evaluated only when cond is false
     test_check(cond, desc, why)   the same with a ready reason (text, may be NULL); with
                                   NAM_TEST_VERBOSE set a pass also prints "#   why"
     test_ok(fmt, ...)             ok <text>           (text: the formatted description)
     test_fail(fmt, ...)           FAIL <text>         (text: "desc: why")
     test_skip(fmt, ...)           skip <text>         (text: "desc: reason")
     test_fmt(fmt, ...)            a formatted description in a static buffer (one at a time)

   RNG: xorshift64 (Marsaglia), one global state; test_seed(s) sets it (0: the default).
   NAM_TEST_SEED in the environment wins over both: NAM_TEST_SEED=7 build/test_ssd reruns
   the same checks on other data.
     test_rand()          uniform [-1, 1), 24 random bits
     test_urand(lo, hi)   uniform [lo, hi), 24 random bits
     test_randi(n)        an integer in [0, n)
   Memory: test_alloc(bytes) is 64-byte aligned and zeroed (a FAIL line and exit status 2
   when out of memory); release it with free() or test_free(). test_write_file writes a
   --dump file.
   Comparisons: test_allclose (|got - ref| <= atol * max|ref| + rtol * |ref|, NaN where the
   reference has NaN) and test_max_err (max |got - ref| against a double reference).
   With NAM_IMPLEMENTATION (and the kernel half) also nam helpers: test_esize, test_round, test_tensor,
   test_rand_buf, test_to_f32; TEST_DEFINE_RUN (a kernel call with its workspace), test_ran
   and test_check_out (a fast path against its reference), test_expect (an error path);
   test_dump, test_dump_fields and test_manifest (the --dump files of the xcheck scripts). */
#ifndef NAM_TEST_H
#define NAM_TEST_H

#if !defined(_POSIX_C_SOURCE) && !defined(__cplusplus)
#define _POSIX_C_SOURCE 200809L /* posix_memalign, clock_gettime */
#endif

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../nam.h"

#if defined(__GNUC__) || defined(__clang__)
#define TEST__UNUSED __attribute__((unused))
#define TEST__PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define TEST__UNUSED
#define TEST__PRINTF(a, b)
#endif

/* ---- checks ------------------------------------------------------------------------- */
static int test_passed, test_failed, test_skipped;

/* test__line: KEYWORD, a blank, then PREFIX (may be NULL: none) and the formatted text,
   newlines and tabs flattened; one line on stdout. */
TEST__UNUSED static void test__line(const char *kw, const char *prefix, const char *fmt, va_list ap) {
    char buf[8192];
    const char *s;
    vsnprintf(buf, sizeof buf, fmt, ap);
    fputs(kw, stdout);
    putchar(' ');
    if (prefix) {
        for (s = prefix; *s; s++) putchar(*s == '\n' || *s == '\r' || *s == '\t' ? ' ' : *s);
        fputs(": ", stdout);
    }
    for (s = buf; *s; s++) putchar(*s == '\n' || *s == '\r' || *s == '\t' ? ' ' : *s);
    putchar('\n');
}

/* TEST__EMIT: the body of the line printers below: KEYWORD [PREFIX: ]<fmt formatted>, and
   one more in COUNTER */
#define TEST__EMIT(kw, prefix, counter)       \
    do {                                      \
        va_list ap;                           \
        va_start(ap, fmt);                    \
        test__line(kw, prefix, fmt, ap);      \
        va_end(ap);                           \
        counter++;                            \
    } while (0)

TEST__UNUSED static void test_ok(const char *fmt, ...) TEST__PRINTF(1, 2);
TEST__UNUSED static void test_ok(const char *fmt, ...) { TEST__EMIT("ok", NULL, test_passed); }
TEST__UNUSED static void test_fail(const char *fmt, ...) TEST__PRINTF(1, 2);
TEST__UNUSED static void test_fail(const char *fmt, ...) { TEST__EMIT("FAIL", NULL, test_failed); }
TEST__UNUSED static void test_skip(const char *fmt, ...) TEST__PRINTF(1, 2);
TEST__UNUSED static void test_skip(const char *fmt, ...) { TEST__EMIT("skip", NULL, test_skipped); }
/* test__fail_why: FAIL desc: <fmt formatted> (CHECK's failing branch) */
TEST__UNUSED static void test__fail_why(const char *desc, const char *fmt, ...) TEST__PRINTF(2, 3);
TEST__UNUSED static void test__fail_why(const char *desc, const char *fmt, ...) { TEST__EMIT("FAIL", desc, test_failed); }

#define CHECK(cond, desc, ...)                                                \
    do {                                                                      \
        if (cond) test_ok("%s", (desc));                                      \
        else test__fail_why((desc), __VA_ARGS__);                             \
    } while (0)

TEST__UNUSED static void test_check(int cond, const char *desc, const char *why) {
    if (cond) {
        test_ok("%s", desc);
        if (why && *why && getenv("NAM_TEST_VERBOSE")) printf("#   %s\n", why);
    } else {
        test__fail_why(desc, "%s", why && *why ? why : "(no details)");
    }
}

/* test_fmt: printf into a static buffer, for descriptions built on the fly */
TEST__UNUSED static const char *test_fmt(const char *fmt, ...) TEST__PRINTF(1, 2);
TEST__UNUSED static const char *test_fmt(const char *fmt, ...) {
    static char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return buf;
}

/* test_done: the summary line; returns the exit status (1 when anything failed). */
TEST__UNUSED static int test_done(const char *name) {
    if (test_skipped) printf("%s: %d passed, %d failed, %d skipped\n", name, test_passed, test_failed, test_skipped);
    else printf("%s: %d passed, %d failed\n", name, test_passed, test_failed);
    fflush(stdout);
    return test_failed ? 1 : 0;
}

/* ---- RNG: xorshift64 ------------------------------------------------------------------ */
#define TEST_SEED_DEFAULT UINT64_C(0x9e3779b97f4a7c15)
static uint64_t test_rng; /* 0: not seeded yet */

/* test_seed: the stream a test starts from; the environment's NAM_TEST_SEED (a decimal
   number), when set, wins over it, so any test reruns on other data with the same checks */
TEST__UNUSED static void test_seed(uint64_t s) {
    const char *env = getenv("NAM_TEST_SEED");
    if (env && *env) s = strtoull(env, NULL, 10);
    test_rng = s ? s : TEST_SEED_DEFAULT;
}
/* the next 24 random bits */
TEST__UNUSED static uint32_t test__bits24(void) {
    if (!test_rng) test_seed(TEST_SEED_DEFAULT);
    test_rng ^= test_rng << 13;
    test_rng ^= test_rng >> 7;
    test_rng ^= test_rng << 17;
    return (uint32_t)(test_rng >> 40);
}
TEST__UNUSED static float test_rand(void) { return (float)((double)test__bits24() / 8388608.0 - 1.0); }
TEST__UNUSED static float test_urand(float lo, float hi) {
    return lo + (hi - lo) * (float)((double)test__bits24() * (1.0 / 16777216.0));
}
TEST__UNUSED static int test_randi(int n) { return (int)((test_rand() + 1.0f) * 0.5f * (float)n) % n; }

/* ---- memory --------------------------------------------------------------------------- */
TEST__UNUSED static void *test_alloc(size_t bytes) {
    void *p = NULL;
    size_t n = bytes ? bytes : 64;
    if (posix_memalign(&p, 64, n) != 0 || !p) {
        printf("FAIL test_alloc: out of memory (%lu bytes)\n", (unsigned long)n);
        exit(2);
    }
    memset(p, 0, n);
    return p;
}
TEST__UNUSED static void test_free(void *p) { free(p); }

/* test_write_file: bytes at p written to DIR/FILE (a --dump file); 1 on success, else 0 and
   a message on stderr */
TEST__UNUSED static int test_write_file(const char *dir, const char *file, const void *p, size_t bytes) {
    char path[1024];
    FILE *f;
    int ok;
    snprintf(path, sizeof path, "%s/%s", dir, file);
    f = fopen(path, "wb");
    ok = f && (!bytes || fwrite(p, 1, bytes, f) == bytes);
    if (f && fclose(f) != 0) ok = 0;
    if (!ok) fprintf(stderr, "test_write_file: cannot write %s\n", path);
    return ok;
}

/* ---- comparisons ---------------------------------------------------------------------- */
/* test_allclose: |got - ref| <= atol * scale + rtol * |ref| for every element, scale =
   max |ref| (1 when 0); NaN must stand where ref has NaN. Returns 1 on success with
   "max error X of the tolerance" in why, else 0 with the first bad element in why. */
TEST__UNUSED static int test_allclose(const float *got, const float *ref, int64_t n, double atol, double rtol, char *why, size_t wl) {
    double scale = 0, worst = 0;
    int64_t i, bad = -1;
    for (i = 0; i < n; i++)
        if (ref[i] == ref[i] && fabs(ref[i]) > scale) scale = fabs(ref[i]);
    if (scale == 0) scale = 1;
    for (i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]), lim = atol * scale + rtol * fabs(ref[i]);
        int nan_ok = (got[i] != got[i]) == (ref[i] != ref[i]);
        if (!nan_ok || (ref[i] == ref[i] && !(d <= lim))) { bad = i; break; }
        if (ref[i] == ref[i] && d / lim > worst) worst = d / lim;
    }
    if (bad >= 0) {
        snprintf(why, wl, "element %lld: got %.9g, reference %.9g (scale %.4g, atol %g*scale, rtol %g)", (long long)bad,
                 (double)got[bad], (double)ref[bad], scale, atol, rtol);
        return 0;
    }
    snprintf(why, wl, "max error %.3f of the tolerance", worst);
    return 1;
}

/* test_max_err: max |got - ref| (INFINITY as soon as one is NaN) and where (the first
   index of the maximum; NaN counts as the worst). */
TEST__UNUSED static double test_max_err(const float *got, const double *ref, size_t n, size_t *where) {
    double m = 0;
    size_t i;
    *where = 0;
    for (i = 0; i < n; i++) {
        double e = fabs((double)got[i] - ref[i]);
        if (!(e <= m)) { m = e; *where = i; }
        if (e != e) return INFINITY;
    }
    return m;
}

/* ---- nam tensors (with NAM_IMPLEMENTATION: nam.h's internal conversions; the kernel half,
   so not in a planner-only test built with NAM_NO_KERNELS) ------------------------------- */
#if defined(NAM_IMPLEMENTATION) && !defined(NAM_NO_KERNELS)
/* bytes per element (f32 and i32: 4, f16 and bf16: 2) */
TEST__UNUSED static size_t test_esize(nam_dtype dt) { return dt == NAM_BF16 || dt == NAM_F16 ? 2 : 4; }

/* x rounded to the storage dtype dt */
TEST__UNUSED static float test_round(nam_dtype dt, float x) {
    if (dt == NAM_BF16) return nam__bf16_to_f32(nam__f32_to_bf16(x));
    if (dt == NAM_F16) return nam__f16_to_f32(nam__f32_to_f16(x));
    return x;
}

/* a contiguous tensor of up to 4 dimensions (a, b, c, d; the first ndim count) */
TEST__UNUSED static nam_tensor test_tensor(void *data, nam_dtype dt, int ndim, int64_t a, int64_t b, int64_t c, int64_t d) {
    int64_t shape[4];
    shape[0] = a; shape[1] = b; shape[2] = c; shape[3] = d;
    return nam_tensor_make(data, dt, ndim, shape);
}

/* n values test_urand(lo, hi) stored as dt (rounded), in test_alloc memory */
TEST__UNUSED static void *test_rand_buf(int64_t n, nam_dtype dt, float lo, float hi) {
    void *p = test_alloc((size_t)n * test_esize(dt));
    int64_t i;
    for (i = 0; i < n; i++) nam__store(p, dt, i, test_urand(lo, hi));
    return p;
}

/* the logical contents of a (possibly strided) host tensor as f32, in test_alloc memory */
TEST__UNUSED static float *test_to_f32(const nam_tensor *t) {
    float *f = (float *)test_alloc(sizeof(float) * (size_t)nam_tensor_numel(t));
    nam__pack_f32(t, f);
    return f;
}
/* test_expect: a call that must fail with status want (also in e->code) and, when needle is
   not NULL, a message containing needle */
TEST__UNUSED static void test_expect(const char *desc, nam_status got, const nam_error *e, nam_status want, const char *needle) {
    CHECK(got == want && e->code == want && (!needle || strstr(e->message, needle)), desc, "status %s (want %s), message '%.400s' (want '%s')",
          nam_status_str(got), nam_status_str(want), e->message, needle ? needle : "");
}

/* test_dump: the logical contents of t as raw little-endian f32, DIR/CASE_FIELD.f32 (the
   --dump files the tests/xcheck_*.py scripts read). 1 on success, else 0 and a message. */
TEST__UNUSED static int test_dump(const char *dir, const char *case_name, const char *field, const nam_tensor *t) {
    char file[512];
    float *f = test_to_f32(t);
    int ok;
    snprintf(file, sizeof file, "%s_%s.f32", case_name, field);
    ok = test_write_file(dir, file, f, sizeof(float) * (size_t)nam_tensor_numel(t));
    free(f);
    return ok;
}

/* TEST_DEFINE_RUN(name, desc_type, workspace_size, call): defines
       static nam_status name(desc_type *d, nam_backend be, int threads, nam_error *e)
   which sets d->backend and d->threads, queries workspace_size, allocates the workspace
   (test_alloc), calls call(d, ws, bytes, e) and frees it: one kernel call of the tests. */
#define TEST_DEFINE_RUN(name, desc_type, workspace_size, call)                   \
    static nam_status name(desc_type *d, nam_backend be, int threads, nam_error *e) { \
        size_t ws = 0;                                                          \
        void *w;                                                                \
        nam_status st;                                                          \
        d->backend = be;                                                        \
        d->threads = threads;                                                   \
        st = workspace_size(d, &ws, e);                                         \
        if (st != NAM_OK) return st;                                            \
        w = ws ? test_alloc(ws) : NULL;                                         \
        st = call(d, w, ws, e);                                                 \
        free(w);                                                                \
        return st;                                                              \
    }

/* test_ran: 1 when a call returned NAM_OK and ran on backend want; else 0 and the check
   desc FAILs with "WHAT: status: message (ran X)". */
TEST__UNUSED static int test_ran(const char *desc, const char *what, nam_status st, const nam_error *e, nam_backend ran, nam_backend want) {
    if (st == NAM_OK && ran == want) return 1;
    test__fail_why(desc, "%s: %s: %.300s (ran %s)", what, nam_status_str(st), e->message, nam_backend_name(ran));
    return 0;
}

/* test_check_out: the check desc of an output against its reference, test_allclose over
   the logical contents of out, then (when fin) fin against fin_ref over nfin elements
   (the reason then names fin_name). */
TEST__UNUSED static void test_check_out(const char *desc, const nam_tensor *out, const float *ref, const float *fin, const float *fin_ref, int64_t nfin,
                                        const char *fin_name, double atol, double rtol) {
    char why[1024], w2[1200];
    float *got = test_to_f32(out);
    int ok = test_allclose(got, ref, nam_tensor_numel(out), atol, rtol, why, sizeof why);
    free(got);
    if (ok && fin) {
        ok = test_allclose(fin, fin_ref, nfin, atol, rtol, why, sizeof why);
        snprintf(w2, sizeof w2, "%s: %s", fin_name, why);
        test_check(ok, desc, w2);
        return;
    }
    test_check(ok, desc, why);
}

/* The fp32 bound of an M2RNN fast path against the double reference (test_m2rnn,
   test_cuda_m2rnn): atol * max |ref| with
       atol = max(4e-6, G * (4e-7 * l + 4 * 2^-24 * sqrt(l * K))).
   Each step adds the tanh's error (4e-7 absolute, not centred: adds linearly over the l
   steps) and the K-term fp32 dot product of each state element (2^-24 * sqrt(K), a random
   walk); the recurrence carries it on and, with W near I and gates near 0, expands it. G is
   that growth on the case itself (test_m2rnn_growth). An upper bound: every step's error
   is taken to grow by the whole G. */
TEST__UNUSED static double test_m2rnn_f32_atol(int64_t l, int64_t K, double G) {
    double dl = (double)l, a = G * (4e-7 * dl + 4.0 * ldexp(1.0, -24) * sqrt(dl * (double)K));
    return a > 4e-6 ? a : 4e-6;
}

/* test_m2rnn_growth: G >= 1 of test_m2rnn_f32_atol for the host desc d whose out (and
   final_state, when given) hold its NAM_BACKEND_CPU_REF result: the reference rerun, into
   buffers of its own, from the initial state (zero when absent) moved by 1e-5 with random
   signs; G = max(1, max |change of out or final state| / 1e-5), out counted when it is
   f32 (an f16 or bf16 out moves by whole ulps, which would read as growth). 0 when the
   rerun fails (e says why). */
TEST__UNUSED static double test_m2rnn_growth(const nam_m2rnn_desc *d, nam_error *e) {
    const double delta = 1e-5;
    nam_m2rnn_desc m = *d;
    int64_t sh[4], i, ns, no = nam_tensor_numel(&d->out);
    float *moved, *fin, *out0, *out1, *fin0;
    void *ws = NULL, *outb;
    size_t wsb = 0;
    double g = 1.0;
    sh[0] = d->q.shape[0]; sh[1] = d->out.shape[2]; sh[2] = d->q.shape[3]; sh[3] = d->out.shape[3];
    ns = sh[0] * sh[1] * sh[2] * sh[3];
    moved = d->initial_state.data ? test_to_f32(&d->initial_state) : (float *)test_alloc(sizeof(float) * (size_t)ns);
    for (i = 0; i < ns; i++) moved[i] += (test_rand() < 0.0f ? -1.0f : 1.0f) * (float)delta;
    fin = (float *)test_alloc(sizeof(float) * (size_t)ns);
    outb = test_alloc(test_esize(d->out.dtype) * (size_t)no);
    m.initial_state = nam_tensor_make(moved, NAM_F32, 4, sh);
    m.final_state = nam_tensor_make(fin, NAM_F32, 4, sh);
    m.out = nam_tensor_make(outb, d->out.dtype, 4, d->out.shape);
    m.backend = NAM_BACKEND_CPU_REF;
    if (nam_m2rnn_workspace_size(&m, &wsb, e) != NAM_OK || !(ws = test_alloc(wsb ? wsb : 1)) || nam_m2rnn(&m, ws, wsb, e) != NAM_OK) g = 0.0;
    if (g > 0.0 && d->out.dtype == NAM_F32) {
        out0 = test_to_f32(&d->out);
        out1 = test_to_f32(&m.out);
        for (i = 0; i < no; i++) g = fmax(g, fabs((double)out1[i] - out0[i]) / delta);
        free(out0); free(out1);
    }
    if (g > 0.0 && d->final_state.data) {
        fin0 = test_to_f32(&d->final_state);
        for (i = 0; i < ns; i++) g = fmax(g, fabs((double)fin[i] - fin0[i]) / delta);
        free(fin0);
    }
    free(ws); free(moved); free(fin); free(outb);
    return g;
}

/* test_dump_fields: test_dump of each (field, tensor) pair; absent tensors (data NULL) are
   skipped. 1 when every file was written. */
typedef struct test_field {
    const char *name;
    const nam_tensor *t;
} test_field;
TEST__UNUSED static int test_dump_fields(const char *dir, const char *case_name, const test_field *f, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        if (f[i].t->data && !test_dump(dir, case_name, f[i].name, f[i].t)) return 0;
    return 1;
}

/* test_manifest: DIR/manifest.txt opened for writing with HEADER as its first line (the
   --dump index the xcheck scripts read); NULL and a message when it cannot be written. */
TEST__UNUSED static FILE *test_manifest(const char *dir, const char *header) {
    char path[1024];
    FILE *man;
    snprintf(path, sizeof path, "%s/manifest.txt", dir);
    man = fopen(path, "w");
    if (!man) { fprintf(stderr, "test_manifest: cannot write %s\n", path); return NULL; }
    fprintf(man, "%s\n", header);
    return man;
}
#endif /* NAM_IMPLEMENTATION && !NAM_NO_KERNELS */

#endif /* NAM_TEST_H */
