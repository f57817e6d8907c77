"""Why the arc swap is matched in brightness (docs/model_gates.md#arc-swap): on a development seed of the
CNN calibration, the paired AUROC a trained CNN loses per θ_E bin when each arc moves to another LRG's
control chosen at random, matched in PSF FWHM, or matched in host flux.

    OMP_NUM_THREADS=1 python scripts/dev/swap_study.py neutral-raw_robust 100 /tmp/swap_study

Trains the family's CNN of that seed (``calibrate.cnn.train_seed``, the ``cnn`` profile's sizes) on the
realistic pool (cached under ``--cache``, default ~/.cache/shortcutgates/calibrate), then scores the
gating manifest's pairs. Seeds 100 and 101 chose the rule; the calibration's seeds are others.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from shortcutgates.calibrate import cnn
from shortcutgates.calibrate.harness import Cell
from shortcutgates.calibrate.pool import load_pool
from shortcutgates.calibrate.profiles import CNN_POOL_LRGS, CNN_TRAIN_LRGS
from shortcutgates.gates import paired as pa
from shortcutgates.gates.context import GateContext
from shortcutgates.gates.perturb import derangement
from shortcutgates.gates.records import GateConfig
from shortcutgates.data.lrg_properties import measure_lrgs


def neighbour_swap(key: np.ndarray) -> np.ndarray:
    """Each pair to the next pair in the order of ``key`` (cyclic): a swap matched in ``key``."""
    order = np.argsort(key, kind="stable")
    to = np.empty_like(order)
    to[order] = order[np.r_[1 : len(order), 0]]
    return to


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("family")
    ap.add_argument("seed", type=int)
    ap.add_argument("out")
    ap.add_argument("--cache", default=None)
    a = ap.parse_args()
    pool = load_pool(CNN_POOL_LRGS, 0, a.cache, progress=True, kind="realistic")
    cell = Cell("cnn", "core", 0.0, CNN_TRAIN_LRGS, scorer=cnn.PREFIX + a.family, pool="realistic")
    out = Path(a.out) / f"{a.family}_{a.seed}"
    trained = cnn.train_seed(pool, cnn.FAMILIES[a.family], CNN_TRAIN_LRGS, a.seed, cell.rng(a.seed), out)
    ctx = GateContext(trained.gating_manifest, trained.checkpoint, GateConfig())
    s = ctx.sample(ctx.paired_split)
    ps = pa.paired_set(ctx, ctx.paired_split)
    stamps, ctrls = s.images[ps.pairs.stamp], s.images[ps.pairs.ctrl]
    d = stamps - ctrls
    fwhm, host = ps.fwhm_arcsec[:, 1], -measure_lrgs(ctrls)["total_mag_r"].to_numpy()
    swaps = {
        "random": derangement(ps.groups, np.random.default_rng(0)),
        "psf-matched": neighbour_swap(fwhm),
        "flux-matched": neighbour_swap(host),
    }
    for name, to in swaps.items():
        assert (ps.groups[to] != ps.groups).all(), f"{name}: an arc stayed on its own LRG"
    score = {"stamp": ctx.score(stamps), "ctrl": ctx.score(ctrls)}
    score.update({k: ctx.score(ctrls[to] + d) for k, to in swaps.items()})
    ratio = np.log(np.clip(10 ** (0.4 * (host[swaps["random"]] - host)), 1e-3, None))
    print(f"{a.family} seed {a.seed}: validation AUROC {trained.val_auroc:.3f}")
    for lo, hi in [(0, 1), (1, 1.5), (1.5, 2), (2, 10)]:
        r = (ps.theta_e_arcsec >= lo) & (ps.theta_e_arcsec < hi)
        if r.sum() < 10:
            continue
        y = np.r_[np.ones(r.sum()), np.zeros(r.sum())]
        base = roc_auc_score(y, np.r_[score["stamp"][r], score["ctrl"][r]])
        drops = {k: base - roc_auc_score(y, np.r_[score[k][r], score["ctrl"][r]]) for k in swaps}
        change = (score["random"] - score["stamp"])[r]
        print(
            f"θ_E {lo}-{hi}″: {r.sum()} pairs, AUROC {base:.3f}; drop "
            + ", ".join(f"{k} {v:+.3f}" for k, v in drops.items())
            + f"; corr(score change, log host-flux ratio) {np.corrcoef(change, ratio[r])[0, 1]:+.2f},"
            f" corr(score change, ΔFWHM) {np.corrcoef(change, (fwhm[swaps['random']] - fwhm)[r])[0, 1]:+.2f}"
        )


if __name__ == "__main__":
    main()
