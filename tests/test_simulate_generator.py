"""The paired-data generator: format, determinism, splits, positions, noise, writing, CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shortcutgates import cli
from shortcutgates.data.codec import decode_stamps
from shortcutgates.data.io import read_paired
from shortcutgates.model.preprocess import annulus_median_mad
from shortcutgates.data.schema import CONDITIONS, INJECTION_TRUTH, LRG_TRUTH, PAIRED_REQUIRED, PROVENANCE
from shortcutgates.simulate import COLUMNS, simulate_frame, simulate_paired
from shortcutgates.simulate import generator as G
from shortcutgates.simulate import stamps as S
from shortcutgates.simulate.population import (
    PopulationConfig,
    brickname,
    condition_columns,
    draw_conditions,
    draw_injection,
    draw_lrg,
    sky_positions,
)


@pytest.fixture(scope="module")
def frame():
    return simulate_frame(6, 11, injections_per_lrg=(2, 3))


def images(series):
    return decode_stamps(series.tolist()).images  # a bad blob raises


def test_frame_has_the_design_columns_and_types(frame):
    for col in PAIRED_REQUIRED + INJECTION_TRUTH + CONDITIONS + PROVENANCE + LRG_TRUTH:
        assert col in frame.columns, col
    assert list(frame.columns) == list(COLUMNS) + ["region_split"]
    assert frame["stamp_npz"].map(type).eq(bytes).all()
    for col in ("psf_bin", "depth_bin", "task_id", "cutout_ok"):
        assert frame[col].dtype == np.int32
    assert (frame["cutout_ok"] == 1).all()
    assert frame[list(INJECTION_TRUTH + CONDITIONS + LRG_TRUTH)].notna().all().all()
    assert 12 <= len(frame) <= 18


def test_rows_of_one_lrg_share_one_control_and_position(frame):
    for _, rows in frame.groupby("task_id"):
        assert rows["ctrl_stamp_npz"].nunique() == 1
        assert rows[["ra", "dec", "region_split", "brickname"]].nunique().max() == 1
        assert rows["stamp_npz"].nunique() == len(rows)


def test_stamps_are_control_plus_nonnegative_arc_centred_lrg(frame):
    stamps, ctrls = images(frame["stamp_npz"]), images(frame["ctrl_stamp_npz"])
    assert stamps.shape == (len(frame), 3, 64, 64) and stamps.dtype == np.float32
    arcs = stamps - ctrls
    assert arcs.min() > -1e-6 * np.abs(stamps).max()
    assert (arcs.sum(axis=(1, 2, 3)) > 0).all()
    rng = np.random.default_rng(0)
    for _ in range(3):
        clean = S.render_lrg(draw_lrg(rng), draw_conditions(rng), 64)
        for band in clean:  # the LRG sits at pixel (32, 32) and is symmetric about it
            assert np.unravel_index(band.argmax(), band.shape) == (32, 32)
            np.testing.assert_allclose(band[1:, 1:], band[1:, 1:][::-1, ::-1], rtol=1e-3, atol=1e-7)


def test_truth_ranges_follow_the_population(frame):
    assert frame["theta_e_arcsec"].between(0.5, 2.5).all()
    offset = np.hypot(frame["src_x_arcsec"], frame["src_y_arcsec"])
    assert (offset <= 0.8 * frame["theta_e_arcsec"] + 1e-12).all()
    assert frame["src_reff_arcsec"].between(0.06, 0.5).all()
    assert frame["src_dmag"].between(0.5, 2.0).all()
    assert frame["lens_e"].between(0.05, 0.5).all()
    assert (frame["lrg_mag_z"] <= 20.4).all()
    assert (frame["lrg_mag_r"] - frame["lrg_mag_z"] > 1.0).all()  # red
    assert (frame["magnification"] > 1.0).all() and (frame["arc_snr"] > 0).all()
    assert (frame["psf_fwhm_used_g"] > frame["psf_fwhm_used_r"]).all()
    assert (frame["psf_fwhm_used_z"] < frame["psf_fwhm_used_r"]).all()


def test_same_seed_same_bytes_other_seed_other_bytes(frame):
    again = simulate_frame(6, 11, injections_per_lrg=(2, 3))
    pd.testing.assert_frame_equal(frame, again)
    other = simulate_frame(2, 12, injections_per_lrg=(2, 3))
    assert not set(other["stamp_npz"]) & set(frame["stamp_npz"])


def test_lrgs_do_not_depend_on_how_many_are_simulated(frame):
    fewer = simulate_frame(2, 11, injections_per_lrg=(2, 3))
    first = frame[frame["task_id"] == 1].reset_index(drop=True)
    again = fewer[fewer["task_id"] == 1].reset_index(drop=True)
    assert list(first["stamp_npz"]) == list(again["stamp_npz"])


def test_split_assignment_is_by_lrg_with_70_15_15():
    names = G.split_assignment(1000, 3)
    counts = pd.Series(names).value_counts()
    assert counts["train"] == 700 and counts["val"] == 150 and counts["test"] == 150
    assert list(G.split_assignment(1000, 3)) == list(names)


@settings(max_examples=10, deadline=None)
@given(n=st.integers(2, 300), seed=st.integers(0, 2**31))
def test_sky_positions_are_more_than_5_arcsec_apart(n, seed):
    # a 0.1 deg x 0.1 deg footprint forces collisions that must be redrawn
    pos = sky_positions(n, np.random.default_rng(seed), dec_range=(10.0, 10.1), ra_range=(5.0, 5.1))
    xyz = np.column_stack(
        [
            np.cos(np.radians(pos.dec)) * np.cos(np.radians(pos.ra)),
            np.cos(np.radians(pos.dec)) * np.sin(np.radians(pos.ra)),
            np.sin(np.radians(pos.dec)),
        ]
    )
    sep = np.degrees(np.arccos(np.clip(xyz @ xyz.T, -1, 1))) * 3600
    np.fill_diagonal(sep, np.inf)
    assert sep.min() > 5.0


def test_sky_positions_refuse_an_impossible_packing():
    with pytest.raises(ValueError, match="could not separate"):
        sky_positions(500, np.random.default_rng(0), dec_range=(0.0, 0.001), ra_range=(0.0, 0.001), max_rounds=20)


def test_brickname_format():
    assert brickname(123.456, -5.43) == "1234m054"
    assert brickname(0.05, 30.0) == "0000p300"


def test_outer_annulus_noise_mad_is_near_the_survey_and_follows_depth():
    rng = np.random.default_rng(5)
    mads, depth = [], []
    for _ in range(40):
        lrg, cond = draw_lrg(rng), draw_conditions(rng)
        ctrl = S.add_noise(S.render_lrg(lrg, cond, 64), cond, rng)
        mads.append(annulus_median_mad(ctrl)[1].ravel())
        depth.append(condition_columns(cond)["psfdepth_r"])
    mads = np.array(mads)
    np.testing.assert_allclose(np.median(mads, axis=0), [0.0016, 0.0028, 0.0072], rtol=0.15)
    # deeper data (larger psfdepth_r, an inverse variance) has less noise
    assert np.corrcoef(np.log(mads[:, 1]), np.log(depth))[0, 1] < -0.5


def test_noise_variance_includes_the_lrg_photon_noise():
    rng = np.random.default_rng(2)
    cond = draw_conditions(rng)
    bright = np.full((3, 4, 4), 10.0, np.float32)
    var = S.noise_variance(bright, cond)
    np.testing.assert_allclose(var[:, 0, 0], cond.sky_sigma**2 + 10.0 / cond.gain)


def test_arc_snr_is_integrated_over_pixels_above_the_sky_sigma():
    arc = np.zeros((8, 8))
    arc[2:4, 2:4] = 1.0
    var = np.full((8, 8), 0.25)
    assert S.arc_snr(arc, var, 0.5) == pytest.approx(4.0 / np.sqrt(1.0))
    assert S.arc_snr(np.zeros((8, 8)), var, 0.5) == 0.0


def test_magnification_is_lensed_over_intrinsic_flux():
    rng = np.random.default_rng(4)
    cond = draw_conditions(rng)
    inj = draw_injection(rng, PopulationConfig(clump_probability=0.0))
    arc, mu = S.render_arc(inj, 21.0, cond, 64)
    intrinsic = S.mag_to_flux(21.0 + inj.dmag)
    # the PSF spreads a little light beyond the stamp; nearly all of it stays
    assert arc[1].sum() == pytest.approx(mu * intrinsic, rel=0.05)
    assert mu > 1.0


def test_simulate_paired_writes_three_split_directories(tmp_path):
    out = tmp_path / "sim"
    summary = simulate_paired(out, 8, 3, injections_per_lrg=(2, 2), rows_per_file=5, progress=False)
    assert summary.n_rows == 16 and sum(summary.rows_per_split.values()) == 16
    assert {p.parent.name for p in summary.files} <= {"train", "val", "test"}
    cat = read_paired(out)
    assert len(cat.frame) == 16
    assert (cat.frame["split"] == cat.frame["region_split"]).all()
    same = simulate_frame(8, 3, injections_per_lrg=(2, 2))
    assert sorted(cat.frame["stamp_npz"]) == sorted(same["stamp_npz"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_simulate_paired_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        simulate_paired(tmp_path, 2, 0, progress=False)


def test_interrupted_run_leaves_no_output(tmp_path, monkeypatch):
    real = G.lrg_rows
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(G, "lrg_rows", failing)
    with pytest.raises(KeyboardInterrupt):
        simulate_paired(tmp_path / "sim", 6, 0, injections_per_lrg=(1, 1), rows_per_file=1, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(n_lrgs=0), "n_lrgs"),
        (dict(stamp_size=31), "stamp_size"),
        (dict(injections_per_lrg=(3, 2)), "injections_per_lrg"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    args = dict(n_lrgs=1, seed=0) | kwargs
    with pytest.raises(ValueError, match=match):
        simulate_frame(args.pop("n_lrgs"), args.pop("seed"), **args)


def test_stamp_size_option():
    small = simulate_frame(1, 0, stamp_size=48, injections_per_lrg=(1, 1))
    assert images(small["stamp_npz"]).shape == (1, 3, 48, 48)


def test_cli_simulate(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = cli.main(
        [
            "simulate",
            "--out",
            str(out),
            "--n-lrgs",
            "3",
            "--seed",
            "1",
            "--injections-per-lrg",
            "1:2",
            "--stamp-size",
            "64",
        ]
    )
    assert rc == 0
    assert "rows" in capsys.readouterr().out
    assert len(read_paired(out).frame) >= 3
    assert cli.main(["simulate", "--out", str(out), "--n-lrgs", "3", "--seed", "1"]) == 2


def test_cli_rejects_a_bad_range(tmp_path):
    with pytest.raises(SystemExit):
        cli.main(
            ["simulate", "--out", str(tmp_path / "x"), "--n-lrgs", "3", "--seed", "1", "--injections-per-lrg", "5:2"]
        )


def test_coadd_noise_has_unit_variance_and_resampling_correlation():
    noise = np.stack([S.coadd_unit_noise((3, 64, 64), np.random.default_rng(i)) for i in range(10)])
    assert noise.std() == pytest.approx(1.0, rel=0.02)
    rho = np.mean([np.corrcoef(x[:, 1:].ravel(), x[:, :-1].ravel())[0, 1] for x in noise[:, 1]])
    assert 0.05 < rho < 0.3  # Lanczos-3 resampling correlates neighbours; white noise would give 0


def test_lanczos3_weights_sum_to_one_and_are_a_delta_at_zero_shift():
    from shortcutgates.simulate.kernels import lanczos3_weights

    w = lanczos3_weights(np.array([0.0, 0.3, 0.5]))
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    np.testing.assert_allclose(w[0], [0, 0, 1, 0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(w[2], w[2][::-1])


def test_workers_write_the_same_bytes(tmp_path):
    """Two worker processes (seeded per LRG, rows back in index order): every file byte-identical."""
    runs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        summary = simulate_paired(
            out, 6, 5, stamp_size=32, injections_per_lrg=(1, 2), rows_per_file=3, progress=False, workers=workers
        )
        runs[workers] = {str(f): (out / f).read_bytes() for f in summary.files}
    assert runs[1] and runs[1] == runs[2]
