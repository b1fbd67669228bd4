"""Error classes are also builtins; stats and Prometheus text count what happened."""

from __future__ import annotations

import re

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
