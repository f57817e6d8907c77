"""The stages of one experiment seed, each timed: the paired catalogue (simulated, or ``--input``), its
manifests, their split counts, and training a model; :class:`Timer` and :func:`say`, the wall-time
record and the progress line of every stage.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from shortcutgates.data.io import jsonable
from shortcutgates.data.schema import LABEL_COLUMN, SPLIT_COLUMN
from shortcutgates.experiment.params import Configuration, ExperimentParams


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
    simulate_paired(
        path,
        params.n_lrgs,
        seed,
        stamp_size=params.stamp_size,
        injections_per_lrg=tuple(params.injections_per_lrg),
        progress=params.progress,
    )
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
        extra = (
            {}
            if recipe is None
            else {"hard_negatives": recipe.hard_negatives, "hard_negative_mix": recipe.hard_negative_mix}
        )
        build_manifest(
            source,
            path,
            mode="paired" if name == "paired" else "unpaired",
            seed=seed,
            progress=params.progress,
            **extra,
        )
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
        out[split] = {
            "n": int(sel.sum()),
            "n_pos": int((labels == 1).sum()),
            "n_neg": int((labels == 0).sum()),
            "n_lrgs": int(len(np.unique(groups[sel]))),
        }
    return out


# --- training ------------------------------------------------------------------------------------
WALL_CLOCK_FIELDS = ("seconds", "train_samples_per_s")
"""Training-summary fields that measure wall time: kept out of ``results.json`` (same seed, same bytes)."""


def train_model(manifest: Path, ckpt: Path, config: Configuration, params: ExperimentParams, seed: int) -> dict:
    """Train one model (resuming a checkpoint left by an interrupted run); returns its summary record."""
    from shortcutgates.model.train import TrainConfig, train

    train_config = TrainConfig(
        preprocess=config.preprocess,
        core_dropout=config.core_dropout,
        epochs=params.epochs,
        batch_size=params.batch_size,
        seed=seed,
        max_minutes=params.max_minutes,
        device="auto",
        **params.train_options,
    )
    summary = train(
        manifest, ckpt, train_config, resume=ckpt.exists(), progress=params.progress, cache_dir=params.out / "cache"
    )
    record = {k: v for k, v in summary._asdict().items() if k not in WALL_CLOCK_FIELDS + ("checkpoint",)}
    record["history"] = [{k: v for k, v in row.items() if k not in WALL_CLOCK_FIELDS} for row in summary.history]
    record["checkpoint"] = (
        str(Path(summary.checkpoint).relative_to(params.out))
        if Path(summary.checkpoint).is_relative_to(params.out)
        else str(summary.checkpoint)
    )
    return jsonable(record)
