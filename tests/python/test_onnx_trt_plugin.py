"""The TensorRT plugin library as installed: `python -m hps.sysconfig --trt-plugin` and what the
library exports. TensorRT itself cannot run here, so no engine is built (see docs/onnx_tensorrt.md);
the plugin's logic is tested by ctest (test_trt_plugin_core, test_trt_plugin_shell)."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import hps.sysconfig


def sysconfig_trt_plugin() -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hps.sysconfig", "--trt-plugin"], capture_output=True, text=True,
                          timeout=60)


def test_trt_plugin_path_or_a_clear_error():
    done = sysconfig_trt_plugin()
    expected = os.path.join(hps.sysconfig.get_lib_dir(), "libhps_trt_plugin.so")
    if os.path.isfile(expected):  # built where TensorRT's headers were found
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == expected == hps.sysconfig.get_trt_plugin()
    else:
        assert done.returncode == 1
        assert "has no TensorRT plugin" in done.stderr and "TensorRT_ROOT" in done.stderr


def test_trt_plugin_loads_and_exports_its_creator():
    """Loading the library without TensorRT in the process registers nothing and fails nothing;
    getCreators gives the one HPS_TRT creator (what IPluginRegistry::loadLibrary asks for)."""
    try:
        path = hps.sysconfig.get_trt_plugin()
    except FileNotFoundError:
        import pytest
        pytest.skip("this build has no TensorRT plugin (no TensorRT headers at build time)")
    library = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    count = ctypes.c_int32(-1)
    library.getCreators.restype = ctypes.c_void_p
    library.getCreators.argtypes = [ctypes.POINTER(ctypes.c_int32)]
    creators = library.getCreators(ctypes.byref(count))
    assert count.value == 1 and creators
    assert hasattr(library, "setLoggerFinder")
