#!/usr/bin/env python3
"""Builds a TensorRT engine from a surgered ONNX model whose HPS_TRT nodes run through hps'
TensorRT plugin (libhps_trt_plugin.so, `python -m hps.sysconfig --trt-plugin`).

Usage: python build_engine.py MODEL.hps.onnx OUT.plan [--fp16] [--max-batch 131072]

Needs TensorRT (10 or later, IPluginV3) with its Python bindings, a GPU, and an hps built where
TensorRT's headers were found. Loading the plugin library with RTLD_GLOBAL registers HPS_TRT with
TensorRT's plugin registry; the ONNX parser then imports each HPS_TRT node as that plugin.
"""

from __future__ import annotations

import argparse
import ctypes
import sys


def build_engine(onnx_path: str, plan_path: str, *, fp16: bool = False, max_batch: int = 131072,
                 opt_batch: int = 1024) -> None:
    import tensorrt as trt

    import hps.sysconfig

    ctypes.CDLL(hps.sysconfig.get_trt_plugin(), mode=ctypes.RTLD_GLOBAL)  # registers HPS_TRT on load
    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch (the only mode of TensorRT 10)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(onnx_path):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{onnx_path}: the ONNX parser failed:\n{errors}")
    config = builder.create_builder_config()
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)  # dense layers only: HPS_TRT gives float32 unless asked
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        rest = tuple(tensor.shape)[1:]
        profile.set_shape(tensor.name, (1, *rest), (opt_batch, *rest), (max_batch, *rest))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT could not build the engine (see the log above)")
    with open(plan_path, "wb") as f:
        f.write(serialized)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("onnx")
    parser.add_argument("plan")
    parser.add_argument("--fp16", action="store_true")
    parser.add_argument("--max-batch", type=int, default=131072)
    args = parser.parse_args()
    build_engine(args.onnx, args.plan, fp16=args.fp16, max_batch=args.max_batch)
    print(f"wrote {args.plan}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
