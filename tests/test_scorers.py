"""Model files a team brings (ONNX, torch.export) and their input contract; refusals before anything runs.

One foreign architecture (:mod:`foreign_model`, a patch-token network on bands r, g) gives the same
scores in memory, as ``.pt2`` and as ONNX; its state_dict as a ``.pt`` is refused with the way in.
The fixture route is tested end to end in ``test_plugin_models.py``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import foreign_model as fm
from hostile_inputs import STAMP, stamp
from shortcutgates.model.checkpoint import CheckpointError
from shortcutgates.model.scorers import (
    CONTRACT_KEY,
    InputContract,
    ScorerError,
    callable_scorer,
    load_scorer,
    read_contract,
    write_sidecar,
)

torch.set_num_threads(1)
TOL = 1e-5


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.stack([stamp(rng, arc=bool(i % 2)) for i in range(16)])


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("foreign")
    model = fm.make_model()
    return {
        "model": model,
        "pt2": fm.export_pt2(model, tmp / "patchnet.pt2", STAMP),
        "onnx": fm.export_onnx(model, tmp / "patchnet.onnx", STAMP),
        "dir": tmp,
    }


@pytest.mark.parametrize("kind", ["pt2", "onnx"])
def test_model_file_scores_equal_the_model_in_memory(files, images, kind):
    reference = fm.probabilities(files["model"], images)
    scorer = load_scorer(files[kind])
    got = scorer.score_fn(images)
    assert got.shape == (len(images),) and got.dtype == np.float64
    np.testing.assert_allclose(got, reference, atol=TOL, rtol=0)
    assert reference.std() > 1e-4  # the comparison is not between constants
    assert scorer.info["input_contract"]["bands"] == ["r", "g"] and scorer.preprocess.name == "none"


def test_callable_scorer_passes_scores_through_and_checks_their_shape(files, images):
    model = files["model"]
    scorer = callable_scorer(lambda x: fm.probabilities(model, x))
    np.testing.assert_array_equal(scorer.score_fn(images), fm.probabilities(model, images))
    bad = callable_scorer(lambda x: np.zeros((len(x), 2)))
    with pytest.raises(ScorerError, match=r"returned shape \(16, 2\) for 16 stamps"):
        bad.score_fn(images)
    with pytest.raises(ScorerError, match="must return a callable"):
        callable_scorer(model.state_dict())


def test_contract_in_file_and_sidecar_must_agree(files, tmp_path):
    pt2 = tmp_path / "m.pt2"
    pt2.write_bytes(files["pt2"].read_bytes())
    write_sidecar(pt2, InputContract(bands=("r", "g"), stamp_size=(STAMP, STAMP), output="logit"))
    assert load_scorer(pt2).contract.bands == ("r", "g")  # the same contract twice is fine
    write_sidecar(pt2, InputContract(stamp_size=(STAMP, STAMP)))
    with pytest.raises(ScorerError, match="embedded input contract and m.pt2.json disagree"):
        load_scorer(pt2)


@pytest.mark.parametrize(
    "contract, message",
    [
        ({"bands": ["g", "r", "i"]}, "bands ['g', 'r', 'i'] must be distinct bands of the data (g, r, z)"),
        ({"units": "ADU"}, "units must be one of nanomaggies (got 'ADU')"),
        ({"preprocess": "zscale"}, "preprocess must be 'none' or one of raw_robust, residual (got 'zscale')"),
        ({"stamp_size": 64}, "stamp_size must be [H, W] in pixels or null (got 64)"),
        ({"output": "softmax"}, "output must be one of logit, probability (got 'softmax')"),
        ({"colour": "gri"}, "unknown input-contract key(s) colour"),
    ],
)
def test_bad_contract_is_one_line_naming_the_sidecar(files, tmp_path, contract, message):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(files["onnx"].read_bytes())
    Path(str(onnx) + ".json").write_text(json.dumps(contract))
    with pytest.raises(ScorerError) as err:
        load_scorer(onnx)
    assert str(err.value).startswith(f"{onnx}.json: ") and message in str(err.value) and "\n" not in str(err.value)


def test_model_file_without_contract_is_refused_with_an_example_sidecar(files, tmp_path):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(files["onnx"].read_bytes())
    with pytest.raises(ScorerError, match=r"no input contract .* write one to m\.onnx\.json next to it, e\.g\. \{"):
        load_scorer(onnx)


def test_contract_that_contradicts_the_graph_is_refused(files, tmp_path):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(files["onnx"].read_bytes())
    Path(str(onnx) + ".json").write_text(json.dumps({**fm.contract(STAMP), "bands": ["g", "r", "z"]}))
    with pytest.raises(ScorerError, match=r"the model takes 2 channels \(NCHW\), the input contract names 3 bands"):
        load_scorer(onnx)


def test_stamp_size_mismatch_with_the_data_is_one_line(files):
    contract = load_scorer(files["onnx"]).contract
    with pytest.raises(ScorerError, match=rf"takes {STAMP}x{STAMP} px stamps, the data hold 64x64 px"):
        contract.check_stamp((64, 64), "m.onnx")


def test_probability_output_outside_0_1_is_refused(images):
    contract = InputContract(output="probability")
    with pytest.raises(ScorerError, match=r"declared 'probability' but values lie outside \[0, 1\]"):
        contract.scores(np.linspace(-3, 3, 16), 16, "m.onnx")


def test_nhwc_layout_feeds_channels_last(images):
    x = InputContract(bands=("z", "g"), layout="NHWC").model_input(images)
    assert x.shape == (len(images), STAMP, STAMP, 2)
    np.testing.assert_array_equal(x[..., 0], images[:, 2])


# --- refusals before anything runs -------------------------------------------------------------
def _rewrite_zip(src: Path, dst: Path, edit) -> Path:
    """Copy a zip archive, passing each member's (name, bytes) through ``edit``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, edit(info.filename, zin.read(info.filename)))
    return dst


def _edit_json(suffix: str, change):
    def edit(name: str, data: bytes) -> bytes:
        if not name.endswith(suffix):
            return data
        obj = json.loads(data)
        change(obj)
        return json.dumps(obj).encode()

    return edit


def _custom_op(program):
    program["graph_module"]["graph"]["nodes"][0]["target"] = "torch.ops.evil.run_python.default"


def _pickled_weight(config):
    next(iter(config["config"].values()))["use_pickle"] = True


def _guards(program):
    program["guards_code"] = ["__import__('os').system('touch MARKER')"]


@pytest.mark.parametrize(
    "suffix, change, message",
    [
        ("models/model.json", _custom_op, "calls operators outside ATen (torch.ops.evil.run_python.default)"),
        ("model_weights_config.json", _pickled_weight, "is stored as a pickled or custom object"),
        ("models/model.json", _guards, "carries guard code that would be executed"),
    ],
    ids=["custom_op", "pickled_weight", "guard_code"],
)
def test_pt2_that_would_run_code_is_refused_before_loading(files, tmp_path, monkeypatch, suffix, change, message):
    bad = _rewrite_zip(files["pt2"], tmp_path / "bad.pt2", _edit_json(suffix, change))
    monkeypatch.setattr(torch.export, "load", lambda *a, **k: pytest.fail("torch.export.load was called"))
    with pytest.raises(ScorerError, match="refused") as err:
        load_scorer(bad)
    assert message in str(err.value) and str(err.value).startswith(f"{bad}: ")


def test_onnx_with_a_custom_operator_is_refused_before_a_session_is_made(files, tmp_path, monkeypatch):
    import onnx
    import onnxruntime

    model = onnx.load(str(files["onnx"]))
    model.graph.node[0].domain = "com.microsoft.pyop"
    model.opset_import.append(onnx.helper.make_opsetid("com.microsoft.pyop", 1))
    onnx.save(model, str(tmp_path / "bad.onnx"))
    monkeypatch.setattr(onnxruntime, "InferenceSession", lambda *a, **k: pytest.fail("a session was made"))
    with pytest.raises(
        ScorerError, match=r"refused, node .* uses operator com\.microsoft\.pyop\..* outside the ONNX standard"
    ):
        load_scorer(tmp_path / "bad.onnx")


def test_missing_onnxruntime_names_the_extra(files, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ScorerError, match=r"needs onnx and onnxruntime: pip install 'shortcutgates\[onnx\]'"):
        load_scorer(files["onnx"])


def test_not_a_model_file_is_one_line(tmp_path):
    (tmp_path / "x.onnx").write_bytes(b"\x00garbage")
    (tmp_path / "x.pt2").write_bytes(b"garbage")
    with pytest.raises(ScorerError, match="not a readable ONNX file"):
        load_scorer(tmp_path / "x.onnx")
    with pytest.raises(ScorerError, match="not a torch.export archive"):
        load_scorer(tmp_path / "x.pt2")


# --- the foreign network as a .pt: refused, with the way in ------------------------------------------
def _torchscript(model, path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        _jit_save(model, path)


def _jit_save(model, path):
    torch.jit.save(torch.jit.trace(model, torch.rand(1, 2, STAMP, STAMP)), str(path))


REFUSED_PT = {
    "state_dict": (
        lambda m, p: torch.save(m.state_dict(), p),
        r"a bare state_dict \(\d+ tensors, e\.g\. 'embed\.weight'\)",
    ),
    "pickled_module": (lambda m, p: torch.save(m, p), "refused, the file needs unpickling of arbitrary objects"),
    "torchscript": (_torchscript, r"a TorchScript archive \(torch\.jit\.save\); it runs TorchScript code"),
}


@pytest.mark.parametrize("case", sorted(REFUSED_PT))
def test_foreign_network_as_a_pt_file_is_refused_naming_the_ways_in(files, tmp_path, case):
    make, message = REFUSED_PT[case]
    make(files["model"], tmp_path / "patchnet.pt")
    with pytest.raises(CheckpointError) as err:
        load_scorer(tmp_path / "patchnet.pt")
    text = str(err.value)
    assert text.startswith(f"{tmp_path / 'patchnet.pt'}: ") and "\n" not in text
    assert re.search(message, text), text
    assert all(way in text for way in (".pt2", "ONNX", "shortcutgates_scorer", "docs/scorers.md"))
    assert "truncated or corrupt" not in text


def test_read_contract_takes_the_sidecar(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"")
    write_sidecar(tmp_path / "m.onnx", InputContract(preprocess="raw_robust", output="probability"))
    contract = read_contract(tmp_path / "m.onnx", None)
    assert (contract.preprocess, contract.output, contract.bands) == ("raw_robust", "probability", ("g", "r", "z"))
    assert json.loads((tmp_path / "m.onnx.json").read_text())["format"] == "shortcutgates.input_contract/1"
    assert CONTRACT_KEY == "shortcutgates.input_contract"


def test_loading_the_scorers_module_imports_neither_torch_nor_onnxruntime():
    code = "import sys, shortcutgates.model.scorers; print('torch' in sys.modules, 'onnxruntime' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "False"], done.stderr


def test_preprocess_cache_gives_the_same_scores_and_preprocesses_each_batch_once(images):
    from shortcutgates.model.scorers import PreprocessCache, load_checkpoint_scorer

    ckpt = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoints" / "clean.pt"
    cache = PreprocessCache()
    plain = load_checkpoint_scorer(ckpt).score_fn(images)
    first, second = (load_checkpoint_scorer(ckpt, cache) for _ in range(2))
    np.testing.assert_allclose(first.score_fn(images), plain, atol=1e-6, rtol=0)
    np.testing.assert_allclose(second.score_fn(images), plain, atol=1e-6, rtol=0)
    assert (cache.misses, cache.hits) == (1, 1)
    other = images.copy()
    other[0, 1, 0, 0] += 1.0  # another batch: another key
    first.score_fn(other)
    assert cache.misses == 2
    tiny = PreprocessCache(max_bytes=1)  # keeps nothing beyond the newest entry's budget
    tiny("raw_robust", images), tiny("raw_robust", other)
    assert tiny.nbytes == 0 and tiny.misses == 2


# --- any exporter: external data, fixed input shapes (issue 23) ----------------------------------
def _external_copy(files, directory: Path) -> Path:
    """PatchNet's ONNX file re-saved with its weights in ``finder.onnx.data`` (as torch.onnx.export(dynamo=True) does)."""
    import onnx

    directory.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(files["onnx"]))
    onnx.save(
        model,
        str(directory / "finder.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="finder.onnx.data",
        size_threshold=0,
    )
    (directory / "finder.onnx.json").write_text(Path(str(files["onnx"]) + ".json").read_text())
    return directory / "finder.onnx"


def test_onnx_external_data_is_hashed_with_the_model_and_named(files, images, tmp_path):
    path = _external_copy(files, tmp_path / "m")
    first = load_scorer(path)
    assert [f["path"] for f in first.info["files"]] == ["finder.onnx", "finder.onnx.data"]
    assert np.allclose(first.score_fn(images), load_scorer(files["onnx"]).score_fn(images), atol=TOL)
    data = path.with_name("finder.onnx.data")
    weights = bytearray(data.read_bytes())
    weights[:64] = bytes(64)  # other weights, same .onnx bytes
    data.write_bytes(bytes(weights))
    second = load_scorer(path)
    assert second.info["files"][0] == first.info["files"][0]  # the .onnx file itself is unchanged ...
    assert second.info["sha256"] != first.info["sha256"]  # ... the model's recorded hash is not
    data.unlink()
    with pytest.raises(
        ScorerError,
        match=r"finder\.onnx: its weights are in the external-data file finder\.onnx\.data, "
        r"which is missing",
    ):
        load_scorer(path)


@pytest.mark.parametrize("kind", ["pt2", "onnx"])
def test_a_fixed_input_size_is_read_from_the_model(files, tmp_path, kind):
    path = tmp_path / files[kind].name
    if kind == "pt2":
        fm.export_pt2(files["model"], path, STAMP, embed_contract=False)  # the sidecar alone gives the contract
    else:
        path.write_bytes(files[kind].read_bytes())
    Path(str(path) + ".json").write_text(json.dumps({**fm.contract(STAMP), "stamp_size": None}))
    scorer = load_scorer(path)
    assert scorer.contract.stamp_size == (STAMP, STAMP) and scorer.info["input_contract"]["stamp_size"] is None
    with pytest.raises(ScorerError, match=rf"takes {STAMP}x{STAMP} px stamps, the data hold 64x64 px") as err:
        scorer.contract.check_stamp((64, 64), str(path))
    assert "\n" not in str(err.value)


def test_a_fixed_size_model_on_stamps_of_another_size_is_one_line_exit_2_and_4(files, tmp_path):
    from hostile_inputs import child_env, hand_manifest, write_manifest

    write_manifest(hand_manifest(12, size=STAMP + 8), tmp_path / "data")
    model = tmp_path / "finder.onnx"
    model.write_bytes(files["onnx"].read_bytes())
    Path(str(model) + ".json").write_text(json.dumps({**fm.contract(STAMP), "stamp_size": None}))
    want = f"takes {STAMP}x{STAMP} px stamps, the data hold {STAMP + 8}x{STAMP + 8} px"
    for argv, code in (
        ([sys.executable, "-m", "shortcutgates.cli", "gate"], 2),
        ([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--pyargs", "shortcutgates.gate_tests"], 4),
    ):
        done = subprocess.run(
            [*argv, "--data", str(tmp_path / "data"), "--model", str(model)],
            cwd=tmp_path,
            env=child_env(PYTHONPATH=str(Path(__file__).resolve().parents[1])),
            capture_output=True,
            text=True,
            timeout=300,
        )
        lines = [line for line in (done.stdout + done.stderr).splitlines() if want in line]
        assert done.returncode == code and len(lines) == 1, done.stdout[-2000:] + done.stderr[-2000:]
        assert "Traceback" not in done.stdout + done.stderr
