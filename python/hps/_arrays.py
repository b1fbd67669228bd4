"""Host key and row arrays handed to the core: dtype checks, zero-copy views (private).

Device arrays: hps.array_adapters."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InvalidArgumentError, KeyTypeError

# Codes of hps::KeyDtype.
KEY_INT32, KEY_INT64, KEY_UINT32, KEY_UINT64 = 0, 1, 2, 3
KEY_CODES = {np.dtype(np.int32): KEY_INT32, np.dtype(np.int64): KEY_INT64,
             np.dtype(np.uint32): KEY_UINT32, np.dtype(np.uint64): KEY_UINT64}
# Keys per call: more would need 8 bytes and a row each of memory that no serving batch uses, and
# is far more likely a broadcast or a unit mistake; refused before anything is allocated.
MAX_KEYS_PER_CALL = 2**31 - 1
# Narrower integers widen losslessly to a width the core takes.
_WIDEN = {np.dtype(np.int8): np.int32, np.dtype(np.int16): np.int32,
          np.dtype(np.uint8): np.uint32, np.dtype(np.uint16): np.uint32}


def _check_integer(dtype: np.dtype, what: str) -> None:
    if dtype.kind not in "iu" or dtype == np.dtype(bool):
        raise KeyTypeError(f"{what} must be an integer array, got dtype {dtype}")


def host_keys(keys: Any, what: str = "keys") -> tuple[np.ndarray, int]:
    """A C-contiguous integer view of `keys` (no copy when it already is one) and its dtype code."""
    try:
        array = np.asarray(keys)
    except ValueError as error:  # a ragged list: NumPy's own words would not name the argument
        raise InvalidArgumentError(f"{what} must be an integer array or a rectangular list of integers; "
                                   f"got {type(keys).__name__} that is not one ({error})") from None
    if array.size > MAX_KEYS_PER_CALL:  # before any copy or the rows are allocated
        raise InvalidArgumentError(f"{what}: {array.size:,} keys in one call; at most {MAX_KEYS_PER_CALL:,} "
                                   "(2^31 - 1): split the batch")
    if array.size == 0 and not isinstance(keys, np.ndarray) and array.dtype.kind == "f":
        array = array.astype(np.int64)  # [] is no keys, not float64 keys
    _check_integer(array.dtype, what)
    if array.dtype in _WIDEN:
        array = array.astype(_WIDEN[array.dtype])
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("="))
    if not array.flags.c_contiguous:  # (np.ascontiguousarray would also turn a 0-d array into 1-d)
        array = array.copy(order="C")
    return array, KEY_CODES[np.dtype(array.dtype.name)]


def host_rows(rows: Any, count: int, dim: int, what: str = "rows") -> np.ndarray:
    """`rows` as a C-contiguous float32 array of shape [count, dim] (no copy when it already is)."""
    array = np.asarray(rows)
    if array.dtype.kind not in "fiu":
        raise InvalidArgumentError(f"{what} must be numeric, got dtype {array.dtype}")
    if array.size != count * dim or (array.ndim >= 1 and array.shape[-1] != dim and count > 0):
        raise InvalidArgumentError(
            f"{what} must have shape [..., {dim}] with {count} rows to match the keys, got shape {array.shape}")
    return np.ascontiguousarray(array, dtype=np.float32).reshape(count, dim)
