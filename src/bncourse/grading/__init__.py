"""Safe, parallel, resumable autograding around nbgrader (``make grade``).

Modules, in the order a submission meets them:
    course      every path the grader reads or writes (the course checkout's autograder/)
    intake      find each student's notebook (nbgrader layout or LMS downloads) and rebuild it
                from the released version
    sandbox     bubblewrap sandboxes with resource limits
    inside/     the programs that run inside a sandbox (no course code is imported there)
    trusted     the in-kernel run (outputs for feedback) and the trusted checks (the scores)
    assignments one module of trusted checks per assignment
    gradebook   the only code that writes nbgrader's gradebook
    pipeline    the batch: parallel workers, saved results, recording as each student finishes
    reports     the class report (HTML, with plots)

Conventions for exercise authors: ``AUTHORING.md`` at the top of the repository.
"""

from .course import Course
from .pipeline import CellResult, StudentResult, format_summary, grade_assignment, main, write_summary
from .sandbox import Limits

__all__ = ["CellResult", "Course", "Limits", "StudentResult", "format_summary", "grade_assignment", "main",
           "write_summary"]
