"""pytest plugin: options, parametrisation, fixtures, the summary table, the JSON report (hooks only;
the per-run state is :class:`~shortcutgates.plugin_session.GateSession`).

Registered as the ``pytest11`` entry point ``shortcutgates``, so it loads in every pytest run where
the package is installed. Without ``--data`` it only adds its options, its marker and two fixtures:
nothing is read, nothing is computed, no test is added or failed.

The model comes from ``--model`` (a checkpoint, a ``.pt2`` or an ``.onnx``; :mod:`shortcutgates.model.scorers`)
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

from pathlib import Path

import pytest

from shortcutgates.gates.not_run import strict_failure
from shortcutgates.gates.options import add_pytest_options, recorded_data
from shortcutgates.gates.report_html import write_outputs
from shortcutgates.plugin_session import GateSession, record_of

NO_DATA_REASON = "the gate suite needs --data DIR (a built or hand-written manifest)"


def pytest_addoption(parser):
    add_pytest_options(parser.getgroup("shortcutgates", "shortcut gates (run with: pytest gate_tests --data DIR)"))


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
        data=data,
        model=model,
        report=config.getoption("gate_report"),
        config_path=config.getoption("gate_config") or _default_pyproject(config),
        progress=config.getoption("capture") == "no",
        strict=config.getoption("gate_strict"),
        data_root=config.getoption("data_root"),
        input=config.getoption("gate_input"),
        cache_dir=config.getoption("gate_cache"),
        reuse_cache=not config.getoption("gate_no_cache"),
    )
    config.stash[SESSION_KEY] = session
    if not session.active and config.getoption("gate_report") is not None:
        raise pytest.UsageError(
            "shortcutgates: --gate-report needs --data DIR (the manifest the gates measure) "
            "or --model CKPT (a checkpoint records its training manifest)"
        )
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
    return (
        f"shortcutgates: data={session.data} model={session.model} config={session.config_path} report={session.report}"
    )


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
    from shortcutgates.gates.summary import summary_lines  # imports pandas: only once gates ran

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
    if (
        state.strict
        and ran
        and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
        and strict_failure(state.records())
    ):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    html = config.getoption("gate_html")
    if (state.report is None and html is None) or not ran:  # nothing asked, or nothing collected
        return
    try:
        write_outputs(state.records(), state.context, state.scorer, state.report, html)
    except OSError as exc:  # pytest prints a UsageError as one line; anything else as INTERNALERROR
        raise pytest.UsageError(f"shortcutgates: {exc}") from None
