"""The filter stage: cheap rules over each ingested batch, once, before embedding.

Dropped rows go to the `filtered` table with their reason; every later stage
(embed, dedup, score, select) skips them. A batch is filtered once: its
`stages` row (stage "filter", key "batch N") marks it done.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from thresher.selection.filters import Rules, reasons, rule_names
from thresher.storage.store import StageCounts, Store


@dataclass(frozen=True)
class FilterReport:
    run_id: int | None
    checked: int
    dropped: int
    by_rule: dict[str, int]


def filter_items(store: Store, rules: Rules) -> FilterReport:
    """Apply `rules` to the items of every batch not filtered yet."""
    rules.compiled()  # a bad pattern fails before anything runs
    done = store.query("SELECT key FROM stages WHERE stage = 'filter'").column(0).to_pylist()
    text = store.text_column()
    todo = store.query(
        f'SELECT item_id, batch_id, "{text}" AS text FROM items '
        "WHERE 'batch ' || batch_id NOT IN (SELECT unnest($done::VARCHAR[])) "
        "ORDER BY batch_id, item_id",
        {"done": done},
    )
    if not todo.num_rows:
        return FilterReport(None, 0, 0, {})
    found = reasons(todo.column("text").to_pylist(), rules)
    dropped = np.array([r is not None for r in found])
    batches = todo.column("batch_id").to_numpy()
    with store.run("filter", dataclasses.asdict(rules)) as run:
        ids = todo.column("item_id").to_numpy()[dropped]
        run.write_table(
            "filtered",
            pa.table(
                {
                    "item_id": pa.array(ids, pa.int64()),
                    "reason": pa.array([r for r in found if r is not None], pa.string()),
                    "run_id": pa.array(np.full(len(ids), run.run_id), pa.int64()),
                }
            ),
        )
        for b in np.unique(batches):
            mine = batches == b
            n, d = int(mine.sum()), int((dropped & mine).sum())
            run.record(StageCounts("filter", f"batch {b}", n, n - d, d, 0))
        by_rule = rule_names(found)
        run.message = f"{int(dropped.sum())} of {len(found)} rows dropped" + (
            " (" + ", ".join(f"{v} {k}" for k, v in by_rule.items()) + ")" if by_rule else ""
        )
    return FilterReport(run.run_id, len(found), int(dropped.sum()), by_rule)
