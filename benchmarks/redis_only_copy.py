#!/usr/bin/env python3
"""What the only-copy rule costs a Redis Cluster volatile_db (no persistent_db), in one run.

A Redis table without a persistent_db holds the only copy of its rows, so with a finite
overflow_margin it refuses a write it has no room for instead of evicting: each update first counts
the room on the partitions it touches, then writes through scripts that check it again
(docs/redis.md, "Overflow"). Here the same table is loaded and updated twice on one local cluster:
  - unbounded: overflow_margin left at its default (no limit), so writes are plain HSETs (the baseline);
  - bounded: an overflow_margin with room for every row, so every write takes the checked path.
Printed: seconds to load the table at start (a load skips the room count), and milliseconds per
update() call of --update rows (median of --calls calls), for each, and their ratio.

Usage: python benchmarks/redis_only_copy.py [--rows 200000] [--dim 16] [--update 20000] [--calls 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

import hps

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
from redis_cluster import LocalRedis, redis_installed  # noqa: E402  (the tests' own cluster helper)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--dim", type=int, default=16)
    p.add_argument("--update", type=int, default=20_000, help="rows per update() call")
    p.add_argument("--calls", type=int, default=10)
    p.add_argument("--partitions", type=int, default=8)
    args = p.parse_args()
    if not (hps.redis_available() and redis_installed()):
        raise SystemExit("redis_only_copy: needs hps with the Redis Cluster tier and redis-server")
    rng = np.random.default_rng(0)
    keys = rng.choice(np.arange(1, 1 << 40, (1 << 40) // (4 * args.rows), dtype=np.int64), args.rows, replace=False)
    rows = rng.standard_normal((args.rows, args.dim), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp, LocalRedis(masters=3, replicas=0, node_timeout_ms=5000) as cluster:
        hps.write_sparse_model(os.path.join(tmp, "t"), keys, rows)
        print(f"# redis_only_copy: {args.rows:,} rows, D = {args.dim}, {args.partitions} partitions, 3 local masters, "
              f"update() of {args.update:,} rows x {args.calls}; hps {hps.__version__}, {os.cpu_count()} cores")
        results = {}
        for name, margin in (("unbounded", None), ("bounded", 2 * args.rows // args.partitions)):
            volatile = {"type": "redis_cluster", "address": cluster.address, "num_partitions": args.partitions}
            if margin is not None:
                volatile["overflow_margin"] = margin
            config = {"volatile_db": volatile,
                      "models": [{"model": name, "sparse_files": [os.path.join(tmp, "t")],
                                  "embedding_vecsize_per_table": [args.dim], "gpucache": False}]}
            t0 = time.perf_counter()
            ps = hps.HPS(config, progress=False)
            load = time.perf_counter() - t0
            times = []
            for call in range(args.calls):
                pick = rng.integers(0, args.rows, args.update)
                new = rows[pick] + np.float32(call + 1)
                t0 = time.perf_counter()
                ps.update(name, 0, keys[pick], new)
                times.append(time.perf_counter() - t0)
                np.testing.assert_array_equal(ps.lookup(name, 0, keys[pick[-1:]]), new[-1:])
            (stats,) = ps.stats()
            assert stats["tier_counters"]["volatile_db"]["evicted_rows"] == 0
            ps.close()
            results[name] = (load, 1e3 * statistics.median(times))
            print(f"{name:>10}: load {load:6.2f} s   update {results[name][1]:8.1f} ms")
        (lu, uu), (lb, ub) = results["unbounded"], results["bounded"]
        print(f"bounded / unbounded: load {lb / lu:.2f}x, update {ub / uu:.2f}x")


if __name__ == "__main__":
    main()
