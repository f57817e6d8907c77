"""LRG identity by sky matching (docs/design.md#splits).

Rows whose positions lie within a tolerance of each other (default 0.5 arcsec) belong to one LRG,
joined transitively (friends-of-friends). Exact float equality is never used: two rows 1e-6 deg
apart are one LRG.

Choice of the id string
-----------------------
An ``lrg_id`` is derived from the group's geometry only, never from row order or a counter::

    J<ra>±<dec>   e.g.  J150.11923+02.20577

with ``ra`` in [0, 360) and ``dec`` rounded to 1e-5 deg (0.036 arcsec), taken from the group's
*lexicographically smallest member position* (smallest rounded ra, then dec). Consequences:

* Reordering rows never changes an id (a function of the set of positions).
* Adding other LRGs (further than the tolerance) never changes an existing group or its id.
* Adding a row *at an existing position* (the usual case: a new injection on a catalogued LRG,
  whose catalogue position is reused) never changes the id.
* Adding a row that joins a group at a *new, smaller* position (differing by more than the
  rounding) does change that group's id. A mean position would be worse: every joining row with
  a jittered position moves the mean and may flip its rounding. Rows of one LRG in survey data
  share the catalogue position, so the minimum is the stable choice.
* Two distinct groups never share an id: members of different groups are more than the tolerance
  (>= 1.4e-4 deg for the default) apart, far more than the 1e-5 deg rounding.

References: Davis et al. 1985, ApJ 292, 371 (friends-of-friends linking).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from shortcutgates.data.schema import LRG_ID_COLUMN, DataError

ID_DECIMALS = 5
"""Decimals of degrees kept in an ``lrg_id`` (1e-5 deg = 0.036 arcsec)."""


class LrgIdentity(NamedTuple):
    """Result of :func:`match_lrgs` for N input rows."""

    lrg_id: np.ndarray
    """(N,) object array of str: the LRG id of each row."""
    group: np.ndarray
    """(N,) int64: group index of each row, 0..n_lrgs-1, ordered by ``lrg_id``."""
    n_lrgs: int
    extent_arcsec: np.ndarray
    """(n_lrgs,) float64: largest separation of a member from the group's id position. Unit: arcsec.
    A value above the tolerance means the group was chained by friends-of-friends."""


def unit_vectors(ra, dec) -> np.ndarray:
    """Cartesian unit vectors of sky positions.

    Parameters
    ----------
    ra, dec : array_like, shape (N,)
        Unit: deg.

    Returns
    -------
    ndarray, shape (N, 3), float64
    """
    ra = np.radians(np.asarray(ra, np.float64))
    dec = np.radians(np.asarray(dec, np.float64))
    cos_dec = np.cos(dec)
    return np.column_stack([cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)])


def _check_positions(ra: np.ndarray, dec: np.ndarray) -> None:
    for name, values, lo, hi in (("ra", ra, -360.0, 720.0), ("dec", dec, -90.0, 90.0)):
        bad = ~np.isfinite(values) | (values < lo) | (values > hi)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"match_lrgs: {name} must be finite and in [{lo:g}, {hi:g}] deg (got {values[i]!r})", row=i, column=name
            )


def friends_of_friends(ra, dec, tolerance_arcsec: float) -> np.ndarray:
    """Group labels linking every pair of positions closer than the tolerance, transitively.

    Parameters
    ----------
    ra, dec : array_like, shape (N,)
        Unit: deg.
    tolerance_arcsec : float
        Linking length. Unit: arcsec.

    Returns
    -------
    ndarray, shape (N,), int64
        Arbitrary component labels (use :func:`match_lrgs` for stable ids).

    Notes
    -----
    Exactly repeated positions are collapsed first, so the KD-tree sees each position once; the
    linking test uses the chord length ``2 sin(θ/2)`` between unit vectors.
    """
    ra = np.asarray(ra, np.float64)
    dec = np.asarray(dec, np.float64)
    if len(ra) == 0:
        return np.zeros(0, np.int64)
    pos, inverse = _unique_positions(ra % 360.0, dec)
    return _fof_labels(pos, tolerance_arcsec)[inverse]


def _fof_labels(pos: np.ndarray, tolerance_arcsec: float) -> np.ndarray:
    """Connected-component labels (0..k-1) of distinct positions ``pos`` (M, 2) in deg."""
    chord = 2.0 * np.sin(np.radians(tolerance_arcsec / 3600.0) / 2.0)
    pairs = cKDTree(unit_vectors(pos[:, 0], pos[:, 1])).query_pairs(chord, output_type="ndarray")
    n = len(pos)
    graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1].astype(np.int64)


def _unique_positions(ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (ra, dec) pairs, shape (M, 2), and the index of each row's pair (faster than np.unique(axis=0))."""
    order = np.lexsort((dec, ra))
    ra_s, dec_s = ra[order], dec[order]
    new = np.r_[True, (ra_s[1:] != ra_s[:-1]) | (dec_s[1:] != dec_s[:-1])]
    inverse = np.empty(len(ra), np.int64)
    inverse[order] = np.cumsum(new) - 1
    return np.column_stack([ra_s[new], dec_s[new]]), inverse


def format_lrg_id(ra, dec) -> np.ndarray:
    """``J<ra>±<dec>`` strings, degrees rounded to :data:`ID_DECIMALS` decimals.

    Parameters
    ----------
    ra, dec : array_like, shape (N,)
        Unit: deg; ``ra`` is wrapped into [0, 360).
    """
    ra_r, dec_r = _rounded(ra, dec)
    return np.array([f"J{a:09.{ID_DECIMALS}f}{d:+09.{ID_DECIMALS}f}" for a, d in zip(ra_r, dec_r)], dtype=object)


def _rounded(ra, dec) -> tuple[np.ndarray, np.ndarray]:
    ra_r = np.round(np.asarray(ra, np.float64) % 360.0, ID_DECIMALS)
    ra_r = np.where(ra_r >= 360.0, 0.0, ra_r) + 0.0  # + 0.0 turns -0.0 into 0.0
    dec_r = np.round(np.asarray(dec, np.float64), ID_DECIMALS) + 0.0
    return ra_r, dec_r


def match_lrgs(ra, dec, tolerance_arcsec: float = 0.5) -> LrgIdentity:
    """LRG identity of every row by friends-of-friends sky matching.

    Parameters
    ----------
    ra, dec : array_like, shape (N,)
        Row positions. Unit: deg.
    tolerance_arcsec : float, default 0.5
        Rows closer than this are the same LRG (transitively). Unit: arcsec.

    Returns
    -------
    LrgIdentity
        See the module docstring for how the id string is chosen and when it is stable.
    """
    if not np.isfinite(tolerance_arcsec) or tolerance_arcsec <= 0:
        raise ValueError(f"match_lrgs: tolerance_arcsec must be > 0 (got {tolerance_arcsec!r})")
    ra = np.asarray(ra, np.float64)
    dec = np.asarray(dec, np.float64)
    _check_positions(ra, dec)
    if len(ra) == 0:
        return LrgIdentity(np.zeros(0, object), np.zeros(0, np.int64), 0, np.zeros(0))
    pos, inverse = _unique_positions(ra % 360.0, dec)  # work on distinct positions, map back at the end
    labels = _fof_labels(pos, tolerance_arcsec)
    ra_r, dec_r = _rounded(pos[:, 0], pos[:, 1])
    # smallest member per component: sort by (label, ra, dec); labels are 0..k-1, so run l starts at starts[l]
    order = np.lexsort((dec_r, ra_r, labels))
    starts = np.flatnonzero(np.r_[True, labels[order][1:] != labels[order][:-1]])
    first = order[starts]
    comp_ids = format_lrg_id(ra_r[first], dec_r[first])
    if len(np.unique(comp_ids)) != len(comp_ids):  # cannot happen for tolerance >> 1e-5 deg; never merge silently
        raise ValueError("match_lrgs: two LRG groups share an id; use a tolerance above 0.04 arcsec")
    group_of_comp = np.empty(len(first), np.int64)
    group_of_comp[np.argsort(comp_ids, kind="stable")] = np.arange(len(first))
    sep = _separation_arcsec(pos[:, 0], pos[:, 1], ra_r[first][labels], dec_r[first][labels])
    extent = np.empty(len(first))
    extent[group_of_comp] = np.maximum.reduceat(sep[order], starts)
    row_label = labels[inverse]
    return LrgIdentity(comp_ids[row_label], group_of_comp[row_label], len(first), extent)


def _separation_arcsec(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle separation (haversine). Unit: arcsec."""
    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(x, np.float64)) for x in (ra1, dec1, ra2, dec2))
    h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))) * 3600.0


class IdCheck(NamedTuple):
    """Disagreements between given ``lrg_id`` values and sky matching (see :func:`check_lrg_ids`)."""

    split_ids: list
    """Given ids whose rows fall into more than one sky group."""
    merged_ids: list
    """Tuples of given ids whose rows are one sky group (within the tolerance)."""

    @property
    def ok(self) -> bool:
        return not self.split_ids and not self.merged_ids


def check_lrg_ids(ra, dec, lrg_id, tolerance_arcsec: float = 0.5) -> IdCheck:
    """Check given LRG ids (e.g. of a hand-written manifest) against the positions.

    An id is consistent when its rows form exactly one sky group and no other id shares that
    group. Returns the offending ids, sorted.
    """
    sky = match_lrgs(ra, dec, tolerance_arcsec).group
    frame = pd.DataFrame({"given": np.asarray(lrg_id).astype(str), "sky": sky})
    n_sky = frame.groupby("given")["sky"].nunique()
    n_given = frame.groupby("sky")["given"].unique()
    merged = sorted(tuple(sorted(v)) for v in n_given if len(v) > 1)
    return IdCheck(sorted(n_sky.index[n_sky > 1].tolist()), merged)


def ensure_lrg_ids(frame: pd.DataFrame, tolerance_arcsec: float = 0.5) -> pd.DataFrame:
    """Return ``frame`` with an ``lrg_id`` column: derived by sky matching if missing, else checked.

    Raises
    ------
    DataError
        Given ids disagree with the positions (one id spans several LRGs, or one LRG has several ids).
    """
    if LRG_ID_COLUMN not in frame:
        out = frame.copy()
        out[LRG_ID_COLUMN] = match_lrgs(frame["ra"], frame["dec"], tolerance_arcsec).lrg_id
        return out
    check = check_lrg_ids(frame["ra"], frame["dec"], frame[LRG_ID_COLUMN], tolerance_arcsec)
    if not check.ok:
        parts = []
        if check.split_ids:
            parts.append(f"ids spanning several LRGs: {', '.join(check.split_ids[:5])}")
        if check.merged_ids:
            parts.append(f"LRGs with several ids: {'; '.join(' = '.join(m) for m in check.merged_ids[:5])}")
        raise DataError(
            f"lrg_id disagrees with sky matching within {tolerance_arcsec:g} arcsec ({'; '.join(parts)})",
            column=LRG_ID_COLUMN,
        )
    return frame
