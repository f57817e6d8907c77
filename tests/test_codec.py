"""The stamp codec: deterministic encoding, the fast decoder agreeing with the reference, and the
one bad-row policy (the first bad row raises, located; or every bad row is listed and left out)."""

from __future__ import annotations

import gzip
import io
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from shortcutgates.data.codec import DecodeStats, decode_stamp, decode_stamps, encode_stamp
from shortcutgates.data.schema import DataError

from toy_manifests import toy_images


@pytest.mark.parametrize("compress", [True, False], ids=["deflated", "stored"])
def test_encode_stamp_is_deterministic_and_round_trips(compress):
    images, _ = toy_images(2, size=8)
    assert encode_stamp(images[0], compress=compress) == encode_stamp(images[0].copy(), compress=compress)
    blob = encode_stamp(images[1], compress=compress)
    np.testing.assert_array_equal(decode_stamp(blob), images[1])
    fast = decode_stamps([blob])
    np.testing.assert_array_equal(fast.images[0], images[1])
    assert fast.stats == DecodeStats(1, 0)


def _savez(bands: dict, compressed: bool = True) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **bands)
    return buf.getvalue()


@settings(max_examples=40, deadline=None)
@given(shape=st.tuples(st.integers(0, 70), st.integers(1, 70)), data=st.data())
def test_stored_encoding_is_zipfiles_bytes(shape, data):
    """``encode_stamp(compress=False)`` fills a template archive: the bytes :mod:`zipfile` writes (any values,
    NaN and infinities among them, any memory layout)."""
    from shortcutgates.data.codec import _encode_zip

    image = data.draw(hnp.arrays(np.float32, (3,) + shape, elements=st.floats(width=32, allow_nan=True)))
    image = np.asfortranarray(image) if data.draw(st.booleans()) else image
    assert encode_stamp(image, compress=False) == _encode_zip(image, compress=False)


@settings(max_examples=15, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    dtype=st.sampled_from([np.float32, np.float64, np.int16, np.uint8, ">f4"]),
    fortran=st.booleans(),
    compressed=st.booleans(),
    data=st.data(),
)
def test_fast_decode_matches_the_reference_decoder(shape, dtype, fortran, compressed, data):
    kind = np.dtype(dtype).kind
    elements = st.floats(-1e6, 1e6, width=32) if kind == "f" else hnp.from_dtype(np.dtype(dtype))
    bands = {k: data.draw(hnp.arrays(dtype, shape, elements=elements)) for k in ("image_g", "image_r", "image_z")}
    if fortran:
        bands = {k: np.asfortranarray(v) for k, v in bands.items()}
    blob = _savez(bands, compressed)
    fast = decode_stamps([blob])
    assert fast.stats == DecodeStats(1, 0)
    np.testing.assert_array_equal(fast.images[0], decode_stamp(blob))
    assert fast.images.dtype == np.float32


def test_fast_decode_of_encode_stamp_is_exact():
    images, _ = toy_images(5, size=16)
    out = decode_stamps([encode_stamp(im) for im in images])
    np.testing.assert_array_equal(out.images, images)
    assert out.stats.n_fast == 5


def test_gzip_wrapped_blob_goes_through_the_reference_decoder_and_is_counted():
    images, _ = toy_images(2, size=8)
    blobs = [encode_stamp(images[0]), gzip.compress(encode_stamp(images[1]))]
    out = decode_stamps(blobs)
    np.testing.assert_array_equal(out.images, images)
    assert out.stats == DecodeStats(1, 1)


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
def test_bad_blob_raises_the_reference_decoders_error_located(name):
    blob = _bad_blobs()[name]
    with pytest.raises(DataError) as expected:
        decode_stamp(blob)
    with pytest.raises(DataError) as got:
        decode_stamps([blob], files=["m.parquet"], rows=[7], columns=["image_npz"])
    assert got.value.problem == expected.value.problem
    assert str(got.value).startswith("m.parquet: row 7, column 'image_npz': ")


def test_stamp_of_another_size_is_located():
    a, _ = toy_images(1, size=8)
    b, _ = toy_images(1, size=10)
    with pytest.raises(DataError, match=r"row 1.*differs from the expected \(8, 8\)"):
        decode_stamps([encode_stamp(a[0]), encode_stamp(b[0])], rows=[0, 1])


def _mixed_blobs():
    """Rows 0, 2, 4 good (8 x 8); row 1 not an archive; row 3 a NaN band; row 5 another size."""
    images, _ = toy_images(6, size=8)
    big, _ = toy_images(1, size=10)
    nan = images[3].copy()
    nan[1, 2, 2] = np.nan
    blobs = [encode_stamp(im) for im in images]
    blobs[1], blobs[3], blobs[5] = b"not an archive", encode_stamp(nan), encode_stamp(big[0])
    return images, blobs


def test_skip_bad_lists_every_bad_row_in_order_and_keeps_the_good_ones():
    images, blobs = _mixed_blobs()
    out = decode_stamps(blobs, files="m.parquet", rows=np.arange(10, 16), columns="image_npz", skip_bad=True)
    np.testing.assert_array_equal(out.ok, [True, False, True, False, True, False])
    np.testing.assert_array_equal(out.images, images[[0, 2, 4]])
    assert [f.index for f in out.failures] == [1, 3, 5]
    messages = [str(f.error) for f in out.failures]
    assert messages[0].startswith("m.parquet: row 11, column 'image_npz': blob is not an npz archive")
    assert messages[1] == "m.parquet: row 13, column 'image_npz': image_r contains NaN or Inf"
    assert "row 15" in messages[2] and "differs from the expected (8, 8)" in messages[2]
    assert out.stats == DecodeStats(3, 0)


def test_without_skip_bad_the_first_bad_row_in_input_order_raises():
    """The NaN row (found after the loop by the batch finite check) comes before the broken one."""
    images, blobs = _mixed_blobs()
    blobs[1] = blobs[0]
    blobs[4] = b"broken"
    with pytest.raises(DataError, match=r"^row 3, column 'image_npz': image_r contains NaN or Inf$"):
        decode_stamps(blobs, rows=range(6), columns="image_npz")


def test_expected_shape_applies_to_the_first_row_too():
    images, _ = toy_images(2, size=8)
    blobs = [encode_stamp(im) for im in images]
    np.testing.assert_array_equal(decode_stamps(blobs, shape=(8, 8)).images, images)
    out = decode_stamps(blobs, shape=(9, 9), skip_bad=True)
    assert len(out.images) == 0 and not out.ok.any() and len(out.failures) == 2


def test_no_blobs_give_an_empty_batch():
    out = decode_stamps([])
    assert out.images.shape[0] == 0 and out.failures == [] and out.stats == DecodeStats(0, 0)


def test_codec_imports_neither_torch_nor_pyarrow():
    code = "import sys, shortcutgates.data.codec; print(sorted({'torch', 'pyarrow'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("skip_bad", [True, False], ids=["skip_bad", "raise"])
def test_threads_across_stamps_give_the_same_result(monkeypatch, skip_bad):
    """Any thread count: the same images, flags, failures and counts (or the same first error)."""
    import shortcutgates.data.codec as codec

    monkeypatch.setattr(codec, "MIN_BLOBS_PER_THREAD", 1)  # threads even for these few blobs
    images, blobs = _mixed_blobs()
    blobs = blobs * 4  # 24 blobs: bad ones in several parts

    def run(threads):
        try:
            out = decode_stamps(blobs, rows=range(24), columns="image_npz", skip_bad=skip_bad, threads=threads)
        except DataError as err:
            return str(err)
        return out.images.tobytes(), out.ok.tolist(), [(f.index, str(f.error)) for f in out.failures], out.stats

    one = run(1)
    assert one == run(3) == run(8)
    if skip_bad:
        assert one[1] == [True, False, True, False, True, False] * 4
    else:
        assert one.startswith("row 1, column 'image_npz': blob is not an npz archive")


@pytest.mark.parametrize("backend", ["zlib_ng", "isal", "zlib"])
def test_every_inflate_library_gives_the_same_images(monkeypatch, backend):
    import importlib

    import shortcutgates.data.npz_fast as npz_fast

    try:
        name, module = npz_fast.inflate_module(backend)
    except ImportError:
        pytest.skip(f"{backend} is not installed (optional extra shortcutgates[fast])")
    images, _ = toy_images(5, size=16)
    blobs = [encode_stamp(im) for im in images]
    monkeypatch.setattr(npz_fast, "_inflate", importlib.import_module("zlib"))
    reference = decode_stamps(blobs, threads=1)
    monkeypatch.setattr(npz_fast, "_inflate", module)
    out = decode_stamps(blobs, threads=1)
    assert name == backend and out.stats == reference.stats == DecodeStats(5, 0)
    assert out.images.tobytes() == reference.images.tobytes() == images.astype(np.float32).tobytes()


def test_unknown_inflate_library_is_refused_by_name():
    from shortcutgates.data.npz_fast import INFLATE_ENV, inflate_module

    with pytest.raises(ValueError, match=f"^{INFLATE_ENV}: unknown inflate library 'gzip'"):
        inflate_module("gzip")
