"""Streaming readers for Parquet, JSONL and CSV sources, with row-level rejects.

Each reader yields `Chunk`s of at most `batch_rows` rows, so memory stays
bounded whatever the file size. A row that cannot be parsed (a JSONL line that
is not a JSON object or holds an integer beyond int64, a CSV row with the
wrong number of fields, bytes that are not UTF-8) becomes a reject carrying
its line number and raw text; a column whose values mix types no one column
can hold (an int and a string) stops the file (see `schemas`); a file
that cannot be read at all (missing, unreadable, truncated) raises
`SourceError` naming the file.
"""

from __future__ import annotations

import io
import json
import mmap
import os
import re
import typing
from collections.abc import Callable, Iterator, Sequence
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
    # CSV: each row's record number, and the line a record starts on (rejects' `row`)
    records: np.ndarray | None = None
    line_of: Callable[[int], int] | None = None


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
        table = _records_table(records)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        records, rows, too_big = _drop_bad_records(records, rows)
        rejects = sorted([*rejects, *too_big])
        try:
            table = _records_table(records)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise _mixed_types(path, records, rows) from exc
    return Chunk(table, np.asarray(rows, dtype=np.int64), rejects, done)


def _records_table(records: list[dict]) -> pa.Table:
    """One column per key of any record, in the order keys first appear. (Arrow's
    `Table.from_pylist` takes the columns of the first record only and would drop a
    field the first line lacks.)"""
    names = dict.fromkeys(key for record in records for key in record)
    return pa.table({name: pa.array([r.get(name) for r in records]) for name in names})


_INT64 = (-(2**63), 2**63 - 1)


def _big_int(value: Any) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return not _INT64[0] <= value <= _INT64[1]
    if isinstance(value, dict):
        return any(_big_int(v) for v in value.values())
    if isinstance(value, list):
        return any(_big_int(v) for v in value)
    return False


def _drop_bad_records(
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
        reason = f"{row.actual_columns} fields, expected {row.expected_columns}"
        bad.append((row.number or 0, reason, row.text))
        return "skip"

    lines = _RecordLines(path)
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
        try:
            reader.schema.names  # noqa: B018 (decodes the header)
        except UnicodeDecodeError:
            raise SourceError(f"{path}: the CSV header is not UTF-8 text") from None
        yield Chunk(reader.schema.empty_table(), np.zeros(0, np.int64))  # the columns, first
        start = 1
        for batch in reader:
            table = pa.Table.from_batches([batch])
            rows = np.arange(start, start + table.num_rows, dtype=np.int64)
            start += table.num_rows
            at, invalid = lines.records(table.num_rows, bad)
            table, keep, undecodable = drop_undecodable(table, np.arange(table.num_rows))
            undecodable = [(int(at[i]), reason, raw) for i, reason, raw in undecodable]
            rejects = [*invalid, *undecodable]
            yield Chunk(table, rows[keep], rejects, counter.done, at[keep], lines.line)
        _, invalid = lines.records(0, bad, final=True)
        if invalid:
            empty = np.zeros(0, np.int64)
            yield Chunk(pa.table({}), empty, invalid, counter.done, empty, lines.line)


# one CSV record as pyarrow's parser reads it: fields split at commas, a field that starts
# with a quote runs to its closing quote ("" inside is a quote, newlines are kept), and a
# record ends at \n, \r\n or \r
_FIELD = rb'(?:"(?:[^"]|"")*"?[^,\r\n]*|[^,\r\n]*)'
_RECORD = re.compile(_FIELD + rb"(?:," + _FIELD + rb")*(?:\r\n|\n|\r)?")


class _RecordLines:
    """The line (1-based, counting \\n) on which each CSV record starts, for `rejects.row`.
    pyarrow numbers records (the header is record 1, empty lines are skipped) and a quoted
    field may hold newlines, so a line is found by scanning the file alongside, only as far
    as a reject needs (a file with no rejects is not scanned)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lines: Iterator[int] | None = None
        self._scanned = 1  # records whose line `_lines` has given
        self._line = 0
        self._record = 2  # the next record a valid row can be
        self._pending: dict[int, list[tuple[str, str]]] = {}

    def records(
        self, n: int, invalid: list[tuple[int, str, str]], final: bool = False
    ) -> tuple[np.ndarray, list[tuple[int, str, str]]]:
        """Record numbers of the next `n` valid rows, and the invalid rows (taken out of
        `invalid`, numbered by record) passed on the way; `final`: every invalid row."""
        for number, reason, text in invalid:
            self._pending.setdefault(number, []).append((reason, text))
        invalid.clear()
        out, placed, filled = np.zeros(n, np.int64), [], 0
        while filled < n or (final and any(k >= self._record for k in self._pending)):
            if not self._pending and filled < n:  # the common case: no invalid row near
                out[filled:] = np.arange(self._record, self._record + n - filled)
                self._record += n - filled
                break
            if self._record in self._pending:
                placed += [(self._record, r, t) for r, t in self._pending.pop(self._record)]
            elif filled < n:
                out[filled] = self._record
                filled += 1
            self._record += 1
        for number in [k for k in self._pending if k < self._record]:  # unknown: line 0
            placed += [(0, r, t) for r, t in self._pending.pop(number)]
        return out, placed

    def line(self, record: int) -> int:
        """The line record `record` starts on (records asked in increasing order; 0 for
        one asked out of order, or unknown)."""
        if record < max(2, self._scanned):
            return 0
        if self._lines is None:
            self._lines = _scan_records(self._path)
            next(self._lines, None)  # the header
        while self._scanned < record:
            self._line = next(self._lines, 0)
            self._scanned += 1
        return self._line


def _scan_records(path: Path) -> Iterator[int]:
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            pos, line = 0, 1
            while pos < len(buf):
                match = _RECORD.match(buf, pos)
                assert match is not None  # every field may be empty
                text = match.group()
                if text.strip(b"\r\n"):
                    yield line
                line += text.count(b"\n")
                pos = max(match.end(), pos + 1)


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
