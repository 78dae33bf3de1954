"""Library calls an exercise rules out are flagged with the cell and the line, and the solutions
use none of them."""

import json

import nbformat
import pytest

import wrong_answers
from bncourse.grading import forbidden, intake
from bncourse.grading.assignments import forbidden_methods
from conftest import ASSIGNMENTS, REPO


def plan_of(notebook, exercise):
    released = json.loads((REPO / "exercises" / exercise / f"{exercise}.ipynb").read_text())
    _, plan, _, error = intake.rebuild(nbformat.writes(notebook).encode(), released)
    assert not error
    return plan


def solution(exercise):
    return nbformat.read(REPO / "solutions" / exercise / f"{exercise}.ipynb", as_version=4)


@pytest.mark.parametrize("exercise", ASSIGNMENTS)
def test_solutions_and_right_answers_use_nothing_forbidden(exercise):
    rules = forbidden_methods(exercise)
    assert forbidden.flags(plan_of(solution(exercise), exercise), rules) == []
    for right in wrong_answers.correct_answers(exercise):
        assert forbidden.flags(plan_of(wrong_answers.apply(right, solution(exercise)), exercise), rules) == [], right.name


def test_library_batch_norm_in_a_by_hand_backward_is_flagged_with_cell_and_line():
    nb = solution("ex03_batchnorm_backward")
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "batchnorm_backward_alt")
    cell.source = ("import torch\nimport torch.nn.functional as F\n\n" + cell.source +
                   "\n\ndef _by_autograd(x):\n    return torch.autograd.grad(F.batch_norm(x, None, None, training=True)"
                   ".sum(), x)\n")
    (flag,) = forbidden.flags(plan_of(nb, "ex03_batchnorm_backward"), forbidden_methods("ex03_batchnorm_backward"))
    assert "cell 'batchnorm_backward_alt'" in flag and "batch_norm (line" in flag and "autograd (line" in flag


def test_a_layer_norm_imported_by_name_in_an_added_cell_is_flagged():
    nb = solution("ex05_layernorm")
    nb.cells.append(nbformat.v4.new_code_cell("from torch.nn.functional import layer_norm as ln\n"))
    flags = forbidden.flags(plan_of(nb, "ex05_layernorm"), forbidden_methods("ex05_layernorm"))
    assert len(flags) == 1 and "layer_norm (line 1)" in flags[0]


def test_unparsable_or_hostile_source_gives_no_flag_and_no_crash():
    plan = [{"name": "x", "role": "answer", "source": "(" * 100_000}, {"name": "y", "role": "extra",
                                                                        "source": "def f(:\n"}]
    assert forbidden.flags(plan, forbidden_methods("ex05_layernorm")) == []
