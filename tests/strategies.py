"""Hypothesis strategies of the test suite; the public ones live in :mod:`shortcutgates.testing`."""

from shortcutgates.testing import (  # noqa: F401  (re-exported for the tests)
    OPTIONAL_COLUMNS,
    GeneratedCatalog,
    as_read,
    catalogs,
    generate_catalog,
    write_catalog,
)
