"""Builds the C++ op library against the torch and hps installed in this environment.

    python -m hps.torch.build [--output PATH] [--verbose]

Needed when torch was installed (or upgraded) after hps: the wheel builds the library only when
it finds torch at build time, and `import hps.torch` loads it only under the torch it was built
for. Compiles hps/torch/csrc with g++ (or $CXX), torch's flags (`_flags`) and hps.sysconfig's,
writes libhps_torch_ops.so and the torch version beside it, next to this file or, when this folder
is read-only, into the user cache (`import hps.torch` looks in both). Takes about a minute.
"""

from __future__ import annotations

import argparse
import os
import sys

from hps._op_build import compile_into, compiler, run_command_line

from ._flags import torch_flags

HERE = os.path.dirname(os.path.abspath(__file__))
LIBRARY_NAME = "libhps_torch_ops.so"
SOURCES = ("servers.cc", "lookup.cc")


def command(output: str, source_dir: str = "") -> "list[str]":
    import hps.sysconfig as sc
    source_dir = source_dir or os.path.join(HERE, "csrc")
    torch_compile, torch_link, _, _ = torch_flags()
    return [compiler(), "-std=c++17", "-shared", "-fPIC", "-O2", "-fvisibility=hidden", "-Wno-deprecated-declarations",
            *[os.path.join(source_dir, s) for s in SOURCES], "-o", output, *sc.get_compile_flags(), *torch_compile,
            *torch_link, *sc.get_link_flags(), "-Wl,--no-undefined"]


def default_output() -> str:
    if os.access(HERE, os.W_OK):
        return os.path.join(HERE, LIBRARY_NAME)
    import torch

    import hps
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "hps", f"torch-{torch.__version__}-hps-{hps.__version__}", LIBRARY_NAME)


def build(output: str = "", verbose: bool = False) -> str:
    """Compiles the op library and records the torch version beside it; returns its path."""
    import torch
    output = compile_into(output or default_output(), command, verbose)
    with open(os.path.join(os.path.dirname(output), "libhps_torch_ops.torch_version"), "w") as f:
        f.write(torch.__version__ + "\n")
    return output


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hps.torch.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="", help="where to write the library (default: next to hps.torch)")
    return run_command_line(parser, lambda args: build(args.output, args.verbose), argv)


if __name__ == "__main__":
    sys.exit(main())
