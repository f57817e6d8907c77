"""Tables (CSV, Markdown) and figures of a calibration run.

* ``summary.csv``: one row per (cell, case) — :func:`shortcutgates.calibrate.rates.summarise`.
* ``suite.csv``: whole-suite green rate per suite cell.
* ``calibration.md``: the Markdown tables ``docs/calibration.md`` quotes.
* ``calibration_power.png`` (power against planted strength per size),
  ``calibration_coverage.png`` (coverage against size on clean data),
  ``calibration_lambda.png`` (model gates' fail rate against the core weight λ).

The Markdown tables themselves are built by :mod:`shortcutgates.calibrate.tables`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from shortcutgates.data.io import write_bytes_atomic, write_png
from shortcutgates.calibrate.rates import (
    family_outcomes,
    reader_outcomes,
    summarise,
    summarise_families,
    summarise_readers,
)
from shortcutgates.calibrate.tables import (
    NOT_A_NULL,
    TARGETS,
    clean_outcomes,
    planted_outcomes,
    planted_table,
    cnn_case_table,
    coverage_tables,
    family_table,
    lambda_table,
    null_table,
    power_table,
    reader_case_table,
    reader_cases,
    reader_table,
    scorer_lambda,
    suite_table,
    undecidable_text,
)

COVERAGE_SCORERS = ("arc", "mix0.2")
"""Reference scorers whose clean model cells enter the coverage figure (the arc reader's masked-AUROC
values are point masses; the λ = 0.2 mixture's are not)."""
POINT_MASS_GATES = ("arc_masked_auroc", "core_masked_auroc_drop")
"""Gates whose value for the arc reader is exact (0.5 / 0): their coverage is 1 by construction."""


def plot_power(summary: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = summary[summary["kind"] == "data"]
    null = data[data["strength"] == 0]
    fig, axes = plt.subplots(1, len(TARGETS), figsize=(4.2 * len(TARGETS), 3.6), squeeze=False)
    for ax, (problem, gates) in zip(axes[0], TARGETS.items()):
        sub = data[(data["problem"] == problem) & data["gate"].isin(gates)]
        for (case, n), g in sub.groupby(["case", "n_lrgs"]):
            g = pd.concat([null[(null["case"] == case) & (null["n_lrgs"] == n)], g]).sort_values("strength")
            ax.errorbar(
                g["strength"],
                g["fail_rate"],
                yerr=[g["fail_rate"] - g["fail_lo"], g["fail_hi"] - g["fail_rate"]],
                marker="o",
                ms=3,
                capsize=2,
                label=f"{case} n={n}",
            )
        ax.axhline(0.9, color="grey", ls=":", lw=1)
        ax.axhline(0.05, color="grey", ls=":", lw=1)
        ax.set_xlabel(
            {
                "core": "counter-image flux / arc flux",
                "smd": "planted |SMD| of the PSF columns",
                "leak": "leaked-LRG fraction",
                "dup": "duplicated-row fraction",
                "faint": "fraction of arc flux removed",
            }[problem]
        )
        ax.set_ylabel("fail rate (power)")
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(problem)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    fig.tight_layout()
    write_png(fig, path, dpi=110)
    plt.close(fig)


def plot_coverage(summary: pd.DataFrame, path: Path) -> None:
    """Coverage against size on clean data: data gates (left), model gates (right); cells of at least
    50 seeds, without the arc reader's point-mass values (its masked AUROC is 0.5 exactly)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sub = summary[
        (summary["strength"] == 0)
        & (summary["role"] == "primary")
        & np.isfinite(summary["coverage"])
        & ((summary["kind"] == "data") | summary["scorer"].isin(COVERAGE_SCORERS))
        & (summary["kind"] != "suite")
        & (summary["n_seeds"] >= 50)
    ]
    sub = sub[~((sub["scorer"] == "arc") & sub["gate"].isin(POINT_MASS_GATES))]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.5), sharey=True)
    for ax, kind in zip(axes, ("data", "model")):
        for (case, scorer), g in sub[sub["kind"] == kind].groupby(["case", "scorer"]):
            g = g.sort_values("n_lrgs")
            ax.errorbar(
                g["n_lrgs"],
                g["coverage"],
                yerr=[g["coverage"] - g["coverage_lo"], g["coverage_hi"] - g["coverage"]],
                marker="o",
                ms=3,
                capsize=2,
                ls="-" if scorer != "mix0.2" else "--",
                label=case.replace("test_paired-", "") + (f" ({scorer})" if scorer else ""),
            )
        ax.axhspan(0.93, 0.97, color="green", alpha=0.15)
        ax.set_xscale("log")
        ax.set_xlabel("LRGs per split" if kind == "data" else "test LRGs (test_paired: half as many pairs)")
        ax.set_title(f"{kind} gates, clean data (band: 0.93–0.97)")
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    axes[0].set_ylabel("interval coverage")
    axes[0].set_ylim(0.75, 1.02)
    fig.tight_layout()
    write_png(fig, path, dpi=110)
    plt.close(fig)


def plot_lambda(summary: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = summary[(summary["kind"] == "model") & (summary["role"] == "primary")].copy()
    model["lam"] = model["scorer"].map(scorer_lambda)
    fig, ax = plt.subplots(figsize=(7, 4))
    for (case, n), g in model.groupby(["case", "n_lrgs"]):
        if g["lam"].nunique() < 2:
            continue
        g = g.sort_values("lam")
        ax.errorbar(
            g["lam"],
            g["fail_rate"],
            yerr=[g["fail_rate"] - g["fail_lo"], g["fail_hi"] - g["fail_rate"]],
            marker="o",
            ms=3,
            capsize=2,
            label=f"{case} n={n}",
        )
    ax.set_xlabel("λ (core weight of the reference scorer λ·core + (1−λ)·arc)")
    ax.set_ylabel("fail rate")
    ax.set_ylim(-0.03, 1.03)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6)
    fig.tight_layout()
    write_png(fig, path, dpi=110)
    plt.close(fig)


def _reader_report(records: pd.DataFrame, out_dir: Path, paths: dict) -> list[str]:
    """``readers.csv`` (per cell and reader), ``reader_cases.csv`` (per cell, gate, bin, reader) and the
    Markdown of each ``reader`` cell (the tables of ``docs/model_gates.md#calibration``); nothing without
    such cells."""
    outcomes = reader_outcomes(records)
    if outcomes.empty:
        return []
    readers = summarise_readers(outcomes)
    cells = {cell: reader_cases(sub) for cell, sub in records[records["kind"] == "reader"].groupby("cell", sort=False)}
    paths["readers"], paths["reader_cases"] = out_dir / "readers.csv", out_dir / "reader_cases.csv"
    write_bytes_atomic(paths["readers"], readers.to_csv(index=False, float_format="%.5g").encode())
    every = pd.concat([c.assign(cell=cell) for cell, c in cells.items()], ignore_index=True)
    write_bytes_atomic(paths["reader_cases"], every.to_csv(index=False, float_format="%.5g").encode())
    text = []
    for cell, cases in cells.items():
        mine = outcomes[outcomes["cell"] == cell]
        seeds = sorted(set(mine["seed"].astype(int)))
        text += [
            f"\n## Reference readers on the simulator's lenses (`{cell}`)\n",
            f"{len(seeds)} seeds ({', '.join(map(str, seeds))}), {int(mine['n_lrgs'].iloc[0])} LRGs each. ",
            undecidable_text(records[records["cell"] == cell]),
            "\n",
            reader_table(readers[readers["cell"] == cell]),
            "\nMedian value over seeds (verdict counts: e error, f fail, i inconclusive, p pass; "
            "`arc_masked_auroc:flag_rate` = the share of core-only counterfactuals flagged):\n\n",
            reader_case_table(cases),
        ]
    return text


def _main_sections(
    summary: pd.DataFrame, suite: pd.DataFrame, families: pd.DataFrame, planted: pd.DataFrame
) -> list[str]:
    """The Markdown of ``calibration.md`` before the reader and coverage sections: null rates, reported
    cases, power, the λ sweep, whole-suite green rates, CNN families and cases."""
    return [
        "## Data gates on clean data\n",
        null_table(summary, "data"),
        "\n## Model gates, arc reader on data with the survey-strength core excess\n",
        null_table(summary, "model"),
        "\n## Model gates, mixture reader λ = 0.2 (values that are not point masses: coverage)\n",
        null_table(summary, "model", scorer="mix0.2"),
        "\n## Whole suite (4000 LRGs, builder's default splits, arc reader): primary cases\n",
        null_table(summary, "suite"),
        "\n## Reported cases on clean data (shown, never gating)\n",
        "Cases whose role is `reported` (the held-out splits' shortcut probes, the cross-test gap, the "
        "counterfactual θ_E bins with fewer than 30 pairs): what their verdicts would have been as primary "
        "cases.\n\n",
        null_table(summary, None, role="reported"),
        "\n## Power: planted problems\n",
        power_table(summary),
        "\n## Model gates against the core weight λ (fail rate, mean value)\n",
        lambda_table(summary),
        "\n## Clean runs: how often the suite's rule keeps a run green\n",
        "Data cells run the data cases of one split, model cells the model cases, suite cells every case "
        "of a manifest built with the builder's default splits.\n\n",
        suite_table(suite),
        "\n## Planted problems: how often the suite's rule turns a run red\n",
        "Every data and suite cell with a planted problem, or scored by a reader of the core; a cell is red when "
        "a primary case does not pass, a case of any role is an established violation, or a case did not run.\n\n",
        planted_table(planted),
        (
            "\nCoverage marked * is against the mean estimate over seeds (no analytic truth). "
            f'"{NOT_A_NULL}": a core gate of a reader blind inside the core radius on the tapered pool, '
            "whose value the construction fixes (no false-fail rate; `rates.fixed_by_construction`).\n"
        ),
        "\n## Trained CNNs on the realistic pool: per family\n",
        (
            "A *deciding* case is a primary one (a gated θ_E bin). Core-neutral families are the model gates' "
            "null (a core gate failing is a false alarm), the core-reliant family their power.\n\n"
        ),
        family_table(families),
        "\n## Trained CNNs on the realistic pool: every model case\n",
        cnn_case_table(summary),
    ]


def write_report(records: pd.DataFrame, out_dir, figures_dir=None) -> dict:
    """Write ``summary.csv``, ``suite.csv``, ``calibration.md`` and the figures; returns their paths."""
    out_dir = Path(out_dir)
    figures_dir = Path(figures_dir or out_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    summary = summarise(records)
    suite = clean_outcomes(records)
    outcomes = family_outcomes(records)
    families = summarise_families(outcomes) if len(outcomes) else pd.DataFrame()
    paths = {
        "summary": out_dir / "summary.csv",
        "suite": out_dir / "suite.csv",
        "markdown": out_dir / "calibration.md",
        "power": figures_dir / "calibration_power.png",
        "coverage": figures_dir / "calibration_coverage.png",
        "lambda": figures_dir / "calibration_lambda.png",
    }
    write_bytes_atomic(paths["summary"], summary.to_csv(index=False, float_format="%.5g").encode())
    write_bytes_atomic(paths["suite"], suite.to_csv(index=False, float_format="%.5g").encode())
    if len(outcomes):
        paths["cnn_seeds"], paths["families"] = out_dir / "cnn_seeds.csv", out_dir / "families.csv"
        write_bytes_atomic(paths["cnn_seeds"], outcomes.to_csv(index=False, float_format="%.5g").encode())
        write_bytes_atomic(paths["families"], families.to_csv(index=False, float_format="%.5g").encode())
    text = _main_sections(summary, suite, families, planted_outcomes(records))
    text += _reader_report(records, out_dir, paths)
    if (summary["kind"] == "coverage").any():
        text += ["\n## Interval coverage on synthetic data (`coverage` cells)\n", coverage_tables(summary)]
    write_bytes_atomic(paths["markdown"], "".join(text).encode())
    plot_power(summary, paths["power"])
    plot_coverage(summary, paths["coverage"])
    plot_lambda(summary, paths["lambda"])
    return paths
