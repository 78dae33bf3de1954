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
* :func:`timing_worker`: the time of a DDP training step with per-worker batch norm, with synchronized batch
  norm over a one-rank group (the same code without communication) and over all workers, and of one
  all-reduce of a batch norm layer's statistics.
"""

from __future__ import annotations

import os
import tempfile
import time
from datetime import timedelta
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


#: gloo's default timeout is 30 minutes; a worker that waits this long at init or in a collective gives up.
COLLECTIVE_TIMEOUT = timedelta(seconds=60)
#: run_workers stops every worker still alive after this long (the chapter's cells run in seconds).
RUN_TIMEOUT_SECONDS = 240.0


def _entry(rank, world_size, folder, worker, args):
    # Settings of this worker process only: the parent's environment stays as it was.
    if Path("/sys/class/net/lo").exists():     # gloo talks over the loopback interface, not the host name
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)                   # one core per process on a small machine
    # A file in a fresh temporary folder as the rendezvous: no port to pick, so none another process can take.
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world_size,
                            timeout=COLLECTIVE_TIMEOUT)
    try:
        result = worker(rank, world_size, *args)
        torch.save(result, Path(folder) / f"rank{rank}.pt")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _stop(processes, grace=5.0):
    """Terminate (SIGTERM, then SIGKILL) every process still alive; return how many there were."""
    alive = [p for p in processes if p.is_alive()]
    for process in alive:
        process.terminate()
    for process in alive:
        process.join(grace)
        if process.is_alive():
            process.kill()
            process.join()
    return len(alive)


def run_workers(worker, world_size, *args, timeout=RUN_TIMEOUT_SECONDS):
    """Run ``worker(rank, world_size, *args)`` in ``world_size`` fresh processes joined by a gloo process
    group; return the list of what each rank returned (anything ``torch.save`` can store).

    No worker outlives the call: the processes are daemons, a collective that waits longer than
    ``COLLECTIVE_TIMEOUT`` fails in the worker, and when one worker fails, or they are not all done after
    ``timeout`` seconds, or the caller is interrupted, every worker still running is terminated before the
    call returns or raises."""
    with tempfile.TemporaryDirectory() as folder:
        context = mp.start_processes(_entry, args=(world_size, folder, worker, args), nprocs=world_size,
                                     join=False, daemon=True, start_method="spawn")
        deadline = time.monotonic() + timeout
        try:
            # join raises when a worker failed, after stopping the others (SIGTERM, SIGKILL after 5 s)
            while not context.join(timeout=max(0.0, deadline - time.monotonic()), grace_period=5.0):
                if time.monotonic() >= deadline:
                    stopped = _stop(context.processes)
                    raise TimeoutError(f"{worker.__name__}: the {world_size} worker processes were not done after "
                                       f"{timeout:.0f} s; {stopped} still running were terminated.")
        except (mp.ProcessRaisedException, mp.ProcessExitedException) as error:
            raise RuntimeError(f"{worker.__name__}: worker process {error.error_index} failed, and the other "
                               f"workers were terminated. The failure:\n{error}") from None
        finally:
            _stop(context.processes)
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
    def forward(ctx, x, gamma, beta, eps, group=None):
        dims, channels = _channel_dims(x), x.shape[1]
        view = [1, channels] + [1] * (x.dim() - 2)
        count = torch.tensor([x.numel() / channels], dtype=x.dtype)
        stats = torch.cat([count, x.sum(dims), (x * x).sum(dims)])
        dist.all_reduce(stats, group=group)                      # every worker now holds the sums of all
        count, mean = stats[0], stats[1:channels + 1] / stats[0]
        var = stats[channels + 1:] / count - mean * mean
        std = torch.sqrt(var + eps)
        x_hat = (x - mean.view(view)) / std.view(view)
        ctx.save_for_backward(x_hat, gamma, std, count)
        ctx.group = group
        ctx.mark_non_differentiable(mean, var, count)
        return gamma.view(view) * x_hat + beta.view(view), mean, var, count

    @staticmethod
    def backward(ctx, dout, *unused):
        x_hat, gamma, std, count = ctx.saved_tensors
        dims, channels = _channel_dims(dout), dout.shape[1]
        view = [1, channels] + [1] * (dout.dim() - 2)
        local = torch.cat([dout.sum(dims), (dout * x_hat).sum(dims)])
        sums = local.clone()
        dist.all_reduce(sums, group=ctx.group)                   # sum of dout and of dout * x_hat, all workers
        sum_dy, sum_dy_xhat = sums[:channels].view(view), sums[channels:].view(view)
        dx = (gamma / std).view(view) * (dout - sum_dy / count - x_hat * sum_dy_xhat / count)
        return dx, local[channels:], local[:channels], None, None


class SyncedBatchNorm(nn.modules.batchnorm._BatchNorm):
    """A batch norm layer (any number of dimensions) that synchronizes its statistics across
    ``process_group`` (the default group when None) in training, and updates its running statistics with the
    global mean and unbiased variance."""

    def __init__(self, num_features, *args, process_group=None, **kwargs):
        super().__init__(num_features, *args, **kwargs)
        self.process_group = process_group

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        out, mean, var, count = SyncBatchNormFunction.apply(x, self.weight, self.bias, self.eps, self.process_group)
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
    the output, of dx, of dgamma and dbeta (summed over the workers) and of the running statistics; and the
    largest relative difference between the parameter gradients of the mean loss over the whole batch and
    what DDP makes of each worker's mean loss over its own shard (it averages the workers' gradients): the
    two agree only when the shards are of one size."""
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
    dist.all_reduce(parameter_grads)                       # their sum: the gradient of the loss summed over the batch
    # DDP with each worker's loss the mean over its own shard: the upstream gradient is dout / n_k on worker k,
    # and DDP divides the sum of the workers' parameter gradients by K. Mean loss over the whole batch: dout / N.
    mean_loss = SyncedBatchNorm(x.shape[1], eps=eps, dtype=torch.float64)
    with torch.no_grad():
        mean_loss.weight.copy_(gamma)
        mean_loss.bias.copy_(beta)
    mean_loss(x[lo:hi].clone().requires_grad_()).backward(dout[lo:hi] / (hi - lo))
    ddp_grads = torch.cat([mean_loss.weight.grad, mean_loss.bias.grad])
    dist.all_reduce(ddp_grads)
    ddp_grads /= world_size
    whole_mean_grads = torch.cat([full.weight.grad, full.bias.grad]) / x.shape[0]

    def largest(a, b):
        return (a - b).abs().max().item()

    return {"rank": rank, "count": hi - lo,
            "per_worker_output": largest(out_local, out_full[lo:hi]),
            "sync_output": largest(out_sync, out_full[lo:hi]),
            "sync_dx": largest(xs.grad, xf.grad[lo:hi]),
            "sync_dgamma_dbeta": largest(parameter_grads, torch.cat([full.weight.grad, full.bias.grad])),
            "sync_running_stats": max(largest(synced.running_mean, full.running_mean),
                                      largest(synced.running_var, full.running_var)),
            "ddp_mean_losses": largest(ddp_grads, whole_mean_grads) / whole_mean_grads.abs().max().item()}


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


def small_cnn(channels=16, synced=False, process_group=None):
    """A small CNN for 8x8 digits: two 3x3 convolutions with batch norm, pooling, a linear classifier. With
    ``synced``, the batch norm layers are :class:`SyncedBatchNorm` over ``process_group``."""
    def norm(c):
        return SyncedBatchNorm(c, process_group=process_group) if synced else nn.BatchNorm2d(c)

    return nn.Sequential(nn.Conv2d(1, channels, 3, padding=1, bias=False), norm(channels), nn.ReLU(),
                         nn.Conv2d(channels, channels, 3, padding=1, bias=False), norm(channels), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10))


TIMED = ("per_worker", "one_rank", "synced")


def timing_worker(rank, world_size, per_worker_batch, steps, warmup, channels=16):
    """Median milliseconds of one DDP training step of :func:`small_cnn` with three kinds of batch norm, run in
    turn (so that a busy machine slows all alike): ``per_worker``, PyTorch's ``nn.BatchNorm2d`` on each
    worker's share; ``one_rank``, :class:`SyncedBatchNorm` over a process group of this worker alone (the same
    Python autograd function and calls, but nothing to wait for and nothing sent); ``synced``,
    :class:`SyncedBatchNorm` over all workers. DDP's own gradient all-reduce is the same in all three. Also
    the median time of one all-reduce of a batch norm layer's 2C + 1 statistics between the workers."""
    from .bn_training import load_data

    data = load_data(torch.device("cpu"))
    images = data["x_train"].view(-1, 1, 8, 8)
    alone = [dist.new_group([r]) for r in range(world_size)][rank]   # every rank creates every group, in order
    models = {}
    for kind in TIMED:
        torch.manual_seed(0)
        cnn = small_cnn(channels, synced=kind != "per_worker", process_group=alone if kind == "one_rank" else None)
        model = nn.parallel.DistributedDataParallel(cnn)
        models[kind] = (model, torch.optim.SGD(model.parameters(), lr=0.05))
    sampler = torch.Generator().manual_seed(rank)
    times = {kind: [] for kind in TIMED}
    for step in range(warmup + steps):
        idx = torch.randint(0, len(images), (per_worker_batch,), generator=sampler)
        for kind, (model, optimizer) in models.items():
            dist.barrier()
            started = time.perf_counter()
            loss = F.cross_entropy(model(images[idx]), data["y_train"][idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step >= warmup:
                times[kind].append(1000 * (time.perf_counter() - started))
    stats = torch.zeros(2 * channels + 1)
    reduce_times = []
    for _ in range(warmup + 10 * steps):
        dist.barrier()
        started = time.perf_counter()
        dist.all_reduce(stats)
        reduce_times.append(1000 * (time.perf_counter() - started))
    return {**{f"{kind}_ms": float(np.median(times[kind])) for kind in TIMED},
            "all_reduce_ms": float(np.median(reduce_times[warmup:]))}


def chapter_worker(rank, world_size, counts, ddp_settings, timing_settings):
    """Everything Chapter 7 runs in real processes, in one start of the workers (each start imports torch)."""
    results = {"agreement": agreement_worker(rank, world_size, counts),
               "torch_sync_bn": torch_sync_bn_worker(rank, world_size)}
    for synced in (False, True):
        results[f"ddp_{'synced' if synced else 'per_worker'}"] = ddp_worker(rank, world_size, synced, **ddp_settings)
    results["timing"] = timing_worker(rank, world_size, **timing_settings)
    return results
