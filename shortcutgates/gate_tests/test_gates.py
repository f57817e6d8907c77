"""``pytest --pyargs shortcutgates.gate_tests --data DIR [--model MODEL]``: the gate suite, installed.

Importing the suite's test here makes pytest collect it here (docs/ci.md).
"""

from shortcutgates.gates.gate_suite import test_gate  # noqa: F401
