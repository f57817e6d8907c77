"""The LRG's field (neighbours, background galaxies, stars) and the LRG's inner structure."""

from __future__ import annotations

import numpy as np
import pytest

from shortcutgates.data.codec import decode_stamps
from shortcutgates.simulate import stamps as S
from shortcutgates.simulate import simulate_frame
from shortcutgates.simulate.field import FieldObjects, draw_field, field_rng, render_field
from shortcutgates.simulate.population import (
    LRGStructure,
    draw_conditions,
    draw_lrg,
    draw_lrg_structure,
    lrg_structure_rng,
)

HALF_WIDTH = (32 + S.PSF_RADIUS) * 0.262


def images(series):
    return decode_stamps(series.tolist()).images  # a bad blob raises


def test_field_draws_follow_the_stated_populations():
    objs = [draw_field(field_rng(0, i), 19.5, 1.2, HALF_WIDTH) for i in range(400)]
    neighbours = np.mean([((np.hypot(o.x, o.y) < 8) & (o.mag_r < 23)).sum() for o in objs])
    assert 0.5 <= neighbours <= 2.0  # detectable neighbours within 8" (brief: ~0.5-2)
    every = FieldObjects(*(np.concatenate(parts) for parts in zip(*objs)))
    assert (np.abs(every.x) <= HALF_WIDTH).all() and (np.abs(every.y) <= HALF_WIDTH).all()
    assert (every.mag_r >= 17.0).all() and (every.mag_r <= 25.0).all()
    assert ((every.q > 0) & (every.q <= 1)).all() and (every.r_eff > 0).all()


def test_field_draw_is_deterministic_per_seed_and_index():
    a, b = draw_field(field_rng(3, 7), 20.0, 1.0, 10.0), draw_field(field_rng(3, 7), 20.0, 1.0, 10.0)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_render_field_puts_a_star_with_its_flux_where_it_is():
    cond = draw_conditions(np.random.default_rng(1))
    one = lambda v: np.array([float(v)])  # noqa: E731
    star = FieldObjects(one(2.62), one(0.0), one(22.5), one(22.5), one(22.5), one(0.01), one(0.5), one(1.0), one(0.0))
    image = render_field(star, cond.psf, 64, S.PSF_RADIUS, (48, 48))
    for band in image:
        assert np.unravel_index(band.argmax(), band.shape) == (32, 42)  # x = +10 px
        assert band.sum() == pytest.approx(1.0, rel=0.03)  # 22.5 mag = 1 nanomaggy
    empty = FieldObjects(*(np.zeros(0) for _ in FieldObjects._fields))
    assert not render_field(empty, cond.psf, 64, S.PSF_RADIUS, (48, 48)).any()


def test_field_and_structure_change_only_the_control_light():
    base = simulate_frame(3, 5, injections_per_lrg=(1, 2))
    rich = simulate_frame(3, 5, injections_per_lrg=(1, 2), field=True, lrg_structure=True)
    # same LRGs, conditions and injections (arc_snr counts the field's photon noise)
    truth = [c for c in base.columns if not c.endswith("_npz") and c != "arc_snr"]
    assert base[truth].equals(rich[truth])
    arcs = [images(f["stamp_npz"]) - images(f["ctrl_stamp_npz"]) for f in (base, rich)]
    np.testing.assert_allclose(arcs[0], arcs[1], atol=1e-4 * np.abs(arcs[0]).max())
    assert not np.array_equal(images(base["ctrl_stamp_npz"]), images(rich["ctrl_stamp_npz"]))


def test_lrg_structure_keeps_flux_and_point_symmetry():
    rng = np.random.default_rng(2)
    lrg, cond = draw_lrg(rng), draw_conditions(rng)
    s = draw_lrg_structure(lrg_structure_rng(0, 0), lrg)
    assert 0.2 <= s.fraction <= 0.5 and 0.4 <= s.q <= 1.0
    plain = S.render_lrg(lrg, cond, 64)
    twisted = S.render_lrg(lrg, cond, 64, LRGStructure(0.4, 0.3, 0.5, 0.6))
    np.testing.assert_allclose(twisted.sum(axis=(1, 2)), plain.sum(axis=(1, 2)), rtol=0.03)
    assert not np.allclose(twisted, plain, rtol=1e-2)
    for band in twisted:  # two concentric ellipses: still symmetric about pixel (32, 32)
        np.testing.assert_allclose(band[1:, 1:], band[1:, 1:][::-1, ::-1], rtol=1e-3, atol=1e-7)
