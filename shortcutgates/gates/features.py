"""What the data probes read besides the central box: feature sets (radial profile, the arc's ring,
catalogue metadata) and the property-balance statistic (standardised mean difference, batched over
bootstrap resamples). Shapes: images (N, C, H, W); features (N, F).
"""

from __future__ import annotations

import numpy as np

from shortcutgates.data.splits import standardised_mean_difference as smd_between
from shortcutgates.gates.probes import ProbeError

ARC_HALF_WIDTH_PX = 2.5
"""Radial half-width of a lensed arc: its thickness plus the PSF (≈1.3″ FWHM). Unit: pixel. Places the
arc annulus of the probes and the masked annulus of ``arc_masked_auroc``."""


def profile_features(images: np.ndarray) -> np.ndarray:
    """Azimuthal-median profiles of all bands, flattened: shape (N, C * n_rings).

    Notes
    -----
    On ``residual`` images every ring median is zero by construction, so this probe is meaningful
    only on ``raw_robust`` (or raw) input; the gate refuses residual input.
    """
    from shortcutgates.model.preprocess import azimuthal_median_profile

    images = np.asarray(images, dtype=np.float32)
    return azimuthal_median_profile(images).reshape(len(images), -1)


def arc_radii(
    theta_e_px: np.ndarray,
    *,
    width: float = ARC_HALF_WIDTH_PX,
    default: tuple[float, float] = (4.0, 12.0),
    r_max: float | None = None,
) -> tuple[float, float]:
    """Radii of the annulus where arcs lie, from the positives' Einstein radii.

    Parameters
    ----------
    theta_e_px : ndarray
        Einstein radii of the positives (NaN ignored). Unit: pixel. Used only to place the annulus,
        never as a feature.
    width : float
        Margin added on both sides (arc thickness and PSF). Unit: pixel.
    default : (float, float)
        Annulus used when no Einstein radius is known (0.26″ px: about 1″ to 3″).
    r_max : float, optional
        Upper limit (e.g. the inner radius of the normalisation annulus).

    Returns
    -------
    (r_in, r_out) : float. Unit: pixel.
    """
    theta = np.asarray(theta_e_px, np.float64)
    theta = theta[np.isfinite(theta)]
    if len(theta) == 0:
        r_in, r_out = default
    else:
        lo, hi = np.quantile(theta, [0.05, 0.95])
        r_in, r_out = max(0.0, lo - width), hi + width
    if r_max is not None:
        r_out = min(r_out, r_max)
    if r_out <= r_in:
        raise ProbeError(f"arc annulus is empty (r_in {r_in:.1f} px >= r_out {r_out:.1f} px)")
    return float(r_in), float(r_out)


def ring_features(images: np.ndarray, r_in: float, r_out: float) -> np.ndarray:
    """Per band and 1-px ring inside ``r_in <= r < r_out``: mean, standard deviation and maximum.

    A lensed arc raises a ring's mean (its flux), its scatter and its maximum (its concentration
    in azimuth); the latter two survive the residual preprocessing, where ring medians are zero.

    Returns
    -------
    ndarray, shape (N, C * n_rings * 3)
    """
    from shortcutgates.model.preprocess import radius_grid

    images = np.asarray(images, dtype=np.float32)
    r = radius_grid(*images.shape[-2:])
    feats = []
    for k in range(int(np.floor(r_in)), int(np.ceil(r_out))):
        ring = (r >= max(k, r_in)) & (r < min(k + 1, r_out))
        if ring.sum() < 2:
            continue
        pix = images[..., ring]  # (N, C, n_pix)
        feats += [pix.mean(-1), pix.std(-1), pix.max(-1)]
    if not feats:
        raise ProbeError(f"no 1-px ring of at least 2 pixels between r = {r_in:.1f} and {r_out:.1f} px")
    return np.concatenate(feats, axis=1)


def standardised_mean_difference(labels: np.ndarray, values: np.ndarray, weights: np.ndarray | None = None) -> float:
    """SMD of ``values`` between the classes, positives − negatives, optionally weighted: the SMD of
    :func:`shortcutgates.data.splits.standardised_mean_difference` in the ``metric(labels, values, weights)``
    form of the bootstrap. A class without weight raises ``ValueError`` (a resample that lost it).
    """
    labels = np.asarray(labels).astype(bool)
    values = np.asarray(values, np.float64)
    w = np.ones(len(values)) if weights is None else np.asarray(weights, np.float64)
    if w[labels].sum() <= 0 or w[~labels].sum() <= 0:
        raise ValueError("standardised_mean_difference: needs both classes")
    return smd_between(values[labels], values[~labels], w[labels], w[~labels])


def smd_metric(labels: np.ndarray, values: np.ndarray):
    """:func:`standardised_mean_difference` of ``values`` between the classes as a bootstrap metric
    ``metric(labels, values, weights)`` (which ignores the arrays it is called with: they must be these),
    with ``batch(weights (B, N)) -> (B,)`` for many resamples (NaN where a resample lost a class).

    Every resample's weighted mean and variance are those of ``np.average`` in
    :func:`shortcutgates.data.splits.standardised_mean_difference`: the same products summed over the same
    rows in the same order (one contiguous slice per resample), so every value is the same float
    (tested); only the Python overhead per resample is gone.
    """
    labels = np.asarray(labels).astype(bool)
    values = np.asarray(values, np.float64)
    parts = [(values[side], np.isfinite(values[side]), side) for side in (labels, ~labels)]

    def moments(x: np.ndarray, finite: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Weighted mean and variance of ``x`` per row of ``w`` (B, n), over its finite values of weight > 0."""
        keep = w > 0
        if not finite.all():
            keep &= finite
            w = np.where(finite, w, 0.0)
        counts = keep.sum(axis=1)
        ends = np.cumsum(counts)
        starts = ends - counts
        xs, ws = np.broadcast_to(x, w.shape)[keep], w[keep]  # each row's kept rows, rows one after another
        scale = w.sum(axis=1)  # over the kept rows (the others weigh 0): integer counts, exact in any order
        product = xs * ws
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.array([product[a:e].sum() for a, e in zip(starts, ends)]) / scale
            spread = (xs - np.repeat(mean, counts)) ** 2 * ws
            var = np.array([spread[a:e].sum() for a, e in zip(starts, ends)]) / scale
        return mean, var, counts > 0

    def batch(weights: np.ndarray) -> np.ndarray:
        weights = np.atleast_2d(np.asarray(weights, np.float64))
        (mean_a, var_a, ok_a), (mean_b, var_b, ok_b) = (
            moments(x, finite, weights[:, side]) for x, finite, side in parts
        )
        both = (weights[:, labels].sum(axis=1) > 0) & (weights[:, ~labels].sum(axis=1) > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            diff = mean_a - mean_b
            pooled = np.sqrt((var_a + var_b) / 2.0)
            out = np.where(pooled == 0, np.where(diff == 0, 0.0, np.sign(diff) * np.inf), diff / pooled)
        out[~(both & ok_a & ok_b)] = np.nan
        return out

    def metric(_labels=None, _values=None, weights=None) -> float:
        w = np.ones(len(values)) if weights is None else np.asarray(weights, np.float64)
        if w[labels].sum() <= 0 or w[~labels].sum() <= 0:
            raise ValueError("standardised_mean_difference: needs both classes")
        return float(batch(w[None, :])[0])

    metric.batch = batch  # type: ignore[attr-defined]
    return metric


def metadata_features(frame, columns) -> np.ndarray:
    """Property columns as features: median-imputed, plus a missing-indicator column where values are missing.

    A property present for one class only (the survey's ``theta_e_arcsec`` pitfall) separates the
    classes through its indicator, as it would for a classifier; injection truth is never passed in.
    """
    import pandas as pd

    out = []
    for col in columns:
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(np.float64)
        missing = ~np.isfinite(values)
        if missing.all():
            continue
        fill = np.median(values[~missing])
        out.append(np.where(missing, fill, values))
        if missing.any():
            out.append(missing.astype(np.float64))
    if not out:
        raise ProbeError(f"no property column with values among {', '.join(columns) or 'none'}")
    features = np.column_stack(out)
    keep = np.ptp(features, axis=0) > 0
    if not keep.any():
        raise ProbeError("property columns are constant across the sample")
    return features[:, keep]
