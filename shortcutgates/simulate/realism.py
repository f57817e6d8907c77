"""Realism check of the simulator against the survey's measurements (docs/design.md#the-shortcut, #simulator).

Measured on simulated data with the library's own probes (:mod:`shortcutgates.gates.probes`,
5-fold CV grouped by LRG) and preprocessing (:mod:`shortcutgates.model.preprocess`):

* core-LR AUC (central 10×10 pixels of all bands), raw (``raw_robust``) and ``residual``:
  paired (the stamps and the controls of the same ``n/2`` LRGs, one injection each) and
  unpaired (stamps of half of the LRGs against the controls of the other half);
* arc-annulus LR AUC: ring statistics of the annulus where the arcs lie, paired, raw;
* share of arc flux within ``r < 5`` px: per stamp, the noiseless arc (stamp − control, summed
  over g, r, z) inside 5 px over the whole stamp; mean per θ_E bin.

Run ``python -m shortcutgates.simulate.realism --n-samples 2000 --seeds 0 1 --sources sersic hdf``
for the side-by-side table (docs/simulator_realism.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import NamedTuple

import numpy as np

from shortcutgates.data.codec import decode_stamps
from shortcutgates.model.preprocess import radius_grid
from shortcutgates.simulate.generator import simulate_frame

SURVEY = {
    "paired_raw": 0.951,
    "unpaired_raw": 0.949,
    "paired_residual": 0.554,
    "unpaired_residual": 0.694,
    "arc_annulus": 0.959,
}
"""The survey's probe AUCs (real DR10 cutouts, COSMOS-source injections, n = 2000)."""
AUC_KEYS = tuple(SURVEY)
AUC_TOLERANCE = 0.05
"""Target: every AUC within this of the survey's."""
SHARE_TOLERANCE = 0.05
"""Target: every θ_E bin's core share within 5 percentage points of the survey's."""
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
    unpaired_residual: float
    """Core-LR AUC, unpaired, residual."""
    arc_annulus: float
    """Arc-annulus LR AUC, paired, raw_robust."""
    core_share: tuple
    """Mean share of arc flux within r < 5 px, per θ_E bin (NaN for an empty bin)."""
    core_share_n: tuple
    """Stamps per θ_E bin."""
    n_samples: int
    n_lrgs: int
    sources: str = "sersic"
    seed: int = 0


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
    means = tuple(float(values[idx == i].mean()) if (idx == i).any() else float("nan") for i in range(len(edges) - 1))
    return means, tuple(int((idx == i).sum()) for i in range(len(edges) - 1))


def measure(
    n_samples: int = 2000, seed: int = 0, *, stamp_size: int = 64, progress: bool = False, **options
) -> RealismReport:
    """Simulate ``n_samples`` LRGs with one injection each and measure the realism numbers.

    ``options`` are :class:`~shortcutgates.simulate.population.PopulationConfig` fields
    (``sources="hdf"`` for the real-galaxy library).
    """
    from shortcutgates.gates.features import arc_radii, ring_features
    from shortcutgates.gates.probes import core_lr_auc, grouped_cv_auc
    from shortcutgates.model.preprocess import annulus_radii, raw_robust
    from shortcutgates.data.schema import PIXEL_SCALE_ARCSEC

    n_lrgs = int(n_samples)
    frame = simulate_frame(n_lrgs, seed, stamp_size=stamp_size, injections_per_lrg=(1, 1), progress=progress, **options)
    stamps = decode_stamps(frame["stamp_npz"].tolist())
    ctrls = decode_stamps(frame["ctrl_stamp_npz"].tolist())
    stamps = stamps[0] if isinstance(stamps, tuple) else stamps
    ctrls = ctrls[0] if isinstance(ctrls, tuple) else ctrls
    theta_e = frame["theta_e_arcsec"].to_numpy()
    ids = np.arange(n_lrgs)
    half = n_lrgs // 2
    # paired: stamp and control of the first half of the LRGs
    p_img = np.concatenate([stamps[:half], ctrls[:half]])
    p_lab = np.r_[np.ones(half), np.zeros(half)]
    p_grp = np.r_[ids[:half], ids[:half]]
    # unpaired: stamps of every other LRG, controls of the others
    u_img = np.concatenate([stamps[::2], ctrls[1::2]])
    u_lab = np.r_[np.ones(len(stamps[::2])), np.zeros(len(ctrls[1::2]))]
    u_grp = np.r_[ids[::2], ids[1::2]]
    r_in, r_out = arc_radii(theta_e[:half] / PIXEL_SCALE_ARCSEC, r_max=annulus_radii(stamp_size, stamp_size)[0])
    share, counts = binned_mean(core_share(stamps - ctrls), theta_e)
    return RealismReport(
        core_lr_auc(p_img, p_lab, p_grp, preprocess="raw_robust").auc,
        core_lr_auc(u_img, u_lab, u_grp, preprocess="raw_robust").auc,
        core_lr_auc(p_img, p_lab, p_grp, preprocess="residual").auc,
        core_lr_auc(u_img, u_lab, u_grp, preprocess="residual").auc,
        grouped_cv_auc(ring_features(raw_robust(p_img), r_in, r_out), p_lab, p_grp).auc,
        share,
        counts,
        len(p_img),
        n_lrgs,
        str(options.get("sources", "sersic")),
        int(seed),
    )


def misses(rep: RealismReport) -> list[str]:
    """The measurements outside the target (AUC ± 0.05, shares ± 5 points of the survey's)."""
    out = [k for k in AUC_KEYS if abs(getattr(rep, k) - SURVEY[k]) > AUC_TOLERANCE]
    out += [
        f"share θ_E {name}"
        for name, v, s in zip(BIN_NAMES, rep.core_share, SURVEY_CORE_SHARE)
        if not abs(v - s) <= SHARE_TOLERANCE
    ]
    return out


def target_distance(rep: RealismReport) -> float:
    """Mean over the ten figures of |simulated − survey| / tolerance (1 = on the target's edge).

    The single number by which two simulator settings are compared; empty θ_E bins are skipped.
    """
    parts = [abs(getattr(rep, k) - SURVEY[k]) / AUC_TOLERANCE for k in AUC_KEYS]
    parts += [abs(v - s) / SHARE_TOLERANCE for v, s in zip(rep.core_share, SURVEY_CORE_SHARE) if np.isfinite(v)]
    return float(np.mean(parts))


AUC_NAMES = {
    "paired_raw": "core-LR AUC, paired, raw",
    "unpaired_raw": "core-LR AUC, unpaired, raw",
    "paired_residual": "core-LR AUC, paired, residual",
    "unpaired_residual": "core-LR AUC, unpaired, residual",
    "arc_annulus": "arc-annulus LR AUC, paired, raw",
}
BIN_NAMES = ("< 0.75", "0.75–1", "1–1.5", "1.5–2", "≥ 2")


def format_report(*reports: RealismReport) -> str:
    """Markdown table of one or more reports side by side, next to the survey's numbers."""
    head = " | ".join(f"{r.sources}, seed {r.seed}" for r in reports)
    lines = [f"| measurement | {head} | survey (DR10) |", "|---" * (len(reports) + 2) + "|"]

    def mark(ok):
        return "" if ok else " ✗"

    for key in AUC_KEYS:
        cells = " | ".join(
            f"{getattr(r, key):.3f}{mark(abs(getattr(r, key) - SURVEY[key]) <= AUC_TOLERANCE)}" for r in reports
        )
        lines.append(f"| {AUC_NAMES[key]} | {cells} | {SURVEY[key]:.3f} |")
    for i, (name, s) in enumerate(zip(BIN_NAMES, SURVEY_CORE_SHARE)):
        cells = " | ".join(
            f"{100 * r.core_share[i]:.1f}%{mark(abs(r.core_share[i] - s) <= SHARE_TOLERANCE)} (n={r.core_share_n[i]})"
            for r in reports
        )
        lines.append(f"| arc flux share r < 5 px, θ_E {name}″ | {cells} | {100 * s:.1f}% |")
    cells = " | ".join(f"{len(misses(r))} / {target_distance(r):.2f}" for r in reports)
    lines.append(f"| figures outside the target / mean distance in tolerances | {cells} | 0 / 0 |")
    lines.append("")
    lines.append("✗: outside the target (AUC ± 0.05, share ± 5 points of the survey's).")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=2000, help="LRGs per run. Default: %(default)r")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="Default: 0 1")
    parser.add_argument(
        "--sources",
        nargs="+",
        default=["sersic", "hdf"],
        metavar="sersic|hdf|PATH",
        help="source light of each column (see `shortcutgates simulate --sources`). Default: sersic hdf",
    )
    parser.add_argument(
        "--source-size",
        nargs="+",
        default=["prior"],
        choices=["prior", "native"],
        help="size of library galaxies: scaled to the drawn R_e, or their own (each "
        "value gives its own columns). Default: prior",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the reports as JSON lines here")
    args = parser.parse_args(argv)
    runs = [(s, z) for s in args.sources for z in (["prior"] if s == "sersic" else args.source_size)]
    reports = []
    for sources, size in runs:
        for seed in args.seeds:
            rep = measure(args.n_samples, seed, progress=True, sources=sources, source_size=size)
            rep = rep._replace(sources=sources if size == "prior" else f"{sources} ({size} size)")
            reports.append(rep)
            print(f"done: sources {sources}, seed {seed}: misses {misses(rep) or 'none'}", file=sys.stderr, flush=True)
            if args.json:
                with open(args.json, "a") as fh:
                    fh.write(json.dumps(rep._asdict()) + "\n")
    print(format_report(*reports))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
