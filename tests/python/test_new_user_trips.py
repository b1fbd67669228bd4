"""What a new user tripped over (issue 15, item 6), one test per trap; each failed before its fix."""

import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import hps
from hps.cli import main

from conftest import config_for, make_table

needs_rocksdb = pytest.mark.skipif(not hps.rocksdb_available(), reason="this build has no RocksDB")


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=dict(os.environ, **env), timeout=120)


# ---- lookups ------------------------------------------------------------------------------------


def test_empty_list_is_no_keys(table):
    with hps.HPS(config_for([table])) as ps:
        rows = ps.lookup("m", 0, [])
        assert rows.shape == (0, table.dim) and rows.dtype == np.float32
        ps.update("m", 0, [], np.empty((0, table.dim), np.float32))
        assert ps.erase("m", 0, []) == 0


def test_ragged_list_is_an_hps_error_naming_the_argument(table):
    with hps.HPS(config_for([table])) as ps:
        with pytest.raises(hps.InvalidArgumentError, match="^keys must be"):
            ps.lookup("m", 0, [[1, 2], [3]])


# ---- the command line ---------------------------------------------------------------------------


def test_cli_lookup_takes_config_after_keys(tmp_path, table, capsys):
    path = tmp_path / "ps.json"
    path.write_text(json.dumps(config_for([table])))
    keys = [str(k) for k in table.keys[:2].tolist()]
    status = main(["lookup", "--model", "m", "--table", "0", "--keys", *keys, str(path), "--json"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert np.allclose(json.loads(out)["rows"], table.expected(table.keys[:2]))


def test_cli_lookup_without_config_is_a_usage_error(table, capsys):
    status = main(["lookup", "--model", "m", "--table", "0", "--keys", "1", "2"])
    assert status == 2
    assert "CONFIG" in capsys.readouterr().err


def test_version_says_what_was_built_in(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    built = hps.build_features()
    assert set(built) == {"gpu_cache", "rocksdb", "redis", "kafka", "tf_op", "tensorrt_plugin"}
    for label, key in (("GPU cache", "gpu_cache"), ("RocksDB", "rocksdb"), ("Redis Cluster", "redis"), ("Kafka consumer", "kafka"),
                       ("TensorFlow op", "tf_op"), ("TensorRT plugin", "tensorrt_plugin")):
        expected = f"{label} {'yes' if built[key] else 'no'}"
        assert expected in out, f"expected {expected!r} in {out!r}"


def test_inspect_on_a_file_says_it_is_a_file(tmp_path, table, capsys):
    status = main(["inspect", os.path.join(table.folder, "key")])
    err = capsys.readouterr().err
    assert status == 1
    assert "is a file, not a table folder" in err, err


# ---- table files --------------------------------------------------------------------------------


def test_read_sparse_model_inverts_write(tmp_path):
    keys, rows = np.arange(5, dtype=np.int64), np.ones((5, 3), np.float32)
    hps.write_sparse_model(tmp_path / "t", keys, rows, meta=keys * 2)
    got_keys, got_rows = hps.read_sparse_model(tmp_path / "t")  # two values, as written
    assert np.array_equal(got_keys, keys) and np.array_equal(got_rows, rows)
    _, _, meta = hps.read_sparse_model(tmp_path / "t", with_meta=True)
    assert np.array_equal(meta, keys * 2)


def test_write_sparse_model_refuses_to_overwrite_like_convert(tmp_path):
    keys, rows = np.arange(5, dtype=np.int64), np.ones((5, 3), np.float32)
    hps.write_sparse_model(tmp_path / "t", keys, rows, meta=keys)
    with pytest.raises(hps.StorageError, match="overwrite=True"):
        hps.write_sparse_model(tmp_path / "t", keys[:2], rows[:2])
    assert hps.inspect_sparse_model(tmp_path / "t")["rows"] == 5  # untouched
    hps.write_sparse_model(tmp_path / "t", keys[:2], rows[:2], overwrite=True)
    info = hps.inspect_sparse_model(tmp_path / "t")
    assert info["rows"] == 2 and not info["has_meta"]  # the old table's meta went with it


# ---- config -------------------------------------------------------------------------------------


def test_gpucache_without_gpu_warns_once_per_process(tmp_path, table):
    if hps.build_features()["gpu_cache"] and hps.cuda_device_count() > 0:
        pytest.skip("this machine has a GPU cache to use")
    config = config_for([table], gpucache=True)
    result = _python(f"""
        import warnings, hps
        config = {config!r}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(3):
                hps.HPS(config).close()
                hps.HPS(dict(config, supportlonglong=True)).close()
        found = [str(w.message) for w in caught if issubclass(w.category, hps.ConfigWarning) and "gpucache" in str(w.message)]
        print(len(found)); print(found[0] if found else "")
    """)
    assert result.returncode == 0, result.stderr
    count, message = result.stdout.splitlines()[:2]
    assert count == "1", f"expected one warning per process, got {count}"
    assert "CPU" in message


def test_error_locates_a_table_by_json_path(tmp_path):
    t = make_table(tmp_path / "t", 100, 4)
    config = config_for([t], embedding_table_names=["big"])
    config["volatile_db"] = {"type": "hash_map", "num_partitions": 1, "overflow_margin": 10}
    with pytest.raises(hps.ConfigError, match=r"models\[0\]\.sparse_files\[0\] \(m/big\)"):
        hps.HPS(config)


def test_import_hps_torch_without_torch_says_how_to_install():
    result = _python("""
        import sys
        sys.modules["torch"] = None  # as if torch were not installed
        try:
            import hps.torch
        except ModuleNotFoundError as error:
            print(error.name); print(error)
    """)
    assert result.returncode == 0, result.stderr
    name, message = result.stdout.splitlines()[:2]
    assert name == "torch" and "pip install torch" in message, result.stdout


# ---- RocksDB ------------------------------------------------------------------------------------


@needs_rocksdb
def test_second_process_on_a_rocksdb_folder_is_told_who_holds_it(tmp_path, table):
    config = config_for([table], persistent=str(tmp_path / "db"))
    with hps.HPS(config):
        result = _python(f"""
            import hps
            try:
                hps.HPS({config!r})
            except hps.HpsError as error:
                print(error)
        """)
    assert result.returncode == 0, result.stderr
    assert "another process" in result.stdout and "holds the database" in result.stdout, result.stdout


@needs_rocksdb
def test_stats_say_rocksdb_rows_are_estimated(tmp_path, table):
    with hps.HPS(config_for([table], persistent=str(tmp_path / "db"))) as ps:
        entry = ps.stats()[0]
    assert entry["tier_rows_estimated"] == {"gpu_cache": False, "volatile_db": False, "persistent_db": True}
    assert "tier_rows" in entry  # the existing key stays
