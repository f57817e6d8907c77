"""The one file writer, the one directory writer and the one JSON-sanitising helper of ``io``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shortcutgates.data.io import atomic_directory, atomic_path, jsonable, write_bytes_atomic


def test_jsonable_makes_plain_json():
    out = jsonable(
        {
            "a": np.float32(0.5),
            "b": (1, np.int64(2)),
            "c": float("nan"),
            "d": Path("x"),
            "e": {"f": np.float64(np.inf)},
            "g": np.arange(2),
            "h": np.bool_(True),
        }
    )
    assert out == {"a": 0.5, "b": [1, 2], "c": None, "d": "x", "e": {"f": None}, "g": [0, 1], "h": True}
    assert isinstance(out["b"][1], int)
    json.dumps(out, allow_nan=False)
    with pytest.raises(TypeError, match="cannot write bytes"):
        jsonable({"blob": b"\x00"})


def test_file_writer_replaces_whole_or_leaves_the_old_file(tmp_path):
    target = tmp_path / "a.json"
    write_bytes_atomic(target, b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    write_bytes_atomic(target, b"new")
    assert target.read_bytes() == b"new"


def _tree(directory: Path) -> dict:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_directory_writer_creates_then_refuses_or_replaces(tmp_path):
    out = tmp_path / "out"
    with atomic_directory(out) as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "x").write_bytes(b"1")
    assert _tree(out) == {"sub/x": b"1"}
    assert oct(out.stat().st_mode & 0o777) == oct(0o777 & ~_umask())
    with pytest.raises(FileExistsError, match="exists and is not an empty directory"):
        with atomic_directory(out):
            pass
    with atomic_directory(out, replace=True) as tmp:
        (tmp / "y").write_bytes(b"2")
    assert _tree(out) == {"y": b"2"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the previous content is gone


def test_directory_writer_leaves_the_previous_directory_on_an_exception(tmp_path):
    out = tmp_path / "out"
    with atomic_directory(out) as tmp:
        (tmp / "y").write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(out, replace=True) as tmp:
            (tmp / "y").write_bytes(b"half")
            raise KeyboardInterrupt
    assert _tree(out) == {"y": b"old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_directory_writer_removes_temporaries_of_dead_writers_only(tmp_path):
    dead = int(
        subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
        ).stdout
    )
    stale = tmp_path / f".out.tmp-{dead}-abc"
    (stale / "train").mkdir(parents=True)
    (stale / "train" / "part-00000.parquet").write_bytes(b"half")
    live = tmp_path / f".out.tmp-{os.getppid()}-def"  # the parent (pytest's launcher or shell) is alive
    live.mkdir()
    with atomic_directory(tmp_path / "out") as tmp:
        (tmp / "x").write_bytes(b"1")
    assert not stale.exists() and live.exists()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_directory_writer_refuses_to_overwrite_what_another_writer_finished_first(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(FileExistsError, match="was written by another process meanwhile"):
        with atomic_directory(out) as tmp:
            (tmp / "mine").write_bytes(b"2")
            out.mkdir()
            (out / "theirs").write_bytes(b"1")  # the other writer published while we wrote
    assert _tree(out) == {"theirs": b"1"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_file_sha256_remembers_a_file_only_once_it_has_settled(tmp_path, monkeypatch):
    """A digest is reused only for a file with the same identity and times, and only when it was last
    changed more than RACY_SECONDS before hashing (file times are coarse: a rewrite could keep them)."""
    import hashlib

    from shortcutgates.data import io as sgio

    path = tmp_path / "blob.bin"
    path.write_bytes(b"x" * 64)
    monkeypatch.setattr(sgio, "_SHA256", {})
    assert sgio.file_sha256(path) == hashlib.sha256(b"x" * 64).hexdigest()
    assert sgio._SHA256 == {}  # just written: racy, not remembered
    path.write_bytes(b"y" * 64)  # same size, maybe the same times
    assert sgio.file_sha256(path) == hashlib.sha256(b"y" * 64).hexdigest()
    monkeypatch.setattr(sgio, "RACY_SECONDS", -1.0)  # as if it had settled
    assert sgio.file_sha256(path) == hashlib.sha256(b"y" * 64).hexdigest() and len(sgio._SHA256) == 1
    path.write_bytes(b"z" * 64)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))  # a later change time
    assert sgio.file_sha256(path) == hashlib.sha256(b"z" * 64).hexdigest()
