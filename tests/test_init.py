"""``shortcutgates init``: the gate suite in a user's project, run from outside this repository (issue 23, item 3)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shortcutgates import cli
from shortcutgates.init import CONFTEST, TEST_MODULE, init_project

from hostile_inputs import child_env, hand_manifest, write_manifest

REPO = Path(__file__).resolve().parents[1]


def test_init_writes_the_suite_the_stub_the_settings_and_the_workflow(tmp_path, capsys):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "finder"\n')
    assert cli.main(["init", str(tmp_path)]) == 0
    assert (tmp_path / "gate_tests" / "test_gates.py").read_text() == TEST_MODULE
    conftest = (tmp_path / "gate_tests" / "conftest.py").read_text()
    assert conftest == CONFTEST and "# def shortcutgates_scorer():" in conftest  # commented: collects no fixture
    assert (tmp_path / ".github" / "workflows" / "shortcut-gates.yml").read_text() == (
        REPO / ".github" / "workflows" / "gates.yml"
    ).read_text()
    pyproject = (tmp_path / "pyproject.toml").read_text()
    assert pyproject.startswith('[project]\nname = "finder"\n') and pyproject.count("[tool.shortcutgates]") == 1
    assert cli.main(["init", str(tmp_path)]) == 0  # a second run changes nothing
    assert (tmp_path / "pyproject.toml").read_text() == pyproject
    assert "unchanged" in capsys.readouterr().out


def test_init_refuses_to_overwrite_without_force(tmp_path, capsys):
    init_project(tmp_path)
    mine = tmp_path / "gate_tests" / "conftest.py"
    mine.write_text("# my fixture\n")
    assert cli.main(["init", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(mine) in err and "--force" in err and err.count("\n") == 1
    assert mine.read_text() == "# my fixture\n"
    assert cli.main(["init", str(tmp_path), "--force"]) == 0 and mine.read_text() == CONFTEST


def test_the_shipped_workflow_is_the_repositorys():
    from shortcutgates.init import workflow_text

    assert workflow_text() == (REPO / ".github" / "workflows" / "gates.yml").read_text()


@pytest.mark.parametrize("how", ["gate_tests", "pyargs"])
def test_the_suite_runs_in_a_project_outside_the_repository(tmp_path, how):
    """README's `pytest gate_tests --data DIR` in a fresh project set up by init (and --pyargs), with its settings."""
    write_manifest(hand_manifest(16), tmp_path / "data" / "manifest")
    init_project(tmp_path)
    target = ["gate_tests"] if how == "gate_tests" else ["--pyargs", "shortcutgates.gate_tests"]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *target,
            "--data",
            "data/manifest",
            "-k",
            "data_integrity",
            "--gate-report",
            "gates.json",
            "-p",
            "no:cacheprovider",
        ],
        cwd=tmp_path,
        env=child_env(PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert f"config={tmp_path / 'pyproject.toml'}" in done.stdout  # init's [tool.shortcutgates] block is read
    records = {g["id"]: g for g in json.loads((tmp_path / "gates.json").read_text())["gates"]}
    assert records["data_integrity"]["verdict"] == "pass"
