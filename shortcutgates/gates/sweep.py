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
rule as the pytest suite (:func:`shortcutgates.gates.suite.outcome`); in strict mode an expected
case that did not run also makes it red. Exit status 1 if any model is red, else 0.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from shortcutgates.gates.not_run import strict_failure
from shortcutgates.gates.registry import DATA_ONLY_GATES
from shortcutgates.gates.report_json import VERDICT_STYLE  # colours shared with the HTML page
from shortcutgates.gates.report_json import verdict_key as _verdict_key
from shortcutgates.gates.suite import is_red, role, run_suite

INPUT_DECIDED = frozenset({"core_lr_auc"})
"""Data gates whose role and decision follow the model's input (``docs/design.md#verdict-rule``): re-run
per model (their probe fits are memoised on the shared data, so only the decision is redone)."""

SUMMARY_FILE = "summary.csv"
FIGURE_FILE = "gates_by_model.png"


def report_names(models: list[Path]) -> list[str]:
    """A distinct report name per model: the file stem, prefixed by its position if stems repeat."""
    stems = [m.stem for m in models]
    if len(set(stems)) == len(stems):
        return stems
    return [f"{i:03d}_{s}" for i, s in enumerate(stems)]


def summary_row(name: str, path: Path, records: list[dict], strict: bool) -> dict:
    """One row of ``summary.csv``: verdict, counts, and every primary model case's value."""
    red = [r["id"] for r in records if is_red(r)]
    red_model = [r["id"] for r in records if is_red(r) and _is_model_case(r)]
    not_run = strict_failure(records) if strict else None
    row = {
        "model": name,
        "path": str(path),
        "verdict": "RED" if red or not_run else "GREEN",
        "failing": len(red),
        "not_run": sum(r["verdict"] == "skipped" for r in records),
        "first_failing": (red_model or red or [""])[0],
        "first_failing_data": next((i for i in red if i not in red_model), ""),
    }
    for r in model_primary(records):
        row[r["id"]] = r["value"]
    return row


def model_primary(records: list[dict]) -> list[dict]:
    """Records of primary cases that need the model (the ones that change from model to model)."""
    return [r for r in records if role(r) == "primary" and r["threshold"] is not None and _is_model_case(r)]


def _is_model_case(record: dict) -> bool:
    params = record.get("params") or {}
    return record["gate"] not in DATA_ONLY_GATES or params.get("input") == "model"


def plot_by_model(table: pd.DataFrame, records_by_model: dict[str, list[dict]], path: Path) -> Path | None:
    """Each primary model case's value with its interval across models, threshold dashed, failures red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from shortcutgates.data.io import write_png

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
        ci = np.array(
            [[np.nan, np.nan] if r is None or not r["ci"] or None in r["ci"] else r["ci"] for r in recs], float
        )
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
    for ax in axes.flat[len(ids) :]:
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
    from shortcutgates.model.checkpoint import recorded_manifest

    found = {recorded_manifest(m) for m in models if m.suffix.lower() not in (".onnx", ".pt2")}
    if len(found) != 1 or any(m.suffix.lower() in (".onnx", ".pt2") for m in models):
        raise ValueError("the models do not all record one training manifest; pass the data to gate with --data DIR")
    return found.pop()


def gate_many(
    data,
    models: list[Path],
    out: Path,
    *,
    config_path=None,
    strict: bool = True,
    progress: bool = True,
    data_root=None,
    cache_dir=None,
    reuse_cache: bool = True,
    input: str | None = None,
) -> int:
    """Gate every model in ``models`` on ``data``; write reports, table and figure to ``out``; exit status.

    Data cases come from the data-gate cache (:mod:`.cache`, in ``cache_dir`` or the default) when
    its entry for this manifest and these settings holds them; ``reuse_cache=False`` measures them
    again. Fresh data records are stored in the entry.
    """
    from tqdm.auto import tqdm

    from shortcutgates.data.io import write_bytes_atomic
    from shortcutgates.gates.context import GateContext
    from shortcutgates.gates.registry import gate_cases, load_config
    from shortcutgates.gates.report_json import write_report
    from shortcutgates.gates.sample import decode_rows
    from shortcutgates.model.scorers import PreprocessCache

    models = [Path(m) for m in models]
    base = GateContext(
        _data_for(data, models), config=load_config(config_path, input=input), progress=False, data_root=data_root
    )
    data_cases = [c for c in gate_cases(base) if "model" not in c.needs]
    data_records = _data_records(base, data_cases, cache_dir, reuse_cache, progress)
    shape = decode_rows(base.frame.iloc[:1]).shape if len(base.frame) else None
    names, rows, by_model = report_names(models), [], {}
    cache = PreprocessCache()  # every model sees the same stamps: preprocess each batch once
    out.mkdir(parents=True, exist_ok=True)
    for name, path in zip(names, tqdm(models, desc="models", unit="model", disable=not progress)):
        report = _model_report(base, path, cache, data_records, shape)
        write_report(out / f"{name}.json", report)
        by_model[name] = report["gates"]
        rows.append(summary_row(name, path, report["gates"], strict))
    table = pd.DataFrame(rows)
    write_bytes_atomic(out / SUMMARY_FILE, table.to_csv(index=False).encode())
    plot_by_model(table, by_model, out / FIGURE_FILE)
    _print_table(table, out)
    return int((table["verdict"] == "RED").any())


def _model_report(base, path: Path, cache, data_records: dict[str, dict], shape) -> dict:
    """One model's report: its model cases (and the input-decided probes) measured on a context sharing
    ``base``'s data, the data cases' records taken from ``data_records``."""
    from shortcutgates.gates.registry import gate_cases
    from shortcutgates.gates.report_json import build_report
    from shortcutgates.model.scorers import load_scorer

    scorer = load_scorer(path, cache)
    if scorer.contract is not None and shape is not None:
        scorer.contract.check_stamp(shape, str(path))
    context = base.with_scorer(
        scorer.score_fn,
        scorer.preprocess,
        path,  # Scorer.preprocess: object
        scorer.score_inputs,
    )
    model_cases = gate_cases(context)  # roles of the input-decided probes follow this model's input

    def shared(case) -> bool:
        return case.id in data_records and case.gate not in INPUT_DECIDED

    model_records = {
        run.case.id: run.record() for run in run_suite(context, lambda c: not shared(c), cases=model_cases)
    }
    records = [data_records[c.id] if shared(c) else model_records[c.id] for c in model_cases]
    return build_report(
        records,
        data=base.data_info,
        model={**(context.model_info or {}), **scorer.info},
        config=base.config.as_report(),
    )


def _data_records(context, cases, cache_dir, reuse_cache: bool, progress: bool) -> dict[str, dict]:
    """Case id -> record of every data case: from the cache entry, else measured (and stored)."""
    import sys

    from tqdm.auto import tqdm

    from shortcutgates.gates.cache import open_cache

    cache = open_cache(context, cache_dir, notify=lambda line: print(line, file=sys.stderr))
    if not reuse_cache:
        cache.forget()
    context.array_cache = cache  # the models' contexts share it (with_scorer): the lensing split of the pairs
    records = {}
    for case in tqdm(cases, desc="data gates", disable=not progress):
        stored = cache.get(case)
        if stored is None:
            run = next(run_suite(context, cases=[case]))
            records[case.id] = run.record()
            cache.put(case, {k: v for k, v in records[case.id].items() if k != "waiver"})
        else:
            records[case.id] = {**stored, "waiver": context.config.waiver_for(case)}
    cache.save()
    print(f"gate cache: {cache.n_reused} of {len(cases)} data cases reused; entry {cache.path}", file=sys.stderr)
    return records


def _print_table(table: pd.DataFrame, out: Path) -> None:
    cols = ["model", "verdict", "failing", "not_run", "first_failing"]
    print(table[cols].to_string(index=False))
    print(
        f"{len(table)} models, {int((table['verdict'] == 'RED').sum())} red; reports, {SUMMARY_FILE} and "
        f"{FIGURE_FILE} in {out}"
    )
