"""torch.ops.hps.lookup: opcheck, torch.compile(fullgraph=True), torch.export save/load (also in a
fresh process), on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import hps  # noqa: E402
import hps.torch  # noqa: E402
from hps.torch import LookupLayer, SparseLookupLayer  # noqa: E402

pytestmark = pytest.mark.usefixtures("fresh_torch_servers")

D = 8


@pytest.fixture
def config(tmp_path):
    """A config file with two tables of row-index keys; returns (path, [W0, W1])."""
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((400, D), dtype=np.float32)
    w1 = rng.standard_normal((100, 4), dtype=np.float32)
    hps.write_sparse_model(tmp_path / "tables" / "t0", np.arange(400), w0)
    hps.write_sparse_model(tmp_path / "tables" / "t1", np.arange(100), w1)
    path = tmp_path / "ps.json"
    path.write_text(json.dumps({"models": [{"model": "m", "sparse_files": ["tables/t0", "tables/t1"],
                                            "embedding_vecsize_per_table": [D, 4]}]}))
    return str(path), [torch.from_numpy(w0), torch.from_numpy(w1)]


class TwoTables(torch.nn.Module):
    """Both layer kinds and some dense work around them, as in a model."""

    def __init__(self, ps):
        super().__init__()
        self.a = LookupLayer(ps, "m", 0, D)
        self.b = SparseLookupLayer(ps, "m", 1, 4, "mean", padding_key=0)
        self.linear = torch.nn.Linear(D + 4, 1)

    def forward(self, ids, bags):
        return self.linear(torch.cat([self.a(ids).sum(1), self.b(bags)], dim=1))


def inputs(batch=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 400, (batch, 3), generator=g), torch.randint(0, 100, (batch, 5), generator=g)


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("shape", [(5,), (3, 4), (0, 2), ()])
def test_opcheck(config, shape, dtype):
    server = LookupLayer(config[0], "m", 0, D).server_id
    keys = torch.randint(0, 400, shape, dtype=dtype)
    torch.library.opcheck(torch.ops.hps.lookup.default, (keys, server, "m", 0, D))


def test_op_schema_is_functional():
    schema = torch.ops.hps.lookup.default._schema
    assert str(schema) == "hps::lookup(Tensor keys, str server, str model, int table, int emb_vec_size) -> Tensor"
    assert not schema.is_mutable


@pytest.mark.parametrize("dynamic", [False, True])
def test_compile_fullgraph(config, dynamic):
    torch.manual_seed(0)
    model = TwoTables(config[0]).eval()
    compiled = torch.compile(model, fullgraph=True, dynamic=dynamic)
    with torch.no_grad():
        for batch in (16, 9, 33):
            ids, bags = inputs(batch, seed=batch)
            torch.testing.assert_close(compiled(ids, bags), model(ids, bags), rtol=0, atol=1e-6)


def test_compile_sparse_layer_with_offsets(config):
    path, (_, w1) = config
    layer = SparseLookupLayer(path, "m", 1, 4, "sum", include_last_offset=True)
    keys, offsets = torch.tensor([1, 2, 3, 4, 5, 6]), torch.tensor([0, 2, 2, 6])
    got = torch.compile(layer, fullgraph=True)(keys, offsets)
    expected = torch.nn.EmbeddingBag.from_pretrained(w1, mode="sum", include_last_offset=True)(keys, offsets)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_compile_refuses_float_keys_at_trace_time(config):
    layer = LookupLayer(config[0], "m", 0, D)
    with pytest.raises(Exception, match="int32 or int64"):
        torch.compile(layer, fullgraph=True)(torch.zeros(3))


def test_export_save_load(config, tmp_path):
    torch.manual_seed(0)
    model = TwoTables(config[0]).eval()
    ids, bags = inputs()
    program = torch.export.export(model, (ids, bags))
    ops = [n.target for n in program.graph.nodes if n.op == "call_function"]
    assert ops.count(torch.ops.hps.lookup.default) == 2
    torch.export.save(program, tmp_path / "model.pt2")
    loaded = torch.export.load(tmp_path / "model.pt2").module()
    with torch.no_grad():
        torch.testing.assert_close(loaded(*inputs(16, seed=7)), model(*inputs(16, seed=7)), rtol=0, atol=1e-6)


def test_export_with_dynamic_batch(config):
    model = TwoTables(config[0]).eval()
    batch = torch.export.Dim("batch", min=2, max=4096)
    program = torch.export.export(model, inputs(), dynamic_shapes=({0: batch}, {0: batch}))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(*inputs(100, seed=3)), model(*inputs(100, seed=3)),
                                   rtol=0, atol=1e-6)


def run_fresh(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HPS_PROGRESS="0")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          timeout=300)


def test_exported_program_loads_in_a_fresh_process(config, tmp_path):
    """The config path is baked into the graph: a fresh process re-creates the server on first use."""
    torch.manual_seed(0)
    model = TwoTables(config[0]).eval()
    ids, bags = inputs(16, seed=5)
    torch.export.save(torch.export.export(model, (ids, bags)), tmp_path / "model.pt2")
    with torch.no_grad():
        expected = model(ids, bags)
    torch.save({"ids": ids, "bags": bags, "expected": expected}, tmp_path / "io.pt")
    result = run_fresh(f"""
        import torch, hps.torch
        io = torch.load({str(tmp_path / 'io.pt')!r})
        program = torch.export.load({str(tmp_path / 'model.pt2')!r})
        got = program.module()(io["ids"], io["bags"])
        print("max_abs_diff", float((got - io["expected"]).abs().max()))
    """)
    assert result.returncode == 0, result.stderr
    assert "max_abs_diff 0.0" in result.stdout or float(result.stdout.split()[-1]) <= 1e-6


def test_exported_program_of_a_dict_config_names_the_fix_in_another_process(config, tmp_path):
    with open(config[0]) as f:
        as_dict = json.load(f)
    as_dict["models"][0]["sparse_files"] = [str(tmp_path / "tables" / t) for t in ("t0", "t1")]
    layer = LookupLayer(as_dict, "m", 0, D)
    keys = torch.arange(10)
    torch.export.save(torch.export.export(layer, (keys,)), tmp_path / "local.pt2")
    result = run_fresh(f"""
        import torch, hps.torch
        torch.export.load({str(tmp_path / 'local.pt2')!r}).module()(torch.arange(10))
    """)
    assert result.returncode != 0
    assert "build the layers from a config file" in result.stderr


def test_fresh_process_needs_import_hps_torch(config, tmp_path):
    layer = LookupLayer(config[0], "m", 0, D)
    torch.export.save(torch.export.export(layer, (torch.arange(4),)), tmp_path / "l.pt2")
    result = run_fresh(f"""
        import torch
        torch.export.load({str(tmp_path / 'l.pt2')!r})
    """)
    assert result.returncode != 0 and "hps" in result.stderr
