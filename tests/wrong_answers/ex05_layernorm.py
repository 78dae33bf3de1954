"""Realistic wrong answers to Exercise 5 (see the package docstring for the format).

Each part stands alone (the backward check builds its own cache), so every mistake loses exactly
the cell of its own part.
"""

from . import WrongAnswer

EXERCISE = "ex05_layernorm"

WRONG_ANSWERS = [
    WrongAnswer(
        "layernorm_over_the_batch_axis", "layernorm_forward",
        (("mu = np.mean(x, axis=-1, keepdims=True)", "mu = np.mean(x, axis=0, keepdims=True)"),
         ("sigma2 = np.mean((x - mu) ** 2, axis=-1, keepdims=True)", "sigma2 = np.mean((x - mu) ** 2, axis=0, keepdims=True)")),
        frozenset({"test_layernorm_forward"}), says="that is batch norm"),
    WrongAnswer(
        "layernorm_unbiased_variance", "layernorm_forward",
        (("sigma2 = np.mean((x - mu) ** 2, axis=-1, keepdims=True)", "sigma2 = np.var(x, axis=-1, keepdims=True, ddof=1)"),),
        frozenset({"test_layernorm_forward"}), says="unbiased"),
    WrongAnswer(
        "layernorm_hard_coded_eps", "layernorm_forward",
        (("s = np.sqrt(sigma2 + eps)", "s = np.sqrt(sigma2 + 1e-5)"),),
        frozenset({"test_layernorm_forward"}), says="instead of the eps=0.001 passed in"),
    WrongAnswer(
        "layernorm_backward_gamma_outside_the_sums", "layernorm_backward",
        (("    g = dout * gamma\n", "    g = dout\n"),
         ("dx = (D * g - g_sum - xn * gx_sum) / (D * s)", "dx = gamma * (D * g - g_sum - xn * gx_sum) / (D * s)")),
        frozenset({"test_layernorm_backward"}), says="gamma was multiplied in after the sums"),
    WrongAnswer(
        "layernorm_backward_missing_mean_path", "layernorm_backward",
        (("D * g - g_sum - xn * gx_sum", "D * g - xn * gx_sum"),),
        frozenset({"test_layernorm_backward"}), says="path through the mean is missing"),
    WrongAnswer(
        "layernorm_backward_sums_over_axis_0_only", "layernorm_backward",
        (("dgamma = (dout * xn).reshape(-1, D).sum(axis=0)", "dgamma = (dout * xn).sum(axis=0)"),
         ("dbeta = dout.reshape(-1, D).sum(axis=0)", "dbeta = dout.sum(axis=0)")),
        frozenset({"test_layernorm_backward"}), says="every axis except the last"),
    WrongAnswer(
        "layernorm_backward_hard_codes_eps", "layernorm_backward",
        (('xn, s, gamma = cache["x_hat"], cache["std"], cache["gamma"]',
          'xn, gamma = cache["x_hat"], cache["gamma"]\n    s = np.sqrt(cache["var"] + 1e-5)'),),
        frozenset({"test_layernorm_backward"}), says="not a fixed eps"),
    WrongAnswer(
        "layernorm_backward_without_the_1_over_D", "layernorm_backward",
        (("dx = (D * g - g_sum - xn * gx_sum) / (D * s)", "dx = (D * g - g_sum - xn * gx_sum) / s"),),
        frozenset({"test_layernorm_backward"}), says="times too large"),
    WrongAnswer(
        "layernorm_forgets_beta", "layernorm_forward",
        (("out = gamma * xn + beta", "out = gamma * xn"),),
        frozenset({"test_layernorm_forward"}), says="beta was not added"),
    WrongAnswer(
        "groupnorm_hard_codes_eps", "groupnorm_forward",
        (("np.sqrt(sigma2 + eps)", "np.sqrt(sigma2 + 1e-5)"),),
        frozenset({"test_groupnorm_forward"}), says="instead of the eps=0.001 passed in"),
    WrongAnswer(
        "rmsnorm_hard_codes_eps", "rmsnorm_forward",
        (("np.sqrt(ms + eps)", "np.sqrt(ms + 1e-5)"),),
        frozenset({"test_rmsnorm_forward"}), says="instead of the eps=0.001 passed in"),
    WrongAnswer(
        "rmsnorm_without_the_root", "rmsnorm_forward",
        (("np.sqrt(ms + eps)", "(ms + eps)"),),
        frozenset({"test_rmsnorm_forward"}), says="divided by the mean square"),
    WrongAnswer(
        "groupnorm_round_robin_groups", "groupnorm_forward",
        (("groups = x.reshape(N, num_groups, -1)", "groups = x.reshape(N, C // num_groups, num_groups, -1)"),
         ("mu = groups.mean(axis=2, keepdims=True)", "mu = groups.mean(axis=(1, 3), keepdims=True)"),
         ("sigma2 = groups.var(axis=2, keepdims=True)", "sigma2 = groups.var(axis=(1, 3), keepdims=True)")),
        frozenset({"test_groupnorm_forward"}), says="round-robin"),
    WrongAnswer(
        "groupnorm_per_channel", "groupnorm_forward",
        (("groups = x.reshape(N, num_groups, -1)", "groups = x.reshape(N, C, -1)"),),
        frozenset({"test_groupnorm_forward"}), says="that is InstanceNorm"),
    WrongAnswer(
        "groupnorm_without_divisibility_check", "groupnorm_forward",
        (("    if C % num_groups != 0:\n        raise ValueError(f\"num_groups={num_groups} does not divide the {C} channels\")\n", ""),),
        frozenset({"test_groupnorm_forward"}), says="cannot split 6 channels evenly"),
    WrongAnswer(
        "rmsnorm_subtracts_the_mean", "rmsnorm_forward",
        (("    ms = np.mean(np.square(x), axis=-1, keepdims=True)\n    return gamma * (x / np.sqrt(ms + eps))",
          "    xc = x - x.mean(axis=-1, keepdims=True)\n    ms = np.mean(np.square(xc), axis=-1, keepdims=True)\n"
          "    return gamma * (xc / np.sqrt(ms + eps))"),),
        frozenset({"test_rmsnorm_forward"}), says="that is LayerNorm"),
    WrongAnswer(
        "batchnorm_eval_forgotten", "batch_independence",
        (('return {"batchnorm_eval", "layernorm", "instancenorm", "groupnorm", "rmsnorm"}',
          'return {"layernorm", "instancenorm", "groupnorm", "rmsnorm"}'),),
        frozenset({"test_batch_independence"}), says="batchnorm_eval is missing"),
    WrongAnswer(
        "batchnorm_train_included", "batch_independence",
        (('return {"batchnorm_eval", "layernorm", "instancenorm", "groupnorm", "rmsnorm"}',
          'return {"batchnorm_train", "batchnorm_eval", "layernorm", "instancenorm", "groupnorm", "rmsnorm"}'),),
        frozenset({"test_batch_independence"}), says="batchnorm_train is in your set"),
]

CORRECT_ANSWERS = [
    WrongAnswer(
        "layernorm_with_np_var_and_std", "layernorm_forward",
        (("sigma2 = np.mean((x - mu) ** 2, axis=-1, keepdims=True)", "sigma2 = x.var(axis=-1, keepdims=True)"),
         ("xn = (x - mu) / s", "xn = (x - mu) * (1.0 / s)")),
        frozenset()),
    WrongAnswer(
        "layernorm_by_transposing_batch_norm", "layernorm_forward",
        (("    mu = np.mean(x, axis=-1, keepdims=True)\n", "    xt = np.moveaxis(x, -1, 0)\n"
          "    mu = np.moveaxis(xt.mean(axis=0, keepdims=True), 0, -1)\n"),),
        frozenset()),
    WrongAnswer(
        "layernorm_backward_recomputes_std_from_the_cache", "layernorm_backward",
        (('xn, s, gamma = cache["x_hat"], cache["std"], cache["gamma"]',
          'xn, gamma = cache["x_hat"], cache["gamma"]\n    s = np.sqrt(cache["var"] + cache["eps"])'),),
        frozenset()),
    WrongAnswer(
        "layernorm_backward_with_means_and_einsum", "layernorm_backward",
        (("dx = (D * g - g_sum - xn * gx_sum) / (D * s)", "dx = (g - g_sum / D - xn * gx_sum / D) / s"),
         ("dgamma = (dout * xn).reshape(-1, D).sum(axis=0)", "dgamma = np.sum(dout * xn, axis=tuple(range(xn.ndim - 1)))"),
         ("dbeta = dout.reshape(-1, D).sum(axis=0)", "dbeta = dout.sum(axis=tuple(range(dout.ndim - 1)))")),
        frozenset()),
    WrongAnswer(
        "groupnorm_with_explicit_group_shape", "groupnorm_forward",
        (("groups = x.reshape(N, num_groups, -1)", "groups = x.reshape((N, num_groups, C // num_groups) + x.shape[2:])"),
         ("mu = groups.mean(axis=2, keepdims=True)", "axes = tuple(range(2, groups.ndim))\n    mu = groups.mean(axis=axes, keepdims=True)"),
         ("sigma2 = groups.var(axis=2, keepdims=True)", "sigma2 = groups.var(axis=axes, keepdims=True)")),
        frozenset()),
    WrongAnswer(
        "rmsnorm_by_the_norm_over_sqrt_d", "rmsnorm_forward",
        (("    ms = np.mean(np.square(x), axis=-1, keepdims=True)\n    return gamma * (x / np.sqrt(ms + eps))",
          "    D = x.shape[-1]\n    ms = np.linalg.norm(x, axis=-1, keepdims=True) ** 2 / D\n"
          "    return x * gamma / np.sqrt(ms + eps)"),),
        frozenset()),
    WrongAnswer(
        "batch_independence_as_a_list", "batch_independence",
        (('return {"batchnorm_eval", "layernorm", "instancenorm", "groupnorm", "rmsnorm"}',
          'return ["layernorm", "rmsnorm", "groupnorm", "instancenorm", "batchnorm_eval"]'),),
        frozenset()),
]

TEST_CELL_POINTS = {"test_layernorm_forward": 2, "test_layernorm_backward": 3, "test_groupnorm_forward": 2,
                    "test_rmsnorm_forward": 1, "test_batch_independence": 2}
