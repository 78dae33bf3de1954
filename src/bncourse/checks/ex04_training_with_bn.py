"""Cases for the checks of Exercise 4: a training loop that switches between train and eval mode,
steps to a target accuracy, a model builder that inserts batch norm, and folding batch norm into the
linear layer before it.

The grader can pass only arrays, so the notebook has small given wrappers that build torch modules
from arrays, call the student's function and return a dict of named arrays. Each ``*_cases`` function
builds the inputs from its parameters and computes the expected results and those of known mistakes:
with torch itself (the training loop written here, run on the same initial weights and mini-batches,
with each known mistake switched on in turn, and PyTorch's own layers) and with
:func:`bncourse.reference.fold_batchnorm_into_linear`. The comparison is the student kit's
(:mod:`bnkit.ex04_training_with_bn`): the notebook's checks run it on the cases built here with the
default parameters (stored in the kit as data), the hidden tests and the grader's trusted checks on
other parameters. ``check_*`` does both steps. torch is imported inside the builders, so importing
the checks stays fast.
"""

from __future__ import annotations

import numpy as np
from bnkit import ex04_training_with_bn as kit

from .. import reference
from ._core import Mistake, _torch


# ---------------------------------------------------------------------------------------------
# Part 1: the training loop
# ---------------------------------------------------------------------------------------------

def _problem(rng, n_in, hidden, classes, n_train, n_test):
    """A small classification problem whose classes overlap (so that the test accuracy keeps moving during
    training instead of sitting at 1.0), and the initial weights of a Linear -> BatchNorm1d -> ReLU -> Linear
    network (torch's layouts)."""
    centres = rng.normal(0, 1.0, size=(classes, n_in))
    y_train, y_test = rng.integers(classes, size=n_train), rng.integers(classes, size=n_test)
    x_train = centres[y_train] + rng.normal(size=(n_train, n_in)) + 3.0   # offset: BN's running mean matters
    x_test = centres[y_test] + rng.normal(size=(n_test, n_in)) + 3.0
    w1 = rng.normal(0, 1 / np.sqrt(n_in), size=(hidden, n_in))
    w2, b2 = rng.normal(0, 1 / np.sqrt(hidden), size=(classes, hidden)), np.zeros(classes)
    return w1, w2, b2, x_train, y_train, x_test, y_test


def _bn_net(w1, w2, b2):
    """The exercise's Linear(bias=False) -> BatchNorm1d -> ReLU -> Linear network in float64, with these weights."""
    torch = _torch()
    nn = torch.nn
    model = nn.Sequential(nn.Linear(w1.shape[1], w1.shape[0], bias=False), nn.BatchNorm1d(w1.shape[0]), nn.ReLU(),
                          nn.Linear(w2.shape[1], w2.shape[0])).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(w1))
        model[3].weight.copy_(torch.from_numpy(w2))
        model[3].bias.copy_(torch.from_numpy(b2))
    return model


def _reference_curve(w1, w2, b2, x_train, y_train, x_test, y_test, steps, lr, batch_size, eval_every, seed, *,
                     eval_mode=True, back_to_train=True, zero_grad=True, eval_shift=0, eval_on_train=False):
    """The loop the exercise specifies, with one of the known mistakes switched on; returns the curve
    and the BN layer's running mean and variance at the end. ``eval_shift`` evaluates after step s when
    (s + eval_shift) % eval_every == 0 (the spec: 0)."""
    torch = _torch()
    functional = torch.nn.functional
    model = _bn_net(w1, w2, b2)
    xs, ys = torch.from_numpy(x_train), torch.from_numpy(y_train).long()
    xt, yt = (xs, ys) if eval_on_train else (torch.from_numpy(x_test), torch.from_numpy(y_test).long())
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
        if (step + eval_shift) % eval_every == 0:
            if eval_mode:
                model.eval()
            with torch.no_grad():
                curve.append((model(xt).argmax(dim=1) == yt).double().mean().item())
    return {"curve": np.array(curve), "running_mean": model[1].running_mean.numpy().copy(),
            "running_var": model[1].running_var.numpy().copy()}


def _trajectory(w1, w2, b2, x_train, y_train, x_test, y_test, steps, lr, batch_size, seed):
    """The specified loop run for ``steps`` steps, evaluated (in eval mode, under no_grad, which changes
    nothing in that loop) after every step on the test and the training set, with BN's running statistics
    after every step: the runs that differ from the right one only in when or on what they evaluate, or in
    how many steps they train, are read off it instead of being trained again."""
    torch = _torch()
    functional = torch.nn.functional
    model = _bn_net(w1, w2, b2)
    xs, ys = torch.from_numpy(x_train), torch.from_numpy(y_train).long()
    xt, yt = torch.from_numpy(x_test), torch.from_numpy(y_test).long()
    sampler = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    recorded = {"test": [], "train": [], "running_mean": [], "running_var": []}
    for _ in range(steps):
        model.train()
        idx = torch.randint(0, len(xs), (batch_size,), generator=sampler)
        loss = functional.cross_entropy(model(xs[idx]), ys[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.eval()
        with torch.no_grad():
            recorded["test"].append((model(xt).argmax(dim=1) == yt).double().mean().item())
            recorded["train"].append((model(xs).argmax(dim=1) == ys).double().mean().item())
        recorded["running_mean"].append(model[1].running_mean.numpy().copy())
        recorded["running_var"].append(model[1].running_var.numpy().copy())
    return recorded


def _read_off(trajectory, steps, eval_every, eval_shift=0, eval_on_train=False):
    """The run of a loop that trains ``steps`` steps and evaluates after step s when
    (s + eval_shift) % eval_every == 0, from a trajectory at least ``steps`` long."""
    accuracies = trajectory["train" if eval_on_train else "test"]
    return {"curve": np.array([accuracies[s - 1] for s in range(1, steps + 1) if (s + eval_shift) % eval_every == 0]),
            "running_mean": trajectory["running_mean"][steps - 1], "running_var": trajectory["running_var"][steps - 1]}


_LOOP_MISTAKES = (
    (dict(eval_mode=False),
     "the test accuracy was measured in train mode. Call model.eval() before evaluating: in train "
     "mode batch norm normalizes the test set with its own statistics and also updates the running "
     "averages with them."),
    (dict(back_to_train=False),
     "the model stays in eval mode after the first evaluation, so later steps train with the running "
     "statistics and never update them. Call model.train() before every training step."),
    (dict(zero_grad=False),
     "the gradients are never reset, so each step adds the new gradient to all the old ones. "
     "Call optimizer.zero_grad() before loss.backward()."),
)

#: The settings of the notebook's visible case: what an answer that ignores an argument uses instead.
DEFAULT_SETTINGS = {"steps": 30, "lr": 0.1, "batch_size": 16, "eval_every": 5, "seed": 0}


def _loop_mistakes(problem, steps, lr, batch_size, eval_every, seed):
    """The right run, and the runs of the loop with each known mistake: the switches above, evaluation on the
    wrong set or at the wrong steps, and each argument replaced by a value an answer might hard-code."""
    settings = dict(steps=steps, lr=lr, batch_size=batch_size, eval_every=eval_every, seed=seed)
    trajectory = _trajectory(*problem, max(steps, DEFAULT_SETTINGS["steps"]), lr, batch_size, seed)
    expected = _read_off(trajectory, steps, eval_every)
    trained = [(dict(settings, **switch), text) for switch, text in _LOOP_MISTAKES]
    read_off = [(dict(steps=steps, eval_every=eval_every, eval_on_train=True),
                 "the accuracy was measured on the training set. Measure it on x_test and y_test.")]
    if eval_every > 1:
        right = ", ".join(str(k * eval_every) for k in (1, 2, 3))
        causes = {-1: "with `for step in range(steps)` and `if step % eval_every == 0` the count starts at 0, so "
                      "each evaluation comes one step early",
                  1: "the evaluation ran before the training step it belongs after"}
        if eval_every == 2:   # both give the same steps (1, 3, 5, ...): one message that names both causes
            causes = {-1: f"{causes[-1]}; or {causes[1]}"}
        for shift, cause in causes.items():
            measured = ", ".join(str(k * eval_every - shift) for k in (1, 2, 3))
            read_off.append((dict(steps=steps, eval_every=eval_every, eval_shift=shift),
                             f"the accuracies were measured after steps {measured}, ... instead of {right}, ...: "
                             f"{cause}. Count steps from 1 and evaluate right after step k's update when "
                             f"k % eval_every == 0."))
    for name, value in DEFAULT_SETTINGS.items():
        if settings[name] != value:
            text = (f"the results match {name}={value} instead of the {name}={settings[name]} passed in. "
                    f"Use the {name} argument.")
            if name in ("steps", "eval_every"):
                read_off.append(({**dict(steps=steps, eval_every=eval_every), name: value}, text))
            else:
                trained.append((dict(settings, **{name: value}), text))
    mistakes = [{**_reference_curve(*problem, **run), "explanation": text} for run, text in trained]
    mistakes += [{**_read_off(trajectory, **run), "explanation": text} for run, text in read_off]
    return expected, mistakes


def training_loop_cases(cases=((6, 8, 3, 60, 40, 30, 0.1, 16, 5), (4, 6, 3, 50, 30, 24, 0.2, 8, 4)), seed=0):
    """Problems and settings for ``train_and_record``, with the curve and BN's running statistics at the
    end that the specified loop gives, and those of the loop with each known mistake. Each problem is drawn
    again (up to 50 times) until the kit's comparison tells every known mistake from the right run and from
    the other mistakes, so that no draw lets a known mistake through or names the wrong one."""
    rng = np.random.default_rng(seed)
    built = []
    for n_in, hidden, classes, n_train, n_test, steps, lr, batch_size, eval_every in cases:
        for _ in range(50):
            w1, w2, b2, x_train, y_train, x_test, y_test = problem = _problem(rng, n_in, hidden, classes, n_train,
                                                                              n_test)
            sampler_seed = int(rng.integers(1, 2**31))
            settings = dict(steps=steps, lr=lr, batch_size=batch_size, eval_every=eval_every, seed=sampler_seed)
            expected, mistakes = _loop_mistakes(problem, **settings)
            runs = [expected, *mistakes]   # each one told apart from the right run and from the others: one message
            if not any(kit.same_run(a, b, n_test) for i, a in enumerate(runs) for b in runs[i + 1:]):
                break
        else:
            raise RuntimeError(f"no problem of {cases} tells every known mistake apart in 50 draws")
        built.append({"inputs": {"w1": w1, "w2": w2, "b2": b2, "x_train": x_train, "y_train": y_train,
                                 "x_test": x_test, "y_test": y_test},
                      "steps": steps, "lr": lr, "batch_size": batch_size, "eval_every": eval_every,
                      "seed": sampler_seed, "eval_steps": np.arange(1, len(expected["curve"]) + 1) * eval_every,
                      **expected, "mistakes": mistakes})
    return built


# ---------------------------------------------------------------------------------------------
# Part 2: steps to a target accuracy
# ---------------------------------------------------------------------------------------------

def steps_to_accuracy_cases(seed=1):
    """Crafted curves, including an accuracy exactly equal to the target and a curve that never gets there,
    with the step each should give and the wrong answers a known mistake gives instead."""
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
    built = []
    for curve, target, expected, what in cases:
        known = {}
        if expected is not None:
            index = expected // eval_every - 1
            known = {index: "that is the index of the entry, not the step. Entry i was recorded after "
                            "(i + 1) * eval_every steps.",
                     index * eval_every: "entry i was recorded after (i + 1) * eval_every steps, not i * eval_every.",
                     expected + eval_every: "an entry equal to the target counts as reaching it: use >=, not >."}
        built.append({"curve": curve, "target": target, "eval_every": eval_every, "expected": expected,
                      "what": what, "known_wrong": [[value, text] for value, text in known.items()]})
    return built


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


def bn_mlp_cases(cases=((4, 8, 3), (6, 10, 10, 5), (3, 2))):
    """Layer sizes, and torch's own layers (``repr`` of each) in the specified order."""
    return [{"sizes": list(sizes), "expected": _expected_layers(sizes)} for sizes in cases]


# ---------------------------------------------------------------------------------------------
# Part 4: folding batch norm into the linear layer
# ---------------------------------------------------------------------------------------------

def fold_bn_cases(cases=((5, 4, 6, True), (3, 7, 2, False)), seed=3):
    """Linear + BatchNorm1d parameters and inputs, with the reference fold's weight, bias and output on the
    inputs (the reference fold is tested against torch's Linear + BatchNorm1d in eval mode), and what
    known mistakes give for the weight and the bias."""
    rng = np.random.default_rng(seed)
    built = []
    for case, (n_in, n_out, n, with_bias) in enumerate(cases):
        weight = rng.normal(size=(n_out, n_in))
        bias = rng.normal(size=n_out) if with_bias else None
        running_mean, running_var = rng.uniform(-2, 2, size=n_out), rng.uniform(0.2, 3, size=n_out)
        gamma, beta = rng.uniform(0.5, 2, size=n_out), rng.uniform(-1, 1, size=n_out)
        eps = 1e-3 if case == 0 else 1e-5   # once not the default: a hard-coded 1e-5 gets that case wrong
        x = rng.normal(1.0, 2.0, size=(n, n_in))
        want_w, want_b = reference.fold_batchnorm_into_linear(weight, bias, running_mean, running_var, gamma, beta, eps)
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
        built.append({"inputs": {"weight": weight, "bias": bias, "running_mean": running_mean,
                                 "running_var": running_var, "gamma": gamma, "beta": beta, "eps": eps, "x": x},
                      "weight": want_w, "bias": want_b, "output": x @ want_w.T + want_b,
                      "weight_mistakes": weight_mistakes, "bias_mistakes": bias_mistakes})
    return built


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


def folding_error_cases(cases=((5, 4, 3, 8, True), (3, 6, 2, 5, False)), seed=4):
    """A model in train mode and one in eval mode, each with a slightly wrong folded layer: the largest
    difference, measured in eval mode, and what known mistakes give instead."""
    rng = np.random.default_rng(seed)
    eps = 1e-5
    built = []
    for case, (n_in, hidden, classes, n, train_mode) in enumerate(cases):
        w1 = rng.normal(0, 1 / np.sqrt(n_in), size=(hidden, n_in))
        running_mean, running_var = rng.uniform(-1, 1, size=hidden), rng.uniform(0.3, 2, size=hidden)
        gamma, beta = rng.uniform(0.5, 2, size=hidden), rng.uniform(0, 1.5, size=hidden)   # mostly alive units
        w2, b2 = rng.normal(0, 1 / np.sqrt(hidden), size=(classes, hidden)), rng.normal(size=classes)
        x = rng.normal(1.5, 2.0, size=(max(n, 2), n_in))   # far from the running statistics: batch statistics differ
        params = (w1, running_mean, running_var, gamma, beta, w2, b2)
        folded_w, folded_b, difference = _candidate_fold(rng, params, eps, x, largest_positive=case % 2 == 0)
        folded = _folded_outputs(x, folded_w, folded_b, w2, b2)
        model_train = _bn_mlp_outputs(x, *params, eps, train_mode=True)
        mistakes = [
            Mistake(float(np.abs(model_train - folded).max()),
                    "the model was run in train mode, so batch norm normalized x with x's own mean and variance. "
                    "A fold bakes in the running statistics, so it can only agree with the model in eval mode: "
                    "call model.eval() before computing model(x)."),
            Mistake(float(np.abs(difference).mean()),
                    "that is the mean absolute difference; return the largest one, .abs().max()."),
            Mistake(float(difference.max()), "that is the largest signed difference; take the absolute value "
                                                "first, .abs().max()."),
            Mistake(float((-difference).max()), "that is the largest signed difference; take the absolute value "
                                                   "first, .abs().max()."),
        ]
        built.append({"inputs": {"w1": w1, "running_mean": running_mean, "running_var": running_var, "gamma": gamma,
                                 "beta": beta, "w2": w2, "b2": b2, "folded_weight": folded_w,
                                 "folded_bias": folded_b, "x": x, "train_mode": bool(train_mode)},
                      # numbers, not 0-d arrays: the kit's fixtures store an array with at least one dimension
                      "error": float(np.abs(difference).max()), "mistakes": mistakes})
    return built


# ---------------------------------------------------------------------------------------------
# The checks: the kit's comparison on cases built here
# ---------------------------------------------------------------------------------------------

def check_training_loop(training_curve_of_bn_net, **params):
    """The student's ``train_and_record`` (through the notebook's wrapper) against the same loop written
    here: the same curve, and the same running statistics at the end (which reveal evaluation in train
    mode, where every test pass moves them)."""
    kit.verify_training_loop(training_curve_of_bn_net, training_loop_cases(**params))


def check_steps_to_accuracy(steps_to_accuracy, **params):
    """Crafted curves, including an accuracy exactly equal to the target and a curve that never gets there."""
    kit.verify_steps_to_accuracy(steps_to_accuracy, steps_to_accuracy_cases(**params))


def check_bn_mlp(describe_bn_mlp, **params):
    """The layers of ``make_bn_mlp(sizes)``, as the given wrapper lists them (``repr`` of each), against
    torch's own layers in the specified order."""
    kit.verify_bn_mlp(describe_bn_mlp, bn_mlp_cases(**params))


def check_fold_bn(fold_bn_outputs, **params):
    """The folded layer's weight, bias and output (through the notebook's wrapper) against the reference fold."""
    kit.verify_fold_bn(fold_bn_outputs, fold_bn_cases(**params))


def check_folding_error(folding_error_outputs, **params):
    """``folding_error(model, folded_layer, x)`` (through the notebook's wrapper) on a model in train mode and
    one in eval mode, given a slightly wrong folded layer: the largest difference, measured in eval mode, and
    the model left as it was (every layer's mode, BN's running statistics, the first weight)."""
    kit.verify_folding_error(folding_error_outputs, folding_error_cases(**params))


#: The visible checks of the notebook and their cases, stored in the kit (``bnkit/fixtures``).
VISIBLE = {
    "check_training_loop": training_loop_cases,
    "check_steps_to_accuracy": steps_to_accuracy_cases,
    "check_bn_mlp": bn_mlp_cases,
    "check_fold_bn": fold_bn_cases,
    "check_folding_error": folding_error_cases,
}
