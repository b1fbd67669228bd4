#!/usr/bin/env python3
"""DLRM inference latency with hps.tf next to native TensorFlow embeddings, in one run.

A DLRM-style Keras model: 13 dense and 26 sparse features (one id per feature and sample), 26
tables (--rows-per-table x --dim), bottom MLP 13-512-256-D, the 27 vectors concatenated, top MLP
1024-512-256-1. Two servings of the same trained weights, each a tf.function (jit_compile=False)
run from host inputs to the host prediction:

  native  tf.keras.layers.Embedding tables in TensorFlow variables (HugeCTR's "native TF"
          baseline kept the tables on the CPU too);
  hps.tf  the tables exported with hps.tf.export_tables and served by hps (its CPU-memory tier
          here; its GPU cache where TensorFlow sees a GPU), the model from hps.tf.swap_embeddings.

Both are timed on the whole model and on the embeddings alone (26 lookups, no MLP). Every timed
call gets a batch of its own (Zipf(--zipf) ids per table, hot rows scattered). Before timing, the
two servings' predictions are compared (they must agree to 1e-6).

CPU here (where TensorFlow has no CUDA, as on the project machines and the GPU machine); with a
TensorFlow that sees a GPU, --device gpu runs both there.

Usage: python benchmarks/dlrm_tf.py [--rows-per-table 100000] [--dim 64]
       [--batches 1024 4096 16384 65536] [--reps 5] [--device cpu|gpu] [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HPS_PROGRESS", "0")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import hps  # noqa: E402
import hps.tf  # noqa: E402

DENSE, SPARSE = 13, 26


def build(rows: int, dim: int) -> "tuple[tf.keras.Model, tf.keras.Model]":
    """The DLRM-style model and, sharing its Embedding layers, a model of the embeddings alone."""
    dense = tf.keras.Input([DENSE], name="dense_features")
    sparse = tf.keras.Input([SPARSE], dtype=tf.int64, name="sparse_ids")
    x = dense
    for width in (512, 256, dim):
        x = tf.keras.layers.Dense(width, activation="relu")(x)
    vectors = [tf.keras.layers.Embedding(rows, dim, name=f"emb_{i}")(sparse[:, i]) for i in range(SPARSE)]
    embeddings_only = tf.keras.Model(sparse, tf.keras.layers.Concatenate(name="rows")(vectors))
    x = tf.keras.layers.Concatenate()([x] + vectors)
    for width in (1024, 512, 256):
        x = tf.keras.layers.Dense(width, activation="relu")(x)
    model = tf.keras.Model([dense, sparse], tf.keras.layers.Dense(1, activation="sigmoid")(x))
    return model, embeddings_only


def zipf_ids(rng, batch: int, rows: int, alpha: float, permutation: np.ndarray) -> np.ndarray:
    ranks = np.minimum(rng.zipf(alpha, (batch, SPARSE)) - 1, rows - 1)
    return permutation[ranks].astype(np.int64)  # the hot rows scattered over the table


def timed(fn, inputs: list, reps: int) -> float:
    """Median seconds of fn over distinct inputs (after one untimed call that traces it)."""
    fn(*inputs[-1])
    times = []
    for args in inputs[:reps]:
        start = time.perf_counter()
        out = fn(*args)
        np.asarray(out)  # the prediction on the host
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows-per-table", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--batches", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    parser.add_argument("--reps", type=int, default=5, help="timed calls per cell (distinct batches)")
    parser.add_argument("--zipf", type=float, default=1.05)
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--quick", action="store_true", help="10,000 rows per table, batches 1,024 and 4,096")
    parser.add_argument("--lookup-threads", type=int, default=0,
                        help="hps threads per lookup (default: hps's, min(16, cores)); TensorFlow already runs "
                             "the 26 lookups side by side")
    parser.add_argument("--workdir", help="where the table files go (default: a temporary folder)")
    args = parser.parse_args()
    if args.quick:
        args.rows_per_table, args.batches, args.reps = 10_000, [1024, 4096], 3
    if args.device == "gpu" and not tf.config.list_physical_devices("GPU"):
        raise SystemExit("--device gpu: this TensorFlow sees no GPU (a CPU-only TensorFlow, or no CUDA)")
    device = "/GPU:0" if args.device == "gpu" else "/CPU:0"
    rows, dim = args.rows_per_table, args.dim
    workdir = args.workdir or tempfile.mkdtemp(prefix="hps-dlrm-tf-bench-")
    tf.keras.utils.set_random_seed(0)

    with tf.device(device):
        model, embeddings_only = build(rows, dim)
    start = time.perf_counter()
    config = hps.tf.export_tables(model, workdir, "dlrm", gpucacheper=0.2)
    # The first acquire of a config sets its server's options; the layers' later acquires share it.
    server = hps.HPS(config, lookup_threads=args.lookup_threads or None)  # noqa: F841 (kept alive)
    served = hps.tf.swap_embeddings(model, config)
    served_embeddings = hps.tf.swap_embeddings(embeddings_only, config)
    setup_s = time.perf_counter() - start

    signature = [tf.TensorSpec([None, DENSE], tf.float32), tf.TensorSpec([None, SPARSE], tf.int64)]
    functions = {
        ("native", "model"): tf.function(lambda d, s: model([d, s]), input_signature=signature, jit_compile=False),
        ("hps.tf", "model"): tf.function(lambda d, s: served([d, s]), input_signature=signature, jit_compile=False),
        ("native", "embeddings"): tf.function(lambda d, s: embeddings_only(s), input_signature=signature,
                                              jit_compile=False),
        ("hps.tf", "embeddings"): tf.function(lambda d, s: served_embeddings(s), input_signature=signature,
                                              jit_compile=False),
    }

    rng = np.random.default_rng(1)
    permutation = rng.permutation(rows)
    check = [tf.constant(rng.standard_normal((2048, DENSE), dtype=np.float32)),
             tf.constant(zipf_ids(rng, 2048, rows, args.zipf, permutation))]
    with tf.device(device):
        diff = float(np.abs(functions["native", "model"](*check) - functions["hps.tf", "model"](*check)).max())
    assert diff <= 1e-6, f"hps.tf and native predictions differ by {diff}"

    print(f"# dlrm_tf: {SPARSE} tables x {rows:,} rows x D={dim} ({SPARSE * rows * dim * 4 / 1e9:.2f} GB), "
          f"Zipf {args.zipf}, {args.reps} distinct batches per cell, device {device}; TensorFlow {tf.__version__}, "
          f"hps {hps.__version__}, {platform.machine()}, {os.cpu_count()} cores; export + swap {setup_s:.1f} s; "
          f"max |prediction difference| {diff:.1e}")
    header = (f"{'batch':>7} | {'native ms':>10} {'hps.tf ms':>10} {'speedup':>8} | "
              f"{'native emb ms':>13} {'hps.tf emb ms':>13} {'speedup':>8} | {'hps Mrows/s':>11}")
    print(header)
    print("-" * len(header))
    for batch in args.batches:
        inputs = [[tf.constant(rng.standard_normal((batch, DENSE), dtype=np.float32)),
                   tf.constant(zipf_ids(rng, batch, rows, args.zipf, permutation))] for _ in range(args.reps + 1)]
        with tf.device(device):
            t = {key: timed(fn, inputs, args.reps) for key, fn in functions.items()}
        print(f"{batch:>7,} | {t['native', 'model'] * 1e3:>10.2f} {t['hps.tf', 'model'] * 1e3:>10.2f} "
              f"{t['native', 'model'] / t['hps.tf', 'model']:>7.2f}x | "
              f"{t['native', 'embeddings'] * 1e3:>13.2f} {t['hps.tf', 'embeddings'] * 1e3:>13.2f} "
              f"{t['native', 'embeddings'] / t['hps.tf', 'embeddings']:>7.2f}x | "
              f"{batch * SPARSE / t['hps.tf', 'embeddings'] / 1e6:>11.1f}")


if __name__ == "__main__":
    main()
