"""The terminal summary of a gate run: one row per case and the expected-vs-run count.

Printed by the pytest plugin at the end of a session (``pytest_terminal_summary``); built from the
report records alone, so it says what ``--gate-report`` says.
"""

from __future__ import annotations

from shortcutgates.gates.not_run import NOT_RUN_LISTED, not_run
from shortcutgates.gates.report_json import summarise
from shortcutgates.gates.suite import is_red, remedy_suffix, role, threshold_text


def _fmt(x, spec=".3f") -> str:
    return "-" if x is None else format(x, spec)


def _row(record: dict) -> tuple[str, ...]:
    ci = record["ci"]
    ci_text = "-" if ci is None or None in ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"
    threshold = threshold_text(record)
    verdict = record["verdict"].upper() + (" (waived)" if record.get("waiver") else "")
    if role(record) == "reported":
        verdict += " (reported, not gated)"
    elif is_red(record):
        verdict += remedy_suffix(record)
    return record["id"], _fmt(record["value"]), ci_text, threshold, verdict


def summary_lines(records: list[dict], level: float = 0.95) -> list[str]:
    """The terminal table (gate, value, CI at ``level``, threshold, verdict) and the expected-vs-run count."""
    rows = [("gate", "value", f"{100 * level:g}% CI", "threshold", "verdict")] + [_row(r) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    c = summarise(records)
    lines.append(
        f"gates: {c['expected']} expected, {c['run']} run ({c['pass']} pass, {c['fail']} fail, "
        f"{c['inconclusive']} inconclusive, {c['error']} error), {c['skipped']} skipped, "
        f"{c['waived']} waived"
    )
    lines.append(
        f"primary: {c['primary']} cases decide the run, {c['primary_failing']} failing -> "
        f"{'GREEN' if c['green'] else 'RED'}; reported: {c['expected'] - c['primary']} cases shown, "
        f"{c['reported_established']} with an established violation (red in any role; "
        f"{c['reported']} measured without a threshold)"
    )
    if c["skipped"]:
        missing = not_run(records)
        lines.append(f"NOT RUN: {c['skipped']} of {c['expected']} gates did not run: {'; '.join(sorted(missing))}")
        for reason, ids in sorted(missing.items()):
            more = f" and {len(ids) - NOT_RUN_LISTED} more" if len(ids) > NOT_RUN_LISTED else ""
            lines.append(f"  {reason}: {', '.join(ids[:NOT_RUN_LISTED])}{more}")
    return lines
