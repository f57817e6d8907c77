"""The ``coverage`` cells of the calibration harness: interval coverage on synthetic data of known truth
(the former ``benchmarks/coverage_intervals.py``, same seeds and arithmetic)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from shortcutgates.calibrate import coverage as cv
from shortcutgates.calibrate.harness import Cell
from shortcutgates.calibrate.profiles import COVERAGE_SEEDS, make_profile
from shortcutgates.gates.records import GateConfig


@pytest.mark.parametrize("design", cv.DESIGNS)
def test_the_synthetic_features_have_the_population_auc(design):
    """The best linear rule (the sum of the signal features) separates the classes with the cell's AUC, in
    both designs (paired: each feature has variance 2 and the shift is √2 larger)."""
    delta = math.sqrt(2 / cv.N_SIGNAL) * norm.ppf(0.65)
    x, labels, groups = cv.make_features(20000, 12, cv.N_SIGNAL, delta, design, seed=3)
    assert roc_auc_score(labels, x[:, : cv.N_SIGNAL].sum(axis=1)) == pytest.approx(0.65, abs=0.01)
    assert len(np.unique(groups)) == 20000 and labels.mean() == 0.5


def test_scorer_truth_is_the_population_auroc_and_a_zero_gap():
    assert cv.truth("scorer-paired", "auroc", 0.75) == 0.75
    assert cv.truth("scorer-unpaired", "auroc_gap", 0.75) == 0.0
    assert cv.truth("probe-paired", "cv_auc[blend]", 0.65) is None
    with pytest.raises(ValueError, match="probe-<design> or scorer-<design>"):
        cv.run_coverage_seed(Cell("coverage", "probe-matched", 0.6, 100), 0, GateConfig())


def test_the_coverage_profile_runs_through_the_harness_and_writes_its_tables(tmp_path):
    from shortcutgates.calibrate.report import write_report
    from shortcutgates.calibrate.runner import load_records, run_profile

    profile = make_profile("coverage")
    assert profile.n_boot == GateConfig().n_boot and {n for _, n in profile.cells} == {COVERAGE_SEEDS}
    assert {c.problem for c, _ in profile.cells} == {
        "probe-unpaired",
        "probe-paired",
        "scorer-unpaired",
        "scorer-paired",
    }
    cells = ((Cell("coverage", "probe-paired", 0.65, 100), 3), (Cell("coverage", "scorer-unpaired", 0.75, 100), 3))
    run_profile(profile._replace(cells=cells), tmp_path, progress=False)
    records = load_records(tmp_path)
    probe = records[(records["problem"] == "probe-paired") & (records["seed"] == 1)].set_index("case")
    expected = cv.probe_seed(100, 0.65, "paired", 1, GateConfig(n_boot=1000))
    for method in ("oof", "refit", "blend"):
        row = probe.loc[f"cv_auc[{method}]"]
        assert [row["value"], row["lo"], row["hi"]] == pytest.approx([expected["value"], *expected[method]])
    write_report(records, tmp_path)
    text = (tmp_path / "calibration.md").read_text()
    assert "| paired, population AUC 0.65 | 100 | 3 |" in text and "| unpaired, AUROC 0.75 | 100 | 3 |" in text
    summary = pd.read_csv(tmp_path / "summary.csv")
    scorer = summary[(summary["kind"] == "coverage") & (summary["case"] == "auroc")].iloc[0]
    assert scorer["truth"] == 0.75 and scorer["truth_source"] == "analytic" and scorer["n_intervals"] == 3
