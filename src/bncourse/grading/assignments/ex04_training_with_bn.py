"""Trusted checks for Exercise 4: the comparisons the notebook's checks make (the kit's verifiers), on
cases built with the reference from secret inputs.

Problem sizes, learning rates and seeds are drawn per student from ``rng``; every training run stays
below a second on the CPU. The student's functions are called through the notebook's given wrappers
(read-only cells), which take and return arrays: each returns a dict of named results.
"""

from bncourse import checks
from bncourse.grading.assignments import draw_seed as _seed
from bncourse.grading.assignments import draw_size as _size


def training_loop_case(rng):
    """A secret problem size and settings. Every argument differs from the notebook's visible case (steps 30,
    lr 0.1, batch_size 16, eval_every 5; the seed is drawn), so an answer that hard-codes one of them loses
    the points; the cases builder redraws the problem until every known mistake is told apart."""
    eval_every = int(rng.choice([2, 3, 4, 6]))
    steps = eval_every * _size(rng, 2, 5)
    lr = round(float(rng.uniform(0.03, 0.3)), 3)
    if abs(lr - 0.1) < 0.01:
        lr += 0.05
    return (_size(rng, 2, 8), _size(rng, 3, 10), _size(rng, 2, 4), _size(rng, 20, 60), _size(rng, 30, 80),
            steps if steps != 30 else steps + eval_every, lr, _size(rng, 2, 15), eval_every)


def training_loop(answers, rng):
    checks.check_training_loop(answers.training_curve_of_bn_net, cases=(training_loop_case(rng),), seed=_seed(rng))


def steps_to_accuracy(answers, rng):
    checks.check_steps_to_accuracy(answers.steps_to_accuracy, seed=_seed(rng))


def bn_mlp(answers, rng):
    cases = (tuple(_size(rng, 1, 9) for _ in range(_size(rng, 3, 5))), (_size(rng, 1, 9), _size(rng, 1, 9)))
    checks.check_bn_mlp(answers.describe_bn_mlp, cases=cases)


def fold_bn(answers, rng):
    cases = ((_size(rng, 1, 8), _size(rng, 1, 8), _size(rng, 1, 6), True),
             (_size(rng, 1, 8), _size(rng, 1, 8), _size(rng, 1, 6), False))
    checks.check_fold_bn(answers.fold_bn_outputs, cases=cases, seed=_seed(rng))


def folding_error(answers, rng):
    # batches of at least 2: a wrong answer that runs the model in train mode then fails on the numbers,
    # not on torch's "more than 1 value per channel" error
    cases = tuple((_size(rng, 1, 8), _size(rng, 1, 8), _size(rng, 1, 5), _size(rng, 2, 12), train_mode)
                  for train_mode in (True, False))
    checks.check_folding_error(answers.folding_error_outputs, cases=cases, seed=_seed(rng))


CHECKS = {
    "test_training_loop": training_loop,
    "test_steps_to_accuracy": steps_to_accuracy,
    "test_bn_mlp": bn_mlp,
    "test_fold_bn": fold_bn,
    "test_folding_error": folding_error,
}
