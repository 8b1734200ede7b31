"""Row checks of an ingest: which rows of a chunk become rejects, and why.

A row is rejected for null or empty text, a null or repeated id, or an
embedding no search could use: null, of the wrong length, all zeros (no
direction to compare by cosine) or holding NaN/inf (also a float64 too large
for float32, the type vectors are stored as).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from thresher.storage import schemas
from thresher.storage.errors import SourceError

RESERVED = ("item_id", "batch_id")


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def id_keys(column: pa.ChunkedArray) -> np.ndarray:
    """uint64 keys from an id column: integers as they are (a float with an integer value
    too, so 100 and 100.0 are one id), anything else hashed."""
    if pa.types.is_integer(column.type):
        return pc.fill_null(column, 0).to_numpy().astype(np.int64).view(np.uint64)
    values = column.to_pylist()
    return np.fromiter((_key(v) for v in values), np.uint64, len(values))


def _key(value: Any) -> int:
    if isinstance(value, float) and value.is_integer() and -(2**63) <= value < 2**63:
        return int(np.int64(int(value)).view(np.uint64))
    return _hash64(str(value))


class Validator:
    """Row checks for one ingest; remembers the embedding width, the ids and the column
    types seen so far."""

    def __init__(
        self,
        roles: dict[str, str],
        embedding_dim: int | None,
        seen_ids: np.ndarray,
        types: schemas.ColumnTypes,
        batch_rows: int = 65_536,
    ) -> None:
        self.roles, self.embedding_dim, self.seen_ids = roles, embedding_dim, IdSet(seen_ids)
        self.types, self.batch_rows = types, batch_rows

    def check_columns(self, path: str, table: pa.Table) -> None:
        names = table.column_names
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise SourceError(f"{path}: column {twice[0]!r} appears more than once; rename one")
        schemas.check_roles(path, names, self.roles)
        if embedding_column := self.roles.get("embedding_column"):
            _vectors(path, embedding_column, table.column(embedding_column))
        for name in RESERVED:
            if name in names:
                raise SourceError(f"{path}: column {name!r} is reserved by thresher; rename it")

    def bad_rows(self, table: pa.Table, source: str) -> tuple[np.ndarray, list[str | None]]:
        """A boolean mask of rows to reject and, per row, the first reason."""
        n = table.num_rows
        reasons: list[str | None] = [None] * n
        bad = np.zeros(n, dtype=bool)

        def mark(mask: np.ndarray, reason: str | Callable[[int], str]) -> None:
            for i in np.flatnonzero(mask & ~bad):
                reasons[i] = reason(int(i)) if callable(reason) else reason
            bad[:] |= mask

        if text_column := self.roles.get("text_column"):
            text = table.column(text_column)
            if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
                text = text.cast(pa.string())
            empty = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0), True)
            mark(_np(empty), f"null or empty text in column {text_column!r}")
        if id_column := self.roles.get("id_column"):
            ids = table.column(id_column)
            mark(_np(pc.is_null(ids)), f"null id in column {id_column!r}")
        if embedding_column := self.roles.get("embedding_column"):
            column = table.column(embedding_column)
            self._check_embeddings(
                embedding_column, _vectors(source, embedding_column, column), mark
            )
        return bad, reasons

    def _check_embeddings(self, name: str, col: pa.Array, mark: Callable) -> None:
        null = _np(col.is_null())
        mark(null, f"null embedding in column {name!r}")
        lengths = pc.fill_null(pc.list_value_length(col), 0).to_numpy().astype(np.int64)
        mark(~null & (lengths == 0), f"empty embedding in column {name!r}")
        if self.embedding_dim is None and (~null & (lengths > 0)).any():
            self.embedding_dim = int(lengths[~null & (lengths > 0)][0])
        dim = self.embedding_dim
        wrong = ~null & (lengths > 0) & (lengths != dim)
        mark(wrong, lambda i: f"embedding length {lengths[i]}, expected {dim}")
        ok = ~null & (lengths > 0) & ~wrong
        if not ok.any():
            return
        flat = pc.list_flatten(col.filter(pa.array(ok))).to_numpy(zero_copy_only=False)
        with np.errstate(over="ignore", invalid="ignore"):
            values = flat.astype(np.float32).reshape(-1, dim)
        finite = np.zeros(len(ok), dtype=bool)
        finite[np.flatnonzero(ok)] = np.isfinite(values).all(axis=1)
        zero = np.zeros(len(ok), dtype=bool)
        zero[np.flatnonzero(ok)] = ~values.any(axis=1)
        mark(ok & ~finite, f"non-finite embedding in column {name!r}")
        mark(ok & zero, f"zero embedding in column {name!r}")

    def duplicate_ids(self, ids: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Mark candidate ids seen before (in the store, earlier rows or this batch)."""
        dup = np.zeros(len(ids), dtype=bool)
        idx = np.flatnonzero(candidates)
        values = ids[idx]
        known = self.seen_ids.contains(values)
        _, first = np.unique(values, return_index=True)
        repeated = np.ones(len(values), dtype=bool)
        repeated[first] = False
        dup[idx[known | repeated]] = True
        self.seen_ids.add(values[~(known | repeated)])
        return dup


class IdSet:
    """Distinct ids as sorted runs, each under half the size of the one before: a
    batch's lookups and additions cost O(batch log^2 n) amortized. (One sorted array
    rebuilt per batch cost O(n) a batch: 10M ids in 64k-row batches, quadratic.)"""

    def __init__(self, ids: np.ndarray) -> None:
        self.runs = [np.unique(ids)] if len(ids) else []

    def contains(self, values: np.ndarray) -> np.ndarray:
        found = np.zeros(len(values), dtype=bool)
        for run in self.runs:
            pos = np.minimum(np.searchsorted(run, values), len(run) - 1)
            found |= run[pos] == values
        return found

    def add(self, values: np.ndarray) -> None:
        """Add distinct ids not in the set yet."""
        if not len(values):
            return
        self.runs.append(np.sort(values))
        while len(self.runs) > 1 and len(self.runs[-2]) < 2 * len(self.runs[-1]):
            last = self.runs.pop()
            self.runs[-1] = np.sort(np.concatenate([self.runs[-1], last]), kind="stable")


def _vectors(source: str, name: str, col: pa.ChunkedArray) -> pa.Array:
    """The embedding column as one list array of numbers (nulls as a list of float)."""
    col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    kind = col.type
    if pa.types.is_null(kind):
        return col.cast(pa.list_(pa.float32()))
    is_list = (
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    )
    value = kind.value_type if is_list else None
    if value is not None and pa.types.is_null(value):
        return col.cast(pa.list_(pa.float32()))
    if value is None or not (pa.types.is_integer(value) or pa.types.is_floating(value)):
        raise SourceError(f"{source}: column {name!r} is {kind}, not a list of numbers")
    return col


def _np(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=bool)
