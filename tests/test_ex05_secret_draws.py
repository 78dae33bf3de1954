"""Exercise 5's trusted checks on many secret draws: the solution passes every draw, and each wrong answer
fails the cells it must lose on every draw (a hard-coded eps once passed the backward check when a draw
gave the eps case only two features).

The answers run in-process from the solution notebook's cells, with the trusted check given a namespace
standing in for the sandbox; no sandbox or kit fixtures are needed.
"""

import types

import nbformat
import numpy as np
import pytest

import wrong_answers
from conftest import REPO
from bncourse.grading.assignments import ex05_layernorm as trusted
from wrong_answers import apply
from wrong_answers import functions as _answers

EXERCISE = "ex05_layernorm"
DRAWS = 60
MODULE = wrong_answers.for_exercise(EXERCISE)
SOLUTION = nbformat.read(REPO / "solutions" / EXERCISE / f"{EXERCISE}.ipynb", as_version=4)


def _failed_draws(answers, check, draws=DRAWS, salt=1):
    """On how many of ``draws`` secret draws the trusted check fails (``salt`` picks the family of draws)."""
    failed = 0
    for draw in range(draws):
        try:
            check(answers, np.random.default_rng([1000 + draw, salt]))
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


def test_the_eps_case_of_the_backward_check_never_has_two_features(monkeypatch):
    """With two features x_hat is +-1 up to eps and dx is itself of the order of eps, so a hard-coded eps
    fell below the tolerance there (about 1 draw in 250 before the fix): the case with eps = 1e-3 (the
    second) always has at least three. Cheap enough to look at thousands of draws."""
    seen = []
    monkeypatch.setattr(trusted.checks, "check_layernorm_backward", lambda fn, shapes, seed: seen.append(shapes))
    for draw in range(3000):
        trusted.layernorm_backward(types.SimpleNamespace(layernorm_backward=None), np.random.default_rng([draw, 7]))
    assert min(shapes[1][-1] for shapes in seen) >= 3
