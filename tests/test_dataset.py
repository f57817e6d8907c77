"""The manifest loader: fast npz decoding agrees with io.decode_stamp, caching, pointers, weights."""

from __future__ import annotations

import gzip
import io

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from shortcutgates import dataset as ds
from shortcutgates.io import decode_stamp, encode_stamp
from shortcutgates.manifest import load_images, read_manifest
from shortcutgates.preprocess import raw_robust, residual
from shortcutgates.schema import DataError

from test_dataset_helpers import toy_frame, toy_images, write_pointer_manifest, write_toy_manifest

torch.set_num_threads(1)  # tiny tensors: extra threads only contend on the shared 2-core CI


def _savez(bands: dict, compressed: bool = True) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **bands)
    return buf.getvalue()


@settings(max_examples=15, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    dtype=st.sampled_from([np.float32, np.float64, np.int16, np.uint8, ">f4"]),
    fortran=st.booleans(),
    compressed=st.booleans(),
    data=st.data(),
)
def test_fast_decode_matches_io_decode_stamp(shape, dtype, fortran, compressed, data):
    kind = np.dtype(dtype).kind
    elements = (st.floats(-1e6, 1e6, width=32) if kind == "f" else hnp.from_dtype(np.dtype(dtype)))
    bands = {k: data.draw(hnp.arrays(dtype, shape, elements=elements)) for k in ("image_g", "image_r", "image_z")}
    if fortran:
        bands = {k: np.asfortranarray(v) for k, v in bands.items()}
    blob = _savez(bands, compressed)
    fast, stats = ds.decode_blobs([blob])
    assert stats == ds.DecodeStats(1, 0)
    np.testing.assert_array_equal(fast[0], decode_stamp(blob))
    assert fast.dtype == np.float32


def test_fast_decode_of_encode_stamp_is_exact():
    images, _ = toy_images(5, size=16)
    out, stats = ds.decode_blobs([encode_stamp(im) for im in images])
    np.testing.assert_array_equal(out, images)
    assert stats.n_fast == 5


def test_gzip_wrapped_blob_goes_through_io_and_is_counted():
    images, _ = toy_images(2, size=8)
    blobs = [encode_stamp(images[0]), gzip.compress(encode_stamp(images[1]))]
    out, stats = ds.decode_blobs(blobs)
    np.testing.assert_array_equal(out, images)
    assert stats == ds.DecodeStats(1, 1)


def _bad_blobs() -> dict:
    good = {k: np.ones((4, 4), np.float32) for k in ("image_g", "image_r", "image_z")}
    nan = dict(good, image_r=np.full((4, 4), np.nan, np.float32))
    blob = encode_stamp(np.ones((3, 4, 4), np.float32))
    corrupt = bytearray(blob)
    corrupt[60:90] = b"\x00" * 30  # inside the first member's deflate stream: CRC or inflate fails
    return {
        "missing_band": _savez({"image_g": good["image_g"], "image_r": good["image_r"]}),
        "nan": _savez(nan),
        "not_npz": b"hello world, not an archive",
        "truncated": blob[: len(blob) // 2],
        "corrupt": bytes(corrupt),
        "object_array": _savez({**good, "image_z": np.array([[object()]], dtype=object)}, compressed=False),
        "shape_mismatch": _savez(dict(good, image_z=np.ones((5, 4), np.float32))),
        "local_name_differs": blob[:30] + b"X" + blob[31:],  # zipfile checks local vs directory names
    }


@pytest.mark.parametrize("name", list(_bad_blobs()))
def test_bad_blob_raises_the_same_error_as_io(name):
    blob = _bad_blobs()[name]
    with pytest.raises(DataError) as expected:
        decode_stamp(blob)
    with pytest.raises(DataError) as got:
        ds.decode_blobs([blob], files=["m.parquet"], rows=[7], columns=["image_npz"])
    assert got.value.problem == expected.value.problem
    assert str(got.value).startswith("m.parquet: row 7, column 'image_npz': ")


def test_stamp_of_another_size_is_located():
    a, _ = toy_images(1, size=8)
    b, _ = toy_images(1, size=10)
    with pytest.raises(DataError, match=r"row 1.*differs from the expected \(8, 8\)"):
        ds.decode_blobs([encode_stamp(a[0]), encode_stamp(b[0])], rows=[0, 1])


@pytest.mark.parametrize("mode,fn", [("raw_robust", raw_robust), ("residual", residual)])
def test_dataset_holds_preprocessed_images(tmp_path, mode, fn):
    path = write_toy_manifest(tmp_path / "m", n=12, size=16)
    data = ds.StampDataset.from_manifest(path, ["train", "val"], mode)
    frame = ds.select_splits(read_manifest(path).frame, ["train", "val"])
    raw, _ = load_images(frame)
    np.testing.assert_allclose(data.images, fn(raw), rtol=0, atol=1e-6)
    image, label, weight = data[3]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32
    assert float(label) == frame["label"].iloc[3] and float(weight) == 1.0


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


def test_per_sample_transform_is_seeded_by_index_not_worker(tmp_path):
    path = write_toy_manifest(tmp_path / "m", n=12)

    def jitter(image, rng):
        return image + torch.from_numpy(rng.normal(size=image.shape).astype(np.float32))

    data = ds.StampDataset.from_manifest(path, transform=jitter, seed=3)
    serial = torch.cat([b[0] for b in ds.make_loader(data, 4, num_workers=0)])
    parallel = torch.cat([b[0] for b in ds.make_loader(data, 4, num_workers=2)])
    torch.testing.assert_close(serial, parallel, rtol=0, atol=0)
    data.set_epoch(1)
    assert not torch.equal(serial, torch.cat([b[0] for b in ds.make_loader(data, 4)]))


def test_decode_stamp_fast_checks_the_expected_shape():
    a, _ = toy_images(1, size=8)
    blob = encode_stamp(a[0])
    np.testing.assert_array_equal(ds.decode_stamp_fast(blob, shape=(8, 8)), a[0])
    with pytest.raises(DataError, match=r"differs from the expected \(9, 9\)"):
        ds.decode_stamp_fast(blob, shape=(9, 9))


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
