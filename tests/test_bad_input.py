"""Broken blobs and manifests give one clear error naming file, row and column.

Every message is asserted. The command line is driven through :func:`shortcutgates.cli.main`
(in-process, fast) and, once, through a subprocess running the gate suite, where bad rows must
make ``data_integrity`` fail and list them.
"""

from __future__ import annotations

import gzip
import io
import zipfile

import numpy as np
import pandas as pd
import pytest

from hostile_inputs import (
    STAMP,
    assert_no_traceback,
    bad_blobs,
    hand_manifest,
    run_cli,
    run_cli_subprocess,
    stamp,
    write_manifest,
)
from shortcutgates.data.codec import MAX_BLOB_BYTES, decode_stamp, encode_stamp
from shortcutgates.data.manifest import load_images, read_manifest
from shortcutgates.data.schema import NPZ_KEYS, DataError
from toy_manifests import TINY_TRAIN_ARGS

BLOBS = bad_blobs("/nonexistent/never-created")


# --- blobs -------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", sorted(BLOBS))
def test_bad_blob_is_a_dataerror_with_its_reason(case, tmp_path):
    blob, fragment = BLOBS[case]
    if case == "pickled_object":  # the real marker: proves nothing was unpickled
        from hostile_inputs import pickled_object_npz

        blob = pickled_object_npz(tmp_path / "MARKER")
    with pytest.raises(DataError) as err:
        decode_stamp(blob)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "MARKER").exists()


def test_bad_blob_in_a_manifest_is_located_by_file_row_and_column(tmp_path):
    frame = hand_manifest(12)
    frame.loc[7, "image_npz"] = BLOBS["nan"][0]
    file = write_manifest(frame, tmp_path / "m")
    rows = read_manifest(tmp_path / "m").frame
    with pytest.raises(DataError) as err:
        load_images(rows)
    assert str(err.value) == f"{file}: row 7, column 'image_npz': image_r contains NaN or Inf"
    images, failures = load_images(rows, skip_bad=True)
    assert images.shape == (11, 3, STAMP, STAMP)
    assert [f.index for f in failures] == [7]


def test_zip_bomb_is_refused_before_inflating():
    """A few kB that would inflate to 8 GB: refused from the declared sizes, nothing allocated."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (32768, 32768)})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for key in NPZ_KEYS:
            zf.writestr(key + ".npy", header.getvalue())  # a header that claims 8 GiB, no data
    with pytest.raises(
        DataError,
        match=r"'image_g' declares shape \(32768, 32768\) \(8589934592 bytes\), "
        r"more than a stamp may hold; refused",
    ):
        decode_stamp(buf.getvalue())


def test_gzip_bomb_is_refused_with_bounded_inflation():
    bomb = gzip.compress(b"\0" * (MAX_BLOB_BYTES + 10), compresslevel=9, mtime=0)
    assert len(bomb) < MAX_BLOB_BYTES // 100
    with pytest.raises(DataError, match=f"gzip-wrapped blob inflates to more than {MAX_BLOB_BYTES} bytes; refused"):
        decode_stamp(bomb)


def test_members_declaring_too_much_are_refused():
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("junk.bin", b"\0" * (MAX_BLOB_BYTES + 1))
    with pytest.raises(DataError, match=r"npz members declare \d+ bytes uncompressed, more than"):
        decode_stamp(raw.getvalue())


def test_all_zero_stamp_decodes_but_its_row_is_named_by_the_integrity_check(tmp_path):
    """The survey's failed cutouts are all-zero: a valid blob, but not an image (docs/design.md#gates)."""
    from shortcutgates.gates.sample import normalisable

    assert decode_stamp(encode_stamp(np.zeros((3, STAMP, STAMP)))).sum() == 0
    assert not normalisable(np.zeros((1, 3, STAMP, STAMP), np.float32))[0]


# --- manifests ---------------------------------------------------------------------------------
def _edit(changes: dict):
    def make(frame):
        for (row, col), value in changes.items():
            frame.loc[row, col] = value
        return frame

    return make


def _retype(col, fn):
    def make(frame):
        frame[col] = fn(frame[col])
        return frame

    return make


MANIFEST_CASES = {
    "label_2": (_edit({(5, "label"): 2}), "row 5, column 'label': label must be 0 or 1 (got 2)"),
    "label_half": (
        lambda f: _edit({(2, "label"): 0.5})(f.astype({"label": float})),
        "row 2, column 'label': label must be 0 or 1 (got 0.5)",
    ),
    "label_nan": (
        lambda f: _edit({(2, "label"): np.nan})(f.astype({"label": float})),
        "row 2, column 'label': label must be 0 or 1 (got nan)",
    ),
    "label_string": (
        _retype("label", lambda c: c.astype(str)),
        "column 'label': must be an integer 0 or 1 (got Arrow type",
    ),
    "ra_string": (_retype("ra", lambda c: c.astype(str)), "column 'ra': must be a number (deg) (got Arrow type"),
    "image_string": (
        _retype("image_npz", lambda c: c.map(bytes.hex)),
        "column 'image_npz': must be binary (npz bytes) (got Arrow type",
    ),
    "dec_outside": (
        _edit({(7, "dec"): 95.0}),
        "row 7, column 'dec': dec must be a finite number in [-90, 90] deg (got 95.0)",
    ),
    "ra_negative": (
        _edit({(3, "ra"): -1.0}),
        "row 3, column 'ra': ra must be a finite number in [0, 360] deg (got -1.0)",
    ),
    "ra_inf": (_edit({(4, "ra"): np.inf}), "row 4, column 'ra': ra must be a finite number in [0, 360] deg (got inf)"),
    "split_missing": (
        _edit({(4, "split"): None}),
        "row 4, column 'split': split is missing (expected one of train, val, test, test_paired)",
    ),
    "split_typo": (
        _edit({(4, "split"): "trian"}),
        "row 4, column 'split': unknown split 'trian' (expected one of train, val, test, test_paired)",
    ),
    "no_label_column": (lambda f: f.drop(columns=["label"]), "manifest file lacks column(s) label (file has "),
    "no_image_nor_pointer": (
        lambda f: f.drop(columns=["image_npz"]),
        "lacks column(s) image_npz (or source_path, source_row, source_column)",
    ),
    "null_image": (
        _edit({(6, "image_npz"): None}),
        "row 6, column 'image_npz': row has neither an image_npz blob nor a complete pointer",
    ),
    "duplicate_positive": (
        lambda f: pd.concat([f, f.iloc[[3]]], ignore_index=True),
        "row 3, column 'image_npz': the same image is listed as two positives: duplicate of ",
    ),
    "image_under_both_labels": (
        lambda f: pd.concat([f, f.iloc[[3]].assign(label=np.int8(0))], ignore_index=True),
        "row 3, column 'image_npz': the same image is listed under both labels",
    ),
    "no_rows": (lambda f: f.iloc[:0], "manifest has no rows"),
}


@pytest.mark.parametrize("case", sorted(MANIFEST_CASES))
def test_bad_manifest_is_one_located_dataerror(case, tmp_path):
    make, fragment = MANIFEST_CASES[case]
    file = write_manifest(make(hand_manifest(12)), tmp_path / "m")
    with pytest.raises(DataError) as err:
        read_manifest(tmp_path / "m")
    msg = str(err.value)
    assert fragment in msg
    assert msg.startswith(str(tmp_path / "m") if case == "no_rows" else str(file))
    assert "\n" not in msg


def test_identical_negatives_are_allowed():
    """Paired data: an LRG with k injections carries k identical controls (not an error)."""
    frame = hand_manifest(12)
    neg = frame[frame["label"] == 0].iloc[[0, 0, 0]]
    frame = pd.concat([frame, neg], ignore_index=True)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        write_manifest(frame, d)
        assert len(read_manifest(d).frame) == 15


FILE_CASES = {
    "empty_file": (
        lambda d: (d.mkdir(), (d / "a.parquet").write_bytes(b"")),
        "a.parquet: not a readable parquet file (Parquet file size is 0 bytes)",
    ),
    "truncated_file": (
        lambda d: (
            write_manifest(hand_manifest(12), d),
            (d / "part-0000.parquet").write_bytes((d / "part-0000.parquet").read_bytes()[:2000]),
        ),
        "part-0000.parquet: not a readable parquet file (Parquet magic bytes not found",
    ),
    "not_parquet": (
        lambda d: (d.mkdir(), (d / "a.parquet").write_text("label,split\n1,train\n")),
        "a.parquet: not a readable parquet file (",
    ),
    "no_parquet": (lambda d: (d.mkdir(), (d / "notes.txt").write_text("x")), "m: directory holds no *.parquet file"),
    "missing": (lambda d: None, "m: no such file or directory"),
    "manifest_json_broken": (
        lambda d: (write_manifest(hand_manifest(12), d), (d / "manifest.json").write_text("{")),
        "manifest.json: manifest.json is not valid JSON (",
    ),
    "manifest_json_list": (
        lambda d: (write_manifest(hand_manifest(12), d), (d / "manifest.json").write_text("[1]")),
        "manifest.json: manifest.json must hold a JSON object (got list)",
    ),
    "second_file_mistyped": (
        lambda d: (
            write_manifest(hand_manifest(12), d, "a.parquet"),
            write_manifest(hand_manifest(12, seed=1).assign(ra="150"), d, "b.parquet"),
        ),
        "b.parquet: column 'ra': must be a number (deg)",
    ),
}


@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_bad_manifest_files_are_named(case, tmp_path):
    make, fragment = FILE_CASES[case]
    make(tmp_path / "m")
    with pytest.raises(DataError) as err:
        read_manifest(tmp_path / "m")
    assert fragment in str(err.value) and str(err.value).startswith(str(tmp_path / "m"))


def test_mixed_inline_and_pointer_rows_load_in_order(tmp_path):
    frame = hand_manifest(8)
    source = pd.DataFrame({"stamp_npz": frame["image_npz"]})
    write_manifest(source, tmp_path / "src", "s.parquet")
    frame["source_path"] = str(tmp_path / "src" / "s.parquet")
    frame["source_row"] = np.arange(8)
    frame["source_column"] = "stamp_npz"
    expected = np.stack([decode_stamp(b) for b in frame["image_npz"]])
    frame.loc[[1, 4, 5], "image_npz"] = None
    write_manifest(frame, tmp_path / "m")
    images, failures = load_images(read_manifest(tmp_path / "m").frame)
    assert failures == [] and np.array_equal(images, expected)


# --- the command line: one line, non-zero exit, no traceback -------------------------------------
TRAIN = [*TINY_TRAIN_ARGS, "--epochs", "1"]


@pytest.mark.parametrize("case", ["label_2", "split_typo", "duplicate_positive", "no_rows", "ra_string"])
def test_train_cli_reports_bad_manifest_in_one_line(case, tmp_path, capsys):
    make, fragment = MANIFEST_CASES[case]
    write_manifest(make(hand_manifest(12)), tmp_path / "m")
    rc, out, err = run_cli(["train", "--data", tmp_path / "m", "--out", tmp_path / "c.pt", *TRAIN], capsys)
    assert rc == 2
    assert err.startswith(f"shortcutgates train: error: {tmp_path / 'm'}") and fragment in err
    assert err.count("\n") == 1 and not (tmp_path / "c.pt").exists()
    assert_no_traceback(out + err)


@pytest.mark.parametrize(
    "row,blob,problem",
    [
        (2, b"PK\x03\x04 truncated", "blob is not a readable npz archive (BadZipFile: File is not a zip file)"),
        (
            6,
            encode_stamp(np.zeros((3, STAMP, STAMP))),
            "outer-annulus MAD is 0 (constant or all-zero stamp; it cannot be normalised)",
        ),
    ],
    ids=["broken_blob", "all_zero_stamp"],
)
def test_train_cli_names_the_bad_row(tmp_path, capsys, row, blob, problem):
    frame = hand_manifest(12)
    frame.loc[row, "image_npz"] = blob
    file = write_manifest(frame, tmp_path / "m")
    rc, _, err = run_cli(["train", "--data", tmp_path / "m", "--out", tmp_path / "c.pt", *TRAIN], capsys)
    assert rc == 2
    assert err == f"shortcutgates train: error: {file}: row {row}, column 'image_npz': {problem}\n"


def test_train_cli_refuses_a_split_with_one_class(tmp_path, capsys):
    frame = hand_manifest(12)
    frame.loc[frame["split"] == "val", "label"] = 1
    frame = frame.drop_duplicates("image_npz")
    write_manifest(frame, tmp_path / "m")
    rc, _, err = run_cli(["train", "--data", tmp_path / "m", "--out", tmp_path / "c.pt", *TRAIN], capsys)
    assert rc == 2
    assert "split 'val' needs rows of both classes (has {1: 4})" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (
            ["build", "--input", "{tmp}/nowhere", "--out", "{tmp}/o", "--mode", "paired"],
            "{tmp}/nowhere: no such file or directory",
        ),
        (
            ["build", "--input", "{tmp}/empty", "--out", "{tmp}/o", "--mode", "paired"],
            "{tmp}/empty: directory holds no *.parquet file",
        ),
        (["train", "--data", "{tmp}/empty", "--out", "{tmp}/c.pt"], "{tmp}/empty: directory holds no *.parquet file"),
        (["train", "--data", "{tmp}/m", "--out", "{tmp}"], "{tmp}: is a directory, expected a file path"),
    ],
)
def test_cli_errors_are_one_line(argv, fragment, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    write_manifest(hand_manifest(12), tmp_path / "m")
    argv = [a.format(tmp=tmp_path) for a in argv] + (TRAIN if argv[0] == "train" else ["--no-progress"])
    rc, out, err = run_cli(argv, capsys)
    assert rc == 2
    assert fragment.format(tmp=tmp_path) in err and err.count("\n") == 1
    assert err.startswith(f"shortcutgates {argv[0]}: error: ")
    assert_no_traceback(out + err)


def test_unexpected_errors_are_one_line_with_a_debug_hint(monkeypatch, capsys):
    import shortcutgates.data.build as build

    def boom(args):
        raise KeyError("oops")

    monkeypatch.setattr(build, "run", boom)
    rc, _, err = run_cli(["build", "--input", "x", "--out", "y", "--mode", "paired"], capsys)
    assert rc == 3
    assert err == (
        "shortcutgates build: error: internal error (KeyError: 'oops'); rerun with "
        "SHORTCUTGATES_DEBUG=1 for the traceback and please report it\n"
    )
    monkeypatch.setenv("SHORTCUTGATES_DEBUG", "1")
    with pytest.raises(KeyError):
        run_cli(["build", "--input", "x", "--out", "y", "--mode", "paired"], capsys)


BAD_ROWS = (
    (3, "column 'image_npz': npz lacks image_r"),
    (8, "a band has zero outer-annulus MAD"),
    (11, f"column 'image_npz': stamp shape ({STAMP + 8}, {STAMP + 8}) differs"),
    (15, "column 'image_npz': npz holds an array that needs unpickling"),
)


@pytest.fixture(scope="module")
def integrity_run(tmp_path_factory):
    """The gate suite (``-k data_integrity``) on a manifest with four kinds of bad row."""
    import json

    tmp = tmp_path_factory.mktemp("integrity")
    frame = hand_manifest(24)
    frame.loc[3, "image_npz"] = BLOBS["missing_band"][0]
    frame.loc[8, "image_npz"] = encode_stamp(np.zeros((3, STAMP, STAMP)))
    frame.loc[11, "image_npz"] = encode_stamp(stamp(np.random.default_rng(5), size=STAMP + 8))
    frame.loc[15, "image_npz"] = BLOBS["pickled_object"][0]
    file = write_manifest(frame, tmp / "m")
    proc = run_cli_subprocess(
        ["gate", "--data", tmp / "m", "--gate-report", tmp / "r.json", "--", "-q", "-k", "data_integrity"], cwd=tmp
    )
    report = json.loads((tmp / "r.json").read_text()) if (tmp / "r.json").exists() else None
    return proc, file, report


def test_gate_suite_fails_data_integrity_on_bad_rows(integrity_run):
    """Bad rows do not stop the suite: ``data_integrity`` fails, counts them and names them."""
    proc, file, report = integrity_run
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text
    assert "data_integrity: FAIL: bad rows 4; required ≤ 0; " in text
    gate = next(g for g in report["gates"] if g["gate"] == "data_integrity")
    assert gate["verdict"] == "fail" and gate["value"] == 4
    shown = [
        row
        for row, why in BAD_ROWS
        if f"{file}: row {row}, {why}" in gate["message"] or f"{file}: row {row}: {why}" in gate["message"]
    ]
    assert len(shown) >= 3, gate["message"]
    assert_no_traceback(text)


def test_gate_report_lists_every_bad_row(integrity_run):
    _, file, report = integrity_run
    gate = next(g for g in report["gates"] if g["gate"] == "data_integrity")
    rows = ", ".join(str(row) for row, _ in BAD_ROWS)
    assert gate["message"].endswith(f"… 1 more; bad rows: {file}: rows {rows}"), gate["message"]


# --- paired input of `build` -------------------------------------------------------------------
def _paired_catalog():
    from shortcutgates.testing import generate_catalog

    return generate_catalog([2, 3, 2, 2, 3, 2, 2, 2, 2, 2, 3, 2], seed=1, image_size=16, input_splits=True).frame


PAIRED_CASES = {
    "ra_string": (
        _retype("ra", lambda c: c.astype(str)),
        "p.parquet: column 'ra': must be a number (deg) (got Arrow type",
    ),
    "ra_nan": (
        _edit({(2, "ra"): np.nan}),
        "p.parquet: row 2, column 'ra': ra must be a finite number in [0, 360] deg (got nan)",
    ),
    "dec_outside": (
        _edit({(5, "dec"): 100.0}),
        "p.parquet: row 5, column 'dec': dec must be a finite number in [-90, 90] deg (got 100.0)",
    ),
    "no_ctrl": (lambda f: f.drop(columns=["ctrl_stamp_npz"]), "p.parquet: missing column(s) ctrl_stamp_npz"),
    "stamp_string": (
        _retype("stamp_npz", lambda c: c.map(bytes.hex)),
        "p.parquet: column 'stamp_npz': must be binary (npz bytes) (got Arrow type",
    ),
    "cutout_string": (lambda f: f.assign(cutout_ok="yes"), "p.parquet: column 'cutout_ok': must be an integer 0 or 1"),
    "bad_region": (lambda f: f.assign(region_split="bogus"), "p.parquet: row 0, column 'split': unknown split 'bogus'"),
    "no_rows": (lambda f: f.iloc[:0], "in: paired catalogue has no rows (0 excluded by cutout_ok == 0)"),
    "all_failed_cutouts": (
        lambda f: f.assign(cutout_ok=np.int32(0)),
        "in: paired catalogue has no rows (27 excluded by cutout_ok == 0)",
    ),
}


@pytest.mark.parametrize("case", sorted(PAIRED_CASES))
def test_build_cli_reports_bad_paired_input_in_one_line(case, tmp_path, capsys):
    make, fragment = PAIRED_CASES[case]
    write_manifest(make(_paired_catalog()), tmp_path / "in", "p.parquet")
    rc, out, err = run_cli(
        ["build", "--input", tmp_path / "in", "--out", tmp_path / "out", "--mode", "paired", "--no-progress"], capsys
    )
    assert rc == 2, err
    assert err.startswith(f"shortcutgates build: error: {tmp_path / 'in'}") and fragment in err, err
    assert err.count("\n") == 1 and not (tmp_path / "out").exists()
    assert_no_traceback(out + err)


def test_train_refuses_an_out_directory_before_reading_data(tmp_path, capsys):
    (tmp_path / "c.pt").mkdir()
    rc, _, err = run_cli(["train", "--data", tmp_path / "nowhere", "--out", tmp_path / "c.pt", *TRAIN], capsys)
    assert rc == 2
    assert err == f"shortcutgates train: error: {tmp_path / 'c.pt'}: is a directory, expected a file path\n"


def test_built_manifest_is_readable_like_any_directory(tmp_path):
    import os
    import stat

    from shortcutgates.data.build import build_manifest

    write_manifest(_paired_catalog(), tmp_path / "in", "p.parquet")
    build_manifest(tmp_path / "in", tmp_path / "out", mode="paired", seed=0, progress=False)
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE((tmp_path / "out" / "manifest.parquet").stat().st_mode) == 0o666 & ~mask


def test_gate_cli_reports_an_unreadable_manifest_in_one_line(tmp_path):
    make, fragment = MANIFEST_CASES["label_2"]
    file = write_manifest(make(hand_manifest(12)), tmp_path / "m")
    proc = run_cli_subprocess(["gate", "--data", tmp_path / "m", "--", "-q"], cwd=tmp_path)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text  # bad input (README's exit codes; pytest's own usage error is 4)
    assert f"ERROR: shortcutgates: {file}: {fragment}" in text
    assert_no_traceback(text)


# --- streaming: blobs stay on disk ---------------------------------------------------------------
def test_manifest_read_without_blobs_loads_the_same_images(tmp_path):
    """``blobs=False`` keeps ``image_npz`` on disk; images come by manifest file and row, errors alike."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = hand_manifest(40)
    frame.loc[9, "image_npz"] = b"junk"
    (tmp_path / "m").mkdir()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "m" / "p.parquet", row_group_size=7)
    full, lean = read_manifest(tmp_path / "m"), read_manifest(tmp_path / "m", blobs=False)
    assert "image_npz" not in lean.frame and "_image_digest" not in lean.frame
    a, fa = load_images(full.frame, skip_bad=True)
    b, fb = load_images(lean.frame, skip_bad=True)
    assert np.array_equal(a, b) and [str(f.error) for f in fa] == [str(f.error) for f in fb]
    assert str(fb[0].error).startswith(f"{tmp_path / 'm' / 'p.parquet'}: row 9, column 'image_npz': blob is not")
    part, _ = load_images(lean.frame.iloc[[3, 20, 39]])  # rows from three row groups
    assert np.array_equal(part, a[[3, 19, 38]])


def test_manifest_read_without_blobs_still_refuses_duplicates_and_missing_images(tmp_path):
    frame = hand_manifest(12)
    write_manifest(pd.concat([frame, frame.iloc[[5]]], ignore_index=True), tmp_path / "dup")
    with pytest.raises(DataError, match="row 5, column 'image_npz': the same image is listed as two positives"):
        read_manifest(tmp_path / "dup", blobs=False)
    frame.loc[2, "image_npz"] = None
    write_manifest(frame, tmp_path / "null")
    with pytest.raises(DataError, match="row 2, column 'image_npz': row has neither an image_npz blob nor"):
        read_manifest(tmp_path / "null", blobs=False)


def test_pointer_rows_outside_the_source_are_named(tmp_path):
    from shortcutgates.data.blob_rows import read_rows

    write_manifest(pd.DataFrame({"stamp_npz": [b"a", b"b"]}), tmp_path, "s.parquet")
    with pytest.raises(
        DataError, match=r"s.parquet: row 5, column 'stamp_npz': pointer row is outside the file's 2 rows"
    ):
        read_rows(tmp_path / "s.parquet", "stamp_npz", [0, 5])
    with pytest.raises(DataError, match=r"s.parquet: column 'ctrl_stamp_npz': pointed-to column is not in the file"):
        read_rows(tmp_path / "s.parquet", "ctrl_stamp_npz", [0])
    with pytest.raises(
        DataError, match="gone.parquet: column 'stamp_npz': source file of a manifest pointer is missing"
    ):
        read_rows(tmp_path / "gone.parquet", "stamp_npz", [0])
    assert read_rows(tmp_path / "s.parquet", "stamp_npz", [1, 0, 1]) == [b"b", b"a", b"b"]


def test_gates_of_a_one_class_split_are_errors_never_passes(tmp_path):
    """A split with one class cannot be measured: every probe of it is an ``error`` with the reason."""
    from shortcutgates.gates.registry import GateConfig, GateContext, gate_cases, run_case

    frame = hand_manifest(24)
    frame.loc[frame["split"] == "val", "label"] = 1
    write_manifest(frame, tmp_path / "m")
    ctx = GateContext(tmp_path / "m", config=GateConfig(n_boot=500))
    results = {
        c.id: run_case(ctx, c)
        for c in gate_cases(ctx)
        if c.split == "val" and "model" not in c.needs and c.gate != "lrg_leakage"
    }
    assert len(results) >= 5
    for case_id, result in results.items():
        assert result.verdict == "error", (case_id, result.message)
    assert (
        "probe needs both classes; the sample has only label(s) [1] (8 rows)"
        in results["core_lr_auc[val-box10-raw_robust]"].message
    )
    assert "has no finite value for label 0 in split 'val'" in results["property_balance[val-psfsize_r]"].message


def test_paired_input_given_as_a_manifest_says_to_build_first(tmp_path):
    from shortcutgates.simulate import simulate_paired

    simulate_paired(tmp_path / "sim", 2, 0, stamp_size=32, injections_per_lrg=(1, 1), progress=False)
    with pytest.raises(
        DataError,
        match=r"part-00000\.parquet: this is paired input \(stamp_npz, ctrl_stamp_npz\), "
        r"not a manifest; run `shortcutgates build --input PAIRED_DIR",
    ):
        read_manifest(tmp_path / "sim")
