"""Build the shipped source library ``shortcutgates/simulate/data/hdf_sources.npz``.

Run once, offline (needs scikit-image, which carries the image; the simulator reads only the npz)::

    python scripts/make_hdf_sources.py [--out shortcutgates/simulate/data/hdf_sources.npz]

Input: ``skimage.data.hubble_deep_field()``, the 1000 × 872 colour release image of the Hubble
eXtreme Deep Field (HubbleSite 2012-37a; public domain). Steps:

1. Linear light: the 8-bit channels are decoded with the sRGB transfer curve and summed. The
   release image's own display stretch is not published, so this is an approximation: bright
   cores may stay compressed relative to faint outskirts.
2. Segmentation: the sky level and σ are the whole image's median and MAD (the field is mostly
   sky); objects are the connected regions above 3σ of the 1-px Gaussian-smoothed image.
3. Selection: at least 60 pixels, at least 8 px from the image edge, at most 3 saturated pixels
   (no bright stars and their spikes), resolved (half-light radius ≥ 2 px) and not star-like
   (peak below 40% of the flux within the central 3 × 3 px).
4. Cut-out: each object's own footprint grown by 2 px, minus other objects' footprints;
   everything else (sky, neighbours) is 0; sky subtracted; centred on its light centroid in a
   48 × 48 stamp (binned by an integer factor when larger), flux-normalised, its circular
   half-light radius recorded (:func:`shortcutgates.simulate.sources.make_library`).

Pixel scale: taken as 0.14″ / px, assuming the image spans the XDF's deepest 4.7 arcmin²
(Illingworth et al. 2013, ApJS 209, 6) at its 1000 : 872 aspect. It only sets the recorded
native sizes: the simulator rescales every stamp to the population's drawn half-light radius.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy import ndimage

from shortcutgates.simulate.sources import make_library, save_library

PIXEL_SCALE = 0.14
"""Assumed pixel scale of the release image. Unit: arcsec / pixel."""
MIN_AREA, EDGE, MAX_SATURATED, MIN_RHALF, MAX_PEAK_SHARE = 60, 8, 3, 2.0, 0.4
OUT = Path(__file__).resolve().parents[1] / "shortcutgates" / "simulate" / "data" / "hdf_sources.npz"


def linear_light(rgb: np.ndarray) -> np.ndarray:
    """Sum of the sRGB-decoded channels of an 8-bit image, shape (H, W)."""
    v = rgb.astype(np.float64) / 255.0
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4).sum(axis=-1)


def segment(light: np.ndarray, nsigma: float = 3.0):
    """Sky-subtracted image, object labels and count."""
    sky = np.median(light)
    sigma = 1.4826 * np.median(np.abs(light - sky))
    img = light - sky
    labels, n = ndimage.label(ndimage.gaussian_filter(img, 1.0) > nsigma * sigma)
    return img, labels, n


def cutouts(img, labels, saturated, *, grow: int = 2, margin: int = 6):
    """Clean cut-outs of the selected objects (each a 2-D array, zero off the object)."""
    h, w = img.shape
    out = []
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        own = labels[sl] == k
        if own.sum() < MIN_AREA or saturated[sl][own].sum() > MAX_SATURATED:
            continue
        if sl[0].start < EDGE or sl[1].start < EDGE or sl[0].stop > h - EDGE or sl[1].stop > w - EDGE:
            continue
        win = (
            slice(max(sl[0].start - margin, 0), min(sl[0].stop + margin, h)),
            slice(max(sl[1].start - margin, 0), min(sl[1].stop + margin, w)),
        )
        lab = labels[win]
        mask = ndimage.binary_dilation(lab == k, iterations=grow) & ((lab == 0) | (lab == k))
        stamp = np.where(mask, np.clip(img[win], 0.0, None), 0.0)
        if not resolved(stamp):
            continue
        out.append(stamp)
    return out


def resolved(stamp: np.ndarray) -> bool:
    """Half-light radius ≥ ``MIN_RHALF`` px and no point-like peak (the brightest pixel holds less
    than ``MAX_PEAK_SHARE`` of the flux of its 3 × 3 neighbourhood)."""
    from shortcutgates.simulate.sources import half_light_radius

    r_half = half_light_radius(stamp)[2]
    row, col = np.unravel_index(np.argmax(stamp), stamp.shape)
    core = stamp[max(row - 1, 0) : row + 2, max(col - 1, 0) : col + 2].sum()
    return r_half >= MIN_RHALF and stamp.max() < MAX_PEAK_SHARE * core


def main(argv=None) -> int:
    from skimage import data

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--nsigma", type=float, default=3.0, help="detection threshold. Default: %(default)r")
    parser.add_argument("--grow", type=int, default=2, help="footprint growth, px. Default: %(default)r")
    args = parser.parse_args(argv)
    rgb = data.hubble_deep_field()
    img, labels, n = segment(linear_light(rgb), args.nsigma)
    stamps = cutouts(img, labels, rgb.max(axis=-1) >= 254, grow=args.grow)
    lib = make_library(stamps, [PIXEL_SCALE] * len(stamps), name="hdf", clean=False)
    provenance = (
        f"skimage.data.hubble_deep_field (XDF release image), {n} objects above {args.nsigma:g} "
        f"sigma, footprints grown by {args.grow} px, "
        f"{len(lib)} resolved galaxies kept; pixel scale {PIXEL_SCALE} arcsec assumed; "
        "built by scripts/make_hdf_sources.py"
    )
    save_library(lib, args.out, provenance=provenance)
    print(
        f"{args.out}: {len(lib)} galaxies, half-light radius {np.percentile(lib.r_eff, 10):.2f}–"
        f"{np.percentile(lib.r_eff, 90):.2f}″ (10–90%), {args.out.stat().st_size / 1e6:.2f} MB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
