"""What a selection measured against random, for `thresher select --report`.

`measured.json` beside this file is written by `python benchmarks/selection.py
--variants --save selection/measured.json`: for each dataset of that run
(digits, the tuning half and the held-out half of the PyPI families) and each
variant, its held-out accuracy minus random's, in points, mean and std over
the seeds, at keep 10/30/50/70%. `expected_effect` finds the variant a
selection ran as and quotes the nearest measured keep.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

MEASURED = Path(__file__).with_name("measured.json")


@cache
def _measured() -> dict[str, Any]:
    return json.loads(MEASURED.read_text()) if MEASURED.exists() else {}


def variant_name(policy: str, balance: str, drop_label_issues: float = 0.0) -> str:
    """The benchmark's name for what `select` ran (`policy` after auto chose)."""
    if drop_label_issues:
        shown = f"drop {round(100 * drop_label_issues)}% label issues, "
        return shown + (policy if balance == "none" else f"{policy}, {balance}-balanced")
    return policy if balance == "none" else f"{policy}, {balance}-balanced"


def expected_effect(
    policy: str, balance: str, keep: float, drop_label_issues: float = 0.0
) -> list[str]:
    """One line per measured dataset: the variant's points over random at the measured
    keep nearest `keep`; a line saying so when that variant was not measured."""
    data = _measured()
    name = variant_name(policy, balance, drop_label_issues)
    if name == "random":
        return ["random is the baseline every other selection was measured against"]
    lines = []
    for title, found in data.get("datasets", {}).items():
        cells = found["points"].get(name)
        if not cells:
            continue
        near = min(cells, key=lambda k: abs(float(k) - keep))
        mean, std = cells[near]
        lines.append(
            f"{name}: {mean:+.2f} +- {std:.2f} pt over random at keep {float(near):.0%} on "
            f"{title} ({found['pool']:,} candidates; {data['seeds']} seeds, {data['date']})"
        )
    return lines or [f"{name}: not measured (benchmarks/selection.py --variants)"]
