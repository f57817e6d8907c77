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

from shortcutgates.data.schema import CONDITIONS, INJECTION_TRUTH

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
    table = table.append_column(
        "brickname", pa.array([f"{int(r * 10):04d}p{int(d * 10 + 900):04d}" for r, d in zip(cols["ra"], cols["dec"])])
    )
    for blob in ("stamp_npz", "ctrl_stamp_npz"):
        table = table.append_column(blob, pa.nulls(n_rows, pa.binary()))
    split = np.array(["train", "val", "test"])[np.searchsorted([0.7, 0.85], rng.uniform(size=n_lrg))]
    file_of = lrg % n_files  # an LRG's rows stay in one file, so input splits never straddle
    order = np.argsort(file_of, kind="stable")
    bounds = np.searchsorted(file_of[order], np.arange(n_files + 1))
    for i in range(n_files):
        chunk = order[bounds[i] : bounds[i + 1]]
        sub = directory / split[lrg[chunk[0]]] if len(chunk) else directory
        sub.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.take(pa.array(chunk)), sub / f"part-{i:05d}.parquet")


_BUILD = """
import json, resource, sys, time
t0 = time.perf_counter()
from shortcutgates.data.build import build_manifest
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


@pytest.mark.parametrize(
    "mode,match",
    [("unpaired", ""), ("unpaired", "psfsize_r,psfdepth_r"), ("paired", "")],
    ids=["unpaired", "unpaired-matched", "paired"],
)
def test_build_scale(benchmark, metadata_tree, tmp_path, mode, match):
    def build():
        done = subprocess.run(
            [sys.executable, "-c", _BUILD, str(metadata_tree), str(tmp_path / "out"), mode, match],
            check=True,
            capture_output=True,
            text=True,
        )
        return json.loads(done.stdout.strip().splitlines()[-1])

    result = benchmark.pedantic(build, rounds=1, iterations=1)
    benchmark.extra_info.update(result, input_rows=N_ROWS, input_files=N_FILES)
    print(
        f"\nbuild {mode} {match or '-'}: {N_ROWS} rows / {N_FILES} files -> {result['rows']} manifest rows in "
        f"{result['seconds']:.1f} s wall ({result['cpu_seconds']:.1f} s CPU), peak RSS {result['peak_rss_mb']:.0f} MB"
    )
    assert result["rows"] > 0


N_HN_LRGS = int(os.environ.get("SHORTCUTGATES_BENCH_HN_LRGS", "2000"))
HN_INPUT = os.environ.get("SHORTCUTGATES_BENCH_HN_INPUT")
"""A paired input with injection truth and per-band PSF (e.g. ``shortcutgates simulate --n-lrgs 2000
--injections-per-lrg 1:2``), so that the ``core`` light is split by lensing; by default a generated
catalogue without that truth, whose core splits fall back to the 5-px radius split."""
HN_ROUNDS = int(os.environ.get("SHORTCUTGATES_BENCH_HN_ROUNDS", "2"))
HN_OLD_CODE = os.environ.get("SHORTCUTGATES_BENCH_OLD_CODE")
"""A checkout of other code (e.g. ``git worktree add --detach /tmp/old main``): its plain and hard-negative
builds run interleaved with this checkout's, in the same rounds, so both see the same load."""
HN_KINDS = os.environ.get("SHORTCUTGATES_BENCH_HN_KINDS", "core,shuffle")

_BUILD_HN = """
import json, sys, time
from shortcutgates.data.build import build_manifest
kinds = sys.argv[3]
t0, c0 = time.perf_counter(), time.process_time()
s = build_manifest(sys.argv[1], sys.argv[2] + (kinds.replace(",", "-") or "plain"), mode="unpaired", seed=1,
                   progress=False, hard_negatives=kinds, shuffle_arcsec=None if sys.argv[4] else 1.3)
import shortcutgates
print(json.dumps({"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0, "rows": s.n_rows,
                  "code": shortcutgates.__file__}))
"""
"""One build in a fresh process (no cache carried from one build to the next)."""


def _hn_codes() -> dict:
    """``{label: PYTHONPATH}`` of the code whose builds are timed: this checkout, and the old code if given."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return {"new": here, "old": HN_OLD_CODE} if HN_OLD_CODE else {"this": here}


def test_build_hard_negatives_cost(benchmark, tmp_path):
    """Plain vs ``--hard-negatives core,shuffle`` build of a paired input with blobs, interleaved rounds.

    Both builds decode one control per LRG (the measured LRG properties); the hard-negative build also
    reads and decodes its hosts' controls and its donors' pairs, splits each donor's light once (by
    lensing where the input has the truth) and writes one image per constructed row. The 1.2 M-row
    metadata tree above has null blobs, so nothing can be constructed there. With
    ``SHORTCUTGATES_BENCH_OLD_CODE`` the old code's two builds run in the same rounds (old and new
    alternate), and the outputs' bytes are compared.
    """
    from shortcutgates.testing import generate_catalog, write_catalog

    if HN_INPUT:
        source = HN_INPUT
    else:
        cat = generate_catalog(
            np.random.default_rng(0).integers(1, 4, N_HN_LRGS), seed=1, jitter_arcsec=0.1, image_size=64
        )
        write_catalog(cat.frame.assign(cutout_ok=np.int32(1)), tmp_path / "in", n_files=8)
        source = str(tmp_path / "in")
    codes = _hn_codes()

    def build():
        out: dict = {}
        for _ in range(HN_ROUNDS):  # interleaved, so all builds see the same load
            for label, path in codes.items():
                for kinds in ("", HN_KINDS):
                    env = dict(os.environ, PYTHONPATH=path)  # and cwd: `python -c` puts the cwd first on sys.path
                    done = subprocess.run(
                        [
                            sys.executable,
                            "-c",
                            _BUILD_HN,
                            source,
                            str(tmp_path / f"{label}-"),
                            kinds,
                            "psf" if HN_INPUT else "",
                        ],
                        check=True,
                        capture_output=True,
                        text=True,
                        env=env,
                        cwd=path,
                    )
                    out.setdefault(f"{label} {kinds or 'plain'}", []).append(
                        json.loads(done.stdout.strip().splitlines()[-1])
                    )
        return out

    load_before = os.getloadavg()[0]
    result = benchmark.pedantic(build, rounds=1, iterations=1)
    benchmark.extra_info.update(result, input=source)
    print(
        f"\nbuild {source}: {HN_ROUNDS} interleaved rounds, load {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after (1-min averages):"
    )
    for label in codes:
        plain, hard = result[f"{label} plain"], result[f"{label} {HN_KINDS}"]
        extra = hard[0]["rows"] - plain[0]["rows"]
        assert all(r["code"].startswith(codes[label]) for r in plain + hard), "a build imported the wrong code"
        print(
            f" {label} code ({codes[label]}): plain {plain[0]['rows']} rows, {HN_KINDS} {hard[0]['rows']} rows ({extra} constructed)"
        )
        for p, h in zip(plain, hard):
            print(
                f"  plain {p['seconds']:.1f} s wall ({p['cpu_seconds']:.2f} s CPU); {HN_KINDS} {h['seconds']:.1f} s "
                f"wall ({h['cpu_seconds']:.2f} s CPU): {h['cpu_seconds'] / p['cpu_seconds']:.2f}x CPU, "
                f"{h['seconds'] / p['seconds']:.2f}x wall, "
                f"{1e3 * (h['cpu_seconds'] - p['cpu_seconds']) / max(extra, 1):.2f} ms CPU per constructed row"
            )
        cpu = np.array([h["cpu_seconds"] / p["cpu_seconds"] for p, h in zip(plain, hard)])
        wall = np.array([h["seconds"] / p["seconds"] for p, h in zip(plain, hard)])
        print(
            f"  {label}: median {np.median(cpu):.2f}x CPU (range {cpu.min():.2f}-{cpu.max():.2f}), median "
            f"{np.median(wall):.2f}x wall (range {wall.min():.2f}-{wall.max():.2f}) over {len(cpu)} rounds"
        )
        assert hard[0]["rows"] > plain[0]["rows"]
    if HN_OLD_CODE:
        for kinds in ("plain", HN_KINDS.replace(",", "-")):
            same = _same_files(tmp_path / f"old-{kinds}", tmp_path / f"new-{kinds}")
            print(f" {kinds} build, old vs new code: {same}")


def _same_files(a, b) -> str:
    """'identical bytes' or the files that differ between two output directories."""
    from pathlib import Path

    files = sorted(p.relative_to(a) for p in Path(a).rglob("*") if p.is_file())
    other = sorted(p.relative_to(b) for p in Path(b).rglob("*") if p.is_file())
    if files != other:
        return f"different file lists ({len(files)} vs {len(other)} files)"
    differ = [str(f) for f in files if (Path(a) / f).read_bytes() != (Path(b) / f).read_bytes()]
    return "identical bytes" if not differ else f"{len(differ)} of {len(files)} files differ: {', '.join(differ[:4])}"
