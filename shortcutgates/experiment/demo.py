"""``shortcutgates demo``: the whole path on simulated data, ending with the E1–E4 table.

Simulate paired LRG stamps with injected arcs, build paired and unpaired manifests (and the E5
recipe's unpaired manifest with hard negatives), train the four configurations of :data:`shortcutgates.experiment.params.CONFIGURATIONS` on each, run the gates and
write the report — :func:`shortcutgates.experiment.run.run_experiment` with defaults sized for a
laptop (:data:`DEMO`; measured 4.1 minutes wall on an idle 2-core machine with three configurations;
with E5's fourth, its extra build, data gates and training, not re-measured). Progress goes to stderr throughout; the table and
the report path go to stdout at the end. Re-running with the same ``--out`` reuses the simulated
data and the finished checkpoints.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shortcutgates.model.network import ModelConfig
from shortcutgates.experiment.params import ExperimentParams
from shortcutgates.experiment.run import run_experiment
from shortcutgates.experiment.stages import Timer

DEMO = dict(
    n_lrgs=2000,
    epochs=6,
    injections_per_lrg=(1, 2),
    n_boot=500,
    batch_size=64,
    train_options={"model": ModelConfig(width=16, blocks=(1, 1, 1))},
)
"""Demo sizes: 2000 LRGs (the survey team's probe sample; one positive each after the build), a 3-stage
ResNet with one block per stage and 16 base channels, 6 epochs, 500 LRG-bootstrap resamples per
interval. Measured: 4.1 minutes on an idle 2-core machine (README), before E5 added a configuration
(not re-measured: docs/experiment.md#e5)."""


def demo_params(
    out: Path, *, n_lrgs: int | None = None, epochs: int | None = None, seed: int = 0, progress: bool = True
) -> ExperimentParams:
    """The demo's :class:`~shortcutgates.experiment.params.ExperimentParams` (``None`` keeps the default)."""
    kw = dict(DEMO)
    if n_lrgs is not None:
        kw["n_lrgs"] = n_lrgs
    if epochs is not None:
        kw["epochs"] = epochs
    return ExperimentParams(out=Path(out), seed=seed, progress=progress, **kw)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        default=Path("shortcutgates-demo"),
        help="output directory. Default: %(default)s",
    )
    parser.add_argument(
        "--n-lrgs", metavar="N", type=int, default=None, help=f"simulated LRGs. Default: {DEMO['n_lrgs']}"
    )
    parser.add_argument(
        "--epochs", metavar="E", type=int, default=None, help=f"training epochs. Default: {DEMO['epochs']}"
    )
    parser.add_argument("--seed", metavar="S", type=int, default=0, help="seed. Default: %(default)r")


def run(args: argparse.Namespace) -> int:
    from shortcutgates.experiment.report import terminal_table

    params = demo_params(args.out, n_lrgs=args.n_lrgs, epochs=args.epochs, seed=args.seed)
    print(
        f"shortcutgates demo: {params.n_lrgs} simulated LRGs, {params.epochs} epochs, "
        f"{len(params.configs)} configurations x (paired, unpaired) -> {params.out}",
        file=sys.stderr,
    )
    timer = Timer()
    argv = " ".join(sys.argv[2:]) if sys.argv[1:2] == ["demo"] else ""
    results = run_experiment(params, command=f"shortcutgates demo {argv}".strip(), timer=timer)
    print(terminal_table(results))
    print(
        f"\nwall time {timer.total() / 60:.1f} min (CPU {timer.cpu() / 60:.1f} min); "
        f"stage times in {params.out / 'timings.json'}"
    )
    print(f"report: {params.out / 'report.md'}\n        {params.out / 'report.html'}")
    return 0
