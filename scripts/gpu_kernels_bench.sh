#!/usr/bin/env bash
# The GPU cache kernels on their own: builds the GPU cache, its gtest suite and its micro-benchmarks with nvcc (standalone,
# so it needs no CMake configure of the rest of the project), runs the tests (optionally under
# compute-sanitizer) and the benchmark, and writes every log under the output folder.
#
# Usage: scripts/gpu_kernels_bench.sh [OUT_DIR]  (scripts/gpu_check.sh runs it as its kernels stage)        (default: $OUT, else build/gpu-check)
# Environment:
#   HPS_GPU_ARCHS="80 90"   SM architectures to build     HPS_GPU_JOBS=N      parallel compiles
#   HPS_GPU_SKIP_BUILD=1    reuse the binaries already in the build folder
#   HPS_GPU_BUILD_ONLY=1    stop after building           HPS_GPU_SANITIZE=1  memcheck a test subset
#   HPS_GPU_BENCH_ARGS=...  arguments of the benchmark (--quick, --sweep); HPS_GPU_NO_BENCH=1 skips it
#   HPS_GPU_TEST_FILTER=... a --gtest_filter for the test run; HPS_GPU_TEST_TIMEOUT=400 seconds
# Exit status: non-zero when the build or a test failed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT_DIR=${1:-${OUT:-$ROOT/build/gpu-check}}
BUILD=${HPS_GPU_BUILD_DIR:-$ROOT/build/gpu-standalone}
ARCHS=${HPS_GPU_ARCHS:-"80 90"}
JOBS=${HPS_GPU_JOBS:-$(nproc)}
mkdir -p "$OUT_DIR" "$BUILD/obj"
status=0

log() { echo "[gpu_check] $*"; }

{ nvidia-smi -L 2>&1; nvcc --version 2>&1 | tail -1; } >"$OUT_DIR/device.txt" || true
cat "$OUT_DIR/device.txt"

# ---- build ------------------------------------------------------------------------------------
GENCODE=""
for a in $ARCHS; do GENCODE+=" -gencode=arch=compute_${a},code=sm_${a}"; done
NVCC_FLAGS="-std=c++20 -O3 $GENCODE --expt-relaxed-constexpr -lineinfo -I$ROOT/core/include -I$ROOT/core/src \
  -Xcompiler=-Wall,-Wextra,-Wno-unused-parameter --Werror=all-warnings"

find_gtest() {
  for d in /usr/lib/x86_64-linux-gnu /usr/local/lib /usr/lib64 /usr/lib "$BUILD/gtest/lib"; do
    if [[ -f $d/libgtest.a && -f $d/libgtest_main.a ]]; then echo "$d"; return 0; fi
  done
  return 1
}

build() {
  local gtest_dir
  if ! gtest_dir=$(find_gtest); then
    local src=/usr/src/googletest
    [[ -d $src ]] || { log "no libgtest and no GoogleTest sources in $src"; return 1; }
    log "building GoogleTest from $src"
    cmake -S "$src" -B "$BUILD/gtest-build" -DCMAKE_BUILD_TYPE=Release -DBUILD_GMOCK=OFF \
      -DCMAKE_ARCHIVE_OUTPUT_DIRECTORY="$BUILD/gtest/lib" >/dev/null &&
      cmake --build "$BUILD/gtest-build" -j "$JOBS" >/dev/null || return 1
    gtest_dir=$(find_gtest) || return 1
  fi
  # hash_map_tier.cpp: the dynamic cache can attach to a GPU-visible CPU-memory tier (host_tier_index).
  local sources=("$ROOT"/core/src/gpu/*.cu "$ROOT"/core/src/gpu/*.cpp "$ROOT"/core/src/gpu/sizing/*.cpp "$ROOT/core/src/keys.cpp"
                 "$ROOT/core/src/tiers/hash_map_tier.cpp"
                 "$ROOT/tests/cpp/gpu/test_gpu_cache.cu" "$ROOT/benchmarks/gpu_cache_kernels.cu")
  log "compiling ${#sources[@]} files for sm_{${ARCHS// /,}} with $JOBS jobs"
  printf '%s\n' "${sources[@]}" | xargs -P "$JOBS" -I{} sh -c \
    'src="{}"; obj="'"$BUILD"'/obj/$(basename "$src").o"; nvcc '"$NVCC_FLAGS"' -c "$src" -o "$obj" || { echo "FAILED: $src"; exit 255; }' \
    || return 1
  local lib_objs=("$BUILD"/obj/*.cu.o "$BUILD"/obj/*.cpp.o)
  local lib=()
  for o in "${lib_objs[@]}"; do
    case $(basename "$o") in test_gpu_cache.cu.o | gpu_cache_kernels.cu.o) ;; *) lib+=("$o") ;; esac
  done
  nvcc $GENCODE -o "$BUILD/test_gpu_cache" "$BUILD/obj/test_gpu_cache.cu.o" "${lib[@]}" \
    -L"$gtest_dir" -lgtest_main -lgtest -lpthread || return 1
  nvcc $GENCODE -o "$BUILD/gpu_cache_kernels" "$BUILD/obj/gpu_cache_kernels.cu.o" "${lib[@]}" -lpthread || return 1
  # The miss path's roof (random rows of mapped host memory): self-contained, run by hand. (A tree
  # unpacked by gpu_kernels_ab.sh --prepare has no copy of it.)
  if [[ -f $ROOT/benchmarks/zero_copy_gather.cu ]]; then
    nvcc $GENCODE -std=c++20 -O3 -Xcompiler=-Wall,-Wextra --Werror=all-warnings -o "$BUILD/zero_copy_gather" \
      -I"$ROOT/core/src" "$ROOT/benchmarks/zero_copy_gather.cu" || return 1
  fi
  log "built $BUILD/test_gpu_cache, $BUILD/gpu_cache_kernels and (where its source is) $BUILD/zero_copy_gather"
}

if [[ ${HPS_GPU_SKIP_BUILD:-0} != 1 ]]; then
  start=$(date +%s)
  if ! build >"$OUT_DIR/build.log" 2>&1; then
    cat "$OUT_DIR/build.log"
    log "BUILD FAILED"
    exit 1
  fi
  log "build took $(($(date +%s) - start)) s"
fi
[[ ${HPS_GPU_BUILD_ONLY:-0} == 1 ]] && exit 0

# ---- tests ------------------------------------------------------------------------------------
filter=${HPS_GPU_TEST_FILTER:-*}
start=$(date +%s)
timeout "${HPS_GPU_TEST_TIMEOUT:-400}" "$BUILD/test_gpu_cache" --gtest_filter="$filter" \
  --gtest_output="xml:$OUT_DIR/test_gpu_cache.xml" 2>&1 |
  tee "$OUT_DIR/test.log"
test_status=${PIPESTATUS[0]}
log "tests took $(($(date +%s) - start)) s, exit status $test_status"
[[ $test_status == 0 ]] || status=1

if [[ ${HPS_GPU_SANITIZE:-0} == 1 ]] && command -v compute-sanitizer >/dev/null; then
  subset='GpuCache.EmptyBatchAndEmptyCache:GpuCache.ExtremeKeysAreOrdinaryKeys:GpuCache.AbsentKeys*:GpuCache.InvalidKeys*:GpuCache.UnalignedOutput:GpuCache.DynamicUpdateErase*:GpuCache.Refresh*'
  timeout 300 compute-sanitizer --tool memcheck --error-exitcode 3 "$BUILD/test_gpu_cache" --gtest_filter="$subset" \
    >"$OUT_DIR/memcheck.log" 2>&1
  log "memcheck exit status $? ($(grep -c 'ERROR SUMMARY' "$OUT_DIR/memcheck.log") summaries): $(grep 'ERROR SUMMARY' "$OUT_DIR/memcheck.log" | tail -1)"
fi

# ---- benchmark --------------------------------------------------------------------------------
if [[ ${HPS_GPU_NO_BENCH:-0} != 1 ]]; then
  start=$(date +%s)
  # shellcheck disable=SC2086
  timeout "${HPS_GPU_BENCH_TIMEOUT:-400}" "$BUILD/gpu_cache_kernels" ${HPS_GPU_BENCH_ARGS:-} 2>&1 | tee "$OUT_DIR/bench.log"
  log "benchmark took $(($(date +%s) - start)) s, exit status ${PIPESTATUS[0]}"
fi

grep -E '^\[  (PASSED|FAILED) ' "$OUT_DIR/test.log" || true
exit $status
