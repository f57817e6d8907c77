"""Compare gate reports of one model gated different ways: same cases, values and verdicts?"""

import json
import sys

reports = {path: {g["id"]: g for g in json.load(open(path))["gates"]} for path in sys.argv[1:]}
first = next(iter(reports.values()))
same_ids = all(set(r) == set(first) for r in reports.values())
diff = max(
    (max(v) - min(v) for i in first for v in [[r[i]["value"] for r in reports.values()]] if None not in v), default=0.0
)
verdicts = [i for i in first if len({r[i]["verdict"] for r in reports.values()}) > 1]
print(
    f"{len(first)} cases; same case set: {same_ids}; max |value difference|: {diff:.3g}; "
    f"verdicts that differ: {verdicts or 'none'}"
)
