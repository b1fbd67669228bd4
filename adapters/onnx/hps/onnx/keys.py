"""Key exposure: the graph inputs that carry keys to HPS_TRT nodes get the key dtype asked for.

HugeCTR's TensorRT engines take int32 keys while torch exports int64, so the surgery retypes the
keys where they enter the graph. Keys travel from a graph input to an HPS_TRT node through layout
ops (reshape, slice, squeeze, ...), which work on any element type: the input and every tensor on
such a path take the new type. A consumer off the path (arithmetic, a comparison, a graph output)
still gets the type it had, through one Cast per retyped tensor. An HPS_TRT node whose keys are
computed (not a layout path from an input) gets a Cast to the key type in front of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from .nodes import HPS_OP

# Layout ops and the input index of the tensor they rearrange (the others are shapes, axes, indices).
LAYOUT_OPS = {"Identity": 0, "Reshape": 0, "Flatten": 0, "Squeeze": 0, "Unsqueeze": 0, "Slice": 0,
              "Transpose": 0, "Expand": 0, "Gather": 0, "Tile": 0, "Split": 0}
# Ops that read only the shape of a tensor, not its values.
SHAPE_OPS = ("Shape", "Size")
INTEGER_KEYS = (onnx.TensorProto.INT32, onnx.TensorProto.INT64)


def _all_graphs(graph: gs.Graph):
    yield graph
    for node in graph.nodes:
        for sub in node.subgraphs():
            yield from _all_graphs(sub)


def _onnx_type(tensor: gs.Tensor, dtypes: Mapping[str, int]) -> int:
    if tensor.dtype is not None:
        try:
            return onnx.helper.np_dtype_to_tensor_dtype(np.dtype(tensor.dtype))
        except (TypeError, KeyError, ValueError):
            pass
    return dtypes.get(tensor.name, onnx.TensorProto.UNDEFINED)


def _moves(node: gs.Node, tensor: gs.Tensor) -> bool:
    """Whether `node` only rearranges `tensor` (it is the node's data input)."""
    index = LAYOUT_OPS.get(node.op)
    return index is not None and len(node.inputs) > index and node.inputs[index] is tensor


def expose_keys(graph: gs.Graph, key_dtype: Any, dtypes: Mapping[str, int]) -> tuple[list[str], list[str]]:
    """Retypes the key-carrying graph inputs of `graph` to `key_dtype` (np.int32 or np.int64), in
    place; returns (names of the inputs retyped, notes for the report)."""
    target = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(key_dtype))
    graphs = list(_all_graphs(graph))
    lookups = [n for g in graphs for n in g.nodes if n.op == HPS_OP]
    home: dict[int, gs.Graph] = {id(t): graph for t in graph.inputs}   # where each tensor is defined
    for g in graphs:
        for n in g.nodes:
            for t in n.outputs:
                home[id(t)] = g
    inputs = {id(t) for t in graph.inputs}
    outputs = {id(t) for t in graph.outputs}

    # Backwards from the keys through layout ops: the tensors keys flow through, and the graph inputs they start at.
    upstream: dict[int, gs.Tensor] = {}
    sources: dict[int, gs.Tensor] = {}
    stack = [n.inputs[0] for n in lookups]
    while stack:
        t = stack.pop()
        if id(t) in upstream:
            continue
        upstream[id(t)] = t
        if id(t) in inputs:
            sources[id(t)] = t
        elif len(t.inputs) == 1 and t.inputs[0].op in LAYOUT_OPS:
            producer = t.inputs[0]
            if len(producer.inputs) > LAYOUT_OPS[producer.op]:
                stack.append(producer.inputs[LAYOUT_OPS[producer.op]])

    # Forwards from the inputs to retype, along tensors that lead to keys.
    original: dict[int, int] = {}
    order: list[gs.Tensor] = []
    retyped_inputs = []
    for source in sources.values():
        kind = _onnx_type(source, dtypes)
        if kind not in INTEGER_KEYS or kind == target or id(source) in outputs:
            continue  # (an input that is also a graph output keeps its type; its lookups get a Cast below)
        retyped_inputs.append(source.name)
        stack = [source]
        while stack:
            t = stack.pop()
            if id(t) in original:
                continue
            original[id(t)] = _onnx_type(t, dtypes) or kind
            order.append(t)
            for consumer in t.outputs:
                if _moves(consumer, t):
                    stack.extend(o for o in consumer.outputs if id(o) in upstream and id(o) not in outputs)
    for t in order:
        t.dtype = onnx.helper.tensor_dtype_to_np_dtype(target)

    # Consumers off the path see the old type again.
    for t in order:
        back = None
        for consumer in list(t.outputs):
            if consumer.op == HPS_OP or consumer.op in SHAPE_OPS or \
                    (_moves(consumer, t) and all(id(o) in original for o in consumer.outputs)):
                continue
            if back is None:
                back = gs.Variable(f"{t.name}.as_{onnx.TensorProto.DataType.Name(original[id(t)]).lower()}",
                                   dtype=onnx.helper.tensor_dtype_to_np_dtype(original[id(t)]), shape=t.shape)
                home[id(t)].nodes.append(gs.Node("Cast", f"{back.name}.cast", attrs={"to": original[id(t)]},
                                                 inputs=[t], outputs=[back]))
            for i, tensor in enumerate(consumer.inputs):
                if tensor is t:
                    consumer.inputs[i] = back

    # Keys that are computed, not carried from an input: cast them where they enter the lookup.
    notes = []
    casts: dict[int, gs.Variable] = {}
    for node in lookups:
        keys = node.inputs[0]
        kind = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(keys.dtype)) if id(keys) in original else \
            _onnx_type(keys, dtypes)
        if kind == target or kind not in INTEGER_KEYS:
            continue
        cast = casts.get(id(keys))
        if cast is None:
            cast = gs.Variable(f"{keys.name}.as_{np.dtype(key_dtype).name}", dtype=np.dtype(key_dtype), shape=keys.shape)
            home.get(id(keys), graph).nodes.append(gs.Node("Cast", f"{cast.name}.cast", attrs={"to": target},
                                                           inputs=[keys], outputs=[cast]))
            casts[id(keys)] = cast
            producer = keys.inputs[0].op if keys.inputs else "an outer scope"
            notes.append(f"keys {keys.name!r} are computed (by {producer}), not carried from a graph input: "
                         f"cast to {np.dtype(key_dtype).name} before the lookup")
        node.inputs[0] = cast
    return retyped_inputs, notes
