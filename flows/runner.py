"""Running the curate flow: once, in this process (`thresher run`, `thresher demo`), or
as a Prefect deployment on a cron schedule (`thresher schedule`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from thresher.flows import config as cfgmod
from thresher.flows.curate import STARTUP_TIMEOUT, ProgressFactory, curate, progress_bars
from thresher.storage.errors import ThresherError
from thresher.storage.ingest import expand_sources


def run_config(
    config_path: str,
    bars: ProgressFactory | None = None,
    announce: Callable[[str], object] | None = None,
) -> dict[str, Any]:
    """Run the flow in this process (Prefect's ephemeral server unless PREFECT_API_URL is
    set); `announce` hears that Prefect is starting, once the config has passed."""
    cfg = cfgmod.load(config_path)  # a bad config or source fails here, before Prefect starts
    expand_sources(list(cfg.ingest.sources), cfg.ingest.format)
    if announce and not os.environ.get("PREFECT_API_URL"):
        announce("starting Prefect (a temporary local API server) and the flow ...")
    try:
        with progress_bars(bars):
            return curate(config_path=str(config_path))
    except RuntimeError as exc:
        if "ephemeral Prefect API server" not in str(exc):
            raise
        raise ThresherError(
            f"Prefect's temporary API server did not answer within "
            f"{os.environ.get(STARTUP_TIMEOUT)} s: set {STARTUP_TIMEOUT} higher, or "
            "PREFECT_API_URL to a running `prefect server start`"
        ) from exc


def serve_schedule(
    config_path: str,
    cron: str,
    name: str | None = None,
    announce: Callable[[str], object] | None = None,
) -> None:
    """Register a deployment of the flow on `cron` and run its scheduled runs here;
    `announce` hears, once the config and cron have passed, when the server is temporary."""
    from prefect import serve
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.deployments.runner import RunnerDeployment

    cfg = cfgmod.load(config_path)
    try:
        CronSchedule(cron=cron)
    except ValueError:
        raise ThresherError(f"--cron {cron!r} is not a valid cron expression") from None
    if announce and not os.environ.get("PREFECT_API_URL"):
        announce(
            "no PREFECT_API_URL: serving on a temporary local Prefect server, which ends "
            "with this command (its schedule and run history too); for a lasting schedule "
            "start `prefect server start` and set PREFECT_API_URL"
        )
    deployment = curate.to_deployment(
        name=name or cfg.flow.name,
        cron=cron,
        parameters={"config_path": cfg.path},
        tags=["thresher"],
        description=f"thresher curate flow for {cfg.path}",
    )
    assert isinstance(deployment, RunnerDeployment)  # to_deployment is sync here
    serve(deployment, print_starting_message=True)
