"""`thresher run` on a real two-node Ray cluster (two `ray start` processes on this machine).

The head node has 1 CPU, the worker node 2. The same corpus is curated once with
an in-process Ray (store A) and once on the cluster through `RAY_ADDRESS`
(store B): both must record the same duplicates and the same selection, and the
worker node's own logs must show that it ran some of the work. A third run
(store C) loses the worker node in the middle (every process of it SIGKILLed,
as when a machine dies) and must still finish, on the head node alone, with the
same selection.

Each node is a `ray start --block` process in its own session with its own temp
dir, so the test can kill exactly one node and stop exactly what it started
(never `ray stop`, which stops every Ray on the machine). Nothing here uses the
in-process `ray_session` fixture of tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from thresher.flows.demo_data import make_records
from thresher.storage.store import Store

from tests.flows.test_cli import THRESHER, thresher
from tests.helpers import write_jsonl

# three `thresher run`s (each starts Prefect's ephemeral server) and a cluster: minutes
pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).with_name("ray"))

CONFIG = """\
store = "{store}"
[ingest]
sources = ["{source}"]
id_column = "doc_id"
label_column = "topic"
[filter]
min_chars = 25
[embed]
max_seq_length = 32
[score]
clusters = 4
[select]
name = "train"
keep = 0.4
[flow]
retries = 2
retry_delay_s = 1
"""

# The GCS declares a node dead after `failure_threshold` missed health checks,
# `period_ms` apart (defaults: 5 x 3 s); faster here so the kill test waits less.
FAST_NODE_DEATH = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}
# Ray workers retitle themselves `ray::<task or actor method>` while they run
# something, `ray::IDLE` in between; the agents are always there.
IDLE_TITLES = ("ray::IDLE", "ray::DashboardAgent", "ray::RuntimeEnvAgent")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tree(proc: subprocess.Popen) -> list[psutil.Process]:
    """A node's processes: its `ray start --block` and everything under it (raylet, GCS,
    agents, Ray workers: the raylet's children, each in a process group of its own)."""
    try:
        root = psutil.Process(proc.pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _kill(procs: list[psutil.Process]) -> None:
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()


@dataclass
class Node:
    name: str
    temp_dir: Path
    proc: subprocess.Popen
    log: Path
    seen: list[psutil.Process] = field(default_factory=list)  # every process ever listed

    def processes(self) -> list[psutil.Process]:
        procs = _tree(self.proc)
        known = {p.pid for p in self.seen}
        self.seen.extend(p for p in procs if p.pid not in known)
        return procs

    def busy(self) -> list[str]:
        """Titles of this node's Ray workers that are running a task or an actor method."""
        titles = []
        for p in self.processes():
            try:
                title = " ".join(p.cmdline()).strip()
            except psutil.Error:
                continue
            if title.startswith("ray::") and not title.startswith(IDLE_TITLES):
                titles.append(title)
        return titles

    def kill(self) -> None:
        """SIGKILL every process of the node at once, as when its machine dies."""
        _kill(self.processes())
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.processes()
            self.proc.send_signal(signal.SIGTERM)  # `ray start --block` stops its processes
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=20)
        deadline = time.monotonic() + 20
        while any(_alive(p) for p in self.seen) and time.monotonic() < deadline:
            time.sleep(0.5)
        _kill([p for p in self.seen if _alive(p)])
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def ran(self) -> set[str]:
        """Names of the tasks and actors this node's Ray workers ran (from its own logs)."""
        names = set()
        for out in self.temp_dir.glob("session_*/logs/worker-*.out"):
            for line in out.read_text(errors="replace").splitlines():
                if line.startswith((":task_name:", ":actor_name:")):
                    names.add(line.split(":", 2)[2].strip())
        return names


@dataclass
class Cluster:
    address: str
    head: Node
    worker: Node

    def status(self) -> str:
        env = {**os.environ, "RAY_ADDRESS": self.address}
        proc = subprocess.run(
            [RAY, "status"], capture_output=True, text=True, timeout=60, env=env, check=False
        )
        return proc.stdout + proc.stderr


def _start(name: str, args: list[str], env: dict[str, str], ready) -> Node:
    temp_dir = Path(tempfile.mkdtemp(prefix=f"thr-{name}-", dir="/tmp"))  # short: unix sockets
    log = temp_dir / "ray-start.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                *(RAY, "start", "--block", "--disable-usage-stats"),
                *("--temp-dir", str(temp_dir)),
                *("--dashboard-agent-listen-port", str(_free_port())),
                *args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    node = Node(name, temp_dir, proc, log)
    deadline = time.monotonic() + 120
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            node.stop()
            raise AssertionError(f"ray start ({name}) failed:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    node.processes()
    return node


def _alive_nodes(address: str) -> int:
    """Nodes the GCS counts as alive (`ray status`: the state API would need the dashboard)."""
    env = {**os.environ, "RAY_ADDRESS": address}
    try:
        proc = subprocess.run(
            [RAY, "status"], capture_output=True, text=True, timeout=60, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        return 0
    active = proc.stdout.partition("Active:")[2].partition("Pending:")[0]
    return len(re.findall(r"^\s*1 node_[0-9a-f]+$", active, flags=re.M))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cluster")
    write_jsonl(folder / "a.jsonl", make_records(600, seed=11))
    return folder


def _config(corpus: Path, store: str) -> Path:
    path = corpus / f"{store}.toml"
    path.write_text(CONFIG.format(store=corpus / store, source=corpus / "a.jsonl"))
    return path


def _state(store: Store) -> dict[str, list]:
    """What a run decided, independent of run ids."""

    def rows(sql: str) -> list:
        return [tuple(r.values()) for r in store.query(sql + " ORDER BY ALL").to_pylist()]

    latest = store.query("SELECT path FROM publications ORDER BY version DESC LIMIT 1")
    published = pq.read_table(store.root / latest.column(0)[0].as_py(), columns=["item_id"])
    return {
        "items": rows("SELECT item_id FROM items"),
        "filtered": rows("SELECT item_id, reason FROM filtered"),
        "duplicates": rows("SELECT item_id, kept_id, method FROM duplicates"),
        "embedded": rows("SELECT item_id FROM embeddings"),
        "clusters": rows("SELECT item_id, cluster_id FROM clusters"),
        "selection": rows(
            "SELECT item_id FROM selections WHERE run_id = (SELECT max(run_id) FROM selections)"
        ),
        "published": sorted((i,) for i in published.column("item_id").to_pylist()),
    }


@pytest.fixture(scope="module")
def local(corpus: Path) -> dict[str, list]:
    """Store A: the run with an in-process Ray, before any cluster exists."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("RAY_ADDRESS", raising=False)
        thresher("run", "-q", str(_config(corpus, "a")))
    return _state(Store(corpus / "a"))


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    port = _free_port()
    address = f"127.0.0.1:{port}"
    env = {**os.environ, **FAST_NODE_DEATH, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    nodes: list[Node] = []
    try:
        head = _start(
            "head",
            [
                *("--head", "--port", str(port), "--num-cpus", "1"),
                *("--ray-client-server-port", str(_free_port())),
                *("--include-dashboard", "false", "--object-store-memory", "300000000"),
            ],
            env,
            ready=lambda: _alive_nodes(address) == 1,
        )
        nodes.append(head)
        worker = _start(
            "worker",
            [
                *("--address", address, "--num-cpus", "2", "--object-store-memory", "300000000"),
            ],
            env,
            ready=lambda: _alive_nodes(address) == 2,
        )
        nodes.append(worker)
        yield Cluster(address, head, worker)
    finally:
        for node in reversed(nodes):
            node.stop()
        left = [p for node in nodes for p in node.seen if _alive(p)]
        # and nothing of ours by name either: every raylet / GCS names its node's temp dir
        ours = [
            p.info["pid"]
            for p in psutil.process_iter(["pid", "cmdline"])
            if any(str(n.temp_dir) in arg for n in nodes for arg in p.info["cmdline"] or [])
            and _alive(p)
        ]
        for node in nodes:
            shutil.rmtree(node.temp_dir, ignore_errors=True)
        assert not left and not ours, f"processes left running: {left} {ours}"


def test_a_cluster_run_equals_a_local_run(
    local: dict, cluster: Cluster, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran_before = cluster.worker.ran()
    monkeypatch.setenv("RAY_ADDRESS", cluster.address)
    out = thresher("run", "-q", str(_config(corpus, "b"))).stdout
    assert "publish" in out
    state = _state(Store(corpus / "b"))
    assert state == local
    assert state["selection"] and state["duplicates"]
    # the second node did some of the work (its workers log each task's name as it starts)
    assert cluster.worker.ran() - ran_before, cluster.worker.ran()


def test_a_run_survives_losing_the_worker_node_mid_stage(
    local: dict, cluster: Cluster, corpus: Path
) -> None:
    cfg = _config(corpus, "c")
    root = corpus / "c"
    env = {**os.environ, "RAY_ADDRESS": cluster.address}
    log = corpus / "c.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [THRESHER, "run", "-q", str(cfg)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        # Once the embed stage has begun, kill the worker node while it runs something. With
        # 1 CPU on the head and 2 on the worker, a global step (`run_task`, sized to the
        # largest node) can only run on the worker: losing it must not leave the step
        # waiting forever for a 2-CPU node.
        killed: list[str] = []
        begun = False
        deadline = time.monotonic() + 240
        while not killed and proc.poll() is None and time.monotonic() < deadline:
            begun = begun or bool(list(root.glob("work/*/embed-todo.parquet")))
            if begun and (busy := cluster.worker.busy()):
                cluster.worker.kill()
                killed = busy
            time.sleep(0.02)
        assert killed, f"the run ended before the worker node was killed:\n{log.read_text()}"
        try:
            rc = proc.wait(timeout=240)
        except subprocess.TimeoutExpired:
            status = cluster.status()
            pytest.fail(
                f"the run hung after the worker node died while running {killed}; "
                f"ray status:\n{status}\nrun output:\n{log.read_text()[-4000:]}"
            )
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
    assert rc == 0, f"killed the worker node while it ran {killed}:\n{log.read_text()[-6000:]}"
    assert _alive_nodes(cluster.address) == 1
    assert _state(Store(root)) == local
