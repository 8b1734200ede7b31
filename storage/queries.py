"""Read queries the stages' wiring needs, kept apart from the store's mechanics."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from thresher.storage.store import Store

# items no later stage looks at: duplicates found by dedup, and rows dropped by filters
EXCLUDED = "(SELECT item_id FROM duplicates UNION ALL SELECT item_id FROM filtered)"


def _by_ids(store: Store, ids: np.ndarray, select: str) -> pa.Table:
    """`select` over `wanted w` (item_id, pos) joined to the store, in the order of `ids`."""
    wanted = pa.table({"item_id": pa.array(ids, pa.int64()), "pos": np.arange(len(ids))})
    return store.query(f"{select} ORDER BY w.pos", tables={"wanted": wanted})


def texts(store: Store, ids: np.ndarray, text_column: str) -> list[str | None]:
    """The text of each of `ids`, in their order (None where an id is unknown)."""
    rows = _by_ids(
        store, ids, f'SELECT i."{text_column}" FROM wanted w LEFT JOIN items i USING (item_id)'
    )
    return rows.column(0).to_pylist()


def items_without_embedding(store: Store, model: str, text_column: str) -> pa.Table:
    """(item_id, text) of items with no vector for `model` yet, in item_id order."""
    return store.query(
        f'SELECT i.item_id, i."{text_column}" FROM items i ANTI JOIN '
        "(SELECT item_id FROM embeddings WHERE model = $m) e USING (item_id) "
        f"ANTI JOIN {EXCLUDED} x USING (item_id) ORDER BY i.item_id",
        {"m": model},
    )


def encoder(store: Store, model: str) -> dict[str, Any] | None:
    """The encoder settings a model's vectors were made with; None for ingested vectors."""
    rows = store.query("SELECT encoder FROM models WHERE model = $m", {"m": model})
    return json.loads(rows.column(0)[0].as_py()) if rows.num_rows else None


def dedup_candidates(store: Store, method: str, text_column: str | None) -> pa.Table:
    """Items not yet checked by `method` and not already a duplicate, in keep order
    (batch_id, item_id): item_id, batch_id and, with a column, its text as `text`."""
    text = f', i."{text_column}" AS text' if text_column else ""
    return store.query(
        f"SELECT i.item_id, i.batch_id{text} FROM items i "
        "ANTI JOIN (SELECT item_id FROM dedup_checked WHERE method = $m) c USING (item_id) "
        f"ANTI JOIN {EXCLUDED} d USING (item_id) ORDER BY i.batch_id, i.item_id",
        {"m": method},
    )


def dedup_kept(store: Store, method: str) -> pa.Table:
    """Items checked by `method` in earlier runs and still kept: item_id, batch_id, key."""
    return store.query(
        "SELECT i.item_id, i.batch_id, c.key FROM items i JOIN "
        "(SELECT item_id, key FROM dedup_checked WHERE method = $m) c USING (item_id) "
        f"ANTI JOIN {EXCLUDED} d USING (item_id) ORDER BY i.batch_id, i.item_id",
        {"m": method},
    )


def minhash_signatures(store: Store, ids: np.ndarray) -> np.ndarray:
    """Saved signatures (n, num_perm) uint32 of `ids`, in their order."""
    rows = _by_ids(store, ids, "SELECT m.signature FROM wanted w JOIN minhashes m USING (item_id)")
    if rows.num_rows != len(ids):
        raise ValueError(f"{len(ids) - rows.num_rows} kept items have no saved signature")
    flat = rows.column(0).combine_chunks().flatten().to_numpy()
    return flat.reshape(len(ids), -1).astype(np.uint32) if len(ids) else flat


def label_column(store: Store) -> str | None:
    """The one label column named at ingest, if there is exactly one."""
    cols = (
        store.query(
            "SELECT DISTINCT label_column FROM sources WHERE label_column IS NOT NULL ORDER BY 1"
        )
        .column(0)
        .to_pylist()
    )
    return cols[0] if len(cols) == 1 else None


def labels(store: Store, ids: np.ndarray) -> list[str | None] | None:
    """Each item's label as text, None where unlabelled: from `thresher label` files (the
    latest wins), else the ingested label column. None if the store has neither."""
    column = label_column(store)
    given = store.query("SELECT item_id, arg_max(label, run_id) FROM labels GROUP BY item_id")
    if column is None and not given.num_rows:
        return None
    base = texts(store, ids, column) if column else [None] * len(ids)
    extra = dict(zip(given.column(0).to_pylist(), given.column(1).to_pylist(), strict=True))
    return [
        extra.get(i, None if v is None else str(v)) for i, v in zip(ids.tolist(), base, strict=True)
    ]
