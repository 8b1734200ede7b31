"""Fused nearest-centroid scoring: each row's nearest centroid, its cosine, and the margin.

For X (n, d) and centroids C (k, d), in fp32, fp16 or bf16, one pass returns
for every row the index of the most cosine-similar centroid, that cosine, and
the margin to the second most similar (+inf when k == 1), reading only the
first `m` dimensions when given (a Matryoshka prefix, renormalized). The
Triton kernel never holds an (n, k) matrix: it streams centroid tiles and
keeps a running top-2 per row.

`nearest_centroid_torch` is the reference (chunked matmul + topk);
`nearest_centroid_triton` the launcher. Callers use
`thresher.kernels.dispatch.nearest_centroid`, which picks one.
"""

from __future__ import annotations

import os

import torch

Result = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # idx int64, cos fp32, margin fp32


def _check(x: torch.Tensor, c: torch.Tensor, m: int | None) -> int:
    if x.ndim != 2 or c.ndim != 2 or x.shape[1] != c.shape[1]:
        raise ValueError(
            f"x {tuple(x.shape)} and centroids {tuple(c.shape)} must be (n, d), (k, d)"
        )
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16) or c.dtype != x.dtype:
        raise TypeError(
            f"x and centroids must share a float dtype (fp32/fp16/bf16), got "
            f"{x.dtype} and {c.dtype}"
        )
    if c.shape[0] < 1:
        raise ValueError("need at least one centroid")
    d = x.shape[1]
    m = d if m is None else m
    if not 0 < m <= d:
        raise ValueError(f"prefix m={m} out of range for {d} dimensions")
    return m


def _inv_norms(t: torch.Tensor, m: int) -> torch.Tensor:
    return 1.0 / t[:, :m].float().norm(dim=1).clamp_min(1e-12)


def nearest_centroid_torch(
    x: torch.Tensor, c: torch.Tensor, m: int | None = None, chunk: int = 8192
) -> Result:
    """Reference: cosine on the first m dims, top-2 over centroids, `chunk` rows at a time."""
    m = _check(x, c, m)
    cn = c[:, :m].float() * _inv_norms(c, m)[:, None]
    idx, cos, margin = [], [], []
    for start in range(0, x.shape[0], chunk):
        xs = x[start : start + chunk, :m].float()
        sims = (xs * _inv_norms(xs, m)[:, None]) @ cn.T
        top = sims.topk(min(2, c.shape[0]), dim=1)
        idx.append(top.indices[:, 0])
        cos.append(top.values[:, 0])
        margin.append(
            top.values[:, 0] - top.values[:, 1]
            if c.shape[0] > 1
            else torch.full_like(top.values[:, 0], float("inf"))
        )
    if not idx:
        empty = torch.zeros(0, device=x.device)
        return empty.long(), empty, empty
    return torch.cat(idx), torch.cat(cos), torch.cat(margin)


def nearest_centroid_triton(
    x: torch.Tensor,
    c: torch.Tensor,
    m: int | None = None,
    block_n: int | None = None,
    block_k: int = 128,
    block_d: int = 32,
    num_warps: int = 4,
    num_stages: int = 3,
) -> Result:
    """Launch the fused kernel (CUDA, or CPU tensors under TRITON_INTERPRET=1).

    The default launch configuration is the fastest of `benchmarks/kernel.py
    --sweep` on an H100 (n = 2M, d = 384; fp16 at k = 100 and 1000, fp32 at
    k = 100), where fp32 is fastest with 64 rows per program and 16-bit types
    with 128. fp32 products use three TF32 tensor-core passes on the GPU
    (`tf32x3`: about fp32's accuracy; one TF32 pass would misrank near-ties)
    and plain IEEE fp32 in the interpreter.
    """
    if block_n is None:
        block_n = 64 if x.dtype == torch.float32 else 128
    try:
        from thresher.kernels._nearest_centroid import nearest_centroid_kernel
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the Triton kernel needs triton: pip install 'thresher[gpu]'") from exc
    m = _check(x, c, m)
    if x.stride(1) != 1 or c.stride(1) != 1:
        x, c = x.contiguous(), c.contiguous()
    n, k = x.shape[0], c.shape[0]
    block_k = max(16, min(block_k, _pow2(k)))
    block_d = max(16, min(block_d, _pow2(m)))
    idx = torch.empty(n, dtype=torch.int32, device=x.device)
    cos = torch.empty(n, dtype=torch.float32, device=x.device)
    margin = torch.empty(n, dtype=torch.float32, device=x.device)
    # Triton's CPU interpreter mis-reads bf16 tensors (NumPy has no bf16): there the
    # kernel gets the raw bits as int16 and widens them itself; on a GPU it reads bf16.
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"
    bits = x.dtype == torch.bfloat16 and interpreted
    xk, ck = (x.view(torch.int16), c.view(torch.int16)) if bits else (x, c)
    if n:
        grid = ((n + block_n - 1) // block_n,)
        nearest_centroid_kernel[grid](
            xk,
            ck,
            _inv_norms(c, m).contiguous(),
            idx,
            cos,
            margin,
            n,
            k,
            m,
            x.stride(0),
            c.stride(0),
            BLOCK_N=block_n,
            BLOCK_K=block_k,
            BLOCK_D=block_d,
            PRECISION="ieee" if interpreted else "tf32x3" if x.dtype == torch.float32 else "tf32",
            BF16_BITS=bits,
            num_warps=num_warps,
            num_stages=num_stages,
        )
    return idx.long(), cos, margin


def _pow2(v: int) -> int:
    return 1 << max(0, (v - 1).bit_length())
