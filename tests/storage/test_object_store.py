"""Selections to and from an object store: a real S3-API server (moto) on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from thresher.flows.select import mirror, publish, select_items
from thresher.storage.feed import SelectionFeed
from thresher.storage.ingest import IngestConfig, ingest
from thresher.storage.store import Store

from tests.flows.test_cli import thresher as _thresher
from tests.helpers import write_jsonl

BUCKET = "thresher-test"


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    """moto's S3 server on a free local port; the AWS_* variables point everything at it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(env["AWS_ENDPOINT_URL"], timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.2)
        _fs(env, allow_bucket_creation=True).create_dir(BUCKET)
        yield env
    finally:
        server.terminate()
        server.wait(timeout=10)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def selected(store: Store, tmp_path: Path) -> Store:
    src = write_jsonl(
        tmp_path / "a.jsonl", [{"id": i, "text": f"item number {i}"} for i in range(400)]
    )
    ingest(store, [str(src)], IngestConfig(id_column="id", text_column="text"))
    select_items(store, "train", 0.5, policy="random", balance="none")
    return store


def thresher(*args: str) -> subprocess.CompletedProcess:
    return _thresher(*args, check=False)  # the tests read the exit code themselves


def _fs(env: dict[str, str], **kwargs: bool) -> pafs.S3FileSystem:
    # the constructor does not read AWS_ENDPOINT_URL (URIs, which thresher takes, do)
    return pafs.S3FileSystem(endpoint_override=env["AWS_ENDPOINT_URL"], **kwargs)


def test_export_to_s3_then_two_ranks_stream_it_exactly_once(s3, selected) -> None:
    uri = f"s3://{BUCKET}/selections/train"
    proc = thresher("export", str(selected.root), "train", uri)
    assert proc.returncode == 0, proc.stderr
    version = selected.query("SELECT max(run_id) FROM selections").column(0)[0].as_py()
    assert (
        proc.stdout.strip() == f"200 rows of selection 'train' version {version} written to {uri}"
    )
    want = dict(
        selected.query(
            "SELECT i.id, s.weight FROM selections s JOIN items i USING (item_id) "
            "WHERE s.selection = 'train'"
        )
        .to_pandas()
        .itertuples(index=False)
    )
    got: dict[int, float] = {}
    for rank in range(2):
        feed = SelectionFeed.from_dir(
            uri, columns=["id"], batch_size=16, shuffle_buffer=64, rank=rank, world_size=2
        )
        for batch in feed.loader(num_workers=2):
            for i, w in zip(batch["id"].tolist(), batch["weight"].tolist(), strict=True):
                assert i not in got  # exactly once over ranks and workers
                got[i] = w
    assert got == pytest.approx(want)


def test_object_store_errors_are_one_line_and_nothing_is_overwritten(s3, selected) -> None:
    uri = f"s3://{BUCKET}/selections/again"
    assert thresher("export", str(selected.root), "train", uri).returncode == 0
    before = _fs(s3).get_file_info(pafs.FileSelector(f"{BUCKET}/selections/again", recursive=True))
    proc = thresher("export", str(selected.root), "train", uri)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"thresher: error: {uri} exists and is not empty"
    after = _fs(s3).get_file_info(pafs.FileSelector(f"{BUCKET}/selections/again", recursive=True))
    assert [(i.path, i.size) for i in after] == [(i.path, i.size) for i in before]
    with pytest.raises(ValueError, match="no such file or folder"):
        SelectionFeed.from_dir(f"s3://{BUCKET}/selections/none")
    proc = thresher("export", str(selected.root), "train", "s3://no-such-bucket/x")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("thresher: error: s3://no-such-bucket/x: ")
    proc = thresher("export", str(selected.root), "train", "nosuch://bucket/x")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("thresher: error: nosuch://bucket/x: not a location")


def test_published_versions_copied_to_s3_and_the_feed_takes_the_latest_complete(
    s3, selected
) -> None:
    base = f"s3://{BUCKET}/published"
    first = publish(selected, "train")
    assert mirror(first, base) == f"{base}/train/v{first.version:06d}"
    shutil.rmtree(first.path)  # a version copied before is not copied again
    assert mirror(first, base) == f"{base}/train/v{first.version:06d}"
    select_items(selected, "train", 0.25, policy="random", balance="none", seed=1)
    second = publish(selected, "train")
    assert second.version > first.version and second.rows == 100
    # a copy cut short: the files but no _SUCCESS marker; readers keep the complete one
    pafs.copy_files(
        str(second.path),
        f"{BUCKET}/published/train/v{second.version:06d}",
        destination_filesystem=_fs(s3),
    )
    assert SelectionFeed.from_uri(base, "train").num_rows == 200
    mirror(second, base)  # the next run completes it
    assert SelectionFeed.from_uri(base, "train").num_rows == 100
    assert SelectionFeed.from_uri(base, "train", first.version).num_rows == 200
    with pytest.raises(ValueError, match="no complete published selection 'test'"):
        SelectionFeed.from_uri(base, "test")


def _put(env: dict[str, str], key: str, data: bytes) -> None:
    with _fs(env).open_output_stream(f"{BUCKET}/{key}") as out:
        out.write(data)


def _jsonl(start: int, stop: int) -> bytes:
    return b"".join(b'{"id": %d, "text": "raw item %d"}\n' % (i, i) for i in range(start, stop))


def test_sources_on_s3_are_ingested_once_and_only_new_objects_later(s3, store) -> None:
    _put(s3, "raw/a.jsonl", _jsonl(0, 100))
    _put(s3, "raw/b.jsonl", _jsonl(100, 150) + b"{broken\n")
    _put(s3, "raw/notes.txt", b"not a source")
    proc = thresher("ingest", str(store.root), f"s3://{BUCKET}/raw/*.jsonl", "--id-column", "id")
    assert proc.returncode == 0, proc.stderr
    sources = store.query("SELECT path, rows_kept, rows_rejected FROM sources ORDER BY 1")
    assert sources.to_pylist() == [
        {"path": f"s3://{BUCKET}/raw/a.jsonl", "rows_kept": 100, "rows_rejected": 0},
        {"path": f"s3://{BUCKET}/raw/b.jsonl", "rows_kept": 50, "rows_rejected": 1},
    ]
    reject = store.query("SELECT source, row FROM rejects").to_pylist()
    assert reject == [{"source": f"s3://{BUCKET}/raw/b.jsonl", "row": 51}]
    assert not list(store.root.glob("download-*"))  # downloaded copies are removed
    # the same prefix again, plus one new object: only the new object is ingested
    _put(s3, "raw/c.jsonl", _jsonl(150, 170))
    proc = thresher("ingest", str(store.root), f"s3://{BUCKET}/raw/", "--id-column", "id")
    assert proc.returncode == 0, proc.stderr
    assert store.query("SELECT count(*) FROM items").column(0)[0].as_py() == 170
    assert store.query("SELECT count(*) FROM sources").column(0)[0].as_py() == 3
    proc = thresher("ingest", str(store.root), f"s3://{BUCKET}/nothing/here.jsonl")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"thresher: error: s3://{BUCKET}/nothing/here.jsonl: no such object or prefix"
    )
