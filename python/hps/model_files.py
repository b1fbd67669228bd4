"""HugeCTR sparse-model table folders: write, read, inspect (`key`, `emb_vector`, optional `meta`)."""

from __future__ import annotations

import os
from typing import Any, Optional

import numpy as np

from . import _core
from .errors import InvalidArgumentError, StorageError

__all__ = ["write_sparse_model", "read_sparse_model", "inspect_sparse_model"]


_TABLE_FILES = ("key", "emb_vector", "meta")


def write_sparse_model(folder: "str | os.PathLike[str]", keys: Any, rows: Any, meta: Any = None, *,
                       overwrite: bool = False) -> None:
    """Writes a table folder: `keys` (int64-convertible, [N]), `rows` ([N, D] float32), optional `meta` ([N]).

    Files are written under temporary names and renamed into place, so readers never see half a
    table. Keys must be integers; they are stored as int64. A folder that already holds a table is
    refused (hps.StorageError) unless `overwrite=True`, as `hps convert` refuses without `--force`;
    replacing it removes a stale `meta` the new table does not have (the core's write does).
    """
    folder = os.fspath(folder)
    existing = [name for name in _TABLE_FILES if os.path.exists(os.path.join(folder, name))]
    if existing and not overwrite:
        raise StorageError(f"{folder}: already holds a table ({', '.join(existing)}); "
                           "pass overwrite=True to replace it")
    key_array = np.asarray(keys)
    if key_array.dtype.kind not in "iu":
        raise InvalidArgumentError(f"keys must be integers, got dtype {key_array.dtype}")
    if key_array.dtype == np.uint64 and key_array.size and key_array.max() > np.iinfo(np.int64).max:
        raise InvalidArgumentError("keys above 9223372036854775807 do not fit the int64 'key' file")
    key_array = np.ascontiguousarray(key_array.reshape(-1), dtype=np.int64)
    row_array = np.asarray(rows)
    if row_array.ndim != 2 or row_array.shape[0] != key_array.size or row_array.shape[1] == 0:
        raise InvalidArgumentError(f"rows must have shape [{key_array.size}, D] with D > 0, got {row_array.shape}")
    row_array = np.ascontiguousarray(row_array, dtype=np.float32)
    meta_address = 0
    if meta is not None:
        meta_array = np.ascontiguousarray(np.asarray(meta).reshape(-1), dtype=np.int64)
        if meta_array.size != key_array.size:
            raise InvalidArgumentError(f"meta must have {key_array.size} entries, got {meta_array.size}")
        meta_address = meta_array.ctypes.data
    _core.write_table(folder, key_array.ctypes.data, row_array.ctypes.data, key_array.size,
                      row_array.shape[1], meta_address)


def inspect_sparse_model(folder: "str | os.PathLike[str]", dim: int = 0) -> dict[str, Any]:
    """What a table folder holds: rows, dim (inferred when 0), meta presence and byte sizes.

    Raises hps.StorageError naming the file and the expected and found sizes when they disagree.
    """
    return _core.inspect(os.fspath(folder), dim)


def read_sparse_model(folder: "str | os.PathLike[str]", dim: int = 0, *, first: int = 0,
                      count: Optional[int] = None, with_meta: bool = False) -> tuple:
    """`keys, rows` (int64 [N], float32 [N, D]) of a table folder, or of rows [first, first + count):
    the inverse of `write_sparse_model(folder, keys, rows)`. With `with_meta=True`:
    `keys, rows, meta` (meta int64 [N], or None when the folder has no `meta` file)."""
    info = inspect_sparse_model(folder, dim)
    if count is None:
        count = info["rows"] - first
    if first < 0 or count < 0 or first + count > info["rows"]:
        raise InvalidArgumentError(f"rows [{first}, {first + count}) are outside the table's {info['rows']} rows")
    keys = np.empty(count, dtype=np.int64)
    rows = np.empty((count, info["dim"]), dtype=np.float32)
    meta = np.empty(count, dtype=np.int64) if info["has_meta"] and with_meta else None
    _core.read_table(os.fspath(folder), info["dim"], first, count, keys.ctypes.data, rows.ctypes.data,
                     meta.ctypes.data if meta is not None else 0)
    return (keys, rows, meta) if with_meta else (keys, rows)


def write_model_config(path: "str | os.PathLike[str]", model_name: str, table_names: list, dims: list, *,
                       key64: bool = True, model_keys: Optional[dict] = None,
                       server_keys: Optional[dict] = None) -> str:
    """Writes an hps config serving one model whose tables are the folders `table_names` (relative to
    the config's folder, one row width in `dims` each), atomically, and validates it.

    `model_keys` are added to the model's entry (e.g. gpucache), `server_keys` to the top level (e.g.
    volatile_db). A config that would not load raises ConfigError and is still written, so its
    error can be read next to it. Returns the config's absolute path. The migration tools of every
    adapter (hps.torch, hps.tf, hps.onnx) write their configs through this one function.
    """
    import json

    if len(table_names) != len(dims):
        raise InvalidArgumentError(f"{len(table_names)} table names but {len(dims)} row widths")
    entry: dict[str, Any] = {
        "model": model_name,
        "sparse_files": list(table_names),
        "embedding_table_names": list(table_names),
        "embedding_vecsize_per_table": [int(d) for d in dims],
        "default_value_for_each_table": [0.0] * len(table_names),
    }
    entry.update(model_keys or {})
    config = {"supportlonglong": bool(key64), **(server_keys or {}), "models": [entry]}
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
    from .config import Config

    Config(path)  # refuse a config that would not load (e.g. a misspelt model key)
    return os.path.abspath(path)
