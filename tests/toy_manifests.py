"""Tiny hand-written manifests (docs/design.md#manifest) for the loader, training and evaluation tests.

A helper module (no tests): the dataset, training, model, checkpoint and evaluation tests import it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from shortcutgates.data.codec import encode_stamp

SPLIT_CYCLE = ("train", "train", "train", "train", "val", "val", "test", "test")
"""Split of LRG pair ``k`` (one negative and one positive LRG per pair), cycling."""


def toy_images(n: int, size: int = 16, seed: int = 0, ring: float = 0.08) -> tuple[np.ndarray, np.ndarray]:
    """``n`` stamps ``(n, 3, size, size)`` in nanomaggies and labels: odd rows carry a faint ring.

    Each stamp is a Gaussian "LRG" of random brightness plus sky noise (sigma 0.01 nmgy); a
    positive adds a ring of radius ``size / 4`` px, a crude arc stand-in that a CNN can learn.
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size]
    r = np.hypot(y - size // 2, x - size // 2)
    labels = (np.arange(n) % 2).astype(np.int8)
    core = rng.uniform(0.3, 0.8, (n, 1, 1, 1)) * np.exp(-(r**2) / 4.0)
    images = core + rng.normal(0.0, 0.01, (n, 3, size, size))
    images += labels[:, None, None, None] * ring * np.exp(-((r - size / 4) ** 2))
    return images.astype(np.float32), labels


def toy_frame(n: int = 32, size: int = 16, seed: int = 0, **kw) -> pd.DataFrame:
    """A hand-written manifest frame: one row per LRG, inline ``image_npz``, both classes in each split."""
    images, labels = toy_images(n, size, seed, **kw)
    splits = [SPLIT_CYCLE[(i // 2) % len(SPLIT_CYCLE)] for i in range(n)]
    return pd.DataFrame(
        {
            "label": labels,
            "split": splits,
            "ra": 150.0 + 0.01 * np.arange(n),
            "dec": np.full(n, 2.0),
            "lrg_id": [f"L{i:04d}" for i in range(n)],
            "image_npz": [encode_stamp(im) for im in images],
        }
    )


def write_toy_manifest(path, n: int = 32, size: int = 16, seed: int = 0, **kw) -> Path:
    """Write :func:`toy_frame` as ``path/part-0.parquet`` and return ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    toy_frame(n, size, seed, **kw).to_parquet(path / "part-0.parquet", index=False)
    return path


def write_pointer_manifest(path, source_dir, n: int = 16, size: int = 16, seed: int = 0) -> Path:
    """A pointer manifest: blobs in a paired-style source parquet, rows pointing at them."""
    frame = toy_frame(n, size, seed)
    source_dir = Path(source_dir)
    source_dir.mkdir(parents=True, exist_ok=True)
    src = source_dir / "src.parquet"
    pd.DataFrame({"stamp_npz": frame["image_npz"]}).to_parquet(src, index=False)
    out = frame.drop(columns=["image_npz"]).assign(
        source_path=str(src.resolve()), source_row=np.arange(n), source_column="stamp_npz"
    )
    Path(path).mkdir(parents=True, exist_ok=True)
    out.to_parquet(Path(path) / "part-0.parquet", index=False)
    return Path(path)


TINY_TRAIN_ARGS = [
    "--width",
    "4",
    "--blocks",
    "1",
    "--batch-size",
    "8",
    "--no-progress",
    "--device",
    "cpu",
    "--threads",
    "1",
]
"""``shortcutgates train`` options of the tests' tiny CPU network (add ``--epochs``, ``--data``, ``--out``)."""
