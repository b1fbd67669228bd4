"""Where the op library may be: shared by the loader and `python -m hps.tf.build` (which must not
load it)."""

from __future__ import annotations

import os

LIBRARY_NAME = "libhps_tf_ops.so"
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def cache_dir() -> str:
    """Where the build goes when the package folder is not writable: per TensorFlow and hps version."""
    import tensorflow as tf

    import hps
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "hps", f"tf-{tf.__version__}-hps-{hps.__version__}")


def candidate_paths() -> "list[str]":
    """$HPS_TF_OP_LIBRARY, the package folder, the user cache: the order they are tried in."""
    paths = []
    if os.environ.get("HPS_TF_OP_LIBRARY"):
        paths.append(os.environ["HPS_TF_OP_LIBRARY"])
    paths.append(os.path.join(PACKAGE_DIR, LIBRARY_NAME))
    paths.append(os.path.join(cache_dir(), LIBRARY_NAME))
    return paths
