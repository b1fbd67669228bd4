"""Error classes are also builtins; stats and Prometheus text count what happened."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

import hps


@pytest.mark.parametrize("cls, builtin", [
    (hps.ConfigError, ValueError), (hps.InvalidArgumentError, ValueError), (hps.NotFoundError, KeyError),
    (hps.StorageError, OSError), (hps.BackendUnavailableError, ConnectionError),
    (hps.OutOfMemoryError, MemoryError),
])
def test_errors_are_builtins_too(cls, builtin):
    assert issubclass(cls, hps.HpsError) and issubclass(cls, builtin)


def test_backend_missing_from_this_build_is_named(table):
    config = {"volatile_db": {"type": "redis_cluster"},
              "models": [{"model": "m", "sparse_files": [table.folder], "embedding_vecsize_per_table": [table.dim]}]}
    with pytest.raises(hps.BackendUnavailableError, match="redis_cluster"):
        hps.HPS(config)


def test_stats_count_keys_hits_and_defaults(server, table):
    server.lookup("m", 0, np.concatenate([table.keys[:30], [10**15] * 10]))
    server.lookup("m", 0, table.keys[:5])
    server.update("m", 0, table.keys[:2], np.zeros((2, table.dim), np.float32))
    server.erase("m", 0, table.keys[2:3])
    (s,) = server.stats()
    assert (s["model"], s["table"]) == ("m", "sparse_embedding0")
    assert s["lookups"] == 2 and s["keys"] == 45
    assert s["hits"]["volatile_db"] == 35 and s["defaults"] == 10
    assert s["updated_keys"] == 2 and s["erased_keys"] == 1
    assert s["tier_rows"]["volatile_db"] == 1999
    assert s["tier_bytes"]["volatile_db"] >= 1999 * (8 + 4 * table.dim)
    lat = s["latency_seconds"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["max"] * 1.2
    # Every tier role is reported by name, enabled or not; device calls are timed apart (none here).
    assert list(s["hits"]) == list(s["tier_rows"]) == ["gpu_cache", "volatile_db", "persistent_db"]
    assert s["device_call_latency_seconds"]["count"] == 0


def test_prometheus_text(server, table):
    server.lookup("m", 0, table.keys[:7])
    text = server.prometheus()
    assert 'hps_lookup_keys_total{model="m",table="sparse_embedding0"} 7' in text
    assert re.search(r'hps_tier_hits_total\{model="m",table="sparse_embedding0",tier="volatile_db"\} 7', text)
    assert 'hps_lookup_latency_seconds_count{model="m",table="sparse_embedding0"} 1' in text
    for line in text.splitlines():
        assert line.startswith("#") or re.fullmatch(r'[a-z_]+\{[^}]*\} [0-9.e+-]+', line), line


def test_a_hash_map_that_is_the_only_tier_refuses_what_it_cannot_hold_and_loses_no_row(tmp_path):
    # Without a persistent_db the hash map holds the only copy of every row. Keys do not spread
    # evenly over partitions, so a table of exactly overflow_margin x num_partitions rows overflows
    # one of them: the load used to evict 10% of the rows silently, and an update of one new key
    # into a full partition evicted 20% of it.
    config = {"volatile_db": {"type": "hash_map", "num_partitions": 4, "overflow_margin": 1000},
              "models": [{"model": "m", "sparse_files": [str(tmp_path / "t")], "embedding_vecsize_per_table": [4],
                          "default_value_for_each_table": [-7.0], "gpucache": False}]}
    keys = np.arange(1, 4001, dtype=np.int64)
    rows = np.random.default_rng(3).standard_normal((4000, 4)).astype(np.float32)
    hps.write_sparse_model(tmp_path / "t", keys, rows)
    message = (r"the table's 4000 rows put (\d+) distinct keys in partition \d of the hash map's 4 \(keys spread by hash, not "
               r"evenly\), more than its overflow_margin 1000, and there is no persistent_db for the rest: raise "
               r"overflow_margin to at least \1")
    with pytest.raises(hps.ConfigError, match=message):
        hps.HPS(config)  # refused before any row is stored
    (tmp_path / "ps.json").write_text(json.dumps(config))
    validate = subprocess.run([sys.executable, "-m", "hps", "validate", str(tmp_path / "ps.json")],
                              capture_output=True, text=True)
    assert validate.returncode == 1 and re.search(message, validate.stderr), validate.stderr
    hps.write_sparse_model(tmp_path / "t", keys[:3000], rows[:3000], overwrite=True)
    with hps.HPS(config) as ps:
        np.testing.assert_array_equal(ps.lookup("m", 0, keys[:3000]), rows[:3000])
        new_keys = np.arange(10_001, 12_001, dtype=np.int64)  # 2,000 more: some partition runs out of room
        with pytest.raises(hps.OutOfMemoryError, match="nothing of this write was stored"):
            ps.update("m", 0, new_keys, np.ones((2000, 4), np.float32))
        np.testing.assert_array_equal(ps.lookup("m", 0, keys[:3000]), rows[:3000])
        np.testing.assert_array_equal(ps.lookup("m", 0, new_keys), np.full((2000, 4), -7.0, np.float32))
        assert ps.stats()[0]["tier_rows"]["volatile_db"] == 3000

