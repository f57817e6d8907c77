"""Move the flat top-level modules into packages that show the pipeline, and rewrite every reference.

Run once on merged ``main`` from the repository root, with a clean work tree (so ``git checkout .``
and ``git clean`` undo it)::

    python scripts/dev/relayout.py            # moves, rewrites, formats; prints what it did
    python scripts/dev/relayout.py --dry-run  # prints the plan only

Layout after the move (issue 18, "a layout that shows the pipeline")::

    shortcutgates/data/    schema, codec, io, blob_rows, manifest, identity, splits, build, hard_negatives
    shortcutgates/model/   preprocess, augment, dataset, network (was model.py), train, checkpoint,
                           evaluate, scorers, scorer_contract, exported
    shortcutgates/         cli, plugin, plugin_session, init, parallel, stats, testing (unchanged),
                           simulate/, gates/, calibrate/, experiment/, gate_tests/ (unchanged)

The network module becomes ``shortcutgates.model.network`` (a package ``model/`` cannot also be the
module ``model.py``): ``shortcutgates.model.ModelConfig`` is spelled
``shortcutgates.model.network.ModelConfig``. The new packages' ``__init__.py`` hold a docstring only
(importing ``shortcutgates.model.scorers`` must not import torch).

Steps, each idempotent (a second run changes nothing):

1. relative imports become absolute ones (``ruff check --select TID252 --fix``, with
   ``ban-relative-imports = "all"``), so a moved module's imports need no recomputing; the ruff
   settings keep it that way;
2. ``git mv`` of every module of :data:`MOVES` whose old file exists (and ``__init__.py`` of each new
   package);
3. every reference is rewritten, in ``shortcutgates/``, ``tests/``, ``benchmarks/``, ``gate_tests/``,
   ``scripts/``, ``fixtures/`` (its scripts), ``docs/``, README, CONTRIBUTING, ``pyproject.toml``, ``conftest.py``, ``.ci/``,
   ``.github/`` and the pre-commit config: ``from shortcutgates import codec`` forms by their syntax
   tree (split per new package), and every dotted name ``shortcutgates.codec[.x]`` or path
   ``shortcutgates/codec.py`` as text. Format identifiers that look like module names
   (``"format": "shortcutgates.manifest"``, ``FORMAT = "shortcutgates.checkpoint"``, a ``kind``) are
   kept: files written before the move stay readable. CHANGELOG.md is history: it gets one entry;
4. ``.ci/run`` gets ``ruff format --check``, the docs' layout block is replaced, and
   ``ruff format .`` then ``ruff check --fix .`` run over the tree (``--no-format``: neither; the
   formatter wraps the tree's packed 120-column lines, so modules and functions grow by about a fifth
   and some pass the limits of ``tests/test_layout.py``, which the script lists at the end);
5. top-level modules that are neither moved nor kept (added after this script was written) are
   listed: move them with ``--move old=package.new`` (repeatable) or leave them.

Checks to run afterwards: ``ruff check .``, ``ruff format --check .``, ``mypy``, ``pytest``.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path.cwd()
PKG = "shortcutgates"

MOVES: dict[str, str] = {
    # the data pipeline: formats, reading, identity, splits, the builder
    "schema": "data.schema",
    "codec": "data.codec",
    "io": "data.io",
    "blob_rows": "data.blob_rows",
    "manifest": "data.manifest",
    "identity": "data.identity",
    "splits": "data.splits",
    "build": "data.build",
    "hard_negatives": "data.hard_negatives",
    # the model: its input, the network, training, checkpoints, scoring, the ways a model comes in
    "preprocess": "model.preprocess",
    "augment": "model.augment",
    "dataset": "model.dataset",
    "model": "model.network",
    "train": "model.train",
    "checkpoint": "model.checkpoint",
    "evaluate": "model.evaluate",
    "scorers": "model.scorers",
    "scorer_contract": "model.scorer_contract",
    "exported": "model.exported",
}
"""Old module (under ``shortcutgates``) -> new dotted name (under ``shortcutgates``)."""

KEEP = {"__init__", "cli", "plugin", "plugin_session", "init", "parallel", "stats", "testing"}
"""Top-level modules that stay where they are."""

PACKAGE_DOCS = {
    "data": '"""The data pipeline: column schema, stamp codec, file IO, manifests, LRG identity, splits, the\n'
    'manifest builder and hard negatives (``docs/design.md``). No torch."""\n',
    "model": '"""The lens finder: preprocessing, augmentation, the torch dataset, the network, training,\n'
    "checkpoints, evaluation, and the ways a model comes in to be gated (scorers: checkpoint,\n"
    '``.onnx``, ``.pt2``, a callable). Importing the package imports nothing."""\n',
}

REWRITE_DIRS = ("shortcutgates", "tests", "benchmarks", "gate_tests", "scripts", "fixtures", "docs", ".ci", ".github")
REWRITE_FILES = ("README.md", "CONTRIBUTING.md", "pyproject.toml", "conftest.py", ".pre-commit-config.yaml")
SUFFIXES = {".py", ".pyi", ".md", ".rst", ".toml", ".yml", ".yaml", ".cfg", ".ini", ".sh", ".txt"}
SKIP_PARTS = {".git", ".venv", ".venv-ci", "__pycache__", "node_modules"}

FORMAT_IDS = {"checkpoint", "manifest"}
"""Old module names that are also format identifiers (``"shortcutgates.checkpoint"``,
``"shortcutgates.manifest"``): kept where the text just before says so (:data:`FORMAT_CONTEXT`)."""
FORMAT_CONTEXT = re.compile(r"(format|FORMAT|kind|plain dict)[^\n.]{0,24}$")

LAYOUT_BLOCK = """shortcutgates/
  data/            the data pipeline, no torch:
    schema.py        column names, npz keys, geometry; DataError (file, row, column)
    codec.py         stamp blobs: encode, decode (zlib fast path), the one bad-row policy
    io.py            parquet in and out, the atomic file / directory / PNG writers, JSON
    blob_rows.py     fetching the blob rows a manifest points to, streamed one row group at a time
    manifest.py      reading built or hand-written manifests and their images
    identity.py      lrg_id by friends-of-friends sky matching (tolerance 0.5″)
    splits.py        hash splits, unpaired pools, property matching, test_paired
    build.py         the manifest builder; hard_negatives.py: hard negatives
    gates.yml        the example CI workflow `shortcutgates init` writes
  model/           the lens finder:
    preprocess.py    raw_robust, residual
    augment.py, dataset.py, network.py (the CNN), train.py, checkpoint.py, evaluate.py
    scorers.py       the ways a model comes in: checkpoint, a callable, load_scorer by suffix
    scorer_contract.py  input contracts, Scorer, the preprocessing cache of a sweep
    exported.py      .onnx and .pt2 files: checked, then loaded
  simulate/        kernels (Sérsic, SIE + shear, Moffat), adaptive renderer, real-galaxy sources, population, generator, realism
  gates/           contract (Measurement), registry (one keyword row per gate), decision, context and
                   sample (the per-split sample), data gates + probes, model gates + paired
                   (counterfactual arithmetic) + perturb, reference scorers, suite.py (the one
                   red/green rule `outcome` and the one loop `run_suite`), gate_suite.py, options.py,
                   summary table, report JSON/HTML, gate_docs.py (the generated gate tables),
                   not-run accounting, many-checkpoint sweep, command
  calibrate/       the calibration harness: simulated pool, planted problems, seed loop, rates, report
  experiment/      run (E1–E4), measure, lens-search metrics, report, figures, text, demo
  plugin.py        pytest hooks and fixtures (entry point pytest11); plugin_session.py: the per-run state
  cli.py, init.py, parallel.py, stats.py (AUROC with an LRG-resampling bootstrap), testing.py (Hypothesis strategies)
gate_tests/        what users run against a checkpoint
tests/             the library's own tests (unit, Hypothesis, pytester, hostile inputs, interrupts, import graph, layout)
benchmarks/        pytest-benchmark, and the interval-coverage script
fixtures/          small deterministic datasets, two tiny checkpoints, make_fixtures.py
scripts/           make_hdf_sources.py (the shipped real-galaxy source library), dev/relayout.py (this layout)
docs/              design.md (the spec), measurements with the commands that made them
.github/workflows/ gates.yml: an example CI job that gates each new checkpoint
"""

RUFF_RELATIVE = 'lint.flake8-tidy-imports.ban-relative-imports = "all"'


def ruff() -> list[str]:
    """The ruff command: this Python's module, else ``ruff`` on PATH."""
    if importlib.util.find_spec("ruff") is not None:
        return [sys.executable, "-m", "ruff"]
    found = shutil.which("ruff")
    if found is None:
        sys.exit("relayout: ruff is not installed (pip install -e '.[dev]')")
    return [found]


def run(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess:
    print("$", " ".join(cmd))
    return subprocess.run(cmd, cwd=ROOT, check=check, text=True, capture_output=True)


def module_file(dotted: str) -> Path:
    return ROOT / PKG / (dotted.replace(".", "/") + ".py")


# --- 1. relative imports -> absolute -------------------------------------------------------------
def absolute_imports(dry: bool) -> None:
    args = ruff() + ["check", "--select", "TID252", "--config", RUFF_RELATIVE, PKG]
    if dry:
        found = run(args, check=False).stdout.strip().splitlines()
        print(f"  would make relative imports absolute ({found[-1] if found else 'none'})")
        return
    out = run(args + ["--fix", "--unsafe-fixes"], check=False)
    left = run(args, check=False)
    if left.returncode != 0:
        sys.exit(f"relayout: relative imports ruff could not fix:\n{left.stdout}{left.stderr}")
    print(f"  relative imports made absolute: {out.stdout.strip().splitlines()[-1] if out.stdout.strip() else 'none'}")


# --- 2. moves ----------------------------------------------------------------------------------
def move_modules(moves: dict[str, str], dry: bool) -> list[str]:
    done = []
    for package in sorted({new.split(".")[0] for new in moves.values()}):
        init = ROOT / PKG / package / "__init__.py"
        if not init.exists():
            done.append(f"create {init.relative_to(ROOT)}")
            if not dry:
                init.parent.mkdir(exist_ok=True)
                init.write_text(PACKAGE_DOCS.get(package, f'"""{package}."""\n'), encoding="utf-8")
                run(["git", "add", str(init.relative_to(ROOT))])
    for old, new in moves.items():
        src, dst = module_file(old), module_file(new)
        if src.exists() and not dst.exists():
            done.append(f"git mv {src.relative_to(ROOT)} {dst.relative_to(ROOT)}")
            if not dry:
                run(["git", "mv", str(src.relative_to(ROOT)), str(dst.relative_to(ROOT))])
        elif src.exists() and dst.exists() and src != dst:
            sys.exit(f"relayout: both {src} and {dst} exist; resolve by hand")
    return done


# --- 3. references -----------------------------------------------------------------------------
def dotted_pattern(moves: dict[str, str]) -> re.Pattern:
    """``shortcutgates.<old>`` as a whole dotted name (not followed by ``-``, ``/`` or a word character,
    nor, for an old module whose name is now a package, by one of that package's new modules)."""
    alternatives = []
    for old in sorted(moves, key=len, reverse=True):
        children = sorted({new.split(".", 1)[1] for new in moves.values() if new.split(".")[0] == old and "." in new})
        names = "|".join(map(re.escape, children))
        # neither ``shortcutgates.model.network`` nor ``from shortcutgates.model import network``
        guard = rf"(?!\.(?:{names})\b)(?!\s+import\s+\(?\s*(?:{names})\b)" if children else ""
        alternatives.append(rf"{re.escape(old)}{guard}")
    return re.compile(rf"(?<![\w.]){PKG}\.({'|'.join(alternatives)})(?![\w/-])")


def path_pattern(moves: dict[str, str]) -> re.Pattern:
    return re.compile(rf"(?<![\w]){PKG}/({'|'.join(map(re.escape, sorted(moves, key=len, reverse=True)))})\.py\b")


def rewrite_text(text: str, moves: dict[str, str]) -> str:
    dotted, paths = dotted_pattern(moves), path_pattern(moves)

    def dotted_sub(m: re.Match) -> str:
        line_start = text.rfind("\n", 0, m.start()) + 1
        if (
            m.group(1) in FORMAT_IDS
            and text[m.end() : m.end() + 1] != "."
            and FORMAT_CONTEXT.search(text[line_start : m.start()])
        ):
            return m.group(0)
        return f"{PKG}.{moves[m.group(1)]}"

    text = dotted.sub(dotted_sub, text)
    return paths.sub(lambda m: f"{PKG}/{moves[m.group(1)].replace('.', '/')}.py", text)


def rewrite_from_imports(source: str, moves: dict[str, str]) -> str:
    """``from shortcutgates[.pkg] import old [as x], other`` -> one import per new parent package."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    full = {f"{PKG}.{old}": f"{PKG}.{new}" for old, new in moves.items()}
    lines = source.splitlines(keepends=True)
    edits = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module):
            continue
        if not any(f"{node.module}.{a.name}" in full for a in node.names):
            continue
        groups: dict[str, list[str]] = {}
        for a in node.names:
            target = full.get(f"{node.module}.{a.name}")
            if target is None:
                parent, name, alias = node.module, a.name, a.asname
            else:
                parent, name = target.rsplit(".", 1)
                alias = a.asname or (a.name if name != a.name else None)
            groups.setdefault(parent, []).append(name + (f" as {alias}" if alias else ""))
        indent = lines[node.lineno - 1][: node.col_offset]
        text = f"\n{indent}".join(f"from {parent} import {', '.join(names)}" for parent, names in groups.items())
        edits.append((node.lineno, node.col_offset, node.end_lineno, node.end_col_offset, text))
    for lineno, col, end_lineno, end_col, text in sorted(edits, reverse=True):
        head = lines[lineno - 1][:col]
        tail = lines[end_lineno - 1][end_col:]
        lines[lineno - 1 : end_lineno] = [head + text + tail]
    return "".join(lines)


def text_files() -> list[Path]:
    out = [ROOT / f for f in REWRITE_FILES if (ROOT / f).is_file()]
    for d in REWRITE_DIRS:
        for path in sorted((ROOT / d).rglob("*")) if (ROOT / d).is_dir() else []:
            rel = path.relative_to(ROOT)
            if path.resolve() == Path(__file__).resolve():
                continue  # this script names the old modules on purpose
            if (
                path.is_file()
                and not SKIP_PARTS & set(rel.parts)
                and (path.suffix in SUFFIXES or rel.parts[0] == ".ci")
            ):
                out.append(path)
    return out


LAYOUT_TEST = Path("tests") / "test_layout.py"
"""Names modules by their path inside the package (``"splits.py"``, ``"codec.py:decode_stamp"``)."""


def rewrite_package_paths(text: str, moves: dict[str, str]) -> str:
    """``"codec.py`` -> ``"data/codec.py`` (package-relative paths, as :data:`LAYOUT_TEST` writes them)."""
    names = "|".join(map(re.escape, sorted(moves, key=len, reverse=True)))
    return re.sub(rf'(?<=")({names})\.py(?=[":])', lambda m: moves[m.group(1)].replace(".", "/") + ".py", text)


def rewrite_references(moves: dict[str, str], dry: bool) -> list[str]:
    changed = []
    for path in text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        new = rewrite_from_imports(text, moves) if path.suffix == ".py" else text
        new = rewrite_text(new, moves)
        if path.relative_to(ROOT) == LAYOUT_TEST:
            new = rewrite_package_paths(new, moves)
        if new != text:
            changed.append(str(path.relative_to(ROOT)))
            if not dry:
                path.write_text(new, encoding="utf-8")
    return changed


# --- 4. settings, CI, docs, format -------------------------------------------------------------
def update_settings(moves: dict[str, str], dry: bool, ci_format: bool = True) -> list[str]:
    done = []
    pyproject = ROOT / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    if "ban-relative-imports" not in text:
        text = text.replace('select = ["E", "F", "W", "B"]', 'select = ["E", "F", "W", "B", "TID252"]')
        text = text.replace(
            "[tool.ruff.lint.flake8-bugbear]",
            "[tool.ruff.lint.flake8-tidy-imports]\n"
            "# absolute imports only: a module can move without its imports being recomputed\n"
            'ban-relative-imports = "all"\n\n[tool.ruff.lint.flake8-bugbear]',
        )
        if ci_format:
            text = re.sub(
                r"# The style of the code as written:.*?\n(?=line-length)",
                "# 120 columns, double quotes, 4 spaces; `ruff format --check` runs in .ci/run.\n",
                text,
                flags=re.S,
            )
        text = text.replace(
            '"shortcutgates" = ["py.typed", "data/gates.yml"]',
            '"shortcutgates" = ["py.typed"]\n"shortcutgates.data" = ["gates.yml"]',
        )
        done.append("pyproject.toml: absolute imports only (TID252); the format note; package data of data/")
        if not dry:
            pyproject.write_text(text, encoding="utf-8")
    ci = ROOT / ".ci" / "run"
    text = ci.read_text(encoding="utf-8")
    if ci_format and "ruff format --check" not in text:
        text = text.replace(
            "python -m ruff check . || exit 1\n",
            "python -m ruff check . || exit 1\npython -m ruff format --check . || exit 1\n",
        )
        if ci_format and "ruff format --check" not in text:
            sys.exit("relayout: .ci/run has no 'python -m ruff check . || exit 1' line to put the format check after")
        done.append(".ci/run: ruff format --check")
        if not dry:
            ci.write_text(text, encoding="utf-8")
    hooks = ROOT / ".pre-commit-config.yaml"
    if ci_format and hooks.is_file():
        text = hooks.read_text(encoding="utf-8")
        anchor = (
            "        entry: python -m ruff check --force-exclude\n        language: system\n        types: [python]\n"
        )
        if "ruff format" not in text and anchor in text:
            text = text.replace(
                anchor,
                anchor + "      - id: ruff-format\n        name: ruff format\n"
                "        entry: python -m ruff format --force-exclude\n        language: system\n"
                "        types: [python]\n",
            )
            done.append(".pre-commit-config.yaml: ruff format")
            if not dry:
                hooks.write_text(text, encoding="utf-8")
    index = ROOT / "docs" / "index.md"
    if index.is_file():
        text = index.read_text(encoding="utf-8")
        new = re.sub(
            r"(## Layout of the repository\n\n```\n).*?(```)",
            lambda m: m.group(1) + LAYOUT_BLOCK + m.group(2),
            text,
            count=1,
            flags=re.S,
        )
        if new != text:
            done.append("docs/index.md: the layout block")
            if not dry:
                index.write_text(new, encoding="utf-8")
    changelog = ROOT / "CHANGELOG.md"
    if changelog.is_file():
        text = changelog.read_text(encoding="utf-8")
        marker = "Modules moved into packages that show the pipeline"
        if marker not in text:
            moved = ", ".join(f"`{old}` → `{new}`" for old, new in moves.items())
            entry = (
                textwrap.fill(
                    f"- {marker} (`scripts/dev/relayout.py`): {moved}. Imports are absolute; "
                    "the tree is formatted with `ruff format`, checked in `.ci/run`. Files written "
                    "before (checkpoints, manifests, reports) are read as before.",
                    width=100,
                    subsequent_indent="  ",
                    break_on_hyphens=False,
                )
                + "\n"
            )
            m = re.search(r"^## Unreleased\n+", text, flags=re.M)
            if m is not None:  # its own heading, first under Unreleased
                text = text[: m.end()] + "### Layout\n" + entry + "\n" + text[m.end() :]
            else:
                first = re.search(r"^## ", text, flags=re.M)
                at = first.start() if first else len(text)
                text = text[:at] + "## Unreleased\n\n### Layout\n" + entry + "\n" + text[at:]
            done.append("CHANGELOG.md: the entry")
            if not dry:
                changelog.write_text(text, encoding="utf-8")
    return done


def format_tree() -> None:
    for cmd in (ruff() + ["format", "."], ruff() + ["check", "--fix", "."]):
        out = run(cmd, check=False)
        print("  " + (out.stdout.strip().splitlines() or [""])[-1])
        if out.returncode != 0:
            print(out.stdout + out.stderr)
            sys.exit(f"relayout: {' '.join(cmd)} failed")


def size_report() -> list[str]:
    """Modules and functions over the limits of :data:`LAYOUT_TEST` in the tree as it now is."""
    path = ROOT / LAYOUT_TEST
    if not path.is_file():
        return []
    spec = importlib.util.spec_from_file_location("_relayout_layout_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.PACKAGE = ROOT / PKG  # this tree's, whichever shortcutgates is installed
    pending = getattr(module, "PENDING", {})
    return [
        f"{name}: {n} lines" + (" (pending)" if name in pending else "")
        for name, n in sorted(module.oversized().items())
    ]


def unplanned(moves: dict[str, str]) -> list[str]:
    """Top-level modules that are neither moved nor kept."""
    return sorted(p.stem for p in (ROOT / PKG).glob("*.py") if p.stem not in moves and p.stem not in KEEP)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    parser.add_argument(
        "--move",
        action="append",
        default=[],
        metavar="OLD=PKG.NEW",
        help="also move shortcutgates/OLD.py to shortcutgates/PKG/NEW.py (repeatable)",
    )
    parser.add_argument(
        "--no-format",
        action="store_true",
        help="move and rewrite only: no ruff format, and .ci/run gets no format check",
    )
    parser.add_argument("--allow-dirty", action="store_true", help="run on a work tree with uncommitted changes")
    args = parser.parse_args(argv)
    if not (ROOT / PKG / "__init__.py").is_file():
        sys.exit(f"relayout: run from the repository root ({PKG}/__init__.py not found in {ROOT})")
    moves = dict(MOVES)
    for item in args.move:
        old, _, new = item.partition("=")
        if not old or "." not in new:
            sys.exit(f"relayout: --move {item!r}: expected OLD=PKG.NEW")
        moves[old] = new
    dirty = run(["git", "status", "--porcelain", "--untracked-files=no"]).stdout.strip()
    if dirty and not (args.allow_dirty or args.dry_run):
        sys.exit("relayout: the work tree has uncommitted changes; commit them first (or --allow-dirty)")
    print("1. relative imports -> absolute")
    absolute_imports(args.dry_run)
    print("2. moves")
    for line in move_modules(moves, args.dry_run) or ["nothing to move"]:
        print("  " + line)
    print("3. references")
    changed = rewrite_references(moves, args.dry_run)
    print(f"  {len(changed)} files rewritten" + (": " + ", ".join(changed) if changed else ""))
    print("4. settings, CI, docs, format")
    for line in update_settings(moves, args.dry_run, ci_format=not args.no_format) or ["settings already done"]:
        print("  " + line)
    if not args.dry_run and not args.no_format:
        format_tree()
    if not args.dry_run:
        over = size_report()
        if over:
            print(f"size limits ({LAYOUT_TEST}) exceeded now: " + "; ".join(over))
    left = unplanned(moves)
    if left:
        print(f"5. top-level modules neither moved nor kept (decide; --move OLD=PKG.NEW): {', '.join(left)}")
    print(
        "done"
        + (
            " (dry run: nothing changed)"
            if args.dry_run
            else "; now: ruff check . && ruff format --check . && mypy && pytest -n 2 -q, then commit"
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
