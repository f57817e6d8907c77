"""Reference scorers by name, for the model, suite and reader cells of the calibration.

``arc`` (a pure arc reader), ``core`` (a pure core reader) and ``mix<λ>`` (``λ·core + (1−λ)·arc``,
e.g. ``mix0.3``) come from :mod:`shortcutgates.gates.reference_scorers`, the library's reference
scorers (``docs/design.md#scorers``), as do the readers of the ``reader`` cells (:data:`FIXED_READERS`:
arc readers blind inside 2–5 px, the Einstein-ring reader, the flux-per-ring reader). Where that module
is not installed, ``arc`` and ``core`` are the self-test scorers of :mod:`shortcutgates.gates.synthetic`
and the other names are refused.
"""

from __future__ import annotations

import importlib
from typing import Callable

import numpy as np

ScoreFn = Callable[[np.ndarray], np.ndarray]

CNN_PREFIX = "cnn:"
"""Scorer names of the cells that train a CNN instead: ``cnn:<family>`` (:data:`shortcutgates.calibrate.cnn.FAMILIES`)."""
LAMBDAS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)
"""Core weights λ of the reference-scorer mixtures λ·core + (1−λ)·arc (0: the pure arc reader, 1: the pure
core reader): the model cells of the ``quick`` and ``full`` profiles and the mixtures of the ``reader`` cells."""

FIXED_READERS = ("arc_blind2", "arc_blind3", "arc_blind4", "arc_blind5", "ring", "flux_per_ring")
"""Readers a ``reader`` cell measures beside the mixtures ``mix<λ>`` (λ in :data:`LAMBDAS`): ``arc_blind<r>``
(:func:`~shortcutgates.gates.reference_scorers.arc_reader_blind_inside` ``(r)``, r = 2–5 px; r = 5 is the
arc reader), ``ring`` (the Einstein-ring reader), ``flux_per_ring`` (the flux-per-ring reader)."""


def mixture_name(lam: float) -> str:
    """The name of the mixture reader of core weight ``lam`` (``mix0.3``)."""
    return f"mix{lam:g}"


def reader_label(name: str) -> str:
    """A reader's name in tables: ``arc reader blind < 2 px``, ``Einstein-ring reader``, ``mixture λ = 0.3``."""
    if name.startswith("arc_blind"):
        r = name[len("arc_blind") :]
        return f"arc reader blind < {r} px" + (" (λ = 0)" if float(r) == 5 else "")
    if name.startswith("mix"):
        return f"mixture λ = {name[3:]}"
    return {
        "ring": "Einstein-ring reader",
        "flux_per_ring": "flux-per-ring reader",
        "arc": "arc reader",
        "core": "core reader",
    }.get(name, name)


def reader_names() -> tuple[str, ...]:
    """Every reader of a ``reader`` cell, in table order: :data:`FIXED_READERS`, then the mixtures."""
    return FIXED_READERS + tuple(mixture_name(lam) for lam in LAMBDAS)


def _reference_module():
    try:
        return importlib.import_module("shortcutgates.gates.reference_scorers")
    except ModuleNotFoundError:
        return None


def _from_module(module, name: str) -> ScoreFn:
    fixed = {
        "arc": module.arc_reader,
        "core": module.core_reader,
        "ring": module.ring_reader,
        "flux_per_ring": module.flux_per_ring_reader,
    }
    if name in fixed:
        return fixed[name]
    if name.startswith("arc_blind"):
        return module.arc_reader_blind_inside(float(name[len("arc_blind") :]))
    return module.mixture_reader(float(name[3:]))


def resolve_scorer(name: str) -> ScoreFn:
    """The scorer called ``name``: ``arc``, ``core``, ``mix<λ>`` with 0 ≤ λ ≤ 1, or one of :data:`FIXED_READERS`."""
    if name not in ("arc", "core", *FIXED_READERS) and not (name.startswith("mix") and _is_fraction(name[3:])):
        raise ValueError(
            f"calibrate: scorer must be arc, core, mix<λ> with 0 <= λ <= 1 or one of "
            f"{', '.join(FIXED_READERS)} (got {name!r})"
        )
    module = _reference_module()
    if module is not None:
        return _from_module(module, name)
    from shortcutgates.gates import synthetic

    if name == "arc":
        return synthetic.ring_morphology_score
    if name == "core":
        return synthetic.central_flux_score
    raise ValueError(f"calibrate: scorer {name!r} needs shortcutgates.gates.reference_scorers, which is not installed")


def _is_fraction(text: str) -> bool:
    try:
        return 0.0 <= float(text) <= 1.0
    except ValueError:
        return False
