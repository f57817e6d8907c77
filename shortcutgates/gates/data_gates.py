"""Data gates (``docs/design.md#gates``): each is ``gate(context, case) -> Measurement`` and needs no model.

The probes run on a split's sample (:meth:`GateContext.sample`): capped, decoded once, negatives
deduplicated by image hash, LRG identity from sky matching. Cross-validation is grouped by LRG;
every AUC carries an LRG-bootstrap interval. Injection truth (``theta_e_arcsec``) only places the
arc annulus and the per-bin breakdown; it is never a feature. A gate measures and knows nothing of
thresholds or verdicts (``docs/design.md#gate-contract``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from shortcutgates.data.schema import LABEL_COLUMN, PIXEL_SCALE_ARCSEC, SHARED_POSITIVE_SPLITS, SPLIT_COLUMN
from shortcutgates.model.preprocess import CLIP, annulus_radii
from shortcutgates.gates.contract import Measurement
from shortcutgates.gates.core_bins import CoreBins, arc_clears_box, core_theta_bins
from shortcutgates.gates.decision import bootstrap_auroc, bootstrap_metric, estimate_measurement
from shortcutgates.gates.features import arc_radii, metadata_features, profile_features, ring_features, smd_metric
from shortcutgates.gates.probes import ProbeError, central_box, cv_auc_estimate, grouped_cv_gbm_scores
from shortcutgates.gates.records import GateCase


MAX_LISTED_ROWS = 1000
"""Bad rows listed by number in ``data_integrity``'s message (the first three with their reason)."""


def bad_rows_by_file(problems: list[str], limit: int = MAX_LISTED_ROWS) -> str:
    """``"<file>: rows 3, 8, 11; <file2>: rows 0"`` from located problem messages (DataError format).

    At most ``limit`` row numbers are listed, then how many more there are.
    """
    import re

    rows: dict[str, list[int]] = {}
    for text in problems:
        match = re.match(r"^(.*?): row (\d+)[,:]", text)
        if match:
            rows.setdefault(match.group(1), []).append(int(match.group(2)))
    parts, listed = [], 0
    for file, numbers in rows.items():
        numbers = sorted(set(numbers))
        take = numbers[: max(0, limit - listed)]
        listed += len(take)
        if take:
            more = f" and {len(numbers) - len(take)} more" if len(take) < len(numbers) else ""
            parts.append(f"{file}: rows {', '.join(map(str, take))}{more}")
        elif numbers:
            parts.append(f"{file}: {len(numbers)} rows")
    return "; ".join(parts)


def data_integrity(context, case: GateCase) -> Measurement:
    """Rows that fail to decode, have another stamp shape, or cannot be normalised: must be 0.

    The message gives the first three problems with their reason, then lists every bad row by file.
    """
    problems = context.integrity()
    shown = "; ".join(problems[:3])
    if len(problems) > 3:
        shown += f"; … {len(problems) - 3} more; bad rows: {bad_rows_by_file(problems)}"
    frame = context.frame
    return Measurement(
        len(problems),
        None,
        len(frame),
        int(frame["_group"].nunique()),
        "bad rows",
        shown or f"all {len(frame)} rows decode",
        {"problems": problems[:100]},
    )


def _shared(a: pd.Series, b: pd.Series) -> list[str]:
    return sorted(set(a.unique()) & set(b.unique()))


def lrg_leakage(context, case: GateCase) -> Measurement:
    """LRG identities (sky-matched) shared by positives and negatives of a split, or by two splits.

    ``test`` and ``test_paired`` share their positives by design (``schema.SHARED_POSITIVE_SPLITS``):
    between them, a leak is a ``test`` negative of a ``test_paired`` LRG (the unpaired negatives would be paired).
    """
    frame = context.frame
    pair = str(case.params["pair"])
    if pair == "pos-neg":
        rows = context.rows(case.split)
        shared = _shared(rows.loc[rows[LABEL_COLUMN] == 1, "_group"], rows.loc[rows[LABEL_COLUMN] == 0, "_group"])
        what, hint = "LRGs with both a positive and a negative", " (paired construction)"
    elif pair.endswith("-model_train"):
        split = pair.removesuffix("-model_train")
        shared = context.training_lrgs_shared(split)
        rows = context.rows(split)
        what, hint = f"LRGs of {split} in the model's training split", " (the checkpoint trained on them)"
    else:
        a, b = _split_pair(pair, context.splits)
        in_a, in_b = frame[SPLIT_COLUMN] == a, frame[SPLIT_COLUMN] == b
        rows, what, hint = frame[in_a | in_b], f"LRGs in both {a} and {b}", ""
        if sorted((a, b)) == sorted(SHARED_POSITIVE_SPLITS):  # test's positives are test_paired's
            in_a, in_b = (
                (in_a & (frame[LABEL_COLUMN] == 0), in_b) if a == "test" else (in_a, in_b & (frame[LABEL_COLUMN] == 0))
            )
            what, hint = "test negatives on test_paired LRGs", " (test's positives are test_paired's by design)"
        shared = _shared(frame.loc[in_a, "_group"], frame.loc[in_b, "_group"])
    note = f"e.g. {', '.join(shared[:3])}{hint}" if shared else "none shared"
    check = context.id_check
    if check is not None and not check.ok:
        note += (
            f"; given lrg_id disagrees with sky matching: {len(check.split_ids)} ids span several LRGs, "
            f"{len(check.merged_ids)} LRGs carry several ids (sky matching used)"
        )
    return Measurement(
        len(shared), None, len(rows), int(rows["_group"].nunique()), what, note, {"shared": shared[:100]}
    )


def _split_pair(pair: str, splits: list[str]) -> tuple[str, str]:
    for a in splits:
        if pair.startswith(a + "-") and pair[len(a) + 1 :] in splits:
            return a, pair[len(a) + 1 :]
    raise ValueError(f"lrg_leakage: cannot read split pair {pair!r} (splits: {', '.join(splits)})")


def property_balance(context, case: GateCase) -> Measurement:
    """Signed standardised mean difference of one property, positives − negatives, with its interval.

    The claim is equivalence (``docs/design.md#verdict-rule``): the signed interval must lie within
    ``±margin``. The bootstrap resamples LRGs, so a pair (both rows of one LRG) stays together.
    """
    sample = context.sample(case.split)
    prop = str(case.params["prop"])
    values = pd.to_numeric(sample.frame[prop], errors="coerce").to_numpy(np.float64)
    ok = np.isfinite(values)
    labels, groups = sample.labels[ok], sample.resampling_units[ok]
    missing = [c for c in (0, 1) if not (labels == c).any()]
    if missing:
        raise ProbeError(f"{prop!r} has no finite value for label {missing[0]} in split {case.split!r}")
    est = bootstrap_metric(labels, values[ok], groups, smd_metric(labels, values[ok]), context.config)
    note = sample.note + (f"; {int((~ok).sum())} rows without a value" if (~ok).any() else "")
    return estimate_measurement(est, f"SMD of {prop}", note)


def _probe_measurement(context, case, features, what: str, note: str, extra=None, *key) -> Measurement:
    """Grouped-CV probe AUC with its interval, computed once per (gate, split, input array, key)."""
    sample = context.sample(case.split)

    def compute():
        f = features() if callable(features) else features
        return cv_auc_estimate(f, sample.labels, sample.resampling_units, context.config)

    input_key = context.input_key(str(case.params["input"])) if "input" in case.params else None
    est, scores = context.memo((case.gate, case.split, input_key, *key), compute)
    return estimate_measurement(est, what, note, {**(extra or {}), "_scores": scores})


def metadata_c2st_auc(context, case: GateCase) -> Measurement:
    """Classifier two-sample test: grouped-CV AUC predicting the label from property columns."""
    sample = context.sample(case.split)
    columns = context.property_columns
    features = metadata_features(sample.frame, columns)
    return _without_scores(
        _probe_measurement(
            context,
            case,
            features,
            "C2ST AUC",
            f"{len(columns)} property columns ({absent_properties(context)}); {sample.note}",
        )
    )


def metadata_c2st_gbm_auc(context, case: GateCase) -> Measurement:
    """Non-linear classifier two-sample test: grouped-CV AUC of gradient-boosted trees on the property
    columns (beside the linear :func:`metadata_c2st_auc`: an imbalance in a combination or a tail
    that a linear model misses). Its interval resamples the out-of-fold scores only (the trees are
    not refitted per resample), so it is somewhat narrow; the case is reported."""
    sample = context.sample(case.split)
    columns = context.property_columns

    def compute():
        features = metadata_features(sample.frame, columns)
        scores = grouped_cv_gbm_scores(
            features, sample.labels, sample.resampling_units, n_splits=context.config.n_splits, seed=context.config.seed
        )
        return bootstrap_auroc(sample.labels, scores, sample.resampling_units, context.config)

    est = context.memo((case.gate, case.split), compute)
    return estimate_measurement(
        est,
        "C2ST AUC (gradient-boosted trees)",
        f"{len(columns)} property columns ({absent_properties(context)}); {sample.note}",
    )


def absent_properties(context) -> str:
    """What the property columns lack, said out loud (redshift, magnitude, size)."""
    present = set(context.property_columns)
    wanted = {
        "redshift": ("lrg_redshift",),
        "magnitude": ("lrg_mag_r", "total_mag_r"),
        "size": ("lrg_reff_arcsec", "half_light_radius_r"),
    }
    missing = [name for name, cols in wanted.items() if not present & set(cols)]
    return "no " + ", ".join(missing) + " column" if missing else "redshift, magnitude and size present"


def _probe_input(context, case: GateCase) -> tuple[np.ndarray, str]:
    mode = str(case.params["input"])
    name = context.model_preprocess_name if mode == "model" else mode
    return context.inputs(case.split, mode), name


def theta_e_bin_aurocs(labels, scores, groups, theta_e_px, edges_arcsec, config) -> list[dict]:
    """AUROC of the positives of each θ_E bin against all negatives (out-of-fold scores reused).

    Returns one record per bin with ``lo``/``hi`` (arcsec), ``n_pos``, ``auc``, ``ci`` (or None when
    the bin holds too few positives to measure).
    """
    theta_arcsec = np.asarray(theta_e_px) * PIXEL_SCALE_ARCSEC
    out = []
    for lo, hi in zip(edges_arcsec[:-1], edges_arcsec[1:]):
        in_bin = (labels == 1) & (theta_arcsec >= lo) & (theta_arcsec < hi)
        rec = {"lo": float(lo), "hi": float(hi), "n_pos": int(in_bin.sum()), "auc": None, "ci": None}
        sel = in_bin | (labels == 0)
        if in_bin.sum() >= 5 and (labels == 0).any():
            est = bootstrap_auroc(labels[sel], scores[sel], groups[sel], config)
            rec["auc"], rec["ci"] = est.value, (est.lo, est.hi)
        out.append(rec)
    return out


def blanked_fraction(features: np.ndarray) -> float:
    """Mean fraction of each row's probe pixels equal to the row's most common value.

    Unmasked stamps carry noise, so exact repeats are rare; a mask filled with a constant (zeros,
    the median) makes most of the box one value. Pixels at the ``raw_robust`` clip level (bright
    LRG cores) are not counted as a mask.
    """
    features = np.asarray(features, np.float64)
    features = np.sort(np.where(np.abs(features) == CLIP, np.nan, features), axis=1)  # NaN != NaN: no runs
    if features.shape[1] == 0:
        return 1.0
    new = np.ones(features.shape, bool)
    new[:, 1:] = features[:, 1:] != features[:, :-1]
    run_id = np.cumsum(new, axis=1)  # (N, P) index of the run of equal values
    longest = np.array([np.bincount(r).max() for r in run_id])
    return float(np.mean(longest / features.shape[1]))


def not_deciding_input(context, case: GateCase) -> str | None:
    """Why a probe case's input does not decide (None when it does): the run decides on the input the
    model reads (its declared preprocessing), else on ``--input``; a model input declared ``none``
    never decides (:attr:`GateContext.model_input_undeclared`)."""
    key = context.input_key(str(case.params["input"]))
    if key == "model" and context.model_input_undeclared:
        return context.model_input_undeclared
    deciding = context.deciding_input_key
    if key == deciding:
        return None
    if context.has_model and context.model_input_undeclared is None:
        return f"the model reads {context.model_preprocess_name}: decided on that input, this one is reported beside it"
    return f"this run decides on --input {deciding}; this input is reported beside it"


def _core_features(context, case: GateCase, images: np.ndarray, name: str, box: int) -> np.ndarray:
    features = central_box(images, box)
    blank = blanked_fraction(features)
    if blank >= 0.5:
        raise ProbeError(
            f"a mask covers the probe box: {blank:.0%} of the central {box}×{box} px of input {name} "
            "hold one constant value per stamp (the probe would pass trivially)"
        )
    return features


def _core_bin_lr_auc(context, case: GateCase, images: np.ndarray, name: str, box: int, bins: CoreBins) -> Measurement:
    """Core-LR refitted on one θ_E bin's positives against all negatives of the split."""
    sample = context.sample(case.split)
    label = str(case.params["theta_e"])
    lo, hi = (float(x) for x in label.removesuffix("arcsec").split("-"))
    theta = sample.theta_e_px * PIXEL_SCALE_ARCSEC
    keep = (sample.labels == 0) | ((sample.labels == 1) & (theta >= lo) & (theta < hi))

    def compute():
        features = _core_features(context, case, images[keep], name, box)
        return cv_auc_estimate(features, sample.labels[keep], sample.resampling_units[keep], context.config)

    est, _ = context.memo(
        (case.gate, case.split, context.input_key(str(case.params["input"])), "box", box, "theta_e", label), compute
    )
    note = (
        f"input {name}; positives with θ_E in [{lo:g}, {hi:g})″ ({int((keep & (sample.labels == 1)).sum())}) "
        f"against all {int((sample.labels == 0).sum())} negatives; their arcs clear the box (θ_E − FWHM/2 "
        f"beyond its half-side, FWHM {bins.fwhm_arcsec:.2f}″)"
    )
    extra = {"input": name, "theta_e_lo": lo, "theta_e_hi": hi, "fwhm_arcsec": bins.fwhm_arcsec}
    reason = not_deciding_input(context, case)
    if reason:
        extra["undecidable"] = reason
    return estimate_measurement(est, f"core-LR AUC (box {box} px, θ_E {lo:g}-{hi:g}″)", note, extra)


def core_lr_auc(context, case: GateCase) -> Measurement:
    """Grouped-CV logistic regression on the central box: over all θ_E, or on one θ_E bin's positives.

    The all-θ_E case lists every bin's AUROC (out-of-fold scores, positives of the bin against all
    negatives). Where some positives' PSF-blurred arcs reach into the box
    (:func:`core_theta_bins`), the probe reads the arc itself there, not a shortcut: the all-θ_E value
    is then marked ``undecidable`` with that reason and the bins beyond the box decide (their own
    cases, ``case.params["theta_e"]``). A model input declared ``none`` is never decided on either.
    """
    sample = context.sample(case.split)
    box = int(case.params["box"])
    images, name = _probe_input(context, case)
    bins = core_theta_bins(context, case.split, box)
    if "theta_e" in case.params:
        return _core_bin_lr_auc(context, case, images, name, box, bins)
    features = _core_features(context, case, images, name, box)
    m = _probe_measurement(context, case, features, f"core-LR AUC (box {box} px)", "", None, ("box", box))
    scores = m.extra.pop("_scores")
    per_bin = [
        dict(r)
        for r in context.memo(  # the out-of-fold scores are memoised: so are their bin AUROCs
            (case.gate, case.split, context.input_key(str(case.params["input"])), "box", box, "theta_e_bin_aurocs"),
            lambda: theta_e_bin_aurocs(
                sample.labels,
                scores,
                sample.resampling_units,
                sample.theta_e_px,
                context.config.theta_e_bins_arcsec,
                context.config,
            ),
        )
    ]
    for rec in per_bin:
        rec["arc_inside_box"] = not arc_clears_box(rec["lo"], bins.fwhm_arcsec, box)
    note = f"input {name}; {sample.note}"
    measured = [r for r in per_bin if r["auc"] is not None]
    if measured:
        note += "; by θ_E bin: " + ", ".join(
            f"[{r['lo']:g}, {r['hi']:g})″ {r['auc']:.3f}{'*' if r['arc_inside_box'] else ''}" for r in measured
        )
        if any(r["arc_inside_box"] for r in measured):
            note += f" (* arcs with θ_E < {bins.reach_arcsec:.2f}″ reach the box)"
    extra = {"theta_e_bins": per_bin, "input": name}
    reasons = []
    if bins.arc_in_box:
        reasons.append(
            f"{bins.share_in_box:.0%} of the positives have θ_E in bins whose PSF-blurred arcs reach "
            f"the {box}×{box} box (θ_E − FWHM/2 inside its half-side, FWHM {bins.fwhm_arcsec:.2f}″): the "
            "probe reads the arc there; decided on the bins beyond "
            f"({', '.join(bins.decidable) or 'none with enough positives'})"
        )
    reason = not_deciding_input(context, case)
    if reason:
        reasons.append(reason)
    if reasons:
        extra["undecidable"] = "; ".join(reasons)
    return Measurement(m.value, m.ci, m.n, m.n_groups, m.what, note, extra)


def _without_scores(m: Measurement) -> Measurement:
    extra = {k: v for k, v in m.extra.items() if k != "_scores"}
    return Measurement(m.value, m.ci, m.n, m.n_groups, m.what, m.note, extra)


def radial_profile_lr_auc(context, case: GateCase) -> Measurement:
    """Grouped-CV logistic regression on azimuthal-median profiles (reported, not gated)."""
    sample = context.sample(case.split)
    images, name = _probe_input(context, case)
    if name == "residual":
        raise ProbeError(
            "radial profiles of residual images are zero by construction (ring medians are "
            "subtracted); this probe measures nothing on that input"
        )
    return _without_scores(
        _probe_measurement(
            context,
            case,
            lambda: profile_features(images),
            "radial-profile AUC",
            f"input {name}; on raw images the arc's ring flux alone separates the classes; {sample.note}",
        )
    )


def arc_annulus_lr_auc(context, case: GateCase) -> Measurement:
    """Sanity: grouped-CV AUC on ring statistics where the arcs lie must reach the threshold."""
    sample = context.sample(case.split)
    images, name = _probe_input(context, case)
    r_in, r_out = arc_radii(sample.theta_e_px, r_max=annulus_radii(*images.shape[-2:])[0])
    return _without_scores(
        _probe_measurement(
            context,
            case,
            lambda: ring_features(images, r_in, r_out),
            "arc-annulus AUC",
            f"input {name}; rings {r_in:.1f}-{r_out:.1f} px{_core_note(r_in)}; {sample.note}",
            {"r_in_px": r_in, "r_out_px": r_out},
        )
    )


def _core_note(r_in: float) -> str:
    """Says so when the arc annulus reaches into the core (small Einstein radii): its rings are not arc-only."""
    from shortcutgates.gates.perturb import R_CORE_PX

    return (
        f" (includes the core r < {R_CORE_PX:g} px: the smallest Einstein radii reach it)" if r_in < R_CORE_PX else ""
    )


__all__ = [
    "data_integrity",
    "lrg_leakage",
    "property_balance",
    "metadata_c2st_auc",
    "metadata_c2st_gbm_auc",
    "core_lr_auc",
    "radial_profile_lr_auc",
    "arc_annulus_lr_auc",
    "theta_e_bin_aurocs",
    "bad_rows_by_file",
    "core_theta_bins",
    "arc_clears_box",
]
