"""The plugin's ``gate_context`` fixture: a user's own test gets the shared gate context of the run."""

from __future__ import annotations

from hostile_inputs import REPO

CLEAN = REPO / "fixtures" / "data" / "clean"

USER_TEST = """
from shortcutgates.gates.context import GateContext

def test_my_own_check(gate_context):
    assert isinstance(gate_context, GateContext)
    sample = gate_context.sample("test")
    assert len(sample.labels) == len(sample.images) > 0 and sample.images.shape[1] == 3
"""


def test_gate_context_fixture_gives_the_shared_context(pytester):
    pytester.makepyfile(test_mine=USER_TEST)
    result = pytester.runpytest_subprocess("--data", str(CLEAN), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_gate_context_fixture_skips_without_data(pytester):
    pytester.makepyfile(test_mine=USER_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*--data*"])
