"""`hps.tf.Init`, kept for HugeCTR code: serve a config and make it the layers' default."""

from __future__ import annotations

from typing import Any, Union

import tensorflow as tf

from . import _servers

__all__ = ["Init"]


def Init(global_batch_size: int, ps_config_file: Any) -> Union[str, tf.Tensor]:  # noqa: N802 (HugeCTR's name)
    """Builds (or finds) the server of `ps_config_file` and makes it the config of layers built with
    `ps_config_file=""`; returns "OK" as HugeCTR's did: the str eagerly and inside a tf.function,
    a string tensor in a TF1 graph (for HugeCTR's `sess.run(hps_init)`).

    Unlike HugeCTR's it may be called again with another config (layers built before keep theirs),
    and it is optional: layers given a config need no Init. A bad config raises here.
    `global_batch_size` is checked and otherwise unused: any batch size works.
    """
    if isinstance(global_batch_size, bool) or not isinstance(global_batch_size, int) or global_batch_size < 1:
        raise ValueError(f"global_batch_size must be a positive int, got {global_batch_size!r}")
    if ps_config_file is None or ps_config_file == "":
        raise ValueError("hps.tf.Init needs ps_config_file: a config file path, a dict or an hps.Config")
    config = _servers.config_string(ps_config_file)
    _servers.server(config)
    _servers.set_default(config)
    if tf.executing_eagerly() or tf.inside_function():
        return "OK"
    # A TF1 graph: Session.run fetches only tensors (the server is up already; this is only the status).
    return tf.constant("OK")
