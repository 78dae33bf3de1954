"""Cases for the checks of Exercise 6: Santurkar et al.'s gradient-change measure, the loss along the
gradient with the gradient predictiveness, the effective learning rate of a scale-invariant weight with
the orthogonality of its gradient, and a question answered from the student's own runs of a given
training run.

The grader can pass only arrays, so the notebook has given wrappers that build a float64
``Linear -> [BatchNorm1d] -> ReLU`` network from a dict of arrays (the layout of
:func:`bncourse.reference.mlp_parameters`), with stale gradients in every ``.grad``
(:func:`stale_gradients`), call the student's function on it and return a dict of named results. Each
``*_cases`` function draws networks and data from its parameters and computes, with the NumPy reference
(:func:`bncourse.reference.gradient_change`, ``loss_along_gradient``, ``effective_learning_rate``,
``sgd_steps``; tested against torch autograd), the expected results and those of known mistakes. The mini-batch of Part 1 and the question's mini-batches are drawn with
``torch.randint`` from seeded generators, as the notebook specifies. The comparison is the student kit's
(:mod:`bnkit.ex06_why_bn_works`).
"""

from __future__ import annotations

import copy
import functools

import numpy as np
from bnkit import ex06_why_bn_works as kit

from .. import reference
from ._core import Mistake, _torch

#: Batch norm's ``eps`` in the notebook's networks (torch's default) and the reference's.
EPS = reference.DEFAULT_EPS


# ---------------------------------------------------------------------------------------------
# Networks and data
# ---------------------------------------------------------------------------------------------

def network(rng, sizes, batch_norm=True, scale=1.0):
    """A network dict for layer sizes ``sizes`` (inputs, hidden..., classes): He-scaled weights times
    ``scale``; with batch norm, gammas and betas away from 1 and 0 and running statistics unlike any
    batch's (so that eval mode gives visibly different numbers); without it, small biases."""
    weights = [rng.normal(0, scale * reference.he_std(fan_in), size=(fan_out, fan_in))
               for fan_in, fan_out in zip(sizes[:-1], sizes[1:])]
    hidden = sizes[1:-1]
    net = {"weights": weights, "biases": [None if batch_norm else rng.normal(0, 0.1, size=n) for n in hidden],
           "gammas": [], "betas": [], "running_means": [], "running_vars": []}
    net["biases"].append(rng.normal(0, 0.1, size=sizes[-1]))
    if batch_norm:
        net["gammas"] = [rng.uniform(0.6, 1.6, size=n) for n in hidden]
        net["betas"] = [rng.uniform(-0.5, 0.5, size=n) for n in hidden]
        net["running_means"] = [rng.uniform(-1.0, 1.0, size=n) for n in hidden]
        net["running_vars"] = [rng.uniform(0.3, 3.0, size=n) for n in hidden]
    return net


def classes(rng, n, d, k):
    """``n`` examples of ``d`` features in ``k`` overlapping Gaussian classes, offset from 0."""
    centres = rng.normal(0, 1.5, size=(k, d))
    y = rng.integers(k, size=n)
    return centres[y] + rng.normal(size=(n, d)) + 0.5, y


def parameter_names(net):
    """What each parameter is, in words, in ``model.parameters()``' order."""
    words = {"weight": "weight", "bias": "bias", "gamma": "batch norm's weight (gamma)",
             "beta": "batch norm's bias (beta)"}
    return [f"{words[role]} of hidden layer {i}" if role in ("gamma", "beta") else f"linear layer {i}'s {role}"
            for i, role in reference.mlp_layout(net)]


#: The seed of the stale gradients that the notebook's given ``build_mlp`` leaves in every parameter's
#: ``.grad`` (standard normal numbers, as if from an earlier backward pass): a function that forgets
#: ``model.zero_grad()`` adds them to its gradients.
STALE_SEED = 6


def stale_gradients(net):
    """The ``.grad`` of every parameter (in ``model.parameters()``' order) of a model fresh from the
    notebook's ``build_mlp``: ``torch.randn`` draws from a generator seeded with :data:`STALE_SEED`."""
    torch = _torch()
    generator = torch.Generator().manual_seed(STALE_SEED)
    return [torch.randn(np.shape(p), generator=generator, dtype=torch.float64).numpy()
            for p in reference.mlp_parameters(net)]


def sampled_batches(n, batch_size, seed, count):
    """``count`` consecutive draws of ``torch.randint(0, n, (batch_size,), generator=g)`` from a generator
    seeded with ``seed``, as row-index arrays."""
    torch = _torch()
    generator = torch.Generator().manual_seed(int(seed))
    return [torch.randint(0, n, (batch_size,), generator=generator).numpy() for _ in range(count)]


def _distinct(expected, mistakes, atol=1e-6):
    """The mistakes whose result is defined (finite) and differs from the expected one (and from every
    earlier mistake's)."""
    kept, seen = [], [np.asarray(expected, dtype=float)]
    for mistake in mistakes:
        value = np.asarray(mistake.expected_if_made, dtype=float)
        if np.isfinite(value).all() and all(value.shape != other.shape or not np.allclose(value, other, rtol=1e-6, atol=atol) for other in seen):
            kept.append(mistake)
            seen.append(value)
    return kept


def _outputs(expected: dict, mistakes) -> dict:
    """The case entries the kit compares: each output's expected value under its name, and under
    ``<name>_mistakes`` what each known mistake gives for it (``mistakes``: pairs of one value per output, in
    ``expected``'s order, and the explanation), where that differs from the expected value. Scalars are
    Python floats (the kit's fixtures store arrays with at least one dimension)."""
    def plain(value):
        return float(value) if np.ndim(value) == 0 else np.asarray(value, dtype=float)

    entries = {name: plain(value) for name, value in expected.items()}
    for position, (name, value) in enumerate(expected.items()):
        entries[f"{name}_mistakes"] = _distinct(value, [Mistake(plain(values[position]), explanation)
                                                        for values, explanation in mistakes],
                                                atol=1e-9 if name == "cosine" else 1e-6)
    return entries


def _usable(build, rng, *parameters):
    """``build(rng, *parameters)``, drawn again until it returns a case (``None`` means: a draw in which the
    measurement is undefined or a known mistake gives the right answer, such as a layer whose units are all
    dead for the batch)."""
    for _ in range(100):
        case = build(rng, *parameters)
        if case is not None:
            return case
    raise RuntimeError(f"{build.__name__}{parameters}: no usable draw in 100 tries")


def _told_apart(expected, mistakes, atol=1e-6) -> bool:
    """Whether every mistake's values differ from the expected ones somewhere."""
    return all(not np.allclose(np.asarray(values, dtype=float), np.asarray(expected, dtype=float), rtol=1e-6,
                                atol=atol) for values, _ in mistakes)


# ---------------------------------------------------------------------------------------------
# Part 1: the gradient-change measure
# ---------------------------------------------------------------------------------------------

def gradient_change_cases(cases=(((6, 7, 5, 5, 3), True, 2, 0.3, 12, 40), ((5, 6, 6, 4), False, 1, 0.5, 10, 30)),
                          seed=11):
    """Networks (``(sizes, batch_norm, layer, lr, batch_size, n_train)``) and training sets; the
    expected ``[l2, cosine]`` of the specified measure, and what each known mistake gives."""
    rng = np.random.default_rng(seed)
    return [_usable(_gradient_change_case, rng, *case) for case in cases]


def _gradient_change_case(rng, sizes, batch_norm, layer, lr, batch_size, n_train):
    net = network(rng, sizes, batch_norm)
    x_train, y_train = classes(rng, n_train, sizes[0], sizes[-1])
    batch_seed = int(rng.integers(2**31))
    first, second = sampled_batches(n_train, batch_size, batch_seed, 2)
    x, y = x_train[first], y_train[first]
    layout = reference.mlp_layout(net)
    below = [i for i, (owner, _) in enumerate(layout) if owner < layer]
    itself = below + [i for i, (owner, role) in enumerate(layout) if owner == layer and role in ("weight", "bias")]
    above = [i for i in range(len(layout)) if i not in itself]
    before, after = reference.layer_gradients_before_and_after(net, x, y, layer, lr)
    if min(np.linalg.norm(before), np.linalg.norm(after)) < 1e-6:
        return None
    l2, cosine = reference.gradient_change(net, x, y, layer, lr)

    def variant(explanation, **mistake):
        return reference.gradient_change(net, x, y, layer, lr, **mistake), explanation

    stale = stale_gradients(net)
    stale_before, stale_after = reference.layer_gradients_before_and_after(net, x, y, layer, lr, stale=stale)
    weights_below = [i for i, (owner, role) in enumerate(layout) if owner < layer and role == "weight"]
    accumulated = before + after
    mistakes = [
        variant("the second gradient was taken on another mini-batch (a second torch.randint draw from the "
                "generator). Both gradients must be taken on the same batch: draw it once, at the start.",
                second_batch=(x_train[second], y_train[second])),
        variant(f"layer {layer} itself took the SGD step too. Only the parameters of the modules before linear "
                f"layer {layer} move (model[:position of that layer]); its own weight stays.",
                moved=itself),
        variant("every layer took the SGD step (optimizer.step() on all parameters?). Only the parameters of the "
                f"modules before linear layer {layer} move.", moved=list(range(len(layout)))),
        variant(f"the modules after linear layer {layer} took the step instead of those before it.",
                moved=above),
        ((cosine, l2), "l2 and cosine are swapped."),
        ((float(np.linalg.norm(after)), reference._cosine(before, accumulated)),
         "the gradients were not reset before the second backward pass, so the second gradient is G + G'. "
         "Call model.zero_grad() before each backward pass."),
        ((l2 / float(np.linalg.norm(before)), cosine), "l2 was divided by |G|: return the plain norm of the "
                                                        "difference, |G - G'|."),
        (reference.gradient_change(net, x, y, layer, lr, stale=stale),
         "the gradients were not reset before the first backward pass: the model comes with gradients in .grad "
         "from an earlier pass, and backward() adds to them, so G and the step were off. Call model.zero_grad() "
         "before each backward pass."),
        ((float(np.linalg.norm(stale_after)), reference._cosine(stale_before, stale_before + stale_after)),
         "the gradients were never reset: the model comes with gradients in .grad from an earlier pass, and "
         "each backward() adds to them. Call model.zero_grad() before each backward pass."),
        variant("the layers below moved uphill, p += lr * p.grad. An SGD step goes downhill: p -= lr * p.grad.",
                sign=-1.0),
        variant(f"only the weights of the linear layers below layer {layer} took the step. Every parameter of the "
                "modules before it moves: biases, and batch norm's gamma and beta, too.", moved=weights_below),
    ]
    # model[:layer] cuts the nn.Sequential at the linear layer's number, not at its position (3 modules per
    # hidden layer with batch norm, 2 without); named where it moves another set of parameters
    per_layer = 3 if batch_norm else 2
    cut_at_number = [i for i, (owner, role) in enumerate(layout)
                     if owner * per_layer + (role in ("gamma", "beta")) < layer]
    if cut_at_number not in (below, weights_below):
        mistakes.append(variant(
            f"the step moved model[:{layer}], the modules before position {layer} of the nn.Sequential. Linear "
            f"layer {layer} sits at position {per_layer * layer} (each hidden layer is {per_layer} modules), so "
            f"the modules before it are model[:{per_layer * layer}].", moved=cut_at_number))
    if batch_norm:
        mistakes.append(variant("G' was taken in eval mode (batch norm's running statistics). Both gradients are "
                                "taken in train mode, as SGD sees them: leave the model in train mode.",
                                second_mode="eval"))
    if not _told_apart((l2, cosine), mistakes):
        return None
    return {"inputs": {"net": net, "x_train": x_train, "y_train": y_train, "layer": layer, "lr": lr,
                       "batch_size": batch_size, "seed": batch_seed},
            **_outputs({"l2": l2, "cosine": cosine}, mistakes),
            "parameters": reference.mlp_parameters(net), "parameter_names": parameter_names(net)}


# ---------------------------------------------------------------------------------------------
# Part 2: the loss along the gradient and the gradient predictiveness
# ---------------------------------------------------------------------------------------------

def loss_landscape_cases(cases=(((5, 6, 6, 3), True, 16, (0.05, 0.2, 0.5, 1.0)),
                                ((4, 5, 3), False, 12, (0.1, 0.3))), seed=12):
    """Networks (``(sizes, batch_norm, n, step_sizes)``) and batches; the expected losses and gradient
    changes along the gradient, and what known mistakes give for each."""
    rng = np.random.default_rng(seed)
    return [_usable(_loss_landscape_case, rng, *case) for case in cases]


def _loss_landscape_case(rng, sizes, batch_norm, n, step_sizes):
    net = network(rng, sizes, batch_norm)
    x, y = classes(rng, n, sizes[0], sizes[-1])
    steps = np.array(step_sizes, dtype=float)
    losses, changes = reference.loss_along_gradient(net, x, y, steps)
    if np.sqrt(sum((g ** 2).sum() for g in reference.mlp_loss_and_gradients(net, x, y)[1])) < 1e-6:
        return None
    weights = [i for i, (_, role) in enumerate(reference.mlp_layout(net)) if role == "weight"]
    stale = stale_gradients(net)
    variants = [
        ("the parameters moved uphill, to w + eta * g. A step along the gradient goes downhill: "
         "p -= eta * g.", dict(sign=-1.0)),
        ("the parameters were not put back between step sizes, so the steps added up. Restore w before "
         "each step size: every point is w - eta * g from the same w.", dict(cumulative=True)),
        ("the losses were computed in eval mode (running statistics) but the gradients in train mode. "
         "Everything is measured in train mode, as SGD sees it.", dict(loss_mode="eval")),
        ("everything was computed in eval mode (running statistics). The measurements are of the loss SGD "
         "sees, in train mode: leave the model in train mode.", dict(loss_mode="eval", gradient_mode="eval")),
        ("that is the difference of the norms, | |g(w)| - |g(w - eta g)| |; the change is the norm of the "
         "difference, |g(w) - g(w - eta g)|.", dict(change="norms")),
        ("only the linear layers' weights were counted in the gradient change; count every parameter "
         "(biases, batch norm's gamma and beta too).", dict(parameters=weights)),
        ("that is the sum of each parameter's |g_p - g'_p|; the change is one norm over all the parameters "
         "together, the square root of the sum of every squared difference.", dict(change="sum of norms")),
        ("the gradients were not reset before the first backward pass: the model comes with gradients in .grad "
         "from an earlier pass, and backward() adds to them, so g was off. Call model.zero_grad() before each "
         "backward pass.", dict(stale=stale)),
        ("the gradients were not reset between step sizes, so each g' is added to the ones before it. Call "
         "model.zero_grad() before each backward pass.", dict(accumulate=True)),
        ("the gradients were never reset: the model comes with gradients in .grad from an earlier pass, and "
         "each backward() adds to them. Call model.zero_grad() before each backward pass.",
         dict(stale=stale, accumulate=True)),
    ]
    mistakes = [(reference.loss_along_gradient(net, x, y, steps, **mistake), explanation)
                for explanation, mistake in variants]
    g_norm = np.sqrt(sum((g ** 2).sum() for g in reference.mlp_loss_and_gradients(net, x, y)[1]))
    mistakes.append(((losses, changes / (steps * g_norm)),
                     "that is the change divided by |eta g|, the change per unit of distance; return the change "
                     "itself, |g - g'|."))
    return {"inputs": {"net": net, "x": x, "y": y, "step_sizes": [float(s) for s in steps]},
            **_outputs({"losses": losses, "gradient_changes": changes}, mistakes),
            "parameters": reference.mlp_parameters(net), "parameter_names": parameter_names(net)}


# ---------------------------------------------------------------------------------------------
# Part 3: the effective learning rate of a scale-invariant weight
# ---------------------------------------------------------------------------------------------

def _sequential_module(net, position):
    """What ``model[position]`` is in the notebook's nn.Sequential (Linear, BatchNorm1d, ReLU per hidden
    layer, then the output Linear): ("linear", i), ("batch norm", i) or ("relu", i)."""
    hidden = len(net["weights"]) - 1
    if position >= 3 * hidden:
        return "linear", hidden
    return ("linear", "batch norm", "relu")[position % 3], position // 3


def effective_lr_cases(cases=(((5, 6, 6, 3), 1, 0.2, 12), ((4, 5, 5, 5, 5, 3), 3, 0.05, 9)), seed=13):
    """Batch norm networks (``(sizes, layer, lr, n)``) and batches; the expected effective learning rate
    of linear layer ``layer``'s weight and the cosine between it and its gradient, and what known mistakes
    give for each. The first case is drawn until its cosine is negative (beyond rounding), so that an
    answer that drops the cosine's sign fails."""
    rng = np.random.default_rng(seed)
    return [_usable(_effective_lr_case, rng, *case, index == 0) for index, case in enumerate(cases)]


#: The smallest |cosine| a case with a negative cosine may have: twice it is far beyond the checks'
#: tolerance (1e-9 and 1e-7 relative), so that |cosine| and cosine are told apart.
NEGATIVE_COSINE_BELOW = -1e-8


def _effective_lr_case(rng, sizes, layer, lr, n, negative=False):
    net = network(rng, sizes, batch_norm=True, scale=float(rng.uniform(0.3, 3.0)))
    x, y = classes(rng, n, sizes[0], sizes[-1])
    gradient = reference.mlp_loss_and_gradients(net, x, y)[1][reference.mlp_layout(net).index((layer, "weight"))]
    if np.linalg.norm(gradient) < 1e-6:
        return None
    effective, cosine = reference.effective_learning_rate(net, x, y, layer, lr)
    if negative and not cosine < NEGATIVE_COSINE_BELOW:
        return None
    variants = [
        ("that is lr / |W|; the effective rate is lr / |W|^2 (the gradient shrinks like 1/|W| too).",
         dict(power=1)),
        ("that is lr * |W|^2; the effective rate is lr / |W|^2.", dict(power=-2)),
        ("the gradient was taken in eval mode, where batch norm uses its running statistics and W is not "
         "scale invariant. Take it in train mode.", dict(mode="eval")),
        ("the gradients were not reset before the backward pass: the model comes with gradients in .grad from "
         "an earlier pass, and backward() adds to them. Call model.zero_grad() first.",
         dict(stale=stale_gradients(net))),
    ]
    kind, index = _sequential_module(net, layer)
    layout = reference.mlp_layout(net)
    if kind in ("linear", "batch norm") and (kind, index) != ("linear", layer):
        role = "weight" if kind == "linear" else "gamma"
        what = f"linear layer {index}'s weight" if kind == "linear" else f"hidden layer {index}'s batch norm gamma"
        variants.append((f"that is {what}, model[{layer}]: indexing the nn.Sequential counts every module "
                         f"(Linear, BatchNorm1d, ReLU, ...). Take linear layer {layer}: "
                         f"[m for m in model if isinstance(m, nn.Linear)][{layer}].",
                         dict(parameter=layout.index((index, role)))))
    if layer + 1 < len(sizes) - 1:
        variants.append((f"that is linear layer {layer + 1}'s weight, one layer too far: the first nn.Linear is "
                         f"linear layer 0, so linear layer {layer} is [m for m in model if isinstance(m, "
                         f"nn.Linear)][{layer}].", dict(parameter=layout.index((layer + 1, "weight")))))
    if layer >= 1:
        variants.append((f"that is linear layer {layer - 1}'s weight, one layer too early: count the linear "
                         f"layers from 0 (the first nn.Linear is linear layer 0), so linear layer {layer} is "
                         f"[m for m in model if isinstance(m, nn.Linear)][{layer}], not [{layer} - 1].",
                         dict(parameter=layout.index((layer - 1, "weight")))))
    mistakes = [(reference.effective_learning_rate(net, x, y, layer, lr, **mistake), explanation)
                for explanation, mistake in variants]
    if cosine < NEGATIVE_COSINE_BELOW:
        mistakes.append(((effective, abs(cosine)), "that is |cos(W, g)|: the cosine keeps its sign (it is "
                                                   "negative here); return (W * g).sum() / (|W| |g|) as it is."))
    if not _told_apart((effective, cosine), mistakes, atol=1e-9):
        return None
    return {"inputs": {"net": net, "x": x, "y": y, "layer": layer, "lr": lr},
            **_outputs({"effective_lr": effective, "cosine": cosine}, mistakes)}


# ---------------------------------------------------------------------------------------------
# Part 4: the question, answered from the student's own run
# ---------------------------------------------------------------------------------------------

#: The question: the notebook's given ``rate_tuning_run(lr)`` trains the question's network at a rate and
#: returns the weight of linear layer ``layer`` before and after; the answer compares two such runs.
QUESTION = {"steps": 100, "batch_size": 32, "layer": 1}


def question_problem():
    """The question's network and data, made exactly as the notebook's given ``question_problem()`` makes
    them: 512 examples of 16 features in 3 classes, two hidden layers of 32 units with batch norm (gamma 1,
    beta 0), weights at a tenth of He's scale."""
    rng = np.random.default_rng(2026)
    centres = rng.normal(0, 1.5, size=(3, 16))
    y = rng.integers(3, size=512)
    x = centres[y] + rng.normal(size=(512, 16)) + 0.5
    weights = [rng.normal(0, 0.1 * np.sqrt(2 / m), size=(n, m)) for m, n in ((16, 32), (32, 32), (32, 3))]
    net = {"weights": weights, "biases": [None, None, np.zeros(3)], "gammas": [np.ones(32), np.ones(32)],
           "betas": [np.zeros(32), np.zeros(32)], "running_means": [np.zeros(32), np.zeros(32)],
           "running_vars": [np.ones(32), np.ones(32)]}
    return net, x, y


@functools.lru_cache(maxsize=16)
def _reference_run(lr):
    """The reference's run of the notebook's ``rate_tuning_run(lr)``: the weight of linear layer 1 before
    and after ``QUESTION["steps"]`` plain SGD steps at rate ``lr`` on the notebook's mini-batches."""
    net, x, y = question_problem()
    batches = sampled_batches(len(y), QUESTION["batch_size"], 0, QUESTION["steps"])
    trained = reference.sgd_steps(net, x, y, lr, batches)
    layer = QUESTION["layer"]
    return net["weights"][layer], trained["weights"][layer]


def tuned_rate_cases(rates=((0.05, 0.5),)):
    """For each pair ``(small_lr, large_lr)``: the reference runs' weights (what the student's own runs of
    the given ``rate_tuning_run`` must give), the factor by which the effective rate ``lr / |W|^2`` after
    training at ``large_lr`` exceeds the one at ``small_lr``, and what known mistakes give."""
    cases = []
    for small_lr, large_lr in rates:
        (start, small), (_, large) = _reference_run(float(small_lr)), _reference_run(float(large_lr))
        norm = {name: float(np.linalg.norm(w)) for name, w in (("start", start), ("small", small),
                                                                 ("large", large))}
        factor = (large_lr / norm["large"] ** 2) / (small_lr / norm["small"] ** 2)
        mistakes = [
            Mistake(1 / factor, f"that is the effective rate at lr = {small_lr} divided by the one at "
                                f"lr = {large_lr}; the question asks for the one at the larger rate divided by "
                                "the one at the smaller."),
            Mistake(large_lr / small_lr, "that is the ratio of the learning rates, which is also the ratio of the "
                                         "effective rates before training (both runs start from the same "
                                         "weights). Use the weights after training: \"weight_after\"."),
            Mistake((large_lr / norm["large"]) / (small_lr / norm["small"]),
                    "that is what an effective rate of lr / |W| gives; the effective rate is lr / |W|^2."),
            Mistake(norm["small"] ** 2 / norm["large"] ** 2,
                    "that is the ratio of 1 / |W|^2 alone; the effective rate is lr / |W|^2, with each run's "
                    "own learning rate."),
        ]
        cases.append({"small_lr": float(small_lr), "large_lr": float(large_lr),
                      "runs": [{"lr": float(lr), "weight_before": start, "weight_after": after}
                               for lr, after in ((small_lr, small), (large_lr, large))],
                      "expected": factor, "mistakes": _distinct(factor, mistakes)})
    return copy.deepcopy(cases)


# ---------------------------------------------------------------------------------------------
# The checks: the kit's comparison on cases built here
# ---------------------------------------------------------------------------------------------

def check_gradient_change(gradient_change_outputs, **params):
    """The student's ``gradient_change`` (through the notebook's wrapper) against the reference measure."""
    kit.verify_gradient_change(gradient_change_outputs, gradient_change_cases(**params))


def check_loss_landscape(loss_landscape_outputs, **params):
    """The student's ``loss_landscape`` (through the notebook's wrapper) against the reference."""
    kit.verify_loss_landscape(loss_landscape_outputs, loss_landscape_cases(**params))


def check_effective_lr(effective_lr_outputs, **params):
    """The student's ``effective_learning_rate`` (through the notebook's wrapper) against the reference."""
    kit.verify_effective_lr(effective_lr_outputs, effective_lr_cases(**params))


def check_tuned_rate_factor(tuned_rate_factor, rate_tuning_run, **params):
    """The student's ``tuned_rate_factor(small_lr, large_lr)`` against the factor that their own runs of the
    given ``rate_tuning_run`` give, which must be the reference runs' (checked first)."""
    kit.verify_tuned_rate_factor(tuned_rate_factor, rate_tuning_run, tuned_rate_cases(**params))


#: The visible checks of the notebook and their cases, stored in the kit (``bnkit/fixtures``).
VISIBLE = {
    "check_gradient_change": gradient_change_cases,
    "check_loss_landscape": loss_landscape_cases,
    "check_effective_lr": effective_lr_cases,
    "check_tuned_rate_factor": tuned_rate_cases,
}
