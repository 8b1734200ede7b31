"""The langid stage: each item's language, once, into the `languages` table.

Only items with no `languages` row are identified, on Ray workers that read the
staged rows themselves; the filter's `languages` rule reads the table.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from thresher.flows import runtime
from thresher.flows.runtime import Progress
from thresher.selection.langid import LangIdStage
from thresher.storage import queries
from thresher.storage.store import StageCounts, Store


@dataclass(frozen=True)
class LangIdReport:
    run_id: int | None
    identified: int
    by_language: dict[str, int]


def identify_languages(store: Store, on_progress: Progress = None) -> LangIdReport:
    """Identify the language of every item that has none yet."""
    todo = queries.langid_todo(store.text_column())
    if not queries.count(store, todo):
        return LangIdReport(None, 0, {})
    found: Counter[str] = Counter()
    with store.run("langid", {"model": "py3langid"}) as run:
        staged = runtime.stage(run, "langid-todo", todo)
        writer = run.writer("languages")
        for out in runtime.stream(LangIdStage(), staged, on_progress=on_progress):
            found.update(out.column("language").to_pylist())
            writer.append(
                item_id=out.column("item_id"),
                language=out.column("language"),
                confidence=out.column("confidence"),
            )
        writer.close()
        total = sum(found.values())
        run.record(StageCounts("langid", "", total, total, 0, 0))
        top = ", ".join(f"{n} {lang}" for lang, n in found.most_common(5))
        run.message = f"{total} items identified ({top})"
    return LangIdReport(run.run_id, total, dict(found.most_common()))
