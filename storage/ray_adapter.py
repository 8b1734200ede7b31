"""Run a `Stage` over an Arrow table or Parquet files through Ray.

Stages that set up state (a model, an index) or want GPUs run as a fixed pool
of actors, each calling `setup()` once; stateless stages run as Ray tasks.
Work is cut into pieces (table slices, or Parquet row groups that the worker
reads itself so the data never passes through the driver), at most
`2 x workers` pieces are in flight, and results come back in input order, so
a run is deterministic and memory stays bounded.

Global steps (a k-means fit, an LSH join, a staging query) run through
`run_task`: one Ray task that reads its inputs from files itself and writes
its output to a file, so the driver only orchestrates and its memory does not
grow with the data.

Small inputs stay in this process (`use_ray`): starting Ray costs seconds that
a few hundred thousand rows do not repay. Stages that load a model, work on
a cluster (`RAY_ADDRESS`), work in a process that already runs Ray, and any
input above `THRESHER_LOCAL_MAX_ROWS` rows (default 200,000; 0: always Ray)
go to Ray; the local path runs the same `setup`/`process` over the same
pieces, so results are identical (tested).

Plain Ray core is used rather than Ray Data: on small machines Ray Data's
actor pools can starve the read tasks of CPUs (see STACK.md), and here the
order of results and the in-flight window are ours to control.
"""

from __future__ import annotations

import logging
import os
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import pyarrow as pa
import pyarrow.parquet as pq

from thresher.storage.errors import ThresherError
from thresher.storage.stage import Stage

if TYPE_CHECKING:
    import ray

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParquetPiece:
    path: str
    row_groups: tuple[int, ...]


Piece: TypeAlias = "ParquetPiece | pa.Table"


LOCAL_MAX_ROWS = 200_000
TASK_RETRIES = 3  # a global step's task, when its worker or node dies
TASK_POLL_S = 2.0  # how often a waiting task's CPU request is checked against live nodes


def local_max_rows() -> int:
    text = os.environ.get("THRESHER_LOCAL_MAX_ROWS", "")
    try:
        return int(text) if text.strip() else LOCAL_MAX_ROWS
    except ValueError:
        raise ThresherError(
            f"THRESHER_LOCAL_MAX_ROWS={text!r}: expected a number of rows (0: always Ray)"
        ) from None


def use_ray(rows: int, stateful: bool = False) -> bool:
    """Whether work over `rows` rows runs on Ray rather than in this process."""
    return (
        stateful or bool(os.environ.get("RAY_ADDRESS")) or ray_running() or rows > local_max_rows()
    )


def ray_running() -> bool:
    """Whether this process is connected to Ray (without importing it: that costs ~0.5 s)."""
    module = sys.modules.get("ray")
    return module is not None and module.is_initialized()


def ensure_ray() -> None:
    """Connect to `RAY_ADDRESS` if set, else start Ray in this process (once)."""
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if not address:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(
        address=address,
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=False,
        configure_logging=False,
    )


def pieces(source: pa.Table | Sequence[str | Path], batch_rows: int) -> list[Piece]:
    """Cut a table into slices of `batch_rows`, or files into runs of row groups."""
    if isinstance(source, pa.Table):
        return [source.slice(i, batch_rows) for i in range(0, max(source.num_rows, 1), batch_rows)]
    return [ParquetPiece(p, g) for p, g, _ in row_group_runs(source, batch_rows)]


def row_group_runs(
    paths: Sequence[str | Path], batch_rows: int
) -> list[tuple[str, tuple[int, ...], int]]:
    """(path, row groups, position of the run's first row across all files) for runs of
    whole row groups of at least `batch_rows` rows (the last of a file may be shorter)."""
    out: list[tuple[str, tuple[int, ...], int]] = []
    offset = 0
    for path in paths:
        meta = pq.ParquetFile(path).metadata
        group: list[int] = []
        rows = 0
        for g in range(meta.num_row_groups):
            group.append(g)
            rows += meta.row_group(g).num_rows
            if rows >= batch_rows:
                out.append((str(path), tuple(group), offset))
                offset, group, rows = offset + rows, [], 0
        if group:
            out.append((str(path), tuple(group), offset))
            offset += rows
    return out


def _rows(source: pa.Table | Sequence[str | Path]) -> int:
    if isinstance(source, pa.Table):
        return source.num_rows
    return sum(pq.ParquetFile(p).metadata.num_rows for p in source)


def _run_local(
    stage: Stage,
    work: list[Piece],
    columns: Sequence[str] | None,
    on_progress: Callable[[int, int], None] | None,
) -> Iterator[pa.Table]:
    """The same pieces through the same `setup`/`process`, in this process."""
    log.info("stage %s: %d pieces in-process", stage.name, len(work))
    stage.setup()
    for i, piece in enumerate(work):
        yield _apply(stage, piece, columns)
        if on_progress:
            on_progress(i + 1, len(work))


def _load(piece: Piece, columns: Sequence[str] | None) -> pa.Table:
    if isinstance(piece, pa.Table):
        return piece
    return pq.ParquetFile(piece.path).read_row_groups(
        list(piece.row_groups), columns=list(columns) if columns else None
    )


def _apply(stage: Stage, piece: Piece, columns: Sequence[str] | None) -> pa.Table:
    batch = _load(piece, columns)
    stage.check_columns(batch)
    return stage.process(batch)


class _StageActor:
    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        fit_threads(stage.resources.cpus)
        stage.setup()

    def process(self, piece: Piece, columns: Sequence[str] | None) -> pa.Table:
        return _apply(self.stage, piece, columns)


def _process_task(stage: Stage, piece: Piece, columns: Sequence[str] | None) -> pa.Table:
    fit_threads(stage.resources.cpus)
    return _apply(stage, piece, columns)


def fit_threads(cpus: float) -> None:
    """Size this Ray worker's thread pools (BLAS, OpenMP, FAISS, torch) to the `cpus` its
    task holds. Ray reuses a worker process for tasks of any size, and a library sizes its
    pool once, at import, from the OMP_NUM_THREADS of the task that imported it: a worker
    that first ran a 2-CPU step went on running 1-CPU tasks on 2 threads each, two such
    workers on 2 cores (18 kNN density tasks: 57.8 s after one 2-CPU task, 35.6 s
    without), and one that started with a 1-CPU task ran 2-CPU steps on one thread."""
    n = max(1, int(cpus))
    from threadpoolctl import threadpool_limits

    threadpool_limits(n)  # every BLAS and OpenMP library loaded now, until changed again
    if "faiss" in sys.modules:
        sys.modules["faiss"].omp_set_num_threads(n)
    if "torch" in sys.modules and sys.modules["torch"].get_num_threads() != n:
        sys.modules["torch"].set_num_threads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)  # for a library the task imports later


def _sized_task(fn: Callable[..., Any], cpus: float, *args: Any, **kwargs: Any) -> Any:
    """`fn(*args, **kwargs)` in a Ray task of `cpus` CPUs, on that many threads."""
    fit_threads(cpus)
    return fn(*args, **kwargs)


def _submit(
    fn: Callable[..., Any], cpus: float, retries: int, *args: Any, **kwargs: Any
) -> ray.ObjectRef:
    """`fn(*args, **kwargs)` as a Ray task of `cpus` CPUs on that many threads, named
    after `fn`."""
    import ray

    task = ray.remote(num_cpus=cpus, max_retries=retries)(_sized_task)
    return task.options(name=getattr(fn, "__name__", "task")).remote(fn, cpus, *args, **kwargs)


def _get(ref: ray.ObjectRef) -> Any:
    """`ray.get`, re-raising a user error (`ThresherError`) or a file system error raised
    in a task as it was raised, so the command line reports it in one line."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, (ThresherError, OSError)):
            raise exc.cause from None
        raise


def global_cpus(limit: int = 8) -> int:
    """CPUs for a global step's task: the largest node's, up to `limit` (NumPy, FAISS and
    torch in the task use that many threads)."""
    return max(1, min(limit, int(_largest_node_cpus() or 1)))


def _alive_resources() -> list[dict[str, float]]:
    """Each live node's resources (a node that just died is left out)."""
    import ray

    return [n["Resources"] for n in ray.nodes() if n.get("Alive")]


def _largest_node_cpus() -> float:
    return max((r.get("CPU", 0) for r in _alive_resources()), default=0)


def _await_feasible(ref: ray.ObjectRef, cpus: float) -> bool:
    """Wait until `ref`'s task ends; False (the task cancelled) as soon as no live node has
    `cpus` CPUs any more: its node died, and the task could wait for one forever."""
    import ray

    while not ray.wait([ref], timeout=TASK_POLL_S)[0]:
        if _largest_node_cpus() < cpus:
            ray.cancel(ref, force=True)
            return False
    return True


def run_task(
    fn: Callable[..., Any], *args: Any, rows: int, cpus: int | None = None, **kwargs: Any
) -> Any:
    """`fn(*args, **kwargs)` as one Ray task; its result (keep it small) comes back.

    For global steps: `fn` reads its inputs (about `rows` rows) from files and
    writes its output to a file, so nothing the size of the data passes through
    the driver. A `ThresherError` raised by `fn` is re-raised here as it
    was raised. Below the local threshold (`use_ray`) it runs in this process.

    When the task's worker or node dies it is submitted again, up to `TASK_RETRIES`
    times, each time asking for the CPUs of the nodes alive then: Ray's own retries
    (`max_retries`) would ask for the first size again, which no node may have once the
    largest one is gone, and the task would wait forever.
    """
    if not use_ray(rows):
        return fn(*args, **kwargs)
    import ray

    ensure_ray()
    lost = (
        ray.exceptions.NodeDiedError,
        ray.exceptions.WorkerCrashedError,
        ray.exceptions.ObjectLostError,
    )
    failures = 0
    while True:
        n_cpus = cpus or global_cpus()
        ref = _submit(fn, n_cpus, 0, *args, **kwargs)
        try:
            if _await_feasible(ref, n_cpus):
                return _get(ref)
            failure = f"no live node has {n_cpus} CPUs any more"
        except lost as exc:
            failure = type(exc).__name__
        failures += 1
        if failures > TASK_RETRIES:
            raise RuntimeError(
                f"{getattr(fn, '__name__', fn)}: lost its worker {failures} times ({failure})"
            )
        log.warning(
            "%s: %s; submitting it again (%d of %d)",
            getattr(fn, "__name__", fn),
            failure,
            failures,
            TASK_RETRIES,
        )


def map_tasks(
    fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]], *, rows: int, cpus: float = 1
) -> list[Any]:
    """`fn(*args)` for each args tuple as parallel Ray tasks; results (keep them small) in
    order. For the partitions of a global step: each call reads and writes its own files.
    In-process, one after another, below the local threshold (`use_ray`)."""
    if not use_ray(rows):
        return [fn(*args) for args in calls]
    ensure_ray()
    refs = [_submit(fn, cpus, 2, *args) for args in calls]
    return [_get(ref) for ref in refs]


def default_workers(stage: Stage) -> int:
    """One worker per CPU (or GPU) the stage asks for, counted on the nodes alive now (a
    node that just died must not get actors that would never be placed)."""
    alive = _alive_resources()
    if stage.resources.gpus > 0:
        gpus = sum(r.get("GPU", 0) for r in alive)
        return max(1, int(gpus // stage.resources.gpus))
    return max(1, int(sum(r.get("CPU", 0) for r in alive) // stage.resources.cpus))


def run_stage(
    stage: Stage,
    source: pa.Table | Sequence[str | Path],
    *,
    batch_rows: int = 16_384,
    columns: Sequence[str] | None = None,
    workers: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Iterator[pa.Table]:
    """Yield `stage.process` of each piece of `source`, in input order.

    `columns` restricts what workers read from Parquet files;
    `on_progress(pieces_done, pieces_total)` is called as results arrive.
    """
    work = pieces(source, batch_rows)
    if not work:
        return
    if not use_ray(_rows(source), stage.stateful):
        yield from _run_local(stage, work, columns, on_progress)
        return
    import ray

    ensure_ray()
    n = min(workers or default_workers(stage), len(work))
    opts: dict[str, Any] = {"num_cpus": stage.resources.cpus, "num_gpus": stage.resources.gpus}
    if stage.stateful:
        actor_cls = ray.remote(**opts)(_StageActor)
        actors = [actor_cls.remote(stage) for _ in range(n)]
        submit = lambda i, p: actors[i % n].process.remote(p, columns)  # noqa: E731
    else:
        task = ray.remote(**opts)(_process_task)
        stage_ref = ray.put(stage)
        submit = lambda i, p: task.remote(stage_ref, p, columns)  # noqa: E731
    log.info(
        "stage %s: %d pieces on %d %s",
        stage.name,
        len(work),
        n,
        "actors" if stage.stateful else "task slots",
    )
    in_flight: deque = deque()
    try:
        for i, piece in enumerate(work):
            in_flight.append(submit(i, piece))
            if len(in_flight) >= 2 * n:
                yield _get(in_flight.popleft())
                if on_progress:
                    on_progress(i + 1 - len(in_flight), len(work))
        while in_flight:
            yield _get(in_flight.popleft())
            if on_progress:
                on_progress(len(work) - len(in_flight), len(work))
    finally:
        if stage.stateful:
            for actor in actors:
                ray.kill(actor)  # type: ignore[arg-type]  # ray.remote(cls) is typed loosely
