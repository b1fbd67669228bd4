"""hps.torch.MultiTableLookup and torch.ops.hps.lookup_tables: several tables in one call."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import hps  # noqa: E402
import hps.torch  # noqa: E402
from hps.torch import LookupLayer, MultiTableLookup  # noqa: E402

pytestmark = pytest.mark.usefixtures("fresh_torch_servers")

D, T = 8, 4


@pytest.fixture
def config(tmp_path):
    """T tables of D floats (keys = row index, each table its own rows) and one of another width."""
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal((300, D), dtype=np.float32) for _ in range(T)]
    for t, w in enumerate(weights):
        hps.write_sparse_model(tmp_path / f"t{t}", np.arange(300), w)
    hps.write_sparse_model(tmp_path / "narrow", np.arange(10), np.zeros((10, 2), np.float32))
    path = tmp_path / "ps.json"
    path.write_text(json.dumps({"models": [{
        "model": "m", "sparse_files": [f"t{t}" for t in range(T)] + ["narrow"],
        "embedding_vecsize_per_table": [D] * T + [2], "default_value_for_each_table": [0.5] * (T + 1)}]}))
    return str(path), [torch.from_numpy(w) for w in weights]


def keys_for(shape, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 320, (T, *shape), generator=g)  # some keys beyond the 300 stored ones


def expected(weights, keys):
    out = torch.full((*keys.shape, D), 0.5)
    for t in range(T):
        known = keys[t] < 300
        out[t][known] = weights[t][keys[t][known]]
    return out


@pytest.mark.parametrize("shape", [(16,), (5, 3), (0,)])
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
def test_equals_one_lookup_layer_per_table(config, shape, dtype):
    path, weights = config
    multi = MultiTableLookup(path, "m", list(range(T)), D)
    keys = keys_for(shape).to(dtype)
    rows = multi(keys)
    assert rows.shape == (T, *shape, D) and rows.dtype == torch.float32
    torch.testing.assert_close(rows, expected(weights, keys.long()), rtol=0, atol=0)
    singles = torch.stack([LookupLayer(path, "m", t, D)(keys[t]) for t in range(T)])
    assert torch.equal(rows, singles)


def test_tables_in_any_order_and_by_name(config):
    path, weights = config
    multi = MultiTableLookup(path, "m", ["sparse_embedding2", 0], D)
    keys = keys_for((7,))[:2]
    rows = multi(keys)
    assert torch.equal(rows[0], LookupLayer(path, "m", 2, D)(keys[0]))
    assert torch.equal(rows[1], LookupLayer(path, "m", 0, D)(keys[1]))


def test_errors(config):
    path, _ = config
    with pytest.raises(hps.InvalidArgumentError, match="emb_vec_size 8 does not match"):
        MultiTableLookup(path, "m", [0, T], D)  # the narrow table has 2 floats per row
    multi = MultiTableLookup(path, "m", [0, 1], D)
    with pytest.raises(ValueError, match=r"one row per table \(\[2, \.\.\.\]\)"):
        multi(keys_for((3,)))  # 4 rows of keys for 2 tables
    with pytest.raises(hps.KeyTypeError):
        multi(torch.zeros((2, 3)))
    with pytest.raises(hps.torch.InferenceOnlyError):
        multi.requires_grad_(True)


def test_opcheck_compile_and_export(config, tmp_path):
    path, weights = config
    multi = MultiTableLookup(path, "m", list(range(T)), D)
    keys = keys_for((6, 2))
    torch.library.opcheck(torch.ops.hps.lookup_tables.default, (keys, multi.server_id, "m", list(range(T)), D))

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.multi = multi

        def forward(self, k):
            return self.multi(k).sum(-1)

    net = Net()
    want = expected(weights, keys).sum(-1)
    torch.testing.assert_close(torch.compile(net, fullgraph=True)(keys), want)
    exported = torch.export.export(net, (keys,))
    torch.export.save(exported, tmp_path / "net.pt2")
    loaded = torch.export.load(tmp_path / "net.pt2")
    torch.testing.assert_close(loaded.module()(keys), want)


def test_torchscript(config):
    path, weights = config
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated in torch 2.13
        scripted = torch.jit.script(MultiTableLookup(path, "m", list(range(T)), D))
    keys = keys_for((5, 3))
    torch.testing.assert_close(scripted(keys), expected(weights, keys), rtol=0, atol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not (torch.cuda.is_available() and hps.cuda_device_count() > 0), reason="needs a CUDA device")
def test_on_the_gpu(config):
    path, weights = config
    multi = MultiTableLookup(path, "m", list(range(T)), D)
    keys = keys_for((4096,))
    rows = multi(keys.cuda())
    assert rows.is_cuda
    torch.testing.assert_close(rows.cpu(), expected(weights, keys), rtol=0, atol=0)
