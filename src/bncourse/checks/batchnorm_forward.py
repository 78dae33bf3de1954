"""Checks for Exercise 2: the batch normalization forward pass, with running statistics."""

from __future__ import annotations

import numpy as np

from .. import reference
from ..reference import CACHE_KEYS
from ._core import Mistake, _affine, _as_array, _close, _compare, _fail, _features, _passed, _unpack_pair

# ---------------------------------------------------------------------------------------------
# Known mistakes in the forward pass, each written as the code a student would have written
# ---------------------------------------------------------------------------------------------

def _train_mistakes(x, gamma, beta, eps):
    mean, var = x.mean(axis=0), x.var(axis=0)
    with np.errstate(all="ignore"):
        per_example = (x - x.mean(axis=1, keepdims=True)) / np.sqrt(x.var(axis=1, keepdims=True) + eps)
        return [
            Mistake(gamma * per_example + beta,
                    "the mean and variance were taken over axis 1 (across the features of each example). "
                    "Batch norm takes one mean and one variance per feature, over the batch: axis=0."),
            Mistake(gamma * (x - mean) / np.sqrt(x.var(axis=0, ddof=1) + eps) + beta,
                    "the output was normalised with the unbiased variance (dividing by N-1, as np.var(ddof=1) "
                    "or torch's .var() do). Normalise with the biased variance (divide by N); only running_var "
                    "stores the unbiased one."),
            Mistake(gamma * (x - mean) / np.sqrt(var) + beta,
                    "eps is missing: divide by np.sqrt(var + eps), not np.sqrt(var)."),
            Mistake(gamma * (x - mean) / (np.sqrt(var) + eps) + beta,
                    "eps was added outside the square root: use np.sqrt(var + eps), as PyTorch does."),
            Mistake(gamma * (x - mean) / (var + eps) + beta,
                    "you divided by the variance; divide by the standard deviation np.sqrt(var + eps)."),
            Mistake(gamma * x / np.sqrt(var + eps) + beta,
                    "the mean was not subtracted: x_hat = (x - mean) / np.sqrt(var + eps)."),
            Mistake((x - mean) / np.sqrt(var + eps),
                    "the output is x_hat itself: scale it by gamma and shift it by beta."),
            Mistake(beta * (x - mean) / np.sqrt(var + eps) + gamma,
                    "gamma and beta are swapped: out = gamma * x_hat + beta."),
            Mistake(gamma * x / np.sqrt(1 + eps) + beta,
                    "train mode normalised with the initial running statistics (mean 0, variance 1). "
                    "In train mode use the statistics of the current batch."),
        ]


def _running_stats_after(batches, momentum, *, keras=False, biased=False, ignore_momentum=False,
                         overwrite=False, var_init=1.0, correction_count=None):
    """Running statistics after a sequence of (rows, features) train steps, optionally with a
    known mistake. ``correction_count`` replaces the row count in the unbiased correction."""
    d = batches[0].shape[1]
    running_mean, running_var = np.zeros(d), np.full(d, var_init)
    m = reference.DEFAULT_MOMENTUM if ignore_momentum else momentum
    for x in batches:
        count = correction_count or len(x)
        mean, var = x.mean(axis=0), x.var(axis=0) * (1 if biased else count / (count - 1))
        if overwrite:
            running_mean, running_var = mean, var
        elif keras:
            running_mean, running_var = m * running_mean + (1 - m) * mean, m * running_var + (1 - m) * var
        else:
            running_mean, running_var = (1 - m) * running_mean + m * mean, (1 - m) * running_var + m * var
    return running_mean, running_var


def _running_mistakes(batches, momentum, which: int):
    """Mistakes for running_mean (which=0) or running_var (which=1)."""
    candidates = [
        (dict(keras=True), "the momentum convention is reversed (Keras style). In PyTorch momentum is the weight "
                           "of the NEW batch: running = (1 - momentum) * running + momentum * batch_statistic."),
        (dict(biased=True), "running_var accumulated the biased variance. PyTorch stores the unbiased batch "
                            "variance (var * N / (N - 1)) in running_var, although it normalises with the biased one."),
        (dict(overwrite=True), "the running statistics were replaced by the last batch's statistics instead of "
                               "being averaged with momentum."),
        (dict(ignore_momentum=True), "bn_param['momentum'] was ignored (the default 0.1 was used instead)."),
        (dict(var_init=0.0), "running_var started at 0. PyTorch starts running_mean at 0 and running_var at 1."),
    ]
    mistakes = [Mistake(_running_stats_after(batches, momentum, **kw)[which], text)
                for kw, text in candidates if not (kw.get("ignore_momentum") and momentum == reference.DEFAULT_MOMENTUM)]
    d = batches[0].shape[1]
    never_updated = np.zeros(d) if which == 0 else np.ones(d)
    mistakes.append(Mistake(never_updated, "the running statistics were never updated: after each train step, "
                                           "store the new averages back into bn_param."))
    return mistakes


# ---------------------------------------------------------------------------------------------
# Checks for Exercise 2: the forward pass
# ---------------------------------------------------------------------------------------------

def check_batchnorm_forward_train(batchnorm_forward, shapes=((4, 3), (16, 5), (64, 10)), seed=0):
    """Train-mode output of ``batchnorm_forward`` on (N, D) batches, compared with the reference.

    The last batch has a constant feature, whose variance is 0, so a missing epsilon shows up.
    """
    rng = np.random.default_rng(seed)
    for case, (n, d) in enumerate(shapes):
        x = _features(rng, n, d, constant_feature=case == len(shapes) - 1)
        gamma, beta = _affine(rng, d)
        eps = reference.DEFAULT_EPS
        subject = f"batchnorm_forward in train mode, input of shape {(n, d)}"
        result = batchnorm_forward(x.copy(), gamma.copy(), beta.copy(), {"mode": "train", "eps": eps})
        out, _ = _unpack_pair(result, subject)
        expected, _ = reference.batchnorm_forward(x, gamma, beta, {"mode": "train", "eps": eps})
        _compare(subject, "out", out, expected, _train_mistakes(x, gamma, beta, eps))
    _passed(f"train-mode output matches the reference for input shapes {list(shapes)}.")


def check_running_stats(batchnorm_forward, n=32, d=4, momenta=(0.1, 0.3), steps=5, seed=1):
    """Running mean and variance after several train steps, for several momenta, as torch computes them."""
    rng = np.random.default_rng(seed)
    for momentum in momenta:
        batches = [_features(rng, n, d) for _ in range(steps)]
        gamma, beta = _affine(rng, d)
        bn_param = {"mode": "train", "momentum": momentum}
        subject = f"running statistics after {steps} train steps with momentum={momentum}"
        for x in batches:
            _unpack_pair(batchnorm_forward(x.copy(), gamma.copy(), beta.copy(), bn_param), subject)
        for key in ("running_mean", "running_var"):
            if key not in bn_param:
                _fail(subject, f"bn_param has no '{key}' after the train steps.",
                      "create it (zeros for the mean, ones for the variance) if it is missing, and store the "
                      "updated value back into bn_param after every train step.")
        expected_mean, expected_var = _running_stats_after(batches, momentum)
        _compare(subject, "running_mean", bn_param["running_mean"], expected_mean,
                 _running_mistakes(batches, momentum, 0))
        _compare(subject, "running_var", bn_param["running_var"], expected_var,
                 _running_mistakes(batches, momentum, 1))
    _passed(f"running statistics match torch.nn.BatchNorm1d for momenta {list(momenta)} over {steps} steps.")


def check_eval_mode(batchnorm_forward, shapes=((8, 3), (1, 5)), seed=2):
    """Eval mode uses the stored running statistics, leaves them untouched and works for one example."""
    rng = np.random.default_rng(seed)
    for n, d in shapes:
        x = _features(rng, n, d)
        gamma, beta = _affine(rng, d)
        running_mean, running_var = rng.normal(size=d), rng.uniform(0.5, 4.0, size=d)
        bn_param = {"mode": "eval", "eps": reference.DEFAULT_EPS, "momentum": 0.1,
                    "running_mean": running_mean.copy(), "running_var": running_var.copy()}
        subject = f"batchnorm_forward in eval mode, input of shape {(n, d)}"
        out, _ = _unpack_pair(batchnorm_forward(x.copy(), gamma.copy(), beta.copy(), bn_param), subject)
        for key, before in (("running_mean", running_mean), ("running_var", running_var)):
            if not np.array_equal(np.asarray(bn_param.get(key)), before):
                _fail(subject, f"bn_param['{key}'] changed during an eval-mode call.",
                      "eval mode must only read the running statistics; update them in train mode only.")
        expected = gamma * (x - running_mean) / np.sqrt(running_var + reference.DEFAULT_EPS) + beta
        mistakes = [
            Mistake(gamma * (x - running_mean) / np.sqrt(running_var) + beta,
                    "eps is missing in eval mode: divide by np.sqrt(running_var + eps)."),
            Mistake(gamma * (x - running_mean) / (running_var + reference.DEFAULT_EPS) + beta,
                    "running_var is a variance: divide by its square root, np.sqrt(running_var + eps)."),
        ]
        if n > 1:
            with np.errstate(all="ignore"):
                batch_stats = gamma * (x - x.mean(0)) / np.sqrt(x.var(0) + reference.DEFAULT_EPS) + beta
            mistakes.append(Mistake(batch_stats, "eval mode normalised with the batch's own statistics. In eval mode "
                                                 "use bn_param['running_mean'] and bn_param['running_var']."))
        _compare(subject, "out", out, expected, mistakes)
    _passed("eval mode uses the running statistics, leaves them unchanged and handles a batch of one.")


def check_cache_and_inputs(batchnorm_forward, n=10, d=4, seed=3):
    """The inputs are not modified, and the train-mode cache holds what the backward pass needs."""
    rng = np.random.default_rng(seed)
    x = _features(rng, n, d)
    gamma, beta = _affine(rng, d)
    passed_in = {"x": x, "gamma": gamma, "beta": beta}
    originals = {name: value.copy() for name, value in passed_in.items()}
    bn_param = {"mode": "train"}
    subject = "batchnorm_forward's cache and inputs"
    out, cache = _unpack_pair(batchnorm_forward(x, gamma, beta, bn_param), subject)
    for name, original in originals.items():
        if not np.array_equal(passed_in[name], original):
            _fail(subject, f"the input `{name}` was modified by the call.",
                  "operations such as `x -= mean` or `x /= std` change the caller's array in place; "
                  "write `xc = x - mean` instead.")
    if not isinstance(cache, dict):
        _fail(subject, f"in train mode the cache must be a dict, but it is a {type(cache).__name__}.",
              f"return a dict with the keys {list(CACHE_KEYS)}.")
    missing = [key for key in CACHE_KEYS if key not in cache]
    if missing:
        _fail(subject, f"the cache lacks the key(s) {missing}.", f"the backward pass expects {list(CACHE_KEYS)}.")
    shapes = {"x": (n, d), "x_hat": (n, d), "mean": (d,), "var": (d,), "std": (d,), "gamma": (d,)}
    for key, shape in shapes.items():
        value = _as_array(cache[key], subject, f"cache['{key}']")
        if value.shape != shape:
            _fail(subject, f"cache['{key}'] has shape {value.shape} but should have shape {shape}.")
    c = {key: np.asarray(cache[key], dtype=np.float64) for key in CACHE_KEYS}
    eps = reference.DEFAULT_EPS  # bn_param had no eps: the default applies (bn_param itself is the student's)
    consistency = [
        ("x", originals["x"], "cache['x'] should be the input x."),
        ("gamma", originals["gamma"], "cache['gamma'] should be the gamma passed in."),
    ]
    for key, expected, text in consistency:
        if not _close(c[key], expected):
            _fail(subject, text)
    if not np.isclose(float(c["eps"]), eps):
        _fail(subject, f"cache['eps'] is {c['eps']} but the eps in use is {eps}.")
    # The statistics themselves, against the reference: the backward pass needs the true values.
    _, ref = reference.batchnorm_forward(originals["x"], originals["gamma"], originals["beta"],
                                         {"mode": "train", "eps": eps})
    x0 = originals["x"]
    _compare(subject, "cache['mean']", c["mean"], ref["mean"])
    _compare(subject, "cache['var']", c["var"], ref["var"], [Mistake(
        x0.var(axis=0, ddof=1), "cache['var'] holds the unbiased variance; the cache needs the biased variance "
                                "the output was normalised with.")])
    _compare(subject, "cache['std']", c["std"], ref["std"], [Mistake(
        np.sqrt(ref["var"]), "cache['std'] is sqrt(var) without eps; it must be sqrt(var + eps), the value the "
                             "output was divided by.")])
    _compare(subject, "cache['x_hat']", c["x_hat"], ref["x_hat"])
    if not _close(_as_array(out, subject, "out"), c["gamma"] * c["x_hat"] + originals["beta"]):
        _fail(subject, "out is not gamma * cache['x_hat'] + beta.")
    _passed("the inputs are left unchanged and the cache holds consistent values for the backward pass.")


REUSE_HINT = "spatial_batchnorm_forward reuses batchnorm_forward: if that fails its own checks, fix those first."


def _spatial_mistakes(x, gamma, beta, eps):
    n, c, h, w = x.shape
    g, b = gamma.reshape(1, c, 1, 1), beta.reshape(1, c, 1, 1)
    flat = x.reshape(n, -1)
    per_position = (flat - flat.mean(0)) / np.sqrt(flat.var(0) + eps)
    rows_wrong = x.reshape(-1, c)
    no_transpose = (rows_wrong - rows_wrong.mean(0)) / np.sqrt(rows_wrong.var(0) + eps)
    per_example = (x - x.mean(axis=(1, 2, 3), keepdims=True)) / np.sqrt(x.var(axis=(1, 2, 3), keepdims=True) + eps)
    return [
        Mistake((gamma * no_transpose + beta).reshape(x.shape),
                "x was reshaped to (-1, C) without moving the channel axis last first. In NCHW memory that mixes "
                "channels and pixels; use x.transpose(0, 2, 3, 1).reshape(-1, C) and transpose back."),
        Mistake(g * per_position.reshape(x.shape) + b,
                "each (channel, row, column) position got its own statistics. BatchNorm2d shares one mean and one "
                "variance per channel across the batch and all H x W positions: axes (0, 2, 3)."),
        Mistake(g * per_example + b,
                "the statistics were taken per example (over C, H, W). BatchNorm2d takes them per channel, "
                "over axes (0, 2, 3)."),
    ]


def check_spatial_batchnorm_forward(spatial_batchnorm_forward, shapes=((2, 3, 4, 5), (5, 4, 3, 3)), seed=4,
                                    momentum=0.2):
    """(N, C, H, W) output and per-channel running statistics, as torch.nn.BatchNorm2d computes them."""
    rng = np.random.default_rng(seed)
    for n, c, h, w in shapes:
        means, scales = rng.uniform(-5, 5, size=c), rng.uniform(0.5, 3.0, size=c)
        batches = [rng.normal(means.reshape(1, c, 1, 1), scales.reshape(1, c, 1, 1), size=(n, c, h, w))
                   for _ in range(2)]
        gamma, beta = _affine(rng, c)
        subject = f"spatial_batchnorm_forward, input of shape {(n, c, h, w)}"
        bn_param, ref_param = {"mode": "train", "momentum": momentum}, {"mode": "train", "momentum": momentum}
        for x in batches:
            out, _ = _unpack_pair(spatial_batchnorm_forward(x.copy(), gamma.copy(), beta.copy(), bn_param), subject)
            expected, _ = reference.spatial_batchnorm_forward(x, gamma, beta, ref_param)
            _compare(subject, "out", out, expected, _spatial_mistakes(x, gamma, beta, reference.DEFAULT_EPS),
                     hint=REUSE_HINT)
        count = n * h * w
        var_mistakes = []
        if n > 1:  # with one image N/(N-1) is undefined, so nobody makes this mistake there
            var_mistakes.append(Mistake(
                _running_stats_after([reference.nchw_to_rows(x) for x in batches], momentum, correction_count=n)[1],
                f"the unbiased correction used N/(N-1) with N={n} images; each channel has N*H*W={count} values, "
                f"so the factor is {count}/{count - 1}."))
        for key in ("running_mean", "running_var"):
            if key not in bn_param:
                _fail(subject, f"bn_param has no '{key}' after {len(batches)} train steps.", REUSE_HINT)
            _compare(subject, f"bn_param['{key}']", bn_param[key], ref_param[key],
                     var_mistakes if key == "running_var" else [],
                     context=f"after {len(batches)} train steps with momentum={momentum}", hint=REUSE_HINT)
    _passed(f"spatial batch norm matches torch.nn.BatchNorm2d for input shapes {list(shapes)}.")
