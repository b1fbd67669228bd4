#!/usr/bin/env python3
"""Freshness of streamed updates: publish -> visible to lookups, and the lookup throughput they cost.

One run, two phases over the same server (CPU tiers: the hash map, plus RocksDB with --rocksdb),
fed by a tansu broker on 127.0.0.1 (the one the tests use; scripts/setup.sh --test installs it):
  1. alone: a lookup thread looks up batches of --batch keys in a closed loop for --seconds;
  2. control: the same, while a publisher sends --rate rows per second to a model the server does
     not follow (the broker, the publisher and the polling share the machine; nothing is applied);
  3. updates: the same lookups while a publisher (hps.UpdatePublisher) sends --rate rows per second
     in batches every 10 ms, and a watcher polls a probe key of every batch (every ~1 ms) until a
     lookup returns its new row. Freshness = time from publish() returning to that lookup;
     after the server's update path returns, every later lookup sees the row (update_source.hpp),
     so the first lookup that sees it bounds when every lookup does.
Printed: p50/p99/max freshness, lookup keys/s in each phase, the share lost to updates and the
share lost to applying them (updates vs control).
Usage: python benchmarks/update_freshness.py [--rows 200000] [--dim 32] [--rate 10000] [--seconds 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time

import numpy as np

import hps

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
from kafka_broker import Broker, wait_until  # noqa: E402


def lookup_loop(ps: "hps.HPS", keys: np.ndarray, batch: int, stop: threading.Event, counts: list) -> None:
    rng = np.random.default_rng(1)
    out = np.empty((batch, ps.dim("m", 0)), np.float32)
    batches = [keys[rng.integers(0, keys.size, batch)] for _ in range(64)]
    done = 0
    i = 0
    while not stop.is_set():
        ps.lookup("m", 0, batches[i % 64], out=out)
        done += batch
        i += 1
    counts.append(done)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


CPU: dict[str, list[float]] = {}  # phase -> [hps process CPU s per s, broker CPU s per s] per round


def run_phase(ps, keys, batch, seconds, during=None, name="", broker_pid=0) -> float:
    cpu0 = (time.process_time(), cpu_seconds(broker_pid) if broker_pid else 0.0)
    stop = threading.Event()
    counts: list = []
    t = threading.Thread(target=lookup_loop, args=(ps, keys, batch, stop, counts))
    started = time.perf_counter()
    t.start()
    if during:
        during(started + seconds)
    else:
        time.sleep(seconds)
    stop.set()
    t.join()
    elapsed = time.perf_counter() - started
    if name:
        CPU.setdefault(name, []).append(((time.process_time() - cpu0[0]) / elapsed,
                                         ((cpu_seconds(broker_pid) - cpu0[1]) if broker_pid else 0.0) / elapsed))
    return counts[0] / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4096, help="keys per lookup call")
    ap.add_argument("--rate", type=int, default=10_000, help="updated rows per second")
    ap.add_argument("--seconds", type=float, default=4.0, help="length of each phase")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the three phases (medians reported)")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--rocksdb", action="store_true", help="add the RocksDB persistent tier")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="hps_fresh_")
    rng = np.random.default_rng(0)
    keys = rng.choice(np.arange(0, 2**40, 2**40 // (4 * args.rows), dtype=np.int64), args.rows, replace=False)
    hps.write_sparse_model(os.path.join(tmp, "t0"), keys, rng.standard_normal((args.rows, args.dim), np.float32))
    broker = Broker(os.path.join(tmp, "tansu.log"))
    broker.start()
    config = {"supportlonglong": True, "volatile_db": {"type": "hash_map"},
              "update_source": {"type": "kafka_message_queue", "brokers": broker.brokers,
                                "metadata_refresh_interval_ms": 500, "poll_timeout_ms": 50},
              "models": [{"model": "m", "sparse_files": [os.path.join(tmp, "t0")],
                          "embedding_vecsize_per_table": [args.dim]}]}
    if args.rocksdb:
        config["persistent_db"] = {"type": "rocks_db", "path": os.path.join(tmp, "db")}
    try:
        with hps.HPS(config) as ps:
            pub = hps.UpdatePublisher(broker.brokers, "m", partitions=args.partitions)
            pub.publish("sparse_embedding0", keys[:1], np.zeros((1, args.dim)))  # topic exists, consumer assigned
            pub.flush()
            wait_until(lambda: ps.update_source_stats()[0]["rows"] >= 1, "the consumer runs")

            per_tick = max(1, args.rate // 100)  # every 10 ms
            pending: dict[int, tuple[int, float]] = {}  # probe key -> (sequence, publish time)
            lock = threading.Lock()
            latencies: list[float] = []

            def watch(stop: threading.Event, control: bool) -> None:
                """Polls the probe keys every ~1 ms; in the control phase, 5 fixed keys (same cost)."""
                fixed = keys[:5]
                while not stop.is_set():
                    with lock:
                        probes = list(pending.items())
                    if control:
                        ps.lookup("m", 0, fixed)
                    elif probes:
                        got = ps.lookup("m", 0, np.array([k for k, _ in probes], np.int64))[:, 0]
                        now = time.perf_counter()
                        with lock:
                            for (k, (seq, t0)), v in zip(probes, got):
                                if v == seq:
                                    latencies.append(now - t0)
                                    pending.pop(k, None)
                    time.sleep(0.001)

            published = [0]

            def publisher_phase(publisher: "hps.UpdatePublisher", control: bool):
                def publish_until(deadline: float) -> None:
                    stop = threading.Event()
                    watcher = threading.Thread(target=watch, args=(stop, control))
                    watcher.start()
                    seq = 1
                    next_tick = time.perf_counter()
                    while time.perf_counter() < deadline:
                        batch_keys = np.unique(keys[rng.integers(0, keys.size, per_tick)])
                        rows = np.full((batch_keys.size, args.dim), float(seq), np.float32)
                        if not control:
                            with lock:
                                for k in batch_keys.tolist():  # a newer row supersedes a watched one
                                    pending.pop(k, None)
                        publisher.publish("sparse_embedding0", batch_keys, rows)
                        if not control:
                            with lock:
                                pending[int(batch_keys[0])] = (seq, time.perf_counter())
                            published[0] += batch_keys.size
                        seq += 1
                        next_tick += 0.01
                        time.sleep(max(0.0, next_tick - time.perf_counter()))
                    if not control:  # let the last probes land
                        publisher.flush()
                        wait_until(lambda: not pending, "every probe is seen", timeout=30)
                    stop.set()
                    watcher.join()
                return publish_until

            # Control: the same publishing, broker and polling, to a model the server does not follow
            # (what co-locating the broker and the publisher costs, without applying anything).
            # The phases alternate over --rounds rounds (the machine is shared); medians are reported.
            other = hps.UpdatePublisher(broker.brokers, "other", partitions=args.partitions)
            bases, controls, updates = [], [], []
            for _ in range(args.rounds):
                pid = broker.process.pid
                bases.append(run_phase(ps, keys, args.batch, args.seconds, None, "alone", pid))
                controls.append(run_phase(ps, keys, args.batch, args.seconds, publisher_phase(other, True),
                                          "control", pid))
                other.flush()
                updates.append(run_phase(ps, keys, args.batch, args.seconds, publisher_phase(pub, False),
                                         "updates", pid))
            base, control, with_updates = (float(np.median(v)) for v in (bases, controls, updates))
            stats = ps.update_source_stats()[0]
    finally:
        broker.stop()

    lat = np.array(latencies) * 1e3
    result = {
        "rows": args.rows, "dim": args.dim, "batch": args.batch, "rate_rows_per_s": args.rate,
        "published_rows": published[0], "achieved_rate": published[0] / (args.seconds * args.rounds),
        "probes": int(lat.size),
        "fresh_ms_p50": float(np.percentile(lat, 50)), "fresh_ms_p99": float(np.percentile(lat, 99)),
        "fresh_ms_max": float(lat.max()),
        "lookup_keys_per_s_base": base, "lookup_keys_per_s_control": control,
        "lookup_keys_per_s_updates": with_updates,
        "throughput_lost": 1 - with_updates / base, "throughput_lost_to_applying": 1 - with_updates / control,
        "rounds": {"alone": bases, "control": controls, "updates": updates},
        "cpu_cores_used": {k: {"hps_process": float(np.median([a for a, _ in v])),
                               "broker": float(np.median([b for _, b in v]))} for k, v in CPU.items()},
        "source": stats,
        "tiers": "hash_map" + (" + rocksdb" if args.rocksdb else ""),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"# update_freshness: {args.rows:,} rows x {args.dim}, tiers {result['tiers']}, lookups of "
          f"{args.batch:,} keys, {args.rate:,} rows/s published; {args.rounds} rounds of 3 phases of {args.seconds:.0f} s; "
          f"hps {hps.__version__}; "
          f"{platform.machine()}, {os.cpu_count()} cores")
    print(f"published {published[0]:,} rows ({result['achieved_rate']:,.0f}/s), "
          f"{int(lat.size):,} probes seen (every one); consumer: {stats['rows']:,} rows applied, "
          f"{stats['errors']} errors")
    print(f"freshness (publish returned -> lookup sees the row): p50 {result['fresh_ms_p50']:.1f} ms, "
          f"p99 {result['fresh_ms_p99']:.1f} ms, max {result['fresh_ms_max']:.1f} ms")
    print(f"lookup throughput: {base / 1e6:.2f} Mkeys/s alone; {control / 1e6:.2f} Mkeys/s next to the broker and "
          f"a publisher of rows the server does not follow (control); {with_updates / 1e6:.2f} Mkeys/s with the "
          f"updates applied")
    cores = result["cpu_cores_used"]
    print("cores busy (median): " + ", ".join(f"{k}: hps process {v['hps_process']:.2f} + broker {v['broker']:.2f}"
                                               for k, v in cores.items()))
    print(f"lost to updates: {100 * result['throughput_lost']:.1f}% of alone, of which applying them (vs control): "
          f"{100 * result['throughput_lost_to_applying']:.1f}%")


if __name__ == "__main__":
    main()
