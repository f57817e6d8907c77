"""Gating many checkpoints on one data read gives each the very report it gets alone (issue 22).

The model-independent work of the model gates — samples, inputs of named preprocessings, probe fits,
the paired set and its lensing split, the counterfactual images — is made once per context (and the
lensing split kept in the gate cache); each test compares the shared or cached path with a fresh,
unshared computation, with exact equality.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shortcutgates.model import scorers
from shortcutgates.gates import cache as gc
from shortcutgates.gates import model_gates as mg
from shortcutgates.gates import paired, perturb, sweep
from shortcutgates.gates import reference_scorers as rs
from shortcutgates.gates.registry import GateConfig, GateContext, gate_cases, run_case
from shortcutgates.gates.suite import run_suite
from shortcutgates.gates.synthetic import ToySpec, make_rows, write_manifest

CFG = GateConfig(n_boot=500, max_samples=160, boxes=(10,))
SPEC = ToySpec(
    n_lrgs=120,
    positives_per_lrg=2,
    paired=True,
    core_fraction=0.03,
    theta_e_arcsec=(0.6, 2.5),
    arc_flux=120.0,
    lensed=True,
    seed=7,
)


MODELS = {
    "arc.pt": (rs.arc_reader, "raw_robust"),
    "mix.pt": (rs.mixture_reader(0.5), "residual"),
    "core.pt": (rs.core_reader, "residual"),
}
"""The last reuses the probe fits on ``residual`` inputs that the one before it made in a sweep."""


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_manifest(make_rows(SPEC), tmp_path_factory.mktemp("paired"))


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "pyproject.toml"
    path.write_text(f"[tool.shortcutgates]\nn_boot = {CFG.n_boot}\nmax_samples = {CFG.max_samples}\nboxes = [10]\n")
    return path


def _fake_loader(path, cache=None):
    fn, preprocess = MODELS[Path(path).name]
    return scorers.Scorer(fn, preprocess, {"path": str(path), "kind": "callable"})


def test_each_model_of_a_sweep_gets_the_report_it_gets_alone(data, config_file, tmp_path, monkeypatch):
    monkeypatch.setattr(scorers, "load_scorer", _fake_loader)
    models = [tmp_path / name for name in MODELS]
    sweep.gate_many(
        data,
        models,
        tmp_path / "out",
        config_path=config_file,
        cache_dir=tmp_path / "cache",
        progress=False,
        strict=False,
    )
    for path in models:
        fn, preprocess = MODELS[path.name]
        alone = GateContext(data, config=CFG).with_scorer(fn, preprocess, path)  # nothing shared, no cache
        cases = gate_cases(alone)
        swept = json.loads((tmp_path / "out" / f"{path.stem}.json").read_text())["gates"]
        assert [g["id"] for g in swept] == [c.id for c in cases]
        # what the sweep measures per model (the data cases' records are measured once, on the data alone)
        reused = path.name == "core.pt"  # the model-input probes of the others are fitted as they were before
        expected = [
            run.record()
            for run in run_suite(
                alone, lambda c, r=reused: "model" in c.needs or (r and c.gate in sweep.INPUT_DECIDED), cases=cases
            )
        ]
        by_id = {g["id"]: g for g in swept}
        assert [by_id[r["id"]] for r in expected] == json.loads(
            json.dumps(expected)
        )  # values, intervals, verdicts, roles
        assert any(r["gate"] == "arc_masked_auroc" and r["verdict"] != "error" for r in expected)  # pairs were gated


def _pair_scores(context) -> dict:
    return paired.pair_scores(context, context.paired_split)


def test_lensing_split_from_the_gate_cache_is_the_same(data, tmp_path, monkeypatch):
    def fresh():
        return GateContext(data, config=CFG).with_scorer(rs.arc_reader, "raw_robust")

    reference = _pair_scores(fresh())  # no cache: computed
    entry = gc.open_cache(fresh(), tmp_path)
    first = fresh()
    first.array_cache = entry
    assert all(np.array_equal(v, reference[k]) for k, v in _pair_scores(first).items())
    (stored,) = tmp_path.glob(f"gates/*.lensing-{first.paired_split}.npz")
    calls = []
    real = perturb.split_lensed_light
    monkeypatch.setattr(paired, "split_lensed_light", lambda *a, **k: calls.append(1) or real(*a, **k))
    second = fresh()
    second.array_cache = gc.open_cache(second, tmp_path)
    cached = _pair_scores(second)
    assert not calls and all(np.array_equal(v, reference[k]) for k, v in cached.items())
    ps_a, ps_b = paired.paired_set(first, first.paired_split), paired.paired_set(second, second.paired_split)
    assert [b["label"] for b in ps_a.bins] == [b["label"] for b in ps_b.bins]
    assert all(np.array_equal(x, y) for x, y in zip(ps_a.split, ps_b.split))

    stored.write_bytes(stored.read_bytes()[:100])  # truncated: ignored with one line, recomputed, rewritten
    notices: list = []
    third = fresh()
    third.array_cache = gc.open_cache(third, tmp_path, notify=notices.append)
    assert all(np.array_equal(v, reference[k]) for k, v in _pair_scores(third).items())
    assert len(calls) == 1 and len(notices) == 1
    assert notices[0].startswith(f"shortcutgates: ignoring the corrupt gate cache entry {stored} (")
    forced = fresh()
    forced.array_cache = gc.open_cache(forced, tmp_path)
    forced.array_cache.forget()  # --no-cache: computed again
    _pair_scores(forced)
    assert len(calls) == 2


def test_a_data_only_run_lists_the_model_cases_without_the_lensing_split(data, monkeypatch):
    with_model = GateContext(data, config=CFG).with_scorer(rs.arc_reader, "raw_robust")
    expected = {c.id: c for c in gate_cases(with_model)}
    assert any(
        c.role == "reported" and "theta_e" in c.params for c in expected.values()
    )  # a bin a model's split reports

    def refuse(*args, **kwargs):
        raise AssertionError("the lensing split ran in a data-only listing")

    monkeypatch.setattr(paired, "split_lensed_light", refuse)
    data_only = GateContext(data, config=CFG)
    listed = [c for c in gate_cases(data_only) if c.gate in mg.GATE_STATISTICS]
    assert [c.id for c in listed] == [i for i, c in expected.items() if c.gate in mg.GATE_STATISTICS]  # the same bins
    monkeypatch.undo()
    # a model given after the listing (the user's scorer fixture) runs each bin in the role its lensing split gives
    model = data_only.with_scorer(rs.arc_reader, "raw_robust")
    for case in [c for c in listed if c.gate == "arc_masked_auroc"]:
        assert run_case(model, case).role == expected[case.id].role


def test_the_integrity_pass_decodes_each_row_once_and_the_samples_are_the_same(data, monkeypatch):
    from shortcutgates.gates import context as gctx

    fresh = GateContext(data, config=CFG)
    reference = {s: fresh.sample(s) for s in fresh.splits}  # each sample decodes its rows itself
    problems = fresh.integrity()
    decoded: list = []
    real = gctx.decode_rows
    monkeypatch.setattr(gctx, "decode_rows", lambda frame, *a: decoded.append(len(frame)) or real(frame, *a))
    once = GateContext(data, config=CFG)
    assert once.integrity() == problems
    for split, sample in reference.items():
        again = once.sample(split)
        assert np.array_equal(again.images, sample.images) and again.frame.equals(sample.frame)
        assert again.n_bad == sample.n_bad and again.n_duplicates == sample.n_duplicates
    assert sum(decoded) == len(once.frame)  # every row once: the integrity pass


def test_a_bad_row_leaves_each_sample_to_decode_its_own_rows(data, tmp_path):
    import shutil

    import pandas as pd

    path = Path(shutil.copytree(data, tmp_path / "m"))
    part = next(path.glob("*.parquet"))
    frame = pd.read_parquet(part)
    column = next(c for c in frame.columns if frame[c].dtype == object and isinstance(frame[c].iloc[0], bytes))
    frame.at[3, column] = b"not a stamp"
    frame.to_parquet(part, index=False)
    fresh, once = GateContext(path, config=CFG), GateContext(path, config=CFG)
    reference = {s: fresh.sample(s) for s in fresh.splits}
    assert len(once.integrity()) >= 1
    for split, sample in reference.items():
        assert np.array_equal(once.sample(split).images, sample.images)
        assert once.sample(split).n_bad == sample.n_bad


def test_a_checkpoint_scoring_shared_inputs_in_a_sweep_gets_its_report_alone(config_file, tmp_path):
    """A sweep hands a checkpoint the context's preprocessed samples (``Scorer.score_inputs``); alone it
    preprocesses raw stamps itself (``predict_scores``): the same scores, so the same report."""
    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    data, model = fixtures / "data" / "clean", fixtures / "checkpoints" / "clean.pt"
    sweep.gate_many(
        data,
        [model],
        tmp_path / "out",
        config_path=config_file,
        cache_dir=tmp_path / "cache",
        progress=False,
        strict=False,
    )
    swept = {g["id"]: g for g in json.loads((tmp_path / "out" / "clean.json").read_text())["gates"]}
    scorer = scorers.load_scorer(model)  # no preprocessing cache: raw stamps in, as a single run
    assert scorer.score_inputs is None
    alone = GateContext(data, config=CFG).with_scorer(scorer.score_fn, scorer.preprocess, model)
    expected = [run.record() for run in run_suite(alone, lambda c: "model" in c.needs)]
    assert expected and [swept[r["id"]] for r in expected] == json.loads(json.dumps(expected))


@pytest.mark.parametrize("statistic", paired.STATISTICS)
def test_paired_statistics_in_batches_equal_the_resample_loop(statistic, monkeypatch):
    from shortcutgates import stats

    rng = np.random.default_rng(4)
    n = 90
    scores = {
        "stamp": np.round(rng.normal(1.5, 1, n), 2),
        "ctrl": np.round(rng.normal(0, 1, n), 2),
        "swapped": np.round(rng.normal(1, 1, n), 2),
        "threshold": 0.8,
    }  # rounded: many ties
    rows, groups = np.arange(n), rng.integers(0, 60, n).astype(str)
    batched = paired.paired_statistic(scores, "swapped", statistic, rows, groups, CFG)
    real = stats.grouped_bootstrap

    def without_batch(labels, values, groups, *, metric, **kw):
        def one(lab, val, w=None):  # the same metric, one resample at a time
            return metric(lab, val, w)

        return real(labels, values, groups, metric=one, **kw)

    monkeypatch.setattr(paired, "grouped_bootstrap", without_batch)
    assert paired.paired_statistic(scores, "swapped", statistic, rows, groups, CFG) == batched
    looped = paired.operational(scores, "swapped", rows, groups, CFG)
    monkeypatch.undo()
    assert paired.operational(scores, "swapped", rows, groups, CFG) == looped


def test_a_checkpoint_scored_in_chunks_on_threads_gets_the_report_it_gets_in_order(config_file, tmp_path, monkeypatch):
    """A sweep's checkpoint scores the chunks of a pass on threads (:func:`scoring.score_chunks`); each chunk is
    one call, so the report is the one a run scoring the chunks in order gets, value for value."""
    from shortcutgates.gates import context as gate_context
    from shortcutgates.gates import scoring

    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    data, model = fixtures / "data" / "clean", fixtures / "checkpoints" / "clean.pt"
    monkeypatch.setattr(scoring, "CHUNK", 32)  # several chunks per pass at max_samples = 160
    calls: list[int] = []
    monkeypatch.setattr(gate_context, "inference_threads", lambda: calls.append(1) or 2)
    sweep.gate_many(
        data,
        [model],
        tmp_path / "out",
        config_path=config_file,
        cache_dir=tmp_path / "cache",
        progress=False,
        strict=False,
    )
    assert calls  # the passes ran on two threads
    swept = {g["id"]: g for g in json.loads((tmp_path / "out" / "clean.json").read_text())["gates"]}
    scorer = scorers.load_scorer(model)
    alone = GateContext(data, config=CFG).with_scorer(scorer.score_fn, scorer.preprocess, model)
    expected = [run.record() for run in run_suite(alone, lambda c: "model" in c.needs)]
    assert expected and [swept[r["id"]] for r in expected] == json.loads(json.dumps(expected))


def test_score_chunks_on_threads_returns_the_chunks_in_order():
    from shortcutgates.gates import scoring

    images = np.arange(3 * scoring.CHUNK + 5, dtype=np.float64)[:, None]
    seen: list[int] = []
    ordered = scoring.score_chunks(lambda x: x[:, 0] * 2, images, threads=1, done=seen.append)
    threaded = scoring.score_chunks(lambda x: x[:, 0] * 2, images, threads=3)
    assert [len(c) for c in threaded] == [scoring.CHUNK] * 3 + [5] and sum(seen) == len(images)
    assert np.array_equal(np.concatenate(threaded), np.concatenate(ordered))
    assert np.array_equal(np.concatenate(threaded), images[:, 0] * 2)


def test_the_refit_helpers_equal_the_expressions_they_replace():
    """The refitted bootstrap's resample filter and in-place logistic give the loop's booleans and the
    expression's floats, bit for bit."""
    from shortcutgates.gates import probes
    from shortcutgates.stats import bootstrap_counts

    rng = np.random.default_rng(5)
    units = np.r_[np.arange(6), rng.integers(1, 6, 10)]  # one unit holds the only positive: often not drawn
    labels = np.r_[1, np.zeros(15, int)]
    draws = bootstrap_counts(rng, 6, 400)
    loop = [len(np.unique(labels[d[units] > 0])) == 2 for d in draws]
    assert not all(loop) and np.array_equal(probes._both_classes(draws, units, labels), loop)
    z = rng.normal(0, 8, (50, 70))
    assert np.array_equal(probes._logistic(z.copy()), 1.0 / (1.0 + np.exp(-z)))


def test_seeded_counts_are_the_draws_of_a_fresh_generator_and_are_kept():
    """Every interval draws its resamples from ``default_rng(seed)``; the kept draws are those integers."""
    from shortcutgates import stats

    rng = np.random.default_rng(11)
    expected = [stats.bootstrap_counts(rng, 37, size) for size in (250, 250, 100)]
    first = stats.seeded_counts(11, 37, (250, 250, 100))
    assert all(np.array_equal(a, b) for a, b in zip(first, expected))
    assert stats.seeded_counts(11, 37, (250, 250, 100)) is first  # kept: not drawn again
    assert not first[0].flags.writeable
    labels, scores = np.r_[np.zeros(40), np.ones(34)].astype(int), np.round(rng.normal(size=74), 1)
    groups = np.r_[np.arange(37), np.arange(37)]
    again = [stats.grouped_bootstrap(labels, scores, groups, n_boot=600, seed=11) for _ in range(2)]
    assert again[0] == again[1]


@pytest.mark.parametrize("mode", ["raw_robust", "residual"])
def test_annulus_preprocessing_in_chunks_on_threads_is_the_one_pass(mode, monkeypatch):
    """A sample's ``raw_robust`` / ``residual`` inputs are made chunk by chunk on threads
    (:func:`scoring.by_stamp_chunks`): stamp by stamp, the floats of one pass."""
    from shortcutgates.gates import scoring
    from shortcutgates.model.preprocess import annulus_median_mad, get_preprocessor

    monkeypatch.setattr(scoring, "CHUNK", 7)
    images = np.random.default_rng(2).normal(1, 1, (30, 3, 32, 32)).astype(np.float32)
    annulus = annulus_median_mad(images)
    fn = get_preprocessor(mode)
    assert np.array_equal(scoring.by_stamp_chunks(lambda x, a: fn(x, a), images, annulus), fn(images, annulus))
