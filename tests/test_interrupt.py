"""Killing ``simulate``, ``build`` or ``train`` leaves the previous output or the new one, never half.

Deterministic kill points: every output becomes visible through a rename (``os.replace`` for a
file, :func:`shortcutgates.data.io._exchange` or ``os.replace`` for a directory). The command runs in a
child interpreter whose k-th rename is wrapped so that the child kills itself (SIGKILL, or SIGTERM
for the clean-up tests) just *before* or just *after* that rename. So each kill lands at a known
point of a run that is provably in progress, and each outcome is known exactly: before the
publishing rename the output is absent (or the previous one), after it the output is complete.
No timing, no sleeps.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hostile_inputs import child_env, hand_manifest, write_manifest

KILL_AT_RENAME = r"""
import os, signal, sys
n, when, sig = int(sys.argv[1]), sys.argv[2], getattr(signal, sys.argv[3])
count = [0]
import shortcutgates.data.io as sgio

def die():
    os.kill(os.getpid(), sig)
    for _ in range(3):  # a backward jump: Python runs the SIGTERM handler here, before going on
        pass

def _around(rename):
    def wrapped(*args, **kwargs):
        count[0] += 1
        if count[0] == n and when == "before":
            die()
        out = rename(*args, **kwargs)
        if count[0] == n and when == "after":
            die()
        return out
    return wrapped

os.replace = _around(os.replace)
sgio._exchange = _around(sgio._exchange)
from shortcutgates.cli import main
sys.exit(main(sys.argv[4:]))
"""
"""Child program: ``python -c KILL_AT_RENAME N before|after SIGNAME ARGV...`` (N = 0: no kill)."""


def _run(argv, n: int = 0, when: str = "before", sig: str = "SIGKILL") -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", KILL_AT_RENAME, str(n), when, sig, *map(str, argv)]
    return subprocess.run(cmd, capture_output=True, text=True, env=child_env(), timeout=300)


def _renames(argv, monkeypatch) -> int:
    """Run the command in this process, counting the renames the child program would see."""
    import os

    import shortcutgates.data.io as sgio
    from shortcutgates.cli import main

    count = [0]

    def counted(rename):
        def wrapped(*args, **kwargs):
            count[0] += 1
            return rename(*args, **kwargs)

        return wrapped

    with monkeypatch.context() as m:
        m.setattr(os, "replace", counted(os.replace))
        m.setattr(sgio, "_exchange", counted(sgio._exchange))
        assert main([str(a) for a in argv]) == 0
    return count[0]


def _killed(argv, n: int, when: str, sig: str = "SIGKILL") -> subprocess.CompletedProcess:
    done = _run(argv, n, when, sig)
    expected = -signal.SIGKILL if sig == "SIGKILL" else 143  # the CLI turns SIGTERM into exit 143
    assert done.returncode == expected, (done.returncode, done.stderr[-2000:])
    return done


def _snapshot(directory: Path) -> dict | None:
    """Relative path -> bytes of every file under ``directory`` (None if it does not exist)."""
    if not directory.exists():
        return None
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _hidden(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


SIM_ARGV = [
    "simulate",
    "--n-lrgs",
    "6",
    "--seed",
    "3",
    "--stamp-size",
    "32",
    "--injections-per-lrg",
    "2:2",
    "--rows-per-file",
    "3",
    "--no-progress",
]


def test_killed_simulate_leaves_nothing_or_everything(tmp_path, monkeypatch):
    n = _renames([*SIM_ARGV, "--out", tmp_path / "ref"], monkeypatch)
    reference = _snapshot(tmp_path / "ref")
    assert n >= 4 and len(reference) == n - 1  # one rename per file, then the directory
    for k, when, expected in ((n // 2, "after", None), (n, "before", None), (n, "after", reference)):
        out = tmp_path / f"out-{k}-{when}"
        _killed([*SIM_ARGV, "--out", out], k, when)
        assert _snapshot(out) == expected, f"simulate killed {when} rename {k} of {n}"
    out = tmp_path / f"out-{n}-before"
    leftovers = [h for h in _hidden(tmp_path) if h.startswith(f".{out.name}.tmp-")]
    assert len(leftovers) == 1  # the killed run's temporary, hidden
    done = _run([*SIM_ARGV, "--out", out])
    assert done.returncode == 0, done.stderr[-2000:]
    assert _snapshot(out) == reference
    assert not (tmp_path / leftovers[0]).exists()  # its PID is gone: the next writer removed it


@pytest.fixture(scope="module")
def paired(tmp_path_factory) -> Path:
    from shortcutgates.simulate.generator import simulate_paired

    out = tmp_path_factory.mktemp("paired") / "sim"
    simulate_paired(out, 12, 5, stamp_size=32, injections_per_lrg=(2, 3), rows_per_file=50, progress=False)
    return out


def _build_argv(paired, out, mode="unpaired", seed=1):
    return ["build", "--input", paired, "--mode", mode, "--seed", seed, "--inline", "--no-progress", "--out", out]


def test_killed_build_leaves_the_previous_manifest_or_the_new_one(paired, tmp_path, monkeypatch):
    n = _renames(_build_argv(paired, tmp_path / "ref"), monkeypatch)
    reference = _snapshot(tmp_path / "ref")
    assert n == 1  # the manifest directory is published by one rename
    out = tmp_path / "out"
    assert _run(_build_argv(paired, out, "paired", 2)).returncode == 0  # a child: its PID differs from ours
    previous = _snapshot(out)
    assert previous != reference
    _killed(_build_argv(paired, out), 1, "before")
    assert _snapshot(out) == previous
    _killed(_build_argv(paired, out), 1, "after")  # exchanged, the previous one not yet removed
    assert _snapshot(out) == reference
    assert _hidden(tmp_path)
    assert _run(_build_argv(paired, out)).returncode == 0
    assert _snapshot(out) == reference and _hidden(tmp_path) == []


@pytest.mark.parametrize("command", ["build", "simulate"])
def test_sigterm_removes_temporaries_and_keeps_the_previous_output(paired, tmp_path, command):
    """SIGTERM becomes an exception in the CLI, so the directory writer removes its temporary."""
    out = tmp_path / "out"
    if command == "build":
        assert _run(_build_argv(paired, out, "paired", 2)).returncode == 0
        argv = _build_argv(paired, out)
    else:
        argv = [*SIM_ARGV, "--out", out]
    previous = _snapshot(out)
    done = _killed(argv, 1, "before", "SIGTERM")
    assert "terminated (SIGTERM)" in done.stderr
    assert _snapshot(out) == previous and _hidden(tmp_path) == []


TRAIN = [
    "--width",
    "4",
    "--blocks",
    "1",
    "--epochs",
    "4",
    "--batch-size",
    "8",
    "--no-progress",
    "--device",
    "cpu",
    "--threads",
    "1",
    "--seed",
    "7",
    "--patience",
    "10",
]


def test_killed_train_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    from shortcutgates.model.checkpoint import check_payload, read_payload

    write_manifest(hand_manifest(48, seed=4), tmp_path / "m")
    ref, ckpt = tmp_path / "ref.pt", tmp_path / "c.pt"
    argv = ["train", "--data", tmp_path / "m", *TRAIN]
    assert _renames([*argv, "--out", ref], monkeypatch) == 4  # one checkpoint per epoch
    reference = read_payload(ref)
    # killed before the 2nd checkpoint: epoch 0's stays; resumed and killed right after the next one
    for k, when, epochs in ((2, "before", 1), (1, "after", 2)):
        _killed([*argv, "--out", ckpt, "--resume"], k, when)
        payload = read_payload(ckpt)
        check_payload(ckpt, payload)
        assert len(payload["metrics"]["history"]) == payload["resume"]["epoch"] == epochs
    from shortcutgates.cli import main

    assert main([str(a) for a in [*argv, "--out", ckpt, "--resume"]]) == 0
    final = read_payload(ckpt)
    assert final["metrics"]["stop_reason"] == "epochs" and len(final["metrics"]["history"]) == 4
    for key, value in reference["state_dict"].items():
        torch.testing.assert_close(final["state_dict"][key], value, rtol=0, atol=0, msg=key)
