"""hps.memory_plan and the plan `hps validate` prints, against the formulas written out here from
the layouts (record_hooks.hpp, kernel_types.hpp) and the server's loading rules, and against the
bytes a loaded server reports for its hash map."""

import json
import math
import re
import warnings

import numpy as np
import pytest

import hps
from hps.cli import main

MASK = (1 << 64) - 1
UNBOUNDED = MASK  # overflow_margin unset


def partition_of(key, partitions):
    """The hash map's partition of a key: splitmix64's finalizer, its low 32 bits onto the partitions."""
    x = key & MASK
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & MASK
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & MASK
    x ^= x >> 31
    return ((x & 0xFFFFFFFF) * partitions) >> 32


def distinct_per_partition(keys, partitions):
    counts = [set() for _ in range(partitions)]
    for key in keys.tolist():
        counts[partition_of(key, partitions)].add(key)
    return [len(c) for c in counts]


def record_bytes(dim, ranked):
    """header 8 + key 8 + access metadata 8 (evict_least_used / evict_oldest) + 4 x dim, rounded up to 8."""
    raw = 8 + 8 + (8 if ranked else 0) + 4 * dim
    return (raw + 7) // 8 * 8


def index_slots(reserved_rows, partitions, margin, held):
    """One partition's 8-byte slots: reserve() takes an even share + 5% + 16 (at most the margin) at
    load 0.8, at least 16; the index doubles while the rows exceed load 0.8."""
    slots = 16
    if reserved_rows:
        share = reserved_rows // partitions
        slots = max(16, int(min(share + share // 20 + 16, margin) / 0.8) + 1)
    while held > 0.8 * slots:
        slots *= 2
    return slots


def hash_map_bytes(keys, dim, partitions, margin, ranked, reserved_rows):
    held = [min(c, margin) for c in distinct_per_partition(keys, partitions)]
    records = sum(held) * record_bytes(dim, ranked)
    index = 8 * sum(index_slots(reserved_rows, partitions, margin, h) for h in held)
    return sum(held), records, index


def dynamic_cache_bytes(rows, gpucacheper, dim, value_bytes):
    """8 slots per set for capacity / 0.96 keys (and one spare slot), at least 2 sets; per slot a
    32-bit meta word, a 64-bit tag and a row; a lock bit per set in 32-bit words; 40 bytes of counters."""
    capacity = max(64, math.ceil(gpucacheper * rows))
    slots = max(math.ceil(capacity / 0.96), capacity + 1)
    sets = max(2, -(-slots // 8))
    slots = sets * 8
    return capacity, slots * 4 + slots * 8 + slots * dim * value_bytes + -(-sets // 32) * 4 + 40


def static_cache_bytes(rows, dim, value_bytes):
    """max(rows, 8) buckets of two 16-byte entries, the rows, a 32-bit free id per row, 16 bytes of counters."""
    return max(rows, 8) * 2 * 16 + rows * dim * value_bytes + rows * 4 + 16


def host_tier_index_bytes(rows, capacity):
    return max(1024, math.ceil(min(capacity, 1.5 * rows + 65536) / 0.7)) * 16


ROWS_A, ROWS_B, DIM_A, DIM_B = 3000, 2000, 16, 6


@pytest.fixture
def tables(tmp_path):
    rng = np.random.default_rng(7)
    keys_a = rng.choice(10**9, ROWS_A, replace=False).astype(np.int64)
    keys_b = np.arange(ROWS_B, dtype=np.int64) * 3 + 1
    hps.write_sparse_model(tmp_path / "a", keys_a, np.ones((ROWS_A, DIM_A), np.float32))
    hps.write_sparse_model(tmp_path / "b", keys_b, np.ones((ROWS_B, DIM_B), np.float32))
    config = {
        "volatile_db": {"type": "hash_map", "num_partitions": 3, "overflow_margin": 1200,
                        "overflow_policy": "evict_least_used"},
        "models": [{
            "model": "m", "sparse_files": ["a", "b"], "embedding_table_names": ["ta", "tb"],
            "embedding_vecsize_per_table": [DIM_A, DIM_B], "embedding_cache_dtype": ["float32", "float16"],
            "gpucacheper": 0.25, "deployed_device_list": [0, 1],
        }],
    }
    return {"dir": tmp_path, "config": config, "keys": {"ta": keys_a, "tb": keys_b}}


def write(path, config):
    path.write_text(json.dumps(config))
    return path


def quiet_config(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hps.ConfigWarning)
        return hps.Config(path)


def test_plan_of_a_hash_map_and_dynamic_caches(tables):
    path = write(tables["dir"] / "ps.json", tables["config"])
    plan = hps.memory_plan(quiet_config(path))
    assert [t["table"] for t in plan["tables"]] == ["ta", "tb"]
    host_total, gpu_total = 0, 0
    for table, dim, value_bytes in zip(plan["tables"], (DIM_A, DIM_B), (4, 2)):
        keys = tables["keys"][table["table"]]
        rows = len(keys)
        held, records, index = hash_map_bytes(keys, dim, 3, 1200, ranked=True, reserved_rows=rows)
        assert held == rows  # every partition has room: no eviction
        volatile = table["volatile_db"]
        assert (volatile["rows"], volatile["record_bytes"]) == (rows, record_bytes(dim, True))
        assert (volatile["records_bytes"], volatile["index_bytes"]) == (records, index)
        assert volatile["bytes"] == records + index
        capacity, cache = dynamic_cache_bytes(rows, 0.25, dim, value_bytes)
        gpu = table["gpu"]
        assert (gpu["type"], gpu["capacity"], gpu["cache_bytes"]) == ("dynamic", capacity, cache)
        assert gpu["host_tier_index_bytes"] == host_tier_index_bytes(rows, 3 * 1200)
        assert gpu["bytes_per_device"] == cache + host_tier_index_bytes(rows, 3 * 1200)
        assert gpu["devices"] == [0, 1]
        host_total += records + index
        gpu_total += gpu["bytes_per_device"]
    assert plan["host_bytes"] == host_total
    assert plan["gpu_bytes"] == {0: gpu_total, 1: gpu_total}


def test_switching_the_gpu_visible_tier_off_drops_its_index_from_the_plan(tables, monkeypatch):
    """HPS_GPU_VISIBLE_HOST_TIER=0 keeps the server on the host path: the plan counts no index then."""
    path = write(tables["dir"] / "ps.json", tables["config"])
    monkeypatch.setenv("HPS_GPU_VISIBLE_HOST_TIER", "0")
    off = hps.memory_plan(quiet_config(path))
    monkeypatch.setenv("HPS_GPU_VISIBLE_HOST_TIER", "1")
    on = hps.memory_plan(quiet_config(path))
    for table_off, table_on in zip(off["tables"], on["tables"]):
        rows = len(tables["keys"][table_on["table"]])
        assert table_on["gpu"]["host_tier_index_bytes"] == host_tier_index_bytes(rows, 3 * 1200) > 0
        assert (table_off["gpu"]["host_tier_index_slots"], table_off["gpu"]["host_tier_index_bytes"]) == (0, 0)
        assert table_off["gpu"]["bytes_per_device"] == table_on["gpu"]["cache_bytes"]


def test_plan_matches_the_loaded_hash_map(tables):
    """The server's hash map, loaded from the files, takes the plan's bytes plus its bookkeeping (the
    tier object, page tables): within 1% + 1 KiB."""
    config = tables["config"]
    config["models"][0]["gpucache"] = False
    path = write(tables["dir"] / "cpu.json", config)
    plan = {t["table"]: t["volatile_db"] for t in hps.memory_plan(quiet_config(path))["tables"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hps.ConfigWarning)
        with hps.HPS(path, progress=False) as ps:
            stats = {s["table"]: s for s in ps.stats()}
    for name, planned in plan.items():
        assert stats[name]["tier_rows"]["volatile_db"] == planned["rows"]
        used = stats[name]["tier_bytes"]["volatile_db"]
        assert planned["bytes"] <= used <= planned["bytes"] * 1.01 + 1024, (name, used, planned["bytes"])


def test_plan_caps_rows_at_the_margin_and_counts_promotions(tables):
    """With a persistent_db, a partition holds at most overflow_margin rows (it evicts), and with
    cache_missed_embeddings the plan is what promotions can bring (every key of the files)."""
    config = tables["config"]
    config["persistent_db"] = {"type": "rocks_db", "path": str(tables["dir"] / "rocksdb")}
    config["volatile_db"].update(overflow_margin=500, initial_cache_rate=0.5, cache_missed_embeddings=True)
    config["models"][0]["gpucache"] = False
    plan = hps.memory_plan(quiet_config(write(tables["dir"] / "store.json", config)))
    table = plan["tables"][0]
    keys = tables["keys"]["ta"]
    start = math.ceil(0.5 * ROWS_A)  # the files' last half, reserved for
    held, records, index = hash_map_bytes(keys, DIM_A, 3, 500, ranked=True, reserved_rows=start)
    assert held == 1500  # 3 partitions of 500
    volatile = table["volatile_db"]
    assert (volatile["rows"], volatile["records_bytes"], volatile["index_bytes"]) == (held, records, index)
    assert volatile["grows_by_promotion"]
    assert volatile["rows_at_start"] == sum(min(c, 500) for c in distinct_per_partition(keys[-start:], 3))
    assert table["gpu"] is None and plan["gpu_bytes"] == {}


def test_plan_of_static_caches(tables):
    config = tables["config"]
    config["models"][0]["embedding_cache_type"] = "static"
    plan = hps.memory_plan(quiet_config(write(tables["dir"] / "static.json", config)))
    for table, dim, value_bytes in zip(plan["tables"], (DIM_A, DIM_B), (4, 2)):
        rows = table["rows"]
        assert table["gpu"]["capacity"] == rows
        assert table["gpu"]["cache_bytes"] == static_cache_bytes(rows, dim, value_bytes)
        assert table["gpu"]["host_tier_index_bytes"] == 0  # static caches hold every row themselves


def test_validate_prints_the_plan(tables, capsys, monkeypatch):
    path = write(tables["dir"] / "ps.json", tables["config"])
    plan = hps.memory_plan(quiet_config(path))
    monkeypatch.setattr(hps, "machine_memory", lambda: {"host_available": 10**12, "gpus": {}})
    assert main(["validate", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "warning: memory plan" not in err
    for table, dim in zip(plan["tables"], (DIM_A, DIM_B)):
        rows = table["rows"]
        _, records, index = hash_map_bytes(tables["keys"][table["table"]], dim, 3, 1200, True, rows)
        cells = [f"{rows:,}", str(record_bytes(dim, True)), f"{records:,}", f"{index:,}", f"{records + index:,}"]
        assert re.search(rf"^m/{table['table']}\s+" + r"\s+".join(map(re.escape, cells)) + r"\s+dynamic", out, re.M), out
    host = plan["host_bytes"]
    assert re.search(rf"^host: {host:,} B \(.*\) for the hash map .*; MemAvailable 1,000,000,000,000 B", out, re.M)
    per_gpu = plan["gpu_bytes"][0]
    assert re.search(rf"^GPU 0: {per_gpu:,} B \(.*\) .*; no GPU here$", out, re.M)
    assert re.search(rf"^GPU 1: {per_gpu:,} B", out, re.M)
    assert out.strip().splitlines()[-1] == f"OK: 1 models, 2 tables, {ROWS_A + ROWS_B:,} rows"


def test_validate_warns_when_the_host_plan_exceeds_mem_available(tables, capsys, monkeypatch):
    path = write(tables["dir"] / "ps.json", tables["config"])
    monkeypatch.setattr(hps, "machine_memory", lambda: {"host_available": 4096, "gpus": {}})
    assert main(["validate", str(path)]) == 0  # a warning, as for the config's own
    _, err = capsys.readouterr()
    assert re.search(r"^warning: memory plan: the hash map needs [\d,]+ B .*more than MemAvailable 4,096 B", err, re.M)


def test_machine_memory_reads_mem_available():
    with open("/proc/meminfo") as f:
        line = next(line for line in f if line.startswith("MemAvailable:"))
    available = hps.machine_memory()["host_available"]
    assert abs(available - int(line.split()[1]) * 1024) < 256 << 20  # it moves between two reads
    if hps.cuda_device_count() == 0:
        assert hps.machine_memory()["gpus"] == {}


def test_plan_needs_the_table_files(tables):
    config = tables["config"]
    config["models"][0]["sparse_files"][1] = "missing"
    with pytest.raises(hps.HpsError, match="missing"):
        hps.memory_plan(quiet_config(write(tables["dir"] / "missing.json", config)))
