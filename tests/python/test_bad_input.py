"""The bad-input census (issue 15, item 5; the table is docs/bad_input.md): each bad input gets a
clear error, leaves the served rows as they were, and does not crash the process."""

import json
import os

import numpy as np
import pytest

import hps

from conftest import config_for, make_table


@pytest.fixture
def served(tmp_path):
    t = make_table(tmp_path / "t", 200, 4, default=-1.0)
    with hps.HPS(config_for([t], gpucache=False)) as ps:
        yield ps, t


def _intact(ps, t):
    """Nothing lost: every row still as written."""
    assert np.array_equal(ps.lookup("m", 0, t.keys), t.expected(t.keys))


# ---- configs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, words", [
    ("{not json", "JSON"),
    ('{"models": [{"model": "m", "sparse_files": ["x"], "embedding_vecsize_per_table": [4]}], "volatile_dbb": {}}',
     "did you mean 'volatile_db'"),
    ('{"models": [{"model": "m", "sparse_files": ["x"], "embedding_vecsize_per_table": ["4"]}]}',
     "embedding_vecsize_per_table"),
    ('{"models": []}', "models"),
])
def test_bad_config_text(tmp_path, text, words):
    path = tmp_path / "ps.json"
    path.write_text(text)
    with pytest.raises(hps.ConfigError, match=words):
        hps.HPS(str(path))


def test_missing_config_file(tmp_path):
    with pytest.raises(hps.HpsError, match="nope.json"):
        hps.HPS(str(tmp_path / "nope.json"))


# ---- table files ----------------------------------------------------------------------------------


def test_truncated_rows_file(tmp_path):
    t = make_table(tmp_path / "t", 50, 4)
    with open(os.path.join(t.folder, "emb_vector"), "r+b") as f:
        f.truncate(100)
    with pytest.raises(hps.StorageError, match="emb_vector: expected"):
        hps.HPS(config_for([t]))


def test_foreign_file_as_keys(tmp_path):
    t = make_table(tmp_path / "t", 50, 4)
    with open(os.path.join(t.folder, "key"), "wb") as f:
        f.write(b"PK\x03\x04 not a key file")  # a zip header, 22 bytes: not whole int64s
    with pytest.raises(hps.StorageError, match="key"):
        hps.inspect_sparse_model(t.folder)


def test_wrong_dim_in_config(tmp_path):
    t = make_table(tmp_path / "t", 50, 4)
    config = config_for([t])
    config["models"][0]["embedding_vecsize_per_table"] = [3]
    with pytest.raises(hps.StorageError, match="emb_vector"):
        hps.HPS(config)


def test_missing_table_folder(tmp_path):
    t = make_table(tmp_path / "t", 50, 4)
    config = config_for([t])
    config["models"][0]["sparse_files"] = [str(tmp_path / "gone")]
    with pytest.raises(hps.StorageError, match="table folder does not exist"):
        hps.HPS(config)


# ---- keys -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("keys", [np.array([1.0, 2.0]), np.array([np.nan, 1.0]), np.array([True]),
                                  np.array([1, "a"], dtype=object), "12", [2**70]],
                         ids=["float", "nan", "bool", "object", "str", "python-int-beyond-64-bits"])
def test_non_integer_keys(served, keys):
    ps, t = served
    with pytest.raises(hps.KeyTypeError, match="keys must be an integer array"):
        ps.lookup("m", 0, keys)
    with pytest.raises(hps.KeyTypeError):
        ps.update("m", 0, keys, np.zeros((np.size(keys), 4), np.float32))
    _intact(ps, t)


def test_uint64_keys_beyond_int64(served):
    ps, t = served
    with pytest.raises(hps.InvalidArgumentError, match="not a 64-bit key"):
        ps.lookup("m", 0, np.array([2**64 - 1], dtype=np.uint64))
    _intact(ps, t)


def test_huge_key_range_is_served(served):
    ps, t = served
    extremes = np.array([np.iinfo(np.int64).min, -1, 0, np.iinfo(np.int64).max], dtype=np.int64)
    assert np.array_equal(ps.lookup("m", 0, extremes), t.expected(extremes))  # unknown keys: the default row
    ps.update("m", 0, extremes, np.ones((4, 4), np.float32))
    assert np.array_equal(ps.lookup("m", 0, extremes), np.ones((4, 4), np.float32))


def test_non_contiguous_and_read_only_keys(served):
    ps, t = served
    strided = t.keys[::3]
    assert not strided.flags.c_contiguous
    assert np.array_equal(ps.lookup("m", 0, strided), t.expected(strided))
    frozen = t.keys.copy()
    frozen.flags.writeable = False
    assert np.array_equal(ps.lookup("m", 0, frozen), t.expected(frozen))
    big_endian = t.keys.astype(">i8")
    assert np.array_equal(ps.lookup("m", 0, big_endian), t.expected(t.keys))


def _read_only_out():
    out = np.zeros((3, 4), np.float32)
    out.flags.writeable = False
    return out


def _refuses_out(ps, t, out, found):
    """lookup and lookup_many refuse `out`, naming what they found."""
    expected = r"out must be a writable C-contiguous float32 array of shape \(3, 4\); found "
    with pytest.raises(hps.InvalidArgumentError, match=expected + found):
        ps.lookup("m", 0, t.keys[:3], out=out)
    with pytest.raises(hps.InvalidArgumentError, match=expected + found):
        ps.lookup_many("m", [0], [t.keys[:3]], out=[out])
    _intact(ps, t)


@pytest.mark.parametrize("make_out, found", [
    (_read_only_out, "numpy.ndarray: read-only"),
    (lambda: np.zeros((3, 4), np.float64), "numpy.ndarray: dtype float64"),
    (lambda: np.zeros((4, 4), np.float32), r"numpy.ndarray: shape \(4, 4\)"),
    (lambda: np.zeros((3, 8), np.float32)[:, ::2], r"numpy.ndarray: not C-contiguous \(strides \(32, 8\)\)"),
    (lambda: [[0.0] * 4] * 3, "builtins.list, which NumPy can only copy, not view"),
], ids=["read-only", "float64", "shape", "strided", "list"])
def test_bad_host_out_is_refused(served, make_out, found):
    out = make_out()
    _refuses_out(*served, out, found)
    assert not np.asarray(out).any()  # not written through


@pytest.mark.parametrize("make_out, found", [
    (lambda torch: torch.zeros(3, 4, dtype=torch.float64), "torch.Tensor: dtype float64"),
    (lambda torch: torch.zeros(3, 5), r"torch.Tensor: shape \(3, 5\)"),
    (lambda torch: torch.zeros(4, 3).t(), r"torch.Tensor: not C-contiguous \(strides \(4, 12\)\)"),
    (lambda torch: torch.zeros(3, 4, requires_grad=True), "torch.Tensor, which NumPy cannot view: .*requires grad"),
], ids=["float64", "shape", "transposed", "requires-grad"])
def test_bad_torch_out_is_refused(served, make_out, found):
    torch = pytest.importorskip("torch")
    out = make_out(torch)
    _refuses_out(*served, out, found)
    assert not out.detach().any()  # not written through


def test_keys_on_a_device_without_memory(served):
    torch = pytest.importorskip("torch")
    ps, t = served
    with pytest.raises((hps.HpsError, TypeError), match="meta"):
        ps.lookup("m", 0, torch.empty(3, dtype=torch.int64, device="meta"))
    _intact(ps, t)


# ---- sizes ----------------------------------------------------------------------------------------


def test_zero_keys(served):
    ps, t = served
    assert ps.lookup("m", 0, np.empty(0, np.int64)).shape == (0, 4)
    assert ps.lookup("m", 0, np.empty((2, 0), np.int64)).shape == (2, 0, 4)
    assert ps.erase("m", 0, np.empty(0, np.int64)) == 0
    _intact(ps, t)


def test_two_to_the_31_keys_fail_without_allocating(served):
    ps, t = served
    huge = np.broadcast_to(np.int64(t.keys[0]), (2**31,))  # 16 GiB of keys that take no memory
    with pytest.raises(hps.InvalidArgumentError, match="at most 2,147,483,647"):
        ps.lookup("m", 0, huge)  # would allocate 16 GiB of keys and 32 GiB of rows if it tried
    with pytest.raises(hps.InvalidArgumentError, match="at most"):
        ps.erase("m", 0, huge)
    _intact(ps, t)


# ---- API misuse -----------------------------------------------------------------------------------


def test_use_after_close_and_closing_twice(tmp_path):
    t = make_table(tmp_path / "t", 50, 4)
    ps = hps.HPS(config_for([t]))
    ps.close()
    ps.close()  # closing twice is allowed and does nothing
    for call in (lambda: ps.lookup("m", 0, [1]), lambda: ps.update("m", 0, [1], np.ones((1, 4))),
                 lambda: ps.stats()):
        with pytest.raises(RuntimeError, match="closed"):
            call()
    with hps.HPS(config_for([t])) as again:  # a new server serves the same rows
        assert np.array_equal(again.lookup("m", 0, t.keys), t.expected(t.keys))


def test_calls_from_a_forked_child(served):
    ps, t = served
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its copy of the CPU tiers answers; nothing it does reaches the parent
        try:
            ok = np.array_equal(ps.lookup("m", 0, t.keys[:5]), t.expected(t.keys[:5]))
            ps.update("m", 0, t.keys[:5], np.zeros((5, 4), np.float32))
            os.write(write, json.dumps(bool(ok)).encode())
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    answer = os.read(read, 100)
    os.close(read)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child status {status}"
    assert answer == b"true", f"child answered {answer!r}"
    _intact(ps, t)  # the child's update stayed in the child
