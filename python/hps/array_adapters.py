"""How hps.HPS takes arrays in CUDA memory: one adapter per array library, plus the generic protocols.

`HPS.lookup` asks `adapter_for(keys)` what `keys` is, once per Python type (cached):

1. an adapter registered for the type (or a base class): `register_array_adapter(adapter)`;
2. else, the first time a type from top-level module `M` is seen, the entry point named `M` in the
   group `hps.array_adapters` is loaded (hps ships `torch` -> `hps.torch._arrays` and `cupy` ->
   `hps.cupy`), which registers its adapter; so a torch tensor works without `import hps.torch`,
   and hps itself never imports or names a framework;
3. else, a type with `__cuda_array_interface__` or `__dlpack_device__` gets `CUDA_ARRAY_PROTOCOLS`;
4. else None: a host array (NumPy, or anything `np.asarray` takes).

An adapter answers for device arrays; for arrays in host memory its `device_keys` returns None and
the host path runs (a CPU torch tensor is read with `np.asarray`).

Streams (`stream=` of HPS.lookup), the rule:
- an int cudaStream_t or an object with `__cuda_stream__`: the lookup runs on that stream. The
  generic protocols order it after the producer's work: a `__cuda_array_interface__` `stream` field
  that differs is waited for on the device (an event; the host does not block), and DLPack's
  `__dlpack__(stream=...)` makes the producer order it (CuPy arrays take this path too). The
  torch adapter leaves that ordering to the caller, as any torch op on a non-current stream does.
- None: torch (hps.torch): `torch.cuda.current_stream(keys.device)`. CuPy (hps.cupy) and any other
  `__cuda_array_interface__` array: the interface's `stream` field (CuPy's current stream); CuPy
  without it (CUPY_CUDA_ARRAY_INTERFACE_SYNC=0): `cupy.cuda.get_current_stream()`. Any other array
  without a stream field, and any DLPack-only array: an error asking for an explicit stream. hps
  never falls back to the legacy default stream on its own.
"""

from __future__ import annotations

import threading
import warnings
from importlib import metadata
from typing import Any, Callable, Optional

import numpy as np

from ._array_view import ArrayView, check_rows, key_code_of
from ._arrays import KEY_INT32, KEY_INT64, KEY_UINT32, KEY_UINT64  # noqa: F401  (for adapters: DeviceKeys.code)
from ._cuda_array_interface import parse_cuda_array_interface
from ._dlpack import DLDeviceType, parse_dlpack_capsule
from ._streams import stream_handle
from .errors import BackendUnavailableError, InvalidArgumentError

__all__ = ["ArrayAdapter", "DeviceKeys", "register_array_adapter", "adapter_for", "device_view", "stream_handle",
           "CUDA_ARRAY_PROTOCOLS", "ENTRY_POINT_GROUP", "KEY_INT32", "KEY_INT64", "KEY_UINT32", "KEY_UINT64"]

ENTRY_POINT_GROUP = "hps.array_adapters"


class DeviceKeys:
    """Keys in CUDA memory, read for one core call: where, what dtype, which device and stream."""
    __slots__ = ("address", "code", "size", "shape", "device", "stream", "keepalive")

    def __init__(self, address: int, code: int, size: int, shape: tuple, device: int, stream: int, keepalive: Any):
        self.address = address
        self.code = code  # hps::KeyDtype
        self.size = size
        self.shape = shape
        self.device = device  # -1: an empty array whose device nobody can tell (the core is not called)
        self.stream = stream  # the raw cudaStream_t the lookup runs on
        self.keepalive = keepalive  # what must stay alive while the core reads `address`


class ArrayAdapter:
    """What hps needs from one array library; subclass it and `register_array_adapter(instance)`.

    `array_types`: the types it answers for (subclasses included)."""
    array_types: tuple = ()

    def device_keys(self, keys: Any, stream: Any) -> Optional[DeviceKeys]:
        """Keys in CUDA memory (with the stream to run on, by the rule in this module's docstring),
        or None when `keys` are in host memory."""
        raise NotImplementedError

    def empty_rows(self, keys: Any, shape: tuple, on: DeviceKeys) -> tuple:
        """(rows, address): a new C-contiguous float32 array of `shape` on the keys' device."""
        raise NotImplementedError

    def rows_address(self, out: Any, shape: tuple, on: DeviceKeys) -> int:
        """The address of `out` after checking it is a writable C-contiguous float32 array of
        `shape` on the device of `on`, ready for writes on `on.stream`."""
        raise NotImplementedError

    def through_host(self, keys: Any, out: Any, lookup_host: Callable[[np.ndarray], np.ndarray]) -> Any:
        """Rows for device `keys` when the model has no GPU cache here: keys to the host,
        `lookup_host`, rows back to the keys' device (into `out` when given)."""
        raise NotImplementedError


# ---- the registry ------------------------------------------------------------------------------

_registered: dict[type, ArrayAdapter] = {}
_by_type: dict[type, Optional[ArrayAdapter]] = {np.ndarray: None}  # resolved per concrete type
_tried_entry_points: set[str] = set()
_lock = threading.Lock()
# Held while a module's adapter is loaded: another thread meeting the same array type waits for it
# instead of settling on the generic protocols (which would stay cached for the type). Reentrant: a
# loading module may meet its own arrays.
_loading = threading.RLock()


def register_array_adapter(adapter: ArrayAdapter) -> None:
    """Makes hps take `adapter.array_types` (and their subclasses) through `adapter`."""
    if not adapter.array_types:
        raise InvalidArgumentError(f"{type(adapter).__name__}.array_types names no type")
    with _lock:
        for kind in adapter.array_types:
            _registered[kind] = adapter
        _by_type.clear()  # types resolved before may now have an adapter
        _by_type[np.ndarray] = None


def adapter_for(array: Any) -> Optional[ArrayAdapter]:
    """The adapter for `array`'s type, or None for host arrays (rule in the module docstring)."""
    kind = type(array)
    try:
        return _by_type[kind]
    except KeyError:
        return _resolve(array, kind)


def _resolve(array: Any, kind: type) -> Optional[ArrayAdapter]:
    adapter = _registered_for(kind)
    if adapter is None:
        module = (kind.__module__ or "").partition(".")[0]
        if module:
            with _loading:
                if module not in _tried_entry_points:
                    _tried_entry_points.add(module)
                    _load_entry_point(module)
            adapter = _registered_for(kind)
    if adapter is None and _speaks_protocols(kind):
        adapter = CUDA_ARRAY_PROTOCOLS
    if adapter is not None:
        with _lock:
            _by_type[kind] = adapter
        return adapter
    # Not cached: a wrapper may carry the protocols as instance attributes, another instance not.
    return CUDA_ARRAY_PROTOCOLS if _speaks_protocols(array) else None


def _speaks_protocols(obj: Any) -> bool:
    return hasattr(obj, "__cuda_array_interface__") or hasattr(obj, "__dlpack_device__")


def _registered_for(kind: type) -> Optional[ArrayAdapter]:
    with _lock:
        for base in kind.__mro__:
            if base in _registered:
                return _registered[base]
    return None


def _load_entry_point(module: str) -> None:
    points = metadata.entry_points()
    points = points.select(group=ENTRY_POINT_GROUP) if hasattr(points, "select") else points.get(ENTRY_POINT_GROUP, ())
    for point in points:
        if point.name == module:
            try:
                point.load()  # the module registers its adapter when imported
            except Exception as error:  # a broken adapter must not hide the generic protocols
                warnings.warn(f"hps: the array adapter for {module!r} ({point.value}) failed to load, so its "
                              f"arrays go through the generic CUDA array protocols: {error}", RuntimeWarning)


# ---- the generic protocols: __cuda_array_interface__ and DLPack ------------------------------------

def device_view(array: Any, stream: Any, what: str = "keys",
                default_stream: Optional[Callable[[], int]] = None) -> Optional[tuple]:
    """(ArrayView, lookup stream) of an array in CUDA memory, or None for a host array.

    The stream: `stream` if given (after which the view's producer is ordered before it), else the
    array's own `__cuda_array_interface__` stream, else `default_stream()` if given, else an error.
    """
    iface = getattr(array, "__cuda_array_interface__", None)
    if iface is not None:
        view = parse_cuda_array_interface(iface, what)
        view.device = _device_of(array, view, what)
        view.keepalive = array
        lookup = stream_handle(stream)
        if lookup is None:
            lookup = view.stream if view.stream is not None else (default_stream() if default_stream else None)
            if lookup is None:
                raise _no_stream(array, what, "its __cuda_array_interface__ has no stream field")
        elif view.stream is not None and view.stream != lookup and view.size and view.device >= 0:
            from ._cuda_driver import stream_wait

            stream_wait(view.device, lookup, view.stream)
        return view, lookup
    dlpack_device = getattr(array, "__dlpack_device__", None)
    if dlpack_device is None:
        return None
    device_type, device_id = dlpack_device()
    if device_type == DLDeviceType.kDLCPU:
        return None
    _check_cuda(device_type, what)
    lookup = stream_handle(stream)
    if lookup is None:
        if default_stream is None:
            raise _no_stream(array, what, "DLPack carries no stream")
        lookup = default_stream()
    view = parse_dlpack_capsule(_export(array, 1 if lookup == 0 else lookup), what)  # DLPack: 0 is disallowed
    if (view.device_type, view.device) != (device_type, device_id):
        raise InvalidArgumentError(f"{what}: __dlpack_device__ says ({DLDeviceType.name(device_type)}, {device_id}) "
                                   f"but the capsule holds ({DLDeviceType.name(view.device_type)}, {view.device})")
    return view, lookup


def _export(array: Any, stream: int) -> Any:
    """The DLPack capsule of `array`, its producer ordering its work before `stream`; versioned when
    the producer speaks DLPack 1.x (it then says whether the memory is read-only)."""
    try:
        return array.__dlpack__(stream=stream, max_version=(1, 0))
    except TypeError:  # a producer from before DLPack 1.0 has no max_version
        return array.__dlpack__(stream=stream)


def _device_of(array: Any, view: ArrayView, what: str) -> int:
    """The CUDA device of a `__cuda_array_interface__` array: `__dlpack_device__` when the array
    has it (no driver call), else the driver's answer for its pointer; -1 for an empty array
    without memory."""
    dlpack_device = getattr(array, "__dlpack_device__", None)
    if dlpack_device is not None:
        device_type, device_id = dlpack_device()
        _check_cuda(device_type, what)
        return int(device_id)
    if view.address == 0:
        return -1
    from ._cuda_driver import pointer_device

    return pointer_device(view.address, what)


def _check_cuda(device_type: int, what: str) -> None:
    if device_type not in (DLDeviceType.kDLCUDA, DLDeviceType.kDLCUDAManaged):
        raise InvalidArgumentError(f"{what} are in {DLDeviceType.name(device_type)} memory; hps takes host arrays "
                                   "and CUDA device arrays (kDLCUDA, kDLCUDAManaged)")


def _no_stream(array: Any, what: str, why: str) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"{what} are a CUDA array of type {_type_name(array)} and {why}, so hps cannot tell which stream to run "
        "on: pass stream= (an int cudaStream_t or an object with __cuda_stream__); hps never picks the legacy "
        "default stream by itself")


def _type_name(array: Any) -> str:
    kind = type(array)
    return f"{kind.__module__}.{kind.__qualname__}"


class CudaArrayProtocols(ArrayAdapter):
    """Any array with `__cuda_array_interface__` (v2, v3) or DLPack in CUDA memory. hps allocates no
    memory for these (pass `out=`) and cannot copy them through the host."""

    def device_keys(self, keys: Any, stream: Any, default_stream: Optional[Callable[[], int]] = None):
        found = device_view(keys, stream, "keys", default_stream)
        if found is None:
            return None
        view, lookup = found
        return DeviceKeys(view.address, key_code_of(view), view.size, view.shape, view.device, lookup, view)

    def empty_rows(self, keys: Any, shape: tuple, on: DeviceKeys) -> tuple:
        raise InvalidArgumentError(
            f"out is required for keys of type {_type_name(keys)}: hps allocates rows only for array libraries "
            f"with an adapter (torch, CuPy); pass out=, a C-contiguous float32 CUDA array of shape {shape} on "
            f"device {on.device}")

    def rows_address(self, out: Any, shape: tuple, on: DeviceKeys) -> int:
        found = device_view(out, on.stream, "out")
        if found is None:
            raise InvalidArgumentError(f"out must be a CUDA array on device {on.device} like the keys, "
                                       f"found {_type_name(out)} in host memory")
        view, _ = found
        check_rows(view, shape)
        if view.device != on.device and view.size:
            raise InvalidArgumentError(f"out must be on CUDA device {on.device} like the keys, found device {view.device}")
        return view.address

    def through_host(self, keys: Any, out: Any, lookup_host: Callable[[np.ndarray], np.ndarray]) -> Any:
        raise BackendUnavailableError(
            f"this model has no GPU cache here (gpucache is false, or no CUDA device or build), and hps copies "
            f"device arrays through the host only for libraries with an adapter (torch, CuPy); keys of type "
            f"{_type_name(keys)}: pass them as a host array")


CUDA_ARRAY_PROTOCOLS = CudaArrayProtocols()
