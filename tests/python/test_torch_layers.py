"""hps.torch layers on the CPU: parity with nn.Embedding / nn.EmbeddingBag, errors, server sharing."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import hps  # noqa: E402
import hps.torch  # noqa: E402
from hps.torch import InferenceOnlyError, LookupLayer, SparseLookupLayer  # noqa: E402

pytestmark = pytest.mark.usefixtures("fresh_torch_servers")

N, D = 500, 8


def write_rows_table(folder, n: int, dim: int, seed: int = 0) -> torch.Tensor:
    """A table whose keys are row indices 0..n-1, as export_tables writes; returns its weight."""
    weight = torch.from_numpy(np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32))
    hps.write_sparse_model(folder, np.arange(n), weight.numpy())
    return weight


def model_entry(name: str, folders, dims, **keys) -> dict:
    entry = {"model": name, "sparse_files": [str(f) for f in folders], "embedding_vecsize_per_table": dims}
    entry.update(keys)
    return entry


def write_config(path, *models) -> str:
    path.write_text(json.dumps({"supportlonglong": True, "models": list(models)}))
    return str(path)


@pytest.fixture
def weights(tmp_path):
    """Two tables (D=8 and D=4) of model "m" with the config on disk: (config path, [W0, W1])."""
    w0 = write_rows_table(tmp_path / "t0", N, D, seed=1)
    w1 = write_rows_table(tmp_path / "t1", 300, 4, seed=2)
    config = write_config(tmp_path / "ps.json",
                          model_entry("m", [tmp_path / "t0", tmp_path / "t1"], [D, 4],
                                      embedding_table_names=["users", "items"], default_value_for_each_table=[0.0, -1.0]))
    return config, [w0, w1]


def keys_like(shape, n=N, dtype=torch.int64, seed=3):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, n, shape)).to(dtype)


# ---- LookupLayer ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("shape", [(), (0,), (1,), (17,), (4, 26), (2, 3, 5), (0, 3)])
def test_lookup_equals_embedding(weights, shape, dtype):
    config, (w0, _) = weights
    layer = LookupLayer(config, "m", 0, D)
    keys = keys_like(shape, dtype=dtype)
    rows = layer(keys)
    expected = torch.nn.Embedding.from_pretrained(w0)(keys)
    assert rows.dtype == torch.float32 and rows.device == keys.device and rows.shape == (*shape, D)
    assert torch.equal(rows, expected)


def test_non_contiguous_keys(weights):
    config, (w0, _) = weights
    keys = keys_like((6, 10)).t()[::2]
    assert not keys.is_contiguous()
    assert torch.equal(LookupLayer(config, "m", 0, D)(keys), w0[keys])


def test_table_by_name_and_default_rows(weights):
    config, (_, w1) = weights
    layer = LookupLayer(config, "m", "items", 4)
    assert layer.table_id == 1 and layer.table_name == "items"
    keys = torch.tensor([0, 299, 300, 10**12, -5])
    rows = layer(keys)
    assert torch.equal(rows[:2], w1[[0, 299]])
    assert torch.equal(rows[2:], torch.full((3, 4), -1.0))  # absent keys get the table's default


def test_output_dtype_follows_the_module(weights):
    config, (w0, _) = weights
    keys = keys_like((5,))
    layer = LookupLayer(config, "m", 0, D, dtype=torch.bfloat16)
    assert layer(keys).dtype == torch.bfloat16 and layer.dtype == torch.bfloat16
    assert torch.equal(layer(keys), w0[keys].to(torch.bfloat16))
    layer.half()
    assert layer(keys).dtype == torch.float16
    assert torch.equal(layer.float()(keys), w0[keys])


@pytest.mark.parametrize("bad", [torch.tensor([1.0, 2.0]), torch.tensor([1, 2], dtype=torch.int16),
                                 torch.tensor([True]), torch.tensor([1, 2], dtype=torch.uint8)])
def test_wrong_key_dtype_is_a_clear_error(weights, bad):
    layer = LookupLayer(weights[0], "m", 0, D)
    with pytest.raises(TypeError, match="int32 or int64"):
        layer(bad)
    # The C++ op raises torch's TypeError (a C++ op cannot raise hps's classes).
    with pytest.raises(hps.InvalidArgumentError if hps.torch.OP_BACKEND == "python" else TypeError):
        layer(bad)


def test_wrong_table_model_and_size_are_clear_errors(weights):
    config = weights[0]
    with pytest.raises(hps.NotFoundError, match="table_id 2 is out of range"):
        LookupLayer(config, "m", 2, D)
    with pytest.raises(hps.NotFoundError, match="no table 'movies'.*users, items"):
        LookupLayer(config, "m", "movies", D)
    with pytest.raises(hps.NotFoundError, match="no model 'dlrm'"):
        LookupLayer(config, "dlrm", 0, D)
    with pytest.raises(hps.InvalidArgumentError, match="emb_vec_size 16 does not match table m/users.* 8 floats"):
        LookupLayer(config, "m", 0, 16)
    with pytest.raises(TypeError, match="emb_vec_size"):
        LookupLayer(config, "m", 0, 8.0)
    with pytest.raises(TypeError, match="table_id"):
        LookupLayer(config, "m", 0.0, D)
    with pytest.raises(hps.HpsError, match="missing"):
        LookupLayer(str(config) + ".missing", "m", 0, D)


def test_the_op_checks_its_arguments_too(weights):
    server = LookupLayer(weights[0], "m", 0, D).server_id
    keys = keys_like((3,))
    # The C++ op raises torch's ValueError / IndexError (bases of hps's InvalidArgumentError and,
    # for IndexError, a LookupError like hps.NotFoundError), the message naming the hps status.
    python_op = hps.torch.OP_BACKEND == "python"
    invalid, not_found = (hps.InvalidArgumentError, hps.NotFoundError) if python_op else (ValueError, IndexError)
    with pytest.raises(invalid, match="emb_vec_size 4 does not match"):
        torch.ops.hps.lookup(keys, server, "m", 0, 4)
    with pytest.raises(not_found, match="out of range"):
        torch.ops.hps.lookup(keys, server, "m", 7, D)
    with pytest.raises(not_found, match="no parameter server 'hps-json:999999'"):
        torch.ops.hps.lookup(keys, "hps-json:999999", "m", 0, D)


def test_devices_not_deployed_are_refused(weights):
    """The check the op makes for CUDA keys (exercised with real devices in test_torch_gpu.py)."""
    served = hps.torch._registry.get(LookupLayer(weights[0], "m", 0, D).server_id)
    served.check_device("m", 0)  # the default deployed_device_list is [0]
    with pytest.raises(hps.InvalidArgumentError, match=r"cuda:1, which is not in the deployed_device_list.*\[0\]"):
        served.check_device("m", 1)


def test_asking_for_a_gradient_is_a_clear_error(weights):
    layer = LookupLayer(weights[0], "m", 0, D)
    with pytest.raises(InferenceOnlyError, match="inference-only"):
        layer.requires_grad_()
    with pytest.raises(RuntimeError, match="inference-only"):
        SparseLookupLayer(weights[0], "m", 0, D).requires_grad_(True)
    assert layer.requires_grad_(False) is layer
    with torch.enable_grad():
        rows = layer(keys_like((4,)))
    assert not rows.requires_grad and rows.grad_fn is None
    assert list(layer.parameters()) == []


# ---- SparseLookupLayer ---------------------------------------------------------------------------

def bag(weight, mode, **kw):
    return torch.nn.EmbeddingBag.from_pretrained(weight, mode=mode, **kw)


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("include_last_offset", [False, True])
def test_bags_with_offsets_equal_embedding_bag(weights, mode, dtype, include_last_offset):
    config, (w0, _) = weights
    rng = np.random.default_rng(4)
    lengths = rng.integers(0, 6, 40)
    lengths[[0, 7, 8, 39]] = 0  # empty bags, also first and last
    keys = keys_like((int(lengths.sum()),), dtype=dtype)
    offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)[:-1]])).to(dtype)
    if include_last_offset:
        offsets = torch.cat([offsets, torch.tensor([keys.numel()], dtype=dtype)])
    layer = SparseLookupLayer(config, "m", 0, D, mode, include_last_offset=include_last_offset)
    got = layer(keys, offsets)
    expected = bag(w0, mode, include_last_offset=include_last_offset)(keys, offsets)
    assert got.shape == (40, D)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert torch.equal(got[0], torch.zeros(D)) and torch.equal(got[-1], torch.zeros(D))


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("width", [1, 5])
def test_padded_bags_equal_embedding_bag(weights, mode, dtype, width):
    config, (w0, _) = weights
    pad = 7
    keys = keys_like((30, width), dtype=dtype)
    mask = torch.from_numpy(np.random.default_rng(5).random((30, width)) < 0.4)
    keys[mask] = pad
    keys[3] = pad  # a bag of padding only
    layer = SparseLookupLayer(config, "m", 0, D, mode, padding_key=pad)
    got = layer(keys)
    expected = bag(w0, mode, padding_idx=pad)(keys)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert torch.equal(got[3], torch.zeros(D))


@pytest.mark.parametrize("width", [1, 4])
def test_2d_bags_without_padding(weights, width):
    config, (w0, _) = weights
    keys = keys_like((25, width))
    for mode in ("sum", "mean"):
        torch.testing.assert_close(SparseLookupLayer(config, "m", 0, D, mode)(keys), bag(w0, mode)(keys),
                                   rtol=0, atol=1e-6)


def test_padding_key_in_1d_bags_and_per_sample_weights(weights):
    config, (w0, _) = weights
    keys = torch.tensor([1, 2, 3, 2, 9, 2, 4])
    offsets = torch.tensor([0, 3, 3, 5])
    weights_ = torch.rand(7)
    expected = bag(w0, "sum", padding_idx=2)(keys, offsets, per_sample_weights=weights_)
    got = SparseLookupLayer(config, "m", 0, D, "sum", padding_key=2)(keys, offsets, per_sample_weights=weights_)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    mean = SparseLookupLayer(config, "m", 0, D, "mean", padding_key=2)(keys, offsets)
    torch.testing.assert_close(mean, bag(w0, "mean", padding_idx=2)(keys, offsets), rtol=0, atol=1e-6)


def test_all_bags_empty(weights):
    config = weights[0]
    got = SparseLookupLayer(config, "m", 0, D, "mean")(torch.tensor([], dtype=torch.int64), torch.tensor([0, 0, 0]))
    assert torch.equal(got, torch.zeros(3, D))


def test_sparse_layer_argument_errors(weights):
    config = weights[0]
    with pytest.raises(ValueError, match="combiner"):
        SparseLookupLayer(config, "m", 0, D, "sqrtn")
    layer = SparseLookupLayer(config, "m", 0, D, "sum")
    with pytest.raises(ValueError, match="offsets"):
        layer(keys_like((5,)))
    with pytest.raises(ValueError, match="offsets must be None"):
        layer(keys_like((5, 2)), torch.tensor([0]))
    with pytest.raises(ValueError, match="1-D .* or 2-D"):
        layer(keys_like((2, 2, 2)))
    with pytest.raises(TypeError, match="int32 or int64"):
        layer(torch.tensor([[1.0]]))
    with pytest.raises(ValueError, match="per_sample_weights need combiner='sum'"):
        SparseLookupLayer(config, "m", 0, D, "mean")(keys_like((4,)), torch.tensor([0, 2]), torch.ones(4))


# ---- servers -------------------------------------------------------------------------------------

def test_layers_on_one_config_share_one_server(weights, tmp_path):
    config = weights[0]
    a = LookupLayer(config, "m", 0, D)
    b = SparseLookupLayer(config, "m", 1, 4)
    c = LookupLayer(hps.Config(config), "m", 0, D)
    assert a.ps is b.ps is c.ps is hps.torch.get_server(config)
    assert a.server_id == str(tmp_path / "ps.json")
    as_dict = json.loads((tmp_path / "ps.json").read_text())
    d = LookupLayer(as_dict, "m", 0, D)
    e = LookupLayer(dict(as_dict), "m", "users", D)
    assert d.ps is e.ps and d.ps is not a.ps
    assert d.server_id.startswith("hps-json:")  # the core registry's id of a config given as JSON
    with hps.HPS(as_dict) as same:
        assert d.server_id == e.server_id == same.server_id


def test_an_hps_instance_is_used_as_it_is(weights):
    config, (w0, _) = weights
    with hps.HPS(config) as ps:
        layer = LookupLayer(ps, "m", 0, D)
        assert layer.ps is ps and hps.torch.get_server(config) is ps  # it came from that file
        ps.update("m", 0, [3], np.full((1, D), 9.0, np.float32))
        assert torch.equal(layer(torch.tensor([3, 4])), torch.stack([torch.full((D,), 9.0), w0[4]]))
        other = hps.HPS(config)
        try:  # a second instance from the same file: the same core server, so the same id
            layer2 = LookupLayer(other, "m", 0, D)
            assert layer2.server_id == layer.server_id == str(config)
            assert torch.equal(layer2(torch.tensor([3])), torch.full((1, D), 9.0))
        finally:
            hps.torch.clear_servers()
            other.close()
        assert not ps.closed  # the registry never closes what it was given


def test_two_configs_in_one_process(tmp_path):
    """HugeCTR initialised once per process and silently ignored a second config."""
    wa = write_rows_table(tmp_path / "a", 50, 4, seed=10)
    wb = write_rows_table(tmp_path / "b", 60, 6, seed=11)
    config_a = write_config(tmp_path / "a.json", model_entry("shared_name", [tmp_path / "a"], [4]))
    config_b = write_config(tmp_path / "b.json", model_entry("shared_name", [tmp_path / "b"], [6]))
    la = LookupLayer(config_a, "shared_name", 0, 4)
    lb = LookupLayer(config_b, "shared_name", 0, 6)
    keys = torch.arange(50)
    assert torch.equal(la(keys), wa) and torch.equal(lb(keys), wb[:50])
    assert la.ps is not lb.ps


def test_concurrent_first_use_builds_one_server(weights):
    config = weights[0]
    got, errors = [], []

    def build():
        try:
            got.append(LookupLayer(config, "m", 0, D).ps)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=build) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(got) == 8 and all(ps is got[0] for ps in got)


def test_clear_servers_rebuilds_file_servers_on_next_use(weights):
    config, (w0, _) = weights
    layer = LookupLayer(config, "m", 0, D)
    first = layer.ps
    local = LookupLayer(hps.Config(json.loads(open(config).read())), "m", 0, D)
    hps.torch.clear_servers()
    assert first.closed
    keys = keys_like((6,))
    assert torch.equal(layer(keys), w0[keys]) and layer.ps is not first
    not_found = hps.NotFoundError if hps.torch.OP_BACKEND == "python" else IndexError  # the C++ op: torch's
    with pytest.raises(not_found, match="build the layers from a config file"):
        local(keys)


def test_import_hps_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, hps; assert 'torch' not in sys.modules, 'import hps imported torch'; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
