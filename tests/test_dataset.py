"""Model input from a manifest: preprocessing once, the on-disk cache, pointers, weights, bad rows."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from shortcutgates.model import dataset as ds
from shortcutgates.data.codec import encode_stamp
from shortcutgates.data.manifest import load_images, read_manifest
from shortcutgates.model.preprocess import raw_robust, residual
from shortcutgates.data.schema import DataError

from toy_manifests import toy_frame, write_pointer_manifest, write_toy_manifest


@pytest.mark.parametrize("mode,fn", [("raw_robust", raw_robust), ("residual", residual)])
def test_dataset_holds_preprocessed_images(tmp_path, mode, fn):
    path = write_toy_manifest(tmp_path / "m", n=12, size=16)
    data = ds.StampDataset.from_manifest(path, ["train", "val"], mode)
    frame = ds.select_splits(read_manifest(path).frame, ["train", "val"])
    raw, _ = load_images(frame)
    np.testing.assert_allclose(data.images, fn(raw), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(data.labels, frame["label"].to_numpy(np.float32))
    assert data.images.dtype == np.float32 and len(data) == len(frame)
    np.testing.assert_array_equal(data.weights, np.ones(len(frame), np.float32))


def test_pointer_and_inline_manifests_give_the_same_inputs(tmp_path):
    inline = write_toy_manifest(tmp_path / "inline", n=16)
    pointer = write_pointer_manifest(tmp_path / "ptr", tmp_path / "src", n=16)
    a = ds.StampDataset.from_manifest(inline).images
    b = ds.StampDataset.from_manifest(pointer).images
    np.testing.assert_array_equal(a, b)


def test_disk_cache_is_written_once_then_memory_mapped(tmp_path, monkeypatch):
    path = write_toy_manifest(tmp_path / "m", n=10)
    first = ds.StampDataset.from_manifest(path, "train", cache_dir=tmp_path / "cache")
    files = list((tmp_path / "cache").glob("*.npy"))
    assert len(files) == 1

    def boom(*a, **k):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(ds, "preprocess_frame", boom)
    second = ds.StampDataset.from_manifest(path, "train", cache_dir=tmp_path / "cache")
    assert isinstance(second.images, np.memmap)
    np.testing.assert_array_equal(first.images, second.images)
    monkeypatch.undo()
    ds.StampDataset.from_manifest(path, "train", "residual", cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2  # key depends on the preprocessing


def test_manifest_sha_changes_with_content(tmp_path):
    a = write_toy_manifest(tmp_path / "a", n=8, seed=0)
    b = write_toy_manifest(tmp_path / "b", n=8, seed=1)
    assert ds.manifest_sha256(a) == ds.manifest_sha256(a)
    assert ds.manifest_sha256(a) != ds.manifest_sha256(b)


def test_weight_column_is_used_and_validated():
    frame = toy_frame(6).assign(weight=[1.0, 0.5, 0.25, 1.0, 2.0, 1.0])
    np.testing.assert_array_equal(ds.row_weights(frame), np.float32([1.0, 0.5, 0.25, 1.0, 2.0, 1.0]))
    with pytest.raises(DataError, match=r"row 2, column 'weight'.*>= 0"):
        ds.row_weights(frame.assign(weight=[1.0, 1.0, -1.0, 1.0, 1.0, 1.0]))


def test_bad_blob_in_a_manifest_stops_loading_and_names_file_and_row(tmp_path):
    path = write_toy_manifest(tmp_path / "m", n=8)
    frame = pd.read_parquet(path / "part-0.parquet")
    frame.loc[5, "image_npz"] = b"PK\x03\x04 broken"
    frame.to_parquet(path / "part-0.parquet", index=False)
    with pytest.raises(DataError, match=r"part-0\.parquet: row 5, column 'image_npz': blob is not a readable npz"):
        ds.StampDataset.from_manifest(path)


def test_missing_pointer_source_is_reported(tmp_path):
    path = write_pointer_manifest(tmp_path / "ptr", tmp_path / "src", n=8)
    (tmp_path / "src" / "src.parquet").unlink()
    with pytest.raises(DataError, match="source file of a manifest pointer is missing"):
        ds.StampDataset(read_manifest(path).frame)


def test_all_zero_stamp_is_located_by_manifest_row(tmp_path):
    path = write_toy_manifest(tmp_path / "m", n=8)
    frame = pd.read_parquet(path / "part-0.parquet")
    frame.loc[6, "image_npz"] = encode_stamp(np.zeros((3, 16, 16), np.float32))
    frame.to_parquet(path / "part-0.parquet", index=False)
    with pytest.raises(DataError, match=r"part-0\.parquet: row 6, column 'image_npz': outer-annulus MAD is 0"):
        ds.StampDataset.from_manifest(path)


def test_build_cache_fills_what_train_reads(tmp_path, monkeypatch):
    """``build --cache`` (dataset.fill_cache) writes the arrays ``train --cache-dir`` memory-maps: no decode then."""
    from shortcutgates.model import train

    path = write_toy_manifest(tmp_path / "m", n=12, size=16)
    files = ds.fill_cache(path, tmp_path / "cache", "raw_robust")
    assert len(files) == 2 and all(f.exists() for f in files)  # train and val

    def boom(*a, **k):
        raise AssertionError("decoded again despite build --cache")

    monkeypatch.setattr(ds, "preprocess_frame", boom)
    config = train.TrainConfig(preprocess="raw_robust")
    tr, val, _ = train._load_splits(path, config, tmp_path / "cache", progress=False)
    assert isinstance(tr.images, np.memmap) and isinstance(val.images, np.memmap)
    monkeypatch.undo()
    fresh = ds.StampDataset.from_manifest(path, "train")
    np.testing.assert_array_equal(tr.images, fresh.images)


def test_build_cli_cache_option(tmp_path, capsys):
    from shortcutgates.cli import main
    from strategies import generate_catalog, write_catalog

    cat = generate_catalog(np.full(40, 2), seed=4, jitter_arcsec=0.1, image_size=12)
    write_catalog(cat.frame.assign(cutout_ok=np.int32(1)), tmp_path / "in", n_files=2)
    assert (
        main(
            [
                "build",
                "--input",
                str(tmp_path / "in"),
                "--out",
                str(tmp_path / "m"),
                "--mode",
                "unpaired",
                "--no-progress",
                "--cache",
                str(tmp_path / "cache"),
            ]
        )
        == 0
    )
    assert "decoded cache: 2 arrays (raw_robust)" in capsys.readouterr().out
    frame = ds.select_splits(read_manifest(tmp_path / "m").frame, "val")
    key = ds.rows_key(frame, ds.manifest_sha256(tmp_path / "m"), "raw_robust")
    cached = np.load(tmp_path / "cache" / f"{key}.npy", allow_pickle=False)
    np.testing.assert_array_equal(cached, ds.StampDataset(frame, "raw_robust").images)
