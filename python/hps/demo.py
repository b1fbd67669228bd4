"""`hps demo`: a synthetic DLRM-style model served end to end from the CPU tiers.

What it does, step by step:

1. Makes 26 embedding tables shaped like the categorical features of a click-through-rate
   dataset: a few tables with hundreds of thousands of rows, many with a few hundred or fewer.
   Popularity inside each table follows a Zipf-like law (exponent 1.05-1.2): a few keys are
   looked up all the time, most keys rarely.
2. Writes them as HugeCTR table folders (`key`, `emb_vector`) next to a HugeCTR-style config:
   a `volatile_db` hash map that holds only part of each large table (`overflow_margin`) in front
   of a `persistent_db` RocksDB that holds everything. `cache_missed_embeddings` copies rows
   found in RocksDB up into the hash map, so the hot keys end up in memory.
3. Loads the config with `hps.HPS` and serves batches of 1,024 samples x 26 features (one
   lookup per table per batch). About 1% of the keys are values never seen in training: they get
   the table's default row.
4. Prints, per table, where the keys were answered, and the overall throughput and latency.

Everything derives from `seed`, so two runs with the same arguments look up the same keys.
Run it with ``hps demo`` or ``python -m hps.demo``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from typing import Any, Optional, TextIO

import numpy as np

from ._command import int_at_least

__all__ = ["run_demo", "zipf_ranks", "DemoTable", "add_arguments", "main"]

NUM_TABLES = 26
SAMPLES_PER_BATCH = 1024
UNSEEN_FRACTION = 0.01  # keys never seen in training: answered with the default row
KEY_STRIDE = 1 << 40  # table t owns keys [t * KEY_STRIDE, (t + 1) * KEY_STRIDE): no two tables share a key
MIN_TABLE_ROWS = 16
PARTITIONS = 4  # hash map partitions per table; fixed, so that the demo behaves the same on every machine


def zipf_ranks(rng: np.random.Generator, n: int, exponent: float, size: int) -> np.ndarray:
    """`size` ranks in [0, n) with P(rank r) roughly proportional to 1 / (r + 1) ** exponent.

    Inverts the CDF of the continuous power law on [0.5, n + 0.5), which needs no table of n
    probabilities, so it works for tables of any size. exponent 0 is uniform.
    """
    u = rng.random(size)
    low, high = 0.5, n + 0.5
    if abs(exponent - 1.0) < 1e-9:
        x = low * (high / low) ** u
    else:
        a = 1.0 - exponent
        x = (low ** a + u * (high ** a - low ** a)) ** (1.0 / a)
    return np.clip(np.floor(x + 0.5).astype(np.int64) - 1, 0, n - 1)


@dataclass
class DemoTable:
    """One synthetic table."""

    name: str
    rows: int
    zipf: float  # popularity exponent
    first_key: int  # keys are first_key + [0, rows)
    by_rank: np.ndarray  # by_rank[r]: row index of the r-th most popular key

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Keys of `size` lookups: Zipf-popular stored keys, plus a few keys the table lacks."""
        rows = self.by_rank[zipf_ranks(rng, self.rows, self.zipf, size)]
        unseen = rng.random(size) < UNSEEN_FRACTION
        rows[unseen] = self.rows + rng.integers(0, self.rows, int(unseen.sum()))  # beyond the last row
        return self.first_key + rows


def make_tables(rows_total: int, rng: np.random.Generator) -> list:
    """26 tables whose sizes span six orders of magnitude and add up to about rows_total."""
    weights = 10.0 ** np.linspace(0.0, 6.0, NUM_TABLES)  # each table ~1.7x the previous one
    rng.shuffle(weights)  # large and small tables interleave, as features do
    sizes = np.maximum(MIN_TABLE_ROWS, np.round(weights / weights.sum() * rows_total)).astype(np.int64)
    tables = []
    for t, rows in enumerate(sizes):
        tables.append(DemoTable(name=f"cat_{t:02d}", rows=int(rows), zipf=float(rng.uniform(1.05, 1.2)),
                                first_key=t * KEY_STRIDE, by_rank=rng.permutation(int(rows))))
    return tables


def write_tables(folder: str, tables: list, dim: int, rng: np.random.Generator, progress: Optional[bool]) -> None:
    """One HugeCTR table folder per table: keys in row order, small random rows."""
    import hps
    from tqdm import tqdm

    total = sum(table.rows for table in tables)
    with tqdm(total=total, desc="writing tables", unit="rows", unit_scale=True, leave=False,
              disable=not _show_progress(progress)) as bar:
        for table in tables:
            keys = table.first_key + np.arange(table.rows, dtype=np.int64)
            rows = rng.standard_normal((table.rows, dim), dtype=np.float32) * np.float32(0.05)
            hps.write_sparse_model(os.path.join(folder, "tables", table.name), keys, rows,
                                   overwrite=True)  # the demo regenerates its own folder
            bar.update(table.rows)


def volatile_rows_per_table(rows_total: int) -> int:
    """How many rows the hash map keeps per table: a few percent of the model."""
    return max(64, rows_total // 30) // PARTITIONS * PARTITIONS


def make_config(tables: list, dim: int, volatile_rows: int, with_rocksdb: bool) -> dict:
    """A HugeCTR-style config; paths are relative to the config file's folder."""
    volatile_db: dict[str, Any] = {
        "type": "hash_map",
        "num_partitions": PARTITIONS,
        "cache_missed_embeddings": True,
    }
    config: dict[str, Any] = {"supportlonglong": True, "volatile_db": volatile_db}
    if with_rocksdb:
        # At most overflow_margin rows per partition: large tables keep only part of their rows
        # in memory; least-used rows make room for rows promoted from RocksDB.
        volatile_db["overflow_margin"] = volatile_rows // PARTITIONS
        volatile_db["overflow_policy"] = "evict_least_used"
        config["persistent_db"] = {"type": "rocks_db", "path": "rocksdb"}
    config["models"] = [{
        "model": "demo_dlrm",
        "sparse_files": [f"tables/{table.name}" for table in tables],
        "embedding_table_names": [table.name for table in tables],
        "embedding_vecsize_per_table": [dim] * len(tables),
        "default_value_for_each_table": [0.0] * len(tables),
        "gpucache": False,  # the embedded default: CPU tiers only, no GPU needed
    }]
    return config


def serve(ps: Any, tables: list, batches: int, rng: np.random.Generator, progress: Optional[bool]) -> np.ndarray:
    """Serves `batches` batches (one lookup per table each); returns each batch's seconds."""
    from tqdm import tqdm

    seconds = np.empty(batches)
    for b in tqdm(range(batches), desc="serving", unit="batch", leave=False, disable=not _show_progress(progress)):
        keys = [table.sample(rng, SAMPLES_PER_BATCH) for table in tables]  # drawn outside the timed part
        start = time.perf_counter()
        for table, table_keys in zip(tables, keys):
            ps.lookup("demo_dlrm", table.name, table_keys)
        seconds[b] = time.perf_counter() - start
    return seconds


def _show_progress(progress: Optional[bool]) -> bool:
    if progress is None:
        return sys.stderr.isatty() and os.environ.get("HPS_PROGRESS", "1") != "0"
    return progress


def run_demo(dir: Optional[str] = None, rows_total: int = 3_000_000, dim: int = 16, batches: int = 200,
             keep: bool = False, seed: int = 0, progress: Optional[bool] = None,
             out: Optional[TextIO] = None) -> dict:
    """Runs the demo, prints its report to `out` (default stdout) and returns the numbers.

    `dir`: where the tables, the config and RocksDB go (default: a new temporary folder). What the
    demo wrote there is removed at the end unless `keep`.
    """
    import hps

    out = out or sys.stdout
    if rows_total < NUM_TABLES * MIN_TABLE_ROWS:
        raise ValueError(f"--rows-total must be at least {NUM_TABLES * MIN_TABLE_ROWS} ({NUM_TABLES} tables of "
                         f"at least {MIN_TABLE_ROWS} rows), got {rows_total}")
    if dim <= 0 or batches <= 0:
        raise ValueError(f"--dim and --batches must be positive, got {dim} and {batches}")
    created = dir is None or not os.path.exists(dir)
    folder = tempfile.mkdtemp(prefix="hps-demo-") if dir is None else os.path.abspath(dir)
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    with_rocksdb = hps.rocksdb_available()
    try:
        # 1-2. tables and config
        tables = make_tables(rows_total, rng)
        rows = sum(table.rows for table in tables)
        print(f"hps demo: {len(tables)} tables, {rows:,} rows of {dim} floats ({rows * dim * 4 / 2**20:,.0f} MiB), "
              f"in {folder}", file=out)
        start = time.perf_counter()
        write_tables(folder, tables, dim, rng, progress)
        print(f"  wrote the table files in {time.perf_counter() - start:.1f} s", file=out)
        volatile_rows = volatile_rows_per_table(rows_total)
        config = make_config(tables, dim, volatile_rows, with_rocksdb)
        config_path = os.path.join(folder, "demo.json")
        with open(config_path, "w") as f:
            json.dump(config, f, indent=2)
        if with_rocksdb:
            print(f"  config {config_path}: volatile_db hash map (at most {volatile_rows:,} rows per table) "
                  "in front of persistent_db RocksDB (every row)", file=out)
        else:
            print(f"  config {config_path}: volatile_db hash map only (this build has no RocksDB)", file=out)

        # 3. load and serve
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", hps.ConfigWarning)
            ps = hps.HPS(config_path, progress=progress)
        with ps:
            print(f"  loaded the tables in {time.perf_counter() - start:.1f} s", file=out)
            seconds = serve(ps, tables, batches, rng, progress)
            stats = {s["table"]: s for s in ps.stats() if s["model"] == "demo_dlrm"}

        # 4. report
        return _report(out, tables, stats, seconds)
    finally:
        if keep:
            print(f"kept {folder} (run `hps validate {os.path.join(folder, 'demo.json')}` to check it)", file=out)
        elif created:
            shutil.rmtree(folder, ignore_errors=True)
        else:  # a folder the user gave: remove only what the demo wrote
            shutil.rmtree(os.path.join(folder, "tables"), ignore_errors=True)
            shutil.rmtree(os.path.join(folder, "rocksdb"), ignore_errors=True)
            if os.path.exists(os.path.join(folder, "demo.json")):
                os.remove(os.path.join(folder, "demo.json"))


def _report(out: TextIO, tables: list, stats: dict, seconds: np.ndarray) -> dict:
    """Prints the per-table table and the totals; returns them."""
    header = (f"{'table':<8} {'rows':>10} {'in memory':>10} {'keys':>9} {'volatile':>9} {'persistent':>10} "
              f"{'default':>8} {'p50 us':>7} {'p99 us':>7}")
    print("\n" + header, file=out)
    print("-" * len(header), file=out)
    per_table = []
    for table in tables:
        s = stats[table.name]
        keys = s["keys"]
        volatile = s["hits"]["volatile_db"] / keys if keys else 0.0
        persistent = s["hits"]["persistent_db"] / keys if keys else 0.0
        per_table.append({"table": table.name, "rows": table.rows, "keys": keys, "volatile": volatile,
                          "persistent": persistent, "defaults": s["defaults"]})
        print(f"{table.name:<8} {table.rows:>10,} {s['tier_rows']['volatile_db']:>10,} {keys:>9,} {volatile:>9.3f} "
              f"{persistent:>10.3f} {s['defaults']:>8,} {s['latency_seconds']['p50'] * 1e6:>7.0f} "
              f"{s['latency_seconds']['p99'] * 1e6:>7.0f}", file=out)
    keys = sum(row["keys"] for row in per_table)
    volatile = sum(stats[t.name]["hits"]["volatile_db"] for t in tables) / keys
    persistent = sum(stats[t.name]["hits"]["persistent_db"] for t in tables) / keys
    defaults = sum(row["defaults"] for row in per_table)
    print("-" * len(header), file=out)
    print(f"{'all':<8} {sum(t.rows for t in tables):>10,} {'':>10} {keys:>9,} {volatile:>9.3f} {persistent:>10.3f} "
          f"{defaults:>8,}", file=out)
    print("\nin memory: rows the hash map holds at the end; volatile / persistent: share of the keys answered by "
          "the hash map / by RocksDB;\ndefault: keys no tier holds (values never seen in training); p50 / p99: "
          "latency of one lookup call.", file=out)
    total = float(seconds.sum())
    summary = {
        "tables": per_table,
        "keys": keys,
        "batches": len(seconds),
        "seconds": total,
        "keys_per_second": keys / total,
        "batches_per_second": len(seconds) / total,
        "batch_p50_ms": float(np.percentile(seconds, 50) * 1e3),
        "batch_p99_ms": float(np.percentile(seconds, 99) * 1e3),
        "volatile_hit_rate": volatile,
        "persistent_hit_rate": persistent,
    }
    print(f"served {len(seconds)} batches of {SAMPLES_PER_BATCH:,} samples x {len(tables)} tables "
          f"({keys:,} keys) in {total:.2f} s on the CPU:", file=out)
    print(f"  {summary['keys_per_second'] / 1e6:.2f} M keys/s, {summary['batches_per_second']:.1f} batches/s, "
          f"batch latency p50 {summary['batch_p50_ms']:.2f} ms, p99 {summary['batch_p99_ms']:.2f} ms", file=out)
    return summary


HELP = "run a synthetic DLRM-style model end to end"
DESCRIPTION = ("Writes 26 synthetic tables (Zipf-popular keys), a HugeCTR-style config with a hash map in front "
               "of RocksDB, loads it and serves batches of 1,024 samples x 26 features, then prints where the "
               "keys were answered and the throughput. Deterministic given --seed.")


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The demo's options, on `p` (the `hps demo` subcommand, or the parser of `python -m hps.demo`)."""
    p.add_argument("--dir", metavar="FOLDER", help="where to write (default: a new temporary folder)")
    p.add_argument("--rows-total", type=int_at_least(NUM_TABLES * MIN_TABLE_ROWS), default=3_000_000, metavar="N",
                   help=f"rows in all (default 3000000, at least {NUM_TABLES * MIN_TABLE_ROWS}: {NUM_TABLES} tables "
                        f"of {MIN_TABLE_ROWS} rows or more)")
    p.add_argument("--dim", type=int_at_least(1), default=16, metavar="D", help="floats per row (default 16)")
    p.add_argument("--batches", type=int_at_least(1), default=200, metavar="N", help="batches to serve (default 200)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--keep", action="store_true", help="keep the tables, config and RocksDB folder")
    p.set_defaults(func=_run_from_args, command="demo")
    return p


def _run_from_args(args: argparse.Namespace) -> int:
    run_demo(dir=args.dir, rows_total=args.rows_total, dim=args.dim, batches=args.batches, keep=args.keep,
             seed=args.seed, progress=None)
    return 0


def main(argv: Optional[list] = None) -> int:
    """`python -m hps.demo [options]`, the same as `hps demo [options]`."""
    from ._command import run_command

    parser = argparse.ArgumentParser(prog="hps demo", description=DESCRIPTION)
    return run_command(add_arguments(parser), argv)


if __name__ == "__main__":
    sys.exit(main())
