"""Realistic wrong answers to Exercise 6 (see the package docstring for the format)."""

from . import WrongAnswer

EXERCISE = "ex06_why_bn_works"

WRONG_ANSWERS = [
    WrongAnswer(
        "second_gradient_on_another_batch", "gradient_change",
        (("    model.zero_grad()\n    F.cross_entropy(model(x), y).backward()\n    after = ",
          "    idx = torch.randint(0, len(x_train), (batch_size,), generator=generator)\n"
          "    model.zero_grad()\n    F.cross_entropy(model(x_train[idx]), y_train[idx]).backward()\n    after = "),),
        frozenset({"test_gradient_change"}), says="another mini-batch"),
    WrongAnswer(
        "the_layer_itself_takes_the_step", "gradient_change",
        (("for module in model[:position]", "for module in model[:position + 1]"),),
        frozenset({"test_gradient_change"}), says="itself took the SGD step"),
    WrongAnswer(
        "optimizer_steps_every_layer", "gradient_change",
        (("    with torch.no_grad():\n        for p in below:\n            p -= lr * p.grad\n",
          "    torch.optim.SGD(model.parameters(), lr=lr).step()\n"),),
        frozenset({"test_gradient_change"}), says="every layer took the SGD step"),
    WrongAnswer(
        "weights_not_restored", "gradient_change",
        (("    model.load_state_dict(saved)\n", ""),),
        frozenset({"test_gradient_change"}), says="the call changed the model"),
    WrongAnswer(
        "l2_and_cosine_swapped", "gradient_change",
        (('return {"l2": l2, "cosine": cosine}', 'return {"l2": cosine, "cosine": l2}'),),
        frozenset({"test_gradient_change"}), says="l2 and cosine are swapped"),
    WrongAnswer(
        "gradients_accumulate", "gradient_change",
        (("            p -= lr * p.grad\n    model.zero_grad()\n", "            p -= lr * p.grad\n"),),
        frozenset({"test_gradient_change"}), says="not reset before the second backward"),
    WrongAnswer(
        "no_zero_grad_before_the_first_gradient", "gradient_change",
        (("    saved = copy.deepcopy(model.state_dict())\n    model.zero_grad()\n",
          "    saved = copy.deepcopy(model.state_dict())\n"),),
        frozenset({"test_gradient_change"}), says="not reset before the first backward pass"),
    WrongAnswer(
        "no_zero_grad_at_all", "gradient_change",
        (("    saved = copy.deepcopy(model.state_dict())\n    model.zero_grad()\n",
          "    saved = copy.deepcopy(model.state_dict())\n"),
         ("            p -= lr * p.grad\n    model.zero_grad()\n", "            p -= lr * p.grad\n")),
        frozenset({"test_gradient_change"}), says="the gradients were never reset"),
    WrongAnswer(
        "layers_below_step_uphill", "gradient_change",
        (("p -= lr * p.grad", "p += lr * p.grad"),),
        frozenset({"test_gradient_change"}), says="the layers below moved uphill"),
    WrongAnswer(
        "only_the_linear_weights_below_move", "gradient_change",
        (("below = [p for module in model[:position] for p in module.parameters()]",
          "below = [m.weight for m in model[:position] if isinstance(m, nn.Linear)]"),),
        frozenset({"test_gradient_change"}), says="only the weights of the linear layers below"),
    WrongAnswer(
        "cuts_the_sequential_at_the_layer_number", "gradient_change",
        (("for module in model[:position]", "for module in model[:layer]"),),
        frozenset({"test_gradient_change"}), says="the step moved model[:2]"),
    WrongAnswer(
        "second_gradient_in_eval_mode", "gradient_change",
        (("    model.zero_grad()\n    F.cross_entropy(model(x), y).backward()\n    after = ",
          "    model.eval()\n    model.zero_grad()\n    F.cross_entropy(model(x), y).backward()\n    model.train()\n"
          "    after = "),),
        frozenset({"test_gradient_change"}), says="G' was taken in eval mode"),
    WrongAnswer(
        "steps_uphill", "loss_landscape",
        (("p.copy_(w - eta * gp)", "p.copy_(w + eta * gp)"),),
        frozenset({"test_loss_landscape"}), says="moved uphill"),
    WrongAnswer(
        "steps_add_up", "loss_landscape",
        (("p.copy_(w - eta * gp)", "p.sub_(eta * gp)"),),
        frozenset({"test_loss_landscape"}), says="not put back between step sizes"),
    WrongAnswer(
        "losses_in_eval_mode", "loss_landscape",
        (("        model.zero_grad()\n        loss = F.cross_entropy(model(x), y)\n        loss.backward()\n"
          "        losses.append(loss.item())\n",
          "        model.eval()\n        with torch.no_grad():\n"
          "            losses.append(F.cross_entropy(model(x), y).item())\n        model.train()\n"
          "        model.zero_grad()\n        F.cross_entropy(model(x), y).backward()\n"),),
        frozenset({"test_loss_landscape"}), says="losses were computed in eval mode"),
    WrongAnswer(
        "left_in_eval_mode", "loss_landscape",
        (('    return {"losses": losses, "gradient_changes": changes}',
          '    model.eval()\n    return {"losses": losses, "gradient_changes": changes}'),),
        frozenset({"test_loss_landscape"}), says="is in eval mode after it"),
    WrongAnswer(
        "difference_of_norms", "loss_landscape",
        (("        squared = sum(((p.grad - gp) ** 2).sum() for p, gp in zip(params, g))\n"
          "        changes.append(squared.sqrt().item())\n",
          "        norm_here = sum((gp ** 2).sum() for gp in g).sqrt()\n"
          "        norm_there = sum((p.grad ** 2).sum() for p in params).sqrt()\n"
          "        changes.append(abs(norm_here - norm_there).item())\n"),),
        frozenset({"test_loss_landscape"}), says="difference of the norms"),
    WrongAnswer(
        "parameters_left_at_the_last_step", "loss_landscape",
        (("    with torch.no_grad():\n        for p, w in zip(params, saved):\n            p.copy_(w)\n", ""),),
        frozenset({"test_loss_landscape"}), says="the call changed the model"),
    WrongAnswer(
        "no_zero_grad_before_g", "loss_landscape",
        (("    model.zero_grad()\n    F.cross_entropy(model(x), y).backward()\n    g = ",
          "    F.cross_entropy(model(x), y).backward()\n    g = "),),
        frozenset({"test_loss_landscape"}), says="not reset before the first backward pass"),
    WrongAnswer(
        "no_zero_grad_between_step_sizes", "loss_landscape",
        (("        model.zero_grad()\n        loss = F.cross_entropy", "        loss = F.cross_entropy"),),
        frozenset({"test_loss_landscape"}), says="not reset between step sizes"),
    WrongAnswer(
        "change_per_unit_of_distance", "loss_landscape",
        (("changes.append(squared.sqrt().item())",
          "changes.append((squared.sqrt() / (eta * sum((gp ** 2).sum() for gp in g).sqrt())).item())"),),
        frozenset({"test_loss_landscape"}), says="divided by |eta g|"),
    WrongAnswer(
        "sum_of_per_parameter_norms", "loss_landscape",
        (("        squared = sum(((p.grad - gp) ** 2).sum() for p, gp in zip(params, g))\n"
          "        changes.append(squared.sqrt().item())\n",
          "        changes.append(sum((p.grad - gp).norm() for p, gp in zip(params, g)).item())\n"),),
        frozenset({"test_loss_landscape"}), says="the sum of each parameter's"),
    WrongAnswer(
        "norm_not_squared", "effective_learning_rate",
        (("lr / weight.norm().item() ** 2", "lr / weight.norm().item()"),),
        frozenset({"test_effective_lr"}), says="that is lr / |W|"),
    WrongAnswer(
        "indexes_the_sequential", "effective_learning_rate",
        (("weight = [m for m in model if isinstance(m, nn.Linear)][layer].weight", "weight = model[layer].weight"),),
        frozenset({"test_effective_lr"}), says="indexing the nn.Sequential counts every module"),
    WrongAnswer(
        "counts_the_linear_layers_from_one", "effective_learning_rate",
        (("isinstance(m, nn.Linear)][layer].weight", "isinstance(m, nn.Linear)][layer - 1].weight"),),
        frozenset({"test_effective_lr"}), says="one layer too early"),
    WrongAnswer(
        "skips_the_first_linear_layer", "effective_learning_rate",
        (("isinstance(m, nn.Linear)][layer].weight", "isinstance(m, nn.Linear)][layer + 1].weight"),),
        frozenset({"test_effective_lr"}), says="one layer too far"),
    WrongAnswer(
        "no_zero_grad_before_the_gradient", "effective_learning_rate",
        (("    model.zero_grad()\n", ""),),
        frozenset({"test_effective_lr"}), says="not reset before the backward pass"),
    WrongAnswer(
        "cosine_without_its_sign", "effective_learning_rate",
        (('"cosine": cosine.item()', '"cosine": abs(cosine.item())'),),
        frozenset({"test_effective_lr"}), says="that is |cos(W, g)|"),
    WrongAnswer(
        "gradient_in_eval_mode", "effective_learning_rate",
        (("    model.zero_grad()\n", "    model.eval()\n    model.zero_grad()\n"),),
        frozenset({"test_effective_lr"}), says="gradient was taken in eval mode"),
    WrongAnswer(
        "answer_inverted", "tuned_rate_factor",
        (("return float(effective_after(large_lr) / effective_after(small_lr))",
          "return float(effective_after(small_lr) / effective_after(large_lr))"),),
        frozenset({"test_question"}), says="divided by the one at"),
    WrongAnswer(
        "answer_from_before_training", "tuned_rate_factor",
        (('rate_tuning_run(lr)["weight_after"]', 'rate_tuning_run(lr)["weight_before"]'),),
        frozenset({"test_question"}), says="ratio of the learning rates"),
    WrongAnswer(
        "question_norm_not_squared", "tuned_rate_factor",
        (("return lr / (weight ** 2).sum()", "return lr / np.sqrt((weight ** 2).sum())"),),
        frozenset({"test_question"}), says="what an effective rate of lr / |W| gives"),
    WrongAnswer(
        "question_without_the_learning_rates", "tuned_rate_factor",
        (("return lr / (weight ** 2).sum()", "return 1 / (weight ** 2).sum()"),),
        frozenset({"test_question"}), says="the ratio of 1 / |W|^2 alone"),
]

CORRECT_ANSWERS = [
    WrongAnswer(
        "gradients_by_autograd_grad_and_restored_by_hand", "gradient_change",
        (("    saved = copy.deepcopy(model.state_dict())\n    model.zero_grad()\n"
          "    F.cross_entropy(model(x), y).backward()\n    before = target.weight.grad.clone()\n"
          "    with torch.no_grad():\n        for p in below:\n            p -= lr * p.grad\n"
          "    model.zero_grad()\n    F.cross_entropy(model(x), y).backward()\n"
          "    after = target.weight.grad.clone()\n    model.load_state_dict(saved)\n",
          "    grads = torch.autograd.grad(F.cross_entropy(model(x), y), below + [target.weight])\n"
          "    before = grads[-1]\n    with torch.no_grad():\n"
          "        for p, gp in zip(below, grads):\n            p -= lr * gp\n"
          "    (after,) = torch.autograd.grad(F.cross_entropy(model(x), y), [target.weight])\n"
          "    with torch.no_grad():\n        for p, gp in zip(below, grads):\n            p += lr * gp\n"),),
        frozenset()),
    WrongAnswer(
        "cosine_by_torch_functional", "gradient_change",
        (("cosine = ((before * after).sum() / (before.norm() * after.norm())).item()",
          "cosine = F.cosine_similarity(before.flatten(), after.flatten(), dim=0).item()"),),
        frozenset()),
    WrongAnswer(
        "landscape_with_parameter_vectors", "loss_landscape",
        (("        squared = sum(((p.grad - gp) ** 2).sum() for p, gp in zip(params, g))\n"
          "        changes.append(squared.sqrt().item())\n",
          "        there = torch.cat([p.grad.flatten() for p in params])\n"
          "        changes.append(torch.linalg.norm(there - torch.cat([gp.flatten() for gp in g])).item())\n"),),
        frozenset()),
    WrongAnswer(
        "effective_rate_from_a_flattened_weight", "effective_learning_rate",
        (("    cosine = (weight * grad).sum() / (weight.norm() * grad.norm())\n"
          '    return {"effective_lr": lr / weight.norm().item() ** 2, "cosine": cosine.item()}',
          "    w, g = weight.detach().flatten(), grad.flatten()\n"
          '    return {"effective_lr": lr / float(w @ w), "cosine": float(w @ g / (w.norm() * g.norm()))}'),),
        frozenset()),
    WrongAnswer(
        "answer_from_matrix_norms", "tuned_rate_factor",
        (("    def effective_after(lr):\n        weight = rate_tuning_run(lr)[\"weight_after\"]\n"
          "        return lr / (weight ** 2).sum()\n"
          "    return float(effective_after(large_lr) / effective_after(small_lr))",
          "    runs = {lr: rate_tuning_run(lr)[\"weight_after\"] for lr in (small_lr, large_lr)}\n"
          "    rates = {lr: lr / np.linalg.norm(w) ** 2 for lr, w in runs.items()}\n"
          "    return rates[large_lr] / rates[small_lr]"),),
        frozenset()),
    WrongAnswer(
        "answer_as_a_torch_scalar", "tuned_rate_factor",
        (("    return float(effective_after(large_lr) / effective_after(small_lr))",
          "    return torch.as_tensor(effective_after(large_lr)) / effective_after(small_lr)"),),
        frozenset()),
]

TEST_CELL_POINTS = {"test_gradient_change": 3, "test_loss_landscape": 3, "test_effective_lr": 2, "test_question": 2}
