"""hps.onnx.replace_embeddings over graphs torch.onnx.export writes: the surgered graph, run by
onnxruntime through hps, predicts what the torch model predicts."""

from __future__ import annotations

import json
import warnings

import numpy as np
import onnx
import pytest
import torch

import hps
import hps.onnx
from hps.onnx.surgery import NoEmbeddingsError

nn = torch.nn


@pytest.fixture(autouse=True)
def fresh_onnx_servers():
    yield
    hps.onnx.runtime.clear_servers()


class Recommender(nn.Module):
    """nn.Embedding, EmbeddingBag sum / mean / max, and one table read by two lookups."""

    def __init__(self):
        super().__init__()
        self.user = nn.Embedding(40, 8)
        self.bags = nn.ModuleList([nn.EmbeddingBag(30, 8, mode="sum"), nn.EmbeddingBag(35, 8, mode="mean"),
                                   nn.EmbeddingBag(25, 8, mode="max")])
        self.item = nn.Embedding(50, 8)   # used twice: one table, two lookups
        self.top = nn.Linear(8, 1)

    def forward(self, user, bags, item_a, item_b):
        x = self.user(user).sum(1) + self.item(item_a) * self.item(item_b)
        for i, bag in enumerate(self.bags):
            x = x + bag(bags[:, i, :])
        return self.top(x).squeeze(1)


def inputs(batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"user": torch.randint(0, 40, (batch, 3), generator=g),
            "bags": torch.randint(0, 25, (batch, 3, 4), generator=g),
            "item_a": torch.randint(0, 50, (batch,), generator=g),
            "item_b": torch.randint(0, 50, (batch,), generator=g)}


def export(model: nn.Module, example: dict, path, dynamo: bool = False) -> str:
    names = list(example)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            batch = torch.export.Dim("batch")
            torch.onnx.export(model, tuple(example.values()), str(path), dynamo=True, input_names=names,
                              output_names=["y"], dynamic_shapes=tuple({0: batch} for _ in names), verbose=False)
        else:
            torch.onnx.export(model, tuple(example.values()), str(path), dynamo=False, input_names=names,
                              output_names=["y"], dynamic_axes={n: {0: "batch"} for n in names})
    return str(path)


def run(path, feed: dict, key_dtype=np.int64, **kwargs) -> np.ndarray:
    sess = hps.onnx.session(path, **kwargs)
    (y,) = sess.run(None, {k: v.numpy().astype(key_dtype) for k, v in feed.items()})
    return y


@pytest.fixture(scope="module")
def recommender(tmp_path_factory):
    torch.manual_seed(0)
    model = Recommender().eval()
    path = export(model, inputs(4), tmp_path_factory.mktemp("export") / "rec.onnx")
    return model, path


def test_torch_export_surgery_matches_torch(recommender, tmp_path):
    model, path = recommender
    report = hps.onnx.replace_embeddings(path, tmp_path / "rec.hps.onnx", tmp_path / "tables", "rec")
    by_init = {t.initializer: t for t in report.replaced}
    assert sorted(by_init) == ["bags.0.weight", "bags.1.weight", "bags.2.weight", "item.weight", "user.weight"]
    assert [t.table_id for t in report.replaced] == list(range(5))
    assert len(by_init["item.weight"].nodes) == 2                       # shared: one table, two lookups
    assert by_init["user.weight"].kinds == ["gather+ReduceSum"]
    for bag in ("bags.0.weight", "bags.1.weight", "bags.2.weight"):  # TorchScript exporter: Loop per bag
        assert by_init[bag].kinds[0].startswith("loop-bag: lookup hoisted")
    assert (by_init["bags.1.weight"].rows, by_init["bags.1.weight"].dim) == (35, 8)
    assert by_init["user.weight"].table == "user"
    # The tables hold the weights, keyed by row index.
    keys, rows = hps.read_sparse_model(by_init["bags.2.weight"].folder, 8)
    np.testing.assert_array_equal(keys, np.arange(25))
    np.testing.assert_array_equal(rows, model.bags[2].weight.detach().numpy())
    # No weight is left in the graph, and the graph passes the checker with the hps domain declared.
    out = onnx.load(tmp_path / "rec.hps.onnx")
    assert not [i.name for i in out.graph.initializer if i.name.endswith(".weight") and "top" not in i.name]
    assert ("hps", 1) in [(o.domain, o.version) for o in out.opset_import]
    # HugeCTR's plugin fields, typed as its plugin reads them (strings and ints), table ids in order.
    nodes = [n for n in out.graph.node if n.op_type == "HPS_TRT"]
    assert len(nodes) == 6 and {n.domain for n in nodes} == {"hps"}
    for n in nodes:
        kinds = {a.name: a.type for a in n.attribute}
        assert kinds == {"ps_config_file": onnx.AttributeProto.STRING, "model_name": onnx.AttributeProto.STRING,
                         "table_id": onnx.AttributeProto.INT, "emb_vec_size": onnx.AttributeProto.INT}
    fields = [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in nodes]
    assert {f["model_name"] for f in fields} == {b"rec"} and {f["emb_vec_size"] for f in fields} == {8}
    assert sorted({f["table_id"] for f in fields}) == [0, 1, 2, 3, 4]
    assert out.ir_version <= 13
    config = json.load(open(report.config))
    assert config["supportlonglong"] is True
    assert config["models"][0]["embedding_vecsize_per_table"] == [8] * 5

    feed = inputs(33, seed=1)
    with torch.no_grad():
        expected = model(**feed).numpy()
    got = run(tmp_path / "rec.hps.onnx", feed)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-6


def test_int32_keys_retype_the_inputs(recommender, tmp_path):
    model, path = recommender
    report = hps.onnx.replace_embeddings(path, tmp_path / "rec32.onnx", tmp_path / "tables", "rec", key_dtype="int32")
    assert sorted(report.key_inputs) == ["bags", "item_a", "item_b", "user"]
    out = onnx.load(tmp_path / "rec32.onnx")
    assert {i.name: i.type.tensor_type.elem_type for i in out.graph.input} == \
        {n: onnx.TensorProto.INT32 for n in ("user", "bags", "item_a", "item_b")}
    assert json.load(open(report.config))["supportlonglong"] is False
    feed = inputs(17, seed=2)
    with torch.no_grad():
        expected = model(**feed).numpy()
    assert np.abs(run(tmp_path / "rec32.onnx", feed, np.int32) - expected).max() <= 1e-6
    with pytest.raises(Exception, match="int32|INT32|tensor\\(int32\\)"):  # onnxruntime refuses int64 keys now
        run(tmp_path / "rec32.onnx", feed, np.int64)


def test_dynamo_export(tmp_path):
    """The dynamo exporter puts every lookup, bags included, at the top level."""
    class Small(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(20, 4)
            self.bag = nn.EmbeddingBag(30, 4, mode="mean")

        def forward(self, ids, bag_ids):
            return self.emb(ids).sum(1) + self.bag(bag_ids)

    torch.manual_seed(1)
    model = Small().eval()
    example = {"ids": torch.randint(0, 20, (4, 3)), "bag_ids": torch.randint(0, 30, (4, 5))}
    path = export(model, example, tmp_path / "small.onnx", dynamo=True)
    report = hps.onnx.replace_embeddings(path, tmp_path / "small.hps.onnx", tmp_path / "tables", "small",
                                         key_dtype="int32")
    assert [t.table for t in report.replaced] == ["emb", "bag"]
    assert all(k.startswith("gather") for t in report.replaced for k in t.kinds)
    feed = {"ids": torch.randint(0, 20, (6, 3)), "bag_ids": torch.randint(0, 30, (6, 5))}
    with torch.no_grad():
        expected = model(**feed).numpy()
    assert np.abs(run(tmp_path / "small.hps.onnx", feed, np.int32) - expected).max() <= 1e-6


def test_dlrm_example_predicts_the_same(tmp_path):
    """The DLRM of examples/dlrm_torch.py, exported, surgered and run by onnxruntime."""
    import importlib.util
    import pathlib

    spec = importlib.util.spec_from_file_location(
        "dlrm_torch", pathlib.Path(__file__).resolve().parents[2] / "examples" / "dlrm_torch.py")
    dlrm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dlrm)
    torch.manual_seed(0)
    rows = [int(n) for n in np.random.default_rng(0).integers(50, 400, dlrm.SPARSE)]
    model = dlrm.DLRM(rows, 8)
    data = dlrm.SyntheticClicks(rows, 0)
    dlrm.train(model, data, steps=5, batch=64)
    dense, sparse, _ = data.batch(16)
    path = export(model, {"dense": dense, "sparse": sparse}, tmp_path / "dlrm.onnx")
    report = hps.onnx.replace_embeddings(path, tmp_path / "dlrm.hps.onnx", tmp_path / "tables", "dlrm",
                                         key_dtype="int32")
    assert len(report.replaced) == dlrm.SPARSE and not report.skipped
    dense, sparse, _ = data.batch(200)
    with torch.no_grad():
        expected = model(dense, sparse).numpy()
    sess = hps.onnx.session(tmp_path / "dlrm.hps.onnx")
    (got,) = sess.run(None, {"dense": dense.numpy(), "sparse": sparse.numpy().astype(np.int32)})
    assert np.abs(got - expected).max() <= 1e-6


def test_report_text_and_json(recommender, tmp_path):
    _, path = recommender
    report = hps.onnx.replace_embeddings(path, tmp_path / "r.onnx", tmp_path / "tables", "rec", tables=["user.weight"])
    assert [t.initializer for t in report.replaced] == ["user.weight"]
    left = {s.initializer: s.reason for s in report.skipped}
    assert "tables asked for" in left["item.weight"]
    text = str(report)
    assert "replaced  table 0 'user'" in text and "left" in text
    again = json.loads(report.to_json())
    assert again["replaced"][0]["initializer"] == "user.weight"
    assert again["ps_config_file"] == report.config


def test_ps_config_file_carried_and_overridden(recommender, tmp_path):
    model, path = recommender
    report = hps.onnx.replace_embeddings(path, tmp_path / "r.onnx", tmp_path / "tables", "rec",
                                         ps_config_file="/models/rec/ps.json")
    out = onnx.load(tmp_path / "r.onnx")
    carried = {onnx.helper.get_attribute_value(a) for n in out.graph.node if n.op_type == "HPS_TRT"
               for a in n.attribute if a.name == "ps_config_file"}
    assert carried == {b"/models/rec/ps.json"}
    feed = inputs(5)
    with pytest.raises(FileNotFoundError, match="/models/rec/ps.json"):
        run(tmp_path / "r.onnx", feed)
    with torch.no_grad():
        expected = model(**feed).numpy()
    assert np.abs(run(tmp_path / "r.onnx", feed, ps=report.config) - expected).max() <= 1e-6
    with hps.HPS(report.config, progress=False) as ps:
        assert np.abs(run(tmp_path / "r.onnx", feed, ps=ps) - expected).max() <= 1e-6


def test_nothing_to_replace(tmp_path):
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 3])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    onnx.save(onnx.helper.make_model(graph), tmp_path / "relu.onnx")
    with pytest.raises(NoEmbeddingsError, match="no embedding lookup to replace"):
        hps.onnx.replace_embeddings(tmp_path / "relu.onnx", tmp_path / "o.onnx", tmp_path / "t", "m")
    assert not (tmp_path / "o.onnx").exists() and not (tmp_path / "t").exists()


def test_bad_arguments(recommender, tmp_path):
    _, path = recommender
    with pytest.raises(ValueError, match="key_dtype must be 'int32' or 'int64', got 'int16'"):
        hps.onnx.replace_embeddings(path, tmp_path / "o.onnx", tmp_path / "t", "m", key_dtype="int16")
    with pytest.raises(ValueError, match="model_name"):
        hps.onnx.replace_embeddings(path, tmp_path / "o.onnx", tmp_path / "t", "a model")
    with pytest.raises(FileNotFoundError, match="missing.onnx: no such ONNX file"):
        hps.onnx.replace_embeddings(tmp_path / "missing.onnx", tmp_path / "o.onnx", tmp_path / "t", "m")
    (tmp_path / "junk.onnx").write_bytes(b"\x00not a model")
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        hps.onnx.replace_embeddings(tmp_path / "junk.onnx", tmp_path / "o.onnx", tmp_path / "t", "m")
    with pytest.raises(hps.ConfigError):  # a misspelt model key is refused when the config is checked
        hps.onnx.replace_embeddings(path, tmp_path / "o.onnx", tmp_path / "t", "m", gpucachee=0.5)


def test_cli(recommender, tmp_path, capsys):
    from hps.cli import main

    _, path = recommender
    code = main(["onnx-surgery", path, "--out", str(tmp_path / "c.onnx"), "--tables", str(tmp_path / "t"),
                 "--model", "rec", "--key-dtype", "int32", "--table", "user.weight", "--table", "item.weight", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert [t["initializer"] for t in report["replaced"]] == ["user.weight", "item.weight"]
    assert report["key_dtype"] == "int32" and (tmp_path / "c.onnx").is_file()

    assert main(["onnx-surgery", str(tmp_path / "c.onnx"), "--out", str(tmp_path / "d.onnx"), "--tables",
                 str(tmp_path / "t2"), "--model", "rec", "--table", "user.weight"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hps onnx-surgery: error: ") and "no embedding lookup to replace" in err
    assert main(["onnx-surgery", path, "--out", "x.onnx", "--tables", "t", "--model", "rec", "--key-dtype", "int8"]) == 2


def test_import_names_a_missing_package():
    """`import hps` never imports onnx; `import hps.onnx` without onnx-graphsurgeon says what to install."""
    import subprocess
    import sys

    code = ("import sys; import hps; assert 'onnx' not in sys.modules, 'import hps imported onnx'\n"
            "sys.modules['onnx_graphsurgeon'] = None\n"
            "try:\n    import hps.onnx\nexcept ImportError as e:\n    print(e)\nelse:\n    raise SystemExit('imported')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "hps.onnx needs the package 'onnx-graphsurgeon'" in done.stdout
    assert "pip install onnx-graphsurgeon==0.6.1" in done.stdout
