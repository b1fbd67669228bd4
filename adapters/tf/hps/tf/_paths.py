"""Where the op library may be: shared by the loader and `python -m hps.tf.build` (which must not
load it)."""

from __future__ import annotations

import os

LIBRARY_NAME = "libhps_tf_ops.so"
ENV_VAR = "HPS_TF_OP_LIBRARY"  # names the one file to load
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def cache_dir() -> str:
    """Where the build goes when the package folder is not writable: per TensorFlow and hps version."""
    import tensorflow as tf

    import hps
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "hps", f"tf-{tf.__version__}-hps-{hps.__version__}")


def candidate_paths() -> "list[str]":
    """Where to look: $HPS_TF_OP_LIBRARY alone when set, else the package folder, then the user cache."""
    if os.environ.get(ENV_VAR):
        return [os.environ[ENV_VAR]]
    paths = []
    paths.append(os.path.join(PACKAGE_DIR, LIBRARY_NAME))
    paths.append(os.path.join(cache_dir(), LIBRARY_NAME))
    return paths
