"""The GPU lookup path against the CPU tier, bit for bit, on the same batches (marker: gpu)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import hps
from conftest import config_for, make_table

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not (torch.cuda.is_available() and hps.cuda_device_count() > 0),
                       reason="needs a CUDA device and a CUDA build of hps"),
]


def zipf_keys(rng, keys, size, alpha=1.05):
    ranks = np.arange(1, keys.size + 1, dtype=np.float64)
    cdf = np.cumsum(ranks ** -alpha)
    cdf /= cdf[-1]
    return keys[np.minimum(np.searchsorted(cdf, rng.random(size)), keys.size - 1)]


def pair(tmp_path, table, **model_keys):
    """A GPU-cached server and a CPU-only server (the oracle) over the same table."""
    gpu = hps.HPS(config_for([table], **model_keys))
    cpu = hps.HPS(config_for([table], gpucache=False))
    return gpu, cpu


def check(gpu, cpu, keys_np, dtype=torch.int64):
    keys = torch.from_numpy(keys_np).to(dtype).cuda()
    rows = gpu.lookup("m", 0, keys)
    assert rows.is_cuda and rows.dtype == torch.float32 and tuple(rows.shape) == keys_np.shape + (gpu.dim("m", 0),)
    torch.cuda.current_stream().synchronize()
    expected = cpu.lookup("m", 0, keys_np)
    np.testing.assert_array_equal(rows.cpu().numpy(), expected)


@pytest.mark.parametrize("ratio", [0.01, 0.05, 0.2, 0.5, 1.0])
@pytest.mark.parametrize("dist", ["uniform", "zipf"])
def test_dynamic_cache_equals_cpu_tier(tmp_path, ratio, dist):
    table = make_table(tmp_path / "t", 20000, 16, default=-3.0)
    gpu, cpu = pair(tmp_path, table, gpucacheper=ratio)
    rng = np.random.default_rng(0)
    absent = rng.integers(10**15, 10**16, 2000)
    for size in [0, 1, 7, 2048, 26624, 262144]:
        for _ in range(3):  # warm-up changes what the cache holds: check every round
            keys = zipf_keys(rng, table.keys, size) if dist == "zipf" else table.keys[rng.integers(0, 20000, size)]
            keys = np.where(rng.random(size) < 0.05, absent[rng.integers(0, absent.size, size)], keys)
            check(gpu, cpu, keys)
    assert gpu.stats()[0]["hits"]["gpu_cache"] > 0


def test_one_million_keys_with_duplicates(tmp_path):
    table = make_table(tmp_path / "t", 50000, 8)
    gpu, cpu = pair(tmp_path, table, gpucacheper=0.2)
    rng = np.random.default_rng(1)
    check(gpu, cpu, table.keys[rng.integers(0, 1000, 1_000_000)])  # a thousand keys, many times each


@pytest.mark.parametrize("key64", [True, False])
def test_both_key_widths_and_extreme_keys(tmp_path, key64):
    if key64:
        special = np.array([np.iinfo(np.int64).max, np.iinfo(np.int64).min, -1, 0], np.int64)
    else:
        special = np.array([2**32 - 1, 0, 1, 2**31], np.int64)
    rng = np.random.default_rng(2)
    keys = np.unique(np.concatenate([special, rng.integers(0, 2**31, 5000)]))
    rows = rng.standard_normal((keys.size, 4), dtype=np.float32)
    hps.write_sparse_model(tmp_path / "t", keys, rows)
    config = {"supportlonglong": key64,
              "models": [{"model": "m", "sparse_files": [str(tmp_path / "t")], "embedding_vecsize_per_table": [4],
                          "gpucacheper": 0.5}]}
    gpu = hps.HPS(config)
    cpu_config = dict(config, models=[dict(config["models"][0], gpucache=False)])
    cpu = hps.HPS(cpu_config)
    q = np.concatenate([special, keys[rng.integers(0, keys.size, 3000)], special])
    for _ in range(2):
        check(gpu, cpu, q)
        if not key64:
            check(gpu, cpu, q.astype(np.uint32).view(np.int32), torch.int32)
    if not key64:
        with pytest.raises(hps.InvalidArgumentError):
            gpu.lookup("m", 0, torch.tensor([2**33], dtype=torch.int64, device="cuda"))


def test_static_cache_answers_unknown_keys_with_the_default(tmp_path):
    table = make_table(tmp_path / "t", 30000, 32, default=0.25)
    gpu, cpu = pair(tmp_path, table, embedding_cache_type="static")
    rng = np.random.default_rng(3)
    q = np.concatenate([table.keys[rng.integers(0, 30000, 100000)], rng.integers(10**15, 10**16, 1000)])
    check(gpu, cpu, q)
    s = gpu.stats()[0]
    assert s["hits"]["gpu_cache"] == 100000
    # Device calls are timed as what they are (host time of the call), apart from host lookups.
    assert s["device_call_latency_seconds"]["count"] == s["lookups"] == 1
    assert s["latency_seconds"]["sum"] == 0
    assert 'hps_device_call_latency_seconds_count{model="m",table=' in gpu.prometheus()


def test_fp16_storage_returns_rows_rounded_to_half(tmp_path):
    table = make_table(tmp_path / "t", 5000, 16)
    gpu = hps.HPS(config_for([table], embedding_cache_dtype="float16", gpucacheper=1.0))
    keys = table.keys[:2000]
    rows = gpu.lookup("m", 0, torch.from_numpy(keys).cuda()).cpu().numpy()
    np.testing.assert_array_equal(rows, table.rows[:2000].astype(np.float16).astype(np.float32))


def test_updates_reach_every_cache_and_lookups_see_whole_rows(tmp_path):
    dim = 32
    table = make_table(tmp_path / "t", 8000, dim)
    gpu = hps.HPS(config_for([table], gpucacheper=0.3, hit_rate_threshold=0.5))
    errors, stop = [], threading.Event()

    def updater():
        rng = np.random.default_rng(4)
        version = 0
        while not stop.is_set():
            version -= 1
            keys = table.keys[rng.integers(0, table.keys.size, 512)]
            gpu.update("m", 0, keys, np.full((512, dim), version, np.float32))

    def reader(seed):
        rng = np.random.default_rng(seed)
        stream = torch.cuda.Stream()
        with torch.cuda.stream(stream):
            while not stop.is_set():
                pos = rng.integers(0, table.keys.size, 4096)
                rows = gpu.lookup("m", 0, torch.from_numpy(table.keys[pos]).cuda()).cpu().numpy()
                ok = (rows == table.rows[pos]).all(1) | ((rows == rows[:, :1]).all(1) & (rows[:, 0] < 0))
                if not ok.all():
                    errors.append(int(np.flatnonzero(~ok)[0]))
                    return

    threads = [threading.Thread(target=updater)] + [threading.Thread(target=reader, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    time.sleep(3)
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    # After update() returns, every device answers the new rows.
    keys = table.keys[:100]
    gpu.update("m", 0, keys, np.full((100, dim), 7.0, np.float32))
    rows = gpu.lookup("m", 0, torch.from_numpy(keys).cuda()).cpu().numpy()
    np.testing.assert_array_equal(rows, np.full((100, dim), 7.0, np.float32))


def test_erase_and_refresh(tmp_path):
    table = make_table(tmp_path / "t", 4000, 8, default=-1.0)
    gpu, cpu = pair(tmp_path, table, gpucacheper=1.0, cache_refresh_percentage_per_iteration=0.25)
    keys = table.keys[:50]
    gpu.erase("m", 0, keys)
    cpu.erase("m", 0, keys)
    check(gpu, cpu, table.keys[:200])
    gpu.refresh("m")
    check(gpu, cpu, table.keys[:2000])


def test_cupy_arrays(tmp_path):
    cupy = pytest.importorskip("cupy")
    table = make_table(tmp_path / "t", 3000, 8)
    gpu, cpu = pair(tmp_path, table)
    keys = table.keys[:500]
    rows = gpu.lookup("m", 0, cupy.asarray(keys))
    assert isinstance(rows, cupy.ndarray)
    np.testing.assert_array_equal(cupy.asnumpy(rows), cpu.lookup("m", 0, keys))


def test_device_not_deployed_is_an_error(tmp_path):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    table = make_table(tmp_path / "t", 100, 4)
    gpu = hps.HPS(config_for([table], deployed_device_list=[0]))
    with pytest.raises(hps.InvalidArgumentError, match="deployed_device_list"):
        gpu.lookup("m", 0, torch.tensor([1], device="cuda:1"))


def test_lookup_many_runs_the_tables_side_by_side(tmp_path):
    tables = [make_table(tmp_path / f"t{i}", 20000, 16, seed=i, default=float(i)) for i in range(6)]
    gpu = hps.HPS(config_for(tables, gpucacheper=0.3))
    cpu = hps.HPS(config_for(tables, gpucacheper=0.3, gpucache=False))
    rng = np.random.default_rng(5)
    stream = torch.cuda.Stream()
    for size in [0, 100, 26624, 200000]:
        keys = [zipf_keys(rng, t.keys, size) for t in tables]
        with torch.cuda.stream(stream):
            rows = gpu.lookup_many("m", list(range(6)), [torch.from_numpy(k).cuda() for k in keys])
        stream.synchronize()
        for r, k, i in zip(rows, keys, range(6)):
            np.testing.assert_array_equal(r.cpu().numpy(), cpu.lookup("m", i, k))


def test_misses_are_served_from_the_cpu_tier_on_the_device(tmp_path):
    """With the hash map as the only tier, a dynamic cache's misses are read from host memory by the
    GPU (docs/gpu_cache.md): stats count them under volatile_db, defaults under defaults, and the
    index's bytes per row are reported; the rows equal the CPU tier's."""
    table = make_table(tmp_path / "t", 20000, 16, default=-3.0)
    gpu, cpu = pair(tmp_path, table, gpucacheper=0.2)
    rng = np.random.default_rng(5)
    absent = rng.integers(10**15, 10**16, 100)
    for _ in range(5):
        keys = zipf_keys(rng, table.keys, 26624)
        keys = np.where(rng.random(keys.size) < 0.02, absent[rng.integers(0, absent.size, keys.size)], keys)
        check(gpu, cpu, keys)
    s = gpu.stats()[0]
    assert s["hits"]["volatile_db"] > 0, s
    assert s["defaults"] > 0, s
    assert s["hits"]["gpu_cache"] + s["hits"]["volatile_db"] + s["defaults"] == s["keys"], s
    counters = s["tier_counters"]["gpu_cache"]
    # docs/gpu_cache.md: 16-byte entries, ceil(min(capacity, 1.5 x rows + 65,536) / 0.7) of them
    # (the 65,536 of headroom dominates a table this small: about 125 bytes per row here, 34 for a
    # table of millions of rows), plus its counters and a staging buffer of 16 bytes per key of the
    # largest batch of changes it applied (here the load: 20,000 keys).
    entries = -(-(1.5 * 20000 + 65536) // 0.7)
    assert 16 * entries <= counters["host_tier_index_bytes"] <= 16 * entries + 16 * 20000 + 4096, counters
    assert counters["host_tier_index_bytes_per_row"] == counters["host_tier_index_bytes"] // 20000, counters
    # The cache's own table: at most 1.15 x (row + key) per row it can hold (issue 13; D = 16 fp32:
    # 64-byte rows, 12.02 bytes of tag, meta word and lock bit per slot at a load of 0.96).
    assert 0 < counters["table_bytes_per_row"] <= 1.15 * (16 * 4 + 8), counters


def test_an_index_too_big_for_its_share_warns_and_takes_the_host_path(tmp_path, capfd):
    table = make_table(tmp_path / "t", 20000, 16, default=-3.0)
    gpu, cpu = pair(tmp_path, table, gpucacheper=0.2, host_tier_index_hbm_share=1e-9)
    assert "GPU cache misses take the host path" in capfd.readouterr().err
    rng = np.random.default_rng(6)
    for _ in range(3):
        check(gpu, cpu, zipf_keys(rng, table.keys, 26624))
    assert "host_tier_index_bytes" not in gpu.stats()[0]["tier_counters"].get("gpu_cache", {})


def test_the_host_path_can_be_chosen(tmp_path):
    table = make_table(tmp_path / "t", 20000, 16)
    gpu, cpu = pair(tmp_path, table, gpucacheper=0.2, gpu_visible_host_tier=False)
    rng = np.random.default_rng(7)
    for _ in range(3):
        check(gpu, cpu, zipf_keys(rng, table.keys, 26624))
    assert "host_tier_index_bytes" not in gpu.stats()[0]["tier_counters"].get("gpu_cache", {})


@pytest.mark.parametrize("cache", [{"embedding_cache_type": "static"},
                                   {"embedding_cache_type": "dynamic", "gpucacheper": 0.5, "init_ec": True}],
                         ids=["static", "dynamic-init_ec"])
def test_a_restart_warms_the_gpu_cache_with_the_stores_rows_not_the_files(tmp_path, cache):
    # RocksDB took updates and an erase; a restart finds it current (it keeps them) and the GPU cache
    # starts from it. It used to start from the table files: a hit then served the row from before
    # the update, and an erased key its old row.
    if not hps.build_features()["rocksdb"]:
        pytest.skip("needs the RocksDB tier, which this build of hps lacks")
    table = make_table(tmp_path / "t", 2000, 8, default=-2.0)
    config = config_for([table], persistent=str(tmp_path / "db"), **cache)
    config["volatile_db"] = {"type": "disabled"}  # so every GPU miss reads the store, never a copy
    with hps.HPS(config) as ps:
        updated = table.keys[:500]
        rows = np.random.default_rng(5).standard_normal((500, 8)).astype(np.float32)
        ps.update("m", 0, updated, rows)
        ps.erase("m", 0, table.keys[1990:])
    table.update(updated, rows)
    table.erase(table.keys[1990:])
    with hps.HPS(config) as ps:
        keys = torch.from_numpy(table.keys.copy()).cuda()
        got = ps.lookup("m", 0, keys)
        torch.cuda.current_stream().synchronize()
        np.testing.assert_array_equal(got.cpu().numpy(), table.expected(table.keys))
        # The warm start put rows in the cache (a static cache serves every key from it).
        assert ps.stats()[0]["hits"]["gpu_cache"] > 0
