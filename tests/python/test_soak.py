"""The soak (benchmarks/soak.py, issue 15 item 4) for one minute: mixed lookups, updates, erases and refreshes
from several threads on the hash map + RocksDB (and Redis Cluster + RocksDB where redis-server is installed),
every row checked; no error, no wrong row, bounded growth of RSS and open files. The long run is recorded in
benchmarks/RESULTS.md. Also: the soak's row checker itself catches the wrong rows it is there to catch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import hps

HERE = os.path.dirname(os.path.abspath(__file__))
SOAK = os.path.join(HERE, "..", "..", "benchmarks", "soak.py")
sys.path.insert(0, os.path.dirname(SOAK))
import soak  # noqa: E402

from redis_cluster import redis_installed  # noqa: E402


class _Fake:
    """Just what check_rows reads of a soak.Server."""
    name, dim = "fake", 8

    def __init__(self):
        self.stats = soak.Stats()


def test_the_row_checker_catches_wrong_rows():
    server = _Fake()
    index = np.arange(10, 16, dtype=np.int64)
    version = np.array([3, 3, 3, 3, 3, 3])
    rows = soak.rows_of(index, version, server.dim)
    low, high, never_erased = np.full(6, 3), np.full(6, 5), np.full(6, -1)
    assert soak.check_rows(server, index, rows, low, high, never_erased, "right rows") == 0
    bad = rows.copy()
    bad[0, 5] += 1.0  # torn: one value of another write
    bad[1] = soak.rows_of(index[2:3], version[:1], server.dim)[0]  # another key's row
    bad[2] = soak.rows_of(index[2:3], np.array([2]), server.dim)[0]  # older than committed before the lookup
    bad[3] = soak.rows_of(index[3:4], np.array([6]), server.dim)[0]  # newer than any write started
    bad[4] = soak.DEFAULT  # the default row, but never erased
    bad[5, 0] = np.nan
    assert soak.check_rows(server, index, bad, low, high, never_erased, "wrong rows") == 6
    assert "6 wrong of 6" in server.stats.first_problems[0]
    # The default row is right once an erase at or after the committed state had started.
    erased = np.array([-1, -1, -1, -1, 4, -1])
    assert soak.check_rows(server, index, bad, low, high, erased, "one erased") == 5


@pytest.mark.skipif(not hps.rocksdb_available(), reason="this build has no RocksDB")
def test_one_minute_soak_has_no_error_no_wrong_row_and_bounded_growth(tmp_path):
    out = tmp_path / "soak.json"
    args = [sys.executable, SOAK, "--minutes", os.environ.get("HPS_SOAK_MINUTES", "1"), "--json", str(out),
            "--block-cache-mib", "8"]
    redis = hps.redis_available() and redis_installed()
    if redis:
        args.append("--redis")
    run = subprocess.run(args, capture_output=True, text=True, timeout=600)
    print(run.stdout, run.stderr)
    assert out.exists(), f"the soak ended without a result (exit {run.returncode}):\n{run.stdout}\n{run.stderr}"
    result = json.loads(out.read_text())
    assert set(result["servers"]) == {"hash_map+rocks_db"} | ({"redis_cluster+rocks_db"} if redis else set())
    for name, server in result["servers"].items():
        assert server["errors"] == 0, (name, server["problems"])
        assert server["wrong_rows"] == 0, (name, server["problems"])
        ops = server["ops"]
        assert min(ops["lookup_own"], ops["lookup_any"], ops["update"], ops["erase"], ops["refresh"]) > 0, (name, ops)
        assert server["rows_checked"] > 0
    # Generous bounds (not timing): RocksDB's memtable alone may grow by tens of MiB until it is flushed.
    assert result["rss_growth_second_half_mib"] < 192, result
    assert result["fds_growth_second_half"] <= 32, result
    # The block caches are sampled: filled by lookups that read RocksDB, within their cap (8 MiB per store).
    stores = len(result["servers"])
    assert 0 < result["block_cache_mib_max"] <= 8 * stores, result
    last = result["samples_t_rss_tiers_cache_fds"][-1]
    assert result["unaccounted_mib_last"] == pytest.approx(last[1] - last[2] - last[3], abs=0.2)
    assert run.returncode == 0, run.stdout
