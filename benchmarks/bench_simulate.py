"""Simulator speed: stamps per second, and the ratio to lenstronomy at the same accuracy.

"Same accuracy": for every sampled injection, lenstronomy's ``ImageModel`` renders with the
smallest uniform supersampling factor whose PSF-free image is within 1e-3 of the peak (max
absolute pixel error) and 1% in total flux of a converged reference (our renderer on a uniform
64×64-per-pixel grid wherever there is light; the tests show it equals lenstronomy's to 1e-5 of
the peak at equal sampling). Our adaptive renderer is checked against the same tolerance. Both
then render the same three-band stamp (96×96 padded grid, per-band 33×33 Moffat PSF, crop to
64×64); lenstronomy needs one ``ImageModel`` call per band.

Run single-threaded, both ways of glibc's allocator::

    OMP_NUM_THREADS=1 pytest benchmarks/bench_simulate.py --benchmark-only
    MALLOC_MMAP_THRESHOLD_=1000000000 MALLOC_TRIM_THRESHOLD_=1000000000 OMP_NUM_THREADS=1 \\
        pytest benchmarks/bench_simulate.py --benchmark-only

or ``python benchmarks/bench_simulate.py`` for a printed summary (it includes the simulation
throughput with real-galaxy sources, ``sources="hdf"``, against Sérsic sources, in CPU time).
"""

from __future__ import annotations

import os
import time
from typing import NamedTuple

import numpy as np
import pytest

from shortcutgates.data.schema import PIXEL_SCALE_ARCSEC
from shortcutgates.simulate import stamps as S
from shortcutgates.simulate import simulate_frame
from shortcutgates.simulate.kernels import sersic_amp_for_flux, sersic_b
from shortcutgates.simulate.population import PopulationConfig, draw_conditions, draw_injection
from shortcutgates.simulate.render import Lens, convolve_valid, render, sersic_set

FACTORS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 48)
PEAK_TOL = 1e-3
FLUX_TOL = 1e-2
N_PAD = 64 + 2 * S.PSF_RADIUS
CENTRE = float(32 + S.PSF_RADIUS)


class Case(NamedTuple):
    lens: Lens
    source: dict
    psf: np.ndarray
    """(3, 33, 33) kernels."""
    band_flux: np.ndarray
    reference: np.ndarray
    """Converged PSF-free unit-flux image, (N_PAD, N_PAD)."""


def make_cases(n: int, seed: int = 0) -> list[Case]:
    """Population injections (single smooth Sérsic sources, which lenstronomy can render too)."""
    rng = np.random.default_rng(seed)
    cfg = PopulationConfig(clump_probability=0.0)
    cases = []
    for _ in range(n):
        cond = draw_conditions(rng)
        inj = draw_injection(rng, cfg)
        lens = Lens(inj.theta_e, inj.lens_q, inj.lens_phi, inj.shear, inj.shear_phi)
        src = dict(r_eff=inj.src_reff, n=inj.src_n, q=inj.src_q, phi=inj.src_phi, x0=inj.src_x, y0=inj.src_y)
        sset = sersic_set(weight=1.0, **src)
        adaptive = render(lens, (sset,), N_PAD, PIXEL_SCALE_ARCSEC, CENTRE)[0]
        factors = np.where(adaptive > 1e-6 * adaptive.max(), 64, 8)
        ref = render(lens, (sset,), N_PAD, PIXEL_SCALE_ARCSEC, CENTRE, factors=factors)[0]
        flux = S.mag_to_flux(21.0 + inj.dmag) * 10 ** (-0.4 * np.array([inj.colour_gr, 0.0, -inj.colour_rz]))
        cases.append(Case(lens, src, cond.psf, flux, ref))
    return cases


def meets_tolerance(image: np.ndarray, reference: np.ndarray) -> bool:
    peak_err = np.abs(image - reference).max() / reference.max()
    flux_err = abs(image.sum(dtype=np.float64) / reference.sum(dtype=np.float64) - 1.0)
    return peak_err <= PEAK_TOL and flux_err <= FLUX_TOL


# --- ours -----------------------------------------------------------------------------------
def ours_stamp(case: Case) -> np.ndarray:
    """Three-band PSF-convolved stamp: one adaptive trace, three convolutions."""
    unit = render(case.lens, (sersic_set(weight=1.0, **case.source),), N_PAD, PIXEL_SCALE_ARCSEC, CENTRE)[0]
    return np.stack([convolve_valid(unit * f, k) for f, k in zip(case.band_flux, case.psf)])


# --- lenstronomy ------------------------------------------------------------------------------
def lenstronomy_models(case: Case, factor: int, psf: np.ndarray | None):
    import lenstronomy.Util.param_util as pu
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LensModel.Profiles.sersic_utils import SersicUtil
    from lenstronomy.LightModel.light_model import LightModel

    SersicUtil.b_n = staticmethod(lambda n: sersic_b(n))  # the exact b_n both codes use here
    lens, s = case.lens, case.source
    data = ImageData(
        image_data=np.zeros((N_PAD, N_PAD)),
        ra_at_xy_0=-CENTRE * PIXEL_SCALE_ARCSEC,
        dec_at_xy_0=-CENTRE * PIXEL_SCALE_ARCSEC,
        transform_pix2angle=np.eye(2) * PIXEL_SCALE_ARCSEC,
    )
    psf_class = PSF("NONE") if psf is None else PSF("PIXEL", kernel_point_source=psf)
    model = ImageModel(
        data,
        psf_class,
        lens_model_class=LensModel(["SIE", "SHEAR"]),
        source_model_class=LightModel(["SERSIC_ELLIPSE"]),
        kwargs_numerics={"supersampling_factor": factor, "supersampling_convolution": False},
    )
    e1, e2 = pu.phi_q2_ellipticity(lens.phi, lens.q)
    kw_lens = [
        dict(theta_E=lens.theta_e, e1=e1, e2=e2, center_x=0.0, center_y=0.0),
        dict(gamma1=lens.gamma * np.cos(2 * lens.phi_gamma), gamma2=lens.gamma * np.sin(2 * lens.phi_gamma)),
    ]
    se1, se2 = pu.phi_q2_ellipticity(s["phi"], s["q"])
    kw_src = dict(R_sersic=s["r_eff"], n_sersic=s["n"], e1=se1, e2=se2, center_x=s["x0"], center_y=s["y0"])
    return model, kw_lens, kw_src


def lenstronomy_factor(case: Case) -> int:
    """Smallest uniform supersampling factor at which lenstronomy meets the tolerance."""
    for factor in FACTORS:
        model, kw_lens, kw_src = lenstronomy_models(case, factor, None)
        amp = float(sersic_amp_for_flux(1.0, case.source["r_eff"], case.source["n"]))
        image = model.image(kwargs_lens=kw_lens, kwargs_source=[dict(kw_src, amp=amp)])
        if meets_tolerance(image, case.reference):
            return factor
    return FACTORS[-1]


def lenstronomy_stamp(case: Case, factor: int) -> np.ndarray:
    """The same three-band stamp from lenstronomy: one ImageModel call per band, then crop."""
    amp = float(sersic_amp_for_flux(1.0, case.source["r_eff"], case.source["n"]))
    bands = []
    for flux, psf in zip(case.band_flux, case.psf):
        model, kw_lens, kw_src = lenstronomy_models(case, factor, psf)
        image = model.image(kwargs_lens=kw_lens, kwargs_source=[dict(kw_src, amp=amp * flux)])
        bands.append(image[S.PSF_RADIUS : -S.PSF_RADIUS, S.PSF_RADIUS : -S.PSF_RADIUS])
    return np.stack(bands)


# --- pytest-benchmark ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cases():
    pytest.importorskip("lenstronomy")
    return make_cases(int(os.environ.get("SG_BENCH_CASES", "12")))


def allocator() -> str:
    raised = "MALLOC_MMAP_THRESHOLD_" in os.environ and "MALLOC_TRIM_THRESHOLD_" in os.environ
    return "raised MALLOC_MMAP/TRIM_THRESHOLD_" if raised else "glibc default"


@pytest.mark.parametrize("sources", ["sersic", "hdf"])
def test_bench_simulate_frame(benchmark, sources):
    """Full paired stamps per second with Sérsic sources and with the real-galaxy library
    (the same LRGs, conditions and injections; only the source light differs)."""
    n_lrgs, per = 4, 8
    benchmark.extra_info.update(allocator=allocator(), sources=sources)
    benchmark.pedantic(
        simulate_frame,
        args=(n_lrgs, 0),
        kwargs=dict(injections_per_lrg=(per, per), sources=sources),
        rounds=3,
        iterations=1,
    )
    benchmark.extra_info["stamps_per_s"] = n_lrgs * per / benchmark.stats.stats.mean


def arc_seconds(sources: str, n: int = 24, seed: int = 0) -> float:
    """CPU seconds per three-band arc (render + PSF), population injections, one source kind."""
    from shortcutgates.simulate.sources import draw_pick, load_library, place

    rng = np.random.default_rng(seed)
    cfg = PopulationConfig()
    library = None if sources == "sersic" else load_library(sources)
    work = []
    for _ in range(n):
        cond = draw_conditions(rng)
        inj = draw_injection(rng, cfg)
        pixel = None
        if library is not None:
            pick, flip = draw_pick(rng, len(library))
            pixel = place(library, pick, r_eff=inj.src_reff, x=inj.src_x, y=inj.src_y, phi=inj.src_phi, flip=flip)
        work.append((inj, cond, pixel))
    start = time.process_time()
    for inj, cond, pixel in work:
        S.render_arc(inj, 19.0, cond, 64, pixel_source=pixel)
    return (time.process_time() - start) / n


def test_bench_arc_real_vs_sersic_sources(benchmark):
    """Three-band arcs with library galaxies against Sérsic (+ clumps) sources: time ratio."""
    benchmark.pedantic(lambda: arc_seconds("hdf"), rounds=1, iterations=1)
    t_real, t_sersic = arc_seconds("hdf"), arc_seconds("sersic")
    benchmark.extra_info.update(real_arcs_per_s=1 / t_real, sersic_arcs_per_s=1 / t_sersic, ratio=t_real / t_sersic)
    print(
        f"\narcs: real (hdf) {1 / t_real:.1f}/s, Sérsic {1 / t_sersic:.1f}/s, real/Sérsic time {t_real / t_sersic:.2f}x"
    )


def test_bench_arc_ours_vs_lenstronomy(benchmark, cases):
    factors = [lenstronomy_factor(c) for c in cases]
    ours_ok = [
        meets_tolerance(
            render(c.lens, (sersic_set(weight=1.0, **c.source),), N_PAD, PIXEL_SCALE_ARCSEC, CENTRE)[0], c.reference
        )
        for c in cases
    ]
    start = time.perf_counter()
    for case, factor in zip(cases, factors):
        lenstronomy_stamp(case, factor)
    t_lens = time.perf_counter() - start
    benchmark.pedantic(lambda: [ours_stamp(c) for c in cases], rounds=3, iterations=1)
    t_ours = benchmark.stats.stats.mean
    info = benchmark.extra_info
    info.update(
        allocator=allocator(),
        n_stamps=len(cases),
        lenstronomy_factors=factors,
        ours_meets_tolerance=all(ours_ok),
        ours_3band_stamps_per_s=len(cases) / t_ours,
        lenstronomy_3band_stamps_per_s=len(cases) / t_lens,
        ratio=t_lens / t_ours,
    )
    print(
        f"\n[{allocator()}] ours {len(cases) / t_ours:.1f} 3-band stamps/s, lenstronomy "
        f"{len(cases) / t_lens:.2f} 3-band stamps/s at factors {factors}: ratio {t_lens / t_ours:.1f}x "
        f"(ours within tolerance: {all(ours_ok)})"
    )


def main() -> None:  # pragma: no cover - manual summary
    cases = make_cases(int(os.environ.get("SG_BENCH_CASES", "12")))
    factors = [lenstronomy_factor(c) for c in cases]
    start = time.perf_counter()
    for c in cases:
        ours_stamp(c)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    for c, f in zip(cases, factors):
        lenstronomy_stamp(c, f)
    t_lens = time.perf_counter() - start
    print(f"allocator: {allocator()}")
    rate = {}
    for sources in ("sersic", "hdf"):
        start = time.process_time()
        frame = simulate_frame(8, 0, injections_per_lrg=(8, 8), sources=sources)
        rate[sources] = len(frame) / (time.process_time() - start)
        print(
            f"simulate_frame, {sources} sources: {rate[sources]:.1f} stamps per CPU-second "
            "(3 bands, with LRG, field, noise, npz encoding)"
        )
    print(
        f"real / Sérsic simulate time: {rate['sersic'] / rate['hdf']:.2f}x; arcs alone: "
        f"{arc_seconds('hdf') / arc_seconds('sersic'):.2f}x"
    )
    print(
        f"arcs: ours {len(cases) / t_ours:.1f}/s, lenstronomy {len(cases) / t_lens:.2f}/s "
        f"(factors {factors}), ratio {t_lens / t_ours:.1f}x"
    )


if __name__ == "__main__":  # pragma: no cover
    main()
