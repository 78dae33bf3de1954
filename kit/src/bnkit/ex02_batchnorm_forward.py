"""Checks of Exercise 2: the batch normalization forward pass, with running statistics.

Each ``verify_*`` function runs the student's function on the given cases and compares; each
``check_*`` function is what the notebook calls: the same comparison on the stored cases. The
grader calls ``verify_*`` with cases it draws in secret.
"""

from __future__ import annotations

import numpy as np

from ._core import _as_array, _close, _compare, _fail, _passed, _unpack_pair
from ._fixtures import stored_check

EXERCISE = "ex02_batchnorm_forward"
CACHE_KEYS = ("x", "mean", "var", "std", "x_hat", "gamma", "eps")
REUSE_HINT = "spatial_batchnorm_forward reuses batchnorm_forward: if that fails its own checks, fix those first."


def verify_batchnorm_forward_train(batchnorm_forward, cases):
    """Train-mode output on (N, D) batches."""
    for case in cases:
        x = case["x"]
        subject = f"batchnorm_forward in train mode, input of shape {x.shape}"
        result = batchnorm_forward(x.copy(), case["gamma"].copy(), case["beta"].copy(),
                                   {"mode": "train", "eps": case["eps"]})
        out, _ = _unpack_pair(result, subject)
        _compare(subject, "out", out, case["expected"], case["mistakes"])
    _passed(f"train-mode output matches the reference for input shapes {[case['x'].shape for case in cases]}.")


def verify_running_stats(batchnorm_forward, cases):
    """Running mean and variance after several train steps, for several momenta."""
    for case in cases:
        batches, momentum = case["batches"], case["momentum"]
        bn_param = {"mode": "train", "momentum": momentum}
        subject = f"running statistics after {len(batches)} train steps with momentum={momentum}"
        for x in batches:
            _unpack_pair(batchnorm_forward(x.copy(), case["gamma"].copy(), case["beta"].copy(), bn_param), subject)
        for key in ("running_mean", "running_var"):
            if key not in bn_param:
                _fail(subject, f"bn_param has no '{key}' after the train steps.",
                      "create it (zeros for the mean, ones for the variance) if it is missing, and store the "
                      "updated value back into bn_param after every train step.")
            _compare(subject, key, bn_param[key], case[key], case[f"{key}_mistakes"])
    momenta = [case["momentum"] for case in cases]
    _passed(f"running statistics match torch.nn.BatchNorm1d for momenta {momenta} over "
            f"{len(cases[0]['batches'])} steps.")


def verify_eval_mode(batchnorm_forward, cases):
    """Eval mode uses the stored running statistics, leaves them untouched and works for one example."""
    for case in cases:
        x = case["x"]
        bn_param = {"mode": "eval", "eps": case["eps"], "momentum": 0.1,
                    "running_mean": case["running_mean"].copy(), "running_var": case["running_var"].copy()}
        subject = f"batchnorm_forward in eval mode, input of shape {x.shape}"
        out, _ = _unpack_pair(batchnorm_forward(x.copy(), case["gamma"].copy(), case["beta"].copy(), bn_param),
                              subject)
        for key in ("running_mean", "running_var"):
            if not np.array_equal(np.asarray(bn_param.get(key)), case[key]):
                _fail(subject, f"bn_param['{key}'] changed during an eval-mode call.",
                      "eval mode must only read the running statistics; update them in train mode only.")
        _compare(subject, "out", out, case["expected"], case["mistakes"])
    _passed("eval mode uses the running statistics, leaves them unchanged and handles a batch of one.")


def verify_cache_and_inputs(batchnorm_forward, case):
    """The inputs are not modified, and the train-mode cache holds what the backward pass needs."""
    originals = {name: case[name] for name in ("x", "gamma", "beta")}
    passed_in = {name: value.copy() for name, value in originals.items()}
    n, d = originals["x"].shape
    subject = "batchnorm_forward's cache and inputs"
    out, cache = _unpack_pair(batchnorm_forward(passed_in["x"], passed_in["gamma"], passed_in["beta"],
                                                {"mode": "train"}), subject)
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
    c = {key: np.asarray(cache[key], dtype=np.float64) for key in CACHE_KEYS}
    for key, shape in shapes.items():
        value = _as_array(cache[key], subject, f"cache['{key}']")
        if shape == (d,) and value.shape == (1, d):  # statistics kept with keepdims=True broadcast the same way
            value = value.reshape(d)
        if value.shape != shape:
            _fail(subject, f"cache['{key}'] has shape {value.shape} but should have shape {shape}.")
        c[key] = value
    for key, text in (("x", "cache['x'] should be the input x."), ("gamma", "cache['gamma'] should be the gamma "
                                                                            "passed in.")):
        if not _close(c[key], originals[key]):
            _fail(subject, text)
    if not np.isclose(float(c["eps"]), case["eps"]):
        _fail(subject, f"cache['eps'] is {c['eps']} but the eps in use is {case['eps']}.")
    # The statistics themselves: the backward pass needs the true values.
    for key in ("mean", "var", "std", "x_hat"):
        _compare(subject, f"cache['{key}']", c[key], case[key], case["mistakes"].get(key, []))
    if not _close(_as_array(out, subject, "out"), c["gamma"] * c["x_hat"] + originals["beta"]):
        _fail(subject, "out is not gamma * cache['x_hat'] + beta.")
    _passed("the inputs are left unchanged and the cache holds consistent values for the backward pass.")


def verify_spatial_batchnorm_forward(spatial_batchnorm_forward, cases):
    """(N, C, H, W) output and per-channel running statistics, as torch.nn.BatchNorm2d computes them."""
    for case in cases:
        batches, momentum = case["batches"], case["momentum"]
        subject = f"spatial_batchnorm_forward, input of shape {batches[0].shape}"
        bn_param = {"mode": "train", "momentum": momentum}
        for x, expected, mistakes in zip(batches, case["outputs"], case["output_mistakes"]):
            out, _ = _unpack_pair(spatial_batchnorm_forward(x.copy(), case["gamma"].copy(), case["beta"].copy(),
                                                            bn_param), subject)
            _compare(subject, "out", out, expected, mistakes, hint=REUSE_HINT)
        for key in ("running_mean", "running_var"):
            if key not in bn_param:
                _fail(subject, f"bn_param has no '{key}' after {len(batches)} train steps.", REUSE_HINT)
            _compare(subject, f"bn_param['{key}']", bn_param[key], case[key], case[f"{key}_mistakes"],
                     context=f"after {len(batches)} train steps with momentum={momentum}", hint=REUSE_HINT)
    _passed(f"spatial batch norm matches torch.nn.BatchNorm2d for input shapes "
            f"{[case['batches'][0].shape for case in cases]}.")


check_batchnorm_forward_train = stored_check(EXERCISE, verify_batchnorm_forward_train)
check_running_stats = stored_check(EXERCISE, verify_running_stats)
check_eval_mode = stored_check(EXERCISE, verify_eval_mode)
check_cache_and_inputs = stored_check(EXERCISE, verify_cache_and_inputs)
check_spatial_batchnorm_forward = stored_check(EXERCISE, verify_spatial_batchnorm_forward)
