#!/usr/bin/env bash
# tests/cli_test.sh - end-to-end tests of the `nam` command (protocol: ok / FAIL / skip lines).
# Usage: tests/cli_test.sh [path/to/nam]   (default: $NAM_BIN or build/nam)
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.."
NAM=${1:-${NAM_BIN:-build/nam}}
NAM=$(cd "$(dirname "$NAM")" && pwd)/$(basename "$NAM")
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
failed=0

ok() { echo "ok $1"; }
fail() { echo "FAIL $1: $2"; failed=1; }

# expect_rc DESC WANT CMD...: run CMD, compare its exit status; keep stdout/stderr in $T
expect_rc() {
    local desc=$1 want=$2 rc
    shift 2
    "$@" >"$T/out" 2>"$T/err"
    rc=$?
    if [[ $rc == "$want" ]]; then ok "$desc"; else fail "$desc" "exit $rc, want $want; stderr: $(head -c 300 "$T/err")"; fi
}
# expect_grep DESC FILE PATTERN: fixed-string search
expect_grep() {
    if grep -qF -- "$3" "$2"; then ok "$1"; else fail "$1" "'$3' not in $(basename "$2"): $(head -c 300 "$2")"; fi
}

have_py=0
if command -v python3 >/dev/null 2>&1; then have_py=1; fi
# pycheck DESC FILE PYTHON-EXPR (d = the parsed JSON of FILE)
pycheck() {
    if [[ $have_py == 0 ]]; then echo "skip $1: python3 not available for JSON checks"; return; fi
    if python3 - "$2" "$3" <<'EOF' 2>"$T/pyerr"; then ok "$1"; else fail "$1" "$(tail -c 300 "$T/pyerr")"; fi
import json, sys
d = json.load(open(sys.argv[1]))
assert eval(sys.argv[2]), sys.argv[2]
EOF
}

# --- usage -------------------------------------------------------------------------
expect_rc "--help exits 0" 0 "$NAM" --help
expect_grep "--help shows usage" "$T/out" "usage: nam"
expect_rc "--version exits 0" 0 "$NAM" --version
expect_grep "--version prints the version" "$T/out" "nam 0."
expect_rc "no command is a usage error" 2 "$NAM"
expect_rc "unknown command is a usage error" 2 "$NAM" frobnicate
expect_rc "unknown option is a usage error" 2 "$NAM" plan --frob
expect_rc "missing option value is a usage error" 2 "$NAM" plan --tp
expect_rc "non-integer flag value is a usage error" 2 "$NAM" ranks --world 8x --tp 1 --pp 1
expect_rc "--set without '=' is a usage error" 2 "$NAM" plan --set tp
expect_rc "--set of an unknown key is an input error" 2 "$NAM" plan --set parallel.bogus=1
expect_grep "--set error names the key" "$T/err" "parallel.bogus"

# --- plan -----------------------------------------------------------------------------
expect_rc "plan on the built-in NAM56R exits 0" 0 "$NAM" plan
expect_grep "plan shows the counts" "$T/out" "A=13 E=22 M=13 R=4"
expect_grep "plan shows the recurrent-tail seam" "$T/out" "recurrent-tail"
expect_grep "plan withholds the native pattern" "$T/out" "withheld"
expect_rc "plan --json exits 0" 0 "$NAM" plan --json
cp "$T/out" "$T/plan.json"
pycheck "plan --json: depth, counts, r_layer_indices" "$T/plan.json" \
    'd["depth"] == 52 and d["counts"] == {"A": 13, "E": 22, "F": 0, "M": 13, "R": 4} and d["r_layer_indices"] == [11, 23, 35, 47]'
pycheck "plan --json: layers carry index, family, native, stage, seam" "$T/plan.json" \
    'len(d["layers"]) == 52 and d["layers"][11] == {"index": 11, "family": "R", "native": None, "stage": 0, "seam": "recurrent-tail", "column": 12} and d["layers"][0]["native"] == "*"'
pycheck "plan --json: native_pattern null while seams remain; seams listed" "$T/plan.json" \
    'd["native_pattern"] is None and sorted(s["name"] for s in d["seams"]) == ["mamba3-mixer", "recurrent-tail"]'
expect_rc "plan --strict stops at the first R" 1 "$NAM" plan --strict
expect_grep "strict error names token, layer, stage and column" "$T/err" "R at layer 11 (stage 0, pattern column 12)"
expect_rc "plan --strict --json gives an error object" 1 "$NAM" plan --strict --json
pycheck "strict JSON error has layer and stage" "$T/out" 'd["error"]["layer"] == 11 and d["error"]["stage"] == 0 and d["error"]["column"] == 12'
expect_rc "plan with a fully written pattern" 0 "$NAM" plan --pattern 'AEME|AEMR' --map R=G --pp 2 --stages 0 --gbs 64 --json
pycheck "written stage breaks kept in the native pattern" "$T/out" 'd["native_pattern"] == "*EME|*EMG"'
expect_rc "bad pattern letter is refused" 1 "$NAM" plan --pattern 'AEXE'
expect_grep "bad letter error names letter and column" "$T/err" "unknown family 'X' at column 3"
expect_rc "empty pattern is refused" 1 "$NAM" plan --pattern ''
expect_rc "doubled stage break is refused" 1 "$NAM" plan --pattern 'AE||ME'
expect_rc "depth mismatch is refused" 1 "$NAM" plan --pattern 'AEME' --depth 5
expect_grep "depth mismatch names both lengths" "$T/err" "4 layers but the declared depth is 5"
expect_rc "differing MTP copies are refused" 1 "$NAM" plan --motif 'AEMEAEMEAEMR/AE/AM'
expect_rc "absurd depth is an input error" 2 "$NAM" plan --depth 99999999999
expect_rc "tp that does not divide the world is refused" 1 "$NAM" plan --tp 3
expect_grep "parallel error names the values" "$T/err" "world_size 8 is not divisible by tp*pp*cp = 3*2*1"
expect_rc "E without MoE is refused" 1 "$NAM" plan --experts 0 --ep 1
expect_grep "E refusal says it will not become '-'" "$T/err" "refuses to lower an expert layer"

# --- args -------------------------------------------------------------------------------
expect_rc "args in plan mode exits 0 with notes" 0 "$NAM" args
expect_grep "args: custom notes as comments" "$T/out" "# custom seam recurrent-tail"
expect_grep "args: --spec is always emitted" "$T/out" "--spec megatron.core.models.hybrid.hybrid_layer_specs hybrid_stack_spec"
expect_grep "args: explicit position embedding type" "$T/out" "--position-embedding-type rope"
expect_grep "args: GQA flag with query groups" "$T/out" "--group-query-attention"
if grep -q -- "^--hybrid-layer-pattern" "$T/out"; then fail "args: no pattern while seams remain" "pattern emitted"; else ok "args: no pattern while seams remain"; fi
expect_rc "args --strict exits 1 while seams remain" 1 "$NAM" args --strict
expect_rc "args --strict with R bound and Mamba-2 exits 0" 0 "$NAM" args --strict --map R=G --set pattern.mamba_impl=mamba2
cp "$T/out" "$T/args.txt"
expect_grep "args: the binding is recorded" "$T/args.txt" "# decision: explicit binding pattern.map R=G"
line=$(grep -- '^--hybrid-layer-pattern ' "$T/args.txt")
want='*EME*EME*EMG*|EME*EME*EMG*E|ME*EME*EMG*EM|E*EME*EMG*EME/*-'
(cd "$T" && touch 'x*' && eval "set -- $line" && [[ $# == 2 && $2 == "$want" ]]) && ok "args: the pattern is shell-quoted (no globbing, one word)" \
    || fail "args: the pattern is shell-quoted (no globbing, one word)" "$line"
expect_rc "args --json" 0 "$NAM" args --json
pycheck "args --json has args and custom_notes" "$T/out" '"--spec" in d["args"] and len(d["custom_notes"]) == 2 and d["custom_notes"][1]["layers"] == [11, 23, 35, 47]'

# --- launch -------------------------------------------------------------------------------
expect_rc "launch exits 0" 0 "$NAM" launch
pycheck "launch: generated_native_args and fixed_policy are separate fields" "$T/out" \
    'isinstance(d["generated_native_args"], list) and set(d["fixed_policy"]) >= {"pre_import_cache", "recipe_mode", "env", "cuda_graph", "batch", "mtp_depths"}'
pycheck "launch: profile has layout, r_layer_indices and parallel sizes" "$T/out" \
    'd["launcher_profile"]["r_layer_indices"] == [11, 23, 35, 47] and d["launcher_profile"]["vpp"] == 2 and d["launcher_profile"]["dp"] == 2 and len(d["launcher_profile"]["pipeline_stages"]) == 4'

# --- recipe files ---------------------------------------------------------------------------
expect_rc "examples/nam56r.recipe plans" 0 "$NAM" plan examples/nam56r.recipe --json
if cmp -s "$T/out" "$T/plan.json"; then ok "examples/nam56r.recipe equals the built-in default"; else fail "examples/nam56r.recipe equals the built-in default" "plans differ"; fi
printf '[parallel]\ntp = 2\n[model]\nhiden_size = 1\n' >"$T/bad.recipe"
expect_rc "unknown recipe key is an input error" 2 "$NAM" plan "$T/bad.recipe"
expect_grep "recipe error has file:line:column" "$T/err" "bad.recipe:4:1: unknown key 'model.hiden_size'"
printf '[pattern]\ntext = AEMQ\ntile = false\ndepth = 0\nstages = 1\n[parallel]\npp = 1\n' >"$T/badpat.recipe"
expect_rc "bad letter in a recipe file is refused" 1 "$NAM" plan "$T/badpat.recipe"
expect_grep "pattern error in a recipe names the letter and column" "$T/err" "'Q' at column 11"
expect_rc "missing recipe file is an input error" 2 "$NAM" plan "$T/nope.recipe"
head -c 1100000 /dev/zero | tr '\0' 'A' >"$T/huge.recipe"
expect_rc "oversized recipe file is an input error" 2 "$NAM" plan "$T/huge.recipe"
expect_rc "recipe prints every key" 0 "$NAM" recipe
expect_grep "recipe output has the pattern" "$T/out" "text = AEMEAEMEAEMR"

# --- -o is atomic ---------------------------------------------------------------------------
expect_rc "-o writes the file" 0 "$NAM" plan --json -o "$T/o.json"
pycheck "-o output is complete JSON" "$T/o.json" 'd["depth"] == 52'
expect_rc "-o on a refused plan" 1 "$NAM" plan --tp 3 -o "$T/o2.json"
if [[ ! -e $T/o2.json ]] && ! ls "$T"/o2.json.tmp.* >/dev/null 2>&1; then ok "refused run leaves no output or temp file"; else fail "refused run leaves no output or temp file" "$(ls "$T")"; fi
echo old >"$T/o3.json"
expect_rc "-o refused run keeps an existing file" 1 "$NAM" plan --strict -o "$T/o3.json"
expect_grep "existing file untouched" "$T/o3.json" "old"
expect_rc "-o into a missing directory is an input error" 2 "$NAM" plan -o "$T/no/such/dir/x"

# --- ranks -----------------------------------------------------------------------------------
expect_rc "ranks --json" 0 "$NAM" ranks --world 8 --tp 2 --pp 1 --cp 2 --ep 4 --etp 1 --json
pycheck "ranks: dp, expert_dp and groups (megatron.md example)" "$T/out" \
    'd["dp"] == 2 and d["expert_dp"] == 2 and d["decoder"]["tp"][0] == [0, 1] and d["expert"]["ep"] == [[0, 1, 2, 3], [4, 5, 6, 7]] and set(d["decoder"]) == {"tp", "cp", "dp", "pp", "dp-cp", "tp-pp", "tp-cp", "tp-dp", "tp-dp-cp"} and set(d["expert"]) == {"tp", "ep", "tp-ep", "dp", "tp-ep-pp", "pp"}'
expect_rc "ranks --rank" 0 "$NAM" ranks --world 8 --tp 2 --pp 2 --rank 3 --json
pycheck "ranks --rank 3 coordinates" "$T/out" 'd["tp"] == 1 and d["dp"] == 1 and d["pp"] == 0'
expect_rc "ranks --rank with a pattern" 0 "$NAM" ranks --world 8 --tp 2 --pp 2 --rank 5 --pattern 'M-M-|M-M*-|MM|E*' --json
pycheck "ranks: rank 5 (pp 1) owns segments 1 and 3 (vp 0 and 1)" "$T/out" 'd["pp"] == 1 and d["stages"] == [{"vp_stage": 0, "layers": "M-M*-", "offset": 4}, {"vp_stage": 1, "layers": "E*", "offset": 11}]'
expect_rc "ranks --json with a pattern" 0 "$NAM" ranks --world 4 --tp 1 --pp 2 --pattern 'MM|EE' --json
pycheck "ranks: stages_by_pp_rank" "$T/out" 'd["stages_by_pp_rank"] == [[{"vp_stage": 0, "layers": "MM", "offset": 0}], [{"vp_stage": 0, "layers": "EE", "offset": 2}]] and d["dp"] == 2'
expect_rc "ranks with a pattern that does not fit pp" 1 "$NAM" ranks --world 4 --tp 1 --pp 2 --pattern 'MM|EE|M'
expect_rc "ranks with world not divisible" 1 "$NAM" ranks --world 6 --tp 4 --pp 1
expect_rc "ranks without --world is a usage error" 2 "$NAM" ranks --tp 2 --pp 1
expect_rc "ranks with a huge world is a usage error" 2 "$NAM" ranks --world 4294967296 --tp 1 --pp 1

# --- megatron lint ------------------------------------------------------------------------------
expect_rc "megatron lint of a Nemotron-H pattern" 0 "$NAM" megatron --json 'M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M-'
pycheck "megatron: Nemotron-H 8B counts (24 M, 4 *, 24 -)" "$T/out" \
    'd["num_layers"] == 52 and d["counts"]["M"] == 24 and d["counts"]["*"] == 4 and d["counts"]["-"] == 24 and set(d["counts"]) == set("*DGM+-E")'
expect_rc "megatron lint with pp 2 and pipes" 0 "$NAM" megatron --pp 2 --json 'M-M-|M-M*-/MM/MM'
pycheck "megatron: stages, offsets, MTP" "$T/out" \
    'd["stages"] == [{"vp_stage": 0, "pp_rank": 0, "layers": "M-M-", "offset": 0}, {"vp_stage": 0, "pp_rank": 1, "layers": "M-M*-", "offset": 4}] and d["mtp"] == "MM" and d["mtp_depths"] == 2 and d["segments"] == 2'
expect_rc "megatron pattern starting with '-' after --" 0 "$NAM" megatron --json -- '-M-M'
pycheck "megatron: leading MLP layer" "$T/out" 'd["main"] == "-M-M" and d["counts"]["-"] == 2'
expect_rc "megatron: '*' with '+' across MTP is refused" 1 "$NAM" megatron --json 'M*M*/M+'
pycheck "megatron error JSON has code and message" "$T/out" '"Attention and MLA/DSA" in d["error"]["message"] and d["error"]["code"]'
expect_rc "megatron: unknown symbol" 1 "$NAM" megatron 'M*X'
expect_grep "megatron: symbol error names the symbol and column" "$T/err" "'X' is not a valid layer symbol (column 3)"
expect_rc "megatron: pipes with PP 1 are refused" 1 "$NAM" megatron 'M*|M*'
expect_rc "megatron: legacy uneven split" 0 "$NAM" megatron --pp 4 --first 1 --last 1 --json 'M*M*M*M*'
pycheck "megatron: first/last stage layers 1,3,3,1" "$T/out" '[s["offset"] for s in d["stages"]] == [0, 1, 4, 7] and [len(s["layers"]) for s in d["stages"]] == [1, 3, 3, 1]'
expect_rc "megatron: --first 0 is a usage error" 2 "$NAM" megatron --first 0 'M*M*'
expect_rc "megatron: empty pattern is refused" 1 "$NAM" megatron ''

# megatron lint prints the vpp once, on the layers line (issue 8 item 10)
expect_rc "megatron lint with vpp" 0 "$NAM" megatron --pp 2 'M*|M*|M*|M*'
if [[ $(grep -c 'vpp' "$T/out") == 1 ]] && grep -qF 'pp 2, vpp 2' "$T/out"; then ok "megatron lint: the vpp line is printed once"; else fail "megatron lint: the vpp line is printed once" "$(cat "$T/out")"; fi
expect_rc "plan prints vpp once" 0 "$NAM" plan
if [[ $(grep -c 'vpp' "$T/out") == 1 ]]; then ok "plan: the vpp is printed once"; else fail "plan: the vpp is printed once" "$(grep vpp "$T/out")"; fi

# --- the stack recipe: every feature enabled (issue 8 "done when") ---------------------------
R=examples/nam56r-stack.recipe
expect_rc "plan of the stack recipe with every feature exits 0" 0 "$NAM" plan "$R"
for want in "engram               family A, feature, no Megatron flag, layers 0,12,24,36,48 (layer_number 1,13,25,37,49)" \
            "mhc                  family A, feature, no Megatron flag, layers 8,20,32,44" \
            "mod                  family E, feature, no Megatron flag, layers 25,27,29,31,33" \
            "moda                 model, feature, no Megatron flag" \
            "ngram-hash-embedding input embedding, feature" \
            "structure-embedding  input embedding, feature" \
            "m2rnn-mixer          family R, native symbol + custom implementation, layers 11,23,35,47 (layer_number 12,24,36,48)" \
            "mamba3-mixer         family M" \
            "spec      cppmega.megatron.nam56r_full_spec build_cppmega_nam56r_full_stack_spec"; do
    expect_grep "plan of the stack recipe shows: ${want:0:40}" "$T/out" "$want"
done
expect_grep "plan marks the feature layers" "$T/out" "    0  A       +       0       +engram"
expect_rc "args of the stack recipe exits 0" 0 "$NAM" args "$R"
for want in "# custom seam engram (family A, feature, no Megatron flag): layers 0,12,24,36,48 (layer_number 1,13,25,37,49)" \
            "# custom seam mod (family E, feature, no Megatron flag): layers 25,27,29,31,33" \
            "# custom seam moda (model, feature, no Megatron flag)" \
            "# custom seam m2rnn-mixer (family R, native symbol, custom implementation): layers 11,23,35,47" \
            "--spec cppmega.megatron.nam56r_full_spec build_cppmega_nam56r_full_stack_spec" \
            "--no-rope-fusion" "--experimental-attention-variant dsa" "--dsa-indexer-n-heads 32"; do
    expect_grep "args of the stack recipe show: ${want:0:40}" "$T/out" "$want"
done
if grep -E -- '^--(engram|mhc|mod|moda|ngram|structure|m2rnn|mamba3)' "$T/out"; then fail "args: no feature or mixer becomes a flag" "$(grep -E -- '^--(engram|mhc|mod|ngram|structure|m2rnn|mamba3)' "$T/out")"; else ok "args: no feature or mixer becomes a flag"; fi
expect_rc "launch of the stack recipe exits 0" 0 "$NAM" launch "$R"
cp "$T/out" "$T/launch-stack.json"
pycheck "launch: R layers as index and 1-based layer_number" "$T/launch-stack.json" \
    'd["launcher_profile"]["coordinates"]["r_layers"] == {"index": [11, 23, 35, 47], "layer_number": [12, 24, 36, 48]}'
pycheck "launch: DSA layers as index, layer_number and attention-layer rank" "$T/launch-stack.json" \
    'd["launcher_profile"]["coordinates"]["dsa_layers"] == {"index": [4, 16, 28, 40], "layer_number": [5, 17, 29, 41], "attention_rank": [1, 4, 7, 10]}'
pycheck "launch: every seam with its coordinates" "$T/launch-stack.json" \
    '[s["name"] for s in d["launcher_profile"]["coordinates"]["seams"]] == ["mamba3-mixer", "m2rnn-mixer", "engram", "mhc", "mod", "moda", "ngram-hash-embedding", "structure-embedding"] and [s for s in d["launcher_profile"]["coordinates"]["seams"] if s["name"] == "mod"][0]["layer_number"] == [26, 28, 30, 32, 34]'
pycheck "launch: custom notes carry kind, mixer, placement and detail; no spec note with a custom spec" "$T/launch-stack.json" \
    '[n["kind"] for n in d["custom_notes"]].count("feature") == 6 and [n for n in d["custom_notes"] if n["name"] == "m2rnn-mixer"][0]["mixer"] == "m2rnn" and "value_heads=51" in [n for n in d["custom_notes"] if n["name"] == "m2rnn-mixer"][0]["detail"] and d["spec_note"] is None'
expect_rc "launch of the default recipe" 0 "$NAM" launch
pycheck "launch: the stock spec with custom seams carries a note" "$T/out" '"cannot build the custom seam(s) mamba3-mixer" in d["spec_note"]'
expect_rc "the stack recipe in strict mode plans (custom spec)" 0 "$NAM" plan "$R" --mode strict
expect_rc "strict mode with the stock spec is refused" 1 "$NAM" plan "$R" --mode strict --set "model.spec=megatron.core.models.hybrid.hybrid_layer_specs hybrid_stack_spec"
expect_grep "the refusal names the seams" "$T/err" "cannot build the custom seam(s) mamba3-mixer, m2rnn-mixer, engram"

# --- pre-flight (issue 21, first step) -----------------------------------------------------------
expect_rc "plan prints the pre-flight table" 0 "$NAM" plan --map R=M --set preflight.device_memory_gib=16 --set preflight.step_time_s=20
expect_grep "pre-flight: per-rank memory rows" "$T/out" "pp_rank  layers    params/GPU     weights       grads   optimizer     activations       total"
expect_grep "pre-flight: the warning when a rank does not fit" "$T/out" "fits      NO (warning; strict mode refuses)"
expect_grep "pre-flight: MFU line" "$T/out" "MFU "
expect_rc "strict mode refuses a plan that does not fit" 1 "$NAM" plan --map R=G --set pattern.mamba_impl=mamba2 --set preflight.device_memory_gib=16 --strict
expect_grep "the refusal gives the rank and the GiB" "$T/err" "above preflight.device_memory_gib 16"
expect_rc "plan --json carries the pre-flight" 0 "$NAM" plan --json --map R=M
pycheck "plan --json: preflight ranks, params by family, FLOPs" "$T/out" \
    'len(d["preflight"]["ranks"]) == 2 and d["preflight"]["params"]["m2rnn"] > 0 and d["preflight"]["flops_megatron"] > 0 and d["preflight"]["fits"] is None and abs(sum(r["static_bytes"] for r in d["preflight"]["ranks"]) - sum(r["weight_bytes"] + r["grad_bytes"] + r["optimizer_bytes"] for r in d["preflight"]["ranks"])) < 1'

# --- args --compare (issue 21, item 2) --------------------------------------------------------------
expect_rc "args --compare with its own args text: equal, exit 0" 0 sh -c "\"$NAM\" args --map R=G > \"$T/self.args\" && \"$NAM\" args --map R=G --compare \"$T/self.args\""
expect_grep "compare: the summary line" "$T/out" "0 missing in nam, 0 only in nam, 0 differ"
expect_rc "args --compare with a launcher command line: not equal, exit 1" 1 "$NAM" args --map R=G --set pattern.mamba_impl=mamba2 --compare tests/data/megatron-argv.sh
for want in "differs   --max-position-embeddings                    nam 4096 | other 8192" \
            "missing   --lr                                         3e-4" \
            "only-nam  --num-experts                                64" \
            "(renamed from --hybrid-override-pattern)" "(from the legacy --use-rotary-position-embeddings)"; do
    expect_grep "compare shows: ${want:0:50}" "$T/out" "$want"
done
expect_rc "args --compare --json" 1 "$NAM" args --map R=G --set pattern.mamba_impl=mamba2 --compare tests/data/megatron-argv.sh --json
pycheck "compare --json: every verdict, counts, ignored launcher words" "$T/out" \
    'set(f["verdict"] for f in d["flags"]) == {"match", "missing in nam", "only in nam", "differs"} and d["equal"] is False and d["counts"]["differs"] == 1 and d["ignored_words"] == 4 and sum(d["counts"].values()) == len(d["flags"])'
printf -- "--hidden-size 'abc\n" > "$T/bad.argv"
expect_rc "compare: an unterminated quote is an input error" 2 "$NAM" args --compare "$T/bad.argv"
expect_grep "compare: the error names file:line:column" "$T/err" "bad.argv:1:15: an unterminated single quote"
expect_rc "compare: a missing file is an input error" 2 "$NAM" args --compare "$T/none.argv"

[[ $failed == 0 ]]
