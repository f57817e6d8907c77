"""Pieces of the experiment orchestration (the whole run is exercised by tests/test_real_data.py)."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shortcutgates.experiment import run as ex
from shortcutgates.experiment import params as ep
from shortcutgates.experiment import stages as es
from shortcutgates.experiment import measure as em
from shortcutgates.cli import main as cli_main


def test_configurations_are_the_proposals_remedies():
    names = [c.name for c in ep.CONFIGURATIONS]
    assert names == ["raw_robust", "residual", "residual+dropout", "residual+hn"]
    assert [c.preprocess for c in ep.CONFIGURATIONS] == ["raw_robust", "residual", "residual", "residual"]
    assert ep.CONFIGURATIONS[2].core_dropout is not None and ep.CONFIGURATIONS[1].core_dropout is None
    recipe = ep.CONFIGURATIONS[3]
    assert recipe.hard_negatives == "core,shuffle" and recipe.paired_from == "residual"
    assert recipe.dataset == "unpaired-hn-core-shuffle" and ep.CONFIGURATIONS[1].dataset == "unpaired"


def test_primary_failed_lists_primary_cases_that_did_not_pass():
    records = [
        {"id": "a", "role": "primary", "verdict": "pass"},
        {"id": "b", "role": "primary", "verdict": "fail"},
        {"id": "c", "role": "reported", "verdict": "fail"},
        {"id": "d", "role": "primary", "verdict": "inconclusive"},
        {"id": "e", "role": "primary", "verdict": "skipped"},
    ]
    assert ex.primary_failed(records) == ["b", "d"]


def test_point_source_holds_its_flux_at_the_centre():
    flux = np.array([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]])
    ps = em.point_sources(np.full((2, 3), 4.0), flux, (32, 32))
    np.testing.assert_allclose(ps.sum(axis=(-2, -1)), flux, rtol=1e-5)
    assert np.all(ps[..., 16, 16] == ps.max(axis=(-2, -1)))
    ctrl = np.zeros((1, 3, 32, 32), np.float32)
    ctrl[..., 14:19, 14:19] = 1.0
    np.testing.assert_allclose(em.lrg_flux(ctrl), 25.0)


@pytest.mark.parametrize(
    "kw,match",
    [
        pytest.param({"epochs": 0}, "'epochs' must be >= 1", id="epochs"),
        pytest.param({"seeds": 0}, "'seeds' must be >= 1", id="seeds"),
        pytest.param({"n_boot": 100}, "'n_boot' must be >= 500", id="n_boot"),
        pytest.param({"configs": ()}, "at least one configuration", id="configs"),
    ],
)
def test_params_reject_bad_values(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        ep.ExperimentParams(out=tmp_path, **kw)


def test_seed_list_and_record(tmp_path):
    p = ep.ExperimentParams(out=tmp_path, seed=7, seeds=3)
    assert p.seed_list() == [7, 8, 9]
    rec = p.record()
    assert rec["seeds"] == [7, 8, 9] and rec["input"] is None and rec["n_lrgs"] == p.n_lrgs
    assert [c["name"] for c in rec["configs"]] == [c.name for c in ep.CONFIGURATIONS]
    assert ep.ExperimentParams(out=tmp_path, input=tmp_path / "in").record()["n_lrgs"] is None


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 2000), max_points=st.integers(3, 300), seed=st.integers(0, 2**16))
def test_roc_points_thin_keep_ends_and_stay_monotone(n, max_points, seed):
    rng = np.random.default_rng(seed)
    labels = np.r_[0, 1, rng.integers(0, 2, n)]
    scores = rng.normal(size=len(labels)) + labels
    roc = em.roc_points(labels, scores, max_points=max_points)
    fpr, tpr = np.array(roc["fpr"]), np.array(roc["tpr"])
    assert len(fpr) <= max_points
    assert fpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)


def test_gate_metric_selects_by_gate_split_and_params():
    records = [
        {
            "id": "core_lr_auc[train-box10-raw_robust]",
            "gate": "core_lr_auc",
            "split": "train",
            "params": {"box": 10, "input": "raw_robust"},
            "value": 0.9,
            "ci": [0.8, 0.95],
            "n": 10,
            "n_groups": 5,
            "verdict": "fail",
            "threshold": 0.65,
            "direction": "max",
            "message": "",
        },
        {
            "id": "core_lr_auc[train-box10-model]",
            "gate": "core_lr_auc",
            "split": "train",
            "params": {"box": 10, "input": "model"},
            "value": 0.6,
            "ci": [0.5, 0.7],
            "n": 10,
            "n_groups": 5,
            "verdict": "inconclusive",
            "threshold": 0.65,
            "direction": "max",
            "message": "m",
        },
    ]
    m = em.gate_metric(records, "core_lr_auc", "train", 3, box=10, input="model")
    assert m["value"] == 0.6 and m["seed"] == 3 and m["source"] == "core_lr_auc[train-box10-model]"
    assert m["verdict"] == "inconclusive"
    assert em.gate_metric(records, "core_lr_auc", "test", 3) is None
    assert em.strip_extra([dict(records[0], extra={"x": 1})]) == [records[0]]


def test_stratified_bins_from_gate_extra():
    rec = {
        "gate": "stratified_auroc",
        "params": {"by": "theta_e"},
        "extra": {
            "bins": [
                {"bin": "0-1arcsec", "n_pos": 3, "n_neg": 9, "auc": None, "ci": None},
                {"bin": "1-1.5arcsec", "n_pos": 9, "n_neg": 9, "auc": 0.8, "ci": [0.7, 0.9]},
            ]
        },
    }
    out = em.stratified_bins([rec, {"gate": "detection_auroc", "params": {}}])
    assert list(out) == ["theta_e"]
    assert out["theta_e"][1] == {"bin": "1-1.5arcsec", "value": 0.8, "ci": [0.7, 0.9], "n_pos": 9, "n_neg": 9}


def test_examples_npz_is_deterministic_and_loads_without_pickle():
    arrays = {"stamp": np.arange(12, dtype=np.float32).reshape(1, 3, 2, 2), "arc_mask": np.eye(2, dtype=bool)[None]}
    a, b = em.npz_bytes(arrays), em.npz_bytes(dict(reversed(list(arrays.items()))))
    assert a == b
    with np.load(io.BytesIO(a), allow_pickle=False) as npz:
        assert sorted(npz.files) == ["arc_mask", "stamp"]
        np.testing.assert_array_equal(npz["stamp"], arrays["stamp"])


def test_paired_input_simulates_once_and_reuses(tmp_path):
    p = ep.ExperimentParams(out=tmp_path, n_lrgs=3, injections_per_lrg=(1, 1), progress=False)
    timer = es.Timer()
    path = es.paired_input(p, 5, timer)
    assert path == tmp_path / "data" / "seed5" / "paired_input"
    files = sorted(path.rglob("*.parquet"))
    assert files and "seed5/simulate" in timer.stages
    stamp = {f: f.stat().st_mtime_ns for f in files}
    assert es.paired_input(p, 5, es.Timer()) == path
    assert {f: f.stat().st_mtime_ns for f in files} == stamp
    given_input = ep.ExperimentParams(out=tmp_path, input=tmp_path / "survey")
    assert es.paired_input(given_input, 0, timer) == tmp_path / "survey"


def test_command_rejects_bad_arguments(tmp_path, capsys):
    assert cli_main(["experiment", "--out", str(tmp_path / "o"), "--seeds", "0"]) == 2
    assert "'seeds' must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_chance_smd_sentence_uses_pool_sizes():
    from shortcutgates.experiment.text import _chance_smd

    results = {"seeds": [{"datasets": {"unpaired": {"splits": {"train": {"n_pos": 50, "n_neg": 50}}}}}]}
    assert f"standard error {math.sqrt(2 / 50):.2f}" in _chance_smd(results)


def test_demo_params_and_overrides(tmp_path):
    from shortcutgates.experiment.demo import DEMO, demo_params

    p = demo_params(tmp_path)
    assert (p.n_lrgs, p.epochs, p.n_boot, p.input) == (DEMO["n_lrgs"], DEMO["epochs"], DEMO["n_boot"], None)
    assert [c.name for c in p.configs] == [c.name for c in ep.CONFIGURATIONS]
    q = demo_params(tmp_path, n_lrgs=50, epochs=1, seed=4)
    assert (q.n_lrgs, q.epochs, q.seed_list()) == (50, 1, [4])


def test_demo_command_rejects_bad_sizes(tmp_path, capsys):
    assert cli_main(["demo", "--out", str(tmp_path / "d"), "--epochs", "0"]) == 2
    assert "'epochs' must be >= 1" in capsys.readouterr().err


def test_command_line_maps_to_params(tmp_path):
    from shortcutgates.cli import build_parser

    argv = [
        "experiment",
        "--out",
        str(tmp_path),
        "--epochs",
        "2",
        "--seed",
        "3",
        "--seeds",
        "2",
        "--input",
        str(tmp_path / "survey"),
        "--n-boot",
        "600",
        "--max-minutes",
        "1.5",
    ]
    p = ex.params_from_args(build_parser(argv).parse_args(argv))
    assert (p.out, p.epochs, p.seed_list(), p.input, p.n_boot, p.max_minutes) == (
        tmp_path,
        2,
        [3, 4],
        tmp_path / "survey",
        600,
        1.5,
    )
    with pytest.raises(ValueError, match="--n-lrgs .* cannot be used with --input"):
        ex.params_from_args(build_parser(argv).parse_args(argv + ["--n-lrgs", "12"]))
    sim = argv[:3] + ["--n-lrgs", "12"]
    assert ex.params_from_args(build_parser(sim).parse_args(sim)).n_lrgs == 12
    defaults = ex.params_from_args(build_parser(argv[:3]).parse_args(argv[:3]))
    assert (defaults.n_lrgs, defaults.epochs, defaults.input) == (
        ep.ExperimentParams(out=tmp_path).n_lrgs,
        ep.ExperimentParams(out=tmp_path).epochs,
        None,
    )


def test_e5_table_lists_failed_primary_gates_and_seed_counts():
    from shortcutgates.experiment.report import e5_table

    def config(failed):
        return {
            "dataset": "unpaired-hn-core-shuffle",
            "primary_failed": failed,
            "experiments": {
                "E2": {"value": 0.97, "ci": [0.95, 0.99], "tpr_at_fpr": {"0.01": {"value": 0.5, "ci": [0.4, 0.6]}}}
            },
            "unseen": {"point_source": {"value": 0.52, "ci": [0.48, 0.56 if failed else 0.62]}},
        }

    results = {
        "params": {"configs": [{"name": "residual+hn"}]},
        "seeds": [
            {"seed": 0, "configs": {"residual+hn": config([])}},
            {"seed": 1, "configs": {"residual+hn": config(["arc_masked_auroc[test_paired]"])}},
        ],
    }
    header, rows = e5_table(results)
    assert rows[0][header.index("primary gates not passed")] == "none"
    assert rows[1][header.index("primary gates not passed")] == "arc_masked_auroc[test_paired]"
    assert rows[0][header.index("TPR @ 1e-2")] == "0.500 [0.400, 0.600]"
    point = header.index("point source 30% (AUROC ≤ 0.60)")
    assert rows[0][point] == "0.520 [0.480, 0.620] inconclusive"
    assert rows[1][point] == "0.520 [0.480, 0.560] held"
    assert rows[2][-1] == "every primary gate passed in 1 of 2 seeds"
    assert rows[2][point] == "held in 1 of 2 seeds"


def test_recipe_option_replaces_or_drops_e5():
    assert [c.name for c in ep.recipe_configs("none")] == ["raw_robust", "residual", "residual+dropout"]
    swap = ep.recipe_configs("core,shuffle,swap", "swap=0.25")[-1]
    assert (swap.hard_negatives, swap.hard_negative_mix) == ("core,shuffle,swap", "swap=0.25")
    assert swap.dataset == "unpaired-hn-core-shuffle-swap-swap0.25"
    with pytest.raises(ValueError, match="unknown kind"):
        ep.recipe_configs("core,bogus")
