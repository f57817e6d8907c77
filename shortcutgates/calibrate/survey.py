"""Survey strength of the planted counter-image: paired raw core-LR AUC against its flux.

The survey's own paired data give a core-LR AUC of about 0.93–0.95 on the central 10×10 px of
``raw_robust`` stamps. :func:`core_lr_curve` measures the same gate case on paired pool data at
graded counter-image strengths; :func:`survey_strength` interpolates the strength at 0.93.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from shortcutgates.gates.registry import GateConfig, GateContext
from shortcutgates.gates.suite import run_suite
from shortcutgates.calibrate.plant import split_rows, write_manifest
from shortcutgates.calibrate.pool import load_pool

SURVEY_PAIRED_CORE_LR = 0.93
STRENGTHS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5)


def paired_core_lr(pool, strength: float, n_lrgs: int, seed: int) -> float:
    """core_lr_auc[train-box10-raw_robust] of ``n_lrgs`` paired LRGs with counter-images of ``strength``."""
    rng = np.random.default_rng([seed, 77])
    frame, _ = split_rows(pool, n_lrgs, "train", rng, core=strength, paired=True)
    with tempfile.TemporaryDirectory(prefix="sg-survey-") as tmp:
        context = GateContext(write_manifest(frame, Path(tmp) / "m"), config=GateConfig(n_boot=500, seed=seed))
        run = next(
            run_suite(
                context,
                lambda c: (
                    c.gate == "core_lr_auc" and c.params.get("input") == "raw_robust" and c.params.get("box") == 10
                ),
                waivers=False,
            )
        )
        return float(run.result.value)


def core_lr_curve(pool, strengths=STRENGTHS, n_lrgs: int = 1000, seeds=(0, 1)) -> list[tuple[float, float]]:
    """(strength, mean paired core-LR AUC over ``seeds``) for each strength."""
    return [(s, float(np.mean([paired_core_lr(pool, s, n_lrgs, seed) for seed in seeds]))) for s in strengths]


def survey_strength(curve, target: float = SURVEY_PAIRED_CORE_LR) -> float:
    """Strength at which the (increasing) curve reaches ``target`` (linear interpolation)."""
    s, auc = np.array(curve).T
    if auc.max() < target:
        raise ValueError(
            f"calibrate: the paired core-LR AUC reaches only {auc.max():.3f} < {target} at strength {s.max():g}"
        )
    return float(np.interp(target, np.maximum.accumulate(auc), s))


def print_survey_strength(profile, cache_dir=None, progress: bool = True) -> None:
    pool = load_pool(profile.pool_lrgs, profile.pool_seed, cache_dir, progress=progress)
    curve = core_lr_curve(pool)
    for s, auc in curve:
        print(f"counter-image strength {s:5.2f}: paired raw core-LR AUC {auc:.3f}")
    print(f"survey strength (paired core-LR {SURVEY_PAIRED_CORE_LR}): {survey_strength(curve):.3f}")
