"""Realistic paired-data simulator: LRG stamps with and without injected lensed arcs.

Public API: :func:`simulate_frame` (rows in memory), :func:`simulate_paired` (parquet tree),
and the pure physics kernels in :mod:`shortcutgates.simulate.kernels`. The generator is imported on
first use of its names, so importing :mod:`shortcutgates.simulate.kernels` alone (the gates' lensing
split, ``build --hard-negatives``) does not load it (about 0.3 s CPU: scipy.spatial, sparse, the sources).
"""

__all__ = ["COLUMNS", "SimulationSummary", "simulate_frame", "simulate_paired"]


def __getattr__(name: str):
    if name in __all__:
        from shortcutgates.simulate import generator

        return getattr(generator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
