"""Calibration profiles: which cells, how many seeds, how large a pool, which roles.

``quick`` (every gate, a few seeds per cell) took 290 s wall on 2 idle cores as two shards, with
the simulated pool already cached (``docs/calibration.md``); ``full`` (primary cases, plus the
gates of :data:`ALSO_RECORDED` in every role) asks 200 seeds of every null cell, interleaved by seed
so a run stopped early has covered every cell evenly. ``tiny`` is the reduced quick
profile the test suite runs. ``cnn`` trains small CNNs on the realistic pool
(:mod:`shortcutgates.calibrate.cnn`): the model gates' null and power on trained lens finders. The survey strength of the planted counter-image is
:data:`SURVEY_CORE`; ``shortcutgates calibrate --survey-strength`` re-measures it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from shortcutgates.gates.registry import EVERY_ROLE_GATES
from shortcutgates.calibrate.harness import Cell
from shortcutgates.calibrate.scorers import LAMBDAS, mixture_name

SURVEY_CORE = 0.25
"""Counter-image flux, as a fraction of the arc's flux, at which the paired raw core-LR AUC
(box 10, ``raw_robust``) of the pool is about 0.93, the survey's paired value (measured with
``shortcutgates calibrate --survey-strength``; ``docs/calibration.md``)."""

CORE_GRADES = (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0)
"""Counter-image strengths, as fractions of :data:`SURVEY_CORE`."""
SMD_GRADES = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3)
FAINT_GRADES = (0.0, 0.7, 0.8, 0.9, 0.95)
"""Fractions of arc flux removed (``faint``: the arcs the sanity gate must miss)."""
SIZES = (250, 500, 1000, 2000)
"""LRGs per split of the null cells."""
SUITE_SEEDS = 80
"""Seeds of the full profile's whole-suite cell (80 of 80 green puts the Wilson lower bound at 0.95).
Seeds 0-39 decided which held-out probes are reported (``docs/calibration.md#primary-family``);
seeds 40-79 were run after that change, as fresh data for the rate it claims."""
ALSO_RECORDED = EVERY_ROLE_GATES
"""Gates the full profile records in every role (the registry rows' ``calibrate_every_role``): the held-out splits' shortcut probes and the
cross-test gap (reported, with the rates that made them so) and the counterfactual gates' reported
θ_E bins."""
SUITE_LRGS = 4000
"""LRGs of the whole-suite cells: the proposal's mini-experiment (4000 samples, unpaired)."""
CNN_RECORDED = (
    "detection_auroc",
    "cross_test_gap",
    "arc_masked_auroc",
    "core_masked_auroc_drop",
    "arc_swap_auroc_drop",
    "morphology_auroc",
)
"""Gates the ``cnn`` profile records, in every role (the model gates of the paired split; the model-input
probes and the strata are left out to keep a seed cheap)."""
CNN_SEEDS = 20
"""Seeds (one trained CNN each) per family of the ``cnn`` profile."""
CNN_TRAIN_LRGS = 800
"""Training LRGs per CNN seed (half positives, half negatives; ``val`` takes a fifth as many more)."""
CNN_POOL_LRGS = 2400
"""LRGs of the realistic pool the ``cnn`` profile draws from (a seed uses 800 + 160 + 2 × 500 = 1960)."""


class Profile(NamedTuple):
    """Cells with their seed counts, the pool they draw from, and the roles of the cases run."""

    name: str
    pool_lrgs: int
    pool_seed: int
    cells: tuple  # of (Cell, n_seeds)
    roles: tuple = ("primary", "reported")
    also: tuple = ()
    """Gates whose cases are recorded whatever their role (a profile of primary cases still measures
    the reported cases that were once primary, and the small θ_E bins)."""
    n_boot: int | None = None
    """LRG-bootstrap resamples per interval (None: :data:`shortcutgates.calibrate.runner.N_BOOT`)."""
    first_seed: int = 0
    """The first seed of every cell (``shortcutgates calibrate --first-seed``: fresh seeds for a profile
    whose earlier seeds chose a rule)."""
    pool_sizes: tuple = ()
    """``(kind, LRGs)`` pairs: pool kinds whose pool holds another number of LRGs than ``pool_lrgs``."""

    def lrgs_of(self, kind: str) -> int:
        """LRGs of the profile's pool of ``kind`` (:data:`shortcutgates.calibrate.pool.POOL_KINDS`)."""
        return dict(self.pool_sizes).get(kind, self.pool_lrgs)


def _grid(kind, problem, grades, sizes, seeds, scale=1.0, **kw):
    return [(Cell(kind, problem, round(g * scale, 6), n, **kw), seeds) for n in sizes for g in grades if g > 0]


def scorer_name(lam: float) -> str:
    """Reference scorer of core weight ``lam``: ``arc`` (0), ``core`` (1), else ``mix<lam>``."""
    return "arc" if lam == 0 else "core" if lam == 1 else mixture_name(lam)


def _tiny() -> Profile:
    cells = [
        (Cell("data", "core", 0.0, 150), 4),
        (Cell("data", "core", SURVEY_CORE, 150), 3),
        (Cell("data", "smd", 0.5, 150), 3),
    ]
    # model cells on the realistic pool: its injection truth lets the gates split counter-image from arc
    # (the tapered pool carries none, so there every pair is undecidable and no core gate decides)
    cells += [
        (Cell("model", "core", 0.0, 150, scorer=s, core=SURVEY_CORE, pool="realistic"), 2) for s in ("arc", "core")
    ]
    return Profile("tiny", 400, 0, tuple(cells))


def _quick() -> Profile:
    cells = [(Cell("data", "core", 0.0, n), 6) for n in SIZES]
    cells += _grid("data", "core", CORE_GRADES, (2000,), 3, scale=SURVEY_CORE)
    cells += _grid("data", "smd", SMD_GRADES, (1000,), 3)
    cells += [(Cell("data", p, 0.01, 500), 2) for p in ("leak", "dup")]
    cells += _grid("data", "faint", FAINT_GRADES, (1000,), 2)
    cells += [(Cell("model", "core", 0.0, 250, scorer="arc", core=SURVEY_CORE), 6)]
    cells += [(Cell("model", "core", 0.0, 500, scorer=scorer_name(lam), core=SURVEY_CORE), 2) for lam in LAMBDAS]
    cells += [(Cell("suite", "core", 0.0, SUITE_LRGS, scorer="arc"), 2)]
    return Profile("quick", 10000, 0, tuple(cells))


def _full() -> Profile:
    cells = [(Cell("data", "core", 0.0, n), 200) for n in SIZES]
    cells += [
        (Cell("data", "core", round(g * SURVEY_CORE, 6), 2000), 20 if g == 1.0 else 10) for g in (0.1, 0.2, 0.35, 1.0)
    ]
    cells += _grid("data", "smd", (0.05, 0.1, 0.2, 0.4, 0.6), (2000,), 10)
    cells += [(Cell("data", p, 0.01, 500), 5) for p in ("leak", "dup")]
    cells += [(Cell("model", "core", 0.0, n, scorer="arc", core=SURVEY_CORE), 200) for n in (250, 500)]
    # added after the first pass (the same command resumes): a 150-LRG null, the faint-arc power
    # cells, and model cells whose gate values are not point masses (coverage of the model gates)
    cells += [(Cell("data", "core", 0.0, 150), 200)]
    cells += _grid("data", "faint", FAINT_GRADES, (2000,), 10)
    cells += [(Cell("model", "core", 0.0, n, scorer="mix0.2", core=SURVEY_CORE), 200) for n in (250, 500)]
    cells += [
        (Cell("model", "core", 0.0, 500, scorer=scorer_name(lam), core=SURVEY_CORE), 10) for lam in LAMBDAS if lam > 0
    ]
    cells += [(Cell("suite", "core", 0.0, SUITE_LRGS, scorer="arc"), SUITE_SEEDS)]
    return Profile("full", 10000, 0, tuple(cells), roles=("primary",), also=ALSO_RECORDED)


def _cnn() -> Profile:
    """Trained CNNs on the realistic pool: the core-neutral families (the model gates' null) and the
    core-reliant family (their power), :data:`CNN_SEEDS` seeds each."""
    from shortcutgates.calibrate.cnn import FAMILIES, PREFIX

    cells = [
        (Cell("cnn", "core", 0.0, CNN_TRAIN_LRGS, scorer=PREFIX + name, pool="realistic"), CNN_SEEDS)
        for name in FAMILIES
    ]
    return Profile("cnn", CNN_POOL_LRGS, 0, tuple(cells), roles=(), also=CNN_RECORDED)


MAG_SMD = 0.5
"""Planted LRG magnitude imbalance (population SMD of ``lrg_mag_r``) of the ``criteria`` profile."""
LEAK_FRACTION = 0.01
"""Planted LRG leakage of the ``criteria`` profile: train positives' controls appended to ``test`` as
negatives, 1 % of ``test``'s LRG count (:func:`shortcutgates.calibrate.harness.leak_into_test`)."""
CRITERIA_SEEDS = 10
"""Seeds of each whole-suite cell of the ``criteria`` profile (each ~1-3 min on the shared 2 cores)."""
CRITERIA_NULL_FAMILIES = ("neutral-residual", "neutral-raw_robust")
"""Core-neutral CNN families (:data:`shortcutgates.calibrate.cnn.FAMILIES`) of the ``criteria`` profile's
clean trained-suite cells: the realistic null of issue 20's acceptance."""
CRITERIA_NULL_SEEDS = 20
"""Seeds (one CNN trained on a 4000-LRG built catalogue each) per clean trained-suite cell: 19 of 20 green
is a measured 95 % (Wilson lower bound 76 %); 20 of 20 puts the lower bound at 84 %."""
CRITERIA_REALISTIC_LRGS = 6000
"""LRGs of the ``criteria`` profile's realistic pool: a trained-suite seed draws :data:`SUITE_LRGS` of them
(seeds share two thirds of their LRGs; their noise, splits, donors and CNN are their own)."""


def _criteria() -> Profile:
    """Issue 20's acceptance: every criterion turns a default run red on a planted violation at the
    proposal's size (4000 LRGs, the builder's default splits), also when confined to held-out
    splits; a clean run stays green (all cases recorded: an established violation is red in any
    role) — on the realistic null, a core-neutral CNN trained on each seed's built catalogue and gated
    with it (``suite`` cells scored ``cnn:<family>``), and on the tapered pool with the arc reader (the data
    probes' null); magnitude imbalance at 2000 samples without a magnitude column."""
    from shortcutgates.calibrate.cnn import PREFIX

    suite: dict[str, Any] = dict(kind="suite", n_lrgs=SUITE_LRGS, scorer="arc")
    # the clean trained suite (the realistic null): a core-neutral CNN trained per seed on the built catalogue
    cells = [
        (Cell("suite", "core", 0.0, SUITE_LRGS, scorer=PREFIX + family, pool="realistic"), CRITERIA_NULL_SEEDS)
        for family in CRITERIA_NULL_FAMILIES
    ]
    # the data probes' null (key suite:core=0:n4000:arc): the tapered pool (no lensed light in the core), the arc
    # reference reader (a fixed scorer, no trained model)
    cells += [
        (Cell(problem="core", strength=0.0, pool="tapered", **suite), 2 * CRITERIA_SEEDS),
        (Cell(problem="core", strength=SURVEY_CORE, where="test", **suite), CRITERIA_SEEDS),
        (Cell(problem="mag", strength=MAG_SMD, where="val,test", **suite), CRITERIA_SEEDS),
        (Cell(problem="mag", strength=MAG_SMD, **suite), CRITERIA_SEEDS),
        (Cell(problem="leak", strength=LEAK_FRACTION, **suite), CRITERIA_SEEDS),
        # the arc-masked criterion's planted violation: a model that reads the core (the ``core`` reference
        # reader: the counter-image's light in the central box), on the realistic pool's lenses
        (Cell("suite", "core", 0.0, SUITE_LRGS, scorer="core", pool="realistic"), CRITERIA_SEEDS),
        (Cell("data", "mag", MAG_SMD, 2000), 2 * CRITERIA_SEEDS),
        (Cell("data", "size", MAG_SMD, 2000), CRITERIA_SEEDS),
    ]
    return Profile("criteria", 10000, 0, tuple(cells), pool_sizes=(("realistic", CRITERIA_REALISTIC_LRGS),))


GAP_SEEDS = 40
"""Seeds per cell of the ``gap`` profile: 0–19 decide whether ``cross_test_gap`` decides (pass and fail
in >= 90 %), 20–39 check that decision."""
GAP_SIZES = (2000, 4000, 6667)
"""Catalogue sizes of the ``gap`` profile: the demo's, the proposal's, and the size whose default splits
hold 500 ``test_paired`` pairs (the proposal's 4000 with a 25 % test fraction holds as many; ``docs/calibration.md``)."""


def _gap() -> Profile:
    """``cross_test_gap`` (and ``detection_auroc``) on the held-out splits of a default build, realistic
    pool, survey-strength counter-images, the arc reader: the clean rate at the demo's and proposal's sizes."""
    cells = [
        (Cell("heldout", "core", 0.0, n, scorer="arc", core=SURVEY_CORE, pool="realistic"), GAP_SEEDS)
        for n in GAP_SIZES
    ]
    return Profile("gap", CNN_POOL_LRGS, 0, tuple(cells), roles=(), also=("cross_test_gap", "detection_auroc"))


READER_SEEDS = 50
"""Seeds of the ``readers`` profile (simulator seeds ``1000 + seed``; seeds 100 and 101 chose the
counterfactual gates' decision rule, ``docs/model_gates.md#calibration``, and are not among them)."""
READER_LRGS = 150
"""Simulated LRGs per seed of the ``readers`` profile (2–4 injections each: ~450 pairs)."""


def _readers() -> Profile:
    """The reference readers on the simulator's default lenses (``docs/model_gates.md#calibration``): every
    reader of :func:`shortcutgates.calibrate.scorers.reader_names`, every counterfactual case, every role."""
    return Profile("readers", 0, 0, ((Cell("reader", "core", 0.0, READER_LRGS, pool="simulator"), READER_SEEDS),))


COVERAGE_SEEDS = 200
"""Seeds per cell of the ``coverage`` profile (a coverage of 0.95 then has a binomial SE of 0.015)."""
COVERAGE_SIZES = (150, 300, 1000)
"""LRGs per split of the ``coverage`` cells."""
PROBE_AUCS = (0.5, 0.65)
"""Population AUCs of the ``coverage`` profile's probe cells."""
SCORER_AUCS = (0.5, 0.75, 0.9)
"""Population AUROCs of the ``coverage`` profile's fixed-scorer cells."""


def _coverage() -> Profile:
    """Coverage of the gates' 95 % intervals on synthetic data (:mod:`shortcutgates.calibrate.coverage`): the
    probe AUC (three intervals) and a fixed scorer's AUROC and AUROC gap, unpaired and paired, with the
    gates' default resamples (1000)."""
    from shortcutgates.gates.records import GateConfig
    from shortcutgates.calibrate.coverage import DESIGNS

    cells = [
        (Cell("coverage", f"{what}-{design}", auc, n), COVERAGE_SEEDS)
        for what, aucs in (("probe", PROBE_AUCS), ("scorer", SCORER_AUCS))
        for design in DESIGNS
        for auc in aucs
        for n in COVERAGE_SIZES
    ]
    return Profile("coverage", 0, 0, tuple(cells), n_boot=GateConfig().n_boot)


PROFILES = ("tiny", "quick", "full", "criteria", "cnn", "gap", "readers", "coverage")


def make_profile(name: str) -> Profile:
    """The cells of profile ``name`` (one of :data:`PROFILES`)."""
    makers = {
        "tiny": _tiny,
        "quick": _quick,
        "full": _full,
        "criteria": _criteria,
        "cnn": _cnn,
        "gap": _gap,
        "readers": _readers,
        "coverage": _coverage,
    }
    if name not in makers:
        raise ValueError(f"calibrate: profile must be one of {', '.join(PROFILES)} (got {name!r})")
    return makers[name]()
