"""The gate registry: every gate (docs/design.md#gates) on one screen, its cases, and how one case is run.

Contract (used by the pytest plugin, ``gate_tests/`` and ``shortcutgates gate``)
----------------------------------------------------------------------------------
* :data:`REGISTRY` ``dict[str, Gate]``: name -> :class:`Gate` (``name``, ``metric``, default
  ``threshold`` or None for reported-only gates, ``direction`` ``"max"``/``"min"``, ``needs``
  ``("data",)`` or ``("data", "model")``, ``compute(context, case) -> GateResult``).
* :func:`gate_cases` ``(context) -> list[GateCase]``: every case for this data, model gates
  included whether or not a model was given (so "expected" can be counted against "run").
  ``GateCase(gate, params, split, needs)``; ``case.id`` is the readable pytest id, e.g.
  ``core_lr_auc[train-box10-raw_robust]``. A case whose ``needs`` contains ``"model"`` must be
  skipped when ``context.has_model`` is False (``core_lr_auc[...-model]`` is such a case of a
  data gate).
* :func:`run_case` ``(context, case) -> GateResult``: never raises because a probe cannot
  measure; it returns verdict ``"error"`` with the reason. Without a model, a model case returns
  verdict ``"skipped"`` with the reason.
* :class:`GateResult` is exactly the docs/design.md#report-json JSON gate record (``to_json()``), plus ``extra``.
* :class:`GateConfig` (``GateConfig.from_pyproject(path)``): thresholds (by gate name or case
  id), sample caps, bootstrap settings, waivers ``{id or name: reason}`` (``config.waiver_for(case)``;
  the plugin turns them into xfail with that reason).
* :class:`GateContext` ``(data, model=None, config=GateConfig(), progress=False, score_fn=None,
  preprocess=None)``
  loads and caches the manifest, images, preprocessed inputs and model scores; ``has_model``,
  ``data_info`` and ``model_info`` feed the report's ``"data"`` and ``"model"`` blocks.

Verdicts (docs/design.md#gates): ``pass`` (interval on the good side of the threshold), ``fail`` (estimate on
the bad side), ``inconclusive`` (estimate on the good side, interval crossing the threshold; the
message gives the number of LRGs that would decide), ``error`` (the probe cannot measure),
``skipped`` (a model gate without a model). Reported-only gates (threshold None) pass unless they
cannot measure.
"""

from __future__ import annotations

import itertools

from . import data_gates as dg
from . import model_gates as mg
from .context import GateContext
from .decision import error_result, skipped_result
from .probes import ProbeError
from .records import Direction, Gate, GateCase, GateConfig, GateResult, Verdict
from ..schema import DataError

__all__ = ["Direction", "Verdict", "Gate", "GateCase", "GateResult", "GateConfig", "GateContext",
           "REGISTRY", "gate_cases", "run_case"]

_D, _M = ("data",), ("data", "model")

REGISTRY: dict[str, Gate] = {g.name: g for g in (
    Gate("data_integrity", "rows failing decode/shape/finite/normalisation checks", 0, "max", _D, dg.data_integrity),
    Gate("lrg_leakage", "LRG identities shared by positives and negatives, or by two splits", 0, "max", _D, dg.lrg_leakage),
    Gate("property_balance", "|standardised mean difference| of a property, positives vs negatives", 0.1, "max", _D, dg.property_balance),
    Gate("metadata_c2st_auc", "grouped-CV AUC predicting the label from property columns", 0.60, "max", _D, dg.metadata_c2st_auc),
    Gate("core_lr_auc", "grouped-CV logistic-regression AUC on the central box", 0.65, "max", _D, dg.core_lr_auc),
    Gate("radial_profile_lr_auc", "grouped-CV AUC on azimuthal-median profiles (reported)", None, "max", _D, dg.radial_profile_lr_auc),
    Gate("arc_annulus_lr_auc", "grouped-CV AUC on ring statistics of the arc annulus (sanity)", 0.80, "min", _D, dg.arc_annulus_lr_auc),
    Gate("detection_auroc", "model AUROC", 0.80, "min", _M, mg.detection_auroc),
    Gate("cross_test_gap", "|AUROC(test_paired) - AUROC(test)|", 0.05, "max", _M, mg.cross_test_gap),
    Gate("arc_masked_auroc", "model AUROC with the theta_E annulus masked by matched noise in both classes", 0.60, "max", _M, mg.arc_masked_auroc),
    Gate("core_transplant_auroc", "negatives with a positive's core vs with another negative's core", 0.60, "max", _M, mg.core_transplant_auroc),
    Gate("morphology_auroc", "positives vs the same positives with the arc shuffled within 1-px rings", 0.75, "min", _M, mg.morphology_auroc),
    Gate("stratified_auroc", "model AUROC by bins of theta_E, PSF, depth (reported: worst bin)", None, "min", _M, mg.stratified_auroc),
)}
"""Every gate, by name (docs/design.md#gates)."""

STRATA: tuple[str, ...] = ("theta_e", "psf", "depth")


def gate_cases(context: GateContext) -> list[GateCase]:
    """All cases for this data, in registry order, model cases included (see module docstring)."""
    splits = context.probe_splits
    cases = [GateCase("data_integrity")]
    cases += [GateCase("lrg_leakage", {"pair": "pos-neg"}, s) for s in splits]
    cases += [GateCase("lrg_leakage", {"pair": f"{a}-{b}"}) for a, b in itertools.combinations(context.splits, 2)]
    cases += [GateCase("property_balance", {"prop": p}, s) for s in splits for p in context.property_columns]
    cases += [GateCase("metadata_c2st_auc", {}, s) for s in splits]
    inputs = [("raw_robust", _D), ("model", _M)]
    for name in ("core_lr_auc",):
        cases += [GateCase(name, {"box": b, "input": i}, s, needs) for s in splits for b in context.config.boxes
                  for i, needs in inputs]
    for name in ("radial_profile_lr_auc", "arc_annulus_lr_auc"):
        cases += [GateCase(name, {"input": i}, s, needs) for s in splits for i, needs in inputs]
    cases += [GateCase("detection_auroc", {}, s, _M) for s in context.splits]
    cases += [GateCase("cross_test_gap", {}, None, _M)]
    ev = context.eval_split
    cases += [GateCase("arc_masked_auroc", {}, ev, _M), GateCase("core_transplant_auroc", {}, ev, _M)]
    cases += [GateCase("morphology_auroc", {}, context.paired_split, _M)]
    cases += [GateCase("stratified_auroc", {"by": by}, ev, _M) for by in STRATA]
    return cases


def run_case(context: GateContext, case: GateCase) -> GateResult:
    """Measure one case. Cannot-measure conditions become ``error`` results, never exceptions.

    ``ProbeError``, ``DataError`` and ``ValueError`` raised by a probe are reported as ``error``
    with their message; a model case without a model is ``skipped``. Other exceptions (bugs)
    propagate.
    """
    gate = REGISTRY[case.gate]
    if "model" in case.needs and not context.has_model:
        return skipped_result(context.config, case, gate, "no model given (--model CKPT)")
    try:
        return gate.compute(context, case)
    except (ProbeError, DataError, ValueError) as exc:
        return error_result(context.config, case, gate, f"{type(exc).__name__}: {exc}")

