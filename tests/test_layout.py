"""Size limits that keep the package readable (read with ``ast``): no module of ``shortcutgates/`` over
:data:`MAX_MODULE_LINES` lines, no function over :data:`MAX_FUNCTION_LINES` lines (decorators and
docstring included), ``plugin.py`` at most :data:`MAX_PLUGIN_LINES` (hooks and fixtures only)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import shortcutgates

PACKAGE = Path(shortcutgates.__file__).parent
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
MAX_PLUGIN_LINES = 300

PENDING: dict[str, str] = {
    # Over a limit on this branch, split on another branch merged beside it; each entry names its owner.
    # The test fails once an entry is no longer over its limit: then delete the entry.
}


def oversized() -> dict[str, int]:
    """``{"path": lines}`` for modules and ``{"path:function": lines}`` for functions over their limit
    (paths relative to the package; methods and nested functions by their own name)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        text = path.read_text(encoding="utf-8")
        n_lines = len(text.splitlines())
        if n_lines > MAX_MODULE_LINES:
            out[rel] = n_lines
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                length = node.end_lineno - first + 1
                if length > MAX_FUNCTION_LINES:
                    out[f"{rel}:{node.name}"] = length
    return out


def test_no_module_or_function_over_its_limit():
    found = oversized()
    new = {k: v for k, v in found.items() if k not in PENDING}
    assert not new, (
        f"over the limits ({MAX_MODULE_LINES} lines a module, {MAX_FUNCTION_LINES} a function): "
        f"{new}; split by meaning (docs/design.md, CONTRIBUTING.md)"
    )
    fixed = sorted(set(PENDING) - set(found))
    assert not fixed, f"no longer over a limit: remove {fixed} from tests/test_layout.py PENDING"


def test_plugin_holds_hooks_and_fixtures_only():
    n_lines = len((PACKAGE / "plugin.py").read_text(encoding="utf-8").splitlines())
    assert n_lines <= MAX_PLUGIN_LINES, f"plugin.py has {n_lines} lines (> {MAX_PLUGIN_LINES})"


def test_the_limits_are_measured_on_real_code(tmp_path, monkeypatch):
    """The check finds an oversized module and function when there is one (it is not vacuous)."""
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "big.py").write_text("def long():\n" + body + "\n" + "\n" * MAX_MODULE_LINES, encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path)
    assert oversized() == {"big.py": MAX_FUNCTION_LINES + 1 + MAX_MODULE_LINES, "big.py:long": MAX_FUNCTION_LINES + 1}
