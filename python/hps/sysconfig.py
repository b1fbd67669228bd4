"""Where the installed hps keeps its C library, headers and CMake package, for building against it.

An out-of-tree plugin (a TensorFlow op library, a TensorRT plugin, a C program) compiles against
``hps/c_api.h`` and links ``libhps_core.so`` from the installed wheel::

    cmake -DCMAKE_PREFIX_PATH="$(python -m hps.sysconfig --cmake-dir)" ...   # find_package(hps CONFIG)
    cc $(python -m hps.sysconfig --includes) prog.c $(python -m hps.sysconfig --libs)

The library lives next to the extension module inside the package (``hps/libhps_core.so``), the
headers under ``hps/include``, the CMake package under ``hps/lib/cmake/hps``. A build that found
TensorRT's headers also ships the TensorRT plugin, ``hps/libhps_trt_plugin.so``
(``--trt-plugin``; see docs/onnx_tensorrt.md). This module imports
nothing but the standard library, so it works without loading the extension.
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["get_include", "get_lib_dir", "get_cmake_dir", "get_compile_flags", "get_link_flags", "get_trt_plugin",
           "main"]

TRT_PLUGIN = "libhps_trt_plugin.so"

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def get_include() -> str:
    """The folder to put on the include path: it holds ``hps/c_api.h`` and the C++ headers."""
    return os.path.join(_PACKAGE_DIR, "include")


def get_lib_dir() -> str:
    """The folder holding ``libhps_core.so``."""
    return _PACKAGE_DIR


def get_cmake_dir() -> str:
    """The folder holding ``hpsConfig.cmake`` (for CMAKE_PREFIX_PATH or hps_DIR)."""
    return os.path.join(_PACKAGE_DIR, "lib", "cmake", "hps")


def get_compile_flags() -> list[str]:
    return [f"-I{get_include()}"]


def get_link_flags() -> list[str]:
    """Linker flags for libhps_core, with an RPATH so the program finds it where it is installed."""
    lib = get_lib_dir()
    return [f"-L{lib}", "-lhps_core", f"-Wl,-rpath,{lib}"]


def get_trt_plugin() -> str:
    """The path of the TensorRT plugin library (HPS_TRT); FileNotFoundError when this build has none."""
    path = os.path.join(_PACKAGE_DIR, TRT_PLUGIN)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"this hps has no TensorRT plugin ({path} is absent): it was built where TensorRT's headers were not "
            f"found; rebuild with -C cmake.define.TensorRT_ROOT=<TensorRT folder> (or HPS_TENSORRT_INCLUDE=<its "
            f"include folder>)")
    return path


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hps.sysconfig",
                                     description="Print where the installed hps keeps its library, headers and "
                                                 "CMake package.")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--includes", action="store_true", help="compiler flags: -I<include dir>")
    group.add_argument("--libs", action="store_true", help="linker flags: -L<lib dir> -lhps_core -Wl,-rpath,<lib dir>")
    group.add_argument("--include-dir", action="store_true", help="the include folder")
    group.add_argument("--lib-dir", action="store_true", help="the folder holding libhps_core.so")
    group.add_argument("--cmake-dir", action="store_true", help="the folder holding hpsConfig.cmake")
    group.add_argument("--trt-plugin", action="store_true", help="the TensorRT plugin library (libhps_trt_plugin.so)")
    args = parser.parse_args(argv)
    if args.trt_plugin:
        try:
            print(get_trt_plugin())
        except FileNotFoundError as error:
            print(f"python -m hps.sysconfig: error: {error}", file=sys.stderr)
            return 1
        return 0
    if args.includes:
        print(" ".join(get_compile_flags()))
    elif args.libs:
        print(" ".join(get_link_flags()))
    elif args.include_dir:
        print(get_include())
    elif args.lib_dir:
        print(get_lib_dir())
    else:
        print(get_cmake_dir())
    return 0


if __name__ == "__main__":
    sys.exit(main())
