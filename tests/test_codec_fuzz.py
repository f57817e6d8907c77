"""Hypothesis fuzzes the stamp codec (reference and fast decoder) and the manifest reader.

Arbitrary bytes, mutated valid blobs and arbitrary manifest frames must either decode/read into
something that satisfies the documented invariants or raise a one-line
:class:`~shortcutgates.data.schema.DataError` — never another exception. The profiles come from
``tests/conftest.py``: ``ci`` (default, fast) keeps its example count; ``thorough``
(``HYPOTHESIS_PROFILE=thorough``) runs at least :data:`THOROUGH_EXAMPLES` examples per test.
"""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shortcutgates.data.codec import decode_stamp, decode_stamps, encode_stamp
from shortcutgates.data.manifest import read_manifest
from shortcutgates.data.schema import MANIFEST_SPLITS, NPZ_KEYS, DataError

THOROUGH_EXAMPLES = 10_000


def decode_stamp_fast(blob):
    """One blob through the many-blob decoder (its zlib fast path first)."""
    return decode_stamps([blob]).images[0]


def _fuzz_settings() -> settings:
    current = settings()
    thorough = settings.get_current_profile_name() == "thorough"
    return settings(
        current,
        max_examples=max(current.max_examples, THOROUGH_EXAMPLES) if thorough else current.max_examples,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    )


FUZZ = _fuzz_settings()


# --- blobs ---------------------------------------------------------------------------------------
def _valid_blob(seed: int, h: int, w: int) -> bytes:
    rng = np.random.default_rng(seed)
    return encode_stamp(rng.standard_normal((3, h, w)).astype(np.float32))


@st.composite
def mutated_blobs(draw) -> bytes:
    """A valid blob (maybe gzip-wrapped), then truncated, overwritten, spliced or extended."""
    blob = _valid_blob(draw(st.integers(0, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    if draw(st.booleans()):
        blob = gzip.compress(blob, mtime=0)
    data = bytearray(blob)
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["truncate", "overwrite", "insert", "delete"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "truncate":
            del data[pos:]
        elif kind == "overwrite" and data:
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[pos : pos + len(chunk)] = chunk
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif data:
            del data[pos : pos + draw(st.integers(1, 16))]
    return bytes(data)


def _check_decoded(image: np.ndarray) -> None:
    assert image.dtype == np.float32 and image.ndim == 3 and image.shape[0] == len(NPZ_KEYS)
    assert np.isfinite(image).all()


def _outcome(fn, blob):
    try:
        image = fn(blob)
    except DataError as err:
        assert "\n" not in str(err), str(err)
        return "error"
    _check_decoded(image)
    return image


BLOBS = st.one_of(
    st.binary(max_size=512),
    mutated_blobs(),
    st.binary(max_size=64).map(lambda b: b"PK\x03\x04" + b),
    st.binary(max_size=64).map(lambda b: b"\x1f\x8b" + b),
)


@FUZZ
@given(BLOBS)
@example(b"")
@example(b"PK\x05\x06" + bytes(18))  # an empty zip archive
def test_decode_stamp_only_raises_dataerror(blob):
    _outcome(decode_stamp, blob)


@FUZZ
@given(BLOBS)
def test_fast_decoder_agrees_with_decode_stamp(blob):
    """The loader's zlib fast path accepts and refuses exactly what ``codec.decode_stamp`` does."""
    slow, fast = _outcome(decode_stamp, blob), _outcome(decode_stamp_fast, blob)
    if isinstance(slow, str) or isinstance(fast, str):
        assert isinstance(slow, str) and isinstance(fast, str), (slow, fast)
    else:
        assert np.array_equal(slow, fast)


# --- manifests -----------------------------------------------------------------------------------
FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)
CELL = {
    "int": st.integers(-3, 3),
    "float": st.one_of(FLOATS, st.sampled_from([0.0, 1.0, 150.0, -90.0, 90.0, 360.0])),
    "str": st.one_of(st.sampled_from(list(MANIFEST_SPLITS) + ["0", "1", "", "trian"]), st.text(max_size=4)),
    "bytes": st.one_of(st.binary(max_size=16), st.integers(0, 2).map(lambda s: _valid_blob(s, 4, 4))),
    "bool": st.booleans(),
}
PA_TYPES = {"int": pa.int64(), "float": pa.float64(), "str": pa.string(), "bytes": pa.binary(), "bool": pa.bool_()}
COLUMNS = [
    "label",
    "split",
    "ra",
    "dec",
    "image_npz",
    "lrg_id",
    "source_path",
    "source_row",
    "source_column",
    "psfsize_r",
]
NATURAL = {
    "label": "int",
    "split": "str",
    "ra": "float",
    "dec": "float",
    "image_npz": "bytes",
    "lrg_id": "str",
    "source_path": "str",
    "source_row": "int",
    "source_column": "str",
    "psfsize_r": "float",
}


@st.composite
def manifest_tables(draw) -> pa.Table:
    """A table with a random subset of manifest columns, each of its natural type or a random one,
    with nulls anywhere and values from in-range to absurd."""
    n = draw(st.integers(0, 6))
    names = draw(st.lists(st.sampled_from(COLUMNS), unique=True, min_size=0, max_size=len(COLUMNS)))
    if draw(st.booleans()):  # mostly well-formed: all required columns of their natural type
        names = list(dict.fromkeys(["label", "split", "ra", "dec", "image_npz", *names]))
    arrays = {}
    for name in names:
        kind = NATURAL[name] if draw(st.integers(0, 3)) else draw(st.sampled_from(sorted(CELL)))
        values = draw(st.lists(st.one_of(st.none(), CELL[kind]), min_size=n, max_size=n))
        arrays[name] = pa.array(values, type=PA_TYPES[kind])
    return pa.table(arrays) if arrays else pa.table({"x": pa.array([None] * n, pa.null())})


def _check_manifest(frame: pd.DataFrame) -> None:
    assert len(frame) >= 1
    assert set(frame["label"].unique()) <= {0, 1} and frame["label"].dtype == np.int8
    assert np.isfinite(frame["ra"]).all() and frame["ra"].between(0, 360).all()
    assert np.isfinite(frame["dec"]).all() and frame["dec"].between(-90, 90).all()
    assert frame["split"].isin(MANIFEST_SPLITS).all()


@FUZZ
@given(tables=st.lists(manifest_tables(), min_size=1, max_size=2), junk=st.one_of(st.none(), st.binary(max_size=64)))
def test_read_manifest_only_raises_located_dataerror(tables, junk):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "m"
        root.mkdir()
        for i, table in enumerate(tables):
            pq.write_table(table, root / f"part-{i}.parquet")
        if junk is not None:
            (root / "zz-junk.parquet").write_bytes(junk)
        try:
            manifest = read_manifest(root)
        except DataError as err:
            msg = str(err)
            assert "\n" not in msg and msg.startswith(str(root)), msg
            return
        _check_manifest(manifest.frame)


@FUZZ
@given(st.binary(max_size=2048))
def test_read_manifest_of_arbitrary_bytes(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.parquet"
        path.write_bytes(data)
        try:
            _check_manifest(read_manifest(path).frame)
        except DataError as err:
            assert str(err).startswith(str(path)) and "\n" not in str(err)


def test_fast_decoder_refuses_a_local_name_that_differs_from_the_directory():
    """Found by the thorough fuzz run: byte 30 (first letter of the first local file name) zeroed."""
    blob = bytearray(_valid_blob(0, 1, 1))
    assert blob[30:41] == b"image_g.npy"
    blob[30] = 0
    assert _outcome(decode_stamp, bytes(blob)) == "error"
    assert _outcome(decode_stamp_fast, bytes(blob)) == "error"
