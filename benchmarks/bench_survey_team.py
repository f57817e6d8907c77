"""Side by side with the survey team's gate code on the same rows (issue 22: ours <= 0.6x theirs).

Theirs: ``run_shortcut_gates`` of ``planb/unpaired_experiment`` (public: github.com/aditrivaishnavi/
toy_glens_kinematics, ``dark_halo_scope/planb/unpaired_experiment``): per row ``decode_npz_blob`` and
``preprocess_stack``, then a 5-fold core-LR and a radial-profile LR probe (no intervals), for both of
their preprocessings (``raw_robust``, ``residual_radial_profile``), on the rows of our ``train``
sample (the capped rows our gates use). Their code is imported from ``SHORTCUTGATES_SURVEY_CODE`` (a
directory holding their ``unpaired_experiment`` package; ``benchmarks/run_issue22.sh`` extracts it
from a clone); it is not part of this repository. The blobs are handed to them already read.

Ours: every data gate on every split, with intervals: one ``shortcutgates gate --data M --no-cache``
process of this tree (data gates only).

Run: ``SHORTCUTGATES_SURVEY_CODE=DIR SHORTCUTGATES_BENCH_MANIFEST=M OMP_NUM_THREADS=1 python -m pytest
benchmarks/bench_survey_team.py --benchmark-only -s``
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

SURVEY_CODE = os.environ.get("SHORTCUTGATES_SURVEY_CODE")
MANIFEST = os.environ.get("SHORTCUTGATES_BENCH_MANIFEST")
TREE = Path(__file__).resolve().parents[1]


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


@pytest.mark.skipif(
    not (SURVEY_CODE and MANIFEST), reason="SHORTCUTGATES_SURVEY_CODE and SHORTCUTGATES_BENCH_MANIFEST not set"
)
def test_survey_team_probes_vs_our_data_gates(benchmark, tmp_path):
    from shortcutgates.gates.registry import GateConfig, GateContext
    from shortcutgates.data.manifest import row_blobs

    sys.path.insert(0, SURVEY_CODE)
    from unpaired_experiment.gates import run_shortcut_gates  # their code, outside this repository
    from unpaired_experiment.preprocess import preprocess_stack
    from unpaired_experiment.run_gates import stack_from_npz
    from unpaired_experiment.utils import decode_npz_blob

    ctx = GateContext(Path(MANIFEST), config=GateConfig())
    sample = ctx.sample("train")
    blobs, labels = row_blobs(sample.frame).blobs, sample.labels

    t0, c0 = time.perf_counter(), _cpu()
    results = {}
    for mode in ("raw_robust", "residual_radial_profile"):
        xs = np.stack([preprocess_stack(stack_from_npz(decode_npz_blob(b)), mode=mode) for b in blobs])
        results[mode] = run_shortcut_gates(xs, labels)
    theirs_wall, theirs_cpu = time.perf_counter() - t0, _cpu() - c0

    env = dict(os.environ, PYTHONPATH=str(TREE), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "shortcutgates.cli",
            "gate",
            "--data",
            MANIFEST,
            "--no-cache",
            "--gate-cache",
            str(tmp_path / "cache"),
            "--no-strict",
            "--",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    ours_wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    ours_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    info = {
        "n_rows": len(blobs),
        "theirs_wall_s": theirs_wall,
        "theirs_cpu_s": theirs_cpu,
        "ours_wall_s": ours_wall,
        "ours_cpu_s": ours_cpu,
        "ours_over_theirs_wall": ours_wall / theirs_wall,
        "ours_over_theirs_cpu": ours_cpu / theirs_cpu,
        "load_average": os.getloadavg(),
        "theirs": {m: str(r) for m, r in results.items()},
    }
    benchmark.extra_info.update(info)
    print(
        f"\nsurvey team's two probes x 2 preprocessings on {len(blobs)} train rows: {theirs_wall:.1f} s wall / "
        f"{theirs_cpu:.1f} s CPU ({'; '.join(info['theirs'].values())}); all our data gates on every split: "
        f"{ours_wall:.1f} s / {ours_cpu:.1f} s = {info['ours_over_theirs_wall']:.2f}x wall, "
        f"{info['ours_over_theirs_cpu']:.2f}x CPU (target <= 0.6x); load average {info['load_average']}"
    )
