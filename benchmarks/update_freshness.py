#!/usr/bin/env python3
"""Freshness of streamed updates (publish -> visible to lookups) and the lookup throughput they cost.

One server (the hash map, plus RocksDB with --rocksdb; with --device cuda a GPU cache above them and
lookups of torch CUDA keys) fed by a tansu broker on 127.0.0.1 (the one the tests use: scripts/setup.sh
--test installs it; where confluent-kafka is not installed, as on the GPU machine, the pieces
scripts/stage_kafka_for_gpu.sh staged in .device/kafka are used). One lookup thread looks up
batches of --batch keys in a closed loop, in windows of --seconds:
  A  alone: nothing is published (the baseline);
  B  updates: a publisher process (hps.UpdatePublisher, as a training job would be) sends --rate rows
     per second in batches every 10 ms to the followed model; the server applies them;
  C  control (--control): the same publishing to a model the server does not follow: the broker and
     the publisher run, nothing is applied.
The windows run A B A C A B A C ... A (A B A B ... A without --control): every B and C window sits
between two A windows and is compared to their mean, so slow drifts of a shared machine cancel;
the ratios over --rounds rounds are reported as median and spread (min, quartiles, max).

Threads are pinned (--pin, the default with 2 or more CPUs): the lookup thread to the first allowed
CPU; everything else (the server's consumer thread and librdkafka's threads, the broker, the
publisher process, the freshness watcher) to the others, so the comparison is of lookups that keep
their core while updates are applied next to them. The lookup thread alone also runs at
--lookup-nice (default -10, where permitted), so other work on a shared machine takes less of its
core. The server runs with --lookup-threads (default 1). Two measures of the lookups: keys per
second of wall clock (what a caller sees; on a shared machine it moves with whatever else the
scheduler puts on the lookup core), and keys per second of the lookup thread's own CPU time (what
lookups that keep their core reach: it moves only with interference through caches, memory and
locks). The lookup thread's run-queue wait, blocks (a lock or the GIL) and preemptions are shown.

Freshness: the publisher reports, for one probe key of every batch, the sequence number written
into its row and when publish() returned; a watcher thread polls the probes (every --watch-ms, 5 ms) until a
lookup returns that row or a newer one (rows carry increasing sequence numbers; one key's updates
stay in order in its partition). After the server's update path returns every later lookup sees
the row (core/include/hps/update_source.hpp), so the first lookup that sees it bounds when all do.

CPU time per update row (B windows): the consumer's (its thread "hps-kafka": parsing and applying
through every tier; librdkafka's threads: fetching), the broker's and the publisher's, from
/proc; and the lookup thread's time lost per update row: (A's key rate x window - keys done) /
A's key rate / rows applied. With the lookups on their own core, lost time much above the
consumer's CPU time per row points at interference (locks, caches, memory bandwidth), not CPU.

Usage: python benchmarks/update_freshness.py [--rows 200000] [--dim 32] [--rate 10000] [--seconds 2]
       [--rounds 8] [--control] [--no-pin] [--lookup-nice -10] [--lookup-threads 1] [--rocksdb]
       [--device cpu|cuda] [--gpucacheper 1.0] [--json] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import queue
import sys
import tempfile
import threading
import time

import numpy as np

import hps

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
from kafka_broker import Broker, wait_until  # noqa: E402
from kafka_carried import carried_folder, unpack  # noqa: E402


def use_carried_kafka(scratch: str) -> str:
    """Where confluent-kafka is not installed (the GPU machine), the pieces that
    scripts/stage_kafka_for_gpu.sh staged: the broker, the client and its librdkafka. A spawned
    publisher process gets this sys.path and environment too."""
    import importlib.util

    if importlib.util.find_spec("confluent_kafka"):
        return "installed"
    from pathlib import Path

    pieces = unpack(carried_folder(), Path(scratch) / "kafka")
    os.environ["HPS_TANSU"] = pieces.tansu
    os.environ["HPS_LIBRDKAFKA"] = pieces.librdkafka
    sys.path.insert(0, pieces.site)
    return f"carried ({carried_folder()})"

TABLE = "sparse_embedding0"
FIRST_SEQ = 1000.0  # above every value of the table's initial rows (standard normal)


# ---- /proc CPU accounting (schedstat: nanoseconds on a CPU, and waiting for one) ----------------------

def _schedstat(path: str) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for a CPU) of one thread."""
    try:
        with open(path) as f:
            on, waiting = f.read().split()[:2]
    except (OSError, ValueError):
        return 0.0, 0.0
    return int(on) / 1e9, int(waiting) / 1e9


def context_switches(tid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of one thread of this process: a voluntary one is
    a block (a lock, the GIL), an involuntary one a preemption."""
    out = {}
    with open(f"/proc/self/task/{tid}/status") as f:
        for line in f:
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                name, value = line.split(":")
                out[name] = int(value)
    return out["voluntary_ctxt_switches"], out["nonvoluntary_ctxt_switches"]


def process_cpu(pid: int) -> float:
    """CPU seconds of all threads of a process that are alive now."""
    total = 0.0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for tid in tids:
        total += _schedstat(f"/proc/{pid}/task/{tid}/schedstat")[0]
    return total


def consumer_cpu() -> dict[str, float]:
    """CPU seconds of this process's consumer threads: "apply" (hps-kafka: parsing and applying)
    and "fetch" (librdkafka's rdk:*). The publisher runs in another process, so every librdkafka
    thread here is the consumer's."""
    out = {"apply": 0.0, "fetch": 0.0}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue
        kind = "apply" if name == "hps-kafka" else "fetch" if name.startswith("rdk:") else None
        if kind:
            out[kind] += _schedstat(f"/proc/self/task/{tid}/schedstat")[0]
    return out


# ---- the publisher process ---------------------------------------------------------------------------

def publisher_main(brokers: str, keys: np.ndarray, dim: int, rate: int, partitions: int, commands, probes) -> None:
    """Runs windows on command: ("run", model, seconds, report) publishes `rate` rows/s to `model`
    for `seconds`, with `report` sending (key, seq, published_at) for one key of every batch, then
    flushes and answers ("done", rows, probes sent); ("stop",) ends it."""
    pubs: dict[str, hps.UpdatePublisher] = {}
    rng = np.random.default_rng(2)
    per_tick = max(1, rate // 100)  # every 10 ms
    seq = FIRST_SEQ
    while True:
        command = commands.recv()
        if command[0] == "stop":
            break
        _, model, seconds, report = command
        pub = pubs.get(model) or pubs.setdefault(model, hps.UpdatePublisher(brokers, model, partitions=partitions))
        rows = sent = 0
        next_tick = time.perf_counter()
        deadline = next_tick + seconds
        while time.perf_counter() < deadline:
            seq += 1
            batch = np.unique(keys[rng.integers(0, keys.size, per_tick)])
            pub.publish(TABLE, batch, np.full((batch.size, dim), seq, np.float32))
            if report:
                probes.put((int(batch[0]), seq, time.perf_counter()))
                sent += 1
            rows += batch.size
            next_tick += 0.01
            time.sleep(max(0.0, next_tick - time.perf_counter()))
        pub.flush()
        commands.send(("done", rows, sent))
    for pub in pubs.values():
        pub.close()


# ---- the server side ---------------------------------------------------------------------------------

class Watcher(threading.Thread):
    """Polls probe keys every --watch-ms until a lookup returns their row (or a newer one). Every
    poll looks up the same number of keys (the pending probes, filled up with fixed keys), so the
    watcher costs every window the same: it shares the GIL with the lookup thread."""

    WIDTH = 32

    def __init__(self, lookup, probes, fixed: np.ndarray, period: float) -> None:
        super().__init__(daemon=True)
        self.lookup, self.probes, self.period = lookup, probes, period
        self.fixed = np.asarray(fixed[:self.WIDTH], np.int64)
        self.pending: dict[int, tuple[float, float]] = {}  # key -> (seq, published_at)
        self.received = 0
        self.latencies: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        self.tid = threading.get_native_id()
        while not self.stop.is_set():
            try:
                while True:
                    key, seq, t0 = self.probes.get_nowait()
                    self.received += 1
                    if self.pending.get(key, (0.0,))[0] < seq:  # a newer row of the key supersedes
                        self.pending[key] = (seq, t0)
            except queue.Empty:
                pass
            watched = list(self.pending.items())
            query = self.fixed.copy()
            if watched:
                probe_keys = np.array([k for k, _ in watched], np.int64)
                query = probe_keys if probe_keys.size >= query.size else np.concatenate(
                    [probe_keys, query[probe_keys.size:]])
            got = self.lookup(query)[:len(watched), 0]
            now = time.perf_counter()
            for (key, (seq, t0)), value in zip(watched, got):
                if value >= seq:
                    self.latencies.append(now - t0)
                    del self.pending[key]
            time.sleep(self.period)

    def seen_all(self, sent: int) -> bool:
        return self.received >= sent and not self.pending


def lookup_window(ps, batches, seconds: float, cpu: set | None, nice: int) -> dict:
    """One closed-loop lookup thread for `seconds`: keys done, wall and thread CPU seconds. Device
    batches (torch CUDA tensors) are looked up through the GPU cache, each call waited for."""
    result: dict = {}

    def body() -> None:
        if cpu:
            os.sched_setaffinity(0, cpu)  # this thread only
        if nice:
            try:  # this thread only (Linux priorities are per thread)
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
            except OSError:
                result["nice_refused"] = True
        shape = (batches[0].shape[0], ps.dim("m", 0))
        on_device = not isinstance(batches[0], np.ndarray)
        if on_device:
            import torch

            out = torch.empty(shape, dtype=torch.float32, device=batches[0].device)
            stream = torch.cuda.current_stream()
        else:
            out = np.empty(shape, np.float32)
        tid = threading.get_native_id()
        me = f"/proc/self/task/{tid}/schedstat"
        done, i = 0, 0
        cpu0, wait0 = _schedstat(me)
        switches0 = context_switches(tid)
        t0 = time.perf_counter()
        deadline = t0 + seconds
        while time.perf_counter() < deadline:
            ps.lookup("m", 0, batches[i % len(batches)], out=out)
            if on_device:
                stream.synchronize()
            done += out.shape[0]
            i += 1
        wall = time.perf_counter() - t0
        cpu1, wait1 = _schedstat(me)
        switches1 = context_switches(tid)
        result.update(keys=done, wall=wall, cpu=cpu1 - cpu0, runqueue_wait=wait1 - wait0, calls=i,
                      blocked=switches1[0] - switches0[0], preempted=switches1[1] - switches0[1])

    t = threading.Thread(target=body)
    t.start()
    return {"thread": t, "result": result}


def quartiles(values) -> dict:
    """Median, quartiles, range, and a distribution-free 95% interval of the median: the order
    statistics n/2 -+ 0.98 sqrt(n) (the binomial(n, 1/2) bounds; with fewer than 6 values, the range)."""
    v = np.sort(np.asarray(values, float))
    n = v.size
    lo = max(0, int(np.floor(n / 2 - 0.98 * np.sqrt(n))) - 1) if n >= 6 else 0
    hi = min(n - 1, int(np.ceil(n / 2 + 0.98 * np.sqrt(n)))) if n >= 6 else n - 1
    return {"median": float(np.median(v)), "min": float(v[0]), "q1": float(np.percentile(v, 25)),
            "q3": float(np.percentile(v, 75)), "max": float(v[-1]), "median_ci95": [float(v[lo]), float(v[hi])]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4096, help="keys per lookup call")
    ap.add_argument("--rate", type=int, default=10_000, help="updated rows per second")
    ap.add_argument("--seconds", type=float, default=2.0, help="length of each window")
    ap.add_argument("--rounds", type=int, default=8, help="B windows (and C windows with --control)")
    ap.add_argument("--control", action="store_true", help="add control windows (publishing, nothing applied)")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--lookup-threads", type=int, default=1, help="the server's lookup_threads")
    ap.add_argument("--watch-ms", type=float, default=5.0, help="period of the freshness watcher's polls")
    ap.add_argument("--lookup-nice", type=int, default=-10,
                    help="nice value of the lookup thread alone (negative needs privilege; refused: left at 0)")
    ap.add_argument("--no-pin", dest="pin", action="store_false", help="leave threads to the scheduler")
    ap.add_argument("--rocksdb", action="store_true", help="add the RocksDB persistent tier")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="cuda: lookups of device keys through a GPU cache over the hash map (torch)")
    ap.add_argument("--gpucacheper", type=float, default=1.0, help="GPU cache size, a share of the table (cuda)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON instead of text")
    ap.add_argument("--json-out", help="also write the result (every window too) as JSON to this file")
    args = ap.parse_args()

    allowed = sorted(os.sched_getaffinity(0))
    pinned = args.pin and len(allowed) >= 2
    lookup_cpu = {allowed[0]} if pinned else None
    if pinned:  # this thread, and all it starts (broker, publisher, the server's threads), off the lookups' CPU
        os.sched_setaffinity(0, set(allowed[1:]))

    tmp = tempfile.mkdtemp(prefix="hps_fresh_")
    rng = np.random.default_rng(0)
    keys = rng.choice(np.arange(0, 2**40, 2**40 // (4 * args.rows), dtype=np.int64), args.rows, replace=False)
    hps.write_sparse_model(os.path.join(tmp, "t0"), keys, rng.standard_normal((args.rows, args.dim), np.float32))
    batches = [keys[rng.integers(0, keys.size, args.batch)] for _ in range(64)]
    if args.device == "cuda":
        import torch

        batches = [torch.from_numpy(b).cuda() for b in batches]
    kafka_from = use_carried_kafka(tmp)
    broker = Broker(os.path.join(tmp, "tansu.log"))
    broker.start()
    config = {"supportlonglong": True, "volatile_db": {"type": "hash_map"},
              "update_source": {"type": "kafka_message_queue", "brokers": broker.brokers,
                                "metadata_refresh_interval_ms": 500, "poll_timeout_ms": 50},
              "models": [{"model": "m", "sparse_files": [os.path.join(tmp, "t0")],
                          "embedding_vecsize_per_table": [args.dim], "gpucache": args.device == "cuda",
                          "gpucacheper": args.gpucacheper}]}
    if args.rocksdb:
        config["persistent_db"] = {"type": "rocks_db", "path": os.path.join(tmp, "db")}
    ctx = mp.get_context("spawn")  # no fork of a process with threads
    commands, child_end = ctx.Pipe()
    probes = ctx.Queue()
    publisher = ctx.Process(target=publisher_main, daemon=True,
                            args=(broker.brokers, keys, args.dim, args.rate, args.partitions, child_end, probes))
    windows: list[dict] = []
    try:
        with hps.HPS(config, lookup_threads=args.lookup_threads) as ps:
            publisher.start()

            def applied() -> int:
                return ps.update_source_stats()[0]["rows"]

            # Topics exist and the consumer follows them before anything is measured.
            for model in ("m", "other"):
                commands.send(("run", model, 0.05, False))
                assert commands.recv()[0] == "done"
            wait_until(lambda: applied() > 0 and ps.update_source_stats()[0]["lag"] == 0, "the consumer runs")
            if args.device == "cuda":  # the watcher sees what GPU lookups see
                def watch_lookup(q: np.ndarray) -> np.ndarray:
                    return ps.lookup("m", 0, torch.from_numpy(q).cuda()).cpu().numpy()
            else:
                def watch_lookup(q: np.ndarray) -> np.ndarray:
                    return ps.lookup("m", 0, q)
            watcher = Watcher(watch_lookup, probes, keys[-Watcher.WIDTH:], args.watch_ms / 1e3)
            watcher.start()
            wait_until(lambda: hasattr(watcher, "tid"), "the watcher runs")
            lookup_window(ps, batches, 0.5, lookup_cpu, args.lookup_nice)["thread"].join()  # warm-up

            kinds = (["A", "B", "A", "C"] if args.control else ["A", "B"]) * args.rounds + ["A"]
            sent = 0
            for kind in kinds:
                rows0, cpu0 = applied(), consumer_cpu()
                watch0 = _schedstat(f"/proc/self/task/{watcher.tid}/schedstat")[0]
                broker0, pub0 = process_cpu(broker.process.pid), process_cpu(publisher.pid)
                win = lookup_window(ps, batches, args.seconds, lookup_cpu, args.lookup_nice)
                if kind != "A":
                    commands.send(("run", "m" if kind == "B" else "other", args.seconds, kind == "B"))
                win["thread"].join()
                published = 0
                if kind != "A":
                    _, published, probes_sent = commands.recv()
                    sent += probes_sent
                if kind == "B":  # the window's updates land before the next window starts
                    wait_until(lambda: watcher.seen_all(sent), "every probe is seen", timeout=30)
                    wait_until(lambda: ps.update_source_stats()[0]["lag"] == 0, "the consumer caught up")
                cpu1 = consumer_cpu()
                windows.append(dict(win["result"], kind=kind, published=published, applied=applied() - rows0,
                                    apply_cpu=cpu1["apply"] - cpu0["apply"], fetch_cpu=cpu1["fetch"] - cpu0["fetch"],
                                    watcher_cpu=_schedstat(f"/proc/self/task/{watcher.tid}/schedstat")[0] - watch0,
                                    broker_cpu=process_cpu(broker.process.pid) - broker0,
                                    publisher_cpu=process_cpu(publisher.pid) - pub0))
            watcher.stop.set()
            watcher.join()
            commands.send(("stop",))
            publisher.join(30)
            stats = ps.update_source_stats()[0]
    finally:
        if publisher.is_alive():
            publisher.kill()
        broker.stop()

    result = summarize(args, windows, watcher.latencies, stats, pinned, allowed, kafka_from)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=1)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(args, result)


def summarize(args, windows: list[dict], latencies: list[float], stats: dict, pinned: bool, allowed,
              kafka_from: str) -> dict:
    rate = [w["keys"] / w["wall"] for w in windows]
    cpk = [w["cpu"] / w["keys"] for w in windows]  # lookup-thread CPU seconds per key
    wall_ratio: dict[str, list[float]] = {"B": [], "C": []}
    cpu_ratio: dict[str, list[float]] = {"B": [], "C": []}
    extra_us_per_row = []
    for i, w in enumerate(windows):
        if w["kind"] == "A":
            continue
        # Against the A windows on either side.
        wall_ratio[w["kind"]].append(rate[i] / ((rate[i - 1] + rate[i + 1]) / 2))
        base_cpk = (cpk[i - 1] + cpk[i + 1]) / 2
        cpu_ratio[w["kind"]].append(base_cpk / cpk[i])
        if w["kind"] == "B" and w["applied"]:
            extra_us_per_row.append(1e6 * (cpk[i] - base_cpk) * w["keys"] / w["applied"])
    by_kind = {k: [w for w in windows if w["kind"] == k] for k in ("A", "B", "C")}
    b = by_kind["B"]
    applied = sum(w["applied"] for w in b)
    lat = np.array(latencies) * 1e3

    def per_row(field: str) -> float:
        return 1e6 * sum(w[field] for w in b) / max(1, applied)

    def lookups(ws: list[dict]) -> dict:
        return {"mkeys_per_s": quartiles([w["keys"] / w["wall"] / 1e6 for w in ws]),
                "cpu_ns_per_key": quartiles([1e9 * w["cpu"] / w["keys"] for w in ws]),
                "on_cpu_share": float(np.median([w["cpu"] / w["wall"] for w in ws])),
                "runqueue_wait_share": float(np.median([w["runqueue_wait"] / w["wall"] for w in ws])),
                "blocks_per_s": float(np.median([w["blocked"] / w["wall"] for w in ws])),
                "preemptions_per_s": float(np.median([w["preempted"] / w["wall"] for w in ws])),
                "watcher_cpu_share": float(np.median([w["watcher_cpu"] / w["wall"] for w in ws]))}

    out = {
        "rows": args.rows, "dim": args.dim, "batch": args.batch, "rate_rows_per_s": args.rate,
        "seconds": args.seconds, "rounds": args.rounds, "control": args.control,
        "lookup_threads": args.lookup_threads, "pinned": pinned, "cpus": len(allowed),
        "lookup_nice": args.lookup_nice, "watch_ms": args.watch_ms, "device": args.device,
        "kafka_from": kafka_from,
        "tiers": ("gpu cache (%g of the rows) + " % args.gpucacheper if args.device == "cuda" else "") + "hash_map" +
                 (" + rocksdb" if args.rocksdb else ""),
        "published_rows": sum(w["published"] for w in b), "applied_rows": applied,
        "achieved_rate": sum(w["published"] for w in b) / max(1e-9, sum(w["wall"] for w in b)),
        "probes": int(lat.size),
        "fresh_ms": {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
                     "max": float(lat.max())} if lat.size else None,
        "lookups": {k: lookups(ws) for k, ws in by_kind.items() if ws},
        # Key rate of B (C) over the mean of the neighbouring A windows: by the wall clock, and per
        # second of the lookup thread's CPU time (what lookups that keep their core would reach).
        "ratio": {k: {"wall": quartiles(wall_ratio[k]), "per_lookup_cpu": quartiles(cpu_ratio[k])}
                  for k in ("B", "C") if wall_ratio[k]},
        "us_per_update_row": {
            "consumer_apply_cpu": per_row("apply_cpu"),
            "consumer_fetch_cpu": per_row("fetch_cpu"),
            "broker_cpu": per_row("broker_cpu"),
            "publisher_cpu": per_row("publisher_cpu"),
            "lookup_extra_cpu": quartiles(extra_us_per_row) if extra_us_per_row else None,
        },
        "source": stats,
        "windows": windows,
    }
    return out


def report(args, r: dict) -> None:
    seq = "A B A C" if args.control else "A B"
    print(f"# update_freshness: {args.rows:,} rows x {args.dim}, tiers {r['tiers']}, lookups of {args.batch:,} keys "
          f"(lookup_threads {args.lookup_threads}), {args.rate:,} rows/s published; windows ({seq}) x {args.rounds} + A "
          f"of {args.seconds:g} s; {'lookup thread pinned to its own CPU' if r['pinned'] else 'not pinned'}; "
          f"hps {hps.__version__}; {platform.machine()}, {r['cpus']} CPUs")
    if any(w.get("nice_refused") for w in r["windows"]):
        print(f"(the lookup thread's nice {args.lookup_nice} was refused: it ran at nice 0)")
    print(f"published {r['published_rows']:,} rows in B windows ({r['achieved_rate']:,.0f}/s), applied "
          f"{r['applied_rows']:,}; {r['probes']:,} probes seen (every one); consumer errors: {r['source']['errors']}")
    f = r["fresh_ms"]
    if f:
        print(f"freshness (publish returned -> lookup sees the row): p50 {f['p50']:.1f} ms, p99 {f['p99']:.1f} ms, "
              f"max {f['max']:.1f} ms")
    for kind, label in (("A", "alone"), ("B", "updates"), ("C", "control")):
        if kind in r["lookups"]:
            q = r["lookups"][kind]
            print(f"lookups {kind} ({label}): {q['mkeys_per_s']['median']:.2f} Mkeys/s (range "
                  f"{q['mkeys_per_s']['min']:.2f}-{q['mkeys_per_s']['max']:.2f}); lookup thread "
                  f"{q['cpu_ns_per_key']['median']:.1f} ns CPU per key, on a CPU {100 * q['on_cpu_share']:.0f}% "
                  f"of the window, waiting for one {100 * q['runqueue_wait_share']:.0f}%; {q['blocks_per_s']:.0f} blocks "
                  f"and {q['preemptions_per_s']:.0f} preemptions a second (medians)")
    for kind, label in (("B", "updates"), ("C", "control")):
        if kind in r["ratio"]:
            for how, what in (("wall", "keys/s"), ("per_lookup_cpu", "keys per lookup-CPU second")):
                q = r["ratio"][kind][how]
                print(f"{kind}/A ({label}), {what}: median {q['median']:.3f} (95% interval {q['median_ci95'][0]:.3f}-"
                      f"{q['median_ci95'][1]:.3f}), quartiles {q['q1']:.3f}-{q['q3']:.3f}, range {q['min']:.3f}-"
                      f"{q['max']:.3f} ({args.rounds} windows)")
    u = r["us_per_update_row"]
    extra = u["lookup_extra_cpu"]
    print(f"CPU per update row (B windows): consumer {u['consumer_apply_cpu']:.2f} us applying (thread hps-kafka) + "
          f"{u['consumer_fetch_cpu']:.2f} us fetching (librdkafka); lookup thread {extra['median']:+.2f} us "
          f"(quartiles {extra['q1']:+.2f} to {extra['q3']:+.2f}); broker {u['broker_cpu']:.2f} us, publisher "
          f"{u['publisher_cpu']:.2f} us")
    consumer = (u["consumer_apply_cpu"] + u["consumer_fetch_cpu"]) * args.rate / 1e6
    print(f"at {args.rate:,} rows/s: the consumer takes {100 * consumer:.1f}% of one core; lookups lost "
          f"{100 * (1 - r['ratio']['B']['per_lookup_cpu']['median']):.1f}% per lookup-CPU second and "
          f"{100 * (1 - r['ratio']['B']['wall']['median']):.1f}% by the wall clock (medians; target under 10%)")


if __name__ == "__main__":
    main()
