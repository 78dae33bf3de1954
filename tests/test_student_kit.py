"""The student kit and the exercise bundles, used as a student with only the website would.

* What the site publishes (the kit's wheel, the bundles, the notebooks) holds no reference
  implementation, no hidden test and no solution.
* The kit is no oracle: its public functions compare, they never compute an answer.
* In a fresh virtual environment with only the kit's declared dependencies and nbconvert (no
  repository on the path, no ``bncourse``), each bundle downloaded from the served site installs its
  kit, the notebook with the solution's answers passes every visible check, and each known wrong
  answer fails the check that should catch it, with its named message and no traceback.
"""

import io
import json
import os
import re
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import nbformat
import numpy as np
import pytest

import wrong_answers
from conftest import ASSIGNMENTS, REPO

SOLUTION_BLOCK = re.compile(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", re.S)


def solution_notebook(exercise):
    return nbformat.read(REPO / "solutions" / exercise / f"{exercise}.ipynb", as_version=4)


def released_notebook(exercise):
    return nbformat.read(REPO / "exercises" / exercise / f"{exercise}.ipynb", as_version=4)


def answer_functions(exercise) -> set:
    """Names of the functions and classes students write (defined in the solution's answer cells)."""
    names = set()
    for cell in solution_notebook(exercise).cells:
        if cell.metadata.get("nbgrader", {}).get("solution") and cell.cell_type == "code":
            names |= set(re.findall(r"^(?:def|class) (\w+)", cell.source, re.M))
    return names


def solution_bodies() -> list[str]:
    bodies = []
    for exercise in ASSIGNMENTS:
        for cell in solution_notebook(exercise).cells:
            bodies += [b.strip() for b in SOLUTION_BLOCK.findall(cell.source) if len(b.strip()) > 40]
    return bodies


def assert_holds_no_answers(name: str, files: dict):
    """``files``: {path: text} of something published."""
    bodies = solution_bodies()
    kit_functions = set()
    for path, text in files.items():
        assert "BEGIN HIDDEN TESTS" not in text and "BEGIN SOLUTION" not in text, f"{name}: {path}"
        assert "reference" not in Path(path).stem, f"{name}: {path} looks like a reference module"
        assert "bncourse" not in re.sub(r"#.*", "", text) or not path.endswith(".py"), f"{name}: {path} imports bncourse"
        for body in bodies:
            assert body not in text, f"{name}: {path} contains a solution cell body"
        if path.endswith(".py"):
            kit_functions |= set(re.findall(r"^\s*(?:def|class) (\w+)", text, re.M))
    for exercise in ASSIGNMENTS:
        same = answer_functions(exercise) & kit_functions
        assert not same, f"{name} defines the answer functions {same} of {exercise}"


def wheel_files(wheel: Path) -> dict:
    with zipfile.ZipFile(wheel) as z:
        return {n: z.read(n).decode("utf-8", errors="replace") for n in z.namelist()}


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory):
    from bncourse import kit

    return kit.build(tmp_path_factory.mktemp("kit"))


def test_wheel_holds_checks_and_data_only(built_wheel):
    files = wheel_files(built_wheel)
    modules = {Path(n).stem for n in files if n.endswith(".py")}
    assert modules == {"__init__", "_core", "_fixtures", *ASSIGNMENTS}, modules
    assert {Path(n).stem for n in files if n.startswith("bnkit/fixtures/")} == set(ASSIGNMENTS)
    assert_holds_no_answers("the kit's wheel", files)
    metadata = next(text for n, text in files.items() if n.endswith("METADATA"))
    requires = sorted(re.findall(r"^Requires-Dist: (.*)$", metadata, re.M))
    assert [r.split(";")[0].split(">")[0].strip() for r in requires] == ["numpy", "torch"], requires
    assert "extra ==" in next(r for r in requires if r.startswith("torch"))   # torch only for the exercises that need it


def test_every_visible_check_is_stored_in_the_kit():
    """The notebook's visible check cells call only checks whose cases the kit stores."""
    from bncourse import kit

    modules = kit.exercise_modules()
    for exercise in ASSIGNMENTS:
        called = set()
        for cell in released_notebook(exercise).cells:
            if cell.metadata.get("nbgrader", {}).get("grade"):
                called |= set(re.findall(r"\bchecks\.(check_\w+)\(", cell.source))
        assert called and called <= set(modules[exercise].VISIBLE), (exercise, called - set(modules[exercise].VISIBLE))


def test_the_kit_is_no_oracle():
    """Every public function of the kit, called with inputs that are not its fixtures (arrays, dicts,
    functions), raises or returns None: none of them computes anything a student could hand in."""
    import importlib
    import inspect

    rng = np.random.default_rng(0)
    x, v = rng.normal(size=(6, 4)), rng.normal(size=4)

    def anything(*args, **kwargs):
        return x

    probes = [(), (x,), (x, v, v, {"mode": "train"}), (anything,), (anything, anything), (x, v),
              (anything, [{"x": x}]), ("ex02_batchnorm_forward", "check_eval_mode"), (x, {"mode": "train"})]
    for exercise in ["_core", "_fixtures", *ASSIGNMENTS]:
        module = importlib.import_module(f"bnkit.{exercise}")
        for name, value in vars(module).items():
            if name.startswith("_") or not callable(value) or inspect.isclass(value) or inspect.ismodule(value):
                continue
            if getattr(value, "__module__", "").split(".")[0] not in ("bnkit",):
                continue   # numpy & co., imported by the module
            for args in probes:
                try:
                    result = value(*args)
                except Exception:  # noqa: BLE001 - raising is what we want
                    continue
                if name in ("encode", "decode", "cases"):
                    continue   # data in, the same data out (checked below); stored fixtures by name
                answer_like = (np.ndarray, np.generic, float, int, tuple, list, dict)
                assert not isinstance(result, answer_like), (
                    f"bnkit.{exercise}.{name}{tuple(type(a).__name__ for a in args)} returned {type(result).__name__}")
    from bnkit import _fixtures

    for value in (x, v, {"a": (x, [v, 1.5, None])}):
        assert repr(_fixtures.decode(json.loads(json.dumps(_fixtures.encode(value))))) == repr(value)


def test_a_failing_check_renders_as_its_message_in_a_real_kernel(tmp_path):
    """IPython shows the message of a failed check only: no traceback, no path into the kit."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import numpy as np\nfrom bnkit import ex02_batchnorm_forward as checks\n"
        "def batchnorm_forward(x, gamma, beta, bn_param):\n"
        "    mean, var = x.mean(axis=0), x.var(axis=0, ddof=1)\n"
        "    return gamma * (x - mean) / np.sqrt(var + 1e-5) + beta, {}\n"
        "checks.check_batchnorm_forward_train(batchnorm_forward)"),
        nbformat.v4.new_code_cell("def batchnorm_forward(x, gamma, beta, bn_param):\n    return x.foo, None\n"
                                  "checks.check_batchnorm_forward_train(batchnorm_forward)")]
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, path)
    executed = _execute(sys.executable, path, tmp_path, os.environ.copy())
    for cell, phrase in zip(executed.cells, ["unbiased variance", "AttributeError: 'numpy.ndarray' object has no "
                                                                  "attribute 'foo' (in batchnorm_forward, at `return x.foo"]):
        (error,) = [o for o in cell.outputs if o.output_type == "error"]
        shown = "\n".join(error.traceback)
        assert phrase in shown
        assert "Traceback" not in shown and "bnkit/" not in shown and "site-packages" not in shown, shown


def _execute(python, path: Path, cwd: Path, env: dict):
    """Execute a notebook with nbclient in the given Python (a kernel of that environment); errors stay
    in the outputs."""
    out = path.with_suffix(".out.ipynb")
    script = ("import sys, nbformat, nbclient\n"
              "nb = nbformat.read(sys.argv[1], as_version=4)\n"
              "nbclient.NotebookClient(nb, timeout=120, allow_errors=True, kernel_name='python3').execute()\n"
              "nbformat.write(nb, sys.argv[2])\n")
    result = subprocess.run([str(python), "-c", script, str(path), str(out)], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return nbformat.read(out, as_version=4)


# ---------------------------------------------------------------------------------------------
# From the website alone, in a fresh environment
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_published_files_hold_no_answers(site):
    files = {}
    for path in (site / "_static").rglob("*"):
        if path.suffix == ".whl":
            files.update({f"{path.name}:{n}": t for n, t in wheel_files(path).items()})
        elif path.suffix == ".zip":
            with zipfile.ZipFile(path) as z:
                for n in z.namelist():
                    if n.endswith(".whl"):
                        files.update({f"{path.name}:{n}:{m}": t for m, t in
                                      wheel_files(io.BytesIO(z.read(n))).items()})
                    else:
                        files[f"{path.name}:{n}"] = z.read(n).decode("utf-8", errors="replace")
        elif path.suffix == ".ipynb":
            files[str(path)] = path.read_text()
    assert any(k.endswith(".whl:bnkit/_core.py") for k in files) and len(files) > 20
    assert_holds_no_answers("the published site", files)


@pytest.mark.slow
@pytest.mark.parametrize("exercise", ASSIGNMENTS)
def test_bundle_holds_notebook_kit_requirements_and_three_lines(site, exercise):
    with zipfile.ZipFile(site / "_static" / "bundles" / f"{exercise}.zip") as z:
        names = sorted(z.namelist())
        readme = z.read(f"{exercise}/README.txt").decode()
        requirements = z.read(f"{exercise}/requirements.txt").decode().split()
        notebook = json.loads(z.read(f"{exercise}/{exercise}.ipynb"))
    wheel = next(n for n in names if n.endswith(".whl"))
    assert names == sorted([f"{exercise}/{exercise}.ipynb", f"{exercise}/README.txt", f"{exercise}/requirements.txt",
                            wheel])
    assert len(readme.strip().splitlines()) == 3 and f"jupyter lab {exercise}.ipynb" in readme
    assert requirements[0] == f"./{Path(wheel).name}" and "numpy" in requirements
    assert ("torch" in requirements) == any("import torch" in "".join(c["source"]) for c in notebook["cells"])
    assert notebook == json.loads((REPO / "exercises" / exercise / f"{exercise}.ipynb").read_text())
    setup = next("".join(c["source"]) for c in notebook["cells"] if "KIT = " in "".join(c["source"]))
    assert f'KIT = "{Path(wheel).name}"' in setup   # the notebook installs the wheel its bundle holds


@pytest.fixture(scope="module")
def student_venv(tmp_path_factory):
    """A fresh student environment made by the Makefile's own recipe (what `make lab` sets up): JupyterLab
    and the libraries the notebooks import, then the kit's wheel. No repository on the path, no bncourse,
    no nbgrader."""
    venv = tmp_path_factory.mktemp("student") / "venv"
    subprocess.run(["make", "--no-print-directory", f"{venv}/.installed", f"STUDENT_VENV={venv}"], cwd=REPO,
                   check=True, capture_output=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "uninstall", "--yes", "--quiet", "bnkit"], check=True)
    return venv   # without the kit: each test installs it from a bundle, as a student would


@pytest.fixture(scope="module")
def student_python(student_venv):
    return student_venv / "bin" / "python"


def test_student_environment_is_a_students(student_venv):
    listed = subprocess.run([str(student_venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
                            capture_output=True, text=True, check=True).stdout
    names = {p["name"].lower() for p in json.loads(listed)}
    assert {"jupyterlab", "numpy", "torch", "nbconvert"} <= names
    assert not names & {"nbgrader", "bncourse", "jupyter-book", "playwright", "psycopg", "sphinx"}, names


@pytest.mark.slow
def test_make_lab_starts_jupyterlab_for_students_even_as_root(student_venv, tmp_path):
    """`make lab` in a container (as root here) starts JupyterLab with a clear message, and JupyterLab has no
    nbgrader instructor extensions."""
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run([str(student_venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps",
                    *map(str, (REPO / "_build" / "kit").glob("bnkit-*.whl"))], check=True)
    log = tmp_path / "lab.log"
    with open(log, "w") as out:
        lab = subprocess.Popen(["make", "--no-print-directory", "lab", f"STUDENT_VENV={student_venv}",
                                f"LAB_ARGS=--no-browser --port={port} --ServerApp.token=test"],
                               cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, status = time.monotonic() + 90, None
        while time.monotonic() < deadline and status != 200:
            time.sleep(1)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token=test", timeout=5) as r:
                    status = r.status
            except OSError:
                pass
        text = log.read_text()
        assert status == 200, text[-3000:]
        if os.geteuid() == 0:
            assert "Running as root" in text and "--allow-root" in text
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab?token=test", timeout=10) as r:
            page = r.read().decode()
        assert "nbgrader" not in page.lower()
    finally:
        os.killpg(lab.pid, 15)
        lab.wait(timeout=30)
    subprocess.run([str(student_venv / "bin" / "python"), "-m", "pip", "uninstall", "--yes", "--quiet", "bnkit"],
                   check=True)


def student_env(python: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "JUPYTER", "VIRTUAL_ENV"))}
    env["PATH"] = f"{python.parent}:{env.get('PATH', '')}"
    env["JUPYTER_PATH"] = str(python.parent.parent / "share" / "jupyter")
    return env


def with_answers_of(notebook, released):
    """The released notebook with the answer cells of ``notebook`` filled in, as a student would."""
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in notebook.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    filled = nbformat.from_dict(json.loads(json.dumps(released)))
    for cell in filled.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell.source = re.sub(r"^\s*### (BEGIN|END) SOLUTION\n", "", answers[gid], flags=re.M)
    return filled


def failed_cells(executed) -> dict:
    """{grade_id: the error as shown} of every cell that raised."""
    failed = {}
    for cell in executed.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                failed[cell.metadata.get("nbgrader", {}).get("grade_id")] = "\n".join(output.traceback)
    return failed


@pytest.mark.slow
@pytest.mark.parametrize("exercise", ASSIGNMENTS)
def test_bundle_from_the_site_works_in_a_fresh_environment(site, server, student_python, exercise, tmp_path):
    folder = tmp_path / "download"
    with urllib.request.urlopen(f"{server}/_static/bundles/{exercise}.zip") as response:
        zipfile.ZipFile(io.BytesIO(response.read())).extractall(folder)
    work = folder / exercise
    env = student_env(student_python)
    subprocess.run([str(student_python), "-m", "pip", "uninstall", "--yes", "--quiet", "bnkit"], env=env,
                   capture_output=True)   # each bundle's notebook installs its own kit
    released = nbformat.read(work / f"{exercise}.ipynb", as_version=4)
    wrong = wrong_answers.for_exercise(exercise).WRONG_ANSWERS
    test_cells = set(wrong_answers.for_exercise(exercise).TEST_CELL_POINTS)

    # The solution's answers: the setup cell installs the kit from the bundle, every visible check passes.
    path = work / "solution.ipynb"
    nbformat.write(with_answers_of(solution_notebook(exercise), released), path)
    executed = _execute(student_python, path, work, env)
    assert failed_cells(executed) == {}
    passed = sum(o.get("text", "").count("\u2713") for c in executed.cells for o in c.get("outputs", []))
    assert passed >= len(test_cells)
    listed = subprocess.run([str(student_python), "-m", "pip", "list", "--format=json"], env=env,
                            capture_output=True, text=True, check=True).stdout
    assert "bnkit" in listed and "bncourse" not in listed

    # Every right answer written differently passes; each known wrong answer fails only cells it should, the
    # first with its named message, and shows no traceback through the kit. One kernel runs them all: each
    # variant's cells (all but the setup) redefine every answer and given function before its checks run.
    variants = [(f"right-{r.name}", r) for r in wrong_answers.correct_answers(exercise)]
    variants += [(f"wrong-{w.name}", w) for w in wrong]
    combined = nbformat.from_dict(json.loads(json.dumps(released)))
    combined.cells = [c for c in combined.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "setup"]
    for label, variant in variants:
        for cell in with_answers_of(wrong_answers.apply(variant, solution_notebook(exercise)), released).cells:
            if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("grade_id") != "setup":
                cell.metadata["variant"] = label
                cell["id"] = f"variant-{len(combined.cells)}"  # each variant repeats the solution's cell ids
                combined.cells.append(cell)
    path = work / "variants.ipynb"
    nbformat.write(combined, path)
    executed = _execute(student_python, path, work, env)
    failures = {label: {} for label, _ in variants}
    for cell in executed.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                failures.setdefault(cell.metadata.get("variant", "setup"), {})[cell.metadata.get("nbgrader", {}).get("grade_id")] = \
                    "\n".join(output.traceback)
    assert "setup" not in failures
    for label, variant in variants:
        failed = failures[label]
        failed_tests = [g for g in failed if g in test_cells]
        if label.startswith("right-"):
            assert failed == {}, (label, failed)
            continue
        assert set(failed) <= variant.fails | set(test_cells), (label, failed)
        assert set(failed_tests) <= variant.fails, (label, failed_tests)
        if not failed_tests:
            continue   # caught by hidden tests and the grader only
        first = failed[failed_tests[0]]
        assert variant.says in first, (label, first)
        assert "Traceback" not in first and "site-packages" not in first, (label, first)


@pytest.mark.slow
def test_a_notebook_alone_without_kit_or_site_says_where_to_get_the_kit(student_python, tmp_path):
    """Opened alone (no wheel beside it, no site address set), the first cell says what to do."""
    env = student_env(student_python)
    subprocess.run([str(student_python), "-m", "pip", "uninstall", "--yes", "--quiet", "bnkit"], env=env,
                   capture_output=True)
    exercise = "ex02_batchnorm_forward"
    nb = released_notebook(exercise)
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "setup"]
    path = tmp_path / f"{exercise}.ipynb"
    nbformat.write(nb, path)
    (error,) = failed_cells(_execute(student_python, path, tmp_path, env)).values()
    assert "bnkit is missing: download this exercise's bundle" in error
