"""A planted cross-test gap: how often ``cross_test_gap`` turns a run red, at the builder's split sizes.

The scores are planted, not learned: every stamp is a 16-px noise image whose pixel ``(g, 0, 0)``
carries the score the "model" gives it (the score function reads it back), drawn binormal so that
AUROC(``test``) is ``auc_test`` and AUROC(``test_paired``) is ``auc_test + gap``. The split sizes are
the builder's default splits of ``n_lrgs`` LRGs (15 % test LRGs, half of them paired): at the
proposal's 4000, 300 ``test_paired`` pairs and 300 other test LRGs.

* ``shared`` (the builder's design, :data:`~shortcutgates.data.schema.SHARED_POSITIVE_SPLITS`): ``test``
  holds the 300 ``test_paired`` positives (the same rows) and the 300 other LRGs' controls; the gap
  is planted in the paired controls' scores, so it compares the same lenses against two sets of
  negatives.
* ``separate`` (the builder before): ``test`` 300 unpaired LRGs (150 positive, 150 negative),
  ``test_paired`` 300 pairs; the gap is planted in the paired positives' scores.

The case is the registry's ``cross_test_gap`` run through :func:`~shortcutgates.gates.registry.run_case`
on a :class:`~shortcutgates.gates.context.GateContext` and decided by :func:`shortcutgates.gates.suite.outcome`,
so the rates are those of the gate and the red/green rule, not of a re-implementation.

Run::

    OMP_NUM_THREADS=1 PYTHONPATH=. python -m shortcutgates.calibrate.gap --seeds 20 --lrgs 2000,4000
"""

from __future__ import annotations

import argparse
from dataclasses import replace
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

from shortcutgates.data.codec import encode_stamp
from shortcutgates.data.io import write_parquet_atomic

STAMP = 16
"""Side of the planted stamps. Unit: pixel."""


def _scores(auc: float, n_pos: int, n_neg: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Binormal scores with population AUROC ``auc``: negatives N(0, 1), positives N(√2 Φ⁻¹(auc), 1)."""
    shift = np.sqrt(2.0) * norm.ppf(auc)
    return rng.normal(shift, 1.0, n_pos), rng.normal(0.0, 1.0, n_neg)


TEST_FRACTION = 0.15
"""The builder's default test fraction of LRGs (``splits.SplitParams.fractions``); half go to ``test_paired``."""


def split_sizes(n_lrgs: int) -> tuple[int, int]:
    """(pairs in ``test_paired``, other test LRGs) of the builder's default splits of ``n_lrgs`` LRGs."""
    n_test = int(round(TEST_FRACTION * n_lrgs))
    return n_test // 2, n_test - n_test // 2


def _stamp(score: float, rng: np.random.Generator) -> bytes:
    image = rng.normal(0.0, 1.0, (3, STAMP, STAMP)).astype(np.float32)
    image[0, 0, 0] = score
    return encode_stamp(image, compress=False)


def planted_scores(
    gap: float, rng: np.random.Generator, *, auc_test: float, n_pairs: int, n_other: int, shared: bool
) -> list[tuple[str, int, int, float]]:
    """``(split, label, lrg, score)`` per row: LRGs ``0 … n_pairs − 1`` are the pairs, the others follow."""
    shift, paired_shift = (np.sqrt(2.0) * norm.ppf(a) for a in (auc_test, auc_test + gap))
    pairs, other = range(n_pairs), range(n_pairs, n_pairs + n_other)
    if shared:  # the gap lies in the paired controls: AUROC(pos vs ctrl) = Φ((shift − c)/√2)
        pos = rng.normal(shift, 1.0, n_pairs)
        rows = [("test_paired", 1, i, s) for i, s in zip(pairs, pos)]
        rows += [("test_paired", 0, i, s) for i, s in zip(pairs, rng.normal(shift - paired_shift, 1.0, n_pairs))]
        rows += [("test", 1, i, s) for i, s in zip(pairs, pos)]
        return rows + [("test", 0, i, s) for i, s in zip(other, rng.normal(0.0, 1.0, n_other))]
    rows = [("test_paired", 1, i, s) for i, s in zip(pairs, rng.normal(paired_shift, 1.0, n_pairs))]
    rows += [("test_paired", 0, i, s) for i, s in zip(pairs, rng.normal(0.0, 1.0, n_pairs))]
    n_pos = n_other // 2
    rows += [("test", 1, i, s) for i, s in zip(other[:n_pos], rng.normal(shift, 1.0, n_pos))]
    return rows + [("test", 0, i, s) for i, s in zip(other[n_pos:], rng.normal(0.0, 1.0, n_other - n_pos))]


def planted_rows(
    gap: float, seed: int, *, auc_test: float = 0.80, n_lrgs: int = 4000, shared: bool = True
) -> pd.DataFrame:
    """Manifest rows of ``test`` and ``test_paired`` of ``n_lrgs`` built LRGs whose planted scores differ
    in AUROC by ``gap``; a shared positive is one image (one blob) in both splits."""
    rng = np.random.default_rng(seed)
    n_pairs, n_other = split_sizes(n_lrgs)
    scores = planted_scores(gap, rng, auc_test=auc_test, n_pairs=n_pairs, n_other=n_other, shared=shared)
    blobs: dict[tuple[int, int], bytes] = {}
    rows = []
    for split, label, i, score in scores:
        blob = blobs.setdefault((int(i), label), _stamp(score, rng))
        rows.append(
            {
                "split": split,
                "label": label,
                "ra": 150.0 + 0.01 * (i % 1000),
                "dec": 2.0 + 0.01 * (i // 1000),
                "lrg_id": f"L{i:05d}",
                "image_npz": blob,
            }
        )
    return pd.DataFrame(rows)


def planted_score(images: np.ndarray) -> np.ndarray:
    """The planted score of each stamp, shape (N,)."""
    return np.asarray(images)[:, 0, 0, 0].astype(np.float64)


def run_gap(gap: float, seeds, role: str | None = None, **kw) -> pd.DataFrame:
    """One record per seed: the ``cross_test_gap`` value, interval, verdict, ``established`` and outcome
    (the run's red/green rule for the case in ``role``: the registry's when None)."""
    from shortcutgates.gates.context import GateContext
    from shortcutgates.gates.records import GateConfig
    from shortcutgates.gates.registry import REGISTRY, run_case
    from shortcutgates.gates.suite import outcome

    gate = REGISTRY["cross_test_gap"]
    out = []
    for seed in seeds:
        with tempfile.TemporaryDirectory(prefix="sg-gap-") as tmp:
            write_parquet_atomic(planted_rows(gap, seed, **kw), Path(tmp) / "part-0000.parquet")
            context = GateContext(Path(tmp), config=GateConfig(seed=int(seed)), score_fn=planted_score)
            (case,) = gate.cases(context, gate)  # the role a run of this size gives it, unless ``role``
            result = run_case(context, replace(case, role=role or case.role or gate.role))
        lo, hi = result.ci if result.ci is not None else (np.nan, np.nan)
        out.append(
            {
                "gap": gap,
                "seed": int(seed),
                "value": result.value,
                "lo": lo,
                "hi": hi,
                "verdict": result.verdict,
                "established": result.established,
                "outcome": outcome(result.to_json()),
            }
        )
    return pd.DataFrame(out)


def main(argv=None) -> int:
    from shortcutgates.calibrate.rates import proportion_ci

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--gaps", default="0,0.15,-0.15")
    parser.add_argument("--lrgs", default="4000", help="comma-separated catalogue sizes (the builder's default splits)")
    parser.add_argument(
        "--designs", default="shared", help="comma-separated: shared (the builder's), separate (before)"
    )
    args = parser.parse_args(argv)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    for n_lrgs in (int(n) for n in args.lrgs.split(",")):
        for design in args.designs.split(","):
            for gap in (float(g) for g in args.gaps.split(",")):
                frame = run_gap(gap, seeds, role="primary", n_lrgs=n_lrgs, shared=design == "shared")
                red = int((frame["outcome"] == "red").sum())
                lo, hi = proportion_ci(red, len(frame))
                width = float((frame["hi"] - frame["lo"]).mean())
                print(
                    f"{n_lrgs} LRGs {design} gap {gap:+.2f}: red as primary {red}/{len(frame)} ({red / len(frame):.0%} "
                    f"[{lo:.0%}, {hi:.0%}]), mean estimate {frame['value'].mean():+.3f}, mean interval width "
                    f"{width:.3f}, verdicts {frame['verdict'].value_counts().to_dict()}, established (red in any role) "
                    f"{int(frame['established'].sum())}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
