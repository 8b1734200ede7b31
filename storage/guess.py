"""Guessing column roles from a source's schema: `thresher ingest` without
`--text-column`, and `thresher config SOURCES`.

Only the first rows of the first source are read. A text column is guessed when
the choice is obvious (the only string column, or the only one with a usual text
name); otherwise the user is asked to name it, with the candidates listed, since
a wrong text column strands a store (every later stage reads it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from thresher.storage import readers, uri
from thresher.storage.errors import ThresherError

TEXT_NAMES: tuple[str, ...] = ("text", "content", "body", "document", "summary", "description")
TEXT_NAMES += ("abstract", "sentence", "review", "message", "prompt", "question", "passage")
ID_NAMES = ("id", "_id", "doc_id", "document_id", "uuid", "key", "item_id", "idx")
LABEL_NAMES: tuple[str, ...] = ("label", "labels", "category", "class", "topic", "family")
LABEL_NAMES += ("target", "y", "intent", "sentiment", "tag")
PROBE_ROWS = 1000


@dataclass
class Guess:
    """Role -> column, with why, for the columns of one source."""

    source: str
    columns: list[str]
    roles: dict[str, str] = field(default_factory=dict)
    why: dict[str, str] = field(default_factory=dict)
    text_candidates: list[str] = field(default_factory=list)


def guess_roles(source: Path | uri.RemoteFile, fmt: readers.Format = "auto") -> Guess | None:
    """The roles of `source`'s columns, from its first rows; None for an object-store
    source (reading it would mean a download) or a file with no columns."""
    if isinstance(source, uri.RemoteFile):
        return None
    schema = _schema(source, readers.detect_format(source, fmt))
    if schema is None or not len(schema):
        return None
    guess = Guess(str(source), schema.names)
    strings = [
        f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
    ]
    named = [c for c in strings if c.lower() in TEXT_NAMES]
    guess.text_candidates = strings
    if len(strings) == 1:
        _set(guess, "text_column", strings[0], "the only text column")
    elif len(named) == 1:
        why = f"the usual text name among the text columns {', '.join(strings)}"
        _set(guess, "text_column", named[0], why)
    for role, names in (("id_column", ID_NAMES), ("label_column", LABEL_NAMES)):
        found = [
            c for c in schema.names if c.lower() in names and c != guess.roles.get("text_column")
        ]
        if len(found) == 1:
            _set(guess, role, found[0], "its name")
    return guess


def text_column_for(source: Path | uri.RemoteFile, fmt: readers.Format = "auto") -> tuple[str, str]:
    """The text column `ingest` takes when none is named: (column, why); a ThresherError
    listing the candidates when the choice is not obvious."""
    guess = guess_roles(source, fmt)
    if guess is None:
        raise ThresherError(f"{source}: name the text column with --text-column")
    if "text_column" in guess.roles:
        return guess.roles["text_column"], guess.why["text_column"]
    if not guess.text_candidates:
        raise ThresherError(
            f"{source}: no text column among {', '.join(guess.columns)}; give --text-column, "
            "or --embedding-column for a store of vectors only"
        )
    raise ThresherError(
        f"{source}: several text columns ({', '.join(guess.text_candidates)}); "
        "name one with --text-column"
    )


def _set(guess: Guess, role: str, column: str, why: str) -> None:
    guess.roles[role] = column
    guess.why[role] = why


def _schema(path: Path, fmt: str) -> pa.Schema | None:
    for chunk in readers.read_chunks(path, fmt, PROBE_ROWS):
        if chunk.table.num_columns:
            return chunk.table.schema
    return None
