from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from thresher.storage.store import StageCounts, Store

from tests.helpers import snapshot


def test_init_creates_queryable_empty_views(store: Store) -> None:
    for table, columns in [
        ("items", ["item_id", "batch_id"]),
        ("duplicates", ["item_id", "kept_id", "method", "similarity", "run_id"]),
        ("selections", ["selection", "item_id", "weight", "run_id"]),
    ]:
        result = store.query(f"SELECT * FROM {table}")
        assert result.num_rows == 0
        assert result.column_names == columns


def test_open_refuses_a_directory_that_is_not_a_store(tmp_path) -> None:
    with pytest.raises(ValueError, match="not a thresher store"):
        Store(tmp_path)


def test_committed_run_is_visible_to_any_duckdb_client(store: Store) -> None:
    with store.run("test", {"k": 1}) as run:
        run.write_table(
            "scores",
            pa.table(
                {
                    "item_id": [1, 2],
                    "metric": ["m", "m"],
                    "value": [0.5, 0.25],
                    "run_id": [run.run_id] * 2,
                }
            ),
        )
        run.record(StageCounts("score", "", 2, 2, 0, 0))
    con = duckdb.connect(str(store.catalog_path), read_only=True)
    assert con.execute("SELECT sum(value) FROM scores").fetchall() == [(0.75,)]
    assert con.execute("SELECT flow, status, rows_in, rows_kept FROM runs").fetchall() == [
        ("test", "succeeded", 2, 2)
    ]
    con.close()
    assert not list(store.root.rglob("*.tmp"))


def test_failed_run_leaves_store_unchanged(store: Store) -> None:
    before = snapshot(store)
    with pytest.raises(RuntimeError), store.run("test") as run:
        w = run.writer("scores")
        w.write(pa.table({"item_id": [1], "metric": ["m"], "value": [1.0], "run_id": [1]}))
        raise RuntimeError("killed")
    assert snapshot(store) == before


def test_unregistered_files_are_invisible_and_removed(store: Store) -> None:
    orphan = store.root / "tables" / "scores" / "run000099-00001.parquet"
    orphan.parent.mkdir(parents=True)
    pa.parquet.write_table(pa.table({"item_id": [1]}), orphan)
    assert store.query("SELECT count(*) AS n FROM scores").column("n")[0].as_py() == 0
    with store.run("noop"):
        pass
    assert not orphan.exists()


def test_a_second_writer_is_refused(store: Store) -> None:
    with (
        store.run("first"),
        pytest.raises(ValueError, match="being written"),
        Store(store.root).run("second"),
    ):
        pass


def test_accounting_must_balance(store: Store) -> None:
    with pytest.raises(AssertionError, match="in != "), store.run("bad") as run:
        run.record(StageCounts("s", "", rows_in=3, kept=1, dropped=1, rejected=0))


def test_views_follow_a_moved_store(store: Store, tmp_path) -> None:
    with store.run("test") as run:
        run.write_table(
            "scores", pa.table({"item_id": [7], "metric": ["m"], "value": [1.0], "run_id": [1]})
        )
    moved = store.root.rename(tmp_path / "moved")
    assert Store(moved).query("SELECT item_id FROM scores").column(0).to_pylist() == [7]
