"""Realistic wrong answers to Exercise 3 (see the package docstring for the format).

Why some mistakes fail two cells: ``spatial_batchnorm_backward`` reuses ``batchnorm_backward``, and
the solution's ``BatchNormFunction`` calls ``batchnorm_backward_alt``, as the exercise suggests.
The given wrappers ``numerical_gradient_of_tanh_layer`` and ``batchnorm_function_gradients`` sit in
read-only cells of their own (``given_*``), so no replacement here touches them.
"""

from . import WrongAnswer

EXERCISE = "ex03_batchnorm_backward"

WRONG_ANSWERS = [
    WrongAnswer(
        "missing_mean_path", "batchnorm_backward",
        (("    dx = dxc + dmean / N\n", "    dx = dxc\n"),),
        frozenset({"test_backward", "test_spatial_backward"}), says="path through the mean is missing"),
    WrongAnswer(
        "unbiased_variance_in_backward", "batchnorm_backward",
        (("dxc = dxc + 2 * xc * dvar / N", "dxc = dxc + 2 * xc * dvar / (N - 1)"),),
        frozenset({"test_backward", "test_spatial_backward"}), says="N - 1"),
    WrongAnswer(
        "dgamma_uses_x_not_x_hat", "batchnorm_backward",
        (("dgamma = (dout * x_hat).sum(axis=0)", "dgamma = (dout * x).sum(axis=0)"),),
        frozenset({"test_backward", "test_spatial_backward"}), says="x instead of x_hat"),
    WrongAnswer(
        "closed_form_without_variance_term", "batchnorm_backward_alt",
        (("(N * dout - dbeta - x_hat * dgamma)", "(N * dout - dbeta)"),),
        frozenset({"test_backward_alt", "test_autograd_function"}), says="path through the variance is missing"),
    WrongAnswer(
        "closed_form_without_gamma", "batchnorm_backward_alt",
        (("dx = (gamma / (N * std))", "dx = (1 / (N * std))"),),
        frozenset({"test_backward_alt", "test_autograd_function"}), says="gamma is missing"),
    WrongAnswer(
        "spatial_reshape_without_transpose", "spatial_batchnorm_backward",
        (("rows = dout.transpose(0, 2, 3, 1).reshape(N * H * W, C)", "rows = dout.reshape(N * H * W, C)"),
         ("dx = dx_rows.reshape(N, H, W, C).transpose(0, 3, 1, 2)", "dx = dx_rows.reshape(N, C, H, W)")),
        frozenset({"test_spatial_backward"}), says="without moving the channel axis"),
    WrongAnswer(
        "one_sided_difference", "gradient_checking",
        (("        x[index] = original - h\n        minus = np.sum(f(x) * dout)\n",
          "        x[index] = original\n        minus = np.sum(f(x) * dout)\n"),
         ("grad[index] = (plus - minus) / (2 * h)", "grad[index] = (plus - minus) / h")),
        frozenset({"test_numerical_gradient"}), says="one-sided"),
    WrongAnswer(
        "numerical_gradient_leaves_x_changed", "gradient_checking",
        (("        x[index] = original\n        grad[index]", "        grad[index]"),),
        frozenset({"test_numerical_gradient"}), says="put the original value back"),
    WrongAnswer(
        "elementwise_relative_error", "gradient_checking",
        (("    total = np.linalg.norm(a) + np.linalg.norm(b)\n    if total == 0:\n        return 0.0\n"
          "    return float(np.linalg.norm(a - b) / total)",
          "    if not np.any(a) and not np.any(b):\n        return 0.0\n"
          "    return float(np.nanmax(np.abs(a - b) / np.maximum(np.abs(a), np.abs(b))))"),),
        frozenset({"test_relative_error"}), says="elementwise"),
    WrongAnswer(
        "function_returns_gradients_swapped", "batchnorm_function",
        (("torch.from_numpy(dgamma), torch.from_numpy(dbeta), None", "torch.from_numpy(dbeta), torch.from_numpy(dgamma), None"),),
        frozenset({"test_autograd_function"}), says="swapped"),
]

WRONG_ANSWERS += [
    WrongAnswer(
        "eps_hard_coded_in_backward", "batchnorm_backward",
        (('x, mean, std, x_hat, gamma = cache["x"], cache["mean"], cache["std"], cache["x_hat"], cache["gamma"]',
          'x, mean, x_hat, gamma = cache["x"], cache["mean"], cache["x_hat"], cache["gamma"]\n'
          '    std = np.sqrt(cache["var"] + 1e-5)'),),
        frozenset({"test_backward"}), says="not a fixed eps"),
    WrongAnswer(
        "step_h_hard_coded", "gradient_checking",
        (("        x[index] = original + h\n", "        h = 1e-5\n        x[index] = original + h\n"),),
        frozenset({"test_numerical_gradient"}), says="use the h argument"),
    WrongAnswer(  # every call used eps = 1e-5 before the grader varied it: this earned full marks
        "eps_hard_coded_in_the_function", "batchnorm_function",
        (("        std = torch.sqrt(var + eps)\n", "        std = torch.sqrt(var + 1e-5)\n"),
         ("        ctx.eps = eps\n", "        ctx.eps = 1e-5\n")),
        frozenset({"test_autograd_function"}), says="use forward's eps argument"),
    WrongAnswer(  # through the sandbox torch's message (it quotes the secret shapes) becomes a fixed code,
        # named in the same words as the kit's hint (tests/test_secret_inputs.py checks that path)
        "function_returns_three_gradients", "batchnorm_function",
        (("torch.from_numpy(dbeta), None", "torch.from_numpy(dbeta)"),),
        frozenset({"test_autograd_function"}), says="must return one gradient per input of forward"),
]

CORRECT_ANSWERS = [
    WrongAnswer(
        "staged_cs231n_style", "batchnorm_backward",
        (("    dstd = -(dx_hat * xc).sum(axis=0) / std**2\n    dvar = dstd / (2 * std)\n"
          "    dxc = dxc + 2 * xc * dvar / N\n    dmean = -dxc.sum(axis=0)\n    dx = dxc + dmean / N\n",
          "    dvar = np.sum(dx_hat * xc, axis=0) * -0.5 * std ** -3\n"
          "    dmean = np.sum(-dx_hat / std, axis=0) + dvar * np.mean(-2.0 * xc, axis=0)\n"
          "    dx = dx_hat / std + dvar * 2.0 * xc / N + dmean / N\n"),),
        frozenset()),
    WrongAnswer(
        "std_recomputed_from_var_and_eps", "batchnorm_backward",
        (('x, mean, std, x_hat, gamma = cache["x"], cache["mean"], cache["std"], cache["x_hat"], cache["gamma"]',
          'x, mean, x_hat, gamma = cache["x"], cache["mean"], cache["x_hat"], cache["gamma"]\n'
          '    std = np.sqrt(cache["var"] + cache["eps"])'),),
        frozenset()),
    WrongAnswer(
        "closed_form_with_means", "batchnorm_backward_alt",
        (("    dx = (gamma / (N * std)) * (N * dout - dbeta - x_hat * dgamma)\n",
          "    dx = gamma / std * (dout - dout.mean(axis=0) - x_hat * (dout * x_hat).mean(axis=0))\n"),),
        frozenset()),
    WrongAnswer(
        "spatial_backward_with_moveaxis_and_the_closed_form", "spatial_batchnorm_backward",
        (("rows = dout.transpose(0, 2, 3, 1).reshape(N * H * W, C)", "rows = np.moveaxis(dout, 1, -1).reshape(-1, C)"),
         ("dx_rows, dgamma, dbeta = batchnorm_backward(rows, cache)",
          "dx_rows, dgamma, dbeta = batchnorm_backward_alt(rows, cache)"),
         ("dx = dx_rows.reshape(N, H, W, C).transpose(0, 3, 1, 2)", "dx = np.moveaxis(dx_rows.reshape(N, H, W, C), -1, 1)")),
        frozenset()),
    WrongAnswer(
        "numerical_gradient_on_copies_and_relative_error_by_hand", "gradient_checking",
        (("    for index in np.ndindex(x.shape):\n        original = x[index]\n        x[index] = original + h\n"
          "        plus = np.sum(f(x) * dout)\n        x[index] = original - h\n        minus = np.sum(f(x) * dout)\n"
          "        x[index] = original\n        grad[index] = (plus - minus) / (2 * h)\n",
          "    for i in range(x.size):\n        xp, xm = x.copy(), x.copy()\n        xp.flat[i] += h\n"
          "        xm.flat[i] -= h\n        grad.flat[i] = ((f(xp) - f(xm)) * dout).sum() / (2 * h)\n"),
         ("    total = np.linalg.norm(a) + np.linalg.norm(b)\n    if total == 0:\n        return 0.0\n"
          "    return float(np.linalg.norm(a - b) / total)",
          "    if not np.any(a) and not np.any(b):\n        return 0.0\n"
          "    return np.sqrt(np.sum((a - b) ** 2)) / (np.sqrt(np.sum(a ** 2)) + np.sqrt(np.sum(b ** 2)))")),
        frozenset()),
    WrongAnswer(
        "function_with_the_staged_backward_and_eps_as_a_cache_entry", "batchnorm_function",
        (("dx, dgamma, dbeta = batchnorm_backward_alt(dout.detach().numpy(), cache)",
          "dx, dgamma, dbeta = batchnorm_backward(dout.detach().numpy().copy(), dict(cache))"),),
        frozenset()),
]

TEST_CELL_POINTS = {"test_backward": 3, "test_backward_alt": 2, "test_spatial_backward": 1,
                    "test_numerical_gradient": 1, "test_relative_error": 1, "test_autograd_function": 2}
