"""LRG properties measured from control stamps: core and total flux, magnitudes, concentration, size.

Survey input carries no LRG photometry, so ``shortcutgates build`` measures these from one control per
LRG (:func:`measure_controls`) and writes them to the manifest, where the property-balance gates compare
positives and negatives on them and ``--match`` can match on them.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from shortcutgates.data.blob_rows import read_blobs
from shortcutgates.data.codec import decode_stamp
from shortcutgates.data.schema import BANDS, CTRL_COLUMN, LRG_ID_COLUMN, PIXEL_SCALE_ARCSEC, DataError

CORE_RADIUS_PX = 3.0
"""Aperture radius of ``core_flux_<band>``. Unit: pixel (0.79 arcsec)."""
ALWAYS_MEASURED: tuple[str, ...] = ("total_mag_r", "core_mag_r", "concentration_r", "half_light_radius_r")
"""LRG properties every build measures from one control per LRG and writes to the manifest: the
property-balance gates compare positives and negatives on them (magnitude, core magnitude,
concentration, size), as survey data carry no LRG photometry."""
MEASURED_COLUMNS: tuple[str, ...] = (
    tuple(f"core_flux_{b}" for b in BANDS) + tuple(f"half_light_radius_{b}" for b in BANDS) + ALWAYS_MEASURED[:3]
)
"""LRG properties measured from the control images (survey data carry no LRG photometry)."""
ZERO_POINT_MAG = 22.5
"""AB zero point of nanomaggies."""


def measure_lrgs(images: np.ndarray) -> pd.DataFrame:
    """Core and total flux, magnitudes, concentration and half-light radius of the LRG at the centre
    of control stamps, per band.

    Parameters
    ----------
    images : ndarray, shape (N, 3, H, W)
        Control stamps (no arc). Unit: nanomaggies.

    Returns
    -------
    DataFrame, N rows
        Per band ``b``: ``core_flux_<b>`` (nanomaggies within :data:`CORE_RADIUS_PX` of the centre
        pixel, after subtracting the median of the outer annulus H*20/64 <= r < H/2),
        ``total_mag_<b>`` / ``core_mag_<b>`` (AB magnitudes of the background-subtracted flux inside
        the annulus / the core; NaN when not positive), ``concentration_<b>`` (core / total flux) and
        ``half_light_radius_<b>`` (arcsec; radius holding half of the flux inside the annulus, NaN
        when that flux is not positive).
    """
    images = np.asarray(images, np.float64)
    n, _, h, w = images.shape
    yy, xx = np.indices((h, w))
    r = np.hypot(yy - h // 2, xx - w // 2)
    outer = (r >= h * 20 / 64) & (r < h / 2)
    inner = r < h * 20 / 64
    order = np.argsort(r[inner], kind="stable")
    radii = r[inner][order]
    out = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for b, band in enumerate(BANDS):
            img = images[:, b]
            sub = img - (np.median(img[:, outer], axis=1)[:, None, None] if outer.any() else 0.0)
            core = sub[:, r < CORE_RADIUS_PX].sum(axis=1)
            cum = np.cumsum(sub[:, inner][:, order], axis=1)
            total = cum[:, -1] if cum.shape[1] else np.zeros(n)
            half = np.argmax(cum >= total[:, None] / 2, axis=1)
            out[f"core_flux_{band}"] = core
            out[f"total_mag_{band}"] = np.where(total > 0, ZERO_POINT_MAG - 2.5 * np.log10(total), np.nan)
            out[f"core_mag_{band}"] = np.where(core > 0, ZERO_POINT_MAG - 2.5 * np.log10(core), np.nan)
            out[f"concentration_{band}"] = np.where(total > 0, core / total, np.nan)
            out[f"half_light_radius_{band}"] = np.where(total > 0, radii[half] * PIXEL_SCALE_ARCSEC, np.nan)
    return pd.DataFrame(out)


def measure_lrg(image: np.ndarray) -> dict:
    """:func:`measure_lrgs` of one ``(3, H, W)`` control stamp, as a dict."""
    return {k: float(v) for k, v in measure_lrgs(np.asarray(image)[None]).iloc[0].items()}


MEASURE_CHUNK = 8192
"""Controls decoded per step of :func:`measure_controls` (its progress bar)."""


def decode_controls(
    rows: pd.DataFrame, *, progress: bool = True, strict: bool = True
) -> tuple[np.ndarray | None, np.ndarray]:
    """The control stamps of ``rows`` (``ctrl_stamp_npz``), decoded by :func:`shortcutgates.data.codec.decode_stamps`.

    Returns ``(images, ok)``: (n_ok, 3, H, W) float32 of the rows that decoded, and the (N,) mask; images
    None when the controls differ in shape (a blob that decodes alone but not at the first one's shape).
    ``strict``: the first control that does not decode raises its located ``DataError``.
    """
    from tqdm.auto import tqdm

    from shortcutgates.data.codec import decode_stamps

    blobs = read_blobs(rows, column=CTRL_COLUMN)
    files, where = rows["source_path"].to_numpy(), rows["source_row"].to_numpy()
    parts, ok, shape, mixed = [], np.zeros(len(blobs), bool), None, False
    with tqdm(total=len(blobs), desc="measure controls", disable=_quiet(progress), file=sys.stderr) as bar:
        for a in range(0, len(blobs), MEASURE_CHUNK):
            b = min(a + MEASURE_CHUNK, len(blobs))
            out = decode_stamps(
                blobs[a:b], files=files[a:b], rows=where[a:b], columns=CTRL_COLUMN, shape=shape, skip_bad=True
            )
            for failure in out.failures:
                try:
                    decode_stamp(blobs[a + failure.index])  # decodes alone: another shape
                    mixed = True
                except DataError:
                    if strict:
                        raise failure.error from None
            if len(out.images):
                shape = shape or tuple(out.images.shape[-2:])
                parts.append(out.images)
            ok[a:b] = out.ok
            bar.update(b - a)
    return (None if mixed or not parts else np.concatenate(parts)), ok


def measure_controls(
    catalog: pd.DataFrame, columns, *, progress: bool = True, strict: bool = True, keep: dict | None = None
) -> pd.DataFrame:
    """Add measured LRG properties (one control per LRG, broadcast to all its rows) to ``catalog``.

    ``strict`` (matching needs the values): a control that does not decode is a ``DataError``; else
    its LRG gets NaN (the gates' ``data_integrity`` reports the row), as do all LRGs when the
    controls differ in shape. ``keep``: a dict that receives the decoded controls, (3, H, W) float32
    keyed by ``(source_path, source_row)`` (``build --hard-negatives`` takes its hosts' controls,
    these very rows, from it instead of decoding them again); nothing when the shapes differ."""
    from shortcutgates.data.splits import control_rows

    reps = control_rows(catalog)
    rows = catalog.iloc[reps.to_numpy()]
    images, ok = decode_controls(rows, progress=progress, strict=strict)
    measured = pd.DataFrame(np.nan, index=reps.index, columns=list(columns))
    if images is not None:
        measured.iloc[np.flatnonzero(ok)] = measure_lrgs(images)[list(columns)].to_numpy()
        if keep is not None:
            good = rows[ok]
            keep.update(zip(zip(good["source_path"].tolist(), good["source_row"].astype(np.int64).tolist()), images))
    return catalog.drop(columns=[c for c in columns if c in catalog]).join(measured, on=LRG_ID_COLUMN)


def _quiet(progress: bool) -> bool:
    return not progress or not sys.stderr.isatty()
