"""Gate many models on one data read: ``shortcutgates gate --model a.pt b.pt ... --out DIR``.

The manifest is read and sampled once and every data-only case is measured once; each model then
runs only its model cases on a context that shares the decoded samples, the preprocessed inputs of
named modes and the memoised probe results (:meth:`GateContext.with_scorer`). Written into
``out``: one JSON report per model (``<name>.json``, schema of :mod:`.report_json`), ``summary.csv``
(one row per model: verdict, counts, ``first_failing`` — the first red model case, else the first red
data case — ``first_failing_data``, every primary model case's value) and
``gates_by_model.png`` (each primary model case's value and interval across the models, in the
order given, e.g. by epoch: does the shortcut appear early?).

A model is red when a primary case fails, errs or is inconclusive and is not waived — the same
rule as the pytest suite (:func:`shortcutgates.plugin.check_record`); in strict mode an expected
case that did not run also makes it red. Exit status 1 if any model is red, else 0.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .report_json import VERDICT_STYLE  # colours shared with the HTML page
from .report_json import verdict_key as _verdict_key

SUMMARY_FILE = "summary.csv"
FIGURE_FILE = "gates_by_model.png"


def is_red(record: dict) -> bool:
    """The record turns a run red (failing primary verdict, not waived), by the suite's own rule."""
    from ..plugin import is_red_record

    return is_red_record(record)


def case_record(context, case) -> dict:
    """One case's report record, with its waiver (as the plugin writes it)."""
    from .registry import run_case

    record = run_case(context, case).to_json()
    record["waiver"] = context.config.waiver_for(case)
    return record


def report_names(models: list[Path]) -> list[str]:
    """A distinct report name per model: the file stem, prefixed by its position if stems repeat."""
    stems = [m.stem for m in models]
    if len(set(stems)) == len(stems):
        return stems
    return [f"{i:03d}_{s}" for i, s in enumerate(stems)]


def summary_row(name: str, path: Path, records: list[dict], strict: bool) -> dict:
    """One row of ``summary.csv``: verdict, counts, and every primary model case's value."""
    from ..plugin import strict_failure

    red = [r["id"] for r in records if is_red(r)]
    red_model = [r["id"] for r in records if is_red(r) and _is_model_case(r)]
    not_run = strict_failure(records) if strict else None
    row = {"model": name, "path": str(path), "verdict": "RED" if red or not_run else "GREEN",
           "failing": len(red), "not_run": sum(r["verdict"] == "skipped" for r in records),
           "first_failing": (red_model or red or [""])[0], "first_failing_data": next(
               (i for i in red if i not in red_model), "")}
    for r in model_primary(records):
        row[r["id"]] = r["value"]
    return row


def model_primary(records: list[dict]) -> list[dict]:
    """Records of primary cases that need the model (the ones that change from model to model)."""
    return [r for r in records if r.get("role", "primary") == "primary" and r["threshold"] is not None
            and _is_model_case(r)]


def _is_model_case(record: dict) -> bool:
    params = record.get("params") or {}
    return record["gate"] not in DATA_ONLY_GATES or params.get("input") == "model"


DATA_ONLY_GATES = frozenset({"data_integrity", "lrg_leakage", "property_balance", "metadata_c2st_auc", "core_lr_auc",
                             "radial_profile_lr_auc", "arc_annulus_lr_auc"})
"""Gates measured on the data alone (except their ``input=model`` cases)."""


def plot_by_model(table: pd.DataFrame, records_by_model: dict[str, list[dict]], path: Path) -> Path | None:
    """Each primary model case's value with its interval across models, threshold dashed, failures red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import write_png

    names = list(table["model"])
    ids = [r["id"] for r in model_primary(records_by_model[names[0]])]
    if not ids:
        return None
    ncols = min(4, len(ids))
    nrows = math.ceil(len(ids) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.6 * nrows), squeeze=False, sharex=True)
    x = np.arange(len(names))
    shown: dict = {}
    for ax, case_id in zip(axes.flat, ids):
        recs = [{r["id"]: r for r in records_by_model[n]}.get(case_id) for n in names]
        value = np.array([np.nan if r is None or r["value"] is None else r["value"] for r in recs], float)
        ci = np.array([[np.nan, np.nan] if r is None or not r["ci"] or None in r["ci"] else r["ci"] for r in recs], float)
        verdicts = np.array([_verdict_key(r) for r in recs], object)
        err = np.abs(np.vstack([value - ci[:, 0], ci[:, 1] - value]))
        ax.errorbar(x, value, yerr=np.nan_to_num(err), fmt="-", color="0.6", lw=1, capsize=2, zorder=1)
        for key, (colour, label) in VERDICT_STYLE.items():
            sel = verdicts == key
            if sel.any():
                ax.scatter(x[sel], value[sel], color=colour, s=18, zorder=2, label=label)
                shown[key] = (colour, label)
        if np.isnan(value).all():
            reasons = sorted({r["verdict"] for r in recs if r is not None})
            ax.text(0.5, 0.5, f"no value ({', '.join(reasons)})", transform=ax.transAxes, ha="center", fontsize=8)
        threshold = next((r["threshold"] for r in recs if r is not None), None)
        if threshold is not None:
            ax.axhline(threshold, color="k", ls="--", lw=0.8)
        ax.set_title(case_id, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(ids):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xticks(x, names, rotation=60, ha="right", fontsize=6)
    fig.suptitle("primary model gates by model (95% LRG-bootstrap interval; dashed: threshold)", fontsize=9)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="", marker="o", color=c, label=label) for c, label in shown.values()]
    fig.tight_layout(rect=(0, 0.06 if handles else 0, 1, 1))
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7, frameon=False)
    write_png(fig, path, dpi=120)
    plt.close(fig)
    return path


def _data_for(data, models: list[Path]) -> Path:
    """``--data``, or the manifest the checkpoints record (all must record the same one)."""
    if data is not None:
        return Path(data)
    from ..checkpoint import recorded_manifest

    found = {recorded_manifest(m) for m in models if m.suffix.lower() not in (".onnx", ".pt2")}
    if len(found) != 1 or any(m.suffix.lower() in (".onnx", ".pt2") for m in models):
        raise ValueError("the models do not all record one training manifest; pass the data to gate with --data DIR")
    return found.pop()


def gate_many(data, models: list[Path], out: Path, *, config_path=None, strict: bool = True,
              progress: bool = True, data_root=None) -> int:
    """Gate every model in ``models`` on ``data``; write reports, table and figure to ``out``; exit status."""
    from tqdm.auto import tqdm

    from ..io import write_bytes_atomic
    from ..scorers import PreprocessCache, load_scorer
    from .context import GateContext, decode_rows
    from .registry import gate_cases, load_config
    from .report_json import build_report, write_report

    models = [Path(m) for m in models]
    base = GateContext(_data_for(data, models), config=load_config(config_path), progress=False, data_root=data_root)
    cases = gate_cases(base)
    data_cases = [c for c in cases if "model" not in c.needs]
    data_records = {c.id: case_record(base, c) for c in tqdm(data_cases, desc="data gates", disable=not progress)}
    shape = decode_rows(base.frame.iloc[:1]).shape if len(base.frame) else None
    names, rows, by_model = report_names(models), [], {}
    cache = PreprocessCache()  # every model sees the same stamps: preprocess each batch once
    out.mkdir(parents=True, exist_ok=True)
    for name, path in zip(names, tqdm(models, desc="models", unit="model", disable=not progress)):
        scorer = load_scorer(path, cache)
        if scorer.contract is not None and shape is not None:
            scorer.contract.check_stamp(shape, str(path))
        context = base.with_scorer(scorer.score_fn, scorer.preprocess, path)
        # this model's own case set (its preprocessing decides the model-input cases), as a single run makes it
        records = [data_records.get(c.id) or case_record(context, c) for c in gate_cases(context)]
        report = build_report(records, data=base.data_info, model={**(context.model_info or {}), **scorer.info})
        write_report(out / f"{name}.json", report)
        by_model[name] = report["gates"]
        rows.append(summary_row(name, path, report["gates"], strict))
    table = pd.DataFrame(rows)
    write_bytes_atomic(out / SUMMARY_FILE, table.to_csv(index=False).encode())
    plot_by_model(table, by_model, out / FIGURE_FILE)
    _print_table(table, out)
    return int((table["verdict"] == "RED").any())


def _print_table(table: pd.DataFrame, out: Path) -> None:
    cols = ["model", "verdict", "failing", "not_run", "first_failing"]
    print(table[cols].to_string(index=False))
    print(f"{len(table)} models, {int((table['verdict'] == 'RED').sum())} red; reports, {SUMMARY_FILE} and "
          f"{FIGURE_FILE} in {out}")
