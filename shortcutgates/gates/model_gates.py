"""Model gates (``docs/design.md#gates``): each is ``gate(context, case) -> Measurement``.

The model enters only through ``context.score(raw_images) -> scores`` (a checkpoint's
``predict_scores`` or any ``score_fn``), so every gate is testable with a tiny synthetic scorer.
Unperturbed scores are computed once per split (``context.scores``).

The counterfactual gates (``arc_masked_auroc``, ``core_masked_auroc_drop``, ``arc_swap_auroc_drop``,
``morphology_auroc``) run on the pairs of the paired split, one case per θ_E bin: every
counterfactual of every pair is scored in **one** further inference pass
(:func:`~shortcutgates.gates.paired.counterfactual_scores`), shared by the four gates. Their arithmetic
lives on arrays in :mod:`shortcutgates.gates.paired`, for calibration with any ``score_fn``
(``shortcutgates.gates.reference_scorers``). Design and measured error rates:
``docs/model_gates.md``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from shortcutgates.data.schema import PIXEL_SCALE_ARCSEC
from shortcutgates.gates.contract import Measurement
from shortcutgates.gates.decision import (
    auc_measurement,
    bootstrap_auroc,
    bootstrap_metric,
    estimate_measurement,
    weighted_auroc_metric,
)
from shortcutgates.gates.paired import (
    MAX_UNDECIDABLE_SHARE,
    MIN_BIN_PAIRS,
    MIN_GATED_BIN_PAIRS,
    PairedSet,
    bin_is_gated,
    operational,
    pair_scores,
    paired_set,
    paired_statistic,
    theta_bins,
)
from shortcutgates.gates.perturb import find_pairs
from shortcutgates.gates.probes import ProbeError
from shortcutgates.gates.records import GateCase, Role


def _auc_result(context, case, labels, scores, groups, what, note="", extra=None) -> Measurement:
    return auc_measurement(labels, scores, groups, context.config, what, note, extra, scorer=f"{case.id}'s inputs")


def detection_auroc(context, case: GateCase) -> Measurement:
    """Model AUROC on a split's sample."""
    sample = context.sample(case.split)
    return _auc_result(
        context, case, sample.labels, context.scores(case.split), sample.resampling_units, "AUROC", sample.note
    )


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

    # many resamples at once, the same floats (NaN where a split lost a class: left out, as the loop's ValueError)
    gap.batch = lambda w: auc_a.batch(w[:, in_a]) - auc_b.batch(w[:, ~in_a])  # type: ignore[attr-defined]

    est = bootstrap_metric(labels, scores, groups, gap, context.config)
    return est, auc_a(None, None), auc_b(None, None)


def cross_test_gap(context, case: GateCase) -> Measurement:
    """AUROC(test_paired) − AUROC(test), signed; the claim is equivalence within the margin."""
    est, auc_a, auc_b = auroc_difference(context, "test_paired", "test")
    return estimate_measurement(
        est, "AUROC gap (test_paired − test)", f"AUROC test_paired {auc_a:.3f}, test {auc_b:.3f}"
    )


def memorisation_gap(context, case: GateCase) -> Measurement:
    """AUROC(train) − AUROC(val): how much better the model does on LRGs it was trained on (reported)."""
    a, b = str(case.params["pair"]).split("-", 1)
    est, auc_a, auc_b = auroc_difference(context, a, b)
    return estimate_measurement(est, f"AUROC gap ({a} − {b})", f"AUROC {a} {auc_a:.3f} (in-sample), {b} {auc_b:.3f}")


# --- paired counterfactual gates ---------------------------------------------------------------
# docs/model_gates.md: what each gate claims, how it was calibrated, what the numbers were.
def _bin_of(ps: PairedSet, case) -> dict:
    label = case.params.get("theta_e")
    if label is None:
        raise ProbeError(f"no θ_E bin of split {case.split!r} holds {MIN_BIN_PAIRS} pairs with theta_e_arcsec")
    for b in ps.bins:
        if b["label"] == label:
            return b
    raise ProbeError(f"no θ_E bin {label!r} (bins: {', '.join(b['label'] for b in ps.bins)})")


def _reasons(b: dict) -> str:
    return "; ".join(f"{k} {v}" for k, v in sorted(b["reasons"].items(), key=lambda kv: -kv[1]))


def _counterfactual_gate(
    context, case, kind: str, statistic: str, what: str, needs_split: bool = True, also: tuple[str, str] | None = None
) -> Measurement:
    ps = paired_set(context, case.split)
    b = _bin_of(ps, case)
    where = f"θ_E {b['lo']:g}–{b['hi']:g}″"
    if len(b["rows"]) < MIN_BIN_PAIRS:
        raise ProbeError(f"{len(b['rows'])} pairs in {where} (< {MIN_BIN_PAIRS})")
    rows = b["decided"] if needs_split else b["rows"]
    if len(rows) < MIN_BIN_PAIRS:
        raise ProbeError(
            f"undecidable: {len(b['rows']) - len(b['decided'])} of {len(b['rows'])} pairs in {where} "
            f"cannot tell counter-image from arc ({_reasons(b)}); {len(rows)} decidable < {MIN_BIN_PAIRS}"
        )
    scores = pair_scores(context, case.split)
    est, detection = paired_statistic(scores, kind, statistic, rows, ps.groups, context.config)
    op = operational(scores, kind, rows, ps.groups, context.config)
    extra_value = {}
    if also is not None:
        other = paired_statistic(scores, kind, also[0], rows, ps.groups, context.config)[0]
        extra_value = {also[0]: [float(other.value), float(other.lo), float(other.hi)]}
    gated = bin_is_gated(b)
    also_what = also[1] if also is not None else ""
    note = (
        f"{where}: {len(rows)} {'decidable ' if needs_split else ''}pairs of {b['n_lrgs']} LRGs "
        f"({b['undecidable_share']:.0%} of {len(b['rows'])} undecidable"
        + (f": {_reasons(b)}" if b["reasons"] else "")
        + f"), paired detection AUROC {detection:.3f}; "
        f"at the operating threshold {op['threshold']:.4g} flagged: counterfactual "
        f"{op['counterfactual_flagged'][0]:.0%} [{op['counterfactual_flagged'][1]:.0%}, {op['counterfactual_flagged'][2]:.0%}], "
        f"real lenses {op['lens_flagged'][0]:.0%} [{op['lens_flagged'][1]:.0%}, {op['lens_flagged'][2]:.0%}]"
        + "".join(f"; {also_what} {v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]" for v in extra_value.values())
        + (
            ""
            if gated
            else f" (reported, not gated: > {MAX_UNDECIDABLE_SHARE:.0%} undecidable or < "
            f"{MIN_GATED_BIN_PAIRS} decidable pairs)"
        )
    )
    return Measurement(
        float(est.value),
        (float(est.lo), float(est.hi)),
        int(est.n),
        int(est.n_groups),
        what,
        note,
        {
            "theta_e_bin": [b["lo"], b["hi"]],
            "undecidable_share": b["undecidable_share"],
            "n_pairs": int(len(b["rows"])),
            "n_decidable": int(len(b["decided"])),
            "undecidable_reasons": b["reasons"],
            "detection_auroc": detection,
            "gated": gated,
            "operational": op,
            **extra_value,
        },
    )


GATE_STATISTICS = {
    # gate -> (counterfactual, statistic it decides on, uses the lensing split)
    "arc_masked_auroc": ("core_only", "flag_ratio", True),
    "core_masked_auroc_drop": ("arc_only", "drop", True),
    "arc_swap_auroc_drop": ("swapped", "drop", False),
    "morphology_auroc": ("scrambled", "auroc_vs_stamp", True),
}
"""What each counterfactual gate decides on (``docs/model_gates.md``)."""


def arc_masked_auroc(context, case) -> Measurement:
    """Positives with the arc taken out (ctrl + the counter-image light, by lensing) vs the bare controls.

    Decided on the operational claim: the share of these arc-masked positives the model flags at its
    operating threshold over the share of the real lenses it flags there (``flag_ratio``). An arc
    reader flags counter-image light alone rarely (it is a few times fainter than the arc); a model
    that finds lenses from the core light flags it about as often as the lenses. The AUROC against the
    controls is reported beside it (``extra["auroc"]``): it also rises for an arc reader that sees a
    counter-image outside its blind radius (docs/model_gates.md#operational-claim).
    Decidable pairs only (:func:`~shortcutgates.gates.perturb.split_lensed_light`).
    """
    kind, statistic, split = GATE_STATISTICS["arc_masked_auroc"]
    return _counterfactual_gate(
        context, case, kind, statistic, "arc-masked flag ratio", split, also=("auroc", "arc-masked AUROC")
    )


def core_masked_auroc_drop(context, case) -> Measurement:
    """Paired detection AUROC lost when the counter-image light is taken out (ctrl + the arc light).

    0 for an arc reader; a core reader loses all it had above chance.
    """
    kind, statistic, split = GATE_STATISTICS["core_masked_auroc_drop"]
    return _counterfactual_gate(context, case, kind, statistic, "core-masked AUROC drop", split)


def arc_swap_auroc_drop(context, case) -> Measurement:
    """Paired detection AUROC lost when each arc is put on another LRG's control (``ctrl[π] + d``).

    About 0 for a model that reads the arc whatever galaxy it lies on. Needs no split: every pair.
    """
    kind, statistic, split = GATE_STATISTICS["arc_swap_auroc_drop"]
    return _counterfactual_gate(context, case, kind, statistic, "arc-swap AUROC drop", split)


def morphology_auroc(context, case) -> Measurement:
    """Positives vs the same pairs with the arc cut into PSF-sized patches shuffled round its rings.

    Same light per ring, same colour, same counter-image, no tangential coherence (neither an arc nor
    a ring): a reader of arcs or rings ranks the real lenses higher; a reader of flux per ring cannot
    tell them apart (0.5, a fail).
    """
    kind, statistic, split = GATE_STATISTICS["morphology_auroc"]
    return _counterfactual_gate(context, case, kind, statistic, "morphology AUROC", split)


def theta_bin_cases(context, gate) -> list:
    """One case per θ_E bin with at least :data:`MIN_BIN_PAIRS` pairs on the paired split.

    Bins that are not gated (:func:`bin_is_gated`: mostly undecidable pairs, or too few decidable ones)
    get role ``reported``. Without pairs, one case without a bin (it measures an ``error`` with the reason).
    Without a model the bins come from the pairs alone (:func:`listed_bins`: no lensing split, which
    only a model's run needs): the same cases, each ``reported`` below :data:`MIN_GATED_BIN_PAIRS` pairs
    and otherwise in the gate's role until a model runs it (:func:`resolve_bin_role`).
    """
    split = context.paired_split
    try:
        bins = paired_set(context, split).bins if context.has_model else listed_bins(context, split)
    except (ProbeError, ValueError):
        return [GateCase(gate.name, {}, split, gate.needs, gate.role)]
    cases = [
        GateCase(gate.name, {"theta_e": b["label"]}, split, gate.needs, _bin_role(gate, b, context.has_model))
        for b in bins
        if len(b["rows"]) >= MIN_BIN_PAIRS
    ]
    return cases or [GateCase(gate.name, {}, split, gate.needs, gate.role)]


def _bin_role(gate, b: dict, split_known: bool = True) -> Role:
    gated = bin_is_gated(b) if split_known and GATE_STATISTICS[gate.name][2] else len(b["rows"]) >= MIN_GATED_BIN_PAIRS
    return gate.role if gated else "reported"


def listed_bins(context, split: str) -> list:
    """θ_E bins of a split's pairs (``label``, ``lo``, ``hi``, ``rows``) without their lensing split: the
    pairs and bins of :func:`~shortcutgates.gates.paired.paired_set`, with nothing decided yet."""
    s = context.sample(split)
    pairs = find_pairs(s.labels, s.groups)
    if len(pairs.stamp) == 0:
        raise ProbeError("no paired rows")
    theta = (s.theta_e_px * PIXEL_SCALE_ARCSEC)[pairs.stamp]
    return theta_bins(theta, np.zeros(len(theta), bool), s.groups[pairs.stamp], context.config.theta_e_bins_arcsec)


def resolve_bin_role(context, case, gate):
    """A θ_E-bin case listed without a model, with the role its bin's lensing split gives (a model's run)."""
    label = case.params.get("theta_e")
    bins = {b["label"]: b for b in paired_set(context, case.split).bins} if label is not None else {}
    if label not in bins:
        return case
    return replace(case, role=context.config.role_for(case, _bin_role(gate, bins[label])))


theta_bin_cases.resolve = resolve_bin_role  # type: ignore[attr-defined]  # registry.run_case: roles of cases listed without a model


# --- strata ------------------------------------------------------------------------------------
def strata(
    frame: pd.DataFrame, labels: np.ndarray, theta_e_px: np.ndarray, by: str, edges_arcsec
) -> tuple[np.ndarray, list[str]]:
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
