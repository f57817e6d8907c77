"""Realistic paired-data simulator: LRG stamps with and without injected lensed arcs.

Public API: :func:`simulate_frame` (rows in memory), :func:`simulate_paired` (parquet tree),
and the pure physics kernels in :mod:`shortcutgates.simulate.kernels`.
"""

from shortcutgates.simulate.generator import COLUMNS, SimulationSummary, simulate_frame, simulate_paired

__all__ = ["COLUMNS", "SimulationSummary", "simulate_frame", "simulate_paired"]
