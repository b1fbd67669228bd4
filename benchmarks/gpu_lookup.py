#!/usr/bin/env python3
"""GPU lookup throughput and latency against the HBM roof and the usual baselines, in one run.

For each row size D and batch size B, over distinct batches (a repeated batch sits in the 50 MB L2
and flatters every number), uniform and Zipf keys:
  copy     measured device-to-device copy bandwidth (bytes read + written): the HBM roof's unit;
  bound    B x (8 + 8D) bytes over that bandwidth: read each key, read each row, write each row;
  torch    torch.nn.functional.embedding over a GPU-resident dense table (the framework's own way);
  static   hps static cache (whole table on the GPU behind a hash index);
  dyn-hit  hps dynamic cache at gpucacheper 1.0, on a stream of keys it holds: keys drawn (uniform or
           Zipf) from the hottest quarter of the rows, which warm-up passes put in the cache; its hit
           rate is printed (a set-associative cache may still drop a few keys of a full set, and
           one miss sends a call down the miss path);
  dyn-20%  hps dynamic cache at gpucacheper 0.2, Zipf keys: warm-started with the most frequent keys
           (the table's `meta` file holds each key's frequency, as a training run would record it),
           then a few warm-up batches; its hit rate is printed;
  dyn-5%   the same at gpucacheper 0.05;
  old-20%  dyn-20% with `gpu_visible_host_tier: false`: misses take the host round trip (the path
           before issue 13), for a before/after on one machine in one run (--no-old leaves it out);
  hybrid   rows gathered on the CPU into a pinned buffer (torch.index_select over the CPU table) and
           copied to the GPU: the usual deployment with the tables in host memory, done well.
For the dyn-20% and dyn-5% cells a second roof, of a lookup with misses (issue 13): the rows the device
read from the CPU-memory tier per call (stats: host_tier_rows_served) x 4D bytes over a pinned
host-to-device copy's bandwidth measured in the same run, plus the same size's dyn-hit p50; printed as
"% miss roof" (that roof's time over the call's median).
Each cell is one lookup call timed from the Python call until its rows are ready (the stream
synchronised), so it includes launch and host overheads: keys/s is B / median time, % bound is the
bound's time over the median time, p50/p99 are per-call latencies.

Usage (GPU machine): python benchmarks/gpu_lookup.py [--rows 4000000] [--dims 16 64 128]
      [--sizes 2048 26624 262144 1048576] [--batches 16] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np
import torch

import hps


def copy_bandwidth(device: torch.device, nbytes: int = 2 << 30) -> float:
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        dst.copy_(src)
    end.record()
    torch.cuda.synchronize()
    seconds = start.elapsed_time(end) / 1e3 / 10
    del src, dst
    return 2 * nbytes / seconds


def pinned_upload_bandwidth(device: torch.device, nbytes: int = 256 << 20) -> float:
    """Bytes/s of a pinned host-to-device copy: the PCIe roof of rows read from host memory."""
    src = torch.empty(nbytes // 4, dtype=torch.float32).pin_memory()
    dst = torch.empty(nbytes // 4, dtype=torch.float32, device=device)
    dst.copy_(src, non_blocking=True)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(5):
        dst.copy_(src, non_blocking=True)
    end.record()
    torch.cuda.synchronize()
    return 5 * nbytes / (start.elapsed_time(end) / 1e3)


def zipf_positions(rng: np.random.Generator, n: int, size: int, alpha: float, scatter: np.ndarray) -> np.ndarray:
    ranks = np.arange(1, n + 1, dtype=np.float64)
    cdf = np.cumsum(ranks ** -alpha)
    cdf /= cdf[-1]
    return scatter[np.minimum(np.searchsorted(cdf, rng.random(size)), n - 1)]


def time_calls(fn, batches) -> list[float]:
    """Per-call seconds from the call to its result being ready on the device."""
    fn(batches[0])
    torch.cuda.synchronize()
    times = []
    for batch in batches:
        t0 = time.perf_counter()
        fn(batch)
        torch.cuda.current_stream().synchronize()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=4_000_000, help="rows per table")
    p.add_argument("--dims", type=int, nargs="+", default=[16, 64, 128])
    p.add_argument("--sizes", type=int, nargs="+", default=[2048, 26624, 262144, 1048576])
    p.add_argument("--batches", type=int, default=16, help="distinct batches per cell")
    p.add_argument("--zipf", type=float, default=1.05)
    p.add_argument("--out", help="write every cell as JSON here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-old", action="store_true",
                   help="leave out old-20%% (dyn-20%% with misses served through the host)")
    args = p.parse_args()

    device = torch.device("cuda", 0)
    rng = np.random.default_rng(args.seed)
    bandwidth = copy_bandwidth(device)
    print(f"# gpu_lookup: {torch.cuda.get_device_name(device)}, hps {hps.__version__}, torch {torch.__version__}; "
          f"{args.rows:,} rows per table; {args.batches} distinct batches per cell")
    print(f"# measured device-to-device copy bandwidth: {bandwidth / 1e12:.2f} TB/s (read + write)")
    upload = pinned_upload_bandwidth(device)
    print(f"# measured pinned host-to-device copy bandwidth: {upload / 1e9:.1f} GB/s (the miss roof's PCIe)")
    results = []
    header = (f"{'D':>4} {'B':>9} {'keys':>7} {'case':>8} | {'Gkeys/s':>8} {'% bound':>8} {'p50 us':>9} "
              f"{'p99 us':>9} {'vs torch':>8} {'vs hybrid':>9}")
    with tempfile.TemporaryDirectory(dir=os.environ.get("HPS_BENCH_DIR")) as tmp:
        for dim in args.dims:
            keys = np.arange(args.rows, dtype=np.int64)  # row i holds key i: the dense baselines index directly
            values = rng.standard_normal((args.rows, dim), dtype=np.float32)
            folder = os.path.join(tmp, f"d{dim}")
            scatter = rng.permutation(args.rows)  # Zipf rank r is key scatter[r]
            frequency = np.empty(args.rows, dtype=np.int64)
            frequency[scatter] = (1e9 * np.arange(1, args.rows + 1, dtype=np.float64) ** -args.zipf).astype(np.int64)
            hps.write_sparse_model(folder, keys, values, meta=frequency)
            model = lambda name, **kw: {"model": name, "sparse_files": [folder],  # noqa: E731
                                        "embedding_vecsize_per_table": [dim], "deployed_device_list": [0],
                                        "hit_rate_threshold": 0.0, **kw}
            config = {"supportlonglong": True, "volatile_db": {"type": "hash_map"},
                      "models": [model("static", embedding_cache_type="static"),
                                 model("dyn_all", gpucacheper=1.0, init_ec=False, hit_rate_threshold=1.0),
                                 model("dyn_20", gpucacheper=0.2),
                                 model("dyn_5", gpucacheper=0.05)]
                                + ([] if args.no_old else [model("old_20", gpucacheper=0.2, gpu_visible_host_tier=False)])}
            ps = hps.HPS(config, progress=False)
            dense_gpu = torch.from_numpy(values).to(device)
            dense_cpu = torch.from_numpy(values)
            pinned = torch.empty((max(args.sizes), dim), dtype=torch.float32).pin_memory()

            def hybrid(b: torch.Tensor) -> torch.Tensor:
                staged = torch.index_select(dense_cpu, 0, b, out=pinned[: b.numel()])
                return staged.to(device, non_blocking=True)

            hot = scatter[: args.rows // 4]  # the Zipf ranks' first quarter
            rates = warm_hot_set(ps, "dyn_all", hot, [device])
            print(f"# dyn-hit: {hot.size:,} hot keys in a cache of {ps.stats()[1]['tier_rows']['gpu_cache']:,} rows; "
                  f"{len(rates)} warm-up passes hit {', '.join(f'{r:.5f}' for r in rates[:3])}"
                  f"{' ... ' + f'{rates[-1]:.5f}' if len(rates) > 3 else ''}")
            print(header)
            print("-" * len(header))
            for size in args.sizes:
                for dist in ("uniform", "zipf"):
                    if dist == "uniform":
                        pos = [rng.integers(0, args.rows, size) for _ in range(args.batches)]
                    else:
                        pos = [zipf_positions(rng, args.rows, size, args.zipf, scatter) for _ in range(args.batches)]
                    gpu_batches = [torch.from_numpy(q).to(device) for q in pos]
                    cpu_batches = [torch.from_numpy(q) for q in pos]
                    if dist == "uniform":
                        hot_pos = [hot[rng.integers(0, hot.size, size)] for _ in range(args.batches)]
                    else:
                        hot_pos = [zipf_positions(rng, hot.size, size, args.zipf, hot) for _ in range(args.batches)]
                    hot_batches = [torch.from_numpy(q).to(device) for q in hot_pos]
                    cases = {
                        "torch": (lambda b: torch.nn.functional.embedding(b, dense_gpu), gpu_batches),
                        "static": (lambda b: ps.lookup("static", 0, b), gpu_batches),
                        "dyn-hit": (lambda b: ps.lookup("dyn_all", 0, b), hot_batches),
                        "hybrid": (hybrid, cpu_batches),
                    }
                    if dist == "zipf":
                        cases["dyn-20%"] = (lambda b: ps.lookup("dyn_20", 0, b), gpu_batches)
                        cases["dyn-5%"] = (lambda b: ps.lookup("dyn_5", 0, b), gpu_batches)
                        if not args.no_old:
                            cases["old-20%"] = (lambda b: ps.lookup("old_20", 0, b), gpu_batches)
                        for name in ("dyn_20", "dyn_5") + (() if args.no_old else ("old_20",)):  # warm-up pass
                            for q in range(8):
                                ps.lookup(name, 0, torch.from_numpy(
                                    zipf_positions(rng, args.rows, size, args.zipf, scatter)).to(device))
                    # Correctness first: every hps case returns exactly the stored rows.
                    reference = dense_gpu[gpu_batches[0]]
                    assert torch.equal(cases["dyn-hit"][0](hot_batches[0]), dense_gpu[hot_batches[0]]), "dyn-hit"
                    for name in ("static", "dyn-20%", "dyn-5%", "old-20%"):
                        if name in cases:
                            assert torch.equal(cases[name][0](gpu_batches[0]), reference), name
                    medians = {}
                    for name, (fn, batches) in cases.items():
                        hits_before = _gpu_hits(ps)
                        served_before = _rows_served(ps)
                        times = time_calls(fn, batches)
                        rows_read = (_rows_served(ps) - served_before) / (len(batches) + 1)
                        med = statistics.median(times)
                        medians[name] = med
                        bound = size * (8 + 8 * dim) / bandwidth
                        row = {"dim": dim, "batch": size, "keys": dist, "case": name, "keys_per_s": size / med,
                               "pct_bound": 100 * bound / med, "p50_us": 1e6 * med,
                               "p99_us": 1e6 * float(np.percentile(times, 99)),
                               "gpu_hit_rate": _hit_rate(ps, hits_before, size * (len(batches) + 1))
                               if name.startswith(("dyn-", "old-")) else None}
                        if name in ("dyn-20%", "dyn-5%"):
                            roof = rows_read * 4 * dim / upload + medians["dyn-hit"]
                            row.update(rows_from_host_per_call=rows_read, pct_miss_roof=100 * roof / med)
                        results.append(row)
                    for row in results[-len(cases):]:
                        vs_torch = medians["torch"] / row["p50_us"] * 1e6
                        vs_hybrid = medians["hybrid"] / row["p50_us"] * 1e6
                        extra = f"  hit rate {row['gpu_hit_rate']:.3f}" if row["gpu_hit_rate"] is not None else ""
                        if "pct_miss_roof" in row:
                            extra += (f"; {row['rows_from_host_per_call']:,.0f} rows from host per call, "
                                      f"{row['pct_miss_roof']:.0f}% miss roof")
                        print(f"{dim:>4} {size:>9,} {dist:>7} {row['case']:>8} | {row['keys_per_s'] / 1e9:>8.3f} "
                              f"{row['pct_bound']:>7.0f}% {row['p50_us']:>9.1f} {row['p99_us']:>9.1f} "
                              f"{vs_torch:>7.2f}x {vs_hybrid:>8.1f}x{extra}")
            ps.close()
            del dense_gpu
            torch.cuda.empty_cache()
    print("bound = B x (8 + 8D) bytes / measured copy bandwidth; vs torch / vs hybrid = their median time over this "
          "case's (above 1: faster)")
    print("miss roof = rows read from the CPU tier x 4D bytes / pinned upload bandwidth + dyn-hit p50")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"copy_bandwidth": bandwidth, "upload_bandwidth": upload, "rows": args.rows, "cells": results},
                      f, indent=1)


def warm_hot_set(ps: hps.HPS, model: str, hot: np.ndarray, devices: list) -> list[float]:
    """Passes over the hot keys on every device until a pass hits every key (at most 64: a call
    inserts a bounded number of its misses, 131,072 rows at D = 128, so a 1M-key hot set takes
    several passes). Returns each pass's hit rate."""
    rates = []
    for _ in range(64):
        before = _gpu_hits(ps)
        for device in devices:
            for first in range(0, hot.size, 1 << 20):
                ps.lookup(model, 0, torch.from_numpy(hot[first:first + (1 << 20)]).to(device))
            torch.cuda.synchronize(device)
        rates.append(_hit_rate(ps, before, 0))
        if rates[-1] == 1.0:
            break
    return rates


def _gpu_hits(ps: hps.HPS) -> dict:
    return {(s["model"], s["table"]): (s["hits"]["gpu_cache"], s["keys"]) for s in ps.stats()}


def _rows_served(ps: hps.HPS) -> int:
    """Rows the GPU caches read from the CPU-memory tier so far, over all tables."""
    return sum(s.get("tier_counters", {}).get("gpu_cache", {}).get("host_tier_rows_served", 0) for s in ps.stats())


def _hit_rate(ps: hps.HPS, before: dict, _: int) -> float:
    after = _gpu_hits(ps)
    hits = sum(after[k][0] - before[k][0] for k in after)
    keys = sum(after[k][1] - before[k][1] for k in after)
    return hits / keys if keys else float("nan")


if __name__ == "__main__":
    main()
