"""``shortcutgates calibrate``: run a calibration profile (or one shard of it) and write its tables.

Examples::

    shortcutgates calibrate --profile quick --out calib_quick
    # two cores: two shards, then the tables from both
    shortcutgates calibrate --profile full --out calib_full --shard 0/2 --no-report &
    shortcutgates calibrate --profile full --out calib_full --shard 1/2 --no-report
    shortcutgates calibrate --out calib_full --report-only
    # trained CNNs on the realistic pool (model gates' null and power), two shards
    OMP_NUM_THREADS=1 shortcutgates calibrate --profile cnn --out calib_cnn --shard 0/2 --no-report &
    OMP_NUM_THREADS=1 shortcutgates calibrate --profile cnn --out calib_cnn --shard 1/2 --no-report
    # re-measure the survey strength of the planted counter-image
    shortcutgates calibrate --survey-strength
    # the reference readers on the simulator's lenses (docs/model_gates.md), seeds 0-24, two workers
    OMP_NUM_THREADS=1 shortcutgates calibrate --profile readers --seeds 25 --workers 2 --out calib_readers
    # coverage of the probe and model-AUROC intervals on synthetic data (200 seeds per cell)
    OMP_NUM_THREADS=1 shortcutgates calibrate --profile coverage --workers 2 --out calib_coverage
"""

from __future__ import annotations

import time


def _shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must be K/N, e.g. 0/2 (got {text!r})") from None
    if not (n >= 1 and 0 <= k < n):
        raise ValueError(f"--shard K/N needs 0 <= K < N (got {text!r})")
    return k, n


def _workers(text: str) -> int:
    from shortcutgates.parallel import parse_workers

    return parse_workers(text)


def add_arguments(parser) -> None:
    from shortcutgates.calibrate.profiles import PROFILES

    parser.add_argument(
        "--profile",
        default="quick",
        choices=PROFILES,
        help="cells and seeds: tiny (the test suite's), quick (~10 min on 2 cores), full (>= 200 seeds "
        "per null cell), criteria (issue 20: planted violations at 4000 LRGs), cnn (20 trained "
        "CNNs per family on the realistic pool), gap (cross_test_gap on the held-out splits of a "
        "default build of 2000 and 4000 LRGs, arc reader), readers (the reference readers on "
        "the simulator's lenses, every counterfactual gate: docs/model_gates.md), coverage (interval "
        "coverage on synthetic data of known truth: docs/design.md#verdict-rule)",
    )
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        metavar="S",
        help="seeds of every cell start at S (fresh seeds; records of other seeds in --out are kept)",
    )
    parser.add_argument(
        "--seeds", type=int, default=None, metavar="N", help="every cell runs N seeds instead of the profile's"
    )
    parser.add_argument("--out", default="calibration_out", help="directory for records, tables and figures")
    parser.add_argument("--shard", default="0/1", help="K/N: run every N-th (cell, seed) pair starting at K")
    parser.add_argument("--cache", default=None, help="pool cache directory (default ~/.cache/shortcutgates/calibrate)")
    parser.add_argument("--figures", default=None, help="directory for the PNG figures (default: --out)")
    parser.add_argument("--no-report", action="store_true", help="only run (other shards write the tables)")
    parser.add_argument("--report-only", action="store_true", help="only write tables and figures from --out's records")
    parser.add_argument(
        "--survey-strength",
        action="store_true",
        help="measure the paired raw core-LR AUC against the planted counter-image strength and exit",
    )
    parser.add_argument(
        "--workers",
        type=_workers,
        default=None,
        metavar="N",
        help="processes running this shard's (cell, seed) pairs; the records and tables are the "
        "same for any N (default: every core this process may use)",
    )
    parser.add_argument(
        "--cells",
        default="",
        metavar="TEXT",
        help="only the profile's cells whose key contains TEXT (e.g. cnn:neutral)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args) -> int:
    from shortcutgates.calibrate.profiles import make_profile
    from shortcutgates.calibrate.report import write_report
    from shortcutgates.calibrate.runner import load_records, run_profile

    profile = make_profile(args.profile)._replace(first_seed=args.first_seed)
    if args.seeds is not None:
        if args.seeds < 1:
            raise ValueError(f"--seeds must be at least 1 (got {args.seeds})")
        profile = profile._replace(cells=tuple((cell, args.seeds) for cell, _ in profile.cells))
    if args.survey_strength:
        from shortcutgates.calibrate.survey import print_survey_strength

        print_survey_strength(profile, cache_dir=args.cache, progress=not args.quiet)
        return 0
    shard, n_shards = _shard(args.shard)
    start = time.perf_counter()
    if not args.report_only:
        from shortcutgates.parallel import available_cores

        run_profile(
            profile,
            args.out,
            shard=shard,
            n_shards=n_shards,
            cache_dir=args.cache,
            progress=not args.quiet,
            workers=args.workers or available_cores(),
            cells=args.cells,
        )
        print(f"calibrate: profile {profile.name}, shard {shard}/{n_shards}: {time.perf_counter() - start:.0f} s")
    if not args.no_report:
        paths = write_report(load_records(args.out), args.out, args.figures)
        print(f"calibrate: wrote {', '.join(str(p) for p in paths.values())}")
    return 0
