"""The zlib fast path of :func:`shortcutgates.data.codec.decode_stamps`: a stamp npz read straight from its bytes.

``np.load`` builds a ``zipfile.ZipFile`` and parses every member through Python file objects. Here the
zip central directory is read with ``struct``, each band inflated with the fastest installed library
(:func:`inflate_module`: zlib-ng, isal, else the standard ``zlib``; same bytes), its CRC checked and the
``.npy`` payload mapped with ``np.frombuffer``. Anything not fully understood raises :class:`_Fallback`
and the caller decodes the blob with the validated reference :func:`shortcutgates.data.codec.decode_stamp`.
"""

from __future__ import annotations

import ast
import os
import struct

import numpy as np

from shortcutgates.data.schema import NPZ_KEYS

MAX_BLOB_BYTES = 3 * 2048 * 2048 * 8
"""Largest decompressed stamp accepted: three 2048 × 2048 float64 bands. Unit: byte.

A blob claiming more is refused before anything is inflated, so a small hostile blob (a
"zip bomb") cannot make a reader allocate gigabytes.
"""

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

    wanted = name or os.environ.get(INFLATE_ENV) or None
    if wanted is not None and wanted not in INFLATE_BACKENDS:
        raise ValueError(f"{INFLATE_ENV}: unknown inflate library {wanted!r} (choose {', '.join(INFLATE_BACKENDS)})")
    paths = {"zlib_ng": "zlib_ng.zlib_ng", "isal": "isal.isal_zlib", "zlib": "zlib"}
    for candidate in [wanted] if wanted else INFLATE_BACKENDS:
        try:
            return candidate, importlib.import_module(paths[candidate])
        except ImportError:
            if wanted:
                raise ImportError(
                    f"{INFLATE_ENV}={wanted}: that library is not installed (pip install 'shortcutgates[fast]')"
                ) from None
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
