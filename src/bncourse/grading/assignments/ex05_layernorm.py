"""Trusted checks for Exercise 5: the same check helpers the notebook uses, on secret inputs.

Shapes, group counts and seeds are drawn per student from ``rng``. They cover what the visible and
hidden tests cover (a single example, two features, sequences, one group and one group per channel)
without being any of them.
"""

from bncourse import checks
from bncourse.grading.assignments import draw_seed as _seed
from bncourse.grading.assignments import draw_size as _size
from bncourse.grading.forbidden import Forbidden


def _shapes(rng):
    return ((1, _size(rng, 2, 9)), (_size(rng, 2, 20), _size(rng, 2, 12)),
            (_size(rng, 2, 4), _size(rng, 2, 5), _size(rng, 2, 16)))


def layernorm_forward(answers, rng):
    checks.check_layernorm_forward(answers.layernorm_forward, shapes=_shapes(rng), seed=_seed(rng))
    checks.check_layernorm_invariances(answers.layernorm_forward, shapes=_shapes(rng)[1:], seed=_seed(rng))


def layernorm_backward(answers, rng):
    # The second case's cache is made with eps = 1e-3 (a hard-coded 1e-5 shows up there). It has at
    # least 3 features: with 2, x_hat is +-1 up to eps and dx is of the order of eps itself, so the
    # effect of a wrong eps falls below the comparison's tolerance.
    shapes = list(_shapes(rng))
    shapes[1] = (shapes[1][0], _size(rng, 3, 12))
    checks.check_layernorm_backward(answers.layernorm_backward, shapes=tuple(shapes), seed=_seed(rng))


def groupnorm_forward(answers, rng):
    groups, per_group = _size(rng, 2, 4), _size(rng, 2, 3)
    channels = groups * per_group
    cases = (((_size(rng, 1, 4), channels, _size(rng, 2, 4), _size(rng, 2, 4)), groups),
             ((_size(rng, 2, 5), channels, _size(rng, 2, 6)), int(rng.choice([1, channels]))),
             ((_size(rng, 2, 6), channels), groups))
    checks.check_groupnorm_forward(answers.groupnorm_forward, cases=cases, seed=_seed(rng))


def rmsnorm_forward(answers, rng):
    checks.check_rmsnorm_forward(answers.rmsnorm_forward, shapes=_shapes(rng), seed=_seed(rng))


def batch_independence(answers, rng):
    checks.check_batch_independent_normalizations(answers.batch_independent_normalizations)



FORBIDDEN = [Forbidden(names={"layer_norm", "LayerNorm", "group_norm", "GroupNorm", "rms_norm", "RMSNorm",
                              "batch_norm", "instance_norm"},
                       why="each normalization is to be written by hand in NumPy, not taken from torch")]

CHECKS = {
    "test_layernorm_forward": layernorm_forward,
    "test_layernorm_backward": layernorm_backward,
    "test_groupnorm_forward": groupnorm_forward,
    "test_rmsnorm_forward": rmsnorm_forward,
    "test_batch_independence": batch_independence,
}
