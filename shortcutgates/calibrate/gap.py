"""A planted cross-test gap: how often ``cross_test_gap`` turns a run of the proposal's size red.

The scores are planted, not learned: every stamp is a 16-px noise image whose pixel ``(g, 0, 0)``
carries the score the "model" gives it (the score function reads it back), drawn binormal so that
AUROC(``test``) is ``auc_test`` and AUROC(``test_paired``) is ``auc_test + gap``. The split sizes are
the builder's defaults at the proposal's 4000 LRGs: ``test`` 300 unpaired LRGs (150 positive, 150
negative) and ``test_paired`` 300 paired LRGs (a positive and its own control each). The case is the
registry's ``cross_test_gap`` run through :func:`~shortcutgates.gates.registry.run_case` on a
:class:`~shortcutgates.gates.context.GateContext` and decided by :func:`shortcutgates.gates.suite.outcome`,
so the rates are those of the gate and the red/green rule, not of a re-implementation.

Run::

    OMP_NUM_THREADS=1 PYTHONPATH=. python -m shortcutgates.calibrate.gap --seeds 40
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

from ..codec import encode_stamp
from ..io import write_parquet_atomic

STAMP = 16
"""Side of the planted stamps. Unit: pixel."""


def _scores(auc: float, n_pos: int, n_neg: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Binormal scores with population AUROC ``auc``: negatives N(0, 1), positives N(√2 Φ⁻¹(auc), 1)."""
    shift = np.sqrt(2.0) * norm.ppf(auc)
    return rng.normal(shift, 1.0, n_pos), rng.normal(0.0, 1.0, n_neg)


def planted_rows(gap: float, seed: int, *, auc_test: float = 0.80, n_test: int = 300,
                 n_paired: int = 300) -> pd.DataFrame:
    """Manifest rows of ``test`` and ``test_paired`` whose planted scores differ in AUROC by ``gap``."""
    rng = np.random.default_rng(seed)
    rows, lrg = [], 0
    for split, auc, n_lrgs, paired in (("test", auc_test, n_test, False), ("test_paired", auc_test + gap, n_paired, True)):
        n_pos = n_lrgs if paired else n_lrgs // 2
        n_neg = n_lrgs if paired else n_lrgs - n_lrgs // 2
        pos, neg = _scores(auc, n_pos, n_neg, rng)
        pos_lrgs = np.arange(lrg, lrg + n_pos)
        neg_lrgs = pos_lrgs if paired else np.arange(lrg + n_pos, lrg + n_pos + n_neg)
        lrg += n_pos + (0 if paired else n_neg)
        for label, scores, lrgs in ((1, pos, pos_lrgs), (0, neg, neg_lrgs)):
            for score, i in zip(scores, lrgs):
                image = rng.normal(0.0, 1.0, (3, STAMP, STAMP)).astype(np.float32)
                image[0, 0, 0] = score
                rows.append({"split": split, "label": label, "ra": 150.0 + 0.01 * (i % 1000),
                             "dec": 2.0 + 0.01 * (i // 1000), "lrg_id": f"L{i:05d}",
                             "image_npz": encode_stamp(image, compress=False)})
    return pd.DataFrame(rows)


def planted_score(images: np.ndarray) -> np.ndarray:
    """The planted score of each stamp, shape (N,)."""
    return np.asarray(images)[:, 0, 0, 0].astype(np.float64)


def run_gap(gap: float, seeds, **kw) -> pd.DataFrame:
    """One record per seed: the ``cross_test_gap`` value, interval, verdict, ``established`` and outcome."""
    from ..gates.context import GateContext
    from ..gates.records import GateCase, GateConfig
    from ..gates.registry import REGISTRY, run_case
    from ..gates.suite import outcome

    gate = REGISTRY["cross_test_gap"]
    out = []
    for seed in seeds:
        with tempfile.TemporaryDirectory(prefix="sg-gap-") as tmp:
            write_parquet_atomic(planted_rows(gap, seed, **kw), Path(tmp) / "part-0000.parquet")
            context = GateContext(Path(tmp), config=GateConfig(n_boot=500, seed=int(seed)), score_fn=planted_score)
            result = run_case(context, GateCase(gate.name, {}, None, gate.needs, gate.role))
        lo, hi = result.ci if result.ci is not None else (np.nan, np.nan)
        out.append({"gap": gap, "seed": int(seed), "value": result.value, "lo": lo, "hi": hi,
                    "verdict": result.verdict, "established": result.established, "outcome": outcome(result.to_json())})
    return pd.DataFrame(out)


def main(argv=None) -> int:
    from .rates import proportion_ci

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--gaps", default="0,0.15,-0.15")
    args = parser.parse_args(argv)
    for gap in (float(g) for g in args.gaps.split(",")):
        frame = run_gap(gap, range(args.seeds))
        red = int((frame["outcome"] == "red").sum())
        lo, hi = proportion_ci(red, len(frame))
        width = float((frame["hi"] - frame["lo"]).mean())
        print(f"gap {gap:+.2f}: red {red}/{len(frame)} ({red / len(frame):.0%} [{lo:.0%}, {hi:.0%}]), "
              f"mean estimate {frame['value'].mean():+.3f}, mean interval width {width:.3f}, "
              f"verdicts {frame['verdict'].value_counts().to_dict()}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
