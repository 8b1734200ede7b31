"""SQL a user writes (`thresher sql`, `--where`, `[select] where`), run so that it can
read the store's tables and nothing else, and write nothing anywhere.

Two fences. The first refuses, before anything runs, every statement that is not a
`SELECT` or an `EXPLAIN [ANALYZE]` of one (`EXPLAIN ANALYZE` runs its statement, so
`EXPLAIN ANALYZE COPY ...` is a COPY). The second is DuckDB's own: the connection is
locked down (`Store.read(sandbox=True)`) so that it can open the registered Parquet
files the views read and no other file (`/etc/passwd`, another Parquet file, a glob,
another database, an extension), and cannot be unlocked by a `SET`.
"""

from __future__ import annotations

import re

import duckdb
import pyarrow as pa

from thresher.storage.errors import QueryError
from thresher.storage.store import Store

ALLOWED = {"SELECT", "EXPLAIN"}
# EXPLAIN, then ANALYZE and/or an option list: what follows is the statement explained
_EXPLAIN = re.compile(r"\s*EXPLAIN\s+(?:ANALY[SZ]E\b\s*)?(?:\([^()]*\)\s*)?(.*)", re.I | re.S)


def read_only_query(store: Store, query: str) -> pa.Table:
    """Run one or more read statements, sandboxed; return the last one's result.

    Write statements (INSERT, COPY, CREATE, ATTACH, SET, ...), also under EXPLAIN,
    are refused before anything runs: the store changes only through thresher's runs.
    """
    if not query.strip():
        raise QueryError("empty query")
    with store.read(sandbox=True) as con:
        statements = _statements(con, query)
        for st in statements:
            _check_statement(con, st)
        try:
            for st in statements[:-1]:
                con.sql(st.query).fetchall()
            return con.sql(statements[-1].query).to_arrow_table()
        except duckdb.PermissionException as exc:
            raise QueryError(f"SQL may read the store's tables only: {_first_line(exc)}") from None
        except duckdb.Error as exc:
            raise store.store_error(exc) or QueryError(f"SQL: {_first_line(exc)}") from None


def _statements(con: duckdb.DuckDBPyConnection, query: str) -> list[duckdb.Statement]:
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as exc:
        raise QueryError(f"SQL: {_first_line(exc)}") from None
    if not statements:
        raise QueryError("empty query")
    return statements


def _check_statement(con: duckdb.DuckDBPyConnection, st: duckdb.Statement) -> None:
    """Refuse a statement that is not a SELECT or an EXPLAIN of exactly one SELECT."""
    kind = _kind(st)
    if kind == "EXPLAIN":
        match = _EXPLAIN.fullmatch(st.query.strip().rstrip(";"))
        try:
            inner = con.extract_statements(match.group(1)) if match else []
        except duckdb.Error:
            inner = []
        if len(inner) != 1 or _kind(inner[0]) != "SELECT":
            what = _kind(inner[0]) if len(inner) == 1 else "anything but one SELECT"
            raise QueryError(f"thresher sql is read-only: EXPLAIN of {what} is refused")
    elif kind not in ALLOWED:
        raise QueryError(
            f"thresher sql is read-only: {kind} statements are refused "
            f"(allowed: {', '.join(sorted(ALLOWED))})"
        )


def _kind(st: duckdb.Statement) -> str:
    return str(st.type).rsplit(".", 1)[-1]


def parse_condition(condition: str, what: str = "--where") -> str:
    """`condition` if it is one SQL expression (no second statement, no `)` closing the
    WHERE it is put in, no ORDER BY); else a QueryError naming `what`. Needs no store,
    so a config's `[select] where` is checked when the config is read."""
    try:
        duckdb.SQLExpression(condition)
    except duckdb.Error as exc:
        raise QueryError(
            f"{what}: must be one SQL condition on the items' columns, got {condition!r}: "
            f"{_first_line(exc)}"
        ) from None
    return condition


def check_condition(store: Store, condition: str) -> None:
    """Refuse anything but one boolean expression over the items' columns (`--where`),
    run once, sandboxed, over `items`."""
    parse_condition(condition)
    read_only_query(store, f"SELECT count(*) FROM items WHERE (\n{condition}\n)")


def _first_line(exc: Exception) -> str:
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    return " ".join(lines[:2]) if lines else type(exc).__name__
