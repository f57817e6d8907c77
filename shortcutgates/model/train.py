"""``shortcutgates train``: fit the lens-finder CNN on a manifest and write a checkpoint each epoch.

Recipe: AdamW with a linear warm-up then cosine decay of the learning rate (per step); binary
cross-entropy weighted so both classes carry equal total weight (times the manifest's ``weight``
column when present); flips/rot90 and optional core dropout on each batch; validation AUROC after
every epoch, early stopping when it has not improved for ``patience`` epochs. The checkpoint keeps
the best epoch's weights for use and the last epoch's full state for ``--resume``.

Reproducibility: the shuffling and augmentation streams of epoch ``e`` are seeded from
``(seed, e)``, so a run resumed from the checkpoint of epoch ``e - 1`` draws exactly what the
uninterrupted run drew; on CPU the same seed gives the same weights.

Distributed: under ``torchrun`` (``WORLD_SIZE > 1``) the model is wrapped in
``DistributedDataParallel`` (backend ``nccl`` on GPUs, ``gloo`` on CPU); each global batch of
``--batch-size`` rows is split across processes; rank 0 validates and writes the checkpoint.

One epoch (schedule, loss weights, seeded streams, validation) is :mod:`shortcutgates.model.train_epoch`;
the counters, checkpoint payload and resume checks are :mod:`shortcutgates.model.train_state`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import torch
import torch.distributed as dist

from shortcutgates.data import manifest as sgmanifest
from shortcutgates.model.augment import AugmentConfig, parse_core_dropout
from shortcutgates.model.checkpoint import save_checkpoint
from shortcutgates.model.dataset import StampDataset, manifest_sha256, rows_key, select_splits
from shortcutgates.model.network import ModelConfig, build_model, count_parameters
from shortcutgates.model.preprocess import get_preprocessor
from shortcutgates.model.train_state import Progress, checkpoint_payload, restore, resume_payload, state_copy
from shortcutgates.model.train_epoch import (
    Dist,
    EpochLoop,
    batches,
    class_balanced_weights,
    run_epoch,
    setup_distributed,
    validate,
)
from shortcutgates.data.schema import DataError


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (stored in the checkpoint as ``train_config``)."""

    preprocess: str = "raw_robust"
    core_dropout: str | None = None
    """``R:P`` or ``EPOCH:R:P,...`` (see :func:`shortcutgates.model.augment.parse_core_dropout`); None: off."""
    dihedral: bool = True
    epochs: int = 20
    batch_size: int = 64
    """Global batch (split across processes under torchrun)."""
    lr: float = 3e-3
    weight_decay: float = 1e-2
    warmup_fraction: float = 0.05
    patience: int = 5
    """Stop after this many epochs without a better validation AUROC."""
    seed: int = 0
    device: str = "auto"
    model: ModelConfig = ModelConfig()
    max_minutes: float | None = None
    """Wall-clock budget: no new epoch starts after it is spent (recorded as the stop reason)."""

    def __post_init__(self):
        get_preprocessor(self.preprocess)
        parse_core_dropout(self.core_dropout)
        if isinstance(self.model, dict):
            object.__setattr__(self, "model", ModelConfig.from_dict(self.model))
        for name in ("epochs", "batch_size", "patience"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainConfig: '{name}' must be >= 1 (got {getattr(self, name)})")
        if not (self.lr > 0):
            raise ValueError(f"TrainConfig: 'lr' must be > 0 (got {self.lr})")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        return d

    def resume_key(self) -> dict:
        """Fields that must match for ``--resume`` (everything but the device)."""
        d = self.to_dict()
        d.pop("device")
        return d


class TrainSummary(NamedTuple):
    """Outcome of :func:`train`."""

    checkpoint: Path
    epochs_run: int
    best_epoch: int
    """0-based epoch whose weights the checkpoint holds."""
    best_val_auroc: float
    stop_reason: str
    """``epochs``, ``early_stopping`` or ``time_budget``."""
    seconds: float
    """Wall-clock training time, summed over resumed runs. Unit: s."""
    train_samples_per_s: float
    history: list


def _load_splits(manifest, config: TrainConfig, cache_dir, progress: bool):
    m = sgmanifest.read_manifest(manifest)
    sha = manifest_sha256(manifest)
    out = []
    for split in ("train", "val"):
        frame = select_splits(m.frame, split)
        if frame.empty or frame["label"].nunique() < 2:
            raise DataError(
                f"split '{split}' needs rows of both classes (has {frame['label'].value_counts().to_dict()})",
                file=manifest,
                column="split",
            )
        key = rows_key(frame, sha, config.preprocess) if cache_dir is not None else None
        out.append(StampDataset(frame, config.preprocess, cache_dir=cache_dir, key=key, progress=progress))
    shapes = {ds.images.shape[1:] for ds in out}
    if len(shapes) != 1:
        raise DataError(f"train and val stamps differ in shape {sorted(shapes)}", file=manifest)
    return out[0], out[1], sha


def train(
    manifest,
    out_ckpt,
    config: TrainConfig = TrainConfig(),
    *,
    resume: bool = False,
    progress: bool = True,
    cache_dir=None,
    callback: Callable[[int, dict], None] | None = None,
    keep_epochs: bool = False,
) -> TrainSummary:
    """Train on the ``train`` split of ``manifest``, validate on ``val``, checkpoint to ``out_ckpt``.

    Parameters
    ----------
    manifest : path-like
        Manifest directory or parquet (built or hand-written, inline or pointer).
    out_ckpt : path-like
        Checkpoint written atomically after every epoch (docs/design.md#checkpoint).
    resume : bool
        Continue from ``out_ckpt`` (same configuration and manifest required); a finished run
        returns its summary without training.
    cache_dir : path-like, optional
        On-disk cache of the decoded, preprocessed stamps (memory-mapped on later runs).
    callback : callable(epoch, metrics_row), optional
        Called on rank 0 after each epoch's checkpoint is written (tests use it to interrupt).
    keep_epochs : bool
        Also keep each epoch's own weights as a checkpoint, :func:`epoch_checkpoint_path` (for
        ``shortcutgates gate --model DIR``: when does a shortcut appear?).
    """
    if Path(out_ckpt).is_dir() and not resume:  # with resume, read_payload refuses it as a checkpoint
        raise ValueError(f"{out_ckpt}: is a directory, expected a file path")
    prev = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        return _fit(Path(out_ckpt), manifest, config, resume, progress, cache_dir, callback, keep_epochs)
    finally:  # the switch is global: give the caller back its setting
        torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])


def epoch_checkpoint_path(out_ckpt, epoch: int) -> Path:
    """Where ``keep_epochs`` puts epoch ``epoch`` (0-based): ``<stem>_epochs/epoch003.pt`` beside ``out_ckpt``."""
    out_ckpt = Path(out_ckpt)
    return out_ckpt.parent / f"{out_ckpt.stem}_epochs" / f"epoch{epoch:03d}.pt"


def _fit(
    out_ckpt: Path,
    manifest,
    config: TrainConfig,
    resume: bool,
    progress: bool,
    cache_dir,
    callback,
    keep_epochs: bool = False,
):
    dd, device = setup_distributed(config.device)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    tr, val, sha = _load_splits(manifest, config, cache_dir, progress and dd.rank == 0)
    model, opt, state, best_state = _start(out_ckpt, config, sha, device, resume)
    loop = _epoch_loop(model, opt, tr, config, dd, device, state.epoch, progress)
    while state.stop_reason is None and state.epoch < config.epochs:
        epoch, t0 = state.epoch, time.perf_counter()
        loss = run_epoch(loop, epoch, f" val_auroc {state.history[-1]['val_auroc']:.4f}" if state.history else "")
        val_auc = validate(model, val, dd, device)
        state.seconds += time.perf_counter() - t0
        state.samples += loop.steps_per_epoch * min(config.batch_size, len(tr.labels))
        row = {
            "epoch": epoch,
            "train_loss": loss,
            "val_auroc": val_auc,
            "lr_end": opt.param_groups[0]["lr"],
            "seconds": state.seconds,
        }
        if state.record(row, config):
            best_state = state_copy(model)
        loop.bar.set_postfix_str(f"epoch {epoch} loss {loss:.4f} val_auroc {val_auc:.4f}", refresh=True)
        if dd.rank == 0:
            _write_checkpoints(
                out_ckpt, epoch, model, loop, state, best_state, manifest, sha, len(val.labels), keep_epochs
            )
            if callback is not None:
                callback(epoch, row)
        if dd.world > 1:
            dist.barrier()
    loop.bar.close()
    return TrainSummary(
        out_ckpt,
        state.epoch,
        state.best_epoch,
        state.best_val_auroc,
        state.stop_reason,
        state.seconds,
        state.samples / max(state.seconds, 1e-9),
        state.history,
    )


def _start(out_ckpt: Path, config: TrainConfig, sha: str, device, resume: bool):
    """Model, optimiser, counters and best weights to start from: seeded fresh ones, or with ``resume`` those
    of the checkpoint at ``out_ckpt`` when there is one."""
    torch.manual_seed(config.seed)
    model = build_model(config.model).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    state, best_state = Progress(), state_copy(model)
    payload = resume_payload(out_ckpt, config, sha) if resume else None
    if payload is not None:
        state = restore(out_ckpt, payload, model, opt)
        best_state = payload["state_dict"]
    return model, opt, state, best_state


def _epoch_loop(
    model, opt, tr: StampDataset, config: TrainConfig, dd: Dist, device, start_epoch: int, progress: bool
) -> EpochLoop:
    """What each epoch uses: the model (wrapped under torchrun), the loss weights, augmentation, a progress
    bar over all steps that starts at epoch ``start_epoch``."""
    from tqdm.auto import tqdm

    net = (
        torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if dd.world > 1
        else model
    )
    steps_per_epoch = len(batches(len(tr.labels), config.batch_size, torch.Generator()))
    bar = tqdm(
        total=steps_per_epoch * config.epochs,
        initial=steps_per_epoch * start_epoch,
        unit="step",
        desc="train",
        disable=None if (progress and dd.rank == 0) else True,
    )
    return EpochLoop(
        net,
        opt,
        tr,
        class_balanced_weights(tr.labels, tr.weights),
        config,
        AugmentConfig(config.dihedral, parse_core_dropout(config.core_dropout)),
        dd,
        device,
        bar,
        steps_per_epoch,
    )


def _write_checkpoints(
    out_ckpt: Path,
    epoch: int,
    model,
    loop: EpochLoop,
    state: Progress,
    best_state: dict,
    manifest,
    sha: str,
    n_val: int,
    keep_epochs: bool,
) -> None:
    """On rank 0 after epoch ``epoch``: the checkpoint (best weights, metrics, resume state) and, with
    ``keep_epochs``, this epoch's own weights."""
    config = loop.config
    metrics = {k: getattr(state, k) for k in ("best_val_auroc", "best_epoch", "history", "stop_reason", "seconds")}
    metrics.update(
        n_train=len(loop.train.labels),
        n_val=n_val,
        world_size=loop.dd.world,
        n_parameters=count_parameters(model),
        device=str(loop.device),
    )
    resume_state = dict(dataclasses.asdict(state), state_dict=state_copy(model), optimizer=loop.opt.state_dict())
    save_checkpoint(
        out_ckpt, checkpoint_payload(config.model, best_state, config, manifest, sha, metrics, resume_state)
    )
    if keep_epochs:  # this epoch's own weights, no resume state
        own = dict(
            checkpoint_payload(config.model, state_copy(model), config, manifest, sha, metrics, None), epoch=epoch
        )
        save_checkpoint(epoch_checkpoint_path(out_ckpt, epoch), own)


# --- command line --------------------------------------------------------------------------
def add_arguments(parser) -> None:
    """Options of ``shortcutgates train``."""
    d, m = TrainConfig(), ModelConfig()
    parser.add_argument("--data", required=True, metavar="MANIFEST", help="manifest directory or parquet file")
    parser.add_argument("--out", required=True, metavar="CKPT", help="checkpoint path (.pt), written every epoch")
    parser.add_argument(
        "--preprocess",
        choices=["raw_robust", "residual"],
        default=d.preprocess,
        help="deterministic preprocessing, recorded in the checkpoint. Default: %(default)r",
    )
    parser.add_argument(
        "--core-dropout",
        metavar="R:P|E:R:P,...",
        default=None,
        help="core dropout: radius px and probability, or a schedule EPOCH:R:P,... Default: off",
    )
    parser.add_argument("--no-flips", action="store_true", help="disable flip/rot90 augmentation")
    parser.add_argument("--epochs", type=int, default=d.epochs, metavar="N", help="Default: %(default)r")
    parser.add_argument(
        "--batch-size", type=int, default=d.batch_size, metavar="N", help="global batch. Default: %(default)r"
    )
    parser.add_argument(
        "--lr", type=float, default=d.lr, metavar="LR", help="peak AdamW learning rate. Default: %(default)r"
    )
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay, metavar="WD", help="Default: %(default)r")
    parser.add_argument(
        "--patience",
        type=int,
        default=d.patience,
        metavar="N",
        help="early stopping: epochs without a better val AUROC. Default: %(default)r",
    )
    parser.add_argument("--seed", type=int, default=d.seed, metavar="S", help="Default: %(default)r")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=d.device, help="Default: %(default)r")
    parser.add_argument("--width", type=int, default=m.width, metavar="W", help="model width. Default: %(default)r")
    parser.add_argument(
        "--blocks",
        default=",".join(map(str, m.blocks)),
        metavar="B,B,...",
        help="residual blocks per stage. Default: %(default)r",
    )
    parser.add_argument("--stem-stride", type=int, choices=[1, 2], default=m.stem_stride, help="Default: %(default)r")
    parser.add_argument("--max-minutes", type=float, default=None, metavar="MIN", help="wall-clock budget")
    parser.add_argument("--cache-dir", default=None, metavar="DIR", help="on-disk cache of preprocessed stamps")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="torch CPU threads")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint at --out")
    parser.add_argument(
        "--keep-epochs",
        action="store_true",
        help="also keep each epoch's weights in CKPT-STEM_epochs/epochNNN.pt (gate them all with "
        "'shortcutgates gate --model CKPT-STEM_epochs --out DIR')",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args) -> TrainConfig:
    """Build a :class:`TrainConfig` from parsed command-line options."""
    try:
        blocks = tuple(int(b) for b in args.blocks.split(","))
    except ValueError:
        raise ValueError(f"--blocks must be comma-separated ints (got {args.blocks!r})") from None
    model = ModelConfig(width=args.width, blocks=blocks, stem_stride=args.stem_stride)
    return TrainConfig(
        preprocess=args.preprocess,
        core_dropout=args.core_dropout,
        dihedral=not args.no_flips,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        patience=args.patience,
        seed=args.seed,
        device=args.device,
        model=model,
        max_minutes=args.max_minutes,
    )


def run(args) -> int:
    """Entry point of ``shortcutgates train``; prints a one-line summary on rank 0."""
    import sys

    if args.threads:
        torch.set_num_threads(args.threads)
    s = train(
        args.data,
        args.out,
        config_from_args(args),
        resume=args.resume,
        progress=not args.no_progress,
        cache_dir=args.cache_dir,
        keep_epochs=getattr(args, "keep_epochs", False),
    )
    if int(os.environ.get("RANK", "0")) == 0:
        print(
            f"trained {s.epochs_run} epochs ({s.stop_reason}) in {s.seconds:.1f} s, "
            f"{s.train_samples_per_s:.0f} samples/s; best val AUROC {s.best_val_auroc:.4f} at epoch {s.best_epoch}; "
            f"wrote {s.checkpoint}",
            file=sys.stderr,
        )
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0
