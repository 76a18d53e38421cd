#!/usr/bin/env bash
# Builds the whole project (top-level CMakeLists.txt: meow, the tests, the benchmarks) on a machine
# with CMake, ninja, g++ and a LibTorch (PyTorch's, found through python3, or TORCH_PREFIX) but
# none of the other dependencies and no package registry, then runs selected tests, the MEow
# update benchmark and a short training run. The other dependencies are Debian bookworm packages
# carried in .devdebs/ (tests/gpu/fetch_debs.sh downloads them) and unpacked with dpkg-deb -x into
# a private prefix, never into /. See tests/gpu/README.md.
#
#   bash tests/gpu/run.sh [--tests=REGEX] [--bench-filter=REGEX] [--train-steps=N] [--actors=K]
#                         [--device=cuda|cpu] [--skip-tests] [--skip-bench] [--skip-train] ...
#
# Steps 1-2 (unpack, build) stop the script at the first error. Steps 3-5 (tests, benchmark,
# training) each run to the end and the script exits non-zero at the end when any of them failed,
# so that one failing test does not cost the benchmark and training results of a scarce machine.
# Logs and results go to $OUT when it is set (at most 7 files), else to BUILD_DIR/gpu-logs.
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=$PWD
T0=$SECONDS

usage() {
  sed -n '/^# Options/,/^$/p' "$0" | sed 's/^# \{0,1\}//'
}
# Options (flag, or the environment variable beside it; flags win):
#   --tests=REGEX         MEOW_TESTS          ctest -R pattern (default: Cuda; without a GPU they skip)
#   --ctest-args="..."    MEOW_CTEST_ARGS     more ctest arguments, e.g. "-L unit -j 8"
#   --bench-filter=REGEX  MEOW_BENCH_FILTER   --benchmark_filter (default: the CUDA rows and the
#                                             1..16 learner-threads rows)
#   --bench-min-time=S    MEOW_BENCH_MIN_TIME --benchmark_min_time in seconds (default 0.5)
#   --bench-args="..."    MEOW_BENCH_ARGS     more benchmark arguments
#   --env=NAME            MEOW_TRAIN_ENV      task of the training run (default Hopper-v4)
#   --device=D            MEOW_TRAIN_DEVICE   learner device (default cuda)
#   --train-steps=N       MEOW_TRAIN_STEPS    --total_env_steps (default 30000)
#   --actors=K            MEOW_TRAIN_ACTORS   --actors (default 4)
#   --train-args="..."    MEOW_TRAIN_ARGS     more `meow train` flags
#   --train-until-limit   MEOW_TRAIN_UNTIL_LIMIT=1  train for as long as the step's limit allows:
#                                             stopping there (cleanly, with its checkpoint and
#                                             metrics rows) counts as passed; for the longest
#                                             curve a call allows, with a large --train-steps
#   --skip-tests, --skip-bench, --skip-train  leave that step out
#   --jobs=N              MEOW_JOBS           build jobs (default: all cores)
#   --build-dir=DIR       MEOW_BUILD_DIR      (default /tmp/meow-gpu-build)
#   --debs-dir=DIR        MEOW_DEBS           where the packages are unpacked (default /tmp/debs)
#   --budget=S            MEOW_BUDGET_S       seconds for the whole script (default 570): each of
#                                             steps 3-5 gets at most its own limit and what is left
#   TORCH_PREFIX          a folder CMake finds TorchConfig.cmake under (default: python3's
#                         torch.utils.cmake_prefix_path), e.g. /usr/lib/x86_64-linux-gnu/cmake for
#                         Debian's libtorch-dev
#   MEOW_TESTS_TIMEOUT, MEOW_BENCH_TIMEOUT, MEOW_TRAIN_TIMEOUT  per-step limits (150, 150, 200 s)
#   MEOW_CMAKE_ARGS       more arguments for the CMake configure step

TESTS=${MEOW_TESTS:-Cuda}
CTEST_ARGS=${MEOW_CTEST_ARGS:-}
BENCH_FILTER=${MEOW_BENCH_FILTER:-Cuda|cuda|DataParallel}
BENCH_MIN_TIME=${MEOW_BENCH_MIN_TIME:-0.5}
BENCH_ARGS=${MEOW_BENCH_ARGS:-}
TRAIN_ENV=${MEOW_TRAIN_ENV:-Hopper-v4}
TRAIN_DEVICE=${MEOW_TRAIN_DEVICE:-cuda}
TRAIN_STEPS=${MEOW_TRAIN_STEPS:-30000}
TRAIN_ACTORS=${MEOW_TRAIN_ACTORS:-4}
TRAIN_ARGS=${MEOW_TRAIN_ARGS:-}
UNTIL_LIMIT=${MEOW_TRAIN_UNTIL_LIMIT:-0}
JOBS=${MEOW_JOBS:-$(nproc)}
BUILD=${MEOW_BUILD_DIR:-/tmp/meow-gpu-build}
DEBS=${MEOW_DEBS:-/tmp/debs}
BUDGET=${MEOW_BUDGET_S:-570}
TESTS_TIMEOUT=${MEOW_TESTS_TIMEOUT:-150}
BENCH_TIMEOUT=${MEOW_BENCH_TIMEOUT:-150}
TRAIN_TIMEOUT=${MEOW_TRAIN_TIMEOUT:-200}
RUN_TESTS=1 RUN_BENCH=1 RUN_TRAIN=1
for arg in "$@"; do
  case "$arg" in
    --tests=*) TESTS=${arg#*=} ;;
    --ctest-args=*) CTEST_ARGS=${arg#*=} ;;
    --bench-filter=*) BENCH_FILTER=${arg#*=} ;;
    --bench-min-time=*) BENCH_MIN_TIME=${arg#*=} ;;
    --bench-args=*) BENCH_ARGS=${arg#*=} ;;
    --env=*) TRAIN_ENV=${arg#*=} ;;
    --device=*) TRAIN_DEVICE=${arg#*=} ;;
    --train-steps=*) TRAIN_STEPS=${arg#*=} ;;
    --actors=*) TRAIN_ACTORS=${arg#*=} ;;
    --train-args=*) TRAIN_ARGS=${arg#*=} ;;
    --train-until-limit) UNTIL_LIMIT=1 ;;
    --skip-tests) RUN_TESTS=0 ;;
    --skip-bench) RUN_BENCH=0 ;;
    --skip-train) RUN_TRAIN=0 ;;
    --jobs=*) JOBS=${arg#*=} ;;
    --build-dir=*) BUILD=${arg#*=} ;;
    --debs-dir=*) DEBS=${arg#*=} ;;
    --budget=*) BUDGET=${arg#*=} ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument '$arg' (--help lists them)" >&2; exit 2 ;;
  esac
done

LOGS=${OUT:-$BUILD/gpu-logs}
mkdir -p "$LOGS"
# The whole output also goes to run.log: the build's is longer than a terminal tail.
exec > >(tee -a "$LOGS/run.log") 2>&1

STEP="" STEP_T0=0
declare -a SUMMARY=()
step() { STEP=$1; STEP_T0=$SECONDS; printf '\n==== [%s] %s (at %ds)\n' "$1" "$2" $((SECONDS - T0)); }
done_step() { printf -- '---- [%s] %s in %ds\n' "$STEP" "$1" $((SECONDS - STEP_T0)); SUMMARY+=("[$STEP] $1 in $((SECONDS - STEP_T0))s"); }
die() { printf '\nrun.sh: FAILED in step [%s]: %s\n' "$STEP" "$*" >&2; exit 1; }
trap 'rc=$?; printf "\nrun.sh: FAILED in step [%s]: a command exited %d (line %d)\n" "$STEP" $rc $LINENO >&2' ERR
# Seconds a step may use: its own limit, or what is left of the budget less a margin for the rest.
allowance() { local left=$((BUDGET - (SECONDS - T0) - 15)); ((left < $1)) && echo "$left" || echo "$1"; }

# ---------------------------------------------------------------------------------------------
step 0 "the machine"
echo "host: $(uname -srm), $(nproc) cores; source: $SRC; build: $BUILD; logs: $LOGS"
for tool in g++ cmake ninja; do
  command -v "$tool" >/dev/null || die "'$tool' is not on PATH"
  echo "$tool: $("$tool" --version | head -1)"
done
if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then
  export PATH=/usr/local/cuda/bin:$PATH  # CMake's FindCUDAToolkit looks for nvcc on PATH first
fi
if command -v nvcc >/dev/null; then echo "nvcc: $(nvcc --version | tail -1)"; else echo "nvcc: none"; fi
if command -v nvidia-smi >/dev/null; then nvidia-smi -L || true; else echo "nvidia-smi: none (no GPU)"; fi
done_step "ok"

# ---------------------------------------------------------------------------------------------
step 1 "unpack .devdebs into $DEBS; find LibTorch"
[[ "$(uname -m)" == x86_64 ]] || die "the carried packages are x86-64 (amd64); this machine is $(uname -m)"
command -v dpkg-deb >/dev/null || die "dpkg-deb is missing (it unpacks the .deb files)"
command -v ldd >/dev/null || die "ldd is missing"
shopt -s nullglob
debs=(.devdebs/*.deb)
shopt -u nullglob
((${#debs[@]} > 0)) || die ".devdebs/ with the Debian packages is missing or empty: run 'bash tests/gpu/fetch_debs.sh' on a Debian bookworm machine and carry .devdebs (it is git-ignored)"
DEBS=$(realpath -m "$DEBS")
ARCH=x86_64-linux-gnu
LIB=$DEBS/usr/lib/$ARCH
LIBDIRS="$LIB:$DEBS/lib/$ARCH"  # zlib1g still installs into /lib
# The same packages unpacked by this same script are reused as they are, so that a second run
# on a warm machine leaves protoc's wrapper and the configs untouched and rebuilds nothing.
stamp=$( (cd .devdebs && wc -c -- *.deb); md5sum < "$SRC/tests/gpu/run.sh")
if [[ -f "$DEBS/.meow-debs" && "$(cat "$DEBS/.meow-debs")" == "$stamp" ]]; then
  echo "reusing $DEBS: the same ${#debs[@]} packages, unpacked by this script"
else
  # A folder of our own only: the marker file guards the rm -rf against a mistyped MEOW_DEBS.
  if [[ -e "$DEBS" ]]; then
    [[ -f "$DEBS/.meow-debs" ]] || die "$DEBS exists and was not made by this script; choose another --debs-dir"
    rm -rf "$DEBS"
  fi
  mkdir -p "$DEBS" && touch "$DEBS/.meow-debs"
  for f in "${debs[@]}"; do dpkg-deb -x "$f" "$DEBS"; done
  echo "unpacked ${#debs[@]} packages ($(du -sh "$DEBS" | cut -f1))"
  [[ -d "$LIB/cmake/grpc" && -x "$DEBS/usr/bin/protoc" && -x "$DEBS/usr/bin/grpc_cpp_plugin" ]] \
    || die "gRPC's CMake config, protoc or grpc_cpp_plugin is not among the packages (fetch_debs.sh lists them)"

  # Absolute symbolic links (libz.so -> /lib/...) would point at the machine's own files.
  while IFS= read -r link; do
    ln -sfn "$DEBS$(readlink "$link")" "$link"
  done < <(find "$DEBS" -type l -lname '/*')
  # hdf5.pc is Debian's alternatives link (made when the package is installed): the serial one.
  rm -f "$LIB/pkgconfig/hdf5.pc"
  [[ -f "$LIB/pkgconfig/hdf5-serial.pc" ]] || die "hdf5-serial.pc is missing (package libhdf5-dev)"
  cp "$LIB/pkgconfig/hdf5-serial.pc" "$LIB/pkgconfig/hdf5.pc"
  # pkg-config files name /usr: point them into the prefix.
  find "$DEBS" -type f -name '*.pc' -path '*/pkgconfig/*' -exec \
    sed -i -E "s#(^|[=[:space:]]|-I|-L)/usr(/|[[:space:]]|\$)#\1$DEBS/usr\2#g" {} +
  # Debian's MuJoCo config asks for OpenGL (nothing here links it, and the image has no GL
  # development files) and names /usr/include/libqhull_r, whose headers nothing here includes.
  mj=$LIB/cmake/mujoco
  sed -i 's/^\([[:space:]]*find_dependency(OpenGL)\)/# \1  (left out by tests\/gpu\/run.sh)/' "$mj/mujocoConfig.cmake"
  sed -i "s#/usr/include/libqhull_r/#$DEBS/usr/include/libqhull_r/#g" "$mj/mujocoTargets.cmake"
  mkdir -p "$DEBS/usr/include/libqhull_r"
  if grep -q '^[[:space:]]*find_dependency(OpenGL)' "$mj/mujocoConfig.cmake" || grep -q ';/usr/include' "$mj/mujocoTargets.cmake"; then
    die "the MuJoCo CMake config did not take the expected edits (another libmujoco-dev version?)"
  fi

  # protoc (and the grpc_cpp_plugin it starts) and pkgconf find their libraries through these
  # wrappers; nothing else gets LD_LIBRARY_PATH, so the machine's own tools keep their libraries.
  mkdir -p "$DEBS/wrap"
  # shellcheck disable=SC2016  # the ${...} and "$@" are for the wrappers to expand
  printf '#!/bin/sh\nLD_LIBRARY_PATH="%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "%s" "$@"\n' \
    "$LIBDIRS" "$DEBS/usr/bin/protoc" > "$DEBS/wrap/protoc"
  # shellcheck disable=SC2016
  printf '#!/bin/sh\nPKG_CONFIG_LIBDIR="%s" LD_LIBRARY_PATH="%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "%s" "$@"\n' \
    "$LIB/pkgconfig:$DEBS/usr/share/pkgconfig" "$LIBDIRS" "$DEBS/usr/bin/pkgconf" > "$DEBS/wrap/pkg-config"
  chmod +x "$DEBS/wrap/protoc" "$DEBS/wrap/pkg-config"
  echo "$stamp" > "$DEBS/.meow-debs"  # last: an unpack cut short is done again
fi

# Every carried program and library must find what it links, before a long build finds out.
missing=$(for f in "$DEBS"/usr/bin/{protoc,grpc_cpp_plugin,pkgconf} "$LIB"/*.so.* "$DEBS/lib/$ARCH"/*.so.*; do
  [[ -f "$f" && ! -L "$f" ]] || continue
  LD_LIBRARY_PATH=$LIBDIRS ldd "$f" 2>/dev/null | sed -n "s#^[[:space:]]*\([^ ]*\) => not found#  ${f#"$DEBS"/} needs \1#p"
done | sort -u)
[[ -z "$missing" ]] || die "carried files need libraries that neither .devdebs nor this machine has:
$missing
(add their Debian packages to tests/gpu/fetch_debs.sh)"
echo "protoc: $("$DEBS/wrap/protoc" --version)"
echo "pkg-config: cpp-httplib $("$DEBS/wrap/pkg-config" --modversion cpp-httplib), hdf5 $("$DEBS/wrap/pkg-config" --modversion hdf5)"

if [[ -n "${TORCH_PREFIX:-}" ]]; then
  echo "LibTorch: TORCH_PREFIX=$TORCH_PREFIX"
else
  command -v python3 >/dev/null || die "no TORCH_PREFIX and no python3 to ask for PyTorch's LibTorch"
  TORCH_PREFIX=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)') \
    || die "no TORCH_PREFIX and python3 cannot import torch"
  python3 - <<'EOF' || die "this PyTorch is built with the old C++ ABI: Debian's libraries need _GLIBCXX_USE_CXX11_ABI=1"
import torch
print(f"LibTorch: PyTorch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"GPU {torch.cuda.is_available()}, cxx11 ABI {torch.compiled_with_cxx11_abi()}, at {torch.utils.cmake_prefix_path}")
raise SystemExit(0 if torch.compiled_with_cxx11_abi() else 1)
EOF
fi
[[ -n "$(find "$TORCH_PREFIX" -maxdepth 4 -name TorchConfig.cmake -print -quit 2>/dev/null)" ]] \
  || die "no TorchConfig.cmake under TORCH_PREFIX=$TORCH_PREFIX"
done_step "ok"

# ---------------------------------------------------------------------------------------------
step 2 "configure and build into $BUILD ($JOBS jobs)"
cmake_args=(
  -S "$SRC" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMEOW_USE_CCACHE=OFF
  # The carried packages first, so that a package the machine happens to have is not mixed in.
  "-DCMAKE_PREFIX_PATH=$DEBS/usr;$TORCH_PREFIX"
  "-DProtobuf_PROTOC_EXECUTABLE=$DEBS/wrap/protoc"
  "-DPKG_CONFIG_EXECUTABLE=$DEBS/wrap/pkg-config"
  # OpenSSL's configuration headers live in the multiarch include folder, which the compiler
  # searches only under /usr.
  "-DCMAKE_CXX_STANDARD_INCLUDE_DIRECTORIES=$DEBS/usr/include/$ARCH"
  # Built programs find the carried libraries, and the libraries' own dependencies, through
  # DT_RPATH (DT_RUNPATH would not apply to those), without LD_LIBRARY_PATH; gtest discovery runs
  # the test programs during the build.
  "-DCMAKE_BUILD_RPATH=$LIB;$DEBS/lib/$ARCH"
  "-DCMAKE_EXE_LINKER_FLAGS=-Wl,--disable-new-dtags"
)
# CMake 4 refuses configs that ask for a policy version below 3.5.
cmake_major=$(cmake --version | sed -n 's/^cmake version \([0-9]*\).*/\1/p')
((cmake_major >= 4)) && cmake_args+=(-DCMAKE_POLICY_VERSION_MINIMUM=3.5)
# shellcheck disable=SC2206  # word splitting wanted
cmake_args+=(${MEOW_CMAKE_ARGS:-})
cmake "${cmake_args[@]}" || die "CMake could not configure (the message above names what it did not find)"

echo "-- where each dependency came from:"
outside=()
while IFS= read -r line; do
  key=${line%%:*} value=${line#*=}
  printf '   %-30s %s\n' "$key" "$value"
  case "$key" in
    Torch_DIR|Caffe2_DIR|MEOW_TORCH_CUDA_LIBRARY|CUDAToolkit_*) ;;
    *) [[ -z "$value" || "$value" == *"$DEBS"* || "$value" == *NOTFOUND ]] || outside+=("$key=$value") ;;
  esac
done < <(grep -E '^(Torch_DIR|absl_DIR|gRPC_DIR|mujoco_DIR|GTest_DIR|benchmark_DIR|Protobuf_INCLUDE_DIR|Protobuf_LIBRARY_RELEASE|Protobuf_LIBRARY|Protobuf_PROTOC_EXECUTABLE|ZLIB_LIBRARY_RELEASE|ZLIB_LIBRARY|OPENSSL_SSL_LIBRARY|c-ares_LIBRARY|PKG_CONFIG_EXECUTABLE|MEOW_EGL_LIBRARY|HTTPLIB_INCLUDE_DIRS|HDF5_INCLUDE_DIRS|HDF5_LINK_LIBRARIES|MEOW_TORCH_CUDA_LIBRARY|CUDAToolkit_BIN_DIR):' "$BUILD/CMakeCache.txt")
((${#outside[@]} == 0)) || printf 'WARNING: found outside %s (the machine'"'"'s own copy is mixed in):\n%s\n' "$DEBS" "$(printf '   %s\n' "${outside[@]}")"

build_t0=$SECONDS
cmake --build "$BUILD" -j "$JOBS" || die "the build failed (the compiler's message is above)"
echo "build: $((SECONDS - build_t0))s"
MEOW=$BUILD/learner/meow
[[ -x "$MEOW" ]] || die "$MEOW was not built"
# The programs load the carried libraries, and nothing is missing.
deps=$(ldd "$MEOW")
if grep -q 'not found' <<<"$deps"; then die "meow cannot load: $(grep 'not found' <<<"$deps" | tr -s ' \t' ' ')"; fi
echo "meow loads $(grep -c "=> $DEBS" <<<"$deps") libraries from $DEBS and these from elsewhere (LibTorch's, the system's):"
grep '=>' <<<"$deps" | grep -v "=> $DEBS" | awk '{print $3}' | sort | xargs -n 4 echo '  '
done_step "ok"

# ---------------------------------------------------------------------------------------------
# Steps 3-5 record their result and go on.
FAILED=0
record() {  # record RC WHAT
  local rc=$1 what=$2
  if ((rc == 0)); then done_step "passed: $what"
  elif ((rc == 124 || rc == 137)); then done_step "TIMED OUT: $what"; FAILED=1
  else done_step "FAILED (exit $rc): $what"; FAILED=1
  fi
}
skip() { step "$1" "$2"; echo "skipped: $3"; SUMMARY+=("[$1] skipped: $3"); }

if ((RUN_TESTS == 0)); then skip 3 "tests" "--skip-tests"
elif (( $(allowance "$TESTS_TIMEOUT") < 30 )); then skip 3 "tests" "out of time (--budget=$BUDGET)"; FAILED=1
else
  limit=$(allowance "$TESTS_TIMEOUT")
  step 3 "tests: ctest -R '$TESTS' $CTEST_ARGS (limit ${limit}s)"
  rc=0
  # shellcheck disable=SC2086  # CTEST_ARGS is a list of words
  (cd "$BUILD" && timeout -k 10 "$limit" ctest -R "$TESTS" --output-on-failure --no-tests=error \
     --output-log "$LOGS/ctest.log" $CTEST_ARGS) || rc=$?
  record "$rc" "ctest -R '$TESTS' (log: $LOGS/ctest.log)"
fi

if ((RUN_BENCH == 0)); then skip 4 "benchmark" "--skip-bench"
elif (( $(allowance "$BENCH_TIMEOUT") < 30 )); then skip 4 "benchmark" "out of time (--budget=$BUDGET)"; FAILED=1
else
  limit=$(allowance "$BENCH_TIMEOUT")
  step 4 "benchmark: bench_meow_update --benchmark_filter='$BENCH_FILTER' (limit ${limit}s)"
  rc=0
  # shellcheck disable=SC2086
  timeout -k 10 "$limit" "$BUILD/tests/bench/bench_meow_update" --benchmark_filter="$BENCH_FILTER" \
    --benchmark_min_time="$BENCH_MIN_TIME" --benchmark_out="$LOGS/bench.json" --benchmark_out_format=json \
    $BENCH_ARGS | tee "$LOGS/bench.txt" || rc=$?
  record "$rc" "bench_meow_update (results: $LOGS/bench.json, bench.txt)"
fi

if ((RUN_TRAIN == 0)); then skip 5 "training" "--skip-train"
elif (( $(allowance "$TRAIN_TIMEOUT") < 30 )); then skip 5 "training" "out of time (--budget=$BUDGET)"; FAILED=1
else
  limit=$(allowance "$TRAIN_TIMEOUT")
  run_dir=$BUILD/train-run
  rm -rf "$run_dir"
  train=("$MEOW" train --env="$TRAIN_ENV" --device="$TRAIN_DEVICE" --total_env_steps="$TRAIN_STEPS"
         --actors="$TRAIN_ACTORS" --seed=1 --run_dir="$run_dir")
  # shellcheck disable=SC2206
  train+=($TRAIN_ARGS)
  step 5 "training: ${train[*]} (limit ${limit}s)"
  rc=0
  # SIGINT is meow's stop request: a run cut by the limit still ends with its checkpoint and rows.
  timeout -s INT -k 30 "$limit" "${train[@]}" 2>&1 | tee "$LOGS/train.log" || rc=$?
  if [[ -f "$run_dir/config.txt" ]]; then cp "$run_dir/config.txt" "$LOGS/train-config.txt"; fi
  if [[ -f "$run_dir/metrics.csv" ]]; then
    cp "$run_dir/metrics.csv" "$LOGS/metrics.csv"
    echo "metrics.csv ($(($(wc -l < "$run_dir/metrics.csv") - 1)) rows), its header and last row:"
    head -1 "$run_dir/metrics.csv"; tail -1 "$run_dir/metrics.csv"
  else
    echo "no metrics.csv in $run_dir"; ((rc != 0)) || rc=1
  fi
  if ((UNTIL_LIMIT && rc == 124)) && [[ -s "$run_dir/metrics.csv" ]]; then
    echo "stopped at the step's limit, as --train-until-limit asks"
    rc=0
  fi
  record "$rc" "meow train (log: $LOGS/train.log, metrics: $LOGS/metrics.csv)"
fi

printf '\n==== summary (%ds in all)\n' $((SECONDS - T0))
printf '  %s\n' "${SUMMARY[@]}"
trap - ERR
exit "$FAILED"
