"""Planted problems of graded strength, drawn from the pool, written as manifests.

A *problem* turns pool LRGs into labelled rows; its ``strength`` is 0 for clean data and grows
towards survey strength:

* ``core``: counter-image flux. A positive is ``control + arc · taper`` (the arc with its light
  inside the 10×10 box removed, :func:`~shortcutgates.calibrate.pool.core_taper`) plus a
  PSF-shaped point source 1–2.5 px from the centre, opposite the arc, carrying ``strength`` times
  the arc's flux in each band. Survey strength is the value that gives a paired raw core-LR AUC
  of about 0.93, as the survey's own paired data do (``docs/calibration.md``).
* ``smd``: property imbalance in seeing. Every PSF column of the negatives (``psfsize_r`` and
  ``psf_fwhm_used_{g,r,z}``, correlated 0.95–1.0 in the simulator) is shifted by ``strength``
  pool standard deviations of that column, so each has population |SMD| ``strength`` and their
  correlations stay intact (images untouched: only the metadata are imbalanced).
* ``leak``: leaked-LRG fraction. That fraction of the positives' LRGs also give their control as a
  negative (replacing negatives, so class sizes stay).
* ``dup``: duplicated rows. That fraction of the positive rows is listed twice.
* ``faint``: arcs too faint to find. Every positive's arc loses that fraction of its flux (0: the
  pool's arcs; 1: no arc at all) — the problem the sanity gate ``arc_annulus_lr_auc`` is there for.
* ``mag`` / ``size``: LRG magnitude (``lrg_mag_r``) or size (``lrg_reff_arcsec``) imbalance by
  selection, images untouched: positives are drawn with weight ``exp(−strength/2 · z)`` and
  negatives with ``exp(+strength/2 · z)`` (``z`` the pool-standardised property, clipped to ±3), so
  a Gaussian property gets population SMD ``strength`` (positives brighter / larger). The manifests
  of these cells are in survey format: no LRG truth columns (no magnitude, size or redshift), only
  what the builder measures from the controls (:data:`shortcutgates.data.build.ALWAYS_MEASURED`).

Each seed draws disjoint LRGs from the pool without replacement (positives and negatives from
different LRGs, as in unpaired data).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from shortcutgates.data.lrg_properties import ALWAYS_MEASURED, measure_lrgs
from shortcutgates.data.codec import encode_stamp
from shortcutgates.data.io import write_parquet_atomic
from shortcutgates.data.schema import LRG_TRUTH, PIXEL_SCALE_ARCSEC
from shortcutgates.calibrate.pool import TRUTH_COLUMNS, Pool, core_taper

PROBLEMS = ("core", "smd", "leak", "dup", "faint", "mag", "size")
TILTED = {"mag": "lrg_mag_r", "size": "lrg_reff_arcsec"}
"""The pool property each selection problem tilts."""
PROPERTY_COLUMNS = (
    "psf_fwhm_used_g",
    "psf_fwhm_used_r",
    "psf_fwhm_used_z",
    "psfsize_r",
    "psfdepth_r",
    "ebv",
    "lrg_mag_r",
    "lrg_mag_z",
    "lrg_redshift",
    "lrg_reff_arcsec",
    "lrg_q",
)
"""Columns the manifests carry (observing conditions, LRG truth)."""
SHIFTED_PROPERTIES = ("psfsize_r", "psf_fwhm_used_g", "psf_fwhm_used_r", "psf_fwhm_used_z")


def psf_sources(meta: pd.DataFrame, flux: np.ndarray, x0: np.ndarray, y0: np.ndarray, shape) -> np.ndarray:
    """(N, 3, H, W) Gaussian point sources of the rows' ``psf_fwhm_used_{g,r,z}`` at offsets ``(x0, y0)``
    (pixel, from pixel (H//2, W//2)), each band carrying ``flux[:, band]`` (nanomaggies)."""
    h, w = shape
    y, x = np.mgrid[:h, :w] - h // 2
    d2 = (x[None] - np.asarray(x0)[:, None, None]) ** 2 + (y[None] - np.asarray(y0)[:, None, None]) ** 2  # (N, H, W)
    out = np.empty((len(meta), 3, h, w), np.float32)
    for b, band in enumerate("grz"):
        sigma = meta[f"psf_fwhm_used_{band}"].to_numpy() / 2.355 / PIXEL_SCALE_ARCSEC
        psf = np.exp(-0.5 * d2 / sigma[:, None, None] ** 2)
        psf /= psf.sum(axis=(1, 2), keepdims=True)
        out[:, b] = flux[:, b, None, None] * psf
    return out


def counter_images(meta: pd.DataFrame, arc: np.ndarray, strength, rng: np.random.Generator) -> np.ndarray:
    """(N, 3, H, W) PSF-shaped point sources opposite each arc, ``strength`` (scalar or (N,)) × the arc's flux per band.

    Offsets 1–2.5 px from the centre (uniform); Gaussian PSF of each row's ``psf_fwhm_used_{g,r,z}``.
    """
    r0 = rng.uniform(1.0, 2.5, len(arc))
    phi = meta["arc_phi"].to_numpy() + np.pi
    flux = arc.sum(axis=(2, 3), dtype=np.float64) * np.reshape(np.asarray(strength, np.float64), (-1, 1))  # (N, 3)
    return psf_sources(meta, flux, r0 * np.cos(phi), r0 * np.sin(phi), arc.shape[-2:])


def positive_stamps(pool: Pool, index: np.ndarray, core, rng: np.random.Generator, dim: float = 0.0) -> np.ndarray:
    """(N, 3, H, W) stamps of pool LRGs ``index``: control + arc with ``1 − dim`` of its flux, tapered
    out of the core in a ``tapered`` pool, whole in a ``realistic`` one (+ a counter-image of ``core`` ×
    the undimmed arc's flux where ``core`` > 0; a scalar or (N,))."""
    index = np.asarray(index)
    arc = np.asarray(pool.arc[index], np.float32)
    taper = core_taper(arc.shape[-1]) if pool.kind == "tapered" else np.float32(1.0)
    stamps = np.asarray(pool.ctrl[index], np.float32) + arc * taper * np.float32(1.0 - dim)
    if np.any(np.asarray(core) > 0):
        stamps += counter_images(pool.meta.iloc[index].reset_index(drop=True), arc, core, rng)
    return stamps


def draw_lrgs(n_pool: int, n: int, rng: np.random.Generator, exclude=()) -> np.ndarray:
    """``n`` distinct pool indices, none in ``exclude``."""
    free = np.setdiff1d(np.arange(n_pool), np.asarray(exclude, int))
    if n > len(free):
        raise ValueError(f"calibrate: the pool has {len(free)} free LRGs, {n} needed (raise --pool)")
    return rng.choice(free, n, replace=False)


def tilt_weights(pool: Pool, column: str, t: float) -> np.ndarray:
    """(N,) acceptance probabilities ``exp(t · z − |t| · 3)`` of every pool LRG, ``z`` its standardised
    ``column`` clipped to ±3: accepting with them tilts a Gaussian property's mean by ``t`` SDs."""
    values = pool.meta[column].to_numpy(np.float64)
    z = np.clip((values - values.mean()) / values.std(), -3, 3)
    return np.exp(t * z - abs(t) * 3)


def draw_tilted(pool: Pool, n: int, accept: np.ndarray, rng: np.random.Generator, exclude=()) -> np.ndarray:
    """``n`` distinct pool indices (none in ``exclude``), each candidate kept with probability ``accept``."""
    free = np.setdiff1d(np.arange(len(pool)), np.asarray(exclude, int))
    order = free[rng.permutation(len(free))]
    kept = order[rng.random(len(order)) < accept[order]]
    if len(kept) < n:
        raise ValueError(f"calibrate: the pool gives {len(kept)} LRGs under the tilt, {n} needed (raise --pool)")
    return kept[:n]


def measured_columns(pool: Pool, index) -> pd.DataFrame:
    """What ``shortcutgates build`` measures from each LRG's control (:data:`ALWAYS_MEASURED`)."""
    return measure_lrgs(np.asarray(pool.ctrl[np.asarray(index)], np.float32))[list(ALWAYS_MEASURED)]


def _rows(pool: Pool, index, images, label: int, split: str) -> pd.DataFrame:
    meta = pool.meta.iloc[np.asarray(index)].reset_index(drop=True)
    frame = meta[["ra", "dec", *PROPERTY_COLUMNS]].copy()
    frame[list(ALWAYS_MEASURED)] = measured_columns(pool, index).to_numpy()
    frame.insert(0, "label", np.int8(label))
    frame.insert(0, "split", split)
    frame["lrg_id"] = [f"P{i:06d}" for i in index]
    frame["theta_e_arcsec"] = meta["theta_e_arcsec"].to_numpy() if label == 1 else np.nan
    for column in TRUTH_COLUMNS[1:] if pool.kind == "realistic" else ():  # the injection truth, on positives
        frame[column] = meta[column].to_numpy() if label == 1 else np.nan
    frame["image_npz"] = [encode_stamp(im, compress=False) for im in images]  # stored: 10x faster to write
    return frame


def split_rows(
    pool: Pool,
    n_lrgs: int,
    split: str,
    rng: np.random.Generator,
    *,
    problem: str = "core",
    strength: float = 0.0,
    core: float = 0.0,
    paired: bool = False,
    exclude=(),
) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows of one split of ``n_lrgs`` LRGs with a planted problem; returns (rows, LRGs used).

    Unpaired: half the LRGs give a positive, the other half a negative. Paired: every LRG gives
    both (a ``test_paired`` split). ``core`` is the counter-image strength of every positive (the
    ``core`` problem's ``strength`` adds to it).
    """
    if problem not in PROBLEMS:
        raise ValueError(f"calibrate: problem must be one of {', '.join(PROBLEMS)} (got {problem!r})")
    core = core + (strength if problem == "core" else 0.0)
    if problem in TILTED and not paired:
        pos = draw_tilted(pool, n_lrgs // 2, tilt_weights(pool, TILTED[problem], -strength / 2), rng, exclude)
        neg = draw_tilted(
            pool,
            n_lrgs - n_lrgs // 2,
            tilt_weights(pool, TILTED[problem], strength / 2),
            rng,
            np.concatenate([np.asarray(exclude, int), pos]),
        )
        lrgs = np.concatenate([pos, neg])
    else:
        lrgs = draw_lrgs(len(pool), n_lrgs, rng, exclude)
        pos, neg = (lrgs, lrgs) if paired else (lrgs[: n_lrgs // 2], lrgs[n_lrgs // 2 :])
    if problem == "leak" and strength > 0:
        k = int(round(strength * len(pos)))
        neg = np.concatenate([pos[:k], neg[k:]])
    dim = strength if problem == "faint" else 0.0
    rows = [
        _rows(pool, pos, positive_stamps(pool, pos, core, rng, dim), 1, split),
        _rows(pool, neg, np.asarray(pool.ctrl[neg], np.float32), 0, split),
    ]
    if problem == "dup" and strength > 0:
        k = int(round(strength * len(pos)))
        rows.append(rows[0].iloc[:k])
    frame = pd.concat(rows, ignore_index=True)
    if problem in TILTED:  # survey format: no LRG photometry columns
        frame = frame.drop(columns=[c for c in LRG_TRUTH if c in frame])
    if problem == "smd" and strength:
        for column in SHIFTED_PROPERTIES:
            frame.loc[frame["label"] == 0, column] += strength * float(pool.meta[column].std())
    return frame, lrgs


def write_manifest(frame: pd.DataFrame, directory) -> Path:
    """Write rows as a hand-written manifest (one parquet file)."""
    directory = Path(directory)
    write_parquet_atomic(frame, directory / "part-0000.parquet")
    return directory


def builder_roles(pool: Pool, seed: int, fractions=(0.7, 0.15, 0.15)) -> tuple[np.ndarray, np.ndarray]:
    """(N,) split and role (``pos``/``neg``/``pair``) the unpaired builder gives every pool LRG at
    ``seed``: the same keyed hashes of the sky-matched ``lrg_id`` (pool LRGs lie 36″ apart, each its
    own identity), so a planted problem can be confined to chosen splits of a built manifest."""
    from shortcutgates.data.identity import format_lrg_id
    from shortcutgates.data.splits import SplitParams, hash_splits, lrg_roles, split_fractions

    ids = format_lrg_id(pool.meta["ra"].to_numpy(), pool.meta["dec"].to_numpy()).astype(object)
    params = SplitParams("unpaired", int(seed), tuple(fractions))
    split = hash_splits(ids, int(seed), split_fractions(fractions, "unpaired")[0])
    return lrg_roles(ids, split, params)


def planted_in(split: np.ndarray, role: np.ndarray, where: tuple) -> np.ndarray:
    """(N,) bool: LRGs whose positive lies in one of the splits ``where`` (all when empty) of a built
    manifest; ``test``'s positives are the ``test_paired`` pairs' (``schema.SHARED_POSITIVE_SPLITS``)."""
    if not where:
        return np.ones(len(split), bool)
    return np.isin(split, list(where)) | (("test" in where) & (np.asarray(role) == "pair"))


def built_selection(
    pool: Pool, n_lrgs: int, seed: int, rng: np.random.Generator, *, problem: str, strength: float, where: tuple = ()
) -> np.ndarray:
    """``n_lrgs`` pool indices for a built (unpaired) manifest; for ``mag``/``size`` the positives and
    negatives of the splits in ``where`` (all when empty) are drawn tilted as in :func:`split_rows`."""
    if problem not in TILTED or not strength:
        return rng.choice(len(pool), n_lrgs, replace=False)
    split, role = builder_roles(pool, seed)
    target = planted_in(split, role, where)
    accept = np.ones(len(pool))
    pos = target & (
        (role == "pos") | ((role == "pair") & (not where or "test" in where))
    )  # test's positives: the pairs'
    accept[pos] = tilt_weights(pool, TILTED[problem], -strength / 2)[pos]
    accept[target & (role == "neg")] = tilt_weights(pool, TILTED[problem], strength / 2)[target & (role == "neg")]
    return draw_tilted(pool, n_lrgs, accept, rng)
