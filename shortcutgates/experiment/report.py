"""The experiment report: ``results.json`` -> ``report.md`` + ``report.html`` + PNG figures.

Also the ``shortcutgates report RESULTS [--out DIR]`` command. The layout of ``results.json`` is
documented in :mod:`shortcutgates.experiment.run`; this module only reads it. The report is a list of
blocks (heading, paragraph, list, table, figure) rendered twice, to Markdown and to HTML, so both
say the same thing. Every verdict and every answer to the proposal's review questions is computed
here (the criteria in :mod:`.criteria`) from the measurements; no sentence states a result that is
not in ``results.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

from shortcutgates.experiment import figures as figs
from shortcutgates.experiment import text
from shortcutgates.experiment.criteria import KEY_METRICS, config_names, criteria, decide, summarise
from shortcutgates.experiment.lens_search import lens_search_figures, tpr_table
from shortcutgates.gates.report_html import fmt, fmt_metric, gate_table, to_html  # noqa: F401  (shared with the gate page)
from shortcutgates.data.io import write_bytes_atomic

RESULTS_SCHEMA = "shortcutgates.experiment/1"
EXPERIMENT_TITLES = {
    "E1": "E1 paired→paired AUROC",
    "E2": "E2 unpaired→unpaired AUROC",
    "E3": "E3 E2 model on test_paired AUROC",
    "E3_gap": "E3 − E2",
    "E4": "E4 core-LR AUC (E2 model input, train split)",
}


class ReportFiles(NamedTuple):
    markdown: Path
    html: Path
    figures: list


# --- figures -----------------------------------------------------------------------------------
def make_figures(results: dict, results_dir: Path, fig_dir: Path) -> dict:
    """Draw every figure the results allow; returns ``{name: path}`` (first seed's curves)."""
    fig_dir.mkdir(parents=True, exist_ok=True)
    run = results["seeds"][0]
    configs = config_names(results)
    made = {}
    panels = {}
    for exp in ("E1", "E2", "E3"):
        curves = {}
        for config in configs:
            c = run["configs"].get(config, {})
            roc, m = c.get("roc", {}).get(exp), c.get("experiments", {}).get(exp)
            if roc and m and m.get("value") is not None:
                curves[config] = {"fpr": roc["fpr"], "tpr": roc["tpr"], "value": m["value"], "ci": m.get("ci")}
        if curves:
            panels[exp] = curves
    if panels:
        made["roc"] = figs.roc_figure(panels, fig_dir / "roc.png")
    made.update(lens_search_figures(results, results_dir, fig_dir))
    core_rows = _core_rows(results)
    if core_rows:
        made["core_lr"] = figs.interval_figure(
            core_rows,
            fig_dir / "core_lr.png",
            threshold=0.65,
            direction="max",
            title="core-LR AUC (10×10 box) vs the 0.65 gate",
            ylabel="AUC",
        )
    if results.get("properties"):
        made["properties"] = figs.property_figure(results["properties"], fig_dir / "properties.png")
    examples = results.get("examples")
    if examples and (results_dir / examples["file"]).exists():
        with np.load(results_dir / examples["file"], allow_pickle=False) as npz:
            made["stamps"] = figs.stamps_figure({k: npz[k] for k in npz.files}, fig_dir / "stamps.png")
    shift_rows = [
        dict(r, config=config, gate=r["id"])
        for config in configs
        for r in run["configs"].get(config, {}).get("gates", [])
        if r["gate"] in ("arc_masked_auroc", "morphology_auroc") and r.get("value") is not None
    ]
    if shift_rows:
        made["shifts"] = figs.shifts_figure(shift_rows, fig_dir / "shifts.png")
    strata = {}
    for config in configs:
        for prop, bins in run["configs"].get(config, {}).get("stratified", {}).items():
            strata.setdefault(prop, {})[config] = bins
    if any(b.get("value") is not None for per in strata.values() for bins in per.values() for b in bins):
        made["stratified"] = figs.stratified_figure(strata, fig_dir / "stratified.png", threshold=0.80)
    return made


def _core_rows(results: dict) -> list:
    run = results["seeds"][0]
    rows = []
    for key, dataset in (("E1_core_lr", "paired"), ("E4", "unpaired")):
        for config in config_names(results):
            m = run["configs"].get(config, {}).get("experiments", {}).get(key)
            if m and m.get("value") is not None:
                rows.append(
                    {
                        "label": f"{config}",
                        "value": m["value"],
                        "ci": m.get("ci"),
                        "group": f"{dataset} train split, model input" + (" (E4)" if key == "E4" else ""),
                    }
                )
    return rows


def core_lr_table(results: dict) -> tuple:
    """Core-LR AUC on the training input, paired vs unpaired, per configuration (cf. docs/design.md#the-shortcut)."""
    run = results["seeds"][0]
    rows = []
    for config in config_names(results):
        ex = run["configs"].get(config, {}).get("experiments", {})
        rows.append([config, fmt_metric(ex.get("E1_core_lr")), fmt_metric(ex.get("E4"))])
    return ["configuration (model input)", "paired (E1 training data)", "unpaired (E2 training data = E4)"], rows


# --- document ----------------------------------------------------------------------------------
CAPTIONS = {
    "roc": "ROC curves per experiment (first seed), false-positive rate on a log axis; grey lines: FPR 1e-2 "
    "and 1e-3, where lens searches work (a curve ending left of them: too few negatives to reach them).",
    "score_hist": "Score histograms of lenses and non-lenses per experiment and configuration (log counts).",
    "extremes": "E2 test split: the highest-scoring non-lenses and the lowest-scoring lenses, gri colour "
    "(z red, r green, g blue; asinh stretch in sky-noise units), white bar 2 arcsec.",
    "core_lr": "Core-LR AUC on the paired (E1) and unpaired (E2, = E4) training data as each model sees it, "
    "against the 0.65 gate.",
    "properties": "Lens vs non-lens distributions of each property in the unpaired training split "
    "(SMD: standardised mean difference; property balance is reported with a ±0.2 margin).",
    "stamps": "Examples: gri colour (z red, r green, g blue; white bar 2 arcsec), then the r band: stamp, "
    "control (same LRG without arc), difference (the arc), residual "
    "input, and the lensed light at r ≥ 5 px (an illustration of the arc: the gates split it from "
    "the counter-image by lensing, docs/model_gates.md).",
    "shifts": "Counterfactual model gates of the E2 models on their test_paired pairs, one panel per gate and "
    "θ_E bin, each value against its threshold (dashed): arc_masked_auroc is the share of "
    "counter-image-only stamps flagged at the operating threshold over the share of real lenses "
    "flagged (≤ 0.50 passes); the AUROC drops pass at ≤ 0.05; morphology_auroc and "
    "arc_swap_auroc_drop are diagnostics.",
    "stratified": "E2 detection AUROC by θ_E, PSF and depth bin (dashed: 0.80).",
}
"""Caption of each figure, by the name :func:`make_figures` gives it."""


def build_document(results: dict, figures: dict) -> list:
    """The report as blocks: ``("h1"|"h2"|"h3"|"p"|"code", text)``, ``("table", header, rows)``,
    ``("img", path, caption)``."""
    summary = results.get("summary") or summarise(results)
    crit = criteria(results)
    seeds = [r["seed"] for r in results["seeds"]]
    doc = [
        ("h1", "Unpaired training: experiments E1–E4"),
        ("p", text.intro(results)),
        *_measurement_sections(results, summary, crit),
        ("h2", "Answers to the review questions"),
    ]
    if len(seeds) > 1:
        doc += [
            (
                "p",
                f"Gate records and intervals below are those of the first seed ({seeds[0]}); the table "
                f"above gives the spread over all {len(seeds)} seeds.",
            )
        ]
    for question, answer in text.answers(results, summary, crit):
        doc += [("h3", question), ("p", answer)]
    doc += [("h2", "Figures")] + [("img", path, CAPTIONS[name]) for name, path in figures.items()]
    return (
        doc
        + gate_sections(results)
        + [
            ("h2", "Reproduce"),
            ("code", results.get("command", "")),
            (
                "p",
                f"shortcutgates {results.get('package_version', '?')}; parameters: "
                + ", ".join(f"{k}={v}" for k, v in results["params"].items() if k != "configs"),
            ),
        ]
    )


def _measurement_sections(results: dict, summary: dict, crit: list) -> list:
    """The blocks of the measured tables: E1–E4, E5, lens-search operating points, core-LR AUC and the
    success criteria (``summary``: :func:`.criteria.summarise`; ``crit``: :func:`.criteria.criteria`)."""
    seeds = [r["seed"] for r in results["seeds"]]
    cells = (
        "Each cell: estimate [95% interval, LRG bootstrap]."
        if len(seeds) == 1
        else f"Each cell: mean ± std over {len(seeds)} seeds (seeds {', '.join(map(str, seeds))})."
    )
    return [
        ("h2", "E1–E4"),
        ("table", *results_table(results, summary)),
        ("p", cells),
        ("h2", "E5: training recipes against the shortcut"),
        ("table", *e5_table(results)),
        ("p", E5_NOTE),
        ("h2", "Lens-search operating points"),
        ("table", *tpr_table(results)),
        (
            "p",
            "True-positive rate at false-positive rates 1e-2 and 1e-3 (lenses are about 1 in 1000 LRGs, so "
            "searches work there), 95% LRG-bootstrap intervals. A rate at FPR f needs about 10/f negatives; "
            "the note says when a split has fewer, and then the two rates can coincide.",
        ),
        ("h2", "Core-LR AUC on the training data"),
        ("table", *core_lr_table(results)),
        (
            "p",
            "Grouped-CV logistic regression on the central 10×10 px of all bands, as the model sees them. "
            "The survey team measured, on real DR10 cutouts: raw 0.951 paired / 0.949 unpaired, residual "
            "0.554 paired / 0.694 unpaired (docs/design.md#the-shortcut). Core dropout changes training only, so its input "
            "is the residual input.",
        ),
        ("h2", "Success criteria of the proposal"),
        (
            "table",
            ["configuration", "criterion", "value", "verdict", "per seed"],
            [[c.config, c.name, fmt(c.value), c.verdict, c.detail] for c in crit],
        ),
    ]


E5_NOTE = (
    "Per configuration and seed: the unpaired model's detection (E2, test split) with TPR at FPR 1e-2 and "
    "1e-3 (95% LRG-bootstrap intervals), the primary gates it does not pass, and two counterfactuals no "
    "recipe trains on, scored on held-out LRGs (test_paired) against their controls: a central point source "
    "of 30% of the LRG's flux with no arc, and the counter-image light moved 5 px with no arc (AUROC 0.5: "
    "scored like a control). A recipe trains against gates (docs/experiment.md#e5): core negatives are the "
    "arc_masked_auroc gate's counterfactual, shuffle negatives a relative of the morphology gate's."
)


def _tpr_cell(m: dict | None, fpr: str) -> str:
    t = ((m or {}).get("tpr_at_fpr") or {}).get(fpr)
    return fmt_metric(t) if isinstance(t, dict) else "n/a"


POINT_SOURCE_MAX_AUROC = 0.60
"""The unseen central point source (30 % of the LRG's flux, no arc) against the same controls on held-out
LRGs: a recipe's model must score it as a lens no more often than a control, AUROC ≤ this (issue 21)."""


def _point_source_cell(m: dict | None) -> tuple[str, str]:
    """``(cell, verdict)``: the AUROC with its interval and its verdict against :data:`POINT_SOURCE_MAX_AUROC`
    (held: interval below; failed: estimate above; else inconclusive; missing)."""
    verdict = decide(m, POINT_SOURCE_MAX_AUROC, "max")
    return (fmt_metric(m) if m else "n/a") + ("" if verdict == "missing" else f" {verdict}"), verdict


def e5_table(results: dict) -> tuple:
    """One row per (configuration, seed): training data, E2 AUROC, TPR at low FPR, unseen counterfactuals
    (the point source with its verdict against :data:`POINT_SOURCE_MAX_AUROC`), primary gates not passed;
    then one summary row per configuration (seeds passing every primary gate, seeds holding the point source)."""
    header = [
        "configuration",
        "seed",
        "training data",
        "E2 AUROC",
        "TPR @ 1e-2",
        "TPR @ 1e-3",
        f"point source 30% (AUROC ≤ {POINT_SOURCE_MAX_AUROC:.2f})",
        "moved counter-image (AUROC)",
        "primary gates not passed",
    ]
    rows = []
    for config in config_names(results):
        passed, held = [], []
        for run in results["seeds"]:
            c = run["configs"].get(config) or {}
            e2 = (c.get("experiments") or {}).get("E2")
            unseen = c.get("unseen") or {}
            failed = c.get("primary_failed")
            if failed is not None:
                passed.append(not failed)
            point, verdict = _point_source_cell(unseen.get("point_source"))
            held.append(verdict == "held")
            rows.append(
                [
                    config,
                    run["seed"],
                    c.get("dataset", "unpaired"),
                    fmt_metric(e2),
                    _tpr_cell(e2, "0.01"),
                    _tpr_cell(e2, "0.001"),
                    point,
                    fmt_metric(unseen.get("moved_counter_image")),
                    "n/a" if failed is None else (", ".join(failed) or "none"),
                ]
            )
        if len(results["seeds"]) > 1:
            rows.append(
                [
                    config,
                    "all",
                    "",
                    "",
                    "",
                    "",
                    f"held in {sum(held)} of {len(held)} seeds",
                    "",
                    f"every primary gate passed in {sum(passed)} of {len(passed)} seeds",
                ]
            )
    return header, rows


def gate_sections(results: dict) -> list:
    """Tables of every gate record of the first seed: per E2 model, then per built dataset."""
    run = results["seeds"][0]
    doc = [("h2", "Gates of the E2 models")]
    for config in config_names(results):
        doc += [("h3", config), ("table", *gate_table(run["configs"].get(config, {}).get("gates", [])))]
    doc += [("h2", "Gates of the built data")]
    for dataset, records in run.get("data_gates", {}).items():
        doc += [("h3", dataset), ("table", *gate_table(records))]
    return doc


def results_table(results: dict, summary: dict) -> tuple:
    header = ["configuration"] + [EXPERIMENT_TITLES[k] for k in KEY_METRICS]
    rows = []
    single = len(results["seeds"]) == 1
    for config in config_names(results):
        cells = [config]
        for key in KEY_METRICS:
            if single:
                cells.append(fmt_metric(results["seeds"][0]["configs"].get(config, {}).get("experiments", {}).get(key)))
            else:
                s = summary[config][key]
                cells.append("n/a" if s["mean"] is None else f"{fmt(s['mean'])} ± {fmt(s['std'])}")
        rows.append(cells)
    return header, rows


def terminal_table(results: dict) -> str:
    """The E1–E4 table as aligned plain text for the terminal."""
    header, rows = results_table(results, results.get("summary") or summarise(results))
    header = ["config", "E1", "E2", "E3", "E3-E2", "E4 core-LR"]
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in [header] + rows]
    verdicts = [f"  {c.config}: {c.name}: {c.verdict}" for c in criteria(results)]
    return "\n".join(lines[:1] + ["  ".join("-" * w for w in widths)] + lines[1:] + ["criteria:"] + verdicts)


# --- rendering ---------------------------------------------------------------------------------
def _md_cell(x) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def to_markdown(doc: list, base: Path) -> str:
    out = []
    for block in doc:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + block[1])
        elif kind == "p":
            out.append(block[1])
        elif kind == "code":
            out.append("```\n" + block[1] + "\n```")
        elif kind == "table":
            header, rows = block[1], block[2]
            lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            out.append("\n".join(lines) if rows else "(none)")
        elif kind == "img":
            out.append(f"![{block[2]}]({Path(block[1]).relative_to(base).as_posix()})\n\n*{block[2]}*")
    return "\n\n".join(out) + "\n"


def load_results(path) -> dict:
    """Read and check an experiment ``results.json``."""
    path = Path(path)
    try:
        results = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"report: no such file {path}") from None
    except ValueError as exc:
        raise ValueError(f"report: {path} is not valid JSON ({exc})") from None
    if not isinstance(results, dict) or results.get("schema") != RESULTS_SCHEMA:
        got = results.get("schema") if isinstance(results, dict) else type(results).__name__
        raise ValueError(
            f"report: {path} is not an experiment results file (schema {got!r}, "
            f"expected {RESULTS_SCHEMA!r}; written by 'shortcutgates experiment')"
        )
    if not results.get("seeds"):
        raise ValueError(f"report: {path} holds no run ('seeds' is empty)")
    return results


def render_report(results: dict, results_dir, out_dir=None) -> ReportFiles:
    """Write ``report.md``, ``report.html`` and ``figures/*.png`` to ``out_dir`` (default: results_dir).

    Parameters
    ----------
    results : dict
        Parsed ``results.json`` (see :mod:`shortcutgates.experiment.run`).
    results_dir : path-like
        Directory of ``results.json``; files it names (``examples.npz``) are looked up there.
    """
    results_dir = Path(results_dir)
    out_dir = Path(out_dir or results_dir)
    figures = make_figures(results, results_dir, out_dir / "figures")
    doc = build_document(results, figures)
    md, page = out_dir / "report.md", out_dir / "report.html"
    write_bytes_atomic(md, to_markdown(doc, out_dir).encode())
    write_bytes_atomic(page, to_html(doc, out_dir, "shortcutgates experiment report").encode())
    return ReportFiles(md, page, list(figures.values()))


# --- command -----------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", metavar="RESULTS", help="results.json written by 'shortcutgates experiment'")
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="where report.md, report.html and figures/ go. Default: beside RESULTS",
    )


def run(args: argparse.Namespace) -> int:
    path = Path(args.results)
    results = load_results(path)
    files = render_report(results, path.parent, args.out)
    print(terminal_table(results))
    print(f"report: {files.markdown}\n        {files.html}")
    return 0
