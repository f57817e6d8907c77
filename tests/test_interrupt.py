"""Hardening: killing ``simulate``, ``build`` or ``train`` leaves the previous output or none.

Each command runs once to completion (the reference, which also gives its duration); then it is
killed with SIGKILL at seeded random fractions of that duration. After every kill the output must
be absent, the previous complete output, or the new complete output (equal to the reference) —
never half of one. A rerun (``train --resume``) then completes and equals the reference.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hostile_inputs import child_env, hand_manifest, write_manifest

SEED = 20261126
KILLS = 2
"""Kill points per command (seeded fractions of the reference run's duration)."""


def _cmd(*argv) -> list[str]:
    return [sys.executable, "-m", "shortcutgates.cli", *map(str, argv)]


ENV = child_env()


def _kill_during_write(argv, out: Path, delay: float, sig=signal.SIGKILL) -> int | None:
    """Start ``argv``; once it starts writing (a hidden sibling ``.NAME.*`` of ``out`` appears, or
    ``out`` itself), wait ``delay`` seconds and send ``sig``. Returns the exit status (None: killed)."""
    existed = out.exists()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    try:
        while proc.poll() is None and not ((out.exists() and not existed) or any(out.parent.glob(f".{out.name}.*"))):
            time.sleep(0.002)
        proc.wait(timeout=delay)
        assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]
        return proc.returncode
    except subprocess.TimeoutExpired:
        proc.send_signal(sig)
        proc.wait(timeout=60)
        return None
    finally:
        proc.stderr.close()


def _snapshot(directory: Path) -> dict | None:
    """Relative path -> bytes of every file under ``directory`` (None if it does not exist)."""
    if not directory.exists():
        return None
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _delays(name: str, duration: float) -> np.ndarray:
    """Seeded kill delays spread over the in-process duration of the command's work."""
    rng = np.random.default_rng([SEED, sum(map(ord, name))])
    return np.sort(rng.uniform(0.0, 1.2, KILLS)) * duration


def _timed(fn, *args, **kw) -> float:
    start = time.perf_counter()
    fn(*args, **kw)
    return time.perf_counter() - start


SIM = dict(n_lrgs=6, seed=3, stamp_size=32, injections_per_lrg=(2, 2), rows_per_file=3, progress=False)
SIM_ARGV = ["simulate", "--n-lrgs", "6", "--seed", "3", "--stamp-size", "32", "--injections-per-lrg", "2:2",
            "--rows-per-file", "3", "--no-progress"]


def test_killed_simulate_leaves_nothing_or_everything(tmp_path):
    from shortcutgates.simulate.generator import simulate_paired

    duration = _timed(simulate_paired, tmp_path / "ref", **SIM)
    reference = _snapshot(tmp_path / "ref")
    assert len(reference) >= 4  # several files: a kill can fall between two of them
    out = tmp_path / "out"
    killed = 0
    for delay in _delays("simulate", duration):
        killed += _kill_during_write(_cmd(*SIM_ARGV, "--out", out), out, delay) is None
        state = _snapshot(out)
        assert state in (None, {}, reference), f"half-written simulate output after a kill {delay:.2f} s in"
    assert killed >= 1  # at least one kill landed while it ran
    if _snapshot(out) in (None, {}):
        simulate_paired(out, **SIM)
    assert _snapshot(out) == reference


@pytest.fixture(scope="module")
def paired(tmp_path_factory) -> Path:
    from shortcutgates.simulate.generator import simulate_paired

    out = tmp_path_factory.mktemp("paired") / "sim"
    simulate_paired(out, 12, 5, stamp_size=32, injections_per_lrg=(2, 3), rows_per_file=50, progress=False)
    return out


BUILD = dict(mode="unpaired", seed=1, inline=True, progress=False)


def test_killed_build_leaves_the_previous_manifest_or_the_new_one(paired, tmp_path):
    from shortcutgates.build import build_manifest

    duration = _timed(build_manifest, paired, tmp_path / "ref", **BUILD)
    reference = _snapshot(tmp_path / "ref")
    out = tmp_path / "out"
    build_manifest(paired, out, mode="paired", seed=2, progress=False)
    previous = _snapshot(out)
    assert previous != reference
    argv = _cmd("build", "--input", paired, "--mode", "unpaired", "--seed", "1", "--inline", "--no-progress",
                "--out", out)
    killed = 0
    for delay in _delays("build", duration):
        killed += _kill_during_write(argv, out, delay) is None
        assert _snapshot(out) in (previous, reference), f"half-written manifest after a kill {delay:.2f} s in"
    assert killed >= 1
    build_manifest(paired, out, **BUILD)
    assert _snapshot(out) == reference
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")]
    assert all(p.endswith((".tmp", ".old")) for p in leftovers)  # hidden, never read as a manifest


def test_sigterm_cleans_up_temporary_files(paired, tmp_path):
    """SIGTERM is turned into an exception by the CLI, so atomic writers remove their temporaries."""
    from shortcutgates.build import build_manifest

    duration = _timed(build_manifest, paired, tmp_path / "ref", **BUILD)
    out = tmp_path / "out"
    argv = _cmd("build", "--input", paired, "--mode", "unpaired", "--seed", "1", "--inline", "--no-progress",
                "--out", out)
    for delay in _delays("sigterm", duration / 4):
        rc = _kill_during_write(argv, out, delay, signal.SIGTERM)
        assert rc in (None, 0)
        assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")]
        assert _snapshot(out) in (None, _snapshot(tmp_path / "ref"))


TRAIN = ["--width", "4", "--blocks", "1", "--epochs", "4", "--batch-size", "8", "--no-progress", "--device", "cpu",
         "--threads", "1", "--seed", "7", "--patience", "10"]


def test_killed_train_resumes_to_the_uninterrupted_weights(tmp_path):
    from shortcutgates.checkpoint import check_payload, read_payload
    from shortcutgates.cli import main

    write_manifest(hand_manifest(48, seed=4), tmp_path / "m")
    ref, ckpt = tmp_path / "ref.pt", tmp_path / "c.pt"
    duration = _timed(main, [str(a) for a in ["train", "--data", tmp_path / "m", "--out", ref, *TRAIN]])
    reference = read_payload(ref)
    argv = _cmd("train", "--data", tmp_path / "m", "--out", ckpt, "--resume", *TRAIN)
    killed = 0
    for delay in _delays("train", duration / 2):
        killed += _kill_during_write(argv, ckpt, delay) is None
        if ckpt.exists():  # a complete checkpoint of some finished epoch, never a torn file
            payload = read_payload(ckpt)
            check_payload(ckpt, payload)
            assert payload["resume"]["epoch"] == len(payload["metrics"]["history"]) >= 1
    assert killed >= 1
    assert main([str(a) for a in ["train", "--data", tmp_path / "m", "--out", ckpt, "--resume", *TRAIN]]) == 0
    final = read_payload(ckpt)
    assert final["metrics"]["stop_reason"] == "epochs" and len(final["metrics"]["history"]) == 4
    for key, value in reference["state_dict"].items():
        torch.testing.assert_close(final["state_dict"][key], value, rtol=0, atol=0, msg=key)


def test_simulate_removes_temporaries_of_killed_runs(tmp_path):
    from shortcutgates.simulate.generator import simulate_paired

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.tmp-{int(dead.stdout)}"
    (stale / "train").mkdir(parents=True)
    (stale / "train" / "part-00000.parquet").write_bytes(b"half")
    simulate_paired(tmp_path / "out", **{**SIM, "n_lrgs": 2})
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
