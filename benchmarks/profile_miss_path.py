#!/usr/bin/env python3
"""Where one dynamic-cache lookup with misses spends its time: a timeline of one call.

A table of --rows rows (D = --dim) behind a dynamic cache at gpucacheper 0.2, warm-started with the
most frequent keys (a `meta` file of Zipf frequencies), then Zipf(1.05) batches of --batch keys.
For a few calls it prints the wall time and, from torch.profiler (CUPTI), every kernel and copy of
the call with its start offset and duration, so the gaps (host work: the resolver, syncs) show.
--path host profiles misses served through the host (gpu_visible_host_tier false: the path before
issue 13), --path device misses served from the CPU-memory tier on the device; both (default) runs
each in turn on tables of one server.
Usage (GPU machine): python benchmarks/profile_miss_path.py [--rows 4000000] [--dim 128] [--batch 26624]
      [--path host|device|both]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

import hps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=4_000_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--batch", type=int, nargs="+", default=[26_624, 262_144])
    p.add_argument("--zipf", type=float, default=1.05)
    p.add_argument("--path", choices=("host", "device", "both"), default="both")
    args = p.parse_args()
    paths = ("host", "device") if args.path == "both" else (args.path,)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        keys = np.arange(args.rows, dtype=np.int64)
        scatter = rng.permutation(args.rows)
        freq = np.empty(args.rows, np.int64)
        freq[scatter] = (1e9 * np.arange(1, args.rows + 1, dtype=np.float64) ** -args.zipf).astype(np.int64)
        hps.write_sparse_model(os.path.join(tmp, "t"), keys, rng.standard_normal((args.rows, args.dim), np.float32),
                               meta=freq)
        ps = hps.HPS({"volatile_db": {"type": "hash_map"},
                      "models": [{"model": path, "sparse_files": [os.path.join(tmp, "t")],
                                  "embedding_vecsize_per_table": [args.dim], "gpucacheper": 0.2,
                                  "hit_rate_threshold": 0.0, "gpu_visible_host_tier": path == "device"}
                                 for path in paths]}, progress=False)
        cdf = np.cumsum(np.arange(1, args.rows + 1, dtype=np.float64) ** -args.zipf)
        cdf /= cdf[-1]
        for (index, path), batch in ((ip, b) for ip in enumerate(paths) for b in args.batch):
            def draw():
                return torch.from_numpy(scatter[np.minimum(np.searchsorted(cdf, rng.random(batch)), args.rows - 1)]).cuda()
            for _ in range(10):
                ps.lookup(path, 0, draw())
            torch.cuda.synchronize()
            walls = []
            for _ in range(20):
                k = draw()
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                ps.lookup(path, 0, k)
                torch.cuda.current_stream().synchronize()
                walls.append(time.perf_counter() - t0)
            s = ps.stats()[index]
            print(f"\n== {path} path, batch {batch:,}, D={args.dim}: wall per call p50 "
                  f"{1e6 * statistics.median(walls):.0f} us; cumulative GPU hit rate "
                  f"{s['hits']['gpu_cache'] / s['keys']:.3f} (rows read from the CPU tier on the device: "
                  f"{s['hits'].get('volatile_db', 0) if path == 'device' else 0:,})")
            k = draw()
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                t0 = time.perf_counter()
                ps.lookup(path, 0, k)
                torch.cuda.synchronize()
                wall = time.perf_counter() - t0
            events = [e for e in prof.events() if e.device_type.name == "CUDA" or "cuda" in e.name.lower()]
            if not events:
                print("no CUDA events recorded")
                continue
            start = min(e.time_range.start for e in events)
            print(f"profiled call: wall {1e6 * wall:.0f} us; device activities (offset from the first, duration):")
            for e in sorted(events, key=lambda e: e.time_range.start):
                print(f"  {e.time_range.start - start:8.0f} us  {e.time_range.elapsed_us():7.0f} us  "
                      f"{e.device_type.name:4s} {e.name[:90]}")


if __name__ == "__main__":
    main()
