"""Image perturbations of the model gates, as pure numpy functions on raw stamps.

All work on a batch ``(N, C, H, W)`` in nanomaggies and return a new float32 array; randomness
comes from an explicit ``np.random.Generator``.

* :func:`fill_matched_noise`: replace masked pixels by Gaussian noise whose mean and width are
  the stamp's own outer-annulus median and ``1.4826 · MAD`` (per band), so a mask adds no edge or
  flux cue of its own.
* :func:`mask_annulus`: such a fill inside ``r_in <= r < r_out`` (radii per stamp).
* :func:`transplant_core`: the central box of one stamp pasted into another.
* :func:`shuffle_rings`: pixels permuted within each 1-px ring (same permutation for all bands),
  keeping every ring's flux and destroying azimuthal shape.
"""

from __future__ import annotations

import numpy as np

from ..preprocess import annulus_median_mad, radius_grid, ring_index

MAD_TO_SIGMA = 1.4826
"""σ of a Gaussian per unit MAD."""


def fill_matched_noise(images: np.ndarray, masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Replace pixels under ``masks`` with noise matched to each stamp's outer annulus.

    Parameters
    ----------
    images : ndarray, shape (N, C, H, W). Unit: nanomaggies.
    masks : ndarray of bool, shape (N, H, W) or (H, W)
        True where pixels are replaced (all bands alike).
    rng : numpy.random.Generator

    Returns
    -------
    ndarray, float32, shape (N, C, H, W)
    """
    images = np.asarray(images, np.float32)
    masks = np.broadcast_to(np.asarray(masks, bool), (len(images),) + images.shape[-2:])
    median, mad = annulus_median_mad(images)  # (N, C, 1, 1)
    noise = median + MAD_TO_SIGMA * mad * rng.standard_normal(images.shape).astype(np.float32)
    return np.where(masks[:, None], noise, images).astype(np.float32)


def annulus_masks(shape: tuple[int, int], r_in: np.ndarray, r_out: np.ndarray) -> np.ndarray:
    """(N, H, W) bool: ``r_in[i] <= r < r_out[i]``. Radii unit: pixel."""
    r = radius_grid(*shape)
    r_in = np.asarray(r_in, np.float64)[:, None, None]
    r_out = np.asarray(r_out, np.float64)[:, None, None]
    return (r >= r_in) & (r < r_out)


def mask_annulus(images: np.ndarray, r_in: np.ndarray, r_out: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Matched-noise fill of an annulus per stamp (``r_in``, ``r_out``: shape (N,), pixel)."""
    images = np.asarray(images, np.float32)
    return fill_matched_noise(images, annulus_masks(images.shape[-2:], r_in, r_out), rng)


def box_slice(shape: tuple[int, int], box: int) -> tuple[slice, slice]:
    """The central ``box × box`` region (same convention as :func:`~shortcutgates.gates.probes.central_box`)."""
    h, w = shape
    y0, x0 = h // 2 - box // 2, w // 2 - box // 2
    return slice(y0, y0 + box), slice(x0, x0 + box)


def transplant_core(recipients: np.ndarray, donors: np.ndarray, box: int) -> np.ndarray:
    """Recipients with their central ``box × box`` pixels replaced by the donors' (row by row).

    Parameters
    ----------
    recipients, donors : ndarray, shape (N, C, H, W). Unit: nanomaggies.
    box : int. Unit: pixel.
    """
    out = np.array(recipients, np.float32, copy=True)
    ys, xs = box_slice(out.shape[-2:], box)
    out[..., ys, xs] = np.asarray(donors, np.float32)[..., ys, xs]
    return out


def shuffle_rings(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Permute each stamp's pixels within every 1-px ring (``floor(r)``), all bands alike.

    Each ring keeps its pixel values, hence its flux and radial profile; the azimuthal arrangement
    (the arc's shape) is destroyed.
    """
    images = np.asarray(images, np.float32)
    n, c, h, w = images.shape
    rings = ring_index(h, w).ravel().astype(np.float64)
    order = np.argsort(rings, kind="stable")  # pixels grouped by ring
    # rings + U[0, 1) keeps every pixel in its ring and orders it randomly within the ring
    perm = np.argsort(rings[None, :] + rng.random((n, h * w)), axis=1)
    flat = images.reshape(n, c, h * w)
    out = np.empty_like(flat)
    out[:, :, order] = np.take_along_axis(flat, perm[:, None, :], axis=2)
    return out.reshape(n, c, h, w)
