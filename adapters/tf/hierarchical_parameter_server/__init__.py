"""HugeCTR's `hierarchical_parameter_server` module, served by hps.tf, so that scripts written
for HugeCTR's TensorFlow plugin run unchanged:

    import hierarchical_parameter_server as hps
    hps.Init(global_batch_size=1024, ps_config_file="ps.json")
    layer = hps.LookupLayer(model_name="dlrm", table_id=0, emb_vec_size=16)

See docs/tf.md for what differs (errors raise; CPU and GPU; any number of configs).
"""

from hps.tf import (  # noqa: F401
    Init,
    InferenceOnlyError,
    LookupLayer,
    SparseLookupLayer,
    lookup,
    set_config_path,
)

__all__ = ["Init", "LookupLayer", "SparseLookupLayer", "lookup", "set_config_path", "InferenceOnlyError"]
