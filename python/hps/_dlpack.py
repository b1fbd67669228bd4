"""Reads a DLPack capsule (`obj.__dlpack__(...)`) into an ArrayView, with ctypes (no C code).

https://dmlc.github.io/dlpack/latest/python_spec.html. Both capsule kinds are read: "dltensor"
(DLManagedTensor) and "dltensor_versioned" (DLManagedTensorVersioned, DLPack >= 1.0, which adds a
read-only flag). The capsule is not renamed "used_...": hps only borrows the memory for one call,
so the capsule's own destructor calls the producer's deleter when the view is dropped, as the
spec provides for capsules that were never consumed.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from ._array_view import ArrayView, c_contiguous
from .errors import InvalidArgumentError

__all__ = ["parse_dlpack_capsule", "DLDeviceType", "DLTensor", "DLManagedTensor", "DLManagedTensorVersioned"]


class DLDeviceType:
    """The device types hps names in messages (dlpack.h's DLDeviceType)."""
    kDLCPU = 1
    kDLCUDA = 2
    kDLCUDAHost = 3
    kDLCUDAManaged = 13
    NAMES = {1: "kDLCPU", 2: "kDLCUDA", 3: "kDLCUDAHost", 4: "kDLOpenCL", 7: "kDLVulkan", 8: "kDLMetal",
             9: "kDLVPI", 10: "kDLROCM", 11: "kDLROCMHost", 12: "kDLExtDev", 13: "kDLCUDAManaged",
             14: "kDLOneAPI", 15: "kDLWebGPU", 16: "kDLHexagon", 17: "kDLMAIA"}

    @classmethod
    def name(cls, code: int) -> str:
        return cls.NAMES.get(code, f"device type {code}")


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p)]


class DLPackVersion(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32)]


class DLManagedTensorVersioned(ctypes.Structure):
    _fields_ = [("version", DLPackVersion), ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p),
                ("flags", ctypes.c_uint64), ("dl_tensor", DLTensor)]


READ_ONLY_FLAG = 1  # DLPACK_FLAG_BITMASK_READ_ONLY
_DTYPE_KINDS = {0: "i", 1: "u", 2: "f"}  # kDLInt, kDLUInt, kDLFloat: the codes hps can take

_get_name = ctypes.pythonapi.PyCapsule_GetName
_get_name.restype, _get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
_get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_get_pointer.restype, _get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]


def parse_dlpack_capsule(capsule: Any, what: str = "keys") -> ArrayView:
    """An ArrayView of the tensor in `capsule` (which it keeps alive); errors name what is wrong."""
    if type(capsule).__name__ != "PyCapsule":  # (PyCapsule_CheckExact is a macro, not a symbol)
        raise InvalidArgumentError(f"{what}: __dlpack__ must return a PyCapsule, got {type(capsule).__name__}")
    name = _get_name(capsule)
    if name == b"dltensor_versioned":
        managed = DLManagedTensorVersioned.from_address(_get_pointer(capsule, name))
        if managed.version.major != 1:
            raise InvalidArgumentError(f"{what}: DLPack capsule has version {managed.version.major}."
                                       f"{managed.version.minor}; hps reads major version 1")
        tensor, readonly = managed.dl_tensor, bool(managed.flags & READ_ONLY_FLAG)
    elif name == b"dltensor":
        tensor, readonly = DLManagedTensor.from_address(_get_pointer(capsule, name)).dl_tensor, False
    else:
        raise InvalidArgumentError(f"{what}: DLPack capsule is named {name!r}; expected 'dltensor' or "
                                   "'dltensor_versioned' (a capsule may be consumed only once)")
    dtype = _numpy_dtype(tensor.dtype, what)
    shape = tuple(tensor.shape[i] for i in range(tensor.ndim))
    strides = None if not tensor.strides else tuple(tensor.strides[i] * dtype.itemsize for i in range(tensor.ndim))
    if not c_contiguous(shape, strides, dtype.itemsize):
        raise InvalidArgumentError(f"{what} must be C-contiguous: DLPack tensor of shape {shape} has strides "
                                   f"{tuple(s // dtype.itemsize for s in strides)} (in elements)")
    address = (tensor.data or 0) + tensor.byte_offset
    return ArrayView(address, dtype, shape, readonly, device=tensor.device.device_id,
                     device_type=tensor.device.device_type, keepalive=capsule)


def _numpy_dtype(dl: DLDataType, what: str) -> np.dtype:
    kind = _DTYPE_KINDS.get(dl.code)
    if kind is None or dl.lanes != 1 or dl.bits not in (8, 16, 32, 64):
        raise InvalidArgumentError(f"{what}: DLPack dtype (code {dl.code}, bits {dl.bits}, lanes {dl.lanes}) "
                                   "is not an integer or float type hps takes")
    return np.dtype(f"{kind}{dl.bits // 8}")
