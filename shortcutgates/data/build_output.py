"""What ``shortcutgates build`` writes: ``manifest.parquet`` and its record ``manifest.json``.

The rows' digest (:func:`rows_sha256`), portable pointers (relative to the input root), the record
of the input files, parameters, identity and counts, and the atomic write of the directory
(:func:`shortcutgates.data.io.atomic_directory`: the previous complete manifest or the new one).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shortcutgates import __version__
from shortcutgates.data.io import atomic_directory, jsonable
from shortcutgates.data.schema import LABEL_COLUMN, LRG_ID_COLUMN, MANIFEST_FILE, MANIFEST_SPLITS, SPLIT_COLUMN

if TYPE_CHECKING:
    from shortcutgates.data.build import _Read
    from shortcutgates.data.splits import SplitParams

MANIFEST_PARQUET = "manifest.parquet"


def _file_record(path: Path, root: Path) -> dict:
    """A source file as ``manifest.json`` records it: path relative to the source root, size, mtime, sha256."""
    from shortcutgates.data.io import file_sha256

    st = path.stat()
    return {
        "path": Path(path).resolve().relative_to(root).as_posix(),
        "size": st.st_size,
        "mtime": st.st_mtime,
        "sha256": file_sha256(path),
    }


def input_root(input_path) -> Path:
    """The paired input's root directory (the file's directory for a single file), resolved."""
    path = Path(input_path).resolve()
    return path if path.is_dir() else path.parent


def relative_pointers(paths: pd.Series, root: Path) -> pd.Series:
    """``source_path`` values (absolute) made relative to ``root``, POSIX-style (portable manifests)."""
    mapping = {p: Path(p).relative_to(root).as_posix() for p in paths.dropna().unique()}
    return paths.map(mapping).where(paths.notna(), None)  # null: a constructed row's inline image


def rows_sha256(table: pa.Table) -> str:
    """sha256 of a table's rows, independent of chunking and of the bytes under null slots.

    Per column: name, type, the null mask, and the values with nulls filled by a typed zero,
    serialised as one Arrow IPC batch. The table read back from the parquet file therefore gives
    the digest of the table that was written.
    """
    digest = hashlib.sha256()
    for name, column in zip(table.column_names, table.columns):
        column = column.combine_chunks()
        digest.update(f"{name}\0{column.type}\0".encode())
        digest.update(np.packbits(column.is_null().to_numpy(zero_copy_only=False)).tobytes())
        if column.null_count:
            kind = column.type
            zero = (
                b""
                if pa.types.is_binary(kind) or pa.types.is_large_binary(kind)
                else ("" if pa.types.is_string(kind) or pa.types.is_large_string(kind) else 0)
            )
            column = column.fill_null(pa.scalar(zero, kind))
        sink = pa.BufferOutputStream()
        batch = pa.record_batch([column], names=[name])
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        digest.update(sink.getvalue().to_pybytes())
    return digest.hexdigest()


def split_counts(frame: pd.DataFrame) -> dict:
    out = {}
    for split in MANIFEST_SPLITS:
        rows = frame[frame[SPLIT_COLUMN] == split]
        if len(rows):
            out[split] = {
                "pos": int((rows[LABEL_COLUMN] == 1).sum()),
                "neg": int((rows[LABEL_COLUMN] == 0).sum()),
                "lrgs": int(rows[LRG_ID_COLUMN].nunique()),
            }
    return out


def write_tree(out_dir: Path, table: pa.Table, meta: dict) -> None:
    """Write the manifest through :func:`shortcutgates.data.io.atomic_directory` (previous or new, never half)."""
    out_dir = out_dir.resolve()
    if out_dir.exists() and (
        not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / MANIFEST_FILE).exists())
    ):
        raise FileExistsError(
            f"build: --out {out_dir} exists and is not a manifest directory; refusing to replace it "
            "(choose another --out, or remove it)"
        )
    with atomic_directory(out_dir, replace=True) as tmp:
        pq.write_table(table, tmp / MANIFEST_PARQUET, compression="zstd", row_group_size=256 * 1024)
        (tmp / MANIFEST_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, allow_nan=False) + "\n")


def portable(rows: pd.DataFrame, root: Path) -> pd.DataFrame:
    """``rows`` with their pointer paths (source, host, donor) relative to the input root."""
    return rows.assign(
        **{
            c: relative_pointers(rows[c], root)
            for c in ("source_path", "host_source_path", "donor_source_path")
            if c in rows
        }
    )


def manifest_parameters(
    params: SplitParams, tolerance_arcsec: float, inline: bool, kinds, mix: dict, hard_splits, shuffle_arcsec
) -> dict:
    """``manifest.json``'s ``parameters``: the build's options as given (defaults filled in)."""
    return {
        "mode": params.mode,
        "seed": params.seed,
        "match": list(params.match),
        "match_bins": params.match_bins,
        "positives_per_lrg": params.positives_per_lrg or "all",
        "fractions": list(params.fractions),
        "tolerance_arcsec": tolerance_arcsec,
        "inline": inline,
        "resplit": params.resplit,
        "hard_negatives": list(kinds),
        "hard_negative_mix": mix if kinds else {},
        "hard_negative_splits": list(hard_splits) if kinds else [],
        "shuffle_arcsec": shuffle_arcsec,
    }


def manifest_meta(input_path, out_dir, read: _Read, rows: pd.DataFrame, parameters: dict, hard, sha: str) -> dict:
    """The content of ``manifest.json`` (JSON-safe)."""
    root = input_root(input_path)
    ident, result, tolerance = read.ident, read.result, parameters["tolerance_arcsec"]
    return jsonable(
        {
            "format": "shortcutgates.manifest",
            "version": 1,
            "package_version": __version__,
            "parameters": parameters,
            "hard_negatives": hard,
            "seed": parameters["seed"],
            "input": {
                "path": str(Path(input_path).resolve()),
                "root": os.path.relpath(root, Path(out_dir).resolve()).replace(os.sep, "/"),
                "files": [_file_record(f, root) for f in read.files],
                "n_rows": int(len(read.catalog.frame)),
                "n_cutout_excluded": read.catalog.n_cutout_excluded,
                "columns_not_in_all_files": read.partial,
            },
            "identity": {
                "n_lrgs": ident.n_lrgs,
                "max_extent_arcsec": float(ident.extent_arcsec.max(initial=0.0)),
                "n_chained_groups": int((ident.extent_arcsec > tolerance).sum()),
            },
            "split_source": result.split_source,
            "lrg_counts": result.lrg_counts,
            "counts": split_counts(rows),
            "n_rows": int(len(rows)),
            "balance": result.balance,
            "matching": None if result.matching is None else result.matching.as_dict(),
            "files": [MANIFEST_PARQUET],
            "rows_sha256": sha,
        }
    )


def write_manifest(input_path, out_dir, read: _Read, rows: pd.DataFrame, parameters: dict, hard) -> tuple[str, dict]:
    """Write ``rows`` (their pointers made relative to the input root) and ``manifest.json``; returns the
    rows' digest (:func:`rows_sha256`) and the content of ``manifest.json``."""
    rows = portable(rows, input_root(input_path))
    table = pa.Table.from_pandas(rows, preserve_index=False)
    sha = rows_sha256(table)
    meta = manifest_meta(input_path, out_dir, read, rows, parameters, hard, sha)
    write_tree(Path(out_dir), table, meta)
    return sha, meta
