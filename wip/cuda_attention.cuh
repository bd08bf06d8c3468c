/* >>cuda-attention (staged; inlined into nam_cuda.cuh when done) */
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
    return nam__cu_ok(err);
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
    return nam__cu_err(err, NAM_ERR_NOT_IMPLEMENTED, "nam_attention: q.shape[3] (d) = %lld; the CUDA kernel supports head dims 32, 64, 96 and 128",
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
            return nam__cu_err(err, NAM_ERR_NOT_IMPLEMENTED, "nam_attention: %s has dtype %s; the CUDA kernel takes bf16 or f16 tensors", nm[i],
                               nam_dtype_name(ts[i]->dtype));
        if (ts[i]->dtype != d->q.dtype)
            return nam__cu_err(err, NAM_ERR_NOT_IMPLEMENTED, "nam_attention: %s has dtype %s but q has %s; the CUDA kernel needs q, k, v and out of one dtype",
                               nm[i], nam_dtype_name(ts[i]->dtype), nam_dtype_name(d->q.dtype));
        if ((st = nam__cu_contig(ts[i], "nam_attention", nm[i], err)) != NAM_OK) return st;
        if (reinterpret_cast<uintptr_t>(ts[i]->data) % 16 != 0)
            return nam__cu_err(err, NAM_ERR_NOT_IMPLEMENTED, "nam_attention: %s.data = %p is not 16-byte aligned; the CUDA kernel needs aligned tensors", nm[i],
                               ts[i]->data);
    }
    if (hd != 32 && hd != 64 && hd != 96 && hd != 128)
        return nam__cu_err(err, NAM_ERR_NOT_IMPLEMENTED, "nam_attention: q.shape[3] (d) = %lld; the CUDA kernel supports head dims 32, 64, 96 and 128",
                           static_cast<long long>(hd));
    if (d->q.shape[1] > INT32_MAX - 256 || d->k.shape[1] > INT32_MAX - 256)
        return nam__cu_err(err, NAM_ERR_NOT_IMPLEMENTED, "nam_attention: %s = %lld; the CUDA kernel takes sequence lengths below 2^31 - 256",
                           d->q.shape[1] > INT32_MAX - 256 ? "q.shape[1] (sq)" : "k.shape[1] (sk)",
                           static_cast<long long>(d->q.shape[1] > INT32_MAX - 256 ? d->q.shape[1] : d->k.shape[1]));
    if (d->q.shape[2] * hd >= (1 << 24) || d->k.shape[2] * hd >= (1 << 24))
        return nam__cu_err(err, NAM_ERR_NOT_IMPLEMENTED, "nam_attention: %s * d = %lld; the CUDA kernel takes heads * head dim below 2^24",
                           d->q.shape[2] * hd >= (1 << 24) ? "hq" : "hk", static_cast<long long>((d->q.shape[2] > d->k.shape[2] ? d->q.shape[2] : d->k.shape[2]) * hd));
    if ((d->q.shape[1] + 63) / 64 * d->q.shape[0] * d->q.shape[2] > INT32_MAX)
        return nam__cu_err(err, NAM_ERR_NOT_IMPLEMENTED, "nam_attention: b * hq * ceil(sq / 64) = %lld CTAs exceeds the grid limit 2^31 - 1",
                           static_cast<long long>((d->q.shape[1] + 63) / 64 * d->q.shape[0] * d->q.shape[2]));
    return NAM_OK;
}

extern "C" nam_status nam_cuda__attention_workspace_size(const nam_attention_desc *d, size_t *bytes, nam_error *err) {
    nam_status st;
    *bytes = 0;
    if ((st = nam__cu_attn_check(d, err)) != NAM_OK) return st;
    return nam__cu_ok(err);
}

extern "C" nam_status nam_cuda__attention(nam_attention_desc *d, void *workspace, size_t workspace_bytes, nam_error *err) {
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
    scale = d->scale != 0.0f ? d->scale : 1.0f / sqrtf(static_cast<float>(d->q.shape[3]));
    p.neg = scale < 0.0f;
    p.scale2 = fabsf(scale) * 1.4426950408889634f;
    if (d->q.dtype == NAM_BF16) return nam__cu_attn_dims<nam__cu_bf16>(p, d->q.shape[0], d->q.shape[3], d->stream, err);
    return nam__cu_attn_dims<nam__cu_f16>(p, d->q.shape[0], d->q.shape[3], d->stream, err);
}
