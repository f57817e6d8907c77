"""Parquet in and out: paired survey catalogues and atomic writes.

Blob rows that a manifest points to are fetched by :mod:`shortcutgates.data.blob_rows`.

Manifests (docs/design.md#manifest) are read by :mod:`shortcutgates.data.manifest`, built on this module.

Stamp blobs (npz bytes) are encoded and decoded by :mod:`shortcutgates.data.codec`; this module
moves them between parquet files and memory without looking inside.

Conventions
-----------
* Every error about input data is a :class:`shortcutgates.data.schema.DataError` naming file, row
  and column.
* Writers go to a temporary name in the destination directory, then ``os.replace`` it, so a
  reader sees the previous complete file or the new complete file, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import shutil
import tempfile
from pathlib import Path, PurePath
from typing import Iterable, Iterator, Mapping, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shortcutgates.data.schema import (
    CTRL_COLUMN,
    CUTOUT_OK_COLUMN,
    REGION_SPLIT_COLUMN,
    SPLIT_COLUMN,
    SPLITS,
    STAMP_COLUMN,
    DataError,
)


# --- files and atomic writes ---------------------------------------------------------------
def list_parquet_files(path) -> list[Path]:
    """All ``*.parquet`` files of a file or directory tree, sorted by path (deterministic)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.exists():
        raise DataError("no such file or directory", file=path)
    files = sorted(p for p in path.rglob("*.parquet") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise DataError("directory holds no *.parquet file", file=path)
    return files


def split_from_path(file: Path, root: Path) -> str | None:
    """The split named by the nearest parent directory (``train``/``val``/``test``) under root."""
    try:
        parts = Path(file).resolve().relative_to(Path(root).resolve()).parts[:-1]
    except ValueError:
        parts = Path(file).parts[:-1]
    for part in reversed(parts):
        if part in SPLITS:
            return part
    return None


@contextlib.contextmanager
def atomic_path(path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    On an exception (including ``KeyboardInterrupt`` and the CLI's SIGTERM) the temporary file is
    removed and ``path`` is left as it was. A process killed outright (SIGKILL, power loss)
    leaves at most a hidden ``.NAME.*.tmp`` beside ``path``, never a partial ``path``.

    Raises
    ------
    OSError
        ``path`` is a directory, or its directory cannot be created or written; the message
        names ``path`` (not the temporary file).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory, expected a file path", str(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot write here ({exc.strerror})", str(path)) from None
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process umask, read without changing it where Linux reports it (no window for other threads)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_directory(path, *, replace: bool = False) -> Iterator[Path]:
    """Yield a new temporary directory beside ``path``; on success it becomes ``path`` atomically.

    The one directory writer (``build``, ``simulate``). ``path`` must be absent or an empty
    directory, or — with ``replace=True`` — an existing directory, which is exchanged with the new
    one in a single ``renameat2(RENAME_EXCHANGE)`` system call and then removed; so a reader, or a
    run killed at any instant, sees the previous complete directory or the new complete one.
    Where the exchange is not available (not Linux, or a file system without it) the old directory
    is first renamed into a hidden ``.NAME.tmp-PID-*`` sibling, then the new one into place; a kill
    between those two renames leaves no ``path`` (the previous content stays in the hidden sibling).

    On an exception (including ``KeyboardInterrupt`` and the CLI's SIGTERM) the temporary
    directory is removed and ``path`` is left as it was. A process killed outright leaves at most
    a hidden ``.NAME.tmp-PID-*`` sibling, which the next writer of ``path`` removes once that PID
    no longer runs. The new directory gets the mode a plain ``mkdir`` would (umask applied).

    Raises
    ------
    FileExistsError
        ``path`` is a file, or a non-empty directory and ``replace`` is False.
    """
    path = Path(path).absolute()
    if path.exists() and (not path.is_dir() or (not replace and any(path.iterdir()))):
        raise FileExistsError(errno.EEXIST, "exists and is not an empty directory", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; an output is shared like any directory
        yield tmp
        _fsync_tree(tmp)
        if path.exists() and any(path.iterdir()):
            if not replace:  # another writer finished first
                raise FileExistsError(errno.EEXIST, "was written by another process meanwhile", str(path))
            if _exchange(tmp, path):
                shutil.rmtree(tmp, ignore_errors=True)  # holds the previous content now
            else:
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))
                os.replace(path, old / "previous")
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        remove_stale_temporaries(path, include_own=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False if unsupported."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _fsync_tree(directory: Path) -> None:
    """fsync every file under ``directory`` (their bytes are on disk before the rename publishes them)."""
    for file in directory.rglob("*"):
        if file.is_file():
            with open(file, "rb") as fh:
                os.fsync(fh.fileno())


def remove_stale_temporaries(path, *, include_own: bool = False) -> None:
    """Remove ``.NAME.tmp-PID-*`` siblings of ``path`` left by killed writers (PID no longer running).

    ``include_own`` also removes this process's own leftovers (after its write succeeded).
    """
    path = Path(path)
    for old in path.parent.glob(f".{path.name}.tmp-*"):
        pid = old.name[len(path.name) + 6 :].split("-", 1)[0]
        if not pid.isdigit() or (int(pid) == os.getpid() and not include_own):
            continue
        if int(pid) != os.getpid():
            try:
                os.kill(int(pid), 0)
                continue  # still running: another writer's work in progress
            except ProcessLookupError:
                pass
            except PermissionError:  # another user's live process
                continue
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


RACY_SECONDS = 2.0
"""A file changed less than this long before :func:`file_sha256` hashed it is not remembered. Unit: s."""
_SHA256: dict = {}
"""Digests already computed by :func:`file_sha256` in this process, keyed by the file's identity and stat."""


def file_sha256(path) -> str:
    """Hex sha256 of a file's bytes, read 1 MiB at a time.

    A file hashed before in this process, with the same device, inode, size and change times, is
    not read again (a gate run checks the pointed-to files against the build's record, then keys its
    cache by the same files' digests). Only a file last changed more than :data:`RACY_SECONDS` before
    it was hashed is remembered: file times are coarse, so a file rewritten within that window could
    keep its times (git's "racily clean" rule).
    """
    import hashlib
    import time

    with open(path, "rb") as fh:
        st = os.fstat(fh.fileno())
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if key in _SHA256:
            return _SHA256[key]
        settled = time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > RACY_SECONDS * 1e9
        h = hashlib.sha256()
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    if settled:
        _SHA256[key] = h.hexdigest()
    return h.hexdigest()


def write_bytes_atomic(path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def write_png(fig, path, *, dpi: float | None = None) -> Path:
    """Save a matplotlib figure as PNG through :func:`atomic_path`, without the software/date
    metadata, so the same figure gives the same bytes. Returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None})
    return path


def write_parquet_atomic(table, path, *, row_group_size: int | None = None) -> None:
    """Write a pyarrow Table or pandas DataFrame to parquet, atomically and deterministically."""
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=row_group_size)


def jsonable(value):
    """``value`` with numpy scalars/arrays, tuples and paths turned into JSON types; NaN/inf → None.

    The one JSON-sanitising helper (manifest.json, results.json, the gate report): the output
    passes ``json.dumps(..., allow_nan=False)``. Raises ``TypeError`` for anything else (bytes,
    objects), so nothing unexpected is written as its ``repr``.
    """
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, PurePath):
        return str(value)
    raise TypeError(f"jsonable: cannot write {type(value).__name__} as JSON (got {value!r:.80})")


# --- paired catalogues (docs/design.md#paired-input-format) -------------------------------
class PairedCatalog(NamedTuple):
    """Rows of a paired survey catalogue, with their provenance.

    ``frame`` has the requested columns plus ``source_path`` (str), ``source_row`` (int, row
    within that file) and ``split`` (from the directory or ``region_split``; None if neither).
    """

    frame: pd.DataFrame
    files: list[Path]
    n_cutout_excluded: int
    """Rows dropped because ``cutout_ok == 0``."""


def check_arrow_types(schema: pa.Schema, columns, types: dict, file) -> None:
    """Refuse a column whose Arrow type is not what :data:`_MANIFEST_TYPES`-style ``types`` allow."""
    for col in columns:
        if col in types and col in schema.names and not types[col][1](schema.field(col).type):
            raise DataError(f"must be {types[col][0]} (got Arrow type {schema.field(col).type})", file=file, column=col)


def check_positions(frame: pd.DataFrame, where) -> None:
    """``ra`` in [0, 360] and ``dec`` in [-90, 90] deg, finite; else a DataError naming the row
    (``where(i)``: the DataError location, ``file`` and ``row``, of the frame's i-th row)."""
    for col, lo, hi in (("ra", 0.0, 360.0), ("dec", -90.0, 90.0)):
        if col not in frame:
            continue
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(values) | (values < lo) | (values > hi)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{col} must be a finite number in [{lo:g}, {hi:g}] deg (got {show_value(frame[col].iloc[i])})",
                **where(i),
                column=col,
            )


def read_paired(path, columns: Iterable[str] | None = None) -> PairedCatalog:
    """Read a paired parquet file or directory tree, projecting only ``columns``.

    Parameters
    ----------
    path : path-like
        A parquet file or a directory searched recursively for ``*.parquet``.
    columns : iterable of str, optional
        Columns to read (None: all). Blob columns are read only if named, so metadata work never
        touches image bytes. ``ra``, ``dec``, ``cutout_ok`` and ``region_split`` are added when
        present.
    """
    root = Path(path)
    files = list_parquet_files(root)
    root_dir = root if root.is_dir() else root.parent
    frames, n_excluded = [], 0
    for file in files:
        try:
            schema = pq.read_schema(file)
        except Exception as exc:
            raise DataError(f"not a readable parquet file ({exc})", file=file) from None
        names = set(schema.names)
        want = list(schema.names) if columns is None else list(dict.fromkeys(columns))
        missing = [c for c in want if c not in names]
        if missing:
            raise DataError(
                f"missing column(s) {', '.join(missing)}", file=file, hint=f"file has {', '.join(schema.names)}"
            )
        extra = [c for c in ("ra", "dec", CUTOUT_OK_COLUMN, REGION_SPLIT_COLUMN) if c in names and c not in want]
        check_arrow_types(schema, list(PAIRED_TYPES), PAIRED_TYPES, file)  # schema only: blobs stay unread
        try:
            frame = pq.read_table(file, columns=want + extra).to_pandas()
        except Exception as exc:
            raise DataError(f"not a readable parquet file ({' '.join(str(exc).split())[:200]})", file=file) from None
        frame["source_path"] = str(file.resolve())
        frame["source_row"] = np.arange(len(frame), dtype=np.int64)
        dir_split = split_from_path(file, root_dir)
        if dir_split is not None:
            frame[SPLIT_COLUMN] = dir_split
        elif REGION_SPLIT_COLUMN in frame:
            frame[SPLIT_COLUMN] = frame[REGION_SPLIT_COLUMN].astype("string").str.strip().str.lower()
        else:
            frame[SPLIT_COLUMN] = None
        if CUTOUT_OK_COLUMN in frame:
            ok = frame[CUTOUT_OK_COLUMN].fillna(1).astype(int) != 0
            n_excluded += int((~ok).sum())
            frame = frame[ok]
        check_positions(frame, lambda i, rows=frame["source_row"], file=file: dict(file=file, row=int(rows.iloc[i])))
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if frame.empty:
        raise DataError(f"paired catalogue has no rows ({n_excluded} excluded by cutout_ok == 0)", file=root)
    return PairedCatalog(frame, files, n_excluded)


def show_value(value) -> str:
    """repr of a cell without numpy's type wrapper (``2``, not ``np.int8(2)``)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


# --- Arrow column types ----------------------------------------------------------------------
def is_arrow_string(t) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def is_arrow_number(t) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


PAIRED_TYPES = {
    "ra": ("a number (deg)", is_arrow_number),
    "dec": ("a number (deg)", is_arrow_number),
    STAMP_COLUMN: (
        "binary (npz bytes)",
        lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_null(t),
    ),
    CTRL_COLUMN: (
        "binary (npz bytes)",
        lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_null(t),
    ),
    CUTOUT_OK_COLUMN: (
        "an integer 0 or 1",
        lambda t: is_arrow_number(t) or pa.types.is_boolean(t) or pa.types.is_null(t),
    ),
    REGION_SPLIT_COLUMN: ("a string", lambda t: is_arrow_string(t) or pa.types.is_null(t)),
}
"""Paired input column -> (what it must be, test of its Arrow type) (docs/design.md#paired-input-format)."""
