"""Publishing resumes like every other run: what a publish killed before its catalog commit
leaves under STORE/published/ is removed by the next run, which then publishes. And
`thresher publish` makes a stage-by-stage selection readable by the feed and the example
trainer, labelled rows or not."""

from __future__ import annotations

import os
import re
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
from thresher.storage.feed import SelectionFeed
from thresher.storage.ingest import IngestConfig, ingest
from thresher.storage.store import Store

from tests.flows.test_cli import records, thresher
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


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "train.py"


@pytest.fixture
def partly_labelled(tmp_path: Path) -> Path:
    """A store built with the command line whose selection `small` (made by `thresher
    select`, not the curate flow) holds items with and without a label."""
    topics = ("cooking", "travel", None)
    rows = [
        {"id": i, "text": f"{topics[i % 3] or 'misc'} note number {i}", "topic": topics[i % 3]}
        for i in range(90)
    ]
    write_jsonl(tmp_path / "a.jsonl", rows)
    root = tmp_path / "s"
    thresher("init", root)
    thresher(
        "ingest",
        root,
        tmp_path / "a.jsonl",
        "--text-column",
        "text",
        "--label-column",
        "topic",
        "-q",
    )
    thresher("select", root, "small", "--keep", "0.5", "--policy", "random", "--balance", "none")
    return root


@pytest.mark.slow  # the tour (test_tour.py) publishes from the command line by default
def test_publish_command_publishes_once_per_selection_version(partly_labelled: Path) -> None:
    root = partly_labelled
    first = thresher("publish", root, "small").stdout
    m = re.fullmatch(
        r"selection 'small' \(45 rows, selection run (\d+)\) published as version (\d+): (.+)\n",
        first,
    )
    assert m, first
    version, folder = int(m[2]), Path(m[3])
    assert folder == root / "published" / "small" / f"v{version:06d}"
    again = thresher("publish", root, "small").stdout
    assert f"is already published as version {version}: {folder}; nothing to do" in again
    store = Store(root)
    assert store.query("SELECT count(*) FROM publications").column(0)[0].as_py() == 1
    feed = SelectionFeed.from_store(store, "small", columns=["text"])
    assert feed.num_rows == 45
    # a new selection version is a new publication, numbered by its run like the flow's
    thresher(
        "select",
        root,
        "small",
        "--keep",
        "0.5",
        "--policy",
        "random",
        "--balance",
        "none",
        "--seed",
        "1",
    )
    newer = thresher("publish", root, "small").stdout
    assert "published as version" in newer and f"version {version}:" not in newer
    missing = thresher("publish", root, "nope", check=False)
    assert missing.returncode == 2
    assert missing.stderr == "thresher: error: no selection named 'nope'; selections: small\n"


def test_example_trains_on_the_labelled_rows_of_a_partly_labelled_selection(
    partly_labelled: Path,
) -> None:
    thresher("publish", partly_labelled, "small")
    unlabelled = (
        Store(partly_labelled)
        .query("SELECT count(*) FROM selections JOIN items USING (item_id) WHERE topic IS NULL")
        .column(0)[0]
        .as_py()
    )
    assert 0 < unlabelled < 45
    proc = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            str(partly_labelled),
            "--selection",
            "small",
            "--epochs",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"rank 0: skipped {unlabelled} selected rows with no label" in proc.stdout
    assert f"rank 0 epoch 1: {45 - unlabelled} rows" in proc.stdout
    assert "held-out accuracy:" in proc.stdout
