"""Hardening: hostile and broken checkpoints are refused by every entry point that loads one.

The hostile file pickles an object whose ``__reduce__`` would run ``touch MARKER``; the marker's
absence proves that nothing was unpickled. Entry points: ``shortcutgates gate --model``,
``pytest gate_tests --model`` (both in a subprocess, as a user runs them) and ``shortcutgates
train --resume`` (in-process through :func:`shortcutgates.cli.main`).
"""

from __future__ import annotations

import io

import pytest
import torch

from hostile_inputs import (
    assert_no_traceback,
    evil_checkpoint,
    hand_manifest,
    run_cli,
    run_cli_subprocess,
    run_pytest_subprocess,
    write_manifest,
)
from shortcutgates.model.checkpoint import FORMAT, FORMAT_VERSION, CheckpointError, preprocess_record
from shortcutgates.model.network import ModelConfig, build_model
from toy_manifests import TINY_TRAIN_ARGS

torch.set_num_threads(1)

REFUSED = "refused, the file needs unpickling of arbitrary objects"
TRAIN = [*TINY_TRAIN_ARGS, "--epochs", "1"]


def resave_hint_given(text: str) -> bool:
    """The refusal says why (code could run) and how to re-save the file safely."""
    return (
        "could run arbitrary code" in text
        and "re-save" in text
        and "weights_only" in text
        and "docs/scorers.md" in text
        and ".pt2" in text
        and "shortcutgates_scorer" in text
    )


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    directory = tmp_path_factory.mktemp("m")
    write_manifest(hand_manifest(12), directory)
    return directory


# --- the hostile pickle --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gate_cli_run(manifest, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gate_cli")
    ckpt = evil_checkpoint(tmp / "evil.pt", tmp / "MARKER")
    proc = run_cli_subprocess(["gate", "--data", manifest, "--model", ckpt, "--", "-q"], cwd=tmp)
    return proc, tmp / "MARKER", ckpt


@pytest.fixture(scope="module")
def pytest_run(manifest, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pytest_model")
    ckpt = evil_checkpoint(tmp / "evil.pt", tmp / "MARKER")
    proc = run_pytest_subprocess(["gate_tests", "-q", "--data", manifest, "--model", ckpt])
    return proc, tmp / "MARKER", ckpt


@pytest.mark.parametrize("runner", ["gate_cli_run", "pytest_run"])
def test_hostile_checkpoint_is_refused_by_the_gate_suite(runner, request):
    proc, marker, ckpt = request.getfixturevalue(runner)
    text = proc.stdout + proc.stderr
    assert proc.returncode not in (0, 1), text  # not a gate verdict: the run is refused
    assert f"{ckpt}: {REFUSED}" in text
    assert "posix.system" in text  # names what the pickle wanted to call
    assert not marker.exists()


@pytest.mark.parametrize("runner", ["gate_cli_run", "pytest_run"])
def test_hostile_checkpoint_refusal_is_one_clear_line(runner, request):
    proc, _, ckpt = request.getfixturevalue(runner)
    text = proc.stdout + proc.stderr
    assert_no_traceback(text)
    line = next(line for line in text.splitlines() if str(ckpt) in line)
    assert resave_hint_given(line)


def test_hostile_checkpoint_is_refused_by_train_resume(manifest, tmp_path, capsys):
    ckpt = evil_checkpoint(tmp_path / "evil.pt", tmp_path / "MARKER")
    before = ckpt.read_bytes()
    rc, out, err = run_cli(["train", "--data", manifest, "--out", ckpt, "--resume", *TRAIN], capsys)
    assert rc == 2
    assert err.startswith(f"shortcutgates train: error: {ckpt}: {REFUSED} (it names posix.system)")
    assert err.count("\n") == 1 and "safe_globals" not in err  # torch's allow-listing advice is not repeated
    assert_no_traceback(out + err)
    assert not (tmp_path / "MARKER").exists()
    assert ckpt.read_bytes() == before  # refused, not overwritten


def test_hostile_checkpoint_refusal_says_how_to_resave(manifest, tmp_path, capsys):
    ckpt = evil_checkpoint(tmp_path / "evil.pt", tmp_path / "MARKER")
    _, _, err = run_cli(["train", "--data", manifest, "--out", ckpt, "--resume", *TRAIN], capsys)
    assert resave_hint_given(err)


# --- broken checkpoints ------------------------------------------------------------------------
CONFIG = ModelConfig(width=4, blocks=(1,))


def _payload(**over) -> dict:
    torch.manual_seed(0)
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model_config": CONFIG.to_dict(),
        "state_dict": build_model(CONFIG).state_dict(),
        "preprocess": preprocess_record("raw_robust"),
        "train_config": {"epochs": 1},
        "data": {"manifest": "/x", "sha256": "0" * 64},
        "metrics": {},
        "seed": 0,
    }
    payload.update(over)
    return payload


def _bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _without(key):
    payload = _payload()
    del payload[key]
    return payload


BROKEN = {
    "other_architecture": (
        lambda p: torch.save(_payload(state_dict=build_model(ModelConfig(width=8, blocks=(2,))).state_dict()), p),
        "state_dict does not fit the architecture in model_config",
    ),
    "missing_key": (lambda p: torch.save(_without("model_config"), p), "checkpoint lacks key(s) model_config"),
    "newer_version": (
        lambda p: torch.save(_payload(version=FORMAT_VERSION + 7), p),
        f"checkpoint version {FORMAT_VERSION + 7} is newer than this shortcutgates reads "
        f"({FORMAT_VERSION}); upgrade it",
    ),
    "truncated": (lambda p: p.write_bytes(_bytes(_payload())[:777]), "truncated or corrupt"),
    "empty": (lambda p: p.write_bytes(b""), "not a torch zip file (starts with b'')"),
    "directory": (lambda p: p.mkdir(), "is a directory"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_checkpoint_is_refused_by_the_gate_context(case, manifest, tmp_path):
    """What ``--model`` reports (the plugin turns it into a usage error)."""
    from shortcutgates.gates.context import GateContext

    make, fragment = BROKEN[case]
    make(tmp_path / "c.pt")
    with pytest.raises(CheckpointError) as err:
        GateContext(manifest, model=tmp_path / "c.pt")
    assert str(err.value).startswith(f"{tmp_path / 'c.pt'}: ") and fragment in str(err.value)
    assert "\n" not in str(err.value)


@pytest.fixture(scope="module")
def resumable(manifest, tmp_path_factory) -> dict:
    """The payload of a real one-epoch run on ``manifest`` (so --resume gets past config and data checks)."""
    from shortcutgates.cli import main

    path = tmp_path_factory.mktemp("trained") / "c.pt"
    assert main([str(a) for a in ["train", "--data", manifest, "--out", path, *TRAIN]]) == 0
    return torch.load(path, weights_only=True)


def _resume_cases(payload: dict) -> dict:
    other = dict(
        payload, resume=dict(payload["resume"], state_dict=build_model(ModelConfig(width=8, blocks=(2,))).state_dict())
    )
    missing = {k: v for k, v in payload.items() if k != "model_config"}
    return {
        "other_architecture": (lambda p: torch.save(other, p), "state_dict does not fit the architecture"),
        "missing_key": (lambda p: torch.save(missing, p), "checkpoint lacks key(s) model_config"),
        "newer_version": (
            lambda p: torch.save(dict(payload, version=FORMAT_VERSION + 7), p),
            f"checkpoint version {FORMAT_VERSION + 7} is newer than this shortcutgates reads",
        ),
        "truncated": (lambda p: p.write_bytes(_bytes(payload)[:4096]), "truncated or corrupt"),
        "empty": (lambda p: p.write_bytes(b""), "not a torch zip file (starts with b'')"),
    }


@pytest.mark.parametrize("case", ["other_architecture", "missing_key", "newer_version", "truncated", "empty"])
def test_broken_checkpoint_is_refused_by_train_resume(case, manifest, resumable, tmp_path, capsys):
    make, fragment = _resume_cases(resumable)[case]
    make(tmp_path / "c.pt")
    before = (tmp_path / "c.pt").read_bytes()
    rc, out, err = run_cli(["train", "--data", manifest, "--out", tmp_path / "c.pt", "--resume", *TRAIN], capsys)
    assert_no_traceback(out + err)
    assert err.startswith(f"shortcutgates train: error: {tmp_path / 'c.pt'}: ") and fragment in err, err
    assert rc == 2 and err.count("\n") == 1
    assert (tmp_path / "c.pt").read_bytes() == before


def test_train_resume_into_a_directory_is_refused(manifest, tmp_path, capsys):
    (tmp_path / "c.pt").mkdir()
    rc, _, err = run_cli(["train", "--data", manifest, "--out", tmp_path / "c.pt", "--resume", *TRAIN], capsys)
    assert rc == 2
    assert err == f"shortcutgates train: error: {tmp_path / 'c.pt'}: is a directory, not a checkpoint file\n"


def test_model_directory_is_named_as_a_directory(manifest, tmp_path):
    (tmp_path / "c.pt").mkdir()
    proc = run_pytest_subprocess(["gate_tests", "-q", f"--data={manifest}", f"--model={tmp_path / 'c.pt'}"])
    assert proc.returncode == 4
    assert "argument --model: is a directory, expected a model file (.pt, .pt2, .onnx)" in proc.stderr
    assert_no_traceback(proc.stdout + proc.stderr)
