"""nbgrader configuration of the course.

nbgrader reads this file when it runs from the ``autograder/`` folder; ``make grade``
(``bncourse.grading``) loads it too. Paths are relative to the course root, the folder above
this one, so that the tests can copy the course to a temporary folder and grade there.

``make grade`` never lets nbgrader execute student code: it runs notebooks in its own sandboxes
and uses nbgrader for the gradebook, feedback and export (see GRADING.md). The execution
settings below apply only when someone runs plain ``nbgrader autograde`` by hand.
"""

import os

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)

COURSE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

c.CourseDirectory.root = COURSE_ROOT
c.CourseDirectory.course_id = "batchnorm-course"
c.CourseDirectory.source_directory = "solutions"  # nbgrader source notebooks (instructor only)
c.CourseDirectory.release_directory = "exercises"  # what students get (committed)
c.CourseDirectory.submitted_directory = "autograder/submitted"
c.CourseDirectory.autograded_directory = "autograder/autograded"
c.CourseDirectory.feedback_directory = "autograder/feedback"
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(COURSE_ROOT, "autograder", "gradebook.db")
# Never copy instructor-side files next to a student's notebook.
# "*.md": the MyST sources in solutions/ (with the solutions) never go into exercises/.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".nbgrader.log", "*.md"]

# Released notebooks carry the course site's address (html.baseurl in _config.yml) in their setup
# cell, so that a notebook opened alone installs the student kit from the site. The rest is
# nbgrader's own list for 0.9.6.
c.GenerateAssignment.preprocessors = [
    "bncourse.site.FillKitSite",
    "nbgrader.preprocessors.IncludeHeaderFooter",
    "nbgrader.preprocessors.InstantiateTests",
    "nbgrader.preprocessors.LockCells",
    "nbgrader.preprocessors.ClearSolutions",
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.CheckCellMetadata",
    "nbgrader.preprocessors.ComputeChecksums",
    "nbgrader.preprocessors.SaveCells",
    "nbgrader.preprocessors.ClearHiddenTests",
    "nbgrader.preprocessors.ClearMarkScheme",
    "nbgrader.preprocessors.ComputeChecksums",
    "nbgrader.preprocessors.CheckCellMetadata",
]

# Execution. `Execute.timeout` is the per-cell limit nbgrader uses (it overrides
# ExecutePreprocessor.timeout). On a timeout the kernel is interrupted and the remaining cells
# still run, so a hanging answer loses only the checks that depend on it.
c.Execute.timeout = 60
c.Execute.interrupt_on_timeout = True
c.Execute.startup_timeout = 120
# Minimal tracebacks ("CheckFailed: <what is wrong>"): the usual context lines would print the
# source of hidden tests into the student's feedback. Our check messages carry the explanation.
c.Execute.extra_arguments = ["--HistoryManager.hist_file=:memory:", "--InteractiveShell.xmode=Minimal"]

# A correct answer that prints a warning on stderr would otherwise score 0: nbgrader counts any
# stderr output in a test cell as a failure. Our checks fail by raising, never by printing, so
# every stderr stream is dropped (both settings are needed for the preprocessor to act).
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"(?s)."

# A student who deletes a test cell gets it back (restored from the gradebook) instead of
# silently skipping the test.
c.OverwriteCells.add_missing_cells = True

# Feedback: hidden test source is never shown to students.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
    "nbgrader.preprocessors.ClearHiddenTests",
]
