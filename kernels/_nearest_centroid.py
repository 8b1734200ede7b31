"""Triton code of the fused nearest-centroid kernel (launcher: kernels/nearest_centroid.py)."""

import triton
import triton.language as tl


@triton.jit
def nearest_centroid_kernel(
    x_ptr,
    c_ptr,
    c_inv_ptr,
    idx_ptr,
    cos_ptr,
    margin_ptr,
    n,
    k,
    m,
    stride_x,
    stride_c,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_D: tl.constexpr,
    PRECISION: tl.constexpr,
    BF16_BITS: tl.constexpr,
):
    # One program: BLOCK_N rows of x against every centroid, BLOCK_K at a time.
    # Only the best and second-best cosine per row are kept: no n x k matrix.
    # x is read once: its rows' norms are summed from the same tiles, and since
    # scaling a row by a positive number keeps its ranking, best and second are
    # tracked unscaled and divided by the row's norm at the end.
    pid = tl.program_id(0)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < n
    sq = tl.zeros([BLOCK_N], tl.float32)
    best = tl.full([BLOCK_N], float("-inf"), tl.float32)
    second = tl.full([BLOCK_N], float("-inf"), tl.float32)
    best_idx = tl.zeros([BLOCK_N], tl.int32)
    lanes = tl.arange(0, BLOCK_K)
    for k0 in range(0, k, BLOCK_K):
        cols = k0 + lanes
        col_ok = cols < k
        acc = tl.zeros([BLOCK_N, BLOCK_K], tl.float32)
        sq = tl.zeros([BLOCK_N], tl.float32)  # recounted per centroid tile: cheap, no branch
        for d0 in range(0, m, BLOCK_D):
            ds = d0 + tl.arange(0, BLOCK_D)
            d_ok = ds < m  # the first m dimensions only: a Matryoshka prefix
            xt = tl.load(
                x_ptr + rows[:, None] * stride_x + ds[None, :],
                mask=row_ok[:, None] & d_ok[None, :],
                other=0,
            )
            ct = tl.load(
                c_ptr + cols[:, None] * stride_c + ds[None, :],
                mask=col_ok[:, None] & d_ok[None, :],
                other=0,
            )
            if BF16_BITS:  # bf16 handed over as int16 bits (see the launcher): widen to fp32
                xt = (xt.to(tl.uint16, bitcast=True).to(tl.uint32) << 16).to(
                    tl.float32, bitcast=True
                )
                ct = (ct.to(tl.uint16, bitcast=True).to(tl.uint32) << 16).to(
                    tl.float32, bitcast=True
                )
            xf = xt.to(tl.float32)
            sq += tl.sum(xf * xf, axis=1)
            acc += tl.dot(xt, tl.trans(ct), input_precision=PRECISION)
        c_inv = tl.load(c_inv_ptr + cols, mask=col_ok, other=0.0)
        sims = acc * c_inv[None, :]
        sims = tl.where(col_ok[None, :], sims, float("-inf"))
        tile_best = tl.max(sims, axis=1)
        tile_arg = tl.argmax(sims, axis=1)
        tile_second = tl.max(
            tl.where(lanes[None, :] == tile_arg[:, None], float("-inf"), sims), axis=1
        )
        second = tl.maximum(tl.minimum(best, tile_best), tl.maximum(second, tile_second))
        best_idx = tl.where(tile_best > best, k0 + tile_arg, best_idx)
        best = tl.maximum(best, tile_best)
    x_inv = 1.0 / tl.maximum(tl.sqrt(sq), 1e-12)
    tl.store(idx_ptr + rows, best_idx, mask=row_ok)
    tl.store(cos_ptr + rows, best * x_inv, mask=row_ok)
    tl.store(margin_ptr + rows, (best - second) * x_inv, mask=row_ok)
