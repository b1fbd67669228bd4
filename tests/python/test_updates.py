"""update() and erase() write through every tier; lookups see them at once."""

from __future__ import annotations

import numpy as np
import pytest

import hps
from conftest import config_for, make_table, mixed_queries


needs_rocksdb = pytest.mark.skipif(not hps.rocksdb_available(), reason="this build has no RocksDB tier")


@pytest.fixture(params=["volatile", pytest.param("volatile+rocksdb", marks=needs_rocksdb),
                        pytest.param("rocksdb", marks=needs_rocksdb)])
def tiers(request, tmp_path, table):
    config = config_for([table], persistent=str(tmp_path / "db") if "rocksdb" in request.param else None)
    if request.param == "rocksdb":
        config["volatile_db"] = {"type": "disabled"}
    if request.param == "volatile+rocksdb":
        config["volatile_db"].update(overflow_margin=200, cache_missed_embeddings=True)
    with hps.HPS(config) as ps:
        yield ps


def test_update_then_lookup(tiers, table):
    rng = np.random.default_rng(7)
    keys = np.concatenate([table.keys[:50], rng.integers(10**13, 10**14, 20)])  # existing and new keys
    rows = rng.standard_normal((keys.size, table.dim), dtype=np.float32)
    tiers.update("m", 0, keys, rows)
    table.update(keys, rows)
    q = np.concatenate([keys, mixed_queries(table, (500,))])
    np.testing.assert_array_equal(tiers.lookup("m", 0, q), table.expected(q))


def test_duplicate_keys_in_an_update_last_row_wins(tiers, table):
    keys = np.array([table.keys[0], table.keys[0], table.keys[1]])
    rows = np.array([[1.0] * table.dim, [2.0] * table.dim, [3.0] * table.dim], np.float32)
    tiers.update("m", 0, keys, rows)
    np.testing.assert_array_equal(tiers.lookup("m", 0, keys[:1]), rows[1:2])


def test_erase_returns_what_some_tier_held(tiers, table):
    gone = np.array([table.keys[3], table.keys[3], table.keys[4], 10**15])
    assert tiers.erase("m", 0, gone) == 2
    table.erase(gone)
    q = np.concatenate([gone, table.keys[:20]])
    np.testing.assert_array_equal(tiers.lookup("m", 0, q), table.expected(q))
    assert tiers.erase("m", 0, gone) == 0


def test_rows_must_match_the_keys(server, table):
    with pytest.raises(hps.InvalidArgumentError, match=r"shape \[\.\.\., 8\]"):
        server.update("m", 0, table.keys[:3], np.zeros((3, 7), np.float32))
    with pytest.raises(hps.InvalidArgumentError, match="3 rows"):
        server.update("m", 0, table.keys[:3], np.zeros((2, 8), np.float32))
    # A failed call changed nothing.
    np.testing.assert_array_equal(server.lookup("m", 0, table.keys[:3]), table.rows[:3])


def test_update_accepts_any_leading_shape(server, table):
    keys = table.keys[:6].reshape(2, 3)
    rows = np.ones((2, 3, table.dim), np.float64) * 4
    server.update("m", 0, keys, rows)
    np.testing.assert_array_equal(server.lookup("m", 0, keys), np.full((2, 3, table.dim), 4, np.float32))


def test_empty_update_and_erase(server):
    server.update("m", 0, np.array([], np.int64), np.zeros((0, 8), np.float32))
    assert server.erase("m", 0, np.array([], np.int64)) == 0


def test_several_models_are_independent(tmp_path):
    a = make_table(tmp_path / "a", 100, 4, seed=1)
    b = make_table(tmp_path / "b", 100, 4, seed=1)  # same keys, same rows
    config = config_for([a], model="one")
    config["models"].append(config_for([b], model="two")["models"][0])
    with hps.HPS(config) as ps:
        ps.update("one", 0, a.keys[:5], np.zeros((5, 4), np.float32))
        np.testing.assert_array_equal(ps.lookup("two", 0, b.keys[:5]), b.rows[:5])
        np.testing.assert_array_equal(ps.lookup("one", 0, a.keys[:5]), np.zeros((5, 4), np.float32))
