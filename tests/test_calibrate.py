"""The calibration harness: planted problems, rates with intervals, and the reduced quick profile.

The ``tiny`` profile (a few seeds, 100–150 LRGs per split, a 400-LRG pool) runs once through
``shortcutgates calibrate``; its assertions are the acceptance numbers, loosely: no false alarm of
``core_lr_auc`` on clean data, the survey-strength counter-image and a planted property imbalance
caught, the core reader caught by a model gate where the arc reader is not.
"""

import numpy as np
import pandas as pd
import pytest

from shortcutgates.calibrate import plant, rates
from shortcutgates.calibrate.pool import core_taper, load_pool
from shortcutgates.calibrate.profiles import SURVEY_CORE, make_profile
from shortcutgates.cli import main

CORE_CASE = "core_lr_auc[train-box10-raw_robust]"


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    return load_pool(make_profile("tiny").pool_lrgs, 0, tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, pool):
    out = tmp_path_factory.mktemp("calib")
    cache = tmp_path_factory.getbasetemp() / "cache0"  # the pool fixture's directory: no second simulation
    assert main(["calibrate", "--profile", "tiny", "--out", str(out), "--cache", str(cache), "--quiet"]) == 0
    return out, pd.read_csv(out / "summary.csv")


def _row(summary, **where):
    sub = summary
    for key, value in where.items():
        sub = sub[sub[key] == value]
    assert len(sub) == 1, where
    return sub.iloc[0]


def test_wilson_interval_known_values():
    lo, hi = rates.proportion_ci(0, 200)
    assert lo == 0 and 0.015 < hi < 0.02  # rule of three ~ 3/200, Wilson a little higher
    lo, hi = rates.proportion_ci(10, 200)
    assert lo < 0.05 < hi and hi - lo < 0.07


def test_taper_removes_arc_light_from_the_box():
    w = core_taper(64)
    assert w[27:37, 27:37].max() == 0 and w[32, 32 + 10] == 1


def test_counter_image_carries_the_planted_fraction_of_arc_flux(pool):
    idx = np.arange(5)
    arc = np.asarray(pool.arc[idx])
    ci = plant.counter_images(pool.meta.iloc[idx].reset_index(drop=True), arc, 0.4, np.random.default_rng(0))
    np.testing.assert_allclose(ci.sum((2, 3)), 0.4 * arc.sum((2, 3)), rtol=1e-3)
    peak = np.unravel_index(ci[0, 1].argmax(), ci.shape[2:])
    assert 0.5 <= np.hypot(peak[0] - 32, peak[1] - 32) <= 3.0


def test_planted_problems_do_what_they_say(pool):
    rng = np.random.default_rng(1)
    clean, _ = plant.split_rows(pool, 100, "train", rng)
    assert (clean["label"] == 1).sum() == 50 and clean["lrg_id"].is_unique
    leak, _ = plant.split_rows(pool, 100, "train", rng, problem="leak", strength=0.1)
    ids = leak.groupby("lrg_id")["label"].nunique()
    assert (ids == 2).sum() == 5
    dup, _ = plant.split_rows(pool, 100, "train", rng, problem="dup", strength=0.1)
    assert len(dup) == 105 and dup["image_npz"].duplicated().sum() == 5
    faint, _ = plant.split_rows(pool, 100, "train", np.random.default_rng(1), problem="faint", strength=0.75)
    assert np.allclose(_arc_flux(faint, pool), 0.25 * _arc_flux(clean, pool), rtol=1e-4)
    smd, _ = plant.split_rows(pool, 100, "train", rng, problem="smd", strength=5.0)
    pos, neg = (smd.loc[smd["label"] == c, "psfsize_r"] for c in (1, 0))
    assert neg.mean() - pos.mean() > 2 * pool.meta["psfsize_r"].std()


def _arc_flux(frame, pool):
    """Per positive row: stamp flux minus its pool control's flux, (N, 3)."""
    from shortcutgates.data.codec import decode_stamp

    pos = frame[frame["label"] == 1]
    index = pos["lrg_id"].str[1:].astype(int).to_numpy()
    stamps = np.stack([decode_stamp(b) for b in pos["image_npz"]]).astype(np.float64)
    return (stamps - np.asarray(pool.ctrl[index], np.float64)).sum(axis=(2, 3))


def test_summary_rates_and_coverage():
    base = dict(
        cell="c",
        kind="data",
        problem="core",
        strength=0.0,
        n_lrgs=100,
        scorer="",
        core=0.0,
        case="core_lr_auc[train-box10-raw_robust]",
        gate="core_lr_auc",
        role="primary",
        threshold=0.65,
        direction="at_most",
        message="",
        seconds=1.0,
    )
    recs = pd.DataFrame(
        [
            dict(base, seed=i, verdict="fail" if i < 2 else "pass", value=0.5, lo=0.45 if i < 18 else 0.51, hi=0.55)
            for i in range(20)
        ]
    )
    row = rates.summarise(recs).iloc[0]
    assert row["fail_rate"] == pytest.approx(0.1) and row["fail_lo"] < 0.1 < row["fail_hi"]
    assert row["truth"] == 0.5 and row["truth_source"] == "analytic"
    assert row["coverage"] == pytest.approx(0.9)
    suite = rates.summarise_suite(rates.suite_outcomes(recs))
    assert suite["green_rate"].iloc[0] == pytest.approx(0.9)


def test_tiny_profile_no_false_alarm_on_clean_data(tiny):
    _, summary = tiny
    row = _row(summary, kind="data", strength=0.0, case=CORE_CASE)
    assert row["n_seeds"] == 4 and row["fail_rate"] == 0
    assert row["mean_value"] < 0.6


def test_tiny_profile_catches_survey_strength_core_excess(tiny):
    _, summary = tiny
    row = _row(summary, kind="data", problem="core", strength=SURVEY_CORE, case=CORE_CASE)
    assert row["fail_rate"] >= 2 / 3 and row["mean_value"] > 0.7


def test_tiny_profile_catches_property_imbalance(tiny):
    _, summary = tiny
    row = _row(summary, kind="data", problem="smd", case="property_balance[train-psfsize_r]")
    assert row["fail_rate"] >= 2 / 3 and abs(row["mean_value"]) > 0.3  # planted 0.5, signed SMD


def test_tiny_profile_tells_core_reader_from_arc_reader(tiny):
    """On the realistic pool (lenses with counter-images and their truth) the core reader turns a core gate
    red by the suite's rule (a primary fail, or an established violation in any role) on every seed; the
    arc reader turns none red."""
    from shortcutgates.gates.suite import is_red

    out, _ = tiny
    records = pd.concat([pd.read_csv(p) for p in sorted(out.glob("records*.csv*"))])
    model = records[(records["kind"] == "model") & records["gate"].isin(["arc_masked_auroc", "core_masked_auroc_drop"])]
    red = model.assign(red=[is_red(r) for r in model.to_dict("records")]).groupby(["scorer", "seed"])["red"].any()
    assert red["core"].all() and len(red["core"]) == 2
    assert not red["arc"].any()


def test_tiny_profile_writes_tables_and_figures(tiny):
    out, _ = tiny
    for name in ("summary.csv", "calibration.md", "calibration_power.png", "calibration_coverage.png"):
        assert (out / name).stat().st_size > 0
    markdown = (out / "calibration.md").read_text()
    assert "core_lr_auc" in markdown
    planted = markdown.split("## Planted problems", 1)[1].split("\n## ", 1)[0]  # the tiny profile's planted data cells
    assert f"`data:core={SURVEY_CORE:g}:n150`" in planted and "`data:smd=0.5:n150`" in planted


def test_profile_pairs_run_each_cell_seed_once_interleaved():
    from shortcutgates.calibrate.harness import Cell
    from shortcutgates.calibrate.profiles import Profile
    from shortcutgates.calibrate.runner import pairs

    a, b = Cell("data", n_lrgs=100), Cell("model", n_lrgs=100, scorer="arc")
    got = pairs(Profile("t", 100, 0, ((a, 2), (b, 3), (a, 1))))
    assert [(c.kind, s) for c, s in got] == [("data", 0), ("model", 0), ("data", 1), ("model", 1), ("model", 2)]
    fresh = pairs(Profile("t", 100, 0, ((a, 2), (b, 3)))._replace(first_seed=20), cells="model")
    assert [(c.kind, s) for c, s in fresh] == [("model", 20), ("model", 21), ("model", 22)]
    with pytest.raises(ValueError, match="no cell"):
        pairs(Profile("t", 100, 0, ((a, 2),)), cells="cnn:")


def test_workers_record_the_same_table(tmp_path, pool, tmp_path_factory):
    """Two worker processes (each (cell, seed) seeded by itself, records in pair order): the same records,
    every column but ``seconds`` (each case's wall time) exactly equal, in the same order."""
    from shortcutgates.calibrate.profiles import Profile
    from shortcutgates.calibrate.runner import run_profile

    tiny_profile = make_profile("tiny")
    cells = (tiny_profile.cells[0][0], 2), (tiny_profile.cells[3][0], 1)  # a data cell, a model cell
    mini = tiny_profile._replace(name="mini", cells=cells)
    assert isinstance(mini, Profile)
    cache = tmp_path_factory.getbasetemp() / "cache0"  # the pool fixture's directory
    frames = [
        pd.read_csv(run_profile(mini, tmp_path / f"w{w}", cache_dir=cache, progress=False, workers=w)) for w in (1, 2)
    ]
    assert len(frames[0]) > 3
    pd.testing.assert_frame_equal(
        frames[0].drop(columns="seconds"), frames[1].drop(columns="seconds"), check_exact=True
    )


def test_magnitude_imbalance_is_planted_by_selection_in_survey_format(pool):
    from shortcutgates.data.splits import standardised_mean_difference

    frame, lrgs = plant.split_rows(pool, 100, "train", np.random.default_rng(2), problem="mag", strength=1.0)
    assert "lrg_mag_r" not in frame and "lrg_redshift" not in frame  # survey format: no LRG photometry
    truth = pool.meta["lrg_mag_r"].to_numpy()[frame["lrg_id"].str[1:].astype(int).to_numpy()]
    pos = (frame["label"] == 1).to_numpy()
    assert standardised_mean_difference(truth[pos], truth[~pos]) < -0.5  # positives brighter (planted SMD 1)
    measured = frame["total_mag_r"].to_numpy()
    assert standardised_mean_difference(measured[pos], measured[~pos]) < -0.3  # seen in the measured column


def test_builder_roles_are_the_builders(pool, tmp_path):
    from shortcutgates.data.build import build_manifest
    from shortcutgates.calibrate.harness import paired_catalogue
    from shortcutgates.data.io import write_parquet_atomic
    from shortcutgates.data.manifest import read_manifest

    index = np.arange(80)
    write_parquet_atomic(paired_catalogue(pool, index, 0.0, np.random.default_rng(0)), tmp_path / "in" / "p.parquet")
    build_manifest(tmp_path / "in", tmp_path / "m", mode="unpaired", seed=3, progress=False)
    # rows are sorted train, val, test, test_paired: a pair's last row is in test_paired (its positive also in test)
    built = (
        read_manifest(tmp_path / "m")
        .frame.groupby("lrg_id")
        .agg(split=("split", "last"), n=("label", "size"), label=("label", "max"))
    )
    split, role = plant.builder_roles(pool, 3)
    from shortcutgates.data.identity import format_lrg_id

    ids = format_lrg_id(pool.meta["ra"].to_numpy()[index], pool.meta["dec"].to_numpy()[index])
    expected = pd.DataFrame({"split": split[index], "role": role[index]}, index=ids).loc[built.index]
    assert (expected["split"] == built["split"]).all()
    assert ((expected["role"] == "pair") == (built["n"] == 3)).all()  # positive in test and test_paired, control
    assert ((expected["role"] == "pos") == ((built["n"] == 1) & (built["label"] == 1))).all()
    assert not (expected["split"] == "test").to_numpy()[(expected["role"] == "pos").to_numpy()].any()


def test_the_cross_test_gap_resamples_the_shared_positives_jointly(tmp_path):
    """Shared positives (one LRG in test and test_paired) are one bootstrap unit: the gap's interval is
    narrower than with the same scores on separate LRGs, where the positives' variance does not cancel."""
    from shortcutgates.calibrate.gap import planted_rows, planted_score
    from shortcutgates.gates.registry import REGISTRY, GateCase, GateConfig, GateContext, run_case
    from shortcutgates.data.io import write_parquet_atomic

    rows = planted_rows(0.0, 3, n_lrgs=2000)
    moved = rows.copy()
    test_pos = ((moved["split"] == "test") & (moved["label"] == 1)).to_numpy()
    moved.loc[test_pos, "dec"] += 5.0  # the same scores on other LRGs
    moved.loc[test_pos, "lrg_id"] = "M" + moved.loc[test_pos, "lrg_id"]
    width, value = {}, {}
    for name, frame in (("shared", rows), ("separate", moved)):
        write_parquet_atomic(frame, tmp_path / name / "part-0000.parquet")
        context = GateContext(tmp_path / name, config=GateConfig(n_boot=500, seed=0), score_fn=planted_score)
        result = run_case(context, GateCase("cross_test_gap", {}, None, REGISTRY["cross_test_gap"].needs))
        width[name], value[name] = result.ci[1] - result.ci[0], result.value
    assert value["shared"] == pytest.approx(value["separate"])  # the same scores: the same estimate
    assert width["shared"] < 0.8 * width["separate"]


@pytest.mark.parametrize(
    "n_lrgs,shared,role", [(6667, True, "primary"), (4000, True, "reported"), (6667, False, "reported")]
)
def test_cross_test_gap_is_primary_from_500_shared_lenses(tmp_path, n_lrgs, shared, role):
    from shortcutgates.calibrate.gap import planted_rows
    from shortcutgates.gates.registry import REGISTRY, GateContext, shared_gap_lrgs
    from shortcutgates.data.io import write_parquet_atomic

    write_parquet_atomic(planted_rows(0.0, 1, n_lrgs=n_lrgs, shared=shared), tmp_path / "part-0000.parquet")
    context = GateContext(tmp_path)
    gate = REGISTRY["cross_test_gap"]
    (case,) = gate.cases(context, gate)
    assert shared_gap_lrgs(context) == (int(0.075 * n_lrgs) if shared else 0)
    assert (case.role or gate.role) == role


def test_a_planted_cross_test_gap_of_0_15_is_red_and_no_gap_is_not():
    from shortcutgates.calibrate.gap import run_gap

    red = run_gap(0.15, [0])
    assert red["outcome"].iloc[0] == "red" and red["established"].iloc[0] and red["value"].iloc[0] > 0.05
    clean = run_gap(0.0, [0])
    assert not clean["established"].iloc[0] and clean["outcome"].iloc[0] == "reported"


@pytest.mark.parametrize("fraction", [0.0, 0.05])
def test_a_suite_cell_plants_lrg_leakage_into_a_built_test_split(pool, tmp_path, fraction):
    """``suite`` cells with ``leak``: train positives' bare controls appended to ``test`` as negatives (a
    separately assembled test set); ``lrg_leakage`` fails on that split pair exactly when planted, the
    built manifest without it passes."""
    from shortcutgates.calibrate.harness import Cell, _manifest
    from shortcutgates.gates.registry import GateConfig, GateContext, gate_cases, run_case

    cell = Cell("suite", "leak", fraction, 160, scorer="arc")
    manifest = _manifest(pool, cell, 3, tmp_path)
    rows = pd.read_parquet(manifest / "manifest.parquet")
    test_ids = set(rows.loc[rows["split"] == "test", "lrg_id"])
    train_ids = set(rows.loc[rows["split"] == "train", "lrg_id"])
    assert len(test_ids & train_ids) == (max(1, round(fraction * len(test_ids))) if fraction else 0)
    context = GateContext(manifest, config=GateConfig(n_boot=500))
    leakage = {c.id: run_case(context, c) for c in gate_cases(context) if c.gate == "lrg_leakage"}
    failed = sorted(i for i, r in leakage.items() if r.verdict == "fail")
    assert failed == (["lrg_leakage[train-test]"] if fraction else []), {i: r.verdict for i, r in leakage.items()}


def test_records_do_not_name_the_seeds_temporary_directory(pool):
    """A bad-row message names its file; the seed's temporary directory is written as ``<seed dir>``, so two
    runs (or two worker counts) record the same messages."""
    from shortcutgates.calibrate.harness import SEED_DIR, Cell, run_seed
    from shortcutgates.gates.registry import GateConfig

    cell = Cell("data", "dup", 0.02, 150)
    messages = [[r["message"] for r in run_seed(pool, cell, 0, GateConfig(n_boot=500))] for _ in range(2)]
    assert messages[0] == messages[1]
    assert any(SEED_DIR in m for m in messages[0]) and not any("sg-calibrate-" in m for m in messages[0])
