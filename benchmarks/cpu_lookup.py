#!/usr/bin/env python3
"""CPU-tier lookup throughput, one thread, next to its roof and the naive way, in one run.

For each D in --dims and each key distribution (uniform, Zipf): a table of --rows rows served by
the CPU-memory tier alone (volatile_db hash_map, no persistent tier), looked up in distinct
batches of --batch keys drawn from the table's keys. Printed side by side:
  - hps: hps.HPS.lookup (hash the key, probe, copy the row);
  - numpy (the roof the issue names): NumPy fancy indexing on the dense [rows, D] array (row index = key position), which does
    no hashing at all: what a lookup costs when the key already is the row number;
  - naive: a Python dict {key: row}, np.stack of the looked-up rows;
  - bound: the streaming limit, measured copy bandwidth / (8 + 8D) bytes per key (read the key,
    read the row, write the row). Random rows cost more than streaming ones, so no lookup reaches it.
Usage: python benchmarks/cpu_lookup.py [--rows 1000000] [--batch 26624] [--dims 16 128]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import numpy as np

import hps


def zipf_positions(rng: np.random.Generator, n: int, size: int, alpha: float) -> np.ndarray:
    """Positions in [0, n) with P(rank r) ~ 1 / r^alpha, hot ranks scattered over the table."""
    ranks = np.arange(1, n + 1, dtype=np.float64)
    p = ranks ** -alpha
    cdf = np.cumsum(p / p.sum())
    draws = np.searchsorted(cdf, rng.random(size), side="right")
    scatter = rng.permutation(n)
    return scatter[np.minimum(draws, n - 1)]


def time_batches(fn, batches, repeats: int) -> list[float]:
    fn(batches[0])  # warm up
    times = []
    for _ in range(repeats):
        for batch in batches:
            t0 = time.perf_counter()
            fn(batch)
            times.append(time.perf_counter() - t0)
    return times


def copy_bandwidth(bytes_: int = 1 << 30) -> float:
    """Bytes per second of one large in-memory copy, counting bytes read plus bytes written."""
    src = np.ones(bytes_ // 4, dtype=np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = min(_timed(lambda: np.copyto(dst, src)) for _ in range(3))
    return 2 * src.nbytes / best


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=26_624)
    parser.add_argument("--dims", type=int, nargs="+", default=[16, 128])
    parser.add_argument("--batches", type=int, default=40, help="distinct batches per case")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--zipf", type=float, default=1.05)
    parser.add_argument("--naive-batches", type=int, default=4, help="the dict baseline is slow: fewer batches")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    bandwidth = copy_bandwidth()
    print(f"# cpu_lookup: {args.rows:,} rows, batch {args.batch:,}, one thread, {args.batches} distinct batches "
          f"x {args.repeats}; hps {hps.__version__}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores; copy bandwidth {bandwidth / 1e9:.1f} GB/s")
    header = f"{'D':>4} {'keys':>8} | {'hps Mkeys/s':>11} {'p50 us':>8} {'% bound':>7} | {'numpy Mkeys/s':>13} | " \
             f"{'naive Mkeys/s':>13} | {'hps/numpy':>9} {'hps/naive':>9}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        # Keys are scattered over the int64 range so the table is a real hash table, not an array.
        keys = rng.choice(np.iinfo(np.int64).max, size=args.rows, replace=False).astype(np.int64)
        for dim in args.dims:
            rows = rng.standard_normal((args.rows, dim), dtype=np.float32)
            folder = os.path.join(tmp, f"d{dim}")
            hps.write_sparse_model(folder, keys, rows)
            config = {"supportlonglong": True,
                      "volatile_db": {"type": "hash_map"},
                      "models": [{"model": "bench", "sparse_files": [folder], "embedding_vecsize_per_table": [dim]}]}
            with hps.HPS(config, progress=False, lookup_threads=1) as ps:
                table = dict(zip(keys.tolist(), rows)) if args.naive_batches else {}
                for dist in ("uniform", "zipf"):
                    if dist == "uniform":
                        pos = [rng.integers(0, args.rows, args.batch) for _ in range(args.batches)]
                    else:
                        pos = [zipf_positions(rng, args.rows, args.batch, args.zipf) for _ in range(args.batches)]
                    key_batches = [keys[p] for p in pos]
                    # Check once that hps returns exactly the stored rows.
                    assert np.array_equal(ps.lookup("bench", 0, key_batches[0]), rows[pos[0]])
                    t_hps = time_batches(lambda b: ps.lookup("bench", 0, b), key_batches, args.repeats)
                    t_roof = time_batches(lambda p: rows[p], pos, args.repeats)
                    t_naive = time_batches(lambda b: np.stack([table[k] for k in b.tolist()]),
                                           key_batches[: args.naive_batches], 1)
                    rate = lambda ts: args.batch / statistics.median(ts) / 1e6  # noqa: E731
                    bound = bandwidth / (8 + 8 * dim) / 1e6
                    print(f"{dim:>4} {dist:>8} | {rate(t_hps):>11.1f} {statistics.median(t_hps) * 1e6:>8.0f} "
                          f"{100 * rate(t_hps) / bound:>6.0f}% | {rate(t_roof):>13.1f} | {rate(t_naive):>13.2f} | "
                          f"{rate(t_hps) / rate(t_roof):>9.2f} {rate(t_hps) / rate(t_naive):>9.1f}")
    print("numpy = fancy indexing of the dense array by row position, no hashing (the issue's roof); "
          "naive = Python dict of rows + np.stack; % bound = share of copy bandwidth / (8 + 8D) bytes per key")


if __name__ == "__main__":
    main()
