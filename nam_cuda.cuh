/* nam_cuda.cuh - the CUDA side of nam's kernel API.                      STB-style, CUDA C++

   Every kernel entry point of nam.h (>>kernels) runs here, through the hooks of nam.h's
   NAM__CUDA_HOOKS list, when its tensors are CUDA tensors (device = NAM_DEVICE_CUDA) and the
   program was built with NAM_CUDA. The API is the CPU one: the same desc structs and error rules, plus
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
/* NAM__CU_UNUSED: only on the four shared helpers below (contig, ws, align, sm_count), which
   a build that leaves every part out with NAM_CUDA_SKIP_* does not call. */
#if defined(__GNUC__) || defined(__clang__)
#define NAM__CU_UNUSED __attribute__((unused))
#else
#define NAM__CU_UNUSED
#endif

/* Errors: nam__err, nam__ok and nam__err_reset are nam.h's (>>error-helpers, emitted for
   NAM_CUDA_IMPLEMENTATION too); nam__cu_fail adds what a failed CUDA call says. */

/* A failed CUDA runtime call: NAM_ERR_CUDA-like status (NAM_ERR_UNSUPPORTED for "no
   device", NAM_ERR_NOMEM for allocation failures, NAM_ERR_IO otherwise) with the call,
   the CUDA error name and text, and where. */
static nam_status nam__cu_fail(nam_error *e, cudaError_t rc, const char *call, const char *file, int line) {
    nam_status code = NAM_ERR_IO;
    if (rc == cudaErrorMemoryAllocation) code = NAM_ERR_NOMEM;
    else if (rc == cudaErrorNoDevice || rc == cudaErrorInsufficientDriver) code = NAM_ERR_UNSUPPORTED;
    return nam__err(e, code, "CUDA error: %s failed: %s (%s) at %s:%d", call, cudaGetErrorString(rc), cudaGetErrorName(rc), file, line);
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
        return nam__err(err, NAM_ERR_INVALID_ARG, "%s: %s is a CPU tensor, but the call runs on CUDA (every tensor of a call must be on one device)", fn, field);
    for (i = 0; i < t->ndim; i++)
        if (t->stride[i] != 0) zero = 0;
    if (zero) return NAM_OK;
    for (i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] > 1 && t->stride[i] != s)
            return nam__err(err, NAM_ERR_NOT_IMPLEMENTED, "%s: %s.stride[%d] = %lld; the CUDA kernels take contiguous row-major tensors only (expected %lld)", fn,
                               field, i, static_cast<long long>(t->stride[i]), static_cast<long long>(s));
        s *= t->shape[i];
    }
    return NAM_OK;
}

/* Workspace: device memory, 256-byte aligned, at least `need` bytes. */
NAM__CU_UNUSED static nam_status nam__cu_ws(const void *ws, size_t bytes, size_t need, const char *fn, nam_error *err) {
    if (need == 0) return NAM_OK;
    if (!ws) return nam__err(err, NAM_ERR_INVALID_ARG, "%s: workspace is NULL, but %zu bytes are needed (ask *_workspace_size)", fn, need);
    if (reinterpret_cast<uintptr_t>(ws) % 256 != 0)
        return nam__err(err, NAM_ERR_INVALID_ARG, "%s: workspace %p is not 256-byte aligned (cudaMalloc memory is)", fn, ws);
    if (bytes < need) return nam__err(err, NAM_ERR_INVALID_ARG, "%s: workspace_bytes = %zu, need %zu", fn, bytes, need);
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
    if (!count) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_cuda_device_count: count is NULL");
    *count = 0;
    rc = cudaGetDeviceCount(&n);
    if (rc != cudaSuccess) {
        (void)cudaGetLastError();
        return nam__err(err, NAM_ERR_UNSUPPORTED, "no CUDA device: cudaGetDeviceCount failed: %s (%s)", cudaGetErrorString(rc), cudaGetErrorName(rc));
    }
    if (n < 1) return nam__err(err, NAM_ERR_UNSUPPORTED, "no CUDA device: cudaGetDeviceCount reports 0 devices");
    *count = n;
    return nam__ok(err);
}

NAM_API nam_status nam_cuda_malloc(void **ptr, size_t bytes, nam_error *err) {
    if (!ptr) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_cuda_malloc: ptr is NULL");
    *ptr = NULL;
    if (bytes == 0) return nam__ok(err);
    NAM__CU_TRY(err, cudaMalloc(ptr, bytes));
    return nam__ok(err);
}

NAM_API nam_status nam_cuda_free(void *ptr, nam_error *err) {
    if (ptr) NAM__CU_TRY(err, cudaFree(ptr));
    return nam__ok(err);
}

NAM_API nam_status nam_cuda_memcpy(void *dst, const void *src, size_t bytes, nam_cuda_copy kind, void *stream, nam_error *err) {
    cudaMemcpyKind k;
    if (bytes == 0) return nam__ok(err);
    if (!dst || !src) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_cuda_memcpy: %s is NULL", dst ? "src" : "dst");
    switch (kind) {
    case NAM_CUDA_H2D: k = cudaMemcpyHostToDevice; break;
    case NAM_CUDA_D2H: k = cudaMemcpyDeviceToHost; break;
    case NAM_CUDA_D2D: k = cudaMemcpyDeviceToDevice; break;
    default: return nam__err(err, NAM_ERR_INVALID_ARG, "nam_cuda_memcpy: kind = %d is not a nam_cuda_copy", static_cast<int>(kind));
    }
    NAM__CU_TRY(err, cudaMemcpyAsync(dst, src, bytes, k, static_cast<cudaStream_t>(stream)));
    if (kind != NAM_CUDA_D2D) NAM__CU_TRY(err, cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
    return nam__ok(err);
}

NAM_API nam_status nam_cuda_memset(void *dst, int value, size_t bytes, void *stream, nam_error *err) {
    if (bytes == 0) return nam__ok(err);
    if (!dst) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_cuda_memset: dst is NULL");
    NAM__CU_TRY(err, cudaMemsetAsync(dst, value, bytes, static_cast<cudaStream_t>(stream)));
    return nam__ok(err);
}

NAM_API nam_status nam_cuda_sync(void *stream, nam_error *err) {
    NAM__CU_TRY(err, cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
    return nam__ok(err);
}

} /* extern "C" */

/* Kernel sections follow: >>cuda-ssd, >>cuda-moe, >>cuda-attention, >>cuda-m2rnn. Each defines its
   extern "C" hooks nam_cuda__* (nam.h's NAM__CUDA_HOOKS list, which declares them), with
   static kernels and helpers under its own prefix (nam__cu_ssd_, nam__cu_moe_, nam__cu_attn_,
   nam__cu_m2rnn_). A hook receives the desc nam.h validated and resolved (every default
   filled: backend, threads, scale, scaling_factor, chunk_size, dt_max; see the
   nam__*_desc_defaults functions); it fills no default itself and only refuses what the
   CUDA kernels cannot run (dtypes, strides, head dims, grid limits). */
#ifndef NAM_CUDA_SKIP_SSD
/* >>cuda-ssd ------------------------------
   nam_ssd (Mamba-2 chunked SSD scan), nam_ssd_step (one decode token) and nam_conv1d (the
   causal depthwise conv of the Mamba block) on CUDA tensors. Semantics are nam.h's
   (>>kernels doc comments, nam__ssd_ref); nam.h has validated shapes, options and devices.

   Dtypes: x, B, C, z and out share one storage type T (f32, bf16 or f16): the kernels are
   templates on T; any other mix returns NAM_ERR_NOT_IMPLEMENTED naming the field. dt, A,
   D and dt_bias may have any float dtype (nam__cu_load); states are f32. conv1d: x and out
   share T; weight and bias any float dtype. Every tensor must be contiguous
   (nam__cu_contig: NAM_ERR_NOT_IMPLEMENTED naming the stride otherwise).

   nam_ssd: four kernels on d->stream. Q is the chunk, d->chunk_size as nam.h resolved it
   (nam__ssd_chunk: 0 -> 256, a request rounded up to 64, 128 or 256, never more than l
   rounded up to 64, so a multiple of 64 up to 256); the result is the same for any chunk,
   up to rounding.
     1. cumsum   CTA (b, chunk, 32 heads), 256 threads: dt' = clamp(softplus(dt + bias))
                 for the chunk's tokens (staged through shared memory, coalesced over h),
                 then per head a warp scan of dt' * A (fp32), written as dtw[b][h][t] and
                 cum[b][h][t] with t padded to nc * Q (padded tokens: dt' = 0, cum carried).
     2. state    CTA (b, chunk, h, 64 rows of p, 64 columns of n): the chunk's own end
                 state S_c = X^T diag(exp(cum_last - cum_j) dt'_j) B, fp32, to workspace Sc.
     3. passing  CTA (b, h, 256 elements of p x n), sequential over chunks, fp32:
                 S_in(c) = exp(cum_last(c - 1)) S_in(c - 1) + S_c(c - 1) from
                 initial_states (or 0); S_in(c) is stored as T in workspace Sin (the output
                 matmul takes it as a T operand, as Mamba's Triton kernels do); the state
                 after the last chunk is final_states.
     4. scan     CTA (b, chunk, h, 64 columns of p): the chunk's 64-row tiles, last first
                 (so out may alias x: every x row a tile reads is read before its out rows
                 are written), Y = diag(exp(cum_i)) C S_in^T + sum over token tiles j <= i
                 of (C B_j^T .* exp(cum_i - cum_j) dt'_j, causal) X_j, + D x, * silu(z).
   Every exponent is a difference of cumsums in the causal direction (<= 0 when
   A * dt' <= 0) or a cumsum from the start of the chunk: nothing overflows.
   Kernels 2 and 4 come in two versions:
     - bf16 / f16 (n <= 256): tensor cores, mma.sync m16n8k16 with fp32 accumulators,
       4 warps, each owning 16 rows x 64 columns (8 m16n8 tiles); operands come from padded
       shared tiles (row stride = 16 mod 128 bytes: ldmatrix without bank conflicts),
       filled by cp.async 16-byte copies (element copies when a row is not 16-byte aligned
       or n, p is not a multiple of 8; zero-filled past the valid rows and columns). The
       state kernel scales x by exp(cum_last - cum_j) dt'_j on the way into shared memory
       (18.7 KB static). The scan keeps C (the row tile), S_in (once per CTA), B and X (the
       token tile) in 3 * 64 * (n16 + 8) + 64 * 72 T of dynamic shared memory (62 KB at
       n = 128, 111 KB at n = 256; if the device allows less, the SIMT scan runs), turns
       the scaled scores in registers into the A operand of the X product (no shared round
       trip), and on the diagonal tile skips the score columns and k-steps right of each
       warp's rows. __launch_bounds__(128, 3): three CTAs per SM by registers and shared
       memory at n = 128.
     - f32 (and n > 256): fp32 SIMT tiles, 256 threads, 4 x 4 outputs per thread
       (strided ownership: conflict-free shared reads), shared slabs of 32 along k.
   Workspace (nam_cuda__ssd_workspace_size): dtw and cum (b * h * nc * Q floats each), Sc
   (b * nc * h * p * n floats) and Sin (the same count of T), each 256-byte aligned.
   HBM traffic beyond the tensors themselves: x is read twice (kernels 2 and 4) and each
   state element moves 4 + 4 + 2 + 2 bytes per chunk (Sc written and read, Sin written and
   read): at p = 64, n = 128, Q = 256 that is 384 bytes per token and head, about as much
   as x, z and out in bf16 together.

   nam_ssd_step: CTA (b, h, 4 rows of p), 4 warps; a warp owns one row p, its lanes stride
   over n (coalesced), the state row is read and written once, y is a warp sum.
   nam_conv1d: one thread per (b, channel, 64-token segment), coalesced over channels, the
   taps and the input window in registers (w <= 4 unrolled; any w by a generic loop);
   conv_state is read by that kernel and updated afterwards by a second small kernel on
   the same stream (so no thread reads a state slot another has already rewritten). */

#define NAM__CU_SSD_MAXQ 256

struct nam__cu_ssd_args {
    const void *x, *dt, *A, *B, *C, *D, *z, *dt_bias;
    void *out;
    const float *init;
    float *fin;
    float *dtw, *cum, *Sc;
    void *Sin;
    int64_t b, l;
    int h, p, g, n, hpg, Q, nc;
    int dt_type, A_type, D_type, bias_type, D_per_p;
    int softplus, limit;
    float lo, hi;
};

static __device__ __forceinline__ int64_t nam__cu_ssd_min64(int64_t a, int64_t b) { return a < b ? a : b; }
static __device__ __forceinline__ float nam__cu_ssd_silu(float v) { return v / (1.0f + expf(-v)); }

/* dt' from the raw value: + bias, softplus, clamp (NaN stays NaN) */
static __device__ __forceinline__ float nam__cu_ssd_dt(float v, float bias, int softplus, int limit, float lo, float hi) {
    v += bias;
    if (softplus) v = v <= 20.0f ? log1pf(expf(v)) : v;
    if (limit) v = v < lo ? lo : v > hi ? hi : v;
    return v;
}

/* ---- 1. dt' and the chunk cumsum ----------------------------------------------------- */
static __global__ void __launch_bounds__(256) nam__cu_ssd_cumsum_kernel(nam__cu_ssd_args a, int htiles) {
    __shared__ float s[NAM__CU_SSD_MAXQ][33];
    int64_t blk = blockIdx.x;
    const int ht = static_cast<int>(blk % htiles);
    blk /= htiles;
    const int c = static_cast<int>(blk % a.nc);
    const int64_t bi = blk / a.nc;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, h0 = ht * 32, Q = a.Q, E = Q / 32;
    for (int idx = tid; idx < Q * 32; idx += 256) {
        int t = idx >> 5, hh = idx & 31, hi = h0 + hh;
        int64_t tok = static_cast<int64_t>(c) * Q + t;
        float v = 0.0f;
        if (hi < a.h && tok < a.l) {
            float bias = a.dt_bias ? nam__cu_load(a.dt_bias, a.bias_type, hi) : 0.0f;
            v = nam__cu_ssd_dt(nam__cu_load(a.dt, a.dt_type, (bi * a.l + tok) * a.h + hi), bias, a.softplus, a.limit, a.lo, a.hi);
        }
        s[t][hh] = v;
    }
    __syncthreads();
    for (int hh = warp; hh < 32; hh += 8) {
        const int hi = h0 + hh;
        if (hi >= a.h) break;   /* warp-uniform */
        const float Av = nam__cu_load(a.A, a.A_type, hi);
        float loc[NAM__CU_SSD_MAXQ / 32], run = 0.0f, incl;
#pragma unroll
        for (int e = 0; e < NAM__CU_SSD_MAXQ / 32; e++)
            if (e < E) {
                run += s[lane * E + e][hh] * Av;
                loc[e] = run;
            }
        incl = run;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            float y = __shfl_up_sync(0xffffffffu, incl, o);
            if (lane >= o) incl += y;
        }
        const float excl = incl - run;
        const int64_t base = ((bi * a.h + hi) * a.nc + c) * Q;
#pragma unroll
        for (int e = 0; e < NAM__CU_SSD_MAXQ / 32; e++)
            if (e < E) {
                a.cum[base + lane * E + e] = excl + loc[e];
                a.dtw[base + lane * E + e] = s[lane * E + e][hh];
            }
    }
}

/* The tile a CTA of the chunk-state and chunk-output kernels owns: blockIdx.x enumerates
   (b, h, chunk, p-tile, n-tile) with the n-tile fastest (ntiles = 1 for the output). */
struct nam__cu_ssd_cta {
    int nt, pt, c, hi, gi;
    int64_t bh, bi;
};
static __device__ __forceinline__ nam__cu_ssd_cta nam__cu_ssd_cta_of(const nam__cu_ssd_args &a, int ptiles, int ntiles) {
    nam__cu_ssd_cta t;
    int64_t blk = blockIdx.x;
    t.nt = static_cast<int>(blk % ntiles);
    blk /= ntiles;
    t.pt = static_cast<int>(blk % ptiles);
    blk /= ptiles;
    t.c = static_cast<int>(blk % a.nc);
    t.bh = blk / a.nc;
    t.bi = t.bh / a.h;
    t.hi = static_cast<int>(t.bh % a.h);
    t.gi = t.hi / a.hpg;
    return t;
}

/* ---- 2. chunk states, fp32 SIMT ------------------------------------------------------- */
/* CTA: (b, chunk, h, 64 rows of p, 64 columns of n); thread (ty, tx) owns rows ty + 16 r,
   columns tx + 16 q. Token slabs of 32: xs[j][p] = x * w_j, bs[j][n]. */
template <typename T>
static __global__ void __launch_bounds__(256) nam__cu_ssd_state_simt(nam__cu_ssd_args a, int ptiles, int ntiles) {
    __shared__ float xs[32][64], bs[32][64], wj[32];
    const T *X = static_cast<const T *>(a.x), *Bm = static_cast<const T *>(a.B);
    const nam__cu_ssd_cta ct = nam__cu_ssd_cta_of(a, ptiles, ntiles);
    const int nt = ct.nt, pt = ct.pt, c = ct.c, hi = ct.hi, gi = ct.gi, Q = a.Q;
    const int64_t bh = ct.bh, bi = ct.bi;
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4, p0 = pt * 64, n0 = nt * 64;
    const int64_t base = (bh * a.nc + c) * Q, tok0 = static_cast<int64_t>(c) * Q;
    const int Qc = static_cast<int>(nam__cu_ssd_min64(Q, a.l - tok0));
    const float clast = a.cum[base + Q - 1];
    float acc[4][4];
#pragma unroll
    for (int r = 0; r < 4; r++)
#pragma unroll
        for (int q = 0; q < 4; q++) acc[r][q] = 0.0f;
    for (int j0 = 0; j0 < Qc; j0 += 32) {
        __syncthreads();
        if (tid < 32) wj[tid] = j0 + tid < Qc ? expf(clast - a.cum[base + j0 + tid]) * a.dtw[base + j0 + tid] : 0.0f;
        __syncthreads();
        for (int idx = tid; idx < 32 * 64; idx += 256) {
            int jj = idx >> 6, q = idx & 63, j = j0 + jj;
            int64_t tok = tok0 + j;
            xs[jj][q] = j < Qc && p0 + q < a.p ? nam__cu_f(X[((bi * a.l + tok) * a.h + hi) * a.p + p0 + q]) * wj[jj] : 0.0f;
            bs[jj][q] = j < Qc && n0 + q < a.n ? nam__cu_f(Bm[((bi * a.l + tok) * a.g + gi) * a.n + n0 + q]) : 0.0f;
        }
        __syncthreads();
#pragma unroll 4
        for (int jj = 0; jj < 32; jj++) {
            float av[4], bv[4];
#pragma unroll
            for (int r = 0; r < 4; r++) av[r] = xs[jj][ty + 16 * r];
#pragma unroll
            for (int q = 0; q < 4; q++) bv[q] = bs[jj][tx + 16 * q];
#pragma unroll
            for (int r = 0; r < 4; r++)
#pragma unroll
                for (int q = 0; q < 4; q++) acc[r][q] += av[r] * bv[q];
        }
    }
    float *S = a.Sc + ((bi * a.nc + c) * a.h + hi) * static_cast<int64_t>(a.p) * a.n;
#pragma unroll
    for (int r = 0; r < 4; r++)
#pragma unroll
        for (int q = 0; q < 4; q++) {
            int pp = p0 + ty + 16 * r, nn = n0 + tx + 16 * q;
            if (pp < a.p && nn < a.n) S[static_cast<int64_t>(pp) * a.n + nn] = acc[r][q];
        }
}

/* ---- 3. state passing ------------------------------------------------------------------ */
template <typename T>
static __global__ void __launch_bounds__(256) nam__cu_ssd_pass_kernel(nam__cu_ssd_args a, int etiles) {
    int64_t blk = blockIdx.x;
    const int et = static_cast<int>(blk % etiles);
    const int64_t bh = blk / etiles, bi = bh / a.h, pn = static_cast<int64_t>(a.p) * a.n;
    const int hi = static_cast<int>(bh % a.h);
    const int64_t e = static_cast<int64_t>(et) * 256 + threadIdx.x;
    T *Sin = static_cast<T *>(a.Sin);
    if (e >= pn) return;
    float run = a.init ? a.init[bh * pn + e] : 0.0f;
    const float *cl = a.cum + bh * a.nc * a.Q + a.Q - 1;
#pragma unroll 4
    for (int c = 0; c < a.nc; c++) {
        int64_t o = ((bi * a.nc + c) * a.h + hi) * pn + e;
        float sc = a.Sc[o];
        Sin[o] = nam__cu_to<T>(run);
        run = expf(cl[static_cast<int64_t>(c) * a.Q]) * run + sc;
    }
    if (a.fin) a.fin[bh * pn + e] = run;
}

/* ---- 4. chunk output, fp32 SIMT -------------------------------------------------------- */
/* acc[r][q] += As[ty + 16 r][:] . Bs[tx + 16 q][:] over one 32-wide slab (a 64 x 64 tile of
   256 threads, 4 x 4 outputs each). */
static __device__ __forceinline__ void nam__cu_ssd_fma44(float acc[4][4], const float (*As)[33], const float (*Bs)[33], int ty, int tx) {
#pragma unroll 4
    for (int kk = 0; kk < 32; kk++) {
        float av[4], bv[4];
#pragma unroll
        for (int r = 0; r < 4; r++) av[r] = As[ty + 16 * r][kk];
#pragma unroll
        for (int q = 0; q < 4; q++) bv[q] = Bs[tx + 16 * q][kk];
#pragma unroll
        for (int r = 0; r < 4; r++)
#pragma unroll
            for (int q = 0; q < 4; q++) acc[r][q] += av[r] * bv[q];
    }
}

/* CTA: (b, chunk, h, 64 columns of p); 64-row tiles of the chunk, last first. Thread
   (ty, tx) owns rows ty + 16 r and columns tx + 16 q. Shared: ab = C and S_in (or B) slabs
   of 32 along n, [64][33] each; the same floats hold X [64][64] once the scores are in sw. */
template <typename T>
static __global__ void __launch_bounds__(256) nam__cu_ssd_scan_simt(nam__cu_ssd_args a, int ptiles) {
    __shared__ float ab[2 * 64 * 33], sw[64][65], ci[64], cj[64], dj[64];
    const T *X = static_cast<const T *>(a.x), *Bm = static_cast<const T *>(a.B), *Cm = static_cast<const T *>(a.C);
    const T *Z = static_cast<const T *>(a.z), *Sin = static_cast<const T *>(a.Sin);
    T *O = static_cast<T *>(a.out);
    float(*As)[33] = reinterpret_cast<float(*)[33]>(ab);
    float(*Bs)[33] = reinterpret_cast<float(*)[33]>(ab + 64 * 33);
    float(*Xs)[64] = reinterpret_cast<float(*)[64]>(ab);
    const nam__cu_ssd_cta ct = nam__cu_ssd_cta_of(a, ptiles, 1);
    const int pt = ct.pt, c = ct.c, hi = ct.hi, gi = ct.gi, Q = a.Q, p = a.p, n = a.n;
    const int64_t bh = ct.bh, bi = ct.bi;
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4, p0 = pt * 64;
    const int64_t base = (bh * a.nc + c) * Q, tok0 = static_cast<int64_t>(c) * Q;
    const int Qc = static_cast<int>(nam__cu_ssd_min64(Q, a.l - tok0));
    const T *Sc = Sin + ((bi * a.nc + c) * a.h + hi) * static_cast<int64_t>(p) * n;
    float dv[4];
#pragma unroll
    for (int q = 0; q < 4; q++) {
        int pp = p0 + tx + 16 * q;
        dv[q] = a.D && pp < p ? nam__cu_load(a.D, a.D_type, a.D_per_p ? static_cast<int64_t>(hi) * p + pp : hi) : 0.0f;
    }
    for (int mt = (Qc - 1) / 64; mt >= 0; mt--) {
        const int i0 = mt * 64;
        float acc[4][4];
        __syncthreads();
        if (tid < 64) ci[tid] = a.cum[base + i0 + tid];
#pragma unroll
        for (int r = 0; r < 4; r++)
#pragma unroll
            for (int q = 0; q < 4; q++) acc[r][q] = 0.0f;
        /* C_i . S_in over n */
        for (int k0 = 0; k0 < n; k0 += 32) {
            __syncthreads();
            for (int idx = tid; idx < 64 * 32; idx += 256) {
                int r = idx >> 5, kk = idx & 31;
                As[r][kk] = i0 + r < Qc && k0 + kk < n ? nam__cu_f(Cm[((bi * a.l + tok0 + i0 + r) * a.g + gi) * n + k0 + kk]) : 0.0f;
                Bs[r][kk] = p0 + r < p && k0 + kk < n ? nam__cu_f(Sc[static_cast<int64_t>(p0 + r) * n + k0 + kk]) : 0.0f;
            }
            __syncthreads();
            nam__cu_ssd_fma44(acc, As, Bs, ty, tx);
        }
#pragma unroll
        for (int r = 0; r < 4; r++) {
            float e = expf(ci[ty + 16 * r]);
#pragma unroll
            for (int q = 0; q < 4; q++) acc[r][q] *= e;
        }
        /* the chunk's own tokens, 64 at a time up to this tile */
        for (int jt = 0; jt <= mt; jt++) {
            const int j0 = jt * 64;
            float s[4][4];
            __syncthreads();
            if (tid < 64) {
                cj[tid] = a.cum[base + j0 + tid];
                dj[tid] = a.dtw[base + j0 + tid];
            }
#pragma unroll
            for (int r = 0; r < 4; r++)
#pragma unroll
                for (int q = 0; q < 4; q++) s[r][q] = 0.0f;
            for (int k0 = 0; k0 < n; k0 += 32) {
                __syncthreads();
                for (int idx = tid; idx < 64 * 32; idx += 256) {
                    int r = idx >> 5, kk = idx & 31;
                    As[r][kk] = i0 + r < Qc && k0 + kk < n ? nam__cu_f(Cm[((bi * a.l + tok0 + i0 + r) * a.g + gi) * n + k0 + kk]) : 0.0f;
                    Bs[r][kk] = j0 + r < Qc && k0 + kk < n ? nam__cu_f(Bm[((bi * a.l + tok0 + j0 + r) * a.g + gi) * n + k0 + kk]) : 0.0f;
                }
                __syncthreads();
                nam__cu_ssd_fma44(s, As, Bs, ty, tx);
            }
            /* W[i][j] = (C_i . B_j) exp(cum_i - cum_j) dt'_j for j <= i */
#pragma unroll
            for (int r = 0; r < 4; r++)
#pragma unroll
                for (int q = 0; q < 4; q++) {
                    int il = ty + 16 * r, jl = tx + 16 * q;
                    sw[il][jl] = j0 + jl <= i0 + il ? s[r][q] * expf(ci[il] - cj[jl]) * dj[jl] : 0.0f;
                }
            __syncthreads();
            for (int idx = tid; idx < 64 * 64; idx += 256) {
                int r = idx >> 6, q = idx & 63;
                Xs[r][q] = j0 + r < Qc && p0 + q < p ? nam__cu_f(X[((bi * a.l + tok0 + j0 + r) * a.h + hi) * p + p0 + q]) : 0.0f;
            }
            __syncthreads();
#pragma unroll 4
            for (int jj = 0; jj < 64; jj++) {
                float av[4], bv[4];
#pragma unroll
                for (int r = 0; r < 4; r++) av[r] = sw[ty + 16 * r][jj];
#pragma unroll
                for (int q = 0; q < 4; q++) bv[q] = Xs[jj][tx + 16 * q];
#pragma unroll
                for (int r = 0; r < 4; r++)
#pragma unroll
                    for (int q = 0; q < 4; q++) acc[r][q] += av[r] * bv[q];
            }
        }
        /* Xs now holds this tile's own x rows: + D x, * silu(z), store */
#pragma unroll
        for (int r = 0; r < 4; r++)
#pragma unroll
            for (int q = 0; q < 4; q++) {
                int il = ty + 16 * r, pp = p0 + tx + 16 * q;
                if (i0 + il < Qc && pp < p) {
                    int64_t o = ((bi * a.l + tok0 + i0 + il) * a.h + hi) * p + pp;
                    float v = acc[r][q] + dv[q] * Xs[il][tx + 16 * q];
                    if (Z) v *= nam__cu_ssd_silu(nam__cu_f(Z[o]));
                    O[o] = nam__cu_to<T>(v);
                }
            }
    }
}

/* ---- 2 and 4 on tensor cores (bf16 / f16 storage) -------------------------------------- */
/* 16 bytes of T; loads and stores of it compile to 128-bit accesses */
template <typename T> struct __align__(16) nam__cu_ssd_v16 {
    T e[16 / sizeof(T)];
};

/* Copy a rows x cols tile of T (cols % 8 == 0; row r of src at src + r * rstride) into
   shared memory (row stride ldd), zero outside rv rows and cv columns; row r scaled by
   rs[r] when rs is given. vec: 16-byte accesses (then cv % 8 == 0 and src rows 16-byte
   aligned), by cp.async when unscaled; else element by element. Call
   nam__cu_ssd_tile_wait() before the barrier that publishes the tiles. */
template <typename T>
static __device__ __forceinline__ void nam__cu_ssd_tile(T *dst, int ldd, const T *src, int64_t rstride, int rows, int cols, int rv, int cv, int vec,
                                                        const float *rs) {
    const int nth = blockDim.x;
    if (vec && !rs) {   /* cp.async; a chunk outside the valid part reads nothing and is zero-filled */
        const int cpr = cols / 8;
        for (int idx = threadIdx.x; idx < rows * cpr; idx += nth) {
            const int r = idx / cpr, c8 = (idx - r * cpr) * 8;
            const bool ok = r < rv && c8 < cv;
            nam__cu_cp16(dst + r * ldd + c8, ok ? src + r * rstride + c8 : src, ok ? 16 : 0);
        }
    } else if (vec) {
        const int cpr = cols / 8;
        for (int idx = threadIdx.x; idx < rows * cpr; idx += nth) {
            const int r = idx / cpr, c8 = (idx - r * cpr) * 8;
            nam__cu_ssd_v16<T> v;
            if (r < rv && c8 < cv) {
                v = *reinterpret_cast<const nam__cu_ssd_v16<T> *>(src + r * rstride + c8);
                if (rs) {
                    const float f = rs[r];
#pragma unroll
                    for (int k = 0; k < 8; k++) v.e[k] = nam__cu_to<T>(nam__cu_f(v.e[k]) * f);
                }
            } else {
#pragma unroll
                for (int k = 0; k < 8; k++) v.e[k] = nam__cu_to<T>(0.0f);
            }
            *reinterpret_cast<nam__cu_ssd_v16<T> *>(dst + r * ldd + c8) = v;
        }
    } else {
        for (int idx = threadIdx.x; idx < rows * cols; idx += nth) {
            const int r = idx / cols, c = idx - r * cols;
            float v = 0.0f;
            if (r < rv && c < cv) v = nam__cu_f(src[r * rstride + c]) * (rs ? rs[r] : 1.0f);
            dst[r * ldd + c] = nam__cu_to<T>(v);
        }
    }
}

static __device__ __forceinline__ void nam__cu_ssd_tile_wait(void) {
    nam__cu_cp_commit();
    nam__cu_cp_wait<0>();
}

#define NAM__CU_SSD_LDX 72   /* row stride (elements) of 64-wide T tiles: 144 bytes, ldmatrix conflict-free */

/* 2. chunk states on tensor cores. CTA (b, chunk, h, 64 rows of p, 64 columns of n),
   4 warps; warp w owns p rows 16 w .. 16 w + 15 and all 64 n columns (8 m16n8 tiles).
   Per 64-token slab: xs[j][p] = x * w_j (T), bs[j][n]; A = xs^T (ldmatrix.trans),
   B = bs (ldmatrix.trans); k-steps past the chunk's last token are skipped. */
template <typename T>
static __global__ void __launch_bounds__(128) nam__cu_ssd_state_mma(nam__cu_ssd_args a, int ptiles, int ntiles, int vec_x, int vec_b) {
    __shared__ __align__(16) unsigned short xs_raw[64 * NAM__CU_SSD_LDX], bs_raw[64 * NAM__CU_SSD_LDX];
    __shared__ float wj[64];
    T *xs = reinterpret_cast<T *>(xs_raw), *bs = reinterpret_cast<T *>(bs_raw);
    const T *X = static_cast<const T *>(a.x), *Bm = static_cast<const T *>(a.B);
    const nam__cu_ssd_cta ct = nam__cu_ssd_cta_of(a, ptiles, ntiles);
    const int nt = ct.nt, pt = ct.pt, c = ct.c, hi = ct.hi, gi = ct.gi, Q = a.Q;
    const int64_t bh = ct.bh, bi = ct.bi;
    const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5, p0 = pt * 64, n0 = nt * 64;
    const int lr = lane & 7, mat = lane >> 3, g8 = lane >> 2, t4 = lane & 3;
    const int64_t base = (bh * a.nc + c) * Q, tok0 = static_cast<int64_t>(c) * Q;
    const int Qc = static_cast<int>(nam__cu_ssd_min64(Q, a.l - tok0));
    const float clast = a.cum[base + Q - 1];
    float acc[8][4];
#pragma unroll
    for (int q = 0; q < 8; q++)
#pragma unroll
        for (int e = 0; e < 4; e++) acc[q][e] = 0.0f;
    for (int j0 = 0; j0 < Qc; j0 += 64) {
        const int jv = Qc - j0 < 64 ? Qc - j0 : 64;
        __syncthreads();
        if (tid < 64) wj[tid] = tid < jv ? expf(clast - a.cum[base + j0 + tid]) * a.dtw[base + j0 + tid] : 0.0f;
        __syncthreads();
        nam__cu_ssd_tile<T>(xs, NAM__CU_SSD_LDX, X + ((bi * a.l + tok0 + j0) * a.h + hi) * a.p + p0, static_cast<int64_t>(a.h) * a.p, 64, 64, jv, a.p - p0,
                            vec_x, wj);
        nam__cu_ssd_tile<T>(bs, NAM__CU_SSD_LDX, Bm + ((bi * a.l + tok0 + j0) * a.g + gi) * a.n + n0, static_cast<int64_t>(a.g) * a.n, 64, 64, jv, a.n - n0,
                            vec_b, nullptr);
        nam__cu_ssd_tile_wait();
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < 4; kk++)
            if (16 * kk < jv) {
                uint32_t af[4];
                nam__cu_ldsm_x4_t(af, xs + (16 * kk + (mat >> 1) * 8 + lr) * NAM__CU_SSD_LDX + 16 * w + (mat & 1) * 8);
#pragma unroll
                for (int q = 0; q < 4; q++) {
                    uint32_t bf[4];
                    nam__cu_ldsm_x4_t(bf, bs + (16 * kk + (mat & 1) * 8 + lr) * NAM__CU_SSD_LDX + 16 * q + (mat >> 1) * 8);
                    nam__cu_mma<T>(acc[2 * q], af, bf);
                    nam__cu_mma<T>(acc[2 * q + 1], af, bf + 2);
                }
            }
    }
    float *S = a.Sc + ((bi * a.nc + c) * a.h + hi) * static_cast<int64_t>(a.p) * a.n;
#pragma unroll
    for (int q = 0; q < 8; q++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int pp = p0 + 16 * w + g8 + 8 * (e >> 1), nn = n0 + 8 * q + 2 * t4 + (e & 1);
            if (pp < a.p && nn < a.n) S[static_cast<int64_t>(pp) * a.n + nn] = acc[q][e];
        }
}

/* 4. chunk output on tensor cores. CTA (b, chunk, h, 64 columns of p), 4 warps; warp w
   owns rows 16 w .. 16 w + 15 of each 64-row tile (last tile first) and all 64 columns.
   Dynamic shared memory: cs (the tile's C rows), ss (S_in rows of the p columns, loaded
   once), bs (B rows of a token tile), each 64 x (np + 8) T with np = n rounded up to 16;
   xs (x of a token tile, 64 x 72 T); cj, dj (cumsum and dt' of the token tile).
   Per token tile j <= i: scores S = C B^T (m16n8k16, fp32), scaled by
   exp(cum_i - cum_j) dt'_j under the causal mask, packed to T in registers as the A
   operand of acc += S X (no shared-memory round trip); on the diagonal tile a warp
   skips the score columns and k-steps to the right of its rows. */
template <typename T>
static __global__ void __launch_bounds__(128, 3) nam__cu_ssd_scan_mma(nam__cu_ssd_args a, int ptiles, int np, int vec_x, int vec_bc, int pair_out) {
    NAM__CU_DYN_SMEM(T, sm);
    const int ldn = np + 8;
    T *cs = sm, *ss = cs + 64 * ldn, *bs = ss + 64 * ldn, *xs = bs + 64 * ldn;
    float *cj = reinterpret_cast<float *>(xs + 64 * NAM__CU_SSD_LDX), *dj = cj + 64;
    const T *X = static_cast<const T *>(a.x), *Bm = static_cast<const T *>(a.B), *Cm = static_cast<const T *>(a.C);
    const T *Z = static_cast<const T *>(a.z), *Sin = static_cast<const T *>(a.Sin);
    T *O = static_cast<T *>(a.out);
    const nam__cu_ssd_cta ct = nam__cu_ssd_cta_of(a, ptiles, 1);
    const int pt = ct.pt, c = ct.c, hi = ct.hi, gi = ct.gi, Q = a.Q, p = a.p, n = a.n;
    const int64_t bh = ct.bh, bi = ct.bi;
    const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5, p0 = pt * 64;
    const int lr = lane & 7, mat = lane >> 3, g8 = lane >> 2, t4 = lane & 3;
    const int64_t base = (bh * a.nc + c) * Q, tok0 = static_cast<int64_t>(c) * Q, ldt = static_cast<int64_t>(a.g) * n;
    const int Qc = static_cast<int>(nam__cu_ssd_min64(Q, a.l - tok0));
    nam__cu_ssd_tile<T>(ss, ldn, Sin + (((bi * a.nc + c) * a.h + hi) * p + p0) * n, n, 64, np, p - p0, n, (n & 7) == 0, nullptr);
    for (int mt = (Qc - 1) / 64; mt >= 0; mt--) {
        const int i0 = mt * 64, ra = i0 + 16 * w + g8, rb = ra + 8;   /* this thread's rows (chunk-local) */
        const float ca = a.cum[base + ra], cb = a.cum[base + rb];
        float acc[8][4];
        __syncthreads();
        nam__cu_ssd_tile<T>(cs, ldn, Cm + ((bi * a.l + tok0 + i0) * a.g + gi) * n, ldt, 64, np, Qc - i0 < 64 ? Qc - i0 : 64, n, vec_bc, nullptr);
        nam__cu_ssd_tile_wait();   /* also covers ss, issued before the first tile */
        __syncthreads();
#pragma unroll
        for (int q = 0; q < 8; q++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[q][e] = 0.0f;
        /* exp(cum_i) C_i . S_in */
        for (int k0 = 0; k0 < np; k0 += 16) {
            uint32_t af[4];
            nam__cu_ldsm_x4(af, cs + (16 * w + (mat & 1) * 8 + lr) * ldn + k0 + (mat >> 1) * 8);
#pragma unroll
            for (int q = 0; q < 4; q++) {
                uint32_t bf[4];
                nam__cu_ldsm_x4(bf, ss + (16 * q + (mat >> 1) * 8 + lr) * ldn + k0 + (mat & 1) * 8);
                nam__cu_mma<T>(acc[2 * q], af, bf);
                nam__cu_mma<T>(acc[2 * q + 1], af, bf + 2);
            }
        }
        {
            const float ea = expf(ca), eb = expf(cb);
#pragma unroll
            for (int q = 0; q < 8; q++) {
                acc[q][0] *= ea; acc[q][1] *= ea;
                acc[q][2] *= eb; acc[q][3] *= eb;
            }
        }
        for (int jt = 0; jt <= mt; jt++) {
            const int j0 = jt * 64, jv = Qc - j0 < 64 ? Qc - j0 : 64, ntl = jt == mt ? 2 * w + 2 : 8;
            float s[8][4];
            __syncthreads();
            nam__cu_ssd_tile<T>(bs, ldn, Bm + ((bi * a.l + tok0 + j0) * a.g + gi) * n, ldt, 64, np, jv, n, vec_bc, nullptr);
            nam__cu_ssd_tile<T>(xs, NAM__CU_SSD_LDX, X + ((bi * a.l + tok0 + j0) * a.h + hi) * p + p0, static_cast<int64_t>(a.h) * p, 64, 64, jv, p - p0,
                                vec_x, nullptr);
            if (tid < 64) {
                cj[tid] = a.cum[base + j0 + tid];
                dj[tid] = a.dtw[base + j0 + tid];
            }
            nam__cu_ssd_tile_wait();
            __syncthreads();
#pragma unroll
            for (int q = 0; q < 8; q++)
#pragma unroll
                for (int e = 0; e < 4; e++) s[q][e] = 0.0f;
            for (int k0 = 0; k0 < np; k0 += 16) {
                uint32_t af[4];
                nam__cu_ldsm_x4(af, cs + (16 * w + (mat & 1) * 8 + lr) * ldn + k0 + (mat >> 1) * 8);
#pragma unroll
                for (int q = 0; q < 4; q++)
                    if (2 * q < ntl) {
                        uint32_t bf[4];
                        nam__cu_ldsm_x4(bf, bs + (16 * q + (mat >> 1) * 8 + lr) * ldn + k0 + (mat & 1) * 8);
                        nam__cu_mma<T>(s[2 * q], af, bf);
                        nam__cu_mma<T>(s[2 * q + 1], af, bf + 2);
                    }
            }
            /* W[i][j] = S[i][j] exp(cum_i - cum_j) dt'_j for j <= i, else 0 */
#pragma unroll
            for (int q = 0; q < 8; q++)
                if (q < ntl)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int jl = 8 * q + 2 * t4 + e, j = j0 + jl;
                        const float cjv = cj[jl], djv = dj[jl];
                        s[q][e] = j <= ra ? s[q][e] * expf(ca - cjv) * djv : 0.0f;
                        s[q][2 + e] = j <= rb ? s[q][2 + e] * expf(cb - cjv) * djv : 0.0f;
                    }
            /* acc += W X: the m16n8 score tiles 2 kk, 2 kk + 1 are the A fragment of k-step kk */
#pragma unroll
            for (int kk = 0; kk < 4; kk++)
                if (2 * kk < ntl) {
                    uint32_t af[4];
                    af[0] = nam__cu_pack2<T>(s[2 * kk][0], s[2 * kk][1]);
                    af[1] = nam__cu_pack2<T>(s[2 * kk][2], s[2 * kk][3]);
                    af[2] = nam__cu_pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
                    af[3] = nam__cu_pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
                    for (int q = 0; q < 4; q++) {
                        uint32_t bf[4];
                        nam__cu_ldsm_x4_t(bf, xs + (16 * kk + (mat & 1) * 8 + lr) * NAM__CU_SSD_LDX + 16 * q + (mat >> 1) * 8);
                        nam__cu_mma<T>(acc[2 * q], af, bf);
                        nam__cu_mma<T>(acc[2 * q + 1], af, bf + 2);
                    }
                }
        }
        /* xs holds this tile's own x rows: + D x, * silu(z), store */
#pragma unroll
        for (int half = 0; half < 2; half++) {
            const int rl = 16 * w + g8 + 8 * half;
            if (i0 + rl >= Qc) continue;
            const int64_t ro = ((bi * a.l + tok0 + i0 + rl) * a.h + hi) * p;
#pragma unroll
            for (int q = 0; q < 8; q++) {
                const int pl = 8 * q + 2 * t4, pp = p0 + pl;
                float v0 = acc[q][2 * half], v1 = acc[q][2 * half + 1];
                if (a.D) {   /* (h) or (h, p); nothing is read past p */
                    const int64_t di = a.D_per_p ? static_cast<int64_t>(hi) * p + pp : hi;
                    if (pp < p) v0 += nam__cu_load(a.D, a.D_type, di) * nam__cu_f(xs[rl * NAM__CU_SSD_LDX + pl]);
                    if (pp + 1 < p) v1 += nam__cu_load(a.D, a.D_type, di + (a.D_per_p ? 1 : 0)) * nam__cu_f(xs[rl * NAM__CU_SSD_LDX + pl + 1]);
                }
                if (pair_out && pp + 1 < p) {
                    if (Z) {
                        v0 *= nam__cu_ssd_silu(nam__cu_f(Z[ro + pp]));
                        v1 *= nam__cu_ssd_silu(nam__cu_f(Z[ro + pp + 1]));
                    }
                    *reinterpret_cast<uint32_t *>(O + ro + pp) = nam__cu_pack2<T>(v0, v1);
                } else {
                    if (pp < p) O[ro + pp] = nam__cu_to<T>(Z ? v0 * nam__cu_ssd_silu(nam__cu_f(Z[ro + pp])) : v0);
                    if (pp + 1 < p) O[ro + pp + 1] = nam__cu_to<T>(Z ? v1 * nam__cu_ssd_silu(nam__cu_f(Z[ro + pp + 1])) : v1);
                }
            }
        }
    }
}

#define NAM__CU_SSD_MMA_MAXN 256   /* the tensor-core scan keeps 3 x 64 x (n + 8) T in shared memory */

static size_t nam__cu_ssd_scan_smem(int np) {
    return (3 * 64 * static_cast<size_t>(np + 8) + 64 * NAM__CU_SSD_LDX) * 2 + 2 * 64 * sizeof(float);
}

/* ---- host side -------------------------------------------------------------------------- */
struct nam__cu_ssd_plan {
    nam__cu_ssd_args a;
    size_t esz, off_dtw, off_cum, off_sc, off_sin, total;
    int mma, vec_x, vec_bc, pair_out;   /* tensor-core kernels; 16-byte loads of x, of B and C; paired out stores */
};

static int nam__cu_ssd_al(const void *ptr, unsigned bytes) { return reinterpret_cast<uintptr_t>(ptr) % bytes == 0; }

static size_t nam__cu_ssd_esize(nam_dtype t) { return t == NAM_F32 ? 4 : 2; }

/* one storage dtype for the big tensors */
static nam_status nam__cu_ssd_same_dtype(const char *fn, const nam_tensor *x, const nam_tensor *t, const char *field, nam_error *err) {
    if (t->data && t->dtype != x->dtype)
        return nam__err(err, NAM_ERR_NOT_IMPLEMENTED, "%s: %s has dtype %s but x has dtype %s; the CUDA kernels need x, B, C, z and out in one dtype", fn,
                           field, nam_dtype_name(t->dtype), nam_dtype_name(x->dtype));
    return NAM_OK;
}

#define NAM__CU_SSD_TRY(call)                     \
    do {                                          \
        nam_status st_ = (call);                  \
        if (st_ != NAM_OK) return st_;            \
    } while (0)

static nam_status nam__cu_ssd_prepare(const nam_ssd_desc *d, const char *fn, nam__cu_ssd_plan *pl, nam_error *err) {
    static const char *const names[11] = {"x", "dt", "A", "B", "C", "D", "z", "dt_bias", "initial_states", "out", "final_states"};
    const nam_tensor *ts[11] = {&d->x, &d->dt, &d->A, &d->B, &d->C, &d->D, &d->z, &d->dt_bias, &d->initial_states, &d->out, &d->final_states};
    nam__cu_ssd_args *a = &pl->a;
    int64_t cnt, sn;
    int i;
    for (i = 0; i < 11; i++) NAM__CU_SSD_TRY(nam__cu_contig(ts[i], fn, names[i], err));
    NAM__CU_SSD_TRY(nam__cu_ssd_same_dtype(fn, &d->x, &d->B, "B", err));
    NAM__CU_SSD_TRY(nam__cu_ssd_same_dtype(fn, &d->x, &d->C, "C", err));
    NAM__CU_SSD_TRY(nam__cu_ssd_same_dtype(fn, &d->x, &d->z, "z", err));
    NAM__CU_SSD_TRY(nam__cu_ssd_same_dtype(fn, &d->x, &d->out, "out", err));
    memset(pl, 0, sizeof *pl);
    a->b = d->x.shape[0];
    a->l = d->x.shape[1];
    a->h = static_cast<int>(d->x.shape[2]);
    a->p = static_cast<int>(d->x.shape[3]);
    a->g = static_cast<int>(d->B.shape[2]);
    a->n = static_cast<int>(d->B.shape[3]);
    a->hpg = a->h / a->g;
    a->Q = d->chunk_size;   /* resolved by nam.h (nam__ssd_chunk): a multiple of 64, at most 256 */
    if (a->Q < 64 || a->Q > 256 || a->Q % 64 != 0)
        return nam__err(err, NAM_ERR_INVALID_ARG, "%s: chunk_size = %d; the CUDA kernels run chunks of 64, 128, 192 or 256 (nam.h resolves the desc)", fn, a->Q);
    if ((a->l + a->Q - 1) / a->Q > INT32_MAX)
        return nam__err(err, NAM_ERR_LIMIT, "%s: x.shape[1] (l) = %lld makes more than 2^31 chunks", fn, static_cast<long long>(a->l));
    a->nc = static_cast<int>((a->l + a->Q - 1) / a->Q);
    /* the largest grid: the scan's b * h * nc * ceil(p / 64) CTAs, the state's * ceil(n / 64) */
    cnt = a->b * a->h * static_cast<int64_t>(a->nc) * ((a->p + 63) / 64) * ((a->n + 63) / 64);
    sn = a->b * a->h * ((static_cast<int64_t>(a->p) * a->n + 255) / 256);
    if (cnt > INT32_MAX || sn > INT32_MAX)
        return nam__err(err, NAM_ERR_LIMIT, "%s: b * h * chunks * tiles = %lld is above the CUDA grid limit 2^31 - 1", fn,
                           static_cast<long long>(cnt > sn ? cnt : sn));
    pl->esz = nam__cu_ssd_esize(d->x.dtype);
    cnt = a->b * a->h * static_cast<int64_t>(a->nc) * a->Q;               /* dtw, cum */
    sn = a->b * a->h * static_cast<int64_t>(a->nc) * a->p * a->n;          /* chunk states */
    pl->off_dtw = 0;
    pl->off_cum = pl->off_dtw + nam__cu_align(sizeof(float) * static_cast<size_t>(cnt));
    pl->off_sc = pl->off_cum + nam__cu_align(sizeof(float) * static_cast<size_t>(cnt));
    pl->off_sin = pl->off_sc + nam__cu_align(sizeof(float) * static_cast<size_t>(sn));
    pl->total = pl->off_sin + nam__cu_align(pl->esz * static_cast<size_t>(sn));
    a->x = d->x.data;
    a->dt = d->dt.data;
    a->A = d->A.data;
    a->B = d->B.data;
    a->C = d->C.data;
    a->D = d->D.data;
    a->z = d->z.data;
    a->dt_bias = d->dt_bias.data;
    a->out = d->out.data;
    a->init = static_cast<const float *>(d->initial_states.data);
    a->fin = static_cast<float *>(d->final_states.data);
    a->dt_type = d->dt.dtype;
    a->A_type = d->A.dtype;
    a->D_type = d->D.dtype;
    a->bias_type = d->dt_bias.dtype;
    a->D_per_p = d->D.data && d->D.ndim == 2;
    a->softplus = d->dt_softplus != 0;
    a->limit = d->dt_min != 0.0f || d->dt_max != 0.0f;
    a->lo = d->dt_min;
    a->hi = d->dt_max;   /* resolved by nam.h: +inf for no upper limit */
    pl->mma = d->x.dtype != NAM_F32 && a->n <= NAM__CU_SSD_MMA_MAXN;
    pl->vec_x = a->p % 8 == 0 && nam__cu_ssd_al(a->x, 16);
    pl->vec_bc = a->n % 8 == 0 && nam__cu_ssd_al(a->B, 16) && nam__cu_ssd_al(a->C, 16);
    pl->pair_out = a->p % 2 == 0 && nam__cu_ssd_al(a->out, 4);
    return NAM_OK;
}

template <typename T> static nam_status nam__cu_ssd_run(nam__cu_ssd_plan *pl, cudaStream_t stream, nam_error *err) {
    nam__cu_ssd_args a = pl->a;
    (void)stream;   /* unused by the emulator's launch */
    const int htiles = (a.h + 31) / 32, ptiles = (a.p + 63) / 64, ntiles = (a.n + 63) / 64;
    const int etiles = static_cast<int>((static_cast<int64_t>(a.p) * a.n + 255) / 256);
    const int64_t bh = a.b * a.h;
    NAM__CU_LAUNCH(err, nam__cu_ssd_cumsum_kernel, dim3(static_cast<unsigned>(a.b * a.nc * htiles)), dim3(256), 0, stream, a, htiles);
    if constexpr (sizeof(T) == 2) {
        if (pl->mma) {
            auto k = nam__cu_ssd_state_mma<T>;
            NAM__CU_LAUNCH(err, k, dim3(static_cast<unsigned>(bh * a.nc * ptiles * ntiles)), dim3(128), 0, stream, a, ptiles, ntiles, pl->vec_x, pl->vec_bc);
        }
    }
    if (!pl->mma) {
        auto k = nam__cu_ssd_state_simt<T>;
        NAM__CU_LAUNCH(err, k, dim3(static_cast<unsigned>(bh * a.nc * ptiles * ntiles)), dim3(256), 0, stream, a, ptiles, ntiles);
    }
    {
        auto k = nam__cu_ssd_pass_kernel<T>;
        NAM__CU_LAUNCH(err, k, dim3(static_cast<unsigned>(bh * etiles)), dim3(256), 0, stream, a, etiles);
    }
    int scan_mma = 0;
    if constexpr (sizeof(T) == 2) {
        const int np = (a.n + 15) / 16 * 16;
        const size_t smem = nam__cu_ssd_scan_smem(np);
        int dev = 0, optin = 0;
        /* the shared memory a block may opt into: 227 KB on sm_90, 163 KB on sm_80, 99 KB on sm_86/89 */
        NAM__CU_TRY(err, cudaGetDevice(&dev));
        NAM__CU_TRY(err, cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
        scan_mma = pl->mma && smem <= static_cast<size_t>(optin);
        if (scan_mma) {
            auto k = nam__cu_ssd_scan_mma<T>;
            /* the attribute is per function for the whole process: always the largest value
               this device allows (not this call's n), so a concurrent call from another host
               thread with a smaller n cannot lower it under our launch */
            const size_t most = nam__cu_ssd_scan_smem(NAM__CU_SSD_MMA_MAXN);
            const size_t attr = most <= static_cast<size_t>(optin) ? most : static_cast<size_t>(optin);   /* >= smem */
            NAM__CU_TRY(err, cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(attr)));
            NAM__CU_LAUNCH(err, k, dim3(static_cast<unsigned>(bh * a.nc * ptiles)), dim3(128), smem, stream, a, ptiles, np, pl->vec_x, pl->vec_bc,
                           pl->pair_out);
        }
    }
    if (!scan_mma) {
        auto k = nam__cu_ssd_scan_simt<T>;
        NAM__CU_LAUNCH(err, k, dim3(static_cast<unsigned>(bh * a.nc * ptiles)), dim3(256), 0, stream, a, ptiles);
    }
    return nam__ok(err);
}

extern "C" nam_status nam_cuda__ssd_workspace_size(const nam_ssd_desc *d, size_t *bytes, nam_error *err) {
    nam__cu_ssd_plan pl;
    *bytes = 0;
    NAM__CU_SSD_TRY(nam__cu_ssd_prepare(d, "nam_ssd_workspace_size", &pl, err));
    *bytes = pl.total;
    return nam__ok(err);
}

extern "C" nam_status nam_cuda__ssd(const nam_ssd_desc *d, void *workspace, size_t workspace_bytes, nam_error *err) {
    nam__cu_ssd_plan pl;
    char *ws = static_cast<char *>(workspace);
    cudaStream_t stream = static_cast<cudaStream_t>(d->stream);
    NAM__CU_SSD_TRY(nam__cu_ssd_prepare(d, "nam_ssd", &pl, err));
    NAM__CU_SSD_TRY(nam__cu_ws(workspace, workspace_bytes, pl.total, "nam_ssd", err));
    pl.a.dtw = reinterpret_cast<float *>(ws + pl.off_dtw);
    pl.a.cum = reinterpret_cast<float *>(ws + pl.off_cum);
    pl.a.Sc = reinterpret_cast<float *>(ws + pl.off_sc);
    pl.a.Sin = ws + pl.off_sin;
    switch (d->x.dtype) {
    case NAM_F32: return nam__cu_ssd_run<float>(&pl, stream, err);
    case NAM_BF16: return nam__cu_ssd_run<nam__cu_bf16>(&pl, stream, err);
    case NAM_F16: return nam__cu_ssd_run<nam__cu_f16>(&pl, stream, err);
    default: return nam__err(err, NAM_ERR_NOT_IMPLEMENTED, "nam_ssd: x dtype %s is not supported on CUDA", nam_dtype_name(d->x.dtype));
    }
}

/* ---- nam_ssd_step ----------------------------------------------------------------------- */
struct nam__cu_ssd_step_args {
    const void *x, *dt, *A, *B, *C, *D, *z, *dt_bias;
    void *out;
    float *state;
    int64_t b;
    int h, p, g, n, hpg, ptiles;
    int dt_type, A_type, D_type, bias_type, D_per_p;
    int softplus, limit;
    float lo, hi;
};

template <typename T>
static __global__ void __launch_bounds__(128) nam__cu_ssd_step_kernel(nam__cu_ssd_step_args a) {
    const T *X = static_cast<const T *>(a.x), *Bm = static_cast<const T *>(a.B), *Cm = static_cast<const T *>(a.C), *Z = static_cast<const T *>(a.z);
    T *O = static_cast<T *>(a.out);
    int64_t blk = blockIdx.x;
    const int pt = static_cast<int>(blk % a.ptiles);
    const int64_t bh = blk / a.ptiles, bi = bh / a.h;
    const int hi = static_cast<int>(bh % a.h), gi = hi / a.hpg, lane = threadIdx.x & 31, pi = pt * 4 + static_cast<int>(threadIdx.x >> 5);
    if (pi >= a.p) return;   /* whole warps */
    const float bias = a.dt_bias ? nam__cu_load(a.dt_bias, a.bias_type, hi) : 0.0f;
    const float dtv = nam__cu_ssd_dt(nam__cu_load(a.dt, a.dt_type, bh), bias, a.softplus, a.limit, a.lo, a.hi);
    const float dA = expf(dtv * nam__cu_load(a.A, a.A_type, hi));
    const int64_t xo = bh * a.p + pi, go = (bi * a.g + gi) * a.n;
    const float xv = nam__cu_f(X[xo]), dx = dtv * xv;
    float *s = a.state + xo * a.n;
    float y = 0.0f;
    for (int k = lane; k < a.n; k += 32) {
        float sv = dA * s[k] + dx * nam__cu_f(Bm[go + k]);
        s[k] = sv;
        y += nam__cu_f(Cm[go + k]) * sv;
    }
    y = nam__cu_warp_sum(y);
    if (lane == 0) {
        if (a.D) y += nam__cu_load(a.D, a.D_type, a.D_per_p ? static_cast<int64_t>(hi) * a.p + pi : hi) * xv;
        if (Z) y *= nam__cu_ssd_silu(nam__cu_f(Z[xo]));
        O[xo] = nam__cu_to<T>(y);
    }
}

extern "C" nam_status nam_cuda__ssd_step(const nam_ssd_step_desc *d, nam_error *err) {
    static const char *const names[10] = {"x", "dt", "A", "B", "C", "D", "z", "dt_bias", "state", "out"};
    const nam_tensor *ts[10] = {&d->x, &d->dt, &d->A, &d->B, &d->C, &d->D, &d->z, &d->dt_bias, &d->state, &d->out};
    const char *fn = "nam_ssd_step";
    cudaStream_t stream = static_cast<cudaStream_t>(d->stream);
    nam__cu_ssd_step_args a;
    (void)stream;
    int64_t blocks;
    int i;
    for (i = 0; i < 10; i++) NAM__CU_SSD_TRY(nam__cu_contig(ts[i], fn, names[i], err));
    NAM__CU_SSD_TRY(nam__cu_ssd_same_dtype(fn, &d->x, &d->B, "B", err));
    NAM__CU_SSD_TRY(nam__cu_ssd_same_dtype(fn, &d->x, &d->C, "C", err));
    NAM__CU_SSD_TRY(nam__cu_ssd_same_dtype(fn, &d->x, &d->z, "z", err));
    NAM__CU_SSD_TRY(nam__cu_ssd_same_dtype(fn, &d->x, &d->out, "out", err));
    memset(&a, 0, sizeof a);
    a.b = d->x.shape[0];
    a.h = static_cast<int>(d->x.shape[1]);
    a.p = static_cast<int>(d->x.shape[2]);
    a.g = static_cast<int>(d->B.shape[1]);
    a.n = static_cast<int>(d->B.shape[2]);
    a.hpg = a.h / a.g;
    a.ptiles = (a.p + 3) / 4;
    blocks = a.b * a.h * a.ptiles;
    if (blocks > INT32_MAX)
        return nam__err(err, NAM_ERR_LIMIT, "%s: b * h * ceil(p / 4) = %lld is above the CUDA grid limit 2^31 - 1", fn, static_cast<long long>(blocks));
    a.x = d->x.data;
    a.dt = d->dt.data;
    a.A = d->A.data;
    a.B = d->B.data;
    a.C = d->C.data;
    a.D = d->D.data;
    a.z = d->z.data;
    a.dt_bias = d->dt_bias.data;
    a.out = d->out.data;
    a.state = static_cast<float *>(d->state.data);
    a.dt_type = d->dt.dtype;
    a.A_type = d->A.dtype;
    a.D_type = d->D.dtype;
    a.bias_type = d->dt_bias.dtype;
    a.D_per_p = d->D.data && d->D.ndim == 2;
    a.softplus = d->dt_softplus != 0;
    a.limit = d->dt_min != 0.0f || d->dt_max != 0.0f;
    a.lo = d->dt_min;
    a.hi = d->dt_max;   /* resolved by nam.h: +inf for no upper limit */
    switch (d->x.dtype) {
    case NAM_F32: { auto k = nam__cu_ssd_step_kernel<float>; NAM__CU_LAUNCH(err, k, dim3(static_cast<unsigned>(blocks)), dim3(128), 0, stream, a); break; }
    case NAM_BF16: { auto k = nam__cu_ssd_step_kernel<nam__cu_bf16>; NAM__CU_LAUNCH(err, k, dim3(static_cast<unsigned>(blocks)), dim3(128), 0, stream, a); break; }
    case NAM_F16: { auto k = nam__cu_ssd_step_kernel<nam__cu_f16>; NAM__CU_LAUNCH(err, k, dim3(static_cast<unsigned>(blocks)), dim3(128), 0, stream, a); break; }
    default: return nam__err(err, NAM_ERR_NOT_IMPLEMENTED, "%s: x dtype %s is not supported on CUDA", fn, nam_dtype_name(d->x.dtype));
    }
    return nam__ok(err);
}

/* ---- nam_conv1d ------------------------------------------------------------------------- */
#define NAM__CU_SSD_CONV_T 64   /* tokens per thread */

struct nam__cu_ssd_conv_args {
    const void *x, *weight, *bias;
    void *out;
    float *state;
    int64_t b, l, ch;
    int w, silu, w_type, bias_type, cblocks, segs;
};

/* W > 0: taps unrolled, window in registers; W == 0: any w, inputs re-read (L1). */
template <typename T, int W>
static __global__ void __launch_bounds__(128) nam__cu_ssd_conv_kernel(nam__cu_ssd_conv_args a) {
    const T *X = static_cast<const T *>(a.x);
    T *O = static_cast<T *>(a.out);
    int64_t blk = blockIdx.x;
    const int cb = static_cast<int>(blk % a.cblocks);
    blk /= a.cblocks;
    const int seg = static_cast<int>(blk % a.segs);
    const int64_t bi = blk / a.segs, ci = static_cast<int64_t>(cb) * 128 + threadIdx.x;
    if (ci >= a.ch) return;
    const int64_t t0 = static_cast<int64_t>(seg) * NAM__CU_SSD_CONV_T, t1 = nam__cu_ssd_min64(a.l, t0 + NAM__CU_SSD_CONV_T);
    const int w = W > 0 ? W : a.w;
    const float bias = a.bias ? nam__cu_load(a.bias, a.bias_type, ci) : 0.0f;
    const float *st = a.state ? a.state + (bi * a.ch + ci) * (w - 1) : nullptr;
    const int64_t xs = a.ch, xb = bi * a.l * a.ch + ci;
    if (W > 0) {
        float wv[W > 0 ? W : 1], win[W > 0 ? W : 1];
#pragma unroll
        for (int k = 0; k < W; k++) wv[k] = nam__cu_load(a.weight, a.w_type, ci * W + k);
#pragma unroll
        for (int k = 0; k + 1 < W; k++) {   /* input at t0 - (W - 1) + k */
            int64_t s = t0 - (W - 1) + k;
            win[k + 1] = s >= 0 ? nam__cu_f(X[xb + s * xs]) : st ? st[W - 1 + s] : 0.0f;
        }
        for (int64_t t = t0; t < t1; t++) {
            float acc = bias;
#pragma unroll
            for (int k = 0; k + 1 < W; k++) win[k] = win[k + 1];
            win[W - 1] = nam__cu_f(X[xb + t * xs]);
#pragma unroll
            for (int k = 0; k < W; k++) acc += wv[k] * win[k];
            if (a.silu) acc = nam__cu_ssd_silu(acc);
            O[xb + t * xs] = nam__cu_to<T>(acc);
        }
    } else {
        for (int64_t t = t0; t < t1; t++) {
            float acc = bias;
            for (int k = 0; k < w; k++) {
                int64_t s = t - (w - 1) + k;
                float v = s >= 0 ? nam__cu_f(X[xb + s * xs]) : st ? st[w - 1 + s] : 0.0f;
                acc += nam__cu_load(a.weight, a.w_type, ci * w + k) * v;
            }
            if (a.silu) acc = nam__cu_ssd_silu(acc);
            O[xb + t * xs] = nam__cu_to<T>(acc);
        }
    }
}

/* conv_state <- the last w - 1 inputs (after the conv kernel, same stream) */
template <typename T>
static __global__ void __launch_bounds__(128) nam__cu_ssd_conv_state_kernel(nam__cu_ssd_conv_args a) {
    const T *X = static_cast<const T *>(a.x);
    const int64_t i = static_cast<int64_t>(blockIdx.x) * 128 + threadIdx.x;
    if (i >= a.b * a.ch) return;
    const int64_t bi = i / a.ch, ci = i % a.ch;
    const int w1 = a.w - 1;
    float *st = a.state + i * w1;
    for (int k = 0; k < w1; k++) {   /* increasing k never reads a slot already rewritten */
        int64_t s = a.l + k - w1;
        st[k] = s >= 0 ? nam__cu_f(X[(bi * a.l + s) * a.ch + ci]) : st[w1 + s];
    }
}

template <typename T> static nam_status nam__cu_ssd_conv_run(const nam__cu_ssd_conv_args &a, cudaStream_t stream, nam_error *err) {
    const unsigned blocks = static_cast<unsigned>(a.b * a.segs * a.cblocks);
    (void)stream;
    switch (a.w) {
    case 1: { auto k = nam__cu_ssd_conv_kernel<T, 1>; NAM__CU_LAUNCH(err, k, dim3(blocks), dim3(128), 0, stream, a); break; }
    case 2: { auto k = nam__cu_ssd_conv_kernel<T, 2>; NAM__CU_LAUNCH(err, k, dim3(blocks), dim3(128), 0, stream, a); break; }
    case 3: { auto k = nam__cu_ssd_conv_kernel<T, 3>; NAM__CU_LAUNCH(err, k, dim3(blocks), dim3(128), 0, stream, a); break; }
    case 4: { auto k = nam__cu_ssd_conv_kernel<T, 4>; NAM__CU_LAUNCH(err, k, dim3(blocks), dim3(128), 0, stream, a); break; }
    default: { auto k = nam__cu_ssd_conv_kernel<T, 0>; NAM__CU_LAUNCH(err, k, dim3(blocks), dim3(128), 0, stream, a); break; }
    }
    if (a.state) {
        auto k = nam__cu_ssd_conv_state_kernel<T>;
        NAM__CU_LAUNCH(err, k, dim3(static_cast<unsigned>((a.b * a.ch + 127) / 128)), dim3(128), 0, stream, a);
    }
    return nam__ok(err);
}

extern "C" nam_status nam_cuda__conv1d(const nam_conv1d_desc *d, nam_error *err) {
    static const char *const names[5] = {"x", "weight", "bias", "conv_state", "out"};
    const nam_tensor *ts[5] = {&d->x, &d->weight, &d->bias, &d->conv_state, &d->out};
    const char *fn = "nam_conv1d";
    cudaStream_t stream = static_cast<cudaStream_t>(d->stream);
    nam__cu_ssd_conv_args a;
    int64_t blocks;
    int i;
    for (i = 0; i < 5; i++) NAM__CU_SSD_TRY(nam__cu_contig(ts[i], fn, names[i], err));
    if (d->out.dtype != d->x.dtype)
        return nam__err(err, NAM_ERR_NOT_IMPLEMENTED, "%s: out has dtype %s but x has dtype %s; the CUDA kernel needs x and out in one dtype", fn,
                           nam_dtype_name(d->out.dtype), nam_dtype_name(d->x.dtype));
    memset(&a, 0, sizeof a);
    a.b = d->x.shape[0];
    a.l = d->x.shape[1];
    a.ch = d->x.shape[2];
    a.w = static_cast<int>(d->weight.shape[1]);
    a.silu = d->silu != 0;
    a.x = d->x.data;
    a.weight = d->weight.data;
    a.bias = d->bias.data;
    a.out = d->out.data;
    a.state = static_cast<float *>(d->conv_state.data);
    a.w_type = d->weight.dtype;
    a.bias_type = d->bias.dtype;
    a.cblocks = static_cast<int>((a.ch + 127) / 128);
    a.segs = static_cast<int>((a.l + NAM__CU_SSD_CONV_T - 1) / NAM__CU_SSD_CONV_T);
    blocks = a.b * a.segs * a.cblocks;
    if (a.ch > INT32_MAX || a.l / NAM__CU_SSD_CONV_T > INT32_MAX || blocks > INT32_MAX || (a.b * a.ch + 127) / 128 > INT32_MAX)
        return nam__err(err, NAM_ERR_LIMIT, "%s: b * ceil(l / 64) * ceil(c / 128) = %lld is above the CUDA grid limit 2^31 - 1", fn,
                           static_cast<long long>(blocks));
    switch (d->x.dtype) {
    case NAM_F32: return nam__cu_ssd_conv_run<float>(a, stream, err);
    case NAM_BF16: return nam__cu_ssd_conv_run<nam__cu_bf16>(a, stream, err);
    case NAM_F16: return nam__cu_ssd_conv_run<nam__cu_f16>(a, stream, err);
    default: return nam__err(err, NAM_ERR_NOT_IMPLEMENTED, "%s: x dtype %s is not supported on CUDA", fn, nam_dtype_name(d->x.dtype));
    }
}
#endif
#ifndef NAM_CUDA_SKIP_MOE
/* >>cuda-moe ------------------------------------------------------------------------------ */
/* MoE on CUDA: router, dispatch plan, permute, combine and the grouped expert FFN, with
   the semantics of nam.h's >>kernel-moe CPU code (bit-exact where the CPU is exact).

   Router     one warp per token. E <= 1024: the warp holds the E selection scores in
              registers (E / 32 rounded up to a power of two per lane) and runs k rounds
              of a warp arg-max (score descending, ties to the lower expert id), so the
              output order is the CPU's insertion-sort order. E > 1024: each round
              streams the logits again and takes the best score strictly after the
              previous winner in that order (O(k E / 32) per lane: the slow path; its
              weights run as a second small kernel).
              Softmax and sigmoid are computed in double from the max-shifted logits, as
              the CPU does, so the selection sees the CPU's float scores. Non-finite
              logits are NOT checked on the GPU (the CPU returns NAM_ERR_RANGE): they
              give unspecified indices (-1 or in 0..E-1) and weights, never an
              out-of-bounds access.
   Dispatch   a stable counting sort of the T*k entries by expert id, in tiles of 2048
              entries (8 warps x 8 rounds of 32). Each warp walks its 256 entries in order
              and ranks each entry among the same expert's earlier entries with
              __match_any_sync and a per-warp counter in shared memory; a per-expert scan
              over the warps gives the rank inside the tile and the tile's histogram. A
              column scan over the tiles (per expert) and a scan over the experts (with
              the capacity clip) give offsets; then every entry goes to
              offsets[e] + tile prefix + rank when that is below the kept count. So the
              arrays are bit-identical to the CPU's: rows ascending within an expert,
              the first `cap` entries in (t, slot) order kept, counts = kept rows, rows
              past offsets[E] = -1.
              T*k <= 2048 (decode): one fused block does it all, no scratch.
              E > 2048: two LSD radix passes of 11 bits each (the same tile kernels),
              then a compaction that applies the capacity.
              Dispatch SYNCHRONISES d->stream: num_rows and num_dropped are host ints.
              Scratch (tile ranks and histograms, when T*k > 2048 or E > 2048) is the
              caller's: d->workspace, nam_moe_dispatch_workspace_size bytes. Out-of-range expert ids: the smallest
              offending linear index t*k+slot is found with an atomic max of (T*k - i),
              and the call returns NAM_ERR_RANGE with the CPU's message (the outputs are
              then unspecified).
   Permute    one group of G threads per row (G a power of two sized so every thread
              copies about 4 vectors), the widest vector (16, 8, 4 or 2 bytes) that the
              row size and pointers allow; dtype-converting copies go element by element.
              Device plans are trusted (nam.h does not read them back): permute and
              combine only skip row ids / expert ids outside their ranges, so a foreign
              plan cannot make them access memory out of bounds.
   Combine    one block per token: warp 0 finds the rows of its k slots by binary search
              in each expert's sorted segment of `rows` (as the CPU), then every thread
              accumulates 8 columns (16-byte loads, 4 slots in flight) in slot order in
              fp32. The first kept slot is assigned, later ones added, with
              __fmul_rn/__fadd_rn (no FMA contraction): bit-identical to the CPU.
   Expert FFN one grouped GEMM kernel, C[rows, N] = epilogue(A[rows, K] . W_e[N, K]^T),
              run twice: in . [W1; W3]^T -> h (SwiGLU or squared ReLU fused in the
              epilogue) and h . W2^T -> out. CTA tile 128 x 128 x 32, 8 warps (2 x 4,
              warp tile 64 x 32), mma.sync m16n8k16 (bf16/f16 in, fp32 accumulate),
              ldmatrix from XOR-swizzled shared memory, a 4-stage cp.async pipeline
              (64 KB of dynamic shared memory), __launch_bounds__(256, 2): 124 registers
              (sm_80 / sm_90a, no spills), two CTAs per SM. For SwiGLU the B tile holds 64 rows of W1
              and the same 64 rows of W3, and each warp owns matching W1 / W3 columns, so
              silu(g) * u is formed in registers (CTA output 128 x 64 of h). Tiles are
              (expert, 128-row tile, n-tile): a small kernel scans ceil(count_e / 128)
              over the experts; each CTA finds its expert by binary search; CTAs past the
              last tile exit. Rows of another expert, and K / N tails, are zero-filled
              (cp.async src-size); K * 2 bytes not a multiple of 16 (or unaligned
              pointers) take an element-wise loader. h lives in the workspace in the
              storage dtype (the CPU keeps it in fp32: one more rounding; with f16 an h
              beyond 65504 becomes inf); silu uses fp32 expf (the CPU: double).
              Workspace: h (in.shape[0] x F, storage dtype) + (E + 1) ints of tile starts. */

#include <limits.h>

/* ---- small device helpers -------------------------------------------------------------- */
#ifdef NAM_CUDA_EMULATE
struct alignas(16) nam__cu_moe_u4 { uint32_t x, y, z, w; };
struct alignas(8) nam__cu_moe_u2 { uint32_t x, y; };
#else
typedef uint4 nam__cu_moe_u4;
typedef uint2 nam__cu_moe_u2;
#endif

static __device__ __forceinline__ float nam__cu_moe_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static __device__ __forceinline__ uint32_t nam__cu_moe_fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Exclusive prefix sum of v over the block (blockDim.x a multiple of 32); *total gets the
   block sum. sm: 32 ints of shared memory. Every thread of the block must call it. */
static __device__ __forceinline__ int nam__cu_moe_block_scan(int v, int *total, int *sm) {
    const int lane = static_cast<int>(threadIdx.x) & 31, warp = static_cast<int>(threadIdx.x) >> 5;
    const int nw = static_cast<int>(blockDim.x) >> 5;
    int x = v, o, base;
    for (o = 1; o < 32; o <<= 1) {
        int y = __shfl_up_sync(0xffffffffu, x, o);
        if (lane >= o) x += y;
    }
    if (lane == 31) sm[warp] = x;
    __syncthreads();
    if (warp == 0) {
        int s = lane < nw ? sm[lane] : 0;
        for (o = 1; o < 32; o <<= 1) {
            int y = __shfl_up_sync(0xffffffffu, s, o);
            if (lane >= o) s += y;
        }
        sm[lane] = s;
    }
    __syncthreads();
    base = warp ? sm[warp - 1] : 0;
    *total = sm[nw - 1];
    __syncthreads();
    return base + x - v;
}

static __device__ __forceinline__ double nam__cu_moe_warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* ==== router ============================================================================== */
#define NAM__CU_MOE_RT_WARPS 4
enum { NAM__CU_MOE_RT_SOFTMAX = 0, NAM__CU_MOE_RT_PRESOFTMAX = 1, NAM__CU_MOE_RT_SIGMOID = 2 };

struct nam__cu_moe_rt_args {
    const void *logits;
    const void *bias;     /* NULL: none */
    int bias_dt;
    int32_t *idx;
    float *w;
    long long T;
    int E, k, mode;
    float scale;
};

/* (va, ia) comes before (vb, ib) in the output order: score descending, then id ascending;
   an id < 0 means "none". */
static __device__ __forceinline__ bool nam__cu_moe_before(float va, int ia, float vb, int ib) {
    return ia >= 0 && (ib < 0 || va > vb || (va == vb && ia < ib));
}

/* the winner over the warp: every lane gets the same (v, i) */
static __device__ __forceinline__ void nam__cu_moe_warp_best(float &v, int &i) {
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, v, o);
        int oi = __shfl_xor_sync(0xffffffffu, i, o);
        if (nam__cu_moe_before(ov, oi, v, i)) {
            v = ov;
            i = oi;
        }
    }
}

/* The selection score of logit l of expert e (mx, sum: the softmax shift and sum). */
static __device__ __forceinline__ float nam__cu_moe_score(const nam__cu_moe_rt_args &a, float l, int e, double mx, double sum) {
    if (a.mode == NAM__CU_MOE_RT_SIGMOID) {
        float v = static_cast<float>(__drcp_rn(1.0 + exp(-static_cast<double>(l))));   /* = 1 / (1 + e^-l), IEEE rounded */
        if (a.bias) v += nam__cu_load(a.bias, a.bias_dt, e);
        return v;
    }
    if (a.mode == NAM__CU_MOE_RT_PRESOFTMAX) return static_cast<float>(exp(static_cast<double>(l) - mx) / sum);
    return l;
}

/* Weights from the raw scores the selection wrote (each lane handles the slots it wrote:
   j = lane, lane + 32, ...). top: slot 0's score. */
template <typename TL>
static __device__ __forceinline__ void nam__cu_moe_route_weights(const nam__cu_moe_rt_args &a, const TL *lrow, int32_t *ir, float *wr, float top) {
    const int lane = static_cast<int>(threadIdx.x) & 31;
    int j;
    if (a.mode == NAM__CU_MOE_RT_SOFTMAX) {
        double z = 0.0;
        for (j = lane; j < a.k; j += 32) z += exp(static_cast<double>(wr[j]) - static_cast<double>(top));
        z = nam__cu_moe_warp_sum_d(z);
        for (j = lane; j < a.k; j += 32) wr[j] = static_cast<float>(exp(static_cast<double>(wr[j]) - static_cast<double>(top)) / z);
    } else if (a.mode == NAM__CU_MOE_RT_SIGMOID) {
        double z = 0.0;
        for (j = lane; j < a.k; j += 32) {
            int e = ir[j];
            float s = e >= 0 ? static_cast<float>(1.0 / (1.0 + exp(-static_cast<double>(nam__cu_f(lrow[e]))))) : 0.0f;
            wr[j] = s;
            z += static_cast<double>(s);
        }
        z = nam__cu_moe_warp_sum_d(z);
        if (a.k > 1)
            for (j = lane; j < a.k; j += 32) wr[j] = static_cast<float>(static_cast<double>(wr[j]) / (z + 1e-20));
    }
    if (a.scale != 1.0f)
        for (j = lane; j < a.k; j += 32) wr[j] *= a.scale;
}

/* E <= 32 * NV: scores in registers. */
template <typename TL, int NV>
static __global__ void __launch_bounds__(32 * NAM__CU_MOE_RT_WARPS) nam__cu_moe_route_reg(nam__cu_moe_rt_args a) {
    const int lane = static_cast<int>(threadIdx.x) & 31;
    const long long t = static_cast<long long>(blockIdx.x) * NAM__CU_MOE_RT_WARPS + (threadIdx.x >> 5);
    const TL *lrow;
    int32_t *ir;
    float *wr;
    float v[NV], mxf = -INFINITY, top = 0.0f;
    double mx, sum = 0.0;
    unsigned taken = 0;
    int q, r;
    if (t >= a.T) return;   /* the whole warp leaves together */
    lrow = static_cast<const TL *>(a.logits) + t * a.E;
    ir = a.idx + t * a.k;
    wr = a.w + t * a.k;
#pragma unroll
    for (q = 0; q < NV; q++) {
        int e = lane + 32 * q;
        v[q] = e < a.E ? nam__cu_f(lrow[e]) : 0.0f;
        if (e < a.E) mxf = fmaxf(mxf, v[q]);
        else taken |= 1u << q;
    }
    if (a.mode == NAM__CU_MOE_RT_PRESOFTMAX) {
        mx = static_cast<double>(nam__cu_warp_max(mxf));
#pragma unroll
        for (q = 0; q < NV; q++)
            if (!((taken >> q) & 1u)) sum += exp(static_cast<double>(v[q]) - mx);
        sum = nam__cu_moe_warp_sum_d(sum);
    } else mx = 0.0;
#pragma unroll
    for (q = 0; q < NV; q++)
        if (!((taken >> q) & 1u)) v[q] = nam__cu_moe_score(a, v[q], lane + 32 * q, mx, sum);
    for (r = 0; r < a.k; r++) {
        float bv = 0.0f;
        int bi = -1;
#pragma unroll
        for (q = 0; q < NV; q++)
            if (!((taken >> q) & 1u) && (bi < 0 || v[q] > bv)) {
                bv = v[q];
                bi = lane + 32 * q;
            }
        nam__cu_moe_warp_best(bv, bi);
        if (bi >= 0 && (bi & 31) == lane) taken |= 1u << (bi >> 5);
        if (r == 0) top = bv;
        if ((r & 31) == lane) {
            ir[r] = bi;
            wr[r] = bv;
        }
    }
    nam__cu_moe_route_weights<TL>(a, lrow, ir, wr, top);
}

/* Any E: k rounds over the streamed logits. */
template <typename TL>
static __global__ void __launch_bounds__(32 * NAM__CU_MOE_RT_WARPS) nam__cu_moe_route_stream(nam__cu_moe_rt_args a) {
    const int lane = static_cast<int>(threadIdx.x) & 31;
    const long long t = static_cast<long long>(blockIdx.x) * NAM__CU_MOE_RT_WARPS + (threadIdx.x >> 5);
    const TL *lrow;
    int32_t *ir;
    float *wr;
    float pv = 0.0f;
    double mx = 0.0, sum = 0.0;
    int pi = -1, e, r;
    if (t >= a.T) return;
    lrow = static_cast<const TL *>(a.logits) + t * a.E;
    ir = a.idx + t * a.k;
    wr = a.w + t * a.k;
    if (a.mode == NAM__CU_MOE_RT_PRESOFTMAX) {
        float m = -INFINITY;
        for (e = lane; e < a.E; e += 32) m = fmaxf(m, nam__cu_f(lrow[e]));
        mx = static_cast<double>(nam__cu_warp_max(m));
        for (e = lane; e < a.E; e += 32) sum += exp(static_cast<double>(nam__cu_f(lrow[e])) - mx);
        sum = nam__cu_moe_warp_sum_d(sum);
    }
    for (r = 0; r < a.k; r++) {
        float bv = 0.0f;
        int bi = -1;
        for (e = lane; e < a.E; e += 32) {
            float s = nam__cu_moe_score(a, nam__cu_f(lrow[e]), e, mx, sum);
            if (r > 0 && !nam__cu_moe_before(pv, pi, s, e)) continue;   /* not after the previous winner */
            if (bi < 0 || s > bv) {
                bv = s;
                bi = e;
            }
        }
        nam__cu_moe_warp_best(bv, bi);   /* bi < 0 only with NaN scores: then -1 from here on */
        if ((r & 31) == lane) {
            ir[r] = bi;
            wr[r] = bv;
        }
        pv = bv;
        pi = bi;
    }
}

/* The weights of the streaming path, in a kernel of their own (inlined into the selection
   loop they cost register spills). top = slot 0's score, written by the selection. */
template <typename TL>
static __global__ void __launch_bounds__(32 * NAM__CU_MOE_RT_WARPS) nam__cu_moe_route_wk(nam__cu_moe_rt_args a) {
    const long long t = static_cast<long long>(blockIdx.x) * NAM__CU_MOE_RT_WARPS + (threadIdx.x >> 5);
    if (t >= a.T) return;
    nam__cu_moe_route_weights<TL>(a, static_cast<const TL *>(a.logits) + t * a.E, a.idx + t * a.k, a.w + t * a.k, a.w[t * a.k]);
}

template <typename TL>
static nam_status nam__cu_moe_route_launch(const nam__cu_moe_rt_args &a, cudaStream_t st, nam_error *err) {
    (void)st;   /* unused by the emulator's launch */
    const unsigned blocks = static_cast<unsigned>((a.T + NAM__CU_MOE_RT_WARPS - 1) / NAM__CU_MOE_RT_WARPS);
    const unsigned threads = 32 * NAM__CU_MOE_RT_WARPS;
    if (a.E <= 32) { auto kf = nam__cu_moe_route_reg<TL, 1>; NAM__CU_LAUNCH(err, kf, blocks, threads, 0, st, a); }
    else if (a.E <= 64) { auto kf = nam__cu_moe_route_reg<TL, 2>; NAM__CU_LAUNCH(err, kf, blocks, threads, 0, st, a); }
    else if (a.E <= 128) { auto kf = nam__cu_moe_route_reg<TL, 4>; NAM__CU_LAUNCH(err, kf, blocks, threads, 0, st, a); }
    else if (a.E <= 256) { auto kf = nam__cu_moe_route_reg<TL, 8>; NAM__CU_LAUNCH(err, kf, blocks, threads, 0, st, a); }
    else if (a.E <= 512) { auto kf = nam__cu_moe_route_reg<TL, 16>; NAM__CU_LAUNCH(err, kf, blocks, threads, 0, st, a); }
    else if (a.E <= 1024) { auto kf = nam__cu_moe_route_reg<TL, 32>; NAM__CU_LAUNCH(err, kf, blocks, threads, 0, st, a); }
    else {
        auto kf = nam__cu_moe_route_stream<TL>;
        auto kw = nam__cu_moe_route_wk<TL>;
        NAM__CU_LAUNCH(err, kf, blocks, threads, 0, st, a);
        NAM__CU_LAUNCH(err, kw, blocks, threads, 0, st, a);
    }
    return NAM_OK;
}

extern "C" nam_status nam_cuda__moe_route(const nam_moe_route_desc *d, nam_error *err) {
    static const char *const fn = "nam_moe_route";
    nam__cu_moe_rt_args a;
    nam_status s;
    cudaStream_t st = static_cast<cudaStream_t>(d->stream);
    if ((s = nam__cu_contig(&d->logits, fn, "logits", err))) return s;
    if ((s = nam__cu_contig(&d->expert_bias, fn, "expert_bias", err))) return s;
    if ((s = nam__cu_contig(&d->topk_idx, fn, "topk_idx", err))) return s;
    if ((s = nam__cu_contig(&d->topk_weight, fn, "topk_weight", err))) return s;
    if (d->logits.shape[1] > INT_MAX) return nam__err(err, NAM_ERR_LIMIT, "%s: logits.shape[1] (E) = %lld exceeds %d", fn, static_cast<long long>(d->logits.shape[1]), INT_MAX);
    a.logits = d->logits.data;
    a.bias = d->expert_bias.data;
    a.bias_dt = static_cast<int>(d->expert_bias.dtype);
    a.idx = static_cast<int32_t *>(d->topk_idx.data);
    a.w = static_cast<float *>(d->topk_weight.data);
    a.T = static_cast<long long>(d->logits.shape[0]);
    a.E = static_cast<int>(d->logits.shape[1]);
    a.k = d->topk;
    a.mode = d->score == NAM_MOE_SIGMOID ? NAM__CU_MOE_RT_SIGMOID : d->pre_softmax ? NAM__CU_MOE_RT_PRESOFTMAX : NAM__CU_MOE_RT_SOFTMAX;
    a.scale = d->scaling_factor;   /* resolved by nam.h (0 -> 1) */
    if ((a.T + NAM__CU_MOE_RT_WARPS - 1) / NAM__CU_MOE_RT_WARPS > INT_MAX)
        return nam__err(err, NAM_ERR_LIMIT, "%s: logits.shape[0] (T) = %lld is too many tokens for one launch", fn, a.T);
    if (d->logits.dtype == NAM_BF16) s = nam__cu_moe_route_launch<nam__cu_bf16>(a, st, err);
    else if (d->logits.dtype == NAM_F16) s = nam__cu_moe_route_launch<nam__cu_f16>(a, st, err);
    else s = nam__cu_moe_route_launch<float>(a, st, err);
    if (s) return s;
    return nam__ok(err);
}

/* ==== dispatch ============================================================================ */
#define NAM__CU_MOE_DT_WARPS 8
#define NAM__CU_MOE_DT_ITEMS 8                                                      /* rounds of 32 per warp */
#define NAM__CU_MOE_DT_TILE (NAM__CU_MOE_DT_WARPS * 32 * NAM__CU_MOE_DT_ITEMS)     /* 2048 entries */
#define NAM__CU_MOE_DT_MAXB 2048                                                    /* buckets per pass */
#define NAM__CU_MOE_DT_BITS 11

/* Rank the entries of one warp's 256 in order: r-th round entry p = base + 32 r + lane with
   bucket dg[r] (-1: none) gets rank rk[r] among the warp's earlier entries of its bucket;
   wc: the warp's bucket counters (shared). */
static __device__ __forceinline__ void nam__cu_moe_rank_round(int d, int *wc, int &rk) {
    const int lane = static_cast<int>(threadIdx.x) & 31;
    const unsigned lt = (1u << lane) - 1u;
    const unsigned peers = __match_any_sync(0xffffffffu, d);
    const int base = d >= 0 ? wc[d] : 0;
    rk = base + __popc(peers & lt);
    __syncwarp();
    if (d >= 0 && (peers & lt) == 0) wc[d] = base + __popc(peers);
    __syncwarp();
}

/* The bucket of position p of the current order (src NULL: the identity), or -1; *ent
   gets the entry (linear t * k + slot). Bad expert ids are recorded in *bad (max of n - i,
   i.e. the smallest i) and in hist (per-expert counts) when given. */
static __device__ __forceinline__ int nam__cu_moe_bucket(const int32_t *idx, int n, const int32_t *src, int E, int shift, int mask, long long p, int *hist,
                                                         int *bad, int *ent) {
    int i, e;
    *ent = -1;
    if (p >= n) return -1;
    i = src ? src[p] : static_cast<int>(p);
    if (i < 0 || i >= n) return -1;
    e = idx[i];
    if (e < 0 || e >= E) {
        if (bad) atomicMax(bad, n - i);
        return -1;
    }
    *ent = i;
    if (hist) atomicAdd(&hist[e], 1);
    return (e >> shift) & mask;
}

/* Pass kernel 1: per tile, rank[p] = rank of p among the tile's earlier entries of its
   bucket; mat[tile][b] = the tile's count of bucket b. Dynamic smem: WARPS * nb ints. */
static __global__ void __launch_bounds__(NAM__CU_MOE_DT_WARPS * 32)
    nam__cu_moe_rank_tiles(const int32_t *idx, int n, const int32_t *src, int E, int shift, int mask, int nb, int *rank, int *mat, int *hist, int *bad) {
    NAM__CU_DYN_SMEM(int, cnt);
    const int lane = static_cast<int>(threadIdx.x) & 31, warp = static_cast<int>(threadIdx.x) >> 5;
    const long long base = static_cast<long long>(blockIdx.x) * NAM__CU_MOE_DT_TILE + warp * (32 * NAM__CU_MOE_DT_ITEMS) + lane;
    int *wc = cnt + warp * nb;
    int dg[NAM__CU_MOE_DT_ITEMS], rk[NAM__CU_MOE_DT_ITEMS], i, r, ent;
    for (i = static_cast<int>(threadIdx.x); i < NAM__CU_MOE_DT_WARPS * nb; i += static_cast<int>(blockDim.x)) cnt[i] = 0;
    __syncthreads();
#pragma unroll
    for (r = 0; r < NAM__CU_MOE_DT_ITEMS; r++) {
        dg[r] = nam__cu_moe_bucket(idx, n, src, E, shift, mask, base + 32 * r, hist, bad, &ent);
        nam__cu_moe_rank_round(dg[r], wc, rk[r]);
    }
    __syncthreads();
    for (i = static_cast<int>(threadIdx.x); i < nb; i += static_cast<int>(blockDim.x)) {
        int s = 0, w;
        for (w = 0; w < NAM__CU_MOE_DT_WARPS; w++) {
            int c = cnt[w * nb + i];
            cnt[w * nb + i] = s;
            s += c;
        }
        mat[static_cast<long long>(blockIdx.x) * nb + i] = s;
    }
    __syncthreads();
#pragma unroll
    for (r = 0; r < NAM__CU_MOE_DT_ITEMS; r++)
        if (base + 32 * r < n) rank[base + 32 * r] = dg[r] >= 0 ? rk[r] + wc[dg[r]] : 0;
}

/* Pass kernel 2: mat[tile][b] -> exclusive prefix over the tiles; tot[b] = the total.
   Block (32, 32): 32 buckets x 32 contiguous tile segments. */
static __global__ void __launch_bounds__(1024) nam__cu_moe_scan_tiles(int *mat, int nt, int nb, int *tot) {
    __shared__ int part[32][33];
    const int x = static_cast<int>(threadIdx.x), y = static_cast<int>(threadIdx.y);
    const int b = static_cast<int>(blockIdx.x) * 32 + x;
    const int len = (nt + 31) / 32, t0 = y * len, t1 = t0 + len < nt ? t0 + len : nt;
    int s = 0, t;
    if (b < nb)
        for (t = t0; t < t1; t++) s += mat[static_cast<long long>(t) * nb + b];
    part[y][x] = s;
    __syncthreads();
    if (y == 0) {
        int run = 0, yy;
        for (yy = 0; yy < 32; yy++) {
            int c = part[yy][x];
            part[yy][x] = run;
            run += c;
        }
        if (b < nb) tot[b] = run;
    }
    __syncthreads();
    s = part[y][x];
    if (b < nb)
        for (t = t0; t < t1; t++) {
            long long q = static_cast<long long>(t) * nb + b;
            int c = mat[q];
            mat[q] = s;
            s += c;
        }
}

/* Scan kernel (one block of 1024): kept[i] = min(tot[i], cap) (kept may alias tot),
   off[i] = exclusive sum of kept, off[n] = the total, or -(i + 1) when *bad names entry
   i as a bad expert id; uoff (optional) the same of tot, uncapped. */
#define NAM__CU_MOE_SCAN_THREADS 1024
#define NAM__CU_MOE_SCAN_ITEMS 4
static __global__ void __launch_bounds__(NAM__CU_MOE_SCAN_THREADS)
    nam__cu_moe_scan_counts(const int *tot, int n, long long cap, int *kept, int *off, int *uoff, const int *bad, int entries) {
    __shared__ int sm[32];
    const int tid = static_cast<int>(threadIdx.x);
    int carry = 0, ucarry = 0, b0, q;
    for (b0 = 0; b0 < n; b0 += NAM__CU_MOE_SCAN_THREADS * NAM__CU_MOE_SCAN_ITEMS) {
        int c[NAM__CU_MOE_SCAN_ITEMS], kc[NAM__CU_MOE_SCAN_ITEMS], sk = 0, su = 0, tk, tu = 0, ek, eu = 0;
        const int i0 = b0 + tid * NAM__CU_MOE_SCAN_ITEMS;
#pragma unroll
        for (q = 0; q < NAM__CU_MOE_SCAN_ITEMS; q++) {
            c[q] = i0 + q < n ? tot[i0 + q] : 0;
            kc[q] = static_cast<long long>(c[q]) < cap ? c[q] : static_cast<int>(cap);
            sk += kc[q];
            su += c[q];
        }
        ek = nam__cu_moe_block_scan(sk, &tk, sm);
        if (uoff) eu = nam__cu_moe_block_scan(su, &tu, sm);
#pragma unroll
        for (q = 0; q < NAM__CU_MOE_SCAN_ITEMS; q++)
            if (i0 + q < n) {
                if (kept) kept[i0 + q] = kc[q];
                off[i0 + q] = carry + ek;
                if (uoff) uoff[i0 + q] = ucarry + eu;
                ek += kc[q];
                eu += c[q];
            }
        carry += tk;
        ucarry += tu;
    }
    if (tid == 0) {
        off[n] = bad && *bad > 0 ? -(entries - *bad) - 1 : carry;
        if (uoff) uoff[n] = ucarry;
    }
}

/* One radix pass's scatter: dst[dbase[b] + mat[tile][b] + rank[p]] = entry. */
static __global__ void nam__cu_moe_scatter(const int32_t *idx, int n, const int32_t *src, int E, int shift, int mask, int nb, const int *rank, const int *mat,
                                           const int *dbase, int32_t *dst) {
    const long long p = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
    int ent, b = nam__cu_moe_bucket(idx, n, src, E, shift, mask, p, NULL, NULL, &ent);
    if (b < 0) return;
    dst[dbase[b] + mat[(p / NAM__CU_MOE_DT_TILE) * nb + b] + rank[p]] = ent;
}

/* Single pass (E <= 2048): entry p goes to rows[off[e] + r], r = its rank in expert e, when
   r < kept[e]; rows past off[E] get -1. */
static __global__ void nam__cu_moe_place(const int32_t *idx, int n, int E, const int *rank, const int *mat, const int32_t *kept, const int32_t *off, int32_t *rows) {
    const long long p = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
    int e, nr;
    if (p >= n) return;
    nr = off[E];
    e = idx[p];
    if (e >= 0 && e < E) {
        int r = mat[(p / NAM__CU_MOE_DT_TILE) * E + e] + rank[p];
        if (r < kept[e]) rows[off[e] + r] = static_cast<int32_t>(p);
    }
    if (nr >= 0 && p >= nr) rows[p] = -1;
}

/* After the radix passes: sorted lists the entries by expert (stable); position p of
   expert e has rank p - uoff[e]. */
static __global__ void nam__cu_moe_compact(const int32_t *idx, int n, int E, const int32_t *sorted, const int *uoff, const int32_t *kept, const int32_t *off,
                                           int32_t *rows) {
    const long long p = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
    int i, nr;
    if (p >= n) return;
    nr = off[E];
    i = sorted[p];
    if (i >= 0 && i < n) {
        int e = idx[i];
        if (e >= 0 && e < E) {
            long long r = p - uoff[e];
            if (r >= 0 && r < kept[e]) rows[off[e] + r] = i;
        }
    }
    if (nr >= 0 && p >= nr) rows[p] = -1;
}

/* n <= 2048 entries and E <= 2048: one block does the whole plan. Dynamic smem:
   (WARPS + 1) * E + 1 ints. */
static __global__ void __launch_bounds__(NAM__CU_MOE_DT_WARPS * 32)
    nam__cu_moe_dispatch_small(const int32_t *idx, int n, int E, long long cap, int32_t *counts, int32_t *offsets, int32_t *rows) {
    NAM__CU_DYN_SMEM(int, cnt);
    __shared__ int sm[32];
    __shared__ int sbad, snr;
    const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
    const int base = warp * (32 * NAM__CU_MOE_DT_ITEMS) + lane;
    int *wc = cnt + warp * E, *offs = cnt + NAM__CU_MOE_DT_WARPS * E;
    int dg[NAM__CU_MOE_DT_ITEMS], rk[NAM__CU_MOE_DT_ITEMS], ent[NAM__CU_MOE_DT_ITEMS], i, r, carry = 0, e0;
    for (i = tid; i < NAM__CU_MOE_DT_WARPS * E; i += static_cast<int>(blockDim.x)) cnt[i] = 0;
    if (tid == 0) sbad = 0;
    __syncthreads();
#pragma unroll
    for (r = 0; r < NAM__CU_MOE_DT_ITEMS; r++) {
        dg[r] = nam__cu_moe_bucket(idx, n, NULL, E, 0, -1, base + 32 * r, NULL, &sbad, &ent[r]);
        nam__cu_moe_rank_round(dg[r], wc, rk[r]);
    }
    __syncthreads();
    /* per expert: exclusive over the warps, the capacity clip, the scan over experts */
    for (e0 = 0; e0 < E; e0 += static_cast<int>(blockDim.x)) {
        const int e = e0 + tid;
        int s = 0, kc = 0, ex, tk, w;
        if (e < E) {
            for (w = 0; w < NAM__CU_MOE_DT_WARPS; w++) {
                int c = cnt[w * E + e];
                cnt[w * E + e] = s;
                s += c;
            }
            kc = static_cast<long long>(s) < cap ? s : static_cast<int>(cap);
        }
        ex = nam__cu_moe_block_scan(kc, &tk, sm);
        if (e < E) {
            offs[e] = carry + ex;
            offsets[e] = carry + ex;
            counts[e] = kc;
        }
        carry += tk;
    }
    if (tid == 0) {
        offs[E] = carry;
        snr = sbad > 0 ? -(n - sbad) - 1 : carry;
        offsets[E] = snr;
    }
    __syncthreads();
#pragma unroll
    for (r = 0; r < NAM__CU_MOE_DT_ITEMS; r++) {
        const int d = dg[r];
        if (d >= 0) {
            int rr = rk[r] + wc[d];
            if (rr < offs[d + 1] - offs[d]) rows[offs[d] + rr] = ent[r];
        }
    }
    if (snr >= 0)
        for (i = snr + tid; i < n; i += static_cast<int>(blockDim.x)) rows[i] = -1;
}

/* The kernels of a dispatch that needs scratch (n > one tile, or E > 2048). */
static nam_status nam__cu_moe_dispatch_tiled(const int32_t *idx, int n, int E, long long cap, int32_t *counts, int32_t *offsets, int32_t *rows, char *scratch,
                                             cudaStream_t st, nam_error *err) {
    /* n may be up to INT32_MAX: round up in 64 bits */
    const int nt = static_cast<int>((static_cast<long long>(n) + NAM__CU_MOE_DT_TILE - 1) / NAM__CU_MOE_DT_TILE);
    const unsigned nblk = static_cast<unsigned>((static_cast<long long>(n) + 255) / 256);
    const dim3 scan_blk(32, 32);
    int *rank = reinterpret_cast<int *>(scratch);
    int *bad = rank + n;
    int *mat = bad + 1;
    const int nb1 = E <= NAM__CU_MOE_DT_MAXB ? E : NAM__CU_MOE_DT_MAXB;
    size_t smem = sizeof(int) * NAM__CU_MOE_DT_WARPS * static_cast<size_t>(nb1);
    /* the attribute is per function for the whole process: always the same (largest) value,
       so concurrent calls from other host threads cannot lower it under us */
    NAM__CU_TRY(err, cudaFuncSetAttribute(nam__cu_moe_rank_tiles, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(sizeof(int) * NAM__CU_MOE_DT_WARPS * NAM__CU_MOE_DT_MAXB)));
    NAM__CU_TRY(err, cudaMemsetAsync(bad, 0, sizeof(int), st));
    if (E <= NAM__CU_MOE_DT_MAXB) {
        NAM__CU_LAUNCH(err, nam__cu_moe_rank_tiles, nt, NAM__CU_MOE_DT_WARPS * 32, smem, st, idx, n, static_cast<const int32_t *>(NULL), E, 0, -1, E, rank, mat,
                       static_cast<int *>(NULL), bad);
        NAM__CU_LAUNCH(err, nam__cu_moe_scan_tiles, static_cast<unsigned>((E + 31) / 32), scan_blk, 0, st, mat, nt, E, counts);
        NAM__CU_LAUNCH(err, nam__cu_moe_scan_counts, 1, NAM__CU_MOE_SCAN_THREADS, 0, st, counts, E, cap, counts, offsets, static_cast<int *>(NULL), bad, n);
        NAM__CU_LAUNCH(err, nam__cu_moe_place, nblk, 256, 0, st, idx, n, E, rank, mat, counts, offsets, rows);
        return NAM_OK;
    }
    {
        /* LSD radix: low 11 bits, then the rest (E <= 2^22) */
        const int nb2 = ((E - 1) >> NAM__CU_MOE_DT_BITS) + 1;
        int32_t *p1 = mat + static_cast<size_t>(nt) * NAM__CU_MOE_DT_MAXB;
        int32_t *p2 = p1 + n;
        int *dtot = p2 + n;
        int *dbase = dtot + NAM__CU_MOE_DT_MAXB;
        int *hist = dbase + NAM__CU_MOE_DT_MAXB + 1;
        int *uoff = hist + E;
        NAM__CU_TRY(err, cudaMemsetAsync(hist, 0, sizeof(int) * static_cast<size_t>(E), st));
        NAM__CU_LAUNCH(err, nam__cu_moe_rank_tiles, nt, NAM__CU_MOE_DT_WARPS * 32, smem, st, idx, n, static_cast<const int32_t *>(NULL), E, 0,
                       NAM__CU_MOE_DT_MAXB - 1, NAM__CU_MOE_DT_MAXB, rank, mat, hist, bad);
        NAM__CU_LAUNCH(err, nam__cu_moe_scan_tiles, static_cast<unsigned>(NAM__CU_MOE_DT_MAXB / 32), scan_blk, 0, st, mat, nt, NAM__CU_MOE_DT_MAXB, dtot);
        NAM__CU_LAUNCH(err, nam__cu_moe_scan_counts, 1, NAM__CU_MOE_SCAN_THREADS, 0, st, dtot, NAM__CU_MOE_DT_MAXB, static_cast<long long>(INT_MAX),
                       static_cast<int *>(NULL), dbase, static_cast<int *>(NULL), static_cast<const int *>(NULL), n);
        NAM__CU_LAUNCH(err, nam__cu_moe_scatter, nblk, 256, 0, st, idx, n, static_cast<const int32_t *>(NULL), E, 0, NAM__CU_MOE_DT_MAXB - 1,
                       NAM__CU_MOE_DT_MAXB, rank, mat, dbase, p1);
        NAM__CU_LAUNCH(err, nam__cu_moe_rank_tiles, nt, NAM__CU_MOE_DT_WARPS * 32, sizeof(int) * NAM__CU_MOE_DT_WARPS * static_cast<size_t>(nb2), st, idx, n,
                       static_cast<const int32_t *>(p1), E, NAM__CU_MOE_DT_BITS, -1, nb2, rank, mat, static_cast<int *>(NULL), static_cast<int *>(NULL));
        NAM__CU_LAUNCH(err, nam__cu_moe_scan_tiles, static_cast<unsigned>((nb2 + 31) / 32), scan_blk, 0, st, mat, nt, nb2, dtot);
        NAM__CU_LAUNCH(err, nam__cu_moe_scan_counts, 1, NAM__CU_MOE_SCAN_THREADS, 0, st, dtot, nb2, static_cast<long long>(INT_MAX), static_cast<int *>(NULL),
                       dbase, static_cast<int *>(NULL), static_cast<const int *>(NULL), n);
        NAM__CU_LAUNCH(err, nam__cu_moe_scatter, nblk, 256, 0, st, idx, n, static_cast<const int32_t *>(p1), E, NAM__CU_MOE_DT_BITS, -1, nb2, rank, mat, dbase,
                       p2);
        NAM__CU_LAUNCH(err, nam__cu_moe_scan_counts, 1, NAM__CU_MOE_SCAN_THREADS, 0, st, hist, E, cap, counts, offsets, uoff, bad, n);
        NAM__CU_LAUNCH(err, nam__cu_moe_compact, nblk, 256, 0, st, idx, n, E, p2, uoff, counts, offsets, rows);
    }
    return NAM_OK;
}

/* Scratch of the tiled dispatch (tile ranks and histograms; radix buffers when E > 2048);
   0 when one fused block does it (T*k <= 2048 and E <= 2048). */
static size_t nam__cu_moe_dispatch_ws(int n, int E) {
    if (n <= NAM__CU_MOE_DT_TILE && E <= NAM__CU_MOE_DT_MAXB) return 0;
    const size_t nt = (static_cast<size_t>(n) + NAM__CU_MOE_DT_TILE - 1) / NAM__CU_MOE_DT_TILE, un = static_cast<size_t>(n), ue = static_cast<size_t>(E);
    size_t ints = un + 1 + nt * (E <= NAM__CU_MOE_DT_MAXB ? ue : NAM__CU_MOE_DT_MAXB);
    if (E > NAM__CU_MOE_DT_MAXB) ints += 2 * un + 2 * NAM__CU_MOE_DT_MAXB + 1 + 2 * ue + 1;
    return nam__cu_align(sizeof(int) * ints);
}

extern "C" nam_status nam_cuda__moe_dispatch_workspace_size(const nam_moe_dispatch_desc *d, size_t *bytes, nam_error *err) {
    *bytes = nam__cu_moe_dispatch_ws(static_cast<int>(d->topk_idx.shape[0] * d->topk_idx.shape[1]), d->num_experts);
    return nam__ok(err);
}

extern "C" nam_status nam_cuda__moe_dispatch(nam_moe_dispatch_desc *d, nam_error *err) {
    static const char *const fn = "nam_moe_dispatch";
    cudaStream_t st = static_cast<cudaStream_t>(d->stream);
    const int32_t *idx = static_cast<const int32_t *>(d->topk_idx.data);
    int32_t *counts = static_cast<int32_t *>(d->counts.data), *offsets = static_cast<int32_t *>(d->offsets.data), *rows = static_cast<int32_t *>(d->rows.data);
    const long long T = static_cast<long long>(d->topk_idx.shape[0]), k = static_cast<long long>(d->topk_idx.shape[1]);
    const int n = static_cast<int>(T * k), E = d->num_experts;
    const long long cap = d->capacity;   /* resolved by nam.h (capacity_factor 0 -> T * k) */
    int32_t nr = 0;
    nam_status s;
    if ((s = nam__cu_contig(&d->topk_idx, fn, "topk_idx", err))) return s;
    if ((s = nam__cu_contig(&d->counts, fn, "counts", err))) return s;
    if ((s = nam__cu_contig(&d->offsets, fn, "offsets", err))) return s;
    if ((s = nam__cu_contig(&d->rows, fn, "rows", err))) return s;
    if (n <= NAM__CU_MOE_DT_TILE && E <= NAM__CU_MOE_DT_MAXB) {
        const size_t smem = sizeof(int) * (static_cast<size_t>(NAM__CU_MOE_DT_WARPS + 1) * static_cast<size_t>(E) + 1);
        NAM__CU_TRY(err, cudaFuncSetAttribute(nam__cu_moe_dispatch_small, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                              static_cast<int>(sizeof(int) * ((NAM__CU_MOE_DT_WARPS + 1) * NAM__CU_MOE_DT_MAXB + 1))));
        NAM__CU_LAUNCH(err, nam__cu_moe_dispatch_small, 1, NAM__CU_MOE_DT_WARPS * 32, smem, st, idx, n, E, cap, counts, offsets, rows);
    } else {
        nam_status ks;
        if ((ks = nam__cu_ws(d->workspace, d->workspace_bytes, nam__cu_moe_dispatch_ws(n, E), fn, err))) return ks;
        ks = nam__cu_moe_dispatch_tiled(idx, n, E, cap, counts, offsets, rows, static_cast<char *>(d->workspace), st, err);
        if (ks) {
            (void)cudaStreamSynchronize(st);
            return ks;
        }
    }
    NAM__CU_TRY(err, cudaMemcpyAsync(&nr, offsets + E, sizeof nr, cudaMemcpyDeviceToHost, st));
    NAM__CU_TRY(err, cudaStreamSynchronize(st));
    if (nr < 0) {   /* -(i + 1): entry i is the first bad expert id */
        const long long i = -static_cast<long long>(nr) - 1;
        int32_t v = 0;
        NAM__CU_TRY(err, cudaMemcpyAsync(&v, idx + i, sizeof v, cudaMemcpyDeviceToHost, st));
        NAM__CU_TRY(err, cudaStreamSynchronize(st));
        return nam__err(err, NAM_ERR_RANGE, "topk_idx[%lld, %lld] = %d is not an expert id (0..%lld): token %lld, slot %lld", i / k, i % k, v,
                           static_cast<long long>(E) - 1, i / k, i % k);
    }
    d->num_rows = nr;
    d->num_dropped = n - nr;
    return nam__ok(err);
}

/* ==== permute ============================================================================= */
/* Rows of G threads (G a power of two); row j copies token rows[j] / k. V: the vector. */
template <typename V>
static __global__ void nam__cu_moe_permute_vec(const V *__restrict__ tok, V *__restrict__ out, const int32_t *__restrict__ rows, int nrows, int k, int tk, int nvec,
                                               int G) {
    const int sub = static_cast<int>(threadIdx.x) & (G - 1);
    const long long j = static_cast<long long>(blockIdx.x) * (static_cast<int>(blockDim.x) / G) + static_cast<int>(threadIdx.x) / G;
    const V *s;
    V *o;
    int r, v;
    if (j >= nrows) return;
    r = rows[j];
    if (r < 0 || r >= tk) return;   /* not a dispatch plan: nothing to copy */
    s = tok + static_cast<long long>(r / k) * nvec;
    o = out + j * nvec;
    for (v = sub; v + 3 * G < nvec; v += 4 * G) {
        V a0 = s[v], a1 = s[v + G], a2 = s[v + 2 * G], a3 = s[v + 3 * G];
        o[v] = a0;
        o[v + G] = a1;
        o[v + 2 * G] = a2;
        o[v + 3 * G] = a3;
    }
    for (; v < nvec; v += G) o[v] = s[v];
}

/* dtype-converting permute: element by element */
static __global__ void nam__cu_moe_permute_cvt(const void *tok, int tdt, void *out, int odt, const int32_t *rows, int nrows, int k, int tk, int H) {
    const long long j = blockIdx.x;
    int r, h;
    if (j >= nrows) return;
    r = rows[j];
    if (r < 0 || r >= tk) return;
    for (h = static_cast<int>(threadIdx.x); h < H; h += static_cast<int>(blockDim.x))
        nam__cu_store(out, odt, j * H + h, nam__cu_load(tok, tdt, static_cast<long long>(r / k) * H + h));
}

template <typename V>
static nam_status nam__cu_moe_permute_launch(const void *tok, void *out, const int32_t *rows, int nrows, int k, int tk, long long rowbytes, cudaStream_t st,
                                             nam_error *err) {
    (void)st;   /* unused by the emulator's launch */
    const int nvec = static_cast<int>(rowbytes / static_cast<long long>(sizeof(V)));
    int G = 1, per = (nvec + 3) / 4;
    long long blocks;
    while (G < per && G < 256) G <<= 1;
    blocks = (static_cast<long long>(nrows) + 256 / G - 1) / (256 / G);
    auto kf = nam__cu_moe_permute_vec<V>;
    NAM__CU_LAUNCH(err, kf, static_cast<unsigned>(blocks), 256, 0, st, static_cast<const V *>(tok), static_cast<V *>(out), rows, nrows, k, tk, nvec, G);
    return NAM_OK;
}

extern "C" nam_status nam_cuda__moe_permute(const nam_tensor *tokens, const nam_moe_dispatch_desc *plan, nam_tensor *permuted, nam_error *err) {
    static const char *const fn = "nam_moe_permute";
    cudaStream_t st = static_cast<cudaStream_t>(plan->stream);
    const int k = static_cast<int>(plan->topk_idx.shape[1]), tk = static_cast<int>(plan->topk_idx.shape[0] * plan->topk_idx.shape[1]);
    const int nrows = plan->num_rows;
    const long long H = static_cast<long long>(tokens->shape[1]);
    nam_status s;
    if ((s = nam__cu_contig(tokens, fn, "tokens", err))) return s;
    if ((s = nam__cu_contig(permuted, fn, "permuted", err))) return s;
    if ((s = nam__cu_contig(&plan->rows, fn, "plan.rows", err))) return s;
    if (H > INT_MAX / 4) return nam__err(err, NAM_ERR_LIMIT, "%s: tokens.shape[1] (H) = %lld is too large", fn, H);
    if (nrows == 0) return nam__ok(err);
    if (tokens->dtype == permuted->dtype) {
        const long long rowbytes = H * static_cast<long long>(tokens->dtype == NAM_F32 ? 4 : 2);
        const uintptr_t al = reinterpret_cast<uintptr_t>(tokens->data) | reinterpret_cast<uintptr_t>(permuted->data) | static_cast<uintptr_t>(rowbytes);
        const int32_t *rows = static_cast<const int32_t *>(plan->rows.data);
        if (al % 16 == 0) s = nam__cu_moe_permute_launch<nam__cu_moe_u4>(tokens->data, permuted->data, rows, nrows, k, tk, rowbytes, st, err);
        else if (al % 8 == 0) s = nam__cu_moe_permute_launch<nam__cu_moe_u2>(tokens->data, permuted->data, rows, nrows, k, tk, rowbytes, st, err);
        else if (al % 4 == 0) s = nam__cu_moe_permute_launch<uint32_t>(tokens->data, permuted->data, rows, nrows, k, tk, rowbytes, st, err);
        else s = nam__cu_moe_permute_launch<uint16_t>(tokens->data, permuted->data, rows, nrows, k, tk, rowbytes, st, err);
        if (s) return s;
    } else {
        NAM__CU_LAUNCH(err, nam__cu_moe_permute_cvt, static_cast<unsigned>(nrows), 256, 0, st, tokens->data, static_cast<int>(tokens->dtype), permuted->data,
                       static_cast<int>(permuted->dtype), static_cast<const int32_t *>(plan->rows.data), nrows, k, tk, static_cast<int>(H));
    }
    return nam__ok(err);
}

/* ==== combine ============================================================================= */
/* 8 values of T at p (16-byte aligned) as floats, and back. */
template <typename T> struct nam__cu_moe_v8;
template <> struct nam__cu_moe_v8<float> {
    static __device__ __forceinline__ void load(const float *p, float f[8]) {
        const nam__cu_moe_u4 a = reinterpret_cast<const nam__cu_moe_u4 *>(p)[0], b = reinterpret_cast<const nam__cu_moe_u4 *>(p)[1];
        f[0] = nam__cu_moe_bits(a.x); f[1] = nam__cu_moe_bits(a.y); f[2] = nam__cu_moe_bits(a.z); f[3] = nam__cu_moe_bits(a.w);
        f[4] = nam__cu_moe_bits(b.x); f[5] = nam__cu_moe_bits(b.y); f[6] = nam__cu_moe_bits(b.z); f[7] = nam__cu_moe_bits(b.w);
    }
    static __device__ __forceinline__ void store(float *p, const float f[8]) {
        nam__cu_moe_u4 a, b;
        a.x = nam__cu_moe_fbits(f[0]); a.y = nam__cu_moe_fbits(f[1]); a.z = nam__cu_moe_fbits(f[2]); a.w = nam__cu_moe_fbits(f[3]);
        b.x = nam__cu_moe_fbits(f[4]); b.y = nam__cu_moe_fbits(f[5]); b.z = nam__cu_moe_fbits(f[6]); b.w = nam__cu_moe_fbits(f[7]);
        reinterpret_cast<nam__cu_moe_u4 *>(p)[0] = a;
        reinterpret_cast<nam__cu_moe_u4 *>(p)[1] = b;
    }
};
template <typename T> struct nam__cu_moe_v8h {   /* bf16 / f16 */
    static __device__ __forceinline__ void load(const T *p, float f[8]) {
        const nam__cu_moe_u4 a = *reinterpret_cast<const nam__cu_moe_u4 *>(p);
        const uint32_t w[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
        for (int q = 0; q < 4; q++) {
            f[2 * q] = nam__cu_f(nam__cu_moe_v8h<T>::from16(w[q] & 0xffffu));
            f[2 * q + 1] = nam__cu_f(nam__cu_moe_v8h<T>::from16(w[q] >> 16));
        }
    }
    static __device__ __forceinline__ T from16(uint32_t u);
    static __device__ __forceinline__ void store(T *p, const float f[8]) {
        nam__cu_moe_u4 a;
        a.x = nam__cu_pack2<T>(f[0], f[1]);
        a.y = nam__cu_pack2<T>(f[2], f[3]);
        a.z = nam__cu_pack2<T>(f[4], f[5]);
        a.w = nam__cu_pack2<T>(f[6], f[7]);
        *reinterpret_cast<nam__cu_moe_u4 *>(p) = a;
    }
};
template <> __device__ __forceinline__ nam__cu_bf16 nam__cu_moe_v8h<nam__cu_bf16>::from16(uint32_t u) { return __ushort_as_bfloat16(static_cast<unsigned short>(u)); }
template <> __device__ __forceinline__ nam__cu_f16 nam__cu_moe_v8h<nam__cu_f16>::from16(uint32_t u) { return __ushort_as_half(static_cast<unsigned short>(u)); }
template <> struct nam__cu_moe_v8<nam__cu_bf16> : nam__cu_moe_v8h<nam__cu_bf16> {};
template <> struct nam__cu_moe_v8<nam__cu_f16> : nam__cu_moe_v8h<nam__cu_f16> {};

/* The row of (t, slot) in expert e's ascending segment of rows, or -1 (dropped). */
static __device__ __forceinline__ int nam__cu_moe_find(const int32_t *rows, int lo, int hi, int key) {
    while (lo < hi) {
        const int mid = lo + (hi - lo) / 2, v = rows[mid];
        if (v == key) return mid;
        if (v < key) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

struct nam__cu_moe_cb_args {
    const void *x;        /* expert_out (rows, H) */
    void *out;            /* (T, H) */
    const int32_t *idx, *off, *rows;
    const void *w;        /* NULL: weights 1 */
    int wdt;
    int k, E, H;
};

/* One block per token; VEC: 8 columns per thread step (H % 8 == 0, 16-byte aligned rows). */
template <typename TI, typename TO, bool VEC>
static __global__ void __launch_bounds__(256) nam__cu_moe_combine_k(nam__cu_moe_cb_args a) {
    __shared__ int sj[32];
    __shared__ float sw[32];
    const int tid = static_cast<int>(threadIdx.x), G = static_cast<int>(blockDim.x);
    const long long t = blockIdx.x;
    const int EPV = VEC ? 8 : 1, nv = a.H / EPV, nbatch = (a.k + 31) / 32;
    const TI *x = static_cast<const TI *>(a.x);
    TO *out = static_cast<TO *>(a.out) + t * a.H;
    int c0, b, q;
    for (c0 = 0; c0 < nv; c0 += G) {
        const int v = c0 + tid;
        const bool active = v < nv;
        float acc[EPV];
        bool got = false;
#pragma unroll
        for (q = 0; q < EPV; q++) acc[q] = 0.0f;
        for (b = 0; b < nbatch; b++) {
            int ns = a.k - 32 * b < 32 ? a.k - 32 * b : 32, s0;
            if (nbatch > 1 || c0 == 0) {   /* k <= 32: looked up once */
                __syncthreads();
                if (tid < 32) {
                    const int slot = 32 * b + tid;
                    int j = -1;
                    float wv = 1.0f;
                    if (slot < a.k) {
                        const long long key = t * a.k + slot;
                        const int e = a.idx[key];
                        if (e >= 0 && e < a.E) j = nam__cu_moe_find(a.rows, a.off[e], a.off[e + 1], static_cast<int>(key));
                        if (a.w) wv = nam__cu_load(a.w, a.wdt, key);
                    }
                    sj[tid] = j;
                    sw[tid] = wv;
                }
                __syncthreads();
            }
            for (s0 = 0; s0 < ns; s0 += 4) {
                float xv[4][EPV];
                int jj[4];
#pragma unroll
                for (q = 0; q < 4; q++) {
                    jj[q] = s0 + q < ns ? sj[s0 + q] : -1;
#pragma unroll
                    for (int c = 0; c < EPV; c++) xv[q][c] = 0.0f;
                    if (jj[q] >= 0 && active) {
                        const TI *src = x + static_cast<long long>(jj[q]) * a.H + static_cast<long long>(v) * EPV;
                        if (VEC) nam__cu_moe_v8<TI>::load(src, xv[q]);
                        else xv[q][0] = nam__cu_f(src[0]);
                    }
                }
#pragma unroll
                for (q = 0; q < 4; q++) {
                    if (jj[q] < 0) continue;
                    const float wq = sw[s0 + q];
#pragma unroll
                    for (int c = 0; c < EPV; c++) {
                        const float y = a.w ? __fmul_rn(xv[q][c], wq) : xv[q][c];
                        acc[c] = got ? __fadd_rn(acc[c], y) : y;
                    }
                    got = true;
                }
            }
        }
        if (active) {
            if (VEC) nam__cu_moe_v8<TO>::store(out + static_cast<long long>(v) * EPV, acc);
            else out[v] = nam__cu_to<TO>(acc[0]);
        }
    }
}

template <typename TI, typename TO>
static nam_status nam__cu_moe_combine_launch(const nam__cu_moe_cb_args &a, long long T, bool vec, cudaStream_t st, nam_error *err) {
    (void)st;   /* unused by the emulator's launch */
    const int nv = vec ? a.H / 8 : a.H;
    int G = 32;
    while (G < nv && G < 256) G <<= 1;
    if (vec) {
        auto kf = nam__cu_moe_combine_k<TI, TO, true>;
        NAM__CU_LAUNCH(err, kf, static_cast<unsigned>(T), G, 0, st, a);
    } else {
        auto kf = nam__cu_moe_combine_k<TI, TO, false>;
        NAM__CU_LAUNCH(err, kf, static_cast<unsigned>(T), G, 0, st, a);
    }
    return NAM_OK;
}

template <typename TI>
static nam_status nam__cu_moe_combine_out(const nam__cu_moe_cb_args &a, nam_dtype odt, long long T, bool vec, cudaStream_t st, nam_error *err) {
    if (odt == NAM_BF16) return nam__cu_moe_combine_launch<TI, nam__cu_bf16>(a, T, vec, st, err);
    if (odt == NAM_F16) return nam__cu_moe_combine_launch<TI, nam__cu_f16>(a, T, vec, st, err);
    return nam__cu_moe_combine_launch<TI, float>(a, T, vec, st, err);
}

extern "C" nam_status nam_cuda__moe_combine(const nam_tensor *expert_out, const nam_moe_dispatch_desc *plan, const nam_tensor *topk_weight, nam_tensor *out,
                                            nam_error *err) {
    static const char *const fn = "nam_moe_combine";
    cudaStream_t st = static_cast<cudaStream_t>(plan->stream);
    const long long T = static_cast<long long>(plan->topk_idx.shape[0]), H = static_cast<long long>(expert_out->shape[1]);
    nam__cu_moe_cb_args a;
    nam_status s;
    bool vec;
    if ((s = nam__cu_contig(expert_out, fn, "expert_out", err))) return s;
    if ((s = nam__cu_contig(out, fn, "out", err))) return s;
    if ((s = nam__cu_contig(&plan->topk_idx, fn, "plan.topk_idx", err))) return s;
    if ((s = nam__cu_contig(&plan->offsets, fn, "plan.offsets", err))) return s;
    if ((s = nam__cu_contig(&plan->rows, fn, "plan.rows", err))) return s;
    if (topk_weight && (s = nam__cu_contig(topk_weight, fn, "topk_weight", err))) return s;
    if (H > INT_MAX / 8) return nam__err(err, NAM_ERR_LIMIT, "%s: expert_out.shape[1] (H) = %lld is too large", fn, H);
    if (T > INT_MAX) return nam__err(err, NAM_ERR_LIMIT, "%s: T = %lld tokens is too many for one launch", fn, T);
    a.x = expert_out->data;
    a.out = out->data;
    a.idx = static_cast<const int32_t *>(plan->topk_idx.data);
    a.off = static_cast<const int32_t *>(plan->offsets.data);
    a.rows = static_cast<const int32_t *>(plan->rows.data);
    a.w = topk_weight ? topk_weight->data : NULL;
    a.wdt = topk_weight ? static_cast<int>(topk_weight->dtype) : 0;
    a.k = static_cast<int>(plan->topk_idx.shape[1]);
    a.E = plan->num_experts;
    a.H = static_cast<int>(H);
    vec = H % 8 == 0 && (reinterpret_cast<uintptr_t>(a.x) | reinterpret_cast<uintptr_t>(a.out)) % 16 == 0;
    if (expert_out->dtype == NAM_BF16) s = nam__cu_moe_combine_out<nam__cu_bf16>(a, out->dtype, T, vec, st, err);
    else if (expert_out->dtype == NAM_F16) s = nam__cu_moe_combine_out<nam__cu_f16>(a, out->dtype, T, vec, st, err);
    else s = nam__cu_moe_combine_out<float>(a, out->dtype, T, vec, st, err);
    if (s) return s;
    return nam__ok(err);
}

/* ==== expert FFN: grouped GEMM ============================================================ */
#define NAM__CU_MOE_BM 128
#define NAM__CU_MOE_BN 128
#define NAM__CU_MOE_BK 32
#define NAM__CU_MOE_STAGES 4
#define NAM__CU_MOE_GEMM_THREADS 256
#define NAM__CU_MOE_GEMM_SMEM (NAM__CU_MOE_STAGES * (NAM__CU_MOE_BM + NAM__CU_MOE_BN) * NAM__CU_MOE_BK * 2)
enum { NAM__CU_MOE_EPI_NONE = 0, NAM__CU_MOE_EPI_SWIGLU = 1, NAM__CU_MOE_EPI_SQRELU = 2 };

struct nam__cu_moe_gemm_args {
    const void *A;        /* (R, K) rows of all experts */
    const void *B0, *B1;  /* (E, N, K); B1: W3 for SwiGLU (dual) */
    void *C;              /* (R, N) */
    const int32_t *off;   /* plan offsets (E + 1) */
    const int *tstart;    /* (E + 1) first 128-row tile of each expert */
    int E, R, K, N, ntn, epi;
};

/* Tiles of the grouped GEMM per expert: tstart[e] = sum over e' < e of ceil(count / BM). */
static __global__ void __launch_bounds__(1024) nam__cu_moe_tile_starts(const int32_t *off, int E, int R, int *tstart) {
    __shared__ int sm[32];
    const int tid = static_cast<int>(threadIdx.x);
    int carry = 0, e0;
    for (e0 = 0; e0 < E; e0 += static_cast<int>(blockDim.x)) {
        const int e = e0 + tid;
        int c = 0, ex, tot;
        if (e < E) {
            int lo = off[e], hi = off[e + 1];
            if (hi > R) hi = R;
            c = hi > lo ? (hi - lo - 1) / NAM__CU_MOE_BM + 1 : 0;   /* no int overflow near 2^31 rows */
        }
        ex = nam__cu_moe_block_scan(c, &tot, sm);
        if (e < E) tstart[e] = carry + ex;
        carry += tot;
    }
    if (tid == 0) tstart[E] = carry;
}

/* Smem element offset of (row, 8-element chunk ch) in a [rows][32] tile: chunks XOR-swizzled
   by (row / 2) % 4, so 8 consecutive rows of one chunk hit 32 distinct banks (ldmatrix) */
static __device__ __forceinline__ int nam__cu_moe_sw(int row, int ch) { return row * NAM__CU_MOE_BK + ((ch ^ ((row >> 1) & 3)) << 3); }

/* One 16-byte chunk: 8 elements of row `src` (k0 .. k0 + 7, `nk` of them valid) into smem. */
template <typename T, bool ALIGNED>
static __device__ __forceinline__ void nam__cu_moe_chunk(T *dst, const T *src, int nk) {
    if (ALIGNED) {
        nam__cu_cp16(dst, src, nk > 0 ? (nk < 8 ? nk : 8) * 2 : 0);
    } else {
        uint32_t w[4] = {0u, 0u, 0u, 0u};
        const unsigned short *s16 = reinterpret_cast<const unsigned short *>(src);
#pragma unroll
        for (int q = 0; q < 8; q++)
            if (q < nk) w[q >> 1] |= static_cast<uint32_t>(s16[q]) << (16 * (q & 1));
        nam__cu_moe_u4 u;
        u.x = w[0];
        u.y = w[1];
        u.z = w[2];
        u.w = w[3];
        *reinterpret_cast<nam__cu_moe_u4 *>(dst) = u;
    }
}

static __device__ __forceinline__ float nam__cu_moe_epi1(float g, int epi) {
    return epi == NAM__CU_MOE_EPI_SQRELU ? (g > 0.0f ? g * g : 0.0f) : g;
}

/* Store two adjacent outputs (row r, cols c, c + 1) of C (ldc = N): one 32-bit store when
   both are inside and the address allows it. */
template <typename T>
static __device__ __forceinline__ void nam__cu_moe_store2(T *C, long long r, int c, int N, float v0, float v1) {
    T *p = C + r * N + c;
    if (c + 1 < N && (reinterpret_cast<uintptr_t>(p) & 3u) == 0) *reinterpret_cast<uint32_t *>(p) = nam__cu_pack2<T>(v0, v1);
    else {
        if (c < N) p[0] = nam__cu_to<T>(v0);
        if (c + 1 < N) p[1] = nam__cu_to<T>(v1);
    }
}

template <typename T, bool ALIGNED>
static __global__ void __launch_bounds__(NAM__CU_MOE_GEMM_THREADS, 2) nam__cu_moe_gemm(nam__cu_moe_gemm_args a) {
    NAM__CU_DYN_SMEM(T, sm);
    const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
    const int wm = warp >> 2, wn = warp & 3, g = lane >> 2, tq = lane & 3;
    const long long tile = blockIdx.x;
    const int mt = static_cast<int>(tile / a.ntn), nt = static_cast<int>(tile % a.ntn);
    const bool dual = a.epi == NAM__CU_MOE_EPI_SWIGLU;
    const int K = a.K, N = a.N, ktiles = (K + NAM__CU_MOE_BK - 1) / NAM__CU_MOE_BK;
    T *As = sm, *Bs = sm + NAM__CU_MOE_STAGES * NAM__CU_MOE_BM * NAM__CU_MOE_BK;
    const T *A = static_cast<const T *>(a.A), *W0, *W1;
    int e, lo, hi, r0, mrows, n0, i, kt;
    float acc[4][4][4];
    if (mt >= a.tstart[a.E]) return;   /* surplus CTA */
    lo = 0;
    hi = a.E - 1;
    while (lo < hi) {   /* the last expert whose first tile is <= mt */
        const int mid = (lo + hi + 1) >> 1;
        if (a.tstart[mid] <= mt) lo = mid;
        else hi = mid - 1;
    }
    e = lo;
    r0 = a.off[e] + (mt - a.tstart[e]) * NAM__CU_MOE_BM;
    {
        int r1 = a.off[e + 1] < a.R ? a.off[e + 1] : a.R;
        mrows = r1 - r0 < NAM__CU_MOE_BM ? r1 - r0 : NAM__CU_MOE_BM;
    }
    if (mrows <= 0) return;
    n0 = nt * (dual ? NAM__CU_MOE_BN / 2 : NAM__CU_MOE_BN);
    W0 = static_cast<const T *>(a.B0) + static_cast<long long>(e) * N * K;
    W1 = dual ? static_cast<const T *>(a.B1) + static_cast<long long>(e) * N * K : W0;

    /* The loads of k-tile kt into stage s: 2 A chunks and 2 B chunks per thread. */
    auto load = [&](int s, int ktl) {
        const int k0 = ktl * NAM__CU_MOE_BK;
        T *as = As + s * (NAM__CU_MOE_BM * NAM__CU_MOE_BK), *bs = Bs + s * (NAM__CU_MOE_BN * NAM__CU_MOE_BK);
#pragma unroll
        for (int q = 0; q < 2; q++) {
            const int c = tid + q * NAM__CU_MOE_GEMM_THREADS, row = c >> 2, ch = c & 3, kk = k0 + ch * 8;
            const bool ok = row < mrows && kk < K;
            nam__cu_moe_chunk<T, ALIGNED>(as + nam__cu_moe_sw(row, ch), ok ? A + static_cast<long long>(r0 + row) * K + kk : A, ok ? K - kk : 0);
        }
#pragma unroll
        for (int q = 0; q < 2; q++) {
            const int c = tid + q * NAM__CU_MOE_GEMM_THREADS, row = c >> 2, ch = c & 3, kk = k0 + ch * 8;
            const T *w = dual ? (row < 64 ? W0 : W1) : W0;
            const int n = n0 + (dual ? (row & 63) : row);
            const bool ok = n < N && kk < K;
            nam__cu_moe_chunk<T, ALIGNED>(bs + nam__cu_moe_sw(row, ch), ok ? w + static_cast<long long>(n) * K + kk : W0, ok ? K - kk : 0);
        }
    };

#pragma unroll
    for (int mi = 0; mi < 4; mi++)
#pragma unroll
        for (int ni = 0; ni < 4; ni++)
#pragma unroll
            for (int q = 0; q < 4; q++) acc[mi][ni][q] = 0.0f;

    for (i = 0; i < NAM__CU_MOE_STAGES - 1; i++) {
        if (i < ktiles) load(i, i);
        nam__cu_cp_commit();
    }
    for (kt = 0; kt < ktiles; kt++) {
        const int s = kt % NAM__CU_MOE_STAGES;
        const T *as = As + s * (NAM__CU_MOE_BM * NAM__CU_MOE_BK), *bs = Bs + s * (NAM__CU_MOE_BN * NAM__CU_MOE_BK);
        nam__cu_cp_wait<NAM__CU_MOE_STAGES - 2>();
        __syncthreads();
        if (kt + NAM__CU_MOE_STAGES - 1 < ktiles) load((kt + NAM__CU_MOE_STAGES - 1) % NAM__CU_MOE_STAGES, kt + NAM__CU_MOE_STAGES - 1);
        nam__cu_cp_commit();
#pragma unroll
        for (int ks = 0; ks < 2; ks++) {
            uint32_t af[4][4], bf[4][2];
            const int mat = lane >> 3, r8 = lane & 7;
#pragma unroll
            for (int mi = 0; mi < 4; mi++) {
                const int row = wm * 64 + mi * 16 + r8 + 8 * (mat & 1);
                nam__cu_ldsm_x4(af[mi], as + nam__cu_moe_sw(row, ks * 2 + (mat >> 1)));
            }
#pragma unroll
            for (int h = 0; h < 2; h++) {
                uint32_t r[4];
                const int nb = dual ? (h ? 64 : 0) + wn * 16 : wn * 32 + h * 16;
                const int row = nb + r8 + 8 * (mat >> 1);
                nam__cu_ldsm_x4(r, bs + nam__cu_moe_sw(row, ks * 2 + (mat & 1)));
                bf[2 * h][0] = r[0];
                bf[2 * h][1] = r[1];
                bf[2 * h + 1][0] = r[2];
                bf[2 * h + 1][1] = r[3];
            }
#pragma unroll
            for (int mi = 0; mi < 4; mi++)
#pragma unroll
                for (int ni = 0; ni < 4; ni++) nam__cu_mma<T>(acc[mi][ni], af[mi], bf[ni]);
        }
    }
    nam__cu_cp_wait<0>();

    /* epilogue: fragment (mi, ni) element q is row wm*64 + mi*16 + g + 8 (q >> 1), col 2 tq + (q & 1) */
    {
        T *C = static_cast<T *>(a.C);
#pragma unroll
        for (int mi = 0; mi < 4; mi++)
#pragma unroll
            for (int hh = 0; hh < 2; hh++) {
                const int row = wm * 64 + mi * 16 + g + 8 * hh;
                if (row >= mrows) continue;
                if (dual) {
#pragma unroll
                    for (int ni = 0; ni < 2; ni++) {
                        const int col = n0 + wn * 16 + ni * 8 + 2 * tq;
                        float v[2];
#pragma unroll
                        for (int q = 0; q < 2; q++) {
                            const float gv = acc[mi][ni][2 * hh + q], uv = acc[mi][ni + 2][2 * hh + q];
                            v[q] = gv / (1.0f + expf(-gv)) * uv;
                        }
                        nam__cu_moe_store2<T>(C, r0 + row, col, N, v[0], v[1]);
                    }
                } else {
#pragma unroll
                    for (int ni = 0; ni < 4; ni++) {
                        const int col = n0 + wn * 32 + ni * 8 + 2 * tq;
                        nam__cu_moe_store2<T>(C, r0 + row, col, N, nam__cu_moe_epi1(acc[mi][ni][2 * hh], a.epi), nam__cu_moe_epi1(acc[mi][ni][2 * hh + 1], a.epi));
                    }
                }
            }
    }
}

/* What the CUDA FFN takes: contiguous CUDA tensors of one storage dtype, bf16 or f16. */
static nam_status nam__cu_moe_ffn_check(const nam_moe_ffn_desc *d, nam_error *err) {
    static const char *const fn = "nam_moe_ffn";
    static const char *const nm[5] = {"in", "w1", "w3", "w2", "out"};
    const nam_tensor *ts[5] = {&d->in, &d->w1, d->act == NAM_MOE_SWIGLU ? &d->w3 : NULL, &d->w2, &d->out};
    nam_status s;
    int i;
    for (i = 0; i < 5; i++) {
        if (!ts[i]) continue;
        if ((s = nam__cu_contig(ts[i], fn, nm[i], err))) return s;
        if (ts[i]->dtype != NAM_BF16 && ts[i]->dtype != NAM_F16)
            return nam__err(err, NAM_ERR_NOT_IMPLEMENTED, "%s: %s.dtype = %s; the CUDA grouped GEMM takes bf16 or f16 storage only", fn, nm[i],
                               nam_dtype_name(ts[i]->dtype));
        if (ts[i]->dtype != d->in.dtype)
            return nam__err(err, NAM_ERR_NOT_IMPLEMENTED,
                               "%s: %s.dtype = %s, but in.dtype = %s; the CUDA grouped GEMM takes one storage dtype for in, w1, w3, w2 and out", fn, nm[i],
                               nam_dtype_name(ts[i]->dtype), nam_dtype_name(d->in.dtype));
    }
    if (d->in.shape[0] > INT_MAX || d->in.shape[1] > INT_MAX / 2 || d->w1.shape[1] > INT_MAX / 2)
        return nam__err(err, NAM_ERR_LIMIT, "%s: rows, H or F exceed the CUDA kernel's int range", fn);
    return NAM_OK;
}

/* workspace: h (rows, F) in the storage dtype, then the per-expert tile starts (E + 1 ints) */
static size_t nam__cu_moe_h_bytes(const nam_moe_ffn_desc *d) {
    return nam__cu_align(static_cast<size_t>(d->in.shape[0]) * static_cast<size_t>(d->w1.shape[1]) * 2);
}

extern "C" nam_status nam_cuda__moe_ffn_workspace_size(const nam_moe_ffn_desc *d, size_t *bytes, nam_error *err) {
    nam_status s;
    *bytes = 0;
    if ((s = nam__cu_moe_ffn_check(d, err))) return s;
    *bytes = nam__cu_moe_h_bytes(d) + nam__cu_align(sizeof(int) * (static_cast<size_t>(d->w1.shape[0]) + 1));
    return nam__ok(err);
}

template <typename T>
static nam_status nam__cu_moe_gemm_launch(const nam__cu_moe_gemm_args &a, long long mbound, cudaStream_t st, nam_error *err) {
    (void)st;   /* unused by the emulator's launch */
    const long long grid = mbound * a.ntn;
    const bool aligned = (static_cast<long long>(a.K) * 2) % 16 == 0 &&
                         (reinterpret_cast<uintptr_t>(a.A) | reinterpret_cast<uintptr_t>(a.B0) | reinterpret_cast<uintptr_t>(a.B1)) % 16 == 0;
    if (grid > INT_MAX) return nam__err(err, NAM_ERR_LIMIT, "nam_moe_ffn: %lld GEMM tiles are too many for one launch", grid);
    if (aligned) {
        auto kf = nam__cu_moe_gemm<T, true>;
        NAM__CU_TRY(err, cudaFuncSetAttribute(kf, cudaFuncAttributeMaxDynamicSharedMemorySize, NAM__CU_MOE_GEMM_SMEM));
        NAM__CU_LAUNCH(err, kf, static_cast<unsigned>(grid), NAM__CU_MOE_GEMM_THREADS, NAM__CU_MOE_GEMM_SMEM, st, a);
    } else {
        auto kf = nam__cu_moe_gemm<T, false>;
        NAM__CU_TRY(err, cudaFuncSetAttribute(kf, cudaFuncAttributeMaxDynamicSharedMemorySize, NAM__CU_MOE_GEMM_SMEM));
        NAM__CU_LAUNCH(err, kf, static_cast<unsigned>(grid), NAM__CU_MOE_GEMM_THREADS, NAM__CU_MOE_GEMM_SMEM, st, a);
    }
    return NAM_OK;
}

extern "C" nam_status nam_cuda__moe_ffn(const nam_moe_ffn_desc *d, void *workspace, size_t workspace_bytes, nam_error *err) {
    static const char *const fn = "nam_moe_ffn";
    cudaStream_t st = static_cast<cudaStream_t>(d->stream);
    const bool swiglu = d->act == NAM_MOE_SWIGLU;
    const long long R = d->in.shape[0], H = d->in.shape[1], F = d->w1.shape[1];
    const int E = static_cast<int>(d->w1.shape[0]), nrows = d->plan->num_rows;
    size_t need, hb;
    nam__cu_moe_gemm_args a;
    long long mbound;
    nam_status s;
    if ((s = nam__cu_moe_ffn_check(d, err))) return s;
    if ((s = nam__cu_contig(&d->plan->offsets, fn, "plan.offsets", err))) return s;
    hb = nam__cu_moe_h_bytes(d);
    need = hb + nam__cu_align(sizeof(int) * (static_cast<size_t>(E) + 1));
    if ((s = nam__cu_ws(workspace, workspace_bytes, need, fn, err))) return s;
    if (nrows == 0) return nam__ok(err);
    a.off = static_cast<const int32_t *>(d->plan->offsets.data);
    a.tstart = reinterpret_cast<const int *>(static_cast<char *>(workspace) + hb);
    a.E = E;
    a.R = static_cast<int>(R);
    NAM__CU_LAUNCH(err, nam__cu_moe_tile_starts, 1, 1024, 0, st, a.off, E, a.R, reinterpret_cast<int *>(static_cast<char *>(workspace) + hb));
    mbound = (static_cast<long long>(nrows) + NAM__CU_MOE_BM - 1) / NAM__CU_MOE_BM + E;   /* >= the real tile count */
    if (mbound > nrows) mbound = nrows;
    /* h = act(in W1^T [, in W3^T]) */
    a.A = d->in.data;
    a.B0 = d->w1.data;
    a.B1 = swiglu ? d->w3.data : d->w1.data;
    a.C = workspace;
    a.K = static_cast<int>(H);
    a.N = static_cast<int>(F);
    a.epi = swiglu ? NAM__CU_MOE_EPI_SWIGLU : NAM__CU_MOE_EPI_SQRELU;
    a.ntn = static_cast<int>(swiglu ? (F + NAM__CU_MOE_BN / 2 - 1) / (NAM__CU_MOE_BN / 2) : (F + NAM__CU_MOE_BN - 1) / NAM__CU_MOE_BN);
    s = d->in.dtype == NAM_BF16 ? nam__cu_moe_gemm_launch<nam__cu_bf16>(a, mbound, st, err) : nam__cu_moe_gemm_launch<nam__cu_f16>(a, mbound, st, err);
    if (s) return s;
    /* out = h W2^T */
    a.A = workspace;
    a.B0 = d->w2.data;
    a.B1 = d->w2.data;
    a.C = d->out.data;
    a.K = static_cast<int>(F);
    a.N = static_cast<int>(H);
    a.epi = NAM__CU_MOE_EPI_NONE;
    a.ntn = static_cast<int>((H + NAM__CU_MOE_BN - 1) / NAM__CU_MOE_BN);
    s = d->in.dtype == NAM_BF16 ? nam__cu_moe_gemm_launch<nam__cu_bf16>(a, mbound, st, err) : nam__cu_moe_gemm_launch<nam__cu_f16>(a, mbound, st, err);
    if (s) return s;
    return nam__ok(err);
}
#endif
#ifndef NAM_CUDA_SKIP_ATTENTION
/* >>cuda-attention ------------------------------------------------------------------------ */
/* nam_attention on CUDA tensors: a FlashAttention-2 style forward on tensor cores
   (mma.sync m16n8k16, fp32 accumulators), the semantics of nam.h's nam_attention:
   softmax(q k^T * scale + causal mask) v, q (b, sq, hq, d), k/v (b, sk, hk, d), GQA head
   h reads kv head h / (hq / hk), out (b, sq, hq, d); a query row with no visible key
   gets zeros.

   Supported: q, k, v, out all bf16 or all f16, contiguous, 16-byte aligned data; head
   dims 32, 64, 96, 128; sq, sk < 2^31 - 256; hq d, hk d < 2^24. Anything else is
   NAM_ERR_NOT_IMPLEMENTED naming the field and value. Workspace: none. Asynchronous on
   d->stream.

   Kernel nam__cu_attn_fwd<T, D, NW, MT>: one CTA of NW warps per (BM = 16 MT NW query rows,
   q head, batch); warp w owns the WR = 16 MT rows WR w .. WR w + WR - 1 of the tile (MT
   m16 row tiles). Three shapes (NAM_CUDA_ATTN_TILE below):
     1  BM  64, 4 warps x 16 rows, Q fragments kept in registers      (small problems)
     2  BM 128, 4 warps x 32 rows, Q re-read from shared memory       (default otherwise;
        FlashAttention 2's H100 tile: every K/V fragment read from shared memory feeds 4
        mma instead of 2, which halves the ldmatrix traffic per flop)
     3  BM 128, 8 warps x 16 rows, Q fragments kept in registers      (D = 96 instead of 2)
   Per CTA:
     prologue  Q tile -> shared memory (cp.async, rows past sq zero-filled); with MT = 1
               into registers as mma A fragments (ldmatrix), D / 16 of them per warp.
     loop      over key tiles of BN = 64 keys, up to the last key any row of the CTA sees
               (causal: fully masked tiles are never visited). K and V tiles are double
               buffered: tile j + 1 is in flight (cp.async, rows past sk zero-filled) while
               tile j is computed; one __syncthreads per tile. Per warp:
                 S = Q K^T           (K rows in shared memory -> ldmatrix gives the B
                                      fragments directly)
                 mask                (-inf; only on tiles crossing the causal diagonal or sk)
                 online softmax in base 2 on the accumulators: m' = max(m, rowmax S *
                 scale log2 e), alpha = 2^(m - m'), P = 2^(S scale log2 e - m'); row max
                 reduced over the 4 lanes of a quad (shfl xor 1, 2); the row sum l stays
                 per lane until the end
                 O = alpha O + P V   (P's accumulators repacked as T into A fragments: two
                                      n8 tiles are one k16 fragment; V by ldmatrix.trans)
               A warp whose rows see none of a tile skips its math (the diagonal tiles).
     epilogue  O / l (0 when l = 0), rounded to T, staged through shared memory, written
               with coalesced 16-byte stores.
   Shared memory: two stages of K and V tiles, rows padded by 8 halves (bank-conflict-free
   ldmatrix, cp.async and staging): 4 BN (D + 8) * 2 bytes (68 KiB at D = 128, 36 KiB at
   D = 64), plus the Q tile for MT = 2 (102 KiB in all at D = 128: 2 CTAs per H100 SM); with
   MT = 1 the Q tile borrows stage 1 during the prologue. The output is staged in a region
   free at the end. A GPU whose per-block limit is smaller (sm_86/89) gets shape 1.
   Grid: one dimension. (batch, head) pairs are taken in groups whose K and V fit in about
   16 MiB (NAM_CUDA_ATTN_GROUP_BYTES), so the CTAs resident at a time share their K/V tiles
   in L2; inside a group the heaviest query tiles come first (causal work grows with the
   tile index, so the last tiles are launched first) and the group's heads side by side
   (the q heads of one GQA group read the same K/V).

   Numerics: fp32 scores, softmax and accumulation; P is rounded to T before P V (as in
   FlashAttention 2) while l sums the unrounded P; exp2 is the hardware ex2.approx.ftz.
   Like FlashAttention, V rows that a query cannot see but that share a tile with rows it
   can see are multiplied by P = 0, so a NaN/Inf stored in such a V row reaches the output
   (nam.h's CPU paths never read them). */

#define NAM__CU_ATTN_BN 64

struct nam__cu_attn_params {
    const void *q, *k, *v;
    void *o;
    int sq, sk;          /* sequence lengths */
    int hq, hk, group;   /* heads; group = hq / hk */
    int bh;              /* b * hq */
    int nq;              /* query tiles per (batch, head) */
    int grp;             /* (batch, head) pairs per block-order group */
    int off;             /* causal: key j visible to query i iff j <= i + off */
    int causal;
    int neg;             /* scale < 0: S is negated and scale2 = |scale| log2 e */
    float scale2;
};

static __device__ __forceinline__ float nam__cu_attn_exp2(float x) {
#ifdef NAM_CUDA_EMULATE
    return exp2f(x);
#else
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
#endif
}

/* Issue cp.async copies of ROWS rows (D halves each, row stride `gstride` elements in
   global memory) into shared memory rows of LD halves; rows >= valid are zero-filled
   (src_bytes 0, the source address stays at the tile's first row). */
template <int D, int LD, int NT, int ROWS>
static __device__ __forceinline__ void nam__cu_attn_load(uint16_t *s, const uint16_t *g, int gstride, int valid, int tid) {
    constexpr int CPR = D / 8; /* 16-byte chunks per row */
    static_assert(ROWS * CPR % NT == 0, "whole chunks per thread");
#pragma unroll
    for (int i = 0; i < ROWS * CPR / NT; i++) {
        const int c = tid + i * NT, r = c / CPR, col = (c % CPR) * 8;
        const int ok = r < valid;
        nam__cu_cp16(s + r * LD + col, g + (ok ? r * gstride + col : 0), ok ? 16 : 0); /* < 2^31: checked on the host */
    }
}

/* two floats -> one register of two T (lo in the low half), one cvt on the device */
template <typename T> static __device__ __forceinline__ uint32_t nam__cu_attn_pack(float lo, float hi);
#ifdef NAM_CUDA_EMULATE
template <> __device__ __forceinline__ uint32_t nam__cu_attn_pack<nam__cu_bf16>(float lo, float hi) { return nam__cu_pack2<nam__cu_bf16>(lo, hi); }
template <> __device__ __forceinline__ uint32_t nam__cu_attn_pack<nam__cu_f16>(float lo, float hi) { return nam__cu_pack2<nam__cu_f16>(lo, hi); }
struct __align__(16) nam__cu_attn_u4 { uint32_t w[4]; };
#else
template <> __device__ __forceinline__ uint32_t nam__cu_attn_pack<nam__cu_bf16>(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}
template <> __device__ __forceinline__ uint32_t nam__cu_attn_pack<nam__cu_f16>(float lo, float hi) {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}
typedef uint4 nam__cu_attn_u4;
#endif

/* occupancy hint: CTAs per SM the register budget should allow */
#define NAM__CU_ATTN_MINB(D, NW, MT) ((NW) == 8 ? 1 : ((MT) == 1 && (D) <= 64 ? 3 : 2))

template <typename T, int D, int NW, int MT>
static __global__ void __launch_bounds__(NW * 32, NAM__CU_ATTN_MINB(D, NW, MT)) nam__cu_attn_fwd(const nam__cu_attn_params p) {
    constexpr int WR = 16 * MT;           /* query rows per warp */
    constexpr int BM = WR * NW, BN = NAM__CU_ATTN_BN, NT = NW * 32;
    constexpr int LD = D + 8;             /* padded row, in halves */
    constexpr int TILE = BN * LD;         /* one K or V tile */
    constexpr int KD = D / 16;            /* k16 steps over d */
    constexpr int NS = BN / 8;            /* n8 tiles of S */
    constexpr int NO = D / 8;             /* n8 tiles of O */
    constexpr bool QREG = MT == 1;        /* Q fragments live in registers; else re-read from shared memory */
    static_assert(D % 16 == 0 && D <= 128, "head dim");
    static_assert(!QREG || BM <= 2 * BN, "the Q tile must fit in one K/V stage");
    static_assert(BM <= 2 * BN, "the output stage must fit in one K/V stage");
    NAM__CU_DYN_SMEM(uint16_t, smem);

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, t = lane & 3;

    /* block order: groups of p.grp (batch, head) pairs one after the other (their K/V stay in
       L2); inside a group the heaviest query tiles first, the group's heads side by side */
    const int per = p.grp * p.nq;
    const int gi = static_cast<int>(blockIdx.x / static_cast<unsigned>(per));
    const int gn = min(p.grp, p.bh - gi * p.grp);
    const int rr = static_cast<int>(blockIdx.x) - gi * per;
    const int qt = p.nq - 1 - rr / gn;
    const int bh = gi * p.grp + rr % gn;
    const int b = bh / p.hq, h = bh % p.hq, kvh = h / p.group;
    const int q0 = qt * BM;
    const int qrows = min(BM, p.sq - q0);

    const int qstride = p.hq * D, kstride = p.hk * D; /* hq d, hk d < 2^24 */
    const uint16_t *gq = static_cast<const uint16_t *>(p.q) + (static_cast<int64_t>(b) * p.sq + q0) * qstride + h * D;
    const uint16_t *gk = static_cast<const uint16_t *>(p.k) + static_cast<int64_t>(b) * p.sk * kstride + kvh * D;
    const uint16_t *gv = static_cast<const uint16_t *>(p.v) + static_cast<int64_t>(b) * p.sk * kstride + kvh * D;

    /* keys this CTA visits: [0, kend) */
    int kend = p.sk;
    if (p.causal) kend = max(0, min(p.sk, q0 + qrows - 1 + p.off + 1));
    const int ntiles = (kend + BN - 1) / BN;

    /* this warp's rows: [wr0, wr0 + WR); it visits key tiles starting at or before wlim (the
       last key its last valid row sees; -1 when all its rows are past sq) */
    const int wr0 = q0 + WR * warp;
    const int wlim = wr0 >= p.sq ? -1 : p.causal ? min(wr0 + WR - 1, p.sq - 1) + p.off : p.sk - 1;

    /* shared memory: [Q tile (MT > 1)] [stage 0: K, V] [stage 1: K, V] */
    uint16_t *sq = smem, *stage0 = smem + (QREG ? 0 : BM * LD), *stage1 = stage0 + 2 * TILE;
    if (QREG) sq = stage1;

    /* ---- prologue: Q -> shared memory (-> registers); K/V tile 0 -> stage 0 ---- */
    nam__cu_attn_load<D, LD, NT, BM>(sq, gq, qstride, qrows, tid);
    nam__cu_cp_commit();
    if (ntiles > 0) {
        nam__cu_attn_load<D, LD, NT, BN>(stage0, gk, kstride, min(BN, p.sk), tid);
        nam__cu_attn_load<D, LD, NT, BN>(stage0 + TILE, gv, kstride, min(BN, p.sk), tid);
    }
    nam__cu_cp_commit();
    nam__cu_cp_wait<0>();
    __syncthreads();

    /* A fragments via ldmatrix.x4: matrix i = lane / 8 holds rows 8 (i & 1) .., dims 8 (i >> 1) .. */
    const uint16_t *qs = sq + (WR * warp + ((lane >> 3) & 1) * 8 + (lane & 7)) * LD + (lane >> 4) * 8;
    uint32_t qf[QREG ? KD : 1][4];
    if (QREG) {
#pragma unroll
        for (int kk = 0; kk < KD; kk++) nam__cu_ldsm_x4(qf[QREG ? kk : 0], qs + kk * 16);
        __syncthreads(); /* stage 1 is free for K/V tile 1 */
    }

    float o[MT][NO][4];
    float m[MT][2], l[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int n = 0; n < NO; n++) o[mt][n][0] = o[mt][n][1] = o[mt][n][2] = o[mt][n][3] = 0.0f;
        m[mt][0] = m[mt][1] = -INFINITY;
        l[mt][0] = l[mt][1] = 0.0f;
    }
    const float sc = p.scale2;

    /* per-lane ldmatrix offsets (halves) inside a K or V tile */
    const int koff = (((lane >> 4) * 8) + (lane & 7)) * LD + ((lane >> 3) & 1) * 8;   /* non-trans: keys x dims */
    const int voff = ((((lane >> 3) & 1) * 8) + (lane & 7)) * LD + (lane >> 4) * 8;   /* trans: keys x dims */

    for (int j = 0; j < ntiles; j++) {
        const int kt0 = j * BN;
        if (j + 1 < ntiles) {
            uint16_t *nx = ((j + 1) & 1) ? stage1 : stage0;
            const int nk = min(BN, p.sk - kt0 - BN);
            nam__cu_attn_load<D, LD, NT, BN>(nx, gk + static_cast<int64_t>(kt0 + BN) * kstride, kstride, nk, tid);
            nam__cu_attn_load<D, LD, NT, BN>(nx + TILE, gv + static_cast<int64_t>(kt0 + BN) * kstride, kstride, nk, tid);
        }
        nam__cu_cp_commit();

        if (kt0 <= wlim) {
            const uint16_t *ks = (j & 1) ? stage1 : stage0;
            const uint16_t *vs = ks + TILE;
            float s[MT][NS][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int n = 0; n < NS; n++) s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.0f;

            /* S = Q K^T: ldmatrix.x4 of K gives B fragments for two n8 tiles */
#pragma unroll
            for (int kk = 0; kk < KD; kk++) {
                uint32_t qa[QREG ? 1 : MT][4];
                if (!QREG) {
#pragma unroll
                    for (int mt = 0; mt < (QREG ? 1 : MT); mt++) nam__cu_ldsm_x4(qa[mt], qs + mt * 16 * LD + kk * 16);
                }
#pragma unroll
                for (int np = 0; np < NS / 2; np++) {
                    uint32_t kb[4];
                    nam__cu_ldsm_x4(kb, ks + koff + np * 16 * LD + kk * 16);
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        const uint32_t *a = QREG ? qf[QREG ? kk : 0] : qa[QREG ? 0 : mt];
                        nam__cu_mma<T>(s[mt][2 * np], a, kb);
                        nam__cu_mma<T>(s[mt][2 * np + 1], a, kb + 2);
                    }
                }
            }

            if (p.neg) {
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
#pragma unroll
                    for (int n = 0; n < NS; n++) s[mt][n][0] = -s[mt][n][0], s[mt][n][1] = -s[mt][n][1], s[mt][n][2] = -s[mt][n][2], s[mt][n][3] = -s[mt][n][3];
            }
            /* mask: keys past sk, and (causal) keys past a row's limit */
            if (kt0 + BN > p.sk || (p.causal && kt0 + BN - 1 > wr0 + p.off)) {
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    const int r0 = wr0 + 16 * mt + g;
                    const int lim0 = p.causal ? min(r0 + p.off, p.sk - 1) : p.sk - 1;
                    const int lim1 = p.causal ? min(r0 + 8 + p.off, p.sk - 1) : p.sk - 1;
#pragma unroll
                    for (int n = 0; n < NS; n++) {
                        const int c = kt0 + 8 * n + 2 * t;
                        if (c > lim0) s[mt][n][0] = -INFINITY;
                        if (c + 1 > lim0) s[mt][n][1] = -INFINITY;
                        if (c > lim1) s[mt][n][2] = -INFINITY;
                        if (c + 1 > lim1) s[mt][n][3] = -INFINITY;
                    }
                }
            }

            /* online softmax (base 2, scaled units) */
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                float x0 = -INFINITY, x1 = -INFINITY;
#pragma unroll
                for (int n = 0; n < NS; n++) {
                    x0 = fmaxf(x0, fmaxf(s[mt][n][0], s[mt][n][1]));
                    x1 = fmaxf(x1, fmaxf(s[mt][n][2], s[mt][n][3]));
                }
                x0 = fmaxf(x0, __shfl_xor_sync(0xffffffffu, x0, 1));
                x1 = fmaxf(x1, __shfl_xor_sync(0xffffffffu, x1, 1));
                x0 = fmaxf(x0, __shfl_xor_sync(0xffffffffu, x0, 2));
                x1 = fmaxf(x1, __shfl_xor_sync(0xffffffffu, x1, 2));
                const float n0 = fmaxf(m[mt][0], x0 * sc), n1 = fmaxf(m[mt][1], x1 * sc);
                /* a row that has seen no key yet keeps m = -inf: subtract 0 instead */
                const float u0 = n0 == -INFINITY ? 0.0f : n0, u1 = n1 == -INFINITY ? 0.0f : n1;
                const float a0 = nam__cu_attn_exp2(m[mt][0] - u0), a1 = nam__cu_attn_exp2(m[mt][1] - u1);
                m[mt][0] = n0;
                m[mt][1] = n1;
                float ps0 = 0.0f, ps1 = 0.0f;
#pragma unroll
                for (int n = 0; n < NS; n++) {
                    s[mt][n][0] = nam__cu_attn_exp2(fmaf(s[mt][n][0], sc, -u0));
                    s[mt][n][1] = nam__cu_attn_exp2(fmaf(s[mt][n][1], sc, -u0));
                    s[mt][n][2] = nam__cu_attn_exp2(fmaf(s[mt][n][2], sc, -u1));
                    s[mt][n][3] = nam__cu_attn_exp2(fmaf(s[mt][n][3], sc, -u1));
                    ps0 += s[mt][n][0] + s[mt][n][1];
                    ps1 += s[mt][n][2] + s[mt][n][3];
                }
                l[mt][0] = l[mt][0] * a0 + ps0;
                l[mt][1] = l[mt][1] * a1 + ps1;
#pragma unroll
                for (int n = 0; n < NO; n++) o[mt][n][0] *= a0, o[mt][n][1] *= a0, o[mt][n][2] *= a1, o[mt][n][3] *= a1;
            }

            /* O += P V: accumulator tiles 2 kk, 2 kk + 1 form the k16 A fragment kk */
#pragma unroll
            for (int kk = 0; kk < NS / 2; kk++) {
                uint32_t pa[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    pa[mt][0] = nam__cu_attn_pack<T>(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                    pa[mt][1] = nam__cu_attn_pack<T>(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                    pa[mt][2] = nam__cu_attn_pack<T>(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                    pa[mt][3] = nam__cu_attn_pack<T>(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
                }
#pragma unroll
                for (int dp = 0; dp < D / 16; dp++) {
                    uint32_t vb[4];
                    nam__cu_ldsm_x4_t(vb, vs + voff + kk * 16 * LD + dp * 16);
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        nam__cu_mma<T>(o[mt][2 * dp], pa[mt], vb);
                        nam__cu_mma<T>(o[mt][2 * dp + 1], pa[mt], vb + 2);
                    }
                }
            }
        }
        nam__cu_cp_wait<0>();
        __syncthreads(); /* tile j + 1 landed; every warp is done with tile j's stage */
    }

    /* ---- epilogue: O / l -> T, staged in this warp's rows of a free region, 16-byte stores ---- */
    uint16_t *so = (QREG ? stage0 : sq) + WR * warp * LD;
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        float l0 = l[mt][0], l1 = l[mt][1];
        l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
        l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
        l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
        l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
        const float i0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, i1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
        uint16_t *sr = so + (16 * mt + g) * LD + 2 * t;
#pragma unroll
        for (int n = 0; n < NO; n++) {
            *reinterpret_cast<uint32_t *>(sr + 8 * n) = nam__cu_attn_pack<T>(o[mt][n][0] * i0, o[mt][n][1] * i0);
            *reinterpret_cast<uint32_t *>(sr + 8 * LD + 8 * n) = nam__cu_attn_pack<T>(o[mt][n][2] * i1, o[mt][n][3] * i1);
        }
    }
    __syncwarp();
    constexpr int CPR = D / 8;
    uint16_t *go = static_cast<uint16_t *>(p.o) + (static_cast<int64_t>(b) * p.sq + q0) * qstride + h * D;
#pragma unroll
    for (int c = lane; c < WR * CPR; c += 32) {
        const int r = c / CPR, col = (c % CPR) * 8;
        if (WR * warp + r < qrows)
            *reinterpret_cast<nam__cu_attn_u4 *>(go + static_cast<int64_t>(WR * warp + r) * qstride + col) = *reinterpret_cast<const nam__cu_attn_u4 *>(so + r * LD + col);
    }
}

/* CTA shapes: 1 = 64 query rows, 4 warps of 16 rows, Q in registers;
               2 = 128 rows, 4 warps of 32 rows, Q re-read from shared memory (FlashAttention 2's H100 tile);
               3 = 128 rows, 8 warps of 16 rows, Q in registers.
   NAM_CUDA_ATTN_TILE (compile time) forces one; 0 (default) picks 2 when there are at least
   2 CTAs per SM of 128 rows, else 1. D = 96 takes 3 where 2 is asked for. */
#ifndef NAM_CUDA_ATTN_TILE
#define NAM_CUDA_ATTN_TILE 0
#endif
/* Block order: (batch, head) pairs are taken in groups whose K and V add up to about this
   many bytes (a third of H100's 50 MB L2), so K/V tiles are read from HBM about once. */
#ifndef NAM_CUDA_ATTN_GROUP_BYTES
#define NAM_CUDA_ATTN_GROUP_BYTES (INT64_C(16) << 20)
#endif

template <int D, int NW, int MT> static size_t nam__cu_attn_smem(void) {
    return (4u * NAM__CU_ATTN_BN + (MT == 1 ? 0u : 16u * MT * NW)) * (D + 8) * sizeof(uint16_t);
}

template <typename T, int D, int NW, int MT>
static nam_status nam__cu_attn_launch(nam__cu_attn_params &p, int64_t kv_bytes_per_head, void *stream, nam_error *err) {
    constexpr int BM = 16 * MT * NW;
    const size_t smem = nam__cu_attn_smem<D, NW, MT>();
    auto k = nam__cu_attn_fwd<T, D, NW, MT>;
    (void)stream; /* unused by the emulator's launch */
    p.nq = (p.sq + BM - 1) / BM;
    /* (batch, head) pairs per group: their K and V together about NAM_CUDA_ATTN_GROUP_BYTES */
    p.grp = static_cast<int>(kv_bytes_per_head >= NAM_CUDA_ATTN_GROUP_BYTES ? 1 : NAM_CUDA_ATTN_GROUP_BYTES / kv_bytes_per_head);
    if (p.grp > p.bh) p.grp = p.bh;
    if (smem > 48u * 1024u) NAM__CU_TRY(err, cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    const unsigned grid = static_cast<unsigned>(p.nq) * static_cast<unsigned>(p.bh);
    NAM__CU_LAUNCH(err, k, dim3(grid), dim3(NW * 32), smem, stream, p);
    return nam__ok(err);
}

template <typename T, int D>
static nam_status nam__cu_attn_pick(nam__cu_attn_params &p, int64_t b, void *stream, nam_error *err) {
    const int64_t kvb = INT64_C(4) * p.sk * D; /* K and V bytes of one (batch, head) */
    int tile = NAM_CUDA_ATTN_TILE, dev = 0, optin = 0;
    if (tile < 1 || tile > 3) tile = (p.sq + 127) / 128 * b * p.hq >= 2 * static_cast<int64_t>(nam__cu_sm_count()) ? 2 : 1;
    /* GPUs with less shared memory per block than the tile needs (sm_86/89: 99 KiB) take tile 1 */
    NAM__CU_TRY(err, cudaGetDevice(&dev));
    NAM__CU_TRY(err, cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    if ((tile == 2 && nam__cu_attn_smem<D, 4, 2>() > static_cast<size_t>(optin)) || (tile == 3 && nam__cu_attn_smem<D, 8, 1>() > static_cast<size_t>(optin))) tile = 1;
    if constexpr (D != 96) { /* D = 96 with 32 rows per warp spills registers: 8 warps of 16 rows instead */
        if (tile == 2) return nam__cu_attn_launch<T, D, 4, 2>(p, kvb, stream, err);
    } else {
        if (tile == 2) tile = 3;
    }
    if (tile == 3) return nam__cu_attn_launch<T, D, 8, 1>(p, kvb, stream, err);
    return nam__cu_attn_launch<T, D, 4, 1>(p, kvb, stream, err);
}

template <typename T>
static nam_status nam__cu_attn_dims(nam__cu_attn_params &p, int64_t b, int64_t d, void *stream, nam_error *err) {
    switch (d) {
    case 32: return nam__cu_attn_pick<T, 32>(p, b, stream, err);
    case 64: return nam__cu_attn_pick<T, 64>(p, b, stream, err);
    case 96: return nam__cu_attn_pick<T, 96>(p, b, stream, err);
    case 128: return nam__cu_attn_pick<T, 128>(p, b, stream, err);
    default: break;
    }
    return nam__err(err, NAM_ERR_NOT_IMPLEMENTED, "nam_attention: q.shape[3] (d) = %lld; the CUDA kernel supports head dims 32, 64, 96 and 128",
                       static_cast<long long>(d));
}

/* Checks the CUDA kernel's own limits (nam.h has checked shapes, options and devices). */
static nam_status nam__cu_attn_check(const nam_attention_desc *d, nam_error *err) {
    static const char *const nm[4] = {"q", "k", "v", "out"};
    const nam_tensor *ts[4] = {&d->q, &d->k, &d->v, &d->out};
    const int64_t hd = d->q.shape[3];
    nam_status st;
    for (int i = 0; i < 4; i++) {
        if (ts[i]->dtype != NAM_BF16 && ts[i]->dtype != NAM_F16)
            return nam__err(err, NAM_ERR_NOT_IMPLEMENTED, "nam_attention: %s has dtype %s; the CUDA kernel takes bf16 or f16 tensors", nm[i],
                               nam_dtype_name(ts[i]->dtype));
        if (ts[i]->dtype != d->q.dtype)
            return nam__err(err, NAM_ERR_NOT_IMPLEMENTED, "nam_attention: %s has dtype %s but q has %s; the CUDA kernel needs q, k, v and out of one dtype",
                               nm[i], nam_dtype_name(ts[i]->dtype), nam_dtype_name(d->q.dtype));
        if ((st = nam__cu_contig(ts[i], "nam_attention", nm[i], err)) != NAM_OK) return st;
        if (reinterpret_cast<uintptr_t>(ts[i]->data) % 16 != 0)
            return nam__err(err, NAM_ERR_NOT_IMPLEMENTED, "nam_attention: %s.data = %p is not 16-byte aligned; the CUDA kernel needs aligned tensors", nm[i],
                               ts[i]->data);
    }
    if (hd != 32 && hd != 64 && hd != 96 && hd != 128)
        return nam__err(err, NAM_ERR_NOT_IMPLEMENTED, "nam_attention: q.shape[3] (d) = %lld; the CUDA kernel supports head dims 32, 64, 96 and 128",
                           static_cast<long long>(hd));
    if (d->q.shape[1] > INT32_MAX - 256 || d->k.shape[1] > INT32_MAX - 256)
        return nam__err(err, NAM_ERR_NOT_IMPLEMENTED, "nam_attention: %s = %lld; the CUDA kernel takes sequence lengths below 2^31 - 256",
                           d->q.shape[1] > INT32_MAX - 256 ? "q.shape[1] (sq)" : "k.shape[1] (sk)",
                           static_cast<long long>(d->q.shape[1] > INT32_MAX - 256 ? d->q.shape[1] : d->k.shape[1]));
    if (d->q.shape[2] * hd >= (1 << 24) || d->k.shape[2] * hd >= (1 << 24))
        return nam__err(err, NAM_ERR_NOT_IMPLEMENTED, "nam_attention: %s * d = %lld; the CUDA kernel takes heads * head dim below 2^24",
                           d->q.shape[2] * hd >= (1 << 24) ? "hq" : "hk", static_cast<long long>((d->q.shape[2] > d->k.shape[2] ? d->q.shape[2] : d->k.shape[2]) * hd));
    if ((d->q.shape[1] + 63) / 64 * d->q.shape[0] * d->q.shape[2] > INT32_MAX)
        return nam__err(err, NAM_ERR_NOT_IMPLEMENTED, "nam_attention: b * hq * ceil(sq / 64) = %lld CTAs exceeds the grid limit 2^31 - 1",
                           static_cast<long long>((d->q.shape[1] + 63) / 64 * d->q.shape[0] * d->q.shape[2]));
    return NAM_OK;
}

extern "C" nam_status nam_cuda__attention_workspace_size(const nam_attention_desc *d, size_t *bytes, nam_error *err) {
    nam_status st;
    *bytes = 0;
    if ((st = nam__cu_attn_check(d, err)) != NAM_OK) return st;
    return nam__ok(err);
}

extern "C" nam_status nam_cuda__attention(const nam_attention_desc *d, void *workspace, size_t workspace_bytes, nam_error *err) {
    nam__cu_attn_params p;
    nam_status st;
    float scale;
    (void)workspace;
    (void)workspace_bytes;
    if ((st = nam__cu_attn_check(d, err)) != NAM_OK) return st;
    memset(&p, 0, sizeof p);
    p.q = d->q.data;
    p.k = d->k.data;
    p.v = d->v.data;
    p.o = d->out.data;
    p.sq = static_cast<int>(d->q.shape[1]);
    p.sk = static_cast<int>(d->k.shape[1]);
    p.hq = static_cast<int>(d->q.shape[2]);
    p.hk = static_cast<int>(d->k.shape[2]);
    p.group = p.hq / p.hk;
    p.bh = static_cast<int>(d->q.shape[0] * d->q.shape[2]);
    p.causal = d->causal != 0;
    p.off = p.causal && d->align == NAM_CAUSAL_BOTTOM_RIGHT ? p.sk - p.sq : 0;
    scale = d->scale;   /* resolved by nam.h (0 -> 1/sqrt(d)) */
    p.neg = scale < 0.0f;
    p.scale2 = fabsf(scale) * 1.4426950408889634f;
    if (d->q.dtype == NAM_BF16) return nam__cu_attn_dims<nam__cu_bf16>(p, d->q.shape[0], d->q.shape[3], d->stream, err);
    return nam__cu_attn_dims<nam__cu_f16>(p, d->q.shape[0], d->q.shape[3], d->stream, err);
}
#endif

#ifndef NAM_CUDA_SKIP_M2RNN
/* >>cuda-m2rnn ------------------------------------------------------------------------------ */
/* nam_m2rnn (and nam_m2rnn_step, which nam.h runs as a scan of one token) on CUDA tensors,
   with nam.h's semantics (>>kernels, nam__m2rnn_ref); nam.h has validated shapes and devices.

   Dtypes: q, k, v and out share one storage type T (f32, bf16 or f16); a, W, A_log, dt_bias
   and D may have any float dtype; the states are f32. Every tensor must be contiguous.
   Supported sizes: V in {4, 8, 16, 32, 64, 128} and K * V <= 4096 (one thread per 4 state
   elements, at most 1024 per CTA); others return NAM_ERR_NOT_IMPLEMENTED naming V or K.
   Non-finite gate inputs are NOT checked on the GPU (the CPU returns NAM_ERR_RANGE; a
   check here would need a device-to-host read, which synchronises the stream): such a
   gate makes its (b, head) outputs and state NaN.

   One CTA per (b, head), K * V / 4 threads: thread (row i, column group cg) keeps
   S[i][4 cg .. 4 cg + 3] in registers for the whole sequence. W_h (V x V, fp32) sits in
   shared memory. Tokens go in chunks of TC (32, fewer when shared memory is short):
     1. the chunk's k, q and v rows are staged in shared memory as fp32 (coalesced), and
        one thread per token computes its leak g = 1 - f = -expm1(-exp(A_log) softplus(a +
        dt_bias)) (libm expf, log1pf, expm1f: fp32, the CPU's formula);
     2. per token: each thread publishes its 4 values of row i in shared memory, reads the
        row back (a __syncwarp: a row's V / 4 threads sit in one warp), computes its 4
        pre-activations k_i v_c + sum_j S_ij W_jc (fp32 FMA, W read as warp broadcasts),
        the tanh (nam.h's rational, with __fdividef: <= 2 ulp more than the CPU's), the
        blend S += g (S~ - S), and q_i S_i; the read-out is reduced over the warp's rows
        by shuffles into a per-warp partial in shared memory;
     3. after the chunk: the partials are summed over warps, + D v, and stored to out.
   No __syncthreads inside a token: only per chunk (2 + 1). Workspace: none. */
#define NAM__CU_M2RNN_TC 32

struct nam__cu_m2rnn_args {
    const void *q, *k, *v, *a, *W, *A_log, *dt_bias, *D;
    const float *init;
    float *fin;
    void *out;
    int64_t l;
    int n, K, V, nq, nk, nv, nw, nf, TC, nwarps;
    int a_type, W_type, A_type, bias_type, D_type;
};

static __device__ __forceinline__ float nam__cu_m2rnn_tanh(float x) {
    const float u = fminf(x * x, NAM__M2RNN_TANH_X * NAM__M2RNN_TANH_X);
    float p = fmaf(NAM__M2RNN_TP4, u, NAM__M2RNN_TP3), q = fmaf(NAM__M2RNN_TQ4, u, NAM__M2RNN_TQ3);
    p = fmaf(p, u, NAM__M2RNN_TP2);
    q = fmaf(q, u, NAM__M2RNN_TQ2);
    p = fmaf(p, u, NAM__M2RNN_TP1);
    q = fmaf(q, u, NAM__M2RNN_TQ1);
    p = fmaf(p, u, NAM__M2RNN_TP0);
    q = fmaf(q, u, 1.0f);
    p = __fdividef(x * p, q);
    return fminf(1.0f, fmaxf(-1.0f, p));
}

/* floats of dynamic shared memory: W, the row exchange, the chunk's k, q, v and gates, the
   per-warp read-out partials */
static size_t nam__cu_m2rnn_smem(int K, int V, int TC, int nwarps) {
    return sizeof(float) * (static_cast<size_t>(V) * V + static_cast<size_t>(K) * V + static_cast<size_t>(TC) * (2 * K + V + 1) +
                            static_cast<size_t>(TC) * nwarps * V);
}

template <typename T>
static __global__ void __launch_bounds__(1024) nam__cu_m2rnn_scan(nam__cu_m2rnn_args a) {
    NAM__CU_DYN_SMEM(float, sm);
    const T *Q = static_cast<const T *>(a.q), *Kt = static_cast<const T *>(a.k), *Vt = static_cast<const T *>(a.v);
    T *O = static_cast<T *>(a.out);
    const int K = a.K, V = a.V, VG = V / 4, TC = a.TC, nw = a.nwarps, n = a.n;
    const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5, nthr = static_cast<int>(blockDim.x);
    const int64_t bi = blockIdx.x / n;
    const int h = static_cast<int>(blockIdx.x % n), row = tid / VG, c0 = 4 * (tid % VG);
    const int hq = h / (n / a.nq), hk = h / (n / a.nk), hv = h / (n / a.nv), hw = h / (n / a.nw), hf = h / (n / a.nf);
    const bool active = row < K;
    float *Wsh = sm, *Ssh = Wsh + V * V, *kc = Ssh + K * V, *qc = kc + TC * K, *vc = qc + TC * K, *gc = vc + TC * V, *yp = gc + TC;
    float s[4];
    const float negA = -expf(nam__cu_load(a.A_log, a.A_type, h)), bias = a.dt_bias ? nam__cu_load(a.dt_bias, a.bias_type, h) : 0.0f;
    for (int i = tid; i < V * V; i += nthr) Wsh[i] = nam__cu_load(a.W, a.W_type, static_cast<int64_t>(hw) * V * V + i);
    for (int c = 0; c < 4; c++)
        s[c] = active && a.init ? a.init[((bi * n + h) * K + row) * V + c0 + c] : 0.0f;
    for (int64_t t0 = 0; t0 < a.l; t0 += TC) {
        const int nt = static_cast<int>(a.l - t0 < TC ? a.l - t0 : TC);
        __syncthreads();   /* the previous chunk's buffers are free (defensive: the read-out below reads
                              vc with the staging's own index mapping) */
        for (int i = tid; i < nt * K; i += nthr) {
            const int tt = i / K, r = i % K;
            const int64_t t = bi * a.l + t0 + tt;
            kc[i] = nam__cu_f(Kt[(t * a.nk + hk) * K + r]);
            qc[i] = nam__cu_f(Q[(t * a.nq + hq) * K + r]);
        }
        for (int i = tid; i < nt * V; i += nthr) {
            const int tt = i / V, c = i % V;
            vc[i] = nam__cu_f(Vt[((bi * a.l + t0 + tt) * a.nv + hv) * V + c]);
        }
        if (tid < nt) {
            const float x = nam__cu_load(a.a, a.a_type, (bi * a.l + t0 + tid) * a.nf + hf) + bias;
            const float sp = fminf(x > 20.0f ? x : log1pf(expf(x)), 3.402823466e+38f);
            gc[tid] = -expm1f(negA * sp);
        }
        __syncthreads();
        for (int tt = 0; tt < nt; tt++) {
            float p[4], y[4];
            if (active)
                for (int c = 0; c < 4; c++) Ssh[row * V + c0 + c] = s[c];
            __syncwarp();
            if (active) {
                const float kv = kc[tt * K + row], g = gc[tt], qv = qc[tt * K + row];
                const float *srow = Ssh + row * V;
                for (int c = 0; c < 4; c++) p[c] = kv * vc[tt * V + c0 + c];
                for (int j = 0; j < V; j++) {
                    const float sj = srow[j];
                    const float *w = Wsh + j * V + c0;
                    for (int c = 0; c < 4; c++) p[c] = fmaf(sj, w[c], p[c]);
                }
                for (int c = 0; c < 4; c++) {
                    s[c] = fmaf(g, nam__cu_m2rnn_tanh(p[c]) - s[c], s[c]);
                    y[c] = qv * s[c];
                }
            } else
                for (int c = 0; c < 4; c++) y[c] = 0.0f;
            __syncwarp();   /* every thread has read its row before the next token rewrites it */
            for (int o = VG; o < 32; o <<= 1)
                for (int c = 0; c < 4; c++) y[c] += __shfl_xor_sync(0xffffffffu, y[c], o);
            if (lane < VG)
                for (int c = 0; c < 4; c++) yp[(tt * nw + warp) * V + c0 + c] = y[c];
        }
        __syncthreads();
        for (int i = tid; i < nt * V; i += nthr) {
            const int tt = i / V, c = i % V;
            float y = a.D ? nam__cu_load(a.D, a.D_type, static_cast<int64_t>(h) * V + c) * vc[i] : 0.0f;
            for (int w = 0; w < nw; w++) y += yp[(tt * nw + w) * V + c];
            O[((bi * a.l + t0 + tt) * n + h) * V + c] = nam__cu_to<T>(y);
        }
    }
    if (active && a.fin)
        for (int c = 0; c < 4; c++) a.fin[((bi * n + h) * K + row) * V + c0 + c] = s[c];
}

extern "C" nam_status nam_cuda__m2rnn(const nam_m2rnn_desc *d, void *workspace, size_t workspace_bytes, nam_error *err) {
    static const char *const names[11] = {"q", "k", "v", "W", "a", "A_log", "dt_bias", "D", "initial_state", "out", "final_state"};
    const nam_tensor *ts[11] = {&d->q, &d->k, &d->v, &d->W, &d->a, &d->A_log, &d->dt_bias, &d->D, &d->initial_state, &d->out, &d->final_state};
    const nam_tensor *same[3] = {&d->k, &d->v, &d->out};
    const char *fn = "CUDA";
    cudaStream_t stream = static_cast<cudaStream_t>(d->stream);
    nam__cu_m2rnn_args a;
    int64_t b, blocks;
    int i, threads;
    size_t smem;
    nam_status st;
    (void)workspace;
    (void)workspace_bytes;
    (void)stream;
    for (i = 0; i < 11; i++)
        if ((st = nam__cu_contig(ts[i], fn, names[i], err)) != NAM_OK) return st;
    for (i = 0; i < 3; i++)
        if (same[i]->dtype != d->q.dtype)
            return nam__err(err, NAM_ERR_NOT_IMPLEMENTED, "%s has dtype %s but q has dtype %s; on CUDA q, k, v and out share one dtype", names[i == 2 ? 9 : i + 1],
                               nam_dtype_name(same[i]->dtype), nam_dtype_name(d->q.dtype));
    memset(&a, 0, sizeof a);
    b = d->q.shape[0];
    a.l = d->q.shape[1];
    a.nq = static_cast<int>(d->q.shape[2]);
    a.K = static_cast<int>(d->q.shape[3]);
    a.nk = static_cast<int>(d->k.shape[2]);
    a.nv = static_cast<int>(d->v.shape[2]);
    a.V = static_cast<int>(d->v.shape[3]);
    a.nw = static_cast<int>(d->W.shape[0]);
    a.nf = static_cast<int>(d->a.shape[2]);
    a.n = static_cast<int>(d->out.shape[2]);
    if (a.V % 4 != 0 || a.V > 128 || 32 % (a.V / 4) != 0)
        return nam__err(err, NAM_ERR_NOT_IMPLEMENTED, "v.shape[3] (V) = %d is not supported on CUDA (V must be 4, 8, 16, 32, 64 or 128)", a.V);
    if (static_cast<int64_t>(a.K) * a.V > 4096)
        return nam__err(err, NAM_ERR_NOT_IMPLEMENTED, "q.shape[3] (K) = %d with V = %d is not supported on CUDA (K * V must be at most 4096)", a.K, a.V);
    threads = (a.K * (a.V / 4) + 31) / 32 * 32;
    a.nwarps = threads / 32;
    for (a.TC = NAM__CU_M2RNN_TC; a.TC > 1 && nam__cu_m2rnn_smem(a.K, a.V, a.TC, a.nwarps) > 232448; a.TC /= 2) {}
    smem = nam__cu_m2rnn_smem(a.K, a.V, a.TC, a.nwarps);
    blocks = b * a.n;
    if (blocks > INT32_MAX) return nam__err(err, NAM_ERR_LIMIT, "b * n = %lld is above the CUDA grid limit 2^31 - 1", static_cast<long long>(blocks));
    a.q = d->q.data; a.k = d->k.data; a.v = d->v.data; a.a = d->a.data; a.W = d->W.data; a.A_log = d->A_log.data;
    a.dt_bias = d->dt_bias.data; a.D = d->D.data; a.out = d->out.data;
    a.init = static_cast<const float *>(d->initial_state.data);
    a.fin = static_cast<float *>(d->final_state.data);
    a.a_type = d->a.dtype; a.W_type = d->W.dtype; a.A_type = d->A_log.dtype; a.bias_type = d->dt_bias.dtype; a.D_type = d->D.dtype;
    switch (d->q.dtype) {
    case NAM_F32: {
        auto k = nam__cu_m2rnn_scan<float>;
        if (smem > 48 * 1024) NAM__CU_TRY(err, cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
        NAM__CU_LAUNCH(err, k, dim3(static_cast<unsigned>(blocks)), dim3(threads), smem, stream, a);
        break;
    }
    case NAM_BF16: {
        auto k = nam__cu_m2rnn_scan<nam__cu_bf16>;
        if (smem > 48 * 1024) NAM__CU_TRY(err, cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
        NAM__CU_LAUNCH(err, k, dim3(static_cast<unsigned>(blocks)), dim3(threads), smem, stream, a);
        break;
    }
    case NAM_F16: {
        auto k = nam__cu_m2rnn_scan<nam__cu_f16>;
        if (smem > 48 * 1024) NAM__CU_TRY(err, cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
        NAM__CU_LAUNCH(err, k, dim3(static_cast<unsigned>(blocks)), dim3(threads), smem, stream, a);
        break;
    }
    default: return nam__err(err, NAM_ERR_NOT_IMPLEMENTED, "q dtype %s is not supported on CUDA", nam_dtype_name(d->q.dtype));
    }
    return nam__ok(err);
}
#endif

/* NAM_CUDA_SKIP_<PART>: build without that part (its hooks say "not implemented"). For
   working on one part at a time. The hooks are nam.h's NAM__CUDA_HOOKS list. */
#define NAM__CU_SKIP_FN(name, params)                                                                                \
    extern "C" nam_status name params {                                                                              \
        return nam__err(err, NAM_ERR_NOT_IMPLEMENTED, #name ": this build left the kernel out (NAM_CUDA_SKIP_*)");  \
    }
#define NAM__CU_KEEP_FN(name, params)
#ifdef NAM_CUDA_SKIP_SSD
#define NAM__CU_PART_SSD NAM__CU_SKIP_FN
#else
#define NAM__CU_PART_SSD NAM__CU_KEEP_FN
#endif
#ifdef NAM_CUDA_SKIP_MOE
#define NAM__CU_PART_MOE NAM__CU_SKIP_FN
#else
#define NAM__CU_PART_MOE NAM__CU_KEEP_FN
#endif
#ifdef NAM_CUDA_SKIP_ATTENTION
#define NAM__CU_PART_ATTENTION NAM__CU_SKIP_FN
#else
#define NAM__CU_PART_ATTENTION NAM__CU_KEEP_FN
#endif
#ifdef NAM_CUDA_SKIP_M2RNN
#define NAM__CU_PART_M2RNN NAM__CU_SKIP_FN
#else
#define NAM__CU_PART_M2RNN NAM__CU_KEEP_FN
#endif
#define NAM__CU_SKIPPED(part, name, params) NAM__CU_PART_##part(name, params)
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"   /* a fallback reads only err */
#endif
NAM__CUDA_HOOKS(NAM__CU_SKIPPED)
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic pop
#endif

#endif /* NAM_CUDA_IMPLEMENTATION */
