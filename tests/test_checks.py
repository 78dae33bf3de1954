"""The check helpers accept the reference, and each realistic wrong answer to each exercise fails
exactly the checks that should catch it, with a message that names the mistake.

These run the exercises' code cells in-process (fast); test_exercise_grading.py runs the same wrong
answers through the grading pipeline end to end.
"""

import contextlib
import functools
import io

import nbformat
import numpy as np
import pytest

import wrong_answers
from conftest import ASSIGNMENTS, REPO
from bncourse import checks, reference
from wrong_answers import apply

ALL_WRONG = [(exercise, wrong) for exercise in wrong_answers.EXERCISES
             for wrong in wrong_answers.for_exercise(exercise).WRONG_ANSWERS]


def run_code_cells(notebook):
    """Execute the notebook's code cells in one namespace; return {grade_id: error message} of
    the cells that raised."""
    namespace, failures = {}, {}
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                exec(cell.source, namespace)
        except Exception as exc:  # noqa: BLE001 (we record whatever a cell raised)
            failures[cell.metadata["nbgrader"]["grade_id"]] = f"{type(exc).__name__}: {exc}"
    return failures


@functools.cache
def solution(exercise):
    return nbformat.read(REPO / "solutions" / exercise / f"{exercise}.ipynb", as_version=4)


def test_every_exercise_has_wrong_answers():
    assert wrong_answers.EXERCISES == ASSIGNMENTS


def test_reference_passes_every_check(capsys):
    checks.check_batchnorm_forward_train(reference.batchnorm_forward)
    checks.check_running_stats(reference.batchnorm_forward, momenta=(0.1, 0.7))
    checks.check_eval_mode(reference.batchnorm_forward)
    checks.check_cache_and_inputs(reference.batchnorm_forward)
    checks.check_spatial_batchnorm_forward(reference.spatial_batchnorm_forward)

    activations = reference.MLP_ACTIVATIONS
    checks.check_activations(lambda z, name: activations[name][0](z), lambda z, name: activations[name][1](z))
    checks.check_forward_stats(lambda *args: tuple(map(np.asarray, reference.mlp_forward_stats(*args))),
                               sizes=((4, 9, 9, 2), (3, 3)))
    checks.check_weight_gradient_norms(reference.mlp_weight_gradient_norms, sizes=((4, 9, 9, 2), (3, 3)))
    checks.check_xavier_init(lambda fan_in, fan_out, seed: np.random.default_rng(seed).uniform(
        -np.sqrt(3) * reference.xavier_std(fan_in, fan_out), np.sqrt(3) * reference.xavier_std(fan_in, fan_out),
        size=(fan_in, fan_out)))  # Glorot's uniform version has the same variance: accepted
    checks.check_he_init(lambda fan_in, fan_out, seed: np.random.default_rng(seed).normal(
        0, reference.he_std(fan_in), size=(fan_in, fan_out)))
    checks.check_largest_sigmoid_derivative(lambda: 1 / 4)
    checks.check_relu_gain(lambda: np.sqrt(2))
    assert capsys.readouterr().out.count("\u2713") == 12


@pytest.mark.parametrize("exercise", wrong_answers.EXERCISES)
def test_solution_notebook_passes_all_its_checks(exercise):
    nb = solution(exercise)
    assert run_code_cells(nb) == {}
    graded = {c.metadata["nbgrader"]["grade_id"]: c.metadata["nbgrader"]["points"]
              for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")}
    assert graded == wrong_answers.for_exercise(exercise).TEST_CELL_POINTS


@pytest.mark.parametrize("exercise, wrong", ALL_WRONG, ids=lambda v: getattr(v, "name", v))
def test_wrong_answer_fails_exactly_the_right_checks_and_says_why(exercise, wrong):
    failures = run_code_cells(apply(wrong, solution(exercise)))
    assert set(failures) == set(wrong.fails)
    points = wrong_answers.for_exercise(exercise).TEST_CELL_POINTS
    first_cell = next(c for c in points if c in wrong.fails)
    assert wrong.says in failures[first_cell], failures[first_cell]
    assert all(message.startswith("CheckFailed") for message in failures.values()), failures


ALL_CORRECT = [(exercise, right) for exercise in wrong_answers.EXERCISES
               for right in wrong_answers.correct_answers(exercise)]


@pytest.mark.parametrize("exercise, right", ALL_CORRECT, ids=lambda v: getattr(v, "name", v))
def test_right_answer_written_differently_passes_every_check(exercise, right):
    assert not right.fails
    assert run_code_cells(apply(right, solution(exercise))) == {}


def test_messages_name_shape_element_and_nan():
    def wrong_shape(x, gamma, beta, bn_param):
        return x.mean(axis=0), {}

    with pytest.raises(checks.CheckFailed, match=r"shape \(3,\) but should have shape \(4, 3\)"):
        checks.check_batchnorm_forward_train(wrong_shape)

    def nan_output(x, gamma, beta, bn_param):
        out, cache = reference.batchnorm_forward(x, gamma, beta, bn_param)
        out = out.copy()
        out[1, 2] = np.nan
        return out, cache

    with pytest.raises(checks.CheckFailed, match=r"1 NaN or infinite value\(s\).*out\[1, 2\]"):
        checks.check_batchnorm_forward_train(nan_output, shapes=((6, 3),))

    def off_by_one_element(x, gamma, beta, bn_param):
        out, cache = reference.batchnorm_forward(x, gamma, beta, bn_param)
        out = out.copy()
        out[2, 1] += 0.5
        return out, cache

    with pytest.raises(checks.CheckFailed, match=r"1 of 12 elements.*out\[2, 1\].*Only column\(s\) \[1\]"):
        checks.check_batchnorm_forward_train(off_by_one_element)

    with pytest.raises(checks.CheckFailed, match=r"must return a pair"):
        checks.check_batchnorm_forward_train(lambda x, g, b, p: reference.batchnorm_forward(x, g, b, p)[0])


def test_init_messages_name_shape_seeding_and_centering():
    def he(fan_in, fan_out, seed):
        return np.random.default_rng(seed).normal(0, reference.he_std(fan_in), size=(fan_in, fan_out))

    with pytest.raises(checks.CheckFailed, match=r"shape \(150, 400\) but should have shape .* \(400, 150\)"):
        checks.check_he_init(lambda fan_in, fan_out, seed: he(fan_out, fan_in, seed) * np.sqrt(fan_out / fan_in))
    with pytest.raises(checks.CheckFailed, match="same seed gave different weights"):
        checks.check_he_init(lambda fan_in, fan_out, seed: np.random.normal(0, reference.he_std(fan_in),
                                                                              size=(fan_in, fan_out)))
    with pytest.raises(checks.CheckFailed, match="different seeds gave the same weights"):
        checks.check_he_init(lambda fan_in, fan_out, seed: he(fan_in, fan_out, 0))
    with pytest.raises(checks.CheckFailed, match="centred at 0"):
        checks.check_he_init(lambda fan_in, fan_out, seed: np.abs(he(fan_in, fan_out, seed)))
    with pytest.raises(checks.CheckFailed, match="the factor 2 is missing"):
        checks.check_he_init(lambda fan_in, fan_out, seed: he(fan_in, fan_out, seed) / np.sqrt(2))
    with pytest.raises(checks.CheckFailed, match=r"off by a factor 1.5"):
        checks.check_he_init(lambda fan_in, fan_out, seed: he(fan_in, fan_out, seed) * 1.5)
    with pytest.raises(checks.CheckFailed, match="return a single number, not a str"):
        checks.check_relu_gain(lambda: "sqrt(2)")


def test_reference_passes_the_backward_checks(capsys):
    checks.check_batchnorm_backward(reference.batchnorm_backward)
    checks.check_batchnorm_backward_alt(reference.batchnorm_backward)
    checks.check_spatial_batchnorm_backward(reference.spatial_batchnorm_backward)
    assert capsys.readouterr().out.count("\u2713") == 3


def test_backward_messages_name_the_gradient_and_the_shape():
    def wrong_dgamma_axis(dout, cache):
        dx, dgamma, dbeta = reference.batchnorm_backward(dout, cache)
        return dx, (dout * cache["x_hat"]).sum(axis=1), dbeta

    with pytest.raises(checks.CheckFailed, match=r"dgamma has shape \(4,\) but should have shape \(3,\)"):
        checks.check_batchnorm_backward(wrong_dgamma_axis)
    with pytest.raises(checks.CheckFailed, match=r"return 3 values `\(dx, dgamma, dbeta\)`"):
        checks.check_batchnorm_backward(lambda dout, cache: reference.batchnorm_backward(dout, cache)[0])


def test_a_broken_autograd_function_gets_a_hint_not_a_torch_traceback():
    import torch

    class ThreeGradients(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, gamma, beta, eps):
            return x * gamma + beta

        @staticmethod
        def backward(ctx, dout):
            return dout, dout.sum(0), dout.sum(0)  # one too few: eps needs a None

    def gradients(x, gamma, beta, dout, eps=1e-5):  # the notebook's given wrapper
        tensors = [torch.tensor(a, requires_grad=True) for a in (x, gamma, beta)]
        out = ThreeGradients.apply(*tensors, eps)
        out.backward(torch.tensor(dout))
        return (out.detach().numpy(), *(t.grad.numpy() for t in tensors))

    with pytest.raises(checks.CheckFailed, match=r"torch raised RuntimeError.*\n.*one gradient per input"):
        checks.check_autograd_function(gradients)


def test_relative_error_that_returns_none_is_told_so():
    with pytest.raises(checks.CheckFailed, match="returned None"):
        checks.check_relative_error(lambda a, b: None)


def test_a_wrong_number_gets_a_hint_not_the_answer():
    with pytest.raises(checks.CheckFailed, match=r"0\.3 is not the answer \(accepted within 1e-06\)\.\n.*Hint: "
                                                 r"sigma'\(z\)") as failure:
        checks.check_largest_sigmoid_derivative(lambda: 0.3)
    assert "0.25" not in str(failure.value)
    with pytest.raises(checks.CheckFailed, match="returned None"):
        checks.check_batchnorm_backward(lambda dout, cache: None)
