"""Public Hypothesis strategies and invariant checks for LRG-disjoint split code (docs/design.md#splits).

Users can run these against their own split code::

    from hypothesis import given
    from shortcutgates import testing

    @given(testing.catalogs())
    def test_my_splitter(cat):
        manifest = my_split(cat.frame)            # rows with label, split, lrg_id (or ra/dec)
        testing.check_manifest(manifest, paired=False)

Every check raises :class:`InvariantViolation` (an ``AssertionError``) with a one-line message
naming the LRG and the rows that break the invariant; it returns None when the invariant holds.
The generators need ``hypothesis`` (a dev dependency); the checks need only pandas.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from shortcutgates.data.identity import ensure_lrg_ids
from shortcutgates.data.schema import (
    CTRL_COLUMN,
    INJECTION_TRUTH,
    LABEL_COLUMN,
    LRG_ID_COLUMN,
    POINTER_COLUMNS,
    SHARED_POSITIVE_SPLITS,
    SPLIT_COLUMN,
    SPLITS,
    STAMP_COLUMN,
)

__all__ = [
    "GeneratedCatalog",
    "InvariantViolation",
    "OPTIONAL_COLUMNS",
    "as_read",
    "catalogs",
    "generate_catalog",
    "write_catalog",
    "check_assignment_kept",
    "check_lrg_disjoint_splits",
    "check_manifest",
    "check_one_control_per_lrg",
    "check_pairs_together",
    "check_pools_disjoint",
    "check_shared_positives",
    "check_split_fractions",
    "check_test_paired_isolated",
    "shared_positive_rows",
    "check_traceable",
    "lrg_assignment",
]

OPTIONAL_COLUMNS = ("theta_e_arcsec", "arc_snr", "psfsize_r", "psfdepth_r", "ebv", "psf_bin", "brickname", "task_id")
"""Optional columns a generated catalogue may carry (each drawn present or absent)."""


class InvariantViolation(AssertionError):
    """A split invariant does not hold."""


class GeneratedCatalog(NamedTuple):
    """A generated paired catalogue and the truth it was generated from."""

    frame: pd.DataFrame
    """Rows in the paired input format (docs/design.md#paired-input-format) (blob columns only when images were asked for)."""
    lrg: np.ndarray
    """(N,) int64: the true LRG of each row, 0..n_lrgs-1."""
    n_lrgs: int


# --- strategies --------------------------------------------------------------------------------
def catalogs(
    *,
    min_lrgs: int = 1,
    max_lrgs: int = 40,
    max_injections: int = 6,
    tolerance_arcsec: float = 0.5,
    image_size: int | None = None,
    input_splits: bool | None = False,
    ra_origin: float | None = None,
):
    """Hypothesis strategy of paired catalogues (:class:`GeneratedCatalog`).

    Draws the number of LRGs, injections per LRG (1..max_injections), position jitter of the
    rows of one LRG (up to 0.4 × tolerance, so any two rows of one LRG are within the tolerance;
    sometimes exactly 0), row order, which optional columns are present, the sky region (including
    the RA = 0/360 wrap) and, optionally, an input split per LRG in ``region_split``. LRG centres
    are at least 10 arcsec apart. With ``image_size`` the rows carry ``stamp_npz`` /
    ``ctrl_stamp_npz`` blobs of that size; the controls of one LRG are byte-identical.
    """
    from hypothesis import strategies as st

    @st.composite
    def build(draw):
        n = draw(st.integers(min_lrgs, max_lrgs))
        inj = draw(st.lists(st.integers(1, max_injections), min_size=n, max_size=n))
        jitter = draw(st.sampled_from([0.0, 1e-6 * 3600, 0.4 * tolerance_arcsec]))
        origin = draw(st.sampled_from([359.9995, 150.0, 0.0])) if ra_origin is None else ra_origin
        dec0 = draw(st.sampled_from([-60.0, 2.0, 75.0]))
        present = draw(st.sets(st.sampled_from(OPTIONAL_COLUMNS)))
        splits = draw(st.booleans()) if input_splits is None else input_splits
        seed = draw(st.integers(0, 2**32 - 1))
        return generate_catalog(
            inj,
            seed=seed,
            jitter_arcsec=jitter,
            ra_origin=origin,
            dec_origin=dec0,
            columns=tuple(c for c in OPTIONAL_COLUMNS if c in present),
            image_size=image_size,
            input_splits=splits,
        )

    return build()


def generate_catalog(
    injections,
    *,
    seed: int,
    jitter_arcsec: float = 0.0,
    ra_origin: float = 150.0,
    dec_origin: float = 2.0,
    columns=OPTIONAL_COLUMNS,
    image_size: int | None = None,
    input_splits: bool = False,
    first_lrg: int = 0,
) -> GeneratedCatalog:
    """A paired catalogue with ``injections[i]`` rows on LRG i, rows in shuffled order.

    Parameters
    ----------
    injections : sequence of int
        Rows per LRG.
    seed : int
    jitter_arcsec : float
        Rows of an LRG are displaced up to this far from its centre. Unit: arcsec.
    ra_origin, dec_origin : float
        Corner of the 10-arcsec grid of LRG centres. Unit: deg.
    first_lrg : int
        Grid index of LRG 0 (use to add new, distinct LRGs to an existing catalogue).
    """
    rng = np.random.default_rng(seed)
    n = len(injections)
    idx = np.arange(first_lrg, first_lrg + n)
    step = 10.0 / 3600.0
    dec_c = dec_origin + (idx // 40) * step + rng.uniform(0, 3.0 / 3600, n)
    ra_c = (ra_origin + (idx % 40) * step / np.cos(np.radians(dec_c)) + rng.uniform(0, 3.0 / 3600, n)) % 360.0
    lrg = np.repeat(np.arange(n), injections)
    r = jitter_arcsec / 3600.0 * np.sqrt(rng.uniform(0, 1, len(lrg)))
    phi = rng.uniform(0, 2 * np.pi, len(lrg))
    dec = dec_c[lrg] + r * np.sin(phi)
    ra = (ra_c[lrg] + r * np.cos(phi) / np.cos(np.radians(dec_c[lrg]))) % 360.0
    frame = pd.DataFrame({"ra": ra, "dec": dec})
    per_lrg = {
        "psfsize_r": rng.uniform(1.0, 1.6, n),
        "psfdepth_r": rng.uniform(23.0, 24.5, n),
        "ebv": rng.uniform(0.0, 0.1, n),
        "psf_bin": rng.integers(0, 3, n).astype(np.int32),
        "brickname": np.array([f"b{i % 7:04d}" for i in idx], dtype=object),
    }
    per_row = {
        "theta_e_arcsec": rng.uniform(0.5, 3.0, len(lrg)),
        "arc_snr": rng.uniform(5, 50, len(lrg)),
        "task_id": rng.integers(0, 10**6, len(lrg)).astype(np.int32),
    }
    for col in columns:
        frame[col] = per_lrg[col][lrg] if col in per_lrg else per_row[col]
    if input_splits:
        frame["region_split"] = np.asarray(SPLITS, dtype=object)[rng.integers(0, 3, n)][lrg]
    if image_size:
        _add_blobs(frame, lrg, rng, image_size)
    order = rng.permutation(len(frame))
    return GeneratedCatalog(frame.iloc[order].reset_index(drop=True), lrg[order], n)


def _add_blobs(frame: pd.DataFrame, lrg: np.ndarray, rng: np.random.Generator, size: int) -> None:
    from shortcutgates.data.codec import encode_stamp

    ctrl_images = rng.normal(0, 0.01, (lrg.max() + 1, 3, size, size)).astype(np.float32)
    yy, xx = np.indices((size, size)) - size // 2
    ctrl_images += (np.exp(-(yy**2 + xx**2) / 4.0) * rng.uniform(0.5, 5, (len(ctrl_images), 1, 1, 1))).astype(
        np.float32
    )
    ctrl = [encode_stamp(im) for im in ctrl_images]
    ring = np.exp(-((np.hypot(yy, xx) - size / 5) ** 2)).astype(np.float32)
    frame[CTRL_COLUMN] = [ctrl[i] for i in lrg]
    frame[STAMP_COLUMN] = [encode_stamp(ctrl_images[i] + ring * rng.uniform(0.1, 1)) for i in lrg]


def as_read(frame: pd.DataFrame, path: str = "/catalog/part-0.parquet") -> pd.DataFrame:
    """Add the provenance columns of :func:`shortcutgates.data.io.read_paired` to an in-memory catalogue."""
    out = frame.copy()
    out["source_path"] = path
    out["source_row"] = np.arange(len(out), dtype=np.int64)
    out[SPLIT_COLUMN] = (
        out["region_split"].astype(object) if "region_split" in out else pd.Series([None] * len(out), dtype=object)
    )
    return out


def write_catalog(frame: pd.DataFrame, directory, n_files: int = 1, *, split_dirs: bool = False) -> list[Path]:
    """Write a catalogue as ``n_files`` parquet parts (or one per split directory). Returns the paths."""
    directory = Path(directory)
    paths = []
    groups = frame.groupby("region_split", sort=True) if split_dirs else [("", frame)]
    for split, part in groups:
        part = part.drop(columns=["region_split"]) if split_dirs else part
        sub = directory / split if split else directory
        sub.mkdir(parents=True, exist_ok=True)
        for i, chunk in enumerate(np.array_split(np.arange(len(part)), n_files)):
            path = sub / f"part-{i:04d}.parquet"
            part.iloc[chunk].to_parquet(path, index=False)
            paths.append(path)
    return paths


# --- invariant checks --------------------------------------------------------------------------
def _ids(manifest: pd.DataFrame, tolerance_arcsec: float) -> pd.DataFrame:
    return ensure_lrg_ids(manifest, tolerance_arcsec)


def _fail(message: str):
    raise InvariantViolation(message)


def shared_positive_rows(manifest: pd.DataFrame) -> np.ndarray:
    """(N,) bool: positives of ``test`` on an LRG of ``test_paired`` (``manifest`` carries ``lrg_id``).

    A build shares them by design (``schema.SHARED_POSITIVE_SPLITS``: the cross-test gap then compares
    the same lenses against unpaired and paired negatives), so split disjointness is checked without them.
    """
    test, paired = SHARED_POSITIVE_SPLITS
    split = manifest[SPLIT_COLUMN].to_numpy()
    held = set(manifest.loc[split == paired, LRG_ID_COLUMN])
    return (split == test) & (manifest[LABEL_COLUMN].to_numpy() == 1) & manifest[LRG_ID_COLUMN].isin(held).to_numpy()


def check_lrg_disjoint_splits(manifest: pd.DataFrame, tolerance_arcsec: float = 0.5) -> None:
    """No LRG (``lrg_id``, checked against positions; derived from them if absent) is in two splits,
    except ``test``'s positives on ``test_paired`` LRGs (:func:`shared_positive_rows`)."""
    m = _ids(manifest, tolerance_arcsec)
    m = m[~shared_positive_rows(m)]
    n = m.groupby(LRG_ID_COLUMN)[SPLIT_COLUMN].nunique()
    if (n > 1).any():
        lrg = n.index[n > 1][0]
        _fail(f"LRG {lrg} is in splits {sorted(set(m.loc[m[LRG_ID_COLUMN] == lrg, SPLIT_COLUMN]))}")


def check_pools_disjoint(manifest: pd.DataFrame, tolerance_arcsec: float = 0.5) -> None:
    """Unpaired splits (train/val/test): no LRG contributes both a positive and a negative."""
    m = _ids(manifest, tolerance_arcsec)
    m = m[m[SPLIT_COLUMN].isin(SPLITS)]
    n = m.groupby(LRG_ID_COLUMN)[LABEL_COLUMN].nunique()
    if (n > 1).any():
        _fail(f"LRG {n.index[n > 1][0]} is in both the positive and the negative pool")


def check_one_control_per_lrg(manifest: pd.DataFrame, tolerance_arcsec: float = 0.5) -> None:
    """Every LRG with a negative row has exactly one (its controls are identical)."""
    m = _ids(manifest, tolerance_arcsec)
    n = m[m[LABEL_COLUMN] == 0].groupby(LRG_ID_COLUMN).size()
    if (n != 1).any():
        _fail(f"LRG {n.index[n != 1][0]} has {int(n[n != 1].iloc[0])} negative rows; expected one control")


def check_pairs_together(manifest: pd.DataFrame, splits=None, tolerance_arcsec: float = 0.5) -> None:
    """In paired splits (default: all of a paired build), each positive's LRG has its control in the same split."""
    m = _ids(manifest, tolerance_arcsec)
    if splits is not None:
        m = m[m[SPLIT_COLUMN].isin(splits)]
    labels = m.groupby([LRG_ID_COLUMN, SPLIT_COLUMN])[LABEL_COLUMN].agg(lambda s: frozenset(s))
    bad = labels[labels != frozenset({0, 1})]
    if len(bad):
        (lrg, split), have = bad.index[0], sorted(bad.iloc[0])
        _fail(f"LRG {lrg} in {split} has labels {have}; a pair needs a positive and its control")


def check_shared_positives(manifest: pd.DataFrame, tolerance_arcsec: float = 0.5) -> None:
    """Where ``test_paired`` exists, every positive of ``test`` is a positive of ``test_paired``: the same
    image (pointer or blob) on the same LRG, as an unpaired build of this library writes them."""
    m = _ids(manifest, tolerance_arcsec)
    test, paired = SHARED_POSITIVE_SPLITS
    if not (m[SPLIT_COLUMN] == paired).any():
        return
    image = [c for c in POINTER_COLUMNS if c in m.columns] or [c for c in ("image_npz",) if c in m.columns]
    key = m[[LRG_ID_COLUMN, *image]].astype(str).agg("\0".join, axis=1)
    pos = m[LABEL_COLUMN].to_numpy() == 1
    held = set(key[pos & (m[SPLIT_COLUMN] == paired).to_numpy()])
    own = key[pos & (m[SPLIT_COLUMN] == test).to_numpy() & ~key.isin(held).to_numpy()]
    if len(own):
        _fail(f"test positive {own.iloc[0]!r} is not a test_paired positive (test's positives are test_paired's)")


def check_test_paired_isolated(manifest: pd.DataFrame, tolerance_arcsec: float = 0.5) -> None:
    """``test_paired`` LRGs appear in no other split but as ``test``'s positives, and ``test_paired``
    holds complete pairs."""
    check_lrg_disjoint_splits(manifest, tolerance_arcsec)
    if (manifest[SPLIT_COLUMN] == "test_paired").any():
        check_pairs_together(manifest, splits=["test_paired"], tolerance_arcsec=tolerance_arcsec)


def check_traceable(manifest: pd.DataFrame, catalog: pd.DataFrame) -> None:
    """Every manifest row points to one distinct input row, of the right blob column, with its values.

    ``catalog`` is the input as read (``source_path``, ``source_row`` columns). Positions and the
    copied columns must equal the input row's; injection truth must be NaN for negatives.
    """
    key = list(POINTER_COLUMNS)
    single = manifest[~shared_positive_rows(manifest)] if LRG_ID_COLUMN in manifest else manifest
    if single.duplicated(key).any():  # test's positives are test_paired's: one image, two rows by design
        _fail(f"two manifest rows point to {tuple(single[single.duplicated(key)][key].iloc[0])}")
    want = np.where(manifest[LABEL_COLUMN].to_numpy() == 1, STAMP_COLUMN, CTRL_COLUMN)
    if (manifest[POINTER_COLUMNS[2]].to_numpy() != want).any():
        _fail("a row's source_column does not match its label (1: stamp_npz, 0: ctrl_stamp_npz)")
    src = catalog.set_index(["source_path", "source_row"])
    idx = pd.MultiIndex.from_arrays([manifest["source_path"], manifest["source_row"]])
    missing = ~idx.isin(src.index)
    if missing.any():
        _fail(f"manifest row {int(np.flatnonzero(missing)[0])} points to no input row")
    rows = src.loc[idx]
    for col in [c for c in manifest.columns if c in src.columns and c not in (SPLIT_COLUMN, LRG_ID_COLUMN)]:
        got, exp = manifest[col].to_numpy(), rows[col].to_numpy()
        if col in INJECTION_TRUTH:
            neg = manifest[LABEL_COLUMN].to_numpy() == 0
            if not pd.isna(got[neg]).all():
                _fail(f"'{col}' is injection truth but is set on a negative row")
            got, exp = got[~neg], exp[~neg]
        same = (got == exp) | (pd.isna(got) & pd.isna(exp))
        if not np.all(same):
            _fail(f"manifest row {int(np.flatnonzero(~same)[0])}: '{col}' differs from its input row")


def check_split_fractions(manifest: pd.DataFrame, fractions, tolerance: float) -> None:
    """Fractions of LRGs per split (test includes test_paired) within ``tolerance`` of ``fractions``."""
    lrg = manifest.drop_duplicates(LRG_ID_COLUMN)
    split = lrg[SPLIT_COLUMN].replace({"test_paired": "test"})
    got = split.value_counts(normalize=True).reindex(SPLITS, fill_value=0.0)
    want = list(fractions[:2]) + [sum(fractions[2:])]
    for name, g, w in zip(SPLITS, got, want):
        if abs(g - w) > tolerance:
            _fail(f"{name} holds {g:.3f} of {len(lrg)} LRGs; expected {w:.3f} ± {tolerance}")


def lrg_assignment(manifest: pd.DataFrame) -> dict:
    """``lrg_id -> (split, sorted labels)`` of a manifest."""
    g = manifest.groupby(LRG_ID_COLUMN)
    return {
        k: (s, tuple(sorted(set(labels))))
        for k, s, labels in zip(g.groups, g[SPLIT_COLUMN].first(), g[LABEL_COLUMN].agg(list))
    }


def check_assignment_kept(before: pd.DataFrame, after: pd.DataFrame, lrg_ids=None) -> None:
    """LRGs of ``before`` (or ``lrg_ids``) keep their split and pool in ``after`` (e.g. after adding LRGs)."""
    a, b = lrg_assignment(before), lrg_assignment(after)
    for lrg in sorted(a if lrg_ids is None else lrg_ids):
        if a.get(lrg) != b.get(lrg):
            _fail(f"LRG {lrg} moved from {a.get(lrg)} to {b.get(lrg)}")


def check_manifest(manifest: pd.DataFrame, *, paired: bool, tolerance_arcsec: float = 0.5) -> None:
    """Run every single-manifest invariant that applies to a paired or an unpaired build."""
    check_lrg_disjoint_splits(manifest, tolerance_arcsec)
    check_one_control_per_lrg(manifest, tolerance_arcsec)
    check_test_paired_isolated(manifest, tolerance_arcsec)
    if paired:
        check_pairs_together(manifest, tolerance_arcsec=tolerance_arcsec)
    else:
        check_pools_disjoint(manifest, tolerance_arcsec)
