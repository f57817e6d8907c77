"""``shortcutgates build`` end to end: files in, manifest directory out."""

import json
import re

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings, strategies as st

from shortcutgates.data import build as build_module
from shortcutgates import cli, testing
from shortcutgates.data.build import MANIFEST_PARQUET, build_manifest, rows_sha256
from shortcutgates.data.lrg_properties import measure_lrg
from shortcutgates.data.codec import decode_stamp
from shortcutgates.data.io import read_paired
from shortcutgates.data.manifest import load_images, read_manifest
from shortcutgates.data.schema import PIXEL_SCALE_ARCSEC, DataError

from strategies import catalogs, generate_catalog, write_catalog


@pytest.fixture(scope="module")
def paired_dir(tmp_path_factory):
    """60 LRGs with 1-4 injections each, 12x12 stamps, in 3 parquet files."""
    directory = tmp_path_factory.mktemp("paired")
    injections = np.random.default_rng(0).integers(1, 5, 60)
    cat = generate_catalog(injections, seed=4, jitter_arcsec=0.1, image_size=12)
    write_catalog(cat.frame.assign(cutout_ok=np.int32(1)), directory / "in", n_files=3)
    return directory / "in"


def build(paired_dir, out, **kwargs):
    kwargs = {"mode": "unpaired", "seed": 3, "progress": False, **kwargs}
    return build_manifest(paired_dir, out, **kwargs)


def test_pointer_build_reads_no_blob(paired_dir, tmp_path, monkeypatch):
    requested = []
    real = pq.read_table

    def spy(source, *args, columns=None, **kwargs):
        requested.append(columns)
        return real(source, *args, columns=columns, **kwargs)

    monkeypatch.setattr(pq, "read_table", spy)
    build(paired_dir, tmp_path / "out")
    assert requested and all(cols is not None for cols in requested)
    assert not any({"stamp_npz", "ctrl_stamp_npz"} & set(cols) for cols in requested)


@pytest.mark.parametrize("mode", ["paired", "unpaired"])
def test_manifest_points_to_the_right_images(paired_dir, tmp_path, mode):
    build(paired_dir, tmp_path / "out", mode=mode, positives_per_lrg="all")
    manifest = read_manifest(tmp_path / "out")
    rows = manifest.frame
    testing.check_manifest(rows, paired=mode == "paired")
    testing.check_traceable(rows, read_paired(paired_dir).frame)
    assert rows["label"].dtype == np.int8 and set(rows["split"]) <= {"train", "val", "test", "test_paired"}
    assert rows["weight"].notna().all()
    images, failures = load_images(rows)
    assert not failures and images.shape == (len(rows), 3, 12, 12)
    source = read_paired(paired_dir).frame.set_index(["source_path", "source_row"])
    for i in range(0, len(rows), 7):
        row = rows.iloc[i]
        blob = source.loc[(row["source_path"], row["source_row"]), row["source_column"]]
        assert np.array_equal(images[i], decode_stamp(blob))


def test_same_seed_gives_identical_bytes(paired_dir, tmp_path):
    a = build(paired_dir, tmp_path / "a", match=("psfsize_r",))
    b = build(paired_dir, tmp_path / "b", match=("psfsize_r",))
    c = build(paired_dir, tmp_path / "c", match=("psfsize_r",), seed=4)
    assert (tmp_path / "a" / MANIFEST_PARQUET).read_bytes() == (tmp_path / "b" / MANIFEST_PARQUET).read_bytes()
    assert a.rows_sha256 == b.rows_sha256 != c.rows_sha256
    meta = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert meta["rows_sha256"] == a.rows_sha256 == rows_sha256(pq.read_table(tmp_path / "a" / MANIFEST_PARQUET))


def test_manifest_json_records_the_build(paired_dir, tmp_path):
    summary = build(paired_dir, tmp_path / "out", match=("psfsize_r", "psf_bin"), fractions=(0.6, 0.2, 0.1, 0.1))
    meta = json.loads((tmp_path / "out" / "manifest.json").read_text())
    rows = read_manifest(tmp_path / "out").frame
    assert meta["seed"] == 3 and meta["parameters"]["match"] == ["psfsize_r", "psf_bin"]
    assert meta["parameters"]["fractions"] == [0.6, 0.2, 0.1, 0.1]
    assert meta["package_version"] and len(meta["input"]["files"]) == 3
    first = meta["input"]["files"][0]
    assert first["size"] > 0 and first["mtime"] > 0 and first["path"].endswith("part-0000.parquet")
    for split, c in meta["counts"].items():
        sub = rows[rows["split"] == split]
        assert (c["pos"], c["neg"]) == ((sub["label"] == 1).sum(), (sub["label"] == 0).sum())
    assert set(meta["balance"]["after"]) == {"psfsize_r", "psf_bin"}
    assert meta["matching"]["n_cells"] > 0 and summary.n_rows == len(rows)


def test_interrupted_build_keeps_the_previous_output(paired_dir, tmp_path, monkeypatch):
    build(paired_dir, tmp_path / "out")
    before = (tmp_path / "out" / MANIFEST_PARQUET).read_bytes()

    def broken(table, where, **kwargs):
        open(where, "wb").write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(build_module.pq, "write_table", broken)
    with pytest.raises(KeyboardInterrupt):
        build(paired_dir, tmp_path / "out", seed=9)
    assert (tmp_path / "out" / MANIFEST_PARQUET).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_refuses_to_replace_a_directory_that_is_not_a_manifest(paired_dir, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="is not a manifest directory"):
        build(paired_dir, tmp_path / "out")
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"


def test_inline_copies_the_blobs(paired_dir, tmp_path):
    build(paired_dir, tmp_path / "out", mode="paired", inline=True)
    rows = read_manifest(tmp_path / "out").frame
    source = read_paired(paired_dir).frame.set_index(["source_path", "source_row"])
    expected = [
        source.loc[(p, r), c] for p, r, c in zip(rows["source_path"], rows["source_row"], rows["source_column"])
    ]
    assert rows["image_npz"].tolist() == expected


def test_input_split_directories_are_kept_and_straddling_lrgs_listed(tmp_path):
    cat = generate_catalog([2, 3, 1, 2, 2, 4], seed=8, input_splits=True, columns=("psfsize_r",), image_size=8)
    write_catalog(cat.frame, tmp_path / "in", split_dirs=True)
    summary = build(tmp_path / "in", tmp_path / "out")
    rows = read_manifest(tmp_path / "out").frame
    assert summary.meta["split_source"] == "input"
    truth = cat.frame.groupby(cat.lrg)["region_split"].first()
    got = rows.groupby("lrg_id")["split"].first().replace({"test_paired": "test"})
    assert sorted(got) == sorted(truth)
    # move one row of a multi-row LRG to another split's directory: the build lists it
    moved = cat.frame.copy()
    lrg = cat.lrg[np.flatnonzero(np.bincount(cat.lrg) > 1)[0] == cat.lrg][0]
    i = np.flatnonzero(cat.lrg == lrg)[0]
    moved.loc[i, "region_split"] = next(s for s in ("train", "val", "test") if s != moved.loc[i, "region_split"])
    write_catalog(moved, tmp_path / "moved", split_dirs=True)
    with pytest.raises(DataError, match=r"1 LRG\(s\) straddle input splits: J\S+ in \w+ \(part-0000.parquet\) and"):
        build(tmp_path / "moved", tmp_path / "out2")
    assert build(tmp_path / "moved", tmp_path / "out2", resplit=True).meta["split_source"] == "hash"


def test_cutout_ok_rows_are_excluded_and_counted(tmp_path):
    cat = generate_catalog([2, 2, 2], seed=1, image_size=8)
    write_catalog(cat.frame.assign(cutout_ok=np.int32([0] + [1] * 5)), tmp_path / "in")
    summary = build(tmp_path / "in", tmp_path / "out", mode="paired")
    assert summary.meta["input"]["n_cutout_excluded"] == 1
    assert 0 not in set(read_manifest(tmp_path / "out").frame["source_row"])  # row 0 has cutout_ok == 0
    assert summary.meta["input"]["n_rows"] == 5


def test_missing_blob_column_is_named(tmp_path):
    frame = generate_catalog([2], seed=1, columns=()).frame
    write_catalog(frame, tmp_path / "in")
    with pytest.raises(DataError, match=r"part-0000.parquet: missing column\(s\) stamp_npz, ctrl_stamp_npz"):
        build(tmp_path / "in", tmp_path / "out")


def test_measure_lrg_on_a_gaussian():
    size, sigma = 41, 3.0
    yy, xx = np.indices((size, size)) - size // 2
    gauss = np.exp(-(yy**2 + xx**2) / (2 * sigma**2))
    image = np.stack([gauss * f for f in (1.0, 2.0, 3.0)]).astype(np.float32)
    m = measure_lrg(image)
    assert m["half_light_radius_r"] == pytest.approx(
        sigma * np.sqrt(2 * np.log(2)) * PIXEL_SCALE_ARCSEC, abs=0.5 * PIXEL_SCALE_ARCSEC
    )
    assert m["core_flux_z"] == pytest.approx(3 * m["core_flux_g"], rel=1e-5)
    point = np.zeros((3, size, size), np.float32)
    point[:, size // 2, size // 2] = 5.0
    assert measure_lrg(point)["core_flux_r"] == pytest.approx(5.0)
    # magnitudes: ten times the flux is 2.5 mag brighter, at the same concentration and size
    bright = measure_lrg(10 * image)
    assert bright["total_mag_r"] == pytest.approx(m["total_mag_r"] - 2.5, abs=1e-4)
    assert bright["core_mag_r"] == pytest.approx(m["core_mag_r"] - 2.5, abs=1e-4)
    assert bright["concentration_r"] == pytest.approx(m["concentration_r"], rel=1e-5)
    assert 0 < m["concentration_r"] < 1 and bright["half_light_radius_r"] == m["half_light_radius_r"]


def test_every_build_measures_magnitude_concentration_and_size(paired_dir, tmp_path):
    from shortcutgates.data.lrg_properties import ALWAYS_MEASURED

    build(paired_dir, tmp_path / "out")
    rows = read_manifest(tmp_path / "out").frame
    assert rows[list(ALWAYS_MEASURED)].notna().all().all()
    source = read_paired(paired_dir).frame.set_index(["source_path", "source_row"])
    row = rows[rows.label == 1].iloc[0]  # a positive's properties come from its LRG's control
    ctrl = decode_stamp(source.loc[(row["source_path"], row["source_row"]), "ctrl_stamp_npz"])
    assert row["total_mag_r"] == pytest.approx(measure_lrg(ctrl)["total_mag_r"])


def test_matching_on_measured_properties_writes_them(paired_dir, tmp_path):
    summary = build(paired_dir, tmp_path / "out", match=("core_flux_r", "half_light_radius_r"))
    rows = read_manifest(tmp_path / "out").frame
    assert rows[["core_flux_r", "half_light_radius_r"]].notna().all().all()
    source = read_paired(paired_dir).frame.set_index(["source_path", "source_row"])
    row = rows.iloc[0]
    ctrl = decode_stamp(source.loc[(row["source_path"], row["source_row"]), "ctrl_stamp_npz"])
    assert row["core_flux_r"] == pytest.approx(measure_lrg(ctrl)["core_flux_r"])
    assert set(summary.meta["balance"]["after"]) == {"core_flux_r", "half_light_radius_r"}


def test_cli_build(paired_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        cli.main(
            [
                "build",
                "--input",
                str(paired_dir),
                "--out",
                str(out),
                "--mode",
                "unpaired",
                "--seed",
                "2",
                "--positives-per-lrg",
                "all",
                "--match",
                "psfsize_r",
                "--no-progress",
            ]
        )
        == 0
    )
    assert re.search(r"wrote \d+ rows to .*out", capsys.readouterr().out)
    assert json.loads((out / "manifest.json").read_text())["parameters"]["positives_per_lrg"] == "all"
    with pytest.raises(SystemExit):
        cli.main(
            ["build", "--input", str(paired_dir), "--out", str(out), "--mode", "unpaired", "--positives-per-lrg", "0"]
        )
    assert "must be a positive integer or 'all' (got '0')" in capsys.readouterr().err


@settings(max_examples=8)
@given(
    catalogs(max_lrgs=15, max_injections=4, input_splits=None),
    st.integers(1, 4),
    st.sampled_from(["paired", "unpaired"]),
)
def test_built_manifests_keep_the_invariants(tmp_path_factory, cat, n_files, mode):
    directory = tmp_path_factory.mktemp("hyp")
    write_catalog(cat.frame.assign(stamp_npz=b"", ctrl_stamp_npz=b""), directory / "in", n_files=n_files)
    build(directory / "in", directory / "out", mode=mode)
    rows = read_manifest(directory / "out").frame
    testing.check_manifest(rows, paired=mode == "paired")
    testing.check_traceable(rows.drop(columns=["manifest_file", "manifest_row"]), read_paired(directory / "in").frame)
    assert rows["lrg_id"].nunique() == cat.n_lrgs


def test_end_to_end_on_simulated_data(tmp_path):
    from shortcutgates.simulate import simulate_frame

    frame = simulate_frame(10, 5, stamp_size=32, injections_per_lrg=(2, 4))
    write_catalog(frame, tmp_path / "sim", n_files=2)
    for mode in ("paired", "unpaired"):
        summary = build(tmp_path / "sim", tmp_path / mode, mode=mode, match=() if mode == "paired" else ("psfsize_r",))
        rows = read_manifest(tmp_path / mode).frame
        testing.check_manifest(rows, paired=mode == "paired")
        assert summary.meta["split_source"] == "input" and summary.meta["identity"]["n_lrgs"] == 10
        images, failures = load_images(rows)
        assert not failures and images.shape[1:] == (3, 32, 32)
        assert rows.loc[rows["label"] == 0, "theta_e_arcsec"].isna().all()
