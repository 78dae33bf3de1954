"""Trusted checks, one module per assignment, named like the assignment.

Each module defines ``CHECKS``: for every test cell (by ``grade_id``) a function
``check(answers, rng)`` that raises ``AssertionError`` (``CheckFailed``) when the student's answer
is wrong. ``answers.<name>`` calls the student's function of that name in the answers sandbox;
``rng`` is a NumPy generator seeded with a secret that differs per student and per cell, so draw
shapes, seeds and parameters from it. A module may also define ``FORBIDDEN``: library calls the
answers must not use, which the grader flags (``grading/forbidden.py``). See ``AUTHORING.md`` at the top of the repository.
"""

import importlib


def trusted_checks(assignment: str) -> dict:
    try:
        module = importlib.import_module(f"{__name__}.{assignment}")
    except ModuleNotFoundError as exc:
        raise LookupError(f"no trusted checks for {assignment}: add src/bncourse/grading/assignments/"
                          f"{assignment}.py (see AUTHORING.md)") from exc
    return module.CHECKS


def forbidden_methods(assignment: str) -> list:
    """The library calls the assignment's answers must not use (``FORBIDDEN``; see ``grading/forbidden.py``)."""
    return list(getattr(importlib.import_module(f"{__name__}.{assignment}"), "FORBIDDEN", []))


def draw_size(rng, low: int, high: int) -> int:
    """A secret size between ``low`` and ``high``, both included."""
    return int(rng.integers(low, high + 1))


def draw_seed(rng) -> int:
    """A secret seed for a check helper's own generator."""
    return int(rng.integers(2**31))
