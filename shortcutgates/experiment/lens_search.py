"""Lens-search metrics and figures: the very-low false-positive rates a survey search works at.

Strong lenses are about one in a thousand LRGs, so a search keeps a candidate list at a false-
positive rate of 10⁻² to 10⁻³; AUROC averages over rates nobody uses. This module gives, from a
model's scores on a split:

* :func:`tpr_at_fpr_intervals`: the true-positive rate at FPR 10⁻² and 10⁻³ with a 95 % LRG-
  bootstrap interval, and a note when the split has fewer than ``10 / FPR`` negatives (then the
  rate rests on a handful of negatives above the threshold: with 65 negatives, FPR 10⁻² and 10⁻³
  both mean "no negative above the threshold" and give the same number);
* :func:`score_histogram`: scores of lenses and non-lenses on common bins;
* :func:`extremes`: the highest-scoring non-lenses and the lowest-scoring lenses (manifest file
  and row, score), drawn later as gri colour stamps.

Figures (:func:`lens_search_figures`): ROC curves on a logarithmic FPR axis, score histograms by
class, and the extremes as gri colour stamps with an arcsecond scale bar.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from shortcutgates.experiment.stamp_colour import add_scale_bar, gri_rgb

# re-exported: the low-FPR rates live in shortcutgates.stats (the gate report uses them too)
from shortcutgates.stats import FPR_LEVELS, NEGATIVES_PER_FPR, tpr_at_fpr_intervals, tpr_metric  # noqa: E402,F401


def score_histogram(labels, scores, bins: int = 30) -> dict:
    """``{"edges": (bins + 1,), "pos": (bins,), "neg": (bins,)}`` counts on edges spanning all scores."""
    labels, scores = np.asarray(labels).astype(int), np.asarray(scores, np.float64)
    edges = np.histogram_bin_edges(scores, bins=bins)
    return {
        "edges": np.round(edges, 6).tolist(),
        "pos": np.histogram(scores[labels == 1], edges)[0].tolist(),
        "neg": np.histogram(scores[labels == 0], edges)[0].tolist(),
    }


def extremes(frame, scores, k: int = 4, base=None) -> dict:
    """The ``k`` highest-scoring non-lenses and ``k`` lowest-scoring lenses of a scored frame.

    ``frame`` holds ``manifest_file``, ``manifest_row`` and ``label`` per row (as
    :func:`shortcutgates.model.evaluate.score_manifest` returns it). Returns
    ``{"false_positives": [...], "missed_lenses": [...]}``, each entry ``{"manifest_file",
    "manifest_row", "score"}``. A file under ``base`` (the results directory) is named relative to
    it, so the same run in another directory writes the same results.
    """
    scores = np.asarray(scores, np.float64)

    def name(file) -> str:
        path = Path(file).resolve()
        if base is not None and path.is_relative_to(Path(base).resolve()):
            return path.relative_to(Path(base).resolve()).as_posix()
        return str(path)

    labels = frame["label"].to_numpy().astype(int)

    def rows(order):
        return [
            {
                "manifest_file": name(frame["manifest_file"].iloc[i]),
                "manifest_row": int(frame["manifest_row"].iloc[i]),
                "score": float(scores[i]),
            }
            for i in order
        ]

    neg, pos = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    return {
        "false_positives": rows(neg[np.argsort(-scores[neg], kind="stable")][:k]),
        "missed_lenses": rows(pos[np.argsort(scores[pos], kind="stable")][:k]),
    }


# --- figures -------------------------------------------------------------------------------------
def score_hist_figure(panels: Mapping[str, Mapping[str, Mapping]], path) -> Path:
    """Score histograms of lenses and non-lenses: one panel per (experiment, configuration)."""
    from shortcutgates.experiment.figures import COLORS, _new_figure, _save

    items = [(f"{exp} {config}", h) for exp, per in panels.items() for config, h in per.items()]
    fig, axes = _new_figure(len(items), width=3.2, height=2.6, ncols=3)
    for ax, (title, h) in zip(axes, items):
        edges = np.asarray(h["edges"], float)
        for key, color, label in (("neg", COLORS[0], "non-lens"), ("pos", COLORS[1], "lens")):
            ax.stairs(np.asarray(h[key], float), edges, color=color, lw=1.5, label=label)
        ax.set_yscale("log")
        ax.set(title=title, xlabel="score", ylabel="count")
        ax.title.set_fontsize(9)
    if items:
        axes[0].legend(fontsize=7)
    return _save(fig, path)


def extremes_figure(groups: Sequence[tuple[str, np.ndarray, Sequence[float]]], path) -> Path:
    """gri colour stamps in rows: (title, images (K, 3, H, W) nanomaggies, scores), with a scale bar."""
    from shortcutgates.experiment.figures import _new_figure, _save

    k = max(len(images) for _, images, _ in groups)
    fig, axes = _new_figure(len(groups) * k, width=2.0, height=2.1, ncols=k)
    for row, (title, images, scores) in enumerate(groups):
        rgb = gri_rgb(images) if len(images) else []
        for j in range(k):
            ax = axes[row * k + j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(images):
                ax.set_visible(False)
                continue
            ax.imshow(rgb[j], origin="lower")
            add_scale_bar(ax, images.shape[-1])
            ax.set_title(f"{title}\nscore {scores[j]:.3g}" if j == 0 else f"score {scores[j]:.3g}", fontsize=7)
    return _save(fig, path)


def lens_search_figures(results: dict, results_dir: Path, fig_dir: Path) -> dict:
    """Score histograms and the extremes of E2 (first seed), for whatever the results hold."""
    run = results["seeds"][0]
    made, hists, groups = {}, {}, []
    for config, c in run.get("configs", {}).items():
        for exp, roc in (c.get("roc") or {}).items():
            if roc and roc.get("hist"):
                hists.setdefault(exp, {})[config] = roc["hist"]
        ext = ((c.get("roc") or {}).get("E2") or {}).get("extremes")
        if ext:
            groups += _extreme_rows(config, ext, Path(results_dir))
    if hists:
        made["score_hist"] = score_hist_figure(hists, fig_dir / "score_hist.png")
    if groups:
        made["extremes"] = extremes_figure(groups, fig_dir / "extremes.png")
    return made


def _extreme_rows(config: str, ext: Mapping, results_dir: Path) -> list:
    """Load the extremes' stamps from their manifest files (left out if the data are gone)."""
    import pandas as pd

    from shortcutgates.data.manifest import load_images, read_manifest

    out = []
    for key, title in (("false_positives", "top non-lenses"), ("missed_lenses", "lowest lenses")):
        entries = [dict(e, manifest_file=results_dir / e["manifest_file"]) for e in ext.get(key, [])]
        entries = [e for e in entries if e["manifest_file"].exists()]
        if not entries:
            continue
        parts = []
        for e in entries:
            frame = read_manifest(e["manifest_file"], blobs=False, check_duplicates=False).frame
            parts.append(frame[frame["manifest_row"] == e["manifest_row"]].iloc[:1])
        images, _ = load_images(pd.concat(parts, ignore_index=True))
        out.append((f"{config}: {title}", images, [e["score"] for e in entries]))
    return out


def tpr_table(results: dict) -> tuple:
    """Header and rows: TPR at FPR 10⁻² and 10⁻³ per configuration and experiment, with notes."""
    header = ["configuration", "experiment", "AUROC", "TPR @ FPR 1e-2", "TPR @ FPR 1e-3", "note"]
    rows = []
    for config, c in results["seeds"][0].get("configs", {}).items():
        for exp in ("E1", "E2", "E3"):
            m = (c.get("experiments") or {}).get(exp) or {}
            tpr = m.get("tpr_at_fpr") or {}
            if not isinstance(next(iter(tpr.values()), None), Mapping):
                continue
            cells = [_fmt(tpr.get(f"{f:g}", {})) for f in FPR_LEVELS]
            flagged = [k for k, t in tpr.items() if t.get("note")]
            n_neg = next(iter(tpr.values())).get("n_neg")
            notes = (
                f"{n_neg} negatives, fewer than 10/FPR: not an estimate at FPR {', '.join(flagged)}" if flagged else ""
            )
            rows.append([config, exp, _fmt(m), *cells, notes])
    return header, rows


def _fmt(m: Mapping) -> str:
    if not m or m.get("value") is None:
        return "n/a"
    ci = m.get("ci")
    if ci and None not in ci:
        return f"{m['value']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    return f"{m['value']:.3f}"
