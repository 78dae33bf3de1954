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

TEST_CELL_POINTS = {"test_backward": 3, "test_backward_alt": 2, "test_spatial_backward": 1,
                    "test_numerical_gradient": 1, "test_relative_error": 1, "test_autograd_function": 2}
