"""The filter stage: cheap rules over each ingested batch, once, before embedding.

Dropped rows go to the `filtered` table with their reason; every later stage
(dedup, embed, score, select) skips them. A batch is filtered once: its
`stages` row (stage "filter", key "batch N") marks it done. The rules run on
Ray workers that read the staged rows themselves; only the dropped rows and
per-batch counts come back.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass

import pyarrow.compute as pc

from thresher.flows import runtime
from thresher.flows.runtime import Progress
from thresher.selection.filters import FilterStage, Rules
from thresher.storage import queries
from thresher.storage.errors import ThresherError
from thresher.storage.store import StageCounts, Store


@dataclass(frozen=True)
class FilterReport:
    run_id: int | None
    checked: int
    dropped: int
    by_rule: dict[str, int]


def filter_items(store: Store, rules: Rules, on_progress: Progress = None) -> FilterReport:
    """Apply `rules` to the items of every batch not filtered yet."""
    rules.compiled()  # a bad pattern fails before anything runs
    todo = queries.unfiltered_items(store.text_column())
    if not queries.count(store, todo):
        return FilterReport(None, 0, 0, {})
    if rules.by_language and queries.count(store, queries.langid_todo(store.text_column())):
        raise ThresherError(
            f"[filter] languages: some items of {store.root} have no language yet; "
            f"run `thresher langid {store.root}` first"
        )
    seen: Counter[int] = Counter()
    dropped: Counter[int] = Counter()
    by_rule: Counter[str] = Counter()
    with store.run("filter", dataclasses.asdict(rules)) as run:
        staged = runtime.stage(run, "filter-todo", todo)
        writer = run.writer("filtered")
        for out in runtime.stream(FilterStage(rules), staged, on_progress=on_progress):
            seen.update(out.column("batch_id").to_pylist())
            out = out.filter(pc.is_valid(out.column("reason")))
            dropped.update(out.column("batch_id").to_pylist())
            by_rule.update(r.split(":", 1)[0] for r in out.column("reason").to_pylist())
            writer.append(item_id=out.column("item_id"), reason=out.column("reason"))
        writer.close()
        for b in sorted(seen):
            run.record(
                StageCounts("filter", f"batch {b}", seen[b], seen[b] - dropped[b], dropped[b], 0)
            )
        total, gone = sum(seen.values()), sum(dropped.values())
        run.message = f"{gone} of {total} rows dropped" + (
            " (" + ", ".join(f"{v} {k}" for k, v in sorted(by_rule.items())) + ")"
            if by_rule
            else ""
        )
    return FilterReport(run.run_id, total, gone, dict(sorted(by_rule.items())))
