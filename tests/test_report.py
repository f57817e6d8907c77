"""The report renderer on results objects built here (no training): verdicts, seeds, figures, files."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from shortcutgates.experiment import criteria as rc
from shortcutgates.experiment import report as rp
from shortcutgates.experiment import figures as figs
from shortcutgates.experiment import text as rt
from shortcutgates.cli import main as cli_main

CONFIGS = ("raw_robust", "residual")


def metric(value, lo, hi, n_groups=100, seed=0, **kw):
    return {
        "metric": "auroc",
        "value": value,
        "ci": [lo, hi],
        "n": 2 * n_groups,
        "n_groups": n_groups,
        "seed": seed,
        "source": "test",
        **kw,
    }


def gate(gid, name, value, ci, verdict, threshold=0.6, direction="max", split="test", **params):
    return {
        "id": gid,
        "gate": name,
        "params": params,
        "split": split,
        "value": value,
        "ci": ci,
        "threshold": threshold,
        "direction": direction,
        "verdict": verdict,
        "n": 200,
        "n_groups": 100,
        "message": "",
    }


def config_record(seed, e2, e4, gap, e3=None):
    e3 = e2 - gap if e3 is None else e3
    return {
        "preprocess": "x",
        "core_dropout": None,
        "training": {},
        "experiments": {
            "E1": metric(0.99, 0.98, 1.0, seed=seed),
            "E2": metric(e2, e2 - 0.04, e2 + 0.04, seed=seed),
            "E3": metric(e3, e3 - 0.05, e3 + 0.05, seed=seed),
            "E3_gap": metric(gap, max(gap - 0.03, 0), gap + 0.03, seed=seed),
            "E4": metric(e4, e4 - 0.05, e4 + 0.05, seed=seed),
            "E1_core_lr": metric(0.9, 0.85, 0.95, seed=seed),
        },
        "roc": {k: {"fpr": [0.0, 0.1, 1.0], "tpr": [0.0, 0.8, 1.0]} for k in ("E1", "E2", "E3")},
        "gates": [
            gate("arc_masked_auroc[test]", "arc_masked_auroc", 0.55, [0.5, 0.58], "pass"),
            gate("core_transplant_auroc[test]", "core_transplant_auroc", 0.7, [0.65, 0.75], "fail"),
        ],
        "stratified": {
            "theta_e": [
                {"bin": "0-1arcsec", "value": 0.7, "ci": [0.6, 0.8], "n_pos": 20, "n_neg": 50},
                {"bin": "1-1.5arcsec", "value": 0.9, "ci": [0.85, 0.95], "n_pos": 20, "n_neg": 50},
                {"bin": "2-10arcsec", "value": None, "ci": None, "n_pos": 1, "n_neg": 50},
            ]
        },
    }


def make_results(seeds=(0,)):
    runs = []
    for s in seeds:
        runs.append(
            {
                "seed": s,
                "datasets": {
                    "unpaired": {
                        "path": "data/unpaired",
                        "splits": {"train": {"n": 400, "n_pos": 200, "n_neg": 200, "n_lrgs": 400}},
                    }
                },
                "data_gates": {
                    "unpaired": [
                        gate(
                            "lrg_leakage[train-pos-neg]",
                            "lrg_leakage",
                            0,
                            None,
                            "pass",
                            0,
                            split="train",
                            pair="pos-neg",
                        ),
                        gate(
                            "property_balance[train-psfsize_r]",
                            "property_balance",
                            0.3,
                            [0.2, 0.4],
                            "fail",
                            0.1,
                            split="train",
                            prop="psfsize_r",
                        ),
                        gate(
                            "core_lr_auc[train-box10-raw_robust]",
                            "core_lr_auc",
                            0.95,
                            [0.93, 0.97],
                            "fail",
                            0.65,
                            split="train",
                            box=10,
                            input="raw_robust",
                        ),
                    ]
                },
                "configs": {
                    "raw_robust": config_record(s, 0.90 + 0.01 * s, 0.95, 0.01),
                    "residual": config_record(s, 0.82, 0.62 + 0.04 * s, 0.02),
                },
            }
        )
    results = {
        "schema": rp.RESULTS_SCHEMA,
        "package_version": "0",
        "command": "shortcutgates experiment --out x",
        "params": {
            "epochs": 1,
            "n_lrgs": 10,
            "seeds": list(seeds),
            "input": None,
            "configs": [{"name": c, "preprocess": c, "core_dropout": None} for c in CONFIGS],
        },
        "seeds": runs,
        "properties": {"psfsize_r": {"edges": [1.0, 1.2, 1.4, 1.6], "pos": [5, 10, 5], "neg": [10, 5, 5], "smd": 0.3}},
    }
    return results


def test_summarise_mean_and_std_over_seeds():
    s = rc.summarise(make_results(seeds=(0, 1, 2)))
    assert s["raw_robust"]["E2"]["mean"] == pytest.approx(0.91)
    assert s["raw_robust"]["E2"]["std"] == pytest.approx(0.01)
    assert s["raw_robust"]["E2"]["n_seeds"] == 3
    assert rc.summarise(make_results())["raw_robust"]["E2"]["std"] is None


@pytest.mark.parametrize(
    "value,ci,direction,expected",
    [
        pytest.param(0.90, [0.85, 0.95], "min", "held", id="interval_above"),
        pytest.param(0.82, [0.78, 0.86], "min", "inconclusive", id="interval_crosses"),
        pytest.param(0.70, [0.60, 0.85], "min", "failed", id="estimate_below"),
        pytest.param(0.60, [0.55, 0.64], "max", "held", id="max_interval_below"),
        pytest.param(0.66, [0.60, 0.70], "max", "failed", id="max_estimate_above"),
        pytest.param(None, None, "min", "missing", id="no_value"),
    ],
)
def test_decide(value, ci, direction, expected):
    m = None if value is None else {"value": value, "ci": ci}
    threshold = 0.80 if direction == "min" else 0.65
    assert rc.decide(m, threshold, direction) == expected


def test_criteria_disagreeing_seeds_are_inconclusive():
    crit = {(c.config, c.metric): c for c in rc.criteria(make_results(seeds=(0, 1)))}
    # residual E4: 0.62 [0.57, 0.67] (inconclusive) in seed 0, 0.66 (failed) in seed 1
    assert crit[("residual", "E4")].verdict == "inconclusive"
    assert "seed 0: inconclusive" in crit[("residual", "E4")].detail
    assert crit[("raw_robust", "E2")].verdict == "held"
    assert crit[("raw_robust", "E4")].verdict == "failed"
    assert crit[("raw_robust", "E3_gap")].verdict == "held"


def test_render_writes_markdown_html_and_figures_deterministically(tmp_path):
    results = make_results()
    a = rp.render_report(results, tmp_path, tmp_path / "a")
    b = rp.render_report(copy.deepcopy(results), tmp_path, tmp_path / "b")
    md = a.markdown.read_text()
    assert "| raw_robust | 0.990 [0.980, 1.000] | 0.900 [0.860, 0.940]" in md
    assert "E2 AUROC > 0.80 | 0.900 | held" in md
    assert sorted(p.name for p in a.figures) == [
        "core_lr.png",
        "properties.png",
        "roc.png",
        "shifts.png",
        "stratified.png",
    ]
    for fa, fb in zip(a.figures, b.figures):
        assert fa.read_bytes() == fb.read_bytes()
    assert a.markdown.read_bytes().replace(b"/a/", b"/b/") == b.markdown.read_bytes().replace(b"/a/", b"/b/")
    assert "![" in md and "figures/roc.png" in md
    html = a.html.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<img src='figures/roc.png'" in html


def test_multi_seed_table_shows_mean_and_std(tmp_path):
    files = rp.render_report(make_results(seeds=(0, 1)), tmp_path)
    md = files.markdown.read_text()
    assert "0.905 ± 0.007" in md and "mean ± std over 2 seeds" in md


def test_html_escapes_text(tmp_path):
    results = make_results()
    results["command"] = "shortcutgates experiment --out <x>&"
    html = rp.render_report(results, tmp_path).html.read_text()
    assert "--out &lt;x&gt;&amp;" in html and "<x>" not in html


def test_sample_size_answer_projects_interval_width():
    results = make_results()
    text = rt.answer_sample_size(results, rc.summarise(results), rc.criteria(results))
    # width 0.08 from 100 LRGs -> 0.08 * sqrt(100 / 600) = 0.033 at the proposal's 600 test LRGs
    assert "interval width 0.080 from 100 test LRGs" in text and "≈ 0.033 projected" in text


def test_answers_follow_the_measurements():
    results = make_results()
    answers = dict(rt.answers(results, rc.summarise(results), rc.criteria(results)))
    assert len(answers) == 6
    sound = answers["1. Is the unpaired design sound?"]
    assert "does NOT break the core shortcut" in sound and "below 0.65 for residual" in sound
    results["seeds"][0]["configs"]["raw_robust"]["experiments"]["E4"]["value"] = 0.55
    sound = rt.answer_sound(results, rc.summarise(results), rc.criteria(results))
    assert "alone keeps the core-LR AUC below 0.65" in sound
    assert "psfsize_r" in answers["2. Which property balance checks are critical?"]
    assert "core_transplant_auroc[test]" in answers["6. Risks?"]


def test_terminal_table_lists_every_configuration():
    table = rp.terminal_table(make_results())
    assert table.splitlines()[0].split() == ["config", "E1", "E2", "E3", "E3-E2", "E4", "core-LR"]
    assert any(line.startswith("residual ") for line in table.splitlines())
    assert "raw_robust: E4 core-LR AUC < 0.65: failed" in table


@pytest.mark.parametrize(
    "content,match",
    [
        pytest.param("{not json", "not valid JSON", id="bad_json"),
        pytest.param(
            json.dumps({"schema": "shortcutgates.report/1"}), "not an experiment results file", id="gate_report"
        ),
        pytest.param(json.dumps({"schema": rp.RESULTS_SCHEMA, "seeds": []}), "holds no run", id="no_seeds"),
    ],
)
def test_load_results_rejects_bad_files(tmp_path, content, match):
    path = tmp_path / "results.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        rp.load_results(path)


def test_report_command(tmp_path, capsys):
    (tmp_path / "results.json").write_text(json.dumps(make_results()))
    assert cli_main(["report", str(tmp_path / "results.json"), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "report.md").exists() and "report.html" in capsys.readouterr().out
    assert cli_main(["report", str(tmp_path / "missing.json")]) == 2


def test_stamps_figure_on_arrays(tmp_path):
    rng = np.random.default_rng(0)
    ex = {
        "stamp": rng.normal(size=(2, 3, 16, 16)),
        "control": rng.normal(size=(2, 3, 16, 16)),
        "residual": rng.normal(size=(2, 3, 16, 16)),
        "arc_mask": rng.random((2, 16, 16)) > 0.5,
    }
    path = figs.stamps_figure(ex, tmp_path / "s.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_no_stratified_figure_without_values(tmp_path):
    results = make_results()
    for c in CONFIGS:
        for b in results["seeds"][0]["configs"][c]["stratified"]["theta_e"]:
            b["value"] = None
    made = rp.make_figures(results, tmp_path, tmp_path / "figs")
    assert "stratified" not in made and "roc" in made


def test_core_lr_by_theta_e_is_reported_with_the_arc_in_box_caveat():
    results = make_results()
    results["seeds"][0]["configs"]["raw_robust"]["experiments"]["E4"]["theta_e_bins"] = [
        {"lo": 0.0, "hi": 1.0, "n_pos": 30, "auc": 0.97, "ci": [0.9, 1.0], "arc_inside_box": True},
        {"lo": 2.0, "hi": 10.0, "n_pos": 3, "auc": None, "ci": None, "arc_inside_box": True},
    ]
    text = rt.answer_sound(results, rc.summarise(results), rc.criteria(results))
    assert "raw_robust [0, 1)″ 0.970" in text and "[2, 10)″" not in text
    assert "reads arc light as well as the" in text
    assert rt._arc_in_box(make_results()) == ""


def test_interval_figure_shows_values_below_the_default_axis(tmp_path):
    assert figs._floor([0.2, None, float("nan"), 0.9], 0.4) == pytest.approx(0.15)
    assert figs._floor([0.5, 0.9], 0.4) == 0.4
    rows = [{"label": "a", "value": 0.1, "ci": [0.05, 0.2], "group": "g"}]
    assert figs.interval_figure(
        rows, tmp_path / "i.png", threshold=0.65, direction="max", title="t", ylabel="AUC"
    ).exists()


def test_alternatives_answer_lists_each_configurations_verdicts():
    results = make_results()
    text = rt.answer_alternatives(results, rc.summarise(results), rc.criteria(results))
    assert "No configuration held all three criteria" in text
    assert "raw_robust: E2 AUROC > 0.80 held, E4 core-LR AUC < 0.65 failed" in text
