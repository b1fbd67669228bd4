#!/usr/bin/env python3
"""One process driving several GPUs (issue 16): all-hit lookup throughput per GPU and in total, next to one GPU.

For each row size D and batch size B, one table of --rows rows served by one server whose
deployed_device_list is --devices, with two models:
  static   the static cache (the whole table on every device);
  dyn-hit  a dynamic cache at gpucacheper 1.0, warmed on every device with the hottest quarter of
           the rows, looked up with keys drawn from that quarter (all hits once warm).
One thread per device, each on a torch stream of its own on its device, runs --calls lookups of
distinct batches resident on that device; the threads start together (a barrier) and the time is
the wall time until the last one's stream is done. `1 GPU` is the same with only the first device's
thread, the baseline: the target is `N GPUs` within 10% of N x `1 GPU` at B >= 262,144 (all hits).
Before timing, every device's first batch is checked bit for bit against the table.

Usage (a machine with several GPUs; untested before its first such machine):
  python benchmarks/multi_gpu_lookup.py --devices 0 1 [2 ...] [--rows 4000000] [--dims 16 128]
      [--sizes 262144 1048576] [--calls 50] [--batches 8] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time

import numpy as np
import torch

import hps
from gpu_lookup import warm_hot_set  # benchmarks/ is the script's folder, first on sys.path


def timed_threads(ps: hps.HPS, model: str, batches: dict[int, list[torch.Tensor]], calls: int) -> float:
    """Seconds from the common start until every device's thread has its last rows ready."""
    barrier = threading.Barrier(len(batches) + 1)
    ends: dict[int, float] = {}
    errors: list[BaseException] = []

    def drive(device: int, mine: list[torch.Tensor]) -> None:
        try:
            with torch.cuda.device(device):
                stream = torch.cuda.Stream(device)
                with torch.cuda.stream(stream):
                    ps.lookup(model, 0, mine[0])  # first call outside the timing
                    stream.synchronize()
                    barrier.wait()
                    for i in range(calls):
                        ps.lookup(model, 0, mine[i % len(mine)])
                    stream.synchronize()
                    ends[device] = time.perf_counter()
        except BaseException as error:  # noqa: BLE001 (re-raised by the caller)
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=drive, args=(d, b)) for d, b in batches.items()]
    for thread in threads:
        thread.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return max(ends.values()) - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, nargs="+", required=True, help="CUDA devices, two or more")
    p.add_argument("--rows", type=int, default=4_000_000, help="rows per table")
    p.add_argument("--dims", type=int, nargs="+", default=[16, 128])
    p.add_argument("--sizes", type=int, nargs="+", default=[262144, 1048576])
    p.add_argument("--calls", type=int, default=50, help="timed lookups per device")
    p.add_argument("--batches", type=int, default=8, help="distinct batches per device")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write every cell as JSON here")
    args = p.parse_args()
    if len(set(args.devices)) != len(args.devices):
        p.error(f"--devices lists a device twice: {args.devices}")
    if torch.cuda.device_count() <= max(args.devices):
        p.error(f"--devices {args.devices}: this machine has {torch.cuda.device_count()} CUDA devices")

    rng = np.random.default_rng(args.seed)
    names = ", ".join(sorted({torch.cuda.get_device_name(d) for d in args.devices}))
    print(f"# multi_gpu_lookup: devices {args.devices} ({names}), hps {hps.__version__}, torch {torch.__version__}; "
          f"{args.rows:,} rows; {args.calls} timed calls per device over {args.batches} distinct batches")
    header = (f"{'D':>4} {'B':>9} {'case':>8} {'GPUs':>5} | {'Gkeys/s':>8} {'per GPU':>8} {'of N x 1 GPU':>13}")
    results = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("HPS_BENCH_DIR")) as tmp:
        for dim in args.dims:
            keys = np.arange(args.rows, dtype=np.int64)  # row i holds key i
            values = rng.standard_normal((args.rows, dim), dtype=np.float32)
            folder = os.path.join(tmp, f"d{dim}")
            hps.write_sparse_model(folder, keys, values)
            model = lambda name, **kw: {"model": name, "sparse_files": [folder],  # noqa: E731
                                        "embedding_vecsize_per_table": [dim],
                                        "deployed_device_list": list(args.devices), "hit_rate_threshold": 0.0, **kw}
            config = {"supportlonglong": True, "volatile_db": {"type": "hash_map"},
                      "models": [model("static", embedding_cache_type="static"),
                                 model("dyn_all", gpucacheper=1.0, init_ec=False, hit_rate_threshold=1.0)]}
            ps = hps.HPS(config, progress=False)
            hot = rng.permutation(args.rows)[: args.rows // 4]
            rates = warm_hot_set(ps, "dyn_all", hot, [torch.device("cuda", d) for d in args.devices])
            print(f"# D={dim}: dyn-hit warmed on every device with {hot.size:,} keys in {len(rates)} passes, "
                  f"last pass hit rate {rates[-1]:.5f}")
            dense = {d: torch.from_numpy(values).to(f"cuda:{d}") for d in args.devices}
            print(header)
            print("-" * len(header))
            for size in args.sizes:
                for case, model_name, pool in (("static", "static", None), ("dyn-hit", "dyn_all", hot)):
                    batches = {}
                    for d in args.devices:
                        draws = [rng.integers(0, args.rows, size) if pool is None else pool[rng.integers(0, pool.size, size)]
                                 for _ in range(args.batches)]
                        batches[d] = [torch.from_numpy(q).to(f"cuda:{d}") for q in draws]
                        with torch.cuda.device(d):
                            rows = ps.lookup(model_name, 0, batches[d][0])
                            torch.cuda.synchronize(d)
                            assert torch.equal(rows, dense[d][batches[d][0]]), f"{case}: wrong rows on device {d}"
                    one = timed_threads(ps, model_name, {args.devices[0]: batches[args.devices[0]]}, args.calls)
                    many = timed_threads(ps, model_name, batches, args.calls)
                    one_rate = size * args.calls / one
                    many_rate = size * args.calls * len(args.devices) / many
                    for gpus, rate in ((1, one_rate), (len(args.devices), many_rate)):
                        share = rate / (gpus * one_rate)
                        results.append({"dim": dim, "batch": size, "case": case, "gpus": gpus, "keys_per_s": rate,
                                        "of_n_times_one": share})
                        print(f"{dim:>4} {size:>9,} {case:>8} {gpus:>5} | {rate / 1e9:>8.3f} {rate / gpus / 1e9:>8.3f} "
                              f"{100 * share:>12.1f}%")
            ps.close()
            del dense
            torch.cuda.empty_cache()
    print("target (issue 16): the N-GPU rows at >= 90% of N x one GPU at B >= 262,144")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"devices": args.devices, "rows": args.rows, "cells": results}, f, indent=1)


if __name__ == "__main__":
    main()
