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

import hashlib
import sys
from typing import NamedTuple

import numpy as np
import pandas as pd

from shortcutgates.data.ring_shuffle import shuffle_along_rings
from shortcutgates.data.schema import CTRL_COLUMN, IMAGE_COLUMN, INJECTION_TRUTH, LABEL_COLUMN, LRG_ID_COLUMN, PIXEL_SCALE_ARCSEC, POINTER_COLUMNS, SPLIT_COLUMN, STAMP_COLUMN

KINDS: tuple[str, ...] = ("core", "shuffle", "swap")
"""Construction kinds of ``--hard-negatives`` (the interface names)."""
LABEL_OF = {"core": 0, "shuffle": 0, "swap": 1}
DEFAULT_MIX = {"core": 0.5, "shuffle": 0.5, "swap": 0.5}
"""Rows built per plain row of the split: ``core`` and ``shuffle`` per negative LRG, ``swap`` per
positive row. With ``core,shuffle`` the negatives are half plain controls, a quarter core and a
quarter shuffle, and the classes are 1 : 2 (positives : negatives)."""
DEFAULT_SPLITS: tuple[str, ...] = ("train",)
"""Splits that get constructed rows: the training split only, so that validation, test and
test_paired (where every gate scores) hold real negatives only."""
SHUFFLE_PSF_COLUMN = "psf_fwhm_used_r"
"""Donor column giving the PSF FWHM (arcsec) that sets the shuffle's piece length."""
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


CORE_SPLIT_COLUMN = "core_split"
"""How a constructed row's core light was split from its donor's ``d`` (:func:`split_light`): ``lensing``,
``lensing; undecidable for the gates: <reason>``, or ``radius 5 px: <reason>`` (no lensing truth); null for
``swap``, which takes all of ``d``."""


def donor_psf_fwhm(donors: pd.DataFrame) -> np.ndarray:
    """(N, 3) per-band PSF FWHM (arcsec) of donor rows from ``psf_fwhm_used_g/r/z``; NaN where absent."""
    from shortcutgates.gates.perturb import PSF_COLUMNS

    return np.column_stack([pd.to_numeric(donors[c], errors="coerce").to_numpy(np.float64) if c in donors
                            else np.full(len(donors), np.nan) for c in PSF_COLUMNS])


def split_light(d: np.ndarray, truth: pd.DataFrame | None = None,
                psf_fwhm_arcsec: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(core, arc, method)`` of lensed light ``d`` (N, C, H, W) float32; ``core + arc == d`` exactly.

    A row with complete injection truth (:data:`~shortcutgates.gates.perturb.TRUTH_COLUMNS`) and
    per-band PSF FWHM (``psf_fwhm_arcsec``, (N, C) arcsec) is split by lensing, the gates' own
    definition (:func:`~shortcutgates.gates.perturb.split_lensed_light`): core = the counter-image
    light. Pairs the gates cannot score (near-ring, no counter-image, images blurred together) are
    split the same way and say so in ``method``. A row without that truth falls back to the radius
    split at ``R_CORE_PX`` (:func:`~shortcutgates.gates.perturb.split_core_arc`) with the reason in
    ``method`` (:data:`CORE_SPLIT_COLUMN`): never silently.
    """
    from shortcutgates.gates.perturb import R_CORE_PX, split_core_arc, split_lensed_light, truth_problem

    d = np.asarray(d, np.float32)
    n = len(d)
    truth = pd.DataFrame(index=range(n)) if truth is None else truth.reset_index(drop=True)
    fwhm = np.full((n, d.shape[1]), np.nan) if psf_fwhm_arcsec is None else np.asarray(psf_fwhm_arcsec, np.float64)
    problem = truth_problem(truth, fwhm)
    core, arc = np.empty_like(d), np.empty_like(d)
    method = np.empty(n, dtype=object)
    radius = np.flatnonzero(problem != "")
    if len(radius):
        core[radius], arc[radius] = split_core_arc(d[radius], R_CORE_PX)
        method[radius] = [f"radius {R_CORE_PX:g} px: {p}" for p in problem[radius]]
    lens = np.flatnonzero(problem == "")
    if len(lens):
        s = split_lensed_light(d[lens], truth.iloc[lens], fwhm[lens])
        core[lens], arc[lens] = s.counter, s.arc
        method[lens] = ["lensing" if ok else f"lensing; undecidable for the gates: {why}"
                        for ok, why in zip(s.decidable, s.reason)]
    return core, arc, method


def compose(kind: str, host_ctrl: np.ndarray, d: np.ndarray, core: np.ndarray | None = None,
            arc: np.ndarray | None = None, piece_px: float | None = None,
            rng: np.random.Generator | None = None) -> np.ndarray:
    """One constructed image (C, H, W) float32, nanomaggies; see the module table.

    ``d`` is the donor's lensed light (``stamp − ctrl`` in float32) and ``core``/``arc`` its split
    (:func:`split_light`; not needed for ``swap``); the result is ``host_ctrl`` plus the kind's part of
    ``d`` in float32 arithmetic.
    """
    host_ctrl = np.asarray(host_ctrl, np.float32)
    if kind == "swap":
        return host_ctrl + d
    if kind not in KINDS:
        raise ValueError(f"construct: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    if core is None or arc is None:
        raise ValueError(f"construct: {kind!r} needs the core / arc split of d")
    if kind == "core":
        return host_ctrl + core
    if piece_px is None or rng is None:
        raise ValueError("construct: 'shuffle' needs piece_px and rng")
    return host_ctrl + core + shuffle_along_rings(arc, piece_px, rng)


def construct(kind: str, host_ctrl: np.ndarray, donor_stamp: np.ndarray, donor_ctrl: np.ndarray,
              piece_px: float | None = None, rng: np.random.Generator | None = None, *,
              truth: pd.DataFrame | None = None, psf_fwhm_arcsec: np.ndarray | None = None) -> np.ndarray:
    """One constructed image from one donor pair (:func:`compose` after :func:`split_light`).

    ``truth`` (one row) and ``psf_fwhm_arcsec`` (C,) select the lensing split; without them the
    radius fallback is used.
    """
    d = np.asarray(donor_stamp, np.float32) - np.asarray(donor_ctrl, np.float32)
    if kind == "swap":
        return compose(kind, host_ctrl, d)
    fwhm = None if psf_fwhm_arcsec is None else np.asarray(psf_fwhm_arcsec, np.float64)[None]
    core, arc, _ = split_light(d[None], truth, fwhm)
    return compose(kind, host_ctrl, d, core[0], arc[0], piece_px, rng)


def row_rng(seed: int, kind: str, host: str, donor: str) -> np.random.Generator:
    """A generator keyed by (seed, kind, host key, donor key): a row's randomness ignores row order."""
    digest = hashlib.blake2b(f"shortcutgates/{int(seed)}/hard/{kind}/{host}/{donor}".encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "big"))


# --- which rows ----------------------------------------------------------------------------------
class Plan(NamedTuple):
    """Constructions of a build: one row per constructed image."""

    kind: np.ndarray
    """(M,) kind names."""
    host: np.ndarray
    """(M,) positions (iloc) into the manifest frame: the host's plain row (its control provides the image)."""
    donor: np.ndarray
    """(M,) positions of the donor's positive row."""


def _ranked(keys: np.ndarray, seed: int, purpose: str) -> np.ndarray:
    from shortcutgates.data.splits import unit_hash

    return np.argsort(unit_hash(keys, seed, purpose), kind="stable")


def plan(frame: pd.DataFrame, kinds, mix: dict, seed: int, splits=DEFAULT_SPLITS) -> Plan:
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

    Each split and kind: ``n = round(mix[kind] * n_base)``; hosts are the split's plain rows of the
    host class ranked by ``unit_hash(lrg_id, seed, 'hard/<kind>/host')`` and donors its positive
    rows ranked by ``unit_hash(<donor key>, seed, 'hard/<kind>/donor')``, both taken cyclically;
    a ``swap`` whose donor is its host moves to the next donor.
    """
    key = (frame[LRG_ID_COLUMN].astype(str) + "/" + frame[POINTER_COLUMNS[0]].astype(str) + "/"
           + frame[POINTER_COLUMNS[1]].astype(str)).to_numpy()
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
                raise ValueError(f"--hard-negatives swap: split {s} has positives of one LRG only (an arc needs another LRG)")
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
    return Plan(np.asarray(out_kind, dtype=object), cat(out_host), cat(out_donor))


def piece_lengths(donors: pd.DataFrame, shuffle_arcsec: float | None) -> np.ndarray:
    """Shuffle piece length per donor row (pixels): ``shuffle_arcsec``, else the donor's PSF FWHM."""
    if shuffle_arcsec is not None:
        return np.full(len(donors), float(shuffle_arcsec) / PIXEL_SCALE_ARCSEC)
    if SHUFFLE_PSF_COLUMN not in donors:
        raise ValueError(f"--hard-negatives shuffle: the input has no {SHUFFLE_PSF_COLUMN} column (PSF FWHM, arcsec); "
                         "give the piece length with --shuffle-arcsec")
    fwhm = pd.to_numeric(donors[SHUFFLE_PSF_COLUMN], errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(fwhm) | (fwhm <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"--hard-negatives shuffle: {donors[POINTER_COLUMNS[0]].iloc[i]} row "
                         f"{int(donors[POINTER_COLUMNS[1]].iloc[i])} column {SHUFFLE_PSF_COLUMN}: PSF FWHM must be a "
                         f"positive number (got {fwhm[i]!r}); or give --shuffle-arcsec")
    return fwhm / PIXEL_SCALE_ARCSEC


DONOR_CHUNK = 2048
"""Distinct donors whose pairs are decoded and split at a time (bounds the build's memory: a chunk's
stamps, controls, ``d`` and its split, about 5 × 48 KB per 64 × 64 donor)."""


def _decode(refs: pd.DataFrame, column: str) -> np.ndarray:
    """(N, 3, H, W) float32 images of pointer rows (``source_path``, ``source_row``), column ``column``."""
    from shortcutgates.data.blob_rows import read_blobs
    from shortcutgates.data.codec import decode_stamps

    return decode_stamps(read_blobs(refs, column=column), files=refs[POINTER_COLUMNS[0]].to_numpy(),
                         rows=refs[POINTER_COLUMNS[1]].to_numpy(), columns=column).images


def _row_keys(rows: pd.DataFrame) -> np.ndarray:
    return (rows[POINTER_COLUMNS[0]].astype(str) + "/" + rows[POINTER_COLUMNS[1]].astype(str)).to_numpy()


def _build_chunk(frame: pd.DataFrame, the_plan: Plan, todo: np.ndarray, pieces: np.ndarray, seed: int,
                 blobs: list, method: np.ndarray) -> None:
    """Images of the planned rows ``todo`` (whose donors fit one chunk), encoded into ``blobs[todo]``.

    Each distinct donor pair and host control is decoded once, and the donors that give core light
    are split in one batch (:func:`split_light`); ``method[todo]`` gets the split's record.
    """
    from shortcutgates.data.codec import encode_stamp

    donor_pos, donor_of = np.unique(the_plan.donor[todo], return_inverse=True)
    host_pos, host_of = np.unique(the_plan.host[todo], return_inverse=True)
    donors, hosts = frame.iloc[donor_pos], frame.iloc[host_pos]
    ctrls = _decode(pd.concat([donors, hosts]), CTRL_COLUMN)  # one pass over each file's control column
    d = _decode(donors, STAMP_COLUMN) - ctrls[:len(donors)]
    host_ctrl = ctrls[len(donors):]
    kinds = the_plan.kind[todo]
    split_of = np.full(len(donor_pos), -1)
    needs = np.unique(donor_of[kinds != "swap"])
    split_of[needs] = np.arange(len(needs))
    core, arc, how = split_light(d[needs], donors.iloc[needs], donor_psf_fwhm(donors.iloc[needs]))
    host_key, donor_key = _row_keys(hosts), _row_keys(donors)
    for j, i in enumerate(todo):
        kind, h, s = kinds[j], host_of[j], donor_of[j]
        k = split_of[s]
        rng = row_rng(seed, kind, host_key[h], donor_key[s]) if kind == "shuffle" else None
        img = compose(kind, host_ctrl[h], d[s], core[k] if k >= 0 else None, arc[k] if k >= 0 else None,
                      pieces[i], rng)
        blobs[i] = encode_stamp(img, compress=False)
        method[i] = how[k] if k >= 0 else None


def constructed_images(frame: pd.DataFrame, the_plan: Plan, seed: int, *, shuffle_arcsec: float | None = None,
                       progress: bool = False) -> tuple[list, np.ndarray]:
    """The encoded image (uncompressed npz) and the core-split record (:data:`CORE_SPLIT_COLUMN`) of every
    planned row, in plan order; donors are processed :data:`DONOR_CHUNK` at a time."""
    from tqdm.auto import tqdm

    n = len(the_plan.kind)
    pieces = np.full(n, np.nan)
    need = the_plan.kind == "shuffle"
    if need.any():
        pieces[need] = piece_lengths(frame.iloc[the_plan.donor[need]], shuffle_arcsec)
    blobs: list = [None] * n
    method = np.full(n, None, dtype=object)
    by_donor = np.argsort(the_plan.donor, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(the_plan.donor[by_donor]) != 0])  # first row of each donor
    bounds = np.r_[starts[::DONOR_CHUNK], n]
    with tqdm(total=n, desc="hard negatives: build", disable=not progress, file=sys.stderr) as bar:
        for a, b in zip(bounds[:-1], bounds[1:]):
            _build_chunk(frame, the_plan, by_donor[a:b], pieces, seed, blobs, method)
            bar.update(int(b - a))
    return blobs, method


def constructed_rows(frame: pd.DataFrame, the_plan: Plan, seed: int, *, shuffle_arcsec: float | None = None,
                     progress: bool = False) -> pd.DataFrame:
    """Manifest rows of the planned constructions, each with its image inline (``image_npz``).

    A row copies its host's row (split, lrg_id, ra, dec, observing conditions) with the kind's
    label; a ``swap`` positive takes the donor's injection truth, a negative has none (NaN). The
    pointer columns are null (the image is inline); ``host_source_*`` and ``donor_*`` record where
    the control and the lensed light came from, ``construction`` the kind and ``core_split`` how
    the donor's core light was split (:func:`split_light`).
    """
    n = len(the_plan.kind)
    hosts = frame.iloc[the_plan.host].reset_index(drop=True)
    donors = frame.iloc[the_plan.donor].reset_index(drop=True)
    out_blobs, method = constructed_images(frame, the_plan, seed, shuffle_arcsec=shuffle_arcsec, progress=progress)
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
    return {"rule": "perturb.split_lensed_light (core = counter-image light) from the donor's injection truth and "
                    "psf_fwhm_used_g/r/z; without them perturb.split_core_arc(d, R_CORE_PX), reason recorded",
            "rows": {str(k): int(v) for k, v in sorted(counts.items())}}


def add_constructions(frame: pd.DataFrame, kinds, mix: dict, seed: int, splits=DEFAULT_SPLITS, *,
                      shuffle_arcsec: float | None = None, progress: bool = False) -> tuple[pd.DataFrame, dict]:
    """The manifest rows with the constructed rows added, and the record for ``manifest.json``.

    Plain rows get ``construction`` = ``plain`` and null donor / host columns; their images stay
    pointers unless the frame already holds ``image_npz``.
    """
    the_plan = plan(frame, kinds, mix, seed, splits)
    built = constructed_rows(frame, the_plan, seed, shuffle_arcsec=shuffle_arcsec, progress=progress)
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
        print(f"hard negatives: {int(fallback.sum())} of {int(built[CORE_SPLIT_COLUMN].notna().sum())} core splits "
              f"use the 5-px radius split ({built.loc[fallback, CORE_SPLIT_COLUMN].iloc[0]}); recorded in column "
              f"{CORE_SPLIT_COLUMN} and manifest.json", file=sys.stderr)
    out = sort_rows(pd.concat([plain, built], ignore_index=True))
    counts = {s: {k: int(((built[SPLIT_COLUMN] == s) & (built[KIND_COLUMN] == k)).sum()) for k in kinds}
              for s in splits}
    record = {"kinds": list(kinds), "mix": {k: float(mix.get(k, DEFAULT_MIX[k])) for k in kinds},
              "splits": list(splits), "shuffle_arcsec": shuffle_arcsec,
              "shuffle_piece": "donor " + SHUFFLE_PSF_COLUMN if shuffle_arcsec is None else "fixed",
              "core_split": core_split_record(built[CORE_SPLIT_COLUMN]), "counts": counts,
              "n_rows": len(built)}
    return out, record
