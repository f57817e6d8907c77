"""The ``shortcutgates`` command: thin argument parsing that calls the library.

Each sub-command lives in the module that does the work, which provides
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their
command runs, so ``shortcutgates --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .schema import DataError

COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("shortcutgates.simulate.command", "simulate paired LRG stamps with injected lensed arcs"),
    "build": ("shortcutgates.build", "build a paired / unpaired / matched manifest with LRG-disjoint splits"),
    "train": ("shortcutgates.train", "train a lens-finder CNN on a manifest and write a checkpoint"),
    "gate": ("shortcutgates.gates.command", "run the gate suite on a manifest (and a checkpoint)"),
    "experiment": ("shortcutgates.experiment", "run the proposal's experiments E1-E4 and write a report"),
    "demo": ("shortcutgates.demo", "the whole path on simulated data, ending with the E1-E4 table"),
    "report": ("shortcutgates.report", "render a report from results JSON"),
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shortcutgates", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"shortcutgates {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = None
    if argv:
        wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if wanted == name:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run(args) or 0)
    except (DataError, ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"shortcutgates {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"shortcutgates {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
