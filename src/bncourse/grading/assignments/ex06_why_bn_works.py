"""Trusted checks for Exercise 6: the comparisons the notebook's checks make (the kit's verifiers), on
networks, batches, layers, learning rates and step sizes drawn per student from ``rng``, with the
expected results from the NumPy reference.

The student's functions are called through the notebook's given wrappers (read-only cells), which
take a dict of arrays, build the torch network (with stale gradients in every ``.grad``) and return a
dict of named results. The question (Part 4) is asked at learning rates drawn per student: the
student's own runs of the given training run (asked of the sandbox) must be the reference runs, and
the answer the factor they give.
"""

from bncourse import checks
from bncourse.grading.assignments import draw_seed as _seed
from bncourse.grading.assignments import draw_size as _size


def _sizes(rng, hidden):
    """Layer sizes: inputs, ``hidden`` hidden layers of 2 to 8 units, 2 to 5 classes."""
    return (_size(rng, 2, 9), *(_size(rng, 2, 8) for _ in range(hidden)), _size(rng, 2, 5))


def _rate(rng, low, high):
    return round(float(rng.uniform(low, high)), 3)


def gradient_change(answers, rng):
    # a network with batch norm and one without; layer 1 up to the output layer; batches of at least 2
    cases = []
    for batch_norm in (True, False):
        hidden = _size(rng, 2, 4)
        n_train = _size(rng, 8, 40)
        cases.append((_sizes(rng, hidden), batch_norm, _size(rng, 1, hidden), _rate(rng, 0.02, 1.0),
                      _size(rng, 2, n_train), n_train))
    checks.check_gradient_change(answers.gradient_change_outputs, cases=tuple(cases), seed=_seed(rng))


def loss_landscape(answers, rng):
    cases = []
    for batch_norm in (True, False):
        steps = tuple(_rate(rng, 0.005, 2.0) for _ in range(_size(rng, 2, 5)))   # two at least: steps that add up differ
        cases.append((_sizes(rng, _size(rng, 1, 3)), batch_norm, _size(rng, 3, 30), steps))
    checks.check_loss_landscape(answers.loss_landscape_outputs, cases=tuple(cases), seed=_seed(rng))


def effective_lr(answers, rng):
    # one layer where model[layer] is a batch norm layer (layer 1) and one deeper, where it may be a Linear
    hidden = _size(rng, 4, 6)
    cases = ((_sizes(rng, _size(rng, 2, 3)), 1, _rate(rng, 0.01, 2.0), _size(rng, 3, 30)),
             (_sizes(rng, hidden), _size(rng, 2, hidden - 1), _rate(rng, 0.01, 2.0), _size(rng, 3, 30)))
    checks.check_effective_lr(answers.effective_lr_outputs, cases=cases, seed=_seed(rng))


def question(answers, rng):
    small = _rate(rng, 0.02, 0.1)
    large = round(small * float(rng.uniform(3.0, 12.0)), 3)
    checks.check_tuned_rate_factor(answers.tuned_rate_factor, answers.rate_tuning_run, rates=((small, large),))


CHECKS = {
    "test_gradient_change": gradient_change,
    "test_loss_landscape": loss_landscape,
    "test_effective_lr": effective_lr,
    "test_question": question,
}
