"""Matryoshka prefixes: make the first m dimensions of an embedding usable on their own.

A Matryoshka-trained model (Kusupati et al. 2022) already packs its
information into the leading dimensions. For any other model thresher fits
an *orthogonal* rotation Q on a sample and uses the prefixes of x @ Q:

- ``pca``: Q = the eigenvectors of the (uncentered) second-moment matrix
  X^T X, by decreasing eigenvalue, so each prefix keeps the most energy a
  linear projection can. Uncentered, because the similarity is cosine about
  the origin, not about the mean.
- ``adaptor``: Q starts at the PCA rotation and is trained (torch, Q kept
  orthogonal) so that for every prefix m the cosine similarities of
  renormalized m-prefixes match the full vectors' similarities, over all
  pairs of a batch and more strongly over each item's nearest neighbours —
  the unsupervised Matryoshka-Adaptor idea (Yoon et al. 2024).
- ``identity``: prefixes as they are (for Matryoshka-trained models).

Because Q is orthogonal, full-length vectors keep their exact cosine
similarities: a rotation never changes full-dimension search results.
Prefixes are renormalized before use.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np

from thresher.storage.errors import ThresherError

log = logging.getLogger(__name__)

RotationKind = Literal["pca", "adaptor", "identity"]
ROTATIONS: tuple[str, ...] = ("pca", "adaptor", "identity")


def prefix(vectors: np.ndarray, m: int) -> np.ndarray:
    """The first m dimensions of (n, d) vectors, renormalized to unit length."""
    head = np.ascontiguousarray(vectors[:, :m], dtype=np.float32)
    norms = np.linalg.norm(head, axis=1, keepdims=True)
    return head / np.maximum(norms, 1e-12)


def normalize(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ThresherError(f"{int((norms == 0).sum())} zero vector(s) cannot be normalized")
    return vectors / norms


def fit_pca_rotation(sample: np.ndarray) -> np.ndarray:
    """(d, d) orthogonal Q whose columns are the principal axes of `sample` (n, d)."""
    x = np.asarray(sample, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ThresherError(f"need a (n >= 2, d) sample to fit a rotation, got shape {x.shape}")
    moment = x.T @ x / len(x)
    eigvals, eigvecs = np.linalg.eigh(moment)
    q = eigvecs[:, np.argsort(eigvals)[::-1]]
    q *= np.sign(q[np.abs(q).argmax(axis=0), np.arange(q.shape[1])])  # deterministic signs
    return q.astype(np.float32)


def fit_adaptor_rotation(
    sample: np.ndarray,
    dims: Sequence[int],
    *,
    steps: int = 300,
    batch: int = 1024,
    neighbours: int = 10,
    lr: float = 2e-3,
    seed: int = 0,
) -> np.ndarray:
    """(d, d) orthogonal Q trained from the PCA rotation (see the module docstring)."""
    import torch
    from torch.nn.utils.parametrizations import orthogonal

    x_all = normalize(sample)
    d = x_all.shape[1]
    prefixes = [m for m in sorted(set(dims)) if m < d]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    layer = orthogonal(torch.nn.Linear(d, d, bias=False))
    with torch.no_grad():
        layer.weight = torch.from_numpy(fit_pca_rotation(x_all).T.copy())
    opt = torch.optim.Adam(layer.parameters(), lr=lr)
    k = min(neighbours, batch - 1)
    for step in range(steps):
        idx = rng.choice(len(x_all), size=min(batch, len(x_all)), replace=False)
        x = torch.from_numpy(x_all[idx])
        full = x @ x.T
        top = full.topk(k + 1, dim=1).indices[:, 1:]
        y = layer(x)
        loss = torch.zeros(())
        for m in prefixes:
            p = torch.nn.functional.normalize(y[:, :m], dim=1)
            sim = p @ p.T
            loss = loss + ((sim - full) ** 2).mean()
            loss = loss + ((sim.gather(1, top) - full.gather(1, top)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0:
            log.info("adaptor step %d loss %.5f", step, loss.item())
    q = layer.weight.detach().numpy().T.astype(np.float32)
    return q


def fit_rotation(sample: np.ndarray, kind: RotationKind, dims: Sequence[int]) -> np.ndarray:
    if kind not in ROTATIONS:
        raise ThresherError(f"rotation {kind!r}: allowed {', '.join(ROTATIONS)}")
    d = sample.shape[1]
    if kind == "identity":
        return np.eye(d, dtype=np.float32)
    if kind == "pca":
        return fit_pca_rotation(normalize(sample))
    return fit_adaptor_rotation(sample, dims)


def check_dims(dims: Sequence[int], d: int) -> list[int]:
    """Sorted prefix dimensions, ending at the full width d."""
    bad = [m for m in dims if not 0 < m <= d]
    if bad:
        raise ThresherError(f"prefix dims {bad} out of range for {d}-dimensional vectors")
    return sorted(set(dims) | {d})
