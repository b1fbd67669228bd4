"""hps.HPS.lookup against a NumPy oracle: shapes, dtypes, defaults, tables, errors."""

from __future__ import annotations

import threading
import time
import tracemalloc

import numpy as np
import pytest

import hps
from conftest import config_for, make_table, mixed_queries


@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (3, 5), (2, 3, 4), (1000,), (26, 1024)])
def test_any_shape_gives_rows_of_shape_plus_dim(server, table, shape):
    keys = mixed_queries(table, shape)
    rows = server.lookup("m", 0, keys)
    assert rows.dtype == np.float32 and rows.shape == shape + (table.dim,)
    np.testing.assert_array_equal(rows, table.expected(keys))


def test_scalar_key(server, table):
    rows = server.lookup("m", 0, table.keys[5])
    assert rows.shape == (table.dim,)
    np.testing.assert_array_equal(rows, table.rows[5])


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64])
def test_every_integer_dtype(tmp_path, dtype):
    t = make_table(tmp_path / "t", 100, 4, key_low=0, key_high=120, default=2.0)
    with hps.HPS(config_for([t])) as ps:
        keys = np.arange(0, 127, dtype=dtype)
        np.testing.assert_array_equal(ps.lookup("m", 0, keys), t.expected(keys.astype(np.int64)))


@pytest.mark.parametrize("bad", [np.array([1.0, 2.0]), np.array([True, False]), np.array(["a"]),
                                 np.array([1 + 2j])])
def test_non_integer_keys_are_refused(server, bad):
    with pytest.raises(hps.InvalidArgumentError, match="integer"):
        server.lookup("m", 0, bad)
    with pytest.raises(TypeError):
        server.lookup("m", 0, bad)


def test_absent_keys_get_the_table_default(server, table):
    keys = np.array([10**15, -(10**15), np.iinfo(np.int64).max, np.iinfo(np.int64).min])
    np.testing.assert_array_equal(server.lookup("m", 0, keys), np.full((4, table.dim), -0.5, np.float32))
    stats = server.stats()[0]
    assert stats["defaults"] == 4 and stats["keys"] == 4


def test_extreme_keys_are_ordinary_keys(tmp_path):
    keys = np.array([np.iinfo(np.int64).max, np.iinfo(np.int64).min, -1, 0], dtype=np.int64)
    rows = np.arange(8, dtype=np.float32).reshape(4, 2)
    hps.write_sparse_model(tmp_path / "t", keys, rows)
    with hps.HPS({"models": [{"model": "m", "sparse_files": [str(tmp_path / "t")],
                              "embedding_vecsize_per_table": [2]}]}) as ps:
        np.testing.assert_array_equal(ps.lookup("m", 0, keys[::-1]), rows[::-1])


def test_tables_by_name_and_index(tmp_path):
    a = make_table(tmp_path / "a", 100, 3, seed=1)
    b = make_table(tmp_path / "b", 100, 5, seed=2)
    config = config_for([a, b], embedding_table_names=["user", "item"])
    with hps.HPS(config) as ps:
        q = mixed_queries(b, (50,))
        np.testing.assert_array_equal(ps.lookup("m", "item", q), b.expected(q))
        np.testing.assert_array_equal(ps.lookup("m", 1, q), b.expected(q))
        assert ps.dim("m", "user") == 3
        with pytest.raises(hps.NotFoundError, match="its tables: user, item"):
            ps.lookup("m", "nope", q)
        with pytest.raises(KeyError):
            ps.lookup("other", 0, q)
        with pytest.raises(hps.NotFoundError, match="out of range"):
            ps.lookup("m", 2, q)


def test_very_large_batch(server, table):
    keys = mixed_queries(table, (1_500_000,), seed=3)
    rows = server.lookup("m", 0, keys)
    sample = np.random.default_rng(0).integers(0, keys.size, 5000)
    np.testing.assert_array_equal(rows[sample], table.expected(keys[sample]))


def test_preallocated_output(server, table):
    keys = mixed_queries(table, (4, 6))
    out = np.empty((4, 6, table.dim), np.float32)
    assert server.lookup("m", 0, keys, out=out) is out
    np.testing.assert_array_equal(out, table.expected(keys))
    with pytest.raises(hps.InvalidArgumentError, match="out must be"):
        server.lookup("m", 0, keys, out=np.empty((4, 6, table.dim), np.float64))


def test_cpu_torch_tensor_as_out(server, table):
    """A CPU torch tensor is a host array NumPy views without a copy: the rows land in it."""
    torch = pytest.importorskip("torch")
    keys = mixed_queries(table, (4, 6))
    out = torch.full((4, 6, table.dim), float("nan"))
    assert server.lookup("m", 0, torch.from_numpy(keys), out=out) is out
    np.testing.assert_array_equal(out.numpy(), server.lookup("m", 0, keys))
    np.testing.assert_array_equal(out.numpy(), table.expected(keys))
    empty = torch.empty((0, table.dim))  # no memory to share: NumPy's view of it moves, yet it is no copy
    assert server.lookup("m", 0, np.zeros((0,), np.int64), out=empty) is empty


def test_cpu_torch_tensors_as_lookup_many_out(tmp_path):
    torch = pytest.importorskip("torch")
    tables = [make_table(tmp_path / f"t{i}", 300, 4 + i, seed=i, default=float(i)) for i in range(2)]
    with hps.HPS(config_for(tables)) as ps:
        queries = [mixed_queries(t, (5, 3), seed=i) for i, t in enumerate(tables)]
        outs = [torch.full((5, 3, t.dim), float("nan")) for t in tables]
        filled = ps.lookup_many("m", [0, 1], [torch.from_numpy(q) for q in queries], out=outs)
        assert all(f is o for f, o in zip(filled, outs))
        for t, q, o, r in zip(tables, queries, outs, ps.lookup_many("m", [0, 1], queries)):
            np.testing.assert_array_equal(o.numpy(), r)
            np.testing.assert_array_equal(o.numpy(), t.expected(q))


def test_non_contiguous_keys(server, table):
    keys = mixed_queries(table, (40, 30))[:, ::3].T
    np.testing.assert_array_equal(server.lookup("m", 0, keys), table.expected(keys))


def test_contiguous_keys_are_not_copied(server, table):
    keys = mixed_queries(table, (2_000_000,), seed=4).astype(np.int64)
    server.lookup("m", 0, keys[:10])
    tracemalloc.start()
    rows = server.lookup("m", 0, keys)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # The output is the only allocation; a copy of the keys would add keys.nbytes (16 MB).
    assert peak < rows.nbytes + keys.nbytes // 2, (peak, rows.nbytes, keys.nbytes)


def test_lookups_release_the_gil(server, table):
    keys = mixed_queries(table, (4_000_000,), seed=5)
    ticks = 0
    done = threading.Event()

    def work():
        server.lookup("m", 0, keys)
        done.set()

    thread = threading.Thread(target=work)
    start = time.perf_counter()
    thread.start()
    while not done.is_set():
        ticks += 1
    thread.join()
    elapsed = time.perf_counter() - start
    # With the GIL held by the lookup, this loop could not run while it works.
    assert ticks > 1000, (ticks, elapsed)


def test_thirty_two_bit_models(tmp_path):
    t = make_table(tmp_path / "t", 300, 4, key_low=0, key_high=2**32 - 1)
    config = config_for([t])
    config["supportlonglong"] = False
    with hps.HPS(config) as ps:
        assert not ps.key64
        q = mixed_queries(t, (100,)) % 2**32
        np.testing.assert_array_equal(ps.lookup("m", 0, q), t.expected(q))
        # The same 32-bit pattern given as int32 names the same key.
        np.testing.assert_array_equal(ps.lookup("m", 0, q.astype(np.uint32).view(np.int32)), t.expected(q))
        with pytest.raises(hps.InvalidArgumentError, match=r"keys\[1\] = 4294967296 is not a 32-bit key"):
            ps.lookup("m", 0, np.array([1, 2**32], dtype=np.int64))


def test_uint64_keys_beyond_int64_are_refused(server):
    with pytest.raises(hps.InvalidArgumentError, match="18446744073709551615"):
        server.lookup("m", 0, np.array([2**64 - 1], dtype=np.uint64))


def test_closed_server_refuses_calls(table):
    ps = hps.HPS(config_for([table]))
    ps.close()
    assert ps.closed
    with pytest.raises(RuntimeError, match="closed"):
        ps.lookup("m", 0, table.keys[:3])


def test_lookup_many_equals_one_lookup_per_table(tmp_path):
    tables = [make_table(tmp_path / f"t{i}", 500 + 100 * i, 3 + i, seed=i, default=float(i)) for i in range(5)]
    with hps.HPS(config_for(tables)) as ps:
        queries = [mixed_queries(t, (40 * (i + 1), 2), seed=i) for i, t in enumerate(tables)]
        queries[2] = queries[2].astype(np.int32) % 1000  # mixed dtypes are fine
        rows = ps.lookup_many("m", [0, 1, 2, 3, 4], queries)
        for t, q, r in zip(tables, queries, rows):
            np.testing.assert_array_equal(r, t.expected(q))
        # Tables by name, any order, a table twice; and a big batch split over threads.
        big = mixed_queries(tables[4], (50_000,), seed=9)
        again = ps.lookup_many("m", ["sparse_embedding4", 0, "sparse_embedding4"], [big, queries[0], big[:7]])
        np.testing.assert_array_equal(again[0], tables[4].expected(big))
        np.testing.assert_array_equal(again[1], tables[0].expected(queries[0]))
        np.testing.assert_array_equal(again[2], tables[4].expected(big[:7]))
        assert ps.lookup_many("m", [], []) == []
        with pytest.raises(hps.InvalidArgumentError, match="2 tables but 1 key arrays"):
            ps.lookup_many("m", [0, 1], [queries[0]])
        with pytest.raises(hps.NotFoundError):
            ps.lookup_many("m", [0, 9], [queries[0], queries[1]])
