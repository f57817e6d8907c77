"""``shortcutgates simulate``: write a paired parquet tree of simulated LRG stamps."""

from __future__ import annotations

import argparse

from shortcutgates.simulate.population import PopulationConfig

DEFAULT_SOURCES = PopulationConfig.sources


def _range(text: str) -> tuple[int, int]:
    try:
        lo, hi = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO:HI with integers (got {text!r})") from None
    if not 1 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"expected 1 <= LO <= HI (got {text!r})")
    return lo, hi


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {text!r})")
    return value


def _workers(text: str) -> int:
    from shortcutgates.parallel import parse_workers

    return parse_workers(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output directory (must not exist or be empty); gets train/ val/ test/",
    )
    parser.add_argument("--n-lrgs", required=True, type=_positive, metavar="N", help="number of LRGs")
    parser.add_argument("--seed", required=True, type=int, metavar="S", help="random seed")
    parser.add_argument(
        "--stamp-size", type=int, default=64, metavar="PIX", help="cutout side in pixels. Default: %(default)r"
    )
    parser.add_argument(
        "--injections-per-lrg",
        type=_range,
        default=(2, 18),
        metavar="LO:HI",
        help="injections per LRG, inclusive. Default: 2:18",
    )
    parser.add_argument(
        "--rows-per-file", type=_positive, default=2000, metavar="N", help="rows per parquet file. Default: %(default)r"
    )
    parser.add_argument(
        "--sources",
        default=DEFAULT_SOURCES,
        metavar="sersic|hdf|PATH",
        help="source light: Sérsic profiles, the shipped Hubble Deep Field galaxy "
        "library, or a library path (a directory of .npz/.fits stamps, a library "
        ".npz, or a GalSim COSMOS catalogue .fits). Default: %(default)s",
    )
    parser.add_argument(
        "--workers",
        type=_workers,
        default=None,
        metavar="N",
        help="processes rendering LRGs; the output is the same bytes for any N. "
        "Default: every core this process may use",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from shortcutgates.parallel import available_cores
    from shortcutgates.simulate.generator import simulate_paired

    summary = simulate_paired(
        args.out,
        args.n_lrgs,
        args.seed,
        stamp_size=args.stamp_size,
        injections_per_lrg=args.injections_per_lrg,
        rows_per_file=args.rows_per_file,
        progress=not args.no_progress,
        sources=args.sources,
        workers=args.workers or available_cores(),
    )
    per_split = ", ".join(f"{k} {v}" for k, v in summary.rows_per_split.items())
    print(
        f"wrote {summary.n_rows} rows ({per_split}) from {summary.n_lrgs} LRGs to "
        f"{summary.out_dir} in {summary.seconds:.1f} s"
    )
    return 0
