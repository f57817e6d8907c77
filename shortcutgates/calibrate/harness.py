"""The seed loop: one calibration *cell* (problem, strength, size, scorer) run over many seeds.

A run of one seed draws fresh LRGs from the pool, writes a manifest to a temporary directory and
runs the registry's cases on it through the public gate API (``GateContext``, ``gate_cases``,
``run_case``), so the harness measures exactly what ``pytest gate_tests`` decides. It is generic
over the registry: every case of the chosen kind is run and its verdict, value and interval
recorded, whatever gates exist.

Kinds of cell:

* ``data``: one ``train`` split of ``n_lrgs`` unpaired LRGs; every data case of that split.
* ``model``: ``test`` (``n_lrgs`` unpaired LRGs) and ``test_paired`` (``n_lrgs // 2`` paired LRGs)
  scored by a reference scorer; every case that needs the model.
* ``heldout``: the held-out splits a build of ``n_lrgs`` LRGs gives the gates (the builder's default
  splits, :func:`shortcutgates.calibrate.gap.split_sizes`): ``test_paired`` pairs, and ``test`` with
  the same positive rows and as many other LRGs' controls (``schema.SHARED_POSITIVE_SPLITS``), scored
  by a reference scorer; every case that needs the model. The split sizes and sharing of ``suite``
  without simulating the 85 % of LRGs that only ``train``/``val`` would use.
* ``suite``: a paired catalogue of ``n_lrgs`` LRGs built with :func:`shortcutgates.data.build.build_manifest`
  (unpaired, the builder's default splits), scored by a reference scorer; every case. The run is
  green by the suite's rule (:func:`shortcutgates.gates.suite.outcome`: every primary case passes and no
  case of any role is an established violation).
  With ``scorer`` ``cnn:<family>`` (a *trained suite* cell) the catalogue is built as that CNN family's
  data set (:func:`shortcutgates.calibrate.cnn.family_images`: for a core-neutral family every negative
  of ``train`` and ``val`` carries a same-split positive's counter-image light; ``test`` and ``test_paired``
  hold real negatives; the LRG properties are measured from the bare controls, :func:`restate_measured`),
  the family's CNN is trained on its ``train``/``val`` splits and the whole suite gates that checkpoint on
  that manifest (``shortcutgates gate --data M --model CKPT``); one extra ``cnn_training`` record as for
  ``cnn`` cells.
* ``cnn``: a small CNN of one family (:mod:`shortcutgates.calibrate.cnn`) trained per seed on
  ``n_lrgs`` unpaired LRGs of the realistic pool, then every case that needs the model on held-out
  ``test`` and ``test_paired`` splits (``GateContext(manifest, model=checkpoint)``: what
  ``shortcutgates gate --model`` decides). One extra record per seed, gate ``cnn_training``
  (role ``training``), holds the CNN's best validation AUROC and its training time.

* ``reader``: ``n_lrgs`` LRGs simulated per seed with the simulator's default lenses, every reference
  reader, every counterfactual case (:mod:`shortcutgates.calibrate.readers`; profile ``readers``).
* ``coverage``: synthetic data of known truth per seed, the gates' intervals and their coverage
  (:mod:`shortcutgates.calibrate.coverage`; profile ``coverage``).

A cell's ``pool`` names the pool it draws from (:data:`shortcutgates.calibrate.pool.POOL_KINDS`); ``reader``
and ``coverage`` cells draw from none (:data:`shortcutgates.calibrate.runner.POOL_FREE_KINDS`).
"""

from __future__ import annotations

import tempfile
import time
import zlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shortcutgates.data.codec import encode_stamp
from shortcutgates.gates.registry import REGISTRY, GateConfig, GateContext
from shortcutgates.gates.suite import run_suite
from shortcutgates.data.schema import LRG_TRUTH
from shortcutgates.calibrate.plant import (
    PROPERTY_COLUMNS,
    TILTED,
    builder_roles,
    built_selection,
    counter_images,
    planted_in,
    positive_stamps,
    split_rows,
    write_manifest,
)
from shortcutgates.calibrate.pool import TRUTH_COLUMNS, Pool
from shortcutgates.calibrate.scorers import CNN_PREFIX, resolve_scorer

TRAINING_GATE = "cnn_training"
"""Gate name of a CNN seed's training record (value: best validation AUROC; seconds: training time)."""


@dataclass(frozen=True)
class Cell:
    """One calibration setting; ``strength`` 0 with ``scorer`` ``arc`` (or none) is the null."""

    kind: str
    problem: str = "core"
    strength: float = 0.0
    n_lrgs: int = 500
    """LRGs per split (``suite``: LRGs in the whole catalogue)."""
    scorer: str | None = None
    """Reference scorer name for ``model``/``suite`` cells (``arc``, ``core``, ``mix0.3``); ``cnn:<family>`` for
    ``cnn`` cells and trained ``suite`` cells (:data:`shortcutgates.calibrate.cnn.FAMILIES`)."""
    core: float = 0.0
    """Counter-image strength carried by every positive beneath the planted problem."""
    where: str = ""
    """``suite`` cells: comma-separated splits the planted problem is confined to (empty: all)."""
    pool: str = "tapered"
    """Pool kind the cell draws from (``tapered``: the "no core signal" null; ``realistic``)."""

    @property
    def key(self) -> str:
        s = f"{self.kind}:{self.problem}={self.strength:g}:n{self.n_lrgs}"
        if self.scorer:
            s += f":{self.scorer}"
        if self.core:
            s += f":core{self.core:g}"
        if self.where:
            s += f":in-{self.where.replace(',', '+')}"
        if self.pool != "tapered":  # tapered keys are those of the records written before pools had kinds
            s += f":{self.pool}"
        return s

    def rng(self, seed: int) -> np.random.Generator:
        """The seed's random stream (independent of the order cells are run in)."""
        return np.random.default_rng([seed, zlib.crc32(self.key.encode())])


def role_of(case) -> str:
    """``primary`` or ``reported``: the case's own role, else its registry row's."""
    role = getattr(case, "role", None) or getattr(REGISTRY[case.gate], "role", None)
    if role is None:
        raise RuntimeError(f"calibrate: registry row {case.gate!r} carries no role (primary/reported)")
    return str(role)


def _direction(result) -> str:
    return str(result.direction)


def _manifest(pool: Pool, cell: Cell, seed: int, directory: Path) -> Path:
    rng = cell.rng(seed)
    kw: dict[str, Any] = dict(problem=cell.problem, strength=cell.strength, core=cell.core)
    if cell.kind == "data":
        frame, _ = split_rows(pool, cell.n_lrgs, "train", rng, **kw)
    elif cell.kind == "model":
        test, used = split_rows(pool, cell.n_lrgs, "test", rng, **kw)
        paired, _ = split_rows(
            pool,
            cell.n_lrgs // 2,
            "test_paired",
            rng,
            core=cell.core + (cell.strength if cell.problem == "core" else 0.0),
            paired=True,
            exclude=used,
        )
        frame = pd.concat([test, paired], ignore_index=True)
    elif cell.kind == "heldout":
        frame = _held_out_rows(pool, cell, rng)
    else:
        return _built_manifest(pool, cell, rng, seed, directory)
    return write_manifest(frame, directory / "manifest")


def _held_out_rows(pool: Pool, cell: Cell, rng: np.random.Generator) -> pd.DataFrame:
    """``test_paired`` pairs and ``test`` (their positives, other LRGs' controls) of a ``heldout`` cell."""
    from shortcutgates.calibrate.gap import split_sizes

    if cell.problem != "core":
        raise ValueError(f"calibrate: heldout cells plant 'core' only (got {cell.problem!r})")
    n_pairs, n_other = split_sizes(cell.n_lrgs)
    paired, used = split_rows(pool, n_pairs, "test_paired", rng, core=cell.core + cell.strength, paired=True)
    unpaired, _ = split_rows(pool, 2 * n_other, "test", rng, exclude=used)
    shared = paired[paired["label"] == 1].assign(split="test")
    return pd.concat([paired, shared, unpaired[unpaired["label"] == 0]], ignore_index=True)


def paired_catalogue(
    pool: Pool,
    index: np.ndarray,
    core: float | np.ndarray,
    rng: np.random.Generator,
    images: tuple[np.ndarray, np.ndarray] | None = None,
) -> pd.DataFrame:
    """A paired catalogue (docs/design.md#paired-input-format) of pool LRGs, one injection each.

    ``images``: (stamps, controls), each (N, 3, H, W), written instead of the pool's positives and bare
    controls (a CNN family's, :func:`shortcutgates.calibrate.cnn.family_images`); a counter-image of
    ``core`` × the arc's flux is added to those stamps where ``core`` > 0, as to the pool's."""
    meta = pool.meta.iloc[index].reset_index(drop=True)
    frame = meta[["ra", "dec", *PROPERTY_COLUMNS, "theta_e_arcsec"]].copy()
    if images is None:
        stamps, controls = positive_stamps(pool, index, core, rng), pool.ctrl[np.asarray(index)]
    else:
        stamps, controls = images
        if np.any(np.asarray(core) > 0):
            stamps = stamps + counter_images(meta, np.asarray(pool.arc[np.asarray(index)], np.float32), core, rng)
    frame["stamp_npz"] = [encode_stamp(im, compress=False) for im in stamps]
    frame["ctrl_stamp_npz"] = [encode_stamp(np.asarray(im, np.float32), compress=False) for im in controls]
    frame["cutout_ok"] = np.int32(1)
    for column in TRUTH_COLUMNS[1:] if pool.kind == "realistic" else ():  # the counterfactual gates' injection truth
        frame[column] = meta[column].to_numpy()
    return frame


def restate_measured(pool: Pool, manifest: Path) -> None:
    """Restate a built manifest's measured LRG properties (:data:`shortcutgates.data.lrg_properties.ALWAYS_MEASURED`)
    from each LRG's bare pool control, in place.

    The builder measures one control per LRG; a core-neutral negative's control also carries a donor's
    lensed light (:func:`shortcutgates.calibrate.cnn.family_images`), which the builder never measures on a
    positive (it measures the positive's bare control). Left there, the lent light is a property imbalance
    of the construction, not of the LRGs (measured before this step: ``metadata_c2st_auc[train]`` 0.76,
    ``total_mag_r`` SMD 0.27 on 2000 LRGs, seed 0; ``docs/calibration.md``). Rows are matched to pool LRGs by
    their sky position."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from shortcutgates.data.build import MANIFEST_PARQUET
    from shortcutgates.data.io import write_parquet_atomic
    from shortcutgates.data.lrg_properties import ALWAYS_MEASURED

    from shortcutgates.calibrate.plant import measured_columns

    path = Path(manifest) / MANIFEST_PARQUET
    table = pq.read_table(path)
    sky = pd.Series(np.arange(len(pool)), index=pd.MultiIndex.from_arrays([pool.meta["ra"], pool.meta["dec"]]))
    rows = table.select(["ra", "dec"]).to_pandas()
    measured = measured_columns(pool, sky.loc[list(zip(rows["ra"], rows["dec"]))].to_numpy())
    for column in ALWAYS_MEASURED:
        i = table.schema.get_field_index(column)
        table = table.set_column(
            i, table.schema.field(i), pa.array(measured[column].to_numpy(), table.schema.field(i).type)
        )
    write_parquet_atomic(table, path)


def _built_manifest(pool: Pool, cell: Cell, rng, seed: int, directory: Path) -> Path:
    from shortcutgates.data.build import build_manifest
    from shortcutgates.data.io import write_parquet_atomic

    if cell.problem not in ("core", "leak", *TILTED):
        raise ValueError(f"calibrate: suite cells plant 'core', 'leak', 'mag' or 'size' (got {cell.problem!r})")
    where = tuple(w for w in cell.where.split(",") if w)
    index = built_selection(pool, cell.n_lrgs, seed, rng, problem=cell.problem, strength=cell.strength, where=where)
    core = np.full(len(index), cell.core)
    family = _family(cell)
    if cell.problem == "core" or family is not None:
        split, role = builder_roles(pool, seed)
        if cell.problem == "core":
            core += cell.strength * planted_in(split, role, where)[index]
    images = None
    if family is not None:
        from shortcutgates.calibrate.cnn import family_images

        images = family_images(pool, index, family, split[index], role[index], rng)
    catalogue = paired_catalogue(pool, index, core, rng, images)
    if cell.problem in TILTED:  # survey format: no LRG photometry columns
        catalogue = catalogue.drop(columns=[c for c in LRG_TRUTH if c in catalogue])
    write_parquet_atomic(catalogue, directory / "paired" / "part-0000.parquet")
    build_manifest(directory / "paired", directory / "manifest", mode="unpaired", seed=seed, progress=False)
    if family is not None and family.donor_core:
        restate_measured(pool, directory / "manifest")
    if cell.problem == "leak" and cell.strength > 0:
        leak_into_test(directory / "manifest", cell.strength, rng)
    return directory / "manifest"


def leak_into_test(manifest: Path, fraction: float, rng: np.random.Generator) -> int:
    """Plant LRG leakage in a built manifest as a separately assembled test set would: the bare controls
    of ``fraction`` × (``test``'s LRG count) of ``train``'s positive LRGs appended to ``test`` as
    negatives (their own sky position and ``lrg_id``; the control is an image the manifest did not hold,
    so only the LRG repeats). Returns the count leaked (at least one)."""
    from shortcutgates.data.build import MANIFEST_PARQUET
    from shortcutgates.data.io import write_parquet_atomic
    from shortcutgates.data.schema import LABEL_COLUMN

    path = manifest / MANIFEST_PARQUET
    rows = pd.read_parquet(path)
    k = max(1, int(round(fraction * rows.loc[rows["split"] == "test", "lrg_id"].nunique())))
    donors = rows[(rows["split"] == "train") & (rows[LABEL_COLUMN] == 1)]
    leaked = donors.iloc[np.sort(rng.choice(len(donors), k, replace=False))].copy()
    negatives = rows[rows[LABEL_COLUMN] == 0]
    for column in rows.columns:  # what a negative row holds: no injection truth
        if column in leaked and negatives[column].isna().all():
            leaked[column] = None
    leaked[LABEL_COLUMN] = 0
    leaked["split"] = "test"
    leaked["source_column"] = "ctrl_stamp_npz"
    write_parquet_atomic(pd.concat([rows, leaked], ignore_index=True), path)
    return k


def _wanted(case, cell: Cell) -> bool:
    needs_model = "model" in case.needs
    if cell.kind == "data":
        return not needs_model
    if cell.kind in ("model", "cnn", "heldout"):
        return needs_model
    return True


def _family(cell: Cell):
    """The CNN family a cell trains (:class:`shortcutgates.calibrate.cnn.Family`): every ``cnn`` cell's, a
    ``suite`` cell's whose scorer is ``cnn:<family>``; None for the cells scored by a reference scorer."""
    if cell.kind == "cnn" or (cell.kind == "suite" and (cell.scorer or "").startswith(CNN_PREFIX)):
        from shortcutgates.calibrate.cnn import family_of  # torch: only where a CNN is trained

        return family_of(cell.scorer or "")
    return None


def _context(pool: Pool, cell: Cell, seed: int, config: GateConfig, directory: Path) -> tuple[GateContext, list]:
    """The gate context of one seed, and any extra records (a CNN seed's training record)."""
    family = _family(cell)
    if family is None:
        score_fn = resolve_scorer(cell.scorer) if cell.scorer else None
        return GateContext(_manifest(pool, cell, seed, directory), config=config, score_fn=score_fn), []
    from shortcutgates.calibrate.cnn import fit, train_seed

    if cell.kind == "suite":  # trained on the gated manifest's own train/val splits
        trained = fit(_manifest(pool, cell, seed, directory), family, seed, directory)
    else:
        trained = train_seed(pool, family, cell.n_lrgs, seed, cell.rng(seed), directory)
    record = {
        "case": TRAINING_GATE,
        "gate": TRAINING_GATE,
        "role": "training",
        "verdict": "trained",
        "value": trained.val_auroc,
        "lo": np.nan,
        "hi": np.nan,
        "threshold": np.nan,
        "direction": "",
        "established": False,
        "message": f"best validation AUROC {trained.val_auroc:.4f} after {trained.epochs} epochs",
        "seconds": trained.seconds,
    }
    return GateContext(trained.gating_manifest, model=trained.checkpoint, config=config), [record]


def run_seed(
    pool: Pool, cell: Cell, seed: int, config: GateConfig, roles=("primary", "reported"), also: tuple = ()
) -> list[dict]:
    """Every wanted case of one seed of ``cell`` whose role is in ``roles`` or whose gate is in ``also``:
    one record per case (``reader`` and ``coverage`` cells: :func:`shortcutgates.calibrate.runner.run_cell_seed`)."""
    config = replace(config, seed=int(seed))
    base = {**asdict(cell), "cell": cell.key, "seed": int(seed)}
    with tempfile.TemporaryDirectory(prefix="sg-calibrate-") as tmp:
        start = time.perf_counter()
        try:
            context, extra = _context(pool, cell, seed, config, Path(tmp))
        except (ValueError, OSError) as exc:  # the data cannot be read: the whole run is red
            return [
                {
                    **base,
                    "case": "<manifest>",
                    "gate": "<manifest>",
                    "role": "primary",
                    "verdict": "error",
                    "value": np.nan,
                    "lo": np.nan,
                    "hi": np.nan,
                    "threshold": np.nan,
                    "direction": "",
                    "established": False,
                    "message": _without_dir(f"{type(exc).__name__}: {exc}", tmp),
                    "seconds": time.perf_counter() - start,
                }
            ]

        def wanted(case) -> bool:
            return _wanted(case, cell) and (role_of(case) in roles or case.gate in also)

        records = [{**base, **r} for r in extra] + [
            case_record(base, run.case, run.result, run.seconds) for run in run_suite(context, wanted, waivers=False)
        ]
    return [{**r, "message": _without_dir(r["message"], tmp)} for r in records]


SEED_DIR = "<seed dir>"
"""What a record's message says instead of the seed's temporary directory (files a bad-row message names)."""


def _without_dir(message, directory: str):
    """``message`` with the seed's temporary ``directory`` written as :data:`SEED_DIR`: the same records for
    any run, any worker count."""
    return (
        message.replace(str(Path(directory).resolve()), SEED_DIR).replace(str(directory), SEED_DIR)
        if isinstance(message, str)
        else message
    )


def case_record(base: dict, case, result, seconds: float) -> dict:
    """One calibration record of a case's result (``base``: the cell's columns and the seed)."""
    lo, hi = result.ci if result.ci is not None else (np.nan, np.nan)
    return {
        **base,
        "case": case.id,
        "gate": case.gate,
        "role": role_of(case),
        "verdict": result.verdict,
        "value": np.nan if result.value is None else float(result.value),
        "lo": float(lo),
        "hi": float(hi),
        "threshold": np.nan if result.threshold is None else float(result.threshold),
        "direction": _direction(result),
        "established": bool(result.established),
        "message": result.message[:300],
        "seconds": seconds,
    }
