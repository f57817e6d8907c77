#!/usr/bin/env bash
# E5 over seeds: the residual baseline and the hard-negative recipe (residual+hn), trained and gated per
# seed at the demo's sizes, then one table (scripts/e5_seeds/table.py): per seed and configuration the
# primary gates not passed, E2 AUROC, TPR at FPR 1e-2 with its interval, the unseen point source's AUROC.
#
# Usage:  bash scripts/e5_seeds.sh OUT [SEEDS] [FIRST_SEED]
#   demo's size, 5 seeds (seeds 0-4; 2000 LRGs, 6 epochs; three trainings per seed):
#       bash scripts/e5_seeds.sh /tmp/e5 5 0
#   the proposal's size (4000 LRGs):
#       N_LRGS=4000 bash scripts/e5_seeds.sh /tmp/e5_4000 5 0
# Environment: N_LRGS, EPOCHS (default: the demo's), CONFIGS (default residual,residual+hn; add
# raw_robust,residual+dropout for all four). Each seed writes OUT/seedS/ (results.json, report.md) and
# resumes if re-run; the table goes to OUT/e5_table.md and OUT/e5_table.csv.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
OUT=${1:?usage: e5_seeds.sh OUT [SEEDS] [FIRST_SEED]}
SEEDS=${2:-5}
FIRST=${3:-0}
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT"
for ((s = FIRST; s < FIRST + SEEDS; s++)); do
    echo "== seed $s ($(date -u +%H:%M:%S) UTC, load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    python "$HERE/e5_seeds/run_seed.py" "$OUT/seed$s" "$s" "${N_LRGS:-}" "${EPOCHS:-}" "${CONFIGS:-}"
done
python "$HERE/e5_seeds/table.py" "$OUT"
