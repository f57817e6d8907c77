"""Paired counterfactuals of the model gates, as pure numpy functions on raw stamps.

A paired row carries its own counterfactual: ``d = stamp − ctrl`` is the injected lensed light
(the control's noise stays in the control). The model gates add parts of ``d`` back onto
controls, so every image they score is a real control plus real lensed light — no synthetic
noise, no masks, no pasted boxes:

* :func:`split_core_arc`: ``d`` inside ``r < r_core`` (the core part: counter-image, inner arc)
  and outside it (the arc part); ``ctrl + core`` is the positive with its arc taken out exactly.
* :func:`ring_mean`: ``d`` averaged round each 1-px ring (keeps its radial profile, its flux per
  ring and the PSF's smoothness along the ring; loses its shape).
* :func:`derangement`: for each pair, another LRG's pair, so an arc can be put on another galaxy.
* :func:`core_flux_share`: the share of ``d``'s flux inside ``r < r_core`` (lens physics, per row).

All take arrays ``(N, C, H, W)`` in nanomaggies with the LRG on pixel ``(H//2, W//2)`` and return
new float32 arrays; randomness comes from an explicit ``np.random.Generator``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..preprocess import radius_grid, ring_index

R_CORE_PX = 5.0
"""Core radius of the core/arc split: the central 10 × 10 box of the core-LR probe has its edges
at 5 px, and the counter-image at θ_E − β (1–3 px) plus a PSF half-width lies inside. An integer,
so the core is a union of whole 1-px rings and :func:`ring_mean` never mixes core and arc. Unit:
pixel."""


class Pairs(NamedTuple):
    """Positives with the control of their LRG, as positions into a sample."""

    stamp: np.ndarray
    """(P,) positions of the positives."""
    ctrl: np.ndarray
    """(P,) positions of each positive's control (several positives may share one)."""


def find_pairs(labels: np.ndarray, groups: np.ndarray) -> Pairs:
    """Positives that have a control (a negative of the same LRG), and that control's position.

    Groups with more than one distinct negative use the first (a sample keeps one control per LRG
    after deduplication).
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    neg = np.flatnonzero(labels == 0)
    ctrl_of: dict = {}
    for i in neg:
        ctrl_of.setdefault(groups[i], i)
    pos = np.array([i for i in np.flatnonzero(labels == 1) if groups[i] in ctrl_of], dtype=np.int64)
    return Pairs(pos, np.array([ctrl_of[groups[i]] for i in pos], dtype=np.int64))


def core_mask(shape: tuple[int, int], r_core: float) -> np.ndarray:
    """(H, W) bool: ``r < r_core`` around pixel (H//2, W//2). Unit: pixel."""
    return radius_grid(*shape) < float(r_core)


def split_core_arc(d: np.ndarray, r_core: float) -> tuple[np.ndarray, np.ndarray]:
    """``(core, arc)``: ``d`` with everything at ``r >= r_core`` zeroed, and the rest; ``core + arc == d``."""
    d = np.asarray(d, np.float32)
    inside = core_mask(d.shape[-2:], r_core)
    core = np.where(inside, d, 0.0).astype(np.float32)
    return core, (d - core).astype(np.float32)


def core_flux_share(d: np.ndarray, r_core: float) -> np.ndarray:
    """Share of the lensed light inside ``r < r_core``, per row: ``Σ_core d / Σ d`` over all bands.

    Shape (N,), float64; NaN where ``d`` carries no positive flux.
    """
    d = np.asarray(d, np.float64)
    inside = core_mask(d.shape[-2:], r_core)
    total = d.sum(axis=(1, 2, 3))
    core = d[..., inside].sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, core / np.where(total > 0, total, 1.0), np.nan)


def ring_mean(d: np.ndarray) -> np.ndarray:
    """Each 1-px ring (``floor(r)``) of each band replaced by its mean: same flux per ring, no shape.

    The lensed light is PSF-convolved, so its ring means change smoothly from ring to ring; the
    result is as smooth as the arc along the ring and keeps its radial profile to the pixel.
    """
    d = np.asarray(d, np.float32)
    n, c, h, w = d.shape
    rings = ring_index(h, w).ravel()
    n_rings = int(rings.max()) + 1
    counts = np.bincount(rings, minlength=n_rings).astype(np.float64)
    flat = d.reshape(n * c, h * w).astype(np.float64)
    sums = np.stack([np.bincount(rings, weights=row, minlength=n_rings) for row in flat])
    means = sums / counts
    return means[:, rings].reshape(n, c, h, w).astype(np.float32)


def derangement(groups: np.ndarray, rng: np.random.Generator, tries: int = 100) -> np.ndarray:
    """A permutation ``π`` of ``range(len(groups))`` with ``groups[π[i]] != groups[i]`` for every ``i``.

    Raises ``ValueError`` when fewer than two groups exist (no other galaxy to move an arc to).
    """
    groups = np.asarray(groups)
    n = len(groups)
    if len(np.unique(groups)) < 2:
        raise ValueError(f"an arc can only move to another galaxy with at least 2 LRGs (got {len(np.unique(groups))})")
    perm = rng.permutation(n)
    for _ in range(tries):
        same = np.flatnonzero(groups[perm] == groups)
        if len(same) == 0:
            return perm
        for i in same:  # swap with a random partner when that fixes i and breaks nothing
            j = int(rng.integers(n))
            if groups[perm[j]] != groups[i] and groups[perm[i]] != groups[j]:
                perm[i], perm[j] = perm[j], perm[i]
    same = groups[perm] == groups
    raise ValueError(f"no derangement found: {int(same.sum())} arcs stay on their own LRG (one LRG holds most pairs)")


class Counterfactuals(NamedTuple):
    """The counterfactual images of a set of pairs, each (P, C, H, W) float32, nanomaggies."""

    core_only: np.ndarray
    """``ctrl + core(d)``: the positive with its arc part taken out exactly."""
    arc_only: np.ndarray
    """``ctrl + arc(d)``: the positive with its core part taken out exactly."""
    swapped: np.ndarray
    """``ctrl[π] + d``: each pair's lensed light on another LRG's control."""
    ring_averaged: np.ndarray
    """``ctrl + core(d) + ring_mean(arc(d))``: the arc's light kept ring by ring, its shape gone."""
    swap_to: np.ndarray
    """(P,) the pair index whose control each arc was put on."""


def build_counterfactuals(stamps: np.ndarray, ctrls: np.ndarray, groups: np.ndarray, r_core: float,
                          rng: np.random.Generator) -> Counterfactuals:
    """All counterfactuals of the model gates for pairs ``(stamps[i], ctrls[i])`` of LRG ``groups[i]``."""
    stamps, ctrls = np.asarray(stamps, np.float32), np.asarray(ctrls, np.float32)
    d = stamps - ctrls
    core, arc = split_core_arc(d, r_core)
    perm = derangement(groups, rng)
    return Counterfactuals(ctrls + core, ctrls + arc, ctrls[perm] + d, ctrls + core + ring_mean(arc), perm)
