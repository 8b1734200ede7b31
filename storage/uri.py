"""Local paths and object-store URIs, through pyarrow's filesystems.

A location is a local path or a URI pyarrow understands (`s3://bucket/prefix`,
`gs://bucket/prefix`, `hdfs://...`). Credentials, region and endpoint come
from the usual environment (for S3: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_DEFAULT_REGION, AWS_ENDPOINT_URL for an S3-compatible server) or from
query options in the URI (`s3://bucket/p?endpoint_override=...`).
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from thresher.storage.errors import ThresherError


@contextlib.contextmanager
def naming(location: str | os.PathLike[str]) -> Iterator[None]:
    """Re-raise a filesystem error with the location in front (S3's errors lack it)."""
    try:
        yield
    except OSError as exc:
        if str(location) in str(exc):
            raise
        raise OSError(f"{location}: {exc}") from exc


def is_uri(location: str | os.PathLike[str]) -> bool:
    return "://" in str(location)


def resolve(location: str | os.PathLike[str]) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local path or a URI."""
    text = str(location)
    if not is_uri(text):
        return pafs.LocalFileSystem(), str(Path(text).expanduser().absolute())
    try:
        return pafs.FileSystem.from_uri(text)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ThresherError(f"{text}: not a location pyarrow can open ({exc})") from exc


def parquet_files(location: str | os.PathLike[str]) -> tuple[pafs.FileSystem, list[str]]:
    """The Parquet files under a folder (recursively, sorted) or the one file named."""
    fs, path = resolve(location)
    with naming(location):
        info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise ThresherError(f"{location}: no such file or folder")
    if info.type == pafs.FileType.File:
        return fs, [path]
    with naming(location):
        listing = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    files = sorted(i.path for i in listing if i.is_file and i.path.endswith(".parquet"))
    if not files:
        raise ThresherError(f"{location}: no Parquet files")
    return fs, files


def check_empty(fs: pafs.FileSystem, path: str, location: str) -> None:
    """Refuse to write into a folder that holds anything (nothing is overwritten)."""
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.File:
        raise ThresherError(f"{location} is a file, not a folder")
    if info.type == pafs.FileType.Directory:
        listing = fs.get_file_info(pafs.FileSelector(path, recursive=False))
        if listing:
            raise ThresherError(f"{location} exists and is not empty")


def safe_name(name: str) -> str:
    """A name usable as one path segment on any filesystem or object store."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


NAME_MAX = 100
_NAME = re.compile(rf"[A-Za-z0-9._-]{{1,{NAME_MAX}}}")


def check_name(name: str, what: str = "selection name") -> str:
    """`name` if it can name a selection: one path segment of letters, digits, `.`, `_`
    and `-`, not only dots, 1 to NAME_MAX characters (it becomes a folder under the
    store and under a publish URI); else a ThresherError naming it."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ThresherError(
            f"{what} {name!r}: use 1 to {NAME_MAX} letters, digits, '.', '_' or '-'"
        )
    if set(name) == {"."}:
        raise ThresherError(f"{what} {name!r}: a name cannot be only dots")
    return name


DONE = "_SUCCESS"  # written last into a copied selection version: all its files are there


def selection_dir(base: str, name: str) -> str:
    """Where the versions of published selection `name` live under `base`."""
    return f"{base.rstrip('/')}/{check_name(name)}"


def version_dir(base: str, name: str, version: int) -> str:
    return f"{selection_dir(base, name)}/v{version:06d}"


@dataclass(frozen=True)
class RemoteFile:
    """One object of an object store, as listed (a source file that is not local)."""

    uri: str  # scheme://bucket/key
    path: str  # inside `filesystem`
    size: int
    mtime_ns: int
    filesystem: pafs.FileSystem = field(compare=False, repr=False)

    def __str__(self) -> str:
        return self.uri

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.path).suffix

    def download(self, local: Path) -> None:
        pafs.copy_files(
            self.path,
            str(local),
            source_filesystem=self.filesystem,
            destination_filesystem=pafs.LocalFileSystem(),
        )


def list_remote(location: str, suffixes: tuple[str, ...] | None) -> list[RemoteFile]:
    """The objects a URI names: one object, every object under a prefix (with one of
    `suffixes`, unless None), or those matching a glob (`*`, `?`, `[...]`); sorted."""
    scheme = location.split("://", 1)[0]
    glob_at = min((location.index(c) for c in "*?[" if c in location), default=-1)
    base = location if glob_at < 0 else location[:glob_at].rsplit("/", 1)[0]
    fs, path = resolve(base)
    info = fs.get_file_info(path)
    if glob_at < 0 and info.type == pafs.FileType.File:
        found = [info]
    elif info.type == pafs.FileType.NotFound and glob_at < 0:
        raise ThresherError(f"{location}: no such object or prefix")
    else:
        listing = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
        found = [i for i in listing if i.is_file]
        if glob_at >= 0:
            found = [i for i in found if fnmatch.fnmatchcase(f"{scheme}://{i.path}", location)]
        elif suffixes is not None:
            found = [i for i in found if PurePosixPath(i.path).suffix.lower() in suffixes]
    files = [
        RemoteFile(f"{scheme}://{i.path}", i.path, i.size or 0, i.mtime_ns or 0, fs) for i in found
    ]
    return sorted(files, key=lambda f: f.uri)


EXPORT_FILE_ROWS = 1_000_000  # rows per exported file
EXPORT_GROUP_ROWS = 65_536  # rows per row group


def write_parquet_dataset(
    data: pa.RecordBatchReader, out: Path | str, filesystem: pafs.FileSystem | None = None
) -> None:
    """`data` as `part-0.parquet`, `part-1.parquet`, ... of at most EXPORT_FILE_ROWS rows in
    the folder `out`, a row group at a time: this process holds one row group. (pyarrow's
    `dataset.write_dataset` queued ahead of its writer: 2.3 GiB more than reading alone,
    for 2.5M rows with 384-d vectors.)"""
    fs = filesystem or pafs.LocalFileSystem()
    fs.create_dir(str(out), recursive=True)
    files, in_file = 0, 0  # files opened; rows in the open one
    sink: pa.NativeFile | None = None
    writer: pq.ParquetWriter | None = None
    group: list[pa.RecordBatch] = []

    def close() -> None:
        nonlocal sink, writer, in_file
        if writer is not None and sink is not None:
            writer.close()
            sink.close()
        sink, writer, in_file = None, None, 0

    def write_group() -> None:
        nonlocal sink, writer, files, in_file, group
        table = pa.Table.from_batches(group, data.schema)
        if writer is None:
            sink = fs.open_output_stream(f"{out}/part-{files}.parquet")
            writer, files = pq.ParquetWriter(sink, data.schema), files + 1
        writer.write_table(table)
        in_file, group = in_file + table.num_rows, []
        if in_file >= EXPORT_FILE_ROWS:
            close()

    try:
        for batch in data:
            while batch.num_rows:
                held = sum(b.num_rows for b in group)
                room = min(EXPORT_GROUP_ROWS, EXPORT_FILE_ROWS - in_file) - held
                group.append(batch.slice(0, room))
                batch = batch.slice(room)
                if held + group[-1].num_rows == room + held:
                    write_group()
        if group:
            write_group()
    finally:
        close()
