"""The embedded default: CPU-memory tier in front of RocksDB."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

import hps
from conftest import config_for, make_table, mixed_queries

pytestmark = pytest.mark.skipif(not hps.rocksdb_available(), reason="this build has no RocksDB tier")


def folder_state(path):
    """(name, size, mtime) of every file under `path`."""
    state = []
    for root, _, files in os.walk(path):
        for name in files:
            st = os.stat(os.path.join(root, name))
            state.append((os.path.relpath(os.path.join(root, name), path), st.st_size, st.st_mtime_ns))
    return sorted(state)


def test_misses_fall_through_and_only_found_rows_are_promoted(tmp_path):
    t = make_table(tmp_path / "t", 4000, 8, default=1.25)
    config = config_for([t], persistent=str(tmp_path / "db"))
    config["volatile_db"].update(overflow_margin=100, cache_missed_embeddings=True)
    with hps.HPS(config) as ps:
        q = mixed_queries(t, (3000,), seed=2)
        np.testing.assert_array_equal(ps.lookup("m", 0, q), t.expected(q))
        (s,) = ps.stats()
        present = np.isin(q, t.keys)
        assert s["hits"]["persistent_db"] > 0
        assert s["defaults"] == int((~present).sum())  # absent keys: default, from no tier
        assert s["hits"]["volatile_db"] + s["hits"]["persistent_db"] == int(present.sum())
        # Each promotion copies a row that exists; with chunks on several threads a key evicted in
        # between may be promoted twice, so the bound is per position, not per distinct key.
        assert 0 < s["promoted_keys"] <= int(present.sum())
        assert s["tier_rows"]["volatile_db"] <= 3 * 100
        np.testing.assert_array_equal(ps.lookup("m", 0, q), t.expected(q))  # again, partly promoted


def test_distinct_and_repeated_keys_below_a_first_tier_that_sees_distinct_keys(tmp_path):
    # RocksDB alone: the server sends it distinct keys. A batch of distinct keys is answered in place
    # (the tier writes the output rows), a batch with repeats through a scatter of the distinct
    # rows: both must give every position its row or the default, and count each position once.
    t = make_table(tmp_path / "t", 3000, 8, default=-2.5)
    config = config_for([t], persistent=str(tmp_path / "db"))
    config["volatile_db"] = {"type": "disabled"}
    rng = np.random.default_rng(5)
    distinct = np.concatenate([rng.permutation(t.keys)[:1500], 10**13 + rng.permutation(500)])
    rng.shuffle(distinct)
    repeated = distinct[rng.integers(0, distinct.size, 4000)]
    with hps.HPS(config, lookup_threads=1) as ps:
        for q in (distinct, repeated):
            (before,) = ps.stats()
            np.testing.assert_array_equal(ps.lookup("m", 0, q), t.expected(q))
            (after,) = ps.stats()
            present = int(np.isin(q, t.keys).sum())
            assert after["hits"]["persistent_db"] - before["hits"]["persistent_db"] == present
            assert after["defaults"] - before["defaults"] == q.size - present


def test_block_cache_usage_is_in_stats_and_prometheus(tmp_path):
    t = make_table(tmp_path / "t", 40000, 16)  # 40,000 rows of 72 bytes: 2.7 MiB of SST blocks
    config = config_for([t], persistent=str(tmp_path / "db"))
    config["volatile_db"] = {"type": "disabled"}  # every lookup reads RocksDB
    config["persistent_db"]["block_cache_size"] = "1MiB"
    with hps.HPS(config) as ps:
        def cache():
            (s,) = ps.stats()
            return s["tier_counters"]["persistent_db"]
        before = cache()
        assert before["block_cache_capacity_bytes"] == 1 << 20
        assert before["block_cache_usage_bytes"] < 1 << 20
        np.testing.assert_array_equal(ps.lookup("m", 0, t.keys[:10]), t.expected(t.keys[:10]))
        assert cache()["block_cache_usage_bytes"] > before["block_cache_usage_bytes"]
        np.testing.assert_array_equal(ps.lookup("m", 0, t.keys), t.expected(t.keys))
        after = cache()
        assert (1 << 19) < after["block_cache_usage_bytes"] <= 1 << 20  # filled up to the cap, not past it
        assert after["block_cache_pinned_bytes"] < 4096  # no data block held (RocksDB pins a small entry of its own)
        text = ps.prometheus()
        assert "# TYPE hps_tier_block_cache_usage_bytes gauge" in text
        labels = 'model="m",table="sparse_embedding0",tier="persistent_db"'
        assert f"hps_tier_block_cache_capacity_bytes{{{labels}}} 1048576" in text
        assert re.search(rf"hps_tier_block_cache_usage_bytes\{{{labels}\}} [1-9][0-9]*\n", text)


def test_block_cache_size_defaults_to_256_mib(tmp_path):
    t = make_table(tmp_path / "t", 100, 4)
    with hps.HPS(config_for([t], persistent=str(tmp_path / "db"))) as ps:
        (s,) = ps.stats()
        assert s["tier_counters"]["persistent_db"]["block_cache_capacity_bytes"] == 256 << 20
        assert hps.Config(config_for([t], persistent="db")).to_dict()["persistent_db"]["block_cache_size"] == 256 << 20


def test_updates_survive_a_restart(tmp_path):
    t = make_table(tmp_path / "t", 500, 4)
    config = config_for([t], persistent=str(tmp_path / "db"))
    new_rows = np.full((3, 4), 7.0, np.float32)
    with hps.HPS(config) as ps:
        ps.update("m", 0, t.keys[:3], new_rows)
    with hps.HPS(config) as ps:
        np.testing.assert_array_equal(ps.lookup("m", 0, t.keys[:3]), new_rows)
        np.testing.assert_array_equal(ps.lookup("m", 0, t.keys[3:10]), t.rows[3:10])


KILLED_WRITER = r"""
import json, os, signal, sys
import numpy as np
import hps
config, keys = json.loads(sys.argv[1]), np.array(json.loads(sys.argv[2]), dtype=np.int64)
ps = hps.HPS(config)
ps.update("m", 0, keys, np.full((keys.size, 4), 42.0, np.float32))
print("updated", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_returned_update_survives_the_process_being_killed(tmp_path):
    t = make_table(tmp_path / "t", 500, 4)
    config = config_for([t], persistent=str(tmp_path / "db"))
    keys = t.keys[:20]
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, json.dumps(config), json.dumps(keys.tolist())],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "updated" in proc.stdout
    with hps.HPS(config) as ps:
        np.testing.assert_array_equal(ps.lookup("m", 0, keys), np.full((20, 4), 42.0, np.float32))


def test_read_only_opens_an_existing_database_and_writes_nothing(tmp_path):
    t = make_table(tmp_path / "t", 500, 4)
    config = config_for([t], persistent=str(tmp_path / "db"))
    with hps.HPS(config):
        pass
    before = folder_state(tmp_path / "db")
    config["persistent_db"]["read_only"] = True
    with hps.HPS(config) as ps:
        q = mixed_queries(t, (300,))
        np.testing.assert_array_equal(ps.lookup("m", 0, q), t.expected(q))
        with pytest.raises(hps.InvalidArgumentError, match="read-only"):
            ps.update("m", 0, t.keys[:1], np.zeros((1, 4), np.float32))
        with pytest.raises(hps.InvalidArgumentError, match="read-only"):
            ps.erase("m", 0, t.keys[:1])
    assert folder_state(tmp_path / "db") == before


def test_read_only_without_the_table_is_a_clear_error(tmp_path):
    t = make_table(tmp_path / "t", 50, 4)
    config = config_for([t], persistent=str(tmp_path / "db"))
    config["persistent_db"]["read_only"] = True
    with pytest.raises(hps.HpsError, match=str(tmp_path / "db")):
        hps.HPS(config)


def test_new_table_files_replace_the_stored_table(tmp_path):
    t = make_table(tmp_path / "t", 300, 4, seed=1)
    config = config_for([t], persistent=str(tmp_path / "db"))
    with hps.HPS(config) as ps:
        ps.update("m", 0, t.keys[:1], np.zeros((1, 4), np.float32))
    t2 = make_table(tmp_path / "t", 300, 4, seed=2)  # a new model version in the same folder
    with hps.HPS(config) as ps:
        q = np.concatenate([t.keys[:50], t2.keys[:50]])
        np.testing.assert_array_equal(ps.lookup("m", 0, q), t2.expected(q))


def test_files_a_32_bit_model_cannot_take_leave_the_stored_table_as_it_was(tmp_path):
    # New files with one key beyond 32 bits: the load is refused before RocksDB is emptied for it,
    # so the rows stored before (an update included) are still served by a server that does not
    # reload (read_only), and `hps validate` names the key first.
    keys = np.arange(100, dtype=np.int64)
    rows = np.random.default_rng(0).standard_normal((100, 4)).astype(np.float32)
    hps.write_sparse_model(tmp_path / "t", keys, rows)
    config = {"supportlonglong": False, "volatile_db": {"type": "disabled"},
              "persistent_db": {"type": "rocks_db", "path": str(tmp_path / "db")},
              "models": [{"model": "m", "sparse_files": [str(tmp_path / "t")], "embedding_vecsize_per_table": [4]}]}
    with hps.HPS(config) as ps:
        ps.update("m", 0, [5], np.full((1, 4), 7.0, np.float32))
    bad = keys.copy()
    bad[-1] = 1 << 40
    hps.write_sparse_model(tmp_path / "t", bad, rows, overwrite=True)
    message = rf"{re.escape(str(tmp_path / 't'))}/key\[99\] = 1099511627776 is not a 32-bit key"
    with pytest.raises(hps.InvalidArgumentError, match=message):
        hps.HPS(config)
    (tmp_path / "ps.json").write_text(json.dumps(config))
    validate = subprocess.run([sys.executable, "-m", "hps", "validate", str(tmp_path / "ps.json")],
                              capture_output=True, text=True)
    assert validate.returncode == 1
    assert re.search(r"models\[0\]\.sparse_files\[0\] \(m/sparse_embedding0\): .*" + message, validate.stderr)
    config["persistent_db"]["read_only"] = True
    with hps.HPS(config) as ps:
        expected = rows.copy()
        expected[5] = 7.0
        np.testing.assert_array_equal(ps.lookup("m", 0, keys), expected)


@pytest.mark.parametrize("volatile", [{"initial_cache_rate": 0.5}, {"num_partitions": 1, "overflow_margin": 3}],
                         ids=["half-filled", "capacity-3"])
def test_a_key_repeated_in_the_files_serves_its_last_row_from_a_partly_filled_hash_map(tmp_path, volatile):
    # The hash map above RocksDB takes part of the table; a key whose later copy lies outside that
    # part used to keep its first row there while RocksDB held the last.
    keys = np.array([1, 2, 3, 4, 1, 2], dtype=np.int64)
    rows = np.repeat(np.arange(6, dtype=np.float32), 2).reshape(6, 2)
    hps.write_sparse_model(tmp_path / "t", keys, rows)
    config = {"volatile_db": {"type": "hash_map", **volatile},
              "persistent_db": {"type": "rocks_db", "path": str(tmp_path / "db")},
              "models": [{"model": "m", "sparse_files": [str(tmp_path / "t")], "embedding_vecsize_per_table": [2]}]}
    last = {int(k): rows[i] for i, k in enumerate(keys)}  # later rows overwrite earlier ones
    with hps.HPS(config) as ps:
        assert ps.stats()[0]["tier_rows"]["volatile_db"] == 3
        q = np.array([1, 2, 3, 4])
        np.testing.assert_array_equal(ps.lookup("m", 0, q), np.stack([last[k] for k in q.tolist()]))


FULL_DISK_CHILD = r"""
import os, sys, numpy as np, hps
config, folder, expected_file = eval(sys.argv[1]), sys.argv[2], sys.argv[3]
keys, rows = hps.read_sparse_model(config["models"][0]["sparse_files"][0])
expected = rows.copy()  # what the updates that returned wrote
ps = hps.HPS(config, progress=False)
st = os.statvfs(folder)
with open(os.path.join(folder, "filler"), "wb") as f:  # leave RocksDB about 200 KB
    f.write(b"\0" * (st.f_bavail * st.f_frsize - 200_000))
rng = np.random.default_rng(5)
failures = []
for i in range(400):  # updates until the disk is full, then more: a serving process keeps getting them
    idx = rng.choice(len(keys), 1000, replace=False)
    new = rng.random((1000, 4), dtype=np.float32)
    try:
        ps.update("m", 0, keys[idx], new)
        expected[idx] = new
    except hps.StorageError as e:
        failures.append(str(e))
        if len(failures) == 5:
            break
ps.close()
np.save(expected_file, expected)
print(len(failures), failures[-1] if failures else "", flush=True)
"""


def test_a_full_disk_fails_updates_with_an_error_saying_what_to_do_and_never_aborts(tmp_path):
    # RocksDB's own info LOG writer, in the same full folder, asserted (Debian's librocksdb has
    # assertions on) on its next write after a failed one: the process died in a later update or in
    # close(). And RocksDB takes no writes after such an error until it recovers: the error says so.
    small = tmp_path / "small"
    small.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(small)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs to mount a small tmpfs (root)")
    try:
        t = make_table(tmp_path / "t", 20_000, 4)
        config = config_for([t], persistent=str(small / "db"))
        for attempt in range(3):  # the abort came in about one run of three
            (small / "filler").unlink(missing_ok=True)
            shutil.rmtree(small / "db", ignore_errors=True)
            child = subprocess.run([sys.executable, "-c", FULL_DISK_CHILD, repr(config), str(small),
                                    str(tmp_path / "expected.npy")], capture_output=True, text=True, timeout=120)
            assert child.returncode == 0, (attempt, child.returncode, child.stderr[-2000:])
            count, _, last = child.stdout.partition(" ")
            assert int(count) == 5, child.stdout
            assert "No space left on device" in last and "restart the server once the cause is gone" in last, last
            # Space back, a new server: every update that returned is there, nothing else changed.
            (small / "filler").unlink()
            with hps.HPS(config) as ps:
                np.testing.assert_array_equal(ps.lookup("m", 0, t.keys), np.load(tmp_path / "expected.npy"))
                ps.update("m", 0, t.keys[:1], np.ones((1, 4), np.float32))  # it takes writes again
    finally:
        subprocess.run(["umount", str(small)], check=True)
