"""The deployment files parse and name the image, resources and entrypoint the code expects."""

from __future__ import annotations

import tomllib
from pathlib import Path

import prefect
import ray
import yaml

from thresher import infra
from thresher.flows.curate import curate

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"


def _pods(cluster: dict) -> list[tuple[str, dict]]:
    spec = cluster["spec"]
    groups = [("head", spec["headGroupSpec"])] + [
        (g["groupName"], g) for g in spec["workerGroupSpecs"]
    ]
    return [(name, g["template"]["spec"]) for name, g in groups]


def test_raycluster_runs_the_image_with_a_gpu_group_and_a_shared_store() -> None:
    docs = list(yaml.safe_load_all((INFRA / "raycluster.yaml").read_text()))
    (cluster,) = [d for d in docs if d["kind"] == "RayCluster"]
    (claim,) = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    assert cluster["apiVersion"] == "ray.io/v1"
    assert cluster["spec"]["rayVersion"] == ray.__version__  # image and cluster must agree
    for name, pod in _pods(cluster):
        (container,) = pod["containers"]
        assert container["image"] == infra.IMAGE, name
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
        assert mounts == {"store": infra.STORE_MOUNT}, name
        assert claims == {"store": claim["metadata"]["name"]}, name
    assert "ReadWriteMany" in claim["spec"]["accessModes"]
    head = cluster["spec"]["headGroupSpec"]
    ports = {p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]}
    assert infra.RAY_CLIENT_PORT in ports
    (gpu,) = [g for g in cluster["spec"]["workerGroupSpecs"] if g["groupName"] == "gpu"]
    (container,) = gpu["template"]["spec"]["containers"]
    limit = int(container["resources"]["limits"][infra.GPU_RESOURCE])
    assert limit >= 1 and int(gpu["rayStartParams"]["num-gpus"]) == limit


def test_prefect_yaml_declares_the_curate_flow_for_a_work_pool() -> None:
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.flows import load_flow_from_entrypoint

    project = yaml.safe_load((INFRA / "prefect.yaml").read_text())
    assert project["prefect-version"] == prefect.__version__
    (dep,) = project["deployments"]
    path, _, func = dep["entrypoint"].partition(":")
    flow = load_flow_from_entrypoint(f"{ROOT / path}:{func}")
    assert flow.name == curate.name
    assert set(dep["parameters"]) <= set(flow.parameters.properties)
    for s in dep["schedules"]:
        CronSchedule(cron=s["cron"])
    job = dep["work_pool"]["job_variables"]
    assert job["image"] == infra.IMAGE
    cluster = yaml.safe_load_all((INFRA / "raycluster.yaml").read_text())
    name = next(d for d in cluster if d["kind"] == "RayCluster")["metadata"]["name"]
    assert job["env"]["RAY_ADDRESS"] == f"ray://{name}-head-svc:{infra.RAY_CLIENT_PORT}"
    assert dep["parameters"]["config_path"].startswith(infra.STORE_MOUNT + "/")


def test_dockerfile_installs_this_package_with_the_gpu_extra() -> None:
    text = (INFRA / "Dockerfile").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["version"] == infra.IMAGE_TAG
    assert infra.IMAGE in text
    packages = pyproject["tool"]["setuptools"]["package-dir"]
    for folder in {p.split(".")[1] for p in packages if p.count(".") == 1}:
        assert f"COPY {folder} {folder}" in text
    assert 'pip install --no-cache-dir ".[gpu]"' in text
    assert "gpu" in pyproject["project"]["optional-dependencies"]
