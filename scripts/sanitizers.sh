#!/usr/bin/env bash
# The C++ core and its C++/C test suites under sanitizers (CUDA, TensorFlow and TensorRT off), each
# in its own build folder so the Python build is untouched:
#   scripts/sanitizers.sh          AddressSanitizer + UndefinedBehaviorSanitizer: every non-GPU ctest
#   scripts/sanitizers.sh --tsan   ThreadSanitizer: the concurrency tests (thread pool, concurrent
#                                  readers of every tier, concurrent lookups/updates, the registry);
#                                  only the test programs holding them are built
#   scripts/sanitizers.sh --python a Python smoke run over the ASan+UBSan core: the suites of
#                                  PYTHON_SMOKE with the installed package (HPS_VENV, default .venv,
#                                  made by scripts/setup.sh) loading the sanitized libhps_core.so
#   scripts/sanitizers.sh --all    all three (what .ci/run runs)
# Any report fails the run (halt_on_error / -fno-sanitize-recover). Environment: HPS_SAN_JOBS
# (build jobs, default 2), HPS_SAN_DIR (default build/san).
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-asan}"
jobs="${HPS_SAN_JOBS:-2}"
root="${HPS_SAN_DIR:-build/san}"

# GCC 12 reports false -Wmaybe-uninitialized inside libstdc++ (<regex>, std::function) once the
# sanitizers instrument the code at -O1; they stay warnings here, as in the test targets.
cxx_warnings="-Wno-error=maybe-uninitialized"

configure_and_build() {  # <folder> <sanitizer flags> [targets...] (default: all)
  local dir="$1" flags="$2"
  shift 2
  local targets=()
  [ "$#" -gt 0 ] && targets=(--target "$@")
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DHPS_BUILD_TESTS=ON \
    -DHPS_WITH_CUDA=OFF -DHPS_WITH_TF=OFF -DHPS_WITH_TENSORRT=OFF \
    -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags -O1 $cxx_warnings" \
    -DCMAKE_EXE_LINKER_FLAGS="$flags" -DCMAKE_SHARED_LINKER_FLAGS="$flags" >/dev/null
  cmake --build "$dir" -j "$jobs" "${targets[@]}" -- -k 0 >/dev/null ||
    cmake --build "$dir" -j 1 "${targets[@]}"  # quiet; rerun to show errors
}

ASAN_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g"

run_asan() {
  echo "== AddressSanitizer + UndefinedBehaviorSanitizer: C++ and C suites (no GPU) =="
  configure_and_build "$root/asan" "$ASAN_FLAGS"
  ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:strict_init_order=1:detect_stack_use_after_return=1" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    ctest --test-dir "$root/asan" --output-on-failure --timeout 600 -j "$jobs" -LE gpu -E '^install_consumer$'
  # (install_consumer builds an out-of-tree program against the installed library: a packaging
  # check, whose program is not built with the sanitizer runtime.)
}

# The Python suites that drive the core hardest on the CPU: lookups of every shape and dtype, bad
# input, stats, table files, RocksDB, updates, concurrency, the promotion race, device-array parsing.
PYTHON_SMOKE=(test_lookup.py test_bad_input.py test_errors_and_stats.py test_table_files.py test_rocksdb.py
              test_updates.py test_concurrency.py test_promotion_race.py test_device_arrays.py)

run_python_smoke() {
  echo "== AddressSanitizer + UndefinedBehaviorSanitizer: Python smoke run over the sanitized core =="
  local venv="${HPS_VENV:-.venv}"
  if [ ! -x "$venv/bin/python" ]; then
    echo "sanitizers.sh --python: no $venv/bin/python; run scripts/setup.sh first (or set HPS_VENV)" >&2
    exit 2
  fi
  [ -f "$root/asan/core/libhps_core.so" ] || configure_and_build "$root/asan" "$ASAN_FLAGS"
  # The extension finds libhps_core.so through RUNPATH $ORIGIN, which LD_LIBRARY_PATH overrides.
  # Python is not instrumented, so libasan is preloaded, and libstdc++ with it: ASan's __cxa_throw
  # interceptor must find the real one at startup. Leaks are off (CPython keeps objects to exit).
  local tests=()
  for t in "${PYTHON_SMOKE[@]}"; do tests+=("tests/python/$t"); done
  LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)" \
  LD_LIBRARY_PATH="$PWD/$root/asan/core" \
  ASAN_OPTIONS="detect_leaks=0:halt_on_error=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
  HPS_PROGRESS=0 "$venv/bin/python" -m pytest -q -p no:cacheprovider "${tests[@]}"
}

# The tests whose point is several threads at once (TSan finds nothing in one thread).
TSAN_TESTS='ThreadPool\.|ConcurrentReadersSeeWholeRows|ConcurrentLookupsAndUpdates|LargeBatchesSplitOverThreads|ConcurrentOpenFindInsert|ServerRegistry\.'
# Only the test programs holding them are built (and the core they link): about half the build.
TSAN_TARGETS=(test_thread_pool test_hash_map_tier test_tier_chain test_rocksdb_tier test_parameter_server
              test_server_registry)

run_tsan() {
  echo "== ThreadSanitizer: the concurrency tests =="
  # -Wno-tsan: GCC refuses atomic_thread_fence under TSan (not modelled). The one fence, in the hash
  # map's record seqlock, orders writes for lock-free readers on the GPU; every host reader and writer
  # of records holds the partition lock, which TSan does see.
  configure_and_build "$root/tsan" "-fsanitize=thread -Wno-tsan -fno-omit-frame-pointer -g" "${TSAN_TARGETS[@]}"
  TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/scripts/tsan.supp" \
    ctest --test-dir "$root/tsan" --output-on-failure --timeout 900 -j "$jobs" -LE gpu -R "$TSAN_TESTS"
}

case "$mode" in
  asan|"") run_asan ;;
  --tsan) run_tsan ;;
  --python) run_python_smoke ;;
  --all) run_asan; run_python_smoke; run_tsan ;;
  *) echo "usage: scripts/sanitizers.sh [--tsan | --python | --all]" >&2; exit 2 ;;
esac
