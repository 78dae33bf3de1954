"""The check helpers accept the reference, and each realistic wrong answer fails exactly the
checks that should catch it, with a message that names the mistake.

These run the exercise's code cells in-process (fast); test_grading.py runs the same wrong
answers through nbgrader end to end.
"""

import contextlib
import io

import nbformat
import numpy as np
import pytest

from bncourse import checks, reference
from wrong_answers import EXERCISE, TEST_CELL_POINTS, WRONG_ANSWERS, apply


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


@pytest.fixture(scope="module")
def solution(repo):
    return nbformat.read(repo / "solutions" / EXERCISE / f"{EXERCISE}.ipynb", as_version=4)


def test_reference_passes_every_check(capsys):
    checks.check_batchnorm_forward_train(reference.batchnorm_forward)
    checks.check_running_stats(reference.batchnorm_forward, momenta=(0.1, 0.7))
    checks.check_eval_mode(reference.batchnorm_forward)
    checks.check_cache_and_inputs(reference.batchnorm_forward)
    checks.check_spatial_batchnorm_forward(reference.spatial_batchnorm_forward)
    assert capsys.readouterr().out.count("\u2713") == 5


def test_solution_notebook_passes_all_its_checks(solution):
    assert run_code_cells(solution) == {}
    graded = {c.metadata["nbgrader"]["grade_id"]: c.metadata["nbgrader"]["points"]
              for c in solution.cells if c.metadata.get("nbgrader", {}).get("grade")}
    assert graded == TEST_CELL_POINTS


@pytest.mark.parametrize("wrong", WRONG_ANSWERS, ids=lambda w: w.name)
def test_wrong_answer_fails_exactly_the_right_checks_and_says_why(solution, wrong):
    failures = run_code_cells(apply(wrong, solution))
    assert set(failures) == set(wrong.fails)
    first_cell = next(c for c in TEST_CELL_POINTS if c in wrong.fails)
    assert wrong.says in failures[first_cell], failures[first_cell]
    assert all(message.startswith("CheckFailed") for message in failures.values()), failures


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
