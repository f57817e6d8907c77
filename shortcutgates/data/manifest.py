"""Manifests (docs/design.md#manifest): reading built or hand-written manifests, and the images of their rows.

A manifest is a directory of parquet files (any names, subfolders allowed), with or without a
``manifest.json``, whose rows carry ``label``, ``split``, ``ra``, ``dec`` and an image: inline
``image_npz`` or the pointer columns ``source_path``, ``source_row``, ``source_column`` into the
paired input. Errors name the manifest file, row and column (:class:`~shortcutgates.data.schema.DataError`).
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
from shortcutgates.data.io import is_arrow_number, is_arrow_string, list_parquet_files, show_value
from shortcutgates.data.schema import BLOB_COLUMNS, IMAGE_COLUMN, LABEL_COLUMN, MANIFEST_FILE, MANIFEST_REQUIRED, MANIFEST_SPLITS, POINTER_COLUMNS, SHARED_POSITIVE_SPLITS, SPLIT_COLUMN, DataError

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
    IMAGE_COLUMN: ("binary (npz bytes)", lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t)
                   or pa.types.is_null(t)),
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
        raise DataError(f"this is paired input ({', '.join(BLOB_COLUMNS)}), not a manifest; run `shortcutgates "
                        "build --input PAIRED_DIR --out MANIFEST_DIR --mode unpaired` first and point --data at "
                        "MANIFEST_DIR", file=file)
    missing = [c for c in MANIFEST_REQUIRED if c not in names]
    if IMAGE_COLUMN not in names and not all(c in names for c in POINTER_COLUMNS[:2]):
        missing.append(f"{IMAGE_COLUMN} (or {', '.join(POINTER_COLUMNS)})")
    if missing:
        raise DataError(f"manifest file lacks column(s) {', '.join(missing)}", file=file,
                        hint=f"file has {', '.join(names) or 'no columns'}")
    for col, (what, ok) in _MANIFEST_TYPES.items():
        if col in names and not ok(schema.field(col).type):
            raise DataError(f"must be {what} (got Arrow type {schema.field(col).type})", file=file, column=col)
    want = names if columns is None else [c for c in names if c in set(columns) | set(MANIFEST_REQUIRED)
                                          | {"lrg_id", *POINTER_COLUMNS}]
    if not blobs:
        want = [c for c in want if c != IMAGE_COLUMN]
    try:
        frame = pq.read_table(file, columns=want).to_pandas()
    except Exception as exc:
        raise DataError(f"not a readable parquet file ({' '.join(str(exc).split())[:200]})", file=file) from None
    frame["manifest_file"] = str(file)
    frame["manifest_row"] = np.arange(len(frame), dtype=np.int64)
    if IMAGE_COLUMN in names and IMAGE_COLUMN not in frame:
        frame[_DIGEST] = _blob_digests(file)
    return frame


_DIGEST = "_image_digest"
"""Private column while reading: sha1 of each inline blob left on disk (None for a null blob)."""


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


def read_manifest(path, columns: Iterable[str] | None = None, *, blobs: bool = True,
                  check_duplicates: bool = True, data_root=None, check_sources: bool = True) -> Manifest:
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
    import json

    root = Path(path)
    meta = None
    if root.is_dir() and (root / MANIFEST_FILE).exists():
        try:
            meta = json.loads((root / MANIFEST_FILE).read_text())
        except (ValueError, OSError) as exc:
            raise DataError(f"manifest.json is not valid JSON ({exc})", file=root / MANIFEST_FILE) from None
        if not isinstance(meta, dict):
            raise DataError(f"manifest.json must hold a JSON object (got {type(meta).__name__})",
                            file=root / MANIFEST_FILE)
    frames = [_read_manifest_file(file, columns, blobs) for file in list_parquet_files(root)]
    frame = pd.concat(frames, ignore_index=True)
    if frame.empty:
        raise DataError("manifest has no rows", file=root)
    _check_manifest_columns(frame)
    _check_images_present(frame)
    if check_duplicates:
        _check_duplicates(frame)
    else:
        frame.attrs["duplicate_images"] = duplicate_images(frame)
    if _DIGEST in frame:
        frame[INLINE_COLUMN] = frame[_DIGEST].notna().to_numpy()
        frame = frame.drop(columns=[_DIGEST])
    # a parquet file of a built manifest, read on its own: its directory's manifest.json places the sources
    source_meta = meta if root.is_dir() else _sibling_meta(root)
    source_root = resolve_pointers(frame, source_meta, root, data_root)
    if check_sources:
        check_source_files(frame, source_meta, source_root, data_root is not None)
    return Manifest(frame, meta, root)


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

DATA_ROOT_HINT = ("copy the paired input there (keeping its layout), pass --data-root DIR naming where it is, or "
                  "rebuild the manifest with `shortcutgates build --inline`, which needs no source files")


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
    out[_pointer_ok(frame) & ~on_disk] = "pointer"
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
            raise DataError(f"source file of a manifest pointer is missing ({n} row(s) point to it; relative "
                            f"pointers are taken from {where} {source_root})", file=path, hint=DATA_ROOT_HINT)
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
            raise DataError("source file changed since the manifest was built (sha256 differs from the one "
                            "manifest.json records)", file=path,
                            hint="restore the file, point --data-root at the original, or rebuild the manifest")


def _where(frame: pd.DataFrame, i: int) -> dict:
    return {"file": frame["manifest_file"].iloc[i], "row": int(frame["manifest_row"].iloc[i])}


def _check_manifest_columns(frame: pd.DataFrame) -> None:
    labels = pd.to_numeric(frame[LABEL_COLUMN], errors="coerce")
    bad = ~labels.isin([0, 1])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"label must be 0 or 1 (got {show_value(frame[LABEL_COLUMN].iloc[i])})", **_where(frame, i),
                        column=LABEL_COLUMN)
    frame[LABEL_COLUMN] = labels.astype(np.int8)
    for col, lo, hi in (("ra", 0.0, 360.0), ("dec", -90.0, 90.0)):
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(values) | (values < lo) | (values > hi)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{col} must be a finite number in [{lo:g}, {hi:g}] deg (got {show_value(frame[col].iloc[i])})",
                            **_where(frame, i), column=col)
        frame[col] = values
    split = frame[SPLIT_COLUMN]
    bad = split.isna().to_numpy() | ~split.isin(MANIFEST_SPLITS).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        value = split.iloc[i]
        problem = "split is missing" if pd.isna(value) else f"unknown split {value!r}"
        raise DataError(problem, **_where(frame, i), column=SPLIT_COLUMN,
                        hint=f"expected one of {', '.join(MANIFEST_SPLITS)}")
    frame[SPLIT_COLUMN] = split.astype(str)


def _pointer_ok(frame: pd.DataFrame) -> np.ndarray:
    """(N,) bool: the row carries a complete pointer (source path, row and column)."""
    if not all(c in frame for c in POINTER_COLUMNS):
        return np.zeros(len(frame), bool)
    return frame[list(POINTER_COLUMNS)].notna().all(axis=1).to_numpy()


def _check_images_present(frame: pd.DataFrame) -> None:
    """Every row has an inline blob or a complete pointer (unless blobs were projected away)."""
    if IMAGE_COLUMN in frame or _DIGEST in frame:
        inline = frame[IMAGE_COLUMN if IMAGE_COLUMN in frame else _DIGEST]
        has = inline.notna().to_numpy() | _pointer_ok(frame)
    elif all(c in frame for c in POINTER_COLUMNS[:2]):
        has = frame[list(POINTER_COLUMNS[:2])].notna().all(axis=1).to_numpy()
    else:
        return  # image_npz projected away
    if not has.all():
        i = int(np.flatnonzero(~has)[0])
        raise DataError(f"row has neither an {IMAGE_COLUMN} blob nor a complete pointer ({', '.join(POINTER_COLUMNS)})",
                        **_where(frame, i), column=IMAGE_COLUMN)


def _image_keys(frame: pd.DataFrame) -> pd.Series | None:
    """Per row, what identifies its image: the inline blob, else the pointer; None if neither was read."""
    keys = None
    if all(c in frame for c in POINTER_COLUMNS):
        keys = (frame[POINTER_COLUMNS[0]].astype(str) + "\0" + frame[POINTER_COLUMNS[1]].astype(str) + "\0"
                + frame[POINTER_COLUMNS[2]].astype(str)).fillna("").map(str.encode)  # null: an inline row
    if IMAGE_COLUMN in frame or _DIGEST in frame:  # the blob itself, or its digest when left on disk
        blobs = frame[IMAGE_COLUMN if IMAGE_COLUMN in frame else _DIGEST]
        keys = blobs if keys is None else blobs.where(blobs.notna(), keys)
    return keys


def shared_positive(group: pd.DataFrame) -> bool:
    """Rows of one image (``label``, ``split`` columns) that are one positive of each of ``test`` and
    ``test_paired``: shared by design (:data:`~shortcutgates.data.schema.SHARED_POSITIVE_SPLITS`), not a duplicate."""
    return (len(group) == len(SHARED_POSITIVE_SPLITS) and bool((group["label"] == 1).all())
            and sorted(group["split"].tolist()) == sorted(SHARED_POSITIVE_SPLITS))


def _check_duplicates(frame: pd.DataFrame) -> None:
    """Refuse one image listed as two positives (but once in each of ``test`` and ``test_paired``),
    or under both labels.

    Identical negatives are allowed: in paired data an LRG with k injections gives k copies of
    its control image (the gates deduplicate them).
    """
    keys = _image_keys(frame)
    if keys is None:
        return
    table = pd.DataFrame({"key": keys.to_numpy(), "label": frame[LABEL_COLUMN].to_numpy(),
                          "split": frame[SPLIT_COLUMN].astype(str).to_numpy() if SPLIT_COLUMN in frame else ""})
    clash = table.duplicated(["key"], keep=False).to_numpy()
    if not clash.any():
        return
    sub = table[clash]
    for _key, group in sub.groupby("key", sort=False):
        if shared_positive(group):
            continue
        labels = set(group["label"].tolist())
        if len(labels) > 1 or (group["label"] == 1).sum() > 1:
            i, j = group.index[0], group.index[1]
            what = "under both labels" if len(labels) > 1 else "as two positives"
            other = _where(frame, j)
            column = IMAGE_COLUMN if IMAGE_COLUMN in frame or _DIGEST in frame else POINTER_COLUMNS[0]
            raise DataError(f"the same image is listed {what}: duplicate of {other['file']} row {other['row']}",
                            **_where(frame, i), column=column)


def duplicate_images(frame: pd.DataFrame) -> list[str]:
    """One located message per row whose image another row already lists as a positive, under the
    other label, or in another split (a copy leaked across splits); identical negatives of one split
    (the controls of one LRG's injections) and one positive shared by ``test`` and ``test_paired``
    (:func:`shared_positive`) are allowed."""
    keys = _image_keys(frame)
    if keys is None:
        return []
    table = pd.DataFrame({"key": keys.to_numpy(), "label": frame[LABEL_COLUMN].to_numpy(),
                          "split": frame[SPLIT_COLUMN].astype(str).to_numpy()})
    clash = table.duplicated(["key"], keep=False).to_numpy()
    column = IMAGE_COLUMN if IMAGE_COLUMN in frame or _DIGEST in frame else POINTER_COLUMNS[0]
    out = []
    for _, group in table[clash].groupby("key", sort=False):
        if shared_positive(group):
            continue
        first = group.index[0]
        for j in group.index[1:]:
            row = group.loc[j]
            if row["split"] != group.loc[first, "split"]:
                what = f"in splits {group.loc[first, 'split']} and {row['split']}"
            elif row["label"] != group.loc[first, "label"]:
                what = "under both labels"
            elif row["label"] == 1:
                what = "as two positives"
            else:
                continue
            here, other = _where(frame, j), _where(frame, first)
            out.append(f"{here['file']}: row {here['row']}, column '{column}': the same image is listed {what}: "
                       f"duplicate of {other['file']} row {other['row']}")
    return out


class RowBlobs(NamedTuple):
    """The blob of each manifest row and where it came from (for error messages)."""

    blobs: list
    files: np.ndarray
    """(N,) file holding the blob: the manifest file (inline) or the pointed-to source file."""
    rows: np.ndarray
    """(N,) row of the blob within that file."""
    columns: np.ndarray
    """(N,) column of the blob within that file."""


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
            raise DataError(f"row has no {IMAGE_COLUMN} blob and no pointer ({', '.join(POINTER_COLUMNS)})",
                            row=int(rows[i]), column=IMAGE_COLUMN)
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
    decoded = decode_stamps(fetched.blobs, files=fetched.files, rows=fetched.rows, columns=fetched.columns,
                            skip_bad=skip_bad)
    return decoded.images, decoded.failures
