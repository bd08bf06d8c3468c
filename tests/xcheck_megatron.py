#!/usr/bin/env python3
"""tests/xcheck_megatron.py - Megatron-Core's own code judges the args nam emits.

    build/megatron-venv/bin/python tests/xcheck_megatron.py NAM_BIN [PLAN_DIR]

For every recipe in PLAN_DIR (default tests/megatron_plans/*.recipe), runs `NAM_BIN launch` and
`NAM_BIN args --json` on it and builds what Megatron-LM's training entry point would build from the
emitted args, with Megatron-Core's own classes and functions:
  - TransformerConfig, or MLATransformerConfig when the pattern has '+' or 'D' (its __post_init__
    and ModelParallelConfig's run Megatron's checks: heads vs TP, MoE, MTP, the DSA RoPE-fusion
    rule, CUDA-graph modules, ...);
  - megatron.core.models.hybrid.hybrid_layer_allocation: the pattern parsed, its layer count and
    MTP depth, and select_pipeline_segment for every (pp rank, vp stage), compared with the
    launch contract's pipeline_stages;
  - parallel_state.initialize_model_parallel on torch.distributed's "fake" backend (FakeStore)
    with the planned world size, tp/pp/vpp/cp/hierarchical cp/ep/etp and rank order, as rank 0,
    one rank of every other pipeline stage and the last rank; dp and expert dp compared with the
    contract;
  - when the plan has them: MambaMixer.__init__ up to its dimension checks (M layers),
    DSAIndexer.__init__ up to its softmax scale (D layers), TopKRouter.sinkhorn_load_balancing
    on a small logits tensor (sinkhorn), the hierarchical CP groups (cp_comm_type a2a+p2p),
    ConstantNumMicroBatchesCalculator (batch sizes).

Recipe header (comment lines at the top of each plan file):
    # xcheck: WHAT IT CHECKS              first line, the description
    # expect: accept | refuse
    # before-fix-set: KEY=VALUE ...       (refuse) nam --set overrides giving an accepted variant
    # before-fix-edit: drop FLAG | set FLAG VALUE... | add FLAG VALUE...   (refuse, repeatable)
    # before-fix-env: K=V,K=V             (refuse) the fixed-policy environment nam passed through
    # megatron-refuses: REGEX             (refuse) Megatron's message for the rule under test
An "accept" plan: nam must accept it, and every check above must pass. A "refuse" plan is one
that nam once accepted although Megatron refuses it (issue 8): the "before fix" args (the
accepted variant's args with the edits, i.e. what nam used to emit) must be refused by Megatron
with a message matching megatron-refuses; and nam today must either refuse the recipe (exit 1)
or emit args that pass every check.

Every flag nam emits must be in FLAGS (mapped to a config field) or in LAUNCH_ONLY (used by the
checks here, or by Megatron's training loop only, with the reason): an unknown flag is a failure,
so new flags are never silently ignored. Config kwargs follow megatron/training as of
Megatron-LM d98e8a64 (line numbers below): argparse defaults that differ from the dataclass
defaults (CLI_DEFAULTS), then validate_args' derivations, then
argument_utils.core_transformer_config_from_args. megatron/training itself is not on PyPI, so
the few training-only rules that issue 8 is about are restated in training_rules() with their
arguments.py lines and reported as such.

Environment (decided after measuring, see build.sh setup_megatron): a venv with torch 2.15.0 and
megatron-core 0.19.2 from PyPI. megatron-core 0.16.1, the newest for Python 3.11, predates
megatron/core/models/hybrid (its hybrid allocation knows only M * - E, no '|', '/', G, D, +,
and no select_pipeline_segment), so it cannot judge nam's output; 0.18+ needs Python >= 3.12,
which this image has under pyenv. PyPI has no CPU-only torch for Linux x86_64 and the CUDA
wheel does not import without its nvidia-* libraries, so the plain install (about 5.4 GB,
75-100 s here) is used; everything runs on the CPU. Shims stand in for the GPU machine:
Transformer Engine is reported as version TE_VERSION with its fused-RoPE kernel present
(TransformerConfig refuses apply_rope_fusion without TE, and MoE + fp8 below TE 1.7), and
mamba_ssm/einops are reported present so that
MambaMixer.__init__ reaches its dimension checks (the constructor is stopped by an exception
when it starts building kernels; a check counts as passed only when that happens after the
last dimension check, judged by the line it stopped at).

Output: one line per check, "ok DESC", "FAIL DESC: WHY" or "skip DESC: WHY" (tests/run.sh).
"""

import json
import os
import re
import subprocess
import sys
import traceback
import types
import warnings

warnings.filterwarnings("ignore")
os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")

NAM = None
fails = 0


def out(kind, desc, why=None):
    global fails
    if kind == "FAIL":
        fails += 1
    line = f"{kind} {desc}" if why is None else f"{kind} {desc}: {why}"
    print(line.replace("\n", " "), flush=True)


try:
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.testing._internal.distributed.fake_pg import FakeStore

    import megatron.core
    from megatron.core import parallel_state as ps
    from megatron.core.models.hybrid import hybrid_layer_allocation as hla
    from megatron.core.transformer.transformer_config import (
        MLATransformerConfig,
        TransformerConfig,
    )
except Exception as e:  # the step's setup failed or is partial
    print(f"skip megatron cross-check: cannot import torch/megatron.core ({type(e).__name__}: {e})")
    sys.exit(0)

try:
    from importlib.metadata import version as _dist_version

    MCORE = _dist_version("megatron-core")
except Exception:
    MCORE = getattr(megatron.core, "__version__", "?")
MCORE_DIR = os.path.dirname(megatron.core.__file__)

# ---- the flag table ---------------------------------------------------------------------
# flag -> (kind, field). kind: int, float, str, true (store_true), false (store_false: the
# field becomes False), ints / floats / strs (nargs='+'). Field names are TransformerConfig /
# MLATransformerConfig / ModelParallelConfig fields, as Megatron-LM's parser names them
# (arguments.py and the dataclass-generated flags of argument_utils.py:45-231).
FLAGS = {
    "--tensor-model-parallel-size": ("int", "tensor_model_parallel_size"),
    "--pipeline-model-parallel-size": ("int", "pipeline_model_parallel_size"),
    "--context-parallel-size": ("int", "context_parallel_size"),
    "--hierarchical-context-parallel-sizes": ("ints", "hierarchical_context_parallel_sizes"),
    "--cp-comm-type": ("strs", "cp_comm_type"),
    "--expert-model-parallel-size": ("int", "expert_model_parallel_size"),
    "--expert-tensor-parallel-size": ("int", "expert_tensor_parallel_size"),
    "--sequence-parallel": ("true", "sequence_parallel"),
    "--decoder-first-pipeline-num-layers": ("int", "num_layers_in_first_pipeline_stage"),
    "--decoder-last-pipeline-num-layers": ("int", "num_layers_in_last_pipeline_stage"),
    "--no-overlap-p2p-communication": ("false", "overlap_p2p_comm"),
    "--hidden-size": ("int", "hidden_size"),
    "--ffn-hidden-size": ("int", "ffn_hidden_size"),
    "--num-attention-heads": ("int", "num_attention_heads"),
    "--num-query-groups": ("int", "num_query_groups"),
    "--kv-channels": ("int", "kv_channels"),
    "--normalization": ("str", "normalization"),
    "--disable-bias-linear": ("false", "add_bias_linear"),
    "--no-rope-fusion": ("false", "apply_rope_fusion"),
    "--multi-latent-attention": ("true", "multi_latent_attention"),
    "--q-lora-rank": ("int", "q_lora_rank"),
    "--kv-lora-rank": ("int", "kv_lora_rank"),
    "--qk-head-dim": ("int", "qk_head_dim"),
    "--qk-pos-emb-head-dim": ("int", "qk_pos_emb_head_dim"),
    "--v-head-dim": ("int", "v_head_dim"),
    "--experimental-attention-variant": ("str", "experimental_attention_variant"),
    "--dsa-indexer-n-heads": ("int", "dsa_indexer_n_heads"),
    "--dsa-indexer-head-dim": ("int", "dsa_indexer_head_dim"),
    "--dsa-indexer-topk": ("int", "dsa_indexer_topk"),
    "--dsa-indexer-loss-coeff": ("float", "dsa_indexer_loss_coeff"),
    "--num-experts": ("int", "num_moe_experts"),
    "--moe-router-topk": ("int", "moe_router_topk"),
    "--moe-ffn-hidden-size": ("int", "moe_ffn_hidden_size"),
    "--moe-shared-expert-intermediate-size": ("int", "moe_shared_expert_intermediate_size"),
    "--moe-router-score-function": ("str", "moe_router_score_function"),
    "--moe-router-pre-softmax": ("true", "moe_router_pre_softmax"),
    "--moe-router-enable-expert-bias": ("true", "moe_router_enable_expert_bias"),
    "--moe-router-load-balancing-type": ("strs", "moe_router_load_balancing_type"),
    "--moe-aux-loss-coeff": ("floats", "moe_aux_loss_coeff"),
    "--moe-token-dispatcher-type": ("str", "moe_token_dispatcher_type"),
    "--moe-grouped-gemm": ("true", "moe_grouped_gemm"),
    "--mamba-state-dim": ("int", "mamba_state_dim"),
    "--mamba-head-dim": ("int", "mamba_head_dim"),
    "--mamba-num-groups": ("int", "mamba_num_groups"),
    "--mamba-num-heads": ("int", "mamba_num_heads"),
    "--linear-num-key-heads": ("int", "linear_num_key_heads"),
    "--linear-num-value-heads": ("int", "linear_num_value_heads"),
    "--linear-key-head-dim": ("int", "linear_key_head_dim"),
    "--linear-value-head-dim": ("int", "linear_value_head_dim"),
    "--linear-conv-kernel-dim": ("int", "linear_conv_kernel_dim"),
    "--mtp-num-layers": ("int", "mtp_num_layers"),
    "--mtp-loss-scaling-factor": ("float", "mtp_loss_scaling_factor"),
    "--bf16": ("true", "bf16"),
    "--fp16": ("true", "fp16"),
    "--fp8-format": ("str", "fp8"),
    "--cuda-graph-impl": ("str", "cuda_graph_impl"),
    "--cuda-graph-modules": ("strs", "cuda_graph_modules"),
    "--recompute-granularity": ("str", "recompute_granularity"),
    "--recompute-method": ("str", "recompute_method"),
    "--recompute-num-layers": ("int", "recompute_num_layers"),
    "--recompute-modules": ("strs", "recompute_modules"),
    "--fp8-recipe": ("str", "fp8_recipe"),
    "--fp8-amax-history-len": ("int", "fp8_amax_history_len"),
    "--fp8-amax-compute-algo": ("str", "fp8_amax_compute_algo"),
    "--moe-router-dtype": ("str", "moe_router_dtype"),
    # fixed-policy args (nam args --json "fixed_policy_args")
    "--transformer-impl": ("str", "transformer_impl"),
    "--attention-backend": ("attnbackend", "attention_backend"),
    "--no-gradient-accumulation-fusion": ("false", "gradient_accumulation_fusion"),
    "--no-masked-softmax-fusion": ("false", "masked_softmax_fusion"),
    "--mla-down-proj-fusion": ("true", "mla_down_proj_fusion"),
    "--moe-permute-fusion": ("true", "moe_permute_fusion"),
    "--moe-router-fusion": ("true", "moe_router_fusion"),
    "--moe-shared-expert-overlap": ("true", "moe_shared_expert_overlap"),
    "--moe-flex-dispatcher-backend": ("str", "moe_flex_dispatcher_backend"),
    "--moe-expert-capacity-factor": ("float", "moe_expert_capacity_factor"),
    "--moe-pad-expert-input-to-capacity": ("true", "moe_pad_expert_input_to_capacity"),
    "--cuda-graph-warmup-steps": ("int", "cuda_graph_warmup_steps"),
}

# Emitted flags that are not config fields: arity (number of values, '+' for nargs='+') and
# what uses them. Each is read by a check below or by Megatron's training loop only.
LAUNCH_ONLY = {
    "--spec": (2, "the layer-spec module and builder; checked: importable, builder present"),
    "--hybrid-layer-pattern": (1, "parsed with hybrid_layer_allocation; sets num_layers, MTP, MLA"),
    "--num-layers": (1, "checked equal to the pattern's layer count (arguments.py:787-797)"),
    "--seq-length": (1, "batch/CP rules (arguments.py:1335-1356)"),
    "--max-position-embeddings": (1, "must be >= seq-length (arguments.py:1353-1356)"),
    "--micro-batch-size": (1, "ConstantNumMicroBatchesCalculator"),
    "--global-batch-size": (1, "ConstantNumMicroBatchesCalculator"),
    "--position-embedding-type": (1, "GPT/hybrid model argument; != rope turns RoPE fusion off (arguments.py:1628-1629)"),
    "--untie-embeddings-and-output-weights": (0, "model constructor argument (share_embeddings_and_output_weights)"),
    "--group-query-attention": (0, "num_query_groups only counts with it (argument_utils.py:330-333)"),
    "--swiglu": (0, "activation_func=silu, gated_linear_unit (argument_utils.py:314-317)"),
    "--squared-relu": (0, "activation_func=squared_relu (argument_utils.py:320-322)"),
    "--use-tp-pp-dp-mapping": (0, "rank order tp-cp-ep-pp-dp for initialize_model_parallel (training/initialize.py)"),
    "--no-check-for-nan-in-loss-and-grad": (0, "training loop only (arguments.py:1235-1237)"),
    "--use-distributed-optimizer": (0, "DistributedDataParallelConfig/OptimizerConfig use_distributed_optimizer, not a model config field"),
    "--use-flash-attn": (0, "training arguments only (arguments.py:2910)"),
    "--no-persist-layer-norm": (0, "persist_layer_norm = not this flag (argument_utils.py:304)"),
    "--train-iters": (1, "TrainingConfig"), "--lr": (1, "OptimizerConfig"), "--min-lr": (1, "OptimizerConfig; <= lr (arguments.py:1359)"),
    "--lr-decay-style": (1, "SchedulerConfig"), "--lr-warmup-iters": (1, "SchedulerConfig"), "--clip-grad": (1, "OptimizerConfig"),
    "--eval-interval": (1, "TrainingConfig"), "--eval-iters": (1, "TrainingConfig"), "--log-interval": (1, "LoggerConfig"),
    "--save-interval": (1, "CheckpointConfig"), "--log-throughput": (0, "LoggerConfig"),
    "--data-path": ("+", "data arguments (nargs='*')"), "--tokenizer-type": (1, "TokenizerConfig"), "--tokenizer-model": (1, "TokenizerConfig"),
    "--save": (1, "CheckpointConfig"), "--load": (1, "CheckpointConfig"),
    "--split": (1, "data split (arguments.py)"), "--mock-data": (0, "synthetic data"),
}

# argparse defaults that differ from the dataclass defaults (arguments.py line of the flag).
CLI_DEFAULTS = {
    "masked_softmax_fusion": True,  # --no-masked-softmax-fusion, 2887
    "bias_dropout_fusion": True,  # --no-bias-dropout-fusion, 2899
    "apply_rope_fusion": True,  # --no-rope-fusion, 2902
    "gradient_accumulation_fusion": True,  # --no-gradient-accumulation-fusion, 2944
    "attention_softmax_in_fp32": False,  # --attention-softmax-in-fp32, 3067
    "overlap_p2p_comm": True,  # --no-overlap-p2p-communication, 3118
    "cp_comm_type": ["p2p"],  # --cp-comm-type, 3221
    "q_lora_rank": None,  # --q-lora-rank, 3548
    "kv_lora_rank": 32,  # --kv-lora-rank, 3550
    "rotary_scaling_factor": 1.0,  # --rotary-scaling-factor, 3558
    "cuda_graph_modules": [],  # --cuda-graph-modules, 2050
    "moe_router_load_balancing_type": ["aux_loss"],  # 3532
    "moe_aux_loss_coeff": [0.0],  # 3536
}


class Refused(Exception):
    """Megatron (or a restated Megatron rule) refused; str() says where and why."""


def parse_args(words):
    """argv words -> ([(flag, [values])], [unknown flags])"""
    items, unknown, i = [], [], 0
    while i < len(words):
        flag = words[i]
        i += 1
        if flag in FLAGS:
            kind = FLAGS[flag][0]
            n = 0 if kind in ("true", "false") else (1 if kind in ("int", "float", "str") else "+")
        elif flag in LAUNCH_ONLY:
            n = LAUNCH_ONLY[flag][0]
        else:
            unknown.append(flag)
            n = "+"
        if n == "+":
            vals = []
            while i < len(words) and not words[i].startswith("--"):
                vals.append(words[i])
                i += 1
        else:
            vals = words[i:i + n]
            i += n
        items.append((flag, vals))
    return items, unknown


def edit_args(items, edits):
    """before-fix edits: drop FLAG | set FLAG V... | add FLAG V..."""
    items = [(f, list(v)) for f, v in items]
    for e in edits:
        op, flag, vals = e[0], e[1], e[2:]
        if op == "drop":
            items = [(f, v) for f, v in items if f != flag]
        elif op == "set":
            if not any(f == flag for f, _ in items):
                raise ValueError(f"before-fix-edit set {flag}: nam did not emit {flag}")
            items = [(f, vals if f == flag else v) for f, v in items]
        elif op == "add":
            items.append((flag, vals))
        else:
            raise ValueError(f"before-fix-edit: unknown operation {op!r}")
    return items


def flag_values(items):
    d = {}
    for f, v in items:
        d[f] = v
    return d


# ---- config kwargs as megatron/training builds them --------------------------------------
def config_kwargs(items):
    """(kwargs, facts) from the parsed args; facts are the non-config values the checks need."""
    fv = flag_values(items)
    kw = dict((k, list(v) if isinstance(v, list) else v) for k, v in CLI_DEFAULTS.items())
    for flag, vals in items:
        if flag not in FLAGS:
            continue
        kind, field = FLAGS[flag]
        if kind == "int":
            kw[field] = int(vals[0])
        elif kind == "float":
            kw[field] = float(vals[0])
        elif kind == "str":
            kw[field] = vals[0]
        elif kind == "true":
            kw[field] = True
        elif kind == "false":
            kw[field] = False
        elif kind == "ints":
            kw[field] = [int(x) for x in vals]
        elif kind == "floats":
            kw[field] = [float(x) for x in vals]
        elif kind == "strs":
            kw[field] = list(vals)
        elif kind == "attnbackend":
            from megatron.core.transformer.enums import AttnBackend
            kw[field] = AttnBackend[vals[0]]

    pattern = fv.get("--hybrid-layer-pattern", [None])[0]
    facts = {"pattern": pattern, "flags": fv}
    tp = kw.get("tensor_model_parallel_size", 1)
    pp = kw.get("pipeline_model_parallel_size", 1)
    if pattern is not None:
        kw["is_hybrid_model"] = True  # argument_utils.py:345-346
        kw["num_layers"] = hla.get_hybrid_total_layer_count(pattern)  # arguments.py:787-797
        parsed = hla.parse_hybrid_pattern(pattern)
        facts["parsed"] = parsed
        if parsed.mtp_num_depths:  # arguments.py:865-879
            kw["mtp_num_layers"] = parsed.mtp_num_depths
        if "+" in pattern or "D" in pattern:  # arguments.py:918-923
            kw["multi_latent_attention"] = True
        if "D" in pattern:  # argument_utils.py:347-349
            kw["experimental_attention_variant"] = "dsa"
        segs = hla.get_hybrid_total_pipeline_segment_count(pattern)  # arguments.py:841-862
        vpp = None
        if not (segs == 1 and pp > 1):
            if segs % pp:
                raise Refused(f"arguments.py:850 (restated): {segs} pipeline segments not divisible by pp {pp}")
            vpp = segs // pp if segs > pp else None
        kw["virtual_pipeline_model_parallel_size"] = vpp
    elif "--num-layers" in fv:
        kw["num_layers"] = int(fv["--num-layers"][0])
    if kw.get("virtual_pipeline_model_parallel_size") is None:  # arguments.py:1010-1013
        kw["overlap_p2p_comm"] = False
    kw["batch_p2p_comm"] = not kw["overlap_p2p_comm"]  # argument_utils.py:307
    if fv.get("--position-embedding-type", ["learned_absolute"])[0] != "rope":  # arguments.py:1628
        kw["apply_rope_fusion"] = False
    if "--group-query-attention" not in fv:  # argument_utils.py:330-333
        kw["num_query_groups"] = None
    if kw.get("expert_tensor_parallel_size") is None:  # arguments.py:587-588
        kw["expert_tensor_parallel_size"] = tp
    if tp == 1 and kw.get("sequence_parallel"):  # arguments.py:1433-1439
        kw["sequence_parallel"] = False
    if kw.get("num_moe_experts") == 0:  # arguments.py:1648-1649
        kw["num_moe_experts"] = None
    h = kw.get("hidden_size")
    if kw.get("ffn_hidden_size") is None and h:  # arguments.py:1320-1329
        kw["ffn_hidden_size"] = int(4 * h * 2 / 3 / 64) * 64 if "--swiglu" in fv else 4 * h
    if kw.get("num_moe_experts") is not None and kw.get("moe_ffn_hidden_size") is None:
        kw["moe_ffn_hidden_size"] = kw["ffn_hidden_size"]  # arguments.py:1650-1652
    if kw.get("kv_channels") is None and h and kw.get("num_attention_heads"):
        kw["kv_channels"] = h // kw["num_attention_heads"]  # arguments.py:1331-1333
    for f in ("moe_router_load_balancing_type", "moe_aux_loss_coeff"):  # arguments.py:1661-1664
        if isinstance(kw[f], list) and len(kw[f]) == 1:
            kw[f] = kw[f][0]
    if len(kw["cp_comm_type"]) == 1:  # argument_utils.py:343-344
        kw["cp_comm_type"] = kw["cp_comm_type"][0]
    if "--swiglu" in fv:  # argument_utils.py:314-317
        kw["activation_func"] = F.silu
        kw["gated_linear_unit"] = True
    if "--squared-relu" in fv:  # argument_utils.py:320-322
        from megatron.core.activations import squared_relu

        kw["activation_func"] = squared_relu
    dtype = torch.bfloat16 if kw.get("bf16") else (torch.half if kw.get("fp16") else torch.float32)
    kw["params_dtype"] = dtype  # arguments.py (params_dtype), argument_utils.py:306
    kw["pipeline_dtype"] = dtype
    kw["deallocate_pipeline_outputs"] = True  # argument_utils.py:305
    kw["persist_layer_norm"] = "--no-persist-layer-norm" not in fv  # argument_utils.py:304
    if kw.get("cuda_graph_impl") == "transformer_engine":  # arguments.py:1954-1960
        kw["use_te_rng_tracker"] = True
    return kw, facts


def training_rules(kw, fv, env=None):
    """Rules of megatron/training/arguments.py (not on PyPI), restated with their lines.
    env: the launch contract's fixed-policy environment (None: not known, not checked)."""
    cp = kw.get("context_parallel_size", 1)
    cct = kw["cp_comm_type"] if isinstance(kw["cp_comm_type"], list) else [kw["cp_comm_type"]]
    hcp = kw.get("hierarchical_context_parallel_sizes")
    if hcp:
        prod = 1
        for x in hcp:
            prod *= x
        if prod != cp:
            raise Refused(f"arguments.py:580-582 (restated): hierarchical cp sizes {hcp} do not multiply to cp {cp}")
    if "a2a+p2p" in cct and hcp is None:
        raise Refused("arguments.py:583-585 (restated): --hierarchical-context-parallel-sizes must be set when a2a+p2p is used in cp comm")
    ep = kw.get("expert_model_parallel_size", 1)
    if ep > 1:
        if kw.get("num_moe_experts") is None:
            raise Refused("arguments.py:1655-1656 (restated): num_experts must be non None to use expert model parallelism")
        if kw["num_moe_experts"] % ep:
            raise Refused("arguments.py:1657-1658 (restated): Number of experts should be a multiple of expert model parallel_size")
    if kw.get("cuda_graph_impl") == "full_iteration" and "--no-check-for-nan-in-loss-and-grad" not in fv:
        raise Refused("arguments.py:1235-1237 (restated): full_iteration CUDA graph requires --no-check-for-nan-in-loss-and-grad")
    vpp = kw.get("virtual_pipeline_model_parallel_size")
    pp = kw.get("pipeline_model_parallel_size", 1)
    if vpp is not None and pp <= (1 if kw["overlap_p2p_comm"] else 2):
        raise Refused(f"arguments.py:1000-1009 (restated): the interleaved schedule needs pp > {1 if kw['overlap_p2p_comm'] else 2}, pp is {pp}")
    seq = int(fv.get("--seq-length", ["0"])[0])
    if seq and cp > 1 and seq % (2 * cp):
        raise Refused(f"arguments.py:1335-1338 (restated): seq_length {seq} % (2 * cp {cp}) != 0")
    mpe = int(fv.get("--max-position-embeddings", ["0"])[0])
    if seq and mpe and mpe < seq:
        raise Refused(f"arguments.py:1353-1356 (restated): max_position_embeddings {mpe} < seq_length {seq}")
    if env is None:
        return
    # Hopper (the target): device arch < 10; no FSDP and no --overlap-moe-expert-parallel-comm here
    if (kw.get("tensor_model_parallel_size", 1) > 1 or cp > 1) and env.get("CUDA_DEVICE_MAX_CONNECTIONS") != "1":
        raise Refused("arguments.py:1453-1479 (restated): tensor or context parallelism on Hopper requires CUDA_DEVICE_MAX_CONNECTIONS=1 in the environment")
    if (kw.get("cuda_graph_impl") == "transformer_engine"
            and "expandable_segments:True" in env.get("PYTORCH_CUDA_ALLOC_CONF", "")
            and env.get("NCCL_GRAPH_REGISTER", "") != "0"):
        raise Refused("arguments.py:1961-1967 (restated): TE CUDA graphs with PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True require NCCL_GRAPH_REGISTER=0")


# ---- environment shims (see the header) ---------------------------------------------------
TE_VERSION = "2.9.0"  # the Transformer Engine version the GPU machine is taken to have


def shim_te():
    """Stand-ins for Transformer Engine, which a GPU machine has and this one cannot: its
    version (TransformerConfig refuses e.g. MoE + fp8 below TE 1.7), its fused RoPE and its
    fused MoE permutation."""
    from packaging.version import Version

    import megatron.core.utils as mcu
    from megatron.core.models.common.embeddings import rope_utils

    mcu._te_version = Version(TE_VERSION)

    if getattr(rope_utils, "fused_apply_rotary_pos_emb", None) is None:
        rope_utils.fused_apply_rotary_pos_emb = lambda *a, **k: None  # "TE is installed"

    # TE's fused MoE permutation (TE >= 2.1), which TransformerConfig asks for with
    # --moe-permute-fusion: present on the GPU machine
    from megatron.core.transformer.moe import moe_utils
    for name in ("fused_permute", "fused_permute_with_probs", "fused_sort_chunks_by_index",
                 "fused_sort_chunks_by_index_with_probs", "fused_unpermute"):
        if getattr(moe_utils, name, None) is None:
            setattr(moe_utils, name, lambda *a, **k: None)


def build_config(kw, flags):
    cls = MLATransformerConfig if kw.get("multi_latent_attention") else TransformerConfig
    kw = dict(kw)
    if cls is MLATransformerConfig and kw.get("rope_type") is None:
        kw.pop("rope_type", None)  # argument_utils.py:335-337
    import dataclasses

    # like core_transformer_config_from_args (argument_utils.py:301-303), only the class's own
    # fields are passed; a field that an emitted flag sets must exist, though
    names = {f.name for f in dataclasses.fields(cls)}
    emitted = {FLAGS[f][1] for f in flags if f in FLAGS}
    extra = sorted(k for k in kw if k not in names and k in emitted)
    if extra:
        raise Refused(f"{cls.__name__} has no field(s) {extra} for the emitted flags (megatron-core {MCORE})")
    kw = {k: v for k, v in kw.items() if k in names}
    try:
        return cls(**kw)
    except Exception as e:
        raise Refused(f"{cls.__name__}: {where(e)}{type(e).__name__}: {e}") from None


def where(exc):
    """'file.py:LINE: ' of the innermost megatron frame of an exception."""
    tb = traceback.extract_tb(exc.__traceback__)
    for fr in reversed(tb):
        if fr.filename.startswith(MCORE_DIR):
            return f"{os.path.relpath(fr.filename, os.path.dirname(MCORE_DIR))}:{fr.lineno}: "
    return ""


def run_until(fn, code_file, last_check_marker, what):
    """Run a constructor that cannot finish here (no GPU kernels); a check passes when it
    stops after the source line that holds last_check_marker, in that constructor."""
    with open(code_file) as f:
        lines = f.read().split("\n")
    marks = [i + 1 for i, l in enumerate(lines) if last_check_marker in l]
    if not marks:
        raise RuntimeError(f"{what}: marker {last_check_marker!r} not in {code_file} (megatron-core changed)")
    mark = marks[0]
    try:
        fn()
        return "ran to the end"
    except Exception as e:
        tb = traceback.extract_tb(e.__traceback__)
        in_ctor = [fr for fr in tb if os.path.samefile(fr.filename, code_file) and fr.name == "__init__"]
        if not in_ctor:
            raise Refused(f"{what}: {type(e).__name__}: {e}") from None
        line = in_ctor[0].lineno
        rel = os.path.relpath(code_file, os.path.dirname(MCORE_DIR))
        if line <= mark:
            raise Refused(f"{what}: {rel}:{line}: {type(e).__name__}: {e}") from None
        return f"checks passed; stopped later at {rel}:{line} ({type(e).__name__})"


# ---- the checks -----------------------------------------------------------------------
def fake_world(rank, world):
    if dist.is_initialized():
        ps.destroy_model_parallel()
        dist.destroy_process_group()
    dist.init_process_group("fake", store=FakeStore(), rank=rank, world_size=world)


def init_parallel(kw, order, rank, world):
    fake_world(rank, world)
    try:
        ps.initialize_model_parallel(
            tensor_model_parallel_size=kw.get("tensor_model_parallel_size", 1),
            pipeline_model_parallel_size=kw.get("pipeline_model_parallel_size", 1),
            virtual_pipeline_model_parallel_size=kw.get("virtual_pipeline_model_parallel_size"),
            context_parallel_size=kw.get("context_parallel_size", 1),
            hierarchical_context_parallel_sizes=kw.get("hierarchical_context_parallel_sizes"),
            expert_model_parallel_size=kw.get("expert_model_parallel_size", 1),
            expert_tensor_parallel_size=kw.get("expert_tensor_parallel_size"),
            order=order,
            create_gloo_process_groups=False,
        )
    except Exception as e:
        raise Refused(f"initialize_model_parallel(rank {rank} of {world}, order {order}): {where(e)}{type(e).__name__}: {e}") from None


def check_mamba(cfg):
    from megatron.core.process_groups_config import ProcessGroupCollection
    from megatron.core.ssm import mamba_mixer

    mamba_mixer.HAVE_MAMBA_SSM = True
    mamba_mixer.HAVE_EINOPS = True
    pgc = ProcessGroupCollection.use_mpu_process_groups()
    m = object.__new__(mamba_mixer.MambaMixer)
    return run_until(
        lambda: mamba_mixer.MambaMixer.__init__(m, cfg, submodules=None, d_model=cfg.hidden_size, pg_collection=pgc),
        mamba_mixer.__file__, "nheads must be evenly divisible by ngroups", "MambaMixer.__init__")


def check_dsa_indexer(cfg):
    from megatron.core.transformer.experimental_attention_variant import dsa

    m = object.__new__(dsa.DSAIndexer)
    return run_until(lambda: dsa.DSAIndexer.__init__(m, cfg, submodules=None),
                     dsa.__file__, "self.softmax_scale: float = self.index_head_dim", "DSAIndexer.__init__")


def check_sinkhorn(cfg):
    from megatron.core.transformer.moe.router import TopKRouter

    fake = types.SimpleNamespace(config=cfg, topk=cfg.moe_router_topk, training=True)
    try:
        TopKRouter.sinkhorn_load_balancing(fake, torch.randn(8, cfg.num_moe_experts))
    except Exception as e:
        raise Refused(f"TopKRouter.sinkhorn_load_balancing: {where(e)}{type(e).__name__}: {e}") from None
    return "sinkhorn routing ran on 8 tokens"


def megatron_judges(items, launch=None):
    """Run every check on parsed args. Returns [(ok, desc, detail)] and raises nothing."""
    res = []

    def stage(desc, fn):
        try:
            detail = fn()
            res.append((True, desc, detail))
            return True
        except Refused as e:
            res.append((False, desc, str(e)))
        except Exception as e:  # raised in megatron's code: a refusal; elsewhere: a bug here
            w = where(e)
            res.append((False, desc, f"{w}{type(e).__name__}: {e}" if w else f"the check crashed: {type(e).__name__}: {e}"))
        return False

    st = {}

    def mk():
        st["kw"], st["facts"] = config_kwargs(items)
        return f"{len(items)} flags"

    if not stage("args -> config kwargs (pattern parsed, training derivations)", mk):
        return res
    kw, facts = st["kw"], st["facts"]
    fv = facts["flags"]

    def cfg():
        st["cfg"] = build_config(kw, fv)
        return type(st["cfg"]).__name__

    if not stage("config __post_init__", cfg):
        return res
    # a restated training rule is reported but does not stop Megatron-Core's own checks
    stage("training rules (restated from arguments.py)",
          lambda: training_rules(kw, fv, launch.get("env") if launch else None))
    c = st["cfg"]
    if "--num-layers" in fv and facts["pattern"] is not None:
        def nl():
            if int(fv["--num-layers"][0]) != kw["num_layers"]:
                raise Refused(f"--num-layers {fv['--num-layers'][0]} but the pattern has {kw['num_layers']} layers")
            return f"{kw['num_layers']} layers"
        stage("--num-layers matches get_hybrid_total_layer_count", nl)
    if "--spec" in fv:
        def spec():
            import importlib

            mod, name = fv["--spec"]
            m = importlib.import_module(mod)
            if not hasattr(m, name):
                raise Refused(f"{mod} has no {name}")
            return f"{mod}.{name}"
        stage("--spec names an importable layer spec", spec)

    world = launch["world_size"] if launch else None
    if world:
        order = launch.get("order", "tp-cp-ep-dp-pp")
        pp = kw.get("pipeline_model_parallel_size", 1)
        vpp = kw.get("virtual_pipeline_model_parallel_size")

        def par():
            init_parallel(kw, order, 0, world)
            pp_ranks = dist.get_process_group_ranks(ps.get_pipeline_model_parallel_group())
            ranks = sorted(set(pp_ranks) | {0, world - 1})
            got_stages = []
            notes = []
            for r in ranks:
                init_parallel(kw, order, r, world)
                dp = ps.get_data_parallel_world_size()
                edp = ps.get_expert_data_parallel_world_size()
                if launch.get("dp") is not None and dp != launch["dp"]:
                    raise Refused(f"rank {r}: Megatron dp {dp}, the contract says {launch['dp']}")
                if launch.get("expert_dp") is not None and edp != launch["expert_dp"]:
                    raise Refused(f"rank {r}: Megatron expert dp {edp}, the contract says {launch['expert_dp']}")
                if facts["pattern"] is not None:
                    main = facts["parsed"].main_pattern or ""
                    for v in (range(vpp) if vpp else [None]):
                        try:
                            layers, off = hla.select_pipeline_segment(
                                main, ps.get_pipeline_model_parallel_group(), v,
                                first_stage_layers=kw.get("num_layers_in_first_pipeline_stage"),
                                last_stage_layers=kw.get("num_layers_in_last_pipeline_stage"))
                        except Exception as e:
                            raise Refused(f"select_pipeline_segment(rank {r}, vp {v}): {where(e)}{e}") from None
                        got_stages.append((v or 0, ps.get_pipeline_model_parallel_rank(), off, "".join(layers)))
                if kw.get("cp_comm_type") == "a2a+p2p" or "a2a+p2p" in (kw.get("cp_comm_type") or []):
                    try:
                        ps.get_hierarchical_context_parallel_groups()
                    except Exception as e:
                        raise Refused(f"cp_comm_type a2a+p2p: rank {r}: {where(e)}no hierarchical CP groups (TE's a2a+p2p attention takes them, extensions/transformer_engine.py)") from None
                    notes.append("hierarchical cp groups present")
            st["stages"] = sorted(set(got_stages))
            return f"world {world}, ranks {ranks}, dp {ps.get_data_parallel_world_size()}, expert dp {ps.get_expert_data_parallel_world_size()}" + (f", {notes[0]}" if notes else "")

        if stage(f"initialize_model_parallel on a fake process group", par):
            if launch.get("pipeline_stages") is not None and facts["pattern"] is not None:
                def stg():
                    want = sorted((s["vp_stage"], s["pp_rank"], s["offset"], s["layers"]) for s in launch["pipeline_stages"])
                    if want != st["stages"]:
                        raise Refused(f"select_pipeline_segment gives {st['stages']}, the contract says {want}")
                    return f"{len(want)} (vp stage, pp rank) segments"
                stage("select_pipeline_segment for every (pp rank, vp stage) = contract pipeline_stages", stg)

            def mb():
                from megatron.core.num_microbatches_calculator import ConstantNumMicroBatchesCalculator

                mbs = int(fv.get("--micro-batch-size", ["1"])[0])
                dp = ps.get_data_parallel_world_size()
                gbs = int(fv.get("--global-batch-size", [str(mbs * dp)])[0])
                try:
                    n = ConstantNumMicroBatchesCalculator(gbs, mbs, dp, None, 0).get()
                except Exception as e:
                    raise Refused(f"ConstantNumMicroBatchesCalculator({gbs}, {mbs}, dp {dp}): {where(e)}{e}") from None
                if launch.get("num_microbatches") is not None and n != launch["num_microbatches"]:
                    raise Refused(f"Megatron has {n} microbatches, the contract says {launch['num_microbatches']}")
                return f"{n} microbatches"
            stage("num microbatches (ConstantNumMicroBatchesCalculator)", mb)
    else:
        # no contract: one rank of a world of tp*pp*cp (dp 1) is enough for the model checks
        w = kw.get("tensor_model_parallel_size", 1) * kw.get("pipeline_model_parallel_size", 1) * kw.get("context_parallel_size", 1)
        e = kw.get("expert_model_parallel_size", 1) * kw.get("expert_tensor_parallel_size", 1)
        while w % e:
            w *= 2
        stage(f"initialize_model_parallel on a fake process group (world {w})",
              lambda: (init_parallel(kw, "tp-cp-ep-dp-pp", 0, w), f"world {w}")[1])
        if kw.get("cp_comm_type") == "a2a+p2p" and dist.is_initialized():
            def hcp():
                try:
                    ps.get_hierarchical_context_parallel_groups()
                except Exception as e:
                    raise Refused(f"cp_comm_type a2a+p2p: {where(e)}no hierarchical CP groups") from None
                return "present"
            stage("hierarchical CP groups for a2a+p2p", hcp)

    pattern = facts["pattern"] or ""
    if dist.is_initialized():
        if "M" in pattern:
            stage("MambaMixer.__init__ dimension checks (tp rank 0)", lambda: check_mamba(c))
        if "D" in pattern:
            stage("DSAIndexer.__init__ up to its softmax scale", lambda: check_dsa_indexer(c))
    lbt = kw.get("moe_router_load_balancing_type")
    if "sinkhorn" in (lbt if isinstance(lbt, list) else [lbt]) and "E" in pattern:
        stage("TopKRouter.sinkhorn_load_balancing", lambda: check_sinkhorn(c))
    return res


# ---- driving nam ------------------------------------------------------------------------
def nam(*argv):
    p = subprocess.run([NAM, *argv], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def nam_plan(recipe, sets=()):
    """(rc, args words, launch profile dict, stderr)"""
    extra = []
    for s in sets:
        extra += ["--set", s]
    rc, so, se = nam("args", recipe, "--json", *extra)
    if rc != 0:
        return rc, None, None, se
    js = json.loads(so)
    words = js["args"]
    rc2, so2, se2 = nam("launch", recipe, *extra)
    if rc2 != 0:
        return rc2, words, None, f"nam args accepted, nam launch exited {rc2}: {se2}"
    contract = json.loads(so2)
    if contract.get("generated_native_args") != words:
        return 3, words, None, "nam launch's generated_native_args differ from nam args --json"
    prof = dict(contract.get("launcher_profile") or {})
    policy = contract.get("fixed_policy") or {}
    prof["num_microbatches"] = (policy.get("batch") or {}).get("num_microbatches")
    prof["env"] = dict(policy.get("env") or {})
    if policy.get("launcher_args") != js.get("fixed_policy_args"):
        return 3, words, None, "nam launch's fixed_policy.launcher_args differ from nam args --json fixed_policy_args"
    return 0, words + (js.get("fixed_policy_args") or []), prof, se


def header(path):
    h = {"xcheck": None, "expect": None, "before-fix-set": [], "before-fix-edit": [], "before-fix-env": None,
         "megatron-refuses": None}
    with open(path) as f:
        for line in f:
            if not line.startswith("#"):
                if line.strip():
                    break
                continue
            m = re.match(r"#\s*([a-z-]+):\s*(.*?)\s*$", line)
            if not m or m.group(1) not in h:
                continue
            k, v = m.group(1), m.group(2)
            if k == "before-fix-set":
                h[k] += v.split()
            elif k == "before-fix-edit":
                h[k].append(v.split())
            else:
                h[k] = v
    return h


def report(prefix, results, expect_ok=True):
    for ok, desc, detail in results:
        if ok:
            out("ok", f"{prefix}: {desc}" + (f" ({detail})" if detail else ""))
        else:
            out("FAIL", f"{prefix}: {desc}", f"Megatron refuses what nam accepts: {detail}")


def first_line(s):
    s = [l for l in (s or "").splitlines() if l.strip()]
    return s[0].strip() if s else "(no message)"


def run_plan(path):
    name = os.path.basename(path)
    h = header(path)
    if not h["xcheck"] or h["expect"] not in ("accept", "refuse"):
        out("FAIL", f"megatron {name}", "header needs '# xcheck: ...' and '# expect: accept|refuse'")
        return
    rc, words, prof, err = nam_plan(path)
    if h["expect"] == "accept":
        if rc != 0:
            out("FAIL", f"megatron {name}: nam accepts", f"nam exited {rc}: {first_line(err)}")
            return
        items, unknown = parse_args(words)
        if unknown:
            out("FAIL", f"megatron {name}: every emitted flag is known", f"not in the flag table: {' '.join(unknown)} (add it to FLAGS or LAUNCH_ONLY)")
        else:
            out("ok", f"megatron {name}: every emitted flag is known ({len(items)} flags)")
        report(f"megatron {name}", megatron_judges(items, prof))
        return
    # expect: refuse
    rule = h["megatron-refuses"] or ""
    rc0, words0, prof0, err0 = nam_plan(path, h["before-fix-set"])
    if rc0 != 0:
        out("FAIL", f"megatron {name}: before-fix args", f"nam refuses the variant {' '.join(h['before-fix-set'])}: {first_line(err0)}")
    else:
        try:
            items0 = edit_args(parse_args(words0)[0], h["before-fix-edit"])
        except ValueError as e:
            items0 = None
            out("FAIL", f"megatron {name}: before-fix args", str(e))
        if items0 is not None:
            if h["before-fix-env"] is not None:  # the environment as the recipe wrote it
                prof0 = dict(prof0, env=dict(kv.split("=", 1) for kv in h["before-fix-env"].split(",") if kv))
            res0 = megatron_judges(items0, prof0)
            bad = [d for ok, _, d in res0 if not ok]
            hit = [d for d in bad if re.search(rule, d)]
            if hit:
                out("ok", f"megatron {name}: Megatron refuses the before-fix args ({hit[0]})")
            elif bad:
                out("FAIL", f"megatron {name}: Megatron refuses the before-fix args", f"refused, but not by /{rule}/: {bad[0]}")
            else:
                out("FAIL", f"megatron {name}: Megatron refuses the before-fix args", f"Megatron accepts them; /{rule}/ did not fire")
    if rc == 1:
        out("ok", f"megatron {name}: nam refuses it ({first_line(err)})")
        return
    if rc != 0:
        out("FAIL", f"megatron {name}: nam refuses it or emits args Megatron accepts", f"nam exited {rc}: {first_line(err)}")
        return
    items, unknown = parse_args(words)
    res = megatron_judges(items, prof)
    bad = [d for ok, _, d in res if not ok]
    if unknown:
        bad.insert(0, f"unknown flags {' '.join(unknown)}")
    if bad:
        out("FAIL", f"megatron {name}: nam refuses it or emits args Megatron accepts", f"nam accepts it and Megatron refuses: {bad[0]}")
    else:
        out("ok", f"megatron {name}: nam accepts it with the fix and Megatron accepts the emitted args ({len(res)} checks)")


def main():
    global NAM
    if len(sys.argv) < 2:
        print("usage: xcheck_megatron.py NAM_BIN [PLAN_DIR]", file=sys.stderr)
        return 2
    NAM = os.path.abspath(sys.argv[1])
    plan_dir = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "megatron_plans")
    if not os.access(NAM, os.X_OK):
        out("FAIL", "megatron cross-check", f"{NAM} is not an executable nam")
        return 1
    shim_te()
    print(f"# megatron-core {MCORE}, torch {torch.__version__} (CPU), Transformer Engine taken as {TE_VERSION}; plans in {plan_dir}", flush=True)
    plans = sorted(os.path.join(plan_dir, f) for f in os.listdir(plan_dir) if f.endswith(".recipe"))
    if not plans:
        out("FAIL", "megatron cross-check", f"no *.recipe in {plan_dir}")
    for p in plans:
        try:
            run_plan(p)
        except Exception as e:
            out("FAIL", f"megatron {os.path.basename(p)}", f"the check itself crashed: {type(e).__name__}: {e}")
            traceback.print_exc()
    if dist.is_initialized():
        ps.destroy_model_parallel()
        dist.destroy_process_group()
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
