"""The ``shortcutgates`` command: thin argument parsing that calls the library.

Each sub-command lives in the module that does the work, which provides
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their
command runs, so ``shortcutgates --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from shortcutgates import __version__

COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("shortcutgates.simulate.command", "simulate paired LRG stamps with injected lensed arcs"),
    "init": ("shortcutgates.init", "set up gate_tests/, a [tool.shortcutgates] block and the CI workflow in a project"),
    "build": ("shortcutgates.data.build", "build a paired / unpaired / matched manifest with LRG-disjoint splits"),
    "train": ("shortcutgates.model.train", "train a lens-finder CNN on a manifest and write a checkpoint"),
    "gate": ("shortcutgates.gates.command", "run the gate suite on a manifest (and a checkpoint)"),
    "experiment": ("shortcutgates.experiment.run", "run the proposal's experiments E1-E4 and write a report"),
    "demo": ("shortcutgates.experiment.demo", "the whole path on simulated data, ending with the E1-E4 table"),
    "report": ("shortcutgates.experiment.report", "render a report from results JSON"),
    "calibrate": (
        "shortcutgates.calibrate.command",
        "measure the gates' false alarms, power and interval coverage over many seeds",
    ),
}


EXIT_BAD_INPUT = 2
"""Bad input, bad usage, or a file that cannot be read or written (one line on stderr)."""
EXIT_INTERNAL = 3
"""An unexpected error: a bug. One line; ``SHORTCUTGATES_DEBUG=1`` shows the traceback."""
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

DEBUG_ENV = "SHORTCUTGATES_DEBUG"


class _Terminated(SystemExit):
    """SIGTERM as an exception, so ``finally``/``except BaseException`` clean-ups (atomic writes) run."""


def _on_sigterm(signum, frame):  # pragma: no cover - exercised through subprocess tests
    raise _Terminated(EXIT_TERMINATED)


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (newlines and runs of spaces collapsed)."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        target = f" -> {exc.filename2}" if exc.filename2 is not None else ""
        text = f"{exc.filename}{target}: {exc.strerror}"
    else:
        text = str(exc)
    return " ".join(text.split()) or type(exc).__name__


def _load_command(name: str):
    module = COMMANDS[name][0]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise _Unavailable(
            f"command '{name}' is not available in this installation (module {module}: {one_line(exc)})"
        ) from None


class _Unavailable(Exception):
    pass


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shortcutgates", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"shortcutgates {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = None
    if argv:
        wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (_module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if wanted == name:
            _load_command(name).add_arguments(p)
    return parser


def _error(command: str | None, message: str) -> None:
    prefix = "shortcutgates" + (f" {command}" if command else "")
    print(f"{prefix}: error: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command; returns its exit status. No Python traceback reaches the user.

    Exit status: the command's own (0 success; ``gate``: pytest's), 2 bad input or usage (one
    line naming file, row and column where known), 3 an unexpected error (one line; set
    ``SHORTCUTGATES_DEBUG=1`` for the traceback), 130 interrupted, 143 terminated (SIGTERM).
    """
    import signal

    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    previous = None
    if threading_main():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        command = args.command
        return int(_load_command(command).run(args) or 0)
    except _Terminated:
        _error(command, "terminated (SIGTERM); outputs are left as they were before this run")
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        _error(command, "interrupted; outputs are left as they were before this run")
        return EXIT_INTERRUPTED
    except _Unavailable as exc:
        _error(command, str(exc))
        return EXIT_BAD_INPUT
    except (ValueError, OSError, MemoryError) as exc:  # DataError, CheckpointError, files
        if os.environ.get(DEBUG_ENV):
            raise
        _error(command, one_line(exc) if not isinstance(exc, MemoryError) else "out of memory")
        return EXIT_BAD_INPUT
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        _error(
            command,
            f"internal error ({type(exc).__name__}: {one_line(exc)}); "
            f"rerun with {DEBUG_ENV}=1 for the traceback and please report it",
        )
        return EXIT_INTERNAL
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def threading_main() -> bool:
    """Signal handlers can only be installed from the main thread."""
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
