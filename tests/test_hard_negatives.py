"""``build --hard-negatives``: constructed rows from paired light (core, shuffle, swap) on a tiny input."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shortcutgates import cli
from shortcutgates.data.build import build_manifest
from shortcutgates.data.codec import decode_stamp
from shortcutgates.gates.perturb import R_CORE_PX, split_core_arc
from shortcutgates.data.hard_negatives import (
    KIND_COLUMN,
    construct,
    parse_kinds,
    parse_mix,
)
from shortcutgates.data.ring_shuffle import ring_shuffle_permutation, shuffle_along_rings
from shortcutgates.data.io import read_paired
from shortcutgates.data.manifest import load_images, read_manifest
from shortcutgates.model.preprocess import ring_index
from shortcutgates.testing import generate_catalog, write_catalog

SIZE = 32  # the test ring sits at r = 6.4 px, outside the 5-px core: both parts of d are non-zero
CONSTRUCTED = ["core", "shuffle", "swap"]


@pytest.fixture(scope="module")
def paired_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("paired_hn")
    cat = generate_catalog(np.random.default_rng(1).integers(1, 4, 48), seed=5, jitter_arcsec=0.1, image_size=SIZE)
    write_catalog(cat.frame.assign(cutout_ok=np.int32(1)), directory / "in", n_files=2)
    return directory / "in"


def build(paired_dir, out, kinds, **kw):
    return build_manifest(
        paired_dir, out, mode="unpaired", seed=2, progress=False, hard_negatives=kinds, shuffle_arcsec=1.0, **kw
    )


@pytest.fixture(scope="module")
def built(paired_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("hn") / "m"
    summary = build(paired_dir, out, "core,shuffle,swap")
    return summary, read_manifest(out).frame


@pytest.fixture(scope="module")
def paired_images(paired_dir):
    """(source_path, source_row) -> (stamp, ctrl) of the paired input."""
    cat = read_paired(paired_dir).frame
    return {
        (p, int(r)): (decode_stamp(s), decode_stamp(c))
        for p, r, s, c in zip(cat["source_path"], cat["source_row"], cat["stamp_npz"], cat["ctrl_stamp_npz"])
    }


def test_every_kind_is_built_into_train_only(built):
    summary, frame = built
    kinds = frame[KIND_COLUMN].to_numpy()
    for kind in CONSTRUCTED:
        assert (kinds == kind).sum() == summary.meta["hard_negatives"]["counts"]["train"][kind] > 0
    assert set(frame.loc[kinds != "plain", "split"]) == {"train"}
    assert summary.meta["parameters"]["hard_negatives"] == CONSTRUCTED
    assert summary.meta["parameters"]["hard_negative_mix"] == {"core": 0.5, "shuffle": 0.5, "swap": 0.5}


def test_held_out_splits_equal_the_plain_build(built, paired_dir, tmp_path):
    build_manifest(paired_dir, tmp_path / "plain", mode="unpaired", seed=2, progress=False)
    plain = read_manifest(tmp_path / "plain").frame
    _, frame = built
    cols = ["split", "label", "lrg_id", "source_path", "source_row", "source_column"]
    for split in ("val", "test", "test_paired"):
        a = plain.loc[plain["split"] == split, cols].reset_index(drop=True)
        b = frame.loc[frame["split"] == split, cols].reset_index(drop=True)
        pd.testing.assert_frame_equal(a.astype(str), b.astype(str))
    train = frame["split"] == "train"
    assert (
        frame.loc[train & (frame[KIND_COLUMN] == "plain"), "lrg_id"].nunique()
        == plain.loc[plain["split"] == "train", "lrg_id"].nunique()
    )


def test_host_lrgs_stay_in_one_class_and_one_split(built):
    from shortcutgates.testing import shared_positive_rows

    _, frame = built
    frame = frame[~shared_positive_rows(frame)]  # test's positives are test_paired's by design
    splits = frame.groupby("lrg_id")["split"].nunique()
    pooled = frame[frame["split"] != "test_paired"]  # test_paired holds pairs by design
    classes = pooled.groupby("lrg_id")["label"].nunique()
    assert (classes == 1).all() and (splits == 1).all()


def test_donors_are_recorded_positives_of_the_same_split(built):
    _, frame = built
    made = frame[frame[KIND_COLUMN] != "plain"]
    pos = frame[(frame[KIND_COLUMN] == "plain") & (frame["label"] == 1)]
    pos_keys = set(
        zip(pos["lrg_id"], pos["source_path"].map(lambda p: Path(p).name), pos["source_row"].astype(int), pos["split"])
    )
    donors = set(
        zip(
            made["donor_lrg_id"],
            made["donor_source_path"].map(lambda p: Path(p).name),
            made["donor_source_row"].astype(int),
            made["split"],
        )
    )
    assert donors <= pos_keys
    swap = made[made[KIND_COLUMN] == "swap"]
    assert (swap["donor_lrg_id"] != swap["lrg_id"]).all()
    assert made["source_path"].isna().all() and made["image_npz"].notna().all()
    plain = frame[frame[KIND_COLUMN] == "plain"]
    assert plain["donor_lrg_id"].isna().all()
    # injection truth: a constructed positive carries its donor's, a constructed negative none
    assert made.loc[made["label"] == 0, "theta_e_arcsec"].isna().all()
    assert made.loc[made["label"] == 1, "theta_e_arcsec"].notna().all()


def test_constructions_are_exact_arithmetic_on_d(built, paired_images, paired_dir):
    _, frame = built
    frame = frame.copy()
    for col in ("host_source_path", "donor_source_path"):  # relative to the input root, like source_path
        frame[col] = [str(paired_dir / p) if isinstance(p, str) else None for p in frame[col]]
    made = frame[frame[KIND_COLUMN] != "plain"].reset_index(drop=True)
    images, _ = load_images(made)
    rings = ring_index(SIZE, SIZE).ravel()
    for i, row in made.iterrows():
        _, host_ctrl = paired_images[(row["host_source_path"], int(row["host_source_row"]))]
        stamp, ctrl = paired_images[(row["donor_source_path"], int(row["donor_source_row"]))]
        d = stamp - ctrl
        core, arc = split_core_arc(d[None], R_CORE_PX)
        kind = row[KIND_COLUMN]
        if kind == "swap":
            assert np.array_equal(images[i], host_ctrl + d)
        elif kind == "core":
            assert np.array_equal(images[i], host_ctrl + core[0])
        else:  # shuffle: the arc's pixel values are permuted within each ring, so every ring keeps its flux
            moved = (images[i] - host_ctrl - core[0]).reshape(3, -1)
            flat = arc[0].reshape(3, -1)
            for ring in np.unique(rings):
                on = rings == ring
                np.testing.assert_allclose(np.sort(moved[:, on], axis=1), np.sort(flat[:, on], axis=1), atol=1e-6)
            assert not np.allclose(moved, flat)


def test_same_seed_same_bytes_other_seed_other_donors(paired_dir, tmp_path):
    a = build(paired_dir, tmp_path / "a", "core,shuffle")
    b = build(paired_dir, tmp_path / "b", "core,shuffle")
    assert a.rows_sha256 == b.rows_sha256
    c = build_manifest(
        paired_dir,
        tmp_path / "c",
        mode="unpaired",
        seed=3,
        progress=False,
        hard_negatives="core,shuffle",
        shuffle_arcsec=1.0,
    )
    assert c.rows_sha256 != a.rows_sha256


def test_same_input_elsewhere_builds_the_same_bytes(paired_dir, tmp_path):
    """Hosts, donors and shuffles are keyed on paths relative to the input root: a copy of the input in
    another directory builds the same rows (the keys once held absolute paths)."""
    import shutil

    moved = shutil.copytree(paired_dir, tmp_path / "elsewhere" / "input")
    a = build(paired_dir, tmp_path / "a", "core,shuffle")
    b = build(moved, tmp_path / "b", "core,shuffle")
    assert a.rows_sha256 == b.rows_sha256


def test_mix_sets_the_number_of_rows(paired_dir, tmp_path):
    s = build(paired_dir, tmp_path / "m", "core", hard_negative_mix="core=1.0")
    n_neg = s.meta["counts"]["train"]["neg"]
    assert s.meta["hard_negatives"]["counts"]["train"]["core"] == n_neg // 2  # one per plain negative LRG
    assert s.meta["parameters"]["hard_negative_mix"] == {"core": 1.0}


def test_val_gets_rows_only_when_asked(paired_dir, tmp_path):
    s = build(paired_dir, tmp_path / "v", "core", hard_negative_splits=("train", "val"))
    assert s.meta["hard_negatives"]["counts"]["val"]["core"] > 0


def test_ring_shuffle_permutes_within_rings_and_moves_pieces():
    rng = np.random.default_rng(0)
    perm = ring_shuffle_permutation(SIZE, SIZE, 4.0, rng)
    rings = ring_index(SIZE, SIZE).ravel()
    assert np.array_equal(np.sort(perm), np.arange(SIZE * SIZE))
    assert np.array_equal(rings[perm], rings)
    assert (perm != np.arange(SIZE * SIZE)).mean() > 0.5
    # a point of light stays a compact piece: its neighbours along the ring move with it
    arc = np.zeros((3, SIZE, SIZE), np.float32)
    arc[:, 16, 24:27] = 1.0
    out = shuffle_along_rings(arc, 4.0, np.random.default_rng(1))
    assert out.sum() == arc.sum() and not np.array_equal(out, arc)


def test_ring_shuffle_draws_the_same_permutations_as_before():
    """The shuffle's permutations are part of the build's bytes: the same as the code of a10b569 (the
    vectorised ring shuffle) for these shapes, piece lengths and seeds (digest computed with that code)."""
    import hashlib

    digest = hashlib.sha256()
    cases = [((64, 64), 1.0), ((64, 64), 3.7), ((64, 64), 4.3), ((65, 65), 2.5), ((101, 96), 8.0), ((33, 40), 40.0)]
    for i, (shape, piece) in enumerate(cases):
        digest.update(ring_shuffle_permutation(*shape, piece, np.random.default_rng(i)).astype("<i8").tobytes())
    assert digest.hexdigest() == "2d003dd60033129052d94db7553b4cf689e774fe5e8c55c4cdc3057b517a49c8"


def test_ring_shuffle_equals_the_code_before_the_layout_cache_over_many_pieces():
    """600 permutations (shapes down to 1 × 1, piece lengths 0.2–60 px) and one shuffled stamp: the digest of
    main ``7cc73c0``'s code (before the band layouts were cached per band structure and the sort became a
    count), computed with that code."""
    import hashlib

    rng = np.random.default_rng(123)
    digest = hashlib.sha256()
    shapes = [(64, 64), (65, 65), (101, 96), (33, 40), (32, 32), (7, 9), (1, 1)]
    for i in range(600):
        piece = float(rng.choice([rng.uniform(0.2, 12), rng.uniform(1, 3), 60.0, 1.0, 2.0, 4.5]))
        digest.update(
            ring_shuffle_permutation(*shapes[i % len(shapes)], piece, np.random.default_rng(i)).astype("<i8").tobytes()
        )
    arc = np.random.default_rng(0).normal(size=(3, 64, 64)).astype(np.float32)
    digest.update(shuffle_along_rings(arc, 4.3, np.random.default_rng(5)).tobytes())
    assert digest.hexdigest() == "a535aacf58054fe1955600c37b7bccbfd5c6710ec3997616a326cc6882ee80d9"


def test_construct_refuses_shuffle_without_scale():
    z = np.zeros((3, 8, 8), np.float32)
    with pytest.raises(ValueError, match="piece_px"):
        construct("shuffle", z, z, z)


@pytest.mark.parametrize("text,match", [("core,bogus", "unknown kind"), ("core,core", "repeated")])
def test_bad_kinds(text, match):
    with pytest.raises(ValueError, match=match):
        parse_kinds(text)


@pytest.mark.parametrize("text,match", [("core", "KIND=FRACTION"), ("core=-1", ">= 0"), ("swp=1", "unknown kind")])
def test_bad_mix(text, match):
    with pytest.raises(ValueError, match=match):
        parse_mix(text)


def test_paired_mode_is_refused(paired_dir, tmp_path):
    with pytest.raises(ValueError, match="needs --mode unpaired"):
        build_manifest(paired_dir, tmp_path / "p", mode="paired", seed=0, progress=False, hard_negatives="core")


def test_shuffle_needs_a_psf_column_or_a_scale(paired_dir, tmp_path):
    with pytest.raises(ValueError, match="psf_fwhm_used_r"):
        build_manifest(paired_dir, tmp_path / "s", mode="unpaired", seed=0, progress=False, hard_negatives="shuffle")


def test_command_line(paired_dir, tmp_path, capsys):
    rc = cli.main(
        [
            "build",
            "--input",
            str(paired_dir),
            "--out",
            str(tmp_path / "cli"),
            "--mode",
            "unpaired",
            "--hard-negatives",
            "core,shuffle",
            "--shuffle-arcsec",
            "1.0",
            "--hard-negative-mix",
            "shuffle=0.25",
            "--no-progress",
        ]
    )
    assert rc == 0
    meta = read_manifest(tmp_path / "cli").meta
    assert meta["parameters"]["hard_negative_mix"] == {"core": 0.5, "shuffle": 0.25}


# --- the core split by lensing (the gates' definition), with its recorded fallback ---------------------
@pytest.fixture(scope="module")
def lensed_paired_dir(tmp_path_factory):
    """Paired input of toy lenses rendered by lensing, with injection truth and per-band PSF; the
    ``lens_e`` of every fourth LRG is missing, so its pair can only be split by radius."""
    from shortcutgates.gates.synthetic import ToySpec, make_rows

    rows = make_rows(ToySpec(n_lrgs=32, paired=True, lensed=True, theta_e_arcsec=(1.5, 2.5), seed=2))
    pos, neg = rows[rows["label"] == 1].set_index("lrg_id"), rows[rows["label"] == 0].set_index("lrg_id")
    paired = pos.drop(columns=["split", "label", "image_npz"]).assign(
        stamp_npz=pos["image_npz"], ctrl_stamp_npz=neg.loc[pos.index, "image_npz"], cutout_ok=np.int32(1)
    )
    paired.iloc[::4, paired.columns.get_loc("lens_e")] = np.nan
    directory = tmp_path_factory.mktemp("paired_lensed") / "in"
    write_catalog(paired.reset_index(drop=True), directory)
    return directory


def test_core_light_is_the_lensing_counter_image_and_the_fallback_is_recorded(lensed_paired_dir, tmp_path):
    from shortcutgates.gates.perturb import PSF_COLUMNS, split_lensed_light

    s = build_manifest(
        lensed_paired_dir,
        tmp_path / "m",
        mode="unpaired",
        seed=2,
        progress=False,
        hard_negatives="core,shuffle",
        hard_negative_mix="core=3,shuffle=1",
        fractions=(0.9, 0.05, 0.05),
    )
    frame = read_manifest(tmp_path / "m").frame
    made = frame[frame[KIND_COLUMN] == "core"].reset_index(drop=True)
    images, _ = load_images(made)
    source = read_paired(lensed_paired_dir).frame.set_index("source_row")
    lensing = radius = 0
    for i, row in made.iterrows():
        donor = source.loc[[int(row["donor_source_row"])]]
        host = source.loc[int(row["host_source_row"])]
        d = decode_stamp(donor["stamp_npz"].iloc[0]) - decode_stamp(donor["ctrl_stamp_npz"].iloc[0])
        if np.isfinite(donor["lens_e"].iloc[0]):
            core = split_lensed_light(d[None], donor, donor[list(PSF_COLUMNS)].to_numpy()).counter[0]
            assert row["core_split"].startswith("lensing")
            lensing += 1
        else:
            core = split_core_arc(d[None], R_CORE_PX)[0][0]
            assert row["core_split"] == "radius 5 px: no injection truth 'lens_e'"
            radius += 1
        np.testing.assert_array_equal(images[i], decode_stamp(host["ctrl_stamp_npz"]) + core)
    assert lensing > 0 and radius > 0
    record = s.meta["hard_negatives"]["core_split"]["rows"]
    assert (
        record["radius 5 px: no injection truth 'lens_e'"]
        == int(frame["core_split"].eq("radius 5 px: no injection truth 'lens_e'").sum())
        > 0
    )
    assert sum(v for k, v in record.items() if k.startswith("lensing")) == int(
        frame["core_split"].str.startswith("lensing").sum()
    )
    assert frame.loc[frame[KIND_COLUMN] == "plain", "core_split"].isna().all()


# --- the same bytes as before the images were batched on threads ---------------------------------------
def _reference_images(frame, the_plan, seed):
    """The images and core-split records as main ``7cc73c0`` built them (its ``hard_negatives._build_chunk``):
    every donor of the plan decoded and split in one batch, the rows composed in donor order on one thread."""
    from shortcutgates.data import hard_negative_images as hi
    from shortcutgates.data.codec import encode_stamp
    from shortcutgates.data.hard_negatives import piece_lengths

    n = len(the_plan.kind)
    pieces = np.full(n, np.nan)
    need = the_plan.kind == "shuffle"
    pieces[need] = piece_lengths(frame.iloc[the_plan.donor[need]], None)
    blobs, method = [None] * n, [None] * n
    todo = np.argsort(the_plan.donor, kind="stable")
    donor_pos, donor_of = np.unique(the_plan.donor[todo], return_inverse=True)
    host_pos, host_of = np.unique(the_plan.host[todo], return_inverse=True)
    donors, hosts = frame.iloc[donor_pos], frame.iloc[host_pos]
    ctrls = hi._decode(pd.concat([donors, hosts]), "ctrl_stamp_npz")
    d = hi._decode(donors, "stamp_npz") - ctrls[: len(donors)]
    host_ctrl = ctrls[len(donors) :]
    kinds = the_plan.kind[todo]
    split_of = np.full(len(donor_pos), -1)
    needs = np.unique(donor_of[kinds != "swap"])
    split_of[needs] = np.arange(len(needs))
    core, arc, how = hi.split_light(d[needs], donors.iloc[needs], hi.donor_psf_fwhm(donors.iloc[needs]))
    host_key, donor_key = hi._row_keys(hosts), hi._row_keys(donors)
    for j, i in enumerate(todo):
        kind, h, s = kinds[j], host_of[j], donor_of[j]
        k = split_of[s]
        rng = hi.row_rng(seed, kind, host_key[h], donor_key[s]) if kind == "shuffle" else None
        img = hi.compose(
            kind, host_ctrl[h], d[s], core[k] if k >= 0 else None, arc[k] if k >= 0 else None, pieces[i], rng
        )
        blobs[i] = encode_stamp(img, compress=False)
        method[i] = how[k] if k >= 0 else None
    return blobs, method


@pytest.mark.parametrize("batch,reuse", [(1, True), (5, False)])
def test_batched_threaded_images_are_the_reference_bytes(lensed_paired_dir, monkeypatch, batch, reuse):
    """Donors split in batches of ``batch`` on 2 threads, with (``reuse``) or without the controls the build
    decoded to measure its LRGs, give the bytes of the code before (all donors in one batch, one thread,
    every control decoded): by lensing, by the radius fallback, and the swap's whole ``d``."""
    from shortcutgates import parallel
    from shortcutgates.data import build as build_module, hard_negative_images as hi
    from shortcutgates.data.hard_negatives import plan

    params = build_module.split_params("unpaired", 2, (), 1, (0.9, 0.05, 0.05), 5, False)
    read = build_module._read_and_assign(
        lensed_paired_dir, params, 0.5, False, build_module._Steps(False), keep_controls=reuse
    )
    frame = read.result.frame
    the_plan = plan(frame, ("core", "shuffle", "swap"), {"core": 3, "shuffle": 2, "swap": 1}, 2)
    monkeypatch.setattr(hi, "SPLIT_BATCH", batch)
    monkeypatch.setattr(parallel, "THREADS", 2)
    blobs, method = hi.constructed_images(frame, the_plan, 2, controls=read.controls)
    ref_blobs, ref_method = _reference_images(frame, the_plan, 2)
    assert set(the_plan.kind) == {"core", "shuffle", "swap"}
    assert {str(m).split(":")[0] for m in method} >= {"lensing", "radius 5 px"}
    if reuse:  # every host's control is one the build measured
        hosts = frame.iloc[np.unique(the_plan.host)]
        assert set(zip(hosts["source_path"], hosts["source_row"])) <= set(read.controls)
    assert list(method) == ref_method
    assert blobs == ref_blobs
