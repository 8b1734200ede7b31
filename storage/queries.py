"""Read queries the stages' wiring needs, kept apart from the store's mechanics.

Two kinds: small answers the driver reads (`encoder`, `label_column`, ...),
and `Query` objects that select a stage's input. The wiring never reads the
latter into memory: a Ray task `COPY`s each to a staged Parquet file that the
stage's workers read piece by piece (see `thresher.flows.runtime`). Every
query whose result feeds a decision has an ORDER BY.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from thresher.storage.store import Store

# items no later stage looks at: duplicates found by dedup, and rows dropped by filters
EXCLUDED = "(SELECT item_id FROM duplicates UNION ALL SELECT item_id FROM filtered)"


@dataclass(frozen=True)
class Query:
    """A read-only SELECT over the store's views and named Parquet files, with parameters;
    `user_sql` when it holds SQL a user wrote (a `--where`): it then runs sandboxed, able
    to read the store's tables only (see `Store.read`)."""

    sql: str
    params: dict[str, Any] = field(default_factory=dict)
    user_sql: bool = False


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _files(paths: list[str]) -> str:
    return "read_parquet([" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "])"


def kept_items() -> Query:
    """(item_id) of every item no filter or dedup pass dropped, in item_id order."""
    return Query(f"SELECT item_id FROM items ANTI JOIN {EXCLUDED} x USING (item_id) ORDER BY 1")


def unfiltered_items(text_column: str) -> Query:
    """(item_id, batch_id, text, language, confidence) of every batch the filter stage has
    not seen; language and confidence from `languages`, NULL where langid has not run."""
    return Query(
        f"SELECT i.item_id, i.batch_id, i.{_quote(text_column)} AS text, l.language, "
        "l.confidence FROM items i LEFT JOIN (SELECT item_id, arg_max(language, run_id) AS "
        "language, arg_max(confidence, run_id) AS confidence FROM languages GROUP BY item_id) "
        "l USING (item_id) "
        "WHERE 'batch ' || i.batch_id NOT IN (SELECT key FROM stages WHERE stage = 'filter') "
        "ORDER BY i.batch_id, i.item_id"
    )


def langid_todo(text_column: str) -> Query:
    """(item_id, text) of every item with no `languages` row yet, in item_id order."""
    return Query(
        f"SELECT i.item_id, i.{_quote(text_column)} AS text FROM items i "
        "ANTI JOIN languages l USING (item_id) ORDER BY i.item_id"
    )


def decontam_todo(text_column: str, key: str) -> Query:
    """(item_id, batch_id, text) of every batch not checked against eval set `key` (its
    `stages` rows read "decontaminate", "KEY batch N"), in (batch_id, item_id) order."""
    return Query(
        f"SELECT item_id, batch_id, {_quote(text_column)} AS text FROM items "
        "WHERE $k || ' batch ' || batch_id NOT IN "
        "(SELECT key FROM stages WHERE stage = 'decontaminate') ORDER BY batch_id, item_id",
        {"k": key},
    )


def eval_ngrams(store: Store, fingerprint: str, n: int) -> np.ndarray | None:
    """The saved, sorted n-gram hashes of an eval file; None when never saved."""
    rows = store.query(
        "SELECT hash FROM eval_ngrams WHERE fingerprint = $f AND ngram = $n ORDER BY hash",
        {"f": fingerprint, "n": n},
    )
    return rows.column(0).to_numpy() if rows.num_rows else None


def dedup_todo(method: str, text_column: str | None) -> Query:
    """Items not yet checked by `method` and not already dropped, in keep order
    (batch_id, item_id): item_id, batch_id and, with a column, its text as `text`."""
    text = f", i.{_quote(text_column)} AS text" if text_column else ""
    return Query(
        f"SELECT i.item_id, i.batch_id{text} FROM items i "
        "ANTI JOIN (SELECT item_id FROM dedup_checked WHERE method = $m) c USING (item_id) "
        f"ANTI JOIN {EXCLUDED} d USING (item_id) ORDER BY i.batch_id, i.item_id",
        {"m": method},
    )


def dedup_kept_ids(method: str) -> Query:
    """(item_id) of items `method` checked in earlier runs and kept, in keep order."""
    return Query(
        "SELECT i.item_id FROM items i "
        "JOIN (SELECT item_id FROM dedup_checked WHERE method = $m) c USING (item_id) "
        f"ANTI JOIN {EXCLUDED} d USING (item_id) ORDER BY i.batch_id, i.item_id",
        {"m": method},
    )


def fuzzy_kept_signatures() -> Query:
    """(item_id, signature) of items the fuzzy pass kept before, in keep order."""
    return Query(
        "SELECT i.item_id, m.signature FROM items i "
        "JOIN (SELECT item_id FROM dedup_checked WHERE method = 'fuzzy') c USING (item_id) "
        "JOIN minhashes m USING (item_id) "
        f"ANTI JOIN {EXCLUDED} d USING (item_id) ORDER BY i.batch_id, i.item_id"
    )


def exact_duplicates(todo: list[str], checked: list[str], run_id: int) -> Query:
    """`duplicates` rows for the new items of `todo` (item_id, batch_id) whose hash in
    `checked` (item_id, key) equals that of an item kept earlier or of a new item before
    them in keep order; each points at the first of its group."""
    return Query(
        "WITH pool AS ("
        "  SELECT item_id, batch_id, key, 0 AS new FROM items "
        "  JOIN (SELECT item_id, key FROM dedup_checked WHERE method = 'exact') USING (item_id) "
        f"  ANTI JOIN {EXCLUDED} d USING (item_id) "
        "  UNION ALL "
        f"  SELECT t.item_id, t.batch_id, c.key, 1 AS new FROM {_files(todo)} t "
        f"  JOIN {_files(checked)} c USING (item_id)"
        "), ranked AS ("
        "  SELECT item_id, new, first_value(item_id) OVER w AS kept_id, "
        "  row_number() OVER w AS rank FROM pool "
        "  WINDOW w AS (PARTITION BY key ORDER BY new, batch_id, item_id)"
        ") SELECT item_id, kept_id, 'exact' AS method, 1.0::DOUBLE AS similarity, "
        "$run::BIGINT AS run_id FROM ranked WHERE rank > 1 AND new = 1 ORDER BY item_id",
        {"run": run_id},
    )


def candidate_texts(pair_files: list[str], text_column: str) -> Query:
    """(part, item_id, text) of every item of the candidate pairs in `pair_files` (part,
    id_a, id_b), once per verification part that needs it: the store's texts are scanned
    once for all the parts, not once per part. Unordered: written partitioned by part
    (`runtime.stage_parts`); sorting the texts failed at 10M items."""
    pairs = _files(pair_files)
    return Query(
        "SELECT n.part, n.item_id, i." + _quote(text_column) + " AS text FROM ("
        f"  SELECT DISTINCT part, item_id FROM ("
        f"    SELECT part, id_a AS item_id FROM {pairs} UNION ALL "
        f"    SELECT part, id_b AS item_id FROM {pairs})"
        ") n JOIN items i USING (item_id)"
    )


def embed_todo(model: str, text_column: str) -> Query:
    """(item_id, text) of kept items with no vector for `model` yet, in item_id order."""
    return Query(
        f"SELECT i.item_id, i.{_quote(text_column)} AS text FROM items i ANTI JOIN "
        "(SELECT item_id FROM embeddings WHERE model = $m) e USING (item_id) "
        f"ANTI JOIN {EXCLUDED} x USING (item_id) ORDER BY i.item_id",
        {"m": model},
    )


def kept_vectors(model: str, unscored: str | None = None, ids_only: bool = False) -> Query:
    """(item_id, vector) of kept items with a `model` vector, in item_id order; with
    `unscored`, only those with no score of that metric yet; `ids_only`: no vector."""
    skip = (
        "ANTI JOIN (SELECT item_id FROM scores WHERE metric = $metric) s USING (item_id) "
        if unscored
        else ""
    )
    params: dict[str, Any] = {"m": model}
    if unscored:
        params["metric"] = unscored
    return Query(
        f"SELECT e.item_id{'' if ids_only else ', e.vector'} FROM embeddings e "
        f"ANTI JOIN {EXCLUDED} x USING (item_id) {skip}"
        "WHERE e.model = $m ORDER BY e.item_id",
        params,
    )


def labelled_vectors(model: str, label_column: str | None) -> Query:
    """(item_id, vector, label) of kept, labelled items with a `model` vector, in item_id
    order; labels from `thresher label` (the latest wins), else the ingested column."""
    column = f"CAST(i.{_quote(label_column)} AS VARCHAR)" if label_column else "NULL"
    return Query(
        "SELECT e.item_id, e.vector, coalesce(l.label, "
        f"{column}) AS label FROM embeddings e JOIN items i USING (item_id) "
        "LEFT JOIN (SELECT item_id, arg_max(label, run_id) AS label FROM labels "
        "GROUP BY item_id) l USING (item_id) "
        f"ANTI JOIN {EXCLUDED} x USING (item_id) "
        f"WHERE e.model = $m AND coalesce(l.label, {column}) IS NOT NULL ORDER BY e.item_id",
        {"m": model},
    )


def probe_pool(model: str, label_column: str | None, metric: str) -> Query:
    """(item_id, vector, label, todo) of kept items with a `model` vector, in item_id order:
    `label` as in `labelled_vectors` (NULL when unlabelled), `todo` true where the item has
    no `metric` score yet. One staged file both trains the probe and gets scored."""
    column = f"CAST(i.{_quote(label_column)} AS VARCHAR)" if label_column else "NULL"
    return Query(
        f"SELECT e.item_id, e.vector, coalesce(l.label, {column}) AS label, "
        "s.item_id IS NULL AS todo FROM embeddings e JOIN items i USING (item_id) "
        "LEFT JOIN (SELECT item_id, arg_max(label, run_id) AS label FROM labels "
        "GROUP BY item_id) l USING (item_id) "
        "LEFT JOIN (SELECT DISTINCT item_id FROM scores WHERE metric = $metric) s "
        f"USING (item_id) ANTI JOIN {EXCLUDED} x USING (item_id) "
        "WHERE e.model = $m ORDER BY e.item_id",
        {"m": model, "metric": metric},
    )


def selection_pool(
    where: str | None,
    *,
    score: bool,
    group: str | None,
    label_column: str | None,
    model: str | None,
    keep_contaminated: bool = False,
    tokens: bool = False,
    label_issue: bool = False,
) -> Query:
    """Candidates of a selection, in item_id order: kept items matching `where` (a
    condition on the items' columns, checked read-only before), with their latest
    `prototype_distance` as `score`, their `group` (latest cluster, or label as text:
    `thresher label` first, else the ingested column, 'None' when unlabelled), and with a
    `model` their vector, with `tokens` their token count, with `label_issue` that
    score; NULL where a value is missing.
    Items in `contamination` are left out unless `keep_contaminated`.

    One hash aggregate over a UNION ALL of the tables (each row tagged with its source),
    not a join per table: DuckDB's join hash tables in one pipeline do not see each
    other's memory, and at 10M items the joined form failed at a 1 GB limit (and at
    700 MB, yet passed at 500 MB and 2 GB); the aggregate spills."""
    cond = f"WHERE (\n{where}\n)" if where else ""  # a trailing -- comment ends at its line
    label = f"CAST({_quote(label_column)} AS VARCHAR)" if label_column else "NULL"
    # one branch per source: (src, its value's column, the value, its run_id, FROM ...);
    # a column's type is its source table's (the other branches give untyped NULLs)
    gone = ["duplicates", "filtered"] + ([] if keep_contaminated else ["contamination"])
    branches = [(0, "s", label if group == "label" else "NULL", "NULL", f"items {cond}")]
    branches += [(1, "s", "NULL", "NULL", table) for table in gone]
    cols = ["item_id"]
    if score:
        metric = "scores WHERE metric = 'prototype_distance'"
        branches.append((2, "v", "value", "run_id", metric))
        cols.append("arg_max(v, r) FILTER (WHERE src = 2) AS score")
    if group == "cluster":
        branches.append((3, "c", "cluster_id", "run_id", "clusters"))
        cols.append("arg_max(c, r) FILTER (WHERE src = 3) AS grp")
    elif group == "label":
        branches.append((4, "s", "CAST(label AS VARCHAR)", "run_id", "labels"))
        cols.append(
            "coalesce(arg_max(s, r) FILTER (WHERE src = 4), "
            "any_value(s) FILTER (WHERE src = 0), 'None') AS grp"
        )
    if label_issue:
        branches.append((5, "v", "value", "run_id", "scores WHERE metric = 'label_issue'"))
        cols.append("arg_max(v, r) FILTER (WHERE src = 5) AS label_issue")
    if tokens:
        branches.append((6, "t", "tokens", "run_id", "tokens"))
        cols.append("arg_max(t, r) FILTER (WHERE src = 6) AS tokens")
    union = " UNION ALL ".join(
        f"SELECT item_id, {src} AS src, "
        + ", ".join(f"{value if c == col else 'NULL'} AS {c}" for c in "vcts")
        + f", {run} AS r FROM {source}"
        for src, col, value, run, source in branches
    )
    pool = (
        f"SELECT {', '.join(cols)} FROM ({union}) "
        "GROUP BY item_id HAVING bool_or(src = 0) AND NOT bool_or(src = 1)"
    )
    params: dict[str, Any] = {}
    if model:  # the vectors joined once, after the aggregate (kcenter's pools are small)
        pool = (
            f"SELECT p.*, e.vector FROM ({pool}) p LEFT JOIN (SELECT item_id, vector "
            "FROM embeddings WHERE model = $m) e USING (item_id)"
        )
        params["m"] = model
    return Query(f"{pool} ORDER BY item_id", params, user_sql=bool(where))


def latest_selection(name: str) -> Query:
    """(item_id) of the latest version of selection `name`, in item_id order."""
    return Query(
        "SELECT item_id FROM selections WHERE selection = $n AND run_id = "
        "(SELECT max(run_id) FROM selections WHERE selection = $n) ORDER BY item_id",
        {"n": name},
    )


def selection_items(name: str, run_id: int) -> Query:
    """Every column of the items of one version of selection `name`, plus `weight`."""
    return Query(
        "SELECT i.*, s.weight FROM selections s JOIN items i USING (item_id) "
        "WHERE s.selection = $n AND s.run_id = $r ORDER BY i.item_id",
        {"n": name, "r": run_id},
    )


def selection_size(store: Store, name: str, run_id: int) -> int:
    rows = store.query(
        "SELECT count(*) FROM selections WHERE selection = $n AND run_id = $r",
        {"n": name, "r": run_id},
    )
    return int(rows.column(0)[0].as_py())


def latest_selection_run(store: Store, name: str) -> int | None:
    rows = store.query(
        "SELECT max(run_id) FROM selections WHERE selection = $n", {"n": name}
    ).column(0)
    return rows[0].as_py()


def has_scores(store: Store, metric: str) -> bool:
    """Whether any item has a `metric` score."""
    rows = store.query("SELECT count(*) FROM scores WHERE metric = $m LIMIT 1", {"m": metric})
    return bool(rows.column(0)[0].as_py())


def worst_label_issues(store: Store, n: int) -> np.ndarray:
    """Ids of the `n` kept items with the largest latest `label_issue` (ties by item_id)."""
    rows = store.query(
        "SELECT item_id FROM (SELECT item_id, arg_max(value, run_id) AS v FROM scores "
        f"WHERE metric = 'label_issue' GROUP BY item_id) ANTI JOIN {EXCLUDED} x "
        "USING (item_id) ORDER BY v DESC, item_id LIMIT $n",
        {"n": n},
    )
    return rows.column(0).to_numpy()


def has_labels(store: Store) -> bool:
    """Whether items have labels: one ingested label column, or `thresher label` files."""
    given = store.query("SELECT count(*) FROM labels").column(0)[0].as_py()
    return label_column(store) is not None or bool(given)


def runs(store: Store) -> pa.Table:
    """The runs with their accounting and wall seconds, for `thresher runs`."""
    return store.query(
        "SELECT run_id, flow, status, started_at::TIMESTAMP(0) AS started, "
        "round(epoch(finished_at - started_at), 2) AS seconds, rows_in, rows_kept, "
        "rows_dropped, rows_rejected, message FROM runs ORDER BY run_id"
    )


def stages(store: Store) -> pa.Table:
    """Every run's stages with their accounting and wall seconds, for `thresher runs
    --stages`."""
    return store.query(
        "SELECT s.run_id, r.flow, s.stage, s.key, s.status, round(s.seconds, 2) AS seconds, "
        "s.rows_in, s.rows_kept, s.rows_dropped, s.rows_rejected FROM stages s "
        "JOIN runs r USING (run_id) ORDER BY s.run_id, s.rowid"
    )


def selection_names(store: Store) -> list[str]:
    names = store.query("SELECT DISTINCT selection FROM selections ORDER BY 1").column(0)
    return [str(n) for n in names.to_pylist()]


def latest_selection_weights(store: Store, name: str) -> dict[int, float]:
    """item_id -> weight of the latest version of selection `name`."""
    rows = store.query(
        "SELECT item_id, weight FROM selections WHERE selection = $n AND run_id = "
        "(SELECT max(run_id) FROM selections WHERE selection = $n) ORDER BY item_id",
        {"n": name},
    )
    return dict(zip(rows.column(0).to_pylist(), rows.column(1).to_pylist(), strict=True))


def latest_publication(store: Store, name: str) -> dict[str, Any] | None:
    """version, path, rows, selection_run of the latest publication of `name`."""
    rows = store.query(
        "SELECT version, path, rows, selection_run FROM publications WHERE name = $n "
        "ORDER BY version DESC LIMIT 1",
        {"n": name},
    ).to_pylist()
    return rows[0] if rows else None


def latest_centroids(store: Store, model: str) -> str | None:
    """The store-relative path of the latest centroids saved for `model`."""
    rows = store.query(
        "SELECT path FROM centroids WHERE model = $m ORDER BY run_id DESC LIMIT 1", {"m": model}
    ).to_pylist()
    return rows[0]["path"] if rows else None


def excluded_ids(store: Store) -> np.ndarray:
    """Ids of every item a filter or a dedup pass dropped."""
    return store.query(f"SELECT DISTINCT item_id FROM {EXCLUDED}").column(0).to_numpy()


def item_ids(store: Store) -> np.ndarray:
    return store.query("SELECT item_id FROM items ORDER BY item_id").column(0).to_numpy()


def count(store: Store, query: Query) -> int:
    """Rows of a staging query, counted by DuckDB (nothing is read into this process)."""
    rows = store.query(f"SELECT count(*) FROM ({query.sql})", query.params or None)
    return int(rows.column(0)[0].as_py())


def class_count(store: Store, model: str) -> int:
    """How many distinct labels the kept items with a `model` vector have."""
    q = labelled_vectors(model, label_column(store))
    rows = store.query(f"SELECT count(DISTINCT label) FROM ({q.sql})", q.params)
    return int(rows.column(0)[0].as_py())


def _by_ids(store: Store, ids: np.ndarray, select: str) -> pa.Table:
    """`select` over `wanted w` (item_id, pos) joined to the store, in the order of `ids`."""
    wanted = pa.table({"item_id": pa.array(ids, pa.int64()), "pos": np.arange(len(ids))})
    return store.query(f"{select} ORDER BY w.pos", tables={"wanted": wanted})


def texts(store: Store, ids: np.ndarray, text_column: str) -> list[str | None]:
    """The text of each of `ids`, in their order (None where an id is unknown)."""
    return item_columns(store, ids, [text_column]).column(0).to_pylist()


def item_columns(store: Store, ids: np.ndarray, columns: Sequence[str]) -> pa.Table:
    """`columns` of the items `ids`, in their order (nulls where an id is unknown)."""
    names = ", ".join(f"i.{ident(c)}" for c in columns)
    return _by_ids(store, ids, f"SELECT {names} FROM wanted w LEFT JOIN items i USING (item_id)")


def items_with_user_id(store: Store, id_column: str, value: str) -> list[int]:
    """The item_ids (at most 2) whose `id_column` reads `value` as text (`--like-id`)."""
    rows = store.query(
        f"SELECT item_id FROM items WHERE CAST({ident(id_column)} AS VARCHAR) = $v "
        "ORDER BY item_id LIMIT 2",
        {"v": value},
    )
    return [int(v) for v in rows.column(0).to_pylist()]


def id_column(store: Store) -> str | None:
    """The one id column named at ingest (--id-column), if there is exactly one."""
    return _one_role(store, "id_column")


def _one_role(store: Store, role: str) -> str | None:
    cols = store.query(
        f"SELECT DISTINCT {role} FROM sources WHERE {role} IS NOT NULL ORDER BY 1"
    ).column(0)
    return cols[0].as_py() if len(cols) == 1 else None


def ident(name: str) -> str:
    """A column name as a quoted SQL identifier (any character, `"` included)."""
    return '"' + name.replace('"', '""') + '"'


def encoder(store: Store, model: str) -> dict[str, Any] | None:
    """The encoder settings a model's vectors were made with; None for ingested vectors."""
    rows = store.query("SELECT encoder FROM models WHERE model = $m", {"m": model})
    return json.loads(rows.column(0)[0].as_py()) if rows.num_rows else None


def label_column(store: Store) -> str | None:
    """The one label column named at ingest, if there is exactly one."""
    return _one_role(store, "label_column")


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
