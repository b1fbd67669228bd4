"""Shared fixtures: small tables on disk with a NumPy oracle of what they hold."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pytest

import hps

os.environ.setdefault("HPS_PROGRESS", "0")


@dataclass
class Table:
    """A table folder and its oracle: rows[i] belongs to keys[i]."""
    folder: str
    keys: np.ndarray
    rows: np.ndarray
    default: float = 0.0
    index: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return self.rows.shape[1]

    def expected(self, query) -> np.ndarray:
        """The rows a lookup of `query` (any shape) must return."""
        if not self.index:
            self.index.update({int(k): i for i, k in enumerate(self.keys)})
        q = np.asarray(query).astype(np.int64)
        out = np.full(q.shape + (self.dim,), self.default, dtype=np.float32)
        flat = out.reshape(-1, self.dim)
        for i, k in enumerate(q.reshape(-1).tolist()):
            j = self.index.get(k)
            if j is not None:
                flat[i] = self.rows[j]
        return out

    def update(self, keys, rows) -> None:
        if not self.index:
            self.expected([])
        for k, r in zip(np.asarray(keys).reshape(-1).tolist(), np.asarray(rows, dtype=np.float32).reshape(-1, self.dim)):
            j = self.index.get(k)
            if j is None:
                self.index[k] = len(self.keys)
                self.keys = np.append(self.keys, np.int64(k))
                self.rows = np.vstack([self.rows, r[None]])
            else:
                self.rows[j] = r

    def erase(self, keys) -> None:
        if not self.index:
            self.expected([])
        for k in np.asarray(keys).reshape(-1).tolist():
            self.index.pop(k, None)


def make_table(folder, n: int, dim: int, *, seed: int = 0, key_low: int = -10**12, key_high: int = 10**12,
               default: float = 0.0) -> Table:
    rng = np.random.default_rng(seed)
    keys = rng.choice(np.arange(key_low, key_high, max(1, (key_high - key_low) // (4 * n)), dtype=np.int64),
                      size=n, replace=False)
    rows = rng.standard_normal((n, dim), dtype=np.float32)
    hps.write_sparse_model(folder, keys, rows, overwrite=True)  # tests write new versions into one folder
    return Table(str(folder), keys, rows, default)


def config_for(tables, *, model: str = "m", persistent: str | None = None, **model_keys) -> dict:
    model_config = {
        "model": model,
        "sparse_files": [t.folder for t in tables],
        "embedding_vecsize_per_table": [t.dim for t in tables],
        "default_value_for_each_table": [t.default for t in tables],
    }
    model_config.update(model_keys)
    config = {"supportlonglong": True, "volatile_db": {"type": "hash_map", "num_partitions": 3},
              "models": [model_config]}
    if persistent:
        config["persistent_db"] = {"type": "rocks_db", "path": persistent}
    return config


@pytest.fixture
def table(tmp_path) -> Table:
    return make_table(tmp_path / "t0", 2000, 8, default=-0.5)


@pytest.fixture
def fresh_torch_servers():
    """Torch suites: each test starts without the shared servers and compiled graphs of the last."""
    yield
    import torch

    import hps.torch

    hps.torch.clear_servers()
    torch._dynamo.reset()


@pytest.fixture
def server(table):
    with hps.HPS(config_for([table])) as ps:
        yield ps


def mixed_queries(table: Table, shape, seed: int = 1) -> np.ndarray:
    """Keys of the table, with about a quarter absent keys, in the given shape."""
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    present = table.keys[rng.integers(0, len(table.keys), size)]
    absent = rng.integers(10**13, 10**14, size)
    return np.where(rng.random(size) < 0.25, absent, present).reshape(shape)
