"""Model gates on synthetic manifests: the counterfactual gates pass the pure arc reader and fail the
pure core reader in every gated θ_E bin (toy lenses rendered by lensing, with their injection truth);
detection, cross-test and strata gates as before."""

from __future__ import annotations

import numpy as np
import pytest

from shortcutgates.gates import model_gates as mg
from shortcutgates.gates import paired
from shortcutgates.gates import perturb as pt
from shortcutgates.gates import reference_scorers as rs
from shortcutgates.gates.registry import REGISTRY, Gate, GateCase, GateConfig, GateContext, gate_cases, run_case
from shortcutgates.gates.synthetic import (
    ToySpec,
    central_flux_score,
    lrg_brightness_score,
    make_images,
    make_rows,
    ring_morphology_score,
    write_manifest,
)

CFG = GateConfig(n_boot=500)
LENSED = ToySpec(
    n_lrgs=500,
    positives_per_lrg=2,
    paired=True,
    core_fraction=0.03,
    theta_e_arcsec=(0.6, 2.5),
    arc_flux=120.0,
    lensed=True,
    seed=7,
)
COUNTERFACTUAL_GATES = ("arc_masked_auroc", "core_masked_auroc_drop", "arc_swap_auroc_drop", "morphology_auroc")
PRIMARY_GATES = ("arc_masked_auroc", "core_masked_auroc_drop")
ARC_READER_GATES = PRIMARY_GATES + ("arc_swap_auroc_drop",)
"""``morphology_auroc`` is reported (docs/model_gates.md#morphology): its counterfactual does not yet
separate shape readers from flux-per-ring readers."""
CORE_GATES = ("arc_masked_auroc", "core_masked_auroc_drop")
"""The gates a core reader must fail (the arc swap moves the core light with the arc: see docs/model_gates.md)."""


@pytest.fixture(scope="module")
def core_dir(tmp_path_factory):
    """Paired lenses (SIE + shear, counter-images) at θ_E 0.6–2.5″ (four bins, two lenses per LRG) with their
    injection truth, plus a planted point source 1–2 px from the centre in every positive (the core cue).

    At θ_E < 1″ under a 1.3″ PSF the counter-image and arc of (nearly) every pair merge or blur together:
    that bin is reported; the bins from 1.5″ are gated."""
    rows = make_rows(LENSED)
    return write_manifest(rows, tmp_path_factory.mktemp("core"))


@pytest.fixture(scope="module")
def clean_dir(tmp_path_factory):
    """No counter-image; large test and test_paired splits (for the cross-test gap)."""
    rows = make_rows(ToySpec(n_lrgs=1200, size=48, theta_e_arcsec=(2.2, 3.0), arc_flux=100.0, seed=8))
    return write_manifest(rows, tmp_path_factory.mktemp("clean"))


@pytest.fixture(scope="module")
def biased_dir(tmp_path_factory):
    """Unpaired positives sit on brighter LRGs (a selection bias that test_paired does not share)."""
    rows = make_rows(ToySpec(n_lrgs=600, size=32, positive_lrg_boost=2.5, seed=9))
    return write_manifest(rows, tmp_path_factory.mktemp("biased"))


def _cases(ctx, gate):
    return [c for c in gate_cases(ctx) if c.gate == gate]


def _run(ctx, gate, split, **params):
    return run_case(ctx, GateCase(gate, params, split, ("data", "model")))


@pytest.fixture(scope="module")
def readers(core_dir):
    return {
        name: GateContext(core_dir, config=CFG, score_fn=fn)
        for name, fn in (("arc", rs.arc_reader), ("core", rs.core_reader))
    }


def test_cases_are_per_theta_e_bin_on_the_paired_split(readers):
    cases = _cases(readers["arc"], "arc_masked_auroc")
    assert [c.id for c in cases] == [
        "arc_masked_auroc[test-theta_e0-1]",
        "arc_masked_auroc[test-theta_e1-1.5]",
        "arc_masked_auroc[test-theta_e1.5-2]",
        "arc_masked_auroc[test-theta_e2-10]",
    ]
    bins = paired.paired_set(readers["arc"], "test").bins
    assert [c.role for c in cases] == ["primary" if paired.bin_is_gated(b) else "reported" for b in bins]
    assert cases[0].role == "reported" and cases[2].role == cases[3].role == "primary"
    assert bins[0]["undecidable_share"] > paired.MAX_UNDECIDABLE_SHARE >= max(b["undecidable_share"] for b in bins[2:])


def test_decidability_follows_the_lens_geometry_not_a_planted_core():
    """The same lenses with a bright point source added at the centre: the same pairs are decidable, with
    the same overlap (the old MAX_CORE_SHARE counted the planted light itself; it is gone)."""
    spec = LENSED._replace(n_lrgs=60, core_fraction=0.0)
    frame = make_rows(spec)
    images, labels, groups, theta = make_images(spec)
    planted = images.copy()
    c = images.shape[-1] // 2
    planted[labels == 1, :, c - 1 : c + 2, c - 1 : c + 2] += 50.0
    a = paired.paired_arrays(images, labels, groups, theta * 0.262, CFG.theta_e_bins_arcsec, frame)[0]
    b = paired.paired_arrays(planted, labels, groups, theta * 0.262, CFG.theta_e_bins_arcsec, frame)[0]
    assert np.array_equal(a.split.decidable, b.split.decidable) and np.allclose(a.split.overlap, b.split.overlap)
    assert a.split.decidable.any() and not hasattr(mg, "MAX_CORE_SHARE")


def _gated(ctx, gate):
    """The cases of ``gate`` whose θ_E bin is gated (decidable enough: :func:`model_gates.bin_is_gated`)."""
    bins = {b["label"]: b for b in paired.paired_set(ctx, ctx.paired_split).bins}
    cases = [c for c in _cases(ctx, gate) if paired.bin_is_gated(bins[c.params["theta_e"]])]
    assert cases
    return cases


@pytest.mark.parametrize("gate", ARC_READER_GATES)
def test_the_arc_reader_passes_every_gated_bin(readers, gate):
    for case in _gated(readers["arc"], gate):
        result = run_case(readers["arc"], case)
        assert result.verdict == "pass", result.message


@pytest.mark.parametrize("gate", CORE_GATES)
def test_the_core_reader_fails_every_gated_bin(readers, gate):
    for case in _gated(readers["core"], gate):
        result = run_case(readers["core"], case)
        assert result.verdict == "fail", result.message


def test_every_counterfactual_case_reports_the_operational_claim(readers):
    """Beside each value: the shares of counterfactuals and of real lenses flagged at the operating threshold."""
    arc = run_case(readers["arc"], _cases(readers["arc"], "arc_masked_auroc")[-1])
    core = run_case(readers["core"], _cases(readers["core"], "arc_masked_auroc")[-1])
    for result in (arc, core):
        op = result.extra["operational"]
        assert set(op) == {"threshold", "counterfactual_flagged", "lens_flagged"}
        assert op["lens_flagged"][1] <= op["lens_flagged"][0] <= op["lens_flagged"][2]
        assert "flagged: counterfactual" in result.message
    # the core reader flags its core-only counterfactuals about as often as the lenses; the arc reader rarely
    assert core.extra["operational"]["counterfactual_flagged"][0] > 0.5 * core.extra["operational"]["lens_flagged"][0]
    assert arc.extra["operational"]["counterfactual_flagged"][0] < 0.5 * arc.extra["operational"]["lens_flagged"][0]


def test_the_arc_swap_keeps_an_arc_readers_score(readers):
    result = run_case(readers["arc"], _cases(readers["arc"], "arc_swap_auroc_drop")[-1])
    assert result.verdict == "pass" and abs(result.value) < 0.03, result.message


def test_the_arc_swap_is_a_diagnostic_blind_to_a_host_field_cue(core_dir):
    """Why ``arc_swap_auroc_drop`` does not block (docs/model_gates.md#arc-swap): a reader that reads arcs at
    full weight only on stamps with bright surroundings (a cue of the host's field) is host-reliant, yet
    moving its arcs onto other galaxies reshuffles the weights among the lenses and leaves the paired AUROC
    where it was; its cases are reported and never red."""
    from shortcutgates.gates.suite import outcome

    ctx = GateContext(core_dir, config=CFG, score_fn=rs.environment_conditioned_arc_reader)
    cases = _cases(ctx, "arc_swap_auroc_drop")
    assert cases and {c.role for c in cases} == {"reported"} and not REGISTRY["arc_swap_auroc_drop"].blocking
    result = run_case(ctx, cases[-1])
    assert abs(result.value) < 0.05 and outcome(result) != "red", result.message


def test_the_arc_swap_pairs_each_lrg_with_one_of_nearly_the_same_brightness():
    groups = np.array(["a", "a", "b", "c", "d", "e", "e"])
    brightness = np.array([5.0, 5.0, 1.0, 9.0, 2.0, 7.0, 7.0])
    to = pt.brightness_matched_swap(groups, brightness)
    assert (groups[to] != groups).all()
    # order b(1) d(2) a(5) e(7) c(9): b<->d, then the odd last three a -> e -> c -> a
    assert dict(zip(groups, groups[to])) == {"a": "e", "b": "d", "c": "a", "d": "b", "e": "c"}
    assert set(to[[5, 6]]) == {3}  # both pairs of e go to c's one pair
    with pytest.raises(ValueError, match="at least 2 LRGs"):
        pt.brightness_matched_swap(np.array(["a", "a"]), np.array([1.0, 1.0]))


@pytest.mark.parametrize(
    "scorer, reason", [(rs.constant_scorer, "degenerate scorer"), (rs.random_scorer, "does not detect these lenses")]
)
def test_a_model_that_cannot_detect_lenses_is_an_error_on_every_model_gate(core_dir, scorer, reason):
    ctx = GateContext(core_dir, config=CFG, score_fn=scorer)
    for gate in COUNTERFACTUAL_GATES:
        for case in _gated(ctx, gate):
            result = run_case(ctx, case)
            assert result.verdict == "error" and reason in result.message, result.message


def test_counterfactuals_cost_one_inference_pass_for_all_gates_and_bins(core_dir):
    ctx = GateContext(core_dir, config=CFG, score_fn=rs.arc_reader)
    for gate in COUNTERFACTUAL_GATES:
        for case in _cases(ctx, gate):
            run_case(ctx, case)
    assert ctx.n_inference_passes == 2  # the paired split's own scores + one counterfactual batch


def test_unpaired_data_is_an_error_naming_the_missing_pairs(tmp_path):
    rows = make_rows(ToySpec(n_lrgs=80, size=32, test_paired=False, seed=3))
    ctx = GateContext(write_manifest(rows, tmp_path), config=CFG, score_fn=rs.arc_reader)
    for gate in COUNTERFACTUAL_GATES:
        (case,) = _cases(ctx, gate)
        result = run_case(ctx, case)
        assert result.verdict == "error" and "no paired rows" in result.message, result.message


def test_a_bin_of_undecidable_pairs_is_reported_and_says_why(tmp_path):
    """θ_E 0.5–0.9″ under a 1.3″ PSF: counter-image and arc merge or blur together in (nearly) every pair."""
    rows = make_rows(ToySpec(n_lrgs=60, paired=True, theta_e_arcsec=(0.5, 0.9), lensed=True, seed=4))
    ctx = GateContext(write_manifest(rows, tmp_path), config=CFG, score_fn=rs.arc_reader)
    (case,) = _cases(ctx, "arc_masked_auroc")
    assert case.role == "reported"
    assert paired.paired_set(ctx, case.split).bins[0]["undecidable_share"] > paired.MAX_UNDECIDABLE_SHARE
    result = run_case(ctx, case)
    assert result.verdict == "error" and "undecidable" in result.message, result.message


def test_pairs_without_injection_truth_are_undecidable(tmp_path):
    rows = make_rows(ToySpec(n_lrgs=200, paired=True, theta_e_arcsec=(2.0, 2.5), lensed=True, seed=6))
    ctx = GateContext(
        write_manifest(rows.drop(columns=["shear_phi_rad"]), tmp_path), config=CFG, score_fn=rs.arc_reader
    )
    (case,) = _cases(ctx, "arc_masked_auroc")
    result = run_case(ctx, case)
    assert result.verdict == "error" and "no injection truth 'shear_phi_rad'" in result.message, result.message


def test_a_bin_with_too_few_pairs_for_a_covering_interval_is_reported(tmp_path):
    """θ_E bins: 2–10″ holds >= 30 pairs (gated), 1.5–2″ fewer (reported: its interval under-covers). The
    arc swap needs no lensing split, so its pair count alone decides (shown on its row made primary)."""
    rows = make_rows(ToySpec(n_lrgs=400, size=32, paired=True, theta_e_arcsec=(1.8, 2.6), seed=5))
    ctx = GateContext(write_manifest(rows, tmp_path), config=CFG, score_fn=rs.arc_reader)
    bins = {b["label"]: len(b["rows"]) for b in paired.paired_set(ctx, ctx.paired_split).bins}
    as_primary = Gate(**{**vars(REGISTRY["arc_swap_auroc_drop"]), "role": "primary"})
    cases = mg.theta_bin_cases(ctx, as_primary)
    for case in cases:
        n_pairs = bins[case.params["theta_e"]]
        assert case.role == ("primary" if n_pairs >= paired.MIN_GATED_BIN_PAIRS else "reported"), (case.id, n_pairs)
    assert min(bins[c.params["theta_e"]] for c in cases) < paired.MIN_GATED_BIN_PAIRS
    assert max(bins.values()) >= paired.MIN_GATED_BIN_PAIRS


def test_cross_test_gap_is_reported_unless_promoted(clean_dir):
    (default,) = _cases(GateContext(clean_dir, config=CFG, score_fn=rs.arc_reader), "cross_test_gap")
    promoted_cfg = GateConfig(n_boot=500, primary=("cross_test_gap",))
    (promoted,) = _cases(GateContext(clean_dir, config=promoted_cfg, score_fn=rs.arc_reader), "cross_test_gap")
    assert (default.role, promoted.role) == ("reported", "primary")


def test_morphology_is_reported_and_blind_for_a_flux_per_ring_reader(core_dir):
    """The scrambled arc keeps every ring's flux: a flux-per-ring reader cannot tell it from the lens (0.5)."""
    ctx = GateContext(core_dir, config=CFG, score_fn=rs.flux_per_ring_reader)
    assert {c.role for c in _cases(ctx, "morphology_auroc")} == {"reported"}
    values = [run_case(ctx, c) for c in _gated(ctx, "morphology_auroc")]
    assert values and all(r.verdict == "error" or abs(r.value - 0.5) < 0.05 for r in values), [
        r.message for r in values
    ]


def test_registry_rows_use_the_counterfactual_gates():
    for gate in COUNTERFACTUAL_GATES:
        assert REGISTRY[gate].cases is mg.theta_bin_cases
    assert "core_transplant_auroc" not in REGISTRY


# --- detection, cross-test, strata ---------------------------------------------------------------
def test_detection_auroc(clean_dir):
    arc = _run(GateContext(clean_dir, config=CFG, score_fn=ring_morphology_score), "detection_auroc", "test")
    hans = _run(GateContext(clean_dir, config=CFG, score_fn=central_flux_score), "detection_auroc", "test")
    assert arc.verdict == "pass" and arc.ci[0] >= 0.8
    assert hans.verdict == "fail" and hans.value < 0.7


def test_cross_test_gap_fails_a_selection_bias_reader_and_passes_the_arc_reader(clean_dir, biased_dir):
    bad = run_case(
        GateContext(biased_dir, config=CFG, score_fn=lrg_brightness_score),
        GateCase("cross_test_gap", {}, None, ("data", "model")),
    )
    good = run_case(
        GateContext(clean_dir, config=CFG, score_fn=ring_morphology_score),
        GateCase("cross_test_gap", {}, None, ("data", "model")),
    )
    assert bad.verdict == "fail" and abs(bad.value) > 0.2, bad.message
    assert good.verdict == "pass", good.message


def test_stratified_auroc_is_reported_by_bin_and_gateable(clean_dir):
    strict = GateConfig(n_boot=500, thresholds={"stratified_auroc": 0.75})
    arc = GateContext(clean_dir, config=strict, score_fn=ring_morphology_score)
    hans = GateContext(clean_dir, config=strict, score_fn=central_flux_score)
    for by in ("theta_e", "psf", "depth"):
        good, bad = _run(arc, "stratified_auroc", "test", by=by), _run(hans, "stratified_auroc", "test", by=by)
        assert good.verdict == "pass" and bad.verdict == "fail", (good.message, bad.message)
        assert good.value == min(b["auc"] for b in good.extra["bins"] if b["auc"] is not None)


def test_unperturbed_scores_are_computed_once(clean_dir):
    ctx = GateContext(clean_dir, config=CFG, score_fn=ring_morphology_score)
    _run(ctx, "detection_auroc", "val")
    _run(ctx, "detection_auroc", "val")
    _run(ctx, "stratified_auroc", "val", by="theta_e")
    assert ctx.n_inference_passes == 1


def test_detection_is_an_error_with_one_class(tmp_path):
    rows = make_rows(ToySpec(n_lrgs=60, size=32, seed=13))
    rows = rows[~((rows.split == "val") & (rows.label == 0))]
    ctx = GateContext(write_manifest(rows, tmp_path), config=CFG, score_fn=ring_morphology_score)
    res = _run(ctx, "detection_auroc", "val")
    assert res.verdict == "error" and "both classes" in res.message


def test_paired_statistic_on_arrays_takes_any_score_fn():
    """The calibration path: arrays in, one counterfactual call of the scorer, an interval out."""
    from shortcutgates.gates.synthetic import make_images

    spec = ToySpec(n_lrgs=60, paired=True, core_fraction=0.5, lensed=True, theta_e_arcsec=(2.0, 2.5), seed=12)
    images, labels, groups, theta = make_images(spec)
    ps, stamps, ctrls = paired.paired_arrays(images, labels, groups, theta * 0.262, (0.0, 10.0), make_rows(spec))
    calls = []

    def score_fn(x):
        calls.append(len(x))
        return rs.core_reader(x)

    scores = paired.counterfactual_scores(score_fn, stamps, ctrls, ps.groups, 0, ps.split, ps.fwhm_arcsec)
    scores.update(stamp=rs.core_reader(stamps), ctrl=rs.core_reader(ctrls))
    est, detection = paired.paired_statistic(scores, "core_only", "auroc", ps.bins[0]["decided"], ps.groups, CFG)
    assert calls == [4 * len(stamps)] and detection > 0.9
    assert est.value == pytest.approx(detection) and est.lo <= est.value <= est.hi


def test_calibration_loop_decides_the_reference_readers():
    """The ``reader`` cell of the calibration (``calibrate/readers.py``) on toy lenses: the arc reader passes,
    the core reader fails the core gates, and every reader is decided in the gated bin."""
    from shortcutgates.calibrate import readers as rd
    from shortcutgates.data.codec import decode_stamp
    from shortcutgates.gates import perturb as pt

    spec = ToySpec(n_lrgs=150, paired=True, core_fraction=0.03, lensed=True, theta_e_arcsec=(2.0, 2.5), seed=5)
    frame = make_rows(spec)
    images = np.stack([decode_stamp(b) for b in frame["image_npz"]])
    pairs = pt.find_pairs(frame["label"].to_numpy(), frame["lrg_id"].to_numpy())
    _, first, inv = np.unique(frame["lrg_id"].to_numpy()[pairs.ctrl], return_index=True, return_inverse=True)
    truth = frame.iloc[pairs.stamp][list(rd.TRUTH_KEEP)].reset_index(drop=True)
    sample = rd.paired_sample(images[pairs.stamp], images[pairs.ctrl][first], inv.ravel(), truth)
    components = rd.ComponentScores()
    runs, bins = rd.reader_runs(sample, CFG, {"mix0": components.mixture(0.0), "mix1": components.mixture(1.0)})
    verdicts = {(name, run.case.gate, run.case.params.get("theta_e")): run.result.verdict for name, run in runs}
    assert {v for (name, g, _), v in verdicts.items() if name == "mix0" and g in rd.primary_gates()} == {"pass"}
    assert {verdicts[("mix1", g, "theta_e2-10")] for g in CORE_GATES} == {"fail"}
    assert [b["label"] for b in bins if len(b["rows"])] == ["theta_e2-10"]
    assert pt.TRUTH_COLUMNS[0] in rd.TRUTH_KEEP


def test_registry_counterfactual_facts_match_what_the_gates_decide_on():
    """The registry's ``counterfactual`` rows (calibration, docs) agree with the gates' own statistics."""
    from shortcutgates.gates import model_gates as mg_
    from shortcutgates.gates.registry import COUNTERFACTUAL_GATES

    assert COUNTERFACTUAL_GATES == {g: (k, s) for g, (k, s, _) in mg_.GATE_STATISTICS.items()}


def test_operating_threshold_is_the_controls_fpr_or_the_configured_score():
    ctrl = np.arange(1000, dtype=float)
    assert paired.operating_threshold(ctrl, None) == 990.0  # 1 % of the controls lie above it
    assert paired.operating_threshold(ctrl, 0.25) == 0.25
    assert GateConfig.from_mapping({"operating_threshold": 0.9}).operating_threshold == 0.9
    with pytest.raises(ValueError, match="operating_threshold"):
        GateConfig.from_mapping({"operating_threshold": "high"})


def test_a_flag_ratio_resting_on_one_flagged_lens_is_an_error_not_an_established_violation():
    """One lens of 13 above the operating threshold, and its counterfactual too: the ratio would read
    1.0 [1.0, 1.0] from one event; 35 % of LRG resamples hold no flagged lens, so no interval is formed."""
    from shortcutgates.gates.probes import ProbeError

    def scores(n, k):
        stamp, cf = np.zeros(n), np.zeros(n)
        stamp[:k] = cf[:k] = 10.0
        return {"core_only": cf, "stamp": stamp, "ctrl": np.full(n, -1.0), "threshold": 5.0}

    assert paired.empty_resample_share(np.arange(13) < 1, np.arange(13)) == pytest.approx((12 / 13) ** 13)
    with pytest.raises(ProbeError, match="resamples would hold none"):
        paired.paired_statistic(scores(13, 1), "core_only", "flag_ratio", np.arange(13), np.arange(13).astype(str), CFG)
    est, _ = paired.paired_statistic(
        scores(30, 6), "core_only", "flag_ratio", np.arange(30), np.arange(30).astype(str), CFG
    )
    assert est.value == 1.0 and est.lo <= est.hi
