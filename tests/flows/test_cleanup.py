"""A thresher process killed by any means takes the processes it started with it: its
local Ray (gcs_server, raylet, workers) and Prefect's ephemeral API server."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from thresher.flows.demo_data import make_records

from tests.flows.test_cli import THRESHER
from tests.flows.test_curate import _config
from tests.helpers import write_jsonl

Ready = Callable[[list[psutil.Process]], bool]


def _names(procs: list[psutil.Process]) -> str:
    out = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            out.append(" ".join(p.cmdline())[:200])
    return "\n".join(out)


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def kill_when_ready(args: list[str], env: dict[str, str], ready: Ready) -> list[psutil.Process]:
    """Start thresher with `args`, SIGKILL it once its descendants are `ready`; the
    descendants it had, still running 15 s later."""
    proc = subprocess.Popen(
        [THRESHER, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    seen: dict[int, psutil.Process] = {}
    deadline = time.monotonic() + 240
    try:
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, _names(list(seen.values()))
            for child in psutil.Process(proc.pid).children(recursive=True):
                seen.setdefault(child.pid, child)
            if ready(_alive(list(seen.values()))):
                break
            time.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    descendants = list(seen.values())
    end = time.monotonic() + 15
    while _alive(descendants) and time.monotonic() < end:
        time.sleep(0.5)
    return _alive(descendants)


def _has(procs: list[psutil.Process], word: str) -> bool:
    return word in _names(procs)


@pytest.mark.slow
def test_a_killed_run_leaves_no_ray_or_prefect_processes(tmp_path) -> None:
    write_jsonl(tmp_path / "a.jsonl", make_records(600, seed=1))
    config = _config(tmp_path, str(tmp_path / "s"), [str(tmp_path / "a.jsonl")])
    env = {**os.environ, "THRESHER_LOCAL_MAX_ROWS": "0"}
    env.pop("PREFECT_API_URL", None)
    left = kill_when_ready(
        ["run", "-q", str(config)],
        env,
        lambda procs: _has(procs, "raylet") and _has(procs, "prefect.server"),
    )
    assert not left, _names(left)


@pytest.mark.slow
def test_a_killed_dedup_leaves_no_ray_processes(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [{"text": f"row {i % 500}"} for i in range(5000)])
    env = {**os.environ, "THRESHER_LOCAL_MAX_ROWS": "200000"}
    subprocess.run([THRESHER, "init", tmp_path / "s"], check=True, env=env)
    subprocess.run(
        [THRESHER, "ingest", "-q", tmp_path / "s", tmp_path / "a.jsonl", "--text-column", "text"],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    env["THRESHER_LOCAL_MAX_ROWS"] = "0"
    left = kill_when_ready(
        ["dedup", "-q", str(tmp_path / "s"), "--exact"], env, lambda p: _has(p, "RuntimeEnvAgent")
    )
    assert not left, _names(left)
