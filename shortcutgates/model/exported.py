"""Model files exported from any framework: ONNX (``.onnx``) and ``torch.export`` programs (``.pt2``).

Each file is checked before it is loaded — an ONNX graph may use only the standard operator domains
(:func:`check_onnx_graph`), a ``.pt2`` archive may hold no pickled or custom objects, no guard code
and only ATen operators (:func:`check_pt2_archive`) — then read with its input contract
(:func:`shortcutgates.model.scorer_contract.read_contract`) into a :class:`~shortcutgates.model.scorer_contract.Scorer`. Checkpoints,
callables and :func:`~shortcutgates.model.scorers.load_scorer` (which picks a loader by suffix) are
:mod:`shortcutgates.model.scorers`. Neither torch nor onnxruntime is imported until a
file is loaded.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np

from shortcutgates.data.io import file_sha256
from shortcutgates.model.scorer_contract import (
    CONTRACT_KEY,
    InputContract,
    PreprocessCache,
    Scorer,
    ScorerError,
    _preprocess_of,
    read_contract,
)

ONNX_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training"})
"""Operator domains of the ONNX standard; anything else is a custom (possibly Python) operator."""
PT2_TARGET_PREFIXES = ("torch.ops.aten.", "_operator.getitem")
"""Node targets a ``.pt2`` program may call: core ATen operators and tuple indexing."""


# --- ONNX ---------------------------------------------------------------------------------------
def _onnx_modules():
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise ScorerError(
            f"--model *.onnx needs onnx and onnxruntime: pip install 'shortcutgates[onnx]' "
            f"({exc.name or exc} is missing)"
        ) from None
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
                raise ScorerError(
                    f"{where}: refused, node {node.name or node.op_type!r} uses operator "
                    f"{node.domain}.{node.op_type} outside the ONNX standard (custom or Python "
                    f"operators could run code); export with standard operators only"
                )
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
        raise ScorerError(
            f"{path}: not a readable ONNX file ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})"
        ) from None
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

    info = {
        "path": str(path),
        "kind": "onnx",
        "sha256": files_sha256(files),
        "files": files,
        "input_contract": declared.to_dict(),
    }
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
            raise ScorerError(
                f"{path}: its weights are in the external-data file {name}, which is missing "
                f"(keep it next to the .onnx, or export with external_data=False)"
            )
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
        raise ScorerError(
            f"{where}: the model takes {channels} channels ({contract.layout}), the input contract "
            f"names {len(contract.bands)} bands {list(contract.bands)}"
        )
    if contract.stamp_size is not None and None not in hw and hw != contract.stamp_size:
        raise ScorerError(
            f"{where}: the model input is {hw[0]}x{hw[1]} px, the input contract says "
            f"{contract.stamp_size[0]}x{contract.stamp_size[1]}"
        )
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
            rel = name[len(root) + 1 :]
            if rel.endswith("_config.json") and rel.startswith(("data/weights/", "data/constants/")):
                for fqn, meta in _zip_json(zf, name, where).get("config", {}).items():
                    path_name = str(meta.get("path_name", ""))
                    if meta.get("use_pickle") or path_name.startswith(("custom_obj", "opaque_obj")):
                        raise ScorerError(
                            f"{where}: refused, {fqn} is stored as a pickled or custom object "
                            "(loading it could run code); export with plain tensor weights"
                        )
            elif rel.startswith(("data/weights/", "data/constants/")) and rel.endswith(".pt"):
                raise ScorerError(
                    f"{where}: refused, legacy pickled weights {rel}; re-save with this torch's torch.export.save"
                )
        for name in models:
            program = _zip_json(zf, name, where)
            if program.get("guards_code"):
                raise ScorerError(f"{where}: refused, the program carries guard code that would be executed")
            bad = sorted(
                {t for t in _pt2_targets([program.get("graph_module", {})]) if not t.startswith(PT2_TARGET_PREFIXES)}
            )
            if bad:
                raise ScorerError(
                    f"{where}: refused, calls operators outside ATen ({', '.join(bad[:3])}); custom or "
                    "Python operators could run code"
                )
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
        raise ScorerError(
            f"{path}: torch.export.load failed ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
        ) from None
    spec = next((s for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"), None)
    meta = (
        program.graph_module.graph.find_nodes(op="placeholder", target=spec.arg.name)[0].meta.get("val")
        if spec
        else None
    )
    declared = contract
    if meta is not None:
        contract = _check_input_dims([d if isinstance(d, int) else None for d in meta.shape], contract, str(path))
    where = str(path)

    @torch.no_grad()
    def score_fn(images: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(contract.model_input(images, cache))  # band selection copies: writable
        return contract.scores(module(x).double().numpy(), len(x), where)

    info = {
        "path": str(path),
        "kind": "torch.export",
        "sha256": file_sha256(path),
        "input_contract": declared.to_dict(),
    }
    return Scorer(score_fn, _preprocess_of(contract), info, contract)
