"""Compiler and linker flags for the C++ op library, from the torch of this Python.

Shared by the wheel build (CMake runs this file as a script: it imports torch only, not hps) and
`python -m hps.torch.build`. Output as a script: compile flags, link flags (items joined by "|"),
the torch version, and "cuda" or "cpu".
"""

from __future__ import annotations



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
    return compile_flags, link_flags, torch.__version__, cuda


if __name__ == "__main__":
    c, link, version, has_cuda = torch_flags()
    print("|".join(c))
    print("|".join(link))
    print(version)
    print("cuda" if has_cuda else "cpu")
