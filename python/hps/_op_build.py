"""What `python -m hps.tf.build` and `python -m hps.torch.build` share: compiling a framework's op
library into place without disturbing a process that has the old one loaded, and their command line.

Each adapter supplies its own compiler command (its framework's flags, its sources); this module owns
the file handling and the exit codes, so both commands behave alike.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from typing import Callable


def compile_into(output: str, command_for: "Callable[[str], list[str]]", verbose: bool = False) -> str:
    """Runs command_for(tmp) to write the library beside `output`, then renames it over `output`.

    A process that loaded the old file keeps a valid mapping (the rename replaces the directory
    entry, not the file's pages); a failed build leaves `output` as it was. Returns `output`.
    """
    output = os.path.abspath(output)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=os.path.dirname(output))
    os.close(fd)
    cmd = command_for(tmp)
    if verbose:
        print(shlex.join(cmd), file=sys.stderr)
    try:
        subprocess.run(cmd, check=True)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return output


def compiler() -> str:
    return os.environ.get("CXX", "g++")


def run_command_line(parser: argparse.ArgumentParser, build: "Callable[[argparse.Namespace], str]", argv=None) -> int:
    """Parses argv with `parser` (which holds the adapter's own options; --verbose is added here),
    builds, prints the library's path. Exit 0, or 1 with the reason on stderr, naming `parser.prog`,
    when no compiler is found or the compiler fails."""
    parser.add_argument("--verbose", action="store_true", help="print the compiler command")
    args = parser.parse_args(argv)
    if shutil.which(compiler()) is None:
        print(f"{parser.prog}: no C++ compiler (g++ or $CXX) found", file=sys.stderr)
        return 1
    try:
        path = build(args)
    except subprocess.CalledProcessError as e:
        print(f"{parser.prog}: the build failed (exit {e.returncode})", file=sys.stderr)
        return 1
    print(path)
    return 0
