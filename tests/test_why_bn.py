"""The experiment module behind Chapter 6 (``bncourse.experiments.why_bn``): its network variants do what
their docstrings say, its runs record what the chapter reads, and its summaries compute what they claim.
Small networks and few steps: these run in seconds."""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from bncourse.experiments import bn_training, why_bn


@pytest.fixture(scope="module")
def data():
    return bn_training.load_data(torch.device("cpu"))


def _linear_weights(model):
    return [layer.weight.detach().clone() for layer in why_bn.linear_layers(model)]


def test_variants_of_a_batch_norm_network_keep_its_weights_and_put_their_layers_in_place():
    plain = why_bn.network(3, depth=3, width=8)
    noisy = why_bn.network(3, depth=3, width=8, noise=(1.0, 0.5))
    ghost = why_bn.network(3, depth=3, width=8, ghost_size=4)
    dropout = why_bn.network(3, depth=3, width=8, dropout=0.2)
    for variant in (noisy, ghost, dropout):
        assert all(torch.equal(a, b) for a, b in zip(_linear_weights(plain), _linear_weights(variant)))
    kinds = [type(m).__name__ for m in noisy]
    assert kinds[:4] == ["Linear", "BatchNorm1d", "NoiseAfterBatchNorm", "ReLU"] and kinds.count("NoiseAfterBatchNorm") == 3
    assert [type(m).__name__ for m in ghost].count("GhostBatchNorm1d") == 3
    kinds = [type(m).__name__ for m in dropout]
    assert kinds.count("Dropout") == 3 and all(kinds[i - 1] == "ReLU" for i, k in enumerate(kinds) if k == "Dropout")
    assert not any(isinstance(m, nn.BatchNorm1d) for m in why_bn.network(3, batch_norm=False, depth=3, width=8))


def test_init_scale_scales_the_hidden_weights_only_so_batch_norm_computes_the_same_function():
    small, he = why_bn.network(2, depth=3, width=8, init_scale=0.1), why_bn.network(2, depth=3, width=8)
    *hidden_small, out_small = _linear_weights(small)
    *hidden_he, out_he = _linear_weights(he)
    assert all(torch.allclose(a, 0.1 * b) for a, b in zip(hidden_small, hidden_he))
    assert torch.equal(out_small, out_he)
    x = torch.randn(16, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():           # the same function up to batch norm's eps; not without batch norm
        difference = (small.double()(x) - he.double()(x)).abs().max() / he.double()(x).abs().max()
        plain = [why_bn.network(2, depth=3, width=8, batch_norm=False, init_scale=scale).double()(x)
                 for scale in (0.1, 1.0)]
    assert difference < 0.02
    assert (plain[0] - plain[1]).abs().max() > 0.5 * plain[1].abs().max()


def test_noise_after_batch_norm_changes_at_every_step_in_training_and_never_in_eval():
    noise = why_bn.NoiseAfterBatchNorm(5, shift=1.0, spread=0.5, seed=0)
    x = torch.randn(7, 5)
    first, second = noise(x), noise(x)
    assert not torch.allclose(first, second)
    scale = first[1:].sub(first[:1]).div(x[1:] - x[:1])          # one affine map per unit, shared by the rows
    assert torch.allclose(scale, scale[:1].expand_as(scale), atol=1e-4)
    assert ((scale > 0.5 - 1e-4) & (scale < 1.5 + 1e-4)).all()
    assert torch.equal(noise.eval()(x), x)


def test_ghost_batch_norm_normalizes_each_slice_with_its_own_statistics():
    torch.manual_seed(0)
    x = torch.randn(12, 3) * 3 + 1
    ghost, plain = why_bn.GhostBatchNorm1d(3, ghost_size=4), nn.BatchNorm1d(3)
    out = ghost(x)
    for part, expected in zip(out.split(4), x.split(4)):
        assert torch.allclose(part, nn.functional.batch_norm(expected, None, None, training=True), atol=1e-6)
    assert torch.allclose(why_bn.GhostBatchNorm1d(3, ghost_size=12)(x), plain(x), atol=1e-6)
    # the running statistics: one momentum update per slice, worked out here from the slices themselves
    mean, var = torch.zeros(3), torch.ones(3)
    for part in x.split(4):
        mean, var = 0.9 * mean + 0.1 * part.mean(0), 0.9 * var + 0.1 * part.var(0, unbiased=True)
    assert torch.allclose(ghost.running_mean, mean, atol=1e-6) and torch.allclose(ghost.running_var, var, atol=1e-6)
    assert int(ghost.num_batches_tracked) == 3


def test_activation_input_is_the_relu_input_in_train_mode_and_leaves_the_model_alone(data):
    model = why_bn.network(1, depth=3, width=8).eval()
    buffers = {name: value.clone() for name, value in model.named_buffers()}
    probe = data["x_train"][:20]
    recorded = why_bn.activation_input(model, probe, 1)
    assert recorded.shape == (20, 8) and not model.training
    assert all(torch.equal(value, buffers[name]) for name, value in model.named_buffers())
    with torch.no_grad():
        expected = model.train()[:5](probe)          # Linear, BN, ReLU, Linear, BN: the input of the second ReLU
    assert torch.allclose(recorded, expected)


def test_training_with_snapshots_keeps_the_state_before_and_after_every_interval(data):
    model = why_bn.network(0, depth=2, width=8)
    start = {name: value.clone() for name, value in model.state_dict().items()}
    run = why_bn.train_with_snapshots(model, data, steps=20, lr=0.1, seed=0, every=10, probe=data["x_train"][:16],
                                      layer=0)
    assert run["steps"] == [0, 10, 20] and len(run["snapshots"]) == len(run["activation_inputs"]) == 3
    assert all(torch.equal(run["snapshots"][0][name], value) for name, value in start.items())
    assert all(torch.equal(run["snapshots"][-1][name], value) for name, value in model.state_dict().items())
    assert run["curve"]["step"] == [10, 20]
    assert not torch.equal(run["snapshots"][0]["0.weight"], run["snapshots"][1]["0.weight"])
    with pytest.raises(ValueError, match="multiple"):
        why_bn.train_with_snapshots(model, data, steps=15, lr=0.1, seed=0, every=10)


def test_final_training_losses_mark_diverged_runs_and_weight_decay_shrinks_the_weights(data):
    losses = why_bn.final_training_losses([0.05, 1e4], [0, 1], steps=5, batch_norm=False, data=data)
    assert losses.shape == (2, 2) and np.isfinite(losses[0]).all() and np.isnan(losses[1]).all()
    norms = {}
    for decay in (0.0, 0.5):
        model = why_bn.network(0, depth=2, width=8)
        bn_training.train(model, data, steps=20, lr=0.1, batch_size=60, seed=0, eval_every=20, weight_decay=decay)
        norms[decay] = why_bn.linear_layers(model)[0].weight.norm().item()
    assert norms[0.5] < 0.5 * norms[0.0]


def test_generalization_runs_and_dropout_runs_report_per_seed(data):
    small = why_bn.subset(data, 64)
    assert len(small["y_train"]) == 64 and len(small["y_test"]) == len(data["y_test"])
    results = why_bn.generalization_runs({"B = 16": (16, None), "B = 32, ghost 8": (32, 8)}, [0, 1], data=small,
                                         epochs=1, lr=0.1)
    assert results["B = 16"]["steps"] == 4 and results["B = 32, ghost 8"]["steps"] == 2
    for result in results.values():
        assert all(np.shape(result[key]) == (2,) for key in ("train_accuracy", "test_accuracy", "train_loss",
                                                              "test_loss"))
        assert ((0 <= result["test_accuracy"]) & (result["test_accuracy"] <= 1)).all()
    model = why_bn.trained_with_dropout(0.5, 0, data=data, steps=3, lr=0.1, depth=2)
    assert sum(isinstance(m, nn.Dropout) for m in model) == 2


def test_spread_and_growth_per_layer():
    summary = why_bn.spread([1.0, 3.0, np.nan, 2.0])
    assert summary == {"mean": 2.0, "std": 1.0, "min": 1.0, "max": 3.0, "n": 3}
    assert why_bn.spread([4.0])["std"] == 0.0
    assert why_bn.growth_per_layer([2, 5, 9], [1.5 ** d for d in (2, 5, 9)]) == pytest.approx(1.5)
    assert math.isclose(why_bn.growth_per_layer([1, 2], [3.0, 3.0]), 1.0)
