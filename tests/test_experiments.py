"""The experiment script behind Chapter 4 runs end to end on the CPU in its tiny configuration, and
what it writes (and every committed result file) has the fields the chapter reads."""

import copy
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from conftest import REPO
from bncourse.experiments import bn_training


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("experiments")
    completed = subprocess.run([sys.executable, "-m", "bncourse.experiments.bn_training", "--size", "tiny",
                                "--device", "cpu", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-2000:]
    path = out / "bn_training_tiny.json"
    assert str(path) in completed.stdout
    return json.loads(path.read_text())


def test_tiny_run_records_environment_settings_and_every_experiment(tiny_result):
    bn_training.validate(tiny_result)
    env = tiny_result["environment"]
    assert env["device_type"] == "cpu" and env["torch"] == torch.__version__ and env["cuda"] is None
    assert "--size tiny" in tiny_result["command"]
    assert set(tiny_result["config"]) == set(bn_training.EXPERIMENTS)
    assert tiny_result["config"]["paper_mnist"] == bn_training.SIZES["tiny"]["paper_mnist"]
    assert set(tiny_result["experiments"]) == {*bn_training.EXPERIMENTS, "steps_to_target"}
    paper = tiny_result["experiments"]["paper_mnist"]["runs"]
    assert set(paper) == {"with BN", "without BN"}
    for runs in paper.values():
        percentiles = runs[0]["sigmoid_input_percentiles"]
        assert all(p15 <= p50 <= p85 for p15, p50, p85 in zip(percentiles["15"], percentiles["50"], percentiles["85"]))
    timing = tiny_result["experiments"]["timing"]
    assert timing["folding"]["max_abs_difference"] < 1e-4
    assert all(run["samples_per_s"] > 0 for run in timing["cnn_training_throughput"]["runs"].values())


def test_validate_names_what_is_missing(tiny_result):
    broken = copy.deepcopy(tiny_result)
    del broken["environment"]["git_commit"]
    with pytest.raises(ValueError, match="git_commit"):
        bn_training.validate(broken)
    broken = copy.deepcopy(tiny_result)
    del broken["experiments"]["eval_mode"]
    with pytest.raises(ValueError, match="eval_mode"):
        bn_training.validate(broken)


def test_steps_to_target_reads_the_curves():
    curve = {"step": [10, 20, 30], "test_accuracy": [0.5, 0.8, 0.95]}
    assert bn_training.steps_to(curve, 0.8) == 20 and bn_training.steps_to(curve, 0.99) is None
    runs = {f"{'with' if bn else 'without'} BN, x{m}": [{"batch_norm": bn, "multiplier": m, "diverged": diverged,
                                                         "step": [10, 20, 30], "test_accuracy": accuracies}]
            for bn, m, diverged, accuracies in [(False, 1, False, [0.1, 0.5, 0.9]), (False, 5, True, [0.1, 0.1, 0.1]),
                                                (True, 1, False, [0.5, 0.9, 0.9]), (True, 5, False, [0.9, 0.9, 0.9]),
                                                (True, 30, True, [0.9, 0.1, 0.1])]}
    summary = bn_training.summarize_steps_to_target({"runs": runs}, {"target_accuracy": 0.9, "eval_every": 10})
    assert summary["best_without_bn"] == "without BN, x1" and summary["best_with_bn"] == "with BN, x5"
    assert summary["highest_stable_with_bn"] == "with BN, x5"      # x30 reached the target but diverged
    assert summary["ratio_best"] == 3.0
    # the paper's measure: the plain network's best accuracy (0.9, x5 diverged) at step 30; BN's x5 gets there at 10
    assert summary["to_baseline_accuracy"] == {"baseline": "without BN, x1", "accuracy": 0.9, "baseline_steps": 30.0,
                                               "with_bn": "with BN, x5", "bn_steps": 10.0, "ratio": 3.0}


def test_the_papers_measure_uses_the_accuracy_every_seed_reached():
    def run(bn, m, accuracies):
        return {"batch_norm": bn, "multiplier": m, "diverged": False, "step": [10, 20, 30, 40],
                "test_accuracy": accuracies}

    runs = {"without BN, x1": [run(False, 1, [0.5, 0.8, 0.95, 0.9]), run(False, 1, [0.5, 0.7, 0.8, 0.9])],
            "with BN, x1": [run(True, 1, [0.9, 0.9, 0.9, 0.9]), run(True, 1, [0.8, 0.85, 0.9, 0.95])],
            "with BN, x2": [run(True, 2, [0.95, 0.95, 0.95, 0.95]), run(True, 2, [0.5, 0.5, 0.5, 0.85])]}
    measure = bn_training.steps_to_baseline_accuracy({"runs": runs})
    # 0.9 is what both plain seeds reach (at steps 30 and 40); BN x1 gets there at 10 and 30; BN x2 has a seed
    # that never does
    assert measure == {"baseline": "without BN, x1", "accuracy": 0.9, "baseline_steps": 35.0, "with_bn": "with BN, x1",
                       "bn_steps": 20.0, "ratio": 1.75}


def test_folding_bn_into_a_conv_keeps_the_eval_mode_output():
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 3, 5, 5)
    with torch.no_grad():
        expected = bn.eval()(conv(x))
        torch.testing.assert_close(bn_training.fold_batchnorm(conv, bn)(x), expected, rtol=1e-5, atol=1e-5)


def test_handwritten_batchnorm_matches_torch():
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    gamma, beta = torch.rand(3, dtype=torch.float64) + 0.5, torch.randn(3, dtype=torch.float64)
    expected = torch.nn.functional.batch_norm(x, None, None, gamma, beta, training=True)
    torch.testing.assert_close(bn_training.handwritten_batchnorm(x, gamma, beta), expected)


def test_the_cpu_run_is_committed():
    """The chapter always has the CPU run to show (the parametrized check below would pass on no files)."""
    assert (REPO / "chapters" / "results" / "bn_training_cpu.json").is_file()


@pytest.mark.parametrize("path", sorted((REPO / "chapters" / "results").glob("bn_training_*.json")),
                         ids=lambda p: p.name)
def test_committed_results_are_complete(path):
    result = json.loads(path.read_text())
    bn_training.validate(result)
    assert path.name == f"bn_training_{result['size']}.json"
    assert result["environment"]["git_commit"] != "unknown"


def test_mnist_loader_reads_idx_files_from_a_local_folder(tmp_path):
    """The --mnist option, on four small idx files written here (gzip-compressed and not)."""
    import gzip

    import numpy as np

    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8), rng.integers(0, 10, size=5, dtype=np.uint8)

    def idx(array):
        header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
        return header + array.tobytes()

    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx(images)))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx(labels))
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx(images[:2]))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx(labels[:2])))
    data = bn_training.load_data(torch.device("cpu"), tmp_path)
    assert data["x_train"].shape == (5, 784) and data["x_test"].shape == (2, 784)
    torch.testing.assert_close(data["x_train"][3], torch.tensor(images[3].reshape(-1) / 255.0, dtype=torch.float32))
    assert data["y_test"].tolist() == labels[:2].tolist() and data["name"].startswith("MNIST")
    with pytest.raises(FileNotFoundError, match="idx"):
        bn_training.load_data(torch.device("cpu"), tmp_path / "missing")


def chapter_code(path) -> str:
    """The code cells of a MyST markdown notebook, in order, as one script (cell options dropped).

    The hidden ``remove-cell`` cells are left out: they assert the prose's claims about the committed
    results, and the tests that use this replace those results with made-up ones."""
    import re

    cells = re.findall(r"^```\{code-cell\}[^\n]*\n(.*?)^```$", path.read_text(), flags=re.S | re.M)
    cells = [cell for cell in cells if not re.match(r":tags: \[[^\]]*remove-cell", cell)]
    return "\n\n".join("\n".join(line for line in cell.splitlines() if not line.startswith(":")) for cell in cells)


def test_chapter_4_shows_a_recorded_gpu_run_beside_the_cpu_run(tiny_result, tmp_path):
    """No GPU run is committed yet, so the book never builds the chapter's two-run layout: run the chapter's
    code on the tiny CPU result and on a copy labelled as a CUDA run, into which the test writes the awkward
    values a real run can record (no ratio, a diverged cell, torch.compile unavailable)."""
    for size in ("cpu", "gpu"):
        result = copy.deepcopy(tiny_result)
        result["size"] = size
        if size == "gpu":   # made up, and with the awkward values a real run can record
            result["environment"].update(device="NVIDIA test device (labels made up by this test)", device_type="cuda",
                                         cuda="12.8", cudnn=91000)
            experiments = result["experiments"]
            summary = experiments["steps_to_target"]
            summary.update(best_with_bn=None, ratio_best=None, ratio_highest_stable=None)
            summary["to_baseline_accuracy"].update(with_bn=None, bn_steps=None, ratio=None)
            experiments["init_scale"]["final_test_accuracy"]["without BN"][0][0] = [None]     # a diverged run
            finals = experiments["batch_size"]["final_test_accuracy"]["with BN"]
            finals[next(iter(finals))] = [None]
            layer = experiments["timing"]["bn_layer_cost"]
            layer["variants"].pop("hand-written, torch.compile", None)
            layer["compile_error"] = "made up by the test"
        bn_training.validate(result)
        (tmp_path / f"bn_training_{size}.json").write_text(json.dumps(result))
    script = tmp_path / "chapter_4.py"
    script.write_text(chapter_code(REPO / "chapters" / "ch04_training_with_bn.md"))
    completed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path,
                               env={**os.environ, "BNCOURSE_RESULTS_DIR": str(tmp_path), "MPLBACKEND": "Agg"})
    assert completed.returncode == 0, completed.stderr[-3000:]
    out = completed.stdout
    assert "gpu run: NVIDIA test device" in out and "CUDA 12.8, cuDNN 91000" in out and "cpu run: CPU" in out
    assert "No GPU run is recorded yet" not in out
    assert "gpu run, the paper's measure: no BN setting reached" in out
    assert "gpu run, torch.compile was not available: made up by the test" in out
    assert out.index("gpu run") < out.index("cpu run")   # the recorded GPU run first


def test_planned_work_counts_the_steps_of_a_size():
    """What the GPU size was estimated from, against a hand count of the tiny size."""
    assert bn_training.TRAINING_SET_SIZE == len(bn_training.load_data(torch.device("cpu"))["y_train"])
    work = bn_training.planned_work("tiny")
    # paper_mnist: with and without BN, 1 seed, 60 steps, evaluated at steps 20, 40, 60
    assert work["paper_mnist"] == {"runs": 2, "steps": 120, "evaluations": 6}
    # learning_rate: 2 x 2 multipliers x 1 seed, 40 steps each, evaluated at 20 and 40
    assert work["learning_rate"] == {"runs": 4, "steps": 160, "evaluations": 8}
    # batch_size: one epoch of 1,437 images at batch 4 (359 steps) and 32 (44 steps), with and without BN
    assert work["batch_size"] == {"runs": 4, "steps": 2 * (359 + 44), "evaluations": 4}
    assert work["init_scale"] == {"runs": 8, "steps": 8 * 30, "evaluations": 8}


def test_train_epochs_counts_its_steps_and_batches_and_learns():
    """Chapters 5 and 7's epoch loop: every example once per epoch (the partial batch dropped or not), the
    schedule told the fraction of the steps done, and a separable problem learned."""
    torch.manual_seed(0)
    x = torch.randn(50, 4)
    y = (x[:, 0] > 0).long()
    seen, fractions = [], []
    model = torch.nn.Sequential(torch.nn.Linear(4, 2))
    forward = model.forward
    model.forward = lambda batch: (seen.append(len(batch)), forward(batch))[1]
    bn_training.train_epochs(model, x, y, batch_size=16, lr=0.5, epochs=3, seed=1,
                             before_step=lambda m, done: fractions.append(done))
    assert seen == [16, 16, 16] * 3 and fractions == [k / 9 for k in range(9)]
    seen.clear()
    bn_training.train_epochs(model, x, y, batch_size=16, lr=0.5, epochs=2, seed=1, drop_last=False)
    assert seen == [16, 16, 16, 2] * 2
    model.forward = forward
    assert (model(x).argmax(1) == y).float().mean() > 0.9
