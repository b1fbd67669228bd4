#!/usr/bin/env python3
"""A DLRM-style model moved from torch embeddings to hps, end to end.

1. Train a DLRM-style model (13 dense features, 26 sparse features, one nn.EmbeddingBag per sparse
   feature, dot interaction, MLPs) for a few hundred steps on synthetic click data.
2. `hps.torch.export_tables`: write its 26 embedding tables and a config file.
3. `hps.torch.swap_embeddings`: replace the embedding modules of a copy with hps layers.
4. Serve both on the CPU and, where there is one, on the GPU (the dense part on the GPU, the
   tables in hps: its GPU cache in front of its CPU-memory tier); print the largest prediction
   difference and the throughput of each.
5. `torch.export` the swapped model, load it back and check it predicts the same.

Usage: python examples/dlrm_torch.py [--device auto|cpu|cuda] [--quick] [--steps 300] [--out DIR]
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time

import numpy as np
import torch
from torch import nn

import hps
import hps.torch

DENSE, SPARSE = 13, 26


def mlp(sizes: list[int], last_activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if last_activation or i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class DLRM(nn.Module):
    """Bottom MLP over the dense features, one embedding per sparse feature, pairwise dot products
    of all 27 vectors, top MLP to one logit."""

    def __init__(self, table_rows: list[int], dim: int, bottom: tuple = (64, 32), top: tuple = (128, 64)):
        super().__init__()
        self.bottom = mlp([DENSE, *bottom, dim], last_activation=True)
        self.embeddings = nn.ModuleList(nn.EmbeddingBag(rows, dim, mode="sum") for rows in table_rows)
        vectors = len(table_rows) + 1
        left, right = torch.triu_indices(vectors, vectors, offset=1)
        self.register_buffer("left", left.clone(), persistent=False)  # own storage each (for torch.export.save)
        self.register_buffer("right", right.clone(), persistent=False)
        self.top = mlp([dim + vectors * (vectors - 1) // 2, *top, 1], last_activation=False)

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        """dense [B, 13] float, sparse [B, 26] int (one key per feature) -> logits [B]."""
        x = self.bottom(dense)
        vectors = torch.stack([x] + [emb(sparse[:, i:i + 1]) for i, emb in enumerate(self.embeddings)], dim=1)
        dots = torch.bmm(vectors, vectors.transpose(1, 2))[:, self.left, self.right]
        return self.top(torch.cat([x, dots], dim=1)).squeeze(1)


class SyntheticClicks:
    """Zipf-distributed ids per feature and labels from a hidden logistic model, so there is
    something to learn."""

    def __init__(self, table_rows: list[int], seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.rows = table_rows
        self.effects = [self.rng.normal(0, 1.0, n).astype(np.float32) for n in table_rows[:6]]
        self.dense_weights = self.rng.normal(0, 0.5, DENSE).astype(np.float32)

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dense = self.rng.normal(0, 1, (size, DENSE)).astype(np.float32)
        sparse = np.stack([np.minimum(self.rng.zipf(1.2, size) - 1, n - 1) for n in self.rows], axis=1)
        logit = dense @ self.dense_weights + sum(e[sparse[:, i]] for i, e in enumerate(self.effects)) - 0.5
        label = (self.rng.random(size) < 1 / (1 + np.exp(-logit))).astype(np.float32)
        return torch.from_numpy(dense), torch.from_numpy(sparse.astype(np.int64)), torch.from_numpy(label)


def train(model: DLRM, data: SyntheticClicks, steps: int, batch: int) -> tuple[float, float]:
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    losses = []
    model.train()
    for _ in range(steps):
        dense, sparse, label = data.batch(batch)
        loss = loss_fn(model(dense, sparse), label)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    head = float(np.mean(losses[:10]))
    tail = float(np.mean(losses[-10:]))
    return head, tail


def throughput(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], device: torch.device) -> float:
    """Samples per second, inputs arriving on the host, predictions ready on `device`."""
    def run(dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        return model(dense.to(device, non_blocking=True), sparse.to(device, non_blocking=True))

    with torch.inference_mode():
        run(*batches[0])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for dense, sparse in batches:
            run(dense, sparse)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - start
    return sum(len(d) for d, _ in batches) / elapsed


def predictions(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], device: torch.device) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([model(d.to(device), s.to(device)).cpu() for d, s in batches])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="where to serve besides the CPU (auto: the GPU when torch and hps both see one)")
    parser.add_argument("--quick", action="store_true", help="fewer steps and batches: a smoke run")
    parser.add_argument("--steps", type=int, default=300, help="training steps")
    parser.add_argument("--dim", type=int, default=16, help="embedding width")
    parser.add_argument("--batch", type=int, default=4096, help="serving batch size")
    parser.add_argument("--out", help="where to write the tables (default: a temporary folder)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("HPS_PROGRESS", "0")
    steps = min(args.steps, 60) if args.quick else args.steps
    serve_batches = 3 if args.quick else 10

    gpu = torch.cuda.is_available() and hps.cuda_device_count() > 0
    if args.device == "cuda" and not gpu:
        raise SystemExit("--device cuda: torch sees no GPU or hps was built without CUDA "
                         f"(torch.cuda.is_available()={torch.cuda.is_available()}, "
                         f"hps.cuda_device_count()={hps.cuda_device_count()})")
    devices = [torch.device("cpu")] + ([torch.device("cuda", 0)] if gpu and args.device != "cpu" else [])

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    table_rows = sorted(int(n) for n in rng.integers(100, 20_000, SPARSE))
    data = SyntheticClicks(table_rows, args.seed)
    model = DLRM(table_rows, args.dim)
    start = time.perf_counter()
    first_loss, last_loss = train(model, data, steps, batch=512)
    print(f"# DLRM-style model: {DENSE} dense + {SPARSE} sparse features, tables of {table_rows[0]:,} to "
          f"{table_rows[-1]:,} rows (sum {sum(table_rows):,}), D={args.dim}; hps {hps.__version__}, "
          f"torch {torch.__version__}")
    print(f"trained {steps} steps (batch 512) in {time.perf_counter() - start:.1f} s: "
          f"loss {first_loss:.3f} -> {last_loss:.3f}")

    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or tmp
        config = hps.torch.export_tables(model, out, "dlrm", gpucacheper=0.2, deployed_device_list=[0])
        print(f"exported {SPARSE} tables and {config}")
        served = hps.torch.swap_embeddings(copy.deepcopy(model), config)
        kinds = {type(m).__name__ for m in served.embeddings}
        print(f"swapped the embeddings of a copy for {', '.join(sorted(kinds))}")

        batches = [data.batch(args.batch)[:2] for _ in range(serve_batches)]
        print(f"\n{'device':<7} {'embeddings':<36} {'max |diff|':>10} {'samples/s':>12}")
        worst = 0.0
        for device in devices:
            native = copy.deepcopy(model).to(device)  # on the GPU: tables in GPU memory, the roof
            hps_model = served.to(device)             # dense part on `device`, tables in hps
            reference = predictions(native, batches, device)
            got = predictions(hps_model, batches, device)
            diff = float((got - reference).abs().max())
            worst = max(worst, diff)
            where = "GPU memory" if device.type == "cuda" else "CPU memory"
            hps_where = "GPU cache + CPU tier" if device.type == "cuda" and served.embeddings[0].ps.gpu_enabled \
                else "CPU tier"
            print(f"{device.type:<7} {'nn.EmbeddingBag (' + where + ')':<36} {'-':>10} "
                  f"{throughput(native, batches, device):>12,.0f}")
            print(f"{device.type:<7} {'hps.torch (' + hps_where + ')':<36} {diff:>10.1e} "
                  f"{throughput(hps_model, batches, device):>12,.0f}")

        # Deployment: the swapped model as an exported program, the config path baked into it.
        program = torch.export.export(served.cpu(), batches[0])
        path = os.path.join(out, "dlrm.pt2")
        torch.export.save(program, path)
        reloaded = torch.export.load(path).module()
        with torch.inference_mode():
            export_diff = float((reloaded(*batches[0]) - model(*batches[0])).abs().max())
        print(f"\ntorch.export: saved {path}, reloaded, max |diff| {export_diff:.1e}")
        worst = max(worst, export_diff)
    print(f"max prediction difference over all runs: {worst:.1e} ({'OK' if worst <= 1e-6 else 'ABOVE 1e-6'})")
    if worst > 1e-6:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
