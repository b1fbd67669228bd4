"""hps.tf.export_tables and swap_embeddings: a Keras model's Embedding layers become hps tables and
LookupLayers, and the swapped model predicts the same (max abs diff <= 1e-6)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import hps
import hps.tf


@pytest.fixture(autouse=True)
def fresh_servers():
    yield
    hps.tf.clear_servers()


def functional_model():
    ids = tf.keras.Input([4], dtype=tf.int64)
    a = tf.keras.layers.Embedding(50, 8, name="user")(ids[:, :2])
    b = tf.keras.layers.Embedding(30, 4, name="item")(ids[:, 2:])
    x = tf.keras.layers.Concatenate()([tf.keras.layers.Flatten()(a), tf.keras.layers.Flatten()(b)])
    return tf.keras.Model(ids, tf.keras.layers.Dense(1)(tf.keras.layers.Dense(16, activation="relu")(x)))


def sequential_model():
    return tf.keras.Sequential([tf.keras.Input([5], dtype=tf.int32), tf.keras.layers.Embedding(40, 6, name="emb"),
                                tf.keras.layers.GlobalAveragePooling1D(), tf.keras.layers.Dense(2)])


class Subclassed(tf.keras.Model):
    def __init__(self):
        super().__init__()
        self.tables = [tf.keras.layers.Embedding(20, 4, name="t_a"), tf.keras.layers.Embedding(25, 4, name="t_b")]
        self.head = tf.keras.layers.Dense(1)

    def call(self, ids):
        return self.head(tf.concat([self.tables[0](ids[:, 0]), self.tables[1](ids[:, 1])], axis=1))


def ids_for(shape, high, dtype, seed=0):
    return tf.constant(np.random.default_rng(seed).integers(0, high, shape), dtype)


@pytest.mark.parametrize("build, ids", [
    (functional_model, lambda: ids_for((32, 4), 30, tf.int64)),
    (sequential_model, lambda: ids_for((32, 5), 40, tf.int32)),
    (Subclassed, lambda: ids_for((32, 2), 20, tf.int64)),
])
def test_swapped_model_predicts_the_same(tmp_path, build, ids):
    model = build()
    x = ids()
    before = model(x).numpy()
    config = hps.tf.export_tables(model, tmp_path / "serving", "demo", gpucacheper=0.5)
    served = hps.tf.swap_embeddings(model, config)
    kinds = [type(layer).__name__ for layer in served._flatten_layers()]
    assert "Embedding" not in kinds and "LookupLayer" in kinds
    after = served(x).numpy()
    assert np.abs(after - before).max() <= 1e-6
    # tf.function too, as a served model runs.
    assert np.abs(tf.function(served)(x).numpy() - before).max() <= 1e-6


def test_export_writes_tables_and_a_relative_config(tmp_path):
    model = functional_model()
    config = hps.tf.export_tables(model, tmp_path / "out", "demo")
    assert config == os.path.abspath(tmp_path / "out" / "ps.json")
    text = json.load(open(config))
    entry = text["models"][0]
    assert entry["embedding_table_names"] == ["user", "item"] == entry["sparse_files"]
    assert entry["embedding_vecsize_per_table"] == [8, 4]
    assert hps.tf.table_names(model) == {"user": "user", "item": "item"}
    weight = model.get_layer("user").embeddings.numpy()
    with hps.HPS(config) as ps:
        np.testing.assert_array_equal(ps.lookup("demo", "user", np.arange(50, dtype=np.int64)), weight)


def test_swapped_functional_model_saves_and_reloads(tmp_path):
    model = functional_model()
    config = hps.tf.export_tables(model, tmp_path / "serving", "demo")
    served = hps.tf.swap_embeddings(model, config)
    x = ids_for((8, 4), 30, tf.int64)
    served.save(str(tmp_path / "served.keras"))
    hps.tf.clear_servers()
    loaded = tf.keras.models.load_model(str(tmp_path / "served.keras"))
    np.testing.assert_array_equal(loaded(x).numpy(), served(x).numpy())


def test_swap_errors(tmp_path):
    model = functional_model()
    config = hps.tf.export_tables(model, tmp_path / "serving", "demo")
    with pytest.raises(KeyError, match="no table given for Embedding 'user'"):
        hps.tf.swap_embeddings(model, config, tables={"item": "item"})
    with pytest.raises(hps.InvalidArgumentError, match="Embedding 'user'.*expected 4"):
        hps.tf.swap_embeddings(model, config, tables={"user": "item", "item": "item"})
    with pytest.raises(ValueError, match="no tf.keras.layers.Embedding"):
        hps.tf.export_tables(tf.keras.Sequential([tf.keras.Input([2]), tf.keras.layers.Dense(1)]), tmp_path, "x")
    masked = tf.keras.Sequential([tf.keras.Input([3], dtype=tf.int32), tf.keras.layers.Embedding(5, 2, mask_zero=True)])
    masked_config = hps.tf.export_tables(masked, tmp_path / "masked", "x")
    with pytest.raises(ValueError, match="mask_zero"):
        hps.tf.swap_embeddings(masked, masked_config)
