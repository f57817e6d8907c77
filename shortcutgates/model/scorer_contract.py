"""The input contract of a model file, and the :class:`Scorer` every way of bringing a model in returns.

An :class:`InputContract` says what a model takes and gives — band order, units, which of the
library's preprocessing modes to apply (or none), stamp size, layout, logit or probability — read
from a file's metadata (key :data:`CONTRACT_KEY`) or its sidecar ``<file>.json``
(:func:`read_contract`, :func:`write_sidecar`). :class:`PreprocessCache` shares preprocessed stamp
batches between the models of one sweep. The loaders are :mod:`shortcutgates.model.scorers` (checkpoints,
callables, :func:`~shortcutgates.model.scorers.load_scorer`) and :mod:`shortcutgates.model.exported` (ONNX,
``.pt2``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from shortcutgates.data.schema import BANDS

CONTRACT_KEY = "shortcutgates.input_contract"
"""Metadata key (ONNX ``metadata_props``; ``.pt2`` extra file name) holding the contract JSON."""
CONTRACT_FORMAT = "shortcutgates.input_contract/1"
SIDECAR_SUFFIX = ".json"
"""The sidecar of ``model.onnx`` is ``model.onnx.json``."""
UNITS = ("nanomaggies",)
LAYOUTS = ("NCHW", "NHWC")
OUTPUTS = ("logit", "probability")
PREPROCESS_NONE = "none"


ScoreFn = Callable[[np.ndarray], np.ndarray]


class ScorerError(ValueError):
    """A model file or scorer that cannot be used; the one-line message names the file and the problem."""


@dataclass(frozen=True)
class InputContract:
    """What a model file expects as input and gives as output.

    ``bands``: the model's input channels, each one of the data's bands (g, r, z), in the model's
    order; ``units``: ``nanomaggies`` (as stored); ``preprocess``: ``none`` (the model takes raw
    nanomaggies) or a library mode (``raw_robust``, ``residual``) applied before the model;
    ``stamp_size``: ``[H, W]`` in pixels or null (any); ``layout``: ``NCHW`` or ``NHWC`` (Keras);
    ``output``: ``logit`` or ``probability`` (a column ``(N,)`` or ``(N, 1)``).
    """

    bands: tuple[str, ...] = BANDS
    units: str = "nanomaggies"
    preprocess: str = PREPROCESS_NONE
    stamp_size: tuple[int, int] | None = None
    layout: str = "NCHW"
    output: str = "logit"

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "InputContract":
        """Validate a contract read from ``where``; every problem is one line naming ``where``."""
        if not isinstance(d, dict):
            raise ScorerError(f"{where}: input contract must be a JSON object (got {type(d).__name__})")
        d = {k: v for k, v in d.items() if k != "format"}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ScorerError(
                f"{where}: unknown input-contract key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        bands = tuple(d.get("bands", BANDS))
        bad = [b for b in bands if b not in BANDS]
        if not bands or bad or len(set(bands)) != len(bands):
            raise ScorerError(f"{where}: bands {list(bands)} must be distinct bands of the data ({', '.join(BANDS)})")
        size = d.get("stamp_size")
        if size is not None:
            if not (
                isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size)
            ):
                raise ScorerError(f"{where}: stamp_size must be [H, W] in pixels or null (got {size!r})")
            size = (int(size[0]), int(size[1]))
        contract = cls(
            bands=bands,
            units=d.get("units", "nanomaggies"),
            preprocess=d.get("preprocess", PREPROCESS_NONE),
            stamp_size=size,
            layout=d.get("layout", "NCHW"),
            output=d.get("output", "logit"),
        )
        for name, allowed in (("units", UNITS), ("layout", LAYOUTS), ("output", OUTPUTS)):
            if getattr(contract, name) not in allowed:
                raise ScorerError(
                    f"{where}: {name} must be one of {', '.join(allowed)} (got {getattr(contract, name)!r}); "
                    f"the data are stored as float32 nanomaggies, bands {', '.join(BANDS)}"
                )
        if contract.preprocess != PREPROCESS_NONE:
            from shortcutgates.model.preprocess import PREPROCESSORS

            if contract.preprocess not in PREPROCESSORS:
                raise ScorerError(
                    f"{where}: preprocess must be 'none' or one of {', '.join(PREPROCESSORS)} "
                    f"(got {contract.preprocess!r}); other preprocessing belongs inside the model"
                )
        return contract

    def to_dict(self) -> dict:
        d = asdict(self)
        d["bands"], d["stamp_size"] = list(self.bands), None if self.stamp_size is None else list(self.stamp_size)
        return {"format": CONTRACT_FORMAT, **d}

    def check_stamp(self, hw: tuple[int, int], where: str) -> None:
        """Refuse data whose stamps are not the contract's size."""
        if self.stamp_size is not None and tuple(hw) != self.stamp_size:
            raise ScorerError(
                f"{where}: the model takes {self.stamp_size[0]}x{self.stamp_size[1]} px stamps, "
                f"the data hold {hw[0]}x{hw[1]} px (gate it on stamps of its size, or export it "
                "with a dynamic input size)"
            )

    def model_input(self, images: np.ndarray, cache: "PreprocessCache | None" = None) -> np.ndarray:
        """Raw ``(N, 3, H, W)`` nanomaggies -> the array the model takes (bands, preprocessing, layout)."""
        images = np.asarray(images, np.float32)
        if self.preprocess != PREPROCESS_NONE:
            images = (cache or PreprocessCache(0))(self.preprocess, images)
        x = images[:, [BANDS.index(b) for b in self.bands]]
        if self.layout == "NHWC":
            x = x.transpose(0, 2, 3, 1)
        return np.ascontiguousarray(x, np.float32)

    def scores(self, output, n: int, where: str) -> np.ndarray:
        """Model output -> ``(n,)`` float64 probabilities (a logit goes through the logistic function)."""
        out = np.asarray(output, np.float64)
        if out.shape not in ((n,), (n, 1)):
            raise ScorerError(
                f"{where}: the model returned shape {out.shape} for {n} stamps; expected ({n},) or ({n}, 1)"
            )
        out = out.reshape(n)
        if self.output == "logit":
            return np.exp(-np.logaddexp(0.0, -out))
        if np.any((out < 0) | (out > 1)):
            raise ScorerError(
                f"{where}: output is declared 'probability' but values lie outside [0, 1] "
                f"(min {out.min():.3g}, max {out.max():.3g}); declare 'logit'"
            )
        return out


class PreprocessCache:
    """Preprocessed copies of raw stamp batches, by (mode, content hash), shared by the models of one sweep.

    Models gated on one data read see the same stamps — the samples and the seeded perturbations
    of every gate — so each batch is preprocessed once, not once per model. At most ``max_bytes``
    of preprocessed arrays are kept (least recently used dropped first); ``max_bytes=0`` keeps none.
    """

    def __init__(self, max_bytes: int = 2 << 30):
        from collections import OrderedDict

        self.max_bytes, self.nbytes, self.hits, self.misses = int(max_bytes), 0, 0, 0
        self._store: OrderedDict = OrderedDict()

    def __call__(self, mode: str, raw: np.ndarray) -> np.ndarray:
        from shortcutgates.model.preprocess import get_preprocessor

        raw = np.ascontiguousarray(raw, np.float32)
        if self.max_bytes <= 0:
            return get_preprocessor(mode)(raw)
        key = (mode, raw.shape, hashlib.blake2b(raw.data, digest_size=16).hexdigest())
        if key in self._store:
            self.hits += 1
            self._store.move_to_end(key)
            return self._store[key]
        self.misses += 1
        out = get_preprocessor(mode)(raw)
        out.setflags(write=False)
        self._store[key] = out
        self.nbytes += out.nbytes
        while self.nbytes > self.max_bytes and self._store:
            self.nbytes -= self._store.popitem(last=False)[1].nbytes
        return out


class Scorer(NamedTuple):
    """A loaded model: what the gate context needs, and what the report says about it."""

    score_fn: ScoreFn
    """Raw ``(N, 3, H, W)`` nanomaggies -> ``(N,)`` float64, higher = more lens-like."""
    preprocess: object
    """The model's input preprocessing for the model-input probes: a library mode name or a callable."""
    info: dict
    """The report's ``model`` block (path, kind, sha256, contract)."""
    contract: InputContract | None = None
    score_inputs: ScoreFn | None = None
    """Inputs already preprocessed by the named mode ``preprocess`` -> the same scores as ``score_fn`` of
    their raw stamps (None: only raw stamps), so a gate context can hand over its shared preprocessed
    samples instead of having each model preprocess (and hash) them again."""


class _Identity:
    """Preprocessing ``none``: the model sees raw nanomaggies (named, so reports can say so)."""

    name = PREPROCESS_NONE

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(images, np.float32)


def _preprocess_of(contract: InputContract):
    return _Identity() if contract.preprocess == PREPROCESS_NONE else contract.preprocess


def sidecar_path(path) -> Path:
    return Path(str(path) + SIDECAR_SUFFIX)


def write_sidecar(path, contract: InputContract) -> Path:
    """Write ``<path>.json`` holding ``contract`` (atomically); returns its path."""
    from shortcutgates.data.io import write_bytes_atomic

    out = sidecar_path(path)
    write_bytes_atomic(out, (json.dumps(contract.to_dict(), indent=2) + "\n").encode())
    return out


def read_contract(path, embedded: str | None) -> InputContract:
    """The contract of a model file: embedded JSON text and/or the sidecar; both present must agree."""
    path = Path(path)
    found = {}
    if embedded is not None:
        found[f"{path} (metadata {CONTRACT_KEY})"] = embedded
    side = sidecar_path(path)
    if side.is_file():
        found[str(side)] = side.read_text(encoding="utf-8")
    if not found:
        raise ScorerError(
            f"{path}: no input contract (band order, units, preprocessing, stamp size, output); "
            f"write one to {side.name} next to it, e.g. "
            f"{json.dumps(InputContract(stamp_size=(64, 64)).to_dict())} (docs/scorers.md)"
        )
    contracts = []
    for where, text in found.items():
        try:
            contracts.append(InputContract.from_dict(json.loads(text), where))
        except json.JSONDecodeError as exc:
            raise ScorerError(f"{where}: input contract is not JSON ({exc})") from None
    if len(contracts) == 2 and contracts[0] != contracts[1]:
        raise ScorerError(f"{path}: the embedded input contract and {side.name} disagree; keep one")
    return contracts[0]
