"""Loading a manifest for training and the gates: fast npz decoding, preprocessing once, caching.

The pipeline is ``blob -> (3, H, W) nanomaggies -> preprocess (docs/design.md#preprocessing) -> float32 array``, done
once per (manifest, rows, preprocessing) and kept in memory or in an on-disk ``.npy`` cache that is
memory-mapped on later runs. Augmentations are *not* applied here: they run on batches in torch
(:mod:`shortcutgates.augment`), so the cached array is the deterministic model input.

Fast decoding
-------------
``np.load`` on an npz builds a ``zipfile.ZipFile`` and parses every member through Python file
objects. :func:`decode_stamp_fast` reads the zip central directory with ``struct``, inflates each
band with ``zlib`` and maps the ``.npy`` payload with ``np.frombuffer``. It checks what
:func:`shortcutgates.io.decode_stamp` checks (keys, 2-D numeric bands of one shape, CRC, finite
values). Any blob it does not fully understand (gzip wrapper, zip64 directory, encryption, an
unusual ``.npy`` header) is handed to :func:`shortcutgates.io.decode_stamp`, which decodes or
raises a :class:`~shortcutgates.schema.DataError`; the number of such blobs is reported in
:class:`DecodeStats`, never hidden.
"""

from __future__ import annotations

import ast
import hashlib
import os
import struct
import zlib
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from . import io as sgio

from . import manifest as sgmanifest
from .preprocess import get_preprocessor
from .schema import IMAGE_COLUMN, LABEL_COLUMN, LRG_ID_COLUMN, NPZ_KEYS, POINTER_COLUMNS, SPLIT_COLUMN, DataError

CACHE_VERSION = 1
"""Bumped whenever decoding or preprocessing changes what a cached array holds."""

WEIGHT_COLUMN = "weight"
"""Optional per-row loss weight written by ``build --positives-per-lrg all``."""

_EOCD = b"PK\x05\x06"
_CDIR = struct.Struct("<IHHHHHHIIIHHHHHII")  # central directory file header, 46 bytes
_LOCAL = struct.Struct("<IHHHHHIIIHH")  # local file header, 30 bytes
_MEMBERS = tuple(k + ".npy" for k in NPZ_KEYS)
_HEADERS: dict[bytes, tuple[np.dtype, tuple[int, int], bool]] = {}


class _Fallback(Exception):
    """The fast path does not handle this blob; io.decode_stamp decides."""


class DecodeStats(NamedTuple):
    """How the blobs of one decoding pass were decoded."""

    n_fast: int
    """Blobs decoded by the zlib fast path."""
    n_fallback: int
    """Blobs handed to :func:`shortcutgates.io.decode_stamp` (valid but unusual, e.g. gzip-wrapped)."""


# --- fast npz decoding ---------------------------------------------------------------------
def _zip_members(blob: bytes) -> dict[bytes, tuple]:
    """Name -> (method, crc, compressed size, uncompressed size, header offset, name) from the central dir."""
    end = blob.rfind(_EOCD, max(0, len(blob) - 65_557))
    if end < 0 or len(blob) < end + 22:
        raise _Fallback
    n_total, _, cd_offset = struct.unpack_from("<HII", blob, end + 10)
    if n_total == 0xFFFF or cd_offset == 0xFFFFFFFF:
        raise _Fallback  # zip64 directory
    members, pos = {}, cd_offset
    for _ in range(n_total):
        if pos + 46 > len(blob):
            raise _Fallback
        f = _CDIR.unpack_from(blob, pos)
        if f[0] != 0x02014B50 or f[3] & 0x1 or 0xFFFFFFFF in (f[8], f[9], f[16]):
            raise _Fallback  # bad signature, encrypted, or zip64 sizes
        name = blob[pos + 46 : pos + 46 + f[10]]
        members[name] = (f[4], f[7], f[8], f[9], f[16], name)
        pos += 46 + f[10] + f[11] + f[12]
    return members


def _member_bytes(blob: bytes, entry: tuple) -> bytes:
    method, crc, csize, usize, offset, name = entry
    if offset + 30 > len(blob):
        raise _Fallback
    head = _LOCAL.unpack_from(blob, offset)
    if head[0] != 0x04034B50 or blob[offset + 30 : offset + 30 + head[9]] != name:
        raise _Fallback  # zipfile refuses a local name that differs from the directory's: let io decide
    start = offset + 30 + head[9] + head[10]
    raw = blob[start : start + csize]
    if len(raw) != csize:
        raise _Fallback
    if method == 8:
        try:
            data = zlib.decompress(raw, -15, usize or 1)
        except zlib.error:
            raise _Fallback from None
    elif method == 0:
        data = raw
    else:
        raise _Fallback
    if len(data) != usize or zlib.crc32(data) != crc:
        raise _Fallback
    return data


def _npy_header(header: bytes) -> tuple[np.dtype, tuple[int, int], bool]:
    """Parse (and memoise) an ``.npy`` header dict; only plain numeric 2-D arrays are accepted."""
    parsed = _HEADERS.get(header)
    if parsed is not None:
        return parsed
    try:
        d = ast.literal_eval(header.decode("latin1"))
        dtype = np.dtype(d["descr"]) if isinstance(d["descr"], str) else None
        shape = tuple(int(s) for s in d["shape"])
        fortran = bool(d["fortran_order"])
    except Exception:
        raise _Fallback from None
    if dtype is None or dtype.kind not in "fiu" or dtype.hasobject or len(shape) != 2:
        raise _Fallback
    if len(_HEADERS) < 256:
        _HEADERS[header] = (dtype, shape, fortran)
    return dtype, shape, fortran


def _npy_array(data: bytes) -> np.ndarray:
    if data[:6] != b"\x93NUMPY":
        raise _Fallback
    if data[6] == 1:
        (hlen,), start = struct.unpack_from("<H", data, 8), 10
    elif data[6] in (2, 3):
        (hlen,), start = struct.unpack_from("<I", data, 8), 12
    else:
        raise _Fallback
    dtype, shape, fortran = _npy_header(data[start : start + hlen])
    count = shape[0] * shape[1]
    if len(data) - start - hlen != count * dtype.itemsize:
        raise _Fallback
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=start + hlen)
    return arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)


def _fast_bands(blob) -> list[np.ndarray]:
    if not isinstance(blob, bytes) or blob[:2] != b"PK":
        raise _Fallback
    members = _zip_members(blob)
    try:
        entries = [members[name.encode()] for name in _MEMBERS]
    except KeyError:
        raise _Fallback from None
    bands = [_npy_array(_member_bytes(blob, e)) for e in entries]
    if len({b.shape for b in bands}) != 1:
        raise _Fallback
    return bands


def decode_stamp_fast(blob, *, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Decode one npz stamp blob to float32 ``(3, H, W)`` (nanomaggies), validating like ``io.decode_stamp``.

    Raises
    ------
    DataError
        As :func:`shortcutgates.io.decode_stamp` (unlocated).
    """
    images, _ = decode_blobs([blob])
    if shape is not None and images.shape[2:] != tuple(shape):
        return sgio.decode_stamp(blob, shape=shape)  # raises the shape error
    return images[0]


def _locate(err: DataError, i: int, files, rows, columns) -> DataError:
    return err.located(file=None if files is None else files[i], row=None if rows is None else int(rows[i]),
                       column=None if columns is None else columns[i])


def decode_blobs(blobs: Sequence, *, files=None, rows=None, columns=None) -> tuple[np.ndarray, DecodeStats]:
    """Decode many blobs into ``(N, 3, H, W)`` float32 with the fast path; the first bad one raises.

    Bands are written straight into the output; the finite-value check runs once over the whole
    batch, and a blob that fails it is re-decoded by ``io.decode_stamp`` for the exact error.

    Parameters
    ----------
    blobs : sequence of bytes
    files, rows, columns : sequence, optional
        Per-blob location used in the :class:`DataError` of a bad blob.
    """
    images, shape, n_fast = None, None, 0
    for i, blob in enumerate(blobs):
        try:
            bands = _fast_bands(blob)
            if shape is not None and bands[0].shape != shape:
                raise _Fallback
        except _Fallback:
            try:
                bands = sgio.decode_stamp(blob, shape=shape)
            except DataError as err:
                raise _locate(err, i, files, rows, columns) from None
        else:
            n_fast += 1
        if images is None:
            shape = bands[0].shape
            images = np.empty((len(blobs), len(NPZ_KEYS)) + shape, np.float32)
        for b, band in enumerate(bands):
            images[i, b] = band
    if images is None:
        return np.zeros((0, 3, 0, 0), np.float32), DecodeStats(0, 0)
    finite = np.isfinite(images.reshape(len(images), -1)).all(axis=1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        try:
            sgio.decode_stamp(blobs[i], shape=shape)
        except DataError as err:
            raise _locate(err, i, files, rows, columns) from None
        raise _locate(DataError("stamp has values beyond the float32 range"), i, files, rows, columns)
    return images, DecodeStats(n_fast, len(blobs) - n_fast)


# --- manifest rows -> raw images -----------------------------------------------------------
def _inline_mask(frame: pd.DataFrame) -> np.ndarray:
    if IMAGE_COLUMN in frame:
        return frame[IMAGE_COLUMN].notna().to_numpy()
    return np.zeros(len(frame), bool)


def iter_raw_chunks(frame: pd.DataFrame, chunk: int = 512):
    """Yield ``(positions, images (n, 3, H, W) nanomaggies, DecodeStats)`` covering every row of ``frame``.

    Inline rows are decoded in chunks of ``chunk``; pointer rows one source file at a time, so
    memory holds at most one source column.
    """
    inline = _inline_mask(frame)
    pos_inline = np.flatnonzero(inline)
    files = frame["manifest_file"].to_numpy() if "manifest_file" in frame else None
    mrows = frame["manifest_row"].to_numpy() if "manifest_row" in frame else np.arange(len(frame))
    column = frame[IMAGE_COLUMN].to_numpy() if len(pos_inline) else None
    for start in range(0, len(pos_inline), chunk):
        pos = pos_inline[start : start + chunk]
        blobs = column[pos]
        images, stats = decode_blobs(blobs, files=None if files is None else files[pos], rows=mrows[pos],
                                     columns=[IMAGE_COLUMN] * len(pos))
        yield pos, images, stats
    pos_ptr = np.flatnonzero(~inline)
    if len(pos_ptr) == 0:
        return
    missing = [c for c in POINTER_COLUMNS[:2] if c not in frame]
    if missing:
        i = int(pos_ptr[0])
        raise DataError(f"row has no {IMAGE_COLUMN} and no pointer column(s) {', '.join(missing)}",
                        file=None if files is None else files[i], row=int(mrows[i]), column=IMAGE_COLUMN)
    sub = frame.iloc[pos_ptr]
    src = sub["source_path"].astype(str).to_numpy()
    for path in sorted(set(src)):
        pos = pos_ptr[src == path]
        part = frame.iloc[pos]
        blobs = sgio.read_blobs(part)
        images, stats = decode_blobs(blobs, files=[path] * len(pos), rows=part["source_row"].to_numpy(),
                                     columns=part[POINTER_COLUMNS[2]].to_numpy())
        yield pos, images, stats


# --- hashing and cache keys ----------------------------------------------------------------
def file_sha256(path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
        h.update(bytes.fromhex(file_sha256(file)))
    for src in _source_files(files):
        st = os.stat(src)
        h.update(f"{src}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()


def _source_files(files: Sequence[Path]) -> list[str]:
    import pyarrow.parquet as pq

    out: set[str] = set()
    for file in files:
        if "source_path" in pq.read_schema(file).names:
            col = pq.read_table(file, columns=["source_path"]).column(0)
            out.update(s for s in col.unique().to_pylist() if s is not None)
    return sorted(s for s in out if os.path.exists(s))


def rows_key(frame: pd.DataFrame, manifest_sha: str, preprocess: str) -> str:
    """Cache key of a selection of manifest rows under one preprocessing mode."""
    h = hashlib.sha256(f"{manifest_sha}\0{preprocess}\0{CACHE_VERSION}\0".encode())
    files = frame["manifest_file"].astype(str).map(lambda s: Path(s).name) if "manifest_file" in frame else None
    h.update(b"" if files is None else "\0".join(files).encode())
    h.update(frame["manifest_row"].to_numpy(np.int64).tobytes() if "manifest_row" in frame else b"")
    return h.hexdigest()


# --- preprocessing once, cached ------------------------------------------------------------
def preprocess_frame(frame: pd.DataFrame, preprocess: str, *, out: np.ndarray | None = None,
                     progress: bool = False) -> tuple[np.ndarray, DecodeStats]:
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
            raise DataError(f"stamp shape {images.shape[2:]} differs from the first rows' {out.shape[2:]}",
                            file=frame["manifest_file"].iloc[i] if "manifest_file" in frame else None,
                            row=int(frame["manifest_row"].iloc[i]) if "manifest_row" in frame else i)
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
    if IMAGE_COLUMN in frame and frame[IMAGE_COLUMN].iloc[i] is not None:
        file = frame["manifest_file"].iloc[i] if "manifest_file" in frame else None
        return file, int(frame["manifest_row"].iloc[i]) if "manifest_row" in frame else i, IMAGE_COLUMN
    if all(c in frame for c in POINTER_COLUMNS):
        return frame["source_path"].iloc[i], int(frame["source_row"].iloc[i]), frame["source_column"].iloc[i]
    return None, i, None


def _unnormalisable(frame: pd.DataFrame, pos: np.ndarray, images: np.ndarray, exc: Exception) -> DataError:
    """Locate the first stamp of a chunk whose annulus MAD is 0 (raw_robust cannot normalise it)."""
    from .preprocess import annulus_median_mad

    _, mad = annulus_median_mad(images)
    bad = np.flatnonzero(~(mad.reshape(len(images), -1) > 0).all(axis=1))
    if len(bad) == 0:
        return DataError(str(exc))
    i = int(pos[bad[0]])
    file, row, column = row_location(frame, i)
    return DataError("outer-annulus MAD is 0 (constant or all-zero stamp; it cannot be normalised)",
                     file=file, row=row, column=column)


def cached_inputs(frame: pd.DataFrame, preprocess: str, *, cache_dir=None, key: str | None = None,
                  progress: bool = False) -> np.ndarray:
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
        raise DataError(f"weight must be a finite number >= 0 (got {frame[WEIGHT_COLUMN].iloc[i]!r})",
                        file=frame["manifest_file"].iloc[i] if "manifest_file" in frame else None,
                        row=int(frame["manifest_row"].iloc[i]) if "manifest_row" in frame else i, column=WEIGHT_COLUMN)
    return w.astype(np.float32)


class StampDataset(Dataset):
    """Preprocessed stamps of manifest rows, as a torch ``Dataset``.

    Items are ``(image, label, weight)``: image a float32 tensor ``(3, H, W)`` in the units of the
    preprocessing (annulus MADs), label a float32 scalar 0/1, weight the manifest row weight.

    Parameters
    ----------
    frame : DataFrame
        Manifest rows (from :func:`shortcutgates.manifest.read_manifest`), already restricted to the
        wanted splits.
    preprocess : str
        Mode of :mod:`shortcutgates.preprocess` (``raw_robust`` or ``residual``).
    cache_dir, key :
        On-disk decoded cache (see :func:`cached_inputs`); None keeps it in memory.
    transform : callable(image, rng) -> image, optional
        Per-sample random transform. Its ``np.random.Generator`` is seeded from
        ``(seed, epoch, index)``, so results do not depend on worker count or order.
    """

    def __init__(self, frame: pd.DataFrame, preprocess: str = "raw_robust", *, cache_dir=None, key=None,
                 transform: Callable | None = None, seed: int = 0, progress: bool = False):
        frame = frame.reset_index(drop=True)
        self.preprocess = preprocess
        self.images = cached_inputs(frame, preprocess, cache_dir=cache_dir, key=key, progress=progress)
        self.frame = frame.drop(columns=[IMAGE_COLUMN], errors="ignore")  # blobs are decoded; free them
        self.labels = self.frame[LABEL_COLUMN].to_numpy(np.float32)
        self.weights = row_weights(self.frame)
        self.groups = self.frame[LRG_ID_COLUMN].astype(str).to_numpy() if LRG_ID_COLUMN in self.frame else None
        self.transform, self.seed, self.epoch = transform, int(seed), 0

    @classmethod
    def from_manifest(cls, path, splits=None, preprocess: str = "raw_robust", *, cache_dir=None, **kw):
        """Read a manifest, keep ``splits``, and build the dataset (cache keyed by the manifest sha256)."""
        frame = select_splits(sgmanifest.read_manifest(path).frame, splits)
        key = rows_key(frame, manifest_sha256(path), preprocess) if cache_dir is not None else None
        return cls(frame, preprocess, cache_dir=cache_dir, key=key, **kw)

    def set_epoch(self, epoch: int) -> None:
        """Select the random stream of the per-sample transform."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.frame)

    def __getitem__(self, i: int):
        image = torch.from_numpy(np.array(self.images[i], dtype=np.float32))
        if self.transform is not None:
            image = self.transform(image, np.random.default_rng([self.seed, self.epoch, int(i)]))
        return image, torch.tensor(self.labels[i]), torch.tensor(self.weights[i])


def worker_init_fn(worker_id: int) -> None:
    """Seed numpy and ``random`` in a DataLoader worker from torch's per-worker seed.

    torch seeds each worker with ``base_seed + worker_id`` (base drawn from the loader's
    generator); third-party transforms that use the global numpy/random state then get distinct,
    reproducible streams per worker instead of identical copies.
    """
    import random

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool = False, seed: int = 0, num_workers: int = 0,
                **kw) -> torch.utils.data.DataLoader:
    """A DataLoader with a seeded generator and :func:`worker_init_fn`."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=gen,
                                       num_workers=num_workers, worker_init_fn=worker_init_fn, **kw)
