"""Building against the installed wheel: hps.sysconfig, the CMake package and the C ABI."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import hps
import hps.sysconfig
from conftest import config_for, make_table

TABLE = "sparse_embedding0"  # the default name of a model's first table
OUT_OF_TREE = Path(__file__).resolve().parent.parent / "out_of_tree"


def sysconfig(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "hps.sysconfig", *args], capture_output=True, text=True, check=True)
    return result.stdout.strip()


@pytest.fixture
def served(tmp_path):
    table = make_table(tmp_path / "t0", 50, 3, default=-0.5)
    path = tmp_path / "ps.json"
    path.write_text(json.dumps(config_for([table])))
    return table, path


def expected_line(table, i: int) -> str:
    values = " ".join(f"{float(v):.9g}" for v in table.rows[i])
    return f"hps {hps.__version__} row {int(table.keys[i])}: {values}"


def check_output(program, table, path, i: int = 7) -> None:
    # No LD_LIBRARY_PATH: the programs find libhps_core through their RPATH (from the CMake
    # package's imported target, or -Wl,-rpath in `--libs`).
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    result = subprocess.run([str(program), str(path), "m", TABLE, str(int(table.keys[i]))],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected_line(table, i)
    # An unknown key gets the default row.
    result = subprocess.run([str(program), str(path), "m", TABLE, "123456789"], capture_output=True, text=True,
                            env=env)
    assert result.returncode == 0 and result.stdout.strip().endswith("row 123456789: -0.5 -0.5 -0.5"), result.stdout


def test_paths_point_into_the_installed_package():
    package = Path(hps.__file__).resolve().parent
    assert Path(hps.sysconfig.get_include(), "hps", "c_api.h").is_file()
    assert Path(hps.sysconfig.get_include(), "hps", "tiers", "tier.hpp").is_file()
    assert Path(hps.sysconfig.get_include(), "hps", "gpu", "gpu_cache.hpp").is_file()
    assert Path(hps.sysconfig.get_lib_dir(), "libhps_core.so").is_file()
    assert Path(hps.sysconfig.get_cmake_dir(), "hpsConfig.cmake").is_file()
    assert Path(hps.sysconfig.get_cmake_dir(), "hpsConfigVersion.cmake").is_file()
    assert Path(hps.sysconfig.get_lib_dir()).resolve() == package
    assert sysconfig("--cmake-dir") == hps.sysconfig.get_cmake_dir()
    assert sysconfig("--lib-dir") == hps.sysconfig.get_lib_dir()
    assert sysconfig("--includes") == f"-I{hps.sysconfig.get_include()}"
    assert "-lhps_core" in sysconfig("--libs").split()


def test_public_headers_do_not_include_private_ones():
    root = Path(hps.sysconfig.get_include())
    for header in root.rglob("*.h*"):
        for line in header.read_text().splitlines():
            if line.startswith("#include \""):
                included = line.split('"')[1]
                assert (root / included).is_file(), f"{header} includes {included}, which is not installed"


@pytest.mark.skipif(shutil.which("cmake") is None, reason="needs cmake")
def test_out_of_tree_cmake_project_builds_and_looks_up(served, tmp_path):
    table, path = served
    build = tmp_path / "build"
    configure = subprocess.run(["cmake", "-S", str(OUT_OF_TREE), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                                f"-DCMAKE_PREFIX_PATH={sysconfig('--cmake-dir')}"],
                               capture_output=True, text=True)
    assert configure.returncode == 0, configure.stdout + configure.stderr
    built = subprocess.run(["cmake", "--build", str(build), "-j2"], capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    check_output(build / "consumer_c", table, path)
    check_output(build / "consumer_cxx", table, path)


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_plain_cc_with_sysconfig_flags(served, tmp_path):
    table, path = served
    program = tmp_path / "consumer"
    command = ["cc", "-std=c11", "-Wall", "-Wextra", "-pedantic", "-Werror", *sysconfig("--includes").split(),
               str(OUT_OF_TREE / "consumer.c"), "-o", str(program), *sysconfig("--libs").split()]
    compiled = subprocess.run(command, capture_output=True, text=True)
    assert compiled.returncode == 0, " ".join(command) + "\n" + compiled.stderr
    check_output(program, table, path)


class _Table(ctypes.Structure):
    _fields_ = [("model", ctypes.c_uint32), ("table", ctypes.c_uint32)]


def _c_abi():
    """libhps_core's C ABI through ctypes: the same library (and registry) hps._core loaded."""
    lib = ctypes.CDLL(os.path.join(hps.sysconfig.get_lib_dir(), "libhps_core.so"))
    handle_p = ctypes.POINTER(ctypes.c_void_p)
    lib.hps_server_acquire_file.argtypes = [ctypes.c_char_p, ctypes.c_void_p, handle_p]
    lib.hps_server_id.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p)]
    lib.hps_table_by_name.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(_Table)]
    lib.hps_lookup.argtypes = [ctypes.c_void_p, _Table, ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t,
                               ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    lib.hps_server_release.argtypes = [ctypes.c_void_p]
    lib.hps_last_error.restype = ctypes.c_char_p
    return lib


def test_the_c_abi_and_python_share_one_server(served):
    """In one process, hps.HPS and a C ABI caller naming the same file use one server."""
    table, path = served
    lib = _c_abi()
    key = np.array([int(table.keys[5])], dtype=np.int64)
    new_row = np.full((1, 3), 4.25, np.float32)

    def c_lookup(handle, t):
        out = np.zeros((1, 3), np.float32)
        status = lib.hps_lookup(handle, t, key.ctypes.data, 1, 1, out.ctypes.data, -1, None)  # HPS_KEY_INT64, HPS_HOST
        assert status == 0, lib.hps_last_error()
        return out

    ps = hps.HPS(path)
    handle = ctypes.c_void_p()
    assert lib.hps_server_acquire_file(str(path).encode(), None, ctypes.byref(handle)) == 0, lib.hps_last_error()
    try:
        server_id = ctypes.c_char_p()
        assert lib.hps_server_id(handle, ctypes.byref(server_id)) == 0
        assert server_id.value.decode() == ps.server_id
        t = _Table()
        assert lib.hps_table_by_name(handle, b"m", TABLE.encode(), ctypes.byref(t)) == 0, lib.hps_last_error()
        ps.update("m", 0, key, new_row)
        assert np.array_equal(c_lookup(handle, t), new_row)  # the update made through Python
        ps.close()
        assert np.array_equal(c_lookup(handle, t), new_row)  # the C reference keeps the server alive
    finally:
        lib.hps_server_release(handle)
    with hps.HPS(path) as again:  # every reference gone: rebuilt from the files
        assert np.array_equal(again.lookup("m", 0, key), table.rows[5:6])
