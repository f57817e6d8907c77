"""Data gates: each fails on a planted shortcut, passes on a clean case, and errors when it cannot measure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shortcutgates.gates.registry import GateCase, GateConfig, GateContext, gate_cases, run_case
from shortcutgates.gates.synthetic import ToySpec, make_rows, write_manifest
from shortcutgates.data.codec import encode_stamp

CFG = GateConfig(n_boot=500)


def _context(tmp_path_factory, name, rows, **kw) -> GateContext:
    return GateContext(write_manifest(rows, tmp_path_factory.mktemp(name)), config=kw.pop("config", CFG), **kw)


@pytest.fixture(scope="module")
def clean_rows():
    """Unpaired, arcs clear of the 10×10 core box (θ_E 8.4-11.5 px), no counter-image."""
    return make_rows(ToySpec(n_lrgs=300, paired=False, core_fraction=0.0, theta_e_arcsec=(2.2, 3.0), seed=3))


@pytest.fixture(scope="module")
def clean(tmp_path_factory, clean_rows):
    return _context(tmp_path_factory, "clean", clean_rows)


@pytest.fixture(scope="module")
def shortcut(tmp_path_factory):
    """Paired (two injections per LRG, so duplicated controls), a counter-image in the core, negatives
    observed with a worse PSF."""
    rows = make_rows(ToySpec(n_lrgs=150, paired=True, positives_per_lrg=2, core_fraction=0.5, psf_shift=0.3, seed=4))
    return _context(tmp_path_factory, "shortcut", rows)


@pytest.fixture(scope="module")
def balanced(tmp_path_factory):
    """Paired, one injection per LRG: properties of positives and negatives are identical."""
    rows = make_rows(ToySpec(n_lrgs=400, size=16, paired=True, theta_e_arcsec=(0.8, 1.2), seed=5))
    return _context(tmp_path_factory, "balanced", rows)


@pytest.fixture(scope="module")
def no_arc(tmp_path_factory):
    """'Positives' whose injection failed: no arc at all."""
    rows = make_rows(ToySpec(n_lrgs=600, size=32, theta_e_arcsec=(1.0, 1.6), arc_flux=0.0, test_paired=False, seed=6))
    return _context(tmp_path_factory, "no_arc", rows)


def _run(ctx, gate, split="train", **params):
    return run_case(ctx, GateCase(gate, params, split))


# --- data_integrity ----------------------------------------------------------------------------
def test_data_integrity_passes_on_clean_data(clean):
    res = run_case(clean, GateCase("data_integrity"))
    assert res.verdict == "pass" and res.value == 0 and res.n == len(clean.frame)


def test_data_integrity_fails_and_names_bad_rows(tmp_path_factory, clean_rows):
    rows = clean_rows.copy()
    nan_image = np.ones((3, 64, 64), np.float32)
    nan_image[1, 5, 5] = np.nan
    rows.loc[3, "image_npz"] = b"not an npz"
    rows.loc[7, "image_npz"] = encode_stamp(nan_image)
    rows.loc[11, "image_npz"] = encode_stamp(np.zeros((3, 64, 64), np.float32))
    ctx = _context(tmp_path_factory, "broken", rows)
    res = run_case(ctx, GateCase("data_integrity"))
    assert res.verdict == "fail" and res.value == 3
    assert "row 3" in res.message and "not an npz" in res.message
    assert any("row 11" in p and "zero outer-annulus MAD" in p for p in res.extra["problems"])
    # the probes leave the bad rows out and say so
    split = rows.loc[3, "split"]
    assert ctx.sample(split).n_bad >= 1 and "bad rows left out" in ctx.sample(split).note


# --- lrg_leakage -------------------------------------------------------------------------------
def test_lrg_leakage_passes_on_unpaired_disjoint_splits(clean):
    assert _run(clean, "lrg_leakage", pair="pos-neg").verdict == "pass"
    res = run_case(clean, GateCase("lrg_leakage", {"pair": "train-val"}))
    assert res.verdict == "pass" and res.value == 0


def test_lrg_leakage_fails_on_paired_data(shortcut):
    res = _run(shortcut, "lrg_leakage", pair="pos-neg")
    assert (
        res.verdict == "fail" and res.value == shortcut.frame.loc[shortcut.frame.split == "train", "_group"].nunique()
    )


def test_lrg_leakage_between_splits_uses_sky_matching(tmp_path_factory, clean_rows):
    rows = clean_rows.copy()
    train = rows.index[rows.split == "train"][0]
    val = rows.index[rows.split == "val"][0]
    rows.loc[val, ["ra", "dec"]] = rows.loc[train, ["ra", "dec"]].to_numpy() + 1e-6  # same LRG, jittered
    ctx = _context(tmp_path_factory, "leak", rows)
    res = run_case(ctx, GateCase("lrg_leakage", {"pair": "train-val"}))
    assert res.verdict == "fail" and res.value == 1
    assert "given lrg_id disagrees with sky matching" in res.message  # the row kept its old lrg_id


# --- property balance and metadata C2ST --------------------------------------------------------
def test_property_balance_fails_on_shifted_psf(shortcut):
    res = _run(shortcut, "property_balance", prop="psfsize_r")
    # negatives observed with a worse PSF: the signed SMD (positives − negatives) is far below −margin
    assert res.verdict == "fail" and res.value < -1.0 and res.role == "reported"


def test_property_balance_passes_when_properties_match(balanced):
    res = _run(balanced, "property_balance", prop="psfsize_r")
    assert res.verdict == "pass" and res.value == 0.0 and res.ci == (0.0, 0.0)


@pytest.mark.parametrize("gate", ["metadata_c2st_auc", "metadata_c2st_gbm_auc"])
def test_metadata_c2st_fails_on_shifted_psf_and_passes_when_matched(shortcut, balanced, gate):
    bad = _run(shortcut, gate)
    assert bad.verdict == "fail" and bad.value > 0.9 and bad.established
    assert "no redshift, magnitude, size column" in bad.message  # what the catalogue lacks is said
    good = _run(balanced, gate)
    assert good.verdict == "pass" and good.ci[1] <= 0.60


@pytest.mark.parametrize("gate", ["metadata_c2st_auc", "core_lr_auc"])
def test_shortcut_probes_decide_on_the_training_split_and_report_the_held_out_splits(clean, clean_rows, gate, tmp_path):
    roles = {
        c.split: c.role
        for c in gate_cases(clean)
        if c.gate == gate and c.needs == ("data",) and "theta_e" not in c.params
    }
    assert roles.pop("train") == "primary"
    assert roles and set(roles.values()) == {"reported"}, roles
    # a manifest without a train split (an evaluation set gated on its own): its splits decide
    held_out = clean_rows[clean_rows["split"] != "train"]
    assert len(held_out) and set(held_out["split"]) != {"train"}
    ctx = GateContext(write_manifest(held_out, tmp_path), config=CFG)
    assert {
        c.role for c in gate_cases(ctx) if c.gate == gate and c.needs == ("data",) and "theta_e" not in c.params
    } == {"primary"}


# --- core_lr_auc -------------------------------------------------------------------------------
def test_core_lr_fails_on_the_core_shortcut_and_names_theta_e_bins(shortcut):
    res = _run(shortcut, "core_lr_auc", box=10, input="raw_robust")
    assert res.verdict == "fail" and res.value > 0.8
    assert "by θ_E bin: [1.5, 2)″ 1.000*" in res.message and "reach the box" in res.message
    bins = res.extra["theta_e_bins"]
    assert sum(b["n_pos"] for b in bins) == (shortcut.sample("train").labels == 1).sum()
    # paired data with two injections per LRG: the duplicated controls were dropped
    assert shortcut.sample("train").n_duplicates > 0


def test_core_lr_passes_on_clean_data(clean):
    res = _run(clean, "core_lr_auc", box=10, input="raw_robust")
    assert res.verdict == "pass" and res.ci[1] <= 0.65


def test_core_lr_on_the_model_input(tmp_path_factory):
    rows = make_rows(ToySpec(n_lrgs=600, size=32, arc_flux=0.0, test_paired=False, seed=6))  # nothing to find
    ctx = _context(tmp_path_factory, "residual", rows, score_fn=lambda x: x[:, 1, 16, 16], preprocess="residual")
    res = _run(ctx, "core_lr_auc", box=10, input="model")
    assert res.verdict == "pass" and "input residual" in res.message


@pytest.fixture(scope="module")
def round_core_rows():
    """Unpaired, arcs clear of the box, positives with extra LRG light that is constant on every 1-px
    ring (a brighter, round core): ``raw_robust`` shows it, ``residual`` subtracts it exactly."""
    from shortcutgates.data.codec import decode_stamp
    from shortcutgates.model.preprocess import ring_index

    rows = make_rows(
        ToySpec(
            n_lrgs=600,
            size=32,
            paired=False,
            theta_e_arcsec=(2.2, 3.0),
            lrg_flux=(5.0, 15.0),
            test_paired=False,
            seed=11,
        )
    )  # faint LRGs: no pixel reaches raw_robust's clip
    ring = ring_index(32, 32)
    extra = (4.0 * np.exp(-0.5 * ring**2 / 2.0**2)).astype(np.float32)
    pos = rows.label == 1
    rows.loc[pos, "image_npz"] = [encode_stamp(decode_stamp(b) + extra) for b in rows.loc[pos, "image_npz"]]
    return rows


def _core_cases(ctx, split="train"):
    return {c.id: c for c in gate_cases(ctx) if c.gate == "core_lr_auc" and c.split == split}


def test_a_residual_model_is_not_red_because_of_the_raw_image(tmp_path_factory, round_core_rows):
    from shortcutgates.gates.report_json import is_red

    ctx = _context(
        tmp_path_factory, "round_core", round_core_rows, score_fn=lambda x: x[:, 1, 16, 16], preprocess="residual"
    )
    cases = _core_cases(ctx)
    raw, own = cases["core_lr_auc[train-box10-raw_robust]"], cases["core_lr_auc[train-box10-model]"]
    assert raw.role == "reported" and own.role == "primary"
    raw_res, own_res = run_case(ctx, raw), run_case(ctx, own)
    # the raw probe sees the brighter cores (its whole interval above 0.65) and is reported beside ...
    assert raw_res.verdict == "fail" and raw_res.ci[0] > 0.65 and not raw_res.established
    assert "the model reads residual" in raw_res.message and not is_red(raw_res.to_json())
    # ... the probe on what the model reads, which decides: nothing there
    assert own_res.verdict == "pass" and "input residual" in own_res.message and not is_red(own_res.to_json())
    # a data-only run decides on --input: residual decides, the raw probe is reported (not established)
    data_only = _context(
        tmp_path_factory, "round_core_data", round_core_rows, config=GateConfig(n_boot=500, input="residual")
    )
    cases = _core_cases(data_only)
    assert cases["core_lr_auc[train-box10-residual]"].role == "primary"
    assert cases["core_lr_auc[train-box10-raw_robust]"].role == "reported"
    res = run_case(data_only, cases["core_lr_auc[train-box10-raw_robust]"])
    assert not res.established and "decides on --input residual" in res.message
    # the default data-only run decides on raw_robust: there the same excess is an established violation
    default = _context(tmp_path_factory, "round_core_default", round_core_rows)
    res = run_case(default, _core_cases(default)["core_lr_auc[train-box10-raw_robust]"])
    assert res.role == "primary" and res.verdict == "fail" and res.established


def test_a_model_declaring_no_preprocessing_is_never_decided_on_raw_pixels(tmp_path_factory, round_core_rows):
    from shortcutgates.model.scorer_contract import _Identity

    ctx = _context(
        tmp_path_factory, "round_core_none", round_core_rows, score_fn=lambda x: x[:, 1, 16, 16], preprocess=_Identity()
    )
    cases = _core_cases(ctx)
    assert cases["core_lr_auc[train-box10-model]"].role == "reported"
    assert cases["core_lr_auc[train-box10-raw_robust]"].role == "primary"  # --input's default decides
    res = run_case(ctx, cases["core_lr_auc[train-box10-model]"])
    assert not res.established and "declares preprocessing 'none'" in res.message


@pytest.mark.parametrize(
    "theta_lo, fwhm, clears", [(2.0, 1.3, True), (1.5, 1.3, False), (2.0, 1.6, False), (1.0, 0.8, False)]
)
def test_arc_clears_box_by_theta_e_against_the_seeing(theta_lo, fwhm, clears):
    from shortcutgates.gates.data_gates import arc_clears_box

    assert arc_clears_box(theta_lo, fwhm, 10) is clears


def test_core_lr_decides_on_the_theta_e_bins_whose_arcs_clear_the_box(tmp_path_factory):
    rows = make_rows(ToySpec(n_lrgs=400, size=32, paired=False, theta_e_arcsec=(0.8, 3.0), test_paired=False, seed=12))
    ctx = _context(tmp_path_factory, "wide_theta", rows)
    cases = _core_cases(ctx)
    assert cases["core_lr_auc[train-box10-raw_robust]"].role == "reported"
    assert cases["core_lr_auc[train-box10-raw_robust-2-10arcsec]"].role == "primary"
    assert not any("1.5-2arcsec" in i or "0-1arcsec" in i for i in cases)  # arcs inside the box: no case
    res = run_case(ctx, cases["core_lr_auc[train-box10-raw_robust]"])
    assert "not decided" in res.message and "reach" in res.message and not res.established


def test_core_lr_is_an_error_with_one_class(tmp_path_factory, clean_rows):
    rows = clean_rows[~((clean_rows.split == "train") & (clean_rows.label == 0))]
    res = _run(_context(tmp_path_factory, "one_class", rows), "core_lr_auc", box=10, input="raw_robust")
    assert res.verdict == "error" and "both classes" in res.message and res.value is None


def test_core_lr_is_an_error_when_a_mask_covers_the_box(tmp_path_factory, clean_rows):
    def blank_core(raw):  # a preprocessing that zeroes r < 7.5 px: the box is (almost) all masked
        from shortcutgates.model.preprocess import radius_grid, raw_robust

        out = raw_robust(raw)
        out[..., radius_grid(*out.shape[-2:]) < 7.5] = 0.0
        return out

    ctx = _context(tmp_path_factory, "masked", clean_rows, score_fn=lambda x: x[:, 1, 0, 0], preprocess=blank_core)
    res = _run(ctx, "core_lr_auc", box=10, input="model")
    assert res.verdict == "error" and "mask covers the probe box" in res.message


# --- radial profile (reported) and arc annulus (sanity) ----------------------------------------
def test_radial_profile_is_reported_and_gateable(shortcut, no_arc):
    res = _run(shortcut, "radial_profile_lr_auc", input="raw_robust")
    assert res.verdict == "reported" and res.threshold is None and "reported, not gated" in res.message
    strict = GateConfig(n_boot=500, thresholds={"radial_profile_lr_auc": 0.65})
    shortcut.config = no_arc.config = strict  # a user's threshold turns the report into a gate
    try:
        assert _run(shortcut, "radial_profile_lr_auc", input="raw_robust").verdict == "fail"
        res = _run(no_arc, "radial_profile_lr_auc", input="raw_robust")
        assert res.verdict == "pass", res.message
    finally:
        shortcut.config = no_arc.config = CFG


def test_radial_profile_refuses_residual_input(tmp_path_factory, clean_rows):
    ctx = _context(tmp_path_factory, "resid2", clean_rows, score_fn=lambda x: x[:, 1, 0, 0], preprocess="residual")
    res = _run(ctx, "radial_profile_lr_auc", input="model")
    assert res.verdict == "error" and "zero by construction" in res.message
    # ... so the suite does not generate that case
    assert not [c for c in gate_cases(ctx) if c.gate == "radial_profile_lr_auc" and c.params["input"] == "model"]


def test_arc_annulus_passes_with_arcs_and_fails_without(clean, no_arc):
    good = _run(clean, "arc_annulus_lr_auc", input="raw_robust")
    assert good.verdict == "pass" and good.ci[0] >= 0.80
    bad = _run(no_arc, "arc_annulus_lr_auc", input="raw_robust")
    assert bad.verdict == "fail" and bad.value < 0.7


# --- cases -------------------------------------------------------------------------------------
def test_gate_cases_cover_every_gate_with_readable_unique_ids(clean):
    cases = gate_cases(clean)
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids))
    from shortcutgates.gates.registry import REGISTRY

    assert {c.gate for c in cases} == set(REGISTRY)
    assert "core_lr_auc[train-box10-raw_robust]" in ids and "core_lr_auc[train-box10-model]" in ids
    assert "lrg_leakage[train-test_paired]" in ids and any(i.startswith("morphology_auroc[test_paired") for i in ids)
    assert not any(c.split == "test_paired" and c.gate == "core_lr_auc" for c in cases)
    model_cases = [c for c in cases if "model" in c.needs]
    res = run_case(clean, model_cases[0])
    assert res.verdict == "skipped" and "no model" in res.message
    # detection on train is in-sample: it decides nothing; the train − val gap is reported instead
    assert "detection_auroc[train]" not in ids and "memorisation_gap[train-val]" in ids
    roles = {c.id: c.role for c in cases}
    assert (
        roles["memorisation_gap[train-val]"] == "reported" and roles["core_lr_auc[train-box10-raw_robust]"] == "primary"
    )
    assert all(roles[i] == "reported" for i in ids if i.startswith(("property_balance", "stratified_auroc")))


def test_no_duplicate_probe_case_when_the_model_reads_raw_robust(tmp_path_factory, clean_rows):
    ctx = _context(
        tmp_path_factory, "same_input", clean_rows, score_fn=lambda x: x[:, 1, 32, 32], preprocess="raw_robust"
    )
    ids = [c.id for c in gate_cases(ctx)]
    assert "core_lr_auc[train-box10-raw_robust]" in ids and "core_lr_auc[train-box10-model]" not in ids


def test_sample_cap_keeps_whole_lrgs_and_both_classes(tmp_path_factory, shortcut):
    from shortcutgates.gates.sample import cap_rows

    labels = np.r_[np.ones(600), np.zeros(400)].astype(int)
    groups = np.repeat(np.arange(250), 4)
    pos = cap_rows(labels, groups, 200, seed=1)
    assert len(pos) <= 200 and set(labels[pos]) == {0, 1}
    kept = pd.Series(groups[pos]).value_counts()
    assert (kept == 4).all()  # an LRG is never split
    np.testing.assert_array_equal(pos, cap_rows(labels, groups, 200, seed=1))


def test_sample_cap_keeps_both_rows_of_every_pair():
    from shortcutgates.gates.sample import cap_rows

    labels = np.tile([1, 0], 3000)  # 3000 paired LRGs: a stamp and its control each
    groups = np.repeat(np.arange(3000), 2)
    pos = cap_rows(labels, groups, 4000, seed=0)
    kept = pd.Series(groups[pos]).value_counts()
    assert len(pos) == 4000 and (kept == 2).all()
    # unpaired LRGs of either label and paired ones mixed: each kind keeps its share of the rows
    labels = np.r_[labels, np.ones(1000, int), np.zeros(1000, int)]
    groups = np.r_[groups, 3000 + np.arange(2000)]
    pos = cap_rows(labels, groups, 4000, seed=0)
    kept = pd.Series(groups[pos]).value_counts()
    assert (kept[kept.index < 3000] == 2).all() and abs(len(pos) - 4000) <= 2
    assert (labels[pos] == 1).sum() == (labels[pos] == 0).sum()


# --- leaked copies and matched twins -----------------------------------------------------------
def test_rows_copied_across_splits_fail_integrity_and_leakage_naming_rows(tmp_path_factory, clean_rows):
    test_rows = clean_rows[clean_rows.split == "test"].head(5)
    copies = test_rows.assign(split="train", lrg_id=[f"NEW{i}" for i in range(5)])
    rows = pd.concat([clean_rows, copies], ignore_index=True)
    ctx = _context(tmp_path_factory, "copied", rows)  # read, not refused
    res = run_case(ctx, GateCase("data_integrity"))
    first = len(clean_rows)
    assert res.verdict == "fail" and res.value == 5
    assert f"row {first}, column 'image_npz': the same image is listed in splits test and train" in res.message
    assert f"rows {', '.join(str(first + i) for i in range(5))}" in res.message
    leak = run_case(ctx, GateCase("lrg_leakage", {"pair": "train-test"}))
    assert leak.verdict == "fail" and leak.value == 5


def test_test_sharing_test_paired_positives_is_no_leak_but_a_paired_negative_is(tmp_path_factory, clean_rows):
    """A built manifest's test positives are its test_paired positives (same images, same LRGs): by design."""
    is_test_pos = (clean_rows.split == "test") & (clean_rows.label == 1)
    paired = clean_rows[clean_rows.split == "test_paired"]
    rows = pd.concat([clean_rows[~is_test_pos], paired[paired.label == 1].assign(split="test")], ignore_index=True)
    ctx = _context(tmp_path_factory, "shared", rows)
    assert run_case(ctx, GateCase("data_integrity")).value == 0
    leak = run_case(ctx, GateCase("lrg_leakage", {"pair": "test-test_paired"}))
    assert leak.verdict == "pass" and leak.value == 0 and "test negatives on test_paired LRGs" in leak.message
    # a test negative on a test_paired LRG pairs the unpaired negatives: a leak
    controls = paired[paired.label == 0].head(2).assign(split="test")
    ctx = _context(tmp_path_factory, "shared_leak", pd.concat([rows, controls], ignore_index=True))
    leak = run_case(ctx, GateCase("lrg_leakage", {"pair": "test-test_paired"}))
    assert leak.verdict == "fail" and leak.value == 2


def test_matched_twins_are_one_unit_and_keep_the_c2st_at_chance():
    from shortcutgates.gates.sample import matched_units

    frame = pd.DataFrame({"psfsize_r": [1.1, 1.1, 1.3, 1.3, 1.2, 1.25], "ebv": [0.02, 0.02, 0.05, 0.05, 0.03, 0.04]})
    labels = np.array([1, 0, 1, 0, 1, 0])
    groups = np.array(["a", "b", "c", "d", "e", "f"])  # twins a~b and c~d are different LRGs
    units = matched_units(frame, labels, groups, ["psfsize_r", "ebv"])
    assert units[0] == units[1] and units[2] == units[3] and len(set(units)) == 4
    # a value shared by many LRGs is a coarse bin, not a twin
    coarse = matched_units(pd.DataFrame({"psf_bin": [1] * 6}), labels, groups, ["psf_bin"])
    assert len(set(coarse)) == 6


def test_a_split_sharing_lrgs_with_the_models_training_manifest_is_a_leak(tmp_path_factory, clean_rows, clean):
    from pathlib import Path

    test_rows = clean_rows[clean_rows.split == "test"]
    trained = pd.concat(
        [clean_rows[clean_rows.split == "train"], test_rows.head(3).assign(split="train")], ignore_index=True
    )  # 3 test rows trained on
    training = write_manifest(trained, tmp_path_factory.mktemp("training"))
    ctx = _context(tmp_path_factory, "gated", clean_rows)
    ctx.training_manifest = Path(training)
    ids = {c.id: c for c in gate_cases(ctx) if c.gate == "lrg_leakage"}
    assert ids["lrg_leakage[test-model_train]"].role == "primary"
    res = run_case(ctx, ids["lrg_leakage[test-model_train]"])
    assert res.verdict == "fail" and res.value == test_rows.head(3)["ra"].nunique()
    assert "in the model's training split" in res.message
    assert run_case(ctx, ids["lrg_leakage[val-model_train]"]).verdict == "pass"
    # gating the training manifest itself: its own split pairs say it all, no extra case
    ctx.training_manifest = ctx.data
    assert not any("model_train" in c.id for c in gate_cases(ctx))
