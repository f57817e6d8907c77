"""CPU time of the lensing split (``perturb.split_lensed_light``) per pair, this code and, interleaved, an old checkout.

The split is what the model gates' paired sets and ``build --hard-negatives core,shuffle`` spend most
of their extra time on. Input: the pairs of a paired input with injection truth and per-band PSF
(``SHORTCUTGATES_BENCH_SPLIT_INPUT``, e.g. the ``test`` directory of ``shortcutgates simulate
--n-lrgs 2000 --seed 0 --injections-per-lrg 1:2``), by default ``simulate_frame(150, 0)``.
``SHORTCUTGATES_BENCH_OLD_CODE``: a checkout whose ``gates/perturb.py`` is timed in the same rounds
(old and new alternate), and whose split must give the same bytes.

Run: ``python -m pytest benchmarks/bench_lensing_split.py --benchmark-only -s``
"""

from __future__ import annotations

import importlib.util
import os
import time

import numpy as np

from shortcutgates.gates import perturb

SPLIT_INPUT = os.environ.get("SHORTCUTGATES_BENCH_SPLIT_INPUT")
OLD_CODE = os.environ.get("SHORTCUTGATES_BENCH_OLD_CODE")
ROUNDS = int(os.environ.get("SHORTCUTGATES_BENCH_SPLIT_ROUNDS", "3"))


def _pairs():
    from shortcutgates.data.codec import decode_stamps

    if SPLIT_INPUT:
        from shortcutgates.data.io import read_paired

        frame = read_paired(SPLIT_INPUT).frame
    else:
        from shortcutgates.simulate.generator import simulate_frame

        frame = simulate_frame(150, 0, injections_per_lrg=(1, 2))
    d = decode_stamps(list(frame["stamp_npz"])).images - decode_stamps(list(frame["ctrl_stamp_npz"])).images
    return d, frame.reset_index(drop=True), frame[list(perturb.PSF_COLUMNS)].to_numpy(np.float64)


def _old_perturb():
    """The old checkout's ``gates/perturb.py``, loaded beside this package (its relative imports resolve here)."""
    spec = importlib.util.spec_from_file_location(
        "shortcutgates.gates._perturb_old", os.path.join(OLD_CODE, "shortcutgates", "gates", "perturb.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lensing_split_cost(benchmark):
    d, frame, fwhm = _pairs()
    codes = {"new": perturb, "old": _old_perturb()} if OLD_CODE else {"this": perturb}
    for module in codes.values():  # warm: imports, thread pool
        module.split_lensed_light(d[:8], frame.iloc[:8], fwhm[:8])

    def run():
        out: dict = {}
        for _ in range(ROUNDS):
            for label, module in codes.items():
                cache = getattr(module, "_moffat", None)
                if cache is not None:
                    cache.cache_clear()  # the old code's kernel cache: each round starts cold
                c, w = time.process_time(), time.perf_counter()
                split = module.split_lensed_light(d, frame, fwhm)
                out.setdefault(label, []).append((time.process_time() - c, time.perf_counter() - w))
                out[label + " split"] = split
        return out

    result = benchmark.pedantic(run, rounds=1, iterations=1)
    print(f"\nlensing split of {len(d)} pairs, {ROUNDS} interleaved rounds, load {os.getloadavg()[0]:.1f}:")
    for label in codes:
        cpu = ", ".join(f"{1e3 * c / len(d):.2f}" for c, _ in result[label])
        wall = ", ".join(f"{1e3 * w / len(d):.2f}" for _, w in result[label])
        print(f"  {label}: {cpu} ms CPU a pair (wall {wall} ms)")
    if OLD_CODE:
        new, old = result["new split"], result["old split"]
        same = all(np.array_equal(a, b, equal_nan=True) for a, b in zip(new[:2], old[:2]))
        print(f"  counter and arc bytes identical: {same}; same decisions: {np.array_equal(new.reason, old.reason)}")
        assert np.array_equal(new.reason, old.reason)
