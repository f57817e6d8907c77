"""Decisions, intervals, records and configuration of the gate suite."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from shortcutgates.gates.contract import Measurement
from shortcutgates.gates.decision import (
    bootstrap_auroc,
    bootstrap_metric,
    check_scorer,
    decide,
    error_result,
    groups_to_decide,
    judge,
)
from shortcutgates.gates.records import REPORT_KEYS, Gate, GateCase, GateConfig
from shortcutgates.gates.registry import REGISTRY, load_config
from shortcutgates.stats import weighted_auroc_metric


@pytest.mark.parametrize(
    "value, ci, threshold, direction, equivalence, verdict",
    [
        pytest.param(0.55, (0.50, 0.60), 0.65, "at_most", False, "pass", id="at_most_interval_below"),
        pytest.param(0.70, (0.60, 0.80), 0.65, "at_most", False, "fail", id="at_most_estimate_above"),
        pytest.param(0.60, (0.52, 0.70), 0.65, "at_most", False, "inconclusive", id="at_most_interval_crosses"),
        pytest.param(0.90, (0.85, 0.95), 0.80, "at_least", False, "pass", id="at_least_interval_above"),
        pytest.param(0.70, (0.60, 0.85), 0.80, "at_least", False, "fail", id="at_least_estimate_below"),
        pytest.param(0.85, (0.75, 0.92), 0.80, "at_least", False, "inconclusive", id="at_least_interval_crosses"),
        pytest.param(0.0, None, 0.0, "at_most", False, "pass", id="exact_count_zero"),
        pytest.param(3.0, None, 0.0, "at_most", False, "fail", id="exact_count_positive"),
        pytest.param(0.99, (0.9, 1.0), None, "at_most", False, "reported", id="reported_only"),
        pytest.param(0.60, (math.nan, math.nan), 0.65, "at_most", False, "inconclusive", id="no_interval"),
        pytest.param(0.01, (-0.03, 0.04), 0.05, "at_most", True, "pass", id="equivalent_signed_interval_inside"),
        pytest.param(-0.02, (-0.07, 0.03), 0.05, "at_most", True, "inconclusive", id="equivalence_not_shown"),
        pytest.param(-0.08, (-0.12, -0.04), 0.05, "at_most", True, "fail", id="equivalence_estimate_outside"),
        pytest.param(0.0, (0.0, 0.0), 0.1, "at_most", True, "pass", id="equivalence_exact_zero"),
    ],
)
def test_decide(value, ci, threshold, direction, equivalence, verdict):
    assert decide(value, ci, threshold, direction, equivalence) == verdict


def test_groups_to_decide_shrinks_interval_to_threshold():
    # half-width 0.10 at 100 LRGs, distance 0.05: (0.10 / 0.05)^2 = 4 times the LRGs
    assert groups_to_decide(0.60, (0.50, 0.70), 0.65, "at_most", 100) == 400
    assert groups_to_decide(0.85, (0.75, 0.95), 0.80, "at_least", 50) == 200
    assert groups_to_decide(0.65, (0.55, 0.75), 0.65, "at_most", 50) is None
    assert groups_to_decide(0.02, (-0.02, 0.06), 0.05, "at_most", 100, equivalence=True) == 178


def _judge(gate: str, m: Measurement, config=GateConfig(), **case):
    return judge(config, GateCase(gate, **case), REGISTRY[gate], m)


def test_inconclusive_message_states_the_sample_size():
    res = _judge(
        "core_lr_auc",
        Measurement(0.60, (0.50, 0.70), 200, 100, "AUC"),
        params={"box": 10, "input": "raw_robust"},
        split="train",
    )
    assert res.verdict == "inconclusive"
    assert "about 400 LRGs (now 100) would decide" in res.message


def test_unreachable_sample_size_is_said_plainly():
    res = _judge(
        "core_lr_auc",
        Measurement(0.645, (0.55, 0.74), 200, 100, "AUC"),
        params={"box": 10, "input": "raw_robust"},
        split="train",
    )
    assert res.verdict == "inconclusive"
    assert "no reachable sample decides" in res.message and "about" not in res.message


@pytest.mark.parametrize("gate", ["core_lr_auc", "metadata_c2st_auc", "detection_auroc"])
def test_far_below_chance_is_an_error(gate):
    res = _judge(gate, Measurement(0.32, (0.25, 0.39), 200, 100, "AUC"), split="test")
    assert res.verdict == "error" and "below chance" in res.message
    near = _judge(gate, Measurement(0.47, (0.40, 0.54), 200, 100, "AUC"), split="test")
    assert near.verdict != "error"  # within the noise of chance: decided as usual


def test_non_finite_estimate_is_an_error():
    res = _judge("cross_test_gap", Measurement(math.nan, (math.nan, math.nan), 200, 100, "gap"))
    assert res.verdict == "error" and "not finite" in res.message


@pytest.mark.parametrize(
    "scores, match",
    [
        pytest.param(np.full(100, 0.5), "constant", id="constant"),
        pytest.param(np.r_[np.full(97, 0.2), [0.3, 0.4, 0.5]], "97% of 100 scores", id="near_constant"),
    ],
)
def test_degenerate_scorers_are_refused(scores, match):
    with pytest.raises(ValueError, match=match):
        check_scorer(scores, "arc-masked images")
    check_scorer(np.linspace(0, 1, 100), "arc-masked images")  # a scorer that varies is accepted


def test_registry_rows_are_keyword_claims_with_their_own_cases():
    for gate in REGISTRY.values():
        assert gate.direction in ("at_most", "at_least") and gate.role in ("primary", "reported")
        assert callable(gate.cases) and callable(gate.measure)
    assert REGISTRY["cross_test_gap"].equivalence and REGISTRY["property_balance"].equivalence
    with pytest.raises(TypeError):
        Gate("x", "m", 0.5, "at_most", ("data",), "primary", None, None)  # rows are written with keywords
    with pytest.raises(ValueError, match="at_most or at_least"):
        Gate(
            name="x",
            metric="m",
            threshold=0.5,
            direction="max",
            needs=("data",),
            role="primary",
            cases=None,
            measure=None,
        )


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
        roc_auc_score(labels, scores, sample_weight=weights), abs=1e-12
    )


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


def test_bootstrap_interval_survives_resamples_that_lose_a_class():
    # 3 LRGs hold the only positives of part B: many resamples lose them; their NaN is left out
    labels = np.r_[np.tile([0, 1], 50), np.zeros(20, int), np.ones(3, int)]
    part_b = np.arange(len(labels)) >= 100
    scores = np.random.default_rng(1).normal(size=len(labels)) + labels
    groups = np.r_[np.arange(100) // 2, 100 + np.arange(23)]

    def gap(lab, _s, w=None):
        w = np.ones(len(lab)) if w is None else w
        return weighted_auroc_metric(lab[~part_b], scores[~part_b])(None, None, w[~part_b]) - weighted_auroc_metric(
            lab[part_b], scores[part_b]
        )(None, None, w[part_b])

    est = bootstrap_metric(labels, scores, groups, gap, GateConfig(n_boot=500))
    assert np.isfinite(est.lo) and np.isfinite(est.hi) and est.lo < est.value < est.hi


def test_result_json_has_the_report_keys_and_established():
    case = GateCase("detection_auroc", {}, "val", ("data", "model"))
    res = _judge(
        "detection_auroc",
        Measurement(0.9, (0.85, 0.95), 10, 5, "AUROC", extra={"curve": [1, 2]}),
        split="val",
        needs=("data", "model"),
    )
    record = res.to_json()
    assert tuple(record) == REPORT_KEYS + ("established",) and record["established"] is False
    assert record["ci"] == [0.85, 0.95] and record["verdict"] == "pass" and record["direction"] == "min"
    assert record["role"] == "primary"
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
        '[tool.shortcutgates.thresholds]\ncore_lr_auc = 0.7\n"core_lr_auc[val-box10-raw_robust]" = 0.6\n'
        '[tool.shortcutgates.waivers]\n"cross_test_gap[all]" = "test_paired comes from another region"\n'
    )
    cfg = load_config(path)
    assert cfg.max_samples == 1000 and cfg.n_boot == 600 and cfg.boxes == (8, 10)
    train = GateCase("core_lr_auc", {"box": 10, "input": "raw_robust"}, "train")
    val = GateCase("core_lr_auc", {"box": 10, "input": "raw_robust"}, "val")
    assert cfg.threshold_for(train, 0.65) == 0.7
    assert cfg.threshold_for(val, 0.65) == 0.6
    assert (
        cfg.waiver_for(GateCase("cross_test_gap", {}, None, ("data", "model")))
        == "test_paired comes from another region"
    )
    assert cfg.waiver_for(train) is None
    assert load_config(None) == GateConfig()


def test_config_promotes_reported_cases_to_primary(tmp_path):
    path = tmp_path / "pyproject.toml"
    path.write_text('[tool.shortcutgates]\nprimary = ["cross_test_gap", "metadata_c2st_auc[test]"]\n')
    cfg = load_config(path)
    assert cfg.role_for(GateCase("cross_test_gap", {}, None, ("data", "model")), "reported") == "primary"
    assert cfg.role_for(GateCase("metadata_c2st_auc", {}, "test"), "reported") == "primary"
    assert cfg.role_for(GateCase("metadata_c2st_auc", {}, "val"), "reported") == "reported"
    assert GateConfig().role_for(GateCase("cross_test_gap", {}, None), "reported") == "reported"


@pytest.mark.parametrize(
    "text, match",
    [
        pytest.param("[tool.shortcutgates]\nmax_sample = 3\n", "unknown key.*max_sample", id="unknown_key"),
        pytest.param(
            '[tool.shortcutgates.waivers]\n"core_lr_auc[all]" = ""\n', "needs a reason", id="waiver_without_reason"
        ),
        pytest.param(
            '[tool.shortcutgates.waivers]\ncore_lr_auc = "why"\n', "names a whole gate", id="waiver_of_a_gate"
        ),
        pytest.param(
            "[tool.shortcutgates.thresholds]\nlrg_leakage = 100\n",
            r"lrg_leakage = 100 lies outside the sane range \[0, 0\]",
            id="threshold_outside_sane_range",
        ),
        pytest.param("[tool.shortcutgates.thresholds]\ncore_lr = 0.7\n", "unknown gate 'core_lr'", id="unknown_gate"),
        pytest.param("[tool.shortcutgates]\nn_boot = 100\n", "n_boot' must be >= 500", id="too_few_resamples"),
        pytest.param(
            '[tool.shortcutgates]\nprimary = ["cross_test"]\n', "unknown gate 'cross_test'", id="unknown_primary_gate"
        ),
        pytest.param(
            '[tool.shortcutgates]\nprimary = "cross_test_gap"\n', "'primary' must be a list", id="primary_not_a_list"
        ),
        pytest.param('[tool.shortcutgates]\nlevel = "high"\n', "'level' must be a number", id="wrong_type"),
    ],
)
def test_config_errors_name_the_key(tmp_path, text, match):
    path = tmp_path / "pyproject.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_config(path)


def test_report_reader_upgrades_version_1_and_refuses_others(tmp_path):
    from shortcutgates.gates.report_json import SCHEMA, read_report

    gate = {
        "id": "core_lr_auc[train-box10-raw_robust]",
        "gate": "core_lr_auc",
        "params": {},
        "split": "train",
        "value": 0.5,
        "ci": [0.45, 0.55],
        "threshold": 0.65,
        "direction": "max",
        "verdict": "pass",
        "n": 10,
        "n_groups": 5,
        "message": "m",
    }
    reported = dict(gate, id="radial_profile_lr_auc[train-raw_robust]", gate="radial_profile_lr_auc", threshold=None)
    old = {"schema": "shortcutgates.report/1", "model": None, "data": {}, "gates": [gate, reported], "summary": {}}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    report = read_report(path)
    assert report["schema"] == SCHEMA
    assert [g["role"] for g in report["gates"]] == ["primary", "reported"]
    assert report["gates"][1]["verdict"] == "reported"  # its old "pass" was never tested
    assert report["summary"]["green"] and report["summary"]["primary"] == 1
    path.write_text(json.dumps(dict(old, schema="shortcutgates.report/9")))
    with pytest.raises(ValueError, match=r"old.json: gate report: 'schema' must be"):
        read_report(path)


@pytest.mark.parametrize("verdict", ["fail", "inconclusive", "error", "reported"])
def test_a_reported_case_without_an_established_violation_never_turns_the_run_red(verdict):
    from shortcutgates.gates.report_json import summarise
    from shortcutgates.gates.suite import check_record, is_red

    record = {"id": "property_balance[test-ebv]", "verdict": verdict, "message": "m", "role": "reported"}
    check_record(record)  # passes: shown, not gated
    assert not is_red(record)
    primary = dict(record, id="core_lr_auc[test-box10-raw_robust]", role="primary")
    with pytest.raises(pytest.fail.Exception, match=verdict.upper()):
        check_record(primary)
    assert is_red(primary) and not is_red(dict(primary, waiver="accepted"))
    assert summarise([record, primary])["green"] is False and summarise([record])["green"] is True


@pytest.mark.parametrize(
    "value, ci, threshold, direction, equivalence, expected",
    [
        pytest.param(0.80, (0.70, 0.90), 0.65, "at_most", False, True, id="at_most_whole_interval_above"),
        pytest.param(0.70, (0.60, 0.80), 0.65, "at_most", False, False, id="at_most_interval_reaches"),
        pytest.param(0.60, (0.50, 0.70), 0.80, "at_least", False, True, id="at_least_whole_interval_below"),
        pytest.param(-0.45, (-0.55, -0.30), 0.2, "at_most", True, True, id="equivalence_below_minus_margin"),
        pytest.param(0.25, (0.15, 0.35), 0.2, "at_most", True, False, id="equivalence_reaches_margin"),
        pytest.param(3.0, None, 0.0, "at_most", False, True, id="exact_count"),
        pytest.param(0.9, (0.8, 1.0), None, "at_most", False, False, id="no_threshold"),
    ],
)
def test_established_violation(value, ci, threshold, direction, equivalence, expected):
    from shortcutgates.gates.decision import established_violation

    assert established_violation(value, ci, threshold, direction, equivalence) is expected


def test_an_established_violation_turns_the_run_red_in_every_role():
    from shortcutgates.gates.decision import judge
    from shortcutgates.gates.registry import REGISTRY
    from shortcutgates.gates.report_json import summarise
    from shortcutgates.gates.suite import check_record, is_red

    gate = REGISTRY["core_lr_auc"]
    case = GateCase("core_lr_auc", {"box": 10, "input": "raw_robust"}, "test", role="reported")
    bad = judge(GateConfig(), case, gate, Measurement(0.92, (0.88, 0.95), 300, 300, "core-LR AUC"))
    assert bad.verdict == "fail" and bad.established and bad.role == "reported"
    record = bad.to_json()
    assert record["established"] is True and "established" in record["message"]
    with pytest.raises(pytest.fail.Exception, match="violation established"):
        check_record(record)
    assert is_red(record) and not is_red(dict(record, waiver="accepted"))
    summary = summarise([record])
    assert summary["reported_established"] == 1 and summary["green"] is False
    # estimate on the bad side, interval reaching the threshold: says how many LRGs would establish it
    near = judge(GateConfig(), case, gate, Measurement(0.70, (0.62, 0.78), 300, 300, "core-LR AUC"))
    assert near.verdict == "fail" and not near.established and not is_red(near.to_json())
    assert "too few LRGs to tell" in near.message and "would establish it" in near.message
    # a measurement marked undecidable is never established
    undecided = judge(
        GateConfig(),
        case,
        gate,
        Measurement(0.92, (0.88, 0.95), 300, 300, "core-LR AUC", "", {"undecidable": "arcs inside the box"}),
    )
    assert not undecided.established and "not decided: arcs inside the box" in undecided.message


def test_a_threshold_outside_its_sane_range_needs_a_reason(tmp_path):
    path = tmp_path / "pyproject.toml"
    path.write_text(
        '[tool.shortcutgates.thresholds]\n"core_lr_auc[train-box10-raw_robust]" = 0.9\n'
        '[tool.shortcutgates.threshold_reasons]\n"core_lr_auc[train-box10-raw_robust]" = "a known bright-core '
        'population; tracked in issue 7"\n'
    )
    cfg = load_config(path)
    assert cfg.threshold_for(GateCase("core_lr_auc", {"box": 10, "input": "raw_robust"}, "train"), 0.65) == 0.9
    block = cfg.as_report()
    assert block["level"] == 0.95 and block["thresholds"] == {"core_lr_auc[train-box10-raw_robust]": 0.9}
    assert "bright-core" in block["threshold_reasons"]["core_lr_auc[train-box10-raw_robust]"]
    # a waiver names cases: one case, or every case of a gate with [all]
    cfg = GateConfig(waivers={"detection_auroc[val]": "r", "morphology_auroc[all]": "s"})
    assert cfg.waiver_for(GateCase("detection_auroc", {}, "val")) == "r"
    assert cfg.waiver_for(GateCase("detection_auroc", {}, "test")) is None
    assert cfg.waiver_for(GateCase("morphology_auroc", {"theta_e": "2-10arcsec"}, "test_paired")) == "s"


def test_a_diagnostic_gate_is_shown_never_red_unless_made_primary():
    """``morphology_auroc`` is a diagnostic (``blocking=False``): no calibrated reader or CNN reaches its
    threshold (docs/model_gates.md#morphology), so a whole interval below it is shown, not red; a
    blocking gate's violation of the same shape is red in any role, and a promoted case decides."""
    from shortcutgates.gates.suite import outcome

    bad = Measurement(0.54, (0.52, 0.56), 200, 100, "morphology AUROC")
    case = GateCase("morphology_auroc", {"theta_e": "2-10arcsec"}, "test_paired", ("data", "model"), "reported")
    shown = judge(GateConfig(), case, REGISTRY["morphology_auroc"], bad)
    assert shown.verdict == "fail" and not shown.established and outcome(shown) == "reported"
    assert "diagnostic" in shown.message
    blocking = Gate(**{**vars(REGISTRY["morphology_auroc"]), "blocking": True})
    assert outcome(judge(GateConfig(), case, blocking, bad)) == "red"
    promoted = GateCase(case.gate, case.params, case.split, case.needs, "primary")
    assert outcome(judge(GateConfig(), promoted, REGISTRY["morphology_auroc"], bad)) == "red"
