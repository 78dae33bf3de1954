"""Checks of Exercise 6: Santurkar et al.'s gradient-change measure, the loss along the gradient with the
gradient predictiveness, the effective learning rate of a scale-invariant weight, and a question answered
from the student's own run.

The checks can pass only arrays, so the notebook has given wrappers (read-only cells) that build a torch
network from a dict of arrays, call the student's function on it and return a dict of named results.
Each ``verify_*`` function calls a wrapper on the given cases and compares what comes back with the
stored expected results, and with the results of known mistakes; the notebook's ``check_*`` functions
run them on the cases stored in the kit. The question's check first compares the student's own runs of
the given training run with the reference runs (stored as data), then the answer with the factor those
runs give; the grader asks the same question at learning rates of its own.
"""

from __future__ import annotations

import copy

import numpy as np

from ._core import _as_array, _compare, _fail, _given_entries, _passed
from ._fixtures import stored_check

EXERCISE = "ex06_why_bn_works"
WRAPPER_ENTRIES = ("result", "parameters_after", "train_mode_after")
# Putting parameters back by subtracting the step again leaves rounding errors of this size at most.
RESTORED_ATOL = 1e-12


def _network_words(net) -> str:
    sizes = [np.shape(net["weights"][0])[1]] + [np.shape(w)[0] for w in net["weights"]]
    return f"a {'-'.join(map(str, sizes))} network {'with' if net['gammas'] else 'without'} batch norm"


def _result(result, subject: str, names, example: str) -> dict:
    """The student's returned dict, after checking it has every named entry."""
    if not isinstance(result, dict) or any(name not in result for name in names):
        got = f"a dict with the keys {sorted(map(str, result))}" if isinstance(result, dict) else \
            f"a {type(result).__name__}"
        _fail(subject, f"the function should return a dict with the entries {list(names)}, but it returned {got}.",
              f"end with `return {example}`.")
    return result


def _untouched(subject: str, out: dict, case: dict) -> None:
    """The model's parameters and mode after the call are those it had before."""
    after = out["parameters_after"]
    if not isinstance(after, (list, tuple)) or len(after) != len(case["parameters"]):
        _fail(subject, "the given wrapper was changed: parameters_after is not one array per parameter.",
              "restore the given cells from a fresh copy of the notebook.")
    changed = [name for name, now, before in zip(case["parameter_names"], after, case["parameters"])
               if np.shape(now) != np.shape(before)
               or not np.allclose(_as_array(now, subject, name), before, rtol=0, atol=RESTORED_ATOL)]
    if changed:
        one = len(changed) == 1
        _fail(subject, f"the call changed the model: {', '.join(changed)} {'is' if one else 'are'} not what "
                       f"{'it was' if one else 'they were'} before the call.",
              "a measurement must leave the model as it found it: save its state before you move anything "
              "(saved = copy.deepcopy(model.state_dict())) and put it back at the end "
              "(model.load_state_dict(saved)).")
    if not out["train_mode_after"]:
        _fail(subject, "the model was in train mode before the call and is in eval mode after it.",
              "leave the model in train mode: the measurement is of the loss SGD sees, in train mode.")


def _verify_measurement(wrapper, wrapper_name: str, case: dict, subject: str, outputs: dict, hint: str) -> None:
    """Call the given wrapper on a copy of the case's inputs and compare each of the student's ``outputs``
    (``{key: expected shape}``) with ``case[key]``, naming the mistakes of ``case[key + "_mistakes"]``; then,
    when the case holds the model's parameters, check that the call left them and the mode alone."""
    out = _given_entries(wrapper(**copy.deepcopy(case["inputs"])), subject, wrapper_name,
                         WRAPPER_ENTRIES if "parameters" in case else ("result",))
    example = "{" + ", ".join(f'"{key}": ...' for key in outputs) + "}"
    result = _result(out["result"], subject, tuple(outputs), example)
    for key, shape in outputs.items():
        got = _as_array(result[key], subject, f'"{key}"')
        if got.shape != shape:
            what = "one number" if shape == () else f"one number per step size ({shape[0]})"
            _fail(subject, f'"{key}" should be {what}, but it has shape {got.shape}.',
                  "return Python floats (.item()), or a list of them.")
        _compare(subject, f'"{key}"', got, case[key], case[f"{key}_mistakes"], hint=hint)
    if "parameters" in case:
        _untouched(subject, out, case)


# ---------------------------------------------------------------------------------------------
# Part 1: the gradient-change measure
# ---------------------------------------------------------------------------------------------

def verify_gradient_change(gradient_change_outputs, cases):
    """``gradient_change(model, x_train, y_train, layer, lr, batch_size, seed)`` (through the notebook's
    wrapper): the l2 distance and the cosine between the layer's weight gradient before and after the layers
    below it take an SGD step, on one mini-batch, against the reference; and the model left as it was."""
    for case in cases:
        inputs = case["inputs"]
        subject = (f"gradient_change for linear layer {inputs['layer']} of {_network_words(inputs['net'])} "
                   f"(lr={inputs['lr']}, batch_size={inputs['batch_size']}, seed={inputs['seed']})")
        _verify_measurement(gradient_change_outputs, "gradient_change_outputs", case, subject,
                            {"l2": (), "cosine": ()},
                            "draw the batch once, as the notebook says: idx = torch.randint(0, len(x_train), "
                            "(batch_size,), generator=torch.Generator().manual_seed(seed)); G is the layer's "
                            "weight gradient there; step every parameter of "
                            "the modules before that layer by -lr * its gradient; G' is the same weight's gradient "
                            "on the same batch; l2 = |G - G'|, cosine = <G, G'> / (|G| |G'|).")
    _passed("gradient_change measures how much a layer's gradient changes when the layers below it step, and "
            "leaves the model as it found it.")


# ---------------------------------------------------------------------------------------------
# Part 2: the loss along the gradient and the gradient predictiveness
# ---------------------------------------------------------------------------------------------

def verify_loss_landscape(loss_landscape_outputs, cases):
    """``loss_landscape(model, x, y, step_sizes)`` (through the notebook's wrapper): the loss at
    ``w - eta * g`` and the l2 change of the whole gradient there, for every step size, against the
    reference; and the model left as it was."""
    for case in cases:
        inputs = case["inputs"]
        steps = list(inputs["step_sizes"])
        subject = (f"loss_landscape for {_network_words(inputs['net'])}, {len(inputs['y'])} examples, "
                   f"step sizes {steps}")
        _verify_measurement(loss_landscape_outputs, "loss_landscape_outputs", case, subject,
                            {"losses": (len(steps),), "gradient_changes": (len(steps),)},
                            "g is the gradient of every parameter at w, in train mode; for each step size eta, "
                            "move every parameter to p - eta * g_p (from w each time), take the loss and the whole "
                            "gradient there, and put w back.")
    _passed("loss_landscape gives the loss along the gradient and how much the gradient changes, from the same "
            "point for every step size, and leaves the model as it found it.")


# ---------------------------------------------------------------------------------------------
# Part 3: the effective learning rate of a scale-invariant weight
# ---------------------------------------------------------------------------------------------

def verify_effective_lr(effective_lr_outputs, cases):
    """``effective_learning_rate(model, x, y, layer, lr)`` (through the notebook's wrapper): ``lr / |W|^2``
    for the weight W of linear layer ``layer``, and the cosine between W and its gradient, against the
    reference."""
    for case in cases:
        inputs = case["inputs"]
        subject = (f"effective_learning_rate for linear layer {inputs['layer']} of "
                   f"{_network_words(inputs['net'])} (lr={inputs['lr']})")
        _verify_measurement(effective_lr_outputs, "effective_lr_outputs", case, subject,
                            {"effective_lr": (), "cosine": ()},
                            "effective_lr = lr / |W|^2, with |W| the norm of the whole weight matrix of linear "
                            "layer `layer` (counted from 0); cosine = (W * g).sum() / (|W| |g|), with g the "
                            "gradient of the cross-entropy on (x, y) with respect to W, in train mode.")
    _passed("effective_learning_rate gives lr / |W|^2, and W's gradient is orthogonal to W (up to batch norm's eps).")


# ---------------------------------------------------------------------------------------------
# Part 4: the question, answered from the student's own run
# ---------------------------------------------------------------------------------------------

def verify_tuned_rate_factor(tuned_rate_factor, rate_tuning_run, cases):
    """``tuned_rate_factor(small_lr, large_lr)``: for each case, first the student's own runs of the given
    ``rate_tuning_run`` at both rates against the reference runs' weights (the runs are given code, so they
    agree unless the given cells were changed), then the answer against the factor those runs give,
    naming the known mistakes."""
    for case in cases:
        small, large = case["small_lr"], case["large_lr"]
        subject = f"tuned_rate_factor({small}, {large})"
        for run in case["runs"]:
            call = f"rate_tuning_run({run['lr']})"
            out = _given_entries(rate_tuning_run(run["lr"]), subject, "rate_tuning_run",
                                 ("weight_before", "weight_after"))
            for key in ("weight_before", "weight_after"):
                _compare(subject, f'your run {call}["{key}"]', out[key], run[key],
                         hint="the runs are given code: restore the given cells (question_problem, "
                              "rate_tuning_run) from a fresh copy of the notebook and run them again.")
        answer = tuned_rate_factor(small, large)
        try:
            number = None if isinstance(answer, (bool, str)) else np.asarray(answer, dtype=np.float64)
        except (TypeError, ValueError, RuntimeError):   # RuntimeError: a tensor that requires grad
            number = None
        if number is None or number.shape != ():
            _fail(subject, f"the answer should be one number, but it is {answer!r}.",
                  "return a Python float computed from the two runs.")
        _compare(subject, "the factor", number, case["expected"], case["mistakes"],
                 hint=f"run rate_tuning_run({small}) and rate_tuning_run({large}); each run's effective rate after "
                      "training is its lr / |W|^2, with |W| the norm of the whole \"weight_after\" matrix; the "
                      "answer is the second run's divided by the first's.")
    _passed("tuned_rate_factor gives how many times larger the effective rate ends at the larger learning rate, "
            "from your own runs.")


check_gradient_change = stored_check(EXERCISE, verify_gradient_change)
check_loss_landscape = stored_check(EXERCISE, verify_loss_landscape)
check_effective_lr = stored_check(EXERCISE, verify_effective_lr)
check_tuned_rate_factor = stored_check(EXERCISE, verify_tuned_rate_factor)
