"""Gates the suite expected that did not run, and the strict rule that fails such a run.

A CI job that deselected most gates (``-k``), gave no model, or lacked the splits a gate needs has
not shown the shortcut absent; the summary names those cases by reason, and in strict mode
(``--gate-strict``, the default of ``shortcutgates gate``) they fail the run. Waived cases are
accepted as they are.
"""

from __future__ import annotations

NOT_RUN_LISTED = 12
"""Case ids listed per not-run reason in the summary."""


def not_run(records: list[dict]) -> dict[str, list[str]]:
    """Expected cases that did not run (verdict ``skipped``), by reason: ``{reason: [case id, ...]}``."""
    out: dict[str, list[str]] = {}
    for r in records:
        if r["verdict"] == "skipped":
            out.setdefault(r["message"], []).append(r["id"])
    return out


def strict_failure(records: list[dict]) -> str | None:
    """Why a strict run fails: expected cases that did not run and are not waived (None: all ran)."""
    ids = [r["id"] for r in records if r["verdict"] == "skipped" and not r.get("waiver")]
    if not ids:
        return None
    return (
        f"STRICT: {len(ids)} of {len(records)} expected gates did not run, so this run has not shown the "
        "shortcut absent; the run fails (run them, waive them, or pass --no-strict / omit --gate-strict)"
    )
