"""The library's splitter against the public split invariants (docs/design.md#splits), run with ``pytest gate_tests``.

The same Hypothesis strategies and checks (:mod:`shortcutgates.testing`) are what users point at
their own split code; here they check :func:`shortcutgates.data.splits.assign` in both modes. This module
needs no ``--data``.
"""

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="the split invariants need hypothesis (dev extra)")

from hypothesis import given, settings, strategies as st  # noqa: E402

from shortcutgates import testing  # noqa: E402
from shortcutgates.data.identity import ensure_lrg_ids  # noqa: E402
from shortcutgates.data.splits import SplitParams, assign  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(
    testing.catalogs(input_splits=None),
    st.sampled_from(["paired", "unpaired"]),
    st.sampled_from([1, 2, None]),
    st.integers(0, 2**31),
)
def test_library_splitter_keeps_the_split_invariants(cat, mode, cap, seed):
    catalog = ensure_lrg_ids(testing.as_read(cat.frame))
    rows = assign(catalog, SplitParams(mode, seed, positives_per_lrg=cap)).frame
    testing.check_manifest(rows, paired=mode == "paired")
