"""The one red/green rule and the one loop that runs the gate suite.

Every consumer of gate results decides through :func:`outcome` — the pytest plugin (a case's test
outcome), the JSON and HTML reports (``summary.green``), ``shortcutgates gate`` over many models
(:mod:`.sweep`) and the calibration harness (a seed's suite is green) — so changing the rule is one
edit here. Every loop that runs cases outside pytest (:mod:`.sweep`, :mod:`shortcutgates.calibrate`,
:mod:`shortcutgates.experiment.measure`) goes through :func:`run_suite`; under pytest each case is one
test (:mod:`.gate_suite`), which calls :func:`check_record`.

Outcomes of one record (``docs/design.md#verdict-rule``)
--------------------------------------------------------
==============  ==============================================================================
``skipped``     verdict ``skipped``: the case did not run (in strict mode that fails the run)
``red``         a case of any role whose violation is ``established`` (its whole interval on the bad
                side of its claim; ``waived`` under a waiver)
``reported``    role ``reported``: shown, not gating unless its violation is established
``green``       a primary case that passed
``waived``      a primary case that did not pass, accepted by a waiver
``red``         a primary case that failed, erred, was inconclusive (or carries no decision)
==============  ==============================================================================
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Outcome = Literal["green", "red", "skipped", "reported", "waived"]
OUTCOMES: tuple[Outcome, ...] = ("green", "red", "skipped", "reported", "waived")

RESULT_PROPERTY = "gate_result"
"""``user_properties`` key of a gate test's result record (JSON text, docs/design.md#report-json gate entry)."""


def _get(record: Any, key: str, default: Any = None) -> Any:
    """``record[key]`` of a report dict, a pandas row or a :class:`GateResult` alike."""
    if isinstance(record, Mapping) or hasattr(record, "get"):
        return record.get(key, default)
    return getattr(record, key, default)


def role(result: Any) -> str:
    """A result's role, ``primary`` when it names none (reports written before roles existed)."""
    return str(_get(result, "role") or "primary")


def established(result: Any) -> bool:
    """Whether a result's violation is established (``GateResult.established``; False when the record
    predates the field or carries NaN, as calibration rows of older runs do)."""
    value = _get(result, "established", False)
    if value is None or isinstance(value, str):
        return value == "True"
    return bool(value == value and value)  # NaN (a row without the field) is not established


def outcome(result: Any) -> Outcome:
    """The one red/green/skip rule of a gate result (a report record, a calibration row or a ``GateResult``).

    A record without ``role`` is primary (reports written before roles existed); a ``waiver`` only
    accepts a primary case that did not pass.
    """
    verdict = str(_get(result, "verdict"))
    if verdict == "skipped":
        return "skipped"
    if established(result):  # a violation the data show is red in every role
        return "waived" if _get(result, "waiver") else "red"
    if role(result) == "reported":
        return "reported"
    if verdict == "pass":
        return "green"
    return "waived" if _get(result, "waiver") else "red"


def is_red(result: Any, strict: bool = False) -> bool:
    """Whether ``result`` turns the run red; ``strict``: a case that did not run (and is not waived) too."""
    o = outcome(result)
    return o == "red" or (strict and o == "skipped" and not _get(result, "waiver"))


def check_record(record: Mapping) -> None:
    """The pytest outcome of a gate record: skip a case that did not run, fail a ``red`` or ``waived`` one
    (the waiver's xfail mark turns that failure into XFAIL), pass the rest."""
    import pytest

    o = outcome(record)
    if o == "skipped":
        pytest.skip(record["message"])
    if o in ("red", "waived"):
        how = " (reported case, violation established)" if established(record) and role(record) == "reported" else ""
        pytest.fail(
            f"{record['id']}: {str(record['verdict']).upper()}{how}: {record['message']}{remedy_suffix(record)}",
            pytrace=False,
        )


REMEDY_VERDICTS = ("fail",)
"""Verdicts whose line ends with the gate's remedy: an ``inconclusive`` message says how many LRGs would
decide, an ``error`` message why nothing could be measured (e.g. a model that cannot detect lenses)."""


def remedy_suffix(record: Mapping) -> str:
    """`` -> what to do`` from the gate's registry row (empty for an unknown gate or one without a remedy)."""
    from shortcutgates.gates.registry import REGISTRY

    gate = REGISTRY.get(str(record.get("gate")))
    if gate is None or not gate.remedy or record.get("verdict") not in REMEDY_VERDICTS:
        return ""
    return f" -> {gate.remedy}"


def threshold_text(record: Mapping) -> str:
    """The claim a case makes: ``<= 0.65``, ``>= 0.8``, ``within ±0.2`` (an equivalence margin), or ``report``."""
    from shortcutgates.gates.registry import REGISTRY

    if record["threshold"] is None:
        return "report"
    gate = REGISTRY.get(str(record.get("gate")))
    if gate is not None and gate.equivalence:
        return f"within ±{record['threshold']:g}"
    return f"{'<=' if record['direction'] == 'max' else '>='} {record['threshold']:g}"


# --- the loop ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class CaseRun:
    """One case run by :func:`run_suite`: the case, its result, its waiver and the seconds it took."""

    case: Any
    result: Any
    waiver: str | None
    seconds: float

    def record(self, *, with_extra: bool = False, with_waiver: bool = True) -> dict:
        """The report record (docs/design.md#report-json gate entry), with ``waiver`` unless told not to."""
        record = self.result.to_json(with_extra=with_extra)
        if with_waiver:
            record["waiver"] = self.waiver
        return record


def run_suite(
    context: Any,
    select: Callable[[Any], bool] | None = None,
    waivers: bool = True,
    *,
    cases: Iterable | None = None,
    progress: bool = False,
    desc: str = "gates",
) -> Iterator[CaseRun]:
    """Run the suite's cases on ``context`` lazily, in registry order.

    Parameters
    ----------
    context : GateContext
        The data (and model) the cases measure.
    select : callable, optional
        ``select(case) -> bool``: run only these cases (all when None).
    waivers : bool
        Attach each case's waiver from the context's configuration (``[tool.shortcutgates.waivers]``).
    cases : iterable of GateCase, optional
        The cases to choose from (default: :func:`registry.gate_cases` of ``context``).
    progress : bool
        Show a tqdm bar over the selected cases.
    """
    from shortcutgates.gates.registry import gate_cases, run_case

    chosen = [c for c in (gate_cases(context) if cases is None else cases) if select is None or select(c)]
    if progress:
        from tqdm.auto import tqdm

        chosen = tqdm(chosen, desc=desc)
    for case in chosen:
        t0 = time.perf_counter()
        result = run_case(context, case)
        waiver = context.config.waiver_for(case) if waivers else None
        yield CaseRun(case, result, waiver, time.perf_counter() - t0)


# --- a pytest session's records and model ----------------------------------------------
def expected_records(
    context: Any, cases: Iterable, results: Mapping[str, dict], reason_of: Callable[[Any], str]
) -> list[dict]:
    """One record per expected case, in ``cases`` order, with its waiver; a case without a result in
    ``results`` (case id -> record) is ``skipped`` with ``reason_of(case)``."""
    from shortcutgates.gates.decision import skipped_result
    from shortcutgates.gates.registry import REGISTRY

    out = []
    for case in cases:
        record = results.get(case.id)
        if record is None:
            record = skipped_result(context.config, case, REGISTRY[case.gate], reason_of(case)).to_json()
        out.append({**record, "waiver": context.config.waiver_for(case)})
    return out


def with_model_file(context: Any, model: Any) -> tuple[Any, Any]:
    """Load a model file (checkpoint, .pt2 or .onnx), check its input contract against the stamps;
    returns ``(context with the scorer, scorer)``."""
    from shortcutgates.model.scorers import load_scorer
    from shortcutgates.gates.sample import decode_rows

    scorer = load_scorer(model)
    if scorer.contract is not None and len(context.frame):
        shape = decode_rows(context.frame.iloc[:1]).shape
        if shape is not None:
            scorer.contract.check_stamp(shape, str(model))
    return context.with_scorer(scorer.score_fn, scorer.preprocess, model), scorer
