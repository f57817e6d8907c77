"""Resources: peak memory of the data gates over a 50,000-row manifest (target < 4 GB).

Two manifests of ``SHORTCUTGATES_BENCH_ROWS`` rows (default 50,000), 64 × 64 stamps:

* ``pointer``: what ``shortcutgates build`` writes by default — rows point into paired source
  files (``stamp_npz`` / ``ctrl_stamp_npz``, 2000 rows per file, as the simulator writes them);
* ``inline``: a hand-written manifest carrying every blob in ``image_npz`` (2.2 GB of blobs), in
  row groups of 4096 rows;
* ``inline_one_group``: the same rows as one row group, as ``pandas.to_parquet`` or
  ``build --inline`` write 50,000 rows (Parquet reads a row group as a unit unless streamed).

Every data-gate case (``data_integrity`` decodes all 50,000 rows; the probes use the capped
per-split samples) runs in a fresh subprocess, whose peak resident set size and wall/CPU seconds
are reported in ``extra_info`` and on stdout. The peak is the child's ``VmHWM`` (reset by
``exec``), not ``ru_maxrss``, which a forked child inherits from its parent (here the pytest
process that generated gigabytes of blobs) and which would report the parent's size.

Blobs: encoding 50,000 distinct compressed stamps takes minutes, so 2,500 distinct noise stamps
are encoded once and each row gets a distinct copy by a different zip archive comment (the bytes
differ, the image is the same). Decoding, memory and the integrity pass see 50,000 real blobs;
the probes' AUCs are meaningless here and are not reported.

Measured (2026-11-26, 2 shared CPU cores, 64 x 64 stamps, 22 data-gate cases, ``max_samples`` 4000):
pointer 2.21 GiB peak (58 s), inline 2.28 GiB (64 s), inline_one_group 1.96 GiB (60 s). Before the
gate context kept blobs on disk and io streamed row groups: inline 4.90 GiB; inline_one_group
7.5 GiB and every gate ``error`` (binary offset overflow).

Run: ``python -m pytest benchmarks/bench_gate_memory.py --benchmark-only -s``
(``SHORTCUTGATES_BENCH_DIR`` keeps the generated manifests between runs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shortcutgates.data.codec import encode_stamp

N_ROWS = int(os.environ.get("SHORTCUTGATES_BENCH_ROWS", 50_000))
N_DISTINCT = 2_500
SIZE = 64
ROWS_PER_FILE = 2_000
TARGET_BYTES = 4 * 1024**3

CHILD = r"""
import json, re, sys, time
t0, c0 = time.perf_counter(), time.process_time()
from shortcutgates.gates.registry import GateConfig, GateContext, gate_cases, run_case
ctx = GateContext(sys.argv[1], config=GateConfig())
verdicts, integrity = {}, None
for case in gate_cases(ctx):
    if "model" in case.needs:
        continue
    result = run_case(ctx, case)
    verdicts[result.verdict] = verdicts.get(result.verdict, 0) + 1
    if case.gate == "data_integrity":
        integrity = result.value
print(json.dumps({"rows": int(len(ctx.frame)), "wall_s": time.perf_counter() - t0,
                  "cpu_s": time.process_time() - c0, "integrity_bad_rows": integrity, "verdicts": verdicts,
                  "peak_rss_bytes": int(re.search(r"VmHWM:\s+(\d+) kB", open("/proc/self/status").read()).group(1))
                  * 1024}))
"""


def _blob_pool(seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    yy, xx = np.indices((SIZE, SIZE)) - SIZE // 2
    core = np.exp(-0.5 * (np.hypot(yy, xx) / 2.5) ** 2)
    return [encode_stamp(rng.normal(0, 1, (3, SIZE, SIZE)) + rng.uniform(5, 30) * core) for _ in range(N_DISTINCT)]


def _with_comment(blob: bytes, i: int) -> bytes:
    """The same npz with a distinct archive comment (end-of-central-directory record)."""
    comment = f"row{i:08d}".encode()
    return blob[:-2] + len(comment).to_bytes(2, "little") + comment


def _rows(n: int, seed: int = 1) -> pd.DataFrame:
    """Unpaired-looking rows: one per LRG, labels balanced, splits 70/15/15, one property."""
    rng = np.random.default_rng(seed)
    split = np.array(["train", "val", "test"])[np.searchsorted([0.7, 0.85], rng.uniform(size=n))]
    ra = (np.arange(n) * 0.013) % 360.0  # LRGs 47" apart or more: no two merge
    dec = -60.0 + (np.arange(n) // 27692) * 0.5
    return pd.DataFrame(
        {
            "label": (np.arange(n) % 2).astype(np.int8),
            "split": split,
            "ra": ra,
            "dec": dec,
            "psfsize_r": rng.normal(1.3, 0.1, n),
        }
    )


def make_manifests(root: Path) -> dict[str, Path]:
    """Write the pointer and inline manifests (and the pointer's source files) under ``root``."""
    out = {"pointer": root / "pointer", "inline": root / "inline", "inline_one_group": root / "inline_one_group"}
    if all((p / "done").exists() for p in out.values()):
        return out
    pool = _blob_pool()
    rows = _rows(N_ROWS)
    blobs = [_with_comment(pool[i % N_DISTINCT], i) for i in range(N_ROWS)]
    source = root / "source"
    source.mkdir(parents=True, exist_ok=True)
    paths, source_rows, columns = [], [], []
    for start in range(0, N_ROWS, 2 * ROWS_PER_FILE):  # each source row holds a stamp and its control
        part = blobs[start : start + 2 * ROWS_PER_FILE]
        path = source / f"part-{start // (2 * ROWS_PER_FILE):05d}.parquet"
        pq.write_table(
            pa.table(
                {
                    "stamp_npz": pa.array(part[0::2], pa.binary()),
                    "ctrl_stamp_npz": pa.array(part[1::2] + [None] * (len(part) % 2), pa.binary()),
                }
            ),
            path,
        )
        for j in range(len(part)):
            paths.append(str(path))
            source_rows.append(j // 2)
            columns.append("stamp_npz" if j % 2 == 0 else "ctrl_stamp_npz")
    out["pointer"].mkdir(exist_ok=True)
    pq.write_table(
        pa.Table.from_pandas(
            rows.assign(source_path=paths, source_row=np.array(source_rows, np.int64), source_column=columns),
            preserve_index=False,
        ),
        out["pointer"] / "manifest.parquet",
    )
    out["inline"].mkdir(exist_ok=True)
    table = pa.Table.from_pandas(rows.assign(image_npz=blobs), preserve_index=False)
    pq.write_table(table, out["inline"] / "part-0000.parquet", row_group_size=4096)
    out["inline_one_group"].mkdir(exist_ok=True)
    pq.write_table(table, out["inline_one_group"] / "part-0000.parquet", row_group_size=1 << 20)
    for p in out.values():
        (p / "done").write_text("ok\n")
    return out


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    root = os.environ.get("SHORTCUTGATES_BENCH_DIR")
    root = Path(root) if root else tmp_path_factory.mktemp("gate_memory")
    return make_manifests(root)


def _measure(path: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("kind", ["pointer", "inline", "inline_one_group"])
def test_data_gates_peak_memory(benchmark, manifests, kind):
    result = benchmark.pedantic(_measure, args=(manifests[kind],), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    gib = result["peak_rss_bytes"] / 1024**3
    print(
        f"\n{kind}: data gates over {result['rows']} rows: peak RSS {gib:.2f} GiB (target < 4), "
        f"wall {result['wall_s']:.0f} s, CPU {result['cpu_s']:.0f} s, bad rows {result['integrity_bad_rows']}, "
        f"verdicts {result['verdicts']}"
    )
    assert result["rows"] == N_ROWS and result["integrity_bad_rows"] == 0
