"""The fused kernel against its torch reference, on odd shapes and three dtypes.

Runs on the CPU under TRITON_INTERPRET=1 (set in conftest.py before any kernel
import) when triton is installed, and on CUDA where there is a GPU.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from thresher.kernels.dispatch import nearest_centroid
from thresher.kernels.nearest_centroid import nearest_centroid_torch

needs_triton = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None, reason="triton is not installed"
)
TOL = {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 1.5e-2}


def data(n: int, k: int, d: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g).to(dtype), torch.randn(k, d, generator=g).to(dtype))


def check(got, ref, dtype) -> None:
    idx, cos, margin = got
    ridx, rcos, rmargin = ref
    tol = TOL[dtype]
    torch.testing.assert_close(cos, rcos, atol=tol, rtol=0)
    torch.testing.assert_close(margin, rmargin, atol=2 * tol, rtol=0)
    close_call = rmargin < 4 * tol  # near-ties may pick either centroid
    assert bool(((idx == ridx) | close_call).all())


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "n, k, d, m", [(1, 3, 5, None), (70, 17, 33, None), (129, 40, 100, 24), (64, 2, 16, 16)]
)
def test_triton_matches_torch_reference(n, k, d, m, dtype) -> None:
    from thresher.kernels.nearest_centroid import nearest_centroid_triton

    x, c = data(n, k, d, dtype)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    got = nearest_centroid_triton(x.to(device), c.to(device), m, block_n=32, block_k=16, block_d=16)
    check(tuple(t.cpu() for t in got), nearest_centroid_torch(x, c, m), dtype)


def test_reference_matches_a_hand_computed_fixture() -> None:
    x = torch.tensor([[1.0, 0.0, 5.0], [0.0, 2.0, -1.0], [1.0, 1.0, 0.0]])
    c = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    idx, cos, margin = nearest_centroid_torch(x, c, m=2)  # only the first two dims count
    assert idx.tolist() == [0, 1, 0]
    assert cos.tolist() == pytest.approx([1.0, 1.0, 2**-0.5])
    assert margin.tolist() == pytest.approx([1.0, 1.0, 0.0])


@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_cpu_backends_agree(backend) -> None:
    x, c = data(300, 12, 48, torch.float32, seed=3)
    ref = nearest_centroid_torch(x, c)
    idx, cos, _margin = nearest_centroid(x.numpy(), c.numpy(), backend=backend)
    assert np.allclose(cos, ref[1].numpy(), atol=1e-5) and (idx == ref[0].numpy()).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_picks_triton_on_cuda() -> None:
    x, c = data(1000, 50, 384, torch.float16)
    _idx, cos, _ = nearest_centroid(x.cuda(), c.cuda())
    ref = nearest_centroid_torch(x, c)
    assert np.allclose(cos, ref[1].numpy(), atol=2e-3)


def test_bad_inputs_are_refused() -> None:
    x, c = data(4, 3, 8, torch.float32)
    with pytest.raises(ValueError, match="must be"):
        nearest_centroid_torch(x, c[:, :4])
    with pytest.raises(TypeError, match="share a float dtype"):
        nearest_centroid_torch(x, c.half())
    with pytest.raises(ValueError, match="out of range"):
        nearest_centroid_torch(x, c, m=9)
    with pytest.raises(ValueError, match="allowed"):
        nearest_centroid(x, c, backend="cuda")
