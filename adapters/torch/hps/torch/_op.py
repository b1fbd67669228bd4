"""The custom op `torch.ops.hps.lookup`: every hps layer's lookup goes through it.

    torch.ops.hps.lookup(Tensor keys, str server, str model, int table, int emb_vec_size) -> Tensor

`keys` are int32 or int64 of any shape, on the CPU or on a CUDA device in the model's
`deployed_device_list`; the result is float32 `[*keys.shape, emb_vec_size]` on the keys' device,
written on the current CUDA stream. `server` is a server id (see `_registry`): the absolute path of
a config file, or a process-local id. `table` is the table's index in the model.

The op is defined in C++ when the op library loads (`_library`: then TorchScript, AOTInductor and
Triton run it without Python, and `torch.ops.hps_torch.hps_embedding_lookup`, HugeCTR's name, is
defined too), else here with `torch.library.custom_op`. Either way it has a fake (meta)
implementation registered here, so it
works under `torch.compile(fullgraph=True)` and `torch.export` (a fresh process must `import
hps.torch` before `torch.export.load`, which registers the op). It has no autograd formula: its
only tensor input holds integers, so nothing upstream of it can ask for a gradient, and its
result never requires one (the layers refuse `requires_grad_(True)`).
"""

from __future__ import annotations

import inspect

import torch

from hps import KeyTypeError  # the same error hps.HPS.lookup raises for non-integer keys

from . import _library, _registry

__all__ = ["lookup", "lookup_tables", "check_keys", "BACKEND"]

KEY_DTYPES = (torch.int32, torch.int64)

# The lookup synchronises with the host when keys miss the GPU cache, so it must never be captured
# into a CUDA graph (torch.compile(mode="reduce-overhead") keeps it out of its graphs).
_options = {}
if "tags" in inspect.signature(torch.library.custom_op).parameters and hasattr(torch.Tag, "cudagraph_unsafe"):
    _options["tags"] = (torch.Tag.cudagraph_unsafe,)


def check_keys(keys: torch.Tensor) -> None:
    """Refuses keys the op cannot take, with the reason (also at trace time, on fake tensors)."""
    if keys.dtype not in KEY_DTYPES:
        raise KeyTypeError(f"hps lookup keys must be an int32 or int64 tensor, got {keys.dtype}")
    if keys.device.type not in ("cpu", "cuda", "meta"):
        raise ValueError(f"hps lookup keys must be on the CPU or a CUDA device, got {keys.device}")


# `int`, not the inferred SymInt: the table and row width are constants of a layer, never symbolic.
SCHEMA = "(Tensor keys, str server, str model, int table, int emb_vec_size) -> Tensor"


def _lookup_python(keys: torch.Tensor, server: str, model: str, table: int, emb_vec_size: int) -> torch.Tensor:
    check_keys(keys)
    served = _registry.get(server)
    served.table_index(model, table, emb_vec_size)
    out = torch.empty((*keys.shape, emb_vec_size), dtype=torch.float32, device=keys.device)
    if keys.device.type == "cuda":
        # HugeCTR's plugin served device 0 only; here any listed device works, others are refused
        # (also when the model has no GPU cache and the lookup goes through the host).
        served.check_device(model, keys.device.index)
        served.ps.lookup(model, table, keys, out=out)  # on torch.cuda.current_stream(keys.device)
    else:
        served.ps.lookup(model, table, keys.numpy(), out=out.numpy())
    return out


def _lookup_fake(keys: torch.Tensor, server: str, model: str, table: int, emb_vec_size: int) -> torch.Tensor:
    check_keys(keys)
    if emb_vec_size <= 0:
        raise ValueError(f"emb_vec_size must be positive, got {emb_vec_size}")
    return keys.new_empty((*keys.shape, emb_vec_size), dtype=torch.float32)


# Which implementation serves the op in this process: "cpp" (the op library) or "python".
BACKEND = "cpp" if _library.library_path is not None else "python"

if BACKEND == "cpp":
    lookup = torch.ops.hps.lookup
    torch.library.register_fake("hps::lookup")(_lookup_fake)
    torch.library.register_fake("hps_torch::hps_embedding_lookup")(_lookup_fake)
else:
    lookup = torch.library.custom_op("hps::lookup", mutates_args=(), schema=SCHEMA, **_options)(_lookup_python)
    lookup.register_fake(_lookup_fake)

    # HugeCTR's op name, for its users' code that calls it directly (the C++ library defines it too).
    @torch.library.custom_op("hps_torch::hps_embedding_lookup", mutates_args=(), **_options,
                             schema="(Tensor input, str ps_config_file, str model_name, int table_id, "
                                    "int emb_vec_size) -> Tensor")
    def _hugectr_lookup(input: torch.Tensor, ps_config_file: str, model_name: str, table_id: int,
                        emb_vec_size: int) -> torch.Tensor:
        check_keys(input)  # before register(): a bad dtype is reported as such
        return _lookup_python(input, _registry.register(ps_config_file), model_name, table_id, emb_vec_size)

    _hugectr_lookup.register_fake(_lookup_fake)


# Several tables of one model in one op: keys [T, ...] (row t for tables[t]) -> rows [T, ..., D].
# The tables run side by side (hps.HPS.lookup_many), so a model with many tables pays about one
# lookup's latency instead of one per table (what HugeCTR's table fusion was for).
SCHEMA_MANY = "(Tensor keys, str server, str model, int[] tables, int emb_vec_size) -> Tensor"


@torch.library.custom_op("hps::lookup_tables", mutates_args=(), schema=SCHEMA_MANY, **_options)
def lookup_tables(keys: torch.Tensor, server: str, model: str, tables: list[int], emb_vec_size: int) -> torch.Tensor:
    check_keys(keys)
    _check_stacked(keys, tables)
    served = _registry.get(server)
    for table in tables:
        served.table_index(model, table, emb_vec_size)
    out = torch.empty((*keys.shape, emb_vec_size), dtype=torch.float32, device=keys.device)
    if keys.device.type == "cuda":
        served.check_device(model, keys.device.index)
        keys = keys.contiguous()
        served.ps.lookup_many(model, list(tables), list(keys.unbind(0)), out=list(out.unbind(0)))
    else:
        views = out.numpy()
        served.ps.lookup_many(model, list(tables), list(keys.numpy()), out=list(views))
    return out


@lookup_tables.register_fake
def _lookup_tables_fake(keys: torch.Tensor, server: str, model: str, tables: list[int],
                        emb_vec_size: int) -> torch.Tensor:
    check_keys(keys)
    _check_stacked(keys, tables)
    if emb_vec_size <= 0:
        raise ValueError(f"emb_vec_size must be positive, got {emb_vec_size}")
    return keys.new_empty((*keys.shape, emb_vec_size), dtype=torch.float32)


def _check_stacked(keys: torch.Tensor, tables: list[int]) -> None:
    if keys.dim() < 1 or keys.shape[0] != len(tables):
        raise ValueError(f"hps lookup_tables: keys must have one row per table ([{len(tables)}, ...]), "
                         f"got shape {tuple(keys.shape)}")
