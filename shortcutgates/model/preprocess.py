"""Deterministic preprocessing of stamps (docs/design.md#preprocessing), as pure numpy functions.

Both modes work on a single stamp ``(3, H, W)`` or a batch ``(N, 3, H, W)`` and return float32 of
the same shape. The stamp centre (the LRG) is pixel ``(H // 2, W // 2)``.

* ``raw_robust``: per image and band, subtract the median and divide by the MAD (median absolute
  deviation, unscaled) of the outer annulus ``20 <= r < 32`` px for a 64-px stamp (radii scale with
  the stamp size), then clip to ±50.
* ``residual``: ``raw_robust``, then subtract the azimuthal-median profile computed in 1-px rings
  (ring ``k`` holds the pixels with ``k <= r < k + 1``).

The mode name is recorded in the checkpoint; the gates apply the same function to their inputs.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

import numpy as np

CLIP = 50.0
"""Clip level of ``raw_robust`` output. Unit: annulus MADs."""

ANNULUS_FRACTION = (20.0 / 64.0, 32.0 / 64.0)
"""Inner and outer annulus radius as fractions of the stamp side (20 and 32 px at 64 px)."""


@lru_cache(maxsize=16)
def radius_grid(height: int, width: int) -> np.ndarray:
    """Distance of every pixel from the stamp centre ``(height // 2, width // 2)``.

    Returns
    -------
    ndarray, shape (height, width), float64. Unit: pixel. Read-only (cached).
    """
    y, x = np.mgrid[:height, :width]
    r = np.hypot(y - height // 2, x - width // 2)
    r.setflags(write=False)
    return r


def annulus_radii(height: int, width: int) -> tuple[float, float]:
    """Inner and outer radius of the normalisation annulus. Unit: pixel."""
    side = min(height, width)
    return ANNULUS_FRACTION[0] * side, ANNULUS_FRACTION[1] * side


def annulus_mask(height: int, width: int) -> np.ndarray:
    """Boolean ``(height, width)`` mask of the outer annulus used for normalisation and noise."""
    r = radius_grid(height, width)
    r_in, r_out = annulus_radii(height, width)
    return (r >= r_in) & (r < r_out)


def annulus_median_mad(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and (unscaled) MAD of the outer annulus, per image and band.

    Parameters
    ----------
    images : ndarray, shape (..., H, W)

    Returns
    -------
    median, mad : ndarray, shape (..., 1, 1), same unit as ``images``.
    """
    images = np.asarray(images, dtype=np.float32)
    mask = annulus_mask(*images.shape[-2:])
    if images.ndim < 3 or len(images) < 2 * MEDIAN_CHUNK:
        return _annulus_median_mad(images, mask)
    from shortcutgates.parallel import thread_map  # batches of stamps on threads: each stamp's values as in one pass

    parts = thread_map(
        lambda i: _annulus_median_mad(images[i : i + MEDIAN_CHUNK], mask), range(0, len(images), MEDIAN_CHUNK)
    )
    return np.concatenate([m for m, _ in parts]), np.concatenate([d for _, d in parts])


MEDIAN_CHUNK = 256
"""Stamps per batch of :func:`annulus_median_mad` (its threads take one batch at a time)."""


def _annulus_median_mad(images: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pix = images[..., mask]
    median = np.median(pix, axis=-1, keepdims=True, overwrite_input=True)  # pix is a copy: partition it
    mad = np.median(np.abs(pix - median), axis=-1, keepdims=True, overwrite_input=True)
    return median[..., None], mad[..., None]


def raw_robust(images: np.ndarray, median_mad: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Outer-annulus median/MAD normalisation, clipped to ±50 (docs/design.md#preprocessing).

    Parameters
    ----------
    images : ndarray, shape (3, H, W) or (N, 3, H, W). Unit: nanomaggies.
    median_mad : the images' :func:`annulus_median_mad`, when already measured (the same floats).

    Returns
    -------
    ndarray, float32, same shape. Unit: annulus MADs.

    Raises
    ------
    ValueError
        If a band's annulus MAD is zero (a constant or all-zero stamp, e.g. a failed cutout):
        such a stamp cannot be normalised and must be caught by the ``data_integrity`` gate.
    """
    images = np.asarray(images, dtype=np.float32)
    median, mad = annulus_median_mad(images) if median_mad is None else median_mad
    if not (mad > 0).all():
        bad = np.argwhere(~(mad[..., 0, 0] > 0))[0]
        raise ValueError(
            f"raw_robust: outer-annulus MAD is 0 at index {tuple(int(i) for i in bad)} "
            "(constant or all-zero stamp; it cannot be normalised)"
        )
    return np.clip((images - median) / mad, -CLIP, CLIP).astype(np.float32)


def ring_index(height: int, width: int) -> np.ndarray:
    """Integer 1-px ring of every pixel: ``floor(r)``. Shape ``(height, width)``."""
    return np.floor(radius_grid(height, width)).astype(np.int64)


def azimuthal_median_profile(images: np.ndarray) -> np.ndarray:
    """Median of every 1-px ring around the centre.

    Parameters
    ----------
    images : ndarray, shape (..., H, W)

    Returns
    -------
    ndarray, shape (..., n_rings), float32, with ``n_rings = max(floor(r)) + 1``.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim < 3 or len(images) < 2 * MEDIAN_CHUNK:
        return _ring_medians(images)
    from shortcutgates.parallel import thread_map  # batches of stamps on threads: each stamp's values as in one pass

    return np.concatenate(
        thread_map(lambda i: _ring_medians(images[i : i + MEDIAN_CHUNK]), range(0, len(images), MEDIAN_CHUNK))
    )


def _ring_medians(images: np.ndarray) -> np.ndarray:
    rings = ring_index(*images.shape[-2:]).ravel()
    order = np.argsort(rings, kind="stable")  # ring by ring, each ring's pixels in raster order
    ends = np.cumsum(np.bincount(rings))
    pix = images.reshape(images.shape[:-2] + (-1,))[..., order]
    out = np.empty(images.shape[:-2] + (len(ends),), np.float32)
    for k, (start, end) in enumerate(zip(np.r_[0, ends[:-1]], ends)):
        out[..., k] = np.median(pix[..., start:end], axis=-1)
    return out


def subtract_radial_profile(images: np.ndarray) -> np.ndarray:
    """``images`` minus their azimuthal-median profile painted back onto the pixel grid."""
    images = np.asarray(images, dtype=np.float32)
    profile = azimuthal_median_profile(images)
    return (images - profile[..., ring_index(*images.shape[-2:])]).astype(np.float32)


def residual(images: np.ndarray, median_mad: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """``raw_robust`` followed by subtraction of the azimuthal-median profile (docs/design.md#preprocessing)."""
    return subtract_radial_profile(raw_robust(images, median_mad))


PREPROCESSORS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "raw_robust": raw_robust,
    "residual": residual,
}
"""Registry of deterministic preprocessing modes, by the name recorded in checkpoints."""


def get_preprocessor(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """Look up a preprocessing mode by name, with a clear error for an unknown one."""
    try:
        return PREPROCESSORS[name]
    except KeyError:
        raise ValueError(f"preprocess: mode must be one of {', '.join(PREPROCESSORS)} (got {name!r})") from None
