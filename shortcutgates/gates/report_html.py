"""The gate report as one self-contained HTML page (``--gate-html FILE``), for CI artifacts.

Built from the JSON report (:mod:`.report_json`), so the page and the JSON never disagree: the
verdict of the run, the counts, the cases that did not run with their reasons, and one table row
per gate case (value with its interval, threshold, verdict, sample sizes, message). Rendered with
:func:`to_html`, the HTML writer the experiment report uses too.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any, Mapping, Sequence


def gate_document(report: Mapping, title: str = "shortcutgates gate report") -> list:
    """The page as blocks of :func:`to_html`."""
    from .not_run import not_run
    from .suite import is_red

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
    return doc


def write_gate_html(path, report: Mapping) -> Path:
    """Write the page for ``report`` to ``path`` atomically."""
    from ..io import write_bytes_atomic

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
    from .report_json import build_report, write_report

    built = build_report(records, data=context.data_info, model=model_block(context, scorer),
                         config=context.config.as_report())
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
    header = ["gate", "value [95% CI]", "threshold", "verdict", "n (LRGs)", "message"]
    rows = []
    for r in records:
        sign = "≤" if r["direction"] == "max" else "≥"
        thr = "" if r.get("threshold") is None else f"{sign} {fmt(r['threshold'], 2)}"
        rows.append([r["id"], fmt_metric(r), thr, r["verdict"], f"{r['n']} ({r['n_groups']})", r.get("message", "")])
    return header, rows


def to_html(doc: list, base: Path, title: str) -> str:
    e = html.escape
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>"
           "body{font-family:sans-serif;max-width:70em;margin:2em auto;line-height:1.4}"
           "table{border-collapse:collapse;font-size:0.9em}td,th{border:1px solid #ccc;padding:3px 6px}"
           "img{max-width:100%}figcaption{font-style:italic}</style></head><body>"]
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
            src = Path(block[1]).relative_to(base).as_posix()
            out.append(f"<figure><img src='{e(src)}' alt='{e(block[2])}'>"
                       f"<figcaption>{e(block[2])}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
