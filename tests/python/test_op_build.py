"""hps._op_build: what `python -m hps.tf.build` and `python -m hps.torch.build` share. A failed
build leaves the library in place and no temporary file behind; the command line names itself
and the reason when there is no compiler or the compiler fails."""

from __future__ import annotations

import argparse
import subprocess

from hps._op_build import compile_into, run_command_line


def test_a_successful_build_replaces_the_library(tmp_path):
    out = tmp_path / "lib" / "libx.so"
    path = compile_into(str(out), lambda tmp: ["sh", "-c", f"printf new > '{tmp}'"])
    assert path == str(out) and out.read_text() == "new"
    assert sorted(p.name for p in out.parent.iterdir()) == ["libx.so"]


def test_a_failed_build_leaves_the_old_library_and_no_temporary(tmp_path):
    out = tmp_path / "libx.so"
    out.write_text("old")
    try:
        compile_into(str(out), lambda tmp: ["sh", "-c", f"printf half > '{tmp}'; exit 3"])
    except subprocess.CalledProcessError as e:
        assert e.returncode == 3
    else:
        raise AssertionError("a failing compiler did not raise")
    assert out.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["libx.so"]


def _parser():
    parser = argparse.ArgumentParser(prog="python -m hps.x.build")
    parser.add_argument("--output", default="")
    return parser


def test_no_compiler_is_exit_1_naming_the_command(monkeypatch, capsys):
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    built = []
    assert run_command_line(_parser(), lambda args: built.append(args) or "x", []) == 1
    assert not built
    assert "python -m hps.x.build: no C++ compiler (g++ or $CXX) found" in capsys.readouterr().err


def test_a_compiler_failure_is_exit_1_with_its_status(monkeypatch, capsys):
    monkeypatch.setenv("CXX", "sh")

    def build(args):
        raise subprocess.CalledProcessError(5, ["sh"])

    assert run_command_line(_parser(), build, ["--verbose"]) == 1
    assert "python -m hps.x.build: the build failed (exit 5)" in capsys.readouterr().err


def test_success_prints_the_path_and_passes_the_options(monkeypatch, capsys):
    monkeypatch.setenv("CXX", "sh")
    seen = []
    assert run_command_line(_parser(), lambda args: seen.append((args.output, args.verbose)) or "/lib/p.so",
                            ["--output", "o.so", "--verbose"]) == 0
    assert seen == [("o.so", True)] and capsys.readouterr().out.strip() == "/lib/p.so"
