/* Negative compile test for build.sh's no_host_exit guard: the defect of the first H200 run
   in small. A host template calls a __device__ conversion helper (as test_cuda_prims.cu's
   run_mma once did with nam__cu_cvt<T>::from). nvcc compiles this without a diagnostic and
   the program would exit(1) at run time from the helper's host stub; the guard must flag the
   object (`U exit`), so the suite fails if it ever stops doing so. Never linked or run. */
#include <cuda_bf16.h>

template <typename T> struct cvt;
template <> struct cvt<__nv_bfloat16> {
    static __device__ __forceinline__ __nv_bfloat16 from(float v) { return __float2bfloat16(v); }
};
template <typename T> static void host_fill(T *h, int n) {
    for (int i = 0; i < n; i++) h[i] = cvt<T>::from(static_cast<float>(i));
}
void host_calls_device(__nv_bfloat16 *h, int n);
void host_calls_device(__nv_bfloat16 *h, int n) { host_fill(h, n); }
