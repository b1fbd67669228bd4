"""Builds the op library against the TensorFlow and hps installed in this environment.

    python -m hps.tf.build [--output PATH] [--no-gpu-kernel] [--verbose]

Needed when TensorFlow was installed after hps (the wheel builds the library only when it finds
TensorFlow at build time) or after upgrading TensorFlow. It compiles the sources shipped in
hps/tf/cc with g++ (or $CXX), TensorFlow's `tf.sysconfig` flags and hps's `hps.sysconfig` flags,
and writes libhps_tf_ops.so next to this file, or into the user cache when this folder is
read-only (`import hps.tf` looks in both). Takes 10-20 s.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys

from hps._op_build import compile_into, compiler, run_command_line

from ._paths import LIBRARY_NAME, cache_dir
from ._paths import PACKAGE_DIR as HERE

SOURCES = ("lookup_op.cc", "lookup_kernel.cc", "lookup_kernel_gpu.cc", "served_table.cc", "config_map.cc")


def _sysconfig(flag: str) -> "list[str]":
    out = subprocess.run([sys.executable, "-m", "hps.sysconfig", flag], check=True, capture_output=True, text=True)
    return shlex.split(out.stdout.strip())


def tf_flags() -> "tuple[list[str], list[str]]":
    import tensorflow as tf
    return list(tf.sysconfig.get_compile_flags()), list(tf.sysconfig.get_link_flags())


def has_stream_executor(compile_flags: "list[str]") -> bool:
    """Whether TensorFlow's headers have the StreamExecutor API the GPU kernel uses."""
    for flag in compile_flags:
        if flag.startswith("-I") and os.path.isfile(os.path.join(flag[2:], "xla", "stream_executor", "device_address.h")):
            return True
    return False


def command(output: str, gpu_kernel: bool = True, source_dir: str = "") -> "list[str]":
    source_dir = source_dir or os.path.join(HERE, "cc")
    tf_compile, tf_link = tf_flags()
    hps_includes, hps_libs = _sysconfig("--includes"), _sysconfig("--libs")
    rpaths = [f"-Wl,-rpath,{flag[2:]}" for flag in hps_libs if flag.startswith("-L")]
    defines = ["-DHPS_TF_GPU"] if gpu_kernel and has_stream_executor(tf_compile) else []
    return [compiler(), "-std=c++17", "-shared", "-fPIC", "-O2", "-fvisibility=hidden", "-Wno-deprecated-declarations",
            *defines, *[os.path.join(source_dir, s) for s in SOURCES], "-o", output, *hps_includes, *tf_compile,
            *tf_link, *hps_libs, *rpaths, "-Wl,--no-undefined"]


def default_output() -> str:
    if os.access(HERE, os.W_OK):
        return os.path.join(HERE, LIBRARY_NAME)
    return os.path.join(cache_dir(), LIBRARY_NAME)


def build(output: str = "", gpu_kernel: bool = True, verbose: bool = False) -> str:
    """Compiles the op library; returns its path."""
    return compile_into(output or default_output(), lambda tmp: command(tmp, gpu_kernel), verbose)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hps.tf.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="", help=f"where to write the library (default: {default_output()})")
    parser.add_argument("--no-gpu-kernel", action="store_true", help="leave out the GPU kernel")
    return run_command_line(parser, lambda args: build(args.output, not args.no_gpu_kernel, args.verbose), argv)


if __name__ == "__main__":
    sys.exit(main())
