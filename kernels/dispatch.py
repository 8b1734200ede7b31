"""One entry point for scoring code: the Triton kernel on CUDA, torch or FAISS on the CPU."""

from __future__ import annotations

import importlib.util
import os
from typing import Literal

import numpy as np
import torch

from thresher.kernels.nearest_centroid import nearest_centroid_torch, nearest_centroid_triton
from thresher.storage.errors import ThresherError

Backend = Literal["auto", "triton", "torch", "faiss"]
BACKENDS: tuple[str, ...] = ("auto", "triton", "torch", "faiss")


def triton_usable(device: torch.device) -> bool:
    if importlib.util.find_spec("triton") is None:
        return False
    return device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


def pick_backend(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        raise ThresherError(f"backend {backend!r}: allowed {', '.join(BACKENDS)}")
    if backend == "auto":
        return "triton" if device.type == "cuda" and triton_usable(device) else "torch"
    if backend == "triton" and not triton_usable(device):
        raise ThresherError(
            "the triton backend needs CUDA (or TRITON_INTERPRET=1) and triton; "
            "pip install 'thresher[gpu]'"
        )
    return backend


def nearest_centroid(
    x: np.ndarray | torch.Tensor,
    c: np.ndarray | torch.Tensor,
    m: int | None = None,
    backend: str = "auto",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(idx int64, cosine float32, margin float32) per row, as NumPy (see nearest_centroid.py)."""
    xt = torch.as_tensor(x)
    ct = torch.as_tensor(c, device=xt.device)
    if torch.cuda.is_available() and xt.device.type == "cpu" and backend in ("auto", "triton"):
        xt, ct = xt.cuda(), ct.cuda()
    which = pick_backend(backend, xt.device)
    if which == "faiss":
        return _faiss(xt, ct, m)
    fn = nearest_centroid_triton if which == "triton" else nearest_centroid_torch
    idx, cos, margin = fn(xt, ct, m)
    return idx.cpu().numpy(), cos.cpu().numpy(), margin.cpu().numpy()


def _faiss(
    x: torch.Tensor, c: torch.Tensor, m: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import faiss

    m = m or x.shape[1]
    xs = x[:, :m].float().cpu().numpy()
    cs = c[:, :m].float().cpu().numpy()
    xs = xs / np.maximum(np.linalg.norm(xs, axis=1, keepdims=True), 1e-12)
    cs = cs / np.maximum(np.linalg.norm(cs, axis=1, keepdims=True), 1e-12)
    index = faiss.IndexFlatIP(m)
    index.add(np.ascontiguousarray(cs))
    sims, idx = index.search(np.ascontiguousarray(xs), min(2, len(cs)))
    margin = sims[:, 0] - sims[:, 1] if len(cs) > 1 else np.full(len(xs), np.inf, np.float32)
    return idx[:, 0].astype(np.int64), sims[:, 0].astype(np.float32), margin.astype(np.float32)
