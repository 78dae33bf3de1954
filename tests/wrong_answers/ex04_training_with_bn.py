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
        "loop_hard_codes_lr", "train_and_record",
        (("torch.optim.SGD(model.parameters(), lr=lr)", "torch.optim.SGD(model.parameters(), lr=0.1)"),),
        frozenset({"test_training_loop"}), says="lr=0.1 instead of"),
    WrongAnswer(
        "loop_hard_codes_batch_size", "train_and_record",
        (("(batch_size,), generator=generator)", "(16,), generator=generator)"),),
        frozenset({"test_training_loop"}), says="batch_size=16 instead of"),
    WrongAnswer(
        "loop_hard_codes_seed", "train_and_record",
        (("torch.Generator().manual_seed(seed)", "torch.Generator().manual_seed(0)"),),
        frozenset({"test_training_loop"}), says="seed=0 instead of"),
    WrongAnswer(
        "loop_hard_codes_eval_every", "train_and_record",
        (("if step % eval_every == 0:", "if step % 5 == 0:"),),
        frozenset({"test_training_loop"}), says="eval_every=5 instead of"),
    WrongAnswer(
        "loop_hard_codes_steps", "train_and_record",
        (("for step in range(1, steps + 1):", "for step in range(1, 31):"),),
        frozenset({"test_training_loop"}), says="steps=30 instead of"),
    WrongAnswer(
        "loop_counts_steps_from_zero", "train_and_record",
        (("for step in range(1, steps + 1):", "for step in range(steps):"),),
        frozenset({"test_training_loop"}), says="the count starts at 0"),
    WrongAnswer(
        "loop_evaluates_before_the_step", "train_and_record",
        (("        batch = torch.randint(", "        if step % eval_every == 0:\n            model.eval()\n"
          "            with torch.no_grad():\n                predictions = model(x_test).argmax(dim=1)\n"
          "            accuracies.append((predictions == y_test).double().mean().item())\n            model.train()\n"
          "        batch = torch.randint("),
         ("        if step % eval_every == 0:\n            model.eval()\n            with torch.no_grad():\n"
          "                predictions = model(x_test).argmax(dim=1)\n"
          "            accuracies.append((predictions == y_test).double().mean().item())\n    return accuracies",
          "    return accuracies")),
        frozenset({"test_training_loop"}), says="before the training step"),
    WrongAnswer(
        "loop_accuracy_on_the_training_set", "train_and_record",
        (("predictions = model(x_test).argmax(dim=1)", "predictions = model(x_train).argmax(dim=1)"),
         ("(predictions == y_test)", "(predictions == y_train)")),
        frozenset({"test_training_loop"}), says="on the training set"),
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
        "bn_after_the_output_layer", "make_bn_mlp",
        (("layers.append(nn.Linear(sizes[-2], sizes[-1]))",
          "layers += [nn.Linear(sizes[-2], sizes[-1]), nn.BatchNorm1d(sizes[-1])]"),),
        frozenset({"test_bn_mlp"}), says="no batch norm or activation after it"),
    WrongAnswer(
        "output_layer_without_bias", "make_bn_mlp",
        (("layers.append(nn.Linear(sizes[-2], sizes[-1]))", "layers.append(nn.Linear(sizes[-2], sizes[-1], bias=False))"),),
        frozenset({"test_bn_mlp"}), says="output layer keeps its bias"),
    WrongAnswer(
        "one_hidden_layer_too_few", "make_bn_mlp",
        (("zip(sizes[:-2], sizes[1:-1])", "zip(sizes[:-3], sizes[1:-2])"),),
        frozenset({"test_bn_mlp"}), says="there should be"),
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

CORRECT_ANSWERS = [
    WrongAnswer(
        "accuracy_in_float32", "train_and_record",
        (("(predictions == y_test).double().mean().item()", "(predictions == y_test).float().mean().item()"),),
        frozenset()),
    WrongAnswer(
        "accuracy_as_a_count_over_the_size", "train_and_record",
        (("(predictions == y_test).double().mean().item()", "(predictions == y_test).sum().item() / len(y_test)"),),
        frozenset()),
    WrongAnswer(
        "accuracy_in_numpy_and_eval_mode_restored_after", "train_and_record",
        (("    for step in range(1, steps + 1):\n        model.train()\n",
          "    model.train()\n    for step in range(1, steps + 1):\n"),
         ("            accuracies.append((predictions == y_test).double().mean().item())\n",
          "            accuracies.append(float(np.mean(predictions.numpy() == y_test.numpy())))\n            model.train()\n")),
        frozenset()),
    WrongAnswer(
        "optimizer_made_every_step_and_nll_of_log_softmax", "train_and_record",
        (("    opt = torch.optim.SGD(model.parameters(), lr=lr)\n", ""),
         ("        loss = F.cross_entropy(model(x_train[batch]), y_train[batch])\n",
          "        opt = torch.optim.SGD(model.parameters(), lr=lr)   # plain SGD keeps no state\n"
          "        loss = F.nll_loss(F.log_softmax(model(x_train[batch]), dim=1), y_train[batch])\n")),
        frozenset()),
    WrongAnswer(
        "zero_grad_after_the_step_and_softmax_before_argmax", "train_and_record",
        (("        opt.zero_grad()\n        loss.backward()\n        opt.step()\n",
          "        loss.backward()\n        opt.step()\n        opt.zero_grad()\n"),
         ("predictions = model(x_test).argmax(dim=1)", "predictions = torch.softmax(model(x_test), dim=1).argmax(1)")),
        frozenset()),
    WrongAnswer(
        "nested_sequential_blocks", "make_bn_mlp",
        (("        layers += [nn.Linear(n_in, n_out, bias=False), nn.BatchNorm1d(n_out), nn.ReLU()]",
          "        layers.append(nn.Sequential(nn.Linear(n_in, n_out, bias=False), nn.BatchNorm1d(n_out), nn.ReLU()))"),),
        frozenset()),
    WrongAnswer(
        "builder_by_index", "make_bn_mlp",
        (("    for n_in, n_out in zip(sizes[:-2], sizes[1:-1]):\n",
          "    for i in range(len(sizes) - 2):\n        n_in, n_out = sizes[i], sizes[i + 1]\n"),),
        frozenset()),
    WrongAnswer(
        "fold_with_rsqrt_and_diag", "fold_bn_into_linear",
        (("scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)", "scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)"),
         ("folded.weight.copy_(linear.weight * scale[:, None])", "folded.weight.copy_(torch.diag(scale) @ linear.weight)")),
        frozenset()),
    WrongAnswer(
        "folding_error_with_torch_max_abs", "folding_error",
        (("error = (model(x) - folded(x)).abs().max().item()", "error = float(torch.max(torch.abs(folded(x) - model(x))))"),),
        frozenset()),
    WrongAnswer(
        "steps_by_next_and_enumerate_from_one", "steps_to_accuracy",
        (("    for i, acc in enumerate(curve):\n        if acc >= target:\n            return (i + 1) * eval_every\n    return None",
          "    return next((k * eval_every for k, acc in enumerate(curve, start=1) if acc >= target), None)"),),
        frozenset()),
]

TEST_CELL_POINTS = {"test_training_loop": 3, "test_steps_to_accuracy": 2, "test_bn_mlp": 2, "test_fold_bn": 3,
                    "test_folding_error": 2}
