"""Property tests of ingest over generated sources (issue #14): arbitrary bytes, arbitrary
JSON values, CSV quoting, small Parquet files with random schemas.

Whatever the input: no exception but a `ThresherError` (the command line's exit 2), rows
in = items + rejects after a success, and a failed ingest leaves every file of the store
byte for byte as it was. Ingest runs in this process (no Ray: it never uses it).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thresher.flows.cli import cli
from thresher.storage.errors import ThresherError
from thresher.storage.ingest import IngestConfig, ingest
from thresher.storage.store import Store

FUZZ = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CONFIGS = st.sampled_from(
    [
        IngestConfig(),
        IngestConfig(text_column="text"),
        IngestConfig(text_column="text", id_column="id"),
        IngestConfig(text_column="text", batch_rows=2),
        IngestConfig(embedding_column="emb"),
    ]
)


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def count(store: Store, table: str) -> int:
    return int(store.query(f"SELECT count(*) FROM {table}").column(0)[0].as_py())


def check_ingest(folder: Path, files: list[Path], cfg: IngestConfig) -> bool:
    """Ingest `files` into a new store and check the properties; whether it succeeded."""
    store = Store.init(folder / "store")
    before = digest(store.root)
    try:
        report = ingest(store, [str(f) for f in files], cfg)
    except ThresherError as exc:
        assert str(exc).strip() and "\n" not in str(exc).strip()
        assert digest(store.root) == before
        return False
    rows_in = sum(s.rows_in for s in report.sources)
    assert rows_in == report.kept + report.rejected
    assert count(store, "items") + count(store, "rejects") == rows_in
    store.query("SELECT * FROM items")  # every column reads back as one type
    store.query("SELECT * FROM embeddings")
    return True


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
KEYS = st.sampled_from(["text", "id", "emb", "x", 'te"xt', ""])


@FUZZ
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".jsonl", ".csv"]), cfg=CONFIGS)
def test_arbitrary_bytes(tmp_path_factory, data, suffix, cfg) -> None:
    folder = tmp_path_factory.mktemp("bytes")
    path = folder / f"src{suffix}"
    path.write_bytes(data)
    check_ingest(folder, [path], cfg)


@FUZZ
@given(
    lines=st.lists(st.dictionaries(KEYS, JSON, max_size=4) | JSON, max_size=8),
    split=st.integers(0, 8),
    cfg=CONFIGS,
)
def test_arbitrary_json_values(tmp_path_factory, lines, split, cfg) -> None:
    folder = tmp_path_factory.mktemp("json")
    files = []
    for name, part in (("a", lines[:split]), ("b", lines[split:])):  # one source, or two
        if part or (name == "b" and not files):
            files.append(folder / f"{name}.jsonl")
            files[-1].write_text("".join(json.dumps(v) + "\n" for v in part))
    check_ingest(folder, files, cfg)


FIELD = st.text(alphabet='ab ,"\n\r\t\xe9', max_size=6)


@FUZZ
@given(
    header=st.lists(st.sampled_from(["text", "id", "x", "y z"]), min_size=1, max_size=3),
    rows=st.lists(st.lists(FIELD, min_size=0, max_size=4), max_size=8),
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]),
    cfg=CONFIGS,
)
def test_csv_quoting(tmp_path_factory, header, rows, quoting, cfg) -> None:
    folder = tmp_path_factory.mktemp("csv")
    out = io.StringIO()
    writer = csv.writer(out, quoting=quoting, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path = folder / "src.csv"
    path.write_text(out.getvalue())
    check_ingest(folder, [path], cfg)


ARROW_TYPES = st.sampled_from(
    [
        pa.int32(),
        pa.int64(),
        pa.float32(),
        pa.float64(),
        pa.string(),
        pa.bool_(),
        pa.null(),
        pa.list_(pa.float32()),
        pa.list_(pa.int64()),
        pa.struct([("a", pa.int64())]),
        pa.binary(),
    ]
)


@st.composite
def parquet_tables(draw) -> pa.Table:
    n = draw(st.integers(0, 4))
    columns = draw(st.dictionaries(st.sampled_from(["text", "id", "emb", "x"]), ARROW_TYPES))
    arrays = {}
    for name, kind in columns.items():
        values = draw(st.lists(st.none() | _values(kind), min_size=n, max_size=n))
        arrays[name] = pa.array(values, kind)
    return pa.table(arrays) if arrays else pa.table({"x": pa.array([None] * n, pa.null())})


def _values(kind: pa.DataType) -> st.SearchStrategy:
    if pa.types.is_integer(kind):
        return st.integers(-(2**31), 2**31 - 1)
    if pa.types.is_floating(kind):
        return st.floats(width=32)
    if pa.types.is_string(kind):
        return st.text(max_size=5)
    if pa.types.is_binary(kind):
        return st.binary(max_size=5)
    if pa.types.is_boolean(kind):
        return st.booleans()
    if pa.types.is_list(kind):
        return st.lists(_values(kind.value_type), max_size=3)
    if pa.types.is_struct(kind):
        return st.fixed_dictionaries({"a": st.integers(-5, 5)})
    return st.none()


@FUZZ
@given(tables=st.lists(parquet_tables(), min_size=1, max_size=3), cfg=CONFIGS)
def test_parquet_random_schemas(tmp_path_factory, tables, cfg) -> None:
    folder = tmp_path_factory.mktemp("parquet")
    files = []
    for i, table in enumerate(tables):
        files.append(folder / f"src{i}.parquet")
        pq.write_table(table, files[-1])
    check_ingest(folder, files, cfg)


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.binary(max_size=200), suffix=st.sampled_from([".jsonl", ".csv"]))
def test_command_line_exits_0_or_2(tmp_path_factory, data, suffix) -> None:
    folder = tmp_path_factory.mktemp("cli")
    store = Store.init(folder / "store")
    (folder / f"src{suffix}").write_bytes(data)
    args = ["ingest", str(store.root), str(folder / f"src{suffix}"), "-q", "--text-column", "text"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code in (0, 2), result.exception
    if result.exit_code == 2:
        assert result.output.startswith("thresher: error: ") and result.output.count("\n") == 1
