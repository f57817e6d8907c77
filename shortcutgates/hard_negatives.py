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

``core(d)`` / ``arc(d)`` is the radius split :func:`shortcutgates.gates.perturb.split_core_arc` at
``R_CORE_PX`` (everything of ``d`` within 5 px): the model gates' split when this was written and
measured. The gates now split by lensing (:func:`~shortcutgates.gates.perturb.split_lensed_light`,
from the injection truth); :func:`split_light` is the one place to switch, which needs a rule for
donors the lensing split cannot decide (not done: docs/experiment.md#e5). :func:`shuffle_along_rings`
scrambles the arc's light along its rings in pieces one PSF FWHM long — a permutation of each 1-px
ring's own pixels, so each ring's flux is kept exactly and the image stays as smooth as the PSF
(not rejected by texture); it is the survey team's azimuthal-shuffle negative, a relative of (not
the same construction as) the morphology gate's :func:`~shortcutgates.gates.perturb.scramble_along_ring`.

Which gate a kind trains against (docs/experiment.md#e5): ``core`` makes the
``arc_masked_auroc`` gate's counterfactual (``ctrl + core(d)``) a training negative;
``shuffle`` makes a relative of the ``morphology`` gate's ring-averaged image a negative;
``swap`` is the ``background_swap`` gate's image as a positive.
"""

from __future__ import annotations

import functools
import hashlib
from typing import NamedTuple

import numpy as np
import pandas as pd

from .schema import (
    CTRL_COLUMN,
    IMAGE_COLUMN,
    INJECTION_TRUTH,
    LABEL_COLUMN,
    LRG_ID_COLUMN,
    PIXEL_SCALE_ARCSEC,
    POINTER_COLUMNS,
    SPLIT_COLUMN,
    STAMP_COLUMN,
)

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


# --- pixels --------------------------------------------------------------------------------------
def split_light(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(core, arc)`` of lensed light ``d`` (N, C, H, W); ``core + arc == d`` (the radius split at ``R_CORE_PX``)."""
    from .gates.perturb import R_CORE_PX, split_core_arc

    return split_core_arc(d, R_CORE_PX)


def ring_shuffle_permutation(height: int, width: int, piece_px: float, rng: np.random.Generator) -> np.ndarray:
    """A permutation of the ``height * width`` pixels that moves PSF-sized pieces of each ring.

    Rings (``floor(r)``, 1 px wide) are grouped into bands ``piece_px`` wide; a band is cut into
    ``m = max(2, round(2π r_band / piece_px))`` equal sectors in angle, and its sectors are put back
    in a random order other than the identity — the same order for every ring of the band, so a
    piece keeps its radial shape. Within each ring the pixels, taken in angle order sector by
    sector, are re-laid in angle order: a permutation of the ring's own pixels, so each ring's flux
    is kept exactly.

    Returns
    -------
    ndarray of int64, shape (height * width,)
        ``out.ravel() = image.ravel()[perm]``.
    """
    piece = max(float(piece_px), 1.0)
    rings = _ring_geometry(height, width)
    perm = np.arange(height * width, dtype=np.int64)
    n_bands = int(np.floor((len(rings) - 1) / piece)) + 1
    for b in range(n_bands):
        members = [rings[k] for k in range(len(rings)) if int(np.floor(k / piece)) == b]
        if not members:
            continue
        r_mid = max(float(np.mean([r for _, _, r in members])), 0.5)
        m = max(2, round(2 * np.pi * r_mid / piece))
        order = rng.permutation(m)
        if np.all(order == np.arange(m)):
            order = np.roll(order, 1)
        for pix, angle, _ in members:  # pix: the ring's pixels in angle order (the destinations)
            sector = np.floor(angle * m).astype(np.int64)
            rank = np.argsort(order)[sector]  # where each sector goes in the new order
            perm[pix] = pix[np.argsort(rank, kind="stable")]
    return perm


@functools.lru_cache(maxsize=8)
def _ring_geometry(height: int, width: int) -> tuple:
    """Per 1-px ring ``k``: (its pixels sorted by angle, their angle as a fraction of a turn in [0, 1), mean radius)."""
    from .preprocess import radius_grid, ring_index

    rings = ring_index(height, width).ravel()
    yy, xx = np.mgrid[:height, :width]
    angle = (np.arctan2(yy - height // 2, xx - width // 2).ravel() + np.pi) / (2 * np.pi)
    angle = np.minimum(angle, np.nextafter(1.0, 0.0))
    radius = radius_grid(height, width).ravel()
    out = []
    for k in range(int(rings.max()) + 1):
        pix = np.flatnonzero(rings == k)
        pix = pix[np.argsort(angle[pix], kind="stable")]
        out.append((pix, angle[pix], float(radius[pix].mean()) if len(pix) else float(k)))
    return tuple(out)


def shuffle_along_rings(arc: np.ndarray, piece_px: float, rng: np.random.Generator) -> np.ndarray:
    """The arc light of one stamp (C, H, W) with its pieces moved along their rings (all bands alike)."""
    c, h, w = arc.shape
    perm = ring_shuffle_permutation(h, w, piece_px, rng)
    return arc.reshape(c, h * w)[:, perm].reshape(c, h, w).astype(np.float32)


def construct(kind: str, host_ctrl: np.ndarray, donor_stamp: np.ndarray, donor_ctrl: np.ndarray,
              piece_px: float | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
    """One constructed image (C, H, W) float32, nanomaggies; see the module table.

    ``d = donor_stamp − donor_ctrl`` is computed in float32, and the result is ``host_ctrl`` plus
    the kind's part of ``d`` in float32 arithmetic.
    """
    host_ctrl = np.asarray(host_ctrl, np.float32)
    d = np.asarray(donor_stamp, np.float32) - np.asarray(donor_ctrl, np.float32)
    if kind == "swap":
        return host_ctrl + d
    core, arc = split_light(d[None])
    if kind == "core":
        return host_ctrl + core[0]
    if kind == "shuffle":
        if piece_px is None or rng is None:
            raise ValueError("construct: 'shuffle' needs piece_px and rng")
        return host_ctrl + core[0] + shuffle_along_rings(arc[0], piece_px, rng)
    raise ValueError(f"construct: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")


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
    from .splits import unit_hash

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


def _pointer_frame(rows: pd.DataFrame, column: str) -> pd.DataFrame:
    return pd.DataFrame({POINTER_COLUMNS[0]: rows[POINTER_COLUMNS[0]].to_numpy(),
                         POINTER_COLUMNS[1]: rows[POINTER_COLUMNS[1]].to_numpy(np.int64),
                         POINTER_COLUMNS[2]: np.full(len(rows), column, dtype=object)})


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


def constructed_rows(frame: pd.DataFrame, the_plan: Plan, seed: int, *, shuffle_arcsec: float | None = None,
                     progress: bool = False) -> pd.DataFrame:
    """Manifest rows of the planned constructions, each with its image inline (``image_npz``).

    A row copies its host's row (split, lrg_id, ra, dec, observing conditions) with the kind's
    label; a ``swap`` positive takes the donor's injection truth, a negative has none (NaN). The
    pointer columns are null (the image is inline); ``host_source_*`` and ``donor_*`` record where
    the control and the lensed light came from, and ``construction`` the kind.
    """
    import sys

    from tqdm.auto import tqdm

    from .blob_rows import read_blobs
    from .codec import decode_stamps, encode_stamp

    n = len(the_plan.kind)
    hosts = frame.iloc[the_plan.host].reset_index(drop=True)
    donors = frame.iloc[the_plan.donor].reset_index(drop=True)
    need = ["shuffle" == k for k in the_plan.kind]
    pieces = np.full(n, np.nan)
    if any(need):
        need = np.asarray(need)
        pieces[need] = piece_lengths(donors[need], shuffle_arcsec)
    # decode each distinct blob once
    refs = pd.concat([_pointer_frame(hosts, CTRL_COLUMN), _pointer_frame(donors, STAMP_COLUMN),
                      _pointer_frame(donors, CTRL_COLUMN)], ignore_index=True)
    ref_key = (refs[POINTER_COLUMNS[0]].astype(str) + "\0" + refs[POINTER_COLUMNS[1]].astype(str) + "\0"
               + refs[POINTER_COLUMNS[2]].astype(str)).to_numpy()
    _, inverse = np.unique(ref_key, return_inverse=True)
    first = pd.Series(np.arange(len(refs))).groupby(inverse).first().to_numpy()
    wanted = refs.iloc[first]
    images = decode_stamps(read_blobs(wanted), files=wanted[POINTER_COLUMNS[0]].to_numpy(),
                           rows=wanted[POINTER_COLUMNS[1]].to_numpy(), columns=wanted[POINTER_COLUMNS[2]].to_numpy()).images
    host_img, stamp_img, ctrl_img = inverse[:n], inverse[n:2 * n], inverse[2 * n:]
    out_blobs = []
    host_key = (hosts[POINTER_COLUMNS[0]].astype(str) + "/" + hosts[POINTER_COLUMNS[1]].astype(str)).to_numpy()
    donor_key = (donors[POINTER_COLUMNS[0]].astype(str) + "/" + donors[POINTER_COLUMNS[1]].astype(str)).to_numpy()
    for i in tqdm(range(n), desc="hard negatives: build", disable=not progress, file=sys.stderr):
        kind = the_plan.kind[i]
        rng = row_rng(seed, kind, host_key[i], donor_key[i]) if kind == "shuffle" else None
        img = construct(kind, images[host_img[i]], images[stamp_img[i]], images[ctrl_img[i]], pieces[i], rng)
        out_blobs.append(encode_stamp(img, compress=False))
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
    rows[POINTER_COLUMNS[0]] = None
    rows[POINTER_COLUMNS[1]] = pd.array([pd.NA] * n, dtype="Int64")
    rows[POINTER_COLUMNS[2]] = None
    rows[IMAGE_COLUMN] = out_blobs
    return rows


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
    for col in HOST_COLUMNS[:1] + DONOR_COLUMNS[:2]:
        plain[col] = None
    for col in (HOST_COLUMNS[1], DONOR_COLUMNS[2]):
        plain[col] = pd.array([pd.NA] * len(plain), dtype="Int64")
    if IMAGE_COLUMN not in plain:
        plain[IMAGE_COLUMN] = None
    plain[POINTER_COLUMNS[1]] = plain[POINTER_COLUMNS[1]].astype("Int64")
    built[HOST_COLUMNS[1]] = built[HOST_COLUMNS[1]].astype("Int64")
    built[DONOR_COLUMNS[2]] = built[DONOR_COLUMNS[2]].astype("Int64")
    from .splits import sort_rows

    out = sort_rows(pd.concat([plain, built], ignore_index=True))
    counts = {s: {k: int(((built[SPLIT_COLUMN] == s) & (built[KIND_COLUMN] == k)).sum()) for k in kinds}
              for s in splits}
    record = {"kinds": list(kinds), "mix": {k: float(mix.get(k, DEFAULT_MIX[k])) for k in kinds},
              "splits": list(splits), "shuffle_arcsec": shuffle_arcsec,
              "shuffle_piece": "donor " + SHUFFLE_PSF_COLUMN if shuffle_arcsec is None else "fixed",
              "core_split": "perturb.split_core_arc(d, R_CORE_PX)", "counts": counts,
              "n_rows": len(built)}
    return out, record
