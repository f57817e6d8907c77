"""The gate registry: every gate on one screen, its cases, and how one case is run and decided.

Contract (used by the pytest plugin, ``gate_tests/`` and ``shortcutgates gate``;
``docs/design.md#gate-contract``)
----------------------------------------------------------------------------------------------
* A gate function *measures*: ``measure(context, case) -> Measurement`` (value, interval, counts,
  what, note, extra). It raises ``ProbeError``/``DataError``/``ValueError`` when it cannot measure and
  knows nothing of this registry, thresholds or verdicts.
* :data:`REGISTRY` ``dict[str, Gate]``: each row is written with keywords: ``name``, ``metric``,
  default ``threshold`` (None: reported, never decided), ``direction`` (the claim a pass makes:
  ``at_most`` / ``at_least`` the threshold), ``equivalence`` (the claim is ``|value|`` within the
  margin, decided on the signed interval), ``chance`` (0.5 for AUCs), ``needs``, ``role``
  (``primary`` decides the run, ``reported`` is shown and never turns it red), ``cases`` (its case
  generator) and ``measure``; calibration facts: ``null`` (the true value on shortcut-free data),
  ``counterfactual`` (kind, statistic) and ``calibrate_every_role``. :data:`DATA_ONLY_GATES`,
  :data:`NULL_TRUTH`, :data:`COUNTERFACTUAL_GATES` and :data:`EVERY_ROLE_GATES` are read off the rows.
* :func:`gate_cases` ``(context) -> list[GateCase]``: every row's cases for this data, model cases
  included whether or not a model was given (so "expected" can be counted against "run"); each
  case carries its role (the generator's, the row's, or ``primary`` where ``[tool.shortcutgates]
  primary`` promotes it).
  ``case.id`` is the readable pytest id, e.g. ``core_lr_auc[train-box10-raw_robust]``.
* :func:`run_case` ``(context, case) -> GateResult``: skips a model case without a model, turns a
  measurement that could not be made into verdict ``error`` with the reason, resolves the threshold
  (case id, then gate name, then the row) and decides (:func:`shortcutgates.gates.decision.judge`).
* :func:`load_config` reads ``[tool.shortcutgates]`` and refuses thresholds of unknown gates.

Adding a gate = one function, one row here, and its planted-shortcut test
(``docs/design.md#adding-a-gate``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from shortcutgates.data.schema import DataError
from shortcutgates.gates import data_gates as dg
from shortcutgates.gates import model_gates as mg
from shortcutgates.gates.case_generators import (
    DATA,
    MIN_SHARED_GAP_LRGS,
    MODEL,
    MODEL_TRAIN,
    cross_test_cases,
    held_out_splits,
    leakage_cases,
    memorisation_cases,
    one_case,
    per_box_input,
    per_input_model_reported,
    per_probe_split,
    per_profile_input,
    per_property,
    per_stratum,
    shared_gap_lrgs,
    shortcut_probe_role,
    training_split_primary,
)
from shortcutgates.gates.context import GateContext
from shortcutgates.gates.contract import Direction, Measurement, Role
from shortcutgates.gates.decision import error_result, judge, skipped_result
from shortcutgates.gates.probes import ProbeError
from shortcutgates.gates.records import Gate, GateCase, GateConfig, GateResult, Verdict, check_gate_name

__all__ = [
    "Direction",
    "Role",
    "Verdict",
    "Measurement",
    "Gate",
    "GateCase",
    "GateResult",
    "GateConfig",
    "GateContext",
    "REGISTRY",
    "gate_cases",
    "run_case",
    "load_config",
    # case generators (gates/case_generators.py), also read as registry.*
    "MIN_SHARED_GAP_LRGS",
    "MODEL_TRAIN",
    "shared_gap_lrgs",
    "shortcut_probe_role",
]


# --- the registry ------------------------------------------------------------------------------
_ROWS = (
    Gate(
        name="data_integrity",
        metric="rows failing decode/shape/finite/normalisation checks",
        threshold=0,
        direction="at_most",
        needs=DATA,
        role="primary",
        cases=one_case,
        sane=(0, 0),
        measure=dg.data_integrity,
        remedy="fix or drop the rows it lists (file, row, column)",
    ),
    Gate(
        name="lrg_leakage",
        metric="LRG identities shared by positives and negatives, or by two splits",
        threshold=0,
        direction="at_most",
        needs=DATA,
        role="primary",
        cases=leakage_cases,
        sane=(0, 0),
        measure=dg.lrg_leakage,
        remedy="rebuild with `shortcutgates build` (LRG-disjoint splits)",
    ),
    Gate(
        name="property_balance",
        metric="signed standardised mean difference of a property, positives − negatives",
        threshold=0.2,
        direction="at_most",
        equivalence=True,
        needs=DATA,
        role="reported",
        cases=per_property,
        sane=(0.05, 0.5),
        measure=dg.property_balance,
        null=0.0,
        remedy="build with --match COL,... on the unbalanced columns",
    ),
    Gate(
        name="metadata_c2st_auc",
        metric="grouped-CV AUC predicting the label from property columns",
        threshold=0.60,
        direction="at_most",
        chance=0.5,
        needs=DATA,
        role="primary",
        cases=training_split_primary,
        sane=(0.5, 0.75),
        measure=dg.metadata_c2st_auc,
        null=0.5,
        calibrate_every_role=True,
        remedy="the classes differ in observing conditions: build with --match on them",
    ),
    Gate(
        name="metadata_c2st_gbm_auc",
        metric="grouped-CV AUC of gradient-boosted trees predicting the label from property columns",
        threshold=0.60,
        direction="at_most",
        chance=0.5,
        needs=DATA,
        role="reported",
        cases=per_probe_split,
        sane=(0.5, 0.75),
        measure=dg.metadata_c2st_gbm_auc,
        null=0.5,
        remedy="the classes differ jointly in their properties: build with --match on them",
    ),
    Gate(
        name="core_lr_auc",
        metric="grouped-CV logistic-regression AUC on the central box",
        threshold=0.65,
        direction="at_most",
        chance=0.5,
        needs=DATA,
        role="primary",
        cases=per_box_input,
        sane=(0.5, 0.75),
        measure=dg.core_lr_auc,
        null=0.5,
        calibrate_every_role=True,
        remedy="the core alone separates the classes: train with --preprocess residual and/or --core-dropout",
    ),
    Gate(
        name="radial_profile_lr_auc",
        metric="grouped-CV AUC on azimuthal-median profiles",
        threshold=None,
        direction="at_most",
        chance=0.5,
        needs=DATA,
        role="reported",
        cases=per_profile_input,
        measure=dg.radial_profile_lr_auc,
        remedy="the arc's ring flux alone separates the classes on this input",
    ),
    Gate(
        name="arc_annulus_lr_auc",
        metric="grouped-CV AUC on ring statistics of the arc annulus (sanity)",
        threshold=0.80,
        direction="at_least",
        chance=0.5,
        needs=DATA,
        role="primary",
        cases=per_input_model_reported,
        sane=(0.6, 1.0),
        measure=dg.arc_annulus_lr_auc,
        remedy="the injections are too faint or misplaced: check the injection pipeline",
    ),
    Gate(
        name="detection_auroc",
        metric="model AUROC on a held-out split",
        threshold=0.80,
        direction="at_least",
        chance=0.5,
        needs=MODEL,
        role="primary",
        cases=held_out_splits,
        sane=(0.6, 1.0),
        measure=mg.detection_auroc,
        remedy="the model does not detect lenses well enough: train longer or on more LRGs",
    ),
    Gate(
        name="memorisation_gap",
        metric="AUROC(train) − AUROC(val): in-sample advantage (LRG memorisation)",
        threshold=None,
        direction="at_most",
        needs=MODEL,
        role="reported",
        cases=memorisation_cases,
        measure=mg.memorisation_gap,
        remedy="the model memorises LRGs: more LRGs, fewer injections per LRG",
    ),
    Gate(
        name="cross_test_gap",
        metric="AUROC(test_paired) − AUROC(test), equivalent to 0 within the margin",
        threshold=0.05,
        direction="at_most",
        equivalence=True,
        needs=MODEL,
        role="primary",
        cases=cross_test_cases,
        sane=(0.01, 0.1),
        measure=mg.cross_test_gap,
        calibrate_every_role=True,
        remedy="the model scores paired and unpaired data differently: see the perturbation gates",
    ),
    Gate(
        name="arc_masked_auroc",
        metric="arc taken out by lensing (ctrl + counter-image light): share flagged at the operating threshold over the lenses' share (AUROC vs controls reported)",
        threshold=0.50,
        direction="at_most",
        needs=MODEL,
        role="primary",
        cases=mg.theta_bin_cases,
        sane=(0.25, 0.75),
        measure=mg.arc_masked_auroc,
        counterfactual=("core_only", "flag_ratio"),
        calibrate_every_role=True,
        remedy="the model reads the core: train with --preprocess residual or --core-dropout",
    ),
    Gate(
        name="core_masked_auroc_drop",
        metric="paired detection AUROC lost with the counter-image taken out by lensing (ctrl + arc light)",
        threshold=0.05,
        direction="at_most",
        needs=MODEL,
        role="primary",
        cases=mg.theta_bin_cases,
        sane=(0.0, 0.15),
        measure=mg.core_masked_auroc_drop,
        counterfactual=("arc_only", "drop"),
        calibrate_every_role=True,
        remedy="the model depends on the counter-image in the core: residual input or core dropout",
    ),
    Gate(
        name="arc_swap_auroc_drop",
        metric="paired detection AUROC lost with each arc moved onto the control of an LRG of nearly the same brightness",
        threshold=0.05,
        direction="at_most",
        needs=MODEL,
        role="reported",
        cases=mg.theta_bin_cases,
        sane=(0.0, 0.15),
        measure=mg.arc_swap_auroc_drop,
        counterfactual=("swapped", "drop"),
        calibrate_every_role=True,
        blocking=False,
        remedy="the model reads the arc together with its host galaxy (see docs/model_gates.md#arc-swap)",
    ),
    Gate(
        name="morphology_auroc",
        metric="pairs vs the same pairs with the arc cut into PSF-sized patches shuffled round its rings (counter-image kept)",
        threshold=0.75,
        direction="at_least",
        needs=MODEL,
        role="reported",
        cases=mg.theta_bin_cases,
        sane=(0.6, 1.0),
        measure=mg.morphology_auroc,
        counterfactual=("scrambled", "auroc_vs_stamp"),
        calibrate_every_role=True,
        blocking=False,
        remedy="the model does not use arc morphology: train with --preprocess residual",
    ),
    Gate(
        name="stratified_auroc",
        metric="model AUROC by bins of theta_E, PSF, depth (worst bin)",
        threshold=None,
        direction="at_least",
        chance=0.5,
        needs=MODEL,
        role="reported",
        cases=per_stratum,
        measure=mg.stratified_auroc,
        remedy="a population the model fails: more training data in that bin",
    ),
)
REGISTRY: dict[str, Gate] = {g.name: g for g in _ROWS}
"""Every gate, by name (``docs/design.md#gates``)."""

DATA_ONLY_GATES: frozenset[str] = frozenset(g.name for g in _ROWS if g.data_only)
"""Gates measured on the data alone (except their ``input=model`` cases)."""
NULL_TRUTH: dict[str, float] = {g.name: g.null for g in _ROWS if g.null is not None}
"""True values on shortcut-free data, by gate (the calibration's analytic coverage truth)."""
COUNTERFACTUAL_GATES: dict[str, tuple[str, str]] = {g.name: g.counterfactual for g in _ROWS if g.counterfactual}
"""Paired counterfactual model gates: gate -> (counterfactual, statistic)."""
EVERY_ROLE_GATES: tuple[str, ...] = tuple(g.name for g in _ROWS if g.calibrate_every_role)
"""Gates the full calibration profile records in every role."""


def load_config(path: Path | None, *, input: str | None = None) -> GateConfig:
    """``[tool.shortcutgates]`` of a ``pyproject.toml`` (defaults without one); unknown gates are refused.

    ``input`` (the ``--input`` option) overrides the table's ``input`` when given.
    """
    config = GateConfig.from_pyproject(path, gates=REGISTRY)
    config.check_thresholds(REGISTRY)
    return config if input is None else replace(config, input=input)


def gate_cases(context: GateContext, names: tuple[str, ...] | None = None) -> list[GateCase]:
    """All cases for this data, in registry order, model cases included (see module docstring); only the
    gates ``names`` when given (their cases and roles are the same as in the whole list).

    Raises ``ValueError`` when the configuration sets a threshold for a gate that does not exist.
    """
    for name in context.config.thresholds:
        try:
            check_gate_name(name, REGISTRY)
        except TypeError as exc:
            raise ValueError(f"[tool.shortcutgates.thresholds]: {exc}") from None
    context.config.check_thresholds(REGISTRY)
    cases = [
        case for gate in REGISTRY.values() if names is None or gate.name in names for case in gate.cases(context, gate)
    ]
    return [replace(c, role=context.config.role_for(c, c.role or REGISTRY[c.gate].role)) for c in cases]


def run_case(context: GateContext, case: GateCase) -> GateResult:
    """Measure and decide one case. Cannot-measure conditions become ``error`` results, never exceptions.

    ``ProbeError``, ``DataError`` and ``ValueError`` raised by a gate are reported as ``error`` with
    their message; a model case without a model is ``skipped``. Other exceptions (bugs) propagate.
    """
    gate = REGISTRY[case.gate]
    if "model" in case.needs and not context.has_model:
        return skipped_result(context.config, case, gate, "no model given (--model CKPT)")
    try:
        resolve = getattr(gate.cases, "resolve", None)  # a role that only a model's run can tell (θ_E bins)
        case = resolve(context, case, gate) if resolve is not None and context.has_model else case
        measurement = gate.measure(context, case)
    except (ProbeError, DataError, ValueError) as exc:
        return error_result(context.config, case, gate, f"{type(exc).__name__}: {exc}")
    return judge(context.config, case, gate, measurement)
