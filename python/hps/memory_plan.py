"""hps.memory_plan: the memory a config will take, per table, before anything is allocated.

Two parts, both from the core's own formulas, so a plan and a server cannot disagree:
- the CPU-memory tier (a volatile_db hash map): the rows it will hold, counted from the table
  files' keys per partition as the server's load check counts them and capped by overflow_margin,
  times its record size, plus its index (HashMapOptions, hash_map_footprint);
- the GPU caches of a model with gpucache: the device memory of each table's cache and host-tier
  index on each device of deployed_device_list (hps/gpu/cache_sizing.hpp, which the CUDA caches
  allocate by).

The plan is for a server that loads the table files (a fresh start). Keys repeated in a file are
counted once only in a partition over its overflow_margin, elsewhere each time (an upper bound;
`hps inspect` counts repeated keys). RocksDB's block cache and memtables are not included.
`hps validate` prints it.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional

from . import _core
from .config import Config, ConfigLike
from .errors import ConfigWarning
from .model_files import inspect_sparse_model

__all__ = ["memory_plan", "machine_memory"]


def _config(config: ConfigLike) -> Config:
    if isinstance(config, Config):
        return config
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigWarning)  # the caller's to report (hps validate prints them)
        return Config(config)


def _hash_map_plan(config: Config, settings: dict, folder: str, dim: int, rows: int) -> dict:
    volatile, store = settings["volatile_db"], settings["persistent_db"]
    has_store = store["type"] != "disabled"
    options = _core.hash_map_options(config._core)
    # As the server loads (parameter_server.cpp, load_table): filled at start with the files' last
    # fill_rows() rows, reserve()d for them; with a persistent_db and cache_missed_embeddings it may
    # come to hold every key of the files by promotion.
    fill_at_start = volatile["initialize_after_startup"] or not has_store
    start = _core.fill_rows(options["capacity"], volatile["initial_cache_rate"], rows) if fill_at_start else 0
    grows = has_store and volatile["cache_missed_embeddings"]

    def footprint(span: int) -> dict:
        keys = (_core.volatile_keys_per_partition(config._core, folder, dim, span) if span
                else [0] * options["partitions"])
        return _core.hash_map_footprint(config._core, dim, start, keys)

    at_start = footprint(start)
    plan = footprint(rows) if grows and start < rows else at_start
    return dict(plan, backend="hash_map", partitions=options["partitions"],
                overflow_margin=options["overflow_margin"], capacity=options["capacity"],
                rows_at_start=at_start["rows"], grows_by_promotion=grows)


def _gpu_plan(model: dict, t: int, dim: int, rows: int, hash_map: Optional[dict]) -> dict:
    is_static = model["embedding_cache_type"] == "static"
    fp16 = model["embedding_cache_dtype"][t] == "float16"
    # The server counts the files' rows, repeated keys included (build_gpu_caches).
    capacity = _core.gpu_cache_capacity(is_static, model["gpucacheper"], rows)
    cache = (_core.static_gpu_cache_size if is_static else _core.dynamic_gpu_cache_size)(capacity, dim, fp16)
    # A dynamic cache indexes a GPU-visible hash map on the device, sized by its rows after the load
    # (attach_host_tier), when it fits in host_tier_index_hbm_share of the device's memory. Planned at
    # that size: the index grows later only as updates add keys, within the same share.
    index = None
    if (not is_static and model["gpu_visible_host_tier"] and hash_map is not None
            and not _core.gpu_visible_host_tier_switched_off()):
        index = _core.host_tier_index_size(hash_map["rows_at_start"], hash_map["capacity"])
    index_bytes = index["bytes"] if index else 0
    return {"type": "static" if is_static else "dynamic", "dtype": "float16" if fp16 else "float32",
            "capacity": capacity, "devices": list(model["deployed_device_list"]), "cache": cache,
            "cache_bytes": cache["bytes"], "host_tier_index_slots": index["slots"] if index else 0,
            "host_tier_index_bytes": index_bytes, "host_tier_index_hbm_share": model["host_tier_index_hbm_share"],
            "bytes_per_device": cache["bytes"] + index_bytes}


def memory_plan(config: ConfigLike) -> dict[str, Any]:
    """The memory `config` will take, from its table files (read, not loaded).

    Returns {"tables": [one dict per table], "host_bytes": int, "gpu_bytes": {device: int}}. A
    table's dict: model, table, folder, dim, rows (the files' rows), volatile_db (None when disabled;
    a Redis Cluster one holds no memory here: {"backend": "redis_cluster", "bytes": 0}; a hash map:
    rows, record_bytes, records_bytes, index_slots, index_bytes, bytes, rows_at_start, partitions,
    overflow_margin, capacity, grows_by_promotion) and gpu (None without gpucache; else type, dtype,
    capacity, devices, cache (its allocations), cache_bytes, host_tier_index_slots,
    host_tier_index_bytes, host_tier_index_hbm_share, bytes_per_device). The GPU part is planned
    whether or not this machine has a GPU. Raises what reading the table files raises."""
    config = _config(config)
    settings = config.to_dict()
    volatile_type = settings["volatile_db"]["type"]
    tables, host_bytes, gpu_bytes = [], 0, {}
    for model in settings["models"]:
        for t, (folder, dim, name) in enumerate(zip(model["sparse_files"], model["embedding_vecsize_per_table"],
                                                    model["embedding_table_names"])):
            rows = inspect_sparse_model(folder, dim)["rows"]
            volatile = None
            if volatile_type == "hash_map":
                volatile = _hash_map_plan(config, settings, folder, dim, rows)
                host_bytes += volatile["bytes"]
            elif volatile_type == "redis_cluster":
                volatile = {"backend": "redis_cluster", "bytes": 0}
            hash_map = volatile if volatile_type == "hash_map" else None
            gpu = _gpu_plan(model, t, dim, rows, hash_map) if model["gpucache"] else None
            if gpu:
                for device in gpu["devices"]:
                    gpu_bytes[device] = gpu_bytes.get(device, 0) + gpu["bytes_per_device"]
            tables.append({"model": model["model"], "table": name, "folder": folder, "dim": dim, "rows": rows,
                           "volatile_db": volatile, "gpu": gpu})
    return {"tables": tables, "host_bytes": host_bytes, "gpu_bytes": gpu_bytes}


def _mem_available(meminfo: str = "/proc/meminfo") -> Optional[int]:
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    value, unit = line.split()[1:3]
                    if unit != "kB":
                        raise ValueError(f"{meminfo}: MemAvailable in {unit!r}, expected kB")
                    return int(value) * 1024
    except FileNotFoundError:  # not Linux: nothing to compare with
        return None
    return None


def machine_memory() -> dict[str, Any]:
    """What this machine has to set a plan against: {"host_available": MemAvailable of /proc/meminfo
    in bytes (None where there is none), "gpus": {device: total bytes} (empty without a usable GPU)}."""
    return {"host_available": _mem_available(),
            "gpus": {d: _core.device_memory_bytes(d) for d in range(_core.device_count())}}
