"""Redaction of PII spans (found by `thresher pii`) in exported and fed text.

The stored text is never changed: `thresher export --redact-pii` and
`SelectionFeed(..., redact_pii=True)` replace each span as the rows go out. Spans
travel with the rows as the list column `pii_spans` (kind, start, end: character
offsets into the text column), null on a row that `thresher pii` has not scanned, so
a reader can tell "no PII found" from "never looked".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from thresher.storage.errors import ThresherError

SPANS = "pii_spans"
TEXT_KEY = b"thresher.text_column"  # Parquet schema metadata: which column holds the text


def placeholder(kind: str) -> str:
    return f"<{kind.upper()}>"


def redact(text: str, spans: Sequence[dict[str, Any]]) -> str:
    """`text` with each span (dicts of kind, start, end; not overlapping) replaced by its
    placeholder, e.g. ``<EMAIL>``."""
    out, pos = [], 0
    for s in sorted(spans, key=lambda s: s["start"]):
        out.append(text[pos : s["start"]])
        out.append(placeholder(s["kind"]))
        pos = s["end"]
    out.append(text[pos:])
    return "".join(out)


def redact_table(table: pa.Table, text_column: str, keep_spans: bool = False) -> pa.Table:
    """`table` with `text_column` redacted by its `pii_spans`; the spans column dropped
    unless `keep_spans`. Raises when a row was never scanned (null spans)."""
    spans = table.column(SPANS)
    if text_column not in table.column_names:
        return table if keep_spans else table.drop_columns([SPANS])
    if spans.null_count:
        raise ThresherError(
            f"{spans.null_count} of {table.num_rows} rows were never scanned for PII: "
            "run thresher pii STORE, then export or publish again"
        )
    texts = table.column(text_column).to_pylist()
    redacted = [
        None if t is None else redact(t, s) for t, s in zip(texts, spans.to_pylist(), strict=True)
    ]
    i = table.column_names.index(text_column)
    out = table.set_column(i, text_column, pa.array(redacted, pa.string()))
    return out if keep_spans else out.drop_columns([SPANS])


def unscanned(table: pa.Table) -> int:
    """Rows of `table` whose `pii_spans` are null (never scanned)."""
    return int(pc.sum(pc.is_null(table.column(SPANS))).as_py() or 0)
