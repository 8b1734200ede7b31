from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from thresher.storage.ray_adapter import pieces, run_stage
from thresher.storage.stage import Resources, Stage


class Double(Stage):
    name = "double"
    resources = Resources(cpus=0.5)
    required_columns = ("x",)

    def process(self, batch: pa.Table) -> pa.Table:
        return batch.append_column("y", pc.multiply(batch.column("x"), 2))


class Tagged(Stage):
    """Stateful: records which process set it up, and how often."""

    name = "tagged"
    resources = Resources(cpus=0.5)

    def setup(self) -> None:
        self.pid = os.getpid()
        self.setups = getattr(self, "setups", 0) + 1

    def process(self, batch: pa.Table) -> pa.Table:
        n = batch.num_rows
        return pa.table(
            {"x": batch.column("x"), "pid": [self.pid] * n, "setups": [self.setups] * n}
        )


def test_resources_are_validated() -> None:
    with pytest.raises(ValueError, match="resources must be >= 0"):
        Resources(cpus=-1)
    with pytest.raises(ValueError, match="some cpus or gpus"):
        Resources(cpus=0, gpus=0)


def test_stateless_stage_runs_as_tasks_in_input_order(ray_session) -> None:
    assert not Double().stateful
    table = pa.table({"x": list(range(1000))})
    out = pa.concat_tables(run_stage(Double(), table, batch_rows=37))
    assert out.column("x").to_pylist() == list(range(1000))
    assert out.column("y").to_pylist() == [2 * i for i in range(1000)]


def test_stateful_stage_runs_as_actors_set_up_once_each(ray_session) -> None:
    assert Tagged().stateful
    table = pa.table({"x": list(range(200))})
    done = []
    out = pa.concat_tables(
        run_stage(
            Tagged(), table, batch_rows=10, workers=2, on_progress=lambda d, t: done.append((d, t))
        )
    )
    assert out.column("x").to_pylist() == list(range(200))
    pids = set(out.column("pid").to_pylist())
    assert len(pids) == 2 and os.getpid() not in pids
    assert set(out.column("setups").to_pylist()) == {1}
    assert done[-1] == (20, 20) and [d for d, _ in done] == sorted(d for d, _ in done)


def test_parquet_files_are_read_by_the_workers(ray_session, tmp_path) -> None:
    paths = []
    for f in range(3):
        path = tmp_path / f"part{f}.parquet"
        pq.write_table(
            pa.table({"x": list(range(f * 100, f * 100 + 100)), "junk": ["j"] * 100}),
            path,
            row_group_size=25,
        )
        paths.append(path)
    assert len(pieces(paths, batch_rows=50)) == 6
    out = pa.concat_tables(run_stage(Double(), paths, batch_rows=50, columns=["x"]))
    assert out.column_names == ["x", "y"]
    assert out.column("x").to_pylist() == list(range(300))


def test_a_stage_error_reaches_the_caller_as_itself(ray_session) -> None:
    with pytest.raises(ValueError, match=r"needs column\(s\) 'x'; the input has: z"):
        list(run_stage(Double(), pa.table({"z": [1, 2]})))


def _threads() -> tuple[int, int]:
    """(BLAS threads, FAISS OpenMP threads) in this process, importing both."""
    import faiss
    import numpy  # noqa: F401  # loads the BLAS threadpoolctl reports
    from threadpoolctl import threadpool_info

    blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    return max(blas), faiss.omp_get_max_threads()


def test_a_reused_worker_runs_each_task_on_its_own_cpus(ray_session) -> None:
    """Ray reuses worker processes across tasks of different sizes; a library sizes its
    pool at import, so without resizing a 1-CPU task after a 2-CPU one ran on 2 threads
    (and a 2-CPU task in a worker that started on a 1-CPU one ran on 1)."""
    from thresher.storage.ray_adapter import map_tasks, run_task

    before = map_tasks(_threads, [()] * 4, rows=10**6, cpus=1)
    wide = run_task(_threads, rows=10**6, cpus=2)
    after = map_tasks(_threads, [()] * 4, rows=10**6, cpus=1)
    assert before == after == [(1, 1)] * 4
    assert wide == (2, 2)
