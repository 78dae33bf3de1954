"""Classes of submissions, each with the result it deserves.

``make_honest_class(course, exercise)`` writes the honest work on any exercise. The rest of this
module builds a larger class for Exercise 2: ``make_class(course)`` writes it in nbgrader's layout
under ``<course>/autograder/submitted`` and returns, per student, the expected score of every test
cell (None: not gradable at all) and phrases the summary must contain. Three kinds:

* honest work: the solution, the blank exercise and every realistic wrong answer;
* broken notebooks: a cell that raises or never ends, deleted/edited/retyped cells, broken
  metadata, an old nbformat, a renamed file, two versions of the notebook, invalid JSON;
* hostile notebooks, each a known way to fool plain nbgrader or to reach outside: patching
  ``np.allclose`` or the check helpers, wrapping IPython's ``run_cell``, a ``numpy.py`` beside
  the notebook, swallowing ``KeyboardInterrupt``, ``os._exit``, importing the reference solution,
  reading solutions and the gradebook, a process left behind to rewrite the gradebook, a fork
  flood, a memory hog, HTML/JavaScript in outputs;
* hostile files around the notebook: a notebook linked to the solution, a student folder linked to
  a classmate's, ``timestamp.txt`` linked to a system file, a folder or garbage; a function too
  deep (RecursionError) or too big (MemoryError) for the copy detector's parser; an integer
  literal too long for Python's JSON reader; folder names with a newline and comma or non-UTF-8
  bytes (reported under ``invalid-name-…``, never put in the gradebook).

A hostile notebook that fools the in-kernel run must still get only the points its answers
deserve; several must be flagged as a disagreement between the two verdicts.
"""

import copy
import json
import os
import shutil
import time
from pathlib import Path

import nbformat

from conftest import REPO
import wrong_answers
from wrong_answers import apply
from wrong_answers.ex02_batchnorm_forward import EXERCISE, TEST_CELL_POINTS, WRONG_ANSWERS

FULL = sum(TEST_CELL_POINTS.values())
# The flag a submission gets when its own run and the trusted check disagree.
DISAGREES = "DISAGREEMENT"
SOLVED_AT = "2026-11-01 12:00:00.000000 UTC"  # nbgrader collect's timestamp.txt format
# A marker that a process left behind by a submission puts in its command line.
LEFTOVER_MARKER = "bncourse-leftover-process-test"


def new_course(path: Path) -> Path:
    """A copy of the course to grade in: solutions, exercises and the nbgrader configuration."""
    for folder in ("solutions", "exercises"):
        shutil.copytree(REPO / folder, path / folder)
    (path / "autograder").mkdir()
    shutil.copy(REPO / "autograder" / "nbgrader_config.py", path / "autograder")
    return path


def cell(nb, grade_id):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def student_version(released, solution):
    """What a student who solved everything submits: the released notebook with the answer
    cells filled in (hidden tests are not in it)."""
    nb = copy.deepcopy(released)
    for c in nb.cells:
        meta = c.metadata.get("nbgrader", {})
        if meta.get("solution"):
            lines = cell(solution, meta["grade_id"]).source.splitlines()
            c.source = "\n".join(line for line in lines if "### BEGIN SOLUTION" not in line
                                 and "### END SOLUTION" not in line)
    return nb


def notebooks(exercise=EXERCISE):
    """The released notebook and a solved student version of it."""
    released = nbformat.read(REPO / "exercises" / exercise / f"{exercise}.ipynb", as_version=4)
    solution = nbformat.read(REPO / "solutions" / exercise / f"{exercise}.ipynb", as_version=4)
    return released, student_version(released, solution)


def submit_notebook(course: Path, exercise: str, student: str, notebook) -> None:
    folder = course / "autograder" / "submitted" / student / exercise
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, folder / f"{exercise}.ipynb")


def make_honest_class(course: Path, exercise: str) -> dict:
    """Honest work on any exercise: the solution, the blank exercise and each of its realistic wrong
    answers. Returns the expected score of every test cell, per student."""
    answers = wrong_answers.for_exercise(exercise)
    points = answers.TEST_CELL_POINTS
    released, good = notebooks(exercise)
    expected = {"solved": dict(points), "blank": {c: 0 for c in points}}
    submit_notebook(course, exercise, "solved", good)
    submit_notebook(course, exercise, "blank", released)
    for w in answers.WRONG_ANSWERS:
        submit_notebook(course, exercise, f"wrong-{w.name}", apply(w, good))
        expected[f"wrong-{w.name}"] = {c: (0 if c in w.fails else p) for c, p in points.items()}
    for right in wrong_answers.correct_answers(exercise):
        submit_notebook(course, exercise, f"right-{right.name}", apply(right, good))
        expected[f"right-{right.name}"] = dict(points)
    return expected


def scores(failing=()):
    return {c: (0 if c in failing else pts) for c, pts in TEST_CELL_POINTS.items()}


ALL = frozenset(TEST_CELL_POINTS)
FORWARD_CELLS = frozenset(TEST_CELL_POINTS) - {"test_spatial"}


def prepend(nb, grade_id, code):
    c = cell(nb, grade_id)
    c.source = code + "\n" + c.source
    return nb


def add_cell_after(nb, grade_id, code):
    index = nb.cells.index(cell(nb, grade_id))
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(code))
    return nb


def make_class(course: Path, only=None):
    """Write the submissions (all, or the students in ``only``); return the expected results."""
    released, good = notebooks()
    submitted = course / "autograder" / "submitted"
    expected = {}

    def submit(student, content, want, says=(), name=f"{EXERCISE}.ipynb", extra_files=None):
        if only is not None and student not in only:
            return
        folder = submitted / student / EXERCISE
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        if isinstance(content, (str, bytes)):
            path.write_bytes(content.encode() if isinstance(content, str) else content)
        else:
            nbformat.write(content, path)
        for file_name, text in (extra_files or {}).items():
            (folder / file_name).write_text(text)
        expected[student] = (want, list(says))

    fresh = lambda: copy.deepcopy(good)  # noqa: E731
    wrong = {w.name: w for w in WRONG_ANSWERS}

    # --- honest work ------------------------------------------------------------------------
    submit("solved", good, scores(), extra_files={"timestamp.txt": SOLVED_AT})
    submit("blank", released, scores(ALL), ["NotImplementedError"])
    for w in WRONG_ANSWERS:
        submit(f"wrong-{w.name}", apply(w, good), scores(w.fails), [w.says])

    # --- broken notebooks -------------------------------------------------------------------
    submit("raises-at-top", prepend(fresh(), "batchnorm_forward", "raise RuntimeError('not finished')"),
           scores(ALL), ["cell 'batchnorm_forward' raised RuntimeError: not finished"])
    submit("infinite-loop", prepend(fresh(), "spatial_batchnorm_forward", "while True:\n    pass"),
           scores({"test_spatial"}), ["cell 'spatial_batchnorm_forward' did not finish"])
    nb = apply(wrong["spatial_reshape_without_transpose"], good)
    nb.cells.remove(cell(nb, "test_spatial"))
    submit("deleted-test-cell", nb, scores({"test_spatial"}), ["'test_spatial' was deleted"])
    nb = apply(wrong["missing_eps"], good)
    cell(nb, "test_forward_train").source = "print('all good')"
    submit("edited-test-cell", nb, scores(wrong["missing_eps"].fails), ["'test_forward_train' was edited"])
    nb = fresh()
    cell(nb, "test_running_stats").cell_type = "markdown"
    del cell(nb, "test_running_stats")["outputs"], cell(nb, "test_running_stats")["execution_count"]
    submit("retyped-test-cell", nb, scores(), ["'test_running_stats' was changed to a markdown cell"])
    nb = prepend(fresh(), "batchnorm_forward", "import warnings")
    c = cell(nb, "batchnorm_forward")
    c.source = c.source.replace('    mode = bn_param.get("mode", "train")',
                                '    warnings.warn("a harmless warning on stderr")\n    mode = bn_param.get("mode", "train")')
    submit("prints-warning", nb, scores())
    nb = fresh()
    cell(nb, "test_eval_mode").metadata["nbgrader"]["schema_version"] = 99
    cell(nb, "batchnorm_forward").metadata["nbgrader"]["schema_version"] = 99
    submit("schema-version-99", nb, scores(), ["schema_version 99"])
    nb = fresh()
    for c in nb.cells:
        c.metadata.pop("nbgrader", None)
    submit("metadata-stripped", nb, scores(), ["lost its grading metadata", "'test_spatial' was deleted"])
    raw = json.loads(nbformat.writes(fresh()))
    raw["nbformat"] = 3
    submit("wrong-nbformat", json.dumps(raw), scores(), ["nbformat 3"])
    submit("renamed-file", fresh(), scores(), ["renamed"], name="Untitled (1).ipynb")
    if only is None or "two-versions" in only:
        submit("two-versions", apply(wrong["missing_eps"], good), scores(wrong["missing_eps"].fails))
        older = submitted / "two-versions" / EXERCISE / f"{EXERCISE}.ipynb"
        os.utime(older, (time.time() - 3600, time.time() - 3600))
        submit("two-versions", fresh(), scores(), ["the latest"], name=f"{EXERCISE}-1.ipynb")
    submit("not-json", '{"cells": [', None, ["not valid JSON"])
    submit("not-a-notebook", "[1, 2, 3]", None, ["not a notebook"])

    # --- hostile notebooks ------------------------------------------------------------------
    eps = wrong["missing_eps"]
    submit("patches-allclose", prepend(apply(eps, good), "batchnorm_forward",
                                       "np.allclose = lambda *a, **k: True\nnp.isclose = lambda a, b, **k: a == a"),
           scores(eps.fails), [DISAGREES, "eps is missing"])
    submit("fake-check-helpers", add_cell_after(copy.deepcopy(released), "setup",
                                                "class _Pass:\n    def __getattr__(self, name):\n"
                                                "        return lambda *a, **k: None\nchecks = _Pass()"),
           scores(ALL), [DISAGREES])
    swallow = ("ip = get_ipython()\n_run = ip.run_cell\n"
               "def _quiet_run_cell(raw_cell, *args, **kwargs):\n"
               "    body = '\\n'.join('    ' + line for line in raw_cell.splitlines()) or '    pass'\n"
               "    return _run('try:\\n' + body + '\\nexcept BaseException:\\n    pass', *args, **kwargs)\n"
               "ip.run_cell = _quiet_run_cell")
    submit("wraps-run-cell", add_cell_after(copy.deepcopy(released), "setup", swallow), scores(ALL))
    fake_numpy = "def allclose(*a, **k):\n    return True\ndef __getattr__(name):\n    raise AttributeError(name)\n"
    submit("numpy-beside-notebook", copy.deepcopy(released), scores(ALL), extra_files={"numpy.py": fake_numpy})
    submit("writes-numpy-py", add_cell_after(apply(eps, good), "setup",
                                             f"open('numpy.py', 'w').write({fake_numpy!r})"),
           scores(eps.fails))
    submit("swallows-interrupt", prepend(fresh(), "spatial_batchnorm_forward",
                                         "import time\nwhile True:\n    try:\n        time.sleep(0.05)\n"
                                         "    except BaseException:\n        pass"),
           scores({"test_spatial"}), ["cell 'spatial_batchnorm_forward' did not finish"])
    submit("os-exit-in-cell", prepend(fresh(), "spatial_batchnorm_forward", "import os\nos._exit(0)"),
           scores({"test_spatial"}), ["cell 'spatial_batchnorm_forward' ended the process"])
    nb = fresh()
    c = cell(nb, "spatial_batchnorm_forward")
    c.source = c.source.replace("    N, C, H, W = x.shape", "    import os\n    os._exit(3)\n    N, C, H, W = x.shape")
    submit("os-exit-in-function", nb, scores({"test_spatial"}), ["ended the process"])
    nb = fresh()
    cell(nb, "batchnorm_forward").source = "from bncourse.reference import batchnorm_forward"
    submit("imports-reference", nb, scores(FORWARD_CELLS | {"test_spatial"}), [DISAGREES, "not defined"])
    hidden = [course / "solutions", course / "autograder" / "gradebook.db", course / "autograder", submitted / "solved",
              REPO / "solutions", REPO / "autograder", REPO / ".git"]
    snoop = (f"import os\nSEEN = [p for p in {[str(p) for p in hidden]!r} if os.path.exists(p)]\n"
             "if SEEN:\n    raise RuntimeError('could see ' + repr(SEEN))")
    submit("reads-solutions", prepend(fresh(), "batchnorm_forward", snoop), scores())
    rewrite = f"import time; time.sleep(20); open({str(course / 'autograder' / 'gradebook.db')!r}, 'w').write('pwned')"
    leftover = (f"import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', {rewrite!r}, {LEFTOVER_MARKER!r}], "
                "start_new_session=True)")
    submit("leaves-a-process", prepend(fresh(), "batchnorm_forward", leftover), scores())
    fork_flood = ("import os, time\nchildren = 0\nfor _ in range(400):\n    try:\n        pid = os.fork()\n"
                  "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n"
                  "    children += 1")
    submit("fork-flood", add_cell_after(fresh(), "setup", fork_flood), scores())
    submit("memory-hog", prepend(fresh(), "spatial_batchnorm_forward", "hog = np.ones(2 * 10**9)"),
           scores({"test_spatial"}), ["MemoryError"])
    nb = fresh()
    c = cell(nb, "batchnorm_forward")
    c.source = c.source.replace('    elif mode == "eval":\n',
                                '    elif mode == "eval":\n        gamma[...] = 0.0\n        beta[...] = 0.0\n'
                                '        return np.zeros_like(x), None\n')
    submit("rewrites-the-checks-gamma", nb, scores({"test_eval_mode"}))
    nb = apply(eps, good)
    c = cell(nb, "batchnorm_forward")
    c.source = c.source.replace('    if mode == "train":\n', '    if mode == "train":\n        bn_param["eps"] = 0.0\n')
    submit("zeroes-eps-in-bn-param", nb, scores(eps.fails))
    import inspect

    from bncourse import reference
    nb = fresh()
    cell(nb, "batchnorm_forward").source = inspect.getsource(reference)  # the whole module, helpers included
    submit("pastes-the-reference", nb, scores(), ["COPIED"])
    nb = add_cell_after(fresh(), "setup", "from IPython.display import HTML, display\n"
                                          "display(HTML('<script>document.title = \"pwned\"</script>'))")
    nb.cells.insert(2, nbformat.v4.new_markdown_cell('<img src="x" onerror="document.title = 1">'
                                                     '<script>document.title = "pwned"</script>'
                                                     '[a link](javascript:document.title=1)'))
    submit("html-output", nb, scores())

    # --- hostile files around the notebook (issue 14: intake must contain each, per student) ---------
    solution = course / "solutions" / EXERCISE / f"{EXERCISE}.ipynb"
    if only is None or "links-to-the-solution" in only:  # a link is never followed: nothing to grade
        (submitted / "links-to-the-solution" / EXERCISE).mkdir(parents=True)
        (submitted / "links-to-the-solution" / EXERCISE / f"{EXERCISE}.ipynb").symlink_to(solution)
        expected["links-to-the-solution"] = (None, ["a link or not a regular file"])
    if only is None or "links-to-a-classmate" in only:  # a whole folder linked to another student's
        (submitted / "links-to-a-classmate").symlink_to(submitted / "solved")
        expected["links-to-a-classmate"] = (None, ["symbolic link"])
    submit("stamp-links-to-a-system-file", fresh(), scores(), ["timestamp.txt"])
    if "stamp-links-to-a-system-file" in expected:
        (submitted / "stamp-links-to-a-system-file" / EXERCISE / "timestamp.txt").symlink_to("/etc/passwd")
    submit("stamp-is-a-folder", fresh(), scores(), ["timestamp.txt"])
    if "stamp-is-a-folder" in expected:
        (submitted / "stamp-is-a-folder" / EXERCISE / "timestamp.txt").mkdir()
    submit("stamp-is-malformed", fresh(), scores(), ["timestamp.txt"], extra_files={"timestamp.txt": "\x00" * 50})
    # A function nested too deep for the copy detector's parser (RecursionError) and one too big
    # for it (MemoryError), in an added cell: the answers still count.
    submit("deeply-nested-expression", add_cell_after(fresh(), "setup", "def helper():\n    return " + "1+" * 100_000
                                                      + "1"), scores())
    submit("huge-expression", add_cell_after(fresh(), "setup", "def helper():\n    return " + "-" * 100_000 + "1"),
           scores())
    raw = json.loads(nbformat.writes(fresh()))
    text = json.dumps(raw).replace('"nbformat_minor": ', '"nbformat_minor": ' + "9" * 100_000 + ", \"x\": ", 1)
    submit("long-integer-literal", text, scores())
    # Folder names that cannot be ids: reported under a stand-in key, never put in the gradebook.
    from bncourse.grading.intake import safe_key
    for raw_name in ("forged\nrow,0,10", os.fsdecode(b"caf\xe9-latin1")):
        if only is not None and raw_name not in only:
            continue
        (submitted / raw_name / EXERCISE).mkdir(parents=True)
        nbformat.write(fresh(), submitted / raw_name / EXERCISE / f"{EXERCISE}.ipynb")
        expected[safe_key(raw_name)] = (None, ["cannot be a student id"])
    return expected
