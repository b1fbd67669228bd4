"""The two CUDA driver calls the generic array path needs, through ctypes (libcuda.so.1).

- which device a pointer lives on (the CUDA array interface does not say);
- making the lookup's stream wait, on the device, for the producer's stream (the interface's
  `stream` field), without blocking the host: an event recorded on one, waited for by the other.

The driver is loaded on first use, never at `import hps`; torch and CuPy arrays never come here.
Stream handles are the runtime's cudaStream_t values, which the driver takes as they are (1 and 2
are the legacy and per-thread default streams in both APIs).
"""

from __future__ import annotations

import ctypes
import threading
from typing import Optional

from .errors import BackendUnavailableError, InvalidArgumentError

__all__ = ["pointer_device", "stream_wait"]

CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL = 9
CU_EVENT_DISABLE_TIMING = 2

_lock = threading.Lock()
_driver: Optional[ctypes.CDLL] = None


def _load() -> ctypes.CDLL:
    global _driver
    with _lock:
        if _driver is None:
            try:
                driver = ctypes.CDLL("libcuda.so.1")
            except OSError as error:
                raise BackendUnavailableError(f"device arrays need the CUDA driver, and libcuda.so.1 cannot be "
                                              f"loaded here ({error})") from None
            _check(driver, driver.cuInit(0), "cuInit")
            _driver = driver
    return _driver


def _check(driver: ctypes.CDLL, status: int, call: str, error: type = BackendUnavailableError) -> None:
    if status != 0:
        name = ctypes.c_char_p()
        driver.cuGetErrorName(status, ctypes.byref(name))
        raise error(f"{call} failed: {(name.value or b'CUDA error').decode()} ({status})")


def pointer_device(address: int, what: str = "keys") -> int:
    """The ordinal of the CUDA device that holds `address`."""
    driver = _load()
    ordinal = ctypes.c_int(-1)
    status = driver.cuPointerGetAttribute(ctypes.byref(ordinal), CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
                                          ctypes.c_uint64(address))
    _check(driver, status, f"{what}: cuPointerGetAttribute(0x{address:x}) (is it CUDA memory?)", InvalidArgumentError)
    return ordinal.value


def stream_wait(device: int, consumer: int, producer: int) -> None:
    """Work queued on `consumer` from now on starts after the work queued on `producer` so far."""
    driver = _load()
    context = ctypes.c_void_p()
    _check(driver, driver.cuDevicePrimaryCtxRetain(ctypes.byref(context), device), "cuDevicePrimaryCtxRetain")
    try:
        _check(driver, driver.cuCtxPushCurrent_v2(context), "cuCtxPushCurrent")
        try:
            event = ctypes.c_void_p()
            _check(driver, driver.cuEventCreate(ctypes.byref(event), CU_EVENT_DISABLE_TIMING), "cuEventCreate")
            try:
                _check(driver, driver.cuEventRecord(event, ctypes.c_void_p(producer)), "cuEventRecord(producer stream)")
                _check(driver, driver.cuStreamWaitEvent(ctypes.c_void_p(consumer), event, 0),
                       "cuStreamWaitEvent(lookup stream)")
            finally:
                driver.cuEventDestroy_v2(event)  # released once the wait completes; no host wait here
        finally:
            driver.cuCtxPopCurrent_v2(ctypes.byref(ctypes.c_void_p()))
    finally:
        driver.cuDevicePrimaryCtxRelease_v2(device)
