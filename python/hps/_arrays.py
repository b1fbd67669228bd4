"""Key and row arrays handed to the core: dtype checks, zero-copy views, device arrays (private)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from .errors import InvalidArgumentError, KeyTypeError

# Codes of hps::KeyDtype.
KEY_INT32, KEY_INT64, KEY_UINT32, KEY_UINT64 = 0, 1, 2, 3
_KEY_CODES = {np.dtype(np.int32): KEY_INT32, np.dtype(np.int64): KEY_INT64,
              np.dtype(np.uint32): KEY_UINT32, np.dtype(np.uint64): KEY_UINT64}
# Narrower integers widen losslessly to a width the core takes.
_WIDEN = {np.dtype(np.int8): np.int32, np.dtype(np.int16): np.int32,
          np.dtype(np.uint8): np.uint32, np.dtype(np.uint16): np.uint32}


def _check_integer(dtype: np.dtype, what: str) -> None:
    if dtype.kind not in "iu" or dtype == np.dtype(bool):
        raise KeyTypeError(f"{what} must be an integer array, got dtype {dtype}")


def host_keys(keys: Any, what: str = "keys") -> tuple[np.ndarray, int]:
    """A C-contiguous integer view of `keys` (no copy when it already is one) and its dtype code."""
    array = np.asarray(keys)
    _check_integer(array.dtype, what)
    if array.dtype in _WIDEN:
        array = array.astype(_WIDEN[array.dtype])
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("="))
    if not array.flags.c_contiguous:  # (np.ascontiguousarray would also turn a 0-d array into 1-d)
        array = array.copy(order="C")
    return array, _KEY_CODES[np.dtype(array.dtype.name)]


def host_rows(rows: Any, count: int, dim: int, what: str = "rows") -> np.ndarray:
    """`rows` as a C-contiguous float32 array of shape [count, dim] (no copy when it already is)."""
    array = np.asarray(rows)
    if array.dtype.kind not in "fiu":
        raise InvalidArgumentError(f"{what} must be numeric, got dtype {array.dtype}")
    if array.size != count * dim or (array.ndim >= 1 and array.shape[-1] != dim and count > 0):
        raise InvalidArgumentError(
            f"{what} must have shape [..., {dim}] with {count} rows to match the keys, got shape {array.shape}")
    return np.ascontiguousarray(array, dtype=np.float32).reshape(count, dim)


@dataclass
class DeviceKeys:
    """Keys in CUDA memory, with what is needed to answer on the same device and stream."""
    address: int
    dtype_code: int
    shape: tuple
    device: int
    stream: int
    allocate_rows: Callable[[tuple], Any]  # shape -> float32 array on the same device
    keepalive: Any


def torch_key_code(keys: Any) -> int:
    """The key dtype code of a torch tensor of keys (int32 or int64 only)."""
    name = str(keys.dtype)
    code = {"torch.int32": KEY_INT32, "torch.int64": KEY_INT64}.get(name)
    if code is None:
        raise KeyTypeError(f"keys must be an int32 or int64 tensor, got {keys.dtype}")
    return code


def is_torch_cuda(keys: Any) -> bool:
    """Whether `keys` is a torch tensor in CUDA memory (without importing torch)."""
    torch = __import__("sys").modules.get("torch")
    return torch is not None and isinstance(keys, torch.Tensor) and keys.is_cuda


def _interface_device_keys(keys: Any, stream: Optional[int]) -> Optional[DeviceKeys]:
    iface = getattr(keys, "__cuda_array_interface__", None)
    if iface is None:
        return None
    dtype = np.dtype(iface["typestr"])
    _check_integer(dtype, "keys")
    if dtype not in _KEY_CODES:
        raise KeyTypeError(f"device keys must be int32, int64, uint32 or uint64, got {dtype}")
    shape = tuple(iface["shape"])
    strides = iface.get("strides")
    if strides is not None and strides != tuple(np.empty(shape, dtype).strides):
        raise InvalidArgumentError("device keys must be C-contiguous")
    module = type(keys).__module__.split(".")[0]
    if module != "cupy":
        raise InvalidArgumentError(f"device arrays from {module!r} are not supported; pass a torch tensor or a "
                                   "CuPy array")
    import cupy

    device = int(keys.device.id)
    if stream is None:
        stream = int(cupy.cuda.get_current_stream().ptr)

    def allocate(shape: tuple) -> Any:
        with cupy.cuda.Device(device):
            return cupy.empty(shape, dtype=cupy.float32)

    return DeviceKeys(int(iface["data"][0]), _KEY_CODES[dtype], shape, device, int(stream), allocate, keys)


def device_keys(keys: Any, stream: Optional[int] = None) -> Optional[DeviceKeys]:
    """DeviceKeys when `keys` is a CUDA array other than a torch tensor (CuPy), else None.

    torch tensors take hps.HPS's own fast path (is_torch_cuda)."""
    return _interface_device_keys(keys, stream)
