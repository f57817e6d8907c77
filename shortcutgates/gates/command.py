"""``shortcutgates gate``: run the gate suite from any directory.

``shortcutgates gate --data DIR [--model CKPT] [--gate-report FILE] [--gate-config PYPROJECT] [-- PYTEST_ARGS]``
runs exactly what ``pytest gate_tests --data DIR ...`` runs in the repository: the suite module
:mod:`shortcutgates.gates.gate_suite` shipped in the package, with the ``shortcutgates`` plugin. Extra
arguments go to pytest unchanged (``-k core_lr``, ``--junitxml out.xml``, ``-x``, ``-q`` ...). The
exit status is pytest's (0: every gate that ran passed; 1: a gate failed).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``shortcutgates gate`` (the plugin's parsers validate the paths)."""
    parser.add_argument("--data", metavar="DIR", required=True, help="manifest directory or parquet file")
    parser.add_argument("--model", metavar="CKPT", default=None,
                        help="checkpoint for the model gates (default: none, model gates are skipped)")
    parser.add_argument("--gate-report", metavar="FILE", default=None, help="write the JSON report here")
    parser.add_argument("--gate-config", metavar="PYPROJECT", default=None,
                        help="pyproject.toml with [tool.shortcutgates] (default: ./pyproject.toml if present)")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER, metavar="PYTEST_ARGS",
                        help="further arguments for pytest, after '--' (e.g. -- -k core_lr --junitxml out.xml)")


def suite_path() -> Path:
    """Path of the installed gate-suite module."""
    from . import gate_suite

    return Path(gate_suite.__file__).resolve()


def pytest_argv(args: argparse.Namespace, cwd: Path) -> list[str]:
    """The pytest command line that ``run`` executes.

    The rootdir is the suite's own directory (so test ids read ``gate_suite.py::test_gate[...]``
    wherever the command runs); relative paths are taken from ``cwd``, and without
    ``--gate-config`` the ``pyproject.toml`` in ``cwd`` (if any) configures the gates.
    """
    suite = suite_path()
    config = args.gate_config
    if config is None and (cwd / "pyproject.toml").is_file():
        config = cwd / "pyproject.toml"
    # "--opt=value" forms: pytest would otherwise take a bare path value for a test path when it
    # determines the rootdir
    argv = [str(suite), f"--rootdir={suite.parent}", "-p", "no:cacheprovider", f"--data={cwd / args.data}"]
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):  # entry points are off: load the plugin by name
        argv += ["-p", "shortcutgates.plugin"]
    for flag, value in (("--model", args.model), ("--gate-report", args.gate_report), ("--gate-config", config)):
        if value is not None:
            argv.append(f"{flag}={cwd / value}")
    extra = list(args.pytest_args or [])
    if extra[:1] == ["--"]:
        extra = extra[1:]
    return argv + extra


def run(args: argparse.Namespace) -> int:
    """Run the suite with pytest in-process; return pytest's exit status."""
    import pytest

    return int(pytest.main(pytest_argv(args, Path.cwd())))
