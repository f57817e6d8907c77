"""The JSON gate report (docs/design.md#report-json): schema checks, strict JSON, atomic write."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shortcutgates.gates.report_json import SCHEMA, build_report, jsonable, read_report, write_report


def gate(**over) -> dict:
    record = {
        "id": "core_lr_auc[test-box10-raw_robust]",
        "gate": "core_lr_auc",
        "params": {"box": 10, "input": "raw_robust"},
        "split": "test",
        "value": 0.9,
        "ci": [0.85, 0.95],
        "threshold": 0.65,
        "direction": "max",
        "verdict": "fail",
        "n": 120,
        "n_groups": 60,
        "message": "m",
        "role": "primary",
    }
    record.update(over)
    return record


def test_report_has_the_schema_and_summary():
    report = build_report(
        [gate(), gate(id="data_integrity", verdict="skipped", ci=None, value=None)], data={"path": "d"}, model=None
    )
    assert report["schema"] == SCHEMA and report["model"] is None
    assert report["summary"] == {
        "expected": 2,
        "run": 1,
        "pass": 0,
        "fail": 1,
        "inconclusive": 0,
        "error": 0,
        "skipped": 1,
        "reported": 0,
        "waived": 0,
        "primary": 2,
        "primary_failing": 1,
        "reported_established": 0,
        "green": False,
    }


@pytest.mark.parametrize(
    "bad, message",
    [
        pytest.param({"verdict": "ok"}, "'verdict' must be one of", id="verdict"),
        pytest.param({"direction": "up"}, "'direction' must be 'max' or 'min'", id="direction"),
        pytest.param({"ci": [0.1]}, "'ci' must be [lo, hi] or null", id="ci"),
        pytest.param({"params": [10]}, "'params' must be an object", id="params"),
    ],
)
def test_schema_violations_name_the_entry_and_field(bad, message):
    with pytest.raises(
        ValueError, match=r"gates\[0\] \(core_lr_auc\[test-box10-raw_robust\]\): " + message.replace("[", r"\[")
    ):
        build_report([gate(**bad)], data={}, model=None)


def test_missing_keys_and_duplicate_ids_are_refused():
    with pytest.raises(ValueError, match=r"gates\[0\] lacks key\(s\) n_groups"):
        build_report([{k: v for k, v in gate().items() if k != "n_groups"}], data={}, model=None)
    with pytest.raises(ValueError, match="duplicate id"):
        build_report([gate(), gate()], data={}, model=None)


def test_numpy_and_non_finite_values_become_strict_json():
    assert jsonable({"a": np.float32(0.5), "b": np.int64(3), "c": float("nan"), "d": (np.inf, 1)}) == {
        "a": 0.5,
        "b": 3,
        "c": None,
        "d": [None, 1],
    }
    with pytest.raises(TypeError, match="cannot write object"):
        jsonable(object())


def test_write_is_atomic_and_reads_back(tmp_path):
    path = tmp_path / "sub" / "report.json"
    report = build_report([gate(value=np.float64(0.9))], data={"n_rows": np.int64(120)}, model={"path": "m.pt"})
    write_report(path, report)
    assert read_report(path) == json.loads(path.read_text()) == report
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]  # no temporary file left
    with pytest.raises(ValueError):
        write_report(path, dict(report, schema="other/1"))
    assert read_report(path) == report  # a refused write leaves the previous file intact


def test_report_carries_level_thresholds_and_waivers():
    from shortcutgates.gates.records import GateConfig

    cfg = GateConfig(level=0.9, thresholds={"core_lr_auc": 0.6}, waivers={"detection_auroc[val]": "why"})
    report = build_report([gate()], data={}, model=None, config=cfg.as_report())
    assert report["config"]["level"] == 0.9 and report["config"]["thresholds"] == {"core_lr_auc": 0.6}
    assert report["config"]["waivers"] == {"detection_auroc[val]": "why"} and report["config"]["input"] == "raw_robust"
