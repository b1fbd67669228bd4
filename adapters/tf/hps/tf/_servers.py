"""The config string an op carries, and one shared hps.HPS per config in this process.

The op HpsLookup names its server by a string attribute, `ps_config`:

- a config **file** is named by its absolute path. A graph holding it runs in a fresh process
  (the kernel builds the server from the file), and the path can be re-pointed at load time
  (`set_config_path`, or HPS_TF_CONFIG_MAP);
- a dict or an `hps.Config` that did not come from a file is carried as its normalized JSON text
  (absolute table paths), so it too runs in another process where those paths exist.

Layers also get the server through Python when they are built, so that a bad config, model,
table or row width fails there, with the layer's arguments in the message, and so that
`layer.ps` gives the server for updates and stats.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from collections.abc import Mapping
from typing import Any, Union

import hps

from . import _library

__all__ = ["config_string", "server", "set_config_path", "clear_servers", "default_config"]

ServerSource = Union[str, "os.PathLike[str]", Mapping, hps.Config, hps.HPS]

_lock = threading.Lock()
_servers: "dict[str, hps.HPS]" = {}  # resolved config string -> server
_default: "list[Union[str, None]]" = [None]  # the config hps.tf.Init was given


def _file_of(config: hps.Config) -> Union[str, None]:
    """The absolute path of the file `config` came from, when the file still holds that config."""
    if config.source == "<dict>":
        return None
    path = os.path.abspath(config.source)
    if not os.path.isfile(path):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", hps.ConfigWarning)
            same = hps.Config(path).to_json() == config.to_json()
    except hps.HpsError:
        return None
    return path if same else None


def config_string(source: Any) -> str:
    """The op's `ps_config` for `source`: a path, a dict, an hps.Config, an hps.HPS, JSON text,
    or "" / None for the config given to hps.tf.Init."""
    if source is None or (isinstance(source, str) and source == ""):
        if _default[0] is None:
            raise hps.InvalidArgumentError(
                "no ps_config_file given and hps.tf.Init was not called: pass ps_config_file=<config path> "
                "(or a dict / hps.Config) to the layer, or call hps.tf.Init(global_batch_size, ps_config_file) first")
        return _default[0]
    if isinstance(source, hps.HPS):
        source = source.config
    if isinstance(source, str) and source.lstrip().startswith("{"):
        return source.strip()  # already JSON text (a layer's saved config)
    if isinstance(source, (str, os.PathLike)):
        return os.path.abspath(os.fspath(source))
    if isinstance(source, (Mapping, hps.Config)):
        config = hps.Config(source)
        path = _file_of(config) if isinstance(source, hps.Config) else None
        return path if path is not None else config.to_json(0)
    raise TypeError(f"ps_config_file is a config file path, a dict, an hps.Config or an hps.HPS, "
                    f"not {type(source).__name__}")


def server(config: str) -> hps.HPS:
    """The shared server of op config string `config` (after re-pointing), built on first use."""
    resolved = _library.resolve_config(config)
    found = _servers.get(resolved)
    if found is not None:
        return found
    with _lock:
        found = _servers.get(resolved)
        if found is None:
            if resolved.startswith("{"):
                source: Any = _json_config(resolved)
            else:
                if not os.path.isfile(resolved):
                    moved = "" if resolved == config else f" (re-pointed from {config})"
                    raise hps.NotFoundError(
                        f"config file {resolved}{moved} does not exist. A model saved with hps layers looks for its "
                        f"config where it was built; re-point it with hps.tf.set_config_path(old, new) or "
                        f"HPS_TF_CONFIG_MAP='old=new'")
                source = resolved
            found = hps.HPS(source)
            _servers[resolved] = found
        return found


def _json_config(text: str) -> hps.Config:
    return hps.Config(json.loads(text))


def set_config_path(old: Union[str, "os.PathLike[str]"], new: Union[str, "os.PathLike[str]", None]) -> None:
    """Makes every hps op and layer that names config file `old` use `new` instead ("*" as `old`
    re-points every config file; `new` None removes the mapping). Call it before the first lookup
    of a loaded model (kernels resolve their config once, when TensorFlow builds them)."""
    old_text = os.fspath(old)
    old_text = old_text if old_text == "*" else os.path.abspath(old_text)
    _library.map_config(old_text, None if new is None else os.path.abspath(os.fspath(new)))


def set_default(config: str) -> None:
    _default[0] = config


def default_config() -> Union[str, None]:
    """The config hps.tf.Init was given (its op string), or None."""
    return _default[0]


def clear_servers() -> None:
    """Closes the servers built for layers and forgets them, Init's config and the re-pointings.
    Kernels TensorFlow already built keep their own references."""
    with _lock:
        for ps in _servers.values():
            ps.close()
        _servers.clear()
        _default[0] = None
        _library.clear_config_map()
