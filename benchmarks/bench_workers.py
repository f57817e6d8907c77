"""Every core: ``simulate --workers 2`` and ``calibrate --workers 2`` against one worker (issue 22).

Targets: simulate >= 1.8x one worker with the same bytes; calibrate (``quick`` profile) >= 1.7x
with the same table. Both sides run back to back in this process, ``SHORTCUTGATES_BENCH_REPEATS``
times, alternating; the outputs are compared (simulate: every file's bytes; calibrate: every
record but its ``seconds`` column, which is each case's wall time).

On a machine whose cores are busy with other work a second worker cannot run at once, so the wall
ratio then says little. Printed with it, from the CPU time of this process (the parent: task
hand-out, writing) and of its worker processes (``RUSAGE_CHILDREN``): the work a second worker
adds (total CPU with 2 workers / with 1) and the wall ratio that work allows on 2 free cores,
between ``t1 / (parent + workers / 2)`` (the parent's work not overlapped) and
``t1 / max(parent, (parent + workers) / 2)`` (fully overlapped), where ``t1`` is the one-worker CPU
time. The load average is printed before and after.

Run: ``OMP_NUM_THREADS=1 python -m pytest benchmarks/bench_workers.py --benchmark-only -s``
(``SHORTCUTGATES_BENCH_LRGS``: simulated LRGs, default 200; ``SHORTCUTGATES_BENCH_PROFILE``: the
calibration profile, default ``quick``; ``tiny`` takes minutes instead of ~10 min per side;
``SHORTCUTGATES_BENCH_POOL_CACHE``: a pool cache directory to reuse, e.g. the one ``calibrate --cache``
filled; by default the pool is simulated into a temporary directory, outside the timings).
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import pandas as pd
import pytest

N_LRGS = int(os.environ.get("SHORTCUTGATES_BENCH_LRGS", 200))
PROFILE = os.environ.get("SHORTCUTGATES_BENCH_PROFILE", "quick")
REPEATS = int(os.environ.get("SHORTCUTGATES_BENCH_REPEATS", 1))


def _timed(fn) -> dict:
    """Wall, this process's CPU and the finished children's CPU of ``fn()``, seconds; and its result."""
    s0, c0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = fn()
    wall = time.perf_counter() - t0
    s1, c1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)

    def cpu(a, b):
        return (b.ru_utime - a.ru_utime) + (b.ru_stime - a.ru_stime)

    return {"wall": wall, "parent": cpu(s0, s1), "workers": cpu(c0, c1), "out": out}


def _report(benchmark, name: str, one: list[dict], two: list[dict], target: float) -> None:
    def best(runs, k):
        return min(r[k] for r in runs)

    t1 = best(one, "parent") + best(one, "workers")
    parent, workers = best(two, "parent"), best(two, "workers")
    info = {
        "wall_one_s": best(one, "wall"),
        "wall_two_s": best(two, "wall"),
        "wall_ratio": best(one, "wall") / best(two, "wall"),
        "cpu_one_s": t1,
        "cpu_two_parent_s": parent,
        "cpu_two_workers_s": workers,
        "cpu_two_over_one": (parent + workers) / t1,
        "free_cores_ratio_low": t1 / (parent + workers / 2),
        "free_cores_ratio_high": t1 / max(parent, (parent + workers) / 2),
    }
    benchmark.extra_info.update(info)
    print(
        f"\n{name}: wall 1 worker {info['wall_one_s']:.1f} s, 2 workers {info['wall_two_s']:.1f} s = "
        f"{info['wall_ratio']:.2f}x (target >= {target}x); CPU 1 worker {t1:.1f} s, 2 workers {parent:.1f} s parent + "
        f"{workers:.1f} s workers = {info['cpu_two_over_one']:.2f}x the work; on 2 free cores that allows "
        f"{info['free_cores_ratio_low']:.2f}x-{info['free_cores_ratio_high']:.2f}x; load average {os.getloadavg()}"
    )


def test_simulate_two_workers_vs_one(benchmark, tmp_path):
    from shortcutgates.simulate import simulate_paired

    print(f"\nload average before: {os.getloadavg()}")
    runs: dict[int, list] = {1: [], 2: []}
    outputs = {}
    for r in range(REPEATS):
        for workers in (1, 2):
            out = tmp_path / f"w{workers}-{r}"
            run = _timed(
                lambda out=out, workers=workers: simulate_paired(out, N_LRGS, 0, progress=False, workers=workers)
            )
            runs[workers].append(run)
            outputs[workers] = {str(f): (out / f).read_bytes() for f in run["out"].files}
    assert outputs[1] == outputs[2]  # the same bytes
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    _report(benchmark, f"simulate {N_LRGS} LRGs", runs[1], runs[2], 1.8)


def test_calibrate_two_workers_vs_one(benchmark, tmp_path):
    from shortcutgates.calibrate.pool import load_pool
    from shortcutgates.calibrate.profiles import make_profile
    from shortcutgates.calibrate.rates import summarise
    from shortcutgates.calibrate.runner import load_records, run_profile

    profile = make_profile(PROFILE)
    cache = Path(os.environ.get("SHORTCUTGATES_BENCH_POOL_CACHE") or tmp_path / "pool")
    load_pool(profile.pool_lrgs, profile.pool_seed, cache)  # simulated once, outside the timings
    print(f"\nload average before: {os.getloadavg()}")
    runs: dict[int, list] = {1: [], 2: []}
    tables = {}
    for r in range(REPEATS):
        for workers in (1, 2):
            out = tmp_path / f"w{workers}-{r}"
            runs[workers].append(
                _timed(
                    lambda out=out, workers=workers: run_profile(
                        profile, out, cache_dir=cache, progress=False, workers=workers
                    )
                )
            )
            tables[workers] = load_records(out).drop(columns="seconds")
    pd.testing.assert_frame_equal(tables[1], tables[2], check_exact=True)  # the same records
    summary = [summarise(t.assign(seconds=0.0)) for t in (tables[1], tables[2])]
    pd.testing.assert_frame_equal(summary[0], summary[1], check_exact=True)  # the same table
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    _report(benchmark, f"calibrate --profile {PROFILE}", runs[1], runs[2], 1.7)


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "--benchmark-only", "-s"])
