"""Random draws of the simulated population: LRG positions and light, observing conditions, injections.

Each draw takes an explicit ``np.random.Generator``. Magnitudes are AB, observed (no further
extinction applied; ``ebv`` is recorded as a condition only). References for the choices:
DESI LRG target selection (Zhou et al. 2023, AJ 165, 58: z-band limit 20.4 in the fibre-independent
cut used here, r - z ≈ 1.4–2.2, 0.3 < z < 1.0); Legacy Surveys DR10 image quality (Dey et al.
2019, AJ 157, 168); the injection recipe of the survey team's pipeline (dmag 0.5–2 relative to the
LRG r magnitude, source inside 0.8 θ_E).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from shortcutgates.data.schema import PIXEL_SCALE_ARCSEC, ZERO_POINT_AB
from shortcutgates.simulate.kernels import moffat_kernel, q_from_e

MOFFAT_BETA = 3.5
SKY_SIGMA_MEDIAN = {"g": 0.00237, "r": 0.00415, "z": 0.0107}
"""Median per-pixel sky noise σ per band. Unit: nanomaggies. (Raw MAD = 0.6745 σ ≈ the survey's
outer-annulus MAD of g 0.0016, r 0.0028, z 0.0072 nmgy.)"""
SKY_MAG_ARCSEC2 = {"g": 22.0, "r": 21.0, "z": 19.0}
"""Sky surface brightness per band (DECam, grey time). Unit: AB mag / arcsec². Sets the
effective gain so that the LRG's own photon noise is consistent with the sky noise."""
PSF_BIN_EDGES = (1.2, 1.4)
"""Edges of ``psf_bin`` on ``psfsize_r``. Unit: arcsec."""
DEPTH_BIN_EDGES = (24.2, 24.4)
"""Edges of ``depth_bin`` on the 5σ point-source r depth. Unit: AB mag."""
KPC_PER_ARCSEC_TABLE = (
    (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2),
    (3.41, 4.60, 5.54, 6.29, 6.89, 7.36, 7.72, 8.01, 8.23, 8.52),
)
"""Angular scale of Planck18 (astropy ``Planck18.kpc_proper_per_arcmin / 60``), kpc / arcsec."""


@dataclass(frozen=True)
class PopulationConfig:
    """Ranges of the injection population (defaults follow the survey pipeline's injections, docs/design.md#simulator)."""

    theta_e_range: tuple[float, float] = (0.5, 2.5)
    """Einstein radius. Unit: arcsec."""
    lens_e_range: tuple[float, float] = (0.05, 0.5)
    shear_max: float = 0.1
    src_max_offset: float = 0.8
    """Source offset limit in units of θ_E (area-uniform inside)."""
    src_reff_range: tuple[float, float] = (0.06, 0.5)
    """Source half-light radius limits. Unit: arcsec."""
    src_reff_median: float = 0.35
    """Median of the log-normal ``R_e`` (≈ 3 kpc at z ≈ 1–2, star-forming galaxies of
    M* ≈ 10^10 in van der Wel et al. 2014, ApJ 788, 28). Unit: arcsec."""
    src_reff_dex: float = 0.15
    """Log-normal scatter of ``R_e`` (van der Wel et al. 2014: 0.16–0.19 dex). Unit: dex."""
    src_n_range: tuple[float, float] = (0.5, 2.0)
    dmag_range: tuple[float, float] = (0.5, 2.0)
    clump_probability: float = 0.5
    """Chance that a source carries 1–4 star-forming clumps, together 5–20% of its light, spread
    over the disc (clumpy fraction and clump light: Guo et al. 2015, ApJ 800, 39)."""
    field: bool = True
    """Add the LRG's field (neighbours, faint background galaxies, stars; :mod:`.field`) to the
    control, from its own random stream."""
    lrg_structure: bool = False
    """Give the LRG an inner component with its own axis ratio and a twisted major axis
    (:func:`draw_lrg_structure`), from its own random stream."""
    sources: str = "sersic"
    """Source light: ``"sersic"`` (a Sérsic body with optional clumps), a shipped library of real
    galaxy images (``"hdf"``) or the path of a user's library (:func:`.sources.load_library`).
    A library stamp takes the Sérsic draw's position, size ``R_e`` and position angle (as its
    rotation) and ignores its index, axis ratio and clumps; the stamp and a flip come from their
    own random stream (:func:`.sources.source_rng`)."""
    source_size: str = "prior"
    """Size of a library galaxy: ``"prior"`` scales it to the drawn ``R_e`` (the log-normal
    above); ``"native"`` keeps its own measured half-light radius (the library's angular size)."""


class SkyPosition(NamedTuple):
    ra: np.ndarray
    """Unit: deg."""
    dec: np.ndarray
    """Unit: deg."""


def sky_positions(
    n: int,
    rng: np.random.Generator,
    *,
    min_sep_arcsec: float = 5.0,
    dec_range=(-20.0, 32.0),
    ra_range=(0.0, 360.0),
    max_rounds: int = 1000,
) -> SkyPosition:
    """Area-uniform positions in a DECaLS-like band, all pairs farther apart than ``min_sep_arcsec``.

    Close pairs are redrawn until none is left (rare: the footprint is ~18 000 deg²); after
    ``max_rounds`` rounds a ValueError says the footprint is too small.
    """
    sin_lo, sin_hi = np.sin(np.radians(dec_range))
    ra = rng.uniform(*ra_range, size=n)
    dec = np.degrees(np.arcsin(rng.uniform(sin_lo, sin_hi, size=n)))
    for _ in range(max_rounds):
        bad = _close_pairs(ra, dec, min_sep_arcsec)
        if bad.size == 0:
            return SkyPosition(ra, dec)
        ra[bad] = rng.uniform(*ra_range, size=bad.size)
        dec[bad] = np.degrees(np.arcsin(rng.uniform(sin_lo, sin_hi, size=bad.size)))
    raise ValueError("sky_positions: could not separate the LRGs; too many for the footprint")


def _close_pairs(ra, dec, min_sep_arcsec):
    from scipy.spatial import cKDTree

    r, d = np.radians(ra), np.radians(dec)
    xyz = np.column_stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)])
    chord = 2 * np.sin(np.radians(min_sep_arcsec / 3600.0) / 2)
    pairs = cKDTree(xyz).query_pairs(chord, output_type="ndarray")
    return np.unique(pairs[:, 1]) if len(pairs) else np.empty(0, dtype=np.int64)


def brickname(ra: float, dec: float) -> str:
    """Legacy-Surveys-style brick name ``RRRR{p|m}DDD`` (ra, |dec| in units of 0.1 deg)."""
    return f"{int(ra * 10) % 3600:04d}{'p' if dec >= 0 else 'm'}{int(abs(dec) * 10):03d}"


class LRG(NamedTuple):
    """One LRG: Sérsic light and magnitudes."""

    mag_g: float
    mag_r: float
    mag_z: float
    redshift: float
    reff_arcsec: float
    n: float
    q: float
    phi: float
    """Unit: rad."""


def draw_lrg(rng: np.random.Generator) -> LRG:
    """A DESI-like LRG: z-band 17.5–20.4, redshift tied to brightness, red colours, n 3–5."""
    mag_z = 20.4 - min(rng.exponential(0.8), 2.9)
    z = float(np.clip(0.35 + 0.25 * (mag_z - 18.5) + rng.normal(0, 0.08), 0.3, 1.05))
    r_z = 0.9 + 1.1 * z + rng.normal(0, 0.1)
    g_r = min(1.0 + 1.2 * z + rng.normal(0, 0.15), 2.5)
    size_kpc = 10 ** rng.normal(np.log10(5.0), 0.2)
    reff = size_kpc / float(np.interp(z, *KPC_PER_ARCSEC_TABLE))
    q = float(np.clip(rng.normal(0.75, 0.15), 0.4, 0.98))
    return LRG(
        mag_z + r_z + g_r,
        mag_z + r_z,
        mag_z,
        z,
        float(np.clip(reff, 0.3, 3.0)),
        rng.uniform(3.0, 5.0),
        q,
        rng.uniform(0, np.pi),
    )


class LRGStructure(NamedTuple):
    """An inner component of the LRG light: ellipticity gradient and isophote twist."""

    fraction: float
    """Share of the LRG's flux in the inner component."""
    reff_ratio: float
    """Inner over outer half-light radius."""
    q: float
    """Axis ratio of the inner component."""
    twist: float
    """Position angle of the inner major axis minus the outer one. Unit: rad."""


def lrg_structure_rng(seed: int, index: int) -> np.random.Generator:
    """The LRG structure's own random stream for LRG ``index``."""
    return np.random.default_rng([seed, 4, index])


def draw_lrg_structure(rng: np.random.Generator, lrg: LRG) -> LRGStructure:
    """Inner component: 20–50% of the light at 0.2–0.5 R_e, axis ratio the LRG's ± 0.1 (rms),
    twisted by N(0, 0.15 rad ≈ 9°) (ellipticity gradients and twists of early-type galaxies:
    Goudfrooij et al. 1994, A&AS 104, 179; Huang et al. 2013, ApJ 766, 47)."""
    return LRGStructure(
        rng.uniform(0.2, 0.5),
        rng.uniform(0.2, 0.5),
        float(np.clip(lrg.q + rng.normal(0.0, 0.1), 0.4, 1.0)),
        rng.normal(0.0, 0.15),
    )


class Conditions(NamedTuple):
    """Observing conditions of one LRG's cutout, per band g, r, z."""

    fwhm: np.ndarray
    """PSF FWHM per band, shape (3,). Unit: arcsec."""
    sky_sigma: np.ndarray
    """Per-pixel sky noise σ, shape (3,). Unit: nanomaggies."""
    gain: np.ndarray
    """Effective counts per nanomaggy, shape (3,), for the LRG's photon noise."""
    psf: np.ndarray
    """Pixel-integrated Moffat kernels, shape (3, 33, 33), each summing to 1."""
    ebv: float
    """Unit: mag."""


def draw_conditions(rng: np.random.Generator, *, psf_radius: int = 16) -> Conditions:
    """Moffat β = 3.5 PSFs (r FWHM 1.0–1.6″, g wider, z narrower) and per-band depth."""
    fwhm_r = rng.uniform(1.0, 1.6)
    fwhm = np.array([fwhm_r * rng.uniform(1.04, 1.14), fwhm_r, fwhm_r * rng.uniform(0.86, 0.96)])
    common = rng.normal(0.0, 0.2)
    sigma = np.array([SKY_SIGMA_MEDIAN[b] * np.exp(common + rng.normal(0.0, 0.12)) for b in "grz"])
    sky = np.array([10 ** ((ZERO_POINT_AB - SKY_MAG_ARCSEC2[b]) / 2.5) for b in "grz"])
    gain = sky * PIXEL_SCALE_ARCSEC**2 / sigma**2
    psf = moffat_kernel(fwhm / PIXEL_SCALE_ARCSEC, MOFFAT_BETA, radius=psf_radius)
    ebv = float(min(0.01 + rng.exponential(0.03), 0.2))
    return Conditions(fwhm, sigma, gain, psf, ebv)


def condition_columns(cond: Conditions) -> dict:
    """The condition columns (docs/design.md#paired-input-format) of a :class:`Conditions`.

    ``psfdepth_r`` follows the Legacy Surveys convention: the inverse variance of a point-source
    flux, ``1 / (σ² · NEA)`` with ``NEA = 1 / Σ p²`` the PSF's noise-equivalent area. Unit:
    1 / nanomaggy². ``depth_bin`` bins its 5σ magnitude ``22.5 - 2.5 log10(5 / sqrt(psfdepth))``.
    """
    nea = 1.0 / np.sum(cond.psf[1] ** 2)
    psfdepth = 1.0 / (cond.sky_sigma[1] ** 2 * nea)
    depth_mag = ZERO_POINT_AB - 2.5 * np.log10(5.0 / np.sqrt(psfdepth))
    return {
        "psf_fwhm_used_g": float(cond.fwhm[0]),
        "psf_fwhm_used_r": float(cond.fwhm[1]),
        "psf_fwhm_used_z": float(cond.fwhm[2]),
        "psfsize_r": float(cond.fwhm[1]),
        "psfdepth_r": float(psfdepth),
        "ebv": cond.ebv,
        "psf_bin": np.int32(np.searchsorted(PSF_BIN_EDGES, cond.fwhm[1])),
        "depth_bin": np.int32(np.searchsorted(DEPTH_BIN_EDGES, depth_mag)),
    }


class Injection(NamedTuple):
    """One lensed source: lens, source light and colours."""

    theta_e: float
    """Unit: arcsec."""
    lens_e: float
    lens_phi: float
    """Unit: rad."""
    shear: float
    shear_phi: float
    """Unit: rad."""
    src_x: float
    """Unit: arcsec."""
    src_y: float
    """Unit: arcsec."""
    src_reff: float
    """Unit: arcsec."""
    src_n: float
    src_q: float
    src_phi: float
    dmag: float
    colour_gr: float
    colour_rz: float
    clumps: np.ndarray
    """Shape (C, 5): flux fraction, x, y (arcsec), r_eff (arcsec), extra g-r blueness (mag)."""

    @property
    def lens_q(self) -> float:
        return float(q_from_e(self.lens_e))


def _truncated_lognormal(rng, median, dex, limits):
    """One log-normal draw (base-10 scatter ``dex``) inside ``limits``, by inverse-CDF sampling."""
    from scipy import stats

    lo, hi = (np.log10(v / median) / dex for v in limits)
    u = rng.uniform(stats.norm.cdf(lo), stats.norm.cdf(hi))
    return float(median * 10 ** (dex * stats.norm.ppf(u)))


def draw_injection(rng: np.random.Generator, cfg: PopulationConfig) -> Injection:
    """An SIE + shear lens and a blue Sérsic source (optionally clumpy) inside 0.8 θ_E."""
    theta_e = rng.uniform(*cfg.theta_e_range)
    rad = cfg.src_max_offset * theta_e * np.sqrt(rng.uniform())
    ang = rng.uniform(0, 2 * np.pi)
    reff = _truncated_lognormal(rng, cfg.src_reff_median, cfg.src_reff_dex, cfg.src_reff_range)
    clumps = np.zeros((0, 5))
    if rng.uniform() < cfg.clump_probability:
        c = int(rng.integers(1, 5))
        frac = rng.dirichlet(np.ones(c)) * rng.uniform(0.05, 0.2)
        pos = rng.normal(0.0, reff, size=(c, 2))
        size = rng.uniform(0.06, 0.1, size=c)
        clumps = np.column_stack([frac, pos, size, rng.uniform(0.1, 0.4, size=c)])
    return Injection(
        theta_e,
        rng.uniform(*cfg.lens_e_range),
        rng.uniform(0, np.pi),
        rng.uniform(0, cfg.shear_max),
        rng.uniform(0, np.pi),
        rad * np.cos(ang),
        rad * np.sin(ang),
        reff,
        rng.uniform(*cfg.src_n_range),
        rng.uniform(0.4, 1.0),
        rng.uniform(0, np.pi),
        rng.uniform(*cfg.dmag_range),
        rng.uniform(0.1, 0.6),
        rng.uniform(0.1, 0.7),
        clumps,
    )
