"""Evaluation: predict_scores applies the recorded preprocessing, manifest scores are cached, metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shortcutgates.model import evaluate as ev
from shortcutgates.model.checkpoint import FORMAT, FORMAT_VERSION, load_checkpoint, preprocess_record, save_checkpoint
from shortcutgates.data.manifest import load_images, read_manifest
from shortcutgates.model.network import ModelConfig, build_model
from shortcutgates.model.preprocess import raw_robust, residual

from toy_manifests import toy_images, write_toy_manifest

torch.set_num_threads(1)  # tiny tensors: extra threads only contend on the shared 2-core CI


def _ckpt(path, preprocess="raw_robust", seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(width=4, blocks=(1,))
    model = build_model(cfg)
    save_checkpoint(
        path,
        {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "model_config": cfg.to_dict(),
            "state_dict": model.state_dict(),
            "preprocess": preprocess_record(preprocess),
            "train_config": {},
            "data": {},
            "metrics": {},
            "seed": seed,
        },
    )
    return path


@pytest.mark.parametrize("mode,fn", [("raw_robust", raw_robust), ("residual", residual)])
def test_predict_scores_applies_the_checkpoints_preprocessing(tmp_path, mode, fn):
    loaded = load_checkpoint(_ckpt(tmp_path / "c.pt", mode))
    images, _ = toy_images(7, size=16)
    with torch.no_grad():
        expected = torch.sigmoid(loaded.model(torch.from_numpy(fn(images))).double()).numpy()
    got = ev.predict_scores(loaded, images, batch_size=3)
    assert got.shape == (7,) and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    np.testing.assert_allclose(ev.predict_scores(loaded, images[2]), got[2:3], rtol=1e-6)


def test_predict_scores_refuses_wrong_shape(tmp_path):
    loaded = load_checkpoint(_ckpt(tmp_path / "c.pt"))
    with pytest.raises(ValueError, match=r"predict_scores: images must have shape \(N, 3, H, W\)"):
        ev.predict_scores(loaded, np.zeros((2, 4, 16, 16), np.float32))


def test_sigmoid_is_stable_at_extremes():
    s = ev.sigmoid(np.array([-800.0, 0.0, 800.0]))
    np.testing.assert_allclose(s, [0.0, 0.5, 1.0])
    assert np.isfinite(s).all()


def test_score_manifest_scores_once_then_reads_the_cache(tmp_path, monkeypatch):
    manifest = write_toy_manifest(tmp_path / "m", n=16)
    ckpt = _ckpt(tmp_path / "c.pt")
    cache = tmp_path / "cache"
    first = ev.score_manifest(ckpt, manifest, ["val", "test"], cache_dir=cache)
    assert set(first["split"]) == {"val", "test"} and len(first) == 8
    frame = read_manifest(manifest).frame
    images, _ = load_images(frame)
    np.testing.assert_allclose(
        ev.score_manifest(ckpt, manifest, cache_dir=cache)["score"],
        ev.predict_scores(load_checkpoint(ckpt), images),
        rtol=1e-6,
    )

    monkeypatch.setattr(ev, "load_checkpoint", lambda *a, **k: pytest.fail("scored again despite the cache"))
    again = ev.score_manifest(ckpt, manifest, ["val", "test"], cache_dir=cache)
    np.testing.assert_array_equal(again["score"], first["score"])
    monkeypatch.undo()
    other = ev.score_manifest(_ckpt(tmp_path / "d.pt", seed=1), manifest, "val", cache_dir=cache)
    assert len(list((cache / "scores").glob("*.parquet"))) == 2  # keyed by the checkpoint's sha256
    assert not np.array_equal(other["score"], first[first["split"] == "val"]["score"])


def test_evaluate_scores_perfect_and_chance():
    labels = np.array([0, 1] * 50)
    groups = np.arange(100) // 2
    perfect = ev.evaluate_scores(labels, labels + 0.1 * np.arange(100) / 100, groups, n_boot=200)
    assert perfect.auroc.value == 1.0 and perfect.auroc.lo == pytest.approx(1.0)
    assert perfect.tpr == {1e-2: 1.0, 1e-3: 1.0}
    assert perfect.n_pos == perfect.n_neg == 50 and perfect.auroc.n_groups == 50
    rng = np.random.default_rng(0)
    chance = ev.evaluate_scores(labels, rng.random(100), groups, n_boot=200)
    assert chance.auroc.lo < 0.5 < chance.auroc.hi


def test_evaluate_scores_needs_both_classes():
    with pytest.raises(ValueError, match="needs both classes"):
        ev.evaluate_scores(np.ones(5), np.arange(5.0), np.arange(5))


def test_evaluate_split_derives_lrg_ids_when_missing(tmp_path):
    manifest = write_toy_manifest(tmp_path / "m", n=16)
    import pandas as pd

    frame = pd.read_parquet(manifest / "part-0.parquet").drop(columns=["lrg_id"])
    frame.to_parquet(manifest / "part-0.parquet", index=False)
    result = ev.evaluate(_ckpt(tmp_path / "c.pt"), manifest, "test", cache_dir=tmp_path / "cache", n_boot=100)
    assert result.auroc.n_groups == 4 and result.n_pos == 2


def test_resolve_device():
    assert ev.resolve_device("cpu").type == "cpu"
    assert ev.resolve_device("auto").type in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            ev.resolve_device("cuda")
