"""One red/green rule: the plugin, the JSON and HTML reports, the many-model sweep and calibration agree.

One table of records (every verdict × role × waiver) goes through each consumer; each must call a
record red exactly when :func:`shortcutgates.gates.suite.is_red` does (calibration and the strict
sweep with ``strict=True``: a case that did not run fails such a run).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd
import pytest

from shortcutgates.calibrate import rates
from shortcutgates.gates import sweep
from shortcutgates.gates.report_html import gate_document
from shortcutgates.gates.report_json import build_report
from shortcutgates.gates.suite import check_record, is_red, outcome

VERDICTS = ("pass", "fail", "inconclusive", "error", "skipped", "reported")


def _record(verdict: str, role: str, waiver: str | None) -> dict:
    return {
        "id": f"core_lr_auc[{verdict}-{role}-{waiver}]",
        "gate": "core_lr_auc",
        "params": {"input": "model"},
        "split": "train",
        "value": 0.7,
        "ci": [0.6, 0.8],
        "threshold": 0.65,
        "direction": "max",
        "verdict": verdict,
        "n": 100,
        "n_groups": 50,
        "message": f"the {verdict} message",
        "role": role,
        "waiver": waiver,
    }


TABLE = [_record(v, r, w) for v, r, w in itertools.product(VERDICTS, ("primary", "reported"), (None, "accepted"))]


def plugin_red(record: dict) -> bool:
    """The plugin's outcome: a failed test is red unless the waiver's xfail accepts it."""
    try:
        check_record(record)
    except pytest.fail.Exception:
        return not record["waiver"]
    except pytest.skip.Exception:
        return False
    return False


def test_the_rule_itself():
    by = {(r["verdict"], r["role"], r["waiver"]): outcome(r) for r in TABLE}
    assert by["pass", "primary", None] == "green"
    assert by["fail", "primary", None] == by["inconclusive", "primary", None] == by["error", "primary", None] == "red"
    assert by["reported", "primary", None] == "red"  # a primary case without a decision has not shown anything
    assert by["fail", "primary", "accepted"] == "waived"
    assert by["fail", "reported", None] == "reported" and by["skipped", "primary", None] == "skipped"
    assert outcome({"verdict": "fail", "message": "m", "id": "x"}) == "red"  # no role: primary
    assert sum(map(is_red, TABLE)) == 4 and sum(is_red(r, strict=True) for r in TABLE) == 6


@pytest.mark.parametrize("record", TABLE, ids=[r["id"] for r in TABLE])
def test_plugin_reports_and_sweep_agree(record):
    red = is_red(record)
    assert plugin_red(record) == red
    report = build_report([record], data={"path": "d"}, model=None)
    assert report["summary"]["green"] is (not red)
    assert report["summary"]["primary_failing"] == int(red)
    assert gate_document(report)[1][1].startswith("RED" if red else "GREEN")
    for strict in (False, True):
        row = sweep.summary_row("m", Path("m.pt"), [record], strict=strict)
        assert (row["verdict"] == "RED") == is_red(record, strict=strict)


def test_calibration_agrees_on_the_table():
    cell = {
        "cell": "suite:core=0:n4000:arc",
        "kind": "suite",
        "problem": "core",
        "strength": 0.0,
        "n_lrgs": 4000,
        "scorer": "arc",
        "core": 0.0,
    }
    rows = pd.DataFrame(
        [
            {**cell, "seed": i, "case": r["id"], "gate": r["gate"], "role": r["role"], "verdict": r["verdict"]}
            for i, r in enumerate(TABLE)
            if not r["waiver"]
        ]
    )
    green = rates.suite_outcomes(rows).set_index("seed")["green"]
    for i, r in enumerate(TABLE):
        if not r["waiver"]:  # calibration runs no waivers; a seed whose only case did not run is not green
            assert bool(green[i]) is (not is_red(r, strict=True)), r["id"]


def test_an_established_violation_is_red_in_any_role_and_read_from_calibration_rows():
    import numpy as np

    from shortcutgates.gates.suite import established, outcome

    reported = {"id": "property_balance[test-total_mag_r]", "verdict": "fail", "role": "reported", "message": "m"}
    assert outcome(reported) == "reported"
    assert outcome(dict(reported, established=True)) == "red"
    assert outcome(dict(reported, established=True, waiver="accepted")) == "waived"
    assert [established({"established": v}) for v in (np.True_, np.nan, None, "True", "False")] == [
        True,
        False,
        False,
        True,
        False,
    ]
