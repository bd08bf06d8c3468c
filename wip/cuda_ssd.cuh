/* >>cuda-ssd (staged; inlined into nam_cuda.cuh when done) ------------------------------
   nam_ssd (Mamba-2 chunked SSD scan), nam_ssd_step (one decode token) and nam_conv1d (the
   causal depthwise conv of the Mamba block) on CUDA tensors. Semantics are nam.h's
   (>>kernels doc comments, nam__ssd_ref); nam.h has validated shapes, options and devices.

   Dtypes: x, B, C, z and out share one storage type T (f32, bf16 or f16): the kernels are
   templates on T; any other mix returns NAM_ERR_NOT_IMPLEMENTED naming the field. dt, A,
   D and dt_bias may have any float dtype (nam__cu_load); states are f32. conv1d: x and out
   share T; weight and bias any float dtype. Every tensor must be contiguous
   (nam__cu_contig: NAM_ERR_NOT_IMPLEMENTED naming the stride otherwise).

   nam_ssd: four kernels on d->stream. Q is the internal chunk; chunk_size is a hint (the
   result is the same for any chunk, up to rounding): 0 -> 256, <= 64 -> 64, <= 128 -> 128,
   else 256, and never more than l rounded up to 64 (so Q is a multiple of 64, <= 256).
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

/* ---- 2. chunk states, fp32 SIMT ------------------------------------------------------- */
/* CTA: (b, chunk, h, 64 rows of p, 64 columns of n); thread (ty, tx) owns rows ty + 16 r,
   columns tx + 16 q. Token slabs of 32: xs[j][p] = x * w_j, bs[j][n]. */
template <typename T>
static __global__ void __launch_bounds__(256) nam__cu_ssd_state_simt(nam__cu_ssd_args a, int ptiles, int ntiles) {
    __shared__ float xs[32][64], bs[32][64], wj[32];
    const T *X = static_cast<const T *>(a.x), *Bm = static_cast<const T *>(a.B);
    int64_t blk = blockIdx.x;
    const int nt = static_cast<int>(blk % ntiles);
    blk /= ntiles;
    const int pt = static_cast<int>(blk % ptiles);
    blk /= ptiles;
    const int c = static_cast<int>(blk % a.nc);
    const int64_t bh = blk / a.nc, bi = bh / a.h;
    const int hi = static_cast<int>(bh % a.h), gi = hi / a.hpg, Q = a.Q;
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
    int64_t blk = blockIdx.x;
    const int pt = static_cast<int>(blk % ptiles);
    blk /= ptiles;
    const int c = static_cast<int>(blk % a.nc);
    const int64_t bh = blk / a.nc, bi = bh / a.h;
    const int hi = static_cast<int>(bh % a.h), gi = hi / a.hpg, Q = a.Q, p = a.p, n = a.n;
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
                        for (int q = 0; q < 4; q++) s[r][q] += av[r] * bv[q];
                }
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
    int64_t blk = blockIdx.x;
    const int nt = static_cast<int>(blk % ntiles);
    blk /= ntiles;
    const int pt = static_cast<int>(blk % ptiles);
    blk /= ptiles;
    const int c = static_cast<int>(blk % a.nc);
    const int64_t bh = blk / a.nc, bi = bh / a.h;
    const int hi = static_cast<int>(bh % a.h), gi = hi / a.hpg, Q = a.Q;
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
    int64_t blk = blockIdx.x;
    const int pt = static_cast<int>(blk % ptiles);
    blk /= ptiles;
    const int c = static_cast<int>(blk % a.nc);
    const int64_t bh = blk / a.nc, bi = bh / a.h;
    const int hi = static_cast<int>(bh % a.h), gi = hi / a.hpg, Q = a.Q, p = a.p, n = a.n;
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
        return nam__cu_err(err, NAM_ERR_NOT_IMPLEMENTED, "%s: %s has dtype %s but x has dtype %s; the CUDA kernels need x, B, C, z and out in one dtype", fn,
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
    int i, cs = d->chunk_size, lq;
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
    a->Q = cs == 0 ? 256 : cs <= 64 ? 64 : cs <= 128 ? 128 : 256;
    lq = static_cast<int>(a->l < 256 ? (a->l + 63) / 64 * 64 : 256);
    if (a->Q > lq) a->Q = lq;
    if ((a->l + a->Q - 1) / a->Q > INT32_MAX)
        return nam__cu_err(err, NAM_ERR_LIMIT, "%s: x.shape[1] (l) = %lld makes more than 2^31 chunks", fn, static_cast<long long>(a->l));
    a->nc = static_cast<int>((a->l + a->Q - 1) / a->Q);
    /* the largest grid: the scan's b * h * nc * ceil(p / 64) CTAs, the state's * ceil(n / 64) */
    cnt = a->b * a->h * static_cast<int64_t>(a->nc) * ((a->p + 63) / 64) * ((a->n + 63) / 64);
    sn = a->b * a->h * ((static_cast<int64_t>(a->p) * a->n + 255) / 256);
    if (cnt > INT32_MAX || sn > INT32_MAX)
        return nam__cu_err(err, NAM_ERR_LIMIT, "%s: b * h * chunks * tiles = %lld is above the CUDA grid limit 2^31 - 1", fn,
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
    a->hi = d->dt_max > 0.0f ? d->dt_max : HUGE_VALF;
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
            NAM__CU_TRY(err, cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
            NAM__CU_LAUNCH(err, k, dim3(static_cast<unsigned>(bh * a.nc * ptiles)), dim3(128), smem, stream, a, ptiles, np, pl->vec_x, pl->vec_bc,
                           pl->pair_out);
        }
    }
    if (!scan_mma) {
        auto k = nam__cu_ssd_scan_simt<T>;
        NAM__CU_LAUNCH(err, k, dim3(static_cast<unsigned>(bh * a.nc * ptiles)), dim3(256), 0, stream, a, ptiles);
    }
    return nam__cu_ok(err);
}

extern "C" nam_status nam_cuda__ssd_workspace_size(const nam_ssd_desc *d, size_t *bytes, nam_error *err) {
    nam__cu_ssd_plan pl;
    *bytes = 0;
    NAM__CU_SSD_TRY(nam__cu_ssd_prepare(d, "nam_ssd_workspace_size", &pl, err));
    *bytes = pl.total;
    return nam__cu_ok(err);
}

extern "C" nam_status nam_cuda__ssd(nam_ssd_desc *d, void *workspace, size_t workspace_bytes, nam_error *err) {
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
    default: return nam__cu_err(err, NAM_ERR_NOT_IMPLEMENTED, "nam_ssd: x dtype %s is not supported on CUDA", nam_dtype_name(d->x.dtype));
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

extern "C" nam_status nam_cuda__ssd_step(nam_ssd_step_desc *d, nam_error *err) {
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
        return nam__cu_err(err, NAM_ERR_LIMIT, "%s: b * h * ceil(p / 4) = %lld is above the CUDA grid limit 2^31 - 1", fn, static_cast<long long>(blocks));
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
    a.hi = d->dt_max > 0.0f ? d->dt_max : HUGE_VALF;
    switch (d->x.dtype) {
    case NAM_F32: { auto k = nam__cu_ssd_step_kernel<float>; NAM__CU_LAUNCH(err, k, dim3(static_cast<unsigned>(blocks)), dim3(128), 0, stream, a); break; }
    case NAM_BF16: { auto k = nam__cu_ssd_step_kernel<nam__cu_bf16>; NAM__CU_LAUNCH(err, k, dim3(static_cast<unsigned>(blocks)), dim3(128), 0, stream, a); break; }
    case NAM_F16: { auto k = nam__cu_ssd_step_kernel<nam__cu_f16>; NAM__CU_LAUNCH(err, k, dim3(static_cast<unsigned>(blocks)), dim3(128), 0, stream, a); break; }
    default: return nam__cu_err(err, NAM_ERR_NOT_IMPLEMENTED, "%s: x dtype %s is not supported on CUDA", fn, nam_dtype_name(d->x.dtype));
    }
    return nam__cu_ok(err);
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
    return nam__cu_ok(err);
}

extern "C" nam_status nam_cuda__conv1d(nam_conv1d_desc *d, nam_error *err) {
    static const char *const names[5] = {"x", "weight", "bias", "conv_state", "out"};
    const nam_tensor *ts[5] = {&d->x, &d->weight, &d->bias, &d->conv_state, &d->out};
    const char *fn = "nam_conv1d";
    cudaStream_t stream = static_cast<cudaStream_t>(d->stream);
    nam__cu_ssd_conv_args a;
    int64_t blocks;
    int i;
    for (i = 0; i < 5; i++) NAM__CU_SSD_TRY(nam__cu_contig(ts[i], fn, names[i], err));
    if (d->out.dtype != d->x.dtype)
        return nam__cu_err(err, NAM_ERR_NOT_IMPLEMENTED, "%s: out has dtype %s but x has dtype %s; the CUDA kernel needs x and out in one dtype", fn,
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
        return nam__cu_err(err, NAM_ERR_LIMIT, "%s: b * ceil(l / 64) * ceil(c / 128) = %lld is above the CUDA grid limit 2^31 - 1", fn,
                           static_cast<long long>(blocks));
    switch (d->x.dtype) {
    case NAM_F32: return nam__cu_ssd_conv_run<float>(a, stream, err);
    case NAM_BF16: return nam__cu_ssd_conv_run<nam__cu_bf16>(a, stream, err);
    case NAM_F16: return nam__cu_ssd_conv_run<nam__cu_f16>(a, stream, err);
    default: return nam__cu_err(err, NAM_ERR_NOT_IMPLEMENTED, "%s: x dtype %s is not supported on CUDA", fn, nam_dtype_name(d->x.dtype));
    }
}
