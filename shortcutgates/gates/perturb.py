"""Paired counterfactuals of the model gates, as pure numpy functions on raw stamps.

A paired row carries its own counterfactual: ``d = stamp − ctrl`` is the injected lensed light
(the control's noise stays in the control). The model gates add parts of ``d`` back onto
controls, so every image they score is a real control plus real lensed light — no synthetic
noise, no masks, no pasted boxes:

* :func:`split_lensed_light`: ``d`` split by lensing into the counter-image(s) (inside the tangential
  critical curve, before the PSF) and the arc(s), from the injection truth; decidable per pair.
  ``ctrl + counter`` is the positive with its arc taken out, ``ctrl + arc`` with its counter-image.
* :func:`scramble_along_ring`: the arc cut into PSF-sized patches shuffled round its rings (the
  morphology counterfactual: same flux per ring, neither arc nor ring).
* :func:`split_core_arc`: the old radius split, ``d`` inside ``r < r_core`` and outside it (kept for
  the data probes' and experiments' core box; the model gates no longer use it).
* :func:`ring_mean`: ``d`` averaged round each 1-px ring (keeps its radial profile, its flux per
  ring and the PSF's smoothness along the ring; loses its shape).
* :func:`derangement`: for each pair, another LRG's pair, so an arc can be put on another galaxy;
  :func:`brightness_matched_swap`: the same, onto an LRG of nearly the same brightness (the arc-swap gate).
* :func:`core_flux_share`: the share of ``d``'s flux inside ``r < r_core`` (lens physics, per row).

All take arrays ``(N, C, H, W)`` in nanomaggies with the LRG on pixel ``(H//2, W//2)`` and return
new float32 arrays; randomness comes from an explicit ``np.random.Generator``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from shortcutgates.model.preprocess import radius_grid, ring_index
from shortcutgates.gates.split_numerics import blur, mean_last, moffat_kernels, ray_shoot_symmetric, sub_grid

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


def brightness_matched_swap(groups: np.ndarray, brightness: np.ndarray) -> np.ndarray:
    """For each pair, a pair of **another LRG of nearly the same brightness**, whose control its arc moves to.

    The LRGs, ordered by ``brightness`` (ties by LRG), are partnered with their neighbour — 1st with 2nd,
    3rd with 4th, …, an odd last three in a cycle — so a swap never crosses more than two places of the
    brightness order. The ``k``-th pair of an LRG goes to the ``k``-th pair (cyclically) of its partner.
    Deterministic. Why matched: an injected arc's flux is set against its host (the simulator's
    ``src_dmag``; survey injections likewise), so an arc moved onto a much brighter or fainter galaxy has a
    contrast no training lens had, and a good lens finder rightly scores it differently (a random swap
    cost a core-neutral raw CNN 0.05 AUROC at θ_E < 1″ on the development seed, a brightness-matched one
    nothing: docs/model_gates.md). Dependence on the host's *brightness* is the data gates' claim
    (property balance); this swap asks whether the score depends on *which* galaxy the arc lies on.

    Parameters
    ----------
    groups : (P,) LRG of each pair.
    brightness : (P,) the host's brightness per pair (any monotone measure, e.g. its r-band flux or
        minus its magnitude; NaN sorts last). Pairs of one LRG share its value (the first is used).

    Returns (P,) int64 indices into the pairs. Raises ``ValueError`` with fewer than two LRGs.
    """
    groups = np.asarray(groups)
    lrgs, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    if len(lrgs) < 2:
        raise ValueError(f"an arc can only move to another galaxy with at least 2 LRGs (got {len(lrgs)})")
    value = np.asarray(brightness, np.float64)[first]
    order = np.lexsort((np.arange(len(lrgs)), np.nan_to_num(value, nan=np.inf)))
    partner = np.empty(len(lrgs), np.int64)
    even = len(order) - (3 if len(order) % 2 else 0)
    partner[order[0:even:2]], partner[order[1:even:2]] = order[1:even:2], order[0:even:2]
    if len(order) % 2:
        a, b, c = order[-3:]
        partner[[a, b, c]] = [b, c, a]
    members = [np.flatnonzero(inverse == g) for g in range(len(lrgs))]
    rank = np.empty(len(groups), np.int64)
    for rows in members:
        rank[rows] = np.arange(len(rows))
    target = partner[inverse]
    return np.array([members[t][k % len(members[t])] for t, k in zip(target, rank)], np.int64)


# --- the lensing split: counter-image(s) vs arc(s) ------------------------------------------------
TRUTH_COLUMNS: tuple[str, ...] = (
    "theta_e_arcsec",
    "lens_e",
    "lens_phi_rad",
    "shear",
    "shear_phi_rad",
    "src_x_arcsec",
    "src_y_arcsec",
    "src_reff_arcsec",
    "src_n",
    "src_q",
    "src_phi_rad",
)
"""Injection truth the lensing split re-renders from (SIE + external shear, one Sérsic source;
``docs/design.md#paired-input-format``). A row missing any of them (or non-finite) is undecidable."""

PSF_COLUMNS: tuple[str, ...] = ("psf_fwhm_used_g", "psf_fwhm_used_r", "psf_fwhm_used_z")
"""Per-band PSF FWHM (arcsec) of a row: the split blurs each part with a Moffat (β = 3.5) of the width of
the bands :data:`SPLIT_PSF_BANDS` (all three must be finite and positive for a row to be decidable)."""

SPLIT_PAD_PX = 4
"""Pixels rendered beyond each stamp edge, so light just outside the stamp blurs in. Unit: pixel."""
SPLIT_OVERSAMPLE = 2
"""Rays per pixel and axis of the re-render (a fraction map needs no more; the split error is tested)."""
SPLIT_PSF_RADIUS = 16
"""Half-size of the Moffat kernels of the split. Unit: pixel."""
SPLIT_MOFFAT_BETA = 3.5
"""Moffat index of the split's PSF (the simulator's; ``simulate.population.MOFFAT_BETA``)."""
SPLIT_PSF_BANDS: tuple[int, ...] = (1,)
"""Bands (into :data:`PSF_COLUMNS`) whose PSF blurs the split's parts: the r band's alone, for every band.
That is what the split has computed since it was written (issue 19): ``scipy.signal.fftconvolve`` in
``"same"`` mode crops every axis to its first input's shape, so the (N, 1) maps blurred with (N, 3)
kernels kept the middle (r) band's blur only. ``(0, 1, 2)`` blurs each band with its own PSF (closer to
the simulator's parts: tests/test_gates_perturb.py; it changes the split, so the gates' numbers).
"""
COMPONENT_FLOOR = 0.05
"""Pre-PSF light above this share of its brightest pixel forms the image components."""
MERGE_SHARE = 0.10
"""A pre-PSF image component holding at least this share of its light on *each* side of the
tangential critical curve is one merging arc (a fold or cusp image pair), not a counter-image."""
MAX_MERGED = 0.5
"""A pair whose negative-parity light lies mostly (more than this share) in merging arcs has no
separate counter-image (a near-ring): undecidable."""
MIN_COUNTER_SHARE = 0.005
"""A pair whose counter-image carries less than this share of the lensed light has none to test:
undecidable."""
MAX_OVERLAP = 0.5
"""A pair whose blurred counter-image overlaps the blurred arc by more than this (:func:`split_lensed_light`'s
``overlap``: the share of the counter-image's light in pixels where the arc's light is at least as
bright) cannot be told apart from it at this seeing: undecidable. Fixed by its meaning ("most of the
counter-image lies under the arc"), not tuned on any seed."""
EPS_UNMODELLED = 1e-3
"""Light the re-render does not predict (a pixel far from both images) is assigned by the blurred
geometry: with weight ``EPS_UNMODELLED × peak``, the fraction map tends to the blurred indicator of
the counter-image region (inside the tangential critical curve, merging arcs excluded). So light at
the lens centre that no lensed image explains (a planted point source) counts as core light."""


class LensedSplit(NamedTuple):
    """The injected light ``d`` split into counter-image(s) and arc(s) (:func:`split_lensed_light`)."""

    counter: np.ndarray
    """(N, C, H, W) float32: the counter-image(s) light (``d`` weighted by the blurred fraction map)."""
    arc: np.ndarray
    """(N, C, H, W) float32: the rest, ``d − counter``; ``counter + arc == d`` exactly."""
    decidable: np.ndarray
    """(N,) bool: the pair can tell counter-image from arc."""
    overlap: np.ndarray
    """(N,) float64: share of the blurred counter-image's light in pixels where the blurred arc is at
    least as bright (``Σ min(c, a) / Σ c`` over bands and pixels; NaN without truth)."""
    counter_share: np.ndarray
    """(N,) float64: the counter-image(s) share of the re-rendered lensed light (after the PSF)."""
    reason: np.ndarray
    """(N,) str: why a pair is undecidable ('' if decidable)."""


def truth_problem(truth: pd.DataFrame, psf_fwhm_arcsec: np.ndarray) -> np.ndarray:
    """(N,) str: the first missing or non-finite truth column of each row ('' when complete)."""
    n = len(truth)
    out = np.full(n, "", dtype=object)
    for col in TRUTH_COLUMNS:
        if col not in truth:
            values = np.full(n, np.nan)
        else:
            values = pd.to_numeric(truth[col], errors="coerce").to_numpy(np.float64)
        bad = (out == "") & ~np.isfinite(values)
        out[bad] = f"no injection truth '{col}'"
    fwhm = np.asarray(psf_fwhm_arcsec, np.float64)
    bad = (out == "") & ~(np.isfinite(fwhm).all(axis=1) & (fwhm > 0).all(axis=1))
    out[bad] = "no per-band PSF FWHM (psf_fwhm_used_g/r/z)"
    return out


def _params(truth: pd.DataFrame) -> dict:
    from shortcutgates.simulate.kernels import q_from_e

    t = {c: pd.to_numeric(truth[c], errors="coerce").to_numpy(np.float64)[:, None] for c in TRUTH_COLUMNS}
    t["lens_q"] = q_from_e(t["lens_e"])
    return t


def _parity_negative(bx: np.ndarray, by: np.ndarray, n: int, hp: int, wp: int, k: int) -> np.ndarray:
    """(N, hp, wp) bool: ``det A < 0`` per pixel, from the source-plane positions of its ``k × k`` rays.

    The Jacobian's columns are the mean differences between the pixel's outermost rays (spacing
    ``(k-1)/k`` px), in float64 from the float32 ray positions.
    """
    from shortcutgates.data.schema import PIXEL_SCALE_ARCSEC

    step = (k - 1) / k * PIXEL_SCALE_ARCSEC
    bxr, byr = (v.reshape(n, hp, k, wp, k) for v in (bx, by))

    def d_dx(v):
        return (v[:, :, :, :, -1].astype(np.float64) - v[:, :, :, :, 0]).mean(axis=2) / step

    def d_dy(v):
        return mean_last((v[:, :, -1].astype(np.float64) - v[:, :, 0])) / step

    return d_dx(bxr) * d_dy(byr) - d_dy(bxr) * d_dx(byr) < 0


def _merging_components(light: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(in_merging, merged)``: pixels of merging arcs (:data:`MERGE_SHARE`) and, per row, their share
    of the negative-parity light (0 without a merging arc).

    Components are the 8-connected pixels above :data:`COMPONENT_FLOOR` of each row's peak, labelled for
    all rows in one call (a 3-D structure that never connects two rows); ``light`` (N, H, W) float64.
    """
    from scipy import ndimage

    structure = np.zeros((3, 3, 3), bool)
    structure[1] = True
    labels, n_comp = ndimage.label(light > COMPONENT_FLOOR * light.max(axis=(1, 2), keepdims=True), structure=structure)
    neg_light = light * negative
    total = np.bincount(labels.ravel(), light.ravel(), minlength=n_comp + 1)
    neg = np.bincount(labels.ravel(), neg_light.ravel(), minlength=n_comp + 1)
    merging = np.minimum(neg, total - neg) >= MERGE_SHARE * total
    merging[0] = False
    in_merging = merging[labels]
    neg_all = neg_light.sum(axis=(1, 2))
    merged_light = np.where(in_merging, neg_light, 0.0).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        merged = np.where(in_merging.any(axis=(1, 2)) & (neg_all > 0), merged_light / neg_all, 0.0)
    return in_merging, merged


def lensed_regions(
    truth: pd.DataFrame, shape: tuple[int, int], pad: int = SPLIT_PAD_PX, oversample: int = SPLIT_OVERSAMPLE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pre-PSF lensed light and its counter-image region on the padded grid, from the injection truth.

    Returns ``(light, counter_region, merged)``: ``light`` (N, h+2pad, w+2pad) float64, unit total
    flux per row (a Sérsic source through SIE + shear, ``oversample²`` rays per pixel);
    ``counter_region`` bool, same shape: negative parity (``det A < 0``: inside the tangential
    critical curve) and not part of a merging arc (:data:`MERGE_SHARE`); ``merged`` (N,) float64, the
    share of the negative-parity light that belongs to merging arcs. Rows must have complete truth.
    All rows are ray-shot as one array operation (:func:`~.split_numerics.ray_shoot_symmetric`).
    """
    from shortcutgates.simulate.kernels import sersic, sersic_amp_for_flux

    h, w = shape
    hp, wp = h + 2 * pad, w + 2 * pad
    t = _params(truth)
    n = len(truth)
    lens = (t["theta_e_arcsec"], t["lens_q"], t["lens_phi_rad"], t["shear"], t["shear_phi_rad"])
    bx, by = ray_shoot_symmetric(sub_grid(h, w, pad, oversample), [np.asarray(v, np.float32) for v in lens])
    amp = sersic_amp_for_flux(1.0, t["src_reff_arcsec"], t["src_n"])
    sb = sersic(
        bx,
        by,
        amp.astype(np.float32),
        t["src_reff_arcsec"].astype(np.float32),
        t["src_n"],
        t["src_q"].astype(np.float32),
        t["src_phi_rad"].astype(np.float32),
        t["src_x_arcsec"].astype(np.float32),
        t["src_y_arcsec"].astype(np.float32),
    )
    k = oversample
    light = mean_last(mean_last(sb.reshape(n, hp, k, wp, k), np.float64).transpose(0, 1, 3, 2))
    light /= np.maximum(light.sum(axis=(1, 2), keepdims=True), 1e-300)
    negative = _parity_negative(bx, by, n, hp, wp, k)
    in_merging, merged = _merging_components(light, negative)
    return light, negative & ~in_merging, merged


def _exact_split(d: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(counter, arc)`` of ``d`` by the fraction map ``f`` in [0, 1] with ``counter + arc == d`` exactly
    in float32: the larger part is the rounded product, the smaller the exact difference (Sterbenz)."""
    big_counter = f >= 0.5
    prod = (np.where(big_counter, f, 1.0 - f) * d).astype(np.float32)
    rest = (d - prod).astype(np.float32)
    counter = np.where(big_counter, prod, rest).astype(np.float32)
    arc = np.where(big_counter, rest, prod).astype(np.float32)
    return counter, arc


def split_lensed_light(d: np.ndarray, truth: pd.DataFrame, psf_fwhm_arcsec, chunk: int = 64) -> LensedSplit:
    """Split the injected light ``d = stamp − ctrl`` into counter-image(s) and arc(s) by lensing.

    From each row's injection truth (:data:`TRUTH_COLUMNS`) the lensed source is re-rendered before
    the PSF (:func:`lensed_regions`, the simulator's kernels) and cut into the counter-image region
    (inside the tangential critical curve, negative parity, merging arcs excluded) and the rest;
    both parts are blurred with the row's Moffat PSF (β = 3.5, FWHM ``psf_fwhm_arcsec`` of the bands
    :data:`SPLIT_PSF_BANDS`: today the r band's for every band),
    and ``d`` — the user's bytes, clumps and all — is split pixel by pixel by the blurred counter
    fraction. Pixels neither image reaches follow the blurred geometry (:data:`EPS_UNMODELLED`).

    Parameters
    ----------
    d : (N, C, H, W) array, nanomaggies.
    truth : DataFrame with N rows (the positives' injection truth).
    psf_fwhm_arcsec : (N, C) array, per-band PSF FWHM (arcsec).

    A row without complete truth keeps all of ``d`` as arc (counter 0) and is undecidable with the
    reason; so is a near-ring (:data:`MAX_MERGED`), a pair without counter-image
    (:data:`MIN_COUNTER_SHARE`) and one whose blurred images overlap (:data:`MAX_OVERLAP`).

    The rows are split ``chunk`` at a time (:func:`_split_chunk`), the chunks on threads
    (:func:`~shortcutgates.parallel.thread_map`); each row is computed on its own, so the result does
    not depend on ``chunk`` or the threads.
    """
    from shortcutgates.parallel import thread_map

    d = np.asarray(d, np.float32)
    n, c, h, w = d.shape
    truth = truth.reset_index(drop=True)
    fwhm = np.asarray(psf_fwhm_arcsec, np.float64).reshape(n, c)
    reason = truth_problem(truth, fwhm)
    counter = np.zeros_like(d)
    arc = d.copy()
    overlap, share = np.full(n, np.nan), np.full(n, np.nan)
    ok = np.flatnonzero(reason == "")
    chunks = [ok[start : start + chunk] for start in range(0, len(ok), chunk)]
    parts = thread_map(lambda rows: _split_chunk(d[rows], truth.iloc[rows], fwhm[rows]), chunks)
    for rows, part in zip(chunks, parts):
        counter[rows], arc[rows], overlap[rows], share[rows], merged = part
        for j, i in enumerate(rows):
            if merged[j] > MAX_MERGED:
                reason[i] = f"near-ring: {merged[j]:.0%} of the counter-image light merges with the arc"
            elif share[i] < MIN_COUNTER_SHARE:
                reason[i] = f"no counter-image: {share[i]:.1%} of the lensed light"
            elif overlap[i] > MAX_OVERLAP:
                reason[i] = f"counter-image and arc blurred together: overlap {overlap[i]:.2f} > {MAX_OVERLAP:g}"
    return LensedSplit(counter, arc, reason == "", overlap, share, reason.astype(str))


def _split_chunk(d: np.ndarray, truth: pd.DataFrame, fwhm: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(counter, arc, overlap, share, merged)`` of rows with complete truth (:func:`split_lensed_light`).

    ``d`` (N, C, H, W) float32, ``fwhm`` (N, C) arcsec; the parts float32, the rest (N,) float64.
    """
    h, w = d.shape[-2:]
    pad = SPLIT_PAD_PX
    light, region, merged = lensed_regions(truth, (h, w), pad)
    kernels = moffat_kernels(fwhm[:, SPLIT_PSF_BANDS].ravel(), SPLIT_MOFFAT_BETA, SPLIT_PSF_RADIUS).reshape(
        len(d), len(SPLIT_PSF_BANDS), 2 * SPLIT_PSF_RADIUS + 1, -1
    )
    blurred = blur(np.stack([light * region, light * ~region, region], axis=1), kernels, pad)
    bc, ba = np.maximum(blurred[:, 0], 0.0), np.maximum(blurred[:, 1], 0.0)
    bk = np.clip(blurred[:, 2], 0.0, 1.0)
    eps = EPS_UNMODELLED * (bc + ba).max(axis=(-2, -1), keepdims=True)
    f = np.clip((bc + eps * bk) / (bc + ba + eps), 0.0, 1.0)
    counter, arc = _exact_split(d, f)
    sum_c = bc.sum(axis=(1, 2, 3))
    share = sum_c / np.maximum((bc + ba).sum(axis=(1, 2, 3)), 1e-300)
    overlap = np.where(sum_c > 0, np.minimum(bc, ba).sum(axis=(1, 2, 3)) / np.maximum(sum_c, 1e-300), 0.0)
    return counter, arc, overlap, share, merged


def scramble_along_ring(arc: np.ndarray, fwhm_px: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The arc's light cut into PSF-sized patches along its rings and the patches shuffled round them.

    Each pair's stamp is divided into annuli ``fwhm`` px wide and each annulus into sectors about
    ``fwhm`` px long (at least 3); the sectors of every annulus are permuted at random (bilinear
    resampling at the same radius), and each 1-px ring (``floor(r)``) of each band is rescaled to its
    flux before. Keeps the light's flux per ring, its radial profile, its colour and its PSF-scale
    texture; loses its tangential coherence (no arc, no ring). ``fwhm_px``: (N,) r-band FWHM in pixels.
    Returns (N, C, H, W) float32.
    """
    from scipy.ndimage import map_coordinates

    arc = np.asarray(arc, np.float32)
    n, c, h, w = arc.shape
    r = radius_grid(h, w)
    yy, xx = np.mgrid[:h, :w]
    phi = np.arctan2(yy - h // 2, xx - w // 2) % (2 * np.pi)
    rings = ring_index(h, w).ravel()
    n_rings = int(rings.max()) + 1
    out = np.empty_like(arc)
    for i in range(n):
        width = max(2.0, float(fwhm_px[i]))
        annulus = np.floor(r / width).astype(int)
        shift = np.zeros((h, w))
        for a in np.unique(annulus):
            n_sec = max(3, round(2 * np.pi * (a + 0.5)))
            size = 2 * np.pi / n_sec
            perm = rng.permutation(n_sec)
            sector = np.minimum((phi / size).astype(int), n_sec - 1)
            sel = annulus == a
            shift[sel] = (perm[sector[sel]] - sector[sel]) * size
        src = phi + shift
        coords = np.stack([h // 2 + r * np.sin(src), w // 2 + r * np.cos(src)])
        for b in range(c):
            moved = map_coordinates(arc[i, b], coords, order=1, mode="constant")
            before = np.bincount(rings, arc[i, b].ravel().astype(np.float64), minlength=n_rings)
            after = np.bincount(rings, moved.ravel(), minlength=n_rings)
            tiny = 1e-9 * max(float(np.abs(before).max()), 1e-30)
            scale = np.where(np.abs(after) > tiny, before / np.where(np.abs(after) > tiny, after, 1.0), 0.0)
            out[i, b] = (moved.ravel() * scale[rings]).reshape(h, w)
    return out
