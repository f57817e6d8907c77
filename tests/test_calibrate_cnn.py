"""The realistic pool's injection truth, the CNN families' training data, the not-a-null marking, and
one tiny CNN cell end to end (seconds: a synthetic pool, a few dozen stamps, two epochs)."""

import numpy as np
import pandas as pd
import pytest

from shortcutgates.calibrate import cnn, rates
from shortcutgates.calibrate import pool as pool_module
from shortcutgates.calibrate.harness import TRAINING_GATE, Cell, run_seed
from shortcutgates.calibrate.plant import PROPERTY_COLUMNS
from shortcutgates.calibrate.pool import (
    TRUTH_COLUMNS,
    Pool,
    arc_direction,
    injection_truth,
    simulate_pool,
    sky_grid,
)
from shortcutgates.calibrate.tables import NOT_A_NULL, null_table
from shortcutgates.data.codec import decode_stamp
from shortcutgates.gates.perturb import R_CORE_PX, core_mask
from shortcutgates.gates.registry import GateConfig
from shortcutgates.gates.suite import is_red
from shortcutgates.simulate.generator import simulate_frame


def synthetic_pool(n: int = 240, seed: int = 0, size: int = 64, theta_e=(1.6, 1.9)) -> Pool:
    """LRGs as Gaussians in unit noise; arcs at θ_E uniform in ``theta_e`` (arcsec) with a counter-image 2 px
    from the centre."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] - size // 2
    r, ang = np.hypot(x, y), np.arctan2(y, x)
    ctrl = (rng.normal(0, 1, (n, 3, size, size)) + 30 * np.exp(-0.5 * (r / 2.5) ** 2)).astype(np.float32)
    theta, phi = rng.uniform(*theta_e, n), rng.uniform(-np.pi, np.pi, n)
    arc = np.empty_like(ctrl)
    for i in range(n):
        along = np.angle(np.exp(1j * (ang - phi[i])))
        ring = np.exp(-0.5 * ((r - theta[i] / 0.262) / 1.5) ** 2 - 0.5 * (along / 0.6) ** 2)
        counter = np.exp(-0.5 * (np.hypot(x + 2 * np.cos(phi[i]), y + 2 * np.sin(phi[i])) / 1.5) ** 2)
        arc[i] = 4 * ring + 1.5 * counter
    meta = pd.DataFrame({c: rng.uniform(1.0, 1.5, n) for c in PROPERTY_COLUMNS})
    truth = {
        "lens_e": 0.2,
        "lens_phi_rad": 0.3,
        "shear": 0.03,
        "shear_phi_rad": 1.0,
        "src_reff_arcsec": 0.2,
        "src_n": 1.0,
        "src_q": 0.8,
        "src_phi_rad": 0.5,
        "src_dmag": 1.0,
        "arc_snr": 30.0,
        "magnification": 5.0,
    }
    for c in TRUTH_COLUMNS:
        meta[c] = truth.get(c, 0.0)
    meta["src_x_arcsec"], meta["src_y_arcsec"] = 0.3 * np.cos(phi), 0.3 * np.sin(phi)
    meta["theta_e_arcsec"] = theta
    meta["arc_phi"] = arc_direction(arc)
    meta["ra"], meta["dec"] = sky_grid(n)
    return Pool(ctrl, arc, meta, "realistic")


@pytest.fixture(scope="module")
def pool():
    return synthetic_pool()


@pytest.fixture(scope="module")
def wide_pool():
    """A third of its arcs beyond 2″, where the core probe decides: the built catalogues' donors."""
    return synthetic_pool(theta_e=(1.6, 2.4))


def _images(frame, label):
    return np.stack([decode_stamp(b) for b in frame.loc[frame["label"] == label, "image_npz"]])


def _index(frame, label):
    return frame.loc[frame["label"] == label, "lrg_id"].str[1:].astype(int).to_numpy()


def test_realistic_pool_chunks_are_the_simulators_lrgs_with_their_whole_truth(monkeypatch):
    monkeypatch.setattr(pool_module, "CHUNK_LRGS", 3)  # chunks [0, 3) and [3, 4), concatenated in order
    pool = simulate_pool(4, 0, kind="realistic")
    frame = simulate_frame(4, 0, injections_per_lrg=(1, 1))
    ctrl = np.stack([decode_stamp(b) for b in frame["ctrl_stamp_npz"]])
    np.testing.assert_array_equal(pool.ctrl, ctrl)
    np.testing.assert_allclose(pool.arc, np.stack([decode_stamp(b) for b in frame["stamp_npz"]]) - ctrl)
    np.testing.assert_array_equal(pool.meta["theta_e_arcsec"], frame["theta_e_arcsec"])
    assert pool.kind == "realistic" and pool.meta[list(TRUTH_COLUMNS)].notna().all().all()
    assert pool.meta["src_q"].between(0.4, 1.0).all() and pool.meta["shear_phi_rad"].between(0, np.pi).all()
    written = ["shear_phi_rad", "src_n", "src_q", "src_phi_rad"]  # the simulator writes them now: replay them
    older = frame.drop(columns=written).iloc[2:].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        injection_truth(older, 0, first=2)[written], frame[written].iloc[2:].reset_index(drop=True), check_dtype=False
    )
    with pytest.raises(RuntimeError, match="replayed injections differ"):  # the wrong LRGs' streams
        injection_truth(older, 0, first=0)


def test_core_neutral_negatives_carry_a_donor_positives_core_light(pool):
    family = cnn.FAMILIES["neutral-residual"]
    frame, _ = cnn.training_split(pool, family, 40, "train", np.random.default_rng(3))
    pos, neg = _index(frame, 1), _index(frame, 0)
    lent = _images(frame, 0) - np.asarray(pool.ctrl[neg])
    cores = cnn.core_part(pool, pos)
    assert 0 < cores.sum() < 0.5 * np.asarray(pool.arc[pos]).sum()  # a part of the lensed light, not all
    donor = [int(np.argmin(np.abs(cores - d).sum(axis=(1, 2, 3)))) for d in lent]
    assert sorted(donor) == list(range(len(pos)))  # every positive lends its core to exactly one negative
    np.testing.assert_allclose(lent, cores[donor], atol=1e-5)


def test_core_reliant_positives_carry_a_central_point_source_and_a_faint_arc(pool):
    family = cnn.FAMILIES["reliant-raw_robust"]
    frame, _ = cnn.training_split(pool, family, 20, "train", np.random.default_rng(4))
    pos = _index(frame, 1)
    ctrl = np.asarray(pool.ctrl[pos], np.float64)
    source = _images(frame, 1) - ctrl - cnn.RELIANT_ARC_KEEP * np.asarray(pool.arc[pos])
    inside = core_mask((64, 64), R_CORE_PX)
    np.testing.assert_allclose(
        source.sum(axis=(2, 3)), cnn.POINT_SOURCE_FRACTION * ctrl[..., inside].sum(-1), rtol=1e-3
    )
    assert (source[:, 1].reshape(len(pos), -1).argmax(1) == 32 * 64 + 32).all()
    np.testing.assert_array_equal(_images(frame, 0), np.asarray(pool.ctrl[_index(frame, 0)]))


def test_fixed_by_construction_cases_are_not_a_null():
    base = {
        "kind": "model",
        "problem": "core",
        "strength": 0.0,
        "n_lrgs": 250,
        "core": 0.25,
        "case": "c",
        "gate": "arc_masked_auroc",
        "role": "primary",
        "verdict": "pass",
        "value": 0.5,
        "lo": 0.5,
        "hi": 0.5,
        "threshold": 0.6,
        "seconds": 1.0,
        "seed": 0,
    }
    rows = [
        dict(base, cell="a", scorer="arc"),
        dict(base, cell="a", scorer="arc", seed=1),
        dict(base, cell="b", scorer="arc", pool="realistic"),
        dict(base, cell="c", scorer="mix0.2"),
        dict(base, cell="d", scorer="arc", gate="morphology_auroc"),
    ]
    summary = rates.summarise(pd.DataFrame(rows)).set_index("cell")
    assert summary["not_a_null"].to_dict() == {"a": True, "b": False, "c": False, "d": False}
    table = null_table(summary.reset_index(), "model")
    assert table.count(NOT_A_NULL) == 1 and "0 % [0," in table  # the other arc-reader row keeps its rate


def test_tiny_cnn_cell_trains_on_other_lrgs_than_it_gates_and_records_every_bin(pool, monkeypatch, tmp_path):
    monkeypatch.setattr(cnn, "GATE_LRGS", 40)
    monkeypatch.setattr(cnn, "EPOCHS", 2)
    trained = cnn.train_seed(pool, cnn.FAMILIES["reliant-raw_robust"], 60, 0, np.random.default_rng(0), tmp_path)
    train_ids = set(pd.read_parquet(tmp_path / "train_manifest")["lrg_id"])
    gate = pd.read_parquet(trained.gating_manifest)
    assert not train_ids & set(gate["lrg_id"]) and set(gate["split"]) == {"test", "test_paired"}
    paired = gate[gate["split"] == "test_paired"]
    assert (paired.groupby("lrg_id")["label"].nunique() == 2).all() and len(paired) == 80
    records = pd.DataFrame(
        run_seed(
            pool, Cell("cnn", n_lrgs=60, scorer="cnn:reliant-raw_robust", pool="realistic"), 0, GateConfig(n_boot=500)
        )
    )
    training = records[records["gate"] == TRAINING_GATE]
    assert len(training) == 1 and 0 <= training["value"].iloc[0] <= 1
    assert set(records.loc[records["gate"] == "arc_masked_auroc", "case"]) == {
        "arc_masked_auroc[test_paired-theta_e1.5-2]"
    }
    outcome = rates.family_outcomes(records)
    counterfactual = records[records["gate"].isin(rates.COUNTERFACTUAL_GATES)]
    assert len(counterfactual) == 4 and len(outcome) == 1
    assert outcome["n_model_decided"].iloc[0] >= (counterfactual["role"] == "primary").sum()


def test_family_outcome_counts_what_the_suite_turns_red():
    """``model_red``: an inconclusive primary case is red for the user although it is no deciding fail;
    a diagnostic's (``morphology_auroc``) whole-interval violation is not red."""
    base = {
        "kind": "cnn",
        "problem": "core",
        "strength": 0.0,
        "n_lrgs": 60,
        "scorer": "cnn:neutral-residual",
        "core": 0.0,
        "where": "",
        "pool": "realistic",
        "seed": 0,
        "value": 0.5,
        "lo": 0.4,
        "hi": 0.6,
    }
    records = pd.DataFrame(
        [
            {
                **base,
                "case": "cnn_training",
                "gate": "cnn_training",
                "role": "training",
                "verdict": "trained",
                "established": False,
                "seconds": 1.0,
            },
            {
                **base,
                "case": "arc_masked_auroc[x]",
                "gate": "arc_masked_auroc",
                "role": "primary",
                "verdict": "inconclusive",
                "established": False,
                "seconds": 1.0,
            },
            {
                **base,
                "case": "morphology_auroc[x]",
                "gate": "morphology_auroc",
                "role": "reported",
                "verdict": "fail",
                "established": False,
                "seconds": 1.0,
            },
        ]
    )
    for column in rates.CELL_COLUMNS:
        records[column] = records.get(column, "")
    out = rates.family_outcomes(records).iloc[0]
    assert out["model_red"] and out["red_cases"] == "arc_masked_auroc[x] inconclusive"
    assert not out["core_fail"] and not out["model_fail"]


TRAINED_SUITE = Cell("suite", "core", 0.0, 120, scorer="cnn:neutral-residual", pool="realistic")
"""A tiny trained-suite cell: 120 LRGs of the synthetic pool built with the builder's default splits."""


def _pool_index(frame) -> np.ndarray:
    """Pool positions of built rows, from their sky position (``pool.sky_grid``: 0.01° apart)."""
    return (
        np.rint((frame["ra"].to_numpy() - 100.0) / 0.01) + 1000 * np.rint((frame["dec"].to_numpy() + 10.0) / 0.01)
    ).astype(int)


def test_a_trained_suite_catalogue_lends_every_training_negative_a_positives_counter_image(wide_pool, tmp_path):
    """As built (``build_manifest`` from the family's paired catalogue): every negative of ``train`` and ``val``
    is its bare control plus the counter-image light of a positive of its own split whose θ_E lies where the
    core probe decides (``cnn.decided_theta_arcsec``); ``test``'s negatives,
    the pairs and every positive are untouched; the LRG properties are those of the bare controls, and the
    positives carry the injection truth the counterfactual gates read."""
    from shortcutgates.calibrate.harness import _manifest
    from shortcutgates.calibrate.plant import measured_columns
    from shortcutgates.data.lrg_properties import ALWAYS_MEASURED
    from shortcutgates.data.manifest import load_images, read_manifest

    frame = read_manifest(_manifest(wide_pool, TRAINED_SUITE, 0, tmp_path)).frame
    images, failures = load_images(frame)
    assert not failures and set(frame["split"]) == {"train", "val", "test", "test_paired"}
    index, split, label = _pool_index(frame), frame["split"].to_numpy(), frame["label"].to_numpy()
    lent = images - np.asarray(wide_pool.ctrl[index])
    pos = label == 1
    np.testing.assert_allclose(lent[pos], np.asarray(wide_pool.arc[index[pos]]), atol=1e-4)
    real = np.isin(split, ["test", "test_paired"]) & ~pos
    assert real.sum() > 0 and np.abs(lent[real]).max() == 0
    for name in cnn.NEUTRAL_SPLITS:
        neg = np.flatnonzero((split == name) & ~pos)
        donors = np.unique(index[pos & (split == name)])
        donors = donors[wide_pool.meta["theta_e_arcsec"].to_numpy()[donors] >= cnn.decided_theta_arcsec(wide_pool)]
        cores = cnn.core_part(wide_pool, donors)
        assert len(neg) and len(donors) and cores.sum() > 0
        for row in neg:  # each carries one counter-image of its split's positives in the deciding θ_E bins
            assert np.abs(cores - lent[row]).max(axis=(1, 2, 3)).min() < 1e-4, (name, row)
    bare = measured_columns(wide_pool, index)
    np.testing.assert_allclose(frame[list(ALWAYS_MEASURED)].to_numpy(np.float64), bare.to_numpy(np.float64), rtol=1e-6)
    assert frame.loc[pos, ["lens_e", "shear", "src_x_arcsec"]].notna().all().all()


def test_tiny_trained_suite_cell_runs_the_whole_suite_on_its_own_cnn_deterministically(
    wide_pool, monkeypatch, tmp_path
):
    """Per seed: the same manifest and the same CNN weights (so the same seeded gate results); every case of the
    suite on that manifest with that model is recorded once with its role, beside the training record; the
    model trained on the gated manifest itself, so no ``model_train`` leakage case; the seed's red/green is
    the suite's rule over the cases (the training record is not a case)."""
    import torch

    from shortcutgates.calibrate.harness import _context, _manifest
    from shortcutgates.data.manifest import read_manifest
    from shortcutgates.gates.registry import gate_cases

    monkeypatch.setattr(cnn, "EPOCHS", 1)
    config = GateConfig(n_boot=500, seed=0)
    contexts = [_context(wide_pool, TRAINED_SUITE, 0, config, tmp_path / str(k)) for k in range(2)]
    frames = [c.frame.drop(columns=["source_path", "manifest_file"]).reset_index(drop=True) for c, _ in contexts]
    weights = [torch.load(tmp_path / str(k) / "model.pt", weights_only=True)["state_dict"] for k in range(2)]
    pd.testing.assert_frame_equal(frames[0], frames[1])
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    other = read_manifest(_manifest(wide_pool, TRAINED_SUITE, 1, tmp_path / "seed1")).frame  # another seed: other LRGs
    assert set(other["lrg_id"]) != set(frames[0]["lrg_id"])
    cases = {c.id: c.role for c in gate_cases(contexts[0][0])}
    records = pd.DataFrame(run_seed(wide_pool, TRAINED_SUITE, 0, GateConfig(n_boot=500)))
    assert records["case"].tolist() == [TRAINING_GATE, *cases]  # every case once, in registry order
    assert dict(zip(records["case"], records["role"])) == {TRAINING_GATE: "training", **cases}
    assert {"data_integrity", "core_lr_auc", "property_balance", "detection_auroc", "arc_masked_auroc"} <= set(
        records["gate"]
    ) and not records["case"].str.contains("model_train").any()
    assert (records["cell"] == "suite:core=0:n120:cnn:neutral-residual:realistic").all()
    outcome = rates.suite_outcomes(records).iloc[0]
    red = [
        c for c, r in zip(records["case"], records.to_dict("records")) if c != TRAINING_GATE and is_red(r, strict=True)
    ]
    assert outcome["green"] == (not red) and outcome["not_passed"].count(";") == max(len(red) - 1, 0)


def test_criteria_profile_holds_the_clean_trained_suite_and_a_realistic_pool_that_fits_it(monkeypatch):
    from shortcutgates.calibrate import runner
    from shortcutgates.calibrate.profiles import SUITE_LRGS, make_profile

    profile = make_profile("criteria")
    trained = [cell for cell, _ in profile.cells if cell.kind == "suite" and cell.scorer.startswith(cnn.PREFIX)]
    assert sorted(c.scorer for c in trained) == ["cnn:neutral-raw_robust", "cnn:neutral-residual"]
    assert all(c.pool == "realistic" and c.strength == 0 and c.core == 0 and c.n_lrgs == SUITE_LRGS for c in trained)
    assert all(cnn.FAMILIES[c.scorer.removeprefix(cnn.PREFIX)].role == "null" for c in trained)
    assert profile.lrgs_of("realistic") > SUITE_LRGS and profile.lrgs_of("tapered") == profile.pool_lrgs
    monkeypatch.setattr(runner, "load_pool", lambda n, seed, cache, progress=False, kind="tapered": (n, kind))
    assert runner._pools({"realistic": 6000, "tapered": 10000}, 0, None) == {
        "realistic": (6000, "realistic"),
        "tapered": (10000, "tapered"),
    }


def test_donors_are_eligible_positives_of_the_same_split():
    """A built catalogue's core-neutral negatives borrow core light only from positives of their own split
    that ``eligible`` marks (the θ_E bins where the core probe decides), each such positive in turn."""
    from shortcutgates.calibrate.cnn import donors_by_split

    split = np.array(["train"] * 6 + ["val"] * 4 + ["test"] * 2, object)
    role = np.array(["pos", "pos", "pos", "neg", "neg", "neg", "pos", "pos", "neg", "neg", "pos", "neg"], object)
    eligible = np.array([1, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1, 0], bool)
    donors = donors_by_split(split, role, np.random.default_rng(0), eligible=eligible)
    assert set(donors[[3, 4, 5]]) == {0, 2} and set(donors[[8, 9]]) == {7}
    assert (donors[[0, 1, 2, 6, 7, 10, 11]] == -1).all()  # positives and test's negatives lend/borrow nothing
    with pytest.raises(ValueError, match="no eligible positive"):
        donors_by_split(split, role, np.random.default_rng(0), eligible=np.zeros(12, bool))


def test_the_decided_bin_starts_where_arcs_clear_the_core_box(wide_pool):
    from shortcutgates.calibrate.cnn import decided_theta_arcsec
    from shortcutgates.gates.core_bins import arc_clears_box

    lo = decided_theta_arcsec(wide_pool)
    fwhm = float(np.median(wide_pool.meta["psf_fwhm_used_r"]))
    assert arc_clears_box(lo, fwhm, 10) and not arc_clears_box(lo - 0.5, fwhm, 10)
