"""The state of a training run between epochs, as the checkpoint stores it: :class:`Progress` (the
counters, and :func:`stop_reason`: when to stop), the payload written after each epoch, and reading
it back for ``shortcutgates train --resume`` (same configuration and manifest, weights that fit).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from shortcutgates import __version__
from shortcutgates.model.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    CheckpointError,
    check_payload,
    model_from_payload,
    preprocess_record,
    read_payload,
)

if TYPE_CHECKING:
    from shortcutgates.model.train import TrainConfig


@dataclass
class Progress:
    """Where a training run stands after its last finished epoch (stored as the checkpoint's ``resume``)."""

    epoch: int = 0
    """Epochs finished (the next epoch to run, 0-based)."""
    best_val_auroc: float = -1.0
    best_epoch: int = -1
    """0-based epoch of the best validation AUROC (-1: none yet)."""
    bad_epochs: int = 0
    """Epochs since the best one (early stopping counts these)."""
    history: list = dataclasses.field(default_factory=list)
    """One metrics row per finished epoch."""
    seconds: float = 0.0
    """Training wall time so far, summed over resumed runs. Unit: s."""
    samples: int = 0
    """Training rows seen so far."""
    stop_reason: str | None = None

    def record(self, row: dict, config: TrainConfig) -> bool:
        """Add the metrics row of the epoch just finished; True if its validation AUROC is the best so far."""
        self.history.append(row)
        better = row["val_auroc"] > self.best_val_auroc
        if better:
            self.best_val_auroc, self.best_epoch, self.bad_epochs = row["val_auroc"], row["epoch"], 0
        else:
            self.bad_epochs += 1
        self.epoch = row["epoch"] + 1
        self.stop_reason = stop_reason(self.epoch, self.bad_epochs, self.seconds, config)
        return better


def stop_reason(epochs_done: int, bad_epochs: int, seconds: float, config: TrainConfig) -> str | None:
    """Why training stops after ``epochs_done`` epochs (None: go on).

    ``epochs`` when all are done; ``early_stopping`` after ``patience`` epochs without a better
    validation AUROC; ``time_budget`` once ``max_minutes`` of training time are spent.
    """
    if epochs_done >= config.epochs:
        return "epochs"
    if bad_epochs >= config.patience:
        return "early_stopping"
    if config.max_minutes is not None and seconds > 60 * config.max_minutes:
        return "time_budget"
    return None


def state_copy(model: torch.nn.Module) -> dict:
    """The model's weights, copied to the CPU."""
    return {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}


def resume_payload(out_ckpt: Path, config: TrainConfig, data_sha: str) -> dict | None:
    """The checkpoint at ``out_ckpt`` to resume from (None: there is none); a ValueError when it has no resume
    state, another configuration or another manifest (sha256 ``data_sha``)."""
    if not out_ckpt.exists():
        return None
    payload = read_payload(out_ckpt)
    check_payload(out_ckpt, payload)
    if "resume" not in payload:
        raise ValueError(f"{out_ckpt}: has no resume state; cannot --resume from it")
    saved = dict(payload["train_config"])
    saved.pop("device", None)
    if saved != config.resume_key():
        diff = sorted(k for k in set(saved) | set(config.resume_key()) if saved.get(k) != config.resume_key().get(k))
        raise ValueError(f"{out_ckpt}: --resume with a different configuration ({', '.join(diff)} differ)")
    if payload["data"].get("sha256") != data_sha:
        raise ValueError(f"{out_ckpt}: --resume on a different manifest (sha256 differs from the checkpoint's)")
    return payload


def restore(path: Path, payload: dict, model, opt) -> Progress:
    """Load the resume state into model and optimiser and return the counters; any mismatch is a CheckpointError."""
    resume = payload["resume"]
    fields = [f.name for f in dataclasses.fields(Progress)]
    missing = [k for k in ("state_dict", "optimizer", *fields) if k not in resume]
    if missing:
        raise CheckpointError(f"{path}: resume state lacks key(s) {', '.join(missing)}")
    model_from_payload(path, payload)  # the best weights must fit the architecture too
    model_from_payload(path, {"model_config": payload["model_config"], "state_dict": resume["state_dict"]})
    model.load_state_dict(resume["state_dict"])
    try:
        opt.load_state_dict(resume["optimizer"])
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(
            f"{path}: optimizer state does not fit the model ({' '.join(str(exc).split())[:160]})"
        ) from None
    return Progress(**{k: resume[k] for k in fields})


def checkpoint_payload(model_cfg, best_state, config, manifest, sha, metrics, resume) -> dict:
    """What the checkpoint file holds (docs/design.md#checkpoint); ``resume`` None: no resume state."""
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model_config": model_cfg.to_dict(),
        "state_dict": best_state,
        "preprocess": preprocess_record(config.preprocess),
        "train_config": config.to_dict(),
        "data": {"manifest": str(Path(manifest).resolve()), "sha256": sha},
        "metrics": metrics,
        "seed": int(config.seed),
        "package_version": __version__,
        "resume": resume,
    }
