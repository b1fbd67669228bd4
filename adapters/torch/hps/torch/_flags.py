"""Compiler and linker flags for the C++ op library, from the torch of this Python.

Shared by the wheel build (CMake runs this file as a script: it imports torch only, not hps) and
`python -m hps.torch.build`. Output as a script: compile flags, link flags (items joined by "|"),
the torch version, and "cuda" or "cpu".
"""

from __future__ import annotations

import os


def loaded_libstdcxx() -> str:
    """The shared libstdc++ this process runs with once torch is imported ("" where unknown).

    Code built against torch must use that same libstdc++: c10 types holding std::string (c10::Error,
    the messages of TORCH_CHECK) cross between it and torch. Some hermetic GCC toolchains link
    libstdc++ statically by default (the GPU machine's does); a library built that way carries a
    second, uninitialised copy, and formatting a number into an error message crashed it.
    Naming the shared library on the link line makes the linker resolve libstdc++ there first.
    """
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                if os.path.basename(path).startswith("libstdc++.so"):
                    return path
    except OSError:
        pass
    return ""


def torch_flags() -> "tuple[list[str], list[str], str, bool]":
    """(compile flags, link flags, torch version, whether torch has CUDA)."""
    import torch
    from torch.utils import cpp_extension

    cuda = torch.version.cuda is not None
    compile_flags = [f"-I{p}" for p in cpp_extension.include_paths()]
    compile_flags.append(f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}")
    if hasattr(torch.Tag, "cudagraph_unsafe"):  # at::Tag has what torch.Tag has
        compile_flags.append("-DHPS_TORCH_TAG_CUDAGRAPH_UNSAFE=1")
    libs = ["-lc10", "-ltorch_cpu", "-ltorch"]
    lib_dirs = cpp_extension.library_paths()
    link_flags = [f"-L{d}" for d in lib_dirs] + libs + [f"-Wl,-rpath,{d}" for d in lib_dirs]
    libstdcxx = loaded_libstdcxx()
    if libstdcxx:
        link_flags.append(libstdcxx)
    return compile_flags, link_flags, torch.__version__, cuda


if __name__ == "__main__":
    c, link, version, has_cuda = torch_flags()
    print("|".join(c))
    print("|".join(link))
    print(version)
    print("cuda" if has_cuda else "cpu")
