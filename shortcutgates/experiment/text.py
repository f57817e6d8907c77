"""Sentences of the experiment report, each computed from the measurements in ``results.json``.

The unpaired-training proposal (summarised in docs/design.md#experiment) asks six review questions; :func:`answers` answers
each from the numbers of the run (gate records, AUROCs with intervals, seed spread) — which text is
written depends on which side of the thresholds the measurements fell.
"""

from __future__ import annotations

import math

PROPOSAL_TEST_LRGS = 600
"""Test LRGs of the proposal's 4000-sample mini dataset: 4000 LRGs (one sample each, unpaired) × 15 %."""


def _f(x, d: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{d}f}"


def _m(m: dict | None) -> str:
    if not m or m.get("value") is None:
        return "n/a"
    ci = m.get("ci")
    if ci and ci[0] is not None and ci[1] is not None:
        return f"{_f(m['value'])} [{_f(ci[0])}, {_f(ci[1])}]"
    return _f(m["value"])


def _configs(results: dict) -> list:
    return [c["name"] for c in results["params"]["configs"]]


def _exp(results: dict, config: str, key: str, seed_index: int = 0) -> dict | None:
    return results["seeds"][seed_index]["configs"].get(config, {}).get("experiments", {}).get(key)


def find_gates(records, gate: str, **params) -> list:
    """Gate records of one gate whose params include ``params``."""
    return [
        r
        for r in records or []
        if r["gate"] == gate and all(str(r.get("params", {}).get(k)) == str(v) for k, v in params.items())
    ]


def _data_gates(results: dict, dataset: str) -> list:
    return results["seeds"][0].get("data_gates", {}).get(dataset, [])


def _model_gates(results: dict, config: str) -> list:
    return results["seeds"][0]["configs"].get(config, {}).get("gates", [])


def intro(results: dict) -> str:
    p = results["params"]
    source = (
        f"the paired survey data at {p['input']}"
        if p.get("input")
        else f"simulated paired data ({p.get('n_lrgs')} LRGs per seed)"
    )
    parts = [
        f"Built from {source}: a paired and an unpaired dataset with LRG-disjoint splits; a CNN trained "
        f"for {p.get('epochs')} epoch(s) on each, in {len(p['configs'])} configurations "
        f"({', '.join(_configs(results))}); seeds {', '.join(str(r['seed']) for r in results['seeds'])}."
    ]
    for name, ds in results["seeds"][0].get("datasets", {}).items():
        splits = ", ".join(
            f"{s}: {v['n']} rows / {v['n_lrgs']} LRGs ({v['n_pos']} lens)" for s, v in ds.get("splits", {}).items()
        )
        parts.append(f"{name}: {splits}.")
    return " ".join(parts)


def answer_sound(results: dict, summary: dict, crit: list) -> str:
    leak = find_gates(_data_gates(results, "unpaired"), "lrg_leakage")
    leak_bad = [r["id"] for r in leak if r["verdict"] != "pass"]
    leak_txt = (
        "not measured"
        if not leak
        else f"all {len(leak)} lrg_leakage checks pass"
        if not leak_bad
        else f"NOT passing: {', '.join(leak_bad)}"
    )
    core = {d: find_gates(_data_gates(results, d), "core_lr_auc", input="raw_robust") for d in ("paired", "unpaired")}
    core_txt = ", ".join(f"{d} {_m(v[0])}" for d, v in core.items() if v) or "n/a"
    e4 = {c: (_exp(results, c, "E4") or {}).get("value") for c in _configs(results)}
    broken = [c for c, v in e4.items() if v is not None and v < 0.65]
    core_reads = {
        c: [r for r in _model_gates(results, c) if r["gate"] in CORE_MODEL_GATES and r.get("value") is not None]
        for c in _configs(results)
    }
    tr_txt = (
        "; ".join(
            f"{c}: " + ", ".join(f"{r['id']} {_m(r)} ({_verdict(r)})" for r in v) for c, v in core_reads.items() if v
        )
        or "not measured"
    )
    raw_e4 = e4.get("raw_robust")
    verdict = (
        "Unpaired construction alone does NOT break the core shortcut"
        if raw_e4 is not None and raw_e4 >= 0.65
        else "Unpaired construction alone keeps the core-LR AUC below 0.65"
        if raw_e4 is not None
        else "The raw_robust configuration was not run, so unpaired construction alone is not isolated"
    )
    split_txt = (
        "The split itself is sound: no LRG is both lens and non-lens or in two splits"
        if leak and not leak_bad
        else "The split itself is NOT verified"
    )
    return f"{split_txt} ({leak_txt}). " + _core_sentence(verdict, core_txt, e4, broken, tr_txt) + _arc_in_box(results)


def _core_sentence(verdict: str, core_txt: str, e4: dict, broken: list, tr_txt: str) -> str:
    return (
        f"{verdict}: a logistic regression on the central 10×10 pixels of raw_robust images reaches "
        f"core-LR AUC {core_txt} (paired vs unpaired data, train split). On each E2 model's input the "
        f"core-LR AUC is "
        + ", ".join(f"{c} {_f(v)}" for c, v in e4.items())
        + f"; it is below 0.65 for {', '.join(broken) if broken else 'no configuration'}. "
        f"Whether the trained model actually uses the core is measured within each pair, per θ_E bin, by "
        f"the counterfactual gates: arc_masked_auroc (the positive with its arc taken out by lensing, "
        f"flagged at the operating threshold as often as the real lenses? a ratio ≤ 0.50 passes) and "
        f"core_masked_auroc_drop (detection AUROC lost without the counter-image light, ≤ 0.05 passes): "
        f"{tr_txt}. "
    )


def _arc_in_box(results: dict) -> str:
    """How the E4 core-LR AUC depends on θ_E: small Einstein radii put the arc itself in the box."""
    parts, inside = [], set()
    for c in _configs(results):
        bins = [b for b in (_exp(results, c, "E4") or {}).get("theta_e_bins") or [] if b.get("auc") is not None]
        if bins:
            parts.append(f"{c} " + ", ".join(f"[{b['lo']:g}, {b['hi']:g})″ {_f(b['auc'])}" for b in bins))
            inside |= {bool(b.get("arc_inside_box")) for b in bins}
    if not parts:
        return ""
    return (
        "E4 by θ_E bin of the positives: "
        + "; ".join(parts)
        + ". "
        + (
            "Every measured bin starts below the box's reach (half-diagonal + arc width), so at least part of "
            "each bin's arcs fall inside the 10×10 box and the probe reads arc light as well as the "
            "counter-image: an upper bound on the core shortcut alone. "
            if inside == {True}
            else "Bins the gate flags as lying beyond the box's reach measure the counter-image/core shortcut "
            "without arc light. "
        )
    )


def answer_balance(results: dict, summary: dict, crit: list) -> str:
    recs = [
        r
        for r in find_gates(_data_gates(results, "unpaired"), "property_balance")
        if r["split"] == "train" and r.get("value") is not None
    ]
    if not recs:
        return "No property_balance gate was measured on the unpaired training split."
    recs = sorted(recs, key=lambda r: -abs(r["value"]))
    margin = recs[0].get("threshold") or 0.2
    bad = [
        r["params"].get("prop", r["id"])
        for r in recs
        if abs(r["value"]) > margin or not r.get("ci") or None in r["ci"] or max(abs(c) for c in r["ci"]) > margin
    ]
    c2st = [r for r in find_gates(_data_gates(results, "unpaired"), "metadata_c2st_auc") if r["split"] == "train"]
    c2st_txt = (
        (
            f"A classifier predicting the label from all property columns reaches AUC {_m(c2st[0])} "
            f"({c2st[0]['verdict']}, ≤ 0.60 passes)"
        )
        if c2st
        else "The metadata C2ST was not measured"
    )
    listed = ", ".join(f"{r['params'].get('prop', r['id'])} {_f(r['value'], 2)}" for r in recs[:6])
    n_lrgs = recs[0].get("n_groups")
    return (
        f"Standardised mean differences lens vs non-lens in the unpaired training split ({n_lrgs} LRGs; "
        f"largest first): {listed}. "
        + (
            f"Not shown balanced (signed SMD or its interval beyond ±{margin:g}; property balance is "
            f"reported, not gated): {', '.join(bad)} — {len(bad)} of {len(recs)} properties. "
            if bad
            else f"Every property's signed SMD lies within ±{margin:g} with its interval (reported, not gated). "
        )
        + f"{c2st_txt}. The checks that matter are the ones the model could read from the image: PSF size, "
        f"depth and LRG brightness change the core and the noise, so an imbalance there is a new shortcut; "
        f"the C2ST catches combinations that single-property SMDs miss. " + _chance_smd(results)
    )


def _chance_smd(results: dict) -> str:
    train = results["seeds"][0].get("datasets", {}).get("unpaired", {}).get("splits", {}).get("train")
    if not train or not train.get("n_pos") or not train.get("n_neg"):
        return ""
    se = math.sqrt(1 / train["n_pos"] + 1 / train["n_neg"])
    return (
        f"With {train['n_pos']} lens and {train['n_neg']} non-lens LRGs a random pool split alone gives "
        f"SMDs with standard error {_f(se, 2)}; matching (build --match) removes that spread."
    )


def ci_width(m: dict | None) -> float | None:
    if not m or not m.get("ci") or m["ci"][0] is None or m["ci"][1] is None:
        return None
    return float(m["ci"][1] - m["ci"][0])


def answer_sample_size(results: dict, summary: dict, crit: list) -> str:
    parts, decide = [], []
    for c in _configs(results):
        m = _exp(results, c, "E2")
        w = ci_width(m)
        if w is None or not m.get("n_groups"):
            continue
        projected = w * math.sqrt(m["n_groups"] / PROPOSAL_TEST_LRGS)
        s = summary.get(c, {}).get("E2", {})
        spread = f", seed std {_f(s['std'])}" if s.get("std") is not None else ""
        parts.append(
            f"{c}: E2 AUROC interval width {_f(w)} from {m['n_groups']} test LRGs{spread}, "
            f"≈ {_f(projected)} projected at {PROPOSAL_TEST_LRGS} test LRGs"
        )
        distance = abs(m["value"] - 0.80)
        decide.append(
            f"{c} ({'yes' if distance > projected / 2 else 'no'}: |E2 − 0.80| = {_f(distance)} vs "
            f"half-width {_f(projected / 2)})"
        )
    text = (
        "Measured 95 % interval widths (LRG bootstrap; width scales as 1/√LRGs): " + "; ".join(parts) + ". "
        if parts
        else "No E2 interval was measured. "
    )
    if decide:
        text += (
            "Would 4000 samples (≈ 600 test LRGs) decide the E2 > 0.80 criterion at these estimates? "
            + ", ".join(decide)
            + ". "
        )
    gap_w = [w for w in (ci_width(_exp(results, c, "E3_gap")) for c in _configs(results)) if w is not None]
    if gap_w:
        text += f"The E3 − E2 interval is {_f(min(gap_w))}–{_f(max(gap_w))} wide here, " + (
            "wider than the 0.05 criterion itself, so at this size the generalisation criterion cannot "
            "hold with confidence. "
            if min(gap_w) > 0.05
            else "narrow enough to decide the 0.05 criterion. "
        )
    undecided = sorted(
        {r["id"] for c in _configs(results) for r in _model_gates(results, c) if r["verdict"] == "inconclusive"}
    )
    if undecided:
        text += f"Undecided (inconclusive) gates at this size: {', '.join(undecided)}."
    return text


CORE_MODEL_GATES = ("arc_masked_auroc", "core_masked_auroc_drop")
"""The counterfactual model gates that ask whether a model reads the core (docs/model_gates.md)."""
MODEL_EXTRA_GATES = (
    "arc_masked_auroc",
    "core_masked_auroc_drop",
    "arc_swap_auroc_drop",
    "morphology_auroc",
    "cross_test_gap",
)


def _verdict(record: dict) -> str:
    """The verdict, marked when the case is reported rather than gated (e.g. a θ_E bin whose arc lies in the core)."""
    return f"{record['verdict']}, reported" if record.get("role") == "reported" else record["verdict"]


def answer_gates(results: dict, summary: dict, crit: list) -> str:
    lines = []
    for c in _configs(results):
        recs = [r for r in _model_gates(results, c) if r["gate"] in MODEL_EXTRA_GATES]
        if recs:
            lines.append(f"{c}: " + ", ".join(f"{r['id']} {_f(r['value'])} ({_verdict(r)})" for r in recs))
    caught = sorted(
        {
            r["gate"]
            for c in _configs(results)
            for r in _model_gates(results, c)
            if r["gate"] in MODEL_EXTRA_GATES
            and r["verdict"] == "fail"
            and r.get("role") != "reported"
            and ((_exp(results, c, "E4") or {}).get("value") or 1.0) < 0.65
        }
    )
    text = (
        "Besides the core-LR gate, the model gates measure what the score depends on: " + "; ".join(lines) + ". "
        if lines
        else "No model gate beyond E1–E4 was measured. "
    )
    if caught:
        text += (
            f"{', '.join(caught)} failed on a configuration whose E4 core-LR estimate is below 0.65 — the "
            f"core-LR gate alone would not have shown it. "
        )
    text += (
        "Also run on the data: lrg_leakage, property_balance, metadata_c2st_auc and arc_annulus_lr_auc "
        "(the arc is there); and stratified AUROC by θ_E, PSF and depth to find where the model is weak."
    )
    return text


def answer_alternatives(results: dict, summary: dict, crit: list) -> str:
    e4 = ", ".join(f"{c} {_f((_exp(results, c, 'E4') or {}).get('value'))}" for c in _configs(results))
    e2 = ", ".join(f"{c} {_f((_exp(results, c, 'E2') or {}).get('value'))}" for c in _configs(results))
    all3 = [c for c in _configs(results) if sum(x.config == c and x.verdict == "held" for x in crit) == 3]
    per = "; ".join(
        f"{c}: " + ", ".join(f"{x.name} {x.verdict}" for x in crit if x.config == c) for c in _configs(results)
    )
    return (
        f"Measured remedies — E4 core-LR AUC: {e4}; E2 AUROC: {e2}. "
        + (
            f"All three criteria held for {', '.join(all3)}. "
            if all3
            else f"No configuration held all three criteria ({per}). "
        )
        + "Residual preprocessing removes the azimuthally smooth LRG light the core probe reads; core dropout "
        "only changes training, so it can show in the counterfactual model gates but not in E4 (which reads the "
        "model's input). Other ways to build unpaired data from the existing pool: match the negative pool "
        "to the positives in PSF/depth/brightness bins (build --match), or keep pairs but inject the arc "
        "into a different LRG's control; both are checked by the same gates."
    )


def answer_risks(results: dict, summary: dict, crit: list) -> str:
    parts = []
    for c in _configs(results):
        e1, e2 = (_exp(results, c, "E1") or {}).get("value"), (_exp(results, c, "E2") or {}).get("value")
        if e1 is not None and e2 is not None:
            parts.append(f"{c} E1 − E2 = {_f(e1 - e2)}")
    text = ("The unpaired task is harder: " + ", ".join(parts) + ". ") if parts else ""
    weak = []
    for c in _configs(results):
        for prop, bins in results["seeds"][0]["configs"].get(c, {}).get("stratified", {}).items():
            vals = [b for b in bins if b.get("value") is not None]
            if vals:
                low = min(vals, key=lambda b: b["value"])
                weak.append((low["value"], f"{c} at {prop} {low['bin']}: {_f(low['value'])}"))
    if weak:
        text += "Weakest bins: " + "; ".join(w for _, w in sorted(weak)[:3]) + ". "
    failed = sorted({r["id"] for c in _configs(results) for r in _model_gates(results, c) if r["verdict"] == "fail"})
    if failed:
        text += f"Failing model gates (a new or remaining shortcut): {', '.join(failed)}. "
    return text + (
        "Further risks not measured here: the negative pool is LRGs that were chosen as injection hosts, "
        "not a random sky sample; real non-lenses (spirals, mergers, rings) are absent from both pools; "
        "and with one positive per LRG the model sees fewer arc configurations per epoch."
    )


QUESTIONS = (
    ("1. Is the unpaired design sound?", answer_sound),
    ("2. Which property balance checks are critical?", answer_balance),
    ("3. Is 4000 samples enough?", answer_sample_size),
    ("4. Which additional gates?", answer_gates),
    ("5. Better alternatives?", answer_alternatives),
    ("6. Risks?", answer_risks),
)


def answers(results: dict, summary: dict, crit: list) -> list:
    """``[(question, answer)]`` for the proposal's six review questions."""
    return [(q, fn(results, summary, crit)) for q, fn in QUESTIONS]
