"""The course's own batch norm for NCHW tensors in Triton: train-mode forward and backward, each in the
fewest passes over the tensor that a tensor larger than the chip's memory allows.

Forward (three kernels, two passes over ``x``):

1. ``_forward_partials``: one program per (channel, slice of the batch) reads its part of ``x`` once
   and keeps Welford's running (count, mean, sum of squared deviations), merging tile after tile with
   Chan's formula; no second pass over ``x`` for the variance, and no sum of squares that loses
   precision when the mean is large.
2. ``_forward_finish``: one program per channel merges the slices' partials, writes the saved mean and
   1/sqrt(var + eps), updates the running mean and (unbiased) running variance in place, and turns
   gamma and beta into a scale and shift.
3. ``_normalize``: one program per (image, channel) row reads ``x`` again and writes
   ``y = (x - mean) * scale + beta``.

Backward (three kernels, two passes over ``x`` and ``dy``):

1. ``_backward_partials``: per (channel, slice) the sums of ``dy`` and ``dy * x_hat``;
2. ``_backward_finish``: per channel ``dbeta``, ``dgamma`` and the coefficients of
   ``dx = a * dy + b * (x - mean) + k``;
3. ``_backward_elementwise``: reads ``x`` and ``dy`` again and writes ``dx``.

Statistics and sums are kept in float32 whatever the tensor's dtype (float32 or bfloat16); gamma,
beta, the running statistics and the saved mean and inverse standard deviation are float32, as
PyTorch keeps them.

This module imports Triton at the top: import it only where Triton is installed (``bn_bandwidth``
does so only on CUDA). ``TRITON_INTERPRET=1`` runs the same kernels on CPU tensors through Triton's
interpreter; the tests check them that way when Triton is installed.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
# Warps per program of the kernels that stream the tensor (tiles of up to 4,096 elements): with 8, the
# kernels compiled for sm_90 by Triton 3.6 use 54 to 73 registers per thread and spill nothing.
WARPS = 8


@triton.jit
def _tile(c, s, n0, hw0, C, HW, rows_per_slice, N, BLOCK_N: tl.constexpr, BLOCK_HW: tl.constexpr):
    """Offsets and mask of one tile of channel c: rows n0 .. n0 + BLOCK_N of slice s of the batch, and
    columns hw0 .. hw0 + BLOCK_HW of the H*W contiguous elements of each (image, channel) row."""
    first = s * rows_per_slice
    n = first + n0 + tl.arange(0, BLOCK_N)
    hw = hw0 + tl.arange(0, BLOCK_HW)
    mask = (n < tl.minimum(first + rows_per_slice, N))[:, None] & (hw < HW)[None, :]
    return (n.to(tl.int64) * C + c)[:, None] * HW + hw[None, :], mask


@triton.jit
def _row_block(C, HW, BLOCK: tl.constexpr):
    """Channel, offsets and mask of this program's block of one (image, channel) row of H*W elements."""
    row = tl.program_id(0)
    hw = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    return row % C, row.to(tl.int64) * HW + hw, hw < HW


@triton.jit
def _forward_partials(x_ptr, count_ptr, mean_ptr, m2_ptr, C, HW, rows_per_slice, N, SLICES,
                      BLOCK_N: tl.constexpr, BLOCK_HW: tl.constexpr):
    c = tl.program_id(0)
    s = tl.program_id(1)
    count = tl.zeros((), tl.float32)
    mean = tl.zeros((), tl.float32)
    m2 = tl.zeros((), tl.float32)
    for n0 in range(0, rows_per_slice, BLOCK_N):
        for hw0 in range(0, HW, BLOCK_HW):
            offsets, mask = _tile(c, s, n0, hw0, C, HW, rows_per_slice, N, BLOCK_N, BLOCK_HW)
            v = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
            tile_count = tl.sum(tl.sum(mask.to(tl.float32), axis=1), axis=0)
            tile_mean = tl.sum(tl.sum(v, axis=1), axis=0) / tl.maximum(tile_count, 1.0)
            d = tl.where(mask, v - tile_mean, 0.0)
            tile_m2 = tl.sum(tl.sum(d * d, axis=1), axis=0)
            total = count + tile_count
            delta = tile_mean - mean
            share = tile_count / tl.maximum(total, 1.0)
            mean = mean + delta * share
            m2 = m2 + tile_m2 + delta * delta * count * share
            count = total
    tl.store(count_ptr + c * SLICES + s, count)
    tl.store(mean_ptr + c * SLICES + s, mean)
    tl.store(m2_ptr + c * SLICES + s, m2)


@triton.jit
def _forward_finish(count_ptr, mean_ptr, m2_ptr, gamma_ptr, beta_ptr, save_mean_ptr, save_invstd_ptr,
                    scale_ptr, running_mean_ptr, running_var_ptr, SLICES, eps, momentum,
                    HAS_RUNNING: tl.constexpr, BLOCK_S: tl.constexpr):
    c = tl.program_id(0)
    s = tl.arange(0, BLOCK_S)
    ok = s < SLICES
    counts = tl.load(count_ptr + c * SLICES + s, mask=ok, other=0.0)
    means = tl.load(mean_ptr + c * SLICES + s, mask=ok, other=0.0)
    m2s = tl.load(m2_ptr + c * SLICES + s, mask=ok, other=0.0)
    count = tl.sum(counts, axis=0)
    mean = tl.sum(counts * means, axis=0) / count
    d = means - mean
    m2 = tl.sum(m2s + counts * d * d, axis=0)
    invstd = 1.0 / tl.sqrt(m2 / count + eps)
    tl.store(save_mean_ptr + c, mean)
    tl.store(save_invstd_ptr + c, invstd)
    tl.store(scale_ptr + c, tl.load(gamma_ptr + c) * invstd)
    if HAS_RUNNING:
        unbiased = m2 / tl.maximum(count - 1.0, 1.0)
        running_mean = tl.load(running_mean_ptr + c)
        running_var = tl.load(running_var_ptr + c)
        tl.store(running_mean_ptr + c, (1.0 - momentum) * running_mean + momentum * mean)
        tl.store(running_var_ptr + c, (1.0 - momentum) * running_var + momentum * unbiased)


@triton.jit
def _normalize(x_ptr, y_ptr, mean_ptr, scale_ptr, beta_ptr, C, HW, BLOCK: tl.constexpr):
    c, offsets, mask = _row_block(C, HW, BLOCK)
    x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    y = (x - tl.load(mean_ptr + c)) * tl.load(scale_ptr + c) + tl.load(beta_ptr + c)
    tl.store(y_ptr + offsets, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _backward_partials(x_ptr, dy_ptr, mean_ptr, invstd_ptr, sum_dy_ptr, sum_dy_xhat_ptr, C, HW,
                       rows_per_slice, N, SLICES, BLOCK_N: tl.constexpr, BLOCK_HW: tl.constexpr):
    c = tl.program_id(0)
    s = tl.program_id(1)
    mean = tl.load(mean_ptr + c)
    invstd = tl.load(invstd_ptr + c)
    acc_dy = tl.zeros((BLOCK_N, BLOCK_HW), tl.float32)
    acc_dy_xhat = tl.zeros((BLOCK_N, BLOCK_HW), tl.float32)
    for n0 in range(0, rows_per_slice, BLOCK_N):
        for hw0 in range(0, HW, BLOCK_HW):
            offsets, mask = _tile(c, s, n0, hw0, C, HW, rows_per_slice, N, BLOCK_N, BLOCK_HW)
            x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
            dy = tl.load(dy_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
            acc_dy += dy
            acc_dy_xhat += tl.where(mask, dy * (x - mean) * invstd, 0.0)
    tl.store(sum_dy_ptr + c * SLICES + s, tl.sum(tl.sum(acc_dy, axis=1), axis=0))
    tl.store(sum_dy_xhat_ptr + c * SLICES + s, tl.sum(tl.sum(acc_dy_xhat, axis=1), axis=0))


@triton.jit
def _backward_finish(sum_dy_ptr, sum_dy_xhat_ptr, gamma_ptr, invstd_ptr, dgamma_ptr, dbeta_ptr, a_ptr,
                     b_ptr, k_ptr, SLICES, count, BLOCK_S: tl.constexpr):
    c = tl.program_id(0)
    s = tl.arange(0, BLOCK_S)
    ok = s < SLICES
    dbeta = tl.sum(tl.load(sum_dy_ptr + c * SLICES + s, mask=ok, other=0.0), axis=0)
    dgamma = tl.sum(tl.load(sum_dy_xhat_ptr + c * SLICES + s, mask=ok, other=0.0), axis=0)
    invstd = tl.load(invstd_ptr + c)
    a = tl.load(gamma_ptr + c) * invstd
    tl.store(dgamma_ptr + c, dgamma)
    tl.store(dbeta_ptr + c, dbeta)
    # dx = a * (dy - dbeta / M - x_hat * dgamma / M),  x_hat = (x - mean) * invstd
    tl.store(a_ptr + c, a)
    tl.store(b_ptr + c, -a * invstd * dgamma / count)
    tl.store(k_ptr + c, -a * dbeta / count)


@triton.jit
def _backward_elementwise(x_ptr, dy_ptr, dx_ptr, mean_ptr, a_ptr, b_ptr, k_ptr, C, HW, BLOCK: tl.constexpr):
    c, offsets, mask = _row_block(C, HW, BLOCK)
    x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    dy = tl.load(dy_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    dx = tl.load(a_ptr + c) * dy + tl.load(b_ptr + c) * (x - tl.load(mean_ptr + c)) + tl.load(k_ptr + c)
    tl.store(dx_ptr + offsets, dx.to(dx_ptr.dtype.element_ty), mask=mask)


TILE = 4096         # elements per tile of the reduction kernels, and per block of the elementwise ones


def _launch_shape(x):
    """How the reductions are split and tiled. Each channel's N rows (of H*W contiguous elements) are
    split into ``slices`` of ``rows_per_slice`` rows, one program each, between 4 and 16 programs per
    multiprocessor; each program walks its rows in tiles of ``block_n`` rows by ``block_hw`` columns
    (at most TILE elements, rows of at least 16 contiguous elements). The choice with the most lanes
    not masked off per tile wins: for 256 x 256 x 56 x 56 on 132 multiprocessors, 4 slices of 64 rows
    in 64 x 64 tiles, no lane idle (56 x 56 = 3,136 = 49 x 64), where 4 x 1024 tiles would leave 23%
    idle. The elementwise kernels take one row per program in blocks of up to TILE elements
    (``row_blocks`` of them)."""
    n, c, h, w = x.shape
    hw = h * w
    processors = 4 if x.device.type != "cuda" else torch.cuda.get_device_properties(x.device).multi_processor_count
    best = None
    for slices in range(max(1, min(n, triton.cdiv(4 * processors, c))), max(1, min(n, triton.cdiv(16 * processors, c))) + 1):
        rows_per_slice = triton.cdiv(n, slices)
        slices = triton.cdiv(n, rows_per_slice)                   # no empty slice
        block_hw = 16
        while block_hw <= min(1024, max(16, triton.next_power_of_2(hw))):
            block_n = max(1, min(TILE // block_hw, triton.next_power_of_2(rows_per_slice)))
            padded = slices * triton.cdiv(rows_per_slice, block_n) * block_n * triton.cdiv(hw, block_hw) * block_hw
            useful = n * hw / padded * block_n * block_hw           # elements not masked off, per tile
            key = (round(useful), block_hw, -abs(slices * c - 8 * processors))
            if best is None or key > best[0]:
                best = (key, {"block_n": block_n, "block_hw": block_hw, "slices": slices,
                              "rows_per_slice": rows_per_slice})
            block_hw *= 2
    block = min(triton.next_power_of_2(hw), TILE)
    return {**best[1], "block": block, "row_blocks": triton.cdiv(hw, block)}


def _prepare(x, gamma):
    """(N, C, H*W, launch settings) of a valid input."""
    if x.dim() != 4 or not x.is_contiguous():
        raise ValueError("the course's Triton batch norm takes a contiguous NCHW tensor")
    if gamma.dtype != torch.float32:
        raise ValueError("gamma and beta must be float32 (the statistics are kept in float32)")
    n, c, h, w = x.shape
    return n, c, h * w, _launch_shape(x)


def forward(x, gamma, beta, running_mean=None, running_var=None, momentum=0.1, eps=1e-5, out=None):
    """Train-mode batch norm of a contiguous NCHW ``x``: returns ``(y, save_mean, save_invstd)`` and
    updates ``running_mean`` and ``running_var`` (float32, unbiased variance) in place when given.
    ``out``, when given, is where ``y`` is written."""
    n, c, hw, launch = _prepare(x, gamma)
    slices = launch["slices"]
    y = torch.empty_like(x) if out is None else out
    partial = torch.empty((3, c, slices), device=x.device, dtype=torch.float32)
    per_channel = torch.empty((3, c), device=x.device, dtype=torch.float32)
    save_mean, save_invstd, scale = per_channel[0], per_channel[1], per_channel[2]
    has_running = running_mean is not None
    _forward_partials[(c, slices)](x, partial[0], partial[1], partial[2], c, hw, launch["rows_per_slice"], n, slices,
                                   BLOCK_N=launch["block_n"], BLOCK_HW=launch["block_hw"], num_warps=WARPS)
    _forward_finish[(c,)](partial[0], partial[1], partial[2], gamma, beta, save_mean, save_invstd, scale,
                          running_mean if has_running else save_mean, running_var if has_running else save_mean,
                          slices, eps, momentum, HAS_RUNNING=has_running, BLOCK_S=triton.next_power_of_2(slices))
    _normalize[(n * c, launch["row_blocks"])](x, y, save_mean, scale, beta, c, hw, BLOCK=launch["block"],
                                              num_warps=WARPS)
    return y, save_mean, save_invstd


def backward(dy, x, gamma, save_mean, save_invstd, out=None):
    """Gradients of train-mode batch norm: ``(dx, dgamma, dbeta)`` from the upstream gradient ``dy``
    (same shape and layout as ``x``) and what ``forward`` saved. ``out``, when given, is where ``dx``
    is written."""
    n, c, hw, launch = _prepare(x, gamma)
    if not dy.is_contiguous() or dy.shape != x.shape:
        raise ValueError("dy must be a contiguous tensor of x's shape")
    slices = launch["slices"]
    dx = torch.empty_like(x) if out is None else out
    partial = torch.empty((2, c, slices), device=x.device, dtype=torch.float32)
    per_channel = torch.empty((5, c), device=x.device, dtype=torch.float32)
    dgamma, dbeta, a, b, k = per_channel
    _backward_partials[(c, slices)](x, dy, save_mean, save_invstd, partial[0], partial[1], c, hw,
                                    launch["rows_per_slice"], n, slices,
                                    BLOCK_N=launch["block_n"], BLOCK_HW=launch["block_hw"], num_warps=WARPS)
    _backward_finish[(c,)](partial[0], partial[1], gamma, save_invstd, dgamma, dbeta, a, b, k, slices, float(n * hw),
                           BLOCK_S=triton.next_power_of_2(slices))
    _backward_elementwise[(n * c, launch["row_blocks"])](x, dy, dx, save_mean, a, b, k, c, hw, BLOCK=launch["block"],
                                                         num_warps=WARPS)
    return dx, dgamma, dbeta
