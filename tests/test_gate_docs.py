"""The registry is the single source of per-gate facts: generated tables and derived gate lists follow it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from shortcutgates.calibrate import profiles, rates, readers
from shortcutgates.gates import gate_docs, registry, sweep

ROOT = Path(__file__).resolve().parents[1]


def test_the_checked_in_gate_tables_are_the_registrys():
    assert gate_docs.stale_files(ROOT) == [], "run: PYTHONPATH=. python -m shortcutgates.gates.gate_docs"


def test_a_changed_registry_row_makes_the_tables_stale():
    rows = dict(registry.REGISTRY, core_lr_auc=replace(registry.REGISTRY["core_lr_auc"], threshold=0.7))
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "≤ 0.70 on `train`" in gate_docs.with_table(text, gate_docs.gate_table(rows))
    assert "≤ 0.70 on `train`" not in text


def test_an_undocumented_gate_or_missing_markers_are_refused():
    rows = dict(registry.REGISTRY, new_gate=replace(registry.REGISTRY["core_lr_auc"], name="new_gate"))
    with pytest.raises(KeyError, match="new_gate"):
        gate_docs.gate_table(rows)
    with pytest.raises(ValueError, match="x.md: needs one"):
        gate_docs.with_table("no markers", "| table |", "x.md")


def test_gate_lists_are_read_off_the_registry():
    assert sweep.DATA_ONLY_GATES == {n for n, g in registry.REGISTRY.items() if g.needs == ("data",)}
    assert rates.NULL_TRUTH == {
        "core_lr_auc": 0.5,
        "metadata_c2st_auc": 0.5,
        "metadata_c2st_gbm_auc": 0.5,
        "property_balance": 0.0,
    }
    counterfactual = {n for n, g in registry.REGISTRY.items() if g.cases is registry.mg.theta_bin_cases}
    assert set(registry.COUNTERFACTUAL_GATES) == counterfactual
    assert set(readers.primary_gates()) == {n for n in counterfactual if registry.REGISTRY[n].role == "primary"}
    assert set(profiles.ALSO_RECORDED) >= counterfactual | {"core_lr_auc", "metadata_c2st_auc"}
