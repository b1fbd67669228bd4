"""hps.HPS: the parameter server as Python sees it."""

from __future__ import annotations

import json
import os
import threading
import warnings
from typing import Any, Optional, Union

import numpy as np

from . import _core
from ._arrays import host_keys, host_rows
from ._progress import LoadProgress
from .array_adapters import ArrayAdapter, DeviceKeys, _type_name, adapter_for
from .config import Config, ConfigLike
from .errors import ConfigWarning, InvalidArgumentError

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
        _warn_gpucache_without_gpu(self.config)
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

    def lookup(self, model: str, table: TableKey, keys: Any, *, out: Any = None, stream: Any = None) -> Any:
        """Rows for `keys` (an integer array of shape [...]) as float32 [..., D].

        Host arrays (NumPy, or anything `np.asarray` takes) give a NumPy array, or fill `out`: any
        host array NumPy views without a copy (a NumPy array, a CPU torch tensor, ...).
        Arrays in CUDA memory give rows on the same device: torch tensors and CuPy arrays, and any
        array with `__cuda_array_interface__` (v2, v3) or DLPack (`__dlpack__`, kDLCUDA). Device
        keys are int32, int64, uint32 or uint64 and C-contiguous. `out`, when given, is a writable
        C-contiguous float32 array of shape keys.shape + (D,) on the keys' device; it is required
        for arrays of a library without an adapter (hps allocates rows only for torch and CuPy).

        `stream` (device keys only): an int cudaStream_t or an object with `__cuda_stream__`, on
        which the lookup runs. None means the array library's current stream for torch and CuPy,
        the `stream` field of a `__cuda_array_interface__` for other arrays, and is an error for an
        array that names no stream (a DLPack-only array, an interface without `stream`): hps never
        picks the legacy default stream by itself. With an explicit stream, a
        `__cuda_array_interface__` producer stream is waited for on the device and DLPack's
        producer orders its work before it (CuPy arrays included); for torch tensors that ordering
        is the caller's, as for any torch op. Details: hps.array_adapters, docs/architecture.md.

        Keys stored in no tier get the table's default row.
        """
        m, t, dim = self._resolve(model, table)
        adapter = adapter_for(keys)
        if adapter is not None:
            on = adapter.device_keys(keys, stream)
            if on is not None:
                return self._lookup_device(adapter, model, table, m, t, dim, keys, on, out)
        array, code = host_keys(keys)
        if out is None:
            rows = view = np.empty(array.shape + (dim,), dtype=np.float32)
        else:
            rows, view = out, _host_out(out, array.shape + (dim,))
        self._server.lookup(m, t, array.ctypes.data, code, array.size, view.ctypes.data)
        return rows

    def _lookup_device(self, adapter: ArrayAdapter, model: str, table: TableKey, m: int, t: int, dim: int,
                       keys: Any, on: DeviceKeys, out: Any) -> Any:
        """Device keys: a few attribute reads in the adapter, one allocation, one core call."""
        shape = on.shape + (dim,)
        if on.device < 0:  # an empty array without memory: nothing to look up, nowhere to look
            return adapter.empty_rows(keys, shape, on)[0] if out is None else out
        self._check_device(model, on.device)
        if not self._gpu_cached(model):
            return adapter.through_host(keys, out, lambda host: self.lookup(model, table, host))
        rows, address = adapter.empty_rows(keys, shape, on) if out is None else (out, adapter.rows_address(out, shape, on))
        self._server.lookup(m, t, on.address, on.code, on.size, address, on.device, on.stream)
        return rows

    def lookup_many(self, model: str, tables: "list[TableKey]", keys: "list[Any]", *,
                    out: Optional[list] = None, stream: Any = None) -> list:
        """Rows of several tables of one model in one call: `keys[i]` looked up in `tables[i]`.

        The tables run side by side (on the host over the lookup threads, on a GPU each on a stream
        of its own joined back into the lookup stream), so a model's many tables cost about one
        lookup's latency rather than the sum. The keys are all host arrays or all device arrays of
        one device and one library; `stream` as in lookup() (resolved from the first key array).
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
        adapter = adapter_for(keys[0])
        first = adapter.device_keys(keys[0], stream) if adapter is not None else None
        if first is not None:
            return self._lookup_many_device(adapter, model, tables, resolved, keys, first, out)
        if any(adapter_for(k) is not None and adapter_for(k).device_keys(k, stream) is not None for k in keys[1:]):
            raise InvalidArgumentError("lookup_many: the key arrays must be all in host memory or all on one "
                                       "CUDA device; found host and device arrays")
        arrays = [host_keys(k) for k in keys]
        arrays = _one_key_dtype(arrays)
        if out is None:
            outs = [np.empty(a.shape + (dim,), dtype=np.float32) for (a, _), (_, _, dim) in zip(arrays, resolved)]
            views = outs
        else:
            outs = list(out)
            views = [_host_out(o, a.shape + (dim,)) for o, (a, _), (_, _, dim) in zip(outs, arrays, resolved)]
        self._server.lookup_many(m, [t for _, t, _ in resolved], [a.ctypes.data for a, _ in arrays], arrays[0][1],
                                 [a.size for a, _ in arrays], [v.ctypes.data for v in views])
        return outs

    def _lookup_many_device(self, adapter: ArrayAdapter, model: str, tables: list, resolved: list, keys: list,
                            first: DeviceKeys, out: Optional[list]) -> list:
        # The rest run on the first array's stream (given, or its library's current stream).
        on = [first] + [_device_keys_of(adapter, k, first.stream) for k in keys[1:]]
        devices = sorted({o.device for o in on if o.device >= 0})  # (-1: an empty array without memory)
        if len(devices) > 1:
            raise InvalidArgumentError(f"lookup_many: every key array must be on the same CUDA device, found devices "
                                       f"{devices}")
        if devices:
            self._check_device(model, devices[0])
        if not self._gpu_cached(model) or len({o.code for o in on}) != 1 or any(o.device < 0 for o in on):
            # Through the host, keys of several dtypes (the core takes one per call) or an array
            # without memory: one lookup each.
            return [self.lookup(model, t, k, out=None if out is None else out[i], stream=first.stream)
                    for i, (t, k) in enumerate(zip(tables, keys))]
        if out is None:
            made = [adapter.empty_rows(k, o.shape + (dim,), o) for k, o, (_, _, dim) in zip(keys, on, resolved)]
        else:
            made = [(r, adapter.rows_address(r, o.shape + (dim,), o)) for r, o, (_, _, dim) in zip(out, on, resolved)]
        self._server.lookup_many(resolved[0][0], [t for _, t, _ in resolved], [o.address for o in on], first.code,
                                 [o.size for o in on], [address for _, address in made], first.device, first.stream)
        return [rows for rows, _ in made]

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
        """The metrics in Prometheus text format (update sources included)."""
        return self._server.prometheus()

    def update_source_stats(self) -> list[dict[str, Any]]:
        """The update sources feeding this server (the Kafka consumer of `update_source`), each a
        dict: name, received (messages), applied (batches through every tier), rows (applied),
        errors (malformed messages, lost brokers, failed batches or commits), lag (messages in
        the broker not applied yet; -1 unknown), last_error. See docs/kafka.md."""
        return self._server.update_source_stats()

    def drain_update_sources(self) -> None:
        """Waits until every update source has applied the messages it has received so far."""
        self._server.drain_update_sources()

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


_warned_gpucache = False  # one warning per process, not one per server


def _warn_gpucache_without_gpu(config: Config) -> None:
    """`gpucache: true` where there is no GPU cache to use: the server serves from the CPU tiers."""
    global _warned_gpucache
    if _warned_gpucache:
        return
    wanting = [m["model"] for m in config.to_dict()["models"] if m.get("gpucache")]
    if not wanting:
        return
    if not json.loads(_core.features_json())["gpu_cache"]:
        why = "this build of hps has no GPU cache (built without CUDA)"
    elif _core.device_count() == 0:
        why = "this machine has no CUDA device"
    else:
        return
    _warned_gpucache = True
    warnings.warn(f"models {', '.join(wanting)}: gpucache is true but {why}; lookups are served from the CPU "
                  "tiers (this warning is shown once per process)", ConfigWarning, stacklevel=3)


def _one_key_dtype(arrays: list) -> list:
    """Host key arrays of one dtype (the core takes one per call): mixed ones become int64, which
    names the same keys (see hps/keys.hpp) for every value that fits it."""
    if len({code for _, code in arrays}) == 1:
        return arrays
    for a, _ in arrays:
        if a.dtype == np.uint64 and a.size and a.max() > np.iinfo(np.int64).max:
            raise InvalidArgumentError(f"a uint64 key {int(a.max())} does not fit the int64 keys of this call")
    return [host_keys(a.astype(np.int64)) for a, _ in arrays]


def _host_out(out: Any, shape: tuple) -> np.ndarray:
    """A NumPy view of the caller's host `out` (a NumPy array, a CPU torch tensor, anything NumPy
    views without a copy), refused unless it is a writable C-contiguous float32 array of `shape`."""
    expected = f"out must be a writable C-contiguous float32 array of shape {shape}"
    try:
        view = np.asarray(out)
    except (TypeError, ValueError, RuntimeError) as error:  # e.g. a tensor that requires grad, or in CUDA memory
        raise InvalidArgumentError(f"{expected}; found {_type_name(out)}, which NumPy cannot view: {error}") from None
    # A copy (of a list, say) is a new array at each call; the rows must land in `out` itself.
    # (An empty array has no memory to share: it is never a copy that matters.)
    if view is not out and view.size > 0 and np.asarray(out).ctypes.data != view.ctypes.data:
        raise InvalidArgumentError(f"{expected}; found {_type_name(out)}, which NumPy can only copy, not view")
    problems = []
    if view.dtype != np.float32:
        problems.append(f"dtype {view.dtype}")
    if view.shape != shape:
        problems.append(f"shape {view.shape}")
    if not view.flags.c_contiguous:
        problems.append(f"not C-contiguous (strides {view.strides})")
    if not view.flags.writeable:  # the core would write through a read-only view
        problems.append("read-only")
    if problems:
        raise InvalidArgumentError(f"{expected}; found {_type_name(out)}: {', '.join(problems)}")
    return view


def _device_keys_of(adapter: ArrayAdapter, keys: Any, stream: int) -> DeviceKeys:
    """Device keys of one more array of a lookup_many call, of the same library as the first."""
    on = adapter.device_keys(keys, stream) if adapter_for(keys) is adapter else None
    if on is None:
        raise InvalidArgumentError("lookup_many: the key arrays must be all in host memory or all on one CUDA "
                                   f"device of one library; found {type(keys).__name__} among device arrays")
    return on
