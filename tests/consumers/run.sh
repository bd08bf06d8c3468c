#!/usr/bin/env bash
# tests/consumers/run.sh - nam taken in by projects outside this tree, the three ways a C
# project takes in a library. Each project (pkgconfig/, cmake/, vendored/) is copied with
# main.c into a temporary directory, built there, and run: it plans the built-in NAM56R and
# runs one kernel (nam_conv1d).
#   1. ./build.sh install PREFIX into a temporary prefix: the files, nam --version, nam.pc
#   2. pkgconfig/  make, with PKG_CONFIG_PATH=PREFIX/share/pkgconfig
#   3. cmake/      find_package(nam 0.1 CONFIG REQUIRED), CMAKE_PREFIX_PATH=PREFIX; the
#                  version file (no version, 0.1, 99) and a DESTDIR-staged, relocated copy
#   4. vendored/   only nam.h, copied into third_party/ (the STB way)
#   5. with nvcc (NAM_CONSUMER_CUDA=0 skips it): the CUDA side through nam-cuda.pc and
#      CMake's nam::cuda, nam_cuda.cu compiled as compute_80 PTX only to keep it short;
#      the kernel runs when there is a device
#   6. ./build.sh uninstall PREFIX (and with DESTDIR) leaves no file behind
# Nothing is installed outside the temporary directory. Output: the test protocol
# ("ok DESC", "FAIL DESC: WHY", "skip DESC: REASON"); logs in build/log/consumers/.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
LOG=$ROOT/build/log/consumers
mkdir -p "$LOG"
rm -f "$LOG"/*.log
TMP=$(mktemp -d "${TMPDIR:-/tmp}/nam-consumers.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
PREFIX=$TMP/prefix
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
NVCC=$CUDA_HOME/bin/nvcc
VERSION=$(sed -n 's/^#define NAM_VERSION_STRING "\(.*\)"$/\1/p' nam.h)
failures=0

ok() { echo "ok   $1"; }
skip() { echo "skip $1"; }
# fail DESC WHY [LOG]: one failure, with the tail of LOG (lines that are not protocol lines)
fail() {
    echo "FAIL $1: $2"
    failures=$((failures + 1))
    if [[ -n ${3:-} && -s $3 ]]; then tail -n 15 "$3" | sed 's/^/    | /'; fi
}

# project NAME [SOURCE]: a copy of tests/consumers/SOURCE (NAME) and main*.c in $TMP/NAME
project() {
    mkdir -p "$TMP/$1"
    cp -r "tests/consumers/${2:-$1}/." "$TMP/$1/"
    cp tests/consumers/main.c tests/consumers/main_cuda.c "$TMP/$1/"
}

# check_run DESC PROGRAM LOG: PROGRAM exits 0 and reports the plan and the kernel
check_run() {
    local desc=$1 prog=$2 log=$3 rc=0
    (cd "$(dirname "$prog")" && "./$(basename "$prog")") >"$log.out" 2>&1 || rc=$?
    cat "$log.out" >>"$log"
    if ((rc == 0)) && grep -q '^ok   plan NAM56R: 52 layers' "$log.out" && grep -q '^ok   kernel nam_conv1d' "$log.out"; then
        ok "$desc: builds, plans NAM56R ($(grep -o '[0-9]* pipeline stages, [0-9]* seam(s)' "$log.out")) and runs nam_conv1d"
    else
        fail "$desc" "the program exited with status $rc" "$log.out"
    fi
}

# check_cuda DESC PROGRAM LOG: the CUDA consumer links the CUDA backend; its kernel line
# (ok on a device, skip without one) is passed on
check_cuda() {
    local desc=$1 prog=$2 log=$3 rc=0 line
    (cd "$(dirname "$prog")" && "./$(basename "$prog")") >"$log.out" 2>&1 || rc=$?
    cat "$log.out" >>"$log"
    if ((rc == 0)) && grep -q '^ok   cuda: built with NAM_CUDA' "$log.out"; then
        ok "$desc: builds, links the CUDA backend"
        line=$(grep -m1 -E '^(ok|skip) +cuda kernel' "$log.out" || true)
        case $line in
        ok*) ok "$desc: ${line#ok   }" ;;
        skip*) skip "$desc: ${line#skip }" ;;
        *) fail "$desc" "no kernel line" "$log.out" ;;
        esac
    else
        fail "$desc" "the program exited with status $rc" "$log.out"
    fi
}

# ---- 1. install -----------------------------------------------------------------------
if ! bash ./build.sh install "$PREFIX" >"$LOG/install.log" 2>&1; then
    fail "install: ./build.sh install PREFIX" "failed" "$LOG/install.log"
    echo "(the consumers need the install; nothing else runs)"
    exit 1
fi
want="include/nam/nam.h include/nam/nam_cuda.cuh share/nam/nam_cuda.cu bin/nam share/pkgconfig/nam.pc share/cmake/nam/namConfig.cmake share/cmake/nam/namConfigVersion.cmake"
[[ -f nam_nccl.h ]] && want="$want include/nam/nam_nccl.h"
[[ -x $NVCC ]] && want="$want share/pkgconfig/nam-cuda.pc"
missing=""
for f in $want; do [[ -f $PREFIX/$f ]] || missing="$missing $f"; done
extra=$(cd "$PREFIX" && find . -type f | sed 's|^\./||' | while read -r f; do [[ " $want " == *" $f "* ]] || echo "$f"; done)
if [[ -n $missing || -n $extra ]]; then
    fail "install: the files" "missing:${missing:- none}; unexpected: ${extra:-none}" "$LOG/install.log"
elif ! cmp -s nam.h "$PREFIX/include/nam/nam.h" || ! cmp -s nam_cuda.cuh "$PREFIX/include/nam/nam_cuda.cuh" \
    || [[ -x $PREFIX/include/nam/nam.h || ! -x $PREFIX/bin/nam ]]; then
    fail "install: the files" "headers differ from the tree, or modes are wrong" "$LOG/install.log"
else
    ok "install: ./build.sh install PREFIX writes $(echo $want | wc -w) files, headers as in the tree"
fi
v=$("$PREFIX/bin/nam" --version 2>&1)
if [[ $v == "nam $VERSION" ]] && "$PREFIX/bin/nam" plan --svg 2>/dev/null | head -c 5 | grep -q '<?xml'; then
    ok "install: PREFIX/bin/nam runs ($v, plan --svg)"
else
    fail "install: PREFIX/bin/nam" "--version says '$v', or plan --svg failed"
fi

# ---- 2. pkg-config --------------------------------------------------------------------------
export PKG_CONFIG_PATH=$PREFIX/share/pkgconfig
if ! command -v pkg-config >/dev/null 2>&1; then
    skip "pkg-config consumer: pkg-config not found (sudo apt-get install -y pkg-config)"
else
    mv=$(pkg-config --modversion nam 2>&1)
    cf=$(pkg-config --cflags nam 2>&1)
    lf=$(pkg-config --libs nam 2>&1)
    if [[ $mv == "$VERSION" && " $cf " == *" -I$PREFIX/include/nam "* && $cf == *stb* && " $lf " == *" -lm "* && " $lf " == *" -lpthread "* && $lf == *-lstb* ]]; then
        ok "pkg-config: nam $mv, --cflags '$cf', --libs '$lf'"
    else
        fail "pkg-config: nam.pc" "modversion '$mv', cflags '$cf', libs '$lf'"
    fi
    project pkgconfig
    if make -C "$TMP/pkgconfig" consumer >"$LOG/pkgconfig.log" 2>&1; then
        check_run "pkg-config consumer (make, \$(pkg-config --cflags --libs nam))" "$TMP/pkgconfig/consumer" "$LOG/pkgconfig.log"
    else
        fail "pkg-config consumer: build" "make failed" "$LOG/pkgconfig.log"
    fi
fi

# ---- 5a. the CUDA side, in the background while the CPU consumers build ----------------------
cuda_pids=()
if [[ ${NAM_CONSUMER_CUDA:-1} == 0 ]]; then
    skip "CUDA consumers: NAM_CONSUMER_CUDA=0"
elif [[ ! -x $NVCC ]]; then
    skip "CUDA consumers: nvcc not found at $NVCC (set CUDA_HOME)"
else
    cuda_arch="-gencode arch=compute_80,code=compute_80"
    if command -v pkg-config >/dev/null 2>&1; then
        cf=$(pkg-config --cflags nam-cuda 2>&1)
        lf=$(pkg-config --libs nam-cuda 2>&1)
        if [[ " $cf " == *" -DNAM_CUDA "* && $lf == *-lcudart_static* && $(pkg-config --variable=cuda_source nam-cuda) == "$PREFIX/share/nam/nam_cuda.cu" ]]; then
            ok "pkg-config: nam-cuda --cflags '$cf', cuda_source in PREFIX/share/nam"
        else
            fail "pkg-config: nam-cuda.pc" "cflags '$cf', libs '$lf'"
        fi
        project pkgconfig-cuda pkgconfig
        (make -C "$TMP/pkgconfig-cuda" cuda CUDA_ARCH="$cuda_arch" >"$LOG/pkgconfig-cuda.log" 2>&1; echo $? >"$TMP/pkgconfig-cuda.rc") &
        cuda_pids+=($!)
    fi
    if command -v cmake >/dev/null 2>&1; then
        project cmake-cuda cmake
        (cmake -S "$TMP/cmake-cuda" -B "$TMP/cmake-cuda/build" -DCMAKE_PREFIX_PATH="$PREFIX" -DNAM_CONSUMER_CUDA=ON \
            -DCMAKE_CUDA_COMPILER="$NVCC" -DCMAKE_CUDA_ARCHITECTURES=80-virtual >"$LOG/cmake-cuda.log" 2>&1 \
            && cmake --build "$TMP/cmake-cuda/build" --target consumer-cuda >>"$LOG/cmake-cuda.log" 2>&1
         echo $? >"$TMP/cmake-cuda.rc") &
        cuda_pids+=($!)
    fi
fi

# ---- 3. CMake -------------------------------------------------------------------------------
if ! command -v cmake >/dev/null 2>&1; then
    skip "CMake consumer: cmake not found (sudo apt-get install -y cmake)"
else
    project cmake
    if cmake -S "$TMP/cmake" -B "$TMP/cmake/build" -DCMAKE_PREFIX_PATH="$PREFIX" >"$LOG/cmake.log" 2>&1 \
        && cmake --build "$TMP/cmake/build" --target consumer >>"$LOG/cmake.log" 2>&1; then
        check_run "CMake consumer (find_package(nam 0.1 CONFIG REQUIRED), nam::nam)" "$TMP/cmake/build/consumer" "$LOG/cmake.log"
        if [[ -x $NVCC ]] && ! grep -q 'nam::cuda: TRUE' "$LOG/cmake.log"; then
            fail "CMake package: nam::cuda" "not defined although nvcc is at $NVCC" "$LOG/cmake.log"
        fi
    else
        fail "CMake consumer: configure and build" "cmake failed" "$LOG/cmake.log"
    fi
fi

# ---- 4. vendored: only the header -------------------------------------------------------------
project vendored
mkdir -p "$TMP/vendored/third_party"
cp nam.h "$TMP/vendored/third_party/"
if make -C "$TMP/vendored" consumer >"$LOG/vendored.log" 2>&1; then
    check_run "vendored consumer (third_party/nam.h only, the STB way)" "$TMP/vendored/consumer" "$LOG/vendored.log"
else
    fail "vendored consumer: build" "make failed" "$LOG/vendored.log"
fi

# ---- 3b. DESTDIR staging, a relocated CMake package, the version file --------------------------
STAGE=$TMP/stage
before=$([[ -e /opt/nam-consumer-test ]] && echo yes || echo no)
if ! DESTDIR=$STAGE bash ./build.sh install /opt/nam-consumer-test >"$LOG/destdir.log" 2>&1; then
    fail "install: DESTDIR" "DESTDIR=... ./build.sh install /opt/nam-consumer-test failed" "$LOG/destdir.log"
elif [[ $before == no && -e /opt/nam-consumer-test ]] || [[ ! -f $STAGE/opt/nam-consumer-test/include/nam/nam.h ]] \
    || ! grep -qx 'prefix=/opt/nam-consumer-test' "$STAGE/opt/nam-consumer-test/share/pkgconfig/nam.pc"; then
    fail "install: DESTDIR" "files not under DESTDIR, or nam.pc's prefix is not the PREFIX" "$LOG/destdir.log"
else
    ok "install: DESTDIR stages the files under DESTDIR/PREFIX, nam.pc says prefix=PREFIX"
fi
if command -v cmake >/dev/null 2>&1 && [[ -d $STAGE/opt/nam-consumer-test ]]; then
    mkdir -p "$TMP/cmake-version"
    cat >"$TMP/cmake-version/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.18)
project(nam_version_check LANGUAGES C)
find_package(nam CONFIG REQUIRED)
message(STATUS "any-version: ${nam_FOUND} ${nam_VERSION} ${NAM_INCLUDE_DIR}")
find_package(nam 0.1 CONFIG QUIET)
message(STATUS "want-0.1: ${nam_FOUND}")
find_package(nam 99 CONFIG QUIET)
message(STATUS "want-99: ${nam_FOUND}")
EOF
    if cmake -S "$TMP/cmake-version" -B "$TMP/cmake-version/build" -DCMAKE_PREFIX_PATH="$STAGE/opt/nam-consumer-test" \
        >"$LOG/cmake-version.log" 2>&1 \
        && grep -q "any-version: 1 $VERSION $STAGE/opt/nam-consumer-test/include/nam" "$LOG/cmake-version.log" \
        && grep -q 'want-0.1: 1' "$LOG/cmake-version.log" && grep -q 'want-99: 0' "$LOG/cmake-version.log"; then
        ok "CMake package: relocatable (found in a DESTDIR copy), version $VERSION satisfies nam and nam 0.1, refuses nam 99"
    else
        fail "CMake package: relocation and version file" "see the log" "$LOG/cmake-version.log"
    fi
fi
if DESTDIR=$STAGE bash ./build.sh uninstall /opt/nam-consumer-test >>"$LOG/destdir.log" 2>&1 \
    && [[ -z $(find "$STAGE" -type f 2>/dev/null) ]]; then
    ok "uninstall: DESTDIR=... ./build.sh uninstall removes every staged file"
else
    fail "uninstall: DESTDIR" "files left: $(find "$STAGE" -type f 2>/dev/null | head -3 | tr '\n' ' ')" "$LOG/destdir.log"
fi

# ---- 5b. collect the CUDA builds ---------------------------------------------------------------
for pid in "${cuda_pids[@]}"; do wait "$pid"; done
if [[ -f $TMP/pkgconfig-cuda.rc ]]; then
    if [[ $(cat "$TMP/pkgconfig-cuda.rc") == 0 ]]; then
        check_cuda "pkg-config CUDA consumer (nvcc with nam-cuda's flags, cuda_arch overridden)" "$TMP/pkgconfig-cuda/consumer-cuda" "$LOG/pkgconfig-cuda.log"
    else
        fail "pkg-config CUDA consumer: build" "make cuda failed" "$LOG/pkgconfig-cuda.log"
    fi
fi
if [[ -f $TMP/cmake-cuda.rc ]]; then
    if [[ $(cat "$TMP/cmake-cuda.rc") == 0 ]]; then
        check_cuda "CMake CUDA consumer (nam::cuda, NAM_CUDA_SOURCE)" "$TMP/cmake-cuda/build/consumer-cuda" "$LOG/cmake-cuda.log"
    else
        fail "CMake CUDA consumer: build" "cmake failed" "$LOG/cmake-cuda.log"
    fi
fi

# ---- 6. uninstall -----------------------------------------------------------------------------
if bash ./build.sh uninstall "$PREFIX" >"$LOG/uninstall.log" 2>&1; then
    left=$(find "$PREFIX" -type f | sed "s|^$PREFIX/||" | head -5 | tr '\n' ' ')
    dirs=$(for d in include/nam share/nam share/cmake/nam; do [[ -d $PREFIX/$d ]] && echo "$d"; done | tr '\n' ' ')
    if [[ -z $left && -z $dirs ]]; then
        ok "uninstall: ./build.sh uninstall PREFIX removes every installed file and nam's directories"
    else
        fail "uninstall" "left files: ${left:-none}; directories: ${dirs:-none}" "$LOG/uninstall.log"
    fi
else
    fail "uninstall: ./build.sh uninstall PREFIX" "failed" "$LOG/uninstall.log"
fi
exit $((failures ? 1 : 0))
