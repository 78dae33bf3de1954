"""Trusted checks for Exercise 2: the same check helpers the notebook uses, on secret inputs.

Shapes, seeds and momenta are drawn per student from ``rng``; they cover the cases the visible
and hidden tests cover (a constant feature, a single example in eval mode, several momenta,
non-square images) without being any of them.
"""

from bncourse import checks
from bncourse.grading.assignments import draw_seed as _seed
from bncourse.grading.assignments import draw_size as _size
from bncourse.grading.forbidden import Forbidden



def _epsilons(rng, count):
    """eps from 1e-4 to 0.1 (one significant digit), so that a hard-coded 1e-5 changes the output."""
    return tuple(float(f"{10 ** rng.uniform(-4, -1):.0e}") for _ in range(count))


def _momentum(rng, low, high):
    """A momentum with three decimals, none of those at which a known mistake gives the right answer or
    another mistake's answer: 0.5 (the Keras convention is then the same), 0.1 (the default) and 0.9
    (the Keras convention then gives the default's result)."""
    while (momentum := round(float(rng.uniform(low, high)), 3)) in (0.1, 0.5, 0.9):
        pass
    return momentum


def forward_train(answers, rng):
    shapes = [(_size(rng, 2, 6), _size(rng, 1, 4)), (_size(rng, 10, 40), _size(rng, 3, 12)),
              (_size(rng, 20, 70), _size(rng, 2, 9))]
    checks.check_batchnorm_forward_train(answers.batchnorm_forward, shapes=shapes, seed=_seed(rng),
                                         epsilons=_epsilons(rng, 3))


def running_stats(answers, rng):
    momenta = (_momentum(rng, 0.02, 0.95), _momentum(rng, 0.02, 0.95))
    checks.check_running_stats(answers.batchnorm_forward, n=_size(rng, 3, 30), d=_size(rng, 2, 8), momenta=momenta,
                               steps=_size(rng, 3, 7), seed=_seed(rng))


def eval_mode(answers, rng):
    shapes = ((_size(rng, 2, 20), _size(rng, 1, 8)), (1, _size(rng, 1, 8)))
    checks.check_eval_mode(answers.batchnorm_forward, shapes=shapes, seed=_seed(rng), epsilons=_epsilons(rng, 2))


def cache_and_inputs(answers, rng):
    checks.check_cache_and_inputs(answers.batchnorm_forward, n=_size(rng, 3, 20), d=_size(rng, 2, 9), seed=_seed(rng))


def spatial(answers, rng):
    shapes = ((_size(rng, 2, 4), _size(rng, 2, 5), _size(rng, 2, 5), _size(rng, 3, 6)),
              (1, _size(rng, 1, 4), _size(rng, 2, 4), _size(rng, 2, 4)))
    momentum = _momentum(rng, 0.02, 0.5)
    checks.check_spatial_batchnorm_forward(answers.spatial_batchnorm_forward, shapes=shapes, seed=_seed(rng),
                                           momentum=momentum)



FORBIDDEN = [Forbidden(names={"torch", "batch_norm", "BatchNorm1d", "BatchNorm2d"},
                       why="the forward pass is to be written by hand in NumPy, not with torch's batch norm")]

CHECKS = {
    "test_forward_train": forward_train,
    "test_running_stats": running_stats,
    "test_eval_mode": eval_mode,
    "test_cache_and_inputs": cache_and_inputs,
    "test_spatial": spatial,
}
