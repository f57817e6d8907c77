"""Figures of the experiment report: pure functions from arrays/records to PNG files.

Every function takes plain numbers (lists, arrays, small dicts as stored in ``results.json``),
draws with matplotlib's object API on an Agg canvas (no pyplot, no global state) and writes one PNG
atomically. PNGs carry no timestamp or software metadata, so the same input gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from shortcutgates.data.io import write_png
from shortcutgates.model.preprocess import annulus_median_mad

COLORS = ("#1b6ca8", "#d1495b", "#2e933c", "#edae49", "#7b4b94", "#555555")
"""Colour of the n-th configuration, the same in every figure."""


def _new_figure(n_panels: int, *, width: float = 4.0, height: float = 3.4, ncols: int | None = None):
    ncols = min(n_panels, ncols or n_panels) or 1
    nrows = -(-max(n_panels, 1) // ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), dpi=100)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(max(n_panels, 1))]
    return fig, axes


def _save(fig: Figure, path) -> Path:
    fig.tight_layout()
    return write_png(fig, path)


def _floor(values, default: float) -> float:
    """Lower y limit: ``default``, or lower when a value or interval end lies below it."""
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return min([default] + [v - 0.05 for v in finite])


def _fmt_ci(value: float, ci) -> str:
    if ci is None or any(c is None or not np.isfinite(c) for c in ci):
        return f"{value:.3f}"
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def roc_figure(panels: Mapping[str, Mapping[str, Mapping]], path) -> Path:
    """ROC curves, one panel per experiment, one curve per configuration.

    Parameters
    ----------
    panels : {experiment: {config: {"fpr": list, "tpr": list, "value": float, "ci": [lo, hi]}}}
        False- and true-positive rates (dimensionless, ascending fpr) and the AUROC with its
        interval, e.g. ``{"E1": {"raw_robust": {...}, "residual": {...}}, "E2": ...}``.
    path : path-like
        Output PNG.
    """
    fig, axes = _new_figure(len(panels))
    for ax, (experiment, curves) in zip(axes, panels.items()):
        positive = [f for c in curves.values() for f in c["fpr"] if f > 0]
        lo = min([1e-3] + positive) / 2  # log axis: lens searches work at FPR 1e-2 to 1e-3
        grid = np.logspace(np.log10(lo), 0, 50)
        ax.plot(grid, grid, color="0.7", lw=0.8, ls=":")
        for fpr in (1e-2, 1e-3):
            ax.axvline(fpr, color="0.8", lw=0.8)
        for i, (config, c) in enumerate(curves.items()):
            ax.step(
                np.maximum(c["fpr"], lo),
                c["tpr"],
                where="post",
                color=COLORS[i % len(COLORS)],
                lw=1.5,
                label=f"{config}: {_fmt_ci(c['value'], c.get('ci'))}",
            )
        ax.set_xscale("log")
        ax.set(
            title=f"{experiment} ROC",
            xlabel="false-positive rate (log)",
            ylabel="true-positive rate",
            xlim=(lo, 1),
            ylim=(0, 1.01),
        )
        ax.legend(loc="lower right", fontsize=7)
    return _save(fig, path)


def interval_figure(
    rows: Sequence[Mapping], path, *, threshold: float, direction: str, title: str, ylabel: str
) -> Path:
    """Point estimates with intervals against a threshold line (e.g. core-LR AUC vs 0.65).

    Parameters
    ----------
    rows : sequence of {"label": str, "value": float, "ci": [lo, hi] or None, "group": str}
        One point per row; rows with the same ``group`` share a colour (e.g. the dataset).
    threshold : float
        Drawn as a dashed line; ``direction`` "max" shades the failing region above it, "min"
        below it.
    """
    fig, (ax,) = _new_figure(1, width=max(4.0, 0.9 * len(rows) + 1.5), height=3.6)
    groups = list(dict.fromkeys(r.get("group", "") for r in rows))
    for x, row in enumerate(rows):
        color = COLORS[groups.index(row.get("group", "")) % len(COLORS)]
        ci = row.get("ci")
        if ci is not None and all(c is not None and np.isfinite(c) for c in ci):
            ax.errorbar(
                [x],
                [row["value"]],
                yerr=[[row["value"] - ci[0]], [ci[1] - row["value"]]],
                fmt="o",
                color=color,
                capsize=4,
            )
        else:
            ax.plot([x], [row["value"]], "o", color=color)
    ax.axhline(threshold, color="k", ls="--", lw=1)
    lo, hi = (threshold, 1.02) if direction == "max" else (0.0, threshold)
    ax.axhspan(lo, hi, color="#d1495b", alpha=0.08, lw=0)
    ax.set_xticks(range(len(rows)), [r["label"] for r in rows], rotation=25, ha="right", fontsize=8)
    floor = _floor([r["value"] for r in rows] + [c for r in rows for c in (r.get("ci") or [])], 0.4)
    ax.set(title=title, ylabel=ylabel, ylim=(floor, 1.02), xlim=(-0.6, len(rows) - 0.4))
    for group in groups:
        ax.plot([], [], "o", color=COLORS[groups.index(group) % len(COLORS)], label=group)
    if any(groups):
        ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


def property_figure(properties: Mapping[str, Mapping], path) -> Path:
    """Positive vs negative distributions of each property, with the standardised mean difference.

    Parameters
    ----------
    properties : {name: {"edges": list (B+1), "pos": list (B), "neg": list (B), "smd": float}}
        Histogram bin edges (the property's unit) and counts of positives and negatives.
    """
    names = list(properties)
    fig, axes = _new_figure(len(names), width=3.2, height=2.6, ncols=4)
    for ax, name in zip(axes, names):
        p = properties[name]
        edges = np.asarray(p["edges"], dtype=float)
        for key, color in (("neg", COLORS[0]), ("pos", COLORS[1])):
            counts = np.asarray(p[key], dtype=float)
            density = counts / max(counts.sum(), 1) / np.diff(edges)
            ax.stairs(density, edges, color=color, lw=1.5, label="lens" if key == "pos" else "non-lens")
        smd = p.get("smd")
        ax.set_title(f"{name}  SMD={smd:+.2f}" if smd is not None and np.isfinite(smd) else name, fontsize=9)
        ax.tick_params(labelsize=7)
    if names:
        axes[0].legend(fontsize=7)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    return _save(fig, path)


def _stretch(image: np.ndarray, scale: float) -> np.ndarray:
    return np.arcsinh(image / scale)


def stamps_figure(examples: Mapping[str, np.ndarray], path, *, band: int = 1) -> Path:
    """Example stamps: one row per example, columns gri colour, stamp, control, difference, residual, arc mask.

    The colour panel (z red, r green, g blue) carries a 2-arcsec scale bar; the single-band panels a
    colour bar in their display unit (asinh of flux over 3 sky sigmas; residual in MAD units).

    Parameters
    ----------
    examples : {"stamp", "control", "residual", "arc_mask": ndarray, shape (K, 3, H, W) or (K, H, W)}
        ``stamp`` and ``control`` in nanomaggies, ``residual`` the residual-preprocessed stamp (MAD
        units), ``arc_mask`` the θ_E annulus (bool, (K, H, W)). The difference is
        ``stamp - control``: the injected arc alone.
    band : int
        Band shown (0 = g, 1 = r, 2 = z).
    """
    stamp = np.asarray(examples["stamp"])[:, band]
    control = np.asarray(examples["control"])[:, band]
    residual = np.asarray(examples["residual"])[:, band]
    mask = np.asarray(examples["arc_mask"]).astype(float)
    from shortcutgates.experiment.stamp_colour import add_scale_bar, gri_rgb

    colour = gri_rgb(np.asarray(examples["stamp"]))
    bands = "grz"[band]
    columns = [
        ("gri colour", colour),
        (f"stamp ({bands})", stamp),
        ("control", control),
        ("difference", stamp - control),
        ("residual", residual),
        ("arc mask", mask),
    ]
    k = len(stamp)
    fig, axes = _new_figure(k * len(columns), width=2.0, height=2.0, ncols=len(columns))
    for i in range(k):
        # arcsinh stretch in units of a few sky sigmas (annulus MAD), sky at the bottom of the scale,
        # one display range for stamp and control so their cores can be compared by eye
        sky, mad = (float(v.ravel()[0]) for v in annulus_median_mad(control[i]))
        scale = max(3 * 1.4826 * mad, 1e-6)
        lo, hi = _stretch(-2 * 1.4826 * mad, scale), float(np.percentile(_stretch(stamp[i] - sky, scale), 99.8))
        for j, (name, arr) in enumerate(columns):
            ax = axes[i * len(columns) + j]
            shown = None
            if name == "gri colour":
                ax.imshow(arr[i], origin="lower")
                add_scale_bar(ax, arr[i].shape[1])
            elif name == "residual":
                lim = max(float(np.percentile(np.abs(arr[i]), 99)), 1e-6)
                shown = ax.imshow(arr[i], cmap="RdBu_r", vmin=-lim, vmax=lim, origin="lower")
            elif name == "arc mask":
                ax.imshow(arr[i], cmap="gray_r", origin="lower")
            elif name == "difference":
                shown = ax.imshow(_stretch(arr[i], scale), cmap="magma", origin="lower")
            else:
                shown = ax.imshow(_stretch(arr[i] - sky, scale), cmap="gray", vmin=lo, vmax=hi, origin="lower")
            if shown is not None:
                fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=9)
    return _save(fig, path)


def stratified_figure(
    strata: Mapping[str, Mapping[str, Sequence[Mapping]]], path, *, threshold: float | None = None
) -> Path:
    """Detection AUROC per bin of a property (θ_E, PSF, depth), one line per configuration.

    Parameters
    ----------
    strata : {property: {config: [{"bin": str, "value": float or None, "ci": [lo, hi] or None}]}}
        Bins in order, named as the ``stratified_auroc`` gate names them (e.g. ``"1-1.5arcsec"``);
        a bin without a value (too few rows) is left out of the line.
    threshold : float, optional
        Drawn as a dashed line (the 0.80 detection target).
    """
    fig, axes = _new_figure(len(strata), width=4.2, height=3.4)
    for ax, (prop, per_config) in zip(axes, strata.items()):
        names = list(dict.fromkeys(b["bin"] for bins in per_config.values() for b in bins))
        for i, (config, bins) in enumerate(per_config.items()):
            pts = [(names.index(b["bin"]), b) for b in bins if b.get("value") is not None]
            if not pts:
                continue
            x = np.array([p[0] for p in pts], dtype=float) + 0.08 * (i - 1)
            vals = np.array([p[1]["value"] for p in pts], dtype=float)
            lo = np.array([p[1]["ci"][0] if p[1].get("ci") else v for p, v in zip(pts, vals)], dtype=float)
            hi = np.array([p[1]["ci"][1] if p[1].get("ci") else v for p, v in zip(pts, vals)], dtype=float)
            ax.errorbar(
                x, vals, yerr=[vals - lo, hi - vals], fmt="o-", color=COLORS[i % len(COLORS)], capsize=3, label=config
            )
        if threshold is not None:
            ax.axhline(threshold, color="k", ls="--", lw=1)
        ax.set_xticks(range(len(names)), names, rotation=25, ha="right", fontsize=7)
        ends = [v for bins in per_config.values() for b in bins for v in [b.get("value")] + list(b.get("ci") or [])]
        ax.set(title=f"AUROC by {prop}", ylabel="AUROC", ylim=(_floor(ends, 0.3), 1.02))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return _save(fig, path)


def shifts_figure(rows: Sequence[Mapping], path) -> Path:
    """Counterfactual model-gate AUROCs per configuration against their thresholds, one panel per case.

    Parameters
    ----------
    rows : sequence of {"config": str, "gate": str, "value": float, "ci": [lo, hi] or None,
           "threshold": float}
        Gate records of the E2 models; ``gate`` names the panel (a case id such as
        ``arc_masked_auroc[test_paired-theta_e1-1.5]``). See docs/model_gates.md for what each
        counterfactual gate scores.
    """
    gates = list(dict.fromkeys(r["gate"] for r in rows))
    configs = list(dict.fromkeys(r["config"] for r in rows))
    fig, axes = _new_figure(len(gates), width=max(3.5, 1.0 * len(configs) + 1.5), height=3.4)
    for ax, gate in zip(axes, gates):
        threshold = None
        for x, config in enumerate(configs):
            match = [r for r in rows if r["gate"] == gate and r["config"] == config]
            if not match:
                continue
            r = match[0]
            ci = r.get("ci")
            if ci and all(c is not None and np.isfinite(c) for c in ci):
                ax.errorbar(
                    [x],
                    [r["value"]],
                    yerr=[[r["value"] - ci[0]], [ci[1] - r["value"]]],
                    fmt="o",
                    color=COLORS[x % len(COLORS)],
                    capsize=4,
                )
            else:
                ax.plot([x], [r["value"]], "o", color=COLORS[x % len(COLORS)])
            threshold = r.get("threshold")
        if threshold is not None:
            ax.axhline(threshold, color="k", ls="--", lw=1)
        ax.axhline(0.5, color="0.7", ls=":", lw=1)
        ax.set_xticks(range(len(configs)), configs, rotation=20, ha="right", fontsize=8)
        mine = [r for r in rows if r["gate"] == gate]
        floor = _floor([r["value"] for r in mine] + [c for r in mine for c in (r.get("ci") or [])], 0.3)
        ax.set(title=gate, ylabel="AUROC", ylim=(floor, 1.02), xlim=(-0.6, len(configs) - 0.4))
    return _save(fig, path)
