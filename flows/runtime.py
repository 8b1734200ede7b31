"""How the wiring runs work without the data passing through the driver.

A stage's input is selected by a `queries.Query` and written once, by a Ray
task running DuckDB, to a staged Parquet file under the run's scratch folder
(`STORE/work/run<N>/`, deleted when the run commits or aborts). The stage's
workers read that file's row groups themselves (`run_stage`), and their
results stream into the run's table writers as they arrive. Global steps run
as one Ray task each (`run_task`) over such files, writing their output to a
file the run `reserve`d and then `adopt`s, so the driver only orchestrates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from thresher.storage.queries import Query
from thresher.storage.ray_adapter import run_stage, run_task
from thresher.storage.stage import Stage
from thresher.storage.store import Run, Store

Progress = Callable[[int, int], None] | None


@dataclass(frozen=True)
class Staged:
    """A stage's input: staged Parquet files (none when empty) and their row count."""

    paths: list[str]
    rows: int


def _copy(store: Store, query: Query, path: str, column: str | None = None) -> int:
    return store.copy_to(
        query.sql, Path(path), query.params, sandbox=query.user_sql, partition_by=column
    )


def stage(run: Run, name: str, query: Query) -> Staged:
    """Write `query`'s result to the run's scratch file `name`.parquet (in a Ray task)."""
    path = run.scratch(f"{name}.parquet")
    rows = run_task(_copy, run.store, query, str(path), rows=run.store.item_count(), cpus=1)
    return Staged([str(path)] if rows else [], rows)


def stage_parts(run: Run, name: str, query: Query, column: str) -> Path:
    """Write `query`'s result to the run's scratch folder `name`, one folder per value of
    `column` (`column=value/*.parquet`, see `Store.copy_to`), in a Ray task; no ORDER BY
    needed for readers that each want one value's rows."""
    path = run.scratch(name)
    run_task(_copy, run.store, query, str(path), column, rows=run.store.item_count(), cpus=1)
    return path


def write_query(run: Run, table: str, query: Query) -> int:
    """Add `query`'s result to `table` as a new file of this run (in a Ray task); its rows."""
    path = run.reserve(table)
    run_task(_copy, run.store, query, str(path), rows=run.store.item_count(), cpus=1)
    return run.adopt(table, path)


def stream(
    stage_: Stage,
    staged: Staged,
    *,
    columns: list[str] | None = None,
    batch_rows: int = 16_384,
    on_progress: Progress = None,
) -> Iterator[pa.Table]:
    """`stage_` over the staged files' pieces, results in input order as they arrive."""
    if not staged.rows:
        return iter(())
    return run_stage(
        stage_, staged.paths, columns=columns, batch_rows=batch_rows, on_progress=on_progress
    )


def sample_rows(paths: list[str], limit: int, seed: int, column: str = "label") -> pa.Table:
    """The staged rows with a `column` value, all of them up to `limit`, else a seeded
    sample of `limit`, in file order, read a row group at a time."""
    files = [pq.ParquetFile(p) for p in paths]
    values = [pq.read_table(p, columns=[column]).column(0) for p in paths]
    labelled = np.flatnonzero(np.concatenate([c.is_valid().to_numpy(False) for c in values]))
    pick = np.random.default_rng(seed).choice(len(labelled), min(len(labelled), limit), False)
    keep = labelled[np.sort(pick)]
    out, start = [], 0
    for f in files:
        for g in range(f.metadata.num_row_groups):
            rows = f.metadata.row_group(g).num_rows
            lo, hi = np.searchsorted(keep, [start, start + rows])
            if hi > lo:
                out.append(f.read_row_group(g).take(pa.array(keep[lo:hi] - start)))
            start += rows
    return pa.concat_tables(out)


def labelled_sample(
    paths: list[str], limit: int, seed: int
) -> tuple[pa.Table, np.ndarray, list[str]]:
    """`sample_rows` of the labelled rows, with each row's class number (n,) and the
    classes (sorted label texts) the numbers index."""
    table = sample_rows(paths, limit, seed)
    names = table.column("label").to_pylist()
    classes = sorted(set(names))
    code = {c: i for i, c in enumerate(classes)}
    return table, np.array([code[v] for v in names], np.int64), classes
