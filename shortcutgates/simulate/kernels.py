"""Physics kernels: Sérsic light, SIE + external shear deflection, Moffat PSF.

Pure functions over numpy arrays. Every argument broadcasts, so a batch of ``B`` systems is
evaluated at once by giving parameters shape ``(B, 1)`` and coordinates shape ``(B, N)``.
Angles on the sky are in arcsec, position angles in radians counter-clockwise from +x, and
surface brightness in flux units per arcsec² (nanomaggies / arcsec² in the simulator).

Conventions (the same as lenstronomy, which the tests use as an independent oracle)
-------------------------------------------------------------------------------------
* Elliptical radius ``R = sqrt(q x'² + y'²/q)``, with ``(x', y')`` the coordinates rotated so
  that the major axis lies along ``x'``. A radius in this metric is the geometric mean of the
  semi-axes, so ``R_e`` of a Sérsic profile is the geometric-mean (circularised) half-light
  radius, and an ellipse ``R = r`` encloses the area ``π r²``.
* Ellipticity ``e = (1 - q) / (1 + q)`` (lenstronomy's ``sqrt(e1² + e2²)``).
"""

from __future__ import annotations

import numpy as np
from scipy import special

ARCSEC = 1.0
"""Angular unit of every kernel: arcsec."""


# --- geometry -------------------------------------------------------------------------------
def rotate(x, y, phi):
    """Rotate coordinates into a frame whose x' axis lies at position angle ``phi``.

    ``x' = cos φ x + sin φ y``, ``y' = -sin φ x + cos φ y``.

    Parameters
    ----------
    x, y : array_like
        Coordinates. Unit: arcsec.
    phi : array_like
        Position angle of the new x' axis, counter-clockwise from +x. Unit: rad.
    """
    c, s = np.cos(phi), np.sin(phi)
    return c * x + s * y, -s * x + c * y


def elliptical_radius(x, y, q, phi):
    """Geometric-mean elliptical radius ``R = sqrt(q x'² + y'²/q)``. Unit: arcsec.

    Parameters
    ----------
    x, y : array_like
        Offsets from the profile centre. Unit: arcsec.
    q : array_like
        Axis ratio b/a in (0, 1].
    phi : array_like
        Position angle of the major axis. Unit: rad.
    """
    xr, yr = rotate(x, y, phi)
    return np.sqrt(q * xr * xr + yr * yr / q)


def q_from_e(e):
    """Axis ratio from ellipticity: ``q = (1 - e) / (1 + e)``."""
    e = np.asarray(e)
    return (1.0 - e) / (1.0 + e)


# --- Sérsic light -------------------------------------------------------------------------
def sersic_b(n):
    """Exact Sérsic ``b_n``: the root of ``γ(2n, b_n) = Γ(2n) / 2`` (Ciotti & Bertin 1999).

    With this ``b_n`` the radius ``R_e`` encloses exactly half of the total light.
    """
    return special.gammaincinv(2.0 * np.asarray(n, dtype=np.float64), 0.5)


def sersic_total_flux(amp, r_eff, n, b_n=None):
    """Total flux of an elliptical Sérsic profile with surface brightness ``amp`` at ``R_e``.

    ``F = 2π n R_e² I_e e^{b_n} b_n^{-2n} Γ(2n)`` (Graham & Driver 2005, eq. 4, with the
    geometric-mean radius, whose ellipses enclose ``π R²``).

    Parameters
    ----------
    amp : array_like
        Surface brightness at ``R_e``. Unit: flux / arcsec².
    r_eff : array_like
        Geometric-mean half-light radius. Unit: arcsec.
    n : array_like
        Sérsic index.
    b_n : array_like, optional
        Defaults to the exact :func:`sersic_b`.

    Returns
    -------
    ndarray
        Total flux. Unit: flux.
    """
    n = np.asarray(n, dtype=np.float64)
    b = sersic_b(n) if b_n is None else np.asarray(b_n, dtype=np.float64)
    log_f = np.log(2 * np.pi * n) + 2 * np.log(r_eff) + b - 2 * n * np.log(b) + special.gammaln(2 * n)
    return np.asarray(amp) * np.exp(log_f)


def sersic_amp_for_flux(flux, r_eff, n, b_n=None):
    """Surface brightness at ``R_e`` that gives total flux ``flux`` (inverse of :func:`sersic_total_flux`)."""
    return np.asarray(flux) / sersic_total_flux(1.0, r_eff, n, b_n)


def sersic(x, y, amp, r_eff, n, q, phi, x0=0.0, y0=0.0, b_n=None):
    """Elliptical Sérsic surface brightness.

    ``I(R) = I_e exp(-b_n [(R / R_e)^{1/n} - 1])`` with ``R`` the geometric-mean elliptical
    radius (Sérsic 1963; Graham & Driver 2005, eq. 1).

    Parameters
    ----------
    x, y : array_like
        Positions. Unit: arcsec.
    amp : array_like
        Surface brightness ``I_e`` at ``R_e``. Unit: flux / arcsec².
    r_eff : array_like
        Geometric-mean half-light radius ``R_e``. Unit: arcsec.
    n : array_like
        Sérsic index.
    q, phi : array_like
        Axis ratio and major-axis position angle (rad).
    x0, y0 : array_like
        Centre. Unit: arcsec.
    b_n : array_like, optional
        Defaults to the exact :func:`sersic_b` (pass lenstronomy's ``1.9992 n - 0.3271`` to
        reproduce its profiles).

    Returns
    -------
    ndarray
        Surface brightness, broadcast shape of the inputs. Unit: flux / arcsec².
    """
    b = sersic_b(n) if b_n is None else b_n
    r = elliptical_radius(np.subtract(x, x0), np.subtract(y, y0), q, phi)
    dtype = np.result_type(r, np.float32)
    expo = -np.asarray(b, dtype=dtype) * (
        np.power(r / np.asarray(r_eff, dtype=dtype), np.asarray(1.0 / np.asarray(n), dtype=dtype)) - 1
    )
    return np.asarray(amp, dtype=dtype) * np.exp(expo)


# --- SIE + external shear -------------------------------------------------------------------
_Q_SPHERICAL = 1e-4


def sie_deflection(x, y, theta_e, q, phi, x0=0.0, y0=0.0):
    """Deflection of a singular isothermal ellipsoid.

    Convergence ``κ = θ_E / (2 sqrt(q x'² + y'²/q))`` (so κ = ½ on the Einstein ellipse
    ``q x'² + y'²/q = θ_E²``; lenstronomy's ``SIE``). In the frame of the major axis, with
    ``ψ = sqrt(q² x'² + y'²)`` and ``b = θ_E sqrt(q)`` (Kormann et al. 1994; Keeton 2001,
    eq. for the SIE with zero core):

    ``α_x' = b / sqrt(1 - q²) · arctan(sqrt(1 - q²) x' / ψ)``,
    ``α_y' = b / sqrt(1 - q²) · artanh(sqrt(1 - q²) y' / ψ)``,

    which tends to the SIS ``α = θ_E x / |x|`` as q → 1 (used for ``1 - q < 1e-4``).

    Parameters
    ----------
    x, y : array_like
        Image-plane positions. Unit: arcsec.
    theta_e : array_like
        Einstein radius (geometric-mean convention). Unit: arcsec.
    q, phi : array_like
        Axis ratio of the mass and position angle of its major axis (rad).
    x0, y0 : array_like
        Lens centre. Unit: arcsec.

    Returns
    -------
    alpha_x, alpha_y : ndarray
        Deflection angles. Unit: arcsec.
    """
    dx, dy = np.subtract(x, x0), np.subtract(y, y0)
    xr, yr = rotate(dx, dy, phi)
    dtype = xr.dtype
    q = np.minimum(np.asarray(q, dtype=dtype), 1.0)
    theta_e = np.asarray(theta_e, dtype=dtype)
    tiny = np.finfo(dtype).tiny ** 0.25
    spherical = (1.0 - q) < _Q_SPHERICAL
    if np.ndim(spherical) == 0 and spherical:  # one spherical lens: the SIS alone
        ax, ay = _sis(xr, yr, theta_e, tiny)
    else:
        qs = np.where(spherical, 0.5, q)  # any q < 1 keeps the elliptical branch finite
        s = np.sqrt(1.0 - qs * qs)
        psi = np.sqrt(qs * qs * xr * xr + yr * yr) + tiny
        scale = theta_e * np.sqrt(qs) / s
        ax = scale * np.arctan(s * xr / psi)
        ay = scale * np.arctanh(np.clip(s * yr / psi, -1 + 1e-7, 1 - 1e-7))
        if np.any(spherical):
            sx, sy = _sis(xr, yr, theta_e, tiny)
            ax, ay = np.where(spherical, sx, ax), np.where(spherical, sy, ay)
    c, sn = np.cos(phi), np.sin(phi)
    return c * ax - sn * ay, sn * ax + c * ay


def _sis(xr, yr, theta_e, tiny):
    r = np.sqrt(xr * xr + yr * yr) + tiny
    return theta_e * xr / r, theta_e * yr / r


def shear_deflection(x, y, gamma, phi_gamma, x0=0.0, y0=0.0):
    """Deflection of an external shear, ``α = (γ₁ x + γ₂ y, γ₂ x - γ₁ y)``.

    ``γ₁ = γ cos 2φ_γ``, ``γ₂ = γ sin 2φ_γ`` (lenstronomy's ``SHEAR``; Schneider, Ehlers &
    Falco 1992, ch. 8).

    Parameters
    ----------
    x, y : array_like
        Image-plane positions. Unit: arcsec.
    gamma : array_like
        Shear strength (dimensionless).
    phi_gamma : array_like
        Shear position angle. Unit: rad.
    x0, y0 : array_like
        Reference point (the deflection vanishes there). Unit: arcsec.
    """
    g1 = gamma * np.cos(2 * np.asarray(phi_gamma))
    g2 = gamma * np.sin(2 * np.asarray(phi_gamma))
    dx, dy = np.subtract(x, x0), np.subtract(y, y0)
    dtype = np.result_type(dx, np.float32)
    g1, g2 = np.asarray(g1, dtype=dtype), np.asarray(g2, dtype=dtype)
    return g1 * dx + g2 * dy, g2 * dx - g1 * dy


def ray_shoot(x, y, theta_e, q, phi, gamma, phi_gamma):
    """Map image-plane positions to the source plane: ``β = θ - α_SIE(θ) - α_shear(θ)``.

    The lens (SIE and shear) is centred on the origin. Units: arcsec; angles in rad.

    Returns
    -------
    beta_x, beta_y : ndarray
        Source-plane positions. Unit: arcsec.
    """
    ax, ay = sie_deflection(x, y, theta_e, q, phi)
    sx, sy = shear_deflection(x, y, gamma, phi_gamma)
    return x - ax - sx, y - ay - sy


# --- PSF ------------------------------------------------------------------------------------
def moffat_alpha(fwhm, beta):
    """Moffat core width ``α = FWHM / (2 sqrt(2^{1/β} - 1))``. Unit: that of ``fwhm``."""
    return np.asarray(fwhm) / (2.0 * np.sqrt(np.power(2.0, 1.0 / np.asarray(beta)) - 1.0))


def moffat_profile(r, fwhm, beta):
    """Normalised circular Moffat profile ``(β-1)/(π α²) (1 + r²/α²)^{-β}`` (Moffat 1969).

    Parameters
    ----------
    r : array_like
        Radius. Unit: arcsec (or pixels, consistently with ``fwhm``).
    fwhm : array_like
        Full width at half maximum. Same unit as ``r``.
    beta : array_like
        Moffat power index (> 1).

    Returns
    -------
    ndarray
        Density per unit area; integrates to 1 over the plane.
    """
    a = moffat_alpha(fwhm, beta)
    return (beta - 1.0) / (np.pi * a * a) * np.power(1.0 + (np.asarray(r) / a) ** 2, -beta)


def moffat_kernel(fwhm_pix, beta=3.5, radius=16, oversample=5):
    """Pixel-integrated Moffat PSF kernels, normalised to sum to 1.

    Each pixel value is the mean of the profile over ``oversample²`` sub-pixel points
    (pixel integration), the kernel is truncated at ``radius`` pixels and renormalised.

    Parameters
    ----------
    fwhm_pix : array_like, shape (B,) or scalar
        FWHM. Unit: pixel.
    beta : float or array_like, shape (B,)
        Moffat index.
    radius : int
        Half-size; the kernel is ``(2 radius + 1)²`` pixels.
    oversample : int
        Sub-pixel samples per axis for the pixel integration.

    Returns
    -------
    ndarray, shape (B, 2 radius + 1, 2 radius + 1) (or 2-D for a scalar FWHM), float64
        Kernels whose entries sum to 1.
    """
    scalar = np.ndim(fwhm_pix) == 0
    fwhm = np.atleast_1d(np.asarray(fwhm_pix, dtype=np.float64))[:, None, None]
    beta = np.broadcast_to(np.asarray(beta, dtype=np.float64), fwhm.shape[:1])[:, None, None]
    sub = (np.arange(oversample) + 0.5) / oversample - 0.5
    axis = (np.arange(-radius, radius + 1)[:, None] + sub[None, :]).ravel()
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    prof = moffat_profile(np.hypot(xx, yy)[None], fwhm, beta)
    size = 2 * radius + 1
    k = prof.reshape(-1, size, oversample, size, oversample).mean(axis=(2, 4))
    k /= k.sum(axis=(1, 2), keepdims=True)
    return k[0] if scalar else k


# --- resampling -----------------------------------------------------------------------------
def lanczos3_weights(shift):
    """Lanczos-3 interpolation weights for a sub-pixel shift, normalised to sum to 1.

    ``L(x) = sinc(x) sinc(x / 3)`` for ``|x| < 3`` (Duchon 1979), evaluated at the six taps
    ``k - shift`` for ``k = -2 … 3``.

    Parameters
    ----------
    shift : array_like, shape (...)
        Sub-pixel shift in [0, 1). Unit: pixel.

    Returns
    -------
    ndarray, shape (..., 6)
    """
    x = np.arange(-2, 4) - np.asarray(shift, dtype=np.float64)[..., None]
    w = np.sinc(x) * np.sinc(x / 3.0) * (np.abs(x) < 3)
    return w / w.sum(axis=-1, keepdims=True)
