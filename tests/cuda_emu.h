/* tests/cuda_emu.h - a small CUDA emulator for checking nam_cuda.cuh's kernels on a
   machine without a GPU.                                                         C++17

   Compile the CUDA implementation as host C++ over it:
       g++ -std=c++17 -x c++ -DNAM_CUDA_EMULATE -include tests/cuda_emu.h -c nam_cuda.cu

   Model: a launch runs its blocks one after another; every thread of a block is a fiber
   (ucontext) and runs until it waits: __syncthreads, or a warp collective (shuffles,
   mma, ldmatrix), which waits for the warp's 32 lanes. __shared__ becomes `static`, so all
   threads of the block see one array. Blocks and threads run in a fixed order, memory is
   sequentially consistent, so the emulator checks index math, fragment layouts, barrier
   placement (a barrier or warp collective that not every live thread reaches is a
   deadlock, reported as a launch failure) and, built with ASan, out-of-bounds accesses. It
   does not check speed, occupancy, register use or races that a real GPU could expose
   (compute-sanitizer racecheck on a GPU does that).

   Warp collectives take the full mask only, and every lane of the warp must call them.
*/
#ifndef NAM_CUDA_EMU_H_INCLUDED
#define NAM_CUDA_EMU_H_INCLUDED

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include <functional>
#include <vector>

/* ---- language ------------------------------------------------------------------------- */
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __shared__ static
#define __constant__ static
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))

struct uint3 { unsigned x, y, z; };
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
static uint3 threadIdx, blockIdx;
static dim3 blockDim, gridDim;
static const int warpSize = 32;

/* ---- 16-bit float types (bit patterns; conversions round to nearest even) ------------- */
struct __nv_bfloat16 { unsigned short x; };
struct __half { unsigned short x; };

static inline float __bfloat162float(__nv_bfloat16 v) {
    uint32_t u = static_cast<uint32_t>(v.x) << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline __nv_bfloat16 __float2bfloat16(float f) {
    uint32_t u;
    __nv_bfloat16 r;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) r.x = static_cast<unsigned short>((u >> 16) | 0x40u);
    else r.x = static_cast<unsigned short>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    return r;
}
static inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __float2bfloat16(f); }
static inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 v) { return v.x; }
static inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { __nv_bfloat16 r; r.x = u; return r; }

static inline float __half2float(__half h) {
    uint32_t s = (h.x & 0x8000u) << 16, e = (h.x >> 10) & 0x1fu, m = h.x & 0x3ffu, u;
    float f;
    if (e == 0) {
        f = ldexpf(static_cast<float>(m), -24);
        return s ? -f : f;
    }
    if (e == 31) u = s | 0x7f800000u | (m << 13);
    else u = s | ((e - 15 + 127) << 23) | (m << 13);
    memcpy(&f, &u, 4);
    return f;
}
static inline __half __float2half_rn(float f) {
    uint32_t x, sign, ax;
    __half r;
    memcpy(&x, &f, 4);
    sign = (x >> 16) & 0x8000u;
    ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) { r.x = static_cast<unsigned short>(sign | (ax > 0x7f800000u ? 0x7e00u : 0x7c00u)); return r; }
    if (ax >= 0x477ff000u) { r.x = static_cast<unsigned short>(sign | 0x7c00u); return r; }   /* >= 65520: inf */
    if (ax < 0x38800000u) {                                                                   /* below 2^-14: subnormal */
        float a;
        memcpy(&a, &ax, 4);
        r.x = static_cast<unsigned short>(sign | static_cast<uint32_t>(nearbyintf(a * 16777216.0f)));
        return r;
    }
    {
        uint32_t e = (ax >> 23) - 127 + 15, m = ax & 0x7fffffu, h = (e << 10) | (m >> 13), rem = m & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
        r.x = static_cast<unsigned short>(sign | h);
    }
    return r;
}
static inline __half __float2half(float f) { return __float2half_rn(f); }
static inline unsigned short __half_as_ushort(__half v) { return v.x; }
static inline __half __ushort_as_half(unsigned short u) { __half r; r.x = u; return r; }

/* ---- math ------------------------------------------------------------------------------ */
#define __expf(x) expf(x)
#define __logf(x) logf(x)
static inline float __fdividef(float a, float b) { return a / b; }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline long min(long a, long b) { return a < b ? a : b; }
static inline long max(long a, long b) { return a > b ? a : b; }
template <typename T> static inline T __ldg(const T *p) { return *p; }
static inline void __threadfence(void) {}
static inline void __threadfence_block(void) {}

/* ---- atomics (fibers never interrupt each other: plain read-modify-write) -------------- */
template <typename T> static inline T atomicAdd(T *p, T v) { T o = *p; *p = o + v; return o; }
template <typename T> static inline T atomicSub(T *p, T v) { T o = *p; *p = o - v; return o; }
template <typename T> static inline T atomicMax(T *p, T v) { T o = *p; if (v > o) *p = v; return o; }
template <typename T> static inline T atomicMin(T *p, T v) { T o = *p; if (v < o) *p = v; return o; }
template <typename T> static inline T atomicExch(T *p, T v) { T o = *p; *p = v; return o; }
template <typename T> static inline T atomicCAS(T *p, T cmp, T v) { T o = *p; if (o == cmp) *p = v; return o; }
template <typename T> static inline T atomicOr(T *p, T v) { T o = *p; *p = o | v; return o; }

/* ---- runtime ---------------------------------------------------------------------------- */
typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInsufficientDriver = 35,
    cudaErrorNoDevice = 100,
    cudaErrorMisalignedAddress = 716,
    cudaErrorLaunchFailure = 719
} cudaError_t;
typedef enum cudaMemcpyKind { cudaMemcpyHostToHost = 0, cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3, cudaMemcpyDefault = 4 } cudaMemcpyKind;
typedef enum cudaDeviceAttr { cudaDevAttrMaxSharedMemoryPerBlockOptin = 97, cudaDevAttrMultiProcessorCount = 16 } cudaDeviceAttr;
typedef enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 } cudaFuncAttribute;
typedef struct CUstream_st *cudaStream_t;

static cudaError_t nam_emu_last_error = cudaSuccess;

static inline const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorMisalignedAddress: return "cudaErrorMisalignedAddress";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    }
    return "cudaErrorUnknown";
}
static inline const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument (emulator)";
    case cudaErrorMisalignedAddress: return "misaligned address (emulator)";
    case cudaErrorLaunchFailure: return "unspecified launch failure (emulator: see stderr)";
    default: return "unknown error";
    }
}
static inline cudaError_t cudaGetLastError(void) { cudaError_t e = nam_emu_last_error; nam_emu_last_error = cudaSuccess; return e; }
static inline cudaError_t cudaPeekAtLastError(void) { return nam_emu_last_error; }
static inline cudaError_t cudaGetDeviceCount(int *n) { *n = 1; return cudaSuccess; }
static inline cudaError_t cudaGetDevice(int *d) { *d = 0; return cudaSuccess; }
static inline cudaError_t cudaSetDevice(int) { return cudaSuccess; }
static inline cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int) {
    *v = a == cudaDevAttrMultiProcessorCount ? 4 : a == cudaDevAttrMaxSharedMemoryPerBlockOptin ? 232448 : 0;
    return cudaSuccess;
}
template <typename F> static inline cudaError_t cudaFuncSetAttribute(F, cudaFuncAttribute, int v) {
    return v >= 0 && v <= 232448 ? cudaSuccess : cudaErrorInvalidValue;
}
/* exactly n bytes (256-aligned, like cudaMalloc), so that ASan sees overruns */
static inline cudaError_t cudaMalloc(void **p, size_t n) {
    *p = nullptr;
    if (posix_memalign(p, 256, n ? n : 1) != 0) { *p = nullptr; return cudaErrorMemoryAllocation; }
    return cudaSuccess;
}
template <typename T> static inline cudaError_t cudaMalloc(T **p, size_t n) { return cudaMalloc(reinterpret_cast<void **>(p), n); }
static inline cudaError_t cudaFree(void *p) { free(p); return cudaSuccess; }
static inline cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind) { if (n) memmove(d, s, n); return cudaSuccess; }
static inline cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind k, cudaStream_t = 0) { return cudaMemcpy(d, s, n, k); }
static inline cudaError_t cudaMemset(void *d, int v, size_t n) { if (n) memset(d, v, n); return cudaSuccess; }
static inline cudaError_t cudaMemsetAsync(void *d, int v, size_t n, cudaStream_t = 0) { return cudaMemset(d, v, n); }
static inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
static inline cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }

/* ---- the fiber scheduler ----------------------------------------------------------------- */
#define NAM_EMU_MAX_THREADS 1024
#define NAM_EMU_STACK (256 * 1024)
#define NAM_EMU_SMEM (232448)

struct nam_emu_state {
    ucontext_t sched;
    ucontext_t ctx[NAM_EMU_MAX_THREADS];
    char *stack[NAM_EMU_MAX_THREADS];
    unsigned char done[NAM_EMU_MAX_THREADS];
    int nthreads, cur, live, failed;
    const std::function<void()> *body;
    /* block barrier */
    unsigned bar_gen;
    int bar_count;
    /* warp barriers and exchange slots */
    unsigned wgen[32];
    int wcount[32], wlive[32], wsize[32];
    uint64_t slot[NAM_EMU_MAX_THREADS][10];
    long events;          /* arrivals + releases + completions: progress */
    const char *kernel;
    unsigned char *smem;  /* this launch's dynamic shared memory: exactly its size, for ASan */
};
static nam_emu_state *nam_emu_s = nullptr;

static inline void *nam_emu_dyn_smem(void) { return nam_emu_s->smem; }
static inline int nam_emu_tid(void) { return nam_emu_s->cur; }

static inline void nam_emu_fail(const char *what) {
    if (!nam_emu_s->failed)
        fprintf(stderr, "cuda_emu: kernel %s, block (%u,%u,%u), thread %d: %s\n", nam_emu_s->kernel, blockIdx.x, blockIdx.y, blockIdx.z, nam_emu_s->cur, what);
    nam_emu_s->failed = 1;
}

static inline void nam_emu_yield(void) { swapcontext(&nam_emu_s->ctx[nam_emu_s->cur], &nam_emu_s->sched); }

static inline void __syncthreads(void) {
    nam_emu_state *s = nam_emu_s;
    unsigned g = s->bar_gen;
    s->events++;
    if (++s->bar_count == s->live) {
        s->bar_count = 0;
        s->bar_gen++;
        return;
    }
    while (s->bar_gen == g) nam_emu_yield();
}

static inline void nam_emu_warp_barrier(void) {
    nam_emu_state *s = nam_emu_s;
    int w = s->cur / 32;
    unsigned g = s->wgen[w];
    s->events++;
    if (s->wlive[w] != s->wsize[w]) nam_emu_fail("warp collective with the full mask after a lane of the warp exited");
    if (++s->wcount[w] == s->wlive[w]) {
        s->wcount[w] = 0;
        s->wgen[w]++;
        return;
    }
    while (s->wgen[w] == g) nam_emu_yield();
}
static inline void __syncwarp(unsigned = 0xffffffffu) { nam_emu_warp_barrier(); }

/* lane values exchanged through slot[tid][0] */
template <typename T> static inline T nam_emu_shfl_from(T v, int src_lane_fn(int lane, int arg), int arg) {
    nam_emu_state *s = nam_emu_s;
    int tid = s->cur, lane = tid % 32, base = tid - lane, src;
    T r;
    static_assert(sizeof(T) <= 8, "shuffle of at most 8 bytes");
    memcpy(&s->slot[tid][0], &v, sizeof(T));
    nam_emu_warp_barrier();
    src = src_lane_fn(lane, arg);
    if (src < 0 || src >= s->wsize[base / 32]) src = lane;
    memcpy(&r, &s->slot[base + src][0], sizeof(T));
    nam_emu_warp_barrier();
    return r;
}
static inline int nam_emu_lane_xor(int lane, int m) { return lane ^ m; }
static inline int nam_emu_lane_idx(int, int src) { return src & 31; }
static inline int nam_emu_lane_down(int lane, int d) { return lane + d < 32 ? lane + d : lane; }
static inline int nam_emu_lane_up(int lane, int d) { return lane - d >= 0 ? lane - d : lane; }
template <typename T> static inline T __shfl_xor_sync(unsigned, T v, int m, int = 32) { return nam_emu_shfl_from(v, nam_emu_lane_xor, m); }
template <typename T> static inline T __shfl_sync(unsigned, T v, int src, int = 32) { return nam_emu_shfl_from(v, nam_emu_lane_idx, src); }
template <typename T> static inline T __shfl_down_sync(unsigned, T v, unsigned d, int = 32) { return nam_emu_shfl_from(v, nam_emu_lane_down, static_cast<int>(d)); }
template <typename T> static inline T __shfl_up_sync(unsigned, T v, unsigned d, int = 32) { return nam_emu_shfl_from(v, nam_emu_lane_up, static_cast<int>(d)); }
static inline unsigned __ballot_sync(unsigned, int pred) {
    nam_emu_state *s = nam_emu_s;
    int tid = s->cur, lane = tid % 32, base = tid - lane, i;
    unsigned r = 0;
    s->slot[tid][0] = pred != 0;
    nam_emu_warp_barrier();
    for (i = 0; i < s->wsize[base / 32]; i++)
        if (s->slot[base + i][0]) r |= 1u << i;
    nam_emu_warp_barrier();
    return r;
}
static inline int __any_sync(unsigned m, int pred) { return __ballot_sync(m, pred) != 0; }
static inline int __all_sync(unsigned m, int pred) {
    int n = nam_emu_s->wsize[nam_emu_s->cur / 32];
    unsigned full = n == 32 ? 0xffffffffu : (1u << n) - 1u;
    return __ballot_sync(m, pred) == full;
}

/* mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}: d += A * B with the PTX fragment
   layouts (lane = 4 g + t):
     A (16x16): a[r] holds (row g + 8 (r & 1), cols 2t + 8 (r >> 1) + {0, 1})
     B (16x8):  b[r] holds (k 2t + 8 r + {0, 1}, col g)
     D (16x8):  d[i] holds (row g + 8 (i >> 1), col 2t + (i & 1))                       */
static inline float nam_emu_h2f(uint32_t bits16, int bf16) {
    if (bf16) return __bfloat162float(__ushort_as_bfloat16(static_cast<unsigned short>(bits16)));
    return __half2float(__ushort_as_half(static_cast<unsigned short>(bits16)));
}
static inline void nam_emu_mma16816(float d[4], const uint32_t a[4], const uint32_t b[2], int bf16) {
    nam_emu_state *s = nam_emu_s;
    int tid = s->cur, lane = tid % 32, base = tid - lane, g = lane >> 2, t = lane & 3, i, k;
    float A[16][16], B[16][8], out[4];
    if (s->wsize[base / 32] != 32) nam_emu_fail("mma.sync in a partial warp");
    for (i = 0; i < 4; i++) s->slot[tid][i] = a[i];
    s->slot[tid][4] = b[0];
    s->slot[tid][5] = b[1];
    nam_emu_warp_barrier();
    for (int r = 0; r < 16; r++)
        for (k = 0; k < 16; k++) {
            int owner = (r % 8) * 4 + (k % 8) / 2, reg = (r >= 8) + 2 * (k >= 8);
            uint32_t w = static_cast<uint32_t>(s->slot[base + owner][reg]);
            A[r][k] = nam_emu_h2f((k & 1) ? w >> 16 : w & 0xffffu, bf16);
        }
    for (k = 0; k < 16; k++)
        for (int n = 0; n < 8; n++) {
            int owner = n * 4 + (k % 8) / 2, reg = 4 + (k >= 8);
            uint32_t w = static_cast<uint32_t>(s->slot[base + owner][reg]);
            B[k][n] = nam_emu_h2f((k & 1) ? w >> 16 : w & 0xffffu, bf16);
        }
    for (i = 0; i < 4; i++) {
        int row = g + 8 * (i >> 1), col = 2 * t + (i & 1);
        float acc = d[i];
        for (k = 0; k < 16; k++) acc += A[row][k] * B[k][col];
        out[i] = acc;
    }
    nam_emu_warp_barrier();
    for (i = 0; i < 4; i++) d[i] = out[i];
}

/* ldmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16: lane l gives the address of row
   l % 8 of matrix l / 8 (lanes beyond 8 * num are ignored); r[j] of lane l gets matrix j's
   (row l / 4, cols 2 (l % 4) + {0, 1}), or with trans (rows 2 (l % 4) + {0, 1}, col l / 4). */
static inline void nam_emu_ldmatrix(uint32_t *r, int num, const void *row, int trans) {
    nam_emu_state *s = nam_emu_s;
    int tid = s->cur, lane = tid % 32, base = tid - lane, j;
    if (s->wsize[base / 32] != 32) nam_emu_fail("ldmatrix in a partial warp");
    if (lane < 8 * num && (reinterpret_cast<uintptr_t>(row) & 15u) != 0) nam_emu_fail("ldmatrix row address is not 16-byte aligned");
    s->slot[tid][0] = reinterpret_cast<uintptr_t>(row);
    nam_emu_warp_barrier();
    for (j = 0; j < num; j++) {
        const uint16_t *p0, *p1;
        if (!trans) {
            p0 = reinterpret_cast<const uint16_t *>(s->slot[base + 8 * j + lane / 4][0]);
            r[j] = static_cast<uint32_t>(p0[2 * (lane % 4)]) | (static_cast<uint32_t>(p0[2 * (lane % 4) + 1]) << 16);
        } else {
            p0 = reinterpret_cast<const uint16_t *>(s->slot[base + 8 * j + 2 * (lane % 4)][0]);
            p1 = reinterpret_cast<const uint16_t *>(s->slot[base + 8 * j + 2 * (lane % 4) + 1][0]);
            r[j] = static_cast<uint32_t>(p0[lane / 4]) | (static_cast<uint32_t>(p1[lane / 4]) << 16);
        }
    }
    nam_emu_warp_barrier();
}

/* cp.async.cg 16 bytes: done at once (a valid schedule of the asynchronous copy). */
static inline void nam_emu_cp16(void *smem, const void *gmem, int src_bytes) {
    if ((reinterpret_cast<uintptr_t>(smem) & 15u) || (reinterpret_cast<uintptr_t>(gmem) & 15u)) nam_emu_fail("cp.async 16-byte copy with an unaligned address");
    if (src_bytes < 0 || src_bytes > 16) nam_emu_fail("cp.async src_bytes outside 0..16");
    if (src_bytes > 0) memcpy(smem, gmem, static_cast<size_t>(src_bytes));
    if (src_bytes < 16) memset(static_cast<char *>(smem) + src_bytes, 0, static_cast<size_t>(16 - src_bytes));
}

static void nam_emu_entry(void) {
    (*nam_emu_s->body)();
    nam_emu_s->done[nam_emu_s->cur] = 1;
}

static inline void nam_emu_set_thread(int t) {
    nam_emu_s->cur = t;
    threadIdx.x = static_cast<unsigned>(t) % blockDim.x;
    threadIdx.y = (static_cast<unsigned>(t) / blockDim.x) % blockDim.y;
    threadIdx.z = static_cast<unsigned>(t) / (blockDim.x * blockDim.y);
}

/* Run every block of a launch; errors: bad configuration, a deadlock, or a failed check. */
static inline cudaError_t nam_emu_launch(const char *name, dim3 grid, dim3 block, size_t smem, const std::function<void()> &body) {
    nam_emu_state *s;
    unsigned long long nthreads = static_cast<unsigned long long>(block.x) * block.y * block.z;
    if (!nam_emu_s) {
        nam_emu_s = static_cast<nam_emu_state *>(aligned_alloc(256, (sizeof(nam_emu_state) + 255) & ~static_cast<size_t>(255)));
        memset(nam_emu_s, 0, sizeof *nam_emu_s);
    }
    s = nam_emu_s;
    if (grid.x < 1 || grid.y < 1 || grid.z < 1 || grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535 || nthreads < 1 || nthreads > 1024 ||
        block.z > 64 || smem > NAM_EMU_SMEM) {
        fprintf(stderr, "cuda_emu: kernel %s: invalid launch: grid (%u,%u,%u), block (%u,%u,%u), %zu bytes of dynamic shared memory\n", name, grid.x, grid.y,
                grid.z, block.x, block.y, block.z, smem);
        nam_emu_last_error = cudaErrorInvalidConfiguration;
        return nam_emu_last_error;
    }
    free(s->smem);
    s->smem = nullptr;
    if (posix_memalign(reinterpret_cast<void **>(&s->smem), 256, smem ? smem : 1) != 0) {
        nam_emu_last_error = cudaErrorMemoryAllocation;
        return nam_emu_last_error;
    }
    s->nthreads = static_cast<int>(nthreads);
    s->kernel = name;
    s->body = &body;
    s->failed = 0;
    gridDim = grid;
    blockDim = block;
    for (int t = 0; t < s->nthreads; t++)
        if (!s->stack[t]) s->stack[t] = static_cast<char *>(malloc(NAM_EMU_STACK));
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++) {
                long last = -1;
                blockIdx.x = bx;
                blockIdx.y = by;
                blockIdx.z = bz;
                memset(s->smem, 0xa5, smem);   /* uninitialised shared memory is garbage */
                s->live = s->nthreads;
                s->bar_count = 0;
                for (int w = 0; w < 32; w++) {
                    s->wcount[w] = 0;
                    s->wsize[w] = s->nthreads - 32 * w < 0 ? 0 : s->nthreads - 32 * w > 32 ? 32 : s->nthreads - 32 * w;
                    s->wlive[w] = s->wsize[w];
                }
                for (int t = 0; t < s->nthreads; t++) {
                    s->done[t] = 0;
                    getcontext(&s->ctx[t]);
                    s->ctx[t].uc_stack.ss_sp = s->stack[t];
                    s->ctx[t].uc_stack.ss_size = NAM_EMU_STACK;
                    s->ctx[t].uc_link = &s->sched;
                    makecontext(&s->ctx[t], nam_emu_entry, 0);
                }
                while (s->live > 0) {
                    /* alternate the order of the passes, so that a missing barrier shows */
                    int fwd = (s->events & 1) == 0;
                    for (int i = 0; i < s->nthreads; i++) {
                        int t = fwd ? i : s->nthreads - 1 - i;
                        if (s->done[t]) continue;
                        nam_emu_set_thread(t);
                        swapcontext(&s->sched, &s->ctx[t]);
                        if (s->done[t]) {
                            int w = t / 32;
                            s->live--;
                            s->wlive[w]--;
                            s->events++;
                            if (s->bar_count > 0 && s->bar_count == s->live) { s->bar_count = 0; s->bar_gen++; }
                            if (s->wcount[w] > 0 && s->wcount[w] == s->wlive[w]) { s->wcount[w] = 0; s->wgen[w]++; }
                        }
                    }
                    if (s->events == last) {
                        nam_emu_fail("deadlock: threads wait at a __syncthreads or warp collective that the others never reach");
                        break;
                    }
                    last = s->events;
                }
                if (s->failed) {
                    nam_emu_last_error = cudaErrorLaunchFailure;
                    return nam_emu_last_error;
                }
            }
    return cudaSuccess;
}

/* ---- added for moe ---- */
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
/* __match_any_sync: the lanes whose value equals this lane's (full mask only) */
template <typename T> static inline unsigned __match_any_sync(unsigned, T v) {
    nam_emu_state *s = nam_emu_s;
    int tid = s->cur, lane = tid % 32, base = tid - lane, i;
    unsigned r = 0;
    static_assert(sizeof(T) <= 8, "__match_any_sync of at most 8 bytes");
    s->slot[tid][0] = 0;
    memcpy(&s->slot[tid][0], &v, sizeof(T));
    nam_emu_warp_barrier();
    for (i = 0; i < s->wsize[base / 32]; i++)
        if (s->slot[base + i][0] == s->slot[tid][0]) r |= 1u << i;
    nam_emu_warp_barrier();
    return r;
}
/* correctly rounded, never contracted into an FMA */
static inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
static inline float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
static inline double __drcp_rn(double x) { return 1.0 / x; }
/* ---- end moe ---- */

#endif /* NAM_CUDA_EMU_H_INCLUDED */
