"""The ways a model reaches the gate suite, run the way users run them.

* ``pytest gate_tests --model ckpt.pt`` with no ``--data``: the checkpoint's recorded manifest,
  sha256 checked; moved or changed manifests are one line naming ``--data``.
* a ``shortcutgates_scorer`` fixture in the user's ``conftest.py`` (pytest in a project, and
  ``shortcutgates gate`` from the user's repository), giving the same gate values as the same
  network exported to ONNX and ``.pt2``;
* strict mode: expected gates that did not run fail the run; ``shortcutgates gate`` errors are one
  line with the README's exit codes and nothing is written into the working directory;
* many checkpoints (``train --keep-epochs``, ``gate --model DIR --out``): one report each, data
  gates measured once, a summary table and a figure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import shortcutgates.model.checkpoint  # noqa: F401  (imported before pytester's in-process runs)
import shortcutgates.gates.registry  # noqa: F401
import foreign_model as fm
from hostile_inputs import STAMP, child_env, hand_manifest, write_manifest
from shortcutgates.gates.report_json import read_report
from toy_manifests import TINY_TRAIN_ARGS

pytestmark = pytest.mark.filterwarnings("ignore:Benchmarks are automatically disabled")

TESTS = Path(__file__).resolve().parent
TRAIN = TINY_TRAIN_ARGS
CHEAP = "data_integrity or detection_auroc"


@pytest.fixture(scope="module", autouse=True)
def _import_lazy_modules(foreign):
    """Load lazily imported modules (pandas' Arrow extension types, sklearn, onnx, onnxruntime, torch.export)
    before pytester's in-process runs, which drop modules first imported inside them: extension modules
    and Arrow type registrations cannot be loaded twice in one process."""
    import pandas as pd

    from shortcutgates.gates.registry import GateConfig, GateContext, gate_cases, run_case
    from shortcutgates.model.scorers import load_scorer

    shortcut = TESTS.parent / "fixtures" / "data" / "shortcut"
    pd.read_parquet(shortcut / "test.parquet", columns=["label"])
    ctx = GateContext(shortcut, model=TESTS.parent / "fixtures" / "checkpoints" / "clever_hans.pt", config=GateConfig())
    for case in gate_cases(ctx):
        if case.id in ("data_integrity", "lrg_leakage[test-pos-neg]", "detection_auroc[test]"):
            run_case(ctx, case)
    for kind in ("onnx", "pt2"):
        load_scorer(foreign[kind])


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A manifest, a 3-epoch checkpoint trained on it, and its per-epoch checkpoints."""
    from shortcutgates.cli import main

    tmp = tmp_path_factory.mktemp("trained")
    write_manifest(hand_manifest(40), tmp / "manifest")
    ckpt = tmp / "e2.pt"
    assert (
        main(
            [
                str(a)
                for a in ["train", "--data", tmp / "manifest", "--out", ckpt, "--epochs", "3", "--keep-epochs", *TRAIN]
            ]
        )
        == 0
    )
    return {"manifest": tmp / "manifest", "ckpt": ckpt, "epochs": tmp / "e2_epochs"}


@pytest.fixture(scope="module")
def foreign(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("foreign_files")
    model = fm.make_model()
    torch.save(model.state_dict(), tmp / "patchnet_weights.pt")
    return {
        "weights": tmp / "patchnet_weights.pt",
        "onnx": fm.export_onnx(model, tmp / "patchnet.onnx", STAMP),
        "pt2": fm.export_pt2(model, tmp / "patchnet.pt2", STAMP),
    }


@pytest.fixture
def suite(pytester):
    pytester.makepyfile(test_gates="from shortcutgates.gates.gate_suite import test_gate  # noqa: F401\n")
    pytester.syspathinsert(TESTS)  # the user's conftest imports foreign_model
    return pytester


def _gates(path) -> dict:
    return {g["id"]: g for g in read_report(path)["gates"]}


# --- --model alone -------------------------------------------------------------------------------
def test_model_alone_gates_the_manifest_the_checkpoint_records(suite, trained):
    result = suite.runpytest(f"--model={trained['ckpt']}", "--gate-report=r.json", "-k", CHEAP)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-2000:]
    report = read_report(suite.path / "r.json")
    assert report["data"]["path"] == str(trained["manifest"].resolve())
    assert report["model"]["kind"] == "shortcutgates.checkpoint" and report["model"]["path"] == str(trained["ckpt"])
    assert _gates(suite.path / "r.json")["detection_auroc[test]"]["verdict"] != "skipped"


def test_changed_or_moved_manifest_is_one_line_naming_data(suite, trained, tmp_path):
    manifest = tmp_path / "manifest"
    shutil.copytree(trained["manifest"], manifest)
    ckpt = tmp_path / "c.pt"
    payload = torch.load(trained["ckpt"], weights_only=True)
    payload["data"]["manifest"] = str(manifest)
    torch.save(payload, ckpt)
    assert suite.runpytest(f"--model={ckpt}", "-k", "data_integrity").ret == pytest.ExitCode.OK
    frame = pd.read_parquet(manifest / "part-0000.parquet")
    frame.iloc[:-1].to_parquet(manifest / "part-0000.parquet")  # a row dropped
    changed = suite.runpytest(f"--model={ckpt}", "-k", "data_integrity")
    assert changed.ret == pytest.ExitCode.USAGE_ERROR
    assert changed.stderr.lines[0].startswith(
        f"ERROR: shortcutgates: {ckpt}: its training manifest {manifest} has changed since training (sha256 "
    )
    assert changed.stderr.lines[0].endswith("now); pass the manifest to gate with --data DIR")
    shutil.rmtree(manifest)
    moved = suite.runpytest(f"--model={ckpt}")
    assert moved.ret == pytest.ExitCode.USAGE_ERROR
    assert "is not there (moved or deleted); pass the manifest to gate with --data DIR" in moved.stderr.str()


def test_onnx_without_data_says_to_pass_data(suite, foreign):
    result = suite.runpytest(f"--model={foreign['onnx']}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "a .onnx file records no manifest; pass the data to gate with --data DIR" in result.stderr.str()


# --- the fixture, ONNX and .pt2: one network, the same gate values -----------------------------------
def test_fixture_onnx_and_pt2_give_the_same_gate_values(suite, trained, foreign):
    data = f"--data={trained['manifest']}"
    select = ["-k", "detection_auroc or core_lr_auc"]
    values = {}
    for kind in ("onnx", "pt2"):
        suite.runpytest(data, f"--model={foreign[kind]}", f"--gate-report={kind}.json", *select)
        values[kind] = _gates(suite.path / f"{kind}.json")
    suite.makeconftest(fm.CONFTEST.format(weights=str(foreign["weights"])))
    suite.runpytest(data, "--gate-report=fixture.json", *select)
    values["fixture"] = _gates(suite.path / "fixture.json")
    assert read_report(suite.path / "fixture.json")["model"]["kind"] == "callable"
    for case in ("detection_auroc[test]", "detection_auroc[val]"):
        got = [values[k][case] for k in ("fixture", "onnx", "pt2")]
        assert all(g["verdict"] in ("pass", "fail", "inconclusive") for g in got), got
        assert got[0]["value"] == pytest.approx(got[1]["value"], abs=1e-9) == pytest.approx(got[2]["value"], abs=1e-9)
        assert got[0]["ci"] == pytest.approx(got[1]["ci"], abs=1e-9)
    # preprocessing "none" (the files' contract, the fixture's .preprocess): the model-input probe sees raw stamps
    probe = [values[k]["core_lr_auc[test-box10-model]"] for k in ("fixture", "onnx", "pt2")]
    assert probe[0]["verdict"] != "skipped" and probe[0]["value"] == probe[1]["value"] == probe[2]["value"]


def test_fixture_and_model_together_are_a_usage_error(suite, trained, foreign):
    suite.makeconftest(fm.CONFTEST.format(weights=str(foreign["weights"])))
    result = suite.runpytest(f"--data={trained['manifest']}", f"--model={trained['ckpt']}", "-k", "data_integrity")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "both --model and a 'shortcutgates_scorer' fixture give the model; use one" in result.stderr.str()


def test_fixture_returning_no_callable_fails_model_gates_with_one_line(suite, trained):
    suite.makeconftest(
        "import pytest\n\n@pytest.fixture(scope='session')\ndef shortcutgates_scorer():\n"
        "    return {'not': 'callable'}\n"
    )
    result = suite.runpytest(f"--data={trained['manifest']}", "-k", "detection_auroc[test]")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*shortcutgates: fixture shortcutgates_scorer: must return a callable*"])


# --- strict mode --------------------------------------------------------------------------------------
def test_strict_mode_fails_a_run_that_left_expected_gates_unrun(suite, trained):
    select = ["-k", "data_integrity or detection_auroc[test]"]
    lenient = suite.runpytest(f"--data={trained['manifest']}", *select)
    assert lenient.ret == pytest.ExitCode.OK
    lenient.assert_outcomes(passed=1, skipped=1)
    strict = suite.runpytest(f"--data={trained['manifest']}", *select, "--gate-strict")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    strict.stdout.fnmatch_lines(
        [
            "NOT RUN: * gates did not run: deselected (-k / -m); no model given*",
            "  deselected (-k / -m): lrg_leakage[[]train-pos-neg[]], *",
            "  no model given*: detection_auroc[[]test[]]",
            "STRICT: * expected gates did not run, so this run has not shown the shortcut absent*",
        ]
    )


# --- shortcutgates gate, run from the user's repository -------------------------------------------------
def _gate(args, cwd, timeout=300) -> subprocess.CompletedProcess:
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "shortcutgates.cli", "gate", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def _listing(root: Path) -> set:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_gate_command_sees_the_users_conftest_and_writes_only_what_was_asked(trained, foreign, tmp_path):
    repo = tmp_path / "lens_repo"
    repo.mkdir()
    (repo / "conftest.py").write_text(fm.CONFTEST.format(weights=str(foreign["weights"])))
    before = _listing(repo)
    done = _gate(
        [
            "--data",
            trained["manifest"],
            "--gate-report",
            "gates.json",
            "--no-strict",
            "--",
            "-q",
            "-k",
            "detection_auroc[test]",
        ],
        repo,
    )
    assert done.returncode in (0, 1), done.stdout[-2000:] + done.stderr[-2000:]
    report = read_report(repo / "gates.json")
    assert report["model"]["kind"] == "callable"
    assert _gates(repo / "gates.json")["detection_auroc[test]"]["verdict"] != "skipped"
    assert _listing(repo) - before == {"gates.json"}  # no .benchmarks, .pytest_cache, __pycache__


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "nowhere"], "shortcutgates gate: error: --data nowhere: no such directory or file: "),
        (["--model", "nowhere.pt"], "shortcutgates gate: error: --model "),
        ([], "shortcutgates gate: error: --data DIR is needed"),
    ],
    ids=["data", "model", "nothing"],
)
def test_gate_command_bad_input_is_one_line_exit_2(tmp_path, args, message):
    done = _gate(args, tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(message) and done.stderr.count("\n") == 1, done.stderr
    assert "pytest.main" not in done.stderr and not any(tmp_path.iterdir())


def test_gate_command_is_strict_by_default(trained, tmp_path):
    done = _gate(["--data", trained["manifest"], "--", "-q", "-k", "data_integrity"], tmp_path)
    assert done.returncode == 1 and "STRICT: " in done.stdout
    lenient = _gate(["--data", trained["manifest"], "--no-strict", "--", "-q", "-k", "data_integrity"], tmp_path)
    assert lenient.returncode == 0, lenient.stdout[-1500:]


# --- every checkpoint ------------------------------------------------------------------------------------
def test_keep_epochs_writes_one_checkpoint_per_epoch(trained):
    files = sorted(p.name for p in trained["epochs"].iterdir())
    assert files == ["epoch000.pt", "epoch001.pt", "epoch002.pt"]
    payload = torch.load(trained["epochs"] / "epoch001.pt", weights_only=True)
    assert payload["epoch"] == 1 and payload["resume"] is None
    assert len(payload["metrics"]["history"]) == 2


def test_many_checkpoints_one_data_read(trained, tmp_path, monkeypatch):
    from shortcutgates.gates import sweep
    from shortcutgates.gates.context import GateContext

    made = []
    original = GateContext.__init__

    def counting_init(self, *args, **kwargs):
        made.append(args[0] if args else kwargs.get("data"))
        original(self, *args, **kwargs)

    monkeypatch.setattr(GateContext, "__init__", counting_init)
    models = sorted(trained["epochs"].iterdir())
    code = sweep.gate_many(None, models, tmp_path / "out", progress=False)
    assert len(made) == 1  # the manifest is read once, for all three checkpoints
    table = pd.read_csv(tmp_path / "out" / sweep.SUMMARY_FILE)
    assert list(table["model"]) == ["epoch000", "epoch001", "epoch002"]
    assert code == int((table["verdict"] == "RED").any())
    reports = [read_report(tmp_path / "out" / f"epoch00{i}.json") for i in range(3)]
    assert [r["model"]["epoch"] for r in reports] == [0, 1, 2]
    data_ids = [g["id"] for g in reports[0]["gates"] if g["gate"] in ("data_integrity", "lrg_leakage")]
    for r in reports[1:]:  # data gates: measured once, the same record in every report
        by_id = {g["id"]: g for g in r["gates"]}
        assert all(by_id[i] == {g["id"]: g for g in reports[0]["gates"]}[i] for i in data_ids)
    auroc = [{g["id"]: g for g in r["gates"]}["detection_auroc[val]"]["value"] for r in reports]
    assert auroc == list(table["detection_auroc[val]"])
    assert (tmp_path / "out" / sweep.FIGURE_FILE).read_bytes()[:4] == b"\x89PNG"


def test_gate_command_takes_a_directory_of_checkpoints(trained, tmp_path):
    done = _gate(["--model", trained["epochs"], "--out", "sweep"], tmp_path)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    assert "3 models" in done.stdout and {p.name for p in (tmp_path / "sweep").iterdir()} == {
        "epoch000.json",
        "epoch001.json",
        "epoch002.json",
        "summary.csv",
        "gates_by_model.png",
    }
    no_out = _gate(["--model", trained["epochs"]], tmp_path)
    assert no_out.returncode == 2 and "3 models: name a directory for their reports with --out DIR" in no_out.stderr


def test_a_sweep_gates_each_model_on_the_case_set_of_a_single_run(tmp_path, monkeypatch):
    """A residual model gets no radial_profile_lr_auc[*-model] case in a sweep, as in a single run;
    summary.csv's first_failing names a model case when one is red."""
    from shortcutgates.model import scorers
    from shortcutgates.gates import sweep
    from shortcutgates.gates.context import GateContext
    from shortcutgates.gates.registry import gate_cases, load_config

    write_manifest(hand_manifest(24), tmp_path / "data")

    def constant_ish(images):  # a scorer that cannot detect anything: its model gates are red (error)
        return np.asarray(images, np.float64)[:, 1, 0, 0]

    preprocess = {"raw.pt": "raw_robust", "residual.pt": "residual"}
    monkeypatch.setattr(
        scorers,
        "load_scorer",
        lambda path, cache=None: scorers.Scorer(
            constant_ish, preprocess[Path(path).name], {"path": str(path), "kind": "callable"}
        ),
    )
    models = [tmp_path / name for name in preprocess]
    sweep.gate_many(tmp_path / "data", models, tmp_path / "out", progress=False, strict=False)
    for path, mode in zip(models, preprocess.values()):
        single = GateContext(tmp_path / "data", config=load_config(None)).with_scorer(constant_ish, mode, path)
        swept = [g["id"] for g in read_report(tmp_path / "out" / f"{path.stem}.json")["gates"]]
        assert swept == [c.id for c in gate_cases(single)]
    residual = read_report(tmp_path / "out" / "residual.json")["gates"]
    assert not [g["id"] for g in residual if g["gate"] == "radial_profile_lr_auc" and g["params"]["input"] == "model"]
    table = pd.read_csv(tmp_path / "out" / sweep.SUMMARY_FILE)
    for name, first in zip(table["model"], table["first_failing"]):
        record = {g["id"]: g for g in read_report(tmp_path / "out" / f"{name}.json")["gates"]}[first]
        assert sweep.is_red(record) and (
            record["gate"] not in sweep.DATA_ONLY_GATES or record["params"].get("input") == "model"
        )
    data_red = [
        g["id"]
        for g in residual
        if sweep.is_red(g) and g["gate"] in sweep.DATA_ONLY_GATES and g["params"].get("input") != "model"
    ]
    assert data_red and list(table["first_failing_data"]) == [data_red[0]] * 2  # data gates: one read, both models
