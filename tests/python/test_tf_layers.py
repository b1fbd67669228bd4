"""hps.tf.LookupLayer and SparseLookupLayer against tf.nn.embedding_lookup and
tf.nn.embedding_lookup_sparse over the same rows: shapes, key dtypes, combiners, weights, padding,
empty inputs, max_norm, eager and tf.function."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import hps
import hps.tf
from tf_helpers import make_dense_table, write_config

VOCAB, DIM = 300, 8


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("tf_layers")
    tables = [make_dense_table(root / "t0", VOCAB, DIM, seed=1), make_dense_table(root / "t1", 50, 4, seed=2)]
    path = write_config(root / "ps.json", tables, names=["big", "small"])
    yield path, tables
    hps.tf.clear_servers()


def ids_for(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, VOCAB + 40, size=shape)  # about 12% absent keys
    return tf.constant(ids, dtype=dtype)


def reference_lookup(table, ids, max_norm=None):
    return tf.nn.embedding_lookup(tf.constant(table.reference), table.reference_ids(ids.numpy()), max_norm=max_norm)


@pytest.mark.parametrize("dtype", [tf.int32, tf.int64])
@pytest.mark.parametrize("shape", [(), (0,), (7,), (3, 5), (2, 3, 4), (0, 3), (4, 0, 2)])
def test_lookup_equals_embedding_lookup(setup, shape, dtype):
    path, (table, _) = setup
    layer = hps.tf.LookupLayer("m", 0, DIM, ps_config_file=path)
    ids = ids_for(shape, dtype)
    rows = layer(ids)
    assert rows.dtype == tf.float32 and tuple(rows.shape) == shape + (DIM,)
    np.testing.assert_array_equal(rows.numpy(), reference_lookup(table, ids).numpy())


@pytest.mark.parametrize("dtype", [tf.int32, tf.int64])
def test_lookup_in_tf_function_with_unknown_shape(setup, dtype):
    path, (table, _) = setup
    layer = hps.tf.LookupLayer("m", "big", DIM, ps_config_file=path)

    @tf.function(jit_compile=False, input_signature=[tf.TensorSpec([None, None], dtype)])
    def serve(ids):
        rows = layer(ids)
        assert rows.shape.as_list() == [None, None, DIM]  # shape inference: keys.shape + [D]
        return rows

    for shape in [(1, 1), (16, 3), (0, 2)]:
        ids = ids_for(shape, dtype, seed=len(shape))
        np.testing.assert_array_equal(serve(ids).numpy(), reference_lookup(table, ids).numpy())


def test_static_shape_inference(setup):
    path, _ = setup
    graph = tf.Graph()
    with graph.as_default():
        ids = tf.compat.v1.placeholder(tf.int64, [5, None])
        rows = hps.tf.lookup(ids, path, "m", 0, DIM)
        assert rows.shape.as_list() == [5, None, DIM]


@pytest.mark.parametrize("max_norm", [0.5, 2.0])
def test_max_norm_equals_embedding_lookup(setup, max_norm):
    path, (table, _) = setup
    layer = hps.tf.LookupLayer("m", 0, DIM, ps_config_file=path)
    ids = ids_for((6, 3), tf.int64)
    np.testing.assert_allclose(layer(ids, max_norm=max_norm).numpy(),
                               reference_lookup(table, ids, max_norm).numpy(), rtol=0, atol=1e-7)


def test_max_norm_with_ids_of_unknown_rank(setup):
    """Traced with an input signature of unknown rank, as tf.nn.embedding_lookup traces; the first
    call is the traced one (Keras cannot build a layer on a shape of unknown rank: nothing to build)."""
    path, (table, _) = setup
    layer = hps.tf.LookupLayer("m", 0, DIM, ps_config_file=path)
    spec = [tf.TensorSpec(None, tf.int64)]
    served = tf.function(lambda ids: layer(ids, max_norm=0.5), jit_compile=False, input_signature=spec)
    reference = tf.function(lambda ids: tf.nn.embedding_lookup(tf.constant(table.reference), ids, max_norm=0.5),
                            input_signature=spec)
    for shape in [(), (7,), (3, 5), (2, 3, 4)]:
        ids = ids_for(shape, tf.int64, seed=len(shape))
        rows = served(ids)
        assert tuple(rows.shape) == shape + (DIM,)
        np.testing.assert_allclose(rows.numpy(), reference(table.reference_ids(ids.numpy())).numpy(), rtol=0, atol=1e-7)


def test_second_table_and_output_dtype(setup):
    path, (_, small) = setup
    layer = hps.tf.LookupLayer("m", 1, 4, emb_vec_dtype=tf.float16, ps_config_file=path)
    ids = tf.constant([[0, 49, 50, 1000]], tf.int64)
    rows = layer(ids)
    assert rows.dtype == tf.float16
    expected = tf.nn.embedding_lookup(tf.constant(small.reference), small.reference_ids(ids.numpy()))
    np.testing.assert_array_equal(rows.numpy(), tf.cast(expected, tf.float16).numpy())


def sparse_ids(rows, width, dtype, seed, empty_rows=(), with_weights=False):
    """A SparseTensor [rows, width] with ragged bags (some empty), and matching weights."""
    rng = np.random.default_rng(seed)
    indices, values = [], []
    for r in range(rows):
        if r in empty_rows:
            continue
        n = int(rng.integers(1, width + 1))
        for c in sorted(rng.choice(width, n, replace=False)):
            indices.append([r, c])
            values.append(int(rng.integers(0, VOCAB + 40)))
    indices = np.array(indices, np.int64).reshape(-1, 2)
    ids = tf.SparseTensor(indices, tf.constant(values, dtype), [rows, width])
    weights = None
    if with_weights:
        weights = tf.SparseTensor(indices, tf.constant(rng.random(len(values)) * 2, tf.float32), [rows, width])
    return ids, weights


def reference_sparse(table, sp_ids, sp_weights, combiner, max_norm=None):
    mapped = tf.SparseTensor(sp_ids.indices, table.reference_ids(sp_ids.values.numpy()), sp_ids.dense_shape)
    return tf.nn.embedding_lookup_sparse(tf.constant(table.reference), mapped, sp_weights, combiner=combiner,
                                         max_norm=max_norm)


@pytest.mark.parametrize("combiner", ["sum", "mean", "sqrtn"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", [tf.int32, tf.int64])
def test_sparse_equals_embedding_lookup_sparse(setup, combiner, weighted, dtype):
    path, (table, _) = setup
    layer = hps.tf.SparseLookupLayer("m", 0, DIM, ps_config_file=path)
    sp_ids, sp_weights = sparse_ids(9, 6, dtype, seed=3, empty_rows=(2, 5), with_weights=weighted)
    got = layer(sp_ids, sp_weights, combiner=combiner)
    expected = reference_sparse(table, sp_ids, sp_weights, combiner)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("weighted", [False, True])
def test_sparse_combiner_none_is_mean(setup, weighted):
    # HugeCTR's call(..., combiner=None) and tf.nn.embedding_lookup_sparse take None as "mean".
    path, (table, _) = setup
    layer = hps.tf.SparseLookupLayer("m", 0, DIM, ps_config_file=path)
    sp_ids, sp_weights = sparse_ids(7, 5, tf.int64, seed=6, empty_rows=(1,), with_weights=weighted)
    got = layer(sp_ids, sp_weights, combiner=None)
    expected = reference_sparse(table, sp_ids, sp_weights, None)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(got.numpy(), layer(sp_ids, sp_weights, combiner="mean").numpy())


def test_sparse_trailing_empty_rows_max_norm_and_tf_function(setup):
    path, (table, _) = setup
    layer = hps.tf.SparseLookupLayer("m", 0, DIM, ps_config_file=path)
    sp_ids, _ = sparse_ids(6, 4, tf.int64, seed=4, empty_rows=(0, 4, 5))

    @tf.function(jit_compile=False)
    def serve(ids):
        return layer(ids, combiner="sum", max_norm=1.0)

    got = serve(sp_ids)
    expected = reference_sparse(table, sp_ids, None, "sum", max_norm=1.0)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)


def test_sparse_padded_bags_and_ragged(setup):
    # Padding as HugeCTR's users write it: a dense [N, M] batch where -1 marks "no id", turned sparse.
    path, (table, _) = setup
    layer = hps.tf.SparseLookupLayer("m", 0, DIM, ps_config_file=path)
    dense = tf.constant([[3, 7, -1], [-1, -1, -1], [299, 0, 5], [12, -1, -1]], tf.int64)
    sp_ids = tf.sparse.from_dense(tf.where(dense >= 0, dense + 1, 0))
    sp_ids = tf.SparseTensor(sp_ids.indices, sp_ids.values - 1, sp_ids.dense_shape)
    expected = reference_sparse(table, sp_ids, None, "mean")
    np.testing.assert_allclose(layer(sp_ids).numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)
    ragged = tf.ragged.constant([[3, 7], [], [299, 0, 5], [12]], tf.int64)
    np.testing.assert_allclose(layer(ragged).numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)


def test_sparse_empty_input(setup):
    path, (table, _) = setup
    layer = hps.tf.SparseLookupLayer("m", 0, DIM, ps_config_file=path)
    sp_ids = tf.SparseTensor(tf.zeros([0, 2], tf.int64), tf.zeros([0], tf.int64), [3, 4])
    got = layer(sp_ids, combiner="sum")
    expected = reference_sparse(table, sp_ids, None, "sum")
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got.numpy(), expected.numpy())


def test_keras_model_with_both_layers(setup):
    path, (table, _) = setup
    dense_ids = tf.keras.Input([3], dtype=tf.int64)
    pooled = tf.keras.layers.Lambda(lambda r: tf.reduce_sum(r, 1))(
        hps.tf.LookupLayer("m", 0, DIM, ps_config_file=path)(dense_ids))
    model = tf.keras.Model(dense_ids, tf.keras.layers.Dense(1)(pooled))
    ids = ids_for((5, 3), tf.int64)
    expected = model.layers[-1](tf.reduce_sum(reference_lookup(table, ids), 1))
    np.testing.assert_allclose(model(ids).numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(model.predict(ids, verbose=0), expected.numpy(), rtol=1e-6, atol=1e-6)
    assert not model.layers[1].trainable_weights


def test_config_as_dict_config_and_hps_share_a_server(setup):
    path, (table, _) = setup
    with open(path) as f:
        import json
        as_dict = json.load(f)
    by_path = hps.tf.LookupLayer("m", 0, DIM, ps_config_file=path)
    by_dict = hps.tf.LookupLayer("m", 0, DIM, ps_config_file=as_dict)
    by_config = hps.tf.LookupLayer("m", 0, DIM, ps_config_file=hps.Config(as_dict))
    assert by_path.ps is hps.tf.get_server(path)
    assert by_dict.ps is by_config.ps
    assert by_dict.ps_config.startswith("{")  # carried as JSON text: portable too
    ids = ids_for((4, 2), tf.int32)
    for layer in (by_path, by_dict, by_config):
        np.testing.assert_array_equal(layer(ids).numpy(), reference_lookup(table, ids).numpy())


def test_two_configs_in_one_process(setup, tmp_path):
    path, (table, _) = setup
    other = make_dense_table(tmp_path / "other", VOCAB, DIM, seed=9)
    other_path = write_config(tmp_path / "other.json", [other])
    a = hps.tf.LookupLayer("m", 0, DIM, ps_config_file=path)
    b = hps.tf.LookupLayer("m", 0, DIM, ps_config_file=other_path)
    ids = ids_for((10,), tf.int64)
    np.testing.assert_array_equal(a(ids).numpy(), reference_lookup(table, ids).numpy())
    np.testing.assert_array_equal(b(ids).numpy(), reference_lookup(other, ids).numpy())
    assert a.ps is not b.ps


def test_updates_are_seen(setup, tmp_path):
    # The op reads the server at run time: an update through the shared server shows at once.
    own = make_dense_table(tmp_path / "own", 20, 4, seed=5)
    path = write_config(tmp_path / "own.json", [own])
    layer = hps.tf.LookupLayer("m", 0, 4, ps_config_file=path)

    @tf.function
    def serve(ids):
        return layer(ids)

    ids = tf.constant([3], tf.int64)
    np.testing.assert_array_equal(serve(ids).numpy()[0], own.rows[3])
    layer.ps.update("m", 0, np.array([3], np.int64), np.full((1, 4), 7.0, np.float32))
    np.testing.assert_array_equal(serve(ids).numpy()[0], np.full(4, 7.0, np.float32))


def test_hugectr_tf1_init_flow(setup):
    """HugeCTR's documented TF1 flow: hps_init = hps.Init(...); sess.run(hps_init); then a layer built
    on the config Init gave (ps_config_file="") looks rows up in the session."""
    import hierarchical_parameter_server as hugectr_hps
    path, (table, _) = setup
    ids = np.array([[3, 7], [VOCAB + 5, 0]], np.int64)  # one absent id: the default row
    with tf.Graph().as_default() as graph:
        hps_init = hugectr_hps.Init(global_batch_size=16, ps_config_file=path)
        keys = tf.compat.v1.placeholder(tf.int64, [None, 2])
        rows = hugectr_hps.LookupLayer(model_name="m", table_id=0, emb_vec_size=DIM,
                                       emb_vec_dtype=tf.float32)(keys)
        with tf.compat.v1.Session(graph=graph) as session:
            assert session.run(hps_init) == b"OK"
            got = session.run(rows, {keys: ids})
    np.testing.assert_array_equal(got, table.reference[table.reference_ids(ids)])


def test_init_returns_the_str_ok_eagerly_and_in_tf_function(setup):
    path, _ = setup
    assert hps.tf.Init(global_batch_size=16, ps_config_file=path) == "OK"
    seen = []

    @tf.function
    def init():
        seen.append(hps.tf.Init(global_batch_size=16, ps_config_file=path))
        return seen[-1]

    assert init().numpy() == b"OK"
    assert seen == ["OK"]


def test_cpu_and_gpu_kernels_are_registered():
    # The GPU kernel is compiled into every build whose TensorFlow headers have StreamExecutor
    # (CPU wheels included); it can only run where TensorFlow sees a GPU (test_gpu_matches_cpu).
    from tensorflow.python.framework import kernels
    registered = kernels.get_registered_kernels_for_op("HpsLookup").kernel
    by_device = {}
    for kernel in registered:
        dtype = kernel.constraint[0].allowed_values.list.type[0]
        by_device.setdefault(kernel.device_type, set()).add(tf.as_dtype(dtype).name)
    assert by_device == {"CPU": {"int32", "int64"}, "GPU": {"int32", "int64"}}
    gpu_int32 = [k for k in registered if k.device_type == "GPU"
                 and k.constraint[0].allowed_values.list.type[0] == tf.int32.as_datatype_enum]
    assert list(gpu_int32[0].host_memory_arg) == ["keys"]


@pytest.mark.gpu
@pytest.mark.skipif(not tf.config.list_physical_devices("GPU"), reason="TensorFlow sees no GPU")
@pytest.mark.parametrize("dtype", [tf.int32, tf.int64])
def test_gpu_matches_cpu(tmp_path, dtype):
    table = make_dense_table(tmp_path / "t", VOCAB, DIM, seed=3)
    path = write_config(tmp_path / "gpu.json", [table])
    layer = hps.tf.LookupLayer("m", 0, DIM, ps_config_file=path)
    ids = ids_for((64, 5), dtype)
    with tf.device("/GPU:0"):
        rows = tf.function(layer)(ids)
    assert "GPU" in rows.device
    np.testing.assert_array_equal(rows.numpy(), reference_lookup(table, ids).numpy())
