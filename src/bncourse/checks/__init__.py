"""Check helpers for the exercise notebooks.

Each ``check_*`` function calls a student's function on inputs built from its parameters,
compares the results with :mod:`bncourse.reference` and, when they differ, says in plain words what is wrong:
which output, which element, how far off, and, when the wrong numbers match a known mistake
(statistics over the wrong axis, unbiased variance, missing epsilon, Keras' momentum
convention, ...), which mistake. On success it prints one line starting with a check mark.

Visible test cells call these helpers with their default shapes and seeds; hidden tests call
them again with other shapes, seeds and momenta. A failure raises :class:`CheckFailed`
(an ``AssertionError``), which nbgrader counts as a failed test. Nothing here writes to
stderr: nbgrader would otherwise count the output as a failure.

Conventions for authors of new checks (keep them when adding exercises):
  * build inputs from ``np.random.default_rng(seed)`` so hidden tests can vary the seed;
  * pass the student *copies* and keep the originals to detect in-place mutation;
  * compare with :func:`_compare`, passing the known mistakes as ``Mistake`` objects.

One module per exercise, named like the exercise (``ex02_batchnorm_forward``). Each builds the
cases of its checks with the reference (``*_cases``) and lists the visible ones in ``VISIBLE``; the
comparisons are the student kit's (``bnkit.<exercise>.verify_*``), so the notebook, the hidden
tests and the trusted checks give the same messages. ``_core`` holds what they share.
"""

from ._core import ATOL, RTOL, CheckFailed, Mistake, quiet
from .ex02_batchnorm_forward import (check_batchnorm_forward_train, check_cache_and_inputs, check_eval_mode,
                                check_running_stats, check_spatial_batchnorm_forward)
from .ex01_vanishing_exploding import (check_activations, check_forward_stats, check_he_init, check_largest_sigmoid_derivative,
                      check_relu_gain, check_weight_gradient_norms, check_xavier_init)
from .ex03_batchnorm_backward import (check_autograd_function, check_batchnorm_backward, check_batchnorm_backward_alt,
                                 check_gradient_invariants, check_numerical_gradient, check_relative_error,
                                 check_spatial_batchnorm_backward)
from .ex05_layernorm import (NORMALIZATION_NAMES, check_batch_independent_normalizations, check_groupnorm_forward,
                        check_layernorm_backward, check_layernorm_forward, check_layernorm_invariances,
                        check_rmsnorm_forward)
from .ex04_training_with_bn import (check_bn_mlp, check_fold_bn, check_folding_error, check_steps_to_accuracy,
                       check_training_loop)
from .ex06_why_bn_works import check_effective_lr, check_gradient_change, check_loss_landscape, check_tuned_rate_factor
from .ex07_bn_in_practice import (check_batch_renorm_forward, check_batch_renorm_gradients, check_fold_conv,
                                  check_recompute_statistics, check_sync_backward, check_sync_forward)
