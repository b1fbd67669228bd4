"""hps.torch: embedding layers for PyTorch served by hps, over one custom op.

    import hps.torch
    layer = hps.torch.LookupLayer("ps.json", "dlrm", 0, 128)     # HugeCTR hps_torch's signature
    rows = layer(keys)                                           # [..., 128] on the keys' device

- `LookupLayer` (like nn.Embedding) and `SparseLookupLayer` (like nn.EmbeddingBag, sum/mean/max);
- `MultiTableLookup`: several tables of equal row width in one call (`torch.ops.hps.lookup_tables`);
- `torch.ops.hps.lookup`, the op both use: works under torch.compile(fullgraph=True) and
  torch.export (import hps.torch before torch.export.load);
- `export_tables` and `swap_embeddings`: move a trained model's embeddings into hps;
- `get_server` and `clear_servers`: the one hps.HPS per config that all layers on it share.

Inference only. Importing this module imports torch; `import hps` alone never does.
"""

from __future__ import annotations

try:
    import torch as _torch  # noqa: F401
except ModuleNotFoundError as _e:
    if _e.name != "torch":
        raise
    # A bare "No module named 'torch'" does not say hps.torch is an optional part.
    raise ModuleNotFoundError("hps.torch needs PyTorch 2.4 or later, which is not installed: pip install torch "
                              "(or pip install 'hps[torch]'); CPU-only wheels: pip install torch --index-url "
                              "https://download.pytorch.org/whl/cpu", name="torch") from None

from . import _arrays  # noqa: F401  (registers the adapter hps.HPS uses for torch tensors)
from ._op import BACKEND as OP_BACKEND
from ._op import lookup, lookup_tables
from ._registry import clear_servers, get_server
from .layers import InferenceOnlyError, LookupLayer, MultiTableLookup, SparseLookupLayer
from .migration import export_tables, swap_embeddings, table_names

__all__ = [
    "LookupLayer",
    "SparseLookupLayer",
    "MultiTableLookup",
    "InferenceOnlyError",
    "lookup",
    "lookup_tables",
    "OP_BACKEND",
    "export_tables",
    "swap_embeddings",
    "table_names",
    "get_server",
    "clear_servers",
]
