"""The data-gate cache (shortcutgates.gates.cache): content keys, invalidation, corruption, reuse by the plugin."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from toy_manifests import write_pointer_manifest, write_toy_manifest

import shortcutgates.gates.registry  # noqa: F401  (imported before pytester's in-process runs)
from shortcutgates.gates import cache as gc
from shortcutgates.gates.registry import GateConfig
from shortcutgates.data.manifest import read_manifest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CLEAN = FIXTURES / "data" / "clean"


def _key(path, config=None) -> str:
    return gc.cache_key(read_manifest(path, blobs=False, check_duplicates=False), config or GateConfig())


def test_key_follows_the_bytes_not_the_path(tmp_path):
    a = write_toy_manifest(tmp_path / "a", n=24)
    b = tmp_path / "b"
    shutil.copytree(a, b)
    assert _key(a) == _key(b)  # the same bytes elsewhere: the same entry
    frame = pd.read_parquet(b / "part-0.parquet")
    frame.loc[3, "ra"] += 1e-6  # one value of one row
    frame.to_parquet(b / "part-0.parquet", index=False)
    assert _key(a) != _key(b)


@pytest.mark.parametrize(
    "change",
    [
        {"seed": 1},
        {"max_samples": 100},
        {"n_boot": 600},
        {"level": 0.9},
        {"boxes": (6,)},
        {"n_splits": 4},
        {"thresholds": {"core_lr_auc": 0.7}},
        {"waivers": {"core_lr_auc[all]": "accepted"}},
        {"primary": ("cross_test_gap",)},
    ],
    ids=lambda c: next(iter(c)),
)
def test_every_setting_changes_the_key(tmp_path, change):
    path = write_toy_manifest(tmp_path / "m", n=24)
    assert _key(path) != _key(path, GateConfig(**change))


def test_version_changes_the_key(tmp_path, monkeypatch):
    import shortcutgates

    path = write_toy_manifest(tmp_path / "m", n=24)
    before = _key(path)
    monkeypatch.setattr(shortcutgates, "__version__", "9.9.9")
    assert _key(path) != before


def test_pointed_to_file_enters_the_key(tmp_path):
    path = write_pointer_manifest(tmp_path / "m", tmp_path / "src", n=16)
    before = _key(path)
    src = tmp_path / "src" / "src.parquet"
    frame = pd.read_parquet(src)
    frame.loc[0, "stamp_npz"] = frame.loc[1, "stamp_npz"]  # one pointed-to blob changes
    frame.to_parquet(src, index=False)
    assert _key(path) != before


def _case(case_id="data_integrity", needs=("data",)):
    from shortcutgates.gates.records import GateCase

    case = GateCase("data_integrity", {}, None, needs, "primary")
    assert case.id == case_id
    return case


def test_entry_round_trips_and_model_cases_are_never_stored(tmp_path):
    record = {"id": "data_integrity", "verdict": "pass", "value": 0}
    cache = gc.DataGateCache(tmp_path, "k1")
    cache.put(_case(), record)
    cache.put(_case(needs=("data", "model")), record)  # a model case: not kept
    assert cache.save() == tmp_path / "k1.json"
    again = gc.DataGateCache(tmp_path, "k1")
    assert again.get(_case()) == record and again.notices == []
    assert again.get(_case(needs=("data", "model"))) is None
    assert [p.name for p in tmp_path.iterdir()] == ["k1.json"]  # no temporary file left behind


@pytest.mark.parametrize(
    "content",
    [
        b'{"format": "shortcutgates.gate-cache/1", "key": "k1", "rec',
        b"\x00\xff garbage",
        b"[1, 2]",
        b'{"format": "shortcutgates.gate-cache/1", "key": "other", "records": {}}',
        b'{"format": "shortcutgates.gate-cache/1", "key": "k1", "records": {"a": 1}}',
    ],
    ids=["truncated", "binary", "not_an_object", "wrong_key", "bad_records"],
)
def test_corrupt_entry_is_ignored_with_one_notice(tmp_path, content):
    (tmp_path / "k1.json").write_bytes(content)
    seen = []
    cache = gc.DataGateCache(tmp_path, "k1", notify=seen.append)
    assert cache.records == {} and cache.get(_case()) is None
    assert len(seen) == 1 and "\n" not in seen[0]
    assert seen[0].startswith(f"shortcutgates: ignoring the corrupt gate cache entry {tmp_path / 'k1.json'} (")
    cache.put(_case(), {"id": "data_integrity", "verdict": "pass"})
    cache.save()  # overwritten with a good entry
    assert gc.DataGateCache(tmp_path, "k1").get(_case())["verdict"] == "pass"


def test_cache_dir_from_option_environment_or_home(tmp_path, monkeypatch):
    assert gc.cache_dir(tmp_path / "x") == tmp_path / "x" / "gates"
    monkeypatch.setenv(gc.ENV, str(tmp_path / "env"))
    assert gc.cache_dir() == tmp_path / "env" / "gates"
    monkeypatch.delenv(gc.ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert gc.cache_dir() == tmp_path / "xdg" / "shortcutgates" / "gates"


# --- reuse by the pytest plugin ---------------------------------------------------------------------
SELECT = ["-k", "data_integrity or lrg_leakage"]


@pytest.fixture
def suite(pytester):
    pytester.makepyfile(test_gates="from shortcutgates.gates.gate_suite import test_gate  # noqa: F401\n")
    return pytester


def _break_measurements(monkeypatch):
    """Any data case that is measured (not reused) now errs."""
    from shortcutgates.gates import registry

    def refuse(context, case):
        raise AssertionError(f"{case.id} was measured again")

    monkeypatch.setattr(registry, "run_case", refuse)


def test_plugin_reuses_data_cases_and_no_cache_recomputes(suite, tmp_path, monkeypatch):
    store = tmp_path / "store"
    first = suite.runpytest(f"--data={CLEAN}", f"--gate-cache={store}", *SELECT)
    first.assert_outcomes(passed=3)
    first.stdout.fnmatch_lines([f"gate cache: 0 of 3 data cases reused; entry {store}/gates/*.json (written)"])
    _break_measurements(monkeypatch)
    second = suite.runpytest(f"--data={CLEAN}", f"--gate-cache={store}", *SELECT)
    second.assert_outcomes(passed=3)  # nothing measured: every record came from the entry
    second.stdout.fnmatch_lines([f"gate cache: 3 of 3 data cases reused; entry {store}/gates/*.json"])
    forced = suite.runpytest(f"--data={CLEAN}", f"--gate-cache={store}", "--gate-no-cache", *SELECT)
    assert forced.ret == pytest.ExitCode.TESTS_FAILED and "was measured again" in forced.stdout.str()


def test_plugin_recomputes_after_a_setting_changes(suite, tmp_path, monkeypatch):
    store = tmp_path / "store"
    suite.runpytest(f"--data={CLEAN}", f"--gate-cache={store}", *SELECT).assert_outcomes(passed=3)
    suite.makefile(".toml", pyproject="[tool.shortcutgates]\nseed = 3\n")
    _break_measurements(monkeypatch)
    changed = suite.runpytest(f"--data={CLEAN}", f"--gate-cache={store}", *SELECT)
    assert changed.ret == pytest.ExitCode.TESTS_FAILED and "was measured again" in changed.stdout.str()


def test_plugin_ignores_a_corrupt_entry_with_one_line(suite, tmp_path):
    store = tmp_path / "store"
    suite.runpytest(f"--data={CLEAN}", f"--gate-cache={store}", *SELECT).assert_outcomes(passed=3)
    (entry,) = (store / "gates").glob("*.json")
    entry.write_bytes(entry.read_bytes()[:40])
    again = suite.runpytest(f"--data={CLEAN}", f"--gate-cache={store}", *SELECT)
    again.assert_outcomes(passed=3)
    notices = [line for line in again.stdout.lines if "corrupt gate cache entry" in line]
    assert len(notices) == 1 and notices[0].startswith(
        f"shortcutgates: ignoring the corrupt gate cache entry {entry} ("
    )
    assert gc.DataGateCache(entry.parent, entry.stem).records  # rewritten whole


def test_gate_command_passes_the_cache_options_to_pytest(tmp_path):
    import argparse

    from shortcutgates.gates import command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    (tmp_path / "d").mkdir()
    argv = command.pytest_argv(parser.parse_args(["--data", "d", "--gate-cache", "c", "--no-cache"]), tmp_path)
    assert f"--gate-cache={tmp_path / 'c'}" in argv and "--gate-no-cache" in argv
    plain = command.pytest_argv(parser.parse_args(["--data", "d"]), tmp_path)
    assert not any(a.startswith(("--gate-cache", "--gate-no-cache")) for a in plain)


def test_gate_many_reuses_the_data_cases(tmp_path, monkeypatch):
    """``shortcutgates gate`` with model files: the data cases of a second call come from the entry."""
    from shortcutgates.gates import sweep

    model = FIXTURES / "checkpoints" / "clean.pt"
    store = tmp_path / "store"
    assert sweep.gate_many(CLEAN, [model], tmp_path / "a", cache_dir=store, progress=False) in (0, 1)
    first = json.loads((tmp_path / "a" / "clean.json").read_text())
    measured = []
    real = sweep.run_suite

    def counting(context, select=None, waivers=True, *, cases=None, **kw):
        chosen = [c for c in cases if select is None or select(c)]
        measured.extend(chosen)
        return real(context, select, waivers, cases=chosen, **kw)

    monkeypatch.setattr(sweep, "run_suite", counting)
    sweep.gate_many(CLEAN, [model], tmp_path / "b", cache_dir=store, progress=False)
    # only what depends on the model is measured again: model cases, the probe decided on the model's input,
    # and the leakage against the checkpoint's recorded training manifest
    assert measured and all(
        "model" in c.needs or c.gate in sweep.INPUT_DECIDED or str(c.params.get("pair", "")).endswith("model_train")
        for c in measured
    )
    assert json.loads((tmp_path / "b" / "clean.json").read_text()) == first  # the same report
