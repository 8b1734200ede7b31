"""`thresher schedule` against a real `prefect server` on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from thresher.flows.demo_data import make_records
from thresher.storage.store import Store

from tests.flows.test_cli import THRESHER
from tests.helpers import write_jsonl

PREFECT = str(Path(sys.executable).with_name("prefect"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(url: str, body: dict | None = None) -> object:
    req = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def _wait(what: str, check, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except Exception:
            found = None
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def server(tmp_path: Path):
    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    proc = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait("prefect server", lambda: _api(env["PREFECT_API_URL"] + "/health"), 90)
        yield env
    finally:
        _stop(proc)


@pytest.mark.slow  # a real prefect server and a scheduled flow run (45 s)
def test_schedule_serves_a_cron_deployment_that_runs_the_flow(tmp_path: Path, server) -> None:
    api = server["PREFECT_API_URL"]
    write_jsonl(tmp_path / "a.jsonl", make_records(300, seed=5))
    cfg = tmp_path / "nightly.toml"
    cfg.write_text(
        'store = "store"\n[ingest]\nsources = ["a.jsonl"]\nid_column = "doc_id"\n'
        '[embed]\nmax_seq_length = 32\n[select]\nkeep = 0.3\npolicy = "random"\n'
    )
    serve = subprocess.Popen(
        [THRESHER, "schedule", str(cfg), "--cron", "0 3 * * *", "--name", "nightly"],
        env=server,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deployments = _wait(
            "the deployment", lambda: _api(api + "/deployments/filter", {}), timeout=90
        )
        (dep,) = deployments
        assert dep["name"] == "nightly"
        assert dep["parameters"] == {"config_path": str(cfg)}
        assert [s["schedule"]["cron"] for s in dep["schedules"]] == ["0 3 * * *"]
        # run it now instead of waiting for 03:00; the serving process picks the run up
        subprocess.run(
            [PREFECT, "deployment", "run", "thresher-curate/nightly"],
            env=server,
            check=True,
            capture_output=True,
            timeout=60,
        )
        store_root = tmp_path / "store"

        def curated() -> bool:
            store = Store(store_root)
            return (
                store.query("SELECT count(*) FROM runs WHERE flow = 'curate'").column(0)[0].as_py()
                == 1
            )

        _wait("the scheduled flow run", curated, timeout=240)
        # the store commits before the flow run reports its final state
        _wait(
            "the flow run's Completed state",
            lambda: any(
                r["state_type"] == "COMPLETED" for r in _api(api + "/flow_runs/filter", {})
            ),
            timeout=60,
        )
        assert Store(store_root).query("SELECT count(*) FROM selections").column(0)[0].as_py() > 0
        # the run's artifact: a table of counts per stage
        (artifact,) = _api(
            api + "/artifacts/filter", {"artifacts": {"key": {"any_": ["thresher-curate-train"]}}}
        )
        assert artifact["type"] == "table"
        rows = (
            json.loads(artifact["data"]) if isinstance(artifact["data"], str) else artifact["data"]
        )
        assert [r["stage"] for r in rows] == [
            "ingest",
            "filter",
            "dedup",
            "embed",
            "semantic",
            "score",
            "select",
            "publish",
        ]
        assert rows[0]["kept"] == 300
    finally:
        _stop(serve)
    assert serve.returncode is not None


def test_schedule_refuses_a_bad_cron(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('store = "s"\n[ingest]\nsources = ["a.jsonl"]\n')
    proc = subprocess.run(
        [THRESHER, "schedule", str(cfg), "--cron", "every day"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "thresher: error: --cron 'every day' is not a valid cron expression"
    ]


def test_schedule_without_a_server_says_so_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", make_records(20, seed=1))
    cfg = tmp_path / "c.toml"
    cfg.write_text('store = "s"\n[ingest]\nsources = ["a.jsonl"]\n')
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    proc = subprocess.Popen(
        [THRESHER, "schedule", str(cfg), "--cron", "0 3 * * *"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        # serving: Prefect prints its banner once the deployment is registered
        _wait("the serving banner", lambda: "being served" in proc.stdout.readline(), 120)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        _stop(proc)
    assert proc.returncode == 0, stderr
    assert "no PREFECT_API_URL: serving on a temporary local Prefect server" in stderr
    assert stderr.strip().endswith("schedule stopped")
    assert "Traceback" not in stderr and "RuntimeWarning" not in stderr
