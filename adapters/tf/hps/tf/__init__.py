"""hps.tf: TensorFlow ops and Keras layers served by hps (HugeCTR's `hierarchical_parameter_server`).

    import hps.tf
    layer = hps.tf.LookupLayer("dlrm", 0, 128, ps_config_file="ps.json")
    rows = layer(ids)                                   # ids [...] -> rows [..., 128]

- `LookupLayer` (like tf.nn.embedding_lookup) and `SparseLookupLayer` (like
  tf.nn.embedding_lookup_sparse), with HugeCTR's constructor signature; `Init` as in HugeCTR;
- `lookup`, over the custom op HpsLookup (CPU kernel, and a GPU kernel on TensorFlow's stream);
- `export_tables` and `swap_embeddings`: move a Keras model's Embedding layers into hps;
- `set_config_path`: re-point a saved model's config path before it runs;
- `get_server` and `clear_servers`: the one hps.HPS per config that layers share.

Importing this module imports TensorFlow and loads the op library (which a SavedModel using the op
needs before it loads). `import hps` alone never imports TensorFlow. Inference only.
"""

from __future__ import annotations

import sys as _sys

try:
    import tensorflow as _tf  # noqa: F401
except ImportError as _e:
    raise ImportError("hps.tf needs TensorFlow 2.16 or later, which is not installed: pip install tensorflow-cpu "
                      "(or tensorflow), then python -m hps.tf.build to build hps.tf's op library against it") from _e

try:
    from . import _library  # noqa: F401  (loads the op library first: a clear error if it is missing)
except ImportError:
    # `python -m hps.tf.build` imports this package before running the builder; Python documents
    # sys.argv[0] as "-m" while it locates the module. Only then is a missing library no error here.
    if not (_sys.argv and _sys.argv[0] == "-m"):
        raise
else:
    from ._library import OpLibraryError
    from ._op import InferenceOnlyError, lookup
    from ._servers import clear_servers, set_config_path
    from ._servers import config_string as _config_string
    from ._servers import server as _server
    from .init import Init
    from .layers import LookupLayer, SparseLookupLayer
    from .migration import export_tables, swap_embeddings, table_names


def get_server(ps_config_file):
    """The shared hps.HPS that layers built on `ps_config_file` use (to call update, erase, stats)."""
    return _server(_config_string(ps_config_file))


__all__ = [
    "Init",
    "LookupLayer",
    "SparseLookupLayer",
    "lookup",
    "export_tables",
    "swap_embeddings",
    "table_names",
    "set_config_path",
    "get_server",
    "clear_servers",
    "InferenceOnlyError",
    "OpLibraryError",
]
