"""Triton Python backend model: the surgered DLRM (model.onnx next to this file) through
hps.onnx.session, so its HPS_TRT nodes look rows up in hps. One hps server per config per
process, shared by every instance Triton creates in it."""

from __future__ import annotations

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by Triton

import hps.onnx


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        ps = config.get("parameters", {}).get("ps_config_file", {}).get("string_value") or None
        here = os.path.join(args["model_repository"], args["model_version"])
        self.session = hps.onnx.session(os.path.join(here, "model.onnx"), ps=ps)
        self.inputs = [i.name for i in self.session.get_inputs()]

    def execute(self, requests):
        responses = []
        for request in requests:
            feed = {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.inputs}
            (output,) = self.session.run(None, feed)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("output", output.astype(np.float32))]))
        return responses

    def finalize(self):
        hps.onnx.runtime.clear_servers()
