#!/usr/bin/env python3
"""Soak (issue 15, item 4): mixed lookups, updates, erases and refreshes at a steady rate on every tier,
every returned row checked against a reference model, RSS and open file handles sampled.

Servers (one process, side by side, each with its own keys, threads and reference model):
  - hash_map+rocks_db: a CPU-memory tier that holds about a quarter of the rows (random eviction,
    misses promoted) over RocksDB, so lookups are answered by both tiers and promotions race updates;
  - redis_cluster+rocks_db (--redis): the same over a local 3-master Redis Cluster started by
    tests/python/redis_cluster.py (127.0.0.1, stopped by pid at the end);
  - gpu_cache+hash_map (--gpu, instead of the above: the GPU machine has no RocksDB or Redis): the GPU
    cache in front of the hash map, keys handed over as CUDA tensors (torch).

Reference model. Keys of a server are split among its worker threads; only the owner of a key writes
it, so the owner knows each key's state exactly. A key's k-th write (k = 1, 2, ...) is either an update
to the row f(key, k) (row[0] = k, row[1] = the key's index, the rest a hash of both: a torn row or
another key's row never equals f) or an erase (the table's default row). Every thread also looks up
keys of the other threads; such a lookup may legally return any state between the one committed
before it started and the last one started when it returned: the owner publishes `started` before
each call and `committed` after it returns, so a reader checks
    committed_before <= k <= started_after             for a row f(key, k), and
    last_erase_after >= committed_before               for the default row.
A lookup of a thread's own keys must return exactly the committed state. Erase's returned count must be
the number of the erased keys that were present. Any other row is a wrong row.

Steady rate: each worker runs --rate operations a second (paced, not flat out), one refresher calls
refresh() every second. A sampler reads VmRSS and the entries of /proc/self/fd every --sample-seconds;
a least-squares slope over the second half of the run is printed per minute (no growth: about 0).

Memory accounting: next to RSS the sampler reads what the tiers report holding (stats' tier_bytes: the
hash map; RocksDB's memtables and table readers) and RocksDB's block caches (tier_counters:
block_cache_usage_bytes, one cache per store, capped by persistent_db.block_cache_size, which
--block-cache-mib sets). RSS minus both, "unaccounted", is the memory nothing reports: the Python
process, allocator slack, anything that leaks. RocksDB's caches fill up to their caps and stop; a
leak would show as growth of the unaccounted memory. Memtables (persistent_db.memtable_size,
--memtable-mib) fill and are flushed over and over: the allocator keeps the memory of a flushed one
for the next, so the unaccounted memory rises by up to a memtable at each flush and falls as the
next one fills (a saw-tooth; small memtables make it small). Free memory the allocator keeps resident
(fragmentation across malloc arenas) also counts in RSS: the run ends by printing RSS before and after
malloc_trim(0), and --malloc-trim trims before every sample, so RSS then follows the memory in use.

Usage: python benchmarks/soak.py [--minutes 60] [--threads 4] [--rate 40] [--keys 100000] [--redis]
                                 [--block-cache-mib 32] [--memtable-mib 8] [--malloc-trim]
       python benchmarks/soak.py --gpu --minutes 10          (the GPU machine)
Exit status 1 when any error or wrong row was seen (or a --max-* growth bound was passed), else 0.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import traceback

import numpy as np

import hps

DEFAULT = -1.0  # every table's default row value (f never produces it: row[0] = k >= 0)
STRIDE, OFFSET = 2_654_435_761, -(1 << 40)  # key = OFFSET + index * STRIDE: spread, some negative


def keys_of(index: np.ndarray) -> np.ndarray:
    return OFFSET + index.astype(np.int64) * STRIDE


def rows_of(index: np.ndarray, version: np.ndarray, dim: int) -> np.ndarray:
    """f(key, k): exact in float32 (every value an integer below 2^24 or a multiple of 1/8 below 1024)."""
    index = index.astype(np.int64)[:, None]
    version = version.astype(np.int64)[:, None]
    j = np.arange(dim, dtype=np.int64)[None, :]
    rows = (((index * 7919 + version * 104729 + j * 31) % 8191) / 8.0).astype(np.float32)
    rows[:, 0] = version[:, 0]
    if dim > 1:
        rows[:, 1] = index[:, 0] % (1 << 23)
    return rows


class Reference:
    """One server's reference model: per key index, the state numbers described above."""

    def __init__(self, n: int, present: np.ndarray):
        self.started = np.zeros(n, np.int64)
        self.committed = np.zeros(n, np.int64)
        self.last_erase = np.where(present, -1, 0).astype(np.int64)  # absent at the start = erased at 0
        self.present = present.copy()  # committed state is a row (owner's view)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.ops = {"lookup_own": 0, "lookup_any": 0, "update": 0, "erase": 0, "refresh": 0}
        self.rows_checked = 0
        self.wrong_rows = 0
        self.errors = 0
        self.first_problems: list[str] = []

    def problem(self, text: str) -> None:
        with self.lock:
            if len(self.first_problems) < 20:
                self.first_problems.append(text)
                print(f"PROBLEM at {time.strftime('%H:%M:%S')}: {text}", file=sys.stderr, flush=True)


class Server:
    """One HPS server with its model "m", table 0, its reference and its statistics."""

    def __init__(self, name: str, config: dict, n: int, present: np.ndarray, dim: int, gpu: bool):
        self.name, self.n, self.dim, self.gpu = name, n, dim, gpu
        self.ps = hps.HPS(config)
        self.ref = Reference(n, present)
        self.stats = Stats()

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        if self.gpu:
            import torch
            rows = self.ps.lookup("m", 0, torch.from_numpy(keys).cuda())
            return rows.cpu().numpy()  # (.cpu() waits for the lookup's stream)
        return self.ps.lookup("m", 0, keys)


def check_rows(server: Server, index: np.ndarray, rows: np.ndarray, low: np.ndarray, high: np.ndarray,
               erased_since: np.ndarray, what: str) -> int:
    """Wrong rows among `rows` (looked up for `index`): see the module docstring for the rule."""
    dim = server.dim
    default = (rows == np.float32(DEFAULT)).all(axis=1)
    first = np.nan_to_num(rows[:, 0], nan=-2.0, posinf=-2.0, neginf=-2.0)
    version = np.clip(np.rint(first), 0, 1 << 24).astype(np.int64)
    is_f = (rows == rows_of(index, version, dim)).all(axis=1)
    ok_row = is_f & (version >= low) & (version <= high)
    ok_default = default & (erased_since >= low)
    bad = np.flatnonzero(~(ok_row | ok_default))
    if bad.size:
        b = bad[0]
        server.stats.problem(
            f"{server.name} {what}: {bad.size} wrong of {index.size}, e.g. key {keys_of(index[b:b + 1])[0]} "
            f"(index {index[b]}): got {rows[b, :4].tolist()}..., allowed states {low[b]}..{high[b]}, "
            f"last erase {erased_since[b]}")
    return int(bad.size)


def worker(server: Server, me: int, threads: int, args, stop: threading.Event) -> None:
    rng = np.random.default_rng([args.seed, me, sum(server.name.encode())])
    ref, stats, batch = server.ref, server.stats, args.batch
    mine = np.arange(me, server.n, threads, dtype=np.int64)
    period = 1.0 / args.rate
    next_at = time.monotonic()
    local = {"lookup_own": 0, "lookup_any": 0, "update": 0, "erase": 0}
    checked = wrong = errors = 0
    while not stop.is_set():
        next_at += period
        delay = next_at - time.monotonic()
        if delay > 0:
            stop.wait(delay)
        elif delay < -1.0:  # fell behind (a slow moment): keep the rate, do not burst to catch up
            next_at = time.monotonic()
        op = rng.choice(4, p=(0.3, 0.4, 0.2, 0.1))
        try:
            if op == 0:  # own keys: the committed state exactly
                index = rng.choice(mine, batch, replace=False)
                rows = server.lookup(keys_of(index))
                c = ref.committed[index]
                wrong += check_rows(server, index, rows, c, c,
                                    np.where(ref.present[index], -1, c), "lookup of own keys")
                checked += index.size
                local["lookup_own"] += 1
            elif op == 1:  # any keys (duplicates included), written concurrently by other threads
                index = rng.integers(0, server.n, batch)
                low = ref.committed[index].copy()
                rows = server.lookup(keys_of(index))
                high = ref.started[index].copy()
                erased = ref.last_erase[index].copy()
                wrong += check_rows(server, index, rows, low, high, erased, "lookup of any keys")
                checked += index.size
                local["lookup_any"] += 1
            else:
                index = rng.choice(mine, batch // 4 if op == 3 else batch, replace=False)
                state = ref.committed[index] + 1
                ref.started[index] = state  # before the call: a reader may see it from now on
                if op == 2:
                    server.ps.update("m", 0, keys_of(index), rows_of(index, state, server.dim))
                    ref.present[index] = True
                    local["update"] += 1
                else:
                    ref.last_erase[index] = state
                    expected = int(ref.present[index].sum())
                    found = server.ps.erase("m", 0, keys_of(index))
                    ref.present[index] = False
                    if found != expected:
                        wrong += 1
                        stats.problem(f"{server.name} erase: returned {found}, {expected} of the keys were present")
                    local["erase"] += 1
                ref.committed[index] = state  # after it returned: every later lookup must see it
        except Exception as error:  # noqa: BLE001 - every failure is counted and reported
            errors += 1
            stats.problem(f"{server.name} thread {me}: {type(error).__name__}: {error}\n{traceback.format_exc()}")
            if errors > 100:
                break
        if sum(local.values()) % 64 == 0:
            flush(stats, local, checked, wrong, errors)
            checked = wrong = errors = 0
    flush(stats, local, checked, wrong, errors)


def flush(stats: Stats, local: dict, checked: int, wrong: int, errors: int) -> None:
    with stats.lock:
        for k, v in local.items():
            stats.ops[k] += v
            local[k] = 0
        stats.rows_checked += checked
        stats.wrong_rows += wrong
        stats.errors += errors


def refresher(server: Server, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        try:
            server.ps.refresh("m")
            with server.stats.lock:
                server.stats.ops["refresh"] += 1
        except Exception as error:  # noqa: BLE001
            with server.stats.lock:
                server.stats.errors += 1
            server.stats.problem(f"{server.name} refresh: {type(error).__name__}: {error}")


def malloc_trim() -> bool:
    """glibc's malloc_trim(0): hands the allocator's free memory (in every arena) back to the system.
    False where the C library has none."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return False
    trim(ctypes.c_size_t(0))  # returns whether it released anything; either is fine here
    return True


def sample() -> tuple[float, int]:
    """(RSS in MiB, open file descriptors) of this process."""
    with open("/proc/self/status") as f:
        rss_kib = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return rss_kib / 1024.0, len(os.listdir("/proc/self/fd"))


def tier_mib(servers: list) -> tuple[float, float]:
    """(what the servers' tiers report holding in this process (stats' tier_bytes), the usage of their
    RocksDB block caches), in MiB. A block cache is its store's, reported alike by each of its tables:
    counted once per server (each server here has one store)."""
    tiers = cache = 0
    for server in servers:
        tables = server.ps.stats()
        tiers += sum(sum(table["tier_bytes"].values()) for table in tables)
        cache += max((table["tier_counters"].get("persistent_db", {}).get("block_cache_usage_bytes", 0)
                      for table in tables), default=0)
    return tiers / (1 << 20), cache / (1 << 20)


def slope_per_minute(t: np.ndarray, y: np.ndarray, share: float = 0.5) -> float:
    """Least-squares slope of y over the last `share` of the samples (default the second half), per minute."""
    first = t.size - int(round(t.size * share))
    if t.size - first < 2:
        return float("nan")
    return float(np.polyfit(t[first:] / 60.0, y[first:], 1)[0])


def build_servers(args, folder: str, cluster) -> list[Server]:
    rng = np.random.default_rng(args.seed)
    present = rng.random(args.keys) < 0.8  # a fifth of the keys are unknown at the start
    index = np.flatnonzero(present)
    table = os.path.join(folder, "table")
    hps.write_sparse_model(table, keys_of(index), rows_of(index, np.zeros(index.size, np.int64), args.dim))
    model = {"model": "m", "sparse_files": [table], "embedding_vecsize_per_table": [args.dim],
             "default_value_for_each_table": [DEFAULT], "gpucache": bool(args.gpu)}
    partitions = 4
    bounded = {"num_partitions": partitions, "overflow_margin": max(16, args.keys // partitions // 4),
               "overflow_policy": "evict_random", "cache_missed_embeddings": True}
    persistent = {"type": "rocks_db"}
    if args.block_cache_mib is not None:
        persistent["block_cache_size"] = f"{args.block_cache_mib}MiB"
    if args.memtable_mib is not None:
        persistent["memtable_size"] = f"{args.memtable_mib}MiB"
    specs = []
    if args.gpu:
        specs.append(("gpu_cache+hash_map", {"volatile_db": {"type": "hash_map", "num_partitions": partitions},
                                             "models": [dict(model, gpucacheper=0.2)]}))
    elif args.hash_map_only:
        specs.append(("hash_map", {"volatile_db": {"type": "hash_map", "num_partitions": partitions},
                                   "models": [model]}))
    else:
        specs.append(("hash_map+rocks_db", {"volatile_db": dict(bounded, type="hash_map"),
                                            "persistent_db": dict(persistent, path=os.path.join(folder, "db1")),
                                            "models": [model]}))
        if cluster is not None:
            specs.append(("redis_cluster+rocks_db",
                          {"volatile_db": dict(bounded, type="redis_cluster", address=cluster.address),
                           "persistent_db": dict(persistent, path=os.path.join(folder, "db2")),
                           "models": [model]}))
    return [Server(name, dict(config, supportlonglong=True), args.keys, present, args.dim, args.gpu)
            for name, config in specs]


def run(args) -> dict:
    folder = args.dir or tempfile.mkdtemp(prefix="hps_soak_")
    os.makedirs(folder, exist_ok=True)
    cluster = None
    try:
        if args.gpu:
            try:
                import torch
            except ImportError:
                raise SystemExit("--gpu hands keys over as CUDA tensors: install torch") from None
            if not (torch.cuda.is_available() and hps.cuda_device_count() > 0):
                raise SystemExit("--gpu needs a CUDA device and a CUDA build of hps (hps.build_features())")
            if args.redis:
                raise SystemExit("--gpu runs the hash map only (the GPU machine has no RocksDB or Redis)")
        if args.hash_map_only and args.redis:
            raise SystemExit("--hash-map-only and --redis exclude each other")
        if args.redis:
            sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
            from redis_cluster import LocalRedis, redis_installed
            if not redis_installed():
                raise SystemExit("--redis: redis-server and redis-cli are not installed")
            if not hps.redis_available():
                raise SystemExit("--redis: this build of hps has no Redis Cluster tier")
            cluster = LocalRedis(masters=3, replicas=0, node_timeout_ms=5000)
        servers = build_servers(args, folder, cluster)
        return soak(args, servers)
    finally:
        if cluster is not None:
            cluster.stop()
        if not args.dir:
            shutil.rmtree(folder, ignore_errors=True)


def soak(args, servers: list[Server]) -> dict:
    seconds = args.minutes * 60.0
    every = args.sample_seconds or max(1.0, min(10.0, seconds / 60.0))
    stop = threading.Event()
    threads = []
    for server in servers:
        threads += [threading.Thread(target=worker, args=(server, j, args.threads, args, stop), daemon=True)
                    for j in range(args.threads)]
        threads.append(threading.Thread(target=refresher, args=(server, stop), daemon=True))
    start = time.monotonic()
    for t in threads:
        t.start()
    samples = []
    print(f"# soak: {[s.name for s in servers]}, {args.threads} threads x {args.rate} ops/s each, "
          f"{args.keys} keys, D={args.dim}, batch {args.batch}, {args.minutes} min", flush=True)
    while True:
        now = time.monotonic() - start
        if args.malloc_trim:
            malloc_trim()
        rss, fds = sample()
        tiers, cache = tier_mib(servers)
        samples.append((now, rss, fds, tiers, cache, rss - tiers - cache))
        if args.progress:
            ops = sum(sum(s.stats.ops.values()) for s in servers)
            wrong = sum(s.stats.wrong_rows + s.stats.errors for s in servers)
            print(f"  t={now:7.0f}s rss={rss:8.1f} MiB tiers={tiers:7.1f} block_cache={cache:7.1f} "
                  f"unaccounted={rss - tiers - cache:7.1f} MiB fds={fds:4d} ops={ops} wrong+errors={wrong}", flush=True)
        if now >= seconds or (args.stop_on_error and any(s.stats.wrong_rows or s.stats.errors for s in servers)):
            break
        time.sleep(min(every, max(0.0, seconds - now)) or 0.01)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    # Memory the allocator holds free (returned to it but kept resident) is part of RSS, not in use:
    # measured once at the end, with the servers still open.
    rss_before_trim = sample()[0]
    trimmed = malloc_trim()
    rss_after_trim = sample()[0] if trimmed else float("nan")
    for server in servers:
        server.ps.close()
    t, rss, fds, tiers, cache, unaccounted = (np.array(c, dtype=np.float64) for c in zip(*samples))
    half = t.size // 2
    result = {
        "elapsed_s": elapsed,
        "samples": int(t.size),
        "rss_mib_first": float(rss[0]), "rss_mib_last": float(rss[-1]), "rss_mib_max": float(rss.max()),
        "rss_slope_mib_per_min": slope_per_minute(t, rss),
        "rss_mib_end_before_malloc_trim": rss_before_trim, "rss_mib_end_after_malloc_trim": rss_after_trim,
        "rss_slope_last_quarter_mib_per_min": slope_per_minute(t, rss, 0.25),
        "rss_growth_second_half_mib": float(rss[half:].max() - rss[half]),
        "fds_first": int(fds[0]), "fds_last": int(fds[-1]), "fds_max": int(fds.max()),
        "fds_slope_per_min": slope_per_minute(t, fds),
        "fds_growth_second_half": int(fds[half:].max() - fds[half]),
        "tier_mib_first": float(tiers[0]), "tier_mib_last": float(tiers[-1]),
        "tier_slope_mib_per_min": slope_per_minute(t, tiers),
        "block_cache_mib_first": float(cache[0]), "block_cache_mib_last": float(cache[-1]),
        "block_cache_mib_max": float(cache.max()),
        "block_cache_slope_mib_per_min": slope_per_minute(t, cache),
        "unaccounted_mib_first": float(unaccounted[0]), "unaccounted_mib_last": float(unaccounted[-1]),
        "unaccounted_mib_max": float(unaccounted.max()),
        "unaccounted_slope_mib_per_min": slope_per_minute(t, unaccounted),
        "unaccounted_slope_last_quarter_mib_per_min": slope_per_minute(t, unaccounted, 0.25),
        "unaccounted_growth_second_half_mib": float(unaccounted[half:].max() - unaccounted[half]),
        "samples_t_rss_tiers_cache_fds": [[round(float(a), 1) for a in row]
                                          for row in zip(t, rss, tiers, cache, fds)],
        "servers": {s.name: {"ops": dict(s.stats.ops), "rows_checked": s.stats.rows_checked,
                             "wrong_rows": s.stats.wrong_rows, "errors": s.stats.errors,
                             "problems": s.stats.first_problems} for s in servers},
    }
    result["wrong_rows"] = sum(v["wrong_rows"] for v in result["servers"].values())
    result["errors"] = sum(v["errors"] for v in result["servers"].values())
    return result


def report(args, result: dict) -> None:
    caps = f", each capped at {args.block_cache_mib} MiB" if args.block_cache_mib is not None else ""
    print(f"# hps {hps.__version__}; {platform.machine()}, {os.cpu_count()} cores; ran {result['elapsed_s'] / 60:.2f} "
          f"min, {result['samples']} samples")
    print(f"{'server':24} {'lookups':>10} {'updates':>9} {'erases':>8} {'refresh':>8} {'rows checked':>13} "
          f"{'wrong':>6} {'errors':>6}")
    for name, s in result["servers"].items():
        ops = s["ops"]
        print(f"{name:24} {ops['lookup_own'] + ops['lookup_any']:10d} {ops['update']:9d} {ops['erase']:8d} "
              f"{ops['refresh']:8d} {s['rows_checked']:13d} {s['wrong_rows']:6d} {s['errors']:6d}")
        for p in s["problems"]:
            print("  " + p.rstrip().replace("\n", "\n  "))
    print(f"RSS MiB: first {result['rss_mib_first']:.1f}, last {result['rss_mib_last']:.1f}, max "
          f"{result['rss_mib_max']:.1f}; second half: slope {result['rss_slope_mib_per_min']:+.3f} MiB/min, "
          f"growth {result['rss_growth_second_half_mib']:.1f} MiB; last quarter: slope "
          f"{result['rss_slope_last_quarter_mib_per_min']:+.3f} MiB/min")
    print(f"at the end: RSS {result['rss_mib_end_before_malloc_trim']:.1f} MiB, after malloc_trim(0) "
          f"{result['rss_mib_end_after_malloc_trim']:.1f} MiB (the rest: free memory the allocator kept)")
    print(f"tiers' own memory (stats tier_bytes: hash map; RocksDB memtables and table readers) MiB: first "
          f"{result['tier_mib_first']:.1f}, last {result['tier_mib_last']:.1f}; second half: slope "
          f"{result['tier_slope_mib_per_min']:+.3f} MiB/min")
    print(f"RocksDB block caches (tier_counters block_cache_usage_bytes{caps}) MiB: first "
          f"{result['block_cache_mib_first']:.1f}, last {result['block_cache_mib_last']:.1f}, max "
          f"{result['block_cache_mib_max']:.1f}; second half: slope {result['block_cache_slope_mib_per_min']:+.3f} MiB/min")
    print(f"unaccounted (RSS - tiers - block caches) MiB: first {result['unaccounted_mib_first']:.1f}, last "
          f"{result['unaccounted_mib_last']:.1f}, max {result['unaccounted_mib_max']:.1f}; second half: slope "
          f"{result['unaccounted_slope_mib_per_min']:+.3f} MiB/min, growth "
          f"{result['unaccounted_growth_second_half_mib']:.1f} MiB; last quarter: slope "
          f"{result['unaccounted_slope_last_quarter_mib_per_min']:+.3f} MiB/min")
    print(f"open fds: first {result['fds_first']}, last {result['fds_last']}, max {result['fds_max']}; second half: "
          f"slope {result['fds_slope_per_min']:+.3f}/min, growth {result['fds_growth_second_half']}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--threads", type=int, default=4, help="worker threads per server")
    p.add_argument("--rate", type=float, default=40.0, help="operations per second per worker thread")
    p.add_argument("--keys", type=int, default=100_000, help="keys per server (4/5 of them in the table file)")
    p.add_argument("--dim", type=int, default=16)
    p.add_argument("--batch", type=int, default=256, help="keys per lookup and update (erase: a quarter)")
    p.add_argument("--redis", action="store_true", help="also a Redis Cluster tier (needs redis-server)")
    p.add_argument("--gpu", action="store_true", help="the GPU cache over the hash map only (needs torch + CUDA)")
    p.add_argument("--hash-map-only", action="store_true",
                   help="the hash map alone, no RocksDB (tells the core's memory from RocksDB's caches)")
    p.add_argument("--block-cache-mib", type=int,
                   help="persistent_db.block_cache_size of each RocksDB store, in MiB (default: the config's, 256)")
    p.add_argument("--memtable-mib", type=int,
                   help="persistent_db.memtable_size of each RocksDB store, in MiB (default: the config's, 64)")
    p.add_argument("--malloc-trim", action="store_true",
                   help="call malloc_trim(0) before each sample: RSS then counts memory in use, not what the allocator "
                        "keeps free (tells fragmentation from a leak)")
    p.add_argument("--sample-seconds", type=float, default=0.0, help="default: run/60, within [1, 10]")
    p.add_argument("--dir", help="working folder (kept); default a temporary one, removed")
    p.add_argument("--json", help="also write the result here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--progress", action="store_true", help="print each sample")
    p.add_argument("--stop-on-error", action="store_true")
    p.add_argument("--max-rss-growth-mib", type=float, help="fail when RSS grew more over the second half")
    p.add_argument("--max-fd-growth", type=int, help="fail when open fds grew more over the second half")
    args = p.parse_args(argv)
    if args.threads < 1 or args.rate <= 0 or args.batch < 4 or args.keys < args.threads * args.batch:
        p.error("need threads >= 1, rate > 0, batch >= 4 and keys >= threads * batch")
    result = run(args)
    report(args, result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    failed = result["wrong_rows"] or result["errors"]
    if args.max_rss_growth_mib is not None and result["rss_growth_second_half_mib"] > args.max_rss_growth_mib:
        print(f"FAIL: RSS grew {result['rss_growth_second_half_mib']:.1f} MiB over the second half "
              f"(bound {args.max_rss_growth_mib})")
        failed = True
    if args.max_fd_growth is not None and result["fds_growth_second_half"] > args.max_fd_growth:
        print(f"FAIL: open fds grew by {result['fds_growth_second_half']} over the second half (bound {args.max_fd_growth})")
        failed = True
    print("FAIL" if failed else "OK: no error, no wrong row")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
