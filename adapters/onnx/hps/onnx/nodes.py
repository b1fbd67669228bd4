"""The HPS_TRT node: its op type, domain and fields, shared by the surgery, the onnxruntime op and
(in C++) the TensorRT plugin.

Fields are HugeCTR's TensorRT plugin's, so a surgered graph builds with either plugin:
`ps_config_file` and `model_name` (strings, read up to their first NUL), `table_id` and
`emb_vec_size` (ints). The node takes one input, the keys (int32 or int64, any shape [...]), and
gives one output, float32 [..., emb_vec_size].

Domain: TensorRT's ONNX parser picks a plugin by op type alone (name `HPS_TRT`, version "1"), so
any domain works there; `onnx.checker` refuses an unknown op in the default domain, so the surgery
writes the domain `hps`. onnxruntime runs Python ops only in `ai.onnx.contrib`: `session()`
rewrites a copy of the graph for it (see runtime.py).
"""

from __future__ import annotations

HPS_OP = "HPS_TRT"
HPS_DOMAIN = "hps"
PLUGIN_VERSION = "1"
PLUGIN_FIELDS = ("ps_config_file", "model_name", "table_id", "emb_vec_size")


def node_fields(node) -> dict:
    """The four fields of an HPS_TRT onnx NodeProto, checked: a missing or mistyped one is a ValueError."""
    import onnx

    found = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    where = f"{HPS_OP} node {node.name!r}"
    missing = [f for f in PLUGIN_FIELDS if f not in found]
    if missing:
        raise ValueError(f"{where} lacks the field{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                         f"(an {HPS_OP} node has {', '.join(PLUGIN_FIELDS)})")
    fields = {}
    for name in ("ps_config_file", "model_name"):
        value = found[name]
        if not isinstance(value, bytes):
            raise ValueError(f"{where}: field {name} must be a string, got {type(value).__name__}")
        # HugeCTR's surgery writes "dlrm\0": stop at the first NUL, as the TensorRT plugin's parser does.
        text = value.split(b"\0", 1)[0].decode()
        if not text:
            raise ValueError(f"{where}: field {name} is an empty string")
        fields[name] = text
    for name in ("table_id", "emb_vec_size"):
        value = found[name]
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{where}: field {name} must be an int, got {type(value).__name__}")
        fields[name] = value
    if fields["emb_vec_size"] <= 0 or fields["table_id"] < 0:
        raise ValueError(f"{where}: table_id must be >= 0 and emb_vec_size > 0, got table_id {fields['table_id']}, "
                         f"emb_vec_size {fields['emb_vec_size']}")
    return fields
