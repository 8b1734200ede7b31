"""Deployment files: container image, KubeRay manifests, Prefect deployments.

The names the code and the manifests share live here, and the tests check the
files in this folder against them.
"""

from __future__ import annotations

from pathlib import Path

IMAGE_REPOSITORY = "ghcr.io/thresher-data/thresher"
IMAGE_TAG = "0.1.0"  # the package version the image is built from
IMAGE = f"{IMAGE_REPOSITORY}:{IMAGE_TAG}"
GPU_RESOURCE = "nvidia.com/gpu"
STORE_MOUNT = "/data"  # a shared volume: every pod sees the store at the same path
RAY_CLIENT_PORT = 10001

FOLDER = Path(__file__).parent
FILES = ("Dockerfile", "raycluster.yaml", "prefect.yaml")
