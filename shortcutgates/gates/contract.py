"""The gate contract: what a gate function returns, and what a registry row says.

A gate function *measures*; it knows nothing of the registry, thresholds or verdicts::

    def core_lr_auc(context: GateContext, case: GateCase) -> Measurement: ...

It raises :class:`~shortcutgates.gates.probes.ProbeError`, ``DataError`` or ``ValueError`` when
it cannot measure (one class, constant features, a degenerate scorer, no pairs); ``run_case``
turns that into verdict ``error`` with the message. ``run_case`` looks up the row, resolves the
threshold (config override by case id, then by gate name, then the row's default) and decides the
verdict from the :class:`Measurement` (see ``docs/design.md#verdict-rule``).

This module imports nothing from the rest of :mod:`shortcutgates.gates`, so every gate module can
import it without an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Direction = Literal["at_most", "at_least"]
"""The claim a passing case makes: its value is ``at_most`` / ``at_least`` the threshold."""

Role = Literal["primary", "reported"]
"""``primary`` cases decide the run; ``reported`` cases are shown and never turn a run red."""

Counterfactual = Literal["core_only", "arc_only", "swapped", "scrambled"]
"""Paired counterfactual a model gate scores (``gates/model_gates.py``, ``docs/model_gates.md``)."""

Statistic = Literal["auroc", "drop", "auroc_vs_stamp", "flag_ratio", "flag_rate"]
"""What a counterfactual gate reads from the scores (:func:`~shortcutgates.gates.paired.paired_statistic`)."""


@dataclass(frozen=True)
class Measurement:
    """What a gate function measured on one case.

    ``value`` is the estimate (an AUC, an SMD, a count); ``ci`` its interval at the suite's
    confidence level, or None for an exact quantity (a count); ``n`` rows and ``n_groups``
    resampling units (LRGs, or pairs / matched sets where the data are matched) behind it;
    ``what`` names the quantity in a message (``"AUROC"``, ``"core-LR AUC"``); ``note`` is one
    clause appended to the message; ``extra`` holds report material (per-bin values, curves).
    """

    value: float
    ci: tuple[float, float] | None
    n: int
    n_groups: int
    what: str
    note: str = ""
    extra: dict = field(default_factory=dict)
