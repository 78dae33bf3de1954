"""Exercise 7's trusted checks on many secret draws: the solution passes every draw, and each wrong answer
fails the cells it must lose on every draw (a mistake that coincided with the right answer for some draw of
sizes, counts or clipping bounds would pass there).

The answers run in-process from the solution notebook's cells, with the trusted check given a namespace
standing in for the sandbox; no sandbox or kit fixtures are needed.
"""

import nbformat
import numpy as np
import pytest

import wrong_answers
from conftest import REPO
from test_ex05_secret_draws import _answers
from bncourse.grading.assignments import ex07_bn_in_practice as trusted
from wrong_answers import apply

EXERCISE = "ex07_bn_in_practice"
DRAWS = 15
MODULE = wrong_answers.for_exercise(EXERCISE)
SOLUTION = nbformat.read(REPO / "solutions" / EXERCISE / f"{EXERCISE}.ipynb", as_version=4)


def _failed_draws(answers, check):
    failed = 0
    for draw in range(DRAWS):
        try:
            check(answers, np.random.default_rng([2000 + draw, 7]))
        except AssertionError:
            failed += 1
    return failed


@pytest.mark.parametrize("grade_id", list(trusted.CHECKS))
def test_the_solution_passes_every_draw(grade_id):
    assert _failed_draws(_answers(SOLUTION), trusted.CHECKS[grade_id]) == 0


@pytest.mark.parametrize("wrong", MODULE.WRONG_ANSWERS, ids=lambda w: w.name)
def test_each_wrong_answer_fails_its_cells_on_every_draw(wrong):
    answers = _answers(apply(wrong, SOLUTION))
    for grade_id in sorted(wrong.fails):
        assert _failed_draws(answers, trusted.CHECKS[grade_id]) == DRAWS, (wrong.name, grade_id)
