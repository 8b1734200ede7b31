"""The queries behind `thresher report`: small aggregates and bounded samples only, so
a report of a 10M-item store reads no more than a few thousand rows into memory."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from thresher.storage import queries
from thresher.storage.store import Store

MAP_POINTS = 3000  # items drawn on the 2-D map
EXAMPLES = 4  # duplicate pairs shown per method
HISTOGRAM_BINS = 40


def runs(store: Store) -> list[dict[str, Any]]:
    """Every run with its wall seconds, oldest first."""
    return queries.runs(store).to_pylist()


def funnel(store: Store) -> list[dict[str, Any]]:
    """Rows in / kept / dropped / rejected per stage, summed over runs, in pipeline order
    (the order stages first ran); selections are not a funnel step (see composition)."""
    return store.query(
        "SELECT stage, sum(rows_in) AS rows_in, sum(rows_kept) AS kept, "
        "sum(rows_dropped) AS dropped, sum(rows_rejected) AS rejected "
        "FROM stages WHERE stage NOT IN ('select', 'publish', 'learn', 'label') "
        "AND run_id IN (SELECT run_id FROM runs WHERE flow <> 'curate') "
        "GROUP BY stage ORDER BY min(run_id), stage"
    ).to_pylist()


def rejects(store: Store) -> list[dict[str, Any]]:
    return store.query(
        "SELECT reason, count(*) AS n FROM rejects GROUP BY reason ORDER BY n DESC, reason LIMIT 20"
    ).to_pylist()


def filtered(store: Store) -> list[dict[str, Any]]:
    """Items the filter dropped, per rule (the reason up to its first colon)."""
    return store.query(
        "SELECT split_part(reason, ':', 1) AS rule, count(*) AS n FROM filtered "
        "GROUP BY rule ORDER BY n DESC, rule LIMIT 20"
    ).to_pylist()


def duplicates(store: Store) -> list[dict[str, Any]]:
    return store.query(
        "SELECT method, count(*) AS n, avg(similarity) AS mean_similarity FROM duplicates "
        "GROUP BY method ORDER BY n DESC"
    ).to_pylist()


def duplicate_examples(store: Store, text_column: str | None) -> list[dict[str, Any]]:
    """A few (dropped, kept) text pairs per method with their similarity, seeded."""
    if text_column is None:
        return []
    col = queries.ident(text_column)
    return store.query(
        f"WITH picked AS (SELECT method, item_id, kept_id, similarity, "
        f"row_number() OVER (PARTITION BY method ORDER BY hash(item_id), item_id) AS k "
        f"FROM duplicates) SELECT p.method, p.similarity, d.{col} AS dropped, "
        f"k.{col} AS kept FROM picked p JOIN items d ON d.item_id = p.item_id "
        f"JOIN items k ON k.item_id = p.kept_id WHERE p.k <= {EXAMPLES} "
        "ORDER BY p.method, p.k"
    ).to_pylist()


def score_histograms(store: Store) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """metric -> (counts, bin edges) over each item's latest value, binned in DuckDB."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    ranges = store.query(
        "SELECT metric, min(value) AS lo, max(value) AS hi FROM scores "
        "WHERE isfinite(value) GROUP BY metric ORDER BY metric"
    ).to_pylist()
    for r in ranges:
        lo, hi = float(r["lo"]), float(r["hi"])
        width = (hi - lo) / HISTOGRAM_BINS or 1.0
        rows = store.query(
            "SELECT least(floor((v - $lo) / $w), $last)::INTEGER AS b, count(*) AS n FROM "
            "(SELECT arg_max(value, run_id) AS v FROM scores WHERE metric = $m "
            "AND isfinite(value) GROUP BY item_id) GROUP BY b ORDER BY b",
            {"lo": lo, "w": width, "last": HISTOGRAM_BINS - 1, "m": r["metric"]},
        ).to_pylist()
        counts = np.zeros(HISTOGRAM_BINS, np.int64)
        for row in rows:
            counts[row["b"]] = row["n"]
        out[r["metric"]] = (counts, lo + width * np.arange(HISTOGRAM_BINS + 1))
    return out


def map_sample(store: Store, selection: str | None) -> pa.Table:
    """Up to MAP_POINTS embedded items (a repeatable sample): vector, latest cluster,
    and whether the latest version of `selection` holds them."""
    chosen = (
        "SELECT item_id FROM selections WHERE selection = $s AND run_id = "
        "(SELECT max(run_id) FROM selections WHERE selection = $s)"
        if selection
        else "SELECT NULL::BIGINT AS item_id WHERE false"
    )
    return store.query(
        f"WITH e AS (SELECT item_id, vector FROM embeddings WHERE model = (SELECT min(model) "
        f"FROM embeddings) USING SAMPLE reservoir({MAP_POINTS} ROWS) REPEATABLE (7)), "
        "c AS (SELECT item_id, arg_max(cluster_id, run_id) AS cluster FROM clusters "
        "WHERE item_id IN (SELECT item_id FROM e) GROUP BY item_id) "
        f"SELECT e.item_id, e.vector, c.cluster, s.item_id IS NOT NULL AS selected FROM e "
        f"LEFT JOIN c USING (item_id) LEFT JOIN ({chosen}) s USING (item_id) ORDER BY e.item_id",
        {"s": selection} if selection else None,
    )


def latest_selection(store: Store) -> str | None:
    rows = store.query(
        "SELECT selection FROM selections ORDER BY run_id DESC, selection LIMIT 1"
    ).column(0)
    return rows[0].as_py() if len(rows) else None


def composition(store: Store, selection: str, by: str | None) -> list[dict[str, Any]]:
    """Share of each label (`by`: the label column) or cluster (None) in the pool of kept
    items and in the latest version of `selection`."""
    if by is not None:
        group = f"CAST(i.{queries.ident(by)} AS VARCHAR)"
        source = "items i"
    else:
        group = "CAST(c.cluster AS VARCHAR)"
        source = (
            "items i LEFT JOIN (SELECT item_id, arg_max(cluster_id, run_id) AS cluster "
            "FROM clusters GROUP BY item_id) c USING (item_id)"
        )
    return store.query(
        f"WITH pool AS (SELECT i.item_id, coalesce({group}, '(none)') AS g FROM {source} "
        "ANTI JOIN (SELECT item_id FROM duplicates UNION ALL SELECT item_id FROM filtered) x "
        "USING (item_id)), sel AS (SELECT item_id FROM selections WHERE selection = $s AND "
        "run_id = (SELECT max(run_id) FROM selections WHERE selection = $s)) "
        "SELECT g AS grp, count(*) AS pool, count(sel.item_id) AS selected FROM pool "
        "LEFT JOIN sel USING (item_id) GROUP BY g ORDER BY pool DESC, g LIMIT 30",
        {"s": selection},
    ).to_pylist()


def learning_curves(store: Store) -> list[dict[str, Any]]:
    """The curves `learn` runs recorded: strategy, name and (labels, accuracy) points."""
    rows = store.query(
        "SELECT run_id, config FROM runs WHERE flow = 'learn' ORDER BY run_id"
    ).to_pylist()
    out = []
    for r in rows:
        config = json.loads(r["config"] or "{}")
        if config.get("curve"):
            out.append({"run_id": r["run_id"], **config})
    return out
