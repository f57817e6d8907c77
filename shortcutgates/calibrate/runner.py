"""Run a profile's (cell, seed) pairs, sharded and resumable, recording one CSV row per case.

``run_profile(profile, out_dir, shard=k, n_shards=K)`` runs the pairs whose position in the
profile's list is ``k`` modulo ``K`` — start ``K`` processes with ``k = 0 … K−1`` to use ``K``
cores — and appends their records to ``out_dir/records-k-of-K.csv`` after each seed, so an
interrupted run resumes where it stopped. :func:`load_records` merges every shard's file.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd

from ..gates.registry import GateConfig
from .harness import Cell, run_seed
from .pool import load_pool
from .profiles import Profile

N_BOOT = 500
"""LRG-bootstrap resamples per interval in calibration runs (the suite's minimum)."""


def pairs(profile: Profile) -> list[tuple[Cell, int]]:
    """Every (cell, seed) of a profile, once, seeds interleaved across cells so a partial run covers all
    cells (a cell listed twice runs the larger of its seed counts)."""
    seeds: dict = {}
    for cell, n in profile.cells:
        seeds[cell] = max(n, seeds.get(cell, 0))
    longest = max(seeds.values())
    return [(cell, seed) for seed in range(longest) for cell, n in seeds.items() if seed < n]


def _done(out_dir: Path) -> set[tuple[str, int]]:
    """(cell, seed) pairs any shard has recorded (shards may be re-cut when a profile changes)."""
    done = set()
    for path in out_dir.glob("records-*-of-*.csv"):
        if path.stat().st_size:
            frame = pd.read_csv(path, usecols=["cell", "seed"])
            done |= set(zip(frame["cell"], frame["seed"].astype(int)))
    return done


def run_profile(profile: Profile, out_dir, *, shard: int = 0, n_shards: int = 1, cache_dir=None,
                progress: bool = True, config: GateConfig | None = None) -> Path:
    """Run this shard's pairs of ``profile``; returns its records file."""
    from tqdm.auto import tqdm

    if not 0 <= shard < n_shards:
        raise ValueError(f"calibrate: shard must be in 0..{n_shards - 1} (got {shard})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"records-{shard}-of-{n_shards}.csv"
    done = _done(out_dir)
    todo = [p for i, p in enumerate(pairs(profile)) if i % n_shards == shard and (p[0].key, p[1]) not in done]
    pools = {kind: load_pool(profile.pool_lrgs, profile.pool_seed, cache_dir, progress=progress, kind=kind)
             for kind in sorted({cell.pool for cell, _ in todo})}
    config = config or GateConfig(n_boot=N_BOOT)
    start = time.perf_counter()
    for cell, seed in tqdm(todo, desc=f"calibrate {profile.name} shard {shard}/{n_shards}", unit="seed",
                           disable=not progress, file=sys.stderr, mininterval=5):
        records = pd.DataFrame(run_seed(pools[cell.pool], cell, seed, config, profile.roles, profile.also))
        _append(records, path)
    (out_dir / f"wall-{shard}-of-{n_shards}.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
    return path


def _append(records: pd.DataFrame, path: Path) -> None:
    """Append records to a shard's CSV; a file written with other columns (an older version) is refused."""
    if path.exists() and path.stat().st_size:
        header = pd.read_csv(path, nrows=0).columns.tolist()
        if header != records.columns.tolist():
            raise ValueError(f"{path}: written with columns {header}, this version writes {records.columns.tolist()} "
                             "(resume it with the version that wrote it, or use a new --out)")
    records.to_csv(path, mode="a", header=not path.exists() or path.stat().st_size == 0, index=False)


def load_records(out_dir) -> pd.DataFrame:
    """Every shard's records in ``out_dir``, concatenated."""
    files = sorted(Path(out_dir).glob("records-*-of-*.csv"))
    if not files:
        raise FileNotFoundError(f"{out_dir}: no records-*-of-*.csv (run `shortcutgates calibrate` first)")
    frame = pd.concat([pd.read_csv(f, keep_default_na=True) for f in files], ignore_index=True)
    frame["scorer"] = frame["scorer"].fillna("")
    frame["pool"] = frame["pool"].fillna("tapered") if "pool" in frame else "tapered"  # records before pool kinds
    return frame.drop_duplicates(["cell", "seed", "case"], keep="first").reset_index(drop=True)
