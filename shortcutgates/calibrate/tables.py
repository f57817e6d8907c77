"""The Markdown tables of a calibration run's ``calibration.md`` (those ``docs/calibration.md`` quotes),
each built from the frames of :mod:`shortcutgates.calibrate.rates`: clean-data (null) rates, power,
the λ sweep, whole-suite green rates, CNN families and cases, the reader study, interval coverage.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from shortcutgates.gates.registry import COUNTERFACTUAL_GATES
from shortcutgates.calibrate.rates import suite_outcomes, summarise_suite
from shortcutgates.calibrate.readers import bin_label
from shortcutgates.calibrate.scorers import reader_label, reader_names

TARGETS = {
    "core": ("core_lr_auc",),
    "smd": ("property_balance", "metadata_c2st_auc"),
    "leak": ("lrg_leakage",),
    "dup": ("data_integrity", "lrg_leakage", "duplicate_rows"),
    "faint": ("arc_annulus_lr_auc",),
}
"""Gates a planted problem is meant to fail (other primary cases are shown too when they fail)."""


def _pct(rate, lo, hi) -> str:
    if not np.isfinite(rate):
        return "–"
    return f"{100 * rate:.0f} % [{100 * lo:.0f}, {100 * hi:.0f}]"


def _cov(row) -> str:
    if not np.isfinite(row["coverage"]):
        return "–"
    return f"{row['coverage']:.2f} [{row['coverage_lo']:.2f}, {row['coverage_hi']:.2f}]" + (
        "" if row["truth_source"] == "analytic" else "*"
    )


def null_table(summary: pd.DataFrame, kind: str | None, scorer: str = "arc", role: str = "primary") -> str:
    """Per case of ``role`` and size on clean data (model cells: reference ``scorer``; ``kind`` None:
    every kind): fail / inconclusive rate and coverage, with intervals."""
    null = summary[(summary["strength"] == 0) & (summary["role"] == role)]
    if kind is not None:
        null = null[null["kind"] == kind]
    null = null[((null["kind"] == "data") | (null["scorer"] == scorer)) & ~null["kind"].isin(["cnn", "reader"])]
    if null.empty:
        return "(no cells)\n"
    lines = [
        "| case | cells | LRGs per split | seeds | fail | inconclusive | coverage (truth) |",
        "|---|---|---|---|---|---|---|",
    ]
    for _, r in null.sort_values(["case", "kind", "n_lrgs"]).iterrows():
        truth = "" if not np.isfinite(r["truth"]) else f" ({r['truth']:.3f})"
        if r.get("not_a_null", False):  # a tautology, not a false-fail rate
            lines.append(
                f"| `{r['case']}` | {r['kind']} | {r['n_lrgs']} | {r['n_seeds']} | "
                f"{NOT_A_NULL} (value {r['mean_value']:.3f} ± {r['sd_value']:.3f}) | – | – |"
            )
            continue
        lines.append(
            f"| `{r['case']}` | {r['kind']} | {r['n_lrgs']} | {r['n_seeds']} | "
            f"{_pct(r['fail_rate'], r['fail_lo'], r['fail_hi'])} | "
            f"{_pct(r['inconclusive_rate'], r['inconclusive_lo'], r['inconclusive_hi'])} | {_cov(r)}{truth} |"
        )
    return "\n".join(lines) + "\n"


NOT_A_NULL = "not a null: fixed by construction"
"""What a null table shows instead of a fail rate for a case of :func:`~shortcutgates.calibrate.rates.fixed_by_construction`."""


def family_table(families: pd.DataFrame) -> str:
    """Per CNN family: seeds, share of seeds where a deciding core gate / any counterfactual gate failed."""
    if families.empty:
        return "(no cells)\n"
    lines = [
        (
            "| family | training LRGs | seeds | median val AUROC | a deciding core gate fails | "
            "a deciding counterfactual gate fails | model gates red (suite rule) | seeds with no deciding core case | "
            "training s / seed |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in families.sort_values("scorer").iterrows():
        lines.append(
            f"| `{r['scorer']}` | {r['n_lrgs']} | {r['n_seeds']} | {r['val_auroc_median']:.3f} | "
            f"{_pct(r['core_fail_rate'], r['core_fail_lo'], r['core_fail_hi'])} | "
            f"{_pct(r['model_fail_rate'], r['model_fail_lo'], r['model_fail_hi'])} | "
            f"{_pct(r['model_red_rate'], r['model_red_lo'], r['model_red_hi'])} | "
            f"{r['no_core_case_decided']} | {r['train_seconds_mean']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def cnn_case_table(summary: pd.DataFrame) -> str:
    """Per CNN family and model case (θ_E bin): role, seeds, fail / inconclusive / pass / error rates with
    intervals, mean value."""
    cnn = summary[(summary["kind"] == "cnn") & (summary["role"] != "training")]
    if cnn.empty:
        return "(no cells)\n"
    lines = [
        "| family | case | role | seeds | fail | inconclusive | pass | error | mean value |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in cnn.sort_values(["scorer", "case"]).iterrows():
        lines.append(
            f"| `{r['scorer']}` | `{r['case']}` | {r['role']} | {r['n_seeds']} | "
            + " | ".join(
                _pct(r[f"{v}_rate"], r[f"{v}_lo"], r[f"{v}_hi"]) for v in ("fail", "inconclusive", "pass", "error")
            )
            + f" | {r['mean_value']:.3f} |"
        )
    return "\n".join(lines) + "\n"


READER_TABLE_READERS = ("arc_blind2", "arc_blind5", "ring", "flux_per_ring", "mix0.3", "mix1")
"""Readers the per-gate reader table shows (``reader_cases.csv`` holds every reader)."""


def _reader_order(names) -> list:
    known = reader_names()
    return sorted(names, key=lambda n: (known.index(n) if n in known else len(known), n))


def reader_table(readers: pd.DataFrame) -> str:
    """Per reader of the ``reader`` cells: seeds on which a primary counterfactual case (a primary gate in a
    gated θ_E bin) failed, that share with its Wilson 95 % interval, and the share red by the suite's rule."""
    if readers.empty:
        return "(no cells)\n"
    lines = [
        "| reader | seeds failing a primary gate in a gated bin | rate [Wilson 95 %] | red by the suite's rule |",
        "|---|---|---|---|",
    ]
    by = readers.set_index("scorer")
    for name in _reader_order(by.index):
        r = by.loc[name]
        lines.append(
            f"| {reader_label(name)} | {r['n_failed']} / {r['n_seeds']} | {r['failed_rate']:.2f} "
            f"[{r['failed_lo']:.2f}, {r['failed_hi']:.2f}] | {_pct(r['red_rate'], r['red_lo'], r['red_hi'])} |"
        )
    return "\n".join(lines) + "\n"


def reader_cases(records: pd.DataFrame) -> pd.DataFrame:
    """Per gate (and measured companion), θ_E bin and reader of the ``reader`` cells: seeds, verdict counts
    (``e1 f2 i3 p4``: error, fail, inconclusive, pass) and the median value over seeds."""
    sub = records[(records["kind"] == "reader") & (records["scorer"].fillna("") != "")]
    rows = []
    for (gate, case, scorer), group in sub.groupby(["gate", "case", "scorer"], sort=False):
        counts = group.loc[group["verdict"] != "measured", "verdict"].value_counts()
        values = group["value"].to_numpy(np.float64)
        rows.append(
            {
                "gate": gate,
                "bin": bin_label(case),
                "scorer": scorer,
                "n_seeds": len(group),
                "counts": " ".join(f"{v[0]}{n}" for v, n in sorted(counts.items())),
                "median": float(np.nanmedian(values)) if np.isfinite(values).any() else np.nan,
            }
        )
    return pd.DataFrame(rows, columns=["gate", "bin", "scorer", "n_seeds", "counts", "median"])


def reader_case_table(cases: pd.DataFrame, readers=READER_TABLE_READERS) -> str:
    """The gate table of the reader study: median value (verdict counts) per gate, θ_E bin and reader."""
    if cases.empty:
        return "(no cells)\n"
    order = [name for g in COUNTERFACTUAL_GATES for name in (g, f"{g}:flag_rate")]
    readers = [r for r in readers if r in set(cases["scorer"])]
    lines = [
        "| gate | θ_E bin | " + " | ".join(reader_label(r) for r in readers) + " |",
        "|---|---|" + "---|" * len(readers),
    ]
    keyed = cases.set_index(["gate", "bin", "scorer"])
    for gate in sorted(set(cases["gate"]), key=lambda g: (order.index(g) if g in order else len(order), g)):
        bins = sorted(set(cases.loc[cases["gate"] == gate, "bin"]), key=lambda b: float(b.split("-")[0] or 0))
        for b in bins:
            cells = []
            for r in readers:
                if (gate, b, r) not in keyed.index:
                    cells.append("–")
                    continue
                row = keyed.loc[(gate, b, r)]
                cells.append(f"{row['median']:.3f}" + (f" ({row['counts']})" if row["counts"] else ""))
            lines.append(f"| `{gate}` | {b} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def undecidable_text(records: pd.DataFrame) -> str:
    """Each θ_E bin's share of undecidable pairs in the ``reader`` cells: median [min, max] over seeds."""
    sub = records[(records["kind"] == "reader") & (records["gate"] == "undecidable_share")]
    parts = []
    for case, group in sorted(sub.groupby("case"), key=lambda kv: float(bin_label(kv[0]).split("-")[0] or 0)):
        v = group["value"].to_numpy(np.float64)
        if np.isfinite(v).any():
            parts.append(f"{bin_label(case)} {np.nanmedian(v):.2f} [{np.nanmin(v):.2f}, {np.nanmax(v):.2f}]")
    return "Undecidable share per θ_E bin (median [min, max] over seeds): " + "; ".join(parts) + ".\n"


def _coverage_cell(r) -> str:
    """``coverage [Wilson 95 %], SE/SD`` of one interval (SE read off the mean half-width, over the seed SD)."""
    from scipy.stats import norm

    se_sd = r["half_width"] / norm.ppf(0.975) / r["sd_value"] if r["sd_value"] > 0 else np.nan
    return f"{r['coverage']:.3f} [{r['coverage_lo']:.3f}, {r['coverage_hi']:.3f}], {se_sd:.2f}"


def coverage_tables(summary: pd.DataFrame) -> str:
    """The ``coverage`` cells: per probe cell the coverage of its three intervals (``oof``, ``refit``,
    ``blend``: the one the gates use) against the mean estimate; per fixed-scorer cell the AUROC's and the
    AUROC gap's coverage against the truth; each with its Wilson interval and SE/SD (1: the right width)."""
    cov = summary[summary["kind"] == "coverage"]
    if cov.empty:
        return "(no cells)\n"
    by = cov.set_index(["problem", "strength", "n_lrgs", "case"])
    lines = [
        "| probe AUC | LRGs | seeds | estimand (seed SD) | scores only (old): coverage [Wilson 95 %], SE/SD | "
        "refit alone | **used** (blend) |",
        "|---|---|---|---|---|---|---|",
    ]
    for (problem, auc, n), _ in cov[cov["problem"].str.startswith("probe")].groupby(["problem", "strength", "n_lrgs"]):
        rows = {m: by.loc[(problem, auc, n, f"cv_auc[{m}]")] for m in ("oof", "refit", "blend")}
        b = rows["blend"]
        lines.append(
            f"| {problem.split('-')[1]}, population AUC {auc:g} | {n} | {b['n_seeds']} | {b['mean_value']:.3f} "
            f"({b['sd_value']:.3f}) | " + " | ".join(_coverage_cell(rows[m]) for m in ("oof", "refit", "blend")) + " |"
        )
    lines += [
        "",
        "| fixed scorer | LRGs per split | seeds | AUROC: coverage [Wilson 95 %], SE/SD | signed AUROC gap "
        "(true 0): coverage, SE/SD | gap half-width |",
        "|---|---|---|---|---|---|",
    ]
    for (problem, auc, n), _ in cov[cov["problem"].str.startswith("scorer")].groupby(["problem", "strength", "n_lrgs"]):
        a, g = by.loc[(problem, auc, n, "auroc")], by.loc[(problem, auc, n, "auroc_gap")]
        lines.append(
            f"| {problem.split('-')[1]}, AUROC {auc:g} | {n} | {a['n_seeds']} | {_coverage_cell(a)} | "
            f"{_coverage_cell(g)} | {g['half_width']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def power_table(summary: pd.DataFrame) -> str:
    """Fail rate of the targeted primary gates per planted problem, strength and size."""
    data = summary[summary["kind"] == "data"]
    lines = [
        "| problem | strength | LRGs per split | case (role) | seeds | fail (power) | mean value |",
        "|---|---|---|---|---|---|---|",
    ]
    for problem, gates in TARGETS.items():
        sub = data[(data["problem"] == problem) & (data["strength"] > 0) & data["gate"].isin(gates)]
        for _, r in sub.sort_values(["case", "n_lrgs", "strength"]).iterrows():
            lines.append(
                f"| {problem} | {r['strength']:g} | {r['n_lrgs']} | `{r['case']}` ({r['role']}) | {r['n_seeds']} | "
                f"{_pct(r['fail_rate'], r['fail_lo'], r['fail_hi'])} | {r['mean_value']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def lambda_table(summary: pd.DataFrame) -> str:
    """Model cases' fail rate per reference scorer (arc, mixtures, core)."""
    model = summary[(summary["kind"] == "model") & (summary["role"] == "primary")].copy()
    if model.empty:
        return "(no cells)\n"
    model["lam"] = model["scorer"].map(scorer_lambda)
    model = model[model["n_lrgs"] == model.loc[model["lam"] > 0, "n_lrgs"].max()] if (model["lam"] > 0).any() else model
    lams = sorted(model["lam"].unique())
    lines = ["| case | " + " | ".join(f"λ = {lam:g}" for lam in lams) + " |", "|---|" + "---|" * len(lams)]
    for case, group in model.groupby("case"):
        by = group.set_index("lam")
        cells = [
            (f"{100 * by.loc[lam, 'fail_rate']:.0f} % ({by.loc[lam, 'mean_value']:.2f})" if lam in by.index else "–")
            for lam in lams
        ]
        lines.append(f"| `{case}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def suite_table(suite: pd.DataFrame) -> str:
    """Green rate per cell by the suite's rule (every primary case passes, no case of any role is an established
    violation, every case ran), with the cases most often turning a seed red."""
    if suite.empty:
        return "(no cells)\n"
    lines = [
        "| cells | LRGs | scorer | seeds | green (suite rule) | most often red (seeds) |",
        "|---|---|---|---|---|---|",
    ]
    for _, r in suite.sort_values(["kind", "n_lrgs"]).iterrows():
        lines.append(
            f"| {r['kind']} | {r['n_lrgs']} | {r['scorer'] or '–'} | {r['n_seeds']} | "
            f"{_pct(r['green_rate'], r['green_lo'], r['green_hi'])} | {r['most_often_not_passed'] or '–'} |"
        )
    return "\n".join(lines) + "\n"


def _clean(records: pd.DataFrame) -> pd.Series:
    """Rows of clean cells: nothing planted, scored by no reader, the arc reader or a core-neutral CNN."""
    scorer = records["scorer"].fillna("").str.fullmatch(r"(arc|cnn:neutral-.+)?")
    return (records["strength"] == 0) & scorer


def clean_outcomes(records: pd.DataFrame) -> pd.DataFrame:
    """Green rate of the clean cells: data null, arc reader (model), whole suite (arc reader; core-neutral CNN)."""
    clean = records[_clean(records) & ~records["kind"].isin(["cnn", "reader"])]
    return summarise_suite(suite_outcomes(clean)) if len(clean) else pd.DataFrame()


def planted_outcomes(records: pd.DataFrame) -> pd.DataFrame:
    """Whole-run outcomes of the data and suite cells that :func:`clean_outcomes` leaves out: a planted problem,
    or a scorer that reads a shortcut (the ``core`` reader). Their green rate is one minus the power to turn
    a run red."""
    planted = records[records["kind"].isin(["data", "suite"]) & ~_clean(records)]
    return summarise_suite(suite_outcomes(planted)) if len(planted) else pd.DataFrame()


def planted_table(planted: pd.DataFrame) -> str:
    """How often each planted cell turned the run red by the suite's rule, with the cases that did."""
    if planted.empty:
        return "(no cells)\n"
    lines = [
        "| cell | seeds | run red (suite rule) | most often red (seeds) |",
        "|---|---|---|---|",
    ]
    for _, r in planted.sort_values(["kind", "n_lrgs", "cell"]).iterrows():
        red = _pct(1.0 - r["green_rate"], 1.0 - r["green_hi"], 1.0 - r["green_lo"])
        lines.append(f"| `{r['cell']}` | {r['n_seeds']} | {red} | {r['most_often_not_passed'] or '–'} |")
    return "\n".join(lines) + "\n"


def scorer_lambda(name: str) -> float:
    """Core weight λ of a reference scorer name (arc 0, core 1, mix<λ>)."""
    return 0.0 if name in ("arc", "") else 1.0 if name == "core" else float(name[3:])
