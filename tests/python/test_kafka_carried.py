"""kafka_carried: unpacking the Kafka pieces staged for a machine without a registry, on a fake
staged folder (the real one is made by scripts/stage_kafka_for_gpu.sh; test_gpu_kafka.py uses it)."""

from __future__ import annotations

import lzma
import os
import sys
import zipfile

import pytest

from kafka_carried import STAGE_HINT, carried_folder, unpack

TAG = f"cp{sys.version_info.major}{sys.version_info.minor}"


def stage(folder, *, broker=True, wheel_tag=TAG, with_lib=True):
    (folder / "wheels").mkdir(parents=True)
    if broker:
        with lzma.open(folder / "tansu.xz", "wb") as f:
            f.write(b"#!/bin/sh\necho broker\n")
    with zipfile.ZipFile(folder / "wheels" / f"confluent_kafka-2.16.1-{wheel_tag}-{wheel_tag}-manylinux_2_28_x86_64.whl",
                         "w") as wheel:
        wheel.writestr("confluent_kafka/__init__.py", "")
        if with_lib:
            wheel.writestr("confluent_kafka.libs/librdkafka-0cb94173.so.1", b"\x7fELF")


def test_unpacks_the_broker_the_client_and_librdkafka(tmp_path):
    stage(tmp_path / "staged")
    pieces = unpack(tmp_path / "staged", tmp_path / "scratch")
    assert open(pieces.tansu, "rb").read() == b"#!/bin/sh\necho broker\n"
    assert os.access(pieces.tansu, os.X_OK)
    assert pieces.librdkafka.endswith("confluent_kafka.libs/librdkafka-0cb94173.so.1")
    assert os.path.isfile(os.path.join(pieces.site, "confluent_kafka", "__init__.py"))


@pytest.mark.parametrize("missing", ["broker", "wheel_for_this_python", "librdkafka", "folder"])
def test_missing_pieces_say_how_to_stage_them(tmp_path, missing):
    folder = tmp_path / "staged"
    if missing != "folder":
        stage(folder, broker=missing != "broker", wheel_tag="cp39" if missing == "wheel_for_this_python" else TAG,
              with_lib=missing != "librdkafka")
    with pytest.raises(FileNotFoundError) as error:
        unpack(folder, tmp_path / "scratch")
    assert "stage_kafka_for_gpu.sh" in str(error.value) and STAGE_HINT in str(error.value)
    if missing == "broker":
        assert "tansu.xz" in str(error.value)
    if missing == "wheel_for_this_python":
        assert TAG in str(error.value)


def test_the_folder_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HPS_KAFKA_CARRIED", str(tmp_path))
    assert carried_folder() == tmp_path
    monkeypatch.delenv("HPS_KAFKA_CARRIED")
    assert carried_folder().parts[-2:] == (".device", "kafka")
