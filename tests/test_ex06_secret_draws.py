"""Exercise 6's trusted checks on many secret draws: the solution passes every draw, and each wrong answer
fails the cells it must lose on every draw (small random networks can have a layer whose units are all dead
for a batch, where a measurement is undefined; the case builders draw again then).

The answers run in-process from the solution notebook's cells, with the trusted check given a namespace
standing in for the sandbox; no sandbox or kit fixtures are needed. The question's check draws its two
learning rates and trains four small networks per draw, so it runs on fewer draws.
"""


import nbformat
import pytest

import wrong_answers
from conftest import REPO
from test_ex05_secret_draws import _failed_draws
from bncourse.grading.assignments import ex06_why_bn_works as trusted
from wrong_answers import apply
from wrong_answers import functions as _answers

EXERCISE = "ex06_why_bn_works"
DRAWS = 40
QUESTION_DRAWS = 12
MODULE = wrong_answers.for_exercise(EXERCISE)
SOLUTION = nbformat.read(REPO / "solutions" / EXERCISE / f"{EXERCISE}.ipynb", as_version=4)


def _draws(grade_id):
    return QUESTION_DRAWS if grade_id == "test_question" else DRAWS


def _failed(answers, grade_id):
    return _failed_draws(answers, trusted.CHECKS[grade_id], draws=_draws(grade_id), salt=6)


@pytest.mark.parametrize("grade_id", list(trusted.CHECKS))
def test_the_solution_passes_every_draw(grade_id):
    assert _failed(_answers(SOLUTION), grade_id) == 0


@pytest.mark.parametrize("wrong", MODULE.WRONG_ANSWERS, ids=lambda w: w.name)
def test_each_wrong_answer_fails_its_cells_on_every_draw(wrong):
    answers = _answers(apply(wrong, SOLUTION))
    for grade_id in sorted(wrong.fails):
        failed = _failed(answers, grade_id)
        assert failed == _draws(grade_id), (wrong.name, grade_id, failed)


def test_the_visible_checks_factor_typed_as_the_answer_fails_the_question_on_every_draw():
    """The kit stores the factor of the visible check's rates (0.05, 0.5); typed in as the answer it passes that
    check (the notebook's own run flags the disagreement) but not the grader's, which asks at rates of its own."""
    from bncourse.checks import ex06_why_bn_works as cases
    typed = cases.tuned_rate_cases()[0]["expected"]
    wrong = wrong_answers.WrongAnswer(
        "answer_typed_from_the_visible_check", "tuned_rate_factor",
        (("    def effective_after(lr):\n", f"    return {typed!r}\n    def effective_after(lr):\n"),),
        frozenset({"test_question"}))
    assert _failed(_answers(apply(wrong, SOLUTION)), "test_question") == QUESTION_DRAWS
