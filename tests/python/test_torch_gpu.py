"""hps.torch with CUDA keys: parity, the current stream, deployed devices, compile and export.

Runs only where torch sees a GPU and hps was built with CUDA; skipped everywhere else.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import hps  # noqa: E402
import hps.torch  # noqa: E402
from hps.torch import LookupLayer, SparseLookupLayer, export_tables, swap_embeddings  # noqa: E402

CUDA = torch.cuda.is_available() and hps.cuda_device_count() > 0
pytestmark = [pytest.mark.usefixtures("fresh_torch_servers"), pytest.mark.gpu,
              pytest.mark.skipif(not CUDA, reason="needs a CUDA device and hps built with CUDA")]

N, D = 5000, 32


@pytest.fixture
def table(tmp_path):
    """(folder, weight on cuda:0) of a table with row-index keys."""
    weight = np.random.default_rng(0).standard_normal((N, D), dtype=np.float32)
    hps.write_sparse_model(tmp_path / "t0", np.arange(N), weight)
    return str(tmp_path / "t0"), torch.from_numpy(weight).cuda()


def config_file(tmp_path, folder, name="ps.json", **model_keys) -> str:
    entry = {"model": "m", "sparse_files": [folder], "embedding_vecsize_per_table": [D],
             "default_value_for_each_table": [-2.0], **model_keys}
    path = tmp_path / name
    path.write_text(json.dumps({"models": [entry]}))
    return str(path)


def cuda_keys(shape, dtype=torch.int64, seed=0, absent=0.1):
    g = torch.Generator().manual_seed(seed)
    keys = torch.randint(0, N, shape, generator=g)
    keys[torch.rand(shape, generator=g) < absent] = N + 7  # stored nowhere: the default row
    return keys.to(dtype).cuda()


def expected_rows(weight, keys):
    rows = torch.full((*keys.shape, D), -2.0, device=keys.device)
    present = keys < N
    rows[present] = weight[keys[present].long()]
    return rows


@pytest.mark.parametrize("gpucache", [True, False])
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (64, 26), (3, 4, 5)])
def test_cuda_keys_give_rows_on_the_same_device(tmp_path, table, gpucache, dtype, shape):
    folder, weight = table
    layer = LookupLayer(config_file(tmp_path, folder, gpucache=gpucache, gpucacheper=0.2), "m", 0, D)
    keys = cuda_keys(shape, dtype)
    rows = layer(keys)
    assert rows.device == keys.device and rows.dtype == torch.float32 and rows.shape == (*shape, D)
    assert torch.equal(rows, expected_rows(weight, keys))
    assert torch.equal(layer(keys), rows)  # again, now that misses may have been cached


def test_the_gpu_cache_serves_cuda_keys(tmp_path, table):
    folder, _ = table
    layer = LookupLayer(config_file(tmp_path, folder, gpucacheper=0.5), "m", 0, D)
    assert layer.ps.gpu_enabled
    keys = cuda_keys((4096,), absent=0)
    for _ in range(3):
        layer(keys)
    torch.cuda.synchronize()
    stats = layer.ps.stats()[0]
    assert stats["hits"]["gpu_cache"] > 0, stats


def test_lookup_runs_on_the_current_stream(tmp_path, table):
    """Keys written by a slow kernel on a side stream must be read after it, on that stream."""
    folder, weight = table
    layer = LookupLayer(config_file(tmp_path, folder, gpucacheper=0.2), "m", 0, D)
    source = cuda_keys((20000,), seed=3)
    layer(source[:10])  # builds what is lazily built before timing-sensitive work
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        torch.cuda._sleep(200_000_000)  # about 0.1 s of GPU time on `side`
        keys = source * 1  # written on `side` only after the sleep
        rows = layer(keys)
    side.synchronize()
    assert torch.equal(rows, expected_rows(weight, source))


@pytest.mark.parametrize("gpucache", [True, False])
def test_devices_outside_deployed_device_list_are_refused(tmp_path, table, gpucache):
    folder, _ = table
    if gpucache:
        if torch.cuda.device_count() < 2:
            pytest.skip("needs two GPUs")
        config = config_file(tmp_path, folder, deployed_device_list=[0])
        keys = cuda_keys((4,)).to("cuda:1")
        listed = r"\[0\]"
    else:
        # Without GPU caches the config may list a device this machine lacks; keys on cuda:0 are refused.
        config = config_file(tmp_path, folder, gpucache=False, deployed_device_list=[1])
        keys = cuda_keys((4,))
        listed = r"\[1\]"
    layer = LookupLayer(config, "m", 0, D)
    if hps.torch.OP_BACKEND == "cpp":  # the C++ op: torch's ValueError with the core's message
        with pytest.raises(ValueError, match=rf"device {keys.device.index} is not in models\[m\]\.deployed_device_list"):
            layer(keys)
        return
    with pytest.raises(hps.InvalidArgumentError, match=rf"cuda:{keys.device.index}, which is not in the "
                                                       rf"deployed_device_list of model 'm' \({listed}\)"):
        layer(keys)


def test_every_deployed_device_serves(tmp_path, table):
    if torch.cuda.device_count() < 2 or hps.cuda_device_count() < 2:
        pytest.skip("needs two GPUs")
    folder, weight = table
    layer = LookupLayer(config_file(tmp_path, folder, deployed_device_list=[0, 1]), "m", 0, D)
    for device in ("cuda:0", "cuda:1"):
        keys = cuda_keys((100,)).to(device)
        with torch.cuda.device(keys.device):
            rows = layer(keys)
        assert rows.device == keys.device
        assert torch.equal(rows.cpu(), expected_rows(weight, keys.to("cuda:0")).cpu())


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_sparse_layer_on_cuda_equals_embedding_bag(tmp_path, table, mode):
    folder, weight = table
    config = config_file(tmp_path, folder)
    bag = torch.nn.EmbeddingBag.from_pretrained(weight, mode=mode, padding_idx=5)
    padded = cuda_keys((300, 6), absent=0)
    padded[padded % 4 == 0] = 5
    got = SparseLookupLayer(config, "m", 0, D, mode, padding_key=5)(padded)
    torch.testing.assert_close(got, bag(padded), rtol=0, atol=1e-5)
    flat = cuda_keys((1000,), absent=0)
    offsets = torch.arange(0, 1000, 7, device="cuda")
    got = SparseLookupLayer(config, "m", 0, D, mode)(flat, offsets)
    expected = torch.nn.EmbeddingBag.from_pretrained(weight, mode=mode)(flat, offsets)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


class Small(torch.nn.Module):
    def __init__(self, config):
        super().__init__()
        self.a = LookupLayer(config, "m", 0, D)
        self.b = SparseLookupLayer(config, "m", 0, D, "sum")
        self.linear = torch.nn.Linear(2 * D, 1)

    def forward(self, ids, bags):
        return self.linear(torch.cat([self.a(ids).mean(1), self.b(bags)], 1))


def test_compile_and_export_on_cuda(tmp_path, table):
    folder, _ = table
    torch.manual_seed(0)
    model = Small(config_file(tmp_path, folder)).cuda().eval()
    ids, bags = cuda_keys((256, 4), absent=0), cuda_keys((256, 3), seed=1, absent=0)
    with torch.no_grad():
        expected = model(ids, bags)
        torch.testing.assert_close(torch.compile(model, fullgraph=True)(ids, bags), expected, rtol=1e-5, atol=1e-5)
        torch.export.save(torch.export.export(model, (ids, bags)), tmp_path / "small.pt2")
        loaded = torch.export.load(tmp_path / "small.pt2").module()
        torch.testing.assert_close(loaded(ids, bags), expected, rtol=1e-5, atol=1e-5)


def test_reduce_overhead_compile_keeps_the_lookup_out_of_cuda_graphs(tmp_path, table):
    folder, weight = table
    layer = LookupLayer(config_file(tmp_path, folder), "m", 0, D)
    compiled = torch.compile(lambda k: layer(k) * 2, mode="reduce-overhead", fullgraph=True)
    for seed in range(4):  # replays must see new keys, not the captured ones
        keys = cuda_keys((512,), seed=seed)
        assert torch.equal(compiled(keys), expected_rows(weight, keys) * 2)


def test_swap_round_trip_on_cuda(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.ModuleDict({"e": torch.nn.Embedding(3000, 16), "b": torch.nn.EmbeddingBag(2000, 16)}).cuda()
    ids = torch.randint(0, 3000, (128, 5), device="cuda")
    bags = torch.randint(0, 2000, (128, 4), device="cuda")
    with torch.no_grad():
        before = [model["e"](ids), model["b"](bags)]
    swap_embeddings(model, export_tables(model, tmp_path / "out", "m", gpucacheper=0.2))
    with torch.no_grad():
        after = [model["e"](ids), model["b"](bags)]
    assert after[0].device == ids.device
    assert max(float((a - b).abs().max()) for a, b in zip(after, before)) <= 1e-6


def test_lookup_captured_in_a_cuda_graph_replays_with_new_keys(tmp_path, table):
    """With the hash map as the only tier, a dynamic-cache lookup answers every key on the device
    (misses from the CPU-memory tier over PCIe), so torch.cuda.graph can capture it; each replay
    reads the keys tensor as it is then (docs/gpu_cache.md, "Capture")."""
    folder, weight = table
    layer = LookupLayer(config_file(tmp_path, folder, gpucacheper=0.2), "m", 0, D)
    static_keys = cuda_keys((4096,), dtype=torch.int32, seed=0)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # uncaptured warm-up (first launches), as torch recommends
        layer(static_keys)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_rows = layer(static_keys)
    for seed in range(1, 5):
        static_keys.copy_(cuda_keys((4096,), dtype=torch.int32, seed=seed))
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(static_rows, expected_rows(weight, static_keys)), f"replay {seed}"
