#!/usr/bin/env bash
# build.sh - build and test nam. Runs from any directory.
#
#   ./build.sh              build everything into build/
#   ./build.sh test         build, then run the whole test suite (tests/run.sh);
#                           the last line is "N passed, M failed", exit status 1 if M > 0
#   ./build.sh fuzz [secs]  build the fuzzer and fuzz the parsers for secs seconds (300);
#                           new inputs collect in build/fuzz-corpus, and
#                           build/fuzz_parsers -merge=1 tests/corpus build/fuzz-corpus
#                           adds those that reach new code to the committed corpus
#   ./build.sh gpu          on a machine with a GPU: build, then the CUDA tests (with
#                           compute-sanitizer when installed), build/nam-bench-cuda and
#                           bench/bench_sdpa.py (and, with NAM_M2RNN_TRITON=PATH to cppmega's
#                           m2rnn_triton.py, bench/bench_m2rnn_triton.py); everything also lands in build/gpu/
#   ./build.sh clean        remove build/
#   ./build.sh install [PREFIX]    build the CLI, then install nam into PREFIX (/usr/local;
#                           DESTDIR is honoured): include/nam/{nam.h,nam_cuda.cuh,nam_nccl.h},
#                           share/nam/nam_cuda.cu, bin/nam, share/pkgconfig/nam.pc (and
#                           nam-cuda.pc when nvcc is found), share/cmake/nam/namConfig*.cmake
#   ./build.sh uninstall [PREFIX]  remove exactly what `install` writes
#   ./build.sh consumers    build the CLI, then the svg and consumers steps of the tests:
#                           projects outside this tree build against a temporary install
#
# Environment: CC (gcc), CXX (g++), CLANG (clang, fuzzer only), JOBS (nproc),
#   CUDA_HOME (/usr/local/cuda; its bin/nvcc builds the CUDA side when present),
#   NAM_FUZZ_SECONDS (30; fuzzing time within `test`), NAM_REFERENCE_DIR
#   (../shared/reference; Megatron vectors for test_vectors).
#
# Outputs: build/nam (CLI), build/nam-bench, build/test_core, build/test_vectors,
#   build/asan/{test_core,test_vectors} (ASan+UBSan), build/compile/* (compile tests),
#   build/fuzz_parsers (libFuzzer); with nvcc: build/obj/nam_cuda.o (sm_80, sm_90a,
#   compute_90 PTX; ptxas -v in build/log/nam_cuda.log), build/test_cuda_<part> and
#   build/test_cuda_prims (real CUDA; they skip without a device), build/test_cuda_<part>_emu
#   and build/test_cuda_prims_emu (the same tests on the emulator tests/cuda_emu.h),
#   build/nam-bench-cuda. Per target: build/log/NAME.log (compiler output) and
#   build/status/NAME ("ok", "fail", "missing PATH" or "skip REASON"), which tests/run.sh
#   reads. A target is rebuilt when its command line, its sources, a header beside them, or
#   the part of nam.h it reads changed: the kernel targets (CUDA objects, kernel tests and
#   benches, all built with NAM_NO_PLANNER) read only nam.h's common part and kernel half,
#   everything above the planner half's banner, kept in build/stamp/nam-kernels.h (rewritten
#   only when that text changes), so an edit to the planner half rebuilds none of them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

CC=${CC:-gcc}
CXX=${CXX:-g++}
CLANG=${CLANG:-clang}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
B=build

WARN="-Wall -Wextra -Werror"
KERNELS="gemm ssd attention moe fpenv m2rnn layers"   # tests/test_<kernel>.c, tests/xcheck_<kernel>.py
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
NVCC=$CUDA_HOME/bin/nvcc
CUDA_PARTS="ssd moe attention m2rnn"     # tests/test_cuda_<part>.c
CUDA_ARCH="-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90a,code=sm_90a -gencode arch=compute_90,code=compute_90"
ASAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -g -O1"
FUZZ="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -g -O1"

usage() { sed -n '2,/^# Outputs:/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

# ---- setup ---------------------------------------------------------------------------
# need PATH_OR_COMMAND DEBIAN_PACKAGE: install it when root, else say how and exit 2.
need() {
    local what=$1 pkg=$2
    if [[ $what == /* ]]; then [[ -e $what ]] && return 0
    else command -v "$what" >/dev/null 2>&1 && return 0; fi
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: $what is missing; installing $pkg" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update && apt-get install -y "$pkg"
        return 0
    fi
    echo "setup: $what is missing. Install it with:" >&2
    echo "    sudo apt-get install -y $pkg" >&2
    exit 2
}

setup() {
    need /usr/include/stb/stb_ds.h libstb-dev
    [[ $CC == gcc ]] && need gcc gcc
    [[ $CXX == g++ ]] && need g++ g++
    need timeout coreutils
    if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists stb 2>/dev/null; then
        STB_CFLAGS=$(pkg-config --cflags stb)
        STB_LIBS=$(pkg-config --libs stb)
    else
        STB_CFLAGS="-I/usr/include/stb"
        STB_LIBS="-lstb"
    fi
    STB_CFLAGS=${STB_CFLAGS% }
    STB_LIBS="${STB_LIBS% } -lm -lpthread"
    KLIBS="-lm -lpthread"   # the kernel half alone: no stb_ds
    mkdir -p "$B/log" "$B/status" "$B/asan" "$B/nosimd" "$B/compile" "$B/obj" "$B/stamp"
    nam_kernels_stamp
}

# nam_kernels_stamp: build/stamp/nam-kernels.h = nam.h up to the planner half's banner (the
# common part and the kernel half, line for line), rewritten only when that text changed.
# The kernel targets depend on it instead of nam.h (see `target`).
nam_kernels_stamp() {
    local st=$B/stamp/nam-kernels.h banner='^/\* *THE PLANNER HALF'
    sed "\\%$banner%q" nam.h > "$st.new"
    # the cut must hold the kernel half's code; otherwise (no banner, or a moved one) all of nam.h
    grep -q "$banner" "$st.new" && grep -q '^#endif /\* NAM_IMPLEMENTATION \*/' "$st.new" || cp nam.h "$st.new"
    if cmp -s "$st.new" "$st"; then rm -f "$st.new"; else mv -f "$st.new" "$st"; fi
}

# The torch/numpy cross-checks use Debian's /usr/bin/python3 with python3-torch and
# python3-numpy: installed when run as root, otherwise the command is printed and the
# cross-checks are reported as skipped (they are optional, unlike libstb-dev).
setup_xcheck() {
    if [[ -x /usr/bin/python3 ]] && /usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1; then return 0; fi
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing python3-numpy python3-torch for the cross-checks" >&2
        export DEBIAN_FRONTEND=noninteractive
        { apt-get install -y python3-numpy python3-torch || { apt-get update && apt-get install -y python3-numpy python3-torch; }; } >"$B/log/apt-xcheck.log" 2>&1 \
            || echo "setup: could not install them (see $B/log/apt-xcheck.log); the cross-checks will be skipped" >&2
    else
        echo "setup: the cross-checks need: sudo apt-get install -y python3-numpy python3-torch (skipped until then)" >&2
    fi
}


# The Megatron cross-check (tests/xcheck_megatron.py, step "megatron") runs Megatron-Core's own
# code on nam's emitted args. It needs a venv in build/megatron-venv with the pinned PyPI
# packages below. megatron-core >= 0.18 (the first with models/hybrid, the module nam targets)
# requires Python >= 3.12: NAM_MEGATRON_PYTHON, else python3.13/python3.12 on PATH, else a pyenv
# 3.12+. As root the venv is made here (about 75 s and 5.4 GB: torch's CUDA wheels from PyPI,
# since PyPI has no CPU-only torch; reused while the pins match). Otherwise the commands are
# printed and the step is skipped. The outcome goes to build/status/megatron-venv for run.sh.
MEGATRON_PINS="torch==2.15.0 megatron-core==0.19.2"
megatron_python() {
    local c
    for c in ${NAM_MEGATRON_PYTHON:-} python3.13 python3.12 "$HOME"/.pyenv/versions/3.1[2-9]*/bin/python3; do
        [[ -n $c ]] || continue
        if "$c" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
            command -v "$c"
            return 0
        fi
    done
    return 1
}
setup_megatron() {
    local venv=$B/megatron-venv st=$B/status/megatron-venv py free
    mkdir -p "$B/status" "$B/log"
    if [[ -x $venv/bin/python && $(cat "$venv/.nam-pins" 2>/dev/null) == "$MEGATRON_PINS" ]]; then
        echo ok > "$st"
        return 0
    fi
    if ! py=$(megatron_python); then
        echo "skip needs Python >= 3.12 for megatron-core 0.19 (set NAM_MEGATRON_PYTHON), then: python3.12 -m venv $venv && $venv/bin/pip install $MEGATRON_PINS" > "$st"
        echo "setup: the Megatron cross-check needs Python >= 3.12 (skipped)" >&2
        return 0
    fi
    if [[ $(id -u) != 0 ]]; then
        echo "skip not root, so not installed; run: $py -m venv $venv && $venv/bin/pip install $MEGATRON_PINS" > "$st"
        echo "setup: the Megatron cross-check needs: $py -m venv $venv && $venv/bin/pip install $MEGATRON_PINS (skipped until then)" >&2
        return 0
    fi
    free=$(df -Pk "$B" | awk 'NR == 2 { print int($4 / 1048576) }')
    if ((free < 8)); then
        echo "skip only ${free} GiB free in $B; the venv needs about 6 GiB ($py -m venv $venv && $venv/bin/pip install $MEGATRON_PINS)" > "$st"
        return 0
    fi
    echo "setup: installing $MEGATRON_PINS into $venv for the Megatron cross-check (about 75 s)" >&2
    rm -rf "$venv"
    if "$py" -m venv "$venv" >"$B/log/pip-megatron.log" 2>&1 \
        && "$venv/bin/pip" install --disable-pip-version-check $MEGATRON_PINS >>"$B/log/pip-megatron.log" 2>&1; then
        echo "$MEGATRON_PINS" > "$venv/.nam-pins"
        echo ok > "$st"
    else
        echo "skip pip install $MEGATRON_PINS failed (see $B/log/pip-megatron.log)" > "$st"
        echo "setup: could not install $MEGATRON_PINS (see $B/log/pip-megatron.log); the Megatron cross-check is skipped" >&2
    fi
}
# Why the libFuzzer build cannot happen here, or nothing when it can.
fuzz_unavailable() {
    local major
    if ! command -v "$CLANG" >/dev/null 2>&1; then
        echo "$CLANG not found (sudo apt-get install -y clang libclang-rt-dev)"
        return
    fi
    printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' \
        > "$B/log/fuzz_probe.c"
    if ! "$CLANG" -fsanitize=fuzzer,address,undefined "$B/log/fuzz_probe.c" -o "$B/log/fuzz_probe" \
            >"$B/log/fuzz_probe.log" 2>&1; then
        major=$("$CLANG" -dumpversion 2>/dev/null | cut -d. -f1)
        echo "$CLANG cannot link -fsanitize=fuzzer (libFuzzer runtime missing: sudo apt-get install -y libclang-rt-${major:-14}-dev; see $B/log/fuzz_probe.log)"
    fi
    rm -f "$B/log/fuzz_probe" "$B/log/fuzz_probe.c"
}

# The NAM_CBLAS build of test_gemm needs a CBLAS: cblas.h and a library with cblas_sgemm
# (Debian's libblas-dev, or libopenblas-dev). Installed when root, otherwise the command is
# printed and that one build is skipped. Sets CBLAS_LIBS, or CBLAS_WHY.
setup_cblas() {
    local lib probe=$B/log/cblas_probe
    printf '#include <cblas.h>\nint main(void) { float a = 1, b = 2, c = 0; cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 1, 1, 1, 1.0f, &a, 1, &b, 1, 0.0f, &c, 1); return c != 2; }\n' > "$probe.c"
    for lib in -lblas -lopenblas -lcblas; do
        if "$CC" "$probe.c" -o "$probe" $lib >/dev/null 2>&1 && "$probe"; then CBLAS_LIBS=$lib; break; fi
    done
    if [[ -z ${CBLAS_LIBS:-} && $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing libblas-dev for the NAM_CBLAS build of test_gemm" >&2
        { DEBIAN_FRONTEND=noninteractive apt-get install -y libblas-dev || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y libblas-dev; }; } >"$B/log/apt-cblas.log" 2>&1 || true
        "$CC" "$probe.c" -o "$probe" -lblas >/dev/null 2>&1 && "$probe" && CBLAS_LIBS=-lblas
    fi
    rm -f "$probe" "$probe.c"
    if [[ -z ${CBLAS_LIBS:-} ]]; then
        CBLAS_WHY="no CBLAS (cblas.h + cblas_sgemm) found; install one with: sudo apt-get install -y libblas-dev"
        echo "setup: the NAM_CBLAS build of test_gemm needs: sudo apt-get install -y libblas-dev (skipped until then)" >&2
    fi
}

# rsvg-convert (Debian's librsvg2-bin) renders the `nam plan --svg` pictures in the tests:
# installed when run as root, otherwise the command is printed and the render checks are
# reported as skipped.
setup_svg() {
    command -v rsvg-convert >/dev/null 2>&1 && return 0
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing librsvg2-bin (rsvg-convert) for the SVG render tests" >&2
        export DEBIAN_FRONTEND=noninteractive
        { apt-get install -y librsvg2-bin || { apt-get update && apt-get install -y librsvg2-bin; }; } >"$B/log/apt-svg.log" 2>&1 \
            || echo "setup: could not install it (see $B/log/apt-svg.log); the render checks will be skipped" >&2
    else
        echo "setup: the SVG render tests need: sudo apt-get install -y librsvg2-bin (skipped until then)" >&2
    fi
}

# ---- targets -------------------------------------------------------------------------
# target NAME OUTPUT "SOURCES" COMMAND [kernels]: build OUTPUT with COMMAND (evaluated as
# shell text) unless it is up to date. With `kernels` the target reads only nam.h's common
# part and kernel half (build/stamp/nam-kernels.h), else all of nam.h. Missing sources and
# failures are recorded in build/status/NAME; the function itself always succeeds.
target() {
    local name=$1 out=$2 srcs=$3 cmd=$4 view=nam.h
    [[ ${5:-} == kernels ]] && view=$B/stamp/nam-kernels.h
    local status=$B/status/$name log=$B/log/$name.log src dep
    for src in $srcs; do
        if [[ ! -f $src ]]; then
            echo "missing $src" > "$status"
            printf '  %-16s missing %s\n' "$name" "$src"
            return 0
        fi
    done
    if [[ -f $out && $(cat "$status" 2>/dev/null) == ok && $(cat "$status.cmd" 2>/dev/null) == "$cmd" ]]; then
        local stale=0
        for dep in $view $srcs $(for src in $srcs; do ls "$(dirname "$src")"/*.h 2>/dev/null; done); do
            # nam.h is read through $view only (a root source such as nam_cuda.cu lists it
            # among its neighbours, which made every kernel edit and planner edit alike
            # rebuild the CUDA targets)
            [[ $dep == ./nam.h && $view != nam.h ]] && continue
            [[ $dep -nt $out ]] && { stale=1; break; }
        done
        if (( ! stale )); then
            printf '  %-16s up to date\n' "$name"
            return 0
        fi
    fi
    rm -f "$status.cmd" "$out"
    local t0=$SECONDS
    if (echo "$cmd"; eval "$cmd") >"$log" 2>&1; then
        echo ok > "$status"
        echo "$cmd" > "$status.cmd"
        printf '  %-16s ok (%ds)\n' "$name" $((SECONDS - t0))
    else
        echo fail > "$status"
        printf '  %-16s FAILED (see %s)\n' "$name" "$log"
    fi
}

# spawn ARGS...: run `target ARGS...` in the background, at most $JOBS at a time.
spawn() {
    while (( $(jobs -rp | wc -l) >= JOBS )); do wait -n || true; done
    target "$@" &
}

build_fuzzer() {
    local why
    why=$(fuzz_unavailable)
    if [[ -n $why ]]; then
        echo "skip $why" > "$B/status/fuzz_parsers"
        printf '  %-16s skip: %s\n' fuzz_parsers "$why"
        return 0
    fi
    spawn fuzz_parsers $B/fuzz_parsers tests/fuzz_parsers.c \
        "$CLANG -std=c99 $WARN $FUZZ -DNAM_NO_KERNELS $STB_CFLAGS tests/fuzz_parsers.c -o $B/fuzz_parsers $STB_LIBS"
}

# no_host_exit OBJ: fail when OBJ's host code calls exit. nvcc compiles a __device__
# function for the host as a stub that calls exit(1), and a host call of it from a template
# compiles without a word (it stops the program at run time: the first H200 run's
# test_cuda_prims defect). nam never calls exit, so a `U exit` in a host object is such a call.
no_host_exit() {
    if nm -u "$1" | grep -qw exit; then
        echo "$1: host code calls exit: a __device__ function is called from host code (nvcc's host stub for it exits at run time); nm -u $1 shows it"
        return 1
    fi
}

# build_cuda: the CUDA side, one chain in the background (objects before what links them).
#   real:     nvcc -> build/obj/nam_cuda.o; the tests link it with libcudart_static
#   emulated: g++ over tests/cuda_emu.h -> build/obj/nam_cuda_emu.o (runs with no GPU)
build_cuda() {
    local p names="nam_cuda cuda-host-exit-guard nam_cuda_emu nam_cuda_emu_asan test_cuda_prims test_cuda_prims_emu nam-bench-cuda nam-bench-cuda-emu"
    for p in $CUDA_PARTS; do names="$names test_cuda_$p test_cuda_${p}_emu asan-test_cuda_${p}_emu"; done
    if [[ ! -x $NVCC ]]; then
        for p in $names; do echo "skip nvcc not found at $NVCC (set CUDA_HOME)" > "$B/status/$p"; done
        printf '  %-16s skip: nvcc not found at %s\n' cuda "$NVCC"
        return 0
    fi
    local srcs="nam_cuda.cu nam_cuda.cuh"
    local cudalib="-L$CUDA_HOME/lib64 -lcudart_static -ldl -lrt $KLIBS -lstdc++"
    local emu="-std=c++17 -O1 -g $WARN -Wno-unknown-pragmas -I. -DNAM_NO_PLANNER -DNAM_CUDA_EMULATE -include tests/cuda_emu.h"
    (
        target nam_cuda $B/obj/nam_cuda.o "$srcs" \
            "$NVCC -std=c++17 -O3 -I. -DNAM_NO_PLANNER $CUDA_ARCH -Xptxas -v -Werror all-warnings -c nam_cuda.cu -o $B/obj/nam_cuda.o && no_host_exit $B/obj/nam_cuda.o" kernels
        # the guard itself: it must flag a host call of a device helper (a negative test)
        target cuda-host-exit-guard $B/obj/host_calls_device.o tests/compile/host_calls_device.cu \
            "$NVCC -std=c++17 -O2 -gencode arch=compute_90a,code=sm_90a -Werror all-warnings -c tests/compile/host_calls_device.cu -o $B/obj/host_calls_device.o && ! no_host_exit $B/obj/host_calls_device.o" kernels   # reads no nam.h at all
        target test_cuda_prims $B/test_cuda_prims "tests/test_cuda_prims.cu $srcs" \
            "$NVCC -std=c++17 -O2 -I. -DNAM_NO_PLANNER $CUDA_ARCH -Werror all-warnings -c tests/test_cuda_prims.cu -o $B/obj/test_cuda_prims.o && no_host_exit $B/obj/test_cuda_prims.o && $NVCC $CUDA_ARCH $B/obj/test_cuda_prims.o -o $B/test_cuda_prims -cudart static" kernels
        for p in $CUDA_PARTS; do
            target test_cuda_$p $B/test_cuda_$p "tests/test_cuda_$p.c tests/cuda_test.h $B/obj/nam_cuda.o" \
                "$CC -std=c99 $WARN -O2 -DNAM_NO_PLANNER tests/test_cuda_$p.c $B/obj/nam_cuda.o -o $B/test_cuda_$p $cudalib" kernels
        done
        if [[ -f bench/bench_cuda.cu ]]; then
            target nam-bench-cuda $B/nam-bench-cuda "bench/bench_cuda.cu $B/obj/nam_cuda.o" \
                "$NVCC -std=c++17 -O2 -I. -DNAM_NO_PLANNER $CUDA_ARCH -Werror all-warnings -c bench/bench_cuda.cu -o $B/obj/bench_cuda.o && no_host_exit $B/obj/bench_cuda.o && $CC -std=c99 $WARN -O2 -DNAM_CUDA -DNAM_NO_PLANNER -DNAM_IMPLEMENTATION -x c -c nam.h -o $B/obj/nam_impl_cuda.o && $CXX $B/obj/bench_cuda.o $B/obj/nam_impl_cuda.o $B/obj/nam_cuda.o -o $B/nam-bench-cuda -L$CUDA_HOME/lib64 -lcublas -lcudart_static -ldl -lrt $KLIBS -Wl,-rpath,$CUDA_HOME/lib64" kernels
        else
            echo "missing bench/bench_cuda.cu" > "$B/status/nam-bench-cuda"
        fi
    ) &
    (
        target nam_cuda_emu $B/obj/nam_cuda_emu.o "$srcs tests/cuda_emu.h" \
            "$CXX $emu -x c++ -c nam_cuda.cu -o $B/obj/nam_cuda_emu.o" kernels
        target test_cuda_prims_emu $B/test_cuda_prims_emu "tests/test_cuda_prims.cu tests/cuda_emu.h $srcs" \
            "$CXX $emu -x c++ tests/test_cuda_prims.cu -o $B/test_cuda_prims_emu $KLIBS" kernels
        for p in $CUDA_PARTS; do
            target test_cuda_${p}_emu $B/test_cuda_${p}_emu "tests/test_cuda_$p.c tests/cuda_test.h $B/obj/nam_cuda_emu.o" \
                "$CC -std=c99 $WARN -O1 -g -DNAM_NO_PLANNER tests/test_cuda_$p.c $B/obj/nam_cuda_emu.o -o $B/test_cuda_${p}_emu $KLIBS -lstdc++" kernels
        done
        # ASan + UBSan over the emulator: device buffers and dynamic shared memory are
        # exact-size heap blocks there, so out-of-bounds kernel accesses are caught
        target nam_cuda_emu_asan $B/obj/nam_cuda_emu_asan.o "$srcs tests/cuda_emu.h" \
            "$CXX $emu $ASAN -x c++ -c nam_cuda.cu -o $B/obj/nam_cuda_emu_asan.o" kernels
        if [[ -f bench/bench_cuda.cu ]]; then
            target nam-bench-cuda-emu $B/nam-bench-cuda-emu "bench/bench_cuda.cu $B/obj/nam_cuda_emu.o" \
                "$CXX $emu -x c++ -c bench/bench_cuda.cu -o $B/obj/bench_cuda_emu.o && $CC -std=c99 $WARN -O2 -DNAM_CUDA -DNAM_NO_PLANNER -DNAM_IMPLEMENTATION -x c -c nam.h -o $B/obj/nam_impl_cuda_emu.o && $CXX $B/obj/bench_cuda_emu.o $B/obj/nam_impl_cuda_emu.o $B/obj/nam_cuda_emu.o -o $B/nam-bench-cuda-emu $KLIBS" kernels
        else
            echo "missing bench/bench_cuda.cu" > "$B/status/nam-bench-cuda-emu"
        fi
        for p in $CUDA_PARTS; do
            target asan-test_cuda_${p}_emu $B/asan/test_cuda_${p}_emu "tests/test_cuda_$p.c tests/cuda_test.h $B/obj/nam_cuda_emu_asan.o" \
                "$CC -std=c99 $WARN $ASAN -DNAM_NO_PLANNER tests/test_cuda_$p.c $B/obj/nam_cuda_emu_asan.o -o $B/asan/test_cuda_${p}_emu $KLIBS -lstdc++" kernels
        done
    ) &
}

# nam_cli_cmd: the command that builds build/nam (build_all and install share it).
nam_cli_cmd() { echo "$CC -std=c99 $WARN -O2 -DNAM_NO_KERNELS $STB_CFLAGS examples/nam.c -o $B/nam $STB_LIBS"; }

# build_all: every target, in parallel; slowest first. Planner programs build with
# NAM_NO_KERNELS, kernel programs with NAM_NO_PLANNER and without stb_ds (the compile tests
# build both halves together).
build_all() {
    local c99="$CC -std=c99 $WARN -O2 $STB_CFLAGS" p99="$CC -std=c99 $WARN -O2 -DNAM_NO_KERNELS $STB_CFLAGS"
    local k99="$CC -std=c99 $WARN -O2 -DNAM_NO_PLANNER" pasan="$CC -std=c99 $WARN $ASAN -DNAM_NO_KERNELS $STB_CFLAGS"
    echo "build: $JOBS jobs, $CC / $CXX / $CLANG"
    build_cuda
    build_fuzzer
    spawn asan-test_core $B/asan/test_core tests/test_core.c "$pasan tests/test_core.c -o $B/asan/test_core $STB_LIBS"
    spawn asan-test_vectors $B/asan/test_vectors tests/test_vectors.c "$pasan tests/test_vectors.c -o $B/asan/test_vectors $STB_LIBS"
    spawn nam $B/nam examples/nam.c "$(nam_cli_cmd)"
    spawn test_core $B/test_core tests/test_core.c "$p99 tests/test_core.c -o $B/test_core $STB_LIBS"
    spawn test_vectors $B/test_vectors tests/test_vectors.c "$p99 tests/test_vectors.c -o $B/test_vectors $STB_LIBS"
    spawn nam-bench-plan $B/nam-bench-plan bench/bench_plan.c "$p99 bench/bench_plan.c -o $B/nam-bench-plan $STB_LIBS"
    spawn nam-bench $B/nam-bench "bench/bench_kernels.c bench/bench_common.h bench/bench_gemm.h bench/bench_ssd.h bench/bench_attention.h bench/bench_moe.h bench/bench_m2rnn.h" \
        "$k99 bench/bench_kernels.c -o $B/nam-bench $KLIBS" kernels
    # kernel tests, their ASan+UBSan builds and their plain-C builds (NAM_NO_SIMD: no AVX2,
    # no vector extensions): tests/test_<kernel>.c
    local k
    for k in $KERNELS; do
        spawn test_$k $B/test_$k tests/test_$k.c "$k99 tests/test_$k.c -o $B/test_$k $KLIBS" kernels
        spawn asan-test_$k $B/asan/test_$k tests/test_$k.c \
            "$CC -std=c99 $WARN $ASAN -DNAM_NO_PLANNER tests/test_$k.c -o $B/asan/test_$k $KLIBS" kernels
        spawn nosimd-test_$k $B/nosimd/test_$k tests/test_$k.c "$k99 -DNAM_NO_SIMD tests/test_$k.c -o $B/nosimd/test_$k $KLIBS" kernels
    done
    # the FP-environment test again with the opt-out: IEEE subnormals, <fenv.h> path
    spawn test_fpenv_keep $B/test_fpenv_keep tests/test_fpenv.c \
        "$k99 -DNAM_KEEP_SUBNORMALS tests/test_fpenv.c -o $B/test_fpenv_keep $KLIBS" kernels
    # the GEMM through a CBLAS (NAM_CBLAS), when one is installed (see setup_cblas)
    if [[ -n ${CBLAS_LIBS:-} ]]; then
        spawn test_gemm_cblas $B/test_gemm_cblas tests/test_gemm.c \
            "$k99 -DNAM_CBLAS tests/test_gemm.c -o $B/test_gemm_cblas $CBLAS_LIBS $KLIBS" kernels
    else
        echo "skip ${CBLAS_WHY:-no CBLAS}" > "$B/status/test_gemm_cblas"
    fi
    # compile tests: C99 -pedantic, C++11, NAM_STATIC, two translation units, each half alone
    spawn compile-c99 $B/compile/impl_c tests/compile/impl.c \
        "$CC -std=c99 -pedantic $WARN -O2 $STB_CFLAGS tests/compile/impl.c -o $B/compile/impl_c $STB_LIBS"
    spawn compile-cxx $B/compile/impl_cxx tests/compile/impl.c \
        "$CXX -std=c++11 $WARN -O2 $STB_CFLAGS -x c++ tests/compile/impl.c -x none -o $B/compile/impl_cxx $STB_LIBS"
    if command -v clang++ >/dev/null 2>&1; then
        spawn compile-clangxx $B/compile/impl_clangxx tests/compile/impl.c \
            "clang++ -std=c++11 $WARN -O2 $STB_CFLAGS -x c++ tests/compile/impl.c -x none -o $B/compile/impl_clangxx $STB_LIBS"
    else
        echo "skip clang++ not found" > "$B/status/compile-clangxx"
    fi
    spawn compile-static $B/compile/static tests/compile/static.c \
        "$CC -std=c99 -pedantic $WARN -O2 $STB_CFLAGS tests/compile/static.c -o $B/compile/static $STB_LIBS"
    spawn compile-two-tu $B/compile/two_tu "tests/compile/tu_a.c tests/compile/tu_b.c" \
        "$CC -std=c99 -pedantic $WARN -O2 -c tests/compile/tu_b.c -o $B/compile/tu_b.o && $CC -std=c99 -pedantic $WARN -O2 $STB_CFLAGS tests/compile/tu_a.c $B/compile/tu_b.o -o $B/compile/two_tu $STB_LIBS"
    spawn compile-planner-only $B/compile/planner_only tests/compile/planner_only.c \
        "$CC -std=c99 -pedantic $WARN -O2 $STB_CFLAGS tests/compile/planner_only.c -o $B/compile/planner_only $STB_LIBS"
    spawn compile-kernels-only $B/compile/kernels_only tests/compile/kernels_only.c \
        "$CC -std=c99 -pedantic $WARN -O2 tests/compile/kernels_only.c -o $B/compile/kernels_only $KLIBS" kernels
    wait
    if ! grep -Eq '^#[[:space:]]*if(def[[:space:]]+| .*defined\()NAM_IMPLEMENTATION' nam.h; then
        echo "note: nam.h has no '#ifdef NAM_IMPLEMENTATION' section yet, so no program can link"
    fi
}

# ---- install -------------------------------------------------------------------------
# install_files PREFIX: every file `install` writes, "DEST<TAB>SOURCE" per line. SOURCE is a
# repository file, or a packaging/*.in template rendered with this install's values.
# `uninstall` removes the same list, so the two cannot drift apart.
install_files() {
    local p=$1
    printf '%s\t%s\n' \
        "$p/include/nam/nam.h" nam.h \
        "$p/include/nam/nam_cuda.cuh" nam_cuda.cuh \
        "$p/include/nam/nam_nccl.h" nam_nccl.h \
        "$p/share/nam/nam_cuda.cu" nam_cuda.cu \
        "$p/bin/nam" "$B/nam" \
        "$p/share/pkgconfig/nam.pc" packaging/nam.pc.in \
        "$p/share/pkgconfig/nam-cuda.pc" packaging/nam-cuda.pc.in \
        "$p/share/cmake/nam/namConfig.cmake" packaging/namConfig.cmake.in \
        "$p/share/cmake/nam/namConfigVersion.cmake" packaging/namConfigVersion.cmake.in
}

# install_prefix [PREFIX]: the checked prefix (absolute, no whitespace), default /usr/local
install_prefix() {
    local prefix=${1:-/usr/local}
    if [[ $prefix != /* || $prefix =~ [[:space:]] ]]; then
        echo "build.sh: PREFIX must be an absolute path without spaces, not '$prefix'" >&2
        return 2
    fi
    echo "${prefix%/}"
}

# render_template FILE PREFIX: FILE with its @NAME@ placeholders filled in
render_template() {
    local t version major minor requires="" stb_cflags="" stb_libs="" stb_inc=/usr/include/stb stb_lib=""
    t=$(<"$1")
    version=$(sed -n 's/^#define NAM_VERSION_STRING "\(.*\)"$/\1/p' nam.h)
    major=${version%%.*}
    minor=${version#*.}
    minor=${minor%%.*}
    if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists stb 2>/dev/null; then
        requires="Requires: stb"
        stb_inc=$(pkg-config --variable=includedir stb)
        stb_lib=$(pkg-config --variable=libdir stb)
    else   # no stb.pc: the flags build.sh uses go into nam.pc itself
        stb_cflags=" ${STB_CFLAGS}"
        stb_libs=" ${STB_LIBS% -lm -lpthread}"
    fi
    t=${t//@PREFIX@/"$2"}
    t=${t//@VERSION@/"$version"}
    t=${t//@VERSION_MAJOR@/"$major"}
    t=${t//@VERSION_MINOR@/"$minor"}
    t=${t//@REQUIRES@/"$requires"}
    t=${t//@STB_CFLAGS@/"$stb_cflags"}
    t=${t//@STB_LIBS@/"$stb_libs"}
    t=${t//@STB_INCLUDE_DIR@/"$stb_inc"}
    t=${t//@STB_LIB_DIR@/"$stb_lib"}
    t=${t//@CUDA_HOME@/"$CUDA_HOME"}
    t=${t//@CUDA_ARCH@/"$CUDA_ARCH"}
    printf '%s\n' "$t"
}

do_install() {
    local prefix dest src out n=0
    prefix=$(install_prefix "${1:-}") || exit 2
    setup
    target nam $B/nam examples/nam.c "$(nam_cli_cmd)"
    if [[ $(cat "$B/status/nam") != ok ]]; then
        echo "install: build/nam does not build; $B/log/nam.log:" >&2
        sed 's/^/    /' "$B/log/nam.log" >&2
        exit 1
    fi
    echo "install: nam into ${DESTDIR:-}$prefix"
    while IFS=$'\t' read -r dest src; do
        out=${DESTDIR:-}$dest
        case $src in
        nam_nccl.h) [[ -f $src ]] || { echo "  (skipped $dest: $src is not in this tree yet)"; continue; } ;;
        *nam-cuda.pc.in) [[ -x $NVCC ]] || { echo "  (skipped $dest: no CUDA toolkit at $CUDA_HOME; set CUDA_HOME)"; continue; } ;;
        esac
        case $src in
        *.in)
            render_template "$src" "$prefix" > "$B/install.tmp"
            install -D -m 644 "$B/install.tmp" "$out"
            rm -f "$B/install.tmp" ;;
        "$B/nam") install -D -m 755 "$src" "$out" ;;
        *) install -D -m 644 "$src" "$out" ;;
        esac
        echo "  $out"
        n=$((n + 1))
    done < <(install_files "$prefix")
    echo "install: $n files"
}

do_uninstall() {
    local prefix dest src out d n=0
    prefix=$(install_prefix "${1:-}") || exit 2
    while IFS=$'\t' read -r dest src; do
        out=${DESTDIR:-}$dest
        [[ -e $out || -L $out ]] || continue
        rm -f "$out"
        echo "  removed $out"
        n=$((n + 1))
    done < <(install_files "$prefix")
    for d in include/nam share/nam share/cmake/nam; do
        [[ -d ${DESTDIR:-}$prefix/$d ]] && rmdir --ignore-fail-on-non-empty "${DESTDIR:-}$prefix/$d"
    done
    echo "uninstall: $n files removed from ${DESTDIR:-}$prefix"
}

# build_report: print the failures with their compiler output; status 1 if any target
# failed or a required source is missing.
build_report() {
    local f name st bad=0
    for f in "$B"/status/*; do
        [[ $f == *.cmd ]] && continue
        name=${f##*/}
        st=$(cat "$f")
        case $st in
        ok | skip*) ;;
        "missing bench/"*) ;;
        missing*) echo "build: $name: $st"; bad=1 ;;
        *)
            echo "build: $name failed; $B/log/$name.log:"
            head -n 40 "$B/log/$name.log" | sed 's/^/    /'
            bad=1 ;;
        esac
    done
    return $bad
}

# One build.sh at a time per tree: a second one waits (the lock is held until exit,
# including while tests/run.sh runs).
lock() {
    mkdir -p "$B"
    command -v flock >/dev/null 2>&1 || return 0
    # a build.sh started by this tree's own tests (the consumers step runs `install`)
    # runs under the lock its parent holds
    [[ ${NAM_BUILD_LOCK_HELD:-} == "$PWD" ]] && return 0
    export NAM_BUILD_LOCK_HELD=$PWD
    exec 9>"$B/.lock"
    if ! flock -n 9; then
        echo "build.sh: another build.sh is running in this tree; waiting for it" >&2
        flock 9
    fi
}

cmd=${1:-build}
[[ $cmd == -h || $cmd == --help || $cmd == help ]] || lock
case $cmd in
build)
    setup
    setup_cblas
    build_all
    build_report
    ;;
test)
    shift
    setup
    setup_xcheck
    setup_megatron
    setup_svg
    setup_cblas
    build_all
    build_report >/dev/null || echo "build: some targets failed; tests/run.sh reports each one"
    exec bash tests/run.sh "$@"
    ;;
fuzz)
    secs=${2:-300}
    [[ $secs =~ ^[0-9]+$ ]] || { echo "usage: ./build.sh fuzz [seconds]" >&2; exit 2; }
    setup
    build_fuzzer
    wait
    NAM_FUZZ_SECONDS=$secs exec bash tests/run.sh fuzz replay
    ;;
gpu)
    setup
    build_all
    build_report || echo "build: some targets failed"
    mkdir -p "$B/gpu"
    rc=0
    bash tests/run.sh cuda 2>&1 | tee "$B/gpu/tests.txt" || rc=1
    "$B/nam-bench-cuda" --json >"$B/gpu/bench.json" 2>"$B/gpu/bench.err" || rc=1
    "$B/nam-bench-cuda" 2>&1 | tee "$B/gpu/bench.txt" || rc=1
    python3 bench/bench_sdpa.py 2>&1 | tee "$B/gpu/sdpa.txt" || rc=1
    if [[ -n ${NAM_M2RNN_TRITON:-} ]]; then   # cppmega's m2rnn_triton.py, beside the run (never committed)
        python3 bench/bench_m2rnn_triton.py --triton-src "$NAM_M2RNN_TRITON" 2>&1 | tee "$B/gpu/m2rnn-triton.txt" || rc=1
    fi
    echo "results in $B/gpu/ (tests.txt, bench.txt, bench.json, sdpa.txt, build/log/cuda-ptxas.txt)"
    exit $rc
    ;;
clean)
    rm -rf "$B"
    ;;
install)
    shift
    do_install "$@"
    ;;
uninstall)
    shift
    do_uninstall "$@"
    ;;
consumers)
    shift
    setup
    setup_svg
    target nam $B/nam examples/nam.c "$(nam_cli_cmd)"
    exec bash tests/run.sh svg consumers
    ;;
-h | --help | help)
    usage
    ;;
*)
    usage >&2
    exit 2
    ;;
esac
