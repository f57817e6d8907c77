"""Shared test configuration: Hypothesis profiles.

``ci`` (default): few examples, no deadline — the whole suite runs in minutes on 2 cores.
``thorough``: many more examples; select with ``HYPOTHESIS_PROFILE=thorough python -m pytest``.
"""

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "thorough",
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _gate_cache_per_test(tmp_path, monkeypatch):
    """Each test gets its own data-gate cache (shortcutgates.gates.cache), never the user's ~/.cache:
    a test that gates the same data twice with different behaviour must not read another test's entry."""
    monkeypatch.setenv("SHORTCUTGATES_CACHE", str(tmp_path / "shortcutgates-cache"))
