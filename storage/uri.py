"""Local paths and object-store URIs, through pyarrow's filesystems.

A location is a local path or a URI pyarrow understands (`s3://bucket/prefix`,
`gs://bucket/prefix`, `hdfs://...`). Credentials, region and endpoint come
from the usual environment (for S3: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_DEFAULT_REGION, AWS_ENDPOINT_URL for an S3-compatible server) or from
query options in the URI (`s3://bucket/p?endpoint_override=...`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs


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
        raise ValueError(f"{text}: not a location pyarrow can open ({exc})") from exc


def parquet_files(location: str | os.PathLike[str]) -> tuple[pafs.FileSystem, list[str]]:
    """The Parquet files under a folder (recursively, sorted) or the one file named."""
    fs, path = resolve(location)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise ValueError(f"{location}: no such file or folder")
    if info.type == pafs.FileType.File:
        return fs, [path]
    listing = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    files = sorted(i.path for i in listing if i.is_file and i.path.endswith(".parquet"))
    if not files:
        raise ValueError(f"{location}: no Parquet files")
    return fs, files


def check_empty(fs: pafs.FileSystem, path: str, location: str) -> None:
    """Refuse to write into a folder that holds anything (nothing is overwritten)."""
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.File:
        raise ValueError(f"{location} is a file, not a folder")
    if info.type == pafs.FileType.Directory:
        listing = fs.get_file_info(pafs.FileSelector(path, recursive=False))
        if listing:
            raise ValueError(f"{location} exists and is not empty")


def safe_name(name: str) -> str:
    """A name usable as one path segment on any filesystem or object store."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


DONE = "_SUCCESS"  # written last into a copied selection version: all its files are there


def selection_dir(base: str, name: str) -> str:
    """Where the versions of published selection `name` live under `base`."""
    return f"{base.rstrip('/')}/{safe_name(name)}"


def version_dir(base: str, name: str, version: int) -> str:
    return f"{selection_dir(base, name)}/v{version:06d}"
