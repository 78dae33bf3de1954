"""Cases for the checks of Exercise 7: synchronized batch norm against a given all_reduce (forward and
backward), Batch Renormalization (forward, running statistics and gradients), exact batch norm
statistics of a model, and folding batch norm into a convolution.

Each ``*_cases`` function builds inputs from its parameters and computes the expected outputs with
:mod:`bncourse.reference_practice` (tested against torch in float64) and the outputs of known mistakes:
NumPy variants of the reference for synchronized BN, batch renorm's forward pass and the fold; torch
autograd for batch renorm's gradients with the stop-gradients left out; torch itself (``update_bn``,
plain train-mode passes with momentum) for the statistics. The comparison is the student kit's
(:mod:`bnkit.ex07_bn_in_practice`); ``check_*`` runs it on the cases built here. torch is imported
inside the builders that need it, so importing the checks stays fast.
"""

from __future__ import annotations

import numpy as np
from bnkit import ex07_bn_in_practice as kit

from .. import reference_practice as practice
from ._core import Mistake, _affine, _close, _torch
from .ex05_layernorm import _eps_cases

DEFAULT_EPS = practice.DEFAULT_EPS


def _distinct(expected, mistakes):
    """The mistakes whose outputs differ from the expected ones and from every earlier mistake's (a
    mistake that coincides with the right answer in a case is not one there). ``expected`` and each
    mistake's output are lists of arrays."""
    kept = []
    for outputs, explanation in mistakes:
        flat = np.concatenate([np.ravel(o) for o in outputs])
        seen = [np.concatenate([np.ravel(o) for o in expected])] + [
            np.concatenate([np.ravel(o) for o in k]) for k, _ in kept]
        if not any(_close(flat, other) for other in seen):
            kept.append((outputs, explanation))
    return kept


def _per_worker(kept, k):
    return [Mistake(outputs[k], explanation) for outputs, explanation in kept]


# ---------------------------------------------------------------------------------------------
# Part 1: synchronized batch norm, forward
# ---------------------------------------------------------------------------------------------

def _shards(rng, counts, d):
    """Worker k's batch: features with their own offsets and scales, and every worker shifted by its own
    amount (shards of real data are seldom alike), so that per-worker statistics are visibly wrong."""
    means, scales = rng.uniform(-3, 3, size=d), rng.uniform(0.5, 3.0, size=d)
    return [rng.normal(means + rng.uniform(-2, 2), scales, size=(n, d)) for n in counts]


def _normalized(xs, means, variances, gamma, beta, eps, eps_inside=True):
    """Each worker's output, normalized with its own (mean, variance) from the lists given."""
    return [gamma * (x - m) / (np.sqrt(v + eps) if eps_inside else np.sqrt(v) + eps) + beta
            for x, m, v in zip(xs, means, variances)]


def _sync_forward_mistakes(xs, gamma, beta, eps):
    k = len(xs)
    counts = np.array([len(x) for x in xs], dtype=float)
    total = counts.sum()
    local_means, local_vars = [x.mean(axis=0) for x in xs], [x.var(axis=0) for x in xs]
    mean = sum(x.sum(axis=0) for x in xs) / total
    var = sum((x * x).sum(axis=0) for x in xs) / total - mean ** 2
    average_mean = sum(local_means) / k
    within = sum(n * v for n, v in zip(counts, local_vars)) / total
    squares = sum((x * x).sum(axis=0) for x in xs)

    def same_stats(m, v, **kw):
        return _normalized(xs, [m] * k, [v] * k, gamma, beta, **{"eps": eps, **kw})

    mistakes = [
        (_normalized(xs, local_means, local_vars, gamma, beta, eps),
         "each worker normalized with its own batch's mean and variance: that is per-worker batch norm (what "
         "DDP does by default), not synchronized. All-reduce each worker's count, sum and sum of squares, then "
         "divide the totals by the total count. (If you did call all_reduce, use what it returns: it returns the "
         "sum and leaves its argument as it was.)"),
        (same_stats(average_mean, sum(local_vars) / k),
         "the workers' means and variances were averaged. With unequal counts a worker with few examples weighs "
         "as much as one with many, and an average of variances leaves out how far apart the workers' means "
         "are. All-reduce the sums and sums of squares (and the counts) instead."),
        (same_stats(mean, within),
         "the mean is right, but the variance is the average of the workers' variances around their own means, "
         "which leaves out how far apart the workers' means are. All-reduce the sums of squares: "
         "var = sum(x**2) / N - mean**2."),
        (same_stats(average_mean, squares / total - average_mean ** 2),
         "the mean is the plain average of the workers' means; with unequal counts that is not the mean of all "
         "examples. Divide the all-reduced sum by the all-reduced count."),
        (_normalized(xs, [sum(x.sum(axis=0) for x in xs) / n for n in counts],
                     [squares / n - (sum(x.sum(axis=0) for x in xs) / n) ** 2 for n in counts], gamma, beta, eps),
         "each worker divided the all-reduced sums by its own count. The count must be all-reduced too: "
         "N is the number of examples of all workers together."),
        (same_stats(mean, var * total / (total - 1)),
         "the variance is the unbiased one (divided by N - 1). Batch norm normalizes with the biased variance: "
         "divide by N."),
        (same_stats(mean, var, eps_inside=False), "eps was added to the standard deviation; it goes inside the "
                                                  "square root: sqrt(var + eps)."),
        (same_stats(mean, var, eps=0.0), "eps is missing: divide by sqrt(var + eps)."),
        ([(x - mean) / np.sqrt(var + eps) for x in xs], "gamma and beta were not applied: out = gamma * x_hat + beta."),
    ]
    if eps != DEFAULT_EPS:
        mistakes.append((same_stats(mean, var, eps=DEFAULT_EPS),
                         f"the output matches eps = {DEFAULT_EPS} instead of the eps={eps} passed in. Use the eps "
                         "argument."))
    return mistakes


def _cache_mistakes(xs, cache, eps):
    """Each worker's wrong cache['x_hat'] and the wrong cache['std'] (the outputs can be right while the cache,
    which the backward pass reads, is not)."""
    mean, var = cache["mean"], cache["var"]
    x_hat = [_per_worker(_distinct(cache["x_hat"], [
        ([x - mean for x in xs], "cache['x_hat'] is x - mean; it is the normalized batch (x - mean) / sqrt(var + eps), "
                                 "which the backward pass multiplies with dout."),
        ([(x - mean) / np.sqrt(var) for x in xs], "cache['x_hat'] was divided by sqrt(var), without eps: "
                                                  "(x - mean) / sqrt(var + eps)."),
        ([x for x in xs], "cache['x_hat'] holds the input x; it is the normalized batch (x - mean) / sqrt(var + eps)."),
    ]), k) for k in range(len(xs))]
    std = [Mistake(m, text) for (m,), text in _distinct([cache["std"]], [
        ([var], "cache['std'] holds the variance; it is the standard deviation sqrt(var + eps)."),
        ([var + eps], "cache['std'] holds var + eps; it is its square root, sqrt(var + eps)."),
        ([np.sqrt(var)], "cache['std'] is sqrt(var), without eps: sqrt(var + eps)."),
    ])]
    return x_hat, std


def sync_forward_cases(cases=(((5, 11), 4), ((6, 6, 6), 3), ((9, 2, 4), 2)), seed=0):
    """Per-worker batches for each (counts, features) case (the second with eps=1e-3), the reference's
    outputs (batch norm on the concatenated batch agrees), global statistics and every worker's x_hat, and the
    known mistakes' outputs and caches, worker by worker."""
    rng = np.random.default_rng(seed)
    built = []
    for (counts, d), eps in zip(cases, _eps_cases(cases)):
        xs = _shards(rng, counts, d)
        gamma, beta = _affine(rng, d)
        outs, cache = practice.sync_batchnorm_forward(xs, gamma, beta, eps=eps)
        with np.errstate(invalid="ignore"):   # a mistake's variance can come out negative: NaN, never matched
            kept = _distinct(outs, _sync_forward_mistakes(xs, gamma, beta, eps))
        x_hat_mistakes, std_mistakes = _cache_mistakes(xs, cache, eps)
        built.append({"xs": xs, "gamma": gamma, "beta": beta, "eps": eps, "expected": outs,
                      "mean": cache["mean"], "var": cache["var"], "std": cache["std"], "x_hat": cache["x_hat"],
                      "count": cache["count"],
                      "count_mistakes": [Mistake(float(n), f"cache['count'] is one worker's own count ({n}). N is the "
                                                           "number of examples of all workers: all-reduce the counts "
                                                           "with the sums, and divide the all-reduced sums by the "
                                                           "all-reduced count.") for n in sorted(set(counts))],
                      "mistakes": [_per_worker(kept, k) for k in range(len(xs))],
                      "x_hat_mistakes": x_hat_mistakes, "std_mistakes": std_mistakes})
    return built


# ---------------------------------------------------------------------------------------------
# Part 2: synchronized batch norm, backward
# ---------------------------------------------------------------------------------------------

def _sync_backward_mistakes(douts, cache):
    gamma, std, x_hats = cache["gamma"], cache["std"], cache["x_hat"]
    n_total, k = cache["count"], len(douts)
    sum_g = sum(g.sum(axis=0) for g in douts)
    sum_gx = sum((g * xh).sum(axis=0) for g, xh in zip(douts, x_hats))

    def dx(g, xh, n, s_g, s_gx, with_gamma=True):
        return (gamma if with_gamma else 1.0) / (n * std) * (n * g - s_g - xh * s_gx)

    right = [dx(g, xh, n_total, sum_g, sum_gx) for g, xh in zip(douts, x_hats)]
    own = [(g, xh, len(g), g.sum(axis=0), (g * xh).sum(axis=0)) for g, xh in zip(douts, x_hats)]
    dx_mistakes = [
        ([dx(*o) for o in own],
         "each worker used its own sums of dout and dout * x_hat (and its own count): the backward all-reduce is "
         "missing. Every example influenced every other through the global mean and variance, so the two sums "
         "must be all-reduced before dx is formed."),
        ([dx(g, xh, n_total, sg, sgx) for g, xh, _, sg, sgx in own],
         "the count is the global N but the sums of dout and dout * x_hat are each worker's own: all-reduce "
         "them too."),
        ([dx(g, xh, n_total, sum_g, sgx) for g, xh, _, _, sgx in own],
         "only the sum of dout was all-reduced; the sum of dout * x_hat is each worker's own. Both sums run over "
         "all workers' examples: all-reduce them together, in one array."),
        ([dx(g, xh, n_total, sg, sum_gx) for g, xh, _, sg, _ in own],
         "only the sum of dout * x_hat was all-reduced; the sum of dout is each worker's own. Both sums run over "
         "all workers' examples: all-reduce them together, in one array."),
        ([dx(g, xh, len(g), sum_g, sum_gx) for g, xh in zip(douts, x_hats)],
         "the sums are all-reduced but each worker divided by its own count; use the global count N "
         "(cache['count'])."),
        ([sum(right)] * k if len({len(g) for g in douts}) == 1 else right,
         "dx was all-reduced (summed over the workers). dx belongs to each worker's own examples and never leaves "
         "its worker; only the per-feature sums are all-reduced."),
        ([sum(right) / k] * k if len({len(g) for g in douts}) == 1 else right,
         "dx was averaged over the workers. dx belongs to each worker's own examples and never leaves its "
         "worker; only the per-feature sums are all-reduced."),
        ([dx(g, xh, n_total, 0.0, sum_gx) for g, xh in zip(douts, x_hats)],
         "the path through the mean is missing: the term -sum(dout) over all workers."),
        ([dx(g, xh, n_total, sum_g, 0.0) for g, xh in zip(douts, x_hats)],
         "the path through the variance is missing: the term -x_hat * sum(dout * x_hat) over all workers."),
        ([dx(g, xh, n_total, sum_g, sum_gx, with_gamma=False) for g, xh in zip(douts, x_hats)],
         "gamma is missing from dx."),
    ]
    dgamma = [[Mistake((g * xh).sum(axis=0), "dgamma is this worker's own sum; it is the sum over all workers (the "
                                             "all-reduced sum of dout * x_hat)."),
               Mistake(sum_gx / k, "dgamma is the average over the workers; it is their sum."),
               Mistake(sum_g, "dgamma and dbeta are swapped: dgamma = sum(dout * x_hat).")]
              for g, xh in zip(douts, x_hats)]
    dbeta = [[Mistake(g.sum(axis=0), "dbeta is this worker's own sum; it is the sum over all workers (the "
                                     "all-reduced sum of dout)."),
              Mistake(sum_g / k, "dbeta is the average over the workers; it is their sum."),
              Mistake(sum_gx, "dgamma and dbeta are swapped: dbeta = sum(dout).")]
             for g in douts]
    return right, _distinct(right, dx_mistakes), dgamma, dbeta


def _worker_caches(cache):
    """The reference forward pass's cache, split into what each worker holds: its own x_hat, and the global
    statistics, gamma, eps and count."""
    shared = {key: cache[key] for key in ("mean", "var", "std", "gamma", "eps", "count")}
    return [{"x_hat": x_hat, **shared} for x_hat in cache["x_hat"]]


def sync_backward_cases(cases=(((6, 6), 3), ((4, 9, 5), 4)), seed=1):
    """Per-worker douts and caches from the reference forward pass (so the check does not depend on the
    student's forward pass); the reference gradients (autograd through batch norm on the concatenated batch
    agrees) and the known mistakes', worker by worker. The first case has equal counts, where an all-reduced dx
    still has the right shape and its numbers name the mistake."""
    rng = np.random.default_rng(seed)
    built = []
    for counts, d in cases:
        xs = _shards(rng, counts, d)
        gamma, beta = _affine(rng, d)
        _, cache = practice.sync_batchnorm_forward(xs, gamma, beta)
        douts = [rng.normal(size=x.shape) for x in xs]
        dxs, dgamma, dbeta = practice.sync_batchnorm_backward(douts, cache)
        right, kept, dgamma_mistakes, dbeta_mistakes = _sync_backward_mistakes(douts, cache)
        assert all(_close(a, b) for a, b in zip(right, dxs))
        built.append({"douts": douts, "caches": _worker_caches(cache), "dxs": dxs, "dgamma": dgamma, "dbeta": dbeta,
                      "dx_mistakes": [_per_worker(kept, k) for k in range(len(xs))],
                      "dgamma_mistakes": dgamma_mistakes, "dbeta_mistakes": dbeta_mistakes})
    return built


# ---------------------------------------------------------------------------------------------
# Part 3: Batch Renormalization
# ---------------------------------------------------------------------------------------------

def _renorm_variant(x, gamma, beta, mu, sigma, r_max, d_max, momentum, eps, *, ratio="std/sigma",
                    d_over="sigma", clip_r=True, clip_d=True, r_low=None, update_first=False, ddof=0,
                    eps_inside=True, std_update="std", keras_momentum=False, update=True):
    """Batch renorm's output and new running statistics, with one known mistake switched on."""
    mean = x.mean(axis=0)
    var = x.var(axis=0, ddof=ddof)
    std = np.sqrt(var + eps) if eps_inside else np.sqrt(var) + eps
    w = 1 - momentum if keras_momentum else momentum
    new_mu = mu + w * (mean - mu)
    moved_to = {"var": var, "std": std, "std without eps": np.sqrt(var)}[std_update]
    new_sigma = sigma + w * (moved_to - sigma)
    if update_first:
        mu, sigma = new_mu, new_sigma
    r = std / sigma if ratio == "std/sigma" else sigma / std
    if clip_r:
        r = np.clip(r, 1 / r_max if r_low is None else r_low, r_max)
    d = (mean - mu) / (sigma if d_over == "sigma" else std)
    if clip_d:
        d = np.clip(d, -d_max, d_max)
    out = gamma * ((x - mean) / std * r + d) + beta
    if not update:
        new_mu, new_sigma = mu, sigma
    return out, new_mu, new_sigma


RENORM_MISTAKES = [
    ({"ratio": "sigma/std"}, "r is upside down: r = batch std / running std (sigma_B / sigma), clipped."),
    ({"d_over": "std"}, "d was divided by the batch's std; d = (batch mean - running mean) / running std (sigma)."),
    ({"clip_d": False}, "d was not clipped: d = clip((mean - mu) / sigma, -d_max, d_max)."),
    ({"clip_r": False}, "r was not clipped: r = clip(sigma_B / sigma, 1 / r_max, r_max)."),
    ({"r_low": 0.0}, "r was clipped from above only (or to [0, r_max], or [-r_max, r_max]: the ratio is never "
                     "negative); its lower bound is 1 / r_max."),
    ({"update_first": True}, "the running statistics were updated before r and d were computed. r and d use the "
                             "running statistics from before this batch; update them afterwards."),
    ({"std_update": "var"}, "running_std was moved towards the batch's variance; it averages the standard deviation "
                            "sigma_B = sqrt(var + eps)."),
    ({"std_update": "std without eps"}, "running_std was moved towards sqrt(var), the batch's standard deviation "
                                        "without eps; it averages sigma_B = sqrt(var + eps), the one the output "
                                        "divides by."),
    ({"keras_momentum": True}, "the running statistics kept `momentum` of the new value the other way round "
                               "(Keras' convention). Here running += momentum * (batch - running)."),
    ({"update": False}, "the running statistics were not updated: running_mean += momentum * (mean - running_mean), "
                        "and the same for running_std."),
    ({"ddof": 1}, "the batch variance is the unbiased one (ddof=1); batch renorm, like batch norm, uses the biased "
                  "variance (unbiased=False)."),
    ({"eps_inside": False}, "eps was added to the standard deviation; sigma_B = sqrt(var + eps)."),
]


def _renorm_state(rng, x, eps, regimes):
    """Running statistics per feature: near the batch's ("inside": no clipping), with a running std much
    larger than the batch's ("small r": r below 1 / r_max), much smaller ("large r"), or a running mean far
    away ("far mean": d clipped)."""
    mean, std = x.mean(axis=0), np.sqrt(x.var(axis=0) + eps)
    mu, sigma = mean + rng.uniform(-0.3, 0.3, len(mean)) * std, std * rng.uniform(0.8, 1.25, len(mean))
    for j, regime in enumerate(regimes):
        if regime == "small r":
            sigma[j] = std[j] * rng.uniform(5, 8)
        elif regime == "large r":
            sigma[j] = std[j] / rng.uniform(5, 8)
        elif regime == "far mean":
            mu[j] = mean[j] + rng.choice([-1, 1]) * rng.uniform(8, 12) * sigma[j]
    return mu, sigma


def _renorm_gradients(inputs, dout, *, detach_r=True, detach_d=True, detach_stats=False):
    """dx, dgamma, dbeta of batch renorm by torch autograd, with the stop-gradients as given."""
    torch = _torch()
    x, gamma, beta = (torch.tensor(inputs[k], requires_grad=True) for k in ("x", "gamma", "beta"))
    mu, sigma = torch.tensor(inputs["running_mean"]), torch.tensor(inputs["running_std"])
    mean, std = x.mean(0), torch.sqrt(x.var(0, unbiased=False) + inputs["eps"])
    if detach_stats:
        mean, std = mean.detach(), std.detach()
    r = (std / sigma).clamp(1 / inputs["r_max"], inputs["r_max"])
    d = ((mean - mu) / sigma).clamp(-inputs["d_max"], inputs["d_max"])
    r, d = (r.detach() if detach_r else r), (d.detach() if detach_d else d)
    (gamma * ((x - mean) / std * r + d) + beta).backward(torch.tensor(dout))
    return [t.grad.numpy() for t in (x, gamma, beta)]


GRADIENT_MISTAKES = [
    ({"detach_r": False, "detach_d": False}, "gradients flow through r and d. The paper treats them as constants in "
                                             "the backward pass: compute them under torch.no_grad() or .detach() "
                                             "them."),
    ({"detach_r": False}, "gradients flow through r. The paper treats r and d as constants: .detach() r as well."),
    ({"detach_d": False}, "gradients flow through d. The paper treats r and d as constants: .detach() d as well."),
    ({"detach_stats": True}, "the batch mean and std were detached too. Only r and d are constants; the gradient "
                             "must still flow through the batch statistics, as in batch norm."),
]


def batch_renorm_cases(cases=((12, 5, 3.0, 5.0), (8, 6, 1.5, 0.5), (16, 4, 2.0, 1.0)), seed=2):
    """(N, D, r_max, d_max) batches with running statistics that put some features inside the clipping
    bounds and others outside (r below and above its bounds, d beyond its bound), momentum and eps
    (the second case with eps=1e-3), and an upstream gradient; the reference's output, new running
    statistics and gradients, and the known mistakes' (forward by NumPy variants, gradients by autograd)."""
    rng = np.random.default_rng(seed)
    built = []
    regimes = ["inside", "small r", "large r", "far mean", "inside", "far mean"]
    for (n, d, r_max, d_max), eps in zip(cases, _eps_cases(cases)):
        x = rng.normal(rng.uniform(-3, 3, d), rng.uniform(0.5, 3, d), size=(n, d))
        gamma, beta = _affine(rng, d)
        mu, sigma = _renorm_state(rng, x, eps, regimes[:d])
        momentum = float(rng.choice([0.05, 0.2, 0.3]))
        inputs = {"x": x, "gamma": gamma, "beta": beta, "running_mean": mu, "running_std": sigma, "r_max": r_max,
                  "d_max": d_max, "momentum": momentum, "eps": eps}
        state = {"running_mean": mu.copy(), "running_std": sigma.copy()}
        out, cache = practice.batch_renorm_forward(x, gamma, beta, state, r_max, d_max, momentum, eps)
        dout = rng.normal(size=x.shape)
        expected = [out, state["running_mean"], state["running_std"]]
        variants = [([*_renorm_variant(x, gamma, beta, mu, sigma, r_max, d_max, momentum, eps, **flags)], text)
                    for flags, text in RENORM_MISTAKES]
        if eps != DEFAULT_EPS:
            variants.append(([*_renorm_variant(x, gamma, beta, mu, sigma, r_max, d_max, momentum, DEFAULT_EPS)],
                             f"the results match eps = {DEFAULT_EPS} instead of the eps={eps} passed in. Use the "
                             "eps argument."))
        kept = _distinct(expected, variants)
        gradients = list(practice.batch_renorm_backward(dout, cache))
        gradient_variants = _distinct(gradients, [(_renorm_gradients(inputs, dout, **flags), text)
                                                  for flags, text in GRADIENT_MISTAKES])
        built.append({"inputs": inputs, "dout": dout, "out": out, "running_mean": state["running_mean"],
                      "running_std": state["running_std"], "dx": gradients[0], "dgamma": gradients[1],
                      "dbeta": gradients[2],
                      "forward_mistakes": [_per_worker(kept, i) for i in range(3)],
                      "gradient_mistakes": [_per_worker(gradient_variants, i) for i in range(3)]})
    return built


# ---------------------------------------------------------------------------------------------
# Part 4: exact statistics after training
# ---------------------------------------------------------------------------------------------

STALE_BATCHES_TRACKED = 100
MOMENTA = (0.01, 0.03, 0.05, 0.2, 0.3)   # the layers' momenta before the call


def _statistics_model(inputs):
    """The exercise's Conv2d -> BatchNorm2d -> ReLU -> Flatten -> Linear -> BatchNorm1d -> ReLU -> Linear in
    float64, with the given weights and stale running statistics (as the given wrapper builds it)."""
    torch = _torch()
    nn = torch.nn
    conv_w, lin_w, head_w = inputs["conv_weight"], inputs["linear_weight"], inputs["head_weight"]
    c, c_in, k, _ = conv_w.shape
    model = nn.Sequential(nn.Conv2d(c_in, c, k, padding=k // 2, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                          nn.Flatten(), nn.Linear(lin_w.shape[1], lin_w.shape[0], bias=False),
                          nn.BatchNorm1d(lin_w.shape[0]), nn.ReLU(), nn.Linear(head_w.shape[1], head_w.shape[0]))
    model = model.double()
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(conv_w))
        model[4].weight.copy_(torch.from_numpy(lin_w))
        model[7].weight.copy_(torch.from_numpy(head_w))
        model[7].bias.zero_()
        for i, layer in enumerate((model[1], model[5])):
            layer.running_mean.copy_(torch.from_numpy(inputs["running_means"][i]))
            layer.running_var.copy_(torch.from_numpy(inputs["running_vars"][i]))
            layer.num_batches_tracked.fill_(STALE_BATCHES_TRACKED)
            layer.momentum = inputs["momenta"][i]
    return model.train(bool(inputs["train_mode"]))


def _stats_of(model):
    layers = (model[1], model[5])
    return [layer.running_mean.numpy().copy() for layer in layers] + [layer.running_var.numpy().copy()
                                                                      for layer in layers]


def _statistics_mistakes(inputs):
    torch = _torch()
    batches = [torch.from_numpy(b) for b in inputs["batches"]]

    def passes(model, reset=False, momentum="keep", mode=True):
        for layer in (model[1], model[5]):
            if reset:
                layer.reset_running_stats()
            if momentum != "keep":
                layer.momentum = momentum
        model.train(mode)
        with torch.no_grad():
            for batch in batches:
                model(batch)
        return _stats_of(model)

    def exact(model, biased=False, mode=True, batches=batches):
        sums = {}

        def hook(layer, args):
            x = args[0].detach()
            dims = [0, *range(2, x.dim())]
            s = sums.setdefault(layer, [0.0, 0.0, 0])
            s[0], s[1], s[2] = s[0] + x.sum(dims), s[1] + (x * x).sum(dims), s[2] + x.numel() // x.shape[1]

        hooks = [layer.register_forward_pre_hook(hook) for layer in (model[1], model[5])]
        model.train(mode)
        with torch.no_grad():
            for batch in batches:
                model(batch)
        for h in hooks:
            h.remove()
        with torch.no_grad():
            for layer, (total, squares, n) in sums.items():
                layer.running_mean.copy_(total / n)
                layer.running_var.copy_((squares - total * total / n) / (n if biased else n - 1))
        return _stats_of(model)

    def update_bn(model):
        torch.optim.swa_utils.update_bn(batches, model)
        return _stats_of(model)

    return [
        (passes(_statistics_model(inputs)),
         "these are running averages (with the layers' momentum) continued from the old statistics: the batches "
         "were run in train mode without resetting anything or changing the momentum. Reset the statistics and "
         "compute the exact mean and variance over all batches."),
        (passes(_statistics_model(inputs), reset=True),
         "these are running averages with the layers' momentum over the batches (after a reset): each batch counts "
         "with a different weight. The exact statistics weigh every example equally: accumulate sums over all "
         "batches."),
        (passes(_statistics_model(inputs), momentum=None),
         "momentum=None was set without reset_running_stats() first: the cumulative average continued from the "
         "old statistics (num_batches_tracked was not reset)."),
        (update_bn(_statistics_model(inputs)),
         "this is what torch.optim.swa_utils.update_bn gives: the average of the per-batch means and of the "
         "per-batch unbiased variances. Batches of different sizes then count alike, and the spread of the batch "
         "means is left out of the variance. Accumulate the sums and sums of squares of all inputs instead."),
        (passes(_statistics_model(inputs), momentum=1.0),
         "these are the statistics of the last batch only (momentum 1.0). Use all batches."),
        (exact(_statistics_model(inputs), biased=True),
         "the variance is the biased one (divided by the count); running_var holds the unbiased variance: divide "
         "by count - 1."),
        (exact(_statistics_model(inputs), mode=False),
         "the first layer's statistics are right but the second's are not: the batches ran in eval mode, so the "
         "first batch norm layer normalized with its old running statistics and the second layer saw other "
         "inputs than in training. Run the batches in train mode."),
        (exact(_statistics_model(inputs), batches=[torch.cat(batches)]),
         "the first layer's statistics are right but the second's are not: the batches went through the model at "
         "once, concatenated, so the first batch norm layer normalized them with the statistics of all of them, "
         "not of each batch as in training, and the second layer saw other inputs. Run the batches one by one."),
    ]


STATISTICS_NAMES = ("bn1.running_mean", "bn2.running_mean", "bn1.running_var", "bn2.running_var")


def recompute_statistics_cases(cases=((2, 3, 4, 5, (6, 6, 3), False), (1, 2, 3, 4, (4, 7), True)), seed=3):
    """(input channels, conv channels, image size, hidden features, batch sizes, train mode) cases: the
    weights of the exercise's small conv net, stale running statistics and momenta, the batches (each with its own
    offset), the reference's exact statistics (update_bn on one batch agrees) and the known mistakes'."""
    rng = np.random.default_rng(seed)
    built = []
    for c_in, c, size, hidden, sizes, train_mode in cases:
        inputs = {"conv_weight": rng.normal(0, 0.5, size=(c, c_in, 3, 3)),
                  "linear_weight": rng.normal(0, 0.3, size=(hidden, c * size * size)),
                  "head_weight": rng.normal(0, 0.5, size=(3, hidden)),
                  "running_means": [rng.uniform(-1, 1, c), rng.uniform(-1, 1, hidden)],
                  "running_vars": [rng.uniform(0.5, 2, c), rng.uniform(0.5, 2, hidden)],
                  # not PyTorch's default, so that restoring a hard-coded 0.1 shows
                  "momenta": [float(rng.choice(MOMENTA)) for _ in range(2)],
                  "batches": [rng.normal(rng.uniform(-1, 2), rng.uniform(0.5, 2), size=(n, c_in, size, size))
                              for n in sizes],
                  "train_mode": bool(train_mode)}
        torch = _torch()
        model = _statistics_model(inputs)
        practice.recompute_bn_statistics(model, [torch.from_numpy(b) for b in inputs["batches"]])
        expected = _stats_of(model)
        kept = _distinct(expected, _statistics_mistakes(inputs))
        built.append({"inputs": inputs, "expected": expected, "mistakes": [_per_worker(kept, i) for i in range(4)]})
    return built


# ---------------------------------------------------------------------------------------------
# Part 5: folding batch norm into a convolution
# ---------------------------------------------------------------------------------------------

def _folded_output(inputs, weight, bias):
    torch = _torch()
    return torch.nn.functional.conv2d(torch.from_numpy(inputs["x"]), torch.from_numpy(weight), torch.from_numpy(bias),
                                      stride=inputs["stride"], padding=inputs["padding"],
                                      dilation=inputs["dilation"], groups=inputs["groups"]).numpy()


def _fold_mistakes(inputs):
    w, b = inputs["weight"], inputs["bias"]
    mean, var, gamma, beta, eps = (inputs[k] for k in ("running_mean", "running_var", "gamma", "beta", "eps"))
    old_bias = np.zeros_like(mean) if b is None else b
    scale = gamma / np.sqrt(var + eps)

    def fold(weight_scale, bias):
        return [w * weight_scale, bias]

    per_out = scale[:, None, None, None]
    mistakes = [
        (fold(scale.mean(), (old_bias - mean) * scale.mean() + beta),
         "one scale for the whole weight (a per-tensor scale); batch norm scales every output channel by its own "
         "gamma / sqrt(running_var + eps): weight * scale.view(-1, 1, 1, 1)."),
        (fold((gamma / np.sqrt(var))[:, None, None, None], (old_bias - mean) * gamma / np.sqrt(var) + beta),
         "eps is missing from the scale: gamma / sqrt(running_var + eps)."),
        (fold((gamma / (np.sqrt(var) + eps))[:, None, None, None], (old_bias - mean) * gamma / (np.sqrt(var) + eps)
              + beta), "eps was added to the standard deviation; it goes inside: sqrt(running_var + eps)."),
        (fold((gamma / (var + eps))[:, None, None, None], (old_bias - mean) * gamma / (var + eps) + beta),
         "the scale divides by the variance; it divides by the standard deviation sqrt(running_var + eps)."),
        (fold(per_out, beta - mean), "the running mean was not scaled: bias = (conv bias - running_mean) * scale "
                                     "+ beta."),
        (fold(per_out, (old_bias - mean) * scale), "beta is missing from the folded bias."),
        (fold(per_out, old_bias * scale + beta), "the running mean is missing from the folded bias."),
    ]
    if w.shape[0] == w.shape[1]:
        mistakes.append((fold(scale[None, :, None, None], (old_bias - mean) * scale + beta),
                         "the scale was applied along the input channels (dimension 1 of the weight). It belongs to "
                         "the output channels, dimension 0: weight * scale.view(-1, 1, 1, 1)."))
    if b is not None:
        mistakes.append((fold(per_out, (0 - mean) * scale + beta),
                         "the convolution's own bias was dropped; it goes through batch norm too: "
                         "(conv.bias - running_mean) * scale + beta."))
    if eps != DEFAULT_EPS:
        s = gamma / np.sqrt(var + DEFAULT_EPS)
        mistakes.append((fold(s[:, None, None, None], (old_bias - mean) * s + beta),
                         f"the fold matches eps = {DEFAULT_EPS} instead of bn.eps = {eps}. Use bn.eps."))
    return mistakes


def fold_conv_cases(cases=((3, 3, 1, 1, 1, 1, False), (2, 4, 2, 0, 1, 1, True), (4, 4, 1, 2, 2, 1, True),
                           (4, 4, 1, 1, 1, 2, False)), seed=4):
    """(C_in, C_out, stride, padding, dilation, groups, with bias) convolutions (3x3) followed by batch norm in
    eval mode (the second with eps=1e-3), an input, the reference fold's weight, bias and output (torch's
    fuse_conv_bn_eval agrees) and the known mistakes' weight and bias."""
    rng = np.random.default_rng(seed)
    built = []
    for (c_in, c_out, stride, padding, dilation, groups, with_bias), eps in zip(cases, _eps_cases(cases)):
        if c_in % groups or c_out % groups:
            raise ValueError(f"groups={groups} must divide C_in={c_in} and C_out={c_out}")
        gamma, beta = _affine(rng, c_out)
        inputs = {"weight": rng.normal(0, 0.5, size=(c_out, c_in // groups, 3, 3)),
                  "bias": rng.normal(0, 0.5, size=c_out) if with_bias else None, "stride": int(stride),
                  "padding": int(padding), "dilation": int(dilation), "groups": int(groups),
                  "running_mean": rng.uniform(-2, 2, c_out),
                  "running_var": rng.uniform(0.2, 3, c_out), "gamma": gamma, "beta": beta, "eps": eps,
                  "x": rng.normal(1.0, 2.0, size=(2, c_in, 6, 6))}
        weight, bias = practice.fold_batchnorm_into_conv(inputs["weight"], inputs["bias"], inputs["running_mean"],
                                                         inputs["running_var"], gamma, beta, eps)
        kept = _distinct([weight, bias], _fold_mistakes(inputs))
        built.append({"inputs": inputs, "weight": weight, "bias": bias,
                      "output": _folded_output(inputs, weight, bias),
                      "weight_mistakes": _per_worker(kept, 0), "bias_mistakes": _per_worker(kept, 1)})
    return built


# ---------------------------------------------------------------------------------------------
# The checks: the kit's comparison on cases built here
# ---------------------------------------------------------------------------------------------

def check_sync_forward(sync_forward_outputs, **params):
    kit.verify_sync_forward(sync_forward_outputs, sync_forward_cases(**params))


def check_sync_backward(sync_backward_outputs, **params):
    kit.verify_sync_backward(sync_backward_outputs, sync_backward_cases(**params))


def check_batch_renorm_forward(batch_renorm_outputs, **params):
    kit.verify_batch_renorm_forward(batch_renorm_outputs, batch_renorm_cases(**params))


def check_batch_renorm_gradients(batch_renorm_outputs, **params):
    kit.verify_batch_renorm_gradients(batch_renorm_outputs, batch_renorm_cases(**params))


def check_recompute_statistics(recomputed_statistics, **params):
    kit.verify_recompute_statistics(recomputed_statistics, recompute_statistics_cases(**params))


def check_fold_conv(fold_conv_outputs, **params):
    kit.verify_fold_conv(fold_conv_outputs, fold_conv_cases(**params))


#: The visible checks of the notebook and their cases, stored in the kit (``bnkit/fixtures``).
VISIBLE = {
    "check_sync_forward": sync_forward_cases,
    "check_sync_backward": sync_backward_cases,
    "check_batch_renorm_forward": batch_renorm_cases,
    "check_batch_renorm_gradients": batch_renorm_cases,
    "check_recompute_statistics": recompute_statistics_cases,
    "check_fold_conv": fold_conv_cases,
}
