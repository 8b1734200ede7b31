"""Shared fixtures: one real local Ray per session, small seeded data, fresh stores."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# every stage on Ray, however small the test data (tests/flows/test_runtime.py compares the
# in-process path for small inputs against it)
os.environ.setdefault("THRESHER_LOCAL_MAX_ROWS", "0")
import torch

if not torch.cuda.is_available():  # kernels run in Triton's CPU interpreter, else on the GPU
    os.environ.setdefault("TRITON_INTERPRET", "1")
# Prefect: a throwaway home (its ephemeral server's database) for this test session
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="thresher-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

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
