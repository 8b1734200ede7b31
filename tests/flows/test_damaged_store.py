"""A damaged store as a user meets it: a table file deleted or cut short, or a damaged
catalog. Every command answers one line naming the file, with `thresher check` as the
fix, and exit code 2; commands that do not need the damaged table still work."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.flows.test_cli import THRESHER
from tests.helpers import write_jsonl

# the commands run in-process (no Ray) on these small stores
ENV = {**os.environ, "THRESHER_LOCAL_MAX_ROWS": "200000"}


def run(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [THRESHER, *map(str, args)], capture_output=True, text=True, timeout=300, env=ENV
    )


def ok(*args: object) -> str:
    proc = run(*args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def make_store(folder: Path) -> Path:
    """Two ingest runs (one items file each)."""
    store = folder / "s"
    for n, name in enumerate(("a", "b")):
        rows = [{"id": n * 100 + i, "text": f"text {n} {i}"} for i in range(100)]
        write_jsonl(folder / f"{name}.jsonl", rows)
    ok("init", store)
    ok("ingest", "-q", store, folder / "a.jsonl", "--text-column", "text")
    ok("ingest", "-q", store, folder / "b.jsonl", "--text-column", "text")
    return store


def halve(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def one_line_error(proc: subprocess.CompletedProcess, *words: str) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("thresher: error: "), proc.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


NEEDS_ITEMS = [
    ["sql", "{s}", "SELECT count(*) FROM items"],
    ["sql", "{s}", "SELECT text FROM items WHERE id = 3"],
    ["dedup", "{s}", "--exact", "-q"],
    ["select", "{s}", "train", "--keep", "0.5", "--policy", "random", "--balance", "none"],
]


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_a_damaged_table_file_is_one_line_naming_it(tmp_path, damage) -> None:
    store = make_store(tmp_path).rename(tmp_path / "moved")  # the catalog's views are stale
    bad = store / "tables" / "items" / "run000001-00001.parquet"
    bad.unlink() if damage == "missing" else halve(bad)
    for args in NEEDS_ITEMS:
        proc = run(*[a.format(s=store) for a in args])
        one_line_error(proc, "tables/items/run000001-00001.parquet", f"thresher check {store}")
    # what does not read items still answers
    assert ok("sql", store, "SELECT count(*) AS n FROM runs", "--format", "csv") == "n\n2\n"
    assert ok("runs", store, "--format", "csv").count("ingest,succeeded") == 2
    assert ok("sql", store, "SELECT count(*) AS n FROM files", "--format", "csv") == "n\n2\n"


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_catalog_is_one_line_for_every_command(tmp_path, damage) -> None:
    store = make_store(tmp_path)
    catalog = store / "catalog.duckdb"
    if damage == "truncated":
        halve(catalog)
    else:
        catalog.write_bytes(os.urandom(100_000))
    for args in [
        ["sql", store, "SELECT count(*) FROM runs"],
        ["sql", store, "SELECT count(*) FROM items"],
        ["runs", store],
        ["dedup", store, "--exact", "-q"],
        ["ingest", "-q", store, tmp_path / "a.jsonl"],
        ["init", store],
    ]:
        one_line_error(run(*args), str(catalog), f"thresher check {store}")


def test_check_passes_a_healthy_store(tmp_path) -> None:
    store = make_store(tmp_path)
    assert ok("check", store).strip() == "ok: 1 tables, 2 files, 200 rows"


@pytest.mark.parametrize("damage", ["missing", "truncated", "other rows"])
def test_check_names_a_damaged_table_file_and_exits_2(tmp_path, damage) -> None:
    store = make_store(tmp_path)
    bad = store / "tables" / "items" / "run000002-00001.parquet"
    if damage == "missing":
        bad.unlink()
    elif damage == "truncated":
        halve(bad)
    else:  # a whole Parquet file, but not the one registered
        import pyarrow.parquet as pq

        pq.write_table(pq.read_table(bad).slice(0, 10), bad)
    proc = run("check", store)
    one_line_error(proc, "1 problem")
    expected = {"missing": "missing", "truncated": "not readable Parquet", "other rows": "10 rows"}
    assert "tables/items/run000002-00001.parquet" in proc.stdout
    assert expected[damage] in proc.stdout and "--repair" in proc.stdout


def test_check_of_a_garbage_catalog_is_one_line(tmp_path) -> None:
    store = make_store(tmp_path)
    (store / "catalog.duckdb").write_bytes(os.urandom(100_000))
    proc = run("check", store)
    one_line_error(proc, str(store / "catalog.duckdb"), "restore it from a backup")
    assert proc.stdout == ""


def test_check_repair_unregisters_the_damaged_run_and_a_rerun_redoes_it(tmp_path) -> None:
    store = make_store(tmp_path)
    (store / "tables" / "items" / "run000001-00001.parquet").unlink()
    out = ok("check", store, "--repair")
    assert "repair: run 1: unregistered 1 items file(s) (100 rows)" in out
    assert "sources to ingest again: " in out and "a.jsonl" in out
    assert out.strip().endswith("ok: 1 tables, 1 files, 100 rows")
    assert ok("sql", store, "SELECT count(*) AS n FROM items", "--format", "csv") == "n\n100\n"
    runs = ok("sql", store, "SELECT run_id, status FROM runs ORDER BY 1", "--format", "csv")
    assert runs == "run_id,status\n1,repaired\n2,succeeded\n"
    ok("ingest", "-q", store, tmp_path / "a.jsonl", "--text-column", "text")
    assert ok("sql", store, "SELECT count(*) AS n FROM items", "--format", "csv") == "n\n200\n"
    assert ok("check", store).strip() == "ok: 1 tables, 2 files, 200 rows"
