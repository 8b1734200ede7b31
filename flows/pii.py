"""The PII stage: find e-mail addresses, phone numbers, IPs, card numbers, IBANs and
SSNs in the kept items' text, once per item.

Spans go to the `pii` table (character offsets into the text column); every scanned
item goes to `pii_checked`, so a rerun scans only items ingested (or kept) since. The
stored text is never changed: `export --redact-pii` and the feed's `redact_pii=True`
replace the spans as rows go out (see `thresher.storage.redact`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pyarrow.compute as pc

from thresher.flows import runtime
from thresher.flows.runtime import Progress
from thresher.selection.pii import PiiStage
from thresher.storage import queries, text_queries
from thresher.storage.store import StageCounts, Store


@dataclass(frozen=True)
class PiiReport:
    run_id: int | None
    scanned: int
    items_with_pii: int
    by_kind: dict[str, int]


def scan_pii(store: Store, on_progress: Progress = None) -> PiiReport:
    """Scan every kept item not scanned yet; record its spans and that it was scanned."""
    todo = text_queries.pii_todo(store.text_column())
    if not queries.count(store, todo):
        return PiiReport(None, 0, 0, {})
    scanned, flagged = 0, 0
    by_kind: Counter[str] = Counter()
    with store.run("pii", {}) as run:
        staged = runtime.stage(run, "pii-todo", todo)
        spans, checked = run.writer("pii"), run.writer("pii_checked")
        for out in runtime.stream(PiiStage(), staged, on_progress=on_progress):
            ids = pc.unique(out.column("item_id"))
            checked.append(item_id=ids)
            found = out.filter(pc.is_valid(out.column("kind")))
            spans.append(
                item_id=found.column("item_id"),
                kind=found.column("kind"),
                start=found.column("start"),
                end=found.column("end"),
            )
            scanned += len(ids)
            flagged += len(pc.unique(found.column("item_id")))
            by_kind.update(found.column("kind").to_pylist())
        spans.close()
        checked.close()
        run.record(StageCounts("pii", "items", scanned, scanned, 0, 0))
        run.message = f"{sum(by_kind.values())} spans in {flagged} of {scanned} items" + (
            " (" + ", ".join(f"{v} {k}" for k, v in sorted(by_kind.items())) + ")"
            if by_kind
            else ""
        )
    return PiiReport(run.run_id, scanned, flagged, dict(sorted(by_kind.items())))
