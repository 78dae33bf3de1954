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
