"""Ingest Parquet, JSONL and CSV sources into a store's `items` table.

Every source column is kept under its own name; thresher adds `item_id` (a
stable int64: the same input row always gets the same id) and `batch_id` (one
per source file). A file is identified by the BLAKE2b hash of its content, so
ingesting it again, under any name, adds nothing. Sources may also be
object-store URIs (`s3://bucket/raw/*.jsonl`, see thresher.storage.uri): an
object is identified by its URI, size and modification time (no download
needed to tell it was seen), and a new one is downloaded into the store's
folder, ingested, and deleted. Rows that cannot be ingested
go to `rejects` with a reason; a file that cannot be read stops the whole
ingest and leaves the store exactly as it was (see `Store.run`).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import TypeAlias

import numpy as np
import pyarrow as pa

from thresher.storage import readers, roles, schemas, uri
from thresher.storage.errors import ThresherError
from thresher.storage.readers import Chunk, Format, SourceError
from thresher.storage.store import StageCounts, Store, TableWriter
from thresher.storage.validate import Validator, id_keys

log = logging.getLogger(__name__)

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


@dataclass(frozen=True)
class IngestConfig:
    id_column: str | None = None
    text_column: str | None = None
    label_column: str | None = None
    embedding_column: str | None = None
    format: Format = "auto"
    batch_rows: int = 65_536

    def __post_init__(self) -> None:
        if self.format not in readers.FORMATS:
            raise ThresherError(f"format {self.format!r}: allowed {', '.join(readers.FORMATS)}")
        if self.batch_rows < 1:
            raise ThresherError(f"batch_rows must be >= 1, got {self.batch_rows}")

    def roles(self) -> dict[str, str]:
        names = ("id_column", "text_column", "label_column", "embedding_column")
        return {n: v for n in names if (v := getattr(self, n))}


@dataclass
class SourceReport:
    path: str
    status: str  # "ingested" or "skipped (already ingested as batch N)"
    batch_id: int | None = None
    rows_in: int = 0
    kept: int = 0
    rejected: int = 0


@dataclass
class IngestReport:
    run_id: int
    sources: list[SourceReport] = field(default_factory=list)

    @property
    def kept(self) -> int:
        return sum(s.kept for s in self.sources)

    @property
    def rejected(self) -> int:
        return sum(s.rejected for s in self.sources)


Source: TypeAlias = Path | uri.RemoteFile


def expand_sources(sources: Sequence[str], fmt: Format = "auto") -> list[Source]:
    """Files, directories (searched recursively for known suffixes) and globs, sorted;
    object-store URIs (an object, a prefix, a glob) as RemoteFiles."""
    if not sources:
        raise ThresherError("no sources given")
    out: list[Source] = []
    for src in sources:
        if uri.is_uri(src):
            suffixes = tuple(readers.SUFFIXES) if fmt == "auto" else None
            with uri.naming(src):
                remote = uri.list_remote(src, suffixes)
            if not remote:
                raise SourceError(f"{src}: no objects match")
            out.extend(remote)
            continue
        path = Path(src).expanduser()
        if any(ch in src for ch in "*?["):
            matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
            files = [p for p in matches if p.is_file()]
            if not files:
                raise SourceError(f"{src}: no files match this pattern")
        elif path.is_dir():
            files = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and (fmt != "auto" or p.suffix.lower() in readers.SUFFIXES)
            )
            if not files:
                raise SourceError(f"{src}: directory holds no .parquet, .jsonl or .csv files")
        elif path.is_file():
            files = [path]
        else:
            raise SourceError(f"{src}: no such file or directory")
        out.extend(p.absolute() for p in files)
    return list(dict.fromkeys(out))


def stamp(path: Source) -> str:
    """What a source is known by before its content is read: location, size, mtime."""
    if isinstance(path, uri.RemoteFile):
        return f"{path.uri}\n{path.size}\n{path.mtime_ns}"
    try:
        st = path.stat()
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return f"{path.absolute()}\n{st.st_size}\n{st.st_mtime_ns}"


def known_batch(path: Source, known: dict[str, int], stamps: dict[str, int]) -> int | None:
    """The batch a source was ingested as, or None. A local file whose path, size and
    mtime match a known source is not read again; otherwise its content hash decides
    (the same bytes under another name are known too)."""
    if stamp(path) in stamps:
        return stamps[stamp(path)]
    return known.get(fingerprint(path))


def pending_sources(store: Store, files: Sequence[Source]) -> list[Source]:
    """The sources among `files` that are not ingested yet."""
    with store.read() as con:
        known = dict(con.execute("SELECT fingerprint, batch_id FROM sources").fetchall())
        stamps = dict(
            con.execute("SELECT stamp, batch_id FROM sources WHERE stamp IS NOT NULL").fetchall()
        )
    return [p for p in files if known_batch(p, known, stamps) is None]


def fingerprint(path: Source) -> str:
    if isinstance(path, uri.RemoteFile):
        stamp = f"{path.uri}\n{path.size}\n{path.mtime_ns}".encode()
        return hashlib.blake2b(stamp, digest_size=16).hexdigest()
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, lambda: hashlib.blake2b(digest_size=16)).hexdigest()
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def item_ids(salt: int, keys: np.ndarray) -> np.ndarray:
    """Stable int64 ids: the splitmix64 finalizer of `salt` xor each uint64 key."""
    with np.errstate(over="ignore"):
        z = (keys.astype(np.uint64) ^ np.uint64(salt)) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z & _MASK64).view(np.int64)


def ingest(
    store: Store,
    sources: Sequence[str],
    config: IngestConfig | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> IngestReport:
    """Ingest `sources` into `store` in one run; all of it lands or none of it does.

    `on_progress(bytes_done, bytes_total)` is called as data is read.
    """
    cfg = config or IngestConfig()
    roles.check_consistent(store, cfg.roles())
    files = expand_sources(sources, cfg.format)
    formats = [readers.detect_format(p, cfg.format) for p in files]
    with store.run("ingest", {"sources": [str(p) for p in files], **asdict(cfg)}) as run:
        report = IngestReport(run.run_id)
        known, stamps, next_batch = _store_state(store)
        validator = _validator(store, cfg)
        total = sum(_size(p) for p in files)
        done_before = 0
        for path, fmt in zip(files, formats, strict=True):
            batch = known_batch(path, known, stamps)
            if batch is not None:
                report.sources.append(
                    SourceReport(str(path), f"skipped (already ingested as batch {batch})", batch)
                )
            else:
                fp = fingerprint(path)
                known[fp] = next_batch
                with _local(path, store) as local:
                    src = _ingest_file(
                        local,
                        fmt,
                        fp,
                        next_batch,
                        validator,
                        run,
                        _offset(on_progress, done_before, total),
                        name=str(path),
                    )
                report.sources.append(src)
                run.sources.append(
                    {
                        "fingerprint": fp,
                        "stamp": stamp(path),
                        "path": str(path),
                        "format": fmt,
                        "batch_id": next_batch,
                        "run_id": run.run_id,
                        "rows_in": src.rows_in,
                        "rows_kept": src.kept,
                        "rows_rejected": src.rejected,
                        **cfg.roles(),
                        "embedding_dim": validator.embedding_dim if cfg.embedding_column else None,
                    }
                )
                next_batch += 1
            done_before += _size(path)
            if on_progress:
                on_progress(done_before, total)
        run.message = f"{report.kept} rows kept, {report.rejected} rejected"
    return report


def _size(path: Source) -> int:
    return path.size if isinstance(path, uri.RemoteFile) else path.stat().st_size


@contextlib.contextmanager
def _local(path: Source, store: Store) -> Iterator[Path]:
    """A local file with the source's bytes: the file itself, or a downloaded copy
    (in the store's folder, which has room for the data anyway) removed afterwards."""
    if not isinstance(path, uri.RemoteFile):
        yield path
        return
    with tempfile.TemporaryDirectory(dir=store.root, prefix="download-") as tmp:
        local = Path(tmp) / PurePosixPath(path.path).name
        try:
            path.download(local)
        except OSError as exc:
            raise SourceError(f"{path}: cannot download: {exc}") from exc
        yield local


def _offset(
    on_progress: Callable[[int, int], None] | None, base: int, total: int
) -> Callable[[int], None]:
    def update(done: int) -> None:
        if on_progress:
            on_progress(base + done, total)

    return update


def _validator(store: Store, cfg: IngestConfig) -> Validator:
    """Row checks that know the store: its embedding width, ids and column types."""
    with store.read() as con:
        dims = (
            con.execute(
                "SELECT embedding_dim FROM sources WHERE embedding_column = ? ORDER BY batch_id",
                [cfg.embedding_column],
            ).fetchall()
            if cfg.embedding_column
            else []
        )
        seen = np.zeros(0, np.int64)
        if cfg.id_column:
            seen = con.sql("SELECT item_id FROM items ORDER BY item_id").to_arrow_table()
            seen = seen.column(0).to_numpy()
    types = schemas.ColumnTypes.of_files(store.table_files("items"))
    return Validator(cfg.roles(), dims[0][0] if dims else None, seen, types, cfg.batch_rows)


def _store_state(store: Store) -> tuple[dict[str, int], dict[str, int], int]:
    with store.read() as con:
        known = dict(con.execute("SELECT fingerprint, batch_id FROM sources").fetchall())
        stamps = dict(
            con.execute("SELECT stamp, batch_id FROM sources WHERE stamp IS NOT NULL").fetchall()
        )
        (next_batch,) = con.execute(
            "SELECT coalesce(max(batch_id), 0) + 1 FROM sources"
        ).fetchall()[0]
    return known, stamps, int(next_batch)


def _ingest_file(
    path: Path,
    fmt: str,
    fp: str,
    batch_id: int,
    validator: Validator,
    run,
    progress: Callable[[int], object],
    name: str,
) -> SourceReport:
    """Ingest local file `path`; `name` is the source as the user gave it (a path or URI)."""
    report = SourceReport(name, "ingested", batch_id)
    try:
        _read_file(path, fmt, fp, validator, run, progress, report)
    except SourceError as exc:  # a downloaded copy: name the object, not the copy
        if str(path) == name:
            raise
        raise SourceError(str(exc).replace(str(path), name)) from exc
    run.record(StageCounts("ingest", name, report.rows_in, report.kept, 0, report.rejected))
    return report


def _read_file(
    path: Path,
    fmt: str,
    fp: str,
    validator: Validator,
    run,
    progress: Callable[[int], object],
    report: SourceReport,
) -> None:
    name, batch_id = report.path, report.batch_id
    items: TableWriter = run.writer("items", batch_id)
    rejects: TableWriter = run.writer("rejects", batch_id)
    salt = int(fp[:16], 16)
    checked = False
    for chunk in readers.read_chunks(path, fmt, validator.batch_rows):
        if chunk.table.num_columns and not checked:
            validator.check_columns(name, chunk.table)
            checked = True
        kept, rejected = _process_chunk(chunk, salt, report.batch_id or 0, validator, name)
        if chunk.line_of is not None:  # CSV: record numbers to the lines they start on
            rejected = [(chunk.line_of(r), why, raw) for r, why, raw in sorted(rejected)]
        if kept.num_rows:
            kept = schemas.storable(name, kept)
            validator.types.check(name, kept.schema)
        items.write(kept)
        rejects.write(_rejects_table(name, rejected, run.run_id))
        report.rows_in += kept.num_rows + len(rejected)
        report.kept += kept.num_rows
        report.rejected += len(rejected)
        progress(chunk.bytes_done)
    if not checked:  # no row, not even a header: the roles cannot be there
        schemas.check_roles(name, [], validator.roles)
    items.close()
    rejects.close()


def _process_chunk(
    chunk: Chunk, salt: int, batch_id: int, validator: Validator, source: str
) -> tuple[pa.Table, list[tuple[int, str, str]]]:
    table, rows = chunk.table, chunk.rows
    lines = rows if chunk.records is None else chunk.records  # what `rejects.row` says
    rejected = list(chunk.rejects)
    if table.num_rows == 0:
        return table, rejected
    table = _with_role_columns(table, validator.roles)
    if text := validator.roles.get("text_column"):
        table, keep, undecodable = readers.drop_undecodable(
            table, np.arange(table.num_rows), [text]
        )
        rejected += [(int(lines[i]), reason, raw) for i, reason, raw in undecodable]
        rows, lines = rows[keep], lines[keep]
        table = _text_as_string(table, text, source)
    bad, reasons = validator.bad_rows(table, source)
    id_column = validator.roles.get("id_column")
    keys = id_keys(table.column(id_column)) if id_column else rows.astype(np.uint64)
    ids = item_ids(0 if id_column else salt, keys)
    if id_column:
        dup = validator.duplicate_ids(ids, ~bad)
        for i in np.flatnonzero(dup):
            reasons[i] = f"duplicate id {table.column(id_column)[int(i)].as_py()!r}"
        bad |= dup
    if bad.any():
        rejected += _raw_rows(table, lines, bad, reasons)
        table, ids = table.filter(pa.array(~bad)), ids[~bad]
    table = table.add_column(0, "batch_id", pa.array(np.full(len(ids), batch_id, np.int64)))
    table = table.add_column(0, "item_id", pa.array(ids))
    return table, rejected


def _with_role_columns(table: pa.Table, roles: dict[str, str]) -> pa.Table:
    """A later chunk of a JSONL file whose rows all lack a role column gets it as nulls
    (its rows are then rejected as a null text, id or embedding)."""
    for column in roles.values():
        if column not in table.column_names:
            table = table.append_column(column, pa.nulls(table.num_rows))
    return table


def _text_as_string(table: pa.Table, column: str, source: str) -> pa.Table:
    kind = table.schema.field(column).type
    if pa.types.is_string(kind):
        return table
    nested = pa.types.is_nested(kind) or pa.types.is_dictionary(kind)
    if nested:
        raise SourceError(f"{source}: text column {column!r} is {kind}, not text")
    idx = table.schema.get_field_index(column)
    return table.set_column(idx, column, table.column(column).cast(pa.string()))


def _raw_rows(table: pa.Table, rows: np.ndarray, bad: np.ndarray, reasons) -> list:
    out = []
    bad_idx = np.flatnonzero(bad)
    for i, record in zip(bad_idx, table.take(pa.array(bad_idx)).to_pylist(), strict=True):
        out.append((int(rows[i]), reasons[i], json.dumps(record, default=str)))
    return out


def _rejects_table(source: str, rejected: Iterable[tuple[int, str, str]], run_id: int) -> pa.Table:
    rows = list(rejected)
    return pa.table(
        {
            "source": pa.array([source] * len(rows), pa.string()),
            "row": pa.array([r[0] for r in rows], pa.int64()),
            "reason": pa.array([r[1] for r in rows], pa.string()),
            "raw": pa.array([r[2] for r in rows], pa.string()),
            "run_id": pa.array([run_id] * len(rows), pa.int64()),
        }
    )
