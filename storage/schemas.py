"""Column checks of an ingest: role columns present, and one type per column.

The `items` view reads every ingested file as one table, so a column must have
types DuckDB can unify in every file of the store. Some pairs are widened
(`compatible`): integers of any width and floats are one numeric column
(DOUBLE once a float is seen), string and large string are one, a column that
is all null takes any type, and lists and structs are compatible when their
values (for structs, the fields both have) are. Every other pair (a number and
a string, an int and a struct, a bool and an int) is refused before anything is
written, with one line naming the file, the column and both types.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from thresher.storage.errors import SourceError

ROLE_OPTIONS = {
    "id_column": "--id-column",
    "text_column": "--text-column",
    "label_column": "--label-column",
    "embedding_column": "--embedding-column",
}


def _kind(t: pa.DataType) -> str:
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return "number"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "binary"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return "list"
    if pa.types.is_struct(t):
        return "struct"
    if pa.types.is_timestamp(t):
        return "timestamp"
    return str(t)


def compatible(a: pa.DataType, b: pa.DataType) -> bool:
    """Whether one column may hold `a` in some files and `b` in others (see module doc)."""
    if a == b or pa.types.is_null(a) or pa.types.is_null(b):
        return True
    kind = _kind(a)
    if kind != _kind(b):
        return False
    if kind == "list":
        return compatible(a.value_type, b.value_type)
    if kind == "struct":
        theirs = {f.name: f.type for f in b}
        return all(compatible(f.type, theirs[f.name]) for f in a if f.name in theirs)
    return kind in ("number", "string", "binary", "timestamp")


def widest(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    """Which of two compatible types to compare later files with: the non-null one, and
    a float over an int (the message then names what the store holds)."""
    if pa.types.is_null(a):
        return b
    if pa.types.is_floating(b) and pa.types.is_integer(a):
        return b
    return a


def _unstorable(t: pa.DataType) -> str | None:
    """Why values of type `t` cannot be stored and read back, or None."""
    if pa.types.is_struct(t):
        if t.num_fields == 0:
            return "an empty object ({}) inside a value cannot be stored"
        if any(f.name == "" for f in t):
            return 'an object with an empty key ("") cannot be read back'
        return next((r for f in t if (r := _unstorable(f.type))), None)
    if _kind(t) == "list":
        return _unstorable(t.value_type)
    return None


def storable(source: str, table: pa.Table) -> pa.Table:
    """`table` as Parquet can store it and DuckDB read it back: a column of empty JSON
    objects (`{}`, a struct with no fields, which Parquet cannot write) becomes a column
    of nulls; an empty object inside a value, or an object key that is empty, is refused."""
    for i, f in enumerate(table.schema):
        if pa.types.is_struct(f.type) and f.type.num_fields == 0:
            table = table.set_column(i, f.name, pa.nulls(table.num_rows))
        elif reason := _unstorable(f.type):
            raise SourceError(
                f"{source}: column {f.name!r} is {f.type}: {reason}; change it in the source"
            )
    return table


class ColumnTypes:
    """The type of every column seen so far (the store's, then each chunk's)."""

    def __init__(self) -> None:
        self.types: dict[str, tuple[pa.DataType, str]] = {}

    @classmethod
    def of_files(cls, paths: Iterable[Path]) -> ColumnTypes:
        """The types of the store's `items` files (their Parquet footers)."""
        out = cls()
        for path in paths:
            for f in pq.read_schema(path):
                seen, _ = out.types.get(f.name, (f.type, ""))
                if compatible(seen, f.type):  # a store from before this check may hold both
                    out.types[f.name] = (widest(seen, f.type), "the store")
        return out

    def check(self, source: str, schema: pa.Schema) -> None:
        for f in schema:
            if f.name not in self.types:
                self.types[f.name] = (f.type, source)
                continue
            seen, where = self.types[f.name]
            if not compatible(seen, f.type):
                earlier = "earlier in this file" if where == source else f"in {where}"
                raise SourceError(
                    f"{source}: column {f.name!r} is {f.type} here but {seen} {earlier}; "
                    "one column must keep one type (numbers may mix ints and floats)"
                )
            self.types[f.name] = (widest(seen, f.type), where)


def check_roles(source: str, names: Iterable[str], roles: Mapping[str, str]) -> None:
    """Every role column (--text-column, ...) is a column of the source."""
    have = list(names)
    for role, column in roles.items():
        if column not in have:
            raise SourceError(
                f"{source}: no column {column!r} ({ROLE_OPTIONS[role]}); columns: {listing(have)}"
            )


def listing(names: Iterable[str]) -> str:
    """Column names for a one-line message: as they are, or quoted where a name is empty,
    holds a comma or a character that does not print (a newline would end the line)."""
    plain = [
        n if n and n.isprintable() and "," not in n and n == n.strip() else repr(n) for n in names
    ]
    return ", ".join(plain) or "(none)"
