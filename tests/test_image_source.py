"""One image source per manifest row, and manifests that travel (issue 23, items 1-2).

``train``, the gates and ``data_integrity`` read each row's image from the same place (its inline
blob when present, else its pointer); a built manifest's pointers are relative to the paired input's
root, recorded in ``manifest.json`` with each source file's sha256, so a manifest copied with its
sources gates identically, and a missing or changed source is one usage error.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shortcutgates import cli
from shortcutgates.data.build import MANIFEST_PARQUET, build_manifest
from shortcutgates.gates.registry import GateCase, GateConfig, GateContext, gate_cases, run_case
from shortcutgates.data.manifest import image_source, load_images, read_manifest, read_order
from shortcutgates.data.schema import DataError
from shortcutgates.testing import write_catalog

from toy_manifests import write_pointer_manifest, write_toy_manifest

REPO = Path(__file__).resolve().parents[1]
CFG = GateConfig(n_boot=500, max_samples=400)
NOT_A_BLOB = b"PK\x03\x04 this is not an npz archive"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Simulated paired input (12 LRGs, 32 px, two files) and a pointer and an inline manifest of it, side by side."""
    from shortcutgates.simulate import simulate_frame

    base = tmp_path_factory.mktemp("project")
    write_catalog(simulate_frame(12, 3, stamp_size=32, injections_per_lrg=(2, 3)), base / "paired", n_files=2)
    for name, inline in (("manifest", False), ("inline", True)):
        build_manifest(base / "paired", base / name, mode="paired", seed=0, inline=inline, progress=False)
    return base


def _replace_cell(file: Path, column: str, row: int, value: bytes) -> None:
    table = pq.read_table(file)
    cells = table.column(column).to_pylist()
    cells[row] = value
    table = table.set_column(
        table.schema.get_field_index(column), column, pa.array(cells, table.schema.field(column).type)
    )
    pq.write_table(table, file)


def _train_row_of(frame) -> int:
    return int(frame.index[frame["split"] == "train"][1])


def _train_error(manifest: Path, tmp_path: Path, capsys) -> str:
    code = cli.main(
        [
            "train",
            "--data",
            str(manifest),
            "--out",
            str(tmp_path / "e.pt"),
            "--epochs",
            "1",
            "--no-progress",
            "--threads",
            "1",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    return err


def test_an_inline_manifest_reads_its_own_blobs_not_the_pointers(built):
    rows = read_manifest(built / "inline", blobs=False).frame
    assert (image_source(rows) == "stored").all()  # blobs left on disk, never the pointers beside them
    assert (image_source(read_manifest(built / "inline").frame) == "inline").all()
    assert (image_source(read_manifest(built / "manifest").frame) == "pointer").all()


@pytest.mark.parametrize("kind", ["inline", "pointer"])
def test_a_corrupted_image_is_the_same_row_for_integrity_loading_and_train(built, tmp_path, capsys, kind):
    if kind == "inline":  # a build --inline manifest: its own image_npz cell, pointers intact beside it
        manifest = Path(shutil.copytree(built / "inline", tmp_path / "inline"))
        frame = read_manifest(manifest).frame
        i = _train_row_of(frame)
        file, row, column = manifest / MANIFEST_PARQUET, i, "image_npz"
    else:  # a hand-written pointer manifest (no recorded sha256): the pointed-to cell
        manifest = write_pointer_manifest(tmp_path / "ptr", tmp_path / "src", n=16)
        frame = read_manifest(manifest).frame
        i = _train_row_of(frame)
        file, row, column = Path(frame["source_path"].iloc[i]), int(frame["source_row"].iloc[i]), "stamp_npz"
    _replace_cell(file, column, row, NOT_A_BLOB)
    where = f"{file}: row {row}, column '{column}'"

    integrity = run_case(GateContext(manifest, config=CFG), GateCase("data_integrity"))
    assert integrity.verdict == "fail" and where in integrity.message
    with pytest.raises(DataError) as loading:
        load_images(read_manifest(manifest).frame)
    assert str(loading.value).startswith(where)
    assert where in _train_error(manifest, tmp_path, capsys)


def _records(context: GateContext) -> list[tuple]:
    chosen = [c for c in gate_cases(context) if c.gate in ("data_integrity", "lrg_leakage", "core_lr_auc")]
    return [(c.id, r.verdict, r.value, r.ci) for c in chosen for r in [run_case(context, c)]]


def test_a_manifest_copied_with_its_sources_gates_identically(built, tmp_path):
    before = _records(GateContext(built / "manifest", config=CFG))
    moved = tmp_path / "elsewhere" / "checkout"
    shutil.copytree(built, moved)
    shutil.move(str(built / "paired"), str(tmp_path / "gone"))  # the original sources are no longer there
    try:
        frame = GateContext(moved / "manifest", config=CFG).frame
        assert frame["source_path"].str.startswith(str(moved / "paired")).all()
        assert _records(GateContext(moved / "manifest", config=CFG)) == before
        assert len(before) >= 5 and any(r[1] == "pass" for r in before)
    finally:
        shutil.move(str(tmp_path / "gone"), str(built / "paired"))


def test_data_root_overrides_the_recorded_source_root(built, tmp_path):
    manifest = Path(shutil.copytree(built / "manifest", tmp_path / "m"))  # sources not beside it
    with pytest.raises(DataError, match="source file of a manifest pointer is missing.*--data-root DIR"):
        read_manifest(manifest)
    shutil.copytree(built / "paired", tmp_path / "mounted" / "paired-v1")
    frame = read_manifest(manifest, data_root=tmp_path / "mounted" / "paired-v1").frame
    assert not load_images(frame)[1]


def test_a_changed_source_file_is_refused_in_one_line(built, tmp_path):
    copy = Path(shutil.copytree(built, tmp_path / "copy"))
    source = sorted((copy / "paired").glob("*.parquet"))[0]
    _replace_cell(source, "stamp_npz", 0, pq.read_table(source).column("stamp_npz")[1].as_py())
    with pytest.raises(DataError, match="changed since the manifest was built") as err:
        read_manifest(copy / "manifest")
    assert str(err.value).startswith(str(source)) and "\n" not in str(err.value)
    assert not read_manifest(copy / "inline").frame.empty  # inline rows need no source file


def test_manifest_json_records_a_relative_root_and_each_sources_sha256(built):
    meta = json.loads((built / "manifest" / "manifest.json").read_text())
    assert meta["input"]["root"] == "../paired"
    assert [f["path"] for f in meta["input"]["files"]] == ["part-0000.parquet", "part-0001.parquet"]
    assert all(len(f["sha256"]) == 64 for f in meta["input"]["files"])
    stored = pq.read_table(built / "manifest" / MANIFEST_PARQUET, columns=["source_path"]).column(0).to_pylist()
    assert set(stored) == {"part-0000.parquet", "part-0001.parquet"}


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_missing_sources_are_one_usage_error_for_gate_and_pytest(built, tmp_path):
    manifest = Path(shutil.copytree(built / "manifest", tmp_path / "m"))
    gate = _run(["-m", "shortcutgates.cli", "gate", "--data", str(manifest), "--no-strict"], tmp_path)
    assert gate.returncode == 2, gate.stderr + gate.stdout
    assert "source file of a manifest pointer is missing" in gate.stderr + gate.stdout
    assert "--data-root" in gate.stderr + gate.stdout and "gate_suite.py::test_gate" not in gate.stdout
    suite = _run(
        ["-m", "pytest", "-p", "no:cacheprovider", "--pyargs", "shortcutgates.gate_tests", "--data", str(manifest)],
        tmp_path,
    )
    errors = [line for line in (suite.stdout + suite.stderr).splitlines() if "source file" in line]
    assert suite.returncode == 4 and len(errors) == 1, suite.stdout + suite.stderr


def test_hand_written_relative_pointers_are_taken_from_the_manifest_directory(tmp_path):
    manifest = write_pointer_manifest(tmp_path / "a" / "m", tmp_path / "a" / "src", n=8)
    table = pq.read_table(manifest / "part-0.parquet")
    table = table.set_column(
        table.schema.get_field_index("source_path"), "source_path", pa.array(["../src/src.parquet"] * table.num_rows)
    )
    pq.write_table(table, manifest / "part-0.parquet")
    moved = Path(shutil.move(str(tmp_path / "a"), str(tmp_path / "b"))) / "m"
    images, failures = load_images(read_manifest(moved).frame)
    assert not failures and images.shape == (8, 3, 16, 16)
    inline = write_toy_manifest(tmp_path / "inline", n=8)
    assert (image_source(read_manifest(inline).frame) == "inline").all()


def test_a_built_manifests_parquet_file_read_on_its_own_finds_its_sources(built):
    frame = read_manifest(built / "manifest" / MANIFEST_PARQUET).frame
    assert frame["source_path"].str.startswith(str((built / "paired").resolve())).all()
    assert not load_images(frame.iloc[:5])[1]


def test_rows_are_read_in_their_blobs_on_disk_order(built):
    frame = read_manifest(built / "manifest").frame
    keys = list(zip(frame["source_path"], frame["source_column"], frame["source_row"]))
    order = read_order(frame)
    assert sorted(order.tolist()) == list(range(len(frame)))
    assert [keys[i] for i in order] == sorted(keys) != keys  # the built manifest's rows are not in disk order


@pytest.mark.parametrize("bad_rows", [0, 2])
def test_the_integrity_pass_in_disk_order_finds_what_frame_order_finds(tmp_path, monkeypatch, bad_rows):
    """The pass reads rows in on-disk order (each row group once); its problems, their order and the
    samples' images are those of a pass in frame order, with and without bad rows."""
    from shortcutgates.gates import context as context_module

    manifest = write_pointer_manifest(tmp_path / "ptr", tmp_path / "src", n=40)
    part = manifest / "part-0.parquet"
    pd.read_parquet(part).sample(frac=1.0, random_state=3).to_parquet(part, index=False)  # rows out of disk order
    frame = read_manifest(manifest).frame
    for i in range(bad_rows):
        _replace_cell(
            Path(frame["source_path"].iloc[5 + 20 * i]),
            "stamp_npz",
            int(frame["source_row"].iloc[5 + 20 * i]),
            NOT_A_BLOB,
        )
    monkeypatch.setattr(context_module, "CHUNK", 8)  # several chunks
    context = GateContext(manifest, config=CFG)
    n = len(context.frame)
    frame_problems, frame_kept, _ = context._integrity_pass(np.arange(n), np.ones(n, bool), stop_at_problem=False)
    problems = context._check_rows()
    assert problems[: len(frame_problems)] == frame_problems and len(frame_problems) == bad_rows
    if bad_rows:
        assert context._predecoded == {}
        return
    positions, images = (np.concatenate(part) for part in list(zip(*frame_kept))[:2])
    by_position = dict(zip(positions.tolist(), images))
    assert context._predecoded
    for split, decoded in context._predecoded.items():
        expected = np.stack([by_position[i] for i in context._sampled_positions(split).tolist()])
        np.testing.assert_array_equal(decoded.images, expected)
