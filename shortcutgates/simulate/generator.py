"""Paired rows (LRG + arc, LRG alone) in the paired input format (docs/design.md#paired-input-format), and writing them to parquet.

Per LRG: draw its light and observing conditions, render it (adaptive supersampling, per-band
Moffat PSF), add sky and photon noise once -> the control. Per injection (2–18 per LRG): trace
an SIE + shear lens, render the source once for all bands, convolve per band and add the
noiseless arc to that same control -> the stamp. The source is a Sérsic (optionally clumpy)
or a real galaxy image from a source library (``sources=``; :mod:`.sources`). Every LRG has its
own random stream ``default_rng([seed, 1, index])``, so results do not depend on chunking or file
layout.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from shortcutgates.data.codec import encode_stamp
from shortcutgates.data.io import atomic_directory, write_parquet_atomic
from shortcutgates.data.schema import INJECTION_TRUTH, PIXEL_SCALE_ARCSEC, REGION_SPLIT_COLUMN, SPLITS
from shortcutgates.simulate.field import draw_field, field_rng, render_field
from shortcutgates.simulate.population import (
    LRG,
    Conditions,
    Injection,
    PopulationConfig,
    brickname,
    condition_columns,
    draw_conditions,
    draw_injection,
    draw_lrg,
    draw_lrg_structure,
    lrg_structure_rng,
    sky_positions,
)
from shortcutgates.simulate.sources import draw_pick, load_library, place, source_rng
from shortcutgates.simulate.stamps import (
    PSF_RADIUS,
    add_noise,
    arc_snr,
    lrg_centre,
    noise_variance,
    render_arc,
    render_lrg,
)

SPLIT_FRACTIONS = (0.70, 0.15, 0.15)


def lrg_rows(
    index: int, seed: int, ra: float, dec: float, *, stamp_size: int, n_range: tuple[int, int], cfg: PopulationConfig
) -> list[dict]:
    """All rows (one per injection) of LRG ``index``; they share one control blob."""
    rng = np.random.default_rng([seed, 1, index])
    lrg = draw_lrg(rng)
    cond = draw_conditions(rng, psf_radius=PSF_RADIUS)
    structure = draw_lrg_structure(lrg_structure_rng(seed, index), lrg) if cfg.lrg_structure else None
    clean = render_lrg(lrg, cond, stamp_size, structure)
    if cfg.field:
        half_width = (stamp_size / 2 + PSF_RADIUS) * PIXEL_SCALE_ARCSEC
        objs = draw_field(field_rng(seed, index), lrg.mag_r, lrg.reff_arcsec, half_width)
        clean = clean + render_field(objs, cond.psf, stamp_size, PSF_RADIUS, lrg_centre(lrg, stamp_size))
    ctrl = add_noise(clean, cond, rng)
    var_r = noise_variance(clean, cond)[1]
    shared = _lrg_columns(index, ra, dec, lrg, cond, encode_stamp(ctrl))
    rows = []
    library = None if cfg.sources == "sersic" else load_library(cfg.sources)
    pick_rng = source_rng(seed, index)
    for _ in range(int(rng.integers(n_range[0], n_range[1] + 1))):
        inj, pixel_source = _draw_source(rng, pick_rng, cfg, library)
        arc, mu = render_arc(inj, lrg.mag_r, cond, stamp_size, lrg_centre(lrg, stamp_size), pixel_source)
        rows.append(
            {
                **shared,
                "stamp_npz": encode_stamp(ctrl + arc),
                **_injection_columns(inj, library is None),
                "arc_snr": arc_snr(arc[1], var_r, cond.sky_sigma[1]),
                "magnification": mu,
            }
        )
    return rows


def _lrg_columns(index: int, ra: float, dec: float, lrg: LRG, cond: Conditions, ctrl_blob: bytes) -> dict:
    """The columns every row of LRG ``index`` shares: position, control blob, conditions, LRG truth."""
    return {
        "ra": float(ra),
        "dec": float(dec),
        "ctrl_stamp_npz": ctrl_blob,
        **condition_columns(cond),
        "brickname": brickname(ra, dec),
        "task_id": np.int32(index),
        "cutout_ok": np.int32(1),
        "lrg_mag_r": lrg.mag_r,
        "lrg_mag_z": lrg.mag_z,
        "lrg_redshift": lrg.redshift,
        "lrg_reff_arcsec": lrg.reff_arcsec,
        "lrg_q": lrg.q,
    }


def _draw_source(rng: np.random.Generator, pick_rng: np.random.Generator, cfg: PopulationConfig, library):
    """The next injection and, with a source ``library``, its placed galaxy (None: the Sérsic source)."""
    inj = draw_injection(rng, cfg)
    if library is None:
        return inj, None
    pick, flip = draw_pick(pick_rng, len(library))
    if cfg.source_size == "native":
        inj = inj._replace(src_reff=float(library.r_eff[pick]))
    return inj, place(library, pick, r_eff=inj.src_reff, x=inj.src_x, y=inj.src_y, phi=inj.src_phi, flip=flip)


def _injection_columns(inj: Injection, sersic: bool) -> dict:
    """The truth columns of one injection (``sersic`` False: a library galaxy, whose index and axis ratio
    are unknown, NaN)."""
    return {
        "theta_e_arcsec": inj.theta_e,
        "src_x_arcsec": inj.src_x,
        "src_y_arcsec": inj.src_y,
        "src_reff_arcsec": inj.src_reff,
        "src_dmag": inj.dmag,
        "lens_e": inj.lens_e,
        "lens_phi_rad": inj.lens_phi,
        "shear": inj.shear,
        "shear_phi_rad": inj.shear_phi,
        "src_n": inj.src_n if sersic else np.nan,
        "src_q": inj.src_q if sersic else np.nan,
        "src_phi_rad": inj.src_phi,
    }


def split_assignment(n_lrgs: int, seed: int, fractions=SPLIT_FRACTIONS) -> np.ndarray:
    """Split name per LRG index: a seeded permutation cut at the cumulative fractions."""
    order = np.random.default_rng([seed, 2]).permutation(n_lrgs)
    cuts = np.round(np.cumsum(fractions)[:-1] * n_lrgs).astype(int)
    names = np.empty(n_lrgs, dtype=object)
    for name, idx in zip(SPLITS, np.split(order, cuts)):
        names[idx] = name
    return names


COLUMNS: tuple[str, ...] = (
    "ra",
    "dec",
    "stamp_npz",
    "ctrl_stamp_npz",
    *INJECTION_TRUTH,
    "psf_fwhm_used_g",
    "psf_fwhm_used_r",
    "psf_fwhm_used_z",
    "psfsize_r",
    "psfdepth_r",
    "ebv",
    "psf_bin",
    "depth_bin",
    "brickname",
    "task_id",
    "cutout_ok",
    "lrg_mag_r",
    "lrg_mag_z",
    "lrg_redshift",
    "lrg_reff_arcsec",
    "lrg_q",
)
"""Column order of the simulator's output (docs/design.md#paired-input-format plus LRG truth)."""


def _check_args(n_lrgs, stamp_size, injections_per_lrg):
    if int(n_lrgs) < 1:
        raise ValueError(f"simulate: 'n_lrgs' must be >= 1 (got {n_lrgs})")
    if int(stamp_size) < 2 * 16 or int(stamp_size) % 2:
        raise ValueError(f"simulate: 'stamp_size' must be an even number >= 32 (got {stamp_size})")
    lo, hi = injections_per_lrg
    if not 1 <= int(lo) <= int(hi):
        raise ValueError(
            f"simulate: 'injections_per_lrg' must be (lo, hi) with 1 <= lo <= hi (got {injections_per_lrg})"
        )
    return int(n_lrgs), int(stamp_size), (int(lo), int(hi))


def _progress(total, enabled, desc):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="LRG", file=sys.stderr, disable=not (enabled and sys.stderr.isatty()))


def _frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(COLUMNS) + [REGION_SPLIT_COLUMN])
    for col in ("psf_bin", "depth_bin", "task_id", "cutout_ok"):
        frame[col] = frame[col].astype(np.int32)
    return frame


METADATA_KEY = "shortcutgates.simulate"
"""Key of the simulation's settings in every written parquet file's schema metadata (JSON)."""


def simulation_metadata(n_lrgs, seed, *, stamp_size, injections_per_lrg, options) -> dict:
    """The settings that, with the package version, determine the output's bytes.

    ``sources`` is the source light as requested (``"sersic"``, ``"hdf"`` or a library path) and
    ``n_sources`` the number of galaxies in that library (0 for Sérsic sources).
    """
    from shortcutgates import __version__

    cfg = PopulationConfig(**options)
    n_sources = 0 if cfg.sources == "sersic" else len(load_library(cfg.sources))
    return {
        "version": __version__,
        "n_lrgs": int(n_lrgs),
        "seed": int(seed),
        "stamp_size": int(stamp_size),
        "injections_per_lrg": [int(v) for v in injections_per_lrg],
        "sources": cfg.sources,
        "n_sources": n_sources,
        "options": {k: v for k, v in sorted(options.items()) if k != "sources"},
    }


def _with_metadata(frame: pd.DataFrame, meta: dict):
    import json

    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    return table.replace_schema_metadata(
        {**(table.schema.metadata or {}), METADATA_KEY: json.dumps(meta, sort_keys=True, default=str)}
    )


def _lrg_task(task: tuple) -> list[dict]:
    """:func:`lrg_rows` of one ``(index, seed, ra, dec, stamp_size, n_range, cfg)`` (a worker's task)."""
    index, seed, ra, dec, stamp_size, n_range, cfg = task
    return lrg_rows(index, seed, ra, dec, stamp_size=stamp_size, n_range=n_range, cfg=cfg)


def iter_lrg_rows(n_lrgs, seed, *, stamp_size, injections_per_lrg, progress, options, workers: int = 1):
    """Yield ``(split, rows)`` per LRG in index order (see :func:`simulate_frame`).

    ``workers`` > 1 renders LRGs in that many processes (:func:`shortcutgates.parallel.ordered_map`);
    every LRG has its own random stream and the rows come back in index order, so the output is the
    same for any ``workers``. One progress bar counts the LRGs of all workers.
    """
    from shortcutgates.parallel import ordered_map

    n_lrgs, stamp_size, n_range = _check_args(n_lrgs, stamp_size, injections_per_lrg)
    cfg = PopulationConfig(**options)
    if cfg.source_size not in ("prior", "native"):
        raise ValueError(f"simulate: 'source_size' must be 'prior' or 'native' (got {cfg.source_size!r})")
    if cfg.sources != "sersic":
        load_library(cfg.sources)  # a bad library fails here, before any work
    pos = sky_positions(n_lrgs, np.random.default_rng([seed, 0]))
    splits = split_assignment(n_lrgs, seed)
    tasks = ((i, seed, float(pos.ra[i]), float(pos.dec[i]), stamp_size, n_range, cfg) for i in range(n_lrgs))
    with _progress(n_lrgs, progress, "simulate" if workers <= 1 else f"simulate ({workers} workers)") as bar:
        for i, rows in enumerate(ordered_map(_lrg_task, tasks, workers, chunksize=2)):
            for row in rows:
                row[REGION_SPLIT_COLUMN] = splits[i]
            bar.update(1)
            yield splits[i], rows


def simulate_frame(
    n_lrgs: int,
    seed: int,
    *,
    stamp_size: int = 64,
    injections_per_lrg: tuple[int, int] = (2, 18),
    progress: bool = False,
    **options,
) -> pd.DataFrame:
    """Simulate paired rows in memory: one row per injection, paired-input columns + ``region_split``.

    Parameters
    ----------
    n_lrgs : int
        Number of LRGs (each gets its own control image and 2–18 injections).
    seed : int
        Same seed, same bytes.
    stamp_size : int
        Cutout side. Unit: pixel (0.262″ each); the LRG sits at pixel (size//2, size//2).
    injections_per_lrg : (int, int)
        Inclusive range of injections per LRG.
    progress : bool
        Show a tqdm bar on stderr (only when it is a terminal).
    **options
        Fields of :class:`~shortcutgates.simulate.population.PopulationConfig`.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS` + ``region_split`` (train/val/test by LRG, 70/15/15);
        ``frame.attrs[METADATA_KEY]`` holds :func:`simulation_metadata`.
    """
    rows = []
    for _, lrg in iter_lrg_rows(
        n_lrgs, seed, stamp_size=stamp_size, injections_per_lrg=injections_per_lrg, progress=progress, options=options
    ):
        rows.extend(lrg)
    frame = _frame(rows)
    frame.attrs[METADATA_KEY] = simulation_metadata(
        n_lrgs, seed, stamp_size=stamp_size, injections_per_lrg=injections_per_lrg, options=options
    )
    return frame


class SimulationSummary(NamedTuple):
    """What :func:`simulate_paired` wrote."""

    out_dir: Path
    n_lrgs: int
    n_rows: int
    rows_per_split: dict
    """Rows per split name."""
    files: tuple
    """Written parquet files, relative to ``out_dir``."""
    seconds: float
    """Wall time. Unit: s."""


def _write_split_files(tmp: Path, lrgs, meta: dict, rows_per_file: int) -> tuple[dict, list]:
    """Write the ``(split, rows)`` of ``lrgs`` as ``tmp/<split>/part-NNNNN.parquet``, ``rows_per_file`` rows
    a file (the last of a split fewer); returns ``({split: rows written}, [file relative to tmp])``."""
    buffers: dict[str, list] = {s: [] for s in SPLITS}
    counts = {s: 0 for s in SPLITS}
    files: list[Path] = []

    def flush(split):
        name = Path(split) / f"part-{len([f for f in files if f.parent.name == split]):05d}.parquet"
        write_parquet_atomic(_with_metadata(_frame(buffers[split]), meta), tmp / name)
        files.append(name)
        counts[split] += len(buffers[split])
        buffers[split] = []

    for split, rows in lrgs:
        buffers[split].extend(rows)
        if len(buffers[split]) >= rows_per_file:
            flush(split)
    for split in SPLITS:
        if buffers[split]:
            flush(split)
    return counts, files


def simulate_paired(
    out_dir,
    n_lrgs: int,
    seed: int,
    *,
    stamp_size: int = 64,
    injections_per_lrg: tuple[int, int] = (2, 18),
    rows_per_file: int = 2000,
    progress: bool = True,
    workers: int = 1,
    **options,
) -> SimulationSummary:
    """Simulate and write ``out_dir/{train,val,test}/part-NNNNN.parquet``.

    The same rows as :func:`simulate_frame` (``region_split`` kept, equal to the directory); every
    file's schema metadata carries :func:`simulation_metadata` as JSON under :data:`METADATA_KEY`.
    Files are written into a temporary sibling directory that becomes ``out_dir`` at the end
    (:func:`shortcutgates.data.io.atomic_directory`), so an interrupted run leaves no partial output.
    ``out_dir`` must not exist or be empty. ``workers`` processes render the LRGs (the same bytes
    for any number: :func:`iter_lrg_rows`).
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    if int(rows_per_file) < 1:
        raise ValueError(f"simulate_paired: 'rows_per_file' must be >= 1 (got {rows_per_file})")
    meta = simulation_metadata(
        n_lrgs, seed, stamp_size=stamp_size, injections_per_lrg=injections_per_lrg, options=options
    )
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(
            f"simulate: output '{out_dir}' exists and is not empty (choose another --out or remove it)"
        )
    with atomic_directory(out_dir) as tmp:
        lrgs = iter_lrg_rows(
            n_lrgs,
            seed,
            stamp_size=stamp_size,
            injections_per_lrg=injections_per_lrg,
            progress=progress,
            options=options,
            workers=workers,
        )
        counts, files = _write_split_files(tmp, lrgs, meta, rows_per_file)
    return SimulationSummary(
        out_dir, int(n_lrgs), sum(counts.values()), counts, tuple(sorted(files)), time.perf_counter() - start
    )
