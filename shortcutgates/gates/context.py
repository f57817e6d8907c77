"""The gate context: a manifest (and a model) loaded once, with everything the gates share cached.

Per split the context keeps one *sample* (:class:`~shortcutgates.gates.sample.SplitSample`: rows
capped at ``config.max_samples``, decoded once, bad rows and duplicate negatives left out; how it is
drawn is :mod:`shortcutgates.gates.sample`). Probes, model scores and perturbations all work on this
sample, so the model scores each unperturbed image exactly once per context.

LRG identity is always the sky match of :mod:`shortcutgates.data.identity` (tolerance 0.5″); given
``lrg_id`` values are checked against it and disagreements are reported by ``lrg_leakage``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from shortcutgates.data.blob_rows import release_row_group_cache

from shortcutgates.data import manifest as sgmanifest
from shortcutgates.data.identity import check_lrg_ids, match_lrgs
from shortcutgates.model.preprocess import get_preprocessor, raw_robust, residual
from shortcutgates.data.schema import (
    CONDITIONS,
    LABEL_COLUMN,
    LRG_ID_COLUMN,
    LRG_MEASURED,
    LRG_TRUTH,
    MANIFEST_SPLITS,
    PIXEL_SCALE_ARCSEC,
    SPLIT_COLUMN,
    DataError,
)
from shortcutgates.gates import context_blocks
from shortcutgates.gates.probes import ProbeError
from shortcutgates.gates.records import GateConfig
from shortcutgates.gates.sample import DecodedRows, SplitSample, cap_rows, decode_rows, dedup_negatives, matched_units
from shortcutgates.gates.scoring import CHUNK, by_stamp_chunks, inference_threads, score_chunks, training_manifest_of

ScoreFn = Callable[[np.ndarray], np.ndarray]
"""``score_fn(raw_images (N, 3, H, W) nanomaggies) -> (N,) scores``; higher = more lens-like."""

ANNULUS_MODES = {"raw_robust": raw_robust, "residual": residual}
"""Preprocessings that take the outer-annulus median/MAD a sample measured when it was decoded."""


MODEL_MEMOS = frozenset({"pair_scores"})
"""Memo keys (first element) whose results depend on the model although they do not name it."""


def model_dependent(key: tuple) -> bool:
    """Whether a :meth:`GateContext.memo` key holds a model's result: it names the input ``"model"`` (a
    callable preprocessing) or is one of :data:`MODEL_MEMOS`. Every other key is data only."""
    return "model" in key or (bool(key) and key[0] in MODEL_MEMOS)


def _sky_groups(frame: pd.DataFrame) -> np.ndarray:
    return match_lrgs(frame["ra"].to_numpy(), frame["dec"].to_numpy()).lrg_id.astype(str)


class GateContext:
    """Manifest, samples, preprocessed inputs and model scores, each computed once.

    Parameters
    ----------
    data : path
        Manifest directory (built or hand-written) or a single parquet file (docs/design.md#manifest).
    model : path, optional
        Checkpoint (docs/design.md#checkpoint); loaded with ``shortcutgates.model.checkpoint.load_checkpoint``.
    config : GateConfig
    progress : bool
        tqdm progress bars on stderr.
    score_fn : callable, optional
        ``raw_images -> scores`` used instead of a checkpoint (tests, benchmarks, foreign models).
    preprocess : str or callable, optional
        The model input's deterministic preprocessing when ``score_fn`` is given (default
        ``raw_robust``); a checkpoint brings its own.
    data_root : path, optional
        Where the manifest's relative pointers are taken from instead of its recorded source root
        (``--data-root``; :func:`shortcutgates.data.manifest.read_manifest`).

    Notes
    -----
    Counters ``n_inference_passes`` and ``n_images_scored`` record the model's work.
    """

    def __init__(
        self,
        data,
        model=None,
        config: GateConfig = GateConfig(),
        progress: bool = False,
        score_fn: ScoreFn | None = None,
        preprocess: str | Callable | None = None,
        data_root=None,
    ):
        self.data = Path(data)
        self.config = config
        self.progress = progress
        # blobs stay on disk, fetched per chunk; duplicated images are data_integrity failures, not a refusal
        manifest = sgmanifest.read_manifest(self.data, blobs=False, check_duplicates=False, data_root=data_root)
        self.manifest = manifest
        frame = manifest.frame
        self.duplicate_images: list[str] = list(frame.attrs.get("duplicate_images", []))
        if frame[SPLIT_COLUMN].isna().any():
            i = int(np.flatnonzero(frame[SPLIT_COLUMN].isna().to_numpy())[0])
            raise DataError(
                "split is missing",
                file=frame["manifest_file"].iloc[i],
                row=int(frame["manifest_row"].iloc[i]),
                column=SPLIT_COLUMN,
            )
        frame[SPLIT_COLUMN] = frame[SPLIT_COLUMN].astype(str)
        frame["_group"] = _sky_groups(frame)
        self.frame = frame
        self.id_check = (
            check_lrg_ids(frame["ra"], frame["dec"], frame[LRG_ID_COLUMN]) if LRG_ID_COLUMN in frame else None
        )
        self.model_path = None if model is None else Path(model)
        self._loaded = None
        self.training_manifest: Path | str | None = None
        """The manifest the checkpoint was trained on (its ``train`` split is checked for LRGs shared
        with the gated data by ``lrg_leakage``), a one-line reason it cannot be read, or None."""
        self._score_fn = score_fn
        self._score_inputs: ScoreFn | None = None
        """Scores of inputs in the named preprocessing ``_preprocess`` (:meth:`score`), when the scorer offers it."""
        self._preprocess = preprocess
        if model is not None:
            self._load_model(self.model_path)
        self._samples: dict[str, SplitSample] = {}
        self._inputs: dict[tuple[str, str], np.ndarray] = {}
        """Inputs of named preprocessing modes: data only, one dict shared by every :meth:`with_scorer` context."""
        self._model_inputs: dict[tuple[str, str], np.ndarray] = {}
        self._scores: dict[str, np.ndarray] = {}
        self._memo: dict[tuple, object] = {}
        """Data-only memoised results, one dict shared by every :meth:`with_scorer` context."""
        self._model_memo: dict[tuple, object] = {}
        self._integrity = None
        self.array_cache = None
        """The run's gate cache (:class:`~shortcutgates.gates.cache.DataGateCache`), where the model gates keep
        their model-independent arrays (the lensing split of the paired set); None: computed each run."""
        self._predecoded: dict[str, DecodedRows] = {}
        """Decoded rows of samples not drawn yet, left by the integrity pass (:meth:`_check_rows`)."""
        self.n_inference_passes = 0
        """Calls of the score function over a set of images (one per split, one per perturbation)."""
        self.n_images_scored = 0

    # --- model ---------------------------------------------------------------------------------
    def _load_model(self, path: Path) -> None:
        try:
            from shortcutgates.model.checkpoint import load_checkpoint
            from shortcutgates.model.evaluate import predict_scores
        except ImportError as exc:
            raise RuntimeError(
                f"GateContext: cannot load a checkpoint, the model modules are missing ({exc})"
            ) from None
        loaded = load_checkpoint(path)
        self._loaded = loaded
        self.training_manifest = training_manifest_of(path)
        self._score_fn = lambda raw: np.asarray(predict_scores(loaded, raw), np.float64)
        self._preprocess = loaded.preprocess

    def with_scorer(
        self,
        score_fn: ScoreFn | None,
        preprocess: str | Callable | None = None,
        model_path=None,
        score_inputs: ScoreFn | None = None,
    ) -> "GateContext":
        """A context on the same data with another model (or none), sharing everything that is data only.

        The manifest, samples, integrity check, inputs of named preprocessing modes and memoised
        data-only results (probe fits, the paired set) are shared (one store: what any of these
        contexts computes, the others reuse); model scores, counters, model-dependent memos
        (:func:`model_dependent`) and any input of a callable preprocessing are the new model's own.
        Used to gate many checkpoints on one data read.
        """
        import copy

        other = copy.copy(self)
        other._score_fn, other._preprocess, other._loaded = score_fn, preprocess, None
        other._score_inputs = score_inputs if isinstance(preprocess, str) else None
        other.model_path = None if model_path is None else Path(model_path)
        other._model_inputs, other._model_memo = {}, {}
        other._scores = {}
        other.n_inference_passes = other.n_images_scored = 0
        other.training_manifest = None if model_path is None else training_manifest_of(model_path)
        return other

    def training_lrgs_shared(self, split: str) -> list[str]:
        """LRGs of ``split`` that the checkpoint's training manifest holds in its ``train`` split
        (sky matching over both manifests together, 0.5″), sorted."""
        if not isinstance(self.training_manifest, Path):
            raise ProbeError(str(self.training_manifest or "the model records no training manifest"))

        def compute():
            train = sgmanifest.read_manifest(self.training_manifest, blobs=False, check_duplicates=False).frame
            train = train[train[SPLIT_COLUMN].astype(str) == "train"]
            return train[["ra", "dec"]].to_numpy(np.float64)

        trained = self.memo(("training_positions", str(self.training_manifest)), compute)
        rows = self.rows(split)
        ids = match_lrgs(
            np.r_[rows["ra"].to_numpy(np.float64), trained[:, 0]],
            np.r_[rows["dec"].to_numpy(np.float64), trained[:, 1]],
        ).lrg_id.astype(str)
        return sorted(set(ids[: len(rows)]) & set(ids[len(rows) :]))

    @property
    def has_model(self) -> bool:
        return self._score_fn is not None

    def score(self, raw_images: np.ndarray, inputs: np.ndarray | None = None) -> np.ndarray:
        """Model scores of raw images (one inference pass, counted), shape (N,).

        ``inputs``: the same images already in the model's named preprocessing
        (:meth:`model_inputs`); a scorer that takes them (``Scorer.score_inputs``) scores them without
        preprocessing again, the same floats (preprocessing works stamp by stamp)."""
        if self._score_fn is None:
            raise ProbeError("no model given")
        from tqdm.auto import tqdm

        by_inputs = inputs is not None and self._score_inputs is not None
        fn, images = (self._score_inputs, inputs) if by_inputs else (self._score_fn, raw_images)
        self.n_inference_passes += 1
        self.n_images_scored += len(raw_images)
        bar = tqdm(total=len(images), desc="model scores", unit="image", disable=not self.progress, leave=False)
        out = score_chunks(fn, images, inference_threads() if by_inputs else 1, bar.update)
        bar.close()
        scores = np.concatenate(out) if out else np.zeros(0)
        if len(scores) != len(raw_images) or not np.isfinite(scores).all():
            raise ProbeError(f"model returned {len(scores)} scores for {len(raw_images)} images or non-finite scores")
        return scores

    def model_inputs(self, key: tuple, raw: Callable[[], np.ndarray]) -> np.ndarray | None:
        """``raw()`` in the model's named preprocessing, memoised under the data key ``key`` (shared by every
        model with that preprocessing), when the scorer takes preprocessed inputs; else None."""
        if self._score_inputs is None or not isinstance(self._preprocess, str):
            return None
        name = self._preprocess
        if key[:1] == ("sample",):
            return self.inputs(key[1], name)
        return self.memo((*key, "inputs", name), lambda: get_preprocessor(name)(raw()))

    def scores(self, split: str) -> np.ndarray:
        """Model scores of a split's sample, computed once."""
        if split not in self._scores:
            images = self.sample(split).images
            self._scores[split] = self.score(images, self.model_inputs(("sample", split), lambda: images))
        return self._scores[split]

    @property
    def model_preprocess_name(self) -> str:
        p = self._preprocess
        if p is None:
            return "raw_robust"
        if isinstance(p, str):
            return p
        if isinstance(p, dict):
            return str(p.get("mode") or p.get("name"))
        return getattr(p, "name", None) or getattr(p, "mode", None) or getattr(p, "__name__", "custom")

    @property
    def model_input_undeclared(self) -> str | None:
        """Why the model's input cannot decide a data probe (None when it can).

        A model that declares preprocessing ``none`` (a foreign model reading raw nanomaggies, or one
        whose preprocessing is unknown) gets its model-input probes reported with this reason; the
        data probes then decide on ``config.input``, never on raw pixels.
        """
        if self.has_model and self.model_preprocess_name in ("none", "None", "custom", ""):
            return (
                f"the model declares preprocessing {self.model_preprocess_name!r}: its input is raw "
                "nanomaggies (or unknown), on which a linear probe reads the LRG's brightness scale; "
                f"reported, and the data probes decide on {self.config.input!r}"
            )
        return None

    @property
    def deciding_input_key(self) -> str:
        """Cache key of the input the data probes decide on: the model's declared input in a model
        run, else ``config.input`` (``--input``)."""
        if self.has_model and self.model_input_undeclared is None:
            return self.input_key("model")
        return self.config.input

    def model_preprocess(self, images: np.ndarray) -> np.ndarray:
        """The model's own deterministic preprocessing of raw images (docs/design.md#preprocessing)."""
        p = self._preprocess
        if callable(p):
            return np.asarray(p(images), np.float32)
        return get_preprocessor(self.model_preprocess_name)(images)

    # --- splits and samples --------------------------------------------------------------------
    @property
    def splits(self) -> list[str]:
        present = set(self.frame[SPLIT_COLUMN].unique())
        return [s for s in MANIFEST_SPLITS if s in present] + sorted(present - set(MANIFEST_SPLITS))

    @property
    def probe_splits(self) -> list[str]:
        """Splits the data gates examine: all but ``test_paired`` (paired on purpose, for the cross-test)."""
        return [s for s in self.splits if s != "test_paired"] or self.splits

    @property
    def eval_split(self) -> str:
        """The split the perturbation gates use: test, else val, else the first."""
        return next((s for s in ("test", "val") if s in self.splits), self.splits[0])

    @property
    def paired_split(self) -> str:
        """``test_paired`` if present, else the evaluation split (which must then be paired)."""
        return "test_paired" if "test_paired" in self.splits else self.eval_split

    @property
    def property_columns(self) -> list[str]:
        """Property columns present with finite values (observing conditions, LRG truth, LRG properties
        measured from the controls by the builder); never injection truth."""
        out = []
        for col in CONDITIONS + LRG_TRUTH + LRG_MEASURED:
            if col in self.frame:
                values = pd.to_numeric(self.frame[col], errors="coerce")
                if values.notna().any():
                    out.append(col)
        return out

    def rows(self, split: str) -> pd.DataFrame:
        """All manifest rows of a split (metadata and blobs)."""
        rows = self.frame[self.frame[SPLIT_COLUMN] == split]
        if rows.empty:
            raise ProbeError(f"split {split!r} has no rows (splits present: {', '.join(self.splits)})")
        return rows

    def sample(self, split: str) -> SplitSample:
        """The capped, decoded, deduplicated sample of a split (computed once)."""
        if split not in self._samples:
            self._samples[split] = self._make_sample(split)
        return self._samples[split]

    def _sampled_positions(self, split: str) -> np.ndarray:
        """Positions in ``self.frame`` of the rows a split's sample draws (:func:`cap_rows`), in order."""
        in_split = np.flatnonzero((self.frame[SPLIT_COLUMN] == split).to_numpy())
        labels = self.frame[LABEL_COLUMN].to_numpy()[in_split].astype(int)
        return in_split[
            cap_rows(labels, self.frame["_group"].to_numpy()[in_split], self.config.max_samples, self.config.seed)
        ]

    def _make_sample(self, split: str) -> SplitSample:
        rows = self.rows(split)
        labels = rows[LABEL_COLUMN].to_numpy().astype(int)
        pos = cap_rows(labels, rows["_group"].to_numpy(), self.config.max_samples, self.config.seed)
        sub = rows.iloc[pos].reset_index(drop=True)
        decoded = self._predecoded.pop(split, None)  # the integrity pass's images of these rows, if it ran first
        if decoded is None:
            decoded = decode_rows(sub)
            release_row_group_cache()
        sub, images = sub[decoded.ok].reset_index(drop=True), decoded.images
        labels = sub[LABEL_COLUMN].to_numpy().astype(int)
        keep = dedup_negatives(labels, images)
        sub, images = sub[keep].reset_index(drop=True), images[keep]
        annulus = None if decoded.annulus is None else tuple(a[keep] for a in decoded.annulus)
        theta = (
            pd.to_numeric(sub["theta_e_arcsec"], errors="coerce").to_numpy(np.float64) / PIXEL_SCALE_ARCSEC
            if "theta_e_arcsec" in sub
            else np.full(len(sub), np.nan)
        )
        theta = np.where(sub[LABEL_COLUMN].to_numpy() == 1, theta, np.nan)
        meta = sub.drop(columns=[c for c in ("image_npz",) if c in sub])
        labels, groups = meta[LABEL_COLUMN].to_numpy().astype(int), meta["_group"].to_numpy()
        units = matched_units(meta, labels, groups, self.property_columns)
        return SplitSample(
            meta, images, labels, groups, theta, len(pos), int((~decoded.ok).sum()), int((~keep).sum()), units, annulus
        )

    def input_key(self, mode: str) -> str:
        """Cache key of an input: the preprocessor name, also for ``"model"`` when the model uses a named one."""
        if mode == "model" and (self._preprocess is None or isinstance(self._preprocess, str)):
            return self.model_preprocess_name
        return mode

    def inputs(self, split: str, mode: str) -> np.ndarray:
        """Preprocessed images of a split's sample: ``mode`` is a preprocessor name or ``"model"``.

        A model whose preprocessing is a named mode shares the cached array of that mode.
        """
        key = (split, self.input_key(mode))
        store = self._model_inputs if key[1] == "model" else self._inputs
        if key not in store:
            sample = self.sample(split)
            raw = sample.images
            if key[1] in ANNULUS_MODES and sample.annulus is not None:  # its median/MAD measured at decoding
                store[key] = by_stamp_chunks(ANNULUS_MODES[key[1]], raw, sample.annulus)
            else:
                store[key] = self.model_preprocess(raw) if key[1] == "model" else get_preprocessor(key[1])(raw)
        return store[key]

    def memo(self, key: tuple, compute: Callable[[], object]):
        """``compute()`` once per key (e.g. a probe's out-of-fold scores shared by two input names).

        A data-only key is computed once for every context of :meth:`with_scorer`; a key for which
        :func:`model_dependent` holds, once per model."""
        store = self._model_memo if model_dependent(key) else self._memo
        if key not in store:
            store[key] = compute()
        return store[key]

    # --- integrity -----------------------------------------------------------------------------
    def integrity(self) -> list[str]:
        """One message per row that fails to decode, has another stamp shape, or cannot be normalised,
        then one per row whose image another row already lists (two positives, both labels, two splits)."""
        if self._integrity is None:
            self._integrity = self._check_rows()
        return self._integrity

    def _check_rows(self) -> list[str]:
        """Decode every row once; the rows the samples not drawn yet will hold keep their images, so
        each row is decoded once per run (:meth:`_keep_for_samples`)."""
        frame = self.frame
        wanted = {split: self._sampled_positions(split) for split in self.splits if split not in self._samples}
        keep = np.zeros(len(frame), bool)
        for positions in wanted.values():
            keep[positions] = True
        # In the blobs' on-disk order (each row group read once); a bad row anywhere stops that pass and
        # the rows are checked again in frame order, so the problems, their order and the stamp shape (the
        # first good row's) are those of a pass in frame order.
        problems, kept, shape = self._integrity_pass(sgmanifest.read_order(frame), keep, stop_at_problem=True)
        if problems:
            problems, kept, shape = self._integrity_pass(np.arange(len(frame)), keep, stop_at_problem=False)
        release_row_group_cache()  # the pass is over: do not keep a (possibly GB-sized) row group
        if kept:
            self._keep_for_samples(wanted, kept, shape)
        return problems + self.duplicate_images

    def _integrity_pass(self, order: np.ndarray, keep: np.ndarray, stop_at_problem: bool) -> tuple[list, list, tuple]:
        """Decode the rows at positions ``order``, CHUNK at a time: the problems found, the images of the
        rows ``keep`` marks (frame positions, images, annulus median, MAD) while none was found, the shape."""
        from tqdm.auto import tqdm

        problems: list[str] = []
        kept: list[tuple[np.ndarray, ...]] = []  # (frame positions, their images, median, MAD), copies
        shape = None
        for start in tqdm(range(0, len(order), CHUNK), desc="data_integrity", disable=not self.progress, leave=False):
            positions = order[start : start + CHUNK]
            decoded = decode_rows(self.frame.iloc[positions], shape)
            problems += decoded.problems
            shape = decoded.shape
            if problems:  # a bad row anywhere: the samples decode their rows themselves (as they always did)
                kept = []
                if stop_at_problem:
                    break
                continue
            good = positions[np.flatnonzero(decoded.ok)]
            chosen = keep[good]
            kept.append((good[chosen], decoded.images[chosen], *(a[chosen] for a in decoded.annulus or ())))
        return problems, kept, shape

    def _keep_for_samples(self, wanted: dict[str, np.ndarray], kept: list, shape) -> None:
        """The integrity pass's images of each split's sampled rows as that sample's decoding: every
        row decoded, had the one stamp shape and can be normalised, so :func:`decode_rows` of the
        sample's rows alone gives these very arrays."""
        positions, images, median, mad = (np.concatenate(part) for part in zip(*kept))
        at = np.full(len(self.frame), -1, np.int64)
        at[positions] = np.arange(len(positions))
        for split, rows in wanted.items():
            self._predecoded[split] = DecodedRows(
                images[at[rows]], np.ones(len(rows), bool), [], shape, (median[at[rows]], mad[at[rows]])
            )

    # --- report blocks (shortcutgates.gates.context_blocks) ------------------------------------
    def low_fpr(self) -> dict:
        """The report's ``low_fpr`` block (model only): :func:`~shortcutgates.gates.context_blocks.low_fpr_block`."""
        return context_blocks.low_fpr_block(self)

    @property
    def data_info(self) -> dict:
        """The report's ``"data"`` block (:func:`~shortcutgates.gates.context_blocks.data_block`)."""
        return context_blocks.data_block(self)

    @property
    def model_info(self) -> dict | None:
        """The report's ``"model"`` block, None without a model (:func:`~shortcutgates.gates.context_blocks.model_block`)."""
        return context_blocks.model_block(self)
