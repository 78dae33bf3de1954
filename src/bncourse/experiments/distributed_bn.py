"""Batch norm across real worker processes (Chapter 7): torch.distributed with the gloo backend, on the CPU.

Worker functions live here, not in the chapter, because ``torch.multiprocessing.spawn`` starts fresh
interpreters that must import them. :func:`run_workers` starts ``world_size`` processes, each joined to one
gloo process group, runs a worker function in each and returns what every rank returned.

* :class:`SyncBatchNormFunction` is synchronized batch norm written against ``dist.all_reduce``: one
  all-reduce of each worker's count, per-channel sums and sums of squares in the forward pass, one of
  the per-channel sums of dout and dout * x_hat in the backward pass. :class:`SyncedBatchNorm` is a
  batch norm layer that uses it in training (and updates its running statistics with the global ones).
* :func:`agreement_worker`: per-worker and synchronized batch norm against single-process batch norm on
  the concatenated batch, in float64, with unequal counts per worker, forward and backward.
* :func:`torch_sync_bn_worker`: what ``torch.nn.SyncBatchNorm`` does with CPU tensors in a gloo group.
* :func:`ddp_worker`: a few DistributedDataParallel training steps with per-worker or synchronized batch
  norm, for comparison with single-process training.
* :func:`timing_worker`: the time of a DDP training step with per-worker and with synchronized batch norm,
  and of one all-reduce of a batch norm layer's statistics.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------
# Starting workers
# ---------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank, world_size, port, folder, worker, args):
    torch.set_num_threads(1)            # one core per process on a small machine
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        result = worker(rank, world_size, *args)
        torch.save(result, Path(folder) / f"rank{rank}.pt")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run_workers(worker, world_size, *args):
    """Run ``worker(rank, world_size, *args)`` in ``world_size`` fresh processes joined by a gloo process
    group; return the list of what each rank returned (anything ``torch.save`` can store)."""
    with tempfile.TemporaryDirectory() as folder:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        mp.spawn(_entry, args=(world_size, _free_port(), folder, worker, args), nprocs=world_size, join=True)
        return [torch.load(Path(folder) / f"rank{rank}.pt", weights_only=False) for rank in range(world_size)]


# ---------------------------------------------------------------------------------------------
# Synchronized batch norm
# ---------------------------------------------------------------------------------------------


def _channel_dims(x):
    """Every dimension but the channels (dimension 1): the ones batch norm reduces over."""
    return [0, *range(2, x.dim())]


class SyncBatchNormFunction(torch.autograd.Function):
    """Train-mode batch norm with the statistics of every worker's batch. Returns the output and the global
    mean, biased variance and count (for the running statistics); dgamma and dbeta are this worker's own
    share, as with torch.nn.SyncBatchNorm: DistributedDataParallel averages parameter gradients anyway."""

    @staticmethod
    def forward(ctx, x, gamma, beta, eps):
        dims, channels = _channel_dims(x), x.shape[1]
        view = [1, channels] + [1] * (x.dim() - 2)
        count = torch.tensor([x.numel() / channels], dtype=x.dtype)
        stats = torch.cat([count, x.sum(dims), (x * x).sum(dims)])
        dist.all_reduce(stats)                                   # every worker now holds the sums of all
        count, mean = stats[0], stats[1:channels + 1] / stats[0]
        var = stats[channels + 1:] / count - mean * mean
        std = torch.sqrt(var + eps)
        x_hat = (x - mean.view(view)) / std.view(view)
        ctx.save_for_backward(x_hat, gamma, std, count)
        ctx.mark_non_differentiable(mean, var, count)
        return gamma.view(view) * x_hat + beta.view(view), mean, var, count

    @staticmethod
    def backward(ctx, dout, *unused):
        x_hat, gamma, std, count = ctx.saved_tensors
        dims, channels = _channel_dims(dout), dout.shape[1]
        view = [1, channels] + [1] * (dout.dim() - 2)
        local = torch.cat([dout.sum(dims), (dout * x_hat).sum(dims)])
        sums = local.clone()
        dist.all_reduce(sums)                                    # sum of dout and of dout * x_hat, all workers
        sum_dy, sum_dy_xhat = sums[:channels].view(view), sums[channels:].view(view)
        dx = (gamma / std).view(view) * (dout - sum_dy / count - x_hat * sum_dy_xhat / count)
        return dx, local[channels:], local[:channels], None


class SyncedBatchNorm(nn.modules.batchnorm._BatchNorm):
    """A batch norm layer (any number of dimensions) that synchronizes its statistics across the process
    group in training, and updates its running statistics with the global mean and unbiased variance."""

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        out, mean, var, count = SyncBatchNormFunction.apply(x, self.weight, self.bias, self.eps)
        with torch.no_grad():
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * count / (count - 1), self.momentum)
            self.num_batches_tracked.add_(1)
        return out

    @classmethod
    def convert(cls, module):
        """A copy of ``module`` with every BatchNorm layer replaced by a SyncedBatchNorm with its state."""
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            synced = cls(module.num_features, module.eps, module.momentum, dtype=module.weight.dtype)
            synced.load_state_dict(module.state_dict())
            return synced
        for name, child in module.named_children():
            module.add_module(name, cls.convert(child))
        return module


# ---------------------------------------------------------------------------------------------
# Worker functions
# ---------------------------------------------------------------------------------------------


def shard_bounds(counts, rank):
    start = sum(counts[:rank])
    return start, start + counts[rank]


def agreement_data(counts, channels=3, size=4, seed=0):
    """The concatenated batch (float64, N x C x size x size, channels with their own offsets and scales), a
    fixed upstream gradient, gamma and beta: the same in every process."""
    g = torch.Generator().manual_seed(seed)
    shape = (sum(counts), channels, size, size)
    offsets, scales = torch.rand(1, channels, 1, 1, generator=g) * 6 - 3, torch.rand(1, channels, 1, 1, generator=g) * 3 + 0.5
    x = torch.randn(*shape, generator=g, dtype=torch.float64) * scales + offsets
    x[:counts[0]] += 1.0                                   # the first worker's shard is shifted: non-i.i.d. shards
    dout = torch.randn(*shape, generator=g, dtype=torch.float64)
    gamma = torch.rand(channels, generator=g, dtype=torch.float64) + 0.5
    beta = torch.rand(channels, generator=g, dtype=torch.float64) - 0.5
    return x, dout, gamma, beta


def agreement_worker(rank, world_size, counts, eps=1e-5):
    """This worker's shard of one batch, normalized three ways: single-process batch norm on the whole batch
    (every process can compute it: the reference), per-worker batch norm (its own statistics, what DDP does
    by default) and :class:`SyncBatchNormFunction`. Returns the largest differences from the reference, of
    the output, of dx, of dgamma and dbeta (summed over the workers) and of the running statistics."""
    x, dout, gamma, beta = agreement_data(counts)
    lo, hi = shard_bounds(counts, rank)

    def leaves(*tensors):
        return [t.clone().requires_grad_() for t in tensors]

    # the reference: one process, the concatenated batch
    full = nn.BatchNorm2d(x.shape[1], eps=eps, dtype=torch.float64)
    with torch.no_grad():
        full.weight.copy_(gamma)
        full.bias.copy_(beta)
    xf = x.clone().requires_grad_()
    out_full = full(xf)
    out_full.backward(dout)
    # per worker: batch norm on the shard alone
    xl, gl, bl = leaves(x[lo:hi], gamma, beta)
    out_local = F.batch_norm(xl, None, None, gl, bl, training=True, eps=eps)
    # synchronized
    synced = SyncedBatchNorm(x.shape[1], eps=eps, dtype=torch.float64)
    with torch.no_grad():
        synced.weight.copy_(gamma)
        synced.bias.copy_(beta)
    xs = x[lo:hi].clone().requires_grad_()
    out_sync = synced(xs)
    out_sync.backward(dout[lo:hi])
    parameter_grads = torch.cat([synced.weight.grad, synced.bias.grad])
    dist.all_reduce(parameter_grads)                       # what DDP would do with them (it averages)

    def largest(a, b):
        return (a - b).abs().max().item()

    return {"rank": rank, "count": hi - lo,
            "per_worker_output": largest(out_local, out_full[lo:hi]),
            "sync_output": largest(out_sync, out_full[lo:hi]),
            "sync_dx": largest(xs.grad, xf.grad[lo:hi]),
            "sync_dgamma_dbeta": largest(parameter_grads, torch.cat([full.weight.grad, full.bias.grad])),
            "sync_running_stats": max(largest(synced.running_mean, full.running_mean),
                                      largest(synced.running_var, full.running_var))}


def torch_sync_bn_worker(rank, world_size):
    """torch.nn.SyncBatchNorm on CPU tensors in a gloo group of ``world_size`` > 1 processes: the error it
    raises in train mode (or None), and whether eval mode runs."""
    layer = nn.SyncBatchNorm(3)
    x = torch.randn(4, 3, 2, 2)
    try:
        layer.train()(x)
        train_error = None
    except ValueError as error:
        train_error = str(error)
    eval_output = layer.eval()(x)
    return {"train_error": train_error, "eval_runs": bool(torch.isfinite(eval_output).all())}


def ddp_worker(rank, world_size, synced, steps, batch, lr, seed):
    """DistributedDataParallel training of the course's BN MLP (float64) on the digits: every step draws one
    global batch of ``batch`` examples (the same in every process) and each rank trains on its contiguous
    share. Returns rank 0's parameters after ``steps`` steps, and its running statistics."""
    from .bn_training import load_data, mlp

    data = load_data(torch.device("cpu"))
    torch.manual_seed(seed)
    model = mlp(64, [64, 64], 10, batch_norm=True).double()
    if synced:
        model = SyncedBatchNorm.convert(model)
    ddp = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=lr)
    sampler = torch.Generator().manual_seed(seed)
    lo, hi = shard_bounds([batch // world_size] * world_size, rank)
    for _ in range(steps):
        idx = torch.randint(0, len(data["y_train"]), (batch,), generator=sampler)[lo:hi]
        loss = F.cross_entropy(ddp(data["x_train"][idx].double()), data["y_train"][idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def small_cnn(channels=16, synced=False):
    """A small CNN for 8x8 digits: two 3x3 convolutions with batch norm, pooling, a linear classifier."""
    norm = SyncedBatchNorm if synced else nn.BatchNorm2d
    return nn.Sequential(nn.Conv2d(1, channels, 3, padding=1, bias=False), norm(channels), nn.ReLU(),
                         nn.Conv2d(channels, channels, 3, padding=1, bias=False), norm(channels), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10))


def timing_worker(rank, world_size, per_worker_batch, steps, warmup, channels=16):
    """Median milliseconds of one DDP training step of :func:`small_cnn` with per-worker and with synchronized
    batch norm (the two run alternately, so that a busy machine slows both alike), and of one all-reduce of
    a batch norm layer's 2C + 1 statistics."""
    from .bn_training import load_data

    data = load_data(torch.device("cpu"))
    images = data["x_train"].view(-1, 1, 8, 8)
    models = {}
    for synced in (False, True):
        torch.manual_seed(0)
        model = nn.parallel.DistributedDataParallel(small_cnn(channels, synced))
        models[synced] = (model, torch.optim.SGD(model.parameters(), lr=0.05))
    sampler = torch.Generator().manual_seed(rank)
    times = {False: [], True: []}
    for step in range(warmup + steps):
        idx = torch.randint(0, len(images), (per_worker_batch,), generator=sampler)
        for synced, (model, optimizer) in models.items():
            dist.barrier()
            started = time.perf_counter()
            loss = F.cross_entropy(model(images[idx]), data["y_train"][idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step >= warmup:
                times[synced].append(1000 * (time.perf_counter() - started))
    stats = torch.zeros(2 * channels + 1)
    reduce_times = []
    for _ in range(warmup + 10 * steps):
        dist.barrier()
        started = time.perf_counter()
        dist.all_reduce(stats)
        reduce_times.append(1000 * (time.perf_counter() - started))
    return {"per_worker_ms": float(np.median(times[False])), "synced_ms": float(np.median(times[True])),
            "all_reduce_ms": float(np.median(reduce_times[warmup:]))}


def chapter_worker(rank, world_size, counts, ddp_settings, timing_settings):
    """Everything Chapter 7 runs in real processes, in one start of the workers (each start imports torch)."""
    results = {"agreement": agreement_worker(rank, world_size, counts),
               "torch_sync_bn": torch_sync_bn_worker(rank, world_size)}
    for synced in (False, True):
        results[f"ddp_{'synced' if synced else 'per_worker'}"] = ddp_worker(rank, world_size, synced, **ddp_settings)
    results["timing"] = timing_worker(rank, world_size, **timing_settings)
    return results
