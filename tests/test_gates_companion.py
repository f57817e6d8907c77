"""The companion-galaxy counterfactual (``gates.companion``): the arc's light as an unlensed source at its radius."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shortcutgates.gates import companion as cp
from shortcutgates.gates.synthetic import arc_stamp


@pytest.fixture(scope="module")
def arcs():
    """Three arcs (θ_E 6–9 px, extents 0.5–2.5 rad, one band 3× another) with their source truth and PSFs."""
    arc = np.stack(
        [arc_stamp(64, 9.0, 0.3, 1.0, 100.0), arc_stamp(64, 6.0, 2.5, 2.5, 40.0), arc_stamp(64, 7.5, -1.2, 0.5, 10.0)]
    )
    arc[:, 2] *= 3.0
    truth = pd.DataFrame(
        {
            "src_reff_arcsec": [0.35, 0.1, 0.5],
            "src_n": [1.0, 0.5, 2.0],
            "src_q": [0.7, 1.0, 0.4],
            "src_phi_rad": [0.2, 0.0, 1.4],
        }
    )
    fwhm = np.array([[1.4, 1.3, 1.2], [1.1, 1.0, 1.0], [1.7, 1.6, 1.5]])
    return arc, truth, fwhm


def _centroid(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = image.sum(axis=1).astype(np.float64)
    yy, xx = np.mgrid[: w.shape[-2], : w.shape[-1]] - w.shape[-1] // 2
    return (w * xx).sum(axis=(1, 2)) / w.sum(axis=(1, 2)), (w * yy).sum(axis=(1, 2)) / w.sum(axis=(1, 2))


def test_the_companion_keeps_the_flux_per_band_and_sits_at_the_arcs_radius(arcs):
    arc, truth, fwhm = arcs
    comp = cp.companion_galaxy(arc, truth, fwhm)
    assert comp.shape == arc.shape and comp.dtype == np.float32 and (comp >= 0).all()
    np.testing.assert_allclose(comp.sum(axis=(-2, -1)), arc.sum(axis=(-2, -1)), rtol=1e-5)
    # centroid at the arc's flux-weighted mean radius, in the direction of the arc's centroid
    w = arc.sum(axis=1).astype(np.float64)
    yy, xx = np.mgrid[:64, :64] - 32
    mean_radius = (w * np.hypot(xx, yy)).sum(axis=(1, 2)) / w.sum(axis=(1, 2))
    cx, cy = _centroid(comp)
    ax, ay = _centroid(arc)
    np.testing.assert_allclose(np.hypot(cx, cy), mean_radius, atol=0.05)
    np.testing.assert_allclose(np.angle(np.exp(1j * (np.arctan2(cy, cx) - np.arctan2(ay, ax)))), 0.0, atol=0.01)
    assert (np.hypot(ax, ay)[:2] < mean_radius[:2] - 0.5).all()  # the long arcs' own centroids lie inside their rings


def test_the_companion_is_deterministic_and_refuses_missing_truth(arcs):
    arc, truth, fwhm = arcs
    assert cp.companion_galaxy(arc, truth, fwhm).tobytes() == cp.companion_galaxy(arc, truth, fwhm).tobytes()
    with pytest.raises(ValueError, match="row 1: no injection truth 'src_n'"):
        cp.companion_galaxy(arc, truth.assign(src_n=[1.0, np.nan, 1.0]), fwhm)
    with pytest.raises(ValueError, match="row 2 has no positive arc light"):
        cp.companion_galaxy(np.concatenate([arc[:2], np.zeros_like(arc[:1])]), truth, fwhm)
