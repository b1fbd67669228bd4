"""hps.Config: one configuration, parsed and validated by the C++ core.

A config can be given as a file path, a dict (HugeCTR's JSON layout) or a Config. Relative
`sparse_files` and `persistent_db.path` resolve against the config file's folder (for a dict:
against the current working directory).
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any, Mapping, Union

from . import _core
from .errors import ConfigWarning

__all__ = ["Config", "ConfigLike", "json_schema"]


class Config:
    """A validated configuration.

    Keys HugeCTR accepted but that do nothing here are accepted with a `ConfigWarning` each
    (also listed in `warnings`). Invalid configs raise `hps.ConfigError` naming the JSON path.
    """

    def __init__(self, source: "ConfigLike"):
        self._path: "str | None" = None  # the absolute path of the file it was read from
        if isinstance(source, Config):
            self._core, self._source, self._path = source._core, source._source, source._path
            return
        if isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            self._core = _core.CoreConfig.from_file(path)
            self._source = path
            self._path = os.path.abspath(path)
        elif isinstance(source, Mapping):
            text = json.dumps(source)
            self._core = _core.CoreConfig.from_json(text, "<dict>", os.getcwd())
            self._source = "<dict>"
        else:
            raise TypeError(f"a config is a file path, a dict or an hps.Config, not {type(source).__name__}")
        for message in self._core.warnings:
            warnings.warn(message, ConfigWarning, stacklevel=2)

    @property
    def source(self) -> str:
        """The file path the config came from, or "<dict>"."""
        return self._source

    def _file(self) -> "str | None":
        """The absolute path of the file this config was read from, while that file still holds it
        (servers of a file are shared by path; see hps/server_registry.hpp)."""
        if self._path is None or not os.path.isfile(self._path):
            return None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConfigWarning)
                same = _core.CoreConfig.from_file(self._path).to_json(2) == self._core.to_json(2)
        except Exception:  # unreadable or invalid now: not that file's config any more
            return None
        return self._path if same else None

    @property
    def warnings(self) -> list[str]:
        return list(self._core.warnings)

    def to_dict(self) -> dict[str, Any]:
        """The normalized config: defaults filled in, enum names canonical, paths absolute."""
        return json.loads(self._core.to_json(2))

    def to_json(self, indent: int = 2) -> str:
        return self._core.to_json(indent)

    @property
    def models(self) -> list[dict[str, Any]]:
        return self.to_dict()["models"]

    def model(self, name: str) -> dict[str, Any]:
        for model in self.models:
            if model["model"] == name:
                return model
        names = ", ".join(m["model"] for m in self.models)
        raise KeyError(f"no model {name!r} in this config (its models: {names})")

    def __repr__(self) -> str:
        names = [m["model"] for m in self.models]
        return f"hps.Config(source={self._source!r}, models={names})"


ConfigLike = Union[str, "os.PathLike[str]", Mapping[str, Any], Config]


def json_schema() -> dict[str, Any]:
    """A JSON Schema of the whole configuration format."""
    return json.loads(_core.json_schema(2))
