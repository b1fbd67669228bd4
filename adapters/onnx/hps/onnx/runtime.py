"""session(): an onnxruntime InferenceSession in which HPS_TRT nodes look rows up through hps.

    sess = hps.onnx.session("model.hps.onnx")
    (prediction,) = sess.run(None, {"dense": dense, "sparse": sparse})

The op is a Python op of onnxruntime-extensions, which runs only ops of the domain
`ai.onnx.contrib` and takes one fixed type per input. So session() works on a copy of the graph:
every HPS_TRT node (whatever its domain: `hps` as the surgery writes it, or `` as HugeCTR's
hand-written surgery does) moves to `ai.onnx.contrib` as `HPS_TRT_int32` or `HPS_TRT_int64`, after
its key type. The file on disk keeps the form TensorRT expects.

Servers: one hps.HPS per config file per process, shared by every session and node that names it,
built when the first session needs it (so a bad config fails session(), not the first run).
Lookups run on the host (onnxruntime's CPU provider hands the op host arrays).

Errors: onnxruntime-extensions aborts the process when a Python op raises, so the op keeps its
error (by thread) and returns rows of the right shape; the session's run methods raise it once
onnxruntime returns. That needs the op to run on the thread that called run(): session() refuses
parallel execution mode.
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
from typing import Any, Optional, Union

import numpy as np
import onnx

import hps

from ._require import require
from .nodes import HPS_OP, node_fields

__all__ = ["session", "get_server", "clear_servers", "ORT_DOMAIN", "ort_op_type"]

ORT_DOMAIN = "ai.onnx.contrib"
LOCAL_PREFIX = "hps-local:"
_KEY_TYPES = {onnx.TensorProto.INT32: "int32", onnx.TensorProto.INT64: "int64"}

_servers: dict[str, hps.HPS] = {}
_owned: set[str] = set()
_lock = threading.Lock()
_local_ids = itertools.count(1)
_registered = False
# The first error of an HPS_TRT op in the current run of each thread, by thread id (not
# threading.local: onnxruntime's pool threads get a new Python thread state each time they call in).
_errors: dict[int, BaseException] = {}


def ort_op_type(key_dtype: str) -> str:
    """The op type session() gives an HPS_TRT node with keys of `key_dtype` ("int32" or "int64")."""
    return f"{HPS_OP}_{key_dtype}"


def get_server(ps_config_file: str) -> hps.HPS:
    """The shared server of a config path (absolute, or relative to the working directory) or of a
    `hps-local:` id that session(ps=HPS) registered."""
    key = ps_config_file if ps_config_file.startswith(LOCAL_PREFIX) else os.path.abspath(ps_config_file)
    found = _servers.get(key)
    if found is not None:
        return found
    with _lock:
        found = _servers.get(key)
        if found is None:
            if key.startswith(LOCAL_PREFIX):
                raise hps.NotFoundError(f"{HPS_OP}: no server registered as {key!r} in this process (clear_servers() "
                                        f"forgot the hps.HPS given as ps=; make the session again)")
            if not os.path.isfile(key):
                raise FileNotFoundError(f"{HPS_OP}: ps_config_file {ps_config_file!r}: no such file ({key})")
            found = hps.HPS(key, progress=False)
            _servers[key] = found
            _owned.add(key)
    return found


def clear_servers() -> None:
    """Closes the servers session() built and forgets every registered one (an HPS passed in is not closed)."""
    with _lock:
        for key, ps in _servers.items():
            if key in _owned:
                ps.close()
        _servers.clear()
        _owned.clear()


def _register_local(ps: hps.HPS) -> str:
    with _lock:
        for key, known in _servers.items():
            if known is ps:
                return key
        key = f"{LOCAL_PREFIX}{next(_local_ids)}"
        _servers[key] = ps
    return key


def _rows(keys: np.ndarray, ps_config_file: str, model_name: str, table_id: int, emb_vec_size: int) -> np.ndarray:
    ps = get_server(ps_config_file)
    dim = ps.dim(model_name, table_id)
    if dim != emb_vec_size:
        raise hps.InvalidArgumentError(f"{HPS_OP}: emb_vec_size {emb_vec_size} does not match table {table_id} of "
                                       f"model {model_name!r}, whose rows have {dim} floats")
    # np.ascontiguousarray would make 0-d keys 1-d: rows must be keys.shape + [D].
    return ps.lookup(model_name, table_id, np.require(keys, requirements="C"))


def _lookup(keys: np.ndarray, ps_config_file: str, model_name: str, table_id: int, emb_vec_size: int) -> np.ndarray:
    """The op: never raises (onnxruntime-extensions would abort the process); the run method of
    the session raises the kept error."""
    try:
        return _rows(keys, ps_config_file, model_name, table_id, emb_vec_size)
    except BaseException as error:  # noqa: BLE001 (re-raised by the session's run, KeyboardInterrupt too)
        _errors.setdefault(threading.get_ident(), error)
        # NaN rows: should a run outside an hps.onnx session (no one to raise) use them, they show.
        return np.full(np.shape(keys) + (emb_vec_size,), np.nan, np.float32)


def _raising_op_errors(run):
    """Wraps a run method: raises the error an HPS_TRT op of this run kept (the ops run on the
    calling thread), in place of onnxruntime's result or of its own error."""
    @functools.wraps(run)
    def checked(*args, **kwargs):
        _errors.pop(threading.get_ident(), None)
        try:
            return run(*args, **kwargs)
        finally:
            error = _errors.pop(threading.get_ident(), None)
            if error is not None:
                raise error
    return checked


@functools.cache
def _session_class() -> type:
    """onnxruntime.InferenceSession whose run methods raise the errors of its HPS_TRT ops (a
    subclass made on first use: importing hps.onnx does not import onnxruntime)."""
    ort = require("onnxruntime", "running models in onnxruntime")

    class HpsSession(ort.InferenceSession):
        run = _raising_op_errors(ort.InferenceSession.run)
        run_with_ort_values = _raising_op_errors(ort.InferenceSession.run_with_ort_values)
        run_with_iobinding = _raising_op_errors(ort.InferenceSession.run_with_iobinding)
        run_with_ortvaluevector = _raising_op_errors(ort.InferenceSession.run_with_ortvaluevector)

        def run_async(self, output_names, input_feed, callback, user_data, run_options=None):
            # onnxruntime runs the graph and then the callback on one thread of its pool: the
            # callback gets the op's error as its error string, and no results.
            def reporting(results, data, err):
                error = _errors.pop(threading.get_ident(), None)
                if error is None:
                    callback(results, data, err)
                else:
                    callback([], data, f"{type(error).__name__}: {error}")
            return super().run_async(output_names, input_feed, reporting, user_data, run_options)

    return HpsSession


def _register_ops() -> None:
    """Declares the two Python ops to onnxruntime-extensions (once per process)."""
    global _registered
    with _lock:
        if _registered:
            return
        ext = require("onnxruntime_extensions", "running HPS_TRT nodes in onnxruntime")
        attrs = {"ps_config_file": ext.PyCustomOpDef.dt_string, "model_name": ext.PyCustomOpDef.dt_string,
                 "table_id": ext.PyCustomOpDef.dt_int64, "emb_vec_size": ext.PyCustomOpDef.dt_int64}
        for key_dtype, code in (("int32", ext.PyCustomOpDef.dt_int32), ("int64", ext.PyCustomOpDef.dt_int64)):
            ext.onnx_op(op_type=ort_op_type(key_dtype), inputs=[code], outputs=[ext.PyCustomOpDef.dt_float],
                        attrs=attrs)(_lookup)
        _registered = True


def _graphs(graph: onnx.GraphProto):
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _graphs(g)


def _key_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    found: dict[str, int] = {}
    for g in _graphs(inferred.graph):
        for info in list(g.input) + list(g.value_info) + list(g.output):
            if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type:
                found[info.name] = info.type.tensor_type.elem_type
        for init in g.initializer:
            found[init.name] = init.data_type
    return found


def for_onnxruntime(model: onnx.ModelProto, ps: Optional[Union[str, "os.PathLike[str]", hps.HPS]] = None) -> onnx.ModelProto:
    """A copy of `model` whose HPS_TRT nodes onnxruntime (with the ops of this module) can run; each
    node's server is built and its fields checked against it. `ps` replaces every node's
    ps_config_file: a config path, or an hps.HPS to use as it is. Only a session() raises the
    errors of lookups; a plain InferenceSession gets NaN rows where one failed."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    if isinstance(ps, hps.HPS):
        override: Optional[str] = _register_local(ps)
    elif ps is not None:
        override = os.path.abspath(os.fspath(ps))
    else:
        override = None
    nodes = [n for g in _graphs(copy.graph) for n in g.node if n.op_type == HPS_OP]
    if not nodes:
        raise ValueError(f"the model has no {HPS_OP} node (run hps.onnx.replace_embeddings first)")
    # Key types come from shape inference, before the nodes move to a domain it does not know.
    key_types = _key_types(copy)
    for node in nodes:
        fields = node_fields(node)
        if override is not None:
            fields["ps_config_file"] = override
        # The op gets the node's attributes as they are: give it the strings as read (without
        # HugeCTR's trailing NUL) and the override.
        for attr in node.attribute:
            if attr.name in ("ps_config_file", "model_name"):
                attr.s = fields[attr.name].encode()
        kind = key_types.get(node.input[0])
        if kind not in _KEY_TYPES:
            seen = onnx.TensorProto.DataType.Name(kind) if kind else "unknown"
            raise ValueError(f"{HPS_OP} node {node.name!r}: its keys {node.input[0]!r} are {seen}; expected INT32 or "
                             f"INT64 (give the graph input a type, or run the surgery with key_dtype)")
        server = get_server(fields["ps_config_file"])
        dim = server.dim(fields["model_name"], fields["table_id"])
        if dim != fields["emb_vec_size"]:
            raise hps.InvalidArgumentError(
                f"{HPS_OP} node {node.name!r}: emb_vec_size {fields['emb_vec_size']} does not match table "
                f"{fields['table_id']} of model {fields['model_name']!r}, whose rows have {dim} floats")
        node.op_type = ort_op_type(_KEY_TYPES[kind])
        node.domain = ORT_DOMAIN
    used = {n.domain for g in _graphs(copy.graph) for n in g.node}
    imports = [o for o in copy.opset_import if o.domain in used or o.domain in ("", "ai.onnx")]
    del copy.opset_import[:]
    copy.opset_import.extend(imports)
    if ORT_DOMAIN not in {o.domain for o in imports}:
        copy.opset_import.append(onnx.helper.make_opsetid(ORT_DOMAIN, 1))
    return copy


def session(onnx_model: Union[str, "os.PathLike[str]", onnx.ModelProto], *,
            ps: Optional[Union[str, "os.PathLike[str]", hps.HPS]] = None, providers: Optional[list] = None,
            sess_options: Any = None, **kwargs: Any) -> Any:
    """An onnxruntime.InferenceSession over `onnx_model` (a path or a ModelProto) whose HPS_TRT nodes
    look up through hps; its run methods raise what a lookup raised (hps.InvalidArgumentError for a
    key the table cannot take, ...). `ps` replaces the config every node names (a path, or an
    hps.HPS); `providers` default to ["CPUExecutionProvider"]; `sess_options` (an
    onnxruntime.SessionOptions, sequential execution mode) gets the extension library registered;
    other keyword arguments go to InferenceSession."""
    ort = require("onnxruntime", "running models in onnxruntime")
    ext = require("onnxruntime_extensions", "running HPS_TRT nodes in onnxruntime")
    options = sess_options if sess_options is not None else ort.SessionOptions()
    if options.execution_mode != ort.ExecutionMode.ORT_SEQUENTIAL:
        raise ValueError("hps.onnx.session needs sess_options.execution_mode = ORT_SEQUENTIAL: an HPS_TRT lookup "
                         "reports its error to the run() of the thread it runs on, which ORT_PARALLEL changes")
    if isinstance(onnx_model, onnx.ModelProto):
        model = onnx_model
    else:
        path = os.fspath(onnx_model)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such ONNX file")
        model = onnx.load(path)
    _register_ops()
    runnable = for_onnxruntime(model, ps)
    options.register_custom_ops_library(ext.get_library_path())
    return _session_class()(runnable.SerializeToString(), options, providers=providers or ["CPUExecutionProvider"],
                            **kwargs)
