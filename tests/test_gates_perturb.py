"""The paired counterfactual builders and the reference scorers, as pure functions."""

from __future__ import annotations

import numpy as np
import pytest

from shortcutgates.gates import perturb as pt
from shortcutgates.gates import reference_scorers as rs
from shortcutgates.gates.synthetic import ToySpec, arc_stamp, counter_image, make_images
from shortcutgates.preprocess import ring_index


@pytest.fixture(scope="module")
def toy():
    """Paired toy stamps: LRG + noise controls, arcs at θ_E 1.6–2.6″ plus a counter-image."""
    images, labels, groups, theta = make_images(ToySpec(n_lrgs=40, paired=True, core_fraction=0.05, seed=1))
    pairs = pt.find_pairs(labels, groups)
    return images[pairs.stamp], images[pairs.ctrl], groups[pairs.stamp]


def test_find_pairs_matches_each_positive_to_its_lrgs_control():
    labels = np.array([1, 0, 1, 1, 0, 1])
    groups = np.array(["a", "a", "a", "b", "c", "d"])
    pairs = pt.find_pairs(labels, groups)
    assert pairs.stamp.tolist() == [0, 2] and pairs.ctrl.tolist() == [1, 1]  # b and d have no control


def test_core_and_arc_parts_add_up_and_stay_on_their_side(toy):
    stamps, ctrls, _ = toy
    d = stamps - ctrls
    core, arc = pt.split_core_arc(d, pt.R_CORE_PX)
    inside = pt.core_mask(d.shape[-2:], pt.R_CORE_PX)
    assert np.array_equal(core + arc, d)
    assert not core[..., ~inside].any() and not arc[..., inside].any()


def test_ring_mean_keeps_every_rings_flux_and_loses_the_shape():
    arc = arc_stamp(64, 9.0, 0.3, 1.0, 100.0)[None]
    ring = pt.ring_mean(arc)
    rings = ring_index(64, 64)
    for k in (5, 8, 9, 10, 14):
        assert np.allclose(ring[0, :, rings == k].sum(axis=0), arc[0, :, rings == k].sum(axis=0), rtol=1e-5)
        assert np.ptp(ring[0, 1][rings == k]) < 1e-6  # constant round the ring
    assert ring[0, 1].max() < 0.4 * arc[0, 1].max()  # the arc's peak is spread out
    assert np.allclose(pt.ring_mean(ring), ring, atol=1e-7)


def test_ring_mean_of_the_arc_part_leaves_the_core_empty(toy):
    stamps, ctrls, _ = toy
    _, arc = pt.split_core_arc(stamps - ctrls, pt.R_CORE_PX)
    assert not pt.ring_mean(arc)[..., pt.core_mask(arc.shape[-2:], pt.R_CORE_PX)].any()


@pytest.mark.parametrize("seed", range(5))
def test_derangement_moves_every_arc_to_another_lrg(seed):
    groups = np.repeat(np.arange(12), np.random.default_rng(seed).integers(1, 4, 12)).astype(str)
    perm = pt.derangement(groups, np.random.default_rng(seed))
    assert sorted(perm.tolist()) == list(range(len(groups)))
    assert (groups[perm] != groups).all()


def test_derangement_needs_two_lrgs():
    with pytest.raises(ValueError, match="at least 2 LRGs"):
        pt.derangement(np.array(["a", "a", "a"]), np.random.default_rng(0))


def test_core_flux_share_is_lens_geometry():
    core = counter_image(64, 1.5, 0.0, 5.0)[None]
    far = arc_stamp(64, 12.0, 0.0, 1.0, 50.0)[None]
    shares = pt.core_flux_share(np.concatenate([core, far, np.zeros_like(core)]), pt.R_CORE_PX)
    assert shares[0] > 0.95 and shares[1] < 0.01 and np.isnan(shares[2])


def test_counterfactuals_are_controls_plus_parts_of_the_lensed_light(toy):
    stamps, ctrls, groups = toy
    cf = pt.build_counterfactuals(stamps, ctrls, groups, pt.R_CORE_PX, np.random.default_rng(0))
    d = stamps - ctrls
    assert np.allclose(cf.core_only + cf.arc_only - ctrls, stamps, atol=1e-4)
    assert np.allclose(cf.swapped - ctrls[cf.swap_to], d, atol=1e-4)
    assert (groups[cf.swap_to] != groups).all()
    for image in cf[:4]:
        assert image.shape == stamps.shape and image.dtype == np.float32
    # the ring-averaged counterfactual keeps the core part and each ring's arc flux
    inside = pt.core_mask(d.shape[-2:], pt.R_CORE_PX)
    assert np.allclose(cf.ring_averaged[..., inside], cf.core_only[..., inside])
    assert np.allclose((cf.ring_averaged - ctrls).sum(axis=(2, 3)), d.sum(axis=(2, 3)), rtol=1e-3, atol=1e-3)


# --- reference scorers ---------------------------------------------------------------------------
def test_the_arc_reader_is_blind_to_the_core_and_the_core_reader_to_the_arc(toy):
    stamps, ctrls, groups = toy
    core, arc = pt.split_core_arc(stamps - ctrls, pt.R_CORE_PX)
    assert np.array_equal(rs.arc_reader(ctrls + core), rs.arc_reader(ctrls))
    assert np.array_equal(rs.core_reader(ctrls + arc), rs.core_reader(ctrls))
    assert (rs.arc_reader(ctrls + arc) > rs.arc_reader(ctrls)).mean() > 0.9
    assert (rs.core_reader(ctrls + core) > rs.core_reader(ctrls)).mean() > 0.9


def test_readers_score_each_image_alone(toy):
    stamps, _, _ = toy
    for reader in (rs.arc_reader, rs.core_reader, rs.random_scorer):
        assert np.array_equal(reader(stamps[:3]), reader(stamps)[:3])


def test_an_lrg_alone_gives_no_asymmetric_light():
    from shortcutgates.gates.synthetic import lrg_stamp

    # an elliptical LRG peaking at 50,000 sky σ leaves only noise (< 6 σ); a faint arc stands out
    lrg = lrg_stamp(64, 50.0, 0.7, 0.4)[None] + 1e-3 * np.random.default_rng(0).standard_normal((1, 3, 64, 64))
    assert np.abs(rs.asymmetric_light(lrg.astype(np.float32))).max() < 6
    assert rs.asymmetric_light((lrg + arc_stamp(64, 9.0, 0.0, 1.0, 1.0)[None]).astype(np.float32)).max() > 30


def test_mixture_endpoints_are_the_readers(toy):
    stamps, _, _ = toy
    assert np.allclose(rs.mixture_reader(0.0)(stamps), rs.arc_reader(stamps) / rs.ARC_RESPONSE)
    assert np.allclose(rs.mixture_reader(1.0)(stamps), rs.core_reader(stamps) / rs.CORE_RESPONSE)
    with pytest.raises(ValueError, match="lam"):
        rs.mixture_reader(1.5)


def test_readers_refuse_a_single_stamp():
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        rs.arc_reader(np.zeros((3, 64, 64), np.float32))
