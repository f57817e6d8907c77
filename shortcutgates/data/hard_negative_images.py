"""The images of ``build --hard-negatives``: donors' lensed light split and put onto hosts' controls.

:mod:`shortcutgates.data.hard_negatives` chooses the rows (:func:`~shortcutgates.data.hard_negatives.plan`);
this module makes their images: it decodes each donor pair and host control once, splits each
donor's ``d = stamp − ctrl`` into core and arc light once (:func:`split_light`), and composes and
encodes one image per planned row (:func:`compose`). Every row is computed on its own (its
randomness keyed by :func:`row_rng`), so the bytes do not depend on how the donors are batched or on
the threads that process the batches (:data:`SPLIT_BATCH`).
"""

from __future__ import annotations

import hashlib
import sys
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd

from shortcutgates.data.ring_shuffle import shuffle_along_rings
from shortcutgates.data.schema import CTRL_COLUMN, PIXEL_SCALE_ARCSEC, POINTER_COLUMNS, STAMP_COLUMN

if TYPE_CHECKING:
    from shortcutgates.data.hard_negatives import Plan

KINDS: tuple[str, ...] = ("core", "shuffle", "swap")
"""Construction kinds of ``--hard-negatives`` (the interface names)."""
SHUFFLE_PSF_COLUMN = "psf_fwhm_used_r"
"""Donor column giving the PSF FWHM (arcsec) that sets the shuffle's piece length."""
CORE_SPLIT_COLUMN = "core_split"
"""How a constructed row's core light was split from its donor's ``d`` (:func:`split_light`): ``lensing``,
``lensing; undecidable for the gates: <reason>``, or ``radius 5 px: <reason>`` (no lensing truth); null for
``swap``, which takes all of ``d``."""


def donor_psf_fwhm(donors: pd.DataFrame) -> np.ndarray:
    """(N, 3) per-band PSF FWHM (arcsec) of donor rows from ``psf_fwhm_used_g/r/z``; NaN where absent."""
    from shortcutgates.gates.perturb import PSF_COLUMNS

    return np.column_stack(
        [
            pd.to_numeric(donors[c], errors="coerce").to_numpy(np.float64)
            if c in donors
            else np.full(len(donors), np.nan)
            for c in PSF_COLUMNS
        ]
    )


def split_light(
    d: np.ndarray, truth: pd.DataFrame | None = None, psf_fwhm_arcsec: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
        method[lens] = [
            "lensing" if ok else f"lensing; undecidable for the gates: {why}" for ok, why in zip(s.decidable, s.reason)
        ]
    return core, arc, method


def compose(
    kind: str,
    host_ctrl: np.ndarray,
    d: np.ndarray,
    core: np.ndarray | None = None,
    arc: np.ndarray | None = None,
    piece_px: float | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
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


def construct(
    kind: str,
    host_ctrl: np.ndarray,
    donor_stamp: np.ndarray,
    donor_ctrl: np.ndarray,
    piece_px: float | None = None,
    rng: np.random.Generator | None = None,
    *,
    truth: pd.DataFrame | None = None,
    psf_fwhm_arcsec: np.ndarray | None = None,
) -> np.ndarray:
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


def piece_lengths(donors: pd.DataFrame, shuffle_arcsec: float | None) -> np.ndarray:
    """Shuffle piece length per donor row (pixels): ``shuffle_arcsec``, else the donor's PSF FWHM."""
    if shuffle_arcsec is not None:
        return np.full(len(donors), float(shuffle_arcsec) / PIXEL_SCALE_ARCSEC)
    if SHUFFLE_PSF_COLUMN not in donors:
        raise ValueError(
            f"--hard-negatives shuffle: the input has no {SHUFFLE_PSF_COLUMN} column (PSF FWHM, arcsec); "
            "give the piece length with --shuffle-arcsec"
        )
    fwhm = pd.to_numeric(donors[SHUFFLE_PSF_COLUMN], errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(fwhm) | (fwhm <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"--hard-negatives shuffle: {donors[POINTER_COLUMNS[0]].iloc[i]} row "
            f"{int(donors[POINTER_COLUMNS[1]].iloc[i])} column {SHUFFLE_PSF_COLUMN}: PSF FWHM must be a "
            f"positive number (got {fwhm[i]!r}); or give --shuffle-arcsec"
        )
    return fwhm / PIXEL_SCALE_ARCSEC


DONOR_CHUNK = 2048
"""Distinct donors whose pairs are decoded and split at a time (bounds the build's memory: a chunk's
stamps, controls, ``d`` and its split, about 5 × 48 KB per 64 × 64 donor)."""


def _decode(refs: pd.DataFrame, column: str, shape: tuple | None = None) -> np.ndarray:
    """(N, 3, H, W) float32 images of pointer rows (``source_path``, ``source_row``), column ``column``;
    ``shape``: the (H, W) every blob must have (default: the first one's)."""
    from shortcutgates.data.blob_rows import read_blobs
    from shortcutgates.data.codec import decode_stamps

    return decode_stamps(
        read_blobs(refs, column=column),
        files=refs[POINTER_COLUMNS[0]].to_numpy(),
        rows=refs[POINTER_COLUMNS[1]].to_numpy(),
        columns=column,
        shape=shape,
    ).images


def _controls(refs: pd.DataFrame, known: dict) -> np.ndarray:
    """(N, 3, H, W) float32 controls of pointer rows: those in ``known`` (``(source_path, source_row)`` ->
    image) copied, the rest decoded (:func:`_decode`, one pass over each file's control column)."""
    keys = list(zip(refs[POINTER_COLUMNS[0]].tolist(), refs[POINTER_COLUMNS[1]].astype(np.int64).tolist()))
    hit = np.array([k in known for k in keys], bool)
    if not hit.any():
        return _decode(refs, CTRL_COLUMN)
    shape = known[keys[int(np.argmax(hit))]].shape
    out = np.empty((len(refs),) + shape, np.float32)
    for i in np.flatnonzero(hit):
        out[i] = known[keys[i]]
    miss = np.flatnonzero(~hit)
    if len(miss):
        out[miss] = _decode(refs.iloc[miss], CTRL_COLUMN, shape=shape[-2:])
    return out


def _row_keys(rows: pd.DataFrame) -> np.ndarray:
    return (rows[POINTER_COLUMNS[0]].astype(str) + "/" + rows[POINTER_COLUMNS[1]].astype(str)).to_numpy()


SPLIT_BATCH = 32
"""Donors per task of :func:`_build_chunk`'s threads: a task splits its donors' light in one batch
(:func:`split_light`) and composes and encodes the rows they give, while the other threads do the
same for other donors (the split's numpy work releases the GIL)."""


def _build_chunk(
    frame: pd.DataFrame,
    the_plan: Plan,
    todo: np.ndarray,
    pieces: np.ndarray,
    seed: int,
    blobs: list,
    method: np.ndarray,
    controls: dict | None = None,
) -> None:
    """Images of the planned rows ``todo`` (whose donors fit one chunk), encoded into ``blobs[todo]``.

    Each distinct donor pair and host control is decoded once (one pass over each file's columns), a
    control found in ``controls`` (by pointer; decoded before to measure the LRGs) not at all;
    then the donors, :data:`SPLIT_BATCH` at a time on threads (:func:`~shortcutgates.parallel.thread_map`),
    are split (those that give core light, in one batch) and their rows composed and encoded;
    ``method[todo]`` gets the split's record.
    """
    from shortcutgates.parallel import thread_map

    donor_pos, donor_of = np.unique(the_plan.donor[todo], return_inverse=True)
    host_pos, host_of = np.unique(the_plan.host[todo], return_inverse=True)
    donors, hosts = frame.iloc[donor_pos], frame.iloc[host_pos]
    ctrls = _controls(pd.concat([donors, hosts]), controls or {})
    d = _decode(donors, STAMP_COLUMN) - ctrls[: len(donors)]
    keys = the_plan.row_key if the_plan.row_key is not None else _row_keys(frame)
    parts = _Parts(
        the_plan.kind[todo],
        donor_of,
        host_of,
        d,
        ctrls[len(donors) :],
        donor_psf_fwhm(donors),
        donors,
        keys[host_pos],
        keys[donor_pos],
    )
    batch_of = donor_of // SPLIT_BATCH
    order = np.argsort(batch_of, kind="stable")
    bounds = np.searchsorted(batch_of[order], np.arange(batch_of.max(initial=-1) + 2))
    batches = [order[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]

    def work(rows: np.ndarray) -> None:
        for j, blob, how in zip(rows, *_compose_rows(parts, rows, pieces[todo[rows]], seed)):
            blobs[todo[j]] = blob
            method[todo[j]] = how

    thread_map(work, batches)


class _Parts(NamedTuple):
    """The decoded material of a chunk (:func:`_build_chunk`); rows index ``kind``, ``donor_of``, ``host_of``."""

    kind: np.ndarray
    donor_of: np.ndarray
    host_of: np.ndarray
    d: np.ndarray
    """(n_donors, C, H, W) float32 lensed light of the chunk's distinct donors."""
    host_ctrl: np.ndarray
    """(n_hosts, C, H, W) float32 controls of its distinct hosts."""
    fwhm: np.ndarray
    """(n_donors, C) PSF FWHM (arcsec) of the donors (:func:`donor_psf_fwhm`)."""
    donors: pd.DataFrame
    host_key: np.ndarray
    donor_key: np.ndarray


def _compose_rows(parts: _Parts, rows: np.ndarray, pieces: np.ndarray, seed: int) -> tuple[list, list]:
    """``(blobs, methods)`` of chunk rows ``rows``: their donors split in one batch, each row composed and encoded."""
    from shortcutgates.data.codec import encode_stamp

    kinds, donor_of = parts.kind[rows], parts.donor_of[rows]
    needs = np.unique(donor_of[kinds != "swap"])
    split_of = dict(zip(needs.tolist(), range(len(needs))))
    core, arc, how = split_light(parts.d[needs], parts.donors.iloc[needs], parts.fwhm[needs])
    blobs, methods = [], []
    for kind, s, h, piece in zip(kinds, donor_of, parts.host_of[rows], pieces):
        k = split_of.get(int(s), -1)
        rng = row_rng(seed, kind, parts.host_key[h], parts.donor_key[s]) if kind == "shuffle" else None
        img = compose(
            kind, parts.host_ctrl[h], parts.d[s], core[k] if k >= 0 else None, arc[k] if k >= 0 else None, piece, rng
        )
        blobs.append(encode_stamp(img, compress=False))
        methods.append(how[k] if k >= 0 else None)
    return blobs, methods


def constructed_images(
    frame: pd.DataFrame,
    the_plan: Plan,
    seed: int,
    *,
    shuffle_arcsec: float | None = None,
    progress: bool = False,
    controls: dict | None = None,
) -> tuple[list, np.ndarray]:
    """The encoded image (uncompressed npz) and the core-split record (:data:`CORE_SPLIT_COLUMN`) of every
    planned row, in plan order; donors are processed :data:`DONOR_CHUNK` at a time. ``controls``:
    ``(source_path, source_row)`` -> decoded control (3, H, W) float32 of rows decoded before (the
    build's LRG measurement: the hosts' very rows), taken instead of decoding them again."""
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
            _build_chunk(frame, the_plan, by_donor[a:b], pieces, seed, blobs, method, controls)
            bar.update(int(b - a))
    return blobs, method
