"""Model gates (``docs/design.md#gates``): each is ``gate(context, case) -> Measurement``.

The model enters only through ``context.score(raw_images) -> scores`` (a checkpoint's
``predict_scores`` or any ``score_fn``), so every gate is testable with a tiny synthetic scorer.
Unperturbed scores are computed once per split (``context.scores``).

The counterfactual gates (``arc_masked_auroc``, ``core_masked_auroc_drop``, ``arc_swap_auroc_drop``,
``morphology_auroc``) run on the pairs of the paired split, one case per θ_E bin: every
counterfactual of every pair is scored in **one** further inference pass
(:func:`counterfactual_scores`), shared by the four gates. Their arithmetic is available on arrays
(:func:`paired_arrays`, :func:`counterfactual_scores`, :func:`paired_statistic`) for calibration
with any ``score_fn`` (``shortcutgates.gates.reference_scorers``). Design and measured error rates:
``docs/model_gates.md``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from ..schema import PIXEL_SCALE_ARCSEC
from ..stats import Estimate, grouped_bootstrap
from .contract import Measurement
from .decision import auc_measurement, bootstrap_auroc, bootstrap_metric, check_scorer, estimate_measurement
from .decision import weighted_auroc_metric
from .perturb import R_CORE_PX, Pairs, build_counterfactuals, core_flux_share, find_pairs
from .probes import ProbeError
from .records import GateCase


def _auc_result(context, case, labels, scores, groups, what, note="", extra=None) -> Measurement:
    return auc_measurement(labels, scores, groups, context.config, what, note, extra, scorer=f"{case.id}'s inputs")


def detection_auroc(context, case: GateCase) -> Measurement:
    """Model AUROC on a split's sample."""
    sample = context.sample(case.split)
    return _auc_result(context, case, sample.labels, context.scores(case.split), sample.resampling_units, "AUROC",
                       sample.note)


def auroc_difference(context, split_a: str, split_b: str) -> tuple:
    """AUROC(split_a) − AUROC(split_b) with one LRG bootstrap over both splits.

    An LRG found in both splits is one resampling unit; a resample that loses a class in one split
    is left out (NaN), never turns the interval NaN. Returns (Estimate, AUROC a, AUROC b).
    """
    missing = [s for s in (split_a, split_b) if s not in context.splits]
    if missing:
        raise ProbeError(f"needs splits {split_a} and {split_b} (missing: {', '.join(missing)})")
    a, b = context.sample(split_a), context.sample(split_b)
    labels = np.concatenate([a.labels, b.labels])
    scores = np.concatenate([context.scores(split_a), context.scores(split_b)])
    # one unit per LRG (or matched set) of either split; an LRG in both splits is one unit
    groups = np.concatenate([a.groups.astype(str), b.groups.astype(str)])
    in_a = np.arange(len(labels)) < len(a.labels)
    auc_a = weighted_auroc_metric(a.labels, scores[in_a])
    auc_b = weighted_auroc_metric(b.labels, scores[~in_a])

    def gap(_l, _s, w=None):
        wa, wb = (None, None) if w is None else (w[in_a], w[~in_a])
        return auc_a(None, None, wa) - auc_b(None, None, wb)

    est = bootstrap_metric(labels, scores, groups, gap, context.config)
    return est, auc_a(None, None), auc_b(None, None)


def cross_test_gap(context, case: GateCase) -> Measurement:
    """AUROC(test_paired) − AUROC(test), signed; the claim is equivalence within the margin."""
    est, auc_a, auc_b = auroc_difference(context, "test_paired", "test")
    return estimate_measurement(est, "AUROC gap (test_paired − test)",
                                f"AUROC test_paired {auc_a:.3f}, test {auc_b:.3f}")


def memorisation_gap(context, case: GateCase) -> Measurement:
    """AUROC(train) − AUROC(val): how much better the model does on LRGs it was trained on (reported)."""
    a, b = str(case.params["pair"]).split("-", 1)
    est, auc_a, auc_b = auroc_difference(context, a, b)
    return estimate_measurement(est, f"AUROC gap ({a} − {b})", f"AUROC {a} {auc_a:.3f} (in-sample), {b} {auc_b:.3f}")



# --- paired counterfactual gates ---------------------------------------------------------------
# docs/model_gates.md: what each gate claims, how it was calibrated, what the numbers were.
MAX_CORE_SHARE = 0.35
"""A θ_E bin whose pairs hold on average more than this share of their lensed light inside
``r < R_CORE_PX`` (all bands) is reported, not gated: there the arc *is* largely core light, and
reading it is not a shortcut. On the simulator only θ_E < 1″ (46 %) is above it; 1–1.5″ holds 24 %."""

MIN_DETECTION_AUROC = 0.70
"""Below this paired detection AUROC in a bin, a model finds too few of its lenses for the gates to
tell what it reads there: the case is an ``error`` (never a pass)."""

MIN_BIN_PAIRS = 10
"""A θ_E bin with fewer paired positives gets no case."""

MIN_GATED_BIN_PAIRS = 30
"""A θ_E bin with fewer pairs than this is reported, not gated: its LRG-bootstrap interval of a paired
AUROC near 1 under-covers there (``morphology_auroc`` 0.82 [0.76, 0.86] over 196 seeds at about 19 pairs,
0.89 [0.84, 0.93] at 30-45; ``docs/calibration.md#primary-family``)."""

COUNTERFACTUALS = ("core_only", "arc_only", "swapped", "ring_averaged")


class PairedSet(NamedTuple):
    """The pairs of a split's sample, grouped into θ_E bins."""

    pairs: Pairs
    groups: np.ndarray
    """(P,) LRG of each pair."""
    theta_e_arcsec: np.ndarray
    """(P,) Einstein radius of each pair (NaN if unknown)."""
    core_share: np.ndarray
    """(P,) share of the pair's lensed light inside ``r < R_CORE_PX``."""
    bins: list
    """One dict per θ_E bin: ``label``, ``lo``, ``hi``, ``rows`` (pair positions), ``n_lrgs``, ``core_share``."""


def theta_bins(theta_e_arcsec: np.ndarray, core_share: np.ndarray, groups: np.ndarray, edges) -> list:
    """θ_E bins of the pairs: positions, LRG count and the bin's core share (mean of the pairs' shares)."""
    theta = np.asarray(theta_e_arcsec, np.float64)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        rows = np.flatnonzero((theta >= lo) & (theta < hi))
        share = float(np.nanmean(core_share[rows])) if len(rows) else float("nan")
        out.append({"label": f"theta_e{lo:g}-{hi:g}", "lo": float(lo), "hi": float(hi), "rows": rows,
                    "n_lrgs": int(len(np.unique(groups[rows]))), "core_share": share})
    return out


def paired_arrays(images, labels, groups, theta_e_arcsec, edges) -> tuple[PairedSet, np.ndarray, np.ndarray]:
    """Pairs of a sample as a :class:`PairedSet` plus their (stamps, ctrls) arrays.

    Raises ``ProbeError`` when the sample holds no pair (a positive and the control of its LRG).
    """
    pairs = find_pairs(labels, groups)
    if len(pairs.stamp) == 0:
        raise ProbeError("no paired rows (a positive and the control of its LRG): the counterfactual gates need "
                         "paired data (test_paired of a built manifest, or a split with pairs)")
    stamps, ctrls = images[pairs.stamp], images[pairs.ctrl]
    share = core_flux_share(stamps - ctrls, R_CORE_PX)
    g = np.asarray(groups)[pairs.stamp]
    theta = np.asarray(theta_e_arcsec, np.float64)[pairs.stamp]
    return PairedSet(pairs, g, theta, share, theta_bins(theta, share, g, edges)), stamps, ctrls


def paired_set(context, split: str) -> PairedSet:
    """The :class:`PairedSet` of a split's sample (computed once per context)."""
    def compute():
        s = context.sample(split)
        return paired_arrays(s.images, s.labels, s.groups, s.theta_e_px * PIXEL_SCALE_ARCSEC,
                             context.config.theta_e_bins_arcsec)[0]
    return context.memo(("paired_set", split), compute)


def counterfactual_scores(score_fn, stamps, ctrls, groups, seed: int) -> dict:
    """Scores of every counterfactual of the pairs, in **one** call of ``score_fn``.

    Returns ``{"core_only", "arc_only", "swapped", "ring_averaged"}`` -> (P,) scores, plus
    ``"swap_to"`` (the pair whose control each arc was moved to).
    """
    cf = build_counterfactuals(stamps, ctrls, groups, R_CORE_PX, np.random.default_rng(seed))
    batch = np.concatenate([getattr(cf, k) for k in COUNTERFACTUALS])
    scores = np.asarray(score_fn(batch), np.float64)
    n = len(stamps)
    out = {k: scores[i * n:(i + 1) * n] for i, k in enumerate(COUNTERFACTUALS)}
    out["swap_to"] = cf.swap_to
    return out


def pair_scores(context, split: str) -> dict:
    """``stamp``, ``ctrl`` and counterfactual scores per pair of a split (two inference passes in all:
    the split's own scores, shared with ``detection_auroc``, and one counterfactual batch)."""
    def compute():
        ps = paired_set(context, split)
        s = context.sample(split)
        base = context.scores(split)
        out = counterfactual_scores(context.score, s.images[ps.pairs.stamp], s.images[ps.pairs.ctrl], ps.groups,
                                    context.config.seed)
        out.update(stamp=base[ps.pairs.stamp], ctrl=base[ps.pairs.ctrl])
        return out
    return context.memo(("pair_scores", split), compute)


def _pair_auc(x: np.ndarray, ctrl: np.ndarray):
    """``auc(w)``: weighted AUROC of scores ``x`` (one per pair) against the pairs' control scores.

    Each pair enters both sets with the same weight, so ``auc`` of identical score sets is 0.5
    exactly; ties count one half.
    """
    _, bucket = np.unique(np.r_[x, ctrl], return_inverse=True)
    bucket = bucket.ravel()
    bx, bc = bucket[:len(x)], bucket[len(x):]
    m = int(bucket.max()) + 1

    def auc(w: np.ndarray) -> float:
        wx, wc = np.bincount(bx, w, minlength=m), np.bincount(bc, w, minlength=m)
        below = np.cumsum(wc) - wc
        return float((wx * (below + 0.5 * wc)).sum() / (wx.sum() * wc.sum()))
    return auc


def paired_statistic(scores: dict, kind: str, statistic: str, rows: np.ndarray, groups: np.ndarray,
                     config) -> tuple[Estimate, float]:
    """One gate's value on the pairs ``rows`` with its LRG-bootstrap interval, and the detection AUROC.

    ``statistic``: ``auroc`` — AUROC(counterfactual vs controls); ``drop`` — AUROC(stamp vs
    controls) − AUROC(counterfactual vs controls), both on the same pairs and resamples;
    ``auroc_vs_stamp`` — AUROC(stamp vs counterfactual). Raises ``ProbeError`` when the model's paired detection AUROC on these rows is
    below :data:`MIN_DETECTION_AUROC`, and ``ValueError`` for a (near-)constant scorer.
    """
    x, stamp, ctrl = scores[kind][rows], scores["stamp"][rows], scores["ctrl"][rows]
    check_scorer(np.r_[stamp, ctrl, x], f"{len(rows)} pairs and their counterfactuals")
    det, vs_ctrl, vs_stamp = _pair_auc(stamp, ctrl), _pair_auc(x, ctrl), _pair_auc(stamp, x)
    detection = det(np.ones(len(rows)))
    if detection < MIN_DETECTION_AUROC:
        raise ProbeError(f"the model does not detect these lenses: paired AUROC {detection:.3f} < "
                         f"{MIN_DETECTION_AUROC:g} on {len(rows)} pairs, so what it reads cannot be told "
                         "(a model gate says nothing good about a model that cannot detect lenses)")

    def metric(_labels, _values, weights=None):
        w = np.ones(len(rows)) if weights is None else weights[:len(rows)]
        if statistic == "auroc":
            return vs_ctrl(w)
        if statistic == "auroc_vs_stamp":
            return vs_stamp(w)
        return det(w) - vs_ctrl(w)

    g = np.asarray(groups)[rows]
    labels = np.r_[np.ones(len(rows), int), np.zeros(len(rows), int)]
    est = grouped_bootstrap(labels, np.zeros(2 * len(rows)), np.r_[g, g], metric=metric, n_boot=config.n_boot,
                            seed=config.seed, level=config.level)
    return est._replace(n=len(rows)), detection


def _bin_of(ps: PairedSet, case) -> dict:
    label = case.params.get("theta_e")
    if label is None:
        raise ProbeError(f"no θ_E bin of split {case.split!r} holds {MIN_BIN_PAIRS} pairs with theta_e_arcsec")
    for b in ps.bins:
        if b["label"] == label:
            return b
    raise ProbeError(f"no θ_E bin {label!r} (bins: {', '.join(b['label'] for b in ps.bins)})")


def _counterfactual_gate(context, case, kind: str, statistic: str, what: str) -> Measurement:
    ps = paired_set(context, case.split)
    b = _bin_of(ps, case)
    if len(b["rows"]) < MIN_BIN_PAIRS:
        raise ProbeError(f"{len(b['rows'])} pairs in θ_E {b['lo']:g}–{b['hi']:g}″ (< {MIN_BIN_PAIRS})")
    est, detection = paired_statistic(pair_scores(context, case.split), kind, statistic, b["rows"], ps.groups,
                                      context.config)
    gated = b["core_share"] <= MAX_CORE_SHARE
    note = (f"θ_E {b['lo']:g}–{b['hi']:g}″: {len(b['rows'])} pairs of {b['n_lrgs']} LRGs, paired detection AUROC "
            f"{detection:.3f}, {b['core_share']:.0%} of the lensed light inside r < {R_CORE_PX:g} px"
            + ("" if gated else f" (> {MAX_CORE_SHARE:.0%}: reported, not gated)"))
    return Measurement(float(est.value), (float(est.lo), float(est.hi)), int(est.n), int(est.n_groups), what, note,
                       {"theta_e_bin": [b["lo"], b["hi"]], "core_share": b["core_share"],
                        "detection_auroc": detection, "gated": gated})


def arc_masked_auroc(context, case) -> Measurement:
    """Positives with the arc taken out exactly (``ctrl + d·[r < R_CORE_PX]``) vs the bare controls.

    An arc reader is at chance (0.5); a model that finds the lens from the core light alone is not.
    """
    return _counterfactual_gate(context, case, "core_only", "auroc", "arc-masked AUROC")


def core_masked_auroc_drop(context, case) -> Measurement:
    """Paired detection AUROC lost when the core part is taken out (``ctrl + d·[r >= R_CORE_PX]``).

    0 for an arc reader; a core reader loses all it had above chance.
    """
    return _counterfactual_gate(context, case, "arc_only", "drop", "core-masked AUROC drop")


def arc_swap_auroc_drop(context, case) -> Measurement:
    """Paired detection AUROC lost when each arc is put on another LRG's control (``ctrl[π] + d``).

    About 0 for a model that reads the arc whatever galaxy it lies on.
    """
    return _counterfactual_gate(context, case, "swapped", "drop", "arc-swap AUROC drop")


def morphology_auroc(context, case) -> Measurement:
    """Positives vs the same pairs with the arc part averaged round its 1-px rings (core part kept).

    Same light per ring, same core, no arc shape: a shape reader ranks the real arcs higher. A value
    below 0.5 is a finding, not an artefact (the model prefers the smooth ring), hence a ``fail``;
    a flipped or blind scorer is caught by the detection precondition instead.
    """
    return _counterfactual_gate(context, case, "ring_averaged", "auroc_vs_stamp", "morphology AUROC")


def theta_bin_cases(context, gate) -> list:
    """One case per θ_E bin with at least :data:`MIN_BIN_PAIRS` pairs on the paired split.

    Bins holding more than :data:`MAX_CORE_SHARE` of their lensed light in the core, or fewer than
    :data:`MIN_GATED_BIN_PAIRS` pairs, get role ``reported``. Without pairs, one case without a bin
    (it measures an ``error`` with the reason).
    """
    split = context.paired_split
    try:
        ps = paired_set(context, split)
    except (ProbeError, ValueError):
        return [GateCase(gate.name, {}, split, gate.needs, gate.role)]
    cases = [GateCase(gate.name, {"theta_e": b["label"]}, split, gate.needs,
                      gate.role if b["core_share"] <= MAX_CORE_SHARE and len(b["rows"]) >= MIN_GATED_BIN_PAIRS
                      else "reported")
             for b in ps.bins if len(b["rows"]) >= MIN_BIN_PAIRS]
    return cases or [GateCase(gate.name, {}, split, gate.needs, gate.role)]



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


def stratified_auroc(context, case: GateCase) -> Measurement:
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
    return estimate_measurement(worst, f"worst-bin AUROC by {by}", note, {"bins": table})
