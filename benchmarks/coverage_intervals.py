"""Coverage of the probe-AUC intervals over seeds, on synthetic features (fast; no images).

The probe (grouped 5-fold logistic regression, ``shortcutgates.gates.probes``) is run on Gaussian
features of ``n_lrgs`` LRGs: ``p`` features, the first ``k`` shifted by ``delta`` for positives (the
population AUC of the best linear rule is ``Φ(delta·sqrt(k/2))``). ``--design paired`` gives every LRG a
positive and its negative with a shared LRG component (the rows of an LRG are correlated, as a stamp
and its control are); ``unpaired`` gives each LRG one row of one label.

The estimand is the expected out-of-fold AUC at this sample size (the mean of the estimates over
the seeds, which is what a rerun on fresh data of the same size scatters around). For each method
the script prints the coverage of the 95 % interval (share of seeds whose interval holds the
estimand), the mean half-width, and the ratio of the mean bootstrap SE to the seed-to-seed SD:

* ``oof``: the old interval: the LRG bootstrap of the out-of-fold scores (probe fitted once);
* ``refit``: every resample refits the probe (Newton steps from its fit) and rescores the held-out
  rows (percentile interval centred on the estimate);
* ``blend``: the interval the gates use (:func:`~shortcutgates.gates.probes.cv_auc_estimate`):
  ``var(oof) + 0.632 · (var(refit) − var(oof))``, normal around the estimate.

With ``--scorer`` it measures the intervals of the model gates instead: a fixed scorer (binormal
scores, a shared LRG part in paired data) whose AUROC is known, and the signed AUROC gap of two
independent splits of one population (true gap 0), both by the LRG bootstrap of the scores.

Run: ``OMP_NUM_THREADS=1 python benchmarks/coverage_intervals.py --seeds 200 --sizes 150 300 1000``
(add ``--scorer`` for the model gates; writes ``--out`` JSON; progress on stderr).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np
from scipy.stats import norm
from tqdm import tqdm

from shortcutgates.gates.probes import blended_interval, cv_auc_resamples
from shortcutgates.gates.records import GateConfig


def make_features(n_lrgs: int, p: int, k: int, delta: float, design: str, seed: int):
    """(features (N, p), labels (N,), groups (N,)) for one seed."""
    rng = np.random.default_rng(seed)
    if design == "paired":
        lrg = rng.normal(size=(n_lrgs, p))
        labels = np.tile([1, 0], n_lrgs)
        groups = np.repeat(np.arange(n_lrgs), 2)
        x = lrg[groups] + rng.normal(size=(2 * n_lrgs, p))
    else:
        labels = rng.permutation(np.arange(n_lrgs) % 2)
        groups = np.arange(n_lrgs)
        x = rng.normal(size=(n_lrgs, p))
    x[:, :k] += delta * labels[:, None] * (math.sqrt(2) if design == "paired" else 1.0)
    return x, labels, groups


def one_seed(n_lrgs, p, k, delta, design, seed, config) -> dict:
    x, y, g = make_features(n_lrgs, p, k, delta, design, seed)
    cfg = GateConfig(n_boot=config.n_boot, seed=seed, level=config.level, n_splits=config.n_splits)
    r = cv_auc_resamples(x, y, g, cfg)
    tail = [(1 - cfg.level) / 2, (1 + cfg.level) / 2]
    return {"value": r.value, "oof": np.quantile(r.held_out, tail).tolist(),
            "refit": np.quantile(r.refit - r.refit.mean() + r.value, tail).tolist(),
            "blend": list(blended_interval(r, cfg.level))}


def summarise(rows: list[dict], level: float) -> dict:
    values = np.array([r["value"] for r in rows])
    truth, spread = float(values.mean()), float(values.std(ddof=1))
    z = norm.ppf((1 + level) / 2)
    out = {"estimand": truth, "seed_sd": spread, "n_seeds": len(rows)}
    for method in ("oof", "refit", "blend"):
        ci = np.array([r[method] for r in rows])
        ok = np.isfinite(ci).all(axis=1)
        cover = (ci[ok, 0] <= truth) & (truth <= ci[ok, 1])
        half = (ci[ok, 1] - ci[ok, 0]) / 2
        out[method] = {"coverage": float(cover.mean()), "half_width": float(half.mean()),
                       "se_over_sd": float((half / z).mean() / spread), "no_interval": int((~ok).sum())}
    return out


def scorer_seed(n_lrgs: int, auc: float, design: str, seed: int, config) -> dict:
    """A fixed scorer (no fitting): binormal scores with a shared LRG component in paired data.

    Returns the AUROC interval of one split and the interval of the signed AUROC gap between two
    independent splits of the same population (true gap 0), as the model gates compute them.
    """
    from shortcutgates.gates.decision import bootstrap_auroc, bootstrap_metric
    from shortcutgates.stats import weighted_auroc_metric

    rng = np.random.default_rng(seed)
    d = math.sqrt(2) * norm.ppf(auc) * (math.sqrt(2) if design == "paired" else 1.0)  # σ² = 2 with an LRG part

    def split(n, offset):
        if design == "paired":
            labels, groups = np.tile([1, 0], n), np.repeat(np.arange(n), 2) + offset
            scores = rng.normal(size=n)[groups - offset] + rng.normal(size=2 * n) + d * labels
        else:
            labels, groups = rng.permutation(np.arange(n) % 2), np.arange(n) + offset
            scores = rng.normal(size=n) + d * labels
        return labels, scores, groups

    cfg = GateConfig(n_boot=config.n_boot, seed=seed, level=config.level)
    la, sa, ga = split(n_lrgs, 0)
    lb, sb, gb = split(n_lrgs, 10 * n_lrgs)
    one = bootstrap_auroc(la, sa, ga, cfg)
    labels, scores, groups = np.r_[la, lb], np.r_[sa, sb], np.r_[ga, gb]
    in_a = np.arange(len(labels)) < len(la)
    auc_a, auc_b = weighted_auroc_metric(la, sa), weighted_auroc_metric(lb, sb)
    gap = bootstrap_metric(labels, scores, groups,
                           lambda _l, _s, w=None: auc_a(None, None, None if w is None else w[in_a])
                           - auc_b(None, None, None if w is None else w[~in_a]), cfg)
    return {"auroc": [one.lo, one.hi], "auroc_value": one.value, "gap": [gap.lo, gap.hi], "gap_value": gap.value}


def summarise_scorer(rows: list[dict], auc: float, level: float) -> dict:
    z = norm.ppf((1 + level) / 2)
    out = {}
    for key, truth in (("auroc", auc), ("gap", 0.0)):
        ci = np.array([r[key] for r in rows])
        values = np.array([r[f"{key}_value"] for r in rows])
        half = (ci[:, 1] - ci[:, 0]) / 2
        out[key] = {"coverage": float(((ci[:, 0] <= truth) & (truth <= ci[:, 1])).mean()),
                    "se_over_sd": float((half / z).mean() / values.std(ddof=1)), "half_width": float(half.mean())}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--sizes", type=int, nargs="+", default=[150, 300, 1000], help="LRGs per run")
    ap.add_argument("--designs", nargs="+", default=["unpaired", "paired"])
    ap.add_argument("--auc", type=float, nargs="+", default=[0.5, 0.6, 0.7],
                    help="population AUC of the best linear rule")
    ap.add_argument("--p", type=int, default=100, help="features")
    ap.add_argument("--k", type=int, default=10, help="features that carry the signal")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--out", default=None)
    ap.add_argument("--scorer", action="store_true",
                    help="fixed-scorer AUROC and AUROC-gap intervals (the model gates) instead of the probe")
    args = ap.parse_args(argv)
    config = GateConfig(n_boot=args.n_boot)
    results = []
    t0 = time.perf_counter()
    if args.scorer:
        for design in args.designs:
            for auc in args.auc:
                for n in args.sizes:
                    rows = [scorer_seed(n, auc, design, seed, config)
                            for seed in tqdm(range(args.seeds), desc=f"scorer {design} AUC {auc} n={n}", file=sys.stderr)]
                    res = {"design": design, "population_auc": auc, "n_lrgs": n, **summarise_scorer(rows, auc, config.level)}
                    results.append(res)
                    print(f"scorer {design:8s} AUC {auc:.2f} n={n:5d}: AUROC coverage {res['auroc']['coverage']:.3f} "
                          f"(SE/SD {res['auroc']['se_over_sd']:.2f}); gap coverage {res['gap']['coverage']:.3f} "
                          f"(SE/SD {res['gap']['se_over_sd']:.2f}, half-width {res['gap']['half_width']:.3f})", flush=True)
        args.designs = []  # the probe loop below does nothing
    for design in args.designs:
        for auc in args.auc:
            delta = math.sqrt(2 / args.k) * norm.ppf(auc)
            for n in args.sizes:
                rows = [one_seed(n, args.p, args.k, delta, design, seed, config)
                        for seed in tqdm(range(args.seeds), desc=f"{design} AUC {auc} n={n}", file=sys.stderr)]
                res = {"design": design, "population_auc": auc, "n_lrgs": n, **summarise(rows, config.level)}
                results.append(res)
                print(f"{design:8s} AUC {auc:.2f} n={n:5d}: estimand {res['estimand']:.3f} (seed SD {res['seed_sd']:.3f}); "
                      f"coverage oof {res['oof']['coverage']:.3f} (SE/SD {res['oof']['se_over_sd']:.2f}), "
                      f"refit {res['refit']['coverage']:.3f} (SE/SD {res['refit']['se_over_sd']:.2f}), "
                      f"blend (used) {res['blend']['coverage']:.3f} (SE/SD {res['blend']['se_over_sd']:.2f})", flush=True)
    print(f"{time.perf_counter() - t0:.0f} s", flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"command": " ".join(sys.argv), "results": results}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
