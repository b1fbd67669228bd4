#!/usr/bin/env python3
"""Redis Cluster tier lookup throughput, next to its roof and the naive way, in one run.

Starts its own 3-master cluster (no replicas, no persistence) on 127.0.0.1 (tests/python/redis_cluster.py;
stopped by pid at the end); with --huge-pages its servers' allocator asks for transparent huge pages
(docs/redis.md, "Settings"). hps, the roof and the naive client all run against that one cluster. For each D in --dims: a table of --rows rows is loaded into the cluster by
hps.HPS (volatile_db redis_cluster, no persistent tier), then looked up in batches of each size in
--batches (keys drawn from the table). Printed side by side, in keys per second (from the fastest
call of each; p50 is hps's median call):
  - hps: hps.HPS.lookup (partition, route by slot, pipelined HMGET per node, all nodes at once);
  - roof: redis-benchmark's pipelined GET rate on the same cluster (values of 4*D bytes, SET first
    so every GET hits; -P 64, 50 clients): what the servers answer when the client costs nothing;
  - naive: the Python redis client's RedisCluster running the same HMGETs (one per partition, in one
    cluster pipeline); its calls alternate with hps's, so load on a shared machine hits both alike.
With --profile, a second table says where each way's time goes, per key looked up, with its calls back
to back for a second (the sustained rate; its last column is hps/naive at that rate): wall time, the
client process's CPU time (all its threads), the 3 servers' CPU time (/proc, all their threads), and
the servers' time inside HMGET (INFO commandstats usec, reset before each measurement). On a small
virtual machine the first table's hps calls, each after a naive call, pay for waking the servers'
idle vCPUs (benchmarks/RESULTS.md, sixth session: 1.35-1.6x the time of a call right after another).
Needs: redis-server and redis-tools (Debian), and `pip install redis` for the naive client.
Usage: python benchmarks/redis_tier.py [--rows 262144] [--dims 16 128] [--batches 2048 16384 131072 262144]
                                       [--profile] [--huge-pages]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import hps

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
from redis_cluster import LocalRedis  # noqa: E402


def partition_of(keys: np.ndarray, partitions: int) -> np.ndarray:
    """The tier's partition function (splitmix64's finalizer, modulo the count)."""
    x = keys.astype(np.int64).view(np.uint64).copy()
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x % np.uint64(partitions)).astype(np.int64)


def partition_keys(client, tag: str, partitions: int) -> list[str]:
    """The names of the table's partition hashes, as the cluster lists them (docs/redis.md, "How
    tables are stored": `hps{<slot tag>}<tag>/p<p>v`), in partition order."""
    names = {}
    for name in client.scan_iter(match=f"hps{{*}}{tag}/p*v", target_nodes=client.PRIMARIES):
        name = name.decode()
        names[int(re.search(r"/p(\d+)v$", name).group(1))] = name
    if sorted(names) != list(range(partitions)):
        raise RuntimeError(f"the cluster holds partitions {sorted(names)} of {tag}, expected 0..{partitions - 1}")
    return [names[p] for p in range(partitions)]


def roof_get_rate(cluster: LocalRedis, row_bytes: int, keyspace: int, requests: int) -> float:
    """redis-benchmark's pipelined GET rate (requests/s) against the cluster, values of row_bytes."""
    port = str(cluster.ports[0])
    common = ["redis-benchmark", "--cluster", "-h", "127.0.0.1", "-p", port, "-P", "64", "-c", "50", "-q",
              "-d", str(row_bytes), "-r", str(keyspace), "-n"]
    subprocess.run(common + [str(keyspace * 2), "-t", "set"], check=True, capture_output=True, text=True)
    out = subprocess.run(common + [str(requests), "-t", "get"], check=True, capture_output=True, text=True).stdout
    rates = [float(m) for m in re.findall(r"GET: ([0-9.]+) requests per second", out)]
    if not rates:
        raise RuntimeError("redis-benchmark printed no GET rate:\n" + out)
    return rates[-1]


def used_memory(cluster: LocalRedis) -> int:
    """Bytes the cluster's nodes use for data (INFO memory used_memory), summed."""
    total = 0
    for port in cluster.ports:
        m = re.search(r"^used_memory:(\d+)", cluster.cli(port, "INFO", "memory"), re.M)
        total += int(m.group(1)) if m else 0
    return total


def server_cpu_seconds(cluster: LocalRedis) -> float:
    """CPU seconds (user + system) the cluster's server processes used so far, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for proc in cluster.procs.values():
        with open(f"/proc/{proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / ticks


def hmget_usec(cluster: LocalRedis, reset: bool = False) -> float:
    """Microseconds the servers spent inside HMGET since the last reset (INFO commandstats)."""
    total = 0.0
    for port in cluster.ports:
        if reset:
            cluster.cli(port, "CONFIG", "RESETSTAT")
            continue
        m = re.search(r"^cmdstat_hmget:calls=\d+,usec=(\d+)", cluster.cli(port, "INFO", "commandstats"), re.M)
        total += float(m.group(1)) if m else 0.0
    return total


def profile_calls(fn, batches, cluster: LocalRedis) -> tuple[float, float, float, float]:
    """Runs fn over the batches (again, until a second has passed: CPU times come in ticks of 10 ms);
    returns ns per key of (wall, client CPU, servers' CPU, HMGET time)."""
    fn(batches[0])
    hmget_usec(cluster, reset=True)
    keys = 0
    wall, cpu, servers = time.perf_counter(), time.process_time(), server_cpu_seconds(cluster)
    while time.perf_counter() - wall < 1.0:
        for b in batches:
            fn(b)
            keys += len(b)
    wall, cpu, servers = (time.perf_counter() - wall, time.process_time() - cpu,
                          server_cpu_seconds(cluster) - servers)
    return (wall / keys * 1e9, cpu / keys * 1e9, servers / keys * 1e9, hmget_usec(cluster) / keys * 1e3)


def time_interleaved(fns, batches, repeats: int) -> list[tuple[float, float]]:
    """(fastest, median) seconds per call of each function over the batches, each run `repeats`
    times. The functions take turns call by call, so a burst of load on a shared machine hits them
    alike; throughput is computed from the fastest call (the others measure the neighbours)."""
    for fn in fns:
        fn(batches[0])  # warm: connections, buffers
    times = [[] for _ in fns]
    for _ in range(repeats):
        for b in batches:
            for fn, spent in zip(fns, times):
                start = time.perf_counter()
                fn(b)
                spent.append(time.perf_counter() - start)
    return [(min(t), statistics.median(t)) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=262144)
    parser.add_argument("--dims", type=int, nargs="+", default=[16, 128])
    parser.add_argument("--batches", type=int, nargs="+", default=[2048, 16384, 131072, 262144])
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lookup-threads", type=int, default=0, help="hps.HPS lookup_threads (0: its default)")
    parser.add_argument("--no-naive", action="store_true", help="skip the Python redis client")
    parser.add_argument("--profile", action="store_true", help="also print where the time goes, per key")
    parser.add_argument("--huge-pages", action="store_true",
                        help="the Redis servers use transparent huge pages (MALLOC_CONF thp:always)")
    args = parser.parse_args()
    try:
        import redis  # noqa: F401
        from redis.cluster import RedisCluster
    except ImportError:
        RedisCluster = None
        args.no_naive = True
        print("# naive: not measured, the Python redis client is not installed (pip install redis)")

    print(f"# redis_tier: {args.rows:,} rows, 3 masters (no replicas), {args.partitions} partitions, "
          f"lookup_threads {args.lookup_threads or 'default'}, Redis huge pages {'on' if args.huge_pages else 'off'}; "
          f"hps {hps.__version__}; {platform.machine()}, {os.cpu_count()} cores; "
          f"load average {os.getloadavg()[0]:.2f} at the start")
    print(f"{'D':>4} {'batch':>8} | {'hps Mkeys/s':>11} {'p50 ms':>8} | {'roof Mkeys/s':>12} | "
          f"{'naive Mkeys/s':>13} | {'hps/roof':>8} {'hps/naive':>9}")
    print("-" * 92)
    rng = np.random.default_rng(0)
    profiles = []
    with LocalRedis(masters=3, replicas=0, huge_pages=args.huge_pages) as cluster, \
            tempfile.TemporaryDirectory() as tmp:
        naive_client = None
        if not args.no_naive:
            naive_client = RedisCluster(host="127.0.0.1", port=cluster.ports[0])
        for dim in args.dims:
            keys = rng.choice(np.int64(1) << 40, size=args.rows, replace=False).astype(np.int64)
            rows = rng.standard_normal((args.rows, dim), dtype=np.float32)
            folder = os.path.join(tmp, f"t{dim}")
            hps.write_sparse_model(folder, keys, rows)
            model = f"bench{dim}"
            config = {"supportlonglong": True,
                      "volatile_db": {"type": "redis_cluster", "address": cluster.address,
                                      "num_partitions": args.partitions, "num_node_connections": 4,
                                      # Loading writes the whole table in one call: on a busy shared
                                      # machine that takes longer than the default second.
                                      "operation_timeout_ms": 60000},
                      "models": [{"model": model, "sparse_files": [folder], "embedding_vecsize_per_table": [dim]}]}
            mem_before = used_memory(cluster)
            with hps.HPS(config, **({"lookup_threads": args.lookup_threads} if args.lookup_threads else {})) as ps:
                per_row = (used_memory(cluster) - mem_before) / args.rows
                print(f"# D={dim}: {per_row:.0f} bytes of Redis memory per row ({4 * dim + 8} raw key and row bytes); "
                      f"{cluster.huge_page_bytes() / 2**20:.0f} MiB of the servers' memory in huge pages")
                # The better of two runs: the machine may be shared, and the roof should not be low.
                roof = max(roof_get_rate(cluster, 4 * dim, args.rows, 400000 if dim <= 16 else 200000)
                           for _ in range(2))
                part_keys = []
                if naive_client is not None:
                    part_keys = partition_keys(naive_client, f"hps_et.{model}.sparse_embedding0", args.partitions)
                    per_master = {}
                    for name in part_keys:
                        node = naive_client.get_node_from_key(name).name
                        per_master[node] = per_master.get(node, 0) + 1
                    print(f"# D={dim}: partitions per master {'/'.join(str(n) for n in sorted(per_master.values()))}")
                for batch in args.batches:
                    n_batches = max(2, min(8, (1 << 20) // batch))
                    batches = [keys[rng.integers(0, args.rows, batch)] for _ in range(n_batches)]
                    out = np.empty((batch, dim), np.float32)
                    check = batches[0]
                    got = ps.lookup(model, 0, check)
                    hps_lookup = lambda b: ps.lookup(model, 0, b, out=out)  # noqa: E731

                    naive = float("nan")
                    timed = [hps_lookup]
                    if naive_client is not None:
                        def naive_lookup(b):
                            parts = partition_of(b, args.partitions)
                            pipe = naive_client.pipeline(transaction=False)
                            order = []
                            for p in range(args.partitions):
                                where = np.nonzero(parts == p)[0]
                                if len(where) == 0:
                                    continue
                                order.append(where)
                                pipe.hmget(part_keys[p], [k.tobytes() for k in b[where]])
                            result = np.empty((len(b), dim), np.float32)
                            for where, values in zip(order, pipe.execute()):
                                result[where] = np.frombuffer(b"".join(values), np.float32).reshape(-1, dim)
                            return result

                        np.testing.assert_array_equal(naive_lookup(check), got)
                        timed.append(naive_lookup)
                    results = time_interleaved(timed, batches, args.repeats)
                    t_hps, p50 = results[0]
                    if naive_client is not None:
                        naive = batch / results[1][0] / 1e6
                    if args.profile:
                        profiles.append((dim, batch, "hps", profile_calls(hps_lookup, batches, cluster)))
                        if naive_client is not None:
                            profiles.append((dim, batch, "naive", profile_calls(naive_lookup, batches[:4], cluster)))
                    mk = batch / t_hps / 1e6
                    print(f"{dim:>4} {batch:>8} | {mk:>11.2f} {p50 * 1e3:>8.2f} | {roof / 1e6:>12.2f} | "
                          f"{naive:>13.2f} | {mk / (roof / 1e6):>8.2f} {mk / naive:>9.1f}", flush=True)
                # Every row right (one batch checked against the files).
                sample = keys[rng.integers(0, args.rows, 4096)]
                where = np.searchsorted(np.sort(keys), sample)
                order = np.argsort(keys)
                np.testing.assert_array_equal(ps.lookup(model, 0, sample), rows[order[where]])
        if naive_client is not None:
            naive_client.close()
    print(f"# load average {os.getloadavg()[0]:.2f} at the end of the measurements")
    if profiles:
        print("# where the time goes, ns per key (one pass over the batches; CPU from all threads/processes)")
        print(f"{'D':>4} {'batch':>8} {'who':>6} | {'wall':>7} {'client CPU':>10} {'servers CPU':>11} "
              f"{'in HMGET':>8} | {'CPU/wall':>8} {'hps/naive':>9}")
        hps_wall = {(dim, batch): wall for dim, batch, who, (wall, *_) in profiles if who == "hps"}
        for dim, batch, who, (wall, cpu, servers, hmget) in profiles:
            # Sustained: calls back to back (the rate of a busy server), where the table above takes
            # each way's fastest single call between calls of the other.
            ratio = f"{wall / hps_wall[dim, batch]:>9.1f}" if who == "naive" else ""
            print(f"{dim:>4} {batch:>8} {who:>6} | {wall:>7.0f} {cpu:>10.0f} {servers:>11.0f} {hmget:>8.0f} | "
                  f"{(cpu + servers) / wall:>8.2f} {ratio}")


if __name__ == "__main__":
    main()
