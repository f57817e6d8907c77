"""Decisions: a metric, its LRG-bootstrap interval and a threshold become a verdict (docs/design.md#gates).

* ``pass``: the whole interval lies on the good side of the threshold.
* ``fail``: the estimate lies on the bad side.
* ``inconclusive``: the estimate is on the good side but the interval crosses the threshold. The
  message states how many LRGs would decide, from the usual ``1/sqrt(n)`` shrinking of the
  interval: ``n_needed = n_groups · (half-width / distance to threshold)²``.
* Exact quantities (counts) carry no interval: pass or fail only.
* A reported-only gate (threshold None) passes whenever it measures.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ..stats import Estimate, grouped_bootstrap
from .records import Gate, GateCase, GateConfig, GateResult


def weighted_auroc_metric(labels: np.ndarray, scores: np.ndarray) -> Callable:
    """A fast ``metric(labels, scores, weights)`` for :func:`~shortcutgates.stats.grouped_bootstrap`.

    Ties are bucketed once, so each resample costs two ``bincount`` calls instead of a sort. The
    returned metric ignores the ``labels``/``scores`` it is called with, which must be the arrays
    given here (the bootstrap passes them back unchanged); it equals ``roc_auc_score`` with
    ``sample_weight`` (ties count one half).
    """
    labels = np.asarray(labels).astype(bool)
    _, bucket = np.unique(np.asarray(scores, np.float64), return_inverse=True)
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
        raise ValueError(f"auroc: needs both classes (got only label {int(labels[0]) if len(labels) else '-'} "
                         f"in {len(labels)} rows)")
    return metric


def bootstrap_auroc(labels, scores, groups, config: GateConfig) -> Estimate:
    """AUROC with its LRG-bootstrap interval, using the suite's ``n_boot``, ``seed`` and ``level``."""
    labels = np.asarray(labels).astype(int)
    metric = weighted_auroc_metric(labels, scores)
    return grouped_bootstrap(labels, scores, groups, metric=metric, n_boot=config.n_boot,
                             seed=config.seed, level=config.level)


def bootstrap_metric(labels, values, groups, metric: Callable, config: GateConfig) -> Estimate:
    """Any ``metric(labels, values, weights)`` with its LRG-bootstrap interval."""
    return grouped_bootstrap(np.asarray(labels).astype(int), values, groups, metric=metric,
                             n_boot=config.n_boot, seed=config.seed, level=config.level)


def decide(value: float, ci: tuple[float, float] | None, threshold: float | None,
           direction: str) -> str:
    """Verdict of a measured value: ``pass``, ``fail`` or ``inconclusive``."""
    if threshold is None:
        return "pass"
    bad = value > threshold if direction == "max" else value < threshold
    if bad:
        return "fail"
    if ci is None:
        return "pass"
    lo, hi = ci
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "inconclusive"
    good = hi <= threshold if direction == "max" else lo >= threshold
    return "pass" if good else "inconclusive"


def groups_to_decide(value: float, ci: tuple[float, float], threshold: float, direction: str,
                     n_groups: int) -> int | None:
    """LRGs needed for the interval to clear the threshold at the same estimate (None: never)."""
    half = (ci[1] - value) if direction == "max" else (value - ci[0])
    distance = abs(threshold - value)
    if distance <= 0 or not math.isfinite(half):
        return None
    return int(math.ceil(n_groups * (half / distance) ** 2 - 1e-9))  # tolerance for float round-off


def _describe(value, ci, threshold, direction, verdict, n_groups, what) -> str:
    exact = ci is None and float(value).is_integer()
    text = f"{what} {int(value)}" if exact else f"{what} {value:.3f}"
    if ci is not None:
        text += f" [{ci[0]:.3f}, {ci[1]:.3f}]" if all(map(math.isfinite, ci)) else " [no interval]"
    if threshold is None:
        return text + " (reported, not gated)"
    sign = "≤" if direction == "max" else "≥"
    text += f"; required {sign} {threshold:g}"
    if verdict == "inconclusive":
        if ci is None or not all(map(math.isfinite, ci)):
            text += f"; too few LRGs ({n_groups}) for an interval"
        else:
            need = groups_to_decide(value, ci, threshold, direction, n_groups)
            text += (f"; the interval crosses the threshold: about {need} LRGs (now {n_groups}) would decide"
                     if need else "; the estimate sits on the threshold")
    return text


def make_result(config: GateConfig, case: GateCase, gate: Gate, *, value: float,
                ci: tuple[float, float] | None, n: int, n_groups: int, what: str,
                note: str = "", extra: dict | None = None) -> GateResult:
    """Decide a measured case and build its :class:`GateResult`."""
    threshold = config.threshold_for(case, gate.threshold)
    verdict = decide(value, ci, threshold, gate.direction)
    message = _describe(value, ci, threshold, gate.direction, verdict, n_groups, what)
    if note:
        message += f"; {note}"
    return GateResult(case.id, case.gate, dict(case.params), case.split, float(value), ci, threshold,
                      gate.direction, verdict, int(n), int(n_groups), message, dict(extra or {}))


def estimate_result(config: GateConfig, case: GateCase, gate: Gate, estimate: Estimate, what: str,
                    note: str = "", extra: dict | None = None) -> GateResult:
    """:func:`make_result` for a bootstrapped :class:`~shortcutgates.stats.Estimate`."""
    return make_result(config, case, gate, value=estimate.value, ci=(estimate.lo, estimate.hi), n=estimate.n,
                       n_groups=estimate.n_groups, what=what, note=note, extra=extra)


def _empty(config: GateConfig, case: GateCase, gate: Gate, verdict: str, message: str) -> GateResult:
    return GateResult(case.id, case.gate, dict(case.params), case.split, None, None,
                      config.threshold_for(case, gate.threshold), gate.direction, verdict, 0, 0, message)


def error_result(config: GateConfig, case: GateCase, gate: Gate, reason: str) -> GateResult:
    """The probe could not measure: verdict ``error`` with the reason (never a pass)."""
    return _empty(config, case, gate, "error", reason)


def skipped_result(config: GateConfig, case: GateCase, gate: Gate, reason: str) -> GateResult:
    """A case that was not run (a model gate without a model)."""
    return _empty(config, case, gate, "skipped", reason)
