"""Scale benchmark of ``shortcutgates build``: 1.2 million metadata rows in 1000 parquet files.

The input is metadata only (the blob columns exist, as the format requires, but are null), since
the build reads no blob. Time and peak memory of the build run in a fresh subprocess, so the
peak resident set size is the build's own; CPU seconds are printed beside wall seconds because
the wall time suffers when other work shares the cores. Targets (docs/design.md#manifest): <= 60 s and <= 2 GB.

Run: ``python -m pytest benchmarks/bench_build.py --benchmark-only -s``
(``SHORTCUTGATES_BENCH_ROWS`` / ``SHORTCUTGATES_BENCH_FILES`` change the size).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shortcutgates.schema import CONDITIONS, INJECTION_TRUTH

N_ROWS = int(os.environ.get("SHORTCUTGATES_BENCH_ROWS", 1_200_000))
N_FILES = int(os.environ.get("SHORTCUTGATES_BENCH_FILES", 1000))


def write_metadata(directory, n_rows: int, n_files: int, seed: int = 0) -> None:
    """Paired-format metadata: LRGs with 2-18 injections each, spread over split directories."""
    rng = np.random.default_rng(seed)
    inj = rng.integers(2, 19, n_rows // 2)
    inj = inj[: np.searchsorted(np.cumsum(inj), n_rows) + 1]
    lrg = np.repeat(np.arange(len(inj)), inj)[:n_rows]
    n_lrg = lrg.max() + 1
    ra_c = rng.uniform(0, 360, n_lrg)
    dec_c = np.degrees(np.arcsin(rng.uniform(-0.3, 0.9, n_lrg)))
    jitter = rng.normal(0, 1e-6, (2, n_rows))
    cols = {"ra": (ra_c[lrg] + jitter[0]) % 360, "dec": dec_c[lrg] + jitter[1]}
    cols.update({c: rng.normal(0, 1, n_rows) for c in INJECTION_TRUTH})
    cols.update({c: rng.normal(0, 1, n_lrg)[lrg] for c in CONDITIONS})
    cols["task_id"] = np.arange(n_rows, dtype=np.int32)
    cols["cutout_ok"] = (rng.uniform(size=n_rows) > 0.001).astype(np.int32)
    table = pa.table(cols)
    table = table.append_column("brickname", pa.array([f"{int(r * 10):04d}p{int(d * 10 + 900):04d}" for r, d in
                                                       zip(cols["ra"], cols["dec"])]))
    for blob in ("stamp_npz", "ctrl_stamp_npz"):
        table = table.append_column(blob, pa.nulls(n_rows, pa.binary()))
    split = np.array(["train", "val", "test"])[np.searchsorted([0.7, 0.85], rng.uniform(size=n_lrg))]
    file_of = lrg % n_files  # an LRG's rows stay in one file, so input splits never straddle
    order = np.argsort(file_of, kind="stable")
    bounds = np.searchsorted(file_of[order], np.arange(n_files + 1))
    for i in range(n_files):
        chunk = order[bounds[i]:bounds[i + 1]]
        sub = directory / split[lrg[chunk[0]]] if len(chunk) else directory
        sub.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.take(pa.array(chunk)), sub / f"part-{i:05d}.parquet")


_BUILD = """
import json, resource, sys, time
t0 = time.perf_counter()
from shortcutgates.build import build_manifest
s = build_manifest(sys.argv[1], sys.argv[2], mode=sys.argv[3], seed=1, match=tuple(filter(None, sys.argv[4].split(','))),
                   progress=False)
u = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": time.perf_counter() - t0, "cpu_seconds": u.ru_utime + u.ru_stime, "rows": s.n_rows,
                  "peak_rss_mb": u.ru_maxrss / 1024}))
"""


@pytest.fixture(scope="module")
def metadata_tree(tmp_path_factory):
    directory = tmp_path_factory.mktemp("paired_metadata")
    write_metadata(directory, N_ROWS, N_FILES)
    return directory


@pytest.mark.parametrize("mode,match", [("unpaired", ""), ("unpaired", "psfsize_r,psfdepth_r"), ("paired", "")],
                         ids=["unpaired", "unpaired-matched", "paired"])
def test_build_scale(benchmark, metadata_tree, tmp_path, mode, match):
    def build():
        done = subprocess.run([sys.executable, "-c", _BUILD, str(metadata_tree), str(tmp_path / "out"), mode, match],
                              check=True, capture_output=True, text=True)
        return json.loads(done.stdout.strip().splitlines()[-1])

    result = benchmark.pedantic(build, rounds=1, iterations=1)
    benchmark.extra_info.update(result, input_rows=N_ROWS, input_files=N_FILES)
    print(f"\nbuild {mode} {match or '-'}: {N_ROWS} rows / {N_FILES} files -> {result['rows']} manifest rows in "
          f"{result['seconds']:.1f} s wall ({result['cpu_seconds']:.1f} s CPU), peak RSS {result['peak_rss_mb']:.0f} MB")
    assert result["rows"] > 0


N_HN_LRGS = int(os.environ.get("SHORTCUTGATES_BENCH_HN_LRGS", "2000"))
HN_INPUT = os.environ.get("SHORTCUTGATES_BENCH_HN_INPUT")
"""A paired input with injection truth and per-band PSF (e.g. ``shortcutgates simulate --n-lrgs 2000
--injections-per-lrg 1:2``), so that the ``core`` light is split by lensing; by default a generated
catalogue without that truth, whose core splits fall back to the 5-px radius split."""
HN_ROUNDS = int(os.environ.get("SHORTCUTGATES_BENCH_HN_ROUNDS", "2"))

_BUILD_HN = """
import json, sys, time
from shortcutgates.build import build_manifest
kinds = sys.argv[3]
t0, c0 = time.perf_counter(), time.process_time()
s = build_manifest(sys.argv[1], sys.argv[2] + (kinds.replace(",", "-") or "plain"), mode="unpaired", seed=1,
                   progress=False, hard_negatives=kinds, shuffle_arcsec=None if sys.argv[4] else 1.3)
print(json.dumps({"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0, "rows": s.n_rows}))
"""
"""One build in a fresh process (no cache carried from one build to the next)."""


def test_build_hard_negatives_cost(benchmark, tmp_path):
    """Plain vs ``--hard-negatives core,shuffle`` build of a paired input with blobs, interleaved rounds.

    Both builds decode one control per LRG (the measured LRG properties); the hard-negative build also
    reads and decodes its hosts' controls and its donors' pairs, splits each donor's light once (by
    lensing where the input has the truth) and writes one image per constructed row. The 1.2 M-row
    metadata tree above has null blobs, so nothing can be constructed there.
    """
    from shortcutgates.testing import generate_catalog, write_catalog

    if HN_INPUT:
        source = HN_INPUT
    else:
        cat = generate_catalog(np.random.default_rng(0).integers(1, 4, N_HN_LRGS), seed=1, jitter_arcsec=0.1,
                               image_size=64)
        write_catalog(cat.frame.assign(cutout_ok=np.int32(1)), tmp_path / "in", n_files=8)
        source = str(tmp_path / "in")

    def build():
        out: dict = {}
        for _ in range(HN_ROUNDS):  # interleaved, so both builds see the same load
            for kinds in ("", "core,shuffle"):
                done = subprocess.run([sys.executable, "-c", _BUILD_HN, source, str(tmp_path / "out-"), kinds,
                                       "psf" if HN_INPUT else ""], check=True, capture_output=True, text=True)
                out.setdefault(kinds or "plain", []).append(json.loads(done.stdout.strip().splitlines()[-1]))
        return out

    result = benchmark.pedantic(build, rounds=1, iterations=1)
    benchmark.extra_info.update(result, input=source)
    plain, hard = result["plain"], result["core,shuffle"]
    ratio = [h["cpu_seconds"] / p["cpu_seconds"] for p, h in zip(plain, hard)]
    wall = [h["seconds"] / p["seconds"] for p, h in zip(plain, hard)]
    extra = hard[0]["rows"] - plain[0]["rows"]
    print(f"\nbuild {source}: plain {plain[0]['rows']} rows, core,shuffle {hard[0]['rows']} rows ({extra} constructed), "
          f"{HN_ROUNDS} interleaved rounds, load {os.getloadavg()[0]:.1f}:")
    for p, h, rc, rw in zip(plain, hard, ratio, wall):
        print(f"  plain {p['seconds']:.1f} s wall ({p['cpu_seconds']:.2f} s CPU); core,shuffle {h['seconds']:.1f} s wall "
              f"({h['cpu_seconds']:.2f} s CPU): {rc:.2f}x CPU, {rw:.2f}x wall, "
              f"{1e3 * (h['cpu_seconds'] - p['cpu_seconds']) / max(extra, 1):.2f} ms CPU per constructed row")
    assert hard[0]["rows"] > plain[0]["rows"]
