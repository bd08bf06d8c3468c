/* nam.h - hybrid language-model planning toolkit, single header, C99/C++.

   Instantiate the implementation in exactly ONE C or C++ file:

       #define NAM_IMPLEMENTATION
       #include "nam.h"

   and link stb_ds (Debian: libstb-dev, `pkg-config --cflags --libs stb`, which gives
   -I/usr/include/stb -lstb), or define STB_DS_IMPLEMENTATION yourself in one file, plus
   -lm -lpthread (the CPU kernels use POSIX threads; POSIX systems only).
   nam.h never defines STB_DS_IMPLEMENTATION for you.

   CONTENTS
     1. What nam does (and does NOT)
     2. Compile-time switches, and the file's layout
     3. STEP BY STEP (a plan; 3b: a kernel)
     4. The authored pattern language (A/M/E/R)
     5. The Megatron-native model (symbols M G * D + - E, '|', '/')
     6. Translation rules (fail-closed)
     7. Recipe files
     8. Public functions, one paragraph each
     9. License (end of file)

   1. WHAT NAM DOES
   nam parses an authored hybrid-model pattern such as NAM56R (the motif
   `AEMEAEMEAEMR` tiled to depth 52: 13 A, 22 E, 13 M, 4 R), checks its depth contract,
   and translates it fail-closed into Megatron-LM's native hybrid syntax and launch
   arguments. It validates the result with exactly Megatron-LM's pattern rules
   (hybrid_layer_allocation.py and validate_args at Megatron-LM d98e8a64), a little
   stricter where Megatron has known gaps, plus Megatron's parallel-layout constraints,
   and computes Megatron's RankGenerator process groups.

   nam does NOT
     - remap a family Megatron does not support to a "nearby" one (R is never turned
       into M or G unless the recipe says `map = R=G`, which is then recorded as a decision);
     - move, merge or add stage breaks: authored `|` are kept exactly;
     - print, abort or exit: every failure is a nam_status plus a filled nam_error;
     - keep global state, or allocate in ways you cannot override (NAM_MALLOC/NAM_FREE
       for nam's own buffers; STBDS_REALLOC/STBDS_FREE for stb_ds arrays);
     - allocate inside kernels: scratch memory is the caller's, sized by *_workspace_size;
     - run CUDA kernels unless built with NAM_CUDA and linked with nam_cuda.cu (otherwise
       CUDA tensors get NAM_ERR_NOT_IMPLEMENTED, "not built into this program").

   2. COMPILE-TIME SWITCHES (every one, and what it gates)
   The file is a common part (limits, errors, allocator), then THE KERNEL HALF (its
   declarations, then after the common implementation its code: >>kernel-common ...
   >>kernel-m2rnn, >>kernel-layers), then THE PLANNER HALF (declarations and code: >>pattern ... >>ranks).
   Search for those banners; each half can be left out.
     NAM_IMPLEMENTATION   emit the implementation (of both halves) in this translation unit
     NAM_STATIC           every public function static (a private copy per TU)
     NAM_API              override the public declaration prefix (default extern, or static
                          under NAM_STATIC)
     NAM_NO_KERNELS       planner only: no kernel declarations or code (no pthread, no SIMD,
                          no CUDA hooks)
     NAM_NO_PLANNER       kernels only: no planner declarations or code, and no stb_ds
                          (define at most one of the two)
     NAM_MALLOC(sz) / NAM_FREE(p)   allocator for nam's buffers (define both or neither)
     NAM_ASSERT(c)        internal invariant check (default: assert), never used for input
     NAM_CUDA             CUDA tensors run on nam_cuda.cuh's kernels (link nam_cuda.cu);
                          without it they get NAM_ERR_NOT_IMPLEMENTED
     NAM_NO_SIMD          the CPU kernels compile only portable C: no AVX2/FMA/F16C code
                          and no GNU vector extensions (otherwise x86-64 GCC/Clang builds
                          carry both and pick at run time by CPUID: >>kernel-common)
     NAM_CBLAS            the kernels' internal GEMM calls cblas_sgemm (link a CBLAS, e.g.
                          -lopenblas or -lblas) instead of nam's blocked GEMM
     NAM_KEEP_SUBNORMALS  the CPU kernels do not flush subnormals to zero (IEEE gradual
                          underflow, at the hardware's speed for them; see >>kernels)
   In nam_cuda.cuh (its top comment says more):
     NAM_CUDA_IMPLEMENTATION          emit the CUDA implementation (nam_cuda.cu does)
     NAM_CUDA_SKIP_SSD / _MOE / _ATTENTION / _M2RNN   leave that family's CUDA kernels out
                          (its calls on CUDA tensors then return NAM_ERR_NOT_IMPLEMENTED)
     NAM_CUDA_ATTN_TILE, NAM_CUDA_ATTN_GROUP_BYTES    attention tile shape and K/V grouping
     NAM_CUDA_EMULATE     compile the CUDA code on the host over tests/cuda_emu.h (tests)
   nam never defines STB_DS_IMPLEMENTATION: link -lstb, or define it in one file yourself.

   3. STEP BY STEP
       #define NAM_IMPLEMENTATION
       #include "nam.h"
       #include <stdio.h>

       int main(void) {
           nam_recipe r;
           nam_error err;
           nam_plan plan;
           char *json = NULL;
           if (nam_recipe_init(&r, &err) != NAM_OK) return 1;          // built-in NAM56R
           if (nam_recipe_set(&r, "parallel.tp", "2", &err) != NAM_OK)  // any field can be overridden
               { fprintf(stderr, "%s\n", err.message); return 1; }
           if (nam_plan_make(&r, &plan, &err) != NAM_OK) {              // parse + translate + validate
               fprintf(stderr, "error %s: %s\n", nam_status_str(err.code), err.message);
               nam_recipe_free(&r);
               return 1;
           }
           printf("native pattern: %s\n", plan.native_pattern ? plan.native_pattern : "(withheld: seams)");
           if (nam_plan_json(&plan, NAM_JSON_PLAN, &json, &err) == NAM_OK) puts(json);
           nam_free(json);
           nam_plan_free(&plan);
           nam_recipe_free(&r);
           return 0;
       }

   3b. STEP BY STEP: a kernel (the same shape for every kernel: desc, workspace, call)
       float x[1*16*4*8], dt[1*16*4], A[4], B[1*16*1*32], C[1*16*1*32], y[1*16*4*8];
       int64_t sx[4] = {1, 16, 4, 8}, sdt[3] = {1, 16, 4}, sa[1] = {4}, sb[4] = {1, 16, 1, 32};
       nam_ssd_desc d = {0};                       // zero-init: every option at its default
       size_t need;
       void *ws;
       nam_error err;
       // ... fill x, dt, A (negative), B, C ...
       d.x = nam_tensor_make(x, NAM_F32, 4, sx);   d.dt = nam_tensor_make(dt, NAM_F32, 3, sdt);
       d.A = nam_tensor_make(A, NAM_F32, 1, sa);   d.B = nam_tensor_make(B, NAM_F32, 4, sb);
       d.C = nam_tensor_make(C, NAM_F32, 4, sb);   d.out = nam_tensor_make(y, NAM_F32, 4, sx);
       d.dt_softplus = 1;
       if (nam_ssd_workspace_size(&d, &need, &err) != NAM_OK) { puts(err.message); return 1; }
       ws = aligned_alloc(64, (need + 63) / 64 * 64);   // kernels never allocate
       if (nam_ssd(&d, ws, need, &err) != NAM_OK) puts(err.message);
       printf("ran on %s\n", nam_backend_name(d.ran));   // "cpu" (the fast path) under AUTO
       free(ws);

   4. THE AUTHORED PATTERN LANGUAGE
   Families are single upper-case letters: A attention, M Mamba/state-space, E expert (MoE),
   R recurrent tail (M2RNN), F dense MLP, plus any further letters a recipe declares in
   `families`. NAM56R's MTP block is `AF`, Megatron's `*-` (attention + dense MLP).
       text    := main [ '/' mtp { '/' mtp } ]
       main    := letter { letter | '|' }        ('|' = stage break, never first, last or doubled)
       mtp     := letter { letter }              (every copy identical; one copy per MTP depth)
   With `tile` set, `main` is a motif repeated cyclically to `depth` layers (the last repeat
   truncated); a motif may not contain '|' (ask for N equal stages with `stages = N`, an error
   when depth % N != 0). Without `tile`, main is the full pattern and a declared depth must
   equal its length. Whitespace, lower-case letters, non-ASCII bytes and NUL are errors that
   name the byte and its column.

   5. THE MEGATRON-NATIVE MODEL
   Symbols (Megatron-LM hybrid_layer_allocation.Symbols): M Mamba-2, G GatedDeltaNet,
   * attention (no MLP), D DeepSeek sparse attention (MLA-based), + MLA, - dense MLP,
   E MoE; '|' pipeline-segment separator, '/' MTP separator. nam_megatron_parse follows
   parse_hybrid_pattern exactly (MTP copies identical, checked before symbols) and is
   stricter in two documented ways: '*' together with '+' or 'D' is refused anywhere in the
   string (Megatron checks main and MTP separately), and the MTP part is always validated.

   6. TRANSLATION RULES (nam_plan_make)
     A -> '*'; -> '+' when mla is on; -> 'D' on A layers listed in dsa_layers (needs mla).
          A plan mixing '*' with '+'/'D' is refused with the reason. D layers add
          --experimental-attention-variant dsa, the [dsa] indexer dims and --no-rope-fusion.
     E -> 'E' only when moe.num_experts > 0, otherwise refused (never turned into '-').
     F -> '-' (dense MLP, written on purpose).
     M -> 'M'; with mamba_impl = mamba3 or custom the layer also carries a named custom seam
          (the symbol stays native, the runtime must supply the mixer; [mamba3] dims).
     R -> M2RNN, no Megatron symbol. mode = strict: the plan stops at the first R with an
          error naming the token, its layer index, its stage and its column. mode = plan: R
          stays the `recurrent-tail` seam (with the [m2rnn] dims) and native_pattern is NULL
          while any such seam is unresolved.
          `map = R=M` lowers R to Megatron's M slot and keeps the `m2rnn-mixer` custom seam
          (the layer spec supplies the mixer); `map = R=G` replaces M2RNN by Gated DeltaNet,
          recorded as such in plan.decisions.
     Declared families behave like R (`custom-family-X` seams, explicit bindings).
     Features ([engram], [mhc] on A layers, [mod] on E layers, [moda], [ngram_hash],
     [structure]) are NAM_SEAM_FEATURE seams; none ever becomes a Megatron flag.
     model.spec is emitted as --spec; with custom seams and the stock spec the args carry a
     note, and strict mode refuses.
   The translated pattern is re-validated with nam_megatron_parse and the layout rules
   before anything is emitted; the launch policy is checked against Megatron's rules (each
   refusal names the rule's file:line) and the fixed policy's environment against the rules
   that read it (CUDA_DEVICE_MAX_CONNECTIONS, NCCL_GRAPH_REGISTER).

   7. RECIPE FILES
       # comment                 ; comment
       [section]
       key = value               (value may be "quoted"; lists are comma separated)
   Keys are `section.key`; unknown sections or keys are errors with file:line:column.
   Sections: recipe pattern model mla moe mamba gdn dsa m2rnn mamba3 mtp parallel memory
   implementation train data preflight batch precision cuda_graph engram mhc mod moda
   ngram_hash structure runtime.
   Generated args or fixed policy, decided per key by the seed's split (facts of the model
   and its parallel layout are generated; environment and operator choices are policy):
   model dims, pattern, parallel sizes, batch, precision (dtype, fp8 recipe and amax, router
   dtype), MoE capacity, recompute and the distributed optimizer (they decide what fits) and
   CUDA graphs are generated args; [implementation] (kernels, fusions), [train] (schedule,
   logging, checkpoint cadence) and [data] (data, tokenizer, checkpoint paths, never opened)
   are fixed-policy Megatron args (nam_plan.policy_args); [runtime] is fixed policy that is
   not an arg (environment, caches). Each key's doc string starts with "fixed policy:" when it
   is policy. [preflight] keys are never emitted. A [mamba3] key away
   from its default without pattern.mamba_impl = mamba3 is an error; feature layer lists
   are 0-based and checked against the pattern when planning (errors point at the key).
   examples/nam56r.recipe spells out every key with the built-in default. The model
   dimensions and launch settings of the built-in NAM56R are ILLUSTRATIVE defaults chosen
   to be valid together, not a published model card; override any of them.

   8. PUBLIC FUNCTIONS (see the paragraph above each declaration below).
*/
#ifndef NAM_H_INCLUDED
#define NAM_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#define NAM_VERSION_MAJOR 0
#define NAM_VERSION_MINOR 1
#define NAM_VERSION_PATCH 0
#define NAM_VERSION_STRING "0.1.0"

#ifndef NAM_API
#ifdef NAM_STATIC
#define NAM_API static
#else
#define NAM_API extern
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------ */
/* >>limits  Every size nam accepts is bounded, so bad input can never make it allocate  */
/* without bound or overflow an int.                                                     */
#define NAM_MAX_TEXT       (1 << 20)   /* bytes of pattern / recipe text                */
#define NAM_MAX_DEPTH      65536       /* layers in a main pattern                       */
#define NAM_MAX_MTP_DEPTHS 64          /* MTP copies                                     */
#define NAM_MAX_PARALLEL   (1 << 18)   /* any single parallel size, and the world size    */
#define NAM_MAX_DIM        (1 << 24)   /* model dimensions (hidden, ffn, heads, ...)      */
#define NAM_MAX_LIST       64          /* entries in a recipe list                        */

/* ------------------------------------------------------------------------------------ */
/* >>errors  One X-macro list of status codes and their texts.                           */
#define NAM__STATUS_LIST(X)                                                                 \
    X(NAM_OK,                  "ok")                                                        \
    X(NAM_ERR_INVALID_ARG,     "invalid argument")                                          \
    X(NAM_ERR_SYNTAX,          "syntax error")                                              \
    X(NAM_ERR_SYMBOL,          "unknown symbol")                                            \
    X(NAM_ERR_EMPTY,           "empty input")                                               \
    X(NAM_ERR_DEPTH,           "depth contract violated")                                   \
    X(NAM_ERR_STAGE,           "stage layout invalid")                                      \
    X(NAM_ERR_MTP,             "MTP suffix invalid")                                        \
    X(NAM_ERR_LIMIT,           "size limit exceeded")                                       \
    X(NAM_ERR_UNSUPPORTED,     "unsupported by Megatron-LM (fail-closed)")                  \
    X(NAM_ERR_CONFLICT,        "conflicting settings")                                      \
    X(NAM_ERR_PARALLEL,        "parallel layout invalid")                                   \
    X(NAM_ERR_RANGE,           "value out of range")                                        \
    X(NAM_ERR_UNKNOWN_KEY,     "unknown recipe key")                                        \
    X(NAM_ERR_NOMEM,           "out of memory")                                             \
    X(NAM_ERR_IO,              "input/output error")                                        \
    X(NAM_ERR_NOT_IMPLEMENTED, "not implemented")

typedef enum nam_status {
#define NAM__X(code, text) code,
    NAM__STATUS_LIST(NAM__X)
#undef NAM__X
    NAM_STATUS_COUNT
} nam_status;

/* An error record. Fields that do not apply are -1 (offset, layer, stage) or 0 (line,
   column). `offset` is a 0-based byte offset into the text that was being read; `line`
   and `column` are 1-based; `layer` is a 0-based layer index; `stage` a 0-based stage. */
typedef struct nam_error {
    nam_status code;
    char message[512];
    char source[128];   /* file name, "pattern", "recipe", "--set", ... ("" if none) */
    long offset;
    int line, column;
    int layer, stage;
} nam_error;

/* nam_status_str: the fixed text of a status code ("unknown status" for out-of-range). */
NAM_API const char *nam_status_str(nam_status s);
/* nam_free: frees memory nam handed to the caller (strings from nam_plan_json, ...). */
NAM_API void nam_free(void *p);

/* ==================================================================================== */
/*  THE KERNEL HALF, declarations (its implementation follows the common one below).    */
/*  NAM_NO_KERNELS leaves it out.                                                       */
/* ==================================================================================== */
#ifndef NAM_NO_KERNELS
/* ------------------------------------------------------------------------------------ */
/* >>kernels  Kernel API: tensors, backends, and one entry point per kernel.            */
/*
   Every kernel takes a zero-initialised desc struct (unset optional tensors have
   data == NULL), returns a nam_status and fills a nam_error that names the offending
   field and dimension. Kernels never allocate: scratch memory is caller-provided, sized
   by the matching *_workspace_size query (a NULL workspace with size 0 is fine when the
   query says 0). Storage dtypes are f32, bf16 and f16; all CPU math is fp32 (fp64 in the
   reference paths where stated). Backends: NAM_BACKEND_CPU_REF is the plain reference
   loop, NAM_BACKEND_CPU the fast (blocked, vectorised, multi-threaded) path, AUTO picks the
   fastest available for the tensors' device, NAM_BACKEND_CUDA runs CUDA tensors. CUDA
   tensors (device = NAM_DEVICE_CUDA, device memory, contiguous) need a program built with
   NAM_CUDA and linked with nam_cuda.cu (see nam_cuda.cuh); every tensor of a call must be
   on one device, and the desc's `stream` (a cudaStream_t, NULL = default) orders the
   work. Without NAM_CUDA such calls return NAM_ERR_NOT_IMPLEMENTED saying so. A desc's
   `ran` field reports the backend that ran. A desc's defaults (zero fields) are resolved
   once, by nam.h, before any backend runs: the CPU and CUDA kernels and the workspace
   queries all read the same resolved values, and where a default differs per backend (SSD's
   chunk_size) the desc says so and reports the value used.

   Floating-point environment and subnormals. Every kernel entry below computes with round
   to nearest, every FP exception masked and subnormals flushed to zero, on the calling
   thread and on each of its worker threads, and before it returns it writes the caller's
   control/status register back exactly as it found it (x86-64 MXCSR, status flags included;
   AArch64 FPCR and FPSR). A caller's rounding mode, unmasked exceptions or own FTZ/DAZ bits
   never change a result, and nam never changes them for the caller. The flush: on x86-64
   MXCSR's FTZ and DAZ bits, on AArch64 FPCR.FZ, so that no FMA takes a subnormal microcode
   assist (on Intel CPUs these cost the SSD scan up to 5x with strongly decaying heads).
     - subnormal inputs: an f32 (or bf16) value below FLT_MIN = 1.18e-38 in magnitude reads as
       0 in arithmetic (both backends, CPU_REF too). f16 subnormals are normal f32 values and
       are used as they are. Values a kernel only moves (nam_moe_permute, f32 copies) keep
       their bits;
     - subnormal results: any intermediate or output below FLT_MIN is 0 (signed). f16 and
       bf16 outputs are rounded from those f32 values (f16 storage keeps its own subnormals,
       6e-8..6e-5, which are normal in f32).
   The difference from IEEE gradual underflow is below 1.2e-38 absolute per operation,
   under every tolerance stated for these kernels. Built with NAM_KEEP_SUBNORMALS, or on
   another CPU or compiler (through <fenv.h>), nam sets only round to nearest and masked
   exceptions, still restores everything, and subnormals are computed at the hardware's
   speed for them. CUDA kernels keep the GPU's defaults (fp32 subnormals preserved), so on
   subnormal data CPU and CUDA results can differ by such amounts.
*/
typedef enum nam_dtype { NAM_F32 = 0, NAM_BF16 = 1, NAM_F16 = 2, NAM_I32 = 3 } nam_dtype;
typedef enum nam_device { NAM_DEVICE_CPU = 0, NAM_DEVICE_CUDA = 1 } nam_device;
typedef enum nam_backend { NAM_BACKEND_AUTO = 0, NAM_BACKEND_CPU_REF = 1, NAM_BACKEND_CPU = 2, NAM_BACKEND_CUDA = 3 } nam_backend;

#define NAM_MAX_DIMS 4
/* A strided view. stride[] is in elements; all-zero strides mean contiguous row-major.
   Zero-init with data == NULL means "not given" for optional tensors. */
typedef struct nam_tensor {
    void *data;
    nam_dtype dtype;
    nam_device device;
    int ndim;
    int64_t shape[NAM_MAX_DIMS];
    int64_t stride[NAM_MAX_DIMS];
} nam_tensor;

/* nam_tensor_make: a contiguous CPU tensor view of `data` (ndim <= 4). */
NAM_API nam_tensor nam_tensor_make(void *data, nam_dtype dtype, int ndim, const int64_t *shape);
/* nam_tensor_cuda: the same over device memory (device = NAM_DEVICE_CUDA). */
NAM_API nam_tensor nam_tensor_cuda(void *data, nam_dtype dtype, int ndim, const int64_t *shape);
/* nam_tensor_numel: product of the shape (0 for ndim 0 or a NULL tensor). */
NAM_API int64_t nam_tensor_numel(const nam_tensor *t);
NAM_API const char *nam_dtype_name(nam_dtype d);
NAM_API const char *nam_backend_name(nam_backend b);
/* nam_query_backend: what a kernel call would run for this request (AUTO resolved), or
   NAM_ERR_NOT_IMPLEMENTED when the device's backend is not built. */
NAM_API nam_status nam_query_backend(nam_backend requested, nam_device device, nam_backend *out, nam_error *err);
/* nam_query_cpu_count: online CPUs; the thread count a desc's threads = 0 means. */
NAM_API int nam_query_cpu_count(void);

/* ---- Mamba-2 SSD chunked scan (mamba_chunk_scan_combined semantics) --------------- */
/* nam_ssd_desc defaults (zero-init): optional tensors absent; dt_softplus off; dt_min 0 and
   dt_max 0 mean no limit (Mamba's dt_limit=(0, inf)), and dt_max 0 with dt_min set means no
   upper limit; backend AUTO; threads 0 -> nam_query_cpu_count(). chunk_size (0..4096) is
   resolved per backend, each at the size its kernels are tuned for: cpu 0 -> 64, else as
   given; cuda 0 -> 256, else rounded up to 64, 128 or 256, and at most l rounded up to 64;
   cpu-ref runs the sequential recurrence (no chunks). nam_ssd reports the chunk length that
   ran in chunk_size_used (0 for cpu-ref), as it reports the backend in `ran`; it never
   rewrites chunk_size, so a desc reused on another backend gets that backend's default.
     x        (b, l, h, p)         dt (b, l, h)          A (h), f32
     B, C     (b, l, g, n), h % g == 0
     D        optional (h) or (h, p)      z optional (b, l, h, p): y *= silu(z)
     dt_bias  optional (h)
     initial_states optional (b, h, p, n) f32   final_states optional output (b, h, p, n) f32
     out      (b, l, h, p)
   dt' = dt + dt_bias; softplus if asked; clamp to [dt_min, dt_max] when a limit is set.
   state = exp(dt'*A) * state + dt' * B (x) x;  y = C . state + D * x;  y *= silu(z).
   CUDA: x, B, C, z and out in one dtype (bf16/f16 on tensor cores, f32 on fp32 SIMT);
   chunk_size is a hint there (see above: 64, 128 or 256 run); the chunk states are passed on
   in fp32, the state entering a chunk is read in the storage dtype (as mamba_ssm does). */
typedef struct nam_ssd_desc {
    nam_tensor x, dt, A, B, C, D, z, dt_bias, initial_states;
    nam_tensor out, final_states;
    int dt_softplus;
    float dt_min, dt_max;
    int chunk_size;
    nam_backend backend;
    int threads;
    nam_backend ran;      /* set by nam_ssd: the backend that ran */
    int chunk_size_used;  /* set by nam_ssd: the chunk length that ran (0: cpu-ref, no chunks) */
    void *stream;         /* CUDA tensors: the cudaStream_t to run on (NULL: default stream) */
} nam_ssd_desc;
NAM_API nam_status nam_ssd_workspace_size(const nam_ssd_desc *d, size_t *bytes, nam_error *err);
NAM_API nam_status nam_ssd(nam_ssd_desc *d, void *workspace, size_t workspace_bytes, nam_error *err);

/* Single-token decode: x (b, h, p), dt (b, h), B, C (b, g, n), z (b, h, p) optional,
   state (b, h, p, n) f32 updated in place, out (b, h, p). Same dt rules as nam_ssd. */
typedef struct nam_ssd_step_desc {
    nam_tensor x, dt, A, B, C, D, z, dt_bias;
    nam_tensor state, out;
    int dt_softplus;
    float dt_min, dt_max;
    nam_backend backend;
    nam_backend ran;
    void *stream;
} nam_ssd_step_desc;
NAM_API nam_status nam_ssd_step(nam_ssd_step_desc *d, nam_error *err);

/* Causal depthwise conv1d (+ optional SiLU) of the Mamba block.
     x (b, l, c), weight (c, w), bias optional (c), out (b, l, c)
     conv_state optional (b, c, w - 1) f32: the w-1 inputs before x[:, 0] (zeros when
     absent); when given it is updated in place to the last w-1 inputs (decode: l = 1). */
typedef struct nam_conv1d_desc {
    nam_tensor x, weight, bias, conv_state, out;
    int silu;
    nam_backend backend;
    int threads;
    nam_backend ran;
    void *stream;
} nam_conv1d_desc;
NAM_API nam_status nam_conv1d(nam_conv1d_desc *d, nam_error *err);

/* ---- M2RNN: NAM56R's R block, a non-linear RNN with a matrix state per head ------------ */
/* nam_m2rnn_desc defaults (zero-init): optional tensors absent (dt_bias 0, no D term, the
   state starts at 0, no final state); backend AUTO; threads 0 -> nam_query_cpu_count().
     q (b, l, nq, K)      k (b, l, nk, K)      v (b, l, nv, V)      W (nw, V, V)
     a (b, l, nf)         the raw gate input (a projection of the token, before softplus)
     A_log (n)            dt_bias optional (n)           D optional (n, V)
     initial_state optional (b, n, K, V) f32     final_state optional output (b, n, K, V) f32
     out (b, l, n, V)
   n = max(nq, nk, nv, nw, nf) and every one of them divides n; head h reads q head
   h / (n / nq), and likewise for k, v, W and a (torch repeat_interleave). Per batch b,
   head h and token t, with the state S in R^(K x V) (S_0 = initial_state, or 0):
     f  = exp(-exp(A_log_h) * softplus(a_(t,h) + dt_bias_h))          forget gate in [0, 1]
     S~ = tanh(S W_h + k_t v_t^T)        S = f S + (1 - f) S~        y_t = S^T q_t + D_h * v_t
   out[b, t, h] = y_t; final_state = S after the last token (it may be initial_state, which
   is then updated in place). Storage f32, bf16 or f16 (any mix); math in fp32 (double in
   the reference).
   The gate is taken as its input a (with A_log and dt_bias), not as a precomputed f: f is
   computed in fp32 inside the kernel, and the blend uses 1 - f = -expm1(log f), so the
   small leak 1 - f of a gate near 1 (the usual regime) keeps full precision; a stored f in
   bf16 keeps 8 bits, which makes 1 - f = 0.01 off by up to 20%. It also saves a pass over a
   (b, l, n) tensor.
   Errors (nothing is written): shapes, dtypes and devices as usual; a head count that does
   not divide n (NAM_ERR_INVALID_ARG naming the field and n); a non-finite a, A_log or
   dt_bias, or A_log > 88 (exp(A_log) overflows fp32): NAM_ERR_RANGE naming the element;
   out sharing its data with q, k, v or a. Sizes: K <= 65536, V <= 1024.
   NAM_BACKEND_CPU runs (b, head, row block) tasks on `threads` threads; its tanh is a
   rational approximation (error <= 7 ulp and 4e-7 absolute; see >>kernel-m2rnn).
   CUDA: q, k, v and out in one dtype, V in {4, 8, 16, 32, 64, 128}, K * V <= 4096, no
   workspace; non-finite gate inputs are not checked there (reading a flag back would
   synchronise the stream): such a (b, head) gets NaN outputs and state. */
typedef struct nam_m2rnn_desc {
    nam_tensor q, k, v, W, a, A_log, dt_bias, D, initial_state;
    nam_tensor out, final_state;
    nam_backend backend;
    int threads;
    nam_backend ran;      /* set by nam_m2rnn: the backend that ran */
    void *stream;         /* CUDA tensors: the cudaStream_t to run on (NULL: default stream) */
} nam_m2rnn_desc;
NAM_API nam_status nam_m2rnn_workspace_size(const nam_m2rnn_desc *d, size_t *bytes, nam_error *err);
NAM_API nam_status nam_m2rnn(nam_m2rnn_desc *d, void *workspace, size_t workspace_bytes, nam_error *err);

/* Single-token decode: q (b, nq, K), k (b, nk, K), v (b, nv, V), W (nw, V, V), a (b, nf),
   A_log (n), dt_bias optional (n), D optional (n, V), state (b, n, K, V) f32 updated in
   place, out (b, n, V). Exactly one token of nam_m2rnn (l steps equal one scan of l). */
typedef struct nam_m2rnn_step_desc {
    nam_tensor q, k, v, W, a, A_log, dt_bias, D;
    nam_tensor state, out;
    nam_backend backend;
    int threads;
    nam_backend ran;
    void *stream;
} nam_m2rnn_step_desc;
NAM_API nam_status nam_m2rnn_step_workspace_size(const nam_m2rnn_step_desc *d, size_t *bytes, nam_error *err);
NAM_API nam_status nam_m2rnn_step(nam_m2rnn_step_desc *d, void *workspace, size_t workspace_bytes, nam_error *err);
/* Private: the coefficients of the M2RNN tanh, tanh(x) ~ x P(x^2) / Q(x^2) with x^2 clamped
   to TANH_X^2 and the result to [-1, 1] (>>kernel-m2rnn), here so that the CPU and CUDA
   kernels (nam_cuda.cuh) share one copy. */
#define NAM__M2RNN_TANH_X 9.0f
#define NAM__M2RNN_TP0 1.0f
#define NAM__M2RNN_TP1 1.338100880e-01f
#define NAM__M2RNN_TP2 3.495567478e-03f
#define NAM__M2RNN_TP3 2.060872794e-05f
#define NAM__M2RNN_TP4 1.335415156e-08f
#define NAM__M2RNN_TQ1 4.671432376e-01f
#define NAM__M2RNN_TQ2 2.587690391e-02f
#define NAM__M2RNN_TQ3 3.285600396e-04f
#define NAM__M2RNN_TQ4 7.776353641e-07f

/* ---- MoE: route, dispatch (permute), expert FFN, combine --------------------------- */
typedef enum nam_moe_score { NAM_MOE_SOFTMAX = 0, NAM_MOE_SIGMOID = 1 } nam_moe_score;
typedef enum nam_moe_act { NAM_MOE_SWIGLU = 0, NAM_MOE_SQUARED_RELU = 1 } nam_moe_act;

/* Router (Megatron topk_routing_with_score_function): logits (T, E) -> topk_idx (T, k) i32,
   topk_weight (T, k) f32. softmax: top-k on logits then softmax over the k, or with
   pre_softmax softmax over E then top-k. sigmoid: top-k of sigmoid(logits) (+ expert_bias,
   (E) f32, for the selection only), weights renormalised to sum 1 when k > 1. Weights are
   multiplied by scaling_factor (0 -> 1). Ties pick the lower expert index.
   CUDA: the same selection and weights; non-finite logits are not detected (the CPU
   returns NAM_ERR_RANGE), so the routing of such a token is unspecified. */
typedef struct nam_moe_route_desc {
    nam_tensor logits, expert_bias;
    nam_tensor topk_idx, topk_weight;
    int topk;
    nam_moe_score score;
    int pre_softmax;
    float scaling_factor;
    nam_backend backend;
    nam_backend ran;
    void *stream;
} nam_moe_route_desc;
NAM_API nam_status nam_moe_route(nam_moe_route_desc *d, nam_error *err);

/* Dispatch plan: expert-contiguous, stable (ascending token order within an expert).
   topk_idx (T, k) i32 in; counts (E) i32, offsets (E + 1) i32 and rows (T * k) i32 out:
   rows[j] = t * k + slot of the j-th permuted row (j < offsets[E]). capacity_factor > 0
   keeps at most ceil(T * k / E * capacity_factor) rows per expert (first come by token
   order); the rest are dropped, counted in num_dropped, and their combine weight is 0.
   CUDA: bit-identical arrays; the call synchronises `stream` to read num_rows back, and
   when T * k > 2048 (or E > 2048) it needs `workspace` (device memory,
   nam_moe_dispatch_workspace_size bytes). CUDA plans are not read back by permute,
   combine and ffn: their values are trusted as nam_moe_dispatch's. */
typedef struct nam_moe_dispatch_desc {
    nam_tensor topk_idx;
    int num_experts;
    float capacity_factor;
    nam_tensor counts, offsets, rows;
    int num_rows;        /* out: rows kept (offsets[E]) */
    int num_dropped;     /* out */
    int capacity;        /* out: the per-expert row limit that was applied, T * k without a
                            capacity_factor (the desc reports what ran; 0 after an error) */
    void *stream;        /* CUDA: the stream of dispatch (which synchronises it to read
                            num_rows back), permute and combine */
    void *workspace;     /* CUDA: device scratch of nam_moe_dispatch_workspace_size bytes */
    size_t workspace_bytes;   /* (256-byte aligned; the CPU needs none) */
} nam_moe_dispatch_desc;
NAM_API nam_status nam_moe_dispatch_workspace_size(const nam_moe_dispatch_desc *d, size_t *bytes, nam_error *err);
NAM_API nam_status nam_moe_dispatch(nam_moe_dispatch_desc *d, nam_error *err);

/* permute: tokens (T, H) -> permuted (rows, H) following a dispatch's `rows`. */
NAM_API nam_status nam_moe_permute(const nam_tensor *tokens, const nam_moe_dispatch_desc *plan, nam_tensor *permuted, nam_error *err);
/* combine (weighted unpermute): out[t] = sum over kept slots of weight[t,slot] * expert_out[row];
   weights NULL -> 1 (then permute followed by combine is the identity for k = 1). */
NAM_API nam_status nam_moe_combine(const nam_tensor *expert_out, const nam_moe_dispatch_desc *plan,
                                   const nam_tensor *topk_weight, nam_tensor *out, nam_error *err);

/* Grouped expert FFN over expert-contiguous rows: for each expert e, rows
   [offsets[e], offsets[e+1]) of `in` (rows, H):
     SWIGLU:        h = silu(in W1_e^T) * (in W3_e^T);  out = h W2_e^T
     SQUARED_RELU:  h = relu(in W1_e^T)^2;              out = h W2_e^T
   w1, w3 (E, F, H) (w3 unused for squared ReLU), w2 (E, H, F), out (rows, H).
   CUDA: bf16 or f16, all one dtype, on tensor cores; h is kept in the storage dtype
   between the two GEMMs (the CPU keeps it in fp32). */
typedef struct nam_moe_ffn_desc {
    nam_tensor in, w1, w3, w2, out;
    const nam_moe_dispatch_desc *plan;
    nam_moe_act act;
    nam_backend backend;
    int threads;
    nam_backend ran;
    void *stream;
} nam_moe_ffn_desc;
NAM_API nam_status nam_moe_ffn_workspace_size(const nam_moe_ffn_desc *d, size_t *bytes, nam_error *err);
NAM_API nam_status nam_moe_ffn(nam_moe_ffn_desc *d, void *workspace, size_t workspace_bytes, nam_error *err);

/* ---- Attention ------------------------------------------------------------------------ */
typedef enum nam_causal_align {
    NAM_CAUSAL_BOTTOM_RIGHT = 0,  /* FlashAttention >= 2.1: key j visible to query i iff j <= i + sk - sq */
    NAM_CAUSAL_TOP_LEFT = 1       /* PyTorch SDPA is_causal: j <= i */
} nam_causal_align;
/* q (b, sq, hq, d), k and v (b, sk, hk, d) with hq % hk == 0, d <= 256, out (b, sq, hq, d).
   scale 0 -> 1/sqrt(d) (rounded once to float; every backend multiplies by that value).
   Flash-style tiling with an online softmax: no sq x sk buffer. A query row with no visible key (possible with bottom-right alignment and sq > sk)
   outputs zeros. CUDA: bf16 or f16 (q, k, v, out one dtype), d in {32, 64, 96, 128}. */
typedef struct nam_attention_desc {
    nam_tensor q, k, v, out;
    int causal;
    nam_causal_align align;
    float scale;
    nam_backend backend;
    int threads;
    nam_backend ran;
    void *stream;
} nam_attention_desc;
NAM_API nam_status nam_attention_workspace_size(const nam_attention_desc *d, size_t *bytes, nam_error *err);
NAM_API nam_status nam_attention(nam_attention_desc *d, void *workspace, size_t workspace_bytes, nam_error *err);

/* ---- Layer ops (issue 11: the layers around the blocks) --------------------------------- */
/* RMSNorm over the last axis, plain or gated and grouped (Megatron's RMSNorm; the gated,
   grouped norm of the Mamba-2 mixer and of the R block, norm before gate = false):
     x (t, n): t rows (flatten any leading axes into t), n features
     z optional (t, n): the gate; the normed input is then g = x * silu(z), else g = x
     weight optional (n): absent = all ones
     group_size: 0 = n; else it divides n and each run of group_size features of a row is
       normalised on its own
     eps: 0 -> 1e-5 (Megatron's --norm-epsilon default); negative or not finite is refused
     out (t, n) = g / sqrt(mean of g^2 over its group + eps) * weight. out may be x (in place).
   CPU_REF: double throughout, one thread. CPU (and AUTO): fp32 arithmetic, the sum of squares in
   double, rows split over threads. No workspace, no allocation. CUDA: not implemented yet (NAM_ERR_NOT_IMPLEMENTED). */
typedef struct nam_rmsnorm_desc {
    nam_tensor x, z, weight, out;
    int64_t group_size;
    float eps;
    nam_backend backend;
    int threads;
    nam_backend ran;
    void *stream;
} nam_rmsnorm_desc;
NAM_API nam_status nam_rmsnorm(nam_rmsnorm_desc *d, nam_error *err);

/* Rotary position embedding (RoPE) of the A block's q and k, Megatron's default layout:
     x (b, s, h, d), out (b, s, h, d); out may be x (in place)
     rot_dim: 0 = d; else even and <= d: the first rot_dim features rotate, the rest pass
     base: 0 -> 10000 (Megatron's --rotary-base default)
     pos_offset: the position of x[:, 0] (decode: the number of tokens already cached)
     interleaved: 0 = rotate-half (features i and i + rot_dim/2 form a pair, Megatron and
       Llama); 1 = adjacent pairs (2i, 2i + 1), GPT-J style
   With p = pos_offset + t and theta_i = p * base^(-2i / rot_dim), i < rot_dim / 2, each pair
   (a, b) becomes (a cos theta_i - b sin theta_i, b cos theta_i + a sin theta_i).
   The angles are formed in double on every backend. CPU_REF: double throughout. CPU (and
   AUTO): the rotation in fp32, (b, s) rows over threads. CUDA: not implemented yet. */
typedef struct nam_rope_desc {
    nam_tensor x, out;
    int64_t rot_dim, pos_offset;
    double base;
    int interleaved;
    nam_backend backend;
    int threads;
    nam_backend ran;
    void *stream;
} nam_rope_desc;
NAM_API nam_status nam_rope(nam_rope_desc *d, nam_error *err);

/* Token embedding: out[t] = table[ids[t]].
     ids (t) i32, table (vocab, n), out (t, n). An id outside 0..vocab-1 is an error naming its
     position, and then nothing is written. CPU_REF and CPU copy alike (CPU over threads).
   SwiGLU's product: out = silu(gate) * up, gate, up, out (t, f); out may be gate or up.
   CPU_REF: double; CPU: fp32 (expf). */
typedef struct nam_embedding_desc {
    nam_tensor ids, table, out;
    nam_backend backend;
    int threads;
    nam_backend ran;
    void *stream;
} nam_embedding_desc;
NAM_API nam_status nam_embedding(nam_embedding_desc *d, nam_error *err);

typedef struct nam_swiglu_desc {
    nam_tensor gate, up, out;
    nam_backend backend;
    int threads;
    nam_backend ran;
    void *stream;
} nam_swiglu_desc;
NAM_API nam_status nam_swiglu(nam_swiglu_desc *d, nam_error *err);

/* Cross-entropy of logits (t, V) against targets (t) i32: per token
   loss = logsumexp(logits[t]) - logits[t, target[t]] (max-shifted, in double). A negative
   target is ignored (PyTorch's ignore_index -100 among them); a target >= V is an error naming
   its position. losses (t) f32 optional (0 where ignored). Outputs in the desc: loss_mean (the
   mean over the counted tokens; 0 when none) and counted. CPU_REF: double, one thread; CPU:
   fp32 exp with double sums, tokens over threads. */
typedef struct nam_cross_entropy_desc {
    nam_tensor logits, targets, losses;
    nam_backend backend;
    int threads;
    nam_backend ran;
    void *stream;
    double loss_mean;     /* out */
    int64_t counted;      /* out: tokens with a target >= 0 */
} nam_cross_entropy_desc;
NAM_API nam_status nam_cross_entropy(nam_cross_entropy_desc *d, nam_error *err);

/* ---- CUDA ------------------------------------------------------------------------------ */
/* With NAM_CUDA defined (and nam_cuda.cu linked: see nam_cuda.cuh), every entry point above
   runs on the GPU when its tensors are CUDA tensors: nam.h checks shapes and options as for
   the CPU and resolves every default of the desc (the nam__*_desc_defaults functions of the
   >>kernel-* sections), then calls these hooks with the resolved desc; nam_cuda.cuh
   implements them. Not for direct use.
   NAM__CUDA_HOOKS(X) is the one list of the hooks: X(PART, name, parameters) for each, where
   PART is the nam_cuda.cuh section that defines it (NAM_CUDA_SKIP_<PART> leaves it out).
   It gives the declarations here and nam_cuda.cuh's fallbacks; a new hook is one line. */
#define NAM__CUDA_HOOKS(X)                                                                                                      \
    X(SSD, nam_cuda__ssd_workspace_size, (const nam_ssd_desc *d, size_t *bytes, nam_error *err))                                \
    X(SSD, nam_cuda__ssd, (const nam_ssd_desc *d, void *workspace, size_t workspace_bytes, nam_error *err))                     \
    X(SSD, nam_cuda__ssd_step, (const nam_ssd_step_desc *d, nam_error *err))                                                    \
    X(SSD, nam_cuda__conv1d, (const nam_conv1d_desc *d, nam_error *err))                                                        \
    X(MOE, nam_cuda__moe_route, (const nam_moe_route_desc *d, nam_error *err))                                                  \
    X(MOE, nam_cuda__moe_dispatch_workspace_size, (const nam_moe_dispatch_desc *d, size_t *bytes, nam_error *err))              \
    X(MOE, nam_cuda__moe_dispatch, (nam_moe_dispatch_desc *d, nam_error *err))                                                  \
    X(MOE, nam_cuda__moe_permute, (const nam_tensor *tokens, const nam_moe_dispatch_desc *plan, nam_tensor *permuted, nam_error *err)) \
    X(MOE, nam_cuda__moe_combine, (const nam_tensor *expert_out, const nam_moe_dispatch_desc *plan, const nam_tensor *topk_weight, \
                                   nam_tensor *out, nam_error *err))                                                            \
    X(MOE, nam_cuda__moe_ffn_workspace_size, (const nam_moe_ffn_desc *d, size_t *bytes, nam_error *err))                        \
    X(MOE, nam_cuda__moe_ffn, (const nam_moe_ffn_desc *d, void *workspace, size_t workspace_bytes, nam_error *err))             \
    X(ATTENTION, nam_cuda__attention_workspace_size, (const nam_attention_desc *d, size_t *bytes, nam_error *err))              \
    X(ATTENTION, nam_cuda__attention, (const nam_attention_desc *d, void *workspace, size_t workspace_bytes, nam_error *err))   \
    X(M2RNN, nam_cuda__m2rnn, (const nam_m2rnn_desc *d, void *workspace, size_t workspace_bytes, nam_error *err))
#ifdef NAM_CUDA
#define NAM__CUDA_HOOK_DECL(part, name, params) extern nam_status name params;
NAM__CUDA_HOOKS(NAM__CUDA_HOOK_DECL)
#undef NAM__CUDA_HOOK_DECL
#endif
#endif /* NAM_NO_KERNELS */


#ifdef __cplusplus
}
#endif
#endif /* NAM_H_INCLUDED */

/* ==================================================================================== */
/* >>error-helpers  How a nam_error is filled, written once for nam.h's implementation and for
   nam_cuda.cuh's (NAM_CUDA_IMPLEMENTATION), which includes nam.h without NAM_IMPLEMENTATION.
   Private (static) to each translation unit that implements either; emitted once per unit. */
#if (defined(NAM_IMPLEMENTATION) || defined(NAM_CUDA_IMPLEMENTATION)) && !defined(NAM__ERR_HELPERS_DONE)
#define NAM__ERR_HELPERS_DONE
#include <stdarg.h>
#include <stdio.h>
#if defined(__GNUC__) || defined(__clang__)
#define NAM__ERR_DEF static __attribute__((unused))
#define NAM__ERR_PRINTF __attribute__((format(printf, 3, 4)))
#else
#define NAM__ERR_DEF static
#define NAM__ERR_PRINTF
#endif
/* nam__err_reset: every field at its "does not apply" value (code NAM_OK, empty texts). */
NAM__ERR_DEF void nam__err_reset(nam_error *e) {
    e->code = NAM_OK;
    e->message[0] = 0;
    e->source[0] = 0;
    e->offset = -1;
    e->line = e->column = 0;
    e->layer = e->stage = -1;
}
/* nam__err: fill *e (when not NULL) with code and the formatted message; returns code. */
NAM__ERR_DEF nam_status nam__err(nam_error *e, nam_status code, const char *fmt, ...) NAM__ERR_PRINTF;
NAM__ERR_DEF nam_status nam__err(nam_error *e, nam_status code, const char *fmt, ...) {
    va_list ap;
    if (!e) return code;
    nam__err_reset(e);
    e->code = code;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return code;
}
/* nam__ok: success, with *e (when not NULL) reset. */
NAM__ERR_DEF nam_status nam__ok(nam_error *e) {
    if (e) nam__err_reset(e);
    return NAM_OK;
}
#endif /* NAM__ERR_HELPERS_DONE */

/* ==================================================================================== */
/*                                  IMPLEMENTATION                                      */
/* ==================================================================================== */
#if defined(NAM_IMPLEMENTATION) && !defined(NAM__IMPLEMENTATION_DONE)
#define NAM__IMPLEMENTATION_DONE

#if defined(NAM_NO_PLANNER) && defined(NAM_NO_KERNELS)
#error "nam.h: NAM_NO_PLANNER and NAM_NO_KERNELS together leave nothing to implement; define at most one"
#endif

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef NAM_NO_KERNELS
#include <pthread.h>
#include <unistd.h>
/* The CPU-feature layer's compile-time half (its run-time half, nam__cpu_*, is in
   >>kernel-common). NAM__X86_SIMD is 1 when this compiler can emit the AVX2/FMA/F16C kernels
   through target attributes: GCC or Clang on x86-64, not nvcc's host pass, not NAM_NO_SIMD.
   Every SIMD path in nam.h is under `#if NAM__X86_SIMD` and runs only where nam__cpu_*
   reports the features; everything else runs the portable C loops. */
#if !defined(NAM_NO_SIMD) && (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && !defined(__CUDACC__)
#define NAM__X86_SIMD 1
#define NAM__TARGET_AVX2 __attribute__((target("avx2,fma")))
#define NAM__TARGET_AVX2_F16C __attribute__((target("avx2,fma,f16c")))
#include <immintrin.h>
#include <cpuid.h>
#else
#define NAM__X86_SIMD 0
#endif
#if defined(NAM_KEEP_SUBNORMALS) || !((defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__aarch64__)))
#include <fenv.h>        /* kernel FP environment where nam has no direct access to it (>>kernel-common) */
#endif
#ifdef NAM_CBLAS
#include <cblas.h>       /* optional: nam__sgemm calls cblas_sgemm (link -lopenblas) */
#endif
#endif /* NAM_NO_KERNELS */

#if defined(NAM_MALLOC) && !defined(NAM_FREE) || !defined(NAM_MALLOC) && defined(NAM_FREE)
#error "nam.h: define both NAM_MALLOC and NAM_FREE, or neither"
#endif
#ifndef NAM_MALLOC
#define NAM_MALLOC(sz) malloc(sz)
#define NAM_FREE(p) free(p)
#endif
#ifndef NAM_ASSERT
#include <assert.h>
#define NAM_ASSERT(c) assert(c)
#endif

#ifdef NAM_STATIC
#if defined(__GNUC__) || defined(__clang__)
#define NAM__DEF static __attribute__((unused))
#else
#define NAM__DEF static
#endif
#else
#define NAM__DEF
#endif

#ifdef __cplusplus
#define NAM__CAST(T, x) static_cast<T>(x)
#else
#define NAM__CAST(T, x) ((T)(x))
#endif

#if defined(__GNUC__) || defined(__clang__)
#define NAM__PRINTF(a, b) __attribute__((format(printf, a, b)))
#define NAM__UNUSED __attribute__((unused))
#else
#define NAM__PRINTF(a, b)
#define NAM__UNUSED
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* >>errors ---------------------------------------------------------------------------- */
static const char *const nam__status_text[] = {
#define NAM__X(code, text) text,
    NAM__STATUS_LIST(NAM__X)
#undef NAM__X
};

NAM__DEF const char *nam_status_str(nam_status s) {
    if (NAM__CAST(int, s) < 0 || NAM__CAST(int, s) >= NAM__CAST(int, NAM_STATUS_COUNT)) return "unknown status";
    return nam__status_text[s];
}

NAM__DEF void nam_free(void *p) { if (p) NAM_FREE(p); }

/* Prefix an existing error message with context ("native pattern: ..."), truncating. */
static void nam__err_prefix(nam_error *e, const char *prefix) {
    char tmp[sizeof e->message];
    size_t pl, ml;
    if (!e) return;
    pl = strlen(prefix);
    if (pl >= sizeof tmp) pl = sizeof tmp - 1;
    ml = strlen(e->message);
    if (pl + ml >= sizeof tmp) ml = sizeof tmp - 1 - pl;
    memcpy(tmp, prefix, pl);
    memcpy(tmp + pl, e->message, ml);
    tmp[pl + ml] = 0;
    memcpy(e->message, tmp, sizeof tmp);
}

/* ==================================================================================== */
/*  THE KERNEL HALF, implementation: kernel-common, attention, gemm, moe, ssd, m2rnn.   */
/* ==================================================================================== */
#ifndef NAM_NO_KERNELS
/* >>kernel-common ---------------------------------------------------------------------- */
NAM__DEF nam_tensor nam_tensor_make(void *data, nam_dtype dtype, int ndim, const int64_t *shape) {
    nam_tensor t;
    int i;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.dtype = dtype;
    t.ndim = ndim < 0 ? 0 : ndim > NAM_MAX_DIMS ? NAM_MAX_DIMS : ndim;
    for (i = 0; i < t.ndim; i++) t.shape[i] = shape ? shape[i] : 0;
    return t;
}

NAM__DEF nam_tensor nam_tensor_cuda(void *data, nam_dtype dtype, int ndim, const int64_t *shape) {
    nam_tensor t = nam_tensor_make(data, dtype, ndim, shape);
    t.device = NAM_DEVICE_CUDA;
    return t;
}

NAM__DEF int64_t nam_tensor_numel(const nam_tensor *t) {
    int64_t n = 1;
    int i;
    if (!t || t->ndim <= 0) return 0;
    for (i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

NAM__DEF const char *nam_dtype_name(nam_dtype d) {
    switch (d) {
    case NAM_F32: return "f32";
    case NAM_BF16: return "bf16";
    case NAM_F16: return "f16";
    case NAM_I32: return "i32";
    default: return "unknown dtype";
    }
}

NAM__DEF const char *nam_backend_name(nam_backend b) {
    switch (b) {
    case NAM_BACKEND_AUTO: return "auto";
    case NAM_BACKEND_CPU_REF: return "cpu-ref";
    case NAM_BACKEND_CPU: return "cpu";
    case NAM_BACKEND_CUDA: return "cuda";
    default: return "unknown backend";
    }
}

NAM__DEF int nam_query_cpu_count(void) {
#if defined(_SC_NPROCESSORS_ONLN)
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : NAM__CAST(int, n);
#else
    return 1;
#endif
}

NAM__DEF nam_status nam_query_backend(nam_backend requested, nam_device device, nam_backend *out, nam_error *err) {
    if (!out) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_query_backend: out is NULL");
#ifdef NAM_CUDA
    if (device == NAM_DEVICE_CUDA) {
        *out = NAM_BACKEND_CUDA;
        if (requested != NAM_BACKEND_AUTO && requested != NAM_BACKEND_CUDA)
            return nam__err(err, NAM_ERR_INVALID_ARG, "backend %s cannot run on CUDA tensors (use auto or cuda)", nam_backend_name(requested));
        if (err) nam__err_reset(err);
        return NAM_OK;
    }
    if (requested == NAM_BACKEND_CUDA) {
        *out = NAM_BACKEND_CUDA;
        return nam__err(err, NAM_ERR_INVALID_ARG, "backend cuda needs CUDA tensors (device = NAM_DEVICE_CUDA); these are CPU tensors");
    }
#else
    if (device == NAM_DEVICE_CUDA || requested == NAM_BACKEND_CUDA) {
        *out = NAM_BACKEND_CUDA;
        return nam__err(err, NAM_ERR_NOT_IMPLEMENTED, "the CUDA backend is not built into this program (build with NAM_CUDA and link nam_cuda.cu; see nam_cuda.cuh)");
    }
#endif
    if (requested != NAM_BACKEND_AUTO && requested != NAM_BACKEND_CPU_REF && requested != NAM_BACKEND_CPU)
        return nam__err(err, NAM_ERR_INVALID_ARG, "backend %d is not a nam_backend", NAM__CAST(int, requested));
    *out = requested == NAM_BACKEND_AUTO ? NAM_BACKEND_CPU : requested;
    if (err) nam__err_reset(err);
    return NAM_OK;
}

static int nam__resolve_threads(int threads) {
    if (threads <= 0) return nam_query_cpu_count();
    return threads > 256 ? 256 : threads;
}

/* The threads default of every desc, resolved once (nam__*_desc_defaults): the fast CPU path
   runs on nam__resolve_threads(threads) (0 -> every online CPU, at most 256); cpu-ref and
   CUDA launches run on the calling thread (1). */
static int nam__desc_threads(nam_backend be, int threads) {
    return be == NAM_BACKEND_CPU ? nam__resolve_threads(threads) : 1;
}

/* Shape/dtype/device checks for one tensor field. `dims` names the axes, e.g. "b,l,h,p".
   optional: a tensor with data == NULL is accepted (and means "not given"). */
static nam_status nam__tensor_basic(const nam_tensor *t, const char *field, int ndim, const char *dims, int optional, nam_error *err) {
    int i;
    if (!t->data) {
        if (optional) return NAM_OK;
        return nam__err(err, NAM_ERR_INVALID_ARG, "%s: data is NULL (expected a (%s) tensor)", field, dims);
    }
#ifndef NAM_CUDA
    if (t->device == NAM_DEVICE_CUDA)
        return nam__err(err, NAM_ERR_NOT_IMPLEMENTED, "%s is a CUDA tensor, but the CUDA backend is not built into this program (build with NAM_CUDA)", field);
#endif
    if (t->device != NAM_DEVICE_CPU && t->device != NAM_DEVICE_CUDA) return nam__err(err, NAM_ERR_INVALID_ARG, "%s: device %d is not a nam_device", field, NAM__CAST(int, t->device));
    if (t->dtype != NAM_F32 && t->dtype != NAM_BF16 && t->dtype != NAM_F16)
        return nam__err(err, NAM_ERR_INVALID_ARG, "%s: dtype %s is not a float storage type (f32, bf16, f16)", field, nam_dtype_name(t->dtype));
    if (t->ndim != ndim) return nam__err(err, NAM_ERR_INVALID_ARG, "%s: %d dimensions, expected %d (%s)", field, t->ndim, ndim, dims);
    for (i = 0; i < ndim; i++) {
        if (t->shape[i] < 1 || t->shape[i] > (INT64_C(1) << 40))
            return nam__err(err, NAM_ERR_RANGE, "%s.shape[%d] = %lld is out of range (1..2^40; zero sizes are not accepted)", field, i, NAM__CAST(long long, t->shape[i]));
        if (t->stride[i] < 0)
            return nam__err(err, NAM_ERR_INVALID_ARG, "%s.stride[%d] = %lld is negative", field, i, NAM__CAST(long long, t->stride[i]));
    }
    return NAM_OK;
}

/* An index tensor (i32), same rules otherwise. */
static nam_status nam__tensor_i32(const nam_tensor *t, const char *field, int ndim, const char *dims, nam_error *err) {
    nam_tensor u = *t;
    if (t->data && t->dtype != NAM_I32) return nam__err(err, NAM_ERR_INVALID_ARG, "%s: dtype %s, expected i32", field, nam_dtype_name(t->dtype));
    u.dtype = NAM_F32;
    return nam__tensor_basic(&u, field, ndim, dims, 0, err);
}

/* Every given tensor of a call on one device: tensors t[0..n) named names[0..n) (NULL
   entries and tensors with data == NULL are skipped) must be on t[0]'s device. */
static nam_status nam__same_device(int n, const nam_tensor *const *t, const char *const *names, nam_error *err) {
    int i;
    for (i = 1; i < n; i++)
        if (t[i] && t[i]->data && t[i]->device != t[0]->device)
            return nam__err(err, NAM_ERR_INVALID_ARG, "%s is a %s tensor, but %s is a %s tensor; every tensor of a call must be on one device", names[i],
                            t[i]->device == NAM_DEVICE_CUDA ? "CUDA" : "CPU", names[0], t[0]->device == NAM_DEVICE_CUDA ? "CUDA" : "CPU");
    return NAM_OK;
}

/* t.shape[axis] must equal want (taken from `from`, e.g. "A.shape[0]"). */
static nam_status nam__tensor_dim(const nam_tensor *t, const char *field, int axis, const char *axis_name, int64_t want,
                                  const char *from, nam_error *err) {
    if (t->shape[axis] == want) return NAM_OK;
    return nam__err(err, NAM_ERR_INVALID_ARG, "%s.shape[%d] (%s) = %lld, but %s = %lld", field, axis, axis_name,
                    NAM__CAST(long long, t->shape[axis]), from, NAM__CAST(long long, want));
}

/* Element strides with zeros resolved to contiguous row-major. */
static void nam__tensor_strides(const nam_tensor *t, int64_t st[NAM_MAX_DIMS]) {
    int i, contiguous = 1;
    int64_t s = 1;
    for (i = 0; i < t->ndim; i++) if (t->stride[i]) contiguous = 0;
    for (i = t->ndim - 1; i >= 0; i--) {
        st[i] = contiguous ? s : t->stride[i];
        s *= t->shape[i];
    }
    for (i = t->ndim; i < NAM_MAX_DIMS; i++) st[i] = 0;
}

static int nam__tensor_is_contig_f32(const nam_tensor *t) {
    int64_t st[NAM_MAX_DIMS], s = 1;
    int i;
    if (t->dtype != NAM_F32) return 0;
    nam__tensor_strides(t, st);
    for (i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && st[i] != s) return 0;
        s *= t->shape[i];
    }
    return 1;
}

static float nam__bf16_to_f32(uint16_t h) {
    uint32_t u = NAM__CAST(uint32_t, h) << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint16_t nam__f32_to_bf16(float f) {        /* round to nearest even; NaN stays NaN */
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return NAM__CAST(uint16_t, (u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return NAM__CAST(uint16_t, u >> 16);
}
static float nam__f16_to_f32(uint16_t h) {
    uint32_t sign = NAM__CAST(uint32_t, h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
    float f;
    if (exp == 0) {
        if (man == 0) u = sign;
        else {                                            /* subnormal: normalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400u)) { man <<= 1; exp--; }
            man &= 0x3ffu;
            u = sign | (exp << 23) | (man << 13);
        }
    } else if (exp == 31) u = sign | 0x7f800000u | (man << 13);
    else u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    memcpy(&f, &u, 4);
    return f;
}
static uint16_t nam__f32_to_f16(float f) {         /* round to nearest even */
    uint32_t u, sign, man;
    int32_t exp;
    memcpy(&u, &f, 4);
    sign = (u >> 16) & 0x8000u;
    if ((u & 0x7fffffffu) > 0x7f800000u) return NAM__CAST(uint16_t, sign | 0x7e00u);
    exp = NAM__CAST(int32_t, (u >> 23) & 0xffu) - 127 + 15;
    man = u & 0x7fffffu;
    if (exp >= 31) return NAM__CAST(uint16_t, sign | 0x7c00u);
    if (exp <= 0) {
        uint32_t shift, r, half;
        if (exp < -10) return NAM__CAST(uint16_t, sign);
        man |= 0x800000u;
        shift = NAM__CAST(uint32_t, 14 - exp);
        r = man >> shift;
        half = 1u << (shift - 1);
        if ((man & ((1u << shift) - 1)) > half || ((man & ((1u << shift) - 1)) == half && (r & 1u))) r++;
        return NAM__CAST(uint16_t, sign | r);
    }
    {
        uint32_t r = (NAM__CAST(uint32_t, exp) << 10) | (man >> 13), rem = man & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) r++;   /* may carry into the exponent: correct */
        return NAM__CAST(uint16_t, sign | r);
    }
}

static float nam__load(const void *base, nam_dtype dt, int64_t i) {
    switch (dt) {
    case NAM_BF16: return nam__bf16_to_f32(NAM__CAST(const uint16_t *, base)[i]);
    case NAM_F16: return nam__f16_to_f32(NAM__CAST(const uint16_t *, base)[i]);
    default: return NAM__CAST(const float *, base)[i];
    }
}
static void nam__store(void *base, nam_dtype dt, int64_t i, float v) {
    switch (dt) {
    case NAM_BF16: NAM__CAST(uint16_t *, base)[i] = nam__f32_to_bf16(v); break;
    case NAM_F16: NAM__CAST(uint16_t *, base)[i] = nam__f32_to_f16(v); break;
    default: NAM__CAST(float *, base)[i] = v; break;
    }
}

/* Copy any dtype / strides into contiguous f32 (row-major). */
static void nam__pack_f32(const nam_tensor *t, float *dst) {
    int64_t st[NAM_MAX_DIMS], sh[NAM_MAX_DIMS], i0, i1, i2, i3, o = 0;
    int k;
    nam__tensor_strides(t, st);
    for (k = 0; k < NAM_MAX_DIMS; k++) sh[k] = k < t->ndim ? t->shape[k] : 1;
    if (nam__tensor_is_contig_f32(t)) { memcpy(dst, t->data, sizeof(float) * NAM__CAST(size_t, nam_tensor_numel(t))); return; }
    for (i0 = 0; i0 < sh[0]; i0++)
        for (i1 = 0; i1 < sh[1]; i1++)
            for (i2 = 0; i2 < sh[2]; i2++)
                for (i3 = 0; i3 < sh[3]; i3++)
                    dst[o++] = nam__load(t->data, t->dtype, i0 * st[0] + i1 * st[1] + i2 * st[2] + i3 * st[3]);
}
/* Carve 64-byte-aligned pieces out of a caller workspace. Size with nam__ws_need. */
static size_t nam__ws_need(size_t bytes) { return (bytes + 63) & ~NAM__CAST(size_t, 63); }
static void *nam__ws_take(char **cursor, size_t bytes) {
    char *p = *cursor;
    *cursor += nam__ws_need(bytes);
    return p;
}
static nam_status nam__ws_check(const void *ws, size_t have, size_t need, const char *kernel, nam_error *err) {
    if (need == 0) return NAM_OK;
    if (!ws) return nam__err(err, NAM_ERR_INVALID_ARG, "%s: workspace is NULL but %lu bytes are needed (see %s_workspace_size)", kernel, NAM__CAST(unsigned long, need), kernel);
    if ((uintptr_t)ws % 64 != 0) return nam__err(err, NAM_ERR_INVALID_ARG, "%s: workspace must be 64-byte aligned", kernel);
    if (have < need) return nam__err(err, NAM_ERR_INVALID_ARG, "%s: workspace of %lu bytes is too small, %lu bytes are needed", kernel, NAM__CAST(unsigned long, have), NAM__CAST(unsigned long, need));
    return NAM_OK;
}

/* ---- CPU features: the run-time half (the compile-time half, NAM__X86_SIMD, is at the
   top of the implementation). The kernels ask these, never the CPU directly. */
static int nam__cpu_avx2_fma(void) {
#if NAM__X86_SIMD
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}
/* F16C (the f16 <-> f32 conversions): CPUID.1:ECX bit 29, asked directly since not every
   compiler's __builtin_cpu_supports knows it. */
static int nam__cpu_f16c(void) {
#if NAM__X86_SIMD
    unsigned a, b, cx, dx;
    return __get_cpuid(1, &a, &b, &cx, &dx) && ((cx >> 29) & 1u);
#else
    return 0;
#endif
}

/* ---- the floating-point environment of the CPU kernels ----------------------------------
   Every public kernel entry runs its body between nam__fp_enter and nam__fp_leave (the
   NAM__FP_CALL wrappers after each entry), and so does every worker of nam__parallel_for and
   nam__sgemm:
     enter  saves the calling thread's FP control/status register, then sets round to
            nearest, every exception masked, and subnormals flushed: x86-64 MXCSR with FTZ
            (results below FLT_MIN become 0) and DAZ (subnormal operands read as 0), AArch64
            FPCR.FZ (both). It writes the register only when the value differs;
     leave  writes the saved value back bit for bit, status flags included (AArch64: FPCR and
            FPSR), so the caller finds its environment exactly as it left it. nam is vendored
            into programs that own their MXCSR; a library that changed it would change their
            arithmetic after the call.
   Why FTZ/DAZ, and not arithmetic that avoids subnormals: in the SSD chunked scan the
   exponentials themselves never are subnormal (nam__ssd_exp8 returns 0 below -87.33), but
   the products are: exp(cum_i - cum_j) G dt, the two-factor panel decays, the row scales
   diag(exp(cum)) C S^T and the chunk-state decay exp(cum_last) S all land in the 1e-38..1e-45
   band for strongly decaying heads (A*dt summed over a chunk below about -87), and on Intel
   every FMA that reads or writes such a value takes a microcode assist (measured 4.8x on
   the whole SSD, bench/RESULTS.md). Clamping each product would put compares on the inner
   FMA loops and would still leave subnormal inputs (user data, bf16 subnormals) slow in
   attention, GEMM and MoE; FTZ/DAZ removes every assist in hardware at no per-element cost,
   for the portable C loops as well as the AVX2 ones. The cost is gradual underflow: a value
   below FLT_MIN (1.18e-38) is 0, an absolute error below 1.2e-38 per operation, far under
   every tolerance nam states (tests/test_ssd.c runs decays through that band against the
   double recurrence; tests/test_fpenv.c checks the register and the flush). Round-to-nearest and masked exceptions make a kernel's result
   independent of the caller's rounding mode and traps. Worker threads inherit the calling
   thread's environment under POSIX; they set it themselves anyway, so nothing depends on the
   thread library. Elsewhere (other CPUs, other compilers), and everywhere under
   NAM_KEEP_SUBNORMALS, nam uses <fenv.h>: feholdexcept (masks every exception, clears the
   flags) and round to nearest on entry, fesetenv on exit; subnormals are then computed as
   the hardware does (no flush). */
#if !defined(NAM_KEEP_SUBNORMALS) && (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define NAM__FP_X86 1
/* MXCSR: FTZ (bit 15), the six exception masks (bits 7-12), DAZ (bit 6); rounding bits 13-14
   zero = to nearest; status flags (bits 0-5) clear. DAZ exists on every x86-64 CPU. */
#define NAM__FP_MXCSR 0x9FC0u
typedef struct nam__fpenv { unsigned int csr; } nam__fpenv;
static void nam__fp_enter(nam__fpenv *e) {
    unsigned int want = NAM__FP_MXCSR;
    __asm__ __volatile__("stmxcsr %0" : "=m"(e->csr) : : "memory");   /* "memory": no load or store moves across */
    if (e->csr != want) __asm__ __volatile__("ldmxcsr %0" : : "m"(want) : "memory");
}
static void nam__fp_leave(const nam__fpenv *e) {
    unsigned int now;
    __asm__ __volatile__("stmxcsr %0" : "=m"(now) : : "memory");
    if (now != e->csr) __asm__ __volatile__("ldmxcsr %0" : : "m"(e->csr) : "memory");
}
#elif !defined(NAM_KEEP_SUBNORMALS) && (defined(__GNUC__) || defined(__clang__)) && defined(__aarch64__)
#define NAM__FP_ARM64 1
/* FPCR: FZ (bit 24) set; RMode (bits 22-23) 0 = to nearest; trap enables IOE..IXE (bits 8-12)
   and IDE (bit 15) clear. FPSR holds the status flags, saved and restored with it. */
typedef struct nam__fpenv { uint64_t fpcr, fpsr; } nam__fpenv;
static void nam__fp_enter(nam__fpenv *e) {
    uint64_t want;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(e->fpcr) : : "memory");
    __asm__ __volatile__("mrs %0, fpsr" : "=r"(e->fpsr) : : "memory");
    want = (e->fpcr & ~((UINT64_C(3) << 22) | (UINT64_C(0x1f) << 8) | (UINT64_C(1) << 15))) | (UINT64_C(1) << 24);
    if (want != e->fpcr) __asm__ __volatile__("msr fpcr, %0" : : "r"(want) : "memory");
}
static void nam__fp_leave(const nam__fpenv *e) {
    __asm__ __volatile__("msr fpsr, %0" : : "r"(e->fpsr) : "memory");
    __asm__ __volatile__("msr fpcr, %0" : : "r"(e->fpcr) : "memory");
}
#else
typedef struct nam__fpenv { fenv_t env; } nam__fpenv;
static void nam__fp_enter(nam__fpenv *e) {
    feholdexcept(&e->env);
#ifdef FE_TONEAREST
    fesetround(FE_TONEAREST);   /* always: glibc's fegetround reads only the x87 word on x86-64, not MXCSR */
#endif
}
static void nam__fp_leave(const nam__fpenv *e) { fesetenv(&e->env); }
#endif
/* st = call, evaluated inside the kernel FP environment. */
#define NAM__FP_CALL(st, call)      \
    do {                            \
        nam__fpenv fe_;             \
        nam__fp_enter(&fe_);        \
        (st) = (call);              \
        nam__fp_leave(&fe_);        \
    } while (0)

/* Split [0, n) into `threads` contiguous ranges and run fn on each (POSIX threads); each
   worker thread runs inside the kernel FP environment (see above). */
typedef void (*nam__task_fn)(void *ctx, int64_t begin, int64_t end, int thread);
typedef struct nam__task { nam__task_fn fn; void *ctx; int64_t begin, end; int thread; } nam__task;
static void *nam__task_main(void *arg) {
    nam__task *t = NAM__CAST(nam__task *, arg);
    nam__fpenv fe;
    nam__fp_enter(&fe);
    t->fn(t->ctx, t->begin, t->end, t->thread);
    nam__fp_leave(&fe);
    return NULL;
}
static void nam__parallel_for(int64_t n, int threads, nam__task_fn fn, void *ctx) {
    pthread_t tid[256];
    nam__task task[256];
    int started[256], i;
    if (threads > n) threads = NAM__CAST(int, n);
    if (threads <= 1) { if (n > 0) fn(ctx, 0, n, 0); return; }
    for (i = 0; i < threads; i++) {
        task[i].fn = fn;
        task[i].ctx = ctx;
        task[i].begin = n * i / threads;
        task[i].end = n * (i + 1) / threads;
        task[i].thread = i;
        started[i] = i > 0 && pthread_create(&tid[i], NULL, nam__task_main, &task[i]) == 0;
    }
    fn(ctx, task[0].begin, task[0].end, 0);
    for (i = 1; i < threads; i++) {
        if (started[i]) pthread_join(tid[i], NULL);
        else fn(ctx, task[i].begin, task[i].end, i);   /* no thread: run it here */
    }
}

static float nam__silu(float x) { return x / (1.0f + expf(-x)); }
static double nam__silu_d(double x) { return x / (1.0 + exp(-x)); }   /* the references' SiLU, in double */
static float nam__softplus(float x) { return x <= 20.0f ? log1pf(expf(x)) : x; }


/* >>kernel-attention ------------------------------------------------------------------------- */
/* nam_attention: softmax(q k^T * scale + causal mask) v, q (b, sq, hq, d), k/v (b, sk, hk, d).

   NAM_BACKEND_CPU_REF: for every (batch, q head, query row) an exact two-pass softmax in
   double over the visible keys (max pass, then exp/sum/accumulate). Workspace: sk + d
   doubles. Single-threaded.

   NAM_BACKEND_CPU (AUTO): FlashAttention-2 tiling. One work item is one tile of R <= 96
   query rows that share a kv head: Gt query heads of one GQA group (Gt = the largest
   divisor of hq/hk that is <= 96) times Bq = 96 / Gt consecutive positions, laid out
   position-major (row r = position r / Gt, head r % Gt), so every K/V tile read serves all
   of them and decode (sq = 1) still fills the tile with the group's heads. Per item:
     Qt (d x R, pre-multiplied by scale * log2 e) is packed once;
     for each key tile of Bc = 96 keys up to the last key any row of the item can see
     (fully masked tiles are never visited):
       S^T = K_tile Qt                      (6 x 16 register-blocked FMA kernel; K read in
                                             place when f32 with unit stride along d and
                                             d % 8 == 0, else converted to f32 rows)
       mask (only tiles that cross the causal diagonal)
       online softmax per row in base 2: m' = max(m, max_j S), alpha = 2^(m - m'),
       P = 2^(S - m'), l = alpha l + sum_j P (vectorised over the rows)
       O = alpha O + P V_tile               (6 x 16 kernel over V copied into 16-column
                                             panels; keys a row cannot see are never
                                             multiplied in, so a NaN in a masked value row
                                             does not leak into it)
     out = O / l; a row with no visible key gets zeros.
   While one kernel loop runs, the rows the next step reads (this tile's V, the next tile's
   K, the next item's Q) are prefetched. Items are (batch, kv head, head subgroup, query
   tile) with the query tiles interleaved first/last/second/second-to-last..., so any run
   of consecutive items carries about equal causal work; threads claim chunks of items
   (about 1/16 of their share) from an atomic counter, or without GCC/Clang atomics run
   the contiguous ranges nam__parallel_for hands them.
   Workspace per thread, no sq x sk buffer: (2 R dp + Bc R + Bc dp + 14 dp + 5 R) floats,
   plus Bc dp floats when K is converted (dp = d rounded up to 8 <= 256): at most 340 KiB
   per thread (436 KiB converting K), about half that at d = 128. nam__sgemm is not used: on
   hot 96 x 96 x 128 tiles it runs 5-10% slower than these kernels (it packs both operands
   on every call), it cannot fold the rescale by alpha into the product, and P V needs a
   different key range per 6-row block to keep masked keys out.
   The x86-64 build uses AVX2/FMA/F16C kernels (chosen at run time, GCC/Clang); other
   builds and CPUs, and NAM_NO_SIMD builds, run the same tiling with plain C loops. */

#ifndef NAM__ATTN_BR
#define NAM__ATTN_BR 96   /* query rows per tile: a multiple of 48 keeps both kernels full */
#endif
#ifndef NAM__ATTN_BC
#define NAM__ATTN_BC 96   /* keys per tile, a multiple of 6 */
#endif
#define NAM__ATTN_MAX_D 256

#ifndef NAM__ATTN_PREFETCH
#if defined(__GNUC__) || defined(__clang__)
#define NAM__ATTN_PREFETCH(p) __builtin_prefetch(p)
#else
#define NAM__ATTN_PREFETCH(p) ((void)(p))
#endif
#endif

typedef struct nam__attn_ctx {
    const nam_attention_desc *d;
    int64_t b, sq, sk, hq, hk, hd, dp;       /* hd: head dim; dp: hd rounded up to 8 */
    int64_t qs[NAM_MAX_DIMS], ks[NAM_MAX_DIMS], vs[NAM_MAX_DIMS], os[NAM_MAX_DIMS];
    int64_t off;                             /* causal: key j visible to row i iff j <= i + off */
    int causal, kdirect, simd;
    float scale2;                            /* scale * log2(e) */
    int64_t group, gt, nsub, bq, rmax, rp, nqt, items;
    int64_t next, chunk;                     /* dynamic schedule: next unclaimed item, claim size */
    char *ws;
    size_t per_thread;
} nam__attn_ctx;

static int64_t nam__attn_round(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* ---- per-thread workspace layout ---------------------------------------------------- */
typedef struct nam__attn_bufs {
    float *qt, *st, *o, *m, *l, *alpha, *ktail, *tmp, *kt, *vt;
    int64_t *vis;
} nam__attn_bufs;

/* Carves the buffers out of one thread's workspace; with base == NULL only sizes it. */
static size_t nam__attn_carve(const nam__attn_ctx *c, char *base, nam__attn_bufs *bf) {
    size_t rp = NAM__CAST(size_t, c->rp), dp = NAM__CAST(size_t, c->dp), bc = NAM__ATTN_BC, fl = sizeof(float);
    size_t sizes[10], total = 0;
    void *ptr[10];
    int i;
    sizes[0] = fl * dp * rp;                  /* qt: Q^T of the tile, scaled */
    sizes[1] = fl * bc * rp;                  /* st: S^T, then P^T */
    sizes[2] = fl * rp * dp;                  /* o: unnormalised output rows */
    sizes[3] = sizes[4] = sizes[5] = fl * rp; /* m, l, alpha */
    sizes[6] = sizeof(int64_t) * rp;          /* vis: keys each row sees */
    sizes[7] = fl * (6 + 8) * dp;             /* ktail (6 rows), tmp (8 rows) */
    sizes[8] = c->kdirect ? 0 : fl * bc * dp; /* kt: K tile converted to f32 rows */
    sizes[9] = fl * bc * dp;                  /* vt: V tile as 16-wide column panels */
    for (i = 0; i < 10; i++) {
        ptr[i] = base ? NAM__CAST(void *, base + total) : NULL;
        total += nam__ws_need(sizes[i]);
    }
    if (bf) {
        bf->qt = NAM__CAST(float *, ptr[0]);
        bf->st = NAM__CAST(float *, ptr[1]);
        bf->o = NAM__CAST(float *, ptr[2]);
        bf->m = NAM__CAST(float *, ptr[3]);
        bf->l = NAM__CAST(float *, ptr[4]);
        bf->alpha = NAM__CAST(float *, ptr[5]);
        bf->vis = NAM__CAST(int64_t *, ptr[6]);
        bf->ktail = NAM__CAST(float *, ptr[7]);
        bf->tmp = bf->ktail + 6 * dp;
        bf->kt = c->kdirect ? NULL : NAM__CAST(float *, ptr[8]);
        bf->vt = NAM__CAST(float *, ptr[9]);
    }
    return total;
}

/* ---- validation ----------------------------------------------------------------------- */
static nam_status nam__attn_numel(const nam_tensor *t, const char *field, nam_error *err) {
    int64_t n = 1, lim = INT64_C(1) << 48;
    int i;
    for (i = 0; i < t->ndim; i++) {
        if (t->shape[i] > lim / n)
            return nam__err(err, NAM_ERR_LIMIT, "%s: more than 2^48 elements", field);
        n *= t->shape[i];
    }
    return NAM_OK;
}

static nam_status nam__attn_check(const nam_attention_desc *d, nam_backend *ran, nam_error *err) {
    nam_status st;
    int64_t hq, hk, hd;
    if (!d) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_attention: desc is NULL");
    if ((st = nam__tensor_basic(&d->q, "q", 4, "b,sq,hq,d", 0, err)) != NAM_OK) return st;
    if ((st = nam__tensor_basic(&d->k, "k", 4, "b,sk,hk,d", 0, err)) != NAM_OK) return st;
    if ((st = nam__tensor_basic(&d->v, "v", 4, "b,sk,hk,d", 0, err)) != NAM_OK) return st;
    if ((st = nam__tensor_basic(&d->out, "out", 4, "b,sq,hq,d", 0, err)) != NAM_OK) return st;
    if ((st = nam__attn_numel(&d->q, "q", err)) != NAM_OK) return st;
    if ((st = nam__attn_numel(&d->k, "k", err)) != NAM_OK) return st;
    hq = d->q.shape[2];
    hk = d->k.shape[2];
    hd = d->q.shape[3];
    if ((st = nam__tensor_dim(&d->k, "k", 0, "b", d->q.shape[0], "q.shape[0]", err)) != NAM_OK) return st;
    if ((st = nam__tensor_dim(&d->k, "k", 3, "d", hd, "q.shape[3]", err)) != NAM_OK) return st;
    if ((st = nam__tensor_dim(&d->v, "v", 0, "b", d->q.shape[0], "q.shape[0]", err)) != NAM_OK) return st;
    if ((st = nam__tensor_dim(&d->v, "v", 1, "sk", d->k.shape[1], "k.shape[1]", err)) != NAM_OK) return st;
    if ((st = nam__tensor_dim(&d->v, "v", 2, "hk", hk, "k.shape[2]", err)) != NAM_OK) return st;
    if ((st = nam__tensor_dim(&d->v, "v", 3, "d", hd, "q.shape[3]", err)) != NAM_OK) return st;
    if ((st = nam__tensor_dim(&d->out, "out", 0, "b", d->q.shape[0], "q.shape[0]", err)) != NAM_OK) return st;
    if ((st = nam__tensor_dim(&d->out, "out", 1, "sq", d->q.shape[1], "q.shape[1]", err)) != NAM_OK) return st;
    if ((st = nam__tensor_dim(&d->out, "out", 2, "hq", hq, "q.shape[2]", err)) != NAM_OK) return st;
    if ((st = nam__tensor_dim(&d->out, "out", 3, "d", hd, "q.shape[3]", err)) != NAM_OK) return st;
    if (hq % hk != 0)
        return nam__err(err, NAM_ERR_INVALID_ARG, "q.shape[2] (hq) = %lld is not a multiple of k.shape[2] (hk) = %lld (GQA needs hq %% hk == 0)",
                        NAM__CAST(long long, hq), NAM__CAST(long long, hk));
    if (hd > NAM__ATTN_MAX_D)
        return nam__err(err, NAM_ERR_RANGE, "q.shape[3] (d) = %lld exceeds the largest supported head dim %d", NAM__CAST(long long, hd), NAM__ATTN_MAX_D);
    if (d->causal && d->align != NAM_CAUSAL_BOTTOM_RIGHT && d->align != NAM_CAUSAL_TOP_LEFT)
        return nam__err(err, NAM_ERR_INVALID_ARG, "align = %d is not a nam_causal_align (0 bottom-right, 1 top-left)", NAM__CAST(int, d->align));
    if (d->scale - d->scale != 0.0f)
        return nam__err(err, NAM_ERR_INVALID_ARG, "scale = %g is not finite (0 means 1/sqrt(d))", NAM__CAST(double, d->scale));
    {
        const nam_tensor *ts[4];
        static const char *const nm[4] = {"q", "k", "v", "out"};
        ts[0] = &d->q; ts[1] = &d->k; ts[2] = &d->v; ts[3] = &d->out;
        if ((st = nam__same_device(4, ts, nm, err)) != NAM_OK) return st;
    }
    return nam_query_backend(d->backend, d->q.device, ran, err);
}

/* nam__attention_desc_defaults: validate *d, then *r = *d with every default resolved, the
   one place they are (nam_attention, its workspace query and the CUDA hook read *r):
     backend  AUTO -> the backend that runs
     threads  nam__desc_threads
     scale    0 -> 1/sqrt(d), rounded once to float (what every backend multiplies by) */
static nam_status nam__attention_desc_defaults(const nam_attention_desc *d, nam_attention_desc *r, nam_error *err) {
    nam_backend be;
    nam_status st;
    if ((st = nam__attn_check(d, &be, err)) != NAM_OK) return st;
    *r = *d;
    r->backend = be;
    r->threads = nam__desc_threads(be, d->threads);
    if (r->scale == 0.0f) r->scale = NAM__CAST(float, 1.0 / sqrt(NAM__CAST(double, d->q.shape[3])));
    return NAM_OK;
}

static int nam__attn_have_simd(void) { return nam__cpu_avx2_fma() && nam__cpu_f16c(); }

static void nam__attn_setup(const nam_attention_desc *d, nam__attn_ctx *c) {
    int64_t g;
    memset(c, 0, sizeof *c);
    c->d = d;
    c->b = d->q.shape[0];
    c->sq = d->q.shape[1];
    c->hq = d->q.shape[2];
    c->sk = d->k.shape[1];
    c->hk = d->k.shape[2];
    c->hd = d->q.shape[3];
    c->dp = nam__attn_round(c->hd, 8);
    nam__tensor_strides(&d->q, c->qs);
    nam__tensor_strides(&d->k, c->ks);
    nam__tensor_strides(&d->v, c->vs);
    nam__tensor_strides(&d->out, c->os);
    c->causal = d->causal != 0;
    c->off = c->causal && d->align == NAM_CAUSAL_BOTTOM_RIGHT ? c->sk - c->sq : 0;
    c->scale2 = NAM__CAST(float, NAM__CAST(double, d->scale) * 1.4426950408889634);   /* d resolved: scale != 0 */
    c->kdirect = d->k.dtype == NAM_F32 && c->ks[3] == 1 && c->hd % 8 == 0;
    c->group = c->hq / c->hk;
    for (g = c->group < NAM__ATTN_BR ? c->group : NAM__ATTN_BR; g > 1; g--)
        if (c->group % g == 0) break;
    c->gt = g;
    c->nsub = c->group / g;
    c->bq = NAM__ATTN_BR / g;
    if (c->bq > c->sq) c->bq = c->sq;
    c->rmax = c->bq * c->gt;
    c->rp = nam__attn_round(nam__attn_round(c->rmax, 6), 16);
    c->nqt = (c->sq + c->bq - 1) / c->bq;
    c->items = c->b * c->hk * c->nsub * c->nqt;
    c->per_thread = nam__attn_carve(c, NULL, NULL);
    c->simd = nam__attn_have_simd();
}

/* ---- AVX2 kernels ----------------------------------------------------------------------- */
#if NAM__X86_SIMD
/* 2^x for x <= 0 (or NaN): 0 below -126, NaN stays NaN. Cephes exp2f polynomial on [-0.5, 0.5]. */
NAM__TARGET_AVX2_F16C static __m256 nam__attn_exp2_avx2(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-126.0f), hi = _mm256_set1_ps(126.0f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ), n, f, p;
    __m256i e;
    x = _mm256_max_ps(lo, x);   /* NaN in the second operand passes through */
    x = _mm256_min_ps(hi, x);
    n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    f = _mm256_sub_ps(x, n);
    p = _mm256_set1_ps(1.535336188319500e-4f);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.339887440266574e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.618437357674640e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.550332471162809e-2f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.402264791363012e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.931472028550421e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    p = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    return _mm256_andnot_ps(under, p);
}

/* st[r][0..16) for 6 key rows r: sum_c k[r][c] * qt[c][0..16). */
NAM__TARGET_AVX2_F16C static void nam__attn_qk_6x16(const float *k, int64_t ldk, const float *qt, int64_t ldq, int64_t dp, float *st, int64_t lds) {
    const float *k0 = k, *k1 = k + ldk, *k2 = k + 2 * ldk, *k3 = k + 3 * ldk, *k4 = k + 4 * ldk, *k5 = k + 5 * ldk;
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00;
    __m256 a30 = a00, a31 = a00, a40 = a00, a41 = a00, a50 = a00, a51 = a00;
    int64_t c;
    for (c = 0; c < dp; c++) {
        const float *q = qt + c * ldq;
        __m256 q0 = _mm256_load_ps(q), q1 = _mm256_load_ps(q + 8), x;
        x = _mm256_broadcast_ss(k0 + c); a00 = _mm256_fmadd_ps(x, q0, a00); a01 = _mm256_fmadd_ps(x, q1, a01);
        x = _mm256_broadcast_ss(k1 + c); a10 = _mm256_fmadd_ps(x, q0, a10); a11 = _mm256_fmadd_ps(x, q1, a11);
        x = _mm256_broadcast_ss(k2 + c); a20 = _mm256_fmadd_ps(x, q0, a20); a21 = _mm256_fmadd_ps(x, q1, a21);
        x = _mm256_broadcast_ss(k3 + c); a30 = _mm256_fmadd_ps(x, q0, a30); a31 = _mm256_fmadd_ps(x, q1, a31);
        x = _mm256_broadcast_ss(k4 + c); a40 = _mm256_fmadd_ps(x, q0, a40); a41 = _mm256_fmadd_ps(x, q1, a41);
        x = _mm256_broadcast_ss(k5 + c); a50 = _mm256_fmadd_ps(x, q0, a50); a51 = _mm256_fmadd_ps(x, q1, a51);
    }
    _mm256_store_ps(st, a00); _mm256_store_ps(st + 8, a01); st += lds;
    _mm256_store_ps(st, a10); _mm256_store_ps(st + 8, a11); st += lds;
    _mm256_store_ps(st, a20); _mm256_store_ps(st + 8, a21); st += lds;
    _mm256_store_ps(st, a30); _mm256_store_ps(st + 8, a31); st += lds;
    _mm256_store_ps(st, a40); _mm256_store_ps(st + 8, a41); st += lds;
    _mm256_store_ps(st, a50); _mm256_store_ps(st + 8, a51);
}

/* o[r][0..8w) = alpha[r] o[r] + sum_{j < jn} pt[j][r] v[j][0..8w) for 6 rows r, w = 1 or 2. */
NAM__TARGET_AVX2_F16C static void nam__attn_pv_6x16(const float *pt, int64_t ldp, const float *v, int64_t ldv, int64_t jn,
                                               const float *alpha, float *o, int64_t ldo) {
    __m256 x, o00, o01, o10, o11, o20, o21, o30, o31, o40, o41, o50, o51;
    int64_t j;
    x = _mm256_broadcast_ss(alpha + 0); o00 = _mm256_mul_ps(x, _mm256_load_ps(o)); o01 = _mm256_mul_ps(x, _mm256_load_ps(o + 8));
    x = _mm256_broadcast_ss(alpha + 1); o10 = _mm256_mul_ps(x, _mm256_load_ps(o + ldo)); o11 = _mm256_mul_ps(x, _mm256_load_ps(o + ldo + 8));
    x = _mm256_broadcast_ss(alpha + 2); o20 = _mm256_mul_ps(x, _mm256_load_ps(o + 2 * ldo)); o21 = _mm256_mul_ps(x, _mm256_load_ps(o + 2 * ldo + 8));
    x = _mm256_broadcast_ss(alpha + 3); o30 = _mm256_mul_ps(x, _mm256_load_ps(o + 3 * ldo)); o31 = _mm256_mul_ps(x, _mm256_load_ps(o + 3 * ldo + 8));
    x = _mm256_broadcast_ss(alpha + 4); o40 = _mm256_mul_ps(x, _mm256_load_ps(o + 4 * ldo)); o41 = _mm256_mul_ps(x, _mm256_load_ps(o + 4 * ldo + 8));
    x = _mm256_broadcast_ss(alpha + 5); o50 = _mm256_mul_ps(x, _mm256_load_ps(o + 5 * ldo)); o51 = _mm256_mul_ps(x, _mm256_load_ps(o + 5 * ldo + 8));
    for (j = 0; j < jn; j++) {
        const float *p = pt + j * ldp, *vr = v + j * ldv;
        __m256 v0 = _mm256_loadu_ps(vr), v1 = _mm256_loadu_ps(vr + 8);
        x = _mm256_broadcast_ss(p + 0); o00 = _mm256_fmadd_ps(x, v0, o00); o01 = _mm256_fmadd_ps(x, v1, o01);
        x = _mm256_broadcast_ss(p + 1); o10 = _mm256_fmadd_ps(x, v0, o10); o11 = _mm256_fmadd_ps(x, v1, o11);
        x = _mm256_broadcast_ss(p + 2); o20 = _mm256_fmadd_ps(x, v0, o20); o21 = _mm256_fmadd_ps(x, v1, o21);
        x = _mm256_broadcast_ss(p + 3); o30 = _mm256_fmadd_ps(x, v0, o30); o31 = _mm256_fmadd_ps(x, v1, o31);
        x = _mm256_broadcast_ss(p + 4); o40 = _mm256_fmadd_ps(x, v0, o40); o41 = _mm256_fmadd_ps(x, v1, o41);
        x = _mm256_broadcast_ss(p + 5); o50 = _mm256_fmadd_ps(x, v0, o50); o51 = _mm256_fmadd_ps(x, v1, o51);
    }
    _mm256_store_ps(o, o00); _mm256_store_ps(o + 8, o01); o += ldo;
    _mm256_store_ps(o, o10); _mm256_store_ps(o + 8, o11); o += ldo;
    _mm256_store_ps(o, o20); _mm256_store_ps(o + 8, o21); o += ldo;
    _mm256_store_ps(o, o30); _mm256_store_ps(o + 8, o31); o += ldo;
    _mm256_store_ps(o, o40); _mm256_store_ps(o + 8, o41); o += ldo;
    _mm256_store_ps(o, o50); _mm256_store_ps(o + 8, o51);
}

NAM__TARGET_AVX2_F16C static void nam__attn_pv_6x8(const float *pt, int64_t ldp, const float *v, int64_t ldv, int64_t jn,
                                              const float *alpha, float *o, int64_t ldo) {
    __m256 x, o0, o1, o2, o3, o4, o5;
    int64_t j;
    o0 = _mm256_mul_ps(_mm256_broadcast_ss(alpha + 0), _mm256_load_ps(o));
    o1 = _mm256_mul_ps(_mm256_broadcast_ss(alpha + 1), _mm256_load_ps(o + ldo));
    o2 = _mm256_mul_ps(_mm256_broadcast_ss(alpha + 2), _mm256_load_ps(o + 2 * ldo));
    o3 = _mm256_mul_ps(_mm256_broadcast_ss(alpha + 3), _mm256_load_ps(o + 3 * ldo));
    o4 = _mm256_mul_ps(_mm256_broadcast_ss(alpha + 4), _mm256_load_ps(o + 4 * ldo));
    o5 = _mm256_mul_ps(_mm256_broadcast_ss(alpha + 5), _mm256_load_ps(o + 5 * ldo));
    for (j = 0; j < jn; j++) {
        const float *p = pt + j * ldp;
        __m256 v0 = _mm256_loadu_ps(v + j * ldv);
        x = _mm256_broadcast_ss(p + 0); o0 = _mm256_fmadd_ps(x, v0, o0);
        x = _mm256_broadcast_ss(p + 1); o1 = _mm256_fmadd_ps(x, v0, o1);
        x = _mm256_broadcast_ss(p + 2); o2 = _mm256_fmadd_ps(x, v0, o2);
        x = _mm256_broadcast_ss(p + 3); o3 = _mm256_fmadd_ps(x, v0, o3);
        x = _mm256_broadcast_ss(p + 4); o4 = _mm256_fmadd_ps(x, v0, o4);
        x = _mm256_broadcast_ss(p + 5); o5 = _mm256_fmadd_ps(x, v0, o5);
    }
    _mm256_store_ps(o, o0); _mm256_store_ps(o + ldo, o1); _mm256_store_ps(o + 2 * ldo, o2);
    _mm256_store_ps(o + 3 * ldo, o3); _mm256_store_ps(o + 4 * ldo, o4); _mm256_store_ps(o + 5 * ldo, o5);
}

/* Online softmax over the key rows j < jn of st (rows x rp, in place -> P), all rp lanes. */
NAM__TARGET_AVX2_F16C static void nam__attn_softmax_avx2(float *st, int64_t lds, int64_t jn, int64_t rp, float *m, float *l, float *alpha) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY), zero = _mm256_setzero_ps();
    int64_t r, j;
    for (r = 0; r < rp; r += 16) {
        __m256 mo0 = _mm256_load_ps(m + r), mo1 = _mm256_load_ps(m + r + 8), mx0 = mo0, mx1 = mo1, mu0, mu1, s0, s1;
        __m256 sum0 = zero, sum1 = zero, al0, al1;
        for (j = 0; j < jn; j++) {
            mx0 = _mm256_max_ps(mx0, _mm256_load_ps(st + j * lds + r));
            mx1 = _mm256_max_ps(mx1, _mm256_load_ps(st + j * lds + r + 8));
        }
        mu0 = _mm256_blendv_ps(mx0, zero, _mm256_cmp_ps(mx0, ninf, _CMP_EQ_OQ));   /* nothing seen yet: subtract 0 */
        mu1 = _mm256_blendv_ps(mx1, zero, _mm256_cmp_ps(mx1, ninf, _CMP_EQ_OQ));
        al0 = nam__attn_exp2_avx2(_mm256_sub_ps(mo0, mu0));
        al1 = nam__attn_exp2_avx2(_mm256_sub_ps(mo1, mu1));
        for (j = 0; j < jn; j++) {
            float *p = st + j * lds + r;
            s0 = nam__attn_exp2_avx2(_mm256_sub_ps(_mm256_load_ps(p), mu0));
            s1 = nam__attn_exp2_avx2(_mm256_sub_ps(_mm256_load_ps(p + 8), mu1));
            _mm256_store_ps(p, s0);
            _mm256_store_ps(p + 8, s1);
            sum0 = _mm256_add_ps(sum0, s0);
            sum1 = _mm256_add_ps(sum1, s1);
        }
        _mm256_store_ps(l + r, _mm256_fmadd_ps(_mm256_load_ps(l + r), al0, sum0));
        _mm256_store_ps(l + r + 8, _mm256_fmadd_ps(_mm256_load_ps(l + r + 8), al1, sum1));
        _mm256_store_ps(m + r, mx0);
        _mm256_store_ps(m + r + 8, mx1);
        _mm256_store_ps(alpha + r, al0);
        _mm256_store_ps(alpha + r + 8, al1);
    }
}

/* n contiguous elements of dtype dt at src -> f32 (f16 via F16C, bf16 by shifting). */
NAM__TARGET_AVX2_F16C static void nam__attn_cvt_avx2(const void *src, nam_dtype dt, int64_t n, float *dst) {
    int64_t i = 0;
    const uint16_t *h = NAM__CAST(const uint16_t *, src);
    if (dt == NAM_F16)
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(NAM__CAST(const __m128i *, NAM__CAST(const void *, h + i)))));
    else if (dt == NAM_BF16)
        for (; i + 8 <= n; i += 8) {
            __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(NAM__CAST(const __m128i *, NAM__CAST(const void *, h + i))));
            _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
        }
    for (; i < n; i++) dst[i] = nam__load(src, dt, i);
}

/* qt[e * ldq + x] = src[x][e] * scale for 8 rows x, e < dp (dp % 8 == 0): 8 x 8 transposes. */
NAM__TARGET_AVX2_F16C static void nam__attn_qpack8_avx2(const float *const *src, int64_t dp, float scale, float *qt, int64_t ldq) {
    const __m256 sc = _mm256_set1_ps(scale);
    int64_t e;
    for (e = 0; e < dp; e += 8) {
        __m256 r0 = _mm256_loadu_ps(src[0] + e), r1 = _mm256_loadu_ps(src[1] + e), r2 = _mm256_loadu_ps(src[2] + e), r3 = _mm256_loadu_ps(src[3] + e);
        __m256 r4 = _mm256_loadu_ps(src[4] + e), r5 = _mm256_loadu_ps(src[5] + e), r6 = _mm256_loadu_ps(src[6] + e), r7 = _mm256_loadu_ps(src[7] + e);
        __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
        __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5), t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
        __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE), u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
        __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE), u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
        float *q = qt + e * ldq;
        _mm256_store_ps(q + 0 * ldq, _mm256_mul_ps(sc, _mm256_permute2f128_ps(u0, u4, 0x20)));
        _mm256_store_ps(q + 1 * ldq, _mm256_mul_ps(sc, _mm256_permute2f128_ps(u1, u5, 0x20)));
        _mm256_store_ps(q + 2 * ldq, _mm256_mul_ps(sc, _mm256_permute2f128_ps(u2, u6, 0x20)));
        _mm256_store_ps(q + 3 * ldq, _mm256_mul_ps(sc, _mm256_permute2f128_ps(u3, u7, 0x20)));
        _mm256_store_ps(q + 4 * ldq, _mm256_mul_ps(sc, _mm256_permute2f128_ps(u0, u4, 0x31)));
        _mm256_store_ps(q + 5 * ldq, _mm256_mul_ps(sc, _mm256_permute2f128_ps(u1, u5, 0x31)));
        _mm256_store_ps(q + 6 * ldq, _mm256_mul_ps(sc, _mm256_permute2f128_ps(u2, u6, 0x31)));
        _mm256_store_ps(q + 7 * ldq, _mm256_mul_ps(sc, _mm256_permute2f128_ps(u3, u7, 0x31)));
    }
}
#endif /* NAM__X86_SIMD */

/* ---- portable kernels (same contracts as the AVX2 ones) -------------------------------- */
static void nam__attn_qk_c(const float *k, int64_t ldk, int64_t nk, const float *qt, int64_t ldq, int64_t dp, int64_t rp, float *st, int64_t lds) {
    int64_t j, r, c;
    for (j = 0; j < nk; j++) {
        float *s = st + j * lds;
        for (r = 0; r < rp; r++) s[r] = 0.0f;
        for (c = 0; c < dp; c++) {
            float kc = k[j * ldk + c];
            const float *q = qt + c * ldq;
            for (r = 0; r < rp; r++) s[r] += kc * q[r];
        }
    }
}

static void nam__attn_softmax_c(float *st, int64_t lds, int64_t jn, int64_t rp, float *m, float *l, float *alpha) {
    int64_t r, j;
    for (r = 0; r < rp; r++) {
        float mx = m[r], mu, sum = 0.0f;
        for (j = 0; j < jn; j++) {
            float s = st[j * lds + r];
            if (s > mx || s != s) mx = s;
        }
        mu = mx == -INFINITY ? 0.0f : mx;
        alpha[r] = exp2f(m[r] - mu);
        for (j = 0; j < jn; j++) {
            float p = exp2f(st[j * lds + r] - mu);
            st[j * lds + r] = p;
            sum += p;
        }
        l[r] = l[r] * alpha[r] + sum;
        m[r] = mx;
    }
}

/* ---- one work item ------------------------------------------------------------------------ */
static const void *nam__attn_ptr(const void *base, nam_dtype dt, int64_t off) {
    return NAM__CAST(const void *, NAM__CAST(const char *, base) + off * (dt == NAM_F32 ? 4 : 2));
}

/* Element `off` of t as the start of an f32 row of hd values: in place when t is f32 with
   unit stride along d and hd % 8 == 0, else converted into tmp (zero padded to dp). */
static const float *nam__attn_row(const nam__attn_ctx *c, const nam_tensor *t, int64_t est, int64_t off, float *tmp) {
    int64_t e;
    if (t->dtype == NAM_F32 && est == 1) {
        if (c->hd == c->dp) return NAM__CAST(const float *, t->data) + off;
        memcpy(tmp, NAM__CAST(const float *, t->data) + off, sizeof(float) * NAM__CAST(size_t, c->hd));
    } else
#if NAM__X86_SIMD
    if (c->simd && est == 1) nam__attn_cvt_avx2(nam__attn_ptr(t->data, t->dtype, off), t->dtype, c->hd, tmp);
    else
#endif
        for (e = 0; e < c->hd; e++) tmp[e] = nam__load(t->data, t->dtype, off + e * est);
    for (e = c->hd; e < c->dp; e++) tmp[e] = 0.0f;
    return tmp;
}

/* V rows j0..j0+n of one (batch, kv head) into column panels: panel p (16 columns, the last
   one 8 when dp % 16 == 8) holds row j at vt + p * 16 * BC + j * width. */
static void nam__attn_pack_v(const nam__attn_ctx *c, int64_t base, int64_t j0, int64_t n, float *vt, float *tmp) {
    int64_t j, p;
    for (j = 0; j < n; j++) {
        const float *src = nam__attn_row(c, &c->d->v, c->vs[3], base + (j0 + j) * c->vs[1], tmp);
        for (p = 0; p * 16 + 16 <= c->dp; p++) memcpy(vt + p * 16 * NAM__ATTN_BC + j * 16, src + p * 16, 16 * sizeof(float));
        if (p * 16 < c->dp) memcpy(vt + p * 16 * NAM__ATTN_BC + j * 8, src + p * 16, 8 * sizeof(float));
    }
}

/* Where one work item's rows live. */
typedef struct nam__attn_geom {
    int64_t bi, kvh, h0, i0, rows, kbase, vbase, kend;
} nam__attn_geom;

static void nam__attn_geometry(const nam__attn_ctx *c, int64_t item, nam__attn_geom *g) {
    int64_t t = item % c->nqt, rest = item / c->nqt, sub, qt, nb, last;
    sub = rest % c->nsub;
    rest /= c->nsub;
    g->kvh = rest % c->hk;
    g->bi = rest / c->hk;
    qt = (t & 1) ? c->nqt - 1 - t / 2 : t / 2;      /* interleave cheap and expensive causal tiles */
    g->h0 = g->kvh * c->group + sub * c->gt;
    g->i0 = qt * c->bq;
    nb = c->sq - g->i0 < c->bq ? c->sq - g->i0 : c->bq;
    g->rows = nb * c->gt;
    g->kbase = g->bi * c->ks[0] + g->kvh * c->ks[2];
    g->vbase = g->bi * c->vs[0] + g->kvh * c->vs[2];
    g->kend = c->sk;
    if (c->causal) {
        last = g->i0 + nb - 1 + c->off + 1;
        g->kend = last < 0 ? 0 : last > c->sk ? c->sk : last;
    }
}

/* Rows to prefetch while a kernel loop runs, spread over its calls: row x of a job starts
   at element base + (x / per) * s1 + (x % per) * s2 of t (unit stride along d only). */
typedef struct nam__attn_pf {
    const nam_tensor *t;
    int64_t base, s1, s2, per, n;
} nam__attn_pf;
typedef struct nam__attn_pfs {
    nam__attn_pf job[2];
    int cur;
    int64_t x, done, total, calls;
} nam__attn_pfs;

/* Adds a job (at most two per loop); est is t's stride along d (no prefetch unless 1). */
static void nam__attn_pf_job(nam__attn_pfs *s, const nam_tensor *t, int64_t est, int64_t base, int64_t s1, int64_t s2, int64_t per, int64_t n) {
    nam__attn_pf *j = &s->job[s->job[0].n > 0 ? 1 : 0];
    j->t = t;
    j->base = base;
    j->s1 = s1;
    j->s2 = s2;
    j->per = per;
    j->n = est == 1 && n > 0 ? n : 0;
    s->total += j->n;
}

static void nam__attn_pf_step(const nam__attn_ctx *c, nam__attn_pfs *s, int64_t call) {
    while (s->done < s->total && s->done * s->calls < call * s->total) {
        const nam__attn_pf *j;
        const char *p;
        int64_t b, bytes;
        while (s->x >= s->job[s->cur].n) { s->x = 0; s->cur++; }
        j = &s->job[s->cur];
        p = NAM__CAST(const char *, nam__attn_ptr(j->t->data, j->t->dtype, j->base + (s->x / j->per) * j->s1 + (s->x % j->per) * j->s2));
        bytes = c->hd * (j->t->dtype == NAM_F32 ? 4 : 2);
        for (b = 0; b < bytes; b += 64) NAM__ATTN_PREFETCH(p + b);
        s->x++;
        s->done++;
    }
}

static void nam__attn_pf_init(nam__attn_pfs *s, int64_t calls) {
    memset(s, 0, sizeof *s);
    s->calls = calls > 0 ? calls : 1;
}

/* o[0..dp) += sum_{j in [j1, j2)} pt[j * ldp] * V[j] over the panels (scalar). */
static void nam__attn_pv_row_c(const float *pt, int64_t ldp, const float *vt, int64_t dp, int64_t j1, int64_t j2, float *o) {
    int64_t j, p, e;
    for (p = 0; p * 16 < dp; p++) {
        int64_t w = dp - p * 16 < 16 ? 8 : 16;
        const float *panel = vt + p * 16 * NAM__ATTN_BC;
        float *op = o + p * 16;
        for (j = j1; j < j2; j++) {
            float pj = pt[j * ldp];
            const float *vr = panel + j * w;
            for (e = 0; e < w; e++) op[e] += pj * vr[e];
        }
    }
}

static void nam__attn_item(const nam__attn_ctx *c, int64_t item, const nam__attn_bufs *bf) {
    const nam_attention_desc *d = c->d;
    nam__attn_geom g, gn;
    int64_t bi, h0, i0, rows, rp, r, e, j0, kend, dp = c->dp, hd = c->hd, kbase, vbase;
    float *qtb = bf->qt, *st = bf->st, *o = bf->o;
    nam__attn_geometry(c, item, &g);
    bi = g.bi;
    h0 = g.h0;
    i0 = g.i0;
    rows = g.rows;
    kbase = g.kbase;
    vbase = g.vbase;
    rp = nam__attn_round(nam__attn_round(rows, 6), 16);
    if (item + 1 < c->items) nam__attn_geometry(c, item + 1, &gn);
    else gn.rows = gn.kend = 0;

    /* visible keys per row (monotone in r; padding rows copy the last row) */
    for (r = 0; r < rp; r++) {
        int64_t pos = i0 + (r < rows ? r : rows - 1) / c->gt, n = c->sk;
        if (c->causal) {
            n = pos + c->off + 1;
            n = n < 0 ? 0 : n > c->sk ? c->sk : n;
        }
        bf->vis[r] = n;
        bf->m[r] = -INFINITY;
        bf->l[r] = 0.0f;
    }
    kend = bf->vis[rows - 1];   /* == g.kend */

    /* Qt (dp x rp), scaled into base-2 logits; zero padding. 8 rows at a time, so each
       cache line of Qt is written in one visit. */
    memset(qtb, 0, sizeof(float) * NAM__CAST(size_t, dp * rp));
    for (r = 0; r < rows; r += 8) {
        const float *src[8];
        int64_t n = rows - r < 8 ? rows - r : 8, x;
        for (x = 0; x < n; x++)
            src[x] = nam__attn_row(c, &d->q, c->qs[3], bi * c->qs[0] + (i0 + (r + x) / c->gt) * c->qs[1] + (h0 + (r + x) % c->gt) * c->qs[2], bf->tmp + x * dp);
#if NAM__X86_SIMD
        if (c->simd && n == 8) { nam__attn_qpack8_avx2(src, dp, c->scale2, qtb + r, rp); continue; }
#endif
        for (e = 0; e < hd; e++)
            for (x = 0; x < n; x++) qtb[e * rp + r + x] = src[x][e] * c->scale2;
    }
    memset(o, 0, sizeof(float) * NAM__CAST(size_t, rp * dp));

    for (j0 = 0; j0 < kend; j0 += NAM__ATTN_BC) {
        int64_t jn = kend - j0 < NAM__ATTN_BC ? kend - j0 : NAM__ATTN_BC, ldk, j, rb, call = 0;
        const float *kt;
        nam__attn_pfs pfs;
        if (c->kdirect) {
            kt = NAM__CAST(const float *, d->k.data) + kbase + j0 * c->ks[1];
            ldk = c->ks[1];
        } else {
            for (j = 0; j < jn; j++) {
                const float *src = nam__attn_row(c, &d->k, c->ks[3], kbase + (j0 + j) * c->ks[1], bf->kt + j * dp);
                if (src != bf->kt + j * dp) memcpy(bf->kt + j * dp, src, sizeof(float) * NAM__CAST(size_t, dp));
            }
            kt = bf->kt;
            ldk = dp;
        }

        /* S^T = K Qt, prefetching this tile's V rows meanwhile */
        nam__attn_pf_init(&pfs, rp / 16 * (jn / 6));
        nam__attn_pf_job(&pfs, &d->v, c->vs[3], vbase + j0 * c->vs[1], c->vs[1], 0, 1, jn);
#if NAM__X86_SIMD
        if (c->simd) {
            for (rb = 0; rb < rp; rb += 16) {
                for (j = 0; j + 6 <= jn; j += 6) {
                    nam__attn_qk_6x16(kt + j * ldk, ldk, qtb + rb, rp, dp, st + j * rp + rb, rp);
                    nam__attn_pf_step(c, &pfs, ++call);
                }
                if (j < jn) {
                    int64_t n = jn - j;
                    for (e = 0; e < 6; e++) {
                        if (e < n) memcpy(bf->ktail + e * dp, kt + (j + e) * ldk, sizeof(float) * NAM__CAST(size_t, dp));
                        else memset(bf->ktail + e * dp, 0, sizeof(float) * NAM__CAST(size_t, dp));
                    }
                    nam__attn_qk_6x16(bf->ktail, dp, qtb + rb, rp, dp, st + j * rp + rb, rp);
                }
            }
        } else
#endif
        {
            nam__attn_qk_c(kt, ldk, jn, qtb, rp, dp, rp, st, rp);
            nam__attn_pf_step(c, &pfs, pfs.calls);
        }
        nam__attn_pack_v(c, vbase, j0, jn, bf->vt, bf->tmp);

        /* causal mask on tiles that cross the diagonal: row r sees keys < vis[r] */
        if (c->causal && j0 + jn > bf->vis[0])
            for (j = 0; j < jn; j++)
                for (r = 0; r < rp && bf->vis[r] <= j0 + j; r++) st[j * rp + r] = -INFINITY;

#if NAM__X86_SIMD
        if (c->simd) nam__attn_softmax_avx2(st, rp, jn, rp, bf->m, bf->l, bf->alpha);
        else
#endif
            nam__attn_softmax_c(st, rp, jn, rp, bf->m, bf->l, bf->alpha);

        /* O = alpha O + P V: keys every row of a 6-row block sees in the kernel, the rest row
           by row. Meanwhile prefetch what comes next: the next tile's K rows, or after the
           last tile the next item's Q rows and first K tile. */
        nam__attn_pf_init(&pfs, (rows + 5) / 6);
        if (j0 + NAM__ATTN_BC < kend)
            nam__attn_pf_job(&pfs, &d->k, c->ks[3], kbase + (j0 + NAM__ATTN_BC) * c->ks[1], c->ks[1], 0, 1, kend - j0 - NAM__ATTN_BC < NAM__ATTN_BC ? kend - j0 - NAM__ATTN_BC : NAM__ATTN_BC);
        else if (gn.rows > 0) {
            nam__attn_pf_job(&pfs, &d->q, c->qs[3], gn.bi * c->qs[0] + gn.i0 * c->qs[1] + gn.h0 * c->qs[2], c->qs[1], c->qs[2], c->gt, gn.rows);
            nam__attn_pf_job(&pfs, &d->k, c->ks[3], gn.kbase, c->ks[1], 0, 1, gn.kend < NAM__ATTN_BC ? gn.kend : NAM__ATTN_BC);
        }
        call = 0;
        for (rb = 0; rb < rows; rb += 6) {
            int64_t jc = bf->vis[rb] - j0, rr;
            jc = jc < 0 ? 0 : jc > jn ? jn : jc;
#if NAM__X86_SIMD
            if (c->simd) {
                int64_t p;
                for (p = 0; p * 16 < dp; p++) {
                    const float *panel = bf->vt + p * 16 * NAM__ATTN_BC;
                    if (dp - p * 16 >= 16) nam__attn_pv_6x16(st + rb, rp, panel, 16, jc, bf->alpha + rb, o + rb * dp + p * 16, dp);
                    else nam__attn_pv_6x8(st + rb, rp, panel, 8, jc, bf->alpha + rb, o + rb * dp + p * 16, dp);
                }
            } else
#endif
            {
                for (rr = rb; rr < rb + 6; rr++) {
                    float a = bf->alpha[rr], *orow = o + rr * dp;
                    for (e = 0; e < dp; e++) orow[e] *= a;
                    nam__attn_pv_row_c(st + rr, rp, bf->vt, dp, 0, jc, orow);
                }
            }
            for (rr = rb; rr < rb + 6 && rr < rows; rr++) {
                int64_t je = bf->vis[rr] - j0;
                je = je > jn ? jn : je;
                if (je > jc) nam__attn_pv_row_c(st + rr, rp, bf->vt, dp, jc, je, o + rr * dp);
            }
            nam__attn_pf_step(c, &pfs, ++call);
        }
    }

    /* out = O / l; rows that see no key are 0 */
    for (r = 0; r < rows; r++) {
        int64_t row = bi * c->os[0] + (i0 + r / c->gt) * c->os[1] + (h0 + r % c->gt) * c->os[2];
        float inv = bf->vis[r] > 0 ? 1.0f / bf->l[r] : 0.0f, *orow = o + r * dp;
        if (bf->vis[r] == 0)
            for (e = 0; e < hd; e++) nam__store(d->out.data, d->out.dtype, row + e * c->os[3], 0.0f);
        else if (d->out.dtype == NAM_F32 && c->os[3] == 1) {
            float *dst = NAM__CAST(float *, d->out.data) + row;
            for (e = 0; e < hd; e++) dst[e] = orow[e] * inv;
        } else
            for (e = 0; e < hd; e++) nam__store(d->out.data, d->out.dtype, row + e * c->os[3], orow[e] * inv);
    }
}

/* One thread. With GCC/Clang atomics the threads claim chunks of consecutive items from a
   shared counter (a core slowed by other work does not hold the others up); otherwise each
   thread runs the contiguous range nam__parallel_for gives it. Every item writes only its
   own output rows, so the result does not depend on the schedule. */
static void nam__attn_task(void *ctx, int64_t begin, int64_t end, int thread) {
    nam__attn_ctx *c = NAM__CAST(nam__attn_ctx *, ctx);
    nam__attn_bufs bf;
    int64_t it;
    nam__attn_carve(c, c->ws + NAM__CAST(size_t, thread) * c->per_thread, &bf);
#if defined(__GNUC__) || defined(__clang__)
    (void)begin;
    (void)end;
    for (;;) {
        int64_t stop;
        it = __atomic_fetch_add(&c->next, c->chunk, __ATOMIC_RELAXED);
        if (it >= c->items) break;
        stop = it + c->chunk < c->items ? it + c->chunk : c->items;
        for (; it < stop; it++) nam__attn_item(c, it, &bf);
    }
#else
    for (it = begin; it < end; it++) nam__attn_item(c, it, &bf);
#endif
}

/* ---- reference ------------------------------------------------------------------------------ */
static void nam__attn_ref(const nam_attention_desc *d, char *ws) {
    int64_t qs[NAM_MAX_DIMS], ks[NAM_MAX_DIMS], vs[NAM_MAX_DIMS], os[NAM_MAX_DIMS];
    int64_t b = d->q.shape[0], sq = d->q.shape[1], hq = d->q.shape[2], hd = d->q.shape[3];
    int64_t sk = d->k.shape[1], hk = d->k.shape[2], group = hq / hk, off, bi, h, i, j, e;
    double scale = d->scale;   /* d resolved (nam__attention_desc_defaults) */
    char *cur = ws;
    double *s = NAM__CAST(double *, nam__ws_take(&cur, sizeof(double) * NAM__CAST(size_t, sk)));
    double *acc = NAM__CAST(double *, nam__ws_take(&cur, sizeof(double) * NAM__CAST(size_t, hd)));
    nam__tensor_strides(&d->q, qs);
    nam__tensor_strides(&d->k, ks);
    nam__tensor_strides(&d->v, vs);
    nam__tensor_strides(&d->out, os);
    off = d->causal && d->align == NAM_CAUSAL_BOTTOM_RIGHT ? sk - sq : 0;
    for (bi = 0; bi < b; bi++)
        for (h = 0; h < hq; h++)
            for (i = 0; i < sq; i++) {
                int64_t kvh = h / group, nv = sk, qrow = bi * qs[0] + i * qs[1] + h * qs[2], orow = bi * os[0] + i * os[1] + h * os[2];
                double m = -INFINITY, l = 0.0;
                if (d->causal) {
                    nv = i + off + 1;
                    nv = nv < 0 ? 0 : nv > sk ? sk : nv;
                }
                if (nv == 0) {
                    for (e = 0; e < hd; e++) nam__store(d->out.data, d->out.dtype, orow + e * os[3], 0.0f);
                    continue;
                }
                for (j = 0; j < nv; j++) {
                    int64_t krow = bi * ks[0] + j * ks[1] + kvh * ks[2];
                    double dot = 0.0;
                    for (e = 0; e < hd; e++)
                        dot += NAM__CAST(double, nam__load(d->q.data, d->q.dtype, qrow + e * qs[3])) * NAM__CAST(double, nam__load(d->k.data, d->k.dtype, krow + e * ks[3]));
                    s[j] = dot * scale;
                    if (s[j] > m) m = s[j];
                }
                for (e = 0; e < hd; e++) acc[e] = 0.0;
                for (j = 0; j < nv; j++) {
                    int64_t vrow = bi * vs[0] + j * vs[1] + kvh * vs[2];
                    double p = exp(s[j] - m);
                    l += p;
                    for (e = 0; e < hd; e++) acc[e] += p * NAM__CAST(double, nam__load(d->v.data, d->v.dtype, vrow + e * vs[3]));
                }
                for (e = 0; e < hd; e++) nam__store(d->out.data, d->out.dtype, orow + e * os[3], NAM__CAST(float, acc[e] / l));
            }
}

/* ---- public ---------------------------------------------------------------------------------- */
/* d resolved (nam__attention_desc_defaults) */
static size_t nam__attn_ws_bytes(const nam_attention_desc *d, nam__attn_ctx *c) {
    int64_t threads;
    if (d->backend == NAM_BACKEND_CPU_REF)
        return nam__ws_need(sizeof(double) * NAM__CAST(size_t, d->k.shape[1])) + nam__ws_need(sizeof(double) * NAM__CAST(size_t, d->q.shape[3]));
    nam__attn_setup(d, c);
    threads = d->threads;
    if (threads > c->items) threads = c->items;
    return NAM__CAST(size_t, threads) * c->per_thread;
}

static nam_status nam__attention_workspace_size_body(const nam_attention_desc *d, size_t *bytes, nam_error *err) {
    nam_attention_desc r;
    nam_status st;
    nam__attn_ctx c;
    if (!bytes) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_attention_workspace_size: bytes is NULL");
    *bytes = 0;
    if ((st = nam__attention_desc_defaults(d, &r, err)) != NAM_OK) return st;
#ifdef NAM_CUDA
    if (r.backend == NAM_BACKEND_CUDA) return nam_cuda__attention_workspace_size(&r, bytes, err);
#endif
    *bytes = nam__attn_ws_bytes(&r, &c);
    return NAM_OK;
}

NAM__DEF nam_status nam_attention_workspace_size(const nam_attention_desc *d, size_t *bytes, nam_error *err) {
    nam_status st;
    NAM__FP_CALL(st, nam__attention_workspace_size_body(d, bytes, err));
    return st;
}

static nam_status nam__attention_body(nam_attention_desc *d, void *workspace, size_t workspace_bytes, nam_error *err) {
    nam_attention_desc r;
    nam_status st;
    nam__attn_ctx c;
    size_t need;
    int threads;
    if ((st = nam__attention_desc_defaults(d, &r, err)) != NAM_OK) return st;
#ifdef NAM_CUDA
    if (r.backend == NAM_BACKEND_CUDA) {
        st = nam_cuda__attention(&r, workspace, workspace_bytes, err);
        if (st == NAM_OK) d->ran = NAM_BACKEND_CUDA;
        return st;
    }
#endif
    need = nam__attn_ws_bytes(&r, &c);
    if ((st = nam__ws_check(workspace, workspace_bytes, need, "nam_attention", err)) != NAM_OK) return st;
    d->ran = r.backend;
    if (r.backend == NAM_BACKEND_CPU_REF) {
        nam__attn_ref(&r, NAM__CAST(char *, workspace));
        return NAM_OK;
    }
    c.ws = NAM__CAST(char *, workspace);
    threads = r.threads;
    if (threads > c.items) threads = NAM__CAST(int, c.items);
    c.next = 0;
    c.chunk = c.items / (16 * NAM__CAST(int64_t, threads));
    if (c.chunk < 1) c.chunk = 1;
#if defined(__GNUC__) || defined(__clang__)
    nam__parallel_for(threads, threads, nam__attn_task, &c);
#else
    nam__parallel_for(c.items, threads, nam__attn_task, &c);
#endif
    return NAM_OK;
}

NAM__DEF nam_status nam_attention(nam_attention_desc *d, void *workspace, size_t workspace_bytes, nam_error *err) {
    nam_status st;
    NAM__FP_CALL(st, nam__attention_body(d, workspace, workspace_bytes, err));
    return st;
}

/* >>kernel-gemm ------------------------------------------------------------------------------- */
/* Single-precision GEMM for the CPU kernels (MoE expert FFN, attention tiles).

     C[i,j] = beta*C[i,j] + sum_p A[i,p] * op(B)[p,j]     row-major, i < m, j < n, p < k
     transB = 0: op(B)[p,j] = B[p*ldb + j]      transB = 1: op(B)[p,j] = B[j*ldb + p]
     beta is 0 or 1; beta = 0 overwrites C without reading it (C may hold NaN garbage); the
     blocked path treats any nonzero beta as 1. m, n, k >= 1 (else nothing happens);
     lda >= k, ldb >= (transB ? k : n), ldc >= n, all in floats.

   pack is caller scratch of nam__sgemm_pack_floats(m, n, k) floats, 64-byte aligned (for
   speed; any float-aligned buffer gives the same results, all vector accesses are unaligned).
   nam__sgemm is single-threaded; callers parallelise over independent blocks.

   Structure (the Goto/BLIS loop nest): for each NC-wide column block of op(B) and each
   KC-deep slice of k, op(B) is packed into NR-wide row-interleaved panels (transB = 0: the
   whole block up front, in row order; transB = 1: each panel just before its first use, via
   8 x 8 register transposes); for each MC-tall row block of A, A is packed into MR-tall
   column-interleaved panels, and the next A block is software-prefetched while this one
   computes; a register-blocked MR x NR micro-kernel then runs over every tile of the block.
   Blocks are split evenly (no thin leftover block). Packing pads edge panels with zeros;
   the write-back of edge tiles is clipped, and tiles of fewer than 6 rows run a kernel
   that computes only those rows. The AVX2+FMA code (6x16 micro-kernel, 12 ymm
   accumulators, and the packing) is compiled with a target attribute and chosen at run
   time with __builtin_cpu_supports; otherwise portable code runs (GNU vector extensions
   where available, else plain C). With NAM_CBLAS defined, nam__sgemm calls cblas_sgemm
   instead (link a CBLAS, e.g. -lopenblas; pack is then unused). */
#define NAM__GEMM_MR 6
#define NAM__GEMM_NR 16
#define NAM__GEMM_KC 256   /* B micro-panel 256 x 16 floats = 16 KiB (L1) */
#define NAM__GEMM_MC 144   /* multiple of MR: A block 144 x 256 floats = 144 KiB (L2) */
#define NAM__GEMM_NC 3072  /* multiple of NR: B block 256 x 3072 floats = 3 MiB (L3) */

#if defined(__GNUC__) || defined(__clang__)
#define NAM__GEMM_PREFETCH(p) __builtin_prefetch((p), 0, 2)
#else
#define NAM__GEMM_PREFETCH(p) ((void)(p))
#endif
#ifdef NAM_CBLAS
#endif

static size_t nam__gemm_round_up(size_t x, size_t r) { return (x + r - 1) / r * r; }

/* Floats of the packed A block, rounded to 16 (64 bytes) so the B block after it stays aligned. */
static size_t nam__gemm_a_floats(int m, int k) {
    size_t mc = nam__gemm_round_up(NAM__CAST(size_t, m), NAM__GEMM_MR), kc = NAM__CAST(size_t, k);
    if (mc > NAM__GEMM_MC) mc = NAM__GEMM_MC;
    if (kc > NAM__GEMM_KC) kc = NAM__GEMM_KC;
    return nam__gemm_round_up(mc * kc, 16);
}

/* Floats of pack scratch nam__sgemm needs for these sizes (at most (144 + 3072) * 256 =
   823,296 floats, 3.1 MiB; 0 when a size is < 1). */
static size_t nam__sgemm_pack_floats(int m, int n, int k) {
    size_t nc, kc;
    if (m < 1 || n < 1 || k < 1) return 0;
    nc = nam__gemm_round_up(NAM__CAST(size_t, n), NAM__GEMM_NR);
    kc = NAM__CAST(size_t, k);
    if (nc > NAM__GEMM_NC) nc = NAM__GEMM_NC;
    if (kc > NAM__GEMM_KC) kc = NAM__GEMM_KC;
    return nam__gemm_a_floats(m, k) + nc * kc;
}

/* Block length for splitting len into ceil(len / cap) near-equal blocks, rounded up to a
   multiple of r (cap is a multiple of r), so that no block is a thin leftover. */
static int nam__gemm_block(int len, int cap, int r) {
    int64_t nb = (NAM__CAST(int64_t, len) + cap - 1) / cap, b = (len + nb - 1) / nb;
    b = (b + r - 1) / r * r;
    return b < cap ? NAM__CAST(int, b) : cap;
}

/* Software prefetch of a rows x cols region (rows ld floats apart), spread over `steps`
   calls of nam__gemm_pf_step: the packing of the next A block reads short row segments far
   apart, which the hardware prefetcher does not see coming, so they are fetched while the
   current block computes. (Prefetching the next B block the same way measured slower.) */
typedef struct nam__gemm_pf {
    const char *base;
    int64_t stride, row_off;
    int rows, bytes, lines, r, q, per_step;
} nam__gemm_pf;

static void nam__gemm_pf_init(nam__gemm_pf *pf, const float *base, int64_t ld, int rows, int cols, int64_t steps) {
    int64_t total;
    pf->base = NAM__CAST(const char *, NAM__CAST(const void *, base));
    pf->stride = ld * NAM__CAST(int64_t, sizeof(float));
    pf->row_off = 0;
    pf->rows = rows;
    pf->bytes = cols * NAM__CAST(int, sizeof(float));
    pf->lines = pf->bytes / 64 + 1;      /* + 1: the row may straddle one more line */
    pf->r = pf->q = 0;
    total = NAM__CAST(int64_t, rows) * pf->lines;
    if (steps < 1) steps = 1;
    pf->per_step = NAM__CAST(int, (total + steps - 1) / steps);
}

static void nam__gemm_pf_step(nam__gemm_pf *pf) {
    int c;
    for (c = pf->per_step; c > 0 && pf->r < pf->rows; c--) {
        int off = pf->q * 64 < pf->bytes ? pf->q * 64 : pf->bytes - 1;
        NAM__GEMM_PREFETCH(pf->base + pf->row_off + off);
        if (++pf->q == pf->lines) {
            pf->q = 0;
            pf->r++;
            pf->row_off += pf->stride;
        }
    }
}

/* Pack rows [0, mc) x cols [0, kc) of A (row stride lda) into MR-tall panels:
   panel r holds, for p = 0..kc-1, A[r*MR + 0..MR-1, p] contiguously; rows past mc are 0. */
static void nam__gemm_pack_a(int mc, int kc, const float *A, int64_t lda, float *dst) {
    int i0, i, p;
    for (i0 = 0; i0 < mc; i0 += NAM__GEMM_MR) {
        int rows = mc - i0 < NAM__GEMM_MR ? mc - i0 : NAM__GEMM_MR;
        for (i = 0; i < rows; i++) {
            const float *src = A + NAM__CAST(int64_t, i0 + i) * lda;
            for (p = 0; p < kc; p++) dst[p * NAM__GEMM_MR + i] = src[p];
        }
        for (; i < NAM__GEMM_MR; i++)
            for (p = 0; p < kc; p++) dst[p * NAM__GEMM_MR + i] = 0.0f;
        dst += NAM__CAST(size_t, kc) * NAM__GEMM_MR;
    }
}

/* Pack panels [j0, j1) (j0 a multiple of NR) of op(B)[p, j] = B[j*ldb + p] (transB = 1),
   p < kc, j < nc, in the layout of nam__gemm_pack_bn, 16 x 16 blocks at a time so each
   line of B read is used up in one visit. */
static void nam__gemm_pack_bt_ref(int kc, int nc, int j0, int j1, const float *B, int64_t ldb, float *dst) {
    int j, p, p0;
    for (; j0 < j1; j0 += NAM__GEMM_NR) {
        int cols = nc - j0 < NAM__GEMM_NR ? nc - j0 : NAM__GEMM_NR;
        float *d = dst + NAM__CAST(size_t, j0) * NAM__CAST(size_t, kc);
        for (p0 = 0; p0 < kc; p0 += 16) {
            int p1 = kc - p0 < 16 ? kc : p0 + 16;
            for (j = 0; j < cols; j++) {
                const float *src = B + NAM__CAST(int64_t, j0 + j) * ldb;
                for (p = p0; p < p1; p++) d[p * NAM__GEMM_NR + j] = src[p];
            }
            for (; j < NAM__GEMM_NR; j++)
                for (p = p0; p < p1; p++) d[p * NAM__GEMM_NR + j] = 0.0f;
        }
    }
}

/* Pack op(B)[p, j] = B[p*ldb + j] (transB = 0), p < kc, j < nc, into NR-wide panels: panel
   s holds, for p = 0..kc-1, op(B)[p, s*NR + 0..NR-1] contiguously; columns past nc are 0.
   It copies 8 rows of B at a time: 8 sequential read streams and 512 contiguous bytes
   written per panel (a panel-at-a-time walk down 256 rows of a wide B thrashes one L1 set
   and the TLB). */
static void nam__gemm_pack_bn(int kc, int nc, const float *B, int64_t ldb, float *dst) {
    int j0, j, p, p0;
    for (p0 = 0; p0 < kc; p0 += 8) {
        int p1 = kc - p0 < 8 ? kc : p0 + 8;
        for (j0 = 0; j0 < nc; j0 += NAM__GEMM_NR) {
            int cols = nc - j0 < NAM__GEMM_NR ? nc - j0 : NAM__GEMM_NR;
            float *d = dst + NAM__CAST(size_t, j0) * NAM__CAST(size_t, kc);
            for (p = p0; p < p1; p++) {
                const float *src = B + NAM__CAST(int64_t, p) * ldb + j0;
                if (cols == NAM__GEMM_NR) memcpy(d + p * NAM__GEMM_NR, src, NAM__GEMM_NR * sizeof(float));
                else {
                    for (j = 0; j < cols; j++) d[p * NAM__GEMM_NR + j] = src[j];
                    for (; j < NAM__GEMM_NR; j++) d[p * NAM__GEMM_NR + j] = 0.0f;
                }
            }
        }
    }
}

/* Write an MR x NR tile t (row stride NR) into C, clipped to mr x nr; add when accumulate. */
static void nam__gemm_store_tile(const float *t, float *C, int64_t ldc, int mr, int nr, int accumulate) {
    int i, j;
    for (i = 0; i < mr; i++) {
        float *c = C + NAM__CAST(int64_t, i) * ldc;
        const float *s = t + i * NAM__GEMM_NR;
        if (accumulate) for (j = 0; j < nr; j++) c[j] += s[j];
        else for (j = 0; j < nr; j++) c[j] = s[j];
    }
}

/* Portable micro-kernel: C tile (mr x nr of MR x NR) (+)= a-panel * b-panel over kc. With
   GCC or clang it is written with 4-wide vector extensions (SSE2 on x86, NEON on ARM), one
   6 x 8 half of the tile at a time so the 12 accumulators stay in registers; otherwise (or
   with NAM_NO_SIMD defined, which the suite builds to cover it) in plain C. */
#if (defined(__GNUC__) || defined(__clang__)) && !defined(NAM_NO_SIMD)
typedef float nam__gemm_v4 __attribute__((vector_size(16)));
static void nam__gemm_micro_ref(int kc, const float *a, const float *b, float *C, int64_t ldc, int mr, int nr, int accumulate) {
    float t[NAM__GEMM_MR * NAM__GEMM_NR];
    int h, i, p;
    for (h = 0; h < NAM__GEMM_NR; h += 8) {
        nam__gemm_v4 acc[NAM__GEMM_MR][2];
        memset(acc, 0, sizeof acc);
        for (p = 0; p < kc; p++) {
            const float *ap = a + p * NAM__GEMM_MR;
            nam__gemm_v4 b0, b1;
            memcpy(&b0, b + p * NAM__GEMM_NR + h, sizeof b0);
            memcpy(&b1, b + p * NAM__GEMM_NR + h + 4, sizeof b1);
            for (i = 0; i < NAM__GEMM_MR; i++) {
                nam__gemm_v4 av = {ap[i], ap[i], ap[i], ap[i]};
                acc[i][0] += av * b0;
                acc[i][1] += av * b1;
            }
        }
        for (i = 0; i < NAM__GEMM_MR; i++) memcpy(t + i * NAM__GEMM_NR + h, acc[i], sizeof acc[i]);
    }
    nam__gemm_store_tile(t, C, ldc, mr, nr, accumulate);
}
#else
static void nam__gemm_micro_ref(int kc, const float *a, const float *b, float *C, int64_t ldc, int mr, int nr, int accumulate) {
    float acc[NAM__GEMM_MR * NAM__GEMM_NR];
    int i, j, p;
    for (i = 0; i < NAM__GEMM_MR * NAM__GEMM_NR; i++) acc[i] = 0.0f;
    for (p = 0; p < kc; p++) {
        const float *bp = b + p * NAM__GEMM_NR, *ap = a + p * NAM__GEMM_MR;
        for (i = 0; i < NAM__GEMM_MR; i++) {
            float ai = ap[i];
            float *row = acc + i * NAM__GEMM_NR;
            for (j = 0; j < NAM__GEMM_NR; j++) row[j] += ai * bp[j];
        }
    }
    nam__gemm_store_tile(acc, C, ldc, mr, nr, accumulate);
}
#endif

#if NAM__X86_SIMD
/* AVX2 version of nam__gemm_pack_bt_ref: full panels go through 8 x 8 register transposes. */
NAM__TARGET_AVX2
static void nam__gemm_pack_bt_avx2(int kc, int nc, int j0, int j1, const float *B, int64_t ldb, float *dst) {
    int h, p0, full = nc / NAM__GEMM_NR * NAM__GEMM_NR;
    if (full > j1) full = j1;
    for (; j0 < full; j0 += NAM__GEMM_NR) {
        float *d = dst + NAM__CAST(size_t, j0) * NAM__CAST(size_t, kc);
        /* 16 k at a time (a whole cache line of each of the 16 rows) so no line is fetched twice */
        for (p0 = 0; p0 + 8 <= kc; p0 += 16) {
            for (h = 0; h < 2; h++) {
                int q;
                for (q = p0; q <= p0 + 8 && q + 8 <= kc; q += 8) {
                    const float *s = B + NAM__CAST(int64_t, j0 + 8 * h) * ldb + q;
                    __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + ldb), r2 = _mm256_loadu_ps(s + 2 * ldb);
                    __m256 r3 = _mm256_loadu_ps(s + 3 * ldb), r4 = _mm256_loadu_ps(s + 4 * ldb), r5 = _mm256_loadu_ps(s + 5 * ldb);
                    __m256 r6 = _mm256_loadu_ps(s + 6 * ldb), r7 = _mm256_loadu_ps(s + 7 * ldb);
                    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
                    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
                    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
                    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
                    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
                    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
                    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
                    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
                    float *o = d + q * NAM__GEMM_NR + 8 * h;
                    _mm256_storeu_ps(o + 0 * NAM__GEMM_NR, _mm256_permute2f128_ps(u0, u4, 0x20));
                    _mm256_storeu_ps(o + 1 * NAM__GEMM_NR, _mm256_permute2f128_ps(u1, u5, 0x20));
                    _mm256_storeu_ps(o + 2 * NAM__GEMM_NR, _mm256_permute2f128_ps(u2, u6, 0x20));
                    _mm256_storeu_ps(o + 3 * NAM__GEMM_NR, _mm256_permute2f128_ps(u3, u7, 0x20));
                    _mm256_storeu_ps(o + 4 * NAM__GEMM_NR, _mm256_permute2f128_ps(u0, u4, 0x31));
                    _mm256_storeu_ps(o + 5 * NAM__GEMM_NR, _mm256_permute2f128_ps(u1, u5, 0x31));
                    _mm256_storeu_ps(o + 6 * NAM__GEMM_NR, _mm256_permute2f128_ps(u2, u6, 0x31));
                    _mm256_storeu_ps(o + 7 * NAM__GEMM_NR, _mm256_permute2f128_ps(u3, u7, 0x31));
                }
            }
        }
        p0 = kc / 8 * 8;
        if (p0 < kc) {          /* k tail (< 8) */
            int j, p;
            for (j = 0; j < NAM__GEMM_NR; j++) {
                const float *s = B + NAM__CAST(int64_t, j0 + j) * ldb;
                for (p = p0; p < kc; p++) d[p * NAM__GEMM_NR + j] = s[p];
            }
        }
    }
    if (j0 < j1) nam__gemm_pack_bt_ref(kc, nc, j0, j1, B, ldb, dst);
}

/* AVX2 version of nam__gemm_pack_a: full 6-row panels go through 8 x 8 register transposes
   (rows 6 and 7 zero) and store 6 floats per k. */
NAM__TARGET_AVX2
static void nam__gemm_pack_a_avx2(int mc, int kc, const float *A, int64_t lda, float *dst) {
    int i0, p0, full = mc / NAM__GEMM_MR * NAM__GEMM_MR;
    __m256 z = _mm256_setzero_ps();
    for (i0 = 0; i0 < full; i0 += NAM__GEMM_MR) {
        const float *s = A + NAM__CAST(int64_t, i0) * lda;
        for (p0 = 0; p0 + 8 <= kc; p0 += 8) {
            __m256 r0 = _mm256_loadu_ps(s + p0), r1 = _mm256_loadu_ps(s + lda + p0), r2 = _mm256_loadu_ps(s + 2 * lda + p0);
            __m256 r3 = _mm256_loadu_ps(s + 3 * lda + p0), r4 = _mm256_loadu_ps(s + 4 * lda + p0), r5 = _mm256_loadu_ps(s + 5 * lda + p0);
            __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
            __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
            __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
            __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
            __m256 u4 = _mm256_shuffle_ps(t4, z, 0x44), u5 = _mm256_shuffle_ps(t4, z, 0xee);
            __m256 u6 = _mm256_shuffle_ps(t5, z, 0x44), u7 = _mm256_shuffle_ps(t5, z, 0xee);
            __m256 v[8];
            int q;
            float *d = dst + NAM__CAST(size_t, p0) * NAM__GEMM_MR;
            v[0] = _mm256_permute2f128_ps(u0, u4, 0x20); v[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
            v[2] = _mm256_permute2f128_ps(u2, u6, 0x20); v[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
            v[4] = _mm256_permute2f128_ps(u0, u4, 0x31); v[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
            v[6] = _mm256_permute2f128_ps(u2, u6, 0x31); v[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
            for (q = 0; q < 8; q++) {          /* k = p0 + q: A[i0 + 0..5, k] */
                _mm_storeu_ps(d + q * NAM__GEMM_MR, _mm256_castps256_ps128(v[q]));
                _mm_storel_pi(NAM__CAST(__m64 *, NAM__CAST(void *, d + q * NAM__GEMM_MR + 4)), _mm256_extractf128_ps(v[q], 1));
            }
        }
        for (; p0 < kc; p0++) {                /* k tail (< 8) */
            int i;
            for (i = 0; i < NAM__GEMM_MR; i++) dst[p0 * NAM__GEMM_MR + i] = s[NAM__CAST(int64_t, i) * lda + p0];
        }
        dst += NAM__CAST(size_t, kc) * NAM__GEMM_MR;
    }
    if (full < mc) nam__gemm_pack_a(mc - full, kc, A + NAM__CAST(int64_t, full) * lda, lda, dst);
}

/* AVX2+FMA micro-kernel, 6 x 16: per p, two 8-wide loads of the b panel, six broadcasts of
   the a panel, twelve FMAs into ymm accumulators; p unrolled by 4. Full tiles store straight
   into C (prefetched first); edge tiles go through a small buffer. */
NAM__TARGET_AVX2
static void nam__gemm_micro_avx2(int kc, const float *a, const float *b, float *C, int64_t ldc, int mr, int nr, int accumulate) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    __m256 b0, b1, av;
    int p, i;
    for (i = 0; i < mr; i++) {
        _mm_prefetch(NAM__CAST(const char *, NAM__CAST(const void *, C + i * ldc)), _MM_HINT_T0);
        _mm_prefetch(NAM__CAST(const char *, NAM__CAST(const void *, C + i * ldc + nr - 1)), _MM_HINT_T0);
    }
#define NAM__GEMM_STEP(o)                                                                                      \
    b0 = _mm256_loadu_ps(b + (o) * NAM__GEMM_NR);                                                               \
    b1 = _mm256_loadu_ps(b + (o) * NAM__GEMM_NR + 8);                                                           \
    av = _mm256_broadcast_ss(a + (o) * NAM__GEMM_MR + 0); c00 = _mm256_fmadd_ps(av, b0, c00); c01 = _mm256_fmadd_ps(av, b1, c01); \
    av = _mm256_broadcast_ss(a + (o) * NAM__GEMM_MR + 1); c10 = _mm256_fmadd_ps(av, b0, c10); c11 = _mm256_fmadd_ps(av, b1, c11); \
    av = _mm256_broadcast_ss(a + (o) * NAM__GEMM_MR + 2); c20 = _mm256_fmadd_ps(av, b0, c20); c21 = _mm256_fmadd_ps(av, b1, c21); \
    av = _mm256_broadcast_ss(a + (o) * NAM__GEMM_MR + 3); c30 = _mm256_fmadd_ps(av, b0, c30); c31 = _mm256_fmadd_ps(av, b1, c31); \
    av = _mm256_broadcast_ss(a + (o) * NAM__GEMM_MR + 4); c40 = _mm256_fmadd_ps(av, b0, c40); c41 = _mm256_fmadd_ps(av, b1, c41); \
    av = _mm256_broadcast_ss(a + (o) * NAM__GEMM_MR + 5); c50 = _mm256_fmadd_ps(av, b0, c50); c51 = _mm256_fmadd_ps(av, b1, c51);
    for (p = 0; p + 4 <= kc; p += 4) {
        NAM__GEMM_STEP(0) NAM__GEMM_STEP(1) NAM__GEMM_STEP(2) NAM__GEMM_STEP(3)
        a += 4 * NAM__GEMM_MR;
        b += 4 * NAM__GEMM_NR;
    }
    for (; p < kc; p++) {
        NAM__GEMM_STEP(0)
        a += NAM__GEMM_MR;
        b += NAM__GEMM_NR;
    }
#undef NAM__GEMM_STEP
    if (mr == NAM__GEMM_MR && nr == NAM__GEMM_NR) {
        float *r0 = C, *r1 = r0 + ldc, *r2 = r1 + ldc, *r3 = r2 + ldc, *r4 = r3 + ldc, *r5 = r4 + ldc;
        if (accumulate) {
            c00 = _mm256_add_ps(c00, _mm256_loadu_ps(r0)); c01 = _mm256_add_ps(c01, _mm256_loadu_ps(r0 + 8));
            c10 = _mm256_add_ps(c10, _mm256_loadu_ps(r1)); c11 = _mm256_add_ps(c11, _mm256_loadu_ps(r1 + 8));
            c20 = _mm256_add_ps(c20, _mm256_loadu_ps(r2)); c21 = _mm256_add_ps(c21, _mm256_loadu_ps(r2 + 8));
            c30 = _mm256_add_ps(c30, _mm256_loadu_ps(r3)); c31 = _mm256_add_ps(c31, _mm256_loadu_ps(r3 + 8));
            c40 = _mm256_add_ps(c40, _mm256_loadu_ps(r4)); c41 = _mm256_add_ps(c41, _mm256_loadu_ps(r4 + 8));
            c50 = _mm256_add_ps(c50, _mm256_loadu_ps(r5)); c51 = _mm256_add_ps(c51, _mm256_loadu_ps(r5 + 8));
        }
        _mm256_storeu_ps(r0, c00); _mm256_storeu_ps(r0 + 8, c01);
        _mm256_storeu_ps(r1, c10); _mm256_storeu_ps(r1 + 8, c11);
        _mm256_storeu_ps(r2, c20); _mm256_storeu_ps(r2 + 8, c21);
        _mm256_storeu_ps(r3, c30); _mm256_storeu_ps(r3 + 8, c31);
        _mm256_storeu_ps(r4, c40); _mm256_storeu_ps(r4 + 8, c41);
        _mm256_storeu_ps(r5, c50); _mm256_storeu_ps(r5 + 8, c51);
    } else {
        float t[NAM__GEMM_MR * NAM__GEMM_NR];
        _mm256_storeu_ps(t + 0 * 16, c00); _mm256_storeu_ps(t + 0 * 16 + 8, c01);
        _mm256_storeu_ps(t + 1 * 16, c10); _mm256_storeu_ps(t + 1 * 16 + 8, c11);
        _mm256_storeu_ps(t + 2 * 16, c20); _mm256_storeu_ps(t + 2 * 16 + 8, c21);
        _mm256_storeu_ps(t + 3 * 16, c30); _mm256_storeu_ps(t + 3 * 16 + 8, c31);
        _mm256_storeu_ps(t + 4 * 16, c40); _mm256_storeu_ps(t + 4 * 16 + 8, c41);
        _mm256_storeu_ps(t + 5 * 16, c50); _mm256_storeu_ps(t + 5 * 16 + 8, c51);
        nam__gemm_store_tile(t, C, ldc, mr, nr, accumulate);
    }
}

/* The same for edge tiles of mr < 6 rows: only those rows are computed (R below is a
   literal, so the dead rows fold away), and the result goes through a small buffer. */
NAM__TARGET_AVX2
static void nam__gemm_micro_avx2_rows(int kc, const float *a, const float *b, float *C, int64_t ldc, int mr, int nr, int accumulate) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 b0, b1, av;
    int p, i;
    for (i = 0; i < mr; i++) {
        _mm_prefetch(NAM__CAST(const char *, NAM__CAST(const void *, C + i * ldc)), _MM_HINT_T0);
        _mm_prefetch(NAM__CAST(const char *, NAM__CAST(const void *, C + i * ldc + nr - 1)), _MM_HINT_T0);
    }
#define NAM__GEMM_ROW(o, R, r, cr0, cr1)                                                          \
    if ((R) > (r)) {                                                                              \
        av = _mm256_broadcast_ss(a + (o) * NAM__GEMM_MR + (r));                                   \
        cr0 = _mm256_fmadd_ps(av, b0, cr0);                                                       \
        cr1 = _mm256_fmadd_ps(av, b1, cr1);                                                       \
    }
#define NAM__GEMM_STEP(o, R)                                                                      \
    b0 = _mm256_loadu_ps(b + (o) * NAM__GEMM_NR);                                                 \
    b1 = _mm256_loadu_ps(b + (o) * NAM__GEMM_NR + 8);                                             \
    NAM__GEMM_ROW(o, R, 0, c00, c01) NAM__GEMM_ROW(o, R, 1, c10, c11) NAM__GEMM_ROW(o, R, 2, c20, c21) \
    NAM__GEMM_ROW(o, R, 3, c30, c31) NAM__GEMM_ROW(o, R, 4, c40, c41)
#define NAM__GEMM_KLOOP(R)                                                                        \
    for (p = 0; p + 4 <= kc; p += 4) {                                                            \
        NAM__GEMM_STEP(0, R) NAM__GEMM_STEP(1, R) NAM__GEMM_STEP(2, R) NAM__GEMM_STEP(3, R)       \
        a += 4 * NAM__GEMM_MR;                                                                    \
        b += 4 * NAM__GEMM_NR;                                                                    \
    }                                                                                             \
    for (; p < kc; p++) {                                                                         \
        NAM__GEMM_STEP(0, R)                                                                      \
        a += NAM__GEMM_MR;                                                                        \
        b += NAM__GEMM_NR;                                                                        \
    }
    switch (mr) {
    case 1: NAM__GEMM_KLOOP(1) break;
    case 2: NAM__GEMM_KLOOP(2) break;
    case 3: NAM__GEMM_KLOOP(3) break;
    case 4: NAM__GEMM_KLOOP(4) break;
    default: NAM__GEMM_KLOOP(5) break;
    }
#undef NAM__GEMM_KLOOP
#undef NAM__GEMM_STEP
#undef NAM__GEMM_ROW
    {
        float t[(NAM__GEMM_MR - 1) * NAM__GEMM_NR];
        _mm256_storeu_ps(t + 0 * 16, c00); _mm256_storeu_ps(t + 0 * 16 + 8, c01);
        _mm256_storeu_ps(t + 1 * 16, c10); _mm256_storeu_ps(t + 1 * 16 + 8, c11);
        _mm256_storeu_ps(t + 2 * 16, c20); _mm256_storeu_ps(t + 2 * 16 + 8, c21);
        _mm256_storeu_ps(t + 3 * 16, c30); _mm256_storeu_ps(t + 3 * 16 + 8, c31);
        _mm256_storeu_ps(t + 4 * 16, c40); _mm256_storeu_ps(t + 4 * 16 + 8, c41);
        nam__gemm_store_tile(t, C, ldc, mr, nr, accumulate);
    }
}
#endif


/* The blocked GEMM with an explicit choice of code (simd: 1 = AVX2+FMA packing and micro-
   kernel, only valid when nam__cpu_avx2_fma(); 0 = portable). nam__sgemm picks simd from
   the CPU; tests call this for both paths. */
static void nam__gemm_blocked_body(int m, int n, int k, const float *A, int64_t lda, const float *B, int64_t ldb, int transB,
                                               float beta, float *C, int64_t ldc, float *pack, int simd) {
    float *pa = pack, *pb = pack + nam__gemm_a_floats(m, k);
    int mcb = nam__gemm_block(m, NAM__GEMM_MC, NAM__GEMM_MR), kcb = nam__gemm_block(k, NAM__GEMM_KC, 8);
    int ncb = nam__gemm_block(n, NAM__GEMM_NC, NAM__GEMM_NR);
    int jc, pc, ic, jr, ir;
    nam__gemm_pf pfa;
#if !NAM__X86_SIMD
    (void)simd;
#endif
    for (jc = 0; jc < n; jc += ncb) {
        int nc = n - jc < ncb ? n - jc : ncb;
        for (pc = 0; pc < k; pc += kcb) {
            int kc = k - pc < kcb ? k - pc : kcb;
            int accumulate = pc > 0 || beta != 0.0f;
            int64_t col_tiles = (nc + NAM__GEMM_NR - 1) / NAM__GEMM_NR;
            /* transB = 1 packs each B panel just before its first use (the ic == 0 pass
               below), while it is hot; transB = 0 packs the block up front (row order). */
            if (!transB) nam__gemm_pack_bn(kc, nc, B + NAM__CAST(int64_t, pc) * ldb + jc, ldb, pb);
            for (ic = 0; ic < m; ic += mcb) {
                int mc = m - ic < mcb ? m - ic : mcb;
                /* the next A block: rows below this one, else the top rows of the next k slice */
                int in = ic + mc, pan = pc, kan = kc;
                if (in >= m) { in = 0; pan = pc + kc < k ? pc + kc : 0; kan = k - pan < kcb ? k - pan : kcb; }
                if (ic + mc < m || pc + kc < k || jc + nc < n)
                    nam__gemm_pf_init(&pfa, A + NAM__CAST(int64_t, in) * lda + pan, lda, m - in < mcb ? m - in : mcb, kan,
                                      NAM__CAST(int64_t, (mc + NAM__GEMM_MR - 1) / NAM__GEMM_MR) * col_tiles);
                else nam__gemm_pf_init(&pfa, A, lda, 0, 1, 1);
#if NAM__X86_SIMD
                if (simd) nam__gemm_pack_a_avx2(mc, kc, A + NAM__CAST(int64_t, ic) * lda + pc, lda, pa);
                else
#endif
                    nam__gemm_pack_a(mc, kc, A + NAM__CAST(int64_t, ic) * lda + pc, lda, pa);
                for (jr = 0; jr < nc; jr += NAM__GEMM_NR) {
                    int nr = nc - jr < NAM__GEMM_NR ? nc - jr : NAM__GEMM_NR;
                    const float *bp = pb + NAM__CAST(size_t, jr) * NAM__CAST(size_t, kc);
                    if (transB && ic == 0) {
                        const float *bsrc = B + NAM__CAST(int64_t, jc) * ldb + pc;
#if NAM__X86_SIMD
                        if (simd) nam__gemm_pack_bt_avx2(kc, nc, jr, jr + nr, bsrc, ldb, pb);
                        else
#endif
                            nam__gemm_pack_bt_ref(kc, nc, jr, jr + nr, bsrc, ldb, pb);
                    }
                    for (ir = 0; ir < mc; ir += NAM__GEMM_MR) {
                        int mr = mc - ir < NAM__GEMM_MR ? mc - ir : NAM__GEMM_MR;
                        const float *ap = pa + NAM__CAST(size_t, ir) * NAM__CAST(size_t, kc);
                        float *cp = C + NAM__CAST(int64_t, ic + ir) * ldc + jc + jr;
                        nam__gemm_pf_step(&pfa);
#if NAM__X86_SIMD
                        if (simd && mr == NAM__GEMM_MR) nam__gemm_micro_avx2(kc, ap, bp, cp, ldc, mr, nr, accumulate);
                        else if (simd) nam__gemm_micro_avx2_rows(kc, ap, bp, cp, ldc, mr, nr, accumulate);
                        else
#endif
                            nam__gemm_micro_ref(kc, ap, bp, cp, ldc, mr, nr, accumulate);
                    }
                }
            }
        }
    }
}

/* The blocked loop inside the kernel FP environment (>>kernel-common): tests and nam-bench
   call it directly for the portable micro-kernel. Unused by nam itself under NAM_CBLAS,
   hence the attribute. */
NAM__UNUSED static void nam__gemm_blocked(int m, int n, int k, const float *A, int64_t lda, const float *B, int64_t ldb, int transB,
                                          float beta, float *C, int64_t ldc, float *pack, int simd) {
    nam__fpenv fe;
    nam__fp_enter(&fe);
    nam__gemm_blocked_body(m, n, k, A, lda, B, ldb, transB, beta, C, ldc, pack, simd);
    nam__fp_leave(&fe);
}

/* C = beta*C + A * op(B), see the top of this section. Single-threaded, no allocation. */
static void nam__sgemm(int m, int n, int k, const float *A, int64_t lda, const float *B, int64_t ldb, int transB,
                                   float beta, float *C, int64_t ldc, float *pack) {
    nam__fpenv fe;
    if (m < 1 || n < 1 || k < 1) return;
    nam__fp_enter(&fe);   /* the kernel FP environment (>>kernel-common); inside a kernel entry it only reads MXCSR */
#ifdef NAM_CBLAS
    (void)pack;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, transB ? CblasTrans : CblasNoTrans, m, n, k, 1.0f, A, NAM__CAST(int, lda), B,
                NAM__CAST(int, ldb), beta, C, NAM__CAST(int, ldc));
#else
    nam__gemm_blocked(m, n, k, A, lda, B, ldb, transB, beta, C, ldc, pack, nam__cpu_avx2_fma());
#endif
    nam__fp_leave(&fe);
}

/* >>kernel-moe -------------------------------------------------------------------------------- */
/* MoE: router, dispatch plan, permute, grouped expert FFN, combine (Megatron semantics:
   topk_routing_with_score_function, permute/unpermute with a routing map, "position"
   capacity dropping).

   Router     one pass per token: selection score per expert, insertion into a sorted
              top-k list held in the output row (ties keep the lower expert index), then
              the weights. Softmax and sigmoid are computed in double from max-shifted
              logits, so 1e30 or -1e30 logits give no overflow and no NaN.
   Dispatch   counting sort: histogram, capacity clip, exclusive prefix sum (offsets),
              then one ordered pass that places (t, slot) in its expert's segment, so
              every segment lists its rows in ascending token order (stable).
   Combine    per token, in slot order: the row of (t, slot) is found by binary search in
              its expert's segment (segments are sorted), so no inverse map is needed; the
              first contribution is assigned, not added to 0, which makes permute followed
              by an unweighted k = 1 combine the exact identity (even for -0.0).
   Expert FFN NAM_BACKEND_CPU_REF: plain loops, fp64 accumulation, any dtype and stride.
              NAM_BACKEND_CPU: work items are (expert, tile of up to NAM__MOE_MT rows),
              taken from a shared cursor by `threads` workers (nam__parallel_for), each
              with its own workspace slice. Two inner paths:
              - AVX2+FMA (chosen at run time): the weights are streamed in place, never
                packed. The tile's rows are transposed into 16-row panels xT[p][16]; a
                6 x 16 register tile (12 ymm accumulators) computes 6 weight rows against
                16 rows per step of p: out^T = W * x^T. With ~32 rows per expert (T*k/E)
                each weight element is used only ~32 times, so packing the weights (what
                a GEMM does) would cost as much as the arithmetic; reading them in place
                keeps the layer compute-bound. The first product writes h^T panels
                directly (activation fused), which are the second product's input panels.
                Each kernel call prefetches (to L2) its share of the next weight block, so
                DRAM is read at a steady rate instead of stalling the block's first use.
                A tile's last 1..NAM__MOE_DOT_MAX rows run a dot-product kernel
                (vectorised along the reduction, two rows at a time) instead of a 16-row
                panel that would mostly compute zeros.
              - otherwise nam__sgemm (>>kernel-gemm) with transB = 1 on row tiles.
              f32 weights with unit inner stride are used in place. Other weights (bf16,
              f16, strided) are never converted all at once (128 experts x 3 x 768 x 2048
              in f32 would be 2.4 GB): the streaming path converts one 6-row block just
              before its use (it stays in L1, so bf16 weights cost about what f32 ones
              do, at half the DRAM bytes); the sgemm path converts one expert at a time
              into the worker's workspace (3 F H floats). */
#define NAM__MOE_MT 64         /* rows per FFN work item (a multiple of 16) */
#define NAM__MOE_DOT_MAX 6     /* tile tails of up to this many rows run the dot-product kernel */
#define NAM__MOE_MAX_EXPERTS (1 << 20)


/* ---- small helpers ------------------------------------------------------------------- */
static int nam__moe_finite(double v) { return v == v && v - v == 0.0; }

/* A float tensor whose last axis has unit stride and dtype f32: usable in place. */
static int nam__moe_rows_f32(const nam_tensor *t) {
    int64_t st[NAM_MAX_DIMS];
    nam__tensor_strides(t, st);
    return t->dtype == NAM_F32 && (st[t->ndim - 1] == 1 || t->shape[t->ndim - 1] == 1);
}

/* The resolved view of a dispatch plan, as permute, combine and the FFN read it. */
typedef struct nam__moe_plan {
    int64_t T, k, E, nrows;
    const int32_t *idx, *off, *rows;   /* topk_idx (T, k), offsets (E + 1), rows (T * k) */
    int64_t si[NAM_MAX_DIMS], so[NAM_MAX_DIMS], sr[NAM_MAX_DIMS];
} nam__moe_plan;

static int64_t nam__moe_off(const nam__moe_plan *p, int64_t e) { return p->off[e * p->so[0]]; }
static int64_t nam__moe_row(const nam__moe_plan *p, int64_t j) { return p->rows[j * p->sr[0]]; }
static int64_t nam__moe_idx(const nam__moe_plan *p, int64_t t, int64_t s) { return p->idx[t * p->si[0] + s * p->si[1]]; }

/* Check a plan for a consumer. need: 0 offsets only (FFN), 1 also topk_idx and rows
   (permute, combine), with every kept row checked against topk_idx and its segment order. */
static nam_status nam__moe_plan_check(const nam_moe_dispatch_desc *d, const char *fn, int need, nam__moe_plan *p, nam_error *err) {
    nam_status s;
    int64_t e, j, prev, v;
    memset(p, 0, sizeof *p);
    if (!d) return nam__err(err, NAM_ERR_INVALID_ARG, "%s: plan is NULL (fill it with nam_moe_dispatch)", fn);
    if (d->num_experts < 1 || d->num_experts > NAM__MOE_MAX_EXPERTS)
        return nam__err(err, NAM_ERR_RANGE, "%s: plan.num_experts = %d is out of range (1..%d)", fn, d->num_experts, NAM__MOE_MAX_EXPERTS);
    p->E = d->num_experts;
    if ((s = nam__tensor_i32(&d->offsets, "plan.offsets", 1, "E+1", err))) return s;
    if ((s = nam__tensor_dim(&d->offsets, "plan.offsets", 0, "E+1", p->E + 1, "plan.num_experts + 1", err))) return s;
    p->off = NAM__CAST(const int32_t *, d->offsets.data);
    nam__tensor_strides(&d->offsets, p->so);
    if (need) {
        if ((s = nam__tensor_i32(&d->topk_idx, "plan.topk_idx", 2, "T,k", err))) return s;
        p->T = d->topk_idx.shape[0];
        p->k = d->topk_idx.shape[1];
        if (p->T > INT32_MAX / p->k)
            return nam__err(err, NAM_ERR_LIMIT, "%s: plan.topk_idx has T * k > %d entries", fn, INT32_MAX);
        if ((s = nam__tensor_i32(&d->rows, "plan.rows", 1, "T*k", err))) return s;
        if ((s = nam__tensor_dim(&d->rows, "plan.rows", 0, "T*k", p->T * p->k, "plan.topk_idx T * k", err))) return s;
        p->idx = NAM__CAST(const int32_t *, d->topk_idx.data);
        p->rows = NAM__CAST(const int32_t *, d->rows.data);
        nam__tensor_strides(&d->topk_idx, p->si);
        nam__tensor_strides(&d->rows, p->sr);
    }
    if (d->offsets.device == NAM_DEVICE_CUDA) {
        /* device plans are not read back: their values are nam_moe_dispatch's by contract */
        const nam_tensor *ts[3];
        static const char *const nm[3] = {"plan.offsets", "plan.topk_idx", "plan.rows"};
        ts[0] = &d->offsets; ts[1] = need ? &d->topk_idx : NULL; ts[2] = need ? &d->rows : NULL;
        if ((s = nam__same_device(3, ts, nm, err))) return s;
        p->nrows = d->num_rows;
        if (d->num_rows < 0 || (need && p->nrows > p->T * p->k))
            return nam__err(err, NAM_ERR_INVALID_ARG, "%s: plan.num_rows = %d is out of range (0..T * k)", fn, d->num_rows);
        return NAM_OK;
    }
    if (nam__moe_off(p, 0) != 0) return nam__err(err, NAM_ERR_INVALID_ARG, "%s: plan.offsets[0] = %lld, expected 0", fn, NAM__CAST(long long, nam__moe_off(p, 0)));
    for (e = 0; e < p->E; e++)
        if (nam__moe_off(p, e + 1) < nam__moe_off(p, e))
            return nam__err(err, NAM_ERR_INVALID_ARG, "%s: plan.offsets decreases at expert %lld (%lld after %lld)", fn, NAM__CAST(long long, e),
                            NAM__CAST(long long, nam__moe_off(p, e + 1)), NAM__CAST(long long, nam__moe_off(p, e)));
    p->nrows = nam__moe_off(p, p->E);
    if (d->num_rows != p->nrows)
        return nam__err(err, NAM_ERR_INVALID_ARG, "%s: plan.num_rows = %d, but plan.offsets[E] = %lld", fn, d->num_rows, NAM__CAST(long long, p->nrows));
    if (!need) return NAM_OK;
    if (p->nrows > p->T * p->k)
        return nam__err(err, NAM_ERR_INVALID_ARG, "%s: plan.offsets[E] = %lld exceeds T * k = %lld", fn, NAM__CAST(long long, p->nrows), NAM__CAST(long long, p->T * p->k));
    for (e = 0; e < p->E; e++) {
        prev = -1;
        for (j = nam__moe_off(p, e); j < nam__moe_off(p, e + 1); j++) {
            v = nam__moe_row(p, j);
            if (v <= prev || v >= p->T * p->k || nam__moe_idx(p, v / p->k, v % p->k) != e)
                return nam__err(err, NAM_ERR_INVALID_ARG, "%s: plan.rows[%lld] = %lld does not belong to expert %lld's ascending segment "
                                "(was the plan made by nam_moe_dispatch from this topk_idx?)", fn, NAM__CAST(long long, j), NAM__CAST(long long, v), NAM__CAST(long long, e));
            prev = v;
        }
    }
    return NAM_OK;
}

/* ---- router -------------------------------------------------------------------------- */
/* nam__moe_route_desc_defaults: validate *d, then *r = *d with every default resolved, the
   one place they are (the CPU router and the CUDA hook read *r):
     backend         AUTO -> the backend that runs
     scaling_factor  0 -> 1 */
static nam_status nam__moe_route_desc_defaults(const nam_moe_route_desc *d, nam_moe_route_desc *r, nam_error *err) {
    int64_t T, E, e, sb[NAM_MAX_DIMS];
    int64_t k;
    nam_backend ran;
    nam_status s;
    if (!d) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_moe_route: desc is NULL");
    if ((s = nam__tensor_basic(&d->logits, "logits", 2, "T,E", 0, err))) return s;
    if ((s = nam_query_backend(d->backend, d->logits.device, &ran, err))) return s;
    T = d->logits.shape[0];
    E = d->logits.shape[1];
    k = d->topk;
    if (d->topk < 1 || k > E)
        return nam__err(err, NAM_ERR_RANGE, "topk = %d is out of range: it must be 1..E, and E = logits.shape[1] = %lld", d->topk, NAM__CAST(long long, E));
    if (d->score != NAM_MOE_SOFTMAX && d->score != NAM_MOE_SIGMOID)
        return nam__err(err, NAM_ERR_INVALID_ARG, "score = %d is not a nam_moe_score (softmax 0, sigmoid 1)", NAM__CAST(int, d->score));
    if (d->pre_softmax && d->score != NAM_MOE_SOFTMAX)
        return nam__err(err, NAM_ERR_INVALID_ARG, "pre_softmax = %d applies to the softmax score only (score is sigmoid)", d->pre_softmax);
    if (d->expert_bias.data) {
        if (d->score != NAM_MOE_SIGMOID)
            return nam__err(err, NAM_ERR_INVALID_ARG, "expert_bias is given, but it is used with the sigmoid score only (aux-loss-free routing)");
        if ((s = nam__tensor_basic(&d->expert_bias, "expert_bias", 1, "E", 1, err))) return s;
        if ((s = nam__tensor_dim(&d->expert_bias, "expert_bias", 0, "E", E, "logits.shape[1]", err))) return s;
        nam__tensor_strides(&d->expert_bias, sb);
        for (e = 0; e < E && d->expert_bias.device == NAM_DEVICE_CPU; e++)
            if (!nam__moe_finite(nam__load(d->expert_bias.data, d->expert_bias.dtype, e * sb[0])))
                return nam__err(err, NAM_ERR_RANGE, "expert_bias[%lld] = %g is not finite", NAM__CAST(long long, e),
                                NAM__CAST(double, nam__load(d->expert_bias.data, d->expert_bias.dtype, e * sb[0])));
    }
    if ((s = nam__tensor_i32(&d->topk_idx, "topk_idx", 2, "T,k", err))) return s;
    if ((s = nam__tensor_dim(&d->topk_idx, "topk_idx", 0, "T", T, "logits.shape[0]", err))) return s;
    if ((s = nam__tensor_dim(&d->topk_idx, "topk_idx", 1, "k", k, "topk", err))) return s;
    if ((s = nam__tensor_basic(&d->topk_weight, "topk_weight", 2, "T,k", 0, err))) return s;
    if (d->topk_weight.dtype != NAM_F32) return nam__err(err, NAM_ERR_INVALID_ARG, "topk_weight: dtype %s, expected f32", nam_dtype_name(d->topk_weight.dtype));
    if ((s = nam__tensor_dim(&d->topk_weight, "topk_weight", 0, "T", T, "logits.shape[0]", err))) return s;
    if ((s = nam__tensor_dim(&d->topk_weight, "topk_weight", 1, "k", k, "topk", err))) return s;
    if (!nam__moe_finite(d->scaling_factor)) return nam__err(err, NAM_ERR_RANGE, "scaling_factor = %g is not finite", NAM__CAST(double, d->scaling_factor));
    {
        const nam_tensor *ts[4];
        static const char *const nm[4] = {"logits", "expert_bias", "topk_idx", "topk_weight"};
        ts[0] = &d->logits; ts[1] = &d->expert_bias; ts[2] = &d->topk_idx; ts[3] = &d->topk_weight;
        if ((s = nam__same_device(4, ts, nm, err))) return s;
    }
    *r = *d;
    r->backend = ran;
    if (r->scaling_factor == 0.0f) r->scaling_factor = 1.0f;
    return NAM_OK;
}

/* The router on the CPU, d resolved (nam__moe_route_desc_defaults). */
static nam_status nam__moe_route_cpu(const nam_moe_route_desc *d, nam_error *err) {
    int64_t T = d->logits.shape[0], E = d->logits.shape[1], k = d->topk, t, e, sl[NAM_MAX_DIMS], sb[NAM_MAX_DIMS], si[NAM_MAX_DIMS], sw[NAM_MAX_DIMS];
    int64_t n, pos, j;
    int32_t *idx;
    float *w, scale = d->scaling_factor;
    nam__tensor_strides(&d->expert_bias, sb);
    nam__tensor_strides(&d->logits, sl);
    nam__tensor_strides(&d->topk_idx, si);
    nam__tensor_strides(&d->topk_weight, sw);
    idx = NAM__CAST(int32_t *, d->topk_idx.data);
    w = NAM__CAST(float *, d->topk_weight.data);

    for (t = 0; t < T; t++) {
        int32_t *ir = idx + t * si[0];
        float *wr = w + t * sw[0];
        double mx = 0.0, sum = 0.0;
        const void *L = d->logits.data;
        nam_dtype ldt = d->logits.dtype;
        for (e = 0; e < E; e++) {
            double v = nam__load(L, ldt, t * sl[0] + e * sl[1]);
            if (!nam__moe_finite(v))
                return nam__err(err, NAM_ERR_RANGE, "logits[%lld, %lld] = %g is not finite", NAM__CAST(long long, t), NAM__CAST(long long, e), v);
            if (e == 0 || v > mx) mx = v;
        }
        if (d->score == NAM_MOE_SOFTMAX && d->pre_softmax)
            for (e = 0; e < E; e++) sum += exp(NAM__CAST(double, nam__load(L, ldt, t * sl[0] + e * sl[1])) - mx);
        /* selection: a sorted top-k list in the output row (values in wr, ids in ir) */
        n = 0;
        for (e = 0; e < E; e++) {
            double l = nam__load(L, ldt, t * sl[0] + e * sl[1]);
            float v;
            if (d->score == NAM_MOE_SIGMOID) {
                v = NAM__CAST(float, 1.0 / (1.0 + exp(-l)));
                if (d->expert_bias.data) v += nam__load(d->expert_bias.data, d->expert_bias.dtype, e * sb[0]);
            } else if (d->pre_softmax) v = NAM__CAST(float, exp(l - mx) / sum);
            else v = NAM__CAST(float, l);
            if (n == k && !(v > wr[(k - 1) * sw[1]])) continue;   /* ties: the lower index stays */
            pos = n < k ? n++ : k - 1;
            while (pos > 0 && v > wr[(pos - 1) * sw[1]]) {
                wr[pos * sw[1]] = wr[(pos - 1) * sw[1]];
                ir[pos * si[1]] = ir[(pos - 1) * si[1]];
                pos--;
            }
            wr[pos * sw[1]] = v;
            ir[pos * si[1]] = NAM__CAST(int32_t, e);
        }
        /* weights */
        if (d->score == NAM_MOE_SOFTMAX && !d->pre_softmax) {
            double top = wr[0], z = 0.0;
            for (j = 0; j < k; j++) z += exp(NAM__CAST(double, wr[j * sw[1]]) - top);
            for (j = 0; j < k; j++) wr[j * sw[1]] = NAM__CAST(float, exp(NAM__CAST(double, wr[j * sw[1]]) - top) / z);
        } else if (d->score == NAM_MOE_SIGMOID) {
            double z = 0.0;
            for (j = 0; j < k; j++) {
                double l = nam__load(L, ldt, t * sl[0] + NAM__CAST(int64_t, ir[j * si[1]]) * sl[1]);
                wr[j * sw[1]] = NAM__CAST(float, 1.0 / (1.0 + exp(-l)));   /* un-biased score */
                z += wr[j * sw[1]];
            }
            if (k > 1)
                for (j = 0; j < k; j++) wr[j * sw[1]] = NAM__CAST(float, wr[j * sw[1]] / (z + 1e-20));
        }
        if (scale != 1.0f)
            for (j = 0; j < k; j++) wr[j * sw[1]] *= scale;
    }
    return NAM_OK;
}

static nam_status nam__moe_route_body(nam_moe_route_desc *d, nam_error *err) {
    nam_moe_route_desc r;
    nam_status s;
    if ((s = nam__moe_route_desc_defaults(d, &r, err))) return s;
    if (r.backend != NAM_BACKEND_CUDA) d->ran = r.backend;   /* set before the CPU router runs, as it always was */
#ifdef NAM_CUDA
    if (r.backend == NAM_BACKEND_CUDA) s = nam_cuda__moe_route(&r, err);
    else
#endif
    s = nam__moe_route_cpu(&r, err);
    if (s == NAM_OK) d->ran = r.backend;
    return s;
}

NAM__DEF nam_status nam_moe_route(nam_moe_route_desc *d, nam_error *err) {
    nam_status st;
    NAM__FP_CALL(st, nam__moe_route_body(d, err));
    return st;
}

/* ---- dispatch ------------------------------------------------------------------------ */
/* The shape, option and device checks of a dispatch desc. */
static nam_status nam__moe_dispatch_check(const nam_moe_dispatch_desc *d, nam_error *err) {
    int64_t T, k, E;
    nam_status s;
    if (!d) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_moe_dispatch: desc is NULL");
    if ((s = nam__tensor_i32(&d->topk_idx, "topk_idx", 2, "T,k", err))) return s;
    T = d->topk_idx.shape[0];
    k = d->topk_idx.shape[1];
    if (T > INT32_MAX / k) return nam__err(err, NAM_ERR_LIMIT, "topk_idx has T * k = %lld entries; rows are i32, so at most %d", NAM__CAST(long long, T * k), INT32_MAX);
    if (d->num_experts < 1 || d->num_experts > NAM__MOE_MAX_EXPERTS)
        return nam__err(err, NAM_ERR_RANGE, "num_experts = %d is out of range (1..%d)", d->num_experts, NAM__MOE_MAX_EXPERTS);
    E = d->num_experts;
    if (!nam__moe_finite(d->capacity_factor) || d->capacity_factor < 0.0f)
        return nam__err(err, NAM_ERR_RANGE, "capacity_factor = %g must be finite and >= 0 (0: no capacity limit)", NAM__CAST(double, d->capacity_factor));
    if ((s = nam__tensor_i32(&d->counts, "counts", 1, "E", err))) return s;
    if ((s = nam__tensor_dim(&d->counts, "counts", 0, "E", E, "num_experts", err))) return s;
    if ((s = nam__tensor_i32(&d->offsets, "offsets", 1, "E+1", err))) return s;
    if ((s = nam__tensor_dim(&d->offsets, "offsets", 0, "E+1", E + 1, "num_experts + 1", err))) return s;
    if ((s = nam__tensor_i32(&d->rows, "rows", 1, "T*k", err))) return s;
    if ((s = nam__tensor_dim(&d->rows, "rows", 0, "T*k", T * k, "topk_idx T * k", err))) return s;
    {
        const nam_tensor *ts[4];
        static const char *const nm[4] = {"topk_idx", "counts", "offsets", "rows"};
        ts[0] = &d->topk_idx; ts[1] = &d->counts; ts[2] = &d->offsets; ts[3] = &d->rows;
        if ((s = nam__same_device(4, ts, nm, err))) return s;
    }
    return NAM_OK;
}

/* nam__moe_dispatch_desc_defaults: validate *d and resolve its one default, the per-expert
   capacity: capacity_factor 0 -> T * k (no limit), else min(T * k, ceil(T * k / E *
   capacity_factor)) in double. The CPU path and the CUDA hook read it from d->capacity. */
static nam_status nam__moe_dispatch_desc_defaults(const nam_moe_dispatch_desc *d, int *capacity, nam_error *err) {
    int64_t tk, cap;
    nam_status s;
    if ((s = nam__moe_dispatch_check(d, err))) return s;
    tk = d->topk_idx.shape[0] * d->topk_idx.shape[1];
    cap = tk;
    if (d->capacity_factor > 0.0f) {
        double c = ceil(NAM__CAST(double, tk) / NAM__CAST(double, d->num_experts) * NAM__CAST(double, d->capacity_factor));
        if (c < NAM__CAST(double, cap)) cap = NAM__CAST(int64_t, c);
    }
    *capacity = NAM__CAST(int, cap);
    return NAM_OK;
}

static nam_status nam__moe_dispatch_workspace_size_body(const nam_moe_dispatch_desc *d, size_t *bytes, nam_error *err) {
    nam_status s;
    if (!bytes) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_moe_dispatch_workspace_size: bytes is NULL");
    *bytes = 0;
    if ((s = nam__moe_dispatch_check(d, err))) return s;
#ifdef NAM_CUDA
    if (d->topk_idx.device == NAM_DEVICE_CUDA) return nam_cuda__moe_dispatch_workspace_size(d, bytes, err);
#endif
    return NAM_OK;
}

NAM__DEF nam_status nam_moe_dispatch_workspace_size(const nam_moe_dispatch_desc *d, size_t *bytes, nam_error *err) {
    nam_status st;
    NAM__FP_CALL(st, nam__moe_dispatch_workspace_size_body(d, bytes, err));
    return st;
}

static nam_status nam__moe_dispatch_body(nam_moe_dispatch_desc *d, nam_error *err) {
    int64_t T, k, E, t, s2, e, cap, kept, si[NAM_MAX_DIMS], sc[NAM_MAX_DIMS], so[NAM_MAX_DIMS], sr[NAM_MAX_DIMS];
    int32_t *cnt, *off, *rows;
    const int32_t *idx;
    int64_t dropped = 0;
    int capi = 0;
    nam_status s;
    if (!d) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_moe_dispatch: desc is NULL");
    d->num_rows = 0;
    d->num_dropped = 0;
    d->capacity = 0;
    if ((s = nam__moe_dispatch_desc_defaults(d, &capi, err))) return s;
    d->capacity = capi;
#ifdef NAM_CUDA
    if (d->topk_idx.device == NAM_DEVICE_CUDA) return nam_cuda__moe_dispatch(d, err);
#endif
    T = d->topk_idx.shape[0];
    k = d->topk_idx.shape[1];
    E = d->num_experts;
    nam__tensor_strides(&d->topk_idx, si);
    nam__tensor_strides(&d->counts, sc);
    nam__tensor_strides(&d->offsets, so);
    nam__tensor_strides(&d->rows, sr);
    idx = NAM__CAST(const int32_t *, d->topk_idx.data);
    cnt = NAM__CAST(int32_t *, d->counts.data);
    off = NAM__CAST(int32_t *, d->offsets.data);
    rows = NAM__CAST(int32_t *, d->rows.data);
    cap = d->capacity;   /* resolved (nam__moe_dispatch_desc_defaults) */
    /* histogram (and expert ids checked) */
    for (e = 0; e < E; e++) cnt[e * sc[0]] = 0;
    for (t = 0; t < T; t++)
        for (s2 = 0; s2 < k; s2++) {
            int32_t v = idx[t * si[0] + s2 * si[1]];
            if (v < 0 || v >= E)
                return nam__err(err, NAM_ERR_RANGE, "topk_idx[%lld, %lld] = %d is not an expert id (0..%lld): token %lld, slot %lld",
                                NAM__CAST(long long, t), NAM__CAST(long long, s2), v, NAM__CAST(long long, E - 1), NAM__CAST(long long, t), NAM__CAST(long long, s2));
            cnt[v * sc[0]]++;
        }
    /* capacity, exclusive prefix sum */
    off[0] = 0;
    for (e = 0; e < E; e++) {
        kept = cnt[e * sc[0]] < cap ? cnt[e * sc[0]] : cap;
        dropped += cnt[e * sc[0]] - kept;
        off[(e + 1) * so[0]] = NAM__CAST(int32_t, off[e * so[0]] + kept);
        cnt[e * sc[0]] = 0;                       /* now the placement cursor */
    }
    /* placement in (token, slot) order: stable within each expert */
    for (t = 0; t < T; t++)
        for (s2 = 0; s2 < k; s2++) {
            int32_t v = idx[t * si[0] + s2 * si[1]];
            int64_t c = cnt[v * sc[0]];
            if (off[v * so[0]] + c < off[(v + 1) * so[0]]) {
                rows[(off[v * so[0]] + c) * sr[0]] = NAM__CAST(int32_t, t * k + s2);
                cnt[v * sc[0]] = NAM__CAST(int32_t, c + 1);
            }
        }
    for (t = off[E * so[0]]; t < T * k; t++) rows[t * sr[0]] = -1;
    d->num_rows = off[E * so[0]];
    d->num_dropped = NAM__CAST(int, dropped);
    return NAM_OK;
}

NAM__DEF nam_status nam_moe_dispatch(nam_moe_dispatch_desc *d, nam_error *err) {
    nam_status st;
    NAM__FP_CALL(st, nam__moe_dispatch_body(d, err));
    return st;
}

/* ---- permute / combine --------------------------------------------------------------- */
static nam_status nam__moe_permute_body(const nam_tensor *tokens, const nam_moe_dispatch_desc *plan, nam_tensor *permuted, nam_error *err) {
    nam__moe_plan p;
    nam_status s;
    int64_t H, j, h, st[NAM_MAX_DIMS], sp[NAM_MAX_DIMS];
    if (!tokens || !permuted) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_moe_permute: %s is NULL", tokens ? "permuted" : "tokens");
    if ((s = nam__moe_plan_check(plan, "nam_moe_permute", 1, &p, err))) return s;
    if ((s = nam__tensor_basic(tokens, "tokens", 2, "T,H", 0, err))) return s;
    if ((s = nam__tensor_dim(tokens, "tokens", 0, "T", p.T, "plan.topk_idx.shape[0]", err))) return s;
    H = tokens->shape[1];
    if ((s = nam__tensor_basic(permuted, "permuted", 2, "rows,H", 0, err))) return s;
    if ((s = nam__tensor_dim(permuted, "permuted", 1, "H", H, "tokens.shape[1]", err))) return s;
    if (permuted->shape[0] < p.nrows)
        return nam__err(err, NAM_ERR_INVALID_ARG, "permuted.shape[0] (rows) = %lld, but the plan keeps %lld rows", NAM__CAST(long long, permuted->shape[0]), NAM__CAST(long long, p.nrows));
    {
        const nam_tensor *ts[3];
        static const char *const nm[3] = {"tokens", "plan.offsets", "permuted"};
        ts[0] = tokens; ts[1] = &plan->offsets; ts[2] = permuted;
        if ((s = nam__same_device(3, ts, nm, err))) return s;
    }
#ifdef NAM_CUDA
    if (tokens->device == NAM_DEVICE_CUDA) return nam_cuda__moe_permute(tokens, plan, permuted, err);
#endif
    nam__tensor_strides(tokens, st);
    nam__tensor_strides(permuted, sp);
    for (j = 0; j < p.nrows; j++) {
        int64_t t = nam__moe_row(&p, j) / p.k;
        if (tokens->dtype == permuted->dtype && st[1] == 1 && sp[1] == 1) {
            size_t es = tokens->dtype == NAM_F32 ? 4 : 2;
            memcpy(NAM__CAST(char *, permuted->data) + NAM__CAST(size_t, j * sp[0]) * es,
                   NAM__CAST(const char *, tokens->data) + NAM__CAST(size_t, t * st[0]) * es, NAM__CAST(size_t, H) * es);
        } else
            for (h = 0; h < H; h++) nam__store(permuted->data, permuted->dtype, j * sp[0] + h * sp[1], nam__load(tokens->data, tokens->dtype, t * st[0] + h * st[1]));
    }
    return NAM_OK;
}

NAM__DEF nam_status nam_moe_permute(const nam_tensor *tokens, const nam_moe_dispatch_desc *plan, nam_tensor *permuted, nam_error *err) {
    nam_status st;
    NAM__FP_CALL(st, nam__moe_permute_body(tokens, plan, permuted, err));
    return st;
}

/* The permuted row of (t, slot) in expert e's (sorted) segment, or -1 when it was dropped. */
static int64_t nam__moe_find(const nam__moe_plan *p, int64_t e, int64_t key) {
    int64_t lo = nam__moe_off(p, e), hi = nam__moe_off(p, e + 1);
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2, v = nam__moe_row(p, mid);
        if (v == key) return mid;
        if (v < key) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

#define NAM__MOE_CHUNK 256
static nam_status nam__moe_combine_body(const nam_tensor *expert_out, const nam_moe_dispatch_desc *plan, const nam_tensor *topk_weight,
                                                    nam_tensor *out, nam_error *err) {
    nam__moe_plan p;
    nam_status s;
    int64_t H, t, slot, h, h0, se[NAM_MAX_DIMS], sw[NAM_MAX_DIMS], so[NAM_MAX_DIMS];
    const nam_tensor *W = topk_weight && topk_weight->data ? topk_weight : NULL;
    int fast;
    float acc[NAM__MOE_CHUNK];
    if (!expert_out || !out) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_moe_combine: %s is NULL", expert_out ? "out" : "expert_out");
    if ((s = nam__moe_plan_check(plan, "nam_moe_combine", 1, &p, err))) return s;
    if ((s = nam__tensor_basic(expert_out, "expert_out", 2, "rows,H", 0, err))) return s;
    H = expert_out->shape[1];
    if (expert_out->shape[0] < p.nrows)
        return nam__err(err, NAM_ERR_INVALID_ARG, "expert_out.shape[0] (rows) = %lld, but the plan keeps %lld rows", NAM__CAST(long long, expert_out->shape[0]), NAM__CAST(long long, p.nrows));
    if (W) {
        if ((s = nam__tensor_basic(W, "topk_weight", 2, "T,k", 0, err))) return s;
        if ((s = nam__tensor_dim(W, "topk_weight", 0, "T", p.T, "plan.topk_idx.shape[0]", err))) return s;
        if ((s = nam__tensor_dim(W, "topk_weight", 1, "k", p.k, "plan.topk_idx.shape[1]", err))) return s;
        nam__tensor_strides(W, sw);
    }
    if ((s = nam__tensor_basic(out, "out", 2, "T,H", 0, err))) return s;
    if ((s = nam__tensor_dim(out, "out", 0, "T", p.T, "plan.topk_idx.shape[0]", err))) return s;
    if ((s = nam__tensor_dim(out, "out", 1, "H", H, "expert_out.shape[1]", err))) return s;
 {
        const nam_tensor *ts[4];
        static const char *const nm[4] = {"expert_out", "plan.offsets", "topk_weight", "out"};
        ts[0] = expert_out; ts[1] = &plan->offsets; ts[2] = W; ts[3] = out;
        if ((s = nam__same_device(4, ts, nm, err))) return s;
    }
#ifdef NAM_CUDA
    if (expert_out->device == NAM_DEVICE_CUDA) return nam_cuda__moe_combine(expert_out, plan, W, out, err);
#endif
    nam__tensor_strides(expert_out, se);
    nam__tensor_strides(out, so);
    fast = nam__moe_rows_f32(expert_out) && nam__moe_rows_f32(out);
    for (t = 0; t < p.T; t++) {
        int64_t js[64], *jl = js, nk = 0;
        float ws[64];
        /* the kept slots of token t, in slot order (k > 64: looked up per column chunk) */
        if (p.k <= 64) {
            for (slot = 0; slot < p.k; slot++) {
                int64_t e = nam__moe_idx(&p, t, slot), j;
                if (e < 0 || e >= p.E) return nam__err(err, NAM_ERR_RANGE, "plan.topk_idx[%lld, %lld] = %lld is not an expert id (0..%lld)",
                                                        NAM__CAST(long long, t), NAM__CAST(long long, slot), NAM__CAST(long long, e), NAM__CAST(long long, p.E - 1));
                j = nam__moe_find(&p, e, t * p.k + slot);
                if (j < 0) continue;
                jl[nk] = j;
                ws[nk++] = W ? nam__load(W->data, W->dtype, t * sw[0] + slot * sw[1]) : 1.0f;
            }
        }
        if (fast && p.k <= 64) {
            float *o = NAM__CAST(float *, out->data) + t * so[0];
            int64_t q;
            if (nk == 0) for (h = 0; h < H; h++) o[h] = 0.0f;
            for (q = 0; q < nk; q++) {
                const float *x = NAM__CAST(const float *, expert_out->data) + jl[q] * se[0];
                float wq = ws[q];
                if (q == 0 && !W) for (h = 0; h < H; h++) o[h] = x[h];
                else if (q == 0) for (h = 0; h < H; h++) o[h] = wq * x[h];
                else if (!W) for (h = 0; h < H; h++) o[h] += x[h];
                else for (h = 0; h < H; h++) o[h] += wq * x[h];
            }
            continue;
        }
        for (h0 = 0; h0 < H; h0 += NAM__MOE_CHUNK) {
            int64_t hn = H - h0 < NAM__MOE_CHUNK ? H - h0 : NAM__MOE_CHUNK, got = 0;
            for (slot = 0; slot < p.k; slot++) {
                int64_t j;
                float wq;
                if (p.k <= 64) {
                    if (slot >= nk) break;
                    j = jl[slot];
                    wq = ws[slot];
                } else {
                    int64_t e = nam__moe_idx(&p, t, slot);
                    if (e < 0 || e >= p.E) return nam__err(err, NAM_ERR_RANGE, "plan.topk_idx[%lld, %lld] = %lld is not an expert id (0..%lld)",
                                                            NAM__CAST(long long, t), NAM__CAST(long long, slot), NAM__CAST(long long, e), NAM__CAST(long long, p.E - 1));
                    j = nam__moe_find(&p, e, t * p.k + slot);
                    if (j < 0) continue;
                    wq = W ? nam__load(W->data, W->dtype, t * sw[0] + slot * sw[1]) : 1.0f;
                }
                for (h = 0; h < hn; h++) {
                    float x = nam__load(expert_out->data, expert_out->dtype, j * se[0] + (h0 + h) * se[1]);
                    if (W) x *= wq;
                    if (got) acc[h] += x;
                    else acc[h] = x;
                }
                got = 1;
            }
            for (h = 0; h < hn; h++) nam__store(out->data, out->dtype, t * so[0] + (h0 + h) * so[1], got ? acc[h] : 0.0f);
        }
    }
    return NAM_OK;
}

NAM__DEF nam_status nam_moe_combine(const nam_tensor *expert_out, const nam_moe_dispatch_desc *plan, const nam_tensor *topk_weight,
                                    nam_tensor *out, nam_error *err) {
    nam_status st;
    NAM__FP_CALL(st, nam__moe_combine_body(expert_out, plan, topk_weight, out, err));
    return st;
}

/* ---- expert FFN ---------------------------------------------------------------------- */
typedef struct nam__moe_ffn_info {
    int64_t E, F, H, R;              /* experts, ffn, hidden, rows of in/out */
    int swiglu, threads;
    nam_backend ran;
    int conv[3];                     /* w1, w3, w2 converted per expert into workspace */
    int conv_out;                    /* out written through an f32 tile buffer */
    size_t thread_bytes, bytes;      /* per worker, total */
} nam__moe_ffn_info;

static size_t nam__moe_fl(int64_t n) { return nam__ws_need(sizeof(float) * NAM__CAST(size_t, n)); }

static nam_status nam__moe_ffn_check(const nam_moe_ffn_desc *d, nam__moe_ffn_info *fi, nam_error *err) {
    nam_status s;
    int64_t mt;
    memset(fi, 0, sizeof *fi);
    if (!d) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_moe_ffn: desc is NULL");
    if (d->act != NAM_MOE_SWIGLU && d->act != NAM_MOE_SQUARED_RELU)
        return nam__err(err, NAM_ERR_INVALID_ARG, "act = %d is not a nam_moe_act (swiglu 0, squared relu 1)", NAM__CAST(int, d->act));
    fi->swiglu = d->act == NAM_MOE_SWIGLU;
    if ((s = nam__tensor_basic(&d->in, "in", 2, "rows,H", 0, err))) return s;
    if ((s = nam_query_backend(d->backend, d->in.device, &fi->ran, err))) return s;
    fi->threads = nam__desc_threads(fi->ran, d->threads);
    fi->R = d->in.shape[0];
    fi->H = d->in.shape[1];
    if ((s = nam__tensor_basic(&d->w1, "w1", 3, "E,F,H", 0, err))) return s;
    fi->E = d->w1.shape[0];
    fi->F = d->w1.shape[1];
    if ((s = nam__tensor_dim(&d->w1, "w1", 2, "H", fi->H, "in.shape[1]", err))) return s;
    if (fi->swiglu) {
        if ((s = nam__tensor_basic(&d->w3, "w3", 3, "E,F,H", 0, err))) return s;
        if ((s = nam__tensor_dim(&d->w3, "w3", 0, "E", fi->E, "w1.shape[0]", err))) return s;
        if ((s = nam__tensor_dim(&d->w3, "w3", 1, "F", fi->F, "w1.shape[1]", err))) return s;
        if ((s = nam__tensor_dim(&d->w3, "w3", 2, "H", fi->H, "in.shape[1]", err))) return s;
    }
    if ((s = nam__tensor_basic(&d->w2, "w2", 3, "E,H,F", 0, err))) return s;
    if ((s = nam__tensor_dim(&d->w2, "w2", 0, "E", fi->E, "w1.shape[0]", err))) return s;
    if ((s = nam__tensor_dim(&d->w2, "w2", 1, "H", fi->H, "in.shape[1]", err))) return s;
    if ((s = nam__tensor_dim(&d->w2, "w2", 2, "F", fi->F, "w1.shape[1]", err))) return s;
    if ((s = nam__tensor_basic(&d->out, "out", 2, "rows,H", 0, err))) return s;
    if ((s = nam__tensor_dim(&d->out, "out", 0, "rows", fi->R, "in.shape[0]", err))) return s;
    if ((s = nam__tensor_dim(&d->out, "out", 1, "H", fi->H, "in.shape[1]", err))) return s;
    if (fi->E > NAM__MOE_MAX_EXPERTS || fi->F > NAM_MAX_DIM || fi->H > NAM_MAX_DIM || fi->R > INT32_MAX)
        return nam__err(err, NAM_ERR_LIMIT, "nam_moe_ffn: E = %lld, F = %lld, H = %lld or rows = %lld exceeds nam's limits", NAM__CAST(long long, fi->E),
                        NAM__CAST(long long, fi->F), NAM__CAST(long long, fi->H), NAM__CAST(long long, fi->R));
    {
        const nam_tensor *ts[6];
        static const char *const nm[6] = {"in", "w1", "w3", "w2", "out", "plan.offsets"};
        ts[0] = &d->in; ts[1] = &d->w1; ts[2] = fi->swiglu ? &d->w3 : NULL; ts[3] = &d->w2; ts[4] = &d->out; ts[5] = d->plan ? &d->plan->offsets : NULL;
        if ((s = nam__same_device(6, ts, nm, err))) return s;
    }
    if (fi->ran == NAM_BACKEND_CUDA) return NAM_OK;
    if (fi->ran == NAM_BACKEND_CPU_REF) {
        fi->thread_bytes = nam__ws_need(sizeof(double) * NAM__CAST(size_t, fi->F));
        fi->bytes = fi->thread_bytes;
        return NAM_OK;
    }
    fi->conv[0] = !nam__moe_rows_f32(&d->w1);
    fi->conv[1] = fi->swiglu && !nam__moe_rows_f32(&d->w3);
    fi->conv[2] = !nam__moe_rows_f32(&d->w2);
    fi->conv_out = !nam__moe_rows_f32(&d->out);
    mt = NAM__MOE_MT;
    /* per worker: x tile (transposed panels or sgemm rows), hidden (and the W3 product),
       an f32 out tile when out needs converting, converted weights, sgemm packing */
    fi->thread_bytes = nam__moe_fl(mt * fi->H) + nam__moe_fl(mt * fi->F) * (fi->swiglu ? 2u : 1u);
    if (fi->conv_out) fi->thread_bytes += nam__moe_fl(mt * fi->H);
    fi->thread_bytes += nam__moe_fl(16 * fi->H) + nam__moe_fl(16 * fi->F);   /* the tail's x and h rows */
    fi->thread_bytes += nam__moe_fl(18 * (fi->F > fi->H ? fi->F : fi->H));   /* 3 converted 6-row weight blocks */
    if (fi->conv[0]) fi->thread_bytes += nam__moe_fl(fi->F * fi->H);
    if (fi->conv[1]) fi->thread_bytes += nam__moe_fl(fi->F * fi->H);
    if (fi->conv[2]) fi->thread_bytes += nam__moe_fl(fi->F * fi->H);
    {
        size_t p1 = nam__sgemm_pack_floats(NAM__MOE_MT, NAM__CAST(int, fi->F), NAM__CAST(int, fi->H));
        size_t p2 = nam__sgemm_pack_floats(NAM__MOE_MT, NAM__CAST(int, fi->H), NAM__CAST(int, fi->F));
        fi->thread_bytes += nam__ws_need(sizeof(float) * (p1 > p2 ? p1 : p2));
    }
    fi->bytes = fi->thread_bytes * NAM__CAST(size_t, fi->threads);
    return NAM_OK;
}

/* nam__moe_ffn_desc_defaults: validate *d (nam__moe_ffn_check, which sizes the CPU
   workspace in *fi), then *r = *d with every default resolved, the one place they are:
   backend AUTO -> the backend that runs, threads nam__desc_threads. */
static nam_status nam__moe_ffn_desc_defaults(const nam_moe_ffn_desc *d, nam_moe_ffn_desc *r, nam__moe_ffn_info *fi, nam_error *err) {
    nam_status s;
    if ((s = nam__moe_ffn_check(d, fi, err))) return s;
    *r = *d;
    r->backend = fi->ran;
    r->threads = fi->threads;
    return NAM_OK;
}

static nam_status nam__moe_ffn_workspace_size_body(const nam_moe_ffn_desc *d, size_t *bytes, nam_error *err) {
    nam__moe_ffn_info fi;
    nam_moe_ffn_desc r;
    nam_status s;
    if (!bytes) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_moe_ffn_workspace_size: bytes is NULL");
    *bytes = 0;
    if ((s = nam__moe_ffn_desc_defaults(d, &r, &fi, err))) return s;
#ifdef NAM_CUDA
    if (fi.ran == NAM_BACKEND_CUDA) return nam_cuda__moe_ffn_workspace_size(&r, bytes, err);
#endif
    *bytes = fi.bytes;
    return NAM_OK;
}

NAM__DEF nam_status nam_moe_ffn_workspace_size(const nam_moe_ffn_desc *d, size_t *bytes, nam_error *err) {
    nam_status st;
    NAM__FP_CALL(st, nam__moe_ffn_workspace_size_body(d, bytes, err));
    return st;
}

/* Reference: every kept row, fp64 sums, any dtype and stride. */
static void nam__moe_ffn_ref(const nam_moe_ffn_desc *d, const nam__moe_ffn_info *fi, const nam__moe_plan *p, double *hid) {
    int64_t sx[NAM_MAX_DIMS], s1[NAM_MAX_DIMS], s3[NAM_MAX_DIMS], s2[NAM_MAX_DIMS], so[NAM_MAX_DIMS], e, j, f, h, q;
    nam__tensor_strides(&d->in, sx);
    nam__tensor_strides(&d->w1, s1);
    nam__tensor_strides(&d->w3, s3);
    nam__tensor_strides(&d->w2, s2);
    nam__tensor_strides(&d->out, so);
    for (e = 0; e < fi->E; e++)
        for (j = nam__moe_off(p, e); j < nam__moe_off(p, e + 1); j++) {
            for (f = 0; f < fi->F; f++) {
                double g = 0.0, u = 0.0;
                for (q = 0; q < fi->H; q++) {
                    double x = nam__load(d->in.data, d->in.dtype, j * sx[0] + q * sx[1]);
                    g += x * nam__load(d->w1.data, d->w1.dtype, e * s1[0] + f * s1[1] + q * s1[2]);
                    if (fi->swiglu) u += x * nam__load(d->w3.data, d->w3.dtype, e * s3[0] + f * s3[1] + q * s3[2]);
                }
                if (fi->swiglu) hid[f] = nam__silu_d(g) * u;
                else hid[f] = g > 0.0 ? g * g : 0.0;
            }
            for (h = 0; h < fi->H; h++) {
                double o = 0.0;
                for (f = 0; f < fi->F; f++) o += hid[f] * nam__load(d->w2.data, d->w2.dtype, e * s2[0] + h * s2[1] + f * s2[2]);
                nam__store(d->out.data, d->out.dtype, j * so[0] + h * so[1], NAM__CAST(float, o));
            }
        }
}

/* Expert e of weight t (rows x cols after the expert axis) as f32 rows: in place, or
   converted into buf. Returns the row pointer base; *ld gets the row stride. */
static const float *nam__moe_weight(const nam_tensor *t, int conv, int64_t e, float *buf, int64_t *ld) {
    int64_t st[NAM_MAX_DIMS], r, c, rows = t->shape[1], cols = t->shape[2];
    nam__tensor_strides(t, st);
    if (!conv) {
        *ld = st[1];
        return NAM__CAST(const float *, t->data) + e * st[0];
    }
    for (r = 0; r < rows; r++) {
        float *dst = buf + r * cols;
        int64_t base = e * st[0] + r * st[1];
        if (t->dtype == NAM_BF16 && st[2] == 1) {
            const uint16_t *src = NAM__CAST(const uint16_t *, t->data) + base;
            for (c = 0; c < cols; c++) {
                uint32_t u = NAM__CAST(uint32_t, src[c]) << 16;
                memcpy(dst + c, &u, 4);
            }
        } else
            for (c = 0; c < cols; c++) dst[c] = nam__load(t->data, t->dtype, base + c * st[2]);
    }
    *ld = cols;
    return buf;
}

/* One expert's slice of a weight tensor, (rows, cols) after the expert axis, any dtype and
   strides: the streaming kernels read it one block of rows at a time. */
typedef struct nam__moe_wsrc {
    const char *data;                 /* the expert's first element */
    nam_dtype dt;
    int64_t ld, st;                   /* row and column strides, in elements */
    int64_t es;                       /* element size in bytes */
    int direct;                       /* f32 with unit column stride: blocks are read in place */
} nam__moe_wsrc;

static void nam__moe_wsrc_init(nam__moe_wsrc *w, const nam_tensor *t, int64_t e) {
    int64_t st[NAM_MAX_DIMS];
    nam__tensor_strides(t, st);
    w->dt = t->dtype;
    w->es = t->dtype == NAM_F32 ? 4 : 2;
    w->data = NAM__CAST(const char *, t->data) + e * st[0] * w->es;
    w->ld = st[1];
    w->st = st[2];
    w->direct = t->dtype == NAM_F32 && (st[2] == 1 || t->shape[2] == 1);
}

#if NAM__X86_SIMD
NAM__TARGET_AVX2
static void nam__moe_bf16_row_avx2(const uint16_t *src, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i v = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(NAM__CAST(const __m128i *, NAM__CAST(const void *, src + i)))), 16);
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(v));
    }
    for (; i < n; i++) dst[i] = nam__bf16_to_f32(src[i]);
}

/* Rows [r0, r0 + rows) x cols [0, K) of w as f32 rows: in place, or converted into buf
   (rows x K). *ld gets the row stride. */
static const float *nam__moe_wblock(const nam__moe_wsrc *w, int64_t r0, int rows, int64_t K, float *buf, int64_t *ld) {
    int64_t r, q;
    if (w->direct) {
        *ld = w->ld;
        return NAM__CAST(const float *, NAM__CAST(const void *, w->data)) + r0 * w->ld;
    }
    for (r = 0; r < rows; r++) {
        const char *row = w->data + (r0 + r) * w->ld * w->es;
        float *dst = buf + r * K;
        if (w->dt == NAM_BF16 && w->st == 1) { nam__moe_bf16_row_avx2(NAM__CAST(const uint16_t *, NAM__CAST(const void *, row)), dst, K); continue; }
        for (q = 0; q < K; q++) dst[q] = nam__load(row, w->dt, q * w->st);
    }
    *ld = K;
    return buf;
}

/* Prefetch source of rows [r0, r0 + 6) from column c0 (NULL past the last row or when the
   columns are not contiguous); *ld_bytes gets the row stride in bytes. */
static const char *nam__moe_wnext(const nam__moe_wsrc *w, int64_t r0, int64_t nrows, int64_t c0, int64_t *ld_bytes) {
    *ld_bytes = w->ld * w->es;
    if (r0 >= nrows || w->st != 1) return NULL;
    return w->data + (r0 * w->ld + c0) * w->es;
}
#endif /* NAM__X86_SIMD: the weight blocks above feed only the AVX2 FFN item */

typedef struct nam__moe_ffn_ctx {
    const nam_moe_ffn_desc *d;
    const nam__moe_ffn_info *fi;
    const nam__moe_plan *p;
    char *ws;
    int simd;                         /* 1: AVX2+FMA streaming kernels, 0: nam__sgemm */
    pthread_mutex_t lock;
    int64_t next_e, next_r;           /* the shared work cursor: expert, first row in it */
} nam__moe_ffn_ctx;

/* Next work item (expert, first row within the expert, rows), or 0 when none is left. */
static int nam__moe_grab(nam__moe_ffn_ctx *c, int64_t *e, int64_t *r0, int64_t *mt) {
    int got = 0;
    pthread_mutex_lock(&c->lock);
    while (c->next_e < c->fi->E) {
        int64_t n = nam__moe_off(c->p, c->next_e + 1) - nam__moe_off(c->p, c->next_e);
        if (c->next_r < n) {
            *e = c->next_e;
            *r0 = c->next_r;
            *mt = n - c->next_r < NAM__MOE_MT ? n - c->next_r : NAM__MOE_MT;
            c->next_r += NAM__MOE_MT;
            got = 1;
            break;
        }
        c->next_e++;
        c->next_r = 0;
    }
    pthread_mutex_unlock(&c->lock);
    return got;
}

#if NAM__X86_SIMD
/* tile[i*16 + t] = sum_p w[i][p] * xT[p*16 + t] for i < 6 weight rows (rows < 6: the last
   valid row is repeated, its results ignored), t < 16; xT 64-byte aligned.
   While it runs it prefetches (into L2) pf_rows rows x pf_bytes bytes at pf (row stride
   pf_ld bytes): the part of the next weight block the caller assigns to this call. A weight block
   is used once per 16-row panel; spreading the fetch of the next block over all those uses
   keeps the DRAM traffic steady instead of stalling the first use (pf NULL: none). */
NAM__TARGET_AVX2
static void nam__moe_tile_avx2(int64_t K, const float *w, int64_t ldw, int rows, const float *xT, float *tile,
                                           const char *pf, int64_t pf_ld, int pf_rows, int64_t pf_bytes) {
    const float *w0 = w, *w1 = w + (rows > 1 ? 1 : 0) * ldw, *w2 = w + (rows > 2 ? 2 : rows - 1) * ldw;
    const float *w3 = w + (rows > 3 ? 3 : rows - 1) * ldw, *w4 = w + (rows > 4 ? 4 : rows - 1) * ldw, *w5 = w + (rows > 5 ? 5 : rows - 1) * ldw;
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00, x0, x1, a;
    int64_t p, p0, pe, lines = pf ? pf_bytes / 64 + 1 : 0, total = lines * pf_rows, per, done = 0, pr = 0, pl = 0, q;
    per = total ? (total + (K + 15) / 16 - 1) / ((K + 15) / 16) : 0;
    for (p0 = 0; p0 < K; p0 += 16) {
        pe = p0 + 16 < K ? p0 + 16 : K;
        for (q = 0; q < per && done < total; q++, done++) {
            _mm_prefetch(pf + pr * pf_ld + pl * 64, _MM_HINT_T1);
            if (++pr == pf_rows) { pr = 0; pl++; }
        }
        for (p = p0; p < pe; p++) {
            x0 = _mm256_load_ps(xT);
            x1 = _mm256_load_ps(xT + 8);
            xT += 16;
            a = _mm256_broadcast_ss(w0 + p); c00 = _mm256_fmadd_ps(a, x0, c00); c01 = _mm256_fmadd_ps(a, x1, c01);
            a = _mm256_broadcast_ss(w1 + p); c10 = _mm256_fmadd_ps(a, x0, c10); c11 = _mm256_fmadd_ps(a, x1, c11);
            a = _mm256_broadcast_ss(w2 + p); c20 = _mm256_fmadd_ps(a, x0, c20); c21 = _mm256_fmadd_ps(a, x1, c21);
            a = _mm256_broadcast_ss(w3 + p); c30 = _mm256_fmadd_ps(a, x0, c30); c31 = _mm256_fmadd_ps(a, x1, c31);
            a = _mm256_broadcast_ss(w4 + p); c40 = _mm256_fmadd_ps(a, x0, c40); c41 = _mm256_fmadd_ps(a, x1, c41);
            a = _mm256_broadcast_ss(w5 + p); c50 = _mm256_fmadd_ps(a, x0, c50); c51 = _mm256_fmadd_ps(a, x1, c51);
        }
    }
    _mm256_storeu_ps(tile + 0, c00); _mm256_storeu_ps(tile + 8, c01);
    _mm256_storeu_ps(tile + 16, c10); _mm256_storeu_ps(tile + 24, c11);
    _mm256_storeu_ps(tile + 32, c20); _mm256_storeu_ps(tile + 40, c21);
    _mm256_storeu_ps(tile + 48, c30); _mm256_storeu_ps(tile + 56, c31);
    _mm256_storeu_ps(tile + 64, c40); _mm256_storeu_ps(tile + 72, c41);
    _mm256_storeu_ps(tile + 80, c50); _mm256_storeu_ps(tile + 88, c51);
}

/* res[t*6 + i] = sum_p w[i][p] * x[t][p] for i < 6 weight rows (as above) and t < nt (1 or
   2) rows of x (row stride ldx), vectorised along p, so rows need no padding: the kernel for
   the last few rows of a tile (a 16-row panel holding them would mostly compute zeros).
   Prefetches its share of the next weight block like nam__moe_tile_avx2. */
#define NAM__MOE_HS4(A, B, C, D, dst)                                                          \
    do {                                                                                       \
        __m256 s_ = _mm256_hadd_ps(_mm256_hadd_ps(A, B), _mm256_hadd_ps(C, D));                \
        _mm_storeu_ps(dst, _mm_add_ps(_mm256_castps256_ps128(s_), _mm256_extractf128_ps(s_, 1))); \
    } while (0)
NAM__TARGET_AVX2
static void nam__moe_dot_avx2(int64_t K, const float *w, int64_t ldw, int rows, const float *x, int64_t ldx, int nt, float *res,
                                          const char *pf, int64_t pf_ld, int pf_rows, int64_t pf_bytes) {
    const float *w0 = w, *w1 = w + (rows > 1 ? 1 : 0) * ldw, *w2 = w + (rows > 2 ? 2 : rows - 1) * ldw;
    const float *w3 = w + (rows > 3 ? 3 : rows - 1) * ldw, *w4 = w + (rows > 4 ? 4 : rows - 1) * ldw, *w5 = w + (rows > 5 ? 5 : rows - 1) * ldw;
    const float *x0 = x, *x1 = x + (nt > 1 ? ldx : 0);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0, b4 = a0, b5 = a0, u, v, q;
    int64_t p = 0, K16 = K & ~NAM__CAST(int64_t, 15), lines = pf ? pf_bytes / 64 + 1 : 0, total = lines * pf_rows, per, done = 0, pr = 0, pl = 0, m, i;
    float tmp[12];
    per = total ? (total + K / 128) / (K / 128 + 1) : 0;
    for (; p < K16; p += 16) {
        if ((p & 127) == 0)
            for (m = 0; m < per && done < total; m++, done++) {
                _mm_prefetch(pf + pr * pf_ld + pl * 64, _MM_HINT_T1);
                if (++pr == pf_rows) { pr = 0; pl++; }
            }
        if (nt > 1) {           /* rows (a: x0, b: x1), 8 p at a time, twice */
            u = _mm256_loadu_ps(x0 + p); v = _mm256_loadu_ps(x1 + p);
            q = _mm256_loadu_ps(w0 + p); a0 = _mm256_fmadd_ps(q, u, a0); b0 = _mm256_fmadd_ps(q, v, b0);
            q = _mm256_loadu_ps(w1 + p); a1 = _mm256_fmadd_ps(q, u, a1); b1 = _mm256_fmadd_ps(q, v, b1);
            q = _mm256_loadu_ps(w2 + p); a2 = _mm256_fmadd_ps(q, u, a2); b2 = _mm256_fmadd_ps(q, v, b2);
            q = _mm256_loadu_ps(w3 + p); a3 = _mm256_fmadd_ps(q, u, a3); b3 = _mm256_fmadd_ps(q, v, b3);
            q = _mm256_loadu_ps(w4 + p); a4 = _mm256_fmadd_ps(q, u, a4); b4 = _mm256_fmadd_ps(q, v, b4);
            q = _mm256_loadu_ps(w5 + p); a5 = _mm256_fmadd_ps(q, u, a5); b5 = _mm256_fmadd_ps(q, v, b5);
            u = _mm256_loadu_ps(x0 + p + 8); v = _mm256_loadu_ps(x1 + p + 8);
            q = _mm256_loadu_ps(w0 + p + 8); a0 = _mm256_fmadd_ps(q, u, a0); b0 = _mm256_fmadd_ps(q, v, b0);
            q = _mm256_loadu_ps(w1 + p + 8); a1 = _mm256_fmadd_ps(q, u, a1); b1 = _mm256_fmadd_ps(q, v, b1);
            q = _mm256_loadu_ps(w2 + p + 8); a2 = _mm256_fmadd_ps(q, u, a2); b2 = _mm256_fmadd_ps(q, v, b2);
            q = _mm256_loadu_ps(w3 + p + 8); a3 = _mm256_fmadd_ps(q, u, a3); b3 = _mm256_fmadd_ps(q, v, b3);
            q = _mm256_loadu_ps(w4 + p + 8); a4 = _mm256_fmadd_ps(q, u, a4); b4 = _mm256_fmadd_ps(q, v, b4);
            q = _mm256_loadu_ps(w5 + p + 8); a5 = _mm256_fmadd_ps(q, u, a5); b5 = _mm256_fmadd_ps(q, v, b5);
        } else {                /* one row: a takes p..p+7, b takes p+8..p+15 (two chains) */
            u = _mm256_loadu_ps(x0 + p); v = _mm256_loadu_ps(x0 + p + 8);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + p), u, a0); b0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + p + 8), v, b0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + p), u, a1); b1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + p + 8), v, b1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + p), u, a2); b2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + p + 8), v, b2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + p), u, a3); b3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + p + 8), v, b3);
            a4 = _mm256_fmadd_ps(_mm256_loadu_ps(w4 + p), u, a4); b4 = _mm256_fmadd_ps(_mm256_loadu_ps(w4 + p + 8), v, b4);
            a5 = _mm256_fmadd_ps(_mm256_loadu_ps(w5 + p), u, a5); b5 = _mm256_fmadd_ps(_mm256_loadu_ps(w5 + p + 8), v, b5);
        }
    }
    if (nt > 1) {
        NAM__MOE_HS4(a0, a1, a2, a3, res);
        NAM__MOE_HS4(a4, a5, b0, b1, res + 4);
        NAM__MOE_HS4(b2, b3, b4, b5, res + 8);
    } else {
        NAM__MOE_HS4(_mm256_add_ps(a0, b0), _mm256_add_ps(a1, b1), _mm256_add_ps(a2, b2), _mm256_add_ps(a3, b3), res);
        NAM__MOE_HS4(_mm256_add_ps(a4, b4), _mm256_add_ps(a5, b5), a0, a0, tmp);
        res[4] = tmp[0];
        res[5] = tmp[1];
    }
    for (; p < K; p++)          /* K % 16 leftovers */
        for (m = 0; m < nt; m++) {
            float xv = (m ? x1 : x0)[p];
            const float *wr[6];
            wr[0] = w0; wr[1] = w1; wr[2] = w2; wr[3] = w3; wr[4] = w4; wr[5] = w5;
            for (i = 0; i < 6; i++) res[m * 6 + i] += wr[i][p] * xv;
        }
}
#undef NAM__MOE_HS4
#endif


/* One work item with the streaming kernels: rows [r0, r0 + mt) of `in` (absolute). Full
   16-row panels run nam__moe_tile_avx2; a tail of up to NAM__MOE_DOT_MAX rows runs
   nam__moe_dot_avx2 two rows at a time (a longer tail is one zero-padded panel). xT, hT:
   the panels (MT H and MT F floats); xr, hr: the tail's rows (16 H and 16 F floats). */
static void nam__moe_item_avx2(nam__moe_ffn_ctx *c, int64_t r0, int64_t mt, const nam__moe_wsrc *s1, const nam__moe_wsrc *s3,
                                           const nam__moe_wsrc *s2, float *xT, float *hT, float *xr, float *hr, float *wb, float *obuf) {
#if NAM__X86_SIMD
    const nam_moe_ffn_desc *d = c->d;
    int64_t F = c->fi->F, H = c->fi->H, KM = F > H ? F : H, np = mt / 16, nd, users, sx[NAM_MAX_DIMS], so[NAM_MAX_DIMS], pn, t, t0, q, f, h, i, ldx, ldo, us;
    int64_t l1 = 0, l3 = 0, l2 = 0, b1 = 0, b3 = 0, b2 = 0;
    const float *w1, *w3 = NULL, *w2;
    int in_f32;
    float g[96], u[96];
    const float *xt;
    float *o;
    nam__tensor_strides(&d->in, sx);
    nam__tensor_strides(&d->out, so);
    in_f32 = d->in.dtype == NAM_F32 && sx[1] == 1;
    if (mt - np * 16 > NAM__MOE_DOT_MAX) np++;
    nd = mt - np * 16 > 0 ? mt - np * 16 : 0;
    users = np + (nd + 1) / 2;         /* kernel calls per weight block: the prefetch is split over them */
    /* x^T panels: xT[pn][q][t] = in[r0 + pn*16 + t][q], zero past mt */
    for (pn = 0; pn < np; pn++) {
        float *dst = xT + pn * 16 * H;
        for (t = 0; t < 16; t++) {
            int64_t r = pn * 16 + t;
            if (r >= mt) { for (q = 0; q < H; q++) dst[q * 16 + t] = 0.0f; continue; }
            if (in_f32) {
                const float *src = NAM__CAST(const float *, d->in.data) + (r0 + r) * sx[0];
                for (q = 0; q < H; q++) dst[q * 16 + t] = src[q];
            } else
                for (q = 0; q < H; q++) dst[q * 16 + t] = nam__load(d->in.data, d->in.dtype, (r0 + r) * sx[0] + q * sx[1]);
        }
    }
    /* the tail's rows, in place or converted */
    if (in_f32) { xt = NAM__CAST(const float *, d->in.data) + (r0 + np * 16) * sx[0]; ldx = sx[0]; }
    else {
        for (t = 0; t < nd; t++)
            for (q = 0; q < H; q++) xr[t * H + q] = nam__load(d->in.data, d->in.dtype, (r0 + np * 16 + t) * sx[0] + q * sx[1]);
        xt = xr;
        ldx = H;
    }
    /* hidden: hT[pn][f][t] (panels), hr[t][f] (tail) = act(x W1^T, x W3^T) */
    for (f = 0; f < F; f += 6) {
        int rows = F - f < 6 ? NAM__CAST(int, F - f) : 6, nr = F - f - 6 < 6 ? NAM__CAST(int, F - f - 6) : 6;
        w1 = nam__moe_wblock(s1, f, rows, H, wb, &l1);
        if (c->fi->swiglu) w3 = nam__moe_wblock(s3, f, rows, H, wb + 6 * KM, &l3);
        for (us = 0; us < users; us++) {
            int64_t c0 = H * us / users, nc = H * (us + 1) / users - c0;
            const char *p1 = nam__moe_wnext(s1, f + 6, F, c0, &b1), *p3 = c->fi->swiglu ? nam__moe_wnext(s3, f + 6, F, c0, &b3) : NULL;
            if (us < np) {
                float *dst = hT + us * 16 * F + f * 16;
                nam__moe_tile_avx2(H, w1, l1, rows, xT + us * 16 * H, g, p1, b1, nr, nc * s1->es);
                if (c->fi->swiglu) {
                    nam__moe_tile_avx2(H, w3, l3, rows, xT + us * 16 * H, u, p3, b3, nr, nc * s3->es);
                    for (i = 0; i < rows * 16; i++) dst[i] = nam__silu(g[i]) * u[i];
                } else
                    for (i = 0; i < rows * 16; i++) dst[i] = g[i] > 0.0f ? g[i] * g[i] : 0.0f;
            } else {
                int nt = nd - 2 * (us - np) > 1 ? 2 : 1;
                t0 = 2 * (us - np);
                nam__moe_dot_avx2(H, w1, l1, rows, xt + t0 * ldx, ldx, nt, g, p1, b1, nr, nc * s1->es);
                if (c->fi->swiglu) nam__moe_dot_avx2(H, w3, l3, rows, xt + t0 * ldx, ldx, nt, u, p3, b3, nr, nc * s3->es);
                for (t = 0; t < nt; t++)
                    for (i = 0; i < rows; i++) {
                        float gv = g[t * 6 + i];
                        hr[(t0 + t) * F + f + i] = c->fi->swiglu ? nam__silu(gv) * u[t * 6 + i] : gv > 0.0f ? gv * gv : 0.0f;
                    }
            }
        }
    }
    /* out rows = (W2 h^T)^T for the panels, h W2^T for the tail */
    if (obuf) { o = obuf; ldo = H; }
    else { o = NAM__CAST(float *, d->out.data) + r0 * so[0]; ldo = so[0]; }
    for (h = 0; h < H; h += 6) {
        int rows = H - h < 6 ? NAM__CAST(int, H - h) : 6, nr = H - h - 6 < 6 ? NAM__CAST(int, H - h - 6) : 6;
        w2 = nam__moe_wblock(s2, h, rows, F, wb + 12 * KM, &l2);
        for (us = 0; us < users; us++) {
            int64_t c0 = F * us / users, nc = F * (us + 1) / users - c0;
            const char *p2 = nam__moe_wnext(s2, h + 6, H, c0, &b2);
            if (us < np) {
                int64_t nt = mt - us * 16 < 16 ? mt - us * 16 : 16;
                nam__moe_tile_avx2(F, w2, l2, rows, hT + us * 16 * F, g, p2, b2, nr, nc * s2->es);
                for (t = 0; t < nt; t++) {
                    float *orow = o + (us * 16 + t) * ldo + h;
                    for (i = 0; i < rows; i++) orow[i] = g[i * 16 + t];
                }
            } else {
                int nt = nd - 2 * (us - np) > 1 ? 2 : 1;
                t0 = 2 * (us - np);
                nam__moe_dot_avx2(F, w2, l2, rows, hr + t0 * F, F, nt, g, p2, b2, nr, nc * s2->es);
                for (t = 0; t < nt; t++) {
                    float *orow = o + (np * 16 + t0 + t) * ldo + h;
                    for (i = 0; i < rows; i++) orow[i] = g[t * 6 + i];
                }
            }
        }
    }
#else
    (void)c; (void)r0; (void)mt; (void)s1; (void)s3; (void)s2; (void)xT; (void)hT; (void)xr; (void)hr; (void)wb; (void)obuf;
#endif
}

/* One work item with nam__sgemm (NT products on row tiles). */
static void nam__moe_item_sgemm(nam__moe_ffn_ctx *c, int64_t r0, int64_t mt, const float *w1, int64_t l1, const float *w3, int64_t l3,
                                            const float *w2, int64_t l2, float *xbuf, float *g, float *u, float *obuf, float *pack) {
    const nam_moe_ffn_desc *d = c->d;
    int64_t F = c->fi->F, H = c->fi->H, sx[NAM_MAX_DIMS], so[NAM_MAX_DIMS], r, q, lda, ldo;
    const float *x;
    float *o;
    nam__tensor_strides(&d->in, sx);
    nam__tensor_strides(&d->out, so);
    if (nam__moe_rows_f32(&d->in)) { x = NAM__CAST(const float *, d->in.data) + r0 * sx[0]; lda = sx[0]; }
    else {
        for (r = 0; r < mt; r++)
            for (q = 0; q < H; q++) xbuf[r * H + q] = nam__load(d->in.data, d->in.dtype, (r0 + r) * sx[0] + q * sx[1]);
        x = xbuf;
        lda = H;
    }
    nam__sgemm(NAM__CAST(int, mt), NAM__CAST(int, F), NAM__CAST(int, H), x, lda, w1, l1, 1, 0.0f, g, F, pack);
    if (c->fi->swiglu) {
        nam__sgemm(NAM__CAST(int, mt), NAM__CAST(int, F), NAM__CAST(int, H), x, lda, w3, l3, 1, 0.0f, u, F, pack);
        for (q = 0; q < mt * F; q++) g[q] = nam__silu(g[q]) * u[q];
    } else
        for (q = 0; q < mt * F; q++) g[q] = g[q] > 0.0f ? g[q] * g[q] : 0.0f;
    if (obuf) { o = obuf; ldo = H; }
    else { o = NAM__CAST(float *, d->out.data) + r0 * so[0]; ldo = so[0]; }
    nam__sgemm(NAM__CAST(int, mt), NAM__CAST(int, H), NAM__CAST(int, F), g, F, w2, l2, 1, 0.0f, o, ldo, pack);
}

static void nam__moe_ffn_worker(void *ctx, int64_t begin, int64_t end, int thread) {
    nam__moe_ffn_ctx *c = NAM__CAST(nam__moe_ffn_ctx *, ctx);
    const nam__moe_ffn_info *fi = c->fi;
    const nam_moe_ffn_desc *d = c->d;
    char *cur = c->ws + fi->thread_bytes * NAM__CAST(size_t, thread);
    int64_t F = fi->F, H = fi->H, mt = NAM__MOE_MT, e, r0, n, cached = -1, l1 = 0, l3 = 0, l2 = 0, so[NAM_MAX_DIMS], r, q;
    float *xbuf, *g, *u = NULL, *obuf = NULL, *xr, *hr, *wb, *cw1 = NULL, *cw3 = NULL, *cw2 = NULL, *pack;
    nam__moe_wsrc s1, s3, s2;
    const float *w1 = NULL, *w3 = NULL, *w2 = NULL;
    (void)begin; (void)end;
    xbuf = NAM__CAST(float *, nam__ws_take(&cur, sizeof(float) * NAM__CAST(size_t, mt * H)));
    g = NAM__CAST(float *, nam__ws_take(&cur, sizeof(float) * NAM__CAST(size_t, mt * F)));
    if (fi->swiglu) u = NAM__CAST(float *, nam__ws_take(&cur, sizeof(float) * NAM__CAST(size_t, mt * F)));
    if (fi->conv_out) obuf = NAM__CAST(float *, nam__ws_take(&cur, sizeof(float) * NAM__CAST(size_t, mt * H)));
    xr = NAM__CAST(float *, nam__ws_take(&cur, sizeof(float) * NAM__CAST(size_t, 16 * H)));
    hr = NAM__CAST(float *, nam__ws_take(&cur, sizeof(float) * NAM__CAST(size_t, 16 * F)));
    wb = NAM__CAST(float *, nam__ws_take(&cur, sizeof(float) * NAM__CAST(size_t, 18 * (F > H ? F : H))));
    if (fi->conv[0]) cw1 = NAM__CAST(float *, nam__ws_take(&cur, sizeof(float) * NAM__CAST(size_t, F * H)));
    if (fi->conv[1]) cw3 = NAM__CAST(float *, nam__ws_take(&cur, sizeof(float) * NAM__CAST(size_t, F * H)));
    if (fi->conv[2]) cw2 = NAM__CAST(float *, nam__ws_take(&cur, sizeof(float) * NAM__CAST(size_t, F * H)));
    pack = NAM__CAST(float *, NAM__CAST(void *, cur));
    nam__tensor_strides(&d->out, so);
    while (nam__moe_grab(c, &e, &r0, &n)) {
        int64_t row0 = nam__moe_off(c->p, e) + r0;
        if (c->simd) {                /* weights read (or converted) one block of rows at a time */
            nam__moe_wsrc_init(&s1, &d->w1, e);
            if (fi->swiglu) nam__moe_wsrc_init(&s3, &d->w3, e);
            nam__moe_wsrc_init(&s2, &d->w2, e);
            nam__moe_item_avx2(c, row0, n, &s1, fi->swiglu ? &s3 : NULL, &s2, xbuf, g, xr, hr, wb, obuf);
        } else {                      /* nam__sgemm needs f32 rows: whole experts converted */
            if (e != cached) {
                w1 = nam__moe_weight(&d->w1, fi->conv[0], e, cw1, &l1);
                if (fi->swiglu) w3 = nam__moe_weight(&d->w3, fi->conv[1], e, cw3, &l3);
                w2 = nam__moe_weight(&d->w2, fi->conv[2], e, cw2, &l2);
                cached = e;
            }
            nam__moe_item_sgemm(c, row0, n, w1, l1, w3, l3, w2, l2, xbuf, g, u, obuf, pack);
        }
        if (obuf)
            for (r = 0; r < n; r++)
                for (q = 0; q < H; q++) nam__store(d->out.data, d->out.dtype, (row0 + r) * so[0] + q * so[1], obuf[r * H + q]);
    }
}

/* kernel: 0 the best for this CPU, 1 nam__sgemm, 2 the AVX2 streaming kernels (tests). */
static nam_status nam__moe_ffn_run(nam_moe_ffn_desc *d, void *workspace, size_t workspace_bytes, int kernel, nam_error *err) {
    nam__moe_ffn_info fi;
    nam__moe_plan p;
    nam__moe_ffn_ctx c;
    nam_moe_ffn_desc r;
    nam_status s;
    int64_t e, items = 0;
    int threads;
    if ((s = nam__moe_ffn_desc_defaults(d, &r, &fi, err))) return s;
    if ((s = nam__moe_plan_check(r.plan, "nam_moe_ffn", 0, &p, err))) return s;
    if (p.E != fi.E) return nam__err(err, NAM_ERR_INVALID_ARG, "plan.num_experts = %lld, but w1.shape[0] (E) = %lld", NAM__CAST(long long, p.E), NAM__CAST(long long, fi.E));
    if (p.nrows > fi.R)
        return nam__err(err, NAM_ERR_INVALID_ARG, "in.shape[0] (rows) = %lld, but the plan keeps %lld rows", NAM__CAST(long long, fi.R), NAM__CAST(long long, p.nrows));
#ifdef NAM_CUDA
    if (fi.ran == NAM_BACKEND_CUDA) {
        (void)kernel;
        s = nam_cuda__moe_ffn(&r, workspace, workspace_bytes, err);
        if (s == NAM_OK) d->ran = NAM_BACKEND_CUDA;
        return s;
    }
#endif
    if ((s = nam__ws_check(workspace, workspace_bytes, fi.bytes, "nam_moe_ffn", err))) return s;
    d->ran = fi.ran;
    if (fi.ran == NAM_BACKEND_CPU_REF) {
        nam__moe_ffn_ref(&r, &fi, &p, NAM__CAST(double *, workspace));
        return NAM_OK;
    }
    for (e = 0; e < fi.E; e++) items += (nam__moe_off(&p, e + 1) - nam__moe_off(&p, e) + NAM__MOE_MT - 1) / NAM__MOE_MT;
    if (items == 0) return NAM_OK;
    memset(&c, 0, sizeof c);
    c.d = &r;
    c.fi = &fi;
    c.p = &p;
    c.ws = NAM__CAST(char *, workspace);
    c.simd = kernel == 2 || (kernel == 0 && nam__cpu_avx2_fma());
    if (c.simd && !nam__cpu_avx2_fma()) return nam__err(err, NAM_ERR_UNSUPPORTED, "nam_moe_ffn: the AVX2+FMA kernels need a CPU with AVX2 and FMA");
    if (pthread_mutex_init(&c.lock, NULL) != 0) return nam__err(err, NAM_ERR_NOMEM, "nam_moe_ffn: pthread_mutex_init failed");
    threads = fi.threads < items ? fi.threads : NAM__CAST(int, items);
    nam__parallel_for(threads, threads, nam__moe_ffn_worker, &c);
    pthread_mutex_destroy(&c.lock);
    return NAM_OK;
}

NAM__DEF nam_status nam_moe_ffn(nam_moe_ffn_desc *d, void *workspace, size_t workspace_bytes, nam_error *err) {
    nam_status st;
    NAM__FP_CALL(st, nam__moe_ffn_run(d, workspace, workspace_bytes, 0, err));
    return st;
}

/* >>kernel-ssd ------------------------------------------------------------------------ */
/* Mamba-2 SSD chunked scan (nam_ssd), single-token decode (nam_ssd_step) and the causal
   depthwise conv1d of the Mamba block (nam_conv1d).

   NAM_BACKEND_CPU_REF is the sequential recurrence, in double, per (b, h, p):
       state[n] = exp(dt*A) * state[n] + dt * B[n] * x;  y = sum_n C[n] * state[n] + D * x.
   NAM_BACKEND_CPU (and AUTO) is the chunked SSD algorithm (Mamba-2, ssd_minimal), per
   chunk of Q tokens, with cum[i] the inclusive cumulative sum of dt*A inside the chunk
   (accumulated in double):
       Y     = diag(exp(cum)) * C * S^T  +  W * X,     W[i][j] = (C_i . B_j) exp(cum_i - cum_j) dt_j  (j <= i)
       S^T'  = exp(cum_last) * S^T  +  B^T * diag(dt_j exp(cum_last - cum_j)) * X
   Every exponent is a difference of cumulative sums inside one chunk taken in the causal
   direction, so it is <= 0 whenever A*dt <= 0: very negative A*dt underflows to 0, never
   overflows. When every A*dt of a chunk is <= 0, W's exponentials left of a 6-row panel
   are factored as exp(cum_i - cum_i0) exp(cum_i0 - cum_j) (both exponents still <= 0).
   Phase 1 (parallel over (b, g, chunk)) applies dt_bias / softplus / the dt limits and
   packs C, B^T and G = C B^T of each group once for all the group's heads. Phase 2
   (parallel over ranges of (b, h)) walks the chunks in order and, per chunk, every head of
   its range, so a chunk's packed panels stay in cache across heads; the range's states
   S^T (n x p) live in the workspace. Both matmuls run on one 6x16 register-tile kernel
   over packed panels (AVX2+FMA where the CPU has it, chosen at run time; portable C
   otherwise or under NAM_NO_SIMD). When out is f32 with unit step over p, p % 16 == 0 and
   there is no z, tiles are stored straight into out and D (h) rides on W's diagonal;
   otherwise rows go through a buffer (+ D x, * silu(z), dtype conversion). A NaN or inf in
   x can also reach up to 5 earlier outputs of its chunk and column (0 * NaN inside the
   masked intra-chunk matmul, as in Mamba's Triton kernels); later outputs are exact. */

#ifdef __cplusplus
#define NAM__SSD_RESTRICT __restrict
#else
#define NAM__SSD_RESTRICT restrict
#endif

#define NAM__SSD_MR 6             /* register tile: 6 rows x 16 columns */
#define NAM__SSD_NR 16
#define NAM__SSD_MAX_NUMEL (INT64_C(1) << 40)
#define NAM__SSD_MAX_DIM (INT64_C(1) << 24)   /* p, n, g, h: sizes of one head or group */

#if defined(__GNUC__) || defined(__clang__)
#define NAM__SSD_PREFETCH(addr, rw) __builtin_prefetch((addr), (rw), 2)
#else
#define NAM__SSD_PREFETCH(addr, rw) ((void)(addr))
#endif

static int64_t nam__ssd_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }
static int64_t nam__ssd_min(int64_t a, int64_t b) { return a < b ? a : b; }


/* ---- register-tile kernel ------------------------------------------------------------
   t[6x16] = ((cin ? cs * cin : 0) + A1 B1) * diag(rs) + A2 B2; rows r < m of t are stored
   to c (row stride ldc). cin (same row stride as c) may equal c.
   A panels: 6 floats per k (a[k*6 + r]). B operands: rows of 16 floats, row k at b[k*ldb].
   rs (6 row scales) applies to the A1 B1 part only and may be NULL. */
typedef struct nam__ssd_tile {
    int64_t k1, ldb1, k2, ldb2, ldc;
    const float *a1, *b1, *rs, *a2, *b2, *cin;
    float cs;
    float *c;
    int m;
} nam__ssd_tile;

static void nam__ssd_kern_c(const nam__ssd_tile *t) {
    const float *NAM__SSD_RESTRICT a1 = t->a1, *NAM__SSD_RESTRICT b1 = t->b1, *NAM__SSD_RESTRICT a2 = t->a2, *NAM__SSD_RESTRICT b2 = t->b2;
    float acc[NAM__SSD_MR][NAM__SSD_NR];
    int64_t k;
    int r, j;
    for (r = 0; r < NAM__SSD_MR; r++)
        for (j = 0; j < NAM__SSD_NR; j++) acc[r][j] = t->cin ? t->cs * t->cin[r * t->ldc + j] : 0.0f;
    for (k = 0; k < t->k1; k++)
        for (r = 0; r < NAM__SSD_MR; r++) {
            float a = a1[k * NAM__SSD_MR + r];
            const float *b = b1 + k * t->ldb1;
            for (j = 0; j < NAM__SSD_NR; j++) acc[r][j] += a * b[j];
        }
    if (t->rs && t->k1 > 0)
        for (r = 0; r < NAM__SSD_MR; r++)
            for (j = 0; j < NAM__SSD_NR; j++) acc[r][j] *= t->rs[r];
    for (k = 0; k < t->k2; k++)
        for (r = 0; r < NAM__SSD_MR; r++) {
            float a = a2[k * NAM__SSD_MR + r];
            const float *b = b2 + k * t->ldb2;
            for (j = 0; j < NAM__SSD_NR; j++) acc[r][j] += a * b[j];
        }
    for (r = 0; r < t->m; r++)
        for (j = 0; j < NAM__SSD_NR; j++) t->c[r * t->ldc + j] = acc[r][j];
}

/* W panel (6 rows i0.., K2 columns), a[j*6 + r] = G[i][j] exp(cum_i - cum_j) dt_j for j <= i
   (0 above the diagonal and in rows r >= m), plus dfold on the diagonal. */
static void nam__ssd_wpanel_c(int64_t i0, int m, int64_t K2, const double *cum, const float *G, int64_t ldg,
                                          const float *dtc, float dfold, int mono, float *NAM__SSD_RESTRICT P) {
    int64_t j;
    int r;
    (void)mono;
    for (j = 0; j < K2; j++)
        for (r = 0; r < NAM__SSD_MR; r++) {
            int64_t i = i0 + r;
            float v = 0.0f;
            if (r < m && j <= i) v = G[i * ldg + j] * expf(NAM__CAST(float, cum[i] - cum[j])) * dtc[j] + (j == i ? dfold : 0.0f);
            P[j * NAM__SSD_MR + r] = v;
        }
}

static void nam__ssd_exp_c(int64_t n, const float *x, float *y) {
    int64_t i;
    for (i = 0; i < n; i++) y[i] = expf(x[i]);
}
static void nam__ssd_silu_mul_c(int64_t n, const float *z, float *y) {
    int64_t i;
    for (i = 0; i < n; i++) y[i] *= nam__silu(z[i]);
}
/* xp[c] = src[c] and xw[c] = wj * src[c] for c < p; both zero for p <= c < p16 */
static void nam__ssd_pack_row_c(int64_t p, int64_t p16, const float *NAM__SSD_RESTRICT src, float wj,
                                            float *NAM__SSD_RESTRICT xp, float *NAM__SSD_RESTRICT xw) {
    int64_t c;
    for (c = 0; c < p; c++) { xp[c] = src[c]; xw[c] = wj * src[c]; }
    for (; c < p16; c++) xp[c] = xw[c] = 0.0f;
}
/* out[c] = y[c] + D[c] * x[c] */
static void nam__ssd_axpy_c(int64_t n, const float *NAM__SSD_RESTRICT y, const float *NAM__SSD_RESTRICT D,
                                        const float *NAM__SSD_RESTRICT x, float *NAM__SSD_RESTRICT out) {
    int64_t c;
    for (c = 0; c < n; c++) out[c] = y[c] + D[c] * x[c];
}

/* out[k] = dt'(raw[k] + bias[k]) for k < n (see nam__ssd_dt) */
static void nam__ssd_dt_row_c(int64_t n, const float *raw, const float *bias, int softplus, int limit, float lo, float hi, float *out) {
    int64_t k;
    for (k = 0; k < n; k++) {
        float v = raw[k] + bias[k];
        if (softplus) v = nam__softplus(v);
        if (limit) v = v < lo ? lo : v > hi ? hi : v;
        out[k] = v;
    }
}

#if NAM__X86_SIMD
#if defined(__GNUC__) || defined(__clang__)
#define NAM__SSD_INLINE __attribute__((always_inline)) inline
#else
#define NAM__SSD_INLINE inline
#endif
#define NAM__SSD_FMA_ROW(r, a, bv0, bv1)                   \
    do {                                                   \
        __m256 av_ = _mm256_broadcast_ss(a);               \
        c##r##0 = _mm256_fmadd_ps(av_, bv0, c##r##0);      \
        c##r##1 = _mm256_fmadd_ps(av_, bv1, c##r##1);      \
    } while (0)
#define NAM__SSD_KSTEP(ap, bp)                                                  \
    do {                                                                        \
        __m256 b0_ = _mm256_loadu_ps(bp), b1_ = _mm256_loadu_ps((bp) + 8);      \
        NAM__SSD_FMA_ROW(0, (ap) + 0, b0_, b1_);                                \
        NAM__SSD_FMA_ROW(1, (ap) + 1, b0_, b1_);                                \
        NAM__SSD_FMA_ROW(2, (ap) + 2, b0_, b1_);                                \
        NAM__SSD_FMA_ROW(3, (ap) + 3, b0_, b1_);                                \
        NAM__SSD_FMA_ROW(4, (ap) + 4, b0_, b1_);                                \
        NAM__SSD_FMA_ROW(5, (ap) + 5, b0_, b1_);                                \
    } while (0)
#define NAM__SSD_KLOOP(K, A, Bp, LDB)                                                         \
    do {                                                                                      \
        const float *ap_ = (A), *bp_ = (Bp);                                                  \
        int64_t k_;                                                                           \
        for (k_ = 0; k_ + 1 < (K); k_ += 2, ap_ += 2 * NAM__SSD_MR, bp_ += 2 * (LDB)) {       \
            NAM__SSD_KSTEP(ap_, bp_);                                                         \
            NAM__SSD_KSTEP(ap_ + NAM__SSD_MR, bp_ + (LDB));                                   \
        }                                                                                     \
        if (k_ < (K)) NAM__SSD_KSTEP(ap_, bp_);                                               \
    } while (0)
NAM__TARGET_AVX2 static void nam__ssd_kern_avx2(const nam__ssd_tile *t) {
    __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    const float *cin = t->cin;
    float *c = t->c;
    int64_t ldc = t->ldc;
    if (cin) {
        __m256 s = _mm256_set1_ps(t->cs);
        c00 = _mm256_mul_ps(s, _mm256_loadu_ps(cin + 0 * ldc)); c01 = _mm256_mul_ps(s, _mm256_loadu_ps(cin + 0 * ldc + 8));
        c10 = _mm256_mul_ps(s, _mm256_loadu_ps(cin + 1 * ldc)); c11 = _mm256_mul_ps(s, _mm256_loadu_ps(cin + 1 * ldc + 8));
        c20 = _mm256_mul_ps(s, _mm256_loadu_ps(cin + 2 * ldc)); c21 = _mm256_mul_ps(s, _mm256_loadu_ps(cin + 2 * ldc + 8));
        c30 = _mm256_mul_ps(s, _mm256_loadu_ps(cin + 3 * ldc)); c31 = _mm256_mul_ps(s, _mm256_loadu_ps(cin + 3 * ldc + 8));
        c40 = _mm256_mul_ps(s, _mm256_loadu_ps(cin + 4 * ldc)); c41 = _mm256_mul_ps(s, _mm256_loadu_ps(cin + 4 * ldc + 8));
        c50 = _mm256_mul_ps(s, _mm256_loadu_ps(cin + 5 * ldc)); c51 = _mm256_mul_ps(s, _mm256_loadu_ps(cin + 5 * ldc + 8));
    } else {
        c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
    }
    NAM__SSD_KLOOP(t->k1, t->a1, t->b1, t->ldb1);
    if (t->rs && t->k1 > 0) {
        const float *rs = t->rs;
        __m256 s;
        s = _mm256_broadcast_ss(rs + 0); c00 = _mm256_mul_ps(c00, s); c01 = _mm256_mul_ps(c01, s);
        s = _mm256_broadcast_ss(rs + 1); c10 = _mm256_mul_ps(c10, s); c11 = _mm256_mul_ps(c11, s);
        s = _mm256_broadcast_ss(rs + 2); c20 = _mm256_mul_ps(c20, s); c21 = _mm256_mul_ps(c21, s);
        s = _mm256_broadcast_ss(rs + 3); c30 = _mm256_mul_ps(c30, s); c31 = _mm256_mul_ps(c31, s);
        s = _mm256_broadcast_ss(rs + 4); c40 = _mm256_mul_ps(c40, s); c41 = _mm256_mul_ps(c41, s);
        s = _mm256_broadcast_ss(rs + 5); c50 = _mm256_mul_ps(c50, s); c51 = _mm256_mul_ps(c51, s);
    }
    NAM__SSD_KLOOP(t->k2, t->a2, t->b2, t->ldb2);
    _mm256_storeu_ps(c + 0 * ldc, c00); _mm256_storeu_ps(c + 0 * ldc + 8, c01);
    if (t->m > 1) { _mm256_storeu_ps(c + 1 * ldc, c10); _mm256_storeu_ps(c + 1 * ldc + 8, c11); }
    if (t->m > 2) { _mm256_storeu_ps(c + 2 * ldc, c20); _mm256_storeu_ps(c + 2 * ldc + 8, c21); }
    if (t->m > 3) { _mm256_storeu_ps(c + 3 * ldc, c30); _mm256_storeu_ps(c + 3 * ldc + 8, c31); }
    if (t->m > 4) { _mm256_storeu_ps(c + 4 * ldc, c40); _mm256_storeu_ps(c + 4 * ldc + 8, c41); }
    if (t->m > 5) { _mm256_storeu_ps(c + 5 * ldc, c50); _mm256_storeu_ps(c + 5 * ldc + 8, c51); }
}

/* 8-lane e^x (Cephes-style: 2^round(x log2 e) times a degree-6 polynomial; ~2 ulp).
   NaN propagates, x > 88.72 gives inf, x < -87.33 gives exactly 0. */
NAM__TARGET_AVX2 static NAM__SSD_INLINE __m256 nam__ssd_exp8(__m256 x) {
    const __m256 hi = _mm256_set1_ps(88.3762626647949f), lo = _mm256_set1_ps(-87.3365478515625f);
    __m256 xc = _mm256_min_ps(hi, _mm256_max_ps(lo, x));          /* operand order keeps NaN */
    __m256 fx = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), xc);
    __m256 pl, y, big;
    __m256i e;
    r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
    pl = _mm256_set1_ps(1.9875691500e-4f);
    pl = _mm256_fmadd_ps(pl, r, _mm256_set1_ps(1.3981999507e-3f));
    pl = _mm256_fmadd_ps(pl, r, _mm256_set1_ps(8.3334519073e-3f));
    pl = _mm256_fmadd_ps(pl, r, _mm256_set1_ps(4.1665795894e-2f));
    pl = _mm256_fmadd_ps(pl, r, _mm256_set1_ps(1.6666665459e-1f));
    pl = _mm256_fmadd_ps(pl, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(_mm256_mul_ps(pl, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
    y = _mm256_andnot_ps(_mm256_cmp_ps(x, lo, _CMP_LT_OQ), y);     /* underflow -> 0 */
    big = _mm256_cmp_ps(x, _mm256_set1_ps(88.72283935546875f), _CMP_GT_OQ);
    return _mm256_blendv_ps(y, _mm256_set1_ps(HUGE_VALF), big);
}

/* 8-lane natural log of positive normal floats (Cephes logf: mantissa in [sqrt(1/2), sqrt(2)),
   degree-8 polynomial; ~1 ulp). Used on [1, 2] only (softplus). */
NAM__TARGET_AVX2 static NAM__SSD_INLINE __m256 nam__ssd_log8(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256i xi = _mm256_castps_si256(x);
    __m256 e = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(xi, 23), _mm256_set1_epi32(126)));
    __m256 m = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(xi, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x3f000000)));
    __m256 small = _mm256_cmp_ps(m, _mm256_set1_ps(0.707106781186547524f), _CMP_LT_OQ), z, y;
    e = _mm256_sub_ps(e, _mm256_and_ps(one, small));
    m = _mm256_add_ps(_mm256_sub_ps(m, one), _mm256_and_ps(m, small));     /* 2m - 1 or m - 1 */
    z = _mm256_mul_ps(m, m);
    y = _mm256_set1_ps(7.0376836292e-2f);
    y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-1.1514610310e-1f));
    y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(1.1676998740e-1f));
    y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-1.2420140846e-1f));
    y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(1.4249322787e-1f));
    y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-1.6668057665e-1f));
    y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(2.0000714765e-1f));
    y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-2.4999993993e-1f));
    y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(3.3333331174e-1f));
    y = _mm256_mul_ps(_mm256_mul_ps(y, m), z);
    y = _mm256_fmadd_ps(e, _mm256_set1_ps(-2.12194440e-4f), y);
    y = _mm256_fnmadd_ps(z, _mm256_set1_ps(0.5f), y);
    return _mm256_fmadd_ps(e, _mm256_set1_ps(0.693359375f), _mm256_add_ps(m, y));
}

/* dt' rows: softplus(v) = max(v, 0) + log1p(exp(-|v|)) (v for v > 20, as nam__softplus), with
   log1p(u) = log(1 + u) * u / ((1 + u) - 1) so tiny u keep their digits; NaN stays NaN. */
NAM__TARGET_AVX2 static void nam__ssd_dt_row_avx2(int64_t n, const float *raw, const float *bias, int softplus, int limit, float lo, float hi, float *out) {
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps(), l8 = _mm256_set1_ps(lo), h8 = _mm256_set1_ps(hi);
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    int64_t k;
    for (k = 0; k + 8 <= n; k += 8) {
        __m256 v = _mm256_add_ps(_mm256_loadu_ps(raw + k), _mm256_loadu_ps(bias + k));
        if (softplus) {
            __m256 u = nam__ssd_exp8(_mm256_sub_ps(zero, _mm256_and_ps(v, absmask))), w = _mm256_add_ps(one, u);
            __m256 lp = _mm256_mul_ps(nam__ssd_log8(w), _mm256_div_ps(u, _mm256_sub_ps(w, one)));
            __m256 sp;
            lp = _mm256_blendv_ps(lp, u, _mm256_cmp_ps(w, one, _CMP_EQ_OQ));
            sp = _mm256_add_ps(_mm256_max_ps(zero, v), lp);                  /* max(0, NaN) = NaN */
            v = _mm256_blendv_ps(sp, v, _mm256_cmp_ps(v, _mm256_set1_ps(20.0f), _CMP_GT_OQ));
        }
        if (limit) {
            v = _mm256_blendv_ps(v, l8, _mm256_cmp_ps(v, l8, _CMP_LT_OQ));
            v = _mm256_blendv_ps(v, h8, _mm256_cmp_ps(v, h8, _CMP_GT_OQ));
        }
        _mm256_storeu_ps(out + k, v);
    }
    nam__ssd_dt_row_c(n - k, raw + k, bias + k, softplus, limit, lo, hi, out + k);
}

NAM__TARGET_AVX2 static void nam__ssd_exp_avx2(int64_t n, const float *x, float *y) {
    int64_t i;
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, nam__ssd_exp8(_mm256_loadu_ps(x + i)));
    for (; i < n; i++) y[i] = expf(x[i]);
}

/* The W panel of nam__ssd_wpanel_c, 8 columns at a time: six 8-lane rows, then an 8x8
   transpose whose columns are stored 6 floats apart (each store's 2 spare lanes are
   overwritten by the next; P needs 8 floats of slack past column K2 rounded up to 8).
   cum, dtc and the G rows must be readable up to K2 rounded up to 8. */
NAM__TARGET_AVX2 static void nam__ssd_wpanel_avx2(int64_t i0, int m, int64_t K2, const double *cum, const float *G, int64_t ldg,
                                                           const float *dtc, float dfold, int mono, float *P) {
    const __m256 iota = _mm256_set_ps(7, 6, 5, 4, 3, 2, 1, 0), zero = _mm256_setzero_ps(), dv = _mm256_set1_ps(dfold);
    float u[8];
    int64_t j0;
    int r;
    /* mono (every A*dt of the chunk <= 0): exp(cum_i - cum_j) = exp(cum_i - cum_i0) exp(cum_i0 - cum_j),
       both exponents <= 0, for the column blocks left of row i0 (one exp per column, not per element) */
    if (mono)
        for (r = 0; r < 8; r++) u[r] = r < m ? expf(NAM__CAST(float, cum[i0 + r] - cum[i0])) : 0.0f;
    for (j0 = 0; j0 < K2; j0 += 8) {
        __m256 row[8], t0, t1, t2, t3, t4, t5, t6, t7, s0, s1, s2, s3, s4, s5, s6, s7;
        __m256 jv = _mm256_add_ps(_mm256_set1_ps(NAM__CAST(float, j0)), iota), dt8 = _mm256_loadu_ps(dtc + j0);
        __m256d cj0 = _mm256_loadu_pd(cum + j0), cj1 = _mm256_loadu_pd(cum + j0 + 4);
        if (mono && j0 + 8 <= i0 + 1) {
            __m256d ci = _mm256_set1_pd(cum[i0]);
            __m128 lo4 = _mm256_cvtpd_ps(_mm256_sub_pd(ci, cj0)), hi4 = _mm256_cvtpd_ps(_mm256_sub_pd(ci, cj1));
            __m256 vd = _mm256_mul_ps(nam__ssd_exp8(_mm256_insertf128_ps(_mm256_castps128_ps256(lo4), hi4, 1)), dt8);
            for (r = 0; r < NAM__SSD_MR; r++)
                row[r] = _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(G + (i0 + r) * ldg + j0), vd), _mm256_broadcast_ss(u + r));
        } else for (r = 0; r < NAM__SSD_MR; r++) {
            int64_t i = i0 + r;
            if (r < m && j0 <= i) {
                __m256d ci = _mm256_set1_pd(cum[i]);
                __m128 lo4 = _mm256_cvtpd_ps(_mm256_sub_pd(ci, cj0)), hi4 = _mm256_cvtpd_ps(_mm256_sub_pd(ci, cj1));
                __m256 v = nam__ssd_exp8(_mm256_insertf128_ps(_mm256_castps128_ps256(lo4), hi4, 1));
                __m256 iv = _mm256_set1_ps(NAM__CAST(float, i));
                v = _mm256_mul_ps(_mm256_mul_ps(v, _mm256_loadu_ps(G + i * ldg + j0)), dt8);
                v = _mm256_blendv_ps(v, zero, _mm256_cmp_ps(jv, iv, _CMP_GT_OQ));
                row[r] = _mm256_add_ps(v, _mm256_and_ps(dv, _mm256_cmp_ps(jv, iv, _CMP_EQ_OQ)));
            } else {
                row[r] = zero;
            }
        }
        row[6] = row[7] = zero;
        t0 = _mm256_unpacklo_ps(row[0], row[1]); t1 = _mm256_unpackhi_ps(row[0], row[1]);
        t2 = _mm256_unpacklo_ps(row[2], row[3]); t3 = _mm256_unpackhi_ps(row[2], row[3]);
        t4 = _mm256_unpacklo_ps(row[4], row[5]); t5 = _mm256_unpackhi_ps(row[4], row[5]);
        t6 = _mm256_unpacklo_ps(row[6], row[7]); t7 = _mm256_unpackhi_ps(row[6], row[7]);
        s0 = _mm256_shuffle_ps(t0, t2, 0x44); s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
        s2 = _mm256_shuffle_ps(t1, t3, 0x44); s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
        s4 = _mm256_shuffle_ps(t4, t6, 0x44); s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
        s6 = _mm256_shuffle_ps(t5, t7, 0x44); s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
        _mm256_storeu_ps(P + (j0 + 0) * NAM__SSD_MR, _mm256_permute2f128_ps(s0, s4, 0x20));
        _mm256_storeu_ps(P + (j0 + 1) * NAM__SSD_MR, _mm256_permute2f128_ps(s1, s5, 0x20));
        _mm256_storeu_ps(P + (j0 + 2) * NAM__SSD_MR, _mm256_permute2f128_ps(s2, s6, 0x20));
        _mm256_storeu_ps(P + (j0 + 3) * NAM__SSD_MR, _mm256_permute2f128_ps(s3, s7, 0x20));
        _mm256_storeu_ps(P + (j0 + 4) * NAM__SSD_MR, _mm256_permute2f128_ps(s0, s4, 0x31));
        _mm256_storeu_ps(P + (j0 + 5) * NAM__SSD_MR, _mm256_permute2f128_ps(s1, s5, 0x31));
        _mm256_storeu_ps(P + (j0 + 6) * NAM__SSD_MR, _mm256_permute2f128_ps(s2, s6, 0x31));
        _mm256_storeu_ps(P + (j0 + 7) * NAM__SSD_MR, _mm256_permute2f128_ps(s3, s7, 0x31));
    }
}

/* y[i] *= silu(z[i]) */
NAM__TARGET_AVX2 static void nam__ssd_silu_mul_avx2(int64_t n, const float *z, float *y) {
    int64_t i;
    const __m256 one = _mm256_set1_ps(1.0f);
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 zv = _mm256_loadu_ps(z + i);
        __m256 s = _mm256_div_ps(zv, _mm256_add_ps(one, nam__ssd_exp8(_mm256_sub_ps(_mm256_setzero_ps(), zv))));
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), s));
    }
    for (; i < n; i++) y[i] *= nam__silu(z[i]);
}

NAM__TARGET_AVX2 static void nam__ssd_pack_row_avx2(int64_t p, int64_t p16, const float *src, float wj, float *xp, float *xw) {
    __m256 w8 = _mm256_set1_ps(wj);
    int64_t c;
    for (c = 0; c + 8 <= p; c += 8) {
        __m256 v = _mm256_loadu_ps(src + c);
        _mm256_storeu_ps(xp + c, v);
        _mm256_storeu_ps(xw + c, _mm256_mul_ps(w8, v));
    }
    for (; c < p; c++) { xp[c] = src[c]; xw[c] = wj * src[c]; }
    for (; c < p16; c++) xp[c] = xw[c] = 0.0f;
}

NAM__TARGET_AVX2 static void nam__ssd_axpy_avx2(int64_t n, const float *y, const float *D, const float *x, float *out) {
    int64_t c;
    for (c = 0; c + 8 <= n; c += 8)
        _mm256_storeu_ps(out + c, _mm256_fmadd_ps(_mm256_loadu_ps(D + c), _mm256_loadu_ps(x + c), _mm256_loadu_ps(y + c)));
    for (; c < n; c++) out[c] = y[c] + D[c] * x[c];
}
#endif /* NAM__X86_SIMD */

/* The vector primitives of the fast path: AVX2+FMA or portable C, chosen once per call. */
typedef struct nam__ssd_ops {
    void (*kern)(const nam__ssd_tile *);
    void (*wpanel)(int64_t, int, int64_t, const double *, const float *, int64_t, const float *, float, int, float *);
    void (*vexp)(int64_t, const float *, float *);
    void (*silu_mul)(int64_t, const float *, float *);
    void (*pack_row)(int64_t, int64_t, const float *, float, float *, float *);
    void (*axpy)(int64_t, const float *, const float *, const float *, float *);
    void (*dt_row)(int64_t, const float *, const float *, int, int, float, float, float *);
} nam__ssd_ops;

static void nam__ssd_pick_ops(nam__ssd_ops *o) {
    o->kern = nam__ssd_kern_c; o->wpanel = nam__ssd_wpanel_c; o->vexp = nam__ssd_exp_c;
    o->silu_mul = nam__ssd_silu_mul_c; o->pack_row = nam__ssd_pack_row_c; o->axpy = nam__ssd_axpy_c; o->dt_row = nam__ssd_dt_row_c;
#if NAM__X86_SIMD
    if (nam__cpu_avx2_fma()) {
        o->kern = nam__ssd_kern_avx2; o->wpanel = nam__ssd_wpanel_avx2; o->vexp = nam__ssd_exp_avx2;
        o->silu_mul = nam__ssd_silu_mul_avx2; o->pack_row = nam__ssd_pack_row_avx2; o->axpy = nam__ssd_axpy_avx2; o->dt_row = nam__ssd_dt_row_avx2;
    }
#endif
}


/* ---- small helpers ------------------------------------------------------------------ */
/* dt' = dt + bias (already added); softplus when asked; clamp to [lo, hi] when a limit is set. NaN stays NaN. */
static double nam__ssd_dt_d(double v, int softplus, int limit, double lo, double hi) {
    if (softplus) v = v <= 20.0 ? log1p(exp(v)) : v;
    if (limit) v = v < lo ? lo : v > hi ? hi : v;
    return v;
}

/* `count` floats of t from element `off`, element step `es`: a pointer into t's data when
   it is f32 with unit step, else converted into tmp. */
static const float *nam__ssd_row(const nam_tensor *t, int64_t off, int64_t es, int64_t count, float *tmp) {
    int64_t i;
    if (t->dtype == NAM_F32 && es == 1) return NAM__CAST(const float *, t->data) + off;
    for (i = 0; i < count; i++) tmp[i] = nam__load(t->data, t->dtype, off + i * es);
    return tmp;
}
static void nam__ssd_row_store(nam_tensor *t, int64_t off, int64_t es, int64_t count, const float *src) {
    int64_t i;
    if (t->dtype == NAM_F32 && es == 1) {
        float *dst = NAM__CAST(float *, t->data) + off;
        if (dst != src) memcpy(dst, src, sizeof(float) * NAM__CAST(size_t, count));
        return;
    }
    for (i = 0; i < count; i++) nam__store(t->data, t->dtype, off + i * es, src[i]);
}

static nam_status nam__ssd_f32(const nam_tensor *t, const char *field, nam_error *err) {
    if (t->data && t->dtype != NAM_F32)
        return nam__err(err, NAM_ERR_INVALID_ARG, "%s: dtype %s, expected f32", field, nam_dtype_name(t->dtype));
    return NAM_OK;
}

static nam_status nam__ssd_numel(const nam_tensor *t, const char *field, nam_error *err) {
    int64_t n = 1;
    int i;
    if (!t->data) return NAM_OK;
    for (i = 0; i < t->ndim; i++) {
        if (t->shape[i] > NAM__SSD_MAX_NUMEL / n)
            return nam__err(err, NAM_ERR_LIMIT, "%s has more than 2^40 elements", field);
        n *= t->shape[i];
    }
    return NAM_OK;
}

/* dims (b, l, h, p, g, n) and the options shared by nam_ssd and its workspace query. */
typedef struct nam__ssd_dims {
    int64_t b, l, h, p, g, n;
    int Q;
    nam_backend be;
} nam__ssd_dims;

#define NAM__SSD_TRY(call)                  \
    do {                                    \
        nam_status st_ = (call);            \
        if (st_ != NAM_OK) return st_;      \
    } while (0)

static nam_status nam__ssd_check_dt_opts(int softplus, float dt_min, float dt_max, nam_error *err) {
    (void)softplus;
    if (dt_min != dt_min || dt_max != dt_max) return nam__err(err, NAM_ERR_INVALID_ARG, "dt_min / dt_max is NaN");
    if (dt_min == HUGE_VALF || dt_min == -HUGE_VALF) return nam__err(err, NAM_ERR_RANGE, "dt_min = %g is not finite", NAM__CAST(double, dt_min));
    if (dt_max != 0.0f && dt_max < dt_min)
        return nam__err(err, NAM_ERR_RANGE, "dt_max = %g is below dt_min = %g (dt_max 0 means no upper limit)",
                        NAM__CAST(double, dt_max), NAM__CAST(double, dt_min));
    return NAM_OK;
}

/* D: (h) or (h, p). */
static nam_status nam__ssd_check_D(const nam_tensor *D, int64_t h, int64_t p, const char *hfrom, const char *pfrom, nam_error *err) {
    if (!D->data) return NAM_OK;
    if (D->ndim == 1) {
        NAM__SSD_TRY(nam__tensor_basic(D, "D", 1, "h", 1, err));
        return nam__tensor_dim(D, "D", 0, "h", h, hfrom, err);
    }
    if (D->ndim == 2) {
        NAM__SSD_TRY(nam__tensor_basic(D, "D", 2, "h,p", 1, err));
        NAM__SSD_TRY(nam__tensor_dim(D, "D", 0, "h", h, hfrom, err));
        return nam__tensor_dim(D, "D", 1, "p", p, pfrom, err);
    }
    NAM__SSD_TRY(nam__tensor_basic(D, "D", D->ndim, "h", 1, err));   /* device / dtype first */
    return nam__err(err, NAM_ERR_INVALID_ARG, "D: %d dimensions, expected 1 (h) or 2 (h,p)", D->ndim);
}

static nam_status nam__ssd_validate(const nam_ssd_desc *d, nam__ssd_dims *o, nam_error *err) {
    int64_t b, l, h, p, g, n;
    if (!d) return nam__err(err, NAM_ERR_INVALID_ARG, "desc is NULL");
    NAM__SSD_TRY(nam_query_backend(d->backend, d->x.device, &o->be, err));
    NAM__SSD_TRY(nam__tensor_basic(&d->x, "x", 4, "b,l,h,p", 0, err));
    NAM__SSD_TRY(nam__ssd_numel(&d->x, "x", err));
    b = d->x.shape[0]; l = d->x.shape[1]; h = d->x.shape[2]; p = d->x.shape[3];
    if (h > NAM__SSD_MAX_DIM || p > NAM__SSD_MAX_DIM)
        return nam__err(err, NAM_ERR_LIMIT, "x: h = %lld, p = %lld; each must be at most 2^24", NAM__CAST(long long, h), NAM__CAST(long long, p));
    NAM__SSD_TRY(nam__tensor_basic(&d->dt, "dt", 3, "b,l,h", 0, err));
    NAM__SSD_TRY(nam__tensor_dim(&d->dt, "dt", 0, "b", b, "x.shape[0]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->dt, "dt", 1, "l", l, "x.shape[1]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->dt, "dt", 2, "h", h, "x.shape[2]", err));
    NAM__SSD_TRY(nam__tensor_basic(&d->A, "A", 1, "h", 0, err));
    NAM__SSD_TRY(nam__ssd_f32(&d->A, "A", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->A, "A", 0, "h", h, "x.shape[2]", err));
    NAM__SSD_TRY(nam__tensor_basic(&d->B, "B", 4, "b,l,g,n", 0, err));
    NAM__SSD_TRY(nam__ssd_numel(&d->B, "B", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->B, "B", 0, "b", b, "x.shape[0]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->B, "B", 1, "l", l, "x.shape[1]", err));
    g = d->B.shape[2]; n = d->B.shape[3];
    if (h % g != 0)
        return nam__err(err, NAM_ERR_INVALID_ARG, "B.shape[2] (g) = %lld does not divide x.shape[2] (h) = %lld",
                        NAM__CAST(long long, g), NAM__CAST(long long, h));
    if (n > NAM__SSD_MAX_DIM)
        return nam__err(err, NAM_ERR_LIMIT, "B.shape[3] (n) = %lld is above 2^24", NAM__CAST(long long, n));
    NAM__SSD_TRY(nam__tensor_basic(&d->C, "C", 4, "b,l,g,n", 0, err));
    NAM__SSD_TRY(nam__tensor_dim(&d->C, "C", 0, "b", b, "x.shape[0]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->C, "C", 1, "l", l, "x.shape[1]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->C, "C", 2, "g", g, "B.shape[2]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->C, "C", 3, "n", n, "B.shape[3]", err));
    NAM__SSD_TRY(nam__ssd_check_D(&d->D, h, p, "x.shape[2]", "x.shape[3]", err));
    NAM__SSD_TRY(nam__tensor_basic(&d->z, "z", 4, "b,l,h,p", 1, err));
    if (d->z.data) {
        NAM__SSD_TRY(nam__tensor_dim(&d->z, "z", 0, "b", b, "x.shape[0]", err));
        NAM__SSD_TRY(nam__tensor_dim(&d->z, "z", 1, "l", l, "x.shape[1]", err));
        NAM__SSD_TRY(nam__tensor_dim(&d->z, "z", 2, "h", h, "x.shape[2]", err));
        NAM__SSD_TRY(nam__tensor_dim(&d->z, "z", 3, "p", p, "x.shape[3]", err));
    }
    NAM__SSD_TRY(nam__tensor_basic(&d->dt_bias, "dt_bias", 1, "h", 1, err));
    if (d->dt_bias.data) NAM__SSD_TRY(nam__tensor_dim(&d->dt_bias, "dt_bias", 0, "h", h, "x.shape[2]", err));
    NAM__SSD_TRY(nam__tensor_basic(&d->initial_states, "initial_states", 4, "b,h,p,n", 1, err));
    if (d->initial_states.data) {
        NAM__SSD_TRY(nam__ssd_f32(&d->initial_states, "initial_states", err));
        NAM__SSD_TRY(nam__tensor_dim(&d->initial_states, "initial_states", 0, "b", b, "x.shape[0]", err));
        NAM__SSD_TRY(nam__tensor_dim(&d->initial_states, "initial_states", 1, "h", h, "x.shape[2]", err));
        NAM__SSD_TRY(nam__tensor_dim(&d->initial_states, "initial_states", 2, "p", p, "x.shape[3]", err));
        NAM__SSD_TRY(nam__tensor_dim(&d->initial_states, "initial_states", 3, "n", n, "B.shape[3]", err));
    }
    NAM__SSD_TRY(nam__tensor_basic(&d->out, "out", 4, "b,l,h,p", 0, err));
    NAM__SSD_TRY(nam__tensor_dim(&d->out, "out", 0, "b", b, "x.shape[0]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->out, "out", 1, "l", l, "x.shape[1]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->out, "out", 2, "h", h, "x.shape[2]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->out, "out", 3, "p", p, "x.shape[3]", err));
    NAM__SSD_TRY(nam__tensor_basic(&d->final_states, "final_states", 4, "b,h,p,n", 1, err));
    if (d->final_states.data) {
        NAM__SSD_TRY(nam__ssd_f32(&d->final_states, "final_states", err));
        NAM__SSD_TRY(nam__tensor_dim(&d->final_states, "final_states", 0, "b", b, "x.shape[0]", err));
        NAM__SSD_TRY(nam__tensor_dim(&d->final_states, "final_states", 1, "h", h, "x.shape[2]", err));
        NAM__SSD_TRY(nam__tensor_dim(&d->final_states, "final_states", 2, "p", p, "x.shape[3]", err));
        NAM__SSD_TRY(nam__tensor_dim(&d->final_states, "final_states", 3, "n", n, "B.shape[3]", err));
        NAM__SSD_TRY(nam__ssd_numel(&d->final_states, "final_states", err));
    }
    if (d->chunk_size < 0 || d->chunk_size > 4096)
        return nam__err(err, NAM_ERR_RANGE, "chunk_size = %d is out of range (1..4096; 0 means the backend's default, 64 on cpu and 256 on cuda)", d->chunk_size);
    NAM__SSD_TRY(nam__ssd_check_dt_opts(d->dt_softplus, d->dt_min, d->dt_max, err));
    {
        const nam_tensor *ts[11];
        static const char *const nm[11] = {"x", "dt", "A", "B", "C", "D", "z", "dt_bias", "initial_states", "out", "final_states"};
        ts[0] = &d->x; ts[1] = &d->dt; ts[2] = &d->A; ts[3] = &d->B; ts[4] = &d->C; ts[5] = &d->D; ts[6] = &d->z;
        ts[7] = &d->dt_bias; ts[8] = &d->initial_states; ts[9] = &d->out; ts[10] = &d->final_states;
        NAM__SSD_TRY(nam__same_device(11, ts, nm, err));
    }
    o->b = b; o->l = l; o->h = h; o->p = p; o->g = g; o->n = n;
    return NAM_OK;
}

/* The chunk length nam_ssd runs with on backend be (the rule of nam_ssd_desc.chunk_size).
   cpu: the request, 0 -> 64 (the fast path's tuned size). cuda: 0 -> 256 (the CUDA kernels'
   tuned size, measured on an H200 in bench/RESULTS.md), a request rounded up to 64, 128 or
   256, and never above l rounded up to 64 (the kernels' tiles are 64 tokens), so a multiple
   of 64 up to 256. cpu-ref: 0, the sequential recurrence has no chunks. */
static int nam__ssd_chunk(nam_backend be, int chunk_size, int64_t l) {
    int q, lq;
    if (be == NAM_BACKEND_CPU_REF) return 0;
    if (be != NAM_BACKEND_CUDA) return chunk_size ? chunk_size : 64;
    q = chunk_size == 0 ? 256 : chunk_size <= 64 ? 64 : chunk_size <= 128 ? 128 : 256;
    lq = NAM__CAST(int, l < 256 ? (l + 63) / 64 * 64 : 256);
    return q < lq ? q : lq;
}

/* dt_max as the kernels read it: with a dt limit set (dt_min or dt_max non-zero) and no
   positive dt_max, +inf (no upper limit); otherwise as given. */
static float nam__ssd_dt_max(float dt_min, float dt_max) {
    return (dt_min != 0.0f || dt_max != 0.0f) && !(dt_max > 0.0f) ? HUGE_VALF : dt_max;
}

/* nam__ssd_desc_defaults: validate *d, then *r = *d with every default resolved, the one
   place they are (nam_ssd, nam_ssd_workspace_size and the CUDA hooks all read *r):
     backend     AUTO -> the backend that runs (nam_query_backend)
     threads     nam__desc_threads
     chunk_size  nam__ssd_chunk (per backend: cpu 0 -> 64, cuda 0 -> 256)
     dt_max      nam__ssd_dt_max
   and dm the dimensions, dm->Q = r->chunk_size. */
static nam_status nam__ssd_desc_defaults(const nam_ssd_desc *d, nam_ssd_desc *r, nam__ssd_dims *dm, nam_error *err) {
    NAM__SSD_TRY(nam__ssd_validate(d, dm, err));
    *r = *d;
    r->backend = dm->be;
    r->threads = nam__desc_threads(dm->be, d->threads);
    r->chunk_size = dm->Q = nam__ssd_chunk(dm->be, d->chunk_size, dm->l);
    r->dt_max = nam__ssd_dt_max(d->dt_min, d->dt_max);
    return NAM_OK;
}

/* ---- workspace layout of the fast path ----------------------------------------------- */
typedef struct nam__ssd_layout {
    int64_t Q, Q6, Q16, Qv, n6, p16, nck;
    int64_t cp_sz, btp_sz, g_sz;        /* floats per (b, g, chunk) */
    size_t off_dt, off_A, off_bias, off_D, off_B, off_C, off_cp, off_btp, off_g, off_slab;
    size_t slab_bytes, total;
    /* offsets inside one thread's slab */
    size_t s_xp, s_xw, s_wp, s_s, s_y, s_cum, s_e, s_w, s_dtc, s_tmp, s_row, s_zrow, s_orow, s_bn;
    int slabs;
} nam__ssd_layout;

static size_t nam__ssd_f(int64_t nfloats) { return nam__ws_need(sizeof(float) * NAM__CAST(size_t, nfloats)); }

/* copy_b / copy_c: B / C are not contiguous f32, so phase 1 reads f32 copies in the workspace. */
static void nam__ssd_plan(const nam__ssd_dims *dm, int threads, int copy_b, int copy_c, nam__ssd_layout *L) {
    int64_t b = dm->b, l = dm->l, h = dm->h, p = dm->p, g = dm->g, n = dm->n, tasks;
    size_t o = 0, s = 0;
    L->Q = dm->Q;
    L->Q6 = nam__ssd_up(L->Q, NAM__SSD_MR);
    L->Q16 = nam__ssd_up(L->Q, NAM__SSD_NR);
    L->Qv = (L->Q6 > L->Q16 ? L->Q6 : L->Q16) + 8;
    L->n6 = nam__ssd_up(n, NAM__SSD_MR);
    L->p16 = nam__ssd_up(p, NAM__SSD_NR);
    L->nck = (l + L->Q - 1) / L->Q;
    L->cp_sz = L->Q6 * n;
    L->btp_sz = L->n6 * L->Q;
    L->g_sz = L->Q6 * L->Q16;
    L->off_dt = o; o += nam__ssd_f(b * l * h);
    L->off_A = o; o += nam__ssd_f(h);
    L->off_bias = o; o += nam__ssd_f(h);
    L->off_D = o; o += nam__ssd_f(h * p);
    L->off_B = o; o += copy_b ? nam__ssd_f(b * l * g * n) : 0;
    L->off_C = o; o += copy_c ? nam__ssd_f(b * l * g * n) : 0;
    L->off_cp = o; o += nam__ssd_f(b * g * L->nck * L->cp_sz);
    L->off_btp = o; o += nam__ssd_f(b * g * L->nck * L->btp_sz);
    L->off_g = o; o += nam__ssd_f(b * g * L->nck * L->g_sz);
    L->off_slab = o;
    L->s_xp = s; s += nam__ssd_f(L->Q * L->p16);
    L->s_xw = s; s += nam__ssd_f(L->Q * L->p16);
    L->s_wp = s; s += nam__ssd_f(L->Q6 * L->Q + 64);          /* + slack of the W panel stores */
    tasks = (b * h + (threads < b * h ? threads : b * h) - 1) / (threads < b * h ? threads : b * h);
    L->s_s = s; s += nam__ssd_f(tasks * L->n6 * L->p16);       /* the states of a thread's (b, h) range */
    L->s_y = s; s += nam__ssd_f(L->Q6 * L->p16);
    L->s_cum = s; s += nam__ssd_f(2 * L->Qv);                 /* doubles */
    L->s_e = s; s += nam__ssd_f(L->Qv);
    L->s_w = s; s += nam__ssd_f(L->Qv);
    L->s_dtc = s; s += nam__ssd_f(L->Qv);
    L->s_tmp = s; s += nam__ssd_f(L->Qv);
    L->s_row = s; s += nam__ssd_f(L->p16);
    L->s_zrow = s; s += nam__ssd_f(L->p16);
    L->s_orow = s; s += nam__ssd_f(L->p16);
    L->s_bn = s; s += nam__ssd_f(L->Q16 * n);
    L->slab_bytes = s;
    tasks = b * h > b * g * L->nck ? b * h : b * g * L->nck;
    L->slabs = threads < tasks ? threads : NAM__CAST(int, tasks);
    if (L->slabs < 1) L->slabs = 1;
    L->total = o + NAM__CAST(size_t, L->slabs) * s;
}

static nam_status nam__ssd_workspace_size_body(const nam_ssd_desc *d, size_t *bytes, nam_error *err) {
    nam__ssd_dims dm;
    nam__ssd_layout L;
    nam_ssd_desc r;
    nam_status st;
    memset(&dm, 0, sizeof dm);
    if (!bytes) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_ssd_workspace_size: bytes is NULL");
    *bytes = 0;
    st = nam__ssd_desc_defaults(d, &r, &dm, err);
    if (st != NAM_OK) { nam__err_prefix(err, "nam_ssd_workspace_size: "); return st; }
#ifdef NAM_CUDA
    if (dm.be == NAM_BACKEND_CUDA) return nam_cuda__ssd_workspace_size(&r, bytes, err);
#endif
    if (dm.be == NAM_BACKEND_CPU_REF) *bytes = nam__ws_need(sizeof(double) * NAM__CAST(size_t, dm.n));
    else {
        nam__ssd_plan(&dm, r.threads, !nam__tensor_is_contig_f32(&r.B), !nam__tensor_is_contig_f32(&r.C), &L);
        *bytes = L.total;
    }
    if (err) nam__err_reset(err);
    return NAM_OK;
}

NAM__DEF nam_status nam_ssd_workspace_size(const nam_ssd_desc *d, size_t *bytes, nam_error *err) {
    nam_status st;
    NAM__FP_CALL(st, nam__ssd_workspace_size_body(d, bytes, err));
    return st;
}


/* ---- reference: the sequential recurrence in double ---------------------------------- */
static void nam__ssd_ref(nam_ssd_desc *d, const nam__ssd_dims *dm, double *st) {
    int64_t xs[4], dts[4], As[4], Bs[4], Cs[4], Ds[4], zs[4], bs[4], is[4], os[4], fs[4];
    int64_t bi, hi, pi, t, k, hpg = dm->h / dm->g;
    int limit = d->dt_min != 0.0f || d->dt_max != 0.0f;
    double lo = d->dt_min, hi_lim = d->dt_max;   /* resolved: +inf for no upper limit */
    nam__tensor_strides(&d->x, xs); nam__tensor_strides(&d->dt, dts); nam__tensor_strides(&d->A, As);
    nam__tensor_strides(&d->B, Bs); nam__tensor_strides(&d->C, Cs); nam__tensor_strides(&d->D, Ds);
    nam__tensor_strides(&d->z, zs); nam__tensor_strides(&d->dt_bias, bs); nam__tensor_strides(&d->initial_states, is);
    nam__tensor_strides(&d->out, os); nam__tensor_strides(&d->final_states, fs);
    for (bi = 0; bi < dm->b; bi++)
        for (hi = 0; hi < dm->h; hi++) {
            int64_t gi = hi / hpg;
            double A = nam__load(d->A.data, d->A.dtype, hi * As[0]);
            double bias = d->dt_bias.data ? nam__load(d->dt_bias.data, d->dt_bias.dtype, hi * bs[0]) : 0.0;
            for (pi = 0; pi < dm->p; pi++) {
                double Dv = 0.0;
                if (d->D.data) Dv = nam__load(d->D.data, d->D.dtype, hi * Ds[0] + (d->D.ndim == 2 ? pi * Ds[1] : 0));
                for (k = 0; k < dm->n; k++)
                    st[k] = d->initial_states.data ? NAM__CAST(const float *, d->initial_states.data)[bi * is[0] + hi * is[1] + pi * is[2] + k * is[3]] : 0.0;
                for (t = 0; t < dm->l; t++) {
                    double dtv = nam__load(d->dt.data, d->dt.dtype, bi * dts[0] + t * dts[1] + hi * dts[2]) + bias;
                    double xv = nam__load(d->x.data, d->x.dtype, bi * xs[0] + t * xs[1] + hi * xs[2] + pi * xs[3]);
                    double dA, y = 0.0;
                    int64_t bo = bi * Bs[0] + t * Bs[1] + gi * Bs[2], co = bi * Cs[0] + t * Cs[1] + gi * Cs[2];
                    dtv = nam__ssd_dt_d(dtv, d->dt_softplus, limit, lo, hi_lim);
                    dA = exp(dtv * A);
                    for (k = 0; k < dm->n; k++) {
                        st[k] = dA * st[k] + dtv * nam__load(d->B.data, d->B.dtype, bo + k * Bs[3]) * xv;
                        y += nam__load(d->C.data, d->C.dtype, co + k * Cs[3]) * st[k];
                    }
                    y += Dv * xv;
                    if (d->z.data) {
                        double zv = nam__load(d->z.data, d->z.dtype, bi * zs[0] + t * zs[1] + hi * zs[2] + pi * zs[3]);
                        y *= nam__silu_d(zv);
                    }
                    nam__store(d->out.data, d->out.dtype, bi * os[0] + t * os[1] + hi * os[2] + pi * os[3], NAM__CAST(float, y));
                }
                if (d->final_states.data)
                    for (k = 0; k < dm->n; k++)
                        NAM__CAST(float *, d->final_states.data)[bi * fs[0] + hi * fs[1] + pi * fs[2] + k * fs[3]] = NAM__CAST(float, st[k]);
            }
        }
}

/* ---- fast path ------------------------------------------------------------------------ */
typedef struct nam__ssd_ctx {
    nam_ssd_desc *d;
    nam__ssd_dims dm;
    nam__ssd_layout L;
    nam__ssd_ops ops;
    char *ws;
    int64_t xs[4], zs[4], os[4], is[4], fs[4];
    int limit;
    int odirect;   /* out f32 with unit step in p, p % 16 == 0, no z, D absent or (h): tiles go straight into out */
    float lo, hi;
    const float *Bc, *Cc;   /* B, C as contiguous f32 (b, l, g, n): the tensors, or copies in the workspace */
} nam__ssd_ctx;

#define NAM__SSD_PTR(c, off) NAM__CAST(float *, NAM__CAST(void *, (c)->ws + (off)))

/* Phase 1: pack C (6-row panels, K = n), B^T (6-row panels over n, K = tokens) and
   G = C B^T (causal tiles) of one (b, g, chunk). */
static void nam__ssd_phase1(void *vctx, int64_t begin, int64_t end, int thread) {
    nam__ssd_ctx *c = NAM__CAST(nam__ssd_ctx *, vctx);
    const nam__ssd_layout *L = &c->L;
    int64_t n = c->dm.n, g = c->dm.g, l = c->dm.l, Q = L->Q, task;
    char *slab = c->ws + L->off_slab + NAM__CAST(size_t, thread) * L->slab_bytes;
    float *Bn = NAM__CAST(float *, NAM__CAST(void *, slab + L->s_bn));
    const float *Bc = c->Bc, *Cc = c->Cc;
    for (task = begin; task < end; task++) {
        int64_t ck = task % L->nck, bg = task / L->nck, bi = bg / g, gi = bg % g;
        int64_t c0 = ck * Q, Qc = nam__ssd_min(Q, l - c0), i, k, r, j, ib, jb;
        float *Cp = NAM__SSD_PTR(c, L->off_cp) + (bg * L->nck + ck) * L->cp_sz;
        float *Btp = NAM__SSD_PTR(c, L->off_btp) + (bg * L->nck + ck) * L->btp_sz;
        float *G = NAM__SSD_PTR(c, L->off_g) + (bg * L->nck + ck) * L->g_sz;
        const float *Brow = Bc + ((bi * l + c0) * g + gi) * n, *Crow = Cc + ((bi * l + c0) * g + gi) * n;
        int64_t rs = g * n;   /* row stride between tokens */
        nam__ssd_tile t;
        if (gi == 0)   /* dt' of the chunk's tokens, all heads, in place */
            for (i = 0; i < Qc; i++) {
                float *row = NAM__SSD_PTR(c, L->off_dt) + (bi * l + c0 + i) * c->dm.h;
                c->ops.dt_row(c->dm.h, row, NAM__SSD_PTR(c, L->off_bias), c->d->dt_softplus, c->limit, c->lo, c->hi, row);
            }
        /* Cp[ib][k][r] = C[c0 + 6 ib + r][k] */
        for (ib = 0; ib * NAM__SSD_MR < Qc; ib++) {
            float *P = Cp + ib * NAM__SSD_MR * n;
            for (r = 0; r < NAM__SSD_MR; r++) {
                i = ib * NAM__SSD_MR + r;
                if (i < Qc) { const float *src = Crow + i * rs; for (k = 0; k < n; k++) P[k * NAM__SSD_MR + r] = src[k]; }
                else for (k = 0; k < n; k++) P[k * NAM__SSD_MR + r] = 0.0f;
            }
        }
        /* Btp[nb][j][r] = B[c0 + j][6 nb + r] */
        for (j = 0; j < Qc; j++) {
            const float *src = Brow + j * rs;
            for (k = 0; k < L->n6; k += NAM__SSD_MR) {
                float *P = Btp + k * Q + j * NAM__SSD_MR;
                for (r = 0; r < NAM__SSD_MR; r++) P[r] = k + r < n ? src[k + r] : 0.0f;
            }
        }
        /* Bn[jb][k][cc] = B[c0 + 16 jb + cc][k] */
        for (jb = 0; jb * NAM__SSD_NR < Qc; jb++) {
            float *P = Bn + jb * NAM__SSD_NR * n;
            for (r = 0; r < NAM__SSD_NR; r++) {
                j = jb * NAM__SSD_NR + r;
                if (j < Qc) { const float *src = Brow + j * rs; for (k = 0; k < n; k++) P[k * NAM__SSD_NR + r] = src[k]; }
                else for (k = 0; k < n; k++) P[k * NAM__SSD_NR + r] = 0.0f;
            }
        }
        /* G (Q6 x Q16, row-major): the tiles on and below the diagonal; the rest stays 0 */
        memset(G, 0, sizeof(float) * NAM__CAST(size_t, L->g_sz));
        memset(&t, 0, sizeof t);
        t.k1 = n; t.ldb1 = NAM__SSD_NR; t.ldc = L->Q16; t.m = NAM__SSD_MR;
        for (ib = 0; ib * NAM__SSD_MR < Qc; ib++) {
            int64_t i0 = ib * NAM__SSD_MR;
            for (jb = 0; jb * NAM__SSD_NR < Qc && jb * NAM__SSD_NR <= i0 + NAM__SSD_MR - 1; jb++) {
                t.a1 = Cp + i0 * n;
                t.b1 = Bn + jb * NAM__SSD_NR * n;
                t.c = G + i0 * L->Q16 + jb * NAM__SSD_NR;
                c->ops.kern(&t);
            }
        }
    }
}

/* Software prefetch of rows of `bytes` bytes, `stride` bytes apart (one head's x rows are
   h*p elements apart, a stride the hardware prefetchers do not follow), a few cache lines
   per step so that the misses overlap the kernel instead of queueing all at once. */
typedef struct nam__ssd_pf { const char *base; int64_t stride, rows, bytes, r, o; } nam__ssd_pf;
static void nam__ssd_pf_step(nam__ssd_pf *f, int lines) {
    for (; lines > 0 && f->r < f->rows; lines--) {
        NAM__SSD_PREFETCH(f->base + f->r * f->stride + f->o, 0);
        f->o += 64;
        if (f->o >= f->bytes) { f->o = 0; f->r++; }
    }
}

/* Phase 2: a range of (b, h); chunk by chunk, every head of the range per chunk, so that a
   chunk's packed C, B^T and G stay in cache across heads and consecutive heads read
   neighbouring x. The range's states S^T live side by side in the slab. */
static void nam__ssd_phase2(void *vctx, int64_t begin, int64_t end, int thread) {
    nam__ssd_ctx *c = NAM__CAST(nam__ssd_ctx *, vctx);
    nam_ssd_desc *d = c->d;
    const nam__ssd_layout *L = &c->L;
    const nam__ssd_ops *ops = &c->ops;
    int64_t l = c->dm.l, h = c->dm.h, p = c->dm.p, g = c->dm.g, n = c->dm.n, Q = L->Q, p16 = L->p16, n6 = L->n6;
    int64_t hpg = h / g, task;
    char *slab = c->ws + L->off_slab + NAM__CAST(size_t, thread) * L->slab_bytes;
#define NAM__SSD_SLAB(off) NAM__CAST(float *, NAM__CAST(void *, slab + (off)))
    float *Xp = NAM__SSD_SLAB(L->s_xp), *Xw = NAM__SSD_SLAB(L->s_xw), *Wp = NAM__SSD_SLAB(L->s_wp);
    float *S = NAM__SSD_SLAB(L->s_s), *Y = NAM__SSD_SLAB(L->s_y);
    float *e = NAM__SSD_SLAB(L->s_e), *w = NAM__SSD_SLAB(L->s_w), *dtc = NAM__SSD_SLAB(L->s_dtc);
    float *tmp = NAM__SSD_SLAB(L->s_tmp), *xrow = NAM__SSD_SLAB(L->s_row), *zrow = NAM__SSD_SLAB(L->s_zrow);
    float *orow = NAM__SSD_SLAB(L->s_orow);
    double *cum = NAM__CAST(double *, NAM__CAST(void *, slab + L->s_cum));
#undef NAM__SSD_SLAB
    const float *dtp = NAM__SSD_PTR(c, L->off_dt), *Af = NAM__SSD_PTR(c, L->off_A), *Dall = NAM__SSD_PTR(c, L->off_D);
    int has_z = d->z.data != NULL, has_final = d->final_states.data != NULL;
    int fold_D = c->odirect && d->D.data != NULL;   /* D (h): added to W's diagonal */
    nam__ssd_tile t;
    nam__ssd_pf pf;
    int64_t ck, ssz = n6 * p16;
    float *S0 = S;
    /* S^T (n6 x p16) in 16-column panels: S[pb][k][cc] = state[p = 16 pb + cc][n = k] */
    memset(S0, 0, sizeof(float) * NAM__CAST(size_t, (end - begin) * ssz));
    if (d->initial_states.data)
        for (task = begin; task < end; task++) {
            const float *is = NAM__CAST(const float *, d->initial_states.data);
            int64_t bi = task / h, hi = task % h, i, k;
            S = S0 + (task - begin) * ssz;
            for (i = 0; i < p; i++)
                for (k = 0; k < n; k++)
                    S[(i / NAM__SSD_NR) * n6 * NAM__SSD_NR + k * NAM__SSD_NR + i % NAM__SSD_NR] =
                        is[bi * c->is[0] + hi * c->is[1] + i * c->is[2] + k * c->is[3]];
        }
    memset(cum, 0, sizeof(double) * NAM__CAST(size_t, L->Qv));
    memset(dtc, 0, sizeof(float) * NAM__CAST(size_t, L->Qv));
    memset(e, 0, sizeof(float) * NAM__CAST(size_t, L->Qv));
    for (ck = 0; ck < L->nck; ck++)
        for (task = begin; task < end; task++) {
            int64_t bi = task / h, hi = task % h, gi = hi / hpg, bg = bi * g + gi, i, j, k, pb, ib;
            const float *Dv = Dall + hi * p;
            float A = Af[hi], dfold = fold_D ? Dv[0] : 0.0f;
            int have_state = d->initial_states.data != NULL || ck > 0;
            int64_t c0 = ck * Q, Qc = nam__ssd_min(Q, l - c0);
            const float *Cp = NAM__SSD_PTR(c, L->off_cp) + (bg * L->nck + ck) * L->cp_sz;
            const float *Btp = NAM__SSD_PTR(c, L->off_btp) + (bg * L->nck + ck) * L->btp_sz;
            const float *G = NAM__SSD_PTR(c, L->off_g) + (bg * L->nck + ck) * L->g_sz;
            int need_state = ck + 1 < L->nck || has_final, mono = 1;
            double acc = 0.0, last;
            float gamma;
            /* dt', cumulative log-decay inside the chunk (double), decays */
            for (j = 0; j < Qc; j++) {
                dtc[j] = dtp[(bi * l + c0 + j) * h + hi];
                acc += NAM__CAST(double, dtc[j]) * A;
                cum[j] = acc;
                if (!(NAM__CAST(double, dtc[j]) * A <= 0.0)) mono = 0;
            }
            for (j = Qc; j < L->Qv; j++) { dtc[j] = 0.0f; cum[j] = 0.0; }
            last = cum[Qc - 1];
            gamma = NAM__CAST(float, exp(last));
            for (j = 0; j < Qc; j++) tmp[j] = NAM__CAST(float, cum[j]);
            ops->vexp(Qc, tmp, e);
            for (j = Qc; j < L->Qv; j++) e[j] = 0.0f;
            for (j = 0; j < Qc; j++) tmp[j] = NAM__CAST(float, last - cum[j]);
            ops->vexp(Qc, tmp, w);
            for (j = 0; j < Qc; j++) w[j] *= dtc[j];
            S = S0 + (task - begin) * ssz;
            memset(&pf, 0, sizeof pf);
            if (task + 1 < end || ck + 1 < L->nck) {   /* the next x rows this thread reads, spread over the tiles */
                int64_t es = d->x.dtype == NAM_F32 ? 4 : 2, nt = task + 1 < end ? task + 1 : begin, nc0 = task + 1 < end ? c0 : c0 + Q;
                pf.base = NAM__CAST(const char *, d->x.data) + ((nt / h) * c->xs[0] + nc0 * c->xs[1] + (nt % h) * c->xs[2]) * es;
                pf.stride = c->xs[1] * es;
                pf.rows = nam__ssd_min(Q, l - nc0);
                pf.bytes = ((p - 1) * c->xs[3] + 1) * es;
            }
            /* X and diag(dt_j exp(cum_last - cum_j)) X, packed (Qc x p16, zero padded). Packing
               matters: in place, the rows are h*p floats apart and share one L1 set. */
            for (j = 0; j < Qc; j++) {
                const float *xr = nam__ssd_row(&d->x, bi * c->xs[0] + (c0 + j) * c->xs[1] + hi * c->xs[2], c->xs[3], p, xrow);
                ops->pack_row(p, p16, xr, w[j], Xp + j * p16, Xw + j * p16);
            }
            /* W in 6-row panels: Wp[ib][j][r], K = min(Qc, ib + 6) */
            for (ib = 0; ib < Qc; ib += NAM__SSD_MR)
                ops->wpanel(ib, NAM__CAST(int, nam__ssd_min(NAM__SSD_MR, Qc - ib)), nam__ssd_min(Qc, ib + NAM__SSD_MR), cum, G,
                            L->Q16, dtc, dfold, mono, Wp + ib * Q);
            /* Y = diag(e) C S^T + W X, into out or into Y */
            memset(&t, 0, sizeof t);
            t.k1 = have_state ? n : 0;
            t.ldb1 = NAM__SSD_NR;
            t.ldb2 = p16;
            for (pb = 0; pb < p16; pb += NAM__SSD_NR)
                for (ib = 0; ib < Qc; ib += NAM__SSD_MR) {
                    t.a1 = Cp + ib * n; t.b1 = S + pb * n6; t.rs = e + ib;
                    t.k2 = nam__ssd_min(Qc, ib + NAM__SSD_MR); t.a2 = Wp + ib * Q; t.b2 = Xp + pb;
                    if (c->odirect) {
                        t.c = NAM__CAST(float *, d->out.data) + bi * c->os[0] + (c0 + ib) * c->os[1] + hi * c->os[2] + pb;
                        t.ldc = c->os[1];
                        t.m = NAM__CAST(int, nam__ssd_min(NAM__SSD_MR, Qc - ib));
                    } else {
                        t.c = Y + ib * p16 + pb;
                        t.ldc = p16;
                        t.m = NAM__SSD_MR;
                    }
                    ops->kern(&t);
                    nam__ssd_pf_step(&pf, 4);
                }
            /* y += D x; y *= silu(z); store */
            if (!c->odirect)
                for (i = 0; i < Qc; i++) {
                    ops->axpy(p, Y + i * p16, Dv, Xp + i * p16, orow);
                    if (has_z) {
                        const float *zr = nam__ssd_row(&d->z, bi * c->zs[0] + (c0 + i) * c->zs[1] + hi * c->zs[2], c->zs[3], p, zrow);
                        ops->silu_mul(p, zr, orow);
                    }
                    nam__ssd_row_store(&d->out, bi * c->os[0] + (c0 + i) * c->os[1] + hi * c->os[2], c->os[3], p, orow);
                }
            /* S^T = gamma S^T + B^T diag(w) X */
            if (need_state) {
                memset(&t, 0, sizeof t);
                t.k1 = Qc; t.ldb1 = p16; t.cs = gamma; t.ldc = NAM__SSD_NR; t.m = NAM__SSD_MR;
                for (pb = 0; pb < p16; pb += NAM__SSD_NR)
                    for (k = 0; k < n6; k += NAM__SSD_MR) {
                        t.a1 = Btp + k * Q; t.b1 = Xw + pb;
                        t.c = S + pb * n6 + k * NAM__SSD_NR;
                        t.cin = t.c;
                        ops->kern(&t);
                        nam__ssd_pf_step(&pf, 2);
                    }
            }
        }
    if (has_final)
        for (task = begin; task < end; task++) {
            float *fsd = NAM__CAST(float *, d->final_states.data);
            int64_t bi = task / h, hi = task % h, i, k;
            S = S0 + (task - begin) * ssz;
            for (i = 0; i < p; i++)
                for (k = 0; k < n; k++)
                    fsd[bi * c->fs[0] + hi * c->fs[1] + i * c->fs[2] + k * c->fs[3]] =
                        S[(i / NAM__SSD_NR) * n6 * NAM__SSD_NR + k * NAM__SSD_NR + i % NAM__SSD_NR];
        }
}

/* The resolved desc d (nam__ssd_desc_defaults) on the CPU: ran and chunk_size_used are set
   by the caller, nam__ssd_body. */
static nam_status nam__ssd_cpu(nam_ssd_desc *d, const nam__ssd_dims *dm, void *workspace, size_t workspace_bytes, nam_error *err) {
    nam__ssd_ctx c;
    int64_t i, j, h, p;
    memset(&c, 0, sizeof c);
    c.dm = *dm;
    if (c.dm.be == NAM_BACKEND_CPU_REF) {
        size_t need = nam__ws_need(sizeof(double) * NAM__CAST(size_t, c.dm.n));
        NAM__SSD_TRY(nam__ws_check(workspace, workspace_bytes, need, "nam_ssd", err));
        nam__ssd_ref(d, &c.dm, NAM__CAST(double *, workspace));
        return NAM_OK;
    }
    nam__ssd_plan(&c.dm, d->threads, !nam__tensor_is_contig_f32(&d->B), !nam__tensor_is_contig_f32(&d->C), &c.L);
    NAM__SSD_TRY(nam__ws_check(workspace, workspace_bytes, c.L.total, "nam_ssd", err));
    c.d = d;
    c.ws = NAM__CAST(char *, workspace);
    h = c.dm.h; p = c.dm.p;
    nam__tensor_strides(&d->x, c.xs); nam__tensor_strides(&d->z, c.zs); nam__tensor_strides(&d->out, c.os);
    nam__tensor_strides(&d->initial_states, c.is); nam__tensor_strides(&d->final_states, c.fs);
    c.limit = d->dt_min != 0.0f || d->dt_max != 0.0f;
    c.lo = d->dt_min;
    c.hi = d->dt_max;   /* resolved: +inf for no upper limit */
    nam__ssd_pick_ops(&c.ops);
    c.odirect = d->out.dtype == NAM_F32 && c.os[3] == 1 && p % NAM__SSD_NR == 0 && !d->z.data && (!d->D.data || d->D.ndim == 1);
    /* contiguous f32 copies of the small inputs */
    nam__pack_f32(&d->dt, NAM__SSD_PTR(&c, c.L.off_dt));
    nam__pack_f32(&d->A, NAM__SSD_PTR(&c, c.L.off_A));
    if (d->dt_bias.data) nam__pack_f32(&d->dt_bias, NAM__SSD_PTR(&c, c.L.off_bias));
    else memset(NAM__SSD_PTR(&c, c.L.off_bias), 0, sizeof(float) * NAM__CAST(size_t, h));
    {
        float *Dv = NAM__SSD_PTR(&c, c.L.off_D);
        if (!d->D.data) memset(Dv, 0, sizeof(float) * NAM__CAST(size_t, h * p));
        else if (d->D.ndim == 2) nam__pack_f32(&d->D, Dv);
        else {
            nam__pack_f32(&d->D, Dv + h * (p - 1));          /* (h) at the end, then spread */
            for (i = 0; i < h; i++) {
                float v = Dv[h * (p - 1) + i];
                for (j = 0; j < p; j++) Dv[i * p + j] = v;
            }
        }
    }
    if (nam__tensor_is_contig_f32(&d->B)) c.Bc = NAM__CAST(const float *, d->B.data);
    else { nam__pack_f32(&d->B, NAM__SSD_PTR(&c, c.L.off_B)); c.Bc = NAM__SSD_PTR(&c, c.L.off_B); }
    if (nam__tensor_is_contig_f32(&d->C)) c.Cc = NAM__CAST(const float *, d->C.data);
    else { nam__pack_f32(&d->C, NAM__SSD_PTR(&c, c.L.off_C)); c.Cc = NAM__SSD_PTR(&c, c.L.off_C); }
    nam__parallel_for(c.dm.b * c.dm.g * c.L.nck, c.L.slabs, nam__ssd_phase1, &c);
    nam__parallel_for(c.dm.b * h, c.L.slabs, nam__ssd_phase2, &c);
    return NAM_OK;
}

static nam_status nam__ssd_body(nam_ssd_desc *d, void *workspace, size_t workspace_bytes, nam_error *err) {
    nam__ssd_dims dm;
    nam_ssd_desc r;
    nam_status st;
    if (d) { d->ran = NAM_BACKEND_AUTO; d->chunk_size_used = 0; }
    memset(&dm, 0, sizeof dm);
    st = nam__ssd_desc_defaults(d, &r, &dm, err);
    if (st != NAM_OK) { nam__err_prefix(err, "nam_ssd: "); return st; }
#ifdef NAM_CUDA
    if (r.backend == NAM_BACKEND_CUDA) st = nam_cuda__ssd(&r, workspace, workspace_bytes, err);
    else
#endif
    st = nam__ssd_cpu(&r, &dm, workspace, workspace_bytes, err);
    if (st != NAM_OK) return st;
    d->ran = r.backend;
    d->chunk_size_used = r.chunk_size;
    return nam__ok(err);
}

NAM__DEF nam_status nam_ssd(nam_ssd_desc *d, void *workspace, size_t workspace_bytes, nam_error *err) {
    nam_status st;
    NAM__FP_CALL(st, nam__ssd_body(d, workspace, workspace_bytes, err));
    return st;
}


/* ---- single-token decode ---------------------------------------------------------------- */
static nam_status nam__ssd_step_validate(const nam_ssd_step_desc *d, nam_backend *be, int64_t dims[5], nam_error *err) {
    int64_t b, h, p, g, n;
    if (!d) return nam__err(err, NAM_ERR_INVALID_ARG, "desc is NULL");
    NAM__SSD_TRY(nam_query_backend(d->backend, d->x.device, be, err));
    NAM__SSD_TRY(nam__tensor_basic(&d->x, "x", 3, "b,h,p", 0, err));
    NAM__SSD_TRY(nam__ssd_numel(&d->x, "x", err));
    b = d->x.shape[0]; h = d->x.shape[1]; p = d->x.shape[2];
    NAM__SSD_TRY(nam__tensor_basic(&d->dt, "dt", 2, "b,h", 0, err));
    NAM__SSD_TRY(nam__tensor_dim(&d->dt, "dt", 0, "b", b, "x.shape[0]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->dt, "dt", 1, "h", h, "x.shape[1]", err));
    NAM__SSD_TRY(nam__tensor_basic(&d->A, "A", 1, "h", 0, err));
    NAM__SSD_TRY(nam__ssd_f32(&d->A, "A", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->A, "A", 0, "h", h, "x.shape[1]", err));
    NAM__SSD_TRY(nam__tensor_basic(&d->B, "B", 3, "b,g,n", 0, err));
    NAM__SSD_TRY(nam__tensor_dim(&d->B, "B", 0, "b", b, "x.shape[0]", err));
    g = d->B.shape[1]; n = d->B.shape[2];
    if (h % g != 0)
        return nam__err(err, NAM_ERR_INVALID_ARG, "B.shape[1] (g) = %lld does not divide x.shape[1] (h) = %lld",
                        NAM__CAST(long long, g), NAM__CAST(long long, h));
    NAM__SSD_TRY(nam__tensor_basic(&d->C, "C", 3, "b,g,n", 0, err));
    NAM__SSD_TRY(nam__tensor_dim(&d->C, "C", 0, "b", b, "x.shape[0]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->C, "C", 1, "g", g, "B.shape[1]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->C, "C", 2, "n", n, "B.shape[2]", err));
    NAM__SSD_TRY(nam__ssd_check_D(&d->D, h, p, "x.shape[1]", "x.shape[2]", err));
    NAM__SSD_TRY(nam__tensor_basic(&d->z, "z", 3, "b,h,p", 1, err));
    if (d->z.data) {
        NAM__SSD_TRY(nam__tensor_dim(&d->z, "z", 0, "b", b, "x.shape[0]", err));
        NAM__SSD_TRY(nam__tensor_dim(&d->z, "z", 1, "h", h, "x.shape[1]", err));
        NAM__SSD_TRY(nam__tensor_dim(&d->z, "z", 2, "p", p, "x.shape[2]", err));
    }
    NAM__SSD_TRY(nam__tensor_basic(&d->dt_bias, "dt_bias", 1, "h", 1, err));
    if (d->dt_bias.data) NAM__SSD_TRY(nam__tensor_dim(&d->dt_bias, "dt_bias", 0, "h", h, "x.shape[1]", err));
    NAM__SSD_TRY(nam__tensor_basic(&d->state, "state", 4, "b,h,p,n", 0, err));
    NAM__SSD_TRY(nam__ssd_f32(&d->state, "state", err));
    NAM__SSD_TRY(nam__ssd_numel(&d->state, "state", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->state, "state", 0, "b", b, "x.shape[0]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->state, "state", 1, "h", h, "x.shape[1]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->state, "state", 2, "p", p, "x.shape[2]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->state, "state", 3, "n", n, "B.shape[2]", err));
    NAM__SSD_TRY(nam__tensor_basic(&d->out, "out", 3, "b,h,p", 0, err));
    NAM__SSD_TRY(nam__tensor_dim(&d->out, "out", 0, "b", b, "x.shape[0]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->out, "out", 1, "h", h, "x.shape[1]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->out, "out", 2, "p", p, "x.shape[2]", err));
    NAM__SSD_TRY(nam__ssd_check_dt_opts(d->dt_softplus, d->dt_min, d->dt_max, err));
    {
        const nam_tensor *ts[10];
        static const char *const nm[10] = {"x", "dt", "A", "B", "C", "D", "z", "dt_bias", "state", "out"};
        ts[0] = &d->x; ts[1] = &d->dt; ts[2] = &d->A; ts[3] = &d->B; ts[4] = &d->C; ts[5] = &d->D; ts[6] = &d->z;
        ts[7] = &d->dt_bias; ts[8] = &d->state; ts[9] = &d->out;
        NAM__SSD_TRY(nam__same_device(10, ts, nm, err));
    }
    dims[0] = b; dims[1] = h; dims[2] = p; dims[3] = g; dims[4] = n;
    return NAM_OK;
}

/* nam__ssd_step_desc_defaults: validate *d, then *r = *d resolved (backend AUTO -> the
   backend that runs, dt_max as nam__ssd_dt_max); dims (b, h, p, g, n). */
static nam_status nam__ssd_step_desc_defaults(const nam_ssd_step_desc *d, nam_ssd_step_desc *r, int64_t dims[5], nam_error *err) {
    nam_backend be = NAM_BACKEND_AUTO;
    NAM__SSD_TRY(nam__ssd_step_validate(d, &be, dims, err));
    *r = *d;
    r->backend = be;
    r->dt_max = nam__ssd_dt_max(d->dt_min, d->dt_max);
    return NAM_OK;
}

/* One token on the CPU, d resolved: state = exp(dt A) state + dt B x (f32 storage, double
   arithmetic), y = C.state + D x. */
static nam_status nam__ssd_step_cpu(const nam_ssd_step_desc *d, const int64_t dims[5], nam_error *err) {
    int64_t xs[4], dts[4], As[4], Bs[4], Cs[4], Ds[4], zs[4], bs[4], ss[4], os[4];
    int64_t b, h, p, g, n, hpg, bi, hi, pi, k;
    int limit;
    double lo, hi_lim;
    b = dims[0]; h = dims[1]; p = dims[2]; g = dims[3]; n = dims[4]; hpg = h / g;
    limit = d->dt_min != 0.0f || d->dt_max != 0.0f;
    lo = d->dt_min;
    hi_lim = d->dt_max;   /* resolved: +inf for no upper limit */
    nam__tensor_strides(&d->x, xs); nam__tensor_strides(&d->dt, dts); nam__tensor_strides(&d->A, As);
    nam__tensor_strides(&d->B, Bs); nam__tensor_strides(&d->C, Cs); nam__tensor_strides(&d->D, Ds);
    nam__tensor_strides(&d->z, zs); nam__tensor_strides(&d->dt_bias, bs); nam__tensor_strides(&d->state, ss);
    nam__tensor_strides(&d->out, os);
    for (bi = 0; bi < b; bi++)
        for (hi = 0; hi < h; hi++) {
            int64_t gi = hi / hpg, bo = bi * Bs[0] + gi * Bs[1], co = bi * Cs[0] + gi * Cs[1];
            double A = NAM__CAST(const float *, d->A.data)[hi * As[0]];
            double dtv = nam__load(d->dt.data, d->dt.dtype, bi * dts[0] + hi * dts[1]), dA;
            if (d->dt_bias.data) dtv += nam__load(d->dt_bias.data, d->dt_bias.dtype, hi * bs[0]);
            dtv = nam__ssd_dt_d(dtv, d->dt_softplus, limit, lo, hi_lim);
            dA = exp(dtv * A);
            for (pi = 0; pi < p; pi++) {
                float *s = NAM__CAST(float *, d->state.data) + bi * ss[0] + hi * ss[1] + pi * ss[2];
                double xv = nam__load(d->x.data, d->x.dtype, bi * xs[0] + hi * xs[1] + pi * xs[2]), y = 0.0;
                for (k = 0; k < n; k++) {
                    double sv = dA * s[k * ss[3]] + dtv * nam__load(d->B.data, d->B.dtype, bo + k * Bs[2]) * xv;
                    s[k * ss[3]] = NAM__CAST(float, sv);
                    y += nam__load(d->C.data, d->C.dtype, co + k * Cs[2]) * sv;
                }
                if (d->D.data) y += nam__load(d->D.data, d->D.dtype, hi * Ds[0] + (d->D.ndim == 2 ? pi * Ds[1] : 0)) * xv;
                if (d->z.data) {
                    double zv = nam__load(d->z.data, d->z.dtype, bi * zs[0] + hi * zs[1] + pi * zs[2]);
                    y *= nam__silu_d(zv);
                }
                nam__store(d->out.data, d->out.dtype, bi * os[0] + hi * os[1] + pi * os[2], NAM__CAST(float, y));
            }
        }
    return nam__ok(err);
}

static nam_status nam__ssd_step_body(nam_ssd_step_desc *d, nam_error *err) {
    int64_t dims[5] = {0, 0, 0, 0, 0};
    nam_ssd_step_desc r;
    nam_status st;
    if (d) d->ran = NAM_BACKEND_AUTO;
    st = nam__ssd_step_desc_defaults(d, &r, dims, err);
    if (st != NAM_OK) { nam__err_prefix(err, "nam_ssd_step: "); return st; }
#ifdef NAM_CUDA
    if (r.backend == NAM_BACKEND_CUDA) st = nam_cuda__ssd_step(&r, err);
    else
#endif
    st = nam__ssd_step_cpu(&r, dims, err);
    if (st == NAM_OK) d->ran = r.backend;
    return st;
}

NAM__DEF nam_status nam_ssd_step(nam_ssd_step_desc *d, nam_error *err) {
    nam_status st;
    NAM__FP_CALL(st, nam__ssd_step_body(d, err));
    return st;
}

/* ---- causal depthwise conv1d -------------------------------------------------------------- */
typedef struct nam__ssd_conv_ctx {
    nam_conv1d_desc *d;
    int64_t b, l, ch, w;
    int64_t xs[4], ws[4], bs[4], ss[4], os[4];
} nam__ssd_conv_ctx;

/* Channels [begin, end): out[b, t, c] = bias[c] + sum_k weight[c, k] * in[t - (w - 1) + k],
   where in[s < 0] is conv_state[b, c, w - 1 + s]; then conv_state <- the last w - 1 inputs. */
static void nam__ssd_conv_range(void *vctx, int64_t begin, int64_t end, int thread) {
    nam__ssd_conv_ctx *c = NAM__CAST(nam__ssd_conv_ctx *, vctx);
    nam_conv1d_desc *d = c->d;
    int64_t bi, t, ci, k, w = c->w, l = c->l;
    float *state = NAM__CAST(float *, d->conv_state.data);
    (void)thread;
    for (bi = 0; bi < c->b; bi++) {
        for (t = 0; t < l; t++)
            for (ci = begin; ci < end; ci++) {
                double acc = d->bias.data ? nam__load(d->bias.data, d->bias.dtype, ci * c->bs[0]) : 0.0;
                for (k = 0; k < w; k++) {
                    int64_t s = t - (w - 1) + k;
                    double v;
                    if (s >= 0) v = nam__load(d->x.data, d->x.dtype, bi * c->xs[0] + s * c->xs[1] + ci * c->xs[2]);
                    else if (state) v = state[bi * c->ss[0] + ci * c->ss[1] + (w - 1 + s) * c->ss[2]];
                    else v = 0.0;
                    acc += nam__load(d->weight.data, d->weight.dtype, ci * c->ws[0] + k * c->ws[1]) * v;
                }
                if (d->silu) acc = nam__silu_d(acc);
                nam__store(d->out.data, d->out.dtype, bi * c->os[0] + t * c->os[1] + ci * c->os[2], NAM__CAST(float, acc));
            }
        if (state)   /* new[k] = [old state, x][l + k]; increasing k never reads a slot already rewritten */
            for (ci = begin; ci < end; ci++)
                for (k = 0; k < w - 1; k++) {
                    int64_t s = l + k - (w - 1);
                    float *dst = state + bi * c->ss[0] + ci * c->ss[1] + k * c->ss[2];
                    *dst = s >= 0 ? nam__load(d->x.data, d->x.dtype, bi * c->xs[0] + s * c->xs[1] + ci * c->xs[2])
                                  : state[bi * c->ss[0] + ci * c->ss[1] + (w - 1 + s) * c->ss[2]];
                }
    }
}

/* nam__conv1d_desc_defaults: validate *d, then *r = *d resolved (backend AUTO -> the backend
   that runs, threads nam__desc_threads); c gets the dimensions. Errors carry "nam_conv1d: ". */
static nam_status nam__conv1d_desc_defaults(const nam_conv1d_desc *d, nam_conv1d_desc *r, nam__ssd_conv_ctx *c, nam_error *err) {
    nam_backend be = NAM_BACKEND_AUTO;
    nam_status st = NAM_OK;
    do {
        if (!d) { st = nam__err(err, NAM_ERR_INVALID_ARG, "desc is NULL"); break; }
        if ((st = nam_query_backend(d->backend, d->x.device, &be, err)) != NAM_OK) break;
        if ((st = nam__tensor_basic(&d->x, "x", 3, "b,l,c", 0, err)) != NAM_OK) break;
        if ((st = nam__ssd_numel(&d->x, "x", err)) != NAM_OK) break;
        c->b = d->x.shape[0]; c->l = d->x.shape[1]; c->ch = d->x.shape[2];
        if ((st = nam__tensor_basic(&d->weight, "weight", 2, "c,w", 0, err)) != NAM_OK) break;
        if ((st = nam__tensor_dim(&d->weight, "weight", 0, "c", c->ch, "x.shape[2]", err)) != NAM_OK) break;
        c->w = d->weight.shape[1];
        if (c->w > 4096) { st = nam__err(err, NAM_ERR_RANGE, "weight.shape[1] (w) = %lld is above 4096", NAM__CAST(long long, c->w)); break; }
        if ((st = nam__tensor_basic(&d->bias, "bias", 1, "c", 1, err)) != NAM_OK) break;
        if (d->bias.data && (st = nam__tensor_dim(&d->bias, "bias", 0, "c", c->ch, "x.shape[2]", err)) != NAM_OK) break;
        if (d->conv_state.data && c->w == 1) {
            st = nam__err(err, NAM_ERR_INVALID_ARG, "conv_state: weight.shape[1] (w) = 1 has no state (w - 1 = 0); pass no conv_state");
            break;
        }
        if ((st = nam__tensor_basic(&d->conv_state, "conv_state", 3, "b,c,w-1", 1, err)) != NAM_OK) break;
        if (d->conv_state.data) {
            if ((st = nam__ssd_f32(&d->conv_state, "conv_state", err)) != NAM_OK) break;
            if ((st = nam__tensor_dim(&d->conv_state, "conv_state", 0, "b", c->b, "x.shape[0]", err)) != NAM_OK) break;
            if ((st = nam__tensor_dim(&d->conv_state, "conv_state", 1, "c", c->ch, "x.shape[2]", err)) != NAM_OK) break;
            if ((st = nam__tensor_dim(&d->conv_state, "conv_state", 2, "w-1", c->w - 1, "weight.shape[1] - 1", err)) != NAM_OK) break;
        }
        if ((st = nam__tensor_basic(&d->out, "out", 3, "b,l,c", 0, err)) != NAM_OK) break;
        if ((st = nam__tensor_dim(&d->out, "out", 0, "b", c->b, "x.shape[0]", err)) != NAM_OK) break;
        if ((st = nam__tensor_dim(&d->out, "out", 1, "l", c->l, "x.shape[1]", err)) != NAM_OK) break;
        if ((st = nam__tensor_dim(&d->out, "out", 2, "c", c->ch, "x.shape[2]", err)) != NAM_OK) break;
        if (d->out.data == d->x.data && c->w > 1) {
            st = nam__err(err, NAM_ERR_INVALID_ARG, "out: shares its data with x; the convolution reads x after writing out");
            break;
        }
        {
            const nam_tensor *ts[5];
            static const char *const nm[5] = {"x", "weight", "bias", "conv_state", "out"};
            ts[0] = &d->x; ts[1] = &d->weight; ts[2] = &d->bias; ts[3] = &d->conv_state; ts[4] = &d->out;
            st = nam__same_device(5, ts, nm, err);
        }
    } while (0);
    if (st != NAM_OK) { nam__err_prefix(err, "nam_conv1d: "); return st; }
    *r = *d;
    r->backend = be;
    r->threads = nam__desc_threads(be, d->threads);
    return NAM_OK;
}

static nam_status nam__conv1d_body(nam_conv1d_desc *d, nam_error *err) {
    nam__ssd_conv_ctx c;
    nam_conv1d_desc r;
    nam_status st;
    if (d) d->ran = NAM_BACKEND_AUTO;
    memset(&c, 0, sizeof c);
    if ((st = nam__conv1d_desc_defaults(d, &r, &c, err)) != NAM_OK) return st;
#ifdef NAM_CUDA
    if (r.backend == NAM_BACKEND_CUDA) st = nam_cuda__conv1d(&r, err);
    else
#endif
    {
        c.d = &r;
        nam__tensor_strides(&r.x, c.xs); nam__tensor_strides(&r.weight, c.ws); nam__tensor_strides(&r.bias, c.bs);
        nam__tensor_strides(&r.conv_state, c.ss); nam__tensor_strides(&r.out, c.os);
        nam__parallel_for(c.ch, r.threads, nam__ssd_conv_range, &c);
        st = nam__ok(err);
    }
    if (st == NAM_OK) d->ran = r.backend;
    return st;
}

NAM__DEF nam_status nam_conv1d(nam_conv1d_desc *d, nam_error *err) {
    nam_status st;
    NAM__FP_CALL(st, nam__conv1d_body(d, err));
    return st;
}

/* >>kernel-m2rnn ---------------------------------------------------------------------- */
/* M2RNN, NAM56R's R block (nam_m2rnn, nam_m2rnn_step); semantics in >>kernels.

   NAM_BACKEND_CPU_REF, per (b, h) in order and token by token, in double: the gate with
   libm exp and log1p, S~ with libm tanh, S = f S + (1 - f) S~, y = S^T q + D v.
   Workspace: K * V + V doubles. Single-threaded.

   NAM_BACKEND_CPU (and AUTO). Given W_h, the K rows of S evolve independently (row i is
   tanh(S_i W_h + k_i v^T), blended), and only the read-out y = sum_i q_i S_i reduces across
   rows. So the work is split into tasks (b, h, row block), run by nam__parallel_for. A
   task keeps its rows of S in its thread's slab (fp32) for the whole sequence. Per token:
     1. pre-activations P_i = k_i v^T + S_i W_h for all its rows (6-row tiles: at V = 16 a
        row is 2 ymm registers, so 12 accumulators; 16 rank-1 FMA steps);
     2. per row: S~ = tanh(P_i), the blend S_i += g (S~ - S_i) with g = 1 - f, and
        y += q_i S_i (every row independent, so the tanh latency overlaps).
   The leak g = 1 - f = -expm1(log f) keeps the small leak of a gate near 1 exact to fp32;
   gates are computed 16 tokens at a time (AVX2: softplus of nam__ssd_dt_row_avx2, then
   exp or a Taylor expm1; portable: libm expf, log1pf, expm1f).
     - When b * n >= threads, a task is one whole (b, h): it writes y + D v straight into
       out (f32 with unit step; other out dtypes or strides go through a row buffer).
     - Otherwise each (b, h) is split into R = ceil(threads / (b n)) row blocks (multiples
       of 4 rows). The partial read-outs go to the workspace, and a second parallel pass
       sums them (+ D v) into out.
   The AVX2+FMA kernel is chosen at run time and needs V = 16 (NAM56R's value head). Any
   other V, a CPU without AVX2, or NAM_NO_SIMD runs a portable C loop (one row at a time).
   q, k and v rows that are f32 with unit step are read in place; others are converted per
   token (bf16 by a shift loop). k, q and v rows are prefetched two tokens ahead.
   Cost at K 64, V 16 per token and head: 2048 ymm FMAs in pass 1 and 128 tanh of 14 ymm
   operations (one a division) in pass 2, about 4350 vector FP operations for 39936 FLOPs
   (the issue's count): at two FMA ports that bounds the kernel near 57% of the FMA peak.

   tanh(x) ~ x P(x^2) / Q(x^2), where P and Q have degree 4 in x^2 (coefficients below). They
   were fitted by Lawson-weighted least squares for minimax relative error on [0, 9], where
   the fit's own error is 2.1e-8. x^2 is clamped to 81 and the result to [-1, 1], so every
   |x| >= 9 gives +-1 or x R(9) / 9 >= R(9) = 1 - 3.0e-8 +- rounding (tanh(9) = 1 - 3.0e-8). tests/test_m2rnn.c checks it in fp32 against double tanh over every
   8th float of [1e-3, 9.5], sampled below and above: bound 7 ulp and 4e-7 absolute
   (measured: 6.1 ulp / 3.7e-7 portable, 5.0 ulp / 3.0e-7 AVX2, both near x = 5.35). It
   is exactly odd, and maps +-0 -> +-0, +-inf -> +-1 and NaN -> NaN. The portable path (nam__m2rnn_tanh1) and the
   8-lane AVX2 path (nam__m2rnn_tanh8) run the same formula; the AVX2 one fuses its
   multiply-adds. */

#define NAM__M2RNN_MAX_K 65536
#define NAM__M2RNN_MAX_V 1024
#define NAM__M2RNN_GB 16   /* gates computed per block of tokens */

static float nam__m2rnn_tanh1(float x) {
    float u = x * x, p, q, r;
    u = u > NAM__M2RNN_TANH_X * NAM__M2RNN_TANH_X ? NAM__M2RNN_TANH_X * NAM__M2RNN_TANH_X : u;   /* NaN passes */
    p = ((NAM__M2RNN_TP4 * u + NAM__M2RNN_TP3) * u + NAM__M2RNN_TP2) * u + NAM__M2RNN_TP1;
    p = p * u + NAM__M2RNN_TP0;
    q = ((NAM__M2RNN_TQ4 * u + NAM__M2RNN_TQ3) * u + NAM__M2RNN_TQ2) * u + NAM__M2RNN_TQ1;
    q = q * u + 1.0f;
    r = x * p / q;
    return r > 1.0f ? 1.0f : r < -1.0f ? -1.0f : r;
}

/* 1 - f for gate input a (fp32): f = exp(-exp(A_log) softplus(a + bias)); negA = -exp(A_log),
   finite (A_log <= 88 is checked). softplus of an overflowed a + bias is capped at FLT_MAX,
   so negA * sp is never NaN; the result is in [0, 1]. */
static float nam__m2rnn_leak(float a, float bias, float negA) {
    float x = a + bias, sp = x > 20.0f ? x : log1pf(expf(x));
    if (!(sp <= 3.402823466e+38f)) sp = 3.402823466e+38f;
    return -expm1f(negA * sp);
}

/* One token over `rows` rows of S (row stride V), portable: per row i,
   S_i += g (tanh(k_i v + S_i W) - S_i); y = sum_i q_i S_i; dst = y (+ D v when D is given).
   acc: V floats of scratch. */
static void nam__m2rnn_tok_c(int64_t rows, int64_t V, float *S, const float *W, const float *k, const float *q,
                                         const float *v, float g, float *acc, const float *D, float *dst) {
    int64_t i, j, c;
    float *y = dst;
    for (c = 0; c < V; c++) y[c] = 0.0f;
    for (i = 0; i < rows; i++) {
        float *s = S + i * V, ki = k[i], qi = q[i];
        for (c = 0; c < V; c++) acc[c] = ki * v[c];
        for (j = 0; j < V; j++) {
            const float sj = s[j], *w = W + j * V;
            for (c = 0; c < V; c++) acc[c] += sj * w[c];
        }
        for (c = 0; c < V; c++) {
            float o = s[c];
            o = o + g * (nam__m2rnn_tanh1(acc[c]) - o);
            s[c] = o;
            y[c] += qi * o;
        }
    }
    if (D)
        for (c = 0; c < V; c++) y[c] += D[c] * v[c];
}

#if NAM__X86_SIMD
NAM__TARGET_AVX2 static NAM__SSD_INLINE __m256 nam__m2rnn_tanh8(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 u = _mm256_min_ps(_mm256_set1_ps(NAM__M2RNN_TANH_X * NAM__M2RNN_TANH_X), _mm256_mul_ps(x, x)), p, q;   /* NaN kept */
    p = _mm256_fmadd_ps(_mm256_set1_ps(NAM__M2RNN_TP4), u, _mm256_set1_ps(NAM__M2RNN_TP3));
    q = _mm256_fmadd_ps(_mm256_set1_ps(NAM__M2RNN_TQ4), u, _mm256_set1_ps(NAM__M2RNN_TQ3));
    p = _mm256_fmadd_ps(p, u, _mm256_set1_ps(NAM__M2RNN_TP2));
    q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(NAM__M2RNN_TQ2));
    p = _mm256_fmadd_ps(p, u, _mm256_set1_ps(NAM__M2RNN_TP1));
    q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(NAM__M2RNN_TQ1));
    p = _mm256_fmadd_ps(p, u, _mm256_set1_ps(NAM__M2RNN_TP0));
    q = _mm256_fmadd_ps(q, u, one);
    p = _mm256_div_ps(_mm256_mul_ps(x, p), q);
    return _mm256_min_ps(one, _mm256_max_ps(_mm256_set1_ps(-1.0f), p));
}

/* 8 leaks g = 1 - f = -expm1(negA * sp), sp = softplus(a + bias) >= 0 (nam__ssd_dt_row_avx2),
   negA = -exp(A_log) finite: z = negA * sp in [-inf, 0] (sp capped at FLT_MAX, so 0 * inf
   never happens); z < -0.5: 1 - e^z (nam__ssd_exp8, 2 ulp); else -(z + z^2 Q(z)), Q the
   Taylor series of (e^z - 1 - z) / z^2 to z^7 (truncation < 5e-10 relative). */
NAM__TARGET_AVX2 static NAM__SSD_INLINE __m256 nam__m2rnn_leak8(__m256 sp, __m256 negA) {
    const __m256 z = _mm256_mul_ps(negA, _mm256_min_ps(sp, _mm256_set1_ps(3.402823466e+38f)));
    __m256 q = _mm256_set1_ps(1.0f / 362880.0f), big = _mm256_sub_ps(_mm256_set1_ps(1.0f), nam__ssd_exp8(z)), small;
    q = _mm256_fmadd_ps(q, z, _mm256_set1_ps(1.0f / 40320.0f));
    q = _mm256_fmadd_ps(q, z, _mm256_set1_ps(1.0f / 5040.0f));
    q = _mm256_fmadd_ps(q, z, _mm256_set1_ps(1.0f / 720.0f));
    q = _mm256_fmadd_ps(q, z, _mm256_set1_ps(1.0f / 120.0f));
    q = _mm256_fmadd_ps(q, z, _mm256_set1_ps(1.0f / 24.0f));
    q = _mm256_fmadd_ps(q, z, _mm256_set1_ps(1.0f / 6.0f));
    q = _mm256_fmadd_ps(q, z, _mm256_set1_ps(0.5f));
    small = _mm256_sub_ps(_mm256_setzero_ps(), _mm256_fmadd_ps(_mm256_mul_ps(z, z), q, z));
    return _mm256_blendv_ps(small, big, _mm256_cmp_ps(z, _mm256_set1_ps(-0.5f), _CMP_LT_OQ));
}

/* gates of `count` <= 16 tokens: g[i] = leak of a[i] (+ bias, negA of the head); a padded with 0 */
NAM__TARGET_AVX2 static void nam__m2rnn_leak16_avx2(const float *a, float bias, float negA, float *g) {
    float bb[16], sp[16];
    int i;
    for (i = 0; i < 16; i++) bb[i] = bias;
    nam__ssd_dt_row_avx2(16, a, bb, 1, 0, 0.0f, 0.0f, sp);
    _mm256_storeu_ps(g, nam__m2rnn_leak8(_mm256_loadu_ps(sp), _mm256_set1_ps(negA)));
    _mm256_storeu_ps(g + 8, nam__m2rnn_leak8(_mm256_loadu_ps(sp + 8), _mm256_set1_ps(negA)));
}

/* nam__m2rnn_tok_c for V = 16, writing dst = y (+ D v when D is given), in two passes so
   that neither waits on a long dependency chain: (1) pre-activations P_i = k_i v + S_i W for all rows, in 6-row tiles with 12 ymm
   accumulators (independent tiles, 17-deep FMA chains; 12 chains keep both FMA ports busy); (2) per row tanh, blend, store and
   read-out, every row independent (y in 4 accumulators). P: rows x 16 floats of scratch. */
#define NAM__M2RNN_ROW(r, j)                                                                             \
    b_ = _mm256_broadcast_ss(s + 16 * (r) + (j)); a##r##0 = _mm256_fmadd_ps(b_, w0_, a##r##0); a##r##1 = _mm256_fmadd_ps(b_, w1_, a##r##1)
#define NAM__M2RNN_J6(j)                                                                                 \
    do {                                                                                                 \
        const __m256 w0_ = _mm256_loadu_ps(W + (j) * 16), w1_ = _mm256_loadu_ps(W + (j) * 16 + 8);      \
        __m256 b_;                                                                                       \
        NAM__M2RNN_ROW(0, j); NAM__M2RNN_ROW(1, j); NAM__M2RNN_ROW(2, j);                               \
        NAM__M2RNN_ROW(3, j); NAM__M2RNN_ROW(4, j); NAM__M2RNN_ROW(5, j);                               \
    } while (0)
#define NAM__M2RNN_INIT(r)                                                                               \
    do {                                                                                                 \
        const __m256 kb_ = _mm256_broadcast_ss(k + i + (r));                                            \
        a##r##0 = _mm256_mul_ps(kb_, _mm256_loadu_ps(v)); a##r##1 = _mm256_mul_ps(kb_, _mm256_loadu_ps(v + 8)); \
    } while (0)
#define NAM__M2RNN_STORE(r) (_mm256_storeu_ps(p + 16 * (r), a##r##0), _mm256_storeu_ps(p + 16 * (r) + 8, a##r##1))
NAM__TARGET_AVX2 static void nam__m2rnn_tok16_avx2(int64_t rows, float *S, const float *W, const float *k, const float *q,
                                                            const float *v, float g, float *P, const float *D, float *dst) {
    const __m256 v0 = _mm256_loadu_ps(v), v1 = _mm256_loadu_ps(v + 8), gv = _mm256_set1_ps(g);
    __m256 y0 = _mm256_setzero_ps(), y1 = y0, y2 = y0, y3 = y0;
    int64_t i = 0;
    for (; i + 6 <= rows; i += 6) {   /* 6-row tiles: 12 accumulators, 2 W registers, 1 broadcast */
        const float *s = S + i * 16;
        float *p = P + i * 16;
        __m256 a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51;
        NAM__M2RNN_INIT(0); NAM__M2RNN_INIT(1); NAM__M2RNN_INIT(2); NAM__M2RNN_INIT(3); NAM__M2RNN_INIT(4); NAM__M2RNN_INIT(5);
        NAM__M2RNN_J6(0); NAM__M2RNN_J6(1); NAM__M2RNN_J6(2); NAM__M2RNN_J6(3);
        NAM__M2RNN_J6(4); NAM__M2RNN_J6(5); NAM__M2RNN_J6(6); NAM__M2RNN_J6(7);
        NAM__M2RNN_J6(8); NAM__M2RNN_J6(9); NAM__M2RNN_J6(10); NAM__M2RNN_J6(11);
        NAM__M2RNN_J6(12); NAM__M2RNN_J6(13); NAM__M2RNN_J6(14); NAM__M2RNN_J6(15);
        NAM__M2RNN_STORE(0); NAM__M2RNN_STORE(1); NAM__M2RNN_STORE(2); NAM__M2RNN_STORE(3); NAM__M2RNN_STORE(4); NAM__M2RNN_STORE(5);
    }
    for (; i < rows; i++) {   /* row tail: one row, two accumulators */
        const float *s = S + i * 16;
        const __m256 kb = _mm256_broadcast_ss(k + i);
        __m256 a00 = _mm256_mul_ps(kb, v0), a01 = _mm256_mul_ps(kb, v1);
        int j;
        for (j = 0; j < 16; j++) {
            const __m256 b = _mm256_broadcast_ss(s + j);
            a00 = _mm256_fmadd_ps(b, _mm256_loadu_ps(W + j * 16), a00);
            a01 = _mm256_fmadd_ps(b, _mm256_loadu_ps(W + j * 16 + 8), a01);
        }
        _mm256_storeu_ps(P + i * 16, a00);
        _mm256_storeu_ps(P + i * 16 + 8, a01);
    }
#define NAM__M2RNN_B(i, ya, yb)                                                                          \
    do {                                                                                                 \
        float *s_ = S + (i) * 16;                                                                        \
        const __m256 qb_ = _mm256_broadcast_ss(q + (i));                                                 \
        __m256 o0_ = _mm256_loadu_ps(s_), o1_ = _mm256_loadu_ps(s_ + 8);                                \
        o0_ = _mm256_fmadd_ps(gv, _mm256_sub_ps(nam__m2rnn_tanh8(_mm256_loadu_ps(P + (i) * 16)), o0_), o0_);     \
        o1_ = _mm256_fmadd_ps(gv, _mm256_sub_ps(nam__m2rnn_tanh8(_mm256_loadu_ps(P + (i) * 16 + 8)), o1_), o1_); \
        _mm256_storeu_ps(s_, o0_);                                                                       \
        _mm256_storeu_ps(s_ + 8, o1_);                                                                   \
        ya = _mm256_fmadd_ps(qb_, o0_, ya);                                                              \
        yb = _mm256_fmadd_ps(qb_, o1_, yb);                                                              \
    } while (0)
    for (i = 0; i + 2 <= rows; i += 2) {   /* two rows per step: even rows into y0, y1, odd rows into y2, y3 */
        NAM__M2RNN_B(i, y0, y1);
        NAM__M2RNN_B(i + 1, y2, y3);
    }
    if (i < rows) NAM__M2RNN_B(i, y0, y1);
#undef NAM__M2RNN_B
    y0 = _mm256_add_ps(y0, y2);
    y1 = _mm256_add_ps(y1, y3);
    if (D) {
        y0 = _mm256_fmadd_ps(_mm256_loadu_ps(D), v0, y0);
        y1 = _mm256_fmadd_ps(_mm256_loadu_ps(D + 8), v1, y1);
    }
    _mm256_storeu_ps(dst, y0);
    _mm256_storeu_ps(dst + 8, y1);
}
#undef NAM__M2RNN_ROW
#undef NAM__M2RNN_J6
#undef NAM__M2RNN_INIT
#undef NAM__M2RNN_STORE
#endif

/* `count` floats of t from element `off`, element step `es`: a pointer into t's data when
   it is f32 with unit step, else converted into tmp. */
static const float *nam__m2rnn_row(const nam_tensor *t, int64_t off, int64_t es, int64_t count, float *tmp) {
    int64_t i;
    if (t->dtype == NAM_F32 && es == 1) return NAM__CAST(const float *, t->data) + off;
    if (t->dtype == NAM_BF16 && es == 1) {
        const uint16_t *src = NAM__CAST(const uint16_t *, t->data) + off;
        for (i = 0; i < count; i++) {
            uint32_t u = NAM__CAST(uint32_t, src[i]) << 16;
            memcpy(tmp + i, &u, 4);
        }
        return tmp;
    }
    for (i = 0; i < count; i++) tmp[i] = nam__load(t->data, t->dtype, off + i * es);
    return tmp;
}

typedef struct nam__m2rnn_dims {
    int64_t b, l, n, K, V, nq, nk, nv, nw, nf;
    nam_backend be;
} nam__m2rnn_dims;

/* head count `cnt` of field.shape[axis] must divide n (taken from nfrom) */
static nam_status nam__m2rnn_divides(int64_t cnt, const char *field, int axis, const char *name, int64_t n, const char *nfrom, nam_error *err) {
    if (n % cnt == 0) return NAM_OK;
    return nam__err(err, NAM_ERR_INVALID_ARG, "%s.shape[%d] (%s) = %lld does not divide n = %lld (the largest head count, %s)", field, axis, name,
                    NAM__CAST(long long, cnt), NAM__CAST(long long, n), nfrom);
}

/* n = the largest of the head counts; nfrom names the first field that has it */
static int64_t nam__m2rnn_n(const int64_t cnt[5], const char *const from[5], const char **nfrom) {
    int64_t n = 0;
    int i;
    for (i = 0; i < 5; i++)
        if (cnt[i] > n) { n = cnt[i]; *nfrom = from[i]; }
    return n;
}

/* Shapes of the per-head parameters and the state tensors, shared by nam_m2rnn and
   nam_m2rnn_step: A_log (n), dt_bias (n), D (n, V); state tensors (b, n, K, V) f32. */
static nam_status nam__m2rnn_params(const nam_tensor *A_log, const nam_tensor *dt_bias, const nam_tensor *D, const nam__m2rnn_dims *o,
                                                const char *nfrom, const char *vfrom, nam_error *err) {
    char nf[96];
    snprintf(nf, sizeof nf, "the largest head count (%s)", nfrom);
    NAM__SSD_TRY(nam__tensor_basic(A_log, "A_log", 1, "n", 0, err));
    NAM__SSD_TRY(nam__tensor_dim(A_log, "A_log", 0, "n", o->n, nf, err));
    NAM__SSD_TRY(nam__tensor_basic(dt_bias, "dt_bias", 1, "n", 1, err));
    if (dt_bias->data) NAM__SSD_TRY(nam__tensor_dim(dt_bias, "dt_bias", 0, "n", o->n, nf, err));
    NAM__SSD_TRY(nam__tensor_basic(D, "D", 2, "n,V", 1, err));
    if (D->data) {
        NAM__SSD_TRY(nam__tensor_dim(D, "D", 0, "n", o->n, nf, err));
        NAM__SSD_TRY(nam__tensor_dim(D, "D", 1, "V", o->V, vfrom, err));
    }
    return NAM_OK;
}
static nam_status nam__m2rnn_state(const nam_tensor *t, const char *field, int optional, const nam__m2rnn_dims *o, const char *nfrom,
                                               const char *kfrom, const char *vfrom, nam_error *err) {
    char nf[96];
    if (!t->data && optional) return NAM_OK;
    snprintf(nf, sizeof nf, "the largest head count (%s)", nfrom);
    NAM__SSD_TRY(nam__tensor_basic(t, field, 4, "b,n,K,V", optional, err));
    NAM__SSD_TRY(nam__ssd_f32(t, field, err));
    NAM__SSD_TRY(nam__ssd_numel(t, field, err));
    NAM__SSD_TRY(nam__tensor_dim(t, field, 0, "b", o->b, "q.shape[0]", err));
    NAM__SSD_TRY(nam__tensor_dim(t, field, 1, "n", o->n, nf, err));
    NAM__SSD_TRY(nam__tensor_dim(t, field, 2, "K", o->K, kfrom, err));
    return nam__tensor_dim(t, field, 3, "V", o->V, vfrom, err);
}

static nam_status nam__m2rnn_sizes(const nam__m2rnn_dims *o, const char *kfrom, const char *vfrom, nam_error *err) {
    if (o->K > NAM__M2RNN_MAX_K)
        return nam__err(err, NAM_ERR_LIMIT, "%s (K) = %lld is above %d", kfrom, NAM__CAST(long long, o->K), NAM__M2RNN_MAX_K);
    if (o->V > NAM__M2RNN_MAX_V)
        return nam__err(err, NAM_ERR_LIMIT, "%s (V) = %lld is above %d", vfrom, NAM__CAST(long long, o->V), NAM__M2RNN_MAX_V);
    return NAM_OK;
}

static nam_status nam__m2rnn_validate(const nam_m2rnn_desc *d, nam__m2rnn_dims *o, nam_error *err) {
    static const char *const from[5] = {"q.shape[2]", "k.shape[2]", "v.shape[2]", "W.shape[0]", "a.shape[2]"};
    const char *nfrom = from[0];
    int64_t cnt[5];
    char nf[96];
    if (!d) return nam__err(err, NAM_ERR_INVALID_ARG, "desc is NULL");
    NAM__SSD_TRY(nam_query_backend(d->backend, d->q.device, &o->be, err));
    NAM__SSD_TRY(nam__tensor_basic(&d->q, "q", 4, "b,l,nq,K", 0, err));
    NAM__SSD_TRY(nam__ssd_numel(&d->q, "q", err));
    o->b = d->q.shape[0]; o->l = d->q.shape[1]; o->nq = d->q.shape[2]; o->K = d->q.shape[3];
    NAM__SSD_TRY(nam__tensor_basic(&d->k, "k", 4, "b,l,nk,K", 0, err));
    NAM__SSD_TRY(nam__ssd_numel(&d->k, "k", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->k, "k", 0, "b", o->b, "q.shape[0]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->k, "k", 1, "l", o->l, "q.shape[1]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->k, "k", 3, "K", o->K, "q.shape[3]", err));
    NAM__SSD_TRY(nam__tensor_basic(&d->v, "v", 4, "b,l,nv,V", 0, err));
    NAM__SSD_TRY(nam__ssd_numel(&d->v, "v", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->v, "v", 0, "b", o->b, "q.shape[0]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->v, "v", 1, "l", o->l, "q.shape[1]", err));
    o->nk = d->k.shape[2]; o->nv = d->v.shape[2]; o->V = d->v.shape[3];
    NAM__SSD_TRY(nam__m2rnn_sizes(o, "q.shape[3]", "v.shape[3]", err));
    NAM__SSD_TRY(nam__tensor_basic(&d->W, "W", 3, "nw,V,V", 0, err));
    NAM__SSD_TRY(nam__tensor_dim(&d->W, "W", 1, "V", o->V, "v.shape[3]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->W, "W", 2, "V", o->V, "v.shape[3]", err));
    NAM__SSD_TRY(nam__ssd_numel(&d->W, "W", err));
    o->nw = d->W.shape[0];
    NAM__SSD_TRY(nam__tensor_basic(&d->a, "a", 3, "b,l,nf", 0, err));
    NAM__SSD_TRY(nam__ssd_numel(&d->a, "a", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->a, "a", 0, "b", o->b, "q.shape[0]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->a, "a", 1, "l", o->l, "q.shape[1]", err));
    o->nf = d->a.shape[2];
    cnt[0] = o->nq; cnt[1] = o->nk; cnt[2] = o->nv; cnt[3] = o->nw; cnt[4] = o->nf;
    o->n = nam__m2rnn_n(cnt, from, &nfrom);
    NAM__SSD_TRY(nam__m2rnn_divides(o->nq, "q", 2, "nq", o->n, nfrom, err));
    NAM__SSD_TRY(nam__m2rnn_divides(o->nk, "k", 2, "nk", o->n, nfrom, err));
    NAM__SSD_TRY(nam__m2rnn_divides(o->nv, "v", 2, "nv", o->n, nfrom, err));
    NAM__SSD_TRY(nam__m2rnn_divides(o->nw, "W", 0, "nw", o->n, nfrom, err));
    NAM__SSD_TRY(nam__m2rnn_divides(o->nf, "a", 2, "nf", o->n, nfrom, err));
    NAM__SSD_TRY(nam__m2rnn_params(&d->A_log, &d->dt_bias, &d->D, o, nfrom, "v.shape[3]", err));
    NAM__SSD_TRY(nam__m2rnn_state(&d->initial_state, "initial_state", 1, o, nfrom, "q.shape[3]", "v.shape[3]", err));
    snprintf(nf, sizeof nf, "the largest head count (%s)", nfrom);
    NAM__SSD_TRY(nam__tensor_basic(&d->out, "out", 4, "b,l,n,V", 0, err));
    NAM__SSD_TRY(nam__tensor_dim(&d->out, "out", 0, "b", o->b, "q.shape[0]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->out, "out", 1, "l", o->l, "q.shape[1]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->out, "out", 2, "n", o->n, nf, err));
    NAM__SSD_TRY(nam__tensor_dim(&d->out, "out", 3, "V", o->V, "v.shape[3]", err));
    NAM__SSD_TRY(nam__ssd_numel(&d->out, "out", err));
    NAM__SSD_TRY(nam__m2rnn_state(&d->final_state, "final_state", 1, o, nfrom, "q.shape[3]", "v.shape[3]", err));
    {
        const nam_tensor *ts[11];
        static const char *const nm[11] = {"q", "k", "v", "W", "a", "A_log", "dt_bias", "D", "initial_state", "out", "final_state"};
        int i;
        ts[0] = &d->q; ts[1] = &d->k; ts[2] = &d->v; ts[3] = &d->W; ts[4] = &d->a; ts[5] = &d->A_log; ts[6] = &d->dt_bias;
        ts[7] = &d->D; ts[8] = &d->initial_state; ts[9] = &d->out; ts[10] = &d->final_state;
        NAM__SSD_TRY(nam__same_device(11, ts, nm, err));
        for (i = 0; i < 5; i++)
            if (d->out.data == ts[i]->data)
                return nam__err(err, NAM_ERR_INVALID_ARG, "out: shares its data with %s; the scan reads its inputs after writing out", nm[i]);
    }
    return NAM_OK;
}

/* The gate inputs must be finite and exp(A_log) must fit fp32: checked before anything is
   written. Index = the element's position (b, t, head) or head. */
static nam_status nam__m2rnn_check_gates(const nam_tensor *a, const nam_tensor *A_log, const nam_tensor *dt_bias, int64_t b, int64_t l, int64_t nf,
                                         int64_t n, const char *who, nam_error *err) {
    int64_t st[NAM_MAX_DIMS], bi, t, h;
    nam__tensor_strides(A_log, st);
    for (h = 0; h < n; h++) {
        float v = nam__load(A_log->data, A_log->dtype, h * st[0]);
        if (!(v <= 88.0f && v > -HUGE_VALF))
            return nam__err(err, NAM_ERR_RANGE, "A_log[%lld] = %g is %s", NAM__CAST(long long, h), NAM__CAST(double, v),
                            v == v && v != HUGE_VALF && v != -HUGE_VALF ? "above 88 (exp(A_log) overflows fp32)" : "not finite");
    }
    if (dt_bias->data) {
        nam__tensor_strides(dt_bias, st);
        for (h = 0; h < n; h++) {
            float v = nam__load(dt_bias->data, dt_bias->dtype, h * st[0]);
            if (!(v - v == 0.0f)) return nam__err(err, NAM_ERR_RANGE, "dt_bias[%lld] = %g is not finite", NAM__CAST(long long, h), NAM__CAST(double, v));
        }
    }
    nam__tensor_strides(a, st);
    for (bi = 0; bi < b; bi++)
        for (t = 0; t < l; t++) {
            int64_t o = bi * st[0] + t * st[1];
            if (a->dtype == NAM_F32 && st[2] == 1) {
                const float *p = NAM__CAST(const float *, a->data) + o;
                float acc = 0.0f;
                for (h = 0; h < nf; h++) acc += p[h] - p[h];   /* 0 unless some element is inf or NaN */
                if (acc == 0.0f) continue;
            }
            for (h = 0; h < nf; h++) {
                float v = nam__load(a->data, a->dtype, o + h * st[2]);
                if (!(v - v == 0.0f)) {
                    if (who) return nam__err(err, NAM_ERR_RANGE, "a[%lld, %lld] = %g is not finite (the forget gate's input)", NAM__CAST(long long, bi),
                                             NAM__CAST(long long, h), NAM__CAST(double, v));
                    return nam__err(err, NAM_ERR_RANGE, "a[%lld, %lld, %lld] = %g is not finite (the forget gate's input)", NAM__CAST(long long, bi),
                                    NAM__CAST(long long, t), NAM__CAST(long long, h), NAM__CAST(double, v));
                }
            }
        }
    return NAM_OK;
}

/* ---- workspace layout of the fast path ------------------------------------------------ */
typedef struct nam__m2rnn_layout {
    int64_t R, rb, tasks;
    size_t off_W, off_D, off_negA, off_bias, off_y, off_slab, slab_bytes, total;
    size_t s_S, s_P, s_k, s_q, s_v, s_y, s_acc, s_o, s_g;
    int slabs;
} nam__m2rnn_layout;

static void nam__m2rnn_plan(const nam__m2rnn_dims *dm, int threads, nam__m2rnn_layout *L) {
    int64_t bn = dm->b * dm->n, K = dm->K, V = dm->V, R = 1, rb;
    size_t o = 0, s = 0;
    if (bn < threads) R = (threads + bn - 1) / bn;
    rb = (K + R - 1) / R;
    rb = (rb + 3) / 4 * 4;
    if (rb > K) rb = K;
    R = (K + rb - 1) / rb;
    L->R = R;
    L->rb = rb;
    L->tasks = bn * R;
    L->off_W = o; o += nam__ssd_f(dm->nw * V * V);
    L->off_D = o; o += nam__ssd_f(dm->n * V);
    L->off_negA = o; o += nam__ssd_f(dm->n);
    L->off_bias = o; o += nam__ssd_f(dm->n);
    L->off_y = o; o += R > 1 ? nam__ssd_f(bn * R * dm->l * V) : 0;
    L->off_slab = o;
    L->s_S = s; s += nam__ssd_f(rb * V);
    L->s_P = s; s += nam__ssd_f(rb * V);      /* pre-activations of the AVX2 kernel */
    L->s_k = s; s += nam__ssd_f(rb);
    L->s_q = s; s += nam__ssd_f(rb);
    L->s_v = s; s += nam__ssd_f(V);
    L->s_y = s; s += nam__ssd_f(V);
    L->s_acc = s; s += nam__ssd_f(V);
    L->s_o = s; s += nam__ssd_f(V > NAM__M2RNN_GB ? V : NAM__M2RNN_GB);
    L->s_g = s; s += nam__ssd_f(NAM__M2RNN_GB);
    L->slab_bytes = s;
    L->slabs = L->tasks < threads ? NAM__CAST(int, L->tasks) : threads;
    if (L->slabs < 1) L->slabs = 1;
    L->total = o + NAM__CAST(size_t, L->slabs) * s;
}

static size_t nam__m2rnn_ref_bytes(const nam__m2rnn_dims *dm) { return nam__ws_need(sizeof(double) * NAM__CAST(size_t, dm->K * dm->V + dm->V)); }

/* Workspace of a validated call on `threads` (resolved) threads: none on CUDA, the double
   rows of the reference, or the fast path's layout (the scan and the step share it). */
static size_t nam__m2rnn_bytes(const nam__m2rnn_dims *dm, int threads) {
    nam__m2rnn_layout L;
    if (dm->be == NAM_BACKEND_CUDA) return 0;
    if (dm->be == NAM_BACKEND_CPU_REF) return nam__m2rnn_ref_bytes(dm);
    nam__m2rnn_plan(dm, threads, &L);
    return L.total;
}

/* nam__m2rnn_desc_defaults: validate *d, then *r = *d with every default resolved (backend
   AUTO -> the backend that runs, threads nam__desc_threads); dm the dimensions. The scan,
   its workspace query and the CUDA hook read *r. */
static nam_status nam__m2rnn_desc_defaults(const nam_m2rnn_desc *d, nam_m2rnn_desc *r, nam__m2rnn_dims *dm, nam_error *err) {
    NAM__SSD_TRY(nam__m2rnn_validate(d, dm, err));
    *r = *d;
    r->backend = dm->be;
    r->threads = nam__desc_threads(dm->be, d->threads);
    return NAM_OK;
}

static nam_status nam__m2rnn_workspace_size_body(const nam_m2rnn_desc *d, size_t *bytes, nam_error *err) {
    nam__m2rnn_dims dm;
    nam_m2rnn_desc r;
    nam_status st;
    memset(&dm, 0, sizeof dm);
    if (!bytes) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_m2rnn_workspace_size: bytes is NULL");
    *bytes = 0;
    st = nam__m2rnn_desc_defaults(d, &r, &dm, err);
    if (st != NAM_OK) { nam__err_prefix(err, "nam_m2rnn_workspace_size: "); return st; }
    *bytes = nam__m2rnn_bytes(&dm, r.threads);
    if (err) nam__err_reset(err);
    return NAM_OK;
}

/* ---- reference: the recurrence in double ------------------------------------------------ */
static void nam__m2rnn_ref(const nam_m2rnn_desc *d, const nam__m2rnn_dims *dm, double *S) {
    int64_t qs[4], ks[4], vs[4], Ws[4], as[4], Al[4], bs[4], Ds[4], is[4], os[4], fs[4];
    int64_t K = dm->K, V = dm->V, bi, h, t, i, j, c;
    double *acc = S + K * V;
    nam__tensor_strides(&d->q, qs); nam__tensor_strides(&d->k, ks); nam__tensor_strides(&d->v, vs); nam__tensor_strides(&d->W, Ws);
    nam__tensor_strides(&d->a, as); nam__tensor_strides(&d->A_log, Al); nam__tensor_strides(&d->dt_bias, bs); nam__tensor_strides(&d->D, Ds);
    nam__tensor_strides(&d->initial_state, is); nam__tensor_strides(&d->out, os); nam__tensor_strides(&d->final_state, fs);
    for (bi = 0; bi < dm->b; bi++)
        for (h = 0; h < dm->n; h++) {
            int64_t hq = h / (dm->n / dm->nq), hk = h / (dm->n / dm->nk), hv = h / (dm->n / dm->nv), hw = h / (dm->n / dm->nw), hf = h / (dm->n / dm->nf);
            double expA = exp(NAM__CAST(double, nam__load(d->A_log.data, d->A_log.dtype, h * Al[0])));
            double bias = d->dt_bias.data ? nam__load(d->dt_bias.data, d->dt_bias.dtype, h * bs[0]) : 0.0;
            for (i = 0; i < K; i++)
                for (c = 0; c < V; c++)
                    S[i * V + c] = d->initial_state.data ? NAM__CAST(const float *, d->initial_state.data)[bi * is[0] + h * is[1] + i * is[2] + c * is[3]] : 0.0;
            for (t = 0; t < dm->l; t++) {
                int64_t qo = bi * qs[0] + t * qs[1] + hq * qs[2], ko = bi * ks[0] + t * ks[1] + hk * ks[2], vo = bi * vs[0] + t * vs[1] + hv * vs[2];
                double x = nam__load(d->a.data, d->a.dtype, bi * as[0] + t * as[1] + hf * as[2]) + bias, f;
                f = exp(-expA * (x <= 20.0 ? log1p(exp(x)) : x));
                for (i = 0; i < K; i++) {
                    double ki = nam__load(d->k.data, d->k.dtype, ko + i * ks[3]);
                    for (c = 0; c < V; c++) {
                        double s = ki * nam__load(d->v.data, d->v.dtype, vo + c * vs[3]);
                        for (j = 0; j < V; j++) s += S[i * V + j] * nam__load(d->W.data, d->W.dtype, hw * Ws[0] + j * Ws[1] + c * Ws[2]);
                        acc[c] = tanh(s);
                    }
                    for (c = 0; c < V; c++) S[i * V + c] = f * S[i * V + c] + (1.0 - f) * acc[c];
                }
                for (c = 0; c < V; c++) {
                    double y = 0.0;
                    for (i = 0; i < K; i++) y += S[i * V + c] * nam__load(d->q.data, d->q.dtype, qo + i * qs[3]);
                    if (d->D.data) y += nam__load(d->D.data, d->D.dtype, h * Ds[0] + c * Ds[1]) * nam__load(d->v.data, d->v.dtype, vo + c * vs[3]);
                    nam__store(d->out.data, d->out.dtype, bi * os[0] + t * os[1] + h * os[2] + c * os[3], NAM__CAST(float, y));
                }
            }
            if (d->final_state.data)
                for (i = 0; i < K; i++)
                    for (c = 0; c < V; c++)
                        NAM__CAST(float *, d->final_state.data)[bi * fs[0] + h * fs[1] + i * fs[2] + c * fs[3]] = NAM__CAST(float, S[i * V + c]);
        }
}

/* ---- fast path -------------------------------------------------------------------------- */
typedef struct nam__m2rnn_ctx {
    nam_m2rnn_desc *d;
    nam__m2rnn_dims dm;
    nam__m2rnn_layout L;
    char *ws;
    int64_t qs[4], ks[4], vs[4], as[4], is[4], os[4], fs[4];
    int simd;
} nam__m2rnn_ctx;

#define NAM__M2RNN_PTR(c, off) NAM__CAST(float *, NAM__CAST(void *, (c)->ws + (off)))

/* out[b, t, h] = y + D_h * v (into the slab row o, then stored in out's dtype) */
static void nam__m2rnn_emit(nam__m2rnn_ctx *c, int64_t bi, int64_t t, int64_t h, const float *y, const float *vr, float *o) {
    const float *D = NAM__M2RNN_PTR(c, c->L.off_D) + h * c->dm.V;
    int64_t j;
    for (j = 0; j < c->dm.V; j++) o[j] = y[j] + D[j] * vr[j];
    nam__ssd_row_store(&c->d->out, bi * c->os[0] + t * c->os[1] + h * c->os[2], c->os[3], c->dm.V, o);
}

static void nam__m2rnn_task(void *vctx, int64_t begin, int64_t end, int thread) {
    nam__m2rnn_ctx *c = NAM__CAST(nam__m2rnn_ctx *, vctx);
    nam_m2rnn_desc *d = c->d;
    const nam__m2rnn_layout *L = &c->L;
    int64_t n = c->dm.n, K = c->dm.K, V = c->dm.V, l = c->dm.l, R = L->R, task;
    char *slab = c->ws + L->off_slab + NAM__CAST(size_t, thread) * L->slab_bytes;
#define NAM__M2RNN_SLAB(off) NAM__CAST(float *, NAM__CAST(void *, slab + (off)))
    float *S = NAM__M2RNN_SLAB(L->s_S), *P = NAM__M2RNN_SLAB(L->s_P), *kb = NAM__M2RNN_SLAB(L->s_k), *qb = NAM__M2RNN_SLAB(L->s_q), *vb = NAM__M2RNN_SLAB(L->s_v);
    float *y = NAM__M2RNN_SLAB(L->s_y), *acc = NAM__M2RNN_SLAB(L->s_acc), *ob = NAM__M2RNN_SLAB(L->s_o), *gb = NAM__M2RNN_SLAB(L->s_g);
#undef NAM__M2RNN_SLAB
    (void)P;   /* the AVX2 kernel's scratch */
    /* out rows written straight by the kernel: one task per (b, h), out f32 with unit step */
    const int odirect = R == 1 && d->out.dtype == NAM_F32 && c->os[3] == 1;
    const size_t kes = d->k.dtype == NAM_F32 ? 4 : 2, qes = d->q.dtype == NAM_F32 ? 4 : 2, ves = d->v.dtype == NAM_F32 ? 4 : 2;
    for (task = begin; task < end; task++) {
        int64_t bi = task / (n * R), h = (task / R) % n, r = task % R, r0 = r * L->rb, rows = nam__ssd_min(K, r0 + L->rb) - r0, t, i, j;
        int64_t hq = h / (n / c->dm.nq), hk = h / (n / c->dm.nk), hv = h / (n / c->dm.nv), hw = h / (n / c->dm.nw), hf = h / (n / c->dm.nf);
        const float *W = NAM__M2RNN_PTR(c, L->off_W) + hw * V * V, *Dh = NAM__M2RNN_PTR(c, L->off_D) + h * V;
        const float negA = NAM__M2RNN_PTR(c, L->off_negA)[h], bias = NAM__M2RNN_PTR(c, L->off_bias)[h];
        float *yp = R > 1 ? NAM__M2RNN_PTR(c, L->off_y) + ((bi * n + h) * R + r) * l * V : NULL;
        if (d->initial_state.data) {
            const float *is = NAM__CAST(const float *, d->initial_state.data) + bi * c->is[0] + h * c->is[1];
            for (i = 0; i < rows; i++)
                for (j = 0; j < V; j++) S[i * V + j] = is[(r0 + i) * c->is[2] + j * c->is[3]];
        } else memset(S, 0, sizeof(float) * NAM__CAST(size_t, rows * V));
        for (t = 0; t < l; t++) {
            int64_t qo = bi * c->qs[0] + t * c->qs[1] + hq * c->qs[2] + r0 * c->qs[3];
            int64_t ko = bi * c->ks[0] + t * c->ks[1] + hk * c->ks[2] + r0 * c->ks[3];
            int64_t vo = bi * c->vs[0] + t * c->vs[1] + hv * c->vs[2];
            const float *kr, *qr, *vr;
            float *dst = yp ? yp + t * V : odirect ? NAM__CAST(float *, d->out.data) + bi * c->os[0] + t * c->os[1] + h * c->os[2] : y;
            if (t % NAM__M2RNN_GB == 0) {   /* the gates of the next block of tokens */
                int64_t nb = nam__ssd_min(NAM__M2RNN_GB, l - t), u;
                for (u = 0; u < NAM__M2RNN_GB; u++)
                    ob[u] = u < nb ? nam__load(d->a.data, d->a.dtype, bi * c->as[0] + (t + u) * c->as[1] + hf * c->as[2]) : 0.0f;
#if NAM__X86_SIMD
                if (c->simd) nam__m2rnn_leak16_avx2(ob, bias, negA, gb);
                else
#endif
                    for (u = 0; u < nb; u++) gb[u] = nam__m2rnn_leak(ob[u], bias, negA);
            }
            if (t + 2 < l) {   /* the rows two tokens ahead */
                const char *kp = NAM__CAST(const char *, d->k.data) + (ko + 2 * c->ks[1]) * NAM__CAST(int64_t, kes);
                const char *qp = NAM__CAST(const char *, d->q.data) + (qo + 2 * c->qs[1]) * NAM__CAST(int64_t, qes);
                int64_t kb_ = rows * c->ks[3] * NAM__CAST(int64_t, kes), qb_ = rows * c->qs[3] * NAM__CAST(int64_t, qes), o;
                for (o = 0; o < kb_; o += 64) NAM__SSD_PREFETCH(kp + o, 0);
                for (o = 0; o < qb_; o += 64) NAM__SSD_PREFETCH(qp + o, 0);
                __builtin_prefetch(NAM__CAST(const char *, d->v.data) + (vo + 2 * c->vs[1]) * NAM__CAST(int64_t, ves), 0, 3);
            }
            kr = nam__m2rnn_row(&d->k, ko, c->ks[3], rows, kb);
            qr = nam__m2rnn_row(&d->q, qo, c->qs[3], rows, qb);
            vr = nam__m2rnn_row(&d->v, vo, c->vs[3], V, vb);
#if NAM__X86_SIMD
            if (c->simd) nam__m2rnn_tok16_avx2(rows, S, W, kr, qr, vr, gb[t % NAM__M2RNN_GB], P, yp ? NULL : Dh, dst);
            else
#endif
                nam__m2rnn_tok_c(rows, V, S, W, kr, qr, vr, gb[t % NAM__M2RNN_GB], acc, yp ? NULL : Dh, dst);
            if (dst == y) nam__ssd_row_store(&d->out, bi * c->os[0] + t * c->os[1] + h * c->os[2], c->os[3], V, y);
        }
        if (d->final_state.data) {
            float *fs = NAM__CAST(float *, d->final_state.data) + bi * c->fs[0] + h * c->fs[1];
            for (i = 0; i < rows; i++)
                for (j = 0; j < V; j++) fs[(r0 + i) * c->fs[2] + j * c->fs[3]] = S[i * V + j];
        }
    }
}

/* R > 1: out[b, t, h] = sum over the R row blocks of the partial y, + D v; tasks (b, t). */
static void nam__m2rnn_reduce(void *vctx, int64_t begin, int64_t end, int thread) {
    nam__m2rnn_ctx *c = NAM__CAST(nam__m2rnn_ctx *, vctx);
    const nam__m2rnn_layout *L = &c->L;
    int64_t n = c->dm.n, V = c->dm.V, l = c->dm.l, R = L->R, task;
    char *slab = c->ws + L->off_slab + NAM__CAST(size_t, thread) * L->slab_bytes;
    float *vb = NAM__CAST(float *, NAM__CAST(void *, slab + L->s_v)), *y = NAM__CAST(float *, NAM__CAST(void *, slab + L->s_y));
    float *ob = NAM__CAST(float *, NAM__CAST(void *, slab + L->s_o));
    for (task = begin; task < end; task++) {
        int64_t bi = task / l, t = task % l, h, r, j;
        for (h = 0; h < n; h++) {
            int64_t hv = h / (n / c->dm.nv);
            const float *vr = nam__m2rnn_row(&c->d->v, bi * c->vs[0] + t * c->vs[1] + hv * c->vs[2], c->vs[3], V, vb);
            const float *yp = NAM__M2RNN_PTR(c, L->off_y) + ((bi * n + h) * R * l + t) * V;
            for (j = 0; j < V; j++) y[j] = yp[j];
            for (r = 1; r < R; r++)
                for (j = 0; j < V; j++) y[j] += yp[r * l * V + j];
            nam__m2rnn_emit(c, bi, t, h, y, vr, ob);
        }
    }
}

/* Validated and resolved desc (its backend and threads are what runs), workspace of the
   backend's size: run it; d->ran is set. */
static nam_status nam__m2rnn_run(nam_m2rnn_desc *d, const nam__m2rnn_dims *dm, void *workspace, size_t workspace_bytes, const char *who, nam_error *err) {
    nam__m2rnn_ctx c;
    size_t need;
    int threads;
    int64_t i;
    nam_status st;
#ifdef NAM_CUDA
    if (dm->be == NAM_BACKEND_CUDA) {
        st = nam_cuda__m2rnn(d, workspace, workspace_bytes, err);
        if (st == NAM_OK) d->ran = NAM_BACKEND_CUDA;
        return st;
    }
#endif
    if (dm->be == NAM_BACKEND_CPU_REF) {
        need = nam__m2rnn_ref_bytes(dm);
        if ((st = nam__ws_check(workspace, workspace_bytes, need, who, err)) != NAM_OK) return st;
        nam__m2rnn_ref(d, dm, NAM__CAST(double *, workspace));
        d->ran = NAM_BACKEND_CPU_REF;
        if (err) nam__err_reset(err);
        return NAM_OK;
    }
    memset(&c, 0, sizeof c);
    c.d = d;
    c.dm = *dm;
    threads = d->threads;
    nam__m2rnn_plan(dm, threads, &c.L);
    if ((st = nam__ws_check(workspace, workspace_bytes, c.L.total, who, err)) != NAM_OK) return st;
    c.ws = NAM__CAST(char *, workspace);
    nam__tensor_strides(&d->q, c.qs); nam__tensor_strides(&d->k, c.ks); nam__tensor_strides(&d->v, c.vs); nam__tensor_strides(&d->a, c.as);
    nam__tensor_strides(&d->initial_state, c.is); nam__tensor_strides(&d->out, c.os); nam__tensor_strides(&d->final_state, c.fs);
    c.simd = dm->V == 16 && nam__cpu_avx2_fma();
    nam__pack_f32(&d->W, NAM__M2RNN_PTR(&c, c.L.off_W));
    if (d->D.data) nam__pack_f32(&d->D, NAM__M2RNN_PTR(&c, c.L.off_D));
    else memset(NAM__M2RNN_PTR(&c, c.L.off_D), 0, sizeof(float) * NAM__CAST(size_t, dm->n * dm->V));
    {
        int64_t Al[4], bs[4];
        float *negA = NAM__M2RNN_PTR(&c, c.L.off_negA), *bias = NAM__M2RNN_PTR(&c, c.L.off_bias);
        nam__tensor_strides(&d->A_log, Al);
        nam__tensor_strides(&d->dt_bias, bs);
        for (i = 0; i < dm->n; i++) {
            negA[i] = -expf(nam__load(d->A_log.data, d->A_log.dtype, i * Al[0]));
            bias[i] = d->dt_bias.data ? nam__load(d->dt_bias.data, d->dt_bias.dtype, i * bs[0]) : 0.0f;
        }
    }
    nam__parallel_for(c.L.tasks, c.L.slabs, nam__m2rnn_task, &c);
    if (c.L.R > 1) nam__parallel_for(dm->b * dm->l, c.L.slabs, nam__m2rnn_reduce, &c);
    d->ran = NAM_BACKEND_CPU;
    if (err) nam__err_reset(err);
    return NAM_OK;
}

static nam_status nam__m2rnn_body(nam_m2rnn_desc *d, void *workspace, size_t workspace_bytes, nam_error *err) {
    nam__m2rnn_dims dm;
    nam_m2rnn_desc r;
    nam_status st;
    if (d) d->ran = NAM_BACKEND_AUTO;
    memset(&dm, 0, sizeof dm);
    st = nam__m2rnn_desc_defaults(d, &r, &dm, err);
    if (st == NAM_OK && dm.be != NAM_BACKEND_CUDA) st = nam__m2rnn_check_gates(&r.a, &r.A_log, &r.dt_bias, dm.b, dm.l, dm.nf, dm.n, NULL, err);
    if (st == NAM_OK) st = nam__m2rnn_run(&r, &dm, workspace, workspace_bytes, "nam_m2rnn", err);
    if (st == NAM_OK) d->ran = r.ran;
    if (st != NAM_OK) nam__err_prefix(err, "nam_m2rnn: ");
    return st;
}

/* ---- single-token decode: nam_m2rnn over l = 1 views --------------------------------------- */
static nam_status nam__m2rnn_step_validate(const nam_m2rnn_step_desc *d, nam__m2rnn_dims *o, nam_error *err) {
    static const char *const from[5] = {"q.shape[1]", "k.shape[1]", "v.shape[1]", "W.shape[0]", "a.shape[1]"};
    const char *nfrom = from[0];
    int64_t cnt[5];
    char nf[96];
    if (!d) return nam__err(err, NAM_ERR_INVALID_ARG, "desc is NULL");
    NAM__SSD_TRY(nam_query_backend(d->backend, d->q.device, &o->be, err));
    NAM__SSD_TRY(nam__tensor_basic(&d->q, "q", 3, "b,nq,K", 0, err));
    NAM__SSD_TRY(nam__ssd_numel(&d->q, "q", err));
    o->b = d->q.shape[0]; o->l = 1; o->nq = d->q.shape[1]; o->K = d->q.shape[2];
    NAM__SSD_TRY(nam__tensor_basic(&d->k, "k", 3, "b,nk,K", 0, err));
    NAM__SSD_TRY(nam__tensor_dim(&d->k, "k", 0, "b", o->b, "q.shape[0]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->k, "k", 2, "K", o->K, "q.shape[2]", err));
    NAM__SSD_TRY(nam__tensor_basic(&d->v, "v", 3, "b,nv,V", 0, err));
    NAM__SSD_TRY(nam__tensor_dim(&d->v, "v", 0, "b", o->b, "q.shape[0]", err));
    o->nk = d->k.shape[1]; o->nv = d->v.shape[1]; o->V = d->v.shape[2];
    NAM__SSD_TRY(nam__m2rnn_sizes(o, "q.shape[2]", "v.shape[2]", err));
    NAM__SSD_TRY(nam__tensor_basic(&d->W, "W", 3, "nw,V,V", 0, err));
    NAM__SSD_TRY(nam__tensor_dim(&d->W, "W", 1, "V", o->V, "v.shape[2]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->W, "W", 2, "V", o->V, "v.shape[2]", err));
    NAM__SSD_TRY(nam__ssd_numel(&d->W, "W", err));
    o->nw = d->W.shape[0];
    NAM__SSD_TRY(nam__tensor_basic(&d->a, "a", 2, "b,nf", 0, err));
    NAM__SSD_TRY(nam__tensor_dim(&d->a, "a", 0, "b", o->b, "q.shape[0]", err));
    o->nf = d->a.shape[1];
    cnt[0] = o->nq; cnt[1] = o->nk; cnt[2] = o->nv; cnt[3] = o->nw; cnt[4] = o->nf;
    o->n = nam__m2rnn_n(cnt, from, &nfrom);
    NAM__SSD_TRY(nam__m2rnn_divides(o->nq, "q", 1, "nq", o->n, nfrom, err));
    NAM__SSD_TRY(nam__m2rnn_divides(o->nk, "k", 1, "nk", o->n, nfrom, err));
    NAM__SSD_TRY(nam__m2rnn_divides(o->nv, "v", 1, "nv", o->n, nfrom, err));
    NAM__SSD_TRY(nam__m2rnn_divides(o->nw, "W", 0, "nw", o->n, nfrom, err));
    NAM__SSD_TRY(nam__m2rnn_divides(o->nf, "a", 1, "nf", o->n, nfrom, err));
    NAM__SSD_TRY(nam__m2rnn_params(&d->A_log, &d->dt_bias, &d->D, o, nfrom, "v.shape[2]", err));
    NAM__SSD_TRY(nam__m2rnn_state(&d->state, "state", 0, o, nfrom, "q.shape[2]", "v.shape[2]", err));
    snprintf(nf, sizeof nf, "the largest head count (%s)", nfrom);
    NAM__SSD_TRY(nam__tensor_basic(&d->out, "out", 3, "b,n,V", 0, err));
    NAM__SSD_TRY(nam__tensor_dim(&d->out, "out", 0, "b", o->b, "q.shape[0]", err));
    NAM__SSD_TRY(nam__tensor_dim(&d->out, "out", 1, "n", o->n, nf, err));
    NAM__SSD_TRY(nam__tensor_dim(&d->out, "out", 2, "V", o->V, "v.shape[2]", err));
    {
        const nam_tensor *ts[10];
        static const char *const nm[10] = {"q", "k", "v", "W", "a", "A_log", "dt_bias", "D", "state", "out"};
        int i;
        ts[0] = &d->q; ts[1] = &d->k; ts[2] = &d->v; ts[3] = &d->W; ts[4] = &d->a; ts[5] = &d->A_log; ts[6] = &d->dt_bias;
        ts[7] = &d->D; ts[8] = &d->state; ts[9] = &d->out;
        NAM__SSD_TRY(nam__same_device(10, ts, nm, err));
        for (i = 0; i < 5; i++)
            if (d->out.data == ts[i]->data)
                return nam__err(err, NAM_ERR_INVALID_ARG, "out: shares its data with %s; the step reads its inputs after writing out", nm[i]);
    }
    return NAM_OK;
}

/* nam__m2rnn_step_desc_defaults: validate *d, then *r = *d resolved as for the scan. */
static nam_status nam__m2rnn_step_desc_defaults(const nam_m2rnn_step_desc *d, nam_m2rnn_step_desc *r, nam__m2rnn_dims *dm, nam_error *err) {
    NAM__SSD_TRY(nam__m2rnn_step_validate(d, dm, err));
    *r = *d;
    r->backend = dm->be;
    r->threads = nam__desc_threads(dm->be, d->threads);
    return NAM_OK;
}

/* t (b, x, y) -> (b, 1, x, y) with explicit strides; t (b, x) -> (b, 1, x) */
static nam_tensor nam__m2rnn_add_l(const nam_tensor *t) {
    nam_tensor u = *t;
    int64_t st[NAM_MAX_DIMS];
    int i;
    nam__tensor_strides(t, st);
    u.ndim = t->ndim + 1;
    u.shape[0] = t->shape[0];
    u.stride[0] = st[0];
    u.shape[1] = 1;
    u.stride[1] = st[0];
    for (i = 1; i < t->ndim; i++) { u.shape[i + 1] = t->shape[i]; u.stride[i + 1] = st[i]; }
    return u;
}

static void nam__m2rnn_step_scan(const nam_m2rnn_step_desc *s, nam_m2rnn_desc *d) {
    memset(d, 0, sizeof *d);
    d->q = nam__m2rnn_add_l(&s->q); d->k = nam__m2rnn_add_l(&s->k); d->v = nam__m2rnn_add_l(&s->v); d->a = nam__m2rnn_add_l(&s->a);
    d->out = nam__m2rnn_add_l(&s->out);
    d->W = s->W; d->A_log = s->A_log; d->dt_bias = s->dt_bias; d->D = s->D;
    d->initial_state = s->state; d->final_state = s->state;
    d->backend = s->backend; d->threads = s->threads; d->stream = s->stream;
}

static nam_status nam__m2rnn_step_workspace_size_body(const nam_m2rnn_step_desc *d, size_t *bytes, nam_error *err) {
    nam__m2rnn_dims dm;
    nam_m2rnn_step_desc r;
    nam_status st;
    memset(&dm, 0, sizeof dm);
    if (!bytes) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_m2rnn_step_workspace_size: bytes is NULL");
    *bytes = 0;
    st = nam__m2rnn_step_desc_defaults(d, &r, &dm, err);
    if (st != NAM_OK) { nam__err_prefix(err, "nam_m2rnn_step_workspace_size: "); return st; }
    *bytes = nam__m2rnn_bytes(&dm, r.threads);
    if (err) nam__err_reset(err);
    return NAM_OK;
}

static nam_status nam__m2rnn_step_body(nam_m2rnn_step_desc *d, void *workspace, size_t workspace_bytes, nam_error *err) {
    nam__m2rnn_dims dm;
    nam_m2rnn_step_desc r;
    nam_m2rnn_desc s;
    nam_status st;
    if (d) d->ran = NAM_BACKEND_AUTO;
    memset(&dm, 0, sizeof dm);
    st = nam__m2rnn_step_desc_defaults(d, &r, &dm, err);
    if (st == NAM_OK) {
        nam__m2rnn_step_scan(&r, &s);
        if (dm.be != NAM_BACKEND_CUDA) st = nam__m2rnn_check_gates(&s.a, &s.A_log, &s.dt_bias, dm.b, 1, dm.nf, dm.n, "step", err);
        if (st == NAM_OK) st = nam__m2rnn_run(&s, &dm, workspace, workspace_bytes, "nam_m2rnn_step", err);
        d->ran = s.ran;
    }
    if (st != NAM_OK) nam__err_prefix(err, "nam_m2rnn_step: ");
    return st;
}

/* ---- public entries: each runs inside the kernel FP environment (NAM__FP_CALL) ------------ */
NAM__DEF nam_status nam_m2rnn_workspace_size(const nam_m2rnn_desc *d, size_t *bytes, nam_error *err) {
    nam_status st;
    NAM__FP_CALL(st, nam__m2rnn_workspace_size_body(d, bytes, err));
    return st;
}
NAM__DEF nam_status nam_m2rnn(nam_m2rnn_desc *d, void *workspace, size_t workspace_bytes, nam_error *err) {
    nam_status st;
    NAM__FP_CALL(st, nam__m2rnn_body(d, workspace, workspace_bytes, err));
    return st;
}
NAM__DEF nam_status nam_m2rnn_step_workspace_size(const nam_m2rnn_step_desc *d, size_t *bytes, nam_error *err) {
    nam_status st;
    NAM__FP_CALL(st, nam__m2rnn_step_workspace_size_body(d, bytes, err));
    return st;
}
NAM__DEF nam_status nam_m2rnn_step(nam_m2rnn_step_desc *d, void *workspace, size_t workspace_bytes, nam_error *err) {
    nam_status st;
    NAM__FP_CALL(st, nam__m2rnn_step_body(d, workspace, workspace_bytes, err));
    return st;
}

/* >>kernel-layers ---------------------------------------------------------------------- */
/* The layer ops around the blocks (issue 11); semantics in >>kernels (nam_rmsnorm, nam_rope,
   nam_embedding, nam_swiglu, nam_cross_entropy). */

/* The backend every op of this section runs on: the first tensor's device decides (AUTO), all
   given tensors t[0..n) on one device, and CUDA refused as not implemented yet. The caller
   prefixes the error with its name. */
static nam_status nam__layer_backend(nam_backend requested, int n, const nam_tensor *const *t, const char *const *names, nam_backend *be, nam_error *err) {
    nam_status st = nam_query_backend(requested, t[0]->device, be, err);
    if (st == NAM_OK) st = nam__same_device(n, t, names, err);
    if (st == NAM_OK && *be == NAM_BACKEND_CUDA) st = nam__err(err, NAM_ERR_NOT_IMPLEMENTED, "the CUDA path is not implemented yet (CPU tensors only)");
    return st;
}
typedef struct nam__rmsnorm_ctx {
    const nam_rmsnorm_desc *d;
    int64_t t, n, gs;
    int64_t xs[NAM_MAX_DIMS], zs[NAM_MAX_DIMS], ws[NAM_MAX_DIMS], os[NAM_MAX_DIMS];
} nam__rmsnorm_ctx;

/* rows [begin, end), in double (CPU_REF: called with the whole range, one thread) */
static void nam__rmsnorm_ref_rows(void *vctx, int64_t begin, int64_t end, int thread) {
    nam__rmsnorm_ctx *c = NAM__CAST(nam__rmsnorm_ctx *, vctx);
    const nam_rmsnorm_desc *d = c->d;
    double eps = d->eps;
    int64_t r, g0, j;
    (void)thread;
    for (r = begin; r < end; r++)
        for (g0 = 0; g0 < c->n; g0 += c->gs) {
            double ss = 0.0, inv;
            for (j = g0; j < g0 + c->gs; j++) {
                double v = nam__load(d->x.data, d->x.dtype, r * c->xs[0] + j * c->xs[1]);
                if (d->z.data) v *= nam__silu_d(nam__load(d->z.data, d->z.dtype, r * c->zs[0] + j * c->zs[1]));
                ss += v * v;
            }
            inv = 1.0 / sqrt(ss / NAM__CAST(double, c->gs) + eps);
            for (j = g0; j < g0 + c->gs; j++) {
                double v = nam__load(d->x.data, d->x.dtype, r * c->xs[0] + j * c->xs[1]);
                if (d->z.data) v *= nam__silu_d(nam__load(d->z.data, d->z.dtype, r * c->zs[0] + j * c->zs[1]));
                v *= inv;
                if (d->weight.data) v *= nam__load(d->weight.data, d->weight.dtype, j * c->ws[0]);
                nam__store(d->out.data, d->out.dtype, r * c->os[0] + j * c->os[1], NAM__CAST(float, v));
            }
        }
}

/* rows [begin, end), fp32 with the sum of squares in double. A group is read twice (sum of
   squares, then scale), with no buffer; element j is read just before out[j] is written, so
   out may be x. */
static float nam__rmsnorm_in(const nam__rmsnorm_ctx *c, int64_t r, int64_t j) {
    const nam_rmsnorm_desc *d = c->d;
    float v = nam__load(d->x.data, d->x.dtype, r * c->xs[0] + j * c->xs[1]);
    if (d->z.data) v *= nam__silu(nam__load(d->z.data, d->z.dtype, r * c->zs[0] + j * c->zs[1]));
    return v;
}
static void nam__rmsnorm_rows(void *vctx, int64_t begin, int64_t end, int thread) {
    nam__rmsnorm_ctx *c = NAM__CAST(nam__rmsnorm_ctx *, vctx);
    const nam_rmsnorm_desc *d = c->d;
    int64_t r, g0, j;
    (void)thread;
    for (r = begin; r < end; r++)
        for (g0 = 0; g0 < c->n; g0 += c->gs) {
            double ss = 0.0;
            float inv;
            for (j = g0; j < g0 + c->gs; j++) {
                float v = nam__rmsnorm_in(c, r, j);
                ss += NAM__CAST(double, v) * v;
            }
            inv = NAM__CAST(float, 1.0 / sqrt(ss / NAM__CAST(double, c->gs) + NAM__CAST(double, d->eps)));
            for (j = g0; j < g0 + c->gs; j++) {
                float v = nam__rmsnorm_in(c, r, j) * inv;
                if (d->weight.data) v *= nam__load(d->weight.data, d->weight.dtype, j * c->ws[0]);
                nam__store(d->out.data, d->out.dtype, r * c->os[0] + j * c->os[1], v);
            }
        }
}

/* nam__rmsnorm_desc_defaults: validate *d, then *r = *d resolved (backend, threads, eps 0 ->
   1e-5, group_size 0 -> n); c gets the dimensions. Errors carry "nam_rmsnorm: ". */
static nam_status nam__rmsnorm_desc_defaults(const nam_rmsnorm_desc *d, nam_rmsnorm_desc *r, nam__rmsnorm_ctx *c, nam_error *err) {
    nam_backend be = NAM_BACKEND_AUTO;
    nam_status st = NAM_OK;
    do {
        if (!d) { st = nam__err(err, NAM_ERR_INVALID_ARG, "desc is NULL"); break; }
        if ((st = nam__tensor_basic(&d->x, "x", 2, "t,n", 0, err)) != NAM_OK) break;
        c->t = d->x.shape[0]; c->n = d->x.shape[1];
        if ((st = nam__tensor_basic(&d->z, "z", 2, "t,n", 1, err)) != NAM_OK) break;
        if (d->z.data && ((st = nam__tensor_dim(&d->z, "z", 0, "t", c->t, "x.shape[0]", err)) != NAM_OK ||
                          (st = nam__tensor_dim(&d->z, "z", 1, "n", c->n, "x.shape[1]", err)) != NAM_OK)) break;
        if ((st = nam__tensor_basic(&d->weight, "weight", 1, "n", 1, err)) != NAM_OK) break;
        if (d->weight.data && (st = nam__tensor_dim(&d->weight, "weight", 0, "n", c->n, "x.shape[1]", err)) != NAM_OK) break;
        if ((st = nam__tensor_basic(&d->out, "out", 2, "t,n", 0, err)) != NAM_OK) break;
        if ((st = nam__tensor_dim(&d->out, "out", 0, "t", c->t, "x.shape[0]", err)) != NAM_OK) break;
        if ((st = nam__tensor_dim(&d->out, "out", 1, "n", c->n, "x.shape[1]", err)) != NAM_OK) break;
        if (d->group_size < 0 || d->group_size > c->n || (d->group_size && c->n % d->group_size)) {
            st = nam__err(err, NAM_ERR_INVALID_ARG, "group_size = %lld does not divide n = x.shape[1] = %lld (0 = one group of n)",
                          NAM__CAST(long long, d->group_size), NAM__CAST(long long, c->n));
            break;
        }
        if (!(d->eps >= 0.0f) || d->eps > 3.0e38f) { st = nam__err(err, NAM_ERR_INVALID_ARG, "eps = %g is not a finite value >= 0 (0 = 1e-5)", NAM__CAST(double, d->eps)); break; }
        {
            const nam_tensor *ts[4];
            static const char *const nm[4] = {"x", "z", "weight", "out"};
            ts[0] = &d->x; ts[1] = &d->z; ts[2] = &d->weight; ts[3] = &d->out;
            st = nam__layer_backend(d->backend, 4, ts, nm, &be, err);
        }
    } while (0);
    if (st != NAM_OK) { nam__err_prefix(err, "nam_rmsnorm: "); return st; }
    *r = *d;
    r->backend = be;
    r->threads = nam__desc_threads(be, d->threads);
    if (r->eps == 0.0f) r->eps = 1e-5f;
    c->gs = d->group_size ? d->group_size : c->n;
    return NAM_OK;
}

static nam_status nam__rmsnorm_body(nam_rmsnorm_desc *d, nam_error *err) {
    nam__rmsnorm_ctx c;
    nam_rmsnorm_desc r;
    nam_status st;
    if (d) d->ran = NAM_BACKEND_AUTO;
    memset(&c, 0, sizeof c);
    if ((st = nam__rmsnorm_desc_defaults(d, &r, &c, err)) != NAM_OK) return st;
    c.d = &r;
    nam__tensor_strides(&r.x, c.xs); nam__tensor_strides(&r.z, c.zs); nam__tensor_strides(&r.weight, c.ws); nam__tensor_strides(&r.out, c.os);
    if (r.backend == NAM_BACKEND_CPU_REF) nam__rmsnorm_ref_rows(&c, 0, c.t, 0);
    else nam__parallel_for(c.t, r.threads, nam__rmsnorm_rows, &c);
    d->ran = r.backend;
    return nam__ok(err);
}

NAM__DEF nam_status nam_rmsnorm(nam_rmsnorm_desc *d, nam_error *err) {
    nam_status st;
    NAM__FP_CALL(st, nam__rmsnorm_body(d, err));
    return st;
}

/* ---- RoPE ----------------------------------------------------------------------------- */
typedef struct nam__rope_ctx {
    const nam_rope_desc *d;
    int64_t b, s, h, dim, half;
    int64_t xs[NAM_MAX_DIMS], os[NAM_MAX_DIMS];
    int ref;
} nam__rope_ctx;

/* rows [begin, end) of the flattened (b, s): every head of one position shares its angles,
   formed in double (cos and sin of p * base^(-2i / rot_dim)) */
static void nam__rope_rows(void *vctx, int64_t begin, int64_t end, int thread) {
    nam__rope_ctx *c = NAM__CAST(nam__rope_ctx *, vctx);
    const nam_rope_desc *d = c->d;
    int64_t row, hh, i;
    (void)thread;
    for (row = begin; row < end; row++) {
        int64_t bi = row / c->s, t = row % c->s, xr = bi * c->xs[0] + t * c->xs[1], orow = bi * c->os[0] + t * c->os[1];
        double p = NAM__CAST(double, d->pos_offset + t);
        for (i = 0; i < c->half; i++) {
            double th = p * pow(d->base, -2.0 * NAM__CAST(double, i) / NAM__CAST(double, 2 * c->half)), cs = cos(th), sn = sin(th);
            float cf = NAM__CAST(float, cs), sf = NAM__CAST(float, sn);
            int64_t ia = d->interleaved ? 2 * i : i, ib = d->interleaved ? 2 * i + 1 : i + c->half;
            for (hh = 0; hh < c->h; hh++) {
                int64_t xb = xr + hh * c->xs[2], ob = orow + hh * c->os[2];
                float a = nam__load(d->x.data, d->x.dtype, xb + ia * c->xs[3]), bb = nam__load(d->x.data, d->x.dtype, xb + ib * c->xs[3]);
                if (c->ref) {
                    nam__store(d->out.data, d->out.dtype, ob + ia * c->os[3], NAM__CAST(float, a * cs - bb * sn));
                    nam__store(d->out.data, d->out.dtype, ob + ib * c->os[3], NAM__CAST(float, bb * cs + a * sn));
                } else {
                    nam__store(d->out.data, d->out.dtype, ob + ia * c->os[3], a * cf - bb * sf);
                    nam__store(d->out.data, d->out.dtype, ob + ib * c->os[3], bb * cf + a * sf);
                }
            }
        }
        if (d->out.data != d->x.data)   /* the features past rot_dim pass through */
            for (hh = 0; hh < c->h; hh++)
                for (i = 2 * c->half; i < c->dim; i++)
                    nam__store(d->out.data, d->out.dtype, orow + hh * c->os[2] + i * c->os[3],
                               nam__load(d->x.data, d->x.dtype, xr + hh * c->xs[2] + i * c->xs[3]));
    }
}

/* nam__rope_desc_defaults: validate *d, then *r = *d resolved (backend, threads, rot_dim 0 ->
   d, base 0 -> 10000); c gets the dimensions. Errors carry "nam_rope: ". */
static nam_status nam__rope_desc_defaults(const nam_rope_desc *d, nam_rope_desc *r, nam__rope_ctx *c, nam_error *err) {
    nam_backend be = NAM_BACKEND_AUTO;
    nam_status st = NAM_OK;
    int i;
    do {
        if (!d) { st = nam__err(err, NAM_ERR_INVALID_ARG, "desc is NULL"); break; }
        if ((st = nam__tensor_basic(&d->x, "x", 4, "b,s,h,d", 0, err)) != NAM_OK) break;
        c->b = d->x.shape[0]; c->s = d->x.shape[1]; c->h = d->x.shape[2]; c->dim = d->x.shape[3];
        if ((st = nam__tensor_basic(&d->out, "out", 4, "b,s,h,d", 0, err)) != NAM_OK) break;
        for (i = 0; i < 4 && st == NAM_OK; i++) {
            static const char *const ax[4] = {"b", "s", "h", "d"};
            static const char *const from[4] = {"x.shape[0]", "x.shape[1]", "x.shape[2]", "x.shape[3]"};
            st = nam__tensor_dim(&d->out, "out", i, ax[i], d->x.shape[i], from[i], err);
        }
        if (st != NAM_OK) break;
        if (d->rot_dim < 0 || d->rot_dim > c->dim || d->rot_dim % 2 || (!d->rot_dim && c->dim % 2)) {
            st = nam__err(err, NAM_ERR_INVALID_ARG, "rot_dim = %lld must be even and at most d = x.shape[3] = %lld (0 = d, then d must be even)",
                          NAM__CAST(long long, d->rot_dim), NAM__CAST(long long, c->dim));
            break;
        }
        if (d->pos_offset < 0 || d->pos_offset > (INT64_C(1) << 40)) {
            st = nam__err(err, NAM_ERR_RANGE, "pos_offset = %lld is out of range (0..2^40)", NAM__CAST(long long, d->pos_offset));
            break;
        }
        if (!(d->base >= 0.0) || d->base > 1e300 || (d->base != 0.0 && d->base <= 1.0)) {
            st = nam__err(err, NAM_ERR_INVALID_ARG, "base = %g must be a finite value above 1 (0 = 10000)", d->base);
            break;
        }
        if (d->interleaved != 0 && d->interleaved != 1) { st = nam__err(err, NAM_ERR_INVALID_ARG, "interleaved = %d is not 0 or 1", d->interleaved); break; }
        if (d->out.data == d->x.data) {
            int64_t a[NAM_MAX_DIMS], o[NAM_MAX_DIMS];
            nam__tensor_strides(&d->x, a); nam__tensor_strides(&d->out, o);
            if (memcmp(a, o, sizeof a) || d->out.dtype != d->x.dtype) {
                st = nam__err(err, NAM_ERR_INVALID_ARG, "out: shares its data with x but not its strides and dtype (in place needs out = x exactly)");
                break;
            }
        }
        {
            const nam_tensor *ts[2];
            static const char *const nm[2] = {"x", "out"};
            ts[0] = &d->x; ts[1] = &d->out;
            st = nam__layer_backend(d->backend, 2, ts, nm, &be, err);
        }
    } while (0);
    if (st != NAM_OK) { nam__err_prefix(err, "nam_rope: "); return st; }
    *r = *d;
    r->backend = be;
    r->threads = nam__desc_threads(be, d->threads);
    if (!r->rot_dim) r->rot_dim = c->dim;
    if (r->base == 0.0) r->base = 10000.0;
    c->half = r->rot_dim / 2;
    return NAM_OK;
}

static nam_status nam__rope_body(nam_rope_desc *d, nam_error *err) {
    nam__rope_ctx c;
    nam_rope_desc r;
    nam_status st;
    if (d) d->ran = NAM_BACKEND_AUTO;
    memset(&c, 0, sizeof c);
    if ((st = nam__rope_desc_defaults(d, &r, &c, err)) != NAM_OK) return st;
    c.d = &r;
    c.ref = r.backend == NAM_BACKEND_CPU_REF;
    nam__tensor_strides(&r.x, c.xs); nam__tensor_strides(&r.out, c.os);
    nam__parallel_for(c.b * c.s, r.threads, nam__rope_rows, &c);
    d->ran = r.backend;
    return nam__ok(err);
}

NAM__DEF nam_status nam_rope(nam_rope_desc *d, nam_error *err) {
    nam_status st;
    NAM__FP_CALL(st, nam__rope_body(d, err));
    return st;
}

/* ---- embedding, SwiGLU product, cross-entropy --------------------------------------------- */
typedef struct nam__rows_ctx {   /* a row-wise op over t rows (embedding, swiglu, cross-entropy) */
    const void *d;
    int64_t t, n;
    int64_t s0[NAM_MAX_DIMS], s1[NAM_MAX_DIMS], s2[NAM_MAX_DIMS], s3[NAM_MAX_DIMS];
    int ref;
    double part[256];            /* cross-entropy: each thread's loss sum */
    int64_t cnt[256];
} nam__rows_ctx;

/* every id of a (t) i32 tensor in 0..vocab-1, checked before anything is written */
static nam_status nam__check_ids(const nam_tensor *ids, const char *field, int64_t vocab, const char *what, int negative_ok, nam_error *err) {
    int64_t st[NAM_MAX_DIMS], i;
    const int32_t *p = NAM__CAST(const int32_t *, ids->data);
    nam__tensor_strides(ids, st);
    for (i = 0; i < ids->shape[0]; i++) {
        int32_t v = p[i * st[0]];
        if ((v < 0 && !negative_ok) || v >= vocab)
            return nam__err(err, NAM_ERR_RANGE, "%s[%lld] = %d is outside 0..%lld (%s)", field, NAM__CAST(long long, i), NAM__CAST(int, v),
                            NAM__CAST(long long, vocab - 1), what);
    }
    return NAM_OK;
}

static void nam__embedding_rows(void *vctx, int64_t begin, int64_t end, int thread) {
    nam__rows_ctx *c = NAM__CAST(nam__rows_ctx *, vctx);
    const nam_embedding_desc *d = NAM__CAST(const nam_embedding_desc *, c->d);
    const int32_t *ids = NAM__CAST(const int32_t *, d->ids.data);
    int64_t r, j;
    (void)thread;
    for (r = begin; r < end; r++) {
        int64_t row = ids[r * c->s0[0]];
        for (j = 0; j < c->n; j++)
            nam__store(d->out.data, d->out.dtype, r * c->s2[0] + j * c->s2[1], nam__load(d->table.data, d->table.dtype, row * c->s1[0] + j * c->s1[1]));
    }
}

static nam_status nam__embedding_body(nam_embedding_desc *d, nam_error *err) {
    nam__rows_ctx c;
    nam_backend be;
    int th;
    nam_status st = NAM_OK;
    if (!d) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_embedding: desc is NULL");
    d->ran = NAM_BACKEND_AUTO;
    memset(&c, 0, sizeof c);
    do {
        if ((st = nam__tensor_i32(&d->ids, "ids", 1, "t", err)) != NAM_OK) break;
        if ((st = nam__tensor_basic(&d->table, "table", 2, "vocab,n", 0, err)) != NAM_OK) break;
        if ((st = nam__tensor_basic(&d->out, "out", 2, "t,n", 0, err)) != NAM_OK) break;
        if ((st = nam__tensor_dim(&d->out, "out", 0, "t", d->ids.shape[0], "ids.shape[0]", err)) != NAM_OK) break;
        if ((st = nam__tensor_dim(&d->out, "out", 1, "n", d->table.shape[1], "table.shape[1]", err)) != NAM_OK) break;
    } while (0);
    if (st != NAM_OK) { nam__err_prefix(err, "nam_embedding: "); return st; }
    {
        const nam_tensor *ts[3];
        static const char *const nm[3] = {"table", "ids", "out"};
        ts[0] = &d->table; ts[1] = &d->ids; ts[2] = &d->out;
        if ((st = nam__layer_backend(d->backend, 3, ts, nm, &be, err)) != NAM_OK) { nam__err_prefix(err, "nam_embedding: "); return st; }
        th = nam__desc_threads(be, d->threads);
    }
    if ((st = nam__check_ids(&d->ids, "ids", d->table.shape[0], "table.shape[0] rows", 0, err)) != NAM_OK) { nam__err_prefix(err, "nam_embedding: "); return st; }
    c.d = d; c.t = d->ids.shape[0]; c.n = d->table.shape[1];
    nam__tensor_strides(&d->ids, c.s0); nam__tensor_strides(&d->table, c.s1); nam__tensor_strides(&d->out, c.s2);
    nam__parallel_for(c.t, th, nam__embedding_rows, &c);
    d->ran = be;
    return nam__ok(err);
}

static void nam__swiglu_rows(void *vctx, int64_t begin, int64_t end, int thread) {
    nam__rows_ctx *c = NAM__CAST(nam__rows_ctx *, vctx);
    const nam_swiglu_desc *d = NAM__CAST(const nam_swiglu_desc *, c->d);
    int64_t r, j;
    (void)thread;
    for (r = begin; r < end; r++)
        for (j = 0; j < c->n; j++) {
            float g = nam__load(d->gate.data, d->gate.dtype, r * c->s0[0] + j * c->s0[1]), u = nam__load(d->up.data, d->up.dtype, r * c->s1[0] + j * c->s1[1]);
            float v = c->ref ? NAM__CAST(float, nam__silu_d(g) * u) : nam__silu(g) * u;
            nam__store(d->out.data, d->out.dtype, r * c->s2[0] + j * c->s2[1], v);
        }
}

static nam_status nam__swiglu_body(nam_swiglu_desc *d, nam_error *err) {
    nam__rows_ctx c;
    nam_backend be;
    int th, i;
    nam_status st = NAM_OK;
    if (!d) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_swiglu: desc is NULL");
    d->ran = NAM_BACKEND_AUTO;
    memset(&c, 0, sizeof c);
    do {
        if ((st = nam__tensor_basic(&d->gate, "gate", 2, "t,f", 0, err)) != NAM_OK) break;
        if ((st = nam__tensor_basic(&d->up, "up", 2, "t,f", 0, err)) != NAM_OK) break;
        if ((st = nam__tensor_basic(&d->out, "out", 2, "t,f", 0, err)) != NAM_OK) break;
        for (i = 0; i < 2 && st == NAM_OK; i++) {
            static const char *const ax[2] = {"t", "f"}, *const from[2] = {"gate.shape[0]", "gate.shape[1]"};
            if ((st = nam__tensor_dim(&d->up, "up", i, ax[i], d->gate.shape[i], from[i], err)) == NAM_OK)
                st = nam__tensor_dim(&d->out, "out", i, ax[i], d->gate.shape[i], from[i], err);
        }
    } while (0);
    if (st != NAM_OK) { nam__err_prefix(err, "nam_swiglu: "); return st; }
    {
        const nam_tensor *ts[3];
        static const char *const nm[3] = {"gate", "up", "out"};
        ts[0] = &d->gate; ts[1] = &d->up; ts[2] = &d->out;
        if ((st = nam__layer_backend(d->backend, 3, ts, nm, &be, err)) != NAM_OK) { nam__err_prefix(err, "nam_swiglu: "); return st; }
        th = nam__desc_threads(be, d->threads);
    }
    c.d = d; c.t = d->gate.shape[0]; c.n = d->gate.shape[1]; c.ref = be == NAM_BACKEND_CPU_REF;
    nam__tensor_strides(&d->gate, c.s0); nam__tensor_strides(&d->up, c.s1); nam__tensor_strides(&d->out, c.s2);
    nam__parallel_for(c.t, th, nam__swiglu_rows, &c);
    d->ran = be;
    return nam__ok(err);
}

static void nam__xent_rows(void *vctx, int64_t begin, int64_t end, int thread) {
    nam__rows_ctx *c = NAM__CAST(nam__rows_ctx *, vctx);
    const nam_cross_entropy_desc *d = NAM__CAST(const nam_cross_entropy_desc *, c->d);
    const int32_t *tg = NAM__CAST(const int32_t *, d->targets.data);
    int64_t r, j;
    for (r = begin; r < end; r++) {
        int32_t y = tg[r * c->s1[0]];
        double m = -HUGE_VAL, sum = 0.0, loss = 0.0;
        if (y >= 0) {
            for (j = 0; j < c->n; j++) m = fmax(m, NAM__CAST(double, nam__load(d->logits.data, d->logits.dtype, r * c->s0[0] + j * c->s0[1])));
            for (j = 0; j < c->n; j++) {
                double v = nam__load(d->logits.data, d->logits.dtype, r * c->s0[0] + j * c->s0[1]) - m;
                sum += c->ref ? exp(v) : NAM__CAST(double, expf(NAM__CAST(float, v)));
            }
            loss = m + log(sum) - nam__load(d->logits.data, d->logits.dtype, r * c->s0[0] + y * c->s0[1]);
            c->part[thread] += loss;
            c->cnt[thread]++;
        }
        if (d->losses.data) nam__store(d->losses.data, NAM_F32, r * c->s2[0], NAM__CAST(float, loss));
    }
}

static nam_status nam__xent_body(nam_cross_entropy_desc *d, nam_error *err) {
    nam__rows_ctx c;
    nam_backend be;
    int th, i;
    double total = 0.0;
    int64_t n = 0;
    nam_status st = NAM_OK;
    if (!d) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_cross_entropy: desc is NULL");
    d->ran = NAM_BACKEND_AUTO;
    d->loss_mean = 0.0;
    d->counted = 0;
    do {
        if ((st = nam__tensor_basic(&d->logits, "logits", 2, "t,V", 0, err)) != NAM_OK) break;
        if ((st = nam__tensor_i32(&d->targets, "targets", 1, "t", err)) != NAM_OK) break;
        if ((st = nam__tensor_dim(&d->targets, "targets", 0, "t", d->logits.shape[0], "logits.shape[0]", err)) != NAM_OK) break;
        if ((st = nam__tensor_basic(&d->losses, "losses", 1, "t", 1, err)) != NAM_OK) break;
        if (d->losses.data && d->losses.dtype != NAM_F32) { st = nam__err(err, NAM_ERR_INVALID_ARG, "losses: dtype %s, expected f32", nam_dtype_name(d->losses.dtype)); break; }
        if (d->losses.data && (st = nam__tensor_dim(&d->losses, "losses", 0, "t", d->logits.shape[0], "logits.shape[0]", err)) != NAM_OK) break;
    } while (0);
    if (st != NAM_OK) { nam__err_prefix(err, "nam_cross_entropy: "); return st; }
    {
        const nam_tensor *ts[3];
        static const char *const nm[3] = {"logits", "targets", "losses"};
        ts[0] = &d->logits; ts[1] = &d->targets; ts[2] = &d->losses;
        if ((st = nam__layer_backend(d->backend, 3, ts, nm, &be, err)) != NAM_OK) { nam__err_prefix(err, "nam_cross_entropy: "); return st; }
        th = nam__desc_threads(be, d->threads);
    }
    if ((st = nam__check_ids(&d->targets, "targets", d->logits.shape[1], "logits.shape[1] classes; negative = ignored", 1, err)) != NAM_OK) {
        nam__err_prefix(err, "nam_cross_entropy: ");
        return st;
    }
    memset(&c, 0, sizeof c);   /* 4 KB with the per-thread sums: on the stack, kernels never allocate */
    c.d = d; c.t = d->logits.shape[0]; c.n = d->logits.shape[1]; c.ref = be == NAM_BACKEND_CPU_REF;
    nam__tensor_strides(&d->logits, c.s0); nam__tensor_strides(&d->targets, c.s1); nam__tensor_strides(&d->losses, c.s2);
    nam__parallel_for(c.t, th, nam__xent_rows, &c);
    for (i = 0; i < 256; i++) { total += c.part[i]; n += c.cnt[i]; }
    d->counted = n;
    d->loss_mean = n ? total / NAM__CAST(double, n) : 0.0;
    d->ran = be;
    return nam__ok(err);
}

NAM__DEF nam_status nam_embedding(nam_embedding_desc *d, nam_error *err) {
    nam_status st;
    NAM__FP_CALL(st, nam__embedding_body(d, err));
    return st;
}
NAM__DEF nam_status nam_swiglu(nam_swiglu_desc *d, nam_error *err) {
    nam_status st;
    NAM__FP_CALL(st, nam__swiglu_body(d, err));
    return st;
}
NAM__DEF nam_status nam_cross_entropy(nam_cross_entropy_desc *d, nam_error *err) {
    nam_status st;
    NAM__FP_CALL(st, nam__xent_body(d, err));
    return st;
}

#endif /* NAM_NO_KERNELS */


#ifdef __cplusplus
}
#endif
#endif /* NAM_IMPLEMENTATION */

/* ==================================================================================== */
/*                    THE PLANNER HALF: declarations, then implementation               */
/* Patterns, recipes, the translation to Megatron-LM, pre-flight, rendering, argument   */
/* comparison, rank maps. Needs the common part at the top (limits, errors, NAM_API)    */
/* and stb_ds; never the kernels. NAM_NO_PLANNER leaves it out.                        */
/* ==================================================================================== */
#ifndef NAM_NO_PLANNER
#ifndef NAM_H_PLANNER_INCLUDED
#define NAM_H_PLANNER_INCLUDED
#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------ */
/* >>pattern  The authored pattern.                                                      */

/* nam_pattern_desc defaults (zero-init):
     text          required; the authored text (main [/mtp ...])
     len           0 -> strlen(text)
     tile          0 -> text is the full pattern; 1 -> main is a motif tiled to `depth`
     depth         0 -> the written length (required > 0 when tile = 1)
     stages        0 -> as written ('|'); N -> N equal stages (pattern must have no '|',
                   or exactly N-1 of them)
     families      NULL -> none; extra upper-case family letters the recipe declares
     source        NULL -> "pattern"; name used in error records
     line, column  0 -> 1; position of text[0] in an enclosing file, for error records */
typedef struct nam_pattern_desc {
    const char *text;
    size_t len;
    int tile;
    int depth;
    int stages;
    const char *families;
    const char *source;
    int line, column;
} nam_pattern_desc;

typedef struct nam_layer {
    int index;     /* 0-based layer index */
    char family;   /* 'A', 'M', 'E', 'R' or a declared letter */
    int stage;     /* 0-based stage */
    int column;    /* 1-based column of the letter in the authored text (tiled layers
                      point at the motif letter they repeat) */
} nam_layer;

typedef struct nam_pattern {
    int depth;             /* main layers */
    int num_stages;        /* >= 1 */
    nam_layer *layers;     /* depth entries */
    int *stage_begin;      /* num_stages + 1 entries: stage s = layers [begin[s], begin[s+1]) */
    char *mtp;             /* one MTP copy as family letters, NUL-terminated; NULL if none */
    int mtp_len;
    int mtp_depths;        /* number of '/'-separated copies, 0 if none */
    int *mtp_columns;      /* mtp_len entries: column of each letter of the FIRST copy */
    int counts[26];        /* main-pattern layers per family letter, counts['A'-'A'] ... */
} nam_pattern;

/* nam_pattern_parse: parse and check an authored pattern. On error `out` is left empty
   (safe to nam_pattern_free). Errors: NAM_ERR_EMPTY, NAM_ERR_SYMBOL (letter + column),
   NAM_ERR_DEPTH (both lengths), NAM_ERR_STAGE, NAM_ERR_MTP, NAM_ERR_LIMIT, NAM_ERR_RANGE. */
NAM_API nam_status nam_pattern_parse(const nam_pattern_desc *desc, nam_pattern *out, nam_error *err);
NAM_API void nam_pattern_free(nam_pattern *p);

/* ------------------------------------------------------------------------------------ */
/* >>megatron  The Megatron-native model.                                                */

/* Megatron's name_sorted_valid_layer_symbols order: the order of nam_mpattern.counts. */
#define NAM_MEGATRON_SYMBOLS "*DGM+-E"
enum { NAM_MSYM_ATTENTION, NAM_MSYM_DSA, NAM_MSYM_GDN, NAM_MSYM_MAMBA, NAM_MSYM_MLA,
       NAM_MSYM_MLP, NAM_MSYM_MOE, NAM_MSYM_COUNT };

typedef struct nam_mpattern {
    char *main;        /* main pattern incl. '|', NULL when absent (Python None) */
    char *mtp;         /* one MTP copy, NULL when none */
    int mtp_depths;
    int num_layers;    /* main layers, pipes excluded (get_hybrid_total_layer_count) */
    int num_segments;  /* '|' count + 1 (get_hybrid_total_pipeline_segment_count) */
    int counts[NAM_MSYM_COUNT]; /* get_hybrid_layer_counts: main + mtp * depths */
} nam_mpattern;

/* nam_megatron_parse: Megatron-LM parse_hybrid_pattern. `pattern` NULL means None.
   len 0 -> strlen. Errors name the symbol and its 1-based column: NAM_ERR_SYMBOL,
   NAM_ERR_MTP ("All MTP patterns must be identical ..."), NAM_ERR_CONFLICT ('*' with
   '+'/'D', anywhere), NAM_ERR_LIMIT. */
NAM_API nam_status nam_megatron_parse(const char *pattern, size_t len, nam_mpattern *out, nam_error *err);
NAM_API void nam_megatron_free(nam_mpattern *p);
/* nam_megatron_symbol_index: index into counts for a symbol char, -1 if not a layer symbol. */
NAM_API int nam_megatron_symbol_index(char c);

/* nam_megatron_layer_maps: Megatron's get_layer_maps_from_layer_type_list in array form:
   local[i] = how many layers before i carry the same symbol as layer i (its index within
   its layer type). `layers` holds n symbols without '|' or '/'. */
NAM_API nam_status nam_megatron_layer_maps(const char *layers, int n, int *local, nam_error *err);
/* nam_megatron_pattern_from_ratios: Megatron's deprecated pattern_from_ratios(num_layers,
   attention_ratio, mlp_ratio): evenly spaced '*' then '-' among 'M' (Python's round-half-
   to-even). Writes num_layers symbols and a NUL into out (cap >= num_layers + 1). */
NAM_API nam_status nam_megatron_pattern_from_ratios(int num_layers, double attention_ratio, double mlp_ratio,
                                                    char *out, size_t cap, nam_error *err);

/* nam_segment_desc defaults (zero-init): pp_size 0 -> 1; pp_rank 0; vp_stage used only
   when has_vp_stage != 0 (Python None otherwise); first_stage_layers / last_stage_layers
   0 -> None. */
typedef struct nam_segment_desc {
    int pp_size, pp_rank;
    int has_vp_stage, vp_stage;
    int first_stage_layers, last_stage_layers;
} nam_segment_desc;

typedef struct nam_segment {
    const char *layers;  /* points into the pattern's main string (not NUL-terminated) */
    int num_layers;
    int offset;          /* global index of layers[0] */
} nam_segment;

/* nam_megatron_select_segment: Megatron-LM select_pipeline_segment, every error of it:
   pipes with first/last, vp_stage without pipes, uneven middle/legacy splits, segment
   count not divisible by PP, segment index out of range, invalid symbols. */
NAM_API nam_status nam_megatron_select_segment(const nam_mpattern *p, const nam_segment_desc *d,
                                               nam_segment *out, nam_error *err);

/* nam_layout_desc defaults (zero-init): pp 0 -> 1; first/last_stage_layers 0 -> none;
   no_overlap_p2p 0 -> overlap on (Megatron's default). */
typedef struct nam_layout_desc {
    int pp;
    int first_stage_layers, last_stage_layers;
    int no_overlap_p2p;
} nam_layout_desc;

typedef struct nam_stage {
    int vp_stage, pp_rank;   /* segment_index = vp_stage * pp + pp_rank */
    nam_segment seg;
} nam_stage;

typedef struct nam_layout {
    int pp;
    int vpp;            /* 0 = None (no virtual pipeline) */
    int num_stages;     /* pp * max(vpp, 1) */
    nam_stage *stages;  /* ordered by (vp_stage, pp_rank) */
} nam_layout;

/* nam_megatron_layout: the pattern rules of Megatron's validate_args plus every
   (vp_stage, pp_rank) segment selection: pipes vs first/last, VPP = segments / PP when
   segments > PP, segments % PP, VPP needs PP > 1 (> 2 without p2p overlap), so a piped
   pattern with PP = 1 is refused; first/last layers with no middle stages are refused
   (TransformerConfig). An empty main pattern is refused (Megatron treats it as absent). */
NAM_API nam_status nam_megatron_layout(const nam_mpattern *p, const nam_layout_desc *d,
                                       nam_layout *out, nam_error *err);
NAM_API void nam_layout_free(nam_layout *l);

/* ------------------------------------------------------------------------------------ */
/* >>recipe  Recipes: every setting of a plan, with the built-in NAM56R defaults.        */

#define NAM_NAME_MAX 64
#define NAM_STR_MAX  256

typedef struct nam_recipe {
    /* [recipe] */
    char name[NAM_NAME_MAX];
    char mode[16];                  /* plan | strict */
    /* [pattern] */
    char *pattern;                  /* heap, authored text */
    char pattern_source[128];       /* where the pattern was set, for error records */
    int pattern_line, pattern_column;
    int tile, depth, stages;
    char families[27];
    char map[NAM_STR_MAX];          /* bindings "R=G,X=M" */
    int dsa_layers[NAM_MAX_LIST]; int num_dsa_layers;
    char mamba_impl[16];            /* mamba2 | mamba3 | custom */
    /* [model] */
    int hidden_size, ffn_hidden_size, num_attention_heads, num_query_groups, kv_channels;
    int seq_length, max_position_embeddings;
    char position_embedding_type[24]; /* rope | none | learned_absolute */
    char normalization[16];           /* RMSNorm | LayerNorm */
    char activation[16];              /* swiglu | squared_relu | gelu */
    int untie_embeddings, disable_bias_linear, mla;
    char spec[NAM_STR_MAX];           /* --spec: "module.path builder_name" of the hybrid layer spec */
    int vocab_size;                   /* padded vocabulary (pre-flight only; the tokenizer sets Megatron's) */
    /* [mla] */
    int q_lora_rank, kv_lora_rank, qk_head_dim, qk_pos_emb_head_dim, v_head_dim;
    /* [moe] */
    int num_experts, router_topk, moe_ffn_hidden_size, shared_expert_size;
    char score_function[16];          /* softmax | sigmoid | sqrtsoftplus */
    int pre_softmax, expert_bias, grouped_gemm;
    char load_balancing[24];
    double aux_loss_coeff;
    char dispatcher[16];              /* allgather | alltoall | flex */
    double capacity_factor;           /* --moe-expert-capacity-factor; 0 = none (dropless) */
    int pad_to_capacity;              /* --moe-pad-expert-input-to-capacity */
    /* [mamba] */
    int mamba_state_dim, mamba_head_dim, mamba_num_groups, mamba_num_heads;
    /* [gdn] */
    int gdn_num_key_heads, gdn_num_value_heads, gdn_key_head_dim, gdn_value_head_dim, gdn_conv_kernel_dim;
    /* [dsa]  indexer of the DeepSeek sparse attention layers ('D') */
    int dsa_indexer_n_heads, dsa_indexer_head_dim, dsa_indexer_topk;
    double dsa_indexer_loss_coeff;
    /* [m2rnn]  the R mixer: M2RNN, a non-linear matrix-state RNN (nam56r-blocks.md) */
    int m2rnn_k_head_dim, m2rnn_v_head_dim, m2rnn_conv_kernel, m2rnn_num_heads, m2rnn_residual;
    /* [mamba3]  the M mixer when pattern.mamba_impl = mamba3 */
    double mamba3_rope_fraction, mamba3_a_floor, mamba3_dt_min, mamba3_dt_max;
    int mamba3_mimo, mamba3_mimo_rank, mamba3_chunk_size, mamba3_expand;
    /* [mtp] */
    double mtp_loss_scaling_factor;
    int mtp_depths;                   /* 0 = as written; N = the written MTP block repeated N times */
    /* [parallel] */
    int world_size, tp, pp, cp, ep, etp, sequence_parallel, overlap_p2p;
    int first_stage_layers, last_stage_layers;
    char order[24];                   /* tp-cp-ep-dp-pp | tp-cp-ep-pp-dp */
    char cp_comm_type[16];            /* p2p | a2a | allgather | a2a+p2p */
    int hierarchical_cp_sizes[NAM_MAX_LIST]; int num_hierarchical_cp_sizes; /* for a2a+p2p */
    int distributed_optimizer;        /* --use-distributed-optimizer */
    /* [memory] */
    char recompute_granularity[16];   /* none | selective | full */
    char recompute_method[16];        /* uniform | block (full only) */
    int recompute_num_layers;         /* full only */
    char recompute_modules[NAM_STR_MAX]; /* selective only: comma list */
    /* [preflight] */
    double device_memory_gib, peak_tflops, step_time_s;
    /* [precision] beyond dtype/fp8 (generated: numerics of the model) */
    char fp8_recipe[16];              /* delayed | tensorwise | mxfp8 | blockwise */
    int fp8_amax_history_len;
    char fp8_amax_compute_algo[16];   /* most_recent | max */
    char moe_router_dtype[8];         /* none | fp32 | fp64 */
    /* [implementation]  fixed policy: kernels and fusions the operator picks */
    char transformer_impl[24];        /* transformer_engine | local */
    char attention_backend[16];       /* auto | flash | fused | unfused */
    int use_flash_attn, gradient_accumulation_fusion, persist_layer_norm, masked_softmax_fusion, rope_fusion;
    int mla_down_proj_fusion, moe_permute_fusion, moe_router_fusion, moe_shared_expert_overlap;
    char moe_flex_backend[16];        /* deepep | hybridep (flex dispatcher) */
    /* [train]  fixed policy: the schedule */
    int train_iters, lr_warmup_iters, eval_interval, eval_iters, log_interval, save_interval, log_throughput;
    double lr, min_lr, clip_grad;
    char lr_decay_style[24];          /* constant | linear | cosine | inverse-square-root | WSD */
    /* [data]  fixed policy: run inputs (syntax only, never opened) */
    char data_path[1024], tokenizer_type[32], tokenizer_model[NAM_STR_MAX], save_dir[NAM_STR_MAX], load_dir[NAM_STR_MAX];
    char split[32];
    int mock_data;
    int cuda_graph_warmup_steps;
    /* [batch] */
    int micro_batch_size, global_batch_size;
    /* [precision] */
    char dtype[8];                    /* bf16 | fp16 | fp32 */
    char fp8[8];                      /* none | e4m3 | hybrid */
    /* [cuda_graph] */
    char cuda_graph_impl[24];         /* none | local | transformer_engine | full_iteration */
    char cuda_graph_modules[NAM_STR_MAX]; /* comma list: attn mamba mlp moe moe_router moe_preprocess */
    /* Feature placements (cppmega's NAM56R feature surfaces). Each enabled feature is a named
       seam of kind NAM_SEAM_FEATURE, never a Megatron flag. Layer lists are 0-based. */
    /* [engram]  on A layers */
    int engram_enabled, engram_layers[NAM_MAX_LIST], num_engram_layers;
    int engram_ngram_orders[NAM_MAX_LIST], num_engram_ngram_orders;
    int engram_bottleneck_dim, engram_gated, engram_gate_sqrt_compress, engram_conv_kernel;
    double engram_dropout;
    char engram_conv_impl[24];        /* xla_safe | maxtext_depthwise */
    /* [mhc]  manifold hyper-connections, on A layers */
    int mhc_enabled, mhc_layers[NAM_MAX_LIST], num_mhc_layers;
    int mhc_n_streams, mhc_sinkhorn_iters, mhc_dynamic, mhc_fused_ops, mhc_recompute_group_size;
    double mhc_temperature, mhc_epsilon, mhc_blend_alpha;
    char mhc_dynamic_mode[16];        /* maxtext | pooled */
    /* [mod]  mixture of depths, on E layers */
    int mod_enabled, mod_layers[NAM_MAX_LIST], num_mod_layers;
    double mod_capacity, mod_aux_loss_weight;
    char mod_routing[16];             /* topk | threshold | progressive | gateskip */
    char mod_target[NAM_NAME_MAX], mod_scorer[NAM_NAME_MAX], mod_selector[NAM_NAME_MAX], mod_schedule[NAM_NAME_MAX];
    char mod_executor[16];            /* auto | gather | mask */
    int mod_ffn_only, mod_skip_first_n, mod_skip_mamba;
    /* [moda]  model-wide */
    int moda_enabled;
    /* [ngram_hash]  n-gram hash embedding, on the input embedding */
    int ngram_hash_enabled, ngram_hash_orders[NAM_MAX_LIST], num_ngram_hash_orders;
    int ngram_hash_heads, ngram_hash_table_size, ngram_hash_embed_dim, ngram_hash_offload;
    /* [structure]  structure embedding, on the input embedding */
    int structure_enabled, structure_max_ast_depth, structure_max_sibling_index, structure_num_node_types;
    int structure_bottleneck_dim, structure_relation_bias, structure_tree_ffn, structure_tree_ffn_steps, structure_platform_embed;
    double structure_tree_ffn_dropout;
    char structure_components[16];    /* core | all */
    /* Where the layer-list keys were set (file:line:column for plan-time errors). */
    struct { char source[64]; int line, column; } key_pos[4]; /* dsa_layers, engram, mhc, mod */
    /* [runtime]  fixed policy, never turned into Megatron args */
    char recipe_mode[24];             /* pretrain | sft | ... (launcher selection) */
    char cache_dir[NAM_STR_MAX];      /* pre-import cache root (TRITON/INDUCTOR caches) */
    char env[1024];                   /* comma list KEY=VALUE of CUDA/NCCL environment */
} nam_recipe;

/* nam_recipe_init: fill `r` with the built-in NAM56R defaults (see section 7).
   Allocates the pattern text; free with nam_recipe_free. */
NAM_API nam_status nam_recipe_init(nam_recipe *r, nam_error *err);
NAM_API void nam_recipe_free(nam_recipe *r);
/* nam_recipe_set: set one field by key ("section.key", or a bare key when unique) from
   its text value. Errors name the key and the value: NAM_ERR_UNKNOWN_KEY, NAM_ERR_RANGE,
   NAM_ERR_SYNTAX. */
NAM_API nam_status nam_recipe_set(nam_recipe *r, const char *key, const char *value, nam_error *err);
/* nam_recipe_parse: apply a recipe text (see section 7; len 0 -> strlen) on top of `r`. `source` names the
   file in error records (file:line:column). The recipe is unchanged on error. */
NAM_API nam_status nam_recipe_parse(nam_recipe *r, const char *text, size_t len,
                                    const char *source, nam_error *err);
/* nam_recipe_key: the i-th recipe key as "section.key" (i from 0), NULL past the end. */
NAM_API const char *nam_recipe_key(int i);
/* nam_recipe_write: render `r` as recipe text (every key), heap string for nam_free. */
NAM_API nam_status nam_recipe_write(const nam_recipe *r, char **out, nam_error *err);

/* ------------------------------------------------------------------------------------ */
/* >>plan  Translation plan, args bundle and launch contract.                            */

typedef enum nam_seam_kind {
    NAM_SEAM_UNMAPPED = 1,     /* no Megatron symbol: blocks the native pattern */
    NAM_SEAM_CUSTOM_IMPL = 2,  /* native symbol kept, runtime must supply the implementation */
    NAM_SEAM_FEATURE = 3       /* a feature the runtime adds to native layers, the input embedding
                                  or the whole model; never a Megatron flag */
} nam_seam_kind;

typedef struct nam_seam {
    char name[48];          /* e.g. "recurrent-tail", "m2rnn-mixer", "mamba3-mixer", "engram" */
    char family;            /* family the seam sits on; 0 for embedding and model-wide features */
    nam_seam_kind kind;
    int *layers;            /* main-pattern layer indices, 0-based (heap) */
    int num_layers;
    int mtp_positions;      /* how many MTP-copy positions carry it */
    char mixer[24];         /* what the runtime must build: "m2rnn", "mamba3", "engram", ... */
    char placement[24];     /* "layers", "input embedding" or "model" */
    char detail[512];       /* its dimensions and settings, "key=value ..." */
    char reason[256];
    char runtime_supplies[256];
} nam_seam;

/* Feature bits of nam_plan_layer.features (one per layer-placed feature seam). */
enum { NAM_FEATURE_ENGRAM = 1, NAM_FEATURE_MHC = 2, NAM_FEATURE_MOD = 4 };

typedef struct nam_decision {
    char family;    /* 0 for a decision about a flag nam adds */
    char symbol;    /* Megatron symbol of a binding; 0 for a flag */
    char what[320];
} nam_decision;

typedef struct nam_plan_layer {
    int index, stage;
    char family;
    char native;    /* Megatron symbol, 0 when none */
    int seam;       /* index into seams of the mixer seam, -1 when none */
    int column;
    int features;   /* NAM_FEATURE_* bits */
} nam_plan_layer;

typedef struct nam_arg {
    char flag[64];
    char *value;    /* points into nam_plan.arg_values; NULL for a bare switch; several argv words are separated by
                       single spaces (only --spec and list flags; patterns have no spaces) */
} nam_arg;

/* Pre-flight: parameters, static memory and FLOPs (computed by nam_plan_make).
   Families count parameters by the mixer a layer really runs (an R layer in an 'M' slot is
   M2RNN, not Mamba-2). */
enum { NAM_FAM_ATTENTION, NAM_FAM_MLA, NAM_FAM_DSA, NAM_FAM_MAMBA2, NAM_FAM_MAMBA3, NAM_FAM_GDN,
       NAM_FAM_M2RNN, NAM_FAM_MLP, NAM_FAM_MOE, NAM_FAM_EMBEDDING, NAM_FAM_OUTPUT, NAM_FAM_MTP, NAM_FAM_COUNT };

typedef struct nam_rank_memory {
    int pp_rank;
    int num_layers;                  /* main layers on this rank, every virtual stage */
    double params[NAM_FAM_COUNT];    /* parameters held by one GPU of this pipeline rank (after TP / EP) */
    double params_total;
    double params_dense, params_expert;  /* of params_total: data-parallel over dp / expert dp */
    double weight_bytes, grad_bytes, optimizer_bytes;
    double static_bytes;             /* weights + grads + optimizer state */
    double activation_bytes;         /* saved activations of the in-flight microbatches (see nam.h >>preflight) */
    double in_flight;                /* microbatches (model chunks / vpp with the interleaved schedule) held at once */
    double total_bytes;              /* static + activations */
} nam_rank_memory;

typedef struct nam_chunk_memory {
    int vp_stage, pp_rank, num_layers;
    double params;                   /* held by one GPU of the rank for this model chunk */
    double activation_bytes;         /* one microbatch through this chunk, before the TP/SP split */
} nam_chunk_memory;

typedef struct nam_preflight {
    double params[NAM_FAM_COUNT];    /* whole model, unsharded */
    double params_total, params_active;   /* active: routed experts counted top-k of E */
    double flops[NAM_FAM_COUNT];     /* one global batch, forward + backward (3x forward), nam's accounting */
    double flops_total;
    double flops_megatron;           /* Megatron's num_floating_point_operations (hybrid formula) for the
                                        native pattern; 0 while the native pattern is withheld */
    nam_rank_memory *ranks;          /* pp entries (heap) */
    int num_ranks;
    nam_chunk_memory *chunks;        /* one per (vp_stage, pp_rank) stage, layout order (heap) */
    int num_chunks;
    int peak_rank;                   /* the pp rank with the most memory (static + activations) */
    int fits;                        /* 1 / 0 against preflight.device_memory_gib, -1 when not given */
    double tflops_per_gpu, mfu, mfu_megatron;  /* for preflight.step_time_s > 0, else 0 */
} nam_preflight;

/* nam_family_name: "attention", "mla", ... for a NAM_FAM_* index, NULL out of range. */
NAM_API const char *nam_family_name(int f);

typedef struct nam_plan {
    nam_recipe recipe;          /* resolved copy (pattern text owned by the plan) */
    nam_pattern pattern;        /* authored, parsed */
    nam_plan_layer *layers;     /* depth entries */
    char *mtp_native;           /* one MTP copy in Megatron symbols, NULL if none or unmapped */
    int strict;
    nam_seam *seams;            /* stb_ds array, num_seams entries */
    int num_seams;
    nam_decision *decisions;    /* stb_ds array, num_decisions entries */
    int num_decisions;
    int unresolved;             /* number of layers (main + MTP) without a native symbol */
    char *native_pattern;       /* full Megatron pattern (main with '|' + '/mtp' copies);
                                   NULL while unmapped seams remain */
    nam_mpattern mpattern;      /* parsed native pattern (empty while native_pattern is NULL) */
    nam_layout layout;          /* stages per (vp_stage, pp_rank); while seams are unresolved
                                   only offsets and layer counts are set (seg.layers NULL) */
    int dp, edp, etp, vpp, num_microbatches, mamba_num_heads, kv_channels, ffn_hidden_size;
    int m2rnn_num_heads;        /* resolved R-mixer value heads */
    int global_batch_size;      /* resolved: batch.global_batch_size, or micro_batch_size * dp */
    int stock_spec;             /* model.spec is Megatron's stock hybrid_stack_spec */
    int dsa_capable[NAM_MAX_LIST]; int num_dsa_capable; /* A-layer indices marked DSA */
    nam_preflight preflight;    /* parameters, static memory per pp rank, FLOPs */
    nam_arg *args;              /* stb_ds array, num_args entries: generated native args */
    int num_args;
    char *arg_values;           /* one buffer holding every args[i].value */
    nam_arg *policy_args;       /* stb_ds array: fixed-policy Megatron args (implementation, fusions,
                                   schedule, run inputs): operator choices, not plan facts */
    int num_policy_args;
    char *policy_values;
} nam_plan;

/* nam_plan_make: parse the recipe's pattern, translate it fail-closed, validate the native
   pattern with nam_megatron_parse / nam_megatron_layout, check the launch policy against
   Megatron's constraints (world size and DP, expert grid, heads / query groups / Mamba heads
   vs TP and CP, experts % EP, GBS % (MBS*DP), microbatches vs PP with VPP, seq % 2*CP, MTP
   needs rope/none, MLA excludes GQA, DSA needs disable_bias_linear, CUDA-graph rules), and
   build the args bundle. Every failure names the values involved. */
NAM_API nam_status nam_plan_make(const nam_recipe *r, nam_plan *out, nam_error *err);
NAM_API void nam_plan_free(nam_plan *p);

enum { NAM_JSON_PLAN = 1, NAM_JSON_ARGS = 2, NAM_JSON_LAUNCH = 3 };
/* nam_plan_json: render the plan (NAM_JSON_PLAN), the args bundle with custom_notes
   (NAM_JSON_ARGS) or the launch contract (NAM_JSON_LAUNCH) as JSON; heap string. */
NAM_API nam_status nam_plan_json(const nam_plan *p, int what, char **out, nam_error *err);
/* nam_plan_args_text: the args one per line, shell-quoted, custom notes as '#' lines. */
NAM_API nam_status nam_plan_args_text(const nam_plan *p, char **out, nam_error *err);

/* Comparing the plan's args with an existing Megatron argv (nam_args_compare). */
typedef enum nam_cmp_verdict {
    NAM_CMP_MATCH = 0,        /* equal, or one side leaves Megatron's default and the other sets it */
    NAM_CMP_MISSING_IN_NAM,   /* only in the other argv, not at Megatron's default */
    NAM_CMP_ONLY_IN_NAM,      /* only in nam's args, not at Megatron's default */
    NAM_CMP_DIFFERS           /* both give it, with different values */
} nam_cmp_verdict;

typedef struct nam_cmp_row {
    char flag[64];            /* canonical flag (renamed flags resolved) */
    nam_cmp_verdict verdict;
    char *nam_value;          /* argv words joined by single spaces; "" for a switch; NULL when absent */
    char *other_value;
    const char *note;         /* why a one-sided flag matches, or a rename; NULL when none */
} nam_cmp_row;

typedef struct nam_args_cmp {
    nam_cmp_row *rows;        /* heap, num_rows entries: nam's flags in order, then the other's */
    int num_rows;
    int count[4];             /* rows per verdict */
    int ignored_words;        /* words before the first flag (launcher, script name) */
} nam_args_cmp;

/* nam_args_compare: read an argv (one flag per line, or a shell command line: single and
   double quotes, backslash escapes and line continuations honoured, '#' comments; shell
   variables are an error) and compare it flag by flag with the plan's generated args.
   Renamed flags (--hybrid-override-pattern, --use-rotary-position-embeddings) and Megatron's
   defaults (including derived ones: etp = tp, kv-channels = hidden / heads, the ffn default,
   experimental-attention-variant and mtp-num-layers inferred from the pattern) are resolved.
   Numbers compare by value. Errors name the line and column. Free with nam_args_cmp_free. */
NAM_API nam_status nam_args_compare(const nam_plan *p, const char *text, size_t len, const char *source,
                                    nam_args_cmp *out, nam_error *err);
NAM_API void nam_args_cmp_free(nam_args_cmp *c);
NAM_API const char *nam_cmp_verdict_str(nam_cmp_verdict v);
/* nam_shell_quote: POSIX single-quote `s` when needed; heap string. */
NAM_API char *nam_shell_quote(const char *s);

/* ------------------------------------------------------------------------------------ */
/* >>ranks  Megatron RankGenerator.                                                      */

typedef struct nam_rank_groups {
    char name[24];
    int num_groups, group_size;
    int *ranks;          /* num_groups * group_size, heap */
} nam_rank_groups;

/* nam_rank_groups_masked: generate_masked_orthogonal_rank_groups(world, sizes, mask).
   sizes[0] is the fastest-varying axis. */
NAM_API nam_status nam_rank_groups_masked(int world_size, int n, const int *sizes, const int *mask,
                                          nam_rank_groups *out, nam_error *err);

/* nam_rankgen_desc: RankGenerator(tp, ep, dp, pp, cp, order). Zero sizes mean 1; order
   NULL -> "tp-cp-ep-dp-pp". */
typedef struct nam_rankgen_desc {
    int tp, ep, dp, pp, cp;
    const char *order;
    int rank_offset;
} nam_rankgen_desc;
/* nam_rankgen_ranks: RankGenerator.get_ranks(token), e.g. token "tp-dp". Errors: an axis of
   size != 1 missing from the order, ep > 1 with cp > 1, unknown tokens. */
NAM_API nam_status nam_rankgen_ranks(const nam_rankgen_desc *d, const char *token,
                                     nam_rank_groups *out, nam_error *err);
NAM_API void nam_rank_groups_free(nam_rank_groups *g);

#define NAM_DECODER_GROUPS 9   /* tp cp dp pp dp-cp tp-pp tp-cp tp-dp tp-dp-cp */
#define NAM_EXPERT_GROUPS  6   /* tp ep tp-ep dp tp-ep-pp pp */

/* nam_rankmap_desc defaults (zero-init): sizes 0 -> 1 (world_size required), etp 0 -> tp,
   order NULL -> "tp-cp-ep-dp-pp" (the alternative is "tp-cp-ep-pp-dp"). */
typedef struct nam_rankmap_desc {
    int world_size, tp, pp, cp, ep, etp;
    const char *order;
} nam_rankmap_desc;

typedef struct nam_rankmap {
    int world_size, tp, pp, cp, ep, etp, dp, edp;
    char order[24];
    nam_rank_groups decoder[NAM_DECODER_GROUPS];
    nam_rank_groups expert[NAM_EXPERT_GROUPS];
} nam_rankmap;

typedef struct nam_rank_coords {
    int tp, cp, dp, pp;         /* decoder coordinates */
    int etp, ep, edp;           /* expert coordinates */
} nam_rank_coords;

/* nam_rankmap_build: Megatron initialize_model_parallel's groups. Errors: world not
   divisible by TP*PP*CP or by ETP*EP*PP, the expert/decoder DP rule for orders not ending
   in pp, sizes out of range (the same derivation as the plan's; *out is all zero then). */
NAM_API nam_status nam_rankmap_build(const nam_rankmap_desc *d, nam_rankmap *out, nam_error *err);
NAM_API void nam_rankmap_free(nam_rankmap *m);
/* nam_rankmap_find: the group of `name` ("tp", "dp-cp", ...) among decoder (expert = 0) or
   expert (expert = 1) groups; NULL if there is none. */
NAM_API const nam_rank_groups *nam_rankmap_find(const nam_rankmap *m, int expert, const char *name);
/* nam_rankmap_query_rank: coordinates of `rank` (its index within its tp, cp, dp, pp, ...
   groups). */
NAM_API nam_status nam_rankmap_query_rank(const nam_rankmap *m, int rank, nam_rank_coords *out, nam_error *err);
/* nam_rankmap_json: {"world_size",..,"dp","expert_dp","decoder":{..},"expert":{..}}. */
NAM_API nam_status nam_rankmap_json(const nam_rankmap *m, char **out, nam_error *err);

#ifdef __cplusplus
}
#endif
#endif /* NAM_H_PLANNER_INCLUDED */

#if defined(NAM_IMPLEMENTATION) && !defined(NAM__PLANNER_IMPLEMENTATION_DONE)
#define NAM__PLANNER_IMPLEMENTATION_DONE
#include <stb_ds.h>      /* the planner's dynamic arrays and hash maps (the kernels never use it) */
#ifdef __cplusplus
extern "C" {
#endif

/* >>errors (planner): where in the text being read an error is */
static void nam__err_pos(nam_error *e, const char *source, long offset, int line, int column) {
    if (!e) return;
    if (source) snprintf(e->source, sizeof e->source, "%s", source);
    e->offset = offset;
    e->line = line;
    e->column = column;
}

/* A byte as it should appear in a message: 'X', or \xNN for non-printable bytes. */
static const char *nam__byte_name(unsigned char c, char buf[16]) {
    if (c >= 0x21 && c < 0x7f) snprintf(buf, 16, "'%c'", c);
    else if (c == ' ') snprintf(buf, 16, "' ' (space)");
    else if (c == 0) snprintf(buf, 16, "NUL (\\x00)");
    else if (c >= 0x80) snprintf(buf, 16, "non-ASCII \\x%02X", c);
    else snprintf(buf, 16, "control \\x%02X", c);
    return buf;
}

/* >>memory ---------------------------------------------------------------------------- */
static void *nam__alloc(size_t n) { return NAM_MALLOC(n ? n : 1); }

static char *nam__strndup(const char *s, size_t n) {
    char *d = NAM__CAST(char *, nam__alloc(n + 1));
    if (!d) return NULL;
    if (n) memcpy(d, s, n);
    d[n] = 0;
    return d;
}
static char *nam__strdup(const char *s) { return s ? nam__strndup(s, strlen(s)) : NULL; }

/* Copy a string into a fixed buffer, truncating (snprintf "%s" without the printf cost). */
static void nam__copy(char *dst, size_t cap, const char *src) {
    size_t n = strlen(src);
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

/* Growable string with a sticky out-of-memory flag. */
typedef struct nam__sb { char *buf; size_t len, cap; int oom; } nam__sb;

static int nam__sb_reserve(nam__sb *b, size_t extra) {
    size_t need, cap;
    char *nb;
    if (b->oom) return 0;
    need = b->len + extra + 1;
    if (need <= b->cap) return 1;
    cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    nb = NAM__CAST(char *, nam__alloc(cap));
    if (!nb) { b->oom = 1; return 0; }
    if (b->buf) { memcpy(nb, b->buf, b->len + 1); NAM_FREE(b->buf); } else nb[0] = 0;
    b->buf = nb;
    b->cap = cap;
    return 1;
}
static void nam__sb_putn(nam__sb *b, const char *s, size_t n) {
    if (!nam__sb_reserve(b, n)) return;
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = 0;
}
static void nam__sb_puts(nam__sb *b, const char *s) { nam__sb_putn(b, s, strlen(s)); }
static void nam__sb_putc(nam__sb *b, char c) { nam__sb_putn(b, &c, 1); }
static void nam__sb_printf(nam__sb *b, const char *fmt, ...) NAM__PRINTF(2, 3);
static void nam__sb_printf(nam__sb *b, const char *fmt, ...) {
    char tmp[512];
    int n;
    va_list ap;
    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) { b->oom = 1; return; }
    if (NAM__CAST(size_t, n) < sizeof tmp) { nam__sb_putn(b, tmp, NAM__CAST(size_t, n)); return; }
    if (!nam__sb_reserve(b, NAM__CAST(size_t, n))) return;
    va_start(ap, fmt);
    vsnprintf(b->buf + b->len, NAM__CAST(size_t, n) + 1, fmt, ap);
    va_end(ap);
    b->len += NAM__CAST(size_t, n);
}
static void nam__sb_json_strn(nam__sb *b, const char *s, size_t n) {
    size_t i;
    nam__sb_putc(b, '"');
    for (i = 0; i < n; i++) {
        unsigned char c = NAM__CAST(unsigned char, s[i]);
        if (c == '"') nam__sb_puts(b, "\\\"");
        else if (c == '\\') nam__sb_puts(b, "\\\\");
        else if (c == '\n') nam__sb_puts(b, "\\n");
        else if (c == '\t') nam__sb_puts(b, "\\t");
        else if (c < 0x20 || c >= 0x7f) nam__sb_printf(b, "\\u%04x", c);
        else nam__sb_putc(b, NAM__CAST(char, c));
    }
    nam__sb_putc(b, '"');
}
static void nam__sb_json_str(nam__sb *b, const char *s) {
    if (!s) nam__sb_puts(b, "null");
    else nam__sb_json_strn(b, s, strlen(s));
}
static void nam__sb_json_char(nam__sb *b, char c) {
    if (!c) nam__sb_puts(b, "null");
    else nam__sb_json_strn(b, &c, 1);
}
static void nam__sb_json_ints(nam__sb *b, const int *v, int n) {
    int i;
    nam__sb_putc(b, '[');
    for (i = 0; i < n; i++) nam__sb_printf(b, i ? ",%d" : "%d", v[i]);
    nam__sb_putc(b, ']');
}
/* Hand the buffer to the caller, or report out-of-memory. */
static nam_status nam__sb_finish(nam__sb *b, char **out, nam_error *err) {
    if (!nam__sb_reserve(b, 0) || b->oom) {
        if (b->buf) NAM_FREE(b->buf);
        *out = NULL;
        return nam__err(err, NAM_ERR_NOMEM, "out of memory while rendering output");
    }
    *out = b->buf;
    return NAM_OK;
}

/* >>pattern ---------------------------------------------------------------------------- */
static int nam__is_family(char c, const char *families) {
    if (c == 'A' || c == 'M' || c == 'E' || c == 'R' || c == 'F') return 1;
    return families && c >= 'A' && c <= 'Z' && strchr(families, c) != NULL;
}

static nam_status nam__pattern_symbol_err(nam_error *err, const nam_pattern_desc *d, const char *src,
                                          size_t i, const char *where) {
    char bn[16];
    unsigned char c = NAM__CAST(unsigned char, d->text[i]);
    const char *hint = "";
    if (c >= 'a' && c <= 'z') hint = " (family letters are upper-case)";
    else if (c >= 'A' && c <= 'Z') hint = " (declare further families in the recipe's pattern.families)";
    else if (c == ' ' || c == '\t') hint = " (whitespace is not allowed in a pattern)";
    nam__err(err, NAM_ERR_SYMBOL, "unknown family %s at column %d of the %s%s; known families: AMER%s",
             nam__byte_name(c, bn), d->column + NAM__CAST(int, i), where, hint, d->families ? d->families : "");
    nam__err_pos(err, src, NAM__CAST(long, i), d->line, d->column + NAM__CAST(int, i));
    return NAM_ERR_SYMBOL;
}

NAM__DEF void nam_pattern_free(nam_pattern *p) {
    if (!p) return;
    nam_free(p->layers);
    nam_free(p->stage_begin);
    nam_free(p->mtp);
    nam_free(p->mtp_columns);
    memset(p, 0, sizeof *p);
}

NAM__DEF nam_status nam_pattern_parse(const nam_pattern_desc *desc, nam_pattern *out, nam_error *err) {
    nam_pattern_desc d;
    const char *src;
    size_t len, i, main_len, mtp_start, copy_len = 0;
    int written = 0, pipes = 0, depth, stages, mtp_copies = 0, s, per = 0;
    int *letter_col = NULL;
    if (!out) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_pattern_parse: out is NULL");
    memset(out, 0, sizeof *out);
    if (!desc || !desc->text) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_pattern_parse: desc or desc->text is NULL");
    d = *desc;
    if (d.line <= 0) d.line = 1;
    if (d.column <= 0) d.column = 1;
    src = d.source ? d.source : "pattern";
    len = d.len ? d.len : strlen(d.text);
    if (d.families) {
        for (i = 0; d.families[i]; i++)
            if (d.families[i] < 'A' || d.families[i] > 'Z')
                return nam__err(err, NAM_ERR_INVALID_ARG, "declared family %d is not an upper-case letter", NAM__CAST(int, i) + 1);
    }
    if (len > NAM_MAX_TEXT) {
        nam__err(err, NAM_ERR_LIMIT, "pattern text is %lu bytes, more than the limit of %d", NAM__CAST(unsigned long, len), NAM_MAX_TEXT);
        nam__err_pos(err, src, NAM__CAST(long, NAM_MAX_TEXT), d.line, 0);
        return NAM_ERR_LIMIT;
    }
    if (len == 0) {
        nam__err(err, NAM_ERR_EMPTY, "empty pattern: write at least one family letter (A, M, E, R)");
        nam__err_pos(err, src, 0, d.line, d.column);
        return NAM_ERR_EMPTY;
    }
    /* main part: letters and stage breaks */
    for (main_len = 0; main_len < len && d.text[main_len] != '/'; main_len++) {}
    if (main_len == 0) {
        nam__err(err, NAM_ERR_EMPTY, "empty main pattern before '/' at column %d", d.column);
        nam__err_pos(err, src, 0, d.line, d.column);
        return NAM_ERR_EMPTY;
    }
    for (i = 0; i < main_len; i++) {
        char c = d.text[i];
        if (c == '|') {
            const char *what = NULL;
            if (i == 0) what = "a pattern may not start with a stage break";
            else if (d.text[i - 1] == '|') what = "doubled stage break (an empty stage)";
            else if (i + 1 == main_len) what = "a pattern may not end with a stage break";
            else if (d.tile) what = "a tiled motif may not contain stage breaks; write the full pattern or ask for equal stages with `stages = N`";
            if (what) {
                nam__err(err, NAM_ERR_STAGE, "stage break '|' at column %d: %s", d.column + NAM__CAST(int, i), what);
                nam__err_pos(err, src, NAM__CAST(long, i), d.line, d.column + NAM__CAST(int, i));
                return NAM_ERR_STAGE;
            }
            pipes++;
        } else if (nam__is_family(c, d.families)) {
            written++;
        } else {
            return nam__pattern_symbol_err(err, &d, src, i, "main pattern");
        }
    }
    /* MTP copies: identical, non-empty, letters only */
    mtp_start = main_len + 1;
    if (main_len < len) {
        size_t p = mtp_start;
        while (1) {
            size_t q = p;
            while (q < len && d.text[q] != '/') q++;
            mtp_copies++;
            if (q == p) {
                nam__err(err, NAM_ERR_MTP, "empty MTP copy %d at column %d: each '/' must be followed by one MTP pattern", mtp_copies, d.column + NAM__CAST(int, p));
                nam__err_pos(err, src, NAM__CAST(long, p), d.line, d.column + NAM__CAST(int, p));
                return NAM_ERR_MTP;
            }
            if (mtp_copies > NAM_MAX_MTP_DEPTHS) {
                nam__err(err, NAM_ERR_LIMIT, "more than %d MTP copies (column %d)", NAM_MAX_MTP_DEPTHS, d.column + NAM__CAST(int, p));
                nam__err_pos(err, src, NAM__CAST(long, p), d.line, d.column + NAM__CAST(int, p));
                return NAM_ERR_LIMIT;
            }
            if (mtp_copies == 1) {
                copy_len = q - p;
            } else if (q - p != copy_len || memcmp(d.text + p, d.text + mtp_start, copy_len) != 0) {
                nam__err(err, NAM_ERR_MTP, "MTP copy %d ('%.*s', column %d) differs from MTP copy 1 ('%.*s'); all MTP copies must be identical",
                         mtp_copies, NAM__CAST(int, q - p > 64 ? 64 : q - p), d.text + p, d.column + NAM__CAST(int, p),
                         NAM__CAST(int, copy_len > 64 ? 64 : copy_len), d.text + mtp_start);
                nam__err_pos(err, src, NAM__CAST(long, p), d.line, d.column + NAM__CAST(int, p));
                return NAM_ERR_MTP;
            }
            for (i = p; i < q; i++) {
                if (d.text[i] == '|') {
                    nam__err(err, NAM_ERR_MTP, "stage break '|' at column %d inside the MTP suffix; MTP layers live on the last stage", d.column + NAM__CAST(int, i));
                    nam__err_pos(err, src, NAM__CAST(long, i), d.line, d.column + NAM__CAST(int, i));
                    return NAM_ERR_MTP;
                }
                if (!nam__is_family(d.text[i], d.families)) return nam__pattern_symbol_err(err, &d, src, i, "MTP suffix");
            }
            if (q >= len) break;
            p = q + 1;
        }
    }
    /* depth contract */
    if (d.tile) {
        if (d.depth <= 0) {
            nam__err(err, d.depth < 0 ? NAM_ERR_RANGE : NAM_ERR_DEPTH, "depth %d: a tiled motif needs a depth of at least 1", d.depth);
            return err ? err->code : NAM_ERR_DEPTH;
        }
        depth = d.depth;
    } else {
        if (d.depth < 0) return nam__err(err, NAM_ERR_RANGE, "depth %d is negative", d.depth);
        if (d.depth > 0 && d.depth != written) {
            nam__err(err, NAM_ERR_DEPTH, "the pattern has %d layers but the declared depth is %d", written, d.depth);
            nam__err_pos(err, src, 0, d.line, d.column);
            return NAM_ERR_DEPTH;
        }
        depth = written;
    }
    if (depth > NAM_MAX_DEPTH) return nam__err(err, NAM_ERR_LIMIT, "depth %d exceeds the limit of %d layers", depth, NAM_MAX_DEPTH);
    stages = pipes + 1;
    if (d.stages < 0 || d.stages > depth)
        return nam__err(err, NAM_ERR_RANGE, "stages = %d is out of range (1..%d for depth %d)", d.stages, depth, depth);
    if (d.stages > 0) {
        if (pipes > 0 && d.stages != pipes + 1) {
            nam__err(err, NAM_ERR_STAGE, "the pattern's %d stage breaks give %d stages, but stages = %d", pipes, pipes + 1, d.stages);
            nam__err_pos(err, src, 0, d.line, d.column);
            return NAM_ERR_STAGE;
        }
        if (pipes == 0) {
            if (depth % d.stages != 0)
                return nam__err(err, NAM_ERR_STAGE, "depth %d cannot be split into %d equal stages (%d %% %d = %d); nam does not split unevenly",
                                depth, d.stages, depth, d.stages, depth % d.stages);
            stages = d.stages;
            per = depth / d.stages;
        }
    }
    /* build layers */
    out->layers = NAM__CAST(nam_layer *, nam__alloc(sizeof(nam_layer) * NAM__CAST(size_t, depth)));
    out->stage_begin = NAM__CAST(int *, nam__alloc(sizeof(int) * NAM__CAST(size_t, stages + 1)));
    letter_col = NAM__CAST(int *, nam__alloc(sizeof(int) * NAM__CAST(size_t, written)));
    if (!out->layers || !out->stage_begin || !letter_col) {
        nam_free(letter_col);
        nam_pattern_free(out);
        return nam__err(err, NAM_ERR_NOMEM, "out of memory for %d layers", depth);
    }
    {
        int li = 0, st = 0;
        char *fam = NAM__CAST(char *, nam__alloc(NAM__CAST(size_t, written)));
        int *fst = NAM__CAST(int *, nam__alloc(sizeof(int) * NAM__CAST(size_t, written)));
        if (!fam || !fst) {
            nam_free(fam); nam_free(fst); nam_free(letter_col);
            nam_pattern_free(out);
            return nam__err(err, NAM_ERR_NOMEM, "out of memory for %d layers", depth);
        }
        for (i = 0; i < main_len; i++) {
            if (d.text[i] == '|') { st++; continue; }
            fam[li] = d.text[i];
            fst[li] = st;
            letter_col[li] = NAM__CAST(int, i) + 1;
            li++;
        }
        for (s = 0; s < depth; s++) {
            int src_i = s % written;
            nam_layer *L = &out->layers[s];
            L->index = s;
            L->family = fam[src_i];
            L->column = letter_col[src_i];
            L->stage = per ? s / per : fst[src_i];
            out->counts[L->family - 'A']++;
        }
        nam_free(fam);
        nam_free(fst);
    }
    nam_free(letter_col);
    out->depth = depth;
    out->num_stages = stages;
    {
        int st = 0;
        out->stage_begin[0] = 0;
        for (s = 0; s < depth; s++)
            while (out->layers[s].stage > st) out->stage_begin[++st] = s;
        while (st < stages) out->stage_begin[++st] = depth;
    }
    if (mtp_copies > 0) {
        out->mtp = nam__strndup(d.text + mtp_start, copy_len);
        out->mtp_columns = NAM__CAST(int *, nam__alloc(sizeof(int) * copy_len));
        if (!out->mtp || !out->mtp_columns) {
            nam_pattern_free(out);
            return nam__err(err, NAM_ERR_NOMEM, "out of memory for the MTP suffix");
        }
        for (i = 0; i < copy_len; i++) out->mtp_columns[i] = NAM__CAST(int, mtp_start + i) + 1;
        out->mtp_len = NAM__CAST(int, copy_len);
        out->mtp_depths = mtp_copies;
    }
    if (err) nam__err_reset(err);
    return NAM_OK;
}

/* >>megatron --------------------------------------------------------------------------- */
NAM__DEF int nam_megatron_symbol_index(char c) {
    switch (c) {   /* position in NAM_MEGATRON_SYMBOLS "*DGM+-E" */
    case '*': return NAM_MSYM_ATTENTION;
    case 'D': return NAM_MSYM_DSA;
    case 'G': return NAM_MSYM_GDN;
    case 'M': return NAM_MSYM_MAMBA;
    case '+': return NAM_MSYM_MLA;
    case '-': return NAM_MSYM_MLP;
    case 'E': return NAM_MSYM_MOE;
    default: return -1;
    }
}

NAM__DEF void nam_megatron_free(nam_mpattern *p) {
    if (!p) return;
    nam_free(p->main);
    nam_free(p->mtp);
    memset(p, 0, sizeof *p);
}

/* _validate_pattern: every byte a layer symbol (or '|' when allowed). */
static nam_status nam__mvalidate(const char *s, size_t n, size_t base, const char *name, int allow_pipe, nam_error *err) {
    size_t i;
    char bn[16];
    for (i = 0; i < n; i++) {
        char c = s[i];
        if ((c == '|' && allow_pipe) || nam_megatron_symbol_index(c) >= 0) continue;
        nam__err(err, NAM_ERR_SYMBOL, "In %s pattern, %s is not a valid layer symbol (column %d). Valid symbols are: M G * D + - E%s",
                 name, nam__byte_name(NAM__CAST(unsigned char, c), bn), NAM__CAST(int, base + i) + 1, allow_pipe ? " and '|'" : "");
        nam__err_pos(err, "pattern", NAM__CAST(long, base + i), 1, NAM__CAST(int, base + i) + 1);
        return NAM_ERR_SYMBOL;
    }
    return NAM_OK;
}

NAM__DEF nam_status nam_megatron_parse(const char *pattern, size_t len, nam_mpattern *out, nam_error *err) {
    size_t i, main_len, first_mtp = 0, mtp_len = 0;
    int nparts = 1, all_empty = 1, k;
    nam_status st;
    long attn_at = -1, mla_at = -1;
    if (!out) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_megatron_parse: out is NULL");
    memset(out, 0, sizeof *out);
    out->num_segments = 1;
    if (!pattern) { if (err) nam__err_reset(err); return NAM_OK; }  /* None -> (None, None, 0) */
    if (!len) len = strlen(pattern);
    if (len > NAM_MAX_TEXT)
        return nam__err(err, NAM_ERR_LIMIT, "pattern is %lu bytes, more than the limit of %d", NAM__CAST(unsigned long, len), NAM_MAX_TEXT);
    for (main_len = 0; main_len < len && pattern[main_len] != '/'; main_len++) {}
    for (i = main_len; i < len; i++) if (pattern[i] == '/') nparts++;
    if (nparts == 1 || main_len > 0) {                       /* main validated if alone or non-empty */
        st = nam__mvalidate(pattern, main_len, 0, "main", 1, err);
        if (st) return st;
    }
    if (nparts > 1) {
        size_t p = main_len + 1;
        int idx;
        if (nparts - 1 > NAM_MAX_MTP_DEPTHS)
            return nam__err(err, NAM_ERR_LIMIT, "%d MTP patterns exceed the limit of %d", nparts - 1, NAM_MAX_MTP_DEPTHS);
        first_mtp = p;
        for (i = p; i < len && pattern[i] != '/'; i++) {}
        mtp_len = i - p;
        /* all MTP parts empty -> no MTP; otherwise all must equal the first */
        for (i = p; i < len; i++) if (pattern[i] != '/') { all_empty = 0; break; }
        if (!all_empty) {
            p = main_len + 1;
            idx = 0;
            while (p <= len) {
                size_t q = p;
                while (q < len && pattern[q] != '/') q++;
                idx++;
                if (idx > 1 && (q - p != mtp_len || memcmp(pattern + p, pattern + first_mtp, mtp_len) != 0)) {
                    nam__err(err, NAM_ERR_MTP, "All MTP patterns must be identical. Pattern 1 is '%.*s', but pattern %d is '%.*s' (column %d). Full pattern: '%.*s'",
                             NAM__CAST(int, mtp_len > 64 ? 64 : mtp_len), pattern + first_mtp, idx,
                             NAM__CAST(int, q - p > 64 ? 64 : q - p), pattern + p, NAM__CAST(int, p) + 1,
                             NAM__CAST(int, len > 128 ? 128 : len), pattern);
                    nam__err_pos(err, "pattern", NAM__CAST(long, p), 1, NAM__CAST(int, p) + 1);
                    return NAM_ERR_MTP;
                }
                p = q + 1;
            }
            st = nam__mvalidate(pattern + first_mtp, mtp_len, first_mtp, "MTP", 0, err);
            if (st) return st;
        }
    }
    /* stricter than Megatron: '*' never together with '+' or 'D', main and MTP alike */
    for (i = 0; i < len; i++) {
        if (pattern[i] == '*' && attn_at < 0) attn_at = NAM__CAST(long, i);
        if ((pattern[i] == '+' || pattern[i] == 'D') && mla_at < 0) mla_at = NAM__CAST(long, i);
    }
    if (attn_at >= 0 && mla_at >= 0) {
        long at = attn_at > mla_at ? attn_at : mla_at;
        nam__err(err, NAM_ERR_CONFLICT, "Not supported to have both Attention and MLA/DSA in one model: '*' at column %ld and '%c' at column %ld (nam checks main and MTP together)",
                 attn_at + 1, pattern[mla_at], mla_at + 1);
        nam__err_pos(err, "pattern", at, 1, NAM__CAST(int, at) + 1);
        return NAM_ERR_CONFLICT;
    }
    if (main_len > 0 || nparts == 1) {
        out->main = nam__strndup(pattern, main_len);
        if (!out->main) return nam__err(err, NAM_ERR_NOMEM, "out of memory");
    }
    if (nparts > 1 && !all_empty) {
        out->mtp = nam__strndup(pattern + first_mtp, mtp_len);
        if (!out->mtp) { nam_megatron_free(out); return nam__err(err, NAM_ERR_NOMEM, "out of memory"); }
        out->mtp_depths = nparts - 1;
    }
    out->num_segments = 1;
    for (i = 0; i < main_len; i++) {
        if (pattern[i] == '|') { out->num_segments++; continue; }
        out->num_layers++;
        out->counts[nam_megatron_symbol_index(pattern[i])]++;
    }
    for (i = 0; i < mtp_len && out->mtp; i++) {
        k = nam_megatron_symbol_index(out->mtp[i]);
        out->counts[k] += out->mtp_depths;
    }
    if (err) nam__err_reset(err);
    return NAM_OK;
}

NAM__DEF nam_status nam_megatron_layer_maps(const char *layers, int n, int *local, nam_error *err) {
    int seen[NAM_MSYM_COUNT] = {0}, i;
    if (!layers || !local || n < 0) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_megatron_layer_maps: NULL argument or negative length");
    for (i = 0; i < n; i++) {
        int k = nam_megatron_symbol_index(layers[i]);
        char bn[16];
        if (k < 0) {
            nam__err(err, NAM_ERR_SYMBOL, "layer %d: %s is not a valid layer symbol (M G * D + - E)", i, nam__byte_name(NAM__CAST(unsigned char, layers[i]), bn));
            if (err) err->layer = i;
            return NAM_ERR_SYMBOL;
        }
        local[i] = seen[k]++;
    }
    if (err) nam__err_reset(err);
    return NAM_OK;
}

/* Python 3 round(): nearest, ties to even. */
static long long nam__round_half_even(double x) {
    double f = (double)(long long)x, d = x - f;
    long long r = (long long)f;
    if (x < 0) return -nam__round_half_even(-x);
    if (d > 0.5 || (d == 0.5 && (r & 1))) r++;
    return r;
}

NAM__DEF nam_status nam_megatron_pattern_from_ratios(int num_layers, double attention_ratio, double mlp_ratio,
                                                     char *out, size_t cap, nam_error *err) {
    long long attn, mamba, mlp;
    double section, x, ratio;
    int i;
    if (!out) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_megatron_pattern_from_ratios: out is NULL");
    if (num_layers <= 0 || num_layers > NAM_MAX_DEPTH) return nam__err(err, NAM_ERR_RANGE, "num_layers %d is out of range (1..%d)", num_layers, NAM_MAX_DEPTH);
    if (!(attention_ratio >= 0.0 && attention_ratio <= 1.0)) return nam__err(err, NAM_ERR_RANGE, "attention_ratio %g is outside 0..1", attention_ratio);
    if (!(mlp_ratio >= 0.0 && mlp_ratio <= 1.0)) return nam__err(err, NAM_ERR_RANGE, "mlp_ratio %g is outside 0..1", mlp_ratio);
    if (attention_ratio + mlp_ratio > 1.0) return nam__err(err, NAM_ERR_RANGE, "attention_ratio + mlp_ratio = %g exceeds 1", attention_ratio + mlp_ratio);
    if (cap < NAM__CAST(size_t, num_layers) + 1) return nam__err(err, NAM_ERR_INVALID_ARG, "output buffer of %lu bytes is too small for %d layers", NAM__CAST(unsigned long, cap), num_layers);
    attn = nam__round_half_even(num_layers * attention_ratio);
    mamba = num_layers - attn;
    section = NAM__CAST(double, mamba) / NAM__CAST(double, attn + 1);
    for (i = 0; i < num_layers; i++) out[i] = 'M';
    out[num_layers] = 0;
    x = section;
    for (i = 0; i < num_layers; i++) {
        if (x < 0.5) { out[i] = '*'; x += section; }
        else x -= 1;
    }
    mlp = nam__round_half_even(num_layers * mlp_ratio);
    if (mlp > 0) {
        mamba -= mlp;
        ratio = NAM__CAST(double, mamba) / NAM__CAST(double, mlp);
        x = ratio;
        for (i = 0; i < num_layers; i++) {
            if (out[i] != 'M') continue;
            if (x < 0.5) { out[i] = '-'; x += ratio; }
            else x -= 1;
        }
    }
    if (err) nam__err_reset(err);
    return NAM_OK;
}

NAM__DEF nam_status nam_megatron_select_segment(const nam_mpattern *p, const nam_segment_desc *desc,
                                                nam_segment *out, nam_error *err) {
    nam_segment_desc d;
    const char *main;
    int nseg = 1, n = 0, i;
    size_t k, mlen;
    if (!p || !desc || !out) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_megatron_select_segment: NULL argument");
    d = *desc;
    if (d.pp_size == 0) d.pp_size = 1;
    memset(out, 0, sizeof *out);
    if (d.pp_size < 0 || d.pp_size > NAM_MAX_PARALLEL)
        return nam__err(err, NAM_ERR_RANGE, "pipeline_model_parallel_size %d is out of range (1..%d)", d.pp_size, NAM_MAX_PARALLEL);
    if (d.pp_rank < 0 || d.pp_rank >= d.pp_size)
        return nam__err(err, NAM_ERR_RANGE, "pp_rank %d is out of range for pipeline_model_parallel_size %d", d.pp_rank, d.pp_size);
    if (d.has_vp_stage && (d.vp_stage < 0 || d.vp_stage > NAM_MAX_DEPTH))
        return nam__err(err, NAM_ERR_RANGE, "vp_stage %d is out of range", d.vp_stage);
    if (d.first_stage_layers < 0 || d.last_stage_layers < 0)
        return nam__err(err, NAM_ERR_RANGE, "first/last stage layers must be positive (got %d, %d)", d.first_stage_layers, d.last_stage_layers);
    main = p->main ? p->main : "";
    mlen = strlen(main);
    for (k = 0; k < mlen; k++) { if (main[k] == '|') nseg++; else n++; }
    if (nseg > 1 && (d.first_stage_layers || d.last_stage_layers))
        return nam__err(err, NAM_ERR_CONFLICT, "Cannot specify num_layers_in_first_pipeline_stage or num_layers_in_last_pipeline_stage when hybrid_layer_pattern contains pipe ('|') separators. Use pipes to define the stages instead.");
    if (nseg == 1 && d.pp_size > 1) {
        /* legacy even / uneven split */
        if (d.has_vp_stage)
            return nam__err(err, NAM_ERR_STAGE, "Virtual pipeline parallelism (vp_stage != None) is not supported when hybrid_layer_pattern has no pipe ('|') separators. Use '|' in the pattern to define the virtual pipeline segments.");
        if (d.first_stage_layers || d.last_stage_layers) {
            int nset = (d.first_stage_layers > 0) + (d.last_stage_layers > 0);
            int middle_stages = d.pp_size - nset;
            long middle_layers = NAM__CAST(long, n) - d.first_stage_layers - d.last_stage_layers;
            long per_middle;
            if (middle_layers < 0)
                return nam__err(err, NAM_ERR_STAGE, "first (%d) + last (%d) stage layers exceed the %d layers of the pattern", d.first_stage_layers, d.last_stage_layers, n);
            if (middle_stages > 0 && middle_layers % middle_stages != 0)
                return nam__err(err, NAM_ERR_STAGE, "Middle layers (%ld) must be evenly divisible by middle pipeline stages (%d).", middle_layers, middle_stages);
            if (middle_stages == 0 && middle_layers != 0)
                return nam__err(err, NAM_ERR_STAGE, "no middle pipeline stages for %ld middle layers: first (%d) + last (%d) must equal the %d layers when PP = %d (TransformerConfig refuses this)",
                                middle_layers, d.first_stage_layers, d.last_stage_layers, n, d.pp_size);
            per_middle = middle_stages > 0 ? middle_layers / middle_stages : 0;
            if (d.first_stage_layers && d.pp_rank == 0) { out->offset = 0; out->num_layers = d.first_stage_layers; }
            else if (d.last_stage_layers && d.pp_rank == d.pp_size - 1) { out->offset = n - d.last_stage_layers; out->num_layers = d.last_stage_layers; }
            else {
                int middle_rank = d.first_stage_layers ? d.pp_rank - 1 : d.pp_rank;
                out->offset = NAM__CAST(int, middle_rank * per_middle + d.first_stage_layers);
                out->num_layers = NAM__CAST(int, per_middle);
            }
        } else {
            if (n % d.pp_size != 0)
                return nam__err(err, NAM_ERR_STAGE, "Number of layers (%d) must be evenly divisible by pipeline-model-parallel-size (%d) when no pipe separators are specified in the pattern.", n, d.pp_size);
            out->num_layers = n / d.pp_size;
            out->offset = d.pp_rank * out->num_layers;
        }
        out->layers = main + out->offset;
    } else {
        long seg_index;
        int cur = 0, off = 0;
        const char *s = main;
        if (nseg > 1 && nseg % d.pp_size != 0)
            return nam__err(err, NAM_ERR_STAGE, "The number of pipe-delimited segments (%d) in hybrid_layer_pattern must be evenly divisible by pipeline_model_parallel_size (%d).", nseg, d.pp_size);
        seg_index = NAM__CAST(long, d.has_vp_stage ? d.vp_stage : 0) * d.pp_size + d.pp_rank;
        if (seg_index >= nseg) {
            char vp[16];
            if (d.has_vp_stage) snprintf(vp, sizeof vp, "%d", d.vp_stage); else snprintf(vp, sizeof vp, "None");
            return nam__err(err, NAM_ERR_STAGE, "Pipeline segment index %ld (pp_rank=%d, vp_stage=%s) is out of range for %d segments.", seg_index, d.pp_rank, vp, nseg);
        }
        while (cur < seg_index) {
            if (*s == '|') cur++; else off++;
            s++;
        }
        out->layers = s;
        out->offset = off;
        for (i = 0; s[i] && s[i] != '|'; i++) {}
        out->num_layers = i;
    }
    {   /* validate_segment_layers: symbols, and never '*' together with '+'/'D' */
        int attn = 0, mla = 0;
        for (i = 0; i < out->num_layers; i++) {
            char bn[16];
            if (nam_megatron_symbol_index(out->layers[i]) < 0)
                return nam__err(err, NAM_ERR_SYMBOL, "In hybrid layer pattern segment, %s is not one of the valid layer symbols M G * D + - E",
                                nam__byte_name(NAM__CAST(unsigned char, out->layers[i]), bn));
            attn |= out->layers[i] == '*';
            mla |= out->layers[i] == '+' || out->layers[i] == 'D';
        }
        if (attn && mla)
            return nam__err(err, NAM_ERR_CONFLICT, "Not supported to have both Attention and MLA/DSA in one model (pipeline segment at offset %d)", out->offset);
    }
    if (err) nam__err_reset(err);
    return NAM_OK;
}

NAM__DEF void nam_layout_free(nam_layout *l) {
    if (!l) return;
    nam_free(l->stages);
    memset(l, 0, sizeof *l);
}

NAM__DEF nam_status nam_megatron_layout(const nam_mpattern *p, const nam_layout_desc *desc, nam_layout *out, nam_error *err) {
    nam_layout_desc d;
    int segs, vpp, nvp, v, r;
    nam_status st;
    if (!p || !desc || !out) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_megatron_layout: NULL argument");
    memset(out, 0, sizeof *out);
    d = *desc;
    if (d.pp == 0) d.pp = 1;
    if (d.pp < 0 || d.pp > NAM_MAX_PARALLEL)
        return nam__err(err, NAM_ERR_RANGE, "pipeline-model-parallel-size %d is out of range (1..%d)", d.pp, NAM_MAX_PARALLEL);
    if (d.first_stage_layers < 0 || d.last_stage_layers < 0)
        return nam__err(err, NAM_ERR_RANGE, "decoder first/last pipeline num layers must be positive (got %d, %d)", d.first_stage_layers, d.last_stage_layers);
    if (!p->main || p->num_layers == 0)
        return nam__err(err, NAM_ERR_EMPTY, "the main pattern has no layers (Megatron treats an empty --hybrid-layer-pattern as absent)");
    segs = p->num_segments;
    if (segs > 1 && (d.first_stage_layers || d.last_stage_layers))
        return nam__err(err, NAM_ERR_CONFLICT, "--decoder-first-pipeline-num-layers / --decoder-last-pipeline-num-layers (%d / %d) cannot be combined with a pattern that has pipe ('|') separators (%d segments)",
                        d.first_stage_layers, d.last_stage_layers, segs);
    if ((d.first_stage_layers || d.last_stage_layers) && d.pp == 1)
        return nam__err(err, NAM_ERR_CONFLICT, "first/last pipeline stage layers (%d / %d) need pipeline-model-parallel-size > 1", d.first_stage_layers, d.last_stage_layers);
    if (segs == 1 && d.pp > 1) {
        vpp = 0;
    } else {
        if (segs % d.pp != 0)
            return nam__err(err, NAM_ERR_STAGE, "The number of hybrid pipeline segments described by --hybrid-layer-pattern must be evenly divisible by --pipeline-model-parallel-size. Got %d segments and %d pipeline stages.", segs, d.pp);
        vpp = segs > d.pp ? segs / d.pp : 0;
    }
    if (vpp) {
        if (d.pp <= 1)
            return nam__err(err, NAM_ERR_STAGE, "%d pipe-delimited segments with pipeline-model-parallel-size 1 give a virtual pipeline of %d, and Megatron requires pipeline-model-parallel-size > 1 for virtual pipelining", segs, vpp);
        if (d.no_overlap_p2p && d.pp <= 2)
            return nam__err(err, NAM_ERR_STAGE, "virtual pipelining (VPP %d) without p2p overlap needs pipeline-model-parallel-size > 2 (got %d)", vpp, d.pp);
    }
    nvp = vpp ? vpp : 1;
    out->pp = d.pp;
    out->vpp = vpp;
    out->num_stages = d.pp * nvp;
    out->stages = NAM__CAST(nam_stage *, nam__alloc(sizeof(nam_stage) * NAM__CAST(size_t, out->num_stages)));
    if (!out->stages) { memset(out, 0, sizeof *out); return nam__err(err, NAM_ERR_NOMEM, "out of memory for %d stages", d.pp * nvp); }
    for (v = 0; v < nvp; v++) {
        for (r = 0; r < d.pp; r++) {
            nam_segment_desc sd;
            nam_stage *S = &out->stages[v * d.pp + r];
            memset(&sd, 0, sizeof sd);
            sd.pp_size = d.pp;
            sd.pp_rank = r;
            sd.has_vp_stage = vpp > 0;
            sd.vp_stage = v;
            sd.first_stage_layers = d.first_stage_layers;
            sd.last_stage_layers = d.last_stage_layers;
            S->vp_stage = v;
            S->pp_rank = r;
            st = nam_megatron_select_segment(p, &sd, &S->seg, err);
            if (st) { nam_layout_free(out); return st; }
        }
    }
    if (err) nam__err_reset(err);
    return NAM_OK;
}

/* >>recipe ----------------------------------------------------------------------------- */
enum { NAM__T_INT, NAM__T_BOOL, NAM__T_STR, NAM__T_DBL, NAM__T_PATTERN, NAM__T_LIST,
       NAM__T_FAMILIES, NAM__T_MAP, NAM__T_MODULES, NAM__T_ENV, NAM__T_SPEC, NAM__T_RMODULES };

/* Range flags of a field: NAM__LO_OPEN / NAM__HI_OPEN make lo / hi exclusive. */
#define NAM__LO_OPEN 1
#define NAM__HI_OPEN 2

typedef struct nam__field {
    const char *section, *key, *full;
    int type;
    size_t off, size;
    double lo, hi;
    const char *choices;   /* "a|b|c" for enumerated strings */
    const char *def;       /* built-in NAM56R default, as recipe text */
    const char *doc;       /* '@' stands for `flag` (nam_recipe_write spells it out) */
    const char *flag;      /* the Megatron flag this key drives, NULL for none: the one place it is spelled */
    size_t count_off;      /* NAM__T_LIST: offset of the entry count */
    int slot;              /* NAM__T_LIST: index into nam_recipe.key_pos, -1 for none */
    int open;              /* NAM__LO_OPEN | NAM__HI_OPEN */
} nam__field;

enum { NAM__POS_DSA, NAM__POS_ENGRAM, NAM__POS_MHC, NAM__POS_MOD };

#define NAM__DIM ((double)NAM_MAX_DIM)
#define NAM__PAR ((double)NAM_MAX_PARALLEL)
/* Every recipe key, one row each: section, key, nam_recipe member, range or choices, the
   built-in default, the Megatron flag it drives (NULL for none) and the doc ('@' = the flag).
   INT, BOOL, STR (choices "a|b" or NULL), DBL, DBLO (a double with open ends), OTHER (its
   type), LIST (integers in [lo, hi], distinct; count in `cnt`; slot: key_pos index or -1).
   Expanded twice: into the row indices NAM__F_section_key and into nam__fields[]. */
#define NAM__FIELD_ROWS(INT, BOOL, STR, DBL, DBLO, OTHER, LIST) \
    STR(recipe, name, name, NULL, "NAM56R", NULL, "recipe family name") \
    STR(recipe, mode, mode, "plan|strict", "plan", NULL, "strict: stop at the first family without a Megatron symbol; plan: keep it as a named seam") \
    OTHER(pattern, text, NAM__T_PATTERN, pattern, "AEMEAEMEAEMR/AF", NULL, "authored pattern (main [/mtp ...]); NAM56R's MTP block is AF = Megatron '*-' (attention + dense MLP), as its stack launches it") \
    BOOL(pattern, tile, tile, "true", NULL, "true: text's main part is a motif tiled to depth") \
    INT(pattern, depth, depth, 0, NAM_MAX_DEPTH, "52", "--num-layers", "layers; 0 = the written length") \
    INT(pattern, stages, stages, 0, NAM_MAX_DEPTH, "4", NULL, "N equal stages; 0 = as written with '|'") \
    OTHER(pattern, families, NAM__T_FAMILIES, families, "", NULL, "further family letters, e.g. XY") \
    OTHER(pattern, map, NAM__T_MAP, map, "", NULL, "explicit bindings FAMILY=SYMBOL, e.g. R=G") \
    LIST(pattern, dsa_layers, dsa_layers, num_dsa_layers, 0, NAM_MAX_DEPTH - 1, NAM__POS_DSA, "", NULL, "A-layer indices (0-based) lowered to D (needs model.mla)") \
    STR(pattern, mamba_impl, mamba_impl, "mamba2|mamba3|custom", "mamba3", NULL, "mamba2 is native; mamba3/custom keep M native with a custom seam") \
    INT(model, hidden_size, hidden_size, 1, NAM__DIM, "4096", "--hidden-size", "@") \
    INT(model, ffn_hidden_size, ffn_hidden_size, 0, NAM__DIM, "0", "--ffn-hidden-size", "@; 0 = Megatron's default (4h, or 8h/3 rounded down to 64 with swiglu)") \
    INT(model, num_attention_heads, num_attention_heads, 1, NAM__DIM, "32", "--num-attention-heads", "@") \
    INT(model, num_query_groups, num_query_groups, 0, NAM__DIM, "8", "--num-query-groups", "--group-query-attention @; 0 = no GQA") \
    INT(model, kv_channels, kv_channels, 0, NAM__DIM, "0", "--kv-channels", "@; 0 = hidden / heads") \
    INT(model, seq_length, seq_length, 1, NAM__DIM, "4096", "--seq-length", "@") \
    INT(model, max_position_embeddings, max_position_embeddings, 0, NAM__DIM, "0", "--max-position-embeddings", "@; 0 = seq_length") \
    STR(model, position_embedding_type, position_embedding_type, "rope|none|learned_absolute", "rope", "--position-embedding-type", "@ (always emitted)") \
    STR(model, normalization, normalization, "RMSNorm|LayerNorm", "RMSNorm", "--normalization", "@") \
    STR(model, activation, activation, "swiglu|squared_relu|gelu", "swiglu", NULL, "--swiglu / --squared-relu / neither") \
    BOOL(model, untie_embeddings, untie_embeddings, "true", "--untie-embeddings-and-output-weights", "@") \
    BOOL(model, disable_bias_linear, disable_bias_linear, "true", "--disable-bias-linear", "@ (required for DSA)") \
    BOOL(model, mla, mla, "false", "--multi-latent-attention", "lower A to '+' (MLA); @") \
    INT(model, vocab_size, vocab_size, 1, 1 << 30, "131072", NULL, "padded vocabulary size, for the pre-flight (embedding, output layer, logits FLOPs); never emitted") \
    OTHER(model, spec, NAM__T_SPEC, spec, "megatron.core.models.hybrid.hybrid_layer_specs hybrid_stack_spec", "--spec", "@ MODULE BUILDER: the hybrid layer spec; the stock one cannot build custom seams (strict mode refuses it then)") \
    INT(mla, q_lora_rank, q_lora_rank, 0, NAM__DIM, "1536", "--q-lora-rank", "@; 0 = none") \
    INT(mla, kv_lora_rank, kv_lora_rank, 1, NAM__DIM, "512", "--kv-lora-rank", "@") \
    INT(mla, qk_head_dim, qk_head_dim, 1, NAM__DIM, "128", "--qk-head-dim", "@") \
    INT(mla, qk_pos_emb_head_dim, qk_pos_emb_head_dim, 1, NAM__DIM, "64", "--qk-pos-emb-head-dim", "@") \
    INT(mla, v_head_dim, v_head_dim, 1, NAM__DIM, "128", "--v-head-dim", "@") \
    INT(moe, num_experts, num_experts, 0, NAM__DIM, "64", "--num-experts", "@; 0 = no MoE (then E is refused)") \
    INT(moe, router_topk, router_topk, 1, NAM__DIM, "6", "--moe-router-topk", "@") \
    INT(moe, ffn_hidden_size, moe_ffn_hidden_size, 0, NAM__DIM, "1408", "--moe-ffn-hidden-size", "@; 0 = model.ffn_hidden_size") \
    INT(moe, shared_expert_size, shared_expert_size, 0, NAM__DIM, "2816", "--moe-shared-expert-intermediate-size", "@; 0 = none") \
    STR(moe, score_function, score_function, "softmax|sigmoid|sqrtsoftplus", "sigmoid", "--moe-router-score-function", "@") \
    BOOL(moe, pre_softmax, pre_softmax, "false", "--moe-router-pre-softmax", "@") \
    BOOL(moe, expert_bias, expert_bias, "true", "--moe-router-enable-expert-bias", "@ (sigmoid/sqrtsoftplus only)") \
    BOOL(moe, grouped_gemm, grouped_gemm, "true", "--moe-grouped-gemm", "@") \
    STR(moe, load_balancing, load_balancing, "aux_loss|seq_aux_loss|global_aux_loss|sinkhorn|none", "seq_aux_loss", "--moe-router-load-balancing-type", "@") \
    DBL(moe, aux_loss_coeff, aux_loss_coeff, 0, 1e6, "0.0001", "--moe-aux-loss-coeff", "@") \
    STR(moe, dispatcher, dispatcher, "allgather|alltoall|flex", "alltoall", "--moe-token-dispatcher-type", "@") \
    DBL(moe, capacity_factor, capacity_factor, 0, 1e3, "0", "--moe-expert-capacity-factor", "@; 0 = dropless (none)") \
    BOOL(moe, pad_to_capacity, pad_to_capacity, "false", "--moe-pad-expert-input-to-capacity", "@ (needs capacity_factor)") \
    INT(mamba, state_dim, mamba_state_dim, 1, NAM__DIM, "128", "--mamba-state-dim", "@") \
    INT(mamba, head_dim, mamba_head_dim, 1, NAM__DIM, "64", "--mamba-head-dim", "@") \
    INT(mamba, num_groups, mamba_num_groups, 1, NAM__DIM, "8", "--mamba-num-groups", "@") \
    INT(mamba, num_heads, mamba_num_heads, 0, NAM__DIM, "0", "--mamba-num-heads", "@; 0 = expand * hidden / head_dim (expand 2, or mamba3.expand)") \
    INT(gdn, num_key_heads, gdn_num_key_heads, 1, NAM__DIM, "16", "--linear-num-key-heads", "@ (G layers)") \
    INT(gdn, num_value_heads, gdn_num_value_heads, 1, NAM__DIM, "32", "--linear-num-value-heads", "@") \
    INT(gdn, key_head_dim, gdn_key_head_dim, 1, NAM__DIM, "128", "--linear-key-head-dim", "@") \
    INT(gdn, value_head_dim, gdn_value_head_dim, 1, NAM__DIM, "128", "--linear-value-head-dim", "@") \
    INT(gdn, conv_kernel_dim, gdn_conv_kernel_dim, 1, NAM__DIM, "4", "--linear-conv-kernel-dim", "@") \
    INT(dsa, indexer_n_heads, dsa_indexer_n_heads, 1, NAM__DIM, "32", "--dsa-indexer-n-heads", "@ (D layers)") \
    INT(dsa, indexer_head_dim, dsa_indexer_head_dim, 1, NAM__DIM, "64", "--dsa-indexer-head-dim", "@") \
    INT(dsa, indexer_topk, dsa_indexer_topk, 1, NAM__DIM, "256", "--dsa-indexer-topk", "@ (tokens each query attends to)") \
    DBL(dsa, indexer_loss_coeff, dsa_indexer_loss_coeff, 0, 1e6, "0.001", "--dsa-indexer-loss-coeff", "@ (0 disables the indexer loss)") \
    INT(m2rnn, k_head_dim, m2rnn_k_head_dim, 1, NAM__DIM, "64", NULL, "R mixer (M2RNN): key head dim K (one shared q/k head)") \
    INT(m2rnn, v_head_dim, m2rnn_v_head_dim, 1, NAM__DIM, "16", NULL, "R mixer: value head dim V (state K x V per head)") \
    INT(m2rnn, conv_kernel, m2rnn_conv_kernel, 1, 64, "4", NULL, "R mixer: causal depthwise conv kernel over q, k, v") \
    INT(m2rnn, num_heads, m2rnn_num_heads, 0, NAM__DIM, "0", NULL, "R mixer: value heads; 0 = max(1, floor(hidden / (K + V)))") \
    BOOL(m2rnn, residual, m2rnn_residual, "true", NULL, "R mixer: residual D term (y += D * v)") \
    DBL(mamba3, rope_fraction, mamba3_rope_fraction, 0, 1, "0.5", NULL, "Mamba-3: fraction of the state dim under data-dependent rotary") \
    BOOL(mamba3, mimo, mamba3_mimo, "false", NULL, "Mamba-3: MIMO (rank mimo_rank) instead of SISO") \
    INT(mamba3, mimo_rank, mamba3_mimo_rank, 1, 64, "4", NULL, "Mamba-3: MIMO rank R (used when mimo = true)") \
    INT(mamba3, chunk_size, mamba3_chunk_size, 1, 4096, "64", NULL, "Mamba-3: scan chunk size") \
    DBLO(mamba3, a_floor, mamba3_a_floor, 0, 1e6, NAM__LO_OPEN, "0.0001", NULL, "Mamba-3: A = -max(softplus(a), a_floor)") \
    DBLO(mamba3, dt_min, mamba3_dt_min, 0, 1e6, NAM__LO_OPEN, "0.001", NULL, "Mamba-3: dt init range, low end") \
    DBLO(mamba3, dt_max, mamba3_dt_max, 0, 1e6, NAM__LO_OPEN, "0.1", NULL, "Mamba-3: dt init range, high end (>= dt_min)") \
    INT(mamba3, expand, mamba3_expand, 1, 64, "2", NULL, "Mamba-3: inner width = expand * hidden; heads = expand * hidden / mamba.head_dim") \
    DBL(mtp, loss_scaling_factor, mtp_loss_scaling_factor, 0, 1e6, "0.1", "--mtp-loss-scaling-factor", "@") \
    INT(mtp, depths, mtp_depths, 0, NAM_MAX_MTP_DEPTHS, "0", "--mtp-num-layers", "MTP depths (@): the written MTP block repeated N times; 0 = as many copies as pattern.text writes") \
    INT(parallel, world_size, world_size, 1, NAM__PAR, "8", NULL, "ranks in the job") \
    INT(parallel, tp, tp, 1, NAM__PAR, "2", "--tensor-model-parallel-size", "@") \
    INT(parallel, pp, pp, 1, NAM__PAR, "2", "--pipeline-model-parallel-size", "@") \
    INT(parallel, cp, cp, 1, NAM__PAR, "1", "--context-parallel-size", "@") \
    INT(parallel, ep, ep, 1, NAM__PAR, "4", "--expert-model-parallel-size", "@") \
    INT(parallel, etp, etp, 0, NAM__PAR, "1", "--expert-tensor-parallel-size", "@; 0 = tp") \
    BOOL(parallel, sequence_parallel, sequence_parallel, "true", "--sequence-parallel", "@ (needs tp > 1)") \
    BOOL(parallel, overlap_p2p, overlap_p2p, "true", "--no-overlap-p2p-communication", "false emits @") \
    INT(parallel, first_stage_layers, first_stage_layers, 0, NAM_MAX_DEPTH, "0", "--decoder-first-pipeline-num-layers", "@; 0 = none") \
    INT(parallel, last_stage_layers, last_stage_layers, 0, NAM_MAX_DEPTH, "0", "--decoder-last-pipeline-num-layers", "@; 0 = none") \
    STR(parallel, order, order, "tp-cp-ep-dp-pp|tp-cp-ep-pp-dp", "tp-cp-ep-dp-pp", "--use-tp-pp-dp-mapping", "rank order; tp-cp-ep-pp-dp emits @") \
    STR(parallel, cp_comm_type, cp_comm_type, "p2p|a2a|allgather|a2a+p2p", "p2p", "--cp-comm-type", "@ (emitted when cp > 1)") \
    BOOL(parallel, distributed_optimizer, distributed_optimizer, "true", "--use-distributed-optimizer", "@: optimizer state sharded over data parallel") \
    LIST(parallel, hierarchical_cp_sizes, hierarchical_cp_sizes, num_hierarchical_cp_sizes, 1, NAM__PAR, -1, "", "--hierarchical-context-parallel-sizes", "@ (product = cp; required by a2a+p2p)") \
    STR(memory, recompute_granularity, recompute_granularity, "none|selective|full", "none", "--recompute-granularity", "@ (none emits nothing)") \
    STR(memory, recompute_method, recompute_method, "uniform|block", "uniform", "--recompute-method", "@, with full recompute") \
    INT(memory, recompute_num_layers, recompute_num_layers, 1, NAM_MAX_DEPTH, "1", "--recompute-num-layers", "@, with full recompute (1..layers per pp rank)") \
    OTHER(memory, recompute_modules, NAM__T_RMODULES, recompute_modules, "core_attn", "--recompute-modules", "@, with selective recompute (core_attn moe_act layernorm mla_up_proj mlp moe shared_experts gdn_norm_out mhc)") \
    STR(implementation, transformer_impl, transformer_impl, "transformer_engine|local", "transformer_engine", "--transformer-impl", "fixed policy: @") \
    STR(implementation, attention_backend, attention_backend, "auto|flash|fused|unfused", "auto", "--attention-backend", "fixed policy: @ (local needs --spec local, which a hybrid plan never uses)") \
    BOOL(implementation, use_flash_attn, use_flash_attn, "false", "--use-flash-attn", "fixed policy: @") \
    BOOL(implementation, gradient_accumulation_fusion, gradient_accumulation_fusion, "true", "--no-gradient-accumulation-fusion", "fixed policy: false emits @") \
    BOOL(implementation, persist_layer_norm, persist_layer_norm, "true", "--no-persist-layer-norm", "fixed policy: false emits @") \
    BOOL(implementation, masked_softmax_fusion, masked_softmax_fusion, "true", "--no-masked-softmax-fusion", "fixed policy: false emits @") \
    BOOL(implementation, rope_fusion, rope_fusion, "true", "--no-rope-fusion", "fixed policy: false emits @ (DSA plans always get it)") \
    BOOL(implementation, mla_down_proj_fusion, mla_down_proj_fusion, "false", "--mla-down-proj-fusion", "fixed policy: @ (needs model.mla)") \
    BOOL(implementation, moe_permute_fusion, moe_permute_fusion, "false", "--moe-permute-fusion", "fixed policy: @ (with MoE)") \
    BOOL(implementation, moe_router_fusion, moe_router_fusion, "false", "--moe-router-fusion", "fixed policy: @ (with MoE)") \
    BOOL(implementation, moe_shared_expert_overlap, moe_shared_expert_overlap, "false", "--moe-shared-expert-overlap", "fixed policy: @ (shared expert, alltoall or flex)") \
    STR(implementation, moe_flex_backend, moe_flex_backend, "deepep|hybridep", "deepep", "--moe-flex-dispatcher-backend", "fixed policy: @, with moe.dispatcher = flex") \
    INT(train, train_iters, train_iters, 0, 1 << 30, "0", "--train-iters", "fixed policy: @; 0 = not given") \
    DBL(train, lr, lr, 0, 1e6, "0", "--lr", "fixed policy: @; 0 = not given") \
    DBL(train, min_lr, min_lr, 0, 1e6, "0", "--min-lr", "fixed policy: @ (<= lr)") \
    STR(train, lr_decay_style, lr_decay_style, "constant|linear|cosine|inverse-square-root|WSD", "linear", "--lr-decay-style", "fixed policy: @") \
    INT(train, lr_warmup_iters, lr_warmup_iters, 0, 1 << 30, "0", "--lr-warmup-iters", "fixed policy: @") \
    DBL(train, clip_grad, clip_grad, 0, 1e6, "1", "--clip-grad", "fixed policy: @") \
    INT(train, eval_interval, eval_interval, 0, 1 << 30, "0", "--eval-interval", "fixed policy: @; 0 = not given") \
    INT(train, eval_iters, eval_iters, 0, 1 << 30, "100", "--eval-iters", "fixed policy: @") \
    INT(train, log_interval, log_interval, 1, 1 << 30, "100", "--log-interval", "fixed policy: @") \
    INT(train, save_interval, save_interval, 0, 1 << 30, "0", "--save-interval", "fixed policy: @; 0 = not given") \
    BOOL(train, log_throughput, log_throughput, "false", "--log-throughput", "fixed policy: @") \
    STR(data, data_path, data_path, NULL, "", "--data-path", "fixed policy: @ (words separated by spaces: [weight] prefix ...); never opened") \
    STR(data, tokenizer_type, tokenizer_type, "|GPT2BPETokenizer|SentencePieceTokenizer|GPTSentencePieceTokenizer|HuggingFaceTokenizer|Llama2Tokenizer|TikTokenizer|NullTokenizer", "", "--tokenizer-type", "fixed policy: @; empty = not given") \
    STR(data, tokenizer_model, tokenizer_model, NULL, "", "--tokenizer-model", "fixed policy: @ (a path or hub name; never opened)") \
    STR(data, split, split, NULL, "", "--split", "fixed policy: @, e.g. 969,30,1; empty = not given") \
    BOOL(data, mock_data, mock_data, "false", "--mock-data", "fixed policy: @ (synthetic data instead of data_path)") \
    STR(data, save, save_dir, NULL, "", "--save", "fixed policy: @ (checkpoint directory; never opened)") \
    STR(data, load, load_dir, NULL, "", "--load", "fixed policy: @ (checkpoint directory; never opened)") \
    DBL(preflight, device_memory_gib, device_memory_gib, 0, 1e6, "0", NULL, "GPU memory in GiB; plan mode warns and strict mode refuses when a pp rank's static memory exceeds it; 0 = not checked") \
    DBL(preflight, peak_tflops, peak_tflops, 0, 1e9, "989", NULL, "dense bf16 peak per GPU in TFLOP/s, for MFU (989 = H100/H200 SXM)") \
    DBL(preflight, step_time_s, step_time_s, 0, 1e9, "0", NULL, "measured seconds per global batch; > 0 gives TFLOP/s per GPU and MFU") \
    INT(batch, micro_batch_size, micro_batch_size, 1, NAM__DIM, "1", "--micro-batch-size", "@") \
    INT(batch, global_batch_size, global_batch_size, 0, 1 << 30, "64", "--global-batch-size", "@; 0 = micro * dp") \
    STR(precision, dtype, dtype, "bf16|fp16|fp32", "bf16", NULL, "--bf16 / --fp16 / neither") \
    STR(precision, fp8, fp8, "none|e4m3|hybrid", "none", "--fp8-format", "@") \
    STR(precision, fp8_recipe, fp8_recipe, "delayed|tensorwise|mxfp8|blockwise", "delayed", "--fp8-recipe", "@, with fp8 (mxfp8 needs Blackwell)") \
    INT(precision, fp8_amax_history_len, fp8_amax_history_len, 1, 1 << 20, "1", "--fp8-amax-history-len", "@, with the delayed recipe") \
    STR(precision, fp8_amax_compute_algo, fp8_amax_compute_algo, "most_recent|max", "most_recent", "--fp8-amax-compute-algo", "@, with the delayed recipe") \
    STR(precision, moe_router_dtype, moe_router_dtype, "none|fp32|fp64", "none", "--moe-router-dtype", "@ (with MoE); none = the model dtype") \
    STR(cuda_graph, impl, cuda_graph_impl, "none|local|transformer_engine|full_iteration", "transformer_engine", "--cuda-graph-impl", "@") \
    INT(cuda_graph, warmup_steps, cuda_graph_warmup_steps, 0, 1 << 20, "3", "--cuda-graph-warmup-steps", "@ (with CUDA graphs)") \
    OTHER(cuda_graph, modules, NAM__T_MODULES, cuda_graph_modules, "attn,mamba,moe_router,moe_preprocess", "--cuda-graph-modules", "@ (comma list; empty = whole layer)") \
    BOOL(engram, enabled, engram_enabled, "false", NULL, "Engram (n-gram memory) on A layers: a feature seam, never a Megatron flag") \
    LIST(engram, layers, engram_layers, num_engram_layers, 0, NAM_MAX_DEPTH - 1, NAM__POS_ENGRAM, "", NULL, "0-based A-layer indices carrying Engram (required when enabled)") \
    LIST(engram, ngram_orders, engram_ngram_orders, num_engram_ngram_orders, 1, 64, -1, "2,3,4", NULL, "n-gram orders") \
    INT(engram, bottleneck_dim, engram_bottleneck_dim, 0, NAM__DIM, "0", NULL, "bottleneck width; 0 = none") \
    DBLO(engram, dropout, engram_dropout, 0, 1, NAM__HI_OPEN, "0", NULL, "dropout in [0, 1)") \
    BOOL(engram, gated, engram_gated, "false", NULL, "gated read-out") \
    BOOL(engram, gate_sqrt_compress, engram_gate_sqrt_compress, "false", NULL, "sqrt-compressed gate") \
    INT(engram, conv_kernel, engram_conv_kernel, 0, 64, "0", NULL, "short conv kernel; 0 = none") \
    STR(engram, conv_impl, engram_conv_impl, "xla_safe|maxtext_depthwise", "xla_safe", NULL, "conv implementation") \
    BOOL(mhc, enabled, mhc_enabled, "false", NULL, "mHC (manifold hyper-connections) on A layers: a feature seam") \
    LIST(mhc, layers, mhc_layers, num_mhc_layers, 0, NAM_MAX_DEPTH - 1, NAM__POS_MHC, "", NULL, "0-based A-layer indices carrying mHC (required when enabled)") \
    INT(mhc, n_streams, mhc_n_streams, 2, 64, "4", NULL, "residual streams (> 1)") \
    INT(mhc, sinkhorn_iters, mhc_sinkhorn_iters, 1, 1000, "5", NULL, "Sinkhorn iterations") \
    DBLO(mhc, temperature, mhc_temperature, 0, 1e6, NAM__LO_OPEN, "1", NULL, "Sinkhorn temperature (> 0)") \
    DBLO(mhc, epsilon, mhc_epsilon, 0, 1, NAM__LO_OPEN, "1e-06", NULL, "Sinkhorn epsilon (> 0)") \
    DBL(mhc, blend_alpha, mhc_blend_alpha, 0, 1e6, "1", NULL, "blend factor (>= 0)") \
    BOOL(mhc, dynamic, mhc_dynamic, "false", NULL, "input-dependent mixing") \
    STR(mhc, dynamic_mode, mhc_dynamic_mode, "maxtext|pooled", "maxtext", NULL, "dynamic mixing mode") \
    BOOL(mhc, fused_ops, mhc_fused_ops, "false", NULL, "fused kernels") \
    INT(mhc, recompute_group_size, mhc_recompute_group_size, -1, NAM_MAX_DEPTH, "0", NULL, "recompute grouping; 0 = automatic, -1 = off") \
    BOOL(mod, enabled, mod_enabled, "false", NULL, "MoD (mixture of depths) on E layers: a feature seam") \
    LIST(mod, layers, mod_layers, num_mod_layers, 0, NAM_MAX_DEPTH - 1, NAM__POS_MOD, "", NULL, "0-based E-layer indices carrying MoD (required when enabled)") \
    DBLO(mod, capacity, mod_capacity, 0, 1, NAM__LO_OPEN, "0.5", NULL, "token capacity in (0, 1]") \
    DBL(mod, aux_loss_weight, mod_aux_loss_weight, 0, 1e6, "0.01", NULL, "router aux loss weight (>= 0)") \
    STR(mod, routing, mod_routing, "topk|threshold|progressive|gateskip", "topk", NULL, "routing rule") \
    STR(mod, target, mod_target, NULL, "", NULL, "routing target (free text, passed to the runtime)") \
    STR(mod, scorer, mod_scorer, NULL, "", NULL, "scorer (free text)") \
    STR(mod, selector, mod_selector, NULL, "", NULL, "selector (free text)") \
    STR(mod, schedule, mod_schedule, NULL, "", NULL, "capacity schedule (free text)") \
    STR(mod, executor, mod_executor, "auto|gather|mask", "auto", NULL, "executor") \
    BOOL(mod, ffn_only, mod_ffn_only, "false", NULL, "route the FFN only") \
    INT(mod, skip_first_n, mod_skip_first_n, 0, NAM_MAX_DEPTH, "4", NULL, "leave the first N layers unrouted") \
    BOOL(mod, skip_mamba, mod_skip_mamba, "true", NULL, "never route Mamba layers") \
    BOOL(moda, enabled, moda_enabled, "false", NULL, "MoDA (mixture-of-depths attention), model-wide: a feature seam") \
    BOOL(ngram_hash, enabled, ngram_hash_enabled, "false", NULL, "n-gram hash embedding added to the input embedding: a feature seam") \
    LIST(ngram_hash, orders, ngram_hash_orders, num_ngram_hash_orders, 1, 64, -1, "2,3", NULL, "n-gram orders") \
    INT(ngram_hash, heads, ngram_hash_heads, 1, 4096, "8", NULL, "hash heads") \
    INT(ngram_hash, table_size, ngram_hash_table_size, 1, 1 << 30, "500000", NULL, "rows per hash table") \
    INT(ngram_hash, embed_dim, ngram_hash_embed_dim, 1, NAM__DIM, "16", NULL, "embedding width per head") \
    BOOL(ngram_hash, offload, ngram_hash_offload, "false", NULL, "keep the tables in host memory") \
    BOOL(structure, enabled, structure_enabled, "false", NULL, "structure (AST) embedding on the input embedding: a feature seam") \
    STR(structure, components, structure_components, "core|all", "core", NULL, "embedded components") \
    INT(structure, max_ast_depth, structure_max_ast_depth, 1, 1 << 20, "20", NULL, "AST depth buckets (> 0)") \
    INT(structure, max_sibling_index, structure_max_sibling_index, 0, 1 << 20, "10", NULL, "sibling-index buckets (>= 0)") \
    INT(structure, num_node_types, structure_num_node_types, 1, 1 << 20, "64", NULL, "node types (> 0)") \
    INT(structure, bottleneck_dim, structure_bottleneck_dim, 1, NAM__DIM, "64", NULL, "bottleneck width (> 0)") \
    BOOL(structure, relation_bias, structure_relation_bias, "false", NULL, "relation bias") \
    BOOL(structure, tree_ffn, structure_tree_ffn, "false", NULL, "tree FFN") \
    INT(structure, tree_ffn_steps, structure_tree_ffn_steps, 1, 1024, "3", NULL, "tree FFN steps (> 0)") \
    DBLO(structure, tree_ffn_dropout, structure_tree_ffn_dropout, 0, 1, NAM__HI_OPEN, "0", NULL, "tree FFN dropout in [0, 1)") \
    BOOL(structure, platform_embed, structure_platform_embed, "false", NULL, "platform embedding") \
    STR(runtime, recipe_mode, recipe_mode, NULL, "pretrain", NULL, "fixed policy: launcher recipe mode") \
    STR(runtime, cache_dir, cache_dir, NULL, "/tmp/nam-cache", NULL, "fixed policy: pre-import cache root (set before importing torch)") \
    OTHER(runtime, env, NAM__T_ENV, env, "CUDA_DEVICE_MAX_CONNECTIONS=1,NCCL_P2P_LEVEL=NVL,TORCH_NCCL_AVOID_RECORD_STREAMS=1", NULL, "fixed policy: CUDA/NCCL environment, comma list KEY=VALUE")

#define NAM__ROW_ID(s, k, ...) NAM__F_##s##_##k,
enum { NAM__FIELD_ROWS(NAM__ROW_ID, NAM__ROW_ID, NAM__ROW_ID, NAM__ROW_ID, NAM__ROW_ID, NAM__ROW_ID, NAM__ROW_ID) NAM__F_COUNT };
#undef NAM__ROW_ID

#define NAM__RO(m) offsetof(nam_recipe, m), sizeof(((nam_recipe *)0)->m)
#define NAM__I(s, k, m, lo, hi, def, fl, doc) { #s, #k, #s "." #k, NAM__T_INT, NAM__RO(m), lo, hi, NULL, def, doc, fl, 0, -1, 0 },
#define NAM__B(s, k, m, def, fl, doc)         { #s, #k, #s "." #k, NAM__T_BOOL, NAM__RO(m), 0, 1, NULL, def, doc, fl, 0, -1, 0 },
#define NAM__S(s, k, m, ch, def, fl, doc)     { #s, #k, #s "." #k, NAM__T_STR, NAM__RO(m), 0, 0, ch, def, doc, fl, 0, -1, 0 },
#define NAM__D(s, k, m, lo, hi, def, fl, doc) { #s, #k, #s "." #k, NAM__T_DBL, NAM__RO(m), lo, hi, NULL, def, doc, fl, 0, -1, 0 },
#define NAM__DO(s, k, m, lo, hi, open, def, fl, doc) { #s, #k, #s "." #k, NAM__T_DBL, NAM__RO(m), lo, hi, NULL, def, doc, fl, 0, -1, open },
#define NAM__X(s, k, t, m, def, fl, doc)      { #s, #k, #s "." #k, t, NAM__RO(m), 0, 0, NULL, def, doc, fl, 0, -1, 0 },
#define NAM__L(s, k, m, cnt, lo, hi, slot, def, fl, doc) { #s, #k, #s "." #k, NAM__T_LIST, NAM__RO(m), lo, hi, NULL, def, doc, fl, offsetof(nam_recipe, cnt), slot, 0 },
static const nam__field nam__fields[] = { NAM__FIELD_ROWS(NAM__I, NAM__B, NAM__S, NAM__D, NAM__DO, NAM__X, NAM__L) };
#undef NAM__I
#undef NAM__B
#undef NAM__S
#undef NAM__D
#undef NAM__DO
#undef NAM__X
#undef NAM__L
#define NAM__NFIELDS (NAM__CAST(int, sizeof nam__fields / sizeof nam__fields[0]))

/* Megatron flags that no one recipe key drives (derived from the plan, or one value of a
   key); every other flag nam knows is the `flag` column of nam__fields. Code names a flag
   by NAM__FLAG(section, key) or NAM__XFLAG(ID), never by spelling it again. */
#define NAM__XFLAG_ROWS(X) \
    X(HYBRID_LAYER_PATTERN, "--hybrid-layer-pattern") \
    X(GROUP_QUERY_ATTENTION, "--group-query-attention") \
    X(SWIGLU, "--swiglu") \
    X(SQUARED_RELU, "--squared-relu") \
    X(EXPERIMENTAL_ATTENTION_VARIANT, "--experimental-attention-variant") \
    X(BF16, "--bf16") \
    X(FP16, "--fp16") \
    X(NO_CHECK_FOR_NAN, "--no-check-for-nan-in-loss-and-grad")
#define NAM__XFLAG_ID(id, name) NAM__FL_##id,
#define NAM__XFLAG_NAME(id, name) name,
enum { NAM__XFLAG_ROWS(NAM__XFLAG_ID) NAM__FL_COUNT };
static const char *const nam__xflags[] = { NAM__XFLAG_ROWS(NAM__XFLAG_NAME) };
#undef NAM__XFLAG_ID
#undef NAM__XFLAG_NAME
#define NAM__FLAG(s, k) (nam__fields[NAM__F_##s##_##k].flag)
#define NAM__XFLAG(id) (nam__xflags[NAM__FL_##id])

NAM__DEF const char *nam_recipe_key(int i) {
    return i >= 0 && i < NAM__NFIELDS ? nam__fields[i].full : NULL;
}

static int nam__field_find(const char *key, int *ambiguous) {
    int i, found = -1;
    const char *dot = strchr(key, '.');
    *ambiguous = 0;
    for (i = 0; i < NAM__NFIELDS; i++) {
        const nam__field *f = &nam__fields[i];
        if (dot) {
            size_t sl = strlen(f->section);
            if (NAM__CAST(size_t, dot - key) == sl && strncmp(key, f->section, sl) == 0 && strcmp(dot + 1, f->key) == 0) return i;
        } else if (strcmp(key, f->key) == 0) {
            if (found >= 0) *ambiguous = 1;
            found = i;
        }
    }
    return *ambiguous ? -1 : found;
}

static int nam__choice_ok(const char *choices, const char *v) {
    size_t n = strlen(v);
    const char *p = choices;
    while (p && *p) {
        const char *e = strchr(p, '|');
        size_t l = e ? NAM__CAST(size_t, e - p) : strlen(p);
        if (l == n && strncmp(p, v, n) == 0) return 1;
        p = e ? e + 1 : NULL;
    }
    return 0;
}

/* Strict integer: optional sign, decimal digits only, no overflow. */
static int nam__parse_long(const char *s, long long *out) {
    long long v = 0;
    int neg = 0, digits = 0;
    if (*s == '-' || *s == '+') neg = *s++ == '-';
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return 0;
        if (v > (LLONG_MAX - 9) / 10) return 0;
        v = v * 10 + (*s - '0');
        digits++;
    }
    if (!digits) return 0;
    *out = neg ? -v : v;
    return 1;
}

static int nam__parse_bool(const char *v, int *out) {
    if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes") || !strcmp(v, "on")) { *out = 1; return 1; }
    if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no") || !strcmp(v, "off")) { *out = 0; return 1; }
    return 0;
}

static int nam__printable(const char *v, size_t *bad) {
    size_t i;
    for (i = 0; v[i]; i++)
        if (NAM__CAST(unsigned char, v[i]) < 0x20 || NAM__CAST(unsigned char, v[i]) > 0x7e) { *bad = i; return 0; }
    return 1;
}

static const char *const nam__graph_modules = "attn|mlp|moe|moe_router|moe_preprocess|mamba";
/* transformer_config.py:1943-1957 */
static const char *const nam__recompute_modules = "core_attn|moe_act|layernorm|mla_up_proj|mlp|moe|shared_experts|gdn_norm_out|mhc";

/* Validate a comma list item by item; kind: MAP, MODULES, ENV, FAMILIES-free. */
static nam_status nam__check_list(const nam__field *f, const char *v, nam_error *err) {
    const char *p = v;
    int n = 0;
    if (!*v) return NAM_OK;
    while (1) {
        const char *e = strchr(p, ',');
        size_t l = e ? NAM__CAST(size_t, e - p) : strlen(p);
        char item[300];
        n++;
        if (n > NAM_MAX_LIST) return nam__err(err, NAM_ERR_LIMIT, "%s.%s: more than %d list entries", f->section, f->key, NAM_MAX_LIST);
        if (l == 0 || l >= sizeof item)
            return nam__err(err, NAM_ERR_SYNTAX, "%s.%s: entry %d of '%s' is %s", f->section, f->key, n, v, l ? "too long" : "empty");
        memcpy(item, p, l);
        item[l] = 0;
        if (f->type == NAM__T_MAP) {
            if (l != 3 || item[1] != '=' || item[0] < 'A' || item[0] > 'Z')
                return nam__err(err, NAM_ERR_SYNTAX, "%s.%s: entry %d '%s' is not FAMILY=SYMBOL (e.g. R=G)", f->section, f->key, n, item);
            if (nam_megatron_symbol_index(item[2]) < 0)
                return nam__err(err, NAM_ERR_SYMBOL, "%s.%s: entry %d '%s' binds to '%c', which is not a Megatron layer symbol (M G * D + - E)", f->section, f->key, n, item, item[2]);
            if (item[0] == 'A' || item[0] == 'M' || item[0] == 'E' || item[0] == 'F')
                return nam__err(err, NAM_ERR_CONFLICT, "%s.%s: entry %d '%s': family %c already has a native mapping; bindings are only for families without one (R and declared families)", f->section, f->key, n, item, item[0]);
            {
                const char *q;
                for (q = v; q < p; q++)
                    if ((q == v || q[-1] == ',') && q[0] == item[0] && q[1] == '=')
                        return nam__err(err, NAM_ERR_CONFLICT, "%s.%s: family %c is bound twice", f->section, f->key, item[0]);
            }
        } else if (f->type == NAM__T_MODULES) {
            if (!nam__choice_ok(nam__graph_modules, item))
                return nam__err(err, NAM_ERR_RANGE, "%s.%s: entry %d '%s' is not a CUDA-graph module (attn, mlp, moe, moe_router, moe_preprocess, mamba)", f->section, f->key, n, item);
        } else if (f->type == NAM__T_RMODULES) {
            if (!nam__choice_ok(nam__recompute_modules, item))
                return nam__err(err, NAM_ERR_RANGE, "%s.%s: entry %d '%s' is not a recompute module (%s)", f->section, f->key, n, item, nam__recompute_modules);
        } else if (f->type == NAM__T_ENV) {
            const char *eq = strchr(item, '=');
            size_t k;
            if (!eq || eq == item)
                return nam__err(err, NAM_ERR_SYNTAX, "%s.%s: entry %d '%s' is not KEY=VALUE", f->section, f->key, n, item);
            for (k = 0; item + k < eq; k++) {
                char c = item[k];
                if (!((c >= 'A' && c <= 'Z') || c == '_' || (k && c >= '0' && c <= '9')))
                    return nam__err(err, NAM_ERR_SYNTAX, "%s.%s: entry %d '%s': '%c' at %d is not allowed in an environment variable name", f->section, f->key, n, item, c, NAM__CAST(int, k) + 1);
            }
        }
        if (!e) break;
        p = e + 1;
    }
    return NAM_OK;
}

/* A layer spec as Megatron's --spec takes it: "module.path builder_name", a dotted Python
   module path, one space, a Python identifier. */
static int nam__ident_char(char c, int first) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (!first && c >= '0' && c <= '9');
}
static nam_status nam__check_spec(const nam__field *f, const char *v, nam_error *err) {
    const char *c = v, *sp = strchr(v, ' ');
    int first = 1;
    if (!sp || sp == v || !sp[1])
        return nam__err(err, NAM_ERR_SYNTAX, "%s.%s: '%.200s' is not 'module.path builder_name' (a module path, one space, a builder name)", f->section, f->key, v);
    for (; c < sp; c++) {
        if (*c == '.' && !first && c + 1 < sp) { first = 1; continue; }
        if (!nam__ident_char(*c, first))
            return nam__err(err, NAM_ERR_SYNTAX, "%s.%s: '%c' at position %d of '%.200s' does not belong in a dotted Python module path", f->section, f->key, *c, NAM__CAST(int, c - v) + 1, v);
        first = 0;
    }
    for (c = sp + 1, first = 1; *c; c++, first = 0)
        if (!nam__ident_char(*c, first))
            return nam__err(err, NAM_ERR_SYNTAX, "%s.%s: '%c' at position %d of '%.200s' does not belong in a builder name (one Python identifier)", f->section, f->key, *c, NAM__CAST(int, c - v) + 1, v);
    return NAM_OK;
}

/* Lists are comma-separated; blanks around the commas and at the ends are not part of the
   entries ("0, 4" is "0,4"). Returns 0 when the value does not fit `cap`. */
static int nam__list_normalize(const char *v, char *out, size_t cap) {
    size_t n = 0;
    const char *p = v;
    while (*p) {
        const char *e = strchr(p, ','), *end;
        while (*p == ' ' || *p == '\t') p++;
        end = e ? e : p + strlen(p);
        while (end > p && (end[-1] == ' ' || end[-1] == '\t')) end--;
        if (n + NAM__CAST(size_t, end - p) + 2 > cap) return 0;
        memcpy(out + n, p, NAM__CAST(size_t, end - p));
        n += NAM__CAST(size_t, end - p);
        if (!e) break;
        out[n++] = ',';
        p = e + 1;
    }
    out[n] = 0;
    return 1;
}

static nam_status nam__field_set(nam_recipe *r, int fi, const char *v, nam_error *err) {
    const nam__field *f = &nam__fields[fi];
    char *base = NAM__CAST(char *, NAM__CAST(void *, r)) + f->off;
    size_t bad;
    char list[1024];
    if (f->type == NAM__T_LIST || f->type == NAM__T_MAP || f->type == NAM__T_MODULES || f->type == NAM__T_ENV || f->type == NAM__T_RMODULES) {
        if (!nam__list_normalize(v, list, sizeof list))
            return nam__err(err, NAM_ERR_LIMIT, "%s.%s: the list is longer than %d bytes", f->section, f->key, NAM__CAST(int, sizeof list) - 1);
        v = list;
    }
    if (!nam__printable(v, &bad) && f->type != NAM__T_PATTERN)
        return nam__err(err, NAM_ERR_SYNTAX, "%s.%s: byte %d of the value is not printable ASCII", f->section, f->key, NAM__CAST(int, bad) + 1);
    switch (f->type) {
    case NAM__T_INT: {
        long long x;
        if (!nam__parse_long(v, &x))
            return nam__err(err, NAM_ERR_SYNTAX, "%s.%s: '%.64s' is not an integer", f->section, f->key, v);
        if (x < f->lo || x > f->hi)
            return nam__err(err, NAM_ERR_RANGE, "%s.%s = %lld is out of range (%.0f..%.0f)", f->section, f->key, x, f->lo, f->hi);
        *NAM__CAST(int *, NAM__CAST(void *, base)) = NAM__CAST(int, x);
        return NAM_OK;
    }
    case NAM__T_BOOL: {
        int b;
        if (!nam__parse_bool(v, &b))
            return nam__err(err, NAM_ERR_SYNTAX, "%s.%s: '%.64s' is not a boolean (true/false)", f->section, f->key, v);
        *NAM__CAST(int *, NAM__CAST(void *, base)) = b;
        return NAM_OK;
    }
    case NAM__T_DBL: {
        char *end;
        double x;
        if (!*v) return nam__err(err, NAM_ERR_SYNTAX, "%s.%s: empty value is not a number", f->section, f->key);
        x = strtod(v, &end);
        if (*end || x != x)
            return nam__err(err, NAM_ERR_SYNTAX, "%s.%s: '%.64s' is not a number", f->section, f->key, v);
        if (x < f->lo || x > f->hi || ((f->open & NAM__LO_OPEN) && x == f->lo) || ((f->open & NAM__HI_OPEN) && x == f->hi))
            return nam__err(err, NAM_ERR_RANGE, "%s.%s = %g is out of range %c%g, %g%c", f->section, f->key, x,
                            (f->open & NAM__LO_OPEN) ? '(' : '[', f->lo, f->hi, (f->open & NAM__HI_OPEN) ? ')' : ']');
        *NAM__CAST(double *, NAM__CAST(void *, base)) = x;
        return NAM_OK;
    }
    case NAM__T_PATTERN: {
        size_t n = strlen(v);
        char *copy;
        if (n > NAM_MAX_TEXT)
            return nam__err(err, NAM_ERR_LIMIT, "%s.%s: %lu bytes exceed the limit of %d", f->section, f->key, NAM__CAST(unsigned long, n), NAM_MAX_TEXT);
        copy = nam__strndup(v, n);
        if (!copy) return nam__err(err, NAM_ERR_NOMEM, "out of memory");
        nam_free(r->pattern);
        r->pattern = copy;
        return NAM_OK;
    }
    case NAM__T_LIST: {
        int vals[NAM_MAX_LIST], n = 0, i;
        const char *p = v;
        while (*p) {
            const char *e = strchr(p, ',');
            size_t l = e ? NAM__CAST(size_t, e - p) : strlen(p);
            char item[32];
            long long x;
            if (n >= NAM_MAX_LIST) return nam__err(err, NAM_ERR_LIMIT, "%s.%s: more than %d entries", f->section, f->key, NAM_MAX_LIST);
            if (l == 0 || l >= sizeof item) return nam__err(err, NAM_ERR_SYNTAX, "%s.%s: entry %d is %s", f->section, f->key, n + 1, l ? "too long" : "empty");
            memcpy(item, p, l);
            item[l] = 0;
            if (!nam__parse_long(item, &x)) return nam__err(err, NAM_ERR_SYNTAX, "%s.%s: entry %d '%s' is not an integer", f->section, f->key, n + 1, item);
            if (x < f->lo || x > f->hi) return nam__err(err, NAM_ERR_RANGE, "%s.%s: entry %d = %lld is out of range (%.0f..%.0f)", f->section, f->key, n + 1, x, f->lo, f->hi);
            for (i = 0; i < n; i++)
                if (vals[i] == x) return nam__err(err, NAM_ERR_CONFLICT, "%s.%s: %s %lld is listed twice", f->section, f->key, f->slot >= 0 ? "layer" : "value", x);
            vals[n++] = NAM__CAST(int, x);
            if (!e) break;
            p = e + 1;
            if (!*p) return nam__err(err, NAM_ERR_SYNTAX, "%s.%s: trailing comma", f->section, f->key);
        }
        memcpy(base, vals, sizeof(int) * NAM__CAST(size_t, n));
        *NAM__CAST(int *, NAM__CAST(void *, NAM__CAST(char *, NAM__CAST(void *, r)) + f->count_off)) = n;
        if (f->slot >= 0) r->key_pos[f->slot].line = 0;   /* set without a file position */
        return NAM_OK;
    }
    case NAM__T_FAMILIES: {
        size_t i, n = strlen(v);
        if (n >= f->size) return nam__err(err, NAM_ERR_LIMIT, "%s.%s: at most %d families", f->section, f->key, NAM__CAST(int, f->size) - 1);
        for (i = 0; i < n; i++) {
            char c = v[i];
            if (c < 'A' || c > 'Z')
                return nam__err(err, NAM_ERR_SYNTAX, "%s.%s: '%c' at position %d is not an upper-case family letter", f->section, f->key, c, NAM__CAST(int, i) + 1);
            if (c == 'A' || c == 'M' || c == 'E' || c == 'R' || c == 'F' || memchr(v, c, i))
                return nam__err(err, NAM_ERR_CONFLICT, "%s.%s: family '%c' at position %d is %s", f->section, f->key, c, NAM__CAST(int, i) + 1,
                                memchr(v, c, i) ? "declared twice" : "built in (A, M, E, R, F)");
        }
        memcpy(base, v, n + 1);
        return NAM_OK;
    }
    default: { /* NAM__T_STR, NAM__T_MAP, NAM__T_MODULES, NAM__T_RMODULES, NAM__T_ENV, NAM__T_SPEC */
        size_t n = strlen(v);
        nam_status st;
        if (n >= f->size)
            return nam__err(err, NAM_ERR_LIMIT, "%s.%s: value is %lu bytes, the limit is %d", f->section, f->key, NAM__CAST(unsigned long, n), NAM__CAST(int, f->size) - 1);
        if (f->type == NAM__T_STR && f->choices && !nam__choice_ok(f->choices, v))
            return nam__err(err, NAM_ERR_RANGE, "%s.%s: '%s' is not one of %s", f->section, f->key, v, f->choices);
        if (f->type == NAM__T_SPEC && (st = nam__check_spec(f, v, err)) != NAM_OK) return st;
        if (f->type != NAM__T_STR && f->type != NAM__T_SPEC && (st = nam__check_list(f, v, err)) != NAM_OK) return st;
        memcpy(base, v, n + 1);
        return NAM_OK;
    }
    }
}

NAM__DEF void nam_recipe_free(nam_recipe *r) {
    if (!r) return;
    nam_free(r->pattern);
    memset(r, 0, sizeof *r);
}

NAM__DEF nam_status nam_recipe_set(nam_recipe *r, const char *key, const char *value, nam_error *err) {
    int amb, fi;
    nam_status st;
    if (!r || !key || !value) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_recipe_set: NULL argument");
    fi = nam__field_find(key, &amb);
    if (fi < 0) {
        if (amb) return nam__err(err, NAM_ERR_UNKNOWN_KEY, "key '%.64s' is ambiguous; write it as section.key", key);
        return nam__err(err, NAM_ERR_UNKNOWN_KEY, "unknown recipe key '%.64s' (`nam recipe` prints every key)", key);
    }
    st = nam__field_set(r, fi, value, err);
    if (st) return st;
    if (nam__fields[fi].type == NAM__T_PATTERN) {
        snprintf(r->pattern_source, sizeof r->pattern_source, "%s", "pattern.text");
        r->pattern_line = 0;
        r->pattern_column = 0;
    }
    if (err) nam__err_reset(err);
    return NAM_OK;
}

NAM__DEF nam_status nam_recipe_init(nam_recipe *r, nam_error *err) {
    int i;
    nam_status st;
    if (!r) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_recipe_init: r is NULL");
    memset(r, 0, sizeof *r);
    for (i = 0; i < NAM__NFIELDS; i++) {
        st = nam__field_set(r, i, nam__fields[i].def, err);
        if (st) { nam_recipe_free(r); return st; }
    }
    snprintf(r->pattern_source, sizeof r->pattern_source, "%s", "built-in NAM56R");
    if (err) nam__err_reset(err);
    return NAM_OK;
}

static nam_status nam__recipe_copy(nam_recipe *dst, const nam_recipe *src, nam_error *err) {
    *dst = *src;
    dst->pattern = src->pattern ? nam__strdup(src->pattern) : NULL;
    if (src->pattern && !dst->pattern) { memset(dst, 0, sizeof *dst); return nam__err(err, NAM_ERR_NOMEM, "out of memory"); }
    return NAM_OK;
}

static void nam__field_value(const nam_recipe *r, int fi, nam__sb *b) {
    const nam__field *f = &nam__fields[fi];
    const char *base = NAM__CAST(const char *, NAM__CAST(const void *, r)) + f->off;
    int i;
    switch (f->type) {
    case NAM__T_INT: nam__sb_printf(b, "%d", *NAM__CAST(const int *, NAM__CAST(const void *, base))); break;
    case NAM__T_BOOL: nam__sb_puts(b, *NAM__CAST(const int *, NAM__CAST(const void *, base)) ? "true" : "false"); break;
    case NAM__T_DBL: {
        double x = *NAM__CAST(const double *, NAM__CAST(const void *, base));
        char tmp[40];
        snprintf(tmp, sizeof tmp, "%.15g", x);
        if (strtod(tmp, NULL) != x) snprintf(tmp, sizeof tmp, "%.17g", x);
        nam__sb_puts(b, tmp);
        break;
    }
    case NAM__T_PATTERN: nam__sb_puts(b, r->pattern ? r->pattern : ""); break;
    case NAM__T_LIST: {
        const int *v = NAM__CAST(const int *, NAM__CAST(const void *, base));
        int n = *NAM__CAST(const int *, NAM__CAST(const void *, NAM__CAST(const char *, NAM__CAST(const void *, r)) + f->count_off));
        for (i = 0; i < n; i++) nam__sb_printf(b, i ? ",%d" : "%d", v[i]);
        break;
    }
    default: nam__sb_puts(b, base); break;
    }
}

/* Whether field i of r holds its built-in default (compared as recipe text). */
static int nam__field_is_default(const nam_recipe *r, int i) {
    const nam__field *f = &nam__fields[i];
    const void *v = NAM__CAST(const char *, NAM__CAST(const void *, r)) + f->off;
    nam_recipe def;
    nam__sb a, b;
    int same;
    if (f->type == NAM__T_INT || f->type == NAM__T_BOOL) {   /* the common, cheap cases */
        long long x;
        int bv;
        if (f->type == NAM__T_INT) return nam__parse_long(f->def, &x) && x == *NAM__CAST(const int *, v);
        return nam__parse_bool(f->def, &bv) && bv == *NAM__CAST(const int *, v);
    }
    if (f->type == NAM__T_DBL) return strtod(f->def, NULL) == *NAM__CAST(const double *, v);
    memset(&def, 0, sizeof def);
    if (nam__field_set(&def, i, nam__fields[i].def, NULL) != NAM_OK) return 0;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    nam__field_value(r, i, &a);
    nam__field_value(&def, i, &b);
    same = !a.oom && !b.oom && !strcmp(a.buf ? a.buf : "", b.buf ? b.buf : "");
    nam_free(a.buf);
    nam_free(b.buf);
    if (nam__fields[i].type == NAM__T_PATTERN) nam_free(def.pattern);
    return same;
}

/* A field's doc with '@' spelled out as its Megatron flag. */
static void nam__doc_put(nam__sb *b, const nam__field *f) {
    const char *at = strchr(f->doc, '@');
    if (!at) { nam__sb_puts(b, f->doc); return; }
    nam__sb_putn(b, f->doc, NAM__CAST(size_t, at - f->doc));
    nam__sb_puts(b, f->flag);
    nam__sb_puts(b, at + 1);
}

/* The [mamba3] rows (contiguous in the table, like every section) are Mamba-3 settings, which
   mean something only with pattern.mamba_impl = mamba3. Returns the first of them that r
   holds off its default while another mamba_impl is chosen (only rows with set[i] != 0 when
   `set` is given), with the refusal in err; -1 when there is none. */
static int nam__mamba3_conflict(const nam_recipe *r, const int *set, nam_error *err) {
    int i = NAM__F_mamba3_rope_fraction;
    if (!strcmp(r->mamba_impl, "mamba3")) return -1;
    while (i > 0 && !strcmp(nam__fields[i - 1].section, "mamba3")) i--;
    for (; i < NAM__NFIELDS && !strcmp(nam__fields[i].section, "mamba3"); i++)
        if ((!set || set[i]) && !nam__field_is_default(r, i)) {
            nam__err(err, NAM_ERR_CONFLICT, "mamba3.%s is a Mamba-3 setting, but pattern.mamba_impl is %s (set pattern.mamba_impl = mamba3)", nam__fields[i].key, r->mamba_impl);
            return i;
        }
    return -1;
}

NAM__DEF nam_status nam_recipe_write(const nam_recipe *r, char **out, nam_error *err) {
    nam__sb b;
    int i;
    const char *sec = "";
    if (!r || !out) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_recipe_write: NULL argument");
    memset(&b, 0, sizeof b);
    nam__sb_puts(&b, "# nam recipe (every key; see nam.h section 7)\n");
    for (i = 0; i < NAM__NFIELDS; i++) {
        const nam__field *f = &nam__fields[i];
        nam__sb val;
        int quote;
        if (strcmp(sec, f->section)) { nam__sb_printf(&b, "\n[%s]\n", f->section); sec = f->section; }
        memset(&val, 0, sizeof val);
        nam__field_value(r, i, &val);
        quote = (f->type == NAM__T_STR || f->type == NAM__T_SPEC) && (!val.buf || !val.buf[0] || strpbrk(val.buf, "#; \"") != NULL);
        nam__sb_puts(&b, "# ");
        nam__doc_put(&b, f);
        nam__sb_printf(&b, "\n%s = ", f->key);
        if (quote) {
            size_t k;
            nam__sb_putc(&b, '"');
            for (k = 0; val.buf && val.buf[k]; k++) {
                if (val.buf[k] == '"' || val.buf[k] == '\\') nam__sb_putc(&b, '\\');
                nam__sb_putc(&b, val.buf[k]);
            }
            nam__sb_putc(&b, '"');
        } else if (val.buf) {
            nam__sb_puts(&b, val.buf);
        }
        if (val.oom) b.oom = 1;
        nam_free(val.buf);
        nam__sb_putc(&b, '\n');
    }
    return nam__sb_finish(&b, out, err);
}

static int nam__is_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }

static nam_status nam__recipe_err_at(nam_error *err, nam_status st, const char *source, long off, int line, int col) {
    char prefix[160];
    if (!err) return st;
    snprintf(prefix, sizeof prefix, "%.120s:%d:%d: ", source, line, col);
    nam__err_prefix(err, prefix);
    err->code = st;
    nam__err_pos(err, source, off, line, col);
    return st;
}

NAM__DEF nam_status nam_recipe_parse(nam_recipe *r, const char *text, size_t len, const char *source, nam_error *err) {
    nam_recipe work;
    nam_status st;
    size_t pos = 0;
    int line = 0, set_line[NAM__NFIELDS], set_col[NAM__NFIELDS], i;
    char section[32] = "";
    char *value = NULL;
    if (!r || !text) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_recipe_parse: NULL argument");
    if (!source) source = "recipe";
    if (!len) len = strlen(text);
    if (len > NAM_MAX_TEXT) return nam__err(err, NAM_ERR_LIMIT, "%s: %lu bytes exceed the limit of %d", source, NAM__CAST(unsigned long, len), NAM_MAX_TEXT);
    for (i = 0; i < NAM__NFIELDS; i++) set_line[i] = set_col[i] = 0;
    st = nam__recipe_copy(&work, r, err);
    if (st) return st;
    value = NAM__CAST(char *, nam__alloc(len + 1));
    if (!value) { nam_recipe_free(&work); return nam__err(err, NAM_ERR_NOMEM, "out of memory"); }
    while (pos < len) {
        size_t ls = pos, le = pos, p, ks, ke, vs, ve;
        char key[96];
        line++;
        while (le < len && text[le] != '\n') le++;
        pos = le + 1;
        for (p = ls; p < le; p++) {
            unsigned char c = NAM__CAST(unsigned char, text[p]);
            if (c == 0 || c >= 0x80 || (c < 0x20 && c != '\t' && c != '\r')) {
                char bn[16];
                nam__err(err, NAM_ERR_SYNTAX, "%s byte", nam__byte_name(c, bn));
                st = nam__recipe_err_at(err, NAM_ERR_SYNTAX, source, NAM__CAST(long, p), line, NAM__CAST(int, p - ls) + 1);
                goto fail;
            }
        }
        p = ls;
        while (p < le && nam__is_space(text[p])) p++;
        if (p == le || text[p] == '#' || text[p] == ';') continue;
        if (text[p] == '[') {
            size_t q = p + 1, n;
            while (q < le && text[q] != ']') q++;
            n = q - p - 1;
            if (q == le) { nam__err(err, NAM_ERR_SYNTAX, "section header without ']'"); st = nam__recipe_err_at(err, NAM_ERR_SYNTAX, source, NAM__CAST(long, p), line, NAM__CAST(int, p - ls) + 1); goto fail; }
            for (ke = q + 1; ke < le && nam__is_space(text[ke]); ke++) {}
            if (ke < le && text[ke] != '#' && text[ke] != ';') { nam__err(err, NAM_ERR_SYNTAX, "unexpected text after section header"); st = nam__recipe_err_at(err, NAM_ERR_SYNTAX, source, NAM__CAST(long, ke), line, NAM__CAST(int, ke - ls) + 1); goto fail; }
            if (n == 0 || n >= sizeof section) { nam__err(err, NAM_ERR_UNKNOWN_KEY, "bad section name"); st = nam__recipe_err_at(err, NAM_ERR_UNKNOWN_KEY, source, NAM__CAST(long, p), line, NAM__CAST(int, p - ls) + 1); goto fail; }
            memcpy(section, text + p + 1, n);
            section[n] = 0;
            for (i = 0; i < NAM__NFIELDS; i++) if (!strcmp(nam__fields[i].section, section)) break;
            if (i == NAM__NFIELDS) {
                char names[400];
                size_t nl = 0;
                for (i = 0; i < NAM__NFIELDS; i++)
                    if (!i || strcmp(nam__fields[i].section, nam__fields[i - 1].section))
                        nl += NAM__CAST(size_t, snprintf(names + nl, sizeof names - nl, "%s%s", nl ? " " : "", nam__fields[i].section));
                nam__err(err, NAM_ERR_UNKNOWN_KEY, "unknown section [%s] (sections: %s)", section, names);
                st = nam__recipe_err_at(err, NAM_ERR_UNKNOWN_KEY, source, NAM__CAST(long, p + 1), line, NAM__CAST(int, p - ls) + 2);
                goto fail;
            }
            continue;
        }
        ks = p;
        while (p < le && text[p] != '=' && !nam__is_space(text[p])) p++;
        ke = p;
        while (p < le && nam__is_space(text[p])) p++;
        if (p == le || text[p] != '=') {
            nam__err(err, NAM_ERR_SYNTAX, "expected 'key = value'");
            st = nam__recipe_err_at(err, NAM_ERR_SYNTAX, source, NAM__CAST(long, p), line, NAM__CAST(int, p - ls) + 1);
            goto fail;
        }
        if (ke == ks || ke - ks + strlen(section) + 2 > sizeof key) {
            nam__err(err, NAM_ERR_SYNTAX, ke == ks ? "missing key before '='" : "key too long");
            st = nam__recipe_err_at(err, NAM_ERR_SYNTAX, source, NAM__CAST(long, ks), line, NAM__CAST(int, ks - ls) + 1);
            goto fail;
        }
        if (memchr(text + ks, '.', ke - ks) || !section[0]) snprintf(key, sizeof key, "%.*s", NAM__CAST(int, ke - ks), text + ks);
        else snprintf(key, sizeof key, "%s.%.*s", section, NAM__CAST(int, ke - ks), text + ks);
        p++;
        while (p < le && nam__is_space(text[p])) p++;
        vs = p;
        if (p < le && text[p] == '"') {
            size_t n = 0;
            p++;
            while (p < le && text[p] != '"') {
                if (text[p] == '\\' && p + 1 < le && (text[p + 1] == '"' || text[p + 1] == '\\')) p++;
                value[n++] = text[p++];
            }
            if (p == le) { nam__err(err, NAM_ERR_SYNTAX, "unterminated quoted value"); st = nam__recipe_err_at(err, NAM_ERR_SYNTAX, source, NAM__CAST(long, vs), line, NAM__CAST(int, vs - ls) + 1); goto fail; }
            value[n] = 0;
            for (p++; p < le && nam__is_space(text[p]); p++) {}
            if (p < le && text[p] != '#' && text[p] != ';') { nam__err(err, NAM_ERR_SYNTAX, "unexpected text after the quoted value"); st = nam__recipe_err_at(err, NAM_ERR_SYNTAX, source, NAM__CAST(long, p), line, NAM__CAST(int, p - ls) + 1); goto fail; }
            vs++;
        } else {
            ve = vs;
            while (ve < le && !((text[ve] == '#' || text[ve] == ';') && nam__is_space(text[ve - 1]))) ve++;
            while (ve > vs && nam__is_space(text[ve - 1])) ve--;
            memcpy(value, text + vs, ve - vs);
            value[ve - vs] = 0;
        }
        {
            int amb, fi = nam__field_find(key, &amb);
            if (fi < 0 || (section[0] && !memchr(text + ks, '.', ke - ks) && strcmp(nam__fields[fi].section, section))) {
                nam__err(err, NAM_ERR_UNKNOWN_KEY, "unknown key '%s'%s", key, amb ? " (ambiguous: write section.key)" : "");
                st = nam__recipe_err_at(err, NAM_ERR_UNKNOWN_KEY, source, NAM__CAST(long, ks), line, NAM__CAST(int, ks - ls) + 1);
                goto fail;
            }
            if (set_line[fi]) {
                nam__err(err, NAM_ERR_CONFLICT, "key '%s.%s' is already set on line %d", nam__fields[fi].section, nam__fields[fi].key, set_line[fi]);
                st = nam__recipe_err_at(err, NAM_ERR_CONFLICT, source, NAM__CAST(long, ks), line, NAM__CAST(int, ks - ls) + 1);
                goto fail;
            }
            set_line[fi] = line;
            st = nam__field_set(&work, fi, value, err);
            if (st) { st = nam__recipe_err_at(err, st, source, NAM__CAST(long, vs), line, NAM__CAST(int, vs - ls) + 1); goto fail; }
            if (nam__fields[fi].type == NAM__T_PATTERN) {
                snprintf(work.pattern_source, sizeof work.pattern_source, "%s", source);
                work.pattern_line = line;
                work.pattern_column = NAM__CAST(int, vs - ls) + 1;
            }
            if (nam__fields[fi].slot >= 0) {
                snprintf(work.key_pos[nam__fields[fi].slot].source, sizeof work.key_pos[0].source, "%s", source);
                work.key_pos[nam__fields[fi].slot].line = line;
                work.key_pos[nam__fields[fi].slot].column = NAM__CAST(int, ks - ls) + 1;
            }
            set_col[fi] = NAM__CAST(int, ks - ls) + 1;
        }
    }
    /* settings that only mean something together with another key */
    if ((i = nam__mamba3_conflict(&work, set_line, err)) >= 0) {
        st = nam__recipe_err_at(err, NAM_ERR_CONFLICT, source, -1, set_line[i], set_col[i]);
        goto fail;
    }
    nam_free(value);
    nam_recipe_free(r);
    *r = work;
    if (err) nam__err_reset(err);
    return NAM_OK;
fail:
    nam_free(value);
    nam_recipe_free(&work);
    return st;
}

/* >>translate -------------------------------------------------------------------------- */
/* A new seam (the caller has checked that none of that name exists); returns its index. */
static int nam__seam_add(nam_plan *p, const char *name, char fam, nam_seam_kind kind, const char *mixer,
                         const char *placement, const char *detail, const char *reason, const char *supplies) {
    nam_seam s;
    memset(&s, 0, sizeof s);
    nam__copy(s.name, sizeof s.name, name);
    s.family = fam;
    s.kind = kind;
    nam__copy(s.mixer, sizeof s.mixer, mixer);
    nam__copy(s.placement, sizeof s.placement, placement);
    nam__copy(s.detail, sizeof s.detail, detail);
    nam__copy(s.reason, sizeof s.reason, reason);
    nam__copy(s.runtime_supplies, sizeof s.runtime_supplies, supplies);
    arrput(p->seams, s);
    return p->num_seams++;
}

static void nam__decision_add(nam_plan *p, char fam, char sym, const char *what) {
    nam_decision d;
    d.family = fam;
    d.symbol = sym;
    nam__copy(d.what, sizeof d.what, what);
    arrput(p->decisions, d);
    p->num_decisions++;
}

static const char *nam__symbol_name(char sym) {
    switch (sym) {
    case 'M': return "Mamba-2";
    case 'G': return "Gated DeltaNet";
    case '*': return "attention";
    case 'D': return "DeepSeek sparse attention";
    case '+': return "multi-latent attention";
    case '-': return "dense MLP";
    case 'E': return "MoE";
    default: return "?";
    }
}

/* The decision an explicit binding FAM=SYM records (once per binding). R is M2RNN: bound to
   M it only borrows Megatron's M slot (the m2rnn-mixer seam keeps the mixer custom); bound to
   anything else it is REPLACED by that layer, which is a different model. */
static void nam__decide(nam_plan *p, char fam, char sym) {
    int i;
    char what[320];
    for (i = 0; i < p->num_decisions; i++) if (p->decisions[i].family == fam && p->decisions[i].symbol == sym) return;
    if (fam == 'R' && sym == 'M')
        snprintf(what, sizeof what, "explicit binding pattern.map R=M: R layers take Megatron's 'M' slot (the native pattern is emitted); their mixer stays M2RNN, supplied by the layer spec (seam m2rnn-mixer)");
    else if (fam == 'R')
        snprintf(what, sizeof what, "explicit binding pattern.map R=%c: the M2RNN recurrent tail is REPLACED by Megatron's %s ('%c'), a different layer%s; M2RNN does not run in this plan",
                 sym, nam__symbol_name(sym), sym, sym == 'G' ? " (a linear delta-rule recurrence, not M2RNN's non-linear matrix-state RNN)" : "");
    else
        snprintf(what, sizeof what, "explicit binding pattern.map %c=%c: family %c lowered to Megatron '%c' (%s)", fam, sym, fam, sym, nam__symbol_name(sym));
    nam__decision_add(p, fam, sym, what);
}

/* Arg values live in one buffer (p->arg_values); while the args are being built each value
   is recorded as an offset into `text` and resolved to a pointer at the end. */
#define NAM__MAX_ARGS 128
typedef struct nam__argbuf { nam__sb text; int off[NAM__MAX_ARGS]; } nam__argbuf;

static void nam__arg_str(nam_plan *p, nam__argbuf *ab, const char *flag, const char *value) {
    nam_arg a;
    NAM_ASSERT(p->num_args < NAM__MAX_ARGS);
    memcpy(a.flag, flag, strlen(flag) + 1);
    a.value = NULL;
    ab->off[p->num_args] = -1;
    if (value) {
        ab->off[p->num_args] = NAM__CAST(int, ab->text.len);
        nam__sb_putn(&ab->text, value, strlen(value) + 1);   /* keeps the NUL */
    }
    arrput(p->args, a);
    p->num_args++;
}

/* Integer-valued arg without going through printf. */
static void nam__arg_int(nam_plan *p, nam__argbuf *ab, const char *flag, long long v) {
    char tmp[24], *q = tmp + sizeof tmp;
    unsigned long long u = v < 0 ? 0ULL - NAM__CAST(unsigned long long, v) : NAM__CAST(unsigned long long, v);
    *--q = 0;
    do { *--q = NAM__CAST(char, '0' + u % 10); u /= 10; } while (u);
    if (v < 0) *--q = '-';
    nam__arg_str(p, ab, flag, q);
}

static void nam__arg_fmt(nam_plan *p, nam__argbuf *ab, const char *flag, const char *fmt, ...) NAM__PRINTF(4, 5);
static void nam__arg_fmt(nam_plan *p, nam__argbuf *ab, const char *flag, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    nam__arg_str(p, ab, flag, tmp);
}

NAM__DEF void nam_plan_free(nam_plan *p) {
    int i;
    if (!p) return;
    for (i = 0; i < p->num_seams; i++) arrfree(p->seams[i].layers);
    arrfree(p->seams);
    arrfree(p->decisions);
    nam_free(p->preflight.ranks);
    nam_free(p->preflight.chunks);
    nam_free(p->policy_values);
    arrfree(p->policy_args);
    nam_free(p->arg_values);
    arrfree(p->args);
    nam_free(p->layers);
    nam_free(p->mtp_native);
    nam_free(p->native_pattern);
    nam_megatron_free(&p->mpattern);
    nam_layout_free(&p->layout);
    nam_pattern_free(&p->pattern);
    nam_recipe_free(&p->recipe);
    memset(p, 0, sizeof *p);
}

/* Binding for family `fam` from the recipe's map ("R=G,X=M"), 0 if none. */
static char nam__binding(const nam_recipe *r, char fam) {
    const char *p = r->map;
    for (; *p; p++)
        if ((p == r->map || p[-1] == ',') && p[0] == fam && p[1] == '=') return p[2];
    return 0;
}

static int nam__has_module(const char *list, const char *m) {
    size_t n = strlen(m);
    const char *p = list;
    while (p && *p) {
        const char *e = strchr(p, ',');
        size_t l = e ? NAM__CAST(size_t, e - p) : strlen(p);
        if (l == n && !strncmp(p, m, n)) return 1;
        p = e ? e + 1 : NULL;
    }
    return 0;
}

/* Position-bearing error for a layer of the authored pattern. */
static nam_status nam__layer_err(nam_plan *p, nam_error *err, nam_status st, int layer, int stage, int column) {
    const nam_recipe *r = &p->recipe;
    if (!err) return st;
    err->layer = layer;
    err->stage = stage;
    err->line = r->pattern_line > 0 ? r->pattern_line : 1;
    err->column = (r->pattern_column > 0 ? r->pattern_column - 1 : 0) + column;
    err->offset = column - 1;
    snprintf(err->source, sizeof err->source, "%s", r->pattern_source);
    return st;
}

/* Lower one authored letter. Returns the Megatron symbol, 0 for an unmapped seam,
   or -1 after filling err (refusal). `seam` receives the seam index or -1. */
static void nam__where(char *where, size_t n, int layer, int mtp_pos, int stage, int column) {
    if (mtp_pos >= 0) snprintf(where, n, "MTP position %d (pattern column %d)", mtp_pos, column);
    else snprintf(where, n, "layer %d (stage %d, pattern column %d)", layer, stage, column);
}

static int nam__seam_index(const nam_plan *p, const char *name) {
    int i;
    for (i = 0; i < p->num_seams; i++) if (!strcmp(p->seams[i].name, name)) return i;
    return -1;
}

/* Megatron's --ffn-hidden-size when none is given: 4h, or with swiglu 8h/3 rounded down to
   a multiple of 64 (arguments.py); the plan's value when model.ffn_hidden_size is 0. */
static int nam__megatron_ffn_hidden_size(const nam_recipe *r) {
    return strcmp(r->activation, "swiglu") ? 4 * r->hidden_size : NAM__CAST(int, (8LL * r->hidden_size) / 192 * 64);
}

/* The R mixer's value heads: m2rnn.num_heads, else max(1, floor(hidden / (K + V))). */
static int nam__m2rnn_heads(const nam_recipe *r) {
    int h;
    if (r->m2rnn_num_heads) return r->m2rnn_num_heads;
    h = r->hidden_size / (r->m2rnn_k_head_dim + r->m2rnn_v_head_dim);
    return h > 0 ? h : 1;
}

static void nam__m2rnn_detail(const nam_recipe *r, char *out, size_t n) {
    long long K = r->m2rnn_k_head_dim, V = r->m2rnn_v_head_dim, H = nam__m2rnn_heads(r);
    snprintf(out, n, "mixer=M2RNN k_head_dim=%lld v_head_dim=%lld value_heads=%lld%s conv_kernel=%d residual_D=%s state=%lldx%lld fp32 per head in_proj=%lld (2K+2HV+H) out_proj=%lld->%d",
             K, V, H, r->m2rnn_num_heads ? "" : " (floor(hidden/(K+V)))", r->m2rnn_conv_kernel, r->m2rnn_residual ? "on" : "off",
             K, V, 2 * K + 2 * H * V + H, H * V, r->hidden_size);
}

static void nam__mamba3_detail(const nam_recipe *r, char *out, size_t n) {
    long long d_inner = NAM__CAST(long long, r->mamba3_expand) * r->hidden_size, P = r->mamba_head_dim;
    long long H = P ? d_inner / P : 0, N = r->mamba_state_dim, G = r->mamba_num_groups, R = r->mamba3_mimo ? r->mamba3_mimo_rank : 1;
    long long nth = NAM__CAST(long long, floor(NAM__CAST(double, N) * r->mamba3_rope_fraction)) / 2;
    snprintf(out, n, "mixer=Mamba-3 %s expand=%d heads=%lld head_dim=%lld state_dim=%lld groups=%lld rank=%lld rope_fraction=%g rotary_angles=%lld chunk_size=%d a_floor=%g dt_range=[%g,%g] in_proj=%lld (2*d_inner+2NGR+3H+n_theta), no conv1d",
             r->mamba3_mimo ? "MIMO" : "SISO", r->mamba3_expand, H, P, N, G, R, r->mamba3_rope_fraction, nth, r->mamba3_chunk_size,
             r->mamba3_a_floor, r->mamba3_dt_min, r->mamba3_dt_max, 2 * d_inner + 2 * N * G * R + 3 * H + nth);
}

static int nam__lower_uncached(nam_plan *p, char fam, int layer, int is_dsa, int *seam, nam_error *err, int mtp_pos, int stage, int column) {
    const nam_recipe *r = &p->recipe;
    char where[96], reason[256], sup[256], detail[512];
    *seam = -1;
    if (fam == 'A') return r->mla ? (is_dsa ? 'D' : '+') : '*';
    if (fam == 'F') return '-';
    if (fam == 'E') {
        if (r->num_experts <= 0) {
            nam__where(where, sizeof where, layer, mtp_pos, stage, column);
            nam__err(err, NAM_ERR_UNSUPPORTED, "E at %s needs MoE, but moe.num_experts is 0; nam refuses to lower an expert layer to a dense MLP '-' (write F for a dense MLP layer)", where);
            return -1;
        }
        return 'E';
    }
    if (fam == 'M') {
        if (strcmp(r->mamba_impl, "mamba2")) {
            int m3 = !strcmp(r->mamba_impl, "mamba3");
            const char *name = m3 ? "mamba3-mixer" : "custom-mamba-mixer";
            *seam = nam__seam_index(p, name);
            if (*seam < 0) {
                snprintf(reason, sizeof reason, "pattern.mamba_impl = %s, but Megatron-LM's M builds the Mamba-2 MambaLayer", r->mamba_impl);
                snprintf(sup, sizeof sup, "a %s mixer submodule in the hybrid layer spec (model.spec / --spec) for these M layers", m3 ? "Mamba-3" : "custom Mamba");
                if (m3) nam__mamba3_detail(r, detail, sizeof detail);
                else snprintf(detail, sizeof detail, "mixer=custom state_dim=%d head_dim=%d groups=%d", r->mamba_state_dim, r->mamba_head_dim, r->mamba_num_groups);
                *seam = nam__seam_add(p, name, 'M', NAM_SEAM_CUSTOM_IMPL, m3 ? "mamba3" : "custom", "layers", detail, reason, sup);
            }
        }
        return 'M';
    }
    {   /* R and declared families: explicit binding, strict refusal, or a seam */
        char b = nam__binding(r, fam);
        if (b) {
            if (b == 'E' && r->num_experts <= 0) {
                nam__where(where, sizeof where, layer, mtp_pos, stage, column);
                nam__err(err, NAM_ERR_CONFLICT, "binding %c=E at %s needs moe.num_experts > 0", fam, where);
                return -1;
            }
            if ((b == '+' || b == 'D') && !r->mla) {
                nam__where(where, sizeof where, layer, mtp_pos, stage, column);
                nam__err(err, NAM_ERR_CONFLICT, "binding %c=%c at %s needs model.mla = true", fam, b, where);
                return -1;
            }
            nam__decide(p, fam, b);
            if (fam == 'R' && b == 'M') {   /* Megatron's M slot, M2RNN mixer: a custom-implementation seam */
                *seam = nam__seam_index(p, "m2rnn-mixer");
                if (*seam < 0) {
                    nam__m2rnn_detail(r, detail, sizeof detail);
                    *seam = nam__seam_add(p, "m2rnn-mixer", 'R', NAM_SEAM_CUSTOM_IMPL, "m2rnn", "layers", detail,
                                          "pattern.map = R=M: R layers sit in Megatron 'M' slots, but their mixer is M2RNN (non-linear matrix-state RNN), which Megatron-LM does not build",
                                          "an M2RNN mixer in the hybrid layer spec (model.spec / --spec) at these layers (x <- x + M2RNN(RMSNorm(x))), with the dims in detail");
                }
            }
            return b;
        }
        if (p->strict) {
            nam__where(where, sizeof where, layer, mtp_pos, stage, column);
            nam__err(err, NAM_ERR_UNSUPPORTED, "%c at %s has no Megatron-LM layer symbol (valid: M G * D + - E); strict mode stops here. Bind it explicitly (pattern.map = %c=M keeps the custom mixer as a seam) or keep it as a named seam with recipe.mode = plan",
                     fam, where, fam);
            return -1;
        }
        {
            char name[48] = "recurrent-tail";
            if (fam != 'R') snprintf(name, sizeof name, "custom-family-%c", fam);
            *seam = nam__seam_index(p, name);
            if (*seam < 0) {
                if (fam == 'R') {
                    nam__m2rnn_detail(r, detail, sizeof detail);
                    snprintf(reason, sizeof reason, "R is M2RNN (a non-linear matrix-state RNN); Megatron-LM has no symbol for it (valid: M G * D + - E) and nam does not substitute M or G");
                    snprintf(sup, sizeof sup, "an M2RNN layer at these indices: bind pattern.map = R=M and supply the mixer through model.spec (or R=G to replace it with Gated DeltaNet, a different model)");
                    *seam = nam__seam_add(p, name, fam, NAM_SEAM_UNMAPPED, "m2rnn", "layers", detail, reason, sup);
                } else {
                    snprintf(reason, sizeof reason, "family %c is declared by the recipe and has no Megatron-LM symbol", fam);
                    snprintf(sup, sizeof sup, "a layer spec for family %c at these indices, or an explicit binding pattern.map = %c=SYMBOL", fam, fam);
                    *seam = nam__seam_add(p, name, fam, NAM_SEAM_UNMAPPED, "custom", "layers", "", reason, sup);
                }
            }
            return 0;
        }
    }
}

/* nam__lower with a per-family memo: every layer of a family lowers the same way, except
   A (DSA marks) and the first occurrence, which may create a seam or report an error. */
typedef struct nam__lower_memo { signed char sym[26]; int seam[26]; } nam__lower_memo;

static int nam__lower(nam_plan *p, nam__lower_memo *m, char fam, int layer, int is_dsa, int *seam, nam_error *err, int mtp_pos, int stage, int column) {
    int f = fam - 'A', sym;
    if (fam != 'A' && m->sym[f] >= 0) { *seam = m->seam[f]; return m->sym[f]; }
    sym = nam__lower_uncached(p, fam, layer, is_dsa, seam, err, mtp_pos, stage, column);
    if (sym >= 0 && fam != 'A') { m->sym[f] = NAM__CAST(signed char, sym); m->seam[f] = *seam; }
    return sym;
}

static int nam__i64_fits(long long v) { return v >= 0 && v <= INT_MAX; }

/* --num-experts is emitted only when the plan has E layers (or while seams are unresolved). */
static int nam__emits_moe(const nam_plan *p) {
    int i;
    if (p->recipe.num_experts <= 0) return 0;
    if (p->unresolved) return 1;
    for (i = 0; i < p->pattern.depth; i++) if (p->layers[i].native == 'E') return 1;
    return p->mtp_native && strchr(p->mtp_native, 'E') != NULL;
}

/* Value of KEY in the fixed policy's env list ("K=V,K2=V2"), NULL when absent; copied to buf. */
static const char *nam__env_get(const char *env, const char *key, char *buf, size_t cap) {
    size_t kl = strlen(key);
    const char *e = env;
    while (e && *e) {
        const char *c = strchr(e, ',');
        size_t l = c ? NAM__CAST(size_t, c - e) : strlen(e);
        if (l > kl && !strncmp(e, key, kl) && e[kl] == '=') {
            size_t vl = l - kl - 1;
            if (vl >= cap) vl = cap - 1;
            memcpy(buf, e + kl + 1, vl);
            buf[vl] = 0;
            return buf;
        }
        e = c ? c + 1 : NULL;
    }
    return NULL;
}

/* The fixed policy's environment, against the Megatron rules that read it. nam cannot know
   the GPU; it applies the Hopper-and-older rule (Blackwell drops it, and the setting is
   harmless there). */
static nam_status nam__check_env(const nam_plan *p, nam_error *err) {
    const nam_recipe *r = &p->recipe;
    char v[NAM_STR_MAX];
    const char *x;
    if (r->tp > 1 || r->cp > 1) {
        x = nam__env_get(r->env, "CUDA_DEVICE_MAX_CONNECTIONS", v, sizeof v);
        if (!x || strcmp(x, "1"))
            return nam__err(err, NAM_ERR_CONFLICT, "runtime.env: tp %d / cp %d need CUDA_DEVICE_MAX_CONNECTIONS=1 on Hopper and older GPUs (arguments.py:1479), got %s%s",
                            r->tp, r->cp, x ? "CUDA_DEVICE_MAX_CONNECTIONS=" : "none", x ? x : "");
    }
    if (!strcmp(r->cuda_graph_impl, "transformer_engine")) {
        x = nam__env_get(r->env, "PYTORCH_CUDA_ALLOC_CONF", v, sizeof v);
        if (x && strstr(x, "expandable_segments:True")) {
            x = nam__env_get(r->env, "NCCL_GRAPH_REGISTER", v, sizeof v);
            if (!x || strcmp(x, "0"))
                return nam__err(err, NAM_ERR_CONFLICT, "runtime.env: PYTORCH_CUDA_ALLOC_CONF has expandable_segments:True with transformer_engine CUDA graphs, which needs NCCL_GRAPH_REGISTER=0 (arguments.py:1966)");
        }
    }
    return NAM_OK;
}

/* Megatron's derived parallel sizes, the one derivation the plan's policy check and
   nam_rankmap_build share (parallel_state.py initialize_model_parallel): etp (0 = tp),
   dp = world / (tp*pp*cp), expert dp = world / (etp*ep*pp), and an order that does not end
   in pp needs expert dp == dp when pp > 1. Returns the first rule that fails (the sizes
   tp..etp are checked to be in 1..NAM_MAX_PARALLEL before any product is formed); each
   caller words the refusal in its own terms. */
typedef struct nam__par {
    int world, tp, pp, cp, ep, etp;   /* in (etp 0 = tp; etp holds the derived value after) */
    int dp, edp;                      /* out */
    long long model, emodel;          /* tp*pp*cp and etp*ep*pp */
} nam__par;
typedef enum { NAM__PAR_OK, NAM__PAR_RANGE, NAM__PAR_MODEL, NAM__PAR_EXPERT, NAM__PAR_ORDER } nam__par_rule;

static nam__par_rule nam__parallel_sizes(nam__par *s, const char *order) {
    size_t ol = strlen(order);
    if (!s->etp) s->etp = s->tp;
    if (s->tp < 1 || s->pp < 1 || s->cp < 1 || s->ep < 1 || s->etp < 1 || s->tp > NAM_MAX_PARALLEL || s->pp > NAM_MAX_PARALLEL ||
        s->cp > NAM_MAX_PARALLEL || s->ep > NAM_MAX_PARALLEL || s->etp > NAM_MAX_PARALLEL)
        return NAM__PAR_RANGE;
    s->model = NAM__CAST(long long, s->tp) * s->pp * s->cp;
    if (s->world % s->model) return NAM__PAR_MODEL;
    s->dp = NAM__CAST(int, s->world / s->model);
    s->emodel = NAM__CAST(long long, s->etp) * s->ep * s->pp;
    if (s->world % s->emodel) return NAM__PAR_EXPERT;
    s->edp = NAM__CAST(int, s->world / s->emodel);
    if (!(ol >= 2 && !strcmp(order + ol - 2, "pp")) && s->pp != 1 && s->edp != s->dp) return NAM__PAR_ORDER;
    return NAM__PAR_OK;
}

/* Launch-policy checks that mirror Megatron's constraints (megatron.md section 4). */
static nam_status nam__check_policy(nam_plan *p, nam_error *err) {
    const nam_recipe *r = &p->recipe;
    nam__par par;
    int counts[128], i, any_attn, moe, heads = r->num_attention_heads;
    memset(counts, 0, sizeof counts);
    for (i = 0; i < p->pattern.depth; i++) if (p->layers[i].native) counts[NAM__CAST(unsigned char, p->layers[i].native)]++;
    if (p->mtp_native) for (i = 0; p->mtp_native[i]; i++) counts[NAM__CAST(unsigned char, p->mtp_native[i])]++;
    any_attn = counts[(int)'*'] + counts[(int)'+'] + counts[(int)'D'];
    moe = nam__emits_moe(p);
    /* world size, data parallel, the expert grid (nam__parallel_sizes) */
    par.world = r->world_size; par.tp = r->tp; par.pp = r->pp; par.cp = r->cp; par.ep = r->ep; par.etp = r->etp;
    switch (nam__parallel_sizes(&par, r->order)) {
    case NAM__PAR_OK: break;
    case NAM__PAR_RANGE:
        return nam__err(err, NAM_ERR_RANGE, "parallel sizes must be in 1..%d (tp %d, pp %d, cp %d, ep %d, etp %d)", NAM_MAX_PARALLEL, par.tp, par.pp, par.cp, par.ep, par.etp);
    case NAM__PAR_MODEL:
        return nam__err(err, NAM_ERR_PARALLEL, "world_size %d is not divisible by tp*pp*cp = %d*%d*%d = %lld", par.world, par.tp, par.pp, par.cp, par.model);
    case NAM__PAR_EXPERT:
        return nam__err(err, NAM_ERR_PARALLEL, "world_size %d is not divisible by etp*ep*pp = %d*%d*%d = %lld (the expert grid)", par.world, par.etp, par.ep, par.pp, par.emodel);
    case NAM__PAR_ORDER:
        return nam__err(err, NAM_ERR_PARALLEL, "order %s does not end in pp, so Megatron needs expert dp (%d) == dp (%d) when pp = %d", r->order, par.edp, par.dp, par.pp);
    }
    p->dp = par.dp;
    p->etp = par.etp;
    p->edp = par.edp;
    /* experts */
    if (r->ep > 1 && r->num_experts == 0)
        return nam__err(err, NAM_ERR_PARALLEL, "parallel.ep = %d needs moe.num_experts > 0", r->ep);
    if (moe && r->pad_to_capacity && r->capacity_factor <= 0)
        return nam__err(err, NAM_ERR_CONFLICT, "moe.pad_to_capacity needs moe.capacity_factor > 0 (transformer_config.py:1862)");
    if (moe && r->capacity_factor > 0 && !strcmp(r->load_balancing, "sinkhorn"))
        return nam__err(err, NAM_ERR_CONFLICT, "moe.capacity_factor works only with aux_loss, seq_aux_loss, global_aux_loss or none load balancing, got sinkhorn (transformer_config.py:1836)");
    if (moe && r->pad_to_capacity && !strcmp(r->dispatcher, "flex") && !strcmp(r->moe_flex_backend, "deepep"))
        return nam__err(err, NAM_ERR_CONFLICT, "moe.pad_to_capacity with the flex dispatcher's deepep backend (transformer_config.py:1755)");
    if (r->ep > 1 && !moe)
        return nam__err(err, NAM_ERR_PARALLEL, "parallel.ep = %d, but the plan has no E layer, so nam emits no --num-experts, and Megatron asserts num_experts for expert parallelism (arguments.py:1656); set parallel.ep = 1", r->ep);
    if (moe && !strcmp(r->load_balancing, "sinkhorn") && r->aux_loss_coeff != 0)
        return nam__err(err, NAM_ERR_CONFLICT, "moe.load_balancing = sinkhorn needs moe.aux_loss_coeff = 0, got %g (Megatron's router asserts it on the first step, router.py:298)", r->aux_loss_coeff);
    if (r->num_experts > 0) {
        if (r->num_experts % r->ep != 0)
            return nam__err(err, NAM_ERR_PARALLEL, "moe.num_experts %d is not divisible by parallel.ep %d", r->num_experts, r->ep);
        if (r->router_topk > r->num_experts)
            return nam__err(err, NAM_ERR_RANGE, "moe.router_topk %d exceeds moe.num_experts %d", r->router_topk, r->num_experts);
        if (r->router_topk == 1 && !strcmp(r->score_function, "softmax") && !r->pre_softmax)
            return nam__err(err, NAM_ERR_CONFLICT, "moe.router_topk 1 with softmax scoring needs moe.pre_softmax = true (TransformerConfig)");
        if (r->expert_bias && !strcmp(r->score_function, "softmax"))
            return nam__err(err, NAM_ERR_CONFLICT, "moe.expert_bias needs score_function sigmoid or sqrtsoftplus, not softmax");
        if (!r->disable_bias_linear && p->etp != 1)
            return nam__err(err, NAM_ERR_CONFLICT, "MoE with linear bias (model.disable_bias_linear = false) needs expert tensor parallel 1, got %d", p->etp);
    }
    /* attention heads vs TP */
    if (heads % r->tp != 0)
        return nam__err(err, NAM_ERR_PARALLEL, "model.num_attention_heads %d is not divisible by tp %d", heads, r->tp);
    if (r->num_query_groups > 0) {
        if (r->mla)
            return nam__err(err, NAM_ERR_CONFLICT, "model.num_query_groups = %d asks for grouped-query attention, which Megatron refuses together with MLA (model.mla = true); set num_query_groups = 0", r->num_query_groups);
        if (heads % r->num_query_groups != 0)
            return nam__err(err, NAM_ERR_RANGE, "model.num_attention_heads %d is not divisible by model.num_query_groups %d", heads, r->num_query_groups);
        if (r->num_query_groups % r->tp != 0 && r->tp % r->num_query_groups != 0)
            return nam__err(err, NAM_ERR_PARALLEL, "model.num_query_groups %d must be a multiple or a divisor of tp %d", r->num_query_groups, r->tp);
    }
    if (r->kv_channels == 0 && r->hidden_size % heads != 0)
        return nam__err(err, NAM_ERR_RANGE, "model.hidden_size %d is not divisible by model.num_attention_heads %d (set model.kv_channels)", r->hidden_size, heads);
    p->kv_channels = r->kv_channels ? r->kv_channels : r->hidden_size / heads;
    /* Mamba heads and groups vs TP and CP */
    p->mamba_num_heads = r->mamba_num_heads;
    {
        int m3 = !strcmp(r->mamba_impl, "mamba3"), expand = m3 ? r->mamba3_expand : 2;
        long long d_inner = NAM__CAST(long long, expand) * r->hidden_size;
        if (!p->mamba_num_heads || m3) {
            if (d_inner % r->mamba_head_dim != 0)
                return nam__err(err, NAM_ERR_RANGE, "%s%d * model.hidden_size (%lld) is not divisible by mamba.head_dim %d", m3 ? "Mamba-3: mamba3.expand " : "", expand, d_inner, r->mamba_head_dim);
            if (d_inner / r->mamba_head_dim > NAM_MAX_DIM)
                return nam__err(err, NAM_ERR_RANGE, "Mamba heads %lld exceed %d", d_inner / r->mamba_head_dim, NAM_MAX_DIM);
            if (m3 && p->mamba_num_heads && p->mamba_num_heads != d_inner / r->mamba_head_dim)
                return nam__err(err, NAM_ERR_CONFLICT, "Mamba-3: mamba.num_heads = %d, but its heads are mamba3.expand * hidden / head_dim = %d * %d / %d = %lld (leave mamba.num_heads at 0 or match it)",
                                p->mamba_num_heads, expand, r->hidden_size, r->mamba_head_dim, d_inner / r->mamba_head_dim);
            p->mamba_num_heads = NAM__CAST(int, d_inner / r->mamba_head_dim);
        }
        if (m3 && r->mamba3_dt_min > r->mamba3_dt_max)
            return nam__err(err, NAM_ERR_RANGE, "Mamba-3: mamba3.dt_min %g is above mamba3.dt_max %g", r->mamba3_dt_min, r->mamba3_dt_max);
    }
    if (counts[(int)'M']) {
        int nh = p->mamba_num_heads, ng = r->mamba_num_groups;
        if (nh % r->tp != 0) return nam__err(err, NAM_ERR_PARALLEL, "Mamba heads %d are not divisible by tp %d", nh, r->tp);
        if (ng % r->tp != 0) return nam__err(err, NAM_ERR_PARALLEL, "mamba.num_groups %d is not divisible by tp %d", ng, r->tp);
        if (nh % ng != 0) return nam__err(err, NAM_ERR_RANGE, "Mamba heads %d are not divisible by mamba.num_groups %d", nh, ng);
        if (r->cp > 1) {
            int ht = nh / r->tp, gt = ng / r->tp;
            if (ht % r->cp != 0) return nam__err(err, NAM_ERR_PARALLEL, "Mamba heads per TP rank (%d) are not divisible by cp %d", ht, r->cp);
            if (r->cp % gt != 0 && gt % r->cp != 0)
                return nam__err(err, NAM_ERR_PARALLEL, "Mamba groups per TP rank (%d) and cp %d must divide one another", gt, r->cp);
        }
    }
    if (counts[(int)'G']) {
        long long tc = NAM__CAST(long long, r->tp) * r->cp;
        if (r->gdn_num_key_heads % tc != 0 || r->gdn_num_value_heads % tc != 0)
            return nam__err(err, NAM_ERR_PARALLEL, "GDN heads (key %d, value %d) must be divisible by tp*cp = %lld", r->gdn_num_key_heads, r->gdn_num_value_heads, tc);
    }
    /* fp8 GEMMs need the Mamba in_proj output width (2*d_inner + 2*groups*state + heads,
       d_inner = heads*head_dim) to be a multiple of 16 (mamba_mixer.py:254) */
    if (counts[(int)'M'] && strcmp(r->fp8, "none")) {
        long long w = 2LL * p->mamba_num_heads * r->mamba_head_dim + 2LL * r->mamba_num_groups * r->mamba_state_dim + p->mamba_num_heads;
        if (w % 16 != 0)
            return nam__err(err, NAM_ERR_CONFLICT, "precision.fp8 = %s: the Mamba in_proj width 2*%d*%d + 2*%d*%d + %d = %lld is not a multiple of 16, which Megatron asserts for FP8 (mamba_mixer.py:254)",
                            r->fp8, p->mamba_num_heads, r->mamba_head_dim, r->mamba_num_groups, r->mamba_state_dim, p->mamba_num_heads, w);
    }
    /* the same for the GDN in_proj, 2*qk_dim + 2*v_dim + 2*value_heads (gated_delta_net/common.py:207;
       16 is the alignment of the fp8 recipes nam emits) */
    if (counts[(int)'G'] && strcmp(r->fp8, "none")) {
        long long w = 2LL * r->gdn_key_head_dim * r->gdn_num_key_heads + 2LL * r->gdn_value_head_dim * r->gdn_num_value_heads + 2LL * r->gdn_num_value_heads;
        if (w % 16 != 0)
            return nam__err(err, NAM_ERR_CONFLICT, "precision.fp8 = %s: the GDN in_proj width %lld is not a multiple of 16, which Megatron asserts for FP8 (gated_delta_net/common.py:207)", r->fp8, w);
    }
    /* sequence parallel, context parallel, sequence length */
    if (r->sequence_parallel && r->tp == 1)
        return nam__err(err, NAM_ERR_CONFLICT, "parallel.sequence_parallel needs tp > 1 (Megatron would silently turn it off; nam refuses the silent fix-up)");
    if (r->num_hierarchical_cp_sizes) {
        long long prod = 1;
        for (i = 0; i < r->num_hierarchical_cp_sizes; i++) prod *= r->hierarchical_cp_sizes[i];
        if (prod != r->cp)
            return nam__err(err, NAM_ERR_PARALLEL, "parallel.hierarchical_cp_sizes multiply to %lld, but cp is %d (Megatron asserts cp == prod(sizes), arguments.py:581)", prod, r->cp);
    } else if (r->cp > 1 && !strcmp(r->cp_comm_type, "a2a+p2p"))
        return nam__err(err, NAM_ERR_CONFLICT, "parallel.cp_comm_type = a2a+p2p needs parallel.hierarchical_cp_sizes (--hierarchical-context-parallel-sizes, arguments.py:583)");
    if (r->cp > 1 && r->seq_length % (2 * r->cp) != 0)
        return nam__err(err, NAM_ERR_PARALLEL, "model.seq_length %d is not divisible by 2*cp = %d", r->seq_length, 2 * r->cp);
    if (r->max_position_embeddings && r->max_position_embeddings < r->seq_length)
        return nam__err(err, NAM_ERR_RANGE, "model.max_position_embeddings %d is smaller than model.seq_length %d", r->max_position_embeddings, r->seq_length);
    /* batch geometry */
    {
        long long gbs = r->global_batch_size ? r->global_batch_size : NAM__CAST(long long, r->micro_batch_size) * p->dp;
        long long unit = NAM__CAST(long long, r->micro_batch_size) * p->dp;
        if (!nam__i64_fits(gbs)) return nam__err(err, NAM_ERR_RANGE, "global batch size %lld overflows", gbs);
        p->global_batch_size = NAM__CAST(int, gbs);   /* the one place it is derived */
        if (gbs % unit != 0)
            return nam__err(err, NAM_ERR_PARALLEL, "global batch size %lld is not divisible by micro_batch_size * dp = %d * %d = %lld", gbs, r->micro_batch_size, p->dp, unit);
        p->num_microbatches = NAM__CAST(int, gbs / unit);
        if (p->vpp) {
            if (p->num_microbatches < r->pp)
                return nam__err(err, NAM_ERR_PARALLEL, "the interleaved schedule (VPP %d) needs at least pp = %d microbatches, got %d (global %lld / (micro %d * dp %d))",
                                p->vpp, r->pp, p->num_microbatches, gbs, r->micro_batch_size, p->dp);
            if (p->num_microbatches % r->pp != 0)
                return nam__err(err, NAM_ERR_PARALLEL, "the interleaved schedule (VPP %d) needs the number of microbatches (%d) divisible by pp %d", p->vpp, p->num_microbatches, r->pp);
        }
    }
    /* MTP, MLA, DSA */
    if (p->pattern.mtp_depths > 0 && strcmp(r->position_embedding_type, "rope") && strcmp(r->position_embedding_type, "none"))
        return nam__err(err, NAM_ERR_CONFLICT, "MTP (%d depths) needs model.position_embedding_type rope or none, got %s", p->pattern.mtp_depths, r->position_embedding_type);
    if (counts[(int)'D']) {
        if (!r->disable_bias_linear)
            return nam__err(err, NAM_ERR_CONFLICT, "DSA layers ('D') need model.disable_bias_linear = true (add_bias_linear=False)");
        if (r->cp > 1 && strcmp(r->cp_comm_type, "allgather"))
            return nam__err(err, NAM_ERR_CONFLICT, "DSA layers with cp %d need parallel.cp_comm_type = allgather, got %s", r->cp, r->cp_comm_type);
    }
    /* CUDA graphs */
    {
        const char *impl = r->cuda_graph_impl, *mods = r->cuda_graph_modules;
        if (!strcmp(impl, "none") && mods[0])
            return nam__err(err, NAM_ERR_CONFLICT, "cuda_graph.modules = %s but cuda_graph.impl is none", mods);
        if (!strcmp(impl, "full_iteration") && mods[0])
            return nam__err(err, NAM_ERR_CONFLICT, "cuda_graph.impl full_iteration needs empty cuda_graph.modules, got %s", mods);
        if (nam__has_module(mods, "moe") && nam__has_module(mods, "moe_router"))
            return nam__err(err, NAM_ERR_CONFLICT, "cuda_graph.modules: moe and moe_router are mutually exclusive");
        if (nam__has_module(mods, "moe_preprocess") && !nam__has_module(mods, "moe_router"))
            return nam__err(err, NAM_ERR_CONFLICT, "cuda_graph.modules: moe_preprocess needs moe_router");
        if ((nam__has_module(mods, "moe") || nam__has_module(mods, "moe_router")) && r->num_experts <= 1)
            return nam__err(err, NAM_ERR_CONFLICT, "cuda_graph.modules: MoE graphs need moe.num_experts > 1, got %d", r->num_experts);
        if ((nam__has_module(mods, "moe") || nam__has_module(mods, "moe_router")) && !moe)
            return nam__err(err, NAM_ERR_CONFLICT, "cuda_graph.modules: MoE graphs, but the plan has no E layer, so nam emits no --num-experts and Megatron refuses MoE graphs (transformer_config.py:2829)");
        if (nam__has_module(mods, "mlp") && moe)
            return nam__err(err, NAM_ERR_CONFLICT, "cuda_graph.modules: 'mlp' in a MoE model: Megatron graphs dense MLPs only when moe_layer_freq marks dense layers, which a hybrid pattern never sets (transformer_config.py:2835)");
        if (nam__has_module(mods, "moe") && !(r->capacity_factor > 0 && r->pad_to_capacity))
            return nam__err(err, NAM_ERR_CONFLICT, "cuda_graph.modules: 'moe' graphs need drop-and-pad MoE (moe.capacity_factor > 0 and moe.pad_to_capacity), transformer_config.py:2839; or use moe_router");
        if (nam__has_module(mods, "moe_preprocess") && r->capacity_factor > 0 && !r->pad_to_capacity && !strcmp(r->dispatcher, "alltoall"))
            return nam__err(err, NAM_ERR_CONFLICT, "cuda_graph.modules: moe_preprocess with a capacity factor under the alltoall dispatcher (DtoH copies in the preprocess step; transformer_config.py:2846)");
        if (nam__has_module(mods, "mlp") && !counts[(int)'-'])
            return nam__err(err, NAM_ERR_CONFLICT, "cuda_graph.modules: 'mlp' but the plan has no dense MLP ('-') layers");
        if (nam__has_module(mods, "mamba") && !counts[(int)'M'] && !p->unresolved)
            return nam__err(err, NAM_ERR_CONFLICT, "cuda_graph.modules: 'mamba' but the plan has no Mamba layers");
        if (nam__has_module(mods, "attn") && !any_attn && !p->unresolved)
            return nam__err(err, NAM_ERR_CONFLICT, "cuda_graph.modules: 'attn' but the plan has no attention layers");
    }
    /* implementation, fusions, schedule, run inputs */
    if (r->mla_down_proj_fusion && !r->mla)
        return nam__err(err, NAM_ERR_CONFLICT, "implementation.mla_down_proj_fusion needs model.mla = true (arguments.py:1977)");
    if (r->moe_shared_expert_overlap && moe) {
        if (!r->shared_expert_size)
            return nam__err(err, NAM_ERR_CONFLICT, "implementation.moe_shared_expert_overlap needs a shared expert (moe.shared_expert_size > 0)");
        if (strcmp(r->dispatcher, "alltoall") && strcmp(r->dispatcher, "flex"))
            return nam__err(err, NAM_ERR_CONFLICT, "implementation.moe_shared_expert_overlap works only with the alltoall or flex dispatcher, got %s (transformer_config.py:1820)", r->dispatcher);
    }
    if (r->lr > 0 && r->min_lr > r->lr)
        return nam__err(err, NAM_ERR_RANGE, "train.min_lr %g is above train.lr %g (arguments.py:1359)", r->min_lr, r->lr);
    if (r->min_lr > 0 && r->lr <= 0)
        return nam__err(err, NAM_ERR_CONFLICT, "train.min_lr %g is set but train.lr is not", r->min_lr);
    /* recompute under CUDA graphs (transformer_config.py:2855-2899); nam never sets dropout,
       so Megatron's attention and hidden dropout of 0.1 apply */
    if (strcmp(r->cuda_graph_impl, "none") && strcmp(r->recompute_granularity, "none")) {
        const char *mods = r->cuda_graph_modules, *rm = r->recompute_modules;
        int full_graph = !strcmp(r->cuda_graph_impl, "full_iteration") || !mods[0];
        if (!strcmp(r->recompute_granularity, "full") && strcmp(r->cuda_graph_impl, "full_iteration"))
            return nam__err(err, NAM_ERR_CONFLICT, "memory.recompute_granularity = full with cuda_graph.impl %s: Megatron supports full recompute only with full_iteration CUDA graphs (transformer_config.py:2858)", r->cuda_graph_impl);
        if (!strcmp(r->recompute_granularity, "selective")) {
            if (!strcmp(r->cuda_graph_impl, "transformer_engine") && nam__has_module(rm, "moe") && nam__has_module(mods, "moe_router"))
                return nam__err(err, NAM_ERR_CONFLICT, "memory.recompute_modules 'moe' with the moe_router CUDA graph under transformer_engine graphs (transformer_config.py:2868)");
            if (nam__has_module(rm, "core_attn") && (full_graph || nam__has_module(mods, "attn")))
                return nam__err(err, NAM_ERR_CONFLICT, "memory.recompute_modules 'core_attn' while attention is CUDA-graphed: Megatron refuses graphed attention recompute with attention dropout, which is 0.1 unless set (transformer_config.py:2883); drop core_attn or the attn graph");
            if ((nam__has_module(rm, "mlp") && (full_graph || nam__has_module(mods, "mlp"))) || (nam__has_module(rm, "moe") && (full_graph || nam__has_module(mods, "moe"))))
                return nam__err(err, NAM_ERR_CONFLICT, "memory.recompute_modules 'mlp'/'moe' while that module is CUDA-graphed: Megatron refuses graphed MLP/MoE recompute with hidden dropout, which is 0.1 unless set (transformer_config.py:2899)");
        }
    }
    if (!strcmp(r->recompute_granularity, "full") && r->recompute_num_layers > p->pattern.depth / r->pp)
        return nam__err(err, NAM_ERR_RANGE, "memory.recompute_num_layers %d must be between 1 and the layers per pipeline rank, %d / %d = %d (transformer_config.py:1919)",
                        r->recompute_num_layers, p->pattern.depth, r->pp, p->pattern.depth / r->pp);
    return nam__check_env(p, err);
}

static nam_status nam__build_args(nam_plan *p, nam_error *err) {
    nam__argbuf argbuf, *ab = &argbuf;
    const nam_recipe *r = &p->recipe;
    int hasM = 0, hasG = 0, hasD = 0, i;
    nam_status st;
    memset(&argbuf.text, 0, sizeof argbuf.text);
    arrsetcap(p->args, 64);
    for (i = 0; i < p->pattern.depth; i++) {
        hasM |= p->layers[i].native == 'M';
        hasG |= p->layers[i].native == 'G';
        hasD |= p->layers[i].native == 'D';
    }
    if (p->mtp_native) {
        hasM |= strchr(p->mtp_native, 'M') != NULL;
        hasG |= strchr(p->mtp_native, 'G') != NULL;
        hasD |= strchr(p->mtp_native, 'D') != NULL;
    }
    nam__arg_str(p, ab, NAM__FLAG(model, spec), r->spec);
    if (p->native_pattern) nam__arg_str(p, ab, NAM__XFLAG(HYBRID_LAYER_PATTERN), p->native_pattern);
    nam__arg_int(p, ab, NAM__FLAG(pattern, depth), p->pattern.depth);
    nam__arg_int(p, ab, NAM__FLAG(parallel, tp), r->tp);
    nam__arg_int(p, ab, NAM__FLAG(parallel, pp), r->pp);
    nam__arg_int(p, ab, NAM__FLAG(parallel, cp), r->cp);
    if (r->cp > 1) nam__arg_str(p, ab, NAM__FLAG(parallel, cp_comm_type), r->cp_comm_type);
    if (r->num_hierarchical_cp_sizes) {
        char t[NAM_MAX_LIST * 8];
        size_t n = 0;
        for (i = 0; i < r->num_hierarchical_cp_sizes; i++)
            n += NAM__CAST(size_t, snprintf(t + n, sizeof t - n, i ? " %d" : "%d", r->hierarchical_cp_sizes[i]));
        nam__arg_str(p, ab, NAM__FLAG(parallel, hierarchical_cp_sizes), t);
    }
    nam__arg_int(p, ab, NAM__FLAG(parallel, ep), r->ep);
    nam__arg_int(p, ab, NAM__FLAG(parallel, etp), p->etp);
    if (r->sequence_parallel) nam__arg_str(p, ab, NAM__FLAG(parallel, sequence_parallel), NULL);
    if (!r->overlap_p2p) nam__arg_str(p, ab, NAM__FLAG(parallel, overlap_p2p), NULL);
    if (!strcmp(r->order, "tp-cp-ep-pp-dp")) nam__arg_str(p, ab, NAM__FLAG(parallel, order), NULL);
    if (r->first_stage_layers) nam__arg_int(p, ab, NAM__FLAG(parallel, first_stage_layers), r->first_stage_layers);
    if (r->last_stage_layers) nam__arg_int(p, ab, NAM__FLAG(parallel, last_stage_layers), r->last_stage_layers);
    nam__arg_int(p, ab, NAM__FLAG(model, hidden_size), r->hidden_size);
    nam__arg_int(p, ab, NAM__FLAG(model, ffn_hidden_size), p->ffn_hidden_size);
    nam__arg_int(p, ab, NAM__FLAG(model, num_attention_heads), r->num_attention_heads);
    if (r->num_query_groups > 0) {
        nam__arg_str(p, ab, NAM__XFLAG(GROUP_QUERY_ATTENTION), NULL);
        nam__arg_int(p, ab, NAM__FLAG(model, num_query_groups), r->num_query_groups);
    }
    nam__arg_int(p, ab, NAM__FLAG(model, kv_channels), p->kv_channels);
    nam__arg_int(p, ab, NAM__FLAG(model, seq_length), r->seq_length);
    nam__arg_int(p, ab, NAM__FLAG(model, max_position_embeddings), r->max_position_embeddings ? r->max_position_embeddings : r->seq_length);
    nam__arg_str(p, ab, NAM__FLAG(model, position_embedding_type), r->position_embedding_type);
    nam__arg_str(p, ab, NAM__FLAG(model, normalization), r->normalization);
    if (!strcmp(r->activation, "swiglu")) nam__arg_str(p, ab, NAM__XFLAG(SWIGLU), NULL);
    if (!strcmp(r->activation, "squared_relu")) nam__arg_str(p, ab, NAM__XFLAG(SQUARED_RELU), NULL);
    if (r->untie_embeddings) nam__arg_str(p, ab, NAM__FLAG(model, untie_embeddings), NULL);
    if (r->disable_bias_linear) nam__arg_str(p, ab, NAM__FLAG(model, disable_bias_linear), NULL);
    if (r->mla) {
        nam__arg_str(p, ab, NAM__FLAG(model, mla), NULL);
        if (r->q_lora_rank) nam__arg_int(p, ab, NAM__FLAG(mla, q_lora_rank), r->q_lora_rank);
        nam__arg_int(p, ab, NAM__FLAG(mla, kv_lora_rank), r->kv_lora_rank);
        nam__arg_int(p, ab, NAM__FLAG(mla, qk_head_dim), r->qk_head_dim);
        nam__arg_int(p, ab, NAM__FLAG(mla, qk_pos_emb_head_dim), r->qk_pos_emb_head_dim);
        nam__arg_int(p, ab, NAM__FLAG(mla, v_head_dim), r->v_head_dim);
    }
    if (hasD) {   /* transformer_config.py:1510 and 3162; dsa.py's indexer needs its dims */
        nam__arg_str(p, ab, NAM__XFLAG(EXPERIMENTAL_ATTENTION_VARIANT), "dsa");
        nam__arg_int(p, ab, NAM__FLAG(dsa, indexer_n_heads), r->dsa_indexer_n_heads);
        nam__arg_int(p, ab, NAM__FLAG(dsa, indexer_head_dim), r->dsa_indexer_head_dim);
        nam__arg_int(p, ab, NAM__FLAG(dsa, indexer_topk), r->dsa_indexer_topk);
        nam__arg_fmt(p, ab, NAM__FLAG(dsa, indexer_loss_coeff), "%g", r->dsa_indexer_loss_coeff);
        nam__arg_str(p, ab, NAM__FLAG(implementation, rope_fusion), NULL);
        if (r->rope_fusion)
            nam__decision_add(p, 0, 0, "nam adds --no-rope-fusion: the plan has DSA layers ('D') and Megatron asserts RoPE fusion off for DSAttention (transformer_config.py:3163)");
        nam__decision_add(p, 0, 0, "nam adds --experimental-attention-variant dsa (Megatron also infers it from 'D', argument_utils.py:349) and the --dsa-indexer-* dims from the [dsa] section; without them the DSA indexer cannot be built (dsa.py:1127)");
    }
    if (nam__emits_moe(p)) {
        nam__arg_int(p, ab, NAM__FLAG(moe, num_experts), r->num_experts);
        nam__arg_int(p, ab, NAM__FLAG(moe, router_topk), r->router_topk);
        nam__arg_int(p, ab, NAM__FLAG(moe, ffn_hidden_size), r->moe_ffn_hidden_size ? r->moe_ffn_hidden_size : p->ffn_hidden_size);
        if (r->shared_expert_size) nam__arg_int(p, ab, NAM__FLAG(moe, shared_expert_size), r->shared_expert_size);
        nam__arg_str(p, ab, NAM__FLAG(moe, score_function), r->score_function);
        if (r->pre_softmax) nam__arg_str(p, ab, NAM__FLAG(moe, pre_softmax), NULL);
        if (r->expert_bias) nam__arg_str(p, ab, NAM__FLAG(moe, expert_bias), NULL);
        nam__arg_str(p, ab, NAM__FLAG(moe, load_balancing), r->load_balancing);
        nam__arg_fmt(p, ab, NAM__FLAG(moe, aux_loss_coeff), "%g", r->aux_loss_coeff);
        nam__arg_str(p, ab, NAM__FLAG(moe, dispatcher), r->dispatcher);
        if (r->grouped_gemm) nam__arg_str(p, ab, NAM__FLAG(moe, grouped_gemm), NULL);
        if (strcmp(r->moe_router_dtype, "none")) nam__arg_str(p, ab, NAM__FLAG(precision, moe_router_dtype), r->moe_router_dtype);
        if (r->capacity_factor > 0) nam__arg_fmt(p, ab, NAM__FLAG(moe, capacity_factor), "%g", r->capacity_factor);
        if (r->pad_to_capacity) nam__arg_str(p, ab, NAM__FLAG(moe, pad_to_capacity), NULL);
    }
    if (p->pattern.mtp_depths > 0) {
        nam__arg_int(p, ab, NAM__FLAG(mtp, depths), p->pattern.mtp_depths);
        nam__arg_fmt(p, ab, NAM__FLAG(mtp, loss_scaling_factor), "%g", r->mtp_loss_scaling_factor);
    }
    if (hasM) {
        nam__arg_int(p, ab, NAM__FLAG(mamba, state_dim), r->mamba_state_dim);
        nam__arg_int(p, ab, NAM__FLAG(mamba, head_dim), r->mamba_head_dim);
        nam__arg_int(p, ab, NAM__FLAG(mamba, num_groups), r->mamba_num_groups);
        nam__arg_int(p, ab, NAM__FLAG(mamba, num_heads), p->mamba_num_heads);
    }
    if (hasG) {
        nam__arg_int(p, ab, NAM__FLAG(gdn, num_key_heads), r->gdn_num_key_heads);
        nam__arg_int(p, ab, NAM__FLAG(gdn, num_value_heads), r->gdn_num_value_heads);
        nam__arg_int(p, ab, NAM__FLAG(gdn, key_head_dim), r->gdn_key_head_dim);
        nam__arg_int(p, ab, NAM__FLAG(gdn, value_head_dim), r->gdn_value_head_dim);
        nam__arg_int(p, ab, NAM__FLAG(gdn, conv_kernel_dim), r->gdn_conv_kernel_dim);
    }
    if (r->distributed_optimizer) nam__arg_str(p, ab, NAM__FLAG(parallel, distributed_optimizer), NULL);
    if (strcmp(r->recompute_granularity, "none")) {
        nam__arg_str(p, ab, NAM__FLAG(memory, recompute_granularity), r->recompute_granularity);
        if (!strcmp(r->recompute_granularity, "full")) {
            nam__arg_str(p, ab, NAM__FLAG(memory, recompute_method), r->recompute_method);
            nam__arg_int(p, ab, NAM__FLAG(memory, recompute_num_layers), r->recompute_num_layers);
        } else if (r->recompute_modules[0]) {
            char mods[NAM_STR_MAX], *c;
            snprintf(mods, sizeof mods, "%s", r->recompute_modules);
            for (c = mods; *c; c++) if (*c == ',') *c = ' ';
            nam__arg_str(p, ab, NAM__FLAG(memory, recompute_modules), mods);
        }
    }
    nam__arg_int(p, ab, NAM__FLAG(batch, micro_batch_size), r->micro_batch_size);
    nam__arg_int(p, ab, NAM__FLAG(batch, global_batch_size), p->global_batch_size);
    if (!strcmp(r->dtype, "bf16")) nam__arg_str(p, ab, NAM__XFLAG(BF16), NULL);
    if (!strcmp(r->dtype, "fp16")) nam__arg_str(p, ab, NAM__XFLAG(FP16), NULL);
    if (strcmp(r->fp8, "none")) {
        nam__arg_str(p, ab, NAM__FLAG(precision, fp8), r->fp8);
        nam__arg_str(p, ab, NAM__FLAG(precision, fp8_recipe), r->fp8_recipe);
        if (!strcmp(r->fp8_recipe, "delayed")) {
            nam__arg_int(p, ab, NAM__FLAG(precision, fp8_amax_history_len), r->fp8_amax_history_len);
            nam__arg_str(p, ab, NAM__FLAG(precision, fp8_amax_compute_algo), r->fp8_amax_compute_algo);
        }
    }
    nam__arg_str(p, ab, NAM__FLAG(cuda_graph, impl), r->cuda_graph_impl);
    if (strcmp(r->cuda_graph_impl, "none") && r->cuda_graph_warmup_steps != 3) nam__arg_int(p, ab, NAM__FLAG(cuda_graph, warmup_steps), r->cuda_graph_warmup_steps);
    if (!strcmp(r->cuda_graph_impl, "full_iteration")) {
        nam__arg_str(p, ab, NAM__XFLAG(NO_CHECK_FOR_NAN), NULL);
        nam__decision_add(p, 0, 0, "nam adds --no-check-for-nan-in-loss-and-grad: Megatron requires it with --cuda-graph-impl full_iteration (arguments.py:1236)");
    }
    if (r->cuda_graph_modules[0]) {
        char mods[NAM_STR_MAX];
        char *c;
        snprintf(mods, sizeof mods, "%s", r->cuda_graph_modules);
        for (c = mods; *c; c++) if (*c == ',') *c = ' ';
        nam__arg_str(p, ab, NAM__FLAG(cuda_graph, modules), mods);
    }
    st = nam__sb_finish(&ab->text, &p->arg_values, err);
    if (st) return st;
    for (i = 0; i < p->num_args; i++) p->args[i].value = ab->off[i] >= 0 ? p->arg_values + ab->off[i] : NULL;
    return NAM_OK;
}

/* Error at a recipe key that holds a layer list (file:line:column when it came from a file). */
static nam_status nam__key_err(const nam_plan *p, nam_error *err, nam_status st, int slot) {
    const nam_recipe *r = &p->recipe;
    if (err && slot >= 0 && r->key_pos[slot].line > 0)
        return nam__recipe_err_at(err, st, r->key_pos[slot].source, -1, r->key_pos[slot].line, r->key_pos[slot].column);
    return st;
}

static void nam__ints_text(char *out, size_t n, const int *v, int count) {
    size_t k = 0;
    int i;
    out[0] = 0;
    for (i = 0; i < count && k < n; i++) k += NAM__CAST(size_t, snprintf(out + k, n - k, i ? ",%d" : "%d", v[i]));
}

/* One layer-placed feature: every listed layer must exist and be of family `fam`. */
static nam_status nam__feature_layers(nam_plan *p, nam_error *err, const char *key, int slot, const int *layers, int n,
                                      char fam, int bit, int seam) {
    int i, depth = p->pattern.depth;
    if (n == 0) {
        nam__err(err, NAM_ERR_CONFLICT, "%s.enabled = true but %s.layers is empty (name the 0-based layers that carry it)", key, key);
        return nam__key_err(p, err, NAM_ERR_CONFLICT, slot);
    }
    for (i = 0; i < n; i++) {
        int L = layers[i];
        if (L >= depth) {
            nam__err(err, NAM_ERR_RANGE, "%s.layers entry %d: layer %d is beyond the pattern's depth %d", key, i + 1, L, depth);
            return nam__key_err(p, err, NAM_ERR_RANGE, slot);
        }
        if (p->layers[L].family != fam) {
            nam__err(err, NAM_ERR_CONFLICT, "%s.layers entry %d: layer %d is family %c, but %s attaches to %c layers only", key, i + 1, L, p->layers[L].family, key, fam);
            return nam__key_err(p, err, NAM_ERR_CONFLICT, slot);
        }
        p->layers[L].features |= bit;
        arrput(p->seams[seam].layers, L);
        p->seams[seam].num_layers++;
    }
    return NAM_OK;
}

/* Feature placements: each enabled feature becomes a NAM_SEAM_FEATURE seam. */
static nam_status nam__features(nam_plan *p, nam_error *err) {
    const nam_recipe *r = &p->recipe;
    char d[512], o[NAM_MAX_LIST * 4];
    nam_status st;
    int k;
    if (r->engram_enabled) {
        nam__ints_text(o, sizeof o, r->engram_ngram_orders, r->num_engram_ngram_orders);
        snprintf(d, sizeof d, "ngram_orders=%.80s bottleneck_dim=%d dropout=%g gated=%s gate_sqrt_compress=%s conv_kernel=%d conv_impl=%s",
                 o, r->engram_bottleneck_dim, r->engram_dropout, r->engram_gated ? "true" : "false", r->engram_gate_sqrt_compress ? "true" : "false",
                 r->engram_conv_kernel, r->engram_conv_impl);
        k = nam__seam_add(p, "engram", 'A', NAM_SEAM_FEATURE, "engram", "layers", d, "Engram (n-gram memory) has no Megatron-LM module or flag",
                          "an Engram block on these attention layers in the hybrid layer spec (model.spec), with the settings in detail");
        if ((st = nam__feature_layers(p, err, "engram", NAM__POS_ENGRAM, r->engram_layers, r->num_engram_layers, 'A', NAM_FEATURE_ENGRAM, k))) return st;
    }
    if (r->mhc_enabled) {
        snprintf(d, sizeof d, "n_streams=%d sinkhorn_iters=%d temperature=%g epsilon=%g blend_alpha=%g dynamic=%s dynamic_mode=%s fused_ops=%s recompute_group_size=%d",
                 r->mhc_n_streams, r->mhc_sinkhorn_iters, r->mhc_temperature, r->mhc_epsilon, r->mhc_blend_alpha, r->mhc_dynamic ? "true" : "false",
                 r->mhc_dynamic_mode, r->mhc_fused_ops ? "true" : "false", r->mhc_recompute_group_size);
        k = nam__seam_add(p, "mhc", 'A', NAM_SEAM_FEATURE, "mhc", "layers", d, "mHC (manifold hyper-connections) has no Megatron-LM module or flag",
                          "mHC residual streams around these attention layers in the hybrid layer spec (model.spec), with the settings in detail");
        if ((st = nam__feature_layers(p, err, "mhc", NAM__POS_MHC, r->mhc_layers, r->num_mhc_layers, 'A', NAM_FEATURE_MHC, k))) return st;
    }
    if (r->mod_enabled) {
        snprintf(d, sizeof d, "capacity=%g aux_loss_weight=%g routing=%s target=%s scorer=%s selector=%s schedule=%s executor=%s ffn_only=%s skip_first_n=%d skip_mamba=%s",
                 r->mod_capacity, r->mod_aux_loss_weight, r->mod_routing, r->mod_target, r->mod_scorer, r->mod_selector, r->mod_schedule,
                 r->mod_executor, r->mod_ffn_only ? "true" : "false", r->mod_skip_first_n, r->mod_skip_mamba ? "true" : "false");
        k = nam__seam_add(p, "mod", 'E', NAM_SEAM_FEATURE, "mod", "layers", d, "MoD (mixture of depths) has no Megatron-LM module or flag",
                          "MoD token routing around these expert layers in the hybrid layer spec (model.spec), with the settings in detail");
        if ((st = nam__feature_layers(p, err, "mod", NAM__POS_MOD, r->mod_layers, r->num_mod_layers, 'E', NAM_FEATURE_MOD, k))) return st;
    }
    if (r->moda_enabled)
        nam__seam_add(p, "moda", 0, NAM_SEAM_FEATURE, "moda", "model", "enabled=true", "MoDA (mixture-of-depths attention) has no Megatron-LM module or flag",
                      "MoDA in the model built by the custom spec / model provider");
    if (r->ngram_hash_enabled) {
        nam__ints_text(o, sizeof o, r->ngram_hash_orders, r->num_ngram_hash_orders);
        snprintf(d, sizeof d, "orders=%.80s heads=%d table_size=%d embed_dim=%d offload=%s (added to the token embeddings)",
                 o, r->ngram_hash_heads, r->ngram_hash_table_size, r->ngram_hash_embed_dim, r->ngram_hash_offload ? "true" : "false");
        nam__seam_add(p, "ngram-hash-embedding", 0, NAM_SEAM_FEATURE, "ngram_hash", "input embedding", d,
                      "the n-gram hash embedding has no Megatron-LM module or flag", "an embedding module that adds the n-gram hash tables to the token embeddings");
    }
    if (r->structure_enabled) {
        snprintf(d, sizeof d, "components=%s max_ast_depth=%d max_sibling_index=%d num_node_types=%d bottleneck_dim=%d relation_bias=%s tree_ffn=%s tree_ffn_steps=%d tree_ffn_dropout=%g platform_embed=%s",
                 r->structure_components, r->structure_max_ast_depth, r->structure_max_sibling_index, r->structure_num_node_types,
                 r->structure_bottleneck_dim, r->structure_relation_bias ? "true" : "false", r->structure_tree_ffn ? "true" : "false",
                 r->structure_tree_ffn_steps, r->structure_tree_ffn_dropout, r->structure_platform_embed ? "true" : "false");
        nam__seam_add(p, "structure-embedding", 0, NAM_SEAM_FEATURE, "structure", "input embedding", d,
                      "the structure (AST) embedding has no Megatron-LM module or flag", "an embedding module that adds the structure embedding to the token embeddings (and the structure inputs in the data path)");
    }
    return NAM_OK;
}

/* >>preflight ------------------------------------------------------------------------- */
/* Parameters by module shape (Megatron-LM d98e8a64 modules; nam56r-blocks.md for Mamba-3 and
   M2RNN), split the way Megatron shards them: tensor-parallel, replicated (norms, router)
   and expert (routed experts, over EP x ETP). Biases count only with linear bias on. */
static const char *const nam__family_names[NAM_FAM_COUNT] = {
    "attention", "mla", "dsa", "mamba2", "mamba3", "gdn", "m2rnn", "mlp", "moe", "embedding", "output", "mtp"
};

NAM__DEF const char *nam_family_name(int f) { return f >= 0 && f < NAM_FAM_COUNT ? nam__family_names[f] : NULL; }

typedef struct nam__lp { double tp, rep, exp, exp_active; int fam; } nam__lp;

/* The mixer a layer runs: its native symbol, or for R the M2RNN mixer (bound to M or unmapped). */
static int nam__layer_family(const nam_plan *p, char fam, char sym) {
    switch (sym) {
    case '*': return NAM_FAM_ATTENTION;
    case '+': return NAM_FAM_MLA;
    case 'D': return NAM_FAM_DSA;
    case '-': return NAM_FAM_MLP;
    case 'E': return NAM_FAM_MOE;
    case 'G': return NAM_FAM_GDN;
    case 'M': return fam == 'R' ? NAM_FAM_M2RNN : !strcmp(p->recipe.mamba_impl, "mamba3") ? NAM_FAM_MAMBA3 : NAM_FAM_MAMBA2;
    default: return fam == 'R' ? NAM_FAM_M2RNN : -1;   /* declared families: unknown shapes */
    }
}

static nam__lp nam__layer_params(const nam_plan *p, int famidx) {
    const nam_recipe *r = &p->recipe;
    double h = r->hidden_size, ns = strcmp(r->normalization, "LayerNorm") ? 1 : 2, b = r->disable_bias_linear ? 0 : 1;
    double sw = strcmp(r->activation, "swiglu") ? 1 : 2;
    nam__lp o;
    memset(&o, 0, sizeof o);
    o.fam = famidx;
    if (famidx < 0) return o;
    o.rep = h * ns;   /* every hybrid sublayer's input norm (fused into its first linear in TE) */
    switch (famidx) {
    case NAM_FAM_ATTENTION: {
        double n = r->num_attention_heads, g = r->num_query_groups ? r->num_query_groups : n, kv = p->kv_channels;
        o.tp = h * kv * (n + 2 * g) + b * kv * (n + 2 * g) + n * kv * h + b * h;
        break;
    }
    case NAM_FAM_MLA: case NAM_FAM_DSA: {
        double n = r->num_attention_heads, qk = r->qk_head_dim, pos = r->qk_pos_emb_head_dim, v = r->v_head_dim, ql = r->q_lora_rank, kl = r->kv_lora_rank;
        o.tp = (ql ? ql * (h + n * (qk + pos) + ns) : h * n * (qk + pos)) + kl * (h + n * (qk + v) + ns) + h * pos + n * v * h;
        if (famidx == NAM_FAM_DSA) {   /* indexer: q up (q_lora or h), k proj, k LayerNorm, head weights */
            double ni = r->dsa_indexer_n_heads, di = r->dsa_indexer_head_dim;
            o.rep += (ql ? ql : h) * ni * di + h * di + 2 * di + h * ni;
        }
        break;
    }
    case NAM_FAM_MLP: {
        double f = p->ffn_hidden_size;
        o.tp = h * f * sw + f * h + b * (f * sw + h);
        break;
    }
    case NAM_FAM_MOE: {
        double e = r->num_experts, k = r->router_topk, mf = r->moe_ffn_hidden_size ? r->moe_ffn_hidden_size : p->ffn_hidden_size, sh = r->shared_expert_size;
        double one = h * mf * sw + mf * h + b * (mf * sw + h);
        o.rep += h * e + b * e;
        o.exp = e * one;
        o.exp_active = k * one;
        o.tp = sh ? h * sh * sw + sh * h + b * (sh * sw + h) : 0;
        break;
    }
    case NAM_FAM_MAMBA2: {
        double H = p->mamba_num_heads, P = r->mamba_head_dim, di = H * P, G = r->mamba_num_groups, N = r->mamba_state_dim;
        o.tp = h * (2 * di + 2 * G * N + H) + b * (2 * di + 2 * G * N + H)   /* in_proj */
             + (di + 2 * G * N) * 4 + (di + 2 * G * N)                         /* conv1d, kernel 4, bias */
             + 3 * H + di + di * h + b * h;                                    /* dt_bias, A_log, D; gated norm; out_proj */
        break;
    }
    case NAM_FAM_MAMBA3: {
        double H = p->mamba_num_heads, P = r->mamba_head_dim, di = H * P, G = r->mamba_num_groups, N = r->mamba_state_dim;
        double R = r->mamba3_mimo ? r->mamba3_mimo_rank : 1, nth = floor(N * r->mamba3_rope_fraction) / 2;
        nth = floor(nth);
        o.tp = h * (2 * di + 2 * N * G * R + 3 * H + nth) + 2 * H + 2 * H * R * N   /* in_proj; dt_bias, D; B/C biases */
             + (r->mamba3_mimo ? 3 * H * R * P : 0) + di * h;                       /* MIMO x/z/o; out_proj */
        break;
    }
    case NAM_FAM_GDN: {
        double qk = (double)r->gdn_key_head_dim * r->gdn_num_key_heads, v = (double)r->gdn_value_head_dim * r->gdn_num_value_heads, nv = r->gdn_num_value_heads;
        o.tp = h * (2 * qk + 2 * v + 2 * nv) + b * (2 * qk + 2 * v + 2 * nv) + (2 * qk + v) * r->gdn_conv_kernel_dim + 2 * nv + v * h + b * h;
        o.rep += r->gdn_value_head_dim;   /* out_norm over the value head dim */
        break;
    }
    case NAM_FAM_M2RNN: {
        double K = r->m2rnn_k_head_dim, V = r->m2rnn_v_head_dim, H = p->m2rnn_num_heads, c = 2 * K + H * V;
        o.tp = h * (2 * K + 2 * H * V + H) + c * r->m2rnn_conv_kernel + c + 2 * H + H * V * V + (r->m2rnn_residual ? H * V : 0) + H * V + H * V * h;
        break;
    }
    default: break;
    }
    return o;
}

/* Megatron's FLOPs helpers (training.py num_floating_point_operations), forward only. */
static double nam__attn_flops(double T, double S2, double h, double n, double g, double kv) {
    double pr = kv * n / h;
    return 4 * T * h * pr * (h + h * (g / n)) + 2 * S2 * h * pr;
}
static double nam__mamba_flops_megatron(double T, double h, double N, double G, double H) {
    double d_in = 2 * h;   /* Megatron's estimate fixes d_in = 2h */
    return 2 * T * h * (2 * d_in + 2 * G * N + H) + 7 * T * d_in * N + 2 * T * d_in * h;
}
static double nam__gdn_flops(const nam_recipe *r, double T, double h) {
    double qk = (double)r->gdn_key_head_dim * r->gdn_num_key_heads, v = (double)r->gdn_value_head_dim * r->gdn_num_value_heads, nv = r->gdn_num_value_heads;
    return 2 * T * (h * (2 * qk + 2 * v + 2 * nv) + r->gdn_conv_kernel_dim * (2 * qk + v) + nv * (double)r->gdn_value_head_dim * r->gdn_value_head_dim * 4 + h * v);
}

/* Forward FLOPs of one layer of family f over T tokens (S2 = sum of squared lengths). */
static double nam__layer_flops(const nam_plan *p, int f, double T, double S2) {
    const nam_recipe *r = &p->recipe;
    double h = r->hidden_size, sw = strcmp(r->activation, "swiglu") ? 1 : 1.5;
    switch (f) {
    case NAM_FAM_ATTENTION:
        return nam__attn_flops(T, S2, h, r->num_attention_heads, r->num_query_groups ? r->num_query_groups : r->num_attention_heads, p->kv_channels);
    case NAM_FAM_MLA: case NAM_FAM_DSA: {   /* Megatron's MLA terms; DSA counted dense (an upper bound) plus its indexer */
        double n = r->num_attention_heads, qk = r->qk_head_dim, pos = r->qk_pos_emb_head_dim, v = r->v_head_dim, ql = r->q_lora_rank, kl = r->kv_lora_rank;
        double q = ql ? ql * (h + n * (qk + pos) + 1) : h * n * (qk + pos);
        double fl = 2 * T * (q + kl * (h + n * (qk + v) + 1) + h * pos + n * v * h) + 2 * S2 * (n * (qk + pos) / 2 + n * v / 2);
        if (f == NAM_FAM_DSA) {
            double ni = r->dsa_indexer_n_heads, di = r->dsa_indexer_head_dim;
            fl += 2 * T * ((ql ? ql : h) * ni * di + h * di + h * ni) + S2 * ni * di;
        }
        return fl;
    }
    case NAM_FAM_MLP: return 4 * sw * T * h * p->ffn_hidden_size;
    case NAM_FAM_MOE: {
        double mf = r->moe_ffn_hidden_size ? r->moe_ffn_hidden_size : p->ffn_hidden_size;
        return 4 * T * h * mf * r->router_topk * sw + 4 * T * h * r->shared_expert_size * sw;
    }
    case NAM_FAM_MAMBA2: return nam__mamba_flops_megatron(T, h, r->mamba_state_dim, r->mamba_num_groups, p->mamba_num_heads);
    case NAM_FAM_MAMBA3: {
        double H = p->mamba_num_heads, di = H * r->mamba_head_dim, N = r->mamba_state_dim, G = r->mamba_num_groups;
        double R = r->mamba3_mimo ? r->mamba3_mimo_rank : 1, nth = floor(floor(N * r->mamba3_rope_fraction) / 2);
        return 2 * T * h * (2 * di + 2 * N * G * R + 3 * H + nth) + 7 * T * di * N * R + 2 * T * di * h;
    }
    case NAM_FAM_GDN: return nam__gdn_flops(r, T, h);
    case NAM_FAM_M2RNN: {   /* per token and head: S W (2KV^2), k v^T (2KV), read-out (2KV), blend (3KV) */
        double K = r->m2rnn_k_head_dim, V = r->m2rnn_v_head_dim, H = p->m2rnn_num_heads;
        return 2 * T * h * (2 * K + 2 * H * V + H) + 2 * T * (2 * K + H * V) * r->m2rnn_conv_kernel + T * H * (2 * K * V * V + 7 * K * V) + 2 * T * H * V * h;
    }
    default: return 0;
    }
}

/* Saved activations of one layer for one microbatch, in bytes, before the TP/SP split.
   Units of s*b*h bytes (16-bit activations), as Megatron's estimator
   (theoretical_memory_usage.py compute_activation_memory, Korthikanti et al. Table 2 with
   flash attention, so no s^2 term): attention with its norm 13, dense MLP with its norm
   5 + 4*ffn/h, which add up to Megatron's 18 + 4*ffn/h per transformer layer. The other
   families are nam's own count of the tensors their backward keeps (2 bytes each): the
   layer input and its norm (2h), the input projection's output, the conv output, the mixer
   output and the gated norm's output, plus the fp32 chunk states of the scan every `chunk`
   tokens. MoE: norm + router 5, each of the top-k token copies 2 + 4*moe_ffn/h, the shared
   expert 4*shared/h. MLA/DSA are counted like attention. Under full recompute a layer keeps
   only its input (2) and one group of recompute_num_layers is rebuilt at a time. */
static double nam__layer_act(const nam_plan *p, int f, double sbh, double sb) {
    const nam_recipe *r = &p->recipe;
    double h = r->hidden_size;
    switch (f) {
    case NAM_FAM_ATTENTION: case NAM_FAM_MLA: case NAM_FAM_DSA: return 13 * sbh;
    case NAM_FAM_MLP: return (5 + 4.0 * p->ffn_hidden_size / h) * sbh;
    case NAM_FAM_MOE: {
        double mf = r->moe_ffn_hidden_size ? r->moe_ffn_hidden_size : p->ffn_hidden_size;
        double cf = r->capacity_factor > 0 && r->pad_to_capacity ? r->capacity_factor : 1;   /* padded expert inputs */
        return (5 + cf * r->router_topk * (2 + 4 * mf / h) + 4.0 * r->shared_expert_size / h) * sbh;
    }
    case NAM_FAM_MAMBA2: {   /* Megatron's MambaMixer: chunk 128 */
        double H = p->mamba_num_heads, di = H * r->mamba_head_dim, GN = (double)r->mamba_num_groups * r->mamba_state_dim;
        return 2 * sb * (2 * h + (2 * di + 2 * GN + H) + (di + 2 * GN) + 2 * di) + 4 * sb / 128 * di * r->mamba_state_dim;
    }
    case NAM_FAM_MAMBA3: {
        double H = p->mamba_num_heads, di = H * r->mamba_head_dim, N = r->mamba_state_dim, G = r->mamba_num_groups;
        double R = r->mamba3_mimo ? r->mamba3_mimo_rank : 1, nth = floor(floor(N * r->mamba3_rope_fraction) / 2);
        return 2 * sb * (2 * h + (2 * di + 2 * N * G * R + 3 * H + nth) + 2 * di) + 4 * sb / r->mamba3_chunk_size * di * N;
    }
    case NAM_FAM_GDN: {   /* chunk 64 (flash-linear-attention) */
        double qk = (double)r->gdn_key_head_dim * r->gdn_num_key_heads, v = (double)r->gdn_value_head_dim * r->gdn_num_value_heads, nv = r->gdn_num_value_heads;
        return 2 * sb * (2 * h + (2 * qk + 2 * v + 2 * nv) + (2 * qk + v) + 2 * v) + 4 * sb / 64 * nv * r->gdn_key_head_dim * r->gdn_value_head_dim;
    }
    case NAM_FAM_M2RNN: {   /* states kept every 64 tokens (cppmega's backward chunk) */
        double K = r->m2rnn_k_head_dim, V = r->m2rnn_v_head_dim, H = p->m2rnn_num_heads;
        return 2 * sb * (2 * h + (2 * K + 2 * H * V + H) + (2 * K + H * V) + 2 * H * V) + 4 * sb / 64 * H * K * V;
    }
    default: return 0;
    }
}

static void nam__preflight(nam_plan *p) {
    const nam_recipe *r = &p->recipe;
    nam_preflight *f = &p->preflight;
    double h = r->hidden_size, ns = strcmp(r->normalization, "LayerNorm") ? 1 : 2, vocab = r->vocab_size;
    double gbs = p->global_batch_size;
    double T = gbs * r->seq_length, S2 = gbs * (double)r->seq_length * r->seq_length;
    double pbytes = strcmp(r->dtype, "fp32") ? 2 : 4, obytes = pbytes == 2 ? 12 : 8;
    int i, k, pp = r->pp, last = r->pp - 1, mtp_n = p->pattern.mtp_len, depths = p->pattern.mtp_depths;
    nam_rank_memory *R = f->ranks;
    double cp_s = (double)r->seq_length / r->cp, sb = cp_s * r->micro_batch_size, sbh = sb * h, a;
    int full = !strcmp(r->recompute_granularity, "full");
    /* every layer of a family has the same shapes: compute each family once */
    nam__lp fp[NAM_FAM_COUNT];
    double ffl[NAM_FAM_COUNT], fact[NAM_FAM_COUNT];
    int done[NAM_FAM_COUNT];
    memset(done, 0, sizeof done);
    for (i = 0; i < pp; i++) { memset(&R[i], 0, sizeof R[i]); R[i].pp_rank = i; }
    /* main layers (on the pp rank that owns their stage), then the MTP depths on the last
       rank: the block's layers plus per depth two input norms, eh_proj (2h -> h) and a final norm */
    for (k = 0; k < p->layout.num_stages + depths; k++) {
        const nam_stage *st = k < p->layout.num_stages ? &p->layout.stages[k] : NULL;
        nam_rank_memory *M = &R[st ? st->pp_rank : last];
        int n = st ? st->seg.num_layers : mtp_n, j;
        nam_chunk_memory *C = st ? &f->chunks[k] : NULL;
        if (st) {
            M->num_layers += n;
            C->vp_stage = st->vp_stage;
            C->pp_rank = st->pp_rank;
            C->num_layers = n;
            C->params = C->activation_bytes = 0;
        }
        for (j = 0; j < n; j++) {
            int fam = st ? nam__layer_family(p, p->layers[st->seg.offset + j].family, p->layers[st->seg.offset + j].native)
                         : nam__layer_family(p, p->pattern.mtp[j], p->mtp_native ? p->mtp_native[j] : 0);
            nam__lp *lp;
            if (fam < 0) continue;
            if (!done[fam]) {
                fp[fam] = nam__layer_params(p, fam);
                ffl[fam] = 3 * nam__layer_flops(p, fam, T, S2);
                fact[fam] = nam__layer_act(p, fam, sbh, sb);
                done[fam] = 1;
            }
            lp = &fp[fam];
            M->params[fam] += lp->tp / r->tp + lp->rep + lp->exp / ((double)r->ep * p->etp);
            M->params_dense += lp->tp / r->tp + lp->rep;
            M->params_expert += lp->exp / ((double)r->ep * p->etp);
            f->params[fam] += lp->tp + lp->rep + lp->exp;
            f->params_active += lp->tp + lp->rep + lp->exp_active;
            f->flops[fam] += ffl[fam];
            a = fact[fam];
            M->activation_bytes += full ? 2 * sbh : a;   /* per microbatch, all chunks of the rank; MTP runs every microbatch */
            if (C) {
                C->params += lp->tp / r->tp + lp->rep + lp->exp / ((double)r->ep * p->etp);
                C->activation_bytes += full ? 2 * sbh : a;
            }
            if (st && a > M->total_bytes) M->total_bytes = a;   /* until the end: the rank's largest layer */
        }
        if (st) continue;
        R[last].params[NAM_FAM_MTP] += 2 * h * h / r->tp + 3 * h * ns;
        R[last].params_dense += 2 * h * h / r->tp + 3 * h * ns;
        f->params[NAM_FAM_MTP] += 2 * h * h + 3 * h * ns;
        f->params_active += 2 * h * h + 3 * h * ns;
        f->flops[NAM_FAM_MTP] += 3 * 2 * T * 2 * h * h;
    }
    /* embedding on the first rank; final norm and output layer on the last (a tied output
       layer is a second copy of the embedding when pp > 1) */
    R[0].params[NAM_FAM_EMBEDDING] += vocab * h / r->tp;
    R[0].params_dense += vocab * h / r->tp;
    f->params[NAM_FAM_EMBEDDING] += vocab * h;
    f->params_active += vocab * h;
    {
        double out = r->untie_embeddings || pp > 1 ? vocab * h / r->tp : 0;
        R[last].params[NAM_FAM_OUTPUT] += out + h * ns;
        R[last].params_dense += out + h * ns;
        f->params[NAM_FAM_OUTPUT] += (r->untie_embeddings ? vocab * h : 0) + h * ns;
        f->params_active += (r->untie_embeddings ? vocab * h : 0) + h * ns;
        f->flops[NAM_FAM_OUTPUT] += 3 * 2 * T * h * vocab * (1 + depths);
    }
    /* bytes: bf16/fp16 weights, fp32 main grads, fp32 master weights + two Adam moments
       (fp32 training: no master copy); the optimizer share divides over DP (expert DP for
       routed experts) with the distributed optimizer: Megatron's 18 or 6 + 12/dp */
    f->peak_rank = 0;
    for (i = 0; i < pp; i++) {
        nam_rank_memory *M = &R[i];
        double dense = M->params_dense, expert = M->params_expert;
        double odense = r->distributed_optimizer ? obytes / p->dp : obytes, oexp = r->distributed_optimizer ? obytes / p->edp : obytes;
        M->params_total = dense + expert;
        M->weight_bytes = (dense + expert) * pbytes;
        M->grad_bytes = (dense + expert) * 4;
        M->optimizer_bytes = dense * odense + expert * oexp;
        M->static_bytes = M->weight_bytes + M->grad_bytes + M->optimizer_bytes;
    }
    /* activations: each rank holds its layers' activations for every in-flight microbatch;
       1F1B: min(microbatches, pp - rank); interleaved: (pp - rank - 1) * 2 + (vpp - 1) * pp + 1
       model chunks of layers/vpp each (on rank 0 this is Megatron's 1 + (pp-1)/(pp*vpp)
       penalty); the first rank adds the embedding's (8sb + sbh) * pp terms under the same
       factor, and with pp = 1 the output layer's 4sbh(1 + vocab/h), as Megatron does. Split
       over TP with sequence parallelism; without it only Megatron's 24/34 share splits. */
    for (i = 0; i < pp; i++) {
        nam_rank_memory *M = &R[i];
        double largest = M->total_bytes, inflight, fac, split;
        (void)split;
        int vpp = p->vpp > 0 ? p->vpp : 1;
        if (p->vpp > 0) inflight = ((pp - i - 1) * 2.0 + (vpp - 1.0) * pp + 1) / vpp;
        else inflight = p->num_microbatches < pp - i ? p->num_microbatches : pp - i;
        M->in_flight = inflight;
        fac = p->vpp > 0 ? inflight / pp : (pp > 1 ? (p->num_microbatches < pp ? (double)p->num_microbatches / pp : 1) : 1);
        a = M->activation_bytes * inflight;
        if (full) a += largest * r->recompute_num_layers;   /* one group rebuilt during backward */
        if (r->sequence_parallel) {   /* compute_activation_memory: everything split over TP */
            if (i == 0) a += (8 * sb + sbh) * pp * fac;
            if (pp == 1) a += sbh * 4 * (1 + vocab / h);
            a /= r->tp;
        } else {                      /* compute_activation_memory_without_sp: 10 + 24/tp of 34 */
            split = (10.0 + 24.0 / r->tp) / 34.0;
            a *= split;
            if (i == 0) a += (8 * sb + sbh) * pp * fac;
            if (pp == 1) a += (sb * vocab / r->tp + sbh) * 2;
            a *= 1.05;                /* Megatron's 5% for temporaries */
        }
        M->activation_bytes = a;
        M->total_bytes = M->static_bytes + M->activation_bytes;
        if (M->total_bytes > R[f->peak_rank].total_bytes) f->peak_rank = i;
    }
    for (i = 0; i < NAM_FAM_COUNT; i++) { f->params_total += f->params[i]; f->flops_total += f->flops[i]; }
    f->fits = r->device_memory_gib > 0 ? R[f->peak_rank].total_bytes <= r->device_memory_gib * 1073741824.0 : -1;
    /* Megatron's hybrid formula on the native pattern: only '*' counts as attention, every 'M'
       as Mamba-2 with d_in = 2h, MTP layers included, logits with (1 + mtp) heads */
    f->flops_megatron = 0;
    if (p->native_pattern) {
        const int *c = p->mpattern.counts;
        double fw = c[NAM_MSYM_ATTENTION] * nam__attn_flops(T, S2, h, r->num_attention_heads, r->num_query_groups ? r->num_query_groups : r->num_attention_heads, p->kv_channels)
                  + c[NAM_MSYM_MLP] * nam__layer_flops(p, NAM_FAM_MLP, T, S2)
                  + c[NAM_MSYM_MAMBA] * nam__mamba_flops_megatron(T, h, r->mamba_state_dim, r->mamba_num_groups, p->mamba_num_heads)
                  + (nam__emits_moe(p) ? c[NAM_MSYM_MOE] * nam__layer_flops(p, NAM_FAM_MOE, T, S2) : 0)
                  + c[NAM_MSYM_GDN] * nam__gdn_flops(r, T, h)
                  + 2 * T * h * vocab * (1 + depths);
        f->flops_megatron = 3 * fw;
    }
    f->tflops_per_gpu = f->mfu = f->mfu_megatron = 0;
    if (r->step_time_s > 0) {
        f->tflops_per_gpu = f->flops_total / (r->step_time_s * r->world_size) / 1e12;
        if (r->peak_tflops > 0) {
            f->mfu = f->tflops_per_gpu / r->peak_tflops;
            f->mfu_megatron = f->flops_megatron / (r->step_time_s * r->world_size) / 1e12 / r->peak_tflops;
        }
    }
}

/* Settings of a section that only means something with another key: compared with the
   built-in defaults, since nam_recipe_set cannot know the order keys were set in. */
static nam_status nam__check_dependent_keys(const nam_recipe *r, nam_error *err) {
    return nam__mamba3_conflict(r, NULL, err) >= 0 ? NAM_ERR_CONFLICT : NAM_OK;
}

/* The fixed policy's Megatron args: operator choices (kernels, fusions, schedule, run
   inputs), checked like the rest, kept apart from the generated args. Built with the same
   helpers by swapping the plan's arg arrays. */
static nam_status nam__build_policy_args(nam_plan *p, nam_error *err) {
    nam__argbuf argbuf, *ab = &argbuf;
    const nam_recipe *r = &p->recipe;
    nam_arg *gen = p->args;
    char *genv = p->arg_values, *d;
    int ngen = p->num_args, i, dsa = p->native_pattern && strchr(p->native_pattern, 'D'), moe = nam__emits_moe(p);
    nam_status st;
    memset(&argbuf.text, 0, sizeof argbuf.text);
    p->args = NULL;
    p->num_args = 0;
    p->arg_values = NULL;
    nam__arg_str(p, ab, NAM__FLAG(implementation, transformer_impl), r->transformer_impl);
    nam__arg_str(p, ab, NAM__FLAG(implementation, attention_backend), r->attention_backend);
    if (r->use_flash_attn) nam__arg_str(p, ab, NAM__FLAG(implementation, use_flash_attn), NULL);
    if (!r->gradient_accumulation_fusion) nam__arg_str(p, ab, NAM__FLAG(implementation, gradient_accumulation_fusion), NULL);
    if (!r->persist_layer_norm) nam__arg_str(p, ab, NAM__FLAG(implementation, persist_layer_norm), NULL);
    if (!r->masked_softmax_fusion) nam__arg_str(p, ab, NAM__FLAG(implementation, masked_softmax_fusion), NULL);
    if (!r->rope_fusion && !dsa) nam__arg_str(p, ab, NAM__FLAG(implementation, rope_fusion), NULL);
    if (r->mla_down_proj_fusion) nam__arg_str(p, ab, NAM__FLAG(implementation, mla_down_proj_fusion), NULL);
    if (moe && r->moe_permute_fusion) nam__arg_str(p, ab, NAM__FLAG(implementation, moe_permute_fusion), NULL);
    if (moe && r->moe_router_fusion) nam__arg_str(p, ab, NAM__FLAG(implementation, moe_router_fusion), NULL);
    if (moe && r->moe_shared_expert_overlap) nam__arg_str(p, ab, NAM__FLAG(implementation, moe_shared_expert_overlap), NULL);
    if (moe && !strcmp(r->dispatcher, "flex")) nam__arg_str(p, ab, NAM__FLAG(implementation, moe_flex_backend), r->moe_flex_backend);
    if (r->train_iters) nam__arg_int(p, ab, NAM__FLAG(train, train_iters), r->train_iters);
    if (r->lr > 0) nam__arg_fmt(p, ab, NAM__FLAG(train, lr), "%g", r->lr);
    if (r->lr > 0 || r->min_lr > 0) nam__arg_fmt(p, ab, NAM__FLAG(train, min_lr), "%g", r->min_lr);
    nam__arg_str(p, ab, NAM__FLAG(train, lr_decay_style), r->lr_decay_style);
    if (r->lr_warmup_iters) nam__arg_int(p, ab, NAM__FLAG(train, lr_warmup_iters), r->lr_warmup_iters);
    nam__arg_fmt(p, ab, NAM__FLAG(train, clip_grad), "%g", r->clip_grad);
    if (r->eval_interval) nam__arg_int(p, ab, NAM__FLAG(train, eval_interval), r->eval_interval);
    nam__arg_int(p, ab, NAM__FLAG(train, eval_iters), r->eval_iters);
    nam__arg_int(p, ab, NAM__FLAG(train, log_interval), r->log_interval);
    if (r->save_interval) nam__arg_int(p, ab, NAM__FLAG(train, save_interval), r->save_interval);
    if (r->log_throughput) nam__arg_str(p, ab, NAM__FLAG(train, log_throughput), NULL);
    if (r->data_path[0]) nam__arg_str(p, ab, NAM__FLAG(data, data_path), r->data_path);
    if (r->split[0]) nam__arg_str(p, ab, NAM__FLAG(data, split), r->split);
    if (r->mock_data) nam__arg_str(p, ab, NAM__FLAG(data, mock_data), NULL);
    if (r->tokenizer_type[0]) nam__arg_str(p, ab, NAM__FLAG(data, tokenizer_type), r->tokenizer_type);
    if (r->tokenizer_model[0]) nam__arg_str(p, ab, NAM__FLAG(data, tokenizer_model), r->tokenizer_model);
    if (r->save_dir[0]) nam__arg_str(p, ab, NAM__FLAG(data, save), r->save_dir);
    if (r->load_dir[0]) nam__arg_str(p, ab, NAM__FLAG(data, load), r->load_dir);
    st = nam__sb_finish(&ab->text, &d, err);
    p->policy_args = p->args;
    p->num_policy_args = p->num_args;
    p->policy_values = d;
    p->args = gen;
    p->num_args = ngen;
    p->arg_values = genv;
    if (st) return st;
    for (i = 0; i < p->num_policy_args; i++) p->policy_args[i].value = ab->off[i] >= 0 ? p->policy_values + ab->off[i] : NULL;
    return NAM_OK;
}

NAM__DEF nam_status nam_plan_make(const nam_recipe *r, nam_plan *out, nam_error *err) {
    nam_pattern_desc pd;
    nam_layout_desc ld;
    nam_status st;
    nam_plan *p = out;
    int i, depth, attn_plain = -1, attn_mla = -1;
    char *shadow = NULL;
    nam__lower_memo memo;
    memset(memo.sym, -1, sizeof memo.sym);
    if (!out) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_plan_make: out is NULL");
    memset(out, 0, sizeof *out);
    if (!r || !r->pattern) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_plan_make: recipe or its pattern is NULL");
    st = nam__recipe_copy(&p->recipe, r, err);
    if (st) return st;
    r = &p->recipe;
    p->strict = !strcmp(r->mode, "strict");
    /* 1. the authored pattern */
    memset(&pd, 0, sizeof pd);
    pd.text = r->pattern;
    pd.tile = r->tile;
    pd.depth = r->depth;
    pd.stages = r->stages;
    pd.families = r->families;
    pd.source = r->pattern_source;
    pd.line = r->pattern_line;
    pd.column = r->pattern_column;
    st = nam_pattern_parse(&pd, &p->pattern, err);
    if (st) goto fail;
    depth = p->pattern.depth;
    if (r->mtp_depths > 0 && r->mtp_depths != p->pattern.mtp_depths) {   /* mtp.depths drives the copies */
        if (!p->pattern.mtp) { st = nam__err(err, NAM_ERR_MTP, "mtp.depths = %d, but pattern.text has no MTP block ('/' followed by its layers, e.g. /AF)", r->mtp_depths); goto fail; }
        if (p->pattern.mtp_depths != 1) {
            st = nam__err(err, NAM_ERR_MTP, "mtp.depths = %d, but pattern.text writes %d MTP copies; write the block once (or %d times)", r->mtp_depths, p->pattern.mtp_depths, r->mtp_depths);
            goto fail;
        }
        p->pattern.mtp_depths = r->mtp_depths;
    }
    st = nam__check_dependent_keys(r, err);
    if (st) goto fail;
    p->stock_spec = !strcmp(r->spec, nam__fields[NAM__F_model_spec].def);   /* the built-in default is Megatron's stock spec */
    p->m2rnn_num_heads = nam__m2rnn_heads(r);
    /* 2. bindings must name families the pattern can hold */
    {
        const char *m;
        for (m = r->map; *m; m++) {
            if ((m == r->map || m[-1] == ',') && !nam__is_family(m[0], r->families)) {
                st = nam__err(err, NAM_ERR_SYMBOL, "pattern.map binds family %c, which is neither R nor declared in pattern.families", m[0]);
                goto fail;
            }
        }
    }
    /* 3. DSA marks */
    if (r->num_dsa_layers > 0 && !r->mla) {
        st = nam__err(err, NAM_ERR_CONFLICT, "pattern.dsa_layers needs model.mla = true: D is MLA-based, and Megatron refuses plain attention '*' together with DSA 'D'");
        goto fail;
    }
    for (i = 0; i < r->num_dsa_layers; i++) {
        int L = r->dsa_layers[i];
        if (L >= depth) { nam__err(err, NAM_ERR_RANGE, "pattern.dsa_layers entry %d: layer %d is beyond depth %d", i + 1, L, depth); st = nam__key_err(p, err, NAM_ERR_RANGE, NAM__POS_DSA); goto fail; }
        if (p->pattern.layers[L].family != 'A') {
            st = nam__err(err, NAM_ERR_CONFLICT, "pattern.dsa_layers entry %d: layer %d is family %c, only A layers can be DSA", i + 1, L, p->pattern.layers[L].family);
            nam__layer_err(p, err, st, L, p->pattern.layers[L].stage, p->pattern.layers[L].column);
            goto fail;
        }
    }
    /* 4. lower every layer */
    p->layers = NAM__CAST(nam_plan_layer *, nam__alloc(sizeof(nam_plan_layer) * NAM__CAST(size_t, depth)));
    if (!p->layers) { st = nam__err(err, NAM_ERR_NOMEM, "out of memory"); goto fail; }
    for (i = 0; i < depth; i++) {
        const nam_layer *L = &p->pattern.layers[i];
        nam_plan_layer *P = &p->layers[i];
        int is_dsa = 0, k, seam, sym;
        for (k = 0; k < r->num_dsa_layers; k++) is_dsa |= r->dsa_layers[k] == i;
        if (is_dsa && p->num_dsa_capable < NAM_MAX_LIST) p->dsa_capable[p->num_dsa_capable++] = i;
        sym = nam__lower(p, &memo, L->family, i, is_dsa, &seam, err, -1, L->stage, L->column);
        if (sym < 0) { st = err ? err->code : NAM_ERR_UNSUPPORTED; nam__layer_err(p, err, st, i, L->stage, L->column); goto fail; }
        P->index = i;
        P->stage = L->stage;
        P->family = L->family;
        P->native = NAM__CAST(char, sym);
        P->seam = seam;
        P->column = L->column;
        P->features = 0;
        if (seam >= 0) { arrput(p->seams[seam].layers, i); p->seams[seam].num_layers++; }
        if (!sym) p->unresolved++;
        if (sym == '*' && attn_plain < 0) attn_plain = i;
        if ((sym == '+' || sym == 'D') && attn_mla < 0) attn_mla = i;
    }
    if (p->pattern.mtp) {
        int n = p->pattern.mtp_len, ok = 1;
        p->mtp_native = NAM__CAST(char *, nam__alloc(NAM__CAST(size_t, n) + 1));
        if (!p->mtp_native) { st = nam__err(err, NAM_ERR_NOMEM, "out of memory"); goto fail; }
        for (i = 0; i < n; i++) {
            int seam, col = p->pattern.mtp_columns[i];
            int sym = nam__lower(p, &memo, p->pattern.mtp[i], -1, 0, &seam, err, i, p->pattern.num_stages - 1, col);
            if (sym < 0) { st = err ? err->code : NAM_ERR_UNSUPPORTED; nam__layer_err(p, err, st, -1, p->pattern.num_stages - 1, col); goto fail; }
            if (seam >= 0) p->seams[seam].mtp_positions++;
            if (!sym) { ok = 0; p->unresolved += p->pattern.mtp_depths; }
            p->mtp_native[i] = NAM__CAST(char, sym ? sym : '?');
            if (sym == '*' && attn_plain < 0) attn_plain = depth + i;
            if ((sym == '+' || sym == 'D') && attn_mla < 0) attn_mla = depth + i;
        }
        p->mtp_native[n] = 0;
        if (!ok) { nam_free(p->mtp_native); p->mtp_native = NULL; }
    }
    if (attn_plain >= 0 && attn_mla >= 0) {
        st = nam__err(err, NAM_ERR_CONFLICT, "the plan mixes plain attention '*' (%s %d) with MLA/DSA (%s %d); Megatron refuses both in one model (an explicit binding to '*' while model.mla is on causes this)",
                      attn_plain < depth ? "layer" : "MTP position", attn_plain < depth ? attn_plain : attn_plain - depth,
                      attn_mla < depth ? "layer" : "MTP position", attn_mla < depth ? attn_mla : attn_mla - depth);
        goto fail;
    }
    /* feature placements, then the layer spec that must build every seam */
    st = nam__features(p, err);
    if (st) goto fail;
    if (p->strict && p->stock_spec && p->num_seams) {
        char names[200];
        size_t n = 0;
        for (i = 0; i < p->num_seams && n < sizeof names; i++)
            n += NAM__CAST(size_t, snprintf(names + n, sizeof names - n, "%s%s", i ? ", " : "", p->seams[i].name));
        st = nam__err(err, NAM_ERR_UNSUPPORTED, "strict mode: model.spec is Megatron's stock hybrid_stack_spec, which cannot build the custom seam(s) %s; set model.spec to a layer spec that supplies them", names);
        goto fail;
    }
    /* 5. the native pattern (or, while seams are unresolved, a private shadow used only to
          check the stage arithmetic; it is never emitted) */
    {
        nam__sb b;
        int s, k;
        memset(&b, 0, sizeof b);
        for (s = 0; s < p->pattern.num_stages; s++) {
            if (s) nam__sb_putc(&b, '|');
            for (i = p->pattern.stage_begin[s]; i < p->pattern.stage_begin[s + 1]; i++)
                nam__sb_putc(&b, p->layers[i].native ? p->layers[i].native : 'M');
        }
        if (p->pattern.mtp) {
            for (k = 0; k < p->pattern.mtp_depths; k++) {
                nam__sb_putc(&b, '/');
                for (i = 0; i < p->pattern.mtp_len; i++) nam__sb_putc(&b, p->mtp_native ? p->mtp_native[i] : 'M');
            }
        }
        st = nam__sb_finish(&b, &shadow, err);
        if (st) goto fail;
    }
    st = nam_megatron_parse(shadow, 0, &p->mpattern, err);
    if (st) { nam__err_prefix(err, "translated pattern: "); goto fail; }
    memset(&ld, 0, sizeof ld);
    ld.pp = r->pp;
    ld.first_stage_layers = r->first_stage_layers;
    ld.last_stage_layers = r->last_stage_layers;
    ld.no_overlap_p2p = !r->overlap_p2p;
    st = nam_megatron_layout(&p->mpattern, &ld, &p->layout, err);
    if (st) { nam__err_prefix(err, "stage layout: "); goto fail; }
    p->vpp = p->layout.vpp;
    if (p->unresolved) {
        nam_free(shadow);
        shadow = NULL;
        nam_megatron_free(&p->mpattern);
        for (i = 0; i < p->layout.num_stages; i++) p->layout.stages[i].seg.layers = NULL; /* offsets stay */
    } else {
        p->native_pattern = shadow;
        shadow = NULL;
    }
    /* 6. launch policy */
    p->ffn_hidden_size = r->ffn_hidden_size ? r->ffn_hidden_size : nam__megatron_ffn_hidden_size(r);
    if (p->ffn_hidden_size <= 0) { st = nam__err(err, NAM_ERR_RANGE, "derived ffn_hidden_size %d is not positive (model.hidden_size %d)", p->ffn_hidden_size, r->hidden_size); goto fail; }
    st = nam__check_policy(p, err);
    if (st) goto fail;
    st = nam__build_args(p, err);
    if (st) goto fail;
    st = nam__build_policy_args(p, err);
    if (st) goto fail;
    /* 7. pre-flight: parameters, static memory per pp rank, FLOPs */
    p->preflight.ranks = NAM__CAST(nam_rank_memory *, nam__alloc(sizeof(nam_rank_memory) * NAM__CAST(size_t, r->pp)));
    if (!p->preflight.ranks) { st = nam__err(err, NAM_ERR_NOMEM, "out of memory"); goto fail; }
    p->preflight.num_ranks = r->pp;
    p->preflight.chunks = NAM__CAST(nam_chunk_memory *, nam__alloc(sizeof(nam_chunk_memory) * NAM__CAST(size_t, p->layout.num_stages)));
    if (!p->preflight.chunks) { st = nam__err(err, NAM_ERR_NOMEM, "out of memory"); goto fail; }
    p->preflight.num_chunks = p->layout.num_stages;
    nam__preflight(p);
    if (p->preflight.fits == 0 && p->strict) {
        const nam_rank_memory *M = &p->preflight.ranks[p->preflight.peak_rank];
        st = nam__err(err, NAM_ERR_RANGE, "strict mode: pp rank %d needs %.1f GiB (weights %.1f, grads %.1f, optimizer %.1f, activations %.1f for %g in-flight microbatches), above preflight.device_memory_gib %g",
                      M->pp_rank, M->total_bytes / 1073741824.0, M->weight_bytes / 1073741824.0, M->grad_bytes / 1073741824.0, M->optimizer_bytes / 1073741824.0,
                      M->activation_bytes / 1073741824.0, M->in_flight, r->device_memory_gib);
        goto fail;
    }
    if (err) nam__err_reset(err);
    return NAM_OK;
fail:
    nam_free(shadow);
    nam_plan_free(p);
    return st;
}

/* >>render ----------------------------------------------------------------------------- */
NAM__DEF char *nam_shell_quote(const char *s) {
    nam__sb b;
    const char *c;
    int safe = s && *s;
    char *out = NULL;
    if (!s) return NULL;
    for (c = s; *c && safe; c++)
        safe = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || strchr("_-+./=:,@%", *c);
    memset(&b, 0, sizeof b);
    if (safe) nam__sb_puts(&b, s);
    else {
        nam__sb_putc(&b, '\'');
        for (c = s; *c; c++) {
            if (*c == '\'') nam__sb_puts(&b, "'\\''");
            else nam__sb_putc(&b, *c);
        }
        nam__sb_putc(&b, '\'');
    }
    if (nam__sb_finish(&b, &out, NULL) != NAM_OK) return NULL;
    return out;
}

static const char *nam__seam_kind_str(nam_seam_kind k) {
    return k == NAM_SEAM_UNMAPPED ? "unmapped" : k == NAM_SEAM_CUSTOM_IMPL ? "custom_impl" : "feature";
}

/* Megatron's layer_number of each 0-based index: index + 1. */
static void nam__json_layer_numbers(nam__sb *b, const int *v, int n) {
    int i;
    nam__sb_putc(b, '[');
    for (i = 0; i < n; i++) nam__sb_printf(b, i ? ",%d" : "%d", v[i] + 1);
    nam__sb_putc(b, ']');
}

static void nam__json_seams(const nam_plan *p, nam__sb *b) {
    int i;
    nam__sb_putc(b, '[');
    for (i = 0; i < p->num_seams; i++) {
        const nam_seam *s = &p->seams[i];
        nam__sb_puts(b, i ? ",\n    {" : "\n    {");
        nam__sb_puts(b, "\"name\":"); nam__sb_json_str(b, s->name);
        nam__sb_puts(b, ",\"family\":"); nam__sb_json_char(b, s->family);
        nam__sb_printf(b, ",\"kind\":\"%s\",\"mixer\":", nam__seam_kind_str(s->kind));
        nam__sb_json_str(b, s->mixer);
        nam__sb_puts(b, ",\"placement\":"); nam__sb_json_str(b, s->placement);
        nam__sb_puts(b, ",\"layers\":");
        nam__sb_json_ints(b, s->layers, s->num_layers);
        nam__sb_puts(b, ",\"layer_numbers\":");
        nam__json_layer_numbers(b, s->layers, s->num_layers);
        nam__sb_printf(b, ",\"mtp_positions\":%d,\"blocks_native_pattern\":%s,\"detail\":", s->mtp_positions, s->kind == NAM_SEAM_UNMAPPED ? "true" : "false");
        nam__sb_json_str(b, s->detail);
        nam__sb_puts(b, ",\"reason\":");
        nam__sb_json_str(b, s->reason);
        nam__sb_puts(b, ",\"runtime_must_supply\":"); nam__sb_json_str(b, s->runtime_supplies);
        nam__sb_putc(b, '}');
    }
    nam__sb_puts(b, p->num_seams ? "\n  ]" : "]");
}

/* The stock spec cannot build custom seams: said in the args and the launch contract. */
static int nam__spec_note(const nam_plan *p, char *out, size_t n) {
    int i, k = 0;
    size_t l;
    if (!p->stock_spec) return 0;
    for (i = 0; i < p->num_seams; i++) k += p->seams[i].kind != NAM_SEAM_UNMAPPED;
    if (!k) return 0;
    l = NAM__CAST(size_t, snprintf(out, n, "%s is Megatron's stock hybrid_stack_spec, which cannot build the custom seam(s)", NAM__FLAG(model, spec)));
    for (i = 0; i < p->num_seams && l < n; i++)
        if (p->seams[i].kind != NAM_SEAM_UNMAPPED) l += NAM__CAST(size_t, snprintf(out + l, n - l, " %s", p->seams[i].name));
    if (l < n) snprintf(out + l, n - l, "; set model.spec to a layer spec that supplies them (strict mode refuses this plan)");
    return 1;
}

static void nam__json_decisions(const nam_plan *p, nam__sb *b) {
    int i;
    nam__sb_putc(b, '[');
    for (i = 0; i < p->num_decisions; i++) {
        nam__sb_puts(b, i ? ",{\"family\":" : "{\"family\":");
        nam__sb_json_char(b, p->decisions[i].family);
        nam__sb_puts(b, ",\"symbol\":"); nam__sb_json_char(b, p->decisions[i].symbol);
        nam__sb_puts(b, ",\"decision\":"); nam__sb_json_str(b, p->decisions[i].what);
        nam__sb_putc(b, '}');
    }
    nam__sb_putc(b, ']');
}

static void nam__json_argv(const nam_arg *args, int num, nam__sb *b) {
    int i;
    nam__sb_putc(b, '[');
    for (i = 0; i < num; i++) {
        const char *v = args[i].value;
        nam__sb_puts(b, i ? ",\n    " : "\n    ");
        nam__sb_json_str(b, args[i].flag);
        while (v) {                           /* one argv word per space-separated token */
            const char *e = strchr(v, ' ');
            nam__sb_putc(b, ',');
            nam__sb_json_strn(b, v, e ? NAM__CAST(size_t, e - v) : strlen(v));
            v = e ? e + 1 : NULL;
        }
    }
    nam__sb_puts(b, "\n  ]");
}

static void nam__json_family_indices(const nam_plan *p, nam__sb *b, char fam) {
    int i, first = 1;
    nam__sb_putc(b, '[');
    for (i = 0; i < p->pattern.depth; i++)
        if (p->layers[i].family == fam) { nam__sb_printf(b, first ? "%d" : ",%d", i); first = 0; }
    nam__sb_putc(b, ']');
}

static void nam__json_stages(const nam_plan *p, nam__sb *b) {
    int i, k;
    nam__sb_putc(b, '[');
    for (i = 0; i < p->layout.num_stages; i++) {
        const nam_stage *S = &p->layout.stages[i];
        nam__sb_printf(b, "%s{\"vp_stage\":%d,\"pp_rank\":%d,\"offset\":%d,\"num_layers\":%d,\"layers\":",
                       i ? ",\n    " : "\n    ", S->vp_stage, S->pp_rank, S->seg.offset, S->seg.num_layers);
        if (S->seg.layers) nam__sb_json_strn(b, S->seg.layers, NAM__CAST(size_t, S->seg.num_layers));
        else {   /* authored letters for the stage while seams are unresolved */
            nam__sb_putc(b, '"');
            for (k = 0; k < S->seg.num_layers; k++) nam__sb_putc(b, p->layers[S->seg.offset + k].family);
            nam__sb_puts(b, "\",\"authored\":true");
        }
        nam__sb_putc(b, '}');
    }
    nam__sb_puts(b, "\n  ]");
}

/* The launcher profile's coordinates: each set of layers as 0-based `index` and Megatron's
   1-based `layer_number`; DSA layers also as `attention_rank`, the rank among A layers. */
static void nam__json_coordinates(const nam_plan *p, nam__sb *b) {
    int i, k, n = 0, *idx = NULL;
    idx = NAM__CAST(int *, nam__alloc(sizeof(int) * NAM__CAST(size_t, p->pattern.depth + 1)));
    if (!idx) { b->oom = 1; return; }
    nam__sb_puts(b, ",\n    \"coordinates\": {\n      \"r_layers\": {\"index\": ");
    for (i = 0; i < p->pattern.depth; i++) if (p->layers[i].family == 'R') idx[n++] = i;
    nam__sb_json_ints(b, idx, n);
    nam__sb_puts(b, ", \"layer_number\": ");
    nam__json_layer_numbers(b, idx, n);
    nam__sb_puts(b, "},\n      \"dsa_layers\": {\"index\": ");
    nam__sb_json_ints(b, p->dsa_capable, p->num_dsa_capable);
    nam__sb_puts(b, ", \"layer_number\": ");
    nam__json_layer_numbers(b, p->dsa_capable, p->num_dsa_capable);
    for (k = 0, n = 0; k < p->num_dsa_capable; k++) {
        int a = 0;
        for (i = 0; i < p->dsa_capable[k]; i++) a += p->layers[i].family == 'A';
        idx[n++] = a;
    }
    nam__sb_puts(b, ", \"attention_rank\": ");
    nam__sb_json_ints(b, idx, n);
    nam__sb_puts(b, "},\n      \"seams\": [");
    for (i = 0; i < p->num_seams; i++) {
        const nam_seam *s = &p->seams[i];
        nam__sb_puts(b, i ? ",\n        {\"name\": " : "\n        {\"name\": ");
        nam__sb_json_str(b, s->name);
        nam__sb_puts(b, ", \"placement\": ");
        nam__sb_json_str(b, s->placement);
        nam__sb_puts(b, ", \"index\": ");
        nam__sb_json_ints(b, s->layers, s->num_layers);
        nam__sb_puts(b, ", \"layer_number\": ");
        nam__json_layer_numbers(b, s->layers, s->num_layers);
        nam__sb_printf(b, ", \"mtp_positions\": %d}", s->mtp_positions);
    }
    nam__sb_puts(b, p->num_seams ? "\n      ]\n    }" : "]\n    }");
    nam_free(idx);
}

static void nam__json_fams(nam__sb *b, const double *v) {
    int i, first = 1;
    nam__sb_putc(b, '{');
    for (i = 0; i < NAM_FAM_COUNT; i++)
        if (v[i] != 0) { nam__sb_printf(b, "%s\"%s\": %.17g", first ? "" : ", ", nam__family_names[i], v[i]); first = 0; }
    nam__sb_putc(b, '}');
}

static void nam__json_preflight(const nam_plan *p, nam__sb *b) {
    const nam_preflight *f = &p->preflight;
    int i;
    nam__sb_printf(b, ",\n  \"preflight\": {\n    \"params_total\": %.17g, \"params_active\": %.17g,\n    \"params\": ", f->params_total, f->params_active);
    nam__json_fams(b, f->params);
    nam__sb_printf(b, ",\n    \"flops_per_step\": %.17g, \"flops_megatron\": %.17g,\n    \"flops\": ", f->flops_total, f->flops_megatron);
    nam__json_fams(b, f->flops);
    nam__sb_printf(b, ",\n    \"step_time_s\": %g, \"tflops_per_gpu\": %g, \"mfu\": %g, \"mfu_megatron\": %g,", p->recipe.step_time_s, f->tflops_per_gpu, f->mfu, f->mfu_megatron);
    nam__sb_printf(b, "\n    \"device_memory_gib\": %g, \"fits\": %s, \"peak_pp_rank\": %d, \"recompute\": \"%s\",\n    \"ranks\": [",
                   p->recipe.device_memory_gib, f->fits < 0 ? "null" : f->fits ? "true" : "false", f->peak_rank, p->recipe.recompute_granularity);
    for (i = 0; i < f->num_ranks; i++) {
        const nam_rank_memory *M = &f->ranks[i];
        nam__sb_printf(b, "%s{\"pp_rank\": %d, \"layers\": %d, \"params\": %.17g, \"params_dense\": %.17g, \"params_expert\": %.17g, \"weight_bytes\": %.17g, \"grad_bytes\": %.17g, \"optimizer_bytes\": %.17g, \"static_bytes\": %.17g, \"activation_bytes\": %.17g, \"in_flight_microbatches\": %g, \"total_bytes\": %.17g, \"params_by_family\": ",
                       i ? ",\n      " : "\n      ", M->pp_rank, M->num_layers, M->params_total, M->params_dense, M->params_expert, M->weight_bytes, M->grad_bytes, M->optimizer_bytes, M->static_bytes,
                       M->activation_bytes, M->in_flight, M->total_bytes);
        nam__json_fams(b, M->params);
        nam__sb_putc(b, '}');
    }
    nam__sb_puts(b, "\n    ],\n    \"chunks\": [");
    for (i = 0; i < f->num_chunks; i++) {
        const nam_chunk_memory *C = &f->chunks[i];
        nam__sb_printf(b, "%s{\"vp_stage\": %d, \"pp_rank\": %d, \"layers\": %d, \"params\": %.17g, \"activation_bytes_per_microbatch\": %.17g}",
                       i ? ",\n      " : "\n      ", C->vp_stage, C->pp_rank, C->num_layers, C->params, C->activation_bytes);
    }
    nam__sb_puts(b, "\n    ]\n  }");
}

NAM__DEF nam_status nam_plan_json(const nam_plan *p, int what, char **out, nam_error *err) {
    nam__sb b;
    const nam_recipe *r;
    int i, f;
    if (!p || !out || !p->layers) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_plan_json: NULL argument or empty plan");
    if (what < NAM_JSON_PLAN || what > NAM_JSON_LAUNCH) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_plan_json: unknown output kind %d", what);
    r = &p->recipe;
    memset(&b, 0, sizeof b);
    nam__sb_puts(&b, "{\n  \"nam_version\": \"" NAM_VERSION_STRING "\",\n  \"recipe\": ");
    nam__sb_json_str(&b, r->name);
    nam__sb_printf(&b, ",\n  \"mode\": \"%s\",\n  \"depth\": %d,\n  \"native_pattern\": ", p->strict ? "strict" : "plan", p->pattern.depth);
    nam__sb_json_str(&b, p->native_pattern);
    nam__sb_printf(&b, ",\n  \"unresolved_layers\": %d,\n  \"r_layer_indices\": ", p->unresolved);
    nam__json_family_indices(p, &b, 'R');
    if (what == NAM_JSON_PLAN) {
        nam__sb_puts(&b, ",\n  \"authored\": ");
        nam__sb_json_str(&b, r->pattern);
        nam__sb_printf(&b, ",\n  \"tile\": %s,\n  \"num_stages\": %d,\n  \"counts\": {", r->tile ? "true" : "false", p->pattern.num_stages);
        for (f = 0, i = 0; f < 26; f++) {
            char c = NAM__CAST(char, 'A' + f);
            if (!nam__is_family(c, r->families)) continue;
            nam__sb_printf(&b, "%s\"%c\": %d", i++ ? ", " : "", c, p->pattern.counts[f]);
        }
        nam__sb_puts(&b, "},\n  \"stage_counts\": [");
        for (i = 0; i < p->pattern.num_stages; i++) {
            int s0 = p->pattern.stage_begin[i], s1 = p->pattern.stage_begin[i + 1], k, first = 1;
            int c[26];
            memset(c, 0, sizeof c);
            for (k = s0; k < s1; k++) c[p->layers[k].family - 'A']++;
            nam__sb_printf(&b, "%s{\"stage\": %d, \"first_layer\": %d, \"num_layers\": %d, \"counts\": {", i ? ", " : "", i, s0, s1 - s0);
            for (f = 0; f < 26; f++) if (c[f]) { nam__sb_printf(&b, "%s\"%c\": %d", first ? "" : ", ", 'A' + f, c[f]); first = 0; }
            nam__sb_puts(&b, "}}");
        }
        nam__sb_puts(&b, "],\n  \"family_layer_indices\": {");
        for (f = 0, i = 0; f < 26; f++) {
            char c = NAM__CAST(char, 'A' + f);
            if (!nam__is_family(c, r->families)) continue;
            nam__sb_printf(&b, "%s\"%c\": ", i++ ? ", " : "", c);
            nam__json_family_indices(p, &b, c);
        }
        nam__sb_puts(&b, "},\n  \"layers\": [");
        for (i = 0; i < p->pattern.depth; i++) {
            const nam_plan_layer *L = &p->layers[i];
            nam__sb_printf(&b, "%s{\"index\": %d, \"family\": \"%c\", \"native\": ", i ? ",\n    " : "\n    ", L->index, L->family);
            nam__sb_json_char(&b, L->native);
            nam__sb_printf(&b, ", \"stage\": %d, \"seam\": ", L->stage);
            nam__sb_json_str(&b, L->seam >= 0 ? p->seams[L->seam].name : NULL);
            nam__sb_printf(&b, ", \"column\": %d", L->column);
            if (L->features)
                nam__sb_printf(&b, ", \"features\": [%s%s%s%s%s]", (L->features & NAM_FEATURE_ENGRAM) ? "\"engram\"" : "",
                               (L->features & NAM_FEATURE_ENGRAM) && (L->features & (NAM_FEATURE_MHC | NAM_FEATURE_MOD)) ? "," : "",
                               (L->features & NAM_FEATURE_MHC) ? "\"mhc\"" : "", (L->features & NAM_FEATURE_MHC) && (L->features & NAM_FEATURE_MOD) ? "," : "",
                               (L->features & NAM_FEATURE_MOD) ? "\"mod\"" : "");
            nam__sb_putc(&b, '}');
        }
        nam__sb_puts(&b, "\n  ],\n  \"mtp\": ");
        if (p->pattern.mtp) {
            nam__sb_puts(&b, "{\"authored\": ");
            nam__sb_json_str(&b, p->pattern.mtp);
            nam__sb_puts(&b, ", \"native\": ");
            nam__sb_json_str(&b, p->mtp_native);
            nam__sb_printf(&b, ", \"depths\": %d}", p->pattern.mtp_depths);
        } else nam__sb_puts(&b, "null");
        nam__sb_puts(&b, ",\n  \"seams\": ");
        nam__json_seams(p, &b);
        nam__sb_puts(&b, ",\n  \"decisions\": ");
        nam__json_decisions(p, &b);
        nam__sb_printf(&b, ",\n  \"pp\": %d,\n  \"vpp\": %d,\n  \"pipeline_stages\": ", r->pp, p->vpp);
        nam__json_stages(p, &b);
        nam__json_preflight(p, &b);
    } else {
        nam__sb_puts(&b, ",\n  \"native_pattern_withheld\": ");
        if (p->native_pattern) nam__sb_puts(&b, "null");
        else nam__sb_printf(&b, "\"%d layer(s) have no Megatron symbol; resolve the unmapped seams first\"", p->unresolved);
        nam__sb_puts(&b, what == NAM_JSON_ARGS ? ",\n  \"args\": " : ",\n  \"generated_native_args\": ");
        nam__json_argv(p->args, p->num_args, &b);
        if (what == NAM_JSON_ARGS) {
            nam__sb_puts(&b, ",\n  \"fixed_policy_args\": ");
            nam__json_argv(p->policy_args, p->num_policy_args, &b);
        }
        nam__sb_puts(&b, ",\n  \"custom_notes\": ");
        nam__json_seams(p, &b);
        {
            char note[600];
            nam__sb_puts(&b, ",\n  \"spec_note\": ");
            nam__sb_json_str(&b, nam__spec_note(p, note, sizeof note) ? note : NULL);
        }
        nam__sb_puts(&b, ",\n  \"decisions\": ");
        nam__json_decisions(p, &b);
    }
    if (what == NAM_JSON_LAUNCH) {
        int gbs = p->global_batch_size;
        const char *e;
        nam__sb_puts(&b, ",\n  \"fixed_policy\": {\n    \"launcher_args\": ");
        nam__json_argv(p->policy_args, p->num_policy_args, &b);
        nam__sb_puts(&b, ",\n    \"pre_import_cache\": {\"root\": ");
        nam__sb_json_str(&b, r->cache_dir);
        nam__sb_puts(&b, ", \"when\": \"before importing torch or megatron\", \"env\": {\"TRITON_CACHE_DIR\": ");
        { char t[NAM_STR_MAX + 16]; snprintf(t, sizeof t, "%s/triton", r->cache_dir); nam__sb_json_str(&b, t);
          nam__sb_puts(&b, ", \"TORCHINDUCTOR_CACHE_DIR\": "); snprintf(t, sizeof t, "%s/inductor", r->cache_dir); nam__sb_json_str(&b, t); }
        nam__sb_puts(&b, "}},\n    \"recipe_mode\": ");
        nam__sb_json_str(&b, r->recipe_mode);
        nam__sb_puts(&b, ",\n    \"env\": {");
        for (e = r->env, i = 0; *e; i++) {
            const char *c = strchr(e, ','), *eq = strchr(e, '=');
            size_t l = c ? NAM__CAST(size_t, c - e) : strlen(e);
            if (i) nam__sb_puts(&b, ", ");
            nam__sb_json_strn(&b, e, NAM__CAST(size_t, eq - e));
            nam__sb_puts(&b, ": ");
            nam__sb_json_strn(&b, eq + 1, l - NAM__CAST(size_t, eq - e) - 1);
            e = c ? c + 1 : e + l;
        }
        nam__sb_puts(&b, "},\n    \"cuda_graph\": {\"impl\": ");
        nam__sb_json_str(&b, r->cuda_graph_impl);
        nam__sb_puts(&b, ", \"modules\": [");
        for (e = r->cuda_graph_modules, i = 0; *e; i++) {
            const char *c = strchr(e, ',');
            size_t l = c ? NAM__CAST(size_t, c - e) : strlen(e);
            if (i) nam__sb_puts(&b, ", ");
            nam__sb_json_strn(&b, e, l);
            e = c ? c + 1 : e + l;
        }
        nam__sb_printf(&b, "]},\n    \"batch\": {\"micro_batch_size\": %d, \"global_batch_size\": %d, \"num_microbatches\": %d, \"seq_length\": %d},\n    \"mtp_depths\": %d\n  },\n",
                       r->micro_batch_size, gbs, p->num_microbatches, r->seq_length, p->pattern.mtp_depths);
        nam__sb_puts(&b, "  \"launcher_profile\": {\n    \"layout\": \"");
        for (i = 0; i < p->pattern.depth; i++) {
            if (i && p->layers[i].stage != p->layers[i - 1].stage) nam__sb_putc(&b, '|');
            nam__sb_putc(&b, p->layers[i].family);
        }
        if (p->pattern.mtp) for (i = 0; i < p->pattern.mtp_depths; i++) { nam__sb_putc(&b, '/'); nam__sb_puts(&b, p->pattern.mtp); }
        nam__sb_puts(&b, "\",\n    \"r_layer_indices\": ");
        nam__json_family_indices(p, &b, 'R');
        nam__sb_puts(&b, ",\n    \"a_layer_indices\": ");
        nam__json_family_indices(p, &b, 'A');
        nam__sb_puts(&b, ",\n    \"dsa_capable_a_layers\": ");
        if (r->mla) nam__json_family_indices(p, &b, 'A'); else nam__sb_puts(&b, "[]");
        nam__sb_puts(&b, ",\n    \"dsa_layers\": ");
        nam__sb_json_ints(&b, p->dsa_capable, p->num_dsa_capable);
        nam__json_coordinates(p, &b);
        nam__sb_printf(&b, ",\n    \"tp\": %d, \"pp\": %d, \"vpp\": %d, \"ep\": %d, \"etp\": %d, \"cp\": %d, \"dp\": %d, \"expert_dp\": %d, \"world_size\": %d, \"order\": \"%s\",",
                       r->tp, r->pp, p->vpp, r->ep, p->etp, r->cp, p->dp, p->edp, r->world_size, r->order);
        nam__sb_printf(&b, "\n    \"micro_batch_size\": %d, \"global_batch_size\": %d, \"seq_length\": %d, \"mtp_depths\": %d,",
                       r->micro_batch_size, gbs, r->seq_length, p->pattern.mtp_depths);
        nam__sb_printf(&b, "\n    \"sparse_mode\": \"%s\", \"cuda_graph_policy\": \"%s%s%s\",\n    \"pipeline_stages\": ",
                       p->num_dsa_capable ? "dsa" : "dense", r->cuda_graph_impl, r->cuda_graph_modules[0] ? ":" : "", r->cuda_graph_modules);
        nam__json_stages(p, &b);
        nam__sb_puts(&b, "\n  }");
    }
    nam__sb_puts(&b, "\n}\n");
    return nam__sb_finish(&b, out, err);
}

NAM__DEF nam_status nam_plan_args_text(const nam_plan *p, char **out, nam_error *err) {
    nam__sb b;
    int i;
    if (!p || !out || !p->layers) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_plan_args_text: NULL argument or empty plan");
    memset(&b, 0, sizeof b);
    nam__sb_printf(&b, "# nam %s: Megatron-LM args for %s (mode %s)\n", NAM_VERSION_STRING, p->recipe.name, p->strict ? "strict" : "plan");
    for (i = 0; i < p->num_seams; i++) {
        const nam_seam *s = &p->seams[i];
        int k;
        const char *what = s->kind == NAM_SEAM_UNMAPPED ? "no Megatron symbol" : s->kind == NAM_SEAM_CUSTOM_IMPL ? "native symbol, custom implementation" : "feature, no Megatron flag";
        if (s->family) nam__sb_printf(&b, "# custom seam %s (family %c, %s): layers ", s->name, s->family, what);
        else nam__sb_printf(&b, "# custom seam %s (%s, %s)", s->name, s->placement, what);
        for (k = 0; k < s->num_layers; k++) nam__sb_printf(&b, k ? ",%d" : "%d", s->layers[k]);
        if (!s->num_layers && s->family) nam__sb_puts(&b, "none");
        if (s->num_layers) {
            nam__sb_puts(&b, " (layer_number ");
            for (k = 0; k < s->num_layers; k++) nam__sb_printf(&b, k ? ",%d" : "%d", s->layers[k] + 1);
            nam__sb_putc(&b, ')');
        }
        if (s->mtp_positions) nam__sb_printf(&b, " + %d MTP position(s)", s->mtp_positions);
        if (s->detail[0]) nam__sb_printf(&b, "\n#   detail: %s", s->detail);
        nam__sb_printf(&b, "\n#   reason: %s\n#   runtime must supply: %s\n", s->reason, s->runtime_supplies);
    }
    for (i = 0; i < p->num_decisions; i++) nam__sb_printf(&b, "# decision: %s\n", p->decisions[i].what);
    {
        char note[600];
        if (nam__spec_note(p, note, sizeof note)) nam__sb_printf(&b, "# note: %s\n", note);
    }
    if (!p->native_pattern)
        nam__sb_printf(&b, "# %s withheld: %d layer(s) have no Megatron symbol (unmapped seams above)\n", NAM__XFLAG(HYBRID_LAYER_PATTERN), p->unresolved);
    for (i = 0; i < p->num_args + p->num_policy_args; i++) {
        const nam_arg *A = i < p->num_args ? &p->args[i] : &p->policy_args[i - p->num_args];
        const char *v = A->value;
        if (i == p->num_args && p->num_policy_args) nam__sb_puts(&b, "# fixed policy: operator choices (implementation, fusions, schedule, run inputs), not plan facts\n");
        nam__sb_puts(&b, A->flag);
        while (v) {
            const char *e = strchr(v, ' ');
            char word[512], *q;
            size_t l = e ? NAM__CAST(size_t, e - v) : strlen(v);
            if (l >= sizeof word) l = sizeof word - 1;
            memcpy(word, v, l);
            word[l] = 0;
            q = nam_shell_quote(word);
            if (!q) { b.oom = 1; break; }
            nam__sb_putc(&b, ' ');
            nam__sb_puts(&b, q);
            nam_free(q);
            v = e ? e + 1 : NULL;
        }
        nam__sb_putc(&b, '\n');
    }
    return nam__sb_finish(&b, out, err);
}

/* >>compare ---------------------------------------------------------------------------- */
NAM__DEF const char *nam_cmp_verdict_str(nam_cmp_verdict v) {
    switch (v) {
    case NAM_CMP_MATCH: return "match";
    case NAM_CMP_MISSING_IN_NAM: return "missing in nam";
    case NAM_CMP_ONLY_IN_NAM: return "only in nam";
    case NAM_CMP_DIFFERS: return "differs";
    default: return "?";
    }
}

NAM__DEF void nam_args_cmp_free(nam_args_cmp *c) {
    int i;
    if (!c) return;
    for (i = 0; i < c->num_rows; i++) { nam_free(c->rows[i].nam_value); nam_free(c->rows[i].other_value); }
    nam_free(c->rows);
    memset(c, 0, sizeof *c);
}

/* One argv word at a time, POSIX-shell style. Returns 1 with the word in `w` (heap), 0 at
   the end, -1 after filling err. */
typedef struct nam__lex { const char *t; size_t n, i; int line, col; const char *src; } nam__lex;

static void nam__lex_adv(nam__lex *L) {
    if (L->t[L->i] == '\n') { L->line++; L->col = 1; } else L->col++;
    L->i++;
}

static int nam__lex_err(nam__lex *L, nam_error *err, const char *what) {
    nam__err(err, NAM_ERR_SYNTAX, "%s", what);
    nam__recipe_err_at(err, NAM_ERR_SYNTAX, L->src, NAM__CAST(long, L->i), L->line, L->col);
    return -1;
}

static int nam__lex_word(nam__lex *L, nam__sb *w, nam_error *err) {
    int any = 0;
    for (;;) {   /* blanks, continuations, comments */
        while (L->i < L->n && (L->t[L->i] == ' ' || L->t[L->i] == '\t' || L->t[L->i] == '\n' || L->t[L->i] == '\r')) nam__lex_adv(L);
        if (L->i + 1 < L->n && L->t[L->i] == '\\' && (L->t[L->i + 1] == '\n' || L->t[L->i + 1] == '\r')) { nam__lex_adv(L); continue; }
        if (L->i < L->n && L->t[L->i] == '#') { while (L->i < L->n && L->t[L->i] != '\n') nam__lex_adv(L); continue; }
        break;
    }
    if (L->i >= L->n) return 0;
    while (L->i < L->n) {
        unsigned char c = NAM__CAST(unsigned char, L->t[L->i]);
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') break;
        if (c == 0 || c >= 0x80 || c < 0x20) return nam__lex_err(L, err, "a byte that is not printable ASCII");
        if (c == '$' || c == '`') return nam__lex_err(L, err, "a shell expansion ('$' or '`'): nam compares a literal argv, expand it first");
        if (c == '\'') {
            int ql = L->line, qc = L->col;
            nam__lex_adv(L);
            while (L->i < L->n && L->t[L->i] != '\'') { nam__sb_putc(w, L->t[L->i]); nam__lex_adv(L); }
            if (L->i >= L->n) { L->line = ql; L->col = qc; return nam__lex_err(L, err, "an unterminated single quote"); }
            nam__lex_adv(L);
        } else if (c == '"') {
            int ql = L->line, qc = L->col;
            nam__lex_adv(L);
            while (L->i < L->n && L->t[L->i] != '"') {
                char d = L->t[L->i];
                if (d == '$' || d == '`') return nam__lex_err(L, err, "a shell expansion inside double quotes: nam compares a literal argv");
                if (d == '\\' && L->i + 1 < L->n && strchr("\"\\$`\n", L->t[L->i + 1])) {
                    nam__lex_adv(L);
                    if (L->t[L->i] == '\n') { nam__lex_adv(L); continue; }
                    d = L->t[L->i];
                }
                nam__sb_putc(w, d);
                nam__lex_adv(L);
            }
            if (L->i >= L->n) { L->line = ql; L->col = qc; return nam__lex_err(L, err, "an unterminated double quote"); }
            nam__lex_adv(L);
        } else if (c == '\\') {
            nam__lex_adv(L);
            if (L->i >= L->n) return nam__lex_err(L, err, "a backslash at the end of the input");
            if (L->t[L->i] != '\n') nam__sb_putc(w, L->t[L->i]);
            nam__lex_adv(L);
        } else {
            nam__sb_putc(w, NAM__CAST(char, c));
            nam__lex_adv(L);
        }
        any = 1;
    }
    (void)any;
    return 1;
}

typedef struct nam__flagval { char flag[64]; char *value; int count, words; const char *note; } nam__flagval;

/* Megatron's own defaults, by the key whose flag it is: argv text, NULL where Megatron has
   none and the flag is required. Defaults that depend on other settings are in
   nam__megatron_default. */
static const struct { int field; const char *value; } nam__megatron_defaults[] = {
    { NAM__F_parallel_tp, "1" }, { NAM__F_parallel_pp, "1" }, { NAM__F_parallel_cp, "1" },
    { NAM__F_parallel_ep, "1" }, { NAM__F_parallel_cp_comm_type, "p2p" }, { NAM__F_model_position_embedding_type, "learned_absolute" },
    { NAM__F_model_normalization, "LayerNorm" }, { NAM__F_moe_router_topk, "2" }, { NAM__F_moe_score_function, "softmax" },
    { NAM__F_moe_load_balancing, "aux_loss" }, { NAM__F_moe_aux_loss_coeff, "0" }, { NAM__F_moe_dispatcher, "allgather" },
    { NAM__F_mamba_state_dim, "128" }, { NAM__F_mamba_head_dim, "64" }, { NAM__F_mamba_num_groups, "8" }, { NAM__F_gdn_num_key_heads, "16" },
    { NAM__F_gdn_num_value_heads, "32" }, { NAM__F_gdn_key_head_dim, "128" }, { NAM__F_gdn_value_head_dim, "128" },
    { NAM__F_gdn_conv_kernel_dim, "4" }, { NAM__F_mtp_loss_scaling_factor, "0.1" }, { NAM__F_cuda_graph_impl, "none" },
    { NAM__F_mla_kv_lora_rank, "32" }, { NAM__F_mla_qk_head_dim, "128" }, { NAM__F_mla_qk_pos_emb_head_dim, "64" }, { NAM__F_mla_v_head_dim, "128" },
    { NAM__F_model_num_query_groups, "1" }, { NAM__F_dsa_indexer_loss_coeff, NULL },
    { NAM__F_implementation_transformer_impl, "transformer_engine" }, { NAM__F_implementation_attention_backend, "auto" }, { NAM__F_train_lr_decay_style, "linear" },
    { NAM__F_train_clip_grad, "1" }, { NAM__F_train_eval_iters, "100" }, { NAM__F_train_log_interval, "100" }, { NAM__F_train_min_lr, "0" },
    { NAM__F_precision_fp8_recipe, "delayed" }, { NAM__F_precision_fp8_amax_history_len, "1" }, { NAM__F_precision_fp8_amax_compute_algo, "most_recent" },
    { NAM__F_implementation_moe_flex_backend, "deepep" }
};

/* The recipe key whose flag is `flag`, -1 for none. */
static int nam__field_by_flag(const char *flag) {
    int i;
    for (i = 0; i < NAM__NFIELDS; i++) if (nam__fields[i].flag && !strcmp(nam__fields[i].flag, flag)) return i;
    return -1;
}

/* Megatron's default for a flag nam emits, as argv text ("" for a switch that is off by
   default and so has no text, NULL when Megatron has none and the flag is required). */
static int nam__megatron_default(const nam_plan *p, const char *flag, char *out, size_t n) {
    const nam_recipe *r = &p->recipe;
    int fi = nam__field_by_flag(flag);
    size_t i;
    for (i = 0; i < sizeof nam__megatron_defaults / sizeof nam__megatron_defaults[0]; i++)
        if (nam__megatron_defaults[i].field == fi) {
            if (!nam__megatron_defaults[i].value) return 0;
            snprintf(out, n, "%s", nam__megatron_defaults[i].value);
            return 1;
        }
    switch (fi) {
    case NAM__F_parallel_etp: snprintf(out, n, "%d", r->tp); return 1;
    case NAM__F_model_kv_channels: snprintf(out, n, "%d", r->hidden_size / r->num_attention_heads); return 1;
    case NAM__F_model_ffn_hidden_size:
        snprintf(out, n, "%d", nam__megatron_ffn_hidden_size(r));
        return 1;
    case NAM__F_moe_ffn_hidden_size: snprintf(out, n, "%d", p->ffn_hidden_size); return 1;
    case NAM__F_mamba_num_heads:
        if (2LL * r->hidden_size % r->mamba_head_dim) return 0;
        snprintf(out, n, "%lld", 2LL * r->hidden_size / r->mamba_head_dim);   /* d_inner = 2h (mamba_mixer.py) */
        return 1;
    case NAM__F_mtp_depths:
        if (!p->pattern.mtp_depths) return 0;
        snprintf(out, n, "%d", p->pattern.mtp_depths);
        return 1;
    default: break;
    }
    if (!strcmp(flag, NAM__XFLAG(EXPERIMENTAL_ATTENTION_VARIANT)) && p->native_pattern && strchr(p->native_pattern, 'D')) { snprintf(out, n, "dsa"); return 1; }
    return 0;
}

/* Other spellings Megatron's argparse takes for a flag nam emits: renamed or legacy flags and
   prefixes. `value` replaces the argv value where the old flag was a switch. */
static const struct { const char *name; const char *const *flag; const char *note, *value; } nam__flag_aliases[] = {
    { "--hybrid-override-pattern", &nam__xflags[NAM__FL_HYBRID_LAYER_PATTERN], "renamed from --hybrid-override-pattern", NULL },
    { "--cuda-graph-scope", &nam__fields[NAM__F_cuda_graph_modules].flag, "renamed from the deprecated --cuda-graph-scope", NULL },
    { "--mock", &nam__fields[NAM__F_data_mock_data].flag, "argparse prefix of --mock-data", NULL },
    { "--use-rotary-position-embeddings", &nam__fields[NAM__F_model_position_embedding_type].flag, "from the legacy --use-rotary-position-embeddings", "rope" }
};

static int nam__values_equal(const char *a, const char *b) {
    char *ea, *eb;
    double x, y;
    if (!a || !b) return a == b;
    if (!strcmp(a, b)) return 1;
    if (!*a || !*b || strchr(a, ' ') || strchr(b, ' ')) return 0;
    x = strtod(a, &ea);
    y = strtod(b, &eb);
    return !*ea && !*eb && x == y;
}

NAM__DEF nam_status nam_args_compare(const nam_plan *p, const char *text, size_t len, const char *source,
                                     nam_args_cmp *out, nam_error *err) {
    nam__lex L;
    nam__flagval *other = NULL;
    nam__sb w;
    int i, k, cur = -1, nrows = 0, rc, nall;
    nam_status st = NAM_OK;
    if (!out) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_args_compare: out is NULL");
    memset(out, 0, sizeof *out);
    if (!p || !p->layers || !text) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_args_compare: NULL argument or empty plan");
    if (!len) len = strlen(text);
    if (len > NAM_MAX_TEXT) return nam__err(err, NAM_ERR_LIMIT, "%s: %lu bytes exceed the limit of %d", source ? source : "argv", NAM__CAST(unsigned long, len), NAM_MAX_TEXT);
    L.t = text; L.n = len; L.i = 0; L.line = 1; L.col = 1; L.src = source ? source : "argv";
    memset(&w, 0, sizeof w);
    for (;;) {
        w.len = 0;
        rc = nam__lex_word(&L, &w, err);
        if (rc < 0) { st = err ? err->code : NAM_ERR_SYNTAX; goto done; }
        if (!rc) break;
        nam__sb_putc(&w, 0);
        if (w.oom) { st = nam__err(err, NAM_ERR_NOMEM, "out of memory"); goto done; }
        if (w.buf[0] == '-' && w.buf[1] == '-' && w.buf[2]) {   /* a flag, possibly --flag=value */
            char *eq = strchr(w.buf, '='), name[64];
            const char *note = NULL, *forced = NULL;
            size_t fl = eq ? NAM__CAST(size_t, eq - w.buf) : strlen(w.buf);
            if (fl >= sizeof name) {
                nam__err(err, NAM_ERR_SYNTAX, "flag '%.64s...' is longer than %d bytes", w.buf, NAM__CAST(int, sizeof name) - 1);
                st = nam__recipe_err_at(err, NAM_ERR_SYNTAX, L.src, NAM__CAST(long, L.i), L.line, L.col);
                goto done;
            }
            memcpy(name, w.buf, fl);
            name[fl] = 0;
            for (k = 0; k < NAM__CAST(int, sizeof nam__flag_aliases / sizeof nam__flag_aliases[0]); k++)
                if (!strcmp(name, nam__flag_aliases[k].name)) {
                    snprintf(name, sizeof name, "%s", *nam__flag_aliases[k].flag);
                    note = nam__flag_aliases[k].note;
                    forced = nam__flag_aliases[k].value;
                    break;
                }
            for (cur = -1, k = 0; k < arrlen(other); k++) if (!strcmp(other[k].flag, name)) cur = k;
            if (cur < 0) {
                nam__flagval fv;
                memset(&fv, 0, sizeof fv);
                memcpy(fv.flag, name, strlen(name) + 1);
                arrput(other, fv);
                cur = NAM__CAST(int, arrlen(other)) - 1;
            } else {   /* argparse keeps the last one */
                nam_free(other[cur].value);
                other[cur].value = NULL;
            }
            other[cur].count++;
            other[cur].words++;
            if (note) other[cur].note = note;
            other[cur].value = nam__strdup(forced ? forced : eq ? eq + 1 : "");
            if (!other[cur].value) { st = nam__err(err, NAM_ERR_NOMEM, "out of memory"); goto done; }
            if (forced) cur = -1;   /* a switch: the next words are not its values */
        } else if (strlen(w.buf) > 3 && !strcmp(w.buf + strlen(w.buf) - 3, ".py")) {
            /* the training script: what came before belongs to the launcher (torchrun ...) */
            out->ignored_words += 1;
            for (k = 0; k < arrlen(other); k++) { out->ignored_words += other[k].words; nam_free(other[k].value); }
            arrfree(other);
            other = NULL;
            cur = -1;
        } else if (cur < 0) {
            out->ignored_words++;
        } else {   /* another value word of the current flag */
            size_t a = strlen(other[cur].value), b = strlen(w.buf);
            char *v = NAM__CAST(char *, nam__alloc(a + b + 2));
            if (!v) { st = nam__err(err, NAM_ERR_NOMEM, "out of memory"); goto done; }
            memcpy(v, other[cur].value, a);
            if (a) v[a++] = ' ';
            memcpy(v + a, w.buf, b + 1);
            other[cur].words++;
            if (!strcmp(other[cur].flag, NAM__XFLAG(EXPERIMENTAL_ATTENTION_VARIANT)) && !strcmp(v, "gated_delta_net")) memcpy(v, "gdn", 4);
            nam_free(other[cur].value);
            other[cur].value = v;
        }
    }
    /* rows: nam's flags in order, then the other's that nam does not emit */
    nall = p->num_args + p->num_policy_args;
    out->rows = NAM__CAST(nam_cmp_row *, nam__alloc(sizeof(nam_cmp_row) * NAM__CAST(size_t, nall + arrlen(other) + 1)));
    if (!out->rows) { st = nam__err(err, NAM_ERR_NOMEM, "out of memory"); goto done; }
    for (i = 0; i < nall + arrlen(other); i++) {
        nam_cmp_row *R = &out->rows[nrows];
        const char *nv = NULL, *ov = NULL, *note = NULL;
        char def[64];
        int hasdef, o = -1;
        memset(R, 0, sizeof *R);
        if (i < nall) {
            const nam_arg *A = i < p->num_args ? &p->args[i] : &p->policy_args[i - p->num_args];
            nv = A->value ? A->value : "";
            snprintf(R->flag, sizeof R->flag, "%s", A->flag);
            for (k = 0; k < arrlen(other); k++) if (!strcmp(other[k].flag, R->flag)) o = k;
        } else {
            o = i - nall;
            for (k = 0; k < nall; k++) if (!strcmp(k < p->num_args ? p->args[k].flag : p->policy_args[k - p->num_args].flag, other[o].flag)) break;
            if (k < nall) continue;   /* already a row */
            snprintf(R->flag, sizeof R->flag, "%s", other[o].flag);
        }
        if (o >= 0) { ov = other[o].value; note = other[o].note; if (other[o].count > 1 && !note) note = "given more than once; the last one counts (argparse)"; }
        hasdef = nam__megatron_default(p, R->flag, def, sizeof def);
        if (nv && ov) R->verdict = nam__values_equal(nv, ov) ? NAM_CMP_MATCH : NAM_CMP_DIFFERS;
        else if (nv) {
            if (hasdef && nam__values_equal(nv, def)) { R->verdict = NAM_CMP_MATCH; note = "the other argv leaves Megatron's default, which nam sets"; }
            else R->verdict = NAM_CMP_ONLY_IN_NAM;
        } else {
            if (hasdef && nam__values_equal(ov, def)) { R->verdict = NAM_CMP_MATCH; note = "nam leaves Megatron's default, which the other argv sets"; }
            else R->verdict = NAM_CMP_MISSING_IN_NAM;
        }
        R->nam_value = nv ? nam__strdup(nv) : NULL;
        R->other_value = ov ? nam__strdup(ov) : NULL;
        R->note = note;
        if ((nv && !R->nam_value) || (ov && !R->other_value)) { nrows++; out->num_rows = nrows; st = nam__err(err, NAM_ERR_NOMEM, "out of memory"); goto done; }
        out->count[R->verdict]++;
        nrows++;
        out->num_rows = nrows;
    }
done:
    for (k = 0; k < arrlen(other); k++) nam_free(other[k].value);
    arrfree(other);
    nam_free(w.buf);
    if (st) { nam_args_cmp_free(out); return st; }
    if (err) nam__err_reset(err);
    return NAM_OK;
}

/* >>ranks ------------------------------------------------------------------------------ */
NAM__DEF void nam_rank_groups_free(nam_rank_groups *g) {
    if (!g) return;
    nam_free(g->ranks);
    g->ranks = NULL;
    g->num_groups = g->group_size = 0;
}

NAM__DEF nam_status nam_rank_groups_masked(int world_size, int n, const int *sizes, const int *mask,
                                           nam_rank_groups *out, nam_error *err) {
    long long prod = 1, stride[16], mstride[16], ustride[16];
    int mshape[16], ushape[16], nm = 0, nu = 0, i, g, r;
    long long gsize = 1;
    if (!out || !sizes || !mask) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_rank_groups_masked: NULL argument");
    memset(out, 0, sizeof *out);
    if (n < 1 || n > 16) return nam__err(err, NAM_ERR_RANGE, "%d parallel axes (1..16 supported)", n);
    if (world_size < 1 || world_size > NAM_MAX_PARALLEL) return nam__err(err, NAM_ERR_RANGE, "world size %d is out of range (1..%d)", world_size, NAM_MAX_PARALLEL);
    for (i = 0; i < n; i++) {
        if (sizes[i] < 1 || sizes[i] > NAM_MAX_PARALLEL) return nam__err(err, NAM_ERR_RANGE, "parallel size %d of axis %d is out of range", sizes[i], i);
        stride[i] = prod;
        prod *= sizes[i];
        if (prod > NAM_MAX_PARALLEL) return nam__err(err, NAM_ERR_RANGE, "the product of the parallel sizes exceeds %d", NAM_MAX_PARALLEL);
        if (mask[i]) { mshape[nm] = sizes[i]; mstride[nm++] = stride[i]; gsize *= sizes[i]; }
        else { ushape[nu] = sizes[i]; ustride[nu++] = stride[i]; }
    }
    if (prod != world_size) return nam__err(err, NAM_ERR_PARALLEL, "world size %d != product of the parallel sizes %lld", world_size, prod);
    out->group_size = NAM__CAST(int, gsize);
    out->num_groups = NAM__CAST(int, world_size / gsize);
    out->ranks = NAM__CAST(int *, nam__alloc(sizeof(int) * NAM__CAST(size_t, world_size)));
    if (!out->ranks) { memset(out, 0, sizeof *out); return nam__err(err, NAM_ERR_NOMEM, "out of memory for %d ranks", world_size); }
    for (g = 0; g < out->num_groups; g++) {
        long long base = 0, idx = g;
        for (i = 0; i < nu; i++) { base += (idx % ushape[i]) * ustride[i]; idx /= ushape[i]; }
        for (r = 0; r < out->group_size; r++) {
            long long v = base, j = r;
            for (i = 0; i < nm; i++) { v += (j % mshape[i]) * mstride[i]; j /= mshape[i]; }
            out->ranks[g * out->group_size + r] = NAM__CAST(int, v);
        }
    }
    if (err) nam__err_reset(err);
    return NAM_OK;
}

static const char *const nam__axes[5] = { "tp", "pp", "dp", "ep", "cp" };  /* RankGenerator name_to_size order */

/* Resolve RankGenerator's ordered axes: tokens of `order`, then missing size-1 axes. */
static nam_status nam__rankgen_axes(const nam_rankgen_desc *d, int axis[5], int size[5], nam_error *err) {
    int sz[5], n = 0, i, k;
    const char *order = d->order ? d->order : "tp-cp-ep-dp-pp", *p = order;
    sz[0] = d->tp ? d->tp : 1; sz[1] = d->pp ? d->pp : 1; sz[2] = d->dp ? d->dp : 1;
    sz[3] = d->ep ? d->ep : 1; sz[4] = d->cp ? d->cp : 1;
    for (i = 0; i < 5; i++)
        if (sz[i] < 1 || sz[i] > NAM_MAX_PARALLEL) return nam__err(err, NAM_ERR_RANGE, "%s size %d is out of range (1..%d)", nam__axes[i], sz[i], NAM_MAX_PARALLEL);
    if (sz[3] > 1 && sz[4] > 1) return nam__err(err, NAM_ERR_PARALLEL, "RankGenerator: ep (%d) and cp (%d) cannot both be > 1 in one generator", sz[3], sz[4]);
    while (*p) {
        const char *e = strchr(p, '-');
        size_t l = e ? NAM__CAST(size_t, e - p) : strlen(p);
        for (k = 0; k < 5; k++) if (l == 2 && (p[0] | 32) == nam__axes[k][0] && (p[1] | 32) == nam__axes[k][1]) break;
        if (k == 5) return nam__err(err, NAM_ERR_INVALID_ARG, "order '%.32s': unknown axis '%.*s' (tp, cp, ep, dp, pp)", order, NAM__CAST(int, l > 16 ? 16 : l), p);
        for (i = 0; i < n; i++) if (axis[i] == k) return nam__err(err, NAM_ERR_INVALID_ARG, "order '%.32s' names %s twice", order, nam__axes[k]);
        axis[n++] = k;
        if (!e) break;
        p = e + 1;
    }
    for (k = 0; k < 5; k++) {
        for (i = 0; i < n && axis[i] != k; i++) {}
        if (i < n) continue;
        if (sz[k] != 1) return nam__err(err, NAM_ERR_PARALLEL, "order '%.32s' does not name %s, whose size is %d", order, nam__axes[k], sz[k]);
        axis[n++] = k;
    }
    for (i = 0; i < 5; i++) size[i] = sz[axis[i]];
    return NAM_OK;
}

NAM__DEF nam_status nam_rankgen_ranks(const nam_rankgen_desc *d, const char *token, nam_rank_groups *out, nam_error *err) {
    int axis[5], size[5], mask[5] = {0, 0, 0, 0, 0}, i, k;
    long long world = 1;
    const char *p;
    nam_status st;
    if (!d || !token || !out) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_rankgen_ranks: NULL argument");
    memset(out, 0, sizeof *out);
    st = nam__rankgen_axes(d, axis, size, err);
    if (st) return st;
    for (p = token; *p;) {
        const char *e = strchr(p, '-');
        size_t l = e ? NAM__CAST(size_t, e - p) : strlen(p);
        for (k = 0; k < 5; k++) if (l == 2 && p[0] == nam__axes[k][0] && p[1] == nam__axes[k][1]) break;
        if (k == 5) return nam__err(err, NAM_ERR_INVALID_ARG, "group token '%.32s': unknown axis '%.*s'", token, NAM__CAST(int, l > 16 ? 16 : l), p);
        for (i = 0; i < 5; i++) if (axis[i] == k) mask[i] = 1;
        if (!e) break;
        p = e + 1;
    }
    for (i = 0; i < 5; i++) {
        world *= size[i];
        if (world > NAM_MAX_PARALLEL) return nam__err(err, NAM_ERR_RANGE, "world size exceeds %d", NAM_MAX_PARALLEL);
    }
    st = nam_rank_groups_masked(NAM__CAST(int, world), 5, size, mask, out, err);
    if (st) return st;
    snprintf(out->name, sizeof out->name, "%.23s", token);
    for (i = 0; i < out->num_groups * out->group_size; i++) out->ranks[i] += d->rank_offset;
    return NAM_OK;
}

static const char *const nam__decoder_groups[NAM_DECODER_GROUPS] = { "tp", "cp", "dp", "pp", "dp-cp", "tp-pp", "tp-cp", "tp-dp", "tp-dp-cp" };
static const char *const nam__expert_groups[NAM_EXPERT_GROUPS] = { "tp", "ep", "tp-ep", "dp", "tp-ep-pp", "pp" };

NAM__DEF void nam_rankmap_free(nam_rankmap *m) {
    int i;
    if (!m) return;
    for (i = 0; i < NAM_DECODER_GROUPS; i++) nam_rank_groups_free(&m->decoder[i]);
    for (i = 0; i < NAM_EXPERT_GROUPS; i++) nam_rank_groups_free(&m->expert[i]);
    memset(m, 0, sizeof *m);
}

NAM__DEF nam_status nam_rankmap_build(const nam_rankmap_desc *desc, nam_rankmap *m, nam_error *err) {
    nam_rankgen_desc dg, eg;
    nam__par par;
    nam__par_rule rule;
    int i;
    nam_status st;
    const char *order;
    if (!desc || !m) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_rankmap_build: NULL argument");
    memset(m, 0, sizeof *m);
    par.world = desc->world_size;
    par.tp = desc->tp ? desc->tp : 1; par.pp = desc->pp ? desc->pp : 1; par.cp = desc->cp ? desc->cp : 1;
    par.ep = desc->ep ? desc->ep : 1; par.etp = desc->etp;
    order = desc->order ? desc->order : "tp-cp-ep-dp-pp";
    if (par.world < 1 || par.world > NAM_MAX_PARALLEL) return nam__err(err, NAM_ERR_RANGE, "world size %d is out of range (1..%d)", desc->world_size, NAM_MAX_PARALLEL);
    rule = nam__parallel_sizes(&par, order);   /* the refusals below keep this order of precedence */
    if (rule == NAM__PAR_RANGE)
        return nam__err(err, NAM_ERR_RANGE, "parallel sizes must be in 1..%d (tp %d, pp %d, cp %d, ep %d, etp %d)", NAM_MAX_PARALLEL, par.tp, par.pp, par.cp, par.ep, par.etp);
    if (strlen(order) >= sizeof m->order) return nam__err(err, NAM_ERR_INVALID_ARG, "order '%.32s' is too long", order);
    if (rule == NAM__PAR_MODEL) return nam__err(err, NAM_ERR_PARALLEL, "world size %d is not divisible by tp*pp*cp = %lld", par.world, par.model);
    if (rule == NAM__PAR_EXPERT) return nam__err(err, NAM_ERR_PARALLEL, "world size %d is not divisible by etp*ep*pp = %lld (the expert grid)", par.world, par.emodel);
    if (rule == NAM__PAR_ORDER) return nam__err(err, NAM_ERR_PARALLEL, "order %s does not end in pp, so expert dp (%d) must equal dp (%d)", order, par.edp, par.dp);
    m->world_size = par.world;
    m->tp = par.tp; m->pp = par.pp; m->cp = par.cp; m->ep = par.ep; m->etp = par.etp; m->dp = par.dp; m->edp = par.edp;
    snprintf(m->order, sizeof m->order, "%s", order);
    memset(&dg, 0, sizeof dg);
    dg.tp = m->tp; dg.ep = 1; dg.dp = m->dp; dg.pp = m->pp; dg.cp = m->cp; dg.order = order;
    memset(&eg, 0, sizeof eg);
    eg.tp = m->etp; eg.ep = m->ep; eg.dp = m->edp; eg.pp = m->pp; eg.cp = 1; eg.order = order;
    for (i = 0; i < NAM_DECODER_GROUPS; i++) {
        st = nam_rankgen_ranks(&dg, nam__decoder_groups[i], &m->decoder[i], err);
        if (st) { nam_rankmap_free(m); return st; }
    }
    for (i = 0; i < NAM_EXPERT_GROUPS; i++) {
        st = nam_rankgen_ranks(&eg, nam__expert_groups[i], &m->expert[i], err);
        if (st) { nam_rankmap_free(m); return st; }
    }
    /* Megatron asserts decoder and expert pp groups coincide */
    if (memcmp(m->decoder[3].ranks, m->expert[5].ranks, sizeof(int) * NAM__CAST(size_t, m->world_size)) != 0) {
        nam_rankmap_free(m);
        return nam__err(err, NAM_ERR_PARALLEL, "decoder and expert pipeline groups differ for order %s", order);
    }
    if (err) nam__err_reset(err);
    return NAM_OK;
}

NAM__DEF const nam_rank_groups *nam_rankmap_find(const nam_rankmap *m, int expert, const char *name) {
    int i;
    if (!m || !name) return NULL;
    if (expert) { for (i = 0; i < NAM_EXPERT_GROUPS; i++) if (!strcmp(m->expert[i].name, name)) return &m->expert[i]; }
    else { for (i = 0; i < NAM_DECODER_GROUPS; i++) if (!strcmp(m->decoder[i].name, name)) return &m->decoder[i]; }
    return NULL;
}

/* Index of `rank` inside its group of `g`. */
static int nam__index_in_group(const nam_rank_groups *g, int rank) {
    int i;
    for (i = 0; i < g->num_groups * g->group_size; i++) if (g->ranks[i] == rank) return i % g->group_size;
    return -1;
}

NAM__DEF nam_status nam_rankmap_query_rank(const nam_rankmap *m, int rank, nam_rank_coords *out, nam_error *err) {
    if (!m || !out || !m->decoder[0].ranks) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_rankmap_query_rank: NULL argument or empty map");
    if (rank < 0 || rank >= m->world_size) return nam__err(err, NAM_ERR_RANGE, "rank %d is out of range for world size %d", rank, m->world_size);
    out->tp = nam__index_in_group(&m->decoder[0], rank);
    out->cp = nam__index_in_group(&m->decoder[1], rank);
    out->dp = nam__index_in_group(&m->decoder[2], rank);
    out->pp = nam__index_in_group(&m->decoder[3], rank);
    out->etp = nam__index_in_group(&m->expert[0], rank);
    out->ep = nam__index_in_group(&m->expert[1], rank);
    out->edp = nam__index_in_group(&m->expert[3], rank);
    return NAM_OK;
}

static void nam__json_groups(nam__sb *b, const nam_rank_groups *g, int n) {
    int i, k, r;
    nam__sb_putc(b, '{');
    for (i = 0; i < n; i++) {
        nam__sb_printf(b, "%s\"%s\": [", i ? ",\n    " : "\n    ", g[i].name);
        for (k = 0; k < g[i].num_groups; k++) {
            nam__sb_puts(b, k ? ",[" : "[");
            for (r = 0; r < g[i].group_size; r++) nam__sb_printf(b, r ? ",%d" : "%d", g[i].ranks[k * g[i].group_size + r]);
            nam__sb_putc(b, ']');
        }
        nam__sb_putc(b, ']');
    }
    nam__sb_puts(b, "\n  }");
}

NAM__DEF nam_status nam_rankmap_json(const nam_rankmap *m, char **out, nam_error *err) {
    nam__sb b;
    if (!m || !out || !m->decoder[0].ranks) return nam__err(err, NAM_ERR_INVALID_ARG, "nam_rankmap_json: NULL argument or empty map");
    memset(&b, 0, sizeof b);
    nam__sb_printf(&b, "{\n  \"world_size\": %d, \"tp\": %d, \"pp\": %d, \"cp\": %d, \"ep\": %d, \"etp\": %d, \"order\": \"%s\",\n  \"dp\": %d,\n  \"expert_dp\": %d,\n  \"decoder\": ",
                   m->world_size, m->tp, m->pp, m->cp, m->ep, m->etp, m->order, m->dp, m->edp);
    nam__json_groups(&b, m->decoder, NAM_DECODER_GROUPS);
    nam__sb_puts(&b, ",\n  \"expert\": ");
    nam__json_groups(&b, m->expert, NAM_EXPERT_GROUPS);
    nam__sb_puts(&b, "\n}\n");
    return nam__sb_finish(&b, out, err);
}

#ifdef __cplusplus
}
#endif
#endif /* NAM_IMPLEMENTATION (planner) */
#endif /* NAM_NO_PLANNER */

/*
------------------------------------------------------------------------------
LICENSE: MIT
Copyright (c) 2026 the nam authors

Permission is hereby granted, free of charge, to any person obtaining a copy of
this software and associated documentation files (the "Software"), to deal in
the Software without restriction, including without limitation the rights to
use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies
of the Software, and to permit persons to whom the Software is furnished to do
so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
------------------------------------------------------------------------------
*/
