"""Trusted checks for Exercise 7: the comparisons the notebook's checks make (the kit's verifiers), on cases
built with the reference from secret inputs.

Worker counts, feature counts, clipping bounds, model sizes, batch sizes and seeds are drawn per student
from ``rng``. The synchronized-BN cases always include unequal counts (the forward check) and equal ones
(the backward check, where an all-reduced dx keeps its shape); the batch renorm cases put features inside
and outside the clipping bounds; the statistics cases have batches of unequal sizes and a model in each
mode, and momenta other than PyTorch's default; the fold cases have C_in = C_out (a scale along the wrong axis
then gives numbers, not an error), a bias, dilation and groups. The student's functions are called through the
notebook's given wrappers (read-only cells); the synchronized-BN wrappers run the function once per worker, in
threads that share an all_reduce.
"""

from bncourse import checks
from bncourse.grading.assignments import draw_seed as _seed
from bncourse.grading.assignments import draw_size as _size
from bncourse.grading.forbidden import Forbidden


def _unequal_counts(rng, workers, low=1):
    """Counts of ``workers`` workers, not all equal."""
    counts = [_size(rng, low, 12) for _ in range(workers)]
    if len(set(counts)) == 1:
        counts[0] += _size(rng, 1, 5)
    return tuple(counts)


def sync_forward(answers, rng):
    cases = ((_unequal_counts(rng, 2), _size(rng, 2, 6)),
             ((_size(rng, 2, 8),) * _size(rng, 2, 4), _size(rng, 1, 5)),
             (_unequal_counts(rng, _size(rng, 3, 5)), _size(rng, 2, 5)))
    checks.check_sync_forward(answers.sync_forward_outputs, cases=cases, seed=_seed(rng))


def sync_backward(answers, rng):
    cases = (((_size(rng, 2, 8),) * _size(rng, 2, 4), _size(rng, 2, 5)),
             (_unequal_counts(rng, _size(rng, 2, 4)), _size(rng, 2, 6)))
    checks.check_sync_backward(answers.sync_backward_outputs, cases=cases, seed=_seed(rng))


def _renorm_cases(rng):
    # at least 4 features, so that every clipping regime (inside, r below and above its bounds, d beyond) occurs
    return tuple((_size(rng, 4, 16), _size(rng, 4, 6), float(rng.choice([1.5, 2.0, 3.0])),
                  float(rng.choice([0.5, 1.0, 5.0]))) for _ in range(3))


def batch_renorm_forward(answers, rng):
    checks.check_batch_renorm_forward(answers.batch_renorm_outputs, cases=_renorm_cases(rng), seed=_seed(rng))


def batch_renorm_gradients(answers, rng):
    checks.check_batch_renorm_gradients(answers.batch_renorm_outputs, cases=_renorm_cases(rng), seed=_seed(rng))


def recompute_statistics(answers, rng):
    # batches of at least 2 images: BatchNorm1d refuses a batch of one in train mode
    cases = tuple((_size(rng, 1, 3), _size(rng, 2, 4), _size(rng, 2, 4), _size(rng, 2, 6),
                   _unequal_counts(rng, _size(rng, 2, 3), low=2), train_mode) for train_mode in (False, True))
    checks.check_recompute_statistics(answers.recomputed_statistics, cases=cases, seed=_seed(rng))


def fold_conv(answers, rng):
    # (C_in, C_out, stride, padding, dilation, groups, bias): C_in = C_out >= 2 first (a scale along the input
    # channels gives numbers), then the eps=1e-3 case, a dilated one with padding, and a grouped one.
    square = _size(rng, 2, 5)
    groups = _size(rng, 2, 3)
    cases = ((square, square, _size(rng, 1, 2), _size(rng, 0, 1), 1, 1, bool(rng.integers(2))),
             (_size(rng, 1, 5), _size(rng, 1, 5), _size(rng, 1, 2), _size(rng, 0, 1), 1, 1, True),
             (_size(rng, 1, 5), _size(rng, 1, 5), _size(rng, 1, 2), _size(rng, 1, 2), 2, 1, bool(rng.integers(2))),
             (groups * _size(rng, 1, 2), groups * _size(rng, 1, 2), 1, 1, _size(rng, 1, 2), groups, False))
    checks.check_fold_conv(answers.fold_conv_outputs, cases=cases, seed=_seed(rng))


FORBIDDEN = [Forbidden(names={"batch_norm", "BatchNorm1d", "BatchNorm2d", "SyncBatchNorm"},
                       cells={"sync_batchnorm_forward", "sync_batchnorm_backward", "batch_renorm_forward"},
                       why="synchronized batch norm and batch renorm are to be written by hand"),
             Forbidden(names={"fuse_conv_bn_eval", "fuse_conv_bn_weights", "fuse_modules"},
                       cells={"fold_bn_into_conv"}, why="the fold is to be written by hand, not taken from torch")]

CHECKS = {
    "test_sync_forward": sync_forward,
    "test_sync_backward": sync_backward,
    "test_batch_renorm_forward": batch_renorm_forward,
    "test_batch_renorm_gradients": batch_renorm_gradients,
    "test_recompute_statistics": recompute_statistics,
    "test_fold_conv": fold_conv,
}
