/* tests/consumers/main_cuda.c - the CUDA side from a program outside nam's tree: built with
   NAM_CUDA and linked with nam_cuda.cu compiled by nvcc (pkg-config nam-cuda, or CMake's
   nam::cuda). With a device it runs nam_conv1d on CUDA tensors and compares with the CPU;
   without one it says so in a skip line. */
#define NAM_IMPLEMENTATION
#include "nam_cuda.cuh"

#include <math.h>
#include <stdio.h>
#include <string.h>

int main(void) {
    nam_error err;
    nam_backend b;
    int n = 0, t;
    float x[4 * 3], w[3 * 2], ref[4 * 3], got[4 * 3];
    int64_t xs[3] = { 1, 4, 3 }, ws[2] = { 3, 2 };
    void *dx = NULL, *dw = NULL, *dout = NULL;
    nam_conv1d_desc h = { 0 }, d = { 0 };
    double maxerr = 0;
    memset(&err, 0, sizeof err);
    if (nam_query_backend(NAM_BACKEND_AUTO, NAM_DEVICE_CUDA, &b, &err) != NAM_OK || b != NAM_BACKEND_CUDA) {
        printf("FAIL cuda: nam_query_backend(CUDA) does not pick the CUDA backend: %s\n", err.message);
        return 1;
    }
    printf("ok   cuda: built with NAM_CUDA, the CUDA backend is linked\n");
    if (nam_cuda_device_count(&n, &err) != NAM_OK || n == 0) {
        printf("skip cuda kernel: no CUDA device here (%s)\n", n ? "" : err.message);
        return 0;
    }
    for (t = 0; t < 12; t++) x[t] = (float)(t * t % 7) - 2.5f;
    for (t = 0; t < 6; t++) w[t] = 0.25f * (float)(t + 1);
    h.x = nam_tensor_make(x, NAM_F32, 3, xs);
    h.weight = nam_tensor_make(w, NAM_F32, 2, ws);
    h.out = nam_tensor_make(ref, NAM_F32, 3, xs);
    if (nam_conv1d(&h, &err) != NAM_OK ||
        nam_cuda_malloc(&dx, sizeof x, &err) != NAM_OK || nam_cuda_malloc(&dw, sizeof w, &err) != NAM_OK ||
        nam_cuda_malloc(&dout, sizeof got, &err) != NAM_OK ||
        nam_cuda_memcpy(dx, x, sizeof x, NAM_CUDA_H2D, NULL, &err) != NAM_OK ||
        nam_cuda_memcpy(dw, w, sizeof w, NAM_CUDA_H2D, NULL, &err) != NAM_OK) {
        printf("FAIL cuda kernel nam_conv1d: %s\n", err.message);
        return 1;
    }
    d.x = nam_tensor_cuda(dx, NAM_F32, 3, xs);
    d.weight = nam_tensor_cuda(dw, NAM_F32, 2, ws);
    d.out = nam_tensor_cuda(dout, NAM_F32, 3, xs);
    if (nam_conv1d(&d, &err) != NAM_OK || nam_cuda_memcpy(got, dout, sizeof got, NAM_CUDA_D2H, NULL, &err) != NAM_OK ||
        nam_cuda_sync(NULL, &err) != NAM_OK) {
        printf("FAIL cuda kernel nam_conv1d: %s\n", err.message);
        return 1;
    }
    for (t = 0; t < 12; t++) if (fabs(got[t] - ref[t]) > maxerr) maxerr = fabs(got[t] - ref[t]);
    nam_cuda_free(dx, &err);
    nam_cuda_free(dw, &err);
    nam_cuda_free(dout, &err);
    if (maxerr > 1e-5) { printf("FAIL cuda kernel nam_conv1d: max |gpu - cpu| %g\n", maxerr); return 1; }
    printf("ok   cuda kernel nam_conv1d on %d device(s) (backend %s): max |gpu - cpu| %g\n", n, nam_backend_name(d.ran), maxerr);
    return 0;
}
