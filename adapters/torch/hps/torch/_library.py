"""Finds and loads the C++ op library (libhps_torch_ops.so), which defines torch.ops.hps.lookup and
torch.ops.hps_torch.hps_embedding_lookup for programs that run without Python.

Looked for at $HPS_TORCH_OP_LIBRARY, next to this file (built with the wheel when torch was
installed first), then in the user cache (`python -m hps.torch.build` when the package folder is
read-only). It is loaded only when built against the running torch (the version recorded beside it);
otherwise hps.torch uses its Python op and prints one line saying how to build the library.
HPS_TORCH_OP=python forces the Python op. Nothing here imports hps.torch's other modules.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Optional

import torch

LIBRARY_NAME = "libhps_torch_ops.so"
VERSION_SUFFIX = ".torch_version"  # "libhps_torch_ops.torch_version": the torch it was built for
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

__all__ = ["library_path", "release_servers", "cache_dir", "candidate_paths", "version_file"]


def cache_dir() -> str:
    import hps
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "hps", f"torch-{torch.__version__}-hps-{hps.__version__}")


def version_file(library: str) -> str:
    return os.path.join(os.path.dirname(library), "libhps_torch_ops" + VERSION_SUFFIX)


def candidate_paths() -> "list[str]":
    if os.environ.get("HPS_TORCH_OP_LIBRARY"):
        return [os.environ["HPS_TORCH_OP_LIBRARY"]]
    return [os.path.join(PACKAGE_DIR, LIBRARY_NAME), os.path.join(cache_dir(), LIBRARY_NAME)]


def _built_for(path: str) -> Optional[str]:
    try:
        with open(version_file(path)) as f:
            return f.read().strip()
    except OSError:
        return None


def _notice(why: str) -> None:
    print(f"hps.torch: using the Python op ({why}); models then need Python to run. "
          f"Build the C++ op with `python -m hps.torch.build`", file=sys.stderr)


def _load() -> Optional[str]:
    if os.environ.get("HPS_TORCH_OP", "").lower() == "python":
        return None
    for path in candidate_paths():
        if not os.path.isfile(path):
            continue
        built_for = _built_for(path)
        if built_for != torch.__version__:
            _notice(f"{path} was built for torch {built_for or 'an unknown version'}, this is {torch.__version__}")
            return None
        try:
            torch.ops.load_library(path)
        except (OSError, RuntimeError) as e:
            _notice(f"{path} does not load: {e}")
            return None
        return path
    _notice(f"no op library built for torch {torch.__version__}")
    return None


library_path: Optional[str] = _load()


def release_servers() -> None:
    """Drops the C++ ops' references to their servers (hps.torch.clear_servers)."""
    if library_path is not None:
        ctypes.CDLL(library_path).hps_torch_release_servers()
