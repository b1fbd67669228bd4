"""ArrayView: what hps reads from a foreign array (CUDA array interface or DLPack), and the checks
every view of keys or rows goes through."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ._arrays import KEY_CODES
from .errors import InvalidArgumentError, KeyTypeError

__all__ = ["ArrayView", "c_contiguous", "key_code_of", "check_rows"]


@dataclass
class ArrayView:
    """A borrowed view of an array's memory. `keepalive` must outlive every use of `address`."""
    address: int
    dtype: np.dtype
    shape: tuple
    readonly: bool
    device: Optional[int] = None  # device ordinal when the protocol says (DLPack); None: ask the driver
    device_type: Optional[int] = None  # DLPack's DLDeviceType (DLPack only)
    stream: Optional[int] = None  # the producer's stream (CAI v3 `stream`); None: none given
    keepalive: Any = None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


def c_contiguous(shape: tuple, strides: Optional[tuple], itemsize: int) -> bool:
    """Whether byte `strides` describe a C-contiguous layout of `shape` (None means C-contiguous).

    A dimension of extent 1 may have any stride (libraries report different ones), and an empty
    array is contiguous whatever its strides."""
    if strides is None:
        return True
    if len(strides) != len(shape):
        return False
    if any(extent == 0 for extent in shape):
        return True
    expected = itemsize
    for extent, stride in zip(reversed(shape), reversed(strides)):
        if extent != 1 and stride != expected:
            return False
        expected *= extent
    return True


def key_code_of(view: ArrayView, what: str = "keys") -> int:
    """The core's key dtype code of device keys: int32, int64, uint32 or uint64 (no widening on a device)."""
    code = KEY_CODES.get(view.dtype)
    if code is None:
        raise KeyTypeError(f"device {what} must be int32, int64, uint32 or uint64, got {view.dtype}")
    return code


def check_rows(view: ArrayView, shape: tuple, what: str = "out") -> None:
    """Refuses an output view that is not a writable float32 array of exactly `shape`."""
    problems = []
    if view.dtype != np.float32:
        problems.append(f"dtype {view.dtype}")
    if tuple(view.shape) != tuple(shape):
        problems.append(f"shape {tuple(view.shape)}")
    if view.readonly:
        problems.append("read-only memory")
    if problems:
        raise InvalidArgumentError(f"{what} must be a writable C-contiguous float32 array of shape {tuple(shape)}; "
                                   f"found {', '.join(problems)}")
