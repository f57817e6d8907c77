"""Reference scorers by name, for the model and suite cells of the calibration.

``arc`` (a pure arc reader), ``core`` (a pure core reader) and ``mix<λ>`` (``λ·core + (1−λ)·arc``,
e.g. ``mix0.3``) come from :mod:`shortcutgates.gates.reference_scorers`, the library's reference
scorers (``docs/design.md#scorers``). Where that module is not installed, ``arc`` and ``core``
are the self-test scorers of :mod:`shortcutgates.gates.synthetic` and mixtures are refused.
"""

from __future__ import annotations

import importlib
from typing import Callable

import numpy as np

ScoreFn = Callable[[np.ndarray], np.ndarray]


def _reference_module():
    try:
        return importlib.import_module("shortcutgates.gates.reference_scorers")
    except ModuleNotFoundError:
        return None


def _from_module(module, name: str) -> ScoreFn:
    if name == "arc":
        return module.arc_reader
    if name == "core":
        return module.core_reader
    return module.mixture_reader(float(name[3:]))


def resolve_scorer(name: str) -> ScoreFn:
    """The scorer called ``name``: ``arc``, ``core`` or ``mix<λ>`` with 0 ≤ λ ≤ 1."""
    if name not in ("arc", "core") and not (name.startswith("mix") and _is_fraction(name[3:])):
        raise ValueError(f"calibrate: scorer must be arc, core or mix<λ> with 0 <= λ <= 1 (got {name!r})")
    module = _reference_module()
    if module is not None:
        return _from_module(module, name)
    from ..gates import synthetic

    if name == "arc":
        return synthetic.ring_morphology_score
    if name == "core":
        return synthetic.central_flux_score
    raise ValueError("calibrate: mixtures need shortcutgates.gates.reference_scorers, which is not installed")


def _is_fraction(text: str) -> bool:
    try:
        return 0.0 <= float(text) <= 1.0
    except ValueError:
        return False
