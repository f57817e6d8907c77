"""Output a person reads once (issue 23, item 5): claims, remedies, the by-model figure's colours."""

from __future__ import annotations

import numpy as np
import pandas as pd

from shortcutgates.gates.registry import REGISTRY
from shortcutgates.gates.suite import check_record, remedy_suffix, threshold_text
from shortcutgates.gates.summary import summary_lines


def _record(gate="core_lr_auc", verdict="fail", threshold=0.65, direction="max", role="primary", value=0.9, **kw):
    return {
        "id": f"{gate}[train]",
        "gate": gate,
        "params": {},
        "split": "train",
        "value": value,
        "ci": [value - 0.05, value + 0.05],
        "threshold": threshold,
        "direction": direction,
        "verdict": verdict,
        "n": 10,
        "n_groups": 10,
        "message": "measured",
        "role": role,
        **kw,
    }


def test_every_gate_has_a_one_line_remedy():
    assert all(g.remedy and "\n" not in g.remedy for g in REGISTRY.values())


def test_a_margin_claim_reads_within_plus_minus():
    assert threshold_text(_record("property_balance", threshold=0.2)) == "within ±0.2"
    assert threshold_text(_record("cross_test_gap", threshold=0.05)) == "within ±0.05"
    assert threshold_text(_record()) == "<= 0.65"
    assert threshold_text(_record("arc_annulus_lr_auc", threshold=0.8, direction="min")) == ">= 0.8"


def test_a_failing_line_ends_with_its_remedy():
    import pytest

    record = _record()
    with pytest.raises(pytest.fail.Exception) as failed:
        check_record(record)
    assert str(failed.value).endswith(f" -> {REGISTRY['core_lr_auc'].remedy}")
    table = summary_lines([record, _record("property_balance", threshold=0.2, role="reported", value=-0.207)])
    assert table[1].endswith("FAIL" + remedy_suffix(record))
    assert "within ±0.2" in table[2] and table[2].endswith("FAIL (reported, not gated)")  # no remedy: never gating
    for verdict in ("error", "inconclusive"):  # their messages say what to do (why nothing was measured; how many LRGs)
        assert remedy_suffix(_record(verdict=verdict)) == ""


def test_the_by_model_figure_draws_inconclusive_in_its_own_colour(tmp_path, monkeypatch):
    from shortcutgates.data import io
    from shortcutgates.gates import sweep

    figures = []
    monkeypatch.setattr(io, "write_png", lambda fig, path, dpi=None: figures.append(fig) or path)
    by_model = {
        f"m{i}": [_record("arc_masked_auroc", verdict=v, threshold=0.6, value=0.6 + 0.01 * i)]
        for i, v in enumerate(["pass", "inconclusive", "fail"])
    }
    sweep.plot_by_model(pd.DataFrame({"model": list(by_model)}), by_model, tmp_path / "f.png")
    fig = figures[0]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["passes", "fails", "inconclusive (interval crosses the threshold)"]
    points = {c.get_label(): c.get_facecolor()[0] for c in fig.axes[0].collections if c.get_label() in labels}
    assert len({tuple(np.round(c, 3)) for c in points.values()}) == 3  # three colours for three verdicts
    assert "red" not in fig._suptitle.get_text()


def test_the_html_report_carries_the_figures_and_the_low_fpr_table(tmp_path):
    import re

    from shortcutgates.gates.report_html import write_gate_html
    from shortcutgates.gates.report_json import build_report

    report = build_report(
        [_record(), _record("arc_masked_auroc", verdict="inconclusive", threshold=0.6, value=0.62)],
        data={"path": "d", "n_rows": 10},
        model={"path": "m.onnx"},
    )
    tpr = {"value": 0.4, "ci": [0.3, 0.5], "n_neg": 50, "n_neg_needed": 1000, "note": "50 negatives < 10/FPR = 1000"}
    report["low_fpr"] = {
        "test": {
            "n_neg": 50,
            "n_pos": 50,
            "tpr_at_fpr": {"0.01": tpr, "0.001": tpr},
            "roc": {"fpr": [0.0, 0.02, 1.0], "tpr": [0.0, 0.4, 1.0]},
        }
    }
    page = write_gate_html(tmp_path / "g.html", report).read_text()
    assert len(re.findall(r"<img src='data:image/png;base64,", page)) == 2  # gates figure and ROC, in the page
    assert "Detection at low false-positive rates" in page and "0.400 [0.300, 0.500]" in page
