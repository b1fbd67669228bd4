#!/usr/bin/env python3
"""Where a small GPU lookup's time goes: the host side of one `ps.lookup` call, phase by phase.

For 2,048-key lookups (the online-inference size, issue 13's `p50 < 40 us` target) against the static
cache, the dynamic cache all-hit and the dynamic cache at 20% on Zipf keys, prints:
  - wall time of the Python call until it returns (enqueue only) and until the stream is synchronised,
    next to torch.nn.functional.embedding over a dense GPU table (the floor a framework call reaches);
  - per call, the CUDA runtime API calls the lookup made (count and host microseconds, from
    torch.profiler's CUPTI trace) and the kernels it ran (count and device microseconds);
  - the Python frames of the call (cProfile), to separate the binding's cost from the core's.

Each case's timed calls run inside an NVTX range named after it ("torch", "static", "dyn-hit",
"dyn-20"), so a kernel profiler can pick one case's kernels (ncu --nvtx --nvtx-include "dyn-20/";
with --no-trace, which leaves out the torch.profiler pass: both need CUPTI).

With --churn R, the 20% case's table first goes through R rounds that each replace a quarter of its
keys with new ones (erase, then update with new keys), as a CPU-memory tier whose keys come and go
(evictions, Kafka) does: its host-tier index then holds tombstones and longer probes than a fresh one.

Usage (GPU machine): python benchmarks/profile_call_overhead.py [--rows 400000] [--dim 16] [--calls 200]
      [--churn 0] [--no-trace]
"""

from __future__ import annotations

import argparse
import cProfile
import collections
import io
import os
import pstats
import statistics
import tempfile
import time

import numpy as np
import torch

import hps
from gpu_lookup import _rows_served, zipf_positions  # benchmarks/ is the script's folder, first on sys.path


def timed(fn, batches, sync: bool) -> float:
    """Median microseconds of fn(batch), with or without waiting for the stream."""
    stream = torch.cuda.current_stream()
    times = []
    for b in batches:
        t0 = time.perf_counter()
        fn(b)
        if sync:
            stream.synchronize()
        times.append(time.perf_counter() - t0)
        if not sync:
            stream.synchronize()
    return 1e6 * statistics.median(times)


def trace(fn, batches) -> tuple[dict, dict]:
    """Per call: {runtime api name: (count, host us)} and {kernel name: (count, device us)}."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for b in batches:
            fn(b)
        torch.cuda.synchronize()
    api: dict = collections.defaultdict(lambda: [0, 0.0])
    kernels: dict = collections.defaultdict(lambda: [0, 0.0])
    for e in prof.events():
        kind = str(getattr(e, "device_type", ""))
        name = e.name
        if "CUDA" in kind:
            kernels[name][0] += 1
            kernels[name][1] += e.device_time_total if hasattr(e, "device_time_total") else e.cuda_time_total
        elif name.startswith(("cuda", "cu")) and not name.startswith("cudnn"):
            api[name][0] += 1
            api[name][1] += e.cpu_time_total
    n = len(batches)
    return ({k: (c / n, t / n) for k, (c, t) in api.items()}, {k: (c / n, t / n) for k, (c, t) in kernels.items()})


def python_frames(fn, batches, top: int = 12) -> str:
    prof = cProfile.Profile()
    prof.enable()
    for b in batches:
        fn(b)
    prof.disable()
    torch.cuda.synchronize()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=400_000)
    p.add_argument("--dim", type=int, default=16)
    p.add_argument("--batch", type=int, default=2048)
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--zipf", type=float, default=1.05)
    p.add_argument("--churn", type=int, default=0, help="rounds replacing a quarter of the 20%% case's keys")
    p.add_argument("--no-trace", action="store_true",
                   help="leave out the torch.profiler and cProfile passes (for runs under ncu)")
    args = p.parse_args()
    device = torch.device("cuda", 0)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        keys = np.arange(args.rows, dtype=np.int64)
        values = rng.standard_normal((args.rows, args.dim), dtype=np.float32)
        folder = os.path.join(tmp, "t")
        hps.write_sparse_model(folder, keys, values)
        model = lambda name, **kw: {"model": name, "sparse_files": [folder],  # noqa: E731
                                    "embedding_vecsize_per_table": [args.dim], "deployed_device_list": [0],
                                    "hit_rate_threshold": 0.0, **kw}
        ps = hps.HPS({"supportlonglong": True, "volatile_db": {"type": "hash_map"},
                      "models": [model("static", embedding_cache_type="static"),
                                 model("dyn_all", gpucacheper=1.0),
                                 model("dyn_20", gpucacheper=0.2)]}, progress=False)
        dense = torch.from_numpy(values).to(device)
        scatter = rng.permutation(args.rows)
        # dyn_20's keys: position i of the table holds present[i] (new keys replace churned ones).
        present, next_key = np.arange(args.rows, dtype=np.int64), args.rows
        for _ in range(args.churn):
            replaced = rng.choice(args.rows, args.rows // 4, replace=False)
            ps.erase("dyn_20", 0, present[replaced])
            present[replaced] = np.arange(next_key, next_key + len(replaced), dtype=np.int64)
            next_key += len(replaced)
            ps.update("dyn_20", 0, present[replaced], values[replaced])
        scatter_20 = present[scatter]

        def zipf_batches(n: int) -> list:
            # Fresh draws for every pass: a batch drawn again would find its misses inserted by the
            # pass before, and the 20% case would time hits only.
            return [torch.from_numpy(zipf_positions(rng, args.rows, args.batch, args.zipf, scatter_20)).to(device)
                    for _ in range(n)]

        zipf = zipf_batches(args.calls)
        hot = [torch.from_numpy(rng.integers(0, args.rows, args.batch)).to(device) for _ in range(args.calls)]
        for b in hot * 2:  # dyn_all: every key in the cache before timing
            ps.lookup("dyn_all", 0, b)
        for first in range(0, args.rows, 1 << 18):
            ps.lookup("dyn_all", 0, torch.arange(first, min(first + (1 << 18), args.rows), device=device))
        for b in zipf:
            ps.lookup("dyn_20", 0, b)
        torch.cuda.synchronize()
        # Batches per pass: the same hot ones where every key is cached, fresh Zipf draws for dyn-20%.
        cases = {"torch": (lambda b: torch.nn.functional.embedding(b, dense), lambda n: hot[:n]),
                 "static": (lambda b: ps.lookup("static", 0, b), lambda n: hot[:n]),
                 "dyn-hit": (lambda b: ps.lookup("dyn_all", 0, b), lambda n: hot[:n]),
                 "dyn-20%": (lambda b: ps.lookup("dyn_20", 0, b), zipf_batches)}
        print(f"# profile_call_overhead: {torch.cuda.get_device_name(device)}, hps {hps.__version__}, "
              f"torch {torch.__version__}; {args.rows:,} rows, D={args.dim}, B={args.batch}, {args.calls} calls; "
              f"{args.churn} churn rounds")
        print(f"{'case':>8} | {'enqueue us':>10} {'synced us':>10}")
        for name, (fn, batches) in cases.items():
            torch.cuda.nvtx.range_push(name.rstrip("%"))
            enqueue = timed(fn, batches(args.calls), False)
            served = _rows_served(ps)
            synced = timed(fn, batches(args.calls), True)
            torch.cuda.nvtx.range_pop()
            extra = (f"   {(_rows_served(ps) - served) / args.calls:,.0f} rows read from the CPU tier per call"
                     if name == "dyn-20%" else "")
            print(f"{name:>8} | {enqueue:>10.1f} {synced:>10.1f}{extra}")
        if args.no_trace:
            ps.close()
            return
        for name, (fn, batches) in cases.items():
            api, kernels = trace(fn, batches(50))
            print(f"\n## {name}: per call, CUDA runtime/driver API (count, host us) and kernels (count, device us)")
            for k, (c, t) in sorted(api.items(), key=lambda kv: -kv[1][1]):
                print(f"  api    {c:6.2f} {t:8.2f}  {k}")
            for k, (c, t) in sorted(kernels.items(), key=lambda kv: -kv[1][1]):
                print(f"  kernel {c:6.2f} {t:8.2f}  {k[:110]}")
        for name in ("dyn-hit", "dyn-20%"):
            fn, batches = cases[name]
            print(f"\n## {name}: Python frames over {args.calls} calls (cProfile, tottime)")
            print(python_frames(fn, batches(args.calls)))
        ps.close()


if __name__ == "__main__":
    main()
