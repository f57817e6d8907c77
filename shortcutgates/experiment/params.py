"""What determines an experiment run (:func:`shortcutgates.experiment.run.run_experiment`): the
configurations of the remedy table (:data:`CONFIGURATIONS`, with the E5 hard-negative recipe) and
:class:`ExperimentParams`, recorded in ``results.json`` as ``params``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path


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
        return {
            "n_lrgs": None if self.input else int(self.n_lrgs),
            "epochs": int(self.epochs),
            "seeds": self.seed_list(),
            "input": None if self.input is None else str(self.input),
            "n_boot": int(self.n_boot),
            "injections_per_lrg": list(self.injections_per_lrg),
            "stamp_size": int(self.stamp_size),
            "batch_size": int(self.batch_size),
            "max_samples": self.max_samples,
            "max_minutes": self.max_minutes,
            "train_options": {k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in self.train_options.items()},
            "configs": [asdict(c) for c in self.configs],
        }


def recipe_configs(kinds: str, mix: str = "") -> tuple:
    """:data:`CONFIGURATIONS` with the E5 recipe's kinds and mix replaced (``kinds`` 'none' or '': no E5)."""
    from shortcutgates.data.hard_negatives import parse_kinds, parse_mix

    base = tuple(c for c in CONFIGURATIONS if not c.hard_negatives)
    if kinds in ("", "none"):
        return base
    kinds = ",".join(parse_kinds(kinds))
    parse_mix(mix)
    return base + (
        Configuration("residual+hn", "residual", hard_negatives=kinds, hard_negative_mix=mix, paired_from="residual"),
    )
