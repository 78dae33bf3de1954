"""Checks for Exercise 4: a training loop that switches between train and eval mode, steps to a
target accuracy, a model builder that inserts batch norm, and folding batch norm into the linear
layer before it.

The grader can pass only arrays, so the notebook has small given wrappers that build torch modules
from arrays, call the student's function and return arrays. Expected values come from torch
itself (a training loop written here, run on the same initial weights and mini-batches, and
PyTorch's own layers) and from :func:`bncourse.reference.fold_batchnorm_into_linear`. torch is
imported inside the checks, so importing the checks stays fast.
"""

from __future__ import annotations

import numpy as np

from .. import reference
from ._core import Mistake, _as_array, _compare, _fail, _passed


def _torch():
    import torch
    return torch


# ---------------------------------------------------------------------------------------------
# Part 1: the training loop
# ---------------------------------------------------------------------------------------------

def _problem(rng, n_in, hidden, classes, n_train, n_test):
    """A small classification problem whose classes are separable by a random linear map, and the
    initial weights of a Linear -> BatchNorm1d -> ReLU -> Linear network (torch's layouts)."""
    centres = rng.normal(0, 2.0, size=(classes, n_in))
    y_train, y_test = rng.integers(classes, size=n_train), rng.integers(classes, size=n_test)
    x_train = centres[y_train] + rng.normal(size=(n_train, n_in)) + 3.0   # offset: BN's running mean matters
    x_test = centres[y_test] + rng.normal(size=(n_test, n_in)) + 3.0
    w1 = rng.normal(0, 1 / np.sqrt(n_in), size=(hidden, n_in))
    w2, b2 = rng.normal(0, 1 / np.sqrt(hidden), size=(classes, hidden)), np.zeros(classes)
    return w1, w2, b2, x_train, y_train, x_test, y_test


def _reference_curve(w1, w2, b2, x_train, y_train, x_test, y_test, steps, lr, batch_size, eval_every, seed, *,
                     eval_mode=True, back_to_train=True, zero_grad=True):
    """The loop the exercise specifies, with one of the known mistakes switched on; returns the curve
    and the BN layer's running mean and variance at the end."""
    torch = _torch()
    nn, functional = torch.nn, torch.nn.functional
    model = nn.Sequential(nn.Linear(w1.shape[1], w1.shape[0], bias=False), nn.BatchNorm1d(w1.shape[0]), nn.ReLU(),
                          nn.Linear(w2.shape[1], w2.shape[0])).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(w1))
        model[3].weight.copy_(torch.from_numpy(w2))
        model[3].bias.copy_(torch.from_numpy(b2))
    xs, ys = torch.from_numpy(x_train), torch.from_numpy(y_train).long()
    xt, yt = torch.from_numpy(x_test), torch.from_numpy(y_test).long()
    sampler = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    curve = []
    model.train()
    for step in range(1, steps + 1):
        if back_to_train:
            model.train()
        idx = torch.randint(0, len(xs), (batch_size,), generator=sampler)
        loss = functional.cross_entropy(model(xs[idx]), ys[idx])
        if zero_grad:
            optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % eval_every == 0:
            if eval_mode:
                model.eval()
            with torch.no_grad():
                curve.append((model(xt).argmax(dim=1) == yt).double().mean().item())
    return np.array(curve), model[1].running_mean.numpy().copy(), model[1].running_var.numpy().copy()


def check_training_loop(training_curve_of_bn_net, cases=((6, 8, 3, 60, 40, 30, 0.1, 16, 5),), seed=0):
    """The student's ``train_and_record`` (through the notebook's wrapper) against the same loop written
    here: the same curve, and the same running statistics at the end (which reveal evaluation in train
    mode, where every test pass moves them)."""
    rng = np.random.default_rng(seed)
    for n_in, hidden, classes, n_train, n_test, steps, lr, batch_size, eval_every in cases:
        problem = _problem(rng, n_in, hidden, classes, n_train, n_test)
        sampler_seed = int(rng.integers(2**31))
        settings = (steps, lr, batch_size, eval_every, sampler_seed)
        subject = (f"train_and_record with steps={steps}, lr={lr}, batch_size={batch_size}, "
                   f"eval_every={eval_every}")
        result = training_curve_of_bn_net(*[a.copy() for a in problem], *settings)
        if not isinstance(result, (tuple, list)) or len(result) != 3:
            _fail(subject, "the given wrapper training_curve_of_bn_net was changed; restore it.")
        curve = _as_array(result[0], subject, "the curve")
        expected = _reference_curve(*problem, *settings)
        points = steps // eval_every
        if curve.shape != (points,):
            _fail(subject, f"the curve has shape {curve.shape} but should hold {points} accuracies, one after "
                           f"every {eval_every} training steps (steps {eval_every}, {2 * eval_every}, ...).",
                  "evaluate when step % eval_every == 0, counting steps from 1.")
        variants = {
            "eval": _reference_curve(*problem, *settings, eval_mode=False),
            "train": _reference_curve(*problem, *settings, back_to_train=False),
            "zero_grad": _reference_curve(*problem, *settings, zero_grad=False),
        }
        explanations = {
            "eval": "the test accuracy was measured in train mode. Call model.eval() before evaluating: in train "
                    "mode batch norm normalizes the test set with its own statistics and also updates the running "
                    "averages with them.",
            "train": "the model stays in eval mode after the first evaluation, so later steps train with the running "
                     "statistics and never update them. Call model.train() before every training step.",
            "zero_grad": "the gradients are never reset, so each step adds the new gradient to all the old ones. "
                         "Call optimizer.zero_grad() before loss.backward().",
        }
        stats = [_as_array(result[1], subject, "running_mean"), _as_array(result[2], subject, "running_var")]
        matches = np.allclose(curve, expected[0], rtol=0, atol=1e-9) and all(
            np.allclose(s, e, rtol=1e-6, atol=1e-9) for s, e in zip(stats, expected[1:]))
        if matches:
            continue
        for key, (variant_curve, *variant_stats) in variants.items():
            if np.allclose(curve, variant_curve, rtol=0, atol=1e-9) and all(
                    np.allclose(s, e, rtol=1e-6, atol=1e-9) for s, e in zip(stats, variant_stats)):
                _fail(subject, f"the results match a common mistake: {explanations[key]}")
        if not np.allclose(curve, expected[0], rtol=0, atol=1e-9):
            first = int(np.flatnonzero(~np.isclose(curve, expected[0], rtol=0, atol=1e-9))[0])
            _fail(subject, f"the curve differs from the expected one, first at entry {first} (after step "
                           f"{(first + 1) * eval_every}): expected accuracy {expected[0][first]:.4f}, got "
                           f"{curve[first]:.4f}.",
                  "follow the specification exactly: SGD on the model's parameters with this lr, mini-batches "
                  "drawn with torch.randint from a generator seeded with `seed`, cross-entropy loss.")
        _fail(subject, "the curve is right but BN's running statistics at the end are not.",
              "evaluate under torch.no_grad() in eval mode, and do not run any other forward pass in train mode.")
    _passed("train_and_record gives the expected learning curve and leaves the right running statistics.")


# ---------------------------------------------------------------------------------------------
# Part 2: steps to a target accuracy
# ---------------------------------------------------------------------------------------------

def check_steps_to_accuracy(steps_to_accuracy, seed=1):
    """Crafted curves, including an accuracy exactly equal to the target and a curve that never gets there."""
    rng = np.random.default_rng(seed)
    eval_every = int(rng.integers(5, 50))
    rising = np.sort(rng.uniform(0.1, 0.95, size=12))
    target_index = int(rng.integers(3, 9))
    cases = [(rising, float(rising[target_index]), (target_index + 1) * eval_every, "an entry equal to the target"),
             (rising, float(rising[target_index:target_index + 2].mean()), (target_index + 2) * eval_every,
              "a rising curve"),
             (np.array([0.2, 0.9, 0.5, 0.95]), 0.85, 2 * eval_every, "a curve that falls back after reaching it"),
             (rising, 0.99, None, "a curve that never reaches the target"),
             (np.array([0.97, 0.98]), 0.9, eval_every, "a curve that starts above the target")]
    for curve, target, expected, what in cases:
        subject = f"steps_to_accuracy on {what} (target {target:.4f}, eval_every={eval_every})"
        got = steps_to_accuracy(list(curve), target, eval_every)
        if expected is None:
            if got is not None:
                _fail(subject, f"the curve never reaches the target, so the answer is None; got {got!r}.",
                      "return None (not -1, 0 or the number of steps) when no entry reaches the target.")
            continue
        if got is None or isinstance(got, bool) or not isinstance(got, (int, np.integer, float)):
            _fail(subject, f"expected the step {expected}, got {got!r}.")
        if got == expected:
            continue
        index = expected // eval_every - 1
        known = {index: "that is the index of the entry, not the step. Entry i was recorded after "
                        "(i + 1) * eval_every steps.",
                 index * eval_every: "entry i was recorded after (i + 1) * eval_every steps, not i * eval_every.",
                 expected + eval_every: "an entry equal to the target counts as reaching it: use >=, not >."}
        _fail(subject, f"expected the step {expected}, got {got!r}." +
              (f" {known[got]}" if got in known else ""))
    _passed("steps_to_accuracy finds the first step at which the target is reached, and None when it never is.")


# ---------------------------------------------------------------------------------------------
# Part 3: a model builder that inserts batch norm
# ---------------------------------------------------------------------------------------------

def _expected_layers(sizes):
    torch = _torch()
    nn = torch.nn
    layers = []
    for fan_in, fan_out in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(fan_in, fan_out, bias=False), nn.BatchNorm1d(fan_out), nn.ReLU()]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return [repr(layer) for layer in layers]


def check_bn_mlp(describe_bn_mlp, cases=((4, 8, 3), (6, 10, 10, 5), (3, 2))):
    """The layers of ``make_bn_mlp(sizes)``, as the given wrapper lists them (``repr`` of each), against
    torch's own layers in the specified order."""
    for sizes in cases:
        subject = f"make_bn_mlp({list(sizes)})"
        got = describe_bn_mlp(list(sizes))
        if not isinstance(got, (list, tuple)) or not all(isinstance(g, str) for g in got):
            _fail(subject, "the given wrapper describe_bn_mlp was changed; restore it.")
        got, expected = list(got), _expected_layers(sizes)
        if got == expected:
            continue
        text = "\n    ".join(got)
        wanted = "\n    ".join(expected)
        hint = None
        if any(a.startswith("ReLU") and b.startswith("BatchNorm1d") for a, b in zip(got, got[1:])):
            hint = "batch norm goes between the linear layer and the activation: Linear -> BatchNorm1d -> ReLU."
        elif any(a.startswith("Linear") and "bias=True" in a and b.startswith("BatchNorm1d")
                 for a, b in zip(got, got[1:])):
            hint = ("a linear layer followed by batch norm should have bias=False: BN subtracts the batch mean, "
                    "which cancels any bias, so it would only be a wasted parameter.")
        elif got and (got[-1].startswith(("BatchNorm1d", "ReLU"))):
            hint = "the output layer is a plain Linear (with a bias), with no batch norm or activation after it."
        _fail(subject, f"the layers are\n    {text}\n  but should be\n    {wanted}", hint)
    _passed("make_bn_mlp builds Linear(bias=False) -> BatchNorm1d -> ReLU blocks and a plain output layer.")


# ---------------------------------------------------------------------------------------------
# Part 4: folding batch norm into the linear layer
# ---------------------------------------------------------------------------------------------

def check_fold_bn(fold_bn_outputs, cases=((5, 4, 6, True), (3, 7, 2, False)), seed=3):
    """The folded layer's weight, bias and output (through the notebook's wrapper) against the reference
    fold, which is tested against torch's Linear + BatchNorm1d in eval mode."""
    rng = np.random.default_rng(seed)
    for case, (n_in, n_out, n, with_bias) in enumerate(cases):
        weight = rng.normal(size=(n_out, n_in))
        bias = rng.normal(size=n_out) if with_bias else None
        running_mean, running_var = rng.uniform(-2, 2, size=n_out), rng.uniform(0.2, 3, size=n_out)
        gamma, beta = rng.uniform(0.5, 2, size=n_out), rng.uniform(-1, 1, size=n_out)
        eps = 1e-3 if case == 0 else 1e-5   # once not the default: a hard-coded 1e-5 gets that case wrong
        x = rng.normal(1.0, 2.0, size=(n, n_in))
        subject = f"fold_bn_into_linear for Linear({n_in}, {n_out}, bias={with_bias}) and BatchNorm1d(eps={eps})"
        result = fold_bn_outputs(weight.copy(), None if bias is None else bias.copy(), running_mean.copy(),
                                 running_var.copy(), gamma.copy(), beta.copy(), eps, x.copy())
        if not isinstance(result, (tuple, list)) or len(result) != 5:
            _fail(subject, "the given wrapper fold_bn_outputs was changed; restore it.")
        for name, after, before in (("linear.weight", result[3], weight), ("bn.running_var", result[4], running_var)):
            if not np.array_equal(_as_array(after, subject, f"{name} after the call"), before):
                _fail(subject, f"{name} was changed in place by the call.",
                      "the original layers must keep working: build a new nn.Linear and copy the folded values into "
                      "it (folded.weight.copy_(linear.weight * scale[:, None])), without mul_ or += on linear or bn.")
        want_w, want_b = reference.fold_batchnorm_into_linear(weight, bias, running_mean, running_var, gamma, beta, eps)
        if result[1] is None:
            _fail(subject, "the folded layer has no bias. It needs one even when the original linear layer had "
                           "none: batch norm's shift goes there (nn.Linear(..., bias=True)).")
        zero = np.zeros(n_out) if bias is None else bias
        scale = gamma / np.sqrt(running_var + eps)
        weight_mistakes = [
            Mistake(weight * (gamma / np.sqrt(running_var))[:, None], "eps is missing: divide by "
                                                                      "sqrt(running_var + eps)."),
            Mistake(weight * (gamma / (running_var + eps))[:, None], "the weights were divided by the variance; divide "
                                                                     "by the standard deviation sqrt(running_var + eps)."),
            Mistake(weight * (1 / np.sqrt(running_var + eps))[:, None], "gamma is missing from the scale: "
                                                                        "gamma / sqrt(running_var + eps)."),
            Mistake(weight * (gamma / np.sqrt(1 + eps))[:, None], "the running variance was taken as 1 (its value "
                                                                  "before any training): the scale is "
                                                                  "gamma / sqrt(bn.running_var + bn.eps)."),
        ]
        bias_mistakes = [
            Mistake(zero * scale + beta, "the running mean is missing from the bias: (bias - running_mean) * scale + beta."),
            Mistake((zero - running_mean) * scale, "beta is missing from the bias: (bias - running_mean) * scale + beta."),
            Mistake(-running_mean * scale + beta, "the linear layer's own bias was dropped: (bias - running_mean) * "
                                                  "scale + beta."),
        ]
        if eps != 1e-5:
            weight_mistakes.append(Mistake(weight * (gamma / np.sqrt(running_var + 1e-5))[:, None],
                                           f"eps = 1e-5 was used instead of this layer's bn.eps = {eps}."))
        if n_in == n_out:
            weight_mistakes.append(Mistake(weight * scale[None, :], "the scale multiplied the columns; each *output* "
                                                                    "(a row of the weight) has its own scale: "
                                                                    "weight * scale[:, None]."))
        _compare(subject, "the folded weight", result[0], want_w, weight_mistakes)
        _compare(subject, "the folded bias", result[1], want_b, bias_mistakes)
        _compare(subject, "the folded layer's output", result[2], x @ want_w.T + want_b)
    _passed("fold_bn_into_linear returns a layer that computes Linear -> BatchNorm1d (eval mode) exactly.")


# ---------------------------------------------------------------------------------------------
# Part 5: checking a fold the right way
# ---------------------------------------------------------------------------------------------

def _bn_mlp_outputs(x, w1, running_mean, running_var, gamma, beta, w2, b2, eps, train_mode):
    """Linear(bias=False) -> BatchNorm1d -> ReLU -> Linear on x, with the reference batch norm: in eval mode
    with the running statistics, in train mode with the batch's own."""
    bn_param = {"mode": "train" if train_mode else "eval", "eps": eps, "running_mean": running_mean.copy(),
                "running_var": running_var.copy()}
    normalized, _ = reference.batchnorm_forward(x @ w1.T, gamma, beta, bn_param)
    return np.maximum(normalized, 0) @ w2.T + b2


def _folded_outputs(x, folded_w, folded_b, w2, b2):
    """The folded network, folded Linear -> ReLU -> Linear, on x."""
    return np.maximum(x @ folded_w.T + folded_b, 0) @ w2.T + b2


def _candidate_fold(rng, params, eps, x, largest_positive):
    """A folded layer for the check to hand to ``folding_error``: the exact fold with small errors added, so the
    true error is known and not zero. Drawn until the largest-magnitude entry of model - folded has
    the requested sign where it can be had, so that a signed maximum (in either order) is told apart from the
    absolute one in one case or the other."""
    w1, running_mean, running_var, gamma, beta, w2, b2 = params
    exact_w, exact_b = reference.fold_batchnorm_into_linear(w1, None, running_mean, running_var, gamma, beta, eps)
    model_eval = _bn_mlp_outputs(x, *params, eps, train_mode=False)
    fallback = None
    for attempt in range(100):
        # small errors in the weight (so the difference varies between examples) and the bias; larger ones when
        # every hidden unit is dead for these inputs and hides them
        scale = 0.05 * 2 ** (attempt // 10)
        folded_w = exact_w + rng.normal(0, scale, size=exact_w.shape)
        folded_b = exact_b + rng.normal(0, scale, size=exact_b.shape)
        difference = model_eval - _folded_outputs(x, folded_w, folded_b, w2, b2)
        if np.isclose(np.abs(difference).max(), np.abs(difference).mean()):
            continue   # the mean would be right too
        fallback = fallback or (folded_w, folded_b, difference)
        if (difference.flat[np.argmax(np.abs(difference))] > 0) == largest_positive:
            return folded_w, folded_b, difference
    if fallback is None:
        raise RuntimeError("no usable candidate fold was drawn in 100 tries")
    return fallback   # the sign cannot be had (every path to the output has the same sign); any will do


def check_folding_error(folding_error_outputs, cases=((5, 4, 3, 8, True), (3, 6, 2, 5, False)), seed=4):
    """``folding_error(model, folded_layer, x)`` (through the notebook's wrapper) on a model in train mode and
    one in eval mode, given a slightly wrong folded layer: the largest difference, measured in eval mode, and
    the model left as it was (every layer's mode, BN's running statistics, the first weight)."""
    rng = np.random.default_rng(seed)
    eps = 1e-5
    for case, (n_in, hidden, classes, n, train_mode) in enumerate(cases):
        w1 = rng.normal(0, 1 / np.sqrt(n_in), size=(hidden, n_in))
        running_mean, running_var = rng.uniform(-1, 1, size=hidden), rng.uniform(0.3, 2, size=hidden)
        gamma, beta = rng.uniform(0.5, 2, size=hidden), rng.uniform(0, 1.5, size=hidden)   # mostly alive units
        w2, b2 = rng.normal(0, 1 / np.sqrt(hidden), size=(classes, hidden)), rng.normal(size=classes)
        x = rng.normal(1.5, 2.0, size=(max(n, 2), n_in))   # far from the running statistics: batch statistics differ
        params = (w1, running_mean, running_var, gamma, beta, w2, b2)
        folded_w, folded_b, difference = _candidate_fold(rng, params, eps, x, largest_positive=case % 2 == 0)
        mode = "train" if train_mode else "eval"
        subject = (f"folding_error on a model in {mode} mode, Linear({n_in}, {hidden}) -> BN -> ReLU -> Linear, "
                   f"{len(x)} inputs")
        result = folding_error_outputs(*[a.copy() for a in params], folded_w.copy(), folded_b.copy(), x.copy(),
                                       train_mode)
        if not isinstance(result, (tuple, list)) or len(result) != 5:
            _fail(subject, "the given wrapper folding_error_outputs was changed; restore it.")
        error = _as_array(result[0], subject, "the difference you returned")
        if error.shape != ():
            _fail(subject, f"folding_error should return one number (a Python float), not an array of shape "
                           f"{error.shape}.", "reduce the differences with .abs().max() and convert with .item().")
        folded = _folded_outputs(x, folded_w, folded_b, w2, b2)
        model_train = _bn_mlp_outputs(x, *params, eps, train_mode=True)
        mistakes = [
            Mistake(np.array(np.abs(model_train - folded).max()),
                    "the model was run in train mode, so batch norm normalized x with x's own mean and variance. "
                    "A fold bakes in the running statistics, so it can only agree with the model in eval mode: "
                    "call model.eval() before computing model(x)."),
            Mistake(np.array(np.abs(difference).mean()),
                    "that is the mean absolute difference; return the largest one, .abs().max()."),
            Mistake(np.array(difference.max()), "that is the largest signed difference; take the absolute value "
                                                "first, .abs().max()."),
            Mistake(np.array((-difference).max()), "that is the largest signed difference; take the absolute value "
                                                   "first, .abs().max()."),
        ]
        _compare(subject, "the difference you returned", error, np.array(np.abs(difference).max()), mistakes,
                 hint="the folded network is nn.Sequential(folded_layer, *model[2:]); compare its output with "
                      "model(x) in eval mode.")
        modes = _as_array(result[1], subject, "the layers' modes afterwards")
        names = ["the model", "model[0] (Linear)", "model[1] (BatchNorm1d)", "model[2] (ReLU)", "model[3] (Linear)"]
        changed = [name for name, flag in zip(names, modes) if bool(flag) != train_mode]
        if changed:
            which = ("the model and every layer in it" if len(changed) == len(names) else ", ".join(changed))
            _fail(subject, f"the model was in {mode} mode before folding_error, but afterwards {which} "
                           f"{'is' if len(changed) == 1 else 'are'} in {'eval' if train_mode else 'train'} mode.",
                  "remember the mode with was_training = model.training, and restore it at the end with "
                  "model.train(was_training), which sets every layer.")
        for name, after, before in (("BN's running_mean", result[2], running_mean),
                                    ("BN's running_var", result[3], running_var), ("model[0].weight", result[4], w1)):
            if not np.allclose(_as_array(after, subject, name), before, rtol=0, atol=1e-12):
                _fail(subject, f"{name} changed during folding_error.",
                      "a forward pass in train mode updates the running statistics (by momentum 0.1), and a check "
                      "must not change the model it checks: run the model in eval mode, under torch.no_grad().")
    _passed("folding_error measures the fold in eval mode and leaves the model as it found it.")
