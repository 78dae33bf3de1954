"""Cases for the checks of Exercise 5: LayerNorm (forward and backward), GroupNorm, RMSNorm, and
which normalizations make an example's output independent of its batch.

Each ``*_cases`` function builds inputs from its parameters and computes the expected outputs and
the outputs of known mistakes: with :mod:`bncourse.reference` (tested against ``torch.nn.LayerNorm``,
``GroupNorm`` and ``RMSNorm`` in float64); the batch-independence answer is decided by running
PyTorch's own layers. Inputs give every example its own offset and scale *and* every feature its
own, so that statistics over the wrong axis give visibly wrong numbers. The comparison itself is
the student kit's (:mod:`bnkit.ex05_layernorm`): the kit's notebook checks run it on the cases built
here with the default parameters (stored in the kit as data), the hidden tests and the grader's
trusted checks on other parameters. ``check_*`` does both steps.
"""

from __future__ import annotations

import numpy as np
from bnkit import ex05_layernorm as kit
from bnkit.ex05_layernorm import NORMALIZATION_NAMES  # noqa: F401 - exported by bncourse.checks

from .. import reference
from ._core import Mistake, _affine

DEFAULT_EPS = reference.DEFAULT_EPS


def _examples(rng, shape):
    """Features with their own means and scales, then each example shifted and scaled on its own."""
    d = shape[-1]
    x = rng.normal(rng.uniform(-3, 3, size=d), rng.uniform(0.5, 3.0, size=d), size=shape)
    lead = shape[:-1] + (1,)
    return x * rng.uniform(0.5, 4.0, size=lead) + rng.uniform(-5, 5, size=lead)


def _normalize(x, axis, ddof=0, eps=DEFAULT_EPS, eps_inside=True):
    mean = x.mean(axis=axis, keepdims=True)
    var = x.var(axis=axis, keepdims=True, ddof=ddof)
    return (x - mean) / (np.sqrt(var + eps) if eps_inside else np.sqrt(var) + eps)


def _eps_cases(shapes):
    """The eps passed with each shape: the default, and once a larger one, which a hard-coded 1e-5 gets wrong."""
    return [1e-3 if i == 1 else DEFAULT_EPS for i in range(len(shapes))]


# ---------------------------------------------------------------------------------------------
# LayerNorm forward
# ---------------------------------------------------------------------------------------------

def _layernorm_mistakes(x, gamma, beta, eps):
    def affine(x_hat):
        return gamma * x_hat + beta

    mistakes = [
        Mistake(affine(_normalize(x, axis=0, eps=eps)),
                "the statistics were taken over the batch (axis 0): that is batch norm. LayerNorm gives every "
                "example its own mean and variance, over its own D features: axis=-1, keepdims=True."),
        Mistake(affine(_normalize(x, axis=-1, ddof=1, eps=eps)),
                "the variance is the unbiased one (divided by D - 1). LayerNorm, like torch.nn.LayerNorm, divides "
                "by D: np.var's default, ddof=0."),
        Mistake(affine(_normalize(x, axis=-1, eps=eps, eps_inside=False)),
                "eps was added to the standard deviation. It goes inside the square root: sqrt(var + eps)."),
        Mistake(affine(_normalize(x, axis=-1, eps=0.0)), "eps is missing: divide by sqrt(var + eps)."),
        Mistake(beta * _normalize(x, axis=-1, eps=eps) + gamma,
                "gamma and beta are swapped: out = gamma * x_hat + beta."),
        Mistake(_normalize(x, axis=-1, eps=eps), "gamma and beta were not applied: out = gamma * x_hat + beta."),
        Mistake(gamma * _normalize(x, axis=-1, eps=eps), "beta was not added: out = gamma * x_hat + beta."),
        Mistake(affine((x - x.mean(axis=-1, keepdims=True)) / (x.var(axis=-1, keepdims=True) + eps)),
                "x - mean was divided by the variance; divide by the standard deviation sqrt(var + eps)."),
    ]
    if eps != DEFAULT_EPS:
        mistakes.append(Mistake(affine(_normalize(x, axis=-1)),
                                f"the output matches eps = {DEFAULT_EPS} instead of the eps={eps} passed in. Use "
                                "the eps argument."))
    if x.ndim > 2:
        whole_sequence = tuple(range(1, x.ndim))
        mistakes += [
            Mistake(affine(_normalize(x, axis=whole_sequence, eps=eps)),
                    f"each example's {' x '.join(map(str, x.shape[1:]))} values were normalized together. "
                    "LayerNorm(D) normalizes every position's last-axis vector on its own: axis=-1 only."),
            Mistake(affine(_normalize(x, axis=None, eps=eps)),
                    "one mean and variance were taken over the whole array. Use axis=-1, keepdims=True."),
        ]
    return mistakes


def layernorm_forward_cases(shapes=((4, 6), (16, 5), (3, 7, 8)), seed=0):
    """Inputs of the given shapes (the second with eps=1e-3), the reference's out and cache statistics
    (``torch.nn.LayerNorm(D)`` agrees), and the outputs of known mistakes."""
    rng = np.random.default_rng(seed)
    cases = []
    for shape, eps in zip(shapes, _eps_cases(shapes)):
        shape = tuple(shape)
        x = _examples(rng, shape)
        gamma, beta = _affine(rng, shape[-1])
        expected, expected_cache = reference.layernorm_forward(x, gamma, beta, eps)
        cases.append({"x": x, "gamma": gamma, "beta": beta, "eps": eps, "expected": expected,
                      "mistakes": _layernorm_mistakes(x, gamma, beta, eps),
                      "cache": {key: expected_cache[key] for key in ("mean", "var", "std", "x_hat")}})
    return cases


def layernorm_invariances_cases(shapes=((6, 5), (2, 3, 9)), seed=4):
    """Inputs, and for each example a positive scale and a shift that must not change its output (eps=0)."""
    rng = np.random.default_rng(seed)
    cases = []
    for shape in shapes:
        shape = tuple(shape)
        x = _examples(rng, shape)
        gamma, beta = _affine(rng, shape[-1])
        lead = shape[:-1] + (1,)
        scale, shift = rng.uniform(0.2, 5.0, size=lead), rng.uniform(-10, 10, size=lead)
        cases.append({"x": x, "gamma": gamma, "beta": beta, "eps": DEFAULT_EPS, "scale": scale, "shift": shift})
    return cases


# ---------------------------------------------------------------------------------------------
# LayerNorm backward
# ---------------------------------------------------------------------------------------------

def _layernorm_dx(dout, cache, *, gamma_inside=True, mean_path=True, var_path=True, with_gamma=True):
    """LayerNorm's dx, with one of the known mistakes switched on."""
    x_hat, std, gamma = cache["x_hat"], cache["std"], cache["gamma"]
    d = x_hat.shape[-1]
    g = dout * gamma if (with_gamma and gamma_inside) else dout
    total = g.sum(axis=-1, keepdims=True) if mean_path else 0.0
    projection = x_hat * (g * x_hat).sum(axis=-1, keepdims=True) if var_path else 0.0
    dx = (d * g - total - projection) / (d * std)
    return dx * gamma if (with_gamma and not gamma_inside) else dx


def _layernorm_backward_mistakes(dout, cache):
    x_hat = cache["x_hat"]
    dx = [
        Mistake(_layernorm_dx(dout, cache, gamma_inside=False),
                "gamma was multiplied in after the sums, as in batch norm's formula. In LayerNorm gamma varies along "
                "the normalized axis, so it must be inside: start from g = dout * gamma and use g in every sum."),
        Mistake(_layernorm_dx(dout, cache, mean_path=False, var_path=False),
                "the example's mean and variance were treated as constants: dx = gamma * dout / std. Both depend "
                "on x, and their paths must be added."),
        Mistake(_layernorm_dx(dout, cache, mean_path=False),
                "the path through the mean is missing: the term -sum(g) over the example's features."),
        Mistake(_layernorm_dx(dout, cache, var_path=False),
                "the path through the variance is missing: the term -x_hat * sum(g * x_hat) over the example's "
                "features."),
        Mistake(_layernorm_dx(dout, cache, with_gamma=False), "gamma is missing from dx: d x_hat = dout * gamma."),
        Mistake(x_hat.shape[-1] * _layernorm_dx(dout, cache),
                f"dx is D = {x_hat.shape[-1]} times too large: the formula divides by D * std, not by std alone."),
    ]
    if cache["eps"] != DEFAULT_EPS:
        default_std = dict(cache, std=np.sqrt(cache["var"] + DEFAULT_EPS))
        dx.append(Mistake(_layernorm_dx(dout, default_std),
                          f"dx matches std = sqrt(var + {DEFAULT_EPS}), but this cache was made with "
                          f"eps={cache['eps']}: use cache['std'] (or cache['eps']), not a fixed eps."))
    if x_hat.ndim == 2 and len(x_hat) > 1:  # batch norm's formula, which needs two examples
        bn_cache = reference.batchnorm_forward(cache["x"], cache["gamma"], np.zeros_like(cache["gamma"]),
                                               {"mode": "train", "eps": cache["eps"]})[1]
        dx.append(Mistake(reference.batchnorm_backward(dout, bn_cache)[0],
                          "this is batch norm's gradient, with sums over the batch (axis 0). LayerNorm's sums run "
                          "over each example's features (axis=-1, keepdims=True)."))
    rows = (-1, x_hat.shape[-1])
    flat_dout, flat_x_hat = dout.reshape(rows), x_hat.reshape(rows)
    dgamma = [Mistake(flat_dout.sum(axis=0), "dgamma and dbeta are swapped: dgamma = sum(dout * x_hat)."),
              Mistake((dout * cache["x"]).reshape(rows).sum(axis=0), "dgamma used x instead of x_hat."),
              Mistake((flat_dout * flat_x_hat).mean(axis=0), "dgamma is a mean over the examples; it is a sum.")]
    dbeta = [Mistake((flat_dout * flat_x_hat).sum(axis=0), "dgamma and dbeta are swapped: dbeta = sum(dout)."),
             Mistake(flat_dout.mean(axis=0), "dbeta is a mean over the examples; it is a sum.")]
    return dx, dgamma, dbeta


def layernorm_backward_cases(shapes=((4, 6), (16, 5), (3, 7, 8)), seed=1):
    """``dout`` and the reference forward pass's cache for each shape (the second made with eps=1e-3), so the
    check does not depend on the student's forward pass; the reference gradients (torch autograd agrees) and
    the known mistakes'."""
    rng = np.random.default_rng(seed)
    cases = []
    for shape, eps in zip(shapes, _eps_cases(shapes)):
        shape = tuple(shape)
        x = _examples(rng, shape)
        gamma, beta = _affine(rng, shape[-1])
        dout = rng.normal(size=shape)
        _, cache = reference.layernorm_forward(x, gamma, beta, eps)
        cases.append({"dout": dout, "cache": cache, "expected": list(reference.layernorm_backward(dout, cache)),
                      "mistakes": list(_layernorm_backward_mistakes(dout, cache))})
    return cases


# ---------------------------------------------------------------------------------------------
# GroupNorm and RMSNorm
# ---------------------------------------------------------------------------------------------

def _per_channel(values, ndim):
    return values.reshape((1, -1) + (1,) * (ndim - 2))


def _groupnorm_mistakes(x, gamma, beta, groups, eps):
    n, c = x.shape[:2]
    g, b = _per_channel(gamma, x.ndim), _per_channel(beta, x.ndim)

    def grouped(normalized):
        return g * normalized + b

    round_robin = x.reshape(n, c // groups, groups, -1)
    round_robin = _normalize(round_robin, axis=(1, 3), eps=eps).reshape(x.shape)
    mistakes = [
        Mistake(grouped(round_robin),
                f"channels were assigned to groups round-robin (channel c in group c % {groups}). Groups are "
                f"consecutive channels: with C={c} and {groups} groups, channels 0..{c // groups - 1} form the first "
                f"group. x.reshape(N, num_groups, -1) does that."),
        Mistake(grouped(_normalize(x.reshape(n, groups, -1), axis=(0, 2), eps=eps).reshape(x.shape)),
                "the statistics include the other examples of the batch (axis 0). GroupNorm, like LayerNorm, "
                "normalizes each example on its own."),
        Mistake(grouped(_normalize(x.reshape(n, groups, -1), axis=-1, ddof=1, eps=eps).reshape(x.shape)),
                "the variance is the unbiased one (ddof=1); torch.nn.GroupNorm divides by the group's size."),
        Mistake(grouped(_normalize(x.reshape(n, groups, -1), axis=-1, eps=eps, eps_inside=False).reshape(x.shape)),
                "eps was added to the standard deviation; it goes inside the square root."),
    ]
    if eps != DEFAULT_EPS:
        mistakes.append(Mistake(grouped(_normalize(x.reshape(n, groups, -1), axis=-1).reshape(x.shape)),
                                f"the output matches eps = {DEFAULT_EPS} instead of the eps={eps} passed in. Use "
                                "the eps argument."))
    if groups != c:
        mistakes.append(Mistake(grouped(_normalize(x.reshape(n, c, -1), axis=-1, eps=eps).reshape(x.shape)),
                                "each channel was normalized on its own: that is InstanceNorm (num_groups = C). "
                                f"Here {groups} groups of {c // groups} channels share their statistics."))
    if groups != 1:
        mistakes.append(Mistake(grouped(_normalize(x.reshape(n, 1, -1), axis=-1, eps=eps).reshape(x.shape)),
                                "all channels of an example were normalized together: that is num_groups = 1 "
                                "(LayerNorm over C, H, W). Use num_groups groups."))
    return mistakes


def groupnorm_forward_cases(cases=(((2, 6, 3, 3), 3), ((4, 4, 2, 5), 2), ((3, 8, 5), 4)), seed=2):
    """(N, C, ...) inputs with their group counts (the second with eps=1e-3), the reference's output
    (``torch.nn.GroupNorm`` agrees) and the known mistakes'; then an input whose channel count the group
    count does not divide, which must raise ValueError."""
    rng = np.random.default_rng(seed)
    built = []
    for (shape, groups), eps in zip(cases, _eps_cases(cases)):
        shape = tuple(shape)
        c = shape[1]
        per_channel_shape = (1, c) + (1,) * (len(shape) - 2)
        x = rng.normal(rng.uniform(-4, 4, size=per_channel_shape), rng.uniform(0.5, 3, size=per_channel_shape),
                       size=shape)
        gamma, beta = _affine(rng, c)
        built.append({"x": x, "gamma": gamma, "beta": beta, "num_groups": int(groups), "eps": eps,
                      "expected": reference.groupnorm_forward(x, gamma, beta, groups, eps),
                      "mistakes": _groupnorm_mistakes(x, gamma, beta, groups, eps)})
    # 6 channels of length 4: 24 values per example, which reshape(N, 4, -1) would split without complaint
    indivisible = {"x": rng.normal(size=(2, 6, 4)), "gamma": np.ones(6), "beta": np.zeros(6), "num_groups": 4,
                   "eps": DEFAULT_EPS}
    return {"cases": built, "indivisible": indivisible}


def _rms(x, eps, *, centred=False, total=False, eps_inside=True, axis=-1):
    values = x - x.mean(axis=axis, keepdims=True) if centred else x
    square = (values ** 2).sum(axis=axis, keepdims=True) if total else (values ** 2).mean(axis=axis, keepdims=True)
    return np.sqrt(square + eps) if eps_inside else np.sqrt(square) + eps


def rmsnorm_forward_cases(shapes=((4, 6), (16, 5), (2, 5, 8)), seed=3):
    """Inputs of the given shapes (the second with eps=1e-3), the reference's output
    (``torch.nn.RMSNorm(D, eps=eps)`` agrees) and the known mistakes'."""
    rng = np.random.default_rng(seed)
    cases = []
    for shape, eps in zip(shapes, _eps_cases(shapes)):
        shape = tuple(shape)
        x = _examples(rng, shape)
        gamma = _affine(rng, shape[-1])[0]
        centred = x - x.mean(axis=-1, keepdims=True)
        mistakes = [
            Mistake(gamma * centred / _rms(x, eps, centred=True),
                    "the mean was subtracted: that is LayerNorm (without beta). RMSNorm divides x itself by "
                    "sqrt(mean(x**2) + eps)."),
            Mistake(gamma * x / _rms(x, eps, centred=True),
                    "x was divided by its standard deviation. RMSNorm divides by the root mean square, "
                    "sqrt(mean(x**2) + eps), which includes the mean: mean(x**2) = var + mean**2."),
            Mistake(gamma * x / _rms(x, eps, total=True),
                    f"x was divided by sqrt(sum(x**2) + eps), the norm; the root *mean* square divides the sum by "
                    f"D = {shape[-1]} first."),
            Mistake(gamma * x / _rms(x, eps, eps_inside=False), "eps was added outside the square root."),
            Mistake(gamma * x / _rms(x, eps, axis=0), "the mean square was taken over the batch (axis 0); RMSNorm "
                                                      "uses each example's own features: axis=-1."),
            Mistake(x / _rms(x, eps), "gamma was not applied: out = gamma * x / rms."),
            Mistake(gamma * x / ((x ** 2).mean(axis=-1, keepdims=True) + eps),
                    "x was divided by the mean square; divide by its square root, sqrt(mean(x**2) + eps)."),
        ]
        if eps != DEFAULT_EPS:
            mistakes.append(Mistake(gamma * x / _rms(x, DEFAULT_EPS),
                                    f"the output matches eps = {DEFAULT_EPS} instead of the eps={eps} passed in."))
        cases.append({"x": x, "gamma": gamma, "eps": eps, "expected": reference.rmsnorm_forward(x, gamma, eps),
                      "mistakes": mistakes})
    return cases


# ---------------------------------------------------------------------------------------------
# Which normalizations depend on the batch
# ---------------------------------------------------------------------------------------------

_WHY = {
    "batchnorm_train": "in train mode batch norm normalizes with the mean and variance of the current batch, so an "
                       "example's output moves when its batch-mates change.",
    "batchnorm_eval": "in eval mode batch norm uses its running mean and variance, fixed numbers, so an example's "
                      "output no longer depends on the rest of the batch (that is what eval mode is for).",
    "layernorm": "LayerNorm takes its statistics from one example's features, never from other examples.",
    "instancenorm": "InstanceNorm takes its statistics from one channel of one example.",
    "groupnorm": "GroupNorm takes its statistics from one group of channels of one example.",
    "rmsnorm": "RMSNorm takes its root mean square from one example's features.",
}


def _batch_independent_by_experiment(seed=0) -> set:
    """Run PyTorch's layers on one example inside two different batches and see whose output changes."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    channels = 4

    def draw(n):
        return torch.randn(n, channels, 3, 3, generator=generator, dtype=torch.float64) * 2 + 1

    batch_norm = torch.nn.BatchNorm2d(channels, dtype=torch.float64)
    with torch.no_grad():
        for _ in range(3):                     # give the running statistics something to hold
            batch_norm.train()(draw(8))
    layers = {
        "batchnorm_train": lambda x: torch.nn.functional.batch_norm(x, None, None, training=True),
        "batchnorm_eval": batch_norm.eval(),
        "layernorm": torch.nn.LayerNorm([channels, 3, 3], dtype=torch.float64),
        "instancenorm": torch.nn.InstanceNorm2d(channels, dtype=torch.float64),
        "groupnorm": torch.nn.GroupNorm(2, channels, dtype=torch.float64),
        "rmsnorm": torch.nn.RMSNorm([channels, 3, 3], dtype=torch.float64),
    }
    example, first_mates, second_mates = draw(1), draw(7), draw(7)
    independent = set()
    with torch.no_grad():
        for name, layer in layers.items():
            in_first = layer(torch.cat([example, first_mates]))[0]
            in_second = layer(torch.cat([example, second_mates]))[0]
            if torch.allclose(in_first, in_second, rtol=1e-12, atol=1e-12):
                independent.add(name)
    return independent


def batch_independence_cases(seed=0):
    """The right answer, found by running PyTorch's layers (a sorted list of names), and for every name
    why it belongs in the set or not: the message for the known wrong answer of leaving it out or putting
    it in."""
    independent = _batch_independent_by_experiment(seed)
    assert set(_WHY) == set(NORMALIZATION_NAMES) >= independent
    return {"independent": sorted(independent), "why": dict(_WHY)}


# ---------------------------------------------------------------------------------------------
# The checks: the kit's comparison on cases built here
# ---------------------------------------------------------------------------------------------

def check_layernorm_forward(layernorm_forward, **params):
    kit.verify_layernorm_forward(layernorm_forward, layernorm_forward_cases(**params))


def check_layernorm_invariances(layernorm_forward, **params):
    kit.verify_layernorm_invariances(layernorm_forward, layernorm_invariances_cases(**params))


def check_layernorm_backward(layernorm_backward, **params):
    kit.verify_layernorm_backward(layernorm_backward, layernorm_backward_cases(**params))


def check_groupnorm_forward(groupnorm_forward, **params):
    kit.verify_groupnorm_forward(groupnorm_forward, groupnorm_forward_cases(**params))


def check_rmsnorm_forward(rmsnorm_forward, **params):
    kit.verify_rmsnorm_forward(rmsnorm_forward, rmsnorm_forward_cases(**params))


def check_batch_independent_normalizations(batch_independent_normalizations, **params):
    kit.verify_batch_independent_normalizations(batch_independent_normalizations, batch_independence_cases(**params))


#: The visible checks of the notebook and their cases, stored in the kit (``bnkit/fixtures``).
VISIBLE = {
    "check_layernorm_forward": layernorm_forward_cases,
    "check_layernorm_backward": layernorm_backward_cases,
    "check_groupnorm_forward": groupnorm_forward_cases,
    "check_rmsnorm_forward": rmsnorm_forward_cases,
    "check_batch_independent_normalizations": batch_independence_cases,
}
