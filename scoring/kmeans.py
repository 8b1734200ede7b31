"""Spherical k-means in torch, with the fused nearest-centroid kernel as its assignment step.

On a GPU this is the k-means of the global steps (prototype centroids, the
SemDeDup / density partitions), so they need no faiss-gpu: each Lloyd
iteration assigns every row with `nearest_centroid_triton` (one pass over X,
no (n, k) matrix) and updates the centroids with `index_add_`. On a CPU the
callers keep FAISS's k-means; this module runs there too (the torch reference,
or the Triton kernel under `TRITON_INTERPRET=1`), which is how it is tested.

Init: seeded k-means++ on cosine distance (Arthur & Vassilvitskii 2007: each
next centre drawn with probability proportional to its squared distance to
the nearest chosen one), which avoids the merged blobs a random init can
settle in. A cluster left empty takes the row currently farthest from its
centroid (FAISS splits a large cluster instead; both keep k clusters).
"""

from __future__ import annotations

import torch

from thresher.kernels.dispatch import pick_backend
from thresher.kernels.nearest_centroid import nearest_centroid_torch, nearest_centroid_triton
from thresher.storage.errors import ThresherError


def assign(
    x: torch.Tensor, centroids: torch.Tensor, backend: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(nearest centroid, cosine) of each row of (n, d) x, as tensors on x's device."""
    which = pick_backend(backend, x.device)
    fn = nearest_centroid_triton if which == "triton" else nearest_centroid_torch
    idx, cos, _ = fn(x, centroids.to(x.dtype))
    return idx, cos


def spherical_kmeans_torch(
    x: torch.Tensor, k: int, seed: int = 0, niter: int = 20, backend: str = "auto"
) -> torch.Tensor:
    """(k, d) float32 unit centroids of (n, d) unit rows x (fp32/fp16/bf16, any device)."""
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ThresherError(f"clusters must be in [1, {n}] for {n} rows, got {k}")
    centroids = _plus_plus(x, k, seed)
    for _ in range(niter):
        idx, cos = assign(x, centroids, backend)
        sums = torch.zeros_like(centroids).index_add_(0, idx, x.float())
        counts = torch.bincount(idx, minlength=k)
        empty = torch.nonzero(counts == 0).flatten()
        if len(empty):  # re-seed each empty cluster with one of the farthest rows
            far = torch.topk(-cos, len(empty)).indices
            sums[empty] = x[far].float()
        centroids = sums / sums.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return centroids


def _plus_plus(x: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    xf = x.float()
    chosen = [int(torch.randint(x.shape[0], (1,), generator=gen))]
    dist = (1.0 - xf @ xf[chosen[0]]).clamp_min(0)
    for _ in range(1, k):
        weight = (dist * dist).cpu().double()
        if float(weight.sum()) <= 0:  # every row already a centre's twin: any row will do
            weight = torch.ones_like(weight)
        chosen.append(int(torch.multinomial(weight, 1, generator=gen)))
        dist = torch.minimum(dist, (1.0 - xf @ xf[chosen[-1]]).clamp_min(0))
    return xf[chosen].clone()
