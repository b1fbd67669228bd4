"""The op library outside the wheel build: `import hps.tf` without it says how to build it, and
`python -m hps.tf.build` builds one (against the installed TensorFlow and hps) that loads."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def python(*args, env_extra=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", HPS_PROGRESS="0", **(env_extra or {}))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=600)


def test_missing_library_says_how_to_build(tmp_path):
    # No library in the package folder nor in the cache: _paths (which needs no hps.tf) is loaded
    # first and pointed at an empty folder.
    script = ("import importlib.util, sys\n"
              "spec = importlib.util.spec_from_file_location('hps.tf._paths', "
              "importlib.util.find_spec('hps.tf').submodule_search_locations[0] + '/_paths.py')\n"
              "paths = sys.modules['hps.tf._paths'] = importlib.util.module_from_spec(spec)\n"
              "spec.loader.exec_module(paths)\n"
              f"paths.PACKAGE_DIR = {str(tmp_path)!r}\n"
              "import hps.tf\n")
    done = python("-c", script, env_extra={"XDG_CACHE_HOME": str(tmp_path)})
    assert done.returncode != 0
    assert "OpLibraryError" in done.stderr and "python -m hps.tf.build" in done.stderr
    assert f"{tmp_path}/libhps_tf_ops.so (absent)" in done.stderr


def test_op_library_variable_naming_a_missing_file(tmp_path):
    """The error names the variable, not a TensorFlow installed after hps."""
    absent = tmp_path / "absent.so"
    done = python("-c", "import hps.tf", env_extra={"HPS_TF_OP_LIBRARY": str(absent)})
    assert done.returncode != 0
    assert (f"OpLibraryError: HPS_TF_OP_LIBRARY={absent} names a file that does not exist: fix the path, or unset "
            f"HPS_TF_OP_LIBRARY") in done.stderr
    assert "installed after hps" not in done.stderr


def test_wrong_library_says_how_to_rebuild(tmp_path):
    bogus = tmp_path / "libbogus.so"
    bogus.write_bytes(b"not a shared library")
    done = python("-c", "import hps.tf", env_extra={"HPS_TF_OP_LIBRARY": str(bogus)})
    assert done.returncode != 0 and "Rebuild it" in done.stderr and "python -m hps.tf.build" in done.stderr


def test_build_command_builds_a_library_that_loads(tmp_path):
    out = tmp_path / "libhps_tf_ops.so"
    done = python("-m", "hps.tf.build", "--output", str(out), env_extra={"HPS_TF_OP_LIBRARY": str(out)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == str(out) and out.is_file()
    script = ("import hps.tf, hps.tf._library as l; print(l.library_path); "
              "print(hps.tf.lookup([1], '/nonexistent.json', 'm', 0, 1) if False else 'ok')")
    loaded = python("-c", script, env_extra={"HPS_TF_OP_LIBRARY": str(out)})
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.split() == [str(out), "ok"]


def test_without_tensorflow_import_hps_works_and_hps_tf_says_what_to_install():
    script = ("import sys; sys.modules['tensorflow'] = None\n"
              "import hps; print('hps ok')\n"
              "try:\n    import hps.tf\nexcept ImportError as e:\n    print(e)\n")
    done = python("-c", script)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "hps ok" and "hps.tf needs TensorFlow" in lines[1] and "pip install tensorflow-cpu" in lines[1]


def test_build_command_reports_a_failed_compiler_and_keeps_the_old_library(tmp_path):
    out = tmp_path / "libhps_tf_ops.so"
    out.write_bytes(b"old")
    done = python("-m", "hps.tf.build", "--output", str(out), env_extra={"CXX": "false"})
    assert done.returncode == 1, done.stderr[-2000:]
    assert "python -m hps.tf.build: the build failed (exit 1)" in done.stderr
    assert out.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["libhps_tf_ops.so"]
