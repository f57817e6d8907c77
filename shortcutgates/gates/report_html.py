"""The gate report as one self-contained HTML page (``--gate-html FILE``), for CI artifacts.

Built from the JSON report (:mod:`.report_json`), so the page and the JSON never disagree: the
verdict of the run, the counts, the cases that did not run with their reasons, and one table row
per gate case (value with its interval, threshold, verdict, sample sizes, message). Rendered with
the experiment report's HTML writer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping


def gate_document(report: Mapping, title: str = "shortcutgates gate report") -> list:
    """The page as blocks of :func:`shortcutgates.experiment.report.to_html`."""
    from ..experiment.report import gate_table
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
    from ..experiment.report import to_html
    from ..io import write_bytes_atomic

    path = Path(path)
    write_bytes_atomic(path, to_html(gate_document(report), path.parent, "shortcutgates gate report").encode())
    return path
