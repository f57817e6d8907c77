"""A small ResNet lens finder: 3-band stamp in, one logit out.

Written here because torchvision is not a dependency. The architecture is fixed by
:class:`ModelConfig`, which the checkpoint stores as a plain dict (docs/design.md#checkpoint), so
``build_model(ModelConfig(**payload["model_config"]))`` rebuilds the network with nothing else.

Layout (He et al. 2016, "Deep Residual Learning", basic blocks)::

    stem   conv3x3(in -> w, stride s0) BN ReLU                      # (B, w, H/s0, W/s0)
    stage k = 0..len(blocks)-1: blocks[k] basic blocks of width w*2^k,
            the first with stride 2 for k > 0                        # (B, w*2^k, ., .)
    head   global average pool -> linear -> 1 logit                 # (B,)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of :class:`ResNet`; stored in the checkpoint as ``dataclasses.asdict``."""

    in_channels: int = 3
    """Input bands (g, r, z)."""
    width: int = 20
    """Channels of the stem and the first stage; stage k has ``width * 2**k``."""
    blocks: tuple[int, ...] = (2, 2, 2)
    """Basic blocks per stage."""
    stem_stride: int = 2
    """Stride of the stem convolution (2 halves the compute on 64-px stamps). Unit: pixel."""

    def __post_init__(self):
        object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))
        if self.in_channels < 1 or self.width < 1 or self.stem_stride not in (1, 2):
            raise ValueError(f"ModelConfig: in_channels, width must be >= 1 and stem_stride 1 or 2 (got {self})")
        if not self.blocks or min(self.blocks) < 1:
            raise ValueError(f"ModelConfig: blocks must be a non-empty tuple of ints >= 1 (got {self.blocks})")

    def to_dict(self) -> dict:
        """Plain types only (lists, ints), safe for ``torch.load(weights_only=True)``."""
        d = dataclasses.asdict(self)
        d["blocks"] = list(self.blocks)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"ModelConfig: unknown field(s) {', '.join(unknown)}")
        return cls(**d)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Small ResNet: ``(B, C, H, W)`` preprocessed stamps -> ``(B,)`` logits (lens = positive)."""

    def __init__(self, config: ModelConfig = ModelConfig()):
        super().__init__()
        self.config = config
        w = config.width
        self.stem = nn.Sequential(
            nn.Conv2d(config.in_channels, w, 3, config.stem_stride, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU()
        )
        layers, c_in = [], w
        for k, n in enumerate(config.blocks):
            c_out = w * 2**k
            for j in range(n):
                layers.append(BasicBlock(c_in, c_out, 2 if (k > 0 and j == 0) else 1))
                c_in = c_out
        self.stages = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():  # zero-init the last BN of each block: blocks start as identity
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))  # (B, C, h, w)
        return self.head(x.mean(dim=(2, 3))).squeeze(1)  # (B,)


def build_model(config: ModelConfig | dict | None = None) -> ResNet:
    """A freshly initialised :class:`ResNet` (seed torch first for reproducible weights)."""
    if config is None:
        config = ModelConfig()
    elif isinstance(config, dict):
        config = ModelConfig.from_dict(config)
    return ResNet(config)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
