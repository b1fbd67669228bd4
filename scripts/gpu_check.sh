#!/usr/bin/env bash
# The GPU machine's one script: builds hps with CUDA and its tests, runs the GPU tests and the GPU
# benchmarks, and writes every log under one folder.
#
# Usage: scripts/gpu_check.sh [OUT_DIR]        (default: $OUT, else build/gpu-check)
# Stages (HPS_GPU_STAGES, default all, in this order):
#   build    pip install . with CUDA (CMAKE_CUDA_ARCHITECTURES=$HPS_GPU_ARCH, default 90) and the C++ tests
#   ctest    the C++ suites: the GPU ones (label gpu) and the rest
#   pytest   the Python GPU cases (marker gpu) and the torch suites (whose CPU cases then meet this
#            machine's torch), or the pytest arguments in HPS_GPU_PYTEST (test files, -k ...); the rest
#            run in CI. test_gpu_kafka.py needs the Kafka pieces of
#            scripts/stage_kafka_for_gpu.sh carried in .device/kafka; the cases over RocksDB or Redis
#            need the storage pieces of scripts/stage_storage_for_gpu.sh carried in .device/storage
#            (this machine has neither)
#   kernels  the GPU cache micro-benchmark (benchmarks/gpu_cache_kernels.cu, standalone nvcc build)
#   lookup   benchmarks/gpu_lookup.py (HPS_GPU_LOOKUP_ARGS)
#   example  examples/dlrm_torch.py --device cuda
#   dlrm     benchmarks/dlrm_torch.py (HPS_GPU_DLRM_ARGS)
#   overhead (not in the default list) benchmarks/profile_call_overhead.py, the host side of a 2,048-key
#            lookup phase by phase, at each D of HPS_GPU_OVERHEAD_DIMS (default "16 128") over
#            HPS_GPU_OVERHEAD_ROWS rows (default 4000000), HPS_GPU_OVERHEAD_BATCH keys a call (default 2048)
#   ncu      (not in the default list) Nsight Compute over the same script's calls with misses (cache at
#            20%): the probe, the host-tier kernel and the insertion each replayed alone (a kernel's own
#            time, without the next call's kernels beside it), at the same D, rows and batch
#   freshness  (not in the default list) benchmarks/update_freshness.py with the host tiers, then with
#            --device cuda (HPS_GPU_FRESHNESS_ARGS, default --control --seconds 1 --rounds 16); needs
#            the Kafka pieces of scripts/stage_kafka_for_gpu.sh carried in .device/kafka
#   multigpu (not in the default list) benchmarks/multi_gpu_lookup.py over every GPU of the machine
#            (HPS_GPU_MULTI_ARGS); needs two or more GPUs
#   soak     benchmarks/soak.py --gpu (HPS_GPU_SOAK_MINUTES, default 9: one command may run 10); not in
#            the default stages: run it alone, HPS_GPU_STAGES=soak, after a build
#   command  (not in the default list) HPS_GPU_COMMAND, a shell command line run in this script's
#            environment (the carried storage libraries on LD_LIBRARY_PATH, redis-server on PATH), its
#            output in command.log: a test binary of the build repeated, under compute-sanitizer, ...
# Exit status: non-zero when a stage failed; every stage runs even after an earlier one failed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT_DIR=${1:-${OUT:-$ROOT/build/gpu-check}}
STAGES=${HPS_GPU_STAGES:-"build ctest pytest kernels lookup example dlrm"}
ARCH=${HPS_GPU_ARCH:-90}
BUILD_DIR=${HPS_GPU_BUILD_DIR:-$ROOT/build/gpu}
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 HPS_PROGRESS=0
mkdir -p "$OUT_DIR"
cd "$ROOT"
status=0

log() { echo "[gpu_check $(date +%H:%M:%S)] $*"; }
wants() { [[ " $STAGES " == *" $1 "* ]]; }

# run_stage NAME LOGFILE COMMAND...: runs the command, its output to the log; prints the log's tail.
run_stage() {
  local name=$1 logfile=$2
  shift 2
  local start=$(date +%s)
  "$@" >"$OUT_DIR/$logfile" 2>&1
  local rc=$?
  log "$name: exit $rc after $(($(date +%s) - start)) s (log: $logfile)"
  tail -n "${HPS_GPU_TAIL:-15}" "$OUT_DIR/$logfile"
  [[ $rc == 0 ]] || status=1
  return $rc
}

{ nvidia-smi -L; nvcc --version | tail -1; "$PYTHON" -c "import torch; print('torch', torch.__version__)"; } \
  >"$OUT_DIR/device.txt" 2>&1
cat "$OUT_DIR/device.txt"

# The Kafka pieces scripts/stage_kafka_for_gpu.sh stages (carried with the run): the consumer is
# built against their librdkafka header, and tests/python/test_gpu_kafka.py runs the broker from them.
KAFKA_CARRIED=${HPS_KAFKA_CARRIED:-$ROOT/.device/kafka}
kafka_define=()
[[ -f "$KAFKA_CARRIED/include/librdkafka/rdkafka.h" ]] && \
  kafka_define=(-C cmake.define.HPS_RDKAFKA_INCLUDE="$KAFKA_CARRIED/include")

# The storage pieces scripts/stage_storage_for_gpu.sh stages (carried with the run): RocksDB and
# hiredis to build against and load, redis-server for the tests' clusters. Without them the build
# has neither tier and the tests that need them skip.
STORAGE_CARRIED=${HPS_STORAGE_CARRIED:-$ROOT/.device/storage}
storage_define=()
if [[ -f "$STORAGE_CARRIED/lib/librocksdb.so.7.8" ]]; then
  # Carried as files named by their sonames: the linker looks for the unversioned names.
  ln -sf librocksdb.so.7.8 "$STORAGE_CARRIED/lib/librocksdb.so"
  ln -sf libhiredis.so.0.14 "$STORAGE_CARRIED/lib/libhiredis.so"
  export LD_LIBRARY_PATH="$STORAGE_CARRIED/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export PATH="$STORAGE_CARRIED/bin:$PATH"
  storage_define=(-C cmake.define.CMAKE_PREFIX_PATH="$STORAGE_CARRIED")
  log "storage pieces from $STORAGE_CARRIED: $(tr '\n' ' ' <"$STORAGE_CARRIED/MANIFEST")"
fi

if wants build; then
  run_stage build build.log "$PYTHON" -m pip install --no-build-isolation --no-deps -v \
    -C build-dir="$BUILD_DIR" -C cmake.define.HPS_BUILD_TESTS=ON -C cmake.define.HPS_WITH_CUDA=ON \
    "${kafka_define[@]}" "${storage_define[@]}" -C cmake.define.CMAKE_CUDA_ARCHITECTURES="$ARCH" \
    -C build.tool-args=-j16 . || exit 1
  grep -h "hps [0-9.]*: building" "$OUT_DIR/build.log" | head -1
fi

if wants ctest; then
  run_stage ctest-gpu ctest_gpu.log ctest --test-dir "$BUILD_DIR" -L gpu --output-on-failure --timeout 600
  run_stage ctest-all ctest_all.log ctest --test-dir "$BUILD_DIR" -LE gpu -j8 --output-on-failure --timeout 600
fi

if wants pytest; then
  # shellcheck disable=SC2086
  run_stage pytest pytest.log "$PYTHON" -m pytest -q -p no:cacheprovider -rs \
    ${HPS_GPU_PYTEST:-tests/python/test_gpu*.py tests/python/test_torch_*.py}
fi

if wants command; then
  run_stage command command.log bash -c "${HPS_GPU_COMMAND:?the command stage runs HPS_GPU_COMMAND}"
fi

if wants kernels; then
  run_stage kernels kernels.log env HPS_GPU_ARCHS="$ARCH" HPS_GPU_TEST_FILTER="-*" bash scripts/gpu_kernels_bench.sh "$OUT_DIR/kernels"
fi

if wants lookup; then
  # shellcheck disable=SC2086
  run_stage lookup gpu_lookup.log "$PYTHON" benchmarks/gpu_lookup.py --out "$OUT_DIR/gpu_lookup.json" \
    ${HPS_GPU_LOOKUP_ARGS:-}
fi

if wants example; then
  run_stage example example.log "$PYTHON" examples/dlrm_torch.py --device cuda
fi

if wants dlrm; then
  # shellcheck disable=SC2086
  run_stage dlrm dlrm.log "$PYTHON" benchmarks/dlrm_torch.py --plot-dir "$OUT_DIR" ${HPS_GPU_DLRM_ARGS:-}
fi

overhead_args=(--rows "${HPS_GPU_OVERHEAD_ROWS:-4000000}" --batch "${HPS_GPU_OVERHEAD_BATCH:-2048}")
if wants overhead; then
  for dim in ${HPS_GPU_OVERHEAD_DIMS:-16 128}; do
    run_stage "overhead-d$dim" "overhead_d$dim.log" "$PYTHON" benchmarks/profile_call_overhead.py \
      "${overhead_args[@]}" --dim "$dim"
  done
fi

if wants ncu; then
  # --clock-control none: the device tool's METHOD.md (leave the clocks alone); the NVTX range picks
  # the 20% case's calls; 30 launches skipped for the warm-up's.
  for dim in ${HPS_GPU_OVERHEAD_DIMS:-16 128}; do
    run_stage "ncu-d$dim" "ncu_d$dim.log" ncu --clock-control none --target-processes all --nvtx \
      --nvtx-include "dyn-20/" -k regex:"dynamic_probe|tier_lookup|dynamic_write" --launch-skip 30 \
      --launch-count 6 --section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats \
      "$PYTHON" benchmarks/profile_call_overhead.py "${overhead_args[@]}" --dim "$dim" --calls 30 --no-trace
    grep -E "^  void|Duration" "$OUT_DIR/ncu_d$dim.log" | sed -E 's/\(hps::cuda::[^)]*\)|\(Dynamic[^)]*\)|\(HostTier[^)]*\)//'
  done
fi

if wants freshness; then
  # shellcheck disable=SC2086
  for device in cpu cuda; do
    run_stage "freshness-$device" "freshness_$device.log" "$PYTHON" benchmarks/update_freshness.py --device "$device" \
      --json-out "$OUT_DIR/freshness_$device.json" ${HPS_GPU_FRESHNESS_ARGS:---control --seconds 1 --rounds 16}
  done
fi

if wants multigpu; then
  gpus=$(nvidia-smi -L | wc -l)
  # shellcheck disable=SC2086
  run_stage multigpu multi_gpu.log "$PYTHON" benchmarks/multi_gpu_lookup.py --devices $(seq 0 $((gpus - 1))) \
    --out "$OUT_DIR/multi_gpu.json" ${HPS_GPU_MULTI_ARGS:-}
fi

if wants soak; then
  run_stage soak soak.log "$PYTHON" benchmarks/soak.py --gpu --minutes "${HPS_GPU_SOAK_MINUTES:-9}" --progress \
    --json "$OUT_DIR/soak.json"
fi

log "done, status $status"
exit $status
