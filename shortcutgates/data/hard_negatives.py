"""Hard negatives and counterfactual augmentation built from paired input (``build --hard-negatives``).

Every paired row carries its injected lensed light exactly: ``d = stamp − ctrl`` (the control's
noise stays in the control). The constructions put parts of a *donor*'s ``d`` onto a *host*'s
control, so every image is a real control plus real lensed light:

======== ===== ================================================= ===================================
kind     label host (``lrg_id``)                                 image
======== ===== ================================================= ===================================
core     0     a negative-pool LRG of the split                  ``ctrl_host + core(d_donor)``
shuffle  0     a negative-pool LRG of the split                  ``ctrl_host + core(d_donor)
                                                                 + shuffle(arc(d_donor))``
swap     1     a positive-pool LRG of the split, not the donor's ``ctrl_host + d_donor``
======== ===== ================================================= ===================================

The donor is always a positive row of the same split (its LRG is recorded in ``donor_lrg_id``, its
paired-input row in ``donor_source_path`` / ``donor_source_row``). Hosts keep their pool, so the
LRGs of the two classes stay disjoint and no LRG crosses a split; a donor's light appears in
the other class (that is the point of ``core``: the same core light in both classes).

``core(d)`` / ``arc(d)`` is :func:`split_light`: the gates' own lensing split
(:func:`~shortcutgates.gates.perturb.split_lensed_light`, core = the counter-image light re-rendered
from the donor's injection truth and PSF), and — only for a donor without that truth — the
radius split :func:`~shortcutgates.gates.perturb.split_core_arc` at ``R_CORE_PX`` (5 px), with the
reason in the row's ``core_split`` column, counted in ``manifest.json`` and named on stderr. Pairs the gates
cannot score (near-ring, no counter-image, images blurred together) are split the same way and
marked so in ``core_split``. :func:`~shortcutgates.data.ring_shuffle.shuffle_along_rings` scrambles the arc's light along its rings in pieces one PSF FWHM long — a permutation of each 1-px
ring's own pixels, so each ring's flux is kept exactly and the image stays as smooth as the PSF
(not rejected by texture); it is the survey team's azimuthal-shuffle negative, a relative of (not
the same construction as) the morphology gate's :func:`~shortcutgates.gates.perturb.scramble_along_ring`.

Which gate a kind trains against (docs/experiment.md#e5): ``core`` makes the
``arc_masked_auroc`` gate's counterfactual (``ctrl + core(d)``) a training negative;
``shuffle`` makes a relative of the ``morphology`` gate's ring-averaged image a negative;
``swap`` is the ``background_swap`` gate's image as a positive.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from shortcutgates.data.hard_negative_images import (  # noqa: F401 (the images' half of this module's interface)
    CORE_SPLIT_COLUMN,
    KINDS,
    SHUFFLE_PSF_COLUMN,
    compose,
    construct,
    constructed_images,
    donor_psf_fwhm,
    piece_lengths,
    row_rng,
    split_light,
)
from shortcutgates.data.build_output import relative_pointers
from shortcutgates.data.schema import (
    IMAGE_COLUMN,
    INJECTION_TRUTH,
    LABEL_COLUMN,
    LRG_ID_COLUMN,
    POINTER_COLUMNS,
    SPLIT_COLUMN,
)

LABEL_OF = {"core": 0, "shuffle": 0, "swap": 1}
DEFAULT_MIX = {"core": 0.5, "shuffle": 0.5, "swap": 0.5}
"""Rows built per plain row of the split: ``core`` and ``shuffle`` per negative LRG, ``swap`` per
positive row. With ``core,shuffle`` the negatives are half plain controls, a quarter core and a
quarter shuffle, and the classes are 1 : 2 (positives : negatives)."""
DEFAULT_SPLITS: tuple[str, ...] = ("train",)
"""Splits that get constructed rows: the training split only, so that validation, test and
test_paired (where every gate scores) hold real negatives only."""
KIND_COLUMN = "construction"
DONOR_COLUMNS = ("donor_lrg_id", "donor_source_path", "donor_source_row")
HOST_COLUMNS = ("host_source_path", "host_source_row")


def parse_kinds(text) -> tuple[str, ...]:
    """``'core,shuffle'`` -> ``('core', 'shuffle')``; unknown or repeated names raise ValueError."""
    names = tuple(k.strip() for k in (text.split(",") if isinstance(text, str) else text) if k.strip())
    unknown = [k for k in names if k not in KINDS]
    if unknown:
        raise ValueError(f"--hard-negatives: unknown kind(s) {', '.join(unknown)}; expected some of {', '.join(KINDS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"--hard-negatives: a kind is repeated ({text!r})")
    return names


def parse_mix(text) -> dict:
    """``'core=0.5,shuffle=0.25'`` -> dict; every value a finite number >= 0."""
    if isinstance(text, dict):
        items = list(text.items())
    else:
        items = []
        for part in filter(None, (p.strip() for p in str(text).split(","))):
            key, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"--hard-negative-mix: expected KIND=FRACTION (got {part!r})")
            items.append((key.strip(), value))
    out = {}
    for key, value in items:
        if key not in KINDS:
            raise ValueError(f"--hard-negative-mix: unknown kind {key!r}; expected some of {', '.join(KINDS)}")
        try:
            f = float(value)
        except ValueError:
            raise ValueError(f"--hard-negative-mix: {key} must be a number (got {value!r})") from None
        if not np.isfinite(f) or f < 0:
            raise ValueError(f"--hard-negative-mix: {key} must be a finite number >= 0 (got {value!r})")
        out[key] = f
    return out


# --- which rows ----------------------------------------------------------------------------------
class Plan(NamedTuple):
    """Constructions of a build: one row per constructed image."""

    kind: np.ndarray
    """(M,) kind names."""
    host: np.ndarray
    """(M,) positions (iloc) into the manifest frame: the host's plain row (its control provides the image)."""
    donor: np.ndarray
    """(M,) positions of the donor's positive row."""
    row_key: np.ndarray | None = None
    """(len(frame),) ``<source path relative to the input root>/<source row>`` of every manifest row: what the
    host/donor ranking and each row's randomness are keyed on (:func:`pointer_keys`), so a build's bytes do not
    depend on where the input sits. None: the keys are made from the paths as given."""


def pointer_keys(frame: pd.DataFrame, root=None) -> np.ndarray:
    """``<source_path>/<source_row>`` of every row, the path relative to ``root`` (the input root) when given.

    Keys are made from relative paths so that the same input and seed build the same bytes wherever the
    input directory lies (an absolute path would pick other hosts, donors and shuffles after a move).
    """
    paths = frame[POINTER_COLUMNS[0]]
    if root is not None:
        paths = relative_pointers(paths, Path(root))
    return (paths.astype(str) + "/" + frame[POINTER_COLUMNS[1]].astype(str)).to_numpy()


def _ranked(keys: np.ndarray, seed: int, purpose: str) -> np.ndarray:
    from shortcutgates.data.splits import unit_hash

    return np.argsort(unit_hash(keys, seed, purpose), kind="stable")


def plan(frame: pd.DataFrame, kinds, mix: dict, seed: int, splits=DEFAULT_SPLITS, root=None) -> Plan:
    """Choose hosts and donors for every construction (keyed hashes; row order does not matter).

    Parameters
    ----------
    frame : DataFrame
        Manifest rows of an unpaired build (``label``, ``split``, ``lrg_id``, pointer columns).
    kinds : sequence of str
    mix : dict
        kind -> rows built per negative LRG (``core``, ``shuffle``) or per positive row (``swap``).
    splits : sequence of str
        Splits that get constructed rows.
    root : path, optional
        The paired input's root directory: row keys use paths relative to it (:func:`pointer_keys`).

    Each split and kind: ``n = round(mix[kind] * n_base)``; hosts are the split's plain rows of the
    host class ranked by ``unit_hash(lrg_id, seed, 'hard/<kind>/host')`` and donors its positive
    rows ranked by ``unit_hash(<donor key>, seed, 'hard/<kind>/donor')``, both taken cyclically;
    a ``swap`` whose donor is its host moves to the next donor.
    """
    row_key = pointer_keys(frame, root)
    key = frame[LRG_ID_COLUMN].astype(str).to_numpy() + "/" + row_key
    labels = frame[LABEL_COLUMN].to_numpy()
    split = frame[SPLIT_COLUMN].astype(str).to_numpy()
    lrg = frame[LRG_ID_COLUMN].astype(str).to_numpy()
    out_kind, out_host, out_donor = [], [], []
    for s in splits:
        pos = np.flatnonzero((split == s) & (labels == 1))
        neg = np.flatnonzero((split == s) & (labels == 0))
        for kind in kinds:
            hosts = pos if LABEL_OF[kind] == 1 else neg
            n = round(float(mix.get(kind, DEFAULT_MIX[kind])) * len(hosts))
            if n == 0 or len(hosts) == 0 or len(pos) == 0:
                continue
            if kind == "swap" and len(np.unique(lrg[pos])) < 2:
                raise ValueError(
                    f"--hard-negatives swap: split {s} has positives of one LRG only (an arc needs another LRG)"
                )
            h = hosts[_ranked(key[hosts], seed, f"hard/{kind}/host")]
            d = pos[_ranked(key[pos], seed, f"hard/{kind}/donor")]
            host_pick = h[np.arange(n) % len(h)]
            donor_pick = d[np.arange(n) % len(d)].copy()
            if kind == "swap":
                for i in np.flatnonzero(lrg[donor_pick] == lrg[host_pick]):
                    j = (i + 1 + np.arange(len(d))) % len(d)
                    donor_pick[i] = d[j[np.argmax(lrg[d[j]] != lrg[host_pick[i]])]]
            out_kind += [kind] * n
            out_host.append(host_pick)
            out_donor.append(donor_pick)
    cat = (lambda xs: np.concatenate(xs).astype(np.int64)) if out_host else (lambda xs: np.zeros(0, np.int64))
    return Plan(np.asarray(out_kind, dtype=object), cat(out_host), cat(out_donor), row_key)


def constructed_rows(
    frame: pd.DataFrame,
    the_plan: Plan,
    seed: int,
    *,
    shuffle_arcsec: float | None = None,
    progress: bool = False,
    controls: dict | None = None,
) -> pd.DataFrame:
    """Manifest rows of the planned constructions, each with its image inline (``image_npz``).

    A row copies its host's row (split, lrg_id, ra, dec, observing conditions) with the kind's
    label; a ``swap`` positive takes the donor's injection truth, a negative has none (NaN). The
    pointer columns are null (the image is inline); ``host_source_*`` and ``donor_*`` record where
    the control and the lensed light came from, ``construction`` the kind and ``core_split`` how
    the donor's core light was split (:func:`split_light`). ``controls``: controls decoded before
    (:func:`~shortcutgates.data.hard_negative_images.constructed_images`).
    """
    n = len(the_plan.kind)
    hosts = frame.iloc[the_plan.host].reset_index(drop=True)
    donors = frame.iloc[the_plan.donor].reset_index(drop=True)
    out_blobs, method = constructed_images(
        frame, the_plan, seed, shuffle_arcsec=shuffle_arcsec, progress=progress, controls=controls
    )
    rows = hosts.copy()
    labels = np.array([LABEL_OF[k] for k in the_plan.kind], np.int8)
    rows[LABEL_COLUMN] = labels
    for col in INJECTION_TRUTH:
        if col in rows:
            rows[col] = np.where(labels == 1, donors[col].to_numpy(np.float64), np.nan)
    rows[HOST_COLUMNS[0]] = hosts[POINTER_COLUMNS[0]].to_numpy()
    rows[HOST_COLUMNS[1]] = hosts[POINTER_COLUMNS[1]].to_numpy(np.int64)
    rows[DONOR_COLUMNS[0]] = donors[LRG_ID_COLUMN].to_numpy()
    rows[DONOR_COLUMNS[1]] = donors[POINTER_COLUMNS[0]].to_numpy()
    rows[DONOR_COLUMNS[2]] = donors[POINTER_COLUMNS[1]].to_numpy(np.int64)
    rows[KIND_COLUMN] = the_plan.kind.astype(object)
    rows[CORE_SPLIT_COLUMN] = method
    rows[POINTER_COLUMNS[0]] = None
    rows[POINTER_COLUMNS[1]] = pd.array([pd.NA] * n, dtype="Int64")
    rows[POINTER_COLUMNS[2]] = None
    rows[IMAGE_COLUMN] = out_blobs
    return rows


def core_split_record(method: pd.Series) -> dict:
    """manifest.json's record of the core splits: the rule, and how many constructed rows each outcome holds."""
    counts = method.dropna().map(lambda m: ":".join(str(m).split(":")[:2])).value_counts()
    return {
        "rule": "perturb.split_lensed_light (core = counter-image light) from the donor's injection truth and "
        "psf_fwhm_used_g/r/z; without them perturb.split_core_arc(d, R_CORE_PX), reason recorded",
        "rows": {str(k): int(v) for k, v in sorted(counts.items())},
    }


def add_constructions(
    frame: pd.DataFrame,
    kinds,
    mix: dict,
    seed: int,
    splits=DEFAULT_SPLITS,
    *,
    shuffle_arcsec: float | None = None,
    progress: bool = False,
    controls: dict | None = None,
    root=None,
) -> tuple[pd.DataFrame, dict]:
    """The manifest rows with the constructed rows added, and the record for ``manifest.json``.

    Plain rows get ``construction`` = ``plain`` and null donor / host columns; their images stay
    pointers unless the frame already holds ``image_npz``. ``root``: the paired input's root directory,
    which the row keys are relative to (:func:`pointer_keys`; the build passes it).
    """
    the_plan = plan(frame, kinds, mix, seed, splits, root=root)
    built = constructed_rows(frame, the_plan, seed, shuffle_arcsec=shuffle_arcsec, progress=progress, controls=controls)
    plain = frame.copy()
    plain[KIND_COLUMN] = "plain"
    for col in HOST_COLUMNS[:1] + DONOR_COLUMNS[:2] + (CORE_SPLIT_COLUMN,):
        plain[col] = None
    for col in (HOST_COLUMNS[1], DONOR_COLUMNS[2]):
        plain[col] = pd.array([pd.NA] * len(plain), dtype="Int64")
    if IMAGE_COLUMN not in plain:
        plain[IMAGE_COLUMN] = None
    plain[POINTER_COLUMNS[1]] = plain[POINTER_COLUMNS[1]].astype("Int64")
    built[HOST_COLUMNS[1]] = built[HOST_COLUMNS[1]].astype("Int64")
    built[DONOR_COLUMNS[2]] = built[DONOR_COLUMNS[2]].astype("Int64")
    from shortcutgates.data.splits import sort_rows

    fallback = built[CORE_SPLIT_COLUMN].astype(str).str.startswith("radius")
    if fallback.any():
        print(
            f"hard negatives: {int(fallback.sum())} of {int(built[CORE_SPLIT_COLUMN].notna().sum())} core splits "
            f"use the 5-px radius split ({built.loc[fallback, CORE_SPLIT_COLUMN].iloc[0]}); recorded in column "
            f"{CORE_SPLIT_COLUMN} and manifest.json",
            file=sys.stderr,
        )
    out = sort_rows(pd.concat([plain, built], ignore_index=True))
    counts = {
        s: {k: int(((built[SPLIT_COLUMN] == s) & (built[KIND_COLUMN] == k)).sum()) for k in kinds} for s in splits
    }
    record = {
        "kinds": list(kinds),
        "mix": {k: float(mix.get(k, DEFAULT_MIX[k])) for k in kinds},
        "splits": list(splits),
        "shuffle_arcsec": shuffle_arcsec,
        "shuffle_piece": "donor " + SHUFFLE_PSF_COLUMN if shuffle_arcsec is None else "fixed",
        "core_split": core_split_record(built[CORE_SPLIT_COLUMN]),
        "counts": counts,
        "n_rows": len(built),
    }
    return out, record
