"""The reference implementations agree with PyTorch in float64, for several shapes, momenta
and numbers of steps, in train and eval mode."""

import numpy as np
import pytest
import torch

from bncourse import reference


def _torch_layer(cls, num_features, momentum, gamma, beta, eps=1e-5):
    layer = cls(num_features, momentum=momentum, eps=eps, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(gamma))
        layer.bias.copy_(torch.from_numpy(beta))
    return layer


@pytest.mark.parametrize("n, d", [(2, 1), (5, 3), (64, 17)])
@pytest.mark.parametrize("momentum", [0.1, 0.01, 0.5, 1.0])
def test_batchnorm1d_train_steps_then_eval(n, d, momentum):
    rng = np.random.default_rng(n * 100 + d)
    gamma, beta = rng.uniform(0.5, 2, d), rng.uniform(-1, 1, d)
    layer = _torch_layer(torch.nn.BatchNorm1d, d, momentum, gamma, beta)
    bn_param = {"mode": "train", "momentum": momentum}
    for _ in range(6):
        x = rng.normal(rng.uniform(-3, 3, d), rng.uniform(0.1, 4, d), size=(n, d))
        ours, cache = reference.batchnorm_forward(x, gamma, beta, bn_param)
        theirs = layer(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(bn_param["running_mean"], layer.running_mean.numpy(), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(bn_param["running_var"], layer.running_var.numpy(), rtol=1e-12, atol=1e-13)
        assert set(cache) == set(reference.CACHE_KEYS)
    layer.eval()
    bn_param["mode"] = "eval"
    x = rng.normal(size=(n, d))
    ours, cache = reference.batchnorm_forward(x, gamma, beta, bn_param)
    np.testing.assert_allclose(ours, layer(torch.from_numpy(x)).detach().numpy(), rtol=1e-10, atol=1e-12)
    assert cache is None


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 2, 3, 3), (7, 1, 2, 6)])
@pytest.mark.parametrize("momentum", [0.1, 0.3])
def test_batchnorm2d_train_steps_then_eval(shape, momentum):
    rng = np.random.default_rng(sum(shape))
    c = shape[1]
    gamma, beta = rng.uniform(0.5, 2, c), rng.uniform(-1, 1, c)
    layer = _torch_layer(torch.nn.BatchNorm2d, c, momentum, gamma, beta)
    bn_param = {"mode": "train", "momentum": momentum}
    for _ in range(4):
        x = rng.normal(2, 3, size=shape)
        ours, _ = reference.spatial_batchnorm_forward(x, gamma, beta, bn_param)
        np.testing.assert_allclose(ours, layer(torch.from_numpy(x)).detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(bn_param["running_var"], layer.running_var.numpy(), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(bn_param["running_mean"], layer.running_mean.numpy(), rtol=1e-12, atol=1e-13)
    layer.eval()
    bn_param["mode"] = "eval"
    x = rng.normal(size=shape)
    ours, _ = reference.spatial_batchnorm_forward(x, gamma, beta, bn_param)
    np.testing.assert_allclose(ours, layer(torch.from_numpy(x)).detach().numpy(), rtol=1e-10, atol=1e-12)


def test_eval_mode_leaves_running_stats_alone_and_train_needs_two_values():
    bn_param = {"mode": "eval", "running_mean": np.array([1.0, 2.0]), "running_var": np.array([3.0, 4.0])}
    reference.batchnorm_forward(np.ones((1, 2)), np.ones(2), np.zeros(2), bn_param)
    assert bn_param["running_mean"].tolist() == [1.0, 2.0] and bn_param["running_var"].tolist() == [3.0, 4.0]
    with pytest.raises(ValueError):  # torch raises too (see Chapter 2)
        reference.batchnorm_forward(np.ones((1, 2)), np.ones(2), np.zeros(2), {"mode": "train"})


def _mlp(rng, sizes):
    weights = [rng.normal(0, 1 / np.sqrt(a), size=(a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    biases = [rng.normal(0, 0.1, size=b) for b in sizes[1:]]
    return weights, biases


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("sizes", [(5, 4, 3), (8, 16, 16, 16, 4), (3, 7, 2, 6, 5, 1)])
def test_mlp_forward_stats_and_gradient_norms_match_autograd(activation, sizes):
    rng = np.random.default_rng(len(sizes))
    x, y = rng.normal(size=(11, sizes[0])), rng.normal(size=(11, sizes[-1]))
    weights, biases = _mlp(rng, sizes)
    out, stats = reference.mlp_forward_stats(x, weights, biases, activation)
    norms = reference.mlp_weight_gradient_norms(x, y, weights, biases, activation)

    f = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}[activation]
    tw = [torch.tensor(w, requires_grad=True) for w in weights]
    h, torch_stats = torch.from_numpy(x), []
    for w, b in zip(tw, biases):
        h = f(h @ w + torch.from_numpy(b))
        torch_stats.append((h.mean().item(), h.std(unbiased=False).item()))
    (0.5 * ((h - torch.from_numpy(y)) ** 2).sum(dim=1).mean()).backward()

    np.testing.assert_allclose(out, h.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(stats, torch_stats, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(norms, [w.grad.norm().item() for w in tw], rtol=1e-10)


def test_init_scales_follow_the_papers_and_torch():
    torch.manual_seed(0)
    for fan_in, fan_out in [(64, 256), (300, 10)]:
        w = torch.empty(fan_out, fan_in, dtype=torch.float64)  # torch stores (out, in)
        torch.nn.init.xavier_normal_(w)
        assert reference.xavier_std(fan_in, fan_out) == pytest.approx(w.std().item(), rel=0.05)
        torch.nn.init.kaiming_normal_(w, nonlinearity="relu")
        assert reference.he_std(fan_in) == pytest.approx(w.std().item(), rel=0.05)


def _autograd_batchnorm(x, gamma, beta, dout, eps=1e-5):
    """(dx, dgamma, dbeta) of torch's functional batch norm in train mode, by autograd in float64."""
    tensors = [torch.tensor(a, requires_grad=True) for a in (x, gamma, beta)]
    out = torch.nn.functional.batch_norm(tensors[0], None, None, tensors[1], tensors[2], training=True, eps=eps)
    out.backward(torch.tensor(dout))
    return [t.grad.numpy() for t in tensors]


@pytest.mark.parametrize("n, d", [(2, 1), (5, 3), (64, 17)])
def test_batchnorm_backward_matches_torch_autograd(n, d):
    rng = np.random.default_rng(n + 7 * d)
    x = rng.normal(rng.uniform(-3, 3, d), rng.uniform(0.1, 4, d), size=(n, d))
    gamma, beta, dout = rng.uniform(0.5, 2, d), rng.uniform(-1, 1, d), rng.normal(size=(n, d))
    _, cache = reference.batchnorm_forward(x, gamma, beta, {"mode": "train"})
    for ours, theirs in zip(reference.batchnorm_backward(dout, cache), _autograd_batchnorm(x, gamma, beta, dout)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 2, 3, 3), (7, 1, 2, 6)])
def test_spatial_batchnorm_backward_matches_torch_autograd(shape):
    rng = np.random.default_rng(sum(shape))
    c = shape[1]
    x = rng.normal(2.0, 3.0, size=shape)
    gamma, beta, dout = rng.uniform(0.5, 2, c), rng.uniform(-1, 1, c), rng.normal(size=shape)
    _, cache = reference.spatial_batchnorm_forward(x, gamma, beta, {"mode": "train"})
    ours = reference.spatial_batchnorm_backward(dout, cache)
    for mine, theirs in zip(ours, _autograd_batchnorm(x, gamma, beta, dout)):
        np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("shape", [(4, 7), (2, 3, 5), (1, 1)])
def test_layernorm_forward_and_backward_match_torch(shape):
    rng = np.random.default_rng(sum(shape) + 11)
    d = shape[-1]
    x = rng.normal(rng.uniform(-3, 3, size=shape[:-1] + (1,)), rng.uniform(0.5, 3), size=shape)
    gamma, beta, dout = rng.uniform(0.5, 2, d), rng.uniform(-1, 1, d), rng.normal(size=shape)
    layer = torch.nn.LayerNorm(d, eps=1e-5, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(gamma))
        layer.bias.copy_(torch.from_numpy(beta))
    xt = torch.tensor(x, requires_grad=True)
    out = layer(xt)
    out.backward(torch.tensor(dout))
    ours, cache = reference.layernorm_forward(x, gamma, beta)
    np.testing.assert_allclose(ours, out.detach().numpy(), rtol=1e-10, atol=1e-12)
    # the cache's statistics, which Exercise 5's check compares with a student's, are torch's too
    var, mean = torch.var_mean(torch.tensor(x), dim=-1, keepdim=True, correction=0)
    assert set(cache) == set(reference.LAYERNORM_CACHE_KEYS)
    np.testing.assert_allclose(cache["mean"], mean.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cache["var"], var.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cache["std"], np.sqrt(var.numpy() + 1e-5), rtol=1e-12)
    dx, dgamma, dbeta = reference.layernorm_backward(dout, cache)
    for mine, theirs in ((dx, xt.grad), (dgamma, layer.weight.grad), (dbeta, layer.bias.grad)):
        np.testing.assert_allclose(mine, theirs.numpy(), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("shape, groups", [((2, 6, 3, 4), 3), ((3, 4, 5), 2), ((2, 4, 2, 2), 4), ((2, 4, 3), 1)])
def test_groupnorm_forward_matches_torch(shape, groups):
    rng = np.random.default_rng(sum(shape) + groups)
    c = shape[1]
    x = rng.normal(2.0, 3.0, size=shape)
    gamma, beta = rng.uniform(0.5, 2, c), rng.uniform(-1, 1, c)
    layer = torch.nn.GroupNorm(groups, c, eps=1e-5, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(gamma))
        layer.bias.copy_(torch.from_numpy(beta))
    np.testing.assert_allclose(reference.groupnorm_forward(x, gamma, beta, groups),
                               layer(torch.from_numpy(x)).detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", [(4, 7), (2, 3, 5)])
def test_rmsnorm_forward_matches_torch(shape):
    rng = np.random.default_rng(sum(shape) + 5)
    d = shape[-1]
    x, gamma = rng.normal(1.0, 2.0, size=shape), rng.uniform(0.5, 2, d)
    layer = torch.nn.RMSNorm(d, eps=1e-5, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(gamma))
    np.testing.assert_allclose(reference.rmsnorm_forward(x, gamma), layer(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("with_bias", [False, True])
def test_folding_batchnorm_into_linear_matches_torch_in_eval_mode(with_bias):
    torch.manual_seed(3)
    linear, bn = torch.nn.Linear(5, 4, bias=with_bias, dtype=torch.float64), torch.nn.BatchNorm1d(4, eps=1e-3,
                                                                                                   dtype=torch.float64)
    with torch.no_grad():  # running statistics and affine parameters far from their initial values
        bn.running_mean.uniform_(-2, 2)
        bn.running_var.uniform_(0.2, 3)
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    x = torch.randn(7, 5, dtype=torch.float64)
    expected = bn.eval()(linear(x)).detach().numpy()
    weight, bias = reference.fold_batchnorm_into_linear(
        linear.weight.detach().numpy(), linear.bias.detach().numpy() if with_bias else None,
        bn.running_mean.numpy(), bn.running_var.numpy(), bn.weight.detach().numpy(), bn.bias.detach().numpy(), eps=1e-3)
    np.testing.assert_allclose(x.numpy() @ weight.T + bias, expected, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Exercise 6: measurements on Linear -> [BatchNorm1d] -> ReLU networks, against torch autograd
# ---------------------------------------------------------------------------------------------

def _ex06_problem(sizes, batch_norm, seed, n=11):
    from bncourse.checks import ex06_why_bn_works as ex06

    rng = np.random.default_rng(seed)
    net = ex06.network(rng, sizes, batch_norm)
    x, y = ex06.classes(rng, n, sizes[0], sizes[-1])
    return net, x, y


def _ex06_torch_model(net, mode="train"):
    """The network as torch layers (batch norm's running statistics frozen), in float64."""
    nn = torch.nn
    layers, hidden = [], len(net["weights"]) - 1
    for i, weight in enumerate(net["weights"]):
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=net["biases"][i] is not None, dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(weight))
            if linear.bias is not None:
                linear.bias.copy_(torch.from_numpy(net["biases"][i]))
        layers.append(linear)
        if i < hidden:
            if net["gammas"]:
                bn = nn.BatchNorm1d(weight.shape[0], momentum=0.0, dtype=torch.float64)
                with torch.no_grad():
                    for name, key in (("weight", "gammas"), ("bias", "betas"), ("running_mean", "running_means"),
                                      ("running_var", "running_vars")):
                        getattr(bn, name).copy_(torch.from_numpy(net[key][i]))
                layers.append(bn)
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).train(mode == "train")


def _ex06_torch_loss_and_gradients(model, x, y):
    loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
    return loss, torch.autograd.grad(loss, list(model.parameters()), create_graph=True)


EX06_NETWORKS = [((5, 7, 6, 3), True), ((4, 6, 6, 6, 2), True), ((5, 7, 6, 3), False), ((3, 4, 2), True)]


@pytest.mark.parametrize("sizes, batch_norm", EX06_NETWORKS)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_ex06_mlp_loss_and_gradients_match_torch_autograd(sizes, batch_norm, mode):
    net, x, y = _ex06_problem(sizes, batch_norm, seed=len(sizes) + 10 * batch_norm)
    loss, grads = reference.mlp_loss_and_gradients(net, x, y, mode=mode)
    model = _ex06_torch_model(net, mode)
    torch_loss, torch_grads = _ex06_torch_loss_and_gradients(model, x, y)
    assert [p.shape for p in model.parameters()] == [np.shape(p) for p in reference.mlp_parameters(net)]
    np.testing.assert_allclose(loss, torch_loss.item(), rtol=1e-12)
    for ours, theirs in zip(grads, torch_grads):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-9, atol=1e-12)
    moved = [p + 0.1 for p in reference.mlp_parameters(net)]
    again = reference.mlp_parameters(reference.mlp_with_parameters(net, moved))
    assert all(np.array_equal(a, b) for a, b in zip(again, moved))


@pytest.mark.parametrize("sizes, batch_norm", EX06_NETWORKS[:3])
def test_ex06_measurements_match_the_same_measurements_in_torch(sizes, batch_norm):
    net, x, y = _ex06_problem(sizes, batch_norm, seed=3)
    layer, lr, steps = len(sizes) - 2, 0.3, [0.05, 0.5]
    model = _ex06_torch_model(net)
    params = list(model.parameters())
    owners = reference.mlp_parameter_layers(net)
    _, grads = _ex06_torch_loss_and_gradients(model, x, y)
    target = reference.mlp_layout(net).index((layer, "weight"))
    with torch.no_grad():
        for p, g, owner in zip(params, grads, owners):
            if owner < layer:
                p -= lr * g
    _, after = _ex06_torch_loss_and_gradients(model, x, y)
    before, after = grads[target].detach(), after[target].detach()
    l2, cosine = reference.gradient_change(net, x, y, layer, lr)
    assert l2 == pytest.approx((before - after).norm().item(), rel=1e-9)
    assert cosine == pytest.approx(torch.nn.functional.cosine_similarity(before.flatten(), after.flatten(), dim=0)
                                   .item(), rel=1e-9)
    losses, changes = reference.loss_along_gradient(net, x, y, steps)
    for eta, loss, change in zip(steps, losses, changes):
        model = _ex06_torch_model(net)
        _, g = _ex06_torch_loss_and_gradients(model, x, y)
        with torch.no_grad():
            for p, gp in zip(model.parameters(), g):
                p -= eta * gp
        there_loss, there = _ex06_torch_loss_and_gradients(model, x, y)
        assert loss == pytest.approx(there_loss.item(), rel=1e-10)
        assert change == pytest.approx(torch.cat([(a - b).flatten() for a, b in zip(g, there)]).norm().item(),
                                       rel=1e-9)
    if batch_norm:
        weight = reference.mlp_parameters(net)[reference.mlp_layout(net).index((1, "weight"))]
        effective, cosine = reference.effective_learning_rate(net, x, y, 1, lr)
        assert effective == pytest.approx(lr / (weight ** 2).sum(), rel=1e-12)
        assert abs(cosine) < 1e-5     # zero but for batch norm's eps
        model = _ex06_torch_model(net)
        _, g = _ex06_torch_loss_and_gradients(model, x, y)
        position = reference.mlp_layout(net).index((1, "weight"))
        expected = torch.nn.functional.cosine_similarity(list(model.parameters())[position].flatten(),
                                                         g[position].flatten(), dim=0).item()
        assert cosine == pytest.approx(expected, rel=1e-6)    # the tiny cosine itself, not only its size


def test_ex06_gradient_change_along_a_short_step_is_the_hessian_times_the_gradient():
    """An independent check of loss_along_gradient: for a small step eta, g(w) - g(w - eta g) = eta H g to first
    order, with H g the Hessian-vector product that torch's double backward computes."""
    net, x, y = _ex06_problem((5, 7, 6, 3), True, seed=8)
    model = _ex06_torch_model(net)
    _, g = _ex06_torch_loss_and_gradients(model, x, y)
    hessian_g = torch.autograd.grad(g, list(model.parameters()), grad_outputs=[gp.detach() for gp in g])
    expected = torch.cat([h.flatten() for h in hessian_g]).norm().item()
    for eta in (1e-4, 1e-5):
        _, (change,) = reference.loss_along_gradient(net, x, y, [eta])
        assert change / eta == pytest.approx(expected, rel=50 * eta)


def test_ex06_scale_invariance_effective_rate_and_sgd_steps():
    """Doubling a scale-invariant weight and quadrupling the rate leaves the effective rate as it was, and the
    small cosine left by batch norm's eps (first order in eps / variance) falls by 4; the reference's SGD steps
    are torch's."""
    net, x, y = _ex06_problem((4, 6, 6, 3), True, seed=5, n=20)
    effective, cosine = reference.effective_learning_rate(net, x, y, 1, 0.1)
    doubled = reference.mlp_with_parameters(net, [2 * p if (i, role) == (1, "weight") else p
                                                  for p, (i, role) in zip(reference.mlp_parameters(net),
                                                                          reference.mlp_layout(net))])
    effective_doubled, cosine_doubled = reference.effective_learning_rate(doubled, x, y, 1, 0.4)
    assert effective_doubled == pytest.approx(effective, rel=1e-12)
    assert abs(cosine) < 1e-5 and cosine / cosine_doubled == pytest.approx(4, rel=1e-3)
    batches = [np.array([0, 3, 5, 7]), np.array([1, 2, 3, 19, 11])]
    model = _ex06_torch_model(net)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2)
    for idx in batches:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(torch.from_numpy(x[idx])), torch.from_numpy(y[idx])).backward()
        optimizer.step()
    for ours, theirs in zip(reference.mlp_parameters(reference.sgd_steps(net, x, y, 0.2, batches)), model.parameters()):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("sizes, batch_norm", EX06_NETWORKS[:3])
def test_ex06_missing_zero_grad_variants_are_what_torch_accumulates(sizes, batch_norm):
    """The reference's ``stale`` and ``accumulate`` options (what a missing zero_grad gives, for the checks'
    named mistakes) against torch code that leaves stale gradients in .grad and never resets them."""
    net, x, y = _ex06_problem(sizes, batch_norm, seed=4)
    rng = np.random.default_rng(1)
    stale = [rng.normal(size=np.shape(p)) for p in reference.mlp_parameters(net)]
    layer, lr, steps = len(sizes) - 2, 0.3, [0.05, 0.5, 0.2]
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def stale_model():
        model = _ex06_torch_model(net)
        for p, s in zip(model.parameters(), stale):
            p.grad = torch.from_numpy(s.copy())
        return model

    model = stale_model()
    target = [m for m in model if isinstance(m, torch.nn.Linear)][layer].weight
    below = [p for m in model[:list(model).index([m for m in model if isinstance(m, torch.nn.Linear)][layer])]
             for p in m.parameters()]
    torch.nn.functional.cross_entropy(model(xt), yt).backward()
    before = target.grad.clone()
    with torch.no_grad():
        for p in below:
            p -= lr * p.grad
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(xt), yt).backward()
    l2, cosine = reference.gradient_change(net, x, y, layer, lr, stale=stale)
    assert l2 == pytest.approx((before - target.grad).norm().item(), rel=1e-9)
    assert cosine == pytest.approx(torch.nn.functional.cosine_similarity(before.flatten(), target.grad.flatten(),
                                                                         dim=0).item(), rel=1e-9)

    for with_stale in (False, True):
        model = stale_model() if with_stale else _ex06_torch_model(net)
        params = list(model.parameters())
        saved = [p.detach().clone() for p in params]
        torch.nn.functional.cross_entropy(model(xt), yt).backward()
        g = [p.grad.clone() for p in params]
        losses, changes = [], []
        for eta in steps:                                  # no zero_grad between step sizes
            with torch.no_grad():
                for p, w, gp in zip(params, saved, g):
                    p.copy_(w - eta * gp)
            loss = torch.nn.functional.cross_entropy(model(xt), yt)
            loss.backward()
            losses.append(loss.item())
            changes.append(torch.cat([(p.grad - gp).flatten() for p, gp in zip(params, g)]).norm().item())
        ours = reference.loss_along_gradient(net, x, y, steps, stale=stale if with_stale else None, accumulate=True)
        np.testing.assert_allclose(ours[0], losses, rtol=1e-10)
        np.testing.assert_allclose(ours[1], changes, rtol=1e-9)

    if batch_norm:
        model = stale_model()
        weight = [m for m in model if isinstance(m, torch.nn.Linear)][1].weight
        torch.nn.functional.cross_entropy(model(xt), yt).backward()
        _, cosine = reference.effective_learning_rate(net, x, y, 1, lr, stale=stale)
        expected = torch.nn.functional.cosine_similarity(weight.detach().flatten(), weight.grad.flatten(), dim=0)
        assert cosine == pytest.approx(expected.item(), rel=1e-9)
