"""Ingest refuses what later commands could not read (issue #14): column types that
conflict, role columns a source lacks, vectors no search can use; and it keeps
`rejects.row` a line number."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from thresher.flows.cli import cli
from thresher.storage.errors import SourceError, ThresherError
from thresher.storage.ingest import IngestConfig, ingest
from thresher.storage.store import Store

from tests.helpers import write_jsonl

TEXT = IngestConfig(text_column="text")


def digest(store: Store) -> dict[str, str]:
    """Every file under the store, by content hash."""
    return {
        str(p.relative_to(store.root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(store.root.rglob("*"))
        if p.is_file()
    }


def run_cli(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def refused(store: Store, sources: list[Path], cfg: IngestConfig, match: str) -> None:
    """The ingest fails with `match`, and the store keeps every byte."""
    before = digest(store)
    with pytest.raises(SourceError, match=match):
        ingest(store, [str(s) for s in sources], cfg)
    assert digest(store) == before


# 1. conflicting column types


def test_int_and_struct_in_two_files_are_refused_naming_file_column_and_types(
    store, tmp_path
) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", [{"text": "one", "x": 1}])
    b = write_jsonl(tmp_path / "b.jsonl", [{"text": "two", "x": {"k": 1}}])
    ingest(store, [str(a)], TEXT)
    refused(store, [b], TEXT, r"b\.jsonl: column 'x' is struct<k: int64> here but int64")
    code, out = run_cli("ingest", store.root, b, "--text-column", "text", "-q")
    assert code == 2 and out.count("\n") == 1 and out.startswith("thresher: error: ")
    assert store.query("SELECT count(*) FROM (SELECT * FROM items)").column(0)[0].as_py() == 1


@pytest.mark.parametrize("batch_rows", [1000, 65_536])
def test_jsonl_field_that_changes_type_is_refused_whatever_the_batch(
    store, tmp_path, batch_rows
) -> None:
    rows = [{"text": f"t{i}", "n": i} for i in range(5000)] + [{"text": "s", "n": "five"}]
    path = write_jsonl(tmp_path / "a.jsonl", rows)
    cfg = IngestConfig(text_column="text", batch_rows=batch_rows)
    refused(store, [path], cfg, r"a\.jsonl: column 'n' is string here but int64")


def test_an_id_as_int_string_and_float_never_makes_three_items(store, tmp_path) -> None:
    files = [
        write_jsonl(tmp_path / f"{i}.jsonl", [{"id": v, "text": "same"}])
        for i, v in enumerate([100, "100", 100.0])
    ]
    cfg = IngestConfig(id_column="id", text_column="text")
    refused(store, files, cfg, r"1\.jsonl: column 'id' is string here but int64")
    report = ingest(store, [str(files[0]), str(files[2])], cfg)
    assert (report.kept, report.rejected) == (1, 1)
    assert store.query("SELECT reason FROM rejects").column(0).to_pylist() == ["duplicate id 100.0"]


def test_int_and_float_are_widened_and_every_later_read_works(store, tmp_path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", [{"text": "one", "x": 1, "m": {"a": 1}}])
    pq.write_table(
        pa.table({"text": ["two"], "x": pa.array([2.5], pa.float32()), "m": [{"b": "s"}]}),
        tmp_path / "b.parquet",
    )
    ingest(store, [str(a), str(tmp_path / "b.parquet")], TEXT)
    got = store.query("SELECT x, m FROM items ORDER BY x").to_pylist()
    assert got == [{"x": 1.0, "m": {"a": 1, "b": None}}, {"x": 2.5, "m": {"a": None, "b": "s"}}]


# 2. an integer beyond int64


def test_integer_beyond_int64_rejects_only_its_row(store, tmp_path) -> None:
    path = write_jsonl(
        tmp_path / "a.jsonl",
        [
            {"text": "a", "n": 1},
            {"text": "b", "n": 2**70},
            {"text": "c", "n": {"deep": [-(2**64)]}},
        ],
    )
    report = ingest(store, [str(path)], TEXT)
    assert (report.kept, report.rejected) == (1, 2)
    rejects = store.query("SELECT row, reason FROM rejects ORDER BY row").to_pylist()
    assert rejects == [
        {"row": 2, "reason": "integer beyond int64 in column 'n'"},
        {"row": 3, "reason": "integer beyond int64 in column 'n'"},
    ]


# 5. role columns checked on every source


@pytest.mark.parametrize(
    "name, body, columns",
    [
        ("empty.jsonl", b"", "(none)"),
        ("invalid.jsonl", b"[1]\n{bad\n", "(none)"),
        ("header.csv", b"id,body\n", "id, body"),
    ],
)
def test_source_without_the_role_column_is_refused_even_when_it_has_no_rows(
    store, tmp_path, name, body, columns
) -> None:
    path = tmp_path / name
    path.write_bytes(body)
    match = re.escape(f"{name}: no column 'text' (--text-column); columns: {columns}")
    refused(store, [path], TEXT, match)


def test_init_sets_the_text_column_of_a_store_ingested_without_it(store, tmp_path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [{"body": "hello"}])
    ingest(store, [str(path)], IngestConfig())
    with pytest.raises(ThresherError, match=r"thresher init .* --text-column"):
        store.text_column()
    code, out = run_cli("init", store.root, "--text-column", "nope")
    assert code == 2 and "no column 'nope'" in out and "body" in out
    code, out = run_cli("init", store.root, "--text-column", "body")
    assert code == 0, out
    assert store.text_column() == "body"


# 6. embeddings no search can use


def test_zero_and_non_finite_embeddings_are_rejected(store, tmp_path) -> None:
    vecs = [[0.0, 0.0], [1.0, float("nan")], [float("inf"), 1.0], [1.0, 0.0], [1e300, 1.0]]
    pq.write_table(
        pa.table({"id": range(5), "emb": pa.array(vecs, pa.list_(pa.float64()))}),
        tmp_path / "e.parquet",
    )
    report = ingest(store, [str(tmp_path / "e.parquet")], IngestConfig(embedding_column="emb"))
    assert report.kept == 1
    reasons = store.query("SELECT reason FROM rejects ORDER BY row").column(0).to_pylist()
    assert reasons == [
        "zero embedding in column 'emb'",
        "non-finite embedding in column 'emb'",
        "non-finite embedding in column 'emb'",
        "non-finite embedding in column 'emb'",
    ]


def test_embedding_column_of_strings_is_refused(store, tmp_path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [{"emb": ["a", "b"]}])
    refused(store, [path], IngestConfig(embedding_column="emb"), "not a list of numbers")


# 7. rejects.row is the line a row starts on


def test_csv_reject_row_is_the_line_it_starts_on(store, tmp_path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b'id,text\n1,"two\nlines"\n2,\n\n3,"a ""q""\nb\nc"\n4,  \n5,x,y\n6,ok\n')
    report = ingest(store, [str(path)], TEXT)
    assert (report.kept, report.rejected) == (3, 3)
    rows = store.query("SELECT row, reason FROM rejects ORDER BY row").to_pylist()
    assert [r["row"] for r in rows] == [4, 9, 10]
    kept = store.query("SELECT id FROM items ORDER BY id").column(0).to_pylist()
    assert kept == [1, 3, 6]


def test_csv_reject_rows_stay_lines_across_blocks(store, tmp_path) -> None:
    lines, expect, line = ["id,text"], [], 2
    for i in range(20_000):
        if i % 500 == 0:
            rec = f"{i},a,b"  # wrong field count: pyarrow's own reject
        elif i % 333 == 0:
            rec = f"{i},"  # empty text: thresher's reject
        elif i % 7 == 0:
            rec = f'{i},"multi\nline ""q"" {i}"'
        else:
            rec = f"{i},text {i}"
        if i % 500 == 0 or (i % 333 == 0):
            expect.append(line)
        lines.append(rec)
        line += rec.count("\n") + 1
        if i % 1000 == 999:
            lines.append("")
            line += 1
    (tmp_path / "a.csv").write_text("\n".join(lines) + "\n")
    ingest(store, [str(tmp_path / "a.csv")], IngestConfig(text_column="text", batch_rows=300))
    assert store.query("SELECT row FROM rejects ORDER BY row").column(0).to_pylist() == expect


def test_jsonl_reject_row_is_its_line(store, tmp_path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"text": "a"}\n\n{"text": ""}\n')
    ingest(store, [str(path)], TEXT)
    assert store.query("SELECT row FROM rejects").column(0).to_pylist() == [3]


def test_reject_rows_are_json(store, tmp_path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [{"text": " "}])
    ingest(store, [str(path)], TEXT)
    raw = store.query("SELECT raw FROM rejects").column(0)[0].as_py()
    assert json.loads(raw) == {"text": " "}


# 8. what the fuzzer (test_ingest_fuzz.py) found


def test_column_names_that_do_not_print_are_quoted_in_one_line_messages(store, tmp_path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [{"\n": 1, "": 2, "a,b": 3, "ok": 4}])
    with pytest.raises(SourceError) as info:
        ingest(store, [str(path)], TEXT)
    assert str(info.value).endswith("columns: '\\n', '', 'a,b', ok")


def test_a_column_of_empty_objects_is_stored_as_nulls(store, tmp_path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [{"text": "a", "m": {}}, {"text": "b", "m": {}}])
    later = write_jsonl(tmp_path / "b.jsonl", [{"text": "c", "m": {"k": 1}}])
    ingest(store, [str(path), str(later)], TEXT)
    got = store.query("SELECT text, m FROM items ORDER BY text").to_pylist()
    assert got == [{"text": "a", "m": None}, {"text": "b", "m": None}, {"text": "c", "m": {"k": 1}}]
    nested = write_jsonl(tmp_path / "c.jsonl", [{"text": "d", "l": [{}]}])
    refused(store, [nested], TEXT, r"an empty object \(\{\}\) inside a value cannot be stored")


def test_an_embedding_source_with_no_rows_is_checked_and_leaves_the_views_readable(
    store, tmp_path
) -> None:
    pq.write_table(pa.table({"emb": pa.array([], pa.int32())}), tmp_path / "a.parquet")
    cfg = IngestConfig(embedding_column="emb")
    refused(store, [tmp_path / "a.parquet"], cfg, r"column 'emb' is int32, not a list of numbers")
    schema = pa.schema([("emb", pa.list_(pa.float32()))])
    pq.write_table(schema.empty_table(), tmp_path / "b.parquet")
    ingest(store, [str(tmp_path / "b.parquet")], cfg)
    assert store.query("SELECT * FROM embeddings").num_rows == 0


def test_a_csv_header_that_is_not_utf8_is_refused(store, tmp_path) -> None:
    (tmp_path / "a.csv").write_bytes(b"\x80\n1\n")
    refused(store, [tmp_path / "a.csv"], IngestConfig(), r"a\.csv: the CSV header is not UTF-8")


def test_a_column_name_given_twice_is_refused(store, tmp_path) -> None:
    (tmp_path / "a.csv").write_bytes(b"text,text\na,b\n")
    refused(store, [tmp_path / "a.csv"], IngestConfig(), "column 'text' appears more than once")


def test_a_second_text_column_is_refused_and_init_renames_it(store, tmp_path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", [{"text": "one", "body": "uno"}])
    b = write_jsonl(tmp_path / "b.jsonl", [{"text": "two", "body": "dos"}])
    ingest(store, [str(a)], TEXT)
    before = digest(store)
    with pytest.raises(ThresherError, match=r"--text-column 'body': the store's sources name"):
        ingest(store, [str(b)], IngestConfig(text_column="body"))
    assert digest(store) == before
    assert run_cli("init", store.root, "--text-column", "body")[0] == 0
    ingest(store, [str(b)], IngestConfig(text_column="body"))
    assert store.text_column() == "body"


def test_an_object_with_an_empty_key_is_refused(store, tmp_path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [{"text": "a", "m": {"0": {"": 1}}}])
    refused(store, [path], TEXT, r"column 'm' is .*: an object with an empty key")


@pytest.mark.parametrize("vectors", [[[]], [[1.0, 2.0], [], [0.5, 0.5]]])
def test_an_empty_embedding_is_rejected(store, tmp_path, vectors) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [{"emb": v} for v in vectors])
    report = ingest(store, [str(path)], IngestConfig(embedding_column="emb"))
    assert (report.kept, report.rejected) == (len(vectors) - 1, 1)
    assert store.query("SELECT reason FROM rejects").column(0).to_pylist() == [
        "empty embedding in column 'emb'"
    ]


@pytest.mark.parametrize(
    "lines",
    [
        [{"text": {"\n": None}}],  # a text column that is an object with a key "\n"
        [{"text": "a", "x": True}, {"text": "b", "x": {"\n": None}}],  # a type that changes
    ],
)
def test_an_error_quoting_a_line_break_stays_one_line(store: Store, tmp_path, lines) -> None:
    # found by the fuzz test: Arrow's type names print a field named "\n" as a line break
    write_jsonl(tmp_path / "a.jsonl", lines)
    before = digest(store)
    with pytest.raises(SourceError) as caught:
        ingest(store, [str(tmp_path / "a.jsonl")], TEXT)
    message = str(caught.value)
    assert "a.jsonl" in message and len(message.splitlines()) == 1 and "\\n" in message
    assert digest(store) == before  # nothing written
    code, output = run_cli("ingest", store.root, tmp_path / "a.jsonl", "--text-column", "text")
    assert code == 2 and len(output.strip().splitlines()) == 1
