"""The paired counterfactual builders and the reference scorers, as pure functions."""

from __future__ import annotations

import numpy as np
import pytest

from shortcutgates.gates import perturb as pt
from shortcutgates.gates import reference_scorers as rs
from shortcutgates.gates.synthetic import ToySpec, arc_stamp, counter_image, make_images
from shortcutgates.model.preprocess import ring_index


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


@pytest.fixture(scope="module")
def lensed_toy():
    """Paired toy lenses rendered by lensing (SIE + shear, counter-images) with their injection truth."""
    from shortcutgates.gates.synthetic import make_rows

    frame = make_rows(ToySpec(n_lrgs=40, paired=True, lensed=True, theta_e_arcsec=(1.5, 2.5), seed=2))
    from shortcutgates.data.codec import decode_stamp

    images = np.stack([decode_stamp(b) for b in frame["image_npz"]])
    pairs = pt.find_pairs(frame["label"].to_numpy(), frame["lrg_id"].to_numpy())
    truth = frame.iloc[pairs.stamp].reset_index(drop=True)
    return images[pairs.stamp], images[pairs.ctrl], frame["lrg_id"].to_numpy()[pairs.stamp], truth


def test_counterfactuals_are_controls_plus_parts_of_the_lensed_light(lensed_toy):
    from shortcutgates.gates import paired

    stamps, ctrls, groups, truth = lensed_toy
    fwhm = truth[list(pt.PSF_COLUMNS)].to_numpy()
    d = stamps - ctrls
    lensed = pt.split_lensed_light(d, truth, fwhm)
    cf, perm = paired.counterfactuals(stamps, ctrls, groups, lensed, fwhm, seed=0)
    assert np.array_equal(lensed.counter + lensed.arc, d)
    assert np.array_equal(cf["core_only"], ctrls + lensed.counter) and np.array_equal(
        cf["arc_only"], ctrls + lensed.arc
    )
    assert np.allclose(cf["swapped"] - ctrls[perm], d, atol=1e-4)
    assert (groups[perm] != groups).all()
    for image in cf.values():
        assert image.shape == stamps.shape and image.dtype == np.float32
    # the scrambled counterfactual keeps the counter-image and each 1-px ring's arc flux per band
    scrambled = cf["scrambled"] - ctrls - lensed.counter
    rings = ring_index(*d.shape[-2:])
    for k in (3, 6, 9):
        assert np.allclose(
            scrambled[..., rings == k].sum(-1), lensed.arc[..., rings == k].sum(-1), rtol=1e-3, atol=1e-3
        )
    assert lensed.decidable.mean() > 0.5


def test_the_lensing_split_matches_the_simulators_parts_rendered_apart():
    """Oracle: the simulator renders each part apart (its adaptive ray tracer, its PSF); the split of the
    observed ``d`` matches it to < 1 % of the lensed light per pair and < 2 % per band (measured: median
    0.35 %, max 0.9 % on 74 pairs of seed 7 without clumps; docs/model_gates.md#the-lensing-split)."""
    from shortcutgates.data.codec import decode_stamp
    from shortcutgates.data.schema import PIXEL_SCALE_ARCSEC as S
    from shortcutgates.simulate.generator import simulate_frame
    from shortcutgates.simulate.kernels import moffat_kernel, q_from_e
    from shortcutgates.simulate.render import Lens, convolve_valid, render, sersic_set
    from shortcutgates.simulate.stamps import PSF_RADIUS

    frame = simulate_frame(6, 7, injections_per_lrg=(2, 3), clump_probability=0.0)
    d = np.stack([decode_stamp(a) - decode_stamp(b) for a, b in zip(frame.stamp_npz, frame.ctrl_stamp_npz)])
    fwhm = frame[list(pt.PSF_COLUMNS)].to_numpy()
    split = pt.split_lensed_light(d, frame, fwhm)
    _, region, _ = pt.lensed_regions(frame, d.shape[-2:], pad=PSF_RADIUS)
    n_pad, centre = d.shape[-1] + 2 * PSF_RADIUS, float(d.shape[-1] // 2 + PSF_RADIUS)
    for i, r in frame.iterrows():
        lens = Lens(r.theta_e_arcsec, float(q_from_e(r.lens_e)), r.lens_phi_rad, r.shear, r.shear_phi_rad)
        body = sersic_set(
            weight=1.0,
            r_eff=r.src_reff_arcsec,
            n=r.src_n,
            q=r.src_q,
            phi=r.src_phi_rad,
            x0=r.src_x_arcsec,
            y0=r.src_y_arcsec,
        )
        unit = render(lens, (body,), n_pad, S, centre)[0].astype(np.float64)
        oracle = np.zeros_like(d[i])
        for b in range(3):
            kernel = moffat_kernel(fwhm[i, b] / S, 3.5, radius=PSF_RADIUS)
            oracle[b] = convolve_valid(unit * region[i], kernel) * d[i, b].sum() / convolve_valid(unit, kernel).sum()
            assert np.abs(split.counter[i, b] - oracle[b]).sum() < 0.02 * np.abs(d[i, b]).sum(), (i, b)
        assert np.abs(split.counter[i] - oracle).sum() < 0.01 * np.abs(d[i]).sum(), i


def test_pairs_without_truth_are_undecidable_with_the_reason(lensed_toy):
    stamps, ctrls, _, truth = lensed_toy
    fwhm = truth[list(pt.PSF_COLUMNS)].to_numpy()
    split = pt.split_lensed_light(stamps - ctrls, truth.drop(columns=["src_n"]), fwhm)
    assert not split.decidable.any() and set(split.reason) == {"no injection truth 'src_n'"}
    assert np.array_equal(split.arc, stamps - ctrls) and not split.counter.any()
    no_psf = pt.split_lensed_light(stamps - ctrls, truth, np.full_like(fwhm, np.nan))
    assert set(no_psf.reason) == {"no per-band PSF FWHM (psf_fwhm_used_g/r/z)"}


def test_unmodelled_light_at_the_lens_centre_counts_as_core_light(lensed_toy):
    """A point source on the centre pixel (a planted cue no lensed image explains) goes to the counter part."""
    stamps, ctrls, _, truth = lensed_toy
    fwhm = truth[list(pt.PSF_COLUMNS)].to_numpy()
    point = np.zeros_like(stamps[:, :, :, :])
    c = stamps.shape[-1] // 2
    point[:, :, c - 1 : c + 2, c - 1 : c + 2] = 1.0
    base = pt.split_lensed_light(stamps - ctrls, truth, fwhm)
    planted = pt.split_lensed_light(stamps - ctrls + point, truth, fwhm)
    gained = (planted.counter - base.counter)[..., c - 1 : c + 2, c - 1 : c + 2].sum(axis=(1, 2, 3)) / 27.0
    assert np.median(gained) > 0.9


def test_near_rings_and_blurred_images_are_undecidable():
    """A source on the axis makes a ring (merging images); θ_E 0.6″ under a 1.5″ PSF merges or blurs them."""
    base = {
        "lens_e": 0.1,
        "lens_phi_rad": 0.3,
        "shear": 0.02,
        "shear_phi_rad": 1.0,
        "src_reff_arcsec": 0.2,
        "src_n": 1.0,
        "src_q": 0.8,
        "src_phi_rad": 0.0,
    }
    import pandas as pd

    truth = pd.DataFrame(
        [
            {**base, "theta_e_arcsec": 2.0, "src_x_arcsec": 0.02, "src_y_arcsec": 0.0},
            {**base, "theta_e_arcsec": 0.6, "src_x_arcsec": 0.3, "src_y_arcsec": 0.0},
            {**base, "theta_e_arcsec": 2.0, "src_x_arcsec": 1.0, "src_y_arcsec": 0.0},
        ]
    )
    fwhm = np.full((3, 3), 1.5)
    from shortcutgates.gates.synthetic import lensed_arc

    d = np.stack([lensed_arc(64, t, 1.5, 100.0) for t in truth.to_dict("records")])
    split = pt.split_lensed_light(d, truth, fwhm)
    assert split.reason[0].startswith("near-ring")
    assert split.reason[1].startswith(("near-ring", "counter-image and arc blurred")), split.reason[1]
    assert split.decidable.tolist() == [False, False, True] and split.overlap[2] < pt.MAX_OVERLAP


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
