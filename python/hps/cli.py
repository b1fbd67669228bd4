"""The `hps` command: check configs and table files, convert arrays, look up keys, benchmark, publish
updates to Kafka, demo, move an ONNX model's embeddings into hps.

Run `hps --help` or `hps COMMAND --help`. Exit codes: 0 success, 1 a problem with the input (one
line on stderr names it), 2 a usage error. Also runs as `python -m hps.cli`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from typing import Any, Optional, Sequence

import numpy as np

import hps
from hps import _core, demo
from hps._command import UserError, int_at_least, run_command

__all__ = ["main", "build_parser"]

TIERS = ("gpu_cache", "volatile_db", "persistent_db")
TIER_LABELS = {"gpu_cache": "gpu", "volatile_db": "volatile", "persistent_db": "persistent"}
SCAN_CHUNK_ROWS = 1 << 22  # keys read at a time when scanning a key file (32 MiB)


# ---- helpers ------------------------------------------------------------------------------------


def _load_config(path: str) -> "hps.Config":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hps.ConfigWarning)
        return hps.Config(path)


def _load_server(path: str) -> "hps.HPS":
    """The server, with progress bars on a terminal; config warnings are left to `hps validate`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hps.ConfigWarning)
        return hps.HPS(path, progress=None)


_positive = int_at_least(1)
_count = int_at_least(0)


def _table_arg(text: str) -> Any:
    """A table is given by name or by index."""
    return int(text) if text.isdigit() else text


def _table_name(config: "hps.Config", model: str, table: Any) -> str:
    if isinstance(table, str):
        return table
    return config.model(model)["embedding_table_names"][table]


def _load_keys_file(path: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file")
    try:
        keys = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as error:
        raise UserError(f"{path}: not a readable .npy file ({error})") from None
    if not isinstance(keys, np.ndarray):
        raise UserError(f"{path}: expected a .npy file of keys, not an .npz archive")
    if keys.dtype.kind not in "iu":
        raise UserError(f"{path}: keys must be integers, got dtype {keys.dtype}")
    return keys.reshape(-1)


def _table_stats(ps: "hps.HPS", model: str, table: str) -> dict:
    for entry in ps.stats():
        if entry["model"] == model and entry["table"] == table:
            return entry
    raise UserError(f"no statistics for {model}/{table}")


def _delta(after: dict, before: dict) -> dict:
    return {"keys": after["keys"] - before["keys"],
            "hits": {tier: after["hits"][tier] - before["hits"][tier] for tier in TIERS},
            "defaults": after["defaults"] - before["defaults"]}


def _bytes(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:,} B" if unit == "B" else f"{count:,.1f} {unit}"
        count /= 1024
    raise AssertionError


def _row_text(row: np.ndarray, limit: Optional[int] = None) -> str:
    values = row if limit is None else row[:limit]
    text = ", ".join(f"{v:.6g}" for v in values.tolist())
    if limit is not None and row.size > limit:
        text += f", ... ({row.size} values)"
    return f"[{text}]"


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], left: Sequence[int] = (0,)) -> None:
    """Prints an aligned text table; the columns in `left` are left-aligned, the others right-aligned."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) if i in left else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths)))

    print(line(headers).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print(line(row).rstrip())


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.3f}" if whole else "-"


def _percentiles_ms(seconds: np.ndarray) -> tuple:
    return tuple(float(np.percentile(seconds, q) * 1e3) for q in (50, 99))


# ---- validate -----------------------------------------------------------------------------------


def _files_not_read(settings: dict) -> Optional[str]:
    """Why the server reads no table file for this config, or None when it loads them.

    A persistent_db holds every table and is loaded from the files only when it is writable and
    initialize_after_startup is true; otherwise the server serves what the store holds and fills
    the tiers above it from the store (docs/architecture.md, "Loading"), so the files may be absent."""
    store = settings["persistent_db"]
    if store["type"] == "disabled":
        return None
    if store["read_only"]:
        return "table files not read: persistent_db is read-only"
    if not store["initialize_after_startup"]:
        return "table files not read: persistent_db.initialize_after_startup is false"
    return None


def cmd_validate(args: argparse.Namespace) -> int:
    config = _load_config(args.config)
    for message in config.warnings:
        print(f"warning: {message}", file=sys.stderr)
    # The server's own checks before it opens anything (backends built in, a tier for the rows, the RocksDB path).
    try:
        _core.check_config_loadable(config._core)
    except hps.HpsError as error:
        raise UserError(f"{args.config}: {error}") from None
    settings = config.to_dict()
    models = settings["models"]
    n_tables = sum(len(model["sparse_files"]) for model in models)
    skipped = "table files not checked" if args.no_files else _files_not_read(settings)
    if skipped:
        print(f"OK: {len(models)} models, {n_tables} tables ({skipped})")
        return 0
    problems, total_rows, lines = 0, 0, []
    for m, model in enumerate(models):
        for t, (folder, dim, name) in enumerate(zip(model["sparse_files"], model["embedding_vecsize_per_table"],
                                                    model["embedding_table_names"])):
            where = f"models[{m}].sparse_files[{t}] ({model['model']}/{name})"
            try:
                info = hps.inspect_sparse_model(folder, dim)
            except (hps.HpsError, OSError) as error:
                print(f"hps validate: error: {where}: {error}", file=sys.stderr)
                problems += 1
                continue
            # The server's own checks: can a 32-bit model take every key (it checks before it replaces
            # stored rows), and can each partition of the volatile_db hold its share of the keys?
            try:
                _core.check_keys(folder, dim, config._core.key64)
                _core.check_table_fits(config._core, folder, dim, where)
            except hps.HpsError as error:
                message = str(error)
                print(f"hps validate: error: {message if where in message else f'{where}: {message}'}", file=sys.stderr)
                problems += 1
                continue
            total_rows += info["rows"]
            size = info["key_bytes"] + info["vector_bytes"] + info["meta_bytes"]
            lines.append((f"{model['model']}/{name}", f"{info['rows']:,}", dim, "yes" if info["has_meta"] else "no",
                          _bytes(size), folder))
    if lines:
        _print_table(["table", "rows", "dim", "meta", "size", "folder"], lines, left=(0, 5))
    if problems:
        raise UserError(f"{problems} of {n_tables} table folders have problems (see above)")
    try:
        _print_memory_plan(hps.memory_plan(config), hps.machine_memory())
    except (hps.HpsError, OSError) as error:
        raise UserError(f"{args.config}: memory plan: {error}") from None
    print(f"OK: {len(models)} models, {n_tables} tables, {total_rows:,} rows")
    return 0


def _both(count: int) -> str:
    return f"{count:,} B" if count < 1024 else f"{count:,} B ({_bytes(count)})"


def _print_memory_plan(plan: dict, machine: dict) -> None:
    """The plan of hps.memory_plan as a table and totals; warnings (stderr) where it exceeds this machine."""
    lines = []
    for table in plan["tables"]:
        host = table["volatile_db"]
        if host is None:
            host_cells = ["-"] * 5
        elif host["backend"] != "hash_map":
            host_cells = [host["backend"], "-", "-", "-", "0"]
        else:
            rows = f"{'<=' if host['grows_by_promotion'] else ''}{host['rows']:,}"
            host_cells = [rows, host["record_bytes"], f"{host['records_bytes']:,}", f"{host['index_bytes']:,}",
                          f"{host['bytes']:,}"]
        gpu = table["gpu"]
        if gpu is None:
            gpu_cells = ["-"] * 6
        else:
            gpu_cells = [f"{gpu['type']} {gpu['dtype']}", f"{gpu['capacity']:,}", f"{gpu['cache_bytes']:,}",
                         f"{gpu['host_tier_index_bytes']:,}", f"{gpu['bytes_per_device']:,}",
                         ",".join(str(d) for d in gpu["devices"])]
        lines.append([f"{table['model']}/{table['table']}"] + host_cells + gpu_cells)
    print("memory plan (bytes; a server loading these table files):")
    _print_table(["table", "host rows", "B/row", "records", "index", "host", "gpu cache", "capacity", "cache",
                  "tier index", "per device", "devices"], lines, left=(0, 6, 11))
    host, available = plan["host_bytes"], machine["host_available"]
    have = f"MemAvailable {_both(available)}" if available is not None else "MemAvailable unknown here"
    print(f"host: {_both(host)} for the hash map (records and index); {have}")
    if available is not None and host > available:
        print(f"warning: memory plan: the hash map needs {_both(host)} of host memory, more than MemAvailable "
              f"{_both(available)}", file=sys.stderr)
    gpus = machine["gpus"]
    for device, need in sorted(plan["gpu_bytes"].items()):
        if device in gpus:
            have = f"device memory {_both(gpus[device])}"
            if need > gpus[device]:
                print(f"warning: memory plan: GPU {device} needs {_both(need)}, more than its {_both(gpus[device])}",
                      file=sys.stderr)
        else:
            have = "no GPU here" if not gpus else f"no device {device} here ({len(gpus)} visible)"
        print(f"GPU {device}: {_both(need)} for caches and host-tier indexes; {have}")


# ---- schema -------------------------------------------------------------------------------------


def cmd_schema(args: argparse.Namespace) -> int:
    schema = hps.json_schema()
    if args.indent == 0:
        print(json.dumps(schema, separators=(",", ":")))
    else:
        print(json.dumps(schema, indent=args.indent))
    return 0


# ---- convert ------------------------------------------------------------------------------------


def cmd_convert(args: argparse.Namespace) -> int:
    from .convert import convert

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = convert(args.out, args.inputs, keys=args.keys, rows=args.rows, meta=args.meta,
                         key_offset=args.key_offset, dim_check=args.dim_check, overwrite=args.force,
                         chunk_rows=args.chunk_rows, progress=None)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    meta = ", with meta" if result.has_meta else ""
    print(f"wrote {result.folder}: {result.rows:,} rows x {result.dim}{meta}; keys {result.key_min} .. "
          f"{result.key_max}, {result.duplicate_keys:,} duplicate{'' if result.duplicate_keys == 1 else 's'}")
    return 0


# ---- inspect ------------------------------------------------------------------------------------


def cmd_inspect(args: argparse.Namespace) -> int:
    info = hps.inspect_sparse_model(args.folder, args.dim or 0)
    n = info["rows"]
    key_min = key_max = None
    duplicates = 0
    if n:
        keys = np.memmap(os.path.join(args.folder, "key"), dtype="<i8", mode="r", shape=(n,))
        key_min, key_max = int(keys[0]), int(keys[0])
        for first in range(0, n, SCAN_CHUNK_ROWS):
            chunk = keys[first:first + SCAN_CHUNK_ROWS]
            key_min, key_max = min(key_min, int(chunk.min())), max(key_max, int(chunk.max()))
        ordered = np.sort(keys)  # 8 bytes per row: the only whole-table copy
        duplicates = int(np.count_nonzero(ordered[1:] == ordered[:-1]))
        del ordered, keys
    head_keys, head_rows, head_meta = hps.read_sparse_model(args.folder, info["dim"], first=0,
                                                            count=min(args.head, n), with_meta=True)
    if args.json:
        report = dict(info, key_min=key_min, key_max=key_max, duplicate_keys=duplicates,
                      head=[{"key": int(k), "row": r.tolist(), **({"meta": int(m)} if head_meta is not None else {})}
                            for k, r, m in zip(head_keys, head_rows,
                                               head_meta if head_meta is not None else [None] * len(head_keys))])
        print(json.dumps(report, indent=2))
        return 0
    print(f"folder      {info['folder']}")
    print(f"rows        {n:,}")
    print(f"dim         {info['dim']}")
    print(f"meta        {'yes' if info['has_meta'] else 'no'}")
    sizes = f"key {info['key_bytes']:,} B, emb_vector {info['vector_bytes']:,} B"
    if info["has_meta"]:
        sizes += f", meta {info['meta_bytes']:,} B"
    print(f"files       {sizes}")
    if n:
        print(f"keys        min {key_min}, max {key_max}, {duplicates:,} duplicates"
              + (" (lookups return the row of the last occurrence)" if duplicates else ""))
    if len(head_keys):
        print(f"first {len(head_keys)} rows:")
        for i, (key, row) in enumerate(zip(head_keys, head_rows)):
            meta = f"  meta {head_meta[i]}" if head_meta is not None else ""
            print(f"  {key}: {_row_text(row, 8)}{meta}")
    return 0


# ---- lookup -------------------------------------------------------------------------------------


def _int_key(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UserError(f"--keys: {text!r} is not an integer key") from None


def cmd_lookup(args: argparse.Namespace) -> int:
    # `--keys 1 2 ps.json`: --keys takes every word after it, CONFIG included; take it back.
    if args.config is None and args.keys and not args.keys[-1].lstrip("+-").isdigit():
        args.config = args.keys.pop()
    if args.config is None:
        print("usage: hps lookup CONFIG --model M --table T (--keys K [K ...] | --keys-file F.npy) [--json]\n"
              "hps lookup: error: the following arguments are required: CONFIG", file=sys.stderr)
        return 2
    if args.keys is not None:
        if not args.keys:
            raise UserError("--keys: give at least one key before CONFIG")
        args.keys = [_int_key(k) for k in args.keys]
        too_wide = [k for k in args.keys if not -2**63 <= k < 2**63]
        if too_wide:
            raise UserError(f"key {too_wide[0]} does not fit in a signed 64-bit integer")
        keys = np.asarray(args.keys, dtype=np.int64)
    else:
        keys = _load_keys_file(args.keys_file)
    table = _table_arg(args.table)
    with _load_server(args.config) as ps:
        ps.dim(args.model, table)  # fails with a clear message for an unknown model or table
        name = _table_name(ps.config, args.model, table)
        before = _table_stats(ps, args.model, name)
        rows = ps.lookup(args.model, table, np.ascontiguousarray(keys))
        counts = _delta(_table_stats(ps, args.model, name), before)
    if args.json:
        print(json.dumps({"model": args.model, "table": name, "dim": int(rows.shape[-1]), "keys": keys.tolist(),
                          "rows": rows.tolist(), "hits": counts["hits"], "defaults": counts["defaults"]}))
        return 0
    for key, row in zip(keys.tolist(), rows):
        print(f"{key}: {_row_text(row)}")
    answered = ", ".join(f"{counts['hits'][tier]:,} {tier}" for tier in TIERS if counts["hits"][tier] or
                         tier != "gpu_cache")
    print(f"{args.model}/{name}: {keys.size:,} keys: {answered}, {counts['defaults']:,} default rows",
          file=sys.stderr)
    return 0


# ---- stats --------------------------------------------------------------------------------------


def cmd_stats(args: argparse.Namespace) -> int:
    given = [args.keys_file is not None, args.model is not None, args.table is not None]
    if any(given) and not all(given):
        raise UserError("--keys-file, --model and --table go together: give all three, or none")
    keys = _load_keys_file(args.keys_file) if args.keys_file else None
    with _load_server(args.config) as ps:
        if keys is not None:
            table = _table_arg(args.table)
            ps.dim(args.model, table)
            for first in range(0, keys.size, args.batch):
                ps.lookup(args.model, table, np.ascontiguousarray(keys[first:first + args.batch]))
        if args.format == "prometheus":
            sys.stdout.write(ps.prometheus())
            return 0
        stats = ps.stats()
        if args.format == "json":
            print(json.dumps(stats, indent=2))
            return 0
        tiers = [tier for tier in TIERS if tier != "gpu_cache" or ps.gpu_enabled]
    headers = ["table"]
    for tier in tiers:
        headers += [f"{TIER_LABELS[tier]} rows", f"{TIER_LABELS[tier]} bytes"]
    headers += ["keys"] + [f"{TIER_LABELS[tier]} hit" for tier in tiers] + ["default", "p50 us", "p99 us"]
    lines = []
    for s in stats:
        line = [f"{s['model']}/{s['table']}"]
        for tier in tiers:
            about = "~" if s.get("tier_rows_estimated", {}).get(tier) else ""  # RocksDB counts are estimates
            line += [f"{about}{s['tier_rows'][tier]:,}", _bytes(s["tier_bytes"][tier])]
        line += [f"{s['keys']:,}"] + [_share(s["hits"][tier], s["keys"]) for tier in tiers]
        latency = s["latency_seconds"]
        line += [f"{s['defaults']:,}", f"{latency['p50'] * 1e6:.0f}", f"{latency['p99'] * 1e6:.0f}"]
        lines.append(line)
    _print_table(headers, lines)
    print("hit: share of the keys answered by each tier; default: keys no tier holds; p50/p99: latency of one "
          "lookup call")
    return 0


# ---- bench --------------------------------------------------------------------------------------


def _bench_batches(rng: np.random.Generator, key_file: np.ndarray, zipf: float, batch: int,
                   count: int) -> list:
    """`count` distinct batches of keys drawn from the table's own keys, uniform or Zipf-popular."""
    n = key_file.shape[0]
    # Scatter popularity over the file: rank r -> row (r * step) mod n, a bijection when gcd(step, n) = 1.
    step = 2654435761
    while math.gcd(step, n) != 1:
        step += 2
    batches = []
    for _ in range(count):
        if zipf > 0:
            rows = (demo.zipf_ranks(rng, n, zipf, batch) * step) % n
        else:
            rows = rng.integers(0, n, batch)
        batches.append(np.asarray(key_file[np.sort(rows)])[rng.permutation(batch)])
    return batches


def cmd_bench(args: argparse.Namespace) -> int:
    if args.zipf < 0:
        raise UserError(f"--zipf must be 0 or more, got {args.zipf}")
    with _load_server(args.config) as ps:
        model = ps.config.model(args.model)
        names = model["embedding_table_names"]
        if args.table is None:
            chosen = list(range(len(names)))
        else:
            table = _table_arg(args.table)
            ps.dim(args.model, table)
            chosen = [table if isinstance(table, int) else names.index(table)]
        rng = np.random.default_rng(args.seed)
        results, all_seconds = [], []
        for t in chosen:
            info = hps.inspect_sparse_model(model["sparse_files"][t], model["embedding_vecsize_per_table"][t])
            if info["rows"] == 0:
                continue
            key_file = np.memmap(os.path.join(model["sparse_files"][t], "key"), dtype="<i8", mode="r",
                                 shape=(info["rows"],))
            batches = _bench_batches(rng, key_file, args.zipf, args.batch, args.warmup + args.iters)
            out = np.empty((args.batch, info["dim"]), dtype=np.float32)
            for keys in batches[:args.warmup]:
                ps.lookup(args.model, t, keys, out=out)
            before = _table_stats(ps, args.model, names[t])
            seconds = np.empty(args.iters)
            for i, keys in enumerate(batches[args.warmup:]):
                start = time.perf_counter()
                ps.lookup(args.model, t, keys, out=out)
                seconds[i] = time.perf_counter() - start
            counts = _delta(_table_stats(ps, args.model, names[t]), before)
            p50, p99 = _percentiles_ms(seconds)
            results.append({"table": names[t], "rows": info["rows"], "dim": info["dim"], "batch": args.batch,
                            "iters": args.iters, "keys_per_second": args.batch * args.iters / seconds.sum(),
                            "p50_ms": p50, "p99_ms": p99, "max_ms": float(seconds.max() * 1e3),
                            "hit_rates": {tier: counts["hits"][tier] / counts["keys"] for tier in TIERS},
                            "default_rate": counts["defaults"] / counts["keys"]})
            all_seconds.append(seconds)
    if not results:
        raise UserError(f"model {args.model!r}: the chosen tables hold no rows")
    seconds = np.concatenate(all_seconds)
    total = {"keys_per_second": seconds.size * args.batch / seconds.sum(),
             "p50_ms": _percentiles_ms(seconds)[0], "p99_ms": _percentiles_ms(seconds)[1]}
    if args.json:
        print(json.dumps({"model": args.model, "zipf": args.zipf, "tables": results, "all": total}, indent=2))
        return 0
    draw = f"Zipf({args.zipf:g})" if args.zipf > 0 else "uniform"
    print(f"{args.model}: {args.iters} distinct batches of {args.batch:,} keys per table ({draw} over each table's "
          f"keys, {args.warmup} warm-up batches), one thread, CPU tiers")
    lines = [(r["table"], f"{r['rows']:,}", r["dim"], f"{r['keys_per_second'] / 1e6:.2f}", f"{r['p50_ms']:.2f}",
              f"{r['p99_ms']:.2f}", f"{r['hit_rates']['volatile_db']:.3f}", f"{r['hit_rates']['persistent_db']:.3f}",
              f"{r['default_rate']:.3f}") for r in results]
    if len(results) > 1:
        lines.append(("all", "", "", f"{total['keys_per_second'] / 1e6:.2f}", f"{total['p50_ms']:.2f}",
                      f"{total['p99_ms']:.2f}", "", "", ""))
    _print_table(["table", "rows", "dim", "M keys/s", "p50 ms", "p99 ms", "volatile hit", "persistent hit",
                  "default"], lines)
    return 0


# ---- onnx-surgery -------------------------------------------------------------------------------


def cmd_onnx_surgery(args: argparse.Namespace) -> int:
    try:
        import hps.onnx
    except ImportError as error:
        raise UserError(str(error)) from None
    report = hps.onnx.replace_embeddings(args.model_file, args.out, args.tables, args.model, key_dtype=args.key_dtype,
                                         ps_config_file=args.ps_config_file, config_name=args.config_name,
                                         tables=args.table, min_rows=args.min_rows)
    print(report.to_json() if args.json else report)
    return 0


# ---- the parser ---------------------------------------------------------------------------------


def _version() -> str:
    built = hps.build_features()
    names = {"gpu_cache": "GPU cache", "rocksdb": "RocksDB", "redis": "Redis Cluster", "kafka": "Kafka consumer",
             "tf_op": "TensorFlow op",
             "tensorrt_plugin": "TensorRT plugin"}
    parts = ", ".join(f"{label} {'yes' if built[key] else 'no'}" for key, label in names.items())
    return f"hps {hps.__version__} (built with: {parts}; CUDA devices {hps.cuda_device_count()})"


# ---- publish ------------------------------------------------------------------------------------


def cmd_publish(args: argparse.Namespace) -> int:
    if args.from_table:
        info = hps.inspect_sparse_model(args.from_table, args.dim or 0)
        total, dim = info["rows"], info["dim"]

        def chunks():
            for first in range(0, total, args.chunk_rows):
                keys, rows = hps.read_sparse_model(args.from_table, dim, first=first,
                                                   count=min(args.chunk_rows, total - first))
                yield keys, rows
    else:
        if not (args.keys and args.rows):
            raise UserError("give --from-table FOLDER, or --keys K.npy with --rows R.npy")
        keys = _load_keys_file(args.keys)
        if not os.path.isfile(args.rows):
            raise UserError(f"{args.rows}: no such file")
        rows = np.load(args.rows, mmap_mode="r", allow_pickle=False)
        if rows.ndim != 2 or rows.shape[0] != keys.size:
            raise UserError(f"{args.rows}: expected rows of shape [{keys.size}, D], got {list(rows.shape)}")
        if args.dim and rows.shape[1] != args.dim:
            raise UserError(f"{args.rows}: rows have {rows.shape[1]} floats, --dim says {args.dim}")
        total, dim = keys.size, rows.shape[1]

        def chunks():
            for first in range(0, total, args.chunk_rows):
                yield np.asarray(keys[first:first + args.chunk_rows]), np.asarray(rows[first:first + args.chunk_rows])
    started = time.perf_counter()
    with hps.UpdatePublisher(args.brokers, args.model, key_bits=args.key_bits, partitions=args.partitions,
                             max_message_bytes=args.max_message_bytes) as publisher:
        for keys, rows in chunks():
            publisher.publish(args.table, keys, rows)
        publisher.flush()
        messages = publisher.messages
    seconds = time.perf_counter() - started
    topic = hps.publisher.topic_name(args.model, args.table)
    print(f"published {total:,} rows x {dim} to {topic} on {args.brokers}: {messages:,} messages in {seconds:.2f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="hps", formatter_class=formatter,
        description="Hierarchical parameter server: check configs and table files, convert arrays into table "
                    "folders, look up keys, print statistics, benchmark, run the demo, move an ONNX model's "
                    "embeddings into hps.",
        epilog="Exit status: 0 success, 1 a problem with the input (named on stderr), 2 a usage error.\n"
               "Start with `hps demo`.")
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help: str, description: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=description, formatter_class=formatter)
        return sub

    p = command("validate", "check a config and its table files",
                "Parses CONFIG (HugeCTR's JSON format) with the same parser the server uses, prints its warnings, "
                "then checks that every table folder has 'key' and 'emb_vector' files of matching sizes (not "
                "when the server reads no table file: a read-only persistent_db, or one with "
                "initialize_after_startup false), and prints a memory plan: each table's host (hash map) and per-GPU "
                "bytes, and their totals next to MemAvailable and each GPU's memory.")
    p.add_argument("config", metavar="CONFIG", help="the JSON config file")
    p.add_argument("--no-files", action="store_true", help="check the config only, not the table folders")
    p.set_defaults(func=cmd_validate)

    p = command("schema", "print the JSON Schema of the config format",
                "Prints a JSON Schema (draft 2020-12) of the config format, for editors and CI checks.")
    p.add_argument("--indent", type=_count, default=2, metavar="N", help="indentation (0: one line; default 2)")
    p.set_defaults(func=cmd_schema)

    p = command("convert", "write a table folder from .npy/.npz arrays",
                "Writes a HugeCTR table folder (key int64, emb_vector float32, optional meta int64) from:\n"
                "  one or more .npz files holding keys ('keys' or 'key'), rows ('rows', 'emb_vector', 'values'\n"
                "    or 'embeddings') and optionally 'meta';\n"
                "  two .npy files: --keys K.npy --rows R.npy [--meta M.npy];\n"
                "  one or more .npy dense matrices [N, D] whose row index is the key.\n"
                "Inputs are read in chunks, so tables larger than memory convert. Duplicate keys are kept\n"
                "(lookups return the row of the last occurrence) and counted in a warning. Rows are stored as\n"
                "float32: a finite value beyond its range (~3.4e38) is refused. A failed conversion leaves\n"
                "nothing behind.")
    p.add_argument("inputs", nargs="*", metavar="INPUT", help=".npz files, or .npy dense matrices")
    p.add_argument("--out", required=True, metavar="FOLDER", help="the table folder to write")
    p.add_argument("--keys", metavar="K.npy", help="keys [N] (integers), with --rows")
    p.add_argument("--rows", metavar="R.npy", help="rows [N, D] (numbers), with --keys")
    p.add_argument("--meta", metavar="M.npy", help="meta [N] (integers), with --keys and --rows")
    p.add_argument("--key-offset", type=int, default=0, metavar="N", help="add N to every key (default 0)")
    p.add_argument("--dim-check", type=_positive, metavar="D", help="fail unless the rows have D floats each")
    p.add_argument("--force", action="store_true", help="replace a table already in FOLDER")
    p.add_argument("--chunk-rows", type=_positive, metavar="N", help="rows per chunk (default: about 64 MiB of rows)")
    p.set_defaults(func=cmd_convert)

    p = command("inspect", "describe a table folder",
                "Prints a table folder's rows, dim, meta, file sizes, key range, duplicate keys and first rows. "
                "Keys are scanned in chunks; counting duplicates sorts a copy of the keys (8 bytes per row).")
    p.add_argument("folder", metavar="FOLDER", help="the table folder")
    p.add_argument("--dim", type=_positive, metavar="D", help="floats per row (default: inferred)")
    p.add_argument("--head", type=_count, default=3, metavar="N", help="rows to print (default 3)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_inspect)

    p = command("lookup", "look keys up through the server",
                "Loads CONFIG, looks the keys up in one table and prints their rows, then (on stderr) how many "
                "keys each tier answered and how many got the table's default row.")
    # Optional here only so that `--keys 1 2 CONFIG` parses (cmd_lookup takes CONFIG back from --keys).
    p.add_argument("config", metavar="CONFIG", nargs="?", help="the JSON config file")
    p.add_argument("--model", required=True, metavar="M", help="model name")
    p.add_argument("--table", required=True, metavar="T", help="table name or index")
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument("--keys", nargs="+", metavar="K", help="keys to look up (integers)")
    given.add_argument("--keys-file", metavar="F.npy", help="a .npy array of integer keys")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_lookup)

    p = command("stats", "print per-table statistics",
                "Loads CONFIG, optionally looks up the keys of a .npy file (in calls of --batch keys), and prints "
                "per table: rows and bytes per tier, keys looked up, share answered per tier, defaults, and "
                "the p50/p99 latency of one lookup call.")
    p.add_argument("config", metavar="CONFIG", help="the JSON config file")
    p.add_argument("--keys-file", metavar="F.npy", help="keys to look up first (with --model and --table)")
    p.add_argument("--model", metavar="M", help="model of --keys-file")
    p.add_argument("--table", metavar="T", help="table (name or index) of --keys-file")
    p.add_argument("--batch", type=_positive, default=4096, metavar="N", help="keys per lookup call (default 4096)")
    p.add_argument("--format", choices=("text", "json", "prometheus"), default="text", help="output format")
    p.set_defaults(func=cmd_stats)

    p = command("bench", "measure CPU lookup throughput",
                "Loads CONFIG and times lookups on the model's tables (or one table): distinct batches of keys "
                "drawn from each table's own key file, Zipf-popular (or uniform with --zipf 0). Prints keys/s, "
                "latency percentiles and the share of keys each tier answered.")
    p.add_argument("config", metavar="CONFIG", help="the JSON config file")
    p.add_argument("--model", required=True, metavar="M", help="model name")
    p.add_argument("--table", metavar="T", help="one table (name or index; default: every table)")
    p.add_argument("--batch", type=_positive, default=26624, metavar="N", help="keys per lookup (default 26624)")
    p.add_argument("--iters", type=_positive, default=50, metavar="N", help="timed batches per table (default 50)")
    p.add_argument("--warmup", type=_count, default=3, metavar="N", help="untimed batches first (default 3)")
    p.add_argument("--zipf", type=float, default=1.05, metavar="S", help="popularity exponent; 0: uniform "
                   "(default 1.05)")
    p.add_argument("--seed", type=_count, default=0, help="random seed (default 0)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_bench)

    p = command("publish", "send rows to running servers through Kafka",
                "Publishes rows as updates of one table to Kafka, in HugeCTR's message format, on the topic\n"
                "hps_et.<MODEL>.<TABLE>; every server whose config has an update_source of type\n"
                "kafka_message_queue on those brokers applies them (docs/kafka.md). Rows come from a table\n"
                "folder (--from-table) or from two .npy files (--keys, --rows), read in chunks.")
    p.add_argument("--brokers", required=True, metavar="HOST:PORT[,...]", help="Kafka bootstrap brokers")
    p.add_argument("--model", required=True, metavar="M", help="model name")
    p.add_argument("--table", required=True, metavar="T", help="table name")
    p.add_argument("--from-table", metavar="FOLDER", help="a table folder (key, emb_vector) to publish")
    p.add_argument("--keys", metavar="K.npy", help="keys [N] (integers), with --rows")
    p.add_argument("--rows", metavar="R.npy", help="rows [N, D] (float32), with --keys")
    p.add_argument("--dim", type=_positive, metavar="D", help="floats per row (default: inferred)")
    p.add_argument("--key-bits", type=int, choices=(32, 64), default=64,
                   help="key width on the wire: 64, or 32 for servers with supportlonglong false (default 64)")
    p.add_argument("--partitions", type=_positive, default=8, metavar="N",
                   help="partitions of a topic created here (default 8; existing topics keep theirs)")
    p.add_argument("--max-message-bytes", type=_positive, default=262144, metavar="B",
                   help="largest message (default 262144, the servers' default receive_buffer_size)")
    p.add_argument("--chunk-rows", type=_positive, default=1 << 16, metavar="N",
                   help="rows read at a time (default 65536)")
    p.set_defaults(func=cmd_publish)

    demo.add_arguments(command("demo", demo.HELP, demo.DESCRIPTION))

    p = command("onnx-surgery", "serve an ONNX model's embedding tables from hps",
                "Finds the embedding lookups of MODEL.onnx (a Gather on a 2-D float initializer: alone, before a "
                "reduce, or inside the Loop torch.onnx.export makes of nn.EmbeddingBag), writes each table as a "
                "table folder under --tables plus an hps config, and writes --out with each lookup replaced by an "
                "HPS_TRT node (the TensorRT plugin's op; hps.onnx.session runs it in onnxruntime). Prints what was "
                "replaced and what was left, and why. Needs onnx and onnx-graphsurgeon (pip install hps[onnx]).")
    p.add_argument("model_file", metavar="MODEL.onnx", help="the ONNX model")
    p.add_argument("--out", required=True, metavar="OUT.onnx", help="the surgered model to write")
    p.add_argument("--tables", required=True, metavar="FOLDER", help="where to write the table folders and config")
    p.add_argument("--model", required=True, metavar="NAME", help="the model name in the config")
    p.add_argument("--key-dtype", choices=("int64", "int32"), default="int64",
                   help="type of the key inputs (default int64; HugeCTR's TensorRT plugin takes int32)")
    p.add_argument("--ps-config-file", metavar="PATH", help="the config path the HPS_TRT nodes carry, where the "
                   "model will run (default: the absolute path of the config written)")
    p.add_argument("--config-name", default="ps.json", metavar="FILE", help="the config's file name (default ps.json)")
    p.add_argument("--table", action="append", metavar="INITIALIZER", help="serve only this initializer "
                   "(repeatable; default: every lookup found)")
    p.add_argument("--min-rows", type=_positive, default=1, metavar="N", help="leave tables of fewer rows in the graph")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_onnx_surgery)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command line `argv` (default: sys.argv[1:]); returns the exit status."""
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
