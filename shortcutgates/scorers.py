"""Scorers: any lens finder as ``score_fn(images) -> scores`` for the model gates (docs/design.md#scorers).

A *scorer* takes raw stamps exactly as the manifest stores them — float32 ``(N, 3, H, W)`` in
nanomaggies, bands g, r, z — and returns ``(N,)`` float scores, higher = more lens-like. The gates
only ever call it on raw (possibly masked or transplanted) stamps, so a model's own preprocessing
must live inside the scorer. Four ways in:

* a shortcutgates checkpoint (``.pt``, :mod:`shortcutgates.checkpoint`), loaded without unpickling;
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

This module imports neither torch nor onnxruntime until a file that needs them is loaded.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from .io import file_sha256
from .schema import BANDS

CONTRACT_KEY = "shortcutgates.input_contract"
"""Metadata key (ONNX ``metadata_props``; ``.pt2`` extra file name) holding the contract JSON."""
CONTRACT_FORMAT = "shortcutgates.input_contract/1"
SIDECAR_SUFFIX = ".json"
"""The sidecar of ``model.onnx`` is ``model.onnx.json``."""
UNITS = ("nanomaggies",)
LAYOUTS = ("NCHW", "NHWC")
OUTPUTS = ("logit", "probability")
PREPROCESS_NONE = "none"

ONNX_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training"})
"""Operator domains of the ONNX standard; anything else is a custom (possibly Python) operator."""
PT2_TARGET_PREFIXES = ("torch.ops.aten.", "_operator.getitem")
"""Node targets a ``.pt2`` program may call: core ATen operators and tuple indexing."""

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
            raise ScorerError(f"{where}: unknown input-contract key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        bands = tuple(d.get("bands", BANDS))
        bad = [b for b in bands if b not in BANDS]
        if not bands or bad or len(set(bands)) != len(bands):
            raise ScorerError(f"{where}: bands {list(bands)} must be distinct bands of the data ({', '.join(BANDS)})")
        size = d.get("stamp_size")
        if size is not None:
            if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size)):
                raise ScorerError(f"{where}: stamp_size must be [H, W] in pixels or null (got {size!r})")
            size = (int(size[0]), int(size[1]))
        contract = cls(bands=bands, units=d.get("units", "nanomaggies"), preprocess=d.get("preprocess", PREPROCESS_NONE),
                       stamp_size=size, layout=d.get("layout", "NCHW"), output=d.get("output", "logit"))
        for name, allowed in (("units", UNITS), ("layout", LAYOUTS), ("output", OUTPUTS)):
            if getattr(contract, name) not in allowed:
                raise ScorerError(f"{where}: {name} must be one of {', '.join(allowed)} (got {getattr(contract, name)!r}); "
                                  f"the data are stored as float32 nanomaggies, bands {', '.join(BANDS)}")
        if contract.preprocess != PREPROCESS_NONE:
            from .preprocess import PREPROCESSORS

            if contract.preprocess not in PREPROCESSORS:
                raise ScorerError(f"{where}: preprocess must be 'none' or one of {', '.join(PREPROCESSORS)} "
                                  f"(got {contract.preprocess!r}); other preprocessing belongs inside the model")
        return contract

    def to_dict(self) -> dict:
        d = asdict(self)
        d["bands"], d["stamp_size"] = list(self.bands), None if self.stamp_size is None else list(self.stamp_size)
        return {"format": CONTRACT_FORMAT, **d}

    def check_stamp(self, hw: tuple[int, int], where: str) -> None:
        """Refuse data whose stamps are not the contract's size."""
        if self.stamp_size is not None and tuple(hw) != self.stamp_size:
            raise ScorerError(f"{where}: the model takes {self.stamp_size[0]}x{self.stamp_size[1]} px stamps, "
                              f"the data hold {hw[0]}x{hw[1]} px (gate it on stamps of its size, or export it "
                              "with a dynamic input size)")

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
            raise ScorerError(f"{where}: the model returned shape {out.shape} for {n} stamps; expected ({n},) or ({n}, 1)")
        out = out.reshape(n)
        if self.output == "logit":
            return np.exp(-np.logaddexp(0.0, -out))
        if np.any((out < 0) | (out > 1)):
            raise ScorerError(f"{where}: output is declared 'probability' but values lie outside [0, 1] "
                              f"(min {out.min():.3g}, max {out.max():.3g}); declare 'logit'")
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
        from .preprocess import get_preprocessor

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
    from .io import write_bytes_atomic

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
        raise ScorerError(f"{path}: no input contract (band order, units, preprocessing, stamp size, output); "
                          f"write one to {side.name} next to it, e.g. "
                          f"{json.dumps(InputContract(stamp_size=(64, 64)).to_dict())} (docs/scorers.md)")
    contracts = []
    for where, text in found.items():
        try:
            contracts.append(InputContract.from_dict(json.loads(text), where))
        except json.JSONDecodeError as exc:
            raise ScorerError(f"{where}: input contract is not JSON ({exc})") from None
    if len(contracts) == 2 and contracts[0] != contracts[1]:
        raise ScorerError(f"{path}: the embedded input contract and {side.name} disagree; keep one")
    return contracts[0]


# --- ONNX ---------------------------------------------------------------------------------------
def _onnx_modules():
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise ScorerError(f"--model *.onnx needs onnx and onnxruntime: pip install 'shortcutgates[onnx]' "
                          f"({exc.name or exc} is missing)") from None
    return onnx, onnxruntime


def check_onnx_graph(model, where: str) -> None:
    """Refuse a graph with operators outside the ONNX standard domains (custom or Python operators)."""
    local = {(f.domain, f.name) for f in model.functions}
    allowed = ONNX_DOMAINS | {f.domain for f in model.functions}
    graphs = [model.graph] + list(model.functions)
    while graphs:
        g = graphs.pop()
        for node in g.node:
            if node.domain not in ONNX_DOMAINS and (node.domain, node.op_type) not in local:
                raise ScorerError(f"{where}: refused, node {node.name or node.op_type!r} uses operator "
                                  f"{node.domain}.{node.op_type} outside the ONNX standard (custom or Python "
                                  f"operators could run code); export with standard operators only")
            for attr in node.attribute:
                graphs += [attr.g] if attr.HasField("g") else []
                graphs += list(attr.graphs)
    bad = sorted(i.domain for i in model.opset_import if i.domain not in allowed)
    if bad:
        raise ScorerError(f"{where}: refused, imports operator set(s) {', '.join(bad)} outside the ONNX standard")


def load_onnx(path, cache: PreprocessCache | None = None) -> Scorer:
    """An ONNX lens finder (e.g. exported from Keras/TensorFlow with tf2onnx, or from JAX)."""
    onnx, ort = _onnx_modules()
    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        raise ScorerError(f"{path}: not a readable ONNX file ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})") from None
    check_onnx_graph(model, str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    contract = read_contract(path, meta.get(CONTRACT_KEY))
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if len(inputs) != 1:
        raise ScorerError(f"{path}: the graph takes {len(inputs)} inputs; a lens finder takes one image batch")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    declared = contract
    contract = _check_input_dims(dims, contract, str(path))
    files = onnx_files(model, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ScorerError(f"{path}: onnxruntime cannot load it ({' '.join(str(exc).split())[:200]})") from None
    name = session.get_inputs()[0].name
    where = str(path)

    def score_fn(images: np.ndarray) -> np.ndarray:
        x = contract.model_input(images, cache)
        return contract.scores(session.run(None, {name: x})[0], len(x), where)

    info = {"path": str(path), "kind": "onnx", "sha256": files_sha256(files), "files": files,
            "input_contract": declared.to_dict()}
    return Scorer(score_fn, _preprocess_of(contract), info, contract)


def onnx_files(model, path: Path) -> list[dict]:
    """The files an ONNX model is made of: the ``.onnx`` and each external-data file its tensors name
    (``finder.onnx.data``, written by ``torch.onnx.export`` for large weights), with their sha256.

    Raises
    ------
    ScorerError
        An external-data file is missing, or lies outside the model's directory.
    """
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    out = [{"path": path.name, "sha256": file_sha256(path)}]
    base = path.parent.resolve()
    names = sorted({ExternalDataInfo(t).location for t in _get_all_tensors(model) if uses_external_data(t)})
    for name in names:
        file = (base / name).resolve()
        if base not in file.parents:
            raise ScorerError(f"{path}: refused, external data {name!r} lies outside the model's directory")
        if not file.is_file():
            raise ScorerError(f"{path}: its weights are in the external-data file {name}, which is missing "
                              f"(keep it next to the .onnx, or export with external_data=False)")
        out.append({"path": Path(name).as_posix(), "sha256": file_sha256(file)})
    return out


def files_sha256(files: list[dict]) -> str:
    """sha256 of a model made of several files (names and contents): the ``.onnx`` alone when it is one file."""
    if len(files) == 1:
        return files[0]["sha256"]
    h = hashlib.sha256(b"shortcutgates.model-files/1\0")
    for f in files:
        h.update(f"{f['path']}\0{f['sha256']}\0".encode())
    return h.hexdigest()


def _check_input_dims(dims: list, contract: InputContract, where: str) -> InputContract:
    """Compare a graph's static input shape with the contract (unknown dims are not checked).

    Returns the contract the data are checked against: a fixed input size read from the model
    fills a ``stamp_size`` the contract leaves null, so stamps of another size are one line
    (:meth:`InputContract.check_stamp`), not an error inside the runtime at every gate.
    """
    if len(dims) != 4:
        raise ScorerError(f"{where}: the model input has {len(dims)} dimensions; expected 4 ({contract.layout})")
    channels = dims[1] if contract.layout == "NCHW" else dims[3]
    hw = tuple(dims[2:4]) if contract.layout == "NCHW" else tuple(dims[1:3])
    if channels is not None and channels != len(contract.bands):
        raise ScorerError(f"{where}: the model takes {channels} channels ({contract.layout}), the input contract "
                          f"names {len(contract.bands)} bands {list(contract.bands)}")
    if contract.stamp_size is not None and None not in hw and hw != contract.stamp_size:
        raise ScorerError(f"{where}: the model input is {hw[0]}x{hw[1]} px, the input contract says "
                          f"{contract.stamp_size[0]}x{contract.stamp_size[1]}")
    if contract.stamp_size is None and None not in hw:
        from dataclasses import replace

        return replace(contract, stamp_size=(int(hw[0]), int(hw[1])))
    return contract


# --- torch.export (.pt2) ------------------------------------------------------------------------
def _zip_json(zf: zipfile.ZipFile, name: str, where: str):
    try:
        return json.loads(zf.read(name))
    except (KeyError, ValueError) as exc:
        raise ScorerError(f"{where}: not a torch.export archive ({name}: {exc})") from None


def _pt2_targets(node_lists: list) -> list[str]:
    """Every ``target`` of the graph's nodes, nested graphs included (JSON walk)."""
    out, stack = [], list(node_lists)
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("target"), str) and "inputs" in item:
                out.append(item["target"])
            stack += list(item.values())
        elif isinstance(item, list):
            stack += item
    return out


def check_pt2_archive(path) -> str | None:
    """Refuse a ``.pt2`` that ``torch.export.load`` would unpickle or that would run Python.

    Checks the archive's JSON before torch sees it: weights and constants stored as raw tensors
    (no ``use_pickle``, no custom or opaque objects), no guard code, only ATen node targets, and
    sample inputs readable with ``torch.load(weights_only=True)``. Returns the embedded contract
    JSON text, if any.
    """
    where = str(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ScorerError(f"{where}: not a torch.export archive ({exc})") from None
    with zf:
        names = zf.namelist()
        roots = {n.split("/", 1)[0] for n in names}
        models = [n for n in names if n.split("/", 1)[-1].startswith("models/") and n.endswith(".json")]
        if len(roots) != 1 or not models:
            kind = "a TorchScript archive" if any("/code/" in n for n in names) else "not a torch.export archive"
            raise ScorerError(f"{where}: {kind} (no models/*.json); save the program with torch.export.save")
        root = roots.pop()
        for name in names:
            rel = name[len(root) + 1:]
            if rel.endswith("_config.json") and rel.startswith(("data/weights/", "data/constants/")):
                for fqn, meta in _zip_json(zf, name, where).get("config", {}).items():
                    path_name = str(meta.get("path_name", ""))
                    if meta.get("use_pickle") or path_name.startswith(("custom_obj", "opaque_obj")):
                        raise ScorerError(f"{where}: refused, {fqn} is stored as a pickled or custom object "
                                          "(loading it could run code); export with plain tensor weights")
            elif rel.startswith(("data/weights/", "data/constants/")) and rel.endswith(".pt"):
                raise ScorerError(f"{where}: refused, legacy pickled weights {rel}; re-save with this torch's torch.export.save")
        for name in models:
            program = _zip_json(zf, name, where)
            if program.get("guards_code"):
                raise ScorerError(f"{where}: refused, the program carries guard code that would be executed")
            bad = sorted({t for t in _pt2_targets([program.get("graph_module", {})])
                          if not t.startswith(PT2_TARGET_PREFIXES)})
            if bad:
                raise ScorerError(f"{where}: refused, calls operators outside ATen ({', '.join(bad[:3])}); custom or "
                                  "Python operators could run code")
        _check_sample_inputs(zf, [n for n in names if "/data/sample_inputs/" in n], where)
        extra = f"{root}/extra/{CONTRACT_KEY}"
        return zf.read(extra).decode() if extra in names else None


def _check_sample_inputs(zf: zipfile.ZipFile, names: list[str], where: str) -> None:
    import io
    import pickle

    import torch

    for name in names:
        try:
            torch.load(io.BytesIO(zf.read(name)), weights_only=True)
        except pickle.UnpicklingError:
            raise ScorerError(f"{where}: refused, sample inputs {name.split('/', 1)[-1]} need unpickling") from None


def load_exported(path, cache: PreprocessCache | None = None) -> Scorer:
    """A ``torch.export`` program (``torch.export.save(torch.export.export(model, (x,)), path)``)."""
    path = Path(path)
    embedded = check_pt2_archive(path)
    contract = read_contract(path, embedded)
    import torch

    try:
        program = torch.export.load(str(path))
        module = program.module(check_guards=False)
    except Exception as exc:
        raise ScorerError(f"{path}: torch.export.load failed ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None
    spec = next((s for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"), None)
    meta = program.graph_module.graph.find_nodes(op="placeholder", target=spec.arg.name)[0].meta.get("val") if spec else None
    declared = contract
    if meta is not None:
        contract = _check_input_dims([d if isinstance(d, int) else None for d in meta.shape], contract, str(path))
    where = str(path)

    @torch.no_grad()
    def score_fn(images: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(contract.model_input(images, cache))  # band selection copies: writable
        return contract.scores(module(x).double().numpy(), len(x), where)

    info = {"path": str(path), "kind": "torch.export", "sha256": file_sha256(path), "input_contract": declared.to_dict()}
    return Scorer(score_fn, _preprocess_of(contract), info, contract)


# --- shortcutgates checkpoints and user callables -------------------------------------------------
def load_checkpoint_scorer(path, cache: PreprocessCache | None = None) -> Scorer:
    """A shortcutgates checkpoint: its network and recorded preprocessing (probabilities).

    With a ``cache`` the preprocessing goes through it (the same numbers as
    :func:`shortcutgates.evaluate.predict_scores`, which preprocesses each stamp on its own).
    """
    from .checkpoint import load_checkpoint
    from .evaluate import logits_of, predict_scores, sigmoid

    loaded = load_checkpoint(path)
    if cache is not None:
        def score_fn(raw):
            return sigmoid(logits_of(loaded.model, cache(loaded.preprocess, raw)))
    else:
        def score_fn(raw):
            return np.asarray(predict_scores(loaded, raw), np.float64)
    info = {"path": str(path), "kind": "shortcutgates.checkpoint", "preprocess": loaded.preprocess}
    for key in ("format", "version", "model_config", "train_config", "data", "metrics", "seed", "epoch"):
        if key in loaded.payload:
            info[key] = loaded.payload[key]
    return Scorer(score_fn, loaded.preprocess, info)


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

    info = {"path": None, "kind": "callable", "name": name,
            "callable": f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"}
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
