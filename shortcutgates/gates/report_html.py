"""The gate report as one self-contained HTML page (``--gate-html FILE``), for CI artifacts.

Built from the JSON report (:mod:`.report_json`), so the page and the JSON never disagree: the
verdict of the run, the counts, the cases that did not run with their reasons, and one table row
per gate case (value with its interval, threshold, verdict, sample sizes, message), a figure of
the cases against their thresholds and — with a model — the report's ``low_fpr`` block: TPR at FPR
10⁻² / 10⁻³ with LRG-bootstrap intervals and a log-FPR ROC per held-out split. Figures are embedded
as data URIs, so the page is one file (a CI artifact). Rendered with the experiment report's HTML writer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np


def gate_document(report: Mapping, title: str = "shortcutgates gate report") -> list:
    """The page as blocks of :func:`shortcutgates.experiment.report.to_html`."""
    from ..experiment.report import gate_table
    from .not_run import not_run
    from .report_json import is_red

    gates = list(report["gates"])
    red = [g["id"] for g in gates if is_red(g)]
    s = report.get("summary") or {}
    model, data = report.get("model") or {}, report.get("data") or {}
    verdict = f"RED: {len(red)} gate(s) fail: {', '.join(red[:20])}" if red else "GREEN: no gate that ran fails"
    doc = [("h1", title), ("p", verdict),
           ("p", f"model: {model.get('path') or model.get('kind') or 'none'}; data: {data.get('path')} "
                 f"({data.get('n_rows')} rows); {s.get('expected')} gates expected, {s.get('run')} run, "
                 f"{s.get('skipped')} not run, {s.get('waived')} waived.")]
    missing = not_run(gates)
    if missing:
        doc += [("h2", "Gates that did not run")]
        doc += [("p", f"{reason}: {', '.join(ids)}") for reason, ids in sorted(missing.items())]
    doc += [("h2", "Gates"), ("table", *gate_table(gates))]
    figure = gates_figure(gates)
    if figure:
        doc += [("img", figure, "Each gate case's value with its 95 % LRG-bootstrap interval against its threshold "
                 "(black tick; a ±margin claim: two ticks); colour: verdict")]
    low = report.get("low_fpr") or {}
    if low:
        doc += [("h2", "Detection at low false-positive rates"), ("table", *low_fpr_table(low))]
        roc = roc_figure(low)
        if roc:
            doc += [("img", roc, "ROC of the model on each held-out split, false-positive rate on a log axis")]
    return doc


def low_fpr_table(low: Mapping) -> tuple:
    """Header and rows: per split, AUROC context and TPR at FPR 10⁻² / 10⁻³ with intervals and notes."""
    from ..experiment.lens_search import _fmt

    header = ["split", "negatives", "TPR @ FPR 1e-2", "TPR @ FPR 1e-3", "note"]
    rows = []
    for split, block in low.items():
        tpr = block.get("tpr_at_fpr") or {}
        notes = "; ".join(t["note"] for t in tpr.values() if t.get("note"))
        rows.append([split, str(block.get("n_neg")), _fmt(tpr.get("0.01", {})), _fmt(tpr.get("0.001", {})), notes])
    return header, rows


def _png_data_uri(fig) -> str:
    import base64
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def gates_figure(gates: list) -> str | None:
    """The gate cases that ran with a threshold on the AUC / difference scale (counts stay in the table), as
    one dot-and-interval chart (a data URI PNG), or None."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .report_json import VERDICT_STYLE
    from .report_json import verdict_key as _verdict_key

    rows = [g for g in gates if g.get("value") is not None and g.get("threshold") is not None
            and abs(g["value"]) <= 1.5 and abs(g["threshold"]) <= 1.5]  # AUCs and differences; counts are in the table
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.22 * len(rows) + 1.0))
    seen = {}
    for y, g in enumerate(rows):
        ci = g.get("ci") or [None, None]
        key = _verdict_key(g) or "error"
        colour, label = VERDICT_STYLE[key]
        if None not in ci:
            ax.plot(ci, [y, y], color=colour, lw=1.5)
        ax.plot([g["value"]], [y], "o", color=colour, ms=4, label=None if key in seen else label)
        seen[key] = True
        t = g["threshold"]
        for tick in ((-t, t) if _is_margin(g) else (t,)):
            ax.plot([tick], [y], "|", color="k", ms=9)
    ax.set_yticks(range(len(rows)), [g["id"] for g in rows], fontsize=6)
    ax.invert_yaxis()
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(fontsize=7, loc="best", frameon=False)
    fig.tight_layout()
    return _png_data_uri(fig)


def _is_margin(g: Mapping) -> bool:
    from .registry import REGISTRY

    return bool(getattr(REGISTRY.get(g.get("gate")), "equivalence", False))


def roc_figure(low: Mapping) -> str | None:
    """ROC curves (log false-positive rate) of the ``low_fpr`` block, as a data URI PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {s: b["roc"] for s, b in low.items() if b.get("roc")}
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    for split, roc in curves.items():
        fpr = np.maximum(np.asarray(roc["fpr"], float), 1e-4)
        ax.step(fpr, roc["tpr"], where="post", label=split)
    for level in (1e-2, 1e-3):
        ax.axvline(level, color="0.7", ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return _png_data_uri(fig)


def write_gate_html(path, report: Mapping) -> Path:
    """Write the page for ``report`` to ``path`` atomically."""
    from ..experiment.report import to_html
    from ..io import write_bytes_atomic

    path = Path(path)
    write_bytes_atomic(path, to_html(gate_document(report), path.parent, "shortcutgates gate report").encode())
    return path
