"""The LRG's field: satellite / neighbour galaxies, faint background galaxies and stars.

Real cutouts around an LRG are not empty: DESI LRGs sit in groups (typically 0.5–2 detectable
neighbours within 8″), faint background galaxies (r ≈ 22–25) cover the whole sky at about
20 per arcmin², and a foreground star falls on about one stamp in ten at high latitude. This
light is part of the control (it is there before any injection), is not axisymmetric about
the LRG, so the azimuthal-median residual keeps it, and differs from LRG to LRG.

Every draw uses its own random stream (:func:`field_rng`), so switching the field off gives
byte-identical LRGs, conditions and injections.

References for the numbers: galaxy counts r < 25 ≈ 20–30 arcmin⁻² with slope
d log N / dm ≈ 0.35 (Metcalfe et al. 2001, MNRAS 323, 795; Capak et al. 2004, AJ 127, 180);
faint-galaxy sizes R_e ≈ 0.2–0.6″ (van der Wel et al. 2014); LRG satellite counts within
≈ 50 kpc (Tal et al. 2012, ApJ 746, 138; Watson et al. 2012, ApJ 749, 83).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from shortcutgates.data.schema import PIXEL_SCALE_ARCSEC, ZERO_POINT_AB
from shortcutgates.simulate.render import convolve_valid, render, sersic_set

BACKGROUND_PER_ARCMIN2 = 20.0
"""Surface density of galaxies with 22 < r < 25. Unit: arcmin⁻²."""
COUNT_SLOPE = 0.35
"""d log10 N / dm of the faint galaxy counts."""
NEIGHBOURS_WITHIN_8 = 1.0
"""Mean number of satellite / neighbour galaxies within 8″ of the LRG."""
STARS_PER_ARCMIN2 = 1.5
"""Surface density of stars with 17 < r < 23 (high latitude). Unit: arcmin⁻²."""


class FieldObjects(NamedTuple):
    """Objects around one LRG (one entry per object, shape (K,)); positions relative to the LRG."""

    x: np.ndarray
    """Unit: arcsec."""
    y: np.ndarray
    """Unit: arcsec."""
    mag_g: np.ndarray
    mag_r: np.ndarray
    mag_z: np.ndarray
    r_eff: np.ndarray
    """Geometric-mean half-light radius. Unit: arcsec."""
    n: np.ndarray
    q: np.ndarray
    phi: np.ndarray
    """Unit: rad."""


def field_rng(seed: int, index: int) -> np.random.Generator:
    """The field's own random stream for LRG ``index`` (independent of the LRG's stream)."""
    return np.random.default_rng([seed, 3, index])


def _truncated_counts_mag(rng, size, lo, hi, slope):
    """Magnitudes in [lo, hi] with differential counts ∝ 10^(slope m) (inverse-CDF)."""
    a, b = 10 ** (slope * lo), 10 ** (slope * hi)
    return np.log10(rng.uniform(a, b, size=size)) / slope


def draw_field(rng: np.random.Generator, lrg_mag_r: float, lrg_reff: float, half_width: float) -> FieldObjects:
    """Neighbours, background galaxies and stars within ``half_width`` (arcsec) of the LRG.

    * neighbours: Poisson(:data:`NEIGHBOURS_WITHIN_8`), projected radius uniform in 1–8″
      (surface density ∝ 1/R), r = LRG r + U(1.5, 4), red (same redshift), n 1–4,
      R_e = LRG R_e × 10^U(-0.7, -0.2);
    * background: Poisson over the square, 22 < r < 25 with the counts' slope, area-uniform,
      R_e log-normal (median 0.3″, 0.2 dex, 0.08–1″), n 0.5–2, blue to red colours;
    * stars: Poisson over the square, 17 < r < 23, R_e 0.01″ (unresolved), stellar colours.

    Parameters
    ----------
    rng : numpy.random.Generator
        The field's stream (:func:`field_rng`).
    lrg_mag_r : float
        The LRG's r magnitude (sets the neighbours' brightness). Unit: AB mag.
    lrg_reff : float
        The LRG's half-light radius (sets the neighbours' sizes). Unit: arcsec.
    half_width : float
        Half side of the square to populate, centred on the LRG. Unit: arcsec.
    """
    area = (2 * half_width) ** 2 / 3600.0
    parts = (_neighbours(rng, lrg_mag_r, lrg_reff), _background(rng, area, half_width), _stars(rng, area, half_width))
    return FieldObjects(*(np.concatenate(columns).astype(np.float64) for columns in zip(*parts)))


def _neighbours(rng: np.random.Generator, lrg_mag_r: float, lrg_reff: float) -> tuple:
    """Satellites / neighbours of :func:`draw_field`, in :class:`FieldObjects` field order."""
    n_nb = rng.poisson(NEIGHBOURS_WITHIN_8)
    rad, ang = rng.uniform(1.0, 8.0, n_nb), rng.uniform(0, 2 * np.pi, n_nb)
    nb_r = lrg_mag_r + rng.uniform(1.5, 4.0, n_nb)
    return (
        rad * np.cos(ang),
        rad * np.sin(ang),
        nb_r + rng.uniform(1.2, 2.0, n_nb),
        nb_r,
        nb_r - rng.uniform(1.0, 1.6, n_nb),
        lrg_reff * 10 ** rng.uniform(-0.7, -0.2, n_nb),
        rng.uniform(1.0, 4.0, n_nb),
        rng.uniform(0.5, 1.0, n_nb),
        rng.uniform(0, np.pi, n_nb),
    )


def _background(rng: np.random.Generator, area: float, half_width: float) -> tuple:
    """Faint background galaxies of :func:`draw_field` over ``area`` arcmin², in :class:`FieldObjects` order."""
    n_bg = rng.poisson(BACKGROUND_PER_ARCMIN2 * area)
    bg_r = _truncated_counts_mag(rng, n_bg, 22.0, 25.0, COUNT_SLOPE)
    return (
        rng.uniform(-half_width, half_width, n_bg),
        rng.uniform(-half_width, half_width, n_bg),
        bg_r + rng.uniform(0.2, 1.5, n_bg),
        bg_r,
        bg_r - rng.uniform(0.2, 1.2, n_bg),
        np.clip(0.3 * 10 ** rng.normal(0.0, 0.2, n_bg), 0.08, 1.0),
        rng.uniform(0.5, 2.0, n_bg),
        rng.uniform(0.3, 1.0, n_bg),
        rng.uniform(0, np.pi, n_bg),
    )


def _stars(rng: np.random.Generator, area: float, half_width: float) -> tuple:
    """Stars of :func:`draw_field` over ``area`` arcmin², in :class:`FieldObjects` field order."""
    n_st = rng.poisson(STARS_PER_ARCMIN2 * area)
    st_r = _truncated_counts_mag(rng, n_st, 17.0, 23.0, 0.15)
    st_gr = rng.uniform(0.3, 1.5, n_st)
    return (
        rng.uniform(-half_width, half_width, n_st),
        rng.uniform(-half_width, half_width, n_st),
        st_r + st_gr,
        st_r,
        st_r - 0.4 * st_gr - rng.uniform(0.0, 0.4, n_st),
        np.full(n_st, 0.01),
        np.full(n_st, 0.5),
        np.ones(n_st),
        np.zeros(n_st),
    )


def render_field(objs: FieldObjects, psf: np.ndarray, size: int, pad: int, centre) -> np.ndarray:
    """Noiseless PSF-convolved field, shape (3, size, size), float32, nanomaggies per pixel.

    Parameters
    ----------
    objs : FieldObjects
    psf : ndarray, shape (3, 2 pad + 1, 2 pad + 1)
        Per-band PSF kernels.
    size : int
        Stamp side. Unit: pixel.
    pad : int
        Render padding on each side (the PSF half-size). Unit: pixel.
    centre : (float, float)
        LRG position on the padded grid. Unit: pixel.
    """
    out = np.zeros((3, size, size), dtype=np.float32)
    if len(objs.x) == 0:
        return out
    unit = render(
        None,
        tuple(
            sersic_set(
                weight=1.0, r_eff=objs.r_eff[k], n=objs.n[k], q=objs.q[k], phi=objs.phi[k], x0=objs.x[k], y0=objs.y[k]
            )
            for k in range(len(objs.x))
        ),
        size + 2 * pad,
        PIXEL_SCALE_ARCSEC,
        centre,
    )  # (K, H, W)
    for b, mags in enumerate((objs.mag_g, objs.mag_r, objs.mag_z)):
        flux = (10.0 ** ((ZERO_POINT_AB - mags) / 2.5)).astype(np.float32)
        out[b] = convolve_valid(np.tensordot(flux, unit, axes=1), psf[b])
    return out
