"""Bad input to hps.tf raises a clear error, in eager and in graph mode: wrong key dtype, unknown
model or table, wrong emb_vec_size, missing config; and a gradient is refused."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import hps
import hps.tf
from tf_helpers import make_dense_table, write_config

DIM = 4


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    root = tmp_path_factory.mktemp("tf_errors")
    config = write_config(root / "ps.json", [make_dense_table(root / "t0", 30, DIM)], names=["t"])
    yield config
    hps.tf.clear_servers()


def run(mode, fn, *args):
    """fn(*args) eagerly, inside a tf.function, or in a TF1-style graph run by a session."""
    if mode == "eager":
        return fn(*args)
    if mode == "function":
        return tf.function(fn, jit_compile=False)(*args)
    with tf.Graph().as_default() as graph:
        out = fn(*[tf.constant(a) for a in args])
        with tf.compat.v1.Session(graph=graph) as session:
            return session.run(out)


MODES = ["eager", "function", "graph"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [tf.float32, tf.uint8, tf.string])
def test_wrong_key_dtype(path, mode, dtype):
    layer = hps.tf.LookupLayer("m", 0, DIM, ps_config_file=path)
    keys = np.array([1, 2]).astype(dtype.as_numpy_dtype) if dtype != tf.string else np.array([b"1"])
    with pytest.raises(TypeError, match=f"expected int32 or int64, found {dtype.name}"):
        run(mode, layer, keys)


def test_wrong_sparse_key_dtype_and_combiner(path):
    layer = hps.tf.SparseLookupLayer("m", 0, DIM, ps_config_file=path)
    sp = tf.SparseTensor([[0, 0]], tf.constant([1.0]), [1, 1])
    with pytest.raises(TypeError, match="sp_ids must be int32 or int64"):
        layer(sp)
    with pytest.raises(ValueError, match="combiner must be one of sum, mean, sqrtn"):
        layer(tf.SparseTensor([[0, 0]], tf.constant([1], tf.int64), [1, 1]), combiner="max")
    with pytest.raises(TypeError, match="tf.SparseTensor"):
        layer(tf.constant([[1]], tf.int64))


def test_layer_construction_errors(path, tmp_path):
    with pytest.raises(hps.NotFoundError, match="no model 'nope'.*its models: m"):
        hps.tf.LookupLayer("nope", 0, DIM, ps_config_file=path)
    with pytest.raises(hps.NotFoundError, match="table_id 3 is out of range"):
        hps.tf.LookupLayer("m", 3, DIM, ps_config_file=path)
    with pytest.raises(hps.NotFoundError, match="no table 'x'"):
        hps.tf.SparseLookupLayer("m", "x", DIM, ps_config_file=path)
    with pytest.raises(hps.InvalidArgumentError, match="expected 4 .*found 16"):
        hps.tf.LookupLayer("m", 0, 16, ps_config_file=path)
    with pytest.raises(hps.NotFoundError, match="does not exist"):
        hps.tf.LookupLayer("m", 0, DIM, ps_config_file=str(tmp_path / "missing.json"))
    with pytest.raises(TypeError, match="emb_vec_dtype must be a floating-point"):
        hps.tf.LookupLayer("m", 0, DIM, emb_vec_dtype=tf.int32, ps_config_file=path)


# The op itself (what a loaded SavedModel runs) checks the same things in its kernel.
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("model, table, dim, error, message", [
    ("nope", 0, DIM, tf.errors.NotFoundError, "nope"),
    ("m", 5, DIM, tf.errors.NotFoundError, "5"),
    ("m", 0, 16, tf.errors.InvalidArgumentError, "emb_vec_size 16 does not match table 0 of model 'm', whose rows "
                                                 "have 4 floats"),
])
def test_op_errors(path, mode, model, table, dim, error, message):
    with pytest.raises(error, match=message):
        run(mode, lambda k: hps.tf.lookup(k, path, model, table, dim), np.array([1, 2], np.int64))


@pytest.mark.parametrize("mode", MODES)
def test_op_missing_config(tmp_path, mode):
    missing = str(tmp_path / "gone.json")
    with pytest.raises(tf.errors.NotFoundError, match="gone.json"):
        run(mode, lambda k: hps.tf.lookup(k, missing, "m", 0, DIM), np.array([1], np.int64))


@pytest.mark.parametrize("mode", MODES)
def test_op_key_out_of_range_for_32_bit_model(tmp_path, mode):
    table = make_dense_table(tmp_path / "t", 10, DIM)
    path = write_config(tmp_path / "ps32.json", [table])
    import json
    config = json.load(open(path))
    config["supportlonglong"] = False
    json.dump(config, open(path, "w"))
    with pytest.raises(tf.errors.InvalidArgumentError, match="4294967296"):
        run(mode, lambda k: hps.tf.lookup(k, path, "m", 0, DIM), np.array([1, 2**32], np.int64))


def test_no_config_and_no_init():
    hps.tf.clear_servers()
    with pytest.raises(hps.InvalidArgumentError, match="hps.tf.Init was not called"):
        hps.tf.LookupLayer("m", 0, DIM)


def test_gradient_is_refused(path):
    layer = hps.tf.LookupLayer("m", 0, DIM, ps_config_file=path)
    assert layer.trainable is False and not layer.trainable_weights
    with pytest.raises(hps.tf.InferenceOnlyError, match="inference-only"):
        layer.trainable = True
    # TensorFlow never asks integer keys for a gradient; the op's registered gradient refuses any
    # request that does reach it (rather than silently giving none).
    from tensorflow.python.framework import ops
    with tf.Graph().as_default():
        rows = hps.tf.lookup(tf.constant([1, 2], tf.int64), path, "m", 0, DIM)
        with pytest.raises(hps.tf.InferenceOnlyError, match="inference-only"):
            ops.get_gradient_function(rows.op)(rows.op, tf.ones_like(rows))


def test_training_a_model_leaves_the_layer_alone(path):
    # model.fit trains the dense layers; the hps layer has nothing to train.
    ids = tf.keras.Input([2], dtype=tf.int64)
    rows = hps.tf.LookupLayer("m", 0, DIM, ps_config_file=path)(ids)
    model = tf.keras.Model(ids, tf.keras.layers.Dense(1)(tf.keras.layers.Flatten()(rows)))
    model.compile("sgd", "mse")
    model.fit(np.array([[1, 2], [3, 4]], np.int64), np.array([[1.0], [0.0]], np.float32), epochs=1, verbose=0)
    assert len(model.trainable_weights) == 2
