"""Loading the C++ op library: `import hps.torch` falls back to the Python op, with one line on
stderr, when the library is absent or built for another torch; `python -m hps.torch.build` builds
one that loads."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")

SCRIPT = "import hps.torch; print(hps.torch.OP_BACKEND)"


def python(*args, **env_extra):
    env = {k: v for k, v in os.environ.items() if k not in ("HPS_TORCH_OP", "HPS_TORCH_OP_LIBRARY")}
    env.update(HPS_PROGRESS="0", **env_extra)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=600)


def test_absent_library_falls_back_with_a_notice(tmp_path):
    done = python("-c", SCRIPT, HPS_TORCH_OP_LIBRARY=str(tmp_path / "absent.so"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "python"
    notice = [line for line in done.stderr.splitlines() if line.startswith("hps.torch:")]
    assert len(notice) == 1 and "python -m hps.torch.build" in notice[0]


def test_library_for_another_torch_is_not_loaded(tmp_path):
    lib = tmp_path / "libhps_torch_ops.so"
    lib.write_bytes(b"not loaded: the version does not match")
    (tmp_path / "libhps_torch_ops.torch_version").write_text("1.0.0\n")
    done = python("-c", SCRIPT, HPS_TORCH_OP_LIBRARY=str(lib))
    assert done.returncode == 0 and done.stdout.strip() == "python", done.stderr[-2000:]
    assert "built for torch 1.0.0" in done.stderr


def test_broken_library_falls_back(tmp_path):
    import torch
    lib = tmp_path / "libhps_torch_ops.so"
    lib.write_bytes(b"not a shared library")
    (tmp_path / "libhps_torch_ops.torch_version").write_text(torch.__version__ + "\n")
    done = python("-c", SCRIPT, HPS_TORCH_OP_LIBRARY=str(lib))
    assert done.returncode == 0 and done.stdout.strip() == "python", done.stderr[-2000:]
    assert "does not load" in done.stderr


def test_forcing_the_python_op():
    done = python("-c", SCRIPT, HPS_TORCH_OP="python")
    assert done.returncode == 0 and done.stdout.strip() == "python", done.stderr[-2000:]


@pytest.mark.slow
def test_build_command_builds_a_library_that_loads(tmp_path):
    out = tmp_path / "libhps_torch_ops.so"
    done = python("-m", "hps.torch.build", "--output", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == str(out) and out.is_file()
    done = python("-c", SCRIPT + "; import hps.torch._library as l; print(l.library_path)",
                  HPS_TORCH_OP_LIBRARY=str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["cpp", str(out)]


def test_build_command_reports_a_failed_compiler_and_keeps_the_old_library(tmp_path):
    out = tmp_path / "libhps_torch_ops.so"
    out.write_bytes(b"old")
    done = python("-m", "hps.torch.build", "--output", str(out), CXX="false")
    assert done.returncode == 1, done.stderr[-2000:]
    assert "python -m hps.torch.build: the build failed (exit 1)" in done.stderr
    assert out.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["libhps_torch_ops.so"]
