"""The processes a thresher command starts go when it goes, however it ends.

`thresher run` starts Prefect's ephemeral API server and a local Ray (gcs_server,
raylet, its agents and workers); Ray and Prefect stop them at a normal exit, but
not when thresher is SIGKILLed (nor, for Ray's agents, always then: they are
children of the raylet, so its death signal does not reach them). So the
command line starts this small process beside itself: it notes thresher's
descendants every half second, and once thresher is gone (this process is
handed to another parent) it terminates the ones still running, then kills
those that have not gone 3 s later. Only descendants of that one thresher
process are touched: a Ray cluster given by `RAY_ADDRESS` or a `prefect server`
the user runs are not its descendants.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psutil

_started: subprocess.Popen[bytes] | None = None


def start() -> None:
    """Watch this process (once per process)."""
    global _started
    if _started is None:
        _started = subprocess.Popen(
            [sys.executable, "-m", "thresher.flows.watchdog", str(os.getpid())],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C of thresher's terminal does not stop it first
        )


def watch(parent: int, interval_s: float = 0.25) -> None:
    """Note `parent`'s descendants until it is gone; then end those still running."""
    import psutil

    try:
        root = psutil.Process(parent)
    except psutil.NoSuchProcess:
        return
    seen: dict[int, psutil.Process] = {}
    while os.getppid() == parent:
        try:
            for p in root.children(recursive=True):
                seen.setdefault(p.pid, p)
        except psutil.NoSuchProcess:
            break
        time.sleep(interval_s)
    procs = list(seen.values())
    # a local Ray session started by `parent` is named session_<date>_<time>_<us>_<parent>
    sessions = ray_sessions(procs) | {f"_{parent}"}
    for _ in range(5):  # a raylet that was starting its agents may start more meanwhile
        end(procs + session_processes(sessions))
        time.sleep(1.0)
        procs = session_processes(sessions)
        if not procs:
            break


RAY_SESSION = re.compile(r"session_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d+_\d+")


def ray_sessions(procs: list[psutil.Process]) -> set[str]:
    """The local Ray sessions (`session_<date>_<pid>` names) `procs` belong to."""
    import psutil

    sessions: set[str] = set()
    for p in procs:
        with contextlib.suppress(psutil.Error):
            sessions.update(RAY_SESSION.findall(" ".join(p.cmdline())))
    return sessions


def session_processes(sessions: set[str]) -> list[psutil.Process]:
    """The running processes of `sessions`, wherever they now hang: a Ray agent the
    raylet started just before thresher died can be reparented (its raylet gone too)
    before this watchdog ever saw it as thresher's descendant."""
    import psutil

    if not sessions:
        return []
    out = []
    for p in psutil.process_iter(["cmdline", "name"]):
        with contextlib.suppress(psutil.Error):
            line = " ".join(p.info.get("cmdline") or [])
            if (p.info.get("name") or "").startswith("ray::"):  # agents retitle themselves;
                line += " ".join(f.path for f in p.open_files())  # their logs name the session
            found = RAY_SESSION.findall(line)
            if (
                any(f.endswith(s) or f == s for f in found for s in sessions)
                and p.pid != os.getpid()
            ):
                out.append(p)
    return out


def end(procs: list[psutil.Process]) -> None:
    """Terminate `procs` and what they started; kill those left after 3 s."""
    import psutil

    everyone: dict[int, psutil.Process] = {}
    for p in procs:
        try:
            if p.pid != os.getpid() and p.is_running():  # is_running: not a reused pid
                everyone[p.pid] = p
                everyone.update((c.pid, c) for c in p.children(recursive=True))
        except psutil.Error:
            pass
    left = list(everyone.values())
    for p in left:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(left, timeout=3)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()


if __name__ == "__main__":
    watch(int(sys.argv[1]))
