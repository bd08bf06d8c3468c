/* tests/cuda_test.h - shared helpers of the CUDA kernel tests (tests/test_cuda_*.c).
   A test program includes it after defining NAM_IMPLEMENTATION (it includes nam.h with
   NAM_CUDA, and nam_cuda.cuh's declarations). It is linked either with the real
   nam_cuda.o (nvcc) or with the emulator build nam_cuda_emu.o; the same source serves both.

   Protocol (tests/run.sh): one line per check, "ok ...", "FAIL ...: why", "skip ...: why". */
#ifndef NAM_CUDA_TEST_H
#define NAM_CUDA_TEST_H

#ifndef NAM_CUDA
#define NAM_CUDA 1
#endif
#include "../nam.h"
#include "../nam_cuda.cuh"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int ct_failed = 0, ct_passed = 0;

NAM__UNUSED static void ct_ok(const char *desc) { printf("ok %s\n", desc); ct_passed++; }
NAM__UNUSED static void ct_fail(const char *desc, const char *why) { printf("FAIL %s: %s\n", desc, why); ct_failed++; }
/* ct_check: ok when cond, else FAIL with a printf-formatted reason */
NAM__UNUSED static void ct_check(int cond, const char *desc, const char *fmt, ...) NAM__PRINTF(3, 4);
NAM__UNUSED static void ct_check(int cond, const char *desc, const char *fmt, ...) {
    char why[512];
    va_list ap;
    if (cond) { ct_ok(desc); return; }
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    ct_fail(desc, why);
}

/* ct_init: 1 when a device (or the emulator) is there; otherwise prints one skip line
   naming why (any cudaGetDeviceCount error means "no device") and returns 0. */
NAM__UNUSED static int ct_init(const char *suite) {
    nam_error e;
    int n = 0;
    if (nam_cuda_device_count(&n, &e) != NAM_OK) {
        printf("skip %s: %s\n", suite, e.message);
        return 0;
    }
    if (nam_cuda_emulated()) printf("# %s: running on the CUDA emulator (tests/cuda_emu.h): logic only, no GPU\n", suite);
    return 1;
}

/* deterministic uniform [-1, 1) */
static uint64_t ct_rng = 0x9e3779b97f4a7c15ull;
NAM__UNUSED static float ct_rand(void) {
    ct_rng ^= ct_rng << 13;
    ct_rng ^= ct_rng >> 7;
    ct_rng ^= ct_rng << 17;
    return (float)((ct_rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

NAM__UNUSED static size_t ct_esize(nam_dtype dt) { return dt == NAM_BF16 || dt == NAM_F16 ? 2 : 4; }

/* A host tensor and its device twin with the same shape and dtype. */
typedef struct ct_pair {
    nam_tensor h, d;
    size_t bytes;
} ct_pair;

/* ct_alloc: host memory filled by scale * ct_rand() + shift (rounded to dtype), and a
   device copy. Returns 0 and prints FAIL on errors. */
NAM__UNUSED static int ct_alloc(ct_pair *p, nam_dtype dt, int ndim, const int64_t *shape, float scale, float shift) {
    nam_error e;
    int64_t n = 1, i;
    void *dev = NULL, *host;
    for (i = 0; i < ndim; i++) n *= shape[i];
    p->bytes = (size_t)n * ct_esize(dt);
    host = malloc(p->bytes ? p->bytes : 1);
    p->h = nam_tensor_make(host, dt, ndim, shape);
    for (i = 0; i < n; i++) {
        float v = scale * ct_rand() + shift;
        if (dt == NAM_I32) ((int32_t *)host)[i] = (int32_t)v;
        else nam__store(host, dt, i, v);
    }
    if (nam_cuda_malloc(&dev, p->bytes, &e) != NAM_OK || nam_cuda_memcpy(dev, host, p->bytes, NAM_CUDA_H2D, NULL, &e) != NAM_OK) {
        ct_fail("device allocation", e.message);
        return 0;
    }
    p->d = nam_tensor_cuda(dev, dt, ndim, shape);
    return 1;
}
NAM__UNUSED static int ct_upload(ct_pair *p) {
    nam_error e;
    if (nam_cuda_memcpy(p->d.data, p->h.data, p->bytes, NAM_CUDA_H2D, NULL, &e) != NAM_OK) { ct_fail("upload", e.message); return 0; }
    return 1;
}
/* copy the device tensor into `host` (bytes of p) */
NAM__UNUSED static int ct_download(const ct_pair *p, void *host) {
    nam_error e;
    if (nam_cuda_sync(NULL, &e) != NAM_OK) { ct_fail("sync", e.message); return 0; }
    if (nam_cuda_memcpy(host, p->d.data, p->bytes, NAM_CUDA_D2H, NULL, &e) != NAM_OK) { ct_fail("download", e.message); return 0; }
    return 1;
}
NAM__UNUSED static void ct_free(ct_pair *p) {
    nam_error e;
    free(p->h.data);
    nam_cuda_free(p->d.data, &e);
    memset(p, 0, sizeof *p);
}

/* Max |a - b| over n elements of two host buffers of dtype dt, and max |b| (the scale). */
NAM__UNUSED static double ct_maxdiff(const void *a, const void *b, nam_dtype dt, int64_t n, double *maxref) {
    double m = 0.0, r = 0.0;
    int64_t i;
    for (i = 0; i < n; i++) {
        double x = dt == NAM_I32 ? (double)((const int32_t *)a)[i] : (double)nam__load(a, dt, i);
        double y = dt == NAM_I32 ? (double)((const int32_t *)b)[i] : (double)nam__load(b, dt, i);
        double d = fabs(x - y);
        if (d != d) d = INFINITY;
        if (d > m) m = d;
        if (fabs(y) > r) r = fabs(y);
    }
    if (maxref) *maxref = r;
    return m;
}

/* ct_done: the exit status (0 when nothing failed). */
NAM__UNUSED static int ct_done(void) { return ct_failed ? 1 : 0; }

#endif
