"""Keyed hashes, the only randomness of a build (docs/design.md#splits): a decision about an LRG is a
function of ``(lrg_id, seed, purpose)`` (:func:`unit_hash`), a decision about a row a function of its
content and the seed (:func:`row_keys`), never of a random stream or of row order.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from shortcutgates.data.schema import LRG_ID_COLUMN, SPLIT_COLUMN

_NOT_CONTENT = {"source_path", "source_row", SPLIT_COLUMN, LRG_ID_COLUMN}
"""Columns that locate a row (or are decided from it) rather than describe it: not part of its key."""


def unit_hash(keys, seed: int, purpose: str) -> np.ndarray:
    """(N,) float64 uniform numbers in [0, 1) from BLAKE2b of ``(seed, purpose, key)`` for N str ``keys``.

    ``purpose`` separates independent decisions (``split``, ``pool``, ``test_paired``, ``match``). The
    same key, seed and purpose always give the same number, on any machine.
    """
    prefix = f"shortcutgates/{int(seed)}/{purpose}/".encode()
    out = np.empty(len(keys), np.float64)
    for i, key in enumerate(keys):
        digest = hashlib.blake2b(prefix + str(key).encode(), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "big") / 2.0**64
    return out


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (Steele et al. 2014), vectorised over uint64."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def row_keys(catalog: pd.DataFrame, seed: int | None = None) -> np.ndarray:
    """A uint64 key per row from its metadata values (not its position), optionally seeded.

    Columns that only locate a row (``source_path``, ``source_row``) are left out, so permuting
    the input or splitting it over other files does not change a row's key.
    """
    cols = sorted(c for c in catalog.columns if c not in _NOT_CONTENT)
    keys = pd.util.hash_pandas_object(catalog[cols], index=False).to_numpy(np.uint64)
    return keys if seed is None else seeded(keys, seed)


def seeded(keys: np.ndarray, seed: int) -> np.ndarray:
    """Row keys re-mixed with a seed: ``row_keys(c, seed) == seeded(row_keys(c), seed)``."""
    salt = int.from_bytes(hashlib.blake2b(f"rows/{int(seed)}".encode(), digest_size=8).digest(), "big")
    return mix64(keys ^ np.uint64(salt))


def order_within_lrgs(catalog: pd.DataFrame, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows sorted by (lrg_id, key, source_path, source_row); returns order, lrg code per sorted row, run starts."""
    lrg = pd.factorize(catalog[LRG_ID_COLUMN], sort=True)[0]
    path = pd.factorize(catalog["source_path"], sort=True)[0]
    order = np.lexsort((catalog["source_row"].to_numpy(np.int64), path, keys, lrg))
    codes = lrg[order]
    return order, codes, np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
