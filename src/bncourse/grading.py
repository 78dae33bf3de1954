"""The instructor's grading pipeline around nbgrader (``make grade``).

From a folder of submissions to autograded notebooks, feedback HTML, a grades CSV and a
per-student summary in plain words::

    python -m bncourse.grading ex02_batchnorm_forward            # autograder/submitted/<student>/<assignment>/
    python -m bncourse.grading ex02_batchnorm_forward --lms DIR  # .ipynb/.zip files downloaded from an LMS

Steps, each a plain nbgrader command run from ``autograder/`` (where ``nbgrader_config.py`` is):

1. ``generate_assignment`` into ``autograder/release`` so the gradebook knows the assignment,
   its cells, points and hidden tests (the committed ``exercises/`` is not touched);
2. with ``--lms``: ``zip_collect`` turns the downloaded files into nbgrader's
   ``submitted/<student>/<assignment>/`` layout;
3. ``autograde`` once per student, each in its own process with a wall-time limit, so that one
   broken notebook never stops the batch;
4. ``generate_feedback`` and ``export`` (the CSV is written to a temporary file, then renamed);
5. a summary per student: score, and what went wrong in words (a check that failed and why, a
   cell that timed out, a test cell that was deleted or edited and has been restored).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# How much of a failed check's message a summary line shows (its start says what failed).
SUMMARY_MESSAGE_CHARS = 300


@dataclass
class CellResult:
    grade_id: str
    score: float
    max_score: float
    problem: str = ""  # empty when the cell earned its points


@dataclass
class StudentResult:
    student: str
    score: float | None = None
    max_score: float | None = None
    cells: list[CellResult] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)  # plain-words notes for the instructor
    error: str = ""  # set when the submission could not be graded at all

    @property
    def status(self) -> str:
        if self.error:
            return "not graded"
        return "full marks" if self.score == self.max_score else "partial" if self.score else "zero"


@dataclass
class Course:
    """Paths of a course checkout (the repository, or a copy of it that tests grade in)."""

    root: Path

    @property
    def autograder(self) -> Path:
        return self.root / "autograder"

    def submitted(self, student: str, assignment: str) -> Path:
        return self.autograder / "submitted" / student / assignment

    def autograded_notebook(self, student: str, assignment: str) -> Path:
        return self.autograder / "autograded" / student / assignment / f"{assignment}.ipynb"

    def released_notebook(self, assignment: str) -> Path:
        return self.root / "exercises" / assignment / f"{assignment}.ipynb"

    @property
    def db_url(self) -> str:
        return "sqlite:///" + str(self.autograder / "gradebook.db")


def nbgrader(course: Course, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run one nbgrader command from ``autograder/`` with the virtual environment's tools on PATH
    (nbgrader shells out to ``alembic`` to create the gradebook)."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course.autograder, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _nbgrader_checked(course: Course, *args: str) -> subprocess.CompletedProcess:
    result = nbgrader(course, *args)
    if result.returncode != 0:
        raise RuntimeError(f"`nbgrader {' '.join(args)}` failed:\n{result.stdout}\n{result.stderr}")
    return result


def prepare_gradebook(course: Course, assignment: str) -> None:
    """Record the assignment (cells, points, hidden tests) in the gradebook."""
    _nbgrader_checked(course, "generate_assignment", assignment, "--force",
                      "--CourseDirectory.release_directory=autograder/release")


def collect_from_lms(course: Course, assignment: str, downloads: Path) -> None:
    """Copy an LMS download (``<student>_..._<notebook>.ipynb`` files or ``<student>.zip``
    archives) into nbgrader's submitted layout with ``nbgrader zip_collect``."""
    archive = course.autograder / "downloaded" / assignment / "archive"
    archive.mkdir(parents=True, exist_ok=True)
    for item in sorted(downloads.iterdir()):
        if item.is_file():
            (archive / item.name).write_bytes(item.read_bytes())
    _nbgrader_checked(course, "zip_collect", assignment, "--force")


def _read_notebook(path: Path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _nbgrader_cells(notebook) -> dict:
    cells = {}
    for cell in notebook.get("cells", []):
        meta = cell.get("metadata", {}).get("nbgrader")
        if isinstance(meta, dict) and "grade_id" in meta:
            cells[meta["grade_id"]] = cell
    return cells


def _source(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def inspect_submission(course: Course, student: str, assignment: str) -> tuple[list[str], str]:
    """What a submission changed that it should not have, in words, before grading it.

    Returns ``(flags, error)``; ``error`` is set when the file cannot be graded at all.
    Only reads the submission: the student's file is never modified.
    """
    path = course.submitted(student, assignment) / f"{assignment}.ipynb"
    if not path.exists():
        found = sorted(p.name for p in course.submitted(student, assignment).glob("*.ipynb"))
        return [], (f"no file named {assignment}.ipynb was submitted" + (f" (found: {', '.join(found)})" if found else ""))
    try:
        submitted = _read_notebook(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return [], f"the notebook is not valid JSON and cannot be opened ({exc.__class__.__name__}: {exc})"
    released = _nbgrader_cells(_read_notebook(course.released_notebook(assignment)))
    theirs = _nbgrader_cells(submitted)
    flags = []
    for grade_id, cell in released.items():
        meta = cell["metadata"]["nbgrader"]
        if not meta.get("locked"):
            continue
        kind = "test cell" if meta.get("grade") else "read-only cell"
        if grade_id not in theirs:
            flags.append(f"{kind} '{grade_id}' was deleted; it was restored before grading")
        elif _source(theirs[grade_id]).strip() != _source(cell).strip():
            flags.append(f"{kind} '{grade_id}' was edited; the original was restored before grading")
    return flags, ""


def _cell_problem(cell) -> str:
    """The first error a graded cell printed, in one line."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            name, value = output.get("ename", "Error"), " ".join(str(output.get("evalue", "")).split())
            # On a timeout nbgrader interrupts the kernel, which raises KeyboardInterrupt in the cell.
            if name in ("CellTimeoutError", "KeyboardInterrupt"):
                return "timed out (the kernel was interrupted at the per-cell time limit)"
            return f"{name}: {value}"[:SUMMARY_MESSAGE_CHARS]
    return "failed"


def _cells_with_errors(cells: dict) -> list[str]:
    """Ungraded cells (the student's answers) that raised or timed out, in words."""
    problems = []
    for grade_id, cell in cells.items():
        if cell["metadata"]["nbgrader"].get("grade"):
            continue
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            problem = _cell_problem(cell)
            problems.append(f"cell '{grade_id}' " + (problem if problem.startswith("timed out") else f"raised {problem}"))
    return problems


def read_scores(course: Course, student: str, assignment: str, result: StudentResult) -> None:
    """Fill ``result`` with the gradebook's scores and the failed checks' messages."""
    from nbgrader.api import Gradebook

    with Gradebook(course.db_url) as gb:
        submission = gb.find_submission(assignment, student)
        result.score, result.max_score = submission.score, submission.max_score
        autograded_path = course.autograded_notebook(student, assignment)
        graded_cells = _nbgrader_cells(_read_notebook(autograded_path)) if autograded_path.exists() else {}
        for notebook in submission.notebooks:
            for grade in sorted(notebook.grades, key=lambda g: g.name):
                problem = ""
                if grade.score < grade.max_score:
                    cell = graded_cells.get(grade.name)
                    problem = _cell_problem(cell) if cell else "no output"
                result.cells.append(CellResult(grade.name, grade.score, grade.max_score, problem))
        result.flags.extend(_cells_with_errors(graded_cells))


def _record_ungradable(course: Course, student: str) -> None:
    """Put the student in the gradebook so the grades CSV lists them (with 0) rather than
    silently leaving them out."""
    from nbgrader.api import Gradebook

    with Gradebook(course.db_url) as gb:
        gb.update_or_create_student(student)


def grade_student(course: Course, student: str, assignment: str, student_timeout: float,
                  cell_timeout: int | None = None) -> StudentResult:
    result = StudentResult(student)
    flags, error = inspect_submission(course, student, assignment)
    result.flags.extend(flags)
    if error:
        result.error = error
        _record_ungradable(course, student)
        return result
    try:
        extra = [f"--Execute.timeout={cell_timeout}"] if cell_timeout else []
        run = nbgrader(course, "autograde", assignment, "--student", student, "--create", "--force", *extra,
                       timeout=student_timeout)
    except subprocess.TimeoutExpired:
        result.error = f"grading took longer than {student_timeout:.0f} s and was stopped"
        _record_ungradable(course, student)
        return result
    if not course.autograded_notebook(student, assignment).exists():
        detail = [line for line in (run.stdout + run.stderr).splitlines() if "ERROR" in line or "Error" in line]
        result.error = "nbgrader could not grade the notebook" + (f": {detail[-1].strip()}" if detail else "")
        _record_ungradable(course, student)
        return result
    read_scores(course, student, assignment, result)
    return result


def students_with_submissions(course: Course, assignment: str) -> list[str]:
    base = course.autograder / "submitted"
    if not base.exists():
        return []
    return sorted(p.name for p in base.iterdir() if (p / assignment).is_dir())


def export_grades(course: Course, destination: Path) -> None:
    """Write nbgrader's grades CSV atomically: a crash never leaves a half-written file."""
    partial = destination.with_name(destination.name + ".partial")
    _nbgrader_checked(course, "export", "--to", str(partial))
    os.replace(partial, destination)


def write_summary(results: list[StudentResult], destination: Path) -> None:
    partial = destination.with_name(destination.name + ".partial")
    with open(partial, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "status", "score", "max_score", "problems"])
        for r in results:
            problems = [r.error] if r.error else []
            problems += [f"{c.grade_id}: {c.problem}" for c in r.cells if c.problem]
            problems += r.flags
            writer.writerow([r.student, r.status, r.score, r.max_score, " | ".join(problems)])
    os.replace(partial, destination)


def format_summary(results: list[StudentResult]) -> str:
    lines = [f"{'student':<24} {'score':>11}  status / problems"]
    for r in results:
        score = f"{r.score:g}/{r.max_score:g}" if r.score is not None else "-"
        lines.append(f"{r.student:<24} {score:>11}  {r.error or r.status}")
        for cell in r.cells:
            if cell.problem:
                lines.append(f"{'':<38}- {cell.grade_id} ({cell.score:g}/{cell.max_score:g}): {cell.problem}")
        for flag in r.flags:
            lines.append(f"{'':<38}! {flag}")
    return "\n".join(lines)


def grade_assignment(course: Course, assignment: str, lms_downloads: Path | None = None,
                     student_timeout: float = 600, cell_timeout: int | None = None,
                     progress=print) -> list[StudentResult]:
    """Grade every submission of ``assignment``; returns one result per student."""
    prepare_gradebook(course, assignment)
    if lms_downloads is not None:
        collect_from_lms(course, assignment, lms_downloads)
    students = students_with_submissions(course, assignment)
    results = []
    for i, student in enumerate(students, 1):
        progress(f"[{i}/{len(students)}] grading {student}")
        results.append(grade_student(course, student, assignment, student_timeout, cell_timeout))
    if students:
        _nbgrader_checked(course, "generate_feedback", assignment, "--force")
    reports = course.autograder / "reports"
    reports.mkdir(exist_ok=True)
    export_grades(course, course.autograder / "grades.csv")
    write_summary(results, reports / f"{assignment}-summary.csv")
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("assignment", help="assignment name, e.g. ex02_batchnorm_forward")
    parser.add_argument("--lms", type=Path, help="folder of .ipynb/.zip files downloaded from an LMS")
    parser.add_argument("--course-root", type=Path, default=REPO_ROOT, help="course checkout to grade in")
    parser.add_argument("--student-timeout", type=float, default=600,
                        help="wall-time limit for grading one submission, in seconds (default 600)")
    parser.add_argument("--cell-timeout", type=int,
                        help="seconds one cell may run before it is interrupted (default: nbgrader_config.py's)")
    args = parser.parse_args(argv)
    course = Course(args.course_root.resolve())
    results = grade_assignment(course, args.assignment, args.lms, args.student_timeout, args.cell_timeout)
    print()
    print(format_summary(results) if results else "No submissions found under autograder/submitted/.")
    print(f"\nGrades CSV:   {course.autograder / 'grades.csv'}")
    print(f"Summary CSV:  {course.autograder / 'reports' / (args.assignment + '-summary.csv')}")
    print(f"Feedback:     {course.autograder / 'feedback'}/<student>/{args.assignment}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
