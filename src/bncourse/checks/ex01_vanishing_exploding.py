"""Cases for the checks of Exercise 1 (signals in a deep MLP: activations, their statistics,
backprop by hand, initialization scales), computed with the reference and torch.

Each ``*_cases`` function builds inputs from its parameters and computes the expected outputs and
the outputs of known mistakes: with :mod:`bncourse.reference` (itself tested against torch) and,
for the gradients and the two numeric questions, with torch itself: autograd for the weight
gradients and the sigmoid's slope, ``torch.nn.init.calculate_gain`` for the ReLU gain. The
initializers are random, so their cases hold the target standard deviation and the wrong scales.
torch is imported inside the builders that need it, so that importing the checks stays fast.

The comparison itself is the student kit's (:mod:`bnkit.ex01_vanishing_exploding`): the kit's
notebook checks run it on the cases built here with the default parameters (stored in the kit as
data), the hidden tests and the grader's trusted checks on other parameters. ``check_*`` does
both steps.
"""

from __future__ import annotations

import numpy as np
from bnkit import ex01_vanishing_exploding as kit

from .. import reference
from ._core import Mistake

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


# ---------------------------------------------------------------------------------------------
# Part 1: activations and their derivatives
# ---------------------------------------------------------------------------------------------

def _activation_mistakes(z):
    return [Mistake(1 / (1 + np.exp(z)), "the sign in the exponent is wrong: sigmoid(z) = 1 / (1 + exp(-z)).")]


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


def activations_cases(seed=0):
    """One array of pre-activations per activation, with each function's value and derivative on it."""
    rng = np.random.default_rng(seed)
    cases = []
    for name in NAMES:
        f, df = reference.MLP_ACTIVATIONS[name]
        z = _pre_activations(rng)
        with np.errstate(all="ignore"):
            cases.append({"name": name, "z": z, "output": f(z), "output_mistakes": _activation_mistakes(z),
                          "derivative": df(z), "derivative_mistakes": _derivative_mistakes(z, name)})
    return cases


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


def forward_stats_cases(sizes=((5, 8, 8, 6, 3),), n=16, seed=1):
    """One network per layer sizes and activation, with the last layer's output and the (L, 2) table
    of each layer's output mean and standard deviation."""
    rng = np.random.default_rng(seed)
    cases = []
    for layer_sizes in sizes:
        for name in NAMES:
            x, _, weights, biases = _network(rng, layer_sizes, n)
            zs, hs = _forward_variants(x, weights, biases, name)
            expected_out, expected_stats = reference.mlp_forward_stats(x, weights, biases, name)
            cases.append({"name": name, "sizes": [int(s) for s in layer_sizes], "n": int(n), "x": x,
                          "weights": weights, "biases": biases,
                          "out": np.asarray(expected_out),
                          "out_mistakes": [Mistake(zs[-1], "out is the last layer's pre-activation: apply the "
                                                           "activation after the last layer too.")],
                          "stats": np.array(expected_stats), "stats_mistakes": _stats_mistakes(zs, hs, name)})
    return {"sizes": [[int(s) for s in layer_sizes] for layer_sizes in sizes], "cases": cases}


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


def weight_gradient_norms_cases(sizes=((5, 8, 8, 6, 3),), n=12, seed=2):
    """One network and targets per layer sizes and activation, with the norms of the gradients of
    0.5 * mean_n ||h_L - y||^2 with respect to each W_l, by torch autograd."""
    rng = np.random.default_rng(seed)
    cases = []
    for layer_sizes in sizes:
        for name in NAMES:
            x, y, weights, biases = _network(rng, layer_sizes, n)
            cases.append({"name": name, "sizes": [int(s) for s in layer_sizes], "n": int(n), "x": x, "y": y,
                          "weights": weights, "biases": biases,
                          "expected": _autograd_norms(x, y, weights, biases, name),
                          "mistakes": _backprop_mistakes(x, y, weights, biases, name)})
    return cases


# ---------------------------------------------------------------------------------------------
# Part 4: initialization
# ---------------------------------------------------------------------------------------------

def _init_cases(fans, seed, expected_std, wrong_scales):
    """The seed, the fans as given, and per fans the target standard deviation and each wrong scale
    (``Mistake(scale, explanation)``)."""
    fans = [tuple(int(f) for f in pair) for pair in fans]
    return {"seed": int(seed), "fans": fans,
            "cases": [{"fan_in": fan_in, "fan_out": fan_out, "std": float(expected_std(fan_in, fan_out)),
                       "wrong_scales": [Mistake(float(scale), text) for scale, text in wrong_scales(fan_in, fan_out)]}
                      for fan_in, fan_out in fans]}


def _xavier_wrong_scales(fan_in, fan_out):
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


def _he_wrong_scales(fan_in, fan_out):
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


def xavier_init_cases(fans=((400, 150), (150, 400)), seed=3):
    """Xavier's standard deviation sqrt(2 / (fan_in + fan_out)) and the wrong scales, per fans."""
    return _init_cases(fans, seed, reference.xavier_std, _xavier_wrong_scales)


def he_init_cases(fans=((400, 150), (150, 400)), seed=4):
    """He's standard deviation sqrt(2 / fan_in) and the wrong scales, per fans."""
    return _init_cases(fans, seed, lambda fan_in, fan_out: reference.he_std(fan_in), _he_wrong_scales)


# ---------------------------------------------------------------------------------------------
# Part 5: two numbers
# ---------------------------------------------------------------------------------------------

def largest_sigmoid_derivative_cases():
    """The largest slope torch autograd finds on a fine grid, the known wrong values and the hint
    (which does not give the number away)."""
    import torch

    z = torch.linspace(-10.0, 10.0, 200_001, dtype=torch.float64, requires_grad=True)
    torch.sigmoid(z).sum().backward()
    return {"expected": float(z.grad.max()), "mistakes": [
        Mistake(0.5, "That is sigma(0), the function's value where its slope is largest. The slope there is "
                     "sigma(0) * (1 - sigma(0))."),
        Mistake(1.0, "That is the largest slope of tanh, not of the sigmoid."),
    ], "hint": "sigma'(z) = sigma(z) * (1 - sigma(z)) is a product p * (1 - p) with p between 0 and 1; where is it "
               "largest?"}


def relu_gain_cases():
    """torch.nn.init.calculate_gain('relu'), the known wrong values and the hint (which does not give
    the number away)."""
    import torch

    return {"expected": float(torch.nn.init.calculate_gain("relu")), "mistakes": [
        Mistake(2.0, "2 is the factor on the variance (Var[W] = 2 / fan_in). The gain multiplies the standard "
                     "deviation, so it is the square root of that factor."),
        Mistake(1.0, "With a gain of 1 each ReLU layer halves the second moment of the signal, because ReLU zeroes "
                     "half of its inputs."),
        Mistake(0.5, "ReLU keeps half of the second moment; the gain must make up for that loss, not repeat it."),
    ], "hint": "a ReLU layer keeps E[relu(z)^2] = Var[z] / 2, and Var[z] = fan_in * Var[W] * E[h^2]; choose Var[W] = "
               "g^2 / fan_in so that the product is E[h^2] again."}


# ---------------------------------------------------------------------------------------------
# The checks: the kit's comparison on cases built here
# ---------------------------------------------------------------------------------------------

def check_activations(activation, activation_derivative, **params):
    kit.verify_activations(activation, activation_derivative, activations_cases(**params))


def check_forward_stats(forward_with_stats, **params):
    kit.verify_forward_stats(forward_with_stats, forward_stats_cases(**params))


def check_weight_gradient_norms(weight_gradient_norms, **params):
    kit.verify_weight_gradient_norms(weight_gradient_norms, weight_gradient_norms_cases(**params))


def check_xavier_init(xavier_init, **params):
    kit.verify_xavier_init(xavier_init, xavier_init_cases(**params))


def check_he_init(he_init, **params):
    kit.verify_he_init(he_init, he_init_cases(**params))


def check_largest_sigmoid_derivative(largest_sigmoid_derivative):
    kit.verify_largest_sigmoid_derivative(largest_sigmoid_derivative, largest_sigmoid_derivative_cases())


def check_relu_gain(relu_gain):
    kit.verify_relu_gain(relu_gain, relu_gain_cases())


#: The visible checks of the notebook and their cases, stored in the kit (``bnkit/fixtures``).
VISIBLE = {
    "check_activations": activations_cases,
    "check_forward_stats": forward_stats_cases,
    "check_weight_gradient_norms": weight_gradient_norms_cases,
    "check_xavier_init": xavier_init_cases,
    "check_he_init": he_init_cases,
    "check_largest_sigmoid_derivative": largest_sigmoid_derivative_cases,
    "check_relu_gain": relu_gain_cases,
}
