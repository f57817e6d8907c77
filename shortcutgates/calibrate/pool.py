"""A cached pool of simulated LRGs, each with its control stamp and one noiseless arc.

Calibrating the gates needs many independent data sets; simulating each from scratch would take
minutes. Instead one pool of LRGs is simulated once per ``(n_lrgs, seed)`` with
:mod:`shortcutgates.simulate` and cached as plain ``.npy`` arrays; every calibration seed then
draws disjoint LRG subsets from it (:mod:`shortcutgates.calibrate.plant`).

Per LRG the pool keeps the control stamp (LRG + field + noise) and the noiseless PSF-convolved
arc of one injection (``stamp - control`` exactly, as the simulator adds the arc to the control).
The arcs are drawn with Einstein radii ``THETA_E_RANGE_ARCSEC`` so that, once tapered out of the
core (:func:`core_taper`), every positive still carries a visible arc: that is the shortcut-free
null. See ``docs/design.md#calibration``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..codec import decode_stamp
from ..io import atomic_directory
from ..preprocess import radius_grid

THETA_E_RANGE_ARCSEC = (1.8, 3.0)
"""Einstein radii of the pool's arcs. Unit: arcsec (6.9–11.5 px)."""
CORE_TAPER_PX = (7.1, 9.1)
"""Arc flux is removed inside the first radius (the 10×10 box's half-diagonal) and kept in full
beyond the second, with a smooth step between. Unit: pixel."""
STAMP_SIZE = 64
POOL_VERSION = 1

META_COLUMNS = (
    "psf_fwhm_used_g", "psf_fwhm_used_r", "psf_fwhm_used_z", "psfsize_r", "psfdepth_r", "ebv",
    "psf_bin", "depth_bin", "lrg_mag_r", "lrg_mag_z", "lrg_redshift", "lrg_reff_arcsec", "lrg_q",
    "theta_e_arcsec", "arc_snr",
)


class Pool(NamedTuple):
    """Simulated LRGs for calibration (arrays may be read-only memory maps)."""

    ctrl: np.ndarray
    """(N, 3, H, W) float32 control stamps (LRG, field, noise). Unit: nanomaggies."""
    arc: np.ndarray
    """(N, 3, H, W) float32 noiseless arcs, untapered. Unit: nanomaggies."""
    meta: pd.DataFrame
    """N rows: observing conditions, LRG truth, ``theta_e_arcsec``, ``arc_snr``, ``arc_phi`` (rad,
    the arc's flux-weighted direction), ``ra``/``dec`` (a grid ≥ 36″ apart, so sky matching gives
    one identity per LRG)."""

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


def _key(n_lrgs: int, seed: int) -> str:
    text = json.dumps({"n": n_lrgs, "seed": seed, "theta_e": THETA_E_RANGE_ARCSEC, "size": STAMP_SIZE,
                       "v": POOL_VERSION})
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def default_cache_dir() -> Path:
    """``$SHORTCUTGATES_CACHE`` or ``~/.cache/shortcutgates``, plus ``calibrate``."""
    root = os.environ.get("SHORTCUTGATES_CACHE") or Path.home() / ".cache" / "shortcutgates"
    return Path(root) / "calibrate"


def simulate_pool(n_lrgs: int, seed: int, progress: bool = False) -> Pool:
    """Simulate ``n_lrgs`` LRGs with one injection each (in memory)."""
    from ..simulate.generator import simulate_frame

    frame = simulate_frame(n_lrgs, seed, stamp_size=STAMP_SIZE, injections_per_lrg=(1, 1), progress=progress,
                           theta_e_range=THETA_E_RANGE_ARCSEC)
    ctrl = np.stack([decode_stamp(b) for b in frame["ctrl_stamp_npz"]])
    arc = np.stack([decode_stamp(b) for b in frame["stamp_npz"]]) - ctrl
    meta = frame[list(META_COLUMNS)].reset_index(drop=True).copy()
    meta["arc_phi"] = arc_direction(arc)
    meta["ra"], meta["dec"] = sky_grid(n_lrgs)
    return Pool(ctrl.astype(np.float32), arc.astype(np.float32), meta)


def load_pool(n_lrgs: int, seed: int, cache_dir=None, progress: bool = False) -> Pool:
    """The pool of ``(n_lrgs, seed)``: read from the cache, or simulated and cached (temp name + rename)."""
    cache = Path(cache_dir or default_cache_dir()) / f"pool-{_key(n_lrgs, seed)}"
    if not (cache / "meta.parquet").exists():
        pool = simulate_pool(n_lrgs, seed, progress)
        try:
            with atomic_directory(cache) as tmp:
                np.save(tmp / "ctrl.npy", pool.ctrl, allow_pickle=False)
                np.save(tmp / "arc.npy", pool.arc, allow_pickle=False)
                pool.meta.to_parquet(tmp / "meta.parquet", index=False)
        except FileExistsError:  # another process finished the same pool first
            pass
    ctrl = np.load(cache / "ctrl.npy", mmap_mode="r", allow_pickle=False)
    arc = np.load(cache / "arc.npy", mmap_mode="r", allow_pickle=False)
    return Pool(ctrl, arc, pd.read_parquet(cache / "meta.parquet"))
