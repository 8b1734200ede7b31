"""Shared fixtures: one real local Ray per session, small seeded data, fresh stores."""

from __future__ import annotations

import os

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TRITON_INTERPRET", "1")

from pathlib import Path

import pytest

from thresher.storage.store import Store


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory: pytest.TempPathFactory):
    import ray

    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            _temp_dir=str(tmp_path_factory.mktemp("ray")),
        )
    yield ray
    ray.shutdown()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.init(tmp_path / "store")
