"""The report blocks a gate context describes: the data read, the model, and its rates at low FPR.

Functions of a :class:`~shortcutgates.gates.context.GateContext` (its ``data_info``, ``model_info`` and
``low_fpr()``), kept here so the context holds what it caches and these hold what the report shows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from shortcutgates.data.schema import LABEL_COLUMN, SPLIT_COLUMN

if TYPE_CHECKING:
    from shortcutgates.gates.context import GateContext


def low_fpr_block(context: GateContext) -> dict:
    """The report's ``low_fpr`` block (model only): per held-out split, TPR at FPR 10⁻² / 10⁻³ with
    LRG-bootstrap intervals (flagged where the split has fewer than 10/FPR negatives) and the ROC."""
    from sklearn.metrics import roc_curve

    from shortcutgates.stats import tpr_at_fpr_intervals

    out = {}
    for split in [s for s in context.splits if s != "train"]:
        sample = context.sample(split)
        if len(np.unique(sample.labels)) < 2:
            continue
        scores = context.scores(split)
        fpr, tpr, _ = roc_curve(sample.labels, scores)
        out[split] = {
            "n_neg": int((sample.labels == 0).sum()),
            "n_pos": int((sample.labels == 1).sum()),
            "tpr_at_fpr": tpr_at_fpr_intervals(
                sample.labels, scores, sample.resampling_units, n_boot=context.config.n_boot, seed=context.config.seed
            ),
            "roc": {"fpr": np.round(fpr, 6).tolist(), "tpr": np.round(tpr, 6).tolist()},
        }
    return out


def data_block(context: GateContext) -> dict:
    """The report's ``"data"`` block: the manifest, its rows, positives, negatives and LRGs per split."""
    meta = context.manifest.meta or {}
    frame = context.frame
    per_split = {}
    for split in context.splits:
        rows = frame[frame[SPLIT_COLUMN] == split]
        per_split[split] = {
            "n": int(len(rows)),
            "n_pos": int((rows[LABEL_COLUMN] == 1).sum()),
            "n_neg": int((rows[LABEL_COLUMN] == 0).sum()),
            "n_lrgs": int(rows["_group"].nunique()),
        }
    return {
        "path": str(context.data),
        "n_rows": int(len(frame)),
        "splits": per_split,
        "hand_written": context.manifest.meta is None,
        "sha256": meta.get("sha256"),
        "mode": meta.get("mode"),
        "max_samples": context.config.max_samples,
        "seed": context.config.seed,
    }


def model_block(context: GateContext) -> dict | None:
    """The report's ``"model"`` block (None without a model): path, preprocessing and the checkpoint's record."""
    if not context.has_model:
        return None
    info = {
        "path": None if context.model_path is None else str(context.model_path),
        "preprocess": context.model_preprocess_name,
    }
    payload = getattr(context._loaded, "payload", None)
    if isinstance(payload, dict):
        for key in ("format", "version", "model_config", "train_config", "data", "metrics", "seed"):
            if key in payload:
                info[key] = payload[key]
    return info
