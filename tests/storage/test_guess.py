"""Guessing column roles from a source's first rows (ingest without --text-column,
`thresher config SOURCES`)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.storage.errors import ThresherError
from thresher.storage.guess import guess_roles, text_column_for

from tests.helpers import write_jsonl


def test_the_only_string_column_is_the_text(tmp_path) -> None:
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"doc_id": [1, 2], "body": ["x", "y"], "n": [1.0, 2.0]}), path)
    guess = guess_roles(path)
    assert guess is not None
    assert guess.roles == {"text_column": "body", "id_column": "doc_id"}
    assert text_column_for(path) == ("body", "the only text column")


def test_a_usual_text_name_decides_among_several_and_labels_are_named(tmp_path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("uid,summary,family,author\n1,hello there,a,me\n2,bye now,b,you\n")
    guess = guess_roles(path)
    assert guess is not None
    assert guess.roles == {"text_column": "summary", "label_column": "family"}
    assert guess.text_candidates == ["summary", "family", "author"]


def test_a_field_absent_from_the_first_line_still_counts(tmp_path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [{"n": 1}, {"n": 2, "content": "words here"}])
    assert text_column_for(path)[0] == "content"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"title": "a", "notes": "b"}], r"several text columns \(title, notes\); name one"),
        ([{"n": 1, "m": 2.0}], r"no text column among n, m; give --text-column"),
    ],
)
def test_no_obvious_text_column_is_refused_with_the_candidates(tmp_path, rows, message) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", rows)
    with pytest.raises(ThresherError, match=message):
        text_column_for(path)
