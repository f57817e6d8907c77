"""Records of the gate suite: a registry row, one parametrised case, its result, the suite configuration.

This module imports nothing from the rest of :mod:`shortcutgates.gates` but the contract, so every
gate module can use it without an import cycle (``tests/test_import_graph.py`` keeps it so).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Collection, Literal, Mapping

import tomllib

from shortcutgates.gates.contract import Counterfactual, Direction, Measurement, Role, Statistic

if TYPE_CHECKING:  # pragma: no cover
    from shortcutgates.gates.context import GateContext

Verdict = Literal["pass", "fail", "inconclusive", "error", "skipped", "reported"]
"""``reported``: measured by a row without a threshold (nothing was tested, so nothing passed)."""

ReportDirection = Literal["max", "min"]
"""A claim's direction as the report JSON spells it (``at_most`` -> ``max``, ``at_least`` -> ``min``)."""
JSON_DIRECTION: dict[str, ReportDirection] = {"at_most": "max", "at_least": "min"}
"""The report JSON writes a claim as the schema's ``"max"`` / ``"min"`` (see ``docs/design.md#report-json``)."""

REPORT_KEYS: tuple[str, ...] = (
    "id",
    "gate",
    "params",
    "split",
    "value",
    "ci",
    "threshold",
    "direction",
    "verdict",
    "n",
    "n_groups",
    "message",
    "role",
)
"""Keys of one gate record in the report JSON (``docs/design.md#report-json``), in order."""


@dataclass(frozen=True)
class GateCase:
    """One test of the suite: a gate with its parameters on one split.

    ``params`` is ordered; its values appear in the id after the split, e.g.
    ``GateCase("core_lr_auc", {"box": 10, "input": "raw_robust"}, "train").id ==
    "core_lr_auc[train-box10-raw_robust]"``.
    """

    gate: str
    params: Mapping[str, object] = field(default_factory=dict)
    split: str | None = None
    needs: tuple[str, ...] = ("data",)
    """What this case needs; ``core_lr_auc[...-model]`` needs the model although the gate is a data gate."""
    role: Role | None = None
    """``primary``: decides the run; ``reported``: shown, never turns a run red; None: the row's role."""

    @property
    def id(self) -> str:
        """Readable pytest id: ``gate[split-param-param]`` or just ``gate``."""
        parts = [] if self.split is None else [str(self.split)]
        parts += [_format_param(k, v) for k, v in self.params.items()]
        return f"{self.gate}[{'-'.join(parts)}]" if parts else self.gate


def _format_param(key: str, value: object) -> str:
    if key == "box":
        return f"box{value}"
    return str(value)


@dataclass(frozen=True)
class GateResult:
    """Outcome of one gate case: the report's gate record (``docs/design.md#report-json``), plus ``extra``.

    ``extra`` holds material for the report (per-θ_E-bin values, curves); :meth:`to_json` leaves it
    out unless asked.
    """

    id: str
    gate: str
    params: dict
    split: str | None
    value: float | None
    ci: tuple[float, float] | None
    threshold: float | None
    direction: Direction
    verdict: Verdict
    n: int
    n_groups: int
    message: str
    role: Role = "primary"
    extra: dict = field(default_factory=dict)
    established: bool = False
    """The whole interval lies on the bad side of the claim (:func:`~shortcutgates.gates.decision.established_violation`):
    the run is red whatever the role."""

    def to_json(self, *, with_extra: bool = False) -> dict:
        """The report record: plain JSON types, ``ci`` as ``[lo, hi]`` or null, NaN as null."""
        record = {
            "id": self.id,
            "gate": self.gate,
            "params": {k: _json_scalar(v) for k, v in self.params.items()},
            "split": self.split,
            "value": _json_float(self.value),
            "ci": None if self.ci is None else [_json_float(self.ci[0]), _json_float(self.ci[1])],
            "threshold": _json_float(self.threshold),
            "direction": JSON_DIRECTION[self.direction],
            "verdict": self.verdict,
            "n": int(self.n),
            "n_groups": int(self.n_groups),
            "message": self.message,
            "role": self.role,
            "established": bool(self.established),
        }
        if with_extra:
            record["extra"] = self.extra
        return record


def _json_float(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _json_scalar(x):
    if hasattr(x, "item"):
        return x.item()
    return x


CaseGenerator = Callable[["GateContext", "Gate"], list]
"""``cases(context, gate) -> list[GateCase]``: the row's cases for this data (and model)."""
Measure = Callable[["GateContext", GateCase], Measurement]


@dataclass(frozen=True, kw_only=True)
class Gate:
    """One registry row, written with keywords (see ``docs/design.md#adding-a-gate``).

    A case passes when its claim holds with confidence: ``value at_most threshold`` (or
    ``at_least``) with the whole interval on the claim's side; with ``equivalence`` the claim is
    ``|value| at_most threshold`` and the signed interval must lie inside ``±threshold`` (two one-sided
    tests). ``chance`` (0.5 for AUCs) makes an estimate far below chance an ``error``.
    """

    name: str
    metric: str
    """One line: what is measured."""
    threshold: float | None
    """Default threshold; None: measured and reported, never decided."""
    direction: Direction
    needs: tuple[str, ...]
    """``("data",)`` or ``("data", "model")``."""
    role: Role
    cases: CaseGenerator
    measure: Measure
    equivalence: bool = False
    chance: float | None = None
    sane: tuple[float, float] | None = None
    """Thresholds inside this closed range need no reason; one outside it needs a
    ``[tool.shortcutgates.threshold_reasons]`` entry (:meth:`GateConfig.check_thresholds`)."""
    null: float | None = None
    """True value on shortcut-free data where the planting fixes it (AUC at chance, SMD 0): the
    calibration's coverage truth (``calibrate/rates.py``); None where clean data are informative."""
    counterfactual: tuple[Counterfactual, Statistic] | None = None
    """``(counterfactual, statistic)`` of a paired counterfactual model gate (the calibration's ``reader`` cells,
    ``calibrate/readers.py``)."""
    calibrate_every_role: bool = False
    """The full calibration profile records its cases in every role (held-out probes, small θ_E bins)."""
    remedy: str = ""
    """One line: what to do when a case of this gate fails (printed at the end of its failure line)."""
    blocking: bool = True
    """An established violation of any case turns the run red. False: a *diagnostic* whose reported cases
    are shown, never red (a counterfactual that no calibrated reader or CNN passes cannot mean "shortcut");
    ``[tool.shortcutgates] primary`` still makes it decide."""

    @property
    def data_only(self) -> bool:
        """Measured on the data alone (``needs`` names no model; ``input=model`` cases excepted)."""
        return "model" not in self.needs

    def __post_init__(self):
        if self.direction not in JSON_DIRECTION:
            raise ValueError(f"gate {self.name}: direction must be at_most or at_least (got {self.direction!r})")
        if self.role not in ("primary", "reported"):
            raise ValueError(f"gate {self.name}: role must be primary or reported (got {self.role!r})")
        if self.equivalence and self.direction != "at_most":
            raise ValueError(f"gate {self.name}: an equivalence claim is |value| at_most the margin")


CONFIG_KEYS = (
    "thresholds",
    "max_samples",
    "n_boot",
    "seed",
    "level",
    "waivers",
    "boxes",
    "n_splits",
    "theta_e_bins_arcsec",
    "primary",
    "operating_threshold",
    "input",
    "threshold_reasons",
)

ALL_CASES = "all"
"""``"gate[all]"`` in ``[tool.shortcutgates.waivers]`` waives every case of the gate; a bare gate name
is refused (a waiver names cases)."""

DATA_INPUTS: tuple[str, ...] = ("raw_robust", "residual")
"""Inputs a data-only run may decide its data probes on (``input``, ``--input``)."""


@dataclass(frozen=True)
class GateConfig:
    """Suite settings, from ``[tool.shortcutgates]`` of a ``pyproject.toml``.

    Example::

        [tool.shortcutgates]
        max_samples = 4000          # rows per split, stratified by label and LRG (0 or absent: all)
        n_boot = 1000               # LRG bootstrap resamples (>= 500)
        seed = 0
        level = 0.95                # confidence level of the intervals
        boxes = [10]                # core-LR box sides, px
        n_splits = 5                # grouped CV folds of the probes
        theta_e_bins_arcsec = [0.0, 1.0, 1.5, 2.0, 10.0]
        primary = ["cross_test_gap"]   # reported cases that decide the run here (gate names or case ids)
        operating_threshold = 0.9   # the model score from which the search flags a lens (default: the
                                    # score at which the paired split's controls reach FPR 1e-2)
        input = "raw_robust"        # data-only runs: the input the data probes decide on (or "residual")

        [tool.shortcutgates.thresholds]
        core_lr_auc = 0.65                     # by gate name ...
        "detection_auroc[val]" = 0.85          # ... or by case id (wins)

        [tool.shortcutgates.threshold_reasons]   # a threshold outside the gate's sane range needs one
        "detection_auroc[val]" = "..."

        [tool.shortcutgates.waivers]           # by case id, or "gate[all]" for every case of a gate
        "detection_auroc[test_paired]" = "test_paired is built from a different survey region (issue #12)"
    """

    thresholds: Mapping[str, float] = field(default_factory=dict)
    max_samples: int | None = 4000
    n_boot: int = 1000
    seed: int = 0
    level: float = 0.95
    waivers: Mapping[str, str] = field(default_factory=dict)
    """Case id (or ``gate[all]``) -> reason; the plugin turns the case into an xfail with that reason."""
    threshold_reasons: Mapping[str, str] = field(default_factory=dict)
    """Gate name or case id -> why its threshold lies outside the gate's sane range (``Gate.sane``)."""
    boxes: tuple[int, ...] = (10,)
    n_splits: int = 5
    theta_e_bins_arcsec: tuple[float, ...] = (0.0, 1.0, 1.5, 2.0, 10.0)
    primary: tuple[str, ...] = ()
    """Gate names or case ids promoted to ``primary`` (e.g. ``cross_test_gap``, primary by itself from 500
    positive LRGs shared by ``test`` and ``test_paired``, the size at which it decides: ``docs/calibration.md``)."""
    operating_threshold: float | None = None
    """The model score from which the user's lens search flags a candidate; the model gates report the
    share of counterfactuals and of real lenses flagged there (``docs/model_gates.md#operational-claim``).
    None: the score at which the paired split's controls reach a false-positive rate of 1e-2."""
    input: str = "raw_robust"
    """The preprocessing a data-only run decides its data probes on (``raw_robust`` or ``residual``;
    pytest / ``shortcutgates gate`` ``--input``). A model run decides on the model's declared input."""

    def __post_init__(self):
        if self.n_boot < 500:
            raise ValueError(f"[tool.shortcutgates]: 'n_boot' must be >= 500 (got {self.n_boot})")
        if not 0.5 < self.level < 1.0:
            raise ValueError(f"[tool.shortcutgates]: 'level' must be in (0.5, 1) (got {self.level})")
        if self.max_samples is not None and self.max_samples < 20:
            raise ValueError(f"[tool.shortcutgates]: 'max_samples' must be >= 20 or absent (got {self.max_samples})")
        if self.n_splits < 2:
            raise ValueError(f"[tool.shortcutgates]: 'n_splits' must be >= 2 (got {self.n_splits})")
        if not self.boxes or any(int(b) < 1 for b in self.boxes):
            raise ValueError(f"[tool.shortcutgates]: 'boxes' must be positive pixel sizes (got {list(self.boxes)})")
        if self.input not in DATA_INPUTS:
            raise ValueError(
                f"[tool.shortcutgates]: 'input' must be one of {', '.join(DATA_INPUTS)} (got {self.input!r})"
            )
        edges = list(self.theta_e_bins_arcsec)
        if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
            raise ValueError(f"[tool.shortcutgates]: 'theta_e_bins_arcsec' must increase (got {edges})")
        for table, entries in (("waivers", self.waivers), ("threshold_reasons", self.threshold_reasons)):
            for key, reason in entries.items():
                if not isinstance(reason, str) or not reason.strip():
                    raise ValueError(f"[tool.shortcutgates.{table}]: entry {key!r} needs a reason (got {reason!r})")
        for key in self.waivers:
            if "[" not in key:
                raise ValueError(
                    f"[tool.shortcutgates.waivers]: {key!r} names a whole gate; a waiver names cases "
                    f'(e.g. "{key}[test]"), or every case with "{key}[{ALL_CASES}]"'
                )

    def threshold_for(self, case: GateCase, default: float | None) -> float | None:
        """Threshold of a case: override by case id, else by gate name, else the registry default."""
        if case.id in self.thresholds:
            return float(self.thresholds[case.id])
        if case.gate in self.thresholds:
            return float(self.thresholds[case.gate])
        return default

    def role_for(self, case: GateCase, default: Role) -> Role:
        """``primary`` when the configuration promotes the case (by id or gate name), else ``default``."""
        return "primary" if case.id in self.primary or case.gate in self.primary else default

    def waiver_for(self, case: GateCase) -> str | None:
        """The waiver reason of a case (by id, else ``gate[all]``), or None."""
        return self.waivers.get(case.id, self.waivers.get(f"{case.gate}[{ALL_CASES}]"))

    def check_thresholds(self, gates: Mapping[str, "Gate"]) -> None:
        """Refuse a threshold outside its gate's sane range (``Gate.sane``) that has no reason in
        ``threshold_reasons`` (one ``ValueError`` line naming the key, the value and the range)."""
        for key, value in self.thresholds.items():
            sane = getattr(gates.get(key.split("[")[0]), "sane", None)
            if sane is None or sane[0] <= value <= sane[1] or key in self.threshold_reasons:
                continue
            raise ValueError(
                f"[tool.shortcutgates.thresholds]: {key} = {value:g} lies outside the sane range "
                f"[{sane[0]:g}, {sane[1]:g}] of {key.split('[')[0]}; give the reason in "
                f'[tool.shortcutgates.threshold_reasons] ("{key}" = "...")'
            )

    def as_report(self) -> dict:
        """The report's ``config`` block: level, thresholds, waivers and their reasons, input, primary."""
        return {
            "level": self.level,
            "n_boot": self.n_boot,
            "seed": self.seed,
            "max_samples": self.max_samples,
            "input": self.input,
            "thresholds": dict(self.thresholds),
            "threshold_reasons": dict(self.threshold_reasons),
            "waivers": dict(self.waivers),
            "primary": list(self.primary),
            "boxes": list(self.boxes),
            "theta_e_bins_arcsec": list(self.theta_e_bins_arcsec),
            "operating_threshold": self.operating_threshold,
        }

    @classmethod
    def from_pyproject(cls, path: Path | None, gates: Collection[str] | None = None) -> "GateConfig":
        """Read ``[tool.shortcutgates]``; defaults when ``path`` is None or the table is absent.

        Raises
        ------
        ValueError
            Unknown key, wrong type, or a waiver without a reason, naming the file and the key.
        """
        if path is None:
            return cls()
        path = Path(path)
        # ``gates``: the known gate names, to refuse a threshold for an unknown gate
        # (``registry.load_config`` passes them; this module cannot import the registry)
        try:
            table = tomllib.loads(path.read_text()).get("tool", {}).get("shortcutgates", {})
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML ({exc})") from None
        return cls.from_mapping(table, source=str(path), gates=gates)

    @classmethod
    def from_mapping(
        cls, table: Mapping, *, source: str = "[tool.shortcutgates]", gates: Collection[str] | None = None
    ) -> "GateConfig":
        """Build from the parsed ``[tool.shortcutgates]`` table."""
        unknown = sorted(set(table) - set(CONFIG_KEYS))
        if unknown:
            raise ValueError(
                f"{source}: unknown key(s) {', '.join(unknown)} in [tool.shortcutgates] "
                f"(known: {', '.join(CONFIG_KEYS)})"
            )
        kw = {}
        try:
            for key in ("thresholds", "waivers", "threshold_reasons"):
                if key in table:
                    if not isinstance(table[key], Mapping):
                        raise TypeError(f"'{key}' must be a table")
                    kw[key] = dict(table[key])
            if "thresholds" in kw:
                for name, value in kw["thresholds"].items():
                    check_gate_name(name, gates)
                    kw["thresholds"][name] = _number(value, f"thresholds.{name}")
            if "max_samples" in table:
                kw["max_samples"] = int(table["max_samples"]) or None
            for key in ("n_boot", "seed", "n_splits"):
                if key in table:
                    kw[key] = _integer(table[key], key)
            if "level" in table:
                kw["level"] = _number(table["level"], "level")
            if "input" in table:
                if not isinstance(table["input"], str):
                    raise TypeError(f"'input' must be a string (got {table['input']!r})")
                kw["input"] = table["input"]
            if "boxes" in table:
                kw["boxes"] = tuple(_integer(b, "boxes") for b in table["boxes"])
            if "primary" in table:
                if isinstance(table["primary"], (str, Mapping)) or not all(
                    isinstance(x, str) for x in table["primary"]
                ):
                    raise TypeError(f"'primary' must be a list of gate names or case ids (got {table['primary']!r})")
                for name in table["primary"]:
                    check_gate_name(name, gates)
                kw["primary"] = tuple(table["primary"])
            if "operating_threshold" in table:
                kw["operating_threshold"] = _number(table["operating_threshold"], "operating_threshold")
            if "theta_e_bins_arcsec" in table:
                kw["theta_e_bins_arcsec"] = tuple(
                    _number(b, "theta_e_bins_arcsec") for b in table["theta_e_bins_arcsec"]
                )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: [tool.shortcutgates]: {exc}") from None
        return cls(**kw)


def check_gate_name(name: str, gates: Collection[str] | None) -> None:
    """Raise ``TypeError`` when ``name`` (a gate name or case id) names no gate of ``gates``."""
    if gates is not None and name.split("[")[0] not in gates:
        raise TypeError(f"unknown gate {name!r} (gates: {', '.join(gates)})")


def _number(value, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"'{key}' must be a number (got {value!r})")
    return float(value)


def _integer(value, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"'{key}' must be an integer (got {value!r})")
    return int(value)
