"""The gate suite as an importable test package: ``pytest --pyargs shortcutgates.gate_tests --data DIR``.

Runs the same test as ``pytest gate_tests`` in this repository and in a project set up by
``shortcutgates init`` (:mod:`shortcutgates.gates.gate_suite`), from any directory.
"""
