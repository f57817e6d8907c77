"""Reference scorers: models whose reading is known, to calibrate the model gates.

Each is a plain numpy callable ``f(images) -> scores``: ``images`` shape (N, 3, H, W), float32,
nanomaggies, the LRG on pixel (H//2, W//2); ``scores`` shape (N,), float64, higher = more
lens-like. No torch, no fitting: the same image always gets the same score, whatever else is in
the batch.

All read one map, the *asymmetric light* ``a = x − rot180(x)``: ``x`` is the band-summed stamp in
units of each band's outer-annulus noise (median subtracted, divided by 1.4826 · MAD, not
clipped). An LRG is symmetric under a 180° rotation about its centre, so it cancels; a lensed arc
or an off-centre counter-image does not. The map is cut to a range of radii *before* it is
smoothed (Gaussian σ = :data:`SMOOTH_SIGMA_PX`), so a reader of ``r_lo <= r < r_hi`` is blind,
to the bit, to every pixel outside that range. The score is the mean of the ``k`` highest
smoothed values in the range (a peak statistic: it rewards flux that is concentrated, so an arc
scores above the same flux spread round its ring).

* :func:`arc_reader`: reads ``R_CORE_PX <= r < ARC_MAX_PX`` only — a pure arc reader.
* :func:`core_reader`: reads ``r < R_CORE_PX`` only — a pure core (counter-image) reader.
* :func:`mixture_reader` ``(lam)``: ``lam · core / CORE_RESPONSE + (1 − lam) · arc / ARC_RESPONSE``:
  each reader divided by its median response to a simulated lens (stamp minus control score), so
  ``lam`` is the share of a typical lens's score increase that comes from the core.

See ``docs/model_gates.md`` for what the gates make of them.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

import numpy as np
from scipy.ndimage import gaussian_filter

from shortcutgates.model.preprocess import annulus_median_mad, radius_grid
from shortcutgates.gates.perturb import R_CORE_PX

ARC_MAX_PX = 16.0
"""Outer radius read by :func:`arc_reader` (θ_E ≤ 2.5″ = 9.5 px plus the arc's width and the
PSF). Unit: pixel."""

SMOOTH_SIGMA_PX = 1.0
"""σ of the Gaussian smoothing of the asymmetric map. Unit: pixel."""

TOP_K = {"arc": 12, "core": 4}
"""How many of the highest smoothed pixels each reader averages."""

MAD_TO_SIGMA = 1.4826

ARC_RESPONSE = 6.5
CORE_RESPONSE = 2.4
"""Median ``reader(stamp) − reader(ctrl)`` over simulated pairs (``simulate_frame(200, 1000 + s)``,
s = 0, 1: 6.78 / 6.26 for the arc reader, 2.35 / 2.42 for the core reader; command in
``docs/model_gates.md``). They put both readers of :func:`mixture_reader` on one scale."""

Scorer = Callable[[np.ndarray], np.ndarray]


def asymmetric_light(images: np.ndarray) -> np.ndarray:
    """``x − rot180(x)`` of the band-summed noise-normalised stamp, shape (N, H, W).

    ``x = Σ_b (image_b − median_b) / (1.4826 · MAD_b)`` over the outer annulus, divided by √3
    (unit: sky σ of the coadd). The rotation is about pixel (H//2, W//2); pixels without a
    partner (row 0 / column 0 of an even stamp) are 0.
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 4:
        raise ValueError(f"reference scorer: images must be (N, 3, H, W), got shape {images.shape}")
    median, mad = annulus_median_mad(images)
    x = ((images - median) / (MAD_TO_SIGMA * np.maximum(mad, 1e-12))).sum(axis=1) / np.sqrt(images.shape[1])
    n, h, w = x.shape
    cy, cx = h // 2, w // 2
    out = np.zeros_like(x)
    ys, xs = slice(max(0, 2 * cy - (h - 1)), h), slice(max(0, 2 * cx - (w - 1)), w)
    inner = x[:, ys, xs]
    out[:, ys, xs] = inner - inner[:, ::-1, ::-1]
    return out


@lru_cache(maxsize=16)
def _region(h: int, w: int, r_lo: float, r_hi: float) -> np.ndarray:
    r = radius_grid(h, w)
    mask = (r >= r_lo) & (r < r_hi)
    mask.setflags(write=False)
    return mask


def region_peak(images: np.ndarray, r_lo: float, r_hi: float, k: int) -> np.ndarray:
    """Mean of the ``k`` highest values of the smoothed asymmetric light in ``r_lo <= r < r_hi`` (px).

    The map is zeroed outside the range before smoothing: pixels outside it never change the score.
    Returns shape (N,), float64, in the units of :func:`asymmetric_light`.
    """
    a = asymmetric_light(images)
    region = _region(a.shape[-2], a.shape[-1], float(r_lo), float(r_hi))
    a = np.where(region, a, 0.0).astype(np.float32)
    smooth = gaussian_filter(a, sigma=(0, SMOOTH_SIGMA_PX, SMOOTH_SIGMA_PX), mode="constant")
    values = smooth[:, region]
    k = min(int(k), values.shape[1])
    top = np.partition(values, values.shape[1] - k, axis=1)[:, -k:]
    return top.mean(axis=1).astype(np.float64)


def arc_reader(images: np.ndarray) -> np.ndarray:
    """Pure arc reader: asymmetric light at ``R_CORE_PX <= r < ARC_MAX_PX``; blind to ``r < R_CORE_PX``."""
    return region_peak(images, R_CORE_PX, ARC_MAX_PX, TOP_K["arc"])


def core_reader(images: np.ndarray) -> np.ndarray:
    """Pure core reader: asymmetric light at ``r < R_CORE_PX`` (an off-centre counter-image); blind outside."""
    return region_peak(images, 0.0, R_CORE_PX, TOP_K["core"])


ARC_BLIND_RADII_PX = (2.0, 3.0, 4.0, 5.0)
"""Blind radii of the calibration's arc readers (:func:`arc_reader_blind_inside`). Unit: pixel."""


def arc_reader_blind_inside(r_blind: float) -> Scorer:
    """Arc reader blind inside ``r_blind`` px: asymmetric light at ``r_blind <= r < ARC_MAX_PX`` only."""
    r_blind = float(r_blind)

    def score(images: np.ndarray) -> np.ndarray:
        return region_peak(images, r_blind, ARC_MAX_PX, TOP_K["arc"])

    score.__name__ = f"arc_reader_blind{r_blind:g}"
    return score


def environment_conditioned_arc_reader(images: np.ndarray) -> np.ndarray:
    """A host-reliant reader: the arc reader's score, at full weight only on stamps whose surroundings (the mean
    r-band light at r ≥ 3/8 of the stamp, beyond any arc: sky level, neighbours) lie above zero, else at a
    quarter — the
    cue a network learns when positives sit in other fields than negatives. It reads no brightness of
    the LRG itself, so moving an arc onto another galaxy of the same brightness changes its score:
    ``arc_swap_auroc_drop`` fails it (tests/test_gates_model.py)."""
    x = np.asarray(images, np.float64)
    h, w = x.shape[-2:]
    yy, xx = np.indices((h, w))
    outer = np.hypot(yy - h // 2, xx - w // 2) >= 3 * h / 8
    surroundings = x[:, 1][:, outer].mean(axis=1)
    return arc_reader(images) * np.where(surroundings > 0, 1.0, 0.25)


RING_RADII_PX = (3.0, 16.0)
"""Radii read by :func:`ring_reader` and :func:`flux_per_ring_reader` (inside 3 px the PSF-blurred LRG
is itself a radial ridge). Unit: pixel."""
RING_SIGMA_RAD = 0.5
"""σ of the smoothing along the ring of :func:`ring_reader`. Unit: radian."""
N_AZIMUTH = 128


def _polar(x: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """(N, R, N_AZIMUTH) samples of the maps ``x`` (N, H, W) on circles of ``radii`` px (bilinear)."""
    from scipy.ndimage import map_coordinates

    n, h, w = x.shape
    phi = np.arange(N_AZIMUTH) * 2 * np.pi / N_AZIMUTH
    yy = h // 2 + radii[:, None] * np.sin(phi)[None]
    xx = w // 2 + radii[:, None] * np.cos(phi)[None]
    return np.stack([map_coordinates(m, [yy, xx], order=1, mode="nearest") for m in x])


def normalised_light(images: np.ndarray) -> np.ndarray:
    """Band-summed stamp in units of each band's outer-annulus noise, (N, H, W) (as :func:`asymmetric_light`)."""
    images = np.asarray(images, np.float32)
    median, mad = annulus_median_mad(images)
    return ((images - median) / (MAD_TO_SIGMA * np.maximum(mad, 1e-12))).sum(axis=1) / np.sqrt(images.shape[1])


def radial_ridge(images: np.ndarray) -> np.ndarray:
    """(N, R, N_AZIMUTH) positive radial ridge ``max(−∂²x/∂r², 0)`` of the smoothed normalised light on the
    circles ``r = 3 … 15`` px: rings and arcs are ridges in radius; a (convex) LRG profile is not."""
    x = gaussian_filter(normalised_light(images), sigma=(0, SMOOTH_SIGMA_PX, SMOOTH_SIGMA_PX))
    radii = np.arange(RING_RADII_PX[0] - 1, RING_RADII_PX[1] + 1)
    p = _polar(x, radii)
    return np.maximum(-(p[:, :-2] - 2 * p[:, 1:-1] + p[:, 2:]), 0.0)


def ring_reader(images: np.ndarray) -> np.ndarray:
    """Einstein-ring reader: the radial ridge smoothed along each circle (σ :data:`RING_SIGMA_RAD`), its
    maximum. Rates light that is coherent along a ring — a full ring or an arc — and not its shape
    across the ring; rates a smooth ring of an arc's flux as a lens (rightly)."""
    from scipy.ndimage import gaussian_filter1d

    ridge = radial_ridge(images)
    smooth = gaussian_filter1d(ridge, RING_SIGMA_RAD * N_AZIMUTH / (2 * np.pi), axis=-1, mode="wrap")
    return smooth.max(axis=(1, 2)).astype(np.float64)


def flux_per_ring_reader(images: np.ndarray) -> np.ndarray:
    """Flux-per-ring reader: the largest bump of the azimuthal-mean light profile between 3 and 15 px
    (``−Δ²`` of the 1-px ring means). Depends on the flux per ring only: blind to where round the ring
    the light lies (the proposal's "new shortcut" of a raw network)."""
    from shortcutgates.model.preprocess import ring_index

    x = normalised_light(images)
    n, h, w = x.shape
    rings = ring_index(h, w).ravel()
    counts = np.bincount(rings)
    means = np.stack([np.bincount(rings, row.ravel().astype(np.float64)) / counts for row in x])
    lo, hi = int(RING_RADII_PX[0]), int(RING_RADII_PX[1])
    bump = -(means[:, lo - 1 : hi - 1] - 2 * means[:, lo:hi] + means[:, lo + 1 : hi + 1])
    return bump.max(axis=1).astype(np.float64)


def mixture_reader(lam: float) -> Scorer:
    """``lam · core_reader / CORE_RESPONSE + (1 − lam) · arc_reader / ARC_RESPONSE``, ``0 <= lam <= 1``."""
    lam = float(lam)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"mixture_reader: lam must lie in [0, 1] (got {lam})")

    def score(images: np.ndarray) -> np.ndarray:
        return mix_scores(arc_reader(images) if lam < 1 else 0.0, core_reader(images) if lam > 0 else 0.0, lam)

    score.__name__ = f"mixture_reader_{lam:g}"
    return score


def mix_scores(arc, core, lam: float):
    """The mixture's score from the two readers' scores (arrays or dicts of arrays)."""
    if isinstance(arc, dict):
        return {k: mix_scores(arc[k], core[k], lam) for k in arc}
    return lam * np.asarray(core) / CORE_RESPONSE + (1.0 - lam) * np.asarray(arc) / ARC_RESPONSE


def constant_scorer(images: np.ndarray) -> np.ndarray:
    """Every image scores 0.5: a model that cannot detect anything."""
    return np.full(len(images), 0.5)


def random_scorer(images: np.ndarray) -> np.ndarray:
    """A score drawn from each image's bytes (deterministic, unrelated to lenses)."""
    import hashlib

    images = np.ascontiguousarray(images, np.float32)
    digests = [hashlib.sha1(im.tobytes()).digest()[:8] for im in images]
    return np.array([int.from_bytes(d, "little") / 2.0**64 for d in digests])
