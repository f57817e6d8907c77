"""LRG-disjoint splits, unpaired pools, positives-per-LRG caps and property matching (docs/design.md#splits).

Everything here is a pure function of a catalogue frame that already carries ``lrg_id`` (from
:mod:`shortcutgates.data.identity`) and the provenance columns ``source_path`` / ``source_row`` /
``split`` of :func:`shortcutgates.data.io.read_paired`. No image is read.

Every random choice is a keyed hash, never a random stream, so that it depends only on the
thing it decides about:

* the split, the pool (positive / negative) and ``test_paired`` membership of an LRG are
  functions of ``(lrg_id, seed)`` — adding LRGs never moves an old one, row order never matters;
  ``test`` and ``test_paired`` share their positives (:data:`~shortcutgates.data.schema.SHARED_POSITIVE_SPLITS`);
* which injections of a positive LRG are kept under the cap, and which row of an LRG provides
  its control, are functions of the row's *content* (its metadata values) and the seed — not of
  its position in the file.

The hashes are :mod:`shortcutgates.data.keyed_hash`; property matching is :mod:`shortcutgates.data.matching`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd

from shortcutgates.data.keyed_hash import order_within_lrgs, row_keys, seeded, unit_hash
from shortcutgates.data.matching import MatchReport, check_match_columns, match_pools
from shortcutgates.data.schema import (
    CONDITIONS,
    CTRL_COLUMN,
    INJECTION_TRUTH,
    LABEL_COLUMN,
    LRG_ID_COLUMN,
    LRG_TRUTH,
    MANIFEST_SPLITS,
    POINTER_COLUMNS,
    SPLIT_COLUMN,
    SPLITS,
    STAMP_COLUMN,
    DataError,
)

MODES = ("paired", "unpaired")
WEIGHT_COLUMN = "weight"
PROVENANCE_COPIED = ("brickname", "task_id")
"""Provenance columns copied into the manifest when present."""


@dataclass(frozen=True)
class SplitParams:
    """Parameters of a build (recorded in ``manifest.json``)."""

    mode: str
    """``paired`` or ``unpaired``."""
    seed: int
    fractions: tuple = (0.7, 0.15, 0.15)
    """train, val, test [, test_paired] fractions of LRGs; they sum to 1. With three values an
    unpaired build moves half of the test LRGs to ``test_paired``, whose positives are also ``test``'s."""
    positives_per_lrg: int | None = 1
    """Cap on positive rows per LRG; None keeps all of them with weights 1/k."""
    match: tuple = ()
    """Columns whose distribution the negatives must follow (unpaired only)."""
    match_bins: int = 5
    """Quantile bins per matched column (columns with at most this many values: one bin per value)."""
    resplit: bool = False
    """Ignore input splits and assign all LRGs by hash."""
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"SplitParams: 'mode' must be one of {', '.join(MODES)} (got {self.mode!r})")
        if self.positives_per_lrg is not None and int(self.positives_per_lrg) < 1:
            raise ValueError(
                f"SplitParams: 'positives_per_lrg' must be >= 1 or None for all (got {self.positives_per_lrg!r})"
            )
        if self.match and self.mode == "paired":
            raise ValueError(
                "SplitParams: 'match' applies to unpaired builds only "
                "(a paired build's negatives are the positives' own LRGs)"
            )
        if int(self.match_bins) < 1:
            raise ValueError(f"SplitParams: 'match_bins' must be >= 1 (got {self.match_bins!r})")
        split_fractions(self.fractions, self.mode)


def split_fractions(fractions, mode: str) -> tuple[tuple[float, float, float], float]:
    """Validate ``fractions`` (3 or 4 fractions of LRGs summing to 1; a fourth is ``test_paired``'s) for
    ``mode``; return ``(f_train, f_val, f_test + f_test_paired)`` and ``share``, the fraction of test LRGs
    that go to ``test_paired`` (0 for paired builds)."""
    f = tuple(float(x) for x in fractions)
    if len(f) not in (3, 4) or any(not np.isfinite(x) or x < 0 for x in f) or abs(sum(f) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be 3 or 4 non-negative numbers summing to 1 (got {list(fractions)})")
    if len(f) == 4 and mode == "paired" and f[3] > 0:
        raise ValueError("fractions: a test_paired fraction applies to unpaired builds only")
    test = f[2] + (f[3] if len(f) == 4 else 0.0)
    if mode == "paired":
        share = 0.0
    else:
        share = 0.5 if len(f) == 3 else (f[3] / test if test > 0 else 0.0)
    return (f[0], f[1], test), share


# --- splits ------------------------------------------------------------------------------------
def hash_splits(lrg_ids, seed: int, fractions) -> np.ndarray:
    """Split name of each LRG from ``unit_hash(lrg_id, seed)`` and cumulative fractions (train, val, test)."""
    u = unit_hash(lrg_ids, seed, "split")
    cuts = np.cumsum(np.asarray(fractions[:3], np.float64))
    idx = np.searchsorted(cuts[:2], u, side="right")
    return np.asarray(SPLITS, dtype=object)[idx]


def input_splits(catalog: pd.DataFrame) -> pd.Series | None:
    """The input split of each LRG (index: sorted ``lrg_id``), or None if the input has none.

    Raises
    ------
    DataError
        An unknown split name, rows without a split beside rows with one, or LRGs whose rows
        straddle two input splits (listed with their files; re-split with ``--resplit``).
    """
    given = catalog[SPLIT_COLUMN]
    has = given.notna().to_numpy()
    if not has.any():
        return None
    if not has.all():
        files = sorted(set(catalog.loc[~has, "source_path"]))
        raise DataError(
            f"{int((~has).sum())} rows have no split while others do (files: {', '.join(files[:3])})",
            column=SPLIT_COLUMN,
            hint="give every file a split directory or region_split, or use --resplit",
        )
    unknown = sorted(set(given.astype(str)) - set(SPLITS))
    if unknown:
        row = catalog[given.astype(str).isin(unknown)].iloc[0]
        raise DataError(
            f"unknown split {row[SPLIT_COLUMN]!r}; expected {', '.join(SPLITS)}",
            file=row["source_path"],
            row=int(row["source_row"]),
            column=SPLIT_COLUMN,
        )
    lrg_codes, lrg_names = pd.factorize(catalog[LRG_ID_COLUMN], sort=True)
    split_codes, split_names = pd.factorize(given)
    grouped = pd.Series(split_codes).groupby(lrg_codes, sort=True)
    n_splits = pd.Series(grouped.nunique().to_numpy(), index=lrg_names)
    straddle = n_splits[n_splits > 1]
    if len(straddle):
        raise DataError(
            f"{len(straddle)} LRG(s) straddle input splits: "
            + "; ".join(_describe_straddle(catalog, lrg) for lrg in straddle.index[:10])
            + (" ..." if len(straddle) > 10 else ""),
            column=SPLIT_COLUMN,
            hint="fix the input splits or rebuild them from LRG identity with --resplit",
        )
    return pd.Series(np.asarray(split_names, dtype=object)[grouped.first().to_numpy()], index=lrg_names)


def _describe_straddle(catalog: pd.DataFrame, lrg: str) -> str:
    rows = catalog[catalog[LRG_ID_COLUMN] == lrg]
    parts = [
        f"{split} ({', '.join(sorted({str(p).rsplit('/', 1)[-1] for p in g['source_path']}))})"
        for split, g in rows.groupby(SPLIT_COLUMN, sort=True)
    ]
    return f"{lrg} in {' and '.join(parts)}"


def lrg_roles(lrg_ids: np.ndarray, split: np.ndarray, params: SplitParams) -> tuple[np.ndarray, np.ndarray]:
    """Final split and role (``pair``, ``pos``, ``neg``) of each LRG.

    Paired builds: every LRG is a ``pair``. Unpaired builds: a share of the test LRGs becomes
    ``test_paired`` (role ``pair``: its positive and control there, the same positive in ``test``);
    the other test LRGs are ``test``'s negatives; train/val LRGs go to a pool by hash.
    """
    split = np.asarray(split, dtype=object).copy()
    if params.mode == "paired":
        return split, np.full(len(lrg_ids), "pair", dtype=object)
    _, share = split_fractions(params.fractions, params.mode)
    held = (split == "test") & (unit_hash(lrg_ids, params.seed, "test_paired") < share)
    split[held] = "test_paired"
    positive = (unit_hash(lrg_ids, params.seed, "pool") < 0.5) & ((split != "test") | ~shares_positives(params))
    role = np.where(held, "pair", np.where(positive, "pos", "neg")).astype(object)
    return split, role


def shares_positives(params: SplitParams) -> bool:
    """Whether ``test``'s positives are ``test_paired``'s: unpaired builds whose test LRGs go to both."""
    return params.mode == "unpaired" and 0.0 < split_fractions(params.fractions, params.mode)[1] < 1.0


# --- rows --------------------------------------------------------------------------------------
def positive_rows(
    catalog: pd.DataFrame, cap: int | None, seed: int, keys: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the positive rows kept per LRG, and their weights.

    Rows of an LRG are ranked by their seeded content key; the first ``cap`` are kept (all if
    ``cap`` is None). Weights are ``1 / k`` for an LRG with k kept rows, so that every LRG
    carries total weight 1, like a negative LRG's single control. ``keys``: precomputed unseeded
    :func:`row_keys` of ``catalog`` (optional).

    Returns (M,) int64 row positions (``iloc``) into ``catalog``, grouped by LRG, and (M,) float64 weights.
    """
    keys = row_keys(catalog) if keys is None else keys
    order, codes, starts = order_within_lrgs(catalog, seeded(keys, seed))
    sizes = np.diff(np.r_[starts, len(order)])
    rank = np.arange(len(order)) - np.repeat(starts, sizes)
    kept = np.minimum(sizes, cap) if cap is not None else sizes
    keep = rank < np.repeat(kept, sizes)
    return order[keep].astype(np.int64), 1.0 / np.repeat(kept, sizes)[keep]


def control_rows(catalog: pd.DataFrame, keys: np.ndarray | None = None) -> pd.Series:
    """Position (``iloc``) of the row that provides each LRG's control image (index: sorted lrg_id).

    Controls of one LRG are identical, so one row is enough; it is the row with the smallest
    unseeded content key (``keys``, computed if not given), which does not depend on row order.
    """
    order, _, starts = order_within_lrgs(catalog, row_keys(catalog) if keys is None else keys)
    first = order[starts]
    return pd.Series(first.astype(np.int64), index=catalog[LRG_ID_COLUMN].to_numpy()[first])


def property_columns(catalog: pd.DataFrame, extra=()) -> list[str]:
    """Input columns copied into the manifest, in a fixed order (injection truth first)."""
    wanted = list(INJECTION_TRUTH) + list(CONDITIONS) + list(LRG_TRUTH) + list(extra) + list(PROVENANCE_COPIED)
    return [c for c in dict.fromkeys(wanted) if c in catalog.columns]


def sample_rows(catalog: pd.DataFrame, positions, label: int, split, weight, columns) -> pd.DataFrame:
    """Manifest rows for the catalogue rows at ``positions`` (label 1: stamp, 0: control)."""
    src = catalog.iloc[np.asarray(positions, np.int64)]
    out = pd.DataFrame(
        {
            LABEL_COLUMN: np.full(len(src), label, np.int8),
            SPLIT_COLUMN: np.asarray(split, dtype=object),
            LRG_ID_COLUMN: src[LRG_ID_COLUMN].to_numpy(),
            "ra": src["ra"].to_numpy(np.float64),
            "dec": src["dec"].to_numpy(np.float64),
            POINTER_COLUMNS[0]: src["source_path"].to_numpy(),
            POINTER_COLUMNS[1]: src["source_row"].to_numpy(np.int64),
            POINTER_COLUMNS[2]: STAMP_COLUMN if label == 1 else CTRL_COLUMN,
        }
    )
    for col in columns:
        values = src[col].to_numpy()
        if label == 0 and col in INJECTION_TRUTH:
            values = np.full(len(src), np.nan)
        out[col] = values
    out[WEIGHT_COLUMN] = np.asarray(weight, np.float64)
    return out


def standardised_mean_difference(a, b, wa=None, wb=None) -> float:
    """SMD of a property between two groups: ``(mean_a - mean_b) / sqrt((var_a + var_b) / 2)``.

    NaN values are ignored; weights (optional) give weighted means and variances. Returns NaN when
    a group has no finite value, 0 when both groups are constant and equal, ±inf when constant and
    different. Reference: Austin 2009, Statistics in Medicine 28, 3083, eq. 1.
    """
    stats = []
    for x, w in ((a, wa), (b, wb)):
        x = np.asarray(x, np.float64)
        w = np.ones_like(x) if w is None else np.asarray(w, np.float64)
        ok = np.isfinite(x) & (w > 0)
        if not ok.any():
            return float("nan")
        mean = np.average(x[ok], weights=w[ok])
        stats.append((mean, np.average((x[ok] - mean) ** 2, weights=w[ok])))
    diff = stats[0][0] - stats[1][0]
    pooled = np.sqrt((stats[0][1] + stats[1][1]) / 2.0)
    if pooled == 0:
        return 0.0 if diff == 0 else float(np.sign(diff) * np.inf)
    return float(diff / pooled)


def balance(frame: pd.DataFrame, columns) -> dict:
    """SMD (positive vs negative rows, weighted) per column over the train/val/test splits."""
    rows = frame[frame[SPLIT_COLUMN].isin(SPLITS).to_numpy()]
    pos, neg = rows[rows[LABEL_COLUMN] == 1], rows[rows[LABEL_COLUMN] == 0]
    out = {}
    for col in columns:
        value = standardised_mean_difference(
            pd.to_numeric(pos[col], errors="coerce"),
            pd.to_numeric(neg[col], errors="coerce"),
            pos[WEIGHT_COLUMN],
            neg[WEIGHT_COLUMN],
        )
        out[col] = None if np.isnan(value) else value
    return out


# --- the whole assignment ----------------------------------------------------------------------
class SplitResult(NamedTuple):
    """Manifest rows of a build and what was decided on the way."""

    frame: pd.DataFrame
    """One row per sample, sorted by split, lrg_id, label (descending), source_path, source_row."""
    split_source: str
    """``input`` (splits kept from directories / region_split) or ``hash``."""
    lrg_counts: dict
    """split -> role (``pos``/``neg``/``pair``) -> number of LRGs before matching."""
    matching: MatchReport | None
    balance: dict
    """``before`` / ``after`` matching: column -> SMD (None where undefined)."""


def balance_columns(frame: pd.DataFrame, match=()) -> list[str]:
    """Columns whose balance is reported: matched columns, else conditions, LRG truth and measured ones."""
    if match:
        return list(match)
    skip = (
        set(INJECTION_TRUTH)
        | set(PROVENANCE_COPIED)
        | {LABEL_COLUMN, SPLIT_COLUMN, LRG_ID_COLUMN, "ra", "dec", WEIGHT_COLUMN, *POINTER_COLUMNS}
    )
    return [c for c in frame.columns if c not in skip and pd.api.types.is_numeric_dtype(frame[c])]


def assign(catalog: pd.DataFrame, params: SplitParams) -> SplitResult:
    """Build the manifest rows of a catalogue (pointers only; no image is read).

    Parameters
    ----------
    catalog : DataFrame
        Rows of :func:`shortcutgates.data.io.read_paired` plus ``lrg_id``.
    params : SplitParams
    """
    missing = [c for c in (LRG_ID_COLUMN, "ra", "dec", "source_path", "source_row", SPLIT_COLUMN) if c not in catalog]
    if missing:
        raise ValueError(
            f"assign: catalog lacks {', '.join(missing)} (read it with io.read_paired and add "
            f"lrg_id from identity.match_lrgs)"
        )
    check_match_columns(catalog, params.match)
    lrgs = np.unique(catalog[LRG_ID_COLUMN].to_numpy().astype(str)).astype(object)
    given = None if params.resplit else input_splits(catalog)
    split = (
        given.reindex(lrgs).to_numpy()
        if given is not None
        else hash_splits(lrgs, params.seed, split_fractions(params.fractions, params.mode)[0])
    )
    split, role = lrg_roles(lrgs, split, params)
    split_of, role_of = pd.Series(split, index=lrgs), pd.Series(role, index=lrgs)
    columns = property_columns(catalog, extra=tuple(params.extra.get("measured", ())) + tuple(params.match))
    frame = manifest_rows(catalog, params, split_of, role_of, columns)
    bal_cols = balance_columns(frame, params.match)
    report, before = None, balance(frame, bal_cols)
    if params.match:
        keep, report = match_pools(frame, params.match, params.match_bins, params.seed)
        frame = frame[keep]
    frame = sort_rows(frame)
    after = balance(frame, bal_cols)
    if params.positives_per_lrg is not None:
        frame = frame.drop(columns=WEIGHT_COLUMN)
    counts = pd.crosstab(split, role)
    lrg_counts = {s: {r: int(counts.loc[s, r]) for r in counts.columns if counts.loc[s, r]} for s in counts.index}
    return SplitResult(
        frame,
        "hash" if given is None else "input",
        lrg_counts,
        report,
        {"columns": bal_cols, "before": before, "after": after},
    )


def manifest_rows(
    catalog: pd.DataFrame, params: SplitParams, split_of: pd.Series, role_of: pd.Series, columns
) -> pd.DataFrame:
    """Positive rows of ``pair``/``pos`` LRGs (a ``pair``'s also in ``test`` when the build shares them),
    then one control of each ``pair``/``neg`` LRG; ``split_of``/``role_of`` are indexed by lrg_id."""
    keys = row_keys(catalog)
    pos, weight = positive_rows(catalog, params.positives_per_lrg, params.seed, keys)
    pos_lrg = catalog[LRG_ID_COLUMN].to_numpy()[pos]
    take = role_of.reindex(pos_lrg).isin(["pair", "pos"]).to_numpy()
    shared = take & (role_of.reindex(pos_lrg).to_numpy() == "pair") & shares_positives(params)
    neg_lrgs = role_of.index[role_of.isin(["pair", "neg"]).to_numpy()].to_numpy()
    return pd.concat(
        [
            sample_rows(catalog, pos[take], 1, split_of.reindex(pos_lrg[take]).to_numpy(), weight[take], columns),
            sample_rows(catalog, pos[shared], 1, np.full(int(shared.sum()), "test", object), weight[shared], columns),
            sample_rows(
                catalog,
                control_rows(catalog, keys).reindex(neg_lrgs).to_numpy(),
                0,
                split_of.reindex(neg_lrgs).to_numpy(),
                np.ones(len(neg_lrgs)),
                columns,
            ),
        ],
        ignore_index=True,
    )


def sort_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Canonical row order: split (train, val, test, test_paired), lrg_id, label 1 before 0, source."""
    key = frame[SPLIT_COLUMN].map({s: i for i, s in enumerate(MANIFEST_SPLITS)})
    order = frame.assign(_s=key.to_numpy(), _l=-frame[LABEL_COLUMN].astype(np.int64)).sort_values(
        ["_s", LRG_ID_COLUMN, "_l", POINTER_COLUMNS[0], POINTER_COLUMNS[1]], kind="stable"
    )
    return order.drop(columns=["_s", "_l"]).reset_index(drop=True)
