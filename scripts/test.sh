#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh --test), then runs the whole test suite:
# the C++ suites through ctest and the Python suites through pytest. GPU tests skip without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
build_dir="${HPS_BUILD_DIR:-build/py}"
venv="${HPS_VENV:-.venv}"
echo "== C++ tests (ctest) =="
ctest --test-dir "$build_dir" --output-on-failure --timeout 600
echo "== Python tests (pytest) =="
"$venv/bin/python" -m pytest -q tests/python "$@"
