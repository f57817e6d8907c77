"""The companion-galaxy counterfactual: the source's light *unlensed*, at the arc's position.

The classic false positive of a lens search is a companion galaxy: a blue galaxy beside the LRG, at
the radius where an arc would lie, with an arc's colour and flux but no tangential stretch. Built from
a pair's lensing split (:func:`~shortcutgates.gates.perturb.split_lensed_light`) and its injection
truth, :func:`companion_galaxy` gives, per pair, the arc part's light re-shaped as the unlensed source:

* **flux per band** = the arc part's flux per band (so its colour), to float32 round-off;
* **position**: at the arc light's flux-weighted *mean radius*, in the direction of its flux-weighted
  centroid (a long arc's centroid lies inside its ring, a near-ring's at the lens centre; the mean radius
  is the arc's radius);
* **shape**: the source's Sérsic profile from the truth (``src_reff_arcsec``, ``src_n``, ``src_q``,
  ``src_phi_rad``), unlensed, blurred with a Moffat (β = 3.5) of each band's PSF FWHM
  (``psf_fwhm_used_g/r/z``). What the truth lacks: a source's clumps and a library galaxy's own shape
  are not in it, so the companion is always the smooth Sérsic; its flux still includes their light.

The morphology counterfactual is ``ctrl + counter + companion``: the counter-image part kept, only the
arc's morphology changed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from shortcutgates.gates.split_numerics import blur, mean_last, moffat_kernels, sub_grid

SHAPE_COLUMNS: tuple[str, ...] = ("src_reff_arcsec", "src_n", "src_q", "src_phi_rad")
"""Injection truth the companion's shape comes from (the simulator's Sérsic source, unlensed)."""
COMPANION_OVERSAMPLE = 5
"""Rays per pixel and axis of the Sérsic render (a source of half-light radius 0.06″ = 0.23 px needs them)."""
COMPANION_PAD_PX = 4
"""Pixels rendered beyond each stamp edge, so light just outside the stamp blurs in. Unit: pixel."""
COMPANION_PSF_RADIUS = 16
"""Half-size of the Moffat kernels. Unit: pixel."""
COMPANION_MOFFAT_BETA = 3.5
"""Moffat index of the companion's PSF (the simulator's; ``simulate.population.MOFFAT_BETA``)."""


def arc_position(arc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` (N,) arcsec from the stamp centre (pixel (H//2, W//2); x along columns, y along rows):
    the arc light's flux-weighted mean radius, in the direction of its flux-weighted centroid.

    The weights are the band-summed positive light of ``arc`` (N, C, H, W); a row without positive light
    raises ``ValueError`` (it has no arc to move).
    """
    from shortcutgates.data.schema import PIXEL_SCALE_ARCSEC

    arc = np.asarray(arc, np.float64)
    h, w = arc.shape[-2:]
    yy, xx = np.mgrid[:h, :w]
    dx, dy = (xx - w // 2).astype(np.float64), (yy - h // 2).astype(np.float64)
    weight = np.maximum(arc.sum(axis=1), 0.0)
    total = weight.sum(axis=(1, 2))
    empty = np.flatnonzero(~(total > 0))
    if len(empty):
        raise ValueError(f"companion_galaxy: row {int(empty[0])} has no positive arc light to move")
    radius = (weight * np.hypot(dx, dy)).sum(axis=(1, 2)) / total
    angle = np.arctan2((weight * dy).sum(axis=(1, 2)), (weight * dx).sum(axis=(1, 2)))
    return radius * np.cos(angle) * PIXEL_SCALE_ARCSEC, radius * np.sin(angle) * PIXEL_SCALE_ARCSEC


def shape_problem(truth: pd.DataFrame, psf_fwhm_arcsec: np.ndarray) -> np.ndarray:
    """(N,) str: the first missing or non-finite shape column (:data:`SHAPE_COLUMNS`) or PSF of each row
    ('' when the companion can be rendered)."""
    n = len(truth)
    out = np.full(n, "", dtype=object)
    for col in SHAPE_COLUMNS:
        values = pd.to_numeric(truth[col], errors="coerce").to_numpy(np.float64) if col in truth else np.full(n, np.nan)
        out[(out == "") & ~np.isfinite(values)] = f"no injection truth '{col}'"
    fwhm = np.asarray(psf_fwhm_arcsec, np.float64).reshape(n, -1)
    out[(out == "") & ~(np.isfinite(fwhm) & (fwhm > 0)).all(axis=1)] = "no per-band PSF FWHM (psf_fwhm_used_g/r/z)"
    return out.astype(str)


def unlensed_source(
    truth: pd.DataFrame,
    x0: np.ndarray,
    y0: np.ndarray,
    shape: tuple[int, int],
    pad: int = COMPANION_PAD_PX,
    oversample: int = COMPANION_OVERSAMPLE,
) -> np.ndarray:
    """(N, h+2pad, w+2pad) float64: each row's Sérsic source (:data:`SHAPE_COLUMNS`) centred on ``(x0, y0)``
    (N,) arcsec, pixel-averaged over ``oversample²`` rays, before the PSF, unit total flux on the padded grid."""
    from shortcutgates.simulate.kernels import sersic, sersic_amp_for_flux

    h, w = shape
    n, k = len(truth), oversample
    t = {c: pd.to_numeric(truth[c], errors="coerce").to_numpy(np.float64)[:, None] for c in SHAPE_COLUMNS}
    x, y = sub_grid(h, w, pad, k)
    amp = sersic_amp_for_flux(1.0, t["src_reff_arcsec"], t["src_n"])
    sb = sersic(
        x.astype(np.float64),
        y.astype(np.float64),
        amp,
        t["src_reff_arcsec"],
        t["src_n"],
        t["src_q"],
        t["src_phi_rad"],
        np.asarray(x0, np.float64)[:, None],
        np.asarray(y0, np.float64)[:, None],
    )
    hp, wp = h + 2 * pad, w + 2 * pad
    light = mean_last(mean_last(sb.reshape(n, hp, k, wp, k), np.float64).transpose(0, 1, 3, 2))
    return light / np.maximum(light.sum(axis=(1, 2), keepdims=True), 1e-300)


def companion_galaxy(arc: np.ndarray, truth: pd.DataFrame, psf_fwhm_arcsec: np.ndarray) -> np.ndarray:
    """The arc part's light as an unlensed companion galaxy at the arc's position (module docstring).

    Parameters
    ----------
    arc : (N, C, H, W) array, nanomaggies: the arc part of each pair's lensing split
        (:attr:`~shortcutgates.gates.perturb.LensedSplit.arc`).
    truth : DataFrame of N rows with :data:`SHAPE_COLUMNS` (the injection truth of the pairs).
    psf_fwhm_arcsec : (N, C) array, each band's PSF FWHM (arcsec).

    Returns (N, C, H, W) float32: per band, the source's Sérsic profile at :func:`arc_position`, blurred
    with that band's Moffat PSF, cut to the stamp and scaled to the arc part's flux in that band
    (``Σ companion[i, b] == Σ arc[i, b]`` to float32 round-off). Deterministic: no randomness.
    Raises ``ValueError`` naming the row for a missing shape/PSF column or a row without positive arc light
    (render only the pairs the gate decides on).
    """
    arc = np.asarray(arc, np.float32)
    n, c, h, w = arc.shape
    truth = truth.reset_index(drop=True)
    fwhm = np.asarray(psf_fwhm_arcsec, np.float64).reshape(n, c)
    problem = shape_problem(truth, fwhm)
    bad = np.flatnonzero(problem != "")
    if len(bad):
        raise ValueError(f"companion_galaxy: row {int(bad[0])}: {problem[bad[0]]}")
    if n == 0:
        return np.zeros_like(arc)
    x0, y0 = arc_position(arc)
    light = unlensed_source(truth, x0, y0, (h, w))
    kernels = moffat_kernels(fwhm.ravel(), COMPANION_MOFFAT_BETA, COMPANION_PSF_RADIUS).reshape(
        n, c, 2 * COMPANION_PSF_RADIUS + 1, -1
    )
    blurred = np.maximum(blur(light[:, None], kernels, COMPANION_PAD_PX)[:, 0], 0.0)
    on_stamp = blurred.sum(axis=(-2, -1), keepdims=True)
    flux = arc.astype(np.float64).sum(axis=(-2, -1), keepdims=True)
    return (blurred / np.maximum(on_stamp, 1e-300) * flux).astype(np.float32)
