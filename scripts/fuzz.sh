#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ (clang, ASan + UBSan, in build/fuzz) and runs each on its
# seed corpus for a while; the `hps convert` target is Python (atheris) and runs in .venv.
#   scripts/fuzz.sh [--seconds N] [--install] [--build-only] [target...]
# --seconds N   run each target N seconds (default 10)
# --install     install what is missing first: clang and libFuzzer (apt-get), atheris (.venv)
# target...     some of: fuzz_config fuzz_table_files fuzz_c_api fuzz_kafka_message fuzz_trt_state
#               fuzz_trt_fields fuzz_convert (default: all)
# New inputs go to build/fuzz/corpus/<target>/ (the seeds in fuzz/corpus/<target>/ are only read),
# crashing inputs to build/fuzz/artifacts/<target>/. Any crash, leak, sanitizer report or violated
# property fails the run. Environment: HPS_FUZZ_JOBS (build jobs, default 2), HPS_FUZZ_DIR
# (default build/fuzz), HPS_VENV (default .venv). docs/fuzzing.md describes the targets.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=10
install=0
build_only=0
targets=()
while (( $# )); do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --install) install=1; shift ;;
    --build-only) build_only=1; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
all_native=(fuzz_config fuzz_table_files fuzz_c_api fuzz_kafka_message fuzz_trt_state fuzz_trt_fields)
(( ${#targets[@]} )) || targets=("${all_native[@]}" fuzz_convert)
native=()
python_targets=()
for t in "${targets[@]}"; do
  if [[ "$t" == fuzz_convert ]]; then python_targets+=("$t")
  elif [[ " ${all_native[*]} " == *" $t "* ]]; then native+=("$t")
  else echo "fuzz.sh: no target $t (targets: ${all_native[*]} fuzz_convert)" >&2; exit 2
  fi
done

root="${HPS_FUZZ_DIR:-build/fuzz}"
jobs="${HPS_FUZZ_JOBS:-2}"
venv="${HPS_VENV:-.venv}"

have_libfuzzer() {  # clang++ that links a libFuzzer target
  command -v clang++ >/dev/null 2>&1 || return 1
  local probe
  probe="$(mktemp -d)"
  printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n' > "$probe/p.cpp"
  clang++ -fsanitize=fuzzer,address "$probe/p.cpp" -o "$probe/p" >/dev/null 2>&1
  local ok=$?
  rm -rf "$probe"
  return $ok
}

if (( ${#native[@]} )) && ! have_libfuzzer; then
  if (( install )) && command -v apt-get >/dev/null 2>&1; then
    sudo=""
    [[ "$(id -u)" != 0 ]] && sudo="sudo"
    echo "fuzz.sh: installing clang and libFuzzer"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq clang libclang-rt-dev >/dev/null
  fi
  if ! have_libfuzzer; then
    echo "fuzz.sh: needs clang with libFuzzer (clang++ -fsanitize=fuzzer). Debian/Ubuntu: apt-get install clang" \
         "libclang-rt-dev (or libclang-rt-14-dev), or rerun with --install" >&2
    exit 1
  fi
fi
if (( ${#python_targets[@]} )); then
  if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c "import hps" 2>/dev/null; then
    echo "fuzz.sh: fuzz_convert needs hps installed in $venv (bash scripts/setup.sh)" >&2
    exit 1
  fi
  if ! "$venv/bin/python" -c "import atheris" 2>/dev/null; then
    if (( install )); then
      "$venv/bin/python" -m pip -q --disable-pip-version-check install "atheris==3.0.0"  # the version the targets were run with
    else
      echo "fuzz.sh: fuzz_convert needs atheris in $venv ($venv/bin/python -m pip install atheris), or rerun with --install" >&2
      exit 1
    fi
  fi
fi

if (( ${#native[@]} )); then
  echo "== fuzz: building ${native[*]} in $root (clang, libFuzzer, ASan + UBSan) =="
  # No RocksDB, Redis or Kafka: a fuzzed config must not write where it says nor reach the network
  # (fuzz_c_api refuses to run otherwise). No CUDA, TensorFlow or TensorRT: host code only.
  cmake -S . -B "$root" -G Ninja -DCMAKE_BUILD_TYPE=None -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_CXX_FLAGS="-O1" -DHPS_BUILD_FUZZERS=ON -DHPS_WITH_CUDA=OFF -DHPS_WITH_ROCKSDB=OFF \
    -DHPS_WITH_REDIS=OFF -DHPS_WITH_KAFKA=OFF -DHPS_WITH_TF=OFF -DHPS_WITH_TORCH_OPS=OFF \
    -DHPS_WITH_TENSORRT=OFF >/dev/null
  cmake --build "$root" -j "$jobs" --target "${native[@]}" >"$root/build.log" 2>&1 || { tail -50 "$root/build.log"; exit 1; }
fi
(( build_only )) && exit 0

summary=()
failed=0
export ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
for t in "${targets[@]}"; do
  work="$root/corpus/$t"
  artifacts="$root/artifacts/$t"
  mkdir -p "$work" "$artifacts"
  log="$root/$t.log"
  echo "== fuzz: $t for ${seconds}s =="
  if [[ "$t" == fuzz_convert ]]; then
    cmd=("$venv/bin/python" fuzz/fuzz_convert.py)
  else
    cmd=("$root/fuzz/$t")
  fi
  # The first folder takes new inputs; the seeds are read (and every one of them run) first.
  status=0
  "${cmd[@]}" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=3072 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$work" "fuzz/corpus/$t" >"$log" 2>&1 || status=$?
  runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)"
  last="$(grep -E '#[0-9]+.*(cov|ft):' "$log" | tail -1 || true)"
  cov="$(grep -o 'cov: [0-9]*' <<<"$last" | grep -o '[0-9]*' || true)"
  ft="$(grep -o 'ft: [0-9]*' <<<"$last" | grep -o '[0-9]*' || true)"
  corp="$(grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' <<<"$last" | cut -d' ' -f2 || true)"
  if (( status != 0 )); then
    failed=1
    echo "fuzz: $t FAILED (exit $status); the input is in $artifacts/, the log in $log:"
    grep -E 'ERROR|SUMMARY|property violated|Uncaught|Traceback|Error:' "$log" | head -20 || true
    tail -30 "$log"
  fi
  summary+=("$(printf '%-20s %-6s runs %-10s cov %-6s ft %-6s corpus %s' "$t" "$( ((status)) && echo FAIL || echo ok)" \
                 "${runs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}")")
done
echo "== fuzz: summary (${seconds}s per target) =="
printf '%s\n' "${summary[@]}"
exit $failed
