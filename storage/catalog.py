"""The DuckDB catalog: runs, stage records, the file registry, and one view per table.

DuckDB lets one process write a database file at a time, and a writer locks
readers in other processes out. So the catalog holds only small tables (runs,
stages, files, sources); bulk data stays in Parquet. Every connection here is
short-lived, and opening one retries briefly while another process holds the
lock, so a long flow never locks `thresher sql` out for more than one commit.

Views are built from the *registered* file list, never from a glob: a Parquet
file becomes visible only when the transaction that registers it commits,
which makes that commit the single atomic point of every write.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa

from thresher.storage.errors import ThresherError

log = logging.getLogger(__name__)

CATALOG_FILE = "catalog.duckdb"
FORMAT_VERSION = "1"

TABLES: dict[str, str] = {
    "items": "item_id BIGINT, batch_id BIGINT",
    "rejects": "source VARCHAR, row BIGINT, reason VARCHAR, raw VARCHAR, run_id BIGINT",
    "embeddings": "item_id BIGINT, model VARCHAR, vector FLOAT[]",
    "duplicates": (
        "item_id BIGINT, kept_id BIGINT, method VARCHAR, similarity DOUBLE, run_id BIGINT"
    ),
    "clusters": "item_id BIGINT, cluster_id INTEGER, distance DOUBLE, run_id BIGINT",
    "scores": "item_id BIGINT, metric VARCHAR, value DOUBLE, run_id BIGINT",
    "selections": "selection VARCHAR, item_id BIGINT, weight DOUBLE, run_id BIGINT",
    "minhashes": "item_id BIGINT, signature UINTEGER[], run_id BIGINT",
    "dedup_checked": "item_id BIGINT, method VARCHAR, key BIGINT, run_id BIGINT",
    "labels": "item_id BIGINT, label VARCHAR, run_id BIGINT",
    "filtered": "item_id BIGINT, reason VARCHAR, run_id BIGINT",
}

_ARROW_TYPES: dict[str, pa.DataType] = {
    "BIGINT": pa.int64(),
    "INTEGER": pa.int32(),
    "DOUBLE": pa.float64(),
    "VARCHAR": pa.string(),
    "FLOAT[]": pa.list_(pa.float32()),
    "UINTEGER[]": pa.list_(pa.uint32()),
}


def arrow_schema(table: str) -> pa.Schema:
    """The Arrow schema of a data table, from `TABLES` (list columns may also be written as
    fixed-size lists of the same value type)."""
    if table not in TABLES:
        raise ThresherError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
    fields = []
    for col in TABLES[table].split(", "):
        name, sql_type = col.split(" ", 1)
        fields.append(pa.field(name, _ARROW_TYPES[sql_type]))
    return pa.schema(fields)


def conforms(actual: pa.DataType, expected: pa.DataType) -> bool:
    if pa.types.is_list(expected) and pa.types.is_fixed_size_list(actual):
        return actual.value_type == expected.value_type
    return actual == expected


_DDL = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS runs (
    run_id BIGINT PRIMARY KEY, flow VARCHAR NOT NULL, status VARCHAR NOT NULL,
    config JSON, started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ,
    rows_in BIGINT, rows_kept BIGINT, rows_dropped BIGINT, rows_rejected BIGINT,
    message VARCHAR
);
CREATE TABLE IF NOT EXISTS stages (
    run_id BIGINT, stage VARCHAR, key VARCHAR, status VARCHAR,
    rows_in BIGINT, rows_kept BIGINT, rows_dropped BIGINT, rows_rejected BIGINT,
    finished_at TIMESTAMPTZ, PRIMARY KEY (run_id, stage, key)
);
CREATE TABLE IF NOT EXISTS files (
    table_name VARCHAR, path VARCHAR PRIMARY KEY, rows BIGINT, run_id BIGINT, batch_id BIGINT
);
CREATE TABLE IF NOT EXISTS models (
    model VARCHAR PRIMARY KEY, encoder JSON, dim INTEGER, run_id BIGINT
);
CREATE TABLE IF NOT EXISTS centroids (
    model VARCHAR, run_id BIGINT, k INTEGER, path VARCHAR, seed BIGINT,
    PRIMARY KEY (model, run_id)
);
CREATE TABLE IF NOT EXISTS indexes (
    model VARCHAR, version INTEGER, rotation VARCHAR, rotation_file VARCHAR, dims VARCHAR,
    parts VARCHAR, shortlist_dim INTEGER, shortlist_file VARCHAR, kind VARCHAR, codes VARCHAR,
    n_items BIGINT, run_id BIGINT, created_at TIMESTAMPTZ, PRIMARY KEY (model, version)
);
CREATE TABLE IF NOT EXISTS publications (
    name VARCHAR, version BIGINT, path VARCHAR, rows BIGINT, selection_run BIGINT,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS sources (
    fingerprint VARCHAR PRIMARY KEY, path VARCHAR, format VARCHAR, batch_id BIGINT,
    run_id BIGINT, rows_in BIGINT, rows_kept BIGINT, rows_rejected BIGINT,
    id_column VARCHAR, text_column VARCHAR, label_column VARCHAR, embedding_column VARCHAR,
    embedding_dim INTEGER, ingested_at TIMESTAMPTZ
);
"""

LOCK_TIMEOUT_S = 30.0


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text or "conflicting" in text


@contextlib.contextmanager
def connect(
    path: Path, *, read_only: bool, timeout_s: float = LOCK_TIMEOUT_S
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the catalog, retrying while another process holds its lock."""
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.Error as exc:
            if not _is_lock_error(exc) or time.monotonic() > deadline:
                if _is_lock_error(exc):
                    raise ThresherError(
                        f"catalog {path} is locked by another process for over {timeout_s:.0f}s"
                    ) from exc
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
    try:
        yield con
    finally:
        con.close()


def create(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(_DDL)
    # added later: a store made by an older thresher gains them on its next write
    con.execute("ALTER TABLE sources ADD COLUMN IF NOT EXISTS stamp VARCHAR")
    con.execute(
        "INSERT INTO meta VALUES ('format_version', ?) ON CONFLICT DO NOTHING", [FORMAT_VERSION]
    )


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _file_list(paths: Sequence[str]) -> str:
    return "[" + ", ".join(_literal(p) for p in paths) + "]"


def view_sql(
    table: str,
    files: Sequence[str],
    embedding_sources: Sequence[tuple[str, Sequence[str]]] = (),
) -> str:
    """The SELECT behind one table's view.

    `files` are absolute paths of the table's registered Parquet files. For
    `embeddings`, `embedding_sources` adds (column, items files) pairs: vectors
    ingested through `--embedding-column` are read from the items files where
    they already lie, instead of being written twice.
    """
    empty = f"SELECT * FROM (SELECT {_typed_nulls(TABLES[table])}) WHERE false"
    parts = (
        [f"SELECT * FROM read_parquet({_file_list(files)}, union_by_name=true)"] if files else []
    )
    if table == "embeddings":
        parts = [
            f"SELECT item_id, model, CAST(vector AS FLOAT[]) AS vector FROM ({p})" for p in parts
        ]
        for column, item_files in embedding_sources:
            if not item_files:  # sources that kept no row
                continue
            parts.append(
                f"SELECT item_id, {_literal(column)} AS model, "
                f"CAST({_quote(column)} AS FLOAT[]) AS vector "
                f"FROM read_parquet({_file_list(item_files)}, union_by_name=true)"
            )
    if not parts:
        return empty
    return " UNION ALL BY NAME ".join(parts) if len(parts) > 1 else parts[0]


def _typed_nulls(columns: str) -> str:
    out = []
    for col in columns.split(", "):
        name, sql_type = col.split(" ", 1)
        out.append(f"CAST(NULL AS {sql_type}) AS {name}")
    return ", ".join(out)


def create_views(con: duckdb.DuckDBPyConnection, root: Path, *, temporary: bool = False) -> None:
    """(Re)create one view per table over the registered files under `root`."""
    rows = con.execute(
        "SELECT table_name, path, batch_id FROM files ORDER BY table_name, path"
    ).fetchall()
    by_table: dict[str, list[str]] = {t: [] for t in TABLES}
    items_by_batch: dict[int, list[str]] = {}
    for table_name, rel, batch_id in rows:
        by_table[table_name].append(str(root / rel))
        if table_name == "items":
            items_by_batch.setdefault(batch_id, []).append(str(root / rel))
    emb_cols: dict[str, list[str]] = {}
    for column, batch_id in con.execute(
        "SELECT embedding_column, batch_id FROM sources WHERE embedding_column IS NOT NULL "
        "ORDER BY batch_id"
    ).fetchall():
        emb_cols.setdefault(column, []).extend(items_by_batch.get(batch_id, []))
    kind = "TEMP VIEW" if temporary else "VIEW"
    for table in TABLES:
        sql = view_sql(table, by_table[table], sorted(emb_cols.items()))
        con.execute(f"CREATE OR REPLACE {kind} {table} AS {sql}")
