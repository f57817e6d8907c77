"""Which θ_E bins of a split the core probe can decide on: the geometry of arc, PSF and box.

The core probe (:func:`shortcutgates.gates.data_gates.core_lr_auc`) reads a central box; an arc whose
PSF-blurred inner edge reaches into that box is the lens itself, not a shortcut, so the probe decides
only on the θ_E bins whose arcs clear the box (:func:`arc_clears_box`), from the manifest rows alone.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from shortcutgates.data.schema import LABEL_COLUMN, PIXEL_SCALE_ARCSEC

DEFAULT_SEEING_ARCSEC = 1.3
"""PSF FWHM assumed by :func:`core_theta_bins` when a split carries no ``psf_fwhm_used_r`` / ``psfsize_r``
(the median DECaLS r-band seeing). Unit: arcsec."""

MIN_BIN_POSITIVES = 30
"""A θ_E bin beyond the box gets its own core-LR case only with at least this many positives."""


class CoreBins(NamedTuple):
    """Which θ_E bins of a split the core probe can decide on (:func:`core_theta_bins`)."""

    decidable: list
    """Labels (``"2-10arcsec"``) of the bins whose arcs clear the box, with >= MIN_BIN_POSITIVES positives."""
    arc_in_box: bool
    """Some positives lie in bins whose PSF-blurred arcs reach into the box."""
    fwhm_arcsec: float
    """The split's median seeing used. Unit: arcsec."""
    reach_arcsec: float
    """Bins starting below this θ_E have arcs in the box: box half-side + FWHM / 2. Unit: arcsec."""
    share_in_box: float
    """Fraction of the split's positives (with a θ_E) in bins whose arcs reach into the box."""


def bin_label(lo: float, hi: float) -> str:
    """``"2-10arcsec"``: a θ_E bin in a case id (the model gates' strata format)."""
    return f"{lo:g}-{hi:g}arcsec"


def arc_clears_box(theta_lo_arcsec: float, fwhm_arcsec: float, box_px: int) -> bool:
    """Whether arcs of Einstein radius >= ``theta_lo_arcsec`` lie outside a central ``box_px`` box.

    A lensed arc lies at radius θ_E, blurred by the PSF to a half-maximum inner edge at
    ``θ_E − FWHM / 2``; it clears the box when that edge lies beyond the box's half-side
    (``box_px / 2`` pixels; only the box's corners reach further). Below, the core probe reads the
    arc itself, which is the lens, not a shortcut.
    """
    return theta_lo_arcsec - fwhm_arcsec / 2 >= box_px / 2 * PIXEL_SCALE_ARCSEC


def core_theta_bins(context, split: str, box: int) -> CoreBins:
    """The θ_E bins of ``split`` by geometry (:func:`arc_clears_box`), from the manifest rows (no images).

    The seeing is the median ``psf_fwhm_used_r`` (else ``psfsize_r``) of the split, else
    :data:`DEFAULT_SEEING_ARCSEC`. Without Einstein radii (survey data without injection truth) no
    bin is known: the all-θ_E case decides.
    """

    def compute() -> CoreBins:
        rows = context.rows(split)
        fwhm = DEFAULT_SEEING_ARCSEC
        for col in ("psf_fwhm_used_r", "psfsize_r"):
            if col in rows:
                values = pd.to_numeric(rows[col], errors="coerce")
                if values.notna().any():
                    fwhm = float(values.median())
                    break
        reach = box / 2 * PIXEL_SCALE_ARCSEC + fwhm / 2
        theta = (
            pd.to_numeric(rows["theta_e_arcsec"], errors="coerce").to_numpy(np.float64)
            if "theta_e_arcsec" in rows
            else np.full(len(rows), np.nan)
        )
        theta = theta[(rows[LABEL_COLUMN].to_numpy() == 1) & np.isfinite(theta)]
        edges = context.config.theta_e_bins_arcsec
        decidable, n_inside = [], 0
        for lo, hi in zip(edges[:-1], edges[1:]):
            n = int(((theta >= lo) & (theta < hi)).sum())
            if arc_clears_box(lo, fwhm, box):
                if n >= MIN_BIN_POSITIVES:
                    decidable.append(bin_label(lo, hi))
            else:
                n_inside += n
        return CoreBins(decidable, n_inside > 0, fwhm, reach, n_inside / len(theta) if len(theta) else 0.0)

    return context.memo(("core_theta_bins", split, box), compute)
