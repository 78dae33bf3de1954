"""Verdicts the grader can trust.

Two sandboxed runs per submission (see :mod:`.sandbox`), each in its own module:

* :mod:`.notebook_run` runs the whole rebuilt notebook in an IPython shell, as nbgrader's kernel would. Its
  outputs go into the feedback and give nbgrader's usual *in-kernel* verdict, which student code in
  that kernel can fake.
* :mod:`.answer_server` runs only the student's setup, answer and added cells in a second sandbox
  where the course package, with its reference implementations, is hidden, and calls the student's
  functions on request.

The exercise's trusted checks (``assignments/<name>.py``) run *here, outside the sandboxes*: they
draw secret inputs from a seed per student and submission, send each call across, and compare what
comes back with the reference implementations. Nothing in the student's process takes part in the
comparison, so patching it changes nothing. The trusted verdict is what counts; where the two
disagree the report says so.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass

import numpy as np

from . import sandbox
from .answer_server import AnswerError, Answers, AnswerServer, SandboxFailure  # noqa: F401 - re-exported
from .notebook_run import execute_notebook, in_kernel_verdicts, merge_outputs  # noqa: F401 - re-exported


@dataclass
class CellVerdict:
    passed: bool
    message: str = ""


def student_seed(secret: bytes, assignment: str, student: str, content) -> int:
    """The seed of a submission's secret inputs, from the grader's secret, the assignment, the student
    and the submission's ``content`` (JSON-serialisable: the rebuilt notebook and its plan).

    A student cannot predict the inputs; a re-run on an unchanged submission draws the same ones (so
    grading is reproducible and a saved result stays valid); any change to the submission draws new
    ones, so that values learnt from one grading (a leak, a guess) are of no use in the next."""
    digest_of_content = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    message = json.dumps([assignment, student, digest_of_content]).encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big")


def run_trusted_checks(checks: dict, plan: list[dict], seed: int, limits: sandbox.Limits,
                       slot: int) -> tuple[dict[str, CellVerdict], dict[str, str]]:
    """Each test cell's trusted verdict, and the problems of the student's cells in words."""
    from .. import checks as check_helpers

    verdicts = {}
    with AnswerServer(plan, limits, slot) as server, check_helpers.quiet():
        answers = Answers(server)
        for number, (grade_id, check) in enumerate(checks.items()):
            rng = np.random.default_rng([seed, number])
            try:
                check(answers, rng)
                verdicts[grade_id] = CellVerdict(True)
            except AssertionError as exc:  # CheckFailed and AnswerError
                verdicts[grade_id] = CellVerdict(False, str(exc).strip())
            except SandboxFailure:
                raise  # the grader's fault: the caller keeps the previous grade and retries later
            except Exception as exc:  # noqa: BLE001 - e.g. a check choking on a strange return value
                # Only the type: the message could repeat what the student's function returned, or the
                # secret inputs.
                verdicts[grade_id] = CellVerdict(False, f"the check could not use what the functions returned "
                                                        f"({type(exc).__name__})")
        return verdicts, dict(server.cell_errors)
