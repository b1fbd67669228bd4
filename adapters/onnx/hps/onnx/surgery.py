"""replace_embeddings: an ONNX model's embedding lookups moved into hps.

    report = hps.onnx.replace_embeddings("model.onnx", "model.hps.onnx", "serving/tables", "dlrm")
    print(report)

A lookup is a `Gather` (axis 0) whose data is a 2-D float initializer and whose indices are not
constant. It is found in three shapes:
- a top-level Gather (`nn.Embedding`, every lookup of the dynamo exporter, tf2onnx's
  `embedding_lookup`), possibly followed by a reduce (a bag); the reduce stays as it was;
- a Gather inside a `Loop` body on a slice of a tensor from outside the loop (`nn.EmbeddingBag`
  as the TorchScript exporter writes it): the lookup is hoisted out of the loop (one HPS_TRT over
  the whole tensor before the Loop), and the body slices the looked-up rows instead of the keys;
- any other Gather inside a subgraph: replaced where it is (looked up once per iteration).
Each initializer read by such Gathers becomes one table (a shared table stays one table) whose keys
are its row indices; the Gathers become HPS_TRT nodes (see nodes.py). Everything else in the graph
is left as it was.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np
import onnx
import onnx_graphsurgeon as gs

import hps

from .keys import expose_keys
from .nodes import HPS_DOMAIN, HPS_OP
from .report import Lookup, Skipped, SurgeryReport

__all__ = ["replace_embeddings", "NoEmbeddingsError", "MAX_IR_VERSION"]

# The GPU machine's onnxruntime 1.30 reads IR versions up to 13.
MAX_IR_VERSION = 13
MAX_INLINE_BYTES = (2 << 30) - (64 << 20)  # protobuf's limit, with room for the graph
REDUCES = ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd")
FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE)
_NAME = re.compile(r"[A-Za-z0-9_-]{1,120}")

PathLike = Union[str, "os.PathLike[str]"]


class NoEmbeddingsError(ValueError):
    """The graph has no lookup replace_embeddings can serve; `.report` lists the candidates left and why."""

    def __init__(self, message: str, report: SurgeryReport):
        super().__init__(message)
        self.report = report


@dataclass
class _Site:
    """One Gather to replace and where it is."""

    node: gs.Node
    graph: gs.Graph
    parent: Optional[gs.Node]       # the node whose subgraph `graph` is (None: the main graph)
    parent_graph: Optional[gs.Graph]


@dataclass
class _Table:
    initializer: gs.Constant
    sites: list[_Site] = field(default_factory=list)
    kept_for: list[str] = field(default_factory=list)   # other consumers of the initializer


def _graphs(graph: gs.Graph, parent: Optional[gs.Node] = None, parent_graph: Optional[gs.Graph] = None):
    """(graph, the node holding it, that node's graph) for the main graph and every subgraph, outermost first."""
    yield graph, parent, parent_graph
    for node in graph.nodes:
        for sub in node.subgraphs():
            yield from _graphs(sub, node, graph)


def _const_value(tensor: gs.Tensor) -> Optional[np.ndarray]:
    """The value of an initializer or of a Constant node's output; None for anything computed."""
    if isinstance(tensor, gs.Constant):
        return np.asarray(tensor.values)
    if len(tensor.inputs) == 1 and tensor.inputs[0].op == "Constant":
        value = tensor.inputs[0].attrs.get("value")
        if isinstance(value, gs.Constant):
            return np.asarray(value.values)
    return None


def _table_name(initializer: str, taken: set[str]) -> str:
    """`emb.3.weight` -> `emb-3`: the name hps.torch.export_tables gives the same module's table."""
    base = initializer[:-len(".weight")] if initializer.endswith(".weight") else initializer
    name = re.sub(r"[^A-Za-z0-9_-]", "_", base.replace(".", "-")) or "table"
    if len(name) > 120 or name in taken:
        name = f"{name[:100]}-{hashlib.sha1(initializer.encode()).hexdigest()[:10]}"
    taken.add(name)
    return name


def _onnx_dtype(dtype: Any) -> int:
    return onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def _node_label(node: gs.Node) -> str:
    return node.name or f"<{node.op} -> {', '.join(t.name for t in node.outputs)}>"


def _check_gather(node: gs.Node, dtypes: Mapping[str, int]) -> Optional[str]:
    """Why a Gather on an initializer is not a lookup hps can serve (None: it is one)."""
    data, indices = node.inputs[0], node.inputs[1]
    values = data.values
    if values.ndim != 2:
        return f"the initializer has rank {values.ndim}; a table is 2-D [rows, dim]"
    if values.dtype.kind != "f":
        return f"the initializer is {values.dtype}, not a float table"
    if values.shape[0] == 0 or values.shape[1] == 0:
        return f"the initializer is empty ({values.shape[0]} x {values.shape[1]})"
    axis = int(node.attrs.get("axis", 0))
    if axis not in (0, -2):
        return f"it gathers along axis {axis}; a lookup gathers rows (axis 0)"
    if _const_value(indices) is not None:
        return "its indices are a constant, not keys fed to the model"
    dtype = dtypes.get(indices.name)
    if dtype is not None and dtype not in (onnx.TensorProto.INT32, onnx.TensorProto.INT64):
        return f"its indices are {onnx.TensorProto.DataType.Name(dtype)}, expected INT32 or INT64 keys"
    return None


def _dtypes(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor whose type is known (after shape inference), subgraphs included."""
    found: dict[str, int] = {}

    def visit(graph: onnx.GraphProto) -> None:
        for info in list(graph.input) + list(graph.output) + list(graph.value_info):
            if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type:
                found[info.name] = info.type.tensor_type.elem_type
        for init in graph.initializer:
            found[init.name] = init.data_type
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    visit(attr.g)
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    for g in attr.graphs:
                        visit(g)

    visit(model.graph)
    return found


def _load(onnx_in: Union[PathLike, onnx.ModelProto]) -> tuple[onnx.ModelProto, str]:
    if isinstance(onnx_in, onnx.ModelProto):
        model = onnx.ModelProto()
        model.CopyFrom(onnx_in)
        return model, "<ModelProto>"
    path = os.fspath(onnx_in)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such ONNX file")
    try:
        return onnx.load(path), path
    except Exception as error:  # protobuf's DecodeError and friends
        raise ValueError(f"{path}: not a readable ONNX model ({type(error).__name__}: {error})") from None


def _find_tables(graph: gs.Graph, dtypes: Mapping[str, int], only: Optional[set[str]],
                 min_rows: int, skipped: list[Skipped]) -> list[_Table]:
    """The initializers to serve, in order of their first lookup, with the Gathers reading them."""
    tables: dict[int, _Table] = {}
    graph_inputs = {id(t) for t in graph.inputs}
    for sub, parent, parent_graph in _graphs(graph):
        for node in sub.nodes:
            if node.op != "Gather" or len(node.inputs) != 2:
                continue
            if not isinstance(node.inputs[0], gs.Constant):
                # Gathers of shapes and computed tensors are everywhere; one of a float graph input is a
                # table the model is fed, which hps cannot serve.
                if id(node.inputs[0]) in graph_inputs and dtypes.get(node.inputs[0].name) in FLOAT_TYPES:
                    skipped.append(Skipped(_node_label(node), node.op, f"its data {node.inputs[0].name!r} is a graph "
                                           f"input, not an initializer: hps serves tables stored in the model"))
                continue
            data = node.inputs[0]
            why = _check_gather(node, dtypes)
            if why is None and only is not None and data.name not in only:
                why = "its initializer is not among the tables asked for (tables=...)"
            if why is None and data.values.shape[0] < min_rows:
                why = f"the table has {data.values.shape[0]} rows, fewer than min_rows={min_rows}"
            if why is not None:
                skipped.append(Skipped(_node_label(node), node.op, why, data.name))
                continue
            tables.setdefault(id(data), _Table(data)).sites.append(_Site(node, sub, parent, parent_graph))
    for table in tables.values():
        replaced = {id(site.node) for site in table.sites}
        table.kept_for = [f"{n.op} {_node_label(n)!r}" for n in table.initializer.outputs if id(n) not in replaced]
    return list(tables.values())


def _kind(site: _Site) -> str:
    consumers = site.node.outputs[0].outputs
    if site.parent is None:
        if len(consumers) == 1 and consumers[0].op in REDUCES:
            return f"gather+{consumers[0].op}"
        return "gather"
    return f"gather in a {site.parent.op} body"


def _hoistable_slice(site: _Site) -> Optional[gs.Node]:
    """The Slice feeding a Loop-body Gather when the lookup can move out of the loop: it slices
    axis 0 of a tensor defined in the main graph, so lookup(slice(keys)) == slice(lookup(keys))."""
    if site.parent is None or site.parent.op != "Loop" or site.parent_graph is None:
        return None
    indices = site.node.inputs[1]
    if len(indices.inputs) != 1 or indices.inputs[0].op != "Slice":
        return None
    slice_node = indices.inputs[0]
    keys = slice_node.inputs[0]
    if isinstance(keys, gs.Constant):
        return None
    # `keys` must come from the graph holding the Loop (a node's output or an input there), not from the body.
    outer = site.parent_graph
    visible = {id(t) for n in outer.nodes for t in n.outputs} | {id(t) for t in outer.inputs}
    if id(keys) not in visible:
        return None
    axes = slice_node.inputs[3] if len(slice_node.inputs) > 3 and slice_node.inputs[3].name else None
    if axes is None:
        # Axes default to [0, .., len(starts) - 1]: axis 0 alone when one start is given.
        starts = slice_node.inputs[1]
        value = _const_value(starts)
        count = value.size if value is not None else (starts.shape[0] if starts.shape and len(starts.shape) == 1 else None)
        return slice_node if count == 1 else None
    value = _const_value(axes)
    if value is None or value.size != 1 or int(value.reshape(-1)[0]) != 0:
        return None
    return slice_node


def replace_embeddings(onnx_in: Union[PathLike, onnx.ModelProto], onnx_out: PathLike, tables_dir: PathLike,
                       model_name: str, *, key_dtype: str = "int64", ps_config_file: Optional[str] = None,
                       config_name: str = "ps.json", tables: Optional[Iterable[str]] = None, min_rows: int = 1,
                       server_keys: Optional[Mapping[str, Any]] = None, check: bool = True,
                       **model_keys: Any) -> SurgeryReport:
    """Replaces the embedding lookups of `onnx_in` with HPS_TRT nodes, writes the result to `onnx_out`,
    the tables as HugeCTR table folders under `tables_dir` plus an hps config `tables_dir/config_name`
    serving them as model `model_name`; returns a report of what was replaced and what was left and why.

    - `key_dtype` ("int64" or "int32"): the type of the keys. Graph inputs that carry keys to the
      lookups (through reshapes, slices and the like) get this type; other consumers of those
      inputs see the type they had (a Cast is put before them). The config's `supportlonglong` is
      true for int64. HugeCTR's TensorRT plugin takes int32 keys only; hps' takes either.
    - `ps_config_file`: the config path the HPS_TRT nodes carry (TensorRT and onnxruntime open it
      where the model runs); default the absolute path of the config written here.
    - `tables`: initializer names to serve (default: every lookup found); `min_rows`: leave tables
      with fewer rows in the graph.
    - `model_keys` go into the model's config entry (e.g. `gpucacheper=0.5`), `server_keys` at the
      top level (e.g. `{"volatile_db": {...}}`).
    - `check`: run `onnx.checker` on the result.

    Raises NoEmbeddingsError (a ValueError, with `.report`) when nothing can be replaced; then
    nothing is written.
    """
    if key_dtype not in ("int32", "int64"):
        raise ValueError(f"key_dtype must be 'int32' or 'int64', got {key_dtype!r}")
    if not isinstance(model_name, str) or not _NAME.fullmatch(model_name):
        raise ValueError(f"model_name must be 1-120 characters of A-Z a-z 0-9 _ -, got {model_name!r}")
    if not isinstance(min_rows, int) or min_rows < 1:
        raise ValueError(f"min_rows must be a positive int, got {min_rows!r}")
    model, source = _load(onnx_in)
    onnx_out = os.fspath(onnx_out)
    tables_dir = os.path.abspath(os.fspath(tables_dir))
    config_path = os.path.join(tables_dir, config_name)
    carried = ps_config_file if ps_config_file is not None else config_path
    report = SurgeryReport(source, onnx_out, config_path, carried, model_name, key_dtype)

    ir_version = min(model.ir_version, MAX_IR_VERSION)
    if model.ir_version > MAX_IR_VERSION:
        report.notes.append(f"IR version {model.ir_version} lowered to {MAX_IR_VERSION} (onnxruntime 1.30 reads no newer)")
    # Types of intermediate tensors (for the key checks and key exposure); strict=False: custom ops pass.
    inferred = onnx.shape_inference.infer_shapes(model)
    dtypes = _dtypes(inferred)
    graph = gs.import_onnx(inferred)

    found = _find_tables(graph, dtypes, set(tables) if tables is not None else None, min_rows, report.skipped)
    if not found:
        reasons = "; ".join(f"{s.op} {s.node!r}: {s.reason}" for s in report.skipped) or \
            "no Gather reads a 2-D float initializer"
        raise NoEmbeddingsError(f"{source}: no embedding lookup to replace ({reasons})", report)
    max_key = np.iinfo(np.int32 if key_dtype == "int32" else np.int64).max
    for table in found:
        if table.initializer.values.shape[0] - 1 > max_key:
            raise ValueError(f"initializer {table.initializer.name!r} has {table.initializer.values.shape[0]:,} rows: "
                             f"its row indices do not fit {key_dtype} keys")

    # ---- tables and config (written before the graph, so a failure leaves no half-surgered model) ----
    os.makedirs(tables_dir, exist_ok=True)
    taken: set[str] = set()
    names, dims = [], []
    for table_id, table in enumerate(found):
        weight = np.ascontiguousarray(table.initializer.values, dtype=np.float32)
        name = _table_name(table.initializer.name, taken)
        folder = os.path.join(tables_dir, name)
        hps.write_sparse_model(folder, np.arange(weight.shape[0], dtype=np.int64), weight,
                               overwrite=True)  # surgery rewrites its own output folder
        names.append(name)
        dims.append(int(weight.shape[1]))
        notes = []
        if table.kept_for:
            notes.append(f"initializer kept in the graph: also read by {', '.join(table.kept_for)}")
        if table.initializer.values.dtype != np.float32:
            notes.append(f"rows stored as float32 (the initializer was {table.initializer.values.dtype}); "
                         f"a Cast after the lookup gives {table.initializer.values.dtype} as before")
        report.replaced.append(Lookup(table_id, name, table.initializer.name, int(weight.shape[0]), dims[-1],
                                      [], [], folder, notes))
    hps.write_model_config(config_path, model_name, names, dims, key64=key_dtype == "int64",
                           model_keys=model_keys, server_keys=server_keys)

    # ---- the graph ----
    hoisted: dict[tuple[int, int], gs.Variable] = {}   # (keys tensor, table) -> looked-up rows, outside a loop
    for table_id, table in enumerate(found):
        lookup = report.replaced[table_id]
        attrs = {"ps_config_file": carried, "model_name": model_name, "table_id": table_id,
                 "emb_vec_size": lookup.dim}
        out_dtype = table.initializer.values.dtype
        for site in table.sites:
            lookup.nodes.append(_node_label(site.node))
            kind = _kind(site)
            slice_node = _hoistable_slice(site) if site.parent is not None else None
            if slice_node is not None:
                keys = slice_node.inputs[0]
                rows = hoisted.get((id(keys), table_id))
                if rows is None:  # one lookup of the whole key tensor, just before the loop
                    outer = site.parent_graph
                    rows = gs.Variable(f"{keys.name}.hps_rows.{lookup.table}", dtype=np.float32)
                    new = [gs.Node(HPS_OP, f"hps_lookup.{lookup.table}.{keys.name}", attrs=dict(attrs),
                                   inputs=[keys], outputs=[rows], domain=HPS_DOMAIN)]
                    if out_dtype != np.float32:
                        cast = gs.Variable(f"{rows.name}.{out_dtype}", dtype=out_dtype)
                        new.append(gs.Node("Cast", f"{cast.name}.cast", attrs={"to": _onnx_dtype(out_dtype)},
                                           inputs=[rows], outputs=[cast]))
                        rows = cast
                    at = outer.nodes.index(site.parent)
                    outer.nodes[at:at] = new
                    hoisted[(id(keys), table_id)] = rows
                out = site.node.outputs[0]
                site.node.outputs.clear()
                site.node.inputs.clear()
                position = site.graph.nodes.index(site.node)
                site.graph.nodes[position:position + 1] = [
                    gs.Node("Slice", f"{out.name}.hps_slice", inputs=[rows] + list(slice_node.inputs[1:]), outputs=[out])]
                lookup.kinds.append(f"loop-bag: lookup hoisted out of {site.parent.op} {_node_label(site.parent)!r}")
                continue
            if site.parent is not None:
                lookup.notes.append(f"{_node_label(site.node)} stays inside {site.parent.op} "
                                    f"{_node_label(site.parent)!r}: one lookup per iteration")
            keys = site.node.inputs[1]
            out = site.node.outputs[0]
            site.node.outputs.clear()
            site.node.inputs.clear()
            nodes = []
            if out_dtype == np.float32:
                nodes.append(gs.Node(HPS_OP, f"hps_lookup.{lookup.table}.{out.name}", attrs=dict(attrs),
                                     inputs=[keys], outputs=[out], domain=HPS_DOMAIN))
            else:
                rows = gs.Variable(f"{out.name}.hps_f32", dtype=np.float32)
                nodes.append(gs.Node(HPS_OP, f"hps_lookup.{lookup.table}.{out.name}", attrs=dict(attrs),
                                     inputs=[keys], outputs=[rows], domain=HPS_DOMAIN))
                nodes.append(gs.Node("Cast", f"{out.name}.cast", attrs={"to": _onnx_dtype(out_dtype)}, inputs=[rows], outputs=[out]))
            position = site.graph.nodes.index(site.node)
            site.graph.nodes[position:position + 1] = nodes
            lookup.kinds.append(kind)

    graph.cleanup(remove_unused_graph_inputs=False)  # drop the key slices hoisting left unused
    report.key_inputs, key_notes = expose_keys(graph, np.int32 if key_dtype == "int32" else np.int64, dtypes)
    report.notes.extend(key_notes)
    graph.cleanup(remove_unused_graph_inputs=False).toposort()
    graph.ir_version = ir_version
    result = gs.export_onnx(graph)
    result.ir_version = ir_version
    result.doc_string = model.doc_string
    result.model_version = model.model_version
    result.domain = model.domain
    for prop in model.metadata_props:
        result.metadata_props.add().CopyFrom(prop)
    if os.path.dirname(onnx_out):
        os.makedirs(os.path.dirname(onnx_out), exist_ok=True)
    if result.ByteSize() > MAX_INLINE_BYTES:  # initializers left (e.g. tied weights) past protobuf's 2 GiB
        onnx.save(result, onnx_out, save_as_external_data=True, location=os.path.basename(onnx_out) + ".data")
        report.notes.append(f"initializers saved beside the model in {os.path.basename(onnx_out)}.data (over 2 GiB)")
    else:
        onnx.save(result, onnx_out)
    if check:
        onnx.checker.check_model(onnx_out)
    return report
