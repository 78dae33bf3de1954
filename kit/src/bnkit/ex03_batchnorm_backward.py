"""Checks of Exercise 3: the batch normalization backward pass, gradient checking, and a custom
``torch.autograd.Function``.

Each ``verify_*`` function runs the student's function on the given cases and compares; each
``check_*`` function is what the notebook calls: the same comparison on the stored cases. The
grader calls ``verify_*`` with cases it draws in secret.
"""

from __future__ import annotations

import numpy as np

from ._core import _as_array, _compare, _fail, _given_entries, _passed
from ._fixtures import stored_check

EXERCISE = "ex03_batchnorm_backward"
GRADIENTS = ("dx", "dgamma", "dbeta")
FUNCTION_HINT = "the Function's backward must return one gradient per input of forward: (dx, dgamma, dbeta, None)."


def _triple(result, subject, names=GRADIENTS):
    if result is None:
        _fail(subject, "the function returned None.", f"did you forget `return {', '.join(names)}`?")
    if not isinstance(result, (tuple, list)) or len(result) != len(names):
        kind = f"{len(result)}-tuple" if isinstance(result, (tuple, list)) else type(result).__name__
        _fail(subject, f"the function must return {len(names)} values `({', '.join(names)})`, but it returned "
                       f"a {kind}.", f"end with `return {', '.join(names)}`.")
    return result


def _cache_copy(cache):
    return {key: (value.copy() if isinstance(value, np.ndarray) else value) for key, value in cache.items()}


def _compare_gradients(subject, got, case, hint=None):
    for name, value in zip(GRADIENTS, got):
        _compare(subject, name, value, case["expected"][name], case["mistakes"][name], hint=hint)


def _verify_backward(backward, function_name, cases):
    for case in cases:
        dout, cache = case["dout"], case["cache"]
        subject = f"{function_name} for an input of shape {dout.shape}"
        given_dout, given_cache = dout.copy(), _cache_copy(cache)
        result = backward(given_dout, given_cache)
        # Before the gradients: an input changed in place is the likeliest reason for wrong ones.
        if not np.array_equal(given_dout, dout):
            _fail(subject, "dout was modified by the call.", "write `g = dout * gamma`, not `dout *= gamma`.")
        for key, value in cache.items():
            if not np.array_equal(np.asarray(given_cache.get(key)), np.asarray(value)):
                _fail(subject, f"cache['{key}'] was modified by the call.",
                      "the cache belongs to the forward pass; compute new arrays instead of changing its entries.")
        _compare_gradients(subject, _triple(result, subject), case)


def _shapes(cases, key):
    return [case[key].shape for case in cases]


def verify_batchnorm_backward(batchnorm_backward, cases):
    """(dx, dgamma, dbeta) of the staged backward pass, from Exercise 2's cache, against the reference."""
    _verify_backward(batchnorm_backward, "batchnorm_backward", cases)
    _passed(f"batchnorm_backward matches the reference gradients for input shapes {_shapes(cases, 'dout')}.")


def verify_batchnorm_backward_alt(batchnorm_backward_alt, cases):
    """The closed-form backward pass, against the reference."""
    _verify_backward(batchnorm_backward_alt, "batchnorm_backward_alt", cases)
    _passed(f"batchnorm_backward_alt matches the reference gradients for input shapes {_shapes(cases, 'dout')}.")


def verify_spatial_batchnorm_backward(spatial_batchnorm_backward, cases):
    """(dx, dgamma, dbeta) for an (N, C, H, W) input, from the cache of the spatial forward pass."""
    for case in cases:
        dout = case["dout"]
        subject = f"spatial_batchnorm_backward for an input of shape {dout.shape}"
        got = _triple(spatial_batchnorm_backward(dout.copy(), _cache_copy(case["cache"])), subject)
        _compare(subject, "dx", got[0], case["expected"]["dx"], case["mistakes"]["dx"],
                 hint="spatial_batchnorm_backward reuses batchnorm_backward: if that fails its checks, fix it first.")
        for name, value in zip(GRADIENTS[1:], got[1:]):
            _compare(subject, name, value, case["expected"][name], case["mistakes"][name])
    _passed(f"spatial_batchnorm_backward matches the reference for input shapes {_shapes(cases, 'dout')}.")


# ---------------------------------------------------------------------------------------------
# Gradient checking
# ---------------------------------------------------------------------------------------------

def _error_to(got, want) -> float:
    """How far ``got`` is from ``want``, relative to the size of ``want``: |got - want| / |want|."""
    return float(np.linalg.norm(got - want) / max(float(np.linalg.norm(want)), 1e-300))


def verify_numerical_gradient(numerical_gradient_of_tanh_layer, cases):
    """The student's ``numerical_gradient`` (through the notebook's given wrapper) on f(x) = tanh(x @ a),
    compared with the exact gradient."""
    for case in cases:
        x, h = case["x"], case["h"]
        subject = f"numerical_gradient on f(x) = tanh(x @ a), x of shape {x.shape}, h={h}"
        given = x.copy()
        result = numerical_gradient_of_tanh_layer(given, case["a"].copy(), case["dout"].copy(), h)
        gradient = _given_entries(result, subject, "numerical_gradient_of_tanh_layer", ("gradient",))["gradient"]
        got = _as_array(gradient, subject, "the gradient")
        if got.shape != x.shape:
            _fail(subject, f"the gradient has shape {got.shape} but should have the shape of x, {x.shape}.")
        if not np.allclose(given, x, rtol=0, atol=1e-12):
            _fail(subject, "x is not the same after the call.",
                  "after evaluating f at x[k] + h and x[k] - h, put the original value back.")
        # Against the centred difference with this h (with a large h it is not the exact gradient).
        error = _error_to(got, case.get("expected", case["exact"]))
        if error < 2e-7:
            continue
        for mistake in case["mistakes"]:
            if _error_to(got, mistake.expected_if_made) < 2e-6:
                _fail(subject, f"the gradient's error relative to the centred difference with h={h} is {error:.1e}. "
                               f"It matches a common mistake: {mistake.explanation}")
        _fail(subject, f"the gradient's error relative to the centred difference with h={h}, |grad - expected| / "
                       f"|expected|, is {error:.1e}; the same formula in float64 agrees to about 1e-10.")
    _passed("numerical_gradient agrees with the centred difference (f(x + h) - f(x - h)) / (2h) for every h passed "
            "in, to better than 2e-7 (relative).")


def verify_relative_error(relative_error, cases):
    """``relative_error(a, b)`` on pairs of arrays, against the stored values."""
    for case in cases:
        subject = f"relative_error on {case['description']}"
        value = relative_error(case["a"].copy(), case["b"].copy())
        if value is None:
            _fail(subject, "the function returned None.", "did you forget a `return` statement?")
        try:
            got = float(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError):
            _fail(subject, f"return one number, not a {type(value).__name__}.")
        expected = case["expected"]
        if not np.isfinite(got):
            _fail(subject, f"the result is {got}.", "when |a| + |b| is 0, both arrays are 0: return 0.")
        if abs(got - expected) <= 1e-12 + 1e-9 * expected:
            continue
        for mistake in case["mistakes"]:
            value_if_made = mistake.expected_if_made
            if abs(got - value_if_made) <= 1e-9 * max(abs(value_if_made), 1e-12):
                _fail(subject, f"got {got:.6g}, expected {expected:.6g}. It matches a common mistake: "
                               f"{mistake.explanation}")
        _fail(subject, f"got {got:.6g}, expected |a - b| / (|a| + |b|) = {expected:.6g}.")
    _passed("relative_error is the norm-based relative error, and 0 for two zero arrays.")


# ---------------------------------------------------------------------------------------------
# The custom autograd Function
# ---------------------------------------------------------------------------------------------

def verify_autograd_function(batchnorm_function_gradients, cases):
    """The output and the gradients that the student's ``torch.autograd.Function`` produces (through the
    notebook's given wrapper, in float64), against the reference forward and backward passes."""
    for case in cases:
        x = case["x"]
        subject = f"BatchNormFunction for an input of shape {x.shape} with eps = {case['eps']:g}"
        try:
            result = batchnorm_function_gradients(x.copy(), case["gamma"].copy(), case["beta"].copy(),
                                                  case["dout"].copy(), case["eps"])
        except (RuntimeError, TypeError) as error:
            if type(error) not in (RuntimeError, TypeError):  # a subclass: not torch complaining about the Function
                raise
            _fail(subject, f"torch raised {type(error).__name__}: {str(error).splitlines()[0]}",
                  FUNCTION_HINT + " Convert NumPy results with torch.from_numpy.")
        entries = _given_entries(result, subject, "batchnorm_function_gradients", ("out",) + GRADIENTS)
        out, gradients = entries["out"], [entries[name] for name in GRADIENTS]
        _compare(subject, "out", out, case["expected"]["out"], case["mistakes"]["out"],
                 hint="forward computes gamma * x_hat + beta with the batch's mean and biased variance.")
        _compare_gradients(subject, gradients, case, hint=FUNCTION_HINT)
    _passed(f"BatchNormFunction's output and gradients match the reference for input shapes {_shapes(cases, 'x')}.")


def verify_gradient_invariants(backward, cases):
    """The invariances the closed form encodes: for every feature, dx sums to zero over the batch, and
    sum(dx * x_hat) is the fraction eps / (var + eps) of gamma / std * sum(dout * x_hat)."""
    for case in cases:
        dout, cache = case["dout"], case["cache"]
        subject = f"the invariances of dx for an input of shape {dout.shape}"
        dx = _as_array(_triple(backward(dout.copy(), _cache_copy(cache)), subject)[0], subject, "dx")
        if dx.shape != dout.shape:
            _fail(subject, f"dx has shape {dx.shape} but should have shape {dout.shape}.")
        scale = np.abs(dx).sum(axis=0) + 1e-300
        if np.abs(dx.sum(axis=0) / scale).max() > 1e-9:
            _fail(subject, "dx does not sum to zero over the batch. Adding a constant to a feature does not change "
                           "batch norm's output, so the gradient can have no component along the ones vector.",
                  "the path through the mean supplies the -sum(dout) term.")
        along = (dx * cache["x_hat"]).sum(axis=0)
        if not np.allclose(along, case["along_x_hat"], rtol=1e-6, atol=1e-12 * np.abs(dx).max()):
            _fail(subject, "sum(dx * x_hat) is not (nearly) zero. Stretching a feature about its mean does not change "
                           "batch norm's output, so the gradient has (up to eps) no component along x_hat.",
                  "the path through the variance supplies the -x_hat * sum(dout * x_hat) term.")
    _passed("dx sums to zero over the batch and is orthogonal to x_hat up to the eps term.")


check_batchnorm_backward = stored_check(EXERCISE, verify_batchnorm_backward)
check_batchnorm_backward_alt = stored_check(EXERCISE, verify_batchnorm_backward_alt)
check_spatial_batchnorm_backward = stored_check(EXERCISE, verify_spatial_batchnorm_backward)
check_numerical_gradient = stored_check(EXERCISE, verify_numerical_gradient)
check_relative_error = stored_check(EXERCISE, verify_relative_error)
check_autograd_function = stored_check(EXERCISE, verify_autograd_function)
