"""Loader throughput: decoded stamps/s of the fast npz path and the decoded cache vs the naive loop.

The naive loop is the obvious code: for every row and band, ``np.load(io.BytesIO(blob))[key]``.
Targets (docs/design.md#training, issue 22): >= 5x the naive loop on the first pass on 2 cores
(``decode_stamps`` with threads across stamps and the fastest installed inflate library). Blobs come from the simulator (64x64, realistic
noise, so realistic deflate ratios). Each measurement runs in this process; only the
``threads=2`` one uses a second thread.

Run: ``python -m pytest benchmarks/bench_loader.py --benchmark-only -s``
(``SHORTCUTGATES_BENCH_LRGS`` changes how many simulated LRGs supply blobs; default 40, about 400 rows).
"""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

from shortcutgates.model import dataset as ds
from shortcutgates.data.codec import decode_stamp, decode_stamps
from shortcutgates.data.schema import NPZ_KEYS

N_LRGS = int(os.environ.get("SHORTCUTGATES_BENCH_LRGS", 40))
RATES: dict[str, float] = {}


@pytest.fixture(scope="module")
def blobs():
    from shortcutgates.simulate import simulate_frame

    frame = simulate_frame(N_LRGS, seed=0)
    return list(frame["stamp_npz"]) + list(frame.drop_duplicates(["ra", "dec"])["ctrl_stamp_npz"])


def naive_loop(blobs) -> list:
    return [np.stack([np.load(io.BytesIO(b), allow_pickle=False)[k] for k in NPZ_KEYS]) for b in blobs]


def _measure(benchmark, name, fn, blobs):
    benchmark.pedantic(fn, args=(blobs,), rounds=3, iterations=1, warmup_rounds=1)
    rate = len(blobs) / benchmark.stats.stats.min
    RATES[name] = rate
    benchmark.extra_info.update(stamps_per_s=round(rate), n=len(blobs))
    ratio = rate / RATES["naive"] if "naive" in RATES else float("nan")
    print(f"\n{name}: {rate:,.0f} stamps/s ({ratio:.1f}x naive) over {len(blobs)} stamps")


def test_naive_np_load_per_row_and_band(benchmark, blobs):
    _measure(benchmark, "naive", naive_loop, blobs)


def test_reference_decode_stamp(benchmark, blobs):
    _measure(benchmark, "codec.decode_stamp", lambda bs: [decode_stamp(b) for b in bs], blobs)


def test_fast_decode(benchmark, blobs):
    out = decode_stamps(blobs, threads=1)
    np.testing.assert_array_equal(out.images, np.stack(naive_loop(blobs)))
    assert out.stats.n_fallback == 0
    _measure(
        benchmark,
        "fast zlib decode, stdlib zlib, 1 thread",
        lambda bs: _with_inflate("zlib", lambda: decode_stamps(bs, threads=1).images),
        blobs,
    )


@pytest.mark.parametrize("threads", [1, 2])
def test_fast_decode_best_inflate(benchmark, blobs, threads):
    """The first pass as readers run it: the fastest installed inflate library, threads across stamps.

    Wall time is what the threads change; on a machine whose cores are busy with other work the
    threads cannot run at once, so the printed CPU-time ratio (process time, all threads) is the one
    that survives load; the load average is printed with it."""
    from shortcutgates.data.npz_fast import INFLATE_NAME

    out = decode_stamps(blobs, threads=threads)
    np.testing.assert_array_equal(out.images, np.stack(naive_loop(blobs)))
    _measure(
        benchmark,
        f"fast decode, {INFLATE_NAME}, {threads} thread(s)",
        lambda bs: decode_stamps(bs, threads=threads),
        blobs,
    )
    cpu = _cpu_per_pass(lambda: decode_stamps(blobs, threads=threads))
    naive_cpu = _cpu_per_pass(lambda: naive_loop(blobs))
    benchmark.extra_info.update(cpu_ratio=naive_cpu / cpu, load_average=os.getloadavg())
    print(f"  CPU time: {naive_cpu / cpu:.2f}x naive (process time); load average {os.getloadavg()}")


def _cpu_per_pass(fn, repeats: int = 3) -> float:
    import time

    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def _with_inflate(name, fn):
    import shortcutgates.data.npz_fast as npz_fast

    previous = npz_fast._inflate
    npz_fast._inflate = npz_fast.inflate_module(name)[1]
    try:
        return fn()
    finally:
        npz_fast._inflate = previous


def test_decoded_cache_epoch(benchmark, blobs, tmp_path):
    """An epoch after the first: the preprocessed stamps are read from the memory-mapped cache."""
    import pandas as pd

    frame = pd.DataFrame({"label": 0, "split": "train", "ra": 1.0, "dec": 1.0, "image_npz": blobs})
    data = ds.StampDataset(frame, "raw_robust", cache_dir=tmp_path, key="bench")
    data = ds.StampDataset(frame, "raw_robust", cache_dir=tmp_path, key="bench")  # memory-mapped now
    assert isinstance(data.images, np.memmap)
    _measure(benchmark, "decoded cache (memmap)", lambda bs: np.array(data.images[np.arange(len(bs))]), blobs)
