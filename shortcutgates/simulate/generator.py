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
from shortcutgates.data.schema import PIXEL_SCALE_ARCSEC, REGION_SPLIT_COLUMN, SPLITS, ZERO_POINT_AB
from shortcutgates.simulate.field import draw_field, field_rng, render_field
from shortcutgates.simulate.population import LRG, Conditions, Injection, LRGStructure, PopulationConfig, brickname, condition_columns, draw_conditions, draw_injection, draw_lrg, draw_lrg_structure, lrg_structure_rng, sky_positions
from shortcutgates.simulate.render import Lens, convolve_valid, render, sersic_set
from shortcutgates.simulate.sources import PixelSource, draw_pick, load_library, place, source_rng

PSF_RADIUS = 16
"""PSF kernel half-size and render padding. Unit: pixel."""
SPLIT_FRACTIONS = (0.70, 0.15, 0.15)


def mag_to_flux(mag):
    """AB magnitude to flux. Unit: nanomaggies (zero point 22.5)."""
    return 10.0 ** ((ZERO_POINT_AB - np.asarray(mag, dtype=np.float64)) / 2.5)


def lrg_centre(lrg: LRG, size: int) -> tuple[float, float]:
    """Pixel position ``(x, y)`` of the LRG (and lens) centre on the padded render grid: the
    centre of stamp pixel (size//2, size//2)."""
    return (size // 2 + PSF_RADIUS, size // 2 + PSF_RADIUS)


def render_lrg(lrg: LRG, cond: Conditions, size: int, structure: LRGStructure | None = None) -> np.ndarray:
    """Noiseless PSF-convolved LRG, shape (3, size, size), float32, nanomaggies per pixel.

    Without ``structure`` one Sérsic; with it, that Sérsic carries ``1 - fraction`` of the flux
    and an inner Sérsic (same n) the rest, at its own radius, axis ratio and position angle.
    """
    n_pad = size + 2 * PSF_RADIUS
    if structure is None:
        light = sersic_set(weight=1.0, r_eff=lrg.reff_arcsec, n=lrg.n, q=lrg.q, phi=lrg.phi, x0=0, y0=0)
    else:
        s = structure
        light = sersic_set(weight=[1.0 - s.fraction, s.fraction],
                           r_eff=[lrg.reff_arcsec, lrg.reff_arcsec * s.reff_ratio], n=lrg.n,
                           q=[lrg.q, s.q], phi=[lrg.phi, lrg.phi + s.twist], x0=0, y0=0)
    unit = render(None, (light,), n_pad, PIXEL_SCALE_ARCSEC, lrg_centre(lrg, size))[0]
    flux = mag_to_flux([lrg.mag_g, lrg.mag_r, lrg.mag_z])
    return np.stack([convolve_valid(unit * f, k) for f, k in zip(flux, cond.psf)])


N_EXPOSURES = 3
"""Exposures per band in a coadd (DR10 median depth: ~3 per band)."""


def coadd_unit_noise(shape, rng: np.random.Generator, n_exposures: int = N_EXPOSURES) -> np.ndarray:
    """Unit-variance Gaussian noise correlated as in a resampled coadd, shape ``(3, H, W)``.

    Each band averages ``n_exposures`` white-noise fields, each Lanczos-3 resampled by a random
    sub-pixel shift (the survey pipeline resamples every exposure onto the brick grid), then is
    rescaled so that every pixel has unit variance: the per-pixel noise is set by the depth, the
    correlation between neighbouring pixels by the resampling.
    """
    from scipy import signal

    from shortcutgates.simulate.kernels import lanczos3_weights

    bands, h, w = shape
    out = np.empty(shape, dtype=np.float64)
    for b in range(bands):
        field = np.zeros((h, w))
        power = 0.0
        for _ in range(n_exposures):
            wx, wy = lanczos3_weights(rng.uniform(0.0, 1.0, size=2))
            kernel = np.outer(wy, wx)
            field += signal.fftconvolve(rng.standard_normal((h + 5, w + 5)), kernel, mode="valid")
            power += float((kernel**2).sum())
        out[b] = field / np.sqrt(power)
    return out


def add_noise(image: np.ndarray, cond: Conditions, rng: np.random.Generator) -> np.ndarray:
    """Sky noise plus the object's photon noise, variance ``σ_sky² + max(I, 0) / gain`` per pixel,
    with the pixel-to-pixel correlation of a resampled coadd (:func:`coadd_unit_noise`)."""
    var = noise_variance(image, cond)
    return (image + coadd_unit_noise(image.shape, rng) * np.sqrt(var)).astype(np.float32)


def noise_variance(image: np.ndarray, cond: Conditions) -> np.ndarray:
    """Per-pixel noise variance of a noiseless image, shape of ``image``. Unit: nanomaggies²."""
    return cond.sky_sigma[:, None, None] ** 2 + np.maximum(image, 0) / cond.gain[:, None, None]


def source_sets(inj: Injection):
    """The source as two unit-flux Sérsic sets (smooth body, clumps) and their r-band fractions."""
    body = sersic_set(weight=1.0, r_eff=inj.src_reff, n=inj.src_n, q=inj.src_q, phi=inj.src_phi,
                      x0=inj.src_x, y0=inj.src_y)
    if len(inj.clumps) == 0:
        return (body,), np.array([1.0]), np.zeros(1)
    frac = inj.clumps[:, 0]
    clumps = sersic_set(weight=frac / frac.sum(), r_eff=inj.clumps[:, 3], n=0.5, q=1.0, phi=0.0,
                        x0=inj.src_x + inj.clumps[:, 1], y0=inj.src_y + inj.clumps[:, 2])
    blue = float(np.average(inj.clumps[:, 4], weights=frac))
    return (body, clumps), np.array([1.0 - frac.sum(), frac.sum()]), np.array([0.0, blue])


def render_arc(inj: Injection, lrg_mag_r: float, cond: Conditions, size: int,
               centre: tuple[float, float] | None = None, pixel_source: PixelSource | None = None):
    """Noiseless PSF-convolved lensed arc, the lens centred on the LRG.

    ``centre`` is the lens centre on the padded grid (:func:`lrg_centre`); by default the centre
    of pixel (size//2, size//2). ``pixel_source`` (a placed library galaxy of unit flux) replaces
    the injection's Sérsic light; its colours and brightness are the injection's.

    Returns
    -------
    arc : ndarray, shape (3, size, size), float32
        Nanomaggies per pixel.
    magnification : float
        Lensed over intrinsic r-band flux of the source (before the PSF, over the padded grid).
    """
    n_pad = size + 2 * PSF_RADIUS
    lens = Lens(inj.theta_e, inj.lens_q, inj.lens_phi, inj.shear, inj.shear_phi)
    if pixel_source is None:
        sets, frac_r, blue = source_sets(inj)
    else:
        sets, frac_r, blue = (pixel_source,), np.array([1.0]), np.zeros(1)
    if centre is None:
        centre = float(size // 2 + PSF_RADIUS)
    unit = render(lens, sets, n_pad, PIXEL_SCALE_ARCSEC, centre)  # (S, H, W)
    flux_r = mag_to_flux(lrg_mag_r + inj.dmag)
    colours = np.array([inj.colour_gr, 0.0, -inj.colour_rz])  # m_b - m_r
    arc = np.empty((3, size, size), dtype=np.float32)
    for b in range(3):
        flux_b = flux_r * frac_r * 10 ** (-0.4 * (colours[b] - (blue if b == 0 else 0.0)))
        image = np.tensordot(flux_b.astype(np.float32), unit, axes=1)
        arc[b] = convolve_valid(image, cond.psf[b])
    magnification = float(np.dot(frac_r, unit.sum(axis=(1, 2), dtype=np.float64)))
    return arc, magnification


def arc_snr(arc_r: np.ndarray, var_r: np.ndarray, sigma_r: float) -> float:
    """Integrated r-band arc S/N: ``Σ_A a / sqrt(Σ_A var)`` over the aperture ``A = {a > σ_sky}``.

    ``a`` is the noiseless PSF-convolved arc and ``var`` the control's noise variance (sky plus
    LRG photon noise). 0 when no pixel of the arc exceeds the sky σ.
    """
    mask = arc_r > sigma_r
    if not mask.any():
        return 0.0
    return float(arc_r[mask].sum(dtype=np.float64) / np.sqrt(var_r[mask].sum(dtype=np.float64)))


def lrg_rows(index: int, seed: int, ra: float, dec: float, *, stamp_size: int, n_range: tuple[int, int],
             cfg: PopulationConfig) -> list[dict]:
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
    ctrl_blob = encode_stamp(ctrl)
    shared = {
        "ra": float(ra), "dec": float(dec), "ctrl_stamp_npz": ctrl_blob,
        **condition_columns(cond),
        "brickname": brickname(ra, dec), "task_id": np.int32(index), "cutout_ok": np.int32(1),
        "lrg_mag_r": lrg.mag_r, "lrg_mag_z": lrg.mag_z, "lrg_redshift": lrg.redshift,
        "lrg_reff_arcsec": lrg.reff_arcsec, "lrg_q": lrg.q,
    }
    rows = []
    library = None if cfg.sources == "sersic" else load_library(cfg.sources)
    pick_rng = source_rng(seed, index)
    for _ in range(int(rng.integers(n_range[0], n_range[1] + 1))):
        inj = draw_injection(rng, cfg)
        pixel_source = None
        if library is not None:
            pick, flip = draw_pick(pick_rng, len(library))
            if cfg.source_size == "native":
                inj = inj._replace(src_reff=float(library.r_eff[pick]))
            pixel_source = place(library, pick, r_eff=inj.src_reff, x=inj.src_x, y=inj.src_y,
                                 phi=inj.src_phi, flip=flip)
        arc, mu = render_arc(inj, lrg.mag_r, cond, stamp_size, lrg_centre(lrg, stamp_size), pixel_source)
        rows.append({
            **shared,
            "stamp_npz": encode_stamp(ctrl + arc),
            "theta_e_arcsec": inj.theta_e, "src_x_arcsec": inj.src_x, "src_y_arcsec": inj.src_y,
            "src_reff_arcsec": inj.src_reff, "src_dmag": inj.dmag, "lens_e": inj.lens_e,
            "lens_phi_rad": inj.lens_phi, "shear": inj.shear, "shear_phi_rad": inj.shear_phi,
            # a library galaxy is no Sérsic: its index and axis ratio are unknown (NaN)
            "src_n": inj.src_n if library is None else np.nan, "src_q": inj.src_q if library is None else np.nan,
            "src_phi_rad": inj.src_phi,
            "arc_snr": arc_snr(arc[1], var_r, cond.sky_sigma[1]), "magnification": mu,
        })
    return rows


def split_assignment(n_lrgs: int, seed: int, fractions=SPLIT_FRACTIONS) -> np.ndarray:
    """Split name per LRG index: a seeded permutation cut at the cumulative fractions."""
    order = np.random.default_rng([seed, 2]).permutation(n_lrgs)
    cuts = np.round(np.cumsum(fractions)[:-1] * n_lrgs).astype(int)
    names = np.empty(n_lrgs, dtype=object)
    for name, idx in zip(SPLITS, np.split(order, cuts)):
        names[idx] = name
    return names


COLUMNS: tuple[str, ...] = (
    "ra", "dec", "stamp_npz", "ctrl_stamp_npz",
    "theta_e_arcsec", "src_x_arcsec", "src_y_arcsec", "src_reff_arcsec", "src_dmag", "lens_e",
    "lens_phi_rad", "shear", "arc_snr", "magnification",
    "shear_phi_rad", "src_n", "src_q", "src_phi_rad",
    "psf_fwhm_used_g", "psf_fwhm_used_r", "psf_fwhm_used_z", "psfsize_r", "psfdepth_r", "ebv",
    "psf_bin", "depth_bin",
    "brickname", "task_id", "cutout_ok",
    "lrg_mag_r", "lrg_mag_z", "lrg_redshift", "lrg_reff_arcsec", "lrg_q",
)
"""Column order of the simulator's output (docs/design.md#paired-input-format plus LRG truth)."""


def _check_args(n_lrgs, stamp_size, injections_per_lrg):
    if int(n_lrgs) < 1:
        raise ValueError(f"simulate: 'n_lrgs' must be >= 1 (got {n_lrgs})")
    if int(stamp_size) < 2 * 16 or int(stamp_size) % 2:
        raise ValueError(f"simulate: 'stamp_size' must be an even number >= 32 (got {stamp_size})")
    lo, hi = injections_per_lrg
    if not 1 <= int(lo) <= int(hi):
        raise ValueError(f"simulate: 'injections_per_lrg' must be (lo, hi) with 1 <= lo <= hi "
                         f"(got {injections_per_lrg})")
    return int(n_lrgs), int(stamp_size), (int(lo), int(hi))


def _progress(total, enabled, desc):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="LRG", file=sys.stderr,
                disable=not (enabled and sys.stderr.isatty()))


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
    return {"version": __version__, "n_lrgs": int(n_lrgs), "seed": int(seed), "stamp_size": int(stamp_size),
            "injections_per_lrg": [int(v) for v in injections_per_lrg], "sources": cfg.sources,
            "n_sources": n_sources, "options": {k: v for k, v in sorted(options.items()) if k != "sources"}}


def _with_metadata(frame: pd.DataFrame, meta: dict):
    import json

    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    return table.replace_schema_metadata({**(table.schema.metadata or {}),
                                          METADATA_KEY: json.dumps(meta, sort_keys=True, default=str)})


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


def simulate_frame(n_lrgs: int, seed: int, *, stamp_size: int = 64,
                   injections_per_lrg: tuple[int, int] = (2, 18), progress: bool = False,
                   **options) -> pd.DataFrame:
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
    for _, lrg in iter_lrg_rows(n_lrgs, seed, stamp_size=stamp_size,
                                injections_per_lrg=injections_per_lrg, progress=progress,
                                options=options):
        rows.extend(lrg)
    frame = _frame(rows)
    frame.attrs[METADATA_KEY] = simulation_metadata(n_lrgs, seed, stamp_size=stamp_size,
                                                    injections_per_lrg=injections_per_lrg, options=options)
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


def simulate_paired(out_dir, n_lrgs: int, seed: int, *, stamp_size: int = 64,
                    injections_per_lrg: tuple[int, int] = (2, 18), rows_per_file: int = 2000,
                    progress: bool = True, workers: int = 1, **options) -> SimulationSummary:
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
    meta = simulation_metadata(n_lrgs, seed, stamp_size=stamp_size, injections_per_lrg=injections_per_lrg,
                               options=options)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"simulate: output '{out_dir}' exists and is not empty "
                              "(choose another --out or remove it)")
    with atomic_directory(out_dir) as tmp:
        buffers = {s: [] for s in SPLITS}
        counts = {s: 0 for s in SPLITS}
        files = []

        def flush(split):
            name = Path(split) / f"part-{len([f for f in files if f.parent.name == split]):05d}.parquet"
            write_parquet_atomic(_with_metadata(_frame(buffers[split]), meta), tmp / name)
            files.append(name)
            counts[split] += len(buffers[split])
            buffers[split] = []

        for split, rows in iter_lrg_rows(n_lrgs, seed, stamp_size=stamp_size,
                                         injections_per_lrg=injections_per_lrg,
                                         progress=progress, options=options, workers=workers):
            buffers[split].extend(rows)
            if len(buffers[split]) >= rows_per_file:
                flush(split)
        for split in SPLITS:
            if buffers[split]:
                flush(split)
    return SimulationSummary(out_dir, int(n_lrgs), sum(counts.values()), counts,
                             tuple(sorted(files)), time.perf_counter() - start)
