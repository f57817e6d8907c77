"""Stamp blobs: encoding, validated decoding, and the one decode loop every reader uses.

A stamp is a float32 array of shape ``(3, H, W)`` in nanomaggies, bands ordered g, r, z. Its blob
is an npz archive (optionally gzip-wrapped) with keys ``image_g``, ``image_r``, ``image_z``
(docs/design.md#paired-input-format). Blobs are never unpickled.

* :func:`encode_stamp` writes a deterministic blob (same image, same bytes).
* :func:`decode_stamp` decodes one blob through ``np.load(allow_pickle=False)`` and checks it.
* :func:`decode_stamps` decodes many: a zlib fast path (below) with :func:`decode_stamp` as the
  reference for anything unusual, and **one bad-row policy** for every reader — build, manifest,
  training/evaluation input and the gates: a blob is *bad* when :func:`decode_stamp` would refuse
  it or its stamp shape differs from the first good blob's (or the expected ``shape``). With
  ``skip_bad=False`` the first bad blob (in input order) raises a :class:`DataError` naming file,
  row and column; with ``skip_bad=True`` bad blobs are left out of the images and listed in
  ``failures`` — never dropped silently.

Fast path: ``np.load`` builds a ``zipfile.ZipFile`` and parses every member through Python file
objects. The fast path reads the zip central directory with ``struct``, inflates each band with
``zlib``, checks the CRC and maps the ``.npy`` payload with ``np.frombuffer``. A blob it does not
fully understand (gzip wrapper, zip64, encryption, an unusual ``.npy`` header) goes to
:func:`decode_stamp`, which decodes or refuses it; how many did is counted in :class:`DecodeStats`.

This module needs numpy only (no torch, no pyarrow), so a data-only gate run stays light.
"""

from __future__ import annotations

import functools
import io
import os
import zipfile
import zlib
from typing import NamedTuple, Sequence

import numpy as np

from shortcutgates.data.npz_fast import MAX_BLOB_BYTES, _Fallback, _fast_bands
from shortcutgates.parallel import pool_threads
from shortcutgates.data.schema import NPZ_KEYS, DataError

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


# --- encoding ----------------------------------------------------------------------------------
def encode_stamp(image: np.ndarray, *, compress: bool = True) -> bytes:
    """Encode one stamp as a deterministic npz blob.

    Parameters
    ----------
    image : ndarray, shape (3, H, W)
        Stamp in nanomaggies, bands g, r, z. Stored as float32.
    compress : bool
        Deflate the bands (as ``np.savez_compressed``); False stores them (as ``np.savez``), about
        ten times faster to write and about 8 % larger for noisy float32 stamps.

    Returns
    -------
    bytes
        An npz archive readable by ``np.load(..., allow_pickle=False)`` with keys
        ``image_g``, ``image_r``, ``image_z``. Unlike ``np.savez_compressed`` the archive
        carries a fixed timestamp, so the same image always gives the same bytes.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[0] != len(NPZ_KEYS):
        raise ValueError(f"encode_stamp: image must have shape (3, H, W) (got {image.shape})")
    if not compress:
        return _encode_stored(image)
    return _encode_zip(image, compress)


def _encode_zip(image: np.ndarray, compress: bool) -> bytes:
    """:func:`encode_stamp` written by :mod:`zipfile` (the reference of :func:`_encode_stored`)."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for key, band in zip(NPZ_KEYS, image):
            info = zipfile.ZipInfo(key + ".npy", date_time=_ZIP_EPOCH)
            info.compress_type = method
            arr = io.BytesIO()
            np.lib.format.write_array(arr, np.ascontiguousarray(band), allow_pickle=False)
            zf.writestr(info, arr.getvalue(), compresslevel=6 if compress else None)
    return buf.getvalue()


def _encode_stored(image: np.ndarray) -> bytes:
    """``_encode_zip(image, compress=False)``, byte for byte, without :mod:`zipfile`'s per-member overhead.

    A stored archive of one stamp shape differs from another only in its members' data and CRC-32
    fields, so the archive of zeros written by :mod:`zipfile` (:func:`_stored_template`) is copied and
    those fields filled in (tests/test_codec.py compares the two on many stamps).
    """
    import struct

    template, members = _stored_template(image.shape[1:])
    out = bytearray(template)
    for band, (data_at, crc_at, header_crc) in zip(image, members):
        raw = np.ascontiguousarray(band).tobytes()
        out[data_at : data_at + len(raw)] = raw
        crc = zlib.crc32(raw, header_crc)
        for at in crc_at:
            struct.pack_into("<I", out, at, crc)
    return bytes(out)


@functools.lru_cache(maxsize=8)
def _stored_template(shape: tuple) -> tuple[bytes, tuple]:
    """The stored archive of a zero stamp of ``shape`` (H, W), and per member ``(offset of the band's data,
    offsets of its two CRC-32 fields (local header, central directory), CRC-32 of its ``.npy`` header)``."""
    import struct

    blob = _encode_zip(np.zeros((len(NPZ_KEYS),) + tuple(shape), np.float32), compress=False)
    n_data = 4 * int(np.prod(shape))
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        infos = zf.infolist()
        central = zf.start_dir
    members = []
    for info in infos:
        name_len, extra_len = struct.unpack_from("<HH", blob, info.header_offset + 26)
        start = info.header_offset + 30 + name_len + extra_len
        data_at = start + info.file_size - n_data
        assert blob[central : central + 4] == b"PK\x01\x02", "stored template: unexpected central directory"
        c_name, c_extra, c_comment = struct.unpack_from("<HHH", blob, central + 28)
        members.append((data_at, (info.header_offset + 14, central + 16), zlib.crc32(blob[start:data_at])))
        central += 46 + c_name + c_extra + c_comment
    return blob, tuple(members)


# --- validated decoding (the reference) ---------------------------------------------------------
def decode_stamp(blob, *, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Decode one npz stamp blob into a float32 array of shape ``(3, H, W)`` (nanomaggies).

    Parameters
    ----------
    blob : bytes
        npz archive, or a gzip-wrapped npz archive.
    shape : (H, W), optional
        Expected image shape (e.g. that of the neighbouring rows).

    Raises
    ------
    DataError
        Not an npz, a pickled/object array, a missing band, a band of another shape, NaN/Inf.
        The error carries no location; callers add it with :meth:`DataError.located`.
    """
    blob = _plain_npz_bytes(blob)
    bands = _npz_bands(blob)
    for key, band in zip(NPZ_KEYS, bands):
        if band.ndim != 2:
            raise DataError(f"'{key}' must be 2-D (got shape {band.shape})")
        if band.dtype.kind not in "fiu":
            raise DataError(f"'{key}' must be numeric (got dtype {band.dtype})")
    shapes = {b.shape for b in bands}
    if len(shapes) != 1:
        raise DataError(f"bands have different shapes {[b.shape for b in bands]}")
    if shape is not None and bands[0].shape != tuple(shape):
        raise DataError(f"stamp shape {bands[0].shape} differs from the expected {tuple(shape)}")
    image = np.stack(bands).astype(np.float32, copy=False)
    if not np.isfinite(image).all():
        bad = [k for k, b in zip(NPZ_KEYS, image) if not np.isfinite(b).all()]
        raise DataError(f"{', '.join(bad)} contains NaN or Inf")
    return image


def _plain_npz_bytes(blob) -> bytes:
    """The blob as npz bytes: a gzip wrapper removed (capped); anything else that is not a zip refused."""
    if blob is None:
        raise DataError("blob is null")
    if isinstance(blob, (bytearray, memoryview)):
        blob = bytes(blob)
    if not isinstance(blob, bytes):
        raise DataError(f"blob must be bytes (got {type(blob).__name__})")
    if blob[:2] == b"\x1f\x8b":
        blob = _gunzip_capped(blob)
    if blob[:2] != b"PK":
        raise DataError(f"blob is not an npz archive (starts with {blob[:8]!r}, {len(blob)} bytes)")
    return blob


def _npz_bands(blob: bytes) -> list[np.ndarray]:
    """The arrays ``image_g``, ``image_r``, ``image_z`` of an npz archive through ``np.load`` (no pickles),
    after :func:`_check_members`; any failure is a :class:`DataError` naming it."""
    bands = []
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            _check_members(npz.zip)
            missing = [k for k in NPZ_KEYS if k not in npz.files]
            if missing:
                raise DataError(
                    f"npz lacks {', '.join(missing)}; has {', '.join(npz.files) or 'no arrays'}",
                    hint="expected keys image_g, image_r, image_z",
                )
            for key in NPZ_KEYS:
                bands.append(npz[key])
    except DataError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc) or "Object arrays" in str(exc):  # numpy refuses object arrays
            raise DataError(f"npz holds an array that needs unpickling ({exc})") from None
        raise DataError(f"blob is not a readable npz archive (ValueError: {exc})") from None
    except Exception as exc:  # zipfile.BadZipFile, EOFError, OSError, zlib.error, ...
        raise DataError(f"blob is not a readable npz archive ({type(exc).__name__}: {exc})") from None
    return bands


def _gunzip_capped(blob: bytes) -> bytes:
    """Inflate a gzip-wrapped blob, refusing more than :data:`MAX_BLOB_BYTES` of output."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(blob, MAX_BLOB_BYTES + 1)
    except zlib.error as exc:
        raise DataError(f"gzip-wrapped blob does not decompress: {exc}") from None
    if len(out) > MAX_BLOB_BYTES:
        raise DataError(f"gzip-wrapped blob inflates to more than {MAX_BLOB_BYTES} bytes; refused")
    if not inflater.eof:
        raise DataError("gzip-wrapped blob does not decompress: truncated gzip stream")
    return out


def _check_members(zf: zipfile.ZipFile) -> None:
    """Refuse an archive that declares more than :data:`MAX_BLOB_BYTES`, before inflating it.

    Both the zip directory (uncompressed member sizes) and each band's ``.npy`` header (shape ×
    item size, which ``np.load`` would allocate up front) are checked.
    """
    total = sum(info.file_size for info in zf.infolist())
    if total > MAX_BLOB_BYTES:
        raise DataError(
            f"npz members declare {total} bytes uncompressed, more than the {MAX_BLOB_BYTES} a stamp may hold; refused"
        )
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    names = set(zf.namelist())
    for key in NPZ_KEYS:
        if key + ".npy" not in names:
            continue
        with zf.open(key + ".npy") as fh:
            version = np.lib.format.read_magic(fh)
            if version not in readers:
                raise DataError(f"'{key}' is a .npy of version {version}, expected 1.0 or 2.0")
            shape, _, dtype = readers[version](fh)
        if dtype.hasobject:
            raise DataError(f"npz holds an array that needs unpickling ('{key}' has dtype {dtype}); refused")
        nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if nbytes > MAX_BLOB_BYTES:
            raise DataError(f"'{key}' declares shape {shape} ({nbytes} bytes), more than a stamp may hold; refused")


# --- many blobs: the one decode loop --------------------------------------------------------------
class DecodeStats(NamedTuple):
    """How the good blobs of one :func:`decode_stamps` call were decoded."""

    n_fast: int
    """Blobs decoded by the zlib fast path."""
    n_fallback: int
    """Blobs decoded by :func:`decode_stamp` (valid but unusual, e.g. gzip-wrapped)."""


class DecodeFailure(NamedTuple):
    """A blob that did not decode: where it was and why."""

    index: int
    """Position in the sequence that was decoded."""
    error: DataError
    """Located error (file, row, column where given)."""


class Decoded(NamedTuple):
    """Outcome of :func:`decode_stamps`."""

    images: np.ndarray
    """(n_good, 3, H, W) float32 stamps of the good blobs, in input order. Unit: nanomaggies."""
    ok: np.ndarray
    """(N,) bool: blob ``i`` is good (its image is in ``images``)."""
    failures: list[DecodeFailure]
    """The bad blobs, in input order (empty unless ``skip_bad``: otherwise the first one raised)."""
    stats: DecodeStats


def _at(where, i: int):
    """The per-blob value of a location argument (one value for all, or a sequence)."""
    if where is None or isinstance(where, (str, bytes)) or not hasattr(where, "__len__"):
        return where
    return where.iloc[i] if hasattr(where, "iloc") else where[i]


DECODE_THREADS = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
"""Default threads of :func:`decode_stamps`: the cores this process may use, at most 8. Inflating,
the CRC and the copies release the GIL, so threads across stamps scale with the cores."""

MIN_BLOBS_PER_THREAD = 32
"""Fewer blobs than this per thread are decoded in the calling thread (a thread costs more)."""


def _decode_one(blob, shape) -> tuple[list[np.ndarray] | np.ndarray, bool]:
    """One blob's bands (fast path, else :func:`decode_stamp`) and whether the fast path took it."""
    try:
        bands = _fast_bands(blob)
        if shape is not None and bands[0].shape != tuple(shape):
            raise _Fallback
        return bands, True
    except _Fallback:
        return decode_stamp(blob, shape=shape), False


def _decode_range(blobs, positions, shape, images, ok, errors: dict, stop_at_error: bool) -> int:
    """Decode ``blobs[i]`` for ``i`` in ``positions`` into ``images[i]``; returns the fast-path count.

    Good blobs set ``ok[i]``; bad ones go into ``errors[i]``; values are checked here too (a stamp
    with NaN/Inf is left for the caller to ask the reference about), so the check runs in the thread.
    """
    n_fast = 0
    for i in positions:
        try:
            bands, fast = _decode_one(blobs[i], shape)
        except DataError as err:
            errors[i] = err
            if stop_at_error:
                break
            continue
        for b, band in enumerate(bands):
            images[i, b] = band
        ok[i] = True
        n_fast += fast
    return n_fast


def decode_stamps(
    blobs: Sequence,
    *,
    files=None,
    rows=None,
    columns=None,
    shape: tuple[int, int] | None = None,
    skip_bad: bool = False,
    threads: int | None = None,
) -> Decoded:
    """Decode many blobs into ``(N, 3, H, W)`` float32 under the module's one bad-row policy.

    Parameters
    ----------
    blobs : sequence of bytes
    files, rows, columns : one value for all blobs, or a sequence with one per blob, optional
        Where each blob lives, for the :class:`DataError` of a bad one.
    shape : (H, W), optional
        Expected stamp shape; by default that of the first good blob.
    skip_bad : bool
        False: the first bad blob (input order) raises its located :class:`DataError`.
        True: bad blobs are left out of ``images`` and listed in ``failures``.
    threads : int, optional
        Threads across stamps (default :data:`DECODE_THREADS`; 1: the calling thread only). The
        output does not depend on it: every blob is written to its own row.
    """
    n = len(blobs)
    ok = np.zeros(n, bool)
    errors: dict[int, DataError] = {}
    images, first, n_fast = _first_good(blobs, shape, ok, errors, skip_bad)
    if images is None:
        images = np.zeros((n, 3, 0, 0), np.float32)
    elif first + 1 < n:
        n_fast += _decode_rest(blobs, first + 1, images, ok, errors, skip_bad, threads)
    n_fast -= _refuse_non_finite(blobs, images, ok, errors)
    failures = [
        DecodeFailure(
            i,
            errors[i].located(
                file=_at(files, i), row=None if rows is None else int(_at(rows, i)), column=_at(columns, i)
            ),
        )
        for i in sorted(errors)
    ]
    if failures and not skip_bad:
        raise failures[0].error from None
    n_good = int(ok.sum())
    stats = DecodeStats(n_fast, n_good - n_fast)
    return Decoded(images if n_good == n else images[ok], ok, failures, stats)


def _first_good(blobs, shape, ok, errors: dict, skip_bad: bool) -> tuple[np.ndarray | None, int, int]:
    """Decode up to the first good blob, which fixes the stamp shape and allocates the output.

    Returns ``(images (N, 3, H, W) with that blob written, or None; its position; 1 if the fast path
    took it)``; bad blobs before it go into ``errors`` (the first one ends the search unless ``skip_bad``).
    """
    n = len(blobs)
    for first in range(n):
        try:
            bands, fast = _decode_one(blobs[first], shape)
        except DataError as err:
            errors[first] = err
            if not skip_bad:
                return None, first, 0
            continue
        images = np.empty((n, len(NPZ_KEYS)) + tuple(bands[0].shape), np.float32)
        images[first] = bands
        ok[first] = True
        return images, first, int(fast)
    return None, n, 0


def _decode_rest(blobs, start: int, images: np.ndarray, ok, errors: dict, skip_bad: bool, threads: int | None) -> int:
    """Decode ``blobs[start:]`` into ``images`` (threads across stamps); returns the fast-path count."""
    rest = np.arange(start, len(blobs))
    shape = images.shape[2:]
    threads = pool_threads(DECODE_THREADS) if threads is None else max(1, int(threads))
    threads = max(1, min(threads, len(rest) // MIN_BLOBS_PER_THREAD))
    if threads == 1:
        return _decode_range(blobs, rest, shape, images, ok, errors, not skip_bad)
    from concurrent.futures import ThreadPoolExecutor

    parts = np.array_split(rest, threads * 4)  # a few parts per thread evens out slow blobs
    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(lambda part: _decode_range(blobs, part, shape, images, ok, errors, not skip_bad), parts))


def _refuse_non_finite(blobs, images: np.ndarray, ok, errors: dict) -> int:
    """Mark good-looking stamps with NaN/Inf bad (the reference names the reason); returns how many.

    The fast path does not look at values; every stamp it refuses here was one it took.
    """
    finite = np.isfinite(images).all(axis=(1, 2, 3))
    bad = np.flatnonzero(ok & ~finite)
    for i in bad:
        try:
            decode_stamp(blobs[i], shape=images.shape[2:])
            errors[int(i)] = DataError("stamp has values beyond the float32 range")
        except DataError as err:
            errors[int(i)] = err
        ok[i] = False
    return len(bad)
