"""The `hps` command line: every subcommand, in process (hps.cli.main) and as `python -m hps.cli`."""

import json
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

import hps
from hps.cli import main

DIM_A, DIM_B = 8, 4
ROWS = 200


@pytest.fixture
def run(capsys):
    """run(*argv) -> (exit status, stdout, stderr) of hps.cli.main."""

    def call(*argv):
        status = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        return status, out, err

    return call


@pytest.fixture
def model(tmp_path):
    """Two tables and a config with a small hash map in front of RocksDB."""
    rng = np.random.default_rng(0)
    keys = np.arange(ROWS, dtype=np.int64) * 10
    rows_a = rng.standard_normal((ROWS, DIM_A)).astype(np.float32)
    rows_b = rng.standard_normal((ROWS, DIM_B)).astype(np.float32)
    hps.write_sparse_model(tmp_path / "tables" / "a", keys, rows_a)
    hps.write_sparse_model(tmp_path / "tables" / "b", keys, rows_b, meta=np.arange(ROWS))
    config = {
        "supportlonglong": True,
        "volatile_db": {"type": "hash_map", "num_partitions": 2, "overflow_margin": 40,
                        "cache_missed_embeddings": True},
        "persistent_db": {"type": "rocks_db", "path": "rocksdb"},
        "models": [{
            "model": "m",
            "sparse_files": ["tables/a", "tables/b"],
            "embedding_table_names": ["ta", "tb"],
            "embedding_vecsize_per_table": [DIM_A, DIM_B],
            "default_value_for_each_table": [0.5, -1.0],
            "gpucache": False,
            "dense_file": "dense.model",  # accepted with a warning
        }],
    }
    path = tmp_path / "ps.json"
    path.write_text(json.dumps(config))
    return {"config": path, "dict": config, "keys": keys, "a": rows_a, "b": rows_b, "dir": tmp_path}


def write_config(path, config):
    path.write_text(json.dumps(config))
    return path


def one_error_line(err, command):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"hps {command}: error: ")
    return lines[0]


# ---- the command itself -------------------------------------------------------------------------


def test_version(run):
    status, out, _ = run("--version")
    assert status == 0
    assert out.startswith(f"hps {hps.__version__} (built with: GPU cache ")


@pytest.mark.parametrize("command", ["validate", "schema", "convert", "inspect", "lookup", "stats", "bench", "publish", "demo"])
def test_every_subcommand_has_help(run, command):
    status, out, _ = run(command, "--help")
    assert status == 0
    assert out.startswith(f"usage: hps {command}")


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["lookup", "ps.json", "--model", "m"],
                                  ["lookup", "ps.json", "--model", "m", "--table", "0", "--keys", "1",
                                   "--keys-file", "k.npy"],
                                  ["inspect", "folder", "--head", "many"], ["stats", "ps.json", "--format", "xml"]])
def test_usage_errors_exit_2(run, argv):
    status, _, err = run(*argv)
    assert status == 2
    assert "usage: hps" in err


def usage_error_line(err, command):
    """The line argparse ends a usage error with (after the usage lines)."""
    assert err.startswith(f"usage: hps {command}"), err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"hps {command}: error: ")
    return line


@pytest.mark.parametrize("argv, message", [
    (["inspect", "t", "--dim", "-1"], "argument --dim: must be 1 or more, got -1"),
    (["inspect", "t", "--head", "-2"], "argument --head: must be 0 or more, got -2"),
    (["publish", "--brokers", "127.0.0.1:1", "--model", "m", "--table", "t", "--from-table", "t", "--dim", "-1"],
     "argument --dim: must be 1 or more, got -1"),
    (["publish", "--brokers", "b:1", "--model", "m", "--table", "t", "--partitions", "0"],
     "argument --partitions: must be 1 or more, got 0"),
    (["publish", "--brokers", "b:1", "--model", "m", "--table", "t", "--max-message-bytes", "-5"],
     "argument --max-message-bytes: must be 1 or more, got -5"),
    (["convert", "a.npz", "--out", "o", "--chunk-rows", "0"], "argument --chunk-rows: must be 1 or more, got 0"),
    (["convert", "a.npz", "--out", "o", "--dim-check", "four"],
     "argument --dim-check: expected an integer, got 'four'"),
    (["stats", "ps.json", "--batch", "0"], "argument --batch: must be 1 or more, got 0"),
    (["bench", "ps.json", "--model", "m", "--warmup", "-1"], "argument --warmup: must be 0 or more, got -1"),
    (["bench", "ps.json", "--model", "m", "--seed", "-1"], "argument --seed: must be 0 or more, got -1"),
    (["onnx-surgery", "m.onnx", "--out", "o.onnx", "--tables", "t", "--model", "m", "--min-rows", "0"],
     "argument --min-rows: must be 1 or more, got 0"),
])
def test_integer_options_out_of_range_are_usage_errors_naming_the_option(run, argv, message):
    status, out, err = run(*argv)
    assert status == 2 and out == ""
    assert usage_error_line(err, argv[0]) == f"hps {argv[0]}: error: {message}"


def test_python_dash_m_and_clean_user_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{bad")
    done = subprocess.run([sys.executable, "-m", "hps.cli", "validate", str(bad)], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    line = one_error_line(done.stderr, "validate")
    assert "bad.json: line 1, column 2: invalid JSON" in line
    done = subprocess.run([sys.executable, "-m", "hps.cli", "schema"], capture_output=True, text=True)
    assert done.returncode == 0
    assert json.loads(done.stdout)["title"]


# ---- validate -----------------------------------------------------------------------------------


def test_validate_ok(run, model):
    status, out, err = run("validate", model["config"])
    assert status == 0
    assert re.search(r"warning: .*models\[0\]\.dense_file: accepted for HugeCTR compatibility", err)
    assert re.search(r"m/ta\s+200\s+8\s+no", out)
    assert re.search(r"m/tb\s+200\s+4\s+yes", out)
    assert out.strip().splitlines()[-1] == "OK: 1 models, 2 tables, 400 rows"


def test_validate_unknown_key_suggests(run, model):
    config = model["dict"]
    config["models"][0]["gpucachee"] = True
    status, out, err = run("validate", write_config(model["dir"] / "typo.json", config))
    assert status == 1
    assert out == ""
    assert "typo.json: models[0].gpucachee: unknown key; did you mean 'gpucache'?" in one_error_line(err, "validate")


def test_validate_bad_json(run, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"models": [}')
    status, _, err = run("validate", path)
    assert status == 1
    assert "bad.json: line 1" in one_error_line(err, "validate")


def test_validate_missing_config_file(run, tmp_path):
    status, _, err = run("validate", tmp_path / "nope.json")
    assert status == 1
    assert "nope.json" in one_error_line(err, "validate")


def test_validate_truncated_emb_vector_names_byte_counts(run, model):
    path = model["dir"] / "tables" / "a" / "emb_vector"
    with open(path, "r+b") as f:
        f.truncate(ROWS * DIM_A * 4 - 8)
    status, out, err = run("validate", model["config"])
    assert status == 1
    assert "OK" not in out
    assert re.search(r"error: models\[0\]\.sparse_files\[0\] \(m/ta\): .*a/emb_vector: expected 6400 bytes "
                     r"\(200 keys x 8 floats x 4 bytes\), found 6392 bytes", err)
    assert "1 of 2 table folders have problems" in err
    assert re.search(r"m/tb\s+200", out)  # the good table is still reported


def test_validate_missing_folder_and_no_files(run, model):
    config = model["dict"]
    config["models"][0]["sparse_files"][1] = "tables/missing"
    path = write_config(model["dir"] / "missing.json", config)
    status, _, err = run("validate", path)
    assert status == 1
    assert re.search(r"sparse_files\[1\] \(m/tb\): .*tables/missing: table folder does not exist", err)
    status, out, _ = run("validate", path, "--no-files")
    assert status == 0
    assert out.strip() == "OK: 1 models, 2 tables (table files not checked)"


@pytest.mark.parametrize("setting, reason", [
    ({"read_only": True}, "persistent_db is read-only"),
    ({"initialize_after_startup": False}, "persistent_db.initialize_after_startup is false"),
])
def test_validate_does_not_need_table_files_the_server_does_not_read(run, model, setting, reason):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hps.ConfigWarning)
        hps.HPS(model["config"], progress=False).close()  # fills the RocksDB store from the files
    for table in ("a", "b"):  # a serving host with the store only
        for name in os.listdir(model["dir"] / "tables" / table):
            os.remove(model["dir"] / "tables" / table / name)
        os.rmdir(model["dir"] / "tables" / table)
    status, _, err = run("validate", model["config"])
    assert status == 1 and "table folder does not exist" in err  # the server would load them: needed
    config = model["dict"]
    config["persistent_db"].update(setting)
    path = write_config(model["dir"] / "store_only.json", config)
    status, out, err = run("validate", path)
    assert status == 0 and "error" not in err
    assert out.strip() == f"OK: 1 models, 2 tables (table files not read: {reason})"
    status, out, _ = run("lookup", path, "--model", "m", "--table", "tb", "--keys", "10", "--json")
    assert status == 0  # and the server serves it, from the store
    np.testing.assert_array_equal(json.loads(out)["rows"], model["b"][1:2])


def test_validate_hash_map_too_small_without_persistent_db(run, model):
    config = model["dict"]
    del config["persistent_db"]
    path = write_config(model["dir"] / "small.json", config)
    status, _, err = run("validate", path)
    assert status == 1
    message = (r"the table's 200 rows put \d+ distinct keys in partition \d of the hash map's 2 \(keys spread by hash, "
               r"not evenly\), more than its overflow_margin 40")
    assert re.search(message, err), err
    # The server refuses the same config with the same words: one rule, checked in one place.
    with pytest.raises(hps.ConfigError, match=message), warnings.catch_warnings():
        warnings.simplefilter("ignore", hps.ConfigWarning)
        hps.HPS(path, progress=False)


def test_validate_partial_initial_cache_without_persistent_db(run, model):
    config = model["dict"]
    del config["persistent_db"]
    config["volatile_db"].update(overflow_margin=10**6, initial_cache_rate=0.5)
    status, _, err = run("validate", write_config(model["dir"] / "partial.json", config))
    assert status == 1
    assert "volatile_db.initial_cache_rate < 1 needs a persistent_db to hold the other rows" in err


def test_validate_dim_mismatch(run, model):
    config = model["dict"]
    config["models"][0]["embedding_vecsize_per_table"] = [16, DIM_B]
    status, _, err = run("validate", write_config(model["dir"] / "dim.json", config))
    assert status == 1
    assert "a/emb_vector" in err and "6400 bytes" in err


# ---- schema -------------------------------------------------------------------------------------


def test_schema(run):
    status, out, _ = run("schema")
    assert status == 0
    schema = json.loads(out)
    assert schema == hps.json_schema()
    assert "models" in schema["properties"]
    status, out, _ = run("schema", "--indent", "0")
    assert status == 0 and out.count("\n") == 1 and json.loads(out) == schema
    status, _, err = run("schema", "--indent", "-1")
    assert status == 2 and usage_error_line(err, "schema").endswith("argument --indent: must be 0 or more, got -1")


# ---- convert ------------------------------------------------------------------------------------


def test_convert_all_three_forms(run, tmp_path):
    rng = np.random.default_rng(5)
    keys, rows = rng.permutation(30).astype(np.int64), rng.standard_normal((30, 3)).astype(np.float32)
    np.savez(tmp_path / "t.npz", key=keys, emb_vector=rows, meta=np.arange(30))
    np.save(tmp_path / "k.npy", keys)
    np.save(tmp_path / "r.npy", rows)
    status, out, _ = run("convert", tmp_path / "t.npz", "--out", tmp_path / "one", "--chunk-rows", "7")
    assert status == 0
    assert "30 rows x 3, with meta" in out
    status, _, _ = run("convert", "--keys", tmp_path / "k.npy", "--rows", tmp_path / "r.npy", "--out",
                       tmp_path / "two", "--dim-check", "3")
    assert status == 0
    status, out, _ = run("convert", tmp_path / "r.npy", "--out", tmp_path / "three", "--key-offset", "100")
    assert status == 0
    assert "keys 100 .. 129" in out
    for folder, want_keys in (("one", keys), ("two", keys), ("three", np.arange(100, 130))):
        got_keys, got_rows = hps.read_sparse_model(tmp_path / folder)
        np.testing.assert_array_equal(got_keys, want_keys)
        np.testing.assert_array_equal(got_rows, rows)


def test_convert_errors(run, tmp_path):
    np.save(tmp_path / "k.npy", np.arange(3.0))
    np.save(tmp_path / "r.npy", np.zeros((3, 2)))
    status, _, err = run("convert", "--keys", tmp_path / "k.npy", "--rows", tmp_path / "r.npy", "--out", tmp_path / "o")
    assert status == 1
    assert "k.npy: keys must be integers, got dtype float64" in one_error_line(err, "convert")
    status, _, err = run("convert", tmp_path / "r.npy", "--out", tmp_path / "o", "--dim-check", "5")
    assert status == 1 and "expected 5" in one_error_line(err, "convert")
    status, _, err = run("convert", tmp_path / "absent.npz", "--out", tmp_path / "o")
    assert status == 1 and "absent.npz: no such file" in one_error_line(err, "convert")


@pytest.mark.parametrize("keys, rows, message", [
    (np.array([1, 2**64 - 1], dtype=np.uint64), np.ones((2, 4)),
     "k.npy: key 18446744073709551615 does not fit the int64 'key' file"),
    (np.array([1, 2]), np.array([[1.0, 2.0], [1e39, 3.0]]),
     "r.npy: row 1, column 0: 1e+39 does not fit the float32 'emb_vector' file (float32 holds at most ~3.4e38"),
])
def test_convert_failure_leaves_nothing_behind(run, tmp_path, keys, rows, message):
    np.save(tmp_path / "k.npy", keys)
    np.save(tmp_path / "r.npy", rows)
    status, out, err = run("convert", "--keys", tmp_path / "k.npy", "--rows", tmp_path / "r.npy",
                           "--out", tmp_path / "new")
    assert status == 1 and out == ""
    assert message in one_error_line(err, "convert")  # and no NumPy overflow warning
    assert not os.path.exists(tmp_path / "new")


def test_convert_duplicates_warn_and_force(run, tmp_path):
    np.savez(tmp_path / "t.npz", keys=[1, 1, 2], rows=np.zeros((3, 2)))
    status, out, err = run("convert", tmp_path / "t.npz", "--out", tmp_path / "o")
    assert status == 0
    assert "warning: 1 duplicate key (1 distinct key appears more than once)" in err
    assert out.strip().endswith("keys 1 .. 2, 1 duplicate")
    status, _, err = run("convert", tmp_path / "t.npz", "--out", tmp_path / "o")
    assert status == 1 and "--force" in one_error_line(err, "convert")
    status, _, _ = run("convert", tmp_path / "t.npz", "--out", tmp_path / "o", "--force")
    assert status == 0


# ---- inspect ------------------------------------------------------------------------------------


def test_inspect_text(run, model):
    status, out, _ = run("inspect", model["dir"] / "tables" / "b", "--head", "2")
    assert status == 0
    assert re.search(r"^rows\s+200$", out, re.M)
    assert re.search(r"^dim\s+4$", out, re.M)
    assert re.search(r"^meta\s+yes$", out, re.M)
    assert "key 1,600 B, emb_vector 3,200 B, meta 1,600 B" in out
    assert "min 0, max 1990, 0 duplicates" in out
    first = ", ".join(f"{v:.6g}" for v in model["b"][0].tolist())
    assert f"  0: [{first}]  meta 0" in out
    assert "  20: [" not in out  # only two rows


def test_inspect_json_with_duplicates(run, tmp_path):
    keys = np.array([3, 1, 3, 3, 2])
    rows = np.arange(10, dtype=np.float32).reshape(5, 2)
    hps.write_sparse_model(tmp_path / "t", keys, rows)
    status, out, _ = run("inspect", tmp_path / "t", "--json", "--head", "10")
    assert status == 0
    report = json.loads(out)
    assert (report["rows"], report["dim"], report["has_meta"]) == (5, 2, False)
    assert (report["key_min"], report["key_max"], report["duplicate_keys"]) == (1, 3, 2)
    assert [entry["key"] for entry in report["head"]] == keys.tolist()
    assert [entry["row"] for entry in report["head"]] == rows.tolist()


def test_inspect_errors(run, model):
    status, _, err = run("inspect", model["dir"] / "nothing")
    assert status == 1 and "table folder does not exist" in one_error_line(err, "inspect")
    status, _, err = run("inspect", model["dir"] / "tables" / "a", "--dim", "3")
    assert status == 1 and "emb_vector" in one_error_line(err, "inspect")


# ---- lookup -------------------------------------------------------------------------------------


def test_lookup_text(run, model):
    status, out, err = run("lookup", model["config"], "--model", "m", "--table", "ta", "--keys", "0", "10", "5")
    assert status == 0
    lines = out.strip().splitlines()
    assert lines[0] == "0: [" + ", ".join(f"{v:.6g}" for v in model["a"][0].tolist()) + "]"
    assert lines[1].startswith("10: [")
    assert lines[2] == "5: [" + ", ".join(["0.5"] * DIM_A) + "]"  # no such key: the default row
    assert re.search(r"m/ta: 3 keys: .*, 1 default rows", err)


def test_lookup_json_matches_numpy(run, model):
    keys = [model["keys"][i] for i in (3, 150, 7)] + [123456]
    status, out, _ = run("lookup", model["config"], "--model", "m", "--table", "1", "--keys", *keys, "--json")
    assert status == 0
    result = json.loads(out)
    assert (result["table"], result["dim"], result["keys"]) == ("tb", DIM_B, keys)
    want = np.concatenate([model["b"][[3, 150, 7]], np.full((1, DIM_B), -1.0, np.float32)])
    np.testing.assert_array_equal(np.array(result["rows"], dtype=np.float32), want)
    assert sum(result["hits"].values()) == 3 and result["defaults"] == 1


def test_lookup_keys_file(run, model, tmp_path):
    np.save(tmp_path / "keys.npy", model["keys"][::-1].astype(np.int32))
    status, out, _ = run("lookup", model["config"], "--model", "m", "--table", "ta", "--keys-file",
                         tmp_path / "keys.npy", "--json")
    assert status == 0
    result = json.loads(out)
    np.testing.assert_array_equal(np.array(result["rows"], dtype=np.float32), model["a"][::-1])
    assert result["defaults"] == 0 and result["hits"]["persistent_db"] > 0  # the hash map holds only part


def test_lookup_errors(run, model, tmp_path):
    status, _, err = run("lookup", model["config"], "--model", "m", "--table", "zz", "--keys", "1")
    assert status == 1 and "model 'm' has no table 'zz' (its tables: ta, tb)" in one_error_line(err, "lookup")
    status, _, err = run("lookup", model["config"], "--model", "q", "--table", "0", "--keys", "1")
    assert status == 1 and "no model 'q'" in one_error_line(err, "lookup")
    status, _, err = run("lookup", model["config"], "--model", "m", "--table", "0", "--keys", "1", str(2**64))
    assert status == 1 and f"key {2**64} does not fit" in one_error_line(err, "lookup")
    np.save(tmp_path / "float.npy", np.zeros(3))
    status, _, err = run("lookup", model["config"], "--model", "m", "--table", "0", "--keys-file",
                         tmp_path / "float.npy")
    assert status == 1 and "keys must be integers" in one_error_line(err, "lookup")


# ---- stats --------------------------------------------------------------------------------------


def test_stats_json_after_lookups(run, model, tmp_path):
    keys = np.concatenate([model["keys"], [1, 2, 3]])  # 3 keys no table holds
    np.save(tmp_path / "keys.npy", keys)
    status, out, _ = run("stats", model["config"], "--keys-file", tmp_path / "keys.npy", "--model", "m",
                         "--table", "ta", "--batch", "64", "--format", "json")
    assert status == 0
    stats = {s["table"]: s for s in json.loads(out)}
    assert stats["ta"]["keys"] == keys.size and stats["ta"]["lookups"] == 4
    assert stats["ta"]["defaults"] == 3
    assert sum(stats["ta"]["hits"].values()) == ROWS
    assert stats["tb"]["keys"] == 0
    assert stats["ta"]["tier_rows"]["persistent_db"] == ROWS


def test_stats_text_and_prometheus(run, model, tmp_path):
    np.save(tmp_path / "keys.npy", model["keys"][:50])
    status, out, _ = run("stats", model["config"], "--keys-file", tmp_path / "keys.npy", "--model", "m",
                         "--table", "0")
    assert status == 0
    header, _, first, second = out.splitlines()[:4]
    assert header.split()[:5] == ["table", "volatile", "rows", "volatile", "bytes"]
    fields = first.split()
    assert fields[0] == "m/ta" and "50" in fields
    hit_rates = [float(f) for f in fields if re.fullmatch(r"[01]\.\d{3}", f)]
    assert len(hit_rates) == 2 and sum(hit_rates) == pytest.approx(1.0, abs=0.002)
    assert second.split()[0] == "m/tb" and second.split().count("-") == 2  # no keys: no hit rates
    status, out, _ = run("stats", model["config"], "--format", "prometheus")
    assert status == 0
    assert 'hps_tier_rows{model="m",table="ta",tier="persistent_db"} 200' in out


def test_stats_options_go_together(run, model):
    status, _, err = run("stats", model["config"], "--model", "m")
    assert status == 1 and "go together" in one_error_line(err, "stats")


# ---- bench --------------------------------------------------------------------------------------


@pytest.mark.parametrize("zipf", ["0", "1.1"])
def test_bench_json(run, model, zipf):
    status, out, _ = run("bench", model["config"], "--model", "m", "--batch", "100", "--iters", "4", "--zipf", zipf,
                         "--json")
    assert status == 0
    result = json.loads(out)
    assert [t["table"] for t in result["tables"]] == ["ta", "tb"]
    for table in result["tables"]:
        assert table["keys_per_second"] > 0 and table["p50_ms"] <= table["p99_ms"]
        rates = list(table["hit_rates"].values()) + [table["default_rate"]]
        assert all(0.0 <= r <= 1.0 for r in rates)
        assert sum(rates) == pytest.approx(1.0)
        assert table["default_rate"] == 0.0  # batches come from the table's own keys


def test_bench_text_one_table(run, model):
    status, out, _ = run("bench", model["config"], "--model", "m", "--table", "tb", "--batch", "50", "--iters", "3")
    assert status == 0
    assert "3 distinct batches of 50 keys" in out
    assert re.search(r"^tb\s+200\s+4\s", out, re.M)
    assert "\nall " not in out


def test_bench_errors(run, model):
    status, _, err = run("bench", model["config"], "--model", "nope")
    assert status == 1 and "no model 'nope'" in one_error_line(err, "bench")
    status, _, err = run("bench", model["config"], "--model", "m", "--iters", "0")
    assert status == 2 and usage_error_line(err, "bench").endswith("argument --iters: must be 1 or more, got 0")
    status, _, err = run("bench", model["config"], "--model", "m", "--zipf", "-1")
    assert status == 1 and "--zipf must be 0 or more, got -1.0" in one_error_line(err, "bench")


# ---- demo ---------------------------------------------------------------------------------------


def demo_table(out):
    lines = [line.split() for line in out.splitlines() if re.match(r"cat_\d\d ", line)]
    return [{"table": f[0], "rows": int(f[1].replace(",", "")), "keys": int(f[3].replace(",", "")),
             "volatile": float(f[4]), "persistent": float(f[5]), "defaults": int(f[6].replace(",", ""))}
            for f in lines]


def test_demo_small(run, tmp_path):
    folder = tmp_path / "demo"
    status, out, _ = run("demo", "--dir", folder, "--rows-total", "3000", "--batches", "6", "--dim", "4")
    assert status == 0
    table = demo_table(out)
    assert len(table) == 26
    assert len({row["table"] for row in table}) == 26
    for row in table:
        assert row["keys"] == 6 * 1024
        assert 0.0 <= row["volatile"] <= 1.0 and 0.0 <= row["persistent"] <= 1.0
        assert row["volatile"] + row["persistent"] <= 1.0005
        assert 0 < row["defaults"] < row["keys"] * 0.05  # about 1% unseen keys
    sizes = sorted(row["rows"] for row in table)
    assert sizes[-1] > 20 * sizes[len(sizes) // 2]  # a few large tables, many small ones
    assert any(row["persistent"] > 0 for row in table)  # the hash map holds only part of the large tables
    assert re.search(r"[\d.]+ M keys/s, [\d.]+ batches/s, batch latency p50 [\d.]+ ms, p99 [\d.]+ ms", out)
    assert not folder.exists()  # the demo created it, so it removes it


def test_demo_is_deterministic_and_keep(run, tmp_path):
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "mine.txt").write_text("not the demo's")
    argv = ["demo", "--dir", folder, "--rows-total", "2000", "--batches", "3", "--seed", "7"]
    status, first, _ = run(*argv)
    assert status == 0
    assert sorted(os.listdir(folder)) == ["mine.txt"]  # only what the demo wrote is gone
    status, second, _ = run(*argv, "--keep")
    assert status == 0
    # The same seed gives the same tables and keys. Which tier answers a key can differ between runs:
    # large lookups run in chunks on several threads, so promotions and evictions interleave
    # differently; the share answered by some tier cannot.
    a, b = demo_table(first), demo_table(second)
    assert [(r["table"], r["rows"], r["keys"], r["defaults"]) for r in a] == \
        [(r["table"], r["rows"], r["keys"], r["defaults"]) for r in b]
    for r, s in zip(a, b):
        assert abs((r["volatile"] + r["persistent"]) - (s["volatile"] + s["persistent"])) <= 0.002, (r, s)
    assert {"demo.json", "tables", "rocksdb", "mine.txt"} <= set(os.listdir(folder))
    status, out, err = run("validate", folder / "demo.json")
    assert status == 0
    assert err == ""  # the demo's config uses no key that does nothing here
    assert out.strip().splitlines()[-1].startswith("OK: 1 models, 26 tables, ")


def test_demo_bad_arguments(run):
    # Usage errors, as argparse reports them: exit 2, the option named, the usage above.
    for argv, message in ((["--rows-total", "10"], "argument --rows-total: must be 416 or more, got 10"),
                          (["--dim", "0"], "argument --dim: must be 1 or more, got 0"),
                          (["--batches", "x"], "argument --batches: expected an integer, got 'x'")):
        status, _, err = run("demo", *argv)
        assert status == 2 and err.strip().splitlines()[-1] == f"hps demo: error: {message}", err


# ---- module structure: no cli <-> demo import cycle -------------------------------------------------


def test_demo_does_not_import_the_cli():
    import ast
    import pathlib

    code = "import sys, hps.demo; assert 'hps.cli' not in sys.modules, 'hps.demo imported hps.cli'; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
    folder = pathlib.Path(hps.__file__).parent
    for name in ("demo.py", "_command.py"):  # not even inside a function
        for node in ast.walk(ast.parse((folder / name).read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.module not in ("cli", "hps.cli"), f"{name} imports {node.module}"
                assert not (node.module is None and any(a.name == "cli" for a in node.names)), name
            if isinstance(node, ast.Import):
                assert "hps.cli" not in [a.name for a in node.names], name


def test_python_m_hps_demo_runs_the_same_command():
    done = subprocess.run([sys.executable, "-m", "hps.demo", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--rows-total" in done.stdout and done.stdout.startswith("usage: hps demo")
    done = subprocess.run([sys.executable, "-m", "hps.demo", "--rows-total", "10"], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.strip().endswith("hps demo: error: argument --rows-total: must be 416 or "
                                                                   "more, got 10"), done.stderr
