"""Calibration profiles: which cells, how many seeds, how large a pool.

``quick`` runs in about 10 minutes on 2 cores; ``full`` gives every null cell at least 200 seeds.
``tiny`` is the reduced quick profile the test suite runs. The survey strength of the planted
core excess is :data:`SURVEY_CORE`; ``shortcutgates calibrate --survey-strength`` re-measures it.
"""

from __future__ import annotations

from typing import NamedTuple

from .harness import Cell

SURVEY_CORE = 0.3
"""Counter-image flux, as a fraction of the arc's flux, at which the paired raw core-LR AUC
(box 10, ``raw_robust``) of the pool is about 0.93, the survey's paired value (measured with
``shortcutgates calibrate --survey-strength``; ``docs/calibration.md``)."""

CORE_GRADES = (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0)
"""Counter-image strengths, as fractions of :data:`SURVEY_CORE`."""
SMD_GRADES = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3)
LEAK_GRADES = (0.0, 0.002, 0.01, 0.05)
DUP_GRADES = (0.0, 0.002, 0.01, 0.05)
LAMBDAS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
"""Core weight λ of the reference-scorer mixtures λ·core + (1−λ)·arc."""


class Profile(NamedTuple):
    """Cells with their seed counts, and the pool they draw from."""

    name: str
    pool_lrgs: int
    pool_seed: int
    cells: tuple  # of (Cell, n_seeds)


def _grid(kind, problem, grades, sizes, seeds, scale=1.0, **kw):
    return [(Cell(kind, problem, round(g * scale, 6), n, **kw), seeds) for n in sizes for g in grades if g > 0]


def _mix(lam: float) -> str:
    return "arc" if lam == 0 else "core" if lam == 1 else f"mix{lam:g}"


def make_profile(name: str) -> Profile:
    """The cells of profile ``name`` (``tiny``, ``quick`` or ``full``)."""
    if name == "tiny":
        cells = [(Cell("data", "core", 0.0, 150), 4), (Cell("data", "core", SURVEY_CORE, 150), 3),
                 (Cell("data", "smd", 0.5, 150), 3)]
        cells += [(Cell("model", "core", 0.0, 100, scorer=s, core=SURVEY_CORE), 2) for s in ("arc", "core")]
        return Profile(name, 400, 0, tuple(cells))
    if name == "quick":
        sizes, null_seeds, power_seeds, model_seeds = (250, 500, 1000, 2000), 12, 6, 6
        power_sizes = (500, 2000)
        pool = 6000
        suite_seeds, suite_n = 6, 4000
    elif name == "full":
        sizes, null_seeds, power_seeds, model_seeds = (250, 500, 1000, 2000), 200, 40, 40
        power_sizes = (500, 2000)
        pool = 10000
        suite_seeds, suite_n = 40, 4000
    else:
        raise ValueError(f"calibrate: profile must be tiny, quick or full (got {name!r})")
    cells = [(Cell("data", "core", 0.0, n), null_seeds) for n in sizes]
    cells += _grid("data", "core", CORE_GRADES, power_sizes, power_seeds, scale=SURVEY_CORE)
    cells += _grid("data", "smd", SMD_GRADES, power_sizes, power_seeds)
    cells += _grid("data", "leak", LEAK_GRADES, power_sizes[-1:], max(2, power_seeds // 4))
    cells += _grid("data", "dup", DUP_GRADES, power_sizes[-1:], max(2, power_seeds // 4))
    cells += [(Cell("model", "core", 0.0, n, scorer="arc", core=SURVEY_CORE), null_seeds if n <= 1000 else model_seeds)
              for n in (250, 1000)]
    cells += [(Cell("model", "core", 0.0, 1000, scorer=_mix(lam), core=SURVEY_CORE), model_seeds)
              for lam in LAMBDAS if lam > 0]
    cells += [(Cell("suite", "core", 0.0, suite_n, scorer="arc"), suite_seeds)]
    return Profile(name, pool, 0, tuple(cells))
