"""Cases for the checks of Exercise 3: the batch normalization backward pass, gradient checking, and
a custom ``torch.autograd.Function``, computed with the reference.

Each ``*_cases`` function builds inputs from its parameters and computes, with
:mod:`bncourse.reference`, the expected outputs and the outputs of known mistakes. The comparison
itself is the student kit's (:mod:`bnkit.ex03_batchnorm_backward`): the kit's notebook checks run
it on the cases built here with the default parameters (stored in the kit as data), the hidden
tests and the grader's trusted checks on other parameters. ``check_*`` does both steps.

Expected gradients come from :func:`bncourse.reference.batchnorm_backward` (tested against torch
autograd in float64). Inputs always have a non-trivial ``gamma`` and features with different means
and scales: with ``gamma = 1`` or standardised inputs, several mistakes cancel and go unnoticed.
"""

from __future__ import annotations

import numpy as np
from bnkit import ex03_batchnorm_backward as kit

from .. import reference
from ._core import Mistake, _affine, _features

GRADIENTS = ("dx", "dgamma", "dbeta")


def _case(rng, n, d, eps=reference.DEFAULT_EPS):
    """A train-mode forward pass on fresh inputs: x, gamma, beta, the upstream gradient and the cache."""
    x = _features(rng, n, d)
    gamma, beta = _affine(rng, d)
    dout = rng.normal(size=(n, d))
    _, cache = reference.batchnorm_forward(x, gamma, beta, {"mode": "train", "eps": float(eps)})
    return x, gamma, beta, dout, cache


# ---------------------------------------------------------------------------------------------
# Known mistakes in the backward pass, each written as the code a student would have written
# ---------------------------------------------------------------------------------------------

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
    ] + ([] if cache["eps"] == reference.DEFAULT_EPS else [
        Mistake(_staged(dout, {**cache, "std": np.sqrt(cache["var"] + reference.DEFAULT_EPS)}),
                f"dx is what std = sqrt(var + {reference.DEFAULT_EPS}) gives, but this cache was made with eps = "
                f"{cache['eps']}: use cache['std'] (or cache['eps']), not a fixed eps.")])


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


def _gradients(dout, cache):
    """The expected (dx, dgamma, dbeta) by name, and the known mistakes of each."""
    expected = dict(zip(GRADIENTS, reference.batchnorm_backward(dout, cache)))
    mistakes = {"dx": _dx_mistakes(dout, cache), "dgamma": _parameter_mistakes(dout, cache, "dgamma"),
                "dbeta": _parameter_mistakes(dout, cache, "dbeta")}
    return expected, mistakes


# ---------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------

def backward_cases(shapes=((4, 3), (16, 5), (50, 8)), seed=0, epsilons=(1e-5, 1e-2, 1e-3)):
    """(N, D) upstream gradients with Exercise 2's train-mode cache, and the reference gradients; case i's
    cache was made with eps = epsilons[i % len(epsilons)]."""
    rng = np.random.default_rng(seed)
    cases = []
    for i, (n, d) in enumerate(shapes):
        _, _, _, dout, cache = _case(rng, n, d, epsilons[i % len(epsilons)])
        expected, mistakes = _gradients(dout, cache)
        cases.append({"dout": dout, "cache": cache, "expected": expected, "mistakes": mistakes})
    return cases


def backward_alt_cases(shapes=((4, 3), (16, 5), (50, 8)), seed=1, epsilons=(1e-2, 1e-5, 1e-3)):
    """The closed form's cases: the same kind as :func:`backward_cases`, from another seed."""
    return backward_cases(shapes, seed, epsilons)


def spatial_backward_cases(shapes=((2, 3, 4, 5), (5, 2, 3, 3)), seed=2):
    """(N, C, H, W) upstream gradients with the cache of the spatial forward pass."""
    rng = np.random.default_rng(seed)
    cases = []
    for n, c, h, w in shapes:
        means, scales = rng.uniform(-5, 5, size=c), rng.uniform(0.5, 3.0, size=c)
        x = rng.normal(means.reshape(1, c, 1, 1), scales.reshape(1, c, 1, 1), size=(n, c, h, w))
        gamma, beta = _affine(rng, c)
        dout = rng.normal(size=x.shape)
        _, cache = reference.spatial_batchnorm_forward(x, gamma, beta, {"mode": "train"})
        expected = dict(zip(GRADIENTS, reference.spatial_batchnorm_backward(dout, cache)))
        rows_no_transpose = reference.batchnorm_backward(dout.reshape(-1, c), cache)[0].reshape(x.shape)
        mistakes = {"dx": [Mistake(rows_no_transpose,
                                   "dout was reshaped to (-1, C) (and dx back) without moving the channel axis last "
                                   "first. Use dout.transpose(0, 2, 3, 1).reshape(-1, C), and transpose dx back.")],
                    "dgamma": [], "dbeta": []}
        cases.append({"dout": dout, "cache": cache, "expected": expected, "mistakes": mistakes})
    return cases


def _norm_relative_error(a, b) -> float:
    total = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if total == 0 else float(np.linalg.norm(a - b) / total)


def _tanh_layer_difference(x, a, dout, h, centred):
    """Finite differences of sum(tanh(x @ a) * dout), written out here."""
    grad = np.zeros_like(x)
    for k in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[k] += h
        if centred:
            minus[k] -= h
        grad[k] = ((np.tanh(plus @ a) - np.tanh(minus @ a)) * dout).sum() / ((2 if centred else 1) * h)
    return grad


def numerical_gradient_cases(shapes=((3, 4, 2), (5, 3, 6)), seed=3, hs=(1e-5, 0.05)):
    """f(x) = tanh(x @ a) with its exact gradient ((1 - tanh^2) * dout) @ a.T, the centred difference
    with case i's step h = hs[i % len(hs)] (``expected``; with a large h it is visibly not the exact
    gradient, so a hard-coded h shows up), and the gradients that the usual mistakes give."""
    rng = np.random.default_rng(seed)
    cases = []
    for i, (n, d, m) in enumerate(shapes):
        h = float(hs[i % len(hs)])
        # a scaled so that x @ a has unit variance: no saturated tanh, whose rounding would blur the test
        x, a, dout = rng.normal(size=(n, d)), rng.normal(0, 1 / np.sqrt(d), size=(d, m)), rng.normal(size=(n, m))
        exact = ((1 - np.tanh(x @ a) ** 2) * dout) @ a.T
        centred = _tanh_layer_difference(x, a, dout, h, centred=True)
        mistakes = [
            Mistake(_tanh_layer_difference(x, a, dout, h, centred=False),
                    "this is the one-sided difference (f(x + h) - f(x)) / h, whose error is of order h. Use the "
                    "centred difference (f(x + h) - f(x - h)) / (2h), whose error is of order h**2."),
            Mistake(2 * centred, "the difference (f(x + h) - f(x - h)) is divided by h; the two points are 2h apart."),
            Mistake(-centred, "the sign is reversed: (f(x + h) - f(x - h)) / (2h), the value at x + h first."),
        ]
        if h > 1e-3:
            mistakes.append(Mistake(_tanh_layer_difference(x, a, dout, 1e-5, centred=True),
                                    f"this is the centred difference with h = 1e-5, but this call passed h = {h}: "
                                    "use the h argument, not a fixed step."))
        cases.append({"x": x, "a": a, "dout": dout, "h": h, "exact": exact, "mistakes": mistakes,
                      "expected": centred})
    return cases


def relative_error_cases(seed=4):
    """Pairs of arrays with the norm-based relative error of each, and what the usual mistakes give."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(5, 4))
    pairs = [
        ("two nearby arrays", base, base + 1e-3 * rng.normal(size=base.shape)),
        ("two unrelated vectors", rng.normal(size=7), rng.normal(size=7)),
        ("an array with entries near zero and a slightly different copy", np.array([1.0, -2.0, 1e-9, 3.0]),
         np.array([1.0, -2.0, 2e-9, 3.0])),
        ("an array and itself", base, base.copy()),
        ("zero and a non-zero array", np.zeros(3), np.array([1.0, 2.0, -2.0])),
        ("two zero arrays", np.zeros((2, 2)), np.zeros((2, 2))),
    ]
    cases = []
    for description, a, b in pairs:
        with np.errstate(all="ignore"):
            elementwise = float(np.nanmax(np.abs(a - b) / np.maximum(np.abs(a), np.abs(b)))) if a.any() else 0.0
        mistakes = [
            Mistake(elementwise, "that is the largest elementwise relative error. It blows up on entries near zero, "
                                 "which every gradient that sums to zero has; use norms of the whole arrays."),
            Mistake(float(np.linalg.norm(a - b)), "the difference is not divided by |a| + |b|."),
            Mistake(float(np.abs(a - b).max()) / max(np.abs(a).max() + np.abs(b).max(), 1e-300),
                    "the largest absolute values were used instead of the Euclidean norms."),
        ]
        cases.append({"description": description, "a": a, "b": b, "expected": _norm_relative_error(a, b),
                      "mistakes": mistakes})
    return cases


def autograd_function_cases(shapes=((6, 3), (20, 7)), seed=5, epsilons=(1e-5, 1e-2)):
    """Inputs of the Function (float64) and the eps it is applied with (case i's is
    epsilons[i % len(epsilons)]), with the reference output and gradients."""
    rng = np.random.default_rng(seed)
    cases = []
    for i, (n, d) in enumerate(shapes):
        eps = float(epsilons[i % len(epsilons)])
        x, gamma, beta, dout, cache = _case(rng, n, d, eps)
        expected, mistakes = _gradients(dout, cache)
        expected["out"], _ = reference.batchnorm_forward(x, gamma, beta, {"mode": "train", "eps": eps})
        mistakes["out"] = [] if eps == reference.DEFAULT_EPS else [
            Mistake(reference.batchnorm_forward(x, gamma, beta, {"mode": "train"})[0],
                    f"forward normalised with eps = {reference.DEFAULT_EPS}, but the Function was applied with "
                    f"eps = {eps}: use forward's eps argument, not a fixed value.")]
        cases.append({"x": x, "gamma": gamma, "beta": beta, "dout": dout, "eps": eps, "expected": expected,
                      "mistakes": mistakes})
    return cases


def gradient_invariants_cases(shapes=((8, 3), (30, 5)), seed=6):
    """The cache, and the value sum(dx * x_hat) must have per feature:
    eps / (var + eps) * gamma / std * sum(dout * x_hat)."""
    rng = np.random.default_rng(seed)
    cases = []
    for n, d in shapes:
        _, gamma, _, dout, cache = _case(rng, n, d)
        along_x_hat = cache["eps"] / cache["std"] ** 2 * gamma / cache["std"] * (dout * cache["x_hat"]).sum(axis=0)
        cases.append({"dout": dout, "cache": cache, "along_x_hat": along_x_hat})
    return cases


# ---------------------------------------------------------------------------------------------
# The checks: the kit's comparison on cases built here
# ---------------------------------------------------------------------------------------------

def check_batchnorm_backward(batchnorm_backward, **params):
    """(dx, dgamma, dbeta) of the staged backward pass, from Exercise 2's cache, against the reference."""
    kit.verify_batchnorm_backward(batchnorm_backward, backward_cases(**params))


def check_batchnorm_backward_alt(batchnorm_backward_alt, **params):
    """The closed-form backward pass, against the reference."""
    kit.verify_batchnorm_backward_alt(batchnorm_backward_alt, backward_alt_cases(**params))


def check_spatial_batchnorm_backward(spatial_batchnorm_backward, **params):
    """(dx, dgamma, dbeta) for an (N, C, H, W) input, from the cache of the spatial forward pass."""
    kit.verify_spatial_batchnorm_backward(spatial_batchnorm_backward, spatial_backward_cases(**params))


def check_numerical_gradient(numerical_gradient_of_tanh_layer, **params):
    """The student's ``numerical_gradient`` (through the notebook's given wrapper) on f(x) = tanh(x @ a)."""
    kit.verify_numerical_gradient(numerical_gradient_of_tanh_layer, numerical_gradient_cases(**params))


def check_relative_error(relative_error, **params):
    """``relative_error(a, b) = |a - b| / (|a| + |b|)`` with Euclidean (Frobenius) norms, 0 when both are 0."""
    kit.verify_relative_error(relative_error, relative_error_cases(**params))


def check_autograd_function(batchnorm_function_gradients, **params):
    """The output and the gradients of the student's ``torch.autograd.Function`` (through the notebook's
    given wrapper, in float64), against the reference forward and backward passes."""
    kit.verify_autograd_function(batchnorm_function_gradients, autograd_function_cases(**params))


def check_gradient_invariants(backward, **params):
    """The invariances the closed form encodes (hidden tests and the grader only)."""
    kit.verify_gradient_invariants(backward, gradient_invariants_cases(**params))


#: The visible checks of the notebook and their cases, stored in the kit (``bnkit/fixtures``).
VISIBLE = {
    "check_batchnorm_backward": backward_cases,
    "check_batchnorm_backward_alt": backward_alt_cases,
    "check_spatial_batchnorm_backward": spatial_backward_cases,
    "check_numerical_gradient": numerical_gradient_cases,
    "check_relative_error": relative_error_cases,
    "check_autograd_function": autograd_function_cases,
}
