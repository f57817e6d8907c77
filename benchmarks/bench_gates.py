"""Speed of the gate suite: all data gates and all model gates on a 4000-sample manifest.

Reports (in ``extra_info`` and on stdout): wall time of all data-gate cases and of all model-gate
cases, the model's inference passes and images scored, and both times as a ratio to one bare
core-LR fit (a single logistic regression on the 10×10 central boxes of the same 4000 samples)
and to one grouped 5-fold core-LR probe.

Run: ``python -m pytest benchmarks/bench_gates.py -s --benchmark-disable-gc``
(the manifest is generated once per module; ``SHORTCUTGATES_BENCH_N`` changes its size).

Old against new in one run (the same manifest, the same machine load)::

    git worktree add /tmp/sg-old 25d9ad8
    OMP_NUM_THREADS=1 PYTHONPATH=/tmp/sg-old python -m pytest /tmp/sg-old/benchmarks/bench_gates.py -s \
        -p no:cacheprovider --benchmark-disable-gc -k "data_gates or score_fn"; \
    OMP_NUM_THREADS=1 python -m pytest benchmarks/bench_gates.py -s -p no:cacheprovider \
        --benchmark-disable-gc -k "data_gates or score_fn"

The verdict counts printed are by verdict; ``primary`` counts the primary cases and how many of
them would turn the run red.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from shortcutgates.gates.probes import central_box, core_lr_auc
from shortcutgates.gates.registry import REGISTRY, GateConfig, GateContext, gate_cases, run_case
from shortcutgates.gates.synthetic import ToySpec, make_rows, ring_morphology_score, write_manifest
from shortcutgates.model.preprocess import raw_robust

N_SAMPLES = int(os.environ.get("SHORTCUTGATES_BENCH_N", 4000))
CHECKPOINT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "checkpoints", "clean.pt")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    # unpaired rows: about 1.1 rows per LRG (test_paired LRGs give two)
    rows = make_rows(ToySpec(n_lrgs=int(N_SAMPLES / 1.1), core_fraction=0.3, theta_e_arcsec=(1.2, 2.6), seed=0))
    return write_manifest(rows, tmp_path_factory.mktemp("bench"))


def _bare_fits(ctx: GateContext) -> dict:
    """One logistic regression on all samples' central boxes, and one grouped-CV core-LR probe."""
    splits = ctx.splits
    images = np.concatenate([ctx.sample(s).images for s in splits])
    labels = np.concatenate([ctx.sample(s).labels for s in splits])
    groups = np.concatenate([ctx.sample(s).groups for s in splits])
    features = central_box(raw_robust(images), 10)
    t0 = time.perf_counter()
    with threadpool_limits(limits=1, user_api="blas"):
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(features, labels)
    t1 = time.perf_counter()
    core_lr_auc(images, labels, groups, box=10)
    t2 = time.perf_counter()
    return {"n_samples": int(len(labels)), "bare_lr_fit_s": t1 - t0, "core_lr_probe_s": t2 - t1}


def _run_all(ctx: GateContext, want_model: bool) -> dict:
    cases = [c for c in gate_cases(ctx) if ("model" in c.needs) == want_model]
    per_gate: dict[str, float] = {}
    verdicts = []
    t0 = time.perf_counter()
    for case in cases:
        t = time.perf_counter()
        verdicts.append(run_case(ctx, case).verdict)
        per_gate[case.gate] = per_gate.get(case.gate, 0.0) + time.perf_counter() - t
    return {
        "cases": len(cases),
        "wall_s": time.perf_counter() - t0,
        "per_gate_s": per_gate,
        "verdicts": {v: verdicts.count(v) for v in sorted(set(verdicts))},
        "primary": _primary_count(cases, verdicts),
    }


def _primary_count(cases, verdicts) -> str:
    primary = [v for c, v in zip(cases, verdicts) if (c.role or REGISTRY[c.gate].role) == "primary"]
    red = sum(v in ("fail", "inconclusive", "error") for v in primary)
    return f"{len(primary)} primary, {red} red"


def _report(benchmark, name: str, result: dict, base: dict) -> None:
    result["x_bare_lr_fit"] = result["wall_s"] / base["bare_lr_fit_s"]
    result["x_core_lr_probe"] = result["wall_s"] / base["core_lr_probe_s"]
    benchmark.extra_info.update({**base, **result})
    print(
        f"\n{name}: {result['cases']} cases on {base['n_samples']} samples in {result['wall_s']:.1f} s "
        f"= {result['x_bare_lr_fit']:.0f}x one bare core-LR fit ({base['bare_lr_fit_s']:.2f} s), "
        f"{result['x_core_lr_probe']:.1f}x one grouped 5-fold core-LR probe ({base['core_lr_probe_s']:.2f} s); "
        f"inference passes {result.get('inference_passes', 0)}, images scored {result.get('images_scored', 0)}; "
        f"verdicts {result['verdicts']} ({result.get('primary', '-')})\n  per gate (s): "
        + ", ".join(f"{g} {t:.1f}" for g, t in sorted(result["per_gate_s"].items(), key=lambda kv: -kv[1]))
    )


def test_data_gates(benchmark, manifest):
    ctx = GateContext(manifest, config=GateConfig(n_boot=1000, max_samples=None))
    for split in ctx.splits:  # decoding is shared by every gate of a split: time it apart
        ctx.sample(split)
    base = _bare_fits(ctx)
    result = benchmark.pedantic(_run_all, args=(ctx, False), rounds=1, iterations=1)
    _report(benchmark, "data gates", result, base)


@pytest.mark.parametrize("scorer", ["score_fn", "checkpoint"])
def test_model_gates(benchmark, manifest, scorer):
    import torch

    torch.set_num_threads(1)
    if scorer == "checkpoint":
        if not os.path.exists(CHECKPOINT):
            pytest.skip(f"no tiny checkpoint at {CHECKPOINT} (made by fixtures/make_fixtures.py)")
        ctx = GateContext(manifest, model=CHECKPOINT, config=GateConfig(n_boot=1000, max_samples=None))
    else:
        ctx = GateContext(manifest, score_fn=ring_morphology_score, config=GateConfig(n_boot=1000, max_samples=None))
    for split in ctx.splits:
        ctx.sample(split)
    base = _bare_fits(ctx)
    result = benchmark.pedantic(_run_all, args=(ctx, True), rounds=1, iterations=1)
    result["inference_passes"], result["images_scored"] = ctx.n_inference_passes, ctx.n_images_scored
    _report(benchmark, f"model gates ({scorer})", result, base)


def test_full_suite_one_context(benchmark, manifest):
    """What ``pytest gate_tests`` does: every case in one context, so decoding, inputs, out-of-fold
    scores and unperturbed predictions are shared between data and model cases."""
    if not os.path.exists(CHECKPOINT):
        pytest.skip(f"no tiny checkpoint at {CHECKPOINT} (made by fixtures/make_fixtures.py)")
    import torch

    torch.set_num_threads(1)
    ctx = GateContext(manifest, model=CHECKPOINT, config=GateConfig(n_boot=1000, max_samples=None))
    for split in ctx.splits:
        ctx.sample(split)
    base = _bare_fits(ctx)
    cases = gate_cases(ctx)

    def run_all():
        t0 = time.perf_counter()
        verdicts = [run_case(ctx, c).verdict for c in cases]
        return {
            "cases": len(cases),
            "wall_s": time.perf_counter() - t0,
            "per_gate_s": {},
            "verdicts": {v: verdicts.count(v) for v in sorted(set(verdicts))},
        }

    result = benchmark.pedantic(run_all, rounds=1, iterations=1)
    result["inference_passes"], result["images_scored"] = ctx.n_inference_passes, ctx.n_images_scored
    _report(benchmark, "full suite, one context (checkpoint)", result, base)
