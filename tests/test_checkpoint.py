"""Checkpoints: round trip, and every kind of bad file refused with a clear one-line CheckpointError."""

from __future__ import annotations

import collections
import io

import pytest
import torch

from shortcutgates.model.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    CheckpointError,
    load_checkpoint,
    preprocess_record,
    save_checkpoint,
)
from shortcutgates.model.network import ModelConfig, build_model

torch.set_num_threads(1)  # tiny tensors: extra threads only contend on the shared 2-core CI

CONFIG = ModelConfig(width=4, blocks=(1,))


def _payload(**over) -> dict:
    torch.manual_seed(0)
    model = build_model(CONFIG)
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model_config": CONFIG.to_dict(),
        "state_dict": model.state_dict(),
        "preprocess": preprocess_record("residual"),
        "train_config": {"epochs": 1},
        "data": {"manifest": "/x", "sha256": "0" * 64},
        "metrics": {"best_val_auroc": 0.9},
        "seed": 0,
    }
    payload.update(over)
    return payload


def test_round_trip_rebuilds_the_same_model(tmp_path):
    path = tmp_path / "m.pt"
    payload = _payload()
    save_checkpoint(path, payload)
    loaded = load_checkpoint(path)
    assert loaded.preprocess == "residual" and not loaded.model.training
    assert torch.load(path, weights_only=True)["format"] == FORMAT  # docs/design.md#checkpoint: plain weights-only load
    ref = build_model(CONFIG)
    ref.load_state_dict(payload["state_dict"])
    ref.eval()
    x = torch.randn(3, 3, 16, 16)
    torch.testing.assert_close(loaded.model(x), ref(x))


def test_save_refuses_incomplete_payload_and_leaves_old_file(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(path, _payload())
    before = path.read_bytes()
    bad = _payload()
    del bad["metrics"]
    with pytest.raises(ValueError, match="lacks key.*metrics"):
        save_checkpoint(path, bad)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary left behind


class Evil:
    """An arbitrary class: pickling it into a checkpoint must make the file unloadable."""

    def __init__(self):
        self.x = 1


def _write(path, obj) -> None:
    torch.save(obj, path)


def _cases():
    sd_other = build_model(ModelConfig(width=8, blocks=(1,))).state_dict()
    no_key = _payload()
    del no_key["preprocess"]
    return {
        "missing_key": (lambda p: _write(p, no_key), r"lacks key\(s\) preprocess"),
        "other_format": (lambda p: _write(p, _payload(format="lightning")), r"format is 'lightning', expected"),
        "bare_state_dict": (
            lambda p: _write(p, build_model(CONFIG).state_dict()),
            r"a bare state_dict \(\d+ tensors.*cannot be run.*shortcutgates_scorer.*docs/scorers.md",
        ),
        "newer_version": (lambda p: _write(p, _payload(version=FORMAT_VERSION + 1)), r"version \d+ is newer"),
        "other_architecture": (lambda p: _write(p, _payload(state_dict=sd_other)), r"does not fit the architecture"),
        "unknown_preprocess": (lambda p: _write(p, _payload(preprocess={"name": "sqrt"})), r"must be one of"),
        "needs_unpickling": (lambda p: _write(p, _payload(metrics={"obj": Evil()})), r"needs unpickling"),
        "not_a_dict": (lambda p: _write(p, [1, 2, 3]), r"holds a list"),
        "truncated": (lambda p: p.write_bytes(_bytes(_payload())[:500]), r"truncated or corrupt"),
        "garbage": (lambda p: p.write_bytes(b"not a torch file at all"), r"truncated or corrupt"),
        "directory": (lambda p: p.mkdir(), r"is a directory"),
        "missing_file": (lambda p: None, r"no such checkpoint file"),
    }


def _bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.mark.parametrize("case", list(_cases()))
def test_bad_checkpoint_is_refused_with_one_line(tmp_path, case):
    make, pattern = _cases()[case]
    path = tmp_path / "bad.pt"
    make(path)
    with pytest.raises(CheckpointError, match=pattern) as err:
        load_checkpoint(path)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(path))
    if case == "needs_unpickling":  # says why it is refused and how to fix the file
        assert "could run arbitrary code" in msg and "re-save" in msg and "weights_only=True" in msg
    assert isinstance(err.value, ValueError)


def test_ordered_dict_state_dict_is_fine(tmp_path):
    """torch's own OrderedDict state dicts are allowed by weights_only loading."""
    path = tmp_path / "m.pt"
    save_checkpoint(path, _payload(state_dict=collections.OrderedDict(build_model(CONFIG).state_dict())))
    assert load_checkpoint(path).preprocess == "residual"
