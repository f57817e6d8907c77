"""Ray tracing with adaptive sub-pixel supersampling, and PSF convolution.

A pixel's value is the mean surface brightness over its area times the pixel area (flux per
pixel). The mean is estimated from ``k × k`` sub-pixel rays, where ``k`` is chosen per pixel:

* the pixel's *source-plane footprint* ``d`` is the longer diagonal of its four ray-traced
  corners (for an unlensed profile, the pixel diagonal);
* for every Sérsic component the *local scale* of the profile at the footprint's nearest
  approach ``r`` to the component centre is ``ℓ = R_e sqrt(q) · min(1, x, (n / b_n) x^{1 - 1/n})``
  with ``x = max(r / R_e, 0.02)`` — the inverse logarithmic slope of the profile, which
  shrinks towards a cusp (n > 1), and (for every n but the Gaussian n = 0.5) the distance to
  the centre, where the profile's second derivative diverges like r^{1/n - 2} — and pixels farther than the radius where the profile
  falls to 1e-3 of ``I_e`` do not count;
* ``k`` is the smallest power of two with ``d / k ≤ f ℓ`` (``f`` = ``accuracy``), capped at
  ``max_factor``.

So only the pixels where the traced surface brightness changes fast (arc pixels of compact
sources, the cusp of the LRG) get dense rays; the rest cost one ray.

A pixelised source (:class:`.sources.PixelSource`, a real galaxy image) takes part through its
own ``evaluate`` and ``local_scale``: ``ℓ`` is a fraction of its stamp pixel wherever the
footprint can touch a lit stamp pixel, and infinite elsewhere.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from shortcutgates.simulate.kernels import elliptical_radius, ray_shoot, sersic, sersic_amp_for_flux, sersic_b

DEFAULT_ACCURACY = 1.0
"""Sub-pixel ray spacing as a fraction of the local profile scale."""
DEFAULT_MAX_FACTOR = 64
"""Largest sub-pixel factor per axis (64² rays in one pixel)."""
_CUT_LEVEL = np.log(1e3)
_KINK_N = 0.51
"""From this Sérsic index up, the profile's centre is not smooth enough for the Gauss rule
(its second derivative diverges like r^{1/n - 2} unless 1/n is an even integer), so cells there
refine with the distance to the centre. Only the Gaussian n = 0.5 (the clumps) is exempt."""
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
    arrays = np.broadcast_arrays(*(np.atleast_1d(np.asarray(fields[k], dtype=np.float64)) for k in SersicSet._fields))
    return SersicSet(*(a.copy() for a in arrays))


def split_centre(centre) -> tuple[float, float]:
    """``(x, y)`` pixel position of the origin from a scalar (both axes) or a pair. Unit: pixel."""
    cx, cy = np.broadcast_to(np.asarray(centre, dtype=np.float64), (2,))
    return float(cx), float(cy)


def _trace(x, y, lens: Lens | None):
    if lens is None:
        return x, y
    return ray_shoot(x, y, *lens)


def evaluate_sets(bx, by, sets: tuple, dtype=np.float32) -> np.ndarray:
    """Surface brightness of each set at source-plane points, shape ``(len(sets),) + bx.shape``.

    ``sets`` holds :class:`SersicSet` s (components normalised to unit flux times their weight)
    or pixelised sources (:class:`.sources.PixelSource`, anything with ``evaluate`` and
    ``local_scale``). Unit: 1 / arcsec².
    """
    bx = np.asarray(bx, dtype=dtype)
    by = np.asarray(by, dtype=dtype)
    out = np.zeros((len(sets),) + bx.shape, dtype=dtype)
    for i, s in enumerate(sets):
        if hasattr(s, "evaluate"):  # a pixelised source (.sources.PixelSource)
            out[i] = s.evaluate(bx, by, dtype)
            continue
        amps = s.weight * sersic_amp_for_flux(1.0, s.r_eff, s.n)
        bns = sersic_b(s.n)
        for j in range(len(s.weight)):
            out[i] += sersic(
                bx,
                by,
                dtype(amps[j]),
                dtype(s.r_eff[j]),
                s.n[j],
                dtype(s.q[j]),
                dtype(s.phi[j]),
                dtype(s.x0[j]),
                dtype(s.y0[j]),
                b_n=dtype(bns[j]),
            )
    return out


def _local_scale(bx, by, d, sets):
    """Smallest local profile scale over the components near each pixel footprint. Unit: arcsec."""
    scale = np.full(bx.shape, np.inf)
    for s in sets:
        if hasattr(s, "local_scale"):  # a pixelised source: refine to its pixel size
            scale = np.minimum(scale, s.local_scale(bx, by, d))
            continue
        bns = sersic_b(s.n)
        for j in range(len(s.weight)):
            r = elliptical_radius(bx - s.x0[j], by - s.y0[j], s.q[j], s.phi[j])
            r_near = np.maximum(r - d / np.sqrt(s.q[j]), 0.0)
            r_cut = s.r_eff[j] * (1.0 + _CUT_LEVEL / bns[j]) ** s.n[j]
            x = np.maximum(r_near / s.r_eff[j], 0.02)
            kink = x if s.n[j] >= _KINK_N else 1.0
            ell = (
                s.r_eff[j]
                * np.sqrt(s.q[j])
                * np.minimum(np.minimum(1.0, kink), s.n[j] / bns[j] * x ** (1.0 - 1.0 / s.n[j]))
            )
            scale = np.where(r_near < r_cut, np.minimum(scale, ell), scale)
    return scale


def footprints(lens, sets, n_pix, pixel_scale, centre):
    """Source-plane footprint of every pixel from its four ray-traced corners (float64).

    Returns
    -------
    d : ndarray, shape (n_pix, n_pix)
        Longer diagonal of the traced corner quadrilateral. Unit: arcsec.
    mx, my : ndarray, shape (n_pix, n_pix)
        Mean of the traced corners. Unit: arcsec.
    """
    ox, oy = split_centre(centre)
    cy, cx = np.meshgrid(
        (np.arange(n_pix + 1) - oy - 0.5) * pixel_scale, (np.arange(n_pix + 1) - ox - 0.5) * pixel_scale, indexing="ij"
    )
    bx, by = _trace(cx, cy, lens)
    d1 = np.hypot(bx[1:, 1:] - bx[:-1, :-1], by[1:, 1:] - by[:-1, :-1])
    d2 = np.hypot(bx[1:, :-1] - bx[:-1, 1:], by[1:, :-1] - by[:-1, 1:])
    mx = 0.25 * (bx[1:, 1:] + bx[:-1, :-1] + bx[1:, :-1] + bx[:-1, 1:])
    my = 0.25 * (by[1:, 1:] + by[:-1, :-1] + by[1:, :-1] + by[:-1, 1:])
    return np.maximum(d1, d2), mx, my


_CHILD = np.array([[-0.25, -0.25], [0.25, -0.25], [-0.25, 0.25], [0.25, 0.25]], dtype=np.float32)
_GAUSS = (_CHILD * np.float32(2.0 / np.sqrt(3.0))).astype(np.float32)
"""2×2 Gauss–Legendre nodes in units of the cell side: ±1/(2√3)."""


def render(
    lens, sets, n_pix, pixel_scale, centre, *, accuracy=DEFAULT_ACCURACY, max_factor=DEFAULT_MAX_FACTOR, factors=None
) -> np.ndarray:
    """Flux per pixel of lensed (or, with ``lens=None``, unlensed) Sérsic sets.

    Adaptive quadtree: a cell of side ``h`` whose source-plane footprint ``d · h / pixel`` is at
    most ``accuracy`` times the local profile scale (module docstring) is represented by the ray
    through its centre; otherwise it splits into four, down to ``pixel / max_factor``. Pixels
    whose footprint lies where every component is below 1e-3 of its ``I_e`` take the value at
    their traced-corner mean and cost no extra ray.

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
    centre : float or (float, float)
        Pixel position of the origin: one value for both axes, or ``(x, y)`` (column, row).
    accuracy : float
        Ray spacing in the source plane as a fraction of the local profile scale.
    max_factor : int
        Deepest subdivision: cells of ``pixel / max_factor`` (a power of two).
    factors : ndarray of int, shape (n_pix, n_pix), optional
        Instead of adapting, sample pixel ``i`` on a uniform ``factors[i]²`` grid (used for
        reference images and fixed-grid comparisons).

    Returns
    -------
    ndarray, shape (len(sets), n_pix, n_pix), float32
        Flux per pixel for unit-flux sets (times their weights). Unit: flux / pixel.
    """
    if factors is not None:
        return _render_uniform(lens, sets, n_pix, pixel_scale, centre, factors)
    d, mx, my = footprints(lens, sets, n_pix, pixel_scale, centre)
    area = pixel_scale * pixel_scale
    out = evaluate_sets(mx, my, sets).reshape(len(sets), -1).astype(np.float64) * area
    d = d.ravel()
    near = np.isfinite(_local_scale(mx.ravel(), my.ravel(), d, sets))
    pix = np.flatnonzero(near)
    out[:, pix] = 0.0
    row, col = np.divmod(pix, n_pix)
    ox, oy = split_centre(centre)
    cx = ((col - ox) * pixel_scale).astype(np.float32)
    cy = ((row - oy) * pixel_scale).astype(np.float32)
    _refine(out, pix, cx, cy, d, lens, sets, pixel_scale, accuracy, int(np.log2(max_factor)))
    return out.reshape(len(sets), n_pix, n_pix).astype(np.float32)


def _refine(out, pix, cx, cy, d, lens, sets, pixel_scale, accuracy, depth_max) -> None:
    """The adaptive quadtree of :func:`render`: add the flux of the cells of pixels ``pix`` to ``out``.

    ``out`` (len(sets), n_pix²) float64 is updated in place; ``cx``, ``cy`` (arcsec) are the centres
    of the pixel-sized cells to refine, ``d`` the (n_pix²,) source-plane footprints per pixel. A cell
    whose footprint is at most ``accuracy`` times the local profile scale is a leaf (valued by
    :func:`_leaf_values`); the others split into four, down to ``depth_max`` halvings.
    """
    h = float(pixel_scale)
    for depth in range(depth_max + 1):
        if pix.size == 0:
            break
        bx, by = _trace(cx, cy, lens)
        dcell = d[pix] * (h / pixel_scale)
        leaf = dcell <= accuracy * _local_scale(bx, by, dcell, sets)
        if depth == depth_max:
            leaf[:] = True
        sb = _leaf_values(cx[leaf], cy[leaf], h, lens, sets)
        for i in range(len(sets)):
            out[i] += np.bincount(pix[leaf], weights=sb[i] * (h * h), minlength=out.shape[1])
        split = ~leaf
        pix = np.repeat(pix[split], 4)
        cx = (cx[split][:, None] + _CHILD[None, :, 0] * h).ravel()
        cy = (cy[split][:, None] + _CHILD[None, :, 1] * h).ravel()
        h *= 0.5


def _leaf_values(cx, cy, h, lens, sets):
    """Mean surface brightness of square cells (centres, side ``h``) by 2×2 Gauss–Legendre rays.

    The product Gauss rule is exact for bicubic integrands, so its error falls as ``h⁴``
    (the midpoint rule's as ``h²``), which lets leaves be larger for the same accuracy.
    """
    sx = (cx[:, None] + _GAUSS[None, :, 0] * h).ravel()
    sy = (cy[:, None] + _GAUSS[None, :, 1] * h).ravel()
    bx, by = _trace(sx, sy, lens)
    return evaluate_sets(bx, by, sets).reshape(len(sets), -1, 4).mean(axis=2)


def _render_uniform(lens, sets, n_pix, pixel_scale, centre, factors):
    cx0, cy0 = split_centre(centre)
    out = np.zeros((len(sets), n_pix * n_pix), dtype=np.float64)
    flat = np.broadcast_to(np.asarray(factors, dtype=np.int64), (n_pix, n_pix)).ravel()
    area = pixel_scale * pixel_scale
    for k in np.unique(flat):
        idx = np.flatnonzero(flat == k)
        sub = ((np.arange(k) + 0.5) / k - 0.5) * pixel_scale
        oy, ox = np.meshgrid(sub, sub, indexing="ij")
        step = max(1, _MAX_POINTS // int(k * k))
        for start in range(0, idx.size, step):
            part = idx[start : start + step]
            row, col = np.divmod(part, n_pix)
            px = ((col - cx0) * pixel_scale)[:, None] + ox.ravel()[None, :]
            py = ((row - cy0) * pixel_scale)[:, None] + oy.ravel()[None, :]
            bx, by = _trace(px.astype(np.float32), py.astype(np.float32), lens)
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
    from scipy import signal  # imported here: scipy.signal costs ~0.5 s to import, and the lensing split
    # (gates.perturb) imports this package for its kernels only

    return signal.fftconvolve(image, kernel, mode="valid").astype(np.float32)
