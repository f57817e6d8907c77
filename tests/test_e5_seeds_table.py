"""scripts/e5_seeds/table.py: the E5 comparison table over seeds (from each seed's results.json)."""

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "e5_seeds" / "table.py"


def _table():
    spec = importlib.util.spec_from_file_location("e5_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _config(e2, tpr, failed, point):
    return {
        "primary_failed": failed,
        "unseen": {"point_source": {"value": point[0], "ci": point[1:]}},
        "experiments": {
            "E2": {
                "value": e2,
                "ci": [e2 - 0.02, min(e2 + 0.02, 1.0)],
                "tpr_at_fpr": {"0.01": {"value": tpr[0], "ci": tpr[1:]}},
            }
        },
    }


def test_table_counts_seeds_meeting_the_acceptance(tmp_path):
    seeds = {
        0: {
            "residual": _config(0.97, (0.30, 0.20, 0.90), ["arc_masked_auroc[test_paired]"], (0.50, 0.45, 0.55)),
            "residual+hn": _config(0.97, (0.40, 0.30, 0.90), [], (0.46, 0.44, 0.48)),
        },
        1: {
            "residual": _config(0.96, (0.30, 0.25, 0.35), [], (0.62, 0.58, 0.66)),
            "residual+hn": _config(0.94, (0.50, 0.40, 0.60), [], (0.55, 0.50, 0.63)),
        },
    }
    for seed, configs in seeds.items():
        (tmp_path / f"seed{seed}").mkdir()
        (tmp_path / f"seed{seed}" / "results.json").write_text(
            json.dumps({"seeds": [{"seed": seed, "configs": configs}]})
        )
    text = _table().main(tmp_path)
    assert (tmp_path / "e5_table.md").read_text() == text and (tmp_path / "e5_table.csv").exists()
    rows = [line for line in text.splitlines() if line.startswith("| 0 |") or line.startswith("| 1 |")]
    assert (
        "| 0 | residual | arc_masked_auroc[test_paired] | 0.970 [0.950, 0.990] | 0.300 [0.200, 0.900] | - |" in rows[0]
    )
    assert rows[1].endswith("| yes | 0.460 [0.440, 0.480] held |")
    assert rows[2].endswith("| - | 0.620 [0.580, 0.660] failed |")
    assert rows[3].endswith("| no | 0.550 [0.500, 0.630] inconclusive |")  # 0.50 is outside [0.25, 0.35]
    # seed 1's recipe passes every primary gate but E2 0.94 < 0.95: one green seed of two
    assert "| residual+hn | 2 | 1 of 2 | 1 of 2 | 1 of 2 |" in text
    assert "| residual | 2 | 1 of 2 | - | 1 of 2 |" in text
