"""Wall time of all model-gate cases on a 4000-sample *lensed* toy manifest (with injection truth, so the
lensing split runs), old code against new: the manifest is written once by the new code, then each
checkout times the same cases with the same numpy scorer. Not a test (speed is never asserted).

    git worktree add /tmp/sg-old 91b664d
    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python benchmarks/time_model_gates_lensed.py new
    OMP_NUM_THREADS=1 PYTHONPATH=/tmp/sg-old python benchmarks/time_model_gates_lensed.py old
"""
import os, sys, time
from pathlib import Path
M = Path(os.environ.get("SHORTCUTGATES_BENCH_DIR", "/tmp/shortcutgates_bench_lensed"))
if not (M / "part-0000.parquet").exists():
    from shortcutgates.gates.synthetic import ToySpec, make_rows, write_manifest
    rows = make_rows(ToySpec(n_lrgs=int(4000 / 1.1), core_fraction=0.3, theta_e_arcsec=(1.2, 2.6), lensed=True, seed=0))
    write_manifest(rows, M)
    print("manifest rows", len(rows))
from shortcutgates.gates.registry import GateConfig, GateContext, gate_cases, run_case
from shortcutgates.gates.synthetic import ring_morphology_score
ctx = GateContext(M, config=GateConfig(), score_fn=ring_morphology_score)
cases = [c for c in gate_cases(ctx) if "model" in c.needs]
t0 = time.perf_counter(); per = {}
for c in cases:
    t = time.perf_counter(); run_case(ctx, c); per[c.gate] = per.get(c.gate, 0) + time.perf_counter() - t
print(sys.argv[1], "model gates wall %.1f s" % (time.perf_counter() - t0), "passes", ctx.n_inference_passes,
      {k: round(v, 1) for k, v in per.items()})
