"""nn.Modules over `torch.ops.hps.lookup`: LookupLayer (like nn.Embedding) and SparseLookupLayer
(like nn.EmbeddingBag). Inference only: the rows live in the parameter server, not in the module.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

import hps

from . import _op, _registry  # noqa: F401  (_op registers torch.ops.hps.lookup)
from ._registry import ServerSource

__all__ = ["LookupLayer", "SparseLookupLayer", "MultiTableLookup", "InferenceOnlyError"]

COMBINERS = ("sum", "mean", "max")


class InferenceOnlyError(hps.HpsError, RuntimeError):
    """A gradient was asked of an hps layer, which serves rows for inference only."""


_INFERENCE_ONLY = ("hps layers are inference-only: their rows live in the parameter server and get no gradient. "
                   "Train with nn.Embedding / nn.EmbeddingBag, then hps.torch.export_tables and swap_embeddings")


class _ServedTable(nn.Module):
    """What both layers share: the server id, the resolved table and the output dtype."""

    __jit_unused_properties__ = ["ps", "dtype"]

    def __init__(self, ps_config_file: ServerSource, model_name: str, table_id: Union[int, str], emb_vec_size: int,
                 dtype: torch.dtype):
        super().__init__()
        if not isinstance(model_name, str):
            raise TypeError(f"model_name must be a str, got {type(model_name).__name__}")
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
        self.server_id: str = _registry.register(ps_config_file)
        served = _registry.get(self.server_id)
        self.model_name: str = model_name
        self.table_id: int = served.table_index(model_name, table_id, emb_vec_size)
        self.table_name: str = served.model(model_name).names[self.table_id]
        self.emb_vec_size: int = int(emb_vec_size)
        # An empty buffer carries the output dtype, so that model.half() / model.to(dtype) convert
        # the layer's output as they convert an nn.Embedding's weight.
        self.register_buffer("_out", torch.empty(0, dtype=dtype), persistent=False)

    @property
    def dtype(self) -> torch.dtype:
        """The output dtype (rows are stored and looked up as float32)."""
        return self._out.dtype

    @property
    def ps(self) -> hps.HPS:
        """The shared hps.HPS serving this layer."""
        return _registry.get(self.server_id).ps

    def requires_grad_(self, requires_grad: bool = True) -> "_ServedTable":
        if requires_grad:
            raise InferenceOnlyError(_INFERENCE_ONLY)
        return self

    def _lookup(self, keys: torch.Tensor) -> torch.Tensor:
        return torch.ops.hps.lookup(keys, self.server_id, self.model_name, self.table_id, self.emb_vec_size)

    def _cast(self, rows: torch.Tensor) -> torch.Tensor:
        return rows if rows.dtype == self._out.dtype else rows.to(self._out.dtype)

    def extra_repr(self) -> str:
        text = f"{self.server_id!r}, model={self.model_name!r}, table={self.table_name!r} ({self.table_id}), " \
               f"emb_vec_size={self.emb_vec_size}"
        return text if self.dtype == torch.float32 else f"{text}, dtype={self.dtype}"


class LookupLayer(_ServedTable):
    """Rows of one table for keys of any shape, like `nn.Embedding` (HugeCTR hps_torch's signature).

    Args:
        ps_config_file: the parameter server: a config file path (the portable choice: exported
            programs then load in other processes), or a dict, an `hps.Config` or an `hps.HPS`.
            Layers on the same config share one server per process.
        model_name: a model of the config.
        table_id: the table's index in the model, or its name (`embedding_table_names`).
        emb_vec_size: floats per row; must equal the table's `embedding_vecsize_per_table`.
        dtype: the output dtype (rows are stored and looked up as float32, then cast); it follows
            `model.half()` and `model.to(dtype)` like an nn.Embedding's weight.

    `forward(keys)`: int32 or int64 keys of any shape on the CPU or on a CUDA device listed in the
    model's `deployed_device_list` give `[*keys.shape, emb_vec_size]` rows on the keys' device,
    computed on the current CUDA stream. Keys stored nowhere get the table's default row.
    """

    def __init__(self, ps_config_file: ServerSource, model_name: str, table_id: Union[int, str], emb_vec_size: int,
                 *, dtype: torch.dtype = torch.float32):
        super().__init__(ps_config_file, model_name, table_id, emb_vec_size, dtype)

    def forward(self, keys: torch.Tensor) -> torch.Tensor:
        return self._cast(self._lookup(keys))


class SparseLookupLayer(_ServedTable):
    """Pooled rows of bags of keys, like `nn.EmbeddingBag` (and HugeCTR's TF SparseLookupLayer).

    Args: as LookupLayer, plus
        combiner: "sum", "mean" (the default, as in both HugeCTR and EmbeddingBag) or "max".
        padding_key: a key that marks padding: it is left out of every bag (and of the count of
            a mean); a bag of padding only gives zeros. EmbeddingBag's `padding_idx`.
        include_last_offset: as in EmbeddingBag: `offsets` has one entry per bag plus the end.

    `forward(keys, offsets=None, per_sample_weights=None)` takes the bags as EmbeddingBag does:
    a 1-D `keys` with 1-D `offsets` (bag i is keys[offsets[i]:offsets[i+1]]), or a 2-D `keys`
    `[bags, n]` (one bag per row, usually padded with `padding_key`) with `offsets=None`.
    `per_sample_weights` (same shape as keys) scale the rows of a "sum". Empty bags give zeros.
    The result is `[bags, emb_vec_size]`; it equals `nn.EmbeddingBag` over the same rows.
    """

    def __init__(self, ps_config_file: ServerSource, model_name: str, table_id: Union[int, str], emb_vec_size: int,
                 combiner: str = "mean", *, padding_key: Optional[int] = None, include_last_offset: bool = False,
                 dtype: torch.dtype = torch.float32):
        super().__init__(ps_config_file, model_name, table_id, emb_vec_size, dtype)
        if combiner not in COMBINERS:
            raise ValueError(f"combiner must be one of {', '.join(COMBINERS)}, got {combiner!r}")
        if padding_key is not None and (isinstance(padding_key, bool) or not isinstance(padding_key, int)):
            raise TypeError(f"padding_key must be an int or None, got {padding_key!r}")
        self.combiner: str = combiner
        self.padding_key: Optional[int] = padding_key
        self.include_last_offset: bool = bool(include_last_offset)

    def forward(self, keys: torch.Tensor, offsets: Optional[torch.Tensor] = None,
                per_sample_weights: Optional[torch.Tensor] = None) -> torch.Tensor:
        if keys.dim() == 2:
            if offsets is not None:
                raise ValueError("offsets must be None when keys is 2-D (each row is one bag)")
        elif keys.dim() == 1:
            if offsets is None or offsets.dim() != 1:
                raise ValueError("a 1-D keys tensor needs 1-D offsets (the start of each bag)")
        else:
            raise ValueError(f"keys must be 1-D (with offsets) or 2-D (one bag per row), got {keys.dim()}-D")
        if per_sample_weights is not None and self.combiner != "sum":
            # Quotes rather than !r: TorchScript compiles forward and refuses f-string conversions.
            raise ValueError(f"per_sample_weights need combiner='sum' (as in EmbeddingBag), not '{self.combiner}'")
        rows = self._lookup(keys)
        if keys.dim() == 2 and keys.shape[1] == 1 and self.padding_key is None and per_sample_weights is None:
            pooled = rows.view(keys.shape[0], self.emb_vec_size)  # bags of one key: the rows themselves
        else:
            pooled = self._pool(keys, rows, offsets, per_sample_weights)
        return self._cast(pooled)

    def _pool(self, keys: torch.Tensor, rows: torch.Tensor, offsets: Optional[torch.Tensor],
              per_sample_weights: Optional[torch.Tensor]) -> torch.Tensor:
        # EmbeddingBag's own kernel pools the looked-up rows: entry j of the bags points at row j.
        # Padding is masked out of the rows rather than named by EmbeddingBag's padding_idx, whose
        # bounds check would fix the batch size in compiled and exported graphs.
        n = keys.numel()
        table = rows.reshape(n, self.emb_vec_size)
        index = torch.arange(n, device=keys.device).view(keys.shape)
        if offsets is not None:
            offsets = offsets.to(torch.int64)
        if self.padding_key is None:
            return F.embedding_bag(index, table, offsets, mode=self.combiner, per_sample_weights=per_sample_weights,
                                   include_last_offset=self.include_last_offset)
        keep = (keys != self.padding_key).reshape(n, 1)
        mode = "max" if self.combiner == "max" else "sum"
        table = table.masked_fill(~keep, float("-inf") if mode == "max" else 0.0)
        pooled = F.embedding_bag(index, table, offsets, mode=mode, per_sample_weights=per_sample_weights,
                                 include_last_offset=self.include_last_offset)
        if self.combiner == "sum":
            return pooled
        counts = F.embedding_bag(index, keep.to(table.dtype), offsets, mode="sum",
                                 include_last_offset=self.include_last_offset)  # [bags, 1] keys that are not padding
        if self.combiner == "mean":
            return pooled / counts.clamp(min=1.0)
        return pooled.masked_fill(counts == 0, 0.0)  # a bag of padding only: zeros, as EmbeddingBag gives

    def extra_repr(self) -> str:
        text = f"{super().extra_repr()}, combiner={self.combiner!r}"
        if self.padding_key is not None:
            text += f", padding_key={self.padding_key}"
        if self.include_last_offset:
            text += ", include_last_offset=True"
        return text


class MultiTableLookup(nn.Module):
    """Rows of several tables of one model with equal row width, in one call.

    `forward(keys)`: keys `[T, ...]`, row t holding the keys of `table_ids[t]`, give rows
    `[T, ..., emb_vec_size]`. The tables are looked up side by side (`torch.ops.hps.lookup_tables`),
    so a model with many tables pays about one lookup's latency instead of one per table. Equal to
    stacking `LookupLayer(…, table_ids[t], …)(keys[t])` over t.
    """

    def __init__(self, ps_config_file: ServerSource, model_name: str, table_ids: "list[Union[int, str]]",
                 emb_vec_size: int, *, dtype: torch.dtype = torch.float32):
        super().__init__()
        if not isinstance(model_name, str):
            raise TypeError(f"model_name must be a str, got {type(model_name).__name__}")
        if not table_ids:
            raise ValueError("table_ids must name at least one table")
        self.server_id: str = _registry.register(ps_config_file)
        served = _registry.get(self.server_id)
        self.model_name: str = model_name
        self.table_ids: list[int] = [served.table_index(model_name, t, emb_vec_size) for t in table_ids]
        self.emb_vec_size: int = int(emb_vec_size)
        self.register_buffer("_out", torch.empty(0, dtype=dtype), persistent=False)

    def requires_grad_(self, requires_grad: bool = True) -> "MultiTableLookup":
        if requires_grad:
            raise InferenceOnlyError(_INFERENCE_ONLY)
        return self

    def forward(self, keys: torch.Tensor) -> torch.Tensor:
        rows = torch.ops.hps.lookup_tables(keys, self.server_id, self.model_name, self.table_ids, self.emb_vec_size)
        return rows if rows.dtype == self._out.dtype else rows.to(self._out.dtype)

    def extra_repr(self) -> str:
        return f"{self.server_id!r}, model={self.model_name!r}, tables={self.table_ids}, " \
               f"emb_vec_size={self.emb_vec_size}"
