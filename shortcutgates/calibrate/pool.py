"""A cached pool of simulated LRGs, each with its control stamp and one noiseless arc.

Calibrating the gates needs many independent data sets; simulating each from scratch would take
minutes. Instead one pool of LRGs is simulated once per ``(n_lrgs, seed)`` with
:mod:`shortcutgates.simulate` and cached as plain ``.npy`` arrays; every calibration seed then
draws disjoint LRG subsets from it (:mod:`shortcutgates.calibrate.plant`).

Per LRG the pool keeps the control stamp (LRG + field + noise) and the noiseless PSF-convolved
arc of one injection (``stamp - control`` exactly, as the simulator adds the arc to the control).
Two kinds of pool (:data:`POOL_KINDS`):

* ``tapered``: arcs drawn with Einstein radii ``THETA_E_RANGE_ARCSEC`` so that, once tapered out of
  the core (:func:`core_taper`, applied where the stamps are planted), every positive still carries
  a visible arc. Its positives hold no lensed light in the central box: the named **"no core
  signal" null of the data probes**. It is no null for the model gates: a reader blind inside the
  gates' core radius gives their core counterfactuals a value fixed by construction
  (:func:`shortcutgates.calibrate.rates.fixed_by_construction`).
* ``realistic``: the simulator's default lenses (θ_E 0.5–2.5″, SIE + shear counter-images, no
  taper), with the full injection truth of every LRG in ``meta`` (:data:`TRUTH_COLUMNS`): the pool
  of the trained-CNN calibration cells (:mod:`shortcutgates.calibrate.cnn`).

See ``docs/calibration.md``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from shortcutgates.data.codec import decode_stamp
from shortcutgates.data.io import atomic_directory
from shortcutgates.data.schema import INJECTION_TRUTH
from shortcutgates.model.preprocess import radius_grid

THETA_E_RANGE_ARCSEC = (1.8, 3.0)
"""Einstein radii of the pool's arcs. Unit: arcsec (6.9–11.5 px)."""
CORE_TAPER_PX = (7.1, 9.1)
"""Arc flux is removed inside the first radius (the 10×10 box's half-diagonal) and kept in full
beyond the second, with a smooth step between. Unit: pixel."""
STAMP_SIZE = 64
POOL_VERSION = 1
POOL_KINDS = ("tapered", "realistic")
REALISTIC_VERSION = 1
"""Bumped whenever the realistic pool's content changes (its cache key; the tapered key is unchanged)."""

META_COLUMNS = (
    "psf_fwhm_used_g",
    "psf_fwhm_used_r",
    "psf_fwhm_used_z",
    "psfsize_r",
    "psfdepth_r",
    "ebv",
    "psf_bin",
    "depth_bin",
    "lrg_mag_r",
    "lrg_mag_z",
    "lrg_redshift",
    "lrg_reff_arcsec",
    "lrg_q",
    "theta_e_arcsec",
    "arc_snr",
)
TRUTH_COLUMNS = INJECTION_TRUTH
"""Injection truth of a realistic pool's LRGs (the paired input's truth columns, docs/design.md)."""
INJECTION_FIELDS = {"shear_phi_rad": "shear_phi", "src_n": "src_n", "src_q": "src_q", "src_phi_rad": "src_phi"}
"""Truth columns read from the simulator's :class:`~shortcutgates.simulate.population.Injection` where its
paired output does not carry them (column -> field)."""
REPLAY_CHECK = {
    "theta_e_arcsec": "theta_e",
    "src_x_arcsec": "src_x",
    "src_y_arcsec": "src_y",
    "src_reff_arcsec": "src_reff",
    "src_dmag": "dmag",
    "lens_e": "lens_e",
    "lens_phi_rad": "lens_phi",
    "shear": "shear",
}
"""Columns of the simulator's output that a replayed injection must reproduce exactly."""


class Pool(NamedTuple):
    """Simulated LRGs for calibration (arrays may be read-only memory maps)."""

    ctrl: np.ndarray
    """(N, 3, H, W) float32 control stamps (LRG, field, noise). Unit: nanomaggies."""
    arc: np.ndarray
    """(N, 3, H, W) float32 noiseless arcs, untapered. Unit: nanomaggies."""
    meta: pd.DataFrame
    """N rows: observing conditions, LRG truth, ``theta_e_arcsec``, ``arc_snr``, ``arc_phi`` (rad,
    the arc's flux-weighted direction), ``ra``/``dec`` (a grid ≥ 36″ apart, so sky matching gives
    one identity per LRG); a realistic pool also every column of :data:`TRUTH_COLUMNS`."""
    kind: str = "tapered"
    """``tapered`` (arcs are tapered out of the core where planted) or ``realistic`` (untouched)."""

    def __len__(self) -> int:
        return len(self.meta)


def core_taper(size: int = STAMP_SIZE, radii=CORE_TAPER_PX) -> np.ndarray:
    """(size, size) weight: 0 inside ``radii[0]``, 1 beyond ``radii[1]``, a smooth step between."""
    t = np.clip((radius_grid(size, size) - radii[0]) / (radii[1] - radii[0]), 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(np.float32)


def arc_direction(arc: np.ndarray) -> np.ndarray:
    """(N,) flux-weighted direction of each arc's r-band light. Unit: radian, atan2(y, x) convention."""
    size = arc.shape[-1]
    y, x = np.mgrid[:size, :size] - size // 2
    band = np.clip(arc[:, 1], 0, None).astype(np.float64)
    return np.arctan2((band * y).sum((1, 2)), (band * x).sum((1, 2)))


def sky_grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """RA/Dec of ``n`` LRGs on a grid 0.01° (36″) apart. Unit: degree."""
    i = np.arange(n)
    return 100.0 + 0.01 * (i % 1000), -10.0 + 0.01 * (i // 1000)


def _key(n_lrgs: int, seed: int, kind: str = "tapered") -> str:
    if kind == "tapered":  # the key of the pools cached before realistic pools existed
        text = json.dumps(
            {"n": n_lrgs, "seed": seed, "theta_e": THETA_E_RANGE_ARCSEC, "size": STAMP_SIZE, "v": POOL_VERSION}
        )
    else:
        text = json.dumps({"n": n_lrgs, "seed": seed, "kind": kind, "size": STAMP_SIZE, "v": REALISTIC_VERSION})
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def check_kind(kind: str) -> str:
    if kind not in POOL_KINDS:
        raise ValueError(f"calibrate: pool kind must be one of {', '.join(POOL_KINDS)} (got {kind!r})")
    return kind


def default_cache_dir() -> Path:
    """``$SHORTCUTGATES_CACHE`` or ``~/.cache/shortcutgates``, plus ``calibrate``."""
    root = os.environ.get("SHORTCUTGATES_CACHE") or Path.home() / ".cache" / "shortcutgates"
    return Path(root) / "calibrate"


def replayed_injection(seed: int, index: int, stamp_size: int = STAMP_SIZE, cfg=None):
    """The :class:`~shortcutgates.simulate.population.Injection` of LRG ``index`` of a one-injection-per-LRG
    simulation of ``seed``: its random stream replayed draw by draw as
    :func:`shortcutgates.simulate.generator.lrg_rows` consumes it (LRG, conditions, the control's noise,
    the injection count, the injection). Callers check it against the simulated row
    (:data:`REPLAY_CHECK`)."""
    from shortcutgates.simulate.stamps import PSF_RADIUS, coadd_unit_noise
    from shortcutgates.simulate.population import PopulationConfig, draw_conditions, draw_injection, draw_lrg

    rng = np.random.default_rng([seed, 1, index])
    draw_lrg(rng)
    draw_conditions(rng, psf_radius=PSF_RADIUS)
    coadd_unit_noise((3, stamp_size, stamp_size), rng)
    rng.integers(1, 2)
    return draw_injection(rng, cfg or PopulationConfig())


def injection_truth(frame: pd.DataFrame, seed: int, first: int = 0) -> pd.DataFrame:
    """:data:`TRUTH_COLUMNS` of one-injection-per-LRG simulated rows (row ``i`` = LRG ``first + i``).

    Columns the simulator's output lacks (:data:`INJECTION_FIELDS`) are taken from each LRG's replayed
    :class:`Injection`; a replay that does not reproduce the row's own truth raises ``RuntimeError``
    (the simulator's draw order changed), never a silently wrong column.
    """
    out = pd.DataFrame({c: frame[c].to_numpy() for c in TRUTH_COLUMNS if c in frame})
    missing = [c for c in TRUTH_COLUMNS if c not in frame]
    if not missing:
        return out[list(TRUTH_COLUMNS)]
    injections = [replayed_injection(seed, first + i) for i in range(len(frame))]
    for column, field in REPLAY_CHECK.items():
        got = np.array([getattr(inj, field) for inj in injections], np.float64)
        if not np.array_equal(got, frame[column].to_numpy(np.float64)):
            raise RuntimeError(
                f"calibrate: replayed injections differ from the simulated column {column!r} "
                "(shortcutgates.simulate.generator.lrg_rows draws in another order now)"
            )
    for column in missing:
        out[column] = np.array([getattr(inj, INJECTION_FIELDS[column]) for inj in injections], np.float64)
    return out[list(TRUTH_COLUMNS)]


def _options(kind: str) -> dict:
    return {"theta_e_range": THETA_E_RANGE_ARCSEC} if check_kind(kind) == "tapered" else {}


def simulate_chunk(seed: int, first: int, stop: int, kind: str = "tapered") -> Pool:
    """LRGs ``first … stop − 1`` of the pool of ``seed`` (one injection each), as the simulator draws them
    (:func:`shortcutgates.simulate.generator.lrg_rows`: every LRG has its own random stream, so chunks
    concatenate to the whole pool exactly)."""
    from shortcutgates.simulate.generator import lrg_rows
    from shortcutgates.simulate.population import PopulationConfig

    cfg = PopulationConfig(**_options(kind))
    rows = [
        row
        for i in range(first, stop)  # sky position: only the brick name, which the pool drops
        for row in lrg_rows(i, seed, 100.0, -10.0, stamp_size=STAMP_SIZE, n_range=(1, 1), cfg=cfg)
    ]
    frame = pd.DataFrame(rows)
    ctrl = np.stack([decode_stamp(b) for b in frame["ctrl_stamp_npz"]])
    arc = np.stack([decode_stamp(b) for b in frame["stamp_npz"]]) - ctrl
    meta = frame[list(META_COLUMNS)].copy()
    if kind == "realistic":
        truth = injection_truth(frame, seed, first)
        for column in TRUTH_COLUMNS:
            meta[column] = truth[column].to_numpy()
    return Pool(ctrl.astype(np.float32), arc.astype(np.float32), meta, kind)


CHUNK_LRGS = 100


def simulate_pool(n_lrgs: int, seed: int, progress: bool = False, kind: str = "tapered", workers: int = 1) -> Pool:
    """Simulate ``n_lrgs`` LRGs with one injection each (in memory), in chunks of :data:`CHUNK_LRGS` over
    ``workers`` processes; the result does not depend on ``workers``."""
    from concurrent.futures import ProcessPoolExecutor

    from tqdm.auto import tqdm

    check_kind(kind)
    starts = list(range(0, n_lrgs, CHUNK_LRGS))
    args = [(seed, a, min(a + CHUNK_LRGS, n_lrgs), kind) for a in starts]
    chunks = []
    with tqdm(total=len(args), desc=f"simulate {kind} pool", unit="chunk", disable=not progress) as bar:
        if workers > 1:
            with ProcessPoolExecutor(workers) as ex:
                for future in [ex.submit(simulate_chunk, *a) for a in args]:
                    chunks.append(future.result())
                    bar.update(1)
        else:
            for a in args:
                chunks.append(simulate_chunk(*a))
                bar.update(1)
    meta = pd.concat([c.meta for c in chunks], ignore_index=True)
    arc = np.concatenate([c.arc for c in chunks])
    meta["arc_phi"] = arc_direction(arc)
    meta["ra"], meta["dec"] = sky_grid(n_lrgs)
    return Pool(np.concatenate([c.ctrl for c in chunks]), arc, meta, kind)


def load_pool(
    n_lrgs: int, seed: int, cache_dir=None, progress: bool = False, kind: str = "tapered", workers: int = 1
) -> Pool:
    """The ``kind`` pool of ``(n_lrgs, seed)``: read from the cache, or simulated (``workers`` processes)
    and cached (temp name + rename)."""
    name = f"pool-{_key(n_lrgs, seed, check_kind(kind))}"
    cache = Path(cache_dir or default_cache_dir()) / name
    if not (cache / "meta.parquet").exists():
        pool = simulate_pool(n_lrgs, seed, progress, kind, workers)
        try:
            with atomic_directory(cache) as tmp:
                np.save(tmp / "ctrl.npy", pool.ctrl, allow_pickle=False)
                np.save(tmp / "arc.npy", pool.arc, allow_pickle=False)
                pool.meta.to_parquet(tmp / "meta.parquet", index=False)
        except FileExistsError:  # another process finished the same pool first
            pass
    ctrl = np.load(cache / "ctrl.npy", mmap_mode="r", allow_pickle=False)
    arc = np.load(cache / "arc.npy", mmap_mode="r", allow_pickle=False)
    return Pool(ctrl, arc, pd.read_parquet(cache / "meta.parquet"), kind)
