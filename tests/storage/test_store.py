from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
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


def test_append_checks_rows_against_the_catalog_schema(store: Store) -> None:
    with store.run("test") as run:
        run.append("scores", item_id=[1, 2], metric="m", value=np.array([0.5, 0.25]))
        with pytest.raises(ValueError, match=r"unknown: bogus, missing: value"):
            run.append("scores", item_id=[1], metric="m", bogus=[1.0])
        with pytest.raises(ValueError, match="column 'value'"):
            run.append("scores", item_id=[1], metric="m", value=["high"])
        with pytest.raises(ValueError, match="different lengths"):
            run.append("scores", item_id=[1, 2], metric="m", value=[0.1])
        with pytest.raises(ValueError, match="unknown table 'scorez'"):
            run.append("scorez", item_id=[1])
    rows = store.query("SELECT item_id, metric, value, run_id FROM scores ORDER BY item_id")
    assert rows.to_pylist() == [
        {"item_id": 1, "metric": "m", "value": 0.5, "run_id": run.run_id},
        {"item_id": 2, "metric": "m", "value": 0.25, "run_id": run.run_id},
    ]


def test_scratch_files_live_only_as_long_as_their_run(store: Store) -> None:
    with store.run("test") as run:
        staged = run.scratch("input.parquet")
        rows = store.copy_to("SELECT range AS i FROM range(20480)", staged, row_group_rows=4096)
        # row groups are what workers read as pieces (DuckDB rounds to 2,048-row vectors)
        assert rows == 20480 and pq.ParquetFile(staged).metadata.num_row_groups == 5
    assert not (store.root / "work").exists()
    with pytest.raises(RuntimeError), store.run("test") as run:
        run.scratch("input.parquet").write_bytes(b"x")
        raise RuntimeError("killed")
    assert not (store.root / "work").exists()
    # a run that died before cleaning up: the next run removes what it left
    (store.root / "work" / "run000099").mkdir(parents=True)
    with store.run("test") as run:
        run.record(StageCounts("t", "", 0, 0, 0, 0))
    assert not (store.root / "work").exists()


def test_a_discarded_run_leaves_nothing(store: Store) -> None:
    with store.run("test") as run:
        run.append("scores", item_id=[1], metric="m", value=[0.5])
        run.discard()
    assert store.query("SELECT count(*) FROM runs").column(0)[0].as_py() == 0
    assert store.query("SELECT count(*) FROM scores").column(0)[0].as_py() == 0
    assert not list(store.root.rglob("*.parquet*"))


def test_a_file_written_by_another_process_is_adopted_after_its_schema_check(
    store: Store,
) -> None:
    with store.run("test") as run:
        good, bad = run.reserve("scores"), run.reserve("scores")
        pq.write_table(
            pa.table({"item_id": [7], "metric": ["m"], "value": [1.0], "run_id": [run.run_id]}),
            good,
        )
        pq.write_table(pa.table({"item_id": [8], "metric": ["m"]}), bad)
        assert run.adopt("scores", good) == 1
        with pytest.raises(ValueError, match="column 'value'"):
            run.adopt("scores", bad)
        bad.unlink()
    assert store.query("SELECT item_id FROM scores").column(0).to_pylist() == [7]
