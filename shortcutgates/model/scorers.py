"""Scorers: any lens finder as ``score_fn(images) -> scores`` for the model gates (docs/design.md#scorers).

A *scorer* takes raw stamps exactly as the manifest stores them — float32 ``(N, 3, H, W)`` in
nanomaggies, bands g, r, z — and returns ``(N,)`` float scores, higher = more lens-like. The gates
only ever call it on raw (possibly masked or transplanted) stamps, so a model's own preprocessing
must live inside the scorer. Four ways in:

* a shortcutgates checkpoint (``.pt``, :mod:`shortcutgates.model.checkpoint`), loaded without unpickling;
* a ``torch.export`` program (``.pt2``), checked before loading: no pickled weights or constants,
  no custom objects, no guard code, only ``aten`` operators;
* an ONNX file (``.onnx``) run by onnxruntime (the ``[onnx]`` extra), checked before a session is
  made: only standard ONNX operator domains (no custom or Python operators);
* a callable defined by the user (the pytest fixture ``shortcutgates_scorer``), wrapped by
  :func:`callable_scorer`.

The two files carry an :class:`InputContract` — band order, units, which of the library's
preprocessing modes to apply (or none), stamp size, layout and whether the output is a logit or a
probability — as JSON in the file's metadata (ONNX ``metadata_props`` / ``.pt2`` extra file, key
:data:`CONTRACT_KEY`) or in a sidecar ``<file>.json`` next to it. Without one the file is refused:
a model fed the wrong bands or units would measure nothing. :func:`write_sidecar` writes one.

The contract and :class:`Scorer` are defined in :mod:`shortcutgates.model.scorer_contract`, the checks and
loaders of the two files in :mod:`shortcutgates.model.exported`; this module loads checkpoints and callables
and :func:`load_scorer` picks a loader by suffix.

This module imports neither torch nor onnxruntime until a file that needs them is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from shortcutgates.model.exported import load_exported, load_onnx
from shortcutgates.model.scorer_contract import (
    CONTRACT_KEY,
    PREPROCESS_NONE,
    InputContract,
    PreprocessCache,
    Scorer,
    ScorerError,
    _Identity,
    read_contract,
    write_sidecar,
)

__all__ = [
    "CONTRACT_KEY",
    "LOADERS",
    "InputContract",
    "PreprocessCache",
    "Scorer",
    "ScorerError",
    "callable_scorer",
    "load_checkpoint_scorer",
    "load_exported",
    "load_onnx",
    "load_scorer",
    "read_contract",
    "write_sidecar",
]
"""The public names: the contract's are defined in :mod:`shortcutgates.model.scorer_contract`."""


# --- shortcutgates checkpoints and user callables -------------------------------------------------
def load_checkpoint_scorer(path, cache: PreprocessCache | None = None) -> Scorer:
    """A shortcutgates checkpoint: its network and recorded preprocessing (probabilities).

    With a ``cache`` the preprocessing goes through it (the same numbers as
    :func:`shortcutgates.model.evaluate.predict_scores`, which preprocesses each stamp on its own).
    """
    from shortcutgates.model.checkpoint import load_checkpoint
    from shortcutgates.model.evaluate import logits_of, predict_scores, sigmoid

    loaded = load_checkpoint(path)

    def score_inputs(inputs):
        return sigmoid(logits_of(loaded.model, inputs))

    if cache is not None:

        def score_fn(raw):
            return score_inputs(cache(loaded.preprocess, raw))
    else:

        def score_fn(raw):
            return np.asarray(predict_scores(loaded, raw), np.float64)

    info = {"path": str(path), "kind": "shortcutgates.checkpoint", "preprocess": loaded.preprocess}
    for key in ("format", "version", "model_config", "train_config", "data", "metrics", "seed", "epoch"):
        if key in loaded.payload:
            info[key] = loaded.payload[key]
    return Scorer(score_fn, loaded.preprocess, info, None, score_inputs if cache is not None else None)


def callable_scorer(fn, name: str = "shortcutgates_scorer fixture") -> Scorer:
    """Wrap a user's ``fn(images) -> scores``; its output is checked to be ``(N,)`` finite numbers.

    ``fn.preprocess`` (optional): ``"none"``, a library mode name or a callable naming the model's
    own input preprocessing, used by the model-input probes (default ``raw_robust``).
    """
    if not callable(fn):
        raise ScorerError(f"{name}: must return a callable f(images) -> scores (got {type(fn).__name__})")

    def score_fn(images: np.ndarray) -> np.ndarray:
        out = fn(np.asarray(images, np.float32))
        if hasattr(out, "detach"):  # a torch tensor
            out = out.detach().cpu().numpy()
        out = np.asarray(out, np.float64)
        if out.shape not in ((len(images),), (len(images), 1)):
            raise ScorerError(f"{name}: returned shape {out.shape} for {len(images)} stamps; expected ({len(images)},)")
        return out.reshape(-1)

    info = {
        "path": None,
        "kind": "callable",
        "name": name,
        "callable": f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}",
    }
    preprocess = getattr(fn, "preprocess", None)
    return Scorer(score_fn, _Identity() if preprocess == PREPROCESS_NONE else preprocess, info)


LOADERS: dict[str, Callable[..., Scorer]] = {".onnx": load_onnx, ".pt2": load_exported}
"""Model files by suffix; anything else is read as a shortcutgates checkpoint."""


def load_scorer(path, cache: PreprocessCache | None = None) -> Scorer:
    """Load a model file by its suffix (``.onnx``, ``.pt2``, else a checkpoint); ``cache``: shared preprocessing."""
    path = Path(path)
    if not path.is_file():
        raise ScorerError(f"{path}: no such model file")
    return LOADERS.get(path.suffix.lower(), load_checkpoint_scorer)(path, cache)
