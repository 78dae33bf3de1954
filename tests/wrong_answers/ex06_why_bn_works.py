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
        "norm_not_squared", "effective_learning_rate",
        (("lr / weight.norm().item() ** 2", "lr / weight.norm().item()"),),
        frozenset({"test_effective_lr", "test_question"}), says="that is lr / |W|"),
    WrongAnswer(
        "indexes_the_sequential", "effective_learning_rate",
        (("weight = [m for m in model if isinstance(m, nn.Linear)][layer].weight", "weight = model[layer].weight"),),
        frozenset({"test_effective_lr", "test_question"}), says="indexing the nn.Sequential counts every module"),
    WrongAnswer(
        "gradient_in_eval_mode", "effective_learning_rate",
        (("    model.zero_grad()\n", "    model.eval()\n    model.zero_grad()\n"),),
        frozenset({"test_effective_lr", "test_question"}), says="gradient was taken in eval mode"),
    WrongAnswer(
        "answer_inverted", "tuned_rate_factor",
        (('return rate_tuning_run(0.5)["after"] / rate_tuning_run(0.05)["after"]',
          'return rate_tuning_run(0.05)["after"] / rate_tuning_run(0.5)["after"]'),),
        frozenset({"test_question"}), says="does not agree with your own run"),
    WrongAnswer(
        "answer_from_before_training", "tuned_rate_factor",
        (('return rate_tuning_run(0.5)["after"] / rate_tuning_run(0.05)["after"]',
          'return rate_tuning_run(0.5)["before"] / rate_tuning_run(0.05)["before"]'),),
        frozenset({"test_question"}), says="does not agree with your own run"),
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
        "answer_from_the_runs_as_tensors", "tuned_rate_factor",
        (('return rate_tuning_run(0.5)["after"] / rate_tuning_run(0.05)["after"]',
          'runs = [rate_tuning_run(lr) for lr in (0.05, 0.5)]\n'
          '    return float(np.float64(runs[1]["after"]) / runs[0]["after"])'),),
        frozenset()),
]

TEST_CELL_POINTS = {"test_gradient_change": 3, "test_loss_landscape": 3, "test_effective_lr": 2, "test_question": 2}
