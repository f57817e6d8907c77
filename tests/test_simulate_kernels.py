"""Physics kernels of the simulator against lenstronomy (an independent implementation) and analytic limits."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shortcutgates.simulate import kernels as K

lenstronomy = pytest.importorskip("lenstronomy")
from lenstronomy.LensModel.lens_model import LensModel  # noqa: E402
from lenstronomy.LightModel.light_model import LightModel  # noqa: E402
import lenstronomy.Util.param_util as param_util  # noqa: E402

GRID = np.linspace(-3.0, 3.0, 41)
XX, YY = np.meshgrid(GRID, GRID + 0.013)  # offset keeps the origin (SIE singularity) off the grid
LENS_CASES = [
    pytest.param(0.5, 0.9, 0.0, id="small_round"),
    pytest.param(1.2, 0.7, 0.4, id="mid"),
    pytest.param(2.5, 0.33, 2.0, id="large_flat"),
    pytest.param(1.0, 1.0 - 1e-6, 1.0, id="q_to_1"),
]


def lenstronomy_b_n(n):
    return 1.9992 * n - 0.3271


@pytest.mark.parametrize("theta_e,q,phi", LENS_CASES)
def test_sie_deflection_matches_lenstronomy(theta_e, q, phi):
    e1, e2 = param_util.phi_q2_ellipticity(phi, q)
    ref = LensModel(["SIE"]).alpha(XX, YY, [dict(theta_E=theta_e, e1=e1, e2=e2, center_x=0, center_y=0)])
    ours = K.sie_deflection(XX, YY, theta_e, q, phi)
    # lenstronomy's SIE is an NIE with a tiny core; float64 agreement is ~1e-6 arcsec
    np.testing.assert_allclose(ours[0], ref[0], atol=2e-6 * theta_e)
    np.testing.assert_allclose(ours[1], ref[1], atol=2e-6 * theta_e)


@pytest.mark.parametrize("gamma,phi_g", [(0.05, 0.3), (0.1, 2.5)])
def test_shear_deflection_matches_lenstronomy(gamma, phi_g):
    g1, g2 = gamma * np.cos(2 * phi_g), gamma * np.sin(2 * phi_g)
    ref = LensModel(["SHEAR"]).alpha(XX, YY, [dict(gamma1=g1, gamma2=g2)])
    ours = K.shear_deflection(XX, YY, gamma, phi_g)
    np.testing.assert_allclose(ours, ref, atol=1e-12)


@pytest.mark.parametrize("theta_e,q,phi", LENS_CASES[:3])
@pytest.mark.parametrize("r_eff,n,src_q", [(0.06, 2.0, 0.5), (0.3, 1.0, 0.8), (0.5, 0.5, 0.4)])
def test_lensed_sersic_surface_brightness_matches_lenstronomy(theta_e, q, phi, r_eff, n, src_q):
    e1, e2 = param_util.phi_q2_ellipticity(phi, q)
    lm = LensModel(["SIE", "SHEAR"])
    kw_lens = [dict(theta_E=theta_e, e1=e1, e2=e2, center_x=0, center_y=0), dict(gamma1=0.03, gamma2=-0.02)]
    se1, se2 = param_util.phi_q2_ellipticity(1.1, src_q)
    kw_src = [dict(amp=10.0, R_sersic=r_eff, n_sersic=n, e1=se1, e2=se2, center_x=0.2, center_y=-0.1)]
    bx_ref, by_ref = lm.ray_shooting(XX, YY, kw_lens)
    ref = LightModel(["SERSIC_ELLIPSE"]).surface_brightness(bx_ref, by_ref, kw_src)
    gamma, phi_g = np.hypot(0.03, -0.02), 0.5 * np.arctan2(-0.02, 0.03)
    bx, by = K.ray_shoot(XX, YY, theta_e, q, phi, gamma, phi_g)
    ours = K.sersic(bx, by, 10.0, r_eff, n, src_q, 1.1, 0.2, -0.1, b_n=lenstronomy_b_n(n))
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6 * ref.max())


@settings(max_examples=25, deadline=None)
@given(fwhm=st.floats(2.0, 8.0), beta=st.floats(2.0, 5.0))
def test_moffat_kernel_sums_to_one_and_is_centred(fwhm, beta):
    k = K.moffat_kernel(fwhm, beta, radius=12, oversample=3)
    assert k.shape == (25, 25)
    assert abs(k.sum() - 1.0) < 1e-12
    assert np.unravel_index(np.argmax(k), k.shape) == (12, 12)
    np.testing.assert_allclose(k, k[::-1, ::-1])


def test_moffat_profile_half_maximum_at_half_fwhm_and_unit_integral():
    fwhm, beta = 1.3, 3.5
    assert K.moffat_profile(fwhm / 2, fwhm, beta) == pytest.approx(0.5 * K.moffat_profile(0.0, fwhm, beta))
    r = np.linspace(0, 200, 400001)
    integral = np.trapezoid(2 * np.pi * r * K.moffat_profile(r, fwhm, beta), r)
    assert integral == pytest.approx(1.0, abs=1e-4)


def test_batched_moffat_kernels_each_sum_to_one():
    k = K.moffat_kernel(np.array([3.0, 4.5, 6.0]), 3.5)
    assert k.shape == (3, 33, 33)
    np.testing.assert_allclose(k.sum(axis=(1, 2)), 1.0, atol=1e-12)


@pytest.mark.parametrize("n", [0.5, 1.0, 2.0, 4.0])
def test_sersic_total_flux_and_half_light_radius(n):
    r_eff, q, phi, amp = 0.4, 0.6, 0.7, 2.0
    # elliptical polar grid: x' = R cos t / sqrt(q), y' = R sqrt(q) sin t has Jacobian R
    radius = np.union1d(np.geomspace(1e-6, 400.0, 20000), [r_eff])
    t = np.linspace(0, 2 * np.pi, 65)[:-1]
    rr, tt = np.meshgrid(radius, t)
    xr, yr = rr * np.cos(tt) / np.sqrt(q), rr * np.sqrt(q) * np.sin(tt)
    x, y = np.cos(phi) * xr - np.sin(phi) * yr, np.sin(phi) * xr + np.cos(phi) * yr
    img = K.sersic(x, y, amp, r_eff, n, q, phi)
    np.testing.assert_allclose(
        img, np.broadcast_to(img[0], img.shape), rtol=1e-7, atol=1e-12
    )  # constant on the ellipses R = const
    ring = img.mean(axis=0) * 2 * np.pi * radius  # dF / dR
    total = K.sersic_total_flux(amp, r_eff, n)
    assert np.trapezoid(ring, radius) == pytest.approx(total, rel=1e-4)
    inside = radius <= r_eff
    assert np.trapezoid(ring[inside], radius[inside]) == pytest.approx(0.5 * total, rel=1e-3)


def test_sersic_b_is_exact_root():
    from scipy import special

    n = np.array([0.5, 1.0, 2.0, 4.0])
    np.testing.assert_allclose(special.gammainc(2 * n, K.sersic_b(n)), 0.5, rtol=1e-12)
    assert K.sersic_b(1.0) == pytest.approx(1.678, abs=1e-3)


def test_sie_q_to_one_limit_is_sis():
    theta_e = 1.3
    sis = np.stack([theta_e * XX / np.hypot(XX, YY), theta_e * YY / np.hypot(XX, YY)])
    np.testing.assert_allclose(np.stack(K.sie_deflection(XX, YY, theta_e, 1.0, 0.3)), sis, atol=1e-12)
    near = np.stack(K.sie_deflection(XX, YY, theta_e, 1.0 - 2e-4, 0.3))
    np.testing.assert_allclose(near, sis, atol=1e-3 * theta_e)


@pytest.mark.parametrize("theta_e,q,phi", LENS_CASES[:3])
def test_sie_convergence_is_half_on_einstein_ellipse(theta_e, q, phi):
    t = np.linspace(0, 2 * np.pi, 13)[:-1] + 0.1
    # q x'^2 + y'^2 / q = theta_e^2  ->  x' = theta_e cos t / sqrt(q), y' = theta_e sqrt(q) sin t
    xr, yr = theta_e * np.cos(t) / np.sqrt(q), theta_e * np.sqrt(q) * np.sin(t)
    x, y = np.cos(phi) * xr - np.sin(phi) * yr, np.sin(phi) * xr + np.cos(phi) * yr
    h = 1e-5
    dax = K.sie_deflection(x + h, y, theta_e, q, phi)[0] - K.sie_deflection(x - h, y, theta_e, q, phi)[0]
    day = K.sie_deflection(x, y + h, theta_e, q, phi)[1] - K.sie_deflection(x, y - h, theta_e, q, phi)[1]
    kappa = 0.5 * (dax + day) / (2 * h)
    np.testing.assert_allclose(kappa, 0.5, rtol=1e-5)


def test_kernels_broadcast_over_a_batch():
    theta = np.array([[0.8], [1.5]])
    x = np.array([[0.3, 1.0, -2.0]] * 2)
    y = np.array([[0.1, -0.4, 0.7]] * 2)
    batch = K.sie_deflection(x, y, theta, np.array([[0.6], [0.9]]), np.array([[0.2], [1.0]]))
    single = K.sie_deflection(x[1], y[1], 1.5, 0.9, 1.0)
    np.testing.assert_allclose(batch[0][1], single[0])
    assert batch[0].shape == (2, 3)
