"""CuPy arrays in hps.HPS: the array adapter for cupy.ndarray.

Registered when imported: by hps itself the first time it meets a CuPy array (the
`hps.array_adapters` entry point `cupy`), or by `import hps.cupy`. Keys are read through the
generic `__cuda_array_interface__` path; what CuPy adds is its current stream (when the interface
carries no `stream` field: CUPY_CUDA_ARRAY_INTERFACE_SYNC=0), rows allocated as CuPy arrays, and
copies through the host for models without a GPU cache.
"""

from __future__ import annotations

from typing import Any, Callable

import cupy
import numpy as np

from hps.array_adapters import CudaArrayProtocols, DeviceKeys, register_array_adapter

__all__ = ["CupyArrays"]


def _current_stream() -> int:
    return int(cupy.cuda.get_current_stream().ptr)


class CupyArrays(CudaArrayProtocols):
    array_types = (cupy.ndarray,)

    def device_keys(self, keys: Any, stream: Any, default_stream: Any = None) -> Any:
        return super().device_keys(keys, stream, _current_stream)

    def empty_rows(self, keys: Any, shape: tuple, on: DeviceKeys) -> tuple:
        with cupy.cuda.Device(on.device):
            rows = cupy.empty(shape, dtype=cupy.float32)
        return rows, int(rows.data.ptr)

    def through_host(self, keys: Any, out: Any, lookup_host: Callable[[np.ndarray], np.ndarray]) -> Any:
        # The copies run on CuPy's current stream, ordered after the work that made the keys.
        rows = lookup_host(cupy.asnumpy(keys))
        with cupy.cuda.Device(keys.device.id):
            if out is None:
                return cupy.asarray(rows)
            out.set(rows)
            return out


ADAPTER = CupyArrays()
register_array_adapter(ADAPTER)
