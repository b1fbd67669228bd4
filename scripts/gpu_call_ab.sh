#!/usr/bin/env bash
# A/B of a whole lookup call from Python: this tree against another revision, each built into a
# folder of its own and put first on PYTHONPATH in turn, so one benchmark runs against both in one
# GPU lease, alternately (the lent GPU machines differ from one another by 10-30%: compare only
# numbers of one run). scripts/gpu_kernels_ab.sh does the same for the kernel micro-benchmark.
#
# Usage:
#   on the project machine:  scripts/gpu_call_ab.sh --prepare REV
#       unpacks REV's tree into build/ab-call/REV (git-ignored: name it in the device tool's carry);
#   on the GPU machine:      scripts/gpu_call_ab.sh build/ab-call/REV [ROUNDS] [OUT_DIR]
#       builds both trees side by side (pip install --target, CUDA for sm_$HPS_GPU_ARCH, default 90),
#       runs the new tree's C++ tests matching HPS_GPU_AB_TESTS, then every benchmark ROUNDS times
#       (default 2), new then old, each side with its own tree's script, and prints the medians of
#       both side by side.
# Environment:
#   HPS_GPU_AB_BENCH  benchmark command lines, ';'-separated, run with python3 in each tree (default:
#                     profile_call_overhead.py --no-trace over 4M rows at 26,624 keys, D = 128 and 64:
#                     about 30-50 s a run, so the defaults fit one 10-minute device call with the builds)
#   HPS_GPU_AB_TESTS  ctest regex run on the new tree's build (default "GpuHostTier|GpuCache"; empty: none)
# Exit status: non-zero when a build or a test failed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# shellcheck source=scripts/ab_common.sh
source "$ROOT/scripts/ab_common.sh"
[[ ${1:-} == --prepare ]] && ab_prepare gpu_call_ab.sh ab-call "${2:-}"

OLD=$(cd "${1:?usage: scripts/gpu_call_ab.sh build/ab-call/REV [ROUNDS] [OUT_DIR]}" && pwd) || exit 1
ROUNDS=${2:-2}
OUT_DIR=$(ab_out_dir "${3:-${OUT:-$ROOT/build/gpu-call-ab}}") || exit 1
ARCH=${HPS_GPU_ARCH:-90}
TESTS=${HPS_GPU_AB_TESTS-"GpuHostTier|GpuCache"}
overhead="benchmarks/profile_call_overhead.py --rows 4000000 --calls 200 --no-trace"
BENCH=${HPS_GPU_AB_BENCH:-"$overhead --dim 128 --batch 26624; $overhead --dim 64 --batch 26624"}
JOBS=$(( ($(nproc) + 1) / 2 ))
export PYTHONUNBUFFERED=1 HPS_PROGRESS=0

build_tree() {  # build_tree TREE SIDE: the package into $OUT_DIR/site-SIDE, its build (and tests) in build-SIDE
  python3 -m pip install --no-build-isolation --no-deps --upgrade --target "$OUT_DIR/site-$2" \
    -C build-dir="$OUT_DIR/build-$2" -C cmake.define.HPS_BUILD_TESTS=ON -C cmake.define.HPS_WITH_CUDA=ON \
    -C cmake.define.CMAKE_CUDA_ARCHITECTURES="$ARCH" -C build.tool-args=-j$JOBS "$1" >"$OUT_DIR/build-$2.log" 2>&1
}
build_tree "$ROOT" new & new_pid=$!
build_tree "$OLD" old & old_pid=$!
status=0
wait $new_pid || { echo "new tree: build failed ($OUT_DIR/build-new.log)"; status=1; }
wait $old_pid || { echo "old tree: build failed ($OUT_DIR/build-old.log)"; status=1; }
[[ $status == 0 ]] || exit 1
echo "[gpu_call_ab] both trees built"

if [[ -n $TESTS ]]; then
  ctest --test-dir "$OUT_DIR/build-new" -R "$TESTS" --output-on-failure --timeout 600 >"$OUT_DIR/ctest-new.log" 2>&1 ||
    status=1
  echo "[gpu_call_ab] new tree, ctest -R '$TESTS': $(grep -E 'tests passed|tests failed' "$OUT_DIR/ctest-new.log")"
fi

IFS=';' read -ra benches <<<"$BENCH"
for ((b = 0; b < ${#benches[@]}; ++b)); do
  for ((round = 1; round <= ROUNDS; ++round)); do
    for side in new old; do
      tree=$ROOT
      [[ $side == old ]] && tree=$OLD
      # shellcheck disable=SC2086
      (cd "$tree" && PYTHONPATH="$OUT_DIR/site-$side" timeout 300 python3 ${benches[b]}) \
        >"$OUT_DIR/bench$b-$side-$round.log" 2>&1
      echo "[gpu_call_ab] bench $b (${benches[b]}), $side, round $round: exit status $?"
    done
  done
done

# Rows "<case> | <enqueue us> <synced us> ..." (profile_call_overhead.py): medians over the rounds.
python3 - "$OUT_DIR" "$ROUNDS" "${#benches[@]}" <<'EOF'
import re
import statistics
import sys

out_dir, rounds, benches = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
row = re.compile(r"^\s*(\S+) \|\s+([0-9.]+)\s+([0-9.]+)")
print("| bench | case | new enqueue / synced us | old enqueue / synced us | synced new / old |")
print("|---|---|---|---|---|")
found = False
for b in range(benches):
    cells = {}  # case -> side -> [(enqueue, synced)]
    for side in ("new", "old"):
        for r in range(1, rounds + 1):
            with open(f"{out_dir}/bench{b}-{side}-{r}.log") as log:
                for line in log:
                    m = row.match(line)
                    if m:
                        cells.setdefault(m[1], {"new": [], "old": []})[side].append((float(m[2]), float(m[3])))
    for case, t in cells.items():
        if not (t["new"] and t["old"]):
            continue
        found = True
        med = {s: (statistics.median(x for x, _ in t[s]), statistics.median(y for _, y in t[s])) for s in t}
        print(f"| {b} | {case} | {med['new'][0]:.1f} / {med['new'][1]:.1f} | {med['old'][0]:.1f} / "
              f"{med['old'][1]:.1f} | {med['new'][1] / med['old'][1]:.3f} |")
if not found:
    print("(no timing rows: no CUDA device, or the benchmarks failed: see bench*.log)")
EOF
exit $status
