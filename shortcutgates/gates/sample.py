"""The sample of one split that every gate of that split uses, and how it is drawn.

Rows are capped at ``config.max_samples`` (whole LRGs drawn per label, seeded: :func:`cap_rows`),
decoded once, rows that fail to decode or normalise left out (:func:`decode_rows`; the
``data_integrity`` gate reports them), negatives deduplicated by image hash (:func:`dedup_negatives`;
in paired data an LRG with k injections carries k identical controls), and matched twins merged into
one resampling unit (:func:`matched_units`). :class:`~shortcutgates.gates.context.GateContext` builds
one :class:`SplitSample` per split and keeps it.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import numpy as np
import pandas as pd

from shortcutgates.data import manifest as sgmanifest
from shortcutgates.model.preprocess import annulus_median_mad


class SplitSample(NamedTuple):
    """The sample of one split that every gate of that split uses."""

    frame: pd.DataFrame
    """Metadata of the kept rows (no blobs), index reset."""
    images: np.ndarray
    """(N, 3, H, W) float32 raw stamps. Unit: nanomaggies."""
    labels: np.ndarray
    """(N,) int: 1 lens, 0 non-lens."""
    groups: np.ndarray
    """(N,) str: sky-matched LRG identity."""
    theta_e_px: np.ndarray
    """(N,) float: Einstein radius of positives (NaN for negatives). Unit: pixel. Never a feature."""
    n_selected: int
    """Rows drawn before dropping bad rows and duplicate negatives."""
    n_bad: int
    """Rows left out because they do not decode or cannot be normalised."""
    n_duplicates: int
    """Negatives left out as byte-identical copies of a kept negative."""
    units: np.ndarray | None = None
    """(N,) int: the resampling and cross-validation unit of each row: its LRG, merged with the LRGs
    of its matched twins (:func:`matched_units`); None: the LRG."""
    annulus: tuple | None = None
    """The images' outer-annulus (median, MAD), each (N, 3, 1, 1), measured when they were decoded
    (:func:`decode_rows`), so ``raw_robust`` inputs need not measure them again; None: not kept."""

    @property
    def note(self) -> str:
        parts = [f"{len(self.labels)} of {self.n_selected} sampled rows"]
        if self.n_duplicates:
            parts.append(f"{self.n_duplicates} duplicate negatives dropped")
        if self.n_bad:
            parts.append(f"{self.n_bad} bad rows left out (see data_integrity)")
        n_units, n_lrgs = len(np.unique(self.resampling_units)), len(np.unique(self.groups))
        if n_units < n_lrgs:
            parts.append(f"{n_lrgs} LRGs in {n_units} matched sets (the resampling unit)")
        return ", ".join(parts)

    @property
    def resampling_units(self) -> np.ndarray:
        """(N,) unit of cross-validation folds and bootstrap resamples: matched sets, else LRGs."""
        return self.groups if self.units is None else self.units


def cap_rows(labels: np.ndarray, groups: np.ndarray, max_rows: int | None, seed: int) -> np.ndarray:
    """Positions of a seeded sample of at most ``max_rows`` rows, drawn as whole LRGs.

    An LRG keeps all its rows (both rows of a pair, every injection of a control). LRGs are
    stratified by the labels they hold (positives only, negatives only, both); each stratum keeps
    its share of the rows, its LRGs taken in a seeded random order until the share is reached.
    Returns sorted positions.
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    if max_rows is None or len(labels) <= max_rows:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    ids, inverse = np.unique(groups, return_inverse=True)
    inverse = inverse.ravel()
    sizes = np.bincount(inverse, minlength=len(ids))
    n_pos = np.bincount(inverse, weights=(labels == 1).astype(float), minlength=len(ids))
    kind = (n_pos > 0).astype(int) + 2 * (n_pos < sizes)  # 1 positives only, 2 negatives only, 3 both
    taken = []
    for k in np.unique(kind):
        members = np.flatnonzero(kind == k)
        quota = int(round(max_rows * sizes[members].sum() / len(labels)))
        order = members[rng.permutation(len(members))]
        taken.append(order[np.cumsum(sizes[order]) <= quota])
    return np.flatnonzero(np.isin(inverse, np.concatenate(taken)))


MAX_TWIN_LRGS = 4
"""A property vector shared by more LRGs than this is a coarse value (a bin), not a matched twin."""


def matched_units(frame: pd.DataFrame, labels: np.ndarray, groups: np.ndarray, columns: list[str]) -> np.ndarray:
    """Resampling units: each LRG merged with the LRGs of its matched twins, shape (N,) int.

    Matched data give a positive a negative "twin" from another LRG with the same observing
    properties (every property column equal). Twins are not independent: cross-validating with a
    positive in one fold and its twin in another teaches the probe the twin's label (the AUC falls
    below chance), and resampling them apart understates the variance. A twin is a property vector
    held by both labels and by at most :data:`MAX_TWIN_LRGS` LRGs; without twins the units are the LRGs.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    _, lrg = np.unique(np.asarray(groups), return_inverse=True)
    lrg = lrg.ravel()
    if not columns or len(lrg) == 0:
        return lrg
    values = frame[columns].apply(pd.to_numeric, errors="coerce").round(6)
    complete = values.notna().all(axis=1).to_numpy()
    key = pd.Series(pd.util.hash_pandas_object(values, index=False).to_numpy())
    table = pd.DataFrame({"key": key, "lrg": lrg, "label": np.asarray(labels)})[complete]
    stats = table.groupby("key").agg(n_lrg=("lrg", "nunique"), n_label=("label", "nunique"))
    twin_keys = stats.index[(stats.n_label == 2) & (stats.n_lrg >= 2) & (stats.n_lrg <= MAX_TWIN_LRGS)]
    twins = table[table.key.isin(twin_keys)]
    if twins.empty:
        return lrg
    first = twins.groupby("key").lrg.transform("first").to_numpy()
    n = int(lrg.max()) + 1
    graph = coo_matrix((np.ones(len(twins)), (twins.lrg.to_numpy(), first)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    return component[lrg]


def image_hashes(images: np.ndarray) -> np.ndarray:
    """sha1 hex digest of each image's float32 bytes, shape (N,)."""
    return np.array([hashlib.sha1(np.ascontiguousarray(im, np.float32).tobytes()).hexdigest() for im in images])


def dedup_negatives(labels: np.ndarray, images: np.ndarray) -> np.ndarray:
    """Boolean keep-mask: the first of each set of byte-identical negatives, every positive."""
    keep = np.ones(len(labels), bool)
    neg = np.flatnonzero(np.asarray(labels) == 0)
    if len(neg):
        _, first = np.unique(image_hashes(images[neg]), return_index=True)
        keep[neg] = False
        keep[neg[first]] = True
    return keep


def normalisable(images: np.ndarray) -> np.ndarray:
    """(N,) bool: every band has a non-zero outer-annulus MAD (``raw_robust`` can normalise it)."""
    if len(images) == 0:
        return np.zeros(0, bool)
    _, mad = annulus_median_mad(images)
    return (mad[..., 0, 0] > 0).all(axis=1)


class DecodedRows(NamedTuple):
    """Outcome of :func:`decode_rows`."""

    images: np.ndarray
    """(n_ok, 3, H, W) float32 images of the good rows, in frame order. Unit: nanomaggies."""
    ok: np.ndarray
    """(N,) bool: the row decoded, has the stamp shape, and can be normalised."""
    problems: list
    """One located message per bad row."""
    shape: tuple | None
    """(H, W) of the stamps (None if no row decoded)."""
    annulus: tuple | None = None
    """(median, MAD) of the good rows' outer annulus, each (n_ok, 3, 1, 1) (:func:`annulus_median_mad`)."""


def decode_rows(frame: pd.DataFrame, shape: tuple | None = None) -> DecodedRows:
    """Decode manifest rows (inline ``image_npz`` or pointers), keeping going past bad rows.

    A row is bad when :func:`shortcutgates.data.codec.decode_stamps` finds it bad (the blob does not
    decode, or its shape differs from ``shape`` or from the first good row) or a band has zero
    outer-annulus MAD (``raw_robust`` cannot normalise it).
    """
    from shortcutgates.data.codec import decode_stamps

    blobs, files, rows, columns = sgmanifest.row_blobs(frame)  # inline, pointer, or by manifest file and row
    result = decode_stamps(blobs, files=files, rows=rows, columns=columns, shape=shape, skip_bad=True)
    ok, stacked = result.ok.copy(), result.images
    problems = [str(f.error) for f in result.failures]
    if len(stacked):
        shape = tuple(stacked.shape[2:])
    median, mad = annulus_median_mad(stacked) if len(stacked) else (np.zeros((0, 3, 1, 1)), np.zeros((0, 3, 1, 1)))
    good = (mad[..., 0, 0] > 0).all(axis=1)  # normalisable()
    decoded = np.flatnonzero(ok)
    for i in decoded[~good]:
        problems.append(
            f"{files[i]}: row {int(rows[i])}, column '{columns[i]}': a band has zero outer-annulus MAD "
            "(constant or empty stamp; it cannot be normalised)"
        )
    ok[decoded[~good]] = False
    return DecodedRows(stacked[good], ok, problems, shape, (median[good], mad[good]))
