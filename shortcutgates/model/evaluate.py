"""Scoring images and manifests with a checkpoint; AUROC with an LRG bootstrap; TPR at fixed FPR.

* :func:`predict_scores` takes RAW stamps (nanomaggies) and applies the checkpoint's recorded
  preprocessing, so the gates can score masked or transplanted images exactly as the model sees
  real ones.
* :func:`score_manifest` scores every row of a manifest once per (checkpoint sha256, manifest
  sha256) and keeps the scores in an on-disk cache, so the gates need a single inference pass.
* :func:`evaluate_scores` / :func:`evaluate` report AUROC with a bootstrap interval resampling LRGs
  (:func:`shortcutgates.stats.grouped_bootstrap`) and the true-positive rate at FPR 1e-2 and 1e-3.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd
import torch

from shortcutgates.data import io as sgio

from shortcutgates.data import manifest as sgmanifest
from shortcutgates.model.checkpoint import LoadedCheckpoint, checkpoint_sha256, load_checkpoint
from shortcutgates.model.dataset import iter_raw_chunks, manifest_sha256, select_splits
from shortcutgates.model.preprocess import get_preprocessor
from shortcutgates.data.schema import LABEL_COLUMN, LRG_ID_COLUMN, SPLIT_COLUMN
from shortcutgates.stats import Estimate, grouped_bootstrap, tpr_at_fpr

FPR_LEVELS: tuple[float, ...] = (1e-2, 1e-3)
SCORE_COLUMN = "score"
KEY_COLUMNS: tuple[str, ...] = ("manifest_file", "manifest_row", SPLIT_COLUMN, LABEL_COLUMN, "ra", "dec")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is an error."""
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' was requested but torch sees no CUDA device (use --device cpu or auto)")
    return torch.device(device)


@torch.no_grad()
def logits_of(model: torch.nn.Module, inputs: np.ndarray, *, batch_size: int = 256, device=None) -> np.ndarray:
    """Model logits for PREPROCESSED inputs ``(N, 3, H, W)``, in eval mode; returns float64 ``(N,)``."""
    device = next(model.parameters()).device if device is None else resolve_device(device)
    was_training = model.training
    model.eval()
    out = np.empty(len(inputs), np.float64)
    for start in range(0, len(inputs), batch_size):
        x = torch.from_numpy(
            np.array(inputs[start : start + batch_size], dtype=np.float32)
        )  # a writable copy: inputs may be a read-only cache
        out[start : start + len(x)] = model(x.to(device)).double().cpu().numpy()
    model.train(was_training)
    return out


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, float64."""
    logits = np.asarray(logits, np.float64)
    return np.exp(-np.logaddexp(0.0, -logits))


def predict_scores(loaded: LoadedCheckpoint, images: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Lens probability for RAW stamps, applying the checkpoint's preprocessing.

    Parameters
    ----------
    loaded : LoadedCheckpoint
        From :func:`shortcutgates.model.checkpoint.load_checkpoint`.
    images : ndarray, shape (N, 3, H, W) or (3, H, W)
        Stamps in nanomaggies (bands g, r, z), e.g. masked or transplanted by a gate.

    Returns
    -------
    ndarray, shape (N,), float64 in (0, 1): ``sigmoid(logit)``, monotone in the logit.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[1] != loaded.model.config.in_channels:
        raise ValueError(
            f"predict_scores: images must have shape (N, {loaded.model.config.in_channels}, H, W) "
            f"in nanomaggies (got {images.shape})"
        )
    fn = get_preprocessor(loaded.preprocess)
    out = np.empty(len(images), np.float64)
    for start in range(0, len(images), batch_size):
        chunk = fn(images[start : start + batch_size])
        out[start : start + len(chunk)] = logits_of(loaded.model, chunk, batch_size=batch_size)
    return sigmoid(out)


def default_cache_dir() -> Path:
    """``$SHORTCUTGATES_CACHE`` or ``$XDG_CACHE_HOME/shortcutgates`` (``~/.cache/shortcutgates``)."""
    env = os.environ.get("SHORTCUTGATES_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "shortcutgates"


def _score_all(loaded: LoadedCheckpoint, frame: pd.DataFrame, batch_size: int, progress: bool) -> np.ndarray:
    from tqdm.auto import tqdm

    scores = np.full(len(frame), np.nan)
    bar = tqdm(total=len(frame), desc="score", unit="stamp", disable=None if progress else True, leave=False)
    for pos, images, _ in iter_raw_chunks(frame, chunk=batch_size):
        scores[pos] = predict_scores(loaded, images, batch_size=batch_size)
        bar.update(len(pos))
    bar.close()
    return scores


def score_manifest(
    ckpt_path,
    manifest_path,
    splits: Sequence[str] | str | None = None,
    *,
    cache_dir=None,
    batch_size: int = 256,
    device="cpu",
    progress: bool = False,
) -> pd.DataFrame:
    """Scores of a manifest's rows, cached on disk per (checkpoint sha256, manifest sha256).

    All rows are scored on the first call; later calls (any ``splits``) read the cache.

    Returns
    -------
    DataFrame with ``manifest_file``, ``manifest_row``, ``split``, ``label``, ``ra``, ``dec``,
    ``lrg_id`` (when the manifest has it) and ``score`` (lens probability), rows of ``splits``.
    """
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    ck_sha, mf_sha = checkpoint_sha256(ckpt_path), manifest_sha256(manifest_path)
    cache = cache_dir / "scores" / f"{ck_sha[:24]}-{mf_sha[:24]}.parquet"
    if cache.exists():
        scored = pd.read_parquet(cache)
    else:
        manifest = sgmanifest.read_manifest(manifest_path)
        loaded = load_checkpoint(ckpt_path, map_location=resolve_device(device))
        frame = manifest.frame
        cols = [c for c in KEY_COLUMNS + (LRG_ID_COLUMN,) if c in frame]
        scored = frame[cols].copy()
        scored[SCORE_COLUMN] = _score_all(loaded, frame, batch_size, progress)
        scored["manifest_file"] = scored["manifest_file"].astype(str)
        sgio.write_parquet_atomic(scored, cache)
    return select_splits(scored, splits)


class DetectionMetrics(NamedTuple):
    """Detection performance of scores on one set of rows."""

    auroc: Estimate
    """AUROC with its LRG-bootstrap interval."""
    tpr: dict
    """``{fpr: true-positive rate}`` for each fpr in :data:`FPR_LEVELS`."""
    n_pos: int
    n_neg: int


def lrg_groups(frame: pd.DataFrame, tolerance_arcsec: float = 0.5) -> np.ndarray:
    """LRG identity of each row: ``lrg_id`` checked against the positions, or derived by sky matching (docs/design.md#manifest)."""
    from shortcutgates.data.identity import ensure_lrg_ids

    return ensure_lrg_ids(frame, tolerance_arcsec)[LRG_ID_COLUMN].astype(str).to_numpy()


def evaluate_scores(
    labels, scores, groups, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> DetectionMetrics:
    """AUROC (LRG bootstrap CI) and TPR at FPR 1e-2, 1e-3; both classes are required."""
    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, np.float64)
    est = grouped_bootstrap(labels, scores, np.asarray(groups), n_boot=n_boot, seed=seed, level=level)
    tpr = {f: tpr_at_fpr(labels, scores, f) for f in FPR_LEVELS}
    return DetectionMetrics(est, tpr, int((labels == 1).sum()), int((labels == 0).sum()))


def evaluate(ckpt_path, manifest_path, split: str = "test", **kw) -> DetectionMetrics:
    """Score one split of a manifest (cached) and compute :class:`DetectionMetrics`."""
    n_boot, seed = kw.pop("n_boot", 1000), kw.pop("seed", 0)
    scored = score_manifest(ckpt_path, manifest_path, [split], **kw)
    if scored.empty:
        raise ValueError(f"evaluate: split {split!r} has no rows in {manifest_path}")
    return evaluate_scores(scored[LABEL_COLUMN], scored[SCORE_COLUMN], lrg_groups(scored), n_boot=n_boot, seed=seed)
