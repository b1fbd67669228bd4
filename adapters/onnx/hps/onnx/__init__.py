"""hps.onnx: ONNX models served by hps.

- `replace_embeddings` (and `hps onnx-surgery`): finds the embedding lookups of an ONNX graph (a
  `Gather` on an initializer, alone, before a reduce, or inside the `Loop` that `torch.onnx.export`
  makes of an `nn.EmbeddingBag`), writes the tables as HugeCTR table folders plus an hps config,
  and replaces each lookup with an `HPS_TRT` node: what HugeCTR's TensorRT plugin runs, and what
  hps' own TensorRT plugin (adapters/tensorrt) runs.
- `session`: an onnxruntime InferenceSession in which `HPS_TRT` nodes look rows up through hps.

Needs onnx and onnx-graphsurgeon (surgery) and onnxruntime with onnxruntime-extensions (session):
`pip install hps[onnx]`. `import hps` never imports them; `import hps.onnx` does, and names any
that is missing.
"""

from __future__ import annotations

from ._require import require as _require

_require("onnx", "reading and writing ONNX models")
_require("onnx_graphsurgeon", "the graph surgery")

from .nodes import HPS_DOMAIN, HPS_OP, PLUGIN_FIELDS, PLUGIN_VERSION  # noqa: E402
from .report import Lookup, Skipped, SurgeryReport  # noqa: E402
from .runtime import session  # noqa: E402
from .surgery import replace_embeddings  # noqa: E402

__all__ = ["replace_embeddings", "session", "SurgeryReport", "Lookup", "Skipped", "HPS_OP", "HPS_DOMAIN",
           "PLUGIN_VERSION", "PLUGIN_FIELDS"]
