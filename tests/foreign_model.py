"""A lens finder the library did not write, for the tests of the ways a model comes in.

``PatchNet`` is a tiny patch-token network (a ViT without attention heads): a log stretch of the
r and g bands' positive flux, 4×4 patches embedded by a strided convolution, a token-mixing MLP,
mean pooling and a linear head giving one logit. It shares nothing with the library's ResNet: two
input bands in its own order (r, g), its own preprocessing, no batch norm.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

BANDS = ("r", "g")
"""PatchNet's input channels, in its order."""


class PatchNet(nn.Module):
    def __init__(self, patch: int = 4, dim: int = 8):
        super().__init__()
        self.embed = nn.Conv2d(len(BANDS), dim, patch, stride=patch)
        self.mix = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.head = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (N, 2, H, W) flux in nanomaggies, bands r, g -> (N,) logits."""
        x = torch.log1p(torch.clamp(x, min=0.0) * 20.0)
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        tokens = tokens + self.mix(tokens)
        return self.head(tokens.mean(1)).squeeze(-1)


def make_model(seed: int = 0) -> PatchNet:
    torch.manual_seed(seed)
    return PatchNet().eval()


def to_input(images: np.ndarray) -> torch.Tensor:
    """Raw (N, 3, H, W) g, r, z nanomaggies -> PatchNet's (N, 2, H, W) r, g."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(images, np.float32)[:, [1, 0]]))


@torch.no_grad()
def probabilities(model: PatchNet, images: np.ndarray) -> np.ndarray:
    """The in-memory reference: sigmoid of PatchNet's logits, float64 (N,)."""
    return torch.sigmoid(model(to_input(images))).double().numpy()


def contract(stamp: int) -> dict:
    """PatchNet's input contract: bands r, g, raw nanomaggies, NCHW, logit out."""
    return {
        "bands": list(BANDS),
        "units": "nanomaggies",
        "preprocess": "none",
        "stamp_size": [stamp, stamp],
        "layout": "NCHW",
        "output": "logit",
    }


def export_pt2(model: PatchNet, path: Path, stamp: int, embed_contract: bool = True) -> Path:
    from shortcutgates.model.scorers import CONTRACT_KEY

    x = torch.rand(2, len(BANDS), stamp, stamp)
    program = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    extra = {CONTRACT_KEY: json.dumps(contract(stamp))} if embed_contract else {}
    torch.export.save(program, str(path), extra_files=extra)
    return path


def export_onnx(model: PatchNet, path: Path, stamp: int, sidecar: bool = True) -> Path:
    x = torch.rand(2, len(BANDS), stamp, stamp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (x,),
            str(path),
            input_names=["stamps"],
            output_names=["logit"],
            dynamic_axes={"stamps": {0: "n"}, "logit": {0: "n"}},
            dynamo=False,
        )
    if sidecar:
        Path(str(path) + ".json").write_text(json.dumps(contract(stamp)))
    return path


CONFTEST = """
import numpy as np
import pytest
import torch

from foreign_model import PatchNet, probabilities


@pytest.fixture(scope="session")
def shortcutgates_scorer():
    model = PatchNet().eval()
    model.load_state_dict(torch.load({weights!r}, weights_only=True))

    def score(images):  # float32 (N, 3, H, W) nanomaggies g, r, z -> (N,) lens probability
        return probabilities(model, images)

    score.preprocess = "none"  # PatchNet takes raw flux (optional: names the model-input probe's input)
    return score
"""
"""A user's conftest.py: builds PatchNet, loads its state_dict safely, returns the scorer."""
