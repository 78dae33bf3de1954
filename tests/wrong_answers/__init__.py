"""Realistic wrong answers to every exercise, written as edits of the solution's source.

One module per exercise, named after it, defines ``EXERCISE``, ``TEST_CELL_POINTS`` (grade_id of
each test cell -> points) and ``WRONG_ANSWERS``. Each wrong answer is a mistake students make,
applied to the solution notebook as text replacements inside one solution cell. ``fails`` names
the test cells that must lose their points; every other test cell must keep them. ``says`` is a
phrase the first failing visible check's message must contain, so the student is told what the
mistake is, not only that there is one.

A module may also define ``CORRECT_ANSWERS``: answers that are right but written differently from the
solution (another idiom, another order of operations, another structure the specification allows),
in the same form with empty ``fails``. Each must keep every point: they guard against checks that
reject right answers.

``tests/test_checks.py`` runs them in-process against the visible checks;
``tests/test_exercise_grading.py`` grades them end to end through the pipeline.
"""

import copy
import importlib
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class WrongAnswer:
    name: str
    cell: str  # grade_id of the solution cell that is edited
    replacements: tuple  # (old, new) pairs, each old must occur in the cell
    fails: frozenset  # grade_ids of the test cells that must score 0
    says: str = ""  # part of the message the visible check must print
    notes: str = field(default="", compare=False)


def apply(wrong: WrongAnswer, notebook):
    """Return a copy of the solution notebook (an nbformat node) with the mistake made."""
    nb = copy.deepcopy(notebook)
    for cell in nb.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == wrong.cell:
            for old, new in wrong.replacements:
                if old not in cell.source:
                    raise ValueError(f"{wrong.name}: {old!r} is not in cell {wrong.cell}")
                cell.source = cell.source.replace(old, new)
            return nb
    raise ValueError(f"{wrong.name}: no cell {wrong.cell}")


def functions(notebook):
    """The notebook's functions, as attributes: every code cell but the test cells, run in one namespace
    (what the grader's answers sandbox holds, for trusted checks run in-process)."""
    import types

    namespace = {}
    for cell in notebook.cells:
        if cell.cell_type == "code" and not cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
            exec(cell.source, namespace)
    return types.SimpleNamespace(**{k: v for k, v in namespace.items() if callable(v)})


def correct_answers(exercise: str) -> list:
    """The exercise's right-but-different answers (``CORRECT_ANSWERS``; none when it has not any)."""
    return list(getattr(for_exercise(exercise), "CORRECT_ANSWERS", []))


def for_exercise(exercise: str):
    """The module of wrong answers for ``exercise``."""
    return importlib.import_module(f"{__name__}.{exercise}")


EXERCISES = sorted(p.stem for p in Path(__file__).parent.glob("ex*.py"))
