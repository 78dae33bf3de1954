"""Everything that writes nbgrader's gradebook, run by the one trusted grading process.

nbgrader does the bookkeeping it is good at (students, submissions, grade cells, late penalties,
feedback, the CSV export), but it never executes anything here: ``autograde`` is run in-process
with its ``Execute`` step removed, on notebooks that the grader rebuilt and whose outputs came
from the sandbox. Afterwards each test cell's score is set to the trusted verdict.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

from traitlets.config import Config, PyFileConfigLoader

CHECKED = "autograder/checked"  # nbgrader layout of the notebooks the trusted pass reads


def load_config(root: Path, db_url: str, **sections) -> Config:
    """The course's ``nbgrader_config.py``, pointed at ``db_url``, with extra settings."""
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


def prepare(root: Path, db_url: str, assignment: str) -> Path:
    """Record the assignment (cells, points, hidden tests) and return the released notebook's path.

    The release goes to ``autograder/release``; the committed ``exercises/`` is not touched."""
    api = _api(root, db_url, CourseDirectory={"release_directory": "autograder/release"})
    _checked(api.generate_assignment(assignment, force=True), f"record {assignment} in the gradebook")
    return root / "autograder" / "release" / assignment / f"{assignment}.ipynb"


def record(root: Path, db_url: str, assignment: str, student: str, verdicts: dict[str, bool] | None) -> str:
    # nbgrader's own lookups make SQLAlchemy warn about objects not yet in the session; harmless.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _record(root, db_url, assignment, student, verdicts)


def _record(root: Path, db_url: str, assignment: str, student: str, verdicts: dict[str, bool] | None) -> str:
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
    api = _api(root, db_url,
               CourseDirectory={"submitted_directory": CHECKED},
               # The outputs are the sandbox's: keep them (no ClearOutput) and never execute here.
               Autograde={"sanitize_preprocessors": [DeduplicateIds, OverwriteKernelspec, OverwriteCells,
                                                     CheckCellMetadata],
                          "autograde_preprocessors": [IgnorePattern, LimitOutput, SaveAutoGrades,
                                                      CheckCellMetadata]})
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
    notebook = nbformat.read(root / CHECKED / student / assignment / f"{assignment}.ipynb", as_version=4)
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


def feedback(root: Path, db_url: str, assignment: str, show_hidden_tests: bool) -> None:
    preprocessors = ["nbgrader.preprocessors.GetGrades", "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor"]
    if not show_hidden_tests:
        preprocessors.append("nbgrader.preprocessors.ClearHiddenTests")
    # sanitize_html: markdown a student added is rendered without scripts or event handlers.
    api = _api(root, db_url, GenerateFeedback={"preprocessors": preprocessors}, HTMLExporter={"sanitize_html": True})
    _checked(api.generate_feedback(assignment, force=True), "write the feedback")


def export_csv(root: Path, db_url: str, destination: Path) -> None:
    """nbgrader's grades CSV, written to a temporary file and renamed: never half-written."""
    partial = destination.with_name(destination.name + ".partial")
    run = subprocess.run([sys.executable, "-m", "nbgrader", "export", "--to", str(partial),
                          f"--CourseDirectory.db_url={db_url}"],
                         cwd=root / "autograder", capture_output=True, text=True, env=tool_env())
    if run.returncode != 0:
        raise RuntimeError(f"nbgrader export failed:\n{run.stdout}\n{run.stderr}")
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
