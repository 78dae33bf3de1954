"""Cases for the checks of Exercise 2 (the batch normalization forward pass), computed with the reference.

Each ``*_cases`` function builds inputs from its parameters and computes, with
:mod:`bncourse.reference`, the expected outputs and the outputs of known mistakes. The comparison
itself is the student kit's (:mod:`bnkit.ex02_batchnorm_forward`): the kit's notebook checks run
it on the cases built here with the default parameters (stored in the kit as data), the hidden
tests and the grader's trusted checks on other parameters. ``check_*`` does both steps.
"""

from __future__ import annotations

import numpy as np
from bnkit import ex02_batchnorm_forward as kit

from .. import reference
from ._core import Mistake, _affine, _features

# ---------------------------------------------------------------------------------------------
# Known mistakes in the forward pass, each written as the code a student would have written
# ---------------------------------------------------------------------------------------------

def _train_mistakes(x, gamma, beta, eps):
    mean, var = x.mean(axis=0), x.var(axis=0)
    with np.errstate(all="ignore"):
        per_example = (x - x.mean(axis=1, keepdims=True)) / np.sqrt(x.var(axis=1, keepdims=True) + eps)
        return [
            Mistake(gamma * per_example + beta,
                    "the mean and variance were taken over axis 1 (across the features of each example). "
                    "Batch norm takes one mean and one variance per feature, over the batch: axis=0."),
            Mistake(gamma * (x - mean) / np.sqrt(x.var(axis=0, ddof=1) + eps) + beta,
                    "the output was normalised with the unbiased variance (dividing by N-1, as np.var(ddof=1) "
                    "or torch's .var() do). Normalise with the biased variance (divide by N); only running_var "
                    "stores the unbiased one."),
            Mistake(gamma * (x - mean) / np.sqrt(var) + beta,
                    "eps is missing: divide by np.sqrt(var + eps), not np.sqrt(var)."),
            Mistake(gamma * (x - mean) / (np.sqrt(var) + eps) + beta,
                    "eps was added outside the square root: use np.sqrt(var + eps), as PyTorch does."),
            Mistake(gamma * (x - mean) / (var + eps) + beta,
                    "you divided by the variance; divide by the standard deviation np.sqrt(var + eps)."),
            Mistake(gamma * x / np.sqrt(var + eps) + beta,
                    "the mean was not subtracted: x_hat = (x - mean) / np.sqrt(var + eps)."),
            Mistake((x - mean) / np.sqrt(var + eps),
                    "the output is x_hat itself: scale it by gamma and shift it by beta."),
            Mistake(beta * (x - mean) / np.sqrt(var + eps) + gamma,
                    "gamma and beta are swapped: out = gamma * x_hat + beta."),
            Mistake(gamma * x / np.sqrt(1 + eps) + beta,
                    "train mode normalised with the initial running statistics (mean 0, variance 1). "
                    "In train mode use the statistics of the current batch."),
        ]


def _running_stats_after(batches, momentum, *, keras=False, biased=False, ignore_momentum=False,
                         overwrite=False, var_init=1.0, correction_count=None):
    """Running statistics after a sequence of (rows, features) train steps, optionally with a
    known mistake. ``correction_count`` replaces the row count in the unbiased correction."""
    d = batches[0].shape[1]
    running_mean, running_var = np.zeros(d), np.full(d, var_init)
    m = reference.DEFAULT_MOMENTUM if ignore_momentum else momentum
    for x in batches:
        count = correction_count or len(x)
        mean, var = x.mean(axis=0), x.var(axis=0) * (1 if biased else count / (count - 1))
        if overwrite:
            running_mean, running_var = mean, var
        elif keras:
            running_mean, running_var = m * running_mean + (1 - m) * mean, m * running_var + (1 - m) * var
        else:
            running_mean, running_var = (1 - m) * running_mean + m * mean, (1 - m) * running_var + m * var
    return running_mean, running_var


def _running_mistakes(batches, momentum, which: int):
    """Mistakes for running_mean (which=0) or running_var (which=1)."""
    candidates = [
        (dict(keras=True), "the momentum convention is reversed (Keras style). In PyTorch momentum is the weight "
                           "of the NEW batch: running = (1 - momentum) * running + momentum * batch_statistic."),
        (dict(biased=True), "running_var accumulated the biased variance. PyTorch stores the unbiased batch "
                            "variance (var * N / (N - 1)) in running_var, although it normalises with the biased one."),
        (dict(overwrite=True), "the running statistics were replaced by the last batch's statistics instead of "
                               "being averaged with momentum."),
        (dict(ignore_momentum=True), "bn_param['momentum'] was ignored (the default 0.1 was used instead)."),
        (dict(var_init=0.0), "running_var started at 0. PyTorch starts running_mean at 0 and running_var at 1."),
    ]
    mistakes = [Mistake(_running_stats_after(batches, momentum, **kw)[which], text)
                for kw, text in candidates if not (kw.get("ignore_momentum") and momentum == reference.DEFAULT_MOMENTUM)]
    d = batches[0].shape[1]
    never_updated = np.zeros(d) if which == 0 else np.ones(d)
    mistakes.append(Mistake(never_updated, "the running statistics were never updated: after each train step, "
                                           "store the new averages back into bn_param."))
    return mistakes



# ---------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------

def _eps_ignored(x, gamma, beta, eps, mean, var):
    """The output with the default eps in place of bn_param['eps'] (none when they are the same)."""
    if eps == reference.DEFAULT_EPS:
        return []
    with np.errstate(all="ignore"):
        wrong = gamma * (x - mean) / np.sqrt(var + reference.DEFAULT_EPS) + beta
    return [Mistake(wrong, f"bn_param['eps'] was ignored: this is the output with eps = {reference.DEFAULT_EPS}, but "
                           f"this call passed eps = {eps}. Read it with bn_param.get('eps', 1e-5).")]


def forward_train_cases(shapes=((4, 3), (16, 5), (64, 10)), seed=0, epsilons=(1e-5, 1e-2, 1e-3)):
    """(N, D) batches; the last has a constant feature, whose variance is 0, so a missing eps shows up.
    Case i passes eps = epsilons[i % len(epsilons)] in bn_param, so a hard-coded eps shows up too."""
    rng = np.random.default_rng(seed)
    cases = []
    for case, (n, d) in enumerate(shapes):
        x = _features(rng, n, d, constant_feature=case == len(shapes) - 1)
        gamma, beta = _affine(rng, d)
        eps = float(epsilons[case % len(epsilons)])
        expected, _ = reference.batchnorm_forward(x, gamma, beta, {"mode": "train", "eps": eps})
        cases.append({"x": x, "gamma": gamma, "beta": beta, "eps": eps, "expected": expected,
                      "mistakes": _eps_ignored(x, gamma, beta, eps, x.mean(axis=0), x.var(axis=0))
                      + _train_mistakes(x, gamma, beta, eps)})
    return cases


def running_stats_cases(n=32, d=4, momenta=(0.1, 0.3), steps=5, seed=1):
    """Several train steps per momentum, with torch's running statistics at the end."""
    rng = np.random.default_rng(seed)
    cases = []
    for momentum in momenta:
        batches = [_features(rng, n, d) for _ in range(steps)]
        gamma, beta = _affine(rng, d)
        mean, var = _running_stats_after(batches, momentum)
        cases.append({"batches": batches, "gamma": gamma, "beta": beta, "momentum": momentum,
                      "running_mean": mean, "running_var": var,
                      "running_mean_mistakes": _running_mistakes(batches, momentum, 0),
                      "running_var_mistakes": _running_mistakes(batches, momentum, 1)})
    return cases


def eval_mode_cases(shapes=((8, 3), (1, 5)), seed=2, epsilons=(1e-5, 1e-2)):
    """Eval-mode calls with stored running statistics, one of them on a single example; case i passes
    eps = epsilons[i % len(epsilons)]."""
    rng = np.random.default_rng(seed)
    cases = []
    for case, (n, d) in enumerate(shapes):
        eps = float(epsilons[case % len(epsilons)])
        x = _features(rng, n, d)
        gamma, beta = _affine(rng, d)
        running_mean, running_var = rng.normal(size=d), rng.uniform(0.5, 4.0, size=d)
        expected, _ = reference.batchnorm_forward(x, gamma, beta, {"mode": "eval", "eps": eps,
                                                                   "running_mean": running_mean,
                                                                   "running_var": running_var})
        mistakes = _eps_ignored(x, gamma, beta, eps, running_mean, running_var) + [
            Mistake(gamma * (x - running_mean) / np.sqrt(running_var) + beta,
                    "eps is missing in eval mode: divide by np.sqrt(running_var + eps)."),
            Mistake(gamma * (x - running_mean) / (running_var + eps) + beta,
                    "running_var is a variance: divide by its square root, np.sqrt(running_var + eps)."),
        ]
        if n > 1:
            with np.errstate(all="ignore"):
                batch_stats = gamma * (x - x.mean(0)) / np.sqrt(x.var(0) + eps) + beta
            mistakes.append(Mistake(batch_stats, "eval mode normalised with the batch's own statistics. In eval mode "
                                                 "use bn_param['running_mean'] and bn_param['running_var']."))
        cases.append({"x": x, "gamma": gamma, "beta": beta, "eps": eps, "running_mean": running_mean,
                      "running_var": running_var, "expected": expected, "mistakes": mistakes})
    return cases


def cache_and_inputs_cases(n=10, d=4, seed=3):
    """One train-mode call without eps in bn_param (the default applies), with the statistics the cache
    must hold."""
    rng = np.random.default_rng(seed)
    x = _features(rng, n, d)
    gamma, beta = _affine(rng, d)
    eps = reference.DEFAULT_EPS
    _, ref = reference.batchnorm_forward(x, gamma, beta, {"mode": "train", "eps": eps})
    mistakes = {
        "var": [Mistake(x.var(axis=0, ddof=1), "cache['var'] holds the unbiased variance; the cache needs the biased "
                                               "variance the output was normalised with.")],
        "std": [Mistake(np.sqrt(ref["var"]), "cache['std'] is sqrt(var) without eps; it must be sqrt(var + eps), the "
                                             "value the output was divided by.")],
    }
    return {"x": x, "gamma": gamma, "beta": beta, "eps": eps, "mistakes": mistakes,
            **{key: ref[key] for key in ("mean", "var", "std", "x_hat")}}


def _spatial_mistakes(x, gamma, beta, eps):
    n, c, h, w = x.shape
    g, b = gamma.reshape(1, c, 1, 1), beta.reshape(1, c, 1, 1)
    flat = x.reshape(n, -1)
    per_position = (flat - flat.mean(0)) / np.sqrt(flat.var(0) + eps)
    rows_wrong = x.reshape(-1, c)
    no_transpose = (rows_wrong - rows_wrong.mean(0)) / np.sqrt(rows_wrong.var(0) + eps)
    per_example = (x - x.mean(axis=(1, 2, 3), keepdims=True)) / np.sqrt(x.var(axis=(1, 2, 3), keepdims=True) + eps)
    return [
        Mistake((gamma * no_transpose + beta).reshape(x.shape),
                "x was reshaped to (-1, C) without moving the channel axis last first. In NCHW memory that mixes "
                "channels and pixels; use x.transpose(0, 2, 3, 1).reshape(-1, C) and transpose back."),
        Mistake(g * per_position.reshape(x.shape) + b,
                "each (channel, row, column) position got its own statistics. BatchNorm2d shares one mean and one "
                "variance per channel across the batch and all H x W positions: axes (0, 2, 3)."),
        Mistake(g * per_example + b,
                "the statistics were taken per example (over C, H, W). BatchNorm2d takes them per channel, "
                "over axes (0, 2, 3)."),
    ]


def spatial_cases(shapes=((2, 3, 4, 5), (5, 4, 3, 3)), seed=4, momentum=0.2):
    """Two train steps per (N, C, H, W) shape: outputs and per-channel running statistics."""
    rng = np.random.default_rng(seed)
    cases = []
    for n, c, h, w in shapes:
        means, scales = rng.uniform(-5, 5, size=c), rng.uniform(0.5, 3.0, size=c)
        batches = [rng.normal(means.reshape(1, c, 1, 1), scales.reshape(1, c, 1, 1), size=(n, c, h, w))
                   for _ in range(2)]
        gamma, beta = _affine(rng, c)
        ref_param = {"mode": "train", "momentum": momentum}
        outputs = [reference.spatial_batchnorm_forward(x, gamma, beta, ref_param)[0] for x in batches]
        count = n * h * w
        rows = [reference.nchw_to_rows(x) for x in batches]
        var_mistakes = _running_mistakes(rows, momentum, 1)
        if n > 1:  # with one image N/(N-1) is undefined, so nobody makes this mistake there
            var_mistakes.append(Mistake(
                _running_stats_after(rows, momentum, correction_count=n)[1],
                f"the unbiased correction used N/(N-1) with N={n} images; each channel has N*H*W={count} values, "
                f"so the factor is {count}/{count - 1}."))
        cases.append({"batches": batches, "gamma": gamma, "beta": beta, "momentum": momentum, "outputs": outputs,
                      "output_mistakes": [_spatial_mistakes(x, gamma, beta, reference.DEFAULT_EPS) for x in batches],
                      "running_mean": ref_param["running_mean"], "running_var": ref_param["running_var"],
                      "running_mean_mistakes": _running_mistakes(rows, momentum, 0),
                      "running_var_mistakes": var_mistakes})
    return cases


# ---------------------------------------------------------------------------------------------
# The checks: the kit's comparison on cases built here
# ---------------------------------------------------------------------------------------------

def check_batchnorm_forward_train(batchnorm_forward, **params):
    kit.verify_batchnorm_forward_train(batchnorm_forward, forward_train_cases(**params))


def check_running_stats(batchnorm_forward, **params):
    kit.verify_running_stats(batchnorm_forward, running_stats_cases(**params))


def check_eval_mode(batchnorm_forward, **params):
    kit.verify_eval_mode(batchnorm_forward, eval_mode_cases(**params))


def check_cache_and_inputs(batchnorm_forward, **params):
    kit.verify_cache_and_inputs(batchnorm_forward, cache_and_inputs_cases(**params))


def check_spatial_batchnorm_forward(spatial_batchnorm_forward, **params):
    kit.verify_spatial_batchnorm_forward(spatial_batchnorm_forward, spatial_cases(**params))


#: The visible checks of the notebook and their cases, stored in the kit (``bnkit/fixtures``).
VISIBLE = {
    "check_batchnorm_forward_train": forward_train_cases,
    "check_running_stats": running_stats_cases,
    "check_eval_mode": eval_mode_cases,
    "check_cache_and_inputs": cache_and_inputs_cases,
    "check_spatial_batchnorm_forward": spatial_cases,
}
