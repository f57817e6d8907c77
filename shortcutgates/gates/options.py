"""The gate options and their parsers, declared once for the pytest plugin and ``shortcutgates gate``.

:data:`PATH_OPTIONS` holds the options both front ends take with the same meaning (``--data``,
``--gate-report``, ``--gate-html``, ``--gate-config``): the pytest plugin adds them with their
parsers as ``type`` (:func:`add_pytest_options`), ``shortcutgates gate`` declares them from the same
table and runs the same parsers on paths taken relative to the current directory
(:func:`parse_paths`). ``--model`` differs (pytest: one model; the command: one or many) and
``--gate-strict`` / ``--no-strict`` are each front end's own default.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from shortcutgates.gates.records import DATA_INPUTS

SCORER_FIXTURE = "shortcutgates_scorer"
"""Name of the user's fixture returning ``f(images (N, 3, H, W) nanomaggies g, r, z) -> (N,) scores``."""


# --- option parsers: reject bad values at the command line ------------------------------------
def parse_data_dir(value: str) -> Path:
    """``--data``: an existing directory or parquet file."""
    path = Path(value).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such directory or file: {value!r}")
    if path.is_file() and path.suffix != ".parquet":
        raise argparse.ArgumentTypeError(f"expected a manifest directory or a .parquet file (got {value!r})")
    return path.resolve()


def parse_data_root(value: str) -> Path:
    """``--data-root``: an existing directory."""
    path = Path(value).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"no such directory: {value!r}")
    return path.resolve()


def parse_checkpoint(value: str) -> Path:
    """``--model``: an existing model file (checkpoint ``.pt``, ``.pt2`` or ``.onnx``)."""
    path = Path(value).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"is a directory, expected a model file (.pt, .pt2, .onnx): {value!r}")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such checkpoint file: {value!r}")
    return path.resolve()


def parse_report_path(value: str) -> Path:
    """``--gate-report``: a file path to write (its directory is created); not a directory."""
    path = Path(value).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"is a directory, expected a file name: {value!r}")
    return path.resolve()


def parse_pyproject(value: str) -> Path:
    """``--gate-config``: an existing TOML file."""
    path = Path(value).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {value!r}")
    return path.resolve()


class PathOption(NamedTuple):
    """One path option: its flag, metavar, parser and help (``%(default)r`` is pytest's)."""

    flag: str
    metavar: str
    parse: Callable[[str], Path]
    help: str

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


PATH_OPTIONS: tuple[PathOption, ...] = (
    PathOption(
        "--data",
        "DIR",
        parse_data_dir,
        "Manifest directory (or parquet file) the gates measure; without it the gate suite is skipped and "
        "the plugin does nothing (shortcutgates gate: the manifest the checkpoints record).",
    ),
    PathOption(
        "--data-root",
        "DIR",
        parse_data_root,
        "Directory the manifest's relative source pointers are taken from, instead of the source root its "
        "manifest.json records (the paired input moved).",
    ),
    PathOption(
        "--gate-report",
        "FILE",
        parse_report_path,
        "Write the gate results as JSON (schema shortcutgates.report/2) to FILE, atomically.",
    ),
    PathOption(
        "--gate-html",
        "FILE",
        parse_report_path,
        "Also write the gate report as one HTML page to FILE (for CI artifacts).",
    ),
    PathOption(
        "--gate-config",
        "PYPROJECT",
        parse_pyproject,
        "pyproject.toml whose [tool.shortcutgates] table sets thresholds, sample caps, bootstrap and "
        "waivers (default: the rootdir's, or the current directory's, pyproject.toml if there is one).",
    ),
)
MODEL_HELP = (
    "Model for the model gates: a shortcutgates checkpoint (.pt; without --data the gates measure the "
    "manifest it records), a torch.export program (.pt2) or an ONNX file (.onnx), the last two with an "
    f"input contract (docs/scorers.md). Alternatively define a fixture named {SCORER_FIXTURE!r}. Without "
    "either the model gates are skipped with that reason."
)
STRICT_HELP = (
    "Fail the run when gates the suite expects did not run (deselected, no model, missing splits); "
    "the default of 'shortcutgates gate'."
)


INPUT_HELP = (
    "Data-only runs: the preprocessing the data probes (core_lr_auc) decide on; the other inputs are "
    "reported beside it. A model run decides on the model's declared input. Default: "
    "[tool.shortcutgates] input, else 'raw_robust'"
)


def add_pytest_options(group: Any) -> None:
    """The plugin's options (a pytest option group), parsed at the command line."""
    by_flag = {o.flag: o for o in PATH_OPTIONS}
    group.addoption(
        "--data",
        metavar="DIR",
        type=parse_data_dir,
        default=None,
        help=by_flag["--data"].help + " Default: %(default)r",
    )
    group.addoption(
        "--model", metavar="CKPT", type=parse_checkpoint, default=None, help=MODEL_HELP + " Default: %(default)r"
    )
    for option in PATH_OPTIONS[1:]:
        group.addoption(
            option.flag,
            metavar=option.metavar,
            type=option.parse,
            default=None,
            help=option.help + " Default: %(default)r",
        )
    group.addoption("--input", dest="gate_input", choices=DATA_INPUTS, default=None, help=INPUT_HELP)
    group.addoption("--gate-strict", action="store_true", default=False, help=STRICT_HELP + " Default: %(default)r")
    group.addoption(
        "--gate-cache",
        metavar="DIR",
        default=None,
        help="Directory of the data-gate cache (shortcutgates.gates.cache): data-only cases are "
        "reused when the manifest's bytes, the gate settings and the version are unchanged. "
        "Default: $SHORTCUTGATES_CACHE, else ~/.cache/shortcutgates",
    )
    group.addoption(
        "--gate-no-cache",
        action="store_true",
        default=False,
        help="Measure every data gate again (the fresh results still replace the cache entry). Default: %(default)r",
    )


def add_command_options(parser: argparse.ArgumentParser) -> None:
    """The same path options for ``shortcutgates gate`` (checked later by :func:`parse_paths`)."""
    for option in PATH_OPTIONS:
        parser.add_argument(option.flag, metavar=option.metavar, default=None, help=option.help)


def parse_paths(args: argparse.Namespace, cwd: Path) -> dict[str, Path | None]:
    """The path options of ``args`` parsed relative to ``cwd``; ``ValueError`` in one line naming the flag."""
    out: dict[str, Path | None] = {}
    for option in PATH_OPTIONS:
        value = getattr(args, option.dest)
        try:
            out[option.dest] = None if value is None else option.parse(str(cwd / Path(value).expanduser()))
        except argparse.ArgumentTypeError as exc:
            raise ValueError(f"{option.flag} {value}: {exc}") from None
    return out


def recorded_data(model: Path) -> Path:
    """The training manifest a checkpoint records, after checking its sha256; ``ValueError`` in one line
    for a file that records none (``.onnx``, ``.pt2``) or a checkpoint that cannot be used."""
    if model.suffix.lower() in (".onnx", ".pt2"):
        raise ValueError(f"{model}: a {model.suffix} file records no manifest; pass the data to gate with --data DIR")
    from shortcutgates.model.checkpoint import recorded_manifest

    return recorded_manifest(model)
