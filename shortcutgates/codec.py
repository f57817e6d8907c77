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

import ast
import io
import os
import struct
import zipfile
import zlib
from typing import NamedTuple, Sequence

import numpy as np

from .schema import NPZ_KEYS, DataError

MAX_BLOB_BYTES = 3 * 2048 * 2048 * 8
"""Largest decompressed stamp accepted: three 2048 × 2048 float64 bands. Unit: byte.

A blob claiming more is refused before anything is inflated, so a small hostile blob (a
"zip bomb") cannot make a reader allocate gigabytes.
"""

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
        raise DataError(f"npz members declare {total} bytes uncompressed, more than the {MAX_BLOB_BYTES} "
                        "a stamp may hold; refused")
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


# --- the zlib fast path -------------------------------------------------------------------------
INFLATE_ENV = "SHORTCUTGATES_INFLATE"
"""Environment variable choosing the inflate library: ``zlib_ng``, ``isal`` or ``zlib`` (default: the
first of these that is installed; naming one that is not installed is an error)."""

INFLATE_BACKENDS = ("zlib_ng", "isal", "zlib")
"""Inflate libraries in order of preference. ``zlib-ng`` and ``isal`` are the optional extra
``shortcutgates[fast]``; every one inflates a deflate stream to the same bytes (deflate's output is
unique), checked against :mod:`zlib` in ``tests/test_codec.py``."""


def inflate_module(name: str | None = None):
    """``(name, module)`` of the inflate library: ``name``, else ``$SHORTCUTGATES_INFLATE``, else the
    first installed of :data:`INFLATE_BACKENDS`. The module has ``decompress(data, wbits, bufsize)``
    and ``crc32(data)`` with :mod:`zlib`'s meaning and releases the GIL while it inflates."""
    import importlib
    import os

    wanted = name or os.environ.get(INFLATE_ENV) or None
    if wanted is not None and wanted not in INFLATE_BACKENDS:
        raise ValueError(f"{INFLATE_ENV}: unknown inflate library {wanted!r} (choose {', '.join(INFLATE_BACKENDS)})")
    paths = {"zlib_ng": "zlib_ng.zlib_ng", "isal": "isal.isal_zlib", "zlib": "zlib"}
    for candidate in ([wanted] if wanted else INFLATE_BACKENDS):
        try:
            return candidate, importlib.import_module(paths[candidate])
        except ImportError:
            if wanted:
                raise ImportError(f"{INFLATE_ENV}={wanted}: that library is not installed "
                                  "(pip install 'shortcutgates[fast]')") from None
    raise ImportError("no inflate library")  # pragma: no cover - zlib is part of Python


INFLATE_NAME, _inflate = inflate_module()
"""The inflate library this process uses (see :func:`inflate_module`)."""

_EOCD = b"PK\x05\x06"
_CDIR = struct.Struct("<IHHHHHHIIIHHHHHII")  # central directory file header, 46 bytes
_LOCAL = struct.Struct("<IHHHHHIIIHH")  # local file header, 30 bytes
_MEMBERS = tuple(k + ".npy" for k in NPZ_KEYS)
_HEADERS: dict[bytes, tuple[np.dtype, tuple[int, int], bool]] = {}


class _Fallback(Exception):
    """The fast path does not handle this blob; :func:`decode_stamp` decides."""


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
    if offset + 30 > len(blob) or usize > MAX_BLOB_BYTES:
        raise _Fallback
    head = _LOCAL.unpack_from(blob, offset)
    if head[0] != 0x04034B50 or blob[offset + 30 : offset + 30 + head[9]] != name:
        raise _Fallback  # zipfile refuses a local name that differs from the directory's: let it decide
    start = offset + 30 + head[9] + head[10]
    raw = blob[start : start + csize]
    if len(raw) != csize:
        raise _Fallback
    if method == 8:
        try:
            data = _inflate.decompress(raw, -15, usize or 1)
        except _inflate.error:
            raise _Fallback from None
    elif method == 0:
        data = raw
    else:
        raise _Fallback
    if len(data) != usize or _inflate.crc32(data) != crc:
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
    """The three bands of a plain npz blob, or :class:`_Fallback`. Values are not yet checked."""
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


def decode_stamps(blobs: Sequence, *, files=None, rows=None, columns=None,
                  shape: tuple[int, int] | None = None, skip_bad: bool = False,
                  threads: int | None = None) -> Decoded:
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
    failures = [DecodeFailure(i, errors[i].located(file=_at(files, i),
                                                  row=None if rows is None else int(_at(rows, i)),
                                                  column=_at(columns, i)))
                for i in sorted(errors)]
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


def _decode_rest(blobs, start: int, images: np.ndarray, ok, errors: dict, skip_bad: bool,
                 threads: int | None) -> int:
    """Decode ``blobs[start:]`` into ``images`` (threads across stamps); returns the fast-path count."""
    rest = np.arange(start, len(blobs))
    shape = images.shape[2:]
    threads = DECODE_THREADS if threads is None else max(1, int(threads))
    threads = max(1, min(threads, len(rest) // MIN_BLOBS_PER_THREAD))
    if threads == 1:
        return _decode_range(blobs, rest, shape, images, ok, errors, not skip_bad)
    from concurrent.futures import ThreadPoolExecutor

    parts = np.array_split(rest, threads * 4)  # a few parts per thread evens out slow blobs
    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(lambda part: _decode_range(blobs, part, shape, images, ok, errors, not skip_bad),
                            parts))


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
