"""Model gates with synthetic scorers: a "Clever-Hans" core reader fails them, an arc reader passes."""

from __future__ import annotations

import numpy as np
import pytest

from shortcutgates.gates.model_gates import arc_masked_scores, core_transplant_scores
from shortcutgates.gates.registry import GateCase, GateConfig, GateContext, run_case
from shortcutgates.gates.synthetic import (
    ToySpec, central_flux_score, lrg_brightness_score, make_images, make_rows, ring_morphology_score, write_manifest,
)

CFG = GateConfig(n_boot=500)


@pytest.fixture(scope="module")
def core_dir(tmp_path_factory):
    """Unpaired + a paired test_paired split; arcs at 8.4-11.5 px and a counter-image in the core."""
    rows = make_rows(ToySpec(n_lrgs=600, core_fraction=0.5, theta_e_arcsec=(2.2, 3.0), seed=7))
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


@pytest.fixture(scope="module")
def core_hans(core_dir):
    return GateContext(core_dir, config=CFG, score_fn=central_flux_score)


@pytest.fixture(scope="module")
def core_arc(core_dir):
    return GateContext(core_dir, config=CFG, score_fn=ring_morphology_score)


def _run(ctx, gate, split, **params):
    return run_case(ctx, GateCase(gate, params, split, ("data", "model")))


@pytest.mark.parametrize("gate, split", [("arc_masked_auroc", "train"), ("core_transplant_auroc", "train"),
                                         ("morphology_auroc", "test_paired")])
def test_perturbation_gates_fail_the_core_reader_and_pass_the_arc_reader(core_hans, core_arc, gate, split):
    bad = _run(core_hans, gate, split)
    good = _run(core_arc, gate, split)
    assert bad.verdict == "fail", bad.message
    assert good.verdict == "pass", good.message


def test_detection_auroc(clean_dir):
    arc = _run(GateContext(clean_dir, config=CFG, score_fn=ring_morphology_score), "detection_auroc", "test")
    hans = _run(GateContext(clean_dir, config=CFG, score_fn=central_flux_score), "detection_auroc", "test")
    assert arc.verdict == "pass" and arc.ci[0] >= 0.8
    assert hans.verdict == "fail" and hans.value < 0.7


def test_cross_test_gap_fails_a_selection_bias_reader_and_passes_the_arc_reader(clean_dir, biased_dir):
    bad = run_case(GateContext(biased_dir, config=CFG, score_fn=lrg_brightness_score),
                   GateCase("cross_test_gap", {}, None, ("data", "model")))
    good = run_case(GateContext(clean_dir, config=CFG, score_fn=ring_morphology_score),
                    GateCase("cross_test_gap", {}, None, ("data", "model")))
    assert bad.verdict == "fail" and bad.value > 0.2, bad.message
    assert good.verdict == "pass", good.message


def test_stratified_auroc_is_reported_by_bin_and_gateable(clean_dir):
    strict = GateConfig(n_boot=500, thresholds={"stratified_auroc": 0.75})
    arc = GateContext(clean_dir, config=strict, score_fn=ring_morphology_score)
    hans = GateContext(clean_dir, config=strict, score_fn=central_flux_score)
    for by in ("theta_e", "psf", "depth"):
        good, bad = _run(arc, "stratified_auroc", "test", by=by), _run(hans, "stratified_auroc", "test", by=by)
        assert good.verdict == "pass" and bad.verdict == "fail", (good.message, bad.message)
        assert good.value == min(b["auc"] for b in good.extra["bins"] if b["auc"] is not None)
    reported = _run(GateContext(clean_dir, config=CFG, score_fn=central_flux_score), "stratified_auroc", "test",
                    by="psf")
    assert reported.verdict == "pass" and reported.threshold is None


def test_unperturbed_scores_are_computed_once(core_arc):
    before = core_arc.n_inference_passes
    _run(core_arc, "detection_auroc", "val")
    _run(core_arc, "detection_auroc", "val")
    _run(core_arc, "stratified_auroc", "val", by="theta_e")
    assert core_arc.n_inference_passes == before + 1


def test_morphology_needs_paired_rows(core_arc):
    res = _run(core_arc, "morphology_auroc", "train")  # unpaired split: no positive has its control
    assert res.verdict == "error" and "no paired rows" in res.message and res.value is None


def test_detection_is_an_error_with_one_class(tmp_path_factory):
    rows = make_rows(ToySpec(n_lrgs=60, size=32, seed=13))
    rows = rows[~((rows.split == "val") & (rows.label == 0))]
    ctx = GateContext(write_manifest(rows, tmp_path_factory.mktemp("one_class")), config=CFG,
                      score_fn=ring_morphology_score)
    res = _run(ctx, "detection_auroc", "val")
    assert res.verdict == "error" and "both classes" in res.message


def test_arc_mask_needs_theta_e(tmp_path_factory):
    rows = make_rows(ToySpec(n_lrgs=60, size=32, theta_e_arcsec=(1.0, 1.6), seed=10)).drop(columns="theta_e_arcsec")
    ctx = GateContext(write_manifest(rows, tmp_path_factory.mktemp("no_theta")), config=CFG,
                      score_fn=ring_morphology_score)
    res = _run(ctx, "arc_masked_auroc", "train")
    assert res.verdict == "error" and "theta_e" in res.message


def test_arc_mask_refuses_arcs_inside_the_core():
    images, labels, groups, theta = make_images(ToySpec(n_lrgs=40, size=32, theta_e_arcsec=(0.1, 0.12), seed=11))
    with pytest.raises(ValueError, match="inside the 3-px core"):
        arc_masked_scores(central_flux_score, images, labels, theta, seed=0)


def test_perturbation_functions_take_any_score_fn():
    images, labels, groups, theta = make_images(ToySpec(n_lrgs=80, core_fraction=1.0, seed=12))
    calls = []

    def score_fn(x):
        calls.append(len(x))
        return central_flux_score(x)

    lab, scores, grp = core_transplant_scores(score_fn, images, labels, groups, box=10, seed=0)
    assert calls == [len(scores)] and len(scores) == len(lab) == len(grp) == 2 * (labels == 0).sum()
    assert set(np.unique(lab)) == {0, 1}
