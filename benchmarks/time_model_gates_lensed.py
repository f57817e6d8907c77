"""Wall time and inference passes of the model gates on a 4000-sample toy manifest (issue 19's check).

Run once on the code before and after a change, e.g.::

    OMP_NUM_THREADS=1 PYTHONPATH=/tmp/sg-old python benchmarks/time_model_gates_lensed.py old
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/time_model_gates_lensed.py new

``SHORTCUTGATES_BENCH_DIR`` may name a built manifest instead (e.g. ``shortcutgates build`` of a simulated
input: its ``test_paired`` pairs have per-row PSFs). Prints the lensing split's share (issue 21).
"""

import os
import sys
import time
from pathlib import Path

from shortcutgates.gates.registry import GateConfig, GateContext, gate_cases, run_case
from shortcutgates.gates.synthetic import ring_morphology_score

M = Path(os.environ.get("SHORTCUTGATES_BENCH_DIR", "/tmp/shortcutgates_bench_lensed"))


def main(label: str) -> None:
    if not (M / "part-0000.parquet").exists() and not (M / "manifest.parquet").exists():
        from shortcutgates.gates.synthetic import ToySpec, make_rows, write_manifest

        rows = make_rows(
            ToySpec(n_lrgs=int(4000 / 1.1), core_fraction=0.3, theta_e_arcsec=(1.2, 2.6), lensed=True, seed=0)
        )
        write_manifest(rows, M)
        print("manifest rows", len(rows))
    split = _time_the_split()
    ctx = GateContext(M, config=GateConfig(), score_fn=ring_morphology_score)
    cases = [c for c in gate_cases(ctx) if "model" in c.needs]
    t0, per = time.perf_counter(), {}
    for c in cases:
        t = time.perf_counter()
        run_case(ctx, c)
        per[c.gate] = per.get(c.gate, 0) + time.perf_counter() - t
    print(
        label,
        f"model gates wall {time.perf_counter() - t0:.1f} s",
        "passes",
        ctx.n_inference_passes,
        {k: round(v, 1) for k, v in per.items()},
        f"lensing split of {split['pairs']} pairs: {split['cpu']:.2f} s CPU, {split['wall']:.2f} s wall",
    )


def _time_the_split() -> dict:
    """Wrap ``paired.split_lensed_light`` to add up its CPU and wall time (after importing what it imports)."""
    import scipy.fft  # noqa: F401  imported before timing, so the split's time is its own
    import scipy.ndimage  # noqa: F401
    import scipy.signal  # noqa: F401

    import shortcutgates.gates.paired as paired

    out = {"cpu": 0.0, "wall": 0.0, "pairs": 0}
    inner = paired.split_lensed_light

    def timed(*args, **kwargs):
        c, w = time.process_time(), time.perf_counter()
        result = inner(*args, **kwargs)
        out["cpu"] += time.process_time() - c
        out["wall"] += time.perf_counter() - w
        out["pairs"] += len(result.counter)
        return result

    paired.split_lensed_light = timed
    return out


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "run")
