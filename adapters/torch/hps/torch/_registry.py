"""One shared hps.HPS per configuration per process, named by a string the custom op can carry.

The op `torch.ops.hps.lookup` takes only tensors and plain values, so it names its server with a
string, the *server id*: the id of the core's server registry (hps/server_registry.hpp), which the
C ABI, hps.HPS and the TensorFlow and TensorRT adapters use too:

- a config **file** is named by its absolute path. An id of that form is enough to re-create the
  server, so a program exported with it (torch.export, TorchScript) runs in a fresh process: the
  first lookup there builds the server from the path.
- a dict or an `hps.Config` not read from a file is named `hps-json:<digest>` (of its normalized
  JSON), an id valid only in the process that built the server.

Servers are shared by the core: every layer built on the same file path, on equal dicts or
Configs, on an hps.HPS of that config (or in another adapter of this process) uses one server.
Different configs get different servers. This module only remembers, per id, an hps.HPS to call and
the facts the op checks, so that a lookup of a registered id takes no lock.
"""

from __future__ import annotations

import operator
import os
import threading
from collections.abc import Mapping
from typing import Any, Union

import hps

__all__ = ["register", "get", "get_server", "clear_servers", "Served"]

JSON_PREFIX = "hps-json:"  # the core's ids of servers built from JSON text or a Config

ServerSource = Union[str, "os.PathLike[str]", Mapping, hps.Config, hps.HPS]


class _Model:
    """What the op checks for one model on every call."""

    __slots__ = ("names", "dims", "devices")

    def __init__(self, config: dict[str, Any]):
        self.names: list[str] = list(config["embedding_table_names"])
        self.dims: list[int] = [int(d) for d in config["embedding_vecsize_per_table"]]
        self.devices: frozenset[int] = frozenset(int(d) for d in config["deployed_device_list"])


class Served:
    """A registered server and the facts about its models that the op checks."""

    def __init__(self, server_id: str, ps: hps.HPS, owned: bool):
        self.server_id = server_id
        self.ps = ps
        self.owned = owned  # created by the registry (closed by clear_servers) or given by the user
        self.models = {m["model"]: _Model(m) for m in ps.config.models}

    def model(self, name: str) -> _Model:
        found = self.models.get(name)
        if found is None:
            raise hps.NotFoundError(f"server {self.server_id!r} has no model {name!r} "
                                    f"(its models: {', '.join(sorted(self.models))})")
        return found

    def table_index(self, model: str, table: Union[int, str], emb_vec_size: int) -> int:
        """The index of `table` (a name or an index) in `model`, after checking its row width."""
        info = self.model(model)
        if isinstance(table, str):
            if table not in info.names:
                raise hps.NotFoundError(f"model {model!r} has no table {table!r} (its tables: {', '.join(info.names)})")
            index = info.names.index(table)
        else:
            index = _integer(table, "table_id", "a table index (int) or name (str)")
            if not 0 <= index < len(info.names):
                raise hps.NotFoundError(f"model {model!r} has {len(info.names)} table"
                                        f"{'' if len(info.names) == 1 else 's'}; table_id {index} is out of range")
        emb_vec_size = _integer(emb_vec_size, "emb_vec_size", "an int")
        if emb_vec_size != info.dims[index]:
            raise hps.InvalidArgumentError(
                f"emb_vec_size {emb_vec_size} does not match table {model}/{info.names[index]}, whose rows have "
                f"{info.dims[index]} floats (embedding_vecsize_per_table)")
        return index

    def check_device(self, model: str, device_index: int) -> None:
        devices = self.model(model).devices
        if device_index not in devices:
            raise hps.InvalidArgumentError(
                f"keys are on cuda:{device_index}, which is not in the deployed_device_list of model {model!r} "
                f"({sorted(devices)}): move the keys to a listed device or add the device to the list")


def _integer(value: Any, what: str, expected: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{what} must be {expected}, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be {expected}, got {type(value).__name__}") from None


_lock = threading.RLock()
_by_id: dict[str, Served] = {}


def register(source: ServerSource) -> str:
    """The server id of `source` (a config file path, dict, hps.Config, hps.HPS or a server id),
    registering it.

    A server is acquired from the core for a path, dict or Config (built there if no adapter in
    this process holds one yet, loading its tables); an HPS is used as it is.
    """
    if isinstance(source, hps.HPS):
        server_id = source.server_id
        with _lock:
            known = _by_id.get(server_id)
            if known is None or known.ps.closed:
                _by_id[server_id] = Served(server_id, source, owned=False)
        return server_id
    if isinstance(source, str) and (source in _by_id or source.startswith(JSON_PREFIX)):
        return get(source).server_id  # already a server id
    if isinstance(source, (str, os.PathLike)):
        server_id = os.path.normpath(os.path.abspath(os.fspath(source)))
        get(server_id)
        return server_id
    if isinstance(source, (Mapping, hps.Config)):
        with _lock:
            ps = hps.HPS(source)  # the core's shared server of this config
            server_id = ps.server_id
            known = _by_id.get(server_id)
            if known is not None and not known.ps.closed:
                ps.close()  # one more reference to the same server; the registered one serves
            else:
                _by_id[server_id] = Served(server_id, ps, owned=True)
            return server_id
    raise TypeError(f"a parameter server is given as a config file path, a dict, an hps.Config or an hps.HPS, "
                    f"not {type(source).__name__}")


def get(server_id: str) -> Served:
    """The server named `server_id`; a config file path not seen before builds its server."""
    served = _by_id.get(server_id)
    if served is not None and not served.ps.closed:
        return served
    with _lock:
        served = _by_id.get(server_id)
        if served is not None and not served.ps.closed:
            return served
        try:
            ps = hps.HPS._from_server_id(server_id)
        except hps.NotFoundError:
            raise hps.NotFoundError(
                f"no parameter server {server_id!r} in this process. Servers given as a dict, an hps.Config or "
                f"an hps.HPS are known only to the process that built the layers; build the layers from a "
                f"config file to run an exported program in another process") from None
        served = Served(server_id, ps, owned=True)
        _by_id[server_id] = served
        return served


def get_server(source: ServerSource) -> hps.HPS:
    """The shared hps.HPS that layers built on `source` use (e.g. to call `update` or `stats`)."""
    return get(register(source)).ps


def clear_servers() -> None:
    """Drops the registry's references to its servers (closing the hps.HPS it built) and forgets
    every registration; a server no one else holds is freed.

    Layers built before keep their ids: a config-file id rebuilds its server on next use; a
    `hps-json:` id then raises NotFoundError unless something else in the process still holds that
    server. HPS instances given by the caller are not closed.
    """
    from . import _library  # the C++ op's own references, when the op library serves the op
    with _lock:
        _library.release_servers()
        for served in _by_id.values():
            if served.owned:
                served.ps.close()
        _by_id.clear()
