"""pytest plugin: options, the shared gate session, parametrisation, the summary table, the JSON report.

Registered as the ``pytest11`` entry point ``shortcutgates``, so it loads in every pytest run where
the package is installed. Without ``--data`` it only adds its options, its marker and two fixtures:
nothing is read, nothing is computed, no test is added or failed.

The model comes from ``--model`` (a checkpoint, a ``.pt2`` or an ``.onnx``; :mod:`shortcutgates.scorers`)
or from a ``shortcutgates_scorer`` fixture the user defines (conftest.py or a ``-p`` plugin); a
checkpoint alone (``pytest gate_tests --model ckpt.pt``) also names the data: the training manifest
it records, checked against its sha256. ``--gate-strict`` fails a run in which expected gates did
not run (:mod:`shortcutgates.gates.not_run`).

With ``--data DIR`` (and optionally ``--model CKPT``) a test that requests the ``gate_case`` fixture
is parametrised with one case per gate × parameters × split (``shortcutgates.gates.gate_suite.test_gate``;
``pytest gate_tests`` collects it), ids as ``core_lr_auc[train-box10-raw_robust]``. Decoded images and
model predictions are cached on one :class:`~shortcutgates.gates.registry.GateContext` per session.

A record's pytest outcome follows the one rule of :func:`shortcutgates.gates.suite.outcome`
(``docs/design.md#verdict-rule``): ``pass`` passes; ``fail``, ``error`` and ``inconclusive`` fail
(a gate must not pass for lack of data: the message states the sample size that would decide);
``skipped`` skips with the reason. Only ``primary`` cases decide the run; a ``reported`` case
never fails its test and is shown as ``REPORTED (not gated)`` in the summary table.

A waiver (``[tool.shortcutgates.waivers]``, by case id or gate name) turns the case into a non-strict
xfail carrying the waiver's reason: a failing waived gate reports XFAIL, a passing one XPASS.

Each gate test attaches its result record to the test report (``user_properties``: ``gate_result``
as JSON, plus ``gate_verdict`` and ``gate_value``), which is where the summary table and
``--gate-report`` take it from; this also puts the results into pytest's ``--junitxml`` output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .gates.not_run import strict_failure
from .gates.options import SCORER_FIXTURE, add_pytest_options, recorded_data
from .gates.report_html import write_outputs
from .gates.suite import RESULT_PROPERTY, expected_records, with_model_file

NO_DATA_REASON = "the gate suite needs --data DIR (a built or hand-written manifest)"
DESELECTED_REASON = "deselected (-k / -m)"
NOT_RUN_REASON = "the session stopped before it ran, or its test was not collected"


def pytest_addoption(parser):
    add_pytest_options(parser.getgroup("shortcutgates", "shortcut gates (run with: pytest gate_tests --data DIR)"))


# --- session state ------------------------------------------------------------------------
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
    """The :class:`shortcutgates.scorers.Scorer` of ``--model`` or of the user's scorer fixture."""
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
            from .gates.registry import GateContext, load_config

            try:
                gate_config = load_config(self.config_path, input=self.input)
                context = GateContext(self.data, config=gate_config, progress=self.progress,
                                      data_root=self.data_root)
                if self.model is not None:
                    context, self.scorer = with_model_file(context, self.model)
                self._context = context
            except (ValueError, FileNotFoundError) as exc:  # DataError, CheckpointError, ScorerError
                raise pytest.UsageError(f"shortcutgates: {exc}") from None
        return self._context

    @property
    def data_cache(self):
        """The :class:`~shortcutgates.gates.cache.DataGateCache` entry of this manifest and settings."""
        if self._cache is None:
            from .gates.cache import open_cache

            self._cache = open_cache(self.context, self.cache_dir)
            if not self.reuse_cache:
                self._cache.records.clear()
        return self._cache

    def evaluate(self, case) -> dict:
        """One case's report record: a data case from the cache when its entry holds it, else measured."""
        from .gates.cache import is_data_case
        from .gates.registry import run_case

        record = self.data_cache.get(case) if is_data_case(case) else None  # stored at the session's end
        return record if record is not None else run_case(self.context, case).to_json()

    def store_cache(self) -> str | None:
        """Put this run's data-case records into the cache and write it; a one-line summary, or None."""
        if self._cases is None:
            return None
        if self._cache_line is not None:
            return self._cache_line or None
        from .gates.cache import is_data_case

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
            from .scorers import ScorerError, callable_scorer

            try:
                self.scorer = callable_scorer(request.getfixturevalue(SCORER_FIXTURE), f"fixture {SCORER_FIXTURE}")
                self._context = self.context.with_scorer(self.scorer.score_fn, self.scorer.preprocess)
                return
            except ScorerError as exc:
                self._scorer_error = str(exc)
        pytest.fail(f"shortcutgates: {self._scorer_error}", pytrace=False)

    def cases(self) -> list:
        """Every gate case the data (and model) call for, model cases included without a model."""
        if self._cases is None:
            from .gates.registry import gate_cases

            try:
                self._cases = list(gate_cases(self.context))
            except (ValueError, FileNotFoundError) as exc:
                raise pytest.UsageError(f"shortcutgates: {exc}") from None
        return self._cases

    def records(self) -> list[dict]:
        """One record per expected case, in collection order; cases without a result are skipped."""
        return expected_records(self.context, self.cases(), self.results,
                                lambda case: DESELECTED_REASON if case.id in self.deselected else NOT_RUN_REASON)

    # hooks: this object is registered as a plugin, so results also arrive from xdist workers
    def pytest_runtest_logreport(self, report):
        record = record_of(report)
        if record is not None and report.when == "call":
            self.results[record["id"]] = record

    def pytest_deselected(self, items):
        for item in items:
            case = _case_of(item)
            if case is not None:
                self.deselected.add(case.id)

    def pytest_collection_finish(self, session):
        """Find the user's scorer fixture; with ``--model`` as well it is a usage error."""
        items = [item for item in session.items if _case_of(item) is not None]
        if not items or not _fixture_visible(session, items[0], SCORER_FIXTURE):
            return
        if self.model is not None:
            raise pytest.UsageError(f"shortcutgates: both --model and a {SCORER_FIXTURE!r} fixture give the model; "
                                    "use one (remove --model, or the fixture)")
        self.fixture_scorer = True

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_call(self, item):
        request = getattr(item, "funcargs", {}).get("request")
        if request is not None and _case_of(item) is not None:
            self.use_fixture_scorer(request)


def _case_of(item):
    """The gate case a collected test item runs, or None."""
    return getattr(getattr(item, "callspec", None), "params", {}).get("gate_case")


def _fixture_visible(session, item, name: str) -> bool:
    """Whether fixture ``name`` is defined for ``item`` (conftest.py, a -p plugin, or the test module)."""
    manager = getattr(session, "_fixturemanager", None)
    if manager is None:  # pragma: no cover - pytest without a fixture manager
        return False
    try:
        return bool(manager.getfixturedefs(name, item))
    except (TypeError, AttributeError):  # pytest < 8 takes the node id
        return bool(manager.getfixturedefs(name, item.nodeid))


SESSION_KEY = pytest.StashKey[GateSession]()


def gate_session_of(config) -> GateSession:
    """The :class:`GateSession` of a pytest ``config``."""
    return config.stash[SESSION_KEY]


def pytest_configure(config):
    config.addinivalue_line("markers", "gate(name): a shortcut-gate case (added by the shortcutgates plugin)")
    data, model = config.getoption("data"), config.getoption("model")
    if data is None and model is not None:
        try:
            data = recorded_data(model)
        except ValueError as exc:
            raise pytest.UsageError(f"shortcutgates: {exc}") from None
    session = GateSession(
        data=data, model=model, report=config.getoption("gate_report"),
        config_path=config.getoption("gate_config") or _default_pyproject(config),
        progress=config.getoption("capture") == "no", strict=config.getoption("gate_strict"),
        data_root=config.getoption("data_root"), input=config.getoption("gate_input"),
        cache_dir=config.getoption("gate_cache"), reuse_cache=not config.getoption("gate_no_cache"))
    config.stash[SESSION_KEY] = session
    if not session.active and config.getoption("gate_report") is not None:
        raise pytest.UsageError("shortcutgates: --gate-report needs --data DIR (the manifest the gates measure) "
                                "or --model CKPT (a checkpoint records its training manifest)")
    if session.active:
        config.pluginmanager.register(session, "shortcutgates-session")


def _default_pyproject(config) -> Path | None:
    """The nearest ``pyproject.toml`` with a ``[tool.shortcutgates]`` table, from the rootdir upwards
    (``pytest gate_tests`` in a project set up by ``shortcutgates init`` may take ``gate_tests/`` as its
    rootdir), else the rootdir's ``pyproject.toml``, else None."""
    root = Path(config.rootpath)
    for directory in (root, *root.parents):
        path = directory / "pyproject.toml"
        try:
            if path.is_file() and "[tool.shortcutgates" in path.read_text():
                return path
        except OSError:
            continue
    path = root / "pyproject.toml"
    return path if path.is_file() else None


def pytest_report_header(config):
    session = gate_session_of(config)
    if not session.active:
        return None
    return (f"shortcutgates: data={session.data} model={session.model} "
            f"config={session.config_path} report={session.report}")


# --- parametrisation and fixtures --------------------------------------------------------------
@pytest.hookimpl(tryfirst=True)
def pytest_collection(session):
    """Load the data, the gate config and the model before collecting.

    A manifest, config or checkpoint that cannot be used then stops the run as a pytest usage
    error: one line (``ERROR: shortcutgates: <file>: <problem>``) and exit status 4, not a
    collection error with a traceback. Nothing of a refused checkpoint is unpickled.
    """
    state = gate_session_of(session.config)
    if state.active:
        state.cases()


def pytest_generate_tests(metafunc):
    if "gate_case" not in metafunc.fixturenames:
        return
    session = gate_session_of(metafunc.config)
    if not session.active:
        metafunc.parametrize("gate_case", [pytest.param(None, id="no-data", marks=pytest.mark.skip(NO_DATA_REASON))])
        return
    params = []
    for case in session.cases():
        marks = [pytest.mark.gate(case.gate)]
        reason = session.context.config.waiver_for(case)
        if reason:
            marks.append(pytest.mark.xfail(reason=f"waived: {reason}", strict=False))
        params.append(pytest.param(case, id=case.id, marks=marks))
    metafunc.parametrize("gate_case", params)


@pytest.fixture(scope="session")
def gate_session(request) -> GateSession:
    """The run's :class:`GateSession` (options, shared context, results)."""
    return gate_session_of(request.config)


@pytest.fixture(scope="session")
def gate_context(gate_session):
    """The shared :class:`~shortcutgates.gates.registry.GateContext`; skips without ``--data``."""
    if not gate_session.active:
        pytest.skip(NO_DATA_REASON)
    return gate_session.context


# --- collecting results -------------------------------------------------------------------
def record_of(report) -> dict | None:
    """The gate record a test report carries in its ``user_properties``, or None."""
    props = dict(report.user_properties)
    return json.loads(props[RESULT_PROPERTY]) if RESULT_PROPERTY in props else None


# --- summary and report -----------------------------------------------------------------------
def pytest_report_teststatus(report, config):
    """A reported case's test counts as ``reported`` in pytest's own tally (``80 passed, 14 reported``), not
    as ``passed``: it was shown, not gated, whatever its verdict."""
    if report.when == "call" and report.passed and not hasattr(report, "wasxfail"):
        record = record_of(report)
        if record is not None and record.get("role", "primary") == "reported":
            return "reported", "r", ("REPORTED", {"yellow": True})
    return None


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    session = gate_session_of(config)
    if not session.active or hasattr(config, "workerinput") or (session._cases is None and not session.results):
        return
    from .gates.summary import summary_lines  # imports pandas: only once gates ran

    terminalreporter.write_sep("=", "shortcut gates")
    records = session.records()
    for line in summary_lines(records, session.context.config.level):
        terminalreporter.write_line(line)
    why = strict_failure(records) if session.strict else None
    if why:
        terminalreporter.write_line(why, red=True)
    if session.report is not None:
        terminalreporter.write_line(f"gate report: {session.report}")
    for line in session.data_cache.notices + [session.store_cache() or ""]:
        if line:
            terminalreporter.write_line(line)


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    state = gate_session_of(config)
    if not state.active or hasattr(config, "workerinput"):
        return
    ran = state._cases is not None or state.results
    if state._cases is not None:
        state.store_cache()
    if state.strict and ran and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED) \
            and strict_failure(state.records()):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    html = config.getoption("gate_html")
    if (state.report is None and html is None) or not ran:  # nothing asked, or nothing collected
        return
    try:
        write_outputs(state.records(), state.context, state.scorer, state.report, html)
    except OSError as exc:  # pytest prints a UsageError as one line; anything else as INTERNALERROR
        raise pytest.UsageError(f"shortcutgates: {exc}") from None
