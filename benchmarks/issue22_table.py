"""Print issue 22's acceptance ratios from the pytest-benchmark JSON files of ``benchmarks/run_issue22.sh``.

Usage: ``python benchmarks/issue22_table.py DIR`` (the directory holding ``data_gates.json``,
``gate_cache.json``, ``gate_many.json``, ``loader.json``, ``workers.json``, ``survey.json``; a missing
file or benchmark prints ``not run``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _extra(directory: Path, file: str, name_part: str) -> dict | None:
    path = directory / f"{file}.json"
    if not path.exists():
        return None
    for bench in json.loads(path.read_text())["benchmarks"]:
        if name_part in bench["name"]:
            return bench["extra_info"]
    return None


def rows(directory: Path) -> list[tuple[str, str, str, str]]:
    """(what, measured, target, met) per acceptance item."""
    out = []

    def add(what, info, key, target, ok, fmt="{:.2f}x", note=""):
        if info is None or key not in info:
            out.append((what, "not run", target, "-"))
            return
        value = info[key]
        out.append((what, fmt.format(value) + note, target, "yes" if ok(value) else "NO"))

    dg = _extra(directory, "data_gates", "baseline")
    add(
        "data gates, new / old wall",
        dg,
        "new_over_old_wall",
        "<= 0.5x",
        lambda v: v <= 0.5,
        note=""
        if dg is None
        else f" (CPU {dg['new_over_old_cpu']:.2f}x; {dg['old_wall_s']:.1f} -> {dg['new_wall_s']:.1f} s; "
        f"reports identical)",
    )
    gc = _extra(directory, "gate_cache", "second_checkpoint")
    add(
        "later checkpoint / model gates alone, wall",
        gc,
        "warm_over_model_only_wall",
        "<= 1.2x",
        lambda v: v <= 1.2,
        note="" if gc is None else f" (CPU {gc['warm_over_model_only_cpu']:.2f}x)",
    )
    gm = _extra(directory, "gate_many", "ten_checkpoints")
    add("10 checkpoints / 1, wall", gm, "ratio", "<= 1.5x", lambda v: v <= 1.5)
    naive = _extra(directory, "loader", "naive")
    for threads in (1, 2):
        fast = _extra(directory, "loader", f"best_inflate[{threads}]")
        info = (
            None
            if fast is None or naive is None
            else {"r": fast["stamps_per_s"] / naive["stamps_per_s"], "cpu": fast.get("cpu_ratio", float("nan"))}
        )
        add(
            f"first-pass decode / naive loop, wall, {threads} thread(s)",
            info,
            "r",
            ">= 5x",
            lambda v: v >= 5,
            note="" if info is None else f" (CPU {info['cpu']:.2f}x)",
        )
    sim = _extra(directory, "workers", "simulate")
    add("simulate --workers 2 / 1, wall (same bytes)", sim, "wall_ratio", ">= 1.8x", lambda v: v >= 1.8)
    cal = _extra(directory, "workers", "calibrate")
    add("calibrate --workers 2 / 1, wall (same table)", cal, "wall_ratio", ">= 1.7x", lambda v: v >= 1.7)
    sv = _extra(directory, "survey", "survey")
    add(
        "all our data gates / survey team's two probes, wall",
        sv,
        "ours_over_theirs_wall",
        "<= 0.6x",
        lambda v: v <= 0.6,
        note="" if sv is None else f" ({sv['theirs_wall_s']:.1f} s vs {sv['ours_wall_s']:.1f} s)",
    )
    return out


def main(argv: list[str]) -> int:
    table = rows(Path(argv[0]))
    widths = [max(len(r[i]) for r in table + [("item", "measured", "target", "met")]) for i in range(4)]
    for r in [("item", "measured", "target", "met")] + table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
