"""Checks for Exercise 1: signals in a deep MLP (activations, their statistics, backprop by hand,
initialization scales).

Expected values come from the reference implementations (``bncourse.reference``, themselves tested
against torch) and, for the gradients and the two numeric questions, from torch itself: autograd
for the weight gradients and the sigmoid's slope, ``torch.nn.init.calculate_gain`` for the ReLU gain.
torch is imported inside the checks that need it, so that importing the checks stays fast.
"""

from __future__ import annotations

import numpy as np

from .. import reference
from ._core import Mistake, _as_array, _compare, _fail, _passed

NAMES = ("sigmoid", "tanh", "relu")


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------

def _pre_activations(rng, shape=(4, 6)) -> np.ndarray:
    """Values on both sides of 0, some far out where sigmoid and tanh saturate; never exactly 0
    (where the ReLU's derivative is a matter of convention)."""
    z = rng.normal(0.0, 3.0, size=shape)
    z.flat[:2] = (-12.5, 11.0)
    z[z == 0] = 0.5
    return z


def _network(rng, sizes, n):
    """Inputs, targets, weights (fan_in, fan_out) and biases of an MLP with the given layer sizes.

    The scales are near Xavier's, so that no activation is saturated throughout and every mistake
    changes the numbers; the targets are random, so the gradients are not zero."""
    weights = [rng.normal(0.0, rng.uniform(0.8, 1.5) * reference.xavier_std(a, b), size=(a, b))
               for a, b in zip(sizes[:-1], sizes[1:])]
    biases = [rng.normal(0.0, 0.2, size=b) for b in sizes[1:]]
    x = rng.normal(0.0, 1.0, size=(n, sizes[0]))
    y = rng.uniform(-1.0, 1.0, size=(n, sizes[-1]))
    return x, y, weights, biases


def _copies(arrays):
    return [a.copy() for a in arrays]


# ---------------------------------------------------------------------------------------------
# Part 1: activations and their derivatives
# ---------------------------------------------------------------------------------------------

def _derivative_mistakes(z, name):
    s, t = reference.MLP_ACTIVATIONS["sigmoid"][0](z), np.tanh(z)
    wrong = {
        "sigmoid": [
            (z * (1 - z), "sigma'(z) was computed as z * (1 - z). The formula sigma * (1 - sigma) needs the "
                          "sigmoid's *output*: s = sigmoid(z), then s * (1 - s)."),
            (s, "that is sigmoid(z) itself, not its derivative sigmoid(z) * (1 - sigmoid(z))."),
        ],
        "tanh": [
            (1 - z ** 2, "tanh'(z) was computed as 1 - z**2. It is 1 - tanh(z)**2: square the *output*."),
            (1 - t, "the square is missing: tanh'(z) = 1 - tanh(z)**2."),
        ],
        "relu": [
            (np.maximum(z, 0), "that is relu(z) itself. Its derivative is 1 where z > 0 and 0 elsewhere."),
        ],
    }
    return [Mistake(value, text) for value, text in wrong[name]]


def check_activations(activation, activation_derivative, seed=0):
    """``activation(z, name)`` and ``activation_derivative(z, name)`` for sigmoid, tanh and ReLU,
    elementwise on an array, without changing it."""
    rng = np.random.default_rng(seed)
    for name in NAMES:
        f, df = reference.MLP_ACTIVATIONS[name]
        z = _pre_activations(rng)
        given = z.copy()
        subject = f"activation(z, {name!r})"
        with np.errstate(all="ignore"):
            _compare(subject, "the output", activation(given, name), f(z), [
                Mistake(1 / (1 + np.exp(z)), "the sign in the exponent is wrong: sigmoid(z) = 1 / (1 + exp(-z))."),
            ])
        if not np.array_equal(given, z):
            _fail(subject, "the input array z was modified by the call.",
                  "`z[z < 0] = 0` changes the caller's array; use np.maximum(z, 0) or work on a copy.")
        subject = f"activation_derivative(z, {name!r})"
        with np.errstate(all="ignore"):
            _compare(subject, "the derivative", activation_derivative(given, name), df(z),
                     _derivative_mistakes(z, name))
        if not np.array_equal(given, z):
            _fail(subject, "the input array z was modified by the call.")
    _passed("sigmoid, tanh and ReLU and their derivatives are right, elementwise, and leave z unchanged.")


# ---------------------------------------------------------------------------------------------
# Part 2: the forward pass and its per-layer statistics
# ---------------------------------------------------------------------------------------------

def _forward_variants(x, weights, biases, name):
    """Per-layer pre-activations z_l and outputs h_l, computed in float64."""
    f, _ = reference.MLP_ACTIVATIONS[name]
    zs, hs, h = [], [], x
    for w, b in zip(weights, biases):
        zs.append(h @ w + b)
        h = f(zs[-1])
        hs.append(h)
    return zs, hs


def _stats_mistakes(zs, hs, name):
    def table(values, statistic):
        return np.array([(v.mean(), statistic(v)) for v in values])

    last_linear = hs[:-1] + [zs[-1]]
    return [
        Mistake(table(hs, np.var), "the second column holds the variance. It should hold the standard deviation "
                                   "(np.std, the square root of the variance)."),
        Mistake(table(zs, np.std), "these are the statistics of the pre-activations z = h @ W + b. Record them "
                                   "after the activation: h = f(z)."),
        Mistake(table(hs, lambda v: v.std(ddof=1)), "the standard deviation is the unbiased one (ddof=1, the "
                                                    "default of torch's .std()). Use np.std (ddof=0) over all "
                                                    "examples and units."),
        Mistake(table(hs, lambda v: v.std(axis=0).mean()), "the second column is the average over units of each "
                                                           "unit's standard deviation over the batch. Take one "
                                                           "standard deviation over all examples and units together: "
                                                           "h.std()."),
        Mistake(table(hs, np.std)[::-1], "the rows are in reverse order: row l must describe layer l + 1, from the "
                                         "first layer to the last."),
        Mistake(table(last_linear, np.std), "the last layer's activation is missing: every layer, the last one "
                                            "included, computes h = f(h @ W + b)."),
    ]


def check_forward_stats(forward_with_stats, sizes=((5, 8, 8, 6, 3),), n=16, seed=1):
    """``forward_with_stats(x, weights, biases, name)`` returns the last layer's output and an
    (L, 2) array of each layer's output mean and standard deviation, for every activation."""
    rng = np.random.default_rng(seed)
    for layer_sizes in sizes:
        for name in NAMES:
            x, _, weights, biases = _network(rng, layer_sizes, n)
            subject = f"forward_with_stats with {name}, layer sizes {list(layer_sizes)}, batch of {n}"
            result = forward_with_stats(x.copy(), _copies(weights), _copies(biases), name)
            if not isinstance(result, (tuple, list)) or len(result) != 2:
                _fail(subject, f"the function must return a pair `(out, stats)`, but it returned "
                               f"a {type(result).__name__}.", "end with `return h, stats`.")
            out, stats = result
            zs, hs = _forward_variants(x, weights, biases, name)
            expected_out, expected_stats = reference.mlp_forward_stats(x, weights, biases, name)
            _compare(subject, "out", out, expected_out, [
                Mistake(zs[-1], "out is the last layer's pre-activation: apply the activation after the last layer "
                                "too."),
            ])
            _compare(subject, "stats", stats, np.array(expected_stats), _stats_mistakes(zs, hs, name),
                     hint="stats[l] = (mean of h, standard deviation of h) for the output h of layer l + 1.")
    _passed(f"the forward pass and its per-layer (mean, std) match the reference for sigmoid, tanh and ReLU, "
            f"layer sizes {[list(s) for s in sizes]}.")


# ---------------------------------------------------------------------------------------------
# Part 3: backprop by hand, weight-gradient norms
# ---------------------------------------------------------------------------------------------

def _autograd_norms(x, y, weights, biases, name) -> np.ndarray:
    """The Frobenius norm of d loss / d W_l for every layer, by torch autograd in float64."""
    import torch

    functions = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}
    ws = [torch.tensor(w, requires_grad=True) for w in weights]
    h = torch.tensor(x)
    for w, b in zip(ws, biases):
        h = functions[name](h @ w + torch.tensor(b))
    loss = 0.5 * ((h - torch.tensor(y)) ** 2).sum(dim=1).mean()
    loss.backward()
    return np.array([float(w.grad.norm()) for w in ws])


def _backprop_mistakes(x, y, weights, biases, name):
    """Each mistake written as the hand-written backward pass a student would have written."""
    _, df = reference.MLP_ACTIVATIONS[name]

    def norms(*, batch_mean=True, slope_at_output=False, no_slope=False, mean_per_layer=False):
        zs, hs = _forward_variants(x, weights, biases, name)
        inputs = [x] + hs[:-1]
        grad_h = (hs[-1] - y) / (len(x) if batch_mean else 1)
        result = []
        for w, h_in, z, h in zip(reversed(weights), reversed(inputs), reversed(zs), reversed(hs)):
            slope = 1.0 if no_slope else (df(h) if slope_at_output else df(z))
            grad_z = grad_h * slope
            grad_w = h_in.T @ grad_z / (len(x) if mean_per_layer else 1)
            result.append(np.linalg.norm(grad_w))
            grad_h = grad_z @ w.T
        return np.array(result[::-1])

    right = norms()
    return [
        Mistake(right[::-1], "the norms are listed from the last layer to the first. Backprop visits the layers "
                             "backwards; reverse the list so that entry l belongs to W_(l+1)."),
        Mistake(norms(batch_mean=False), "the gradients are N times too large: the loss averages over the N "
                                         "examples, so d loss / d h_L = (h_L - y) / N."),
        Mistake(norms(mean_per_layer=True), "the gradients are divided by N twice: once in d loss / d h_L and again "
                                            "in d loss / d W. Divide once."),
        Mistake(norms(slope_at_output=True), "the activation's derivative was evaluated at the layer's output h. "
                                             "Evaluate f' at the pre-activation z = h_prev @ W + b."),
        Mistake(norms(no_slope=True), "the activation's derivative is missing: d loss / d z = d loss / d h * f'(z)."),
    ]


def check_weight_gradient_norms(weight_gradient_norms, sizes=((5, 8, 8, 6, 3),), n=12, seed=2):
    """``weight_gradient_norms(x, y, weights, biases, name)``: the Frobenius norm of the gradient of
    0.5 * mean_n ||h_L - y||^2 with respect to each W_l, compared with torch autograd."""
    rng = np.random.default_rng(seed)
    for layer_sizes in sizes:
        for name in NAMES:
            x, y, weights, biases = _network(rng, layer_sizes, n)
            subject = f"weight_gradient_norms with {name}, layer sizes {list(layer_sizes)}, batch of {n}"
            got = weight_gradient_norms(x.copy(), y.copy(), _copies(weights), _copies(biases), name)
            _compare(subject, "the norms", got, _autograd_norms(x, y, weights, biases, name),
                     _backprop_mistakes(x, y, weights, biases, name),
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
# impossible), and every wrong scale listed below is at least 6% away for the fans the checks use.
STD_TOLERANCE = 0.03
# A wrong scale is named only when the measurement is within three standard errors of it.
MISTAKE_TOLERANCE = 0.015


def _check_init(init, function_name, scheme, fans, seed, expected_std, wrong_scales):
    for fan_in, fan_out in fans:
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
        target = expected_std(fan_in, fan_out)
        mean, std = float(w.mean()), float(w.std())
        if abs(mean) > 6 * target / np.sqrt(w.size):
            _fail(subject, f"the weights' mean is {mean:.4g}; they should be centred at 0.",
                  "np.random.uniform(0, a) is not centred: use U(-a, a) or a normal distribution with mean 0.")
        if abs(std / target - 1) <= STD_TOLERANCE:
            continue
        # Name a mistake only when the measured scale is within the sampling noise of it; some wrong
        # scales coincide for some fans (sqrt(2 / fan_out) = sqrt(6 / fan_in) when fan_in = 3 fan_out),
        # and then every one that fits is named.
        matches = [text for scale, text in wrong_scales(fan_in, fan_out) if abs(std / scale - 1) <= MISTAKE_TOLERANCE]
        if matches:
            _fail(subject, f"the weights' standard deviation is {std:.4g}, but the {scheme} scale for these fans is "
                           f"{target:.4g}. It matches a common mistake: " + " Or: ".join(matches))
        _fail(subject, f"the weights' standard deviation is {std:.4g}, but the {scheme} scale for these fans is "
                       f"{target:.4g} (off by a factor {std / target:.3g}).")


def check_xavier_init(xavier_init, fans=((400, 150), (150, 400)), seed=3):
    """``xavier_init(fan_in, fan_out, seed)``: a (fan_in, fan_out) array with mean 0 and
    variance 2 / (fan_in + fan_out), reproducible from the seed."""
    def wrong(fan_in, fan_out):
        total = fan_in + fan_out
        return [
            (2 / total, "2 / (fan_in + fan_out) is the variance; the standard deviation is its square root."),
            (np.sqrt(6 / total), "sqrt(6 / (fan_in + fan_out)) is the *limit* a of Glorot's uniform distribution "
                                 "U(-a, a), not a standard deviation: U(-a, a) has standard deviation a / sqrt(3)."),
            (np.sqrt(1 / fan_in), "that is 1 / sqrt(fan_in), which uses the fan-in only. Xavier averages both "
                                  "fans: Var[W] = 2 / (fan_in + fan_out)."),
            (np.sqrt(1 / fan_out), "that is 1 / sqrt(fan_out), which uses the fan-out only. Xavier averages both "
                                   "fans: Var[W] = 2 / (fan_in + fan_out)."),
            (np.sqrt(2 / fan_in), "that is He's scale sqrt(2 / fan_in), made for ReLU; Xavier's uses both fans."),
            (np.sqrt(1 / total), "the factor 2 is missing: Var[W] = 2 / (fan_in + fan_out)."),
        ]

    _check_init(xavier_init, "xavier_init", "Xavier", fans, seed, reference.xavier_std, wrong)
    _passed(f"xavier_init has shape (fan_in, fan_out), mean 0 and variance 2 / (fan_in + fan_out) for fans "
            f"{list(fans)}, and follows its seed.")


def check_he_init(he_init, fans=((400, 150), (150, 400)), seed=4):
    """``he_init(fan_in, fan_out, seed)``: a (fan_in, fan_out) array with mean 0 and variance
    2 / fan_in, reproducible from the seed."""
    def wrong(fan_in, fan_out):
        return [
            (2 / fan_in, "2 / fan_in is the variance; the standard deviation is sqrt(2 / fan_in)."),
            (np.sqrt(2 / fan_out), "the wrong fan: He's scale keeps the *forward* signal's variance, so it divides "
                                   "by fan_in, the number of inputs each unit sums over."),
            (np.sqrt(1 / fan_in), "the factor 2 is missing. ReLU zeroes half of its inputs, which halves the second "
                                  "moment; Var[W] = 2 / fan_in restores it."),
            (np.sqrt(2 / (fan_in + fan_out)), "that is Xavier's scale; He's is sqrt(2 / fan_in)."),
            (np.sqrt(6 / fan_in), "sqrt(6 / fan_in) is the limit a of He's uniform distribution U(-a, a), not a "
                                  "standard deviation (U(-a, a) has standard deviation a / sqrt(3))."),
        ]

    _check_init(he_init, "he_init", "He", fans, seed, lambda fan_in, fan_out: reference.he_std(fan_in), wrong)
    _passed(f"he_init has shape (fan_in, fan_out), mean 0 and variance 2 / fan_in for fans {list(fans)}, and "
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


def _check_number(subject, got, expected, mistakes, hint, tolerance=1e-6):
    """Fail unless ``got`` is ``expected``. The message names a known wrong value when it is one and
    otherwise points to the reasoning, without giving the number away."""
    got = _number(got, subject)
    if abs(got - expected) <= tolerance:
        return
    for value, explanation in mistakes:
        if abs(got - value) <= tolerance:
            _fail(subject, f"{got:.6g} is not the answer. {explanation}")
    _fail(subject, f"{got:.6g} is not the answer (accepted within {tolerance:g}).", hint)


def check_largest_sigmoid_derivative(largest_sigmoid_derivative):
    """The maximum over z of sigma'(z), compared with the largest slope torch autograd finds on a fine grid."""
    import torch

    z = torch.linspace(-10.0, 10.0, 200_001, dtype=torch.float64, requires_grad=True)
    torch.sigmoid(z).sum().backward()
    expected = float(z.grad.max())
    _check_number("largest_sigmoid_derivative()", largest_sigmoid_derivative(), expected, [
        (0.5, "That is sigma(0), the function's value where its slope is largest. The slope there is "
              "sigma(0) * (1 - sigma(0))."),
        (1.0, "That is the largest slope of tanh, not of the sigmoid."),
    ], hint="sigma'(z) = sigma(z) * (1 - sigma(z)) is a product p * (1 - p) with p between 0 and 1; where is it "
            "largest?")
    _passed("largest_sigmoid_derivative() is right: each sigmoid layer multiplies the backward signal by at most "
            "that much, times its weights.")


def check_relu_gain(relu_gain):
    """The gain g for which weights of standard deviation g / sqrt(fan_in) keep a ReLU network's
    second moment constant: torch.nn.init.calculate_gain('relu')."""
    import torch

    expected = torch.nn.init.calculate_gain("relu")
    _check_number("relu_gain()", relu_gain(), expected, [
        (2.0, "2 is the factor on the variance (Var[W] = 2 / fan_in). The gain multiplies the standard deviation, "
              "so it is the square root of that factor."),
        (1.0, "With a gain of 1 each ReLU layer halves the second moment of the signal, because ReLU zeroes half "
              "of its inputs."),
        (0.5, "ReLU keeps half of the second moment; the gain must make up for that loss, not repeat it."),
    ], hint="a ReLU layer keeps E[relu(z)^2] = Var[z] / 2, and Var[z] = fan_in * Var[W] * E[h^2]; choose Var[W] = "
            "g^2 / fan_in so that the product is E[h^2] again.")
    _passed("relu_gain() is right: it is the gain torch.nn.init uses for ReLU.")
