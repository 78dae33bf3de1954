"""How fast `make grade` is, next to plain `nbgrader autograde` on the same class in the same run.

    .venv/bin/python benchmarks/grading_throughput.py [--students 12] [--out results.json]

Builds a temporary course with a class of honest submissions to Exercise 2 (complete, blank and
each realistic wrong answer, repeated), grades it from scratch with 1 worker and with one worker
per core (sandboxes and trusted checks on), then re-grades unchanged (the saved results are
reused). Plain nbgrader grades a copy of the same class (serial, no sandbox, no trusted checks),
with the assignment already recorded, which favours it. Prints the timings, the throughput ratio
and projections for 300 and 1,000 students as JSON. Nothing asserts them.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from bncourse import grading  # noqa: E402
from submissions import new_course, notebooks  # noqa: E402
from wrong_answers import apply  # noqa: E402
from wrong_answers.ex02_batchnorm_forward import EXERCISE, WRONG_ANSWERS  # noqa: E402


def make_course(path: Path, students: int) -> None:
    new_course(path)
    released, good = notebooks()
    kinds = [good, released, *(apply(w, good) for w in WRONG_ANSWERS)]
    for i in range(students):
        folder = path / "autograder" / "submitted" / f"student{i:03d}" / EXERCISE
        folder.mkdir(parents=True)
        nbformat.write(kinds[i % len(kinds)], folder / f"{EXERCISE}.ipynb")


def timed(course: Path, workers: int) -> float:
    start = time.perf_counter()
    grading.grade_assignment(grading.Course(course), EXERCISE, workers=workers, progress=False)
    return time.perf_counter() - start


def plain_nbgrader(course: Path) -> float:
    """Seconds plain `nbgrader autograde` takes on the class (the assignment is recorded first, untimed)."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    run = dict(cwd=course / "autograder", env=env, check=True, capture_output=True)
    subprocess.run(["nbgrader", "generate_assignment", EXERCISE, "--force",
                    "--CourseDirectory.release_directory=autograder/release"], **run)
    start = time.perf_counter()
    subprocess.run(["nbgrader", "autograde", EXERCISE, "--force"], **run)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=12)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    report = {"students": args.students, "cores": cores, "machine": platform.machine(),
              "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}
    for workers in sorted({1, cores}):
        with tempfile.TemporaryDirectory() as tmp:
            make_course(Path(tmp), args.students)
            total = timed(Path(tmp), workers)
            report[f"workers_{workers}"] = {"seconds": round(total, 1),
                                            "seconds_per_notebook": round(total / args.students, 2)}
            if workers == cores:
                report["regrade_unchanged_seconds"] = round(timed(Path(tmp), workers), 1)
    with tempfile.TemporaryDirectory() as tmp:
        make_course(Path(tmp), args.students)
        plain = plain_nbgrader(Path(tmp))
    ours = report[f"workers_{cores}"]["seconds"]
    report["plain_nbgrader_serial_seconds"] = round(plain, 1)
    report["throughput_vs_plain_nbgrader"] = round(plain / ours, 2)
    per_student = ours / args.students
    report["projected_minutes"] = {str(n): round(n * per_student / 60, 1) for n in (300, 1000)}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
