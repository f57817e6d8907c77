"""Training: determinism, resume == uninterrupted, class balance, schedule, CLI, and DDP with gloo."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from shortcutgates import cli
from shortcutgates.model.checkpoint import load_checkpoint, read_payload
from shortcutgates.model.network import ModelConfig
from shortcutgates.model.train import TrainConfig, train
from shortcutgates.model.train_epoch import class_balanced_weights, lr_at
from shortcutgates.model.train_state import stop_reason

from toy_manifests import write_toy_manifest

torch.set_num_threads(1)  # tiny tensors: extra threads only contend on the shared 2-core CI

TINY = ModelConfig(width=4, blocks=(1, 1))


def _config(**kw) -> TrainConfig:
    base = dict(epochs=3, batch_size=8, lr=1e-2, seed=0, device="cpu", model=TINY, patience=10)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return write_toy_manifest(tmp_path_factory.mktemp("toy") / "m", n=48, size=16)


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _history(payload) -> list:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in payload["metrics"]["history"]]


def test_training_writes_a_loadable_checkpoint_and_learns(manifest, tmp_path):
    out = tmp_path / "c.pt"
    summary = train(manifest, out, _config(epochs=4), progress=False)
    assert not torch.are_deterministic_algorithms_enabled()  # the global switch is given back
    assert summary.epochs_run == 4 and summary.stop_reason == "epochs"
    loaded = load_checkpoint(out)
    p = loaded.payload
    assert loaded.preprocess == "raw_robust"
    assert p["metrics"]["best_epoch"] == summary.best_epoch
    assert p["metrics"]["n_train"] == 24 and p["metrics"]["n_val"] == 12
    assert len(p["metrics"]["history"]) == 4
    assert p["data"]["sha256"] and p["train_config"]["model"] == TINY.to_dict()
    assert summary.best_val_auroc > 0.75  # the toy ring is easy; chance is 0.5


def test_same_seed_same_weights_other_seed_other_weights(manifest, tmp_path):
    a = train(manifest, tmp_path / "a.pt", _config(epochs=2), progress=False)
    b = train(manifest, tmp_path / "b.pt", _config(epochs=2), progress=False)
    c = train(manifest, tmp_path / "c.pt", _config(epochs=2, seed=1), progress=False)
    pa, pb, pc = (read_payload(s.checkpoint) for s in (a, b, c))
    assert _states_equal(pa["resume"]["state_dict"], pb["resume"]["state_dict"])
    assert not _states_equal(pa["resume"]["state_dict"], pc["resume"]["state_dict"])


class Killed(Exception):
    pass


def test_resume_after_a_kill_equals_the_uninterrupted_run(manifest, tmp_path):
    config = _config(epochs=3, core_dropout="1:3:0.5")
    full = train(manifest, tmp_path / "full.pt", config, progress=False)

    def kill_after_first_epoch(epoch, row):
        if epoch == 0:
            raise Killed

    with pytest.raises(Killed):
        train(manifest, tmp_path / "part.pt", config, progress=False, callback=kill_after_first_epoch)
    assert read_payload(tmp_path / "part.pt")["resume"]["epoch"] == 1
    resumed = train(manifest, tmp_path / "part.pt", config, progress=False, resume=True)
    pf, pr = read_payload(full.checkpoint), read_payload(resumed.checkpoint)
    assert resumed.epochs_run == 3
    assert _states_equal(pf["state_dict"], pr["state_dict"])
    assert _states_equal(pf["resume"]["state_dict"], pr["resume"]["state_dict"])
    assert _history(pf) == _history(pr)


def test_resume_with_another_configuration_is_refused(manifest, tmp_path):
    train(manifest, tmp_path / "c.pt", _config(epochs=1), progress=False)
    with pytest.raises(ValueError, match=r"different configuration \(lr differ\)"):
        train(manifest, tmp_path / "c.pt", _config(epochs=1, lr=0.5), progress=False, resume=True)


def test_resume_state_of_another_architecture_is_refused(manifest, tmp_path):
    from shortcutgates.model.checkpoint import CheckpointError, save_checkpoint
    from shortcutgates.model.network import build_model

    out = tmp_path / "c.pt"
    train(manifest, out, _config(epochs=1), progress=False)
    payload = read_payload(out)
    payload["resume"]["state_dict"] = build_model(ModelConfig(width=8, blocks=(2,))).state_dict()
    save_checkpoint(out, payload)
    before = out.read_bytes()
    with pytest.raises(CheckpointError, match="state_dict does not fit the architecture"):
        train(manifest, out, _config(epochs=1), progress=False, resume=True)
    assert out.read_bytes() == before


def test_output_that_is_a_directory_is_refused_before_training(manifest, tmp_path):
    with pytest.raises(ValueError, match="is a directory, expected a file path"):
        train(manifest, tmp_path, _config(epochs=1), progress=False)
    with pytest.raises(ValueError, match="is a directory, not a checkpoint file"):
        train(manifest, tmp_path, _config(epochs=1), progress=False, resume=True)


def test_class_weights_balance_classes_and_keep_row_weights():
    labels = np.array([1, 1, 1, 0])
    w = class_balanced_weights(labels, np.array([1.0, 1.0, 2.0, 1.0], np.float32))
    assert w[labels == 1].sum() == pytest.approx(w[labels == 0].sum())
    assert w.mean() == pytest.approx(1.0)
    assert w[2] == pytest.approx(2 * w[0])
    with pytest.raises(ValueError, match="class 0 has no rows"):
        class_balanced_weights(np.array([1, 1]), np.ones(2, np.float32))


def test_learning_rate_warms_up_then_follows_a_cosine():
    cfg = _config(lr=1.0, warmup_fraction=0.1)
    lrs = [lr_at(s, 100, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0) and lrs[55] == pytest.approx(0.5, abs=0.02)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] < 0.01


@pytest.mark.parametrize(
    "done,bad,seconds,expected",
    [
        (3, 0, 0.0, "epochs"),
        (1, 2, 0.0, "early_stopping"),
        (1, 1, 0.0, None),
        (1, 0, 61.0, "time_budget"),
    ],
)
def test_stop_reason(done, bad, seconds, expected):
    assert stop_reason(done, bad, seconds, _config(epochs=3, patience=2, max_minutes=1.0)) == expected


def test_split_without_both_classes_is_refused(tmp_path):
    import pandas as pd

    path = write_toy_manifest(tmp_path / "m", n=24)
    frame = pd.read_parquet(path / "part-0.parquet")
    frame.loc[frame["split"] == "val", "label"] = 0
    frame.to_parquet(path / "part-0.parquet", index=False)
    with pytest.raises(ValueError, match="split 'val' needs rows of both classes"):
        train(path, tmp_path / "c.pt", _config(epochs=1), progress=False)


def test_cli_train_writes_checkpoint(manifest, tmp_path, capsys):
    out = tmp_path / "cli.pt"
    rc = cli.main(
        [
            "train",
            "--data",
            str(manifest),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--width",
            "4",
            "--blocks",
            "1",
            "--batch-size",
            "8",
            "--device",
            "cpu",
            "--preprocess",
            "residual",
            "--core-dropout",
            "3:0.5",
            "--no-progress",
        ]
    )
    assert rc == 0
    p = load_checkpoint(out).payload
    assert p["preprocess"]["name"] == "residual" and p["train_config"]["core_dropout"] == "3:0.5"
    assert "best val AUROC" in capsys.readouterr().err


def test_cli_rejects_bad_core_dropout(manifest, tmp_path, capsys):
    rc = cli.main(["train", "--data", str(manifest), "--out", str(tmp_path / "x.pt"), "--core-dropout", "3"])
    assert rc == 2 and "--core-dropout must be R:P" in capsys.readouterr().err


def test_ddp_two_processes_gloo(manifest, tmp_path):
    """torchrun with two CPU processes (gloo): rank 0 writes one checkpoint recording world_size 2."""
    out = tmp_path / "ddp.pt"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "shortcutgates.cli",
        "train",
        "--data",
        str(manifest),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--width",
        "4",
        "--blocks",
        "1",
        "--batch-size",
        "8",
        "--device",
        "cpu",
        "--no-progress",
        "--threads",
        "1",
    ]
    for _ in range(2):  # torchrun picks a free port then binds it: retry only if another process took it meanwhile
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        if proc.returncode == 0 or not any(m in proc.stderr for m in ("Address already in use", "EADDRINUSE")):
            break
    assert proc.returncode == 0, proc.stderr[-3000:]
    p = load_checkpoint(out).payload
    assert p["metrics"]["world_size"] == 2 and len(p["metrics"]["history"]) == 2
    assert proc.stderr.count("best val AUROC") == 1  # only rank 0 reports
