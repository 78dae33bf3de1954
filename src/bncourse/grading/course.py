"""Every path the grader reads or writes, in one place: a course checkout and its ``autograder/``.

nbgrader's own layout (``release``, ``submitted``, ``autograded``, ``feedback``) lives under
``autograder/``; the grader adds ``checked/`` (the rebuilt notebooks nbgrader records, with the
sandbox's outputs), ``work/`` (each student's saved result, for resuming) and ``reports/``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from .files import write_atomic

CHECKED = "autograder/checked"  # relative to the root: nbgrader's ``submitted_directory`` when recording


@dataclass
class Course:
    """Paths of a course checkout (the repository, or a copy of it that tests grade in)."""

    root: Path
    db_url_override: str | None = None

    @property
    def autograder(self) -> Path:
        return self.root / "autograder"

    @property
    def db_url(self) -> str:
        return self.db_url_override or "sqlite:///" + str(self.autograder / "gradebook.db")

    def submitted(self) -> Path:
        return self.autograder / "submitted"

    def submitted_notebook(self, assignment: str, student: str) -> Path:
        return self.submitted() / student / assignment / f"{assignment}.ipynb"

    def solution(self, assignment: str) -> Path:
        return self.root / "solutions" / assignment / f"{assignment}.ipynb"

    def release(self, assignment: str) -> Path:
        return self.autograder / "release" / assignment / f"{assignment}.ipynb"

    def checked_notebook(self, assignment: str, student: str) -> Path:
        return self.root / CHECKED / student / assignment / f"{assignment}.ipynb"

    def checked_timestamp(self, assignment: str, student: str) -> Path:
        return self.checked_notebook(assignment, student).with_name("timestamp.txt")

    def work(self, assignment: str, student: str) -> Path:
        return self.autograder / "work" / assignment / student

    @property
    def feedback_root(self) -> Path:
        return self.autograder / "feedback"

    def feedback(self, assignment: str, student: str) -> Path:
        return self.feedback_root / student / assignment / f"{assignment}.html"

    @property
    def reports(self) -> Path:
        return self.autograder / "reports"

    @property
    def grades_csv(self) -> Path:
        return self.autograder / "grades.csv"

    def canvas_csv(self, assignment: str) -> Path:
        return self.reports / f"{assignment}-canvas.csv"

    def summary_csv(self, assignment: str) -> Path:
        return self.reports / f"{assignment}-summary.csv"

    def class_report(self, assignment: str) -> Path:
        return self.reports / f"{assignment}-class.html"

    def secret(self) -> bytes:
        """The key behind each student's secret inputs; made once, never committed."""
        path = self.autograder / "grading-secret"
        if not path.exists():
            write_atomic(path, secrets.token_hex(32).encode())
            path.chmod(0o600)
        return path.read_bytes().strip()
