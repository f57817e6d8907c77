"""Checkpoints (docs/design.md#checkpoint): a plain dict, written atomically, loaded without unpickling.

Keys of the dict::

    format        "shortcutgates.checkpoint"
    version       int, FORMAT_VERSION of the writer
    model_config  ModelConfig.to_dict()  (rebuilds the network)
    state_dict    weights of the model to use (the epoch with the best validation AUROC)
    preprocess    {"name": "raw_robust" | "residual", "clip": ..., "annulus_fraction": [...]}
    train_config  TrainConfig as plain types
    data          {"manifest": path, "sha256": manifest sha256}
    metrics       {"best_epoch", "best_val_auroc", "history": [...], ...}
    seed          int
    resume        optional: last epoch's weights, optimizer state and counters for ``--resume``

Only tensors, dicts, lists, strings and numbers are stored, so
``torch.load(path, weights_only=True)`` reads it and a file that would need unpickling of
arbitrary objects is refused.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import NamedTuple

import torch

from shortcutgates.data.io import write_bytes_atomic
from shortcutgates.model.network import ModelConfig, ResNet, build_model
from shortcutgates.model.preprocess import get_preprocessor

FORMAT = "shortcutgates.checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS: tuple[str, ...] = (
    "format",
    "version",
    "model_config",
    "state_dict",
    "preprocess",
    "train_config",
    "data",
    "metrics",
    "seed",
)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the one-line message names the file and the problem."""


OTHER_MODELS = (
    "a model shortcutgates did not write comes in as a torch.export program (.pt2) or an ONNX file "
    "with an input contract, or through a 'shortcutgates_scorer' fixture in your conftest.py that "
    "builds your network and loads its weights (docs/scorers.md)"
)
"""The next step named by every refusal of a file that is not a shortcutgates checkpoint."""


def _zip_names(path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return []


def _refuse_other_archives(path, names: list[str]) -> None:
    """TorchScript and torch.export archives are zip files too: name them instead of calling them corrupt."""
    rel = [n.split("/", 1)[-1] for n in names]
    if any(r.startswith("code/") for r in rel) or "constants.pkl" in rel:
        raise CheckpointError(
            f"{path}: a TorchScript archive (torch.jit.save); it runs TorchScript code when "
            f"loaded, so shortcutgates does not load it: {OTHER_MODELS}"
        )
    if any(r.startswith("models/") and r.endswith(".json") for r in rel) and "data.pkl" not in rel:
        raise CheckpointError(
            f"{path}: a torch.export program; name it with the .pt2 suffix so it is read as one "
            "(with its input contract)"
        )


class LoadedCheckpoint(NamedTuple):
    """A model rebuilt from a checkpoint, ready for :func:`shortcutgates.model.evaluate.predict_scores`."""

    model: ResNet
    """In eval mode, on the requested device."""
    preprocess: str
    """Name of the deterministic preprocessing the model expects (``preprocess.get_preprocessor``)."""
    payload: dict
    """The whole checkpoint dict (metrics, configs, data provenance)."""


def preprocess_record(name: str) -> dict:
    """The ``preprocess`` entry of a checkpoint: the mode and the constants it depends on."""
    from shortcutgates.model import preprocess as pp

    get_preprocessor(name)
    return {"name": name, "clip": float(pp.CLIP), "annulus_fraction": [float(f) for f in pp.ANNULUS_FRACTION]}


def save_checkpoint(path, payload: dict) -> None:
    """Write ``payload`` (a checkpoint dict, docs/design.md#checkpoint) to ``path`` atomically (temporary file + rename)."""
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise ValueError(f"save_checkpoint: payload lacks key(s) {', '.join(missing)}")
    buf = io.BytesIO()
    torch.save(payload, buf)
    write_bytes_atomic(path, buf.getvalue())


def read_payload(path, map_location="cpu") -> dict:
    """``torch.load(weights_only=True)`` with every failure turned into a one-line :class:`CheckpointError`."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head != b"PK\x03\x04":
        kind = (
            "a legacy (pre-1.6) torch pickle" if head[:1] == b"\x80" else f"not a torch zip file (starts with {head!r})"
        )
        raise CheckpointError(f"{path}: {kind}; truncated or corrupt, or not a shortcutgates checkpoint")
    _refuse_other_archives(path, _zip_names(path))
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        import re

        # name the class only: torch's message goes on to advise allow-listing it, the opposite of this refusal
        found = re.search(r"GLOBAL\s+([\w.]+)", str(exc)) or re.search(r"Unsupported operand\s+(\d+)", str(exc))
        detail = ("it names " + found.group(1)) if found else ""
        raise CheckpointError(
            f"{path}: refused, the file needs unpickling of arbitrary objects ({detail or 'not weights-only'}); "
            f"loading it could run arbitrary code. A whole pickled nn.Module or another tool's file: {OTHER_MODELS}; "
            "a shortcutgates checkpoint carrying extra objects: re-save it as a plain dict of tensors, numbers "
            "and strings, so that torch.load(path, weights_only=True) reads it"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        msg = " ".join(str(exc).split())[:160]
        raise CheckpointError(
            f"{path}: not a readable torch file, truncated or corrupt ({type(exc).__name__}: {msg})"
        ) from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: holds a {type(payload).__name__}, expected a shortcutgates checkpoint dict")
    return payload


def check_payload(path, payload: dict) -> None:
    """Refuse a dict of another format, a newer version, or one lacking a required key."""
    fmt = payload.get("format")
    if fmt is None and payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
        first = next(iter(payload))
        raise CheckpointError(
            f"{path}: a bare state_dict ({len(payload)} tensors, e.g. {first!r}) of a network "
            f"shortcutgates does not know, so it cannot be run: {OTHER_MODELS}"
        )
    if fmt != FORMAT:
        raise CheckpointError(f"{path}: format is {fmt!r}, expected {FORMAT!r}; {OTHER_MODELS}")
    version = payload.get("version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path}: version must be a positive int (got {version!r})")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {version} is newer than this shortcutgates reads ({FORMAT_VERSION}); upgrade it"
        )
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks key(s) {', '.join(missing)}")


def model_from_payload(path, payload: dict, state_key: str = "state_dict") -> ResNet:
    """Rebuild the network and load ``payload[state_key]``; mismatches become :class:`CheckpointError`."""
    try:
        model = build_model(ModelConfig.from_dict(dict(payload["model_config"])))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: model_config is invalid ({exc})") from None
    try:
        model.load_state_dict(payload[state_key], strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = "; ".join(lines[1:3]) if len(lines) > 1 else (lines[0] if lines else type(exc).__name__)
        raise CheckpointError(
            f"{path}: state_dict does not fit the architecture in model_config ({detail[:200]}); "
            f"for another architecture: {OTHER_MODELS}"
        ) from None
    return model


def load_checkpoint(path, map_location="cpu") -> LoadedCheckpoint:
    """Load a checkpoint into a ready model (eval mode) with its preprocessing name.

    Raises
    ------
    CheckpointError
        A directory, a missing or truncated file, a file needing unpickling, another format, a
        newer version, a missing key, an unknown preprocessing, or weights of another architecture.
    """
    payload = read_payload(path, map_location)
    check_payload(path, payload)
    pre = payload["preprocess"]
    name = pre.get("name") if isinstance(pre, dict) else pre
    try:
        get_preprocessor(name)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    model = model_from_payload(path, payload).to(
        map_location if isinstance(map_location, (str, torch.device)) else "cpu"
    )
    model.eval()
    return LoadedCheckpoint(model, name, payload)


def recorded_manifest(path) -> Path:
    """The training manifest a checkpoint records (``data.manifest``), after checking its sha256.

    Raises :class:`CheckpointError` (one line, naming the way out: ``--data DIR``) when the
    checkpoint records none, the manifest is gone, or its content changed since training.
    """
    from shortcutgates.model.dataset import manifest_sha256

    payload = read_payload(path)
    check_payload(path, payload)
    data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
    manifest, sha = data.get("manifest"), data.get("sha256")
    fix = "pass the manifest to gate with --data DIR"
    if not manifest or not sha:
        raise CheckpointError(f"{path}: records no training manifest with its sha256; {fix}")
    where = Path(manifest)
    if not where.exists():
        raise CheckpointError(f"{path}: its training manifest {manifest} is not there (moved or deleted); {fix}")
    now = manifest_sha256(where)
    if now != sha:
        raise CheckpointError(
            f"{path}: its training manifest {manifest} has changed since training (sha256 "
            f"{sha[:12]} recorded, {now[:12]} now); {fix}"
        )
    return where.resolve()


def checkpoint_sha256(path) -> str:
    """Hex sha256 of the checkpoint file (the key of the score cache)."""
    from shortcutgates.data.io import file_sha256

    return file_sha256(os.fspath(path))
