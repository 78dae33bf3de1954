"""The instructor's grading pipeline (``make grade``): safe, parallel, resumable.

For one assignment, from a folder of submissions to a gradebook, feedback HTML, a grades CSV and
a summary in plain words::

    python -m bncourse.grading ex02_batchnorm_forward            # autograder/submitted/<student>/<assignment>/
    python -m bncourse.grading ex02_batchnorm_forward --lms DIR  # .ipynb/.zip files downloaded from an LMS

Steps (``AUTHORING.md`` and ``autograder/GRADING.md`` say more):

1. record the assignment in a working copy of the gradebook (nbgrader ``generate_assignment``);
2. self-test: the reference solution must pass every trusted check in the sandbox, or nothing is
   graded (a broken sandbox must not give a class zeros);
3. find each student's submission and rebuild it from the release (:mod:`.intake`);
4. per student, in parallel (one worker per core): run the notebook in a sandboxed IPython shell
   for the feedback, and run the trusted checks against the student's functions in a second
   sandbox (:mod:`.trusted`). Each finished student is saved under ``autograder/work/``, so an
   interrupted run resumes where it stopped and a re-run only redoes what changed. As each student
   finishes, the main thread (the only writer) records them in the gradebook (trusted verdicts
   count) and writes their feedback page, while the workers go on with the next students;
5. the gradebook is put in place (one rename), then the grades CSVs, the summary and the class
   report are written (each written whole, then renamed). Paths: :mod:`.course`.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import forbidden, gradebook, intake, reports, sandbox, trusted
from .course import Course
from .text import cell as _cell, one_line, printable, shorten
from .assignments import forbidden_methods, trusted_checks

REPO_ROOT = Path(__file__).resolve().parents[3]
SUMMARY_MESSAGE_CHARS = 300  # a terminal line shows this much of a message, cut after a whole sentence
RESULT_VERSION = 1  # bump to invalidate saved per-student results after changing their meaning


@dataclass
class CellResult:
    grade_id: str
    score: float
    max_score: float
    problem: str = ""  # empty when the cell earned its points


@dataclass
class StudentResult:
    student: str  # the key (nbgrader's student id; from an LMS, the LMS's own identifier)
    score: float | None = None
    max_score: float | None = None
    cells: list[CellResult] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)  # plain-words notes for the instructor
    error: str = ""  # set when the submission could not be graded at all
    name: str = ""  # the display name the LMS gave, printable ('' when none)

    @property
    def status(self) -> str:
        if self.error:
            return "not graded"
        return "full marks" if self.score == self.max_score else "partial" if self.score else "zero"


@dataclass
class Job:
    student: str
    notebook: dict
    plan: list
    seed: int
    key: str


# ---------------------------------------------------------------------------------------------
# One student, in a worker thread (sandboxes only; no gradebook access)
# ---------------------------------------------------------------------------------------------

def _code_fingerprint() -> str:
    """Changes when the checks, the references or the sandbox programs change: the package's
    modules, the check cases (``checks/``), the grading code with each assignment's trusted checks,
    and the student kit's comparisons (``kit/src/bnkit``, the checkout's or the installed one)."""
    package = Path(__file__).resolve().parents[1]
    folders = [package / "checks", Path(__file__).parent, REPO_ROOT / "kit" / "src" / "bnkit"]
    try:
        import bnkit
        folders.append(Path(bnkit.__file__).parent)
    except ImportError:
        pass
    files = sorted({*package.glob("*.py"), *(p for folder in folders for p in folder.glob("**/*.py"))})
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(path.parents[1])).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _annotate(notebook: dict, verdicts: dict[str, trusted.CellVerdict]) -> None:
    """Add the trusted verdict under each test cell, where the student's feedback shows it."""
    for cell in notebook["cells"]:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        verdict = verdicts.get(grade_id)
        if verdict is None or cell["cell_type"] != "code":
            continue
        text = ("Grader's independent check on new inputs: passed \u2713\n" if verdict.passed else
                "Grader's independent check on new inputs: FAILED \u2717\n" + verdict.message + "\n")
        cell["outputs"].append({"output_type": "stream", "name": "stdout", "text": text})


def grade_in_sandboxes(course: Course, assignment: str, job: Job, checks: dict, limits: sandbox.Limits,
                       slots: sandbox.SlotPool) -> dict:
    """Run one student's sandboxes (or reuse a saved result) and write the notebook for the gradebook."""
    saved = course.work(assignment, job.student) / "result.json"
    checked = course.checked_notebook(assignment, job.student)
    if saved.exists() and checked.exists():
        try:
            outcome = json.loads(saved.read_text())
            if outcome.get("key") == job.key:
                return outcome
        except (ValueError, OSError):
            pass  # an unreadable saved result is simply redone
    slot = slots.acquire()
    try:
        executed, run_note = trusted.execute_notebook(job.notebook, limits, slot)
        verdicts, cell_errors = trusted.run_trusted_checks(checks, job.plan, job.seed, limits, slot)
    finally:
        slots.release(slot)
    notebook, merge_note = trusted.merge_outputs(job.notebook, executed)
    in_kernel = trusted.in_kernel_verdicts(notebook) if executed is not None and not merge_note else None
    _annotate(notebook, verdicts)
    outcome = {"key": job.key, "version": RESULT_VERSION, "run_note": run_note or merge_note,
               "in_kernel": in_kernel, "cell_errors": cell_errors,
               "trusted": {k: asdict(v) for k, v in verdicts.items()}}
    intake.write_atomic(checked, json.dumps(notebook, indent=1).encode())
    intake.write_atomic(saved, json.dumps(outcome, indent=1).encode())
    return outcome


def _flags_from(outcome: dict, cell_names_in_order: list[str]) -> list[str]:
    flags = []
    for name in cell_names_in_order:
        if name in outcome["cell_errors"]:
            flags.append(f"cell '{name}' {outcome['cell_errors'][name]}")
    if outcome["run_note"]:
        flags.append(f"the notebook could not be run to the end in Jupyter: {outcome['run_note']} "
                     "(the scores come from the independent checks)")
    for grade_id, verdict in outcome["trusted"].items():
        own = (outcome["in_kernel"] or {}).get(grade_id)
        if own is None or own == verdict["passed"]:
            continue
        if own:
            flags.append(f"DISAGREEMENT on '{grade_id}': the notebook's own run passed it, but the independent "
                         "check on new inputs failed; the independent check counts")
        else:
            flags.append(f"DISAGREEMENT on '{grade_id}': the notebook's own run failed it, but the independent "
                         "check on new inputs passed; the independent check counts")
    return flags


# ---------------------------------------------------------------------------------------------
# The batch
# ---------------------------------------------------------------------------------------------

def _find_submissions(course: Course, assignment: str, lms: Path | None) -> tuple[list[intake.Submission], list[str]]:
    if lms is None:
        return intake.from_submitted_folder(course.submitted(), assignment), []
    submissions, notes = intake.from_lms_folder(lms, assignment)
    for s in submissions:  # keep a copy in nbgrader's layout, for the record (the download is untouched)
        if s.data is not None and s.recordable:
            intake.write_atomic(course.submitted_notebook(assignment, s.student), s.data)
    return submissions, notes


def self_test(course: Course, assignment: str, released: dict, checks: dict, limits: sandbox.Limits) -> None:
    source = course.solution(assignment)
    notebook, plan, _, error = intake.rebuild(source.read_bytes(), released)
    if error:
        raise RuntimeError(f"self-test: the solution notebook cannot be read: {error}")
    verdicts, _ = trusted.run_trusted_checks(checks, plan, 0, limits, 0)
    failed = {k: v.message for k, v in verdicts.items() if not v.passed}
    if failed:
        raise RuntimeError("self-test failed, nothing was graded: the reference solution does not pass the "
                           f"trusted checks in the sandbox: {failed}")


class _Progress:
    """Two bars: the phases (each named while it runs) and the students (each one advances it once
    graded in the sandboxes, recorded in the gradebook and given a feedback page)."""

    PHASES = 5

    def __init__(self, assignment: str, shown: bool):
        from tqdm import tqdm

        self.assignment, self.shown, self._tqdm = assignment, shown, tqdm
        self.phases = tqdm(total=self.PHASES, desc=assignment, unit="phase", disable=not shown, position=0,
                           leave=False)
        self.students = None
        self._started = False

    def phase(self, what: str) -> None:
        if self._started:  # the bar counts finished phases
            self.phases.update()
        self._started = True
        self.phases.set_description(f"{self.assignment}: {what}")

    def start_students(self, total: int, already_done: int = 0) -> None:
        self.students = self._tqdm(total=total, initial=already_done, desc=f"grading {self.assignment}",
                                   unit="student", disable=not self.shown, position=1, leave=False)

    def student_done(self) -> None:
        self.students.update()

    def close(self) -> None:
        if self.students is not None:
            self.students.close()
        self.phases.close()


def grade_assignment(course: Course, assignment: str, lms_downloads: Path | None = None,
                     workers: int | None = None, limits: sandbox.Limits = sandbox.Limits(),
                     progress: bool = True, show_hidden_tests: bool = False) -> list[StudentResult]:
    """Grade every submission of ``assignment``; returns one result per student, sorted by key."""
    sandbox.check_available()
    os.environ["PATH"] = gradebook.tool_env()["PATH"]
    checks, rules = trusted_checks(assignment), forbidden_methods(assignment)
    bars = _Progress(assignment, progress)
    try:
        with gradebook.SqliteTransaction(course.db_url) as db:
            bars.phase("recording the assignment")
            released = _record_assignment(course, db.working_url, assignment, checks)
            bars.phase("self-test (the reference must pass every trusted check)")
            self_test(course, assignment, released, checks, limits)
            bars.phase("reading the submissions")
            submissions, batch_notes = _find_submissions(course, assignment, lms_downloads)
            results, jobs = _plan(course, assignment, submissions, released, rules, limits)
            recorder = _Recorder(course, db.working_url, assignment, results, show_hidden_tests)
            recorder.start(submissions, {job.student for job in jobs})
            bars.phase("grading in the sandboxes, recording each student in the gradebook")
            bars.start_students(len(results), already_done=len(results) - len(jobs))  # nothing to grade
            _grade_jobs(course, assignment, jobs, checks, limits, workers or os.cpu_count() or 1, recorder,
                        batch_notes, bars)
        bars.phase("writing the grades and the reports")
        ordered = [results[s] for s in sorted(results)]
        _write_reports(course, assignment, ordered, batch_notes)
    finally:
        bars.close()
    if progress and batch_notes:
        print("\n".join(_one_line(note) for note in batch_notes))
    return ordered


def _record_assignment(course: Course, db_url: str, assignment: str, checks: dict) -> dict:
    """nbgrader ``generate_assignment`` into the working gradebook; returns the released notebook."""
    released = json.loads(gradebook.prepare(course, db_url, assignment).read_text())
    test_cells = [c["metadata"]["nbgrader"]["grade_id"] for c in released["cells"]
                  if c.get("metadata", {}).get("nbgrader", {}).get("grade")]
    if set(test_cells) != set(checks):
        raise RuntimeError(f"the trusted checks of {assignment} cover {sorted(checks)} but its test cells are "
                           f"{sorted(test_cells)}: every test cell needs exactly one trusted check")
    return released


def _plan(course: Course, assignment: str, submissions: list[intake.Submission], released: dict,
          rules, limits: sandbox.Limits) -> tuple[dict[str, StudentResult], list[Job]]:
    """A result for every submission, and a sandbox job for each one that could be rebuilt."""
    secret, fingerprint = course.secret(), _code_fingerprint()
    results: dict[str, StudentResult] = {}
    jobs: list[Job] = []
    for submission in submissions:
        result = results[submission.student] = StudentResult(submission.student, flags=list(submission.flags),
                                                             name=submission.name)
        if submission.error:
            result.error = submission.error
            continue
        try:  # one crafted notebook never stops the batch
            notebook, plan, flags, error = intake.rebuild(submission.data, released)
            result.flags.extend(flags)
            if error:
                result.error = error
                continue
            result.flags.extend(intake.copied_from_reference(plan))
            result.flags.extend(forbidden.flags(plan, rules))
            seed = trusted.student_seed(secret, assignment, submission.student, [notebook, plan])
            key = hashlib.sha256(json.dumps([RESULT_VERSION, fingerprint, seed, notebook, plan, released,
                                             asdict(limits)], sort_keys=True).encode()).hexdigest()
        except (Exception, RecursionError, MemoryError) as exc:  # noqa: BLE001
            result.error = f"the notebook could not be prepared for grading ({type(exc).__name__}: {exc})"
            continue
        jobs.append(Job(submission.student, notebook, plan, seed, key))
    return results, jobs


class _Recorder:
    """The one writer of the gradebook and the feedback, in the main thread.

    Each student is recorded as soon as their sandboxes finish, while the workers grade the next
    ones: nbgrader's bookkeeping overlaps the sandboxes instead of following them. The order of the
    writes does not change what is written (each student's rows are their own)."""

    def __init__(self, course: Course, db_url: str, assignment: str, results: dict[str, StudentResult],
                 show_hidden_tests: bool):
        self.course, self.db_url, self.assignment = course, db_url, assignment
        self.results, self.show_hidden_tests = results, show_hidden_tests

    def start(self, submissions: list[intake.Submission], graded: set[str]) -> None:
        """Names, LMS ids and submission times first (autograde reads the time for late penalties),
        then the students with nothing to grade: listed with no submission (0 points)."""
        gradebook.set_students(self.db_url, {s.student: (s.name, s.student if s.lms == "canvas" else None)
                                             for s in submissions if s.recordable})
        for s in submissions:
            stamp = self.course.checked_timestamp(self.assignment, s.student)
            if s.timestamp:
                intake.write_atomic(stamp, s.timestamp.encode())
            else:
                stamp.unlink(missing_ok=True)
        for s in submissions:
            if s.recordable and s.student not in graded:
                gradebook.record(self.course, self.db_url, self.assignment, s.student, None)
                # An older page would describe a notebook that is no longer the one handed in.
                self.course.feedback(self.assignment, s.student).unlink(missing_ok=True)

    def record(self, student: str, outcome: dict, plan: list[dict]) -> None:
        result = self.results[student]
        result.flags.extend(_flags_from(outcome, [cell["name"] for cell in plan]))
        verdicts = {k: v["passed"] for k, v in outcome["trusted"].items()}
        error = gradebook.record(self.course, self.db_url, self.assignment, student, verdicts)
        if error:
            result.error = error
            return
        result.score, result.max_score, penalty, cells = gradebook.scores(self.db_url, self.assignment, student)
        if penalty:
            result.flags.append(f"late: a penalty of {penalty:g} points was applied")
        for grade_id in sorted(cells):
            score, maximum = cells[grade_id]
            verdict = outcome["trusted"].get(grade_id, {})
            problem = "" if score >= maximum else verdict.get("message", "failed")
            result.cells.append(CellResult(grade_id, score, maximum, problem))
        feedback_error = gradebook.feedback(self.course, self.db_url, self.assignment, student,
                                            self.show_hidden_tests)
        if feedback_error:
            result.flags.append(feedback_error + " (the grade is recorded)")


def _grade_jobs(course: Course, assignment: str, jobs: list[Job], checks: dict, limits: sandbox.Limits,
                workers: int, recorder: _Recorder, batch_notes: list[str], bars: _Progress) -> None:
    """The sandboxes, one worker thread per slot; each finished student is recorded at once."""
    with sandbox.SlotPool(workers, limits) as slots, ThreadPoolExecutor(max_workers=workers) as pool:
        if slots.cgroups.kind == "none" and os.geteuid() == 0:
            batch_notes.append("warning: no control groups could be created on this machine, so each sandbox's "
                               "memory and process count are capped per process only (see GRADING.md)")
        futures = {pool.submit(grade_in_sandboxes, course, assignment, job, checks, limits, slots): job
                   for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            try:
                outcome = future.result()
            except Exception as exc:  # noqa: BLE001 - one student's failure never stops the batch
                # A fault of the grader, not of the notebook: the student's gradebook entry is
                # left as it was and nothing is saved, so the next run tries again.
                recorder.results[job.student].error = (
                    "GRADER ERROR, not graded (run make grade again; the gradebook keeps this student's "
                    f"previous result): {type(exc).__name__}: {exc}")
            else:
                recorder.record(job.student, outcome, job.plan)
            bars.student_done()


def _write_reports(course: Course, assignment: str, ordered: list[StudentResult], batch_notes: list[str]) -> None:
    course.reports.mkdir(parents=True, exist_ok=True)
    gradebook.export_csv(course.root, course.db_url, course.grades_csv)
    gradebook.export_canvas(course.db_url, assignment, course.canvas_csv(assignment))
    write_summary(ordered, course.summary_csv(assignment), batch_notes)
    reports.write_class_report(ordered, assignment, course.class_report(assignment),
                               lambda student: course.feedback(assignment, student))


_printable = printable


def _one_line(text: str) -> str:
    """For the terminal: one line, cut after a whole sentence."""
    return shorten(text, SUMMARY_MESSAGE_CHARS)


def write_summary(results: list[StudentResult], destination: Path, batch_notes: list[str] = ()) -> None:
    partial = destination.with_name(destination.name + ".partial")
    with open(partial, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_ALL)
        writer.writerow(["student", "name", "status", "score", "max_score", "problems"])
        for r in results:  # whole messages (a cell is cut only at a spreadsheet's limit, after a sentence)
            problems = [one_line(r.error)] if r.error else []
            problems += [f"{c.grade_id}: {one_line(c.problem)}" for c in r.cells if c.problem]
            problems += [one_line(f) for f in r.flags]
            writer.writerow([_cell(v) for v in (r.student, r.name, r.status, r.score, r.max_score,
                                                 " | ".join(problems))])
        for note in batch_notes:
            writer.writerow(["", "", "note", "", "", _cell(one_line(note))])
    os.replace(partial, destination)


def format_summary(results: list[StudentResult]) -> str:
    lines = [f"{'student':<24} {'score':>11}  status / problems"]
    for r in results:
        score = f"{r.score:g}/{r.max_score:g}" if r.score is not None else "-"
        who = _one_line(f"{r.student} ({r.name})" if r.name else r.student)
        lines.append(f"{who:<24} {score:>11}  {_one_line(r.error) or r.status}")
        for cell in r.cells:
            if cell.problem:
                lines.append(f"{'':<38}- {cell.grade_id} ({cell.score:g}/{cell.max_score:g}): {_one_line(cell.problem)}")
        for flag in r.flags:
            lines.append(f"{'':<38}! {_one_line(flag)}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("assignment", help="assignment name, e.g. ex02_batchnorm_forward")
    parser.add_argument("--lms", type=Path, help="folder of .ipynb/.zip files downloaded from an LMS")
    parser.add_argument("--course-root", type=Path, default=REPO_ROOT, help="course checkout to grade in")
    parser.add_argument("--workers", type=int, help="submissions graded at once (default: number of cores)")
    parser.add_argument("--db-url", help="gradebook database URL (default: sqlite autograder/gradebook.db), e.g. "
                                         "postgresql+psycopg://grader@dbhost/course")
    defaults = sandbox.Limits()
    parser.add_argument("--cell-timeout", type=int, default=defaults.cell_seconds, help="seconds per cell or call")
    parser.add_argument("--student-timeout", type=float, default=defaults.wall_seconds,
                        help="seconds for a whole notebook run")
    parser.add_argument("--memory-mb", type=int, default=defaults.memory_mb, help="address space per process")
    parser.add_argument("--feedback-shows-hidden-tests", action="store_true",
                        help="keep hidden test source in the feedback HTML (off by default)")
    args = parser.parse_args(argv)
    course = Course(args.course_root.resolve(), args.db_url)
    limits = sandbox.Limits(wall_seconds=args.student_timeout, cell_seconds=args.cell_timeout,
                            memory_mb=args.memory_mb)
    results = grade_assignment(course, args.assignment, args.lms, args.workers, limits,
                               show_hidden_tests=args.feedback_shows_hidden_tests)
    print()
    print(format_summary(results) if results else "No submissions found under autograder/submitted/.")
    print(f"\nGrades CSV:   {course.grades_csv}")
    print(f"Canvas CSV:   {course.canvas_csv(args.assignment)} (Canvas: Grades > Import)")
    print(f"Summary CSV:  {course.summary_csv(args.assignment)}")
    print(f"Class report: {course.class_report(args.assignment)}")
    print(f"Feedback:     {course.autograder / 'feedback'}/<student>/{args.assignment}/")
    return 0
