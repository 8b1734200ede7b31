"""The store: a directory of write-once Parquet tables plus a DuckDB catalog.

Layout::

    STORE/
      catalog.duckdb            runs, stages, files, sources, and a view per table
      tables/<table>/<run>-<n>.parquet
      .lock                     held (flock) by the one process writing a run

A run stages its Parquet files under temporary names (`*.parquet.tmp`),
renames them into place when it commits, and then registers them in one
catalog transaction together with its `runs` and `stages` rows. Views list
registered files only, so a run that fails or is killed leaves the store as
it was: its temporary and unregistered files (published folders included) are
invisible and are removed by the next run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from thresher.storage import catalog
from thresher.storage.errors import StoreError, ThresherError

log = logging.getLogger(__name__)

# the columns a store's sources name, each for one use (`thresher ingest --text-column`...)
ROLES = ("id_column", "text_column", "label_column", "embedding_column")
# what one DuckDB query that stages a stage's input may hold in memory before it spills
COPY_MEMORY_LIMIT = "1GB"


@dataclass
class StageCounts:
    """Accounting of one stage: rows in = kept + dropped + rejected."""

    stage: str
    key: str = ""
    rows_in: int = 0
    kept: int = 0
    dropped: int = 0
    rejected: int = 0
    seconds: float | None = None  # wall time; a run's only stage gets the run's

    def check(self) -> None:
        assert self.rows_in == self.kept + self.dropped + self.rejected, (
            f"stage {self.stage}/{self.key}: {self.rows_in} in != {self.kept} kept + "
            f"{self.dropped} dropped + {self.rejected} rejected"
        )


def build_table(table: str, run_id: int, columns: dict[str, Any]) -> pa.Table:
    """A table of `table`'s catalog schema from column values (arrays, or scalars repeated);
    `run_id` is filled in. Unknown, missing or mistyped columns are refused."""
    schema = catalog.arrow_schema(table)
    given = dict(columns)
    if "run_id" in schema.names:
        given.setdefault("run_id", run_id)
    unknown = sorted(set(given) - set(schema.names))
    missing = [n for n in schema.names if n not in given]
    if unknown or missing:
        raise ThresherError(
            f"table {table!r} has columns {', '.join(schema.names)}; "
            f"unknown: {', '.join(unknown) or '-'}, missing: {', '.join(missing) or '-'}"
        )
    arrays = {n: v for n, v in given.items() if not _is_scalar(v)}
    lengths = {n: len(v) for n, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ThresherError(f"table {table!r}: columns of different lengths {lengths}")
    n = next(iter(lengths.values()), 1)
    out = []
    for f in schema:
        value = given[f.name]
        if _is_scalar(value):
            out.append(pa.repeat(pa.scalar(value, f.type), n))
            continue
        arr = value if isinstance(value, pa.Array | pa.ChunkedArray) else pa.array(value)
        if not catalog.conforms(arr.type, f.type):
            try:
                arr = arr.cast(f.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise ThresherError(
                    f"table {table!r} column {f.name!r}: {arr.type} is not {f.type}"
                ) from exc
        out.append(arr)
    return pa.table(out, names=schema.names)


def write_rows(path: str | Path, table: str, run_id: int, **columns: Any) -> int:
    """Rows of `table` (as `build_table` checks them) written to `path`, a file a run
    `reserve`d for a worker; the rows written."""
    data = build_table(table, run_id, columns)
    pq.write_table(data, path, compression="zstd")
    return data.num_rows


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | np.integer | np.floating)


class TableWriter:
    """Streams record batches of one table into a staged Parquet file.

    A batch whose schema differs from the open file's starts a new part, so a
    source whose columns change type midway is kept whole, not coerced.
    """

    def __init__(self, run: Run, table: str, batch_id: int | None = None) -> None:
        self._run, self.table, self.batch_id = run, table, batch_id
        self._writer: pq.ParquetWriter | None = None
        self._path: Path | None = None
        self._rows = 0
        self.paths: list[str] = []  # the staged files written so far (for this run's queries)

    def write(self, data: pa.Table | pa.RecordBatch) -> None:
        if data.num_rows == 0:
            return
        if self._writer is not None and not data.schema.equals(self._writer.schema):
            self.close()
        if self._writer is None:
            self._path = self._run._new_tmp_path(self.table)
            self.paths.append(str(self._path))
            self._writer = pq.ParquetWriter(self._path, data.schema, compression="zstd")
            self._rows = 0
        if isinstance(data, pa.RecordBatch):
            self._writer.write_batch(data)
        else:
            self._writer.write_table(data)
        self._rows += data.num_rows

    def append(self, **columns: Any) -> None:
        """Write rows given as columns of this table's schema (see `build_table`)."""
        self.write(build_table(self.table, self._run.run_id, columns))

    def close(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        assert self._path is not None
        self._run._staged.append((self.table, self._path, self._rows, self.batch_id))
        self._writer, self._path = None, None


@dataclass
class Run:
    """One run's writes, invisible until `commit()` (used through `Store.run`)."""

    store: Store
    run_id: int
    flow: str
    config: dict[str, Any]
    started_at: dt.datetime
    stages: list[StageCounts] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    # the run row's (rows_in, kept, dropped, rejected) when its stages do not add up to
    # them (the curate flow counts each item once, not once per stage)
    totals: tuple[int, int, int, int] | None = None
    catalog_rows: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    roles: dict[str, str] = field(default_factory=dict)  # set on every source at commit
    _staged: list[tuple[str, Path, int, int | None]] = field(default_factory=list)
    _staged_paths: list[Path] = field(default_factory=list)
    _writers: list[TableWriter] = field(default_factory=list)
    _seq: int = 0
    discarded: bool = False  # set by `discard()`: the run ends without a trace

    def discard(self) -> None:
        """End this run without committing anything (e.g. it found nothing new to write)."""
        self.discarded = True

    def writer(self, table: str, batch_id: int | None = None) -> TableWriter:
        if table not in catalog.TABLES:
            raise ThresherError(f"unknown table {table!r}; tables: {', '.join(catalog.TABLES)}")
        w = TableWriter(self, table, batch_id)
        self._writers.append(w)
        return w

    def write_table(self, table: str, data: pa.Table, batch_id: int | None = None) -> None:
        w = self.writer(table, batch_id)
        w.write(data)
        w.close()

    def append(self, table: str, **columns: Any) -> None:
        """Add rows to one of the data tables, checked against its catalog schema:
        `run.append("scores", item_id=ids, metric="knn_distance", value=values)`.
        Scalars are repeated, `run_id` is this run's."""
        self.write_table(table, build_table(table, self.run_id, columns))

    def scratch(self, name: str) -> Path:
        """A path for this run's working file (a staged input); removed when the run ends."""
        folder = self.store.root / "work" / f"run{self.run_id:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name

    def reserve(self, table: str) -> Path:
        """A staged file path of `table` for another process (a Ray worker) to write;
        hand it back with `adopt` once written."""
        if table not in catalog.TABLES:
            raise ThresherError(f"unknown table {table!r}; tables: {', '.join(catalog.TABLES)}")
        return self._new_tmp_path(table)

    def adopt(self, table: str, path: Path) -> int:
        """Register a file a worker wrote at a `reserve`d path (schema checked); its rows."""
        if not path.exists():
            return 0
        schema = pq.read_schema(path)
        expected = catalog.arrow_schema(table)
        for f in expected:
            i = schema.get_field_index(f.name)
            if i < 0 or not catalog.conforms(schema.field(i).type, f.type):
                raise ThresherError(
                    f"{path}: column {f.name!r} must be {f.type}; file has {schema}"
                )
        rows = pq.ParquetFile(path).metadata.num_rows
        self._staged.append((table, path, rows, None))
        return rows

    def stage_path(self, relative: str) -> Path:
        """A temporary path to write a store file (not a table) to; renamed on commit."""
        final = self.store.root / relative
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(final.name + ".tmp")
        self._staged_paths.append(tmp)
        return tmp

    def record(self, counts: StageCounts) -> None:
        counts.check()
        self.stages.append(counts)

    def _new_tmp_path(self, table: str) -> Path:
        self._seq += 1
        folder = self.store.root / "tables" / table
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"run{self.run_id:06d}-{self._seq:05d}.parquet.tmp"

    def _commit(self, status: str = "succeeded") -> None:
        for w in self._writers:
            w.close()
        registered = []
        for table, tmp, rows, batch_id in self._staged:
            final = tmp.with_suffix("")
            os.replace(tmp, final)
            registered.append((table, str(final.relative_to(self.store.root)), rows, batch_id))
        for tmp in self._staged_paths:
            os.replace(tmp, tmp.with_suffix(""))
        self._remove_scratch()
        rows_in, *totals = self.totals or [
            sum(getattr(s, f) for s in self.stages)
            for f in ("rows_in", "kept", "dropped", "rejected")
        ]
        now = dt.datetime.now(dt.UTC)
        run_s = (now - self.started_at).total_seconds()
        with self.store._write() as con:
            con.execute("BEGIN TRANSACTION")
            if registered:
                con.executemany(
                    "INSERT INTO files VALUES (?, ?, ?, ?, ?)",
                    [(t, p, r, self.run_id, b) for t, p, r, b in registered],
                )
            for src in self.sources:
                names = ", ".join(src)
                marks = ", ".join("?" for _ in src)
                con.execute(
                    f"INSERT INTO sources ({names}, ingested_at) VALUES ({marks}, ?)",
                    [*src.values(), now],
                )
            for table, row in self.catalog_rows:
                marks = ", ".join("?" for _ in row)
                con.execute(
                    f"INSERT INTO {table} ({', '.join(row)}) VALUES ({marks})", list(row.values())
                )
            for role, column in self.roles.items():
                assert role in ROLES, role
                con.execute(f"UPDATE sources SET {role} = ?", [column])
            one = len(self.stages) == 1
            for s in self.stages:
                con.execute(
                    "INSERT INTO stages VALUES (?, ?, ?, 'succeeded', ?, ?, ?, ?, ?, ?)",
                    [
                        *(self.run_id, s.stage, s.key, s.rows_in, s.kept, s.dropped),
                        *(s.rejected, now, run_s if s.seconds is None and one else s.seconds),
                    ],
                )
            con.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    self.run_id,
                    self.flow,
                    status,
                    json.dumps(self.config, default=str),
                    self.started_at,
                    now,
                    rows_in,
                    *totals,
                    self.message,
                ],
            )
            catalog.create_views(con, self.store.root)
            con.execute("COMMIT")

    def _abort(self) -> None:
        for w in self._writers:
            with contextlib.suppress(Exception):
                w.close()
        for _, tmp, _, _ in self._staged:
            tmp.unlink(missing_ok=True)
        for tmp in self._staged_paths:
            _remove(tmp)
        self._remove_scratch()

    def _remove_scratch(self) -> None:
        work = self.store.root / "work"
        _remove(work / f"run{self.run_id:06d}")
        with contextlib.suppress(OSError):
            work.rmdir()  # only when empty


class Store:
    """A thresher store at a local directory (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = _local_root(root)
        self.catalog_path = self.root / catalog.CATALOG_FILE
        self.damaged: dict[str, str] = {}  # tables the last `read()` found damaged
        if not self.catalog_path.is_file():
            raise ThresherError(
                f"{self.root} is not a thresher store (no {catalog.CATALOG_FILE}); "
                f"create it with: thresher init {self.root}"
            )

    @classmethod
    def init(cls, root: str | os.PathLike[str]) -> Store:
        """Create a store (or refresh an existing one's views, e.g. after moving it)."""
        path = _local_root(root)
        if path.exists() and not path.is_dir():
            raise ThresherError(f"{path} exists and is not a directory")
        if path.is_dir() and any(path.iterdir()) and not (path / catalog.CATALOG_FILE).exists():
            raise ThresherError(f"{path} is a non-empty directory without a thresher catalog")
        (path / "tables").mkdir(parents=True, exist_ok=True)
        (path / ".lock").touch()  # there from the start: a run that fails adds no file
        with (
            catalog.connect(path / catalog.CATALOG_FILE, read_only=False) as con,
            catalog.store_errors(path, {}),
        ):
            catalog.create(con)
            catalog.create_views(con, path)
        return cls(path)

    @contextlib.contextmanager
    def _write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with (
            catalog.connect(self.catalog_path, read_only=False) as con,
            catalog.store_errors(self.root, {}),
        ):
            catalog.create(con)
            yield con

    @contextlib.contextmanager
    def read(
        self,
        *,
        sandbox: bool = False,
        writable: Sequence[Path] = (),
        memory_limit: str | None = None,
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only catalog connection whose views point at this store's current path.

        A DuckDB error that comes from a damaged store (its catalog, a missing or cut
        table file) is raised as a `StoreError` naming the file; a table with a damaged
        file has no view, so queries over the others still run. With `sandbox` (for SQL
        a user wrote) the connection can open the store's registered table files and
        the `writable` paths, and no other file, for good (`catalog.lock_down`)."""
        damaged: dict[str, str] = {}
        with (
            catalog.connect(self.catalog_path, read_only=True) as con,
            catalog.store_errors(self.root, damaged),
        ):
            views = catalog.create_views(con, self.root, temporary=True)
            damaged.update(views.damaged)
            self.damaged = damaged
            if memory_limit:
                con.execute(f"SET memory_limit = '{memory_limit}'")
            if sandbox:
                catalog.lock_down(con, views.files, [str(p) for p in writable])
            yield con

    def store_error(self, exc: BaseException) -> StoreError | None:
        """The `StoreError` behind a DuckDB error raised in `read()`, if it is one."""
        return catalog.store_error(self.root, exc, self.damaged)

    def query(
        self,
        sql: str,
        params: list[Any] | dict[str, Any] | None = None,
        tables: dict[str, pa.Table] | None = None,
    ) -> pa.Table:
        """A read-only query; `tables` are Arrow tables registered under their names."""
        with self.read() as con:
            for name, table in (tables or {}).items():
                con.register(name, table)
            return con.sql(sql, params=params or None).to_arrow_table()

    @contextlib.contextmanager
    def stream(
        self,
        sql: str,
        params: list[Any] | dict[str, Any] | None = None,
        batch_rows: int = 65_536,
    ) -> Iterator[pa.RecordBatchReader]:
        """A read-only query's result as batches, never whole in this process (DuckDB
        spills its sorts past `COPY_MEMORY_LIMIT`)."""
        with self.read(memory_limit=COPY_MEMORY_LIMIT) as con:
            yield con.sql(sql, params=params or None).to_arrow_reader(batch_rows)

    def copy_to(
        self,
        sql: str,
        path: Path,
        params: list[Any] | dict[str, Any] | None = None,
        row_group_rows: int = 16_384,
        sandbox: bool = False,
        partition_by: str | None = None,
    ) -> int:
        """Write a read-only query's result to a Parquet file without holding it in this
        process (DuckDB streams and spills; `COPY_MEMORY_LIMIT` bounds it). Its row count.
        With `sandbox` (a query holding SQL a user wrote) DuckDB may open only the store's
        table files and `path` (see `read`). With `partition_by` (a column), `path` is a
        folder of one folder per value (`column=value/`, Hive style), each with one or more
        files: a query whose readers each want one value's rows needs no ORDER BY (DuckDB
        2.0.1's sort of 5.7M rows with 793 MB of text failed at 1 GB; this write took 8.7 s)."""
        with self.read(sandbox=sandbox, writable=[path], memory_limit=COPY_MEMORY_LIMIT) as con:
            target = str(path).replace("'", "''")
            split = (  # DuckDB refuses USE_TMP_FILE with PARTITION_BY
                f"PARTITION_BY ({catalog._quote(partition_by)})"
                if partition_by
                else "USE_TMP_FILE false"
            )
            con.execute(
                f"COPY ({sql}) TO '{target}' "
                f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {row_group_rows}, {split})",
                params or None,
            )
        files = sorted(path.glob("*/*.parquet")) if partition_by else [path]
        return sum(pq.ParquetFile(f).metadata.num_rows for f in files)

    @contextlib.contextmanager
    def run(
        self,
        flow: str,
        config: dict[str, Any] | None = None,
        started_at: dt.datetime | None = None,
    ) -> Iterator[Run]:
        """Hold the store's write lock for one run; commit on success, discard on error.
        `started_at`: when the run's work began, if before the run is opened (a flow
        that records its run after its stages)."""
        with self._lock():
            with self._write():  # a store made by an older thresher gains new catalog tables
                pass
            self._remove_orphans()
            with self.read() as con:
                (last,) = con.execute("SELECT coalesce(max(run_id), 0) FROM runs").fetchall()[0]
            started = started_at or dt.datetime.now(dt.UTC)
            run = Run(self, int(last) + 1, flow, dict(config or {}), started)
            try:
                yield run
            except BaseException:
                run._abort()
                raise
            if run.discarded:
                run._abort()
            else:
                run._commit()

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        with open(self.root / ".lock", "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError(
                    f"store {self.root} is being written by another thresher process"
                ) from None
            yield

    @contextlib.contextmanager
    def maintain(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The write lock and a writable catalog connection, for `thresher check --repair`."""
        with self._lock(), self._write() as con:
            yield con

    def _remove_orphans(self) -> None:
        """Delete files left by a run that died before its catalog commit: unregistered
        table files, staged `*.tmp` files and folders, scratch, and published versions
        renamed into place but not in `publications`."""
        with self.read() as con:
            known = {r[0] for r in con.execute("SELECT path FROM files").fetchall()}
            published = {r[0] for r in con.execute("SELECT path FROM publications").fetchall()}
        for path in sorted((self.root / "tables").glob("*/*")):
            rel = str(path.relative_to(self.root))
            if rel not in known and (path.suffix in (".tmp", ".parquet")):
                log.info("removing unregistered file %s", rel)
                path.unlink()
        for path in sorted(self.root.glob("*/**/*.tmp")):  # staged store files and folders
            log.info("removing unfinished %s", path.relative_to(self.root))
            _remove(path)
        _remove(self.root / "work")  # staged inputs of runs that died
        for path in sorted(self.root.glob("published/*/v*")):
            rel = str(path.relative_to(self.root))
            if rel not in published:  # its run was killed between renaming and committing
                log.info("removing unpublished %s", rel)
                _remove(path)

    def item_count(self) -> int:
        """Rows in `items`, from the file registry (no data is read)."""
        with self.read() as con:
            (n,) = con.execute(
                "SELECT coalesce(sum(rows), 0) FROM files WHERE table_name = 'items'"
            ).fetchall()[0]
        return int(n)

    def text_column(self) -> str:
        """The one text column named at ingest (--text-column)."""
        with self.read() as con:
            names = [
                r[0]
                for r in con.execute(
                    "SELECT DISTINCT text_column FROM sources WHERE text_column IS NOT NULL "
                    "ORDER BY 1"
                ).fetchall()
            ]
        if not names:
            raise ThresherError(
                f"store {self.root} has no text column: name it with "
                f"thresher init {self.root} --text-column COLUMN"
            )
        if len(names) > 1:
            raise ThresherError(f"store {self.root} has several text columns: {', '.join(names)}")
        return names[0]

    def table_files(self, table: str) -> list[Path]:
        with self.read() as con:
            rows = con.execute(
                "SELECT path FROM files WHERE table_name = ? ORDER BY path", [table]
            ).fetchall()
        return [self.root / r[0] for r in rows]


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _local_root(root: str | os.PathLike[str]) -> Path:
    text = os.fspath(root)
    if "://" in text:
        scheme = text.split("://", 1)[0]
        if scheme != "file":
            raise ThresherError(
                f"store {text!r}: only local paths and file:// URIs are supported so far "
                "(object stores need the catalog on local disk; see README)"
            )
        text = text.split("://", 1)[1]
    return Path(text).expanduser().absolute()
