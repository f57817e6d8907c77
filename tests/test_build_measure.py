"""lrg_properties.decode_controls / measure_controls: one control per LRG decoded in batches, one bad-row policy."""

import numpy as np
import pandas as pd
import pytest

from shortcutgates.data.lrg_properties import decode_controls
from shortcutgates.data.codec import encode_stamp
from shortcutgates.data.schema import DataError


def _rows(tmp_path, blobs):
    path = tmp_path / "p.parquet"
    pd.DataFrame({"ctrl_stamp_npz": blobs}).to_parquet(path, index=False)
    return pd.DataFrame({"source_path": str(path), "source_row": np.arange(len(blobs))})


def test_bad_controls_are_left_out_or_raise_with_their_row(tmp_path):
    images = [np.full((3, 8, 8), v, np.float32) for v in (1.0, 2.0)]
    rows = _rows(tmp_path, [encode_stamp(images[0]), b"junk", None, encode_stamp(images[1])])
    got, ok = decode_controls(rows, progress=False, strict=False)
    assert ok.tolist() == [True, False, False, True]
    np.testing.assert_array_equal(got, np.stack(images))
    with pytest.raises(DataError, match=r"p\.parquet.*row 1.*ctrl_stamp_npz"):
        decode_controls(rows, progress=False, strict=True)


def test_controls_of_different_shapes_give_no_images(tmp_path):
    rows = _rows(tmp_path, [encode_stamp(np.ones((3, 8, 8), np.float32)), encode_stamp(np.ones((3, 6, 6), np.float32))])
    for strict in (False, True):  # a shape mismatch is not a decoding error: no values, no raise
        got, ok = decode_controls(rows, progress=False, strict=strict)
        assert got is None and ok.tolist() == [True, False]
