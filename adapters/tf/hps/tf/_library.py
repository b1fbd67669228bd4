"""Finds and loads the op library (libhps_tf_ops.so), which registers the op HpsLookup.

It is looked for, in order, at $HPS_TF_OP_LIBRARY, next to this file (built with the wheel when
TensorFlow was installed first), and in the user cache where `python -m hps.tf.build` puts it when
the package folder is read-only. A SavedModel using the op loads only after this module ran, which
`import hps.tf` ensures.
"""

from __future__ import annotations

import ctypes
import os

import tensorflow as tf

import hps

from ._paths import ENV_VAR, candidate_paths

__all__ = ["ops", "library_path", "OpLibraryError", "resolve_config", "map_config", "clear_config_map"]


class OpLibraryError(hps.HpsError, ImportError):
    """The op library is missing or does not fit the installed TensorFlow or hps."""


_HOW_TO_BUILD = ("build it against the TensorFlow and hps installed here with `python -m hps.tf.build` "
                 "(about 15 s), or reinstall hps after TensorFlow")


def _load():
    tried = []
    for path in candidate_paths():
        if not os.path.isfile(path):
            tried.append(f"{path} (absent)")
            continue
        try:
            module = tf.load_op_library(path)
        except (tf.errors.NotFoundError, OSError) as e:
            # Typically undefined symbols: built against another TensorFlow or another libhps_core.
            raise OpLibraryError(f"the hps TensorFlow op library {path} does not load with TensorFlow "
                                 f"{tf.__version__}: {e}. Rebuild it: {_HOW_TO_BUILD}") from e
        return module, path
    named = os.environ.get(ENV_VAR)
    if named:
        # Only that file was looked at: the library installed with hps may be there all along.
        raise OpLibraryError(f"{ENV_VAR}={named} names a file that does not exist: fix the path, or unset {ENV_VAR} "
                             f"to load the op library installed with hps (or built by `python -m hps.tf.build`)")
    raise OpLibraryError(f"hps.tf needs its op library, which is not built for TensorFlow {tf.__version__} "
                         f"(TensorFlow was probably installed after hps). Looked at: {'; '.join(tried)}. "
                         f"To fix: {_HOW_TO_BUILD}")


ops, library_path = _load()

# The same library through ctypes, for the config mapping the kernels read (dlopen returns the
# handle tf.load_op_library opened, so both see one map).
_c = ctypes.CDLL(library_path)
_c.hps_tf_map_config.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
_c.hps_tf_map_config.restype = None
_c.hps_tf_clear_config_map.argtypes = []
_c.hps_tf_clear_config_map.restype = None
_c.hps_tf_resolve_config.argtypes = [ctypes.c_char_p]
_c.hps_tf_resolve_config.restype = ctypes.c_char_p


def map_config(old: str, new) -> None:
    _c.hps_tf_map_config(os.fsencode(old), None if new is None else os.fsencode(new))


def clear_config_map() -> None:
    _c.hps_tf_clear_config_map()


def resolve_config(config: str) -> str:
    return os.fsdecode(_c.hps_tf_resolve_config(os.fsencode(config)))
