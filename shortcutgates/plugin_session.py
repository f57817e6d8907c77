"""The pytest plugin's per-run state: a :class:`GateSession` (options, the shared gate context, the
data-gate cache, the scorer, results collected from test reports, also from xdist workers).

:mod:`shortcutgates.plugin` makes one per run in ``pytest_configure``, keeps it in ``config.stash``
and registers it as a plugin (its ``pytest_*`` methods are hooks); the hooks and fixtures stay there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shortcutgates.gates.options import SCORER_FIXTURE
from shortcutgates.gates.suite import RESULT_PROPERTY, expected_records, with_model_file

DESELECTED_REASON = "deselected (-k / -m)"
NOT_RUN_REASON = "the session stopped before it ran, or its test was not collected"


@dataclass(eq=False)
class GateSession:
    """Per-run state, kept in ``config.stash``; builds the data context only when first needed."""

    data: Path | None
    model: Path | None
    report: Path | None
    config_path: Path | None
    progress: bool = False
    input: str | None = None
    """``--input``: the data-only run's deciding input (None: the configuration's)."""
    strict: bool = False
    """Fail the session when expected gates did not run (``--gate-strict``)."""
    data_root: Path | None = None
    """``--data-root``: where the manifest's relative source pointers are taken from."""
    cache_dir: Path | None = None
    """``--gate-cache``: directory of the data-gate cache (None: the default, :func:`.gates.cache.cache_dir`)."""
    reuse_cache: bool = True
    """False with ``--gate-no-cache``: data cases are measured again (and stored)."""
    _cache: object = None
    _cache_line: str | None = None
    scorer: object = None
    """The :class:`shortcutgates.model.scorers.Scorer` of ``--model`` or of the user's scorer fixture."""
    fixture_scorer: bool = False
    """A ``shortcutgates_scorer`` fixture is visible to the gate tests (found after collection)."""
    _scorer_error: str | None = None
    _context: object = None
    _cases: list | None = None
    results: dict = field(default_factory=dict)
    """Case id -> gate record (dict), filled from test reports."""
    deselected: set = field(default_factory=set)

    @property
    def active(self) -> bool:
        return self.data is not None

    @property
    def context(self):
        """The shared :class:`GateContext` (data read lazily inside; images/predictions cached)."""
        if self._context is None:
            from shortcutgates.gates.registry import GateContext, load_config

            try:
                gate_config = load_config(self.config_path, input=self.input)
                context = GateContext(self.data, config=gate_config, progress=self.progress, data_root=self.data_root)
                self._context = context  # the gate cache's key reads it
                if self.model is not None:
                    context.array_cache = self.data_cache  # model runs keep the lensing split of the pairs there
                    context, self.scorer = with_model_file(context, self.model)
                self._context = context
            except (ValueError, FileNotFoundError) as exc:  # DataError, CheckpointError, ScorerError
                self._context = None
                raise pytest.UsageError(f"shortcutgates: {exc}") from None
        return self._context

    @property
    def data_cache(self):
        """The :class:`~shortcutgates.gates.cache.DataGateCache` entry of this manifest and settings."""
        if self._cache is None:
            from shortcutgates.gates.cache import open_cache

            self._cache = open_cache(self.context, self.cache_dir)
            if not self.reuse_cache:
                self._cache.forget()
        return self._cache

    def evaluate(self, case) -> dict:
        """One case's report record: a data case from the cache when its entry holds it, else measured."""
        from shortcutgates.gates.cache import is_data_case
        from shortcutgates.gates.registry import run_case

        record = self.data_cache.get(case) if is_data_case(case) else None  # stored at the session's end
        return record if record is not None else run_case(self.context, case).to_json()

    def store_cache(self) -> str | None:
        """Put this run's data-case records into the cache and write it; a one-line summary, or None."""
        if self._cases is None:
            return None
        if self._cache_line is not None:
            return self._cache_line or None
        from shortcutgates.gates.cache import is_data_case

        cache = self.data_cache
        n_data = n_same = 0
        for case in self.cases():
            if case.id in self.results and is_data_case(case):
                n_data += 1
                n_same += cache.records.get(case.id) == self.results[case.id]  # reused (or recomputed alike)
                cache.put(case, self.results[case.id])
        written = cache.save()
        reused = f"{n_same} of {n_data} data cases reused" if self.reuse_cache else f"{n_data} data cases measured"
        self._cache_line = f"gate cache: {reused}; entry {cache.path}" + (" (written)" if written else "")
        return self._cache_line

    def use_fixture_scorer(self, request) -> None:
        """Take the model from the user's ``shortcutgates_scorer`` fixture (once per session)."""
        if not self.fixture_scorer or self.scorer is not None:
            return
        if self._scorer_error is None:
            from shortcutgates.model.scorers import ScorerError, callable_scorer

            try:
                self.scorer = callable_scorer(request.getfixturevalue(SCORER_FIXTURE), f"fixture {SCORER_FIXTURE}")
                self.context.array_cache = self.data_cache
                self._context = self.context.with_scorer(self.scorer.score_fn, self.scorer.preprocess)
                return
            except ScorerError as exc:
                self._scorer_error = str(exc)
        pytest.fail(f"shortcutgates: {self._scorer_error}", pytrace=False)

    def cases(self) -> list:
        """Every gate case the data (and model) call for, model cases included without a model."""
        if self._cases is None:
            from shortcutgates.gates.registry import gate_cases

            try:
                self._cases = list(gate_cases(self.context))
            except (ValueError, FileNotFoundError) as exc:
                raise pytest.UsageError(f"shortcutgates: {exc}") from None
        return self._cases

    def records(self) -> list[dict]:
        """One record per expected case, in collection order; cases without a result are skipped."""
        return expected_records(
            self.context,
            self.cases(),
            self.results,
            lambda case: DESELECTED_REASON if case.id in self.deselected else NOT_RUN_REASON,
        )

    # hooks: this object is registered as a plugin, so results also arrive from xdist workers
    def pytest_runtest_logreport(self, report):
        record = record_of(report)
        if record is not None and report.when == "call":
            self.results[record["id"]] = record

    def pytest_deselected(self, items):
        for item in items:
            case = case_of(item)
            if case is not None:
                self.deselected.add(case.id)

    def pytest_collection_finish(self, session):
        """Find the user's scorer fixture; with ``--model`` as well it is a usage error."""
        items = [item for item in session.items if case_of(item) is not None]
        if not items or not fixture_visible(session, items[0], SCORER_FIXTURE):
            return
        if self.model is not None:
            raise pytest.UsageError(
                f"shortcutgates: both --model and a {SCORER_FIXTURE!r} fixture give the model; "
                "use one (remove --model, or the fixture)"
            )
        self.fixture_scorer = True

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_call(self, item):
        request = getattr(item, "funcargs", {}).get("request")
        if request is not None and case_of(item) is not None:
            self.use_fixture_scorer(request)


def case_of(item):
    """The gate case a collected test item runs, or None."""
    return getattr(getattr(item, "callspec", None), "params", {}).get("gate_case")


def fixture_visible(session, item, name: str) -> bool:
    """Whether fixture ``name`` is defined for ``item`` (conftest.py, a -p plugin, or the test module)."""
    manager = getattr(session, "_fixturemanager", None)
    if manager is None:  # pragma: no cover - pytest without a fixture manager
        return False
    try:
        return bool(manager.getfixturedefs(name, item))
    except (TypeError, AttributeError):  # pytest < 8 takes the node id
        return bool(manager.getfixturedefs(name, item.nodeid))


def record_of(report) -> dict | None:
    """The gate record a test report carries in its ``user_properties``, or None."""
    props = dict(report.user_properties)
    return json.loads(props[RESULT_PROPERTY]) if RESULT_PROPERTY in props else None
