"""Checks of Exercise 4: a training loop that switches between train and eval mode, steps to a target
accuracy, a model builder that inserts batch norm, and folding batch norm into the linear layer before it.

The checks can pass only arrays, so the notebook has small given wrappers (read-only cells) that build
torch modules from arrays, call the student's function and return a dict of named results. Each
``verify_*`` function calls a wrapper on the given cases and compares what it returns with the stored
expected results, and with the results of known mistakes; each ``check_*`` function is what the
notebook calls: the same comparison on the stored cases. The grader calls ``verify_*`` with cases it
draws in secret.
"""

from __future__ import annotations

import numpy as np

from ._core import _as_array, _compare, _fail, _given_entries, _passed
from ._fixtures import stored_check

EXERCISE = "ex04_training_with_bn"

# the tolerances of the training-loop comparison: accuracies are fractions k / n_test of the test set, so two
# different accuracies differ by at least 1 / n_test and any way of computing one (float32 or float64, a mean
# or a count divided by n_test) lands well within a quarter of that; the running statistics come out of a few
# dozen float64 updates
CURVE_STEPS = 0.25
STATS_RTOL, STATS_ATOL = 1e-6, 1e-9


def _copies(inputs: dict) -> dict:
    return {name: value.copy() if isinstance(value, np.ndarray) else value for name, value in inputs.items()}


# ---------------------------------------------------------------------------------------------
# Part 1: the training loop
# ---------------------------------------------------------------------------------------------

def _curve_atol(n_test: int) -> float:
    return CURVE_STEPS / max(int(n_test), 1)


def _same_curve(curve, other, n_test) -> bool:
    curve, other = np.asarray(curve, dtype=float), np.asarray(other, dtype=float)
    return curve.shape == other.shape and np.allclose(curve, other, rtol=0, atol=_curve_atol(n_test))


def _same_stats(stats, run) -> bool:
    return all(np.shape(s) == np.shape(run[key]) and np.allclose(s, run[key], rtol=STATS_RTOL, atol=STATS_ATOL)
               for s, key in zip(stats, ("running_mean", "running_var")))


def same_run(run, other, n_test) -> bool:
    """Whether two runs (dicts with the curve and the running statistics) count as the same here."""
    return _same_curve(run["curve"], other["curve"], n_test) and _same_stats(
        (run["running_mean"], run["running_var"]), other)


def verify_training_loop(training_curve_of_bn_net, cases):
    """The student's ``train_and_record`` (through the notebook's wrapper) against the loop the exercise
    specifies, run on the same weights and mini-batches: the same curve, and the same running statistics
    at the end (which reveal evaluation in train mode, where every test pass moves them)."""
    for case in cases:
        steps, lr, batch_size, eval_every = (case[key] for key in ("steps", "lr", "batch_size", "eval_every"))
        subject = (f"train_and_record with steps={steps}, lr={lr}, batch_size={batch_size}, "
                   f"eval_every={eval_every}")
        result = training_curve_of_bn_net(**_copies(case["inputs"]), steps=steps, lr=lr, batch_size=batch_size,
                                          eval_every=eval_every, seed=case["seed"])
        result = _given_entries(result, subject, "training_curve_of_bn_net", ("curve", "running_mean", "running_var"))
        curve = _as_array(result["curve"], subject, "the curve")
        expected = case["curve"]
        stats = [_as_array(result["running_mean"], subject, "running_mean"),
                 _as_array(result["running_var"], subject, "running_var")]
        n_test = len(case["inputs"]["y_test"])
        mine = {"curve": curve, "running_mean": stats[0], "running_var": stats[1]}
        if same_run(mine, case, n_test):
            continue
        for mistake in case["mistakes"]:
            if same_run(mine, mistake, n_test):
                _fail(subject, f"the results match a common mistake: {mistake['explanation']}")
        if curve.shape != expected.shape:
            _fail(subject, f"the curve has shape {curve.shape} but should hold {len(expected)} accuracies, one after "
                           f"every {eval_every} training steps (steps {eval_every}, {2 * eval_every}, ...).",
                  "evaluate when step % eval_every == 0, counting steps from 1.")
        if not _same_curve(curve, expected, n_test):
            first = int(np.flatnonzero(~np.isclose(curve, expected, rtol=0, atol=_curve_atol(n_test)))[0])
            _fail(subject, f"the curve differs from the expected one, first at entry {first} (after step "
                           f"{case['eval_steps'][first]}): expected accuracy {expected[first]:.4f} "
                           f"({round(expected[first] * n_test)} of the {n_test} test examples), got "
                           f"{curve[first]:.6g}.",
                  "follow the specification exactly: SGD on the model's parameters with this lr, mini-batches "
                  "drawn with torch.randint from a generator seeded with `seed`, cross-entropy loss, the accuracy "
                  "on x_test in eval mode after steps eval_every, 2 * eval_every, ...")
        _fail(subject, "the curve is right but BN's running statistics at the end are not.",
              "train on exactly `steps` mini-batches, evaluate under torch.no_grad() in eval mode, and do not run "
              "any other forward pass in train mode.")
    _passed("train_and_record gives the expected learning curve and leaves the right running statistics.")


# ---------------------------------------------------------------------------------------------
# Part 2: steps to a target accuracy
# ---------------------------------------------------------------------------------------------

def verify_steps_to_accuracy(steps_to_accuracy, cases):
    """Crafted curves, including an accuracy exactly equal to the target and a curve that never gets there."""
    for case in cases:
        target, eval_every, expected = case["target"], case["eval_every"], case["expected"]
        subject = f"steps_to_accuracy on {case['what']} (target {target:.4f}, eval_every={eval_every})"
        got = steps_to_accuracy(list(case["curve"]), target, eval_every)
        if expected is None:
            if got is not None:
                _fail(subject, f"the curve never reaches the target, so the answer is None; got {got!r}.",
                      "return None (not -1, 0 or the number of steps) when no entry reaches the target.")
            continue
        if got is None or isinstance(got, bool) or not isinstance(got, (int, np.integer, float)):
            _fail(subject, f"expected the step {expected}, got {got!r}.")
        if got == expected:
            continue
        known = next((text for value, text in case["known_wrong"] if got == value), None)
        _fail(subject, f"expected the step {expected}, got {got!r}." + (f" {known}" if known else ""))
    _passed("steps_to_accuracy finds the first step at which the target is reached, and None when it never is.")


# ---------------------------------------------------------------------------------------------
# Part 3: a model builder that inserts batch norm
# ---------------------------------------------------------------------------------------------

def _order_hint(got, expected) -> str | None:
    """A hint from the order of the student's own layers (their ``repr``), the output layer first: a batch
    norm after the output layer must not get the advice to drop the bias of the Linear before it."""
    if got and got[-1].startswith(("BatchNorm1d", "ReLU")):
        return "the output layer is a plain Linear (with a bias), with no batch norm or activation after it."
    if got and got[-1].startswith("Linear") and "bias=False" in got[-1]:
        return "the output layer keeps its bias (nothing after it cancels it): nn.Linear(sizes[-2], sizes[-1])."
    if any(a.startswith("ReLU") and b.startswith("BatchNorm1d") for a, b in zip(got, got[1:])):
        return "batch norm goes between the linear layer and the activation: Linear -> BatchNorm1d -> ReLU."
    if any(a.startswith("Linear") and "bias=True" in a and b.startswith("BatchNorm1d") for a, b in zip(got, got[1:])):
        return ("a linear layer followed by batch norm should have bias=False: BN subtracts the batch mean, "
                "which cancels any bias, so it would only be a wasted parameter.")
    if any(g.startswith("BatchNorm2d") for g in got):
        return "the features of an MLP are a vector per example: nn.BatchNorm1d, not BatchNorm2d."
    if len(got) != len(expected):
        return (f"there should be {len(expected)} layers: three (Linear, BatchNorm1d, ReLU) for each of the "
                f"{(len(expected) - 1) // 3} hidden layer(s), one for each size between the first and the last, "
                "then the output Linear.")
    if [g.split("(")[0] for g in got] == [e.split("(")[0] for e in expected]:
        return ("the layer types are in the right order but some sizes are not: layer i maps sizes[i] to "
                "sizes[i + 1], and BatchNorm1d gets the number of features of the linear layer before it.")
    return None


def verify_bn_mlp(describe_bn_mlp, cases):
    """The layers of ``make_bn_mlp(sizes)``, as the given wrapper lists them (``repr`` of each), against
    torch's own layers in the specified order."""
    for case in cases:
        sizes = list(case["sizes"])
        subject = f"make_bn_mlp({sizes})"
        result = _given_entries(describe_bn_mlp(sizes), subject, "describe_bn_mlp", ("layers",))
        got = result["layers"]
        if not isinstance(got, (list, tuple)) or not all(isinstance(g, str) for g in got):
            _fail(subject, "the given wrapper describe_bn_mlp was changed; restore it.")
        got, expected = list(got), list(case["expected"])
        if got == expected:
            continue
        text = "\n    ".join(got)
        wanted = "\n    ".join(expected)
        _fail(subject, f"the layers are\n    {text}\n  but should be\n    {wanted}", _order_hint(got, expected))
    _passed("make_bn_mlp builds Linear(bias=False) -> BatchNorm1d -> ReLU blocks and a plain output layer.")


# ---------------------------------------------------------------------------------------------
# Part 4: folding batch norm into the linear layer
# ---------------------------------------------------------------------------------------------

FOLD_ENTRIES = ("folded_weight", "folded_bias", "folded_output", "linear_weight_after", "running_var_after")


def verify_fold_bn(fold_bn_outputs, cases):
    """The folded layer's weight, bias and output (through the notebook's wrapper) against the reference
    fold, which is tested against torch's Linear + BatchNorm1d in eval mode; and the original layers left
    unchanged."""
    for case in cases:
        inputs = case["inputs"]
        n_out, n_in = inputs["weight"].shape
        subject = (f"fold_bn_into_linear for Linear({n_in}, {n_out}, bias={inputs['bias'] is not None}) and "
                   f"BatchNorm1d(eps={inputs['eps']})")
        result = _given_entries(fold_bn_outputs(**_copies(inputs)), subject, "fold_bn_outputs", FOLD_ENTRIES)
        for name, after, before in (("linear.weight", result["linear_weight_after"], inputs["weight"]),
                                    ("bn.running_var", result["running_var_after"], inputs["running_var"])):
            if not np.array_equal(_as_array(after, subject, f"{name} after the call"), before):
                _fail(subject, f"{name} was changed in place by the call.",
                      "the original layers must keep working: build a new nn.Linear and copy the folded values into "
                      "it (folded.weight.copy_(linear.weight * scale[:, None])), without mul_ or += on linear or bn.")
        if result["folded_bias"] is None:
            _fail(subject, "the folded layer has no bias. It needs one even when the original linear layer had "
                           "none: batch norm's shift goes there (nn.Linear(..., bias=True)).")
        _compare(subject, "the folded weight", result["folded_weight"], case["weight"], case["weight_mistakes"])
        _compare(subject, "the folded bias", result["folded_bias"], case["bias"], case["bias_mistakes"])
        _compare(subject, "the folded layer's output", result["folded_output"], case["output"])
    _passed("fold_bn_into_linear returns a layer that computes Linear -> BatchNorm1d (eval mode) exactly.")


# ---------------------------------------------------------------------------------------------
# Part 5: checking a fold the right way
# ---------------------------------------------------------------------------------------------

FOLDING_ERROR_ENTRIES = ("error", "modes", "running_mean_after", "running_var_after", "first_weight_after")
LAYER_NAMES = ["the model", "model[0] (Linear)", "model[1] (BatchNorm1d)", "model[2] (ReLU)", "model[3] (Linear)"]


def verify_folding_error(folding_error_outputs, cases):
    """``folding_error(model, folded_layer, x)`` (through the notebook's wrapper) on a model in train mode and
    one in eval mode, given a slightly wrong folded layer: the largest difference, measured in eval mode, and
    the model left as it was (every layer's mode, BN's running statistics, the first weight)."""
    for case in cases:
        inputs = case["inputs"]
        train_mode = bool(inputs["train_mode"])
        hidden, n_in = inputs["w1"].shape
        mode = "train" if train_mode else "eval"
        subject = (f"folding_error on a model in {mode} mode, Linear({n_in}, {hidden}) -> BN -> ReLU -> Linear, "
                   f"{len(inputs['x'])} inputs")
        result = _given_entries(folding_error_outputs(**_copies(inputs)), subject, "folding_error_outputs",
                                FOLDING_ERROR_ENTRIES)
        error = _as_array(result["error"], subject, "the difference you returned")
        if error.shape != ():
            _fail(subject, f"folding_error should return one number (a Python float), not an array of shape "
                           f"{error.shape}.", "reduce the differences with .abs().max() and convert with .item().")
        _compare(subject, "the difference you returned", error, case["error"], case["mistakes"],
                 hint="the folded network is nn.Sequential(folded_layer, *model[2:]); compare its output with "
                      "model(x) in eval mode.")
        modes = _as_array(result["modes"], subject, "the layers' modes afterwards")
        changed = [name for name, flag in zip(LAYER_NAMES, modes) if bool(flag) != train_mode]
        if changed:
            which = ("the model and every layer in it" if len(changed) == len(LAYER_NAMES) else ", ".join(changed))
            _fail(subject, f"the model was in {mode} mode before folding_error, but afterwards {which} "
                           f"{'is' if len(changed) == 1 else 'are'} in {'eval' if train_mode else 'train'} mode.",
                  "remember the mode with was_training = model.training, and restore it at the end with "
                  "model.train(was_training), which sets every layer.")
        for name, after, before in (("BN's running_mean", result["running_mean_after"], inputs["running_mean"]),
                                    ("BN's running_var", result["running_var_after"], inputs["running_var"]),
                                    ("model[0].weight", result["first_weight_after"], inputs["w1"])):
            if not np.allclose(_as_array(after, subject, name), before, rtol=0, atol=1e-12):
                _fail(subject, f"{name} changed during folding_error.",
                      "a forward pass in train mode updates the running statistics (by momentum 0.1), and a check "
                      "must not change the model it checks: run the model in eval mode, under torch.no_grad().")
    _passed("folding_error measures the fold in eval mode and leaves the model as it found it.")


check_training_loop = stored_check(EXERCISE, verify_training_loop)
check_steps_to_accuracy = stored_check(EXERCISE, verify_steps_to_accuracy)
check_bn_mlp = stored_check(EXERCISE, verify_bn_mlp)
check_fold_bn = stored_check(EXERCISE, verify_fold_bn)
check_folding_error = stored_check(EXERCISE, verify_folding_error)
