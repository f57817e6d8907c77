"""Training and inference throughput of the default model on 64x64 stamps (CPU, and CUDA when present).

* training: one AdamW step on a batch of 64 preprocessed stamps, with flips/rot90 and core dropout,
  forward + backward (what :func:`shortcutgates.model.train.train` does per step);
* inference: :func:`shortcutgates.model.evaluate.predict_scores` on raw stamps (preprocessing included),
  and the network alone on preprocessed stamps.

Run: ``python -m pytest benchmarks/bench_train.py --benchmark-only -s``
(``SHORTCUTGATES_BENCH_THREADS`` sets torch's CPU threads, default 2).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from shortcutgates.model.augment import AugmentConfig, augment_batch, parse_core_dropout
from shortcutgates.model.checkpoint import LoadedCheckpoint
from shortcutgates.model.evaluate import logits_of, predict_scores
from shortcutgates.model.network import build_model, count_parameters
from shortcutgates.model.preprocess import raw_robust

THREADS = int(os.environ.get("SHORTCUTGATES_BENCH_THREADS", 2))
BATCH = 64
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def stamps():
    torch.set_num_threads(THREADS)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:64, :64]
    core = np.exp(-((y - 32) ** 2 + (x - 32) ** 2) / 8.0)
    raw = (rng.uniform(0.2, 2.0, (512, 1, 1, 1)) * core + rng.normal(0, 0.01, (512, 3, 64, 64))).astype(np.float32)
    return raw, raw_robust(raw)


def _report(benchmark, name, n):
    rate = n / benchmark.stats.stats.min
    benchmark.extra_info.update(samples_per_s=round(rate, 1), threads=THREADS)
    print(f"\n{name}: {rate:,.0f} samples/s (torch threads {THREADS})")


@pytest.mark.parametrize("device", DEVICES)
def test_training_step(benchmark, stamps, device):
    _, pre = stamps
    torch.manual_seed(0)
    model = build_model().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    aug = AugmentConfig(core_dropout=parse_core_dropout("4:0.5"))
    gen = torch.Generator().manual_seed(0)
    x_all = torch.from_numpy(pre[:BATCH])
    y = torch.arange(BATCH, device=device) % 2

    def step():
        x = augment_batch(x_all, 0, gen, aug).to(device)
        loss = F.binary_cross_entropy_with_logits(model(x), y.float())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()

    benchmark.pedantic(step, rounds=5, iterations=2, warmup_rounds=1)
    _report(benchmark, f"train step [{device}] ({count_parameters(model):,} params, batch {BATCH})", BATCH)


@pytest.mark.parametrize("device", DEVICES)
def test_inference_predict_scores(benchmark, stamps, device):
    raw, _ = stamps
    model = build_model().to(device).eval()
    loaded = LoadedCheckpoint(model, "raw_robust", {})
    benchmark.pedantic(predict_scores, args=(loaded, raw), rounds=3, iterations=1, warmup_rounds=1)
    _report(benchmark, f"predict_scores on raw stamps [{device}] (preprocessing included)", len(raw))


@pytest.mark.parametrize("device", DEVICES)
def test_inference_network_only(benchmark, stamps, device):
    _, pre = stamps
    model = build_model().to(device).eval()
    benchmark.pedantic(logits_of, args=(model, pre), rounds=3, iterations=1, warmup_rounds=1)
    _report(benchmark, f"network only [{device}]", len(pre))
