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

from ..io import atomic_path, write_bytes_atomic
from ..gates import model_gates as mg
from ..gates import reference_scorers as rs
from ..gates.decision import decide
from ..gates.probes import ProbeError
from ..gates.records import GateConfig
from ..gates.registry import COUNTERFACTUAL_GATES

LAMBDAS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)
"""Core weights of the mixture readers (0: the pure arc reader, 1: the pure core reader)."""

GATES = COUNTERFACTUAL_GATES
"""gate -> (counterfactual, statistic): the registry rows' ``counterfactual``."""


def simulate_pairs(seed: int, n_lrgs: int, cache: Path | None = None) -> dict:
    """Paired arrays of one simulated seed: ``ctrls`` (unique), ``d`` (lensed light), ``ctrl_of``, ``theta``."""
    path = None if cache is None else Path(cache) / f"cal_{seed:03d}.npz"
    if path is not None and path.exists():
        with np.load(path, allow_pickle=False) as z:
            return {"ctrls": z["C"], "d": z["D"], "ctrl_of": z["ctrl_of"], "theta": z["theta"]}
    from ..codec import decode_stamp
    from ..simulate.generator import simulate_frame

    frame = simulate_frame(n_lrgs, 1000 + seed, injections_per_lrg=(2, 4))
    _, first, inv = np.unique(frame["task_id"].to_numpy(), return_index=True, return_inverse=True)
    ctrls = np.stack([decode_stamp(frame["ctrl_stamp_npz"].iloc[i]) for i in first])
    d = np.stack([decode_stamp(b) for b in frame["stamp_npz"]]) - ctrls[inv]
    out = {"ctrls": ctrls, "d": d.astype(np.float32), "ctrl_of": inv.ravel(), "theta": frame["theta_e_arcsec"].to_numpy()}
    if path is not None:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, C=out["ctrls"], D=out["d"], ctrl_of=out["ctrl_of"], theta=out["theta"])
    return out


def reader_scores(data: dict, seed: int) -> tuple[dict, dict, list]:
    """Pair scores (``stamp``, ``ctrl``, counterfactuals) of the arc and core readers, and the θ_E bins."""
    ctrls, inv = data["ctrls"], data["ctrl_of"]
    stamps = ctrls[inv] + data["d"]
    groups = inv.astype(str)
    bins = mg.theta_bins(data["theta"], np.zeros(len(inv)), groups, GateConfig().theta_e_bins_arcsec)
    share = mg.core_flux_share(data["d"], mg.R_CORE_PX)
    for b in bins:
        b["core_share"] = float(np.nanmean(share[b["rows"]])) if len(b["rows"]) else float("nan")
    out = []
    for reader in (rs.arc_reader, rs.core_reader):
        s_ctrl = reader(ctrls)
        scores = mg.counterfactual_scores(reader, stamps, ctrls[inv], groups, seed)
        scores.update(stamp=reader(stamps), ctrl=s_ctrl[inv])
        out.append(scores)
    return out[0], out[1], bins


def mix(arc: dict, core: dict, lam: float) -> dict:
    """Pair scores of :func:`~shortcutgates.gates.reference_scorers.mixture_reader` ``(lam)``."""
    keys = [k for k in arc if k != "swap_to"]
    return rs.mix_scores({k: arc[k] for k in keys}, {k: core[k] for k in keys}, lam)


def decide_all(scores: dict, bins: list, groups: np.ndarray, config: GateConfig, thresholds: dict) -> dict:
    """``{(gate, bin label): (verdict, value)}`` for one scorer on one seed."""
    out = {}
    for gate, (kind, statistic) in GATES.items():
        threshold, direction = thresholds[gate]
        for b in bins:
            if len(b["rows"]) < mg.MIN_BIN_PAIRS:
                continue
            try:
                est, _ = mg.paired_statistic(scores, kind, statistic, b["rows"], groups, config)
            except (ProbeError, ValueError):
                out[(gate, b["label"])] = ("error", float("nan"))
                continue
            out[(gate, b["label"])] = (decide(est.value, (est.lo, est.hi), threshold, direction), float(est.value))
    return out


def registry_thresholds() -> dict:
    from ..gates.registry import REGISTRY

    return {g: (REGISTRY[g].threshold, REGISTRY[g].direction) for g in GATES}


def run(seeds: int, n_lrgs: int, cache: Path | None, n_boot: int = 500, progress: bool = True,
        first_seed: int = 0) -> dict:
    """Verdict counts per (gate, bin, λ) over seeds ``first_seed … first_seed + seeds − 1``; also each
    bin's core share and every value (for medians)."""
    from tqdm.auto import tqdm

    config = GateConfig(n_boot=n_boot)
    thresholds = registry_thresholds()
    counts: dict = {}
    values: dict = {}
    shares: dict = {}
    for seed in tqdm(range(first_seed, first_seed + seeds), desc="seeds", disable=not progress):
        data = simulate_pairs(seed, n_lrgs, cache)
        arc, core, bins = reader_scores(data, seed)
        groups = data["ctrl_of"].astype(str)
        for b in bins:
            shares.setdefault(b["label"], []).append(b["core_share"])
        for lam in LAMBDAS:
            for (gate, label), (verdict, value) in decide_all(mix(arc, core, lam), bins, groups, config,
                                                              thresholds).items():
                key = f"{gate}|{label}|{lam:g}"
                counts.setdefault(key, {}).setdefault(verdict, 0)
                counts[key][verdict] += 1
                values.setdefault(key, []).append(value)
    return {"seeds": seeds, "first_seed": first_seed, "n_lrgs": n_lrgs, "n_boot": n_boot, "lambdas": list(LAMBDAS),
            "thresholds": {g: list(t) for g, t in thresholds.items()}, "shares": shares, "values": values,
            "counts": counts}


def merge(results: list) -> dict:
    """One result from runs over disjoint seed ranges (verdict counts added, values pooled)."""
    out = {k: results[0][k] for k in ("n_lrgs", "n_boot", "lambdas", "thresholds")}
    out["seeds"] = sum(r["seeds"] for r in results)
    out["counts"], out["values"], out["shares"] = {}, {}, {}
    for r in results:
        for key, c in r["counts"].items():
            for verdict, n in c.items():
                out["counts"].setdefault(key, {}).setdefault(verdict, 0)
                out["counts"][key][verdict] += n
        for field in ("values", "shares"):
            for key, v in r[field].items():
                out[field].setdefault(key, []).extend(v)
    return out


def format_table(result: dict) -> str:
    """One line per gate and bin: pass rate at each λ, and the first λ where the gate is red in ≥ half the seeds."""
    lines = [f"{result['seeds']} seeds × {result['n_lrgs']} LRGs; pass % at λ = "
             + " ".join(f"{lam:g}" for lam in result["lambdas"])]
    keys = sorted({tuple(k.split("|")[:2]) for k in result["counts"]})
    for gate, label in keys:
        rates, red = [], None
        for lam in result["lambdas"]:
            c = result["counts"].get(f"{gate}|{label}|{lam:g}", {})
            total = sum(c.values()) or 1
            rate = c.get("pass", 0) / total
            rates.append(f"{100 * rate:3.0f}")
            if red is None and rate < 0.5:
                red = lam
        share = float(np.nanmean(result["shares"].get(label, [np.nan])))
        lines.append(f"{gate:22s} {label:16s} core share {share:.2f}  "
                     + " ".join(rates) + f"   red from λ = {red}")
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
