"""Exercise 7's trusted checks on many secret draws: the solution passes every draw, and each wrong answer
fails the cells it must lose on every draw (a mistake that coincided with the right answer for some draw of
sizes, counts or clipping bounds would pass there). Runs the answers in-process, as Exercise 5's test does,
with an error raised by the student's code turned into a failed cell, as the grader's sandbox does (AnswerError):
a worker that makes other all_reduce calls than the others raises."""

import functools
import types

import nbformat
import pytest

import wrong_answers
from conftest import REPO
from test_ex05_secret_draws import _answers as _functions
from test_ex05_secret_draws import _failed_draws
from bncourse.grading.answer_server import AnswerError
from bncourse.grading.assignments import ex07_bn_in_practice as trusted
from wrong_answers import apply

EXERCISE = "ex07_bn_in_practice"
DRAWS = 15
SOLUTION = nbformat.read(REPO / "solutions" / EXERCISE / f"{EXERCISE}.ipynb", as_version=4)


def _answers(notebook):
    """The notebook's functions; an exception from one becomes an AnswerError, as in the grader."""
    def as_grader_sees_it(function):
        @functools.wraps(function)
        def call(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except AssertionError:
                raise
            except Exception as error:      # noqa: BLE001 - what the sandbox reports
                raise AnswerError(f"{function.__name__} raised {type(error).__name__}: {error}") from None
        return call
    found = _functions(notebook)
    return types.SimpleNamespace(**{name: as_grader_sees_it(f) for name, f in vars(found).items()})


CASES = [(None, grade_id) for grade_id in trusted.CHECKS] + [
    (wrong, grade_id) for wrong in wrong_answers.for_exercise(EXERCISE).WRONG_ANSWERS for grade_id in sorted(wrong.fails)]


@pytest.mark.parametrize("wrong, grade_id", CASES,
                         ids=[f"{'solution' if w is None else w.name}-{g}" for w, g in CASES])
def test_every_secret_draw_passes_the_solution_and_fails_each_wrong_answer(wrong, grade_id):
    answers = _answers(SOLUTION if wrong is None else apply(wrong, SOLUTION))
    failed = _failed_draws(answers, trusted.CHECKS[grade_id], draws=DRAWS, salt=7)
    assert failed == (0 if wrong is None else DRAWS), (grade_id, failed)
