"""End-to-end tests of the pytest plugin with ``pytester``: options, ids, skips, outcomes, summary, report.

Each test runs the real gate suite (``shortcutgates.gates.gate_suite.test_gate``, as ``gate_tests/`` does)
on the committed fixture datasets, selecting a few cheap gates with ``-k`` to stay fast.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

# Imported here, before pytester's in-process runs: pytester drops modules first imported inside a run,
# and numpy/scipy/torch extension modules cannot be imported twice in one process.
import shortcutgates.gates.registry  # noqa: F401
import shortcutgates.model.checkpoint  # noqa: F401
from shortcutgates.gates.report_json import SCHEMA, read_report
from shortcutgates.gates.suite import check_record
from shortcutgates.plugin import NO_DATA_REASON

# pytester's inner runs under ``-n 2`` make pytest-benchmark warn that it is disabled; not our concern here
pytestmark = pytest.mark.filterwarnings("ignore:Benchmarks are automatically disabled")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SHORTCUT = FIXTURES / "data" / "shortcut"
CLEAN = FIXTURES / "data" / "clean"
CLEVER_HANS = FIXTURES / "checkpoints" / "clever_hans.pt"


@pytest.fixture(scope="module", autouse=True)
def _import_lazy_modules():
    """Run the gates once outside pytester, so that lazily imported modules (pandas' Arrow extension
    types, sklearn, torch) are loaded before pytester's runs, which drop modules first imported
    inside them: extension modules and Arrow type registrations cannot be loaded twice."""
    import pandas as pd

    from shortcutgates.gates.registry import GateConfig, GateContext, gate_cases, run_case

    pd.read_parquet(SHORTCUT / "test.parquet", columns=["label"])  # registers pandas' Arrow extension types
    ctx = GateContext(SHORTCUT, model=CLEVER_HANS, config=GateConfig())
    for case in gate_cases(ctx):
        if case.id in ("data_integrity", "lrg_leakage[test-pos-neg]", "detection_auroc[test]"):
            run_case(ctx, case)


@pytest.fixture
def suite(pytester):
    """A project whose only test module is the gate suite, as the repository's ``gate_tests/``."""
    pytester.makepyfile(test_gates="from shortcutgates.gates.gate_suite import test_gate  # noqa: F401\n")
    return pytester


def test_options_are_one_group_with_metavars_and_defaults(pytester):
    result = pytester.runpytest("--help")
    text = result.stdout.str()
    group = text[text.index("shortcut gates") :]
    for line in ("--data=DIR", "--model=CKPT", "--gate-report=FILE", "--gate-config=PYPROJECT"):
        assert line in group
    assert group[:1500].count("Default:") >= 4


@pytest.mark.parametrize(
    "args, message",
    [
        pytest.param(["--data", "missing_dir"], "no such directory or file: 'missing_dir'", id="data_missing"),
        pytest.param(
            ["--data", "notes.txt"], "expected a manifest directory or a .parquet file", id="data_not_parquet"
        ),
        pytest.param([f"--data={SHORTCUT}", "--model", "missing.pt"], "no such checkpoint file", id="model_missing"),
        pytest.param([f"--data={SHORTCUT}", "--gate-report", "."], "is a directory", id="report_is_dir"),
        pytest.param([f"--data={SHORTCUT}", "--gate-config", "nope.toml"], "no such file", id="config_missing"),
    ],
)
def test_bad_option_values_are_usage_errors(suite, args, message):
    suite.makefile(".txt", notes="not data")
    result = suite.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_unreadable_manifest_is_a_usage_error_naming_the_file(suite, tmp_path):
    import pandas as pd

    pd.DataFrame({"x": [1, 2]}).to_parquet(tmp_path / "part.parquet")
    result = suite.runpytest(f"--data={tmp_path}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # one line, no collection traceback
    result.stderr.fnmatch_lines(
        [f"ERROR: shortcutgates: {tmp_path / 'part.parquet'}: manifest file lacks column(s) label*"]
    )
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert "shortcut gates" not in result.stdout.str().replace("shortcutgates", "")


def test_without_data_the_plugin_is_inert(pytester):
    pytester.makepyfile(test_plain="def test_one():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert "shortcut gates" not in result.stdout.str() and "shortcutgates:" not in result.stdout.str()


def test_report_without_data_or_model_is_a_usage_error(pytester):
    result = pytester.runpytest("--gate-report=r.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--gate-report needs --data DIR" in result.stderr.str()
    assert not (pytester.path / "r.json").exists()


def test_model_without_data_whose_manifest_is_gone_says_how_to_pass_data(pytester):
    """The fixture checkpoints record a generated manifest that is not on disk: one line, the way out named."""
    result = pytester.runpytest(f"--model={CLEVER_HANS}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert result.stderr.lines[0] == (
        f"ERROR: shortcutgates: {CLEVER_HANS}: its training manifest <generated by "
        "fixtures/make_fixtures.py: train_clever_hans> is not there (moved or deleted); "
        "pass the manifest to gate with --data DIR"
    )


def test_without_data_the_suite_skips_with_the_reason(suite):
    result = suite.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([f"*{NO_DATA_REASON}*"])


def test_one_test_per_case_with_readable_ids_and_k_selects(suite):
    everything = suite.runpytest(f"--data={SHORTCUT}", "--collect-only", "-q").stdout.str()
    for case in (
        "data_integrity",
        "lrg_leakage[test-pos-neg]",
        "core_lr_auc[test-box10-raw_robust]",
        "core_lr_auc[test-box10-model]",
        "detection_auroc[test]",
        "stratified_auroc[test-psf]",
    ):
        assert f"test_gates.py::test_gate[{case}]" in everything
    selected = suite.runpytest(f"--data={SHORTCUT}", "--collect-only", "-q", "-k", "core_lr").stdout.str()
    ids = [line for line in selected.splitlines() if "::test_gate[" in line]
    assert ids and all("core_lr_auc[" in line for line in ids)


def test_model_gates_skip_without_model_with_that_reason(suite):
    result = suite.runpytest(f"--data={SHORTCUT}", "-rs", "-k", "data_integrity or detection_auroc[test]")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*no model given (--model CKPT)*"])


def test_failing_gate_fails_its_test_with_the_gate_message(suite):
    result = suite.runpytest(f"--data={SHORTCUT}", "-k", "lrg_leakage")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*lrg_leakage[[]test-pos-neg[]]: FAIL: LRGs with both a positive and a negative*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_summary_table_and_expected_versus_run_count(suite):
    result = suite.runpytest(f"--data={SHORTCUT}", "-k", "lrg_leakage or data_integrity")
    result.stdout.re_match_lines(
        [
            r"=+ shortcut gates =+",
            r"gate\s+value\s+95% CI\s+threshold\s+verdict",
            r"data_integrity\s+0\.000\s+-\s+<= 0\s+PASS",
            r"lrg_leakage\[test-pos-neg\]\s+60\.000\s+-\s+<= 0\s+FAIL",
        ]
    )
    collected = len(
        [
            line
            for line in suite.runpytest(f"--data={SHORTCUT}", "--collect-only", "-q").stdout.lines
            if "::test_gate[" in line
        ]
    )
    result.stdout.fnmatch_lines(
        [
            f"gates: {collected} expected, 3 run (2 pass, 1 fail, 0 inconclusive, 0 error), "
            f"{collected - 3} skipped, 0 waived",
            f"NOT RUN: {collected - 3} of {collected} gates did not run: deselected (-k / -m)",
        ]
    )


def test_json_report_follows_the_schema(suite):
    result = suite.runpytest(
        f"--data={SHORTCUT}",
        "--gate-report",
        "out/report.json",
        "-k",
        "lrg_leakage or data_integrity or detection_auroc",
    )
    report = read_report(suite.path / "out" / "report.json")  # validates the schema
    assert report["schema"] == SCHEMA and report["model"] is None
    assert report["data"]["path"] == str(SHORTCUT) and report["data"]["splits"]["test"]["n_lrgs"] == 60
    by_id = {g["id"]: g for g in report["gates"]}
    leak = by_id["lrg_leakage[test-pos-neg]"]
    assert (leak["gate"], leak["params"], leak["split"], leak["verdict"], leak["direction"]) == (
        "lrg_leakage",
        {"pair": "pos-neg"},
        "test",
        "fail",
        "max",
    )
    assert leak["value"] == 60 and leak["threshold"] == 0 and leak["ci"] is None and leak["n_groups"] == 60
    assert by_id["detection_auroc[test]"]["verdict"] == "skipped"
    assert "no model given" in by_id["detection_auroc[test]"]["message"]
    assert by_id["core_lr_auc[test-box10-raw_robust]"]["message"] == "deselected (-k / -m)"
    assert report["summary"]["expected"] == len(report["gates"])
    assert report["summary"]["run"] == 3 and report["summary"]["fail"] == 1
    assert f"gate report: {suite.path / 'out' / 'report.json'}" in result.stdout.str()


def test_report_carries_model_block_and_values_with_intervals(suite):
    suite.runpytest(
        f"--data={SHORTCUT}", f"--model={CLEVER_HANS}", "--gate-report", "r.json", "-k", "detection_auroc[test]"
    )
    report = json.loads((suite.path / "r.json").read_text())
    assert report["model"] is not None and report["model"]["path"] == str(CLEVER_HANS)
    gate = next(g for g in report["gates"] if g["id"] == "detection_auroc[test]")
    assert gate["verdict"] in ("pass", "fail", "inconclusive")
    lo, hi = gate["ci"]
    assert lo <= gate["value"] <= hi
    assert 0 < gate["n_groups"] <= report["data"]["splits"]["test"]["n_lrgs"]  # bootstrap units: LRGs or matched sets


def test_waiver_turns_the_case_into_xfail_with_its_reason(suite):
    suite.makefile(
        ".toml",
        pyproject="[tool.shortcutgates.waivers]\n"
        '"lrg_leakage[test-pos-neg]" = "paired on purpose: this is the shortcut fixture"\n',
    )
    result = suite.runpytest(f"--data={SHORTCUT}", "-rx", "-k", "lrg_leakage", "--gate-report=r.json")
    result.assert_outcomes(passed=1, xfailed=1)
    report = read_report(suite.path / "r.json")
    leak = next(g for g in report["gates"] if g["id"] == "lrg_leakage[test-pos-neg]")
    assert leak["verdict"] == "fail" and leak["waiver"] == "paired on purpose: this is the shortcut fixture"
    assert report["summary"]["waived"] == 1
    result.stdout.fnmatch_lines(
        [
            "*lrg_leakage[[]test-pos-neg[]]*FAIL (waived)",
            "gates: *, 1 waived",
            "*XFAIL*waived: paired on purpose: this is the shortcut fixture*",
        ]
    )
    assert result.ret == pytest.ExitCode.OK


def test_gate_config_option_overrides_thresholds(suite):
    suite.makefile(
        ".toml",
        gates="[tool.shortcutgates.thresholds]\nlrg_leakage = 100\n"
        '[tool.shortcutgates.threshold_reasons]\nlrg_leakage = "a test of the override"\n',
    )
    result = suite.runpytest(f"--data={SHORTCUT}", "--gate-config", "gates.toml", "-k", "lrg_leakage")
    result.assert_outcomes(passed=2)
    result.stdout.re_match_lines([r"lrg_leakage\[test-pos-neg\]\s+60\.000\s+-\s+<= 100\s+PASS"])


def test_error_verdict_fails(suite, tmp_path):
    import pandas as pd

    from shortcutgates.data.io import write_parquet_atomic

    frame = pd.read_parquet(SHORTCUT / "test.parquet")
    write_parquet_atomic(frame[frame["label"] == 0], tmp_path / "negatives_only" / "test.parquet")
    result = suite.runpytest(f"--data={tmp_path / 'negatives_only'}", "-k", "core_lr_auc[test-box10-raw_robust]")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*core_lr_auc[[]test-box10-raw_robust[]]: ERROR: *"])


def test_junitxml_carries_the_gate_records(suite):
    suite.runpytest(f"--data={SHORTCUT}", "--junitxml", "junit.xml", "-k", "data_integrity")
    props = {p.get("name"): p.get("value") for p in ET.parse(suite.path / "junit.xml").iter("property")}
    assert props["gate_verdict"] == "pass"
    assert json.loads(props["gate_result"])["id"] == "data_integrity"


def _record(verdict: str) -> dict:
    return {"id": "core_lr_auc[test-box10-raw_robust]", "verdict": verdict, "message": f"the {verdict} message"}


@pytest.mark.parametrize(
    "verdict, outcome",
    [
        ("pass", None),
        ("fail", pytest.fail.Exception),
        ("error", pytest.fail.Exception),
        ("inconclusive", pytest.fail.Exception),
        ("skipped", pytest.skip.Exception),
    ],
)
def test_verdicts_map_to_outcomes(verdict, outcome):
    if outcome is None:
        check_record(_record(verdict))
        return
    with pytest.raises(outcome, match=f"the {verdict} message"):
        check_record(_record(verdict))


def test_gate_command_runs_the_suite_from_any_directory(tmp_path):
    """``shortcutgates gate`` from an unrelated directory: same suite, pytest's exit status, report."""
    import subprocess
    import sys

    (tmp_path / "pyproject.toml").write_text(
        "[tool.shortcutgates.thresholds]\ncore_lr_auc = 0.99\n"
        '[tool.shortcutgates.threshold_reasons]\ncore_lr_auc = "a test"\n'
    )
    cmd = [
        sys.executable,
        "-m",
        "shortcutgates.cli",
        "gate",
        "--data",
        str(SHORTCUT),
        "--gate-report",
        "rep.json",
        "--",
        "-q",
        "-k",
        "lrg_leakage or data_integrity or core_lr_auc[test-box10-raw",
    ]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "gate_suite.py::test_gate[lrg_leakage[test-pos-neg]]" in done.stdout
    report = read_report(tmp_path / "rep.json")
    by_id = {g["id"]: g for g in report["gates"]}
    assert by_id["lrg_leakage[test-pos-neg]"]["verdict"] == "fail"
    assert by_id["core_lr_auc[test-box10-raw_robust]"]["threshold"] == 0.99  # the cwd's pyproject.toml


def test_gate_command_argv_passes_options_and_pytest_args(tmp_path):
    import argparse

    from shortcutgates.gates import command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    (tmp_path / "d").mkdir()
    (tmp_path / "m.pt").write_bytes(b"")
    args = parser.parse_args(["--data", "d", "--model", "m.pt", "--", "-x", "-k", "core_lr"])
    argv = command.pytest_argv(args, tmp_path)
    assert argv[0].endswith("gate_suite.py")
    assert f"--data={tmp_path / 'd'}" in argv and f"--model={tmp_path / 'm.pt'}" in argv
    assert argv[-3:] == ["-x", "-k", "core_lr"] and not any(a.startswith("--gate-config") for a in argv)
    assert "--gate-strict" in argv and "no:cacheprovider" in argv and "no:benchmark" in argv  # strict, writes nothing
    no_strict = command.pytest_argv(parser.parse_args(["--data", "d", "--no-strict"]), tmp_path)
    assert "--gate-strict" not in no_strict and not any(a.startswith("--model") for a in no_strict)
