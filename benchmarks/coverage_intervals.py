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

Run: ``OMP_NUM_THREADS=1 python benchmarks/coverage_intervals.py --seeds 200 --sizes 150 300 1000``
(writes ``--out`` JSON; progress on stderr).
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
    args = ap.parse_args(argv)
    config = GateConfig(n_boot=args.n_boot)
    results = []
    t0 = time.perf_counter()
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
