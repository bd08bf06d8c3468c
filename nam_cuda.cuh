/* nam_cuda.cuh - the CUDA side of nam's kernel API.                      STB-style, CUDA C++

   nam.h's kernel entry points (nam_ssd, nam_conv1d, nam_ssd_step, nam_moe_route,
   nam_moe_dispatch, nam_moe_permute, nam_moe_combine, nam_moe_ffn, nam_attention) run
   here when their tensors are CUDA tensors (device = NAM_DEVICE_CUDA) and the program was
   built with NAM_CUDA. The API is the CPU one: the same desc structs and error rules, plus
   the desc's `stream` (a cudaStream_t; NULL is the default stream). Launches are
   asynchronous unless stated otherwise; errors come back as a nam_status with a message
   naming the failing CUDA call, the CUDA error string and file:line.

   Build (build.sh does this):
       nvcc -c nam_cuda.cu                     (nam_cuda.cu: #define NAM_CUDA_IMPLEMENTATION
                                                 then #include "nam_cuda.cuh")
       cc -DNAM_CUDA -DNAM_IMPLEMENTATION ...  (the TU that implements nam.h)
       link both with -lcudart.
   Including this header without NAM_CUDA_IMPLEMENTATION gives the C declarations below;
   it compiles as C99 or C++.

   NAM_CUDA_EMULATE: the implementation compiled by a host C++ compiler over
   tests/cuda_emu.h, a small CUDA emulator that runs every thread of a block as a fiber.
   The test suite uses it to check the kernels' logic on machines without a GPU; it says
   nothing about speed, and memory ordering is sequential.
*/
#ifndef NAM_CUDA_CUH_INCLUDED
#define NAM_CUDA_CUH_INCLUDED

#ifndef NAM_CUDA
#define NAM_CUDA 1
#endif
#include "nam.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum nam_cuda_copy { NAM_CUDA_H2D = 1, NAM_CUDA_D2H = 2, NAM_CUDA_D2D = 3 } nam_cuda_copy;

/* nam_cuda_device_count: CUDA devices. Any error from cudaGetDeviceCount (no driver, no
   device) is returned as NAM_ERR_UNSUPPORTED with the CUDA error text; *count is then 0. */
NAM_API nam_status nam_cuda_device_count(int *count, nam_error *err);
/* nam_cuda_emulated: 1 when this build runs on tests/cuda_emu.h rather than a GPU. */
NAM_API int nam_cuda_emulated(void);
/* Small conveniences for C callers (tests, benchmarks); they wrap the CUDA runtime. */
NAM_API nam_status nam_cuda_malloc(void **ptr, size_t bytes, nam_error *err);
NAM_API nam_status nam_cuda_free(void *ptr, nam_error *err);
NAM_API nam_status nam_cuda_memcpy(void *dst, const void *src, size_t bytes, nam_cuda_copy kind, void *stream, nam_error *err);
NAM_API nam_status nam_cuda_memset(void *dst, int value, size_t bytes, void *stream, nam_error *err);
NAM_API nam_status nam_cuda_sync(void *stream, nam_error *err);
/* nam_tensor_cuda: a contiguous CUDA tensor view of device memory `data`. */
NAM_API nam_tensor nam_tensor_cuda(void *data, nam_dtype dtype, int ndim, const int64_t *shape);

#ifdef __cplusplus
}
#endif
#endif /* NAM_CUDA_CUH_INCLUDED */

/* ==================================================================================== */
/*                                  IMPLEMENTATION                                      */
/* ==================================================================================== */
#if defined(NAM_CUDA_IMPLEMENTATION) && !defined(NAM_CUDA__IMPLEMENTATION_DONE)
#define NAM_CUDA__IMPLEMENTATION_DONE

#ifndef __cplusplus
#error "the nam_cuda.cuh implementation is CUDA C++ (compile nam_cuda.cu with nvcc)"
#endif

#ifdef NAM_CUDA_EMULATE
#ifndef NAM_CUDA_EMU_H_INCLUDED
#error "NAM_CUDA_EMULATE needs tests/cuda_emu.h included first"
#endif
#else
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* >>cuda-common ------------------------------------------------------------------------ */
#if defined(__GNUC__) || defined(__clang__)
#define NAM__CU_UNUSED __attribute__((unused))
#else
#define NAM__CU_UNUSED
#endif

/* Status + message, the nam_error way (nam.h's own helpers are private to its TU). */
static nam_status nam__cu_err(nam_error *e, nam_status code, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static nam_status nam__cu_err(nam_error *e, nam_status code, const char *fmt, ...) {
    va_list ap;
    if (!e) return code;
    memset(e, 0, sizeof *e);
    e->code = code;
    e->offset = -1;
    e->layer = e->stage = -1;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return code;
}

static nam_status nam__cu_ok(nam_error *e) {
    if (e) {
        memset(e, 0, sizeof *e);
        e->offset = -1;
        e->layer = e->stage = -1;
    }
    return NAM_OK;
}

/* A failed CUDA runtime call: NAM_ERR_CUDA-like status (NAM_ERR_UNSUPPORTED for "no
   device", NAM_ERR_NOMEM for allocation failures, NAM_ERR_IO otherwise) with the call,
   the CUDA error name and text, and where. */
static nam_status nam__cu_fail(nam_error *e, cudaError_t rc, const char *call, const char *file, int line) {
    nam_status code = NAM_ERR_IO;
    if (rc == cudaErrorMemoryAllocation) code = NAM_ERR_NOMEM;
    else if (rc == cudaErrorNoDevice || rc == cudaErrorInsufficientDriver) code = NAM_ERR_UNSUPPORTED;
    return nam__cu_err(e, code, "CUDA error: %s failed: %s (%s) at %s:%d", call, cudaGetErrorString(rc), cudaGetErrorName(rc), file, line);
}

#define NAM__CU_TRY(err, call)                                                      \
    do {                                                                            \
        cudaError_t rc_ = (call);                                                   \
        if (rc_ != cudaSuccess) return nam__cu_fail((err), rc_, #call, __FILE__, __LINE__); \
    } while (0)

/* Launch a __global__ function (pass a pointer for templates: `auto k = f<T, 64>;`) and
   check the launch. */
#ifdef NAM_CUDA_EMULATE
#define NAM__CU_LAUNCH(err, kernel, grid, block, smem, stream, ...)                                    \
    do {                                                                                             \
        cudaError_t rc_ = nam_emu_launch(#kernel, (grid), (block), (smem), [&]() { kernel(__VA_ARGS__); }); \
        if (rc_ != cudaSuccess) return nam__cu_fail((err), rc_, "launch of " #kernel, __FILE__, __LINE__); \
    } while (0)
#define NAM__CU_DYN_SMEM(T, name) T *name = reinterpret_cast<T *>(nam_emu_dyn_smem())
#else
#define NAM__CU_LAUNCH(err, kernel, grid, block, smem, stream, ...)                                    \
    do {                                                                                             \
        cudaError_t rc_;                                                                             \
        kernel<<<(grid), (block), (smem), (cudaStream_t)(stream)>>>(__VA_ARGS__);                    \
        rc_ = cudaGetLastError();                                                                    \
        if (rc_ != cudaSuccess) return nam__cu_fail((err), rc_, "launch of " #kernel, __FILE__, __LINE__); \
    } while (0)
#define NAM__CU_DYN_SMEM(T, name)                                    \
    extern __shared__ __align__(16) unsigned char nam__cu_smem_raw[]; \
    T *name = reinterpret_cast<T *>(nam__cu_smem_raw)
#endif

/* ---- storage types -------------------------------------------------------------------- */
typedef __nv_bfloat16 nam__cu_bf16;
typedef __half nam__cu_f16;

static __device__ __forceinline__ float nam__cu_f(float v) { return v; }
static __device__ __forceinline__ float nam__cu_f(nam__cu_bf16 v) { return __bfloat162float(v); }
static __device__ __forceinline__ float nam__cu_f(nam__cu_f16 v) { return __half2float(v); }

template <typename T> struct nam__cu_cvt;
template <> struct nam__cu_cvt<float> {
    static __device__ __forceinline__ float from(float v) { return v; }
};
template <> struct nam__cu_cvt<nam__cu_bf16> {
    static __device__ __forceinline__ nam__cu_bf16 from(float v) { return __float2bfloat16(v); }
    static __device__ __forceinline__ unsigned short bits(nam__cu_bf16 v) { return __bfloat16_as_ushort(v); }
};
template <> struct nam__cu_cvt<nam__cu_f16> {
    static __device__ __forceinline__ nam__cu_f16 from(float v) { return __float2half_rn(v); }
    static __device__ __forceinline__ unsigned short bits(nam__cu_f16 v) { return __half_as_ushort(v); }
};
/* store float v as T (round to nearest even) */
template <typename T> static __device__ __forceinline__ T nam__cu_to(float v) { return nam__cu_cvt<T>::from(v); }

/* Two floats packed into one 32-bit register of 16-bit T, `lo` in the low half (the
   element with the lower index, as mma fragments want it). */
template <typename T> static __device__ __forceinline__ uint32_t nam__cu_pack2(float lo, float hi) {
    return static_cast<uint32_t>(nam__cu_cvt<T>::bits(nam__cu_to<T>(lo))) |
           (static_cast<uint32_t>(nam__cu_cvt<T>::bits(nam__cu_to<T>(hi))) << 16);
}

/* A value of runtime dtype dt at element i (small parameter tensors: A, D, dt_bias, ...). */
static __device__ __forceinline__ float nam__cu_load(const void *p, int dt, int64_t i) {
    if (dt == NAM_BF16) return __bfloat162float(static_cast<const nam__cu_bf16 *>(p)[i]);
    if (dt == NAM_F16) return __half2float(static_cast<const nam__cu_f16 *>(p)[i]);
    return static_cast<const float *>(p)[i];
}
static __device__ __forceinline__ void nam__cu_store(void *p, int dt, int64_t i, float v) {
    if (dt == NAM_BF16) static_cast<nam__cu_bf16 *>(p)[i] = __float2bfloat16(v);
    else if (dt == NAM_F16) static_cast<nam__cu_f16 *>(p)[i] = __float2half_rn(v);
    else static_cast<float *>(p)[i] = v;
}

/* ---- tensor-core and async-copy primitives -------------------------------------------- */
/* d += a * b for one m16n8k16 tile, fp32 accumulators (PTX mma.sync.aligned.m16n8k16.row.col).
   Fragments (lane = 4 * g + t): a[0] rows g, cols 2t..2t+1; a[1] row g+8, same cols;
   a[2] row g, cols 2t+8..2t+9; a[3] row g+8, cols 2t+8..; b[0] k = 2t..2t+1, n = g;
   b[1] k = 2t+8..2t+9, n = g; d[0..1] row g, cols 2t..2t+1; d[2..3] row g+8, same cols. */
template <typename T> static __device__ __forceinline__ void nam__cu_mma(float d[4], const uint32_t a[4], const uint32_t b[2]);
#ifdef NAM_CUDA_EMULATE
template <> __device__ __forceinline__ void nam__cu_mma<nam__cu_bf16>(float d[4], const uint32_t a[4], const uint32_t b[2]) { nam_emu_mma16816(d, a, b, 1); }
template <> __device__ __forceinline__ void nam__cu_mma<nam__cu_f16>(float d[4], const uint32_t a[4], const uint32_t b[2]) { nam_emu_mma16816(d, a, b, 0); }
/* ldmatrix .x4 (trans = 0 or 1): lane l supplies the address of row l % 8 of matrix l / 8;
   r[j] gets matrix j's elements (l / 4, 2 (l % 4) .. +1), or with trans (2 (l % 4) .. +1, l / 4). */
static __device__ __forceinline__ void nam__cu_ldsm_x4(uint32_t r[4], const void *row) { nam_emu_ldmatrix(r, 4, row, 0); }
static __device__ __forceinline__ void nam__cu_ldsm_x4_t(uint32_t r[4], const void *row) { nam_emu_ldmatrix(r, 4, row, 1); }
static __device__ __forceinline__ void nam__cu_ldsm_x2(uint32_t r[2], const void *row) { nam_emu_ldmatrix(r, 2, row, 0); }
static __device__ __forceinline__ void nam__cu_ldsm_x2_t(uint32_t r[2], const void *row) { nam_emu_ldmatrix(r, 2, row, 1); }
/* 16-byte global -> shared copy (cp.async.cg); src_bytes < 16 zero-fills the rest. */
static __device__ __forceinline__ void nam__cu_cp16(void *smem, const void *gmem, int src_bytes) { nam_emu_cp16(smem, gmem, src_bytes); }
static __device__ __forceinline__ void nam__cu_cp_commit(void) {}
template <int N> static __device__ __forceinline__ void nam__cu_cp_wait(void) {}
#else
template <> __device__ __forceinline__ void nam__cu_mma<nam__cu_bf16>(float d[4], const uint32_t a[4], const uint32_t b[2]) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
template <> __device__ __forceinline__ void nam__cu_mma<nam__cu_f16>(float d[4], const uint32_t a[4], const uint32_t b[2]) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
static __device__ __forceinline__ uint32_t nam__cu_smem_addr(const void *p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }
static __device__ __forceinline__ void nam__cu_ldsm_x4(uint32_t r[4], const void *row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(nam__cu_smem_addr(row)));
}
static __device__ __forceinline__ void nam__cu_ldsm_x4_t(uint32_t r[4], const void *row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(nam__cu_smem_addr(row)));
}
static __device__ __forceinline__ void nam__cu_ldsm_x2(uint32_t r[2], const void *row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(nam__cu_smem_addr(row)));
}
static __device__ __forceinline__ void nam__cu_ldsm_x2_t(uint32_t r[2], const void *row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(nam__cu_smem_addr(row)));
}
static __device__ __forceinline__ void nam__cu_cp16(void *smem, const void *gmem, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(nam__cu_smem_addr(smem)), "l"(gmem), "r"(src_bytes));
}
static __device__ __forceinline__ void nam__cu_cp_commit(void) { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> static __device__ __forceinline__ void nam__cu_cp_wait(void) { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }
#endif

/* warp reductions (all 32 lanes take part) */
static __device__ __forceinline__ float nam__cu_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
static __device__ __forceinline__ float nam__cu_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* ---- host-side helpers shared by the kernels' launchers ------------------------------- */
/* A tensor the CUDA kernels can take: on the CUDA device and contiguous (zero strides, or
   the row-major strides of its shape). Optional tensors (data NULL) pass. */
NAM__CU_UNUSED static nam_status nam__cu_contig(const nam_tensor *t, const char *fn, const char *field, nam_error *err) {
    int64_t s = 1;
    int i, zero = 1;
    if (!t->data) return NAM_OK;
    if (t->device != NAM_DEVICE_CUDA)
        return nam__cu_err(err, NAM_ERR_INVALID_ARG, "%s: %s is a CPU tensor, but the call runs on CUDA (every tensor of a call must be on one device)", fn, field);
    for (i = 0; i < t->ndim; i++)
        if (t->stride[i] != 0) zero = 0;
    if (zero) return NAM_OK;
    for (i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] > 1 && t->stride[i] != s)
            return nam__cu_err(err, NAM_ERR_NOT_IMPLEMENTED, "%s: %s.stride[%d] = %lld; the CUDA kernels take contiguous row-major tensors only (expected %lld)", fn,
                               field, i, static_cast<long long>(t->stride[i]), static_cast<long long>(s));
        s *= t->shape[i];
    }
    return NAM_OK;
}

/* Workspace: device memory, 256-byte aligned, at least `need` bytes. */
NAM__CU_UNUSED static nam_status nam__cu_ws(const void *ws, size_t bytes, size_t need, const char *fn, nam_error *err) {
    if (need == 0) return NAM_OK;
    if (!ws) return nam__cu_err(err, NAM_ERR_INVALID_ARG, "%s: workspace is NULL, but %zu bytes are needed (ask *_workspace_size)", fn, need);
    if (reinterpret_cast<uintptr_t>(ws) % 256 != 0)
        return nam__cu_err(err, NAM_ERR_INVALID_ARG, "%s: workspace %p is not 256-byte aligned (cudaMalloc memory is)", fn, ws);
    if (bytes < need) return nam__cu_err(err, NAM_ERR_INVALID_ARG, "%s: workspace_bytes = %zu, need %zu", fn, bytes, need);
    return NAM_OK;
}
NAM__CU_UNUSED static size_t nam__cu_align(size_t n) { return (n + 255) & ~static_cast<size_t>(255); }

/* The SM count of the current device (for grid sizing); 132 if it cannot be read. */
NAM__CU_UNUSED static int nam__cu_sm_count(void) {
    int dev = 0, n = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || n < 1) return 132;
    return n;
}

/* ---- public helpers -------------------------------------------------------------------- */
extern "C" {

NAM_API int nam_cuda_emulated(void) {
#ifdef NAM_CUDA_EMULATE
    return 1;
#else
    return 0;
#endif
}

NAM_API nam_status nam_cuda_device_count(int *count, nam_error *err) {
    int n = 0;
    cudaError_t rc;
    if (!count) return nam__cu_err(err, NAM_ERR_INVALID_ARG, "nam_cuda_device_count: count is NULL");
    *count = 0;
    rc = cudaGetDeviceCount(&n);
    if (rc != cudaSuccess) {
        (void)cudaGetLastError();
        return nam__cu_err(err, NAM_ERR_UNSUPPORTED, "no CUDA device: cudaGetDeviceCount failed: %s (%s)", cudaGetErrorString(rc), cudaGetErrorName(rc));
    }
    if (n < 1) return nam__cu_err(err, NAM_ERR_UNSUPPORTED, "no CUDA device: cudaGetDeviceCount reports 0 devices");
    *count = n;
    return nam__cu_ok(err);
}

NAM_API nam_status nam_cuda_malloc(void **ptr, size_t bytes, nam_error *err) {
    if (!ptr) return nam__cu_err(err, NAM_ERR_INVALID_ARG, "nam_cuda_malloc: ptr is NULL");
    *ptr = NULL;
    if (bytes == 0) return nam__cu_ok(err);
    NAM__CU_TRY(err, cudaMalloc(ptr, bytes));
    return nam__cu_ok(err);
}

NAM_API nam_status nam_cuda_free(void *ptr, nam_error *err) {
    if (ptr) NAM__CU_TRY(err, cudaFree(ptr));
    return nam__cu_ok(err);
}

NAM_API nam_status nam_cuda_memcpy(void *dst, const void *src, size_t bytes, nam_cuda_copy kind, void *stream, nam_error *err) {
    cudaMemcpyKind k;
    if (bytes == 0) return nam__cu_ok(err);
    if (!dst || !src) return nam__cu_err(err, NAM_ERR_INVALID_ARG, "nam_cuda_memcpy: %s is NULL", dst ? "src" : "dst");
    switch (kind) {
    case NAM_CUDA_H2D: k = cudaMemcpyHostToDevice; break;
    case NAM_CUDA_D2H: k = cudaMemcpyDeviceToHost; break;
    case NAM_CUDA_D2D: k = cudaMemcpyDeviceToDevice; break;
    default: return nam__cu_err(err, NAM_ERR_INVALID_ARG, "nam_cuda_memcpy: kind = %d is not a nam_cuda_copy", static_cast<int>(kind));
    }
    NAM__CU_TRY(err, cudaMemcpyAsync(dst, src, bytes, k, static_cast<cudaStream_t>(stream)));
    if (kind != NAM_CUDA_D2D) NAM__CU_TRY(err, cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
    return nam__cu_ok(err);
}

NAM_API nam_status nam_cuda_memset(void *dst, int value, size_t bytes, void *stream, nam_error *err) {
    if (bytes == 0) return nam__cu_ok(err);
    if (!dst) return nam__cu_err(err, NAM_ERR_INVALID_ARG, "nam_cuda_memset: dst is NULL");
    NAM__CU_TRY(err, cudaMemsetAsync(dst, value, bytes, static_cast<cudaStream_t>(stream)));
    return nam__cu_ok(err);
}

NAM_API nam_status nam_cuda_sync(void *stream, nam_error *err) {
    NAM__CU_TRY(err, cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
    return nam__cu_ok(err);
}

NAM_API nam_tensor nam_tensor_cuda(void *data, nam_dtype dtype, int ndim, const int64_t *shape) {
    nam_tensor t;
    int i;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.dtype = dtype;
    t.device = NAM_DEVICE_CUDA;
    t.ndim = ndim < 0 ? 0 : ndim > NAM_MAX_DIMS ? NAM_MAX_DIMS : ndim;
    for (i = 0; i < t.ndim; i++) t.shape[i] = shape ? shape[i] : 0;
    return t;
}

} /* extern "C" */

/* Kernel sections follow: >>cuda-ssd, >>cuda-moe, >>cuda-attention. Each defines its
   extern "C" hooks nam_cuda__* declared in nam.h (NAM_CUDA). */
#ifndef NAM_CUDA_SKIP_SSD
#include "wip/cuda_ssd.cuh"
#endif
#ifndef NAM_CUDA_SKIP_MOE
#include "wip/cuda_moe.cuh"
#endif
#ifndef NAM_CUDA_SKIP_ATTENTION
#include "wip/cuda_attention.cuh"
#endif

/* NAM_CUDA_SKIP_<PART>: build without that part (its hooks say "not implemented"). For
   working on one part at a time. */
#define NAM__CU_SKIPPED(name, ...)                                                                             \
    extern "C" nam_status name(__VA_ARGS__) {                                                                \
        return nam__cu_err(err, NAM_ERR_NOT_IMPLEMENTED, #name ": this build left the kernel out (NAM_CUDA_SKIP_*)"); \
    }
#ifdef NAM_CUDA_SKIP_SSD
NAM__CU_SKIPPED(nam_cuda__ssd_workspace_size, const nam_ssd_desc *, size_t *, nam_error *err)
NAM__CU_SKIPPED(nam_cuda__ssd, nam_ssd_desc *, void *, size_t, nam_error *err)
NAM__CU_SKIPPED(nam_cuda__ssd_step, nam_ssd_step_desc *, nam_error *err)
NAM__CU_SKIPPED(nam_cuda__conv1d, nam_conv1d_desc *, nam_error *err)
#endif
#ifdef NAM_CUDA_SKIP_MOE
NAM__CU_SKIPPED(nam_cuda__moe_route, nam_moe_route_desc *, nam_error *err)
NAM__CU_SKIPPED(nam_cuda__moe_dispatch, nam_moe_dispatch_desc *, nam_error *err)
NAM__CU_SKIPPED(nam_cuda__moe_permute, const nam_tensor *, const nam_moe_dispatch_desc *, nam_tensor *, nam_error *err)
NAM__CU_SKIPPED(nam_cuda__moe_combine, const nam_tensor *, const nam_moe_dispatch_desc *, const nam_tensor *, nam_tensor *, nam_error *err)
NAM__CU_SKIPPED(nam_cuda__moe_ffn_workspace_size, const nam_moe_ffn_desc *, size_t *, nam_error *err)
NAM__CU_SKIPPED(nam_cuda__moe_ffn, nam_moe_ffn_desc *, void *, size_t, nam_error *err)
#endif
#ifdef NAM_CUDA_SKIP_ATTENTION
NAM__CU_SKIPPED(nam_cuda__attention_workspace_size, const nam_attention_desc *, size_t *, nam_error *err)
NAM__CU_SKIPPED(nam_cuda__attention, nam_attention_desc *, void *, size_t, nam_error *err)
#endif

#endif /* NAM_CUDA_IMPLEMENTATION */
