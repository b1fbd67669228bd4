"""Running a command-line parser: one error line and the exit status (shared by hps.cli and hps.demo).

Exit status: 0 success, 1 a problem with the input (one line on stderr names it), 2 a usage error,
130 interrupted. Both `hps` (hps.cli) and `python -m hps.demo` run through `run_command`, so
neither module imports the other's entry point.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from .errors import HpsError

__all__ = ["UserError", "int_at_least", "run_command"]


def int_at_least(low: int):
    """An argparse type: an integer of at least `low`, refused by argparse with the option's name."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {low} or more, got {value}")
        return value

    return parse


class UserError(Exception):
    """A problem with what the user gave; run_command prints it as one line and exits with 1."""


def run_command(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None) -> int:
    """Parses `argv` (default: sys.argv[1:]) and runs `args.func(args)`; returns the exit status.

    `args.command` names the command in error lines (`hps COMMAND: error: ...`)."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, usage errors
        return done.code if isinstance(done.code, int) else 2
    if getattr(args, "command", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.func(args)
    except (UserError, HpsError, OSError, ValueError, KeyError, OverflowError) as error:
        if isinstance(error, BrokenPipeError):
            return _broken_pipe()
        print(f"hps {args.command}: error: {_message(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"hps {args.command}: interrupted", file=sys.stderr)
        return 130


def _message(error: BaseException) -> str:
    if isinstance(error, KeyError) and not isinstance(error, HpsError) and error.args:
        return str(error.args[0])
    if isinstance(error, OSError) and not isinstance(error, HpsError) and error.filename and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return str(error) or type(error).__name__


def _broken_pipe() -> int:
    """Output piped into a program that stopped reading (`hps schema | head`): exit quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 1
