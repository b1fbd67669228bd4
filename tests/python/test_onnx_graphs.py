"""replace_embeddings and session() on hand-built ONNX graphs: each lookup form, what is left and
why, and the errors for bad graphs and bad HPS_TRT nodes. Results are checked against numpy and
against onnxruntime running the original graph."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import hps
import hps.onnx
from hps.onnx.surgery import NoEmbeddingsError

RNG = np.random.default_rng(7)
W = RNG.standard_normal((30, 6)).astype(np.float32)


@pytest.fixture(autouse=True)
def fresh_onnx_servers():
    yield
    hps.onnx.runtime.clear_servers()


def save(tmp_path, nodes, inputs, outputs, initializers, name="g.onnx", opset=18) -> str:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = str(tmp_path / name)
    onnx.save(model, path)
    return path


def keys_input(name="ids", dtype=TensorProto.INT64, shape=("B", 3, 4)):
    return helper.make_tensor_value_info(name, dtype, list(shape))


def out(name="y", dtype=TensorProto.FLOAT, rank=2):
    return helper.make_tensor_value_info(name, dtype, [f"{name}{i}" for i in range(rank)])


def original(path, feed):
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feed)


def surgered(path, feed, tmp_path, **kwargs):
    report = hps.onnx.replace_embeddings(path, tmp_path / "out.onnx", tmp_path / "tables", "m", **kwargs)
    return report, hps.onnx.session(tmp_path / "out.onnx").run(None, feed)


def test_rank3_keys_and_a_mean_bag(tmp_path):
    """Keys of any rank give keys.shape + [D]; a reduce after the Gather stays as it was."""
    nodes = [helper.make_node("Gather", ["W", "ids"], ["rows"], name="lookup"),
             helper.make_node("ReduceMean", ["rows", "axes"], ["y"], keepdims=0, name="bag")]
    path = save(tmp_path, nodes, [keys_input()], [out()],
                [numpy_helper.from_array(W, "W"), numpy_helper.from_array(np.array([2], np.int64), "axes")])
    ids = RNG.integers(0, 30, (5, 3, 4))
    report, (y,) = surgered(path, {"ids": ids}, tmp_path)
    assert report.replaced[0].kinds == ["gather+ReduceMean"] and report.replaced[0].nodes == ["lookup"]
    np.testing.assert_allclose(y, W[ids].mean(axis=2), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(y, original(path, {"ids": ids})[0])


def test_plain_lookup_output_shape_and_absent_keys(tmp_path):
    path = save(tmp_path, [helper.make_node("Gather", ["W", "ids"], ["y"])], [keys_input(shape=("B", 7))], [out(rank=3)],
                [numpy_helper.from_array(W, "W")])
    ids = RNG.integers(0, 30, (4, 7))
    _, (y,) = surgered(path, {"ids": ids}, tmp_path)
    assert y.shape == (4, 7, 6)
    np.testing.assert_array_equal(y, W[ids])
    # A key past the table is absent from it: the table's default row (0), where Gather would fail.
    (y,) = hps.onnx.session(tmp_path / "out.onnx").run(None, {"ids": np.full((1, 7), 1000, np.int64)})
    np.testing.assert_array_equal(y, np.zeros((1, 7, 6), np.float32))


def test_fp16_table_keeps_its_output_type(tmp_path):
    half = W.astype(np.float16)
    path = save(tmp_path, [helper.make_node("Gather", ["W", "ids"], ["y"])], [keys_input(shape=("B",))],
                [out(dtype=TensorProto.FLOAT16)], [numpy_helper.from_array(half, "W")])
    ids = RNG.integers(0, 30, (9,))
    report, (y,) = surgered(path, {"ids": ids}, tmp_path)
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, half[ids])
    assert "float32" in report.replaced[0].notes[0]


def test_tied_weight_is_kept_for_its_other_use(tmp_path):
    """An initializer also read by a MatMul (tied embeddings) is served and kept."""
    nodes = [helper.make_node("Gather", ["W", "ids"], ["rows"]),
             helper.make_node("Transpose", ["W"], ["Wt"], perm=[1, 0], name="transpose"),
             helper.make_node("MatMul", ["rows", "Wt"], ["logits"], name="tied")]
    path = save(tmp_path, nodes, [keys_input(shape=("B",))], [out("logits")], [numpy_helper.from_array(W, "W")])
    ids = RNG.integers(0, 30, (8,))
    report, (y,) = surgered(path, {"ids": ids}, tmp_path)
    assert "also read by Transpose 'transpose'" in report.replaced[0].notes[0]
    assert [i.name for i in onnx.load(tmp_path / "out.onnx").graph.initializer] == ["W"]
    np.testing.assert_allclose(y, original(path, {"ids": ids})[0], rtol=1e-6, atol=1e-6)


def test_candidates_left_with_reasons(tmp_path):
    nodes = [helper.make_node("Gather", ["W", "ids"], ["a"], name="served"),
             helper.make_node("Gather", ["W", "const_ids"], ["b"], name="constant_keys"),
             helper.make_node("Gather", ["I", "ids"], ["c"], name="int_table"),
             helper.make_node("Gather", ["W", "cols"], ["d"], axis=1, name="columns"),
             helper.make_node("Gather", ["fed", "ids"], ["e"], name="fed_table")]
    inputs = [keys_input(shape=("B",)), keys_input("cols", shape=(2,)),
              helper.make_tensor_value_info("fed", TensorProto.FLOAT, [30, 6])]
    path = save(tmp_path, nodes, inputs, [out(n, TensorProto.INT64 if n == "c" else TensorProto.FLOAT, rank=1 if n == "b" else 2) for n in "abcde"],
                [numpy_helper.from_array(W, "W"), numpy_helper.from_array(np.array([1, 2], np.int64), "const_ids"),
                 numpy_helper.from_array(np.arange(60, dtype=np.int64).reshape(30, 2), "I")])
    report = hps.onnx.replace_embeddings(path, tmp_path / "out.onnx", tmp_path / "tables", "m")
    assert [t.nodes for t in report.replaced] == [["served"]]
    reasons = {s.node: s.reason for s in report.skipped}
    assert "indices are a constant" in reasons["constant_keys"]
    assert "int64, not a float table" in reasons["int_table"]
    assert "gathers along axis 1" in reasons["columns"]
    assert "is a graph input, not an initializer" in reasons["fed_table"]
    # The initializer stays for the Gathers that were left.
    assert "W" in [i.name for i in onnx.load(tmp_path / "out.onnx").graph.initializer]
    feed = {"ids": RNG.integers(0, 30, (3,)), "cols": np.array([0, 5]), "fed": W}
    got = hps.onnx.session(tmp_path / "out.onnx").run(None, feed)
    for a, b in zip(got, original(path, feed)):
        np.testing.assert_array_equal(a, b)


def test_computed_keys_are_cast_for_int32(tmp_path):
    nodes = [helper.make_node("Add", ["ids", "one"], ["shifted"]),
             helper.make_node("Gather", ["W", "shifted"], ["y"])]
    path = save(tmp_path, nodes, [keys_input(shape=("B",))], [out()],
                [numpy_helper.from_array(W, "W"), numpy_helper.from_array(np.array(1, np.int64), "one")])
    ids = RNG.integers(0, 29, (6,))
    report, (y,) = surgered(path, {"ids": ids}, tmp_path, key_dtype="int32")
    assert report.key_inputs == []           # the input feeds an Add, not the lookup: it keeps int64
    assert "computed (by Add)" in report.notes[0]
    np.testing.assert_array_equal(y, W[ids + 1])


def test_int32_keys_shared_with_arithmetic(tmp_path):
    """An input that carries keys and also feeds arithmetic: the arithmetic sees int64 through a Cast."""
    nodes = [helper.make_node("Reshape", ["ids", "flat"], ["ids_flat"]),
             helper.make_node("Gather", ["W", "ids_flat"], ["rows"]),
             helper.make_node("ReduceSum", ["ids", "axes1"], ["idsum"], keepdims=0)]
    path = save(tmp_path, nodes, [keys_input(shape=("B", 2))], [out("rows"), out("idsum", TensorProto.INT64, rank=1)],
                [numpy_helper.from_array(W, "W"), numpy_helper.from_array(np.array([-1], np.int64), "flat"),
                 numpy_helper.from_array(np.array([1], np.int64), "axes1")])
    ids = RNG.integers(0, 30, (3, 2))
    report, (rows, idsum) = surgered(path, {"ids": ids.astype(np.int32)}, tmp_path, key_dtype="int32")
    assert report.key_inputs == ["ids"]
    assert idsum.dtype == np.int64
    np.testing.assert_array_equal(rows, W[ids.reshape(-1)])
    np.testing.assert_array_equal(idsum, ids.sum(1))


def test_int32_input_becomes_int64(tmp_path):
    """tf2onnx-style int32 keys, exposed as int64 when asked."""
    path = save(tmp_path, [helper.make_node("Gather", ["W", "ids"], ["y"])],
                [keys_input(dtype=TensorProto.INT32, shape=("B", 2))], [out(rank=3)], [numpy_helper.from_array(W, "W")])
    ids = RNG.integers(0, 30, (4, 2))
    report, (y,) = surgered(path, {"ids": ids.astype(np.int64)}, tmp_path, key_dtype="int64")
    assert report.key_inputs == ["ids"]
    assert onnx.load(tmp_path / "out.onnx").graph.input[0].type.tensor_type.elem_type == TensorProto.INT64
    np.testing.assert_array_equal(y, W[ids])


def test_lookup_inside_a_loop_body_stays_there(tmp_path):
    """A Gather in a Loop body on keys made inside the body is replaced where it is."""
    body = helper.make_graph(
        [helper.make_node("Unsqueeze", ["i", "zero"], ["key"]),
         helper.make_node("Gather", ["W", "key"], ["row"], name="inner"),
         helper.make_node("Identity", ["cond"], ["cond_out"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("row", TensorProto.FLOAT, [1, 6])])
    nodes = [helper.make_node("Loop", ["n", "true"], ["rows"], body=body, name="loop")]
    path = save(tmp_path, nodes, [helper.make_tensor_value_info("n", TensorProto.INT64, [])], [out("rows", rank=3)],
                [numpy_helper.from_array(W, "W"), numpy_helper.from_array(np.array([0], np.int64), "zero"),
                 numpy_helper.from_array(np.array(True), "true")])
    report, (y,) = surgered(path, {"n": np.array(5, np.int64)}, tmp_path)
    assert report.replaced[0].kinds == ["gather in a Loop body"]
    assert "one lookup per iteration" in report.replaced[0].notes[0]
    np.testing.assert_array_equal(y.reshape(5, 6), W[:5])


def test_no_initializer_gather_is_an_error(tmp_path):
    nodes = [helper.make_node("Gather", ["fed", "ids"], ["y"], name="fed_lookup")]
    path = save(tmp_path, nodes, [keys_input(shape=("B",)), helper.make_tensor_value_info("fed", TensorProto.FLOAT, [30, 6])],
                [out()], [])
    with pytest.raises(NoEmbeddingsError, match="fed_lookup.*graph input, not an initializer") as caught:
        hps.onnx.replace_embeddings(path, tmp_path / "o.onnx", tmp_path / "t", "m")
    assert caught.value.report.skipped[0].node == "fed_lookup"


# ---- session() and HPS_TRT nodes written by hand ----------------------------------------------


def table_config(tmp_path, dim=6, longlong=True) -> str:
    hps.write_sparse_model(str(tmp_path / "w"), np.arange(30, dtype=np.int64), W[:, :dim].copy())
    path = tmp_path / ("ps.json" if longlong else "ps32.json")
    path.write_text(f'{{"supportlonglong": {str(longlong).lower()}, "models": [{{"model": "m", '
                    f'"sparse_files": ["{tmp_path / "w"}"], "embedding_vecsize_per_table": [{dim}]}}]}}')
    return str(path)


def hps_node_model(tmp_path, config, *, domain="", key_type=TensorProto.INT32, drop=None, **fields):
    attrs = {"ps_config_file": config, "model_name": "m", "table_id": 0, "emb_vec_size": 6, **fields}
    if drop:
        del attrs[drop]
    node = helper.make_node("HPS_TRT", ["ids"], ["y"], domain=domain, name="hps", **attrs)
    graph = helper.make_graph([node], "g", [keys_input(dtype=key_type, shape=("B", 26))], [out(rank=3)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_hugectr_style_node_runs(tmp_path):
    """HugeCTR's surgery writes HPS_TRT in the default domain with int32 keys [batch, 26]."""
    model = hps_node_model(tmp_path, table_config(tmp_path))
    ids = RNG.integers(0, 30, (4, 26)).astype(np.int32)
    (y,) = hps.onnx.session(model).run(None, {"ids": ids})
    np.testing.assert_array_equal(y, W[ids])


@pytest.mark.parametrize("with_ps", [False, True], ids=["node-config", "ps-override"])
def test_hugectr_nul_terminated_fields_run(tmp_path, with_ps):
    """HugeCTR's surgery writes ps_config_file="dlrm_hugectr.json\\0", model_name="dlrm\\0": read up to
    the NUL (as the TensorRT plugin reads them), they give the rows the plain fields give."""
    config = table_config(tmp_path)
    ids = RNG.integers(0, 30, (4, 26)).astype(np.int32)
    override = {"ps": config} if with_ps else {}
    (plain,) = hps.onnx.session(hps_node_model(tmp_path, config), **override).run(None, {"ids": ids})
    nul = hps_node_model(tmp_path, config + "\0", model_name="m\0")
    (y,) = hps.onnx.session(nul, **override).run(None, {"ids": ids})
    np.testing.assert_array_equal(y, plain)
    np.testing.assert_array_equal(y, W[ids])


@pytest.mark.parametrize("change, error, message", [
    ({"model_name": "\0m"}, ValueError, "field model_name is an empty string"),
    ({"drop": "table_id"}, ValueError, "lacks the field table_id"),
    ({"emb_vec_size": 8}, hps.InvalidArgumentError, "emb_vec_size 8 does not match table 0 of model 'm', whose rows have 6"),
    ({"model_name": "other"}, hps.NotFoundError, "other"),
    ({"table_id": "zero"}, ValueError, "field table_id must be an int"),
    ({"key_type": TensorProto.FLOAT}, ValueError, "its keys 'ids' are FLOAT; expected INT32 or INT64"),
])
def test_bad_hps_nodes(tmp_path, change, error, message):
    with pytest.raises(error, match=message):
        hps.onnx.session(hps_node_model(tmp_path, table_config(tmp_path), **change))


def test_missing_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        hps.onnx.session(hps_node_model(tmp_path, str(tmp_path / "nowhere.json")))


def test_no_hps_node(tmp_path):
    path = save(tmp_path, [helper.make_node("Relu", ["x"], ["y"])],
                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])], [out(rank=1)], [])
    with pytest.raises(ValueError, match="has no HPS_TRT node"):
        hps.onnx.session(path)


def test_scalar_key_gives_one_row(tmp_path):
    """A 0-d key gives rows of shape [D], as the original Gather does, not [1, D]."""
    nodes = [helper.make_node("Gather", ["W", "ids"], ["row"]), helper.make_node("MatMul", ["row", "M"], ["y"])]
    path = save(tmp_path, nodes, [keys_input(shape=())], [out(rank=1)],
                [numpy_helper.from_array(W, "W"), numpy_helper.from_array(np.ones((6, 2), np.float32), "M")])
    feed = {"ids": np.array(3, np.int64)}
    _, (y,) = surgered(path, feed, tmp_path)
    (expected,) = original(path, feed)
    assert y.shape == expected.shape == (2,)
    np.testing.assert_allclose(y, expected, rtol=1e-6)


def run_child(script: str, *args: str) -> str:
    """Runs `script` in a fresh Python: a lookup error that aborts the process fails the test on the
    child's exit status instead of killing pytest."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"the child exited with {done.returncode}:\n{done.stderr[-3000:]}"
    return done.stdout


def lookup_error_case(tmp_path, pause=False):
    """A model over int64 keys [B, 26], a 32-bit config (supportlonglong false) and the table. With
    `pause`, a Python op Pause (which the child defines) reads the rows: a hook after the lookup."""
    model = hps_node_model(tmp_path, table_config(tmp_path, longlong=False), key_type=TensorProto.INT64)
    if pause:
        model.graph.node[0].output[0] = "rows"
        model.graph.node.append(helper.make_node("Pause", ["rows"], ["y"], domain="ai.onnx.contrib"))
        model.opset_import.append(helper.make_opsetid("ai.onnx.contrib", 1))
    onnx.save(model, tmp_path / "m.onnx")
    np.save(tmp_path / "W.npy", W)
    return str(tmp_path / "m.onnx"), str(tmp_path / "ps32.json"), str(tmp_path / "W.npy")


# The child scripts' start: lookup_error_case's files from argv, the table W, good keys, and the
# same keys with one a 32-bit model cannot take.
LOOKUP_ERROR_KEYS = """
        import sys, threading
        import numpy as np
        import hps, hps.onnx

        model, config, table = sys.argv[1:]
        W = np.load(table)
        good = np.random.default_rng(0).integers(0, 30, (4, 26))
        bad = good.copy()
        bad[1, 3] = 2**40
"""


def test_lookup_errors_raise_from_run_and_the_process_lives(tmp_path):
    """A key a 32-bit model cannot take, and a server clear_servers() forgot, raise their hps error
    from the run methods (onnxruntime-extensions aborts the process when the op raises); the
    session then runs good keys right."""
    output = run_child(LOOKUP_ERROR_KEYS + """
        import onnxruntime as ort, pytest

        sess = hps.onnx.session(model, ps=config)
        assert isinstance(sess, ort.InferenceSession)
        with pytest.raises(hps.InvalidArgumentError, match="keys.* = 1099511627776 is not a 32-bit key"):
            sess.run(None, {"ids": bad})
        np.testing.assert_array_equal(sess.run(None, {"ids": good})[0], W[good])

        binding = sess.io_binding()
        binding.bind_cpu_input("ids", bad)
        binding.bind_output("y")
        with pytest.raises(hps.InvalidArgumentError, match="not a 32-bit key"):
            sess.run_with_iobinding(binding)
        with pytest.raises(hps.InvalidArgumentError, match="not a 32-bit key"):
            sess.run_with_ort_values(None, {"ids": ort.OrtValue.ortvalue_from_numpy(bad)})
        for keys in (bad, good):
            done, got = threading.Event(), {}
            sess.run_async(None, {"ids": keys}, lambda res, _, err: (got.update(res=res, err=err), done.set()), None)
            assert done.wait(60)
            if keys is bad:
                assert got["err"].startswith("InvalidArgumentError: ") and "not a 32-bit key" in got["err"]
            else:
                assert got["err"] == ""
                np.testing.assert_array_equal(got["res"][0], W[good])

        ps = hps.HPS(config, progress=False)
        sess = hps.onnx.session(model, ps=ps)
        hps.onnx.runtime.clear_servers()
        with pytest.raises(hps.NotFoundError, match="no server registered as 'hps-local:[0-9]+'.*make the session again"):
            sess.run(None, {"ids": good})
        np.testing.assert_array_equal(hps.onnx.session(model, ps=ps).run(None, {"ids": good})[0], W[good])
        print("alive")
    """, *lookup_error_case(tmp_path))
    assert output.split() == ["alive"]


def test_lookup_error_reaches_the_run_whose_op_failed(tmp_path):
    """Two threads run one session: a whole run of good keys happens after the lookup of a run of
    bad keys failed, before that run ends. Only the bad run raises; the good run's rows are right."""
    output = run_child(LOOKUP_ERROR_KEYS + """
        from onnxruntime_extensions import PyCustomOpDef, onnx_op

        bad_lookup_done, good_run_done = threading.Event(), threading.Event()

        @onnx_op(op_type="Pause", inputs=[PyCustomOpDef.dt_float], outputs=[PyCustomOpDef.dt_float])
        def pause(rows):
            if threading.current_thread().name == "bad":
                bad_lookup_done.set()
                assert good_run_done.wait(60)
            return rows

        sess = hps.onnx.session(model, ps=config)
        outcome = {}

        def run(keys):
            try:
                (found,) = sess.run(None, {"ids": keys})
            except hps.InvalidArgumentError as e:
                return "raised" if "not a 32-bit key" in str(e) else str(e)
            return "right rows" if keys is good and np.array_equal(found, W[good]) else "rows"

        bad_run = threading.Thread(target=lambda: outcome.update(bad=run(bad)), name="bad")
        bad_run.start()
        assert bad_lookup_done.wait(60)
        outcome["good"] = run(good)
        good_run_done.set()
        bad_run.join()
        print(outcome["good"], "/", outcome["bad"])
    """, *lookup_error_case(tmp_path, pause=True))
    assert output.strip() == "right rows / raised"


def test_parallel_execution_mode_is_refused(tmp_path):
    """The ops must run on the thread that called run() for their errors to reach it."""
    options = ort.SessionOptions()
    options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    with pytest.raises(ValueError, match="execution_mode = ORT_SEQUENTIAL"):
        hps.onnx.session(hps_node_model(tmp_path, table_config(tmp_path)), sess_options=options)
