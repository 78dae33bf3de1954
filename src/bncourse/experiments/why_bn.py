"""The experiments behind Chapter 6, "Why batch norm works: the evidence".

The chapter writes the measurements it teaches inline (the change of a layer's gradient, the loss along
the gradient, the effective learning rate, the variance shift of dropout). This module holds what is
not the lesson: the network variants (random noise after each batch norm layer, ghost batches,
dropout), training runs that keep snapshots of the model and the inputs of one layer, and the sweeps
over seeds, learning rates and batch sizes. Everything reuses Chapter 4's data, network and training
loop (:mod:`bncourse.experiments.bn_training`) and runs on the CPU in seconds.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn as nn

from . import bn_training

#: Chapter 4's network: 8 hidden ReLU layers of 100 units, mini-batches of 60 digits.
DEPTH, WIDTH, BATCH = 8, 100, 60


class NoiseAfterBatchNorm(nn.Module):
    """Santurkar et al.'s "noisy batch norm", one version of it: in train mode every unit's output is
    multiplied by a random scale and shifted by a random offset, both drawn afresh at every forward
    pass (so they change at every training step): scale ~ U(1 - spread, 1 + spread) and
    shift ~ U(-shift, shift), one of each per unit, from the module's own generator. In eval mode it
    does nothing."""

    def __init__(self, num_features: int, shift: float, spread: float, seed: int):
        super().__init__()
        self.num_features, self.shift, self.spread = num_features, shift, spread
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, x):
        if not self.training:
            return x
        uniform = torch.rand(2, self.num_features, generator=self.generator, dtype=x.dtype)
        scale = 1 + (2 * uniform[0] - 1) * self.spread
        return x * scale + (2 * uniform[1] - 1) * self.shift


class GhostBatchNorm1d(nn.BatchNorm1d):
    """Batch norm whose train-mode statistics come from consecutive slices of ``ghost_size`` examples
    ("ghost batches", Hoffer et al. 2017) instead of the whole mini-batch. The running statistics are
    updated once per slice (Chapter 7's layer of the same name updates them from the first slice only,
    as data-parallel training keeps rank 0's); eval mode is ordinary batch norm."""

    def __init__(self, num_features: int, ghost_size: int):
        super().__init__(num_features)
        self.ghost_size = ghost_size

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        return torch.cat([super(GhostBatchNorm1d, self).forward(part) for part in x.split(self.ghost_size)])


def network(seed: int, *, batch_norm: bool = True, noise=None, ghost_size=None, dropout: float = 0.0,
            depth: int = DEPTH, width: int = WIDTH, init_scale: float = 1.0) -> nn.Sequential:
    """Chapter 4's MLP (``bn_training.mlp``: Linear -> [BatchNorm1d] -> ReLU per hidden layer, He's
    initialization, a linear output layer) on the digits' 64 pixels, drawn from ``torch.manual_seed(seed)``.
    Variants of a batch norm network keep its weights: ``noise=(shift, spread)`` puts a
    :class:`NoiseAfterBatchNorm` after each batch norm layer, ``ghost_size`` makes each a
    :class:`GhostBatchNorm1d`, and ``dropout`` puts ``nn.Dropout(dropout)`` after each hidden ReLU.
    ``init_scale`` multiplies the hidden layers' weights only (the output layer keeps its scale), so that a
    batch norm network computes the same function at every ``init_scale`` (up to batch norm's eps)."""
    torch.manual_seed(seed)
    model = bn_training.mlp(64, [width] * depth, 10, batch_norm=batch_norm)
    with torch.no_grad():
        for layer in linear_layers(model)[:-1]:
            layer.weight.mul_(init_scale)
    layers = []
    for index, layer in enumerate(model):
        if isinstance(layer, nn.BatchNorm1d) and ghost_size:
            layer = GhostBatchNorm1d(layer.num_features, ghost_size)
        layers.append(layer)
        if isinstance(layer, nn.BatchNorm1d) and noise:
            layers.append(NoiseAfterBatchNorm(layer.num_features, *noise, seed=1000 * seed + index))
        if isinstance(layer, nn.ReLU) and dropout:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def linear_layers(model) -> list:
    """The model's ``nn.Linear`` layers, in order: layer 0 reads the input."""
    return [module for module in model if isinstance(module, nn.Linear)]


def activation_input(model, x, layer: int) -> torch.Tensor:
    """The input of hidden layer ``layer``'s ReLU (0 = the first) when ``model`` runs on ``x`` in training
    conditions (train mode: batch statistics, and a fresh draw of the noise in a noisy network), without
    gradients: the pre-activation, after batch norm when there is one. The running statistics and the
    model's mode are left as they were."""
    seen = {}
    relu = [module for module in model if isinstance(module, nn.ReLU)][layer]
    hook = relu.register_forward_pre_hook(lambda module, inputs: seen.update(x=inputs[0]))
    buffers = {name: value.clone() for name, value in model.named_buffers()}
    was_training = model.training
    try:
        model.train()
        with torch.no_grad():
            model(x)
    finally:
        hook.remove()
        with torch.no_grad():
            for name, value in model.named_buffers():
                value.copy_(buffers[name])
        model.train(was_training)
    return seen["x"].detach().clone()


def train_with_snapshots(model, data, *, steps: int, lr: float, seed: int, every: int, snapshots: bool = True,
                         probe=None, layer=None, batch_size: int = BATCH) -> dict:
    """Chapter 4's training loop (``bn_training.train``: plain SGD, random mini-batches, the test accuracy every
    ``every`` steps), keeping, before the first step and after every ``every`` steps, a copy of the model's state
    (parameters and buffers) when ``snapshots``, and, given a ``probe`` batch and a hidden ``layer``, the input of
    that layer's ReLU on the probe (:func:`activation_input`). Returns ``{"curve", "steps", "snapshots",
    "activation_inputs"}``, where ``steps[i]`` is the step count of the i-th snapshot and activation input."""
    if steps % every:
        raise ValueError(f"steps ({steps}) must be a multiple of every ({every})")
    record = {"steps": [], "snapshots": [], "activation_inputs": []}

    def keep(step):
        record["steps"].append(step)
        if snapshots:
            record["snapshots"].append(copy.deepcopy(model.state_dict()))
        if probe is not None:
            record["activation_inputs"].append(activation_input(model, probe, layer))

    keep(0)
    curve = bn_training.train(model, data, steps=steps, lr=lr, batch_size=batch_size, seed=seed, eval_every=every,
                              on_eval=lambda _: keep(record["steps"][-1] + every))
    return {"curve": curve, **record}


def final_training_losses(lrs, seeds, *, steps: int, batch_norm: bool, data) -> np.ndarray:
    """The training loss (on the whole training set) after ``steps`` steps at each learning rate, for each
    seed: an array ``[lr, seed]``, NaN where the loss stopped being finite (diverged)."""
    losses = np.full((len(lrs), len(seeds)), np.nan)
    for i, lr in enumerate(lrs):
        for j, seed in enumerate(seeds):
            curve = bn_training.train(network(seed, batch_norm=batch_norm), data, steps=steps, lr=lr,
                                      batch_size=BATCH, seed=seed, eval_every=steps)
            if not curve["diverged"] and curve["train_loss"][-1] is not None:
                losses[i, j] = curve["train_loss"][-1]
    return losses


def subset(data, n_train: int) -> dict:
    """The data with only the first ``n_train`` training images (the test set unchanged)."""
    return {**data, "x_train": data["x_train"][:n_train], "y_train": data["y_train"][:n_train]}


def generalization_runs(configs: dict, seeds, *, data, epochs: int, lr: float) -> dict:
    """Train a batch norm network for ``epochs`` passes over ``data``'s training set with each configuration
    ``{name: (batch_size, ghost_size or None)}`` and each seed; return ``{name: {"train_accuracy",
    "test_accuracy", "train_loss", "test_loss"}}``, each an array over seeds, measured in eval mode at the end."""
    n = len(data["y_train"])
    results = {}
    for name, (batch_size, ghost_size) in configs.items():
        rows = []
        for seed in seeds:
            model = network(seed, ghost_size=ghost_size)
            steps = epochs * n // batch_size
            bn_training.train(model, data, steps=steps, lr=lr, batch_size=batch_size, seed=seed, eval_every=steps)
            rows.append([*bn_training._evaluate(model, data, "train"), *bn_training._evaluate(model, data, "test")])
        rows = np.array(rows)
        results[name] = {"train_loss": rows[:, 0], "train_accuracy": rows[:, 1], "test_loss": rows[:, 2],
                         "test_accuracy": rows[:, 3], "steps": epochs * n // batch_size}
    return results


def trained_with_dropout(p: float, seed: int, *, data, steps: int, lr: float, depth: int) -> nn.Sequential:
    """A batch norm network with ``nn.Dropout(p)`` after each hidden ReLU (so before the next layer's batch
    norm), trained with plain SGD for ``steps`` steps."""
    model = network(seed, dropout=p, depth=depth)
    bn_training.train(model, data, steps=steps, lr=lr, batch_size=BATCH, seed=seed, eval_every=steps)
    return model


def spread(values) -> dict:
    """Mean, standard deviation (over runs, ddof=1 when there are several), minimum and maximum of a set of
    runs' values, ignoring NaN; and how many values there were."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "min": float(values.min()), "max": float(values.max()), "n": int(len(values))}


def growth_per_layer(depths, ratios) -> float:
    """The factor by which a ratio grows per layer, from a least-squares fit of log(ratio) against depth."""
    return float(math.exp(np.polyfit(np.asarray(depths, dtype=float), np.log(np.asarray(ratios, dtype=float)), 1)[0]))
