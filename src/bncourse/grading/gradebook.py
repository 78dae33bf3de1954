"""Everything that writes nbgrader's gradebook, run by the one trusted grading process.

nbgrader does the bookkeeping it is good at (students, submissions, grade cells, late penalties,
feedback, the CSV export), but it never executes anything here: ``autograde`` is run in-process
with its ``Execute`` step removed, on notebooks that the grader rebuilt and whose outputs came
from the sandbox. Afterwards each test cell's score is set to the trusted verdict.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import sys
import warnings
from pathlib import Path

from traitlets.config import Config, PyFileConfigLoader

from .course import CHECKED, Course


@functools.cache
def alembic_head() -> str:
    """The schema version nbgrader stamps on a new gradebook, read in this process.

    nbgrader finds it by running ``alembic heads`` in a new process for every new gradebook (each
    grading run makes one, its working copy): seconds of a short run. The answer is the same."""
    import nbgrader
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(Path(nbgrader.__file__).parent / "alembic")).get_current_head()


def _use_alembic_head_in_process() -> None:
    import nbgrader.api

    nbgrader.api.get_alembic_version = alembic_head


def load_config(root: Path, db_url: str, **sections) -> Config:
    """The course's ``nbgrader_config.py``, pointed at ``db_url``, with extra settings."""
    _use_alembic_head_in_process()
    config = PyFileConfigLoader("nbgrader_config.py", path=str(root / "autograder")).load_config()
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.db_url = db_url
    for section, values in sections.items():
        for key, value in values.items():
            setattr(config[section], key, value)
    return config


def _api(root: Path, db_url: str, **sections):
    from nbgrader.apps import NbGraderAPI

    return NbGraderAPI(config=load_config(root, db_url, **sections))


def _checked(result: dict, what: str) -> None:
    if not result.get("success"):
        raise RuntimeError(f"nbgrader could not {what}:\n{result.get('log', '')}\n{result.get('error', '')}")


def prepare(course: Course, db_url: str, assignment: str) -> Path:
    """Record the assignment (cells, points, hidden tests) and return the released notebook's path.

    The release goes to ``autograder/release``; the committed ``exercises/`` is not touched."""
    release = course.release(assignment).parents[1].relative_to(course.root)
    api = _api(course.root, db_url, CourseDirectory={"release_directory": str(release)})
    _checked(api.generate_assignment(assignment, force=True), f"record {assignment} in the gradebook")
    return course.release(assignment)


def record(course: Course, db_url: str, assignment: str, student: str, verdicts: dict[str, bool] | None) -> str:
    # nbgrader's own lookups make SQLAlchemy warn about objects not yet in the session; harmless.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _record(course, db_url, assignment, student, verdicts)


def _record(course: Course, db_url: str, assignment: str, student: str, verdicts: dict[str, bool] | None) -> str:
    """Put one student's rebuilt, sandbox-executed notebook in the gradebook, then apply the
    trusted verdicts. ``verdicts`` None means the submission could not be graded: the student is
    listed with no submission (0 points). Returns an error in words, or ''."""
    import nbformat
    from nbgrader.api import Gradebook
    from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, DeduplicateIds, IgnorePattern,
                                        LimitOutput, OverwriteCells, OverwriteKernelspec, SaveAutoGrades)

    if verdicts is None:
        _forget(db_url, assignment, student)
        return ""
    root = course.root
    api = _api(root, db_url,
               CourseDirectory={"submitted_directory": CHECKED},
               # The outputs are the sandbox's: keep them (no ClearOutput) and never execute here.
               # The cells' metadata is checked once, while sanitizing: nothing after that step
               # changes it (nbgrader checks again only because execution could).
               Autograde={"sanitize_preprocessors": [DeduplicateIds, OverwriteKernelspec, OverwriteCells,
                                                     CheckCellMetadata],
                          "autograde_preprocessors": [IgnorePattern, LimitOutput, SaveAutoGrades]})
    result = api.autograde(assignment, student, force=True, create=True)
    if not result.get("success"):
        _forget(db_url, assignment, student)  # never leave an older grade standing for this version
        return "nbgrader could not record the notebook: " + (result.get("error") or result.get("log", ""))[-300:]
    with Gradebook(db_url) as gb:
        for grade_id, passed in verdicts.items():
            grade = gb.find_grade(grade_id, assignment, assignment, student)
            grade.auto_score = grade.max_score if passed else 0.0
        gb.db.commit()
    # Late penalties last, computed from the trusted scores (nbgrader would use the in-kernel ones).
    notebook = nbformat.read(course.checked_notebook(assignment, student), as_version=4)
    resources = {"nbgrader": {"notebook": assignment, "assignment": assignment, "student": student, "db_url": db_url}}
    AssignLatePenalties(config=load_config(root, db_url)).preprocess(notebook, resources)
    return ""


def _forget(db_url: str, assignment: str, student: str) -> None:
    """List the student with no submission (0 points), removing any earlier graded version."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db_url) as gb:
        gb.update_or_create_student(student)
        try:
            gb.remove_submission(assignment, student)
        except MissingEntry:
            pass


def scores(db_url: str, assignment: str, student: str) -> tuple[float, float, float, dict[str, tuple[float, float]]]:
    """(final score, max score, late penalty, per-cell scores); final = raw score - penalty, as
    nbgrader's CSV export computes it."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as gb:
        submission = gb.find_submission(assignment, student)
        cells = {g.name: (g.score, g.max_score) for nb in submission.notebooks for g in nb.grades}
        penalty = submission.late_submission_penalty or 0.0
        return submission.score - penalty, submission.max_score, penalty, cells


def feedback(course: Course, db_url: str, assignment: str, student: str, show_hidden_tests: bool) -> str:
    """Write one student's feedback page from the gradebook (run right after recording them, while
    other students are still in the sandboxes). Returns an error in words, or ''."""
    preprocessors = ["nbgrader.preprocessors.GetGrades", "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor"]
    if not show_hidden_tests:
        preprocessors.append("nbgrader.preprocessors.ClearHiddenTests")
    # sanitize_html: markdown a student added is rendered without scripts or event handlers.
    api = _api(course.root, db_url, GenerateFeedback={"preprocessors": preprocessors},
               HTMLExporter={"sanitize_html": True})
    page = course.feedback(assignment, student)
    page.unlink(missing_ok=True)  # a page left from an earlier grading must not pass for this one
    result = api.generate_feedback(assignment, student, force=True)
    if not result.get("success") or not page.is_file():
        return "nbgrader could not write the feedback page: " + (result.get("error") or result.get("log", ""))[-300:]
    finish_feedback_page(page)
    return ""


MATHJAX_CDN = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S)
MATHJAX_FILE = "mathjax-tex-svg.js"
CHAPTER_LINK = re.compile(r'href="(?:\.\./)+chapters/([A-Za-z0-9_-]+)\.(?:md|ipynb)(#[A-Za-z0-9_-]*)?"')
NO_SITE_NOTE = ('<p id="chapter-link-unavailable"><em>The link to the chapter cannot be followed: the course '
                "site's address (html.baseurl in _config.yml) is not set.</em></p>")
FEEDBACK_STYLE = ("<style>/* bncourse: explanations wrap instead of running off the right edge */\n"
                  "pre, .output_text pre, .jp-OutputArea-output pre, .jp-RenderedText pre "
                  "{white-space: pre-wrap; overflow-wrap: anywhere; word-break: break-word;}</style>")


def offline_mathjax() -> Path | None:
    """MathJax 3 (one self-contained script, SVG output: no fonts to fetch), from sphinx-mathjax-offline."""
    import sysconfig

    for key in ("purelib", "platlib"):
        path = Path(sysconfig.get_paths()[key]) / "sphinx-mathjax-offline" / "static" / "mathjax" / "tex-svg.js"
        if path.is_file():
            return path
    return None


def finish_feedback_page(page: Path, site: str | None = None) -> None:
    """Make a feedback page readable offline: lines wrap, math is rendered by a copy of MathJax
    next to the page (no network), and the link to the chapter points at the published page
    (``html.baseurl`` in ``_config.yml``; the page says so when it is unset)."""
    from ..site import site_url

    site = site_url() if site is None else site
    mathjax = offline_mathjax()
    html = page.read_text(encoding="utf-8")
    if mathjax is not None:
        shutil.copyfile(mathjax, page.with_name(MATHJAX_FILE))
        config = ("<script>window.MathJax = {tex: {inlineMath: [['$', '$'], ['\\\\(', '\\\\)']], "
                  "displayMath: [['$$', '$$'], ['\\\\[', '\\\\]']], processEscapes: true}, "
                  "svg: {fontCache: 'global'}};</script>"
                  f'<script src="{MATHJAX_FILE}"></script>')
        html = MATHJAX_CDN.sub(lambda _: config, html, count=1)
    if site:
        html = CHAPTER_LINK.sub(lambda m: f'href="{site}/chapters/{m[1]}.html{m[2] or ""}"', html)
    elif CHAPTER_LINK.search(html):
        html = CHAPTER_LINK.sub('href="#chapter-link-unavailable"', html)
        html = re.sub(r"(<body[^>]*>)", lambda m: m[1] + NO_SITE_NOTE, html, count=1)
    html = html.replace("</head>", FEEDBACK_STYLE + "</head>", 1)
    write_atomic_text(page, html)


def write_atomic_text(path: Path, text: str) -> None:
    from .files import write_atomic

    write_atomic(path, text.encode("utf-8"))


GRADES_COLUMNS = ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
                  "raw_score", "late_submission_penalty", "score", "max_score", "lms_user_id"]


def set_students(db_url: str, students: dict[str, tuple[str, str | None]]) -> None:
    """Record each student's display name (as ``last_name``; the LMS gives one field) and LMS user
    id, so the exports can be uploaded without matching rows by hand."""
    from nbgrader.api import Gradebook

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Gradebook(db_url) as gb:
            for key, (name, lms_user_id) in students.items():
                student = gb.update_or_create_student(key)
                if name:
                    student.last_name = name[:128]
                if lms_user_id:
                    student.lms_user_id = lms_user_id[:128]
            gb.db.commit()


def grade_rows(db_url: str) -> list[dict]:
    """One row per (assignment, student) in the gradebook, computed as nbgrader's export does."""
    from nbgrader.api import Gradebook, MissingEntry

    rows = []
    with Gradebook(db_url) as gb:
        for assignment in gb.assignments:
            for student in gb.students:
                row = {"assignment": assignment.name, "duedate": assignment.duedate, "student_id": student.id,
                       "last_name": student.last_name, "first_name": student.first_name, "email": student.email,
                       "max_score": assignment.max_score, "lms_user_id": student.lms_user_id}
                try:
                    submission = gb.find_submission(assignment.name, student.id)
                except MissingEntry:
                    row.update(timestamp="", raw_score=0.0, late_submission_penalty=0.0, score=0.0)
                else:
                    penalty = submission.late_submission_penalty or 0.0
                    row.update(timestamp=submission.timestamp, raw_score=submission.score,
                               late_submission_penalty=penalty, score=max(0.0, submission.score - penalty))
                rows.append(row)
    return rows


def export_csv(root: Path, db_url: str, destination: Path) -> None:
    """The grades CSV (nbgrader's columns, plus ``lms_user_id``), every cell quoted and made
    spreadsheet-safe (nbgrader's own export does not quote: a name with a comma forged rows),
    written to a temporary file and renamed: never half-written."""
    from .text import cell

    _write_csv(destination, GRADES_COLUMNS, [[cell(row[k]) for k in GRADES_COLUMNS] for row in grade_rows(db_url)])


def export_canvas(db_url: str, assignment: str, destination: Path, column: str | None = None) -> None:
    """Canvas' gradebook import CSV for one assignment: ``Student, ID, SIS User ID, SIS Login ID,
    Section, <assignment>`` and a ``Points Possible`` row. Canvas matches rows by ``ID`` (the Canvas
    user id the downloaded file names carry); students from other sources go in ``SIS Login ID``.
    ``column`` names the assignment column (Canvas wants ``Name (assignment id)`` to fill an
    existing one; the default makes Canvas create a column)."""
    from .text import cell

    rows = [r for r in grade_rows(db_url) if r["assignment"] == assignment]
    maximum = rows[0]["max_score"] if rows else ""
    body = [["Points Possible", "", "", "", "", cell(maximum)]]
    for r in rows:
        canvas_id = r["lms_user_id"] or ""
        body.append([cell(r["last_name"] or r["student_id"]), cell(canvas_id), "",
                     "" if canvas_id else cell(r["student_id"]), "", cell(r["score"])])
    _write_csv(destination, ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", column or assignment], body)


def _write_csv(destination: Path, header: list[str], rows: list[list[str]]) -> None:
    import csv

    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".partial")
    with open(partial, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_ALL)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(partial, destination)


def tool_env() -> dict:
    """The environment with the virtual environment's tools on PATH (nbgrader runs ``alembic``)."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


class SqliteTransaction:
    """Work on a copy of an SQLite gradebook and put it in place in one rename at the end.

    A crash in the middle leaves the previous gradebook intact. Other databases (PostgreSQL)
    are updated in place, one nbgrader transaction per step."""

    def __init__(self, db_url: str):
        self.db_url = db_url
        self.path = Path(db_url[len("sqlite:///"):]) if db_url.startswith("sqlite:///") else None

    @property
    def working_url(self) -> str:
        return f"sqlite:///{self.partial}" if self.path else self.db_url

    @property
    def partial(self) -> Path:
        return self.path.with_name(self.path.name + ".partial")

    def __enter__(self):
        if self.path:
            self.partial.unlink(missing_ok=True)
            if self.path.exists():
                shutil.copy2(self.path, self.partial)
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.path:
            if exc_type is None:
                os.replace(self.partial, self.path)
            else:
                self.partial.unlink(missing_ok=True)
