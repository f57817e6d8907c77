"""Model input from a manifest: decode, preprocess once, cache; the rows of a training split.

The pipeline is ``blob -> (3, H, W) nanomaggies -> preprocess -> float32 array``
(docs/design.md#preprocessing), done once per (manifest, rows, preprocessing) and kept in memory
or in an on-disk ``.npy`` cache that is memory-mapped on later runs. Blobs are decoded by
:func:`shortcutgates.data.codec.decode_stamps` (its zlib fast path and its bad-row policy: here the
first bad row is an error naming file, row and column). Augmentations are *not* applied here: they
run on torch batches in training (:mod:`shortcutgates.model.augment`), so the cached array is the
deterministic model input. This module does not import torch.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from shortcutgates.data import io as sgio
from shortcutgates.data import manifest as sgmanifest
from shortcutgates.data.codec import DecodeStats, decode_stamps
from shortcutgates.model.preprocess import get_preprocessor
from shortcutgates.data.schema import (
    IMAGE_COLUMN,
    LABEL_COLUMN,
    LRG_ID_COLUMN,
    POINTER_COLUMNS,
    SPLIT_COLUMN,
    DataError,
)

CACHE_VERSION = 1
"""Bumped whenever decoding or preprocessing changes what a cached array holds."""

WEIGHT_COLUMN = "weight"
"""Optional per-row loss weight written by ``build --positives-per-lrg all``."""


# --- manifest rows -> raw images -----------------------------------------------------------
def iter_raw_chunks(frame: pd.DataFrame, chunk: int = 512):
    """Yield ``(positions, images (n, 3, H, W) nanomaggies, DecodeStats)`` covering every row of ``frame``.

    Each row's image comes from :func:`shortcutgates.data.manifest.image_source`, the rule the gates and
    ``data_integrity`` follow too (inline blob when present, else the pointer). Inline rows are
    decoded in chunks of ``chunk``; the others one file at a time (the source file a pointer
    names, or the manifest file holding a blob left on disk), so memory holds at most one column.
    """
    source = sgmanifest.image_source(frame)
    pos_inline = np.flatnonzero(source == "inline")
    files = frame["manifest_file"].to_numpy() if "manifest_file" in frame else None
    mrows = frame["manifest_row"].to_numpy() if "manifest_row" in frame else np.arange(len(frame))
    column = frame[IMAGE_COLUMN].to_numpy() if len(pos_inline) else None
    for start in range(0, len(pos_inline), chunk):
        pos = pos_inline[start : start + chunk]
        blobs = column[pos]
        decoded = decode_stamps(
            blobs, files=None if files is None else files[pos], rows=mrows[pos], columns=IMAGE_COLUMN
        )
        yield pos, decoded.images, decoded.stats
    pos_other = np.flatnonzero(source != "inline")
    if len(pos_other) == 0:
        return
    if files is None and not (source == "pointer").all():
        i = int(pos_other[(source[pos_other] != "pointer")][0])
        missing = [c for c in POINTER_COLUMNS if c not in frame]
        raise DataError(
            f"row has no {IMAGE_COLUMN} and no pointer column(s) {', '.join(missing)}",
            row=int(mrows[i]),
            column=IMAGE_COLUMN,
        )
    holder = np.full(len(frame), "", object)  # the file each row's blob is read from
    if files is not None:
        holder[:] = files
    pointer = source == "pointer"
    if pointer.any():
        holder[pointer] = frame["source_path"].to_numpy(object)[pointer]
    holder = holder[pos_other].astype(str)
    for path in sorted(set(holder)):
        pos = pos_other[holder == path]
        fetched = sgmanifest.row_blobs(frame.iloc[pos])
        decoded = decode_stamps(fetched.blobs, files=fetched.files, rows=fetched.rows, columns=fetched.columns)
        yield pos, decoded.images, decoded.stats


# --- hashing and cache keys ----------------------------------------------------------------
def manifest_sha256(path) -> str:
    """Hex sha256 identifying a manifest: its parquet files (relative names and bytes) and manifest.json.

    Pointer manifests also hash the size and mtime of each source file they name, so editing the
    paired input invalidates caches built from it.
    """
    root = Path(path)
    h = hashlib.sha256(f"shortcutgates.manifest/{CACHE_VERSION}".encode())
    files = sgio.list_parquet_files(root)
    extra = [root / "manifest.json"] if root.is_dir() and (root / "manifest.json").exists() else []
    for file in files + extra:
        rel = file.relative_to(root) if root.is_dir() else Path(file.name)
        h.update(str(rel).encode() + b"\0")
        h.update(bytes.fromhex(sgio.file_sha256(file)))
    for src in _source_files(files, root):
        st = os.stat(src)
        h.update(f"{src}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()


def _source_files(files: Sequence[Path], root: Path) -> list[str]:
    """Source files the manifest's pointers name, relative ones resolved as :func:`read_manifest` does."""
    import json

    import pyarrow.parquet as pq

    meta_file = root / "manifest.json" if root.is_dir() else root.parent / "manifest.json"
    try:
        meta = json.loads(meta_file.read_text()) if meta_file is not None and meta_file.exists() else None
    except (ValueError, OSError):
        meta = None
    base = sgmanifest.source_root_of(meta if isinstance(meta, dict) else None, root)
    out: set[str] = set()
    for file in files:
        if "source_path" in pq.read_schema(file).names:
            col = pq.read_table(file, columns=["source_path"]).column(0)
            out.update(str(base / s) for s in col.unique().to_pylist() if s is not None)
    return sorted(s for s in out if os.path.exists(s))


def rows_key(frame: pd.DataFrame, manifest_sha: str, preprocess: str) -> str:
    """Cache key of a selection of manifest rows under one preprocessing mode."""
    h = hashlib.sha256(f"{manifest_sha}\0{preprocess}\0{CACHE_VERSION}\0".encode())
    files = frame["manifest_file"].astype(str).map(lambda s: Path(s).name) if "manifest_file" in frame else None
    h.update(b"" if files is None else "\0".join(files).encode())
    h.update(frame["manifest_row"].to_numpy(np.int64).tobytes() if "manifest_row" in frame else b"")
    return h.hexdigest()


# --- preprocessing once, cached ------------------------------------------------------------
def preprocess_frame(
    frame: pd.DataFrame, preprocess: str, *, out: np.ndarray | None = None, progress: bool = False
) -> tuple[np.ndarray, DecodeStats]:
    """Decode and preprocess every row of ``frame`` into ``(N, 3, H, W)`` float32 model input.

    ``out`` (e.g. an ``open_memmap``) receives the result when given; otherwise it is allocated
    once the stamp size is known.
    """
    from tqdm.auto import tqdm

    fn = get_preprocessor(preprocess)
    n_fast = n_fallback = 0
    bar = tqdm(total=len(frame), desc=f"decode+{preprocess}", unit="stamp", disable=not progress, leave=False)
    for pos, images, stats in iter_raw_chunks(frame):
        if out is None:
            out = np.empty((len(frame),) + images.shape[1:], np.float32)
        if images.shape[1:] != out.shape[1:]:
            i = int(pos[0])
            raise DataError(
                f"stamp shape {images.shape[2:]} differs from the first rows' {out.shape[2:]}",
                file=frame["manifest_file"].iloc[i] if "manifest_file" in frame else None,
                row=int(frame["manifest_row"].iloc[i]) if "manifest_row" in frame else i,
            )
        try:
            out[pos] = fn(images)
        except ValueError as exc:  # a constant stamp cannot be normalised: say which row
            raise _unnormalisable(frame, pos, images, exc) from None
        n_fast += stats.n_fast
        n_fallback += stats.n_fallback
        bar.update(len(pos))
    bar.close()
    if out is None:
        out = np.zeros((0, 3, 0, 0), np.float32)
    return out, DecodeStats(n_fast, n_fallback)


def row_location(frame: pd.DataFrame, i: int) -> tuple:
    """(file, row, column) where row ``i`` of ``frame`` keeps its image: inline blob or pointer target."""
    if sgmanifest.image_source(frame.iloc[[i]])[0] == "pointer":
        return frame["source_path"].iloc[i], int(frame["source_row"].iloc[i]), frame["source_column"].iloc[i]
    file = frame["manifest_file"].iloc[i] if "manifest_file" in frame else None
    return file, int(frame["manifest_row"].iloc[i]) if "manifest_row" in frame else i, IMAGE_COLUMN


def _unnormalisable(frame: pd.DataFrame, pos: np.ndarray, images: np.ndarray, exc: Exception) -> DataError:
    """Locate the first stamp of a chunk whose annulus MAD is 0 (raw_robust cannot normalise it)."""
    from shortcutgates.model.preprocess import annulus_median_mad

    _, mad = annulus_median_mad(images)
    bad = np.flatnonzero(~(mad.reshape(len(images), -1) > 0).all(axis=1))
    if len(bad) == 0:
        return DataError(str(exc))
    i = int(pos[bad[0]])
    file, row, column = row_location(frame, i)
    return DataError(
        "outer-annulus MAD is 0 (constant or all-zero stamp; it cannot be normalised)",
        file=file,
        row=row,
        column=column,
    )


def cached_inputs(
    frame: pd.DataFrame, preprocess: str, *, cache_dir=None, key: str | None = None, progress: bool = False
) -> np.ndarray:
    """Preprocessed model input for ``frame``, read from ``cache_dir/<key>.npy`` when present.

    Without ``cache_dir`` the array is computed in memory. With it, the first call writes the
    array atomically and later calls memory-map it read-only.
    """
    if cache_dir is None or key is None:
        return preprocess_frame(frame, preprocess, progress=progress)[0]
    path = Path(cache_dir) / f"{key}.npy"
    if path.exists():
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        if arr.shape[0] == len(frame) and arr.dtype == np.float32:
            return arr
    images, _ = preprocess_frame(frame, preprocess, progress=progress)
    with sgio.atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.lib.format.write_array(fh, np.ascontiguousarray(images), allow_pickle=False)
    return np.load(path, mmap_mode="r", allow_pickle=False)


CACHED_SPLITS = ("train", "val")
"""Splits ``shortcutgates build --cache`` decodes ahead: the ones ``shortcutgates train`` reads."""


def fill_cache(
    manifest, cache_dir, preprocess: str = "raw_robust", *, splits=CACHED_SPLITS, progress: bool = False
) -> list[Path]:
    """Decode and preprocess the ``splits`` of a manifest into ``cache_dir`` (``build --cache``).

    Each split's array is written under the key ``shortcutgates train --cache-dir`` looks up
    (:func:`rows_key` of the split's rows, the manifest's sha256 and ``preprocess``), so training
    memory-maps it instead of decoding; a split without rows is skipped. Returns the cache files.
    """
    frame = sgmanifest.read_manifest(manifest).frame
    sha = manifest_sha256(manifest)
    paths = []
    for split in splits:
        rows = select_splits(frame, split)
        if rows.empty:
            continue
        key = rows_key(rows, sha, preprocess)
        cached_inputs(rows, preprocess, cache_dir=cache_dir, key=key, progress=progress)
        paths.append(Path(cache_dir) / f"{key}.npy")
    return paths


# --- the Dataset ---------------------------------------------------------------------------
def select_splits(frame: pd.DataFrame, splits: Sequence[str] | str | None) -> pd.DataFrame:
    """Rows whose ``split`` is in ``splits`` (all rows when None), index reset."""
    if splits is None:
        return frame.reset_index(drop=True)
    splits = [splits] if isinstance(splits, str) else list(splits)
    return frame[frame[SPLIT_COLUMN].isin(splits)].reset_index(drop=True)


def row_weights(frame: pd.DataFrame) -> np.ndarray:
    """Per-row loss weight from the manifest's ``weight`` column (1 when absent); must be finite, ≥ 0."""
    if WEIGHT_COLUMN not in frame:
        return np.ones(len(frame), np.float32)
    w = pd.to_numeric(frame[WEIGHT_COLUMN], errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"weight must be a finite number >= 0 (got {frame[WEIGHT_COLUMN].iloc[i]!r})",
            file=frame["manifest_file"].iloc[i] if "manifest_file" in frame else None,
            row=int(frame["manifest_row"].iloc[i]) if "manifest_row" in frame else i,
            column=WEIGHT_COLUMN,
        )
    return w.astype(np.float32)


class StampDataset:
    """The preprocessed stamps of a selection of manifest rows, with their labels and weights.

    Training (:mod:`shortcutgates.model.train`) gathers batches from these arrays directly.

    Parameters
    ----------
    frame : DataFrame
        Manifest rows (from :func:`shortcutgates.data.manifest.read_manifest`), already restricted to the
        wanted splits.
    preprocess : str
        Mode of :mod:`shortcutgates.model.preprocess` (``raw_robust`` or ``residual``).
    cache_dir, key :
        On-disk decoded cache (see :func:`cached_inputs`); None keeps it in memory.

    Attributes
    ----------
    images : ndarray (N, 3, H, W) float32
        Model input, in the units of the preprocessing (annulus MADs); may be a read-only memmap.
    labels : ndarray (N,) float32
        1 lens, 0 non-lens.
    weights : ndarray (N,) float32
        The manifest's per-row ``weight`` (1 when absent).
    groups : ndarray (N,) str or None
        ``lrg_id`` when the manifest has it.
    """

    def __init__(
        self, frame: pd.DataFrame, preprocess: str = "raw_robust", *, cache_dir=None, key=None, progress: bool = False
    ):
        frame = frame.reset_index(drop=True)
        self.preprocess = preprocess
        self.images = cached_inputs(frame, preprocess, cache_dir=cache_dir, key=key, progress=progress)
        self.frame = frame.drop(columns=[IMAGE_COLUMN], errors="ignore")  # blobs are decoded; free them
        self.labels = self.frame[LABEL_COLUMN].to_numpy(np.float32)
        self.weights = row_weights(self.frame)
        self.groups = self.frame[LRG_ID_COLUMN].astype(str).to_numpy() if LRG_ID_COLUMN in self.frame else None

    @classmethod
    def from_manifest(cls, path, splits=None, preprocess: str = "raw_robust", *, cache_dir=None, **kw):
        """Read a manifest, keep ``splits``, and build the dataset (cache keyed by the manifest sha256)."""
        frame = select_splits(sgmanifest.read_manifest(path).frame, splits)
        key = rows_key(frame, manifest_sha256(path), preprocess) if cache_dir is not None else None
        return cls(frame, preprocess, cache_dir=cache_dir, key=key, **kw)

    def __len__(self) -> int:
        return len(self.frame)
