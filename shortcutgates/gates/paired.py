"""The paired counterfactual arithmetic under the model gates (``docs/model_gates.md``).

The pairs of a sample (a positive and the control of its LRG), their counter-image / arc split
(:func:`~shortcutgates.gates.perturb.split_lensed_light`), θ_E bins and which of them decide; the
counterfactual images of every pair scored in **one** inference pass (:func:`counterfactual_scores`);
and the paired statistics with their LRG-bootstrap intervals (:func:`paired_statistic`,
:func:`operational`). Everything works on arrays, so calibration can run it with any ``score_fn``
(``shortcutgates.gates.reference_scorers``); :func:`paired_set` and :func:`pair_scores` compute it once
per gate context. The gates that decide on it live in :mod:`shortcutgates.gates.model_gates`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from shortcutgates.data.schema import PIXEL_SCALE_ARCSEC
from shortcutgates.stats import Estimate, grouped_bootstrap
from shortcutgates.gates.decision import check_scorer
from shortcutgates.data.lrg_properties import measure_lrgs
from shortcutgates.gates.perturb import (
    PSF_COLUMNS,
    LensedSplit,
    Pairs,
    brightness_matched_swap,
    find_pairs,
    scramble_along_ring,
    split_lensed_light,
)
from shortcutgates.gates.probes import ProbeError

# docs/model_gates.md: what each gate claims, how it was calibrated, what the numbers were.
MAX_UNDECIDABLE_SHARE = 0.5
"""A θ_E bin where more than this share of the pairs cannot tell counter-image from arc
(:func:`~shortcutgates.gates.perturb.split_lensed_light`: near-rings, images blurred together at this
seeing, no truth) is reported, not gated: its decidable pairs are a selection of it. Follows from the
lensing geometry (θ_E against the PSF), never from how much light lies in the core."""

MIN_DETECTION_AUROC = 0.70
"""Below this paired detection AUROC in a bin, a model finds too few of its lenses for the gates to
tell what it reads there: the case is an ``error`` (never a pass)."""


def empty_resample_share(flagged: np.ndarray, groups: np.ndarray) -> float:
    """Probability that an LRG-bootstrap resample of these pairs holds no flagged lens: ``(1 − k/G)^G`` for
    ``k`` of ``G`` LRGs with a flagged lens. Such resamples leave the flag ratio undefined; the percentile
    interval of the rest is not a valid interval when they exceed the interval's tail ``(1 − level)/2``
    (one flagged lens of 13 LRGs: 35 % of resamples, and the ratio reads 1.0 [1.0, 1.0] from one event)."""
    groups = np.asarray(groups)
    n_groups = len(np.unique(groups))
    k = len(np.unique(groups[np.asarray(flagged, bool)]))
    return float((1.0 - k / n_groups) ** n_groups) if n_groups else 1.0


MIN_BIN_PAIRS = 10
"""A θ_E bin with fewer paired positives gets no case; a case with fewer decidable pairs is an ``error``."""

MIN_GATED_BIN_PAIRS = 30
"""A θ_E bin with fewer decidable pairs than this is reported, not gated: its LRG-bootstrap interval of a
paired AUROC near 1 under-covers there (``morphology_auroc`` 0.82 [0.76, 0.86] over 196 seeds at about 19 pairs,
0.89 [0.84, 0.93] at 30-45; ``docs/calibration.md#primary-family``)."""

OPERATING_FPR = 1e-2
"""Without a configured ``operating_threshold``, the operating threshold is the score that the paired
split's controls exceed at this rate (the scale on which a lens search flags candidates)."""

COUNTERFACTUALS = ("core_only", "arc_only", "swapped", "scrambled")


class PairedSet(NamedTuple):
    """The pairs of a split's sample, their lensing split, grouped into θ_E bins."""

    pairs: Pairs
    groups: np.ndarray
    """(P,) LRG of each pair."""
    theta_e_arcsec: np.ndarray
    """(P,) Einstein radius of each pair (NaN if unknown)."""
    split: LensedSplit
    """Counter-image / arc split of each pair's injected light, its decidability and overlap."""
    fwhm_arcsec: np.ndarray
    """(P, C) per-band PSF FWHM of each pair (NaN if unknown)."""
    bins: list
    """One dict per θ_E bin: ``label``, ``lo``, ``hi``, ``rows`` (all its pair positions), ``decided``
    (its decidable pair positions), ``n_lrgs``, ``undecidable_share``, ``reasons`` (count per reason kind)."""


def theta_bins(
    theta_e_arcsec: np.ndarray, decidable: np.ndarray, groups: np.ndarray, edges, reasons: np.ndarray | None = None
) -> list:
    """θ_E bins of the pairs: positions, decidable positions, LRG count, share of undecidable pairs."""
    theta = np.asarray(theta_e_arcsec, np.float64)
    decidable = np.asarray(decidable, bool)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        rows = np.flatnonzero((theta >= lo) & (theta < hi))
        kinds: dict = {}
        if reasons is not None:
            for text in np.asarray(reasons)[rows]:
                if text:
                    key = str(text).split(":")[0]
                    kinds[key] = kinds.get(key, 0) + 1
        out.append(
            {
                "label": f"theta_e{lo:g}-{hi:g}",
                "lo": float(lo),
                "hi": float(hi),
                "rows": rows,
                "decided": rows[decidable[rows]],
                "n_lrgs": int(len(np.unique(groups[rows]))),
                "undecidable_share": float(1 - decidable[rows].mean()) if len(rows) else float("nan"),
                "reasons": kinds,
            }
        )
    return out


def pair_truth(frame: pd.DataFrame, rows: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """The injection truth and (P, 3) per-band PSF FWHM of the rows ``rows`` of a sample's frame."""
    part = frame.iloc[np.asarray(rows, np.int64)].reset_index(drop=True)
    fwhm = np.column_stack(
        [
            pd.to_numeric(part[c], errors="coerce").to_numpy(np.float64) if c in part else np.full(len(part), np.nan)
            for c in PSF_COLUMNS
        ]
    )
    return part, fwhm


def paired_arrays(
    images, labels, groups, theta_e_arcsec, edges, frame: pd.DataFrame | None = None, lensed=None
) -> tuple[PairedSet, np.ndarray, np.ndarray]:
    """Pairs of a sample as a :class:`PairedSet` (with their lensing split) plus their (stamps, ctrls) arrays.

    ``frame``: the sample's rows (injection truth :data:`~shortcutgates.gates.perturb.TRUTH_COLUMNS` and
    ``psf_fwhm_used_g/r/z``); without it, or without those columns, every pair is undecidable.
    ``lensed``: ``lensed(d, truth, fwhm) -> LensedSplit`` in place of
    :func:`~shortcutgates.gates.perturb.split_lensed_light` (the gate cache's stored split of these pairs).
    Raises ``ProbeError`` when the sample holds no pair (a positive and the control of its LRG).
    """
    pairs = find_pairs(labels, groups)
    if len(pairs.stamp) == 0:
        raise ProbeError(
            "no paired rows (a positive and the control of its LRG): the counterfactual gates need "
            "paired data (test_paired of a built manifest, or a split with pairs)"
        )
    stamps, ctrls = images[pairs.stamp], images[pairs.ctrl]
    truth, fwhm = pair_truth(frame if frame is not None else pd.DataFrame(index=range(len(images))), pairs.stamp)
    split = (lensed or split_lensed_light)(stamps - ctrls, truth, fwhm)
    g = np.asarray(groups)[pairs.stamp]
    theta = np.asarray(theta_e_arcsec, np.float64)[pairs.stamp]
    bins = theta_bins(theta, split.decidable, g, edges, split.reason)
    return PairedSet(pairs, g, theta, split, fwhm, bins), stamps, ctrls


def paired_set(context, split: str) -> PairedSet:
    """The :class:`PairedSet` of a split's sample (computed once per context and shared by every model of it;
    its lensing split kept in the gate cache, ``context.array_cache``, when the run has one)."""

    def compute():
        s = context.sample(split)
        return paired_arrays(
            s.images,
            s.labels,
            s.groups,
            s.theta_e_px * PIXEL_SCALE_ARCSEC,
            context.config.theta_e_bins_arcsec,
            s.frame,
            lensed=lambda d, truth, fwhm: stored_split(context, split, d, truth, fwhm),
        )[0]

    return context.memo(("paired_set", split), compute)


LENSED_ARRAYS = ("counter", "arc", "decidable", "overlap", "counter_share", "reason")


def stored_split(context, split: str, d: np.ndarray, truth: pd.DataFrame, fwhm: np.ndarray) -> LensedSplit:
    """:func:`~shortcutgates.gates.perturb.split_lensed_light` of a split's pairs, read from the gate cache
    (``context.array_cache``: a :class:`~shortcutgates.gates.cache.DataGateCache`, keyed by the manifest's
    bytes, the settings and the version) when it holds it, else computed and stored there."""
    cache = getattr(context, "array_cache", None)
    name = f"lensing-{split}"

    def check(arrays: dict) -> None:
        shapes = {k: np.shape(arrays[k]) for k in LENSED_ARRAYS}
        if (
            shapes["counter"] != d.shape
            or shapes["arc"] != d.shape
            or any(shapes[k] != (len(d),) for k in LENSED_ARRAYS[2:])
        ):
            raise ValueError(f"its arrays do not fit {len(d)} pairs of shape {d.shape[1:]}")

    stored = cache.load_arrays(name, check) if cache is not None else None
    if stored is not None:
        return LensedSplit(*(stored[k] for k in LENSED_ARRAYS))
    lensed = split_lensed_light(d, truth, fwhm)
    if cache is not None:
        cache.save_arrays(name, {k: np.asarray(getattr(lensed, k)) for k in LENSED_ARRAYS})
    return lensed


def counterfactuals(stamps, ctrls, groups, lensed: LensedSplit, fwhm_arcsec, seed: int) -> tuple[dict, np.ndarray]:
    """The counterfactual images of the pairs (:data:`COUNTERFACTUALS`), each (P, C, H, W) float32, and
    ``swap_to`` (the pair whose control each arc was moved to).

    ``core_only`` = ctrl + counter-image light; ``arc_only`` = ctrl + arc light; ``swapped`` =
    ctrl[π] + all lensed light, π onto an LRG of nearly the same r-band brightness
    (:func:`~shortcutgates.gates.perturb.brightness_matched_swap`); ``scrambled`` = ctrl + counter-image
    + the arc cut into PSF-sized patches shuffled round its rings (:func:`~shortcutgates.gates.perturb.scramble_along_ring`).
    """
    rng = np.random.default_rng(seed)
    stamps, ctrls = np.asarray(stamps, np.float32), np.asarray(ctrls, np.float32)
    perm = brightness_matched_swap(groups, -measure_lrgs(ctrls)["total_mag_r"].to_numpy())
    fwhm_px = np.nan_to_num(np.asarray(fwhm_arcsec, np.float64)[:, 1], nan=1.3) / PIXEL_SCALE_ARCSEC
    images = {
        "core_only": ctrls + lensed.counter,
        "arc_only": ctrls + lensed.arc,
        "swapped": ctrls[perm] + (stamps - ctrls),
        "scrambled": ctrls + lensed.counter + scramble_along_ring(lensed.arc, fwhm_px, rng),
    }
    return images, perm


def counterfactual_batch(
    stamps, ctrls, groups, seed: int, lensed: LensedSplit, fwhm_arcsec
) -> tuple[np.ndarray, np.ndarray]:
    """Every counterfactual of the pairs in one (4P, C, H, W) float32 batch, :data:`COUNTERFACTUALS`
    order, and ``swap_to``: model independent (seeded), so made once however many models score it."""
    images, perm = counterfactuals(stamps, ctrls, groups, lensed, fwhm_arcsec, seed)
    return np.concatenate([images[k] for k in COUNTERFACTUALS]), perm


def scores_of_batch(scores: np.ndarray, perm: np.ndarray) -> dict:
    """Scores of a :func:`counterfactual_batch` split per counterfactual: name -> (P,), plus ``"swap_to"``."""
    scores = np.asarray(scores, np.float64)
    n = len(perm)
    out = {k: scores[i * n : (i + 1) * n] for i, k in enumerate(COUNTERFACTUALS)}
    out["swap_to"] = perm
    return out


def counterfactual_scores(score_fn, stamps, ctrls, groups, seed: int, lensed: LensedSplit, fwhm_arcsec) -> dict:
    """Scores of every counterfactual of the pairs, in **one** call of ``score_fn``.

    Returns ``{"core_only", "arc_only", "swapped", "scrambled"}`` -> (P,) scores, plus ``"swap_to"``.
    """
    batch, perm = counterfactual_batch(stamps, ctrls, groups, seed, lensed, fwhm_arcsec)
    return scores_of_batch(score_fn(batch), perm)


def operating_threshold(ctrl_scores: np.ndarray, configured: float | None) -> float:
    """The score from which a lens is flagged: ``configured``, else the (1 − :data:`OPERATING_FPR`) quantile
    of the controls' scores (``higher`` interpolation: at most that share of controls lie above it)."""
    if configured is not None:
        return float(configured)
    return float(np.quantile(np.asarray(ctrl_scores, np.float64), 1 - OPERATING_FPR, method="higher"))


def paired_batch(context, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The :func:`counterfactual_batch` of a split's pairs (data only: once for every model of a context)."""

    def compute():
        ps = paired_set(context, split)
        s = context.sample(split)
        return counterfactual_batch(
            s.images[ps.pairs.stamp], s.images[ps.pairs.ctrl], ps.groups, context.config.seed, ps.split, ps.fwhm_arcsec
        )

    return context.memo(("counterfactual_batch", split), compute)


def pair_scores(context, split: str) -> dict:
    """``stamp``, ``ctrl`` and counterfactual scores per pair of a split (two inference passes in all:
    the split's own scores, shared with ``detection_auroc``, and one counterfactual batch), and the
    operating ``threshold`` (from all the split's negatives unless configured)."""

    def compute():
        ps = paired_set(context, split)
        s = context.sample(split)
        base = context.scores(split)
        batch, perm = paired_batch(context, split)
        inputs = context.model_inputs(("counterfactual_batch", split), lambda: batch)
        out = scores_of_batch(context.score(batch, inputs), perm)
        out.update(
            stamp=base[ps.pairs.stamp],
            ctrl=base[ps.pairs.ctrl],
            threshold=operating_threshold(base[s.labels == 0], context.config.operating_threshold),
        )
        return out

    return context.memo(("pair_scores", split), compute)


def _pair_auc(x: np.ndarray, ctrl: np.ndarray):
    """``auc(w)``: weighted AUROC of scores ``x`` (one per pair) against the pairs' control scores.

    Each pair enters both sets with the same weight, so ``auc`` of identical score sets is 0.5
    exactly; ties count one half.
    """
    _, bucket = np.unique(np.r_[x, ctrl], return_inverse=True)
    bucket = bucket.ravel()
    bx, bc = bucket[: len(x)], bucket[len(x) :]
    m = int(bucket.max()) + 1

    def auc(w: np.ndarray) -> float:
        wx, wc = np.bincount(bx, w, minlength=m), np.bincount(bc, w, minlength=m)
        below = np.cumsum(wc) - wc
        return float((wx * (below + 0.5 * wc)).sum() / (wx.sum() * wc.sum()))

    def batch(w: np.ndarray) -> np.ndarray:
        """(B, P) integer weights -> (B,): every sum is of integers and halves, exact in any order, so
        each value is the float ``auc`` gives for that resample."""
        wx, wc = _bincount_rows(bx, w, m), _bincount_rows(bc, w, m)
        below = np.cumsum(wc, axis=1) - wc
        return (wx * (below + 0.5 * wc)).sum(axis=1) / (wx.sum(axis=1) * wc.sum(axis=1))

    auc.batch = batch  # type: ignore[attr-defined]
    return auc


def _bincount_rows(bucket: np.ndarray, w: np.ndarray, m: int) -> np.ndarray:
    """``np.bincount(bucket, w[b], minlength=m)`` for every row ``b`` of ``w`` (B, P) at once, shape (B, m)."""
    offsets = (np.arange(len(w)) * m)[:, None] + bucket[None, :]
    return np.bincount(offsets.ravel(), w.ravel(), minlength=len(w) * m).reshape(len(w), m)


def _flag_share(flagged: np.ndarray):
    def share(w: np.ndarray) -> float:
        return float((w * flagged).sum() / w.sum()) if w.sum() > 0 else float("nan")

    def batch(w: np.ndarray) -> np.ndarray:  # (B, P) -> (B,), the same floats (integer sums)
        total = w.sum(axis=1)
        return np.divide((w * flagged).sum(axis=1), total, out=np.full(len(w), np.nan), where=total > 0)

    share.batch = batch  # type: ignore[attr-defined]
    return share


def _statistic_batch(statistic: str, det, vs_ctrl, vs_stamp, cf_rate, lens_rate, n: int):
    """The bootstrap batch of :func:`paired_statistic`'s metric: weights (B, 2n) -> (B,) values, each the
    float the one-resample metric gives (the pairs' weights are the first n columns)."""

    def batch(weights: np.ndarray) -> np.ndarray:
        w = weights[:, :n]
        if statistic == "auroc":
            return vs_ctrl.batch(w)
        if statistic == "auroc_vs_stamp":
            return vs_stamp.batch(w)
        if statistic == "flag_rate":
            return cf_rate.batch(w)
        if statistic == "flag_ratio":
            lens = lens_rate.batch(w)
            return np.divide(cf_rate.batch(w), lens, out=np.full(len(w), np.nan), where=lens > 0)
        return det.batch(w) - vs_ctrl.batch(w)

    return batch


STATISTICS = ("auroc", "drop", "auroc_vs_stamp", "flag_ratio", "flag_rate")
"""``auroc``: AUROC(counterfactual vs controls); ``drop``: AUROC(stamp vs controls) − AUROC(counterfactual
vs controls) on the same pairs and resamples; ``auroc_vs_stamp``: AUROC(stamp vs counterfactual);
``flag_rate``: share of counterfactuals flagged at the operating threshold; ``flag_ratio``: that share
over the share of the real lenses (stamps) flagged there."""


def paired_statistic(
    scores: dict, kind: str, statistic: str, rows: np.ndarray, groups: np.ndarray, config
) -> tuple[Estimate, float]:
    """One gate's value on the pairs ``rows`` with its LRG-bootstrap interval, and the detection AUROC.

    ``statistic``: one of :data:`STATISTICS` (the flag statistics need ``scores["threshold"]``).
    Raises ``ProbeError`` when the model's paired detection AUROC on these rows is below
    :data:`MIN_DETECTION_AUROC`, and ``ValueError`` for a (near-)constant scorer.
    """
    x, stamp, ctrl = scores[kind][rows], scores["stamp"][rows], scores["ctrl"][rows]
    check_scorer(np.r_[stamp, ctrl, x], f"{len(rows)} pairs and their counterfactuals")
    det, vs_ctrl, vs_stamp = _pair_auc(stamp, ctrl), _pair_auc(x, ctrl), _pair_auc(stamp, x)
    detection = det(np.ones(len(rows)))
    if detection < MIN_DETECTION_AUROC:
        raise ProbeError(
            f"the model does not detect these lenses: paired AUROC {detection:.3f} < "
            f"{MIN_DETECTION_AUROC:g} on {len(rows)} pairs, so what it reads cannot be told "
            "(a model gate says nothing good about a model that cannot detect lenses)"
        )
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r} (known: {', '.join(STATISTICS)})")
    cf_rate = lens_rate = None
    if statistic.startswith("flag"):
        t = float(scores["threshold"])
        cf_rate, lens_rate = _flag_share(x > t), _flag_share(stamp > t)
        empty = empty_resample_share(stamp > t, np.asarray(groups)[rows])
        if empty > (1 - config.level) / 2:
            raise ProbeError(
                f"{int((stamp > t).sum())} of these {len(rows)} lenses score above the operating threshold "
                f"{t:.4g}: {empty:.1%} of LRG resamples would hold none (> {(1 - config.level) / 2:.1%}), "
                "too few flagged lenses for an interval of the operational claim (more pairs in the bin, "
                "or a lower operating_threshold, would decide)"
            )

    def metric(_labels, _values, weights=None):
        w = np.ones(len(rows)) if weights is None else weights[: len(rows)]
        if statistic == "auroc":
            return vs_ctrl(w)
        if statistic == "auroc_vs_stamp":
            return vs_stamp(w)
        if statistic == "flag_rate":
            return cf_rate(w)
        if statistic == "flag_ratio":
            lens = lens_rate(w)
            return cf_rate(w) / lens if lens > 0 else float("nan")
        return det(w) - vs_ctrl(w)

    metric.batch = _statistic_batch(statistic, det, vs_ctrl, vs_stamp, cf_rate, lens_rate, len(rows))  # type: ignore[attr-defined]
    g = np.asarray(groups)[rows]
    labels = np.r_[np.ones(len(rows), int), np.zeros(len(rows), int)]
    est = grouped_bootstrap(
        labels,
        np.zeros(2 * len(rows)),
        np.r_[g, g],
        metric=metric,
        n_boot=config.n_boot,
        seed=config.seed,
        level=config.level,
    )
    return est._replace(n=len(rows)), detection


def operational(scores: dict, kind: str, rows: np.ndarray, groups: np.ndarray, config) -> dict:
    """The operational claim on ``rows``: shares of counterfactuals and of real lenses flagged at the
    operating threshold, each with its LRG-bootstrap interval (``docs/model_gates.md#operational-claim``)."""
    t = float(scores["threshold"])
    out: dict = {"threshold": t}
    g = np.asarray(groups)[rows]
    n = len(rows)
    labels = np.r_[np.ones(n, int), np.zeros(n, int)]  # the bootstrap's two-class layout; weights[:n] per pair
    for name, flagged in (
        ("counterfactual_flagged", scores[kind][rows] > t),
        ("lens_flagged", scores["stamp"][rows] > t),
    ):
        share = _flag_share(flagged)

        def metric(_l, _v, w=None, f=share):
            return f(np.ones(n) if w is None else w[:n])

        metric.batch = lambda w, f=share: f.batch(w[:, :n])  # type: ignore[attr-defined]
        est = grouped_bootstrap(
            labels,
            np.zeros(2 * n),
            np.r_[g, g],
            metric=metric,
            n_boot=config.n_boot,
            seed=config.seed,
            level=config.level,
        )
        out[name] = [float(est.value), float(est.lo), float(est.hi)]
    return out


def bin_is_gated(b: dict) -> bool:
    """A bin decides when at most :data:`MAX_UNDECIDABLE_SHARE` of its pairs are undecidable and at least
    :data:`MIN_GATED_BIN_PAIRS` are decidable."""
    return bool(b["undecidable_share"] <= MAX_UNDECIDABLE_SHARE and len(b["decided"]) >= MIN_GATED_BIN_PAIRS)
