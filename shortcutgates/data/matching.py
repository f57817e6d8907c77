"""Property matching of an unpaired build (docs/design.md#splits): the negative pool is thinned to follow
the positive pool over quantile bins of the matched columns, cell by cell, and every cell where LRGs
were dropped is reported.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from shortcutgates.data.keyed_hash import unit_hash
from shortcutgates.data.schema import INJECTION_TRUTH, LABEL_COLUMN, LRG_ID_COLUMN, SPLIT_COLUMN


def check_match_columns(catalog: pd.DataFrame, match) -> None:
    """Refuse matching on missing, non-numeric or injection-truth columns (one-line ValueError)."""
    for col in match:
        if col in INJECTION_TRUTH:
            raise ValueError(
                f"match: '{col}' is injection truth (NaN for negatives); match on LRG or observing properties"
            )
        if col not in catalog.columns:
            raise ValueError(f"match: column '{col}' is not in the input (has {', '.join(map(str, catalog.columns))})")
        if not pd.api.types.is_numeric_dtype(catalog[col]):
            raise ValueError(f"match: column '{col}' must be numeric (got dtype {catalog[col].dtype})")


class MatchReport(NamedTuple):
    """How the negative pool was matched to the positive pool (recorded in ``manifest.json``)."""

    columns: tuple
    bins: dict
    """Column -> list of bin labels (``[lo, hi)`` ranges, single values, or ``missing``)."""
    n_cells: int
    """Occupied (split, bin, bin, ...) cells."""
    n_pos_lrgs_dropped: int
    """Positive LRGs dropped because their cell had fewer negative LRGs."""
    n_neg_lrgs_dropped: int
    unbalanced_cells: list
    """Every cell whose positive and negative LRG counts differed: split, bin per column, n_pos, n_neg, kept."""

    def as_dict(self) -> dict:
        return {
            "columns": list(self.columns),
            "bins": self.bins,
            "n_cells": self.n_cells,
            "n_pos_lrgs_dropped": self.n_pos_lrgs_dropped,
            "n_neg_lrgs_dropped": self.n_neg_lrgs_dropped,
            "n_unbalanced_cells": len(self.unbalanced_cells),
            "unbalanced_cells": self.unbalanced_cells,
        }


def bin_codes(values, n_bins: int) -> tuple[np.ndarray, list[str]]:
    """Bin index of each value and the bin labels; NaN gets code -1 (its own ``missing`` bin).

    Columns with at most ``n_bins`` distinct values get one bin per value; others get quantile
    bins (edges at the 1/n_bins quantiles, duplicates merged).
    """
    values = np.asarray(values, np.float64)
    finite = values[np.isfinite(values)]
    uniq = np.unique(finite)
    codes = np.full(len(values), -1, np.int64)
    ok = np.isfinite(values)
    if len(uniq) <= n_bins:
        codes[ok] = np.searchsorted(uniq, values[ok])
        labels = [f"{v:g}" for v in uniq]
    else:
        edges = np.unique(np.quantile(finite, np.linspace(0, 1, n_bins + 1)[1:-1]))
        codes[ok] = np.searchsorted(edges, values[ok], side="right")
        bounds = np.r_[-np.inf, edges, np.inf]
        labels = [f"[{lo:.6g}, {hi:.6g})" for lo, hi in zip(bounds[:-1], bounds[1:])]
    return codes, labels


def match_pools(frame: pd.DataFrame, columns, n_bins: int, seed: int) -> tuple[np.ndarray, MatchReport]:
    """Keep equal numbers of positive and negative LRGs in every (split, bins) cell.

    Works on LRGs of the unpaired pools (``test_paired`` is left alone). An LRG's value is the
    median of its rows. In each cell the ``n = min(n_pos, n_neg)`` LRGs of each pool with the
    smallest ``unit_hash(lrg_id, seed, 'match')`` are kept, so negatives follow the positives'
    distribution over the cells, without replacement. Every cell where LRGs were dropped is listed
    in the report — including cells with positives and no negatives — so nothing goes silently.

    Returns
    -------
    keep : ndarray of bool, shape (len(frame),)
    report : MatchReport
    """
    pooled = frame[SPLIT_COLUMN].to_numpy() != "test_paired"
    lrg = (
        frame[pooled]
        .groupby(LRG_ID_COLUMN, sort=True)
        .agg(split=(SPLIT_COLUMN, "first"), label=(LABEL_COLUMN, "first"), **{c: (c, "median") for c in columns})
    )
    cell_cols, bins = [SPLIT_COLUMN], {}
    for col in columns:
        lrg[f"_bin_{col}"], bins[col] = bin_codes(lrg[col], n_bins)
        cell_cols.append(f"_bin_{col}")
    lrg["_u"] = unit_hash(lrg.index.to_numpy(), seed, "match")
    lrg = lrg.rename(columns={"split": SPLIT_COLUMN}).sort_values("_u", kind="stable")
    lrg["_rank"] = lrg.groupby(cell_cols + ["label"], sort=False).cumcount()
    counts = (
        lrg.groupby(cell_cols + ["label"]).size().unstack("label", fill_value=0).reindex(columns=[0, 1], fill_value=0)
    )
    n_keep = counts.min(axis=1).rename("_n")
    lrg = lrg.join(n_keep, on=cell_cols)
    kept = lrg.index[lrg["_rank"] < lrg["_n"]]
    unbalanced = []
    for cell, row in counts[counts[0] != counts[1]].iterrows():
        cell = cell if isinstance(cell, tuple) else (cell,)
        unbalanced.append(
            {
                "split": cell[0],
                **{c: ("missing" if k < 0 else bins[c][k]) for c, k in zip(columns, cell[1:])},
                "n_pos": int(row[1]),
                "n_neg": int(row[0]),
                "kept": int(min(row[0], row[1])),
            }
        )
    report = MatchReport(
        tuple(columns), bins, len(counts), int((counts[1] - n_keep).sum()), int((counts[0] - n_keep).sum()), unbalanced
    )
    keep = ~pooled | frame[LRG_ID_COLUMN].isin(kept).to_numpy()
    return keep, report
