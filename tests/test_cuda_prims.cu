/* tests/test_cuda_prims.cu - the CUDA primitives nam_cuda.cuh builds on, checked against
   plain scalar arithmetic: mma.sync m16n8k16 fed by ldmatrix (plain and .trans), warp
   shuffles, block barriers, cp.async with zero fill, launch-configuration errors.

   Built twice from this one file:
     nvcc (real GPU)          checks the fragment idioms on hardware; without a device it
                              prints one skip line;
     g++ over tests/cuda_emu.h  checks the emulator the other CUDA tests run on (plus its
                              16-bit conversions against nam.h's, for every bit pattern,
                              and its deadlock detection).
   Both builds compare with the same scalar references, so on a GPU machine a pass of
   both says the emulator and the hardware agree on these idioms. */
#ifdef NAM_CUDA_EMULATE
#define NAM_IMPLEMENTATION   /* nam.h's own f16/bf16 conversions, for the cross-check */
#endif
#define NAM_CUDA_IMPLEMENTATION
#define NAM_CUDA_SKIP_SSD
#define NAM_CUDA_SKIP_MOE
#define NAM_CUDA_SKIP_ATTENTION
#define NAM_CUDA_SKIP_M2RNN
#ifndef NAM_CUDA
#define NAM_CUDA 1
#endif
#include "test.h" /* the harness: test_check, test_skip, test_done (and nam.h) */
#include "../nam_cuda.cuh"

/* ---- one warp: D(16x8) = A(16x16) B(16x8) through ldmatrix + mma ------------------------ */
/* A row-major [16][16] in global; B given either n-major (Bt[8][16], k contiguous: the
   layout of a weight or K matrix) or k-major (B[16][8]: the layout of V). Shared rows are
   padded to 24 halves (48 bytes: 16-byte aligned, conflict-free). */
template <typename T>
static __global__ void prim_mma_kernel(const T *A, const T *Bt, const T *Bk, float *D1, float *D2) {
    __shared__ __align__(16) T sA[16][24];
    __shared__ __align__(16) T sBt[8][24];
    __shared__ __align__(16) T sB[16][24];
    int lane = threadIdx.x, i;
    for (i = lane; i < 256; i += 32) sA[i / 16][i % 16] = A[i];
    for (i = lane; i < 128; i += 32) sBt[i / 16][i % 16] = Bt[i];
    for (i = lane; i < 128; i += 32) sB[i / 8][i % 8] = Bk[i];
    __syncthreads();
    uint32_t a[4], b[2], bt[2];
    /* A: matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15) */
    nam__cu_ldsm_x4(a, &sA[lane % 16][(lane / 16) * 8]);
    /* B from n-major rows: matrices (n 0-7, k 0-7), (n 0-7, k 8-15) */
    nam__cu_ldsm_x2(b, &sBt[lane % 8][((lane / 8) % 2) * 8]);
    /* B from k-major rows, transposed: matrices (k 0-7), (k 8-15) */
    nam__cu_ldsm_x2_t(bt, &sB[lane % 16][0]);
    float d1[4] = {0.f, 0.f, 0.f, 0.f}, d2[4] = {0.f, 0.f, 0.f, 0.f};
    nam__cu_mma<T>(d1, a, b);
    nam__cu_mma<T>(d2, a, bt);
    int g = lane >> 2, t = lane & 3;
    for (i = 0; i < 4; i++) {
        int row = g + 8 * (i >> 1), col = 2 * t + (i & 1);
        D1[row * 8 + col] = d1[i];
        D2[row * 8 + col] = d2[i];
    }
}

/* ---- shuffles, barriers, cp.async -------------------------------------------------------- */
static __global__ void prim_warp_kernel(const float *x, float *sum, float *mx) {
    float v = x[blockIdx.x * 32 + threadIdx.x];
    float s = nam__cu_warp_sum(v), m = nam__cu_warp_max(v);
    if (threadIdx.x == 0) {
        sum[blockIdx.x] = s;
        mx[blockIdx.x] = m;
    }
}

static __global__ void prim_block_sum_kernel(const int *x, int n, int *out) {
    __shared__ int part[256];
    int acc = 0, i;
    for (i = threadIdx.x; i < n; i += 256) acc += x[i];
    part[threadIdx.x] = acc;
    __syncthreads();
    for (int s = 128; s > 0; s >>= 1) {
        if (static_cast<int>(threadIdx.x) < s) part[threadIdx.x] += part[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) *out = part[0];
}

/* each of 8 threads copies 16 bytes with src_bytes = 2 * thread: the rest must be zero */
static __global__ void prim_cp_kernel(const unsigned char *src, unsigned char *dst) {
    __shared__ __align__(16) unsigned char buf[8 * 16];
    int t = threadIdx.x, i;
    for (i = t; i < 128; i += 8) buf[i] = 0xee;
    __syncthreads();
    nam__cu_cp16(&buf[t * 16], src + t * 16, 2 * t);
    nam__cu_cp_commit();
    nam__cu_cp_wait<0>();
    __syncthreads();
    for (i = t; i < 128; i += 8) dst[i] = buf[i];
}

#ifdef NAM_CUDA_EMULATE
/* lane 0 waits at a block barrier while lanes 1..31 wait for it in a warp shuffle: a
   deadlock on any GPU (undefined behaviour in CUDA), which the emulator must report.
   (A barrier that only the remaining threads reach after the others exited is legal:
   exited threads do not count, on sm_70+ as in the emulator.) */
static __global__ void prim_deadlock_kernel(int *out) {
    if (threadIdx.x == 0) __syncthreads();
    else out[threadIdx.x] = static_cast<int>(nam__cu_warp_sum(1.0f));
}
static __global__ void prim_warp_exit_kernel(float *out) {
    if (threadIdx.x == 3) return;
    out[threadIdx.x] = nam__cu_warp_sum(1.0f);
}
#endif

static float rounded(float v, int bf16) {
    if (bf16) return __bfloat162float(__float2bfloat16(v));
    return __half2float(__float2half_rn(v));
}

/* float -> T on the host. nam__cu_cvt<T>::from is __device__ only: nvcc accepts a host call
   of it inside a template without a word and compiles a stub that exits at run time (the
   first H200 run found test_cuda_prims exiting 1 with no output). The CUDA conversion
   intrinsics below are __host__ __device__. */
template <typename T> static T host_cvt(float v);
template <> nam__cu_bf16 host_cvt<nam__cu_bf16>(float v) { return __float2bfloat16(v); }
template <> nam__cu_f16 host_cvt<nam__cu_f16>(float v) { return __float2half_rn(v); }

template <typename T>
static nam_status run_mma(int bf16, nam_error *err) {
    T hA[256], hBt[128], hB[128];
    float fA[256], fB[16][8], D1[128], D2[128], ref[128];
    void *dA, *dBt, *dB, *dD1, *dD2;
    char desc[128], why[256];
    int i, j, k;
    /* small integers and halves: every product and sum is exact in fp32 */
    for (i = 0; i < 256; i++) {
        fA[i] = static_cast<float>((i * 7 + 3) % 9 - 4) * 0.5f;
        hA[i] = host_cvt<T>(fA[i]);
    }
    for (k = 0; k < 16; k++)
        for (j = 0; j < 8; j++) {
            fB[k][j] = static_cast<float>((k * 5 + j * 3 + 1) % 7 - 3);
            hBt[j * 16 + k] = host_cvt<T>(fB[k][j]);
            hB[k * 8 + j] = host_cvt<T>(fB[k][j]);
        }
    for (i = 0; i < 16; i++)
        for (j = 0; j < 8; j++) {
            float s = 0.f;
            for (k = 0; k < 16; k++) s += fA[i * 16 + k] * fB[k][j];
            ref[i * 8 + j] = s;
        }
    NAM__CU_TRY(err, cudaMalloc(&dA, sizeof hA));
    NAM__CU_TRY(err, cudaMalloc(&dBt, sizeof hBt));
    NAM__CU_TRY(err, cudaMalloc(&dB, sizeof hB));
    NAM__CU_TRY(err, cudaMalloc(&dD1, sizeof D1));
    NAM__CU_TRY(err, cudaMalloc(&dD2, sizeof D2));
    NAM__CU_TRY(err, cudaMemcpy(dA, hA, sizeof hA, cudaMemcpyHostToDevice));
    NAM__CU_TRY(err, cudaMemcpy(dBt, hBt, sizeof hBt, cudaMemcpyHostToDevice));
    NAM__CU_TRY(err, cudaMemcpy(dB, hB, sizeof hB, cudaMemcpyHostToDevice));
    auto kern = prim_mma_kernel<T>;
    NAM__CU_LAUNCH(err, kern, dim3(1), dim3(32), 0, 0, static_cast<const T *>(dA), static_cast<const T *>(dBt), static_cast<const T *>(dB),
                   static_cast<float *>(dD1), static_cast<float *>(dD2));
    NAM__CU_TRY(err, cudaMemcpy(D1, dD1, sizeof D1, cudaMemcpyDeviceToHost));
    NAM__CU_TRY(err, cudaMemcpy(D2, dD2, sizeof D2, cudaMemcpyDeviceToHost));
    cudaFree(dA); cudaFree(dBt); cudaFree(dB); cudaFree(dD1); cudaFree(dD2);
    for (int which = 0; which < 2; which++) {
        const float *D = which ? D2 : D1;
        int bad = -1;
        for (i = 0; i < 128 && bad < 0; i++)
            if (D[i] != ref[i]) bad = i;
        snprintf(desc, sizeof desc, "prims: ldmatrix%s + mma m16n8k16 %s = scalar 16x16x8 product", which ? ".trans (k-major B)" : " (n-major B)", bf16 ? "bf16" : "f16");
        snprintf(why, sizeof why, "D[%d][%d] = %g, expected %g", bad / 8, bad % 8, bad >= 0 ? static_cast<double>(D[bad]) : 0.0, bad >= 0 ? static_cast<double>(ref[bad]) : 0.0);
        test_check(bad < 0, desc, why);
    }
    (void)rounded;
    return NAM_OK;
}

static nam_status run_misc(nam_error *err) {
    float hx[4 * 32], hs[4], hm[4];
    int hi[1000], hsum = 0, ref = 0, i;
    unsigned char src[128], dst[128];
    void *dx, *ds, *dm, *di, *dsum, *dsrc, *ddst;
    char why[600];
    for (i = 0; i < 128; i++) hx[i] = static_cast<float>((i * 37) % 101) - 50.0f;
    for (i = 0; i < 1000; i++) { hi[i] = (i * 13) % 17 - 8; ref += hi[i]; }
    for (i = 0; i < 128; i++) src[i] = static_cast<unsigned char>(i + 1);
    NAM__CU_TRY(err, cudaMalloc(&dx, sizeof hx));
    NAM__CU_TRY(err, cudaMalloc(&ds, sizeof hs));
    NAM__CU_TRY(err, cudaMalloc(&dm, sizeof hm));
    NAM__CU_TRY(err, cudaMalloc(&di, sizeof hi));
    NAM__CU_TRY(err, cudaMalloc(&dsum, sizeof(int)));
    NAM__CU_TRY(err, cudaMalloc(&dsrc, sizeof src));
    NAM__CU_TRY(err, cudaMalloc(&ddst, sizeof dst));
    NAM__CU_TRY(err, cudaMemcpy(dx, hx, sizeof hx, cudaMemcpyHostToDevice));
    NAM__CU_TRY(err, cudaMemcpy(di, hi, sizeof hi, cudaMemcpyHostToDevice));
    NAM__CU_TRY(err, cudaMemcpy(dsrc, src, sizeof src, cudaMemcpyHostToDevice));
    NAM__CU_LAUNCH(err, prim_warp_kernel, dim3(4), dim3(32), 0, 0, static_cast<const float *>(dx), static_cast<float *>(ds), static_cast<float *>(dm));
    NAM__CU_LAUNCH(err, prim_block_sum_kernel, dim3(1), dim3(256), 0, 0, static_cast<const int *>(di), 1000, static_cast<int *>(dsum));
    NAM__CU_LAUNCH(err, prim_cp_kernel, dim3(1), dim3(8), 0, 0, static_cast<const unsigned char *>(dsrc), static_cast<unsigned char *>(ddst));
    NAM__CU_TRY(err, cudaMemcpy(hs, ds, sizeof hs, cudaMemcpyDeviceToHost));
    NAM__CU_TRY(err, cudaMemcpy(hm, dm, sizeof hm, cudaMemcpyDeviceToHost));
    NAM__CU_TRY(err, cudaMemcpy(&hsum, dsum, sizeof(int), cudaMemcpyDeviceToHost));
    NAM__CU_TRY(err, cudaMemcpy(dst, ddst, sizeof dst, cudaMemcpyDeviceToHost));
    {
        int bad = -1, w;
        for (w = 0; w < 4; w++) {
            float s = 0.f, m = -1e30f;
            for (i = 0; i < 32; i++) { s += hx[w * 32 + i]; m = hx[w * 32 + i] > m ? hx[w * 32 + i] : m; }
            if (s != hs[w] || m != hm[w]) bad = w;
        }
        snprintf(why, sizeof why, "warp %d: sum %g max %g", bad, bad >= 0 ? static_cast<double>(hs[bad]) : 0.0, bad >= 0 ? static_cast<double>(hm[bad]) : 0.0);
        test_check(bad < 0, "prims: __shfl_xor_sync warp sum and max", why);
    }
    snprintf(why, sizeof why, "got %d, expected %d", hsum, ref);
    test_check(hsum == ref, "prims: shared-memory tree reduction over 256 threads with __syncthreads", why);
    {
        int bad = -1, t, b;
        for (t = 0; t < 8; t++)
            for (b = 0; b < 16; b++) {
                unsigned char want = b < 2 * t ? src[t * 16 + b] : 0;
                if (dst[t * 16 + b] != want && bad < 0) bad = t * 16 + b;
            }
        snprintf(why, sizeof why, "byte %d = %d", bad, bad >= 0 ? dst[bad] : 0);
        test_check(bad < 0, "prims: cp.async 16 bytes with src_bytes < 16 zero-fills the rest", why);
    }
    {
        nam_error e2;
        nam_status st;
        st = [&]() -> nam_status {
            NAM__CU_LAUNCH(&e2, prim_warp_kernel, dim3(1), dim3(2048), 0, 0, static_cast<const float *>(dx), static_cast<float *>(ds), static_cast<float *>(dm));
            return NAM_OK;
        }();
        snprintf(why, sizeof why, "status %d: %s", static_cast<int>(st), st ? e2.message : "launched");
        test_check(st != NAM_OK && strstr(e2.message, "launch of prim_warp_kernel") != NULL, "prims: a 2048-thread block is a launch error naming the kernel", why);
    }
#ifdef NAM_CUDA_EMULATE
    {
        nam_error e2;
        nam_status st = [&]() -> nam_status {
            NAM__CU_LAUNCH(&e2, prim_deadlock_kernel, dim3(1), dim3(64), 0, 0, static_cast<int *>(di));
            return NAM_OK;
        }();
        test_check(st != NAM_OK, "emulator: a barrier only one thread reaches is reported (deadlock)", "launch succeeded");
        st = [&]() -> nam_status {
            NAM__CU_LAUNCH(&e2, prim_warp_exit_kernel, dim3(1), dim3(32), 0, 0, static_cast<float *>(dx));
            return NAM_OK;
        }();
        test_check(st != NAM_OK, "emulator: a full-mask shuffle after a lane exited is reported", "launch succeeded");
    }
#endif
    cudaFree(dx); cudaFree(ds); cudaFree(dm); cudaFree(di); cudaFree(dsum); cudaFree(dsrc); cudaFree(ddst);
    return NAM_OK;
}

#ifdef NAM_CUDA_EMULATE
/* the emulator's conversions against nam.h's, independently written */
static void run_conversions(void) {
    int bad_h = -1, bad_b = -1, bad_rh = -1, bad_rb = -1;
    uint32_t i;
    char why[256];
    for (i = 0; i < 65536; i++) {
        uint16_t u = static_cast<uint16_t>(i);
        float a = __half2float(__ushort_as_half(u)), b = nam__load(&u, NAM_F16, 0);
        float c = __bfloat162float(__ushort_as_bfloat16(u)), d = nam__load(&u, NAM_BF16, 0);
        if (memcmp(&a, &b, 4) != 0 && !(a != a && b != b) && bad_h < 0) bad_h = static_cast<int>(i);
        if (memcmp(&c, &d, 4) != 0 && !(c != c && d != d) && bad_b < 0) bad_b = static_cast<int>(i);
    }
    for (i = 0; i < 2000000; i++) {
        uint32_t bits = i * 2654435761u;
        float f;
        uint16_t hn = 0, bn = 0;
        memcpy(&f, &bits, 4);
        if (f != f) continue;
        nam__store(&hn, NAM_F16, 0, f);
        nam__store(&bn, NAM_BF16, 0, f);
        if (__half_as_ushort(__float2half_rn(f)) != hn && bad_rh < 0) bad_rh = static_cast<int>(i);
        if (__bfloat16_as_ushort(__float2bfloat16(f)) != bn && bad_rb < 0) bad_rb = static_cast<int>(i);
    }
    snprintf(why, sizeof why, "first mismatch at bit pattern %d (f16) / %d (bf16)", bad_h, bad_b);
    test_check(bad_h < 0 && bad_b < 0, "emulator: f16 and bf16 -> f32 agree with nam.h for all 65536 bit patterns", why);
    snprintf(why, sizeof why, "first mismatch at sample %d (f16) / %d (bf16)", bad_rh, bad_rb);
    test_check(bad_rh < 0 && bad_rb < 0, "emulator: f32 -> f16 / bf16 rounding agrees with nam.h on 2M bit patterns", why);
}
#endif

int main(void) {
    nam_error e;
    int n = 0;
    if (nam_cuda_device_count(&n, &e) != NAM_OK) {
        test_skip("cuda prims: %s", e.message);
        return 0;
    }
#ifdef NAM_CUDA_EMULATE
    run_conversions();
#endif
    if (run_mma<nam__cu_bf16>(1, &e) != NAM_OK) test_check(0, "prims: mma bf16", e.message);
    if (run_mma<nam__cu_f16>(0, &e) != NAM_OK) test_check(0, "prims: mma f16", e.message);
    if (run_misc(&e) != NAM_OK) test_check(0, "prims: misc", e.message);
    return test_done("test_cuda_prims");
}
