"""Realism check of the simulator against the survey's measurements (docs/design.md#the-shortcut, #simulator).

Measured on simulated data with the library's own probe (:func:`shortcutgates.gates.probes.core_lr_auc`,
5-fold CV grouped by LRG, central 10×10 pixels of all bands) and preprocessing
(:mod:`shortcutgates.preprocess`):

* paired, raw: the stamps and the controls of the same ``n/2`` LRGs (one injection each);
* unpaired, raw: stamps of half of ``n`` LRGs against the controls of the other half (one row per LRG);
* paired, residual: the paired sample after subtracting the azimuthal-median profile;
* share of arc flux within ``r < 5`` px: per stamp, the noiseless arc (stamp − control, summed
  over g, r, z) inside 5 px over the whole stamp; mean per θ_E bin.

Run ``python -m shortcutgates.simulate.realism --n-samples 2000 --seed 0``.
"""

from __future__ import annotations

import argparse
import sys
from typing import NamedTuple

import numpy as np

from ..codec import decode_stamps
from ..preprocess import radius_grid
from .generator import simulate_frame

SURVEY = {"paired_raw": 0.951, "unpaired_raw": 0.949, "paired_residual": 0.554}
THETA_E_BINS = (0.0, 0.75, 1.0, 1.5, 2.0, np.inf)
"""θ_E bin edges. Unit: arcsec."""
SURVEY_CORE_SHARE = (0.41, 0.30, 0.21, 0.15, 0.077)
"""The survey's share of arc flux within r < 5 px per θ_E bin."""


class RealismReport(NamedTuple):
    """The realism numbers of one simulated sample."""

    paired_raw: float
    """Core-LR AUC, paired, raw_robust."""
    unpaired_raw: float
    """Core-LR AUC, unpaired, raw_robust."""
    paired_residual: float
    """Core-LR AUC, paired, residual."""
    core_share: tuple
    """Mean share of arc flux within r < 5 px, per θ_E bin (NaN for an empty bin)."""
    core_share_n: tuple
    """Stamps per θ_E bin."""
    n_samples: int
    n_lrgs: int


def core_share(arcs: np.ndarray, radius: float = 5.0) -> np.ndarray:
    """Share of the arc flux inside ``r < radius`` px of the stamp centre, shape (N,).

    Parameters
    ----------
    arcs : ndarray, shape (N, 3, H, W)
        Noiseless arcs (stamp − control). Unit: nanomaggies.
    """
    total = arcs.sum(axis=(1, 2, 3), dtype=np.float64)
    inner = arcs[..., radius_grid(*arcs.shape[-2:]) < radius].sum(axis=(1, 2), dtype=np.float64)
    return inner / total


def binned_mean(values: np.ndarray, theta_e: np.ndarray, edges=THETA_E_BINS):
    """Mean of ``values`` per θ_E bin and the counts."""
    idx = np.digitize(theta_e, edges[1:-1])
    means = tuple(float(values[idx == i].mean()) if (idx == i).any() else float("nan")
                  for i in range(len(edges) - 1))
    return means, tuple(int((idx == i).sum()) for i in range(len(edges) - 1))


def measure(n_samples: int = 2000, seed: int = 0, *, stamp_size: int = 64, progress: bool = False,
            **options) -> RealismReport:
    """Simulate ``n_samples`` LRGs with one injection each and measure the realism numbers."""
    from ..gates.probes import core_lr_auc

    n_lrgs = int(n_samples)
    frame = simulate_frame(n_lrgs, seed, stamp_size=stamp_size, injections_per_lrg=(1, 1),
                           progress=progress, **options)
    stamps = decode_stamps(frame["stamp_npz"].tolist())
    ctrls = decode_stamps(frame["ctrl_stamp_npz"].tolist())
    stamps = stamps[0] if isinstance(stamps, tuple) else stamps
    ctrls = ctrls[0] if isinstance(ctrls, tuple) else ctrls
    ids = np.arange(n_lrgs)
    half = n_lrgs // 2
    # paired: stamp and control of the first half of the LRGs
    p_img = np.concatenate([stamps[:half], ctrls[:half]])
    p_lab = np.r_[np.ones(half), np.zeros(half)]
    p_grp = np.r_[ids[:half], ids[:half]]
    # unpaired: stamps of the first half of all LRGs, controls of the other half
    u_img = np.concatenate([stamps[::2], ctrls[1::2]])
    u_lab = np.r_[np.ones(len(stamps[::2])), np.zeros(len(ctrls[1::2]))]
    u_grp = np.r_[ids[::2], ids[1::2]]
    share, counts = binned_mean(core_share(stamps - ctrls), frame["theta_e_arcsec"].to_numpy())
    return RealismReport(
        core_lr_auc(p_img, p_lab, p_grp, preprocess="raw_robust").auc,
        core_lr_auc(u_img, u_lab, u_grp, preprocess="raw_robust").auc,
        core_lr_auc(p_img, p_lab, p_grp, preprocess="residual").auc,
        share, counts, len(p_img), n_lrgs,
    )


def format_report(rep: RealismReport) -> str:
    """Markdown table of a report next to the survey's numbers."""
    lines = ["| measurement | simulated | survey (DR10) |", "|---|---|---|"]
    for key in ("paired_raw", "unpaired_raw", "paired_residual"):
        lines.append(f"| core-LR AUC, {key.replace('_', ', ')} | {getattr(rep, key):.3f} | {SURVEY[key]:.3f} |")
    names = ("< 0.75", "0.75–1", "1–1.5", "1.5–2", "≥ 2")
    for name, v, n, s in zip(names, rep.core_share, rep.core_share_n, SURVEY_CORE_SHARE):
        lines.append(f"| arc flux share r < 5 px, θ_E {name}″ (n={n}) | {100 * v:.1f}% | {100 * s:.1f}% |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=2000, help="Default: %(default)r")
    parser.add_argument("--seed", type=int, default=0, help="Default: %(default)r")
    args = parser.parse_args(argv)
    print(format_report(measure(args.n_samples, args.seed, progress=True)))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
