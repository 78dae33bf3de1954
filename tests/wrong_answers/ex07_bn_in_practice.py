"""Realistic wrong answers to Exercise 7 (see the package docstring for the format).

Each part's check builds its own inputs (the backward check its own caches), so a mistake loses the cells of
its own part: one cell for synchronized BN's forward or backward pass, statistics and the fold; for batch
renorm a mistake in the forward pass loses both of its cells (the gradients of a wrong output are wrong
too), and gradients through r and d lose only the gradient cell.
"""

from . import WrongAnswer

EXERCISE = "ex07_bn_in_practice"

FORWARD_SUMS = "local = np.concatenate([[len(x)], x.sum(axis=0), (x ** 2).sum(axis=0)])"
BACKWARD_SUMS = "total = all_reduce(np.concatenate([dout.sum(axis=0), (dout * x_hat).sum(axis=0)]))"
SYNC = frozenset({"test_sync_forward"})
SYNC_BACKWARD = frozenset({"test_sync_backward"})
RENORM = frozenset({"test_batch_renorm_forward", "test_batch_renorm_gradients"})
STATISTICS = frozenset({"test_recompute_statistics"})
FOLD = frozenset({"test_fold_conv"})

WRONG_ANSWERS = [
    # Part 1: synchronized batch norm, forward (each worker sees only its own x)
    WrongAnswer(
        "sync_averages_the_workers_means_and_variances", "sync_batchnorm_forward",
        ((FORWARD_SUMS, "local = np.concatenate([[1], x.mean(axis=0), x.var(axis=0)])"),
         ("var = total[D + 1:] / N - mean ** 2", "var = total[D + 1:] / N")),
        SYNC, says="the workers' means and variances were averaged"),
    WrongAnswer(
        "sync_pools_the_workers_variances", "sync_batchnorm_forward",
        ((FORWARD_SUMS, "local = np.concatenate([[len(x)], x.sum(axis=0), len(x) * x.var(axis=0)])"),
         ("var = total[D + 1:] / N - mean ** 2", "var = total[D + 1:] / N")),
        SYNC, says="the variance is the average of the workers' variances"),
    WrongAnswer(
        "sync_divides_by_its_own_count", "sync_batchnorm_forward",
        (("N = total[0]", "N = len(x)"),),
        SYNC, says="cache['count'] is one worker's own count"),
    WrongAnswer(
        "sync_forgets_the_forward_all_reduce", "sync_batchnorm_forward",
        (("total = all_reduce(local)", "total = local"),),
        SYNC, says="per-worker batch norm"),
    WrongAnswer(
        "sync_ignores_what_all_reduce_returns", "sync_batchnorm_forward",
        (("total = all_reduce(local)", "all_reduce(local)   # as torch.distributed does, in place?\n    total = local"),),
        SYNC, says="use what it returns"),
    WrongAnswer(
        "sync_unbiased_variance", "sync_batchnorm_forward",
        (("var = total[D + 1:] / N - mean ** 2", "var = (total[D + 1:] - N * mean ** 2) / (N - 1)"),),
        SYNC, says="unbiased"),
    WrongAnswer(
        "sync_cache_x_hat_is_centred_only", "sync_batchnorm_forward",
        (('cache = {"x_hat": x_hat,', 'cache = {"x_hat": x - mean,'),),
        SYNC, says="cache['x_hat'] is x - mean"),
    WrongAnswer(
        "sync_cache_std_is_the_variance", "sync_batchnorm_forward",
        (('"std": std,', '"std": var,'),),
        SYNC, says="cache['std'] holds the variance"),
    WrongAnswer(
        "sync_all_reduces_example_by_example", "sync_batchnorm_forward",
        (("    total = all_reduce(local)\n",
          "    total = 0\n    for row in x:   # one example at a time\n"
          "        total = total + all_reduce(np.concatenate([[1], row, row ** 2]))\n"),),
        SYNC, says="called all_reduce while the others had returned"),
    # Part 2: synchronized batch norm, backward
    WrongAnswer(
        "sync_backward_forgets_the_all_reduce", "sync_batchnorm_backward",
        ((BACKWARD_SUMS, "total = np.concatenate([dout.sum(axis=0), (dout * x_hat).sum(axis=0)])"),),
        SYNC_BACKWARD, says="the sums of dout and dout * x_hat are each worker's own"),
    WrongAnswer(
        "sync_backward_all_reduces_only_the_sum_of_dout", "sync_batchnorm_backward",
        ((BACKWARD_SUMS, "total = np.concatenate([all_reduce(dout.sum(axis=0)), (dout * x_hat).sum(axis=0)])"),),
        SYNC_BACKWARD, says="only the sum of dout was all-reduced"),
    WrongAnswer(
        "sync_backward_all_reduces_dx", "sync_batchnorm_backward",
        (("return dx, total[D:], total[:D]", "return all_reduce(dx), total[D:], total[:D]"),),
        SYNC_BACKWARD, says="dx was all-reduced"),
    WrongAnswer(
        "sync_backward_uses_its_own_count", "sync_batchnorm_backward",
        (("dx = gamma / (N * std) * (N * dout", "dx = gamma / (len(dout) * std) * (len(dout) * dout"),),
        SYNC_BACKWARD, says="each worker divided by its own count"),
    WrongAnswer(
        "sync_backward_returns_its_own_dgamma_and_dbeta", "sync_batchnorm_backward",
        (("return dx, total[D:], total[:D]", "return dx, (dout * x_hat).sum(axis=0), dout.sum(axis=0)"),),
        SYNC_BACKWARD, says="dgamma is this worker's own sum"),
    # Part 3: Batch Renormalization
    WrongAnswer(
        "renorm_gradients_through_r_and_d", "batch_renorm_forward",
        (("    with torch.no_grad():\n        r = ", "    if True:\n        r = "),),
        frozenset({"test_batch_renorm_gradients"}), says="gradients flow through r and d"),
    WrongAnswer(
        "renorm_r_upside_down", "batch_renorm_forward",
        (("r = (std / sigma)", "r = (sigma / std)"),),
        RENORM, says="r is upside down"),
    WrongAnswer(
        "renorm_d_over_the_batch_std", "batch_renorm_forward",
        (("d = ((mean - mu) / sigma)", "d = ((mean - mu) / std)"),),
        RENORM, says="d was divided by the batch's std"),
    WrongAnswer(
        "renorm_clips_r_from_above_only", "batch_renorm_forward",
        ((".clamp(1 / r_max, r_max)", ".clamp(max=r_max)"),),
        RENORM, says="clipped from above only"),
    WrongAnswer(
        "renorm_updates_the_running_statistics_first", "batch_renorm_forward",
        (("    mu, sigma = state[\"running_mean\"], state[\"running_std\"]\n",
          "    state[\"running_mean\"] = state[\"running_mean\"] + momentum * (mean.detach() - state[\"running_mean\"])\n"
          "    state[\"running_std\"] = state[\"running_std\"] + momentum * (std.detach() - state[\"running_std\"])\n"
          "    mu, sigma = state[\"running_mean\"], state[\"running_std\"]\n"),
         ("        state[\"running_mean\"] = mu + momentum * (mean - mu)\n"
          "        state[\"running_std\"] = sigma + momentum * (std - sigma)\n", "")),
        RENORM, says="updated before r and d were computed"),
    WrongAnswer(
        "renorm_running_std_without_eps", "batch_renorm_forward",
        (("state[\"running_std\"] = sigma + momentum * (std - sigma)",
          "state[\"running_std\"] = sigma + momentum * (torch.sqrt(x.var(dim=0, unbiased=False)) - sigma)"),),
        frozenset({"test_batch_renorm_forward"}), says="without eps"),
    WrongAnswer(
        "renorm_unbiased_batch_variance", "batch_renorm_forward",
        (("x.var(dim=0, unbiased=False)", "x.var(dim=0)"),),
        RENORM, says="unbiased"),
    # Part 4: exact statistics
    WrongAnswer(
        "statistics_by_update_bn", "recompute_bn_statistics",
        (("    bns = [m for m in model.modules()",
          "    torch.optim.swa_utils.update_bn(batches, model)\n    return model\n    bns = [m for m in model.modules()"),),
        STATISTICS, says="torch.optim.swa_utils.update_bn"),
    WrongAnswer(
        "statistics_by_forward_passes_in_train_mode", "recompute_bn_statistics",
        (("    bns = [m for m in model.modules()",
          "    model.train()\n    with torch.no_grad():\n        for batch in batches:\n            model(batch)\n"
          "    return model\n    bns = [m for m in model.modules()"),),
        STATISTICS, says="continued from the old statistics"),
    WrongAnswer(
        "statistics_momentum_none_without_reset", "recompute_bn_statistics",
        (("    bns = [m for m in model.modules()",
          "    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]\n"
          "    was_training = model.training\n"
          "    for layer in layers:\n        layer.momentum = None\n    model.train()\n"
          "    with torch.no_grad():\n        for batch in batches:\n            model(batch)\n"
          "    for layer in layers:\n        layer.momentum = 0.1\n    model.train(was_training)\n"
          "    return model\n    bns = [m for m in model.modules()"),),
        STATISTICS, says="without reset_running_stats()"),
    WrongAnswer(
        "statistics_biased_variance", "recompute_bn_statistics",
        (("/ (n - 1)", "/ n"),),
        STATISTICS, says="the variance is the biased one"),
    WrongAnswer(
        "statistics_passes_in_eval_mode", "recompute_bn_statistics",
        (("    model.train()\n    with torch.no_grad():", "    model.eval()\n    with torch.no_grad():"),),
        STATISTICS, says="the batches ran in eval mode"),
    WrongAnswer(
        "statistics_one_pass_of_the_concatenated_batches", "recompute_bn_statistics",
        (("        for batch in batches:\n            model(batch)\n", "        model(torch.cat(batches))\n"),),
        STATISTICS, says="went through the model at once"),
    WrongAnswer(
        "statistics_restores_the_default_momentum", "recompute_bn_statistics",
        (("    handles = [bn.register_forward_pre_hook(hook) for bn in bns]\n",
          "    handles = [bn.register_forward_pre_hook(hook) for bn in bns]\n"
          "    for bn in bns:\n        bn.momentum = None   # leave the running statistics to the hooks\n"),
         ("            bn.running_var.copy_((squares - n * mean ** 2) / (n - 1))\n",
          "            bn.running_var.copy_((squares - n * mean ** 2) / (n - 1))\n            bn.momentum = 0.1\n")),
        STATISTICS, says="momenta are"),
    WrongAnswer(
        "statistics_accumulated_in_float32", "recompute_bn_statistics",
        (("x = inputs[0].detach().double()", "x = inputs[0].detach().float()"),),
        STATISTICS, says="The first six digits agree"),
    WrongAnswer(
        "statistics_leaves_the_model_in_train_mode", "recompute_bn_statistics",
        (("    for m, mode in modes.items():\n        m.train(mode)\n", ""),),
        STATISTICS, says="not every layer is afterwards"),
    # Part 5: folding
    WrongAnswer(
        "fold_forgets_eps", "fold_bn_into_conv",
        (("torch.sqrt(bn.running_var + bn.eps)", "torch.sqrt(bn.running_var)"),),
        FOLD, says="eps is missing"),
    WrongAnswer(
        "fold_scales_the_input_channels", "fold_bn_into_conv",
        (("scale.view(-1, 1, 1, 1)", "scale.view(1, -1, 1, 1)"),),
        FOLD, says="along the input channels"),
    WrongAnswer(
        "fold_one_scale_for_the_whole_weight", "fold_bn_into_conv",
        (("scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)",
          "scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).mean()"),
         ("scale.view(-1, 1, 1, 1)", "scale"),),
        FOLD, says="per-tensor scale"),
    WrongAnswer(
        "fold_drops_the_conv_bias", "fold_bn_into_conv",
        (("old_bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)",
          "old_bias = torch.zeros_like(bn.running_mean)"),),
        FOLD, says="bias was dropped"),
    WrongAnswer(
        "fold_loses_dilation_and_groups", "fold_bn_into_conv",
        ((", dilation=conv.dilation, groups=conv.groups", ""),),
        FOLD, says="dilation"),
    WrongAnswer(
        "fold_loses_stride_and_padding", "fold_bn_into_conv",
        (("stride=conv.stride,\n                       padding=conv.padding, dilation=conv.dilation, groups=conv.groups, ",
          ""),),
        FOLD, says="stride, padding"),
]

CORRECT_ANSWERS = [
    WrongAnswer(
        "sync_two_all_reduces_for_an_exact_variance", "sync_batchnorm_forward",
        (("    total = all_reduce(local)\n",
          "    first = all_reduce(np.concatenate([[len(x)], x.sum(axis=0)]))\n"
          "    mean0 = first[1:] / first[0]\n"
          "    second = all_reduce(((x - mean0) ** 2).sum(axis=0))\n"
          "    total = np.concatenate([first, second + first[0] * mean0 ** 2])\n"),),
        frozenset()),
    WrongAnswer(
        "sync_three_all_reduces", "sync_batchnorm_forward",
        (("    total = all_reduce(local)\n",
          "    total = np.concatenate([all_reduce(np.array([len(x)])), all_reduce(x.sum(axis=0)),\n"
          "                            all_reduce((x ** 2).sum(axis=0))])\n"),),
        frozenset()),
    WrongAnswer(
        "sync_backward_with_means", "sync_batchnorm_backward",
        (("dx = gamma / (N * std) * (N * dout - total[:D] - x_hat * total[D:])",
          "dx = gamma / std * (dout - total[:D] / N - x_hat * (total[D:] / N))"),),
        frozenset()),
    WrongAnswer(
        "renorm_with_detach", "batch_renorm_forward",
        (("    with torch.no_grad():\n        r = (std / sigma).clamp(1 / r_max, r_max)\n"
          "        d = ((mean - mu) / sigma).clamp(-d_max, d_max)\n",
          "    r = (std / sigma).clamp(1 / r_max, r_max).detach()\n"
          "    d = ((mean - mu) / sigma).clamp(-d_max, d_max).detach()\n    with torch.no_grad():\n"),),
        frozenset()),
    WrongAnswer(
        "statistics_by_concatenating_the_inputs", "recompute_bn_statistics",
        (("    sums = {bn: [0.0, 0.0, 0] for bn in bns}\n", "    seen = {bn: [] for bn in bns}\n"),
         ("        x = inputs[0].detach().double()\n        dims = [0] + list(range(2, x.dim()))\n        s = sums[bn]\n"
          "        s[0] = s[0] + x.sum(dim=dims)\n        s[1] = s[1] + (x ** 2).sum(dim=dims)\n"
          "        s[2] += x.numel() // x.shape[1]\n",
          "        x = inputs[0].detach()\n        seen[bn].append(x.transpose(0, 1).reshape(x.shape[1], -1))\n"),
         ("        for bn in bns:\n            total, squares, n = sums[bn]\n            mean = total / n\n"
          "            bn.running_mean.copy_(mean)\n            bn.running_var.copy_((squares - n * mean ** 2) / (n - 1))\n",
          "        for bn in bns:\n            values = torch.cat(seen[bn], dim=1)\n"
          "            bn.running_mean.copy_(values.mean(dim=1))\n            bn.running_var.copy_(values.var(dim=1))\n")),
        frozenset()),
    WrongAnswer(
        "fold_through_the_weight_reshaped", "fold_bn_into_conv",
        (("folded.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))",
          "folded.weight.copy_((conv.weight.reshape(len(scale), -1) * scale[:, None]).reshape(conv.weight.shape))"),),
        frozenset()),
]

TEST_CELL_POINTS = {"test_sync_forward": 3, "test_sync_backward": 3, "test_batch_renorm_forward": 2,
                    "test_batch_renorm_gradients": 2, "test_recompute_statistics": 3, "test_fold_conv": 2}
