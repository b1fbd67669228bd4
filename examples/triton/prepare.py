#!/usr/bin/env python3
"""Prepares the Triton model repository of this folder for the DLRM of examples/dlrm_torch.py.

1. Train the DLRM-style model a few steps and export it with torch.onnx.export.
2. `hps.onnx.replace_embeddings`: its 26 tables go to REPO/dlrm_tables (table folders + ps.json),
   the graph gets 26 HPS_TRT nodes and int32 keys (as HugeCTR's engines take them).
3. Check the surgered graph in onnxruntime (`hps.onnx.session`) against the torch model.
4. Put the surgered model where the Python backend reads it (dlrm_python/1/model.onnx); with
   TensorRT importable, build dlrm_trt/1/model.plan (build_engine.py), else say how to. A new
   --repo folder gets the models' config.pbtxt (and model.py) from model_repository/.

Usage: python examples/triton/prepare.py [--repo examples/triton/model_repository] [--steps 100]
                                         [--ps-config-file PATH-WHERE-TRITON-RUNS]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import warnings

import numpy as np
import torch

import hps.onnx
from repository import version_folder  # this folder

HERE = os.path.dirname(os.path.abspath(__file__))


def load_dlrm_example():
    spec = importlib.util.spec_from_file_location("dlrm_torch", os.path.join(HERE, "..", "dlrm_torch.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", default=os.path.join(HERE, "model_repository"), help="the model repository")
    parser.add_argument("--steps", type=int, default=100, help="training steps")
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--ps-config-file", help="the config path the HPS_TRT nodes carry (where Triton will read "
                        "it; default: REPO/dlrm_tables/ps.json as an absolute path here)")
    args = parser.parse_args()
    os.environ.setdefault("HPS_PROGRESS", "0")
    dlrm = load_dlrm_example()
    torch.manual_seed(0)
    rows = sorted(int(n) for n in np.random.default_rng(0).integers(100, 20_000, dlrm.SPARSE))
    model = dlrm.DLRM(rows, args.dim)
    data = dlrm.SyntheticClicks(rows, 0)
    dlrm.train(model, data, args.steps, batch=512)
    dense, sparse, _ = data.batch(64)

    repo = os.path.abspath(args.repo)
    work = os.path.join(repo, "dlrm_tables")
    os.makedirs(work, exist_ok=True)
    exported = os.path.join(work, "dlrm.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Input names as HugeCTR's DLRM engines have them.
        torch.onnx.export(model, (dense, sparse), exported, dynamo=False,
                          input_names=["numerical_features", "categorical_features"], output_names=["output"],
                          dynamic_axes={"numerical_features": {0: "batch"}, "categorical_features": {0: "batch"},
                                        "output": {0: "batch"}})
    surgered = os.path.join(work, "dlrm.hps.onnx")
    report = hps.onnx.replace_embeddings(exported, surgered, work, "dlrm", key_dtype="int32",
                                         ps_config_file=args.ps_config_file, gpucacheper=0.5,
                                         deployed_device_list=[0])
    print(report)

    dense, sparse, _ = data.batch(1024)
    with torch.no_grad():
        expected = model(dense, sparse).numpy()
    session = hps.onnx.session(surgered, ps=report.config)
    (got,) = session.run(None, {"numerical_features": dense.numpy(),
                                "categorical_features": sparse.numpy().astype(np.int32)})
    diff = float(np.abs(got - expected).max())
    print(f"onnxruntime with hps vs torch, 1,024 samples: max |diff| {diff:.1e}")
    if diff > 1e-6:
        print("ABOVE 1e-6", file=sys.stderr)
        return 1

    shutil.copyfile(surgered, os.path.join(version_folder(repo, "dlrm_python"), "model.onnx"))
    plan = os.path.join(version_folder(repo, "dlrm_trt"), "model.plan")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        print(f"TensorRT is not importable here: build the engine where it is, with\n"
              f"  python {os.path.join(HERE, 'build_engine.py')} {surgered} {plan}")
        return 0
    from build_engine import build_engine  # noqa: E402 (this folder)

    build_engine(surgered, plan)
    print(f"wrote {plan}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    sys.exit(main())
