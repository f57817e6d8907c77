"""The gate report as one self-contained HTML page (``--gate-html FILE``), for CI artifacts.

Built from the JSON report (:mod:`.report_json`), so the page and the JSON never disagree: the
verdict of the run, the counts, the cases that did not run with their reasons, and one table row
per gate case (value with its interval, threshold, verdict, sample sizes, message), a figure of
the cases against their thresholds and — with a model — the report's ``low_fpr`` block: TPR at FPR
10⁻² / 10⁻³ with LRG-bootstrap intervals and a log-FPR ROC per held-out split. Figures are embedded
as data URIs, so the page is one file (a CI artifact). Rendered with
:func:`to_html`, the HTML writer the experiment report uses too.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np


def gate_document(report: Mapping, title: str = "shortcutgates gate report") -> list:
    """The page as blocks of :func:`to_html`."""
    from shortcutgates.gates.not_run import not_run
    from shortcutgates.gates.suite import is_red

    gates = list(report["gates"])
    red = [g["id"] for g in gates if is_red(g)]
    s = report.get("summary") or {}
    model, data = report.get("model") or {}, report.get("data") or {}
    verdict = f"RED: {len(red)} gate(s) fail: {', '.join(red[:20])}" if red else "GREEN: no gate that ran fails"
    doc: list[tuple] = [
        ("h1", title),
        ("p", verdict),
        (
            "p",
            f"model: {model.get('path') or model.get('kind') or 'none'}; data: {data.get('path')} "
            f"({data.get('n_rows')} rows); {s.get('expected')} gates expected, {s.get('run')} run, "
            f"{s.get('skipped')} not run, {s.get('waived')} waived.",
        ),
    ]
    missing = not_run(gates)
    if missing:
        doc += [("h2", "Gates that did not run")]
        doc += [("p", f"{reason}: {', '.join(ids)}") for reason, ids in sorted(missing.items())]
    doc += [("h2", "Gates"), ("table", *gate_table(gates))]
    figure = gates_figure(gates)
    if figure:
        doc += [
            (
                "img",
                figure,
                "Each gate case's value with its 95 % LRG-bootstrap interval against its threshold "
                "(black tick; a ±margin claim: two ticks); colour: verdict",
            )
        ]
    low = report.get("low_fpr") or {}
    if low:
        doc += [("h2", "Detection at low false-positive rates"), ("table", *low_fpr_table(low))]
        roc = roc_figure(low)
        if roc:
            doc += [("img", roc, "ROC of the model on each held-out split, false-positive rate on a log axis")]
    return doc


def low_fpr_table(low: Mapping) -> tuple:
    """Header and rows: per split, AUROC context and TPR at FPR 10⁻² / 10⁻³ with intervals and notes."""
    _fmt = fmt_metric

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

    from shortcutgates.gates.report_json import VERDICT_STYLE
    from shortcutgates.gates.report_json import verdict_key as _verdict_key

    rows = [
        g
        for g in gates
        if g.get("value") is not None
        and g.get("threshold") is not None
        and abs(g["value"]) <= 1.5
        and abs(g["threshold"]) <= 1.5
    ]  # AUCs and differences; counts are in the table
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
        for tick in (-t, t) if _is_margin(g) else (t,):
            ax.plot([tick], [y], "|", color="k", ms=9)
    ax.set_yticks(range(len(rows)), [g["id"] for g in rows], fontsize=6)
    ax.invert_yaxis()
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(fontsize=7, loc="best", frameon=False)
    fig.tight_layout()
    return _png_data_uri(fig)


def _is_margin(g: Mapping) -> bool:
    from shortcutgates.gates.registry import REGISTRY

    return bool(getattr(REGISTRY.get(str(g.get("gate"))), "equivalence", False))


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
    from shortcutgates.data.io import write_bytes_atomic

    path = Path(path)
    write_bytes_atomic(path, to_html(gate_document(report), path.parent, "shortcutgates gate report").encode())
    return path


# --- the outputs of a run ---------------------------------------------------------------------
def model_block(context: Any, scorer: Any) -> dict | None:
    """The report's ``model`` block: the context's, with what the scorer says about itself."""
    info = context.model_info if context.has_model else None
    if scorer is not None:
        info = {**(info or {}), **scorer.info}
    return info


def write_outputs(records: list[dict], context: Any, scorer: Any, report: Any = None, html: Any = None) -> None:
    """Write the JSON report and/or the HTML page of ``records``; ``OSError`` names the flag and path."""
    from shortcutgates.gates.report_json import build_report, write_report

    built = build_report(
        records, data=context.data_info, model=model_block(context, scorer), config=context.config.as_report()
    )
    if context.has_model:
        try:
            built["low_fpr"] = context.low_fpr()
        except ValueError:  # a model that cannot score (ProbeError): its gates already say why
            pass
    for flag, path, write in (("--gate-report", report, write_report), ("--gate-html", html, write_gate_html)):
        try:
            if path is not None:
                write(path, built)
        except OSError as exc:
            raise OSError(f"cannot write {flag} {path} ({exc.strerror or exc})") from None


# --- rendering (shared with shortcutgates.experiment.report) ------------------------------------
def fmt(value, digits: int = 3) -> str:
    """A number for the report; ``n/a`` for None/NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def fmt_metric(m: dict | None) -> str:
    """``value [lo, hi]`` of a metric record, or ``n/a``."""
    if not m or m.get("value") is None:
        return "n/a" if not m or not m.get("message") else f"n/a ({m['message']})"
    ci = m.get("ci")
    if ci and ci[0] is not None and ci[1] is not None:
        return f"{fmt(m['value'])} [{fmt(ci[0])}, {fmt(ci[1])}]"
    return fmt(m["value"])


def gate_table(records: Sequence[dict]) -> tuple:
    from shortcutgates.gates.registry import REGISTRY

    header = ["gate", "value [95% CI]", "threshold", "verdict", "n (LRGs)", "message"]
    rows = []
    for r in records:
        sign = "≤" if r["direction"] == "max" else "≥"
        margin = getattr(REGISTRY.get(str(r.get("gate"))), "equivalence", False)
        thr = (
            ""
            if r.get("threshold") is None
            else (f"within ±{fmt(r['threshold'], 2)}" if margin else f"{sign} {fmt(r['threshold'], 2)}")
        )
        rows.append([r["id"], fmt_metric(r), thr, r["verdict"], f"{r['n']} ({r['n_groups']})", r.get("message", "")])
    return header, rows


def to_html(doc: list, base: Path, title: str) -> str:
    e = html.escape
    out = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>"
        "body{font-family:sans-serif;max-width:70em;margin:2em auto;line-height:1.4}"
        "table{border-collapse:collapse;font-size:0.9em}td,th{border:1px solid #ccc;padding:3px 6px}"
        "img{max-width:100%}figcaption{font-style:italic}</style></head><body>"
    ]
    for block in doc:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{e(block[1])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{e(block[1])}</p>")
        elif kind == "code":
            out.append(f"<pre>{e(block[1])}</pre>")
        elif kind == "table":
            head = "".join(f"<th>{e(str(h))}</th>" for h in block[1])
            body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in block[2])
            out.append(f"<table><tr>{head}</tr>{body}</table>" if block[2] else "<p>(none)</p>")
        elif kind == "img":
            src = block[1] if str(block[1]).startswith("data:image/") else Path(block[1]).relative_to(base).as_posix()
            out.append(
                f"<figure><img src='{e(src)}' alt='{e(block[2])}'><figcaption>{e(block[2])}</figcaption></figure>"
            )
    out.append("</body></html>")
    return "\n".join(out) + "\n"
