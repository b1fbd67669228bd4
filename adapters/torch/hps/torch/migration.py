"""From a trained torch model to one served by hps: export_tables writes the embedding weights as
HugeCTR table folders plus a config; swap_embeddings replaces the embedding modules with hps layers.

    config = hps.torch.export_tables(model, "serving/dlrm", "dlrm")
    model = hps.torch.swap_embeddings(model, config)     # predicts what it predicted before

Each `nn.Embedding` and `nn.EmbeddingBag` becomes one table whose keys are the weight's row
indices, so the keys the model was fed stay its keys. Tables are named after the module path
(`emb.0` -> `emb-0`, see `table_names`); swap_embeddings finds them by the same names.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

import hps

from . import _registry
from ._registry import ServerSource
from .layers import LookupLayer, SparseLookupLayer

__all__ = ["export_tables", "swap_embeddings", "table_names", "EMBEDDING_TYPES"]

EMBEDDING_TYPES = (nn.Embedding, nn.EmbeddingBag)
_NAME = re.compile(r"[A-Za-z0-9_-]{1,120}")


def _embedding_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(path, module) of each distinct embedding module, in registration order (a shared module once)."""
    return [(path, m) for path, m in model.named_modules() if isinstance(m, EMBEDDING_TYPES)]


def table_names(model: nn.Module) -> dict[str, str]:
    """Module path -> table name for every embedding module of `model` (its first path if shared).

    A name is the path with "." written "-" (`emb.0` -> `emb-0`); characters a table name cannot
    hold (`A-Z a-z 0-9 _ -`) become "_", and a name that is then longer than 120 characters or
    already taken gets a short hash of the path. The model itself, if it is an embedding, is the
    table "embedding". The mapping depends only on the model's structure, so export_tables and
    swap_embeddings agree on it.
    """
    paths = [path for path, _ in _embedding_modules(model)]
    wanted = {path: path.replace(".", "-") if path else "embedding" for path in paths}
    names: dict[str, str] = {}
    # Names needing no substitution first, so that a path's plain name is never taken by another's
    # substituted one.
    for plain in (True, False):
        for path in paths:
            if (_NAME.fullmatch(wanted[path]) is not None) != plain:
                continue
            name = re.sub(r"[^A-Za-z0-9_-]", "_", wanted[path])
            if len(name) > 120 or name in names.values():
                name = f"{name[:100]}-{hashlib.sha1(path.encode()).hexdigest()[:10]}"
            names[path] = name
    return {path: names[path] for path in paths}


def export_tables(model: nn.Module, out_dir: Union[str, "os.PathLike[str]"], model_name: str, *,
                  config_name: str = "ps.json", server_keys: Optional[Mapping[str, Any]] = None,
                  **model_keys: Any) -> str:
    """Writes every nn.Embedding / nn.EmbeddingBag weight of `model` as a table folder under
    `out_dir`, plus a config `out_dir/config_name` serving them as model `model_name`; returns the
    config's path.

    Keys are row indices (int64, `supportlonglong: true`), rows the weight as float32, one folder per
    module named by `table_names`. Paths in the config are relative to it, so the folder can move.
    `model_keys` go into the model's entry (e.g. `gpucacheper=0.5`, `deployed_device_list=[0, 1]`),
    `server_keys` at the top level (e.g. `{"volatile_db": {...}}`). The config is validated before
    this returns.
    """
    modules = _embedding_modules(model)
    if not modules:
        raise ValueError("the model has no nn.Embedding or nn.EmbeddingBag to export")
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    names = table_names(model)
    dims = []
    for path, module in modules:
        weight = module.weight.detach().to("cpu", torch.float32).contiguous().numpy()
        hps.write_sparse_model(os.path.join(out_dir, names[path]), np.arange(weight.shape[0], dtype=np.int64), weight,
                               overwrite=True)  # a migration rewrites its own output folder
        dims.append(int(weight.shape[1]))
    return hps.write_model_config(os.path.join(out_dir, config_name), model_name,
                                  [names[path] for path, _ in modules], dims,
                                  model_keys=model_keys, server_keys=server_keys)


def swap_embeddings(model: nn.Module, ps: ServerSource, model_name: Optional[str] = None, *,
                    tables: Optional[Mapping[str, Union[str, int]]] = None) -> nn.Module:
    """Replaces each nn.Embedding with a LookupLayer and each nn.EmbeddingBag with a
    SparseLookupLayer (same mode, padding_idx as padding_key, same include_last_offset), in place;
    returns the model (the new layer itself when `model` is an embedding).

    `ps` is the server: best the config path export_tables returned (then the swapped model can
    be exported to other processes), or a dict, hps.Config or hps.HPS. `model_name` may be left out
    when the config has one model. Tables are found by `table_names(model)`, or by `tables`
    (module path -> table name or index) for tables exported some other way. Each table's row width
    must equal the module's embedding_dim. The layers' output dtype is the weight's dtype.
    """
    modules = _embedding_modules(model)
    if not modules:
        raise ValueError("the model has no nn.Embedding or nn.EmbeddingBag to swap")
    served = _registry.get(_registry.register(ps))
    if model_name is None:
        if len(served.models) != 1:
            raise ValueError(f"the config serves {len(served.models)} models ({', '.join(sorted(served.models))}); "
                             f"say which one with model_name")
        model_name = next(iter(served.models))
    mapping = dict(table_names(model)) if tables is None else dict(tables)
    replacements: dict[int, nn.Module] = {}
    for path, module in modules:
        if path not in mapping:
            raise KeyError(f"no table given for module {path!r} (table names: {', '.join(sorted(mapping))})")
        replacements[id(module)] = _layer_for(module, path, served.server_id, model_name, mapping[path])
    if id(model) in replacements:
        return replacements[id(model)]
    # Every path a module is reachable by (a module may be shared), replaced in its parent.
    for path, module in list(model.named_modules(remove_duplicate=False)):
        layer = replacements.get(id(module))
        if layer is not None:
            parent_path, _, attribute = path.rpartition(".")
            setattr(model.get_submodule(parent_path), attribute, layer)
    return model


def _layer_for(module: nn.Module, path: str, server_id: str, model_name: str, table: Union[str, int]) -> nn.Module:
    if module.max_norm is not None:
        raise ValueError(f"{path!r} has max_norm set: its forward renormalizes the weight in place, which a "
                         f"served table cannot do; renormalize the weight before export_tables and clear max_norm")
    dim = module.embedding_dim
    dtype = module.weight.dtype
    try:
        if isinstance(module, nn.EmbeddingBag):
            return SparseLookupLayer(server_id, model_name, table, dim, module.mode, padding_key=module.padding_idx,
                                     include_last_offset=module.include_last_offset, dtype=dtype)
        return LookupLayer(server_id, model_name, table, dim, dtype=dtype)
    except hps.InvalidArgumentError as e:
        raise hps.InvalidArgumentError(f"module {path!r}: {e}") from e
