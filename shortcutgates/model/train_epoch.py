"""One epoch of :func:`shortcutgates.model.train.train` and what it needs: the distributed setup, the
learning-rate schedule, class-balanced loss weights, the seeded shuffling and augmentation streams of
each epoch, the optimisation steps, and the validation AUROC that every rank agrees on.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from shortcutgates.model.augment import AugmentConfig, augment_batch
from shortcutgates.model.dataset import StampDataset
from shortcutgates.model.evaluate import logits_of, resolve_device
from shortcutgates.stats import auroc

if TYPE_CHECKING:
    from shortcutgates.model.train import TrainConfig


class Dist(NamedTuple):
    """Where this process stands under torchrun (rank 0 of 1 without it)."""

    rank: int
    world: int
    local_rank: int


class EpochLoop(NamedTuple):
    """What every epoch of one training run uses (built once by :func:`shortcutgates.model.train.train`)."""

    net: torch.nn.Module
    """The model, wrapped in DistributedDataParallel under torchrun."""
    opt: torch.optim.Optimizer
    train: StampDataset
    weights: np.ndarray
    """(N,) class-balanced loss weight of each training row."""
    config: TrainConfig
    aug: AugmentConfig
    dd: Dist
    device: torch.device
    bar: Any
    """tqdm progress bar over all steps of the run."""
    steps_per_epoch: int


def setup_distributed(device_pref: str) -> tuple[Dist, torch.device]:
    """This process's place and device; under torchrun (``WORLD_SIZE > 1``) the process group is started."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(0, 1, 0), resolve_device(device_pref)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_pref)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), local), device


def lr_at(step: int, total: int, config: TrainConfig) -> float:
    """Learning rate of optimisation step ``step`` of ``total``: linear warm-up, then cosine to 0."""
    warm = max(1, int(config.warmup_fraction * total))
    if step < warm:
        return config.lr * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


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


def epoch_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    """The torch generator of ``stream`` in epoch ``epoch`` (stream 0 shuffles, ``1 + rank`` augments)."""
    seq = np.random.SeedSequence([seed, epoch, stream]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(seq[0] % (2**63)))


def batches(n: int, batch_size: int, epoch_gen: torch.Generator) -> list[torch.Tensor]:
    """Shuffled global batches; a last partial batch is dropped (it differs every epoch)."""
    perm = torch.randperm(n, generator=epoch_gen)
    if n <= batch_size:
        return [perm]
    return [perm[i : i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


def run_epoch(loop: EpochLoop, epoch: int, postfix: str = "") -> float:
    """One pass over the training rows; returns the mean weighted loss on this rank."""
    config, dd = loop.config, loop.dd
    net, opt = loop.net, loop.opt
    net.train()
    epoch_batches = batches(len(loop.train.labels), config.batch_size, epoch_generator(config.seed, epoch, 0))
    aug_gen = epoch_generator(config.seed, epoch, 1 + dd.rank)
    images, labels = loop.train.images, torch.from_numpy(loop.train.labels)
    w_all = torch.from_numpy(loop.weights)
    step0, total_steps = epoch * loop.steps_per_epoch, loop.steps_per_epoch * config.epochs
    loss_sum = 0.0
    for i, idx in enumerate(epoch_batches):
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
    return loss_sum / max(1, len(epoch_batches))


def validate(model, val, dd: Dist, device) -> float:
    """Validation AUROC computed on rank 0 and broadcast, so every rank takes the same decisions."""
    value = torch.zeros(1, dtype=torch.float64, device=device)  # on the GPU for nccl, on the CPU for gloo
    if dd.rank == 0:
        value[0] = auroc(val.labels, logits_of(model, val.images, device=device))
    if dd.world > 1:
        dist.broadcast(value, 0)
    return float(value[0].cpu())
