"""Lens-search metrics (TPR at FPR 1e-2 / 1e-3 with LRG-bootstrap intervals) and their figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hostile_inputs import hand_manifest, write_manifest
from shortcutgates.experiment import figures as figs
from shortcutgates.experiment import lens_search as ls
from shortcutgates.stats import tpr_at_fpr


def _scores(n_pos: int, n_neg: int, shift: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    scores = np.r_[rng.normal(shift, 1, n_pos), rng.normal(0, 1, n_neg)]
    groups = np.array([f"lrg{i}" for i in range(len(labels))])
    return labels, scores, groups


def test_tpr_metric_equals_the_unweighted_rate_and_counts_weights_as_copies():
    labels, scores, _ = _scores(300, 3000, 2.0)
    for fpr in (1e-2, 1e-3):
        assert ls.tpr_metric(fpr)(labels, scores) == tpr_at_fpr(labels, scores, fpr)
    w = np.r_[np.full(300, 2), np.ones(3000, int)]  # every positive drawn twice: same rate
    assert ls.tpr_metric(1e-2)(labels, scores, w) == pytest.approx(tpr_at_fpr(labels, scores, 1e-2))
    gone = np.r_[np.ones(300, int), np.zeros(3000, int)]  # no negative in the resample
    assert np.isnan(ls.tpr_metric(1e-2)(labels, scores, gone))


def test_intervals_cover_the_estimate_and_flag_too_few_negatives():
    labels, scores, groups = _scores(300, 2000, 2.5)
    out = ls.tpr_at_fpr_intervals(labels, scores, groups, n_boot=300, seed=0)
    lo, hi = out["0.01"]["ci"]
    assert lo <= out["0.01"]["value"] <= hi and hi - lo > 0
    assert out["0.01"]["note"] == "" and out["0.01"]["n_neg_needed"] == 1000
    assert out["0.001"]["n_neg_needed"] == 10000 and out["0.001"]["note"].startswith(
        "2000 negatives < 10/FPR = 10000: at most 2 negative(s) above"
    )


def test_with_65_negatives_both_rates_coincide_and_both_are_flagged():
    labels, scores, groups = _scores(300, 65, 2.0)
    out = ls.tpr_at_fpr_intervals(labels, scores, groups, n_boot=200, seed=0)
    assert out["0.01"]["value"] == out["0.001"]["value"]  # no negative may lie above the threshold at either rate
    assert all(out[k]["note"].startswith("65 negatives < 10/FPR = ") for k in ("0.01", "0.001"))


def test_score_histogram_and_extremes():
    labels, scores, _ = _scores(20, 30, 1.0)
    h = ls.score_histogram(labels, scores, bins=10)
    assert sum(h["pos"]) == 20 and sum(h["neg"]) == 30 and len(h["edges"]) == 11
    frame = pd.DataFrame({"label": labels, "manifest_file": "m.parquet", "manifest_row": np.arange(50)})
    ext = ls.extremes(frame, scores, k=3)
    fp = [e["score"] for e in ext["false_positives"]]
    missed = [e["score"] for e in ext["missed_lenses"]]
    assert fp == sorted(scores[labels == 0], reverse=True)[:3]
    assert missed == sorted(scores[labels == 1])[:3]
    assert all(labels[e["manifest_row"]] == 0 for e in ext["false_positives"])


def test_gri_colour_puts_z_in_red_and_g_in_blue():
    rng = np.random.default_rng(0)
    images = rng.normal(0, 1, (2, 3, 32, 32)).astype(np.float32)
    images[0, 2, 12:20, 12:20] += 200  # a z-only source: red
    images[1, 0, 12:20, 12:20] += 200  # a g-only source: blue
    rgb = ls.gri_rgb(images)
    assert rgb.shape == (2, 32, 32, 3) and rgb.min() >= 0 and rgb.max() <= 1
    centre = rgb[:, 16, 16]
    assert centre[0].argmax() == 0 and centre[1].argmax() == 2


def test_figures_and_table_from_results(tmp_path):
    part = write_manifest(hand_manifest(12), tmp_path / "m")  # the parquet file
    frame = pd.read_parquet(part)
    labels = frame["label"].to_numpy()
    scores = np.linspace(0, 1, len(frame))
    scored = pd.DataFrame({"label": labels, "manifest_file": str(part), "manifest_row": np.arange(len(frame))})
    groups = frame["ra"].astype(str).to_numpy()
    roc = {
        "fpr": [0, 0.01, 0.5, 1],
        "tpr": [0, 0.2, 0.9, 1],
        "hist": ls.score_histogram(labels, scores),
        "extremes": ls.extremes(scored, scores, k=2, base=tmp_path),
    }
    assert roc["extremes"]["false_positives"][0]["manifest_file"] == "m/part-0000.parquet"  # relative: reproducible
    metric = {
        "value": 0.9,
        "ci": [0.8, 0.95],
        "tpr_at_fpr": ls.tpr_at_fpr_intervals(labels, scores, groups, n_boot=100),
    }
    results = {"seeds": [{"configs": {"raw_robust": {"roc": {"E2": roc}, "experiments": {"E2": metric}}}}]}
    made = ls.lens_search_figures(results, tmp_path, tmp_path / "figs")
    assert set(made) == {"score_hist", "extremes"}
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in made.values())
    header, rows = ls.tpr_table(results)
    assert header[3:5] == ["TPR @ FPR 1e-2", "TPR @ FPR 1e-3"]
    assert (
        rows[0][:3] == ["raw_robust", "E2", "0.900 [0.800, 0.950]"]
        and rows[0][5] == f"{(labels == 0).sum()} negatives, fewer than 10/FPR: not an estimate at FPR 0.01, 0.001"
    )
    path = figs.roc_figure({"E2": {"raw_robust": dict(roc, value=0.9, ci=[0.8, 0.95])}}, tmp_path / "roc.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_missing_data_leaves_the_extremes_out(tmp_path):
    gone = {"false_positives": [{"manifest_file": str(tmp_path / "gone.parquet"), "manifest_row": 0, "score": 1.0}]}
    results = {"seeds": [{"configs": {"c": {"roc": {"E2": {"extremes": gone}}}}}]}
    assert ls.lens_search_figures(results, tmp_path, tmp_path / "figs") == {}
