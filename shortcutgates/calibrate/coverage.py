"""The ``coverage`` cell: coverage of the gates' 95 % intervals on synthetic data whose truth is known.

Fast (no images). A cell's ``problem`` names the design, ``strength`` the population AUC, ``n_lrgs`` the
LRGs; one seed draws one data set (``numpy.random.default_rng(seed)``: the seeds of the former
``benchmarks/coverage_intervals.py``, whose arithmetic this is) and records each interval as a ``measured``
case (role ``reported``). :func:`shortcutgates.calibrate.rates.summarise` then gives each case's coverage
with its Wilson interval, against the truth of :func:`truth`.

* ``probe-unpaired`` / ``probe-paired``: the probe (grouped 5-fold logistic regression,
  :mod:`shortcutgates.gates.probes`) on Gaussian features of ``n_lrgs`` LRGs — :data:`N_FEATURES`
  features, the first :data:`N_SIGNAL` shifted for positives so the best linear rule has the population
  AUC; ``paired``: a positive and its negative per LRG sharing an LRG component (as a stamp and its
  control), ``unpaired``: one row of one label per LRG. Cases ``cv_auc[oof]`` (the LRG bootstrap of the
  out-of-fold scores, the old interval), ``cv_auc[refit]`` (each resample refits the probe) and
  ``cv_auc[blend]`` (the interval the gates use, :func:`~shortcutgates.gates.probes.blended_interval`).
  Truth: the expected out-of-fold AUC at this size, i.e. the mean estimate over the cell's seeds.
* ``scorer-unpaired`` / ``scorer-paired``: a fixed scorer (binormal scores, a shared LRG part in paired
  data) of known AUROC: case ``auroc`` (one split's AUROC interval, truth the population AUROC) and
  ``auroc_gap`` (the signed AUROC gap of two independent splits of one population, truth 0), both by the
  LRG bootstrap of the scores, as the model gates compute them.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
from scipy.stats import norm

N_FEATURES = 50
"""Gaussian features of a probe cell."""
N_SIGNAL = 10
"""Features of a probe cell that carry the signal."""
DESIGNS = ("unpaired", "paired")


def make_features(n_lrgs: int, p: int, k: int, delta: float, design: str, seed: int):
    """(features (N, p), labels (N,), groups (N,)) for one seed; the first ``k`` features shifted by
    ``delta`` (unpaired; ``delta·√2`` paired) for positives."""
    rng = np.random.default_rng(seed)
    if design == "paired":
        lrg = rng.normal(size=(n_lrgs, p))
        labels = np.tile([1, 0], n_lrgs)
        groups = np.repeat(np.arange(n_lrgs), 2)
        x = lrg[groups] + rng.normal(size=(2 * n_lrgs, p))
    else:
        labels = rng.permutation(np.arange(n_lrgs) % 2)
        groups = np.arange(n_lrgs)
        x = rng.normal(size=(n_lrgs, p))
    x[:, :k] += delta * labels[:, None] * (math.sqrt(2) if design == "paired" else 1.0)
    return x, labels, groups


def probe_seed(n_lrgs: int, auc: float, design: str, seed: int, config) -> dict:
    """``{"value": AUC, "oof": [lo, hi], "refit": [lo, hi], "blend": [lo, hi]}`` of one seed's probe."""
    from dataclasses import replace

    from shortcutgates.gates.probes import blended_interval, cv_auc_resamples

    delta = math.sqrt(2 / N_SIGNAL) * norm.ppf(auc)
    x, y, g = make_features(n_lrgs, N_FEATURES, N_SIGNAL, delta, design, seed)
    cfg = replace(config, seed=seed)
    r = cv_auc_resamples(x, y, g, cfg)
    tail = [(1 - cfg.level) / 2, (1 + cfg.level) / 2]
    return {
        "value": r.value,
        "oof": np.quantile(r.held_out, tail).tolist(),
        "refit": np.quantile(r.refit - r.refit.mean() + r.value, tail).tolist(),
        "blend": list(blended_interval(r, cfg.level)),
    }


def _binormal_split(rng, n: int, offset: int, d: float, design: str):
    if design == "paired":
        labels, groups = np.tile([1, 0], n), np.repeat(np.arange(n), 2) + offset
        scores = rng.normal(size=n)[groups - offset] + rng.normal(size=2 * n) + d * labels
    else:
        labels, groups = rng.permutation(np.arange(n) % 2), np.arange(n) + offset
        scores = rng.normal(size=n) + d * labels
    return labels, scores, groups


def scorer_seed(n_lrgs: int, auc: float, design: str, seed: int, config) -> dict:
    """A fixed scorer's AUROC interval on one split and the interval of the signed AUROC gap between two
    independent splits of one population (true gap 0), as the model gates compute them:
    ``{"auroc": [lo, hi], "auroc_value", "gap": [lo, hi], "gap_value"}``."""
    from dataclasses import replace

    from shortcutgates.gates.decision import bootstrap_auroc, bootstrap_metric
    from shortcutgates.stats import weighted_auroc_metric

    rng = np.random.default_rng(seed)
    d = math.sqrt(2) * norm.ppf(auc) * (math.sqrt(2) if design == "paired" else 1.0)  # σ² = 2 with an LRG part
    cfg = replace(config, seed=seed)
    la, sa, ga = _binormal_split(rng, n_lrgs, 0, d, design)
    lb, sb, gb = _binormal_split(rng, n_lrgs, 10 * n_lrgs, d, design)
    one = bootstrap_auroc(la, sa, ga, cfg)
    labels, scores, groups = np.r_[la, lb], np.r_[sa, sb], np.r_[ga, gb]
    in_a = np.arange(len(labels)) < len(la)
    auc_a, auc_b = weighted_auroc_metric(la, sa), weighted_auroc_metric(lb, sb)
    gap = bootstrap_metric(
        labels,
        scores,
        groups,
        lambda _l, _s, w=None: (
            auc_a(None, None, None if w is None else w[in_a]) - auc_b(None, None, None if w is None else w[~in_a])
        ),
        cfg,
    )
    return {"auroc": [one.lo, one.hi], "auroc_value": one.value, "gap": [gap.lo, gap.hi], "gap_value": gap.value}


def truth(kind: str, case: str, strength: float) -> float | None:
    """True value of a coverage case: a scorer cell's population AUROC (``auroc``) or 0 (``auroc_gap``);
    None for a probe (its truth is the mean estimate over the cell's seeds)."""
    if not kind.startswith("scorer"):
        return None
    return float(strength) if case == "auroc" else 0.0


def _interval(base: dict, case: str, value: float, ci) -> dict:
    return {
        **base,
        "case": case,
        "gate": case.split("[")[0],
        "role": "reported",
        "verdict": "measured",
        "value": float(value),
        "lo": float(ci[0]),
        "hi": float(ci[1]),
        "threshold": np.nan,
        "direction": "",
        "established": False,
        "message": "interval coverage (synthetic data)",
        "seconds": 0.0,
    }


def run_coverage_seed(cell, seed: int, config) -> list[dict]:
    """The interval records of one seed of a ``coverage`` cell (``problem`` ``probe-<design>`` or
    ``scorer-<design>``, ``strength`` the population AUC, ``n_lrgs`` LRGs per split)."""
    import time

    what, _, design = cell.problem.partition("-")
    if what not in ("probe", "scorer") or design not in DESIGNS:
        raise ValueError(
            f"calibrate: coverage cells are probe-<design> or scorer-<design>, design one of "
            f"{', '.join(DESIGNS)} (got {cell.problem!r})"
        )
    base = {**asdict(cell), "cell": cell.key, "seed": int(seed)}
    start = time.perf_counter()
    if what == "probe":
        r = probe_seed(cell.n_lrgs, cell.strength, design, seed, config)
        out = [_interval(base, f"cv_auc[{m}]", r["value"], r[m]) for m in ("oof", "refit", "blend")]
    else:
        r = scorer_seed(cell.n_lrgs, cell.strength, design, seed, config)
        out = [
            _interval(base, "auroc", r["auroc_value"], r["auroc"]),
            _interval(base, "auroc_gap", r["gap_value"], r["gap"]),
        ]
    seconds = (time.perf_counter() - start) / len(out)
    return [{**rec, "seconds": seconds} for rec in out]
