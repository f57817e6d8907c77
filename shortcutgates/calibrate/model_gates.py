"""Calibrate the counterfactual model gates with the reference scorers over many simulated seeds.

For each seed: simulate paired data (``shortcutgates.simulate``), score every pair and its
counterfactuals with the pure arc reader and the pure core reader (two inference passes each),
form the mixtures (:func:`~shortcutgates.gates.reference_scorers.mixture_reader`, linear in the two
readers' scores), and decide every gate in every θ_E bin with the suite's rule. Prints, per gate, bin and
λ, how often the gate passed, failed, was inconclusive or could not measure (error).

Run (the numbers in ``docs/model_gates.md``)::

    OMP_NUM_THREADS=1 python -m shortcutgates.calibrate.model_gates --seeds 50 --n-lrgs 200 \\
        --out calibration_model_gates.json
    # or in parts over disjoint seeds, then the table of all of them:
    ... --first-seed 25 --seeds 25 --out part2.json; ... --merge part1.json part2.json

``--cache DIR`` keeps each seed's simulated pairs (``cal_SEED.npz``) so a re-run skips simulation.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_path, write_bytes_atomic
from ..gates import model_gates as mg
from ..gates import paired
from ..gates import perturb as pt
from ..gates import reference_scorers as rs
from ..gates.decision import decide
from ..gates.probes import ProbeError
from ..gates.records import GateConfig

LAMBDAS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)
"""Core weights of the mixture readers (0: the pure arc reader, 1: the pure core reader)."""

GATES = {gate: (kind, statistic) for gate, (kind, statistic, _) in mg.GATE_STATISTICS.items()}
"""gate -> (counterfactual, statistic it decides on)."""

ALSO_MEASURED = {
    # reported beside the deciding statistic: the operational claim at the operating threshold
    "arc_masked_auroc:flag_ratio": ("core_only", "flag_ratio"),
    "arc_masked_auroc:flag_rate": ("core_only", "flag_rate"),
    "core_masked_auroc_drop:flag_ratio": ("arc_only", "flag_ratio"),
    "morphology_auroc:flag_ratio": ("scrambled", "flag_ratio"),
}

FIXED_READERS = {
    **{f"arc_blind{r:g}": rs.arc_reader_blind_inside(r) for r in rs.ARC_BLIND_RADII_PX},
    "ring": rs.ring_reader,
    "flux_per_ring": rs.flux_per_ring_reader,
}
"""Readers measured beside the mixtures (whose λ = 0 end is ``arc_blind5``, λ = 1 the core reader)."""

TRUTH_KEEP = tuple(pt.TRUTH_COLUMNS) + tuple(pt.PSF_COLUMNS)


def simulate_pairs(seed: int, n_lrgs: int, cache: Path | None = None) -> dict:
    """Paired arrays of one simulated seed: ``ctrls`` (unique), ``d`` (lensed light), ``ctrl_of``, ``theta``,
    ``truth`` (a DataFrame of the injection truth and PSF columns, one row per pair)."""
    path = None if cache is None else Path(cache) / f"cal2_{seed:03d}.npz"
    if path is not None and path.exists():
        with np.load(path, allow_pickle=False) as z:
            truth = pd.DataFrame({c: z[f"t_{c}"] for c in TRUTH_KEEP})
            return {"ctrls": z["C"], "d": z["D"], "ctrl_of": z["ctrl_of"], "theta": z["theta"], "truth": truth}
    from ..codec import decode_stamp
    from ..simulate.generator import simulate_frame

    frame = simulate_frame(n_lrgs, 1000 + seed, injections_per_lrg=(2, 4))
    _, first, inv = np.unique(frame["task_id"].to_numpy(), return_index=True, return_inverse=True)
    ctrls = np.stack([decode_stamp(frame["ctrl_stamp_npz"].iloc[i]) for i in first])
    d = np.stack([decode_stamp(b) for b in frame["stamp_npz"]]) - ctrls[inv]
    truth = frame[list(TRUTH_KEEP)].astype(np.float64).reset_index(drop=True)
    out = {"ctrls": ctrls, "d": d.astype(np.float32), "ctrl_of": inv.ravel(), "theta": frame["theta_e_arcsec"].to_numpy(),
           "truth": truth}
    if path is not None:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, C=out["ctrls"], D=out["d"], ctrl_of=out["ctrl_of"], theta=out["theta"],
                     **{f"t_{c}": truth[c].to_numpy() for c in TRUTH_KEEP})
    return out


def reader_scores(data: dict, seed: int, readers: dict | None = None) -> tuple[dict, list]:
    """Pair scores (``stamp``, ``ctrl``, counterfactuals, operating ``threshold``) of each reader
    (default: :data:`FIXED_READERS` plus the arc and core readers of the mixtures), and the θ_E bins."""
    readers = {**FIXED_READERS, "arc": rs.arc_reader, "core": rs.core_reader} if readers is None else readers
    ctrls, inv = data["ctrls"], data["ctrl_of"]
    stamps = ctrls[inv] + data["d"]
    groups = inv.astype(str)
    truth = data["truth"]
    fwhm = truth[list(pt.PSF_COLUMNS)].to_numpy(np.float64)
    lensed = pt.split_lensed_light(data["d"], truth, fwhm)
    bins = paired.theta_bins(data["theta"], lensed.decidable, groups, GateConfig().theta_e_bins_arcsec, lensed.reason)
    images, perm = paired.counterfactuals(stamps, ctrls[inv], groups, lensed, fwhm, seed)
    out = {}
    for name, reader in readers.items():
        scores = {k: reader(images[k]) for k in paired.COUNTERFACTUALS}
        s_ctrl = reader(ctrls)
        scores.update(stamp=reader(stamps), ctrl=s_ctrl[inv], swap_to=perm,
                      threshold=paired.operating_threshold(s_ctrl, None))
        out[name] = scores
    return out, bins


def mix(arc: dict, core: dict, lam: float) -> dict:
    """Pair scores of :func:`~shortcutgates.gates.reference_scorers.mixture_reader` ``(lam)`` (its operating
    threshold from the mixed control scores of the pairs)."""
    keys = [k for k in arc if k not in ("swap_to", "threshold")]
    out = rs.mix_scores({k: arc[k] for k in keys}, {k: core[k] for k in keys}, lam)
    out["threshold"] = paired.operating_threshold(out["ctrl"], None)
    return out


def decide_all(scores: dict, bins: list, groups: np.ndarray, config: GateConfig, thresholds: dict) -> dict:
    """``{(gate, bin label): (verdict, value)}`` for one scorer on one seed (gated bins as the suite
    gates them; also the operational statistics of :data:`ALSO_MEASURED`, verdict ``measured``)."""
    out = {}
    for gate, (kind, statistic, needs_split) in mg.GATE_STATISTICS.items():
        threshold, direction = thresholds[gate]
        for b in bins:
            rows = b["decided"] if needs_split else b["rows"]
            if len(b["rows"]) < paired.MIN_BIN_PAIRS:
                continue
            if len(rows) < paired.MIN_BIN_PAIRS:
                out[(gate, b["label"])] = ("error", float("nan"))
                continue
            try:
                est, _ = paired.paired_statistic(scores, kind, statistic, rows, groups, config)
            except (ProbeError, ValueError):
                out[(gate, b["label"])] = ("error", float("nan"))
                continue
            out[(gate, b["label"])] = (decide(est.value, (est.lo, est.hi), threshold, direction), float(est.value))
    for name, (kind, statistic) in ALSO_MEASURED.items():
        for b in bins:
            if len(b["decided"]) < paired.MIN_BIN_PAIRS:
                continue
            try:
                value = paired.paired_statistic(scores, kind, statistic, b["decided"], groups, config)[0].value
            except (ProbeError, ValueError):
                value = float("nan")
            out[(name, b["label"])] = ("measured", float(value))
    return out


def registry_thresholds() -> dict:
    from ..gates.registry import REGISTRY

    return {g: (REGISTRY[g].threshold, REGISTRY[g].direction) for g in GATES}


def primary_gates() -> tuple[str, ...]:
    """The counterfactual gates whose role in the registry is ``primary`` (they can turn a run red)."""
    from ..gates.registry import REGISTRY

    return tuple(g for g in GATES if REGISTRY[g].role == "primary")


PRIMARY_GATES = primary_gates()


def gated_labels(bins: list) -> dict:
    """Per gate, the labels of the bins where the suite gates it (as :func:`~..gates.model_gates.theta_bin_cases`)."""
    out = {}
    for gate, (_, _, needs_split) in mg.GATE_STATISTICS.items():
        out[gate] = {b["label"] for b in bins
                     if (paired.bin_is_gated(b) if needs_split else len(b["rows"]) >= paired.MIN_GATED_BIN_PAIRS)}
    return out


def run(seeds: int, n_lrgs: int, cache: Path | None, n_boot: int = 500, progress: bool = True,
        first_seed: int = 0) -> dict:
    """Verdict counts per (gate, bin, reader) over seeds ``first_seed … first_seed + seeds − 1``; every
    value (for medians); each bin's undecidable share; and per reader the seeds on which it failed any
    primary counterfactual gate in any gated bin (``any_fail``)."""
    from tqdm.auto import tqdm

    config = GateConfig(n_boot=n_boot)
    thresholds = registry_thresholds()
    counts: dict = {}
    values: dict = {}
    shares: dict = {}
    any_fail: dict = {}
    for seed in tqdm(range(first_seed, first_seed + seeds), desc="seeds", disable=not progress):
        data = simulate_pairs(seed, n_lrgs, cache)
        scores, bins = reader_scores(data, seed)
        groups = data["ctrl_of"].astype(str)
        gated = gated_labels(bins)
        for b in bins:
            shares.setdefault(b["label"], []).append(b["undecidable_share"])
        readers = {name: scores[name] for name in FIXED_READERS}
        readers.update({f"mix{lam:g}": mix(scores["arc"], scores["core"], lam) for lam in LAMBDAS})
        for name, sc in readers.items():
            failed = False
            for (gate, label), (verdict, value) in decide_all(sc, bins, groups, config, thresholds).items():
                key = f"{gate}|{label}|{name}"
                counts.setdefault(key, {}).setdefault(verdict, 0)
                counts[key][verdict] += 1
                values.setdefault(key, []).append(value)
                failed |= gate in PRIMARY_GATES and label in gated[gate] and verdict == "fail"
            any_fail.setdefault(name, []).append([seed, bool(failed)])
    return {"seeds": seeds, "first_seed": first_seed, "n_lrgs": n_lrgs, "n_boot": n_boot, "lambdas": list(LAMBDAS),
            "readers": list(FIXED_READERS) + [f"mix{lam:g}" for lam in LAMBDAS],
            "thresholds": {g: list(t) for g, t in thresholds.items()}, "shares": shares, "values": values,
            "counts": counts, "any_fail": any_fail}


def merge(results: list) -> dict:
    """One result from runs over disjoint seed ranges (verdict counts added, values pooled)."""
    out = {k: results[0][k] for k in ("n_lrgs", "n_boot", "lambdas", "thresholds", "readers")}
    out["seeds"] = sum(r["seeds"] for r in results)
    out["counts"], out["values"], out["shares"], out["any_fail"] = {}, {}, {}, {}
    for r in results:
        for key, c in r["counts"].items():
            for verdict, n in c.items():
                out["counts"].setdefault(key, {}).setdefault(verdict, 0)
                out["counts"][key][verdict] += n
        for field in ("values", "shares", "any_fail"):
            for key, v in r[field].items():
                out[field].setdefault(key, []).extend(v)
    return out


def format_table(result: dict) -> str:
    """Per reader: seeds failing any primary counterfactual gate in a gated bin (Wilson 95 %); then per
    gate, bin and reader the pass / fail / error counts and the median value."""
    from .rates import proportion_ci

    lines = [f"{result['seeds']} seeds × {result['n_lrgs']} LRGs"]
    lines.append("undecidable share per θ_E bin (median over seeds): " + ", ".join(
        f"{label} {float(np.nanmedian(v)):.2f}" for label, v in sorted(result["shares"].items())))
    lines.append("reader: seeds with a fail in a gated bin [Wilson 95 %]")
    for name in result["readers"]:
        flags = [f for _, f in result["any_fail"].get(name, [])]
        k, n = int(sum(flags)), len(flags)
        lo, hi = proportion_ci(k, n)
        lines.append(f"  {name:16s} {k:3d}/{n:3d} = {k / max(n, 1):.2f} [{lo:.2f}, {hi:.2f}]")
    keys = sorted({tuple(k.split("|")) for k in result["counts"]})
    for gate, label, name in keys:
        c = result["counts"][f"{gate}|{label}|{name}"]
        v = np.asarray(result["values"][f"{gate}|{label}|{name}"], np.float64)
        med = float(np.nanmedian(v)) if np.isfinite(v).any() else float("nan")
        lines.append(f"{gate:34s} {label:14s} {name:16s} "
                     + " ".join(f"{k}={n}" for k, n in sorted(c.items())) + f"  median {med:.3f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--merge", type=Path, nargs="+", default=None,
                        help="print the table of result files of disjoint seed ranges instead of running")
    parser.add_argument("--n-lrgs", type=int, default=200)
    parser.add_argument("--n-boot", type=int, default=500)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.merge:
        print(format_table(merge([json.loads(p.read_text()) for p in args.merge])))
        return 0
    result = run(args.seeds, args.n_lrgs, args.cache, args.n_boot, first_seed=args.first_seed)
    print(format_table(result))
    if args.out is not None:
        write_bytes_atomic(args.out, json.dumps(result, indent=1).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
