"""The Kafka pieces a machine without a registry gets carried (the GPU machine): the broker, the
Python client for that machine's Python, and the librdkafka inside the client's wheel.

scripts/stage_kafka_for_gpu.sh writes them into a git-ignored folder (.device/kafka); unpack()
turns that folder into runnable files in a scratch folder. HPS_KAFKA_CARRIED names another folder.

Ownership: the unpacked files belong to the caller's scratch folder. Threads: call from one thread.
"""

from __future__ import annotations

import lzma
import os
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STAGE_HINT = ("run scripts/stage_kafka_for_gpu.sh on the project machine (it needs .venv from scripts/setup.sh "
              "--test and a package registry), then carry .device/kafka with the run")


@dataclass
class Pieces:
    tansu: str       # the broker executable
    librdkafka: str  # the shared library hps's consumer loads (HPS_LIBRDKAFKA)
    site: str        # a folder to put on sys.path: confluent_kafka for this Python


def carried_folder() -> Path:
    return Path(os.environ.get("HPS_KAFKA_CARRIED") or ROOT / ".device" / "kafka")


def unpack(folder: Path, scratch: Path) -> Pieces:
    """Unpacks the staged broker and this Python's client wheel into `scratch`. Raises
    FileNotFoundError, naming what is missing and how to stage it."""
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    xz = folder / "tansu.xz"
    wheels = sorted((folder / "wheels").glob(f"confluent_kafka-*-{tag}-*.whl")) if folder.is_dir() else []
    missing = ([] if xz.is_file() else [str(xz)]) + ([] if wheels else [f"{folder}/wheels/confluent_kafka-*-{tag}-*.whl"])
    if missing:
        raise FileNotFoundError(f"the Kafka pieces for this machine are missing ({', '.join(missing)}): {STAGE_HINT}")
    scratch.mkdir(parents=True, exist_ok=True)
    tansu = scratch / "tansu"
    with lzma.open(xz) as src, open(tansu, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    tansu.chmod(0o755)
    site = scratch / "site"
    with zipfile.ZipFile(wheels[-1]) as wheel:
        wheel.extractall(site)
    libs = sorted((site / "confluent_kafka.libs").glob("librdkafka*.so*"))
    if not libs:
        raise FileNotFoundError(f"{wheels[-1]} holds no confluent_kafka.libs/librdkafka*.so*: {STAGE_HINT}")
    return Pieces(str(tansu), str(libs[0]), str(site))
