"""Reads a `__cuda_array_interface__` dict (versions 2 and 3 of the Numba spec) into an ArrayView.

https://numba.readthedocs.io/en/stable/cuda/cuda_array_interface.html. hps takes C-contiguous
arrays without a mask; the v3 `stream` field is the producer's stream, which the consumer must
order its work after (hps.array_adapters does). The interface carries no device: the caller asks
`__dlpack_device__` or the driver.
"""

from __future__ import annotations

import numbers
from typing import Any, Mapping

import numpy as np

from ._array_view import ArrayView, c_contiguous
from .errors import InvalidArgumentError

__all__ = ["parse_cuda_array_interface", "SUPPORTED_VERSIONS"]

SUPPORTED_VERSIONS = (2, 3)


def parse_cuda_array_interface(iface: Any, what: str = "keys") -> ArrayView:
    """An ArrayView of the memory `iface` describes; InvalidArgumentError naming what is wrong."""
    def bad(message: str) -> InvalidArgumentError:
        return InvalidArgumentError(f"{what}: __cuda_array_interface__ {message}")

    if not isinstance(iface, Mapping):
        raise bad(f"must be a dict, got {type(iface).__name__}")
    version = iface.get("version")
    if version not in SUPPORTED_VERSIONS:
        raise bad(f"version must be one of {SUPPORTED_VERSIONS}, found {version!r}")
    shape = iface.get("shape")
    if not (isinstance(shape, tuple) and all(_is_int(e) and e >= 0 for e in shape)):
        raise bad(f"shape must be a tuple of non-negative ints, found {shape!r}")
    shape = tuple(int(e) for e in shape)
    try:
        dtype = np.dtype(iface.get("typestr"))
    except TypeError:
        raise bad(f"typestr {iface.get('typestr')!r} is not a NumPy type string") from None
    if dtype.byteorder == ">":
        raise bad(f"typestr {iface['typestr']!r} is big-endian; CUDA memory is little-endian")
    dtype = dtype.newbyteorder("=")
    data = iface.get("data")
    if not (isinstance(data, tuple) and len(data) == 2 and _is_int(data[0]) and isinstance(data[1], bool)):
        raise bad(f"data must be (pointer, read_only), found {data!r}")
    address, readonly = int(data[0]), data[1]
    size = int(np.prod(shape, dtype=np.int64))
    if address == 0 and size > 0:
        raise bad(f"data pointer is 0 for {size} elements")
    if iface.get("mask") is not None:
        raise bad("has a mask; hps takes unmasked arrays")
    strides = iface.get("strides")
    if strides is not None:
        if not (isinstance(strides, tuple) and all(_is_int(s) for s in strides)):
            raise bad(f"strides must be None or a tuple of ints, found {strides!r}")
        if not c_contiguous(shape, strides, dtype.itemsize):
            raise InvalidArgumentError(f"{what} must be C-contiguous: shape {shape} of {dtype} wants strides "
                                       f"{_c_strides(shape, dtype.itemsize)} (or None), found {strides}")
    stream = iface.get("stream")  # absent in version 2: nothing to wait for
    if stream is not None:
        if not _is_int(stream):
            raise bad(f"stream must be None or an int, found {stream!r}")
        if stream == 0:  # the spec forbids 0: it is ambiguous between the legacy and per-thread default
            raise bad("stream is 0, which the spec disallows (use 1 for the legacy default stream, "
                      "2 for the per-thread default stream)")
        stream = int(stream)
    return ArrayView(address, dtype, shape, readonly, stream=stream)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _c_strides(shape: tuple, itemsize: int) -> tuple:
    strides, step = [], itemsize
    for extent in reversed(shape):
        strides.append(step)
        step *= max(extent, 1)
    return tuple(reversed(strides))
