"""LRG identity by sky matching (docs/design.md#splits)."""

import numpy as np
import pandas as pd
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord, search_around_sky
from hypothesis import given, strategies as st
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from shortcutgates.data.identity import (
    check_lrg_ids,
    ensure_lrg_ids,
    format_lrg_id,
    friends_of_friends,
    match_lrgs,
)
from shortcutgates.data.schema import DataError

from strategies import catalogs, generate_catalog

ARCSEC = 1 / 3600


def same_partition(a, b) -> bool:
    """Two labelings describe the same grouping of rows."""
    pairs = pd.DataFrame({"a": a, "b": b}).drop_duplicates()
    return pairs["a"].is_unique and pairs["b"].is_unique


@pytest.mark.parametrize(
    "ra,dec,n",
    [
        pytest.param([150.0, 150.0 + 1e-6], [2.0, 2.0], 1, id="1e-6_deg_in_ra"),
        pytest.param([150.0, 150.0], [2.0, 2.0 + 1e-6], 1, id="1e-6_deg_in_dec"),
        pytest.param([150.0, 150.0], [2.0, 2.0 + 0.4 * ARCSEC], 1, id="0.4_arcsec"),
        pytest.param([150.0, 150.0], [2.0, 2.0 + 0.6 * ARCSEC], 2, id="0.6_arcsec"),
        pytest.param([359.99999, 0.000001], [-30.0, -30.0], 1, id="ra_wrap"),
        pytest.param([0.0, 180.0], [89.99999, 89.99999], 1, id="pole"),
        pytest.param([150.0, 150.0, 150.0], [2.0, 2.0 + 0.4 * ARCSEC, 2.0 + 0.8 * ARCSEC], 1, id="chained"),
        pytest.param([], [], 0, id="empty_catalog"),
    ],
)
def test_match_lrgs_counts(ra, dec, n):
    ident = match_lrgs(ra, dec, 0.5)
    assert ident.n_lrgs == n
    assert len(set(ident.lrg_id)) == n


def test_chained_group_reports_its_extent():
    ident = match_lrgs([150.0] * 3, [2.0, 2.0 + 0.4 * ARCSEC, 2.0 + 0.8 * ARCSEC], 0.5)
    assert ident.extent_arcsec.max() == pytest.approx(0.8, abs=0.02)


def test_id_format_wraps_ra_and_has_no_negative_zero():
    assert list(format_lrg_id([360.0, -0.0, 150.123456], [-0.0, -1e-9, 2.5])) == [
        "J000.00000+00.00000",
        "J000.00000+00.00000",
        "J150.12346+02.50000",
    ]


def test_id_is_the_smallest_member_position():
    ident = match_lrgs([150.00002, 150.00001], [2.0, 2.0], 0.5)
    assert set(ident.lrg_id) == {"J150.00001+02.00000"}


@pytest.mark.parametrize(
    "ra,dec,tol,message",
    [
        pytest.param([np.nan], [0.0], 0.5, "ra must be finite", id="nan_ra"),
        pytest.param([1.0], [91.0], 0.5, "dec must be finite and in", id="dec_out_of_range"),
        pytest.param([1.0], [1.0], 0.0, "tolerance_arcsec must be > 0", id="zero_tolerance"),
    ],
)
def test_match_lrgs_rejects_bad_input(ra, dec, tol, message):
    with pytest.raises(ValueError, match=message):
        match_lrgs(ra, dec, tol)


def test_fof_agrees_with_astropy_search_around_sky():
    """Independent implementation: astropy pairs + connected components give the same groups."""
    rng = np.random.default_rng(3)
    ra = 150 + rng.uniform(0, 20 * ARCSEC, 400)
    dec = 2 + rng.uniform(0, 20 * ARCSEC, 400)
    coords = SkyCoord(ra * u.deg, dec * u.deg)
    i, j, _, _ = search_around_sky(coords, coords, 0.5 * u.arcsec)
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(400, 400))
    n_astropy, labels = connected_components(graph, directed=False)
    ident = match_lrgs(ra, dec, 0.5)
    assert ident.n_lrgs == n_astropy
    assert same_partition(ident.group, labels)


@given(catalogs())
def test_groups_recover_the_true_lrgs(cat):
    ident = match_lrgs(cat.frame["ra"], cat.frame["dec"], 0.5)
    assert ident.n_lrgs == cat.n_lrgs
    assert same_partition(ident.group, cat.lrg)
    # group indices follow the sorted ids
    assert np.array_equal(np.unique(ident.lrg_id)[ident.group], ident.lrg_id)


@given(catalogs(), st.randoms(use_true_random=False))
def test_ids_do_not_depend_on_row_order(cat, random):
    order = list(range(len(cat.frame)))
    random.shuffle(order)
    ident = match_lrgs(cat.frame["ra"], cat.frame["dec"])
    shuffled = match_lrgs(cat.frame["ra"].to_numpy()[order], cat.frame["dec"].to_numpy()[order])
    assert np.array_equal(ident.lrg_id[order], shuffled.lrg_id)


@given(catalogs(max_lrgs=20), st.lists(st.integers(1, 4), min_size=1, max_size=10), st.integers(0, 2**16))
def test_adding_lrgs_and_rows_at_known_positions_keeps_ids(cat, new_injections, seed):
    old = match_lrgs(cat.frame["ra"], cat.frame["dec"]).lrg_id
    new = generate_catalog(new_injections, seed=seed, first_lrg=40, columns=())
    repeat = cat.frame[["ra", "dec"]].iloc[: max(1, len(cat.frame) // 3)]  # new injections on known LRGs
    ra = np.r_[cat.frame["ra"], new.frame["ra"], repeat["ra"]]
    dec = np.r_[cat.frame["dec"], new.frame["dec"], repeat["dec"]]
    grown = match_lrgs(ra, dec).lrg_id
    assert np.array_equal(grown[: len(old)], old)
    assert len(set(grown)) == cat.n_lrgs + len(new_injections)


def test_fof_collapses_exact_duplicates_before_the_tree():
    labels = friends_of_friends([10.0] * 1000 + [20.0], [0.0] * 1001, 0.5)
    assert len(set(labels[:1000])) == 1 and labels[1000] != labels[0]


def test_check_lrg_ids_finds_split_and_merged_ids():
    ra = [150.0, 150.0 + 1e-6, 151.0, 152.0]
    dec = [2.0] * 4
    check = check_lrg_ids(ra, dec, ["a", "b", "c", "c"])
    assert check.merged_ids == [("a", "b")]
    assert check.split_ids == ["c"]
    assert not check.ok
    assert check_lrg_ids(ra, dec, ["a", "a", "c", "d"]).ok


def test_ensure_lrg_ids_derives_missing_ids_and_rejects_wrong_ones():
    hand_written = pd.DataFrame({"ra": [150.0, 150.0 + 1e-6, 151.0], "dec": [2.0, 2.0, 2.0]})
    derived = ensure_lrg_ids(hand_written)
    assert derived["lrg_id"].nunique() == 2
    assert "lrg_id" not in hand_written
    with pytest.raises(DataError, match="LRGs with several ids: x = y"):
        ensure_lrg_ids(hand_written.assign(lrg_id=["x", "y", "z"]))
