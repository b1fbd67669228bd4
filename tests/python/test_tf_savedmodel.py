"""SavedModel and Keras round trips: a model with hps layers, saved, loads in a fresh process with
only `import hps.tf` and predicts the same; its config can be re-pointed at load time. Also
HugeCTR's demo notebook flow (hierarchical_parameter_server: Init, layers, save, load, predict)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import hps
import hps.tf
from tf_helpers import make_dense_table, write_config

pytestmark = pytest.mark.slow

VOCAB, DIM, SLOTS = 200, 8, 3


def fresh_python(script: str, env_extra=None) -> str:
    """Runs `script` in a new interpreter (so nothing of this process's op registry or servers is
    there); returns its stdout, failing with its stderr."""
    env = dict(os.environ, HPS_PROGRESS="0", TF_CPP_MIN_LOG_LEVEL="2", **(env_extra or {}))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


def build_model(path):
    ids = tf.keras.Input([SLOTS], dtype=tf.int64, name="ids")
    rows = hps.tf.LookupLayer("m", 0, DIM, ps_config_file=path)(ids)
    out = tf.keras.layers.Dense(1, kernel_initializer=tf.keras.initializers.GlorotUniform(seed=1))(
        tf.keras.layers.Flatten()(rows))
    return tf.keras.Model(ids, out)


def padded_to_sparse(bags):
    """A padded [N, M] batch (-1 = padding) as the SparseTensor of its ids."""
    keep = tf.where(bags >= 0)
    return tf.SparseTensor(keep, tf.gather_nd(bags, keep), tf.shape(bags, out_type=tf.int64))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("tf_saved")
    table = make_dense_table(root / "tables" / "t0", VOCAB, DIM)
    path = write_config(root / "tables" / "ps.json", [table])
    model = build_model(path)
    bag_layer = hps.tf.SparseLookupLayer("m", 0, DIM, ps_config_file=path)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, VOCAB + 20, (16, SLOTS)).astype(np.int64)
    bags = np.where(rng.random((16, 4)) < 0.3, -1, rng.integers(0, VOCAB, (16, 4))).astype(np.int64)

    @tf.function(input_signature=[tf.TensorSpec([None, SLOTS], tf.int64), tf.TensorSpec([None, 4], tf.int64)])
    def serve(i, b):
        pooled = bag_layer(padded_to_sparse(b), combiner="sum")
        return model(i) + tf.reduce_sum(pooled, axis=1, keepdims=True)

    module = tf.Module()
    module.model = model
    module.bags = bag_layer
    module.serve = serve
    tf.saved_model.save(module, str(root / "saved"), signatures={"serving_default": serve})
    model.save(str(root / "model.keras"))
    np.save(root / "ids.npy", ids)
    np.save(root / "bags.npy", bags)
    np.save(root / "expected.npy", serve(tf.constant(ids), tf.constant(bags)).numpy())
    np.save(root / "expected_keras.npy", model.predict(ids, verbose=0))
    yield root, path
    hps.tf.clear_servers()


LOAD_SAVED_MODEL = """
    import numpy as np, tensorflow as tf, hps.tf
    root = {root!r}
    {prelude}
    loaded = tf.saved_model.load(root + "/saved")
    ids, bags = np.load(root + "/ids.npy"), np.load(root + "/bags.npy")
    got = loaded.serve(tf.constant(ids), tf.constant(bags)).numpy()
    sig = loaded.signatures["serving_default"](i=tf.constant(ids), b=tf.constant(bags))
    got2 = list(sig.values())[0].numpy()
    expected = np.load(root + "/expected.npy")
    print(float(np.abs(got - expected).max()), float(np.abs(got2 - expected).max()))
"""

LOAD_KERAS = """
    import numpy as np, tensorflow as tf, hps.tf
    root = {root!r}
    {prelude}
    model = tf.keras.models.load_model(root + "/model.keras")
    ids, bags = np.load(root + "/ids.npy"), np.load(root + "/bags.npy")
    got = model.predict(ids, verbose=0)
    print(float(np.abs(got - np.load(root + "/expected_keras.npy")).max()))
"""


def max_diffs(out: str) -> "list[float]":
    return [float(x) for x in out.split()]


def test_saved_model_in_fresh_process(saved):
    root, _ = saved
    assert max_diffs(fresh_python(LOAD_SAVED_MODEL.format(root=str(root), prelude=""))) == [0.0, 0.0]


def test_keras_format_in_fresh_process(saved):
    root, _ = saved
    assert max_diffs(fresh_python(LOAD_KERAS.format(root=str(root), prelude=""))) == [0.0]


def test_saved_model_without_the_op_library_fails_clearly(saved):
    root, _ = saved
    script = f"""
        import tensorflow as tf
        try:
            tf.saved_model.load({str(root / 'saved')!r})
        except Exception as e:
            print("HpsLookup" in str(e))
    """
    assert fresh_python(script).strip() == "True"


@pytest.fixture
def moved(saved, tmp_path):
    """The tables and config moved elsewhere; the original path no longer exists."""
    root, path = saved
    target = tmp_path / "moved"
    shutil.copytree(os.path.dirname(path), target)
    hidden = os.path.dirname(path) + ".away"
    os.rename(os.path.dirname(path), hidden)
    # The config names its tables by absolute path: point it at the moved folder.
    text = open(target / "ps.json").read().replace(os.path.dirname(path), str(target))
    (target / "ps.json").write_text(text)
    yield root, path, str(target / "ps.json")
    os.rename(hidden, os.path.dirname(path))


def test_repoint_with_set_config_path(moved):
    root, old, new = moved
    prelude = f"hps.tf.set_config_path({old!r}, {new!r})"
    assert max_diffs(fresh_python(LOAD_SAVED_MODEL.format(root=str(root), prelude=prelude))) == [0.0, 0.0]
    assert max_diffs(fresh_python(LOAD_KERAS.format(root=str(root), prelude=prelude))) == [0.0]


def test_repoint_with_environment(moved):
    root, old, new = moved
    out = fresh_python(LOAD_SAVED_MODEL.format(root=str(root), prelude=""), {"HPS_TF_CONFIG_MAP": f"{old}={new}"})
    assert max_diffs(out) == [0.0, 0.0]


def test_missing_config_at_load_is_a_clear_error(moved):
    root, old, _ = moved
    script = LOAD_SAVED_MODEL.format(root=str(root), prelude="").replace(
        "got = loaded", "try:\n        loaded.serve(tf.constant(ids), tf.constant(bags))\n"
                        "    except tf.errors.OpError as e:\n        print('ERR', type(e).__name__, e.message)\n"
                        "        raise SystemExit(0)\n    got = loaded")
    out = fresh_python(script)
    assert out.startswith("ERR") and old in out


HUGECTR_FLOW = """
    # HugeCTR's hierarchical_parameter_server demo, as its users wrote it: Init, a model with
    # LookupLayer and SparseLookupLayer, save, load, predict.
    import numpy as np, tensorflow as tf
    import hierarchical_parameter_server as hps
    ps_config_file = {path!r}
    hps.Init(global_batch_size=16, ps_config_file=ps_config_file)

    class InferenceModel(tf.keras.models.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.lookup_layer = hps.LookupLayer(model_name="m", table_id=0, emb_vec_size={dim},
                                                emb_vec_dtype=tf.float32, ps_config_file=ps_config_file,
                                                global_batch_size=16, name="lookup")
            self.sparse_lookup_layer = hps.SparseLookupLayer(model_name="m", table_id=0, emb_vec_size={dim},
                                                             emb_vec_dtype=tf.float32, name="sparse_lookup")
            self.dense = tf.keras.layers.Dense(1, kernel_initializer="ones")

        def call(self, inputs):
            dense_ids, sp_ids = inputs
            a = tf.reduce_sum(self.lookup_layer(dense_ids), axis=1)
            b = self.sparse_lookup_layer(sp_ids=sp_ids, sp_weights=None, combiner="mean")
            return self.dense(tf.concat([a, b], axis=1))

    model = InferenceModel()
    ids = tf.constant(np.arange(48).reshape(16, 3) % {vocab}, tf.int64)
    sp_ids = tf.sparse.from_dense(tf.constant(np.arange(1, 33).reshape(16, 2), tf.int64))
    before = model([ids, sp_ids]).numpy()

    # Keras 2's save_model(model, path) wrote a SavedModel; Keras 3's model.export cannot take
    # sparse inputs, and saving the subclassed model object makes Keras trace its call with float
    # ids. So: a tf.Module with the serving function and the model's variables.
    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.int64), tf.SparseTensorSpec([None, 2], tf.int64)])
    def serve(ids, sp_ids):
        return model([ids, sp_ids])

    module = tf.Module()
    module.weights_, module.serve = list(model.variables), serve
    tf.saved_model.save(module, {saved!r}, signatures={{"serving_default": serve}})
    loaded = tf.saved_model.load({saved!r})
    after = loaded.serve(ids, sp_ids).numpy()
    table = np.vstack([np.load({rows!r}), np.full((1, {dim}), -0.25, np.float32)])
    expected = (table[ids.numpy()].sum(1).sum(1) + table[np.arange(1, 33).reshape(16, 2)].mean(1).sum(1))[:, None]
    print(float(np.abs(before - after).max()), float(np.abs(before - expected).max()))
"""


def test_hugectr_notebook_flow(tmp_path):
    table = make_dense_table(tmp_path / "t0", VOCAB, DIM)
    np.save(tmp_path / "rows.npy", table.rows)
    path = write_config(tmp_path / "ps.json", [table])
    out = fresh_python(HUGECTR_FLOW.format(path=path, dim=DIM, vocab=VOCAB, saved=str(tmp_path / "hugectr_saved"),
                                           rows=str(tmp_path / "rows.npy")))
    same, oracle = max_diffs(out)
    assert same == 0.0 and oracle < 1e-4
    # And the saved model serves in yet another process.
    script = f"""
        import numpy as np, tensorflow as tf, hps.tf
        loaded = tf.saved_model.load({str(tmp_path / 'hugectr_saved')!r})
        ids = tf.constant(np.arange(48).reshape(16, 3) % {VOCAB}, tf.int64)
        sp_ids = tf.sparse.from_dense(tf.constant(np.arange(1, 33).reshape(16, 2), tf.int64))
        print(loaded.serve(ids, sp_ids).numpy().shape)
    """
    assert fresh_python(script).strip() == "(16, 1)"
