#!/usr/bin/env python3
"""A/B of Redis tier lookups: builds of hps (or cluster settings) compared in one run, interleaved.

Each VARIANT is a folder holding an `hps` package (a copy of an installed build's
site-packages/hps), optionally followed by "@thp" (run against a second cluster whose servers use
transparent huge pages) and "?NAME=VALUE&..." (environment of its worker; HPS_AB_PARTITIONS sets
num_partitions, 16 by default, for a table of its own; HPS_AB_MODEL its model name, which decides on
which masters its partitions live). One 3-master cluster
without replicas (two with @thp) on 127.0.0.1 (tests/python/redis_cluster.py, stopped by pid) holds
one table of --rows rows at --dim; the variants then take turns, in alternating order over
--rounds rounds, each in a worker process of its own that looks up batches of each size for --secs
seconds and measures, per key looked up: wall time, the fastest call, its own CPU time, and the
servers' CPU time (/proc/<pid>/task/*/schedstat: nanoseconds, all threads). Printed: the median over
the rounds, and each variant's ratio to the first. On a machine shared with others' builds,
compare within one run only.

Usage: python benchmarks/redis_tier_ab.py [--dim 128] [--rows 262144] [--batches 2048,16384,131072,262144]
           [--rounds 3] [--secs 1.2] [--lookup-threads 1] VARIANT [VARIANT ...]
e.g.   mkdir -p /tmp/old && cp -a <old venv>/lib/python3.11/site-packages/hps /tmp/old/
       python benchmarks/redis_tier_ab.py /tmp/old .venv/lib/python3.11/site-packages \\
           .venv/lib/python3.11/site-packages@thp
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
from redis_cluster import LocalRedis  # noqa: E402

WORKER = r'''
import glob, json, os, sys, time
import numpy as np
import hps
address, folder, dim, batches, secs, pids, threads = (sys.argv[1], sys.argv[2], int(sys.argv[3]),
    [int(x) for x in sys.argv[4].split(",")], float(sys.argv[5]), [int(p) for p in sys.argv[6].split(",")],
    int(sys.argv[7]))

def servers_ns():
    total = 0
    for pid in pids:
        for f in glob.glob(f"/proc/{pid}/task/*/schedstat"):
            with open(f) as stat:
                total += int(stat.read().split()[0])
    return total

keys = np.load(os.path.join(folder, "keys.npy"))
partitions = int(os.environ.get("HPS_AB_PARTITIONS", "16"))
# A table of its own per partition count (rows live by partition); HPS_AB_MODEL names another
# (its partitions land on other slots, so on the masters in other shares).
model = os.environ.get("HPS_AB_MODEL", f"ab{partitions}")
config = {"supportlonglong": True,
          "volatile_db": {"type": "redis_cluster", "address": address, "num_partitions": partitions,
                          "num_node_connections": 4, "operation_timeout_ms": 60000},
          "models": [{"model": model, "sparse_files": [os.path.join(folder, "table")],
                      "embedding_vecsize_per_table": [dim]}]}
rng = np.random.default_rng(1)  # the same batches for every variant
result = {}
with hps.HPS(config, lookup_threads=threads) as ps:
    for batch in batches:
        sample = [keys[rng.integers(0, len(keys), batch)] for _ in range(max(2, min(8, (1 << 20) // batch)))]
        out = np.empty((batch, dim), np.float32)
        ps.lookup(model, 0, sample[0], out=out)
        looked_up, calls = 0, []
        wall, cpu, servers = time.perf_counter(), time.process_time(), servers_ns()
        while time.perf_counter() - wall < secs:
            for b in sample:
                start = time.perf_counter()
                ps.lookup(model, 0, b, out=out)
                calls.append(time.perf_counter() - start)
                looked_up += batch
        wall, cpu, servers = time.perf_counter() - wall, time.process_time() - cpu, servers_ns() - servers
        result[batch] = {"wall": wall / looked_up * 1e9, "best": min(calls) / batch * 1e9,
                         "client": cpu / looked_up * 1e9, "servers": servers / looked_up}
print("RESULT " + json.dumps(result))
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--rows", type=int, default=262144)
    parser.add_argument("--batches", default="2048,16384,131072,262144")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--secs", type=float, default=1.2)
    parser.add_argument("--lookup-threads", type=int, default=1)
    parser.add_argument("variants", nargs="+")
    args = parser.parse_args()
    import hps  # only to write the table files

    results: dict[str, list[dict]] = {v: [] for v in args.variants}
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        plain = stack.enter_context(LocalRedis(masters=3, replicas=0))
        huge = None
        if any("@thp" in v for v in args.variants):
            huge = stack.enter_context(LocalRedis(masters=3, replicas=0, huge_pages=True))
        rng = np.random.default_rng(0)
        keys = rng.choice(np.int64(1) << 40, size=args.rows, replace=False).astype(np.int64)
        rows = rng.standard_normal((args.rows, args.dim), dtype=np.float32)
        hps.write_sparse_model(os.path.join(tmp, "table"), keys, rows)
        np.save(os.path.join(tmp, "keys.npy"), keys)
        worker = os.path.join(tmp, "worker.py")
        with open(worker, "w") as f:
            f.write(WORKER)
        print(f"# redis_tier_ab: D={args.dim}, {args.rows:,} rows, 3 masters, lookup_threads "
              f"{args.lookup_threads}, {args.rounds} rounds of {args.secs} s per batch size; "
              f"load average {os.getloadavg()[0]:.2f} at the start", flush=True)
        for r in range(args.rounds):
            for variant in args.variants if r % 2 == 0 else args.variants[::-1]:
                cluster = huge if "@thp" in variant else plain
                path, _, query = variant.replace("@thp", "").partition("?")
                env = dict(os.environ, PYTHONPATH=path)
                for item in filter(None, query.split("&")):
                    name, _, value = item.partition("=")
                    env[name] = value
                pids = ",".join(str(p.pid) for p in cluster.procs.values())
                done = subprocess.run([sys.executable, worker, cluster.address, tmp, str(args.dim), args.batches,
                                       str(args.secs), pids, str(args.lookup_threads)],
                                      env=env, capture_output=True, text=True)
                line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
                if done.returncode != 0 or not line:
                    raise RuntimeError(f"variant {variant} failed:\n{done.stdout}\n{done.stderr}")
                results[variant].append(json.loads(line[0][len("RESULT "):]))
        print(f"# load average {os.getloadavg()[0]:.2f} at the end; ns per key, median of the rounds "
              f"(ratio to the first variant)")
        print(f"{'batch':>7} {'variant':>40} | {'wall':>12} {'fastest call':>13} {'client CPU':>12} "
              f"{'servers CPU':>12}")
        for batch in args.batches.split(","):
            base = None
            for variant in args.variants:
                m = {k: statistics.median(x[batch][k] for x in results[variant])
                     for k in ("wall", "best", "client", "servers")}
                base = base or m
                cells = " ".join(f"{m[k]:6.0f} ({m[k] / base[k]:.2f})" for k in ("wall", "best", "client", "servers"))
                print(f"{batch:>7} {variant[-40:]:>40} | {cells}", flush=True)


if __name__ == "__main__":
    main()
