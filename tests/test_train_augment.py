"""Training augmentations: dihedral maps, core dropout with matched noise, the dropout schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shortcutgates.model.augment import (
    NOISE_STD,
    AugmentConfig,
    CoreDropout,
    CoreDropoutSchedule,
    augment_batch,
    core_dropout,
    core_mask,
    parse_core_dropout,
    random_dihedral,
)
from shortcutgates.model.preprocess import radius_grid

torch.set_num_threads(1)  # tiny tensors: extra threads only contend on the shared 2-core CI


def _dihedral_images(x: torch.Tensor) -> list[torch.Tensor]:
    return [torch.rot90(x.flip(-1) if f else x, k, dims=(-2, -1)) for f in (0, 1) for k in range(4)]


def test_dihedral_output_is_one_of_the_eight_maps_of_each_stamp():
    x = torch.arange(6 * 2 * 5 * 5, dtype=torch.float32).reshape(6, 2, 5, 5)
    out = random_dihedral(x, torch.Generator().manual_seed(0))
    for i in range(6):
        assert any(torch.equal(out[i], m) for m in _dihedral_images(x[i]))


def test_dihedral_uses_all_eight_maps_and_is_reproducible():
    x = torch.randn(400, 1, 4, 4)
    a = random_dihedral(x, torch.Generator().manual_seed(5))
    b = random_dihedral(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    used = {next(j for j, m in enumerate(_dihedral_images(x[i])) if torch.equal(a[i], m)) for i in range(400)}
    assert used == set(range(8))


def test_dihedral_refuses_non_square():
    with pytest.raises(ValueError, match="square"):
        random_dihedral(torch.zeros(1, 3, 4, 5), torch.Generator())


def test_core_dropout_replaces_exactly_the_core_with_mad_one_noise():
    x = torch.full((200, 3, 16, 16), 7.0)
    out = core_dropout(x, CoreDropout(radius=4, probability=1.0), torch.Generator().manual_seed(0))
    inside = torch.from_numpy(radius_grid(16, 16) < 4)
    assert torch.all(out[..., ~inside] == 7.0)
    noise = out[..., inside].flatten().numpy()
    assert not np.any(noise == 7.0)
    mad = np.median(np.abs(noise - np.median(noise)))
    assert abs(np.median(noise)) < 0.05 and abs(mad - 1.0) < 0.05  # matched to the annulus: median 0, MAD 1
    assert abs(noise.std() - NOISE_STD) < 0.05


def test_core_dropout_probability_selects_that_fraction_of_stamps():
    x = torch.zeros(2000, 1, 8, 8)
    out = core_dropout(x, CoreDropout(radius=2, probability=0.3), torch.Generator().manual_seed(1))
    hit = (out != 0).flatten(1).any(1).float().mean().item()
    assert 0.26 < hit < 0.34
    assert torch.equal(core_dropout(x, CoreDropout(2, 0.0), torch.Generator()), x)


def test_core_mask_radius_is_strict():
    m = core_mask(9, 9, 1.0)
    assert m.sum() == 1 and m[4, 4]


@pytest.mark.parametrize(
    "text,expected",
    [
        pytest.param("4:0.5", CoreDropoutSchedule(((0, CoreDropout(4, 0.5)),)), id="constant"),
        pytest.param(
            "0:6:0.5,10:4:0.25",
            CoreDropoutSchedule(((0, CoreDropout(6, 0.5)), (10, CoreDropout(4, 0.25)))),
            id="schedule",
        ),
        pytest.param("none", None, id="none"),
        pytest.param(None, None, id="absent"),
    ],
)
def test_parse_core_dropout(text, expected):
    got = parse_core_dropout(text)
    assert got == expected
    if got is not None:
        assert parse_core_dropout(got.to_text()) == got


@pytest.mark.parametrize("text", ["4", "a:b", "4:1.5", "-1:0.5", "5:4:0.5,2:3:0.1,2:1:0.1", "4:0.5,6:0.2", "1.5:3:0.2"])
def test_parse_core_dropout_refuses(text):
    with pytest.raises(ValueError, match="core dropout|core-dropout"):
        parse_core_dropout(text)


def test_schedule_is_piecewise_constant():
    sched = parse_core_dropout("2:6:0.5,5:3:0.2")
    assert sched.at(0) is None and sched.at(1) is None
    assert sched.at(2) == sched.at(4) == CoreDropout(6, 0.5)
    assert sched.at(5) == sched.at(100) == CoreDropout(3, 0.2)


def test_augment_batch_applies_the_epochs_setting():
    x = torch.zeros(50, 3, 16, 16)
    cfg = AugmentConfig(dihedral=False, core_dropout=parse_core_dropout("1:3:1.0"))
    assert torch.equal(augment_batch(x, 0, torch.Generator(), cfg), x)
    assert (augment_batch(x, 1, torch.Generator(), cfg) != 0).any()
