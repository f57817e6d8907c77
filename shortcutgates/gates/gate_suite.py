"""The gate suite: one test per gate case, run by ``pytest gate_tests`` and ``shortcutgates gate``.

The test lives in the package so that ``shortcutgates gate`` finds it from any directory; the
repository's ``gate_tests/test_gates.py`` re-exports it, so ``pytest gate_tests --data DIR`` runs the
very same function. The ``shortcutgates`` pytest plugin parametrises ``gate_case`` (one case per gate ×
parameters × split, id ``core_lr_auc[train-box10-raw_robust]``) and shares one context, so images are
decoded and predictions computed once per session. :func:`.suite.check_record` maps a record to the
test outcome (:func:`.suite.outcome`: ``fail``, ``error`` and ``inconclusive`` fail; waivers become xfail).
"""

from __future__ import annotations

import json

from shortcutgates.gates.suite import RESULT_PROPERTY, check_record


def test_gate(gate_case, gate_session, request):
    """The gate case passes its threshold with its confidence interval on the good side."""
    record = gate_session.evaluate(gate_case)  # a cached data case, or run_case on the shared context
    request.node.user_properties.extend(
        [
            (RESULT_PROPERTY, json.dumps(record, allow_nan=False)),
            ("gate_verdict", record["verdict"]),
            ("gate_value", record["value"]),
        ]
    )
    check_record(record)
