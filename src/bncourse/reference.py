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
