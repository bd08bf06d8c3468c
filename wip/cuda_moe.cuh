/* >>cuda-moe (staged; inlined into nam_cuda.cuh when done) */
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
              Scratch (tile ranks and histograms, when T*k > 2048 or E > 2048) comes from the
              stream-ordered allocator, cudaMallocAsync / cudaFreeAsync on d->stream: no
              global state, safe from any thread and stream; the driver's memory pool
              caches it (raise the pool's cudaMemPoolAttrReleaseThreshold to keep it
              mapped across synchronisations). Out-of-range expert ids: the smallest
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

extern "C" nam_status nam_cuda__moe_route(nam_moe_route_desc *d, nam_error *err) {
    static const char *const fn = "nam_moe_route";
    nam__cu_moe_rt_args a;
    nam_status s;
    cudaStream_t st = static_cast<cudaStream_t>(d->stream);
    if ((s = nam__cu_contig(&d->logits, fn, "logits", err))) return s;
    if ((s = nam__cu_contig(&d->expert_bias, fn, "expert_bias", err))) return s;
    if ((s = nam__cu_contig(&d->topk_idx, fn, "topk_idx", err))) return s;
    if ((s = nam__cu_contig(&d->topk_weight, fn, "topk_weight", err))) return s;
    if (d->logits.shape[1] > INT_MAX) return nam__cu_err(err, NAM_ERR_LIMIT, "%s: logits.shape[1] (E) = %lld exceeds %d", fn, static_cast<long long>(d->logits.shape[1]), INT_MAX);
    a.logits = d->logits.data;
    a.bias = d->expert_bias.data;
    a.bias_dt = static_cast<int>(d->expert_bias.dtype);
    a.idx = static_cast<int32_t *>(d->topk_idx.data);
    a.w = static_cast<float *>(d->topk_weight.data);
    a.T = static_cast<long long>(d->logits.shape[0]);
    a.E = static_cast<int>(d->logits.shape[1]);
    a.k = d->topk;
    a.mode = d->score == NAM_MOE_SIGMOID ? NAM__CU_MOE_RT_SIGMOID : d->pre_softmax ? NAM__CU_MOE_RT_PRESOFTMAX : NAM__CU_MOE_RT_SOFTMAX;
    a.scale = d->scaling_factor == 0.0f ? 1.0f : d->scaling_factor;
    if ((a.T + NAM__CU_MOE_RT_WARPS - 1) / NAM__CU_MOE_RT_WARPS > INT_MAX)
        return nam__cu_err(err, NAM_ERR_LIMIT, "%s: logits.shape[0] (T) = %lld is too many tokens for one launch", fn, a.T);
    if (d->logits.dtype == NAM_BF16) s = nam__cu_moe_route_launch<nam__cu_bf16>(a, st, err);
    else if (d->logits.dtype == NAM_F16) s = nam__cu_moe_route_launch<nam__cu_f16>(a, st, err);
    else s = nam__cu_moe_route_launch<float>(a, st, err);
    if (s) return s;
    return nam__cu_ok(err);
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
    const int nt = (n + NAM__CU_MOE_DT_TILE - 1) / NAM__CU_MOE_DT_TILE;
    const unsigned nblk = static_cast<unsigned>((n + 255) / 256);
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

extern "C" nam_status nam_cuda__moe_dispatch(nam_moe_dispatch_desc *d, nam_error *err) {
    static const char *const fn = "nam_moe_dispatch";
    cudaStream_t st = static_cast<cudaStream_t>(d->stream);
    const int32_t *idx = static_cast<const int32_t *>(d->topk_idx.data);
    int32_t *counts = static_cast<int32_t *>(d->counts.data), *offsets = static_cast<int32_t *>(d->offsets.data), *rows = static_cast<int32_t *>(d->rows.data);
    const long long T = static_cast<long long>(d->topk_idx.shape[0]), k = static_cast<long long>(d->topk_idx.shape[1]);
    const int n = static_cast<int>(T * k), E = d->num_experts;
    long long cap = T * k;
    int32_t nr = 0;
    nam_status s;
    if ((s = nam__cu_contig(&d->topk_idx, fn, "topk_idx", err))) return s;
    if ((s = nam__cu_contig(&d->counts, fn, "counts", err))) return s;
    if ((s = nam__cu_contig(&d->offsets, fn, "offsets", err))) return s;
    if ((s = nam__cu_contig(&d->rows, fn, "rows", err))) return s;
    if (d->capacity_factor > 0.0f) {   /* as the CPU: ceil(T k / E * cf) in double */
        double c = ceil(static_cast<double>(T * k) / static_cast<double>(E) * static_cast<double>(d->capacity_factor));
        if (c < static_cast<double>(cap)) cap = static_cast<long long>(c);
    }
    if (n <= NAM__CU_MOE_DT_TILE && E <= NAM__CU_MOE_DT_MAXB) {
        const size_t smem = sizeof(int) * (static_cast<size_t>(NAM__CU_MOE_DT_WARPS + 1) * static_cast<size_t>(E) + 1);
        NAM__CU_TRY(err, cudaFuncSetAttribute(nam__cu_moe_dispatch_small, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                              static_cast<int>(sizeof(int) * ((NAM__CU_MOE_DT_WARPS + 1) * NAM__CU_MOE_DT_MAXB + 1))));
        NAM__CU_LAUNCH(err, nam__cu_moe_dispatch_small, 1, NAM__CU_MOE_DT_WARPS * 32, smem, st, idx, n, E, cap, counts, offsets, rows);
    } else {
        const size_t nt = static_cast<size_t>((n + NAM__CU_MOE_DT_TILE - 1) / NAM__CU_MOE_DT_TILE), un = static_cast<size_t>(n), ue = static_cast<size_t>(E);
        size_t ints = un + 1 + nt * (E <= NAM__CU_MOE_DT_MAXB ? ue : NAM__CU_MOE_DT_MAXB);
        void *scratch = NULL;
        nam_status ks;
        cudaError_t rc;
        if (E > NAM__CU_MOE_DT_MAXB) ints += 2 * un + 2 * NAM__CU_MOE_DT_MAXB + 1 + 2 * ue + 1;
        NAM__CU_TRY(err, cudaMallocAsync(&scratch, sizeof(int) * ints, st));
        ks = nam__cu_moe_dispatch_tiled(idx, n, E, cap, counts, offsets, rows, static_cast<char *>(scratch), st, err);
        rc = cudaFreeAsync(scratch, st);
        if (ks) {
            (void)cudaStreamSynchronize(st);
            return ks;
        }
        if (rc != cudaSuccess) return nam__cu_fail(err, rc, "cudaFreeAsync(scratch, stream)", __FILE__, __LINE__);
    }
    NAM__CU_TRY(err, cudaMemcpyAsync(&nr, offsets + E, sizeof nr, cudaMemcpyDeviceToHost, st));
    NAM__CU_TRY(err, cudaStreamSynchronize(st));
    if (nr < 0) {   /* -(i + 1): entry i is the first bad expert id */
        const long long i = -static_cast<long long>(nr) - 1;
        int32_t v = 0;
        NAM__CU_TRY(err, cudaMemcpyAsync(&v, idx + i, sizeof v, cudaMemcpyDeviceToHost, st));
        NAM__CU_TRY(err, cudaStreamSynchronize(st));
        return nam__cu_err(err, NAM_ERR_RANGE, "topk_idx[%lld, %lld] = %d is not an expert id (0..%lld): token %lld, slot %lld", i / k, i % k, v,
                           static_cast<long long>(E) - 1, i / k, i % k);
    }
    d->num_rows = nr;
    d->num_dropped = n - nr;
    return nam__cu_ok(err);
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
    if (H > INT_MAX / 4) return nam__cu_err(err, NAM_ERR_LIMIT, "%s: tokens.shape[1] (H) = %lld is too large", fn, H);
    if (nrows == 0) return nam__cu_ok(err);
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
    return nam__cu_ok(err);
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
    if (H > INT_MAX / 8) return nam__cu_err(err, NAM_ERR_LIMIT, "%s: expert_out.shape[1] (H) = %lld is too large", fn, H);
    if (T > INT_MAX) return nam__cu_err(err, NAM_ERR_LIMIT, "%s: T = %lld tokens is too many for one launch", fn, T);
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
    return nam__cu_ok(err);
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
            c = hi > lo ? (hi - lo + NAM__CU_MOE_BM - 1) / NAM__CU_MOE_BM : 0;
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
            return nam__cu_err(err, NAM_ERR_NOT_IMPLEMENTED, "%s: %s.dtype = %s; the CUDA grouped GEMM takes bf16 or f16 storage only", fn, nm[i],
                               nam_dtype_name(ts[i]->dtype));
        if (ts[i]->dtype != d->in.dtype)
            return nam__cu_err(err, NAM_ERR_NOT_IMPLEMENTED,
                               "%s: %s.dtype = %s, but in.dtype = %s; the CUDA grouped GEMM takes one storage dtype for in, w1, w3, w2 and out", fn, nm[i],
                               nam_dtype_name(ts[i]->dtype), nam_dtype_name(d->in.dtype));
    }
    if (d->in.shape[0] > INT_MAX || d->in.shape[1] > INT_MAX / 2 || d->w1.shape[1] > INT_MAX / 2)
        return nam__cu_err(err, NAM_ERR_LIMIT, "%s: rows, H or F exceed the CUDA kernel's int range", fn);
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
    return nam__cu_ok(err);
}

template <typename T>
static nam_status nam__cu_moe_gemm_launch(const nam__cu_moe_gemm_args &a, long long mbound, cudaStream_t st, nam_error *err) {
    (void)st;   /* unused by the emulator's launch */
    const long long grid = mbound * a.ntn;
    const bool aligned = (static_cast<long long>(a.K) * 2) % 16 == 0 &&
                         (reinterpret_cast<uintptr_t>(a.A) | reinterpret_cast<uintptr_t>(a.B0) | reinterpret_cast<uintptr_t>(a.B1)) % 16 == 0;
    if (grid > INT_MAX) return nam__cu_err(err, NAM_ERR_LIMIT, "nam_moe_ffn: %lld GEMM tiles are too many for one launch", grid);
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

extern "C" nam_status nam_cuda__moe_ffn(nam_moe_ffn_desc *d, void *workspace, size_t workspace_bytes, nam_error *err) {
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
    if (nrows == 0) return nam__cu_ok(err);
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
    return nam__cu_ok(err);
}
