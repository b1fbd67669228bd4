"""From a trained Keras model to one served by hps: export_tables writes every
tf.keras.layers.Embedding weight as a HugeCTR table folder plus a config; swap_embeddings returns a
model whose Embedding layers are hps LookupLayers.

    config = hps.tf.export_tables(model, "serving/dlrm", "dlrm")
    served = hps.tf.swap_embeddings(model, config)      # predicts what `model` predicted

Each Embedding becomes one table whose keys are the weight's row indices, so the ids the model was
fed stay its keys. Tables are named after the layer (`table_names`); swap_embeddings finds them by
the same names.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from typing import Any, Optional, Union

import numpy as np
import tensorflow as tf

import hps

from . import _servers
from .layers import LookupLayer

__all__ = ["export_tables", "swap_embeddings", "table_names"]

keras = tf.keras
_NAME = re.compile(r"[A-Za-z0-9_-]{1,120}")


def _sublayers(layer) -> list:
    """Every layer inside `layer` (depth first, each once), `layer` included."""
    seen, order, stack = set(), [], [layer]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        order.append(current)
        children = current._flatten_layers(include_self=False, recursive=False)  # Keras 2 and 3 both have it
        stack.extend(reversed(list(children)))
    return order


def _embeddings(model) -> list:
    return [layer for layer in _sublayers(model) if isinstance(layer, keras.layers.Embedding)]


def table_names(model) -> "dict[str, str]":
    """Layer name -> table name for every Embedding of `model`: the layer's name where it is a valid
    table name (`A-Z a-z 0-9 _ -`, at most 120 characters), otherwise with "_" for the characters
    it cannot hold and a short hash when that collides."""
    names: dict[str, str] = {}
    for layer in _embeddings(model):
        name = layer.name
        if _NAME.fullmatch(name) is None:
            name = re.sub(r"[^A-Za-z0-9_-]", "_", name)[:100]
            if name in names.values():
                name = f"{name}-{hashlib.sha1(layer.name.encode()).hexdigest()[:10]}"
        names[layer.name] = name
    return names


def export_tables(model, out_dir: Union[str, "os.PathLike[str]"], model_name: str, *, config_name: str = "ps.json",
                  server_keys: Optional[Mapping[str, Any]] = None, **model_keys: Any) -> str:
    """Writes every tf.keras.layers.Embedding weight of `model` as a table folder under `out_dir`,
    plus a config `out_dir/config_name` serving them as model `model_name`; returns the config path.

    Keys are row indices (int64, `supportlonglong: true`), rows the weight as float32, one folder per
    layer named by `table_names`. Paths in the config are relative to it, so the folder can move.
    `model_keys` go into the model's entry (e.g. `gpucacheper=0.5`), `server_keys` at the top level.
    The config is validated before this returns.
    """
    layers = _embeddings(model)
    if not layers:
        raise ValueError("the model has no tf.keras.layers.Embedding to export")
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    names = table_names(model)
    dims = []
    for layer in layers:
        weight = np.ascontiguousarray(np.asarray(layer.embeddings.numpy(), dtype=np.float32))
        hps.write_sparse_model(os.path.join(out_dir, names[layer.name]), np.arange(weight.shape[0], dtype=np.int64),
                               weight, overwrite=True)  # a migration rewrites its own output folder
        dims.append(int(weight.shape[1]))
    return hps.write_model_config(os.path.join(out_dir, config_name), model_name,
                                  [names[layer.name] for layer in layers], dims,
                                  model_keys=model_keys, server_keys=server_keys)


def swap_embeddings(model, config: Any, model_name: Optional[str] = None, *,
                    tables: Optional[Mapping[str, Union[str, int]]] = None):
    """A model like `model` whose Embedding layers are hps LookupLayers on `config`.

    Sequential and functional models are cloned (`keras.models.clone_model`): the new model shares
    every other layer, and its weights, with `model`. In a subclassed model the Embedding attributes
    are replaced in place and `model` is returned. `config` is best the path export_tables
    returned (then the model can be saved and served elsewhere). `model_name` may be left out when
    the config has one model; `tables` maps layer names to table names or indices for tables
    exported some other way. Each table's row width must equal the layer's output_dim.
    """
    layers = _embeddings(model)
    if not layers:
        raise ValueError("the model has no tf.keras.layers.Embedding to swap")
    ps_config = _servers.config_string(config)
    ps = _servers.server(ps_config)
    if model_name is None:
        models = [m["model"] for m in ps.config.models]
        if len(models) != 1:
            raise ValueError(f"the config serves {len(models)} models ({', '.join(sorted(models))}); "
                             f"say which one with model_name")
        model_name = models[0]
    mapping = dict(table_names(model)) if tables is None else dict(tables)
    replacements = {id(layer): _layer_for(layer, ps_config, model_name, mapping) for layer in layers}
    if id(model) in replacements:
        return replacements[id(model)]
    if isinstance(model, keras.Sequential) or _is_functional(model):
        return keras.models.clone_model(model, clone_function=lambda layer: replacements.get(id(layer), layer))
    _replace_attributes(model, replacements)
    return model


def _is_functional(model) -> bool:
    return type(model).__name__ == "Functional" or (
        isinstance(model, keras.Model) and getattr(model, "_is_graph_network", False))


def _replace_attributes(layer, replacements: dict, seen=None) -> None:
    """Replaces, in every (sub)layer of a subclassed model, attributes holding a swapped Embedding."""
    seen = set() if seen is None else seen
    if id(layer) in seen:
        return
    seen.add(id(layer))
    for attribute, value in list(vars(layer).items()):
        if attribute.startswith("_"):
            continue
        if id(value) in replacements:
            _set_tracked(layer, attribute, replacements[id(value)], [value])
        elif isinstance(value, (list, tuple)) and any(id(v) in replacements for v in value):
            olds = [v for v in value if id(v) in replacements]
            _set_tracked(layer, attribute, type(value)(replacements.get(id(v), v) for v in value) if isinstance(
                value, tuple) else [replacements.get(id(v), v) for v in value], olds)
        elif isinstance(value, keras.layers.Layer):
            _replace_attributes(value, replacements, seen)


def _set_tracked(layer, attribute: str, value, olds: list) -> None:
    """setattr on a built Keras 3 layer, whose tracker refuses new sub-layers once built; the
    replaced Embeddings are untracked so that their weights leave the model."""
    tracker = getattr(layer, "_tracker", None)
    locked = bool(tracker is not None and tracker.locked)
    if tracker is not None:
        tracker.unlock()
    try:
        for old in olds:
            if tracker is not None:
                tracker.untrack(old)
        setattr(layer, attribute, value)
    finally:
        if locked:
            tracker.lock()


def _layer_for(layer, ps_config: str, model_name: str, mapping: dict) -> LookupLayer:
    if layer.name not in mapping:
        raise KeyError(f"no table given for Embedding {layer.name!r} (table names: {', '.join(sorted(mapping))})")
    if getattr(layer, "mask_zero", False):
        raise ValueError(f"Embedding {layer.name!r} has mask_zero=True, whose mask an hps LookupLayer does not "
                         f"compute; clear mask_zero or keep this layer as it is")
    try:
        return LookupLayer(model_name, mapping[layer.name], int(layer.output_dim),
                           emb_vec_dtype=layer.compute_dtype or tf.float32, ps_config_file=ps_config,
                           name=f"hps_{layer.name}")
    except hps.InvalidArgumentError as e:
        raise hps.InvalidArgumentError(f"Embedding {layer.name!r}: {e}") from e
