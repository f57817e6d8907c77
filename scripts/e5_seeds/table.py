"""The E5 comparison table over seeds: ``python table.py OUT_ROOT`` reads ``OUT_ROOT/seed*/results.json``.

Per seed and configuration: the primary gate cases not passed, E2 AUROC, TPR at FPR 1e-2 (each with its
LRG-bootstrap 95 % interval), the unseen point source's AUROC (30 % of the LRG's flux, no arc, against
the same controls on held-out LRGs) with its verdict against 0.60; then per configuration the count of
seeds meeting issue 21's acceptance: every primary gate passed with E2 AUROC >= 0.95, and (recipe
configurations) TPR at 1e-2 inside the baseline's interval of the same seed. Writes
``OUT_ROOT/e5_table.md`` and ``OUT_ROOT/e5_table.csv`` and prints the markdown.
"""

import csv
import json
import sys
from pathlib import Path

from shortcutgates.experiment.report import _point_source_cell, _tpr_cell
from shortcutgates.gates.report_html import fmt_metric

BASELINE = "residual"
E2_MIN = 0.95


def tpr(e2: dict | None) -> dict | None:
    return ((e2 or {}).get("tpr_at_fpr") or {}).get("0.01")


def inside(m: dict | None, ref: dict | None) -> bool:
    """Is ``m``'s estimate inside ``ref``'s interval?"""
    if not m or not ref or m.get("value") is None or not ref.get("ci") or None in ref["ci"]:
        return False
    return ref["ci"][0] <= m["value"] <= ref["ci"][1]


def rows_of(root: Path) -> tuple[list, dict]:
    rows, tally = [], {}
    for path in sorted(root.glob("seed*/results.json"), key=lambda p: int(p.parent.name[4:])):
        results = json.loads(path.read_text())
        for run in results["seeds"]:
            base = (run["configs"].get(BASELINE) or {}).get("experiments", {}).get("E2")
            for name, c in run["configs"].items():
                e2 = c.get("experiments", {}).get("E2")
                failed = c.get("primary_failed")
                point, verdict = _point_source_cell((c.get("unseen") or {}).get("point_source"))
                green = failed == [] and e2 is not None and (e2.get("value") or 0) >= E2_MIN
                tpr_ok = name == BASELINE or inside(tpr(e2), tpr(base))
                t = tally.setdefault(name, {"seeds": 0, "green": 0, "tpr_ok": 0, "point_held": 0})
                t["seeds"] += 1
                t["green"] += green
                t["tpr_ok"] += tpr_ok
                t["point_held"] += verdict == "held"
                rows.append(
                    {
                        "seed": run["seed"],
                        "configuration": name,
                        "primary gates not passed": "n/a" if failed is None else (", ".join(failed) or "none"),
                        "E2 AUROC": fmt_metric(e2),
                        "TPR @ 1e-2": _tpr_cell(e2, "0.01"),
                        "TPR @ 1e-2 in baseline's interval": "-" if name == BASELINE else ("yes" if tpr_ok else "no"),
                        "point source 30% AUROC (<= 0.60)": point,
                    }
                )
    return rows, tally


def main(root: Path) -> str:
    rows, tally = rows_of(root)
    if not rows:
        sys.exit(f"e5 table: no {root}/seed*/results.json")
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(r[h]) for h in header) + " |" for r in rows]
    lines += [
        "",
        "| configuration | seeds | every primary gate passed and E2 >= 0.95 | TPR @ 1e-2 in the baseline's "
        "interval | point source held (<= 0.60) |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {k} | {t['seeds']} | {t['green']} of {t['seeds']} | "
        f"{'-' if k == BASELINE else str(t['tpr_ok']) + ' of ' + str(t['seeds'])} | {t['point_held']} of {t['seeds']} |"
        for k, t in tally.items()
    ]
    text = "\n".join(lines) + "\n"
    (root / "e5_table.md").write_text(text)
    with open(root / "e5_table.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return text


if __name__ == "__main__":
    print(main(Path(sys.argv[1])))
