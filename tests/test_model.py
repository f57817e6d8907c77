"""The small ResNet: size, shapes, config round trip, and that it can learn (overfit a handful of stamps)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shortcutgates.model.network import ModelConfig, build_model, count_parameters
from shortcutgates.model.preprocess import raw_robust

from toy_manifests import toy_images

torch.set_num_threads(1)  # tiny tensors: extra threads only contend on the shared 2-core CI


def test_default_model_has_a_quarter_million_parameters():
    n = count_parameters(build_model())
    assert 200_000 <= n <= 500_000


@pytest.mark.parametrize("size", [8, 16, 64])
@pytest.mark.parametrize(
    "config",
    [ModelConfig(width=4, blocks=(1,)), ModelConfig(width=4, blocks=(1, 1), stem_stride=1)],
    ids=["w4-b1-s2", "w4-b11-s1"],
)
def test_one_logit_per_stamp(size, config):
    out = build_model(config)(torch.zeros(5, 3, size, size))
    assert out.shape == (5,)


def test_config_round_trips_through_plain_dict():
    config = ModelConfig(width=8, blocks=(1, 3), stem_stride=1)
    d = config.to_dict()
    assert d == {"in_channels": 3, "width": 8, "blocks": [1, 3], "stem_stride": 1}
    assert ModelConfig.from_dict(d) == config


@pytest.mark.parametrize(
    "kw,match",
    [
        pytest.param({"width": 0}, "width", id="zero_width"),
        pytest.param({"blocks": ()}, "blocks", id="no_stage"),
        pytest.param({"stem_stride": 3}, "stem_stride", id="bad_stride"),
    ],
)
def test_bad_config_is_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**kw)


def test_unknown_config_field_is_refused():
    with pytest.raises(ValueError, match="unknown field.*depth"):
        ModelConfig.from_dict({"width": 4, "depth": 3})


def test_same_seed_same_initial_weights():
    torch.manual_seed(1)
    a = build_model(ModelConfig(width=4, blocks=(1,)))
    torch.manual_seed(1)
    b = build_model(ModelConfig(width=4, blocks=(1,)))
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_tiny_model_overfits_a_handful_of_stamps():
    """Labels are random (no signal): reaching zero training error means the net can memorise."""
    torch.manual_seed(0)
    images, _ = toy_images(8, size=16, seed=2)
    x = torch.from_numpy(raw_robust(images))
    y = torch.tensor([1, 0, 0, 1, 1, 0, 1, 0], dtype=torch.float32)
    model = build_model(ModelConfig(width=8, blocks=(1, 1), stem_stride=1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        pred = (model(x) > 0).float()
    assert float(loss) < 0.05
    np.testing.assert_array_equal(pred.numpy(), y.numpy())
