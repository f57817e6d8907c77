"""Splits, pools, caps and matching on in-memory catalogues (no files, no images)."""

import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, strategies as st

from shortcutgates import testing
from shortcutgates.data.identity import match_lrgs
from shortcutgates.data.schema import DataError
from shortcutgates.data.keyed_hash import unit_hash
from shortcutgates.data.matching import bin_codes, match_pools
from shortcutgates.data.splits import (
    SplitParams,
    assign,
    hash_splits,
    split_fractions,
    standardised_mean_difference,
)

from strategies import as_read, catalogs, generate_catalog


def with_ids(frame: pd.DataFrame, path="/in/part-0.parquet") -> pd.DataFrame:
    read = as_read(frame, path)
    return read.assign(lrg_id=match_lrgs(read["ra"], read["dec"]).lrg_id)


modes = st.sampled_from(["paired", "unpaired"])
caps = st.sampled_from([1, 2, None])


# --- invariants over generated catalogues ---------------------------------------------------------
@given(catalogs(input_splits=None), modes, caps, st.integers(0, 2**31))
def test_invariants_hold(cat, mode, cap, seed):
    catalog = with_ids(cat.frame)
    rows = assign(catalog, SplitParams(mode, seed, positives_per_lrg=cap)).frame
    testing.check_manifest(rows, paired=mode == "paired")
    testing.check_traceable(rows, catalog)
    testing.check_shared_positives(rows)
    # every LRG of the input is used: as a pair, a positive or a negative
    assert set(rows["lrg_id"]) == set(catalog["lrg_id"])
    single = rows[~testing.shared_positive_rows(rows)]  # test's positives are test_paired's
    per_lrg = single[single["label"] == 1].groupby("lrg_id").size()
    if cap is not None:
        assert (per_lrg <= cap).all()
    else:
        weights = single[single["label"] == 1].groupby("lrg_id")["weight"].sum()
        assert np.allclose(weights, 1.0)
        assert (rows.loc[rows["label"] == 0, "weight"] == 1.0).all()


@given(catalogs(input_splits=None), modes, st.integers(0, 2**31))
def test_same_seed_same_rows(cat, mode, seed):
    catalog = with_ids(cat.frame)
    a = assign(catalog, SplitParams(mode, seed)).frame
    b = assign(catalog.copy(), SplitParams(mode, seed)).frame
    pd.testing.assert_frame_equal(a, b)


@given(catalogs(), modes, caps, st.randoms(use_true_random=False))
def test_permuting_rows_keeps_the_assignment_and_the_chosen_rows(cat, mode, cap, random):
    order = list(range(len(cat.frame)))
    random.shuffle(order)
    a = assign(with_ids(cat.frame), SplitParams(mode, 7, positives_per_lrg=cap)).frame
    b = assign(
        with_ids(cat.frame.iloc[order].reset_index(drop=True)), SplitParams(mode, 7, positives_per_lrg=cap)
    ).frame
    testing.check_assignment_kept(a, b)
    testing.check_assignment_kept(b, a)
    content = ["label", "split", "lrg_id", "ra", "dec"]
    pd.testing.assert_frame_equal(
        a[content].sort_values(content, ignore_index=True), b[content].sort_values(content, ignore_index=True)
    )


@given(catalogs(max_lrgs=30), st.lists(st.integers(1, 5), min_size=1, max_size=30), modes, st.integers(0, 2**16))
def test_adding_lrgs_never_moves_old_ones(cat, new_injections, mode, seed):
    new = generate_catalog(new_injections, seed=seed, first_lrg=40, columns=tuple(cat.frame.columns[2:]))
    grown = pd.concat([cat.frame, new.frame], ignore_index=True)
    before = assign(with_ids(cat.frame), SplitParams(mode, seed)).frame
    after = assign(with_ids(grown), SplitParams(mode, seed)).frame
    testing.check_assignment_kept(before, after)


@given(catalogs(input_splits=True), st.integers(0, 2**16))
def test_input_splits_are_kept(cat, seed):
    catalog = with_ids(cat.frame)
    rows = assign(catalog, SplitParams("unpaired", seed)).frame
    given_split = catalog.groupby("lrg_id")["region_split"].first()
    got = rows.groupby("lrg_id")["split"].first().replace({"test_paired": "test"})
    assert (got == given_split.reindex(got.index)).all()


def test_split_fractions_for_large_inputs():
    cat = generate_catalog([2] * 20000, seed=5, columns=())
    rows = assign(with_ids(cat.frame), SplitParams("unpaired", 11)).frame
    testing.check_split_fractions(rows, (0.7, 0.15, 0.15), tolerance=0.015)
    n_lrgs = rows["lrg_id"].nunique()
    assert rows.loc[rows["split"] == "test_paired", "lrg_id"].nunique() / n_lrgs == pytest.approx(0.075, abs=0.01)
    # unpaired pools: about half of the pooled LRGs are positive; test's positives are test_paired's
    pooled = rows[rows["split"] != "test_paired"].drop_duplicates(["split", "lrg_id"])
    assert pooled["label"].mean() == pytest.approx(0.5, abs=0.02)
    test = rows[rows["split"] == "test"]
    assert test["label"].mean() == pytest.approx(0.5, abs=0.03)


def test_test_shares_its_positives_with_test_paired_and_nothing_else():
    """The cross-test gap's design: the same lenses against unpaired (test) and paired (test_paired)
    negatives; negatives of the two splits and train vs held-out stay LRG-disjoint; same seed, same rows."""
    catalog = with_ids(generate_catalog([2] * 2000, seed=3, columns=()).frame)
    rows = assign(catalog, SplitParams("unpaired", 5)).frame
    pointer = ["source_path", "source_row", "source_column"]
    by_split = {s: rows[rows["split"] == s] for s in ("train", "val", "test", "test_paired")}
    test, paired = by_split["test"], by_split["test_paired"]
    key = lambda f: set(map(tuple, f[pointer].to_numpy().tolist()))  # noqa: E731
    assert key(test[test["label"] == 1]) == key(paired[paired["label"] == 1])
    assert not set(test.loc[test["label"] == 0, "lrg_id"]) & set(paired["lrg_id"])
    held = set(test["lrg_id"]) | set(paired["lrg_id"])
    assert not (set(by_split["train"]["lrg_id"]) | set(by_split["val"]["lrg_id"])) & held
    assert set(by_split["train"]["lrg_id"]).isdisjoint(by_split["val"]["lrg_id"])
    testing.check_manifest(rows, paired=False)
    testing.check_shared_positives(rows)
    pd.testing.assert_frame_equal(rows, assign(catalog.copy(), SplitParams("unpaired", 5)).frame)


@pytest.mark.parametrize(
    "fractions,shared",
    [
        ((0.7, 0.15, 0.15), True),
        ((0.7, 0.15, 0.1, 0.05), True),
        ((0.7, 0.15, 0.15, 0.0), False),
        ((0.7, 0.15, 0.0, 0.15), False),
    ],
)
def test_positives_are_shared_only_where_test_keeps_negatives(fractions, shared):
    catalog = with_ids(generate_catalog([1] * 400, seed=4, columns=()).frame)
    rows = assign(catalog, SplitParams("unpaired", 2, fractions)).frame
    assert bool(testing.shared_positive_rows(rows).any()) is shared
    testing.check_manifest(rows, paired=False)


def test_check_split_fractions_fails_on_a_wrong_split():
    rows = pd.DataFrame({"lrg_id": list("abcd"), "split": ["train"] * 4, "label": [1] * 4})
    with pytest.raises(testing.InvariantViolation, match="train holds 1.000 of 4 LRGs"):
        testing.check_split_fractions(rows, (0.7, 0.15, 0.15), tolerance=0.1)


# --- the checks themselves catch broken split code ------------------------------------------------
@pytest.mark.parametrize(
    "check,rows",
    [
        pytest.param(testing.check_lrg_disjoint_splits, {"split": ["train", "test"], "label": [1, 1]}, id="two_splits"),
        pytest.param(testing.check_pools_disjoint, {"split": ["train", "train"], "label": [1, 0]}, id="both_pools"),
        pytest.param(
            testing.check_one_control_per_lrg, {"split": ["train", "train"], "label": [0, 0]}, id="two_controls"
        ),
        pytest.param(testing.check_pairs_together, {"split": ["train", "train"], "label": [1, 1]}, id="no_control"),
        pytest.param(
            testing.check_lrg_disjoint_splits,
            {"split": ["test_paired", "test"], "label": [1, 0]},
            id="test_negative_of_a_test_paired_lrg",
        ),
        pytest.param(
            testing.check_shared_positives,
            {"split": ["test_paired", "test"], "label": [0, 1]},
            id="test_positive_not_in_test_paired",
        ),
    ],
)
def test_checks_catch_violations(check, rows):
    frame = pd.DataFrame({"ra": [150.0, 150.0 + 1e-6], "dec": [2.0, 2.0], **rows})
    with pytest.raises(testing.InvariantViolation):
        check(frame)


def test_a_shared_positive_is_not_a_split_leak():
    frame = pd.DataFrame(
        {"ra": [150.0] * 3, "dec": [2.0] * 3, "split": ["test_paired", "test_paired", "test"], "label": [1, 0, 1]}
    )
    testing.check_lrg_disjoint_splits(frame)
    testing.check_test_paired_isolated(frame)


def test_check_traceable_catches_a_leaked_injection_truth():
    catalog = with_ids(generate_catalog([3, 2], seed=1).frame)
    rows = assign(catalog, SplitParams("paired", 1)).frame
    rows.loc[rows["label"] == 0, "theta_e_arcsec"] = 1.0
    with pytest.raises(testing.InvariantViolation, match="injection truth"):
        testing.check_traceable(rows, catalog)


# --- input splits ---------------------------------------------------------------------------------
def straddling_catalog():
    frame = generate_catalog([2, 2, 3], seed=2, columns=()).frame
    cat = with_ids(frame)
    cat["split"] = "train"
    lrg = cat["lrg_id"].iloc[0]
    first = np.flatnonzero(cat["lrg_id"].to_numpy() == lrg)[0]
    cat.loc[first, ["split", "source_path"]] = ["test", "/in/test/part-9.parquet"]
    return cat, lrg


def test_straddling_lrgs_are_listed():
    cat, lrg = straddling_catalog()
    with pytest.raises(
        DataError,
        match=rf"1 LRG\(s\) straddle input splits: {re.escape(lrg)} in test \(part-9.parquet\) "
        r"and train \(part-0.parquet\).*--resplit",
    ):
        assign(cat, SplitParams("unpaired", 1))


def test_resplit_ignores_input_splits():
    cat, _ = straddling_catalog()
    rows = assign(cat, SplitParams("unpaired", 1, resplit=True)).frame
    testing.check_lrg_disjoint_splits(rows)


def test_partial_input_splits_are_refused():
    cat = with_ids(generate_catalog([2, 2], seed=2, columns=()).frame)
    cat["split"] = ["train", None, None, None]
    with pytest.raises(DataError, match="3 rows have no split while others do"):
        assign(cat, SplitParams("paired", 1))


def test_unknown_input_split_is_refused():
    cat = with_ids(generate_catalog([2], seed=2, columns=()).frame)
    cat["split"] = "holdout"
    with pytest.raises(DataError, match="row 0, column 'split': unknown split 'holdout'"):
        assign(cat, SplitParams("paired", 1))


# --- parameters -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,message",
    [
        pytest.param({"mode": "both"}, "'mode' must be one of paired, unpaired", id="mode"),
        pytest.param({"positives_per_lrg": 0}, "'positives_per_lrg' must be >= 1", id="cap"),
        pytest.param({"fractions": (0.5, 0.5, 0.5)}, "summing to 1", id="fractions_sum"),
        pytest.param({"fractions": (0.7, 0.3)}, "3 or 4", id="fractions_len"),
        pytest.param({"mode": "paired", "match": ("psfsize_r",)}, "unpaired builds only", id="match_paired"),
    ],
)
def test_bad_parameters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SplitParams(**{"mode": "unpaired", "seed": 0, **kwargs})


def test_split_fractions_with_a_test_paired_share():
    assert split_fractions((0.6, 0.2, 0.1, 0.1), "unpaired") == ((0.6, 0.2, 0.2), pytest.approx(0.5))
    assert split_fractions((0.7, 0.15, 0.15), "paired")[1] == 0.0


def test_assign_names_missing_columns():
    with pytest.raises(ValueError, match="assign: catalog lacks lrg_id"):
        assign(as_read(generate_catalog([2], seed=0).frame), SplitParams("paired", 0))


def test_matching_on_injection_truth_is_refused():
    cat = with_ids(generate_catalog([2, 2], seed=2).frame)
    with pytest.raises(ValueError, match="'theta_e_arcsec' is injection truth"):
        assign(cat, SplitParams("unpaired", 0, match=("theta_e_arcsec",)))


# --- hashes, bins, SMD ----------------------------------------------------------------------------
def test_unit_hash_is_keyed_and_uniform():
    keys = [f"J{i:09d}" for i in range(20000)]
    u = unit_hash(keys, 1, "split")
    assert np.array_equal(u, unit_hash(keys, 1, "split"))
    assert not np.array_equal(u, unit_hash(keys, 2, "split"))
    assert not np.array_equal(u, unit_hash(keys, 1, "pool"))
    assert np.histogram(u, bins=10, range=(0, 1))[0].min() > 1800
    assert list(hash_splits(keys[:3], 1, (1.0, 0.0, 0.0))) == ["train"] * 3


def test_bin_codes():
    codes, labels = bin_codes([0, 1, 1, np.nan, 2], 5)
    assert list(codes) == [0, 1, 1, -1, 2] and labels == ["0", "1", "2"]
    codes, labels = bin_codes(np.arange(100.0), 4)
    assert np.bincount(codes).tolist() == [25, 25, 25, 25] and len(labels) == 4


def test_smd_against_the_formula():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1, 2, 500), rng.normal(0, 1, 300)
    expected = (a.mean() - b.mean()) / np.sqrt((a.var() + b.var()) / 2)
    assert standardised_mean_difference(a, b) == pytest.approx(expected)
    assert standardised_mean_difference(np.r_[a, np.nan], b) == pytest.approx(expected)
    assert standardised_mean_difference([1, 1], [1, 1]) == 0.0
    assert standardised_mean_difference([2, 2], [1, 1]) == np.inf
    assert np.isnan(standardised_mean_difference([np.nan], [1.0]))
    # weights: a doubled row equals weight 2
    assert standardised_mean_difference([1, 2], [0, 1], [1, 2], None) == pytest.approx(
        standardised_mean_difference([1, 2, 2], [0, 1])
    )


def skewed_pools(n=4000, seed=0):
    """Positive LRGs with larger psfsize than negative ones, one split."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    return pd.DataFrame(
        {
            "lrg_id": [f"L{i:05d}" for i in range(n)],
            "split": "train",
            "label": label,
            "psfsize_r": rng.normal(1.2 + 0.2 * label, 0.15),
            "weight": 1.0,
        }
    )


def test_matching_balances_skewed_pools_without_replacement():
    frame = skewed_pools()
    keep, report = match_pools(frame, ["psfsize_r"], 10, seed=3)
    kept = frame[keep]
    before = standardised_mean_difference(
        frame.loc[frame.label == 1, "psfsize_r"], frame.loc[frame.label == 0, "psfsize_r"]
    )
    after = standardised_mean_difference(kept.loc[kept.label == 1, "psfsize_r"], kept.loc[kept.label == 0, "psfsize_r"])
    assert before > 1.0 and abs(after) < 0.1
    assert kept["lrg_id"].is_unique
    assert (kept.label == 1).sum() == (kept.label == 0).sum()
    assert report.n_pos_lrgs_dropped == (frame.label == 1).sum() - (kept.label == 1).sum()
    assert report.n_neg_lrgs_dropped == (frame.label == 0).sum() - (kept.label == 0).sum()


def test_matching_lists_cells_without_negatives():
    frame = pd.DataFrame(
        {
            "lrg_id": ["a", "b", "c", "d"],
            "split": "train",
            "label": [1, 1, 0, 1],
            "psf_bin": [0, 0, 0, 1],
            "weight": 1.0,
        }
    )
    keep, report = match_pools(frame, ["psf_bin"], 5, seed=0)
    assert keep.sum() == 2
    cells = {c["psf_bin"]: c for c in report.unbalanced_cells}
    assert cells["1"] == {"split": "train", "psf_bin": "1", "n_pos": 1, "n_neg": 0, "kept": 0}
    assert cells["0"]["kept"] == 1 and report.n_pos_lrgs_dropped == 2


@given(catalogs(min_lrgs=4), st.integers(0, 2**16))
def test_matched_builds_keep_the_invariants(cat, seed):
    catalog = with_ids(cat.frame.assign(psfsize_r=np.round(np.linspace(1, 2, len(cat.frame)), 1)))
    result = assign(catalog, SplitParams("unpaired", seed, match=("psfsize_r",), match_bins=3))
    testing.check_manifest(result.frame, paired=False)
    testing.check_traceable(result.frame, catalog)
    rows = result.frame[result.frame["split"] != "test_paired"]
    per_split = rows.groupby(["split", "label"])["lrg_id"].nunique().unstack(fill_value=0)
    per_split = per_split.reindex(columns=[0, 1], fill_value=0)
    assert (per_split[0] == per_split[1]).all()
