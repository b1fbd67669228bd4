"""Convert NumPy arrays (.npy / .npz files) into HugeCTR sparse-model table folders.

A table folder holds `key` (int64, little-endian), `emb_vector` (float32 rows, row-major) and
optionally `meta` (int64): exactly what `hps.write_sparse_model` writes. Three input forms:

* one or more ``.npz`` files, each holding a keys array (``keys`` or ``key``), a rows array
  (``rows``, ``emb_vector``, ``values`` or ``embeddings``) and optionally ``meta``;
* two ``.npy`` files (or arrays) given as ``keys=`` and ``rows=`` (optionally ``meta=``);
* one or more ``.npy`` dense matrices ``[N, D]`` whose row index is the key (several files
  continue the numbering; ``key_offset`` is added to every key).

Inputs are read in chunks (``.npy`` files memory-mapped, ``.npz`` members streamed), so memory
stays bounded by one chunk of rows plus the keys (8 bytes per row, kept to count duplicates).
The files are written under temporary names and renamed into place at the end.

Example::

    from hps.convert import convert
    result = convert("tables/user", ["user_embeddings.npz"])
    print(result.rows, result.dim, result.duplicate_keys)
"""

from __future__ import annotations

import math
import os
import sys
import tokenize
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np

from .errors import HpsError, InvalidArgumentError, StorageError

__all__ = ["convert", "ConvertResult", "KEY_NAMES", "ROW_NAMES", "DEFAULT_CHUNK_BYTES"]

PathLike = Union[str, "os.PathLike[str]"]
Source = Union[PathLike, np.ndarray]

#: Member names accepted for the keys and the rows of an .npz file, in order of preference.
KEY_NAMES = ("keys", "key")
ROW_NAMES = ("rows", "emb_vector", "values", "embeddings")
META_NAME = "meta"

#: Rows per chunk are chosen so that one chunk of rows is about this many bytes.
DEFAULT_CHUNK_BYTES = 64 << 20

_INT64_MIN, _INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)
_TABLE_FILES = ("key", "emb_vector", "meta")


@dataclass
class ConvertResult:
    """What `convert` wrote."""

    folder: str
    rows: int
    dim: int
    has_meta: bool
    duplicate_keys: int  #: rows whose key also appears in a later row (the last occurrence wins)
    key_min: Optional[int]
    key_max: Optional[int]
    warnings: list = field(default_factory=list)


# ---- readable columns ---------------------------------------------------------------------------


class _Column:
    """One input array, read front to back in chunks of rows."""

    def __init__(self, label: str, shape: tuple, dtype: np.dtype):
        self.label, self.shape, self.dtype = label, tuple(shape), np.dtype(dtype)

    @property
    def length(self) -> int:
        return int(self.shape[0]) if self.shape else 0

    def next(self, count: int) -> np.ndarray:  # the next `count` rows
        raise NotImplementedError

    def close(self) -> None:
        pass


class _ArrayColumn(_Column):
    """An ndarray or a memory-mapped .npy file: chunks are slices."""

    def __init__(self, label: str, array: np.ndarray):
        super().__init__(label, array.shape, array.dtype)
        self._array, self._position = array, 0

    def next(self, count: int) -> np.ndarray:
        chunk = self._array[self._position:self._position + count]
        self._position += count
        return chunk


class _RangeColumn(_Column):
    """Keys of a dense matrix: first, first + 1, ..."""

    def __init__(self, label: str, first: int, count: int):
        super().__init__(label, (count,), np.int64)
        self._next = first

    def next(self, count: int) -> np.ndarray:
        chunk = np.arange(self._next, self._next + count, dtype=np.int64)
        self._next += count
        return chunk


# What reading a damaged .npy file, archive or member raises: zipfile's errors (bad CRC, bad
# headers), RuntimeError (a member flagged as encrypted), zlib.error (bad compressed data), OSError (a
# seek to a negative offset), EOFError (a short read), NotImplementedError (an unknown compression
# method), and from NumPy's header parser ValueError, TypeError (an unknown dtype),
# tokenize.TokenError and SyntaxError (a header that is not a Python literal). Each becomes a
# StorageError naming the input (all found by fuzz/fuzz_convert.py; the inputs are in its corpus).
_DAMAGED = (zipfile.BadZipFile, RuntimeError, zlib.error, OSError, EOFError, NotImplementedError, ValueError,
            TypeError, OverflowError, tokenize.TokenError, SyntaxError, RecursionError)


class _NpzMemberColumn(_Column):
    """One member of an .npz file (stored or compressed), streamed front to back."""

    def __init__(self, label: str, archive: zipfile.ZipFile, member: str):
        try:
            self._stream = archive.open(member)
        except _DAMAGED as error:
            raise StorageError(f"{label}: damaged .npz member ({type(error).__name__}: {error})") from None
        try:
            self._read_header(label, archive, member)
        except HpsError:
            self._stream.close()
            raise
        except _DAMAGED as error:
            self._stream.close()
            raise StorageError(f"{label}: damaged .npz member ({type(error).__name__}: {error})") from None
        except BaseException:
            self._stream.close()
            raise

    def _read_header(self, label: str, archive: zipfile.ZipFile, member: str) -> None:
        version = np.lib.format.read_magic(self._stream)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(self._stream)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(self._stream)
        else:
            raise StorageError(f"{label}: .npy format version {version[0]}.{version[1]} is not supported "
                               "(structured arrays cannot be converted)")
        super().__init__(label, shape, dtype)
        self._whole = None
        if dtype.hasobject:
            raise InvalidArgumentError(f"{label} holds Python objects (dtype {dtype}), not numbers")
        # The header's shape is only a claim: check it against the member's size before anything is
        # sized by it (an 8-byte-key table of 2^40 rows would allocate 8 TiB; found by fuzz_convert).
        declared = math.prod(shape) * dtype.itemsize
        held = archive.getinfo(member).file_size - self._stream.tell()
        if declared > held:
            raise StorageError(f"{label}: the .npy header announces shape {shape} of {dtype} ({declared} bytes), "
                               f"but the member holds {held} bytes (truncated?)")
        if fortran_order and len(shape) > 1:
            # Column-major rows cannot be streamed row by row: read the member whole.
            count = math.prod(shape)
            data = np.frombuffer(self._read_bytes(count * dtype.itemsize), dtype=dtype)
            self._whole = _ArrayColumn(label, data.reshape(shape, order="F"))
        self._row_items = math.prod(shape[1:]) if len(shape) > 1 else 1

    def _read_bytes(self, size: int) -> bytes:
        try:
            data = self._stream.read(size)
        except _DAMAGED as error:
            raise StorageError(f"{self.label}: damaged .npz member ({type(error).__name__}: {error})") from None
        if len(data) != size:
            raise StorageError(f"{self.label}: expected {size} more bytes, found {len(data)} (truncated?)")
        return data

    def next(self, count: int) -> np.ndarray:
        if self._whole is not None:
            return self._whole.next(count)
        data = self._read_bytes(count * self._row_items * self.dtype.itemsize)
        return np.frombuffer(data, dtype=self.dtype).reshape((count,) + self.shape[1:])

    def close(self) -> None:
        self._stream.close()


@dataclass
class _Input:
    """Keys, rows and optional meta of one input, all with the same number of rows."""

    label: str
    keys: _Column
    rows: _Column
    meta: Optional[_Column]

    def close(self) -> None:
        for column in (self.keys, self.rows, self.meta):
            if column is not None:
                column.close()


# ---- opening inputs -----------------------------------------------------------------------------


def _label(source: Source, what: str) -> str:
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else f"the {what} array"


def _open_npy(path: PathLike) -> np.ndarray:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise StorageError(f"{path}: no such file")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except _DAMAGED as error:  # pickled object arrays, bad headers, short files
        raise StorageError(f"{path}: not a readable .npy file ({type(error).__name__}: {error})") from None
    if isinstance(array, np.lib.npyio.NpzFile):
        array.close()
        raise InvalidArgumentError(f"{path}: is an .npz archive; pass it as an INPUT, not as --keys/--rows/--meta")
    return array


def _column(source: Source, what: str) -> _Column:
    """A column from a .npy path or an in-memory array."""
    if isinstance(source, (str, os.PathLike)):
        return _ArrayColumn(os.fspath(source), _open_npy(source))
    return _ArrayColumn(_label(source, what), np.asarray(source))


def _pick(members: dict, names: Sequence[str], path: str, what: str) -> Optional[str]:
    present = [name for name in names if name in members]
    if len(present) > 1:
        raise InvalidArgumentError(f"{path}: holds both {present[0]!r} and {present[1]!r}; "
                                   f"keep one {what} array")
    return present[0] if present else None


def _open_npz(path: PathLike, notes: list) -> _Input:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise StorageError(f"{path}: no such file")
    try:
        archive = zipfile.ZipFile(path)
    except _DAMAGED as error:
        raise StorageError(f"{path}: not an .npz file (not a readable zip archive: {error})") from None
    members = {name[:-4]: name for name in archive.namelist() if name.endswith(".npy")}
    found = ", ".join(sorted(members)) or "nothing"
    key_name = _pick(members, KEY_NAMES, path, "keys")
    row_name = _pick(members, ROW_NAMES, path, "rows")
    if key_name is None or row_name is None:
        what, names = ("keys", KEY_NAMES) if key_name is None else ("rows", ROW_NAMES)
        missing = f"{what} ({', '.join(names[:-1])} or {names[-1]})"
        raise InvalidArgumentError(f"{path}: has no {missing} array; it holds: {found}")
    ignored = sorted(set(members) - {key_name, row_name, META_NAME})
    if ignored:
        notes.append(f"{path}: ignored arrays: {', '.join(ignored)}")
    keys = _NpzMemberColumn(f"{path}[{key_name}]", archive, members[key_name])
    rows = _NpzMemberColumn(f"{path}[{row_name}]", archive, members[row_name])
    meta = _NpzMemberColumn(f"{path}[{META_NAME}]", archive, members[META_NAME]) if META_NAME in members else None
    return _Input(path, keys, rows, meta)


def _open_inputs(inputs: Sequence[PathLike], keys: Optional[Source], rows: Optional[Source],
                 meta: Optional[Source], notes: list) -> list:
    if (keys is None) != (rows is None):
        raise InvalidArgumentError("keys and rows go together: give both, or neither")
    if keys is not None:
        if inputs:
            raise InvalidArgumentError("give either input files or keys and rows, not both")
        meta_column = _column(meta, "meta") if meta is not None else None
        return [_Input(_label(rows, "rows"), _column(keys, "keys"), _column(rows, "rows"), meta_column)]
    if not inputs:
        raise InvalidArgumentError("nothing to convert: give .npz files, .npy dense matrices, or keys and rows")
    if meta is not None:
        raise InvalidArgumentError("meta goes with keys and rows; an .npz input carries its own 'meta' array")
    kinds = {os.path.splitext(os.fspath(path))[1].lower() for path in inputs}
    unknown = kinds - {".npz", ".npy"}
    if unknown:
        bad = next(os.fspath(p) for p in inputs if os.path.splitext(os.fspath(p))[1].lower() in unknown)
        raise InvalidArgumentError(f"{bad}: expected a .npz or .npy file")
    if len(kinds) > 1:
        raise InvalidArgumentError("inputs mix .npz and .npy files; convert one kind at a time")
    if kinds == {".npz"}:
        return [_open_npz(path, notes) for path in inputs]
    opened, next_key = [], 0
    for path in inputs:
        matrix = _open_npy(path)
        if matrix.ndim != 2:
            raise InvalidArgumentError(
                f"{os.fspath(path)}: a .npy input is a dense [N, D] matrix whose row index is the key, got shape "
                f"{matrix.shape}; for keys and rows in two files use --keys K.npy --rows R.npy")
        rows_column = _ArrayColumn(os.fspath(path), matrix)
        opened.append(_Input(os.fspath(path), _RangeColumn(f"{os.fspath(path)} (row index)", next_key,
                                                            matrix.shape[0]), rows_column, None))
        next_key += matrix.shape[0]
    return opened


# ---- checks -------------------------------------------------------------------------------------


def _check(inputs: list, dim_check: Optional[int]) -> int:
    """Checks dtypes and shapes before anything is written; returns D."""
    dims = set()
    for item in inputs:
        keys, rows, meta = item.keys, item.rows, item.meta
        if keys.dtype.kind not in "iu":
            raise InvalidArgumentError(f"{keys.label}: keys must be integers, got dtype {keys.dtype}")
        if len(keys.shape) != 1 and not (len(keys.shape) == 2 and keys.shape[1] == 1):
            raise InvalidArgumentError(f"{keys.label}: keys must have shape [N], got {keys.shape}")
        if rows.dtype.kind not in "fiu":
            raise InvalidArgumentError(f"{rows.label}: rows must be numeric, got dtype {rows.dtype}")
        if len(rows.shape) != 2 or rows.shape[1] == 0:
            raise InvalidArgumentError(f"{rows.label}: rows must have shape [N, D] with D > 0, got {rows.shape}")
        if rows.length != keys.length:
            raise InvalidArgumentError(f"{item.label}: {keys.length} keys but {rows.length} rows; "
                                       "they must have the same count")
        if meta is not None:
            if meta.dtype.kind not in "iu":
                raise InvalidArgumentError(f"{meta.label}: meta must be integers, got dtype {meta.dtype}")
            if int(np.prod(meta.shape, dtype=np.int64)) != keys.length or len(meta.shape) > 2:
                raise InvalidArgumentError(f"{meta.label}: meta must have {keys.length} entries, got shape "
                                           f"{meta.shape}")
        dims.add(rows.shape[1])
    if len(dims) > 1:
        raise InvalidArgumentError(f"inputs have rows of different widths: {sorted(dims)}")
    if len({item.meta is None for item in inputs}) > 1:
        raise InvalidArgumentError("some inputs have a 'meta' array and some do not; all or none must")
    dim = dims.pop()
    if dim_check is not None and dim != dim_check:
        raise InvalidArgumentError(f"{inputs[0].rows.label}: rows have {dim} floats each, expected {dim_check}")
    if sum(item.keys.length for item in inputs) == 0:
        raise InvalidArgumentError("the inputs hold no rows")
    return dim


def _keys_chunk(chunk: np.ndarray, label: str, key_offset: int) -> np.ndarray:
    chunk = chunk.reshape(-1)
    if chunk.size:
        low, high = int(chunk.min()), int(chunk.max())
        if high + key_offset > _INT64_MAX or low + key_offset < _INT64_MIN:
            raise InvalidArgumentError(f"{label}: key {high if high + key_offset > _INT64_MAX else low}"
                                       f"{f' + offset {key_offset}' if key_offset else ''} does not fit "
                                       "the int64 'key' file")
    chunk = chunk.astype("<i8")  # always a copy: the key_offset addition below must not touch the input
    if key_offset:
        chunk += key_offset
    return chunk


def _rows_chunk(chunk: np.ndarray, label: str, first_row: int) -> np.ndarray:
    """The rows as float32; a finite value beyond float32's range is refused (it would become inf).

    NaN and infinities already in the input are stored as they are."""
    with np.errstate(over="ignore"):  # an overflow is refused below, naming the value
        rows = np.ascontiguousarray(chunk, dtype="<f4")
    overflow = np.isinf(rows)
    if overflow.any():
        overflow &= np.isfinite(chunk)
        if overflow.any():
            row, column = (int(i) for i in np.argwhere(overflow)[0])
            raise InvalidArgumentError(f"{label}: row {first_row + row}, column {column}: {chunk[row, column]:g} "
                                       "does not fit the float32 'emb_vector' file (float32 holds at most "
                                       "~3.4e38 in magnitude)")
    return rows


# ---- conversion ---------------------------------------------------------------------------------


def _progress_bar(enabled: Optional[bool], total: int, desc: str):
    if enabled is None:
        enabled = sys.stderr.isatty() and os.environ.get("HPS_PROGRESS", "1") != "0"
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="rows", unit_scale=True, disable=not enabled, leave=False,
                dynamic_ncols=True)


def convert(out: PathLike, inputs: Union[PathLike, Sequence[PathLike]] = (), *,
            keys: Optional[Source] = None, rows: Optional[Source] = None, meta: Optional[Source] = None,
            key_offset: int = 0, dim_check: Optional[int] = None, overwrite: bool = False,
            chunk_rows: Optional[int] = None, progress: Optional[bool] = None) -> ConvertResult:
    """Writes the table folder `out` from NumPy inputs; returns what it wrote.

    `inputs`: .npz files (keys, rows, optional meta each) or .npy dense matrices (row index = key),
    concatenated in order. Or leave it empty and give `keys` and `rows` (and optionally `meta`) as
    .npy paths or arrays. `key_offset` is added to every key. `dim_check` fails the conversion
    when the rows do not have that many floats. An existing table in `out` is replaced only with
    `overwrite=True`. `chunk_rows` rows are read and written at a time (default: about 64 MiB of
    rows). `progress`: a tqdm bar on stderr (None: only when stderr is a terminal).

    Duplicate keys are kept (lookups return the row of the last occurrence); their count is in the
    result and in a UserWarning. Rows are stored as float32: NaN and infinities pass through, a finite
    value beyond float32's range is refused. Raises hps.InvalidArgumentError or hps.StorageError
    naming the input that is wrong; a failed conversion leaves an existing table as it was and
    removes the folders it created.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = list(inputs)
    if chunk_rows is not None and chunk_rows <= 0:
        raise InvalidArgumentError(f"chunk_rows must be positive, got {chunk_rows}")
    key_offset = int(key_offset)
    notes: list = []
    opened = _open_inputs(inputs, keys, rows, meta, notes)
    try:
        dim = _check(opened, dim_check)
        return _write(os.fspath(out), opened, dim, key_offset, overwrite,
                      chunk_rows or max(1, DEFAULT_CHUNK_BYTES // (4 * dim)), progress, notes)
    finally:
        for item in opened:
            item.close()


def _missing_folders(folder: str) -> list:
    """The folders os.makedirs(folder) would create, deepest first."""
    missing, path = [], os.path.abspath(folder)
    while not os.path.exists(path):
        missing.append(path)
        path = os.path.dirname(path)
    return missing


def _write(folder: str, inputs: list, dim: int, key_offset: int, overwrite: bool, chunk_rows: int,
           progress: Optional[bool], notes: list) -> ConvertResult:
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise StorageError(f"{folder}: exists and is not a folder")
    existing = [name for name in _TABLE_FILES if os.path.exists(os.path.join(folder, name))]
    if existing and not overwrite:
        raise StorageError(f"{folder}: already holds a table ({', '.join(existing)}); "
                           "pass --force (overwrite=True) to replace it")
    created = _missing_folders(folder)  # removed again if the conversion fails
    has_meta = inputs[0].meta is not None
    names = ["key", "emb_vector"] + (["meta"] if has_meta else [])
    temporary = {name: os.path.join(folder, f".{name}.convert-{os.getpid()}.tmp") for name in names}
    total = sum(item.keys.length for item in inputs)
    all_keys = np.empty(total, dtype=np.int64)  # kept to count duplicates
    files = {}
    try:
        os.makedirs(folder, exist_ok=True)
        for name in names:
            files[name] = open(temporary[name], "wb")
        written = 0
        with _progress_bar(progress, total, f"convert -> {folder}") as bar:
            for item in inputs:
                left = item.keys.length
                while left:
                    count = min(chunk_rows, left)
                    key_chunk = _keys_chunk(item.keys.next(count), item.keys.label, key_offset)
                    row_chunk = _rows_chunk(item.rows.next(count), item.rows.label, item.keys.length - left)
                    key_chunk.tofile(files["key"])
                    row_chunk.tofile(files["emb_vector"])
                    if has_meta:
                        np.ascontiguousarray(item.meta.next(count).reshape(-1), dtype="<i8").tofile(files["meta"])
                    all_keys[written:written + count] = key_chunk
                    written += count
                    left -= count
                    bar.update(count)
        for handle in files.values():
            handle.close()
        for name in names:
            os.replace(temporary[name], os.path.join(folder, name))
        if not has_meta and os.path.exists(os.path.join(folder, "meta")):
            os.remove(os.path.join(folder, "meta"))  # a stale meta file would no longer match the keys
    except BaseException:
        for name, handle in files.items():
            handle.close()
        for path in temporary.values():
            if os.path.exists(path):
                os.remove(path)
        for path in created:
            try:
                os.rmdir(path)
            except OSError:  # not empty: something else was put there meanwhile, leave it
                break
        raise
    all_keys.sort()
    same = all_keys[1:] == all_keys[:-1]  # same[i]: row i + 1 repeats a key
    duplicates = int(np.count_nonzero(same))
    if duplicates:
        repeated = int(same[0]) + int(np.count_nonzero(same[1:] & ~same[:-1]))  # runs of equal keys
        notes.append(f"{duplicates} duplicate key{'s' if duplicates != 1 else ''} ({repeated} distinct key"
                     f"{'s' if repeated != 1 else ''} appear{'s' if repeated == 1 else ''} more than once); "
                     "lookups return the row of the last occurrence")
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=3)
    return ConvertResult(folder=folder, rows=total, dim=dim, has_meta=has_meta, duplicate_keys=duplicates,
                         key_min=int(all_keys[0]), key_max=int(all_keys[-1]), warnings=notes)
