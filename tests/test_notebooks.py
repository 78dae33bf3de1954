"""Notebook hygiene: exercises/ is exactly what nbgrader generates from solutions/, and no
notebook in either is stored with outputs."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ASSIGNMENTS, REPO

NOTEBOOKS = sorted((REPO / "solutions").glob("*/*.ipynb")) + sorted((REPO / "exercises").glob("*/*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(REPO)))
def test_stored_without_outputs(path):
    cells = json.loads(path.read_text())["cells"]
    dirty = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and (c["outputs"] or c["execution_count"])]
    assert not dirty, f"{path.name}: code cells {dirty} carry outputs; clear them before committing"


def test_every_solution_has_an_exercise():
    assert ASSIGNMENTS
    assert sorted(p.name for p in (REPO / "exercises").iterdir() if p.is_dir()) == ASSIGNMENTS


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_exercises_are_what_nbgrader_generates(assignment, tmp_path):
    course = tmp_path / "course"
    shutil.copytree(REPO / "solutions", course / "solutions")
    shutil.copytree(REPO / "autograder", course / "autograder",
                    ignore=shutil.ignore_patterns("submitted", "autograded", "feedback", "release", "*.db", "reports"))
    subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", assignment, "--no-db", "--force"],
                   cwd=course / "autograder", check=True, capture_output=True)
    name = f"{assignment}/{assignment}.ipynb"
    generated = json.loads((course / "exercises" / name).read_text())
    committed = json.loads((REPO / "exercises" / name).read_text())
    assert committed == generated, f"exercises/{name} is out of date: run `make exercises` and commit the result"


def test_released_exercise_has_no_solutions_or_hidden_tests():
    for path in (REPO / "exercises").glob("*/*.ipynb"):
        text = path.read_text()
        for marker in ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS", "seed=2024"):
            assert marker not in text, f"{path.name} leaks {marker!r}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_test_cell_has_a_trusted_check_that_the_solution_passes(assignment):
    """The grader refuses an assignment whose test cells and trusted checks differ, and refuses to
    grade when the reference solution fails its trusted checks; catch both here, early."""
    import json

    from bncourse.grading import Limits, pipeline
    from bncourse.grading.assignments import trusted_checks

    released = json.loads((REPO / "exercises" / assignment / f"{assignment}.ipynb").read_text())
    test_cells = {c["metadata"]["nbgrader"]["grade_id"] for c in released["cells"]
                  if c["metadata"].get("nbgrader", {}).get("grade")}
    checks = trusted_checks(assignment)
    assert set(checks) == test_cells
    pipeline.self_test(pipeline.Course(REPO), assignment, released, checks, Limits(cell_seconds=30))


def test_solution_notebooks_are_made_from_their_myst_sources():
    """solutions/<ex>/<ex>.md is the source; the .ipynb nbgrader reads is generated from it, and current."""
    from bncourse import solution_sources

    assert [p.parent.name for p in solution_sources.sources()] == ASSIGNMENTS
    assert solution_sources.main(["--check"]) == 0, "run `make solution-notebooks`"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_released_folder_holds_the_notebook_only(assignment):
    assert [p.name for p in (REPO / "exercises" / assignment).iterdir()] == [f"{assignment}.ipynb"]
