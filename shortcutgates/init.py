"""``shortcutgates init [DIR]``: set up the gate suite in a lens-finder project.

Writes into ``DIR`` (default: the current directory):

* ``gate_tests/test_gates.py``: re-exports the installed suite, so ``pytest gate_tests --data DIR``
  runs there as in this repository;
* ``gate_tests/conftest.py``: a commented ``shortcutgates_scorer`` fixture stub (your own model);
* ``.github/workflows/shortcut-gates.yml``: the CI workflow (docs/ci.md);
* a ``[tool.shortcutgates]`` block in ``pyproject.toml`` (appended when the file has none; the file
  is created when absent; a file that has one is left alone).

Existing files are never overwritten without ``--force``; nothing is written when any would be.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

TEST_MODULE = '''"""The shortcut gates (shortcutgates): ``pytest gate_tests --data MANIFEST_DIR [--model MODEL]``.

Written by ``shortcutgates init``. The suite itself ships in the installed package; importing its test
here makes pytest collect it here. Settings: ``[tool.shortcutgates]`` in pyproject.toml.
"""

from shortcutgates.gates.gate_suite import test_gate  # noqa: F401
'''

CONFTEST = '''"""Your lens finder for the gates, when it is neither a .onnx nor a .pt2 file (written by ``shortcutgates init``).

Uncomment and adapt the fixture; then ``pytest gate_tests --data MANIFEST_DIR`` gates it (without
``--model``). Contract: ``images`` float32 (N, 3, H, W) in nanomaggies, bands g, r, z as stored in the
manifest; return (N,) scores, higher = more lens-like; do your own preprocessing. docs/scorers.md.
"""

# import numpy as np
# import pytest
#
#
# @pytest.fixture(scope="session")
# def shortcutgates_scorer():
#     import torch
#
#     from my_package import LensFinder, preprocess   # your network and its input scaling
#
#     model = LensFinder()
#     model.load_state_dict(torch.load("checkpoints/finder.pt", weights_only=True))
#     model.eval()
#
#     def score(images: np.ndarray) -> np.ndarray:
#         with torch.no_grad():
#             return model(torch.from_numpy(preprocess(images))).reshape(-1).numpy()
#
#     return score
'''

PYPROJECT_BLOCK = """
[tool.shortcutgates]
# Settings of the shortcut gates (shortcutgates init; README "Gate settings").
max_samples = 4000          # rows per split, stratified by label and LRG
n_boot = 1000               # LRG bootstrap resamples (>= 500)
# primary = ["cross_test_gap"]   # promote a reported case to decide the run (large test splits only)

[tool.shortcutgates.thresholds]
# core_lr_auc = 0.65                  # by gate name ...
# "detection_auroc[val]" = 0.85       # ... or by case id

[tool.shortcutgates.waivers]
# "detection_auroc[test_paired]" = "test_paired comes from another survey region (our issue #12)"
"""

WORKFLOW_NAME = Path(".github") / "workflows" / "shortcut-gates.yml"


def workflow_text() -> str:
    """The example workflow shipped with the package (the repository's .github/workflows/gates.yml)."""
    from importlib.resources import files

    return files("shortcutgates").joinpath("data", "gates.yml").read_text()


def planned_files(root: Path) -> dict[Path, str]:
    """Files ``init`` writes (path -> text), the pyproject block aside."""
    return {
        root / "gate_tests" / "test_gates.py": TEST_MODULE,
        root / "gate_tests" / "conftest.py": CONFTEST,
        root / WORKFLOW_NAME: workflow_text(),
    }


def init_project(root, *, force: bool = False) -> list[str]:
    """Write the gate suite's files into project ``root``; returns one line per action.

    Raises
    ------
    FileExistsError
        A file to write exists (and differs) and ``force`` is False: nothing is written.
    """
    from shortcutgates.data.io import write_bytes_atomic

    root = Path(root).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"init: {root} is not a directory")
    files = planned_files(root)
    clash = [p for p, text in files.items() if p.exists() and p.read_text() != text]
    if clash and not force:
        raise FileExistsError(
            f"init: {', '.join(str(p) for p in clash)} exist(s); nothing was written (rerun with --force to overwrite)"
        )
    lines = []
    for path, text in files.items():
        if path.exists() and path.read_text() == text:
            lines.append(f"unchanged {path}")
            continue
        write_bytes_atomic(path, text.encode())
        lines.append(f"wrote {path}")
    pyproject = root / "pyproject.toml"
    if not pyproject.exists():
        write_bytes_atomic(pyproject, PYPROJECT_BLOCK.lstrip().encode())
        lines.append(f"wrote {pyproject} ([tool.shortcutgates])")
    elif "[tool.shortcutgates]" in pyproject.read_text():
        lines.append(f"kept {pyproject} (it has a [tool.shortcutgates] table)")
    else:
        text = pyproject.read_text()
        write_bytes_atomic(pyproject, (text + ("" if text.endswith("\n") else "\n") + PYPROJECT_BLOCK).encode())
        lines.append(f"added [tool.shortcutgates] to {pyproject}")
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``shortcutgates init``."""
    parser.add_argument("dir", nargs="?", default=".", metavar="DIR", help="project directory. Default: %(default)r")
    parser.add_argument(
        "--force", action="store_true", help="overwrite files init wrote before (or yours of that name)"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``shortcutgates init``; prints what it wrote and the next command."""
    for line in init_project(args.dir, force=args.force):
        print(line)
    print(
        "next: pytest gate_tests --data MANIFEST_DIR --model finder.onnx   (or a shortcutgates_scorer fixture in "
        "gate_tests/conftest.py; README: Gating your own lens finder)",
        file=sys.stderr,
    )
    return 0
