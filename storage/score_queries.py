"""Queries of the probe scores that are fitted as a whole: label issues (confident
learning over the labelled items) and quality (a probe against a reference set).
Like `queries`, stage inputs are `Query` objects staged by a Ray task."""

from __future__ import annotations

from thresher.storage.queries import EXCLUDED, Query, labelled_vectors
from thresher.storage.store import Store


def label_issue_pool(model: str, label_column: str | None) -> Query:
    """(item_id, vector, label) of the kept, labelled items with a `model` vector."""
    return labelled_vectors(model, label_column)


def label_issues_stale(store: Store, model: str, label_column: str | None) -> bool:
    """Whether the label issue scores miss a labelled kept item, or labels were given
    (`thresher label`) after the last pass computed them."""
    pool = labelled_vectors(model, label_column)
    missing = store.query(
        f"SELECT count(*) FROM ({pool.sql}) p ANTI JOIN (SELECT item_id FROM scores "
        "WHERE metric = 'label_issue') s USING (item_id)",
        pool.params,
    )
    if missing.column(0)[0].as_py():
        return True
    newer = store.query(
        "SELECT coalesce((SELECT max(run_id) FROM labels), 0) > "
        "coalesce((SELECT max(run_id) FROM scores WHERE metric = 'label_issue'), 0)"
    )
    return bool(newer.column(0)[0].as_py())


def quality_todo(model: str, rescore: bool) -> Query:
    """(item_id, vector) of kept items with a `model` vector and, unless `rescore`, no
    `quality` score yet, in item_id order."""
    skip = (
        ""
        if rescore
        else "ANTI JOIN (SELECT item_id FROM scores WHERE metric = 'quality') s USING (item_id) "
    )
    return Query(
        f"SELECT e.item_id, e.vector FROM embeddings e ANTI JOIN {EXCLUDED} x USING (item_id) "
        f"{skip}WHERE e.model = $m ORDER BY e.item_id",
        {"m": model},
    )
