"""Training with and without batch norm: every experiment behind Chapter 4, on whatever device is here.

    python -m bncourse.experiments.bn_training [--size tiny|cpu|gpu] [--out DIR] [--mnist DIR]

runs them all on CUDA when it is available (else on the CPU, with the smaller ``cpu`` sizes unless
told otherwise) and writes one JSON file, ``DIR/bn_training_<size>.json``: the device, the torch,
CUDA and cuDNN versions, the date, the git commit, the exact command and settings, and every curve
and number the chapter plots. The chapter reads these files; nobody types a measured number.

The experiments (``EXPERIMENTS``):

* ``paper_mnist``: Ioffe & Szegedy's Section 4.1 at small scale: 3 hidden layers of 100 sigmoid
  units, batch 60, plain SGD, with and without BN; test accuracy over training and the 15th, 50th and
  85th percentiles of the input to one sigmoid of the last hidden layer.
* ``learning_rate``: a deeper ReLU network at learning rates from x1 to x30, with and without BN:
  curves, final loss, divergence; ``steps_to_target`` (at each one's best rate, and at BN's highest
  stable rate) is read off these curves.
* ``init_scale``: final accuracy over a grid of learning rate x weight scale, with and without BN.
* ``batch_size``: final accuracy over batch sizes, with and without BN.
* ``eval_mode``: a trained BN network tested in eval mode and in train mode, with small and with
  non-i.i.d. (one class per batch) test batches.
* ``timing``: training throughput of a small CNN with and without BN; forward and backward time of
  ``nn.BatchNorm2d`` vs the course's hand-written batch norm in composite torch ops vs
  ``torch.compile`` of it; inference time of conv + BN vs the conv with BN folded in.

Data: scikit-learn's digits (1,797 real 8x8 images, shipped with the package) unless ``--mnist`` names a
folder with MNIST's four idx files (``train-images-idx3-ubyte[.gz]`` and so on); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from bncourse.experiments.common import RESULTS_DIR, environment, median_ms, progress_bar

SCHEMA_VERSION = 1
EXPERIMENTS = ("paper_mnist", "learning_rate", "init_scale", "batch_size", "eval_mode", "timing")

# What Ioffe & Szegedy (2015) report, shown beside our numbers in Chapter 4. These are the paper's
# figures, not measurements of ours: Section 4.1 (the MNIST network) and Section 4.2 with Figure 3
# (Inception on ImageNet: steps to the baseline's best accuracy).
PAPER = {
    "mnist": {"hidden": [100, 100, 100], "activation": "sigmoid", "batch_size": 60, "steps": 50_000,
              "train_images": 60_000},
    "inception_best_accuracy": 0.722,
    "inception_steps_to_baseline_accuracy": {"Inception (no BN)": 31.0e6, "BN-x5": 2.1e6},
    "headline_speedup": 14,
}

# Sizes: "tiny" is the test suite's (seconds), "cpu" the committed CPU run (minutes on 2 cores),
# "gpu" the recorded GPU run. Every setting ends up in the JSON file.
SIZES = {
    "tiny": {
        "paper_mnist": {"steps": 60, "eval_every": 20, "batch_size": 60, "seeds": [0], "lr": 0.5},
        "learning_rate": {"depth": 4, "width": 32, "steps": 40, "eval_every": 20, "batch_size": 60, "seeds": [0],
                          "base_lr": 0.02, "multipliers": [1, 30], "target_accuracy": 0.5},
        "init_scale": {"depth": 4, "width": 32, "steps": 30, "batch_size": 60, "seeds": [0], "lrs": [0.01, 0.1],
                       "scales": [0.5, 2.0]},
        "batch_size": {"sizes": [4, 32], "epochs": 1, "lr_per_32": 0.1, "seeds": [0]},
        "eval_mode": {"steps": 60, "batch_size": 32, "lr": 0.1, "test_batch_sizes": [2, 32], "seeds": [0]},
        "timing": {"repeats": 3, "warmup": 1, "cnn_batch": 8, "cnn_width": 8, "image": 16,
                   "bn_shape": [8, 8, 8, 8], "compile": False},
    },
    "cpu": {
        "paper_mnist": {"steps": 3000, "eval_every": 100, "batch_size": 60, "seeds": [0, 1, 2], "lr": 0.5},
        "learning_rate": {"depth": 8, "width": 100, "steps": 1500, "eval_every": 10, "batch_size": 60,
                          "seeds": [0, 1, 2], "base_lr": 0.01, "multipliers": [1, 2, 5, 10, 20, 30],
                          "target_accuracy": 0.9},
        "init_scale": {"depth": 8, "width": 100, "steps": 600, "batch_size": 60, "seeds": [0],
                       "lrs": [0.003, 0.01, 0.03, 0.1, 0.3], "scales": [0.1, 0.3, 1.0, 3.0, 10.0]},
        "batch_size": {"sizes": [2, 4, 8, 16, 32, 64, 128, 256], "epochs": 8, "lr_per_32": 0.1, "seeds": [0, 1]},
        "eval_mode": {"steps": 1500, "batch_size": 64, "lr": 0.1, "test_batch_sizes": [2, 4, 16, 64],
                      "seeds": [0, 1, 2]},
        "timing": {"repeats": 30, "warmup": 5, "cnn_batch": 64, "cnn_width": 32, "image": 32,
                   "bn_shape": [64, 32, 32, 32], "compile": True},
    },
    # The GPU run, sized to leave time for bn_bandwidth's GPU run within 8 minutes on one H100/H200
    # (benchmarks/gpu_run.sh runs both). Not yet measured on a GPU; the estimate, made on the 2-core CPU:
    # the small MLPs are launch-bound on a GPU, so a step costs what the host spends dispatching its
    # ops. Measured here with the same code at width 4 and batch 4 (compute negligible, one thread):
    # 0.65 ms per step for the 8-layer network with BN (136 torch ops per step), 0.40 ms without (91),
    # 0.34 and 0.23 ms for the 3-layer one (63 and 46 ops); one evaluation (training and test set)
    # 0.78 ms. Assuming that a GPU step costs at most twice that (a kernel launch per op on top of the
    # same dispatch), 1.05 ms per 8-layer step, 0.57 ms per 3-layer step and 1 ms per evaluation,
    # planned_work("gpu") counts: paper_mnist 30,000 steps (3 layers) and 300 evaluations, 18 s;
    # learning_rate 90,000 steps (8 layers) and 9,000 evaluations, 104 s; init_scale 60,000 steps
    # (8 layers), 63 s; batch_size 68,688 steps (3 layers), 39 s; eval_mode 7,500 steps, 5 s; timing,
    # mostly torch.compile's compilation, at most 45 s: about 4.6 minutes at most, half that if a GPU
    # step costs no more than the dispatch does here. The settings are the cpu run's, with more seeds.
    "gpu": {
        "paper_mnist": {"steps": 3000, "eval_every": 100, "batch_size": 60, "seeds": [0, 1, 2, 3, 4], "lr": 0.5},
        "learning_rate": {"depth": 8, "width": 100, "steps": 1500, "eval_every": 10, "batch_size": 60,
                          "seeds": [0, 1, 2, 3, 4], "base_lr": 0.01, "multipliers": [1, 2, 5, 10, 20, 30],
                          "target_accuracy": 0.9},
        "init_scale": {"depth": 8, "width": 100, "steps": 600, "batch_size": 60, "seeds": [0, 1],
                       "lrs": [0.003, 0.01, 0.03, 0.1, 0.3], "scales": [0.1, 0.3, 1.0, 3.0, 10.0]},
        "batch_size": {"sizes": [2, 4, 8, 16, 32, 64, 128, 256], "epochs": 8, "lr_per_32": 0.1, "seeds": [0, 1, 2]},
        "eval_mode": {"steps": 1500, "batch_size": 64, "lr": 0.1, "test_batch_sizes": [2, 4, 16, 64],
                      "seeds": [0, 1, 2, 3, 4]},
        "timing": {"repeats": 100, "warmup": 20, "cnn_batch": 256, "cnn_width": 64, "image": 32,
                   "bn_shape": [256, 64, 56, 56], "compile": True},
    },
}

TRAINING_SET_SIZE = 1437    # scikit-learn's digits: 80% of 1,797 images (load_data)


def planned_work(size, n_train=TRAINING_SET_SIZE) -> dict:
    """Training runs, SGD steps and evaluations (the training and the test set, once each) that a size's
    experiments do, from its settings alone (the timing experiment aside): what the GPU size is
    estimated from."""
    config = SIZES[size]

    def evaluations(steps, every):
        return steps // every + (steps % every != 0)

    work = {}
    for name in ("paper_mnist", "learning_rate"):
        cfg = config[name]
        runs = 2 * len(cfg["seeds"]) * len(cfg.get("multipliers", [1]))
        work[name] = {"runs": runs, "steps": runs * cfg["steps"],
                      "evaluations": runs * evaluations(cfg["steps"], cfg["eval_every"])}
    cfg = config["init_scale"]
    runs = 2 * len(cfg["lrs"]) * len(cfg["scales"]) * len(cfg["seeds"])
    work["init_scale"] = {"runs": runs, "steps": runs * cfg["steps"], "evaluations": runs}
    cfg = config["batch_size"]
    runs = 2 * len(cfg["sizes"]) * len(cfg["seeds"])
    steps = 2 * len(cfg["seeds"]) * sum(max(1, cfg["epochs"] * n_train // b) for b in cfg["sizes"])
    work["batch_size"] = {"runs": runs, "steps": steps, "evaluations": runs}
    cfg = config["eval_mode"]
    work["eval_mode"] = {"runs": len(cfg["seeds"]), "steps": len(cfg["seeds"]) * cfg["steps"],
                         "evaluations": len(cfg["seeds"])}
    return work



# ---------------------------------------------------------------------------------------------
# Data and models
# ---------------------------------------------------------------------------------------------

def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def _find(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{folder} has no {stem}[.gz]; MNIST's four idx files are expected there")


def load_data(device, mnist_dir=None) -> dict:
    """Train and test tensors on ``device``; pixels scaled to [0, 1] and flattened."""
    if mnist_dir:
        folder = Path(mnist_dir)
        parts = [_read_idx(_find(folder, stem)) for stem in
                 ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")]
        x_train, y_train, x_test, y_test = parts
        name = f"MNIST from local idx files ({len(y_train):,} training and {len(y_test):,} test images, 28x28)"
        x_train, x_test = x_train.reshape(len(x_train), -1) / 255.0, x_test.reshape(len(x_test), -1) / 255.0
    else:
        from sklearn.datasets import load_digits

        digits = load_digits()
        order = np.random.default_rng(0).permutation(len(digits.target))
        split = int(0.8 * len(order))
        x, y = digits.data / 16.0, digits.target
        x_train, y_train, x_test, y_test = x[order[:split]], y[order[:split]], x[order[split:]], y[order[split:]]
        name = f"scikit-learn digits ({len(y_train)} training and {len(y_test)} test images, 8x8)"

    def tensor(a, dtype):
        return torch.tensor(np.asarray(a), dtype=dtype, device=device)

    return {"x_train": tensor(x_train, torch.float32), "y_train": tensor(y_train, torch.long),
            "x_test": tensor(x_test, torch.float32), "y_test": tensor(y_test, torch.long), "name": name}


def mlp(n_in, hidden, n_out, *, activation=nn.ReLU, batch_norm=False, init_scale=1.0, init_gain=None):
    """Linear -> [BN] -> activation per hidden layer (no bias before BN), then a linear output layer.
    Weights are drawn from N(0, (init_scale * gain)^2 / fan_in): He's gain sqrt(2) for ReLU, 1 otherwise."""
    gain = init_gain if init_gain is not None else (math.sqrt(2) if activation is nn.ReLU else 1.0)
    layers, fan_in = [], n_in
    for width in hidden:
        layers.append(nn.Linear(fan_in, width, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(activation())
        fan_in = width
    layers.append(nn.Linear(fan_in, n_out))
    model = nn.Sequential(*layers)
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, nn.Linear):
                scale = gain if layer is not layers[-1] else 1.0
                layer.weight.normal_(0.0, init_scale * scale / math.sqrt(layer.in_features))
                if layer.bias is not None:
                    layer.bias.zero_()
    return model


def _evaluate(model, data, split="test"):
    model.eval()
    with torch.no_grad():
        logits = model(data[f"x_{split}"])
        loss = F.cross_entropy(logits, data[f"y_{split}"]).item()
        accuracy = (logits.argmax(1) == data[f"y_{split}"]).float().mean().item()
    return loss, accuracy


def train(model, data, *, steps, lr, batch_size, seed, eval_every, momentum=0.0, on_eval=None, weight_decay=0.0):
    """Plain SGD on random mini-batches; every ``eval_every`` steps the training loss and test accuracy
    (eval mode). Stops early, marked diverged, when the training loss is no longer finite. ``weight_decay``
    is SGD's L2 penalty (Chapter 6 uses it; 0 elsewhere)."""
    device = data["x_train"].device
    model.to(device)
    sampler = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    curve = {"step": [], "train_loss": [], "test_accuracy": [], "diverged": False}
    n = len(data["y_train"])
    for step in range(1, steps + 1):
        model.train()
        idx = torch.randint(0, n, (batch_size,), generator=sampler).to(device)
        loss = F.cross_entropy(model(data["x_train"][idx]), data["y_train"][idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % eval_every == 0 or step == steps:
            train_loss, _ = _evaluate(model, data, "train")
            _, accuracy = _evaluate(model, data, "test")
            curve["step"].append(step)
            curve["train_loss"].append(train_loss if math.isfinite(train_loss) else None)
            curve["test_accuracy"].append(accuracy)
            if on_eval:
                on_eval(model)
            if not math.isfinite(train_loss):
                curve["diverged"] = True
                break
    return curve


def train_epochs(model, x, y, *, batch_size, lr, epochs, seed, momentum=0.9, drop_last=True, before_step=None):
    """SGD with momentum over ``epochs`` shuffled passes through ``(x, y)`` (the shuffles drawn from
    ``seed``), in train mode. ``drop_last`` skips each pass's last, partial batch (a batch of one breaks
    batch norm); ``before_step(model, fraction of the steps done)`` runs before every step (a schedule, say).
    Chapters 5 and 7 train with it; the experiments above train on random batches for a number of steps."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    shuffles = torch.Generator().manual_seed(seed)
    per_epoch = len(y) // batch_size if drop_last else -(-len(y) // batch_size)
    total, step = epochs * per_epoch, 0
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(y), generator=shuffles).split(batch_size):
            if drop_last and len(idx) < batch_size:
                continue
            if before_step:
                before_step(model, step / total)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
    return model


def median_steps_to(runs, target):
    """Steps to ``target`` for each seed's curve, and their median (None unless every seed got there)."""
    reached = [steps_to(run, target) for run in runs]
    return reached, (None if None in reached else float(np.median(reached)))


def steps_to(curve, target):
    """The first recorded step at which the test accuracy reached ``target``, or None."""
    for step, accuracy in zip(curve["step"], curve["test_accuracy"]):
        if accuracy >= target:
            return step
    return None


# ---------------------------------------------------------------------------------------------
# The experiments
# ---------------------------------------------------------------------------------------------

def run_paper_mnist(data, cfg, progress):
    """Section 4.1 of Ioffe & Szegedy: 3 x 100 sigmoid units, batch 60, SGD; one sigmoid's input percentiles."""
    n_in = data["x_train"].shape[1]
    runs = {}
    for batch_norm in (False, True):
        name = "with BN" if batch_norm else "without BN"
        runs[name] = []
        for seed in cfg["seeds"]:
            torch.manual_seed(seed)
            model = mlp(n_in, [100, 100, 100], 10, activation=nn.Sigmoid, batch_norm=batch_norm)
            last_sigmoid = [m for m in model if isinstance(m, nn.Sigmoid)][-1]
            captured, percentiles = {}, {"15": [], "50": [], "85": []}
            last_sigmoid.register_forward_pre_hook(lambda module, inputs: captured.update(z=inputs[0][:, 0].detach()))

            def record(model):
                _evaluate(model, data, "test")          # fills captured["z"] with the test set's inputs
                for q in percentiles:
                    percentiles[q].append(torch.quantile(captured["z"].float().cpu(), int(q) / 100).item())

            curve = train(model, data, steps=cfg["steps"], lr=cfg["lr"], batch_size=cfg["batch_size"], seed=seed,
                          eval_every=cfg["eval_every"], on_eval=record)
            runs[name].append({"seed": seed, **curve, "sigmoid_input_percentiles": percentiles})
            progress()
    return {"runs": runs, "unit": "input to unit 0 of the last hidden layer's sigmoid, on the test set"}


def run_learning_rate(data, cfg, progress):
    n_in = data["x_train"].shape[1]
    runs = {}
    for batch_norm in (False, True):
        for multiplier in cfg["multipliers"]:
            key = f"{'with' if batch_norm else 'without'} BN, x{multiplier}"
            runs[key] = []
            for seed in cfg["seeds"]:
                torch.manual_seed(seed)
                model = mlp(n_in, [cfg["width"]] * cfg["depth"], 10, batch_norm=batch_norm)
                curve = train(model, data, steps=cfg["steps"], lr=cfg["base_lr"] * multiplier,
                              batch_size=cfg["batch_size"],
                              seed=seed, eval_every=cfg["eval_every"])
                runs[key].append({"seed": seed, "batch_norm": batch_norm, "multiplier": multiplier, **curve})
                progress()
    return {"runs": runs}


def summarize_steps_to_target(learning_rate_result, cfg):
    """Steps to the target accuracy (median over seeds; None if not every seed reached it) per setting,
    each one's best learning rate, and BN's highest stable one."""
    target = cfg["target_accuracy"]
    per_setting = {}
    for key, runs in learning_rate_result["runs"].items():
        reached, median = median_steps_to(runs, target)
        per_setting[key] = {
            "batch_norm": runs[0]["batch_norm"], "multiplier": runs[0]["multiplier"],
            "steps_per_seed": reached, "diverged_seeds": sum(run["diverged"] for run in runs), "median_steps": median,
        }

    def best(batch_norm):
        candidates = [(v["median_steps"], k) for k, v in per_setting.items()   # a rate that diverges later is not "best"
                      if v["batch_norm"] == batch_norm and v["median_steps"] is not None and not v["diverged_seeds"]]
        return min(candidates)[1] if candidates else None

    stable_bn = [v["multiplier"] for v in per_setting.values()
                 if v["batch_norm"] and v["diverged_seeds"] == 0 and v["median_steps"] is not None]
    highest = f"with BN, x{max(stable_bn)}" if stable_bn else None
    best_without, best_with = best(False), best(True)

    def ratio(a, b):
        if a is None or b is None:
            return None
        return per_setting[a]["median_steps"] / per_setting[b]["median_steps"]

    return {"target_accuracy": target, "per_setting": per_setting, "best_without_bn": best_without,
            "best_with_bn": best_with, "highest_stable_with_bn": highest,
            "ratio_best": ratio(best_without, best_with), "ratio_highest_stable": ratio(best_without, highest),
            "eval_every": cfg["eval_every"], "to_baseline_accuracy": steps_to_baseline_accuracy(learning_rate_result)}


def steps_to_baseline_accuracy(learning_rate_result):
    """The paper's own measure (Ioffe & Szegedy, Figure 3: steps to the 72.2% that Inception reached at best):
    the accuracy that the best network without BN reaches with every seed, the steps it takes to get there, and
    the fewest steps any BN setting takes to reach the same accuracy (medians over seeds; settings with a
    diverged seed are left out). Ratio None when no BN setting gets there with every seed."""
    runs = learning_rate_result["runs"]
    stable = {key: seeds for key, seeds in runs.items() if not any(run["diverged"] for run in seeds)}

    def reached_by_all(key):   # the best accuracy every seed of this setting reached
        return min(max(run["test_accuracy"]) for run in stable[key])

    plain = [key for key in stable if not stable[key][0]["batch_norm"]]
    if not plain:
        return {"baseline": None, "accuracy": None, "baseline_steps": None, "with_bn": None, "bn_steps": None,
                "ratio": None}
    baseline = max(plain, key=reached_by_all)
    accuracy = reached_by_all(baseline)
    bn_steps = {key: median_steps_to(stable[key], accuracy)[1] for key in stable if stable[key][0]["batch_norm"]}
    bn_steps = {key: steps for key, steps in bn_steps.items() if steps is not None}
    fastest = min(bn_steps, key=bn_steps.get) if bn_steps else None
    baseline_steps = median_steps_to(stable[baseline], accuracy)[1]
    return {"baseline": baseline, "accuracy": accuracy, "baseline_steps": baseline_steps, "with_bn": fastest,
            "bn_steps": bn_steps.get(fastest), "ratio": baseline_steps / bn_steps[fastest] if fastest else None}


def run_init_scale(data, cfg, progress):
    n_in = data["x_train"].shape[1]
    grid = {}
    for batch_norm in (False, True):
        accuracy = np.full((len(cfg["lrs"]), len(cfg["scales"]), len(cfg["seeds"])), np.nan)
        for i, lr in enumerate(cfg["lrs"]):
            for j, scale in enumerate(cfg["scales"]):
                for k, seed in enumerate(cfg["seeds"]):
                    torch.manual_seed(seed)
                    model = mlp(n_in, [cfg["width"]] * cfg["depth"], 10, batch_norm=batch_norm, init_scale=scale)
                    curve = train(model, data, steps=cfg["steps"], lr=lr, batch_size=cfg["batch_size"], seed=seed,
                                  eval_every=cfg["steps"])
                    accuracy[i, j, k] = np.nan if curve["diverged"] else curve["test_accuracy"][-1]
                    progress()
        grid["with BN" if batch_norm else "without BN"] = [[[None if np.isnan(v) else float(v) for v in cell]
                                                            for cell in row] for row in accuracy]
    return {"lrs": cfg["lrs"], "scales": cfg["scales"], "final_test_accuracy": grid,
            "layout": "[lr index][scale index][seed index]; None where training diverged"}


def run_batch_size(data, cfg, progress):
    n_in, n = data["x_train"].shape[1], len(data["y_train"])
    results = {}
    for batch_norm in (False, True):
        name = "with BN" if batch_norm else "without BN"
        results[name] = {}
        for size in cfg["sizes"]:
            finals = []
            for seed in cfg["seeds"]:
                torch.manual_seed(seed)
                model = mlp(n_in, [100, 100, 100], 10, batch_norm=batch_norm)
                steps = max(1, cfg["epochs"] * n // size)
                curve = train(model, data, steps=steps, lr=cfg["lr_per_32"] * size / 32, batch_size=size, seed=seed,
                              eval_every=steps)
                finals.append(None if curve["diverged"] else curve["test_accuracy"][-1])
                progress()
            results[name][str(size)] = finals
    return {"final_test_accuracy": results,
            "steps": {str(size): max(1, cfg["epochs"] * n // size) for size in cfg["sizes"]},
            "learning_rate": {str(size): cfg["lr_per_32"] * size / 32 for size in cfg["sizes"]},
            "rule": "steps = epochs x training-set size / batch size; learning rate = lr_per_32 x batch size / 32"}


def _train_mode_accuracy(model, x, y, batch_size):
    """Accuracy with the batch statistics of each test batch (a copy of the model, in train mode)."""
    model = copy.deepcopy(model).train()
    usable = len(y) // batch_size * batch_size
    right = 0
    with torch.no_grad():
        for start in range(0, usable, batch_size):
            right += (model(x[start:start + batch_size]).argmax(1) == y[start:start + batch_size]).sum().item()
    return right / usable


def run_eval_mode(data, cfg, progress):
    n_in = data["x_train"].shape[1]
    x, y = data["x_test"], data["y_test"]
    by_class = torch.argsort(y, stable=True)             # non-i.i.d.: consecutive test examples share a class
    results = []
    for seed in cfg["seeds"]:
        torch.manual_seed(seed)
        model = mlp(n_in, [100, 100, 100], 10, batch_norm=True)
        train(model, data, steps=cfg["steps"], lr=cfg["lr"], batch_size=cfg["batch_size"], seed=seed,
              eval_every=cfg["steps"])
        shuffled = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed)).to(y.device)
        row = {"seed": seed, "eval_mode": _evaluate(model, data, "test")[1],
               "train_mode_iid": {str(b): _train_mode_accuracy(model, x[shuffled], y[shuffled], b)
                                  for b in cfg["test_batch_sizes"]},
               "train_mode_one_class_per_batch": {str(b): _train_mode_accuracy(model, x[by_class], y[by_class], b)
                                                  for b in cfg["test_batch_sizes"]}}
        results.append(row)
        progress()
    return {"runs": results, "training_batch_size": cfg["batch_size"]}


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------

def handwritten_batchnorm(x, gamma, beta, eps=1e-5):
    """The course's batch norm (Chapters 2-3) for (N, C, H, W), in composite torch ops; autograd differentiates it."""
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), keepdim=True, unbiased=False)
    return gamma.view(1, -1, 1, 1) * (x - mean) / torch.sqrt(var + eps) + beta.view(1, -1, 1, 1)


def small_cnn(channels, batch_norm):
    def block(c_in, c_out, stride):
        layers = [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=not batch_norm)]
        return layers + ([nn.BatchNorm2d(c_out)] if batch_norm else []) + [nn.ReLU()]
    return nn.Sequential(*block(3, channels, 1), *block(channels, channels, 1), *block(channels, 2 * channels, 2),
                         *block(2 * channels, 2 * channels, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(2 * channels, 10))


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv that computes conv followed by BN in eval mode (running statistics)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=True)
    folded = folded.to(conv.weight.device)
    with torch.no_grad():
        folded.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        folded.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return folded


def run_timing(device, cfg, progress):
    repeats, warmup = cfg["repeats"], cfg["warmup"]
    generator = torch.Generator().manual_seed(0)
    result = {}

    # Training throughput of a small CNN, with and without BN.
    images = torch.randn(cfg["cnn_batch"], 3, cfg["image"], cfg["image"], generator=generator).to(device)
    targets = torch.randint(0, 10, (cfg["cnn_batch"],), generator=generator).to(device)
    throughput = {}
    for batch_norm in (False, True):
        torch.manual_seed(0)
        model = small_cnn(cfg["cnn_width"], batch_norm).to(device).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step():
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(images), targets).backward()
            optimizer.step()

        timing = median_ms(step, device, repeats, warmup)
        throughput["with BN" if batch_norm else "without BN"] = {**timing,
                                                                 "samples_per_s": cfg["cnn_batch"] / timing["median_ms"] * 1000}
        progress()
    result["cnn_training_throughput"] = {"batch": cfg["cnn_batch"], "width": cfg["cnn_width"], "image": cfg["image"],
                                         "runs": throughput}

    # The BN layer's own cost: forward, and forward + backward.
    shape = cfg["bn_shape"]
    x = torch.randn(*shape, generator=generator).to(device).requires_grad_()
    upstream = torch.randn(*shape, generator=generator).to(device)
    layer = nn.BatchNorm2d(shape[1]).to(device).train()
    gamma = torch.ones(shape[1], device=device, requires_grad=True)
    beta = torch.zeros(shape[1], device=device, requires_grad=True)
    variants = {"nn.BatchNorm2d": layer, "hand-written (composite ops)": lambda v: handwritten_batchnorm(v, gamma, beta)}
    compile_error = None
    if cfg["compile"]:
        try:
            compiled = torch.compile(handwritten_batchnorm)
            compiled(x, gamma, beta).backward(upstream)     # compile now, so the error (if any) is caught here
            variants["hand-written, torch.compile"] = lambda v: compiled(v, gamma, beta)
        except Exception as error:  # noqa: BLE001 - no compiler toolchain, for example: recorded, not fatal
            compile_error = f"{type(error).__name__}: {str(error)[:300]}"
    layer_cost = {}
    for name, forward in variants.items():
        def forward_only(forward=forward):
            with torch.no_grad():
                forward(x)

        def forward_backward(forward=forward):
            forward(x).backward(upstream)

        layer_cost[name] = {"forward": median_ms(forward_only, device, repeats, warmup),
                            "forward_backward": median_ms(forward_backward, device, repeats, warmup)}
        progress()
    result["bn_layer_cost"] = {"shape": shape, "variants": layer_cost, "compile_error": compile_error}

    # Inference: conv + BN (eval mode) against the conv with BN folded in.
    torch.manual_seed(0)
    conv = nn.Conv2d(shape[1], shape[1], 3, padding=1, bias=False).to(device)
    bn = nn.BatchNorm2d(shape[1]).to(device)
    with torch.no_grad():                                  # give BN non-trivial running statistics
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    conv_bn = nn.Sequential(conv, bn).eval()
    folded = fold_batchnorm(conv, bn).eval()
    inputs = x.detach()
    with torch.no_grad():
        difference = (conv_bn(inputs) - folded(inputs)).abs().max().item()
    inference = {}
    for name, model in (("conv + BN", conv_bn), ("folded conv", folded)):
        def run(model=model):
            with torch.no_grad():
                model(inputs)
        inference[name] = median_ms(run, device, repeats, warmup)
        progress()
    result["folding"] = {"shape": shape, "max_abs_difference": difference, "runs": inference}
    return result


# ---------------------------------------------------------------------------------------------
# Running everything, and the file it writes
# ---------------------------------------------------------------------------------------------

def run_all(size: str, device, mnist_dir=None, only=None, show_progress=True) -> dict:
    config = SIZES[size]
    recorded_environment = environment(device)   # before the runs: the commit and date they started from
    chosen = [name for name in EXPERIMENTS if not only or name in only]
    data = load_data(device, mnist_dir)
    counts = {name: work["runs"] for name, work in planned_work(size).items()} | {"timing": 7}   # the bar's steps
    bar = progress_bar(sum(counts[name] for name in chosen), show_progress)
    experiments, seconds = {}, {}
    for name in chosen:
        bar.set_description(name)
        started = time.perf_counter()
        if name == "timing":
            experiments[name] = run_timing(device, config[name], bar.update)
        else:
            experiments[name] = globals()[f"run_{name}"](data, config[name], bar.update)
        seconds[name] = round(time.perf_counter() - started, 1)
    bar.close()
    if "learning_rate" in experiments:
        experiments["steps_to_target"] = summarize_steps_to_target(experiments["learning_rate"], config["learning_rate"])
    return {"schema_version": SCHEMA_VERSION, "size": size, "environment": recorded_environment,
            "command": " ".join(["python -m bncourse.experiments.bn_training", *sys.argv[1:]]),
            "data": data["name"], "config": {name: config[name] for name in chosen},
            "seconds": seconds, "experiments": experiments}


def validate(result: dict) -> None:
    """Raise ValueError naming the first missing or malformed part of a result file."""
    def need(condition, what):
        if not condition:
            raise ValueError(f"bn_training result: {what}")

    need(isinstance(result, dict) and result.get("schema_version") == SCHEMA_VERSION,
         f"schema_version should be {SCHEMA_VERSION}")
    env = result.get("environment", {})
    for key in ("device", "device_type", "torch", "cuda", "cudnn", "date", "git_commit"):
        need(key in env, f"environment.{key} is missing")
    need(isinstance(result.get("command"), str) and "bncourse.experiments.bn_training" in result["command"],
         "command is missing")
    need(isinstance(result.get("config"), dict) and result["config"], "config is missing")
    config = result["config"]
    experiments = result.get("experiments", {})
    for name in config:
        need(name in experiments, f"experiments.{name} is missing although it is configured")
    if "paper_mnist" in experiments:
        need(set(experiments["paper_mnist"].get("runs", {})) == {"with BN", "without BN"},
             "paper_mnist: runs with and without BN")
    for name, runs in experiments.get("paper_mnist", {}).get("runs", {}).items():
        need(len(runs) == len(config["paper_mnist"]["seeds"]) and len({len(run["step"]) for run in runs}) == 1,
             f"paper_mnist {name}: one curve per seed, all of one length")
        for run in runs:
            need(len(run["step"]) == len(run["test_accuracy"]) == len(run["sigmoid_input_percentiles"]["50"]),
                 f"paper_mnist {name}: curves of different lengths")
            need(all(0 <= a <= 1 for a in run["test_accuracy"]), f"paper_mnist {name}: accuracy outside [0, 1]")
    if env.get("device_type") == "cuda":
        need(env.get("cuda") and env.get("cudnn"), "a CUDA run must record its CUDA and cuDNN versions")

    def accuracies(values, what):
        need(all(v is None or 0 <= v <= 1 for v in values), f"{what}: accuracy outside [0, 1]")

    if "learning_rate" in experiments:
        cfg = config["learning_rate"]
        runs = experiments["learning_rate"]["runs"]
        for name in ("without BN", "with BN"):
            for m in cfg["multipliers"]:
                key = f"{name}, x{m}"
                need(key in runs and len(runs[key]) == len(cfg["seeds"]), f"learning_rate: runs of {key!r} missing")
                for run in runs[key]:
                    need(len(run["step"]) == len(run["test_accuracy"]) == len(run["train_loss"]),
                         f"learning_rate {key}: curves of different lengths")
                    accuracies(run["test_accuracy"], f"learning_rate {key}")
        need("steps_to_target" in experiments, "steps_to_target is missing")
        summary = experiments["steps_to_target"]
        need(set(summary["per_setting"]) == set(runs), "steps_to_target: settings differ from the sweep's")
        for key in ("best_without_bn", "best_with_bn", "highest_stable_with_bn", "ratio_best", "ratio_highest_stable",
                    "eval_every", "to_baseline_accuracy"):
            need(key in summary, f"steps_to_target.{key} is missing")
    if "init_scale" in experiments:
        cfg, grid = config["init_scale"], experiments["init_scale"]["final_test_accuracy"]
        for name in ("without BN", "with BN"):
            need(len(grid[name]) == len(cfg["lrs"]) and all(
                len(row) == len(cfg["scales"]) and all(len(cell) == len(cfg["seeds"]) for cell in row)
                for row in grid[name]), f"init_scale {name}: the grid is not lrs x scales x seeds")
            accuracies([v for row in grid[name] for cell in row for v in cell], f"init_scale {name}")
    if "batch_size" in experiments:
        cfg, finals = config["batch_size"], experiments["batch_size"]["final_test_accuracy"]
        for name in ("without BN", "with BN"):
            need([int(b) for b in finals[name]] == cfg["sizes"] and all(
                len(v) == len(cfg["seeds"]) for v in finals[name].values()), f"batch_size {name}: sizes x seeds")
            accuracies([v for values in finals[name].values() for v in values], f"batch_size {name}")
        for key in ("steps", "learning_rate"):
            entries = experiments["batch_size"].get(key)
            need(isinstance(entries, dict) and [int(b) for b in entries] == cfg["sizes"],
                 f"batch_size.{key}: one entry per batch size")
    if "eval_mode" in experiments:
        cfg, runs = config["eval_mode"], experiments["eval_mode"]["runs"]
        need(len(runs) == len(cfg["seeds"]), "eval_mode: one run per seed")
        for run in runs:
            for key in ("train_mode_iid", "train_mode_one_class_per_batch"):
                need([int(b) for b in run[key]] == cfg["test_batch_sizes"], f"eval_mode.{key}: test batch sizes")
                accuracies(run[key].values(), f"eval_mode.{key}")
            accuracies([run["eval_mode"]], "eval_mode")
    timing = experiments.get("timing")
    if timing:
        for key in ("cnn_training_throughput", "bn_layer_cost", "folding"):
            need(key in timing, f"timing.{key} is missing")
        for name in ("nn.BatchNorm2d", "hand-written (composite ops)"):
            need(name in timing["bn_layer_cost"]["variants"], f"timing.bn_layer_cost: {name} is missing")
        need(set(timing["cnn_training_throughput"]["runs"]) == {"without BN", "with BN"},
             "timing.cnn_training_throughput: runs with and without BN")
        need(set(timing["folding"]["runs"]) == {"conv + BN", "folded conv"}, "timing.folding: both runs")
        need(timing["folding"]["max_abs_difference"] < 1e-3, "folding changed the output")


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), help="default: gpu on CUDA, cpu otherwise")
    parser.add_argument("--out", default=str(RESULTS_DIR), help="folder for the JSON file")
    parser.add_argument("--mnist", help="a folder with MNIST's idx files (default: scikit-learn's digits)")
    parser.add_argument("--only", nargs="+", choices=EXPERIMENTS, help="run only these experiments")
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    size = args.size or ("gpu" if device.type == "cuda" else "cpu")
    result = run_all(size, device, args.mnist, args.only, show_progress=sys.stderr.isatty())
    validate(result)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bn_training_{size}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path} ({sum(result['seconds'].values()):.0f} s of experiments on {result['environment']['device']})")
    return path


if __name__ == "__main__":
    main()
