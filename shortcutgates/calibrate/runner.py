"""Run a profile's (cell, seed) pairs, sharded and resumable, recording one CSV row per case.

``run_profile(profile, out_dir, shard=k, n_shards=K)`` runs the pairs whose position in the
profile's list is ``k`` modulo ``K`` — start ``K`` processes with ``k = 0 … K−1`` to use ``K``
cores — and appends their records to ``out_dir/records-k-of-K.csv`` after each seed, so an
interrupted run resumes where it stopped. :func:`load_records` merges every shard's file.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from shortcutgates.gates.registry import GateConfig
from shortcutgates.calibrate.coverage import run_coverage_seed
from shortcutgates.calibrate.harness import Cell, run_seed
from shortcutgates.calibrate.pool import Pool, load_pool
from shortcutgates.calibrate.profiles import Profile
from shortcutgates.calibrate.readers import run_reader_seed

N_BOOT = 500
"""LRG-bootstrap resamples per interval in calibration runs (the suite's minimum)."""


POOL_FREE_KINDS = {"reader": run_reader_seed, "coverage": run_coverage_seed}
"""Cell kinds that make their own data per seed and draw from no pool, and the function running one seed."""


def run_cell_seed(
    pool: Pool | None, cell: Cell, seed: int, config: GateConfig, roles=("primary", "reported"), also: tuple = ()
) -> list[dict]:
    """The records of one seed of any cell: :func:`~shortcutgates.calibrate.harness.run_seed` for the cells
    that draw from ``pool``, every record of a :data:`POOL_FREE_KINDS` cell (any role) otherwise."""
    if cell.kind in POOL_FREE_KINDS:
        return POOL_FREE_KINDS[cell.kind](cell, seed, replace(config, seed=int(seed)))
    if pool is None:
        raise ValueError(f"calibrate: {cell.kind} cells draw from a pool (cell {cell.key})")
    return run_seed(pool, cell, seed, config, roles, also)


def pairs(profile: Profile, cells: str = "") -> list[tuple[Cell, int]]:
    """Every (cell, seed) of a profile, once, seeds interleaved across cells so a partial run covers all
    cells (a cell listed twice runs the larger of its seed counts); seeds count from ``profile.first_seed``.
    ``cells``: only the cells whose key contains this text (all when empty); ``ValueError`` when none does."""
    seeds: dict = {}
    for cell, n in profile.cells:
        if cells in cell.key:
            seeds[cell] = max(n, seeds.get(cell, 0))
    if not seeds:
        raise ValueError(
            f"calibrate: no cell of profile {profile.name} has {cells!r} in its key "
            f"({', '.join(sorted({c.key for c, _ in profile.cells}))})"
        )
    longest = max(seeds.values())
    first = profile.first_seed
    return [(cell, first + seed) for seed in range(longest) for cell, n in seeds.items() if seed < n]


def _done(out_dir: Path) -> set[tuple[str, int]]:
    """(cell, seed) pairs any shard has recorded (shards may be re-cut when a profile changes)."""
    done = set()
    for path in out_dir.glob("records-*-of-*.csv"):
        if path.stat().st_size:
            frame = pd.read_csv(path, usecols=["cell", "seed"])
            done |= set(zip(frame["cell"], frame["seed"].astype(int)))
    return done


_WORKER: dict = {}
"""A worker process's pool and settings (:func:`_init_worker`)."""


def _pools(sizes: dict, pool_seed: int, cache_dir, progress: bool = False) -> dict:
    """The (memory-mapped, cached) pool of every kind in ``sizes`` (kind -> LRGs)."""
    return {kind: load_pool(n, pool_seed, cache_dir, progress=progress, kind=kind) for kind, n in sorted(sizes.items())}


def _init_worker(sizes: dict, pool_seed: int, cache_dir, config, roles, also) -> None:
    """Load the pools once per worker process."""
    _WORKER.update(pools=_pools(sizes, pool_seed, cache_dir), config=config, roles=roles, also=also)


KIND_COST = {"suite": 4.0, "cnn": 8.0, "model": 2.0, "heldout": 1.5, "data": 1.0, "reader": 1.0, "coverage": 0.2}
"""Relative run time per LRG of a seed of each cell kind (rough: a whole suite on 4000 LRGs takes ~1 min, one
split's data gates on 2000 ~15 s, on an idle core); a trained CNN (``cnn`` cells, ``suite`` cells scored by a
CNN) costs most."""


def pair_cost(pair: tuple) -> float:
    """An estimate of a (cell, seed) pair's run time, to hand the longest to the workers first
    (:func:`shortcutgates.parallel.ordered_map`); it orders the work only, never the records."""
    cell = pair[0]
    kind = "cnn" if (cell.scorer or "").startswith("cnn:") else cell.kind
    return KIND_COST.get(kind, 1.0) * max(int(cell.n_lrgs), 1)


def _seed_task(pair: tuple) -> list:
    """The records of one ``(cell, seed)`` in a worker (seeded by the pair: the same in any process)."""
    cell, seed = pair
    w = _WORKER
    return run_cell_seed(w["pools"].get(cell.pool), cell, seed, w["config"], w["roles"], w["also"])


def run_profile(
    profile: Profile,
    out_dir,
    *,
    shard: int = 0,
    n_shards: int = 1,
    cache_dir=None,
    progress: bool = True,
    config: GateConfig | None = None,
    workers: int = 1,
    cells: str = "",
) -> Path:
    """Run this shard's pairs of ``profile``; returns its records file.

    ``workers`` processes run the pairs (:func:`shortcutgates.parallel.ordered_map`); records are
    appended in the pairs' order, each pair seeded by itself, so the records file and the tables are
    the same for any ``workers``. One progress bar counts the seeds of all workers. ``cells``: see
    :func:`pairs`.
    """
    from tqdm.auto import tqdm

    from shortcutgates.parallel import ordered_map

    if not 0 <= shard < n_shards:
        raise ValueError(f"calibrate: shard must be in 0..{n_shards - 1} (got {shard})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"records-{shard}-of-{n_shards}.csv"
    done = _done(out_dir)
    todo = [p for i, p in enumerate(pairs(profile, cells)) if i % n_shards == shard and (p[0].key, p[1]) not in done]
    sizes = {cell.pool: profile.lrgs_of(cell.pool) for cell, _ in todo if cell.kind not in POOL_FREE_KINDS}
    pools = _pools(sizes, profile.pool_seed, cache_dir, progress)
    config = config or GateConfig(n_boot=profile.n_boot or N_BOOT)
    start = time.perf_counter()
    _WORKER.update(pools=pools, config=config, roles=profile.roles, also=profile.also)  # workers == 1: this process
    results = ordered_map(
        _seed_task,
        todo,
        workers,
        initializer=_init_worker,
        initargs=(sizes, profile.pool_seed, cache_dir, config, profile.roles, profile.also),
        cost=pair_cost,
    )
    desc = f"calibrate {profile.name} shard {shard}/{n_shards}" + (f" ({workers} workers)" if workers > 1 else "")
    for rows in tqdm(
        results, total=len(todo), desc=desc, unit="seed", disable=not progress, file=sys.stderr, mininterval=5
    ):
        _append(pd.DataFrame(rows), path)
    (out_dir / f"wall-{shard}-of-{n_shards}.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
    return path


def _append(records: pd.DataFrame, path: Path) -> None:
    """Append records to a shard's CSV; a file written with other columns (an older version) is refused."""
    if path.exists() and path.stat().st_size:
        header = pd.read_csv(path, nrows=0).columns.tolist()
        if header != records.columns.tolist():
            raise ValueError(
                f"{path}: written with columns {header}, this version writes {records.columns.tolist()} "
                "(resume it with the version that wrote it, or use a new --out)"
            )
    records.to_csv(path, mode="a", header=not path.exists() or path.stat().st_size == 0, index=False)


def load_records(out_dir) -> pd.DataFrame:
    """Every shard's records in ``out_dir``, concatenated."""
    files = sorted(Path(out_dir).glob("records-*-of-*.csv"))
    if not files:
        raise FileNotFoundError(f"{out_dir}: no records-*-of-*.csv (run `shortcutgates calibrate` first)")
    frame = pd.concat([pd.read_csv(f, keep_default_na=True) for f in files], ignore_index=True)
    frame["scorer"] = frame["scorer"].fillna("")
    # a reader cell records every case once per reader (scorer); other cells have one scorer per cell
    return frame.drop_duplicates(["cell", "seed", "case", "scorer"], keep="first").reset_index(drop=True)
