"""`hps.tf.lookup`, the Python face of the op HpsLookup, and its (refusing) gradient."""

from __future__ import annotations

import tensorflow as tf

import hps

from . import _library

__all__ = ["lookup", "InferenceOnlyError", "KEY_DTYPES"]

KEY_DTYPES = (tf.int32, tf.int64)

INFERENCE_ONLY = ("hps layers are inference-only: their rows live in the parameter server and get no gradient. "
                  "Train with tf.keras.layers.Embedding, then hps.tf.export_tables and hps.tf.swap_embeddings")


class InferenceOnlyError(hps.HpsError, RuntimeError):
    """A gradient, or training, was asked of an hps op or layer, which serve rows for inference only."""


def check_keys(keys, what: str = "ids") -> tf.Tensor:
    """`keys` as a tensor, refusing any dtype but int32 and int64 (at trace time in a tf.function)."""
    if not isinstance(keys, tf.Tensor):
        keys = tf.convert_to_tensor(keys)
    if keys.dtype not in KEY_DTYPES:
        raise TypeError(f"{what} must be int32 or int64 (expected int32 or int64, found {keys.dtype.name})")
    return keys


def lookup(keys, ps_config: str, model_name: str, table_id: int, emb_vec_size: int, name=None) -> tf.Tensor:
    """Rows `keys.shape + [emb_vec_size]` (float32) of table `table_id` of `model_name`.

    `ps_config` is the op's config string: an absolute config file path or the config as JSON text
    (layers build it from whatever they were given). Keys stored nowhere get the table's default
    row. Runs on the CPU, or on a GPU on TensorFlow's compute stream when the op is placed there.
    """
    keys = check_keys(keys, "keys")
    return _library.ops.hps_lookup(keys, ps_config=ps_config, model_name=model_name, table_id=int(table_id),
                                   emb_vec_size=int(emb_vec_size), name=name)


@tf.RegisterGradient("HpsLookup")
def _no_gradient(op, grad):  # noqa: ARG001
    raise InferenceOnlyError(INFERENCE_ONLY)
