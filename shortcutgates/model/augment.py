"""Training-time augmentations on torch batches (docs/design.md#preprocessing); never applied at evaluation.

* Dihedral: a random flip and 90° rotation per stamp. Lensing by an elliptical lens in an
  isotropic survey has no preferred orientation, so the label is invariant under these eight maps.
* Core dropout: with probability ``p`` a stamp's pixels within ``radius`` of the centre are replaced
  by Gaussian noise matched to the sky noise of the outer annulus, so the network cannot rely on
  the LRG core (where the counter-image of a paired lens adds flux). The noise is drawn in
  ``raw_robust`` units, where the annulus has median 0 and MAD 1: a Gaussian with MAD 1 has
  standard deviation 1.4826. Zeros would leave a sharp, learnable hole.
* Scheduled core dropout: ``epoch -> (radius, probability)``, piecewise constant.

All randomness comes from an explicit ``torch.Generator`` (CPU), so a run is reproducible and a
resumed run draws the same numbers as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from shortcutgates.model.preprocess import radius_grid

NOISE_STD = 1.4826
"""Standard deviation of Gaussian noise whose MAD is 1 (``1 / Phi^-1(3/4)``). Unit: annulus MADs."""


@dataclass(frozen=True)
class CoreDropout:
    """Replace the core of a stamp with matched noise."""

    radius: float
    """Pixels with distance ``< radius`` from the centre ``(H // 2, W // 2)`` are replaced. Unit: pixel."""
    probability: float
    """Chance that a given stamp is masked, in [0, 1]."""

    def __post_init__(self):
        if not (self.radius >= 0) or not (0.0 <= self.probability <= 1.0):
            raise ValueError(
                f"core dropout: radius must be >= 0 px and probability in [0, 1] "
                f"(got radius={self.radius}, probability={self.probability})"
            )


@dataclass(frozen=True)
class CoreDropoutSchedule:
    """Piecewise-constant schedule: from ``start_epoch`` on, use ``(radius, probability)``.

    ``steps`` is a tuple of ``(start_epoch, CoreDropout)`` sorted by epoch; before the first
    step there is no dropout. A constant setting is one step at epoch 0.
    """

    steps: tuple[tuple[int, CoreDropout], ...]

    def __post_init__(self):
        epochs = [e for e, _ in self.steps]
        if not self.steps or epochs != sorted(set(epochs)) or min(epochs) < 0:
            raise ValueError(
                f"core dropout schedule: start epochs must be distinct, >= 0 and increasing (got {epochs})"
            )

    def at(self, epoch: int) -> CoreDropout | None:
        """The setting used during ``epoch`` (0-based), or None before the first step."""
        current = None
        for start, setting in self.steps:
            if start <= epoch:
                current = setting
        return current

    def to_text(self) -> str:
        """The ``--core-dropout`` text that parses back to this schedule."""
        if len(self.steps) == 1 and self.steps[0][0] == 0:
            s = self.steps[0][1]
            return f"{s.radius:g}:{s.probability:g}"
        return ",".join(f"{e}:{s.radius:g}:{s.probability:g}" for e, s in self.steps)


def parse_core_dropout(text: str | None) -> CoreDropoutSchedule | None:
    """Parse ``--core-dropout``: ``R:P`` (constant) or ``E:R:P,E:R:P,...`` (schedule by epoch).

    Examples: ``"4:0.5"`` masks r < 4 px in half the stamps every epoch; ``"0:6:0.5,10:4:0.25"``
    uses r < 6 px with p = 0.5 for epochs 0–9, then r < 4 px with p = 0.25. ``None``, ``""``
    and ``"none"`` mean no core dropout.
    """
    if text is None or text.strip().lower() in ("", "none", "off"):
        return None
    steps = []
    for part in text.split(","):
        fields = part.strip().split(":")
        try:
            values = [float(f) for f in fields]
        except ValueError:
            values = []
        if len(values) == 2 and len(text.split(",")) == 1:
            steps.append((0, CoreDropout(values[0], values[1])))
        elif len(values) == 3 and values[0] == int(values[0]):
            steps.append((int(values[0]), CoreDropout(values[1], values[2])))
        else:
            raise ValueError(
                f"--core-dropout must be R:P or EPOCH:R:P[,EPOCH:R:P...] (got {text!r}; bad part {part!r})"
            )
    return CoreDropoutSchedule(tuple(sorted(steps, key=lambda s: s[0])))


def random_dihedral(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Apply one of the 8 flips/rotations, drawn per stamp, to ``(B, C, H, W)`` square stamps."""
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"random_dihedral: stamps must be square (got {tuple(images.shape[-2:])})")
    b = images.shape[0]
    op = torch.randint(0, 8, (b,), generator=generator)
    out = torch.empty_like(images)
    for k in range(8):
        sel = op == k
        if sel.any():
            x = images[sel]
            x = x.flip(-1) if k >= 4 else x
            out[sel] = torch.rot90(x, k % 4, dims=(-2, -1))
    return out


def core_mask(height: int, width: int, radius: float) -> torch.Tensor:
    """Boolean ``(height, width)`` mask of pixels closer than ``radius`` px to the centre."""
    return torch.from_numpy(radius_grid(height, width) < radius)


def core_dropout(
    images: torch.Tensor, setting: CoreDropout, generator: torch.Generator, noise_std: float = NOISE_STD
) -> torch.Tensor:
    """Replace the core of a random subset of ``(B, C, H, W)`` stamps with N(0, noise_std²) noise."""
    b, c, h, w = images.shape
    chosen = torch.rand(b, generator=generator) < setting.probability
    mask = core_mask(h, w, setting.radius)
    n = int(chosen.sum())
    if n == 0 or not mask.any():
        return images
    noise = torch.randn((n, c, h, w), generator=generator, dtype=images.dtype) * noise_std
    out = images.clone()
    out[chosen] = torch.where(mask, noise, images[chosen])
    return out


@dataclass(frozen=True)
class AugmentConfig:
    """What :func:`augment_batch` does during training."""

    dihedral: bool = True
    core_dropout: CoreDropoutSchedule | None = None


def augment_batch(
    images: torch.Tensor, epoch: int, generator: torch.Generator, config: AugmentConfig = AugmentConfig()
) -> torch.Tensor:
    """Training augmentation of a ``(B, C, H, W)`` CPU batch of preprocessed stamps."""
    if config.dihedral:
        images = random_dihedral(images, generator)
    setting = config.core_dropout.at(epoch) if config.core_dropout is not None else None
    if setting is not None:
        images = core_dropout(images, setting, generator)
    return images
