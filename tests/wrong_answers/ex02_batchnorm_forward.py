"""Realistic wrong answers to Exercise 2 (see the package docstring for the format).

Why some mistakes fail two cells: ``spatial_batchnorm_forward`` reuses ``batchnorm_forward``
(as the exercise asks), so a wrong normalisation or wrong running statistics in the 2D
function also make the 4D output or its running statistics wrong; and the cache check compares
the cached statistics with the reference, because Chapter 3's backward pass needs the true ones.
"""

from . import WrongAnswer

EXERCISE = "ex02_batchnorm_forward"

WRONG_ANSWERS = [
    WrongAnswer(
        "unbiased_variance_in_normalisation", "batchnorm_forward",
        (("var = x.var(axis=0)", "var = x.var(axis=0, ddof=1)"), ("unbiased_var = var * N / (N - 1)", "unbiased_var = var")),
        frozenset({"test_forward_train", "test_cache_and_inputs", "test_spatial"}), says="unbiased variance"),
    WrongAnswer(
        "missing_eps", "batchnorm_forward",
        (("std = np.sqrt(var + eps)", "std = np.sqrt(var)"),),
        frozenset({"test_forward_train", "test_cache_and_inputs", "test_spatial"}), says="eps"),
    WrongAnswer(
        "keras_momentum_convention", "batchnorm_forward",
        (("(1 - momentum) * running_mean + momentum * mean", "momentum * running_mean + (1 - momentum) * mean"),
         ("(1 - momentum) * running_var + momentum * unbiased_var", "momentum * running_var + (1 - momentum) * unbiased_var")),
        frozenset({"test_running_stats", "test_spatial"}), says="Keras"),
    WrongAnswer(
        "running_stats_never_stored", "batchnorm_forward",
        (('bn_param["running_mean"] = (1 - momentum)', 'new_running_mean = (1 - momentum)'),
         ('bn_param["running_var"] = (1 - momentum)', 'new_running_var = (1 - momentum)')),
        frozenset({"test_running_stats", "test_spatial"}), says="no 'running_mean'"),
    WrongAnswer(
        "running_stats_updated_in_eval_mode", "batchnorm_forward",
        (("        cache = None\n",
          "        cache = None\n"
          "        bn_param[\"running_mean\"] = (1 - momentum) * running_mean + momentum * x.mean(axis=0)\n"),),
        frozenset({"test_eval_mode"}), says="changed during an eval-mode call"),
    WrongAnswer(
        "eval_mode_uses_batch_statistics", "batchnorm_forward",
        (("out = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta",
          "out = gamma * (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps) + beta"),),
        frozenset({"test_eval_mode"}), says="batch's own statistics"),
    WrongAnswer(
        "input_mutated_in_place", "batchnorm_forward",
        (("        x_hat = (x - mean) / std\n", "        x -= mean\n        x_hat = x / std\n"),),
        frozenset({"test_cache_and_inputs"}), says="`x` was modified"),
    WrongAnswer(
        "statistics_over_wrong_axis", "batchnorm_forward",
        (("mean = x.mean(axis=0)", "mean = x.mean(axis=1, keepdims=True)"),
         ("var = x.var(axis=0)", "var = x.var(axis=1, keepdims=True)")),
        frozenset({"test_forward_train", "test_running_stats", "test_cache_and_inputs", "test_spatial"}),
        says="axis 1"),
    WrongAnswer(
        "spatial_reshape_without_transpose", "spatial_batchnorm_forward",
        (("rows = x.transpose(0, 2, 3, 1).reshape(N * H * W, C)", "rows = x.reshape(N * H * W, C)"),
         ("out = out_rows.reshape(N, H, W, C).transpose(0, 3, 1, 2)", "out = out_rows.reshape(N, C, H, W)")),
        frozenset({"test_spatial"}), says="without moving the channel axis"),
]

WRONG_ANSWERS += [
    WrongAnswer(
        "eps_hard_coded", "batchnorm_forward",
        (('eps = bn_param.get("eps", 1e-5)', "eps = 1e-5"),),
        frozenset({"test_forward_train", "test_eval_mode"}), says="bn_param['eps'] was ignored"),
    WrongAnswer(
        "momentum_hard_coded", "batchnorm_forward",
        (('momentum = bn_param.get("momentum", 0.1)', "momentum = 0.1"),),
        frozenset({"test_running_stats", "test_spatial"}), says="bn_param['momentum'] was ignored"),
]

CORRECT_ANSWERS = [
    WrongAnswer(
        "statistics_kept_with_keepdims", "batchnorm_forward",
        (("mean = x.mean(axis=0)", "mean = x.mean(axis=0, keepdims=True)"),
         ("var = x.var(axis=0)", "var = x.var(axis=0, keepdims=True)"),
         ("momentum * mean\n", "momentum * mean[0]\n"),
         ("momentum * unbiased_var\n", "momentum * unbiased_var[0]\n")),
        frozenset()),
    WrongAnswer(
        "sums_by_hand_and_ddof_for_the_running_variance", "batchnorm_forward",
        (("mean = x.mean(axis=0)", "mean = x.sum(axis=0) / N"),
         ("var = x.var(axis=0)", "var = ((x - mean) ** 2).sum(axis=0) / N"),
         ("unbiased_var = var * N / (N - 1)", "unbiased_var = np.var(x, axis=0, ddof=1)")),
        frozenset()),
    WrongAnswer(
        "inverse_std_and_early_return_in_eval", "batchnorm_forward",
        (("        x_hat = (x - mean) / std\n", "        x_hat = (x - mean) * (1.0 / std)\n"),
         ("        out = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta\n        cache = None\n",
          "        return gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta, None\n")),
        frozenset()),
    WrongAnswer(
        "running_stats_with_setdefault_and_in_place_update", "batchnorm_forward",
        (('        bn_param["running_mean"] = (1 - momentum) * running_mean + momentum * mean\n'
          '        bn_param["running_var"] = (1 - momentum) * running_var + momentum * unbiased_var\n',
          '        rm = bn_param.setdefault("running_mean", np.zeros(D))\n'
          '        rv = bn_param.setdefault("running_var", np.ones(D))\n'
          '        bn_param["running_mean"] = rm + momentum * (mean - rm)\n'
          '        bn_param["running_var"] = rv + momentum * (unbiased_var - rv)\n'),),
        frozenset()),
    WrongAnswer(
        "spatial_with_moveaxis", "spatial_batchnorm_forward",
        (("rows = x.transpose(0, 2, 3, 1).reshape(N * H * W, C)", "rows = np.moveaxis(x, 1, -1).reshape(-1, C)"),
         ("out = out_rows.reshape(N, H, W, C).transpose(0, 3, 1, 2)",
          "out = np.moveaxis(out_rows.reshape(N, H, W, C), -1, 1)")),
        frozenset()),
]

TEST_CELL_POINTS = {"test_forward_train": 3, "test_running_stats": 2, "test_eval_mode": 2,
                    "test_cache_and_inputs": 1, "test_spatial": 2}

