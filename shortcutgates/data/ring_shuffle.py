"""The survey team's azimuthal-shuffle negative: the arc's light moved along its rings in PSF-sized pieces.

:func:`shuffle_along_rings` permutes each 1-px ring's own pixels (so each ring's flux is kept exactly)
in pieces one PSF FWHM long, so the image stays as smooth as the PSF; ``build --hard-negatives shuffle``
(:mod:`shortcutgates.data.hard_negatives`) uses it.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np


def ring_shuffle_permutation(height: int, width: int, piece_px: float, rng: np.random.Generator) -> np.ndarray:
    """A permutation of the ``height * width`` pixels that moves PSF-sized pieces of each ring.

    Rings (``floor(r)``, 1 px wide) are grouped into bands ``piece_px`` wide; a band is cut into
    ``m = max(2, round(2π r_band / piece_px))`` equal sectors in angle, and its sectors are put back
    in a random order other than the identity — the same order for every ring of the band, so a
    piece keeps its radial shape. Within each ring the pixels, taken in angle order sector by
    sector, are re-laid in angle order: a permutation of the ring's own pixels, so each ring's flux
    is kept exactly.

    Returns
    -------
    ndarray of int64, shape (height * width,)
        ``out.ravel() = image.ravel()[perm]``.
    """
    geo = _ring_geometry(height, width)
    layout = _band_layout(height, width, max(float(piece_px), 1.0))
    where = np.empty(layout.n_slots, np.int64)  # per band, where each sector goes in the new order
    start = 0
    for m in layout.sectors:  # one draw per band, in band order
        order = rng.permutation(m)
        identity = np.arange(m)
        if (order == identity).all():
            order = np.roll(order, 1)
        where[start + order] = identity  # the argsort of the permutation
        start += m
    rank = where[layout.sector_slot]
    # within each ring (ring-major, stable): the ring's pixels in angle order, sector by sector in the new order
    perm = np.arange(height * width, dtype=np.int64)
    perm[geo.pixel] = geo.pixel[_stable_order(geo.ring * (int(max(layout.sectors, default=1)) + 1) + rank)]
    return perm


def _stable_order(key: np.ndarray) -> np.ndarray:
    """``np.argsort(key, kind="stable")`` of keys whose equal values are contiguous (each ring's sector is
    one run of its angle-ordered pixels), by counting: each run goes after the runs of smaller keys."""
    n = len(key)
    index = np.arange(n)
    new_run = np.empty(n, bool)
    new_run[:1] = True
    np.not_equal(key[1:], key[:-1], out=new_run[1:])
    run_start = np.maximum.accumulate(np.where(new_run, index, 0))
    counts = np.bincount(key, minlength=int(key.max(initial=0)) + 1)
    before = np.cumsum(counts) - counts  # entries with a smaller key
    order = np.empty(n, np.int64)
    order[before[key] + index - run_start] = index
    return order


class _Rings(NamedTuple):
    pixel: np.ndarray
    """(P,) every pixel, ring by ring (``floor(r)`` ascending), by angle within a ring."""
    ring: np.ndarray
    """(P,) the ring of each entry."""
    angle: np.ndarray
    """(P,) its angle as a fraction of a turn in [0, 1)."""
    radius: np.ndarray
    """(K+1,) mean radius of each ring (its index when empty)."""


class _Bands(NamedTuple):
    sectors: tuple
    """Sectors ``m`` of each non-empty band, in band order."""
    sector_slot: np.ndarray
    """(P,) index into the bands' concatenated sector tables of each entry of :class:`_Rings`."""
    n_slots: int
    """Sectors of all bands."""


@functools.lru_cache(maxsize=8)
def _ring_geometry(height: int, width: int) -> _Rings:
    """The pixels of the stamp grouped into 1-px rings and sorted by angle within each."""
    from shortcutgates.model.preprocess import radius_grid, ring_index

    rings = ring_index(height, width).ravel()
    yy, xx = np.mgrid[:height, :width]
    angle = (np.arctan2(yy - height // 2, xx - width // 2).ravel() + np.pi) / (2 * np.pi)
    angle = np.minimum(angle, np.nextafter(1.0, 0.0))
    radius = radius_grid(height, width).ravel()
    pixels, means = [], []
    for k in range(int(rings.max()) + 1):
        pix = np.flatnonzero(rings == k)
        pixels.append(pix[np.argsort(angle[pix], kind="stable")])
        means.append(float(radius[pix].mean()) if len(pix) else float(k))
    pixel = np.concatenate(pixels)
    return _Rings(pixel, rings[pixel], angle[pixel], np.asarray(means, np.float64))


def _band_layout(height: int, width: int, piece: float) -> _Bands:
    """Bands ``piece`` px wide over the rings, the sectors of each and every pixel's sector.

    Cached per band structure (which rings each band holds) and sector counts: many piece lengths give
    the same layout, and a build's donors each have their own PSF FWHM."""
    n_rings = len(_ring_geometry(height, width).radius)
    band_of_ring = np.floor(np.arange(n_rings) / piece).astype(np.int64)
    bands = _bands(height, width, band_of_ring.tobytes())
    m = np.maximum(2, np.round(2 * np.pi * np.maximum(bands.means, 0.5) / piece)).astype(np.int64)
    return _sector_layout(height, width, band_of_ring.tobytes(), m.tobytes())


class _BandRings(NamedTuple):
    band: np.ndarray
    """(P,) position of each entry's band among the non-empty bands."""
    means: np.ndarray
    """Mean radius of each non-empty band's rings (``np.mean`` of their mean radii)."""


@functools.lru_cache(maxsize=64)
def _bands(height: int, width: int, band_of_ring_bytes: bytes) -> _BandRings:
    geo = _ring_geometry(height, width)
    band_of_ring = np.frombuffer(band_of_ring_bytes, np.int64)
    bands = np.unique(band_of_ring)  # the non-empty bands, in order
    first = np.searchsorted(band_of_ring, bands)
    last = np.r_[first[1:], len(band_of_ring)]
    means = np.add.reduceat(geo.radius, first) / (last - first)  # each band's np.mean, in one call
    return _BandRings(np.searchsorted(bands, band_of_ring[geo.ring]), means)


@functools.lru_cache(maxsize=256)
def _sector_layout(height: int, width: int, band_of_ring_bytes: bytes, m_bytes: bytes) -> _Bands:
    geo = _ring_geometry(height, width)
    band = _bands(height, width, band_of_ring_bytes).band
    m = np.frombuffer(m_bytes, np.int64)
    offset = np.r_[0, np.cumsum(m)[:-1]]
    slot = offset[band] + np.floor(geo.angle * m[band]).astype(np.int64)
    return _Bands(tuple(int(v) for v in m), slot, int(m.sum()))


def shuffle_along_rings(arc: np.ndarray, piece_px: float, rng: np.random.Generator) -> np.ndarray:
    """The arc light of one stamp (C, H, W) with its pieces moved along their rings (all bands alike)."""
    c, h, w = arc.shape
    perm = ring_shuffle_permutation(h, w, piece_px, rng)
    return np.take(arc.reshape(c, h * w), perm, axis=1).reshape(c, h, w).astype(np.float32, copy=False)
