"""``shortcutgates gate``: run the gate suite from any directory, on one model or on many.

``shortcutgates gate [--data DIR] [--data-root DIR] [--model MODEL ...] [--out DIR] [--gate-report FILE]
[--gate-html FILE] [--gate-config PYPROJECT] [--no-strict] [-- PYTEST_ARGS]``

* One model (or none): runs exactly what ``pytest gate_tests`` runs — the suite module
  :mod:`shortcutgates.gates.gate_suite` shipped in the package, with the ``shortcutgates`` plugin,
  in strict mode (expected gates that did not run fail the run). The ``conftest.py`` of the current
  directory is loaded as a plugin, so a ``shortcutgates_scorer`` fixture defined there gives the
  model; ``-- -p MODULE`` loads one from elsewhere. Extra arguments go to pytest unchanged
  (``-k core_lr``, ``--junitxml out.xml``, ``-x``, ``-q`` ...).
* Several models (files, a directory, or a quoted glob): :mod:`shortcutgates.gates.sweep` reads the
  data and runs the data gates once, then the model gates per model, writing one JSON report per
  model, a summary table and a figure into ``--out``.

``--data`` may be left out when the models are shortcutgates checkpoints: they record their
training manifest and its sha256. Nothing is written into the current directory but what was
asked for (pytest's cache and the benchmark plugin are off; no bytecode is written for the
user's ``conftest.py``).

Exit status: 0 every expected gate ran and passed; 1 a gate failed (or, strict, did not run);
2 bad input (one line); 3 an internal error; 130 interrupted.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import re
import sys
from pathlib import Path

from shortcutgates.gates.options import add_command_options, parse_paths

MODEL_SUFFIXES = (".pt", ".pt2", ".onnx")
"""Files taken from a ``--model`` directory."""

EXIT_FROM_PYTEST = {0: 0, 1: 1, 2: 130, 3: 3, 4: 2}
"""pytest's exit status -> this command's (5, no tests ran, depends on strictness)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``shortcutgates gate`` (paths are validated by :func:`resolve_paths`)."""
    add_command_options(parser)
    parser.add_argument(
        "--model",
        metavar="MODEL",
        nargs="+",
        default=None,
        help="checkpoint(s) .pt, torch.export .pt2 or ONNX .onnx; a directory or quoted glob "
        "gates each model in it (default: a shortcutgates_scorer fixture in ./conftest.py, "
        "else none: model gates do not run)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="with several models: directory for one JSON report per model, summary.csv and gates_by_model.png",
    )
    parser.add_argument(
        "--input",
        dest="gate_input",
        choices=("raw_robust", "residual"),
        default=None,
        help="data-only runs: the preprocessing the data probes decide on (default: "
        "[tool.shortcutgates] input, else raw_robust); a model run decides on the model's input",
    )
    parser.add_argument(
        "--no-strict",
        dest="strict",
        action="store_false",
        help="do not fail when expected gates did not run (e.g. data gates only, no model)",
    )
    parser.add_argument(
        "--gate-cache",
        metavar="DIR",
        default=None,
        help="directory of the data-gate cache (default: $SHORTCUTGATES_CACHE, else "
        "~/.cache/shortcutgates); data gates are reused while the manifest's bytes, the "
        "settings and the version are unchanged",
    )
    parser.add_argument(
        "--no-cache",
        dest="reuse_cache",
        action="store_false",
        help="measure every data gate again (the fresh results replace the cache entry)",
    )
    parser.add_argument(
        "pytest_args",
        nargs=argparse.REMAINDER,
        metavar="PYTEST_ARGS",
        help="further arguments for pytest, after '--' (e.g. -- -k core_lr --junitxml out.xml)",
    )


def suite_path() -> Path:
    """Path of the installed gate-suite module."""
    from shortcutgates.gates import gate_suite

    return Path(gate_suite.__file__).resolve()


def _natural_key(path: Path) -> list:
    """``epoch2`` before ``epoch10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def expand_models(values: list[str] | None, cwd: Path) -> list[Path]:
    """``--model`` values -> model files: a file, every model file of a directory, or a glob's matches."""
    out: list[Path] = []
    for value in values or []:
        path = cwd / Path(value).expanduser()
        if any(ch in value for ch in "*?["):
            found = sorted((Path(p) for p in glob.glob(str(path))), key=_natural_key)
            if not found:
                raise ValueError(f"--model {value}: no file matches")
            out += found
        elif path.is_dir():
            found = sorted(
                (p for p in path.iterdir() if p.suffix.lower() in MODEL_SUFFIXES and p.is_file()), key=_natural_key
            )
            if not found:
                raise ValueError(f"--model {path}: directory holds no model file ({', '.join(MODEL_SUFFIXES)})")
            out += found
        elif not path.is_file():
            raise ValueError(f"--model {path}: no such model file")
        else:
            out.append(path)
    return [p.resolve() for p in out]


def resolve_paths(args: argparse.Namespace, cwd: Path) -> argparse.Namespace:
    """Validate the paths up front, so bad input is one line (exit 2), not pytest's usage block."""
    resolved = argparse.Namespace(**{**vars(args), **parse_paths(args, cwd)})
    if resolved.gate_config is None and (cwd / "pyproject.toml").is_file():
        resolved.gate_config = cwd / "pyproject.toml"
    resolved.models = expand_models(args.model, cwd)
    extra = list(args.pytest_args or [])
    resolved.pytest_args = extra[1:] if extra[:1] == ["--"] else extra
    return resolved


def pytest_argv(args: argparse.Namespace, cwd: Path) -> list[str]:
    """The pytest command line for one model (or none).

    The rootdir is the suite's own directory (test ids read ``gate_suite.py::test_gate[...]`` wherever
    the command runs); relative paths are taken from ``cwd``.
    """
    args = resolve_paths(args, cwd) if not hasattr(args, "models") else args
    suite = suite_path()
    # "--opt=value" forms: pytest would otherwise take a bare path value for a test path
    argv = [str(suite), f"--rootdir={suite.parent}", "-p", "no:cacheprovider", "-p", "no:benchmark"]
    argv += ["-p", "shortcutgates.plugin"] if _autoload_off() else []
    for flag, value in (
        ("--data", args.data),
        ("--data-root", getattr(args, "data_root", None)),
        ("--gate-report", args.gate_report),
        ("--gate-html", getattr(args, "gate_html", None)),
        ("--gate-config", args.gate_config),
    ):
        if value is not None:
            argv.append(f"{flag}={value}")
    if args.models:
        argv.append(f"--model={args.models[0]}")
    if getattr(args, "gate_input", None):
        argv.append(f"--input={args.gate_input}")
    if getattr(args, "strict", True):
        argv.append("--gate-strict")
    if getattr(args, "gate_cache", None) is not None:
        argv.append(f"--gate-cache={(cwd / Path(args.gate_cache).expanduser()).resolve()}")
    if not getattr(args, "reuse_cache", True):
        argv.append("--gate-no-cache")
    return argv + list(args.pytest_args)


def _autoload_off() -> bool:
    import os

    return bool(os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"))  # entry points off: load the plugin by name


def user_conftest(cwd: Path, suite: Path):
    """The current directory's ``conftest.py`` as a module to register as a pytest plugin, or None.

    pytest would never see it (the suite file lies in the installed package); when the package is
    installed from inside ``cwd``, pytest loads it itself. Imported without writing bytecode.
    """
    path = cwd / "conftest.py"
    if not path.is_file() or cwd in suite.parents:
        return None
    name = "shortcutgates_user_conftest"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has a loader
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    previous, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    if str(cwd) not in sys.path:
        sys.path.insert(0, str(cwd))  # what pytest's rootdir conftest import does: the user's own imports work
    try:
        sys.modules[name] = module
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = previous
    return module


def run(args: argparse.Namespace) -> int:
    """Gate one model through pytest, or several through :mod:`.sweep`; returns the exit status."""
    cwd = Path.cwd()
    args = resolve_paths(args, cwd)
    if args.data is None and not args.models:
        raise ValueError("--data DIR is needed (or --model CKPT: a shortcutgates checkpoint records its manifest)")
    if len(args.models) > 1:
        if args.pytest_args or args.gate_report or args.gate_html:
            raise ValueError(
                "with several models, pytest arguments, --gate-report and --gate-html do not apply; "
                "--out DIR gets one report per model"
            )
        if args.out is None:
            raise ValueError(f"{len(args.models)} models: name a directory for their reports with --out DIR")
        from shortcutgates.gates.sweep import gate_many

        return gate_many(
            args.data,
            args.models,
            cwd / args.out,
            config_path=args.gate_config,
            strict=args.strict,
            data_root=args.data_root,
            input=getattr(args, "gate_input", None),
            cache_dir=None if args.gate_cache is None else cwd / Path(args.gate_cache).expanduser(),
            reuse_cache=args.reuse_cache,
        )
    if args.out is not None:
        raise ValueError("--out is for several models; with one, use --gate-report FILE (and --junitxml)")
    import pytest

    plugins = [m for m in [user_conftest(cwd, suite_path())] if m is not None]
    code = int(pytest.main(pytest_argv(args, cwd), plugins=plugins))
    if code == 5:  # no test ran
        return 1 if args.strict else 0
    return EXIT_FROM_PYTEST.get(code, code)
