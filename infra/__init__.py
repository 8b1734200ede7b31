"""Deployment files: container image, KubeRay manifests, Prefect deployments."""
