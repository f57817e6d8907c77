"""The ``reader`` cell: the reference readers on the simulator's default lenses, decided by the suite.

One seed: ``simulate_frame(n_lrgs, 1000 + seed, injections_per_lrg=(2, 4))`` (the simulator's default
lenses: θ_E 0.5–2.5″, counter-images, no taper), its positives and the control of each LRG as the
paired split ``test_paired`` (:func:`paired_sample`); then, for every reader of
:func:`~shortcutgates.calibrate.scorers.reader_names`, every counterfactual case of the registry
(:data:`~shortcutgates.gates.registry.COUNTERFACTUAL_GATES`, one per θ_E bin) through
:func:`~shortcutgates.gates.suite.run_suite`: the gates' own cases (their role: the registry row's in a
gated bin, ``reported`` elsewhere), measure functions, thresholds and verdicts. The lensing split and
the θ_E bins are computed once per seed and shared by the readers; the mixtures' component readers score
each image once (:class:`ComponentScores`).

Records beside the cases (verdict ``measured``, role ``reported``: never red):

* ``<gate>:flag_rate`` for a gate deciding on the flag ratio: the share of counterfactuals flagged at the
  operating threshold (the case's ``extra["operational"]``);
* ``undecidable_share`` per θ_E bin (scorer ``""``): the share of the bin's pairs the lensing split
  cannot decide.

``docs/model_gates.md#calibration`` gives the profile (``shortcutgates calibrate --profile readers``) and
its table (:func:`shortcutgates.calibrate.tables.reader_table`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd

from shortcutgates.gates import perturb as pt
from shortcutgates.gates.paired import paired_set
from shortcutgates.gates.probes import ProbeError
from shortcutgates.gates.registry import COUNTERFACTUAL_GATES, REGISTRY, gate_cases
from shortcutgates.gates.sample import SplitSample
from shortcutgates.gates.suite import run_suite
from shortcutgates.data.schema import PIXEL_SCALE_ARCSEC
from shortcutgates.calibrate.harness import case_record
from shortcutgates.calibrate.scorers import FIXED_READERS, LAMBDAS, mixture_name, resolve_scorer

SPLIT = "test_paired"
TRUTH_KEEP = tuple(pt.TRUTH_COLUMNS) + tuple(pt.PSF_COLUMNS)
"""Injection truth and PSF columns a pair carries (what the lensing split reads)."""
SIMULATOR_SEED_OFFSET = 1000
"""A ``reader`` seed ``s`` simulates with seed ``1000 + s`` (the seeds of the reader table since issue 19)."""


def paired_sample(stamps: np.ndarray, ctrls: np.ndarray, ctrl_of: np.ndarray, truth: pd.DataFrame) -> SplitSample:
    """The paired split of ``P`` positives and ``G`` LRGs as a gate sample: rows ``0 … P−1`` the positives
    (``stamps`` (P, C, H, W), their LRG ``ctrl_of`` (P,), their ``truth`` rows: :data:`TRUTH_KEEP` with
    ``theta_e_arcsec``), rows ``P … P+G−1`` the LRGs' controls ``ctrls`` (G, C, H, W); LRG ``k`` is group ``str(k)``.
    Nanomaggies."""
    n_pos, n_lrgs = len(stamps), len(ctrls)
    labels = np.r_[np.ones(n_pos, int), np.zeros(n_lrgs, int)]
    groups = np.r_[np.asarray(ctrl_of, np.int64), np.arange(n_lrgs)].astype(str)
    meta = pd.concat([truth.reset_index(drop=True), pd.DataFrame(index=range(n_lrgs))], ignore_index=True)
    meta = meta.assign(label=labels, _group=groups)
    theta = np.r_[truth["theta_e_arcsec"].to_numpy(np.float64) / PIXEL_SCALE_ARCSEC, np.full(n_lrgs, np.nan)]
    images = np.concatenate([np.asarray(stamps, np.float32), np.asarray(ctrls, np.float32)])
    return SplitSample(meta, images, labels, groups, theta, len(labels), 0, 0)


def simulated_sample(seed: int, n_lrgs: int) -> SplitSample:
    """The paired split of one ``reader`` seed (:func:`paired_sample` of the simulator's frame)."""
    from shortcutgates.data.codec import decode_stamp
    from shortcutgates.simulate.generator import simulate_frame

    frame = simulate_frame(n_lrgs, SIMULATOR_SEED_OFFSET + seed, injections_per_lrg=(2, 4))
    _, first, inv = np.unique(frame["task_id"].to_numpy(), return_index=True, return_inverse=True)
    ctrls = np.stack([decode_stamp(frame["ctrl_stamp_npz"].iloc[i]) for i in first])
    stamps = np.stack([decode_stamp(b) for b in frame["stamp_npz"]])
    truth = frame[list(TRUTH_KEEP)].astype(np.float64)
    return paired_sample(stamps, ctrls, inv.ravel(), truth)


DATA_MEMOS = ("paired_set", "counterfactual_batch")
"""Memo keys that hold data only (the lensing split, the counterfactual images): shared by every reader."""


class PairedContext:
    """What the counterfactual gates read of a :class:`~shortcutgates.gates.context.GateContext`, over one
    in-memory paired sample: ``config``, the split ``test_paired``, its sample, the model's scores
    (``score``, ``scores``) and ``memo``. :meth:`with_scorer` gives another reader the same data and the
    same lensing split and counterfactual images (:data:`DATA_MEMOS`), with its own scores."""

    def __init__(self, sample: SplitSample, config, score_fn=None):
        self.config, self._sample, self._score_fn = config, sample, score_fn
        self._memo: dict[tuple, object] = {}
        self._scores: np.ndarray | None = None
        self.splits = [SPLIT]
        self.paired_split = SPLIT

    @property
    def has_model(self) -> bool:
        return self._score_fn is not None

    def sample(self, split: str) -> SplitSample:
        if split != SPLIT:
            raise ProbeError(f"split {split!r} has no rows (splits present: {SPLIT})")
        return self._sample

    def score(self, images: np.ndarray, inputs: np.ndarray | None = None) -> np.ndarray:
        """The reader's scores of ``images`` (N,), checked as :meth:`GateContext.score` checks them (a reader
        reads raw stamps: ``inputs``, preprocessed ones, are never given: :meth:`model_inputs`)."""
        if self._score_fn is None:
            raise ProbeError("no model given")
        scores = np.asarray(self._score_fn(images), np.float64).reshape(-1)
        if len(scores) != len(images) or not np.isfinite(scores).all():
            raise ProbeError(f"model returned {len(scores)} scores for {len(images)} images or non-finite scores")
        return scores

    def scores(self, split: str) -> np.ndarray:
        if self._scores is None:
            self._scores = self.score(self.sample(split).images)
        return self._scores

    def model_inputs(self, key: tuple, raw) -> None:
        """Readers take raw stamps: no preprocessed inputs (:meth:`GateContext.model_inputs`)."""
        return None

    def memo(self, key: tuple, compute):
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def with_scorer(self, score_fn) -> "PairedContext":
        other = PairedContext(self._sample, self.config, score_fn)
        other._memo = {k: v for k, v in self._memo.items() if k[0] in DATA_MEMOS}
        return other


class ComponentScores:
    """The arc and core readers' scores of each image batch, computed once (keyed by the batch's bytes), so
    every mixture ``mix<λ>`` costs no further reading; the score of :func:`mixture` is the bits
    :func:`~shortcutgates.gates.reference_scorers.mixture_reader` gives."""

    def __init__(self):
        self._cache: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        key = hashlib.blake2b(np.ascontiguousarray(images).data.cast("B"), digest_size=16).digest() + bytes(
            str(images.shape), "ascii"
        )
        if key not in self._cache:
            self._cache[key] = (resolve_scorer("arc")(images), resolve_scorer("core")(images))
        return self._cache[key]

    def mixture(self, lam: float):
        from shortcutgates.gates.reference_scorers import mix_scores

        def score(images: np.ndarray) -> np.ndarray:
            arc, core = self(images)
            return mix_scores(arc if lam < 1 else 0.0, core if lam > 0 else 0.0, lam)

        return score


def readers() -> dict:
    """Every reader of a ``reader`` cell by name (:func:`~shortcutgates.calibrate.scorers.reader_names`)."""
    components = ComponentScores()
    out = {name: resolve_scorer(name) for name in FIXED_READERS}
    out.update({mixture_name(lam): components.mixture(lam) for lam in LAMBDAS})
    return out


def reader_runs(sample: SplitSample, config, scorers: dict):
    """``(reader, CaseRun)`` of every counterfactual case of every reader on ``sample`` (in reader order, then
    registry order), and the θ_E bins of the sample's lensing split."""
    base = PairedContext(sample, config)
    bins = paired_set(base, SPLIT).bins
    runs = []
    for name, score_fn in scorers.items():
        context: Any = base.with_scorer(score_fn)  # reads as a GateContext to the counterfactual gates
        cases = gate_cases(context, names=tuple(COUNTERFACTUAL_GATES))
        runs += [(name, run) for run in run_suite(context, waivers=False, cases=cases)]
    return runs, bins


def bin_label(case_id: str) -> str:
    """The θ_E bin of a counterfactual case id (``arc_masked_auroc[test_paired-theta_e1-1.5]`` -> ``1-1.5″``);
    ``""`` for a case without a bin."""
    found = re.search(r"theta_e([0-9.]+-[0-9.]+)", str(case_id))
    return f"{found.group(1)}″" if found else ""


def _measured(base: dict, gate: str, case: str, scorer: str, value, lo=np.nan, hi=np.nan) -> dict:
    return {
        **base,
        "scorer": scorer,
        "case": case,
        "gate": gate,
        "role": "reported",
        "verdict": "measured",
        "value": float(value),
        "lo": float(lo),
        "hi": float(hi),
        "threshold": np.nan,
        "direction": "",
        "established": False,
        "message": "measured beside the counterfactual cases",
        "seconds": 0.0,
    }


def reader_records(base: dict, sample: SplitSample, config, scorers: dict | None = None) -> list[dict]:
    """The records of one ``reader`` seed (``base``: the cell's columns and the seed): one per reader and
    counterfactual case (:func:`shortcutgates.calibrate.harness.case_record`), the flag rates beside the
    flag-ratio cases, and each θ_E bin's undecidable share."""
    runs, bins = reader_runs(sample, config, readers() if scorers is None else scorers)
    out = [
        _measured(base, "undecidable_share", f"undecidable_share[{SPLIT}-{b['label']}]", "", b["undecidable_share"])
        for b in bins
    ]
    for name, run in runs:
        out.append(case_record({**base, "scorer": name}, run.case, run.result, run.seconds))
        op = (run.result.extra or {}).get("operational")
        if COUNTERFACTUAL_GATES[run.case.gate][1] == "flag_ratio" and op:
            gate = f"{run.case.gate}:flag_rate"
            out.append(
                _measured(base, gate, run.case.id.replace(run.case.gate, gate, 1), name, *op["counterfactual_flagged"])
            )
    return out


def run_reader_seed(cell, seed: int, config) -> list[dict]:
    """Every record of one seed of a ``reader`` cell (the cell's ``n_lrgs`` simulated LRGs)."""
    base = {**asdict(cell), "cell": cell.key, "seed": int(seed)}
    return reader_records(base, simulated_sample(seed, cell.n_lrgs), config)


def primary_gates() -> tuple[str, ...]:
    """The counterfactual gates whose registry role is ``primary`` (their gated bins can turn a run red)."""
    return tuple(g for g in COUNTERFACTUAL_GATES if REGISTRY[g].role == "primary")
