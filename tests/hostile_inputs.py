"""Builders of hostile inputs (bad blobs, bad manifests, hostile checkpoints, killed runs) for the
bad-input, hostile-checkpoint and interrupt tests.

Small and deterministic: stamps are Gaussian noise plus a centred LRG-like blob (positives add
a ring), so every stamp decodes, is finite and can be normalised; a test then breaks exactly
one thing. Nothing here is a test.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from shortcutgates.data.codec import encode_stamp
from shortcutgates.data.io import write_parquet_atomic
from shortcutgates.data.schema import NPZ_KEYS

REPO = Path(__file__).resolve().parents[1]
STAMP = 24
"""Stamp side of the hand-written manifests. Unit: pixel."""


def stamp(rng: np.random.Generator, size: int = STAMP, arc: bool = False) -> np.ndarray:
    """A (3, size, size) float32 stamp: noise sigma 1, a centred blob, a ring if ``arc``."""
    yy, xx = np.indices((size, size)) - size // 2
    r = np.hypot(yy, xx)
    image = rng.standard_normal((3, size, size)) + 20.0 * np.exp(-0.5 * (r / 2.0) ** 2)
    if arc:
        image = image + 8.0 * np.exp(-0.5 * ((r - size / 4) / 1.0) ** 2)
    return image.astype(np.float32)


def hand_manifest(n_lrgs: int = 24, seed: int = 0, size: int = STAMP, splits=("train", "val", "test")) -> pd.DataFrame:
    """A hand-written unpaired manifest frame (docs/design.md#manifest): one row per LRG, labels alternate.

    LRGs are 36 arcsec apart so sky matching never merges two; splits cycle over LRGs so every
    split holds both classes when ``n_lrgs >= 2 * len(splits)``.
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(n_lrgs) % 2
    split = [splits[(i // 2) % len(splits)] for i in range(n_lrgs)]
    return pd.DataFrame(
        {
            "label": labels.astype(np.int8),
            "split": split,
            "ra": 150.0 + 0.01 * np.arange(n_lrgs),
            "dec": np.full(n_lrgs, 2.0),
            "lrg_id": [f"L{i:04d}" for i in range(n_lrgs)],
            "psfsize_r": 1.2 + 0.01 * (np.arange(n_lrgs) % 5),
            "image_npz": [encode_stamp(stamp(rng, size, arc=bool(lab))) for lab in labels],
        }
    )


def write_manifest(frame: pd.DataFrame, directory, name: str = "part-0000.parquet") -> Path:
    """Write ``frame`` as a hand-written manifest directory (no manifest.json); returns the file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(frame, directory / name)
    return directory / name


# --- hostile blobs ---------------------------------------------------------------------------
def npz_bytes(arrays: dict, *, allow_pickle: bool = False) -> bytes:
    """An npz archive holding ``arrays`` (``np.savez`` layout, optional pickled members)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, value in arrays.items():
            arr = io.BytesIO()
            np.lib.format.write_array(arr, np.asanyarray(value), allow_pickle=allow_pickle)
            zf.writestr(key + ".npy", arr.getvalue())
    return buf.getvalue()


class Payload:
    """An object whose unpickling would run ``touch MARKER``: proof that nothing was unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def pickled_object_npz(marker) -> bytes:
    """An npz whose ``image_g`` is an object array that would run code if unpickled."""
    good = stamp(np.random.default_rng(0))
    arrays = {k: v for k, v in zip(NPZ_KEYS, good)}
    obj = np.empty(1, dtype=object)
    obj[0] = Payload(marker)
    arrays["image_g"] = obj
    return npz_bytes(arrays, allow_pickle=True)


def bad_blobs(marker) -> dict:
    """name -> (blob, fragment the DataError message must contain)."""
    rng = np.random.default_rng(1)
    good = encode_stamp(stamp(rng))
    nan = stamp(rng)
    nan[1, 3, 4] = np.nan
    inf = stamp(rng)
    inf[2, 0, 0] = np.inf
    bands = dict(zip(NPZ_KEYS, stamp(rng)))
    mixed = dict(bands, image_z=np.zeros((STAMP + 2, STAMP), np.float32))
    return {
        "truncated": (good[: len(good) // 2], "not a readable npz"),
        "not_npz": (b"GIF89a" + bytes(100), "not an npz archive"),
        "empty": (b"", "not an npz archive"),
        "pickled_object": (pickled_object_npz(marker), "needs unpickling"),
        "missing_band": (npz_bytes({k: v for k, v in bands.items() if k != "image_r"}), "lacks image_r"),
        "mixed_band_shapes": (npz_bytes(mixed), "different shapes"),
        "nan": (encode_stamp(nan), "image_r contains NaN or Inf"),
        "inf": (encode_stamp(inf), "image_z contains NaN or Inf"),
        "gzip_garbage": (b"\x1f\x8b" + bytes(30), "does not decompress"),
        "string_band": (npz_bytes(dict(bands, image_g=np.array([["a"]]))), "must be numeric"),
        "three_d_band": (npz_bytes(dict(bands, image_g=np.zeros((2, 2, 2), np.float32))), "must be 2-D"),
    }


def gzip_wrap(blob: bytes) -> bytes:
    return gzip.compress(blob, mtime=0)


# --- hostile checkpoints ---------------------------------------------------------------------
def evil_checkpoint(path, marker) -> Path:
    """A .pt that would run ``touch MARKER`` if torch unpickled it without ``weights_only``."""
    torch.save({"format": "shortcutgates.checkpoint", "version": 1, "metrics": Payload(marker)}, path)
    return Path(path)


# --- running the command line --------------------------------------------------------------
def run_cli(argv, capsys) -> tuple[int, str, str]:
    """``shortcutgates.cli.main(argv)`` in-process: (exit status, stdout, stderr)."""
    from shortcutgates.cli import main

    capsys.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse errors
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def child_env(**extra) -> dict:
    """The environment of a user's fresh shell: this one without pytest-xdist's worker variables
    (a child pytest would otherwise think it runs under xdist), one thread per library."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT_TEST"))}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0", **extra)
    return env


def run_cli_subprocess(argv, *, timeout: float = 120, cwd=None, env=None) -> subprocess.CompletedProcess:
    """``python -m shortcutgates.cli ARGV`` in a fresh interpreter (one thread, no tty)."""
    return subprocess.run(
        [sys.executable, "-m", "shortcutgates.cli", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=child_env(**(env or {})),
    )


def run_pytest_subprocess(args, *, timeout: float = 180) -> subprocess.CompletedProcess:
    """``python -m pytest ARGS`` from the repository root, as a user runs ``pytest gate_tests``."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(),
    )


TRACEBACK_SIGNS = ("Traceback (most recent call last)", "\nE   ", "INTERNALERROR", "_hooks.py", "raise ")
"""What a Python traceback, or pytest's rendering of one, leaves in the output."""


def assert_no_traceback(text: str) -> None:
    """No Python traceback (nor pytest's rendering of one) in a user-facing stream."""
    for sign in TRACEBACK_SIGNS:
        assert sign not in text, f"traceback-like output ({sign!r}) reached the user:\n{text[-3000:]}"


@contextlib.contextmanager
def chdir(path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)
