"""The `stream` argument of device lookups: what a caller may pass, read into a raw cudaStream_t.

Accepted:
- None: no stream given; the array's adapter decides (see hps.array_adapters);
- an int: a cudaStream_t as an integer (0 and 1 name the legacy default stream, 2 the per-thread
  default stream, as in CUDA); bool is refused (True is not a stream);
- an object with `__cuda_stream__` (the CUDA stream protocol of cuda.core and others): a method
  (or, in early versions of the protocol, an attribute) giving `(version, handle)`, version 0.
"""

from __future__ import annotations

import numbers
from typing import Any, Optional

from .errors import InvalidArgumentError

__all__ = ["stream_handle", "STREAM_PROTOCOL_VERSION"]

STREAM_PROTOCOL_VERSION = 0  # the only version of `__cuda_stream__` so far

_HINT = ("pass an int cudaStream_t (torch: stream.cuda_stream, CuPy: stream.ptr), an object with "
         "__cuda_stream__, or None")


def stream_handle(stream: Any) -> Optional[int]:
    """The raw cudaStream_t `stream` names, or None when it is None."""
    if stream is None:
        return None
    if isinstance(stream, numbers.Integral) and not isinstance(stream, bool):
        return _checked(int(stream), "stream")
    protocol = getattr(stream, "__cuda_stream__", None)
    if protocol is None:
        raise InvalidArgumentError(f"stream must name a CUDA stream; got {type(stream).__name__} {stream!r}: {_HINT}")
    answer = protocol() if callable(protocol) else protocol
    if not (isinstance(answer, tuple) and len(answer) == 2):
        raise InvalidArgumentError(f"__cuda_stream__ of {type(stream).__name__} must give (version, handle), "
                                   f"got {answer!r}")
    version, handle = answer
    if version != STREAM_PROTOCOL_VERSION:
        raise InvalidArgumentError(f"__cuda_stream__ of {type(stream).__name__} has version {version!r}; "
                                   f"hps reads version {STREAM_PROTOCOL_VERSION}")
    if not isinstance(handle, numbers.Integral) or isinstance(handle, bool):
        raise InvalidArgumentError(f"__cuda_stream__ of {type(stream).__name__} gave handle {handle!r}, "
                                   "expected an int cudaStream_t")
    return _checked(int(handle), "__cuda_stream__ handle")


def _checked(handle: int, what: str) -> int:
    if handle < 0 or handle >= 1 << 64:
        raise InvalidArgumentError(f"{what} must be a cudaStream_t in [0, 2**64), got {handle}")
    return handle
