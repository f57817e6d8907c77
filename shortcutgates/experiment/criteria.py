"""The numbers of the experiment report, computed from ``results.json``: the key metrics over seeds
(:func:`summarise`) and the proposal's success criteria, decided per configuration (:func:`criteria`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

KEY_METRICS = ("E1", "E2", "E3", "E3_gap", "E4")


class Criterion(NamedTuple):
    """A success criterion of the proposal, decided for one configuration."""

    config: str
    name: str
    """e.g. ``"E2 AUROC > 0.80"``."""
    metric: str
    """Key of the metric in ``experiments`` (E2, E4, E3_gap)."""
    threshold: float
    direction: str
    """``"min"``: the value must exceed the threshold; ``"max"``: stay below it."""
    verdict: str
    """``held``, ``failed``, ``inconclusive`` or ``missing``."""
    value: float | None
    """Estimate (mean over seeds)."""
    detail: str


CRITERIA = (
    ("E2", "E2 AUROC > 0.80", 0.80, "min"),
    ("E4", "E4 core-LR AUC < 0.65", 0.65, "max"),
    ("E3_gap", "|E3 − E2| < 0.05", 0.05, "max"),
)


def metric_values(results: dict, config: str, key: str) -> list:
    """Values of one metric of one configuration over the seeds (None where missing)."""
    out = []
    for run in results.get("seeds", []):
        m = run.get("configs", {}).get(config, {}).get("experiments", {}).get(key)
        out.append(None if not m else m.get("value"))
    return out


def summarise(results: dict) -> dict:
    """Mean ± std over seeds of the key metrics: ``{config: {metric: {mean, std, n_seeds, values}}}``.

    ``std`` is the sample standard deviation (ddof=1); None with a single seed.
    """
    summary = {}
    for config in config_names(results):
        summary[config] = {}
        for key in KEY_METRICS:
            vals = [v for v in metric_values(results, config, key) if v is not None]
            arr = np.asarray(vals, dtype=float)
            summary[config][key] = {
                "mean": float(arr.mean()) if len(arr) else None,
                "std": float(arr.std(ddof=1)) if len(arr) > 1 else None,
                "n_seeds": len(arr),
                "values": [float(v) for v in arr],
            }
    return summary


def config_names(results: dict) -> list:
    """Names of the configurations the run had, in order."""
    return [c["name"] for c in results.get("params", {}).get("configs", [])]


def decide(m: dict | None, threshold: float, direction: str) -> str:
    """``held``, ``failed``, ``inconclusive`` or ``missing``: metric ``m`` against ``threshold``, ``direction``
    ``min`` (must exceed it) or ``max`` (must stay below it); see :func:`criteria`."""
    if not m or m.get("value") is None:
        return "missing"
    v = m["value"]
    good = v > threshold if direction == "min" else v < threshold
    if not good:
        return "failed"
    ci = m.get("ci")
    if not ci or ci[0] is None or ci[1] is None:
        return "inconclusive"
    bound = ci[0] if direction == "min" else ci[1]
    return "held" if (bound > threshold if direction == "min" else bound < threshold) else "inconclusive"


def criteria(results: dict) -> list:
    """Decide each success criterion for each configuration.

    Per seed: ``held`` when the interval lies on the good side of the threshold, ``failed`` when the
    estimate lies on the bad side, ``inconclusive`` otherwise. Over seeds: the common verdict if all
    seeds agree, else ``inconclusive`` with the count.
    """
    out = []
    for config in config_names(results):
        for key, name, threshold, direction in CRITERIA:
            per_seed = [
                decide(run["configs"].get(config, {}).get("experiments", {}).get(key), threshold, direction)
                for run in results.get("seeds", [])
            ]
            vals = [v for v in metric_values(results, config, key) if v is not None]
            verdict = per_seed[0] if per_seed and len(set(per_seed)) == 1 else "inconclusive"
            detail = ", ".join(f"seed {run['seed']}: {v}" for run, v in zip(results["seeds"], per_seed))
            value = float(np.mean(vals)) if vals else None
            out.append(Criterion(config, name, key, threshold, direction, verdict, value, detail))
    return out
