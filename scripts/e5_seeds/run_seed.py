"""One seed of the E5 comparison at the demo's sizes: ``python run_seed.py OUT SEED [N_LRGS] [EPOCHS] [CONFIGS]``.

The demo's parameters (:data:`shortcutgates.experiment.demo.DEMO`: 2000 simulated LRGs, 1-2 injections
each, the 3-stage ResNet of width 16, 6 epochs, 500 LRG-bootstrap resamples) with only the configurations
named in CONFIGS (default ``residual,residual+hn``: the baseline and the E5 recipe; ``residual+hn`` takes
its paired model from ``residual``). Writes ``OUT/results.json`` and the report; re-running resumes.
"""

import sys
from dataclasses import replace
from pathlib import Path

from shortcutgates.experiment.demo import demo_params
from shortcutgates.experiment.run import run_experiment
from shortcutgates.experiment.stages import Timer

out, seed = Path(sys.argv[1]), int(sys.argv[2])
n_lrgs = int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3] else None
epochs = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[4] else None
wanted = (sys.argv[5] if len(sys.argv) > 5 and sys.argv[5] else "residual,residual+hn").split(",")
params = demo_params(out, n_lrgs=n_lrgs, epochs=epochs, seed=seed, progress=True)
configs = tuple(c for c in params.configs if c.name in wanted)
missing = sorted(set(wanted) - {c.name for c in configs})
if missing:
    sys.exit(
        f"e5_seeds: unknown configuration(s) {', '.join(missing)}; "
        f"expected some of {', '.join(c.name for c in params.configs)}"
    )
if any(c.paired_from and c.paired_from not in wanted for c in configs):
    sys.exit("e5_seeds: residual+hn takes its paired model from residual; list residual too")
timer = Timer()
run_experiment(
    replace(params, configs=configs), command=" ".join(["scripts/e5_seeds/run_seed.py"] + sys.argv[1:]), timer=timer
)
print(f"seed {seed}: wall {timer.total() / 60:.1f} min (CPU {timer.cpu() / 60:.1f} min) -> {out}", file=sys.stderr)
