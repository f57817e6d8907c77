"""The row checks of a manifest being read (:func:`shortcutgates.data.manifest.read_manifest`): labels,
sky positions and splits, an image for every row, and the same image listed twice (as two positives,
under both labels, or in two splits). Each refusal is a :class:`~shortcutgates.data.schema.DataError`
naming the manifest file, row and column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from shortcutgates.data.io import check_positions, show_value
from shortcutgates.data.schema import (
    IMAGE_COLUMN,
    LABEL_COLUMN,
    MANIFEST_SPLITS,
    POINTER_COLUMNS,
    SHARED_POSITIVE_SPLITS,
    SPLIT_COLUMN,
    DataError,
)

DIGEST_COLUMN = "_image_digest"
"""Private column while reading: sha1 of each inline blob left on disk (None for a null blob)."""


def check_rows(frame: pd.DataFrame, check_duplicates: bool = True) -> None:
    """Every check of a manifest's rows, in order (columns converted in place): labels, positions and
    splits, an image per row, then duplicate images refused (``check_duplicates``) or listed in
    ``frame.attrs["duplicate_images"]``."""
    check_manifest_columns(frame)
    check_images_present(frame)
    if check_duplicates:
        refuse_duplicates(frame)
    else:
        frame.attrs["duplicate_images"] = duplicate_images(frame)


def row_location(frame: pd.DataFrame, i: int) -> dict:
    """``file`` and ``row`` of frame row ``i`` in its manifest, as :class:`DataError` takes them."""
    return {"file": frame["manifest_file"].iloc[i], "row": int(frame["manifest_row"].iloc[i])}


def check_manifest_columns(frame: pd.DataFrame) -> None:
    """Labels 0 or 1, ``ra`` / ``dec`` finite and on the sky, a known split; each column converted in place."""
    labels = pd.to_numeric(frame[LABEL_COLUMN], errors="coerce")
    bad = ~labels.isin([0, 1])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"label must be 0 or 1 (got {show_value(frame[LABEL_COLUMN].iloc[i])})",
            **row_location(frame, i),
            column=LABEL_COLUMN,
        )
    frame[LABEL_COLUMN] = labels.astype(np.int8)
    check_positions(frame, lambda i: row_location(frame, i))
    for col in ("ra", "dec"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").to_numpy(np.float64)
    split = frame[SPLIT_COLUMN]
    bad = split.isna().to_numpy() | ~split.isin(MANIFEST_SPLITS).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        value = split.iloc[i]
        problem = "split is missing" if pd.isna(value) else f"unknown split {value!r}"
        raise DataError(
            problem, **row_location(frame, i), column=SPLIT_COLUMN, hint=f"expected one of {', '.join(MANIFEST_SPLITS)}"
        )
    frame[SPLIT_COLUMN] = split.astype(str)


def pointer_ok(frame: pd.DataFrame) -> np.ndarray:
    """(N,) bool: the row carries a complete pointer (source path, row and column)."""
    if not all(c in frame for c in POINTER_COLUMNS):
        return np.zeros(len(frame), bool)
    return frame[list(POINTER_COLUMNS)].notna().all(axis=1).to_numpy()


def check_images_present(frame: pd.DataFrame) -> None:
    """Every row has an inline blob or a complete pointer (unless blobs were projected away)."""
    if IMAGE_COLUMN in frame or DIGEST_COLUMN in frame:
        inline = frame[IMAGE_COLUMN if IMAGE_COLUMN in frame else DIGEST_COLUMN]
        has = inline.notna().to_numpy() | pointer_ok(frame)
    elif all(c in frame for c in POINTER_COLUMNS[:2]):
        has = frame[list(POINTER_COLUMNS[:2])].notna().all(axis=1).to_numpy()
    else:
        return  # image_npz projected away
    if not has.all():
        i = int(np.flatnonzero(~has)[0])
        raise DataError(
            f"row has neither an {IMAGE_COLUMN} blob nor a complete pointer ({', '.join(POINTER_COLUMNS)})",
            **row_location(frame, i),
            column=IMAGE_COLUMN,
        )


def image_keys(frame: pd.DataFrame) -> pd.Series | None:
    """Per row, what identifies its image: the inline blob, else the pointer; None if neither was read."""
    keys = None
    if all(c in frame for c in POINTER_COLUMNS):
        keys = (
            (
                frame[POINTER_COLUMNS[0]].astype(str)
                + "\0"
                + frame[POINTER_COLUMNS[1]].astype(str)
                + "\0"
                + frame[POINTER_COLUMNS[2]].astype(str)
            )
            .fillna("")
            .map(str.encode)
        )  # null: an inline row
    if IMAGE_COLUMN in frame or DIGEST_COLUMN in frame:  # the blob itself, or its digest when left on disk
        blobs = frame[IMAGE_COLUMN if IMAGE_COLUMN in frame else DIGEST_COLUMN]
        keys = blobs if keys is None else blobs.where(blobs.notna(), keys)
    return keys


def shared_positive(group: pd.DataFrame) -> bool:
    """Rows of one image (``label``, ``split`` columns) that are one positive of each of ``test`` and
    ``test_paired``: shared by design (:data:`~shortcutgates.data.schema.SHARED_POSITIVE_SPLITS`), not a duplicate."""
    return (
        len(group) == len(SHARED_POSITIVE_SPLITS)
        and bool((group["label"] == 1).all())
        and sorted(group["split"].tolist()) == sorted(SHARED_POSITIVE_SPLITS)
    )


def refuse_duplicates(frame: pd.DataFrame) -> None:
    """Refuse one image listed as two positives (but once in each of ``test`` and ``test_paired``),
    or under both labels.

    Identical negatives are allowed: in paired data an LRG with k injections gives k copies of
    its control image (the gates deduplicate them).
    """
    keys = image_keys(frame)
    if keys is None:
        return
    table = pd.DataFrame(
        {
            "key": keys.to_numpy(),
            "label": frame[LABEL_COLUMN].to_numpy(),
            "split": frame[SPLIT_COLUMN].astype(str).to_numpy() if SPLIT_COLUMN in frame else "",
        }
    )
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
            other = row_location(frame, j)
            column = IMAGE_COLUMN if IMAGE_COLUMN in frame or DIGEST_COLUMN in frame else POINTER_COLUMNS[0]
            raise DataError(
                f"the same image is listed {what}: duplicate of {other['file']} row {other['row']}",
                **row_location(frame, i),
                column=column,
            )


def duplicate_images(frame: pd.DataFrame) -> list[str]:
    """One located message per row whose image another row already lists as a positive, under the
    other label, or in another split (a copy leaked across splits); identical negatives of one split
    (the controls of one LRG's injections) and one positive shared by ``test`` and ``test_paired``
    (:func:`shared_positive`) are allowed."""
    keys = image_keys(frame)
    if keys is None:
        return []
    table = pd.DataFrame(
        {
            "key": keys.to_numpy(),
            "label": frame[LABEL_COLUMN].to_numpy(),
            "split": frame[SPLIT_COLUMN].astype(str).to_numpy(),
        }
    )
    clash = table.duplicated(["key"], keep=False).to_numpy()
    column = IMAGE_COLUMN if IMAGE_COLUMN in frame or DIGEST_COLUMN in frame else POINTER_COLUMNS[0]
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
            here, other = row_location(frame, j), row_location(frame, first)
            out.append(
                f"{here['file']}: row {here['row']}, column '{column}': the same image is listed {what}: "
                f"duplicate of {other['file']} row {other['row']}"
            )
    return out
