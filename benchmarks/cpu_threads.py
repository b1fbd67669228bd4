#!/usr/bin/env python3
"""How one CPU-tier lookup scales over lookup threads, next to the gathers it competes with.

The GPU cache's miss path hands the CPU-memory tier a few thousand to a few hundred thousand
distinct keys at a time; how fast the tier answers them sets the miss path's speed. For batches of
--sizes distinct random keys over a table of --rows rows (D = --dim), one run prints:
  - hps with lookup_threads T in --threads, idle threads spinning --spin microseconds (HPS_LOOKUP_SPIN_US)
    before they sleep, calls back to back and calls after --gap-ms of idle time;
  - torch.index_select over the dense table with T torch threads (the hybrid baseline's gather);
  - the roof: the machine's copy bandwidth over (8 + 8D) bytes per key (no random gather reaches it).
Usage: python benchmarks/cpu_threads.py [--rows 2000000] [--dim 128] [--threads 1 2 4 8 16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np

import hps

try:
    import torch
except ImportError:  # the torch baseline is optional
    torch = None


def copy_bandwidth(bytes_: int = 1 << 30) -> float:
    src = np.ones(bytes_ // 4, dtype=np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best


def median_us(fn, batches, gap_s: float) -> float:
    fn(batches[0])
    times = []
    for b in batches:
        if gap_s:
            time.sleep(gap_s)
        t0 = time.perf_counter()
        fn(b)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--sizes", type=int, nargs="+", default=[2_048, 16_384, 131_072])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--spin", type=int, nargs="+", default=[0, 200])
    p.add_argument("--gap-ms", type=float, default=1.0)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    rng = np.random.default_rng(args.seed)
    bandwidth = copy_bandwidth()
    roof = bandwidth / (8 + 8 * args.dim)
    print(f"# cpu_threads: {args.rows:,} rows, D={args.dim}, {os.cpu_count()} cores, hps {hps.__version__}; "
          f"copy bandwidth {bandwidth / 1e9:.1f} GB/s -> roof {roof / 1e6:.0f} Mkeys/s")
    values = rng.standard_normal((args.rows, args.dim), dtype=np.float32)
    keys = np.arange(args.rows, dtype=np.int64)
    batches = {n: [rng.choice(args.rows, n, replace=False).astype(np.int64) for _ in range(args.batches)]
               for n in args.sizes}
    header = f"{'keys':>8} {'threads':>7} {'case':>22} | {'p50 us':>9} {'Mkeys/s':>8} {'% roof':>7}"
    with tempfile.TemporaryDirectory(dir=os.environ.get("HPS_BENCH_DIR")) as tmp:
        folder = os.path.join(tmp, "t")
        hps.write_sparse_model(folder, keys, values)
        config = {"volatile_db": {"type": "hash_map"},
                  "models": [{"model": "m", "sparse_files": [folder], "embedding_vecsize_per_table": [args.dim],
                              "gpucache": False}]}
        dense = torch.from_numpy(values) if torch is not None else None
        print(header)
        print("-" * len(header))
        for threads in args.threads:
            cases = []
            for spin in args.spin:
                os.environ["HPS_LOOKUP_SPIN_US"] = str(spin)
                ps = hps.HPS(config, progress=False, lookup_threads=threads)
                rows = np.empty((max(args.sizes), args.dim), dtype=np.float32)  # reused, as torch's `out`
                for n, bs in batches.items():
                    assert np.array_equal(ps.lookup("m", 0, bs[0]), values[bs[0]])
                    lookup = lambda b: ps.lookup("m", 0, b, out=rows[: b.size])  # noqa: E731
                    cases.append((n, f"hps spin {spin} us", median_us(lookup, bs, 0.0)))
                    cases.append((n, f"hps spin {spin} us, idle", median_us(lookup, bs, args.gap_ms / 1e3)))
                ps.close()
            if dense is not None:
                torch.set_num_threads(threads)
                out = torch.empty((max(args.sizes), args.dim))
                for n, bs in batches.items():
                    tb = [torch.from_numpy(b) for b in bs]
                    gather = lambda b: torch.index_select(dense, 0, b, out=out[: b.numel()])  # noqa: E731
                    cases.append((n, "torch index_select", median_us(gather, tb, 0.0)))
            for n, name, us in sorted(cases, key=lambda c: c[0]):
                rate = n / us  # keys per microsecond = Mkeys/s
                print(f"{n:>8,} {threads:>7} {name:>22} | {us:>9.0f} {rate:>8.1f} {100 * rate * 1e6 / roof:>6.1f}%")
    print("roof = copy bandwidth / (8 + 8D) bytes per key; idle = each call after --gap-ms without calls")


if __name__ == "__main__":
    main()
