"""Exercise 4's trusted training-loop check on many secret draws: every right loop of the test class
(the solution and its ``CORRECT_ANSWERS``) passes on every draw, and every wrong one
(``WRONG_ANSWERS`` of the loop) fails on every draw, with its own message.

The loops run in-process from the solution notebook's cells (the given wrapper and the answer), so this
needs neither the sandbox nor the kit's stored fixtures; the trusted check is called with a namespace
standing in for the sandbox.
"""

import functools
import types

import nbformat
import numpy as np
import pytest

import wrong_answers
from conftest import REPO
from bnkit import ex04_training_with_bn as kit
from bncourse.checks import ex04_training_with_bn as checks
from bncourse.grading.assignments import draw_seed
from bncourse.grading.assignments import ex04_training_with_bn as trusted
from wrong_answers import apply

EXERCISE = "ex04_training_with_bn"
DRAWS = 25
CELLS = ("given_training_curve_of_bn_net", "train_and_record")


def _loop(notebook):
    import torch
    namespace = {"np": np, "torch": torch, "nn": torch.nn, "F": torch.nn.functional}
    for cell in notebook.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") in CELLS:
            exec(cell.source, namespace)
    return types.SimpleNamespace(training_curve_of_bn_net=namespace["training_curve_of_bn_net"])


SOLUTION = nbformat.read(REPO / "solutions" / EXERCISE / f"{EXERCISE}.ipynb", as_version=4)
MODULE = wrong_answers.for_exercise(EXERCISE)
RIGHT = [("solution", SOLUTION)] + [(a.name, apply(a, SOLUTION)) for a in MODULE.CORRECT_ANSWERS
                                    if a.cell == "train_and_record"]
WRONG = [a for a in MODULE.WRONG_ANSWERS if a.cell == "train_and_record"]


@functools.cache
def _cases(draw):
    """The cases trusted.training_loop builds for the student whose rng is seeded with 1000 + draw (built once
    here and shared by every answer: the builder runs the loop once per known mistake)."""
    rng = np.random.default_rng(1000 + draw)
    case = trusted.training_loop_case(rng)
    return case, checks.training_loop_cases(cases=(case,), seed=draw_seed(rng))


def _outcomes(answers):
    """The message of each draw (None where the check passed)."""
    outcomes = []
    for draw in range(DRAWS):
        try:
            kit.verify_training_loop(answers.training_curve_of_bn_net, _cases(draw)[1])
        except AssertionError as failure:
            outcomes.append(str(failure))
        else:
            outcomes.append(None)
    return outcomes


def test_the_trusted_check_is_these_cases_and_varies_every_argument():
    trusted.training_loop(_loop(SOLUTION), np.random.default_rng(1000))   # passes, on the cases of draw 0
    shown = checks.training_loop_cases()[0]   # the notebook's visible case
    visible = {key: shown[key] for key in ("steps", "lr", "batch_size", "eval_every")}
    for draw in range(DRAWS):
        built = _cases(draw)[1][0]
        for name, value in visible.items():
            assert built[name] != value, (draw, name)
        assert built["seed"] != 0


@pytest.mark.parametrize("name, notebook", RIGHT, ids=[name for name, _ in RIGHT])
def test_a_right_loop_passes_every_draw(name, notebook):
    failed = [message for message in _outcomes(_loop(notebook)) if message is not None]
    assert not failed, f"{name} failed {len(failed)} of {DRAWS} draws, e.g.{failed[0]}"


@pytest.mark.parametrize("wrong", WRONG, ids=[w.name for w in WRONG])
def test_a_wrong_loop_fails_every_draw_and_says_why(wrong):
    outcomes = _outcomes(_loop(apply(wrong, SOLUTION)))
    passed = sum(message is None for message in outcomes)
    assert passed == 0, f"{wrong.name} passed {passed} of {DRAWS} draws"
    unnamed = [message for message in outcomes if wrong.says not in message]
    assert not unnamed, f"{wrong.name}: {len(unnamed)} of {DRAWS} draws without {wrong.says!r}, e.g.{unnamed[0]}"
