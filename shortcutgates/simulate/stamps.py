"""The images of one simulated LRG (docs/design.md#simulator): its light (:func:`render_lrg`), a lensed
arc (:func:`render_arc`), the noise of a resampled coadd (:func:`add_noise`) and the arc's S/N; all
PSF-convolved on a grid padded by :data:`PSF_RADIUS`, in nanomaggies per pixel.
"""

from __future__ import annotations

import numpy as np

from shortcutgates.data.schema import PIXEL_SCALE_ARCSEC, ZERO_POINT_AB
from shortcutgates.simulate.population import LRG, Conditions, Injection, LRGStructure
from shortcutgates.simulate.render import Lens, convolve_valid, render, sersic_set
from shortcutgates.simulate.sources import PixelSource

PSF_RADIUS = 16
"""PSF kernel half-size and render padding. Unit: pixel."""


def mag_to_flux(mag):
    """AB magnitude to flux. Unit: nanomaggies (zero point 22.5)."""
    return 10.0 ** ((ZERO_POINT_AB - np.asarray(mag, dtype=np.float64)) / 2.5)


def lrg_centre(lrg: LRG, size: int) -> tuple[float, float]:
    """Pixel position ``(x, y)`` of the LRG (and lens) centre on the padded render grid: the
    centre of stamp pixel (size//2, size//2)."""
    return (size // 2 + PSF_RADIUS, size // 2 + PSF_RADIUS)


def render_lrg(lrg: LRG, cond: Conditions, size: int, structure: LRGStructure | None = None) -> np.ndarray:
    """Noiseless PSF-convolved LRG, shape (3, size, size), float32, nanomaggies per pixel.

    Without ``structure`` one Sérsic; with it, that Sérsic carries ``1 - fraction`` of the flux
    and an inner Sérsic (same n) the rest, at its own radius, axis ratio and position angle.
    """
    n_pad = size + 2 * PSF_RADIUS
    if structure is None:
        light = sersic_set(weight=1.0, r_eff=lrg.reff_arcsec, n=lrg.n, q=lrg.q, phi=lrg.phi, x0=0, y0=0)
    else:
        s = structure
        light = sersic_set(
            weight=[1.0 - s.fraction, s.fraction],
            r_eff=[lrg.reff_arcsec, lrg.reff_arcsec * s.reff_ratio],
            n=lrg.n,
            q=[lrg.q, s.q],
            phi=[lrg.phi, lrg.phi + s.twist],
            x0=0,
            y0=0,
        )
    unit = render(None, (light,), n_pad, PIXEL_SCALE_ARCSEC, lrg_centre(lrg, size))[0]
    flux = mag_to_flux([lrg.mag_g, lrg.mag_r, lrg.mag_z])
    return np.stack([convolve_valid(unit * f, k) for f, k in zip(flux, cond.psf)])


N_EXPOSURES = 3
"""Exposures per band in a coadd (DR10 median depth: ~3 per band)."""


def coadd_unit_noise(shape, rng: np.random.Generator, n_exposures: int = N_EXPOSURES) -> np.ndarray:
    """Unit-variance Gaussian noise correlated as in a resampled coadd, shape ``(3, H, W)``.

    Each band averages ``n_exposures`` white-noise fields, each Lanczos-3 resampled by a random
    sub-pixel shift (the survey pipeline resamples every exposure onto the brick grid), then is
    rescaled so that every pixel has unit variance: the per-pixel noise is set by the depth, the
    correlation between neighbouring pixels by the resampling.
    """
    from scipy import signal

    from shortcutgates.simulate.kernels import lanczos3_weights

    bands, h, w = shape
    out = np.empty(shape, dtype=np.float64)
    for b in range(bands):
        field = np.zeros((h, w))
        power = 0.0
        for _ in range(n_exposures):
            wx, wy = lanczos3_weights(rng.uniform(0.0, 1.0, size=2))
            kernel = np.outer(wy, wx)
            field += signal.fftconvolve(rng.standard_normal((h + 5, w + 5)), kernel, mode="valid")
            power += float((kernel**2).sum())
        out[b] = field / np.sqrt(power)
    return out


def add_noise(image: np.ndarray, cond: Conditions, rng: np.random.Generator) -> np.ndarray:
    """Sky noise plus the object's photon noise, variance ``σ_sky² + max(I, 0) / gain`` per pixel,
    with the pixel-to-pixel correlation of a resampled coadd (:func:`coadd_unit_noise`)."""
    var = noise_variance(image, cond)
    return (image + coadd_unit_noise(image.shape, rng) * np.sqrt(var)).astype(np.float32)


def noise_variance(image: np.ndarray, cond: Conditions) -> np.ndarray:
    """Per-pixel noise variance of a noiseless image, shape of ``image``. Unit: nanomaggies²."""
    return cond.sky_sigma[:, None, None] ** 2 + np.maximum(image, 0) / cond.gain[:, None, None]


def source_sets(inj: Injection):
    """The source as two unit-flux Sérsic sets (smooth body, clumps) and their r-band fractions."""
    body = sersic_set(
        weight=1.0, r_eff=inj.src_reff, n=inj.src_n, q=inj.src_q, phi=inj.src_phi, x0=inj.src_x, y0=inj.src_y
    )
    if len(inj.clumps) == 0:
        return (body,), np.array([1.0]), np.zeros(1)
    frac = inj.clumps[:, 0]
    clumps = sersic_set(
        weight=frac / frac.sum(),
        r_eff=inj.clumps[:, 3],
        n=0.5,
        q=1.0,
        phi=0.0,
        x0=inj.src_x + inj.clumps[:, 1],
        y0=inj.src_y + inj.clumps[:, 2],
    )
    blue = float(np.average(inj.clumps[:, 4], weights=frac))
    return (body, clumps), np.array([1.0 - frac.sum(), frac.sum()]), np.array([0.0, blue])


def render_arc(
    inj: Injection,
    lrg_mag_r: float,
    cond: Conditions,
    size: int,
    centre: tuple[float, float] | None = None,
    pixel_source: PixelSource | None = None,
):
    """Noiseless PSF-convolved lensed arc, the lens centred on the LRG.

    ``centre`` is the lens centre on the padded grid (:func:`lrg_centre`); by default the centre
    of pixel (size//2, size//2). ``pixel_source`` (a placed library galaxy of unit flux) replaces
    the injection's Sérsic light; its colours and brightness are the injection's.

    Returns
    -------
    arc : ndarray, shape (3, size, size), float32
        Nanomaggies per pixel.
    magnification : float
        Lensed over intrinsic r-band flux of the source (before the PSF, over the padded grid).
    """
    n_pad = size + 2 * PSF_RADIUS
    lens = Lens(inj.theta_e, inj.lens_q, inj.lens_phi, inj.shear, inj.shear_phi)
    if pixel_source is None:
        sets, frac_r, blue = source_sets(inj)
    else:
        sets, frac_r, blue = (pixel_source,), np.array([1.0]), np.zeros(1)
    if centre is None:
        centre = float(size // 2 + PSF_RADIUS)
    unit = render(lens, sets, n_pad, PIXEL_SCALE_ARCSEC, centre)  # (S, H, W)
    flux_r = mag_to_flux(lrg_mag_r + inj.dmag)
    colours = np.array([inj.colour_gr, 0.0, -inj.colour_rz])  # m_b - m_r
    arc = np.empty((3, size, size), dtype=np.float32)
    for b in range(3):
        flux_b = flux_r * frac_r * 10 ** (-0.4 * (colours[b] - (blue if b == 0 else 0.0)))
        image = np.tensordot(flux_b.astype(np.float32), unit, axes=1)
        arc[b] = convolve_valid(image, cond.psf[b])
    magnification = float(np.dot(frac_r, unit.sum(axis=(1, 2), dtype=np.float64)))
    return arc, magnification


def arc_snr(arc_r: np.ndarray, var_r: np.ndarray, sigma_r: float) -> float:
    """Integrated r-band arc S/N: ``Σ_A a / sqrt(Σ_A var)`` over the aperture ``A = {a > σ_sky}``.

    ``a`` is the noiseless PSF-convolved arc and ``var`` the control's noise variance (sky plus
    LRG photon noise). 0 when no pixel of the arc exceeds the sky σ.
    """
    mask = arc_r > sigma_r
    if not mask.any():
        return 0.0
    return float(arc_r[mask].sum(dtype=np.float64) / np.sqrt(var_r[mask].sum(dtype=np.float64)))
