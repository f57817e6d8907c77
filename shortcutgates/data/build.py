"""``shortcutgates build``: a paired / unpaired / matched manifest with LRG-disjoint splits.

The build reads only metadata columns of the paired input (no image blob) and writes pointers
(``source_path``, ``source_row``, ``source_column``) unless ``--inline`` asks for the blobs to be
copied into ``image_npz``. Matching on properties measured from the control images
(:data:`MEASURED_COLUMNS`) is the one case that decodes blobs: one control per LRG.

Output (docs/design.md#manifest): ``OUT/manifest.parquet`` and ``OUT/manifest.json``, written into a temporary
directory beside ``OUT`` that replaces ``OUT`` atomically (:func:`shortcutgates.data.io.atomic_directory`),
so an interrupted build leaves the previous complete manifest or the new one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import pyarrow.parquet as pq

from shortcutgates.data.blob_rows import read_blobs
from shortcutgates.data.build_output import (  # noqa: F401 (MANIFEST_PARQUET, rows_sha256, input_root, relative_pointers: this module's interface)
    MANIFEST_PARQUET,
    input_root,
    manifest_parameters,
    relative_pointers,
    rows_sha256,
    write_manifest,
)
from shortcutgates.data.identity import match_lrgs
from shortcutgates.data.io import list_parquet_files, read_paired
from shortcutgates.data.schema import BLOB_COLUMNS, IMAGE_COLUMN, LRG_ID_COLUMN, MANIFEST_SPLITS, DataError
from shortcutgates.data.lrg_properties import ALWAYS_MEASURED, MEASURED_COLUMNS, measure_controls
from shortcutgates.data.splits import SplitParams, assign


class BuildSummary(NamedTuple):
    """What a build wrote."""

    out_dir: Path
    n_rows: int
    counts: dict
    """split -> {"pos": n, "neg": n} rows."""
    rows_sha256: str
    """sha256 of the manifest rows (Arrow IPC stream of the table)."""
    meta: dict
    """The content of ``manifest.json``."""


def _quiet(progress: bool) -> bool:
    return not progress or not sys.stderr.isatty()


class _Steps:
    """A tqdm bar over the build's stages (stderr; silent when not a terminal or progress=False)."""

    def __init__(self, progress: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=5, desc="build", unit="step", disable=_quiet(progress), file=sys.stderr)

    def next(self, what: str) -> None:
        self.bar.set_postfix_str(what)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


# --- reading ------------------------------------------------------------------------------------
def metadata_columns(files) -> tuple[list[str], list[str]]:
    """Non-blob columns present in every input file, and those present in only some (not read).

    Raises
    ------
    DataError
        A file lacks ``ra``/``dec`` or one of the blob columns the manifest points to.
    """
    common, seen = None, set()
    for file in files:
        try:
            names = pq.read_schema(file).names
        except Exception as exc:
            raise DataError(f"not a readable parquet file ({exc})", file=file) from None
        missing = [c for c in ("ra", "dec", *BLOB_COLUMNS) if c not in names]
        if missing:
            raise DataError(
                f"missing column(s) {', '.join(missing)}",
                file=file,
                hint="paired input needs ra, dec, stamp_npz, ctrl_stamp_npz (docs/design.md#paired-input-format)",
            )
        keep = [c for c in names if c not in BLOB_COLUMNS]
        common = keep if common is None else [c for c in common if c in keep]
        seen.update(keep)
    return common, sorted(seen - set(common))


def hard_negative_options(mode: str, hard_negatives, hard_negative_mix, hard_negative_splits) -> tuple:
    """``(kinds, mix, splits)`` of ``--hard-negatives`` / ``--hard-negative-mix`` / ``--hard-negative-splits``,
    checked (ValueError naming the option)."""
    from shortcutgates.data import hard_negatives as hn

    kinds = hn.parse_kinds(hard_negatives)
    mix = {**{k: hn.DEFAULT_MIX[k] for k in kinds}, **hn.parse_mix(hard_negative_mix or {})}
    splits = tuple(hard_negative_splits)
    if kinds and mode != "unpaired":
        raise ValueError(
            "build: --hard-negatives needs --mode unpaired (a paired build's negatives are the positives' own controls)"
        )
    bad_splits = [s for s in splits if s not in MANIFEST_SPLITS]
    if bad_splits:
        raise ValueError(f"build: --hard-negative-splits: unknown split(s) {', '.join(bad_splits)}")
    return kinds, mix, splits


def split_params(
    mode: str, seed: int, match, positives_per_lrg, fractions, match_bins: int, resplit: bool
) -> SplitParams:
    """The build's :class:`~shortcutgates.data.splits.SplitParams`; ``extra['measured']``: the LRG properties
    measured from one control per LRG (:data:`ALWAYS_MEASURED` and the matched :data:`MEASURED_COLUMNS`)."""
    match = tuple(match)
    cap = None if str(positives_per_lrg) == "all" else int(positives_per_lrg)
    measured = tuple(dict.fromkeys(ALWAYS_MEASURED + tuple(c for c in match if c in MEASURED_COLUMNS)))
    return SplitParams(mode, int(seed), tuple(fractions), cap, match, match_bins, resplit, {"measured": measured})


class _Read(NamedTuple):
    """The paired input as read, identified and split (:func:`_read_and_assign`)."""

    files: list
    partial: list
    catalog: Any
    """:func:`shortcutgates.data.io.read_paired`'s catalogue."""
    ident: Any
    """:func:`shortcutgates.data.identity.match_lrgs`'s identity."""
    result: Any
    """:func:`shortcutgates.data.splits.assign`'s result."""
    controls: dict | None
    """The controls decoded to measure the LRGs, by ``(source_path, source_row)``, when asked for (hard negatives)."""


def _read_and_assign(
    input_path, params: SplitParams, tolerance_arcsec: float, progress: bool, steps: _Steps, keep_controls: bool = False
) -> _Read:
    """Read the metadata, identify LRGs, measure one control per LRG and assign splits and pools;
    ``keep_controls``: keep the decoded controls (:func:`~shortcutgates.data.lrg_properties.measure_controls`)."""
    files = list_parquet_files(input_path)
    columns, partial = metadata_columns(files)
    steps.next(f"reading {len(files)} files")
    catalog = read_paired(input_path, columns=columns)
    steps.next(f"matching {len(catalog.frame)} positions")
    ident = match_lrgs(catalog.frame["ra"].to_numpy(), catalog.frame["dec"].to_numpy(), tolerance_arcsec)
    frame = catalog.frame.assign(**{LRG_ID_COLUMN: ident.lrg_id})
    measured = params.extra["measured"]
    controls: dict | None = {} if keep_controls else None
    if measured:
        frame = measure_controls(
            frame, measured, progress=progress, strict=any(c in MEASURED_COLUMNS for c in params.match), keep=controls
        )
    steps.next(f"assigning {ident.n_lrgs} LRGs")
    return _Read(files, partial, catalog, ident, assign(frame, params), controls)


def _inline_blobs(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with every pointer's blob copied into ``image_npz`` (constructed rows hold theirs already)."""
    if IMAGE_COLUMN not in rows:
        return rows.assign(**{IMAGE_COLUMN: read_blobs(rows)})
    pointer = rows[IMAGE_COLUMN].isna().to_numpy()
    blobs = rows[IMAGE_COLUMN].to_numpy().copy()
    blobs[pointer] = read_blobs(rows[pointer])
    return rows.assign(**{IMAGE_COLUMN: blobs})


def build_manifest(
    input_path,
    out_dir,
    *,
    mode: str,
    seed: int,
    match=(),
    positives_per_lrg=1,
    fractions=(0.7, 0.15, 0.15),
    tolerance_arcsec: float = 0.5,
    inline: bool = False,
    resplit: bool = False,
    progress: bool = True,
    match_bins: int = 5,
    hard_negatives=(),
    hard_negative_mix=None,
    hard_negative_splits=("train",),
    shuffle_arcsec: float | None = None,
) -> BuildSummary:
    """Build a manifest from a paired catalogue (docs/design.md#manifest, #splits).

    Parameters
    ----------
    input_path : path-like
        Paired parquet file or directory tree (docs/design.md#paired-input-format).
    out_dir : path-like
        Manifest directory to (re)place atomically.
    mode : {'paired', 'unpaired'}
    seed : int
        Keys every split / pool / selection hash; same input and seed give identical bytes.
    match : sequence of str
        Columns to match the negatives on (unpaired); names in :data:`MEASURED_COLUMNS` are
        measured from one control image per LRG and written to the manifest.
    positives_per_lrg : int or 'all'
        Cap on positive rows per LRG; ``'all'`` keeps all and writes ``weight`` = 1/k.
    fractions : 3 or 4 floats
        train, val, test [, test_paired] fractions of LRGs.
    tolerance_arcsec : float
        Sky-matching tolerance of LRG identity. Unit: arcsec.
    inline : bool
        Copy blobs into ``image_npz`` instead of writing pointers only.
    resplit : bool
        Ignore the input's splits and assign every LRG by hash.
    hard_negatives, hard_negative_mix, hard_negative_splits, shuffle_arcsec
        Constructed rows (:mod:`shortcutgates.data.hard_negatives`; unpaired builds only; inline images): the kinds
        (``core``, ``shuffle``, ``swap``), kind -> rows per plain row of the host class (default
        :data:`~shortcutgates.data.hard_negatives.DEFAULT_MIX`), the splits that get them (default train only, so the
        gates score real negatives), and the ``shuffle`` piece length (arcsec; default: the donor's PSF FWHM).
    """
    kinds, mix, hard_splits = hard_negative_options(mode, hard_negatives, hard_negative_mix, hard_negative_splits)
    params = split_params(mode, seed, match, positives_per_lrg, fractions, match_bins, resplit)
    steps = _Steps(progress)
    read = _read_and_assign(input_path, params, tolerance_arcsec, progress, steps, keep_controls=bool(kinds))
    hard_options = (kinds, mix, hard_splits, shuffle_arcsec, input_root(input_path))
    rows, hard = _manifest_rows(read, hard_options, int(seed), inline, progress, steps)
    steps.next("writing")
    parameters = manifest_parameters(params, tolerance_arcsec, inline, kinds, mix, hard_splits, shuffle_arcsec)
    sha, meta = write_manifest(input_path, out_dir, read, rows, parameters, hard)
    steps.close()
    return BuildSummary(Path(out_dir), len(rows), meta["counts"], sha, meta)


def _manifest_rows(
    read: _Read, hard_options: tuple, seed: int, inline: bool, progress: bool, steps: _Steps
) -> tuple[pd.DataFrame, dict | None]:
    """The manifest rows: the assigned rows, the constructed ones (``hard_options``: kinds, mix, splits and
    shuffle piece of ``--hard-negatives``, and the input root its row keys are relative to) and their
    record, the blobs copied inline (``--inline``)."""
    from shortcutgates.data import hard_negatives as hn

    kinds, mix, hard_splits, shuffle_arcsec, root = hard_options
    rows, hard = read.result.frame, None
    if kinds:
        steps.next(f"constructing {', '.join(kinds)}")
        rows, hard = hn.add_constructions(
            rows,
            kinds,
            mix,
            seed,
            hard_splits,
            shuffle_arcsec=shuffle_arcsec,
            progress=not _quiet(progress),
            controls=read.controls,
            root=root,
        )
    if inline:
        steps.next(f"copying {len(rows)} blobs")
        rows = _inline_blobs(rows)
    return rows, hard


# --- command line -------------------------------------------------------------------------------
def _columns_arg(text: str) -> tuple:
    return tuple(c.strip() for c in text.split(",") if c.strip())


def _fractions_arg(text: str) -> tuple:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated numbers (got {text!r})") from None


def _cap_arg(text: str):
    if text == "all":
        return "all"
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'all' (got {text!r})")
    return int(text)


def add_arguments(parser) -> None:
    """Options of ``shortcutgates build``."""
    parser.add_argument("--input", required=True, metavar="PAIRED", help="paired parquet file or directory")
    parser.add_argument("--out", required=True, metavar="DIR", help="manifest directory (replaced atomically)")
    parser.add_argument("--mode", required=True, choices=("paired", "unpaired"))
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="Default: %(default)r")
    parser.add_argument(
        "--match",
        type=_columns_arg,
        default=(),
        metavar="COL,COL",
        help="match negatives to positives in bins of these columns (unpaired); measured: "
        + ", ".join(MEASURED_COLUMNS),
    )
    parser.add_argument("--match-bins", type=int, default=5, metavar="N", help="Default: %(default)r")
    parser.add_argument("--positives-per-lrg", type=_cap_arg, default=1, metavar="K|all", help="Default: %(default)r")
    parser.add_argument(
        "--fractions",
        type=_fractions_arg,
        default=(0.7, 0.15, 0.15),
        metavar="TR,VA,TE[,TP]",
        help="Default: 0.7,0.15,0.15",
    )
    parser.add_argument("--tolerance-arcsec", type=float, default=0.5, metavar="ARCSEC", help="Default: %(default)r")
    parser.add_argument("--inline", action="store_true", help="copy image blobs into the manifest (image_npz)")
    parser.add_argument("--resplit", action="store_true", help="ignore input splits; assign LRGs by hash")
    _add_hard_negative_arguments(parser)
    parser.add_argument(
        "--cache",
        default=None,
        metavar="DIR",
        help="also decode and preprocess the train and val stamps into DIR, where `shortcutgates train "
        "--cache-dir DIR` memory-maps them (dataset.fill_cache)",
    )
    parser.add_argument(
        "--cache-preprocess",
        default="raw_robust",
        choices=("raw_robust", "residual"),
        help="the preprocessing of the --cache arrays (the model's). Default: %(default)s",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_hard_negative_arguments(parser) -> None:
    """Options of ``shortcutgates build`` for constructed rows (:mod:`shortcutgates.data.hard_negatives`)."""
    parser.add_argument(
        "--hard-negatives",
        default="",
        metavar="KIND,KIND",
        help="add constructed rows from the paired light d = stamp - ctrl (unpaired builds): core "
        "(a negative's control + a positive's counter-image light), shuffle (+ its arc light "
        "scrambled along its rings at the PSF scale), swap (an arc on another positive LRG's "
        "control, as a positive); docs/experiment.md#e5",
    )
    parser.add_argument(
        "--hard-negative-mix",
        default="",
        metavar="KIND=F,...",
        help="rows built per negative LRG (core, shuffle) or per positive row (swap). "
        "Default: core=0.5,shuffle=0.5,swap=0.5",
    )
    parser.add_argument(
        "--hard-negative-splits",
        type=_columns_arg,
        default=("train",),
        metavar="SPLIT,SPLIT",
        help="splits that get constructed rows. Default: train (val/test/test_paired keep real "
        "negatives, so the gates score real data)",
    )
    parser.add_argument(
        "--shuffle-arcsec",
        type=float,
        default=None,
        metavar="ARCSEC",
        help="piece length of the shuffle kind. Default: the donor's psf_fwhm_used_r",
    )


def run(args) -> int:
    """Run ``shortcutgates build``; prints one summary line per split."""
    summary = build_manifest(
        args.input,
        args.out,
        mode=args.mode,
        seed=args.seed,
        match=args.match,
        positives_per_lrg=args.positives_per_lrg,
        fractions=args.fractions,
        tolerance_arcsec=args.tolerance_arcsec,
        inline=args.inline,
        resplit=args.resplit,
        progress=not args.no_progress,
        match_bins=args.match_bins,
        hard_negatives=args.hard_negatives,
        hard_negative_mix=args.hard_negative_mix,
        hard_negative_splits=args.hard_negative_splits,
        shuffle_arcsec=args.shuffle_arcsec,
    )
    print(f"wrote {summary.n_rows} rows to {summary.out_dir} (sha256 {summary.rows_sha256[:12]})")
    for split, c in summary.counts.items():
        print(f"  {split:<12} {c['pos']:>8} pos {c['neg']:>8} neg {c['lrgs']:>8} LRGs")
    if getattr(args, "cache", None):
        from shortcutgates.model.dataset import fill_cache

        cached = fill_cache(summary.out_dir, args.cache, args.cache_preprocess, progress=not args.no_progress)
        print(f"  decoded cache: {len(cached)} arrays ({args.cache_preprocess}) in {args.cache}")
    matching = summary.meta.get("matching")
    if matching and (matching["n_pos_lrgs_dropped"] or matching["n_neg_lrgs_dropped"]):
        print(
            f"  matching dropped {matching['n_pos_lrgs_dropped']} positive and {matching['n_neg_lrgs_dropped']} "
            f"negative LRGs in {matching['n_unbalanced_cells']} unbalanced cells (listed in manifest.json)",
            file=sys.stderr,
        )
    return 0
