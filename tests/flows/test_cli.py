"""The command line as a user meets it: real processes, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.storage.store import Store

from tests.helpers import snapshot, write_jsonl

COMMANDS = [
    "init",
    "ingest",
    "sql",
    "runs",
    "check",
    "dedup",
    "langid",
    "decontaminate",
    "embed",
    "search",
    "score",
    "select",
    "export",
    "publish",
    "pii",
    "tokens",
    "plan",
    "learn",
    "label",
    "demo",
    "run",
    "schedule",
    "config",
]
# The console script of the environment running the tests (CI does not activate the venv).
THRESHER = str(Path(sys.executable).with_name("thresher"))


def thresher(
    *args: str, check: bool = True, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [THRESHER, *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"thresher {' '.join(map(str, args))} -> {proc.returncode}\n"
            f"{proc.stdout}\n{proc.stderr}"
        )
    return proc


def records(n: int) -> list[dict]:
    return [{"id": i, "text": f"text {i}", "topic": "t"} for i in range(n)]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command) -> None:
    out = thresher(command, "--help").stdout
    assert "Usage: thresher " + command in out


def test_ingest_then_count_with_sql(tmp_path) -> None:
    write_jsonl(tmp_path / "a.jsonl", records(60))
    thresher("init", tmp_path / "s")
    out = thresher("ingest", tmp_path / "s", tmp_path / "a.jsonl", "--text-column", "text").stdout
    assert "60 rows kept, 0 rejected" in out
    sql = thresher("sql", tmp_path / "s", "SELECT count(*) AS n FROM items", "--format", "csv")
    assert sql.stdout == "n\n60\n"
    stages = json.loads(thresher("runs", tmp_path / "s", "--stages", "--format", "json").stdout)
    assert [(s["flow"], s["stage"], s["rows_kept"]) for s in stages] == [("ingest", "ingest", 60)]
    assert stages[0]["seconds"] > 0  # a run's only stage takes the run's wall time
    js = thresher(
        "sql", tmp_path / "s", "SELECT id, text FROM items ORDER BY id LIMIT 2", "--format", "json"
    )
    assert json.loads(js.stdout) == [{"id": 0, "text": "text 0"}, {"id": 1, "text": "text 1"}]
    thresher(
        "sql",
        tmp_path / "s",
        "SELECT * FROM items",
        "--format",
        "parquet",
        "--out",
        tmp_path / "o.parquet",
    )
    assert pq.read_table(tmp_path / "o.parquet").num_rows == 60
    runs = thresher("runs", tmp_path / "s", "--format", "csv").stdout.splitlines()
    assert runs[0].startswith("run_id,flow,status") and runs[1].startswith("1,ingest,succeeded")


def test_truncated_parquet_is_one_line_exit_2_store_unchanged(tmp_path) -> None:
    pq.write_table(pa.Table.from_pylist(records(500)), tmp_path / "full.parquet")
    data = (tmp_path / "full.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) - 100])
    thresher("init", tmp_path / "s")
    before = snapshot(Store(tmp_path / "s"))
    proc = thresher("ingest", tmp_path / "s", tmp_path / "cut.parquet", check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cut.parquet" in lines[0] and lines[0].startswith("thresher: error")
    assert snapshot(Store(tmp_path / "s")) == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["sql", "{s}", "INSERT INTO runs VALUES (1)"], "read-only: INSERT"),
        (["sql", "{s}", "COPY (SELECT 1) TO '/tmp/x.csv'"], "read-only: COPY"),
        (["sql", "{s}", "SELEC nonsense"], "SQL: Parser Error"),
        (["sql", "{s}", "SELECT * FROM nowhere"], "nowhere"),
        (["sql", "{s}", "SELECT 1", "--format", "parquet"], "needs --out"),
        (["sql", "{missing}", "SELECT 1"], "not a thresher store"),
        (["ingest", "{s}", "{missing}/x.jsonl"], "no such file"),
        (["ingest", "{s}", "{data}", "--text-column", "body"], "no column 'body'"),
        (["ingest", "{s}", "{data}", "--format", "xml"], "Invalid value for '--format'"),
        (["dedup", "{s}", "--fuzzy", "1.5"], "Invalid value for '--fuzzy'"),
        (["dedup", "{s}", "--semantic", "0.9"], "has no embeddings"),
        (["search", "{s}", "--text", "x"], "has no embeddings"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(tmp_path, args, message) -> None:
    write_jsonl(tmp_path / "a.jsonl", records(3))
    thresher("init", tmp_path / "s")
    subs = {"s": tmp_path / "s", "missing": tmp_path / "missing", "data": tmp_path / "a.jsonl"}
    proc = thresher(*[a.format(**subs) for a in args], check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    if args[0] == "sql":
        assert len(proc.stderr.strip().splitlines()) == 1


def test_sql_is_answered_while_a_flow_is_writing(tmp_path) -> None:
    thresher("init", tmp_path / "s")
    for i in range(12):
        write_jsonl(tmp_path / f"f{i}.jsonl", [{"text": f"file {i} row {j}"} for j in range(50)])
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        from thresher.storage.store import Store
        from thresher.storage.ingest import ingest, IngestConfig
        for i in range(12):
            ingest(Store({str(tmp_path / "s")!r}), [{str(tmp_path)!r} + f'/f{{i}}.jsonl'],
                   IngestConfig(text_column='text'))
    """),
        ]
    )
    counts = []
    try:
        while writer.poll() is None:
            out = thresher("sql", tmp_path / "s", "SELECT count(*) FROM items", "--format", "csv")
            counts.append(int(out.stdout.splitlines()[1]))
    finally:
        writer.wait(timeout=120)
    assert writer.returncode == 0
    assert counts and counts == sorted(counts) and all(c % 50 == 0 for c in counts)
    assert (
        thresher("sql", tmp_path / "s", "SELECT count(*) FROM items", "--format", "csv").stdout
        == "count_star()\n600\n"
    )


def test_ingest_without_text_column_takes_the_obvious_one_and_config_reads_columns(
    tmp_path,
) -> None:
    rows = [{"pid": i, "summary": f"package {i} does things", "family": "f"} for i in range(5)]
    write_jsonl(tmp_path / "a.jsonl", rows)
    write_jsonl(tmp_path / "b.jsonl", [{"title": "a", "notes": "b"}])
    thresher("init", tmp_path / "s")
    out = thresher("ingest", tmp_path / "s", tmp_path / "a.jsonl")
    assert "text column: 'summary' (the usual text name among the text columns summary, " in (
        out.stderr
    )
    assert Store(tmp_path / "s").text_column() == "summary"
    thresher("init", tmp_path / "t")
    bad = thresher("ingest", tmp_path / "t", tmp_path / "b.jsonl", check=False)
    assert bad.returncode == 2
    assert bad.stderr == (
        f"thresher: error: {tmp_path / 'b.jsonl'}: several text columns (title, notes); "
        "name one with --text-column\n"
    )
    config = thresher("config", tmp_path / "a.jsonl").stdout
    assert 'text_column = "summary"  # guessed from' in config
    assert 'label_column = "family"  # guessed from' in config


def test_version_and_usage_errors_are_one_line() -> None:
    from importlib.metadata import version

    assert thresher("--version").stdout.strip() == f"thresher, version {version('thresher')}"
    bad = thresher("select", "s", "train", "--keep", "0", check=False)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "thresher: error: thresher select: Invalid value for '--keep': 0.0 is not in the "
        "range 0<x<=1."
    ]
    assert thresher("nosuch", check=False).stderr == "thresher: error: No such command 'nosuch'.\n"


def test_demo_runs_the_curate_flow_end_to_end(tmp_path) -> None:
    out = thresher("demo", cwd=tmp_path).stdout  # no --store: ./thresher-demo
    demo = tmp_path / "thresher-demo"
    assert f"building the demo store in {demo}" in out
    # the hints name the command as it was started: the venv's path unless it is on PATH
    on_path = shutil.which("thresher") and Path(shutil.which("thresher")).samefile(THRESHER)
    program = "thresher" if on_path else os.path.relpath(THRESHER, tmp_path)
    assert f"next: {program} sql {demo / 'store'}" in out
    s = Store(demo / "store")
    stages = {
        r["stage"]: r
        for r in s.query(
            "SELECT stage, rows_in, rows_kept, rows_dropped, rows_rejected FROM stages "
            "WHERE run_id = "
            "(SELECT max(run_id) FROM runs WHERE flow = 'curate')"
        ).to_pylist()
    }
    assert list(stages) == [
        *("ingest", "filter", "dedup", "embed", "semantic", "score", "select", "publish")
    ]
    assert stages["ingest"]["rows_kept"] == 3000 and stages["ingest"]["rows_dropped"] == 0
    assert stages["ingest"]["rows_rejected"] == 4  # unreadable rows are not "dropped"
    counts = dict(
        tuple(r.values())
        for r in s.query("SELECT method, count(*) AS n FROM duplicates GROUP BY method").to_pylist()
    )
    assert set(counts) == {"exact", "fuzzy", "semantic"} and all(counts.values())
    assert f"{counts['exact']} exact, {counts['fuzzy']} fuzzy" in out
    assert "funnel search:" in out and "published selection 'train'" in out
    # the config the demo wrote runs again from the command line, with nothing left to do
    again = thresher("run", "-q", demo / "curate.toml").stdout
    assert again.count("skipped") == 8


def test_pii_then_redacted_export(tmp_path) -> None:
    texts = ["mail a@example.com now", "from 10.1.2.3", "clean"]
    write_jsonl(tmp_path / "a.jsonl", [{"id": i, "text": t} for i, t in enumerate(texts)])
    s = tmp_path / "s"
    thresher("init", s)
    thresher("ingest", s, tmp_path / "a.jsonl", "--text-column", "text", "--id-column", "id")
    thresher("select", s, "all", "--keep", "1", "--policy", "random", "--balance", "none")
    refused = thresher("export", s, "all", tmp_path / "o", "--redact-pii", check=False)
    assert refused.returncode == 2 and "thresher pii" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    out = thresher("pii", s).stdout
    assert "3 items scanned, 2 with PII (1 email, 1 ip)" in out
    thresher("export", s, "all", tmp_path / "o", "--redact-pii")
    table = pq.read_table(tmp_path / "o").sort_by("id")
    assert table.column("text").to_pylist() == ["mail <EMAIL> now", "from <IP>", "clean"]


def test_tokens_then_plan(tmp_path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [{"id": i, "text": "the cat sat"} for i in range(4)])
    s = tmp_path / "s"
    thresher("init", s)
    thresher("ingest", s, tmp_path / "a.jsonl", "--text-column", "text", "--id-column", "id")
    early = thresher("plan", s, "--params", "1k", check=False)
    assert early.returncode == 2 and "thresher tokens" in early.stderr
    bad = thresher("tokens", s, "--tokenizer", tmp_path, check=False)
    assert bad.returncode == 2 and "tokenizer.json" in bad.stderr
    assert "4 items counted, 12 tokens" in thresher("tokens", s).stdout
    out = thresher("plan", s, "--params", "125M").stdout
    assert "2,500,000,000" in out and "kept tokens: 12 in 4 items" in out
    assert "--keep-tokens 12" in out
