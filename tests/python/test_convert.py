"""hps.convert: .npy/.npz inputs -> HugeCTR table folders, compared with NumPy and write_sparse_model."""

import io
import os
import warnings
import zipfile

import numpy as np
import pytest

import hps
from hps.convert import KEY_NAMES, ROW_NAMES, convert


def table_bytes(folder):
    return {name: open(os.path.join(folder, name), "rb").read()
            for name in ("key", "emb_vector", "meta") if os.path.exists(os.path.join(folder, name))}


def reference(tmp_path, keys, rows, meta=None):
    """The folder hps.write_sparse_model writes for the same arrays."""
    folder = tmp_path / "reference"
    hps.write_sparse_model(folder, keys, rows, meta)
    return table_bytes(folder)


def assert_table(folder, keys, rows, meta=None):
    got_keys, got_rows, got_meta = hps.read_sparse_model(folder, with_meta=True)
    np.testing.assert_array_equal(got_keys, np.asarray(keys, dtype=np.int64))
    np.testing.assert_array_equal(got_rows, np.asarray(rows, dtype=np.float32))
    if meta is None:
        assert got_meta is None
    else:
        np.testing.assert_array_equal(got_meta, np.asarray(meta, dtype=np.int64))


def no_temporaries(folder):
    return [name for name in os.listdir(folder) if name.endswith(".tmp")] == []


# ---- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("key_name", KEY_NAMES)
@pytest.mark.parametrize("row_name", ROW_NAMES)
def test_npz_round_trip_every_member_name(tmp_path, key_name, row_name):
    rng = np.random.default_rng(0)
    keys = rng.permutation(50).astype(np.int64) * 1_000_003 - 7
    rows = rng.standard_normal((50, 6)).astype(np.float32)
    np.savez(tmp_path / "in.npz", **{key_name: keys, row_name: rows})
    result = convert(tmp_path / "out", tmp_path / "in.npz")
    assert (result.rows, result.dim, result.has_meta, result.duplicate_keys) == (50, 6, False, 0)
    assert (result.key_min, result.key_max) == (int(keys.min()), int(keys.max()))
    assert_table(tmp_path / "out", keys, rows)
    assert table_bytes(tmp_path / "out") == reference(tmp_path, keys, rows)


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_with_meta_and_float64_rows_matches_write_sparse_model(tmp_path, compressed):
    rng = np.random.default_rng(1)
    keys = np.arange(40, dtype=np.uint32)
    rows = rng.standard_normal((40, 3))  # float64: rounded to float32 like write_sparse_model does
    meta = rng.integers(0, 100, 40)
    save = np.savez_compressed if compressed else np.savez
    save(tmp_path / "in.npz", keys=keys, rows=rows, meta=meta)
    result = convert(tmp_path / "out", [tmp_path / "in.npz"], chunk_rows=7)
    assert result.has_meta
    assert_table(tmp_path / "out", keys, rows.astype(np.float32), meta)
    assert table_bytes(tmp_path / "out") == reference(tmp_path, keys, rows, meta)


def test_two_npy_files_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    keys = rng.choice(10**12, size=300, replace=False).astype(np.int64)
    rows = rng.standard_normal((300, 8)).astype(np.float16)
    meta = np.arange(300, dtype=np.int32)
    np.save(tmp_path / "k.npy", keys)
    np.save(tmp_path / "r.npy", rows)
    np.save(tmp_path / "m.npy", meta)
    convert(tmp_path / "out", keys=tmp_path / "k.npy", rows=tmp_path / "r.npy", meta=tmp_path / "m.npy")
    assert_table(tmp_path / "out", keys, rows.astype(np.float32), meta)
    assert table_bytes(tmp_path / "out") == reference(tmp_path, keys, rows, meta)


def test_arrays_in_memory_round_trip(tmp_path):
    keys = np.array([9, 4, 1], dtype=np.int16)
    rows = np.arange(6, dtype=np.int32).reshape(3, 2)  # integer rows are numbers too
    convert(tmp_path / "out", keys=keys, rows=rows)
    assert_table(tmp_path / "out", keys, rows.astype(np.float32))


def test_dense_npy_row_index_is_the_key(tmp_path):
    rows = np.random.default_rng(3).standard_normal((25, 4))
    np.save(tmp_path / "dense.npy", rows)
    result = convert(tmp_path / "out", tmp_path / "dense.npy", key_offset=1000)
    assert (result.key_min, result.key_max) == (1000, 1024)
    assert_table(tmp_path / "out", np.arange(1000, 1025), rows.astype(np.float32))
    assert table_bytes(tmp_path / "out") == reference(tmp_path, np.arange(1000, 1025), rows)


def test_several_dense_files_continue_the_numbering(tmp_path):
    first, second = np.ones((3, 2)), np.full((4, 2), 2.0)
    np.save(tmp_path / "a.npy", first)
    np.save(tmp_path / "b.npy", second)
    convert(tmp_path / "out", [tmp_path / "a.npy", tmp_path / "b.npy"], key_offset=-3)
    assert_table(tmp_path / "out", np.arange(-3, 4), np.concatenate([first, second]))


def test_several_npz_files_are_concatenated(tmp_path):
    np.savez(tmp_path / "a.npz", keys=[1, 2], rows=[[1.0], [2.0]])
    np.savez(tmp_path / "b.npz", key=[3], embeddings=[[3.0]])
    convert(tmp_path / "out", [tmp_path / "a.npz", tmp_path / "b.npz"])
    assert_table(tmp_path / "out", [1, 2, 3], [[1.0], [2.0], [3.0]])


def test_fortran_ordered_rows(tmp_path):
    rows = np.asfortranarray(np.arange(40, dtype=np.float32).reshape(10, 4))
    np.savez(tmp_path / "in.npz", keys=np.arange(10), rows=rows)
    np.save(tmp_path / "dense.npy", rows)
    convert(tmp_path / "a", tmp_path / "in.npz", chunk_rows=3)
    convert(tmp_path / "b", tmp_path / "dense.npy", chunk_rows=3)
    assert_table(tmp_path / "a", np.arange(10), np.ascontiguousarray(rows))
    assert_table(tmp_path / "b", np.arange(10), np.ascontiguousarray(rows))


# ---- chunking -----------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["npz", "npz_compressed", "npy_pair", "dense"])
def test_input_larger_than_one_chunk(tmp_path, form):
    rng = np.random.default_rng(4)
    n, chunk = 1001, 64  # 16 chunks, the last one partial
    keys = rng.permutation(n).astype(np.int64) + 5
    rows = rng.standard_normal((n, 5)).astype(np.float32)
    meta = rng.integers(0, 9, n)
    if form == "npz":
        np.savez(tmp_path / "in.npz", keys=keys, rows=rows, meta=meta)
        result = convert(tmp_path / "out", tmp_path / "in.npz", chunk_rows=chunk)
    elif form == "npz_compressed":
        np.savez_compressed(tmp_path / "in.npz", keys=keys, rows=rows, meta=meta)
        result = convert(tmp_path / "out", tmp_path / "in.npz", chunk_rows=chunk)
    elif form == "npy_pair":
        np.save(tmp_path / "k.npy", keys)
        np.save(tmp_path / "r.npy", rows)
        np.save(tmp_path / "m.npy", meta)
        result = convert(tmp_path / "out", keys=tmp_path / "k.npy", rows=tmp_path / "r.npy",
                         meta=tmp_path / "m.npy", chunk_rows=chunk)
    else:
        np.save(tmp_path / "dense.npy", rows)
        keys, meta = np.arange(n), None
        result = convert(tmp_path / "out", tmp_path / "dense.npy", chunk_rows=chunk)
    assert result.rows == n
    assert_table(tmp_path / "out", keys, rows, meta)
    assert table_bytes(tmp_path / "out") == reference(tmp_path, keys, rows, meta)
    assert no_temporaries(tmp_path / "out")


def test_progress_bar_counts_every_row(tmp_path, capsys):
    np.save(tmp_path / "dense.npy", np.zeros((300, 2), dtype=np.float32))
    convert(tmp_path / "out", tmp_path / "dense.npy", chunk_rows=100, progress=True)
    err = capsys.readouterr().err
    assert "convert -> " in err and "/300" in err


# ---- duplicates ---------------------------------------------------------------------------------


def test_duplicate_keys_are_kept_counted_and_the_last_one_wins(tmp_path):
    keys = np.array([5, 3, 5, 9, 3, 3])
    rows = np.arange(6, dtype=np.float32).reshape(6, 1) * np.ones((1, 4), dtype=np.float32)
    np.savez(tmp_path / "in.npz", keys=keys, rows=rows)
    with pytest.warns(UserWarning, match=r"3 duplicate keys \(2 distinct keys appear more than once\).*last"):
        result = convert(tmp_path / "out", tmp_path / "in.npz", chunk_rows=4)
    assert result.duplicate_keys == 3
    assert_table(tmp_path / "out", keys, rows)  # every row is written, in input order
    config = {"volatile_db": {"type": "hash_map"},
              "models": [{"model": "m", "sparse_files": [str(tmp_path / "out")], "embedding_vecsize_per_table": [4]}]}
    with hps.HPS(config) as ps:
        np.testing.assert_array_equal(ps.lookup("m", 0, [5, 3, 9])[:, 0], [2.0, 5.0, 3.0])


def test_no_warning_without_duplicates(tmp_path):
    np.savez(tmp_path / "in.npz", keys=[1, 2, 3], rows=np.zeros((3, 2)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert convert(tmp_path / "out", tmp_path / "in.npz").duplicate_keys == 0


# ---- the folder ---------------------------------------------------------------------------------


def test_existing_table_needs_overwrite_and_stale_meta_is_removed(tmp_path):
    hps.write_sparse_model(tmp_path / "out", [1, 2], np.zeros((2, 3)), meta=[7, 8])
    np.savez(tmp_path / "in.npz", keys=[4, 5, 6], rows=np.ones((3, 3)))
    with pytest.raises(hps.StorageError, match="already holds a table"):
        convert(tmp_path / "out", tmp_path / "in.npz")
    assert_table(tmp_path / "out", [1, 2], np.zeros((2, 3)), [7, 8])  # untouched
    convert(tmp_path / "out", tmp_path / "in.npz", overwrite=True)
    assert_table(tmp_path / "out", [4, 5, 6], np.ones((3, 3)))
    assert not os.path.exists(tmp_path / "out" / "meta")


# Each fails in the last chunk, after the folder was made and earlier chunks were written.
FAILING_LAST_CHUNK = [
    pytest.param(np.array([1, 2, 3, 4, np.iinfo(np.int64).max - 1]), np.zeros((5, 2)), {"key_offset": 10},
                 r"key 9223372036854775806 \+ offset 10 does not fit the int64 'key' file", id="key-offset"),
    pytest.param(np.array([1, 2, 3, 4, 2**64 - 1], dtype=np.uint64), np.zeros((5, 2)), {},
                 "key 18446744073709551615 does not fit the int64 'key' file", id="uint64-key"),
    pytest.param(np.arange(5), np.array([[0.0, 1.0]] * 4 + [[1e39, 0.0]]), {},
                 r"row 4, column 0: 1e\+39 does not fit the float32 'emb_vector' file", id="float32-overflow"),
]


@pytest.mark.parametrize("keys, rows, options, message", FAILING_LAST_CHUNK)
def test_failure_midway_removes_the_folders_it_created(tmp_path, keys, rows, options, message):
    with pytest.raises(hps.InvalidArgumentError, match=message):
        convert(tmp_path / "new" / "out", **save_pair(tmp_path, keys, rows), **options, chunk_rows=2)
    assert not os.path.exists(tmp_path / "new")  # the parent it made too


@pytest.mark.parametrize("keys, rows, options, message", FAILING_LAST_CHUNK)
def test_failure_midway_keeps_a_folder_that_existed_and_the_table_in_it(tmp_path, keys, rows, options, message):
    pair = save_pair(tmp_path, keys, rows)
    os.makedirs(tmp_path / "empty")
    with pytest.raises(hps.InvalidArgumentError, match=message):
        convert(tmp_path / "empty", **pair, **options, chunk_rows=2)
    assert os.listdir(tmp_path / "empty") == []
    hps.write_sparse_model(tmp_path / "table", [7, 8], np.ones((2, 2)), meta=[1, 2])
    before = table_bytes(tmp_path / "table")
    with pytest.raises(hps.InvalidArgumentError, match=message):
        convert(tmp_path / "table", **pair, **options, chunk_rows=2, overwrite=True)
    assert sorted(os.listdir(tmp_path / "table")) == ["emb_vector", "key", "meta"]
    assert table_bytes(tmp_path / "table") == before


# ---- float32 rows -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1e39, -3.5e38, np.finfo(np.float64).max])
def test_finite_rows_beyond_float32_are_refused_naming_file_row_and_value(tmp_path, value):
    rows = np.zeros((6, 3))
    rows[4, 2] = value
    pair = save_pair(tmp_path, np.arange(6), rows)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NumPy "overflow encountered in cast" either
        with pytest.raises(hps.InvalidArgumentError) as raised:
            convert(tmp_path / "out", **pair, chunk_rows=4)
    assert str(raised.value) == (f"{pair['rows']}: row 4, column 2: {value:g} does not fit the float32 "
                                 "'emb_vector' file (float32 holds at most ~3.4e38 in magnitude)")
    assert not os.path.exists(tmp_path / "out")
    np.savez(tmp_path / "in.npz", keys=np.arange(6), rows=rows)
    with pytest.raises(hps.InvalidArgumentError, match=r"in\.npz\[rows\]: row 4, column 2: "):
        convert(tmp_path / "out", tmp_path / "in.npz")


def test_nan_inf_and_the_largest_float32_pass_through(tmp_path):
    largest = float(np.finfo(np.float32).max)
    rows = np.array([[np.nan, np.inf], [-np.inf, largest], [-largest, 1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        convert(tmp_path / "out", **save_pair(tmp_path, np.arange(3), rows))
    assert_table(tmp_path / "out", np.arange(3), rows.astype(np.float32))


# ---- bad input ----------------------------------------------------------------------------------


def npy_header_only(shape, dtype):
    """An .npy member whose header claims `shape` but holds no data (as a damaged or crafted file)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                                  "shape": shape})
    return buffer.getvalue()


@pytest.mark.parametrize("rows_claimed", [2**40, 3])
def test_npz_header_claiming_more_rows_than_it_holds_is_refused_before_allocating(tmp_path, rows_claimed):
    # Found by fuzz/fuzz_convert.py (corpus seed_npz_huge_shape): the claimed shape sized an 8 TiB
    # array (MemoryError) before a byte was read.
    with zipfile.ZipFile(tmp_path / "in.npz", "w") as archive:
        archive.writestr("keys.npy", npy_header_only((rows_claimed,), np.int64))
        archive.writestr("rows.npy", npy_header_only((rows_claimed, 4), np.float32))
    with pytest.raises(hps.StorageError, match=r"in\.npz\[keys\]: the \.npy header announces shape "
                                              rf"\({rows_claimed},\) of int64 \({8 * rows_claimed} bytes\), "
                                              r"but the member holds 0 bytes \(truncated\?\)"):
        convert(tmp_path / "out", tmp_path / "in.npz")
    assert not os.path.exists(tmp_path / "out" / "key")



def save_pair(tmp_path, keys, rows):
    np.save(tmp_path / "k.npy", keys)
    np.save(tmp_path / "r.npy", rows)
    return {"keys": tmp_path / "k.npy", "rows": tmp_path / "r.npy"}


def npz_bytes(compressed=False):
    buffer = io.BytesIO()
    np.savez_compressed(buffer, keys=np.arange(3), rows=np.ones((3, 2))) if compressed else \
        np.savez(buffer, keys=np.arange(3), rows=np.ones((3, 2)))
    return bytearray(buffer.getvalue())


def flip_last_data_byte(data):  # of the first member: its CRC no longer matches
    data[data.index(b"\x93NUMPY") + 140] ^= 0xFF
    return data


def mark_encrypted(data):  # general purpose flag bit 0, in the local and the central headers
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.index(signature)
        data[at + offset] |= 1
    return data


def damage_deflate_stream(data):
    # the first member's data: after the 30-byte local header, its name and its extra field
    at = 30 + int.from_bytes(data[26:28], "little") + int.from_bytes(data[28:30], "little") + 2
    data[at:at + 8] = b"\xff" * 8
    return data


# Found by fuzz/fuzz_convert.py (its corpus keeps the inputs as regression-*): damaged archives
# escaped as zipfile.BadZipFile, RuntimeError (encrypted), OSError, zlib.error and NumPy's
# tokenize.TokenError instead of an hps error naming the file.
@pytest.mark.parametrize("damage, compressed", [
    (flip_last_data_byte, False), (mark_encrypted, False), (damage_deflate_stream, True),
])
def test_damaged_npz_is_a_storage_error_naming_the_file(tmp_path, damage, compressed):
    (tmp_path / "in.npz").write_bytes(bytes(damage(npz_bytes(compressed))))
    with pytest.raises(hps.StorageError, match=r"in\.npz"):
        convert(tmp_path / "out", tmp_path / "in.npz")
    assert not os.path.exists(tmp_path / "out" / "key")


@pytest.mark.parametrize("header", [b"{'descr': '<f4', 'fortran_order': False, 'shape': (2,",
                                    b"{'descr': 5, 'fortran_order': False, 'shape': (2, 2), }",
                                    b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }"])
def test_damaged_npy_header_is_a_storage_error_naming_the_file(tmp_path, header):
    header = header + b" " * (117 - len(header)) + b"\n"  # the last one is whole, but its data is missing
    (tmp_path / "m.npy").write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header)
    with pytest.raises(hps.StorageError, match=r"m\.npy: not a readable \.npy file"):
        convert(tmp_path / "out", tmp_path / "m.npy")


@pytest.mark.parametrize("keys, rows, message", [
    (np.array([1.0, 2.0]), np.zeros((2, 3)), r"k\.npy: keys must be integers, got dtype float64"),
    (np.array([True, False]), np.zeros((2, 3)), "keys must be integers, got dtype bool"),
    (np.zeros((2, 2), dtype=np.int64), np.zeros((2, 3)), r"keys must have shape \[N\]"),
    (np.array([1, 2]), np.zeros(2), r"r\.npy: rows must have shape \[N, D\] with D > 0, got \(2,\)"),
    (np.array([1, 2]), np.zeros((2, 0)), r"with D > 0, got \(2, 0\)"),
    (np.array([1, 2]), np.array([["a"], ["b"]]), "rows must be numeric"),
    (np.array([1, 2, 3]), np.zeros((2, 3)), "3 keys but 2 rows"),
    (np.array([2**63 + 5], dtype=np.uint64), np.zeros((1, 3)), "does not fit the int64 'key' file"),
    (np.array([], dtype=np.int64), np.zeros((0, 3)), "hold no rows"),
])
def test_bad_arrays_are_named(tmp_path, keys, rows, message):
    with pytest.raises(hps.InvalidArgumentError, match=message):
        convert(tmp_path / "out", **save_pair(tmp_path, keys, rows))


def test_dim_check(tmp_path):
    pair = save_pair(tmp_path, np.arange(3), np.zeros((3, 4)))
    convert(tmp_path / "ok", **pair, dim_check=4)
    with pytest.raises(hps.InvalidArgumentError, match="rows have 4 floats each, expected 8"):
        convert(tmp_path / "out", **pair, dim_check=8)


def test_npz_without_keys_lists_its_members(tmp_path):
    np.savez(tmp_path / "in.npz", ids=[1], rows=[[1.0]])
    with pytest.raises(hps.InvalidArgumentError, match=r"has no keys \(keys or key\) array; it holds: ids, rows"):
        convert(tmp_path / "out", tmp_path / "in.npz")
    np.savez(tmp_path / "in2.npz", keys=[1], weights=[[1.0]])
    with pytest.raises(hps.InvalidArgumentError, match=r"has no rows \(rows, emb_vector, values or embeddings\)"):
        convert(tmp_path / "out", tmp_path / "in2.npz")


def test_npz_with_two_row_arrays_is_ambiguous(tmp_path):
    np.savez(tmp_path / "in.npz", keys=[1], rows=[[1.0]], values=[[2.0]])
    with pytest.raises(hps.InvalidArgumentError, match="holds both 'rows' and 'values'"):
        convert(tmp_path / "out", tmp_path / "in.npz")


def test_ignored_npz_members_are_reported(tmp_path):
    np.savez(tmp_path / "in.npz", keys=[1], rows=[[1.0]], optimizer_state=[0])
    with pytest.warns(UserWarning, match="ignored arrays: optimizer_state"):
        convert(tmp_path / "out", tmp_path / "in.npz")


@pytest.mark.parametrize("call, error, message", [
    (lambda p: convert(p / "out"), hps.InvalidArgumentError, "nothing to convert"),
    (lambda p: convert(p / "out", p / "missing.npz"), hps.StorageError, r"missing\.npz: no such file"),
    (lambda p: convert(p / "out", p / "table.csv"), hps.InvalidArgumentError, "expected a .npz or .npy file"),
    (lambda p: convert(p / "out", [p / "a.npz", p / "d.npy"]), hps.InvalidArgumentError, "mix .npz and .npy"),
    (lambda p: convert(p / "out", keys=p / "k.npy"), hps.InvalidArgumentError, "keys and rows go together"),
    (lambda p: convert(p / "out", p / "a.npz", keys=p / "k.npy", rows=p / "d.npy"), hps.InvalidArgumentError,
     "not both"),
    (lambda p: convert(p / "out", p / "k.npy"), hps.InvalidArgumentError, r"dense \[N, D\] matrix.*--keys K\.npy"),
    (lambda p: convert(p / "out", p / "bad.npz"), hps.StorageError, "not an .npz file"),
    (lambda p: convert(p / "out", p / "bad.npy"), hps.StorageError, "not a readable .npy file"),
    (lambda p: convert(p / "out", p / "d.npy", chunk_rows=0), hps.InvalidArgumentError, "chunk_rows must be"),
])
def test_bad_calls(tmp_path, call, error, message):
    np.savez(tmp_path / "a.npz", keys=[1], rows=[[1.0]])
    np.save(tmp_path / "d.npy", np.zeros((2, 2)))
    np.save(tmp_path / "k.npy", np.arange(2))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    (tmp_path / "bad.npy").write_bytes(b"not an npy")
    with pytest.raises(error, match=message):
        call(tmp_path)


def test_meta_must_match(tmp_path):
    pair = save_pair(tmp_path, np.arange(3), np.zeros((3, 2)))
    with pytest.raises(hps.InvalidArgumentError, match="meta must have 3 entries"):
        convert(tmp_path / "out", **pair, meta=np.arange(4))
    with pytest.raises(hps.InvalidArgumentError, match="meta must be integers"):
        convert(tmp_path / "out", **pair, meta=np.zeros(3))
