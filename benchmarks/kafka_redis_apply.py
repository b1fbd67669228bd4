#!/usr/bin/env python3
"""How fast one server applies streamed updates into a Redis Cluster volatile_db, for two hps builds
in one run (the cost of what an apply does besides writing the rows: since 2026-12-05 a server
reads and raises the offsets it records beside the table, docs/kafka.md).

A tansu broker and a 3-master Redis Cluster on 127.0.0.1 (the test suite's helpers, from
tests/python; scripts/setup.sh --test installs them), one table of --rows rows, no persistent_db.
For each build and round, in turn: a fresh server (a new table name, so no record carries over)
receives --messages messages of --keys random keys each, published before it starts, and the time
from its start until the last row is applied gives rows and messages a second. The server's load of
the table (before the clock starts) is not timed; its consumer starts at the topic's beginning.
The builds alternate round by round, so a drift of the machine falls on both.

Usage: python benchmarks/kafka_redis_apply.py [--builds "" /path/to/other/site] [--rounds 3]
       ("" is the hps importable here; another entry is put first on PYTHONPATH, e.g. a folder made by
       `pip install --target`, as scripts/gpu_call_ab.sh does.)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests" / "python"


def one_run(args: argparse.Namespace) -> None:
    """Child process: one server against the given broker and cluster; prints a JSON result."""

    import hps

    config = {"supportlonglong": True,
              "volatile_db": {"type": "redis_cluster", "address": args.redis},
              "update_source": {"type": "kafka_message_queue", "brokers": args.brokers,
                                "metadata_refresh_interval_ms": 200, "poll_timeout_ms": 50},
              "models": [{"model": args.model, "sparse_files": [args.table], "embedding_table_names": ["emb"],
                          "embedding_vecsize_per_table": [args.dim]}]}
    total = args.messages * args.keys
    start = time.perf_counter()
    with hps.HPS(config, progress=False) as ps:
        loaded = time.perf_counter()
        while ps.update_source_stats()[0]["rows"] < total:
            if time.perf_counter() - loaded > 60:
                raise SystemExit(f"not applied after 60 s: {ps.update_source_stats()[0]}")
            time.sleep(0.002)
        done = time.perf_counter()
        (stats,) = ps.update_source_stats()
    print(json.dumps({"load_s": loaded - start, "apply_s": done - loaded, "rows": total,
                      "messages": args.messages, "errors": stats["errors"], "hps": hps.__file__}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--builds", nargs="+", default=[""], help="PYTHONPATH entries, '' for this Python's hps")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--keys", type=int, default=64, help="keys per message")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--redis", help=argparse.SUPPRESS)
    p.add_argument("--brokers", help=argparse.SUPPRESS)
    p.add_argument("--table", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        one_run(args)
        return

    sys.path.insert(0, str(TESTS))
    import numpy as np

    import hps
    from kafka_broker import Broker
    from redis_cluster import LocalRedis

    # Every build loads the librdkafka of the confluent-kafka wheel the tests use: a build installed
    # elsewhere would not find it beside itself and take the system's (core/src/updates/librdkafka.cpp).
    import confluent_kafka
    wheel_libs = Path(confluent_kafka.__file__).resolve().parent.parent / "confluent_kafka.libs"
    librdkafka = str(next(iter(sorted(wheel_libs.glob("librdkafka*.so*"))), ""))
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp, LocalRedis(masters=3, replicas=0, node_timeout_ms=5000) as cluster:
        table = os.path.join(tmp, "t")
        keys = np.arange(args.rows, dtype=np.int64)
        hps.write_sparse_model(table, keys, rng.standard_normal((args.rows, args.dim), dtype=np.float32))
        broker = Broker(Path(tmp) / "tansu.log")
        broker.start()
        try:
            times: dict[str, list[float]] = {b: [] for b in args.builds}
            for r in range(args.rounds):
                for b, build in enumerate(args.builds):
                    model = f"m{r}_{b}"  # its own topic and Redis table: nothing recorded before it
                    with hps.UpdatePublisher(broker.brokers, model, partitions=args.partitions) as pub:
                        for _ in range(args.messages):
                            pub.publish("emb", rng.choice(keys, args.keys, replace=False),
                                        rng.standard_normal((args.keys, args.dim), dtype=np.float32))
                        pub.flush()
                    env = dict(os.environ, PYTHONPATH=os.pathsep.join(x for x in (build, os.environ.get("PYTHONPATH"))
                                                                     if x))
                    env.setdefault("HPS_LIBRDKAFKA", librdkafka)
                    out = subprocess.run([sys.executable, __file__, "--child", "--redis", cluster.address,
                                          "--brokers", broker.brokers, "--table", table, "--model", model,
                                          "--dim", str(args.dim), "--messages", str(args.messages),
                                          "--keys", str(args.keys)],
                                         env=env, capture_output=True, text=True, timeout=600)
                    if out.returncode != 0:
                        raise SystemExit(f"build {build or '(this)'}: the server failed:\n{out.stderr[-4000:]}")
                    result = json.loads(out.stdout.strip().splitlines()[-1])
                    times[build].append(result["apply_s"])
                    print(f"round {r} build {build or '(this)'}: {result['apply_s'] * 1e3:.0f} ms for "
                          f"{result['rows']:,} rows ({result['hps']}), errors {result['errors']}", flush=True)
        finally:
            broker.stop()
    print(f"\n# kafka_redis_apply: {args.messages:,} messages x {args.keys} keys, D={args.dim}, "
          f"{args.partitions} partitions, 3-master Redis Cluster, {args.rounds} rounds (median, min-max)")
    for build, t in times.items():
        rows = args.messages * args.keys
        print(f"{build or '(this)':>40}: {statistics.median(t) * 1e3:8.0f} ms  ({min(t) * 1e3:.0f}-{max(t) * 1e3:.0f})  "
              f"{rows / statistics.median(t):12,.0f} rows/s  {args.messages / statistics.median(t):9,.0f} messages/s")


if __name__ == "__main__":
    main()
