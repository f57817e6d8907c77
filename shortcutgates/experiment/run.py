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

for four configurations (:data:`CONFIGURATIONS`): ``raw_robust``, ``residual``, ``residual`` +
core dropout, and E5 ``residual+hn``: ``residual`` trained on an unpaired manifest with hard
negatives (``build --hard-negatives``, :data:`E5_RECIPE`; its E1 is the ``residual`` paired model).
The whole gate suite runs on every manifest (data gates) and on each E2 model, and each E2 model is
also scored on counterfactuals no recipe trains on (``unseen``: :func:`.measure.unseen_counterfactuals`).
A configuration record also holds ``dataset``, ``hard_negatives``, ``primary_failed`` (the primary
gate cases not passed) and ``unseen`` ({``point_source``, ``moved_counter_image``}: metrics).

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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from shortcutgates import __version__
from shortcutgates.experiment.measure import detection, example_stamps, gate_metric, npz_bytes, property_histograms, run_gates, strip_extra, stratified_bins
from shortcutgates.data.io import jsonable, write_bytes_atomic
from shortcutgates.data.schema import LABEL_COLUMN, SPLIT_COLUMN

SCHEMA = "shortcutgates.experiment/1"


@dataclass(frozen=True)
class Configuration:
    """One row of the remedy table: preprocessing and core dropout of both trainings."""

    name: str
    preprocess: str
    """``raw_robust`` or ``residual`` (docs/design.md#preprocessing)."""
    core_dropout: str | None = None
    """``R:P`` (radius px : probability), see :func:`shortcutgates.model.augment.parse_core_dropout`."""
    hard_negatives: str = ""
    """E5 recipe: ``build --hard-negatives`` kinds of the unpaired training data (``""``: plain)."""
    hard_negative_mix: str = ""
    """``build --hard-negative-mix`` of the recipe (``""``: the defaults)."""
    paired_from: str | None = None
    """A recipe's E1 (paired model) is that of this configuration: hard negatives change only the
    unpaired training data, so its paired model would be the same."""

    @property
    def dataset(self) -> str:
        """Name of the unpaired manifest the configuration trains on (``unpaired`` or ``unpaired-hn-...``)."""
        if not self.hard_negatives:
            return "unpaired"
        tag = self.hard_negatives.replace(",", "-") + (f"-{self.hard_negative_mix}" if self.hard_negative_mix else "")
        return "unpaired-hn-" + tag.replace("=", "").replace(",", "-")


CORE_DROPOUT = "5:0.5"
"""Core dropout of the third configuration: radius 5 px (1.3″, covers the counter-image at 1–3 px)
in half of the training stamps."""

E5_RECIPE = "core,shuffle"
"""Hard-negative kinds of the E5 recipe (docs/experiment.md#e5)."""

CONFIGURATIONS: tuple[Configuration, ...] = (
    Configuration("raw_robust", "raw_robust"),
    Configuration("residual", "residual"),
    Configuration("residual+dropout", "residual", CORE_DROPOUT),
    Configuration("residual+hn", "residual", hard_negatives=E5_RECIPE, paired_from="residual"),
)


@dataclass(frozen=True)
class ExperimentParams:
    """Everything that determines an experiment run (recorded in ``results.json``)."""

    out: Path
    n_lrgs: int = 1000
    """Simulated LRGs per seed (ignored with ``input``)."""
    epochs: int = 10
    seed: int = 0
    seeds: int = 1
    """Number of seeds: ``seed, seed + 1, ...``."""
    input: Path | None = None
    """Paired parquet (docs/design.md#paired-input-format) instead of simulated data."""
    n_boot: int = 1000
    injections_per_lrg: tuple[int, int] = (2, 4)
    """Simulated injections per LRG (builds keep one positive per LRG)."""
    stamp_size: int = 64
    batch_size: int = 64
    max_samples: int | None = 4000
    """Rows per split the gates sample."""
    max_minutes: float | None = None
    """Training time budget per model. Unit: minutes."""
    configs: tuple[Configuration, ...] = CONFIGURATIONS
    progress: bool = True
    train_options: dict = field(default_factory=dict)
    """Extra :class:`~shortcutgates.model.train.TrainConfig` fields (e.g. a smaller ``model``)."""

    def __post_init__(self):
        for name in ("n_lrgs", "epochs", "seeds", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"experiment: '{name}' must be >= 1 (got {getattr(self, name)})")
        if self.n_boot < 500:
            raise ValueError(f"experiment: 'n_boot' must be >= 500 (got {self.n_boot})")
        if not self.configs:
            raise ValueError("experiment: at least one configuration is needed")

    def seed_list(self) -> list:
        return [int(self.seed) + i for i in range(int(self.seeds))]

    def record(self) -> dict:
        return {"n_lrgs": None if self.input else int(self.n_lrgs), "epochs": int(self.epochs),
                "seeds": self.seed_list(), "input": None if self.input is None else str(self.input),
                "n_boot": int(self.n_boot), "injections_per_lrg": list(self.injections_per_lrg),
                "stamp_size": int(self.stamp_size), "batch_size": int(self.batch_size),
                "max_samples": self.max_samples, "max_minutes": self.max_minutes,
                "train_options": {k: (v.to_dict() if hasattr(v, "to_dict") else v)
                                  for k, v in self.train_options.items()},
                "configs": [asdict(c) for c in self.configs]}


class Timer:
    """Wall time per stage and CPU time in all (written to ``timings.json``, never to ``results.json``)."""

    def __init__(self):
        self.stages: dict[str, float] = {}
        self.start = time.perf_counter()
        self.cpu_start = time.process_time()

    def add(self, name: str, since: float) -> None:
        self.stages[name] = round(time.perf_counter() - since, 2)

    def total(self) -> float:
        return round(time.perf_counter() - self.start, 2)

    def cpu(self) -> float:
        """CPU seconds of this process (all threads) since the start."""
        return round(time.process_time() - self.cpu_start, 2)

    def clock(self) -> str:
        s = int(self.total())
        return f"{s // 60:02d}:{s % 60:02d}"


_NO_TIMER = Timer()


def say(message: str, progress: bool = True, timer: Timer = _NO_TIMER) -> None:
    """One progress line on stderr, stamped with the elapsed time (mm:ss)."""
    if progress:
        print(f"[experiment {timer.clock()}] {message}", file=sys.stderr, flush=True)


# --- data ----------------------------------------------------------------------------------------
def paired_input(params: ExperimentParams, seed: int, timer: Timer) -> Path:
    """The paired catalogue of a seed: ``--input``, or simulated into ``out/data/seed<S>/paired_input``."""
    if params.input is not None:
        return Path(params.input)
    from shortcutgates.simulate import simulate_paired

    path = params.out / "data" / f"seed{seed}" / "paired_input"
    if path.is_dir() and any(path.iterdir()):  # simulate_paired renames a complete directory into place
        say(f"seed {seed}: reusing simulated data {path}", params.progress, timer)
        return path
    say(f"seed {seed}: simulating {params.n_lrgs} LRGs -> {path}", params.progress, timer)
    t = time.perf_counter()
    simulate_paired(path, params.n_lrgs, seed, stamp_size=params.stamp_size,
                    injections_per_lrg=tuple(params.injections_per_lrg), progress=params.progress)
    timer.add(f"seed{seed}/simulate", t)
    return path


def build_datasets(source: Path, params: ExperimentParams, seed: int, timer: Timer) -> dict:
    """Build the paired and unpaired manifests of a seed, and one unpaired manifest with hard negatives
    per E5 recipe (same seed, so the same LRG splits); returns ``{name: manifest dir}``."""
    from shortcutgates.data.build import build_manifest

    out = {}
    recipes = {c.dataset: c for c in params.configs if c.hard_negatives}
    for name in ("paired", "unpaired", *recipes):
        path = params.out / "data" / f"seed{seed}" / name
        say(f"seed {seed}: building the {name} manifest -> {path}", params.progress, timer)
        t = time.perf_counter()
        recipe = recipes.get(name)
        extra = {} if recipe is None else {"hard_negatives": recipe.hard_negatives,
                                           "hard_negative_mix": recipe.hard_negative_mix}
        build_manifest(source, path, mode="paired" if name == "paired" else "unpaired", seed=seed,
                       progress=params.progress, **extra)
        timer.add(f"seed{seed}/build_{name}", t)
        out[name] = path
    return out


def split_counts(manifest_dir: Path) -> dict:
    """Rows, positives, negatives and LRGs per split of a manifest."""
    from shortcutgates.model.evaluate import lrg_groups
    from shortcutgates.data.manifest import read_manifest

    frame = read_manifest(manifest_dir, columns=()).frame
    groups = lrg_groups(frame)
    out = {}
    for split in dict.fromkeys(frame[SPLIT_COLUMN].astype(str)):
        sel = (frame[SPLIT_COLUMN].astype(str) == split).to_numpy()
        labels = frame[LABEL_COLUMN].to_numpy()[sel]
        out[split] = {"n": int(sel.sum()), "n_pos": int((labels == 1).sum()), "n_neg": int((labels == 0).sum()),
                      "n_lrgs": int(len(np.unique(groups[sel])))}
    return out


# --- training ------------------------------------------------------------------------------------
WALL_CLOCK_FIELDS = ("seconds", "train_samples_per_s")
"""Training-summary fields that measure wall time: kept out of ``results.json`` (same seed, same bytes)."""


def train_model(manifest: Path, ckpt: Path, config: Configuration, params: ExperimentParams, seed: int) -> dict:
    """Train one model (resuming a checkpoint left by an interrupted run); returns its summary record."""
    from shortcutgates.model.train import TrainConfig, train

    train_config = TrainConfig(preprocess=config.preprocess, core_dropout=config.core_dropout,
                               epochs=params.epochs, batch_size=params.batch_size, seed=seed,
                               max_minutes=params.max_minutes, device="auto", **params.train_options)
    summary = train(manifest, ckpt, train_config, resume=ckpt.exists(), progress=params.progress,
                    cache_dir=params.out / "cache")
    record = {k: v for k, v in summary._asdict().items() if k not in WALL_CLOCK_FIELDS + ("checkpoint",)}
    record["history"] = [{k: v for k, v in row.items() if k not in WALL_CLOCK_FIELDS} for row in summary.history]
    record["checkpoint"] = str(Path(summary.checkpoint).relative_to(params.out)) \
        if Path(summary.checkpoint).is_relative_to(params.out) else str(summary.checkpoint)
    return jsonable(record)


# --- orchestration -------------------------------------------------------------------------------
def run_configuration(config: Configuration, manifests: dict, params: ExperimentParams, seed: int,
                      timer: Timer, step: str, done: dict | None = None) -> dict:
    """Train the paired and unpaired models of one configuration and measure E1–E4, the gates and
    the unseen counterfactuals (:func:`.measure.unseen_counterfactuals`).

    ``done``: records of the configurations already run this seed; a recipe with ``paired_from``
    takes its E1 (paired model) from there instead of training the same paired model again.
    """
    from shortcutgates.experiment.measure import unseen_counterfactuals

    models = params.out / "models" / f"seed{seed}"
    training, ckpts = {}, {}
    reuse = (done or {}).get(config.paired_from) if config.paired_from else None
    unpaired = manifests[config.dataset]
    for mode in ("paired", "unpaired") if reuse is None else ("unpaired",):
        ckpt = models / f"{config.name}-{mode}.pt"
        say(f"seed {seed}: {step} training {config.name} on {mode if mode == 'paired' else config.dataset} data "
            f"({params.epochs} epochs)", params.progress, timer)
        t = time.perf_counter()
        training[mode] = train_model(manifests[mode] if mode == "paired" else unpaired, ckpt, config, params, seed)
        timer.add(f"seed{seed}/train_{config.name}_{mode}", t)
        ckpts[mode] = ckpt
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
    # E4 reads the model's input; a raw_robust model's input is the raw_robust array, whose probe is a
    # data case (the suite does not repeat it as a "-model" case).
    model_input = "raw_robust" if config.preprocess == "raw_robust" else "model"
    needs_model = model_input == "model"

    def core_train(case) -> bool:
        return case.gate == "core_lr_auc" and case.split == "train" and case.params.get("input") == model_input

    e4_records = gates if needs_model else run_gates(unpaired, None, params, seed, model_only=False,
                                                     only=core_train)
    paired_core = None if reuse is not None else run_gates(
        manifests["paired"], ckpts["paired"] if needs_model else None, params, seed, model_only=needs_model,
        only=core_train)
    timer.add(f"seed{seed}/measure_{config.name}", t)
    experiments = {"E1": e1, "E2": e2, "E3": e3,
                   "E3_gap": gate_metric(gates, "cross_test_gap", None, seed),
                   "E4": gate_metric(e4_records, "core_lr_auc", "train", seed, box=10, input=model_input),
                   "E1_core_lr": reuse["experiments"]["E1_core_lr"] if reuse is not None else
                   gate_metric(paired_core, "core_lr_auc", "train", seed, box=10, input=model_input)}
    return {"preprocess": config.preprocess, "core_dropout": config.core_dropout,
            "hard_negatives": config.hard_negatives, "dataset": config.dataset, "training": training,
            "experiments": experiments, "roc": {k: v for k, v in (("E1", roc1), ("E2", roc2), ("E3", roc3)) if v},
            "gates": strip_extra(gates), "stratified": stratified_bins(gates),
            "primary_failed": primary_failed(gates), "unseen": unseen}


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
        record["configs"][config.name] = run_configuration(config, manifests, params, seed, timer, f"[{i + 1}/{n}]",
                                                           record["configs"])
    return record, manifests


def run_experiment(params: ExperimentParams, command: str = "", timer: Timer | None = None) -> dict:
    """Run every seed, write ``results.json``, ``examples.npz``, ``timings.json`` and the report.

    Returns the results dict (see the module docstring).
    """
    from shortcutgates.experiment.report import criteria, render_report, summarise

    params.out.mkdir(parents=True, exist_ok=True)
    timer = Timer() if timer is None else timer
    results = {"schema": SCHEMA, "package_version": __version__, "command": command,
               "params": params.record(), "seeds": []}
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
    parser.add_argument("--n-lrgs", metavar="N", type=int, default=None,
                        help=f"simulated LRGs per seed (not with --input). Default: {d.n_lrgs}")
    parser.add_argument("--epochs", metavar="E", type=int, default=d.epochs,
                        help="training epochs. Default: %(default)r")
    parser.add_argument("--seed", metavar="S", type=int, default=d.seed, help="first seed. Default: %(default)r")
    parser.add_argument("--seeds", metavar="K", type=int, default=d.seeds,
                        help="number of seeds (S, S+1, ...); key numbers become mean ± std. Default: %(default)r")
    parser.add_argument("--input", metavar="PAIRED", type=Path, default=None,
                        help="paired survey parquet (file or directory, docs/design.md#paired-input-format) instead of simulated data")
    parser.add_argument("--n-boot", metavar="B", type=int, default=d.n_boot,
                        help="LRG bootstrap resamples per interval. Default: %(default)r")
    parser.add_argument("--max-minutes", metavar="M", type=float, default=None,
                        help="training time budget per model, minutes. Default: none")
    parser.add_argument("--hard-negatives", metavar="KIND,KIND", default=E5_RECIPE,
                        help="hard-negative kinds of the E5 recipe (core, shuffle, swap; docs/experiment.md#e5); "
                        "'none' leaves E5 out. Default: %(default)s")
    parser.add_argument("--hard-negative-mix", metavar="KIND=F,...", default="",
                        help="mix of the E5 recipe (build --hard-negative-mix). Default: the build's defaults")


def recipe_configs(kinds: str, mix: str = "") -> tuple:
    """:data:`CONFIGURATIONS` with the E5 recipe's kinds and mix replaced (``kinds`` 'none' or '': no E5)."""
    from shortcutgates.data.hard_negatives import parse_kinds, parse_mix

    base = tuple(c for c in CONFIGURATIONS if not c.hard_negatives)
    if kinds in ("", "none"):
        return base
    kinds = ",".join(parse_kinds(kinds))
    parse_mix(mix)
    return base + (Configuration("residual+hn", "residual", hard_negatives=kinds, hard_negative_mix=mix,
                                 paired_from="residual"),)


def params_from_args(args: argparse.Namespace, **overrides) -> ExperimentParams:
    """:class:`ExperimentParams` from the command line; ``--n-lrgs`` with ``--input`` is an error."""
    if args.input is not None and args.n_lrgs is not None:
        raise ValueError("experiment: --n-lrgs sets the size of simulated data and cannot be used with --input "
                         f"(got --n-lrgs {args.n_lrgs} --input {args.input})")
    kw = dict(out=args.out, epochs=args.epochs, seed=args.seed, seeds=args.seeds, input=args.input,
              n_boot=args.n_boot, max_minutes=args.max_minutes,
              configs=recipe_configs(getattr(args, "hard_negatives", E5_RECIPE), getattr(args, "hard_negative_mix", "")))
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
