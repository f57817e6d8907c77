"""``shortcutgates experiment``: the proposal's experiments E1–E4 with its remedies, and the report.

For each seed: simulate paired data (or take ``--input``, the survey's paired parquet), build a
paired and an unpaired manifest (same seed, LRG-disjoint splits; the unpaired build also holds a
``test_paired`` split), train one model per (dataset, configuration), and measure

==== =============================== ===========================================================
E1   paired model, paired ``test``     detection AUROC (baseline)
E2   unpaired model, unpaired ``test`` detection AUROC; the proposal asks > 0.80
E3   E2's model on ``test_paired``     AUROC, and ``E3_gap`` = the ``cross_test_gap`` gate (< 0.05)
E4   E2's model input                  ``core_lr_auc[train-box10-model]`` gate: the core-LR probe on
                                       the unpaired training images as the model sees them (< 0.65)
==== =============================== ===========================================================

(for a raw_robust model, whose input is the raw_robust array, E4 is ``core_lr_auc[train-box10-raw_robust]``),
plus ``E1_core_lr``, the same probe on E1's (paired) training input, which with E4 gives the
paired/unpaired × raw/residual core-LR table of docs/design.md#the-shortcut.

for four configurations (:data:`.params.CONFIGURATIONS`): ``raw_robust``, ``residual``, ``residual`` +
core dropout, and E5 ``residual+hn``: ``residual`` trained on an unpaired manifest with hard
negatives (``build --hard-negatives``, :data:`E5_RECIPE`; its E1 is the ``residual`` paired model).
The whole gate suite runs on every manifest (data gates) and on each E2 model, and each E2 model is
also scored on counterfactuals no recipe trains on (``unseen``: :func:`.measure.unseen_counterfactuals`).
A configuration record also holds ``dataset``, ``hard_negatives``, ``primary_failed`` (the primary
gate cases not passed) and ``unseen`` ({``point_source``, ``moved_counter_image``}: metrics).

The configurations and :class:`.params.ExperimentParams` are in :mod:`.params`; the timed stages of a
seed (simulate, build, train) in :mod:`.stages`.

``results.json`` (schema ``shortcutgates.experiment/1``, written atomically; no wall times, so the
same seed gives the same bytes — they go to ``timings.json``)::

    {"schema", "package_version", "command",
     "params": {"n_lrgs", "epochs", "seeds": [..], "input", "n_boot", "injections_per_lrg",
                "configs": [{"name", "preprocess", "core_dropout"}], ...},
     "seeds": [{"seed",
                "datasets": {"paired"|"unpaired": {"path", "splits": {split: {n, n_pos, n_neg, n_lrgs}}}},
                "data_gates": {"paired"|"unpaired": [docs/design.md#report-json gate records]},
                "configs": {name: {"preprocess", "core_dropout",
                                   "training": {"paired"|"unpaired": {TrainSummary fields, no wall times}},
                                   "experiments": {"E1"|"E2"|"E3"|"E3_gap"|"E4"|"E1_core_lr": metric},
                                   "roc": {"E1"|"E2"|"E3": {"fpr": [..], "tpr": [..]}},
                                   "gates": [gate records of the E2 model],
                                   "stratified": {by: [{"bin": [lo, hi], "value", "ci", "n", "n_groups"}]}}}}],
     "properties": {column: {"edges", "pos", "neg", "smd"}},     # unpaired train split, first seed
     "examples": {"file": "examples.npz", "n": k},
     "summary": {config: {metric: {"mean", "std", "n_seeds", "values"}}},
     "criteria": [{"config", "name", "metric", "threshold", "direction", "verdict", "value", "detail"}]}

A *metric* is ``{"metric", "value", "ci": [lo, hi] | null, "n", "n_groups", "seed", "source",
"tpr_at_fpr"?, "verdict"?, "message"?}``: ``seed`` is the experiment seed (which also seeds the
bootstrap), ``source`` the gate id or ``evaluate_scores`` it came from.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


from shortcutgates import __version__
from shortcutgates.experiment.measure import (
    detection,
    example_stamps,
    gate_metric,
    npz_bytes,
    property_histograms,
    run_gates,
    strip_extra,
    stratified_bins,
)
from shortcutgates.experiment.params import E5_RECIPE, Configuration, ExperimentParams, recipe_configs
from shortcutgates.experiment.stages import Timer, build_datasets, paired_input, say, split_counts, train_model
from shortcutgates.data.io import jsonable, write_bytes_atomic

SCHEMA = "shortcutgates.experiment/1"


# --- orchestration -------------------------------------------------------------------------------
def run_configuration(
    config: Configuration,
    manifests: dict,
    params: ExperimentParams,
    seed: int,
    timer: Timer,
    step: str,
    done: dict | None = None,
) -> dict:
    """Train the paired and unpaired models of one configuration and measure E1–E4, the gates and
    the unseen counterfactuals (:func:`.measure.unseen_counterfactuals`).

    ``done``: records of the configurations already run this seed; a recipe with ``paired_from``
    takes its E1 (paired model) from there instead of training the same paired model again.
    """
    from shortcutgates.experiment.measure import unseen_counterfactuals

    reuse = (done or {}).get(config.paired_from) if config.paired_from else None
    unpaired = manifests[config.dataset]
    training, ckpts = train_models(config, manifests, params, seed, timer, step, paired=reuse is None)
    say(f"seed {seed}: {step} measuring E1-E4 and the model gates of {config.name}", params.progress, timer)
    t = time.perf_counter()
    if reuse is None:
        e1, roc1 = detection(ckpts["paired"], manifests["paired"], "test", seed, params)
    else:
        e1, roc1 = reuse["experiments"]["E1"], reuse["roc"].get("E1")
        training["paired"] = {"same_as": config.paired_from}
    e2, roc2 = detection(ckpts["unpaired"], unpaired, "test", seed, params)
    e3, roc3 = detection(ckpts["unpaired"], unpaired, "test_paired", seed, params)
    gates = run_gates(unpaired, ckpts["unpaired"], params, seed, model_only=True)
    unseen = unseen_counterfactuals(ckpts["unpaired"], unpaired, seed, params)
    e4, e1_core_lr = core_lr_metrics(config, manifests, ckpts, gates, params, seed, reuse)
    timer.add(f"seed{seed}/measure_{config.name}", t)
    experiments = {
        "E1": e1,
        "E2": e2,
        "E3": e3,
        "E3_gap": gate_metric(gates, "cross_test_gap", None, seed),
        "E4": e4,
        "E1_core_lr": e1_core_lr,
    }
    return {
        "preprocess": config.preprocess,
        "core_dropout": config.core_dropout,
        "hard_negatives": config.hard_negatives,
        "dataset": config.dataset,
        "training": training,
        "experiments": experiments,
        "roc": {k: v for k, v in (("E1", roc1), ("E2", roc2), ("E3", roc3)) if v},
        "gates": strip_extra(gates),
        "stratified": stratified_bins(gates),
        "primary_failed": primary_failed(gates),
        "unseen": unseen,
    }


def train_models(
    config: Configuration,
    manifests: dict,
    params: ExperimentParams,
    seed: int,
    timer: Timer,
    step: str,
    paired: bool = True,
) -> tuple[dict, dict]:
    """Train the configuration's unpaired model (and with ``paired`` its paired one) into
    ``out/models/seed<S>/<name>-<mode>.pt``; returns ``({mode: training record}, {mode: checkpoint})``."""
    models = params.out / "models" / f"seed{seed}"
    training, ckpts = {}, {}
    unpaired = manifests[config.dataset]
    for mode in ("paired", "unpaired") if paired else ("unpaired",):
        ckpt = models / f"{config.name}-{mode}.pt"
        say(
            f"seed {seed}: {step} training {config.name} on {mode if mode == 'paired' else config.dataset} data "
            f"({params.epochs} epochs)",
            params.progress,
            timer,
        )
        t = time.perf_counter()
        training[mode] = train_model(manifests[mode] if mode == "paired" else unpaired, ckpt, config, params, seed)
        timer.add(f"seed{seed}/train_{config.name}_{mode}", t)
        ckpts[mode] = ckpt
    return training, ckpts


def core_lr_metrics(
    config: Configuration,
    manifests: dict,
    ckpts: dict,
    gates: list,
    params: ExperimentParams,
    seed: int,
    reuse: dict | None,
) -> tuple:
    """``(E4, E1_core_lr)``: the core-LR probe on the unpaired and the paired training input as the model
    sees it (``gates``: the unpaired model's gate records; ``reuse``: the record whose E1 this one shares)."""
    # E4 reads the model's input; a raw_robust model's input is the raw_robust array, whose probe is a
    # data case (the suite does not repeat it as a "-model" case).
    model_input = "raw_robust" if config.preprocess == "raw_robust" else "model"
    needs_model = model_input == "model"

    def core_train(case) -> bool:
        return case.gate == "core_lr_auc" and case.split == "train" and case.params.get("input") == model_input

    e4_records = (
        gates
        if needs_model
        else run_gates(manifests[config.dataset], None, params, seed, model_only=False, only=core_train)
    )
    e4 = gate_metric(e4_records, "core_lr_auc", "train", seed, box=10, input=model_input)
    if reuse is not None:
        return e4, reuse["experiments"]["E1_core_lr"]
    paired_core = run_gates(
        manifests["paired"],
        ckpts["paired"] if needs_model else None,
        params,
        seed,
        model_only=needs_model,
        only=core_train,
    )
    return e4, gate_metric(paired_core, "core_lr_auc", "train", seed, box=10, input=model_input)


def primary_failed(records: list) -> list:
    """Ids of the primary gate cases whose verdict is not ``pass`` (fail, inconclusive, error), in order."""
    return [r["id"] for r in records if r.get("role") == "primary" and r["verdict"] not in ("pass", "skipped")]


def run_seed(params: ExperimentParams, seed: int, timer: Timer) -> tuple:
    """Everything of one seed: ``(seed record, manifests)``."""
    source = paired_input(params, seed, timer)
    manifests = build_datasets(source, params, seed, timer)
    record = {"seed": seed, "datasets": {}, "data_gates": {}, "configs": {}}
    for mode, path in manifests.items():
        record["datasets"][mode] = {"path": str(path.relative_to(params.out)), "splits": split_counts(path)}
        say(f"seed {seed}: data gates on the {mode} manifest", params.progress, timer)
        t = time.perf_counter()
        record["data_gates"][mode] = strip_extra(run_gates(path, None, params, seed, model_only=False))
        timer.add(f"seed{seed}/data_gates_{mode}", t)
    n = len(params.configs)
    for i, config in enumerate(params.configs):
        record["configs"][config.name] = run_configuration(
            config, manifests, params, seed, timer, f"[{i + 1}/{n}]", record["configs"]
        )
    return record, manifests


def run_experiment(params: ExperimentParams, command: str = "", timer: Timer | None = None) -> dict:
    """Run every seed, write ``results.json``, ``examples.npz``, ``timings.json`` and the report.

    Returns the results dict (see the module docstring).
    """
    from shortcutgates.experiment.criteria import criteria, summarise
    from shortcutgates.experiment.report import render_report

    params.out.mkdir(parents=True, exist_ok=True)
    timer = Timer() if timer is None else timer
    results = {
        "schema": SCHEMA,
        "package_version": __version__,
        "command": command,
        "params": params.record(),
        "seeds": [],
    }
    first = None
    for seed in params.seed_list():
        record, manifests = run_seed(params, seed, timer)
        results["seeds"].append(record)
        first = first or (seed, manifests, record)
    seed, manifests, record = first
    results["properties"] = property_histograms(manifests["unpaired"], record["data_gates"]["unpaired"])
    examples = example_stamps(manifests["paired"], seed)
    if examples:
        buf = npz_bytes(examples)
        write_bytes_atomic(params.out / "examples.npz", buf)
        results["examples"] = {"file": "examples.npz", "n": int(len(examples["stamp"]))}
    results["summary"] = summarise(results)
    results["criteria"] = [c._asdict() for c in criteria(results)]
    results = jsonable(results)
    write_bytes_atomic(params.out / "results.json", (json.dumps(results, indent=1) + "\n").encode())
    say("writing the report", params.progress, timer)
    t = time.perf_counter()
    render_report(results, params.out)
    timer.add("report", t)
    timings = {"total_s": timer.total(), "cpu_s": timer.cpu(), "stages_s": timer.stages}
    write_bytes_atomic(params.out / "timings.json", (json.dumps(timings, indent=1) + "\n").encode())
    return results


# --- command -------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = ExperimentParams(out=Path("."))
    parser.add_argument("--out", metavar="DIR", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--n-lrgs",
        metavar="N",
        type=int,
        default=None,
        help=f"simulated LRGs per seed (not with --input). Default: {d.n_lrgs}",
    )
    parser.add_argument(
        "--epochs", metavar="E", type=int, default=d.epochs, help="training epochs. Default: %(default)r"
    )
    parser.add_argument("--seed", metavar="S", type=int, default=d.seed, help="first seed. Default: %(default)r")
    parser.add_argument(
        "--seeds",
        metavar="K",
        type=int,
        default=d.seeds,
        help="number of seeds (S, S+1, ...); key numbers become mean ± std. Default: %(default)r",
    )
    parser.add_argument(
        "--input",
        metavar="PAIRED",
        type=Path,
        default=None,
        help="paired survey parquet (file or directory, docs/design.md#paired-input-format) instead of simulated data",
    )
    parser.add_argument(
        "--n-boot",
        metavar="B",
        type=int,
        default=d.n_boot,
        help="LRG bootstrap resamples per interval. Default: %(default)r",
    )
    parser.add_argument(
        "--max-minutes",
        metavar="M",
        type=float,
        default=None,
        help="training time budget per model, minutes. Default: none",
    )
    parser.add_argument(
        "--hard-negatives",
        metavar="KIND,KIND",
        default=E5_RECIPE,
        help="hard-negative kinds of the E5 recipe (core, shuffle, swap; docs/experiment.md#e5); "
        "'none' leaves E5 out. Default: %(default)s",
    )
    parser.add_argument(
        "--hard-negative-mix",
        metavar="KIND=F,...",
        default="",
        help="mix of the E5 recipe (build --hard-negative-mix). Default: the build's defaults",
    )


def params_from_args(args: argparse.Namespace, **overrides) -> ExperimentParams:
    """:class:`ExperimentParams` from the command line; ``--n-lrgs`` with ``--input`` is an error."""
    if args.input is not None and args.n_lrgs is not None:
        raise ValueError(
            "experiment: --n-lrgs sets the size of simulated data and cannot be used with --input "
            f"(got --n-lrgs {args.n_lrgs} --input {args.input})"
        )
    kw = dict(
        out=args.out,
        epochs=args.epochs,
        seed=args.seed,
        seeds=args.seeds,
        input=args.input,
        n_boot=args.n_boot,
        max_minutes=args.max_minutes,
        configs=recipe_configs(getattr(args, "hard_negatives", E5_RECIPE), getattr(args, "hard_negative_mix", "")),
    )
    if args.n_lrgs is not None:
        kw["n_lrgs"] = args.n_lrgs
    kw.update(overrides)
    return ExperimentParams(**kw)


def run(args: argparse.Namespace) -> int:
    from shortcutgates.experiment.report import terminal_table

    params = params_from_args(args)
    command = "shortcutgates experiment " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["experiment"] else ""
    results = run_experiment(params, command=command)
    print(terminal_table(results))
    print(f"report: {params.out / 'report.md'}\n        {params.out / 'report.html'}")
    return 0
