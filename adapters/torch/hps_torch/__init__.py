"""HugeCTR's `hps_torch` module name, served by hps.torch.

Code written for HugeCTR runs unchanged::

    import hps_torch
    layer = hps_torch.LookupLayer(ps_config_file, model_name, table_id, emb_vec_size)
    rows = layer(keys)

Differences (all relaxations): keys may have any shape, either width whatever `supportlonglong`
says, and live on the CPU or on any CUDA device of `deployed_device_list` (HugeCTR: 2-D CUDA keys
on device 0 only, matching width); bad arguments raise instead of logging and returning zeros; and
several configs can be used in one process. See docs/torch.md.
"""

from hps.torch import LookupLayer, SparseLookupLayer

__all__ = ["LookupLayer", "SparseLookupLayer"]
