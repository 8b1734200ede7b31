"""One text column of a side file (an eval file, a reference set), read in chunks.

The checks every such file gets, each a one-line `ThresherError` naming the
file: it exists, is not empty, and has the column (given, or guessed as
ingest guesses it, listing the candidates when that is not obvious).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from thresher.storage.errors import ThresherError
from thresher.storage.guess import text_column_for
from thresher.storage.readers import detect_format, read_chunks


def text_chunks(
    path: Path, text_column: str | None, what: str, batch_rows: int = 16_384
) -> Iterator[pa.Array]:
    """The texts (string arrays) of `path`'s text column; `what` names the file's role in
    errors ("eval file", "reference file")."""
    if not path.is_file():
        raise ThresherError(f"{path}: no such {what}")
    if _blank(path):
        raise ThresherError(f"{path}: the {what} is empty")
    fmt = detect_format(path, "auto")
    column = text_column or text_column_for(path)[0]
    for chunk in read_chunks(path, fmt, batch_rows):
        if column not in chunk.table.column_names:
            raise ThresherError(
                f"{path}: no column {column!r}; columns: {', '.join(chunk.table.column_names)}"
            )
        yield chunk.table.column(column).combine_chunks().cast("string")


def _blank(path: Path) -> bool:
    """Nothing but whitespace in the file (a file of more than 1 MiB is not)."""
    with path.open("rb") as f:
        head = f.read(1 << 20)
    return len(head) < 1 << 20 and not head.strip()
