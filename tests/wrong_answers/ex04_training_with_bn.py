"""Realistic wrong answers to Exercise 4 (see the package docstring for the format)."""

from . import WrongAnswer

EXERCISE = "ex04_training_with_bn"

WRONG_ANSWERS = [
    WrongAnswer(
        "evaluates_in_train_mode", "train_and_record",
        (("            model.eval()\n", ""),),
        frozenset({"test_training_loop"}), says="measured in train mode"),
    WrongAnswer(
        "never_back_to_train_mode", "train_and_record",
        (("    for step in range(1, steps + 1):\n        model.train()\n",
          "    model.train()\n    for step in range(1, steps + 1):\n"),),
        frozenset({"test_training_loop"}), says="stays in eval mode"),
    WrongAnswer(
        "gradients_never_reset", "train_and_record",
        (("        opt.zero_grad()\n", ""),),
        frozenset({"test_training_loop"}), says="never reset"),
    WrongAnswer(
        "steps_counted_from_zero", "steps_to_accuracy",
        (("return (i + 1) * eval_every", "return i * eval_every"),),
        frozenset({"test_steps_to_accuracy"}), says="not i * eval_every"),
    WrongAnswer(
        "strictly_greater", "steps_to_accuracy",
        (("if acc >= target", "if acc > target"),),
        frozenset({"test_steps_to_accuracy"}), says="use >="),
    WrongAnswer(
        "bias_kept_before_bn", "make_bn_mlp",
        (("nn.Linear(n_in, n_out, bias=False)", "nn.Linear(n_in, n_out)"),),
        frozenset({"test_bn_mlp"}), says="bias=False"),
    WrongAnswer(
        "bn_after_the_activation", "make_bn_mlp",
        (("[nn.Linear(n_in, n_out, bias=False), nn.BatchNorm1d(n_out), nn.ReLU()]",
          "[nn.Linear(n_in, n_out, bias=False), nn.ReLU(), nn.BatchNorm1d(n_out)]"),),
        frozenset({"test_bn_mlp"}), says="between the linear layer and the activation"),
    WrongAnswer(
        "fold_without_eps", "fold_bn_into_linear",
        (("torch.sqrt(bn.running_var + bn.eps)", "torch.sqrt(bn.running_var)"),),
        frozenset({"test_fold_bn"}), says="eps is missing"),
    WrongAnswer(
        "fold_forgets_beta", "fold_bn_into_linear",
        (("* scale + bn.bias)", "* scale)"),),
        frozenset({"test_fold_bn"}), says="beta is missing"),
    WrongAnswer(
        "fold_hard_codes_eps", "fold_bn_into_linear",
        (("torch.sqrt(bn.running_var + bn.eps)", "torch.sqrt(bn.running_var + 1e-5)"),),
        frozenset({"test_fold_bn"}), says="eps = 1e-5 was used"),
    WrongAnswer(
        "fold_scales_the_weight_in_place", "fold_bn_into_linear",
        (("folded.weight.copy_(linear.weight * scale[:, None])",
          "folded.weight.copy_(linear.weight.mul_(scale[:, None]))"),),
        frozenset({"test_fold_bn"}), says="changed in place"),
    WrongAnswer(
        "fold_checked_in_train_mode", "folding_error",
        (("    model.eval()\n", ""),),
        frozenset({"test_folding_error"}), says="run in train mode"),
    WrongAnswer(
        "fold_check_leaves_eval_mode", "folding_error",
        (("    model.train(was_training)\n", ""),),
        frozenset({"test_folding_error"}), says="model.train(was_training)"),
    WrongAnswer(
        "fold_check_averages", "folding_error",
        ((".abs().max().item()", ".abs().mean().item()"),),
        frozenset({"test_folding_error"}), says="mean absolute difference"),
    WrongAnswer(
        "fold_check_forgets_abs", "folding_error",
        ((".abs().max().item()", ".max().item()"),),
        frozenset({"test_folding_error"}), says="largest signed difference"),
]

TEST_CELL_POINTS = {"test_training_loop": 3, "test_steps_to_accuracy": 2, "test_bn_mlp": 2, "test_fold_bn": 3,
                    "test_folding_error": 2}
