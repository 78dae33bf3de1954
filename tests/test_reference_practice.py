"""Chapter 7's reference implementations (bncourse.reference_practice) agree with PyTorch in float64, where
torch has the operation: batch norm on the concatenated batch for synchronized batch norm (forward and
autograd), batch norm in train mode and autograd with r and d detached for batch renorm,
torch.optim.swa_utils.update_bn for exact statistics, fuse_conv_bn_eval for folding."""

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn

from bncourse import reference_practice as practice


def _shards(rng, counts, d):
    """Per-worker batches whose features have their own offsets, each worker's shifted differently."""
    means, scales = rng.uniform(-3, 3, d), rng.uniform(0.5, 3, d)
    return [rng.normal(means + k, scales, size=(n, d)) for k, n in enumerate(counts)]


@pytest.mark.parametrize("counts", [(5, 9), (4, 4, 4), (1, 7, 3, 2)])
def test_sync_batchnorm_matches_batchnorm_on_the_concatenated_batch(counts):
    rng = np.random.default_rng(sum(counts))
    d = 3
    xs = _shards(rng, counts, d)
    douts = [rng.normal(size=x.shape) for x in xs]
    gamma, beta = rng.uniform(0.5, 2, d), rng.uniform(-1, 1, d)
    outs, cache = practice.sync_batchnorm_forward(xs, gamma, beta, eps=1e-3)
    dxs, dgamma, dbeta = practice.sync_batchnorm_backward(douts, cache)

    layer = nn.BatchNorm1d(d, eps=1e-3, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(gamma))
        layer.bias.copy_(torch.from_numpy(beta))
    x = torch.from_numpy(np.concatenate(xs)).requires_grad_()
    out = layer(x)
    out.backward(torch.from_numpy(np.concatenate(douts)))
    np.testing.assert_allclose(np.concatenate(outs), out.detach().numpy(), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(np.concatenate(dxs), x.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dgamma, layer.weight.grad.numpy(), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(dbeta, layer.bias.grad.numpy(), rtol=1e-11, atol=1e-12)


def test_all_reduce_in_process_sums_and_refuses_mismatched_shapes():
    summed = practice.all_reduce_in_process([np.ones(3), 2 * np.ones(3)])
    assert len(summed) == 2 and all(np.array_equal(s, 3 * np.ones(3)) for s in summed)
    with pytest.raises(ValueError, match="one shape"):
        practice.all_reduce_in_process([np.ones(3), np.ones(4)])


def _torch_batch_renorm(x, gamma, beta, mu, sigma, r_max, d_max, eps):
    """Batch renorm written with torch ops, r and d detached: autograd differentiates it."""
    mean, std = x.mean(0), torch.sqrt(x.var(0, unbiased=False) + eps)
    r = (std / sigma).clamp(1 / r_max, r_max).detach()
    d = ((mean - mu) / sigma).clamp(-d_max, d_max).detach()
    return gamma * ((x - mean) / std * r + d) + beta


@pytest.mark.parametrize("r_max, d_max", [(1.0, 0.0), (1.5, 0.5), (3.0, 5.0)])
def test_batch_renorm_forward_backward_and_running_statistics(r_max, d_max):
    rng = np.random.default_rng(int(10 * r_max + d_max))
    n, d, eps, momentum = 12, 5, 1e-5, 0.2
    x = rng.normal(rng.uniform(-2, 2, d), rng.uniform(0.3, 3, d), size=(n, d))
    gamma, beta, dout = rng.uniform(0.5, 2, d), rng.uniform(-1, 1, d), rng.normal(size=(n, d))
    mu, sigma = rng.uniform(-2, 2, d), rng.uniform(0.2, 4, d)   # far from the batch's: clipping is active
    state = {"running_mean": mu.copy(), "running_std": sigma.copy()}
    out, cache = practice.batch_renorm_forward(x, gamma, beta, state, r_max, d_max, momentum, eps)
    dx, dgamma, dbeta = practice.batch_renorm_backward(dout, cache)

    leaves = [torch.tensor(a, requires_grad=True) for a in (x, gamma, beta)]
    theirs = _torch_batch_renorm(*leaves, torch.tensor(mu), torch.tensor(sigma), r_max, d_max, eps)
    theirs.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, theirs.detach().numpy(), rtol=1e-11, atol=1e-12)
    for ours, leaf in zip((dx, dgamma, dbeta), leaves):
        np.testing.assert_allclose(ours, leaf.grad.numpy(), rtol=1e-10, atol=1e-12)
    batch_std = np.sqrt(x.var(0) + eps)
    np.testing.assert_allclose(state["running_mean"], mu + momentum * (x.mean(0) - mu), rtol=1e-13)
    np.testing.assert_allclose(state["running_std"], sigma + momentum * (batch_std - sigma), rtol=1e-13)
    if r_max == 1.0 and d_max == 0.0:   # r = 1, d = 0: plain batch norm in train mode, forward and backward
        layer = nn.BatchNorm1d(d, eps=eps, dtype=torch.float64)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(gamma))
            layer.bias.copy_(torch.from_numpy(beta))
        xt = torch.tensor(x, requires_grad=True)
        layer(xt).backward(torch.tensor(dout))
        np.testing.assert_allclose(out, layer(torch.tensor(x)).detach().numpy(), rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    else:
        assert np.any(cache["r"] == r_max) or np.any(cache["r"] == 1 / r_max)
    eval_state = {"running_mean": mu, "running_std": np.sqrt(sigma ** 2 + eps)}
    layer = nn.BatchNorm1d(d, eps=eps, dtype=torch.float64).eval()
    with torch.no_grad():
        layer.running_mean.copy_(torch.from_numpy(mu))
        layer.running_var.copy_(torch.from_numpy(sigma ** 2))
        layer.weight.copy_(torch.from_numpy(gamma))
        layer.bias.copy_(torch.from_numpy(beta))
    np.testing.assert_allclose(practice.batch_renorm_inference(x, gamma, beta, eval_state),
                               layer(torch.from_numpy(x)).detach().numpy(), rtol=1e-11, atol=1e-12)


def _conv_bn_net():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, bias=False), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                          nn.Linear(3 * 4 * 4, 5, bias=False), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2)).double()
    with torch.no_grad():   # stale statistics, as after training
        for layer in (model[1], model[5]):
            layer.running_mean.uniform_(-1, 1)
            layer.running_var.uniform_(0.5, 2)
            layer.num_batches_tracked.fill_(100)
    return model


def test_recompute_bn_statistics_matches_update_bn_on_one_batch_and_keeps_the_modes():
    data = torch.randn(12, 2, 4, 4, dtype=torch.float64) * 2 + 1
    ours, theirs = _conv_bn_net().eval(), _conv_bn_net().eval()
    practice.recompute_bn_statistics(ours, [data])
    torch.optim.swa_utils.update_bn([data], theirs)
    for a, b in zip(ours.modules(), theirs.modules()):
        assert a.training == b.training
        if isinstance(a, nn.modules.batchnorm._BatchNorm):
            np.testing.assert_allclose(a.running_mean.numpy(), b.running_mean.numpy(), rtol=1e-12, atol=1e-13)
            np.testing.assert_allclose(a.running_var.numpy(), b.running_var.numpy(), rtol=1e-12, atol=1e-13)
            assert a.momentum == 0.1


def test_recompute_bn_statistics_pools_unequal_batches_exactly():
    """With several batches the first layer's statistics are those of all its inputs together (torch.mean and
    torch.var over the whole data); update_bn averages per-batch statistics, which differs."""
    torch.manual_seed(1)
    batches = [torch.randn(n, 2, 4, 4, dtype=torch.float64) + shift for n, shift in ((6, 0.0), (6, 1.0), (3, -2.0))]
    model = _conv_bn_net()
    practice.recompute_bn_statistics(model, batches)
    with torch.no_grad():
        inputs = model[0](torch.cat(batches))
    np.testing.assert_allclose(model[1].running_mean.numpy(), inputs.mean((0, 2, 3)).numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(model[1].running_var.numpy(), inputs.var((0, 2, 3)).numpy(), rtol=1e-12, atol=1e-13)
    averaged = _conv_bn_net()
    torch.optim.swa_utils.update_bn(batches, averaged)
    assert not np.allclose(averaged[1].running_var.numpy(), model[1].running_var.numpy(), rtol=1e-3)
    # the second layer's inputs: each batch through the first layers in train mode, as in training
    second = []
    with torch.no_grad():
        copy_ = copy.deepcopy(model).train()
        for batch in batches:
            second.append(copy_[:5](batch))
    second = torch.cat(second)
    np.testing.assert_allclose(model[5].running_mean.numpy(), second.mean(0).numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(model[5].running_var.numpy(), second.var(0).numpy(), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("with_bias, groups", [(False, 1), (True, 1), (True, 2)])
def test_fold_batchnorm_into_conv_matches_fuse_conv_bn_eval(with_bias, groups):
    torch.manual_seed(groups + with_bias)
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=with_bias, groups=groups, dtype=torch.float64).eval()
    bn = nn.BatchNorm2d(6, eps=1e-3, dtype=torch.float64).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-2, 2)
        bn.running_var.uniform_(0.2, 3)
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    fused = torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn)
    weight, bias = practice.fold_batchnorm_into_conv(
        conv.weight.detach().numpy(), conv.bias.detach().numpy() if with_bias else None, bn.running_mean.numpy(),
        bn.running_var.numpy(), bn.weight.detach().numpy(), bn.bias.detach().numpy(), eps=1e-3)
    np.testing.assert_allclose(weight, fused.weight.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(bias, fused.bias.detach().numpy(), rtol=1e-12, atol=1e-13)
    x = torch.randn(2, 4, 7, 7, dtype=torch.float64)
    folded = torch.nn.functional.conv2d(x, torch.from_numpy(weight), torch.from_numpy(bias), stride=2, padding=1,
                                        groups=groups)
    np.testing.assert_allclose(folded.numpy(), bn(conv(x)).detach().numpy(), rtol=1e-11, atol=1e-12)
