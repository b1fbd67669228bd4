"""Keras layers over the op HpsLookup: LookupLayer (like tf.nn.embedding_lookup) and
SparseLookupLayer (like tf.nn.embedding_lookup_sparse), with HugeCTR's constructor signature.
Inference only: the rows live in the parameter server, not in the layer.
"""

from __future__ import annotations

from typing import Any, Union

import tensorflow as tf

import hps

from . import _servers
from ._op import INFERENCE_ONLY, InferenceOnlyError, check_keys, lookup

__all__ = ["LookupLayer", "SparseLookupLayer", "COMBINERS"]

COMBINERS = ("sum", "mean", "sqrtn")

keras = tf.keras


def _table_index(ps: hps.HPS, config: str, model_name: str, table_id: Union[int, str], emb_vec_size: int) -> int:
    """The index of `table_id` (an index or a name) in `model_name`, after checking the row width."""
    where = "the config given as JSON" if config.startswith("{") else config
    models = {m["model"]: m for m in ps.config.models}
    if model_name not in models:
        raise hps.NotFoundError(f"config {where} has no model {model_name!r} (its models: {', '.join(sorted(models))})")
    names = list(models[model_name]["embedding_table_names"])
    dims = [int(d) for d in models[model_name]["embedding_vecsize_per_table"]]
    if isinstance(table_id, str):
        if table_id not in names:
            raise hps.NotFoundError(f"model {model_name!r} has no table {table_id!r} (its tables: {', '.join(names)})")
        index = names.index(table_id)
    elif isinstance(table_id, bool) or not isinstance(table_id, int):
        raise TypeError(f"table_id must be a table index (int) or name (str), got {table_id!r}")
    else:
        index = table_id
        if not 0 <= index < len(names):
            raise hps.NotFoundError(f"model {model_name!r} has {len(names)} table{'' if len(names) == 1 else 's'}; "
                                    f"table_id {index} is out of range")
    if isinstance(emb_vec_size, bool) or not isinstance(emb_vec_size, int):
        raise TypeError(f"emb_vec_size must be an int, got {emb_vec_size!r}")
    if emb_vec_size != dims[index]:
        raise hps.InvalidArgumentError(
            f"emb_vec_size {emb_vec_size} does not match table {model_name}/{names[index]}: expected {dims[index]} "
            f"(its embedding_vecsize_per_table), found {emb_vec_size}")
    return index


class _ServedTableLayer(keras.layers.Layer):
    """What both layers share: the config string, the resolved table and the output dtype."""

    def __init__(self, model_name: str, table_id: Union[int, str], emb_vec_size: int,
                 emb_vec_dtype: Any = tf.float32, ps_config_file: Any = "", global_batch_size: int = 1, **kwargs: Any):
        dtype = tf.as_dtype(emb_vec_dtype)
        if not dtype.is_floating:
            raise TypeError(f"emb_vec_dtype must be a floating-point dtype, got {dtype.name}")
        kwargs.pop("trainable", None)
        kwargs.pop("dtype", None)
        super().__init__(trainable=False, dtype=dtype.name, **kwargs)
        if not isinstance(model_name, str):
            raise TypeError(f"model_name must be a str, got {type(model_name).__name__}")
        if isinstance(global_batch_size, bool) or not isinstance(global_batch_size, int) or global_batch_size < 1:
            raise ValueError(f"global_batch_size must be a positive int, got {global_batch_size!r}")
        self.ps_config: str = _servers.config_string(ps_config_file)
        ps = _servers.server(self.ps_config)
        self.model_name = model_name
        self.table_id: int = _table_index(ps, self.ps_config, model_name, table_id, emb_vec_size)
        self.emb_vec_size = int(emb_vec_size)
        self.emb_vec_dtype = dtype
        self.global_batch_size = global_batch_size  # kept for HugeCTR's signature; batches may have any size
        # Nothing to build (the rows live in the server), and Keras cannot build a layer for ids of
        # unknown rank: built now, so a first call traced with such ids works.
        self.built = True

    @property
    def ps(self) -> hps.HPS:
        """The shared hps.HPS serving this layer (to update rows or read stats)."""
        return _servers.server(self.ps_config)

    @property
    def trainable(self) -> bool:
        return False

    @trainable.setter
    def trainable(self, value: bool) -> None:
        if value:
            raise InferenceOnlyError(INFERENCE_ONLY)

    def _rows(self, ids: tf.Tensor, max_norm: Any) -> tf.Tensor:
        rows = lookup(ids, self.ps_config, self.model_name, self.table_id, self.emb_vec_size)
        if max_norm is not None:
            # As tf.nn.embedding_lookup: each row clipped to max_norm (L2). Axis -1, not rank - 1:
            # ids may have unknown rank.
            rows = tf.clip_by_norm(rows, max_norm, axes=[-1])
        return rows

    def _cast(self, rows: tf.Tensor) -> tf.Tensor:
        return rows if self.emb_vec_dtype == tf.float32 else tf.cast(rows, self.emb_vec_dtype)

    def get_config(self) -> dict:
        config = super().get_config()
        config.pop("trainable", None)
        config.pop("dtype", None)
        config.update(model_name=self.model_name, table_id=self.table_id, emb_vec_size=self.emb_vec_size,
                      emb_vec_dtype=self.emb_vec_dtype.name, ps_config_file=self.ps_config,
                      global_batch_size=self.global_batch_size)
        return config


@keras.utils.register_keras_serializable(package="hps")
class LookupLayer(_ServedTableLayer):
    """Rows of one table for ids of any shape, like `tf.nn.embedding_lookup` (HugeCTR's signature).

    Args:
        model_name: a model of the config.
        table_id: the table's index in the model, or its name (`embedding_table_names`).
        emb_vec_size: floats per row; must equal the table's `embedding_vecsize_per_table`.
        emb_vec_dtype: the output dtype (rows are looked up as float32, then cast).
        ps_config_file: the parameter server: a config file path (the portable choice), a dict, an
            `hps.Config` or an `hps.HPS`; "" for the config given to `hps.tf.Init`. Layers on one
            config share one server per process.
        global_batch_size: accepted for HugeCTR's signature; any batch size works.

    `call(ids, max_norm=None)`: int32 or int64 ids of any shape give `ids.shape + [emb_vec_size]`
    rows; with `max_norm`, each row is clipped to that L2 norm. Ids stored nowhere get the table's
    default row.
    """

    def call(self, ids, max_norm=None):
        return self._cast(self._rows(check_keys(ids), max_norm))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.emb_vec_size,)


@keras.utils.register_keras_serializable(package="hps")
class SparseLookupLayer(_ServedTableLayer):
    """Combined rows of sparse bags of ids, like `tf.nn.embedding_lookup_sparse` (HugeCTR's signature).

    Args: as LookupLayer.

    `call(sp_ids, sp_weights=None, name=None, combiner="mean", max_norm=None)`: `sp_ids` a
    `tf.SparseTensor` [N, M] (or a `tf.RaggedTensor`) of int32/int64 ids, `sp_weights` None or a
    SparseTensor of float weights with the same indices; `combiner` "sum", "mean" or "sqrtn" (None
    is "mean"). The result, `[N', emb_vec_size]`, equals `tf.nn.embedding_lookup_sparse` over the
    same rows: each distinct id is looked up once, then TensorFlow's own combining runs over those rows.
    """

    def call(self, sp_ids, sp_weights=None, name=None, combiner="mean", max_norm=None):  # noqa: ARG002
        if combiner is None:  # "mean", as HugeCTR's call and tf.nn.embedding_lookup_sparse take None
            combiner = "mean"
        if combiner not in COMBINERS:
            raise ValueError(f"combiner must be one of {', '.join(COMBINERS)}, got {combiner!r}")
        if isinstance(sp_ids, tf.RaggedTensor):
            sp_ids = sp_ids.to_sparse()
        if isinstance(sp_weights, tf.RaggedTensor):
            sp_weights = sp_weights.to_sparse()
        if not isinstance(sp_ids, tf.SparseTensor):
            raise TypeError(f"sp_ids must be a tf.SparseTensor (or tf.RaggedTensor), got {type(sp_ids).__name__}; "
                            f"use LookupLayer for dense ids")
        values = check_keys(sp_ids.values, "sp_ids")
        unique, position = tf.unique(values)
        rows = self._rows(unique, None)
        # The bags now point at rows [0, U) of the looked-up rows: TensorFlow combines them exactly
        # as it would combine the full table's rows.
        local = tf.SparseTensor(sp_ids.indices, tf.cast(position, tf.int64), sp_ids.dense_shape)
        pooled = tf.nn.embedding_lookup_sparse(rows, local, sp_weights, combiner=combiner, max_norm=max_norm)
        return self._cast(pooled)
