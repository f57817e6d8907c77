"""Small synthetic manifests with planted shortcuts, and two reference scorers, for gate self-tests.

Every gate must be shown to *fail* on a planted shortcut and *pass* on a clean case. This module
makes the cases from a few parameters, fast enough for unit tests and the benchmark:

* an LRG: an elliptical Gaussian-core profile with a per-LRG flux (LRG brightness varies across
  the sample, as in the survey);
* a lensed arc: a Gaussian ring segment at the Einstein radius ``θ_E`` spanning ``arc_extent``
  radians in azimuth;
* the planted core shortcut: a point source (the counter-image) ``1–2`` px from the centre whose
  flux is ``core_fraction`` of the LRG's central pixel flux;
* Gaussian sky noise with the same realisation in a stamp and its control, so ``stamp − control``
  is the arc exactly (as for injections into real cutouts).

The two scorers stand for the two kinds of model the gates must tell apart:
:func:`central_flux_score` (a "Clever-Hans" model that reads the core) and
:func:`ring_morphology_score` (a model that reads a coherent arc in a ring).
This is not the physical simulator (:mod:`shortcutgates.simulate`); it only plants what a gate
measures.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from shortcutgates.data.codec import encode_stamp
from shortcutgates.data.io import write_parquet_atomic
from shortcutgates.model.preprocess import radius_grid
from shortcutgates.data.schema import PIXEL_SCALE_ARCSEC

BAND_SCALE = np.array([0.6, 1.0, 1.4], np.float32)
"""Relative flux of the LRG in g, r, z (red galaxy)."""
ARC_COLOUR = np.array([1.2, 1.0, 0.7], np.float32)
"""Relative flux of the arc in g, r, z (blue source)."""


class ToySpec(NamedTuple):
    """Parameters of a synthetic manifest."""

    n_lrgs: int = 200
    size: int = 64
    """Stamp side. Unit: pixel."""
    paired: bool = False
    """Paired: every positive's LRG also gives its control; unpaired: each LRG is positive or negative."""
    positives_per_lrg: int = 1
    test_paired: bool = True
    """Unpaired builds: give a quarter of the LRGs to a paired ``test_paired`` split."""
    theta_e_arcsec: tuple[float, float] = (1.6, 2.6)
    arc_flux: float = 60.0
    """Total arc flux in r. Unit: noise σ · pixel (a bright, visible arc)."""
    arc_extent: float = 1.6
    """Azimuthal extent of the arc. Unit: radian."""
    core_fraction: float = 0.0
    """Counter-image flux / LRG central flux (0: clean; 0.3: the survey's paired shortcut)."""
    lrg_flux: tuple[float, float] = (20.0, 60.0)
    """Range of the LRG central surface brightness. Unit: noise σ."""
    noise: float = 1.0
    """Sky noise σ. Unit: nanomaggies (arbitrary scale)."""
    psf_shift: float = 0.0
    """Added to ``psfsize_r`` of negatives (a planted property imbalance). Unit: arcsec."""
    positive_lrg_boost: float = 1.0
    """LRG flux factor of the positive pool of unpaired splits (a planted selection bias that a
    model can learn from unpaired data and that does not carry over to ``test_paired``)."""
    lensed: bool = False
    """Arcs by lensing (SIE + shear, a Sérsic source 0.3–0.8 θ_E off the axis, counter-images included,
    blurred by a Moffat of ``psfsize_r``), with the full injection truth and ``psf_fwhm_used_g/r/z``
    columns, as the counterfactual model gates need (:func:`lensed_arc`); else a ring segment."""
    seed: int = 0


def draw_lens_truth(rng: np.random.Generator, theta_e: float, phi: float) -> dict:
    """Injection truth of a toy lens: SIE (e 0.05–0.3) + shear (< 0.05), a Sérsic source (R_e 0.1–0.3″,
    n 0.7–1.5) at 0.3–0.8 θ_E from the axis in direction ``phi`` (the arc forms on that side)."""
    beta = rng.uniform(0.3, 0.8) * theta_e
    return {
        "theta_e_arcsec": theta_e,
        "lens_e": rng.uniform(0.05, 0.3),
        "lens_phi_rad": rng.uniform(0, np.pi),
        "shear": rng.uniform(0, 0.05),
        "shear_phi_rad": rng.uniform(0, np.pi),
        "src_x_arcsec": beta * np.cos(phi),
        "src_y_arcsec": beta * np.sin(phi),
        "src_reff_arcsec": rng.uniform(0.1, 0.3),
        "src_n": rng.uniform(0.7, 1.5),
        "src_q": rng.uniform(0.6, 1.0),
        "src_phi_rad": rng.uniform(0, np.pi),
    }


def lensed_arcs(size: int, truth: pd.DataFrame, fwhm_arcsec: np.ndarray, flux: float) -> np.ndarray:
    """Noise-free lensed light of each row of ``truth`` (all images), (N, 3, size, size): total r flux
    ``flux``, blurred by a Moffat (β = 3.5) of ``fwhm_arcsec`` (N,), colours :data:`ARC_COLOUR`.
    Rendered by :func:`~shortcutgates.gates.perturb.lensed_regions` (a toy: the split is exact on it; the
    simulator's own renderer is the split's oracle in the tests)."""
    from scipy.signal import fftconvolve

    from shortcutgates.simulate.kernels import moffat_kernel
    from shortcutgates.gates.perturb import lensed_regions

    pad, out = 16, np.zeros((len(truth), 3, size, size), np.float32)
    for start in range(0, len(truth), 64):
        part = truth.iloc[start : start + 64]
        light = lensed_regions(part, (size, size), pad)[0]
        kernels = np.stack(
            [moffat_kernel(f / PIXEL_SCALE_ARCSEC, 3.5, radius=16) for f in np.asarray(fwhm_arcsec)[start : start + 64]]
        )
        image = fftconvolve(light, kernels, mode="valid", axes=(-2, -1)) * flux
        out[start : start + 64] = ARC_COLOUR[None, :, None, None] * image[:, None]
    return out


def lensed_arc(size: int, truth: dict, fwhm_arcsec: float, flux: float) -> np.ndarray:
    """One lensed arc (:func:`lensed_arcs`), (3, size, size)."""
    return lensed_arcs(size, pd.DataFrame([truth]), np.array([fwhm_arcsec]), flux)[0]


def _gauss(r2: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * r2 / sigma**2)


def lrg_stamp(size: int, peak: float, q: float, phi: float) -> np.ndarray:
    """Noise-free LRG, (3, size, size): elliptical Gaussian core (σ 2.5 px) plus a faint halo."""
    y, x = np.mgrid[:size, :size] - size // 2
    xr = x * np.cos(phi) + y * np.sin(phi)
    yr = -x * np.sin(phi) + y * np.cos(phi)
    r2 = xr**2 + (yr / q) ** 2
    image = peak * (_gauss(r2, 2.5) + 0.1 * _gauss(r2, 7.0))
    return (BAND_SCALE[:, None, None] * image).astype(np.float32)


def arc_stamp(size: int, theta_e_px: float, phi: float, extent: float, flux: float) -> np.ndarray:
    """Noise-free arc, (3, size, size): Gaussian ring segment (radial σ 0.9 px) centred on ``phi``."""
    y, x = np.mgrid[:size, :size] - size // 2
    r = np.hypot(x, y)
    dphi = np.angle(np.exp(1j * (np.arctan2(y, x) - phi)))
    image = _gauss((r - theta_e_px) ** 2, 0.9) * _gauss(dphi**2, extent / 2.355)
    image *= flux / image.sum()
    return (ARC_COLOUR[:, None, None] * image).astype(np.float32)


def counter_image(size: int, r_px: float, phi: float, flux: float) -> np.ndarray:
    """Point source (Gaussian PSF σ 1.2 px) at radius ``r_px`` and angle ``phi``, peak ``flux``."""
    y, x = np.mgrid[:size, :size] - size // 2
    x0, y0 = r_px * np.cos(phi), r_px * np.sin(phi)
    image = flux * _gauss((x - x0) ** 2 + (y - y0) ** 2, 1.2)
    return (ARC_COLOUR[:, None, None] * image).astype(np.float32)


def _split_of_lrgs(n: int, spec: ToySpec, rng) -> np.ndarray:
    names = ["train", "val", "test"] + (["test_paired"] if spec.test_paired and not spec.paired else [])
    weights = np.array([0.5, 0.2, 0.2, 0.1][: len(names)] if len(names) == 4 else [0.6, 0.2, 0.2])
    cuts = np.round(np.cumsum(weights / weights.sum()) * n).astype(int)
    split = np.array(names)[np.searchsorted(cuts, np.arange(n), side="right")]
    return split[rng.permutation(n)]


def make_rows(spec: ToySpec) -> pd.DataFrame:
    """Manifest rows (docs/design.md#manifest) with inline ``image_npz`` blobs for a :class:`ToySpec`."""
    rng = np.random.default_rng(spec.seed)
    split = _split_of_lrgs(spec.n_lrgs, spec, rng)
    rows = []
    for i in range(spec.n_lrgs):
        ra, dec = 150.0 + 0.01 * i, 2.0 + 0.001 * (i % 7)
        paired_lrg = spec.paired or split[i] == "test_paired"
        is_positive = paired_lrg or rng.random() < 0.5
        peak = rng.uniform(*spec.lrg_flux) * (spec.positive_lrg_boost if is_positive and not paired_lrg else 1.0)
        lrg = lrg_stamp(spec.size, peak, rng.uniform(0.8, 1.0), rng.uniform(0, np.pi))
        control = lrg + spec.noise * rng.standard_normal(lrg.shape).astype(np.float32)
        props = {"psfsize_r": rng.normal(1.3, 0.1), "psfdepth_r": rng.normal(24.0, 0.3)}
        base = {"split": split[i], "ra": ra, "dec": dec, "lrg_id": f"L{i:05d}"}
        if is_positive:
            for _ in range(spec.positives_per_lrg):
                theta = rng.uniform(*spec.theta_e_arcsec)
                phi = rng.uniform(-np.pi, np.pi)
                truth = {"theta_e_arcsec": theta}
                if spec.lensed:  # the lensed light is added below, all arcs in one batch
                    truth = draw_lens_truth(rng, theta, phi)
                    truth.update({f"psf_fwhm_used_{b}": props["psfsize_r"] for b in "grz"})
                    stamp = control.copy()
                else:
                    stamp = control + arc_stamp(
                        spec.size, theta / PIXEL_SCALE_ARCSEC, phi, spec.arc_extent, spec.arc_flux
                    )
                if spec.core_fraction:
                    stamp = stamp + counter_image(
                        spec.size, rng.uniform(1.0, 2.0), phi + np.pi, spec.core_fraction * peak
                    )
                rows.append({**base, "label": 1, "image": stamp, **truth, **props})
        if not is_positive or paired_lrg:
            neg_props = dict(props, psfsize_r=props["psfsize_r"] + spec.psf_shift)
            copies = spec.positives_per_lrg if paired_lrg else 1
            neg_props.update({f"psf_fwhm_used_{b}": props["psfsize_r"] for b in "grz"} if spec.lensed else {})
            rows += [{**base, "label": 0, "image": control, "theta_e_arcsec": np.nan, **neg_props}] * copies
    frame = pd.DataFrame(rows)
    if spec.lensed:
        pos = np.flatnonzero(frame["label"].to_numpy() == 1)
        arcs = lensed_arcs(spec.size, frame.iloc[pos], frame["psfsize_r"].to_numpy()[pos], spec.arc_flux)
        images = list(frame["image"])
        for k, row in enumerate(pos):
            images[row] = images[row] + arcs[k]
        frame["image"] = images
    frame["image_npz"] = [encode_stamp(im) for im in frame.pop("image")]
    frame["label"] = frame["label"].astype(np.int8)
    return frame


def write_manifest(frame: pd.DataFrame, directory) -> Path:
    """Write rows as a hand-written manifest (one parquet file, no ``manifest.json``)."""
    directory = Path(directory)
    write_parquet_atomic(frame, directory / "part-0000.parquet")
    return directory


def make_images(spec: ToySpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Arrays instead of a manifest: (images (N, 3, H, W), labels, groups, theta_e_px)."""
    from shortcutgates.data.codec import decode_stamp

    frame = make_rows(spec)
    images = np.stack([decode_stamp(b) for b in frame["image_npz"]])
    theta = frame["theta_e_arcsec"].to_numpy(np.float64) / PIXEL_SCALE_ARCSEC
    return images, frame["label"].to_numpy().astype(int), frame["lrg_id"].to_numpy(), theta


# --- reference scorers -------------------------------------------------------------------------
def central_flux_score(raw: np.ndarray) -> np.ndarray:
    """ "Clever-Hans" scorer: r-band flux of the central 3×3 pixels over that of the 5×5 ring around them.

    The ratio cancels the LRG's brightness, so the score reads only how peaked the core is: a
    counter-image 1–2 px from the centre raises it; an arc outside the core does not.
    """
    raw = np.asarray(raw, np.float32)
    c = raw.shape[-1] // 2
    inner = raw[:, 1, c - 1 : c + 2, c - 1 : c + 2].sum((-1, -2))
    outer = raw[:, 1, c - 3 : c + 4, c - 3 : c + 4].sum((-1, -2)) - inner
    return (inner / np.maximum(outer, 1e-6)).astype(np.float64)


def lrg_brightness_score(raw: np.ndarray) -> np.ndarray:
    """Scorer that learnt the LRG's brightness (r-band flux within 6 px), not the arc."""
    raw = np.asarray(raw, np.float32)
    r = radius_grid(*raw.shape[-2:])
    return raw[:, 1][:, r < 6].sum(axis=1).astype(np.float64)


def ring_morphology_score(raw: np.ndarray, r_in: float = 7.5, r_out: float = 14.0) -> np.ndarray:
    """Arc reader: peak of the smoothed antisymmetric part of the r band within ``r_in <= r < r_out`` px.

    An LRG (elliptical or not) is symmetric under a 180° rotation about its centre, so
    ``image − rot180(image)`` removes it; an arc is not, and survives. Smoothing (Gaussian σ 1.5 px)
    rewards flux that is coherent in azimuth, so an arc scores higher than the same flux scattered
    around its ring; the core and the 10×10 box (``r < r_in``, corners at 7.1 px) are ignored.
    """
    from scipy.ndimage import gaussian_filter

    band = np.asarray(raw, np.float32)[:, 1]
    n, h, w = band.shape
    # rot180 about pixel (c, c): index i -> 2c - i, valid for 1..2c
    core = band[:, 1:, 1:]
    anti = core - core[:, ::-1, ::-1]
    smooth = gaussian_filter(anti, sigma=(0, 1.5, 1.5))
    r = radius_grid(h, w)[1:, 1:]
    ring = (r >= r_in) & (r < r_out)
    return smooth[:, ring].max(axis=1).astype(np.float64)
