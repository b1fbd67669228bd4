#!/usr/bin/env python3
"""Persistent-tier (RocksDB) lookups next to the usual alternative and the tier above, in one run.

The embedded default serves rows the CPU-memory tier does not hold from RocksDB. For each D and key
distribution: a table of --rows rows stored in RocksDB alone (volatile_db disabled, so every key is
read from the store), looked up in distinct batches of --batch keys, one lookup thread. Printed side
by side, Mkeys/s and p50 per batch:
  - hps: hps.HPS.lookup over the RocksDB tier (MultiGet per chunk, each row copied into the output);
  - rocksdict (the baseline): the same rows in a database of rocksdict, the RocksDB binding a Python
    user reaches for (pip install rocksdict; bundles its own RocksDB), with the same key bytes, bloom
    filter, block index and block cache size, read by its multi-get (Rdict.get(list)) and joined
    into an array with np.frombuffer;
  - hash map (the roof): the same table in hps's CPU-memory tier, where a row costs one probe and one
    copy. No store that reads blocks and decodes them can beat it.
Block cache: --block-cache MiB for both stores (default: large enough for the whole table, so rows
come from memory; 8 is HugeCTR's OptimizeForPointLookup(8), where most blocks come from the OS page
cache instead).

Usage: python benchmarks/rocksdb_tier.py [--rows 1000000] [--batch 4096] [--dims 16 128] [--block-cache MiB]
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
from cpu_lookup import time_batches, zipf_positions  # benchmarks/ is the script's folder, first on sys.path


def encoded(keys: np.ndarray) -> list[bytes]:
    """hps's RocksDB key bytes: big-endian with the sign bit flipped (numeric order)."""
    flipped = (keys.astype(np.int64).view(np.uint64) ^ np.uint64(1 << 63)).astype(">u8")
    raw = flipped.tobytes()
    return [raw[i:i + 8] for i in range(0, len(raw), 8)]


def rocksdict_store(path: str, keys: np.ndarray, rows: np.ndarray, cache_bytes: int):
    """A rocksdict database of the rows, set up like hps's store (bloom 10 bits/key, binary+hash index)."""
    from rocksdict import BlockBasedOptions, Cache, DataBlockIndexType, Options, Rdict, WriteBatch

    table = BlockBasedOptions()
    table.set_block_cache(Cache(cache_bytes))
    table.set_bloom_filter(10, False)
    table.set_data_block_index_type(DataBlockIndexType.binary_and_hash())
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_block_based_table_factory(table)
    options.increase_parallelism(os.cpu_count() or 1)
    db = Rdict(path, options)
    names = encoded(keys)
    values = rows.tobytes()
    width = rows.shape[1] * 4
    for first in range(0, len(names), 65536):
        batch = WriteBatch(raw_mode=True)
        for i in range(first, min(first + 65536, len(names))):
            batch.put(names[i], values[i * width:(i + 1) * width])
        db.write(batch)
    db.flush()
    return db


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--batch", type=int, default=4096, help="keys per lookup (a GPU cache's misses per call are of this order)")
    p.add_argument("--dims", type=int, nargs="+", default=[16, 128])
    p.add_argument("--batches", type=int, default=40, help="distinct batches per cell (each timed twice)")
    p.add_argument("--zipf", type=float, default=1.05)
    p.add_argument("--block-cache", type=int, default=0,
                   help="block cache MiB of both stores (default: 1.5x the table's bytes, at least 64)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    try:
        import rocksdict  # noqa: F401
        have_rocksdict = True
    except ImportError:
        have_rocksdict = False
    if not hps.rocksdb_available():
        raise SystemExit("rocksdb_tier: this build of hps has no RocksDB tier")

    rng = np.random.default_rng(args.seed)
    print(f"# rocksdb_tier: {args.rows:,} rows, batch {args.batch:,}, one lookup thread, {args.batches} distinct "
          f"batches x 2; hps {hps.__version__}; {platform.machine()}, {os.cpu_count()} cores"
          + ("" if have_rocksdict else "; rocksdict not installed (pip install rocksdict): no baseline"))
    print(f"{'D':>4} {'keys':>8} {'cache MiB':>9} | {'hps Mkeys/s':>11} {'p50 us':>8} | {'rocksdict':>9} {'p50 us':>8} | "
          f"{'hash map':>8} {'p50 us':>8} | {'hps/rocksdict':>13} {'hps/hash map':>12}")
    for dim in args.dims:
        keys = rng.choice(np.arange(-(1 << 40), 1 << 40, (1 << 41) // (4 * args.rows), dtype=np.int64),
                          size=args.rows, replace=False)
        rows = rng.standard_normal((args.rows, dim), dtype=np.float32)
        cache_mib = args.block_cache or max(64, int(1.5 * rows.nbytes / 2**20))
        with tempfile.TemporaryDirectory() as tmp:
            folder = os.path.join(tmp, "t")
            hps.write_sparse_model(folder, keys, rows)
            model = {"model": "m", "sparse_files": [folder], "embedding_vecsize_per_table": [dim], "gpucache": False}
            store = hps.HPS({"volatile_db": {"type": "disabled"},
                             "persistent_db": {"type": "rocks_db", "path": os.path.join(tmp, "db"),
                                               "block_cache_size": cache_mib << 20},
                             "models": [model]}, progress=False, lookup_threads=1)
            memory = hps.HPS({"volatile_db": {"type": "hash_map"}, "models": [model]}, progress=False,
                             lookup_threads=1)
            baseline = rocksdict_store(os.path.join(tmp, "rd"), keys, rows, cache_mib << 20) if have_rocksdict else None
            time.sleep(2)  # both stores' background flushes and compactions settle
            for dist in ("uniform", "zipf"):
                if dist == "uniform":
                    positions = [rng.integers(0, args.rows, args.batch) for _ in range(args.batches)]
                else:
                    positions = [zipf_positions(rng, args.rows, args.batch, args.zipf) for _ in range(args.batches)]
                batches = [keys[pos] for pos in positions]
                cells = {"hps": lambda b: store.lookup("m", 0, b), "hash map": lambda b: memory.lookup("m", 0, b)}
                if baseline is not None:
                    # The key bytes are made before timing: the baseline is timed reading only.
                    names = {id(b): encoded(b) for b in batches}

                    def rocksdict_lookup(b):
                        values = baseline.get(names[id(b)])
                        return np.frombuffer(b"".join(values), np.float32).reshape(len(values), dim)

                    cells["rocksdict"] = rocksdict_lookup
                # Every answer checked against the rows before timing.
                for pos, b in zip(positions[:4], batches[:4]):
                    for fn in cells.values():
                        np.testing.assert_array_equal(fn(b), rows[pos])
                results = {}
                for name, fn in cells.items():
                    times = time_batches(fn, batches, 2)
                    results[name] = (args.batch / statistics.median(times) / 1e6, 1e6 * statistics.median(times))
                h, r, m = results["hps"], results.get("rocksdict"), results["hash map"]
                print(f"{dim:>4} {dist:>8} {cache_mib:>9} | {h[0]:>11.2f} {h[1]:>8.0f} | "
                      + (f"{r[0]:>9.2f} {r[1]:>8.0f}" if r else f"{'-':>9} {'-':>8}")
                      + f" | {m[0]:>8.2f} {m[1]:>8.0f} | " + (f"{h[0] / r[0]:>13.2f}" if r else f"{'-':>13}")
                      + f" {h[0] / m[0]:>12.2f}")
            store.close()
            memory.close()
            if baseline is not None:
                baseline.close()
    print("hps = RocksDB tier through hps.HPS.lookup; rocksdict = the same rows in rocksdict's RocksDB, multi-get + "
          "np.frombuffer (key bytes made before timing); hash map = hps's CPU-memory tier (the roof)")


if __name__ == "__main__":
    main()
