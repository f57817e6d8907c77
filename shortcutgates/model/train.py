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
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from shortcutgates import __version__
from shortcutgates.data import manifest as sgmanifest
from shortcutgates.model.augment import AugmentConfig, augment_batch, parse_core_dropout
from shortcutgates.model.checkpoint import FORMAT, FORMAT_VERSION, CheckpointError, check_payload, model_from_payload, preprocess_record, read_payload, save_checkpoint
from shortcutgates.model.dataset import StampDataset, manifest_sha256, rows_key, select_splits
from shortcutgates.model.evaluate import logits_of, resolve_device
from shortcutgates.model.network import ModelConfig, build_model, count_parameters
from shortcutgates.model.preprocess import get_preprocessor
from shortcutgates.data.schema import DataError
from shortcutgates.stats import auroc


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


@dataclass
class Progress:
    """Where a training run stands after its last finished epoch (stored as the checkpoint's ``resume``)."""

    epoch: int = 0
    """Epochs finished (the next epoch to run, 0-based)."""
    best_val_auroc: float = -1.0
    best_epoch: int = -1
    """0-based epoch of the best validation AUROC (-1: none yet)."""
    bad_epochs: int = 0
    """Epochs since the best one (early stopping counts these)."""
    history: list = dataclasses.field(default_factory=list)
    """One metrics row per finished epoch."""
    seconds: float = 0.0
    """Training wall time so far, summed over resumed runs. Unit: s."""
    samples: int = 0
    """Training rows seen so far."""
    stop_reason: str | None = None

    def record(self, row: dict, config: "TrainConfig") -> bool:
        """Add the metrics row of the epoch just finished; True if its validation AUROC is the best so far."""
        self.history.append(row)
        better = row["val_auroc"] > self.best_val_auroc
        if better:
            self.best_val_auroc, self.best_epoch, self.bad_epochs = row["val_auroc"], row["epoch"], 0
        else:
            self.bad_epochs += 1
        self.epoch = row["epoch"] + 1
        self.stop_reason = stop_reason(self.epoch, self.bad_epochs, self.seconds, config)
        return better


class _Loop(NamedTuple):
    """What every epoch of one training run uses (built once by :func:`_fit`)."""

    net: torch.nn.Module
    """The model, wrapped in DistributedDataParallel under torchrun."""
    opt: torch.optim.Optimizer
    train: StampDataset
    weights: np.ndarray
    """(N,) class-balanced loss weight of each training row."""
    config: TrainConfig
    aug: AugmentConfig
    dd: "_Dist"
    device: torch.device
    bar: object
    """tqdm progress bar over all steps of the run."""
    steps_per_epoch: int


# --- small pieces --------------------------------------------------------------------------
class _Dist(NamedTuple):
    rank: int
    world: int
    local_rank: int


def _setup_distributed(device_pref: str) -> tuple[_Dist, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist(0, 1, 0), resolve_device(device_pref)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_pref)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size(), local), device


def lr_at(step: int, total: int, config: TrainConfig) -> float:
    """Learning rate of optimisation step ``step`` of ``total``: linear warm-up, then cosine to 0."""
    warm = max(1, int(config.warmup_fraction * total))
    if step < warm:
        return config.lr * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


def stop_reason(epochs_done: int, bad_epochs: int, seconds: float, config: TrainConfig) -> str | None:
    """Why training stops after ``epochs_done`` epochs (None: go on).

    ``epochs`` when all are done; ``early_stopping`` after ``patience`` epochs without a better
    validation AUROC; ``time_budget`` once ``max_minutes`` of training time are spent.
    """
    if epochs_done >= config.epochs:
        return "epochs"
    if bad_epochs >= config.patience:
        return "early_stopping"
    if config.max_minutes is not None and seconds > 60 * config.max_minutes:
        return "time_budget"
    return None


def class_balanced_weights(labels: np.ndarray, row_weights: np.ndarray) -> np.ndarray:
    """Row weights scaled so each class has the same total weight and the mean weight is 1."""
    w = row_weights.astype(np.float64).copy()
    totals = {cls: w[labels == cls].sum() for cls in (0, 1)}
    for cls, total in totals.items():
        sel = labels == cls
        if total <= 0:
            raise ValueError(f"train: class {cls} has no rows (or zero total weight) in the training split")
        w[sel] *= 0.5 / total
    return (w * len(w)).astype(np.float32)


def _epoch_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    seq = np.random.SeedSequence([seed, epoch, stream]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(seq[0] % (2**63)))


def _batches(n: int, batch_size: int, epoch_gen: torch.Generator) -> list[torch.Tensor]:
    """Shuffled global batches; a last partial batch is dropped (it differs every epoch)."""
    perm = torch.randperm(n, generator=epoch_gen)
    if n <= batch_size:
        return [perm]
    return [perm[i : i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


def _load_splits(manifest, config: TrainConfig, cache_dir, progress: bool):
    m = sgmanifest.read_manifest(manifest)
    sha = manifest_sha256(manifest)
    out = []
    for split in ("train", "val"):
        frame = select_splits(m.frame, split)
        if frame.empty or frame["label"].nunique() < 2:
            raise DataError(f"split '{split}' needs rows of both classes (has {frame['label'].value_counts().to_dict()})",
                            file=manifest, column="split")
        key = rows_key(frame, sha, config.preprocess) if cache_dir is not None else None
        out.append(StampDataset(frame, config.preprocess, cache_dir=cache_dir, key=key, progress=progress))
    shapes = {ds.images.shape[1:] for ds in out}
    if len(shapes) != 1:
        raise DataError(f"train and val stamps differ in shape {sorted(shapes)}", file=manifest)
    return out[0], out[1], sha


def _state_copy(model: torch.nn.Module) -> dict:
    return {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}


# --- resume --------------------------------------------------------------------------------
def _resume_state(out_ckpt: Path, config: TrainConfig, data_sha: str) -> dict | None:
    if not out_ckpt.exists():
        return None
    payload = read_payload(out_ckpt)
    check_payload(out_ckpt, payload)
    if "resume" not in payload:
        raise ValueError(f"{out_ckpt}: has no resume state; cannot --resume from it")
    saved = dict(payload["train_config"])
    saved.pop("device", None)
    if saved != config.resume_key():
        diff = sorted(k for k in set(saved) | set(config.resume_key()) if saved.get(k) != config.resume_key().get(k))
        raise ValueError(f"{out_ckpt}: --resume with a different configuration ({', '.join(diff)} differ)")
    if payload["data"].get("sha256") != data_sha:
        raise ValueError(f"{out_ckpt}: --resume on a different manifest (sha256 differs from the checkpoint's)")
    return payload


def _restore(path: Path, payload: dict, model, opt) -> Progress:
    """Load the resume state into model and optimiser and return the counters; any mismatch is a CheckpointError."""
    resume = payload["resume"]
    fields = [f.name for f in dataclasses.fields(Progress)]
    missing = [k for k in ("state_dict", "optimizer", *fields) if k not in resume]
    if missing:
        raise CheckpointError(f"{path}: resume state lacks key(s) {', '.join(missing)}")
    model_from_payload(path, payload)  # the best weights must fit the architecture too
    model_from_payload(path, {"model_config": payload["model_config"], "state_dict": resume["state_dict"]})
    model.load_state_dict(resume["state_dict"])
    try:
        opt.load_state_dict(resume["optimizer"])
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: optimizer state does not fit the model ({' '.join(str(exc).split())[:160]})") from None
    return Progress(**{k: resume[k] for k in fields})


def _payload(model_cfg, best_state, config, manifest, sha, metrics, resume) -> dict:
    return {
        "format": FORMAT, "version": FORMAT_VERSION, "model_config": model_cfg.to_dict(), "state_dict": best_state,
        "preprocess": preprocess_record(config.preprocess), "train_config": config.to_dict(),
        "data": {"manifest": str(Path(manifest).resolve()), "sha256": sha}, "metrics": metrics,
        "seed": int(config.seed), "package_version": __version__, "resume": resume,
    }


# --- the loop ------------------------------------------------------------------------------
def _run_epoch(loop: _Loop, epoch: int, postfix: str = "") -> float:
    """One pass over the training rows; returns the mean weighted loss on this rank."""
    config, dd = loop.config, loop.dd
    net, opt = loop.net, loop.opt
    net.train()
    batches = _batches(len(loop.train.labels), config.batch_size, _epoch_generator(config.seed, epoch, 0))
    aug_gen = _epoch_generator(config.seed, epoch, 1 + dd.rank)
    images, labels = loop.train.images, torch.from_numpy(loop.train.labels)
    w_all = torch.from_numpy(loop.weights)
    step0, total_steps = epoch * loop.steps_per_epoch, loop.steps_per_epoch * config.epochs
    loss_sum = 0.0
    for i, idx in enumerate(batches):
        idx = idx[dd.rank :: dd.world]
        order = np.sort(idx.numpy())  # memmap-friendly gather; the permutation is applied back below
        x = torch.from_numpy(np.ascontiguousarray(images[order]))[torch.from_numpy(np.argsort(np.argsort(idx.numpy())))]
        x = augment_batch(x, epoch, aug_gen, loop.aug).to(loop.device)
        y, w = labels[idx].to(loop.device), w_all[idx].to(loop.device)
        for group in opt.param_groups:
            group["lr"] = lr_at(step0 + i, total_steps, config)
        loss = (w * F.binary_cross_entropy_with_logits(net(x), y, reduction="none")).sum() / max(1, len(idx))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += float(loss.detach())
        loop.bar.update(1)
        loop.bar.set_postfix_str(f"epoch {epoch} loss {loss_sum / (i + 1):.4f}{postfix}", refresh=False)
    return loss_sum / max(1, len(batches))


def _validate(model, val, dd: _Dist, device) -> float:
    """Validation AUROC computed on rank 0 and broadcast, so every rank takes the same decisions."""
    value = torch.zeros(1, dtype=torch.float64, device=device)  # on the GPU for nccl, on the CPU for gloo
    if dd.rank == 0:
        value[0] = auroc(val.labels, logits_of(model, val.images, device=device))
    if dd.world > 1:
        dist.broadcast(value, 0)
    return float(value[0].cpu())


def train(manifest, out_ckpt, config: TrainConfig = TrainConfig(), *, resume: bool = False, progress: bool = True,
          cache_dir=None, callback: Callable[[int, dict], None] | None = None,
          keep_epochs: bool = False) -> TrainSummary:
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


def _fit(out_ckpt: Path, manifest, config: TrainConfig, resume: bool, progress: bool, cache_dir, callback,
         keep_epochs: bool = False):
    from tqdm.auto import tqdm

    dd, device = _setup_distributed(config.device)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    tr, val, sha = _load_splits(manifest, config, cache_dir, progress and dd.rank == 0)
    torch.manual_seed(config.seed)
    model = build_model(config.model).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    state, best_state = Progress(), _state_copy(model)
    payload = _resume_state(out_ckpt, config, sha) if resume else None
    if payload is not None:
        state = _restore(out_ckpt, payload, model, opt)
        best_state = payload["state_dict"]
    net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if dd.world > 1 else model
    steps_per_epoch = len(_batches(len(tr.labels), config.batch_size, torch.Generator()))
    bar = tqdm(total=steps_per_epoch * config.epochs, initial=steps_per_epoch * state.epoch, unit="step",
               desc="train", disable=None if (progress and dd.rank == 0) else True)
    loop = _Loop(net, opt, tr, class_balanced_weights(tr.labels, tr.weights), config,
                 AugmentConfig(config.dihedral, parse_core_dropout(config.core_dropout)), dd, device, bar,
                 steps_per_epoch)
    while state.stop_reason is None and state.epoch < config.epochs:
        epoch, t0 = state.epoch, time.perf_counter()
        loss = _run_epoch(loop, epoch, f" val_auroc {state.history[-1]['val_auroc']:.4f}" if state.history else "")
        val_auc = _validate(model, val, dd, device)
        state.seconds += time.perf_counter() - t0
        state.samples += steps_per_epoch * min(config.batch_size, len(tr.labels))
        row = {"epoch": epoch, "train_loss": loss, "val_auroc": val_auc, "lr_end": opt.param_groups[0]["lr"],
               "seconds": state.seconds}
        if state.record(row, config):
            best_state = _state_copy(model)
        bar.set_postfix_str(f"epoch {epoch} loss {loss:.4f} val_auroc {val_auc:.4f}", refresh=True)
        if dd.rank == 0:
            metrics = {k: getattr(state, k) for k in ("best_val_auroc", "best_epoch", "history", "stop_reason",
                                                      "seconds")}
            metrics.update(n_train=len(tr.labels), n_val=len(val.labels), world_size=dd.world,
                           n_parameters=count_parameters(model), device=str(device))
            resume_state = dict(dataclasses.asdict(state), state_dict=_state_copy(model), optimizer=opt.state_dict())
            save_checkpoint(out_ckpt, _payload(config.model, best_state, config, manifest, sha, metrics, resume_state))
            if keep_epochs:  # this epoch's own weights, no resume state
                own = dict(_payload(config.model, _state_copy(model), config, manifest, sha, metrics, None), epoch=epoch)
                save_checkpoint(epoch_checkpoint_path(out_ckpt, epoch), own)
            if callback is not None:
                callback(epoch, row)
        if dd.world > 1:
            dist.barrier()
    bar.close()
    return TrainSummary(out_ckpt, state.epoch, state.best_epoch, state.best_val_auroc, state.stop_reason,
                        state.seconds, state.samples / max(state.seconds, 1e-9), state.history)


# --- command line --------------------------------------------------------------------------
def add_arguments(parser) -> None:
    """Options of ``shortcutgates train``."""
    d, m = TrainConfig(), ModelConfig()
    parser.add_argument("--data", required=True, metavar="MANIFEST", help="manifest directory or parquet file")
    parser.add_argument("--out", required=True, metavar="CKPT", help="checkpoint path (.pt), written every epoch")
    parser.add_argument("--preprocess", choices=["raw_robust", "residual"], default=d.preprocess,
                        help="deterministic preprocessing, recorded in the checkpoint. Default: %(default)r")
    parser.add_argument("--core-dropout", metavar="R:P|E:R:P,...", default=None,
                        help="core dropout: radius px and probability, or a schedule EPOCH:R:P,... Default: off")
    parser.add_argument("--no-flips", action="store_true", help="disable flip/rot90 augmentation")
    parser.add_argument("--epochs", type=int, default=d.epochs, metavar="N", help="Default: %(default)r")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, metavar="N", help="global batch. Default: %(default)r")
    parser.add_argument("--lr", type=float, default=d.lr, metavar="LR", help="peak AdamW learning rate. Default: %(default)r")
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay, metavar="WD", help="Default: %(default)r")
    parser.add_argument("--patience", type=int, default=d.patience, metavar="N",
                        help="early stopping: epochs without a better val AUROC. Default: %(default)r")
    parser.add_argument("--seed", type=int, default=d.seed, metavar="S", help="Default: %(default)r")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=d.device, help="Default: %(default)r")
    parser.add_argument("--width", type=int, default=m.width, metavar="W", help="model width. Default: %(default)r")
    parser.add_argument("--blocks", default=",".join(map(str, m.blocks)), metavar="B,B,...",
                        help="residual blocks per stage. Default: %(default)r")
    parser.add_argument("--stem-stride", type=int, choices=[1, 2], default=m.stem_stride, help="Default: %(default)r")
    parser.add_argument("--max-minutes", type=float, default=None, metavar="MIN", help="wall-clock budget")
    parser.add_argument("--cache-dir", default=None, metavar="DIR", help="on-disk cache of preprocessed stamps")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="torch CPU threads")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint at --out")
    parser.add_argument("--keep-epochs", action="store_true",
                        help="also keep each epoch's weights in CKPT-STEM_epochs/epochNNN.pt (gate them all with "
                             "'shortcutgates gate --model CKPT-STEM_epochs --out DIR')")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args) -> TrainConfig:
    """Build a :class:`TrainConfig` from parsed command-line options."""
    try:
        blocks = tuple(int(b) for b in args.blocks.split(","))
    except ValueError:
        raise ValueError(f"--blocks must be comma-separated ints (got {args.blocks!r})") from None
    model = ModelConfig(width=args.width, blocks=blocks, stem_stride=args.stem_stride)
    return TrainConfig(preprocess=args.preprocess, core_dropout=args.core_dropout, dihedral=not args.no_flips,
                       epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                       patience=args.patience, seed=args.seed, device=args.device, model=model,
                       max_minutes=args.max_minutes)


def run(args) -> int:
    """Entry point of ``shortcutgates train``; prints a one-line summary on rank 0."""
    import sys

    if args.threads:
        torch.set_num_threads(args.threads)
    s = train(args.data, args.out, config_from_args(args), resume=args.resume, progress=not args.no_progress,
              cache_dir=args.cache_dir, keep_epochs=getattr(args, "keep_epochs", False))
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"trained {s.epochs_run} epochs ({s.stop_reason}) in {s.seconds:.1f} s, "
              f"{s.train_samples_per_s:.0f} samples/s; best val AUROC {s.best_val_auroc:.4f} at epoch {s.best_epoch}; "
              f"wrote {s.checkpoint}", file=sys.stderr)
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0
