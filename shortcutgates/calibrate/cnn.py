"""Trained lens finders as ground truth for the model gates: small CNNs, one per seed, per family.

The reference readers (:mod:`shortcutgates.gates.reference_scorers`) are exact but not what users
gate. A *CNN cell* trains the project's own network (:func:`shortcutgates.model.train.train`, a narrow
:class:`~shortcutgates.model.network.ResNet`) on unpaired data drawn from the **realistic** pool
(:func:`shortcutgates.calibrate.pool.load_pool` ``kind="realistic"``: the simulator's default
lenses, θ_E 0.5–2.5″, counter-images, no taper) and gates the checkpoint on held-out LRGs' pairs,
exactly as ``shortcutgates gate --model`` would. Families (:data:`FAMILIES`):

* ``neutral-residual``, ``neutral-raw_robust`` — **core-neutral** (the null of the model gates):
  positives are ``control + arc`` (the whole lensed light); every negative is ``control + core
  part of a donor positive's lensed light`` (:func:`core_part`: its counter-image light by the gates'
  lensing split), the donors a permutation of the same split's positives, so both classes carry the same core light and the core cannot separate
  them in training. A CNN that still fails a core gate is a false alarm of that gate. In a *built*
  catalogue (the ``criteria`` profile's trained-suite cells, :func:`family_images`) the donors are the
  positives of the θ_E bins where the core probe decides (:func:`decided_theta_arcsec`), since that
  probe compares each such bin with all negatives.
* ``reliant-raw_robust`` — **core-reliant** (the power): positives are ``control + faint arc``
  (:data:`RELIANT_ARC_KEEP` of its flux) ``+ a PSF-shaped point source at the centre`` carrying
  :data:`POINT_SOURCE_FRACTION` of the LRG's own light inside ``r < R_CORE_PX`` (per band);
  negatives are bare controls. ``reliant-weak-raw_robust``: the same with
  :data:`WEAK_POINT_SOURCE_FRACTION`. The easy cue is the core: a Clever Hans. (``residual`` input
  subtracts a centred point source with the azimuthal median, so this family is ``raw_robust`` only.)

No CNN is ever trained on a gate's counterfactual: the neutral negatives carry another lens's core
light on an LRG that holds no arc, never their own pair's arc removed. Each seed draws its own
disjoint ``train`` / ``val`` / ``test`` / ``test_paired`` LRGs from the pool; the gates see the
held-out ``test`` (unpaired) and ``test_paired`` (paired) splits, whose positives are the family's
positives and whose negatives are bare controls.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from shortcutgates.gates.perturb import R_CORE_PX, core_mask, split_lensed_light
from shortcutgates.model.network import ModelConfig
from shortcutgates.calibrate.plant import _rows, draw_lrgs, psf_sources, write_manifest
from shortcutgates.calibrate.pool import Pool
from shortcutgates.calibrate.scorers import CNN_PREFIX

POINT_SOURCE_FRACTION = 1.0
"""Flux of the core-reliant family's central point source, as a fraction of the control's flux inside
``r < R_CORE_PX`` (per band: mostly the LRG's own core light). Chosen on dev seed 100 (never a measured
seed): at 0.3 the CNN barely learnt the cue (validation AUROC 0.79, core-masked drop 0.02-0.04, i.e. it
does not lean on the core); at 1.0 it does (validation AUROC 0.87, drop 0.11-0.16). The weaker cue is
kept as its own family (:data:`WEAK_POINT_SOURCE_FRACTION`) so the power is stated at both."""
WEAK_POINT_SOURCE_FRACTION = 0.3
"""The ``reliant-weak-raw_robust`` family's point source (the previous session's single family)."""
RELIANT_ARC_KEEP = 0.3
"""Share of the arc's flux the core-reliant family's positives keep (faint arcs)."""
MODEL = ModelConfig(width=8, blocks=(1, 1, 1))
"""The CNN of every cell: the project's ResNet, narrow (19,657 parameters; ~1 ms per stamp and
step on one CPU thread)."""
EPOCHS = 8
VAL_FRACTION = 0.2
"""``val`` LRGs as a fraction of the training LRGs (early stopping and the best epoch)."""
GATE_LRGS = 500
"""LRGs of the gated ``test`` split (unpaired) and, as many again, of ``test_paired`` (one pair each):
about 125 pairs per θ_E bin of the default edges (at 240, most bins of 1-2″ held fewer than 30 decidable
pairs and were reported)."""


@dataclass(frozen=True)
class Family:
    """How a family's training positives and negatives are made, and its input."""

    name: str
    preprocess: str
    role: str
    """``null`` (no core gate should fail) or ``power`` (a model gate should fail)."""
    donor_core: bool = False
    """Negatives carry a donor positive's core part."""
    point_source: float = 0.0
    """Central point-source flux of the positives (fraction of the control's flux in ``r < R_CORE_PX``)."""
    arc_keep: float = 1.0
    """Share of the arc's flux in the positives."""


FAMILIES = {
    f.name: f
    for f in (
        Family("neutral-residual", "residual", "null", donor_core=True),
        Family("neutral-raw_robust", "raw_robust", "null", donor_core=True),
        Family(
            "reliant-raw_robust", "raw_robust", "power", point_source=POINT_SOURCE_FRACTION, arc_keep=RELIANT_ARC_KEEP
        ),
        Family(
            "reliant-weak-raw_robust",
            "raw_robust",
            "power",
            point_source=WEAK_POINT_SOURCE_FRACTION,
            arc_keep=RELIANT_ARC_KEEP,
        ),
    )
}
PREFIX = CNN_PREFIX
"""Scorer names of CNN cells: ``cnn:<family>`` (e.g. ``cnn:neutral-residual``)."""


def family_of(scorer: str) -> Family:
    """The family of a CNN cell's scorer name ``cnn:<family>``."""
    name = scorer.removeprefix(PREFIX)
    if name not in FAMILIES:
        raise ValueError(
            f"calibrate: CNN family must be one of {', '.join(PREFIX + f for f in FAMILIES)} (got {scorer!r})"
        )
    return FAMILIES[name]


def core_part(pool: Pool, index: np.ndarray) -> np.ndarray:
    """(N, 3, H, W) counter-image light of pool LRGs ``index``: what a donor lends a negative.

    The lensing split of the gates (:func:`shortcutgates.gates.perturb.split_lensed_light`: the lensed
    light inside the tangential critical curve, from the injection truth, blurred by the row's PSF),
    so a negative carries exactly what the gates call a lens's core part.
    """
    index = np.asarray(index, np.int64)
    memo = _CORE_PARTS.setdefault(id(pool.arc), {})
    todo = np.unique([i for i in index if i not in memo]).astype(np.int64)
    if len(todo):
        meta = pool.meta.iloc[todo].reset_index(drop=True)
        fwhm = meta[[f"psf_fwhm_used_{b}" for b in "grz"]].to_numpy(np.float64)
        memo.update(zip(todo.tolist(), split_lensed_light(np.asarray(pool.arc[todo], np.float32), meta, fwhm).counter))
    return np.stack([memo[i] for i in index.tolist()])


_CORE_PARTS: dict = {}
"""Counter-image light already split, per pool (``id`` of its arc array) and LRG: each pool LRG is split
once per process (about 20 ms a row)."""


def central_sources(pool: Pool, index: np.ndarray, fraction: float) -> np.ndarray:
    """(N, 3, H, W) PSF-shaped point sources at the centre with ``fraction`` of each control's flux inside
    ``r < R_CORE_PX``, per band."""
    ctrl = np.asarray(pool.ctrl[index], np.float64)
    flux = fraction * ctrl[..., core_mask(ctrl.shape[-2:], R_CORE_PX)].sum(axis=-1)  # (N, 3)
    meta = pool.meta.iloc[index].reset_index(drop=True)
    zero = np.zeros(len(index))
    return psf_sources(meta, np.clip(flux, 0, None), zero, zero, ctrl.shape[-2:])


def positives(pool: Pool, index: np.ndarray, family: Family) -> np.ndarray:
    """(N, 3, H, W) the family's positive stamps of pool LRGs ``index``."""
    index = np.asarray(index)
    stamps = np.asarray(pool.ctrl[index], np.float32) + np.float32(family.arc_keep) * np.asarray(
        pool.arc[index], np.float32
    )
    if family.point_source > 0:
        stamps += central_sources(pool, index, family.point_source)
    return stamps


def negatives(pool: Pool, index: np.ndarray, family: Family, donors: np.ndarray) -> np.ndarray:
    """(N, 3, H, W) the family's training negatives: controls ``index``, plus the core part of donor
    ``donors[i]``'s lensed light for a core-neutral family."""
    stamps = np.asarray(pool.ctrl[np.asarray(index)], np.float32)
    if family.donor_core:
        stamps = stamps + core_part(pool, donors)
    return stamps


def training_split(
    pool: Pool, family: Family, n_lrgs: int, split: str, rng: np.random.Generator, exclude=()
) -> tuple[pd.DataFrame, np.ndarray]:
    """Unpaired rows of ``n_lrgs`` LRGs (half positives, half negatives); returns (rows, LRGs used).

    The donors of the negatives' core light are a random permutation of the split's positives.
    """
    lrgs = draw_lrgs(len(pool), n_lrgs, rng, exclude)
    pos, neg = lrgs[: n_lrgs // 2], lrgs[n_lrgs // 2 : 2 * (n_lrgs // 2)]
    donors = rng.permutation(pos)
    frame = pd.concat(
        [
            _rows(pool, pos, positives(pool, pos, family), 1, split),
            _rows(pool, neg, negatives(pool, neg, family, donors), 0, split),
        ],
        ignore_index=True,
    )
    return frame, lrgs


def gating_splits(pool: Pool, family: Family, n_lrgs: int, rng: np.random.Generator, exclude=()) -> pd.DataFrame:
    """``test`` (``n_lrgs`` unpaired LRGs) and ``test_paired`` (``n_lrgs`` paired LRGs): family positives,
    bare-control negatives."""
    test = draw_lrgs(len(pool), n_lrgs, rng, exclude)
    pos, neg = test[: n_lrgs // 2], test[n_lrgs // 2 :]
    paired = draw_lrgs(len(pool), n_lrgs, rng, np.concatenate([np.asarray(exclude, int), test]))
    bare = pool.ctrl
    return pd.concat(
        [
            _rows(pool, pos, positives(pool, pos, family), 1, "test"),
            _rows(pool, neg, np.asarray(bare[neg], np.float32), 0, "test"),
            _rows(pool, paired, positives(pool, paired, family), 1, "test_paired"),
            _rows(pool, paired, np.asarray(bare[paired], np.float32), 0, "test_paired"),
        ],
        ignore_index=True,
    )


NEUTRAL_SPLITS = ("train", "val")
"""Splits of a built catalogue whose negatives carry a donor's light (:func:`family_images`): the splits the
CNN learns from, as :func:`train_seed` draws them; ``test`` and ``test_paired``, where the gates score, hold
real negatives, as :func:`gating_splits` draws them (and as ``build --hard-negatives`` puts constructed
rows in ``train`` only, :data:`shortcutgates.data.hard_negatives.DEFAULT_SPLITS`)."""


def donors_by_split(
    split: np.ndarray, role: np.ndarray, rng: np.random.Generator, splits=NEUTRAL_SPLITS, eligible=None
) -> np.ndarray:
    """(N,) for each ``neg``-role LRG of ``splits`` in a built catalogue (its builder ``split`` and ``role``,
    :func:`shortcutgates.calibrate.plant.builder_roles`) the position of a donor ``pos``-role LRG of the
    same split, -1 for the other LRGs: a permutation of the split's positives (those ``eligible`` marks,
    (N,) bool, when given), cycled where the split has more negatives than donors."""
    split, role = np.asarray(split, object), np.asarray(role, object)
    eligible = np.ones(len(split), bool) if eligible is None else np.asarray(eligible, bool)
    donors = np.full(len(split), -1, np.int64)
    for name in splits:
        neg = np.flatnonzero((split == name) & (role == "neg"))
        pos = np.flatnonzero((split == name) & (role == "pos") & eligible)
        if len(neg) and not len(pos):
            raise ValueError(
                f"calibrate: split {name!r} has negatives but no eligible positive LRG to lend them core light"
            )
        if len(neg):
            donors[neg] = np.resize(rng.permutation(pos), len(neg))
    return donors


def family_images(
    pool: Pool, index: np.ndarray, family: Family, split: np.ndarray, role: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(stamps, controls), each (N, 3, H, W), of a paired catalogue of pool LRGs ``index`` that the unpaired
    builder turns into the family's data set: every stamp is the family's positive; the control of every
    ``neg``-role LRG of :data:`NEUTRAL_SPLITS` (``split``/``role`` per LRG of ``index``,
    :func:`shortcutgates.calibrate.plant.builder_roles`) is the family's negative, its donor a positive of
    the same split (:func:`donors_by_split`); the other LRGs keep their bare control (``test``'s negatives,
    the ``test_paired`` pairs, the unused controls of ``pos`` LRGs). For a core-neutral family every
    negative of ``train`` and ``val`` then carries a lens's counter-image light, as :func:`training_split`
    builds them.

    The donors are the positives whose Einstein radius lies in the θ_E bins where the core probe decides
    (:func:`decided_theta_arcsec`): the probe compares each such bin's positives with *all* negatives, so
    the negatives' core light must be that of those lenses (donors of every θ_E lent the negatives the
    brighter counter-images of the small-θ_E lenses and left the deciding bin unbalanced: raw core-LR
    0.66-0.70 on ``train``, ``docs/calibration.md#the-realistic-null``)."""
    index = np.asarray(index, np.int64)
    controls = np.asarray(pool.ctrl[index], np.float32).copy()
    theta = pool.meta["theta_e_arcsec"].to_numpy(np.float64)[index]
    donors = donors_by_split(split, role, rng, eligible=theta >= decided_theta_arcsec(pool))
    neg = np.flatnonzero(donors >= 0)
    if len(neg):
        controls[neg] = negatives(pool, index[neg], family, index[donors[neg]])
    return positives(pool, index, family), controls


def decided_theta_arcsec(pool: Pool, box: int = 10) -> float:
    """Lower edge of the first θ_E bin (the gates' default bins) whose arcs clear a central ``box`` at the
    pool's median r-band seeing (:func:`shortcutgates.gates.core_bins.arc_clears_box`): the core probe
    decides on the bins from there up. Unit: arcsec."""
    from shortcutgates.gates.core_bins import arc_clears_box
    from shortcutgates.gates.records import GateConfig

    fwhm = float(np.median(pool.meta["psf_fwhm_used_r"].to_numpy(np.float64)))
    edges = GateConfig().theta_e_bins_arcsec
    for lo in edges[:-1]:
        if arc_clears_box(lo, fwhm, box):
            return float(lo)
    raise ValueError(f"calibrate: no θ_E bin's arcs clear a {box}-px box at seeing {fwhm:.2f}″")


class Trained(NamedTuple):
    """One seed's CNN, ready to gate."""

    gating_manifest: Path
    checkpoint: Path
    val_auroc: float
    epochs: int
    seconds: float
    """Training wall time. Unit: s."""


def fit(manifest: Path, family: Family, seed: int, directory: Path, epochs: int | None = None) -> Trained:
    """Train the family's CNN (:data:`MODEL`, ``epochs`` default :data:`EPOCHS`, the best validation epoch
    kept) on the ``train`` split of ``manifest``, validating on ``val``; the checkpoint is
    ``directory/model.pt``. The returned ``gating_manifest`` is ``manifest`` itself."""
    from shortcutgates.model.train import TrainConfig, train

    epochs = epochs or EPOCHS
    config = TrainConfig(
        preprocess=family.preprocess, epochs=epochs, patience=epochs, seed=int(seed), device="cpu", model=MODEL
    )
    summary = train(manifest, Path(directory) / "model.pt", config, progress=False)
    return Trained(
        Path(manifest),
        summary.checkpoint,
        float(summary.best_val_auroc),
        int(summary.epochs_run),
        float(summary.seconds),
    )


def train_seed(
    pool: Pool,
    family: Family,
    n_lrgs: int,
    seed: int,
    rng: np.random.Generator,
    directory: Path,
    gate_lrgs: int | None = None,
    epochs: int | None = None,
) -> Trained:
    """Draw this seed's LRGs, train the family's CNN on ``n_lrgs`` training LRGs (plus ``VAL_FRACTION`` as
    many for ``val``) and write the gating manifest (``gate_lrgs``, default :data:`GATE_LRGS`); everything
    under ``directory``. ``epochs`` defaults to :data:`EPOCHS`."""
    directory = Path(directory)
    tr, used = training_split(pool, family, n_lrgs, "train", rng)
    val, used_val = training_split(pool, family, max(20, round(VAL_FRACTION * n_lrgs)), "val", rng, used)
    used = np.concatenate([used, used_val])
    train_manifest = write_manifest(pd.concat([tr, val], ignore_index=True), directory / "train_manifest")
    gating = write_manifest(gating_splits(pool, family, gate_lrgs or GATE_LRGS, rng, used), directory / "gate_manifest")
    return fit(train_manifest, family, seed, directory, epochs)._replace(gating_manifest=gating)
