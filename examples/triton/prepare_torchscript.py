#!/usr/bin/env python3
"""Prepares dlrm_torch (Triton's PyTorch backend) for the DLRM of examples/dlrm_torch.py.

1. Train the DLRM a few steps; `hps.torch.export_tables` writes its 26 tables and ps.json to
   REPO/dlrm_tables; `hps.torch.swap_embeddings` puts hps layers in place of its embeddings.
2. `torch.jit.trace` the swapped model (the hps op is recorded as torch.ops.hps.lookup, carrying
   the config path) and save it as dlrm_torch/1/model.pt.
3. Load it back and check it predicts as the swapped model does at another batch size.

The program runs in libtorch only when libhps_torch_ops.so (built against Triton's libtorch) is
loaded first: `LD_PRELOAD=.../libhps_torch_ops.so tritonserver ...` (README.md).

Usage: python examples/triton/prepare_torchscript.py [--ps-config-file PATH] [--steps 50]
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import sys

import numpy as np
import torch

import hps.torch
from repository import version_folder  # this folder

HERE = os.path.dirname(os.path.abspath(__file__))


def load_dlrm_example():
    spec = importlib.util.spec_from_file_location("dlrm_torch", os.path.join(HERE, "..", "dlrm_torch.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", default=os.path.join(HERE, "model_repository"))
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--dim", type=int, default=16)
    args = parser.parse_args()
    dlrm = load_dlrm_example()
    torch.manual_seed(0)
    rows = sorted(int(n) for n in np.random.default_rng(0).integers(100, 20_000, dlrm.SPARSE))
    model = dlrm.DLRM(rows, args.dim)
    dlrm.train(model, dlrm.SyntheticClicks(rows, 0), args.steps, batch=512)
    model.eval()
    tables = os.path.join(os.path.abspath(args.repo), "dlrm_tables")
    config = hps.torch.export_tables(model, tables, "dlrm")
    served = hps.torch.swap_embeddings(copy.deepcopy(model), config).eval()

    data = dlrm.SyntheticClicks(rows, 1)
    dense, sparse, _ = data.batch(64)
    with torch.no_grad():
        traced = torch.jit.trace(served, (dense, sparse.int()))
    out = os.path.join(version_folder(os.path.abspath(args.repo), "dlrm_torch"), "model.pt")
    traced.save(out)

    dense, sparse, _ = data.batch(37)
    loaded = torch.jit.load(out)
    with torch.no_grad():
        diff = (loaded(dense, sparse.int()) - served(dense, sparse.int())).abs().max().item()
    print(f"wrote {out} (op backend: {hps.torch.OP_BACKEND}); max |diff| at batch 37: {diff:.2e}")
    return 0 if diff <= 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main())
