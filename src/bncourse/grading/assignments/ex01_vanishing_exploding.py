"""Trusted checks for Exercise 1: the same check helpers the notebook uses, on secret inputs.

Layer sizes, batch sizes, fans and seeds are drawn per student from ``rng``. The networks mix
non-square layers (so a transposed weight fails) with deeper square stacks (so the order of the
layers matters), as the visible and hidden tests do, without being any of them.
"""

from bncourse import checks
from bncourse.grading.assignments import draw_seed as _seed
from bncourse.grading.assignments import draw_size as _size
from bncourse.grading.forbidden import Forbidden



def _layer_sizes(rng):
    # Layers at least 3 wide: with 2 ReLU units a layer can be dead for the whole batch, and its
    # gradient norm 0 would accept anything near 0.
    mixed = tuple(_size(rng, 3, 12) for _ in range(_size(rng, 3, 6)))
    width = _size(rng, 3, 9)
    square = (_size(rng, 2, 9),) + (width,) * _size(rng, 4, 7)
    return mixed, square


def activations(answers, rng):
    checks.check_activations(answers.activation, answers.activation_derivative, seed=_seed(rng))


def forward_stats(answers, rng):
    checks.check_forward_stats(answers.forward_with_stats, sizes=_layer_sizes(rng), n=_size(rng, 4, 20),
                               seed=_seed(rng))


def gradient_norms(answers, rng):
    checks.check_weight_gradient_norms(answers.weight_gradient_norms, sizes=_layer_sizes(rng), n=_size(rng, 3, 20),
                                       seed=_seed(rng))


def _fans(rng):
    """A wide and a tall matrix whose fans differ by a factor of 2 to 6.7, so that every wrong scale the
    check knows is at least 6% away from the right one, with at least 10,000 weights."""
    big, small = _size(rng, 300, 500), _size(rng, 75, 150)
    return (big, small), (small, big)


def xavier(answers, rng):
    checks.check_xavier_init(answers.xavier_init, fans=_fans(rng), seed=_seed(rng))


def he(answers, rng):
    checks.check_he_init(answers.he_init, fans=_fans(rng), seed=_seed(rng))


def sigmoid_slope(answers, rng):
    checks.check_largest_sigmoid_derivative(answers.largest_sigmoid_derivative)


def gain(answers, rng):
    checks.check_relu_gain(answers.relu_gain)



# Part 3 is backprop by hand: torch autograd would answer it without the chain rule.
FORBIDDEN = [Forbidden(names={"backward", "autograd"}, cells={"weight_gradient_norms"},
                       why="the gradients are to be computed by hand-written backprop, not by torch autograd")]

CHECKS = {
    "test_activations": activations,
    "test_forward_stats": forward_stats,
    "test_gradient_norms": gradient_norms,
    "test_xavier_init": xavier,
    "test_he_init": he,
    "test_sigmoid_slope": sigmoid_slope,
    "test_relu_gain": gain,
}
