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
import re
import time
import typing
from collections.abc import Iterator, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from thresher.storage.errors import StoreError, ThresherError

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
    # character offsets [start, end) in the text column; `end` is a keyword: quote it in SQL
    "pii": "item_id BIGINT, kind VARCHAR, start BIGINT, end BIGINT, run_id BIGINT",
    "pii_checked": "item_id BIGINT, run_id BIGINT",
    "tokens": "item_id BIGINT, tokens BIGINT, run_id BIGINT",
    "languages": "item_id BIGINT, language VARCHAR, confidence DOUBLE, run_id BIGINT",
    "contamination": "item_id BIGINT, eval_source VARCHAR, overlap BIGINT, run_id BIGINT",
    # the n-gram hashes of each eval file (by content fingerprint) decontaminate read
    "eval_ngrams": "fingerprint VARCHAR, ngram INTEGER, hash BIGINT, run_id BIGINT",
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
ALTER TABLE stages ADD COLUMN IF NOT EXISTS seconds DOUBLE;
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
# a damaged table's view reads this placeholder, dropped at once (see `_unview`)
_DAMAGED = "thresher_damaged_"
_MISSING_VIEW = re.compile(rf"Table with name {_DAMAGED}(\w+) does not exist")
_QUOTED_PATH = re.compile(r"""["'](/[^"']+)["']""")


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
                raise damaged_catalog(path, exc) from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
    try:
        yield con
    finally:
        con.close()


def check_hint(root: Path) -> str:
    return f"run `thresher check {root}` for every problem and how to recover"


def damaged_catalog(path: Path, exc: BaseException) -> StoreError:
    reason = " ".join(str(exc).split())[:200]
    return StoreError(
        f"catalog {path} is damaged ({reason}): restore it from a backup; {check_hint(path.parent)}"
    )


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
        out.append(f"CAST(NULL AS {sql_type}) AS {_quote(name)}")
    return ", ".join(out)


class Views(typing.NamedTuple):
    files: list[str]
    damaged: dict[str, str]


def create_views(con: duckdb.DuckDBPyConnection, root: Path, *, temporary: bool = False) -> Views:
    """(Re)create one view per table over the registered files under `root`.

    A table whose files DuckDB cannot open (missing, cut short) gets no view, so
    queries over the other tables still run; `damaged` maps each such table to what
    is wrong with it, for the error a query over it raises (`Store.read`). `files`: the
    absolute paths of the files the views read (what a sandbox lets SQL open).
    """
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
    damaged: dict[str, str] = {}
    for table in TABLES:
        sources = sorted(emb_cols.items()) if table == "embeddings" else []
        sql = view_sql(table, by_table[table], sources)
        try:
            con.execute(f"CREATE OR REPLACE {kind} {table} AS {sql}")
        except (duckdb.IOException, duckdb.InvalidInputException) as exc:
            files = by_table[table] + [f for _, fs in sources for f in fs]
            damaged[table] = diagnose(root, files, exc)
            _unview(con, table, temporary)
    return Views([str(root / rel) for _, rel, _ in rows], damaged)


def _unview(con: duckdb.DuckDBPyConnection, table: str, temporary: bool) -> None:
    """Take a damaged table's view away. A temporary view must hide the stored one (which
    a read-only connection cannot drop), so it reads a placeholder that is then dropped:
    a query over the table fails, naming the placeholder (`store_error` maps it back)."""
    if not temporary:
        con.execute(f"DROP VIEW IF EXISTS {table}")
        return
    placeholder = f"{_DAMAGED}{table}"
    con.execute(f"CREATE OR REPLACE TEMP TABLE {placeholder} ({TABLES[table]})")
    con.execute(f"CREATE OR REPLACE TEMP VIEW {table} AS SELECT * FROM {placeholder}")
    con.execute(f"DROP TABLE {placeholder}")


def diagnose(root: Path, files: Sequence[str], exc: BaseException) -> str:
    """What is wrong with the first of `files` (absolute paths under `root`) that
    cannot be opened as Parquet; DuckDB's message when none is found."""
    for path in map(Path, files):
        rel = path.relative_to(root) if path.is_relative_to(root) else path
        if not path.exists():
            return f"{rel} is missing"
        try:
            pq.read_metadata(path)
        except (OSError, pa.ArrowException) as error:
            return f"{rel} is not readable Parquet ({' '.join(str(error).split())[:120]})"
    return " ".join(str(exc).split())[:200]


def store_error(root: Path, exc: BaseException, damaged: dict[str, str]) -> StoreError | None:
    """The `StoreError` a DuckDB error means when it comes from a damaged store under
    `root` (its catalog, or a table file; `damaged` as `create_views` returned it), else
    None: the error is the query's own."""
    text = str(exc)
    catalog = root / CATALOG_FILE
    if str(catalog) in text:
        return damaged_catalog(catalog, exc)
    hint = check_hint(root)
    missing = _MISSING_VIEW.search(text)
    if missing and missing.group(1) in damaged:
        return StoreError(f"store {root} is damaged: {damaged[missing.group(1)]}; {hint}")
    tables = str(root / "tables") + "/"
    for path in _QUOTED_PATH.findall(text):
        if path.startswith(tables) and isinstance(
            exc, duckdb.IOException | duckdb.InvalidInputException
        ):
            problem = diagnose(root, [path], exc)
            return StoreError(f"store {root} is damaged: {problem}; {hint}")
    return None


@contextlib.contextmanager
def store_errors(root: Path, damaged: dict[str, str]) -> Iterator[None]:
    """Raise DuckDB errors that mean a damaged store as that store's `StoreError`."""
    try:
        yield
    except duckdb.Error as exc:
        error = store_error(root, exc, damaged)
        if error is None:
            raise
        raise error from exc


def lock_down(
    con: duckdb.DuckDBPyConnection, readable: Sequence[str], writable: Sequence[str] = ()
) -> None:
    """Let `con` open only the files named, for good (DuckDB adds the database it has
    open, with its WAL, and its own spill folder).

    With external access off, DuckDB refuses every other path (read_text, read_csv,
    glob, ATTACH, COPY, extensions) and `lock_configuration` refuses the SET that would
    undo it. DuckDB does not tell reading from writing: a file named here could be
    written by a COPY, so callers refuse writing statements before they run.
    """
    con.execute(f"SET allowed_paths = {_file_list([*readable, *writable])}")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
