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

Outcomes
--------
=================  ===========================================================================
verdict            pytest outcome
=================  ===========================================================================
``pass``           passed
``fail``           failed, with the gate's message
``error``          failed: a probe that cannot measure never passes
``inconclusive``   failed: the interval crosses the threshold, so the gate has not shown that the
                   shortcut is absent; the message states the sample size that would decide. A
                   gate must not pass for lack of data; waive it if that is accepted.
``skipped``        skipped with the reason (model gate without ``--model``)
=================  ===========================================================================

Only ``primary`` cases decide the run (``docs/design.md#verdict-rule``). A ``reported`` case (role in
the report, e.g. ``property_balance``, ``stratified_auroc``) never fails its test: it passes with
``REPORTED (not gated): <verdict>: <message>`` in the summary table and in its ``user_properties``;
its verdict ``reported`` means it was measured without a threshold (nothing was tested).

A waiver (``[tool.shortcutgates.waivers]``, by case id or gate name) turns the case into a non-strict
xfail carrying the waiver's reason: a failing waived gate reports XFAIL, a passing one XPASS.

Each gate test attaches its result record to the test report (``user_properties``: ``gate_result``
as JSON, plus ``gate_verdict`` and ``gate_value``), which is where the summary table and
``--gate-report`` take it from; this also puts the results into pytest's ``--junitxml`` output.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .gates.not_run import NOT_RUN_LISTED, not_run, strict_failure

RESULT_PROPERTY = "gate_result"
"""``user_properties`` key of a gate test's result record (JSON text, docs/design.md#report-json gate entry)."""

NO_DATA_REASON = "the gate suite needs --data DIR (a built or hand-written manifest)"
DESELECTED_REASON = "deselected (-k / -m)"
NOT_RUN_REASON = "the session stopped before it ran, or its test was not collected"
SCORER_FIXTURE = "shortcutgates_scorer"
"""Name of the user's fixture returning ``f(images (N, 3, H, W) nanomaggies g, r, z) -> (N,) scores``."""


# --- option parsers: reject bad values at the command line ------------------------------------
def parse_data_dir(value: str) -> Path:
    """``--data``: an existing directory or parquet file."""
    path = Path(value).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such directory or file: {value!r}")
    if path.is_file() and path.suffix != ".parquet":
        raise argparse.ArgumentTypeError(f"expected a manifest directory or a .parquet file (got {value!r})")
    return path.resolve()


def parse_data_root(value: str) -> Path:
    """``--data-root``: an existing directory."""
    path = Path(value).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"no such directory: {value!r}")
    return path.resolve()


def parse_checkpoint(value: str) -> Path:
    """``--model``: an existing model file (checkpoint ``.pt``, ``.pt2`` or ``.onnx``)."""
    path = Path(value).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"is a directory, expected a model file (.pt, .pt2, .onnx): {value!r}")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such checkpoint file: {value!r}")
    return path.resolve()


def parse_report_path(value: str) -> Path:
    """``--gate-report``: a file path to write (its directory is created); not a directory."""
    path = Path(value).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"is a directory, expected a file name: {value!r}")
    return path.resolve()


def parse_pyproject(value: str) -> Path:
    """``--gate-config``: an existing TOML file."""
    path = Path(value).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {value!r}")
    return path.resolve()


def pytest_addoption(parser):
    group = parser.getgroup("shortcutgates", "shortcut gates (run with: pytest gate_tests --data DIR)")
    group.addoption("--data", metavar="DIR", type=parse_data_dir, default=None,
                    help="Manifest directory (or parquet file) the gates measure; without it the gate "
                         "suite is skipped and the plugin does nothing. Default: %(default)r")
    group.addoption("--data-root", metavar="DIR", type=parse_data_root, default=None,
                    help="Directory the manifest's relative source pointers are taken from, instead of the "
                         "source root its manifest.json records (the paired input moved). Default: %(default)r")
    group.addoption("--model", metavar="CKPT", type=parse_checkpoint, default=None,
                    help="Model for the model gates: a shortcutgates checkpoint (.pt; without --data the "
                         "gates measure the manifest it records), a torch.export program (.pt2) or an "
                         "ONNX file (.onnx), the last two with an input contract (docs/scorers.md). "
                         f"Alternatively define a fixture named {SCORER_FIXTURE!r}. Without either the "
                         "model gates are skipped with that reason. Default: %(default)r")
    group.addoption("--gate-report", metavar="FILE", type=parse_report_path, default=None,
                    help="Write the gate results as JSON (schema shortcutgates.report/2) to FILE, "
                         "atomically. Default: %(default)r")
    group.addoption("--gate-html", metavar="FILE", type=parse_report_path, default=None,
                    help="Also write the gate report as one HTML page to FILE (for CI artifacts). "
                         "Default: %(default)r")
    group.addoption("--gate-config", metavar="PYPROJECT", type=parse_pyproject, default=None,
                    help="pyproject.toml whose [tool.shortcutgates] table sets thresholds, sample caps, "
                         "bootstrap and waivers. Default: %(default)r (the rootdir's pyproject.toml, "
                         "if there is one)")
    group.addoption("--gate-strict", action="store_true", default=False,
                    help="Fail the run when gates the suite expects did not run (deselected, no model, "
                         "missing splits); the default of 'shortcutgates gate'. Default: %(default)r")


# --- session state ------------------------------------------------------------------------
@dataclass(eq=False)
class GateSession:
    """Per-run state, kept in ``config.stash``; builds the data context only when first needed."""

    data: Path | None
    model: Path | None
    report: Path | None
    config_path: Path | None
    progress: bool = False
    strict: bool = False
    data_root: Path | None = None
    """``--data-root``: where relative source pointers are taken from."""
    """Fail the session when expected gates did not run (``--gate-strict``)."""
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
                gate_config = load_config(self.config_path)
                context = GateContext(self.data, config=gate_config, progress=self.progress, data_root=self.data_root)
                if self.model is not None:
                    context = self._with_model_file(context)
                self._context = context
            except (ValueError, FileNotFoundError) as exc:  # DataError, CheckpointError, ScorerError
                raise pytest.UsageError(f"shortcutgates: {exc}") from None
        return self._context

    def _with_model_file(self, context):
        """Load ``--model`` (checkpoint, .pt2 or .onnx) and check its input contract against the stamps."""
        from .gates.context import decode_rows
        from .scorers import load_scorer

        self.scorer = load_scorer(self.model)
        if self.scorer.contract is not None and len(context.frame):
            shape = decode_rows(context.frame.iloc[:1]).shape
            if shape is not None:
                self.scorer.contract.check_stamp(shape, str(self.model))
        return context.with_scorer(self.scorer.score_fn, self.scorer.preprocess, self.model)

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

    @property
    def model_block(self) -> dict | None:
        """The report's ``model`` block: the context's, with what the scorer says about itself."""
        info = self.context.model_info if self.context.has_model else None
        if self.scorer is not None:
            info = {**(info or {}), **self.scorer.info}
        return info

    def cases(self) -> list:
        """Every gate case the data (and model) call for, model cases included without a model."""
        if self._cases is None:
            from .gates.registry import gate_cases

            try:
                self._cases = list(gate_cases(self.context))
            except (ValueError, FileNotFoundError) as exc:
                raise pytest.UsageError(f"shortcutgates: {exc}") from None
        return self._cases

    def skipped_record(self, case, message: str) -> dict:
        """Report record of a case that did not run."""
        from .gates.decision import skipped_result
        from .gates.registry import REGISTRY

        return skipped_result(self.context.config, case, REGISTRY[case.gate], message).to_json()

    def records(self) -> list[dict]:
        """One record per expected case, in collection order; cases without a result are skipped."""
        out = []
        for case in self.cases():
            reason = DESELECTED_REASON if case.id in self.deselected else NOT_RUN_REASON
            record = dict(self.results.get(case.id) or self.skipped_record(case, reason))
            record["waiver"] = self.context.config.waiver_for(case)
            out.append(record)
        return out

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
        data = recorded_manifest(model)
    session = GateSession(
        data=data, model=model, report=config.getoption("gate_report"),
        config_path=config.getoption("gate_config") or _default_pyproject(config),
        progress=config.getoption("capture") == "no", strict=config.getoption("gate_strict"),
        data_root=config.getoption("data_root"))
    config.stash[SESSION_KEY] = session
    if not session.active and config.getoption("gate_report") is not None:
        raise pytest.UsageError("shortcutgates: --gate-report needs --data DIR (the manifest the gates measure) "
                                "or --model CKPT (a checkpoint records its training manifest)")
    if session.active:
        config.pluginmanager.register(session, "shortcutgates-session")


def recorded_manifest(model: Path) -> Path:
    """The training manifest a checkpoint records, after checking its sha256 (usage error otherwise)."""
    if model.suffix.lower() in (".onnx", ".pt2"):
        raise pytest.UsageError(f"shortcutgates: {model}: a {model.suffix} file records no manifest; "
                                "pass the data to gate with --data DIR")
    from .checkpoint import CheckpointError, recorded_manifest as read_recorded

    try:
        return read_recorded(model)
    except CheckpointError as exc:
        raise pytest.UsageError(f"shortcutgates: {exc}") from None


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


def evaluate_case(session: GateSession, case) -> dict:
    """Run one case on the shared context and return its report record (docs/design.md#report-json gate entry).

    ``run_case`` returns ``skipped`` for a model case without a model (with that reason) and
    ``error`` for a probe that cannot measure.
    """
    from .gates.registry import run_case

    return run_case(session.context, case).to_json()


def check_record(record: dict) -> None:
    """Turn a gate record into the pytest outcome of the table in this module's docstring."""
    verdict, message = record["verdict"], record["message"]
    if verdict == "skipped":
        pytest.skip(message)
    if record.get("role", "primary") == "reported":  # shown, never turns the run red
        return
    if verdict != "pass":
        pytest.fail(f"{record['id']}: {verdict.upper()}: {message}{remedy_suffix(record)}", pytrace=False)


REMEDY_VERDICTS = ("fail",)
"""Verdicts whose line ends with the gate's remedy: an ``inconclusive`` message says how many LRGs would
decide, an ``error`` message why nothing could be measured (e.g. a model that cannot detect lenses)."""


def remedy_suffix(record: dict) -> str:
    """`` -> what to do`` from the gate's registry row (empty for an unknown gate or one without a remedy)."""
    from .gates.registry import REGISTRY

    gate = REGISTRY.get(record.get("gate"))
    if gate is None or not gate.remedy or record.get("verdict") not in REMEDY_VERDICTS:
        return ""
    return f" -> {gate.remedy}"


def threshold_text(record: dict) -> str:
    """The claim a case makes: ``<= 0.65``, ``>= 0.8``, ``within ±0.2`` (an equivalence margin), or ``report``."""
    from .gates.registry import REGISTRY

    if record["threshold"] is None:
        return "report"
    gate = REGISTRY.get(record.get("gate"))
    if gate is not None and gate.equivalence:
        return f"within ±{record['threshold']:g}"
    return f"{'<=' if record['direction'] == 'max' else '>='} {record['threshold']:g}"


def is_red_record(record: dict) -> bool:
    """Whether a record turns the run red: :func:`check_record` fails it and no waiver accepts it."""
    if record.get("waiver"):
        return False
    try:
        check_record(record)
    except pytest.fail.Exception:
        return True
    except pytest.skip.Exception:
        return False
    return False


# --- collecting results -------------------------------------------------------------------
def record_of(report) -> dict | None:
    """The gate record a test report carries in its ``user_properties``, or None."""
    props = dict(report.user_properties)
    return json.loads(props[RESULT_PROPERTY]) if RESULT_PROPERTY in props else None


# --- summary and report -----------------------------------------------------------------------
def _fmt(x, spec=".3f") -> str:
    return "-" if x is None else format(x, spec)


def _row(record: dict) -> tuple[str, ...]:
    ci = record["ci"]
    ci_text = "-" if ci is None or None in ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"
    threshold = threshold_text(record)
    verdict = record["verdict"].upper() + (" (waived)" if record.get("waiver") else "")
    if record.get("role", "primary") == "reported":
        verdict += " (reported, not gated)"
    elif is_red_record(record):
        verdict += remedy_suffix(record)
    return record["id"], _fmt(record["value"]), ci_text, threshold, verdict


def summary_lines(records: list[dict], level: float = 0.95) -> list[str]:
    """The terminal table (gate, value, CI at ``level``, threshold, verdict) and the expected-vs-run count."""
    from .gates.report_json import summarize

    rows = [("gate", "value", f"{100 * level:g}% CI", "threshold", "verdict")] + [_row(r) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    c = summarize(records)
    lines.append(f"gates: {c['expected']} expected, {c['run']} run ({c['pass']} pass, {c['fail']} fail, "
                 f"{c['inconclusive']} inconclusive, {c['error']} error), {c['skipped']} skipped, "
                 f"{c['waived']} waived")
    lines.append(f"primary: {c['primary']} cases decide the run, {c['primary_failing']} failing -> "
                 f"{'GREEN' if c['green'] else 'RED'}; reported: {c['expected'] - c['primary']} cases shown, "
                 f"never gating ({c['reported']} measured without a threshold)")
    if c["skipped"]:
        missing = not_run(records)
        lines.append(f"NOT RUN: {c['skipped']} of {c['expected']} gates did not run: {'; '.join(sorted(missing))}")
        for reason, ids in sorted(missing.items()):
            more = f" and {len(ids) - NOT_RUN_LISTED} more" if len(ids) > NOT_RUN_LISTED else ""
            lines.append(f"  {reason}: {', '.join(ids[:NOT_RUN_LISTED])}{more}")
    return lines


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
    terminalreporter.write_sep("=", "shortcut gates")
    records = session.records()
    for line in summary_lines(records, session.context.config.level):
        terminalreporter.write_line(line)
    why = strict_failure(records) if session.strict else None
    if why:
        terminalreporter.write_line(why, red=True)
    if session.report is not None:
        terminalreporter.write_line(f"gate report: {session.report}")


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    state = gate_session_of(config)
    if not state.active or hasattr(config, "workerinput"):
        return
    ran = state._cases is not None or state.results
    if state.strict and ran and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED) \
            and strict_failure(state.records()):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    html = config.getoption("gate_html")
    if state.report is None and html is None:
        return
    from .gates.report_json import build_report, write_report

    if state._cases is None and not state.results:
        return  # nothing was collected (collection error or no gate test selected)
    context = state.context
    report = build_report(state.records(), data=context.data_info, model=state.model_block)
    if context.has_model:
        try:
            report["low_fpr"] = context.low_fpr()
        except ValueError:  # a model that cannot score (ProbeError): its gates already say why
            pass
    from .gates.report_html import write_gate_html

    for flag, path, write in (("--gate-report", state.report, write_report), ("--gate-html", html, write_gate_html)):
        try:
            if path is not None:
                write(path, report)
        except OSError as exc:  # pytest prints a UsageError as one line; anything else as INTERNALERROR
            raise pytest.UsageError(f"shortcutgates: cannot write {flag} {path} ({exc.strerror or exc})") from None
