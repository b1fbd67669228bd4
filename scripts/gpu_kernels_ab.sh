#!/usr/bin/env bash
# A/B of the GPU cache kernels: this tree against an older revision, built side by side and run
# alternately on one GPU machine, so that a layout or kernel change is judged against the code
# before it in the same run (machine-to-machine spread on the H200 VMs is 10-30%).
#
# Usage:
#   on the project machine:  scripts/gpu_kernels_ab.sh --prepare REV
#       unpacks REV's GPU cache sources, tests and benchmark into build/ab/REV (git-ignored: name it
#       in the device tool's `carry`);
#   on the GPU machine:      scripts/gpu_kernels_ab.sh build/ab/REV [ROUNDS] [OUT_DIR]
#       builds both trees with scripts/gpu_kernels_bench.sh (build only, sm_90 unless HPS_GPU_ARCHS),
#       runs benchmarks/gpu_cache_kernels.cu of each ROUNDS times (default 2), new then old, and
#       prints every timing row of both next to each other with the ratio of the medians.
# Environment: HPS_GPU_AB_ARGS: the benchmark's arguments (default "--quick --no-hit-rates").
# Exit status: non-zero when a build failed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# shellcheck source=scripts/ab_common.sh
source "$ROOT/scripts/ab_common.sh"
[[ ${1:-} == --prepare ]] && ab_prepare gpu_kernels_ab.sh ab "${2:-}" core scripts tests/cpp/gpu benchmarks/gpu_cache_kernels.cu

OLD=$(cd "${1:?usage: scripts/gpu_kernels_ab.sh build/ab/REV [ROUNDS] [OUT_DIR]}" && pwd) || exit 1
ROUNDS=${2:-2}
OUT_DIR=$(ab_out_dir "${3:-${OUT:-$ROOT/build/gpu-ab}}") || exit 1
ARGS=${HPS_GPU_AB_ARGS:-"--quick --no-hit-rates"}
JOBS=$(( ($(nproc) + 1) / 2 ))

build_tree() {  # build_tree TREE NAME
  (cd "$1" && HPS_GPU_ARCHS=${HPS_GPU_ARCHS:-90} HPS_GPU_JOBS=$JOBS HPS_GPU_BUILD_DIR="$OUT_DIR/build-$2" \
    HPS_GPU_BUILD_ONLY=1 bash scripts/gpu_kernels_bench.sh "$OUT_DIR/$2" >"$OUT_DIR/build-$2.log" 2>&1)
}
build_tree "$ROOT" new & new_pid=$!
build_tree "$OLD" old & old_pid=$!
status=0
wait $new_pid || { echo "new tree: build failed ($OUT_DIR/build-new.log)"; status=1; }
wait $old_pid || { echo "old tree: build failed ($OUT_DIR/build-old.log)"; status=1; }
[[ $status == 0 ]] || exit 1

for ((round = 1; round <= ROUNDS; ++round)); do
  for side in new old; do
    # shellcheck disable=SC2086
    timeout 300 "$OUT_DIR/build-$side/gpu_cache_kernels" $ARGS >"$OUT_DIR/bench-$side-$round.log" 2>&1
    echo "[gpu_kernels_ab] $side round $round: exit status $?"
  done
done

# The benchmark ends with a table "| kind | B | D | us/call | G keys/s | % of HBM bound |".
python3 - "$OUT_DIR" "$ROUNDS" <<'EOF'
import statistics
import sys

out_dir, rounds = sys.argv[1], int(sys.argv[2])
times = {}  # (kind, B, D) -> {"new": [...], "old": [...]}
for side in ("new", "old"):
    for r in range(1, rounds + 1):
        with open(f"{out_dir}/bench-{side}-{r}.log") as log:
            for line in log:
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                if len(cells) == 6 and cells[1].isdigit():
                    times.setdefault(tuple(cells[:3]), {"new": [], "old": []})[side].append(float(cells[3]))
print("| kind | B | D | new us/call | old us/call | new / old (medians) |")
print("|---|---|---|---|---|---|")
for (kind, b, d), t in times.items():
    if t["new"] and t["old"]:
        ratio = statistics.median(t["new"]) / statistics.median(t["old"])
        print(f"| {kind} | {b} | {d} | {', '.join(f'{x:.1f}' for x in t['new'])} | "
              f"{', '.join(f'{x:.1f}' for x in t['old'])} | {ratio:.3f} |")
if not times:
    print("(no timing rows: no CUDA device?)")
EOF
