"""A few seconds of lookups and updates on many threads, every returned row checked."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import hps
from conftest import config_for, make_table


@pytest.mark.parametrize("persistent", [False, pytest.param(True, marks=pytest.mark.skipif(
    not hps.rocksdb_available(), reason="this build has no RocksDB tier"))])
def test_concurrent_lookups_and_updates(tmp_path, persistent):
    dim = 16
    t = make_table(tmp_path / "t", 5000, dim)
    config = config_for([t], persistent=str(tmp_path / "db") if persistent else None)
    if persistent:
        config["volatile_db"].update(overflow_margin=500, cache_missed_embeddings=True)
    # Every row written by the updater has all elements equal to its version number (< 0), so a
    # row is correct when it equals the original row or is constant and negative: a mix of two
    # versions, or of a version and the original, shows.
    errors: list[str] = []
    stop = threading.Event()
    counts = {"lookups": 0, "updates": 0}

    with hps.HPS(config) as ps:
        def updater():
            rng = np.random.default_rng(99)
            version = 0
            while not stop.is_set():
                version -= 1
                keys = t.keys[rng.integers(0, t.keys.size, 256)]
                ps.update("m", 0, keys, np.full((256, dim), version, np.float32))
                counts["updates"] += 1

        def reader(seed):
            rng = np.random.default_rng(seed)
            index = {int(k): i for i, k in enumerate(t.keys)}
            while not stop.is_set():
                pos = rng.integers(0, t.keys.size, 2048)
                rows = ps.lookup("m", 0, t.keys[pos])
                original = (rows == t.rows[pos]).all(axis=1)
                constant = (rows == rows[:, :1]).all(axis=1) & (rows[:, 0] < 0)
                bad = ~(original | constant)
                if bad.any():
                    i = int(np.flatnonzero(bad)[0])
                    errors.append(f"key {int(t.keys[pos[i]])}: {rows[i]}")
                    return
                assert index  # keep the oracle alive in the thread
                counts["lookups"] += 1

        threads = [threading.Thread(target=updater)] + [threading.Thread(target=reader, args=(s,)) for s in range(3)]
        for th in threads:
            th.start()
        time.sleep(3.0)
        stop.set()
        for th in threads:
            th.join()
    assert not errors, errors[:3]
    assert counts["lookups"] > 20 and counts["updates"] > 20, counts


@pytest.mark.parametrize("spin", ["0", "200", "100000"])
def test_lookup_threads_answer_alike_whatever_they_poll(tmp_path, monkeypatch, spin):
    """Large batches split over polling or sleeping lookup threads give exactly the stored rows."""
    t = make_table(tmp_path / "t", 20000, 8)
    monkeypatch.setenv("HPS_LOOKUP_SPIN_US", spin)
    with hps.HPS(config_for([t]), lookup_threads=4) as ps:
        rng = np.random.default_rng(3)
        for size in (1, 300, 5000, 40000):
            keys = t.keys[rng.integers(0, t.keys.size, size)]
            np.testing.assert_array_equal(ps.lookup("m", 0, keys), t.expected(keys))


@pytest.mark.parametrize("value", ["-5", "soon", "1e3"])
def test_a_bad_spin_setting_is_refused_by_name(tmp_path, monkeypatch, value):
    t = make_table(tmp_path / "t", 100, 8)
    monkeypatch.setenv("HPS_LOOKUP_SPIN_US", value)
    with pytest.raises(hps.InvalidArgumentError, match=f"HPS_LOOKUP_SPIN_US: expected microseconds >= 0, found '{value}'"):
        hps.HPS(config_for([t]), lookup_threads=2)
    hps.HPS(config_for([t]), lookup_threads=1).close()  # one thread: no pool, the setting is not read
