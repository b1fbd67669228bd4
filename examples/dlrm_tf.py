#!/usr/bin/env python3
"""A DLRM-style Keras model moved from TensorFlow embeddings to hps, end to end.

1. Train a DLRM-style Keras model (13 dense features, 26 sparse features, one
   tf.keras.layers.Embedding per sparse feature, MLPs) briefly on synthetic click data.
2. `hps.tf.export_tables`: write its 26 embedding tables and a config file.
3. `hps.tf.swap_embeddings`: a model whose Embedding layers are hps LookupLayers; print the
   largest prediction difference against the trained model.
4. Save the swapped model as a SavedModel (a serving signature) and in the Keras format.
5. Load both in a fresh Python process that only runs `import hps.tf` first, predict, and compare.
6. Serve: time the serving function that was saved at a few batch sizes (CPU here; a GPU where TensorFlow
   sees one).

Usage: python examples/dlrm_tf.py [--quick] [--rows 20000] [--dim 16] [--epochs 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HPS_PROGRESS", "0")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import hps.tf  # noqa: E402

DENSE, SPARSE = 13, 26


def build_model(rows: int, dim: int) -> tf.keras.Model:
    """Bottom MLP over the dense features, one Embedding per sparse feature, their concatenation,
    top MLP to one click probability."""
    dense = tf.keras.Input([DENSE], name="dense_features")
    sparse = tf.keras.Input([SPARSE], dtype=tf.int64, name="sparse_ids")
    x = tf.keras.layers.Dense(64, activation="relu")(dense)
    x = tf.keras.layers.Dense(dim, activation="relu")(x)
    vectors = [x] + [tf.keras.layers.Embedding(rows, dim, name=f"emb_{i}")(sparse[:, i]) for i in range(SPARSE)]
    x = tf.keras.layers.Concatenate()(vectors)
    x = tf.keras.layers.Dense(128, activation="relu")(x)
    x = tf.keras.layers.Dense(64, activation="relu")(x)
    return tf.keras.Model([dense, sparse], tf.keras.layers.Dense(1, activation="sigmoid")(x))


def synthetic(n: int, rows: int, seed: int):
    """Dense features, Zipf-distributed ids and clicks that depend on both."""
    rng = np.random.default_rng(seed)
    dense = rng.standard_normal((n, DENSE)).astype(np.float32)
    sparse = np.minimum(rng.zipf(1.2, (n, SPARSE)) - 1, rows - 1).astype(np.int64)
    logit = dense[:, 0] - 0.5 * dense[:, 1] + 0.3 * ((sparse[:, 0] % 7) - 3)
    clicks = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return dense, sparse, clicks


FRESH = """
import sys, numpy as np, tensorflow as tf
import hps.tf                                   # registers the op HpsLookup: load models after it
out = sys.argv[1]
dense, sparse = np.load(out + "/dense.npy"), np.load(out + "/sparse.npy")
expected = np.load(out + "/expected.npy")
saved = tf.saved_model.load(out + "/saved_model")
served = saved.signatures["serving_default"](dense=tf.constant(dense), sparse=tf.constant(sparse))
keras_model = tf.keras.models.load_model(out + "/model.keras")
print(float(np.abs(list(served.values())[0].numpy() - expected).max()),
      float(np.abs(keras_model.predict([dense, sparse], verbose=0) - expected).max()))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small tables, one short epoch")
    parser.add_argument("--rows", type=int, default=20000, help="rows of each of the 26 tables")
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--samples", type=int, default=65536, help="training samples")
    parser.add_argument("--out", help="where tables, config and saved models go (default: a temporary folder)")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.epochs, args.samples = 2000, 1, 8192
    out = args.out or tempfile.mkdtemp(prefix="hps-dlrm-tf-")
    os.makedirs(out, exist_ok=True)
    tf.keras.utils.set_random_seed(0)

    # 1. Train.
    model = build_model(args.rows, args.dim)
    model.compile(tf.keras.optimizers.Adam(1e-3), "binary_crossentropy", metrics=["AUC"])
    dense, sparse, clicks = synthetic(args.samples, args.rows, seed=1)
    start = time.perf_counter()
    history = model.fit([dense, sparse], clicks, batch_size=512, epochs=args.epochs, verbose=0)
    print(f"1. trained {args.epochs} epoch(s) on {args.samples:,} samples in {time.perf_counter() - start:.1f} s: "
          f"loss {history.history['loss'][-1]:.4f}, AUC {history.history['AUC'][-1]:.3f}")

    # 2. Export the tables, 3. swap the embeddings.
    config = hps.tf.export_tables(model, out, "dlrm")
    print(f"2. exported {SPARSE} tables of {args.rows:,} x {args.dim} and {config}")
    served = hps.tf.swap_embeddings(model, config)
    dense_t, sparse_t, _ = synthetic(4096, args.rows, seed=2)
    expected = model.predict([dense_t, sparse_t], verbose=0, batch_size=4096)
    got = served.predict([dense_t, sparse_t], verbose=0, batch_size=4096)
    print(f"3. swapped: {sum(isinstance(l, hps.tf.LookupLayer) for l in served.layers)} hps LookupLayers; "
          f"max |difference| to the trained model {np.abs(got - expected).max():.2e}")

    # 4. Save.
    @tf.function(input_signature=[tf.TensorSpec([None, DENSE], tf.float32, name="dense"),
                                  tf.TensorSpec([None, SPARSE], tf.int64, name="sparse")])
    def serve(dense, sparse):
        return served([dense, sparse])

    module = tf.Module()
    module.model, module.serve = served, serve
    tf.saved_model.save(module, os.path.join(out, "saved_model"), signatures={"serving_default": serve})
    served.save(os.path.join(out, "model.keras"))
    for name, value in (("dense", dense_t), ("sparse", sparse_t), ("expected", expected)):
        np.save(os.path.join(out, f"{name}.npy"), value)
    print(f"4. saved {out}/saved_model and {out}/model.keras")

    # 5. Reload in a fresh process.
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(FRESH), out], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the fresh process failed:\n{done.stderr[-3000:]}")
    saved_diff, keras_diff = (float(x) for x in done.stdout.split())
    print(f"5. fresh process: SavedModel max |difference| {saved_diff:.2e}, Keras format {keras_diff:.2e}")

    # 6. Serve.
    device = "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"
    print(f"6. serving the saved serving function on {device}:")
    for batch in (256, 1024, 4096):
        d, s, _ = synthetic(batch, args.rows, seed=batch)
        d, s = tf.constant(d), tf.constant(s)
        with tf.device(device):
            serve(d, s)  # trace and warm up
            times = []
            for _ in range(5 if args.quick else 20):
                start = time.perf_counter()
                serve(d, s).numpy()
                times.append(time.perf_counter() - start)
        p50 = float(np.median(times))
        print(f"   batch {batch:>5,}: {p50 * 1e3:7.2f} ms p50, {batch / p50:>10,.0f} samples/s")


if __name__ == "__main__":
    main()
