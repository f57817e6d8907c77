"""Gating many checkpoints on one data read: 10 checkpoints vs 1 on a 4000-sample manifest.

``shortcutgates gate --model a.pt b.pt ... --out DIR`` reads and samples the manifest once and
measures the data gates once; each checkpoint then runs only its model gates on a context that
shares decoded samples, preprocessed inputs, memoised probes, the paired set and the counterfactual
batch. Target (issue 22): ten checkpoints take at most 1.5× the wall time of one.

Each run is a fresh process (imports included, as a CI job's run), and both find the gate cache warm
(a warm-up run fills a cache directory of its own first: the data records and the lensing split of
the pairs, what an earlier CI job on the same manifest leaves), so the ratio compares what a further
checkpoint costs with what a whole gated run costs, not the data gates.

The checkpoints are ``fixtures/checkpoints/clean.pt`` with its weights perturbed by a seeded
1 % Gaussian (distinct checkpoints with distinct scores, as consecutive epochs are). That network
was trained on other stamps, so on this manifest some of its model cases end as ``error`` (AUROC far
below chance) — after the model has scored every image they need, so the cost is the real one; the
verdict counts are printed to show every model was scored and judged. Reported in
``extra_info`` and on stdout: wall time for 1 and for 10, their ratio, and the per-checkpoint
marginal cost.

With ``SHORTCUTGATES_BASE_TREE`` (a checkout of earlier code, e.g. ``git archive 7cc73c0 | tar -x -C
/tmp/base``) the same runs of that tree alternate with this tree's (base one, this one, base ten, this
ten; each tree its own warm cache), so both ratios and per-checkpoint costs come from one stretch of load.

Run: ``OMP_NUM_THREADS=1 python -m pytest benchmarks/bench_gate_many.py --benchmark-only -s``
(``SHORTCUTGATES_BENCH_N`` changes the manifest size, ``SHORTCUTGATES_BENCH_MODELS`` the count).
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
N_MODELS = int(os.environ.get("SHORTCUTGATES_BENCH_MODELS", 10))
ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "fixtures" / "checkpoints" / "clean.pt"
BASE_TREE = os.environ.get("SHORTCUTGATES_BASE_TREE")
CPU: dict[Path, float] = {}
"""CPU seconds (user + system) of each run, by its output directory (a loaded machine stretches wall times)."""


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    rows = make_rows(ToySpec(n_lrgs=int(N_SAMPLES / 1.1), core_fraction=0.3, theta_e_arcsec=(1.2, 2.6), seed=0))
    return write_manifest(rows, tmp_path_factory.mktemp("bench_many"))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> list[Path]:
    import torch

    base = torch.load(CHECKPOINT, weights_only=True)
    out = []
    directory = tmp_path_factory.mktemp("ckpts")
    for i in range(N_MODELS):
        gen = torch.Generator().manual_seed(i)
        state = {
            k: (
                v + 0.01 * v.std().nan_to_num() * torch.randn(v.shape, generator=gen)
                if v.is_floating_point() and v.numel() > 1
                else v
            )
            for k, v in base["state_dict"].items()
        }
        path = directory / f"epoch{i:03d}.pt"
        torch.save(dict(base, state_dict=state), path)
        out.append(path)
    return out


def _timed(tree: Path, manifest: Path, models: list[Path], out: Path, cache: Path) -> float:
    """Wall seconds of one ``gate_many`` process of ``tree``: a fresh process, as a CI job's run (imports,
    data read, model gates). Its CPU seconds (user + system) are added to ``CPU[out]``."""
    code = (
        "import sys, torch; torch.set_num_threads(1); from pathlib import Path; "
        "from shortcutgates.gates.sweep import gate_many; a = sys.argv[1:]; "
        "gate_many(Path(a[0]), [Path(m) for m in a[3:]], Path(a[1]), progress=False, cache_dir=Path(a[2]))"
    )
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, str(manifest), str(out), str(cache), *map(str, models)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU[out] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode not in (0, 1):
        raise AssertionError(f"{tree}: gate_many exited {done.returncode}: {done.stderr[-2000:]}")
    return wall


def test_ten_checkpoints_vs_one(benchmark, manifest, checkpoints, tmp_path):
    trees = {"this": ROOT, **({"base": Path(BASE_TREE)} if BASE_TREE else {})}
    load_before = os.getloadavg()
    for tag, tree in trees.items():  # fills each tree's cache: data records, lensing split
        _timed(tree, manifest, checkpoints[:1], tmp_path / tag / "warm-up", tmp_path / tag / "cache")
    one, many = {}, {}
    for tag, tree in sorted(trees.items()):  # base first, then this tree
        one[tag] = _timed(tree, manifest, checkpoints[:1], tmp_path / tag / "one", tmp_path / tag / "cache")
    for tag, tree in sorted(trees.items()):
        if tag == "this":
            many[tag] = benchmark.pedantic(
                _timed,
                args=(tree, manifest, checkpoints, tmp_path / tag / "many", tmp_path / tag / "cache"),
                rounds=1,
                iterations=1,
            )
        else:
            many[tag] = _timed(tree, manifest, checkpoints, tmp_path / tag / "many", tmp_path / tag / "cache")
    verdicts = _model_verdicts(tmp_path / "this" / "many", checkpoints)
    per = {tag: (many[tag] - one[tag]) / max(len(checkpoints) - 1, 1) for tag in trees}
    cpu = {tag: (CPU[tmp_path / tag / "one"], CPU[tmp_path / tag / "many"]) for tag in trees}
    info = {
        "n_samples": N_SAMPLES,
        "n_models": len(checkpoints),
        "one_s": one["this"],
        "many_s": many["this"],
        "ratio": many["this"] / one["this"],
        "marginal_per_model_s": per["this"],
        "model_case_verdicts": verdicts,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "cpu_one_s": cpu["this"][0],
        "cpu_many_s": cpu["this"][1],
    }
    if BASE_TREE:
        info.update(
            {
                "base_tree": BASE_TREE,
                "base_one_s": one["base"],
                "base_many_s": many["base"],
                "base_ratio": many["base"] / one["base"],
                "base_marginal_per_model_s": per["base"],
                "base_cpu_one_s": cpu["base"][0],
                "base_cpu_many_s": cpu["base"][1],
            }
        )
    benchmark.extra_info.update(info)
    for tag in sorted(trees):
        print(
            f"\n{tag} ({trees[tag]}): gate_many on {N_SAMPLES} samples: 1 checkpoint {one[tag]:.1f} s, "
            f"{len(checkpoints)} checkpoints {many[tag]:.1f} s = {many[tag] / one[tag]:.2f}x one (target <= 1.5x); "
            f"{per[tag]:.2f} s per further checkpoint; CPU {cpu[tag][0]:.1f} s -> {cpu[tag][1]:.1f} s = "
            f"{cpu[tag][1] / cpu[tag][0]:.2f}x, {(cpu[tag][1] - cpu[tag][0]) / max(len(checkpoints) - 1, 1):.2f} s "
            "per further checkpoint"
        )
    print(
        f"model-case verdicts over all checkpoints {verdicts}; load average {load_before} -> {info['load_average_after']}"
    )


def _model_verdicts(out: Path, checkpoints: list[Path]) -> dict:
    """Verdict counts of the model cases in the reports: the models were really scored, not errors."""
    from collections import Counter

    from shortcutgates.gates.report_json import read_report
    from shortcutgates.gates.sweep import model_primary

    counts: Counter = Counter()
    for ckpt in checkpoints:
        counts.update(g["verdict"] for g in model_primary(read_report(out / f"{ckpt.stem}.json")["gates"]))
    return dict(counts)
