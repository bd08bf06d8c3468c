/* nam.h - hybrid language-model planning toolkit, single header, C99/C++.

   Instantiate the implementation in exactly ONE C or C++ file:

       #define NAM_IMPLEMENTATION
       #include "nam.h"

   and link stb_ds (Debian: libstb-dev, `pkg-config --cflags --libs stb`, which gives
   -I/usr/include/stb -lstb), or define STB_DS_IMPLEMENTATION yourself in one file.
   nam.h never defines STB_DS_IMPLEMENTATION for you.

   CONTENTS
     1. What nam does (and does NOT)
     2. Compile-time options
     3. STEP BY STEP
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
     - run kernels yet: the kernel API arrives in a later version; nothing here pretends
       to run a block.

   2. COMPILE-TIME OPTIONS
     NAM_IMPLEMENTATION   emit the implementation in this translation unit
     NAM_STATIC           make every public function static (private copy per TU)
     NAM_MALLOC(sz) / NAM_FREE(p)   allocator for nam's buffers (define both or neither)
     NAM_ASSERT(c)        internal invariant check (default: assert), never used for input

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

   4. THE AUTHORED PATTERN LANGUAGE
   Families are single upper-case letters: A attention, M Mamba/state-space, E expert (MoE),
   R recurrent tail, plus any further letters a recipe declares in `families`.
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
          A plan mixing '*' with '+'/'D' is refused with the reason.
     E -> 'E' only when moe.num_experts > 0, otherwise refused (never turned into '-').
     M -> 'M'; with mamba_impl = mamba3 or custom the layer also carries a named custom seam
          (the symbol stays native, the runtime must supply the mixer).
     R -> no Megatron symbol. mode = strict: the plan stops at the first R with an error
          naming the token, its layer index, its stage and its column. mode = plan: R stays
          an explicit seam and native_pattern is NULL while any such seam is unresolved.
     Declared families behave like R. `map = R=G` (an explicit, named binding) lowers R to
     Megatron's G (Gated DeltaNet) and records the binding in plan.decisions.
   The translated pattern is re-validated with nam_megatron_parse and the layout rules
   before anything is emitted.

   7. RECIPE FILES
       # comment                 ; comment
       [section]
       key = value               (value may be "quoted"; lists are comma separated)
   Keys are `section.key`; unknown sections or keys are errors with file:line:column.
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
    /* [mla] */
    int q_lora_rank, kv_lora_rank, qk_head_dim, qk_pos_emb_head_dim, v_head_dim;
    /* [moe] */
    int num_experts, router_topk, moe_ffn_hidden_size, shared_expert_size;
    char score_function[16];          /* softmax | sigmoid | sqrtsoftplus */
    int pre_softmax, expert_bias, grouped_gemm;
    char load_balancing[24];
    double aux_loss_coeff;
    char dispatcher[16];              /* allgather | alltoall | flex */
    /* [mamba] */
    int mamba_state_dim, mamba_head_dim, mamba_num_groups, mamba_num_heads;
    /* [gdn] */
    int gdn_num_key_heads, gdn_num_value_heads, gdn_key_head_dim, gdn_value_head_dim, gdn_conv_kernel_dim;
    /* [mtp] */
    double mtp_loss_scaling_factor;
    /* [parallel] */
    int world_size, tp, pp, cp, ep, etp, sequence_parallel, overlap_p2p;
    int first_stage_layers, last_stage_layers;
    char order[24];                   /* tp-cp-ep-dp-pp | tp-cp-ep-pp-dp */
    char cp_comm_type[16];            /* p2p | a2a | allgather | a2a+p2p */
    /* [batch] */
    int micro_batch_size, global_batch_size;
    /* [precision] */
    char dtype[8];                    /* bf16 | fp16 | fp32 */
    char fp8[8];                      /* none | e4m3 | hybrid */
    /* [cuda_graph] */
    char cuda_graph_impl[24];         /* none | local | transformer_engine | full_iteration */
    char cuda_graph_modules[NAM_STR_MAX]; /* comma list: attn mamba mlp moe moe_router moe_preprocess */
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
/* nam_recipe_parse: apply a recipe text (see section 7) on top of `r`. `source` names the
   file in error records (file:line:column). The recipe is unchanged on error. */
NAM_API nam_status nam_recipe_parse(nam_recipe *r, const char *text, size_t len,
                                    const char *source, nam_error *err);
/* nam_recipe_keys: the NULL-terminated list of "section.key" names. */
NAM_API const char *const *nam_recipe_keys(void);
/* nam_recipe_write: render `r` as recipe text (every key), heap string for nam_free. */
NAM_API nam_status nam_recipe_write(const nam_recipe *r, char **out, nam_error *err);

/* ------------------------------------------------------------------------------------ */
/* >>plan  Translation plan, args bundle and launch contract.                            */

typedef enum nam_seam_kind {
    NAM_SEAM_UNMAPPED = 1,     /* no Megatron symbol: blocks the native pattern */
    NAM_SEAM_CUSTOM_IMPL = 2   /* native symbol kept, runtime must supply the implementation */
} nam_seam_kind;

typedef struct nam_seam {
    char name[48];          /* e.g. "recurrent-tail", "mamba3-mixer" */
    char family;
    nam_seam_kind kind;
    int *layers;            /* main-pattern layer indices (stb_ds array) */
    int mtp_positions;      /* how many MTP-copy positions carry it */
    char reason[160];
    char runtime_supplies[160];
} nam_seam;

typedef struct nam_decision {
    char family;
    char symbol;
    char what[160];
} nam_decision;

typedef struct nam_plan_layer {
    int index, stage;
    char family;
    char native;    /* Megatron symbol, 0 when none */
    int seam;       /* index into seams, -1 when none */
    int column;
} nam_plan_layer;

typedef struct nam_arg {
    char flag[64];
    char *value;    /* heap; NULL for a bare switch */
} nam_arg;

typedef struct nam_plan {
    nam_recipe recipe;          /* resolved copy (pattern text owned by the plan) */
    nam_pattern pattern;        /* authored, parsed */
    nam_plan_layer *layers;     /* depth entries */
    char *mtp_native;           /* one MTP copy in Megatron symbols, NULL if none or unmapped */
    int strict;
    nam_seam *seams;            /* stb_ds array */
    nam_decision *decisions;    /* stb_ds array */
    int unresolved;             /* number of layers (main + MTP) without a native symbol */
    char *native_pattern;       /* full Megatron pattern (main with '|' + '/mtp' copies);
                                   NULL while unmapped seams remain */
    nam_mpattern mpattern;      /* parsed native pattern (valid when native_pattern) */
    nam_layout layout;          /* (valid when native_pattern) */
    int dp, edp, etp, vpp, num_microbatches, mamba_num_heads, kv_channels, ffn_hidden_size;
    int dsa_capable[NAM_MAX_LIST]; int num_dsa_capable; /* A-layer indices marked DSA */
    nam_arg *args;              /* stb_ds array: generated native args */
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
   in pp, sizes out of range. */
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
#endif /* NAM_H_INCLUDED */
