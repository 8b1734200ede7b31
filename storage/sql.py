"""Read-only SQL over a store, as `thresher sql` runs it."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from thresher.storage.errors import ThresherError
from thresher.storage.store import Store

ALLOWED = {"SELECT", "EXPLAIN"}


def read_only_query(store: Store, query: str) -> pa.Table:
    """Run one or more read statements; return the last one's result.

    Write statements (INSERT, COPY, CREATE, ATTACH, SET, ...) are refused
    before anything runs: the store changes only through thresher's runs.
    """
    if not query.strip():
        raise ThresherError("empty query")
    with store.read() as con:
        try:
            statements = con.extract_statements(query)
        except duckdb.Error as exc:
            raise ThresherError(f"SQL: {_first_line(exc)}") from None
        if not statements:
            raise ThresherError("empty query")
        for st in statements:
            kind = str(st.type).rsplit(".", 1)[-1]
            if kind not in ALLOWED:
                raise ThresherError(
                    f"thresher sql is read-only: {kind} statements are refused "
                    f"(allowed: {', '.join(sorted(ALLOWED))})"
                )
        try:
            for st in statements[:-1]:
                con.sql(st.query).fetchall()
            return con.sql(statements[-1].query).to_arrow_table()
        except duckdb.Error as exc:
            raise store.store_error(exc) or ThresherError(f"SQL: {_first_line(exc)}") from None


def check_condition(store: Store, condition: str) -> None:
    """Refuse anything but one boolean expression over the items' columns (`--where`)."""
    query = f"SELECT count(*) FROM items WHERE ({condition})"
    with store.read() as con:
        try:
            statements = con.extract_statements(query)
        except duckdb.Error as exc:
            raise ThresherError(f"--where: {_first_line(exc)}") from None
    if len(statements) != 1:
        raise ThresherError(f"--where must be one SQL condition, got {condition!r}")
    read_only_query(store, query)


def _first_line(exc: Exception) -> str:
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    return " ".join(lines[:2]) if lines else type(exc).__name__
