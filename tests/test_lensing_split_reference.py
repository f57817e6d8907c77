"""The fast lensing split (issue 21) against the slow one it replaced, kept here as the reference.

``perturb.split_lensed_light`` now shoots each mirror pair of rays once, builds its Moffat kernels from
the distinct sub-pixel radii, blurs in one batched real FFT on the smallest cyclic size, labels the
image components of all rows at once and splits the rows in chunks on threads (``split_numerics``). The reference below is the previous code (one kernel per
PSF width, ``scipy.signal.fftconvolve`` per part, a labelling loop per row); the two must agree to
float round-off, and ``counter + arc == d`` must stay exact.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage, signal

from shortcutgates.data.codec import decode_stamp
from shortcutgates.gates import perturb as pt
from shortcutgates.gates import split_numerics as sn
from shortcutgates.data.schema import PIXEL_SCALE_ARCSEC
from shortcutgates.simulate.generator import simulate_frame
from shortcutgates.simulate.kernels import moffat_kernel, ray_shoot, sersic, sersic_amp_for_flux


def reference_regions(truth, shape, pad=pt.SPLIT_PAD_PX, k=pt.SPLIT_OVERSAMPLE):
    """The previous ``lensed_regions``: numpy means over the sub-rays, one ``ndimage.label`` per row."""
    (h, w), t, n = shape, pt._params(truth), len(truth)
    hp, wp = h + 2 * pad, w + 2 * pad
    x, y = sn.sub_grid(h, w, pad, k)
    lens = (t["theta_e_arcsec"], t["lens_q"], t["lens_phi_rad"], t["shear"], t["shear_phi_rad"])
    bx, by = ray_shoot(x, y, *(np.asarray(v, np.float32) for v in lens))
    f32 = {
        c: t[c].astype(np.float32) for c in ("src_reff_arcsec", "src_q", "src_phi_rad", "src_x_arcsec", "src_y_arcsec")
    }
    amp = sersic_amp_for_flux(1.0, t["src_reff_arcsec"], t["src_n"]).astype(np.float32)
    sb = sersic(
        bx,
        by,
        amp,
        f32["src_reff_arcsec"],
        t["src_n"],
        f32["src_q"],
        f32["src_phi_rad"],
        f32["src_x_arcsec"],
        f32["src_y_arcsec"],
    )
    light = sb.reshape(n, hp, k, wp, k).mean(axis=(2, 4), dtype=np.float64)
    light /= np.maximum(light.sum(axis=(1, 2), keepdims=True), 1e-300)
    bxr, byr = (v.reshape(n, hp, k, wp, k).astype(np.float64) for v in (bx, by))
    step = (k - 1) / k * PIXEL_SCALE_ARCSEC
    dbx_dx, dby_dx = ((v[..., -1] - v[..., 0]).mean(axis=2) / step for v in (bxr, byr))
    dbx_dy, dby_dy = ((v[:, :, -1] - v[:, :, 0]).mean(axis=-1) / step for v in (bxr, byr))
    negative = dbx_dx * dby_dy - dbx_dy * dby_dx < 0
    region, merged = negative.copy(), np.zeros(n)
    for i in range(n):
        labels, n_comp = ndimage.label(light[i] > pt.COMPONENT_FLOOR * light[i].max(), structure=np.ones((3, 3), bool))
        idx = np.arange(1, n_comp + 1)
        total = ndimage.sum_labels(light[i], labels, idx)
        neg = ndimage.sum_labels(light[i] * negative[i], labels, idx)
        merging = idx[np.minimum(neg, total - neg) >= pt.MERGE_SHARE * total]
        if len(merging):
            in_merging = np.isin(labels, merging)
            region[i] &= ~in_merging
            neg_all = float((light[i] * negative[i]).sum())
            merged[i] = float((light[i] * (negative[i] & in_merging)).sum()) / neg_all if neg_all > 0 else 0.0
    return light, region, merged


def reference_fraction(d, truth, fwhm):
    """The previous split's blurred parts and counter fraction: one kernel per width, ``fftconvolve``
    in "same" mode of the (N, 1) maps with the (N, 3) kernels (which keeps the middle, r, band)."""
    pad, (h, w) = pt.SPLIT_PAD_PX, d.shape[-2:]
    light, region, merged = reference_regions(truth, (h, w))
    kernels = np.stack(
        [moffat_kernel(v / PIXEL_SCALE_ARCSEC, pt.SPLIT_MOFFAT_BETA, radius=pt.SPLIT_PSF_RADIUS) for v in fwhm.ravel()]
    ).reshape(len(d), 3, 2 * pt.SPLIT_PSF_RADIUS + 1, -1)

    def blur(img):
        out = signal.fftconvolve(img[:, None], kernels, mode="same", axes=(-2, -1))
        return out[..., pad : out.shape[-2] - pad, pad : out.shape[-1] - pad]

    bc, ba = np.maximum(blur(light * region), 0.0), np.maximum(blur(light * ~region), 0.0)
    bk = np.clip(blur(region.astype(np.float64)), 0.0, 1.0)
    eps = pt.EPS_UNMODELLED * (bc + ba).max(axis=(-2, -1), keepdims=True)
    share = bc.sum(axis=(1, 2, 3)) / (bc + ba).sum(axis=(1, 2, 3))
    return np.clip((bc + eps * bk) / (bc + ba + eps), 0.0, 1.0), share, merged


@pytest.fixture(scope="module")
def pairs():
    frame = simulate_frame(8, 11, injections_per_lrg=(2, 3))
    d = np.stack([decode_stamp(a) - decode_stamp(b) for a, b in zip(frame.stamp_npz, frame.ctrl_stamp_npz)])
    return d, frame, frame[list(pt.PSF_COLUMNS)].to_numpy(np.float64)


def test_the_regions_and_kernels_are_the_references(pairs):
    d, frame, fwhm = pairs
    light, region, merged = pt.lensed_regions(frame, d.shape[-2:])
    ref = reference_regions(frame, d.shape[-2:])
    # identical here (a mirror ray pair shot once gives the same float32 values where the maths library's
    # arctan/arctanh are odd functions); allowed a float32 step and a rare parity flip on other hardware
    assert np.allclose(light, ref[0], rtol=1e-6, atol=1e-6 * np.abs(ref[0]).max())
    assert (region != ref[1]).mean() <= 1e-4
    assert np.allclose(merged, ref[2], rtol=1e-12, atol=0) and (ref[2] > 0).any()
    widths = np.r_[fwhm.ravel(), 0.6, 2.4]
    old = np.stack(
        [moffat_kernel(v / PIXEL_SCALE_ARCSEC, pt.SPLIT_MOFFAT_BETA, radius=pt.SPLIT_PSF_RADIUS) for v in widths]
    )
    assert np.abs(sn.moffat_kernels(widths, pt.SPLIT_MOFFAT_BETA, pt.SPLIT_PSF_RADIUS) - old).max() < 1e-15


def test_the_fast_split_is_the_reference_split_to_round_off(pairs):
    """Same counter-image to float32 round-off (measured: identical bytes on these 20 pairs), same shares."""
    d, frame, fwhm = pairs
    split = pt.split_lensed_light(d, frame, fwhm)
    f, share, _ = reference_fraction(d, frame, fwhm)
    counter = np.where(f >= 0.5, (f * d).astype(np.float32), d - ((1.0 - f) * d).astype(np.float32))
    assert np.abs(split.counter - counter).max() <= 1e-6 * np.abs(d).max()
    assert np.array_equal(split.counter + split.arc, d)
    assert np.allclose(split.counter_share, share, rtol=1e-9, atol=1e-15)
    assert split.decidable.any() and (~split.decidable).any()


def test_the_split_does_not_depend_on_chunks_or_threads(pairs, monkeypatch):
    d, frame, fwhm = pairs
    whole = pt.split_lensed_light(d, frame, fwhm)  # one chunk, the calling thread
    monkeypatch.setattr("shortcutgates.parallel.THREADS", 2)
    small = pt.split_lensed_light(d, frame, fwhm, chunk=3)  # chunks of 3 rows on 2 threads
    for a, b in zip(whole, small):
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
