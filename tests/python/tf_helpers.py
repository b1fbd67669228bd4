"""Shared by the TensorFlow suites: a table whose keys are 0..V-1, so that a dense tf.Variable-like
reference (row k for key k, plus the default row for absent keys) gives what tf.nn.embedding_lookup
and tf.nn.embedding_lookup_sparse compute over the same rows."""

from __future__ import annotations

import json
import os

import numpy as np

import hps


class DenseTable:
    def __init__(self, folder, rows: np.ndarray, default: float):
        self.folder = str(folder)
        self.rows = rows
        self.default = default
        self.vocab, self.dim = rows.shape
        # Row `vocab` is the default row: absent keys point at it in the reference.
        self.reference = np.vstack([rows, np.full((1, self.dim), default, np.float32)])

    def reference_ids(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids).astype(np.int64)
        return np.where((ids >= 0) & (ids < self.vocab), ids, self.vocab)


def make_dense_table(folder, vocab: int, dim: int, *, seed: int = 0, default: float = -0.25) -> DenseTable:
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((vocab, dim), dtype=np.float32)
    hps.write_sparse_model(str(folder), np.arange(vocab, dtype=np.int64), rows)
    return DenseTable(folder, rows, default)


def write_config(path, tables, model: str = "m", names=None) -> str:
    config = {
        "supportlonglong": True,
        "models": [{
            "model": model,
            "sparse_files": [t.folder for t in tables],
            "embedding_table_names": names or [f"t{i}" for i in range(len(tables))],
            "embedding_vecsize_per_table": [t.dim for t in tables],
            "default_value_for_each_table": [t.default for t in tables],
        }],
    }
    with open(path, "w") as f:
        json.dump(config, f)
    return os.path.abspath(str(path))
