"""Publishing resumes like every other run: what a publish killed before its catalog commit
leaves under STORE/published/ is removed by the next run, which then publishes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.flows.select import publish, select_items
from thresher.storage.ingest import IngestConfig, ingest
from thresher.storage.store import Store

from tests.flows.test_cli import records
from tests.helpers import write_jsonl


@pytest.fixture
def selected(store: Store, tmp_path: Path, ray_session) -> Store:
    write_jsonl(tmp_path / "a.jsonl", records(40))
    ingest(store, [str(tmp_path / "a.jsonl")], IngestConfig(text_column="text"))
    select_items(store, "s", 0.5, policy="random", balance="none")
    return store


def _next_version(store: Store) -> Path:
    last = store.query("SELECT max(run_id) FROM runs").column(0)[0].as_py()
    return store.root / "published" / "s" / f"v{last + 1:06d}"


def _consistent(store: Store) -> None:
    """One publication of `s`; its folder holds its rows; no other folder is there."""
    pubs = store.query("SELECT version, path, rows FROM publications").to_pylist()
    assert len(pubs) == 1, pubs
    folder = store.root / pubs[0]["path"]
    assert pq.read_table(folder).num_rows == pubs[0]["rows"] == 20
    assert sorted((store.root / "published" / "s").iterdir()) == [folder]
    assert not list(store.root.rglob("*.tmp"))


def test_a_leftover_published_folder_is_removed_and_publish_succeeds(selected) -> None:
    leftover = _next_version(selected)  # what a publish killed in its commit leaves
    leftover.mkdir(parents=True)
    pq.write_table(pa.table({"item_id": [1, 2, 3]}), leftover / "part-0.parquet")
    pub = publish(selected, "s")
    assert pub.path == leftover and pub.rows == 20
    _consistent(selected)


def test_a_publish_sigkilled_in_its_commit_resumes(selected) -> None:
    """A real publish process, SIGKILLed after it renamed its folder into place and
    before its catalog commit: this test holds a read lock on the catalog, so the
    commit waits (thresher retries the lock) while the folder is already there."""
    final = _next_version(selected)
    code = (
        "from thresher.flows.select import publish\n"
        "from thresher.storage.store import Store\n"
        f"publish(Store({str(selected.root)!r}), 's')\n"
    )
    env = {**os.environ, "THRESHER_LOCAL_MAX_ROWS": ""}  # 20 rows: no Ray in the subprocess
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    reader = None
    try:
        reader = _hold_read_lock_once(selected, final.parent, proc)
        _wait_for(lambda: final.is_dir(), proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        if reader is not None:
            reader.close()
    assert proc.returncode == -signal.SIGKILL
    assert final.is_dir()  # the hole: on disk, not in the catalog
    assert selected.query("SELECT count(*) FROM publications").column(0)[0].as_py() == 0
    pub = publish(selected, "s")
    assert pub.path == final
    _consistent(selected)


def _hold_read_lock_once(store: Store, folder: Path, proc: subprocess.Popen):
    """A read-only catalog connection, opened once the publish run holds its store lock
    and has made the publication's folder (its own first catalog write is behind it)."""
    _wait_for(lambda: folder.is_dir(), proc)
    return duckdb.connect(str(store.catalog_path), read_only=True)


def _wait_for(ready, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert proc.poll() is None, f"publish ended ({proc.returncode}) before the kill point"
        assert time.monotonic() < deadline, "publish did not reach the kill point"
        time.sleep(0.001)
