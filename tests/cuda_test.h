/* tests/cuda_test.h - shared helpers of the CUDA kernel tests (tests/test_cuda_*.c).
   A test program includes it after defining NAM_IMPLEMENTATION (it includes nam.h with
   NAM_CUDA, and nam_cuda.cuh's declarations). It is linked either with the real
   nam_cuda.o (nvcc) or with the emulator build nam_cuda_emu.o; the same source serves both.

   Checks, counters, RNG and the summary line come from tests/test.h (included here); this
   header adds the device side: ct_init, host/device tensor pairs, ct_maxdiff, ct_cmp_pair. */
#ifndef NAM_CUDA_TEST_H
#define NAM_CUDA_TEST_H

#ifndef NAM_CUDA
#define NAM_CUDA 1
#endif
#include "test.h" /* the harness: CHECK, test_ok / test_fail / test_skip, test_rand, test_done */
#include "../nam_cuda.cuh"

/* ct_init: 1 when a device (or the emulator) is there; otherwise prints one skip line
   naming why (any cudaGetDeviceCount error means "no device") and returns 0. */
NAM__UNUSED static int ct_init(const char *suite) {
    nam_error e;
    int n = 0;
    if (nam_cuda_device_count(&n, &e) != NAM_OK) {
        test_skip("%s: %s", suite, e.message);
        return 0;
    }
    if (nam_cuda_emulated()) printf("# %s: running on the CUDA emulator (tests/cuda_emu.h): logic only, no GPU\n", suite);
    return 1;
}

/* A host tensor and its device twin with the same shape and dtype. */
typedef struct ct_pair {
    nam_tensor h, d;
    size_t bytes;
} ct_pair;

/* ct_alloc: host memory filled by scale * test_rand() + shift (rounded to dtype), and a
   device copy. Returns 0 and prints FAIL on errors. */
NAM__UNUSED static int ct_alloc(ct_pair *p, nam_dtype dt, int ndim, const int64_t *shape, float scale, float shift) {
    nam_error e;
    int64_t n = 1, i;
    void *dev = NULL, *host;
    for (i = 0; i < ndim; i++) n *= shape[i];
    p->bytes = (size_t)n * test_esize(dt);
    host = malloc(p->bytes ? p->bytes : 1);
    p->h = nam_tensor_make(host, dt, ndim, shape);
    for (i = 0; i < n; i++) {
        float v = scale * test_rand() + shift;
        if (dt == NAM_I32) ((int32_t *)host)[i] = (int32_t)v;
        else nam__store(host, dt, i, v);
    }
    if (nam_cuda_malloc(&dev, p->bytes, &e) != NAM_OK || nam_cuda_memcpy(dev, host, p->bytes, NAM_CUDA_H2D, NULL, &e) != NAM_OK) {
        test_fail("device allocation: %s", e.message);
        return 0;
    }
    p->d = nam_tensor_cuda(dev, dt, ndim, shape);
    return 1;
}
NAM__UNUSED static int ct_upload(ct_pair *p) {
    nam_error e;
    if (nam_cuda_memcpy(p->d.data, p->h.data, p->bytes, NAM_CUDA_H2D, NULL, &e) != NAM_OK) { test_fail("upload: %s", e.message); return 0; }
    return 1;
}
/* copy the device tensor into `host` (bytes of p) */
NAM__UNUSED static int ct_download(const ct_pair *p, void *host) {
    nam_error e;
    if (nam_cuda_sync(NULL, &e) != NAM_OK) { test_fail("sync: %s", e.message); return 0; }
    if (nam_cuda_memcpy(host, p->d.data, p->bytes, NAM_CUDA_D2H, NULL, &e) != NAM_OK) { test_fail("download: %s", e.message); return 0; }
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

/* ct_cmp_pair: downloads the device tensor of p and checks it against the host buffer ref
   (same dtype): max |got - ref| <= tol * max |ref|. */
NAM__UNUSED static void ct_cmp_pair(const char *desc, const ct_pair *p, const void *ref, double tol) {
    void *got = malloc(p->bytes ? p->bytes : 1);
    double maxref = 0.0, diff;
    int64_t n = (int64_t)(p->bytes / test_esize(p->d.dtype));
    if (!ct_download(p, got)) { free(got); return; }
    diff = ct_maxdiff(got, ref, p->d.dtype, n, &maxref);
    if (getenv("NAM_TEST_VERBOSE")) printf("# %s: max |diff| %.3g, max |ref| %.3g, ratio %.3g (tol %.1g)\n", desc, diff, maxref, diff / (maxref > 1e-30 ? maxref : 1e-30), tol);
    CHECK(diff <= tol * (maxref > 1e-30 ? maxref : 1e-30), desc, "max |diff| = %.3g, max |ref| = %.3g, tol %.1g relative (%s)", diff, maxref, tol,
          nam_dtype_name(p->d.dtype));
    free(got);
}

#endif
