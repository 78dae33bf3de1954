"""The instructor pipeline end to end, in temporary copies of the course.

The main batch (``tests/submissions.py``) holds honest, broken and hostile submissions. The batch
must run to the end, every student must get exactly the points their answers deserve (nothing a
notebook does inside its sandbox can raise them), every problem must be said in words, and
nothing outside the sandboxes may be touched. A smaller class checks that parallel and serial
runs agree, that re-runs are idempotent, that an interrupted run resumes, and that a crash while
writing the gradebook leaves the previous one intact.
"""

import csv
import io
import shutil
import zipfile
from pathlib import Path

import nbformat
import pytest

from bncourse import grading
from bncourse.grading import gradebook, trusted
from submissions import DISAGREES, FULL, LEFTOVER_MARKER, SOLVED_AT, make_class, new_course, notebooks
from wrong_answers import apply
from wrong_answers.ex02_batchnorm_forward import EXERCISE, WRONG_ANSWERS

pytestmark = pytest.mark.slow
LIMITS = grading.Limits(cell_seconds=8, wall_seconds=120)  # short: the hanging submissions stay cheap


def files_under(folder: Path) -> dict:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def running_leftovers() -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if LEFTOVER_MARKER in text and "pytest" not in text:
            found.append(text)
    return found


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = new_course(tmp_path_factory.mktemp("course"))
    expected = make_class(course)
    before = files_under(course / "autograder" / "submitted")
    results = grading.grade_assignment(grading.Course(course), EXERCISE, limits=LIMITS, progress=False)
    return course, expected, {r.student: r for r in results}, before


def test_every_submission_gets_a_result(graded):
    _, expected, results, _ = graded
    assert set(results) == set(expected)


def test_scores_are_what_each_notebook_deserves(graded):
    _, expected, results, _ = graded
    for student, (cell_scores, _) in expected.items():
        result = results[student]
        if cell_scores is None:
            assert result.error and result.score is None, student
            continue
        assert not result.error, (student, result.error)
        got = {c.grade_id: c.score for c in result.cells}
        assert got == cell_scores, (student, grading.format_summary([result]))
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
            assert phrase in text, f"{phrase!r} is not in the summary of {student}:\n{text}"


def test_only_fooled_runs_are_flagged_as_disagreements(graded):
    """Honest notebooks never disagree; the ones that fooled their own run always do."""
    _, _, results, _ = graded
    honest = ["solved", "blank", "prints-warning", *(f"wrong-{w.name}" for w in WRONG_ANSWERS)]
    for student in honest:
        assert not any(DISAGREES in f for f in results[student].flags), (student, results[student].flags)
    assert not results["solved"].flags and not results["prints-warning"].flags
    for student in ("patches-allclose", "fake-check-helpers", "imports-reference"):
        assert any(DISAGREES in f for f in results[student].flags), student


def test_gradebook_and_csv_agree_and_list_every_student(graded):
    from nbgrader.api import Gradebook

    course, expected, results, _ = graded
    with open(course / "autograder" / "grades.csv", newline="") as f:
        rows = {row["student_id"]: row for row in csv.DictReader(f)}
    assert set(rows) == {s for s in expected if not s.startswith("invalid-name-")}  # those are never recorded
    with Gradebook(grading.Course(course).db_url) as gb:
        for student, result in results.items():
            if student.startswith("invalid-name-"):
                continue
            csv_score = float(rows[student]["score"])
            if result.error:
                assert csv_score == 0
            else:
                assert gb.find_submission(EXERCISE, student).score == result.score == csv_score
        # The submission time from `nbgrader collect` reaches the gradebook (late penalties use it).
        assert gb.find_submission(EXERCISE, "solved").timestamp.isoformat().startswith(SOLVED_AT[:10])
    summary = list(csv.DictReader(open(course / "autograder" / "reports" / f"{EXERCISE}-summary.csv")))
    assert {row["student"] for row in summary} == set(expected)


def test_feedback_explains_failures_without_hidden_tests_or_student_html(graded):
    course, _, results, _ = graded
    for student, result in results.items():
        page = course / "autograder" / "feedback" / student / EXERCISE / f"{EXERCISE}.html"
        if result.error:
            assert not page.exists()
            continue
        html = page.read_text()
        assert "BEGIN HIDDEN TESTS" not in html and "seed=2024" not in html, student
        assert "independent check" in html
    feedback = course / "autograder" / "feedback"
    assert "eps is missing" in (feedback / "wrong-missing_eps" / EXERCISE / f"{EXERCISE}.html").read_text()
    page = (feedback / "html-output" / EXERCISE / f"{EXERCISE}.html").read_text()
    assert "<script>document.title" not in page and 'href="javascript:' not in page and '<img src="x" onerror' not in page
    # A notebook that fooled its own run is told what the independent check found.
    assert "eps is missing" in (feedback / "patches-allclose" / EXERCISE / f"{EXERCISE}.html").read_text()


def test_submissions_are_never_modified(graded):
    course, _, _, before = graded
    assert files_under(course / "autograder" / "submitted") == before


def test_nothing_outside_the_sandboxes_is_touched(graded):
    from nbgrader.api import Gradebook

    course, _, results, _ = graded
    assert running_leftovers() == []  # the process left behind was killed with its sandbox
    assert (course / "autograder" / "gradebook.db").read_bytes()[:15] == b"SQLite format 3"
    with Gradebook(grading.Course(course).db_url) as gb:
        assert gb.find_submission(EXERCISE, "leaves-a-process").score == FULL
    handed_in = course / "autograder" / "submitted" / "numpy-beside-notebook" / EXERCISE / "numpy.py"
    assert list(course.rglob("numpy.py")) == [handed_in]  # the one written by a cell stayed in its sandbox
    assert results["reads-solutions"].score == FULL  # it raises if it can see any instructor file


# ---------------------------------------------------------------------------------------------
# A smaller class: parallel vs serial, re-runs, resuming, crashes
# ---------------------------------------------------------------------------------------------

SMALL = ["solved", "blank", "wrong-missing_eps", "wrong-keras_momentum_convention", "os-exit-in-function",
         "deleted-test-cell", "not-json"]


def as_comparable(results):
    return [(r.student, r.score, r.max_score, r.cells, r.flags, r.error) for r in results]


@pytest.fixture(scope="module")
def small_class(tmp_path_factory):
    courses = []
    for name in ("parallel", "serial"):
        course = new_course(tmp_path_factory.mktemp(name))
        make_class(course, only=SMALL)
        (course / "autograder" / "grading-secret").write_text("the same secret for both runs")
        courses.append(course)
    parallel = grading.grade_assignment(grading.Course(courses[0]), EXERCISE, workers=2, limits=LIMITS, progress=False)
    serial = grading.grade_assignment(grading.Course(courses[1]), EXERCISE, workers=1, limits=LIMITS, progress=False)
    return courses[0], parallel, serial


def test_parallel_and_serial_runs_agree(small_class):
    course, parallel, serial = small_class
    assert as_comparable(parallel) == as_comparable(serial)
    assert [r.student for r in parallel] == sorted(SMALL)


def test_rerun_is_idempotent_and_reuses_saved_results(small_class, monkeypatch):
    course, parallel, _ = small_class
    runs = []
    original = trusted.execute_notebook
    monkeypatch.setattr(trusted, "execute_notebook", lambda *a, **k: runs.append(1) or original(*a, **k))
    csv_before = (course / "autograder" / "grades.csv").read_text()
    again = grading.grade_assignment(grading.Course(course), EXERCISE, limits=LIMITS, progress=False)
    assert runs == []
    assert as_comparable(again) == as_comparable(parallel)
    assert (course / "autograder" / "grades.csv").read_text() == csv_before


def test_interrupted_run_resumes_with_only_the_missing_work(small_class, monkeypatch):
    course, parallel, _ = small_class
    shutil.rmtree(course / "autograder" / "work" / EXERCISE / "blank")  # as if the run stopped before it
    runs = []
    original = trusted.execute_notebook
    monkeypatch.setattr(trusted, "execute_notebook", lambda *a, **k: runs.append(1) or original(*a, **k))
    again = grading.grade_assignment(grading.Course(course), EXERCISE, limits=LIMITS, progress=False)
    assert len(runs) == 1
    assert as_comparable(again) == as_comparable(parallel)


def test_a_crash_while_writing_the_gradebook_keeps_the_previous_one(small_class, monkeypatch):
    course, _, _ = small_class
    db = course / "autograder" / "gradebook.db"
    before = db.read_bytes()
    calls = []

    def crash_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("the instructor pressed Ctrl-C")
        return original(*args, **kwargs)

    original = gradebook.record
    monkeypatch.setattr(gradebook, "record", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        grading.grade_assignment(grading.Course(course), EXERCISE, limits=LIMITS, progress=False)
    assert db.read_bytes() == before
    assert not list((course / "autograder").glob("*.partial"))


def test_a_new_version_replaces_the_old_grade(small_class):
    course, parallel, _ = small_class
    released, good = notebooks()
    path = course / "autograder" / "submitted" / "blank" / EXERCISE / f"{EXERCISE}.ipynb"
    nbformat.write(good, path)
    again = {r.student: r for r in grading.grade_assignment(grading.Course(course), EXERCISE, limits=LIMITS,
                                                             progress=False)}
    assert again["blank"].score == FULL
    nbformat.write(released, path)


def test_a_grader_fault_keeps_the_previous_grade_and_says_so(small_class, monkeypatch):
    """When the grader itself fails on a student (not the notebook), nothing about that student
    changes in the gradebook, the summary says so, and the next run tries again."""
    from nbgrader.api import Gradebook

    course, parallel, _ = small_class
    student = "wrong-missing_eps"
    previous = next(r for r in parallel if r.student == student)
    shutil.rmtree(course / "autograder" / "work" / EXERCISE / student)
    original = trusted.run_trusted_checks

    def fails_for_students(checks, plan, seed, limits, slot):
        if seed == 0:  # the self-test still works
            return original(checks, plan, seed, limits, slot)
        raise OSError("No space left on device")

    monkeypatch.setattr(trusted, "run_trusted_checks", fails_for_students)
    again = {r.student: r for r in grading.grade_assignment(grading.Course(course), EXERCISE, limits=LIMITS,
                                                             progress=False)}
    assert "GRADER ERROR" in again[student].error and "No space left" in again[student].error
    with Gradebook(grading.Course(course).db_url) as gb:
        assert gb.find_submission(EXERCISE, student).score == previous.score
    assert again["solved"].score == FULL
    assert not (course / "autograder" / "work" / EXERCISE / student).exists()


def test_late_penalties_are_computed_from_the_trusted_score(tmp_path, monkeypatch):
    """With nbgrader's "zero" penalty a late notebook scores 0: here one whose own run claimed 10
    points but whose answers earn 5. Computed from the claimed 10, the penalty would push it to -5."""
    from datetime import datetime

    from nbgrader.api import Gradebook

    course = new_course(tmp_path / "course")
    with open(course / "autograder" / "nbgrader_config.py", "a") as f:
        f.write('\nc.LateSubmissionPlugin.penalty_method = "zero"\n')
    expected = {student: sum(cells.values()) for student, (cells, _) in
                make_class(course, only=["patches-allclose", "wrong-missing_eps"]).items()}
    (course / "autograder" / "submitted" / "patches-allclose" / EXERCISE / "timestamp.txt").write_text(SOLVED_AT)
    db_url = grading.Course(course).db_url
    monkeypatch.setenv("PATH", gradebook.tool_env()["PATH"])  # a new gradebook runs alembic
    with Gradebook(db_url) as gb:
        gb.update_or_create_assignment(EXERCISE, duedate=datetime(2026, 10, 1))
    results = {r.student: r for r in grading.grade_assignment(grading.Course(course), EXERCISE, limits=LIMITS,
                                                               progress=False)}
    assert results["patches-allclose"].score == 0
    assert results["wrong-missing_eps"].score == expected["wrong-missing_eps"]  # on time: no penalty
    with Gradebook(db_url) as gb:  # "zero" takes away exactly what the answers earned
        assert gb.find_submission(EXERCISE, "patches-allclose").late_submission_penalty == expected["patches-allclose"]


# ---------------------------------------------------------------------------------------------
# Files downloaded from an LMS
# ---------------------------------------------------------------------------------------------

def test_lms_downloads_with_zips_resubmissions_and_unsafe_paths(tmp_path):
    course = new_course(tmp_path / "course")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    released, good = notebooks()
    eps = next(w for w in WRONG_ANSWERS if w.name == "missing_eps")
    nbformat.write(released, downloads / f"alice_1234_5678_{EXERCISE}.ipynb")
    nbformat.write(apply(eps, good), downloads / f"bob_99_{EXERCISE}.ipynb")
    nbformat.write(good, downloads / f"bob_99_{EXERCISE}-1.ipynb")  # the resubmission wins
    # Two students with the same name: never merged (the full marks of the first must survive).
    nbformat.write(good, downloads / f"alicesmith_101_1_{EXERCISE}.ipynb")
    nbformat.write(released, downloads / f"alicesmith_555_2_{EXERCISE}.ipynb")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(f"carol_work/{EXERCISE}.ipynb", nbformat.writes(good))
        z.writestr(f"../../{EXERCISE}.ipynb", nbformat.writes(released))
        z.writestr("../../escaped.txt", "should never be written anywhere")
    (downloads / "carol_77_88_work.zip").write_bytes(archive.getvalue())
    (downloads / "notes.txt").write_text("not a submission")
    (downloads / f"eve_7_8_{EXERCISE}.ipynb").symlink_to(course / "solutions" / EXERCISE / f"{EXERCISE}.ipynb")
    before = files_under(downloads)
    results = {r.student: r for r in grading.grade_assignment(grading.Course(course), EXERCISE, lms_downloads=downloads,
                                                               limits=LIMITS, progress=False)}
    assert sorted(results) == ["101", "1234", "555", "77", "99"]
    assert results["1234"].score == 0 and results["99"].score == FULL and results["77"].score == FULL
    assert results["101"].score == FULL and results["555"].score == 0
    assert results["101"].name == "alicesmith" and results["77"].name == "carol"
    assert any("latest" in f for f in results["99"].flags)
    assert any("unsafe path" in f for f in results["77"].flags)
    assert files_under(downloads) == before
    assert not list(tmp_path.rglob("escaped.txt"))
    summary = (course / "autograder" / "reports" / f"{EXERCISE}-summary.csv").read_text()
    assert "notes.txt" in summary and "eve_7_8" in summary and "link" in summary
    with open(course / "autograder" / "grades.csv", newline="") as f:
        rows = {row["student_id"]: row for row in csv.DictReader(f)}
    assert rows["101"]["last_name"] == "alicesmith" and float(rows["101"]["score"]) == FULL
    assert rows["555"]["last_name"] == "alicesmith" and float(rows["555"]["score"]) == 0
    with open(course / "autograder" / "reports" / f"{EXERCISE}-canvas.csv", newline="") as f:
        canvas = {row["ID"]: row for row in csv.DictReader(f)}
    assert float(canvas["101"][EXERCISE]) == FULL and float(canvas["555"][EXERCISE]) == 0
    assert canvas["101"]["Student"] == "alicesmith"
    assert (course / "autograder" / "reports" / f"{EXERCISE}-class.html").exists()


# ---------------------------------------------------------------------------------------------
# Hostile files around the notebooks (each contained: that student is reported, the rest graded)
# ---------------------------------------------------------------------------------------------

HOSTILE_FILES = ["solved", "links-to-the-solution", "links-to-a-classmate", "stamp-links-to-a-system-file",
                 "stamp-is-a-folder", "stamp-is-malformed", "deeply-nested-expression", "huge-expression",
                 "long-integer-literal", "forged\nrow,0,10", "caf\udce9-latin1"]


def test_hostile_files_are_contained_per_student(tmp_path):
    course = new_course(tmp_path / "course")
    expected = make_class(course, only=HOSTILE_FILES)
    results = {r.student: r for r in grading.grade_assignment(grading.Course(course), EXERCISE, limits=LIMITS,
                                                               progress=False)}
    assert set(results) == set(expected)
    for student, (cell_scores, phrases) in expected.items():
        result = results[student]
        text = grading.format_summary([result])
        if cell_scores is None:
            assert result.error and result.score is None, (student, text)
        else:
            assert not result.error and {c.grade_id: c.score for c in result.cells} == cell_scores, (student, text)
        for phrase in phrases:
            assert phrase in text, f"{phrase!r} is not in the summary of {student}:\n{text}"
    passwd = Path("/etc/passwd").read_text()[:20]
    for path in (course / "autograder").rglob("*"):  # what the grader wrote (not the corpus's own links)
        if path.is_file() and not path.is_symlink() and path.suffix in (".csv", ".txt", ".html"):
            assert passwd not in path.read_text(errors="replace"), path
    with open(course / "autograder" / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["student_id"] for r in rows} == {s for s in expected if not s.startswith("invalid-name-")}
