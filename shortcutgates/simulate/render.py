"""Ray tracing with adaptive sub-pixel supersampling, and PSF convolution.

A pixel's value is the mean surface brightness over its area times the pixel area (flux per
pixel). The mean is estimated from ``k × k`` sub-pixel rays, where ``k`` is chosen per pixel:

* the pixel's *source-plane footprint* ``d`` is the longer diagonal of its four ray-traced
  corners (for an unlensed profile, the pixel diagonal);
* for every Sérsic component the *local scale* of the profile at the footprint's nearest
  approach ``r`` to the component centre is ``ℓ = R_e sqrt(q) · min(1, (n / b_n) x^{1 - 1/n})``
  with ``x = max(r / R_e, 0.02)`` — the inverse logarithmic slope of the profile, which
  shrinks towards a cusp (n > 1) — and pixels farther than the radius where the profile falls to
  1e-3 of ``I_e`` do not count;
* ``k`` is the smallest power of two with ``d / k ≤ f ℓ`` (``f`` = ``accuracy``), capped at
  ``max_factor``.

So only the pixels where the traced surface brightness changes fast (arc pixels of compact
sources, the cusp of the LRG) get dense rays; the rest cost one ray.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import signal

from .kernels import elliptical_radius, ray_shoot, sersic, sersic_amp_for_flux, sersic_b

DEFAULT_ACCURACY = 0.25
"""Sub-pixel ray spacing as a fraction of the local profile scale."""
DEFAULT_MAX_FACTOR = 64
"""Largest sub-pixel factor per axis (64² rays in one pixel)."""
_CUT_LEVEL = np.log(1e3)
_MAX_POINTS = 1 << 20


class SersicSet(NamedTuple):
    """Sérsic components of one light distribution (one entry per component, shape (K,)).

    Each component is normalised to unit total flux; ``weight`` scales it. Units: arcsec, rad.
    """

    weight: np.ndarray
    """Flux of the component in units of the set's flux (dimensionless)."""
    r_eff: np.ndarray
    """Geometric-mean half-light radius. Unit: arcsec."""
    n: np.ndarray
    """Sérsic index."""
    q: np.ndarray
    """Axis ratio."""
    phi: np.ndarray
    """Major-axis position angle. Unit: rad."""
    x0: np.ndarray
    """Centre x. Unit: arcsec."""
    y0: np.ndarray
    """Centre y. Unit: arcsec."""


class Lens(NamedTuple):
    """SIE + external shear centred on the origin (arcsec, rad)."""

    theta_e: float
    q: float
    phi: float
    gamma: float
    phi_gamma: float


def sersic_set(**fields) -> SersicSet:
    """Build a :class:`SersicSet` from scalars or sequences (all broadcast to one length)."""
    arrays = np.broadcast_arrays(*(np.atleast_1d(np.asarray(fields[k], dtype=np.float64))
                                   for k in SersicSet._fields))
    return SersicSet(*(a.copy() for a in arrays))


def pixel_axis(n_pix: int, pixel_scale: float, centre: float) -> np.ndarray:
    """Pixel-centre coordinates along one axis: ``(i - centre) * pixel_scale``. Unit: arcsec."""
    return (np.arange(n_pix) - centre) * pixel_scale


def _trace(x, y, lens: Lens | None):
    if lens is None:
        return x, y
    return ray_shoot(x, y, *lens)


def evaluate_sets(bx, by, sets: tuple[SersicSet, ...], dtype=np.float32) -> np.ndarray:
    """Surface brightness of each set at source-plane points, shape ``(len(sets),) + bx.shape``.

    Components are normalised to unit flux times their weight. Unit: 1 / arcsec².
    """
    bx = np.asarray(bx, dtype=dtype)
    by = np.asarray(by, dtype=dtype)
    out = np.zeros((len(sets),) + bx.shape, dtype=dtype)
    for i, s in enumerate(sets):
        amps = s.weight * sersic_amp_for_flux(1.0, s.r_eff, s.n)
        bns = sersic_b(s.n)
        for j in range(len(s.weight)):
            out[i] += sersic(bx, by, dtype(amps[j]), dtype(s.r_eff[j]), s.n[j], dtype(s.q[j]),
                             dtype(s.phi[j]), dtype(s.x0[j]), dtype(s.y0[j]), b_n=dtype(bns[j]))
    return out


def _local_scale(bx, by, d, sets):
    """Smallest local profile scale over the components near each pixel footprint. Unit: arcsec."""
    scale = np.full(bx.shape, np.inf)
    for s in sets:
        bns = sersic_b(s.n)
        for j in range(len(s.weight)):
            r = elliptical_radius(bx - s.x0[j], by - s.y0[j], s.q[j], s.phi[j])
            r_near = np.maximum(r - d / np.sqrt(s.q[j]), 0.0)
            r_cut = s.r_eff[j] * (1.0 + _CUT_LEVEL / bns[j]) ** s.n[j]
            x = np.maximum(r_near / s.r_eff[j], 0.02)
            ell = s.r_eff[j] * np.sqrt(s.q[j]) * np.minimum(
                1.0, s.n[j] / bns[j] * x ** (1.0 - 1.0 / s.n[j]))
            scale = np.where(r_near < r_cut, np.minimum(scale, ell), scale)
    return scale


def supersampling_factors(lens, sets, n_pix, pixel_scale, centre, *, accuracy=DEFAULT_ACCURACY,
                          max_factor=DEFAULT_MAX_FACTOR):
    """Per-pixel sub-pixel factor ``k`` (a power of two) and the footprint, shape (n_pix, n_pix).

    See the module docstring for the rule. Corners are traced in float64.
    """
    edges = (np.arange(n_pix + 1) - centre - 0.5) * pixel_scale
    cy, cx = np.meshgrid(edges, edges, indexing="ij")
    bx, by = _trace(cx, cy, lens)
    d1 = np.hypot(bx[1:, 1:] - bx[:-1, :-1], by[1:, 1:] - by[:-1, :-1])
    d2 = np.hypot(bx[1:, :-1] - bx[:-1, 1:], by[1:, :-1] - by[:-1, 1:])
    d = np.maximum(d1, d2)
    mx = 0.25 * (bx[1:, 1:] + bx[:-1, :-1] + bx[1:, :-1] + bx[:-1, 1:])
    my = 0.25 * (by[1:, 1:] + by[:-1, :-1] + by[1:, :-1] + by[:-1, 1:])
    scale = _local_scale(mx, my, d, sets)
    need = np.where(np.isfinite(scale), d / (accuracy * scale), 1.0)
    k = np.exp2(np.ceil(np.log2(np.maximum(need, 1.0)))).astype(np.int64)
    return np.minimum(k, max_factor)


def render(lens, sets, n_pix, pixel_scale, centre, *, accuracy=DEFAULT_ACCURACY,
           max_factor=DEFAULT_MAX_FACTOR, factors=None) -> np.ndarray:
    """Flux per pixel of lensed (or, with ``lens=None``, unlensed) Sérsic sets.

    Parameters
    ----------
    lens : Lens or None
        The deflector, centred on the origin.
    sets : tuple of SersicSet
        Light distributions; each gives one output image.
    n_pix : int
        Side of the square grid. Unit: pixel.
    pixel_scale : float
        Unit: arcsec / pixel.
    centre : float
        Pixel index of the origin (the same on both axes).
    accuracy, max_factor : float, int
        Adaptive supersampling controls (module docstring).
    factors : ndarray of int, shape (n_pix, n_pix), optional
        Override the per-pixel factor (e.g. a uniform grid for a reference image).

    Returns
    -------
    ndarray, shape (len(sets), n_pix, n_pix), float32
        Flux per pixel for a unit-flux set (times its weights). Unit: flux / pixel.
    """
    if factors is None:
        factors = supersampling_factors(lens, sets, n_pix, pixel_scale, centre,
                                        accuracy=accuracy, max_factor=max_factor)
    out = np.zeros((len(sets), n_pix * n_pix), dtype=np.float64)
    flat = factors.ravel()
    area = pixel_scale * pixel_scale
    for k in np.unique(flat):
        idx = np.flatnonzero(flat == k)
        sub = ((np.arange(k) + 0.5) / k - 0.5) * pixel_scale
        oy, ox = np.meshgrid(sub, sub, indexing="ij")
        step = max(1, _MAX_POINTS // int(k * k))
        for start in range(0, idx.size, step):
            part = idx[start:start + step]
            row, col = np.divmod(part, n_pix)
            px = ((col - centre) * pixel_scale).astype(np.float32)[:, None] + ox.ravel()[None, :].astype(np.float32)
            py = ((row - centre) * pixel_scale).astype(np.float32)[:, None] + oy.ravel()[None, :].astype(np.float32)
            bx, by = _trace(px, py, lens)
            sb = evaluate_sets(bx, by, sets)  # (S, P, k²)
            out[:, part] = sb.mean(axis=2, dtype=np.float64) * area
    return out.reshape(len(sets), n_pix, n_pix).astype(np.float32)


def convolve_valid(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve a padded image with a PSF kernel and keep the fully covered part.

    Parameters
    ----------
    image : ndarray, shape (H + 2R, W + 2R)
    kernel : ndarray, shape (2R + 1, 2R + 1), summing to 1

    Returns
    -------
    ndarray, shape (H, W), float32
    """
    return signal.fftconvolve(image, kernel, mode="valid").astype(np.float32)
