"""Statistics shared by evaluation and gates: AUROC with an LRG-resampling bootstrap interval.

Rows of one LRG are not independent (in paired data an LRG contributes a stamp and its control;
in the survey catalogue up to 18 injections share one control), so every interval here resamples
LRGs, not rows.
"""

from __future__ import annotations

import threading
from typing import Callable, NamedTuple, Sequence

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from shortcutgates import parallel


class Estimate(NamedTuple):
    """A metric with its bootstrap confidence interval."""

    value: float
    lo: float
    """Lower end of the interval (nan when no interval could be formed)."""
    hi: float
    n: int
    """Rows used."""
    n_groups: int
    """Distinct LRGs used (the bootstrap unit)."""
    n_boot: int
    """Resamples that entered the interval (degenerate single-class resamples are left out)."""


def _group_codes(groups: np.ndarray) -> tuple[np.ndarray, int]:
    _, codes = np.unique(np.asarray(groups), return_inverse=True)
    return codes.ravel(), int(codes.max()) + 1 if len(codes) else 0


def auroc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Area under the ROC curve; raises ``ValueError`` naming the problem for a single class."""
    labels = np.asarray(labels).astype(int)
    classes = np.unique(labels if weights is None else labels[np.asarray(weights) > 0])
    if len(classes) != 2:
        raise ValueError(f"auroc: needs both classes (got only {classes.tolist()} in {len(labels)} rows)")
    return float(roc_auc_score(labels, scores, sample_weight=weights))


def _bucket_aurocs(labels: np.ndarray, bucket: np.ndarray, n_buckets: int, weights: np.ndarray) -> np.ndarray:
    """Weighted AUROCs of ``B`` resamples from tie buckets: shape (B,); NaN where a class has no weight.

    ``bucket`` (N,) or (B, N): each row's rank among the distinct scores (of its resample's row);
    ``weights`` (B, N). The sums per bucket are one ``bincount`` over all resamples (each resample's
    buckets shifted by ``b * n_buckets``); the arithmetic is that of the one-resample metric, and with
    integer weights (bootstrap counts) every sum is exact, so each value is the same float.
    """
    n_boot = len(weights)
    shift = (np.arange(n_boot) * n_buckets)[:, None]
    flat = np.broadcast_to(bucket, weights.shape) + shift
    wp = np.bincount(flat[:, labels].ravel(), weights[:, labels].ravel(), n_boot * n_buckets).reshape(n_boot, -1)
    wn = np.bincount(flat[:, ~labels].ravel(), weights[:, ~labels].ravel(), n_boot * n_buckets).reshape(n_boot, -1)
    total_p, total_n = wp.sum(axis=1), wn.sum(axis=1)
    below = np.cumsum(wn, axis=1) - wn
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (wp * (below + 0.5 * wn)).sum(axis=1) / (total_p * total_n)
    out[(total_p <= 0) | (total_n <= 0)] = np.nan
    return out


AUROC_BATCH = 250
"""Resamples whose AUROCs :func:`weighted_aurocs` computes in one pass (bounds its memory: a few
``(AUROC_BATCH, N)`` float64 arrays)."""

BATCH_ELEMENTS = 2_000_000
"""At most this many resample weights (resamples × rows, float64: 16 MB) are drawn at once by
:func:`grouped_bootstrap`."""


def weighted_aurocs(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC of many weighted resamples at once (ties count one half), shape (B,).

    Parameters
    ----------
    labels : ndarray, shape (N,)
        0/1.
    scores : ndarray, shape (N,) or (B, N)
        One score per row, shared by every resample, or a row of scores per resample (a probe
        refitted on each resample).
    weights : ndarray, shape (B, N)
        Row weights of each resample (bootstrap counts).

    Returns
    -------
    ndarray, shape (B,): NaN where a resample holds no weight in a class. Each value equals
    ``roc_auc_score(labels, scores_b, sample_weight=weights_b)`` and, for integer weights, is the
    same float as :func:`weighted_auroc_metric` gives for that resample (tested).
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, np.float64)
    weights = np.atleast_2d(np.asarray(weights, np.float64))
    out = np.empty(len(weights))
    if scores.ndim == 1:
        _, bucket = np.unique(scores, return_inverse=True)
        bucket = bucket.ravel()
        n_buckets = int(bucket.max()) + 1 if len(bucket) else 0
    for start in range(0, len(weights), AUROC_BATCH):
        w = weights[start : start + AUROC_BATCH]
        if scores.ndim == 2:  # per resample: rank its scores, equal scores share a bucket
            s = scores[start : start + AUROC_BATCH]
            order = np.argsort(s, axis=1)  # any order of equal scores: they share a bucket
            s_sorted = np.take_along_axis(s, order, axis=1)
            new = np.ones(s.shape, bool)
            new[:, 1:] = s_sorted[:, 1:] != s_sorted[:, :-1]
            bucket = np.empty(s.shape, np.int64)
            np.put_along_axis(bucket, order, np.cumsum(new, axis=1) - 1, axis=1)
            n_buckets = s.shape[1]
        out[start : start + len(w)] = _bucket_aurocs(labels, bucket, n_buckets, w)
    return out


def weighted_auroc_metric(labels: np.ndarray, scores: np.ndarray) -> Callable:
    """A fast ``metric(labels, scores, weights)`` for :func:`grouped_bootstrap`.

    Ties are bucketed once, so each resample costs two ``bincount`` calls instead of a sort. The
    returned metric ignores the ``labels``/``scores`` it is called with, which must be the arrays
    given here (the bootstrap passes them back unchanged); it equals ``roc_auc_score`` with
    ``sample_weight`` (ties count one half). Its attribute ``batch(weights (B, N)) -> (B,)`` gives
    many resamples at once (:func:`weighted_aurocs`; NaN where a class has no weight), the same
    floats for integer weights.
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, np.float64)
    _, bucket = np.unique(scores, return_inverse=True)
    bucket = bucket.ravel()
    n_buckets = int(bucket.max()) + 1 if len(bucket) else 0
    pos_b, neg_b = bucket[labels], bucket[~labels]

    def metric(_labels, _scores, weights=None) -> float:
        w = np.ones(len(labels)) if weights is None else np.asarray(weights, np.float64)
        wp = np.bincount(pos_b, w[labels], minlength=n_buckets)
        wn = np.bincount(neg_b, w[~labels], minlength=n_buckets)
        total_p, total_n = wp.sum(), wn.sum()
        if total_p <= 0 or total_n <= 0:
            raise ValueError("auroc: needs both classes in the (weighted) sample")
        below = np.cumsum(wn) - wn
        return float((wp * (below + 0.5 * wn)).sum() / (total_p * total_n))

    if labels.all() or not labels.any():
        raise ValueError(
            f"auroc: needs both classes (got only label {int(labels[0]) if len(labels) else '-'} in {len(labels)} rows)"
        )
    metric.batch = lambda weights: weighted_aurocs(labels, scores, weights)  # type: ignore[attr-defined]
    return metric


def bootstrap_counts(rng: np.random.Generator, n_units: int, n_boot: int) -> np.ndarray:
    """How often each unit is drawn in ``n_boot`` resamples of ``n_units`` with replacement: (n_boot, n_units).

    One ``rng.integers`` call for all resamples: the same numbers, and the same generator state after,
    as one call per resample (tested), so resample ``b`` is the same for any batching.
    """
    draws = rng.integers(0, n_units, (n_boot, n_units))
    shift = (np.arange(n_boot) * n_units)[:, None]
    return np.bincount((draws + shift).ravel(), minlength=n_boot * n_units).reshape(n_boot, n_units)


SEEDED_DRAWS_ELEMENTS = 32_000_000
"""At most this many bootstrap counts (uint16/int64) are kept by :func:`seeded_counts` for reuse."""

_SEEDED: dict = {}
_SEEDED_LOCK = threading.Lock()


def seeded_counts(seed: int, n_units: int, sizes: tuple[int, ...]) -> list[np.ndarray]:
    """:func:`bootstrap_counts` of consecutive batches of ``sizes`` resamples from ``default_rng(seed)``.

    The draws depend only on these arguments, and every interval of a run (each property, each model of a
    sweep) draws again from the same seed over the same units, so the last few are kept (read-only;
    up to :data:`SEEDED_DRAWS_ELEMENTS` counts, as uint16 where ``n_units`` < 65536: a count never exceeds
    ``n_units``): the same integers as drawing them again."""
    key = (int(seed), int(n_units), tuple(int(s) for s in sizes))
    with _SEEDED_LOCK:
        found = _SEEDED.pop(key, None)
        if found is not None:
            _SEEDED[key] = found  # most recently used last
            return found
    rng = np.random.default_rng(seed)
    dtype = np.uint16 if n_units < 65536 else np.int64
    found = [bootstrap_counts(rng, n_units, size).astype(dtype) for size in sizes]
    for counts in found:
        counts.flags.writeable = False
    with _SEEDED_LOCK:
        _SEEDED[key] = found
        while sum(sum(c.size for c in v) for v in _SEEDED.values()) > SEEDED_DRAWS_ELEMENTS and len(_SEEDED) > 1:
            _SEEDED.pop(next(iter(_SEEDED)))
    return found


def grouped_bootstrap(
    labels: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    *,
    metric=auroc,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Estimate:
    """Metric with a percentile bootstrap interval that resamples LRGs with replacement.

    Parameters
    ----------
    labels, scores, groups : ndarray, shape (N,)
        Labels 0/1, classifier scores, and the LRG identity of each row.
    metric : callable(labels, scores, weights) -> float
        Evaluated on the full sample and on each resample (resamples enter as integer weights:
        an LRG drawn k times has all its rows weighted k). A resample whose value is NaN (a class
        lost in one part of a composite metric) is left out; with fewer than half the resamples
        left the interval is NaN.
    n_boot : int
        Number of resamples (≥ 500 for gate decisions).
    level : float
        Central coverage of the interval.
    """
    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, dtype=np.float64)
    codes, n_groups = _group_codes(groups)
    value = metric(labels, scores, None)
    classes = np.unique(labels)
    stats: list = []
    batch = getattr(metric, "batch", None)  # many resamples in one pass (the same values)
    chunk = max(1, min(AUROC_BATCH, BATCH_ELEMENTS // max(len(labels), 1)))
    starts = list(range(0, n_boot, chunk))
    threads = (
        parallel.pool_threads() if batch is not None else 1
    )  # a batch metric is numpy work: its chunks run on threads
    # resample b draws the same units for any chunking: drawn in order from the seed (kept for the next interval)
    drawn = seeded_counts(seed, n_groups, tuple(min(n_boot - start, chunk) for start in starts))
    for first in range(0, len(starts), threads):
        counts = drawn[first : first + threads]

        def measure(draws: np.ndarray) -> np.ndarray:
            weights = draws[:, codes].astype(np.float64)  # (B, N)
            n_classes = sum((weights[:, labels == c].sum(axis=1) > 0).astype(int) for c in classes)
            weights = weights[n_classes >= 2]  # a resample that lost a class is left out
            if batch is not None:
                return np.asarray(batch(weights), np.float64)
            return np.array([metric(labels, scores, w) for w in weights], np.float64)

        for values in parallel.thread_map(measure, counts, threads):
            # a resample a metric cannot measure (NaN) is left out, never poisons the interval
            stats.extend(values[np.isfinite(values)].tolist())
    if len(stats) < max(10, n_boot // 2):
        return Estimate(value, np.nan, np.nan, len(labels), n_groups, len(stats))
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return Estimate(value, float(lo), float(hi), len(labels), n_groups, len(stats))


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr: float) -> float:
    """True-positive rate at the largest threshold whose false-positive rate is ≤ ``fpr``."""
    f, t, _ = roc_curve(np.asarray(labels).astype(int), scores)
    ok = f <= fpr
    return float(t[ok].max()) if ok.any() else 0.0


# --- lens-search rates at low false-positive rates -------------------------------------------
FPR_LEVELS: tuple[float, ...] = (1e-2, 1e-3)
NEGATIVES_PER_FPR = 10.0
"""A rate at FPR f is estimated from at least ``NEGATIVES_PER_FPR / f`` negatives, or flagged."""


def tpr_metric(fpr: float):
    """``metric(labels, scores, weights)`` for :func:`shortcutgates.stats.grouped_bootstrap`: TPR at FPR ≤ ``fpr``."""
    from sklearn.metrics import roc_curve

    def metric(labels, scores, weights=None) -> float:
        labels = np.asarray(labels).astype(int)
        if weights is not None:
            keep = np.asarray(weights) > 0
            labels, scores, weights = labels[keep], np.asarray(scores)[keep], np.asarray(weights)[keep]
        if len(np.unique(labels)) < 2:
            return float("nan")
        f, t, _ = roc_curve(labels, scores, sample_weight=weights)
        ok = f <= fpr
        return float(t[ok].max()) if ok.any() else 0.0

    return metric


def tpr_at_fpr_intervals(
    labels, scores, groups, *, n_boot: int = 1000, seed: int = 0, levels: Sequence[float] = FPR_LEVELS
) -> dict:
    """``{str(fpr): {"value", "ci", "n_neg", "n_neg_needed", "note"}}``, intervals resampling LRGs."""
    labels = np.asarray(labels).astype(int)
    n_neg = int((labels == 0).sum())
    out = {}
    for fpr in levels:
        est = grouped_bootstrap(
            labels, np.asarray(scores, np.float64), np.asarray(groups), metric=tpr_metric(fpr), n_boot=n_boot, seed=seed
        )
        needed = int(np.ceil(NEGATIVES_PER_FPR / fpr))
        note = (
            ""
            if n_neg >= needed
            else (
                f"{n_neg} negatives < 10/FPR = {needed}: at most {int(np.floor(fpr * n_neg))} negative(s) above the "
                f"threshold, not an estimate at FPR {fpr:g}"
            )
        )
        out[f"{fpr:g}"] = {
            "value": est.value,
            "ci": [est.lo, est.hi],
            "n_neg": n_neg,
            "n_neg_needed": needed,
            "note": note,
        }
    return out
