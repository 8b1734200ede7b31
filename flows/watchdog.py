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


def watch(parent: int, interval_s: float = 0.5) -> None:
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
    end(list(seen.values()))


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
