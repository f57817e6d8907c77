"""Decisions, intervals, records and configuration of the gate suite."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from shortcutgates.gates.decision import (
    bootstrap_auroc, decide, error_result, groups_to_decide, make_result, weighted_auroc_metric,
)
from shortcutgates.gates.records import REPORT_KEYS, GateCase, GateConfig
from shortcutgates.gates.registry import REGISTRY


@pytest.mark.parametrize(
    "value, ci, threshold, direction, verdict",
    [
        pytest.param(0.55, (0.50, 0.60), 0.65, "max", "pass", id="max_interval_below"),
        pytest.param(0.70, (0.60, 0.80), 0.65, "max", "fail", id="max_estimate_above"),
        pytest.param(0.60, (0.52, 0.70), 0.65, "max", "inconclusive", id="max_interval_crosses"),
        pytest.param(0.90, (0.85, 0.95), 0.80, "min", "pass", id="min_interval_above"),
        pytest.param(0.70, (0.60, 0.85), 0.80, "min", "fail", id="min_estimate_below"),
        pytest.param(0.85, (0.75, 0.92), 0.80, "min", "inconclusive", id="min_interval_crosses"),
        pytest.param(0.0, None, 0.0, "max", "pass", id="exact_count_zero"),
        pytest.param(3.0, None, 0.0, "max", "fail", id="exact_count_positive"),
        pytest.param(0.99, (0.9, 1.0), None, "max", "pass", id="reported_only"),
        pytest.param(0.60, (math.nan, math.nan), 0.65, "max", "inconclusive", id="no_interval"),
    ],
)
def test_decide(value, ci, threshold, direction, verdict):
    assert decide(value, ci, threshold, direction) == verdict


def test_groups_to_decide_shrinks_interval_to_threshold():
    # half-width 0.10 at 100 LRGs, distance 0.05: (0.10 / 0.05)^2 = 4 times the LRGs
    assert groups_to_decide(0.60, (0.50, 0.70), 0.65, "max", 100) == 400
    assert groups_to_decide(0.85, (0.75, 0.95), 0.80, "min", 50) == 200
    assert groups_to_decide(0.65, (0.55, 0.75), 0.65, "max", 50) is None


def test_inconclusive_message_states_the_sample_size():
    case = GateCase("core_lr_auc", {"box": 10, "input": "raw_robust"}, "train")
    res = make_result(GateConfig(), case, REGISTRY["core_lr_auc"], value=0.60, ci=(0.50, 0.70), n=200,
                      n_groups=100, what="AUC")
    assert res.verdict == "inconclusive"
    assert "about 400 LRGs (now 100) would decide" in res.message


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(4, 60), st.booleans())
def test_weighted_auroc_equals_sklearn(seed, n, ties):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]
    scores = rng.integers(0, 5, n).astype(float) if ties else rng.normal(size=n)
    weights = rng.integers(0, 4, n).astype(float)
    weights[:2] = 1.0
    metric = weighted_auroc_metric(labels, scores)
    assert metric(labels, scores, None) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert metric(labels, scores, weights) == pytest.approx(
        roc_auc_score(labels, scores, sample_weight=weights), abs=1e-12)


def test_weighted_auroc_refuses_one_class():
    with pytest.raises(ValueError, match="both classes"):
        weighted_auroc_metric(np.ones(5), np.arange(5.0))


def test_bootstrap_is_seeded_and_resamples_lrgs():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), 5)  # 5 rows per LRG
    labels = np.tile([0, 1], 100)
    scores = labels + rng.normal(0, 1.5, 200)
    a = bootstrap_auroc(labels, scores, groups, GateConfig(n_boot=500, seed=3))
    b = bootstrap_auroc(labels, scores, groups, GateConfig(n_boot=500, seed=3))
    assert a == b
    assert a.n_groups == 40 and a.n == 200
    assert a.lo < a.value < a.hi


def test_result_json_has_exactly_the_design_keys():
    case = GateCase("detection_auroc", {}, "val")
    res = make_result(GateConfig(), case, REGISTRY["detection_auroc"], value=0.9, ci=(0.85, 0.95), n=10,
                      n_groups=5, what="AUROC", extra={"curve": [1, 2]})
    record = res.to_json()
    assert tuple(record) == REPORT_KEYS
    assert record["ci"] == [0.85, 0.95] and record["verdict"] == "pass" and record["direction"] == "min"
    json.dumps(record, allow_nan=False)
    err = error_result(GateConfig(), case, REGISTRY["detection_auroc"], "one class").to_json()
    assert err["value"] is None and err["ci"] is None and err["verdict"] == "error"


@pytest.mark.parametrize(
    "case, expected",
    [
        (GateCase("core_lr_auc", {"box": 10, "input": "raw_robust"}, "train"), "core_lr_auc[train-box10-raw_robust]"),
        (GateCase("data_integrity"), "data_integrity"),
        (GateCase("lrg_leakage", {"pair": "train-test_paired"}), "lrg_leakage[train-test_paired]"),
        (GateCase("stratified_auroc", {"by": "psf"}, "test"), "stratified_auroc[test-psf]"),
    ],
)
def test_case_ids_are_readable(case, expected):
    assert case.id == expected


def test_config_from_pyproject(tmp_path):
    path = tmp_path / "pyproject.toml"
    path.write_text(
        "[tool.shortcutgates]\nmax_samples = 1000\nn_boot = 600\nboxes = [8, 10]\n"
        "[tool.shortcutgates.thresholds]\ncore_lr_auc = 0.7\n\"core_lr_auc[val-box10-raw_robust]\" = 0.6\n"
        "[tool.shortcutgates.waivers]\ncross_test_gap = \"test_paired comes from another region\"\n"
    )
    cfg = GateConfig.from_pyproject(path)
    assert cfg.max_samples == 1000 and cfg.n_boot == 600 and cfg.boxes == (8, 10)
    train = GateCase("core_lr_auc", {"box": 10, "input": "raw_robust"}, "train")
    val = GateCase("core_lr_auc", {"box": 10, "input": "raw_robust"}, "val")
    assert cfg.threshold_for(train, 0.65) == 0.7
    assert cfg.threshold_for(val, 0.65) == 0.6
    assert cfg.waiver_for(GateCase("cross_test_gap", {}, None, ("data", "model"))) == "test_paired comes from another region"
    assert cfg.waiver_for(train) is None
    assert GateConfig.from_pyproject(None) == GateConfig()


@pytest.mark.parametrize(
    "text, match",
    [
        pytest.param("[tool.shortcutgates]\nmax_sample = 3\n", "unknown key.*max_sample", id="unknown_key"),
        pytest.param("[tool.shortcutgates.waivers]\ncore_lr_auc = \"\"\n", "needs a reason", id="waiver_without_reason"),
        pytest.param("[tool.shortcutgates.thresholds]\ncore_lr = 0.7\n", "unknown gate 'core_lr'", id="unknown_gate"),
        pytest.param("[tool.shortcutgates]\nn_boot = 100\n", "n_boot' must be >= 500", id="too_few_resamples"),
        pytest.param("[tool.shortcutgates]\nlevel = \"high\"\n", "'level' must be a number", id="wrong_type"),
    ],
)
def test_config_errors_name_the_key(tmp_path, text, match):
    path = tmp_path / "pyproject.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        GateConfig.from_pyproject(path)
