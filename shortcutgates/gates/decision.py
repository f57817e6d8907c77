"""Decisions: a :class:`Measurement`, its threshold and the row's claim become a verdict.

The rule (``docs/design.md#verdict-rule``), with the interval at the suite's ``level`` (95 %):

* ``pass``: the whole interval lies on the claim's side of the threshold (an equivalence claim:
  the signed interval lies inside ``±margin``, two one-sided tests). Exact quantities (counts) carry
  no interval: their value decides.
* ``fail``: the estimate lies on the wrong side (``|estimate| > margin`` for an equivalence claim).
* ``inconclusive``: the estimate is on the claim's side, the interval is not. The message states how
  many LRGs would decide from the usual ``1/sqrt(n)`` shrinking of the interval, or, when that is
  more than :data:`REACHABLE_FACTOR` times the current number, that no reachable sample decides.
* ``error``: the gate could not measure (raised), the estimate is not finite, or an AUC lies far
  below chance (:func:`below_chance`): a cross-validation artefact or a flipped scorer, never a pass.
* ``reported``: a row without a threshold: measured and shown, nothing decided.
* ``skipped``: a model case without a model.

Beside the verdict each decided case says whether its violation is *established*
(:func:`established_violation`): the whole interval lies on the bad side of the claim (an exact
count: its value does). An established violation turns the run red whatever the case's role
(``docs/design.md#verdict-rule``); a ``fail`` that is not established says how many LRGs would
establish it. A measurement whose ``extra`` carries ``undecidable`` (the reason) is never established.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy.stats import norm

from shortcutgates.stats import Estimate, grouped_bootstrap, weighted_auroc_metric
from shortcutgates.gates.contract import Measurement
from shortcutgates.gates.records import Gate, GateCase, GateConfig, GateResult

REACHABLE_FACTOR = 10
"""An inconclusive case names the LRGs that would decide only up to this many times the current count."""

CHANCE_Z = 3.29
"""An AUC whose estimate lies more than this many standard errors below chance is an ``error``
(a two-sided 0.1 % test: a calibrated clean suite of ~20 AUC cases raises it in about 2 % of runs)."""

DEGENERATE_MODAL_FRACTION = 0.95
"""Scores of which one value holds at least this fraction of the rows are near-constant: ``error``."""


# --- AUROC and its intervals -------------------------------------------------------------------
def nan_on_lost_class(metric: Callable) -> Callable:
    """A resample that loses a class yields NaN (left out of the interval), not an exception."""

    def wrapped(labels, scores, weights=None):
        try:
            return metric(labels, scores, weights)
        except ValueError:
            if weights is None:
                raise
            return np.nan

    if hasattr(metric, "batch"):  # many resamples at once: a lost class is already NaN there
        wrapped.batch = metric.batch  # type: ignore[attr-defined]
    return wrapped


def bootstrap_auroc(labels, scores, groups, config: GateConfig) -> Estimate:
    """AUROC with its LRG-bootstrap interval, using the suite's ``n_boot``, ``seed`` and ``level``."""
    labels = np.asarray(labels).astype(int)
    metric = weighted_auroc_metric(labels, scores)
    return grouped_bootstrap(
        labels, scores, groups, metric=metric, n_boot=config.n_boot, seed=config.seed, level=config.level
    )


def bootstrap_metric(labels, values, groups, metric: Callable, config: GateConfig) -> Estimate:
    """Any ``metric(labels, values, weights)`` with its LRG-bootstrap interval (NaN resamples left out)."""
    return grouped_bootstrap(
        np.asarray(labels).astype(int),
        values,
        groups,
        metric=nan_on_lost_class(metric),
        n_boot=config.n_boot,
        seed=config.seed,
        level=config.level,
    )


def check_scorer(scores: np.ndarray, where: str) -> None:
    """Raise ``ValueError`` when a scorer is constant or near-constant on the inputs a gate made.

    A constant scorer has AUROC 0.5 with a zero-width interval: it would pass every "must stay at
    chance" gate without having looked at anything.
    """
    scores = np.asarray(scores, np.float64)
    if len(scores) == 0:
        raise ValueError(f"{where}: no scores")
    values, counts = np.unique(scores, return_counts=True)
    span = float(np.ptp(scores))
    if len(values) == 1 or span <= 1e-9 * max(1.0, float(np.abs(scores).max())):
        raise ValueError(
            f"degenerate scorer: {len(scores)} scores on {where} are constant ({scores[0]:.6g}); "
            "a constant scorer sits at chance without looking at the images"
        )
    modal = counts.max() / len(scores)
    if modal >= DEGENERATE_MODAL_FRACTION:
        raise ValueError(
            f"degenerate scorer: {modal:.0%} of {len(scores)} scores on {where} are one value "
            f"({values[counts.argmax()]:.6g}); a near-constant scorer decides nothing"
        )


def auc_measurement(
    labels,
    scores,
    groups,
    config: GateConfig,
    what: str,
    note: str = "",
    extra: dict | None = None,
    *,
    scorer: str | None = None,
) -> Measurement:
    """AUROC of ``scores`` with its LRG-bootstrap interval as a :class:`Measurement`.

    ``scorer`` names the inputs of a model gate; its scores are then checked by :func:`check_scorer`.
    """
    if scorer is not None:
        check_scorer(scores, scorer)
    est = bootstrap_auroc(labels, scores, groups, config)
    return estimate_measurement(est, what, note, extra)


def estimate_measurement(est: Estimate, what: str, note: str = "", extra: dict | None = None) -> Measurement:
    """A bootstrapped :class:`~shortcutgates.stats.Estimate` as a :class:`Measurement`."""
    return Measurement(
        float(est.value), (float(est.lo), float(est.hi)), int(est.n), int(est.n_groups), what, note, dict(extra or {})
    )


# --- verdicts ----------------------------------------------------------------------------------
def decide(
    value: float, ci: tuple[float, float] | None, threshold: float | None, direction: str, equivalence: bool = False
) -> str:
    """Verdict of a measured value: ``pass``, ``fail``, ``inconclusive`` (or ``reported`` without a threshold)."""
    if threshold is None:
        return "reported"
    if equivalence:
        bad, good_lo, good_hi = abs(value) > threshold, -threshold, threshold
    elif direction == "at_most":
        bad, good_lo, good_hi = value > threshold, -math.inf, threshold
    else:
        bad, good_lo, good_hi = value < threshold, threshold, math.inf
    if bad:
        return "fail"
    if ci is None:
        return "pass"
    lo, hi = ci
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "inconclusive"
    return "pass" if good_lo <= lo and hi <= good_hi else "inconclusive"


def established_violation(
    value: float, ci: tuple[float, float] | None, threshold: float | None, direction: str, equivalence: bool = False
) -> bool:
    """Whether the whole interval (an exact quantity: its value) lies on the bad side of the claim.

    ``at_most``: ``lo > threshold``; ``at_least``: ``hi < threshold``; equivalence: the signed
    interval lies wholly outside ``±threshold``. False without a threshold or a finite interval.
    """
    if threshold is None or not math.isfinite(value):
        return False
    if ci is None:
        lo = hi = value
    else:
        lo, hi = ci
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return False
    if equivalence:
        return lo > threshold or hi < -threshold
    return lo > threshold if direction == "at_most" else hi < threshold


def groups_to_establish(
    value: float, ci: tuple[float, float], threshold: float, direction: str, n_groups: int, equivalence: bool = False
) -> int | None:
    """LRGs needed for the interval of an estimate on the bad side to clear the threshold (None: never)."""
    if equivalence:
        half = (value - ci[0]) if value > 0 else (ci[1] - value)
        distance = abs(value) - threshold
    else:
        half = (value - ci[0]) if direction == "at_most" else (ci[1] - value)
        distance = abs(value - threshold)
    if distance <= 0 or not math.isfinite(half):
        return None
    return int(math.ceil(n_groups * (half / distance) ** 2 - 1e-9))


def groups_to_decide(
    value: float, ci: tuple[float, float], threshold: float, direction: str, n_groups: int, equivalence: bool = False
) -> int | None:
    """LRGs needed for the interval to clear the threshold at the same estimate (None: never)."""
    if equivalence:
        half = max(ci[1] - value, value - ci[0])
        distance = threshold - abs(value)
    else:
        half = (ci[1] - value) if direction == "at_most" else (value - ci[0])
        distance = abs(threshold - value)
    if distance <= 0 or not math.isfinite(half):
        return None
    return int(math.ceil(n_groups * (half / distance) ** 2 - 1e-9))  # tolerance for float round-off


def below_chance(m: Measurement, chance: float | None, level: float) -> bool:
    """True when the estimate lies more than :data:`CHANCE_Z` standard errors below ``chance``.

    The standard error is read off the interval (``(hi − lo) / (2 z_level)``); an estimate below
    chance with a zero-width interval counts too.
    """
    if chance is None or m.ci is None or not all(map(math.isfinite, m.ci)) or m.value >= chance:
        return False
    se = (m.ci[1] - m.ci[0]) / (2 * norm.ppf((1 + level) / 2))
    return m.value + CHANCE_Z * se < chance


def _inconclusive_text(m: Measurement, threshold: float, gate: Gate) -> str:
    if m.ci is None or not all(map(math.isfinite, m.ci)):
        return f"too few LRGs ({m.n_groups}) for an interval"
    need = groups_to_decide(m.value, m.ci, threshold, gate.direction, m.n_groups, gate.equivalence)
    if need is None:
        return "the estimate sits on the threshold: no sample size decides"
    if need > REACHABLE_FACTOR * m.n_groups:
        return (
            f"the interval crosses the threshold and the estimate lies so close to it that more than "
            f"{REACHABLE_FACTOR}x the current {m.n_groups} LRGs would be needed: no reachable sample decides"
        )
    return f"the interval crosses the threshold: about {need} LRGs (now {m.n_groups}) would decide"


def describe(m: Measurement, threshold: float | None, gate: Gate, verdict: str) -> str:
    """The case's one-line message: value, interval, claim, why not decided, the gate's note."""
    exact = m.ci is None and float(m.value).is_integer()
    text = f"{m.what} {int(m.value)}" if exact else f"{m.what} {m.value:.3f}"
    if m.ci is not None:
        text += f" [{m.ci[0]:.3f}, {m.ci[1]:.3f}]" if all(map(math.isfinite, m.ci)) else " [no interval]"
    if threshold is None:
        text += " (reported, not gated)"
    elif gate.equivalence:
        text += f"; required within ±{threshold:g} (equivalence)"
    else:
        text += f"; required {'≤' if gate.direction == 'at_most' else '≥'} {threshold:g}"
    if verdict == "inconclusive":
        text += "; " + _inconclusive_text(m, threshold, gate)
    elif verdict == "fail" and threshold is not None and m.ci is not None:
        if established_violation(m.value, m.ci, threshold, gate.direction, gate.equivalence):
            text += (
                "; established: the whole interval lies on the bad side"
                if gate.blocking
                else "; the whole interval lies on the bad side (a diagnostic: shown, red only where made primary)"
            )
        elif all(map(math.isfinite, m.ci)):
            need = groups_to_establish(m.value, m.ci, threshold, gate.direction, m.n_groups, gate.equivalence)
            text += "; too few LRGs to tell: the interval reaches the threshold" + (
                f" (about {need} LRGs, now {m.n_groups}, would establish it)" if need else ""
            )
    if m.extra.get("undecidable"):
        text += f"; not decided: {m.extra['undecidable']}"
    if m.note:
        text += f"; {m.note}"
    return text


def judge(config: GateConfig, case: GateCase, gate: Gate, m: Measurement) -> GateResult:
    """Resolve the case's threshold and decide its :class:`Measurement` into a :class:`GateResult`."""
    threshold = config.threshold_for(case, gate.threshold)
    if not math.isfinite(m.value):
        return error_result(config, case, gate, f"{m.what} is not finite ({m.value}); {m.note}".rstrip("; "))
    if below_chance(m, gate.chance, config.level):
        return error_result(
            config,
            case,
            gate,
            f"{m.what} {m.value:.3f} [{m.ci[0]:.3f}, {m.ci[1]:.3f}] lies far below chance ({gate.chance:g}): a "
            "cross-validation artefact (e.g. classes that are twins of each other) or a flipped scorer, "
            f"not evidence that the shortcut is absent; {m.note}".rstrip("; "),
        )
    verdict = decide(m.value, m.ci, threshold, gate.direction, gate.equivalence)
    established = (
        gate.blocking
        and not m.extra.get("undecidable")
        and established_violation(m.value, m.ci, threshold, gate.direction, gate.equivalence)
    )
    return GateResult(
        case.id,
        case.gate,
        dict(case.params),
        case.split,
        float(m.value),
        m.ci,
        threshold,
        gate.direction,
        verdict,
        int(m.n),
        int(m.n_groups),
        describe(m, threshold, gate, verdict),
        case.role or gate.role,
        dict(m.extra),
        established,
    )


def _empty(config: GateConfig, case: GateCase, gate: Gate, verdict: str, message: str) -> GateResult:
    return GateResult(
        case.id,
        case.gate,
        dict(case.params),
        case.split,
        None,
        None,
        config.threshold_for(case, gate.threshold),
        gate.direction,
        verdict,
        0,
        0,
        message,
        case.role or gate.role,
    )


def error_result(config: GateConfig, case: GateCase, gate: Gate, reason: str) -> GateResult:
    """The gate could not measure: verdict ``error`` with the reason (never a pass)."""
    return _empty(config, case, gate, "error", reason)


def skipped_result(config: GateConfig, case: GateCase, gate: Gate, reason: str) -> GateResult:
    """A case that was not run (a model gate without a model)."""
    return _empty(config, case, gate, "skipped", reason)
