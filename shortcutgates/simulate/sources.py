"""Source libraries: real galaxy images lensed in place of Sérsic profiles.

A *source library* is a stack of cleaned galaxy stamps (background 0, neighbours removed), each
with its pixel scale, half-light radius and light centroid, flux-normalised to 1. At simulation
time a stamp is drawn, flipped and rotated at random, scaled on the sky so that its half-light
radius equals the population's drawn ``R_e``, placed with its centroid at the source position and
given the drawn brightness; the SIE + shear ray shooting of :mod:`.render` then samples it
through :class:`PixelSource`, a flux-conserving bilinear interpolant (the convention of
lenstronomy's ``INTERPOL`` light profile, which the tests use as an oracle).

Libraries:

* ``"hdf"``: shipped with the package (``data/hdf_sources.npz``), cut from the Hubble eXtreme
  Deep Field colour image that scikit-image carries, by ``scripts/make_hdf_sources.py``;
* a directory of ``*.npz`` / ``*.fits`` stamps (:func:`read_stamp_directory`);
* a GalSim COSMOS real-galaxy catalogue file (:func:`read_galsim_catalog`).

See docs/design.md#simulator and docs/simulator_realism.md.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy import ndimage

STAMP_SIZE = 48
"""Side of every library stamp. Unit: source pixel."""
SHIPPED = {"hdf": "hdf_sources.npz"}
"""Names of the libraries shipped in ``shortcutgates/simulate/data``."""
REFINE = 0.7
"""Rays of a pixelised source are spaced by at most this fraction of a stamp pixel (in the source
plane), wherever the footprint may touch a lit stamp pixel. Measured on 80 random lensed library
galaxies (θ_E 0.5–2.5″, lens q 0.4–1, shear ≤ 0.1, R_e 0.06–0.5″, offsets ≤ 0.8″) against a
32×32-per-pixel reference: error median 3.9e-4 of the peak before the PSF, 90th percentile
1.2e-3, worst 4.0e-3 (the most compact source, 0.02″ stamp pixels, beside the singular lens
centre); after the narrowest survey PSF (z, 0.86″ FWHM) worst 3.5e-3; flux worst 0.33%.
At 1.0 the typical error before the PSF doubles; at 0.5 it halves for 2.8× the time."""
MARGIN = 2.0
"""A cell counts as touching the light when its traced centre lies within this many footprint
diagonals of a lit stamp pixel: near the critical curves a cell's interior maps beyond the
hull of its traced corners."""
_KEYS = ("images", "pixel_scale", "r_eff", "centroid", "psf_fwhm")


class SourceLibrary(NamedTuple):
    """Cleaned, flux-normalised galaxy stamps (one entry per galaxy along axis 0)."""

    images: np.ndarray
    """Shape (N, S, S), float32, each summing to 1; ``images[i, row, col]``, rows along +y."""
    pixel_scale: np.ndarray
    """Native pixel scale of each stamp, shape (N,). Unit: arcsec / pixel."""
    r_eff: np.ndarray
    """Circular half-light radius of the stamp's interpolant about its centroid, shape (N,).
    Unit: arcsec (native)."""
    centroid: np.ndarray
    """Light centroid ``(x, y)`` relative to the stamp centre ``((S-1)/2, (S-1)/2)``, shape (N, 2).
    Unit: pixel."""
    psf_fwhm: np.ndarray
    """FWHM of the image's own PSF where known (NaN otherwise), shape (N,). Unit: arcsec. Not
    deconvolved: HST's ≈ 0.1″ is far below the survey's ≈ 1.3″."""
    name: str
    """Where it came from (a shipped name or a path)."""

    def __len__(self) -> int:  # the number of galaxies, not of fields
        return len(self.images)

    @property
    def r_eff_pix(self) -> np.ndarray:
        """Half-light radius in stamp pixels, shape (N,)."""
        return self.r_eff / self.pixel_scale


class PixelSource(NamedTuple):
    """One pixelised source on the sky, sampled by bilinear interpolation.

    Surface brightness at ``(x, y)``: with ``(u, v) = rotate((x - x0) / scale, (y - y0) / scale, phi)``
    (:func:`.kernels.rotate`), column ``u + (W-1)/2`` and row ``v + (H-1)/2`` of ``image`` are
    interpolated bilinearly (zero beyond the stamp's edge) and divided by ``scale²``: lenstronomy's
    ``INTERPOL`` with ``image / scale²`` as its surface-brightness image. The bilinear interpolant
    integrates to ``Σ image · scale²``, so the source's total flux is ``weight · Σ image`` exactly.
    """

    image: np.ndarray
    """Shape (H, W), float32, flux per stamp pixel (sums to 1 for library stamps)."""
    scale: float
    """Size of a stamp pixel on the sky. Unit: arcsec."""
    x0: float
    """Sky position of the stamp centre. Unit: arcsec."""
    y0: float
    phi: float
    """Rotation of the stamp's x axis, counter-clockwise from +x. Unit: rad."""
    weight: float = 1.0
    """Total flux in units of the image's sum."""
    distance: np.ndarray | None = None
    """Distance of every stamp pixel to the nearest lit one, shape (H, W). Unit: stamp pixel.
    Computed by :func:`with_distance`; without it the whole stamp counts as lit."""

    @property
    def radius(self) -> float:
        """Radius of the circle about ``(x0, y0)`` that holds the whole stamp. Unit: arcsec."""
        h, w = self.image.shape
        return 0.5 * float(np.hypot(h, w)) * self.scale

    def _stamp_coords(self, bx, by):
        c, s = np.cos(self.phi), np.sin(self.phi)
        dx = (np.asarray(bx, dtype=np.float64) - self.x0) / self.scale
        dy = (np.asarray(by, dtype=np.float64) - self.y0) / self.scale
        h, w = self.image.shape
        return -s * dx + c * dy + 0.5 * (h - 1), c * dx + s * dy + 0.5 * (w - 1)

    def evaluate(self, bx, by, dtype=np.float32) -> np.ndarray:
        """Surface brightness at source-plane points, shape of ``bx``. Unit: flux / arcsec²."""
        row, col = self._stamp_coords(bx, by)
        val = ndimage.map_coordinates(
            self.image, [row.ravel(), col.ravel()], order=1, mode="grid-constant", cval=0.0, prefilter=False
        )
        return (val.reshape(np.shape(bx)) * (self.weight / self.scale**2)).astype(dtype)

    def light_distance(self, bx, by) -> np.ndarray:
        """A lower bound on the distance from each point to the nearest lit stamp pixel. Unit: arcsec.

        Inside the stamp: the distance map at the nearest pixel, less 1 px (the lookup's and the
        bilinear support's reach). Outside: ``sqrt(e² + D²)`` with ``e`` the distance to the
        stamp's edge and ``D`` the map at the nearest edge point (the stamp is convex).
        """
        row, col = self._stamp_coords(bx, by)
        h, w = self.image.shape
        if self.distance is None:
            dist = np.zeros(np.shape(row))
        else:
            r_in, c_in = (
                np.clip(np.rint(row), 0, h - 1).astype(np.intp),
                np.clip(np.rint(col), 0, w - 1).astype(np.intp),
            )
            dist = self.distance[r_in, c_in].astype(np.float64)
        edge = np.hypot(
            np.maximum(np.abs(row - 0.5 * (h - 1)) - 0.5 * (h - 1), 0.0),
            np.maximum(np.abs(col - 0.5 * (w - 1)) - 0.5 * (w - 1), 0.0),
        )
        return np.maximum(np.hypot(edge, dist) - 1.0, 0.0) * self.scale

    def local_scale(self, bx, by, d) -> np.ndarray:
        """:data:`REFINE` × the stamp pixel size where a footprint of diagonal ``d`` may touch lit
        stamp pixels, inf elsewhere. Unit: arcsec. The renderer refines cells until their
        footprint is below this size."""
        near = self.light_distance(bx, by) < MARGIN * np.asarray(d)
        return np.where(near, REFINE * self.scale, np.inf)


def with_distance(source: PixelSource) -> PixelSource:
    """``source`` with its :attr:`PixelSource.distance` map (Euclidean distance transform)."""
    lit = source.image > 0
    if not lit.any():
        raise ValueError("pixel source has no lit pixel")
    return source._replace(distance=ndimage.distance_transform_edt(~lit).astype(np.float32))


# --- placing a library stamp on the sky ---------------------------------------------------------
def place(
    library: SourceLibrary, index: int, *, r_eff: float, x: float, y: float, phi: float, flip: bool, weight: float = 1.0
) -> PixelSource:
    """Stamp ``index`` scaled to half-light radius ``r_eff`` with its centroid at ``(x, y)``.

    ``flip`` mirrors the stamp's x axis before the rotation by ``phi`` (rad). Units: arcsec.
    """
    image = library.images[index]
    cx, cy = library.centroid[index]
    if flip:
        image, cx = image[:, ::-1], -cx
    scale = float(r_eff / library.r_eff_pix[index])
    c, s = np.cos(phi), np.sin(phi)
    # the centroid's stamp offset, rotated onto the sky: the inverse of PixelSource's rotation
    ox, oy = (c * cx - s * cy) * scale, (s * cx + c * cy) * scale
    return with_distance(
        PixelSource(np.ascontiguousarray(image), scale, float(x - ox), float(y - oy), float(phi), float(weight))
    )


def draw_pick(rng: np.random.Generator, n_sources: int) -> tuple[int, bool]:
    """A uniformly drawn stamp index and a fair flip."""
    return int(rng.integers(n_sources)), bool(rng.uniform() < 0.5)


def source_rng(seed: int, index: int) -> np.random.Generator:
    """The library picks' own random stream for LRG ``index``: the lenses, positions, sizes,
    rotations and brightnesses stay those of the Sérsic run with the same seed."""
    return np.random.default_rng([seed, 5, index])


# --- measuring and normalising stamps ----------------------------------------------------------
def half_light_radius(image: np.ndarray) -> tuple[float, float, float]:
    """Light centroid and circular half-light radius of a clean stamp.

    Returns
    -------
    (x, y, r_half) : float
        Centroid relative to the stamp centre ``((W-1)/2, (H-1)/2)`` and the radius of the circle
        about it that holds half of the (positive) flux, interpolated between pixels. Unit: pixel.
    """
    img = np.clip(np.asarray(image, dtype=np.float64), 0.0, None)
    total = img.sum()
    if not total > 0:
        raise ValueError("stamp holds no positive flux")
    h, w = img.shape
    yy, xx = np.mgrid[0:h, 0:w]
    cx, cy = (img * xx).sum() / total, (img * yy).sum() / total
    r = np.hypot(xx - cx, yy - cy).ravel()
    order = np.argsort(r, kind="stable")
    cum = np.cumsum(img.ravel()[order])
    r_half = float(np.interp(0.5 * total, cum, r[order]))
    return float(cx - 0.5 * (w - 1)), float(cy - 0.5 * (h - 1)), max(r_half, 0.5)


def interpolant_half_light_radius(stamp: np.ndarray, oversample: int = 4) -> float:
    """Half-light radius of the bilinear interpolant of a stamp (what :class:`PixelSource` draws).

    The interpolant is the stamp convolved with a 1-px tent, which widens a compact galaxy (by
    ≈ 9% at a half-light radius of 2 px); it is sampled at ``oversample²`` points per pixel.
    Unit: pixel.
    """
    h, w = stamp.shape
    sub = (np.arange(-oversample, (h + 1) * oversample) + 0.5) / oversample - 0.5
    row, col = np.meshgrid(sub, (np.arange(-oversample, (w + 1) * oversample) + 0.5) / oversample - 0.5, indexing="ij")
    fine = ndimage.map_coordinates(
        np.asarray(stamp, dtype=np.float64),
        [row.ravel(), col.ravel()],
        order=1,
        mode="grid-constant",
        cval=0.0,
        prefilter=False,
    ).reshape(row.shape)
    return half_light_radius(fine)[2] / oversample


def to_stamp(image: np.ndarray, size: int = STAMP_SIZE) -> tuple[np.ndarray, int]:
    """Centre a clean image on its brightest-light centroid in a ``size × size`` stamp.

    Images whose light does not fit are first binned by the smallest integer factor that makes
    the light's extent fit (flux-conserving sums of ``f × f`` pixels). Returns the stamp (float32,
    normalised to sum 1) and the binning factor.
    """
    img = np.clip(np.asarray(image, dtype=np.float64), 0.0, None)
    rows, cols = np.nonzero(img)
    if rows.size == 0:
        raise ValueError("stamp holds no positive flux")
    cx, cy, _ = half_light_radius(img)
    cx, cy = cx + 0.5 * (img.shape[1] - 1), cy + 0.5 * (img.shape[0] - 1)
    extent = max(np.abs(cols - cx).max(), np.abs(rows - cy).max()) + 1.0
    factor = max(1, int(np.ceil(2 * extent / (size - 2))))
    if factor > 1:
        pad = [(0, (-n) % factor) for n in img.shape]
        img = np.pad(img, pad).reshape(img.shape[0] // factor + (pad[0][1] > 0), factor, -1, factor)
        img = img.sum(axis=(1, 3))
        cx, cy = (cx + 0.5) / factor - 0.5, (cy + 0.5) / factor - 0.5
    out = np.zeros((size, size))
    # integer offsets that put the centroid within half a pixel of the stamp centre (size - 1) / 2
    r0, c0 = (int(np.floor(v - 0.5 * (size - 1) + 0.5)) for v in (cy, cx))
    rs, cs = slice(max(r0, 0), min(r0 + size, img.shape[0])), slice(max(c0, 0), min(c0 + size, img.shape[1]))
    out[rs.start - r0 : rs.stop - r0, cs.start - c0 : cs.stop - c0] = img[rs, cs]
    return (out / out.sum()).astype(np.float32), factor


def clean_stamp(image: np.ndarray, *, nsigma: float = 2.0, grow: int = 2) -> np.ndarray:
    """Background-subtracted galaxy with everything but its own footprint set to 0.

    The background and its noise σ are the median and MAD of the stamp's outer 4-pixel border;
    the footprint is the connected region above ``nsigma σ`` (after a 1-px Gaussian smoothing)
    that holds the pixel nearest the centre among the region's pixels, grown by ``grow`` pixels.
    """
    img = np.asarray(image, dtype=np.float64)
    border = np.concatenate([img[:4].ravel(), img[-4:].ravel(), img[4:-4, :4].ravel(), img[4:-4, -4:].ravel()])
    bg = np.median(border)
    sigma = 1.4826 * np.median(np.abs(border - bg))
    img = img - bg
    labels, n = ndimage.label(ndimage.gaussian_filter(img, 1.0) > nsigma * sigma)
    if n == 0:
        raise ValueError("no source above the background")
    h, w = img.shape
    yy, xx = np.nonzero(labels)
    nearest = np.argmin(np.hypot(yy - 0.5 * (h - 1), xx - 0.5 * (w - 1)))
    mask = ndimage.binary_dilation(labels == labels[yy[nearest], xx[nearest]], iterations=grow)
    return np.where(mask, np.clip(img, 0.0, None), 0.0)


def make_library(
    images, pixel_scales, *, psf_fwhm=None, name: str = "", size: int = STAMP_SIZE, clean: bool = True
) -> SourceLibrary:
    """A :class:`SourceLibrary` from galaxy images of any sizes and their pixel scales (arcsec)."""
    stamps, scales, reffs, cents = [], [], [], []
    for img, scale in zip(images, pixel_scales):
        stamp, factor = to_stamp(clean_stamp(img) if clean else img, size)
        cx, cy, _ = half_light_radius(stamp)
        r_half = interpolant_half_light_radius(stamp)
        stamps.append(stamp)
        scales.append(float(scale) * factor)
        reffs.append(r_half * float(scale) * factor)
        cents.append((cx, cy))
    n = len(stamps)
    if n == 0:
        raise ValueError(f"source library {name!r} holds no galaxy")
    fwhm = np.full(n, np.nan) if psf_fwhm is None else np.asarray(psf_fwhm, dtype=np.float64)
    return SourceLibrary(
        np.stack(stamps),
        np.asarray(scales),
        np.asarray(reffs),
        np.asarray(cents, dtype=np.float64).reshape(n, 2),
        fwhm,
        name,
    )


# --- reading and writing -----------------------------------------------------------------------
def save_library(library: SourceLibrary, path, *, provenance: str = "") -> None:
    """Write a library as a compressed npz (images stored as float16), atomically."""
    from shortcutgates.data.io import atomic_path

    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(
            fh,
            images=library.images.astype(np.float16),
            pixel_scale=library.pixel_scale,
            r_eff=library.r_eff,
            centroid=library.centroid,
            psf_fwhm=library.psf_fwhm,
            provenance=np.array(provenance),
        )


def read_library_npz(path, name: str | None = None) -> SourceLibrary:
    """Read a library written by :func:`save_library` (no pickles)."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in _KEYS if k not in z.files]
        if missing:
            raise ValueError(f"{path}: not a source library (missing {', '.join(missing)})")
        images = z["images"].astype(np.float32)
        images /= images.sum(axis=(1, 2), keepdims=True)
        return SourceLibrary(
            images,
            z["pixel_scale"].astype(np.float64),
            z["r_eff"].astype(np.float64),
            z["centroid"].astype(np.float64),
            z["psf_fwhm"].astype(np.float64),
            name or str(path),
        )


def _require_astropy(what):
    try:
        from astropy.io import fits
    except ImportError:  # pragma: no cover - astropy is a dev dependency
        raise ImportError(f"{what} needs astropy: pip install astropy") from None
    return fits


def _fits_pixel_scale(header) -> float | None:
    for key in ("PIXSCALE", "PIXSCAL1"):
        if key in header:
            return float(header[key])
    for key in ("CD1_1", "CDELT1"):
        if key in header:
            return abs(float(header[key])) * 3600.0
    return None


def read_stamp_directory(directory, *, clean: bool = True, size: int = STAMP_SIZE) -> SourceLibrary:
    """A library from a directory of ``*.npz`` and ``*.fits`` / ``*.fits.gz`` galaxy stamps.

    An npz stamp holds ``image`` (2-D) and optionally ``pixel_scale`` (arcsec / pixel); a FITS
    stamp has its image in the primary HDU and the scale in ``PIXSCALE`` (arcsec) or ``CD1_1`` /
    ``CDELT1`` (deg). A ``library.json`` in the directory with ``{"pixel_scale": ...}`` gives the
    scale of stamps that carry none. With ``clean`` each stamp is background-subtracted and cut
    to its central galaxy's footprint (:func:`clean_stamp`).
    """
    directory = Path(directory)
    files = sorted(
        p for p in directory.iterdir() if p.suffix == ".npz" or p.name.endswith((".fits", ".fits.gz", ".fit"))
    )
    if not files:
        raise ValueError(f"{directory}: no *.npz or *.fits stamps")
    meta = directory / "library.json"
    default_scale = json.loads(meta.read_text()).get("pixel_scale") if meta.exists() else None
    images, scales = [], []
    for f in files:
        if f.suffix == ".npz":
            with np.load(f, allow_pickle=False) as z:
                if "image" not in z.files:
                    raise ValueError(f"{f}: npz stamp has no 'image' array")
                image = z["image"]
                scale = float(z["pixel_scale"]) if "pixel_scale" in z.files else default_scale
        else:
            with _require_astropy("reading FITS stamps").open(f) as hdul:
                image, scale = hdul[0].data, _fits_pixel_scale(hdul[0].header) or default_scale
        if image is None or np.ndim(image) != 2 or not np.all(np.isfinite(image)):
            raise ValueError(f"{f}: the stamp must be a finite 2-D image")
        if scale is None or not float(scale) > 0:
            raise ValueError(
                f"{f}: no pixel scale (give 'pixel_scale' in the npz, PIXSCALE in the "
                f'FITS header, or {{"pixel_scale": ...}} in {meta})'
            )
        images.append(image)
        scales.append(float(scale))
    return make_library(images, scales, name=str(directory), size=size, clean=clean)


def read_galsim_catalog(path, *, limit: int | None = None, clean: bool = True, size: int = STAMP_SIZE) -> SourceLibrary:
    """A library from a GalSim COSMOS real-galaxy catalogue (``real_galaxy_catalog_*.fits``).

    Each catalogue row names ``GAL_FILENAME`` / ``GAL_HDU`` (the galaxy image, in the catalogue's
    directory) and ``PIXEL_SCALE`` (arcsec); ``PSF_FILENAME`` / ``PSF_HDU``, when present, give
    the HST PSF whose FWHM is recorded. ``limit`` reads the first rows only.
    """
    fits = _require_astropy("reading a GalSim catalogue")
    path = Path(path)
    with fits.open(path) as hdul:
        table = hdul[1].data
        cols = set(table.columns.names)
        for col in ("GAL_FILENAME", "GAL_HDU", "PIXEL_SCALE"):
            if col not in cols:
                raise ValueError(f"{path}: not a GalSim real-galaxy catalogue (no column {col})")
        rows = table[:limit] if limit is not None else table
        entries = [
            (
                str(r["GAL_FILENAME"]).strip(),
                int(r["GAL_HDU"]),
                float(r["PIXEL_SCALE"]),
                (str(r["PSF_FILENAME"]).strip(), int(r["PSF_HDU"])) if "PSF_FILENAME" in cols else None,
            )
            for r in rows
        ]
    images, fwhm, opened = [], [], {}
    try:
        for i, (gal_file, hdu, scale, psf) in enumerate(entries):
            for fname in (gal_file,) + ((psf[0],) if psf else ()):
                if fname not in opened:
                    if not (path.parent / fname).exists():
                        raise ValueError(f"{path}: row {i}: file {fname} not found beside the catalogue")
                    opened[fname] = fits.open(path.parent / fname)
            images.append(np.asarray(opened[gal_file][hdu].data, dtype=np.float64))
            fwhm.append(_moment_fwhm(opened[psf[0]][psf[1]].data) * scale if psf else np.nan)
    finally:
        for h in opened.values():
            h.close()
    return make_library(images, [e[2] for e in entries], psf_fwhm=fwhm, name=str(path), size=size, clean=clean)


def _moment_fwhm(psf) -> float:
    """FWHM of a PSF image from its second moments (Gaussian equivalent). Unit: pixel."""
    p = np.clip(np.asarray(psf, dtype=np.float64), 0.0, None)
    yy, xx = np.mgrid[0 : p.shape[0], 0 : p.shape[1]]
    t = p.sum()
    cx, cy = (p * xx).sum() / t, (p * yy).sum() / t
    var = (p * ((xx - cx) ** 2 + (yy - cy) ** 2)).sum() / t / 2.0
    return float(2.0 * np.sqrt(2.0 * np.log(2.0) * var))


@functools.lru_cache(maxsize=4)
def load_library(spec: str) -> SourceLibrary:
    """The library named by ``spec``: a shipped name (``"hdf"``), a library npz, a directory of
    stamps or a GalSim catalogue FITS file. Cached per spec."""
    if spec in SHIPPED:
        ref = resources.files(__package__).joinpath("data", SHIPPED[spec])
        with resources.as_file(ref) as p:
            return read_library_npz(p, name=spec)
    path = Path(spec)
    if not path.exists():
        raise ValueError(
            f"sources: {spec!r} is neither 'sersic', a shipped library ({', '.join(SHIPPED)}) nor an existing path"
        )
    if path.is_dir():
        return read_stamp_directory(path)
    if path.suffix == ".npz":
        return read_library_npz(path)
    if path.name.endswith((".fits", ".fits.gz", ".fit")):
        return read_galsim_catalog(path)
    raise ValueError(f"sources: {spec!r}: expected a directory, a library .npz or a GalSim catalogue .fits")
