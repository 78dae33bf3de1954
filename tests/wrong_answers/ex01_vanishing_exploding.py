"""Realistic wrong answers to Exercise 1 (see the package docstring for the format).

Why some mistakes fail two cells: ``weight_gradient_norms`` calls the student's
``activation_derivative``, so a wrong derivative also makes the gradient norms wrong.
"""

from . import WrongAnswer

EXERCISE = "ex01_vanishing_exploding"

WRONG_ANSWERS = [
    WrongAnswer(
        "sigmoid_derivative_of_z_not_of_sigma", "activations",
        (("        s = activation(z, \"sigmoid\")\n        return s * (1.0 - s)", "        return z * (1.0 - z)"),),
        frozenset({"test_activations", "test_gradient_norms"}), says="z * (1 - z)"),
    WrongAnswer(
        "variance_recorded_as_std", "forward_with_stats",
        (("stats.append((h.mean(), h.std()))", "stats.append((h.mean(), h.var()))"),),
        frozenset({"test_forward_stats"}), says="variance"),
    WrongAnswer(
        "stats_before_the_activation", "forward_with_stats",
        (("        h = activation(h @ W + b, name)\n        stats.append((h.mean(), h.std()))",
          "        z = h @ W + b\n        stats.append((z.mean(), z.std()))\n        h = activation(z, name)"),),
        frozenset({"test_forward_stats"}), says="pre-activations"),
    WrongAnswer(
        "gradient_norms_last_layer_first", "weight_gradient_norms",
        (("return np.array(norms[::-1])", "return np.array(norms)"),),
        frozenset({"test_gradient_norms"}), says="from the last layer to the first"),
    WrongAnswer(
        "loss_summed_not_averaged", "weight_gradient_norms",
        (("grad_h = (h - y) / N", "grad_h = h - y"),),
        frozenset({"test_gradient_norms"}), says="N times too large"),
    WrongAnswer(
        "slope_at_the_output", "weight_gradient_norms",
        (("grad_z = grad_h * activation_derivative(z, name)",
          "grad_z = grad_h * activation_derivative(activation(z, name), name)"),),
        frozenset({"test_gradient_norms"}), says="evaluated at the layer's output"),
    WrongAnswer(
        "he_with_fan_out", "initializers",
        (("std = np.sqrt(2.0 / fan_in)", "std = np.sqrt(2.0 / fan_out)"),),
        frozenset({"test_he_init"}), says="wrong fan"),
    WrongAnswer(
        "xavier_variance_as_std", "initializers",
        (("std = np.sqrt(2.0 / (fan_in + fan_out))", "std = 2.0 / (fan_in + fan_out)"),),
        frozenset({"test_xavier_init"}), says="is the variance"),
    WrongAnswer(
        "relu_gain_squared", "relu_gain",
        (("return np.sqrt(2.0)", "return 2.0"),),
        frozenset({"test_relu_gain"}), says="factor on the variance"),
    WrongAnswer(
        "sigmoid_value_not_slope", "largest_sigmoid_derivative",
        (("return 0.25", "return 0.5"),),
        frozenset({"test_sigmoid_slope"}), says="sigma(0)"),
]

TEST_CELL_POINTS = {"test_activations": 1, "test_forward_stats": 2, "test_gradient_norms": 3,
                    "test_xavier_init": 1, "test_he_init": 1, "test_sigmoid_slope": 1, "test_relu_gain": 1}

CORRECT_ANSWERS = [
    WrongAnswer(
        "sigmoid_through_tanh_and_relu_derivative_by_heaviside", "activations",
        (("        return 1.0 / (1.0 + np.exp(-z))", "        return 0.5 * (1.0 + np.tanh(0.5 * z))"),
         ("        return (z > 0).astype(float)", "        return np.heaviside(z, 0.0)")),
        frozenset()),
    WrongAnswer(
        "relu_by_where_and_tanh_slope_from_cosh", "activations",
        (("        return np.maximum(z, 0.0)", "        return np.where(z > 0, z, 0.0)"),
         ("        return 1.0 - np.tanh(z) ** 2", "        t = activation(z, \"tanh\")\n        return (1 - t) * (1 + t)")),
        frozenset()),
    WrongAnswer(
        "stats_as_separate_lists_stacked", "forward_with_stats",
        (("    stats = []\n", "    means, stds = [], []\n"),
         ("        stats.append((h.mean(), h.std()))", "        means.append(np.mean(h))\n        stds.append(np.sqrt(np.mean((h - h.mean()) ** 2)))"),
         ("    return h, np.array(stats)", "    return h, np.column_stack([means, stds])")),
        frozenset()),
    WrongAnswer(
        "backprop_recursive_with_insert_and_einsum", "weight_gradient_norms",
        (("        norms.append(np.linalg.norm(grad_W))", "        norms.insert(0, np.sqrt(np.einsum('ij,ij->', grad_W, grad_W)))"),
         ("    return np.array(norms[::-1])", "    return np.array(norms)")),
        frozenset()),
    WrongAnswer(
        "backprop_averages_in_the_weight_gradient", "weight_gradient_norms",
        (("grad_h = (h - y) / N  # d loss / d h_L", "grad_h = h - y"),
         ("grad_W = h_in.T @ grad_z", "grad_W = h_in.T @ grad_z / N")),
        frozenset()),
    WrongAnswer(
        "glorot_uniform_and_he_standard_normal", "initializers",
        (("    std = np.sqrt(2.0 / (fan_in + fan_out))\n    return rng.normal(0.0, std, size=(fan_in, fan_out))",
          "    limit = np.sqrt(6.0 / (fan_in + fan_out))\n    return rng.uniform(-limit, limit, size=(fan_in, fan_out))"),
         ("    std = np.sqrt(2.0 / fan_in)\n    return rng.normal(0.0, std, size=(fan_in, fan_out))",
          "    return rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)")),
        frozenset()),
    WrongAnswer(
        "numbers_computed_not_typed", "largest_sigmoid_derivative",
        (("return 0.25", "s = 1 / (1 + np.exp(-0.0))\n    return s * (1 - s)"),),
        frozenset()),
]
