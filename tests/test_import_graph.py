"""No import cycle anywhere in the package, counting imports inside functions (read with ``ast``)."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

import shortcutgates

PACKAGE = Path(shortcutgates.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """Package modules that ``path`` imports anywhere in its body (top level, functions, TYPE_CHECKING
    blocks excluded: they never run)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _type_checking(node.test)
        for child in node.body
        for n in ast.walk(child)
    }
    out = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # "from . import x" imports the submodule x; "from .m import f" imports m
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # "a.b.c" of a non-module c: its module "a.b"
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports."""
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imported_modules(p, modules) for p in paths}


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert sum(map(len, graph.values())) > 20  # the scan found the package's imports
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_the_scan_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "shortcutgates" / "gates"
    source.mkdir(parents=True)
    (source / "a.py").write_text("def f():\n    from .b import g\n    return g\n")
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path / "shortcutgates"
    try:
        modules = {"shortcutgates.gates.a", "shortcutgates.gates.b", "shortcutgates.gates"}
        assert imported_modules(source / "a.py", modules) == {"shortcutgates.gates.b"}
    finally:
        PACKAGE = saved


@pytest.mark.parametrize(
    "module",
    [
        "shortcutgates.gates.data_gates",
        "shortcutgates.gates.model_gates",
        "shortcutgates.gates.records",
        "shortcutgates.gates.decision",
        "shortcutgates.gates.context",
        "shortcutgates.gates.probes",
    ],
)
def test_gate_modules_know_nothing_of_the_registry(module):
    assert "shortcutgates.gates.registry" not in reachable(import_graph(), module)


def test_the_gates_package_imports_neither_the_plugin_nor_the_experiment():
    """``gates/`` is the library: the pytest plugin and the experiment build on it, never the reverse."""
    graph = import_graph()
    gates = [m for m in graph if m.startswith("shortcutgates.gates")]
    assert len(gates) > 10
    for module in gates:
        upward = {
            m
            for m in reachable(graph, module)
            if m == "shortcutgates.plugin" or m.startswith("shortcutgates.experiment")
        }
        assert not upward, f"{module} imports {sorted(upward)}"
