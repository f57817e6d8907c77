"""The faster data-gate code gives the very same floats as the code it replaced (issue 22).

Batched bootstrap metrics, threaded probe refits and threaded stamp medians are speed changes only:
each test compares the new path with the one-at-a-time computation it replaced (kept here as the
reference) with exact equality, so the intervals, and hence their measured coverage, are unchanged.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from shortcutgates import parallel
from shortcutgates.model import preprocess
from shortcutgates.gates import features, probes
from shortcutgates.stats import bootstrap_counts, grouped_bootstrap, weighted_auroc_metric, weighted_aurocs


def _draws(n_units: int, n_boot: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([np.bincount(rng.integers(0, n_units, n_units), minlength=n_units) for _ in range(n_boot)])


def _one_auc(labels, scores, weights) -> float:
    """The per-resample AUROC the refitted probe used before (argsort, tie buckets, bincount)."""
    order = np.argsort(scores, kind="mergesort")
    s, y, w = scores[order], labels[order], weights[order]
    bucket = np.cumsum(np.r_[True, s[1:] != s[:-1]]) - 1
    wp, wn = np.bincount(bucket, w * (y == 1)), np.bincount(bucket, w * (y == 0))
    if wp.sum() <= 0 or wn.sum() <= 0:
        return np.nan
    below = np.cumsum(wn) - wn
    return float((wp * (below + 0.5 * wn)).sum() / (wp.sum() * wn.sum()))


@pytest.fixture
def sample():
    rng = np.random.default_rng(7)
    n = 301
    labels = rng.integers(0, 2, n)
    units = rng.integers(0, 150, n)
    scores = np.round(rng.normal(size=n) + labels, 1)  # many ties
    weights = _draws(150, 40, 1)[:, units].astype(np.float64)
    weights[0, labels == 1] = 0  # a resample that lost the positives
    return labels, units, scores, weights


def test_batched_aurocs_are_the_same_floats_as_one_at_a_time(sample):
    labels, _, scores, weights = sample
    metric = weighted_auroc_metric(labels, scores)
    batched = weighted_aurocs(labels, scores, weights)
    assert np.isnan(batched[0])
    one = [metric(None, None, w) for w in weights[1:]]
    assert batched[1:].tolist() == one  # exact, not approximate
    assert batched[1] == pytest.approx(roc_auc_score(labels, scores, sample_weight=weights[1]), abs=1e-12)
    per_row = np.random.default_rng(0).normal(size=weights.shape).round(1)  # each resample its own scores
    refit = weighted_aurocs(labels, per_row, weights)
    reference = [_one_auc(labels, per_row[b], weights[b]) for b in range(len(weights))]
    np.testing.assert_array_equal(refit, reference)


def test_bootstrap_with_a_batched_metric_equals_the_resample_loop(sample, monkeypatch):
    labels, units, scores, _ = sample
    metric = weighted_auroc_metric(labels, scores)

    def one_by_one(lab, sc, w=None):  # the same metric without its batch
        return metric(lab, sc, w)

    for n_boot, threads in ((500, 1), (777, 3)):
        monkeypatch.setattr(parallel, "THREADS", threads)
        fast = grouped_bootstrap(labels, scores, units, metric=metric, n_boot=n_boot, seed=3)
        slow = grouped_bootstrap(labels, scores, units, metric=one_by_one, n_boot=n_boot, seed=3)
        assert fast == slow


@pytest.mark.parametrize("case", ["plain", "nan_values", "constant_equal", "constant_apart"])
def test_batched_smd_is_the_same_float_as_the_one_resample_smd(sample, case):
    labels, _, _, weights = sample
    values = np.random.default_rng(2).normal(size=len(labels)) * 3 + 0.2 * labels
    if case == "nan_values":
        values[::5] = np.nan
    elif case == "constant_equal":
        values[:] = 1.5
    elif case == "constant_apart":
        values = np.where(labels == 1, 2.0, 1.0)
    metric = features.smd_metric(labels, values)
    batched = metric.batch(weights)
    reference = []
    for w in weights:
        try:
            reference.append(features.standardised_mean_difference(labels, values, w))
        except ValueError:
            reference.append(np.nan)
    np.testing.assert_array_equal(batched, reference)
    assert metric(None, None, None) == features.standardised_mean_difference(labels, values) or (
        np.isnan(metric(None, None, None)) and np.isnan(features.standardised_mean_difference(labels, values))
    )
    with pytest.raises(ValueError):
        metric(None, None, weights[0])  # no positive weight


def test_refitted_probe_is_the_same_on_any_number_of_threads(monkeypatch):
    rng = np.random.default_rng(0)
    n = 240
    labels, groups = np.tile([0, 1], n // 2), np.repeat(np.arange(n // 2), 2)
    features = rng.normal(size=(n, 12)) + 0.3 * labels[:, None]
    config = SimpleNamespace(n_splits=5, seed=1, n_boot=500, level=0.95)
    runs = []
    for threads in (1, 3):
        monkeypatch.setattr(parallel, "THREADS", threads)
        runs.append(probes.cv_auc_resamples(features, labels, groups, config))
    assert runs[0].value == runs[1].value
    np.testing.assert_array_equal(runs[0].held_out, runs[1].held_out)
    np.testing.assert_array_equal(runs[0].refit, runs[1].refit)
    assert len(runs[0].refit) == 1000  # REFIT_RESAMPLES: four batches, on several threads
    gbm = []
    for threads in (1, 3):
        monkeypatch.setattr(parallel, "THREADS", threads)
        gbm.append(probes.grouped_cv_gbm_scores(features, labels, groups, seed=2))
    np.testing.assert_array_equal(gbm[0], gbm[1])


def test_stamp_medians_in_threaded_batches_equal_one_pass(monkeypatch):
    rng = np.random.default_rng(1)
    images = (rng.normal(size=(45, 3, 32, 32)) * rng.uniform(0.5, 5, (45, 3, 1, 1))).astype(np.float32)
    monkeypatch.setattr(parallel, "THREADS", 3)
    monkeypatch.setattr(preprocess, "MEDIAN_CHUNK", 4)  # 12 batches
    median, mad = preprocess.annulus_median_mad(images)
    pix = images[..., preprocess.annulus_mask(32, 32)]
    ref_median = np.median(pix, axis=-1, keepdims=True)
    np.testing.assert_array_equal(median[..., 0], ref_median)
    np.testing.assert_array_equal(mad[..., 0], np.median(np.abs(pix - ref_median), axis=-1, keepdims=True))
    rings = preprocess.ring_index(32, 32)
    reference = np.stack([np.median(images[..., rings == k], axis=-1) for k in range(rings.max() + 1)], axis=-1)
    np.testing.assert_array_equal(preprocess.azimuthal_median_profile(images), reference)
    np.testing.assert_array_equal(preprocess.azimuthal_median_profile(images[0]), reference[0])


@pytest.mark.parametrize("n_units", [1, 7, 150, 1431])
def test_bootstrap_counts_in_one_draw_equal_one_draw_per_resample(n_units):
    a, b = np.random.default_rng(11), np.random.default_rng(11)
    np.testing.assert_array_equal(bootstrap_counts(a, n_units, 60), _draws_from(b, n_units, 60))
    assert a.integers(0, 10**9) == b.integers(0, 10**9)  # the generator is left in the same state


def _draws_from(rng, n_units: int, n_boot: int) -> np.ndarray:
    return np.stack([np.bincount(rng.integers(0, n_units, n_units), minlength=n_units) for _ in range(n_boot)])
