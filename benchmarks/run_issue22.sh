#!/usr/bin/env bash
# Every acceptance ratio of issue 22, measured in one go, then printed as one table.
#
#   bash benchmarks/run_issue22.sh [SCRATCH]        (default SCRATCH: /tmp/issue22-bench)
#
# Run it on an idle machine (nothing else on the cores): the targets are wall-time ratios on 2 cores.
# It builds, once, under SCRATCH: a checkout of the baseline (SHORTCUTGATES_BASELINE, default c62729a:
# the code before this work), a simulated manifest of ~3900 rows (3600 LRGs, one injection each,
# unpaired build) and, when the survey team's public code is at hand (SHORTCUTGATES_SURVEY_REPO, a git
# clone of aditrivaishnavi/toy_glens_kinematics), their unpaired_experiment package. Then:
#   data gates, this tree vs the baseline (reports compared: identical)   bench_data_gates_old_new.py
#   a later checkpoint vs the model gates alone (data-gate cache warm)     bench_gate_cache.py
#   10 checkpoints vs 1                                                   bench_gate_many.py
#   first-pass decode vs the naive np.load loop                           bench_loader.py
#   simulate / calibrate --workers 2 vs 1 (same bytes / same table)       bench_workers.py
#   all our data gates vs the survey team's two probes, same rows          bench_survey_team.py
# Smaller, for a trial: SHORTCUTGATES_BENCH_SIM_LRGS (default 3600), SHORTCUTGATES_BENCH_N, _LRGS, _MODELS, _REPEATS.
# The calibration uses SHORTCUTGATES_BENCH_PROFILE (default: tiny; the issue names quick, ~10 min a side).
# Each benchmark's numbers land in SCRATCH/<name>.json (pytest-benchmark extra_info); the table is
# printed by benchmarks/issue22_table.py.
set -euo pipefail
ROOT=${SHORTCUTGATES_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
SCRATCH=${1:-/tmp/issue22-bench}
BASELINE=${SHORTCUTGATES_BASELINE:-c62729a}
export SHORTCUTGATES_BENCH_PROFILE=${SHORTCUTGATES_BENCH_PROFILE:-tiny}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=$ROOT
mkdir -p "$SCRATCH"
cd "$SCRATCH"

[ -d "$SCRATCH/old" ] || git -C "$ROOT" worktree add --detach "$SCRATCH/old" "$BASELINE"
if [ ! -d "$SCRATCH/manifest" ]; then
  python -m shortcutgates.cli simulate --out "$SCRATCH/sim" --n-lrgs "${SHORTCUTGATES_BENCH_SIM_LRGS:-3600}" --seed 1 --injections-per-lrg 1:1 --no-progress
  python -m shortcutgates.cli build --input "$SCRATCH/sim" --out "$SCRATCH/manifest" --mode unpaired --seed 0 --no-progress
fi
SURVEY_REPO=${SHORTCUTGATES_SURVEY_REPO:-/work/.mirror/aditrivaishnavi+toy_glens_kinematics/repo}
if [ ! -d "$SCRATCH/survey/unpaired_experiment" ] && git -C "$SURVEY_REPO" rev-parse HEAD >/dev/null 2>&1; then
  mkdir -p "$SCRATCH/survey/unpaired_experiment"
  for f in __init__ constants utils preprocess gates run_gates; do
    git -C "$SURVEY_REPO" show "HEAD:dark_halo_scope/planb/unpaired_experiment/$f.py" > "$SCRATCH/survey/unpaired_experiment/$f.py"
  done
fi

bench() {  # bench FILE NAME [pytest args]: one benchmark file, its numbers into SCRATCH/NAME.json
  local file=$1 name=$2; shift 2
  echo "== $file ($(uptime))"
  python -m pytest "$ROOT/benchmarks/$file" --benchmark-only -s -q -p no:cacheprovider \
    --benchmark-json "$SCRATCH/$name.json" "$@" || echo "!! $file failed (exit $?)"
}
SHORTCUTGATES_OLD_TREE=$SCRATCH/old SHORTCUTGATES_BENCH_MANIFEST=$SCRATCH/manifest bench bench_data_gates_old_new.py data_gates
bench bench_gate_cache.py gate_cache
bench bench_gate_many.py gate_many
bench bench_loader.py loader -k "naive or best_inflate"
bench bench_workers.py workers
if [ -d "$SCRATCH/survey/unpaired_experiment" ]; then
  SHORTCUTGATES_SURVEY_CODE=$SCRATCH/survey SHORTCUTGATES_BENCH_MANIFEST=$SCRATCH/manifest bench bench_survey_team.py survey
fi
echo "== done ($(uptime))"
python "$ROOT/benchmarks/issue22_table.py" "$SCRATCH"
