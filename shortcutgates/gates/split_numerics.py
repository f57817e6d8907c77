"""Batched numerics of the lensing split (:func:`shortcutgates.gates.perturb.split_lensed_light`).

The values of the straightforward computation, computed with less work: the rays of the re-render
shot once per mirror pair (the lens model is point-symmetric), sub-ray means as slice sums, the
Moffat kernels from the distinct sub-pixel radii of their grid, and every blur of a chunk in one
batched real FFT. ``tests/test_lensing_split_reference.py`` holds the straightforward version and
checks these against it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=8)
def sub_grid(h: int, w: int, pad: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Sky positions (arcsec) of ``k × k`` rays per pixel on the padded grid, shape (1, (h+2pad)(w+2pad)k²),
    float32, read-only (cached)."""
    from shortcutgates.data.schema import PIXEL_SCALE_ARCSEC

    sub = (np.arange(k) + 0.5) / k - 0.5
    ys = (np.arange(h + 2 * pad) - pad - h // 2)[:, None] + sub[None, :]
    xs = (np.arange(w + 2 * pad) - pad - w // 2)[:, None] + sub[None, :]
    y, x = np.meshgrid(ys.ravel(), xs.ravel(), indexing="ij")
    out = (
        (x.ravel()[None] * PIXEL_SCALE_ARCSEC).astype(np.float32),
        (y.ravel()[None] * PIXEL_SCALE_ARCSEC).astype(np.float32),
    )
    for a in out:
        a.flags.writeable = False
    return out


@lru_cache(maxsize=8)
def _mirror_plan(x_bytes: bytes, y_bytes: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(shot, mirrored, source)``: the rays to shoot (those without a mirror ray at exactly ``(-x, -y)``
    and the first of each mirror pair), the others, and the position in ``shot`` of each one's mirror."""
    x, y = np.frombuffer(x_bytes, np.float32), np.frombuffer(y_bytes, np.float32)
    where = {xy: i for i, xy in enumerate(zip(x.tolist(), y.tolist()))}
    mate = np.array([where.get((-a, -b), -1) for a, b in zip(x.tolist(), y.tolist())], np.int64)
    index = np.arange(len(x))
    shot = (mate < 0) | (index < mate)
    position = np.cumsum(shot) - 1
    return np.flatnonzero(shot), np.flatnonzero(~shot), position[mate[~shot]]


def ray_shoot_symmetric(grid: tuple[np.ndarray, np.ndarray], lens: list) -> tuple[np.ndarray, np.ndarray]:
    """:func:`~shortcutgates.simulate.kernels.ray_shoot` of the rays ``grid`` ((1, P) float32 each) through
    each row's lens (``theta_e, q, phi, gamma, phi_gamma``, (N, 1) float32), shape (N, P) float32.

    An SIE with external shear centred on the origin is point-symmetric, ``β(−θ) = −β(θ)``, and the
    simulator's float32 arithmetic keeps that exactly (rotations, square roots and the odd ``arctan`` /
    ``arctanh`` commute with a sign change; checked against the direct computation by
    ``tests/test_lensing_split_reference.py``); so each mirror pair of rays is shot once, which halves
    the work on the split's grid (its rays are symmetric but for two rows and two columns).
    """
    from shortcutgates.simulate.kernels import ray_shoot

    x, y = grid
    shot, mirrored, source = _mirror_plan(x.tobytes(), y.tobytes())
    sx, sy = ray_shoot(x[:, shot], y[:, shot], *lens)
    out = []
    for part in (sx, sy):
        full = np.empty((part.shape[0], x.shape[1]), np.float32)
        full[:, shot] = part
        full[:, mirrored] = -part[:, source]
        out.append(full)
    return out[0], out[1]


def mean_last(v: np.ndarray, dtype=None) -> np.ndarray:
    """Mean over a short last axis as a left-to-right sum of its slices (numpy's order for so few terms,
    so the same values), far faster than ``mean(axis=-1)`` over a strided axis of 2 elements."""
    acc = v[..., 0].astype(dtype or v.dtype)
    for j in range(1, v.shape[-1]):
        acc += v[..., j]
    return acc / v.shape[-1]


@lru_cache(maxsize=8)
def _kernel_radii(radius: int, oversample: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct sub-pixel radii of :func:`~shortcutgates.simulate.kernels.moffat_kernel`'s grid (px)
    and, per grid point, which one it is ((2R+1)·oversample)² indices; the grid is symmetric, so
    2 854 radii stand for 27 225 points at R = 16, oversample 5."""
    sub = (np.arange(oversample) + 0.5) / oversample - 0.5
    axis = (np.arange(-radius, radius + 1)[:, None] + sub[None, :]).ravel()
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    radii, which = np.unique(np.hypot(xx, yy), return_inverse=True)
    return radii, which.ravel()


def moffat_kernels(fwhm_arcsec: np.ndarray, beta: float, radius: int, oversample: int = 5) -> np.ndarray:
    """Pixel-integrated Moffat kernels, one per FWHM: the values of
    :func:`~shortcutgates.simulate.kernels.moffat_kernel` to float64 round-off (the same profile at the
    same sub-pixel points, averaged per pixel and normalised to sum 1), with the profile evaluated once
    per distinct sub-pixel radius. ``fwhm_arcsec``: (B,) arcsec. Returns (B, 2R+1, 2R+1) float64.
    """
    from shortcutgates.data.schema import PIXEL_SCALE_ARCSEC
    from shortcutgates.simulate.kernels import moffat_profile

    radii, which = _kernel_radii(radius, oversample)
    fwhm = np.asarray(fwhm_arcsec, np.float64).reshape(-1, 1) / PIXEL_SCALE_ARCSEC
    prof = moffat_profile(radii[None], fwhm, np.float64(beta))
    size = 2 * radius + 1
    k = prof[:, which].reshape(-1, size, oversample, size, oversample).mean(axis=(2, 4))
    k /= k.sum(axis=(1, 2), keepdims=True)
    return k


def blur(maps: np.ndarray, kernels: np.ndarray, pad: int) -> np.ndarray:
    """(N, M, h+2pad, w+2pad) maps blurred with each row's (N, C, K, K) kernels, cropped to (N, M, C, h, w).

    The "same"-mode convolution of :func:`scipy.signal.fftconvolve`, as one batched real FFT: each map
    and each kernel is transformed once and every map × kernel product inverted in one call. The cyclic
    convolution on ``L ≥ h + pad + R`` points (``R = (K-1)/2``) equals the linear one on the crop.
    """
    from scipy import fft

    n, m, hp, wp = maps.shape
    r = (kernels.shape[-1] - 1) // 2
    h, w = hp - 2 * pad, wp - 2 * pad
    size = (fft.next_fast_len(h + pad + r, real=True), fft.next_fast_len(w + pad + r, real=True))
    spec = fft.rfft2(maps, s=size)[:, :, None] * fft.rfft2(kernels, s=size)[:, None]
    out = fft.irfft2(spec, s=size)
    return out[..., pad + r : pad + r + h, pad + r : pad + r + w]
