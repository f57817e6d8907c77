"""A model's inference passes for the gate context: chunks of stamps, scored on threads where that is safe.

A pass scores its images in chunks of :data:`CHUNK` rows; each chunk is one call of the score function
(a checkpoint's network then runs it in batches of 256), so a chunk's scores are the same floats
whichever thread computes it and whatever else runs beside it. Threads are used only for the
library's own checkpoints scoring preprocessed inputs (``Scorer.score_inputs``: a network in eval mode
under ``torch.no_grad``, which is thread-safe); a user's callable, an ONNX session or an exported
program is called one chunk at a time, as it always was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from shortcutgates.parallel import pool_threads

CHUNK = 512
"""Rows decoded (integrity) or scored (model) per batch."""


def inference_threads() -> int:
    """Threads for the chunks of a checkpoint's pass: the cores torch's own intra-op threads leave idle
    (``pool_threads() // torch.get_num_threads()``, at least 1): 2 on two cores when torch runs one thread."""
    import torch

    return max(1, pool_threads() // max(1, torch.get_num_threads()))


def score_chunks(
    fn: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    threads: int = 1,
    done: Callable[[int], object] = lambda n: None,
) -> list[np.ndarray]:
    """``fn`` of each :data:`CHUNK`-row chunk of ``images`` (N, ...), as float64 (n,) arrays in order.

    ``threads`` > 1 runs the chunks on that many threads (each chunk is one call, the same floats as in
    order); ``done(n)`` is called with each finished chunk's row count (a progress bar)."""
    starts = range(0, len(images), CHUNK)

    def one(start: int) -> np.ndarray:
        scores = np.asarray(fn(images[start : start + CHUNK]), np.float64).reshape(-1)
        done(min(CHUNK, len(images) - start))
        return scores

    if threads <= 1 or len(starts) <= 1:
        return [one(i) for i in starts]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(threads, len(starts))) as pool:
        return list(pool.map(one, starts))


def by_stamp_chunks(preprocess: Callable, images: np.ndarray, annulus: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``preprocess(images, annulus)`` of a preprocessing that works stamp by stamp (``raw_robust``,
    ``residual`` with the annulus median/MAD measured at decoding), :data:`CHUNK` stamps at a time on
    :func:`~shortcutgates.parallel.pool_threads` threads: each stamp's floats are the ones of one call."""
    from shortcutgates.parallel import thread_map

    starts = range(0, len(images), CHUNK)
    if len(starts) <= 1:
        return preprocess(images, annulus)
    parts = thread_map(lambda i: preprocess(images[i : i + CHUNK], tuple(a[i : i + CHUNK] for a in annulus)), starts)
    return np.concatenate(parts)


def training_manifest_of(model_path) -> Path | str | None:
    """The training manifest a shortcutgates checkpoint records (checked against its sha256), a
    one-line reason when it records one that cannot be used, or None (``.onnx`` / ``.pt2``, or none recorded)."""
    path = Path(model_path)
    if path.suffix.lower() in (".onnx", ".pt2"):
        return None
    try:
        from shortcutgates.model.checkpoint import CheckpointError, read_payload, recorded_manifest
    except ImportError:  # pragma: no cover - the model modules are missing
        return None
    try:
        payload = read_payload(path)
        data: dict = payload["data"] if isinstance(payload, dict) and isinstance(payload.get("data"), dict) else {}
        if not data.get("manifest"):
            return None
        return recorded_manifest(path)
    except (CheckpointError, OSError, ValueError) as exc:
        return f"cannot check the model's training LRGs: {exc}"
