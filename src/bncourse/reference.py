"""Reference implementations of the normalization layers, in NumPy.

These are what hidden tests and check helpers compare student code with, so they follow
PyTorch's conventions exactly (the test suite checks them against ``torch.nn`` in float64):

* ``momentum`` is the weight given to the *new* batch statistic:
  ``running = (1 - momentum) * running + momentum * batch_stat``.
* The output is normalised with the *biased* batch variance (divide by N), while
  ``running_var`` accumulates the *unbiased* one (divide by N - 1).
* Running statistics start at mean 0 and variance 1.

The layer's state lives in a plain dict, ``bn_param``, which the forward pass updates in place:

    mode          "train" or "eval" (default "train")
    eps           added to the variance inside the square root (default 1e-5)
    momentum      weight of the new batch in the running averages (default 0.1)
    running_mean  shape (D,), created as zeros on the first call if missing
    running_var   shape (D,), created as ones on the first call if missing

In train mode the forward pass also returns a ``cache`` dict for the backward pass with the
keys listed in ``CACHE_KEYS``; in eval mode the cache is ``None``.
"""

from __future__ import annotations

import numpy as np

DEFAULT_EPS = 1e-5
DEFAULT_MOMENTUM = 0.1

#: What the train-mode forward pass hands to the backward pass (Chapter 3).
CACHE_KEYS = ("x", "mean", "var", "std", "x_hat", "gamma", "eps")


def init_running_stats(bn_param: dict, num_features: int, dtype=np.float64) -> None:
    """Create PyTorch's initial running statistics (mean 0, variance 1) if they are missing."""
    bn_param.setdefault("running_mean", np.zeros(num_features, dtype=dtype))
    bn_param.setdefault("running_var", np.ones(num_features, dtype=dtype))


def batchnorm_forward(x, gamma, beta, bn_param):
    """Batch normalization of an (N, D) batch, one statistic per feature (column).

    Returns ``(out, cache)``; updates ``bn_param["running_mean"]`` and
    ``bn_param["running_var"]`` in train mode and leaves them untouched in eval mode.
    """
    mode = bn_param.get("mode", "train")
    eps = bn_param.get("eps", DEFAULT_EPS)
    momentum = bn_param.get("momentum", DEFAULT_MOMENTUM)
    n, d = x.shape
    init_running_stats(bn_param, d, x.dtype)

    if mode == "train":
        if n < 2:
            # torch raises too: one example has no spread to normalise by.
            raise ValueError("batch normalization in train mode needs more than one value per feature")
        mean = x.mean(axis=0)
        var = x.var(axis=0)  # biased: this is what the output is normalised with
        std = np.sqrt(var + eps)
        x_hat = (x - mean) / std
        out = gamma * x_hat + beta
        unbiased_var = var * n / (n - 1)
        bn_param["running_mean"] = (1 - momentum) * bn_param["running_mean"] + momentum * mean
        bn_param["running_var"] = (1 - momentum) * bn_param["running_var"] + momentum * unbiased_var
        cache = {"x": x, "mean": mean, "var": var, "std": std, "x_hat": x_hat, "gamma": gamma, "eps": eps}
        return out, cache
    if mode == "eval":
        x_hat = (x - bn_param["running_mean"]) / np.sqrt(bn_param["running_var"] + eps)
        return gamma * x_hat + beta, None
    raise ValueError(f"bn_param['mode'] must be 'train' or 'eval', not {mode!r}")


def nchw_to_rows(x):
    """(N, C, H, W) -> (N*H*W, C): every pixel of every image becomes a row, channels are columns."""
    n, c, h, w = x.shape
    return x.transpose(0, 2, 3, 1).reshape(n * h * w, c)


def rows_to_nchw(rows, shape):
    """Inverse of :func:`nchw_to_rows` for an array of the original (N, C, H, W) ``shape``."""
    n, c, h, w = shape
    return rows.reshape(n, h, w, c).transpose(0, 3, 1, 2)


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    """Batch normalization of an (N, C, H, W) batch, one statistic per channel (BatchNorm2d).

    Each channel is normalised over the batch *and* the spatial positions, so the count
    behind its statistics is N*H*W. Returns ``(out, cache)`` where ``cache`` is the cache of
    the (N*H*W, C) batch norm that does the work.
    """
    out_rows, cache = batchnorm_forward(nchw_to_rows(x), gamma, beta, bn_param)
    return rows_to_nchw(out_rows, x.shape), cache



def batchnorm_backward(dout, cache):
    """Gradients ``(dx, dgamma, dbeta)`` of train-mode batch normalization of an (N, D) batch,
    from the forward pass's cache, in closed form (Chapter 3 derives it):

        dx = gamma / (N * std) * (N * dout - sum(dout) - x_hat * sum(dout * x_hat)),

    sums over the batch axis. The mean and the variance depend on x, and this includes their paths.
    """
    x_hat, std, gamma = cache["x_hat"], cache["std"], cache["gamma"]
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * x_hat).sum(axis=0)
    dx = gamma / (n * std) * (n * dout - dbeta - x_hat * dgamma)
    return dx, dgamma, dbeta


def spatial_batchnorm_backward(dout, cache):
    """Gradients of :func:`spatial_batchnorm_forward` for an (N, C, H, W) ``dout``; ``cache`` is
    the cache it returned (that of the (N*H*W, C) batch norm)."""
    dx_rows, dgamma, dbeta = batchnorm_backward(nchw_to_rows(dout), cache)
    return rows_to_nchw(dx_rows, dout.shape), dgamma, dbeta

# ---------------------------------------------------------------------------------------------
# Chapter 1 / Exercise 1: signals in a deep MLP (groundwork for the exercise; checked against
# torch autograd in tests/test_reference.py)
# ---------------------------------------------------------------------------------------------

def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# name -> (f, f' written in terms of z)
MLP_ACTIVATIONS = {
    "sigmoid": (_sigmoid, lambda z: _sigmoid(z) * (1.0 - _sigmoid(z))),
    "tanh": (np.tanh, lambda z: 1.0 - np.tanh(z) ** 2),
    "relu": (lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(z.dtype)),
}


def mlp_forward_stats(x, weights, biases, activation):
    """Forward pass of h_l = f(h_{l-1} @ W_l + b_l) through every layer (the activation is applied
    after each one). Returns the last output and, per layer, the (mean, std) of its output over
    all examples and units."""
    f, _ = MLP_ACTIVATIONS[activation]
    h, stats = x, []
    for w, b in zip(weights, biases):
        h = f(h @ w + b)
        stats.append((float(h.mean()), float(h.std())))
    return h, stats


def mlp_weight_gradient_norms(x, y, weights, biases, activation):
    """Frobenius norm of d loss / d W_l for every layer, by backpropagation written out by hand,
    for the loss 0.5 * mean over examples of ||h_L - y||^2."""
    f, df = MLP_ACTIVATIONS[activation]
    inputs, pre = [], []  # h_{l-1} and z_l of every layer
    h = x
    for w, b in zip(weights, biases):
        inputs.append(h)
        pre.append(h @ w + b)
        h = f(pre[-1])
    grad_h = (h - y) / len(x)
    norms = []
    for w, h_in, z in zip(reversed(weights), reversed(inputs), reversed(pre)):
        grad_z = grad_h * df(z)
        norms.append(float(np.linalg.norm(h_in.T @ grad_z)))
        grad_h = grad_z @ w.T
    return norms[::-1]


def xavier_std(fan_in, fan_out):
    """Glorot & Bengio (2010): Var[W] = 2 / (fan_in + fan_out)."""
    return float(np.sqrt(2.0 / (fan_in + fan_out)))


def he_std(fan_in):
    """He et al. (2015), for ReLU: Var[W] = 2 / fan_in."""
    return float(np.sqrt(2.0 / fan_in))


# ---------------------------------------------------------------------------------------------
# Chapter 5 / Exercise 5: LayerNorm and relatives (groundwork; checked against torch.nn in float64
# in tests/test_reference.py)
# ---------------------------------------------------------------------------------------------

#: What :func:`layernorm_forward` hands to :func:`layernorm_backward`: batch norm's keys, with
#: ``mean``, ``var`` and ``std`` of shape ``x.shape[:-1] + (1,)`` (one per example, kept broadcastable).
LAYERNORM_CACHE_KEYS = CACHE_KEYS


def layernorm_forward(x, gamma, beta, eps=DEFAULT_EPS):
    """LayerNorm over the last axis (``torch.nn.LayerNorm(x.shape[-1])``): every example (every row,
    for any leading shape) gets its own mean and biased variance; ``gamma`` and ``beta`` have shape
    ``(D,)``. The same in train and eval mode: no running statistics. Returns ``(out, cache)``."""
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    std = np.sqrt(var + eps)
    x_hat = (x - mean) / std
    cache = {"x": x, "mean": mean, "var": var, "std": std, "x_hat": x_hat, "gamma": gamma, "eps": eps}
    return gamma * x_hat + beta, cache


def layernorm_backward(dout, cache):
    """Gradients ``(dx, dgamma, dbeta)`` of :func:`layernorm_forward`: batch norm's closed form with
    the roles of the axes swapped (sums over the features of each example), and ``gamma`` inside it
    because it varies along the normalized axis."""
    x_hat, std, gamma = cache["x_hat"], cache["std"], cache["gamma"]
    d = x_hat.shape[-1]
    g = dout * gamma
    dx = (d * g - g.sum(axis=-1, keepdims=True) - x_hat * (g * x_hat).sum(axis=-1, keepdims=True)) / (d * std)
    flat = (-1, d)
    return dx, (dout * x_hat).reshape(flat).sum(axis=0), dout.reshape(flat).sum(axis=0)


def groupnorm_forward(x, gamma, beta, num_groups, eps=DEFAULT_EPS):
    """GroupNorm (``torch.nn.GroupNorm``) of an (N, C, ...) input: the C channels are split into
    ``num_groups`` consecutive groups, each example and group normalized over its channels and
    positions, then a per-channel ``gamma`` and ``beta`` of shape ``(C,)``."""
    n, c = x.shape[:2]
    grouped = x.reshape(n, num_groups, -1)
    mean = grouped.mean(axis=-1, keepdims=True)
    std = np.sqrt(grouped.var(axis=-1, keepdims=True) + eps)
    x_hat = ((grouped - mean) / std).reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    return gamma.reshape(per_channel) * x_hat + beta.reshape(per_channel)


def rmsnorm_forward(x, gamma, eps=DEFAULT_EPS):
    """RMSNorm over the last axis (``torch.nn.RMSNorm(x.shape[-1], eps=eps)``): divide by the root
    mean square, without subtracting the mean and without a shift."""
    return gamma * x / np.sqrt((x ** 2).mean(axis=-1, keepdims=True) + eps)


# ---------------------------------------------------------------------------------------------
# Chapter 4 / Exercise 4 groundwork: folding batch norm into the layer before it (checked against
# torch.nn.Linear + BatchNorm1d in eval mode in tests/test_reference.py)
# ---------------------------------------------------------------------------------------------

def fold_batchnorm_into_linear(weight, bias, running_mean, running_var, gamma, beta, eps=DEFAULT_EPS):
    """The weight and bias of one linear layer that computes ``linear`` followed by eval-mode batch
    norm. ``weight`` has torch's layout ``(out_features, in_features)``; ``bias`` may be None (a
    linear layer before BN usually has none). In eval mode BN is the affine map
    ``gamma * (z - running_mean) / sqrt(running_var + eps) + beta``, so it folds into the weights:
    each output row is scaled, and the shift goes into the bias."""
    scale = gamma / np.sqrt(running_var + eps)
    folded_bias = (np.zeros_like(running_mean) if bias is None else bias) - running_mean
    return weight * scale[:, None], folded_bias * scale + beta


# ---------------------------------------------------------------------------------------------
# Chapter 6 / Exercise 6: measurements on a Linear -> [BatchNorm1d] -> ReLU network (checked
# against torch autograd in float64 in tests/test_reference.py)
#
# A network is a dict of arrays, as Exercise 6's notebook builds it into an nn.Sequential:
#   weights        one (out, in) matrix per linear layer (torch's layout), the output layer last
#   biases         one per linear layer: an array, or None for a layer that batch norm follows
#   gammas, betas, running_means, running_vars
#                  one array per hidden layer when the network has batch norm; empty lists otherwise
# Batch norm uses eps = 1e-5 and, in these measurements, never updates its running statistics.
# ---------------------------------------------------------------------------------------------

def mlp_layout(net):
    """(linear layer, role) of every parameter, in the order torch's nn.Sequential lists them: per
    hidden layer its weight, its bias if any, batch norm's gamma and beta if any; then the output layer's
    weight and bias."""
    hidden = len(net["weights"]) - 1
    layout = []
    for i in range(hidden + 1):
        layout.append((i, "weight"))
        if net["biases"][i] is not None:
            layout.append((i, "bias"))
        if i < hidden and net["gammas"]:
            layout += [(i, "gamma"), (i, "beta")]
    return layout


_ROLE_KEYS = {"weight": "weights", "bias": "biases", "gamma": "gammas", "beta": "betas"}


def mlp_parameters(net):
    """The network's parameters, in the order of ``model.parameters()`` (see :func:`mlp_layout`)."""
    return [net[_ROLE_KEYS[role]][i] for i, role in mlp_layout(net)]


def mlp_parameter_layers(net):
    """For each parameter (in :func:`mlp_parameters`' order), the linear layer it belongs to: a batch
    norm layer's gamma and beta belong to the linear layer before it."""
    return [i for i, _ in mlp_layout(net)]


def mlp_with_parameters(net, params):
    """A copy of the network with its parameters replaced (``params`` in :func:`mlp_parameters`' order)."""
    new = {key: list(value) for key, value in net.items()}
    for (i, role), value in zip(mlp_layout(net), params):
        new[_ROLE_KEYS[role]][i] = value
    return new


def mlp_loss_and_gradients(net, x, y, mode="train"):
    """Mean cross-entropy of the network's logits on the batch ``(x, y)`` and its gradient with respect
    to every parameter (in :func:`mlp_parameters`' order), by backpropagation written out. Batch norm
    normalizes with the batch's statistics in ``"train"`` mode and with the running statistics in
    ``"eval"`` mode; it never updates them."""
    hidden = len(net["weights"]) - 1
    batch_norm = bool(net["gammas"])
    h, saved = x, []
    for i in range(hidden):
        bias = net["biases"][i]
        z = h @ net["weights"][i].T + (0.0 if bias is None else bias)
        u, bn_cache = z, None
        if batch_norm:
            bn_param = {"mode": mode, "running_mean": net["running_means"][i].copy(),
                        "running_var": net["running_vars"][i].copy()}
            u, bn_cache = batchnorm_forward(z, net["gammas"][i], net["betas"][i], bn_param)
        saved.append((h, z, u, bn_cache))
        h = np.maximum(u, 0.0)
    logits = h @ net["weights"][hidden].T + net["biases"][hidden]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(len(y))
    loss = float(-log_probs[rows, y].mean())
    dlogits = np.exp(log_probs)
    dlogits[rows, y] -= 1.0
    dlogits /= len(y)
    grads = {(hidden, "weight"): dlogits.T @ h, (hidden, "bias"): dlogits.sum(axis=0)}
    dh = dlogits @ net["weights"][hidden]
    for i in reversed(range(hidden)):
        h_in, z, u, bn_cache = saved[i]
        du = dh * (u > 0)
        dz = du
        if batch_norm:
            if mode == "train":
                dz, grads[i, "gamma"], grads[i, "beta"] = batchnorm_backward(du, bn_cache)
            else:
                std = np.sqrt(net["running_vars"][i] + DEFAULT_EPS)
                grads[i, "gamma"] = (du * (z - net["running_means"][i]) / std).sum(axis=0)
                grads[i, "beta"] = du.sum(axis=0)
                dz = du * net["gammas"][i] / std
        grads[i, "weight"] = dz.T @ h_in
        if net["biases"][i] is not None:
            grads[i, "bias"] = dz.sum(axis=0)
        dh = dz @ net["weights"][i]
    return loss, [grads[key] for key in mlp_layout(net)]


def _cosine(a, b):
    """The cosine between two arrays; NaN when one of them is zero."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)))


def layer_gradients_before_and_after(net, x, y, layer, lr, moved=None, second_batch=None, sign=1.0,
                                     second_mode="train", stale=None):
    """The gradient G of linear layer ``layer``'s weight on the batch ``(x, y)``, and the gradient G' of
    the same weight after every parameter of the layers below it took one SGD step of rate ``lr`` (with
    the gradients of G's backward pass), on the same batch.

    ``moved`` (the indices, in :func:`mlp_parameters`' order, of the parameters that take the step; by
    default those of the layers below ``layer``), ``second_batch`` (the batch of G'; by default
    ``(x, y)``), ``sign`` (-1: the step goes uphill), ``second_mode`` (the mode of G''s pass) and
    ``stale`` (gradients already in ``.grad`` before the first backward pass, one per parameter, which
    a missing ``zero_grad`` adds to the first pass's gradients: to G and to the step) exist so that the
    checks can compute what known mistakes give."""
    params = mlp_parameters(net)
    if moved is None:
        moved = [i for i, owner in enumerate(mlp_parameter_layers(net)) if owner < layer]
    _, grads = mlp_loss_and_gradients(net, x, y)
    if stale is not None:
        grads = [g + s for g, s in zip(grads, stale)]
    stepped = [p - sign * lr * g if i in moved else p for i, (p, g) in enumerate(zip(params, grads))]
    _, grads_after = mlp_loss_and_gradients(mlp_with_parameters(net, stepped), *(second_batch or (x, y)),
                                            mode=second_mode)
    target = mlp_layout(net).index((layer, "weight"))
    return grads[target], grads_after[target]


def gradient_change(net, x, y, layer, lr, **mistake):
    """Santurkar et al.'s internal covariate shift of linear layer ``layer`` on the batch ``(x, y)``:
    ``(l2, cosine)`` between G and G' of :func:`layer_gradients_before_and_after` (which takes the same
    keyword arguments)."""
    before, after = layer_gradients_before_and_after(net, x, y, layer, lr, **mistake)
    return float(np.linalg.norm(before - after)), _cosine(before, after)


def loss_along_gradient(net, x, y, step_sizes, sign=1.0, cumulative=False, loss_mode="train",
                        gradient_mode="train", change="difference", parameters=None, stale=None,
                        accumulate=False):
    """Santurkar et al.'s look at the landscape from the network's parameters w along their gradient g
    (every parameter, on the batch ``(x, y)``): for each step size eta, the loss at ``w - eta * g`` and
    the l2 norm of the change of the whole gradient there, ``|g(w) - g(w - eta * g)|``. Returns
    ``(losses, changes)``, arrays with one entry per step size.

    ``sign`` (-1 steps uphill), ``cumulative`` (the steps add up instead of each starting from w), the
    modes in which the losses and the gradients are taken, ``change`` (``"norms"``: ``| |g(w)| - |g(w')| |``
    instead of the norm of the difference; ``"sum of norms"``: the sum over parameters of each one's
    norm of the difference), ``parameters`` (the indices, in :func:`mlp_parameters`' order, of the
    parameters whose gradients count; by default all), ``stale`` (gradients already in ``.grad`` before
    the first backward pass, which a missing ``zero_grad`` adds to g: the direction and the reference
    of the change) and ``accumulate`` (no ``zero_grad`` between step sizes: ``.grad`` holds g plus every
    gradient taken so far) exist so that the checks can compute what known mistakes give."""
    params = mlp_parameters(net)
    counted = range(len(params)) if parameters is None else parameters
    _, grads = mlp_loss_and_gradients(net, x, y, mode=gradient_mode)
    if stale is not None:
        grads = [g + s for g, s in zip(grads, stale)]
    losses, changes, travelled = [], [], 0.0
    held = [np.zeros_like(g) for g in grads]           # what .grad has gathered beyond g
    for eta in step_sizes:
        travelled = travelled + eta if cumulative else eta
        moved = mlp_with_parameters(net, [p - sign * travelled * g for p, g in zip(params, grads)])
        losses.append(mlp_loss_and_gradients(moved, x, y, mode=loss_mode)[0])
        _, grads_there = mlp_loss_and_gradients(moved, x, y, mode=gradient_mode)
        if accumulate:
            held = [h + g for h, g in zip(held, grads_there)]
            grads_there = [g + h for g, h in zip(grads, held)]
        if change == "norms":
            norm_here = np.sqrt(sum((grads[i] ** 2).sum() for i in counted))
            norm_there = np.sqrt(sum((grads_there[i] ** 2).sum() for i in counted))
            changes.append(abs(norm_here - norm_there))
        elif change == "sum of norms":
            changes.append(sum(np.linalg.norm(grads[i] - grads_there[i]) for i in counted))
        else:
            changes.append(np.sqrt(sum(((grads[i] - grads_there[i]) ** 2).sum() for i in counted)))
    return np.array(losses), np.array(changes)


def effective_learning_rate(net, x, y, layer, lr, mode="train", power=2, parameter=None, stale=None):
    """The effective learning rate ``lr / |W|^2`` of the weight W of linear layer ``layer`` (a layer that
    batch norm follows, so that the loss does not change when W is scaled) and the cosine between W and
    the gradient of the loss on ``(x, y)`` with respect to it, which scale invariance makes 0 (up to
    batch norm's eps). Returns ``(effective_lr, cosine)``.

    ``mode``, ``power`` (of the norm), ``parameter`` (the index, in :func:`mlp_parameters`' order, of
    the tensor to use instead of W) and ``stale`` (gradients already in ``.grad``, one per parameter,
    which a missing ``zero_grad`` adds to the gradient) exist so that the checks can compute what known
    mistakes give."""
    index = mlp_layout(net).index((layer, "weight")) if parameter is None else parameter
    weight = mlp_parameters(net)[index]
    _, grads = mlp_loss_and_gradients(net, x, y, mode=mode)
    gradient = grads[index] if stale is None else grads[index] + stale[index]
    return float(lr / np.linalg.norm(weight) ** power), _cosine(weight, gradient)


def sgd_steps(net, x, y, lr, batches):
    """The network after one plain SGD step of rate ``lr`` on each mini-batch ``x[idx], y[idx]`` of
    ``batches`` (lists of row indices), batch norm in train mode."""
    params = mlp_parameters(net)
    for idx in batches:
        _, grads = mlp_loss_and_gradients(mlp_with_parameters(net, params), x[idx], y[idx])
        params = [p - lr * g for p, g in zip(params, grads)]
    return mlp_with_parameters(net, params)
