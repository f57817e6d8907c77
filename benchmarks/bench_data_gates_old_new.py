"""Data gates on ~4000 samples: this tree against a baseline checkout, in one run (issue 22: <= 0.5x).

Each side is a fresh ``python -m shortcutgates.cli gate --data M --no-cache`` process (data gates only,
no model, the data-gate cache bypassed), the two trees alternating ``SHORTCUTGATES_BENCH_REPEATS``
times on the same manifest; the best wall and CPU time (user + system of the child) of each side
are compared. The two JSON reports must hold the same cases with the same values, intervals,
verdicts and roles (a message may be reworded): the speed-up changes no number. The model cases of a
data-only run are skipped; their θ_E-bin roles are compared only where they ran (a data-only run lists
them without the lensing split, in their gate's role: only a model's run decides whether a bin gates).

Environment:

* ``SHORTCUTGATES_OLD_TREE``: a checkout of the baseline (e.g. ``git worktree add --detach /tmp/old
  c62729a``); the test is skipped without it.
* ``SHORTCUTGATES_BENCH_MANIFEST``: the manifest (default: a synthetic one of
  ``SHORTCUTGATES_BENCH_N`` = 4000 rows; ``benchmarks/run_issue22.sh`` builds a simulated one).
* ``SHORTCUTGATES_BENCH_REPEATS``: default 2.

Run: ``SHORTCUTGATES_OLD_TREE=/tmp/old OMP_NUM_THREADS=1 python -m pytest
benchmarks/bench_data_gates_old_new.py --benchmark-only -s``
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

N_SAMPLES = int(os.environ.get("SHORTCUTGATES_BENCH_N", 4000))
REPEATS = int(os.environ.get("SHORTCUTGATES_BENCH_REPEATS", 2))
OLD_TREE = os.environ.get("SHORTCUTGATES_OLD_TREE")
NEW_TREE = Path(__file__).resolve().parents[1]
COMPARED = ("id", "value", "ci", "verdict", "n", "n_groups", "message", "role")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    given = os.environ.get("SHORTCUTGATES_BENCH_MANIFEST")
    if given:
        return Path(given)
    from shortcutgates.gates.synthetic import ToySpec, make_rows, write_manifest

    rows = make_rows(ToySpec(n_lrgs=int(N_SAMPLES / 1.1), core_fraction=0.3, theta_e_arcsec=(1.2, 2.6), seed=0))
    return write_manifest(rows, tmp_path_factory.mktemp("bench_data_gates"))


def _data_gates(tree: Path, manifest: Path, workdir: Path, tag: str) -> tuple[float, float, list]:
    """Wall and CPU seconds of one data-gates-only ``shortcutgates gate`` process of ``tree``, and its cases."""
    workdir.mkdir(parents=True, exist_ok=True)
    report = workdir / f"{tag}.json"
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
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
            "--no-cache",
            "--gate-cache",
            str(workdir / "cache"),
            "--no-strict",
            "--gate-report",
            str(report),
            "--",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=workdir,
        check=False,
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):
        raise AssertionError(f"{tree}: gate exited {done.returncode}: {done.stderr[-2000:]}")
    cases = [{k: g.get(k) for k in COMPARED} for g in json.loads(report.read_text())["gates"]]
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), cases


@pytest.mark.skipif(not OLD_TREE, reason="SHORTCUTGATES_OLD_TREE (a baseline checkout) is not set")
def test_data_gates_this_tree_vs_baseline(benchmark, manifest, tmp_path):
    load_before = os.getloadavg()
    runs: dict[str, list] = {"old": [], "new": []}
    cases = {}
    for r in range(REPEATS):
        for tag, tree in (("old", Path(OLD_TREE)), ("new", NEW_TREE)):
            wall, cpu, cases[tag] = _data_gates(tree, manifest, tmp_path / tag, f"r{r}")
            runs[tag].append((wall, cpu))
    # the same cases, values, intervals and verdicts; a message may be reworded between the trees; a model case
    # (skipped: no model) of a θ_E bin is listed without the lensing split since issue 22, in its gate's role
    numbers = {
        tag: [{k: v for k, v in c.items() if k != "message" and (k != "role" or c["verdict"] != "skipped")} for c in cs]
        for tag, cs in cases.items()
    }
    assert numbers["new"] == numbers["old"]
    reworded = [n["id"] for n, o in zip(cases["new"], cases["old"]) if n["message"] != o["message"]]
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    best = {tag: (min(w for w, _ in rs), min(c for _, c in rs)) for tag, rs in runs.items()}
    info = {
        "manifest": str(manifest),
        "n_cases": len(cases["new"]),
        "repeats": REPEATS,
        "old_wall_s": best["old"][0],
        "new_wall_s": best["new"][0],
        "old_cpu_s": best["old"][1],
        "new_cpu_s": best["new"][1],
        "new_over_old_wall": best["new"][0] / best["old"][0],
        "new_over_old_cpu": best["new"][1] / best["old"][1],
        "identical_numbers": True,
        "reworded": reworded,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }
    benchmark.extra_info.update(info)
    print(
        f"\ndata gates ({len(cases['new'])} cases, {manifest}; best of {REPEATS}, wall / CPU s): baseline "
        f"{best['old'][0]:.1f} / {best['old'][1]:.1f}, this tree {best['new'][0]:.1f} / {best['new'][1]:.1f}; "
        f"new / old: wall {info['new_over_old_wall']:.2f}x, CPU {info['new_over_old_cpu']:.2f}x (target <= 0.5x); "
        f"numbers identical (messages reworded: {reworded or 'none'}); load average {load_before} -> {info['load_average_after']}"
    )
