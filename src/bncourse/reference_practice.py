"""Reference implementations for batch norm in practice (Chapter 7, Exercise 7).

* synchronized batch norm over K workers, written against an ``all_reduce`` that sums one array per
  worker (:func:`all_reduce_in_process` simulates K workers in one process; the chapter runs the
  same algorithm in real processes with ``torch.distributed``);
* Batch Renormalization (Ioffe 2017), forward and backward, with r and d treated as constants;
* exact population statistics of every batch norm layer of a torch model (precise BN);
* folding eval-mode batch norm into the convolution before it.

``tests/test_reference_practice.py`` checks each against torch in float64 where torch has the
operation: ``BatchNorm1d`` on the concatenated batch (forward and autograd), ``BatchNorm1d`` in
train mode for batch renorm with r = 1 and d = 0 (and autograd with r and d detached),
``torch.optim.swa_utils.update_bn`` on one batch, ``torch.nn.utils.fusion.fuse_conv_bn_eval``.
torch is imported inside the functions that need it, so importing this module stays fast.
"""

from __future__ import annotations

import numpy as np

from .reference import DEFAULT_EPS, DEFAULT_MOMENTUM, batchnorm_backward, fold_batchnorm_into_linear

# ---------------------------------------------------------------------------------------------
# Synchronized batch norm
# ---------------------------------------------------------------------------------------------


def all_reduce_in_process(per_worker):
    """``torch.distributed.all_reduce`` with ``ReduceOp.SUM`` for K workers simulated in one process:
    one array per worker, all of the same shape, in; every worker's copy of their sum, out."""
    arrays = [np.asarray(a, dtype=np.float64) for a in per_worker]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"all_reduce needs arrays of one shape from every worker, got {sorted(shapes)}")
    total = np.sum(arrays, axis=0)
    return [total.copy() for _ in arrays]


def sync_batchnorm_forward(xs, gamma, beta, all_reduce=all_reduce_in_process, eps=DEFAULT_EPS):
    """Train-mode batch norm of K workers' (n_k, D) batches with the statistics of all of them.

    Each worker contributes its count, its per-feature sums and its sums of squares; one all-reduce
    adds them, so every worker gets the mean and the biased variance of the concatenated batch,
    whatever the counts. Returns the list of the workers' outputs and a cache for the backward pass.
    """
    d = xs[0].shape[1]
    local = [np.concatenate([[len(x)], x.sum(axis=0), (x * x).sum(axis=0)]) for x in xs]
    totals = all_reduce(local)
    outs, x_hats = [], []
    for x, total in zip(xs, totals):
        count = total[0]
        mean = total[1:d + 1] / count
        var = total[d + 1:] / count - mean * mean
        std = np.sqrt(var + eps)
        x_hats.append((x - mean) / std)
        outs.append(gamma * x_hats[-1] + beta)
    cache = {"x": list(xs), "x_hat": x_hats, "mean": mean, "var": var, "std": std, "gamma": gamma, "eps": eps,
             "count": float(count)}
    return outs, cache


def sync_batchnorm_backward(douts, cache, all_reduce=all_reduce_in_process):
    """Gradients of :func:`sync_batchnorm_forward`: each worker's ``dx`` and the ``dgamma``, ``dbeta`` of
    the loss summed over all workers. One all-reduce of the per-feature sums of dout and of
    dout * x_hat gives every worker the two sums that batch norm's closed form needs (they are also
    dbeta and dgamma); dx itself never leaves its worker."""
    d = cache["gamma"].shape[0]
    local = [np.concatenate([g.sum(axis=0), (g * x_hat).sum(axis=0)]) for g, x_hat in zip(douts, cache["x_hat"])]
    totals = all_reduce(local)
    count, gamma, std = cache["count"], cache["gamma"], cache["std"]
    dxs = [gamma / (count * std) * (count * g - total[:d] - x_hat * total[d:])
           for g, x_hat, total in zip(douts, cache["x_hat"], totals)]
    return dxs, totals[0][d:].copy(), totals[0][:d].copy()


# ---------------------------------------------------------------------------------------------
# Batch Renormalization (Ioffe, 2017)
# ---------------------------------------------------------------------------------------------


def batch_renorm_forward(x, gamma, beta, state, r_max, d_max, momentum=DEFAULT_MOMENTUM, eps=DEFAULT_EPS):
    """Batch renorm of an (N, D) batch in training (Algorithm 1 of the paper).

    With the batch's mean and ``std = sqrt(biased var + eps)``, and the running ``mu`` and ``sigma``
    in ``state`` (``running_mean`` and ``running_std``; the paper keeps a moving average of the
    standard deviation, eps included), ``r = clip(std / sigma, 1/r_max, r_max)`` and
    ``d = clip((mean - mu) / sigma, -d_max, d_max)`` are constants for the backward pass, and
    ``x_hat = (x - mean) / std * r + d``. The running statistics are updated *after* r and d are
    computed: ``mu += momentum * (mean - mu)``, ``sigma += momentum * (std - sigma)``. Returns
    ``(out, cache)`` and updates ``state`` in place."""
    mean = x.mean(axis=0)
    std = np.sqrt(x.var(axis=0) + eps)
    mu, sigma = state["running_mean"], state["running_std"]
    r = np.clip(std / sigma, 1.0 / r_max, r_max)
    d = np.clip((mean - mu) / sigma, -d_max, d_max)
    x_hat = (x - mean) / std * r + d
    state["running_mean"] = mu + momentum * (mean - mu)
    state["running_std"] = sigma + momentum * (std - sigma)
    cache = {"x_hat_bn": (x - mean) / std, "x_hat": x_hat, "std": std, "gamma": gamma, "r": r, "d": d}
    return gamma * x_hat + beta, cache


def batch_renorm_backward(dout, cache):
    """Gradients ``(dx, dgamma, dbeta)`` of :func:`batch_renorm_forward` with r and d held constant: the
    output is batch norm's with gamma * r as its scale, so dx is batch norm's closed form for that
    scale; dgamma sums dout times batch renorm's x_hat."""
    bn_cache = {"x_hat": cache["x_hat_bn"], "std": cache["std"], "gamma": cache["gamma"] * cache["r"]}
    dx = batchnorm_backward(dout, bn_cache)[0]
    return dx, (dout * cache["x_hat"]).sum(axis=0), dout.sum(axis=0)


def batch_renorm_inference(x, gamma, beta, state):
    """Batch renorm at inference: the running statistics, as in batch norm's eval mode (sigma holds eps)."""
    return gamma * (x - state["running_mean"]) / state["running_std"] + beta


# ---------------------------------------------------------------------------------------------
# Exact statistics after training (precise BN)
# ---------------------------------------------------------------------------------------------


def recompute_bn_statistics(model, batches):
    """Set every batch norm layer's ``running_mean`` and ``running_var`` to the exact mean and the
    unbiased variance of all the inputs it receives when each batch goes through ``model`` in train mode,
    one batch at a time (so every layer sees what it saw in training). Each example counts once (and
    each position, for BatchNorm2d), whatever the sizes of the batches. Restores the model's modes.

    Sums are accumulated in float64 by forward pre-hooks; the layers' own running averages are
    overwritten at the end, so their momentum does not matter."""
    import torch

    layers = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    sums = {layer: [0.0, 0.0, 0] for layer in layers}

    def accumulate(layer, inputs):
        x = inputs[0].detach().double()
        dims = [0] + list(range(2, x.dim()))
        sums[layer][0] = sums[layer][0] + x.sum(dim=dims)
        sums[layer][1] = sums[layer][1] + (x * x).sum(dim=dims)
        sums[layer][2] += x.numel() // x.shape[1]

    modes = {module: module.training for module in model.modules()}
    hooks = [layer.register_forward_pre_hook(accumulate) for layer in layers]
    try:
        model.train()
        with torch.no_grad():
            for batch in batches:
                model(batch)
    finally:
        for hook in hooks:
            hook.remove()
        for module, mode in modes.items():
            module.training = mode
    with torch.no_grad():
        for layer in layers:
            total, squares, count = sums[layer]
            mean = total / count
            layer.running_mean.copy_(mean)
            layer.running_var.copy_((squares - count * mean * mean) / (count - 1))
    return model


# ---------------------------------------------------------------------------------------------
# Folding batch norm into a convolution
# ---------------------------------------------------------------------------------------------


def fold_batchnorm_into_conv(weight, bias, running_mean, running_var, gamma, beta, eps=DEFAULT_EPS):
    """The weight and bias of one convolution that computes the convolution followed by eval-mode batch
    norm. ``weight`` has torch's layout ``(C_out, C_in / groups, kh, kw)``: each output channel's filter
    is one row of a linear layer, so this is :func:`fold_batchnorm_into_linear` on the flattened filters."""
    folded, folded_bias = fold_batchnorm_into_linear(weight.reshape(len(weight), -1), bias, running_mean,
                                                     running_var, gamma, beta, eps)
    return folded.reshape(weight.shape), folded_bias
