"""The gate table of README.md and docs/design.md, generated from the registry.

The registry (:data:`~shortcutgates.gates.registry.REGISTRY`) gives each gate's needs, default
threshold, claim and role; :data:`GATE_DOCS` adds the words a reader needs (which case ids, what is
measured, what to do when it fails). The markdown files hold the generated table between the markers
:data:`BEGIN` and :data:`END`; ``tests/test_gate_docs.py`` fails when they differ from it.

Regenerate after changing a registry row or a text here::

    PYTHONPATH=. python -m shortcutgates.gates.gate_docs          # rewrite the tables
    PYTHONPATH=. python -m shortcutgates.gates.gate_docs --check  # exit 1 when a table is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NamedTuple

from shortcutgates.gates.records import Gate
from shortcutgates.gates.registry import REGISTRY

BEGIN = "<!-- gate-table:begin (generated from the registry: python -m shortcutgates.gates.gate_docs) -->"
END = "<!-- gate-table:end -->"
FILES = ("README.md", "docs/design.md")
"""Markdown files (relative to the repository root) that carry the generated table."""


class GateDoc(NamedTuple):
    """A reader's words for one gate: its case ids, what it measures, and the remedy when it fails."""

    ids: str
    measures: str
    remedy: str
    passes_note: str = ""
    """Appended to the claim (where the role differs by split, or why the row is reported)."""
    needs_note: str = ""


GATE_DOCS: dict[str, GateDoc] = {
    "data_integrity": GateDoc(
        "`data_integrity`",
        "rows that fail to decode, have another stamp size, hold NaN/Inf, or cannot be normalised",
        "fix or drop the rows it lists (file, row, column); a survey's failed cutouts are all-zero stamps",
    ),
    "lrg_leakage": GateDoc(
        "`lrg_leakage[split-pos-neg]`, `[a-b]`",
        "LRG identities (sky-matched) shared by positives and negatives of a split, or by two splits",
        "rebuild with `shortcutgates build` (LRG-disjoint splits); a hand-written `lrg_id` that disagrees with "
        "the positions is reported here",
    ),
    "property_balance": GateDoc(
        "`property_balance[split-prop]`",
        "signed standardised mean difference of a property, positives − negatives",
        "build with `--match COL,...` on the unbalanced columns",
    ),
    "metadata_c2st_auc": GateDoc(
        "`metadata_c2st_auc[split]`",
        "grouped-CV AUC of a classifier predicting the label from the property columns",
        "the classes differ in observing conditions: `--match` them",
        passes_note="on `train`; reported on `val`/`test` (too few LRGs there to decide; a manifest without "
        "`train` decides on its splits)",
    ),
    "metadata_c2st_gbm_auc": GateDoc(
        "`metadata_c2st_gbm_auc[split]`",
        "grouped-CV AUC of gradient-boosted trees predicting the label from the property columns (non-linear "
        "C2ST beside the linear one)",
        "the classes differ in a combination or tail of their properties: `--match` them",
    ),
    "core_lr_auc": GateDoc(
        "`core_lr_auc[split-boxB-input]`, `[split-boxB-input-θbin]`",
        "grouped-CV logistic-regression AUC on the central B × B pixels (`raw_robust`, `--input`, the model's "
        "own input), over all θ_E and per θ_E bin whose arcs clear the box",
        "the core alone separates the classes (paired data, or unpaired with the counter-image): train with "
        "`--preprocess residual` and/or `--core-dropout`, and check `property_balance`",
        passes_note="on `train`, on the model's input (else `--input`), on the θ_E bins whose arcs clear the "
        "box where some do not; reported on `val`/`test` and the other inputs",
        needs_note=" (+ model for `input=model`)",
    ),
    "radial_profile_lr_auc": GateDoc(
        "`radial_profile_lr_auc[split-input]`",
        "grouped-CV AUC on azimuthal-median profiles",
        "on raw images the arc's ring flux alone separates the classes; not generated for residual input "
        "(zero by construction)",
    ),
    "arc_annulus_lr_auc": GateDoc(
        "`arc_annulus_lr_auc[split-input]`",
        "grouped-CV AUC on ring statistics of the arc annulus (sanity: the arc is there)",
        "the injections are too faint or misplaced for any detector; check the injection pipeline",
    ),
    "detection_auroc": GateDoc(
        "`detection_auroc[split]`",
        "the model's AUROC on a held-out split",
        "the model does not detect lenses well enough; train longer or on more LRGs",
    ),
    "memorisation_gap": GateDoc(
        "`memorisation_gap[train-val]`",
        "AUROC(train) − AUROC(val)",
        "large: the model memorises LRGs; more LRGs, fewer injections per LRG",
    ),
    "cross_test_gap": GateDoc(
        "`cross_test_gap`",
        "AUROC(`test_paired`) − AUROC(`test`)",
        "the model scores paired and unpaired data differently: it reads something the unpaired classes differ "
        "in (LRG selection, a shortcut missing from the pairs); see the perturbation gates",
        passes_note="(primary where `test` and `test_paired` share ≥ 500 positive LRGs — 6667 LRGs at the "
        "builder's default splits; reported below: at 4000, 300, a clean model passes it in 70–80 % of seeds)",
    ),
    "arc_masked_auroc": GateDoc(
        "`arc_masked_auroc[...]`",
        "pairs with the arc taken out by lensing (control + counter-image light, "
        "[split](docs/model_gates.md#the-lensing-split)): share flagged at the operating threshold (controls' FPR "
        "10⁻² or `operating_threshold`) ÷ share of the real lenses flagged; AUROC vs controls reported beside it; "
        "decidable pairs only",
        "the search would find these lenses from the counter-image / core light alone: the shortcut; train with "
        "residual input, core dropout or counter-image negatives",
    ),
    "core_masked_auroc_drop": GateDoc(
        "`core_masked_auroc_drop[...]`",
        "paired detection AUROC lost when the counter-image light (by lensing) is removed; decidable pairs only",
        "the model depends on the counter-image in the core",
    ),
    "arc_swap_auroc_drop": GateDoc(
        "`arc_swap_auroc_drop[...]`",
        "paired detection AUROC lost when each arc is moved onto the control of an LRG of nearly the same brightness",
        "the score depends on which galaxy the arc lies on; a diagnostic: no shortcut it catches has been shown, "
        "and a good lens finder reads an arc against its host ([why](docs/model_gates.md#arc-swap))",
    ),
    "morphology_auroc": GateDoc(
        "`morphology_auroc[...]`",
        "pairs vs the same pairs with the arc cut into PSF-sized patches shuffled round its rings (counter-image kept)",
        "the model does not tell an arc from its light scattered round the ring; a diagnostic until a "
        "counterfactual separates shape from flux-per-ring readers ([why](docs/model_gates.md#morphology))",
    ),
    "stratified_auroc": GateDoc(
        "`stratified_auroc[split-by]`",
        "detection AUROC by bins of θ_E, PSF and depth (worst bin)",
        "a bin far below the others: the model fails for that population",
    ),
}


def passes_when(gate: Gate, doc: GateDoc) -> str:
    """The "passes when (default)" cell: the row's claim and threshold, and its role where it is reported."""
    threshold = gate.threshold
    if threshold is None:
        return "reported"
    op = "≤" if gate.direction == "at_most" else "≥"
    if gate.equivalence:
        claim = f"within ±{threshold:g}"
    elif isinstance(threshold, int):
        claim = f"count {op} {threshold}"
    else:
        claim = f"{op} {threshold:.2f}"
    note = doc.passes_note or (
        "(diagnostic: never red unless made primary)"
        if not gate.blocking
        else "(reported)"
        if gate.role == "reported"
        else ""
    )
    return f"{claim} {note}".strip()


def gate_table(registry: dict[str, Gate] = REGISTRY, docs: dict[str, GateDoc] = GATE_DOCS) -> str:
    """The markdown table, one row per registry gate in registry order; ``KeyError`` names an undocumented gate."""
    missing = [name for name in registry if name not in docs]
    if missing:
        raise KeyError(f"gates without a GATE_DOCS entry in shortcutgates/gates/gate_docs.py: {', '.join(missing)}")
    lines = ["| gate | needs | measures | passes when (default) | when it fails |", "|---|---|---|---|---|"]
    for name, gate in registry.items():
        doc = docs[name]
        needs = ("data" if gate.data_only else "model") + doc.needs_note
        lines.append(f"| {doc.ids} | {needs} | {doc.measures} | {passes_when(gate, doc)} | {doc.remedy} |")
    return "\n".join(lines)


def with_table(text: str, table: str, where: str = "markdown") -> str:
    """``text`` with the block between :data:`BEGIN` and :data:`END` replaced by ``table``."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f"{where}: needs one '{BEGIN}' line followed by one '{END}' line")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table}\n{END}{tail}"


def stale_files(root: Path, write: bool = False) -> list[str]:
    """Files of :data:`FILES` whose table differs from the registry's (rewritten when ``write``)."""
    table, stale = gate_table(), []
    for name in FILES:
        path = root / name
        text = path.read_text(encoding="utf-8")
        new = with_table(text, table, str(path))
        if new != text:
            stale.append(name)
            if write:
                path.write_text(new, encoding="utf-8")
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale tables (exit 1), write nothing")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="repository root (default: .)")
    args = parser.parse_args(argv)
    stale = stale_files(args.root, write=not args.check)
    for name in stale:
        print(f"{name}: gate table {'is stale' if args.check else 'regenerated'}")
    return int(bool(stale) and args.check)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
