"""The instructor pipeline end to end, in a temporary copy of the course.

One batch holds a complete solution, the blank exercise, every realistic wrong answer, and
broken submissions (raises at the top, loops forever, deletes a test cell, edits a locked test
cell, prints a warning, is not JSON). The batch must run to the end and each student must get
exactly the score their notebook deserves, with the problem said in words.
"""

import copy
import csv
import shutil

import nbformat
import pytest

from bncourse import grading
from conftest import REPO
from wrong_answers import EXERCISE, TEST_CELL_POINTS, WRONG_ANSWERS, apply

pytestmark = pytest.mark.slow
FULL = sum(TEST_CELL_POINTS.values())
CELL_TIMEOUT = 8  # seconds: keeps the infinite-loop submission cheap


def _cell(nb, grade_id):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def student_version(released, solution):
    """What a student who solved everything submits: the released notebook with the answer
    cells filled in (hidden tests are not in it)."""
    nb = copy.deepcopy(released)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            lines = _cell(solution, meta["grade_id"]).source.splitlines()
            cell.source = "\n".join(line for line in lines if "### BEGIN SOLUTION" not in line
                                     and "### END SOLUTION" not in line)
    return nb


def make_submissions(course):
    released = nbformat.read(REPO / "exercises" / EXERCISE / f"{EXERCISE}.ipynb", as_version=4)
    solution = nbformat.read(REPO / "solutions" / EXERCISE / f"{EXERCISE}.ipynb", as_version=4)
    good = student_version(released, solution)
    expected = {}  # student -> (score per test cell, words the summary must contain)

    def submit(student, nb_or_text):
        folder = course / "autograder" / "submitted" / student / EXERCISE
        folder.mkdir(parents=True)
        path = folder / f"{EXERCISE}.ipynb"
        if isinstance(nb_or_text, str):
            path.write_text(nb_or_text)
        else:
            nbformat.write(nb_or_text, path)

    def scores(failing=()):
        return {cell: (0 if cell in failing else pts) for cell, pts in TEST_CELL_POINTS.items()}

    submit("solved", good)
    expected["solved"] = (scores(), [])
    submit("blank", released)
    expected["blank"] = (scores(TEST_CELL_POINTS), ["NotImplementedError"])
    for wrong in WRONG_ANSWERS:
        submit(f"wrong-{wrong.name}", apply(wrong, good))
        expected[f"wrong-{wrong.name}"] = (scores(wrong.fails), [wrong.says])

    nb = copy.deepcopy(good)
    _cell(nb, "batchnorm_forward").source = "raise RuntimeError('not finished')\n" + _cell(nb, "batchnorm_forward").source
    submit("raises-at-top", nb)
    expected["raises-at-top"] = (scores(TEST_CELL_POINTS), ["cell 'batchnorm_forward' raised RuntimeError"])

    nb = copy.deepcopy(good)
    _cell(nb, "spatial_batchnorm_forward").source = "while True:\n    pass\n" + _cell(nb, "spatial_batchnorm_forward").source
    submit("infinite-loop", nb)
    expected["infinite-loop"] = (scores({"test_spatial"}), ["cell 'spatial_batchnorm_forward' timed out"])

    spatial_wrong = next(w for w in WRONG_ANSWERS if w.name == "spatial_reshape_without_transpose")
    nb = apply(spatial_wrong, good)
    nb.cells.remove(_cell(nb, "test_spatial"))
    submit("deleted-test-cell", nb)
    expected["deleted-test-cell"] = (scores({"test_spatial"}), ["'test_spatial' was deleted"])

    eps_wrong = next(w for w in WRONG_ANSWERS if w.name == "missing_eps")
    nb = apply(eps_wrong, good)
    _cell(nb, "test_forward_train").source = "print('all good')"
    submit("edited-test-cell", nb)
    expected["edited-test-cell"] = (scores(eps_wrong.fails), ["'test_forward_train' was edited"])

    nb = copy.deepcopy(good)
    cell = _cell(nb, "batchnorm_forward")
    cell.source = "import warnings\n" + cell.source.replace(
        '    mode = bn_param.get("mode", "train")', '    warnings.warn("a harmless warning on stderr")\n'
                                                   '    mode = bn_param.get("mode", "train")')
    submit("prints-warning", nb)
    expected["prints-warning"] = (scores(), [])

    submit("not-json", '{"cells": [')
    expected["not-json"] = (None, ["not valid JSON"])
    return expected


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = tmp_path_factory.mktemp("course")
    for folder in ("solutions", "exercises"):
        shutil.copytree(REPO / folder, course / folder)
    (course / "autograder").mkdir()
    shutil.copy(REPO / "autograder" / "nbgrader_config.py", course / "autograder")
    expected = make_submissions(course)
    before = {p: p.read_bytes() for p in (course / "autograder" / "submitted").rglob("*.ipynb")}
    results = grading.grade_assignment(grading.Course(course), EXERCISE, cell_timeout=CELL_TIMEOUT,
                                       progress=lambda _: None)
    return course, expected, {r.student: r for r in results}, before


def test_every_submission_gets_a_result(graded):
    _, expected, results, _ = graded
    assert set(results) == set(expected)


def test_scores_per_cell_match_what_each_notebook_deserves(graded):
    _, expected, results, _ = graded
    for student, (cell_scores, _) in expected.items():
        result = results[student]
        if cell_scores is None:
            assert result.error and result.score is None, student
            continue
        assert not result.error, (student, result.error)
        assert {c.grade_id: c.score for c in result.cells} == cell_scores, (student, grading.format_summary([result]))
        assert result.score == sum(cell_scores.values()) and result.max_score == FULL


def test_wrong_answers_get_partial_credit(graded):
    _, _, results, _ = graded
    for wrong in WRONG_ANSWERS:
        assert 0 < results[f"wrong-{wrong.name}"].score < FULL


def test_problems_are_reported_in_words(graded):
    _, expected, results, _ = graded
    for student, (_, phrases) in expected.items():
        text = grading.format_summary([results[student]])
        for phrase in phrases:
            assert phrase in text, (student, phrase, text)
    assert not results["solved"].flags and not results["prints-warning"].flags


def test_gradebook_and_csv_agree_and_list_every_student(graded):
    from nbgrader.api import Gradebook

    course, expected, results, _ = graded
    with open(course / "autograder" / "grades.csv", newline="") as f:
        rows = {row["student_id"]: row for row in csv.DictReader(f)}
    assert set(rows) == set(expected)
    with Gradebook(grading.Course(course).db_url) as gb:
        for student, result in results.items():
            csv_score = float(rows[student]["score"])
            if result.error:
                assert csv_score == 0
            else:
                assert gb.find_submission(EXERCISE, student).score == result.score == csv_score
    summary = list(csv.DictReader(open(course / "autograder" / "reports" / f"{EXERCISE}-summary.csv")))
    assert {row["student"] for row in summary} == set(expected)


def test_feedback_is_written_without_hidden_tests(graded):
    course, _, results, _ = graded
    for student, result in results.items():
        page = course / "autograder" / "feedback" / student / EXERCISE / f"{EXERCISE}.html"
        if result.error:
            assert not page.exists()
            continue
        html = page.read_text()
        assert "BEGIN HIDDEN TESTS" not in html and "seed=2024" not in html, student
    wrong_eps = (course / "autograder" / "feedback" / "wrong-missing_eps" / EXERCISE / f"{EXERCISE}.html").read_text()
    assert "eps is missing" in wrong_eps


def test_submissions_are_never_modified(graded):
    _, _, _, before = graded
    for path, content in before.items():
        assert path.read_bytes() == content, path


def test_regrading_gives_the_same_scores(graded):
    course, _, results, _ = graded
    again = grading.grade_student(grading.Course(course), "wrong-keras_momentum_convention", EXERCISE, 600)
    assert again.score == results["wrong-keras_momentum_convention"].score
    assert again.cells == results["wrong-keras_momentum_convention"].cells


def test_lms_downloads_are_collected_and_graded(tmp_path):
    """Canvas-style file names (`<student>_<ids>_<assignment>[-N].ipynb`) end up as nbgrader
    submissions of the right students."""
    course = tmp_path / "course"
    for folder in ("solutions", "exercises"):
        shutil.copytree(REPO / folder, course / folder)
    (course / "autograder").mkdir()
    shutil.copy(REPO / "autograder" / "nbgrader_config.py", course / "autograder")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    released = REPO / "exercises" / EXERCISE / f"{EXERCISE}.ipynb"
    shutil.copy(released, downloads / f"alice_1234_5678_{EXERCISE}.ipynb")
    shutil.copy(released, downloads / f"bob_99_{EXERCISE}-1.ipynb")
    results = grading.grade_assignment(grading.Course(course), EXERCISE, lms_downloads=downloads,
                                       progress=lambda _: None)
    assert sorted(r.student for r in results) == ["alice", "bob"]
    assert all(r.score == 0 and r.max_score == FULL for r in results)
