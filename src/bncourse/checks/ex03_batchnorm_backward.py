"""Checks for Exercise 3: the batch normalization backward pass, gradient checking, and a custom
``torch.autograd.Function``.

Expected gradients come from :func:`bncourse.reference.batchnorm_backward` (tested against torch
autograd in float64). Inputs always have a non-trivial ``gamma`` and features with different means
and scales: with ``gamma = 1`` or standardised inputs, several mistakes cancel and go unnoticed.
"""

from __future__ import annotations

import numpy as np

from .. import reference
from ._core import Mistake, _affine, _as_array, _compare, _fail, _features, _passed


def _triple(result, subject, names=("dx", "dgamma", "dbeta")):
    if result is None:
        _fail(subject, "the function returned None.", f"did you forget `return {', '.join(names)}`?")
    if not isinstance(result, (tuple, list)) or len(result) != len(names):
        kind = f"{len(result)}-tuple" if isinstance(result, (tuple, list)) else type(result).__name__
        _fail(subject, f"the function must return {len(names)} values `({', '.join(names)})`, but it returned "
                       f"a {kind}.", f"end with `return {', '.join(names)}`.")
    return result


def _case(rng, n, d):
    """A train-mode forward pass on fresh inputs: x, gamma, beta, the upstream gradient and the cache."""
    x = _features(rng, n, d)
    gamma, beta = _affine(rng, d)
    dout = rng.normal(size=(n, d))
    _, cache = reference.batchnorm_forward(x, gamma, beta, {"mode": "train"})
    return x, gamma, beta, dout, cache


def _cache_copy(cache):
    return {key: (value.copy() if isinstance(value, np.ndarray) else value) for key, value in cache.items()}


def _staged(dout, cache, *, mean_path=True, var_path=True, var_count=None, with_gamma=True):
    """The staged backward pass, with one of the known mistakes switched on."""
    x, mean, std, gamma = cache["x"], cache["mean"], cache["std"], cache["gamma"]
    n = len(x)
    xc = x - mean
    dx_hat = dout * (gamma if with_gamma else 1.0)
    dxc = dx_hat / std
    if var_path:
        dvar = -(dx_hat * xc).sum(axis=0) / std ** 3 / 2
        dxc = dxc + 2 * xc * dvar / (var_count or n)
    dx = dxc - dxc.sum(axis=0) / n if mean_path else dxc
    return dx


def _dx_mistakes(dout, cache):
    n = len(dout)
    return [
        Mistake(_staged(dout, cache, mean_path=False, var_path=False),
                "the batch mean and variance were treated as constants: dx = gamma / std * dout. Both depend on x, "
                "and their paths must be added."),
        Mistake(_staged(dout, cache, mean_path=False),
                "the path through the mean is missing: x also reaches the output through mean = sum(x) / N, which "
                "adds -sum(dxc) / N to every row of dx."),
        Mistake(_staged(dout, cache, var_path=False),
                "the path through the variance is missing: x_c also reaches the output through var and std, which "
                "adds the term with sum(dout * x_hat)."),
        Mistake(_staged(dout, cache, var_count=n - 1),
                f"the variance's derivative used N - 1 = {n - 1}. The forward pass normalises with the biased "
                f"variance (divide by N), so its backward pass divides by N = {n} too."),
        Mistake(_staged(dout, cache, with_gamma=False),
                "gamma is missing from dx: d x_hat = dout * gamma."),
    ]


def _parameter_mistakes(dout, cache, which):
    x, x_hat = cache["x"], cache["x_hat"]
    if which == "dgamma":
        return [Mistake(dout.sum(axis=0), "dgamma and dbeta are swapped: dgamma = sum(dout * x_hat), "
                                          "dbeta = sum(dout), both over the batch (axis 0)."),
                Mistake((dout * x).sum(axis=0), "dgamma used x instead of x_hat: out = gamma * x_hat + beta, so "
                                                "dgamma = sum(dout * x_hat) over the batch."),
                Mistake((dout * x_hat).mean(axis=0), "dgamma is a mean over the batch; it is a sum: every example "
                                                     "contributes to the loss.")]
    return [Mistake((dout * x_hat).sum(axis=0), "dgamma and dbeta are swapped: dbeta = sum(dout) over the batch."),
            Mistake(dout.mean(axis=0), "dbeta is a mean over the batch; it is a sum: dbeta = sum(dout, axis=0).")]


def _check_gradients(subject, result, dout, cache, names=("dx", "dgamma", "dbeta"), hint=None):
    got = _triple(result, subject, names)
    expected = reference.batchnorm_backward(dout, cache)
    mistakes = [_dx_mistakes(dout, cache), _parameter_mistakes(dout, cache, "dgamma"),
                _parameter_mistakes(dout, cache, "dbeta")]
    for name, value, want, known in zip(names, got, expected, mistakes):
        _compare(subject, name, value, want, known, hint=hint)


def _check_backward(backward, function_name, shapes, seed):
    rng = np.random.default_rng(seed)
    for n, d in shapes:
        x, gamma, beta, dout, cache = _case(rng, n, d)
        subject = f"{function_name} for an input of shape {(n, d)}"
        given_dout, given_cache = dout.copy(), _cache_copy(cache)
        result = backward(given_dout, given_cache)
        # Before the gradients: an input changed in place is the likeliest reason for wrong ones.
        if not np.array_equal(given_dout, dout):
            _fail(subject, "dout was modified by the call.", "write `g = dout * gamma`, not `dout *= gamma`.")
        for key, value in cache.items():
            if not np.array_equal(np.asarray(given_cache.get(key)), np.asarray(value)):
                _fail(subject, f"cache['{key}'] was modified by the call.",
                      "the cache belongs to the forward pass; compute new arrays instead of changing its entries.")
        _check_gradients(subject, result, dout, cache)


def check_batchnorm_backward(batchnorm_backward, shapes=((4, 3), (16, 5), (50, 8)), seed=0):
    """(dx, dgamma, dbeta) of the staged backward pass, from Exercise 2's cache, against the reference."""
    _check_backward(batchnorm_backward, "batchnorm_backward", shapes, seed)
    _passed(f"batchnorm_backward matches the reference gradients for input shapes {list(shapes)}.")


def check_batchnorm_backward_alt(batchnorm_backward_alt, shapes=((4, 3), (16, 5), (50, 8)), seed=1):
    """The closed-form backward pass, against the reference."""
    _check_backward(batchnorm_backward_alt, "batchnorm_backward_alt", shapes, seed)
    _passed(f"batchnorm_backward_alt matches the reference gradients for input shapes {list(shapes)}.")


def check_spatial_batchnorm_backward(spatial_batchnorm_backward, shapes=((2, 3, 4, 5), (5, 2, 3, 3)), seed=2):
    """(dx, dgamma, dbeta) for an (N, C, H, W) input, from the cache of the spatial forward pass."""
    rng = np.random.default_rng(seed)
    for n, c, h, w in shapes:
        means, scales = rng.uniform(-5, 5, size=c), rng.uniform(0.5, 3.0, size=c)
        x = rng.normal(means.reshape(1, c, 1, 1), scales.reshape(1, c, 1, 1), size=(n, c, h, w))
        gamma, beta = _affine(rng, c)
        dout = rng.normal(size=x.shape)
        _, cache = reference.spatial_batchnorm_forward(x, gamma, beta, {"mode": "train"})
        subject = f"spatial_batchnorm_backward for an input of shape {(n, c, h, w)}"
        got = _triple(spatial_batchnorm_backward(dout.copy(), _cache_copy(cache)), subject)
        expected = reference.spatial_batchnorm_backward(dout, cache)
        rows_no_transpose = reference.batchnorm_backward(dout.reshape(-1, c), cache)[0].reshape(x.shape)
        _compare(subject, "dx", got[0], expected[0], [Mistake(
            rows_no_transpose, "dout was reshaped to (-1, C) (and dx back) without moving the channel axis last "
                               "first. Use dout.transpose(0, 2, 3, 1).reshape(-1, C), and transpose dx back.")],
                 hint="spatial_batchnorm_backward reuses batchnorm_backward: if that fails its checks, fix it first.")
        for name, value, want in zip(("dgamma", "dbeta"), got[1:], expected[1:]):
            _compare(subject, name, value, want)
    _passed(f"spatial_batchnorm_backward matches the reference for input shapes {list(shapes)}.")


# ---------------------------------------------------------------------------------------------
# Gradient checking
# ---------------------------------------------------------------------------------------------

def _norm_relative_error(a, b) -> float:
    total = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if total == 0 else float(np.linalg.norm(a - b) / total)


def _tanh_layer_difference(x, a, dout, h, centred):
    """Finite differences of sum(tanh(x @ a) * dout), written out in the check itself."""
    grad = np.zeros_like(x)
    for k in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[k] += h
        if centred:
            minus[k] -= h
        grad[k] = ((np.tanh(plus @ a) - np.tanh(minus @ a)) * dout).sum() / ((2 if centred else 1) * h)
    return grad


def check_numerical_gradient(numerical_gradient_of_tanh_layer, shapes=((3, 4, 2), (5, 3, 6)), seed=3, h=1e-5):
    """The student's ``numerical_gradient`` (through the notebook's wrapper) on f(x) = tanh(x @ a),
    compared with the exact gradient ((1 - tanh^2) * dout) @ a.T."""
    rng = np.random.default_rng(seed)
    for n, d, m in shapes:
        # a scaled so that x @ a has unit variance: no saturated tanh, whose rounding would blur the test
        x, a, dout = rng.normal(size=(n, d)), rng.normal(0, 1 / np.sqrt(d), size=(d, m)), rng.normal(size=(n, m))
        subject = f"numerical_gradient on f(x) = tanh(x @ a), x of shape {(n, d)}, h={h}"
        given = x.copy()
        got = _as_array(numerical_gradient_of_tanh_layer(given, a.copy(), dout.copy(), h), subject, "the gradient")
        if got.shape != x.shape:
            _fail(subject, f"the gradient has shape {got.shape} but should have the shape of x, {x.shape}.")
        if not np.allclose(given, x, rtol=0, atol=1e-12):
            _fail(subject, "x is not the same after the call.",
                  "after evaluating f at x[k] + h and x[k] - h, put the original value back.")
        exact = ((1 - np.tanh(x @ a) ** 2) * dout) @ a.T
        error = _norm_relative_error(got, exact)
        if error < 1e-7:
            continue
        known = [
            (_tanh_layer_difference(x, a, dout, h, centred=False),
             "this is the one-sided difference (f(x + h) - f(x)) / h, whose error is of order h. Use the centred "
             "difference (f(x + h) - f(x - h)) / (2h), whose error is of order h**2."),
            (2 * exact, "the difference (f(x + h) - f(x - h)) is divided by h; the two points are 2h apart."),
            (-exact, "the sign is reversed: (f(x + h) - f(x - h)) / (2h), the value at x + h first."),
        ]
        for value, text in known:
            if _norm_relative_error(got, value) < 1e-6:
                _fail(subject, f"the relative error to the exact gradient is {error:.1e}. It matches a common "
                               f"mistake: {text}")
        _fail(subject, f"the relative error to the exact gradient is {error:.1e}; a centred difference in float64 "
                       f"gives about 1e-10.")
    _passed("numerical_gradient agrees with the exact gradient of tanh(x @ a) to better than 1e-7.")


def check_relative_error(relative_error, seed=4):
    """``relative_error(a, b) = |a - b| / (|a| + |b|)`` with Euclidean (Frobenius) norms, 0 when both are 0."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(5, 4))
    cases = [
        ("two nearby arrays", base, base + 1e-3 * rng.normal(size=base.shape)),
        ("two unrelated vectors", rng.normal(size=7), rng.normal(size=7)),
        ("an array with entries near zero and a slightly different copy", np.array([1.0, -2.0, 1e-9, 3.0]),
         np.array([1.0, -2.0, 2e-9, 3.0])),
        ("an array and itself", base, base.copy()),
        ("zero and a non-zero array", np.zeros(3), np.array([1.0, 2.0, -2.0])),
        ("two zero arrays", np.zeros((2, 2)), np.zeros((2, 2))),
    ]
    for description, a, b in cases:
        subject = f"relative_error on {description}"
        value = relative_error(a.copy(), b.copy())
        if value is None:
            _fail(subject, "the function returned None.", "did you forget a `return` statement?")
        try:
            got = float(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError):
            _fail(subject, f"return one number, not a {type(value).__name__}.")
        expected = _norm_relative_error(a, b)
        if not np.isfinite(got):
            _fail(subject, f"the result is {got}.", "when |a| + |b| is 0, both arrays are 0: return 0.")
        if abs(got - expected) <= 1e-12 + 1e-9 * expected:
            continue
        with np.errstate(all="ignore"):
            elementwise = float(np.nanmax(np.abs(a - b) / np.maximum(np.abs(a), np.abs(b)))) if a.any() else 0.0
        known = [
            (elementwise, "that is the largest elementwise relative error. It blows up on entries near zero, which "
                          "every gradient that sums to zero has; use norms of the whole arrays."),
            (float(np.linalg.norm(a - b)), "the difference is not divided by |a| + |b|."),
            (float(np.abs(a - b).max()) / max(np.abs(a).max() + np.abs(b).max(), 1e-300),
             "the largest absolute values were used instead of the Euclidean norms."),
        ]
        for value_if_made, text in known:
            if abs(got - value_if_made) <= 1e-9 * max(abs(value_if_made), 1e-12):
                _fail(subject, f"got {got:.6g}, expected {expected:.6g}. It matches a common mistake: {text}")
        _fail(subject, f"got {got:.6g}, expected |a - b| / (|a| + |b|) = {expected:.6g}.")
    _passed("relative_error is the norm-based relative error, and 0 for two zero arrays.")


# ---------------------------------------------------------------------------------------------
# The custom autograd Function
# ---------------------------------------------------------------------------------------------

def check_autograd_function(batchnorm_function_gradients, shapes=((6, 3), (20, 7)), seed=5):
    """The output and the gradients that the student's ``torch.autograd.Function`` produces (through the
    notebook's wrapper, in float64), against the reference forward and backward passes."""
    rng = np.random.default_rng(seed)
    hint = "the Function's backward must return one gradient per input of forward: (dx, dgamma, dbeta, None)."
    for n, d in shapes:
        x, gamma, beta, dout, cache = _case(rng, n, d)
        subject = f"BatchNormFunction for an input of shape {(n, d)}"
        try:
            result = batchnorm_function_gradients(x.copy(), gamma.copy(), beta.copy(), dout.copy())
        except (RuntimeError, TypeError) as error:
            if type(error) not in (RuntimeError, TypeError):  # a subclass: not torch complaining about the Function
                raise
            _fail(subject, f"torch raised {type(error).__name__}: {str(error).splitlines()[0]}",
                  hint + " Convert NumPy results with torch.from_numpy.")
        out, *gradients = _triple(result, subject, ("out", "dx", "dgamma", "dbeta"))
        expected_out, _ = reference.batchnorm_forward(x, gamma, beta, {"mode": "train"})
        _compare(subject, "out", out, expected_out,
                 hint="forward computes gamma * x_hat + beta with the batch's mean and biased variance.")
        _check_gradients(subject, tuple(gradients), dout, cache, hint=hint)
    _passed(f"BatchNormFunction's output and gradients match the reference for input shapes {list(shapes)}.")


def check_gradient_invariants(backward, shapes=((8, 3), (30, 5)), seed=6):
    """The invariances the closed form encodes: for every feature, dx sums to zero over the batch, and
    sum(dx * x_hat) is the fraction eps / (var + eps) of gamma / std * sum(dout * x_hat)."""
    rng = np.random.default_rng(seed)
    for n, d in shapes:
        x, gamma, beta, dout, cache = _case(rng, n, d)
        subject = f"the invariances of dx for an input of shape {(n, d)}"
        dx = _as_array(_triple(backward(dout.copy(), _cache_copy(cache)), subject)[0], subject, "dx")
        if dx.shape != x.shape:
            _fail(subject, f"dx has shape {dx.shape} but should have shape {x.shape}.")
        scale = np.abs(dx).sum(axis=0) + 1e-300
        if np.abs(dx.sum(axis=0) / scale).max() > 1e-9:
            _fail(subject, "dx does not sum to zero over the batch. Adding a constant to a feature does not change "
                           "batch norm's output, so the gradient can have no component along the ones vector.",
                  "the path through the mean supplies the -sum(dout) term.")
        along = (dx * cache["x_hat"]).sum(axis=0)
        predicted = cache["eps"] / cache["std"] ** 2 * gamma / cache["std"] * (dout * cache["x_hat"]).sum(axis=0)
        if not np.allclose(along, predicted, rtol=1e-6, atol=1e-12 * np.abs(dx).max()):
            _fail(subject, "sum(dx * x_hat) is not (nearly) zero. Stretching a feature about its mean does not change "
                           "batch norm's output, so the gradient has (up to eps) no component along x_hat.",
                  "the path through the variance supplies the -x_hat * sum(dout * x_hat) term.")
    _passed("dx sums to zero over the batch and is orthogonal to x_hat up to the eps term.")
