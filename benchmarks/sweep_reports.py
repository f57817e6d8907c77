"""Reports of one sweep of five models, to compare two trees record by record (issue 22: the speed-ups
change no value).

    PYTHONPATH=<tree> python benchmarks/sweep_reports.py run MANIFEST OUT [PYPROJECT]
    python benchmarks/sweep_reports.py diff OUT_A OUT_B

``run`` gates, in one ``gate_many`` call (gate cache in ``OUT/cache``), three reference scorers — the
arc reader on ``raw_robust`` inputs, the 50 % core/arc mixture on ``residual`` (``raw_robust``: the
data probes' input; ``residual``: a model input no data gate uses) and the core reader with a callable
preprocessing — and two checkpoints (``fixtures/checkpoints/clean.pt`` with seeded 1 % weight noise,
as ``bench_gate_many.py``). ``diff`` compares every report's blocks and every gate record (value,
interval, verdict, role, message, extra) and prints ``IDENTICAL`` or the differences (exit 1).
Run ``run`` twice on one OUT to compare a cache-warm run (the lensing split read from the cache).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHECKPOINT = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoints" / "clean.pt"
MODELS_DIR = Path(tempfile.gettempdir()) / "shortcutgates-sweep-reports"
"""Where the checkpoints are written (the same bytes every run) and the reference scorers are named."""


def _doubled(images):
    return np.asarray(images, np.float32) * 2


def _checkpoints(directory: Path) -> list[Path]:
    import torch

    base = torch.load(CHECKPOINT, weights_only=True)
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(2):
        gen = torch.Generator().manual_seed(i)
        state = {
            k: (
                v + 0.01 * v.std().nan_to_num() * torch.randn(v.shape, generator=gen)
                if v.is_floating_point() and v.numel() > 1
                else v
            )
            for k, v in base["state_dict"].items()
        }
        torch.save(dict(base, state_dict=state), directory / f"epoch{i:03d}.pt")
        out.append(directory / f"epoch{i:03d}.pt")
    return out


def run(manifest: Path, out: Path, config: Path | None) -> None:
    import torch

    from shortcutgates.model import scorers
    from shortcutgates.gates import reference_scorers as rs
    from shortcutgates.gates import sweep

    torch.set_num_threads(1)
    fake = {
        "arc.pt": (rs.arc_reader, "raw_robust"),
        "mix.pt": (rs.mixture_reader(0.5), "residual"),
        "core.pt": (rs.core_reader, _doubled),
    }
    real = scorers.load_scorer

    def load(path, cache=None):
        if Path(path).name in fake:
            fn, preprocess = fake[Path(path).name]
            return scorers.Scorer(fn, preprocess, {"path": str(path), "kind": "callable"})
        return real(path, cache)

    scorers.load_scorer = load
    where = MODELS_DIR  # one place for every run: a report names its model's path
    ckpts = _checkpoints(where)
    models = [where / "arc.pt", ckpts[0], where / "mix.pt", where / "core.pt", ckpts[1]]
    t0 = time.perf_counter()
    sweep.gate_many(manifest, models, out, progress=False, cache_dir=out / "cache", strict=False, config_path=config)
    print(f"gate_many of {len(models)} models: {time.perf_counter() - t0:.1f} s")


def diff(a: Path, b: Path) -> int:
    bad = 0
    for path in sorted(a.glob("*.json")):
        ra, rb = json.loads(path.read_text()), json.loads((b / path.name).read_text())
        blocks = [k for k in set(ra) | set(rb) if k != "gates" and ra.get(k) != rb.get(k)]
        ids = [g["id"] for g in ra["gates"]] == [g["id"] for g in rb["gates"]]
        records = [x["id"] for x, y in zip(ra["gates"], rb["gates"]) if x != y]
        bad += len(blocks) + (not ids) + len(records)
        print(
            f"{path.name}: {len(ra['gates'])} cases; blocks differing {blocks or 'none'}; same case ids {ids}; "
            f"records differing {records[:5] or 'none'}"
        )
    print("IDENTICAL" if not bad else f"{bad} DIFFERENCES")
    return int(bool(bad))


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["run"]:
        run(Path(args[1]), Path(args[2]), Path(args[3]) if len(args) > 3 else None)
    elif args[:1] == ["diff"]:
        sys.exit(diff(Path(args[1]), Path(args[2])))
    else:
        sys.exit(__doc__)
