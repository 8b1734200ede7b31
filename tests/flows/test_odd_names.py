"""Column names with quotes survive every command (issue #14): identifiers are quoted
wherever SQL is built."""

from __future__ import annotations

import pyarrow.parquet as pq
from click.testing import CliRunner

from thresher.flows.cli import cli

from tests.helpers import write_jsonl

TEXT = 'te"xt'
ODD = "we ird'name"
VEC = 'v"e c'


def run(*args: object) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_quoted_column_names_through_ingest_dedup_select_and_export(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("THRESHER_LOCAL_MAX_ROWS", "1000000")  # in-process: no Ray needed
    # 20 texts with no word in common, each twice: 20 exact duplicates, nothing fuzzy
    rows = [
        {
            TEXT: " ".join(f"w{(i % 20) * 8 + k}" for k in range(8)),
            ODD: i,
            "lab'el": i % 2,
            VEC: [float(i % 20 == k) + 0.1 for k in range(20)],
        }
        for i in range(40)
    ]
    write_jsonl(tmp_path / "a.jsonl", rows)
    store = tmp_path / "s"
    run("init", store)
    run(
        "ingest",
        store,
        tmp_path / "a.jsonl",
        "--text-column",
        TEXT,
        "--id-column",
        ODD,
        "--label-column",
        "lab'el",
        "--embedding-column",
        VEC,
        "-q",
    )
    run("dedup", store, "--exact", "--fuzzy", "0.5", "-q")
    out = run("sql", store, "SELECT count(*) AS n FROM duplicates", "--format", "csv")
    assert out.split()[-1] == "20"
    out = run("sql", store, "SELECT count(*) AS n FROM embeddings", "--format", "csv")
    assert out.split()[-1] == "40"
    run("dedup", store, "--semantic", "0.99", "--model", VEC, "-q")
    run("score", store, "--model", VEC, "--clusters", "2")
    run("select", store, "pick", "--keep", "0.5", "--policy", "random", "--balance", "label")
    run("export", store, "pick", tmp_path / "out")
    table = pq.read_table(tmp_path / "out")
    assert {TEXT, ODD, "lab'el", "weight"} <= set(table.column_names)
    assert table.num_rows == 10
