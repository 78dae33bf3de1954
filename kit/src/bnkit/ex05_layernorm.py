"""Checks of Exercise 5: LayerNorm (forward and backward), GroupNorm, RMSNorm, and which
normalizations make an example's output independent of its batch.

Each ``verify_*`` function runs the student's function on the given cases and compares; each
``check_*`` function is what the notebook calls: the same comparison on the stored cases. The
grader calls ``verify_*`` with cases it draws in secret.
"""

from __future__ import annotations

import numpy as np

from ._core import CheckFailed, _as_array, _compare, _fail, _passed, _unpack_pair
from ._fixtures import stored_check

EXERCISE = "ex05_layernorm"

#: What layernorm_forward hands to layernorm_backward (batch norm's keys).
CACHE_KEYS = ("x", "mean", "var", "std", "x_hat", "gamma", "eps")

#: The names batch_independent_normalizations() may return.
NORMALIZATION_NAMES = ("batchnorm_train", "batchnorm_eval", "layernorm", "instancenorm", "groupnorm", "rmsnorm")


def _raised(error: Exception, exception: type) -> bool:
    """Whether ``error`` says the student's function raised ``exception``: in a notebook it is that
    exception itself; through the grader's sandbox it arrives as an AnswerError naming it."""
    return isinstance(error, exception) or f"raised {exception.__name__}" in str(error)


def _graders_own(error: Exception) -> bool:
    """Errors of the grading machinery (a sandbox failure, a time-out) that a check must let through."""
    kind = type(error).__name__
    return kind == "SandboxFailure" or (kind == "AnswerError" and " raised " not in str(error))


def _in_cache_order(cache: dict) -> list:
    """The cache's keys in the order of CACHE_KEYS (stored fixtures come back with sorted keys)."""
    return sorted(cache, key=lambda key: CACHE_KEYS.index(key) if key in CACHE_KEYS else len(CACHE_KEYS))


# ---------------------------------------------------------------------------------------------
# LayerNorm forward
# ---------------------------------------------------------------------------------------------

def verify_layernorm_forward(layernorm_forward, cases):
    """``layernorm_forward(x, gamma, beta, eps)`` returns ``(out, cache)``; out against the reference
    (``torch.nn.LayerNorm(D)``), and the cache's statistics against the reference's."""
    for case in cases:
        x, eps = case["x"], case["eps"]
        shape = x.shape
        subject = f"layernorm_forward for an input of shape {shape} (eps={eps})"
        given = x.copy()
        out, cache = _unpack_pair(layernorm_forward(given, case["gamma"].copy(), case["beta"].copy(), eps), subject)
        if not np.array_equal(given, x):
            _fail(subject, "x was modified by the call.", "compute new arrays (x - mean), not x -= mean.")
        _compare(subject, "out", out, case["expected"], case["mistakes"])
        if not isinstance(cache, dict):
            _fail(subject, f"the cache should be a dict but is a {type(cache).__name__}.")
        missing = [key for key in CACHE_KEYS if key not in cache]
        if missing:
            _fail(subject, f"the cache has no key(s) {missing}.", f"the backward pass reads {list(CACHE_KEYS)}.")
        for key in ("mean", "var", "std", "x_hat"):
            want = case["cache"][key]
            got = _as_array(cache[key], subject, f"cache['{key}']")
            if key != "x_hat" and got.shape == shape[:-1]:
                _fail(subject, f"cache['{key}'] has shape {got.shape}; keep the reduced axis: shape {want.shape}.",
                      "use keepdims=True, so the statistic broadcasts against x.")
            _compare(subject, f"cache['{key}']", got, want)
    _passed(f"layernorm_forward matches torch.nn.LayerNorm for input shapes {[case['x'].shape for case in cases]}.")


def verify_layernorm_invariances(layernorm_forward, cases):
    """Properties LayerNorm has whatever the numbers: an example's output does not depend on the other
    examples, and (with eps = 0) not on a positive rescaling or a shift of the example. The cases hold
    the inputs and each example's scale and shift; the student's outputs are compared with each other."""
    for case in cases:
        x, gamma, beta, eps = case["x"], case["gamma"], case["beta"], case["eps"]
        subject = f"layernorm_forward for an input of shape {x.shape}"
        whole = _as_array(_unpack_pair(layernorm_forward(x.copy(), gamma.copy(), beta.copy(), eps), subject)[0],
                          subject, "out")
        alone = _as_array(_unpack_pair(layernorm_forward(x[:1].copy(), gamma.copy(), beta.copy(), eps), subject)[0],
                          subject, "out")
        if alone.shape != x[:1].shape or not np.allclose(alone, whole[:1], rtol=1e-9, atol=1e-9):
            _fail(subject, "the output for the first example changes when the rest of the batch is removed.",
                  "LayerNorm's statistics come from the example alone (axis=-1), never from the batch.")
        plain = _unpack_pair(layernorm_forward(x.copy(), gamma.copy(), beta.copy(), 0.0), subject)[0]
        moved = _unpack_pair(layernorm_forward(case["scale"] * x + case["shift"], gamma.copy(), beta.copy(), 0.0),
                             subject)[0]
        if not np.allclose(_as_array(moved, subject, "out"), _as_array(plain, subject, "out"), rtol=1e-8, atol=1e-8):
            _fail(subject, "with eps=0, scaling each example by its own positive factor and shifting it by its own "
                           "constant changed the output.",
                  "LayerNorm subtracts each example's mean and divides by its standard deviation, so it should not.")
    _passed("layernorm_forward ignores the rest of the batch and each example's own shift and scale.")


# ---------------------------------------------------------------------------------------------
# LayerNorm backward
# ---------------------------------------------------------------------------------------------

def verify_layernorm_backward(layernorm_backward, cases):
    """``layernorm_backward(dout, cache)`` returns ``(dx, dgamma, dbeta)``; the cache comes with the case
    (the reference forward pass's), so this check does not depend on the student's forward pass."""
    for case in cases:
        dout, cache = case["dout"], case["cache"]
        keys = _in_cache_order(cache)
        subject = f"layernorm_backward for an input of shape {dout.shape}"
        given_dout = dout.copy()
        given_cache = {k: (cache[k].copy() if isinstance(cache[k], np.ndarray) else cache[k]) for k in keys}
        result = layernorm_backward(given_dout, given_cache)
        if not np.array_equal(given_dout, dout):
            _fail(subject, "dout was modified by the call.", "write g = dout * gamma, not dout *= gamma.")
        for key in keys:
            if not np.array_equal(np.asarray(given_cache.get(key)), np.asarray(cache[key])):
                _fail(subject, f"cache['{key}'] was modified by the call.", "compute new arrays instead.")
        if result is None:
            _fail(subject, "the function returned None.", "did you forget `return dx, dgamma, dbeta`?")
        if not isinstance(result, (tuple, list)) or len(result) != 3:
            _fail(subject, "the function must return three values `(dx, dgamma, dbeta)`.")
        for name, got, want, mistakes in zip(("dx", "dgamma", "dbeta"), result, case["expected"], case["mistakes"]):
            got = _as_array(got, subject, name)
            want = np.asarray(want)
            if name != "dx" and got.shape != want.shape:
                _fail(subject, f"{name} has shape {got.shape} but should have shape {want.shape}, one number per "
                               "feature.",
                      "sum over every axis except the last: every example (and every position) contributes. "
                      "For any shape: dout.reshape(-1, D).sum(axis=0).")
            _compare(subject, name, got, want, mistakes)
    _passed(f"layernorm_backward matches the gradients of torch.nn.LayerNorm for input shapes "
            f"{[case['dout'].shape for case in cases]}.")


# ---------------------------------------------------------------------------------------------
# GroupNorm and RMSNorm
# ---------------------------------------------------------------------------------------------

def verify_groupnorm_forward(groupnorm_forward, cases):
    """``groupnorm_forward(x, gamma, beta, num_groups, eps)`` for (N, C, ...) inputs, against the reference
    (``torch.nn.GroupNorm``); a group count that does not divide C must raise ValueError, as torch does."""
    for case in cases["cases"]:
        x, groups, eps = case["x"], case["num_groups"], case["eps"]
        subject = f"groupnorm_forward for an input of shape {x.shape} with num_groups={groups} (eps={eps})"
        given = x.copy()
        out = groupnorm_forward(given, case["gamma"].copy(), case["beta"].copy(), groups, eps)
        if not np.array_equal(given, x):
            _fail(subject, "x was modified by the call.",
                  "in-place operations such as `x -= mean` or `x /= std` change the caller's array; write `xc = x - mean` instead.")
        _compare(subject, "out", out, case["expected"], case["mistakes"])
    refused = cases["indivisible"]
    x, groups = refused["x"], refused["num_groups"]
    subject = f"groupnorm_forward for an input of shape {x.shape} with num_groups={groups}"
    try:
        groupnorm_forward(x.copy(), refused["gamma"].copy(), refused["beta"].copy(), groups, refused["eps"])
    except Exception as error:  # noqa: BLE001 - the student's exception, named below
        if _graders_own(error):
            raise
        if not _raised(error, ValueError):
            said = str(error) if type(error).__name__ == "AnswerError" else f"{type(error).__name__}: {error}"
            _fail(subject, f"the function should raise ValueError, but it raised {said}.",
                  "check the divisibility first: `if C % num_groups: raise ValueError(...)`, with a message that "
                  "says what is wrong.")
    else:
        _fail(subject, f"{groups} groups cannot split {x.shape[1]} channels evenly, but the function returned a "
                       "result.",
              "torch.nn.GroupNorm raises ValueError; start with `if C % num_groups: raise ValueError(...)`.")
    _passed(f"groupnorm_forward matches torch.nn.GroupNorm for "
            f"{[(case['x'].shape, case['num_groups']) for case in cases['cases']]} (shape, groups), "
            "and refuses a group count that does not divide C.")


def verify_rmsnorm_forward(rmsnorm_forward, cases):
    """``rmsnorm_forward(x, gamma, eps)`` against the reference (``torch.nn.RMSNorm(D, eps=eps)``)."""
    for case in cases:
        x, eps = case["x"], case["eps"]
        subject = f"rmsnorm_forward for an input of shape {x.shape} (eps={eps})"
        given = x.copy()
        out = rmsnorm_forward(given, case["gamma"].copy(), eps)
        if not np.array_equal(given, x):
            _fail(subject, "x was modified by the call.",
                  "in-place operations such as `x -= mean` or `x /= std` change the caller's array; write `xc = x - mean` instead.")
        _compare(subject, "out", out, case["expected"], case["mistakes"])
    _passed(f"rmsnorm_forward matches torch.nn.RMSNorm for input shapes {[case['x'].shape for case in cases]}.")


# ---------------------------------------------------------------------------------------------
# Which normalizations depend on the batch
# ---------------------------------------------------------------------------------------------

def verify_batch_independent_normalizations(batch_independent_normalizations, case):
    """The student's set of names against the stored answer (``case["independent"]``, found by running
    PyTorch's layers), one message per wrong name, from ``case["why"]``."""
    subject = "batch_independent_normalizations()"
    answer = batch_independent_normalizations()
    if answer is None:
        _fail(subject, "the function returned None.", "return a set of names, e.g. {\"layernorm\"}.")
    if isinstance(answer, str) or not isinstance(answer, (set, frozenset, list, tuple)):
        _fail(subject, f"the function should return a set of names but returned a {type(answer).__name__}.",
              "e.g. return {\"layernorm\", \"rmsnorm\"}.")
    names = set()
    for name in answer:
        if name not in NORMALIZATION_NAMES:
            _fail(subject, f"{name!r} is not one of the names {list(NORMALIZATION_NAMES)}.")
        names.add(name)
    expected, why = set(case["independent"]), case["why"]
    wrongly_in = sorted(names - expected)
    wrongly_out = sorted(expected - names)
    if wrongly_in or wrongly_out:
        lines = [f"{n} is in your set, but {why[n]}" for n in wrongly_in]
        lines += [f"{n} is missing from your set: {why[n]}" for n in wrongly_out]
        raise CheckFailed(f"\n{subject}: " + "\n  ".join(lines))
    _passed("batch_independent_normalizations names exactly the layers whose output for an example does not "
            "depend on its batch (checked by running PyTorch's layers).")


check_layernorm_forward = stored_check(EXERCISE, verify_layernorm_forward)
check_layernorm_backward = stored_check(EXERCISE, verify_layernorm_backward)
check_groupnorm_forward = stored_check(EXERCISE, verify_groupnorm_forward)
check_rmsnorm_forward = stored_check(EXERCISE, verify_rmsnorm_forward)
check_batch_independent_normalizations = stored_check(EXERCISE, verify_batch_independent_normalizations)
