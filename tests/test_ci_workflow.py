"""The example GitHub Actions workflow, run as GitHub would run its shell steps, in a temp project.

The YAML is parsed; each ``run:`` step (except the network install) is executed with GitHub's
default shell, ``bash --noprofile --norc -eo pipefail``, in a temporary git repository holding a
manifest, a ``pyproject.toml`` and a checkpoint pushed in a second commit. ``${{ }}`` expressions
in step ``env:`` are replaced by what GitHub would give. Steps after a failure run only under
``if: always()``, as on GitHub.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hostile_inputs import child_env, hand_manifest, write_manifest
from toy_manifests import TINY_TRAIN_ARGS

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "gates.yml"
TRAIN = [*TINY_TRAIN_ARGS, "--epochs", "1"]
NETWORK_STEPS = {"install"}
"""Step ids not run here: they download packages (the package is installed in this environment)."""


def load_workflow() -> dict:
    flow = yaml.safe_load(WORKFLOW.read_text())
    flow["on"] = flow.pop(True, flow.get("on"))  # YAML 1.1 reads the key `on` as True
    return flow


def _git(cwd: Path, *args: str) -> str:
    env = dict(
        os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t"
    )
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env).stdout.strip()


def _expand(value: str, github: dict) -> str:
    return re.sub(r"\$\{\{\s*([\w.]+)\s*\}\}", lambda m: str(github.get(m.group(1), "")), str(value))


def run_steps(flow: dict, cwd: Path, github: dict) -> list[dict]:
    """Run the job's shell steps like the runner: returns one record per step (id, ran, returncode)."""
    job = next(iter(flow["jobs"].values()))
    env = {**child_env(), **{k: str(v) for k, v in flow.get("env", {}).items()}}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")  # `shortcutgates` on PATH
    failed, out = False, []
    for step in job["steps"]:
        if "run" not in step or step.get("id") in NETWORK_STEPS:
            continue
        if failed and "always()" not in str(step.get("if", "")):
            out.append({"id": step.get("id"), "ran": False})
            continue
        step_env = {**env, **{k: _expand(v, github) for k, v in step.get("env", {}).items()}}
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            cwd=cwd,
            env=step_env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        failed = failed or done.returncode != 0
        out.append(
            {"id": step.get("id"), "ran": True, "returncode": done.returncode, "output": done.stdout + done.stderr}
        )
    return out


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> dict:
    """A user's repository: a manifest and pyproject (commit 1), then a new checkpoint (commit 2)."""
    from shortcutgates.cli import main

    root = tmp_path_factory.mktemp("lens_project")
    _git(root, "init", "-q")
    write_manifest(hand_manifest(40), root / "data" / "manifest")
    (root / "pyproject.toml").write_text("[tool.shortcutgates]\nn_boot = 500\n")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "data")
    before = _git(root, "rev-parse", "HEAD")
    (root / "checkpoints").mkdir()
    assert (
        main(
            [
                str(a)
                for a in [
                    "train",
                    "--data",
                    root / "data" / "manifest",
                    "--out",
                    root / "checkpoints" / "e2.pt",
                    *TRAIN,
                ]
            ]
        )
        == 0
    )
    (root / "checkpoints" / "notes.txt").write_text("not a model")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "new checkpoint")
    return {"root": root, "before": before}


def test_workflow_triggers_on_new_model_files_and_uploads_always():
    flow = load_workflow()
    assert {"push", "workflow_dispatch"} <= set(flow["on"])
    assert all(p.startswith("checkpoints/") for p in flow["on"]["push"]["paths"])
    steps = next(iter(flow["jobs"].values()))["steps"]
    upload = next(s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    assert upload["if"] == "always()"
    gate = next(s for s in steps if s.get("id") == "gate")
    assert not gate.get("continue-on-error") and "if" not in gate  # a red gate fails the job
    assert all("${{" not in s.get("run", "") for s in steps)  # inputs reach scripts through env only


def test_workflow_shell_steps_gate_the_pushed_checkpoint_and_fail_the_job_on_a_red_gate(project):
    flow = load_workflow()
    steps = run_steps(flow, project["root"], {"github.event.before": project["before"]})
    by_id = {s["id"]: s for s in steps}
    assert by_id["models"]["returncode"] == 0, by_id["models"]["output"]
    results = project["root"] / flow["env"]["GATE_RESULTS"]
    assert (results / "models.txt").read_text().split() == ["checkpoints/e2.pt"]  # notes.txt is no model
    gate = by_id["gate"]
    # the one-epoch model on 40 LRGs cannot show the shortcut absent: red, exit 1, the job fails
    assert gate["returncode"] == 1, gate["output"][-3000:]
    assert "checkpoints/e2.pt: exit 1" in gate["output"]
    for suffix in (".json", ".html", ".junit.xml"):  # what the always() upload step collects
        assert (results / f"e2{suffix}").stat().st_size > 0
    from shortcutgates.gates.report_json import read_report

    report = read_report(results / "e2.json")
    assert report["data"]["path"] == str((project["root"] / "data" / "manifest").resolve())
    assert "RED" in (results / "e2.html").read_text()
    assert "gate_result" in (results / "e2.junit.xml").read_text()


def test_workflow_dispatch_names_the_model_and_missing_models_fail(project):
    flow = load_workflow()
    job = next(iter(flow["jobs"].values()))
    find = next(s for s in job["steps"] if s.get("id") == "models")
    one = run_steps(
        {"env": flow["env"], "jobs": {"gate": {"steps": [find]}}},
        project["root"],
        {"github.event.inputs.model": "checkpoints/e2.pt"},
    )
    assert one[0]["returncode"] == 0 and "gating:\ncheckpoints/e2.pt" in one[0]["output"]
    head = _git(project["root"], "rev-parse", "HEAD")
    none = run_steps(
        {"env": flow["env"], "jobs": {"gate": {"steps": [find]}}}, project["root"], {"github.event.before": head}
    )
    assert none[0]["returncode"] == 1 and "no model file to gate under checkpoints/" in none[0]["output"]
