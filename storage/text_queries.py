"""Queries of the per-item text stages: PII spans (`thresher pii`) and token counts
(`thresher tokens`). Like `queries`, stage inputs are `Query` objects staged by a Ray
task; every query whose result feeds a decision has an ORDER BY."""

from __future__ import annotations

from thresher.storage.queries import EXCLUDED, Query, ident
from thresher.storage.store import Store

# a row's spans as list<struct<kind, start, end>>: [] when scanned and clean, NULL when
# `thresher pii` has not scanned the item
_SPANS = "CASE WHEN c.item_id IS NULL THEN NULL ELSE coalesce(p.spans, []) END AS pii_spans"
_SPANS_JOIN = (
    "LEFT JOIN (SELECT DISTINCT item_id FROM pii_checked) c USING (item_id) "
    "LEFT JOIN (SELECT item_id, list({'kind': kind, 'start': start, 'end': \"end\"} "
    "ORDER BY start) AS spans FROM pii GROUP BY item_id) p USING (item_id)"
)


def pii_todo(text_column: str) -> Query:
    """(item_id, text) of kept items `thresher pii` has not scanned, in item_id order."""
    return Query(
        f"SELECT i.item_id, i.{ident(text_column)} AS text FROM items i "
        "ANTI JOIN pii_checked c USING (item_id) "
        f"ANTI JOIN {EXCLUDED} x USING (item_id) ORDER BY i.item_id"
    )


def pii_scanned(store: Store) -> bool:
    """Whether `thresher pii` has scanned any item of the store."""
    rows = store.query("SELECT count(*) FROM (SELECT item_id FROM pii_checked LIMIT 1)")
    return bool(rows.column(0)[0].as_py())


def selection_items_with_spans(name: str, run_id: int) -> Query:
    """Every column of one version of selection `name`, `weight`, and `pii_spans`."""
    return Query(
        f"SELECT i.*, s.weight, {_SPANS} FROM selections s JOIN items i USING (item_id) "
        f"{_SPANS_JOIN} WHERE s.selection = $n AND s.run_id = $r ORDER BY i.item_id",
        {"n": name, "r": run_id},
    )


def unscanned_in_selection(store: Store, name: str, run_id: int) -> int:
    """Items of one version of selection `name` that `thresher pii` has not scanned."""
    rows = store.query(
        "SELECT count(*) FROM selections s ANTI JOIN pii_checked c USING (item_id) "
        "WHERE s.selection = $n AND s.run_id = $r",
        {"n": name, "r": run_id},
    )
    return int(rows.column(0)[0].as_py())


def tokens_todo(text_column: str) -> Query:
    """(item_id, text) of kept items with no token count yet, in item_id order."""
    return Query(
        f"SELECT i.item_id, i.{ident(text_column)} AS text FROM items i "
        "ANTI JOIN tokens t USING (item_id) "
        f"ANTI JOIN {EXCLUDED} x USING (item_id) ORDER BY i.item_id"
    )


def token_tokenizers(store: Store) -> list[str]:
    """The tokenizers earlier `thresher tokens` runs counted with."""
    rows = store.query(
        "SELECT DISTINCT config->>'tokenizer' FROM runs WHERE flow = 'tokens' "
        "AND status = 'succeeded' ORDER BY 1"
    )
    return [str(v) for v in rows.column(0).to_pylist()]


def kept_tokens(store: Store) -> tuple[int, int, int]:
    """(kept items, kept items with a token count, their tokens in all)."""
    rows = store.query(
        "SELECT count(*), count(t.tokens), coalesce(sum(t.tokens), 0) FROM items i "
        f"ANTI JOIN {EXCLUDED} x USING (item_id) LEFT JOIN tokens t USING (item_id)"
    ).to_pylist()[0]
    return tuple(int(v) for v in rows.values())  # type: ignore[return-value]
