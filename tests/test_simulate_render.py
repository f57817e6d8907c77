"""Ray tracing with adaptive supersampling: lenstronomy's ImageModel as oracle, flux conservation."""

from __future__ import annotations

import numpy as np
import pytest

from shortcutgates.simulate import kernels as K
from shortcutgates.simulate.render import Lens, convolve_valid, render, sersic_set

pytest.importorskip("lenstronomy")
import lenstronomy.Util.param_util as param_util  # noqa: E402
from lenstronomy.Data.imaging_data import ImageData  # noqa: E402
from lenstronomy.Data.psf import PSF  # noqa: E402
from lenstronomy.ImSim.image_model import ImageModel  # noqa: E402
from lenstronomy.LensModel.lens_model import LensModel  # noqa: E402
from lenstronomy.LensModel.Profiles.sersic_utils import SersicUtil  # noqa: E402
from lenstronomy.LensModel.Solver.lens_equation_solver import LensEquationSolver  # noqa: E402
from lenstronomy.LightModel.light_model import LightModel  # noqa: E402

SCALE = 0.262


def lenstronomy_kwargs(lens: Lens):
    e1, e2 = param_util.phi_q2_ellipticity(lens.phi, lens.q)
    g1, g2 = lens.gamma * np.cos(2 * lens.phi_gamma), lens.gamma * np.sin(2 * lens.phi_gamma)
    return [dict(theta_E=lens.theta_e, e1=e1, e2=e2, center_x=0.0, center_y=0.0), dict(gamma1=g1, gamma2=g2)]


def lenstronomy_image(lens, src, n_pix, centre, supersampling, monkeypatch):
    """Flux per pixel from lenstronomy for a unit-flux source, with the exact Sérsic b_n."""
    monkeypatch.setattr(SersicUtil, "b_n", staticmethod(lambda n: K.sersic_b(n)))
    data = ImageData(
        image_data=np.zeros((n_pix, n_pix)),
        ra_at_xy_0=-centre * SCALE,
        dec_at_xy_0=-centre * SCALE,
        transform_pix2angle=np.eye(2) * SCALE,
    )
    model = ImageModel(
        data,
        PSF("NONE"),
        lens_model_class=LensModel(["SIE", "SHEAR"]),
        source_model_class=LightModel(["SERSIC_ELLIPSE"]),
        kwargs_numerics={"supersampling_factor": supersampling},
    )
    se1, se2 = param_util.phi_q2_ellipticity(src["phi"], src["q"])
    amp = K.sersic_amp_for_flux(1.0, src["r_eff"], src["n"])
    kw_src = [
        dict(amp=amp, R_sersic=src["r_eff"], n_sersic=src["n"], e1=se1, e2=se2, center_x=src["x0"], center_y=src["y0"])
    ]
    return model.image(kwargs_lens=lenstronomy_kwargs(lens), kwargs_source=kw_src)


LENSES = [
    pytest.param(Lens(1.2, 0.7, 0.4, 0.05, 1.0), id="mid"),
    pytest.param(Lens(0.6, 0.5, 2.0, 0.08, 0.2), id="small_flat"),
]
SOURCES = [
    pytest.param(dict(r_eff=0.3, n=1.0, q=0.7, phi=0.5, x0=0.15, y0=-0.1), id="extended"),
    pytest.param(dict(r_eff=0.12, n=2.0, q=0.5, phi=1.5, x0=-0.1, y0=0.2), id="compact_n2"),
]


@pytest.mark.parametrize("lens", LENSES)
@pytest.mark.parametrize("src", SOURCES)
def test_uniform_grid_matches_lenstronomy_image_model(lens, src, monkeypatch):
    ours = render(lens, (sersic_set(weight=1.0, **src),), 32, SCALE, 16.0, factors=4)[0]
    ref = lenstronomy_image(lens, src, 32, 16.0, 4, monkeypatch)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5 * ref.max())


@pytest.mark.parametrize("lens", LENSES)
@pytest.mark.parametrize("src", SOURCES)
def test_adaptive_render_matches_finely_supersampled_lenstronomy(lens, src, monkeypatch):
    ours = render(lens, (sersic_set(weight=1.0, **src),), 32, SCALE, 16.0)[0]
    ref = lenstronomy_image(lens, src, 32, 16.0, 32, monkeypatch)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-3 * ref.max())


def reference_flux(lens, sset, n_pix, centre, adaptive):
    """Total flux on a 64x-per-axis grid where the adaptive image has light, 8x elsewhere."""
    factors = np.where(adaptive > 1e-5 * adaptive.max(), 64, 8)
    return float(render(lens, (sset,), n_pix, SCALE, centre, factors=factors).sum(dtype=np.float64))


@pytest.mark.parametrize("q", [0.3, 0.7, 1.0])
@pytest.mark.parametrize(
    "lens",
    [None, Lens(1.0, 0.6, 0.3, 0.05, 1.2), Lens(2.0, 0.85, 1.0, 0.1, 0.0)],
    ids=["unlensed", "lensed_1", "lensed_2"],
)
def test_adaptive_supersampling_keeps_compact_source_flux_within_1_percent(lens, q):
    sset = sersic_set(weight=1.0, r_eff=0.06, n=2.0, q=q, phi=0.8, x0=0.07, y0=-0.11)
    img = render(lens, (sset,), 64, SCALE, 32.0)[0]
    total = float(img.sum(dtype=np.float64))
    ref = 1.0 if lens is None else reference_flux(lens, sset, 64, 32.0, img)
    assert total == pytest.approx(ref, rel=0.01)


def test_fixed_grid_is_worse_than_adaptive_for_compact_unlensed_source():
    sset = sersic_set(weight=1.0, r_eff=0.06, n=2.0, q=0.4, phi=0.0, x0=0.0, y0=0.0)
    adaptive = abs(render(None, (sset,), 16, SCALE, 8.0).sum() - 1.0)
    fixed = abs(render(None, (sset,), 16, SCALE, 8.0, factors=4).sum() - 1.0)
    assert adaptive < 0.01 < fixed


@pytest.mark.parametrize("x0,y0", [(0.5, 0.2), (-0.3, 0.6)])
def test_lensed_flux_of_small_source_is_point_magnification(x0, y0):
    lens = Lens(1.2, 0.8, 0.4, 0.03, 1.0)
    sset = sersic_set(weight=1.0, r_eff=0.01, n=1.0, q=0.9, phi=0.0, x0=x0, y0=y0)
    flux = float(render(lens, (sset,), 64, SCALE, 32.0).sum(dtype=np.float64))
    lm = LensModel(["SIE", "SHEAR"])
    kw = lenstronomy_kwargs(lens)
    xs, ys = LensEquationSolver(lm).image_position_from_source(x0, y0, kw, min_distance=0.02, search_window=6)
    mu = np.abs(lm.magnification(xs, ys, kw)).sum()
    assert len(xs) >= 2
    assert flux == pytest.approx(mu, rel=0.01)


def test_weights_scale_the_image_and_sets_render_together():
    lens = Lens(1.0, 0.7, 0.2, 0.0, 0.0)
    a = sersic_set(weight=1.0, r_eff=0.2, n=1.0, q=0.8, phi=0.0, x0=0.1, y0=0.0)
    b = sersic_set(weight=[0.25, 0.75], r_eff=0.2, n=1.0, q=0.8, phi=0.0, x0=0.1, y0=0.0)
    img = render(lens, (a, b), 32, SCALE, 16.0)
    np.testing.assert_allclose(img[0], img[1], rtol=1e-5, atol=1e-9)


def test_convolve_valid_keeps_flux_of_a_padded_image():
    img = np.zeros((40, 40), np.float32)
    img[20, 20] = 1.0
    kernel = K.moffat_kernel(4.0, 3.5, radius=8)
    out = convolve_valid(img, kernel)
    assert out.shape == (24, 24)
    assert out.sum() == pytest.approx(1.0, rel=1e-5)
    assert np.unravel_index(out.argmax(), out.shape) == (12, 12)
