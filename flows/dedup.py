"""Wiring of `thresher dedup`: exact, then fuzzy, then semantic; each writes `duplicates`.

Each pass looks only at items it has not checked before (the `dedup_checked`
table) that are not already duplicates, against the items it kept in earlier
runs: saved hashes for exact, saved MinHash signatures for fuzzy, the model's
stored vectors for semantic. Items kept earlier are never turned into
duplicates later. Keep order is (batch_id, item_id): earlier batches win.

Per-item work (content hashes, MinHash signatures) runs on Ray workers that
read the staged candidates themselves; the global step of each pass (the
hash grouping, the LSH join, SemDeDup) runs as one Ray task over files.
"""

from __future__ import annotations

from dataclasses import dataclass

from thresher.flows import runtime
from thresher.flows.fuzzy import fuzzy_pass
from thresher.flows.partition import FIT_FULL_BYTES
from thresher.flows.runtime import Progress
from thresher.flows.semantic import semantic_pass
from thresher.selection.exact import ContentHash
from thresher.selection.semantic import SemanticParams
from thresher.storage import queries
from thresher.storage import vectors as vstore
from thresher.storage.store import Run, StageCounts, Store


@dataclass(frozen=True)
class DedupReport:
    run_id: int
    method: str
    checked: int
    duplicates: int
    note: str = ""


def _account(run: Run, method: str, checked: int, dups: int) -> None:
    run.record(StageCounts(f"dedup_{method}", "", checked, checked - dups, dups, 0))
    run.message = f"{dups} {method} duplicates among {checked} new items"


def dedup_exact(store: Store, on_progress: Progress = None) -> DedupReport:
    """Exact duplicates of normalized text among new items and against kept ones."""
    text = store.text_column()
    with store.run("dedup", {"method": "exact", "text_column": text}) as run:
        todo = runtime.stage(run, "exact-todo", queries.dedup_todo("exact", text))
        # content hashes on Ray workers, streamed into dedup_checked (key = the hash)
        checked = run.writer("dedup_checked")
        for out in runtime.stream(
            ContentHash("text"), todo, columns=["item_id", "text"], on_progress=on_progress
        ):
            checked.append(
                item_id=out.column("item_id"), method="exact", key=out.column("content_hash")
            )
        checked.close()
        # equal hashes: the first in keep order stays (one DuckDB query, in a Ray task)
        dups = (
            runtime.write_query(
                run,
                "duplicates",
                queries.exact_duplicates(todo.paths, checked.paths, run.run_id),
            )
            if todo.rows
            else 0
        )
        _account(run, "exact", todo.rows, dups)
    return DedupReport(run.run_id, "exact", todo.rows, dups)


def dedup_fuzzy(
    store: Store, threshold: float = 0.8, on_progress: Progress = None, shards: int | None = None
) -> DedupReport:
    """MinHash-LSH near duplicates (Jaccard of character 5-gram sets >= threshold), as a
    partitioned join (`thresher.flows.fuzzy`; `shards` overrides the data-sized count)."""
    run_id, checked, dups = fuzzy_pass(store, threshold, on_progress, shards)
    return DedupReport(run_id, "fuzzy", checked, dups)


def dedup_semantic(
    store: Store,
    threshold: float = 0.95,
    model: str | None = None,
    keep: str = "first",
    groups: int | None = None,
    fit_bytes: int | None = None,
    most: int | None = None,
) -> DedupReport:
    """SemDeDup over the model's rotated vectors, partitioned by cluster
    (`thresher.flows.semantic`; `groups` overrides the data-sized count, `most` the
    cluster size past which a cluster is split again)."""
    from thresher.flows.embed import update_index

    model = vstore.pick_model(store, model)
    info = update_index(store, model, shortlist=False)  # new vectors added
    config = {"method": "semantic", "threshold": threshold, "model": model, "keep": keep}
    most = most or SemanticParams.most
    params = SemanticParams(threshold=threshold, prefix_dim=info.shortlist_dim, most=most)
    with store.run("dedup", config) as run:
        todo = runtime.stage(run, "semantic-todo", queries.dedup_todo("semantic", None))
        kept = runtime.stage(run, "semantic-kept", queries.dedup_kept_ids("semantic"))
        checked, dups, missing = (
            semantic_pass(run, info, kept, todo, params, keep, groups, fit_bytes or FIT_FULL_BYTES)
            if todo.rows
            else (0, 0, 0)
        )
        _account(run, "semantic", checked, dups)
    note = f"{missing} new items have no {model!r} vector" if missing else ""
    return DedupReport(run.run_id, "semantic", checked, dups, note)
