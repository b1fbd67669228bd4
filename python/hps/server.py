"""hps.HPS: the parameter server as Python sees it."""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any, Optional, Union

import numpy as np

from . import _core
from ._arrays import device_keys, host_keys, host_rows, is_torch_cuda, torch_key_code
from ._progress import LoadProgress
from .config import Config, ConfigLike
from .errors import InvalidArgumentError

__all__ = ["HPS"]

TableKey = Union[int, str]


class HPS:
    """A hierarchical parameter server over one configuration.

    `HPS(config)` builds every tier and loads the table files (with progress bars when
    `progress` is true, or by default when stderr is a terminal). Lookups, updates and erasures may
    come from many threads at once; every call releases the GIL. `lookup_threads` is how many
    threads one lookup may use on the host for a large batch (or a large set of GPU cache misses):
    default min(16, cores); 1 keeps every lookup on its calling thread. Idle lookup threads poll for
    work for HPS_LOOKUP_SPIN_US microseconds (environment, read when the server is built; default
    200, 0 = sleep at once) before they sleep, since waking a sleeping thread costs tens of
    microseconds on virtual machines.

    Servers are shared: every HPS in one process on the same config file (or on equal dicts or
    Configs) uses one server, as do hps.torch layers and the C ABI; updates through one are seen by
    all. close() drops this instance's reference; the last one frees the server. A second HPS asking
    for a different `lookup_threads` than the live server runs with is an InvalidArgumentError.

    Example::

        with hps.HPS("ps.json") as ps:
            rows = ps.lookup("dlrm", 0, keys)          # keys [...] -> rows [..., D] float32
    """

    def __init__(self, config: ConfigLike, *, progress: Optional[bool] = None, lookup_threads: Optional[int] = None):
        self.config = Config(config)
        if lookup_threads is not None and (not isinstance(lookup_threads, int) or lookup_threads < 1):
            raise InvalidArgumentError(f"lookup_threads must be a positive integer, got {lookup_threads!r}")
        # One server per config per process (the core's registry): a file is named by its path, a
        # dict or Config by its normalized JSON. A live one is shared, else this call builds it.
        if isinstance(config, (str, os.PathLike)):
            path = self.config._path
        else:
            path = self.config._file() if isinstance(config, Config) else None
        observer = LoadProgress(enabled=progress)
        try:
            if path is not None:
                server = _core.Server.acquire_file(path, observer, lookup_threads or 0)
            else:
                server = _core.Server.acquire_config(self.config._core, observer, lookup_threads or 0)
        finally:
            observer.close()
        self._attach(server)

    @classmethod
    def _from_server_id(cls, server_id: str, *, progress: Optional[bool] = None) -> "HPS":
        """Another reference to the live server named `server_id` (for an absolute config file path:
        that file's server, built if none is live). Raises NotFoundError for an unknown id."""
        observer = LoadProgress(enabled=progress)
        try:
            server = _core.Server.acquire_id(server_id, observer, 0)
        finally:
            observer.close()
        self = cls.__new__(cls)
        self.config = Config(json.loads(server.config_json()))  # what the live server runs
        if os.path.isabs(server_id):
            self.config._source = self.config._path = server_id
        self._attach(server)
        return self

    def _attach(self, server: Any) -> None:
        self._server = server
        self._gpucache = {m["model"]: bool(m["gpucache"]) for m in self.config.models}
        self._devices = {m["model"]: list(m["deployed_device_list"]) for m in self.config.models}
        self._tables: dict[tuple[str, TableKey], tuple[int, int, int]] = {}
        self._tables_lock = threading.Lock()

    # ---- tables ----------------------------------------------------------------------------------

    def _resolve(self, model: str, table: TableKey) -> tuple[int, int, int]:
        key = (model, table)
        found = self._tables.get(key)
        if found is None:
            if not isinstance(model, str):
                raise InvalidArgumentError(f"model must be a model name (str), got {type(model).__name__}")
            if isinstance(table, (bool, float)) or not isinstance(table, (int, str, np.integer)):
                raise InvalidArgumentError(f"table must be a table name or index, got {table!r}")
            found = self._server.resolve(model, table if isinstance(table, str) else int(table))
            with self._tables_lock:
                self._tables[key] = found
        return found

    def _gpu_cached(self, model: str) -> bool:
        """Whether the model's tables have GPU caches here (CUDA present and `gpucache` on)."""
        return self._server.gpu_enabled and self._gpucache.get(model, False)

    def dim(self, model: str, table: TableKey) -> int:
        """Floats per row of a table."""
        return self._resolve(model, table)[2]

    @property
    def key64(self) -> bool:
        """Whether keys are 64-bit (`supportlonglong`)."""
        return self._server.key64

    @property
    def gpu_enabled(self) -> bool:
        """Whether GPU caches serve lookups of device arrays here."""
        return self._server.gpu_enabled

    # ---- lookups and updates -----------------------------------------------------------------------

    def lookup(self, model: str, table: TableKey, keys: Any, *, out: Any = None, stream: Optional[int] = None) -> Any:
        """Rows for `keys` (any integer array of shape [...]) as float32 [..., D].

        Host arrays give a NumPy array. CUDA arrays (torch tensors, CuPy arrays) give rows on the
        same device, computed on `stream` (default: the array library's current stream).
        Keys stored in no tier get the table's default row.
        """
        m, t, dim = self._resolve(model, table)
        if is_torch_cuda(keys):
            return self._lookup_torch_cuda(sys.modules["torch"], model, table, m, t, dim, keys, out, stream)
        dev = device_keys(keys, stream)
        if dev is not None:
            self._check_device(model, dev.device)
            if not self._gpu_cached(model):
                return _through_host(self, model, table, keys, out)
            n = int(np.prod(dev.shape, dtype=np.int64))
            rows = dev.allocate_rows(dev.shape + (dim,)) if out is None else out
            address = _device_address(rows, dev.shape + (dim,))
            self._server.lookup(m, t, dev.address, dev.dtype_code, n, address, dev.device, dev.stream)
            return rows
        array, code = host_keys(keys)
        if out is None:
            rows = np.empty(array.shape + (dim,), dtype=np.float32)
        else:
            rows = out
            _check_host_out(rows, array.shape + (dim,))
        self._server.lookup(m, t, array.ctypes.data, code, array.size, rows.ctypes.data)
        return rows

    def lookup_many(self, model: str, tables: "list[TableKey]", keys: "list[Any]", *,
                    out: Optional[list] = None, stream: Optional[int] = None) -> list:
        """Rows of several tables of one model in one call: `keys[i]` looked up in `tables[i]`.

        The tables run side by side (on the host over the lookup threads, on a GPU each on a stream
        of its own joined back into `stream`), so a model's many tables cost about one lookup's
        latency rather than the sum. The keys are all host arrays or all CUDA tensors of one device.
        Returns one rows array per table, as lookup() would (`out`: the arrays to fill, e.g. views
        into one tensor, each C-contiguous float32 of shape keys[i].shape + (D,)).
        """
        if len(tables) != len(keys):
            raise InvalidArgumentError(f"lookup_many: {len(tables)} tables but {len(keys)} key arrays")
        if not tables:
            return []
        resolved = [self._resolve(model, t) for t in tables]
        m = resolved[0][0]
        if out is not None and len(out) != len(keys):
            raise InvalidArgumentError(f"lookup_many: {len(keys)} key arrays but {len(out)} outputs")
        if all(is_torch_cuda(k) for k in keys):
            return self._lookup_many_torch_cuda(sys.modules["torch"], model, tables, resolved, keys, out, stream)
        if any(is_torch_cuda(k) or device_keys(k) is not None for k in keys):
            return [self.lookup(model, t, k, out=None if out is None else out[i], stream=stream)
                    for i, (t, k) in enumerate(zip(tables, keys))]
        arrays = [host_keys(k) for k in keys]
        arrays = _one_key_dtype(arrays)
        if out is None:
            outs = [np.empty(a.shape + (dim,), dtype=np.float32) for (a, _), (_, _, dim) in zip(arrays, resolved)]
        else:
            outs = list(out)
            for o, (a, _), (_, _, dim) in zip(outs, arrays, resolved):
                _check_host_out(o, a.shape + (dim,))
        self._server.lookup_many(m, [t for _, t, _ in resolved], [a.ctypes.data for a, _ in arrays], arrays[0][1],
                                 [a.size for a, _ in arrays], [o.ctypes.data for o in outs])
        return outs

    def _lookup_many_torch_cuda(self, torch, model, tables, resolved, keys, out, stream):
        device = keys[0].get_device()
        if any(k.get_device() != device for k in keys):
            raise InvalidArgumentError("lookup_many: every key tensor must be on the same CUDA device")
        self._check_device(model, device)
        if not self._gpu_cached(model):
            return [_through_host(self, model, t, k, None if out is None else out[i])
                    for i, (t, k) in enumerate(zip(tables, keys))]
        codes = {torch_key_code(k) for k in keys}  # refuses other dtypes
        if len(codes) != 1:  # the core takes one key dtype per call; int64 names the same keys
            keys = [k.to(torch.int64) for k in keys]
        keys = [k if k.is_contiguous() else k.contiguous() for k in keys]
        if stream is None:
            stream = _current_torch_stream(torch, device)
        if out is None:
            outs = [torch.empty(tuple(k.shape) + (dim,), dtype=torch.float32, device=k.device)
                    for k, (_, _, dim) in zip(keys, resolved)]
        else:
            outs = list(out)
            for o, k, (_, _, dim) in zip(outs, keys, resolved):
                _device_address(o, tuple(k.shape) + (dim,))
        self._server.lookup_many(resolved[0][0], [t for _, t, _ in resolved], [k.data_ptr() for k in keys],
                                 torch_key_code(keys[0]), [k.numel() for k in keys],
                                 [o.data_ptr() for o in outs], device, stream)
        return outs

    def _lookup_torch_cuda(self, torch, model, table, m, t, dim, keys, out, stream):
        """The torch fast path: a few attribute reads, one allocation, one core call."""
        code = torch_key_code(keys)
        if not keys.is_contiguous():
            keys = keys.contiguous()
        device = keys.get_device()
        self._check_device(model, device)
        if not self._gpu_cached(model):
            return _through_host(self, model, table, keys, out)
        if stream is None:
            stream = _current_torch_stream(torch, device)
        shape = tuple(keys.shape) + (dim,)
        if out is None:
            rows = torch.empty(shape, dtype=torch.float32, device=keys.device)
        else:
            rows = out
            _device_address(rows, shape)  # checks dtype, shape and contiguity
        self._server.lookup(m, t, keys.data_ptr(), code, keys.numel(), rows.data_ptr(), device, stream)
        return rows

    def _check_device(self, model: str, device: int) -> None:
        if device not in self._devices[model]:
            raise InvalidArgumentError(f"keys are on CUDA device {device}, which is not in model {model!r}'s "
                                       f"deployed_device_list {self._devices[model]}")

    def update(self, model: str, table: TableKey, keys: Any, rows: Any) -> None:
        """Stores `rows` [..., D] under `keys` [...] in every tier (the persistent one first).

        When it returns, no lookup sees the old rows. Duplicate keys: the last row wins.
        """
        m, t, dim = self._resolve(model, table)
        array, code = host_keys(keys)
        values = host_rows(rows, array.size, dim)
        self._server.update(m, t, array.ctypes.data, code, array.size, values.ctypes.data)

    def erase(self, model: str, table: TableKey, keys: Any) -> int:
        """Removes `keys` from every tier; returns how many of them some tier held."""
        m, t, _ = self._resolve(model, table)
        array, code = host_keys(keys)
        return self._server.erase(m, t, array.ctypes.data, code, array.size)

    def refresh(self, model: str) -> None:
        """Re-reads the rows cached in the model's GPU caches from the host tiers."""
        self._server.refresh(model)

    # ---- metrics ---------------------------------------------------------------------------------

    def stats(self) -> list[dict[str, Any]]:
        """Per-table metrics: keys looked up, hits per tier, defaults, latency percentiles, sizes."""
        return self._server.stats()

    def prometheus(self) -> str:
        """The metrics in Prometheus text format."""
        return self._server.prometheus()

    # ---- lifetime --------------------------------------------------------------------------------

    @property
    def server_id(self) -> str:
        """The id of the shared server in this process's registry: the absolute config file path,
        or "hps-json:<digest>" for a dict or Config (the id the C ABI and hps.torch use too)."""
        return self._server.server_id

    def close(self) -> None:
        """Releases every tier (a call still running on another thread finishes first)."""
        self._server.close()

    @property
    def closed(self) -> bool:
        return self._server.closed

    def __enter__(self) -> "HPS":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"hps.HPS({self.config.source!r}, {state})"


def _one_key_dtype(arrays: list) -> list:
    """Host key arrays of one dtype (the core takes one per call): mixed ones become int64, which
    names the same keys (see hps/keys.hpp) for every value that fits it."""
    if len({code for _, code in arrays}) == 1:
        return arrays
    for a, _ in arrays:
        if a.dtype == np.uint64 and a.size and a.max() > np.iinfo(np.int64).max:
            raise InvalidArgumentError(f"a uint64 key {int(a.max())} does not fit the int64 keys of this call")
    return [host_keys(a.astype(np.int64)) for a, _ in arrays]


def _check_host_out(rows: Any, shape: tuple) -> None:
    if not (isinstance(rows, np.ndarray) and rows.dtype == np.float32 and rows.flags.c_contiguous
            and rows.shape == shape):
        raise InvalidArgumentError(f"out must be a C-contiguous float32 array of shape {shape}")


def _current_torch_stream(torch, device: int) -> int:
    """The raw cudaStream_t of torch's current stream on `device`."""
    raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)  # no Stream object: a few µs less
    return raw(device) if raw is not None else torch.cuda.current_stream(device).cuda_stream


def _through_host(ps: HPS, model: str, table: TableKey, keys: Any, out: Any) -> Any:
    """Device keys without a GPU cache: copy the keys to the host, look up, copy the rows back.

    The copies are ordered after the array library's pending work on its current stream (the
    device-to-host copy waits for it), which is what a caller without a stream argument expects.
    """
    torch = __import__("sys").modules.get("torch")
    if torch is not None and isinstance(keys, torch.Tensor):
        rows = torch.from_numpy(ps.lookup(model, table, keys.cpu().numpy()))
        if out is None:
            return rows.to(keys.device)
        out.copy_(rows)
        return out
    import cupy

    rows = ps.lookup(model, table, cupy.asnumpy(keys))
    with cupy.cuda.Device(keys.device.id):
        if out is None:
            return cupy.asarray(rows)
        out.set(rows)
        return out


def _device_address(rows: Any, shape: tuple) -> int:
    torch = __import__("sys").modules.get("torch")
    if torch is not None and isinstance(rows, torch.Tensor):
        if rows.dtype != torch.float32 or not rows.is_contiguous() or tuple(rows.shape) != shape:
            raise InvalidArgumentError(f"out must be a contiguous float32 tensor of shape {shape}")
        return rows.data_ptr()
    iface = getattr(rows, "__cuda_array_interface__", None)
    if iface is None or np.dtype(iface["typestr"]) != np.float32 or tuple(iface["shape"]) != shape:
        raise InvalidArgumentError(f"out must be a float32 CUDA array of shape {shape}")
    return int(iface["data"][0])
