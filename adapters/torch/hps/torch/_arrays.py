"""torch tensors in hps.HPS: the array adapter that hps.HPS.lookup uses for torch.Tensor.

Registered when this module is imported: by `import hps.torch`, or by hps itself the first time
it meets a torch tensor (the `hps.array_adapters` entry point `torch`). The CUDA path is the fast
one the op `torch.ops.hps.lookup` takes: a few attribute reads, one allocation, one core call.
Stream: the given one, else `torch.cuda.current_stream(keys.device)`, like any torch op.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from hps import InvalidArgumentError, KeyTypeError
from hps.array_adapters import KEY_INT32, KEY_INT64, ArrayAdapter, DeviceKeys, register_array_adapter, stream_handle

__all__ = ["TorchArrays", "current_stream"]

_KEY_CODES = {torch.int32: KEY_INT32, torch.int64: KEY_INT64}
# No Stream object: a few microseconds less per call than torch.cuda.current_stream(device).cuda_stream.
_raw_current_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None)


def current_stream(device: int) -> int:
    """The raw cudaStream_t of torch's current stream on `device`."""
    if _raw_current_stream is not None:
        return _raw_current_stream(device)
    return torch.cuda.current_stream(device).cuda_stream


class TorchArrays(ArrayAdapter):
    array_types = (torch.Tensor,)

    def device_keys(self, keys: torch.Tensor, stream: Any) -> Any:
        if not keys.is_cuda:
            return None  # CPU tensors take the host path (np.asarray reads them without a copy)
        code = _KEY_CODES.get(keys.dtype)
        if code is None:
            raise KeyTypeError(f"keys must be an int32 or int64 tensor, got {keys.dtype}")
        if not keys.is_contiguous():
            keys = keys.contiguous()
        device = keys.get_device()
        handle = current_stream(device) if stream is None else stream_handle(stream)
        return DeviceKeys(keys.data_ptr(), code, keys.numel(), tuple(keys.shape), device, handle, keys)

    def empty_rows(self, keys: torch.Tensor, shape: tuple, on: DeviceKeys) -> tuple:
        rows = torch.empty(shape, dtype=torch.float32, device=keys.device)
        return rows, rows.data_ptr()

    def rows_address(self, out: Any, shape: tuple, on: DeviceKeys) -> int:
        if not isinstance(out, torch.Tensor):
            raise InvalidArgumentError(f"out must be a torch tensor like the keys, found {type(out).__name__}")
        if out.dtype != torch.float32 or not out.is_contiguous() or tuple(out.shape) != shape:
            raise InvalidArgumentError(f"out must be a contiguous float32 tensor of shape {shape}; found "
                                       f"{out.dtype} of shape {tuple(out.shape)}"
                                       f"{'' if out.is_contiguous() else ', not contiguous'}")
        if out.get_device() != on.device:
            raise InvalidArgumentError(f"out must be on cuda:{on.device} like the keys, found {out.device}")
        return out.data_ptr()

    def through_host(self, keys: torch.Tensor, out: Any, lookup_host: Callable[[np.ndarray], np.ndarray]) -> Any:
        # The copies run on torch's current stream, ordered after the work that made the keys.
        rows = torch.from_numpy(lookup_host(keys.cpu().numpy()))
        if out is None:
            return rows.to(keys.device)
        out.copy_(rows)
        return out


ADAPTER = TorchArrays()
register_array_adapter(ADAPTER)
