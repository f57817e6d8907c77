"""Data-only work does not import torch: the gate registry, the codec, the loader, and a whole
``pytest gate_tests --data DIR`` session without a model (each in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys

from hostile_inputs import REPO, child_env

HEAVY = ("torch",)


def _modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint('LOADED', sorted(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, env=child_env(), timeout=300
    )
    assert "LOADED" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
    return set(eval(done.stdout.rsplit("LOADED", 1)[1]))


DATA_ONLY = (
    "shortcutgates.gates.registry",
    "shortcutgates.data.codec",
    "shortcutgates.model.dataset",
    "shortcutgates.data.manifest",
    "shortcutgates.data.build",
    "shortcutgates.plugin",
    "shortcutgates.gates.context",
)


def test_data_only_modules_leave_torch_out():
    assert _modules_after("\n".join(f"import {m}" for m in DATA_ONLY)) == set()


def test_data_only_gate_session_leaves_torch_out():
    code = (
        "import pytest\n"
        "rc = pytest.main(['gate_tests', '--data', 'fixtures/data/clean', '-q', '-p', 'no:cacheprovider'])\n"
        "assert rc == 0, rc"
    )
    assert _modules_after(code) == set()
