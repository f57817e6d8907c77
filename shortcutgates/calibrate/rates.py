"""Rates over seeds, each with its own interval: fail, inconclusive, power, coverage, suite green.

Every rate is a binomial proportion over seeds with a 95 % Wilson interval
(:meth:`scipy.stats.binomtest(...).proportion_ci`). Coverage counts the seeds whose interval holds
the true value of the case; the truth is analytic where the planted data fix it (:func:`truth_of`),
else the mean of the estimates over the cell's seeds at the same size (``truth_source``
``replicate_mean``: then coverage checks the interval's width against the spread of the
estimate, not its bias).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from shortcutgates.gates import registry
from shortcutgates.gates.suite import established, is_red
from shortcutgates.calibrate.coverage import truth as coverage_truth
from shortcutgates.calibrate.plant import SHIFTED_PROPERTIES

CELL_COLUMNS = ["cell", "kind", "problem", "strength", "n_lrgs", "scorer", "core", "pool"]
CASE_COLUMNS = ["case", "gate", "role"]

CORE_GATES = ("arc_masked_auroc", "core_masked_auroc_drop")
"""The model gates that claim "the model does not need the core light" (a CNN null must not fail them)."""
COUNTERFACTUAL_GATES = CORE_GATES + ("arc_swap_auroc_drop", "morphology_auroc")
"""Every paired counterfactual gate (a core-reliant CNN should fail one of them)."""
BLIND_READERS = ("arc",)
"""Reference scorers blind exactly inside the gates' core radius ``R_CORE_PX`` (the arc reader)."""

NULL_TRUTH = registry.NULL_TRUTH
"""True values on shortcut-free data (labels independent of the central box and of the property
columns): AUCs at chance, standardised mean differences zero; the registry rows' ``null``. Other
gates (arc probes, model gates) are informative on clean data: their truth is not fixed by the planting."""


def proportion_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson interval of ``k`` successes in ``n`` trials; (nan, nan) when ``n`` is 0."""
    if n <= 0:
        return (np.nan, np.nan)
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return (float(ci.low), float(ci.high))


def truth_of(row: pd.Series) -> float | None:
    """Analytic true value of a case in a planted cell, or None when the planting does not fix it."""
    if row["kind"] == "coverage":
        return coverage_truth(str(row["problem"]), str(row["case"]), float(row["strength"]))
    data_null = (
        row["kind"] == "data"
        and not row["core"]
        and (row["strength"] == 0 or row["problem"] in ("leak", "dup", "faint"))
    )
    if row["kind"] == "data" and row["problem"] == "smd" and row["gate"] == "property_balance":
        prop = str(row["case"]).rstrip("]").split("-")[-1]
        return float(row["strength"]) if prop in SHIFTED_PROPERTIES else 0.0
    if row["kind"] == "data" and row["problem"] == "smd" and row["gate"] == "core_lr_auc":
        return 0.5 if not row["core"] else None
    if data_null and row["gate"] in NULL_TRUTH and not (row["problem"] == "leak" and row["strength"] > 0):
        return NULL_TRUTH[row["gate"]]
    return None


def fixed_by_construction(row) -> bool:
    """True where a case's value is fixed by how the cell was built, not measured: the core gates
    (:data:`CORE_GATES`) of a reader blind inside ``R_CORE_PX`` on the ``tapered`` pool, whose arcs hold
    no light inside the taper (> ``R_CORE_PX``): the core-only counterfactual is then the bare control
    to that reader (AUROC 0.500, drop 0.000 in every seed). Such a cell is no null: its 0 % false-fail
    rate is a tautology and it never counts toward a false-fail rate."""
    return (
        row["kind"] in ("model", "suite")
        and row.get("pool", "tapered") == "tapered"
        and row["scorer"] in BLIND_READERS
        and row["gate"] in CORE_GATES
    )


def _rate(flags: pd.Series) -> tuple[float, float, float, int]:
    flags = flags.dropna().astype(bool)
    n, k = len(flags), int(flags.sum())
    lo, hi = proportion_ci(k, n)
    return (k / n if n else np.nan), lo, hi, n


def _coverage(group: pd.DataFrame) -> dict:
    has_ci = np.isfinite(group["lo"]) & np.isfinite(group["hi"])
    if not has_ci.any():
        return {
            "truth": np.nan,
            "truth_source": "",
            "coverage": np.nan,
            "coverage_lo": np.nan,
            "coverage_hi": np.nan,
            "n_intervals": 0,
            "half_width": np.nan,
        }
    first = group.iloc[0]
    truth = truth_of(first)
    source = "analytic"
    if truth is None:
        truth, source = float(group.loc[has_ci, "value"].mean()), "replicate_mean"
    elif truth != 0 and (group["value"] < 0).mean() > 0.5:  # a signed value: planted shift of the other sign
        truth = -truth
    sub = group[has_ci]
    inside = (sub["lo"] <= truth) & (truth <= sub["hi"])
    cov, lo, hi, n = _rate(inside)
    return {
        "truth": truth,
        "truth_source": source,
        "coverage": cov,
        "coverage_lo": lo,
        "coverage_hi": hi,
        "n_intervals": n,
        "half_width": float(((sub["hi"] - sub["lo"]) / 2).mean()),
    }


def summarise(records: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, case): seeds, verdict rates with intervals, mean value, coverage."""
    rows = []
    records = with_pool(records)
    for keys, group in records.groupby(CELL_COLUMNS + CASE_COLUMNS, sort=False, dropna=False):
        row = dict(zip(CELL_COLUMNS + CASE_COLUMNS, keys))
        row["n_seeds"] = len(group)
        for verdict in ("fail", "inconclusive", "pass", "error"):
            rate, lo, hi, _ = _rate(group["verdict"] == verdict)
            row[f"{verdict}_rate"], row[f"{verdict}_lo"], row[f"{verdict}_hi"] = rate, lo, hi
        row["mean_value"] = float(group["value"].mean())
        row["sd_value"] = float(group["value"].std())
        row["threshold"] = float(group["threshold"].iloc[0])
        row.update(_coverage(group.assign(**{k: v for k, v in row.items() if k in CELL_COLUMNS + CASE_COLUMNS})))
        row["seconds_per_seed"] = float(group["seconds"].mean())
        row["not_a_null"] = fixed_by_construction(row)
        rows.append(row)
    return pd.DataFrame(rows)


def with_pool(records: pd.DataFrame) -> pd.DataFrame:
    """A copy with ``scorer`` '' where empty and ``pool`` ``tapered`` where absent (records written before
    pools had kinds all come from the tapered pool)."""
    records = records.copy()
    records["scorer"] = records["scorer"].fillna("")
    records["pool"] = records["pool"].fillna("tapered") if "pool" in records else "tapered"
    return records


def family_outcomes(records: pd.DataFrame) -> pd.DataFrame:
    """Per CNN seed (``kind`` ``cnn``): whether any *deciding* case of a core gate (:data:`CORE_GATES`) or
    of any counterfactual gate (:data:`COUNTERFACTUAL_GATES`) failed, how many such cases decided, and the
    CNN's validation AUROC. Deciding: a primary case, or a case of any role whose violation is established
    (red by :func:`shortcutgates.gates.suite.outcome` either way). ``model_red``: the recorded model cases
    alone turn the run red by the suite's rule (an inconclusive primary case included: what a user sees)."""
    cnn = with_pool(records)
    cnn = cnn[cnn["kind"] == "cnn"]
    out = []
    for keys, group in cnn.groupby(CELL_COLUMNS + ["seed"], sort=False, dropna=False):
        violated = np.array([established(r) for r in group.to_dict("records")], bool)
        deciding = group[(group["role"] == "primary").to_numpy() | violated]
        red_fail = deciding["verdict"] == "fail"  # a deciding case that failed: red by the suite's rule
        core = deciding["gate"].isin(CORE_GATES)
        cf = deciding["gate"].isin(COUNTERFACTUAL_GATES)
        training = group[group["role"] == "training"]
        gated = group[group["role"] != "training"]
        red = gated[[is_red(r) for r in gated.to_dict("records")]]
        out.append(
            {
                **dict(zip(CELL_COLUMNS + ["seed"], keys)),
                "model_red": not red.empty,
                "red_cases": "; ".join(f"{c} {v}" for c, v in zip(red["case"], red["verdict"])),
                "core_fail": bool((core & red_fail).any()),
                "n_core_decided": int(core.sum()),
                "model_fail": bool((cf & red_fail).any()),
                "n_model_decided": int(cf.sum()),
                "failed": "; ".join(deciding.loc[cf & red_fail, "case"]),
                "val_auroc": float(training["value"].iloc[0]) if len(training) else np.nan,
                "train_seconds": float(training["seconds"].iloc[0]) if len(training) else np.nan,
            }
        )
    return pd.DataFrame(out)


def summarise_families(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Per CNN cell: the share of seeds where a deciding core gate failed and where a deciding
    counterfactual gate failed (each with its Wilson interval), and the seeds where none decided."""
    rows = []
    for keys, group in outcomes.groupby(CELL_COLUMNS, sort=False, dropna=False):
        row = {**dict(zip(CELL_COLUMNS, keys)), "n_seeds": len(group)}
        for flag in ("core_fail", "model_fail", "model_red"):
            rate, lo, hi, _ = _rate(group[flag])
            row[f"{flag}_rate"], row[f"{flag}_lo"], row[f"{flag}_hi"] = rate, lo, hi
        row["no_core_case_decided"] = int((group["n_core_decided"] == 0).sum())
        row["val_auroc_median"] = float(group["val_auroc"].median())
        row["train_seconds_mean"] = float(group["train_seconds"].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def suite_outcomes(records: pd.DataFrame) -> pd.DataFrame:
    """Per (cell, seed): ``green`` (no case is red by :func:`.gates.suite.is_red`, strict: a case that did not
    run is red too) and the cases that are; a trained cell's ``training`` record is no case."""
    out = []
    cases = with_pool(records)
    for keys, group in cases[cases["role"] != "training"].groupby(CELL_COLUMNS + ["seed"], sort=False, dropna=False):
        primary = group[group["role"] == "primary"]
        bad = group[[is_red(r, strict=True) for r in group.to_dict("records")]]
        out.append(
            {
                **dict(zip(CELL_COLUMNS + ["seed"], keys)),
                "green": bad.empty,
                "n_primary": len(primary),
                "not_passed": "; ".join(f"{c} {v}" for c, v in zip(bad["case"], bad["verdict"])),
            }
        )
    return pd.DataFrame(out)


def summarise_suite(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Green rate per cell with its interval, and the primary cases most often not passing."""
    rows = []
    for keys, group in outcomes.groupby(CELL_COLUMNS, sort=False, dropna=False):
        rate, lo, hi, n = _rate(group["green"])
        culprits = pd.Series([c.rsplit(" ", 1)[0] for text in group["not_passed"] if text for c in text.split("; ")])
        top = culprits.value_counts().head(4)
        rows.append(
            {
                **dict(zip(CELL_COLUMNS, keys)),
                "n_seeds": n,
                "green_rate": rate,
                "green_lo": lo,
                "green_hi": hi,
                "most_often_not_passed": "; ".join(f"{c} ({k})" for c, k in top.items()),
            }
        )
    return pd.DataFrame(rows)


def reader_outcomes(records: pd.DataFrame) -> pd.DataFrame:
    """Per ``reader`` cell, reader (``scorer``) and seed: ``failed`` (a primary counterfactual case failed: a
    primary gate in a gated θ_E bin), the cases that failed, and ``red`` (any case red by
    :func:`.gates.suite.is_red`: an inconclusive or erring primary case too)."""
    readers = with_pool(records)
    readers = readers[(readers["kind"] == "reader") & (readers["verdict"] != "measured")]
    out = []
    for keys, group in readers.groupby(CELL_COLUMNS + ["seed"], sort=False, dropna=False):
        failed = group[(group["role"] == "primary") & (group["verdict"] == "fail")]
        out.append(
            {
                **dict(zip(CELL_COLUMNS + ["seed"], keys)),
                "failed": not failed.empty,
                "failed_cases": "; ".join(failed["case"]),
                "red": bool(any(is_red(r) for r in group.to_dict("records"))),
            }
        )
    return pd.DataFrame(out)


def summarise_readers(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Per ``reader`` cell and reader: seeds, seeds with a failed primary case and their share (Wilson 95 %),
    and the share of seeds red by the suite's rule."""
    rows = []
    for keys, group in outcomes.groupby(CELL_COLUMNS, sort=False, dropna=False):
        row = {**dict(zip(CELL_COLUMNS, keys)), "n_seeds": len(group), "n_failed": int(group["failed"].sum())}
        for flag in ("failed", "red"):
            rate, lo, hi, _ = _rate(group[flag])
            row[f"{flag}_rate"], row[f"{flag}_lo"], row[f"{flag}_hi"] = rate, lo, hi
        rows.append(row)
    return pd.DataFrame(rows)
