"""Shortcut probes: simple classifiers on hand-picked pixels, cross-validated by LRG.

A probe answers "can a logistic regression separate lenses from non-lenses using only these
pixels?". Every probe is cross-validated with folds grouped by ``lrg_id`` (rows of one LRG share an
identical control image, so row-level folds leak) and stratified by label. A probe that cannot
measure raises :class:`ProbeError`; the gate turns that into an ``error`` verdict, never a pass.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy.stats import norm
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from shortcutgates.parallel import thread_map
from shortcutgates.model.preprocess import get_preprocessor
from shortcutgates.stats import Estimate, seeded_counts, weighted_auroc_metric, weighted_aurocs


class ProbeError(ValueError):
    """The probe cannot measure on this sample (one class, constant features, masked box, ...)."""


class ProbeResult(NamedTuple):
    """Outcome of a cross-validated probe."""

    auc: float
    """Area under the ROC curve of the pooled out-of-fold scores (0.5 = no separation)."""
    scores: np.ndarray
    """Out-of-fold probability of label 1, shape (N,)."""
    labels: np.ndarray
    """Labels 0/1, shape (N,)."""
    groups: np.ndarray
    """LRG identity of each row, shape (N,); the unit the bootstrap resamples."""
    n_groups: int
    """Number of distinct LRGs."""


def central_box(images: np.ndarray, box: int = 10) -> np.ndarray:
    """Flattened central ``box × box`` pixels of all bands.

    Parameters
    ----------
    images : ndarray, shape (N, C, H, W)
    box : int
        Side of the box. Unit: pixel. The box spans ``[H//2 - box//2, H//2 - box//2 + box)``, so for
        a 64-px stamp and ``box=10`` it covers pixels 27–36, centred on the LRG at pixel 32.

    Returns
    -------
    ndarray, shape (N, C * box * box)
    """
    images = np.asarray(images)
    h, w = images.shape[-2:]
    if not 0 < box <= min(h, w):
        raise ValueError(f"central_box: box must be in 1..{min(h, w)} px (got {box})")
    y0, x0 = h // 2 - box // 2, w // 2 - box // 2
    return images[..., y0 : y0 + box, x0 : x0 + box].reshape(len(images), -1)


def _check_probe_input(features: np.ndarray, labels: np.ndarray, groups: np.ndarray, n_splits: int) -> None:
    if not (len(features) == len(labels) == len(groups)):
        raise ValueError(
            f"probe: features, labels and groups must have one row each per sample "
            f"(got {len(features)}, {len(labels)}, {len(groups)})"
        )
    classes = np.unique(labels)
    if len(classes) != 2:
        raise ProbeError(
            f"probe needs both classes; the sample has only label(s) {classes.tolist()} ({len(labels)} rows)"
        )
    if not np.isfinite(features).all():
        raise ProbeError("probe features contain NaN or Inf")
    if np.ptp(features, axis=0).max(initial=0.0) == 0.0:
        raise ProbeError("probe features are constant across the sample (masked or empty probe region)")
    for c in classes:
        n_groups_c = len(np.unique(groups[labels == c]))
        if n_groups_c < n_splits:
            raise ProbeError(
                f"probe needs at least {n_splits} LRGs per class for {n_splits}-fold grouped CV "
                f"(label {c} has {n_groups_c})"
            )


def grouped_folds(
    labels: np.ndarray, groups: np.ndarray, n_splits: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) positions of ``n_splits`` folds that never split a group, stratified by label.

    Groups are stratified by the labels they hold (positives only, negatives only, both), shuffled
    with ``seed`` within each stratum and dealt to the folds in turn, so every fold gets its share
    of each kind. Linear in the number of rows (sklearn's ``StratifiedGroupKFold`` is quadratic in
    the number of groups: 1.3 s for 2000 LRGs).
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    _, codes = np.unique(groups, return_inverse=True)
    codes = codes.ravel()
    n_groups = int(codes.max()) + 1
    n_pos = np.bincount(codes, weights=(labels == 1).astype(float), minlength=n_groups)
    sizes = np.bincount(codes, minlength=n_groups)
    kind = (n_pos > 0).astype(int) + 2 * (n_pos < sizes)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.permutation(n_groups), kind))  # by kind, shuffled within each kind
    fold_of_group = np.empty(n_groups, int)
    fold_of_group[order] = (np.arange(n_groups) + rng.integers(n_splits)) % n_splits
    fold = fold_of_group[codes]
    return [(np.flatnonzero(fold != k), np.flatnonzero(fold == k)) for k in range(n_splits)]


def grouped_cv_scores(
    features: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    *,
    n_splits: int = 5,
    seed: int = 0,
    C: float = 1.0,
) -> np.ndarray:
    """Out-of-fold logistic-regression scores with folds grouped by LRG and stratified by label.

    Features are standardised inside each training fold. Returns shape (N,) probabilities.
    """
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels).astype(int)
    groups = np.asarray(groups)
    _check_probe_input(features, labels, groups, n_splits)
    scores = np.full(len(labels), np.nan)
    # Small dense problems: multi-threaded BLAS only adds contention (20x slower on a busy 2-core box).
    with threadpool_limits(limits=1, user_api="blas"):
        for train, test in grouped_folds(labels, groups, n_splits, seed):
            if len(np.unique(labels[train])) < 2:
                raise ProbeError("a training fold has a single class; too few LRGs per class")
            model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
            model.fit(features[train], labels[train])
            scores[test] = model.predict_proba(features[test])[:, 1]
    return scores


class _FoldFit(NamedTuple):
    """One fold's fitted probe, kept for the linearised refits of :func:`cv_auc_estimate`."""

    test: np.ndarray
    """(n_test,) positions of the fold's held-out rows."""
    train: np.ndarray
    design: np.ndarray
    """(N, P + 1) standardised features (by the fold's training rows) with a column of ones."""
    params: np.ndarray
    """(P + 1,) fitted coefficients, intercept last."""
    h_inv: np.ndarray
    """(P + 1, P + 1) inverse Hessian of the penalised log-loss at the fit."""


def _fit_fold(features, labels, train, test, C: float) -> _FoldFit:
    scaler = StandardScaler().fit(features[train])
    design = np.hstack([scaler.transform(features), np.ones((len(features), 1))])
    model = LogisticRegression(C=C, max_iter=2000).fit(design[train, :-1], labels[train])
    params = np.r_[model.coef_.ravel(), model.intercept_]
    x = design[train]
    p = 1.0 / (1.0 + np.exp(-(x @ params)))
    hessian = C * (x.T * (p * (1 - p))) @ x
    hessian[np.diag_indices(len(params) - 1)] += 1.0  # the L2 penalty ½‖coef‖² (intercept unpenalised)
    return _FoldFit(test, train, design, params, np.linalg.pinv(hessian, hermitian=True))


NEWTON_STEPS = 3
"""Newton steps (with the fit's Hessian) of each refit from the fold's fit. One step (the linearised
refit) understates the refit's spread at 150 LRGs (bootstrap SE 0.9 of the seed-to-seed SD,
coverage 0.90-0.925 over 40 seeds); more steps approach the full refit (four: SE/SD 1.0, coverage
0.95); see ``docs/design.md#calibration`` for the coverage of the value used."""

REFIT_RESAMPLES = 1000
"""Resamples of the refitted bootstrap of :func:`cv_auc_estimate` (with ``config.n_boot`` when larger)."""

BOOTSTRAP_UNIQUE_SHARE = 1 - math.exp(-1)
"""Share of distinct units in a bootstrap resample (0.632): a probe refitted on a resample learns from
that many units, so its fitting noise is ``1 / 0.632`` times that of a probe fitted on the sample."""


class CVResamples(NamedTuple):
    """A cross-validated probe AUC and its bootstrap resamples (see :func:`cv_auc_resamples`)."""

    value: float
    scores: np.ndarray
    """(N,) out-of-fold log-odds."""
    held_out: np.ndarray
    """(B,) AUCs of the resamples with the probe as fitted (only the scored rows resampled)."""
    refit: np.ndarray
    """(B,) AUCs of the resamples with the probe refitted on each resample."""
    n_units: int


def cv_auc_resamples(features, labels, groups, config, *, C: float = 1.0) -> CVResamples:
    """Grouped-CV probe AUC and, per bootstrap resample of units, its AUC with and without refitting.

    The probe is the one of :func:`grouped_cv_scores`. Each resample draws units (``groups``: LRGs or
    matched sets) with replacement; every row of a unit gets the unit's count as weight. ``held_out``
    keeps the fitted probes and reweights the scored rows; ``refit`` also reweights every fold's
    training rows and refits the probe by :data:`NEWTON_STEPS` Newton steps from its fit.
    """
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels).astype(int)
    groups = np.asarray(groups)
    _check_probe_input(features, labels, groups, config.n_splits)
    folds = grouped_folds(labels, groups, config.n_splits, config.seed)
    if any(len(np.unique(labels[train])) < 2 for train, _ in folds):
        raise ProbeError("a training fold has a single class; too few LRGs per class")
    with threadpool_limits(limits=1, user_api="blas"):
        fits = thread_map(lambda fold: _fit_fold(features, labels, fold[0], fold[1], C), folds)
        scores = np.full(len(labels), np.nan)
        for f in fits:
            scores[f.test] = f.design[f.test] @ f.params  # log-odds: the same ranking as the probabilities
        value = weighted_auroc_metric(labels, scores)(None, None)
        _, units = np.unique(groups, return_inverse=True)
        units = units.ravel()
        n_units = int(units.max()) + 1
        draws = seeded_counts(config.seed, n_units, (max(REFIT_RESAMPLES, config.n_boot),))[0]  # (B, n_units)
        draws = draws[_both_classes(draws, units, labels)]
        parts = thread_map(
            lambda i: _refit_aucs(fits, labels, scores, units, draws[i : i + 250], C), range(0, len(draws), 250)
        )  # each batch of resamples on its own: any order
    held_out = np.concatenate([h for h, _ in parts]) if parts else np.zeros(0)
    refit = np.concatenate([r for _, r in parts]) if parts else np.zeros(0)
    ok = np.isfinite(held_out) & np.isfinite(refit)
    return CVResamples(float(value), scores, held_out[ok], refit[ok], n_units)


def cv_auc_estimate(features, labels, groups, config, *, C: float = 1.0) -> tuple[Estimate, np.ndarray]:
    """Grouped-CV probe AUC with an interval for its whole variance; and the out-of-fold scores.

    A cross-validated AUC varies with the rows scored *and* with the rows the probe was fitted on.
    Resampling only the scores (``held_out``) misses the second part (coverage 0.83–0.93 instead of
    0.95); refitting in each resample (``refit``) counts it, but a resample holds only 63 % distinct
    units, so its refits are noisier than the probe fitted on the sample. The variance used is
    ``var(held_out) + 0.632 · (var(refit) − var(held_out))`` (the fitting part scaled back to the
    sample's size), the interval normal around the estimate at ``config.level``. Measured coverage:
    ``docs/design.md#calibration``.
    """
    r = cv_auc_resamples(features, labels, groups, config, C=C)
    n = len(np.asarray(labels))
    if len(r.refit) < max(10, config.n_boot // 2):
        return Estimate(r.value, np.nan, np.nan, n, r.n_units, len(r.refit)), r.scores
    lo, hi = blended_interval(r, config.level)
    return Estimate(r.value, lo, hi, n, r.n_units, len(r.refit)), r.scores


def blended_interval(r: CVResamples, level: float) -> tuple[float, float]:
    """``value ± z · sqrt(var(held_out) + 0.632 · max(var(refit) − var(held_out), 0))``, clipped to [0, 1]."""
    var_test = np.var(r.held_out, ddof=1)
    var = var_test + BOOTSTRAP_UNIQUE_SHARE * max(np.var(r.refit, ddof=1) - var_test, 0.0)
    half = float(norm.ppf((1 + level) / 2) * np.sqrt(var))
    return max(r.value - half, 0.0), min(r.value + half, 1.0)


def _both_classes(draws: np.ndarray, units: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(B,) whether resample ``b`` of ``draws`` (B, n_units) draws a unit holding a row of each label (0/1)."""
    return np.logical_and(*((draws[:, np.unique(units[labels == c])] > 0).any(axis=1) for c in (0, 1)))


def _logistic(z: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-z))`` computed in ``z``'s own memory (overwritten; the same floats as the expression)."""
    np.negative(z, out=z)
    np.exp(z, out=z)
    np.add(1.0, z, out=z)
    return np.divide(1.0, z, out=z)


def _refit_aucs(
    fits: list, labels: np.ndarray, scores: np.ndarray, units: np.ndarray, draws: np.ndarray, C: float
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted AUCs of a batch of resamples: with the probes as fitted, and refitted; each shape (B,).

    ``draws`` (B, n_units) counts how often each unit was drawn; every row of a unit gets its count.
    """
    weights = draws[:, units].astype(np.float64)  # (B, N)
    refit = np.empty((len(labels), len(draws)))
    for f in fits:
        x, y, w = f.design[f.train], labels[f.train], weights[:, f.train]
        residual = x * ((1.0 / (1.0 + np.exp(-(x @ f.params)))) - y)[:, None]  # (n_train, P+1)
        gradient = C * ((w - 1.0) @ residual)  # (B, P+1); zero at θ̂ for unit weights
        params = f.params[None, :] - gradient @ f.h_inv  # h_inv is symmetric
        for _ in range(NEWTON_STEPS - 1):  # further steps towards the full refit (small samples need them)
            gradient = C * ((w * (_logistic(params @ x.T) - y)) @ x)  # the logistic of (B, n_train) log-odds
            gradient[:, :-1] += params[:, :-1]
            params = params - gradient @ f.h_inv
        refit[f.test] = f.design[f.test] @ params.T
    return weighted_aurocs(labels, scores, weights), weighted_aurocs(labels, np.ascontiguousarray(refit.T), weights)


def grouped_cv_gbm_scores(
    features: np.ndarray, labels: np.ndarray, groups: np.ndarray, *, n_splits: int = 5, seed: int = 0
) -> np.ndarray:
    """Out-of-fold scores of a gradient-boosted tree classifier (scikit-learn's
    ``HistGradientBoostingClassifier``, 100 iterations, 15 leaves, no early stopping), folds grouped by
    LRG and stratified by label as in :func:`grouped_cv_scores`: the non-linear two-sample test beside
    the linear one. Returns shape (N,) probabilities."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels).astype(int)
    groups = np.asarray(groups)
    _check_probe_input(features, labels, groups, n_splits)
    scores = np.full(len(labels), np.nan)
    folds = grouped_folds(labels, groups, n_splits, seed)
    if any(len(np.unique(labels[train])) < 2 for train, _ in folds):
        raise ProbeError("a training fold has a single class; too few LRGs per class")

    def fit(fold):  # each fold's trees on their own: the same on any number of threads
        model = HistGradientBoostingClassifier(max_iter=100, max_leaf_nodes=15, early_stopping=False, random_state=seed)
        with threadpool_limits(limits=1, user_api="openmp"):  # OpenMP's thread count is per thread
            model.fit(features[fold[0]], labels[fold[0]])
            return model.predict_proba(features[fold[1]])[:, 1]

    with threadpool_limits(limits=1):
        for (_, test), fold_scores in zip(folds, thread_map(fit, folds)):
            scores[test] = fold_scores
    return scores


def grouped_cv_auc(features, labels, groups, *, n_splits: int = 5, seed: int = 0, C: float = 1.0) -> ProbeResult:
    """AUC of :func:`grouped_cv_scores` on the pooled out-of-fold predictions."""
    labels = np.asarray(labels).astype(int)
    groups = np.asarray(groups)
    scores = grouped_cv_scores(features, labels, groups, n_splits=n_splits, seed=seed, C=C)
    return ProbeResult(float(roc_auc_score(labels, scores)), scores, labels, groups, len(np.unique(groups)))


def core_lr_auc(
    images: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    *,
    box: int = 10,
    preprocess: str | None = "raw_robust",
    n_splits: int = 5,
    seed: int = 0,
) -> ProbeResult:
    """Core logistic-regression probe: grouped-CV AUC on the central ``box × box`` pixels.

    Parameters
    ----------
    images : ndarray, shape (N, 3, H, W)
        Stamps in nanomaggies (``preprocess`` is applied here), or already-preprocessed model
        inputs with ``preprocess=None``.
    labels : ndarray, shape (N,)
        1 = lens, 0 = non-lens.
    groups : ndarray, shape (N,)
        ``lrg_id`` of each row; folds never split an LRG.
    box : int
        Side of the central box. Unit: pixel. 10 reproduces the survey's 300-feature probe.
    preprocess : {"raw_robust", "residual", None}

    Notes
    -----
    On paired survey data (docs/design.md#the-shortcut) this probe reaches AUC ≈ 0.95 on ``raw_robust`` input: the
    lensed counter-image adds 10–40% to the core flux.
    """
    images = np.asarray(images, dtype=np.float32)
    if preprocess is not None:
        images = get_preprocessor(preprocess)(images)
    return grouped_cv_auc(central_box(images, box), labels, groups, n_splits=n_splits, seed=seed)
