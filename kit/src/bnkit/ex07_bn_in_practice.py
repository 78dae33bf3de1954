"""Checks of Exercise 7: synchronized batch norm against a given all_reduce, Batch Renormalization,
exact batch norm statistics of a model, and folding batch norm into a convolution.

Synchronized batch norm is written per worker: the notebook's given wrapper runs the student's function once
per worker, each in its own thread with only that worker's batch, and the workers share an all_reduce that
waits for all of them. So a worker can learn about the others' batches only through all_reduce (short of
deliberately sharing state between the threads), and the checks compare what every worker returned.

The checks can pass only plain data, so the notebook has small given wrappers (read-only cells) that
call the student's function (building torch modules and tensors from arrays where the function needs
them) and return a dict of named results. Each ``verify_*`` function calls a wrapper on the given cases
and compares what it returns with the stored expected results, and with the results of known mistakes;
each ``check_*`` function is what the notebook calls: the same comparison on the stored cases. The grader
calls ``verify_*`` with cases it draws in secret.
"""

from __future__ import annotations

import numpy as np

from ._core import _as_array, _compare, _fail, _given_entries, _passed, _unpack_pair
from ._fixtures import stored_check
from .ex04_training_with_bn import _copies

EXERCISE = "ex07_bn_in_practice"

#: What sync_batchnorm_forward's cache holds (sync_batchnorm_backward reads x_hat, std, gamma and count).
SYNC_CACHE_KEYS = ("x_hat", "mean", "var", "std", "gamma", "eps", "count")


def _workers(value, k, subject, name):
    """A list (or tuple) of one array per worker."""
    if not isinstance(value, (list, tuple)):
        _fail(subject, f"{name} should be a list with one array per worker, but it is a {type(value).__name__}.",
              "build it in a loop over the workers: [... for x in xs].")
    if len(value) != k:
        _fail(subject, f"{name} has {len(value)} entries for {k} workers; it needs one per worker, in the "
                       "workers' order.")
    return [_as_array(v, subject, f"{name}[{i}]") for i, v in enumerate(value)]


def _unchanged(subject, name, given, original, hint):
    if not all(np.array_equal(np.asarray(g), o) for g, o in zip(given, original)):
        _fail(subject, f"{name} was modified by the call.", hint)


def _calls(result, subject, which, k):
    calls = result["all_reduce_calls"]
    if not isinstance(calls, (list, tuple)) or len(calls) != k:
        _fail(subject, f"the given wrapper returned all_reduce_calls={calls!r}, not one count per worker.",
              "restore the given cells (take them from a fresh copy of the notebook) and run them again.")
    if any(not isinstance(c, (int, np.integer)) or c < 1 for c in calls):
        _fail(subject, f"the numbers are right, but {which} never called all_reduce (calls per worker: {list(calls)}).",
              "in synchronized batch norm each worker sees only its own batch: every sum over the workers must "
              "go through all_reduce (that is what the real torch.distributed.all_reduce would do). Do not "
              "share the workers' arrays in any other way.")


def _per_worker_results(result, k, subject):
    """What each worker's call returned (the given wrapper runs the student's function once per worker)."""
    results = result["result"]
    if not isinstance(results, (list, tuple)) or len(results) != k:
        _fail(subject, f"the given wrapper returned {type(results).__name__} instead of one result per worker.",
              "restore the given cells (take them from a fresh copy of the notebook) and run them again.")
    return results


# ---------------------------------------------------------------------------------------------
# Parts 1 and 2: synchronized batch norm
# ---------------------------------------------------------------------------------------------

def verify_sync_forward(sync_forward_outputs, cases):
    """``sync_batchnorm_forward(x, gamma, beta, all_reduce, eps)``, run by the notebook's wrapper once per worker
    (each in its own thread, with its own batch only, sharing an all_reduce): every worker's output against
    batch norm on the concatenated batch, and its cache (the global statistics, its x_hat, std, gamma, eps)."""
    for case in cases:
        xs, gamma, beta, eps = case["xs"], case["gamma"], case["beta"], case["eps"]
        k = len(xs)
        subject = (f"sync_batchnorm_forward for {k} workers with {[len(x) for x in xs]} examples of "
                   f"{xs[0].shape[1]} features (eps={eps})")
        given = [x.copy() for x in xs]
        result = _given_entries(sync_forward_outputs(given, gamma.copy(), beta.copy(), eps), subject,
                                "sync_forward_outputs", ("result", "all_reduce_calls"))
        _unchanged(subject, "a worker's x", given, xs, "compute new arrays (x - mean), not x -= mean.")
        pairs = [_unpack_pair(pair, f"{subject}, worker {i}")
                 for i, pair in enumerate(_per_worker_results(result, k, subject))]
        outs = _workers([out for out, _ in pairs], k, subject, "the outputs")
        caches = [cache for _, cache in pairs]
        for i, cache in enumerate(caches):
            if not isinstance(cache, dict):
                _fail(subject, f"worker {i}'s cache should be a dict but is a {type(cache).__name__}.")
            missing = [key for key in SYNC_CACHE_KEYS if key not in cache]
            if missing:
                _fail(subject, f"worker {i}'s cache has no key(s) {missing}.",
                      f"the backward pass reads {list(SYNC_CACHE_KEYS)}.")

        def check_counts():
            for i, cache in enumerate(caches):
                _compare(subject, f"worker {i}'s cache['count']", cache["count"], case["count"],
                         case["count_mistakes"], hint="the total number of examples of all workers (all-reduced).")

        if not all(np.isfinite(out).all() for out in outs):
            check_counts()      # a wrong count can make the variance negative: say so rather than "NaN"
        for i, (out, want) in enumerate(zip(outs, case["expected"])):
            _compare(subject, f"worker {i}'s output", out, want, case["mistakes"][i])
        check_counts()
        for i, cache in enumerate(caches):
            where = f"worker {i}'s cache"
            for key in ("mean", "var"):
                _compare(subject, f"{where}['{key}']", cache[key], case[key],
                         hint="the global statistics, the same on every worker: shape (D,).")
            _compare(subject, f"{where}['std']", cache["std"], case["std"], case["std_mistakes"],
                     hint="sqrt(var + eps), the global standard deviation: shape (D,).")
            _compare(subject, f"{where}['x_hat']", cache["x_hat"], case["x_hat"][i], case["x_hat_mistakes"][i],
                     hint="this worker's normalized batch, (x - mean) / std: shape (n_k, D).")
            _compare(subject, f"{where}['gamma']", cache["gamma"], gamma, hint="the gamma passed in.")
            _compare(subject, f"{where}['eps']", cache["eps"], eps, hint="the eps passed in.")
        _calls(result, subject, "sync_batchnorm_forward", k)
    _passed("sync_batchnorm_forward equals batch norm on the concatenated batch, for unequal counts too.")


def verify_sync_backward(sync_backward_outputs, cases):
    """``sync_batchnorm_backward(dout, cache, all_reduce)``, run by the notebook's wrapper once per worker,
    against the gradients of batch norm on the concatenated batch; the caches are the reference forward
    pass's."""
    for case in cases:
        douts, caches = case["douts"], case["caches"]
        k = len(douts)
        subject = (f"sync_batchnorm_backward for {k} workers with {[len(g) for g in douts]} examples of "
                   f"{douts[0].shape[1]} features")
        given = [g.copy() for g in douts]
        given_caches = [{key: value.copy() if isinstance(value, np.ndarray) else value for key, value in cache.items()}
                        for cache in caches]
        result = _given_entries(sync_backward_outputs(given, given_caches), subject, "sync_backward_outputs",
                                ("result", "all_reduce_calls"))
        _unchanged(subject, "a worker's dout", given, douts, "write g = dout * gamma, not dout *= gamma.")
        _unchanged(subject, "a worker's cache['x_hat']", [c.get("x_hat") for c in given_caches],
                   [c["x_hat"] for c in caches], "compute new arrays instead.")
        triples = _per_worker_results(result, k, subject)
        for i, triple in enumerate(triples):
            if not isinstance(triple, (tuple, list)) or len(triple) != 3:
                _fail(subject, f"worker {i}'s call must return three values `(dx, dgamma, dbeta)`.")
        dxs = _workers([triple[0] for triple in triples], k, subject, "the dx")
        for i, (dx, want) in enumerate(zip(dxs, case["dxs"])):
            _compare(subject, f"worker {i}'s dx", dx, want, case["dx_mistakes"][i])
        for i, triple in enumerate(triples):
            _compare(subject, f"worker {i}'s dgamma", triple[1], case["dgamma"], case["dgamma_mistakes"][i],
                     hint="the gradient of the loss summed over all workers, the same on every worker: shape (D,).")
            _compare(subject, f"worker {i}'s dbeta", triple[2], case["dbeta"], case["dbeta_mistakes"][i],
                     hint="the gradient of the loss summed over all workers, the same on every worker: shape (D,).")
        _calls(result, subject, "sync_batchnorm_backward", k)
    _passed("sync_batchnorm_backward equals the gradients of batch norm on the concatenated batch.")


# ---------------------------------------------------------------------------------------------
# Part 3: Batch Renormalization
# ---------------------------------------------------------------------------------------------

RENORM_ENTRIES = ("out", "dx", "dgamma", "dbeta", "running_mean", "running_std")


def _renorm_subject(inputs):
    n, d = inputs["x"].shape
    return (f"batch_renorm_forward for a ({n}, {d}) batch with r_max={inputs['r_max']}, d_max={inputs['d_max']}, "
            f"momentum={inputs['momentum']}, eps={inputs['eps']}")


def _renorm_results(batch_renorm_outputs, case):
    subject = _renorm_subject(case["inputs"])
    result = _given_entries(batch_renorm_outputs(**_copies(case["inputs"]), dout=case["dout"].copy()), subject,
                            "batch_renorm_outputs", RENORM_ENTRIES)
    return subject, result


def verify_batch_renorm_forward(batch_renorm_outputs, cases):
    """The output and the new running statistics of ``batch_renorm_forward`` (through the notebook's wrapper)
    against the reference, on features inside and outside the clipping bounds."""
    for case in cases:
        subject, result = _renorm_results(batch_renorm_outputs, case)
        for i, name in enumerate(("out", "running_mean", "running_std")):
            _compare(subject, name if name == "out" else f"state['{name}'] after the call", result[name],
                     case[name], case["forward_mistakes"][i])
    _passed("batch_renorm_forward gives the paper's output and running statistics, clipped where it should.")


def verify_batch_renorm_gradients(batch_renorm_outputs, cases):
    """The gradients autograd finds through ``batch_renorm_forward`` (the wrapper backpropagates a given
    dout) against the reference's, in which r and d are constants."""
    for case in cases:
        subject, result = _renorm_results(batch_renorm_outputs, case)
        if not np.allclose(_as_array(result["out"], subject, "out"), case["out"], rtol=1e-7, atol=1e-9):
            _fail(subject, "the output is wrong, so its gradients are too: make the forward check pass first.")
        for i, name in enumerate(("dx", "dgamma", "dbeta")):
            if result[name] is None:
                _fail(subject, f"{name} is None: autograd found no path from the output to "
                               f"{ {'dx': 'x', 'dgamma': 'gamma', 'dbeta': 'beta'}[name]}.",
                      "compute the output from x, gamma and beta with torch operations, without detaching them.")
            _compare(subject, name, result[name], case[name], case["gradient_mistakes"][i])
    _passed("batch_renorm_forward's gradients treat r and d as constants, as in the paper.")


# ---------------------------------------------------------------------------------------------
# Part 4: exact statistics after training
# ---------------------------------------------------------------------------------------------

STATISTICS_ENTRIES = ("running_mean", "running_var", "momentum", "modes")
STATISTICS_NAMES = ("bn1.running_mean", "bn2.running_mean", "bn1.running_var", "bn2.running_var")


def verify_recompute_statistics(recomputed_statistics, cases):
    """Both batch norm layers' running statistics after ``recompute_bn_statistics`` (through the notebook's
    wrapper) against the exact mean and unbiased variance of their train-mode inputs over all batches; and
    the model left in the mode it was in, with its layers' momenta."""
    for case in cases:
        inputs = case["inputs"]
        mode = "train" if inputs["train_mode"] else "eval"
        sizes = [len(b) for b in inputs["batches"]]
        subject = f"recompute_bn_statistics on a model in {mode} mode, batches of {sizes} images"
        given = _copies(inputs)
        given["batches"] = [b.copy() for b in inputs["batches"]]
        result = _given_entries(recomputed_statistics(**given), subject, "recomputed_statistics",
                                STATISTICS_ENTRIES)
        got = []
        for key in ("running_mean", "running_var"):
            got += _workers(result[key], 2, subject, key)
        for i, (name, value, want) in enumerate(zip(STATISTICS_NAMES, got, case["expected"])):
            _compare(subject, name, value, want, case["mistakes"][i])
        modes = list(result["modes"])
        if any(bool(m) != bool(inputs["train_mode"]) for m in modes):
            _fail(subject, f"the model was in {mode} mode before the call, but not every layer is afterwards.",
                  "remember each module's mode (or model.training) before and restore it at the end.")
        if list(result["momentum"]) != list(inputs["momenta"]):
            _fail(subject, f"the batch norm layers' momenta are {list(result['momentum'])} after the call, but were "
                           f"{list(inputs['momenta'])} before.",
                  "if you change a layer's momentum, remember the old value and restore it at the end.")
    _passed("recompute_bn_statistics sets the exact statistics and leaves the model's modes and momenta alone.")


# ---------------------------------------------------------------------------------------------
# Part 5: folding batch norm into a convolution
# ---------------------------------------------------------------------------------------------

FOLD_ENTRIES = ("folded_weight", "folded_bias", "folded_settings", "folded_output", "conv_weight_after",
                "running_var_after")
FOLD_SETTINGS = ("stride", "padding", "dilation", "groups")


def _setting(value):
    """A convolution setting as nn.Conv2d stores it (a pair for stride, padding and dilation; a number for
    groups), as a plain list or number for comparison."""
    return [int(v) for v in value] if isinstance(value, (list, tuple, np.ndarray)) else value


def verify_fold_conv(fold_conv_outputs, cases):
    """The folded convolution's weight, bias and output (through the notebook's wrapper) against the reference
    fold (torch's fuse_conv_bn_eval agrees), and the original layers left unchanged."""
    for case in cases:
        inputs = case["inputs"]
        c_out, c_in = inputs["weight"].shape[:2]
        groups = inputs["groups"]
        subject = (f"fold_bn_into_conv for Conv2d({c_in * groups}, {c_out}, 3, stride={inputs['stride']}, "
                   f"padding={inputs['padding']}, dilation={inputs['dilation']}, groups={groups}, "
                   f"bias={inputs['bias'] is not None}) and BatchNorm2d(eps={inputs['eps']})")
        result = _given_entries(fold_conv_outputs(**_copies(inputs)), subject, "fold_conv_outputs", FOLD_ENTRIES)
        for name, after, before in (("conv.weight", result["conv_weight_after"], inputs["weight"]),
                                    ("bn.running_var", result["running_var_after"], inputs["running_var"])):
            if not np.array_equal(_as_array(after, subject, f"{name} after the call"), before):
                _fail(subject, f"{name} was changed in place by the call.",
                      "build a new nn.Conv2d and copy the folded values into it, without mul_ or += on conv or bn.")
        if result["folded_bias"] is None:
            _fail(subject, "the folded convolution has no bias. It needs one even when the original had none: "
                           "batch norm's shift goes there (bias=True).")
        settings = result["folded_settings"]
        want = {"stride": [inputs["stride"]] * 2, "padding": [inputs["padding"]] * 2,
                "dilation": [inputs["dilation"]] * 2, "groups": groups}
        if not isinstance(settings, dict):
            settings = {}
        lost = [name for name in FOLD_SETTINGS if _setting(settings.get(name)) != want[name]]
        if lost:
            got = ", ".join(f"{name}={_setting(settings.get(name))}" for name in lost)
            _fail(subject, f"the folded convolution has {got}, where the original has "
                           f"{', '.join(f'{name}={want[name]}' for name in lost)}.",
                  "the folded nn.Conv2d must keep the original's stride, padding, dilation and groups: pass "
                  "stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=conv.groups.")
        _compare(subject, "the folded weight", result["folded_weight"], case["weight"], case["weight_mistakes"])
        _compare(subject, "the folded bias", result["folded_bias"], case["bias"], case["bias_mistakes"])
        output = _as_array(result["folded_output"], subject, "the folded convolution's output")
        if output.shape != case["output"].shape:
            _fail(subject, f"the folded convolution's output has shape {output.shape}, the original's "
                           f"{case['output'].shape}.",
                  "the folded nn.Conv2d must keep the original's stride, padding, dilation and groups: pass "
                  "stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=conv.groups.")
        _compare(subject, "the folded convolution's output", output, case["output"])
    _passed("fold_bn_into_conv returns a convolution that computes Conv2d -> BatchNorm2d (eval mode) exactly.")


check_sync_forward = stored_check(EXERCISE, verify_sync_forward)
check_sync_backward = stored_check(EXERCISE, verify_sync_backward)
check_batch_renorm_forward = stored_check(EXERCISE, verify_batch_renorm_forward)
check_batch_renorm_gradients = stored_check(EXERCISE, verify_batch_renorm_gradients)
check_recompute_statistics = stored_check(EXERCISE, verify_recompute_statistics)
check_fold_conv = stored_check(EXERCISE, verify_fold_conv)
