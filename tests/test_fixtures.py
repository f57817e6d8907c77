"""Both directions on the committed fixtures: each gate fails on the planted shortcut and passes on
the clean case (see ``fixtures/make_fixtures.py`` for what is planted where).

Gates are run through the library (``GateContext`` + ``run_case``), one shared context per
data × checkpoint, so images are decoded and predictions computed once per combination.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shortcutgates.gates.registry import GateCase, GateConfig, GateContext, gate_cases, run_case
from shortcutgates.data.codec import encode_stamp
from shortcutgates.data.io import write_parquet_atomic

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DATA = {name: FIXTURES / "data" / name for name in ("clean", "shortcut")}
MODELS = {name: FIXTURES / "checkpoints" / f"{name}.pt" for name in ("clean", "clever_hans")}
_CONTEXTS: dict = {}


def context(data, model=None) -> GateContext:
    """One context per (data, model), shared by the tests of this module."""
    key = (str(data), None if model is None else str(model))
    if key not in _CONTEXTS:
        _CONTEXTS[key] = GateContext(data, model=model, config=GateConfig(), progress=False)
    return _CONTEXTS[key]


def case(ctx: GateContext, case_id: str) -> GateCase:
    """The registry's case with this id (so the test fails if the id disappears)."""
    found = [c for c in gate_cases(ctx) if c.id == case_id]
    assert found, f"no case {case_id!r} among {[c.id for c in gate_cases(ctx)]}"
    return found[0]


def verdict(data, model, case_id: str):
    ctx = context(data, model)
    return run_case(ctx, case(ctx, case_id))


def load_make_fixtures():
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- data gates ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "case_id",
    [
        "data_integrity",
        "lrg_leakage[test-pos-neg]",
        "lrg_leakage[test-test_paired]",
        "metadata_c2st_auc[test]",
        "core_lr_auc[test-box10-raw_robust]",
        "arc_annulus_lr_auc[test-raw_robust]",
    ],
)
def test_data_gates_pass_on_clean_data(case_id):
    result = verdict(DATA["clean"], None, case_id)
    assert result.verdict == "pass", result.message


@pytest.mark.parametrize(
    "case_id, why",
    [
        ("core_lr_auc[test-box10-raw_robust]", "central point source in the positives"),
        ("lrg_leakage[test-pos-neg]", "paired: every positive's LRG is also a negative"),
    ],
)
def test_data_gates_fail_on_shortcut_data(case_id, why):
    result = verdict(DATA["shortcut"], None, case_id)
    assert result.verdict == "fail", f"{why}: {result.message}"


def test_property_balance_passes_on_matched_pools():
    """Twins share their conditions: the signed SMD is 0, and resampling matched sets keeps it 0."""
    result = verdict(DATA["clean"], None, "property_balance[test-psfsize_r]")
    assert result.value == pytest.approx(0.0, abs=1e-12)
    assert result.verdict == "pass" and result.ci == (0.0, 0.0), result.message


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory):
    """The clean test split with the positives observed under a worse PSF (+0.3″ psfsize_r)."""
    frame = pd.read_parquet(DATA["clean"] / "test.parquet")
    pos = frame["label"] == 1
    for col in ("psfsize_r", "psf_fwhm_used_r"):
        frame.loc[pos, col] = frame.loc[pos, col] + 0.3
    out = tmp_path_factory.mktemp("imbalanced")
    write_parquet_atomic(frame, out / "test.parquet")
    return out


@pytest.mark.parametrize("case_id", ["property_balance[test-psfsize_r]", "metadata_c2st_auc[test]"])
def test_metadata_gates_fail_on_imbalanced_pools(imbalanced, case_id):
    result = verdict(imbalanced, None, case_id)
    assert result.verdict == "fail", result.message


def test_data_integrity_fails_on_corrupt_rows(tmp_path):
    frame = pd.read_parquet(DATA["shortcut"] / "test.parquet").head(20).copy()
    bad = np.zeros((3, 48, 48), np.float32)
    bad[1, 3, 4] = np.nan
    frame.loc[3, "image_npz"] = encode_stamp(bad)
    frame.loc[7, "image_npz"] = b"not an npz archive"
    write_parquet_atomic(frame, tmp_path / "test.parquet")
    result = run_case(GateContext(tmp_path, config=GateConfig()), GateCase("data_integrity"))
    assert result.verdict == "fail" and result.value == 2, result.message


# --- model gates --------------------------------------------------------------------------------
BIN = "test_paired-theta_e1.5-2"
"""The fixtures' lensed arcs have θ_E 1.5–1.7″ (arcs at 10.3–12.7 px): one θ_E bin of the paired split."""
CORE_IDS = [f"{g}[{BIN}]" for g in ("arc_masked_auroc", "core_masked_auroc_drop", "arc_swap_auroc_drop")]
COUNTERFACTUAL_IDS = CORE_IDS + [f"morphology_auroc[{BIN}]"]


@pytest.mark.parametrize(
    "case_id",
    [
        "detection_auroc[test]",
        "detection_auroc[test_paired]",
        "cross_test_gap",
        *CORE_IDS,
    ],
)
def test_model_gates_pass_for_the_arcs_only_model(case_id):
    result = verdict(DATA["clean"], MODELS["clean"], case_id)
    assert result.verdict == "pass", result.message


@pytest.mark.parametrize("data", ["clean", "shortcut"])
def test_morphology_is_reported_for_the_arcs_only_model(data):
    """``morphology_auroc`` is reported (docs/model_gates.md#morphology): ``clean.pt`` ranks its lenses above
    their scrambled arcs (measured 0.74 / 0.73), short of the 0.75 claim; it never turns the run red."""
    result = verdict(DATA[data], MODELS["clean"], f"morphology_auroc[{BIN}]")
    assert result.role == "reported" and result.value > 0.6, result.message


def test_the_whole_clean_suite_is_green_for_the_arcs_only_model():
    """Every primary case of the clean fixture with the arcs-only checkpoint passes: no waiver."""
    ctx = GateContext(DATA["clean"], model=MODELS["clean"], config=GateConfig())
    results = [run_case(ctx, c) for c in gate_cases(ctx)]
    red = [(r.id, r.verdict) for r in results if r.role == "primary" and r.verdict not in ("pass", "skipped")]
    assert results and not red, red


@pytest.mark.parametrize("case_id", CORE_IDS)
def test_the_arcs_only_model_passes_on_the_shortcut_data_too(case_id):
    """Same data on which the Clever-Hans model fails: the verdict follows the model, not the data."""
    result = verdict(DATA["shortcut"], MODELS["clean"], case_id)
    assert result.verdict == "pass", result.message


CLEVER_HANS_CASES = [
    (f"arc_masked_auroc[{BIN}]", "the core light alone (arc taken out) makes it call a lens"),
    (f"core_masked_auroc_drop[{BIN}]", "it loses the lenses when the core light is taken out"),
]


@pytest.mark.parametrize("case_id, why", CLEVER_HANS_CASES)
def test_model_gates_fail_for_the_clever_hans_model(case_id, why):
    result = verdict(DATA["shortcut"], MODELS["clever_hans"], case_id)
    assert result.verdict == "fail", f"{why}: {result.message}"
    assert result.role == "primary", "the planted core does not make the bin undecidable (lensing geometry decides)"


def test_the_arc_swap_moves_the_planted_core_with_the_arc():
    """What the swap gate does not claim: the core part travels with the arc, so a core reader keeps
    its score on another galaxy (docs/model_gates.md)."""
    result = verdict(DATA["shortcut"], MODELS["clever_hans"], f"arc_swap_auroc_drop[{BIN}]")
    assert result.value < 0.05, result.message


def test_an_untrained_network_is_an_error_on_every_counterfactual_gate(tmp_path):
    import torch

    from shortcutgates.model.checkpoint import read_payload, save_checkpoint
    from shortcutgates.model.network import build_model

    payload = read_payload(MODELS["clean"])
    torch.manual_seed(0)
    payload["state_dict"] = build_model(payload["model_config"]).state_dict()
    save_checkpoint(tmp_path / "untrained.pt", payload)
    ctx = GateContext(DATA["clean"], model=tmp_path / "untrained.pt", config=GateConfig())
    for case_id in COUNTERFACTUAL_IDS:
        result = run_case(ctx, case(ctx, case_id))
        assert result.verdict == "error" and "does not detect these lenses" in result.message, result.message


def test_detection_fails_when_the_shortcut_is_absent():
    """The Clever-Hans model cannot find lenses that lack the central point source."""
    result = verdict(DATA["clean"], MODELS["clever_hans"], "detection_auroc[test]")
    assert result.verdict == "fail" and result.value < 0.6, result.message


def test_cross_test_gap_fails_when_paired_test_lacks_the_shortcut(tmp_path):
    """Unpaired test with the point source, paired test without it: the Clever-Hans model's AUROC drops."""
    write_parquet_atomic(pd.read_parquet(DATA["shortcut"] / "test.parquet"), tmp_path / "test.parquet")
    write_parquet_atomic(pd.read_parquet(DATA["clean"] / "test_paired.parquet"), tmp_path / "test_paired.parquet")
    ctx = GateContext(tmp_path, model=MODELS["clever_hans"], config=GateConfig())
    result = run_case(ctx, case(ctx, "cross_test_gap"))
    assert result.verdict == "fail" and abs(result.value) > 0.2, result.message


# --- the fixtures themselves --------------------------------------------------------------------
def test_fixture_data_is_recreated_by_the_script():
    """The script re-creates the committed rows: same columns and values, images equal to the bit or
    within one quantisation step. (On the library versions that wrote them the files come out
    byte-identical; across numpy/scipy/zlib/pyarrow versions the FFT's last bits and the encoders'
    bytes may differ, so this test compares content.)"""
    from shortcutgates.data.codec import decode_stamp

    make = load_make_fixtures()
    spec = next(s for s in make.DATASETS if s.name == "shortcut")
    fresh = make.make_frame(spec)
    for split, part in fresh.groupby("split", sort=True):
        part = part.reset_index(drop=True)
        committed = pd.read_parquet(DATA["shortcut"] / f"{split}.parquet")
        assert list(committed.columns) == list(part.columns)
        meta = [c for c in part.columns if c != "image_npz"]
        pd.testing.assert_frame_equal(committed[meta], part[meta], check_exact=False, rtol=1e-9)
        old = np.stack([decode_stamp(b) for b in committed["image_npz"]])
        new = np.stack([decode_stamp(b) for b in part["image_npz"]])
        assert (old == new).mean() > 0.999, split
        # a pixel that differs was rounded to a neighbouring quantisation step (step <= sky σ of its band)
        assert (np.abs(old - new).max(axis=(0, 2, 3)) <= 4 * make.SKY_SIGMA).all(), split


def test_fixtures_are_small():
    total = sum(f.stat().st_size for f in FIXTURES.rglob("*") if f.is_file())
    assert total < 4_500_000, f"fixtures/ holds {total} bytes"


def test_checkpoints_record_their_training():
    from shortcutgates.model.checkpoint import load_checkpoint

    for name, path in MODELS.items():
        loaded = load_checkpoint(path)
        # trained (an untrained network scores 0.5); clever_hans reached 0.81 on its faint planted core
        assert loaded.payload["metrics"]["best_val_auroc"] > 0.75, name
        assert "seconds" not in loaded.payload["metrics"] and "resume" not in loaded.payload
