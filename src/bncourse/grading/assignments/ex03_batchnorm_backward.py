"""Trusted checks for Exercise 3: the same check helpers the notebook uses, on secret inputs.

Shapes and seeds are drawn per student from ``rng``, covering what the visible and hidden tests
cover (a batch of two, a single feature, single images) without being any of them. The two wrappers
called here by name, ``numerical_gradient_of_tanh_layer`` and ``batchnorm_function_gradients``, are
the notebook's given read-only cells (they return dicts, which cross the sandbox as they are).
"""

from bncourse import checks
from bncourse.grading.assignments import draw_seed as _seed
from bncourse.grading.assignments import draw_size as _size
from bncourse.grading.forbidden import Forbidden



def _shapes(rng):
    return ((2, _size(rng, 1, 6)), (_size(rng, 3, 12), _size(rng, 1, 3)), (_size(rng, 20, 60), _size(rng, 4, 12)))


def _epsilons(rng):
    """The eps of each case's cache: the default once, then two from 1e-4 to 0.1 (a fixed eps shows up)."""
    return (1e-5,) + tuple(float(f"{10 ** rng.uniform(-4, -1):.0e}") for _ in range(2))


def backward(answers, rng):
    checks.check_batchnorm_backward(answers.batchnorm_backward, shapes=_shapes(rng), seed=_seed(rng),
                                    epsilons=_epsilons(rng))


def backward_alt(answers, rng):
    checks.check_batchnorm_backward_alt(answers.batchnorm_backward_alt, shapes=_shapes(rng), seed=_seed(rng),
                                        epsilons=_epsilons(rng)[::-1])
    checks.check_gradient_invariants(answers.batchnorm_backward_alt, shapes=_shapes(rng)[1:], seed=_seed(rng))


def spatial(answers, rng):
    shapes = ((_size(rng, 2, 4), _size(rng, 2, 5), _size(rng, 2, 5), _size(rng, 2, 6)),
              (1, _size(rng, 1, 4), _size(rng, 2, 4), _size(rng, 2, 4)))
    checks.check_spatial_batchnorm_backward(answers.spatial_batchnorm_backward, shapes=shapes, seed=_seed(rng))


def numerical_gradient(answers, rng):
    shapes = tuple((_size(rng, 1, 5), _size(rng, 1, 6), _size(rng, 1, 5)) for _ in range(2))
    hs = (float(f"{10 ** rng.uniform(-6, -4):.0e}"), round(float(rng.uniform(0.02, 0.1)), 3))  # small, large
    checks.check_numerical_gradient(answers.numerical_gradient_of_tanh_layer, shapes=shapes, seed=_seed(rng), hs=hs)


def relative_error(answers, rng):
    checks.check_relative_error(answers.relative_error, seed=_seed(rng))


def autograd_function(answers, rng):
    shapes = ((_size(rng, 2, 8), _size(rng, 1, 5)), (_size(rng, 10, 50), _size(rng, 2, 10)))
    checks.check_autograd_function(answers.batchnorm_function_gradients, shapes=shapes, seed=_seed(rng),
                                   epsilons=_epsilons(rng)[1:])  # eps varies: a fixed 1e-5 shows up



_LIBRARY_BN = {"batch_norm", "native_batch_norm", "BatchNorm1d", "BatchNorm2d"}
FORBIDDEN = [
    Forbidden(names=_LIBRARY_BN | {"backward", "autograd"},
              cells={"batchnorm_backward", "batchnorm_backward_alt", "spatial_batchnorm_backward", "gradient_checking"},
              why="the gradients are to be derived and written by hand in NumPy, not taken from torch"),
    Forbidden(names=_LIBRARY_BN, cells={"batchnorm_function"},
              why="the Function's backward is to call your own NumPy backward pass, not torch's batch norm"),
]

CHECKS = {
    "test_backward": backward,
    "test_backward_alt": backward_alt,
    "test_spatial_backward": spatial,
    "test_numerical_gradient": numerical_gradient,
    "test_relative_error": relative_error,
    "test_autograd_function": autograd_function,
}
