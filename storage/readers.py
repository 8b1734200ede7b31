"""Streaming readers for Parquet, JSONL and CSV sources, with row-level rejects.

Each reader yields `Chunk`s of at most `batch_rows` rows, so memory stays
bounded whatever the file size. A row that cannot be parsed (a JSONL line that
is not a JSON object, a CSV row with the wrong number of fields, bytes that
are not UTF-8) becomes a reject carrying its row number and raw text; a file
that cannot be read at all (missing, unreadable, truncated) raises
`SourceError` naming the file.
"""

from __future__ import annotations

import io
import json
import os
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from thresher.storage import schemas
from thresher.storage.errors import SourceError
from thresher.storage.uri import RemoteFile

Format = Literal["auto", "parquet", "jsonl", "csv"]
FORMATS: tuple[str, ...] = typing.get_args(Format)
SUFFIXES = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
}


@dataclass
class Chunk:
    """Rows read from one source: good rows with their 1-based row numbers, and rejects."""

    table: pa.Table
    rows: np.ndarray
    rejects: list[tuple[int, str, str]] = field(default_factory=list)
    bytes_done: int = 0


def detect_format(path: Path | RemoteFile, fmt: Format) -> str:
    if fmt != "auto":
        return fmt
    try:
        return SUFFIXES[path.suffix.lower()]
    except KeyError:
        raise SourceError(
            f"{path}: cannot tell the format from the suffix {path.suffix!r}; "
            f"pass --format ({', '.join(FORMATS[1:])})"
        ) from None


# at most this much (uncompressed) source data per chunk, whatever `batch_rows` says: a
# chunk's copies through validation are what ingest holds, so wide rows (long texts, vectors)
# get fewer rows per chunk and memory stays the same
BATCH_BYTES = 32 * 2**20


def read_chunks(path: Path, fmt: str, batch_rows: int) -> Iterator[Chunk]:
    readers = {"parquet": _parquet, "jsonl": _jsonl, "csv": _csv}
    try:
        yield from readers[fmt](path, batch_rows)
    except SourceError:
        raise
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise SourceError(f"{path}: cannot read {fmt} file: {_one_line(exc)}") from exc


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _parquet(path: Path, batch_rows: int) -> Iterator[Chunk]:
    pf = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
    total_rows = max(pf.metadata.num_rows, 1)
    size = path.stat().st_size
    yield Chunk(pf.schema_arrow.empty_table(), np.zeros(0, np.int64))  # the columns, first
    # rows per chunk from the width of the first rows in memory (Parquet's own sizes are
    # of its encoding: a third of the Arrow size for float vectors here)
    probe = next(pf.iter_batches(batch_size=min(batch_rows, 1024)), None)
    if probe is not None and probe.num_rows:
        width = max(probe.nbytes // probe.num_rows, 1)
        batch_rows = max(1, min(batch_rows, BATCH_BYTES // width))
    start = 1
    for batch in pf.iter_batches(batch_size=batch_rows):
        rows = np.arange(start, start + batch.num_rows, dtype=np.int64)
        start += batch.num_rows
        yield Chunk(pa.Table.from_batches([batch]), rows, [], int(size * (start - 1) / total_rows))


def _jsonl(path: Path, batch_rows: int) -> Iterator[Chunk]:
    records: list[dict] = []
    rows: list[int] = []
    rejects: list[tuple[int, str, str]] = []
    done = flushed = 0
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            done += len(raw)
            line = raw.strip()
            if not line:
                continue
            try:
                record = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError:
                rejects.append((number, "undecodable text (not UTF-8)", _raw(line)))
                continue
            except json.JSONDecodeError as exc:
                rejects.append((number, f"invalid JSON: {exc.msg}", _raw(line)))
                continue
            if not isinstance(record, dict):
                rejects.append((number, "not a JSON object", _raw(line)))
                continue
            records.append(record)
            rows.append(number)
            if len(records) >= batch_rows or done - flushed >= BATCH_BYTES:
                yield _json_chunk(path, records, rows, rejects, done)
                records, rows, rejects = [], [], []
                flushed = done
    if records or rejects:
        yield _json_chunk(path, records, rows, rejects, done)


def _json_chunk(
    path: Path, records: list[dict], rows: list[int], rejects: list, done: int
) -> Chunk:
    try:
        table = pa.Table.from_pylist(records)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        records, rows, too_big = _drop_big_ints(records, rows)
        rejects = sorted([*rejects, *too_big])
        try:
            table = pa.Table.from_pylist(records)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise _mixed_types(path, records, rows) from exc
    return Chunk(table, np.asarray(rows, dtype=np.int64), rejects, done)


_INT64 = (-(2**63), 2**63 - 1)


def _big_int(value: Any) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return not _INT64[0] <= value <= _INT64[1]
    if isinstance(value, dict):
        return any(_big_int(v) for v in value.values())
    if isinstance(value, list):
        return any(_big_int(v) for v in value)
    return False


def _drop_big_ints(
    records: list[dict], rows: list[int]
) -> tuple[list[dict], list[int], list[tuple[int, str, str]]]:
    """Records that no column type can hold become rejects: an integer beyond int64
    anywhere in a value, or a value (a list) whose own items mix types."""
    keep_records, keep_rows, rejects = [], [], []
    for record, row in zip(records, rows, strict=True):
        reason = next((r for k, v in record.items() if (r := _bad_value(k, v))), None)
        if reason is None:
            keep_records.append(record)
            keep_rows.append(row)
        else:
            rejects.append((row, reason, json.dumps(record)))
    return keep_records, keep_rows, rejects


def _bad_value(column: str, value: Any) -> str | None:
    if _big_int(value):
        return f"integer beyond int64 in column {column!r}"
    if isinstance(value, list | dict):
        try:
            pa.array([value])
        except (pa.ArrowException, TypeError, ValueError):
            return f"values of mixed types in column {column!r}"
    return None


def _mixed_types(path: Path, records: list[dict], rows: list[int]) -> SourceError:
    """The error for a column whose values have types no one column can hold."""
    first: dict[str, pa.DataType] = {}
    for record, row in zip(records, rows, strict=True):
        for name, value in record.items():
            if value is None:
                continue
            kind = pa.array([value]).type
            seen = first.setdefault(name, kind)
            if not schemas.compatible(seen, kind):
                return SourceError(
                    f"{path}: column {name!r} is {kind} here but {seen} earlier in this file; "
                    f"one column must keep one type (line {row})"
                )
            first[name] = schemas.widest(seen, kind)
    return SourceError(f"{path}: values of one column cannot be read as one type")


def _raw(line: bytes) -> str:
    return line.decode("utf-8", errors="backslashreplace")


class _CountingReader(io.RawIOBase):
    def __init__(self, fh: io.BufferedReader) -> None:
        self._fh, self.done = fh, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        n = self._fh.readinto(buf)
        self.done += n
        return n


def _csv(path: Path, batch_rows: int) -> Iterator[Chunk]:
    bad: list[tuple[int, str, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        bad.append(
            (
                row.number or 0,
                f"{row.actual_columns} fields, expected {row.expected_columns}",
                row.text,
            )
        )
        return "skip"

    with open(path, "rb") as fh:
        counter = _CountingReader(fh)
        reader = pacsv.open_csv(
            io.BufferedReader(counter, buffer_size=1 << 20),
            read_options=pacsv.ReadOptions(
                block_size=max(1 << 16, batch_rows * 256), use_threads=False
            ),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(check_utf8=False, strings_can_be_null=True),
        )
        yield Chunk(reader.schema.empty_table(), np.zeros(0, np.int64))  # the columns, first
        start = 1
        for batch in reader:
            table = pa.Table.from_batches([batch])
            rows = np.arange(start, start + table.num_rows, dtype=np.int64)
            start += table.num_rows
            table, rows, undecodable = drop_undecodable(table, rows)
            yield Chunk(table, rows, [*bad, *undecodable], counter.done)
            bad.clear()
        if bad:
            yield Chunk(pa.table({}), np.zeros(0, np.int64), list(bad), counter.done)


def drop_undecodable(
    table: pa.Table, rows: np.ndarray, columns: Sequence[str] | None = None
) -> tuple[pa.Table, np.ndarray, list[tuple[int, str, str]]]:
    """Remove rows whose string (or, for `columns`, binary) values are not valid UTF-8."""
    bad = np.zeros(table.num_rows, dtype=bool)
    reasons: dict[int, str] = {}
    for name in table.column_names:
        col = table.column(name)
        is_text = pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
        is_bytes = pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type)
        if not (is_text or (is_bytes and columns and name in columns)):
            continue
        try:
            if is_bytes:
                col.cast(pa.string())
            else:
                col.validate(full=True)
            continue
        except (pa.ArrowInvalid, pa.ArrowException):
            pass
        for i, value in enumerate(col.cast(pa.binary()).to_pylist()):
            if value is None:
                continue
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                bad[i] = True
                reasons.setdefault(i, f"undecodable text in column {name!r} (not UTF-8)")
    if not bad.any():
        return table, rows, []
    as_bytes = table.cast(
        pa.schema(
            [
                pa.field(f.name, pa.binary()) if pa.types.is_string(f.type) else f
                for f in table.schema
            ]
        )
    )
    rejects = []
    for i in np.flatnonzero(bad).tolist():
        record = as_bytes.slice(i, 1).to_pylist()[0]
        raw = json.dumps(
            {k: _raw(v) if isinstance(v, bytes) else v for k, v in record.items()}, default=str
        )
        rejects.append((int(rows[i]), reasons[i], raw))
    keep = pa.array(~bad)
    return table.filter(keep), rows[~bad], rejects


def file_size(path: Path) -> int:
    return os.stat(path).st_size
