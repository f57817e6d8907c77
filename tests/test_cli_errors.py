"""The command line turns every kind of error into one line and an exit status, never a traceback."""

from __future__ import annotations

import os

import pytest

from hostile_inputs import assert_no_traceback, hand_manifest, run_cli, write_manifest


def _raiser(exc):
    def run(args):
        raise exc

    return run


@pytest.mark.parametrize(
    "exc, rc, line",
    [
        pytest.param(
            PermissionError(13, "Permission denied", "/data/m"), 2, "/data/m: Permission denied", id="permission"
        ),
        pytest.param(
            OSError(28, "No space left on device", "/out/x.pt"), 2, "/out/x.pt: No space left on device", id="disk_full"
        ),
        pytest.param(MemoryError(), 2, "out of memory", id="memory"),
        pytest.param(
            KeyboardInterrupt(), 130, "interrupted; outputs are left as they were before this run", id="ctrl_c"
        ),
        pytest.param(ValueError("first line\n  second   line"), 2, "first line second line", id="multi_line_message"),
    ],
)
def test_cli_turns_each_kind_of_error_into_one_line(exc, rc, line, monkeypatch, capsys):
    import shortcutgates.data.build as build

    monkeypatch.setattr(build, "run", _raiser(exc))
    code, out, err = run_cli(["build", "--input", "x", "--out", "y", "--mode", "paired"], capsys)
    assert code == rc
    assert err == f"shortcutgates build: error: {line}\n"
    assert_no_traceback(out + err)


def test_cli_sigterm_is_an_exit_143_with_one_line(monkeypatch, capsys):
    import signal
    import time

    import shortcutgates.data.build as build

    def run(args):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
        raise AssertionError("SIGTERM was not delivered")

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(build, "run", run)
    code, _, err = run_cli(["build", "--input", "x", "--out", "y", "--mode", "paired"], capsys)
    assert code == 143
    assert err == "shortcutgates build: error: terminated (SIGTERM); outputs are left as they were before this run\n"
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is removed again


@pytest.mark.parametrize(
    "argv, fragment",
    [
        ([], "the following arguments are required: COMMAND"),
        (["bogus"], "invalid choice: 'bogus'"),
        (["build", "--mode", "sideways", "--input", "i", "--out", "o"], "argument --mode: invalid choice: 'sideways'"),
        (["simulate", "--out", "o", "--n-lrgs", "-3", "--seed", "0"], "argument --n-lrgs: must be >= 1 (got '-3')"),
    ],
)
def test_cli_usage_errors_are_argparse_lines(argv, fragment, capsys):
    code, out, err = run_cli(argv, capsys)
    assert code == 2 and fragment in err
    assert_no_traceback(out + err)


def test_unwritable_gate_report_is_one_usage_error_line(tmp_path):
    from hostile_inputs import run_pytest_subprocess

    write_manifest(hand_manifest(12), tmp_path / "m")
    (tmp_path / "ro").write_text("a file, so no directory can be made under it")
    proc = run_pytest_subprocess(
        [
            "gate_tests",
            "-q",
            f"--data={tmp_path / 'm'}",
            f"--gate-report={tmp_path / 'ro' / 'r.json'}",
            "-k",
            "data_integrity",
        ]
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode == 4, text
    assert f"ERROR: shortcutgates: cannot write --gate-report {tmp_path / 'ro' / 'r.json'} (" in proc.stderr
    assert_no_traceback(text)
