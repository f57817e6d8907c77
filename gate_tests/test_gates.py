"""``pytest gate_tests --data DIR [--model CKPT] [--gate-report FILE]`` (docs/design.md#report-json).

The suite itself is :mod:`shortcutgates.gates.gate_suite` (shipped with the package so that
``shortcutgates gate`` runs it from anywhere); importing its test here makes pytest collect it here.
"""

from shortcutgates.gates.gate_suite import test_gate  # noqa: F401
