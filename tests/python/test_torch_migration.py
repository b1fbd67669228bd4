"""export_tables / swap_embeddings round trips, and HugeCTR's `import hps_torch` (CPU)."""

from __future__ import annotations

import copy
import json
import shutil
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import hps  # noqa: E402
import hps.torch  # noqa: E402
from hps.torch import LookupLayer, SparseLookupLayer, export_tables, swap_embeddings, table_names  # noqa: E402

pytestmark = pytest.mark.usefixtures("fresh_torch_servers")

nn = torch.nn


class Recommender(nn.Module):
    """Every embedding flavour swap_embeddings must handle, in several kinds of containers."""

    def __init__(self):
        super().__init__()
        self.user = nn.Embedding(120, 8, padding_idx=0)
        self.bags = nn.ModuleList([nn.EmbeddingBag(50, 8, mode="sum"),
                                   nn.EmbeddingBag(60, 8, mode="mean", padding_idx=59),
                                   nn.EmbeddingBag(70, 8, mode="max")])
        self.by_name = nn.ModuleDict({"item": nn.Embedding(90, 4), "offset_bag": nn.EmbeddingBag(40, 4, mode="mean",
                                                                                                 include_last_offset=True)})
        self.shared = self.by_name["item"]  # the same module at a second path: one table
        self.top = nn.Sequential(nn.Linear(8 * 4 + 4 * 3, 16), nn.ReLU(), nn.Linear(16, 1))
        with torch.no_grad():
            self.user.weight[0] = 1.5  # a padding row that is not zero: Embedding still returns it

    def forward(self, user, sum_bag, mean_bag, max_bag, item, flat, offsets):
        parts = [self.user(user).sum(1), self.bags[0](sum_bag), self.bags[1](mean_bag), self.bags[2](max_bag),
                 self.by_name["item"](item), self.shared(item + 1), self.by_name["offset_bag"](flat, offsets)]
        return self.top(torch.cat(parts, dim=1))


def recommender_inputs(batch=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    mean_bag = torch.randint(0, 60, (batch, 4), generator=g)
    mean_bag[mean_bag % 3 == 0] = 59  # padding
    lengths = torch.randint(0, 4, (batch,), generator=g)
    flat = torch.randint(0, 40, (int(lengths.sum()),), generator=g)
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
    return (torch.randint(0, 120, (batch, 3), generator=g), torch.randint(0, 50, (batch, 2), generator=g),
            mean_bag, torch.randint(0, 70, (batch, 5), generator=g), torch.randint(0, 89, (batch,), generator=g),
            flat, offsets)


def trained_recommender():
    torch.manual_seed(0)
    return Recommender().eval()


def test_table_names_follow_module_paths():
    names = table_names(trained_recommender())
    assert names == {"user": "user", "bags.0": "bags-0", "bags.1": "bags-1", "bags.2": "bags-2",
                     "by_name.item": "by_name-item", "by_name.offset_bag": "by_name-offset_bag"}
    assert table_names(nn.Embedding(3, 2)) == {"": "embedding"}
    odd = nn.ModuleDict({"a b": nn.Embedding(2, 2), "a_b": nn.Embedding(2, 2)})
    got = table_names(odd)
    assert got["a_b"] == "a_b" and got["a b"].startswith("a_b-") and len(set(got.values())) == 2


def test_export_writes_tables_and_a_config(tmp_path):
    model = trained_recommender()
    path = export_tables(model, tmp_path / "out", "rec", gpucacheper=0.5)
    assert path == str(tmp_path / "out" / "ps.json")
    config = json.loads((tmp_path / "out" / "ps.json").read_text())
    entry = config["models"][0]
    assert config["supportlonglong"] is True and entry["model"] == "rec" and entry["gpucacheper"] == 0.5
    assert entry["embedding_table_names"] == list(table_names(model).values())
    assert entry["sparse_files"] == entry["embedding_table_names"]  # relative to the config's folder
    assert entry["embedding_vecsize_per_table"] == [8, 8, 8, 8, 4, 4]
    keys, rows, meta = hps.read_sparse_model(tmp_path / "out" / "bags-1", with_meta=True)
    assert np.array_equal(keys, np.arange(60)) and meta is None
    assert np.array_equal(rows, model.bags[1].weight.detach().numpy())


def test_round_trip_predicts_the_same(tmp_path):
    model = trained_recommender()
    x = recommender_inputs()
    with torch.no_grad():
        before = model(*x)
    config = export_tables(model, tmp_path / "out", "rec")
    swapped = swap_embeddings(model, config)
    assert swapped is model
    assert isinstance(model.user, LookupLayer) and isinstance(model.by_name["item"], LookupLayer)
    assert model.shared is model.by_name["item"]
    kinds = [(b.combiner, b.padding_key, b.include_last_offset) for b in [*model.bags, model.by_name["offset_bag"]]]
    assert kinds == [("sum", None, False), ("mean", 59, False), ("max", None, False), ("mean", None, True)]
    assert not any(isinstance(m, (nn.Embedding, nn.EmbeddingBag)) for m in model.modules())
    with torch.no_grad():
        after = model(*x)
        other = model(*recommender_inputs(64, seed=9))
    assert float((after - before).abs().max()) <= 1e-6
    assert other.shape == (64, 1)


def test_swapped_float32_embeddings_on_the_cpu_give_the_same_bits(tmp_path):
    """docs/torch.md: on the CPU every kind of float32 embedding gives nn.Embedding's / EmbeddingBag's
    exact results, except for a "sum" with both padding_idx and per_sample_weights (within 1e-6)."""
    torch.manual_seed(0)
    originals = nn.ModuleDict({"embedding": nn.Embedding(200, 16, padding_idx=0)})
    for mode in ("sum", "mean", "max"):
        for padding_idx in (None, 0):
            for last in (False, True):
                originals[f"{mode}-{padding_idx}-{last}"] = nn.EmbeddingBag(
                    200, 16, mode=mode, padding_idx=padding_idx, include_last_offset=last)
    swapped = swap_embeddings(copy.deepcopy(originals), export_tables(originals, tmp_path, "m"))
    g = torch.Generator().manual_seed(1)
    ends = torch.randint(0, 8, (40,), generator=g).cumsum(0)
    flat = torch.randint(0, 200, (int(ends[-1]),), generator=g)
    flat[torch.rand(flat.shape, generator=g) < 0.3] = 0  # padding, where padding_idx is 0
    weights = torch.rand(flat.shape, generator=g)
    padded = flat[:120].reshape(30, 4)
    bounds = torch.cat([torch.zeros(1, dtype=torch.int64), ends])  # include_last_offset's; the others' lack the end
    with torch.no_grad():
        assert torch.equal(swapped["embedding"](padded), originals["embedding"](padded))
        for name, bag in list(originals.items())[1:]:
            offsets = bounds if bag.include_last_offset else bounds[:-1]
            calls = [(flat, offsets, None)]
            if not bag.include_last_offset:
                calls.append((padded, None, None))
            if bag.mode == "sum":
                calls.append((flat, offsets, weights))
            for args in calls:
                got, expected = swapped[name](*args), bag(*args)
                if args[2] is not None and bag.padding_idx is not None:
                    # The layer zeroes padding rows and sums them; EmbeddingBag skips them in another
                    # kernel that rounds differently.
                    assert float((got - expected).abs().max()) <= 1e-6, name
                else:
                    assert torch.equal(got, expected), name


def swapped_recommender(tmp_path):
    """The trained recommender with its embeddings swapped for hps lookups, its inputs, and what it
    predicted before the swap."""
    model = trained_recommender()
    x = recommender_inputs()
    with torch.no_grad():
        before = model(*x)
    swap_embeddings(model, export_tables(model, tmp_path / "out", "rec"))
    return model, x, before


def test_swapped_model_exports_and_loads(tmp_path):
    model, x, before = swapped_recommender(tmp_path)
    torch.export.save(torch.export.export(model, x), tmp_path / "rec.pt2")
    with torch.no_grad():
        after = torch.export.load(tmp_path / "rec.pt2").module()(*x)
    assert float((after - before).abs().max()) <= 1e-6


def test_the_exported_folder_can_move(tmp_path):
    model = trained_recommender()
    export_tables(model, tmp_path / "a", "rec")
    shutil.move(tmp_path / "a", tmp_path / "b")
    x = recommender_inputs()
    with torch.no_grad():
        before = model(*x)
        after = swap_embeddings(model, tmp_path / "b" / "ps.json", "rec")(*x)
    assert float((after - before).abs().max()) <= 1e-6


def test_swap_into_a_server_given_as_hps(tmp_path):
    model = trained_recommender()
    x = recommender_inputs()
    with torch.no_grad():
        before = model(*x)
    with hps.HPS(export_tables(model, tmp_path / "out", "rec")) as ps:
        swap_embeddings(model, ps)
        assert model.user.ps is ps
        with torch.no_grad():
            assert float((model(*x) - before).abs().max()) <= 1e-6


def test_half_and_bfloat16_weights_keep_their_dtype(tmp_path):
    for dtype in (torch.float16, torch.bfloat16):
        emb = nn.Embedding(30, 4).to(dtype)
        bag = nn.EmbeddingBag(30, 4, mode="sum").to(dtype)
        model = nn.ModuleDict({"e": emb, "b": bag})
        keys = torch.randint(0, 30, (10, 3))
        expected_e, expected_b = emb(keys), bag(keys)
        swap_embeddings(model, export_tables(model, tmp_path / str(dtype), "m"))
        got_e, got_b = model["e"](keys), model["b"](keys)
        assert got_e.dtype == dtype and torch.equal(got_e, expected_e)
        assert got_b.dtype == dtype
        torch.testing.assert_close(got_b, expected_b)  # pooled in float32 here, in dtype by EmbeddingBag


def test_a_model_that_is_an_embedding(tmp_path):
    emb = nn.Embedding(10, 3)
    layer = swap_embeddings(emb, export_tables(emb, tmp_path, "m"))
    keys = torch.arange(10)
    assert isinstance(layer, LookupLayer) and layer.table_name == "embedding"
    assert torch.equal(layer(keys), emb.weight.detach())


def test_swap_checks_names_sizes_and_models(tmp_path):
    model = trained_recommender()
    config = export_tables(model, tmp_path / "out", "rec")
    other = nn.ModuleDict({"user": nn.Embedding(120, 16)})
    with pytest.raises(hps.InvalidArgumentError, match="module 'user': emb_vec_size 16 does not match"):
        swap_embeddings(other, config)
    with pytest.raises(KeyError, match="no table given for module 'misc'"):
        swap_embeddings(nn.ModuleDict({"misc": nn.Embedding(3, 8)}), config, tables={"user": "user"})
    renamed = nn.ModuleDict({"u": nn.Embedding(120, 8)})
    layer = swap_embeddings(renamed, config, tables={"u": "user"})["u"]
    assert layer.table_name == "user"
    with pytest.raises(hps.NotFoundError, match="no table 'u'"):
        swap_embeddings(nn.ModuleDict({"u": nn.Embedding(120, 8)}), config)
    with pytest.raises(ValueError, match="max_norm"):
        swap_embeddings(nn.ModuleDict({"user": nn.Embedding(120, 8, max_norm=1.0)}), config)
    with pytest.raises(ValueError, match="no nn.Embedding"):
        swap_embeddings(nn.Linear(2, 2), config)
    with pytest.raises(ValueError, match="no nn.Embedding"):
        export_tables(nn.Linear(2, 2), tmp_path / "none", "m")
    two_models = {"models": [{"model": n, "sparse_files": [str(tmp_path / "out" / "user")],
                              "embedding_table_names": ["user"], "embedding_vecsize_per_table": [8]}
                             for n in ("a", "b")]}
    with pytest.raises(ValueError, match="2 models.*model_name"):
        swap_embeddings(nn.ModuleDict({"user": nn.Embedding(120, 8)}), two_models)
    assert swap_embeddings(nn.ModuleDict({"user": nn.Embedding(120, 8)}), two_models, "b")["user"].model_name == "b"


def test_export_refuses_a_config_that_would_not_load(tmp_path):
    with pytest.raises(hps.ConfigError, match="gpucacheperr"):
        export_tables(nn.Embedding(4, 2), tmp_path, "m", gpucacheperr=0.5)
    path = export_tables(nn.Embedding(4, 2), tmp_path, "m", config_name="serve.json",
                         server_keys={"volatile_db": {"type": "hash_map", "num_partitions": 2}})
    assert hps.Config(path).to_dict()["volatile_db"]["num_partitions"] == 2


# ---- HugeCTR compatibility -----------------------------------------------------------------------

def test_import_hps_torch_runs_hugectr_code(tmp_path):
    import hps_torch

    emb = nn.Embedding(100, 16)
    ps_config_file = export_tables(nn.ModuleDict({"sparse_embedding0": emb}), tmp_path, "demo")
    # As in HugeCTR's hps_torch notebooks: positional (ps_config_file, model_name, table_id, emb_vec_size).
    layer = hps_torch.LookupLayer(ps_config_file, "demo", 0, 16)
    keys = torch.randint(0, 100, (8, 26), dtype=torch.int64)
    assert torch.equal(layer(keys), emb(keys))
    assert hps_torch.LookupLayer is LookupLayer and hps_torch.SparseLookupLayer is SparseLookupLayer


def test_hugectr_op_name_is_registered(tmp_path, monkeypatch):
    """docs/torch.md: `import hps.torch` registers HugeCTR's op name (with either op backend)."""
    emb = nn.Embedding(100, 16)
    export_tables(nn.ModuleDict({"sparse_embedding0": emb}), tmp_path, "demo")
    monkeypatch.chdir(tmp_path)  # HugeCTR's relative ps_config_file: against the working directory
    keys = torch.randint(0, 100, (8, 26))
    assert torch.equal(torch.ops.hps_torch.hps_embedding_lookup(keys, "ps.json", "demo", 0, 16), emb(keys))


def script(module):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated in torch 2.13
        return torch.jit.script(module)


def test_hps_torch_layer_is_torchscript_compatible(tmp_path):
    """HugeCTR's layer could be scripted (torch.jit.script); so can this one, while TorchScript lasts."""
    import hps_torch

    emb = nn.Embedding(100, 16)
    layer = hps_torch.LookupLayer(export_tables(emb, tmp_path, "demo"), "demo", 0, 16)
    scripted = script(layer)
    keys = torch.randint(0, 100, (8, 26), dtype=torch.int32)
    assert torch.equal(scripted(keys), emb(keys))


@pytest.mark.parametrize("padding_idx", [None, 3])
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_sparse_layer_is_torchscript_compatible(tmp_path, mode, padding_idx):
    """docs/torch.md: torch.jit.script works on the layers, the bags' one too."""
    torch.manual_seed(0)
    bag = nn.EmbeddingBag(50, 8, mode=mode, padding_idx=padding_idx)
    layer = SparseLookupLayer(export_tables(bag, tmp_path, "demo"), "demo", 0, 8, mode, padding_key=padding_idx)
    scripted = script(layer)
    flat, offsets = torch.tensor([3, 5, 3, 7, 9, 11, 3, 2]), torch.tensor([0, 2, 2, 7])
    padded = torch.randint(0, 50, (6, 4))
    padded[0] = 3
    single = torch.randint(0, 50, (6, 1))  # bags of one key: forward's shortcut when there is no padding
    with torch.no_grad():
        for keys, offs in [(flat, offsets), (padded, None), (single, None)]:
            assert torch.equal(scripted(keys, offs), bag(keys, offs))
        if mode == "sum":
            weights = torch.linspace(0.1, 1.3, 8)
            assert torch.equal(scripted(flat, offsets, weights), layer(flat, offsets, weights))
            torch.testing.assert_close(scripted(flat, offsets, weights), bag(flat, offsets, weights), rtol=0, atol=1e-6)
        else:  # forward's own errors survive scripting, message and all
            with pytest.raises(torch.jit.Error, match=f"per_sample_weights need combiner='sum' .*not '{mode}'"):
                scripted(flat, offsets, torch.ones(8))


def test_swapped_model_with_bags_is_torchscript_compatible(tmp_path):
    model, x, before = swapped_recommender(tmp_path)
    scripted = script(model)
    scripted.save(tmp_path / "rec.pt")
    with torch.no_grad():
        after = scripted(*x)
        assert torch.equal(after, model(*x)) and float((after - before).abs().max()) <= 1e-6
        assert torch.equal(torch.jit.load(tmp_path / "rec.pt")(*x), after)
