"""Manifests (docs/design.md#manifest): reading built or hand-written manifests, and the images of their rows.

A manifest is a directory of parquet files (any names, subfolders allowed), with or without a
``manifest.json``, whose rows carry ``label``, ``split``, ``ra``, ``dec`` and an image: inline
``image_npz`` or the pointer columns ``source_path``, ``source_row``, ``source_column`` into the
paired input. Errors name the manifest file, row and column (:class:`~shortcutgates.data.schema.DataError`);
the checks of the rows are :mod:`shortcutgates.data.manifest_checks`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shortcutgates.data.codec import DecodeFailure, decode_stamps
from shortcutgates.data.blob_rows import ROW_BATCH, read_blobs
from shortcutgates.data.io import is_arrow_number, is_arrow_string, list_parquet_files
from shortcutgates.data.manifest_checks import DIGEST_COLUMN, check_rows, pointer_ok
from shortcutgates.data.schema import (
    BLOB_COLUMNS,
    IMAGE_COLUMN,
    LABEL_COLUMN,
    MANIFEST_FILE,
    MANIFEST_REQUIRED,
    POINTER_COLUMNS,
    SPLIT_COLUMN,
    DataError,
)


class Manifest(NamedTuple):
    """A built (or hand-written) dataset: one row per sample.

    ``frame`` holds ``label``, ``split``, ``ra``, ``dec``, either ``image_npz`` or the pointer
    columns, optional ``lrg_id`` and property columns, plus ``manifest_file`` and
    ``manifest_row`` locating each row for error messages.
    """

    frame: pd.DataFrame
    meta: dict | None
    """Parsed ``manifest.json``; None for a hand-written manifest."""
    root: Path


_MANIFEST_TYPES = {
    LABEL_COLUMN: ("an integer 0 or 1", lambda t: is_arrow_number(t) or pa.types.is_boolean(t)),
    "ra": ("a number (deg)", is_arrow_number),
    "dec": ("a number (deg)", is_arrow_number),
    SPLIT_COLUMN: ("a string", is_arrow_string),
    IMAGE_COLUMN: (
        "binary (npz bytes)",
        lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_null(t),
    ),
    POINTER_COLUMNS[0]: ("a string (path)", is_arrow_string),
    POINTER_COLUMNS[1]: ("an integer (row)", pa.types.is_integer),
    POINTER_COLUMNS[2]: ("a string (column name)", is_arrow_string),
    "lrg_id": ("a string or an integer", lambda t: is_arrow_string(t) or pa.types.is_integer(t) or pa.types.is_null(t)),
}
"""Manifest column -> (what it must be, test of its Arrow type)."""


def _read_manifest_file(file: Path, columns, blobs: bool = True) -> pd.DataFrame:
    """One manifest parquet file, with its required columns and their types checked."""
    try:
        schema = pq.read_schema(file)
    except Exception as exc:  # ArrowInvalid (empty, truncated, not parquet), OSError
        raise DataError(f"not a readable parquet file ({' '.join(str(exc).split())[:200]})", file=file) from None
    names = schema.names
    if all(c in names for c in BLOB_COLUMNS) and LABEL_COLUMN not in names:
        raise DataError(
            f"this is paired input ({', '.join(BLOB_COLUMNS)}), not a manifest; run `shortcutgates "
            "build --input PAIRED_DIR --out MANIFEST_DIR --mode unpaired` first and point --data at "
            "MANIFEST_DIR",
            file=file,
        )
    missing = [c for c in MANIFEST_REQUIRED if c not in names]
    if IMAGE_COLUMN not in names and not all(c in names for c in POINTER_COLUMNS[:2]):
        missing.append(f"{IMAGE_COLUMN} (or {', '.join(POINTER_COLUMNS)})")
    if missing:
        raise DataError(
            f"manifest file lacks column(s) {', '.join(missing)}",
            file=file,
            hint=f"file has {', '.join(names) or 'no columns'}",
        )
    for col, (what, ok) in _MANIFEST_TYPES.items():
        if col in names and not ok(schema.field(col).type):
            raise DataError(f"must be {what} (got Arrow type {schema.field(col).type})", file=file, column=col)
    want = (
        names
        if columns is None
        else [c for c in names if c in set(columns) | set(MANIFEST_REQUIRED) | {"lrg_id", *POINTER_COLUMNS}]
    )
    if not blobs:
        want = [c for c in want if c != IMAGE_COLUMN]
    try:
        frame = pq.read_table(file, columns=want).to_pandas()
    except Exception as exc:
        raise DataError(f"not a readable parquet file ({' '.join(str(exc).split())[:200]})", file=file) from None
    frame["manifest_file"] = str(file)
    frame["manifest_row"] = np.arange(len(frame), dtype=np.int64)
    if IMAGE_COLUMN in names and IMAGE_COLUMN not in frame:
        frame[DIGEST_COLUMN] = _blob_digests(file)
    return frame


def _blob_digests(file: Path) -> np.ndarray:
    """sha1 digest of every ``image_npz`` blob of a file, streamed a batch at a time (blobs not kept)."""
    import hashlib

    out = []
    try:
        pf = pq.ParquetFile(file, pre_buffer=False, buffer_size=1 << 20)  # streamed: see _RowStream
        for batch in pf.iter_batches(batch_size=ROW_BATCH, columns=[IMAGE_COLUMN], use_threads=False):
            out += [None if b is None else hashlib.sha1(b).digest() for b in batch.column(0).to_pylist()]
    except Exception as exc:
        raise DataError(f"not a readable parquet file ({' '.join(str(exc).split())[:200]})", file=file) from None
    return np.asarray(out + [None], object)[:-1]


def read_manifest(
    path,
    columns: Iterable[str] | None = None,
    *,
    blobs: bool = True,
    check_duplicates: bool = True,
    data_root=None,
    check_sources: bool = True,
) -> Manifest:
    """Read a manifest directory (or a single parquet file) written by ``build`` or by hand.

    ``columns`` projects the parquet read (the required columns are always read); leaving out
    ``image_npz`` keeps blobs on disk. ``blobs=False`` reads every column but ``image_npz``:
    the blobs are streamed once to check them (presence, duplicates) and stay on disk;
    :func:`load_images` fetches them by ``manifest_file`` / ``manifest_row`` when needed, so a
    50,000-row inline manifest costs memory for its metadata only.

    Each row has one image source (:func:`image_source`), the same for ``train``, the gates and
    ``data_integrity``: its inline blob when it has one, else its pointer. A relative
    ``source_path`` is resolved against the manifest's recorded source root (``manifest.json``
    ``input.root``, relative to the manifest directory; a hand-written manifest: its directory),
    or against ``data_root`` when given (``--data-root``); the frame holds absolute paths.
    With ``check_sources`` the source files that rows still point to are checked up front
    (:func:`check_source_files`): present, and where ``manifest.json`` records them, of the
    recorded size and sha256.

    Raises
    ------
    DataError
        Naming file, row and column: an unreadable file or ``manifest.json``, a missing or mistyped
        column, no rows, a label outside {0, 1}, a position outside the sky, a missing or unknown
        split, a row with neither an image nor a pointer, or the same image listed as two
        positives or under both labels (with ``check_duplicates=False`` such rows are listed, with
        images shared by two splits, in ``frame.attrs["duplicate_images"]`` instead: the gate
        suite reports them as a failing ``data_integrity``).
    """
    root = Path(path)
    meta = _read_meta(root)
    frames = [_read_manifest_file(file, columns, blobs) for file in list_parquet_files(root)]
    frame = pd.concat(frames, ignore_index=True)
    if frame.empty:
        raise DataError("manifest has no rows", file=root)
    check_rows(frame, check_duplicates)
    if DIGEST_COLUMN in frame:
        frame[INLINE_COLUMN] = frame[DIGEST_COLUMN].notna().to_numpy()
        frame = frame.drop(columns=[DIGEST_COLUMN])
    # a parquet file of a built manifest, read on its own: its directory's manifest.json places the sources
    source_meta = meta if root.is_dir() else _sibling_meta(root)
    source_root = resolve_pointers(frame, source_meta, root, data_root)
    if check_sources:
        check_source_files(frame, source_meta, source_root, data_root is not None)
    return Manifest(frame, meta, root)


def _read_meta(root: Path) -> dict | None:
    """The parsed ``manifest.json`` of a manifest directory (None: a parquet file, or no such file)."""
    import json

    if not (root.is_dir() and (root / MANIFEST_FILE).exists()):
        return None
    try:
        meta = json.loads((root / MANIFEST_FILE).read_text())
    except (ValueError, OSError) as exc:
        raise DataError(f"manifest.json is not valid JSON ({exc})", file=root / MANIFEST_FILE) from None
    if not isinstance(meta, dict):
        raise DataError(f"manifest.json must hold a JSON object (got {type(meta).__name__})", file=root / MANIFEST_FILE)
    return meta


def _sibling_meta(file: Path) -> dict | None:
    """``manifest.json`` beside a manifest parquet file (None if absent or unreadable)."""
    import json

    try:
        meta = json.loads((file.parent / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


INLINE_COLUMN = "_image_inline"
"""Bool column of a manifest read with ``blobs=False``: the row has an inline ``image_npz`` (left on disk)."""

DATA_ROOT_HINT = (
    "copy the paired input there (keeping its layout), pass --data-root DIR naming where it is, or "
    "rebuild the manifest with `shortcutgates build --inline`, which needs no source files"
)


def image_source(frame: pd.DataFrame) -> np.ndarray:
    """(N,) str: where each row's image comes from, the one rule every reader follows.

    ``"inline"``: its ``image_npz`` blob, in the frame; ``"stored"``: its ``image_npz`` blob, left on
    disk in its manifest file (read with ``blobs=False``), or no pointer to follow; ``"pointer"``:
    no inline blob, so the paired input row that ``source_path``/``source_row``/``source_column`` name.
    """
    n = len(frame)
    out = np.full(n, "stored", object)
    inline = frame[IMAGE_COLUMN].notna().to_numpy() if IMAGE_COLUMN in frame else np.zeros(n, bool)
    on_disk = frame[INLINE_COLUMN].to_numpy(bool) if INLINE_COLUMN in frame else np.zeros(n, bool)
    out[pointer_ok(frame) & ~on_disk] = "pointer"
    out[inline] = "inline"
    return out


def source_root_of(meta: dict | None, root: Path, data_root=None) -> Path:
    """Directory that relative ``source_path`` values are taken from: ``data_root`` when given, else
    ``manifest.json``'s ``input.root`` (relative to the manifest directory), else the manifest directory."""
    base = root if root.is_dir() else root.parent
    if data_root is not None:
        return Path(data_root).expanduser().resolve()
    recorded = ((meta or {}).get("input") or {}).get("root") if isinstance((meta or {}).get("input"), dict) else None
    return (base / recorded).resolve() if isinstance(recorded, str) else base.resolve()


def resolve_pointers(frame: pd.DataFrame, meta: dict | None, root: Path, data_root=None) -> Path:
    """Make relative ``source_path`` values absolute (in place), against :func:`source_root_of`; returns that root."""
    source_root = source_root_of(meta, Path(root), data_root)
    if POINTER_COLUMNS[0] in frame:
        paths = frame[POINTER_COLUMNS[0]]
        values = paths.dropna().unique()
        mapping = {v: (str(v) if Path(str(v)).is_absolute() else str(source_root / str(v))) for v in values}
        frame[POINTER_COLUMNS[0]] = paths.map(mapping).where(paths.notna(), None)
    return source_root


def check_source_files(frame: pd.DataFrame, meta: dict | None, source_root: Path, given_root: bool = False) -> None:
    """Refuse, in one line, a manifest whose rows point to a missing or changed source file.

    Only files that rows without an inline blob point to are checked. A file ``manifest.json``
    records (``input.files``: path relative to the source root, size, sha256) must have that size
    and sha256, so the gates never measure other bytes than the build saw.

    Raises
    ------
    DataError
        Naming the file, how many rows point to it, where it was looked for and the way out.
    """
    from shortcutgates.data.io import file_sha256

    pointed = frame[image_source(frame) == "pointer"]
    if pointed.empty:
        return
    counts = pointed[POINTER_COLUMNS[0]].value_counts(sort=False)
    where = "--data-root" if given_root else "the manifest's source root"
    for path, n in sorted(counts.items()):
        if not Path(path).is_file():
            raise DataError(
                f"source file of a manifest pointer is missing ({n} row(s) point to it; relative "
                f"pointers are taken from {where} {source_root})",
                file=path,
                hint=DATA_ROOT_HINT,
            )
    recorded = {}
    for rec in ((meta or {}).get("input") or {}).get("files") or []:
        if isinstance(rec, dict) and rec.get("sha256") and isinstance(rec.get("path"), str):
            recorded[str(source_root / rec["path"]) if not Path(rec["path"]).is_absolute() else rec["path"]] = rec
    for path in sorted(counts.index):
        rec = recorded.get(str(path))
        if rec is None:
            continue
        size = Path(path).stat().st_size
        if size != rec.get("size") or file_sha256(path) != rec["sha256"]:
            raise DataError(
                "source file changed since the manifest was built (sha256 differs from the one manifest.json records)",
                file=path,
                hint="restore the file, point --data-root at the original, or rebuild the manifest",
            )


class RowBlobs(NamedTuple):
    """The blob of each manifest row and where it came from (for error messages)."""

    blobs: list
    files: np.ndarray
    """(N,) file holding the blob: the manifest file (inline) or the pointed-to source file."""
    rows: np.ndarray
    """(N,) row of the blob within that file."""
    columns: np.ndarray
    """(N,) column of the blob within that file."""


def read_order(frame: pd.DataFrame) -> np.ndarray:
    """(N,) int: positions of ``frame``'s rows in the order their blobs lie on disk.

    Pointer rows by (``source_path``, ``source_column``, ``source_row``), rows stored in their
    manifest file by (``manifest_file``, ``manifest_row``), inline rows first in frame order. A pass
    over the rows in chunks of this order reads each pointed-to row group once, front to back
    (:func:`shortcutgates.data.blob_rows.read_rows` streams a row group forward only); in frame order
    every chunk of a manifest whose rows point all over a file starts its row groups again.
    """
    n = len(frame)
    source = image_source(frame)
    file, column = np.full(n, "", object), np.full(n, "", object)
    row = np.arange(n, dtype=np.int64)
    pointer, stored = source == "pointer", source == "stored"
    if pointer.any():
        file[pointer] = frame["source_path"].astype(str).to_numpy(object)[pointer]
        column[pointer] = frame[POINTER_COLUMNS[2]].astype(str).to_numpy(object)[pointer]
        row[pointer] = frame["source_row"].to_numpy(np.int64)[pointer]
    if stored.any() and "manifest_file" in frame and "manifest_row" in frame:
        file[stored] = frame["manifest_file"].astype(str).to_numpy(object)[stored]
        row[stored] = frame["manifest_row"].to_numpy(np.int64)[stored]
    keys = pd.DataFrame({"inline": source != "inline", "file": file, "column": column, "row": row})
    return keys.sort_values(["inline", "file", "column", "row"], kind="stable").index.to_numpy(np.int64)


def row_blobs(frame: pd.DataFrame) -> RowBlobs:
    """Fetch the blob of every manifest row, in frame order.

    Each row's source is :func:`image_source`: its inline ``image_npz`` (in the frame, or for a
    manifest read with ``blobs=False`` the ``image_npz`` cell of its own manifest file and row, only
    the row groups holding the rows are read); else its pointer (``source_path``, ``source_row``,
    ``source_column``).
    """
    n = len(frame)
    source = image_source(frame)
    inline, pointer, by_ref = source == "inline", source == "pointer", source == "stored"
    files = frame["manifest_file"].to_numpy(object, copy=True) if "manifest_file" in frame else np.full(n, None, object)
    rows = frame["manifest_row"].to_numpy(np.int64, copy=True) if "manifest_row" in frame else np.arange(n)
    columns = np.full(n, IMAGE_COLUMN, object)
    blobs = np.empty(n, object)
    if inline.any():
        blobs[inline] = frame[IMAGE_COLUMN].to_numpy(object)[inline]
    if pointer.any():
        pointed = frame[pointer]
        blobs[pointer] = np.asarray(read_blobs(pointed) + [None], object)[:-1]
        files[pointer] = pointed["source_path"].to_numpy(object)
        rows[pointer] = pointed["source_row"].to_numpy(np.int64)
        columns[pointer] = pointed[POINTER_COLUMNS[2]].to_numpy(object)
    if by_ref.any():
        if "manifest_file" not in frame:
            i = int(np.flatnonzero(by_ref)[0])
            raise DataError(
                f"row has no {IMAGE_COLUMN} blob and no pointer ({', '.join(POINTER_COLUMNS)})",
                row=int(rows[i]),
                column=IMAGE_COLUMN,
            )
        refs = pd.DataFrame({"source_path": files[by_ref], "source_row": rows[by_ref]})
        blobs[by_ref] = np.asarray(read_blobs(refs, column=IMAGE_COLUMN) + [None], object)[:-1]
    return RowBlobs(list(blobs), files, rows, columns)


def load_images(frame: pd.DataFrame, *, skip_bad: bool = False) -> tuple[np.ndarray, list[DecodeFailure]]:
    """Decode the images of manifest rows into ``(N, 3, H, W)`` float32, in frame order.

    Blobs come from :func:`row_blobs` (inline, pointer, or by manifest file and row). Errors name
    the manifest file and row (inline) or the source file, row and column (pointers). Bad rows
    follow :func:`shortcutgates.data.codec.decode_stamps`: the first raises, or with ``skip_bad=True``
    they are left out and listed in the failures.
    """
    fetched = row_blobs(frame)
    decoded = decode_stamps(
        fetched.blobs, files=fetched.files, rows=fetched.rows, columns=fetched.columns, skip_bad=skip_bad
    )
    return decoded.images, decoded.failures
