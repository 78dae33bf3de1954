"""Every exercise through the grading pipeline end to end: the solution gets full marks, the
blank exercise 0, and each realistic wrong answer exactly the points of the test cells that
should not catch it, with the trusted verdict and the notebook's own run agreeing.

Exercise 2 is also graded with a large class of broken and hostile notebooks in test_grading.py.
"""

import html

import pytest

import wrong_answers
from bncourse import grading
from submissions import DISAGREES, make_honest_class, new_course

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("exercise", wrong_answers.EXERCISES)
def test_honest_class_gets_the_points_each_notebook_deserves(exercise, tmp_path):
    course = new_course(tmp_path / "course")
    expected = make_honest_class(course, exercise)
    results = {r.student: r for r in grading.grade_assignment(grading.Course(course), exercise,
                                                               limits=grading.Limits(cell_seconds=30),
                                                               progress=False)}
    assert set(results) == set(expected)
    full = sum(expected["solved"].values())
    for student, cell_scores in expected.items():
        result = results[student]
        assert not result.error, (student, result.error)
        assert {c.grade_id: c.score for c in result.cells} == cell_scores, (student, grading.format_summary([result]))
        assert result.max_score == full
        assert not any(DISAGREES in flag for flag in result.flags), (student, result.flags)
    assert results["solved"].score == full and results["blank"].score == 0
    assert not results["solved"].flags  # an honest solution is never taken for a pasted reference
    for wrong in wrong_answers.for_exercise(exercise).WRONG_ANSWERS:
        assert 0 < results[f"wrong-{wrong.name}"].score < full, wrong.name
    for wrong in wrong_answers.for_exercise(exercise).WRONG_ANSWERS:
        page = course / "autograder" / "feedback" / f"wrong-{wrong.name}" / exercise / f"{exercise}.html"
        assert wrong.says in html.unescape(page.read_text()), wrong.name  # the trusted check's explanation
