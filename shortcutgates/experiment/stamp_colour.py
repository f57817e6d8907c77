"""Colour stamps for the eye: gri composites and an arcsecond scale bar (no other figure code here).

Used by the example-stamp figure and the lens-search figures; kept apart so both can import it.
"""

from __future__ import annotations

import numpy as np

from shortcutgates.data.schema import PIXEL_SCALE_ARCSEC

SCALE_BAR_ARCSEC = 2.0


def gri_rgb(images: np.ndarray, q: float = 8.0) -> np.ndarray:
    """(N, 3, H, W) g, r, z nanomaggies -> (N, H, W, 3) RGB in [0, 1]: z red, r green, g blue.

    An asinh stretch of the summed intensity (Lupton et al. 2004) keeps colours of bright cores and
    faint arcs; the scale is each stamp's outer-annulus noise (MAD), so the sky looks alike in all.
    """
    from shortcutgates.model.preprocess import annulus_median_mad

    images = np.asarray(images, np.float64)
    med, mad = annulus_median_mad(images.astype(np.float32))
    x = (images - med) / np.maximum(mad, 1e-12)
    rgb = np.clip(np.stack([x[:, 2], x[:, 1], x[:, 0]], axis=-1), 0, None)
    total = rgb.sum(axis=-1, keepdims=True) + 1e-12
    scaled = rgb * np.arcsinh(total / q) / total
    return np.clip(scaled / max(np.percentile(scaled, 99.5), 1e-12), 0, 1)


def add_scale_bar(ax, size_px: int, arcsec: float = SCALE_BAR_ARCSEC) -> None:
    """A white bar of ``arcsec`` arcseconds in the lower left of a stamp panel drawn with ``origin="lower"``."""
    length = arcsec / PIXEL_SCALE_ARCSEC
    x0, y0 = 0.06 * size_px, 0.07 * size_px
    ax.plot([x0, x0 + length], [y0, y0], color="white", lw=2)
    ax.text(x0 + length / 2, y0 + 0.03 * size_px, f'{arcsec:g}"', color="white", ha="center", va="bottom", fontsize=8)
