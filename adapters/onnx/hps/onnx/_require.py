"""The packages hps.onnx needs, checked at import with a message that names what is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

# import name -> (pip name, pinned version the tests run with)
PACKAGES = {
    "onnx": ("onnx", "1.23.2"),
    "onnx_graphsurgeon": ("onnx-graphsurgeon", "0.6.1"),
    "onnxruntime": ("onnxruntime", "1.32.0"),
    "onnxruntime_extensions": ("onnxruntime-extensions", "0.15.2"),
}


def require(name: str, purpose: str) -> ModuleType:
    """Imports `name`, or raises ImportError naming the pip package and what it is needed for."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        pip_name, version = PACKAGES[name]
        raise ImportError(
            f"hps.onnx needs the package {pip_name!r} for {purpose}, and it could not be imported ({error}); "
            f"install it with `pip install {pip_name}=={version}` or `pip install hps[onnx]`") from error
