"""Model gates (docs/design.md#gates): each is ``gate(context, case) -> GateResult``.

The model enters only through ``context.score(raw_images) -> scores`` (a checkpoint's
``predict_scores`` or any ``score_fn``), so every gate is testable with a tiny synthetic scorer.
Unperturbed scores are computed once per split (``context.scores``); each perturbation gate costs
one further inference pass over its perturbed images.

The perturbation gates are also available as pure functions of a ``score_fn`` on arrays
(:func:`arc_masked_scores`, :func:`core_transplant_scores`, :func:`morphology_scores`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from ..schema import PIXEL_SCALE_ARCSEC
from .decision import bootstrap_auroc, bootstrap_metric, estimate_result, weighted_auroc_metric
from .perturb import mask_annulus, shuffle_rings, transplant_core
from .probes import ARC_HALF_WIDTH_PX, ProbeError
from .records import GateCase, GateResult


ARC_THICKNESS_PX = 1.0
"""Half-thickness of a lensed arc added to the PSF FWHM for the masked annulus. Unit: pixel."""

DEFAULT_PSF_FWHM_ARCSEC = 1.3
"""PSF FWHM assumed where the manifest has no ``psfsize_r`` / ``psf_fwhm_used_r`` (DR10 median, r band)."""

CORE_RADIUS_PX = 3.0
"""Radius kept unmasked by ``arc_masked_auroc``: the counter-image at θ_E − β lies here. Unit: pixel."""


def _gate(name: str):
    from .registry import REGISTRY

    return REGISTRY[name]


def _auc_result(context, case, labels, scores, groups, what, note="", extra=None) -> GateResult:
    est = bootstrap_auroc(labels, scores, groups, context.config)
    return estimate_result(context.config, case, _gate(case.gate), est, what, note, extra)


def detection_auroc(context, case: GateCase) -> GateResult:
    """Model AUROC on a split's sample."""
    sample = context.sample(case.split)
    return _auc_result(context, case, sample.labels, context.scores(case.split), sample.groups, "AUROC", sample.note)


def cross_test_gap(context, case: GateCase) -> GateResult:
    """|AUROC(test_paired) − AUROC(test)|, with LRGs of both splits resampled together."""
    missing = [s for s in ("test", "test_paired") if s not in context.splits]
    if missing:
        raise ProbeError(f"cross_test_gap needs splits test and test_paired (missing: {', '.join(missing)})")
    a, b = context.sample("test_paired"), context.sample("test")
    labels = np.concatenate([a.labels, b.labels])
    scores = np.concatenate([context.scores("test_paired"), context.scores("test")])
    groups = np.concatenate([a.groups, b.groups])
    in_a = np.arange(len(labels)) < len(a.labels)
    auc_a = weighted_auroc_metric(a.labels, scores[in_a])
    auc_b = weighted_auroc_metric(b.labels, scores[~in_a])

    def gap(_l, _s, w=None):
        wa, wb = (None, None) if w is None else (w[in_a], w[~in_a])
        return abs(auc_a(None, None, wa) - auc_b(None, None, wb))

    est = bootstrap_metric(labels, scores, groups, _safe(gap), context.config)
    note = f"AUROC test_paired {auc_a(None, None):.3f}, test {auc_b(None, None):.3f}"
    return estimate_result(context.config, case, _gate(case.gate), est, "|AUROC gap|", note)


def _safe(metric: Callable) -> Callable:
    """Resamples that lose a class in one of the splits yield NaN, which the quantiles must skip."""
    def wrapped(labels, scores, weights=None):
        try:
            return metric(labels, scores, weights)
        except ValueError:
            if weights is None:
                raise
            return np.nan
    return wrapped


# --- arc masking -------------------------------------------------------------------------------
def mask_half_widths(frame: pd.DataFrame) -> np.ndarray:
    """Half-width of each row's masked annulus: its r-band PSF FWHM plus :data:`ARC_THICKNESS_PX`.

    An arc's light reaches about one FWHM beyond its ridge, so ``θ_E ± (FWHM + thickness)`` holds
    all of it (for a Gaussian PSF < 0.2 % of the peak lies beyond one FWHM). Unit: pixel, shape (N,).
    """
    fwhm = np.full(len(frame), np.nan)
    for col in ("psfsize_r", "psf_fwhm_used_r"):
        if col in frame:
            values = pd.to_numeric(frame[col], errors="coerce").to_numpy(np.float64)
            fwhm = np.where(np.isfinite(fwhm), fwhm, values)
    fwhm = np.where(np.isfinite(fwhm) & (fwhm > 0), fwhm, DEFAULT_PSF_FWHM_ARCSEC)
    return fwhm / PIXEL_SCALE_ARCSEC + ARC_THICKNESS_PX


def arc_mask_radii(theta_e_px: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                   half_width=ARC_HALF_WIDTH_PX) -> tuple[np.ndarray, np.ndarray]:
    """Per-row masked annulus: θ_E ± half-width for positives, θ_E drawn from the positives for negatives.

    ``half_width`` (pixel) is a scalar or one value per row. The inner radius never goes below
    :data:`CORE_RADIUS_PX`, so the core stays visible. Rows whose whole annulus would fall inside
    the core get ``r_in == r_out`` (nothing masked) and are left out by the gate.
    """
    theta = np.asarray(theta_e_px, np.float64).copy()
    pos_theta = theta[(labels == 1) & np.isfinite(theta)]
    if len(pos_theta) == 0:
        raise ProbeError("arc masking needs theta_e_arcsec for the positives (to place the annulus)")
    neg = labels == 0
    theta[neg] = rng.choice(pos_theta, size=int(neg.sum()))
    r_out = theta + half_width
    r_in = np.maximum(theta - half_width, CORE_RADIUS_PX)
    return np.minimum(r_in, r_out), r_out


def arc_masked_scores(score_fn, images, labels, theta_e_px, seed: int,
                      half_width=ARC_HALF_WIDTH_PX) -> tuple[np.ndarray, np.ndarray]:
    """Scores of images whose θ_E annulus is masked with matched noise; returns (scores, kept rows)."""
    rng = np.random.default_rng(seed)
    r_in, r_out = arc_mask_radii(theta_e_px, labels, rng, half_width)
    usable = (r_out - r_in) >= 1.0
    if not usable.any():
        raise ProbeError(f"every arc lies inside the {CORE_RADIUS_PX:g}-px core: masking it would mask the core")
    masked = mask_annulus(images[usable], r_in[usable], r_out[usable], rng)
    return score_fn(masked), usable


def arc_masked_auroc(context, case: GateCase) -> GateResult:
    """Model AUROC with the θ_E annulus masked by matched noise in both classes (must drop to chance)."""
    s = context.sample(case.split)
    width = mask_half_widths(s.frame)
    scores, used = arc_masked_scores(context.score, s.images, s.labels, s.theta_e_px, context.config.seed, width)
    note = (f"annulus θ_E ± (PSF FWHM + {ARC_THICKNESS_PX:g} px) = ± {np.median(width):.1f} px (median), "
            f"outside r = {CORE_RADIUS_PX:g} px; {s.note}")
    if (~used).any():
        note += f"; {int((~used).sum())} rows whose arc lies inside the core left out"
    return _auc_result(context, case, s.labels[used], scores, s.groups[used], "masked AUROC", note)


# --- core transplant ---------------------------------------------------------------------------
def transplant_pairs(labels, groups, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each negative (recipient): a positive donor and a negative donor of other LRGs.

    Returns (recipient, positive donor, negative donor) positions, each shape (n_recipients,).
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    neg, pos = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    if len(pos) == 0 or len(np.unique(groups[neg])) < 2:
        raise ProbeError(f"core transplant needs positives and at least 2 negative LRGs "
                         f"(got {len(pos)} positives, {len(np.unique(groups[neg]))} negative LRGs)")
    pos_donor = rng.choice(pos, size=len(neg))
    neg_donor = rng.choice(neg, size=len(neg))
    for donors, pool in ((pos_donor, pos), (neg_donor, neg)):
        for _ in range(100):  # redraw donors that share the recipient's LRG
            same = groups[donors] == groups[neg]
            if not same.any():
                break
            donors[same] = rng.choice(pool, size=int(same.sum()))
    keep = (groups[pos_donor] != groups[neg]) & (groups[neg_donor] != groups[neg])
    return neg[keep], pos_donor[keep], neg_donor[keep]


def core_transplant_scores(score_fn, images, labels, groups, box: int, seed: int):
    """Scores of negatives carrying a positive's core (label 1) and another negative's core (label 0).

    Returns (labels, scores, groups), the groups being the recipients' LRGs.
    """
    rng = np.random.default_rng(seed)
    rec, pdon, ndon = transplant_pairs(labels, groups, rng)
    batch = np.concatenate([transplant_core(images[rec], images[pdon], box),
                            transplant_core(images[rec], images[ndon], box)])
    out_labels = np.r_[np.ones(len(rec), int), np.zeros(len(rec), int)]
    return out_labels, score_fn(batch), np.concatenate([groups[rec], groups[rec]])


def core_transplant_auroc(context, case: GateCase) -> GateResult:
    """Negatives with a positive's core vs negatives with another negative's core (must be chance)."""
    s = context.sample(case.split)
    box = int(context.config.boxes[0])
    labels, scores, groups = core_transplant_scores(context.score, s.images, s.labels, s.groups, box,
                                                    context.config.seed)
    return _auc_result(context, case, labels, scores, groups, "transplant AUROC",
                       f"central {box}×{box} px transplanted into {len(labels) // 2} negatives; {s.note}")


# --- morphology --------------------------------------------------------------------------------
def control_positions(labels, groups) -> tuple[np.ndarray, np.ndarray]:
    """Positives that have a control (a negative of the same LRG): (positive rows, control rows)."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    neg = np.flatnonzero(labels == 0)
    ctrl_of = dict(zip(groups[neg], neg))
    pos = np.array([i for i in np.flatnonzero(labels == 1) if groups[i] in ctrl_of], dtype=np.int64)
    return pos, np.array([ctrl_of[groups[i]] for i in pos], dtype=np.int64)


def arc_shuffled(stamps: np.ndarray, controls: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Control + (stamp − control) shuffled within 1-px rings: same radial flux, no arc shape."""
    stamps, controls = np.asarray(stamps, np.float32), np.asarray(controls, np.float32)
    return controls + shuffle_rings(stamps - controls, rng)


def morphology_auroc(context, case: GateCase) -> GateResult:
    """Positives vs the same positives with their arc shuffled in rings: a shape reader scores originals higher."""
    s = context.sample(case.split)
    pos, ctrl = control_positions(s.labels, s.groups)
    if len(pos) == 0:
        raise ProbeError(f"split {case.split!r} has no paired rows (a positive and the control of its LRG); "
                         "morphology_auroc needs test_paired or a paired split")
    shuffled = arc_shuffled(s.images[pos], s.images[ctrl], np.random.default_rng(context.config.seed))
    original = context.scores(case.split)[pos]
    labels = np.r_[np.ones(len(pos), int), np.zeros(len(pos), int)]
    scores = np.concatenate([original, context.score(shuffled)])
    groups = np.concatenate([s.groups[pos], s.groups[pos]])
    return _auc_result(context, case, labels, scores, groups, "morphology AUROC",
                       f"{len(pos)} positives with their control; {s.note}")


# --- strata ------------------------------------------------------------------------------------
def strata(frame: pd.DataFrame, labels: np.ndarray, theta_e_px: np.ndarray, by: str,
           edges_arcsec) -> tuple[np.ndarray, list[str]]:
    """Bin index per row (−1: no bin) and bin names for ``by`` in {theta_e, psf, depth}.

    θ_E bins hold positives only (negatives have no θ_E: each bin is scored against all
    negatives); PSF and depth bins hold both classes, from ``psf_bin``/``depth_bin`` when present,
    else quartiles of ``psfsize_r``/``psfdepth_r``.
    """
    if by == "theta_e":
        theta = np.asarray(theta_e_px) * PIXEL_SCALE_ARCSEC
        idx = np.digitize(theta, edges_arcsec) - 1
        idx[~np.isfinite(theta) | (idx < 0) | (idx >= len(edges_arcsec) - 1)] = -1
        return idx, [f"{a:g}-{b:g}arcsec" for a, b in zip(edges_arcsec[:-1], edges_arcsec[1:])]
    column, fallback = {"psf": ("psf_bin", "psfsize_r"), "depth": ("depth_bin", "psfdepth_r")}[by]
    if column in frame and pd.to_numeric(frame[column], errors="coerce").notna().any():
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy()
        names = sorted(set(values[np.isfinite(values)].tolist()))
        idx = np.array([names.index(v) if np.isfinite(v) else -1 for v in values])
        return idx, [f"{column}={v:g}" for v in names]
    if fallback not in frame:
        raise ProbeError(f"stratified_auroc[{by}] needs column {column} or {fallback}")
    values = pd.to_numeric(frame[fallback], errors="coerce").to_numpy(np.float64)
    edges = np.unique(np.nanquantile(values, [0, 0.25, 0.5, 0.75, 1.0]))
    idx = np.clip(np.digitize(values, edges[1:-1]), 0, len(edges) - 2)
    idx[~np.isfinite(values)] = -1
    return idx, [f"{fallback}:{a:.3g}-{b:.3g}" for a, b in zip(edges[:-1], edges[1:])]


def stratified_auroc(context, case: GateCase) -> GateResult:
    """Detection AUROC per bin (reported); the value is the worst bin's."""
    s = context.sample(case.split)
    scores = context.scores(case.split)
    by = str(case.params["by"])
    idx, names = strata(s.frame, s.labels, s.theta_e_px, by, context.config.theta_e_bins_arcsec)
    table, worst = [], None
    for k, name in enumerate(names):
        sel = (idx == k) | ((s.labels == 0) & (by == "theta_e"))
        n_pos, n_neg = int((s.labels[sel] == 1).sum()), int((s.labels[sel] == 0).sum())
        rec = {"bin": name, "n_pos": n_pos, "n_neg": n_neg, "auc": None, "ci": None}
        if n_pos >= 5 and n_neg >= 5:
            est = bootstrap_auroc(s.labels[sel], scores[sel], s.groups[sel], context.config)
            rec["auc"], rec["ci"] = est.value, (est.lo, est.hi)
            worst = est if worst is None or est.value < worst.value else worst
        table.append(rec)
    if worst is None:
        raise ProbeError(f"no {by} bin holds at least 5 positives and 5 negatives")
    note = "; ".join(f"{r['bin']}: {r['auc']:.3f}" for r in table if r["auc"] is not None)
    return estimate_result(context.config, case, _gate(case.gate), worst, f"worst-bin AUROC by {by}", note,
                           {"bins": table})
