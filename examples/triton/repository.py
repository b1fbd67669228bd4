"""Where the prepare scripts put a model: a repository other than model_repository/ (--repo) gets
the model's Triton definition (config.pbtxt, and model.py for dlrm_python) copied from there."""

from __future__ import annotations

import os
import shutil

BUNDLED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model_repository")


def version_folder(repo: str, model: str) -> str:
    """REPO/MODEL/1, made when missing, with REPO/MODEL copied from model_repository/ when REPO has none."""
    folder = os.path.join(repo, model)
    if not os.path.isdir(folder):
        # The definition only, not model files an earlier run left in model_repository/.
        shutil.copytree(os.path.join(BUNDLED, model), folder,
                        ignore=shutil.ignore_patterns("model.onnx", "model.plan", "model.pt", ".gitkeep"))
    version = os.path.join(folder, "1")
    os.makedirs(version, exist_ok=True)
    return version
