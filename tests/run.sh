#!/usr/bin/env bash
# tests/run.sh - nam's test runner. `./build.sh test` builds everything, then runs this;
# it reads the build results from build/status/ (see build.sh) and never compiles.
#
#   bash tests/run.sh [STEP...]    steps, in order (default: all of them):
#     compile  the compile tests (C99, C++, NAM_STATIC, two TUs, the planner half alone, the
#              kernel half alone): built and run, one test each
#     core     build/test_core
#     vectors  build/test_vectors $NAM_REFERENCE_DIR (default ../shared/reference)
#     cli      tests/cli_test.sh, when present
#     svg      tests/svg_test.py: `nam plan --svg` pictures parsed and checked against the
#              plan, rendered to PNG by rsvg-convert (skipped when missing)
#     consumers tests/consumers/run.sh: ./build.sh install into a temporary prefix, then a
#              pkg-config, a CMake and a header-only project outside the tree build and run
#              against it (and the CUDA side with nvcc); uninstall leaves nothing behind
#     asan     build/asan/test_core, test_vectors, test_<kernel> and the emulated CUDA tests
#              test_cuda_<part>_emu (ASan + UBSan): sanitizer reruns of checks other steps
#              count, so their lines are counted apart (see the summary below)
#     fuzz     build/fuzz_parsers on a copy of tests/corpus in build/fuzz-corpus for
#              $NAM_FUZZ_SECONDS (default 30) seconds: one test
#     replay   build/fuzz_parsers over every file of tests/corpus: one test
#     kernels  build/test_<kernel> for each kernel (gemm ssd attention moe fpenv m2rnn layers),
#              build/test_fpenv_keep (test_fpenv built with -DNAM_KEEP_SUBNORMALS), the plain-C
#              builds build/nosimd/test_<kernel> (-DNAM_NO_SIMD) and build/test_gemm_cblas
#              (-DNAM_CBLAS; skipped without a CBLAS)
#     xcheck   build/test_<kernel> --dump DIR, then /usr/bin/python3 tests/xcheck_<kernel>.py DIR
#              (torch/numpy cross-checks; skipped with the install command when missing)
#     megatron tests/xcheck_megatron.py NAM_BIN in build/megatron-venv (torch + megatron-core
#              from PyPI, made by build.sh): Megatron-Core's TransformerConfig, hybrid pattern
#              helpers and initialize_model_parallel (fake process group) on the args nam emits
#              for tests/megatron_plans/*.recipe; one skip line when the venv is unavailable
#     cuda     the CUDA side: ptxas register spills of build/obj/nam_cuda.o (none allowed),
#              build/test_cuda_prims and build/test_cuda_<part> on the GPU (each prints one
#              skip line when there is no device), with a device also under
#              compute-sanitizer memcheck, racecheck and synccheck, then the same tests on the emulator
#              (build/*_emu: the kernels' logic, no GPU needed)
#     bench    build/nam-bench-plan --quick and build/nam-bench --quick as smoke runs, and
#              build/nam-bench-cuda --quick (without a device it prints one line
#              "skip nam-bench-cuda: no CUDA device (...)" and exits 0: a skip, not a pass),
#              build/nam-bench-cuda-emu --quick (the GPU bench's logic on the emulator).
#              A smoke run that exits 0 passes unless it printed a skip line: then it is a skip.
#
# Protocol for test programs (and tests/cli_test.sh): each check prints one line on stdout,
#     ok <desc>                 counted as passed
#     FAIL <desc>: <why>        counted as failed
#     skip <desc>: <reason>     echoed, not counted
# anything else is ignored (the C tests print these through tests/test.h, and end with a
# "NAME: N passed, M failed" line of their own). A program that exits nonzero without a FAIL line counts as one
# failure; so does a program that prints no ok, FAIL or skip line at all. Each program runs
# under `timeout ${NAM_TEST_TIMEOUT:-300}`. tests/cli_test.sh runs from the repository root
# with NAM_BIN set to the absolute path of build/nam (also passed as its first argument).
# Output of each run: build/log/run-NAME.out (stdout) and .err (stderr). Set
# NAM_TEST_VERBOSE=1 to echo every line a program prints.
#
# Summary: the line before the last, "checks: N distinct passed, M failed; sanitizer reruns:
# K passed, L failed", splits the counts: the asan step reruns checks that the core,
# vectors, kernels and cuda steps already count (same ok lines, ASan + UBSan builds), so its
# lines are "sanitizer reruns"; every other line is a distinct check (compute-sanitizer's
# one line per program and tool included, and test_fpenv_keep, a different build with other
# expectations). The last line printed is exactly "N passed, M failed", the totals: N is
# distinct + reruns passed, M distinct + reruns failed; the exit status is 1 if M > 0.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

B=build
# Megatron's vectors: $NAM_REFERENCE_DIR, else ../shared/reference beside the checkout,
# else /work/shared/reference (where these machines keep the shared material).
REF=${NAM_REFERENCE_DIR:-../shared/reference}
if [[ -z ${NAM_REFERENCE_DIR:-} && ! -d $REF && -d /work/shared/reference ]]; then REF=/work/shared/reference; fi
FUZZ_SECONDS=${NAM_FUZZ_SECONDS:-30}
TIMEOUT=${NAM_TEST_TIMEOUT:-300}
VERBOSE=${NAM_TEST_VERBOSE:-0}

passed=0
failed=0
rerun=0          # 1 while the asan step runs: its counts also go to rerun_passed / rerun_failed
rerun_passed=0
rerun_failed=0
details=()   # failure explanations, printed before the summary line

pass() {
    passed=$((passed + 1))
    if ((rerun)); then rerun_passed=$((rerun_passed + 1)); fi
    echo "ok   $1"
}
# fail DESC [DETAIL-FILE...]: one failure; the tail of each file goes into the details
fail() {
    local desc=$1 f
    shift
    failed=$((failed + 1))
    if ((rerun)); then rerun_failed=$((rerun_failed + 1)); fi
    echo "FAIL $desc"
    details+=("FAIL $desc")
    for f in "$@"; do
        [[ -s $f ]] || continue
        details+=("  --- tail of $f:" "$(tail -n 25 "$f" | sed 's/^/  | /')")
    done
}
skip() { echo "skip $1"; }

# built NAME DESC: true when build.sh built NAME; otherwise reports DESC as failed or
# skipped (according to build/status/NAME) and returns 1.
built() {
    local name=$1 desc=$2 st
    st=$(cat "$B/status/$name" 2>/dev/null || echo "not built (run ./build.sh first)")
    case $st in
    ok) return 0 ;;
    skip\ *) skip "$desc: ${st#skip }" ;;
    fail) fail "$desc: build failed" "$B/log/$name.log" ;;
    *) fail "$desc: $st" ;;
    esac
    return 1
}

# run_prog NAME DESC COMMAND...: run a program that speaks the protocol and count its lines.
run_prog() {
    local name=$1 desc=$2 out=$B/log/run-$1.out err=$B/log/run-$1.err
    shift 2
    local rc=0 ok=0 nfail=0 nskip=0 line t0=$SECONDS
    timeout "$TIMEOUT" "$@" >"$out" 2>"$err" </dev/null || rc=$?
    while IFS= read -r line || [[ -n $line ]]; do
        if [[ $VERBOSE == 1 ]]; then echo "  $line"; fi
        case $line in
        ok | "ok "*) ok=$((ok + 1)) ;;
        FAIL | "FAIL "* | "FAIL:"*)
            nfail=$((nfail + 1))
            details+=("$desc: $line")
            if [[ $VERBOSE != 1 ]]; then echo "  $line"; fi ;;
        skip | "skip "* | "skip:"*)
            nskip=$((nskip + 1))
            if [[ $VERBOSE != 1 ]]; then echo "  $line"; fi ;;
        esac
    done <"$out"
    passed=$((passed + ok))
    failed=$((failed + nfail))
    if ((rerun)); then
        rerun_passed=$((rerun_passed + ok))
        rerun_failed=$((rerun_failed + nfail))
    fi
    local mark=ok
    if ((nfail || rc || ok + nskip == 0)); then mark=FAIL; fi
    printf '%-5s%s: %d ok, %d FAIL, %d skip (%ds)\n' "$mark" \
        "$desc" "$ok" "$nfail" "$nskip" $((SECONDS - t0))
    if ((nfail == 0 && rc != 0)); then
        local why="exited with status $rc"
        if ((rc == 124)); then why="timed out after ${TIMEOUT}s"; fi
        if ((rc > 128)); then why="killed by signal $((rc - 128))"; fi
        fail "$desc: $why without a FAIL line" "$err"
    elif ((nfail)); then
        if [[ -s $err ]]; then details+=("  --- tail of $err:" "$(tail -n 25 "$err" | sed 's/^/  | /')"); fi
    elif ((ok + nskip == 0)); then
        fail "$desc: printed no ok, FAIL or skip line" "$err"
    fi
    return 0
}

step_compile() {
    local t desc
    for t in c99:"C99 -pedantic, nam.h included twice around NAM_IMPLEMENTATION" \
             cxx:"C++11, nam.h included twice around NAM_IMPLEMENTATION" \
             clangxx:"clang++ C++11, nam.h included twice around NAM_IMPLEMENTATION" \
             static:"NAM_STATIC" \
             two-tu:"two translation units linked" \
             planner-only:"the planner half alone (NAM_NO_KERNELS)" \
             kernels-only:"the kernel half alone (NAM_NO_PLANNER, no stb_ds)"; do
        desc="compile ${t%%:*}: ${t#*:}"
        local name=compile-${t%%:*} bin
        case ${t%%:*} in c99) bin=impl_c ;; cxx) bin=impl_cxx ;; clangxx) bin=impl_clangxx ;; static) bin=static ;; two-tu) bin=two_tu ;;
        planner-only) bin=planner_only ;; kernels-only) bin=kernels_only ;; esac
        built "$name" "$desc" || continue
        local rc=0
        timeout "$TIMEOUT" "$B/compile/$bin" >"$B/log/run-$name.out" 2>&1 || rc=$?
        if ((rc == 0)); then pass "$desc"
        else fail "$desc: built, but $B/compile/$bin exited with status $rc" "$B/log/run-$name.out"; fi
    done
}

step_core() {
    if built test_core "test_core"; then run_prog test_core "test_core" "$B/test_core"; fi
}

step_vectors() {
    if built test_vectors "test_vectors"; then
        run_prog test_vectors "test_vectors" "$B/test_vectors" "$REF"
    fi
}

step_cli() {
    if [[ ! -f tests/cli_test.sh ]]; then
        skip "cli tests: tests/cli_test.sh not present"
        return 0
    fi
    built nam "cli tests (build/nam)" || return 0
    NAM_BIN=$PWD/$B/nam
    export NAM_BIN
    run_prog cli "cli tests" bash tests/cli_test.sh "$NAM_BIN"
}

step_asan() {
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    rerun=1
    if built asan-test_core "asan test_core"; then
        run_prog asan-test_core "asan test_core" "$B/asan/test_core"
    fi
    if built asan-test_vectors "asan test_vectors"; then
        run_prog asan-test_vectors "asan test_vectors" "$B/asan/test_vectors" "$REF"
    fi
    local k
    for k in $KERNELS; do
        if built asan-test_$k "asan test_$k"; then run_prog asan-test_$k "asan test_$k" "$B/asan/test_$k"; fi
    done
    for k in $CUDA_PARTS; do
        if built asan-test_cuda_${k}_emu "asan test_cuda_$k (emulator)"; then
            run_prog asan-test_cuda_${k}_emu "asan test_cuda_$k (emulator)" "$B/asan/test_cuda_${k}_emu"
        fi
    done
    rerun=0
}

# fuzz_crash LOG: the artifact libFuzzer wrote (crash-*, leak-*, timeout-*, oom-*), if any
fuzz_crash() { sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$1" | tail -n 1; }
# fuzz_error LOG: the first sanitizer / libFuzzer / invariant report with a little context
fuzz_error() {
    grep -a -m 1 -B 2 -A 14 -E '==[0-9]+==ERROR|runtime error:|invariant failed|deadly signal|ALARM: working on the last Unit|out-of-memory' "$1" || true
}

step_fuzz() {
    local desc="fuzz: ${FUZZ_SECONDS}s on a copy of tests/corpus" log=$B/log/fuzz.log rc=0 crash
    built fuzz_parsers "fuzz" || return 0
    mkdir -p "$B/fuzz-corpus" "$B/fuzz-artifacts"
    cp tests/corpus/* "$B/fuzz-corpus/"
    timeout $((FUZZ_SECONDS + 120)) "$B/fuzz_parsers" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 \
        -timeout=25 -print_final_stats=1 -artifact_prefix="$B/fuzz-artifacts/" "$B/fuzz-corpus" \
        >"$log" 2>&1 </dev/null || rc=$?
    if ((rc == 0)); then
        pass "$desc ($(grep -ao 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?') runs, corpus in $B/fuzz-corpus)"
    else
        crash=$(fuzz_crash "$log")
        fuzz_error "$log" >"$log.error"
        [[ -s $log.error ]] || cp "$log" "$log.error"
        if [[ -n $crash ]]; then
            fail "$desc: ${crash##*/} (reproduce: $B/fuzz_parsers $crash)" "$log.error"
        else
            fail "$desc: fuzzer exited with status $rc" "$log.error"
        fi
    fi
}

step_replay() {
    local desc="fuzz corpus replay: tests/corpus under ASan/UBSan" log=$B/log/fuzz-replay.log rc=0 file
    built fuzz_parsers "fuzz corpus replay" || return 0
    mkdir -p "$B/fuzz-artifacts"
    timeout "$TIMEOUT" "$B/fuzz_parsers" -rss_limit_mb=2048 -artifact_prefix="$B/fuzz-artifacts/" \
        tests/corpus/* >"$log" 2>&1 </dev/null || rc=$?
    if ((rc == 0)); then
        pass "$desc ($(find tests/corpus -type f | wc -l) files)"
    else
        file=$(sed -n 's/^Running: \(.*\)$/\1/p' "$log" | tail -n 1)
        fuzz_error "$log" >"$log.error"
        [[ -s $log.error ]] || cp "$log" "$log.error"
        fail "$desc: failed on ${file:-an unknown input} (reproduce: $B/fuzz_parsers $file)" "$log.error"
    fi
}

# A smoke run that exits 0 passes, unless it printed a protocol skip line (nam-bench-cuda
# without a device: "skip nam-bench-cuda: no CUDA device (...)"): then it is a skip.
step_bench() {
    local b rc note why
    for b in nam-bench-plan nam-bench nam-bench-cuda nam-bench-cuda-emu; do
        rc=0
        built $b "bench smoke: build/$b" || continue
        timeout "$TIMEOUT" "$B/$b" --quick >"$B/log/run-$b.out" 2>&1 </dev/null || rc=$?
        case $b in
        nam-bench | nam-bench-cuda-emu) note=" (each kernel validated against its reference first)" ;;
        nam-bench-cuda) note=" (ran on the GPU)" ;;
        *) note="" ;;
        esac
        why=$(sed -n 's/^skip [^:]*: //p' "$B/log/run-$b.out" | head -n 1)
        if ((rc == 0)) && [[ -n $why ]]; then skip "bench smoke: build/$b --quick: $why"
        elif ((rc == 0)); then pass "bench smoke: build/$b --quick$note"
        else fail "bench smoke: build/$b --quick: exited with status $rc" "$B/log/run-$b.out"; fi
    done
}

CUDA_PARTS="ssd moe attention m2rnn"
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
# ptxas -v of the sm_90a build: "Compiling entry function 'X' for 'sm_90a'" then
# "N bytes stack frame, N bytes spill stores, N bytes spill loads". One test: no spills.
step_cuda() {
    local p log=$B/log/nam_cuda.log
    if built nam_cuda "cuda: nam_cuda.cu builds for sm_80, sm_90a and compute_90"; then
        pass "cuda: nam_cuda.cu builds for sm_80, sm_90a and compute_90 (nvcc -Werror all-warnings)"
        local spills nk
        spills=$(awk '/Compiling entry function/ { fn = $0; sub(/.*function .\047?/, "", fn); sub(/\047? for .*/, "", fn); arch = $0; sub(/.* for ./, "", arch); sub(/.$/, "", arch) }
                      /spill stores/ { if ($5 + 0 > 0 || $9 + 0 > 0) print arch ": " fn ": " $0 }' "$log" | sed 's/ptxas info *: *//')
        # per-kernel registers / shared memory / spills of the sm_90a build, demangled
        awk '/Compiling entry function/ { fn = $0; sub(/.*function .\047?/, "", fn); sub(/\047? for .*/, "", fn); keep = ($0 ~ /sm_90a/) }
             keep && /spill stores/ { sp = $5 "/" $9 }
             keep && /Used [0-9]+ registers/ { r = $0; sub(/.*Used /, "", r); sub(/ registers.*/, "", r); sm = "0"; if ($0 ~ /bytes smem/) { sm = $0; sub(/ bytes smem.*/, "", sm); sub(/.* /, "", sm) }
                                               printf "%4s regs  %6s B smem  spill st/ld %s  %s\n", r, sm, sp, fn; keep = 0 }' "$log" \
            | { command -v c++filt >/dev/null 2>&1 && c++filt || cat; } >"$B/log/cuda-ptxas.txt"
        nk=$(grep -c 'Compiling entry function' "$log" || true)
        if ((nk == 0)); then skip "cuda: register spills: nam_cuda.cu has no kernels"
        elif [[ -z $spills ]]; then pass "cuda: no register spills in any of $nk kernel builds (ptxas -v; sm_90a table in $B/log/cuda-ptxas.txt)"
        else
            echo "$spills" >"$B/log/cuda-spills.txt"
            fail "cuda: register spills in $(echo "$spills" | wc -l) kernel builds" "$B/log/cuda-spills.txt"
        fi
    fi
    if built cuda-host-exit-guard "cuda: the host-exit guard"; then
        pass "cuda: the host-exit guard flags a host call of a __device__ helper (tests/compile/host_calls_device.cu; nam_cuda.o, test_cuda_prims.o and bench_cuda.o pass it)"
    fi
    if built test_cuda_prims "test_cuda_prims"; then run_prog test_cuda_prims "test_cuda_prims (GPU)" "$B/test_cuda_prims"; fi
    for p in $CUDA_PARTS; do
        if built test_cuda_$p "test_cuda_$p"; then run_prog test_cuda_$p "test_cuda_$p (GPU)" "$B/test_cuda_$p"; fi
    done
    # On a GPU: the same tests under compute-sanitizer (memcheck, racecheck, synccheck)
    if grep -q '^ok ' "$B/log/run-test_cuda_prims.out" 2>/dev/null; then
        local san tool
        san=$(command -v compute-sanitizer || echo "$CUDA_HOME/bin/compute-sanitizer")
        if [[ ! -x $san ]]; then
            skip "compute-sanitizer: not found (PATH or $CUDA_HOME/bin; Debian/NVIDIA package cuda-sanitizer-13-0)"
        else
            for tool in memcheck racecheck synccheck; do
                for p in prims $CUDA_PARTS; do
                    built test_cuda_$p "compute-sanitizer $tool test_cuda_$p" || continue
                    local out=$B/log/sanitizer-$tool-$p.log rc=0
                    timeout $((TIMEOUT * 4)) "$san" --tool "$tool" --error-exitcode 99 "$B/test_cuda_$p" >"$out" 2>&1 </dev/null || rc=$?
                    if ((rc == 0)) && grep -q 'ERROR SUMMARY: 0 errors' "$out"; then pass "compute-sanitizer $tool: test_cuda_$p clean"
                    else fail "compute-sanitizer $tool: test_cuda_$p (status $rc)" "$out"; fi
                done
            done
        fi
    else
        skip "compute-sanitizer (memcheck, racecheck, synccheck): needs a CUDA device"
    fi
    if built test_cuda_prims_emu "test_cuda_prims_emu"; then run_prog test_cuda_prims_emu "test_cuda_prims (emulator)" "$B/test_cuda_prims_emu"; fi
    for p in $CUDA_PARTS; do
        if built test_cuda_${p}_emu "test_cuda_${p}_emu"; then run_prog test_cuda_${p}_emu "test_cuda_$p (emulator)" "$B/test_cuda_${p}_emu"; fi
    done
}

KERNELS="gemm ssd attention moe fpenv m2rnn layers"
# The kernel tests: fast paths against their references, edge shapes, bad input; the
# FP-environment test also built with -DNAM_KEEP_SUBNORMALS (test_fpenv_keep).
step_kernels() {
    local k
    for k in $KERNELS; do
        if built test_$k "test_$k"; then run_prog test_$k "test_$k" "$B/test_$k"; fi
    done
    if built test_fpenv_keep "test_fpenv (NAM_KEEP_SUBNORMALS)"; then
        run_prog test_fpenv_keep "test_fpenv (NAM_KEEP_SUBNORMALS)" "$B/test_fpenv_keep"
    fi
    for k in $KERNELS; do   # the plain-C paths: built with NAM_NO_SIMD
        if built nosimd-test_$k "test_$k (NAM_NO_SIMD)"; then run_prog nosimd-test_$k "test_$k (NAM_NO_SIMD)" "$B/nosimd/test_$k"; fi
    done
    if built test_gemm_cblas "test_gemm (NAM_CBLAS)"; then run_prog test_gemm_cblas "test_gemm (NAM_CBLAS)" "$B/test_gemm_cblas"; fi
}

# Cross-checks against implementations we did not write: build/test_<k> --dump DIR writes
# inputs and nam's outputs, then Debian's /usr/bin/python3 (torch 1.13 / numpy) recomputes.
step_xcheck() {
    local k py=${NAM_XCHECK_PYTHON:-/usr/bin/python3}
    if [[ ! -x $py ]] || ! "$py" -c 'import numpy' >/dev/null 2>&1; then
        skip "cross-checks: $py with numpy not available (as root: apt-get install -y python3-numpy python3-torch)"
        return 0
    fi
    for k in $KERNELS; do
        [[ -f tests/xcheck_$k.py ]] || continue
        built test_$k "xcheck $k" || continue
        rm -rf "$B/xcheck/$k"
        mkdir -p "$B/xcheck/$k"
        if ! "$B/test_$k" --dump "$B/xcheck/$k" >"$B/log/dump-$k.out" 2>&1; then
            fail "xcheck $k: build/test_$k --dump failed" "$B/log/dump-$k.out"
            continue
        fi
        run_prog xcheck-$k "xcheck $k ($py)" "$py" "tests/xcheck_$k.py" "$B/xcheck/$k"
    done
}

# Megatron-Core's own code on nam's emitted args (tests/xcheck_megatron.py, plans in
# tests/megatron_plans/), in the venv build.sh's setup_megatron makes (build/status/megatron-venv
# says why when it could not: then one skip line).
step_megatron() {
    built megatron-venv "megatron cross-check" || return 0
    built nam "megatron cross-check (build/nam)" || return 0
    run_prog xcheck-megatron "megatron cross-check (megatron-core on nam's args)" \
        "$B/megatron-venv/bin/python" tests/xcheck_megatron.py "$B/nam"
}

# `nam plan --svg`: tests/svg_test.py (python3's xml.etree, rsvg-convert for the PNG)
step_svg() {
    local py=${NAM_SVG_PYTHON:-/usr/bin/python3}
    [[ -x $py ]] || py=$(command -v python3 || true)
    if [[ -z $py ]]; then
        skip "svg tests: python3 not found (sudo apt-get install -y python3)"
        return 0
    fi
    built nam "svg tests (build/nam)" || return 0
    run_prog svg "svg: nam plan --svg" "$py" tests/svg_test.py "$PWD/$B/nam"
}

# Projects outside the tree that take nam in: tests/consumers/run.sh. It compiles (CMake,
# make, nvcc) and installs into a temporary prefix, so it gets twice the usual time.
step_consumers() {
    local TIMEOUT=$((TIMEOUT * 2))
    run_prog consumers "consumers: install, pkg-config, CMake, vendored" bash tests/consumers/run.sh
}

# A failed program build that no step reports (build/nam without cli tests) still fails.
# build.sh's kernel stamp (nam_kernels_stamp): what the kernel targets read of nam.h. An
# edit to the planner half must leave it untouched (so no CUDA object or kernel test
# rebuilds), an edit to the kernel half must change it. Checked on copies of nam.h.
stamp_check() {
    local tmp desc="build: an edit to the planner half leaves the kernel targets' part of nam.h (build/stamp/nam-kernels.h) unchanged; an edit to the kernel half changes it"
    tmp=$(mktemp -d)
    (
        set -e
        eval "$(sed -n '/^nam_kernels_stamp()/,/^}/p' build.sh)"
        B=$tmp
        mkdir -p "$tmp/stamp" "$tmp/src"
        cp nam.h "$tmp/src/nam.h"
        cd "$tmp/src"
        nam_kernels_stamp && cp "$tmp/stamp/nam-kernels.h" "$tmp/base"
        grep -q 'nam_attention_workspace_size' "$tmp/base" && grep -q '^/\* >>kernel-m2rnn' "$tmp/base" || { echo "the stamp misses the kernel half"; exit 1; }
        ! grep -q '^NAM_API nam_status nam_plan_make' "$tmp/base" || { echo "the stamp holds planner code"; exit 1; }
        touch -d '2000-01-01' "$tmp/stamp/nam-kernels.h"
        sed -i '/^#define NAM__PLANNER_IMPLEMENTATION_DONE/a /* a planner edit */' nam.h
        sed -i '0,/^\/\* >>ranks/s//\/* >>ranks (edited) /' nam.h
        nam_kernels_stamp
        [[ $(stat -c %Y "$tmp/stamp/nam-kernels.h") == $(date -d '2000-01-01' +%s) ]] || { echo "a planner edit rewrote the stamp"; exit 1; }
        sed -i '0,/^\/\* >>kernel-common/s//\/* >>kernel-common (edited) /' nam.h
        nam_kernels_stamp
        ! cmp -s "$tmp/base" "$tmp/stamp/nam-kernels.h" || { echo "a kernel edit left the stamp as it was"; exit 1; }
    ) >"$B/log/run-stamp.out" 2>&1 && pass "$desc" || fail "$desc" "$B/log/run-stamp.out"
    rm -rf "$tmp"
}

step_build() {
    stamp_check
    if [[ ! -f tests/cli_test.sh ]]; then
        case $(cat "$B/status/nam" 2>/dev/null) in
        ok) echo "     build/nam built (its tests live in tests/cli_test.sh, not present yet)" ;;
        fail) fail "build nam: examples/nam.c does not build" "$B/log/nam.log" ;;
        *) fail "build nam: $(cat "$B/status/nam" 2>/dev/null || echo 'not built')" ;;
        esac
    fi
}

steps=("$@")
((${#steps[@]})) || steps=(build compile core vectors cli svg consumers kernels xcheck megatron cuda asan fuzz replay bench)
for s in "${steps[@]}"; do
    case $s in
    build | compile | core | vectors | cli | svg | consumers | kernels | xcheck | megatron | cuda | asan | fuzz | replay | bench)
        echo "== $s"
        "step_$s" ;;
    *) echo "tests/run.sh: unknown step '$s'" >&2; exit 2 ;;
    esac
done

if ((failed)); then
    echo
    echo "== failures"
    printf '%s\n' "${details[@]}"
fi
echo "checks: $((passed - rerun_passed)) distinct passed, $((failed - rerun_failed)) failed; sanitizer reruns: $rerun_passed passed, $rerun_failed failed"
echo "$passed passed, $failed failed"
((failed == 0))
