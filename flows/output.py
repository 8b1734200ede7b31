"""Render Arrow tables for the terminal and for scripts: table, csv, json, parquet."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import sys
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from thresher.storage.errors import ThresherError

OUTPUT_FORMATS = ("table", "csv", "json", "parquet")


def _cell(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    return value


def _text(value: Any, width: int = 0) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and width:
        return f"{value:.4g}"
    text = json.dumps(value, default=str) if isinstance(value, list | dict) else str(value)
    if width and len(text) > width:
        text = text[: width - 1] + "…"
    return text


def write_result(table: pa.Table, fmt: str, out: str | None = None, max_rows: int = 50) -> None:
    """Write `table` in `fmt` to the file `out`, or to stdout."""
    if fmt not in OUTPUT_FORMATS:
        raise ThresherError(f"format {fmt!r}: allowed {', '.join(OUTPUT_FORMATS)}")
    if fmt == "parquet":
        if not out:
            raise ThresherError("--format parquet needs --out FILE")
        pq.write_table(table, out)
        return
    with contextlib.ExitStack() as stack:
        stream: IO[str] = stack.enter_context(open(out, "w", newline="")) if out else sys.stdout
        if fmt == "csv":
            writer = csv.writer(stream, lineterminator="\n")
            writer.writerow(table.column_names)
            for batch in table.to_batches(max_chunksize=10_000):
                for row in zip(*(c.to_pylist() for c in batch.columns), strict=True):
                    writer.writerow([_text(_cell(v)) for v in row])
        elif fmt == "json":
            rows = [{k: _cell(v) for k, v in r.items()} for r in table.to_pylist()]
            json.dump(rows, stream, default=str, indent=None)
            stream.write("\n")
        else:
            _rich_table(table, stream, max_rows if not out else table.num_rows)


def _rich_table(table: pa.Table, stream: IO[str], max_rows: int) -> None:
    console = Console(file=stream, width=None if stream.isatty() else 160)
    view = Table(show_edge=False, header_style="bold")
    for name in table.column_names:
        view.add_column(name, overflow="fold")
    shown = table.slice(0, max_rows)
    for row in shown.to_pylist():
        view.add_row(*(_text(_cell(v), 80) for v in row.values()))
    console.print(view)
    if table.num_rows > max_rows:
        console.print(
            f"… {table.num_rows - max_rows} more rows "
            f"({table.num_rows} in all; --format csv or --out FILE for all)"
        )
    else:
        console.print(f"({table.num_rows} row{'s' if table.num_rows != 1 else ''})", style="dim")


def summary_table(rows: list[dict[str, Any]]) -> str:
    """A small plain table for command summaries."""
    buf = io.StringIO()
    if rows:
        _rich_table(pa.Table.from_pylist(rows), buf, len(rows))
    return buf.getvalue()
