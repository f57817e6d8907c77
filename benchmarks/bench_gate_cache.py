"""A checkpoint after the first on one manifest: ``shortcutgates gate`` with the data-gate cache warm
vs the model gates alone (issue 22: at most 1.2x).

Three commands on one synthetic manifest and ``fixtures/checkpoints/clean.pt``, each a fresh
``python -m shortcutgates.cli gate`` process (interpreter start and imports included on every side):

* ``cold``: every case, the cache empty (the first checkpoint);
* ``warm``: every case again, the data cases read from the cache (the second and later checkpoints);
* ``model only``: ``-k`` keeps the model cases only, the data gates deselected (``--no-strict``).

``warm`` and ``model only`` run back to back, ``SHORTCUTGATES_BENCH_REPEATS`` times, alternating.
Printed and in ``extra_info``: wall time and CPU time (user + system of the child process) of each,
the warm / model-only ratios of both (the CPU-time one is the one that survives a busy machine) and
the load average before and after.

Run: ``OMP_NUM_THREADS=1 python -m pytest benchmarks/bench_gate_cache.py --benchmark-only -s``
(``SHORTCUTGATES_BENCH_N``: manifest size, default 4000; ``SHORTCUTGATES_BENCH_REPEATS``, default 2).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shortcutgates.gates.synthetic import ToySpec, make_rows, write_manifest

N_SAMPLES = int(os.environ.get("SHORTCUTGATES_BENCH_N", 4000))
REPEATS = int(os.environ.get("SHORTCUTGATES_BENCH_REPEATS", 2))
CHECKPOINT = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoints" / "clean.pt"
MODEL_ONLY = "not data_integrity and not lrg_leakage and not property_balance and not metadata_c2st and not raw_robust"
"""``-k`` expression that deselects every data-only case (the probes' data cases are the ``raw_robust`` ones)."""


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    rows = make_rows(ToySpec(n_lrgs=int(N_SAMPLES / 1.1), core_fraction=0.3, theta_e_arcsec=(1.2, 2.6), seed=0))
    return write_manifest(rows, tmp_path_factory.mktemp("bench_cache"))


def _gate(manifest: Path, cache: Path, *extra: str) -> tuple[float, float, int]:
    """Wall and CPU seconds of one ``shortcutgates gate`` process, and its exit status."""
    env = dict(os.environ, SHORTCUTGATES_CACHE=str(cache), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "shortcutgates.cli",
            "gate",
            "--data",
            str(manifest),
            "--model",
            str(CHECKPOINT),
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode not in (0, 1):
        raise AssertionError(f"gate exited {done.returncode}: {done.stderr[-2000:]}")
    return wall, cpu, done.returncode


def test_second_checkpoint_vs_model_gates_alone(benchmark, manifest, tmp_path):
    load_before = os.getloadavg()
    cache = tmp_path / "cache"
    cold = _gate(manifest, cache, "--", "-q")
    warm, alone = [], []
    for _ in range(REPEATS):
        warm.append(_gate(manifest, cache, "--", "-q"))
        alone.append(_gate(manifest, tmp_path / "empty-cache", "--no-strict", "--", "-q", "-k", MODEL_ONLY))
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    best = {
        name: (min(r[0] for r in runs), min(r[1] for r in runs))
        for name, runs in (("cold", [cold]), ("warm", warm), ("model_only", alone))
    }
    info = {
        "n_samples": N_SAMPLES,
        "repeats": REPEATS,
        **{f"{k}_wall_s": v[0] for k, v in best.items()},
        **{f"{k}_cpu_s": v[1] for k, v in best.items()},
        "warm_over_model_only_wall": best["warm"][0] / best["model_only"][0],
        "warm_over_model_only_cpu": best["warm"][1] / best["model_only"][1],
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }
    benchmark.extra_info.update(info)
    print(
        f"\ngate cache on {N_SAMPLES} samples (best of {REPEATS}; wall / CPU s): cold {best['cold'][0]:.1f} / "
        f"{best['cold'][1]:.1f}, warm {best['warm'][0]:.1f} / {best['warm'][1]:.1f}, model gates alone "
        f"{best['model_only'][0]:.1f} / {best['model_only'][1]:.1f}; warm / model-only: wall "
        f"{info['warm_over_model_only_wall']:.2f}x, CPU {info['warm_over_model_only_cpu']:.2f}x (target <= 1.2x); "
        f"load average {load_before} -> {info['load_average_after']}"
    )
