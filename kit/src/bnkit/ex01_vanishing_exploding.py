"""Checks of Exercise 1: signals in a deep MLP (activations, their statistics, backprop by hand,
initialization scales).

Each ``verify_*`` function runs the student's function on the given cases and compares; each
``check_*`` function is what the notebook calls: the same comparison on the stored cases. The
grader calls ``verify_*`` with cases it draws in secret. The initializers are random: their cases
hold the target standard deviation and the wrong scales, and the check measures the student's.
"""

from __future__ import annotations

import numpy as np

from ._core import _as_array, _compare, _fail, _passed
from ._fixtures import stored_check

EXERCISE = "ex01_vanishing_exploding"


def _copies(arrays):
    return [np.array(a, copy=True) for a in arrays]


# ---------------------------------------------------------------------------------------------
# Part 1: activations and their derivatives
# ---------------------------------------------------------------------------------------------

def verify_activations(activation, activation_derivative, cases):
    """``activation(z, name)`` and ``activation_derivative(z, name)`` for sigmoid, tanh and ReLU,
    elementwise on an array, without changing it."""
    for case in cases:
        name, z = case["name"], case["z"]
        given = z.copy()
        subject = f"activation(z, {name!r})"
        with np.errstate(all="ignore"):
            _compare(subject, "the output", activation(given, name), case["output"], case["output_mistakes"])
        if not np.array_equal(given, z):
            _fail(subject, "the input array z was modified by the call.",
                  "`z[z < 0] = 0` changes the caller's array; use np.maximum(z, 0) or work on a copy.")
        subject = f"activation_derivative(z, {name!r})"
        with np.errstate(all="ignore"):
            _compare(subject, "the derivative", activation_derivative(given, name), case["derivative"],
                     case["derivative_mistakes"])
        if not np.array_equal(given, z):
            _fail(subject, "the input array z was modified by the call.",
                  "in-place operations such as `z *= -1` or `np.maximum(z, 0, out=z)` change the caller's array; compute a new one.")
    _passed("sigmoid, tanh and ReLU and their derivatives are right, elementwise, and leave z unchanged.")


# ---------------------------------------------------------------------------------------------
# Part 2: the forward pass and its per-layer statistics
# ---------------------------------------------------------------------------------------------

def verify_forward_stats(forward_with_stats, cases):
    """``forward_with_stats(x, weights, biases, name)`` returns the last layer's output and an
    (L, 2) array of each layer's output mean and standard deviation, for every activation."""
    for case in cases["cases"]:
        name = case["name"]
        subject = f"forward_with_stats with {name}, layer sizes {case['sizes']}, batch of {case['n']}"
        result = forward_with_stats(case["x"].copy(), _copies(case["weights"]), _copies(case["biases"]), name)
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            _fail(subject, f"the function must return a pair `(out, stats)`, but it returned "
                           f"a {type(result).__name__}.", "end with `return h, stats`.")
        out, stats = result
        _compare(subject, "out", out, case["out"], case["out_mistakes"])
        _compare(subject, "stats", stats, case["stats"], case["stats_mistakes"],
                 hint="stats[l] = (mean of h, standard deviation of h) for the output h of layer l + 1.")
    _passed(f"the forward pass and its per-layer (mean, std) match the reference for sigmoid, tanh and ReLU, "
            f"layer sizes {cases['sizes']}.")


# ---------------------------------------------------------------------------------------------
# Part 3: backprop by hand, weight-gradient norms
# ---------------------------------------------------------------------------------------------

def verify_weight_gradient_norms(weight_gradient_norms, cases):
    """``weight_gradient_norms(x, y, weights, biases, name)``: the Frobenius norm of the gradient of
    0.5 * mean_n ||h_L - y||^2 with respect to each W_l, compared with torch autograd."""
    for case in cases:
        name = case["name"]
        subject = f"weight_gradient_norms with {name}, layer sizes {case['sizes']}, batch of {case['n']}"
        got = weight_gradient_norms(case["x"].copy(), case["y"].copy(), _copies(case["weights"]),
                                    _copies(case["biases"]), name)
        _compare(subject, "the norms", got, case["expected"], case["mistakes"],
                 hint="entry l is the norm of d loss / d W_(l+1), where loss = 0.5 * mean over examples of "
                      "||h_L - y||^2; torch autograd computed the expected values.")
    _passed("the hand-written backward pass gives the same weight-gradient norms as torch autograd for "
            "sigmoid, tanh and ReLU.")


# ---------------------------------------------------------------------------------------------
# Part 4: initialization
# ---------------------------------------------------------------------------------------------

# A measured standard deviation within 3% of the target passes. The sample standard deviation of
# n weights has a relative error of about 1 / sqrt(2n) for normal weights: 0.5% for the 22,500 or
# more weights the checks draw, so 3% is six standard errors (a false alarm is practically
# impossible), and every wrong scale the cases list is at least 6% away for the fans the checks use.
STD_TOLERANCE = 0.03
# A wrong scale is named only when the measurement is within three standard errors of it.
MISTAKE_TOLERANCE = 0.015


def _verify_init(init, function_name, scheme, cases):
    seed = cases["seed"]
    for case in cases["cases"]:
        fan_in, fan_out = case["fan_in"], case["fan_out"]
        subject = f"{function_name}({fan_in}, {fan_out}, seed={seed})"
        w = _as_array(init(fan_in, fan_out, seed), subject, "the result")
        if w.shape != (fan_in, fan_out):
            hint = ("a layer computes h @ W, so W has one row per input and one column per output."
                    if w.shape == (fan_out, fan_in) else None)
            _fail(subject, f"the weights have shape {w.shape} but should have shape (fan_in, fan_out) = "
                           f"{(fan_in, fan_out)}.", hint)
        if not np.isfinite(w).all():
            _fail(subject, "the weights contain NaN or infinite values.")
        again = _as_array(init(fan_in, fan_out, seed), subject, "the result")
        other = _as_array(init(fan_in, fan_out, seed + 1), subject, "the result")
        if not np.array_equal(w, again):
            _fail(subject, "two calls with the same seed gave different weights.",
                  "draw from np.random.default_rng(seed), not from np.random's global state.")
        if np.array_equal(w, other):
            _fail(subject, "calls with different seeds gave the same weights.",
                  "create the generator from the seed argument: rng = np.random.default_rng(seed).")
        target = case["std"]
        mean, std = float(w.mean()), float(w.std())
        if abs(mean) > 6 * target / np.sqrt(w.size):
            _fail(subject, f"the weights' mean is {mean:.4g}; they should be centred at 0.",
                  "np.random.uniform(0, a) is not centred: use U(-a, a) or a normal distribution with mean 0.")
        if abs(std / target - 1) <= STD_TOLERANCE:
            continue
        # Name a mistake only when the measured scale is within the sampling noise of it; some wrong
        # scales coincide for some fans (sqrt(2 / fan_out) = sqrt(6 / fan_in) when fan_in = 3 fan_out),
        # and then every one that fits is named.
        matches = [wrong.explanation for wrong in case["wrong_scales"]
                   if abs(std / wrong.expected_if_made - 1) <= MISTAKE_TOLERANCE]
        if matches:
            _fail(subject, f"the weights' standard deviation is {std:.4g}, but the {scheme} scale for these fans is "
                           f"{target:.4g}. It matches a common mistake: " + " Or: ".join(matches))
        _fail(subject, f"the weights' standard deviation is {std:.4g}, but the {scheme} scale for these fans is "
                       f"{target:.4g} (off by a factor {std / target:.3g}).")


def verify_xavier_init(xavier_init, cases):
    """``xavier_init(fan_in, fan_out, seed)``: a (fan_in, fan_out) array with mean 0 and
    variance 2 / (fan_in + fan_out), reproducible from the seed."""
    _verify_init(xavier_init, "xavier_init", "Xavier", cases)
    _passed(f"xavier_init has shape (fan_in, fan_out), mean 0 and variance 2 / (fan_in + fan_out) for fans "
            f"{cases['fans']}, and follows its seed.")


def verify_he_init(he_init, cases):
    """``he_init(fan_in, fan_out, seed)``: a (fan_in, fan_out) array with mean 0 and variance
    2 / fan_in, reproducible from the seed."""
    _verify_init(he_init, "he_init", "He", cases)
    _passed(f"he_init has shape (fan_in, fan_out), mean 0 and variance 2 / fan_in for fans {cases['fans']}, and "
            f"follows its seed.")


# ---------------------------------------------------------------------------------------------
# Part 5: two numbers
# ---------------------------------------------------------------------------------------------

def _number(value, subject) -> float:
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        _fail(subject, f"return a single number, not a {type(value).__name__}.")
    return float(value)


def _check_number(subject, got, case, tolerance=1e-6):
    """Fail unless ``got`` is the expected number. The message names a known wrong value when it is
    one and otherwise points to the reasoning (the case's hint), without giving the number away."""
    got = _number(got, subject)
    if abs(got - case["expected"]) <= tolerance:
        return
    for mistake in case["mistakes"]:
        if abs(got - mistake.expected_if_made) <= tolerance:
            _fail(subject, f"{got:.6g} is not the answer. {mistake.explanation}")
    _fail(subject, f"{got:.6g} is not the answer (accepted within {tolerance:g}).", case["hint"])


def verify_largest_sigmoid_derivative(largest_sigmoid_derivative, case):
    """The maximum over z of sigma'(z), compared with the largest slope torch autograd finds on a fine grid."""
    _check_number("largest_sigmoid_derivative()", largest_sigmoid_derivative(), case)
    _passed("largest_sigmoid_derivative() is right: each sigmoid layer multiplies the backward signal by at most "
            "that much, times its weights.")


def verify_relu_gain(relu_gain, case):
    """The gain g for which weights of standard deviation g / sqrt(fan_in) keep a ReLU network's
    second moment constant: torch.nn.init.calculate_gain('relu')."""
    _check_number("relu_gain()", relu_gain(), case)
    _passed("relu_gain() is right: it is the gain torch.nn.init uses for ReLU.")


check_activations = stored_check(EXERCISE, verify_activations)
check_forward_stats = stored_check(EXERCISE, verify_forward_stats)
check_weight_gradient_norms = stored_check(EXERCISE, verify_weight_gradient_norms)
check_xavier_init = stored_check(EXERCISE, verify_xavier_init)
check_he_init = stored_check(EXERCISE, verify_he_init)
check_largest_sigmoid_derivative = stored_check(EXERCISE, verify_largest_sigmoid_derivative)
check_relu_gain = stored_check(EXERCISE, verify_relu_gain)
