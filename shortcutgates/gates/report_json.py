"""The gate report as JSON (``docs/design.md#report-json``): build, validate, write atomically, read.

The schema is fixed because CI scripts parse it::

    {"schema": "shortcutgates.report/2",
     "model": {...} or null,
     "data": {...},
     "gates": [{"id", "gate", "params", "split", "value", "ci": [lo, hi] or null, "threshold",
                "direction": "max" | "min",
                "verdict": "pass" | "fail" | "inconclusive" | "error" | "skipped" | "reported",
                "n", "n_groups", "message",
                "role": "primary" | "reported"}, ...],
     "summary": {"expected", "run", "pass", "fail", "inconclusive", "error", "skipped", "reported",
                 "waived", "primary", "primary_failing", "green"}}

The report also carries ``config`` (``level``, thresholds, waivers, threshold reasons, ``input``,
``primary``: what the verdicts were decided with). A gate entry also carries ``established`` (the whole interval on the bad side of the claim: red in
every role) and the summary ``reported_established`` (reported cases that turned the run red).
``direction`` is the claim a pass makes: ``"max"`` = the value is at most the threshold, ``"min"`` =
at least. ``role`` ``"primary"`` cases decide the run (``summary.green``); ``"reported"`` cases are
shown and never turn it red. Version 2 added ``role``, the verdict ``"reported"`` (a row without a
threshold: measured, nothing decided) and the summary's ``reported``/``primary``/
``primary_failing``/``green``. :func:`read_report` reads a version-1 file as version 2 (every gate
with a threshold primary, one without reported) and refuses anything else in one line.

Notes
-----
A gate entry may carry more keys than the fixed ones (``waiver``: the reason a gate is waived or
null; ``extra``: gate-specific detail such as per-bin values). Readers must ignore keys they do not
know. Non-finite floats (NaN, inf) are written as ``null`` so the file is strict JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Mapping, get_args


from shortcutgates.data.io import jsonable, write_bytes_atomic
from shortcutgates.gates.records import REPORT_KEYS, ReportDirection, Role, Verdict
from shortcutgates.gates.suite import is_red, role

SCHEMA = "shortcutgates.report/2"
"""Value of the report's ``schema`` key."""
SCHEMA_V1 = "shortcutgates.report/1"
"""The previous version, read by :func:`read_report` (upgraded in memory)."""

VERDICTS: tuple[str, ...] = get_args(Verdict)
DIRECTIONS: tuple[str, ...] = get_args(ReportDirection)
ROLES: tuple[str, ...] = get_args(Role)
GATE_KEYS: tuple[str, ...] = REPORT_KEYS
"""Keys every gate entry carries."""


def summarise(gates: Iterable[Mapping]) -> dict:
    """Counts of gate entries by verdict, ``expected`` (all), ``run`` (not skipped), ``waived``; the
    primary cases, how many of them fail the run (:func:`.suite.is_red`) and ``green`` (none does)."""
    gates = list(gates)
    counts = {v: sum(g["verdict"] == v for g in gates) for v in VERDICTS}
    primary = [g for g in gates if role(g) == "primary"]
    failing = sum(map(is_red, primary))
    established = sum(is_red(g) for g in gates if g.get("role", "primary") != "primary")
    return {
        "expected": len(gates),
        "run": len(gates) - counts["skipped"],
        **counts,
        "waived": sum(bool(g.get("waiver")) for g in gates),
        "primary": len(primary),
        "primary_failing": failing,
        "reported_established": established,
        "green": failing + established == 0,
    }


def build_report(
    gates: Iterable[Mapping], *, data: Mapping, model: Mapping | None, config: Mapping | None = None
) -> dict:
    """Assemble and validate a report.

    Parameters
    ----------
    gates : iterable of mapping
        One entry per expected gate case, each with at least :data:`GATE_KEYS` (for example
        ``GateResult.to_json()``); cases that did not run carry verdict ``"skipped"``.
    data : mapping
        Description of the dataset (path, rows, splits, sha256 ...).
    model : mapping or None
        Description of the checkpoint, or None when no ``--model`` was given.
    config : mapping, optional
        The suite's settings (``GateConfig.as_report()``: ``level``, thresholds, waivers and the
        reasons for thresholds outside their sane range, ``input``, ``primary``), written as ``config``.

    Returns
    -------
    dict
        JSON-ready report; raises ``ValueError`` naming the offending entry if it breaks the schema.
    """
    gates = [jsonable(g) for g in gates]
    report = {
        "schema": SCHEMA,
        "model": None if model is None else jsonable(model),
        "data": jsonable(data),
        "gates": gates,
        "summary": summarise(gates),
    }
    if config is not None:
        report["config"] = jsonable(config)
    validate_report(report)
    return report


def _check_gate(i: int, gate: Mapping) -> None:
    where = f"gate report: gates[{i}]"
    missing = [k for k in GATE_KEYS if k not in gate]
    if missing:
        raise ValueError(f"{where} lacks key(s) {', '.join(missing)}")
    if gate["verdict"] not in VERDICTS:
        raise ValueError(
            f"{where} ({gate['id']}): 'verdict' must be one of {', '.join(VERDICTS)} (got {gate['verdict']!r})"
        )
    if gate["direction"] not in DIRECTIONS:
        raise ValueError(f"{where} ({gate['id']}): 'direction' must be 'max' or 'min' (got {gate['direction']!r})")
    if gate["role"] not in ROLES:
        raise ValueError(f"{where} ({gate['id']}): 'role' must be 'primary' or 'reported' (got {gate['role']!r})")
    ci = gate["ci"]
    if ci is not None and (not isinstance(ci, (list, tuple)) or len(ci) != 2):
        raise ValueError(f"{where} ({gate['id']}): 'ci' must be [lo, hi] or null (got {ci!r})")
    if not isinstance(gate["params"], Mapping):
        raise ValueError(f"{where} ({gate['id']}): 'params' must be an object (got {gate['params']!r})")


def validate_report(report: Mapping) -> None:
    """Raise ``ValueError`` naming the first field of ``report`` that breaks the schema."""
    if report.get("schema") != SCHEMA:
        raise ValueError(f"gate report: 'schema' must be {SCHEMA!r} (got {report.get('schema')!r})")
    for key in ("model", "data", "gates"):
        if key not in report:
            raise ValueError(f"gate report: lacks key {key!r}")
    if report["model"] is not None and not isinstance(report["model"], Mapping):
        raise ValueError(f"gate report: 'model' must be an object or null (got {type(report['model']).__name__})")
    if not isinstance(report["data"], Mapping):
        raise ValueError(f"gate report: 'data' must be an object (got {type(report['data']).__name__})")
    ids = set()
    for i, gate in enumerate(report["gates"]):
        _check_gate(i, gate)
        if gate["id"] in ids:
            raise ValueError(f"gate report: gates[{i}]: duplicate id {gate['id']!r}")
        ids.add(gate["id"])


def write_report(path, report: Mapping) -> Path:
    """Validate ``report`` and write it to ``path`` atomically (temporary file + rename).

    Returns the path written. The JSON is strict (``allow_nan=False``) and indented for diffs.
    """
    validate_report(report)
    text = json.dumps(report, indent=2, allow_nan=False) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))
    return Path(path)


def upgrade_v1(report: Mapping) -> dict:
    """A version-1 report as version 2: a gate with a threshold is primary, one without is reported
    (its ``pass`` was never tested, so its verdict becomes ``reported``); the summary is recounted."""
    gates = []
    for gate in report.get("gates", []):
        gate = dict(gate)
        reported = gate.get("threshold") is None
        gate.setdefault("role", "reported" if reported else "primary")
        if reported and gate.get("verdict") == "pass":
            gate["verdict"] = "reported"
        gates.append(gate)
    return {**report, "schema": SCHEMA, "gates": gates, "summary": summarise(gates)}


def read_report(path) -> dict:
    """Read and validate a report written by :func:`write_report` (version 2, or 1 upgraded).

    Raises ``ValueError`` in one line naming the file when it is not a gate report of a known version.
    """
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path}: not a JSON gate report ({exc})") from None
    if not isinstance(report, dict):
        raise ValueError(f"{path}: not a gate report (a JSON {type(report).__name__}, not an object)")
    if report.get("schema") == SCHEMA_V1:
        report = upgrade_v1(report)
    try:
        validate_report(report)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return report


VERDICT_STYLE = {
    "pass": ("tab:blue", "passes"),
    "fail": ("tab:red", "fails"),
    "inconclusive": ("tab:orange", "inconclusive (interval crosses the threshold)"),
    "error": ("tab:purple", "error (cannot measure)"),
    "waived": ("0.5", "waived"),
}
"""Point colour and legend label of each verdict in the figures (by-model figure, HTML page)."""


def verdict_key(record: dict | None) -> str | None:
    """The key of :data:`VERDICT_STYLE` a record is drawn with (None: not drawn)."""
    if record is None or record["verdict"] not in VERDICT_STYLE:
        return None
    return "waived" if record.get("waiver") and record["verdict"] != "pass" else record["verdict"]
