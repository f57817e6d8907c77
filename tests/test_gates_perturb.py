"""Perturbations of the model gates and the extra probe features, on small arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shortcutgates.gates.model_gates import (
    CORE_RADIUS_PX, arc_mask_radii, arc_shuffled, control_positions, transplant_pairs,
)
from shortcutgates.gates.perturb import (
    annulus_masks, box_slice, fill_matched_noise, mask_annulus, shuffle_rings, transplant_core,
)
from shortcutgates.gates.probes import (
    ProbeError, arc_radii, central_box, metadata_features, ring_features, standardised_mean_difference,
)
from shortcutgates.preprocess import annulus_mask, ring_index


def _noise(n=4, size=64, seed=0, sigma=2.0, level=5.0):
    rng = np.random.default_rng(seed)
    return (level + sigma * rng.standard_normal((n, 3, size, size))).astype(np.float32)


def test_matched_noise_has_the_outer_annulus_statistics():
    images = _noise(n=2, sigma=2.0, level=5.0)
    images[:, :, 24:40, 24:40] += 100.0  # a bright centre the fill must not copy
    mask = annulus_masks((64, 64), np.array([0.0, 0.0]), np.array([10.0, 10.0]))
    out = fill_matched_noise(images, mask, np.random.default_rng(1))
    filled = out[:, :, mask[0]]
    assert np.median(filled) == pytest.approx(5.0, abs=0.2)
    assert filled.std() == pytest.approx(2.0, rel=0.1)
    np.testing.assert_array_equal(out[:, :, ~mask[0]], images[:, :, ~mask[0]])


def test_mask_annulus_touches_only_the_annulus_and_is_seeded():
    images = _noise(n=3)
    r_in, r_out = np.array([4.0, 6.0, 8.0]), np.array([7.0, 9.0, 11.0])
    a = mask_annulus(images, r_in, r_out, np.random.default_rng(5))
    b = mask_annulus(images, r_in, r_out, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    masks = annulus_masks((64, 64), r_in, r_out)
    for i in range(3):
        np.testing.assert_array_equal(a[i][:, ~masks[i]], images[i][:, ~masks[i]])
        assert not np.array_equal(a[i][:, masks[i]], images[i][:, masks[i]])


def test_transplant_core_replaces_exactly_the_central_box():
    rec, don = _noise(2, seed=1), _noise(2, seed=2)
    out = transplant_core(rec, don, 10)
    np.testing.assert_array_equal(central_box(out, 10), central_box(don, 10))
    ys, xs = box_slice((64, 64), 10)
    keep = np.ones((64, 64), bool)
    keep[ys, xs] = False
    np.testing.assert_array_equal(out[..., keep], rec[..., keep])


def test_shuffle_rings_keeps_every_ring_and_destroys_shape():
    images = np.zeros((2, 3, 64, 64), np.float32)
    images[:, :, 32, 40:44] = [[[1, 2, 3, 4]]]  # an arc-like segment along +x
    out = shuffle_rings(images, np.random.default_rng(0))
    rings = ring_index(64, 64)
    for k in range(rings.max() + 1):
        np.testing.assert_allclose(np.sort(out[..., rings == k], -1), np.sort(images[..., rings == k], -1))
    assert not np.array_equal(out, images)
    np.testing.assert_array_equal(out[:, 0] != 0, out[:, 2] != 0)  # one permutation for all bands


def test_arc_shuffled_keeps_the_control():
    rng = np.random.default_rng(0)
    control = _noise(2)
    arc = np.zeros_like(control)
    stamps = control + arc
    np.testing.assert_allclose(arc_shuffled(stamps, control, rng), control, atol=1e-5)


def test_arc_mask_radii_never_mask_the_core():
    labels = np.array([1, 1, 0, 0, 0])
    theta = np.array([2.0, 9.0, np.nan, np.nan, np.nan])
    r_in, r_out = arc_mask_radii(theta, labels, np.random.default_rng(0))
    assert (r_in >= CORE_RADIUS_PX - 1e-12).all()
    assert r_in[1] == pytest.approx(6.5) and r_out[1] == pytest.approx(11.5)
    assert set(np.round(r_out[2:] - 2.5, 6)) <= {2.0, 9.0}  # negatives draw θ_E from the positives
    with pytest.raises(ProbeError, match="theta_e"):
        arc_mask_radii(np.full(5, np.nan), labels, np.random.default_rng(0))


def test_transplant_pairs_use_other_lrgs():
    labels = np.array([0, 0, 0, 1, 1, 0])
    groups = np.array(["a", "b", "c", "a", "d", "e"])
    rec, pdon, ndon = transplant_pairs(labels, groups, np.random.default_rng(0))
    assert (labels[rec] == 0).all() and (labels[pdon] == 1).all() and (labels[ndon] == 0).all()
    assert (groups[rec] != groups[pdon]).all() and (groups[rec] != groups[ndon]).all()


def test_control_positions_pair_each_positive_with_its_lrg():
    labels = np.array([1, 0, 1, 1, 0])
    groups = np.array(["a", "a", "b", "a", "c"])
    pos, ctrl = control_positions(labels, groups)
    assert pos.tolist() == [0, 3] and ctrl.tolist() == [1, 1]


# --- probe features ----------------------------------------------------------------------------
def test_ring_features_see_an_arc_in_its_ring_only():
    images = _noise(2, sigma=1.0, level=0.0)
    images[1, :, 32, 40] += 50.0  # a point at r = 8 px
    f = ring_features(images, 7.0, 10.0)
    assert f.shape == (2, 3 * 3 * 3)
    assert (f[1] >= f[0] - 1e-6).sum() > (f[1] < f[0]).sum()
    g = ring_features(images, 12.0, 15.0)
    np.testing.assert_allclose(g[0].mean(), g[1].mean(), atol=0.5)


def test_arc_radii_from_positives_and_default():
    assert arc_radii(np.array([6.0, 8.0, np.nan]), width=2.0)[0] == pytest.approx(4.1)
    assert arc_radii(np.array([np.nan])) == (4.0, 12.0)
    with pytest.raises(ProbeError, match="empty"):
        arc_radii(np.array([30.0]), r_max=20.0)


def test_standardised_mean_difference():
    labels = np.r_[np.ones(1000), np.zeros(1000)]
    rng = np.random.default_rng(0)
    values = np.r_[rng.normal(0.5, 1, 1000), rng.normal(0.0, 1, 1000)]
    assert standardised_mean_difference(labels, values) == pytest.approx(0.5, abs=0.08)
    assert standardised_mean_difference(labels, np.ones(2000)) == 0.0
    assert standardised_mean_difference(labels, labels) == np.inf


def test_metadata_features_flag_one_class_missingness():
    frame = pd.DataFrame({"a": [1.0, 2.0, np.nan, np.nan], "b": [3.0, 3.0, 3.0, 3.0]})
    f = metadata_features(frame, ["a", "b"])
    assert f.shape == (4, 2)  # 'a' imputed + its missing indicator; constant 'b' dropped
    with pytest.raises(ProbeError, match="constant"):
        metadata_features(frame, ["b"])


def test_annulus_of_matched_noise_is_outside_probe_radii():
    # the normalisation annulus (noise reference) starts at 20 px: beyond any arc mask or core box
    assert not annulus_mask(64, 64)[ring_index(64, 64) < 20].any()


# --- properties --------------------------------------------------------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from shortcutgates.gates.context import cap_rows, dedup_negatives  # noqa: E402


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([8, 9, 16]))
def test_shuffle_rings_is_a_permutation_within_rings(seed, size):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(2, 3, size, size)).astype(np.float32)
    out = shuffle_rings(images, np.random.default_rng(seed))
    rings = ring_index(size, size)
    for k in np.unique(rings):
        np.testing.assert_array_equal(np.sort(out[..., rings == k], -1), np.sort(images[..., rings == k], -1))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(20, 300), st.integers(20, 400))
def test_cap_rows_never_splits_an_lrg_and_respects_the_cap(seed, n, cap):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, max(2, n // 3), n)
    labels = (groups % 2).astype(int)  # an LRG has one label (unpaired)
    pos = cap_rows(labels, groups, cap, seed)
    if n <= cap:
        assert len(pos) == n
    else:
        assert len(pos) <= cap + 1  # each label's quota is rounded
    for g in np.unique(groups[pos]):
        assert (groups[pos] == g).sum() == (groups == g).sum()  # whole LRGs only
    np.testing.assert_array_equal(pos, np.unique(pos))


def test_dedup_negatives_keeps_positives_and_one_of_each_control():
    a, b = np.zeros((3, 8, 8), np.float32), np.ones((3, 8, 8), np.float32)
    images = np.stack([a, a, b, a, a])
    labels = np.array([0, 0, 0, 1, 1])
    np.testing.assert_array_equal(dedup_negatives(labels, images), [True, False, True, True, True])
