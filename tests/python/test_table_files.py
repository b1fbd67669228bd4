"""HugeCTR table folders: write, read, inspect, and the errors for broken ones."""

from __future__ import annotations

import os

import numpy as np
import pytest

import hps
from conftest import config_for


def test_round_trip_with_meta(tmp_path):
    rng = np.random.default_rng(0)
    keys = rng.integers(-(2**62), 2**62, 1000)
    rows = rng.standard_normal((1000, 12), dtype=np.float32)
    meta = rng.integers(0, 100, 1000)
    hps.write_sparse_model(tmp_path / "t", keys, rows, meta)
    # The bytes are HugeCTR's layout: int64 keys, fp32 rows, int64 meta, little-endian.
    assert (tmp_path / "t" / "key").read_bytes() == keys.astype("<i8").tobytes()
    assert (tmp_path / "t" / "emb_vector").read_bytes() == rows.astype("<f4").tobytes()
    assert (tmp_path / "t" / "meta").read_bytes() == meta.astype("<i8").tobytes()
    info = hps.inspect_sparse_model(tmp_path / "t")
    assert (info["rows"], info["dim"], info["has_meta"]) == (1000, 12, True)
    k, r, m = hps.read_sparse_model(tmp_path / "t", with_meta=True)
    np.testing.assert_array_equal(k, keys)
    np.testing.assert_array_equal(r, rows)
    np.testing.assert_array_equal(m, meta)
    k, r = hps.read_sparse_model(tmp_path / "t", first=990, count=10)
    np.testing.assert_array_equal(r, rows[990:])


def test_truncated_vectors_name_the_file_and_sizes(tmp_path, table):
    path = os.path.join(table.folder, "emb_vector")
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size - 4)
    with pytest.raises(hps.StorageError, match=rf"emb_vector: expected {size} bytes .* found {size - 4} bytes"):
        hps.inspect_sparse_model(table.folder, table.dim)
    with pytest.raises(OSError, match="emb_vector"):
        hps.HPS(config_for([table]))


def test_missing_files(tmp_path, table):
    os.remove(os.path.join(table.folder, "key"))
    with pytest.raises(hps.StorageError, match="key: missing"):
        hps.HPS(config_for([table]))
    with pytest.raises(hps.StorageError, match="does not exist"):
        hps.inspect_sparse_model(tmp_path / "nowhere")


def test_config_dim_must_match_the_files(table):
    config = config_for([table])
    config["models"][0]["embedding_vecsize_per_table"] = [table.dim * 2]
    with pytest.raises(hps.StorageError, match="found"):
        hps.HPS(config)


def test_duplicate_keys_in_a_file_last_occurrence_wins(tmp_path):
    keys = np.array([5, 6, 5])
    rows = np.array([[1.0], [2.0], [3.0]], np.float32)
    hps.write_sparse_model(tmp_path / "t", keys, rows)
    config = {"models": [{"model": "m", "sparse_files": [str(tmp_path / "t")], "embedding_vecsize_per_table": [1]}]}
    with hps.HPS(config) as ps:
        np.testing.assert_array_equal(ps.lookup("m", 0, [5, 6]), [[3.0], [2.0]])


def test_writer_checks_its_input(tmp_path):
    with pytest.raises(hps.InvalidArgumentError, match="integers"):
        hps.write_sparse_model(tmp_path / "t", np.array([1.5]), np.zeros((1, 2)))
    with pytest.raises(hps.InvalidArgumentError, match=r"shape \[2, D\]"):
        hps.write_sparse_model(tmp_path / "t", np.array([1, 2]), np.zeros((3, 2)))
    with pytest.raises(hps.InvalidArgumentError, match="meta"):
        hps.write_sparse_model(tmp_path / "t", np.array([1, 2]), np.zeros((2, 2)), meta=[1])


def test_write_model_config_writes_a_config_the_server_loads(tmp_path):
    rows = np.arange(12, dtype=np.float32).reshape(3, 4)
    hps.write_sparse_model(tmp_path / "t0", keys=np.array([5, 6, 7]), rows=rows)
    path = hps.write_model_config(tmp_path / "ps.json", "m", ["t0"], [4], key64=False)
    assert path == str((tmp_path / "ps.json").resolve())
    with hps.HPS(path) as ps:
        np.testing.assert_array_equal(ps.lookup("m", "t0", np.array([6, 9])), np.stack([rows[1], np.zeros(4, np.float32)]))
        assert ps.config.to_dict()["supportlonglong"] is False


def test_write_model_config_refuses_bad_input(tmp_path):
    with pytest.raises(hps.InvalidArgumentError, match="2 table names but 1 row widths"):
        hps.write_model_config(tmp_path / "ps.json", "m", ["a", "b"], [4])
    hps.write_sparse_model(tmp_path / "a", keys=np.array([1]), rows=np.ones((1, 4)))
    with pytest.raises(hps.ConfigError, match="gpucacheper"):
        hps.write_model_config(tmp_path / "ps.json", "m", ["a"], [4], model_keys={"gpucacheper": 7})


@pytest.mark.parametrize("dim", [2**62, 2**61 + 4], ids=["product-0", "product-wraps-to-the-file-size"])
def test_a_dim_whose_bytes_overflow_is_refused_not_wrapped(tmp_path, dim):
    # 10 rows of 2^61 + 4 values: 10 x dim x 4 bytes wraps around 2^64 to 160, the real size of a
    # D = 4 file; the check used to pass, and a server built on it hung sizing its records.
    hps.write_sparse_model(tmp_path / "t", np.arange(10), np.zeros((10, 4), np.float32))
    with pytest.raises(hps.InvalidArgumentError, match=rf"a dim of {dim} values per row is impossible"):
        hps.inspect_sparse_model(tmp_path / "t", dim)
    config = config_for([], model="m")
    config["models"][0].update(sparse_files=[str(tmp_path / "t")], embedding_vecsize_per_table=[dim])
    with pytest.raises(hps.ConfigError, match=r"embedding_vecsize_per_table\[0\]: expected an integer in "
                                              rf"\[1, 1048576\], found {dim}"):
        hps.HPS(config)
