"""Column names, npz keys, geometry constants and the error type raised on bad input.

Everything that other people's code reads (docs/design.md#paired-input-format, #manifest) is named here once.
"""

from __future__ import annotations

BANDS: tuple[str, ...] = ("g", "r", "z")
"""Band order of every image array: axis 0 of a ``(3, H, W)`` stamp is g, r, z."""

NPZ_KEYS: tuple[str, ...] = tuple(f"image_{b}" for b in BANDS)
"""Keys of an npz stamp blob, each a float32 ``(H, W)`` array in nanomaggies."""

PIXEL_SCALE_ARCSEC = 0.262
"""Legacy Surveys pixel scale. Unit: arcsec / pixel."""

ZERO_POINT_AB = 22.5
"""AB zero point of one nanomaggy: ``mag = 22.5 - 2.5 log10(flux / nmgy)``."""

SPLITS: tuple[str, ...] = ("train", "val", "test")
"""Splits of a paired input (from a parent directory or the ``region_split`` column)."""

MANIFEST_SPLITS: tuple[str, ...] = ("train", "val", "test", "test_paired")
"""Splits of a built manifest; ``test_paired`` holds pairs of held-out LRGs (cross-test E3)."""

SHARED_POSITIVE_SPLITS: tuple[str, str] = ("test", "test_paired")
"""Splits that may list the same positive image, once each: an unpaired build's ``test`` positives are
its ``test_paired`` positives, so the cross-test gap compares the same lenses against unpaired and
paired negatives (a paired difference; docs/design.md#splits). Their negatives stay LRG-disjoint."""

# --- paired input (docs/design.md#paired-input-format) ------------------------------------
STAMP_COLUMN = "stamp_npz"
CTRL_COLUMN = "ctrl_stamp_npz"
BLOB_COLUMNS: tuple[str, ...] = (STAMP_COLUMN, CTRL_COLUMN)
POSITION_COLUMNS: tuple[str, ...] = ("ra", "dec")
PAIRED_REQUIRED: tuple[str, ...] = POSITION_COLUMNS + BLOB_COLUMNS

INJECTION_TRUTH: tuple[str, ...] = (
    "theta_e_arcsec",
    "src_x_arcsec",
    "src_y_arcsec",
    "src_reff_arcsec",
    "src_dmag",
    "lens_e",
    "lens_phi_rad",
    "shear",
    "arc_snr",
    "magnification",
    "shear_phi_rad",
    "src_n",
    "src_q",
    "src_phi_rad",
)
"""Injection truth: describes the arc, so it is NaN for negatives and never a feature."""

CONDITIONS: tuple[str, ...] = (
    "psf_fwhm_used_g",
    "psf_fwhm_used_r",
    "psf_fwhm_used_z",
    "psfsize_r",
    "psfdepth_r",
    "ebv",
    "psf_bin",
    "depth_bin",
)
"""Observing conditions: properties of the LRG's cutout, valid for both classes."""

LRG_TRUTH: tuple[str, ...] = ("lrg_mag_r", "lrg_mag_z", "lrg_redshift", "lrg_reff_arcsec", "lrg_q")
"""LRG truth written by the simulator (real survey data carry none of these)."""

LRG_MEASURED: tuple[str, ...] = (
    "total_mag_r",
    "core_mag_r",
    "concentration_r",
    "half_light_radius_r",
    "core_flux_g",
    "core_flux_r",
    "core_flux_z",
    "half_light_radius_g",
    "half_light_radius_z",
)
"""LRG properties measured from the control images by ``shortcutgates build`` (the first four always,
the rest when matched on): survey data carry no LRG photometry, so these stand in for magnitude and size."""

PROVENANCE: tuple[str, ...] = ("brickname", "task_id", "cutout_ok")

REGION_SPLIT_COLUMN = "region_split"
CUTOUT_OK_COLUMN = "cutout_ok"

# --- built manifest (docs/design.md#manifest) ---------------------------------------------
LABEL_COLUMN = "label"
SPLIT_COLUMN = "split"
LRG_ID_COLUMN = "lrg_id"
IMAGE_COLUMN = "image_npz"
POINTER_COLUMNS: tuple[str, ...] = ("source_path", "source_row", "source_column")
MANIFEST_REQUIRED: tuple[str, ...] = (LABEL_COLUMN, SPLIT_COLUMN, "ra", "dec")
MANIFEST_FILE = "manifest.json"

PROPERTY_COLUMNS: tuple[str, ...] = CONDITIONS + LRG_TRUTH
"""Columns that describe the LRG or its observation; usable as balance and C2ST features."""


class DataError(ValueError):
    """Bad input data, located by file, row and column.

    The message is one line: ``"<file>: row <row>, column '<column>': <problem>"``, with the
    parts that are unknown left out.
    """

    def __init__(self, problem: str, *, file=None, row=None, column=None, hint: str | None = None):
        self.problem = problem
        self.file = None if file is None else str(file)
        self.row = row
        self.column = column
        self.hint = hint
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.file is not None:
            where.append(self.file)
        loc = []
        if self.row is not None:
            loc.append(f"row {self.row}")
        if self.column is not None:
            loc.append(f"column '{self.column}'")
        head = ": ".join(where + ([", ".join(loc)] if loc else []))
        msg = f"{head}: {self.problem}" if head else self.problem
        if self.hint:
            msg += f" ({self.hint})"
        return msg

    def located(self, *, file=None, row=None, column=None) -> "DataError":
        """Return a copy with the unknown parts of the location filled in."""
        return DataError(
            self.problem,
            file=self.file if self.file is not None else file,
            row=self.row if self.row is not None else row,
            column=self.column if self.column is not None else column,
            hint=self.hint,
        )
