"""`thresher check`: is every file the catalog registers there, whole and as recorded?

Checked: the catalog itself (every catalog table reads back); every registered
table file (it exists, is readable Parquet row group by row group, has the
table's columns and the row count the catalog recorded); the files of each
model's latest index version (rotation, vector parts, shortlist index) and its
latest centroids; every published selection's folder and row count.

`repair` is the one recovery done here, and only for table files: it
unregisters every file of each run that holds a damaged one (with the run's
`sources` and `stages` rows), so that the next run of its command recomputes
what it wrote; a run that also wrote an index, centroids or a publication is
left alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from thresher.storage import catalog
from thresher.storage.errors import StoreError
from thresher.storage.store import Store

Progress = Callable[[int, int], None] | None
CATALOG_TABLES = (
    *("meta", "runs", "stages", "files", "models", "centroids"),
    *("indexes", "publications", "sources"),
)
# catalog tables naming files other than table files, with their run column
OWN_FILES = {"indexes": "run_id", "centroids": "run_id", "publications": "version"}


@dataclass(frozen=True)
class Problem:
    path: str  # relative to the store
    problem: str
    fix: str
    run_id: int | None = None  # the run whose table file this is (what `repair` drops)


@dataclass
class Report:
    tables: int = 0
    files: int = 0
    rows: int = 0
    problems: list[Problem] = field(default_factory=list)


def check(store: Store, on_progress: Progress = None) -> Report:
    """Every problem of `store` (see the module docstring); a damaged catalog raises."""
    files, indexes, centroids, publications = _catalog(store)
    report = Report(tables=len({f[0] for f in files}), files=len(files))
    total = len(files) + len(indexes) + len(centroids) + len(publications)
    for i, (table, rel, rows, run_id) in enumerate(files):
        problem = table_file_problem(store.root / rel, table, rows)
        report.rows += rows
        if problem:
            fix = (
                f"restore it from a backup, or `thresher check {store.root} --repair` to "
                f"unregister run {run_id}'s files so that its command redoes them"
            )
            report.problems.append(Problem(rel, problem, fix, run_id))
        if on_progress:
            on_progress(i + 1, total)
    done = len(files)
    for group in (indexes, centroids, publications):
        for checker in group:
            report.problems.extend(checker(store))
            done += 1
            if on_progress:
                on_progress(done, total)
    return report


def _catalog(store: Store) -> tuple[list[tuple[str, str, int, int]], list, list, list]:
    try:
        with store.read() as con:
            for table in CATALOG_TABLES:  # every catalog table reads back
                con.execute(f"SELECT * FROM {table}").fetchall()
            files = con.execute(
                "SELECT table_name, path, rows, run_id FROM files ORDER BY path"
            ).fetchall()
            indexes = con.execute(
                "SELECT model, rotation_file, parts, shortlist_file, n_items FROM indexes "
                "QUALIFY row_number() OVER (PARTITION BY model ORDER BY version DESC) = 1 "
                "ORDER BY model"
            ).fetchall()
            centroids = con.execute(
                "SELECT model, path FROM centroids "
                "QUALIFY row_number() OVER (PARTITION BY model ORDER BY run_id DESC) = 1 "
                "ORDER BY model"
            ).fetchall()
            publications = con.execute(
                "SELECT name, path, rows FROM publications ORDER BY name, version"
            ).fetchall()
    except StoreError as exc:
        if str(store.catalog_path) not in str(exc):
            raise
        raise StoreError(
            f"catalog {store.catalog_path} is damaged: restore it from a backup (it alone "
            "records which files hold the store's rows)"
        ) from exc
    return (
        files,
        [_index_checker(*r) for r in indexes],
        [_centroids_checker(*r) for r in centroids],
        [_publication_checker(*r) for r in publications],
    )


def table_file_problem(path: Path, table: str, rows: int) -> str | None:
    """What is wrong with one registered table file, or None."""
    if not path.is_file():
        return "missing"
    try:
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
        for f in catalog.arrow_schema(table):
            i = schema.get_field_index(f.name)
            if i < 0 or not catalog.conforms(schema.field(i).type, f.type):
                return f"column {f.name!r} is not {f.type}: file has {schema.names}"
        if parquet.metadata.num_rows != rows:
            return f"has {parquet.metadata.num_rows} rows; the catalog records {rows}"
        for i in range(parquet.num_row_groups):
            parquet.read_row_group(i)
    except (OSError, pa.ArrowException) as exc:
        return f"not readable Parquet ({_short(exc)})"
    return None


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:160]


def _npy_rows(store: Store, rel: str, problems: list[Problem], fix: str) -> int | None:
    try:
        return len(np.load(store.root / rel, mmap_mode="r"))
    except FileNotFoundError:
        problems.append(Problem(rel, "missing", fix))
    except (OSError, ValueError) as exc:
        problems.append(Problem(rel, f"not a readable .npy file ({_short(exc)})", fix))
    return None


def _index_checker(
    model: str, rotation: str, parts: str, shortlist: str, n_items: int
) -> Callable[[Store], list[Problem]]:
    def run(store: Store) -> list[Problem]:
        from thresher.storage.index import load_index

        fix = f"`thresher embed {store.root} --model {model} --refit` rebuilds the index"
        out: list[Problem] = []
        _npy_rows(store, rotation, out, fix)
        ids = [_npy_rows(store, f"{p}.ids.npy", out, fix) for p in json.loads(parts)]
        vectors = [_npy_rows(store, f"{p}.vectors.npy", out, fix) for p in json.loads(parts)]
        if not out and (ids != vectors or sum(n or 0 for n in ids) != n_items):
            what = f"vector parts hold {vectors} vectors and {ids} ids; expected {n_items}"
            out.append(Problem(f"indexes/{model}", what, fix))
        try:
            if shortlist:  # "": not built yet, the first search builds it
                load_index(store.root / shortlist)
        except Exception as exc:  # faiss raises RuntimeError on a damaged file
            out.append(Problem(shortlist, f"not a readable FAISS index ({_short(exc)})", fix))
        return out

    return run


def _centroids_checker(model: str, rel: str) -> Callable[[Store], list[Problem]]:
    def run(store: Store) -> list[Problem]:
        out: list[Problem] = []
        fix = f"`thresher score {store.root} --model {model} --refit` fits them again"
        _npy_rows(store, rel, out, fix)
        return out

    return run


def _publication_checker(name: str, rel: str, rows: int) -> Callable[[Store], list[Problem]]:
    def run(store: Store) -> list[Problem]:
        fix = (
            f"restore it from a backup (`thresher export {store.root} {name} DIR` writes "
            "the latest version of the selection again)"
        )
        folder = store.root / rel
        if not folder.is_dir():
            return [Problem(rel, "missing", fix)]
        try:
            found = sum(pq.read_metadata(p).num_rows for p in sorted(folder.glob("*.parquet")))
        except (OSError, pa.ArrowException) as exc:
            return [Problem(rel, f"holds a file that is not readable Parquet ({_short(exc)})", fix)]
        if found != rows:
            return [Problem(rel, f"has {found} rows; the catalog records {rows}", fix)]
        return []

    return run


def repair(store: Store, report: Report) -> tuple[list[str], list[str]]:
    """Unregister every file of each run that holds a damaged table file, with its
    `sources` and `stages` rows (its `runs` row stays, status `repaired`). Returns what
    was dropped and what was left alone (runs that also wrote index, centroid or
    publication files), one line each."""
    runs = sorted({p.run_id for p in report.problems if p.run_id is not None})
    if not runs:
        return [], []
    dropped, kept = [], []
    with store.maintain() as con:
        for run_id in runs:
            owns = [t for t, column in OWN_FILES.items() if _count(con, t, column, run_id)]
            if owns:
                kept.append(
                    f"run {run_id}: not repaired, it also wrote {', '.join(owns)}; "
                    "restore its damaged file from a backup"
                )
                continue
            dropped.append(_unregister(con, run_id))
        catalog.create_views(con, store.root)
    return dropped, kept


def _count(con: duckdb.DuckDBPyConnection, table: str, column: str, run_id: int) -> int:
    rows = con.execute(f"SELECT count(*) FROM {table} WHERE {column} = ?", [run_id]).fetchall()
    return int(rows[0][0])


def _unregister(con: duckdb.DuckDBPyConnection, run_id: int) -> str:
    files = con.execute(
        "SELECT table_name, count(*), sum(rows) FROM files WHERE run_id = ? GROUP BY 1 ORDER BY 1",
        [run_id],
    ).fetchall()
    sources = con.execute(
        "SELECT path FROM sources WHERE run_id = ? ORDER BY 1", [run_id]
    ).fetchall()
    con.execute("BEGIN TRANSACTION")
    for table in ("files", "sources", "stages"):
        con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
    con.execute(
        "UPDATE runs SET status = 'repaired', message = message || "
        "' [files unregistered by thresher check --repair]' WHERE run_id = ?",
        [run_id],
    )
    con.execute("COMMIT")
    what = ", ".join(f"{n} {t} file(s) ({r} rows)" for t, n, r in files) or "no files"
    again = f"; sources to ingest again: {', '.join(s[0] for s in sources)}" if sources else ""
    return f"run {run_id}: unregistered {what} and its stage records{again}"
